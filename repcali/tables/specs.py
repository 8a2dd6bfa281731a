"""The paper's tables: which runs each one shows, how its rows are named, which sweeps list its cells.

A table shows the runs of one ``experiment_name``; its rows are named by attributes of their
:class:`~repcali.identity.RunIdentity` (``model``, ``method``, ``lam``, ...). Any experiment
without a spec here gets a generic table of its own (:func:`generic`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from repcali.config import RepCaliConfig
from repcali.identity import BLOCK_OPTIONS, RunIdentity

BLOCK_DEFAULTS = {name: getattr(RepCaliConfig(), name) for name in BLOCK_OPTIONS}
GENERIC_ROWS = ("model", "method", *BLOCK_OPTIONS)


def _everything(run: RunIdentity) -> bool:
    return True


def _ablation_of(varied: str) -> Callable[[RunIdentity], bool]:
    """Baselines, and RepCali runs whose other block options are at their defaults."""

    def select(run: RunIdentity) -> bool:
        others = (name for name in BLOCK_OPTIONS if name != varied)
        return not run.calibrated or all(getattr(run, name) == BLOCK_DEFAULTS[name] for name in others)

    return select


@dataclass(frozen=True)
class TableSpec:
    name: str  # file names under the output folder
    title: str
    experiment: str  # the runs' experiment_name
    rows: tuple[str, ...]  # RunIdentity attributes naming a row; those constant over the table are not shown
    sweeps: tuple[str, ...] = ()  # whose grid lists the expected cells
    select: Callable[[RunIdentity], bool] = _everything
    description: str = ""


SPECS = (
    TableSpec(
        "main_table",
        "Main table: backbones × tasks, without and with RepCali",
        "main_table",
        ("model", "method"),
        ("main_table",),
        description="Full fine-tuning of each backbone on its tasks, with (`+ RepCali`) and without the block.",
    ),
    TableSpec(
        "glue_comparison",
        "Comparison with fine-tuning baselines on GLUE (T5-base)",
        "glue_comparison",
        ("method", "model", "train"),
        ("glue_comparison",),
        description="Each fine-tuning method with and without RepCali; parameter columns in % of the backbone.",
    ),
    TableSpec(
        "lambda_ablation",
        "Ablation: λ, the strength of calibration",
        "ablations",
        ("model", "lam"),
        ("ablations/baseline", "ablations/lambda"),
        _ablation_of("lam"),
        "LN(h + λ·d), full fine-tuning; λ varies.",
    ),
    TableSpec(
        "layernorm_ablation",
        "Ablation: where the LayerNorm sits",
        "ablations",
        ("model", "layernorm"),
        ("ablations/baseline", "ablations/layernorm"),
        _ablation_of("layernorm"),
        "post_add = LN(h + λ·d), on_delta = h + λ·LN(d), none = h + λ·d; λ = 1, full fine-tuning.",
    ),
    TableSpec(
        "frozen_vs_full",
        "Ablation: full fine-tuning with the block against the block alone",
        "ablations",
        ("model", "train"),
        ("ablations/baseline", "ablations/frozen"),
        _ablation_of("train"),
        "train=full: backbone and block train; train=frozen: only the block trains. λ = 1, LN(h + λ·d).",
    ),
    TableSpec(
        "real_weights",
        "RepCali on real pretrained weights: MiniLM BERT2BERT on ACLSum",
        "real_weights",
        ("model", "train"),
        ("real_weights/full", "real_weights/frozen"),
        description="Full fine-tuning without and with the block (train=full), and the block alone on the frozen "
        "backbone (train=frozen), each against the fully fine-tuned baseline; selected on validation, scored once.",
    ),
)


def generic(experiment: str) -> TableSpec:
    """The table of an experiment no spec claims (``smoke``, ``demo``, ...)."""
    return TableSpec(
        experiment, f"Experiment {experiment}", experiment, GENERIC_ROWS, description="Runs of one experiment_name."
    )
