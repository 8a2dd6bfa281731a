"""Structured configs: the schema every YAML file in ``conf/`` is validated against.

Hydra merges each group's YAML into these dataclasses, so a misspelt key or a wrong type fails
at composition time with Hydra's own message. YAML files hold only what differs from here.
Importing this module is cheap (no torch): ``train.py --cfg job`` and skipped reruns stay fast.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, get_type_hints

from omegaconf import MISSING, DictConfig, OmegaConf

from repcali.errors import RepCaliError
from repcali.identity import RunIdentity
from repcali.precision import CHOICES as PRECISIONS
from repcali.signals import DEFAULT_SIGNALS

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class Choice(str, Enum):
    """A closed choice: Hydra refuses any other value while composing. A member is its own name and
    equals its string everywhere (comparisons, f-strings, results.json, run hashes), as 3.11's StrEnum."""

    __str__ = str.__str__
    __format__ = str.__format__


class LayerNorm(Choice):
    post_add = "post_add"
    on_delta = "on_delta"
    none = "none"


class CalibTrain(Choice):
    full = "full"
    frozen = "frozen"


class SelectionSplit(Choice):
    validation = "validation"  # the task's validation split (tasks scored on test)
    train_holdout = "train_holdout"  # sources held out of train (tasks scored on validation)


class WeightDtype(Choice):
    """The dtype the backbone's weights are loaded, trained and saved in (master weights); mixed-precision
    compute is the trainer's switch, not this. No float16: plain AdamW on fp16 weights loses small updates
    and T5 overflows in fp16 (its checkpoints were trained in bfloat16)."""

    float32 = "float32"
    bfloat16 = "bfloat16"


# What a run computes in (repcali/precision.py): auto, fp32, tf32, bf16.
Precision = Choice("Precision", {name: name for name in PRECISIONS})


# One per conf/method/<name>.yaml; a test checks them against the registry in repcali.methods.
MethodName = Choice(
    "MethodName", {path.stem: path.stem for path in sorted((PROJECT_ROOT / "conf" / "method").glob("*.yaml"))}
)


@dataclass
class RepCaliConfig:
    """Options of the calibration block; where the paper is silent, the default is our choice.

    - ``lam``: λ, the strength of calibration. The paper does not give its value; default 1.0.
    - ``layernorm``: ``post_add`` = LN(h + λ·d) (default; one reading of the paper),
      ``on_delta`` = h + λ·LN(d) (the other reading), ``none`` = h + λ·d (ablation).
    - ``num_embeddings``: rows of LearnEmb. An all-ones seed reads row 1 only, so this changes the
      parameter count, not the function; ``None`` = the backbone's max source positions, which
      reproduces the paper's 0–0.8 % added parameters.
    - ``train``: ``full`` fine-tunes backbone and block together (default, the paper's evidence);
      ``frozen`` trains the block alone.
    """

    lam: float = 1.0
    layernorm: LayerNorm = LayerNorm.post_add
    num_embeddings: int | None = None
    train: CalibTrain = CalibTrain.full

    def __post_init__(self) -> None:
        """Checks what the schema's types cannot (a string from Python or a saved file; a finite λ)."""
        self.layernorm = _member(LayerNorm, self.layernorm, "calib.layernorm")
        self.train = _member(CalibTrain, self.train, "calib.train")
        if not math.isfinite(self.lam):
            raise RepCaliError(
                f"calib.lam={self.lam} is not a finite number. Fix: set a finite λ, e.g. calib.lam=1.0."
            )
        if self.num_embeddings is not None and self.num_embeddings < 2:
            raise RepCaliError(
                "calib.num_embeddings < 2. Fix: use >= 2 (the all-ones Shape Seed reads row 1) or null."
            )


def _member(choices: type[Choice], value: str, key: str) -> Choice:
    try:
        return choices(value)
    except ValueError:
        raise RepCaliError(f"{key}={value!r} is unknown. Fix: use one of {', '.join(choices)}.") from None


@dataclass
class ModelConfig:
    """A backbone: where to load it from and how to use it.

    ``name_or_path`` is a hub id, a folder (relative to the project root), or
    ``package:<module>/<folder>``: a folder shipped inside an installed Python package (the
    offline MiniLM weights). ``init`` says how weights are made: ``pretrained`` loads them,
    ``scratch`` builds random ones from the config (smoke runs, tests), ``encoder_decoder``
    warm-starts a BERT2BERT ``EncoderDecoderModel`` from an encoder checkpoint (Rothe et al., 2020).
    """

    name: str = MISSING
    name_or_path: str = MISSING
    family: str = MISSING  # bart, t5, t5_v1_1, mt5, pegasus, ... (tests build a tiny variant per family)
    language: str = "en"  # what the checkpoint was pre-trained on: en, zh or multilingual
    init: str = "pretrained"
    # The weights' dtype whatever the checkpoint stores (facebook/bart-large's pytorch_model.bin is float16,
    # and transformers 5 would load it as stored): passed to from_pretrained / from_config.
    dtype: WeightDtype = WeightDtype.float32
    tokenizer: str | None = None  # default: name_or_path
    # A transformers tokenizer class (BertTokenizer) for checkpoints whose files name none; None: AutoTokenizer.
    tokenizer_class: str | None = None
    task_prefix: bool = False  # prepend the task's T5-style prefix ("summarize: ")
    max_positions: int = 512  # longest source the backbone takes; inputs are cut at min(this, task's)
    # Multilingual tokenizers (mBART-50): task.language -> language code, set as source and target
    # language and forced as the first generated token.
    language_codes: dict[str, str] = field(default_factory=dict)
    unsupported: str | None = None  # why this backbone cannot run here; selecting it fails with this reason
    learning_rate: float = 5e-5  # recommended; trainer.learning_rate reads it
    batch_size: int = 8  # recommended per-device batch; trainer reads it
    encoder_lr_scale: float = 1.0  # the encoder trains at learning_rate × this (a warm-started BERT2BERT: < 1)
    # Run the checkpoint's own Python code (hub repos with auto_map). Never passed unless set here; printed when set.
    trust_remote_code: bool = False
    # Parameters of the checkpoint, for the cost planner (python -m repcali.sweeps plan); describes the
    # backbone, changes no run, so it is left out of the run's identity (repcali/identity.py).
    params: int | None = None


@dataclass
class GenerationSettings:
    """Decoding for evaluation, passed explicitly to ``generate`` (never the model's defaults)."""

    num_beams: int = 4
    max_new_tokens: int = 64
    min_new_tokens: int = 0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    early_stopping: bool = True


@dataclass
class SelectionConfig:
    """Model selection: which checkpoint of a run is scored, chosen on data that is never reported.

    Active when ``trainer.eval_strategy`` is not ``no``: the run evaluates at the trainer's
    ``eval_steps``, keeps the checkpoint with the best ``metric`` (the Trainer's
    ``load_best_model_at_end``) and scores that one, once, on ``task.eval_split``.

    - ``split``: ``validation`` (the task's validation split) or ``train_holdout`` (sources held
      out of train, for tasks whose validation split is the one reported). Never the reported
      split: selecting on it is refused before the run starts.
    - ``metric``: a metric of ``task.metrics`` (higher is better); ``None``: ``task.primary_metric``.
    - ``max_samples``: examples (distinct sources) scored at each evaluation; with
      ``train_holdout`` also how many are held out (at most a tenth of train). The examples are
      those whose source text has the smallest SHA-1: the same whatever the order, seed or cap.
    - ``num_beams``: beams while validating; ``None``: the task's generation settings, as the test.
    - ``patience``: evaluations without improvement before training stops (the Trainer's
      ``EarlyStoppingCallback``); ``None``: no early stopping, the whole budget is trained.
    """

    split: SelectionSplit = SelectionSplit.validation
    metric: str | None = None
    max_samples: int = 500
    num_beams: int | None = None
    patience: int | None = None


@dataclass
class DataFiles:
    """Local files per split (.jsonl, .json, .csv or .parquet) in the hub dataset's schema."""

    train: str | None = None
    validation: str | None = None
    test: str | None = None


@dataclass
class TaskStats:
    """The dataset's size and typical lengths, for the cost planner (python -m repcali.sweeps plan) and
    ``prefetch``'s check of what was downloaded.

    Examples per split as this task builds them (:func:`repcali.data.count_examples`): for ``train``
    the training pairs (one per reference: WebNLG's lexicalisations), for the other splits the
    evaluation examples (one per distinct source where ``group_references``; MultiWOZ: system turns),
    after ``keep_rows``. Each task file says where its figures come from and which are exact. Mean
    lengths are subword tokens before truncation. They describe the data and change no run, so they
    are left out of the run's identity.
    """

    train: int | None = None
    validation: int | None = None
    test: int | None = None
    source_tokens: int | None = None
    target_tokens: int | None = None


@dataclass
class TaskConfig:
    """A dataset, how rows become (source, references) text, and how outputs are scored.

    ``formatter`` names a row preprocessor in :mod:`repcali.formatters` (``template`` = none): it
    adds derived columns (linearised triples, a dialogue with speaker turns, a label's text, ...)
    that the ``source``/``target`` templates then use. ``group_references``: rows of the evaluation
    split with the same source are scored once against all their targets (multi-reference tasks).
    """

    name: str = MISSING
    dataset: str | None = None  # hub id, e.g. EdinburghNLP/xsum
    dataset_config: str | None = None
    dataset_revision: str | None = None  # e.g. refs/convert/parquet for hub datasets that were scripts
    # Hub split name -> glob of its files in the repo at dataset_revision, each split loaded on its own:
    # a parquet export (no card, so no config names) or splits whose columns differ. Empty: dataset_config.
    dataset_files: dict[str, str] = field(default_factory=dict)
    data_files: DataFiles = field(default_factory=DataFiles)  # local files; any set file overrides `dataset`
    # Split (train/validation/test) -> column -> the values whose rows are kept, from the hub or local files
    # alike (WebNLG's test holds three sets: only the one with references is scored).
    keep_rows: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    splits: dict[str, str] = field(
        default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"}
    )
    formatter: str = "template"
    source: str = "{document}"  # str.format template over a row's (and the formatter's) columns
    target: str = "{summary}"
    labels: list[str] = field(default_factory=list)  # classification: label id -> target text
    new_tokens: list[str] = field(default_factory=list)  # added to the vocabulary (WebNLG's <H> <R> <T>)
    group_references: bool = False
    id_column: str | None = "id"
    # The column naming each evaluation example's category (WebNLG: its DBpedia category): written to
    # predictions.jsonl with the example and the primary metric scored per category in results.json.
    category_column: str | None = None
    prefix: str = ""  # T5-style task prefix, used when model.task_prefix is true
    language: str = "en"
    max_source_length: int = 512
    max_target_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    eval_split: str = "test"  # the split whose scores are the run's metrics
    selection: SelectionConfig = field(default_factory=SelectionConfig)  # what selects the scored checkpoint
    epochs: float = 3.0  # recommended; trainer.num_train_epochs reads it
    metrics: list[str] = field(default_factory=lambda: ["rouge"])
    primary_metric: str = "rouge1"
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    stats: TaskStats = field(default_factory=TaskStats)  # for the cost planner; not part of the run's identity


@dataclass
class CalibConfig(RepCaliConfig):
    """``calib=off`` does not attach the block at all; ``calib=on`` attaches it with these options."""

    name: str = "off"
    enabled: bool = False


@dataclass
class MethodConfig:
    """How the backbone is fine-tuned (:mod:`repcali.methods`). ``full`` updates every weight.

    - ``options``: the fields of the method's options class (for PEFT methods its PEFT config class,
      e.g. ``LoraConfig``); a free dict here, checked against the method before the run starts.
    - ``learning_rate``: the method's own rate (prompt tuning needs a far higher one); ``None``
      keeps the backbone's ``model.learning_rate``.
    """

    name: MethodName = MethodName.full
    options: dict[str, Any] = field(default_factory=dict)
    learning_rate: float | None = None


@dataclass
class LoggerConfig:
    """Experiment tracking. ``none``: results.json only; ``wandb``: W&B as a mirror of it."""

    name: str = "none"
    project: str = "repcali"
    entity: str | None = None
    group: str | None = None  # default: the experiment name
    tags: list[str] = field(default_factory=list)
    mode: str | None = None  # online | offline | disabled; None: decided per run (repcali/tracking.py)
    probe_timeout_s: float = 3.0  # mode None: offline unless the server (or proxy) answers within this


@dataclass
class CheckpointConfig:
    """Trainer checkpoints in ``<run dir>/checkpoints/``, from which the same command resumes a killed run.

    Not part of the run's identity: when and how often a run is saved does not change its result.
    A checkpoint is written every ``every_minutes`` of wall time (read at logging steps), every
    ``every_steps`` optimizer steps if set, and at the end of training; both intervals null: none.
    ``keep`` complete checkpoints stay; an older one is deleted only once a newer one is complete.
    They are deleted when the run completes.
    """

    every_minutes: float | None = 10.0
    every_steps: int | None = None
    keep: int = 2


@dataclass
class RunControlConfig:
    """How a run shares its directory, its machine's cores, and stops (:mod:`repcali.ownership`,
    :mod:`repcali.threads`, :mod:`repcali.signals`); not part of the run's identity.

    - ``lock``: hold the run directory's lock while running, so that a second process on the same
      config waits or is refused; false only on a file system without ``flock`` (then nothing stops
      two processes from training one run at once).
    - ``lock_wait_s``: how long a second process waits for the owner before it is refused (a sweep
      skips the run; ``train.py`` exits 1). 0: at once (after a 2 s grace). A requeued job that may
      start while its predecessor still saves wants a few minutes.
    - ``stop_signals``: signals that checkpoint, record ``interrupted`` and exit 128 + n (SLURM's
      SIGTERM, Ctrl-C's SIGINT, and SIGUSR2: SLURM's ``--signal`` warning and submitit's preemption
      signal, whose own handler, requeueing the job, runs after the record is written).
    - ``threads``: torch's CPU threads for this run; null: its share of the cores (the physical cores it
      may use over the processes a launcher started with it), or ``OMP_NUM_THREADS`` if set. Recorded
      in ``results.json`` (``host.threads``).
    """

    lock: bool = True
    lock_wait_s: float = 0.0
    stop_signals: list[str] = field(default_factory=lambda: list(DEFAULT_SIGNALS))
    threads: int | None = None


@dataclass
class ClusterConfig:
    """Where a sweep's jobs run: read by the launcher configs of ``conf/hydra/launcher/`` (``slurm``,
    ``slurm_multigpu``, ``local``, ``local_gpus``). Set it in the git-ignored ``conf/local/default.yaml``
    or on the command line (``cluster.partition=gpu``), never in tracked files. Not part of a run's identity.
    """

    partition: str | None = None  # SLURM partition; the slurm launchers refuse to submit without one
    account: str | None = None
    qos: str | None = None
    time_min: int = 1440  # a job's time limit; a run that needs longer is requeued and resumes (max_requeues)
    max_requeues: int = 5  # times a job that hits its time limit is requeued (preemptions do not count)
    signal_delay_s: int = 300  # the job's signal (USR2) comes this long before its time limit
    gpus_per_node: int = 1  # slurm_multigpu: GPUs (= processes) per job; local_gpus: GPUs of this machine
    cpus_per_gpu: int = 8
    mem_per_gpu: str | None = None  # e.g. 64G; null: the partition's default
    max_parallel: int = 256  # jobs of one sweep part running at once (SLURM array parallelism)
    # Shell lines each SLURM job runs before train.py (module load, conda activate). The default makes
    # W&B log offline: compute nodes rarely reach the internet (docs/cluster.md).
    setup: list[str] = field(default_factory=lambda: ["export WANDB_MODE=offline"])


@dataclass
class TrainConfig:
    """One run: a backbone fine-tuned on a task, with or without RepCali, for one seed."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    calib: CalibConfig = field(default_factory=CalibConfig)
    trainer: dict[str, Any] = field(default_factory=dict)  # Seq2SeqTrainingArguments fields
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)  # not in IDENTITY_KEYS
    run: RunControlConfig = field(default_factory=RunControlConfig)  # not in IDENTITY_KEYS
    cluster: ClusterConfig = field(default_factory=ClusterConfig)  # not in IDENTITY_KEYS
    experiment_name: str = "default"  # the group of runs: W&B group, first run-dir level (set by experiment=)
    seed: int = 42
    # auto: bf16 on a CUDA GPU with bf16 tensor cores, else fp32; fp32 / tf32 / bf16: that, or refused where it
    # cannot run (repcali/precision.py). Part of the run's identity; what it resolved to is in results.json.
    precision: Precision = Precision.auto
    runs_dir: str = "runs"
    rerun: bool = False  # run again even if results.json says completed
    save_model: bool = True
    # Score the selected model on task.eval_split. The λ search sets false: its trials are judged on
    # the validation metric only, so no test score is computed that anyone could select on.
    score_eval_split: bool = True
    tuned_file: str = "conf/tuned_lambda.yaml"  # λ per backbone and task chosen by the λ search (calib=tuned)


def unknown_choice(overrides: list[str]) -> str | None:
    """A one-line error for an override naming no option: ``group=name`` (or a sweep ``group=a,b``)
    with no file in ``conf/<group>/``, or a value outside a closed choice (``calib.layernorm=pre``).

    Hydra refuses both while composing, but over several lines (27 backbones, one per line); this
    names the options in one. Extended sweep syntax (``glob(...)``, ``range(...)``) is left to Hydra.
    """
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key.startswith("hydra/"):  # hydra/launcher=...: Hydra's plugins add options of their own
            continue
        options, where = _options(key)
        if not value or not options or any(c in value for c in "()[]*"):
            continue
        for name in value.split(","):
            if name != "null" and name not in options:
                return f"Unknown {key} {name!r}. Fix: use one of {', '.join(options)}{where}."
    return None


def _options(key: str) -> tuple[list[str], str]:
    """The choices for ``key``: a config group's files, or an enumeration's members."""
    group = PROJECT_ROOT / "conf" / key
    if group.is_dir():
        return sorted(str(path.relative_to(group).with_suffix("")) for path in group.rglob("*.yaml")), (
            f" (files in conf/{key}/)"
        )
    node: Any = TrainConfig
    for part in key.split("."):
        node = get_type_hints(node).get(part) if is_dataclass(node) else None
    return (list(node), "") if isinstance(node, type) and issubclass(node, Enum) else ([], "")


def _run_path(under: str | None = None, *, _root_) -> str:
    """The run's directory relative to ``runs_dir`` or, given a folder ``under`` it (a search's own
    sweep dir), relative to that folder: the same directory either way."""
    path = RunIdentity.of(_root_).path
    return path if under is None else os.path.relpath(Path(_root_.runs_dir) / path, under)


def selects(cfg: DictConfig) -> bool:
    """Whether the run validates during training and scores the best checkpoint (``trainer.eval_strategy``)."""
    return str(cfg.trainer.get("eval_strategy", "no")) != "no"


def selection_metric(task: DictConfig) -> str:
    return task.selection.metric or task.primary_metric


def repcali_config(calib: DictConfig) -> RepCaliConfig:
    """The block's options out of the ``calib`` group (which adds ``name`` and ``enabled``)."""
    return RepCaliConfig(**{f.name: calib[f.name] for f in fields(RepCaliConfig)})


def register() -> None:
    """Register the schema and the resolvers used in ``conf/``: ``${run_path:}``, ``${coalesce:...}``
    and ``${tuned_lambda:}``."""
    from hydra.core.config_store import ConfigStore

    from repcali.tuning import tuned_lambda

    ConfigStore.instance().store(name="train_schema", node=TrainConfig)
    if not OmegaConf.has_resolver("run_path"):  # the run's directory under runs_dir (repcali/identity.py)
        OmegaConf.register_new_resolver("run_path", _run_path)
    if not OmegaConf.has_resolver("tuned_lambda"):  # calib=tuned: the λ the search chose for this backbone and task
        OmegaConf.register_new_resolver("tuned_lambda", lambda *, _root_: tuned_lambda(_root_))
    if not OmegaConf.has_resolver("coalesce"):  # the first value that is set: ${coalesce:${a},${b}}
        OmegaConf.register_new_resolver("coalesce", lambda *values: next((v for v in values if v is not None), None))
