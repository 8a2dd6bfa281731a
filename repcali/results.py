"""The schema of ``results.json``: one typed record per run, validated when it is read.

``results.json`` is the source of truth for sweeps, tables, reports and W&B. :class:`Results`
is its whole content; adding a field is one line there, with a default so that older files
still read. A file that exists but cannot be used (truncated, hand-edited, from an unknown
schema) is an :class:`InvalidResults` error naming its path, never mistaken for a missing run:
:func:`read_results` tells the two apart, and :func:`find_results` returns the runs that read
together with a :class:`Problem` for each file that does not.

Schema versions: 1, the first record, written key by key; 2, the same fields written from
:class:`Results`, with ``status`` in ``STATUSES``. Version-1 files have every field of version 2
and read as they are. Fields added since (``owner``, the ``interrupted`` status) have defaults,
so older files of either version still read.
"""

from __future__ import annotations

import json
import types
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from repcali.errors import RepCaliError
from repcali.identity import RunIdentity

RESULTS_NAME = "results.json"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
STATUSES = ("running", "completed", "failed", "interrupted")  # interrupted: stopped by a signal, resumable


@dataclass(kw_only=True)
class RunError:
    """Why a run failed: the exception's type and its message (a ``RepCaliError`` names the fix)."""

    type: str
    message: str


@dataclass(kw_only=True)
class Owner:
    """The process that runs (or ran) a run. While it runs it holds the run directory's lock
    (:mod:`repcali.ownership`); host, pid and the process's start time name it even after its pid is reused."""

    host: str
    pid: int
    process_started: float  # the process's creation time, seconds since the epoch (psutil's create_time)
    since: str  # when it took the run directory (ISO 8601, UTC)
    slurm_job_id: str | None = None  # SLURM_JOB_ID (array jobs: <array job>_<task>), when run under SLURM

    def describe(self) -> str:
        job = f", SLURM job {self.slurm_job_id}" if self.slurm_job_id else ""
        return f"pid {self.pid} on {self.host}{job} since {self.since}"


@dataclass(kw_only=True)
class Selection:
    """How the scored model was chosen: evaluated on ``split`` during training (never ``scored_split``),
    the checkpoint of ``best_step`` kept by ``metric``, then scored once on ``scored_split``."""

    metric: str  # the task metric that selected (higher is better)
    split: str  # validation | train_holdout
    scored_split: str  # task.eval_split: what `metrics` are scores of
    n_examples: int  # scored at each evaluation
    num_beams: int  # while validating
    patience: int | None  # evaluations without improvement that stop training; None: no early stopping
    best_step: int | None
    best_score: float | None  # the metric on `split` at best_step
    checkpoint: str | None  # checkpoint-<best_step>: the weights that were scored and saved
    stopped_early: bool
    curve: list[dict[str, Any]] = field(default_factory=list)  # per evaluation: step, epoch, score, loss


@dataclass(kw_only=True)
class Results:
    """A run's record. The header (experiment ... seed) is its identity, written for people and jq."""

    schema_version: int = SCHEMA_VERSION
    status: str = "running"
    error: RunError | None = None
    run_dir: str
    experiment: str
    task: str
    model: str
    method: str
    calib: str
    seed: int
    metrics: dict[str, Any] = field(default_factory=dict)  # corpus scores of the eval split, train_loss
    metric_settings: dict[str, Any] = field(default_factory=dict)  # how they were computed
    # task.category_column: the primary metric on each category's examples apart (repcali.metrics.by_category)
    category_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # parameter counts (repcali.modeling.parameter_report)
    weights_dtype: str | None = None  # the weights' dtype(s) (repcali.modeling.weights_dtype); None: older file
    config: dict[str, Any]  # the whole resolved config
    # What the run computed in: config.precision resolved on its machine (repcali/precision.py): fp32, tf32 or
    # bf16. None: written before precision was recorded (repcali.precision.recorded reads it from the config).
    precision: str | None = None
    git: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] | None = None
    timings: dict[str, Any] = field(default_factory=dict)  # <stage>_s seconds, train_samples_per_second
    truncation: dict[str, Any] | None = None  # per split: sources and targets cut at their max length
    resumed_from_step: int | None = None  # the checkpoint's step training resumed from (None: from the start)
    owner: Owner | None = None  # who runs it (None: written before owners were recorded)
    selection: Selection | None = None  # how the scored checkpoint was chosen (None: the last one, no validation)
    started_at: str | None = None
    finished_at: str | None = None

    @classmethod
    def new(cls, run_dir: Path, config: dict[str, Any], **values: Any) -> Results:
        """A ``running`` record of the run that ``config`` (resolved, plain) is; header from its identity."""
        identity = RunIdentity.of(config)
        header = {name: getattr(identity, name) for name in ("experiment", "task", "model", "method", "calib")}
        return cls(run_dir=str(run_dir), **header, seed=identity.seed, config=config, **values)

    @cached_property
    def identity(self) -> RunIdentity:
        return RunIdentity.of(self.config)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Results:
        """Validate and build; ``ValueError`` says what is wrong."""
        results = _build(cls, data, "")
        if results.schema_version not in READABLE_VERSIONS:
            raise ValueError(f"schema_version {results.schema_version} is not one of {READABLE_VERSIONS}")
        if results.status not in STATUSES:
            raise ValueError(f"status {results.status!r} is not one of {STATUSES}")
        for section in ("metrics", "params"):  # what tables and reports compute with
            for name, value in getattr(results, section).items():
                if not (value is None or (isinstance(value, int | float) and not isinstance(value, bool))):
                    raise ValueError(f"field {section}.{name} is {type(value).__name__}, not a number")
        try:
            _ = results.identity  # computed now: a config that cannot name its run makes the file invalid
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"its config cannot tell which run it is ({type(error).__name__}: {error})") from None
        return results


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _build(cls: type, data: Any, prefix: str) -> Any:
    """An instance of the dataclass ``cls`` from JSON ``data``, checking each field's type (not deeper)."""
    if not isinstance(data, dict):
        raise ValueError(f"{prefix.rstrip('.') or 'the file'} is not a JSON object")
    values = {}
    for each in fields(cls):
        if each.name in data:
            values[each.name] = _checked(_hints(cls)[each.name], data[each.name], prefix + each.name)
        elif each.default is MISSING and each.default_factory is MISSING:
            raise ValueError(f"field {prefix}{each.name} is missing")
    return cls(**values)


def _checked(kind: Any, value: Any, name: str) -> Any:
    options = get_args(kind) if get_origin(kind) in (Union, types.UnionType) else (kind,)
    for option in options:
        base = get_origin(option) or option
        if option is type(None) and value is None:
            return None
        if is_dataclass(option) and isinstance(value, dict):
            return _build(option, value, f"{name}.")
        if base is Any or (isinstance(value, base) and not (isinstance(value, bool) and base is not bool)):
            return value
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
    raise ValueError(f"field {name} is {type(value).__name__}, not {getattr(kind, '__name__', kind)}")


@dataclass(frozen=True)
class Problem:
    """A ``results.json`` that exists but cannot be read as one, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class InvalidResults(RepCaliError):
    """A ``results.json`` that cannot be used; ``problem`` names the file and what is wrong with it."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(
            f"Unreadable run record {problem}. Fix: restore it (an earlier record may be beside it as "
            "results.<status>.<time>.json) or delete it, and the run counts as not run."
        )
        self.problem = problem


def load_results(path: Path) -> Results:
    """The record in the file ``path``: ``FileNotFoundError`` if there is none, ``InvalidResults`` if unusable."""
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidResults(Problem(Path(path), f"not JSON ({error})")) from None
    except (IsADirectoryError, PermissionError) as error:
        raise InvalidResults(Problem(Path(path), f"cannot be read ({error.strerror})")) from None
    try:
        return Results.from_json(data)
    except ValueError as error:
        raise InvalidResults(Problem(Path(path), str(error))) from None


def read_results(run_dir: str | Path) -> Results | None:
    """A run's record; ``None`` when it has no ``results.json``, ``InvalidResults`` when it has an unusable one."""
    try:
        return load_results(Path(run_dir) / RESULTS_NAME)
    except FileNotFoundError:
        return None


@dataclass
class Found:
    """What :func:`find_results` found: the runs that read, and the files that did not."""

    runs: list[tuple[Path, Results]]  # (run directory, its record), sorted by path
    problems: list[Problem]


def find_results(root: str | Path) -> Found:
    """Every ``results.json`` under ``root``; one unusable file is a problem, not a reason to stop."""
    found = Found([], [])
    for path in sorted(Path(root).rglob(RESULTS_NAME)):
        try:
            found.runs.append((path.parent, load_results(path)))
        except InvalidResults as error:
            found.problems.append(error.problem)
        except FileNotFoundError:  # removed while scanning
            continue
    return found
