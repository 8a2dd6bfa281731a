"""Benchmark 5: ``make tables`` (``python -m repcali.tables``) over 1,000 synthetic results."""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path
from unittest import mock

from omegaconf import OmegaConf, flag_override

from benchmarks.contract import Benchmark, Row, judged
from benchmarks.measure import compose_configs, interleave, run_command, summarize
from repcali.identity import RunIdentity

TITLE = "Tables: make tables over 1,000 synthetic results"
METHOD = """
The synthetic runs are the distinct grid points of the project's own sweeps (``glue_comparison``,
``ablations``, then ``main_table``), the first 1,000 of them, so the main table has missing cells
as an unfinished sweep does; 2 % of the runs failed. Each is written by the framework's writers
(``RunRecord`` → ``results.json``, ``write_predictions`` → ``predictions.jsonl`` with per-example
scores) into the directory its ``RunIdentity`` names, with the model, task and method sections composed
from ``conf/`` and made-up scores (RepCali +0.4 on average). Then ``python -m repcali.tables
--runs <dir> --out <dir>`` (what ``make tables`` runs) is timed as a fresh process, the first
(cold) run included.
"""

TARGET_S = 5.0
N_RESULTS = 1000
RESULTS = {"smoke": 60, "quick": N_RESULTS, "full": N_RESULTS}
SWEEPS = ("glue_comparison", "ablations", "main_table")
EXAMPLES = {"smoke": 20, "quick": 200, "full": 1000}  # per-example scores per run (test sets are larger)
ROUNDS = {"smoke": 1, "quick": 2, "full": 5}
FAILED_SHARE = 0.02


def grid(n: int = N_RESULTS) -> list[RunIdentity]:
    """The identities of the first ``n`` distinct grid points of the sweeps (repcali.grid: composed, cached).

    Sweeps share some points (an ablation's default setting is also its baseline's); a sweep runs those once.
    """
    from repcali import grid as grids
    from repcali import sweeps

    distinct: dict[RunIdentity, None] = {}
    for part in (part for name in SWEEPS for part in sweeps.parts(name)):
        distinct.update(dict.fromkeys(point.identity for point in grids.points(part)))
        if len(distinct) >= n:
            break
    return list(distinct)[:n]


def metric_names(family: str) -> tuple[list[str], bool]:
    """The scores a metric of ``task.metrics`` writes, and whether it writes them per example."""
    from repcali.metrics import ROUGE_TYPES

    names = {"rouge": list(ROUGE_TYPES), "multiwoz": ["bleu"]}.get(family, [family])
    return names, family != "mcc"


def synthetic_scores(rng: random.Random, families: list[str], mean: float, n: int):
    """Corpus scores and per-example scores around ``mean`` (corpus = mean of the examples)."""
    corpus, per_example = {}, {}
    for family in families:
        names, by_example = metric_names(family)
        for name in names:
            values = [min(100.0, max(0.0, rng.gauss(mean, 15))) for _ in range(n)]
            corpus[name] = sum(values) / n
            if by_example:
                per_example[name] = values
    return corpus, per_example


def write_synthetic_runs(runs_dir: Path, examples: int, n: int = N_RESULTS, seed: int = 0) -> int:
    """Write ``n`` runs with the framework's writers; return how many failed."""
    import repcali.runs
    from repcali.runs import RunRecord, write_predictions

    rng = random.Random(seed)
    points = grid(n)
    # Each model, task and method composed once (not 1,000 times); a run's config is the default
    # run's with those sections swapped in (Hydra's no-deepcopy flag: the nodes move, not copies).
    groups = ("model", "task", "method")
    options = [(group, name) for group in groups for name in dict.fromkeys(getattr(p, group) for p in points)]
    cfg, *composed = compose_configs([[], *([f"{group}={name}"] for group, name in options)])
    OmegaConf.resolve(cfg)
    sections = {}
    for (group, name), option in zip(options, composed, strict=True):
        OmegaConf.resolve(option)
        sections[group, name] = option[group]
    failed = 0
    # Provenance (git, package versions) once, not 1,000 times: 25 ms a run that a real run pays once.
    with (
        mock.patch.object(repcali.runs, "git_info", return_value=repcali.runs.git_info()),
        mock.patch.object(repcali.runs, "package_versions", return_value=repcali.runs.package_versions()),
        flag_override(cfg, "no_deepcopy_set_nodes", True),
    ):
        for point in points:
            for group in ("model", "task", "method"):
                cfg[group] = sections[group, getattr(point, group)]
            cfg.experiment_name, cfg.seed = point.experiment, point.seed
            cfg.calib.name, cfg.calib.enabled = ("on", True) if point.calibrated else ("off", False)
            for key in ("lam", "layernorm", "train"):
                cfg.calib[key] = getattr(point, key)
            run_dir = runs_dir / RunIdentity.of(cfg).path
            record = RunRecord(run_dir, cfg)
            record.start()  # as train.py: `running` first, then `completed` or `failed`
            if rng.random() < FAILED_SHARE:
                failed += 1
                record.fail(RuntimeError("synthetic failure (benchmark data)"))
                continue
            level = random.Random(f"{point.model}/{point.task}").uniform(20, 80)
            mean = level + (0.4 if point.calibrated else 0.0) + rng.gauss(0, 0.3)
            corpus, per_example = synthetic_scores(rng, list(cfg.task.metrics), mean, examples)
            ids = [f"{point.task}-{i}" for i in range(examples)]
            texts = [f"synthetic output {i}" for i in range(examples)]
            write_predictions(run_dir, ids, texts, texts, per_example)
            record.results.params = {"total": 1, "trainable": 1, "trainable_pct": 100.0, "added": 0, "added_pct": 0.0}
            record.results.metrics = {**corpus, "train_loss": rng.uniform(1, 3)}
            record.results.metric_settings = {"eval_split": cfg.task.eval_split, "n_examples": examples}
            record.complete()
    return failed


def run(mode: str, device: str) -> Benchmark:
    with tempfile.TemporaryDirectory(prefix="repcali-bench-") as work:
        runs_dir, out_dir = Path(work) / "runs", Path(work) / "tables"
        failed = write_synthetic_runs(runs_dir, EXAMPLES[mode], RESULTS[mode])
        command = [sys.executable, "-m", "repcali.tables", "--runs", str(runs_dir), "--out", str(out_dir)]
        samples = interleave({"tables": lambda: run_command(command)}, ROUNDS[mode])["tables"]
        written = sorted(str(path.relative_to(out_dir)) for path in out_dir.iterdir())
    stats = summarize(samples)
    case = f"{RESULTS[mode]:,} runs (results.json + predictions.jsonl, {EXAMPLES[mode]} examples each)"
    cells = judged(stats, ".2f", " s", TARGET_S)
    row = Row(case, "python -m repcali.tables, fresh process", "", f"{stats['median']:.2f} s", **cells)
    result = {"seconds": stats, "runs": RESULTS[mode], "failed_runs": failed, "written": written}
    return Benchmark(TITLE, METHOD, [row], [result])
