"""Runs grouped into table cells: one setting (everything but the seed) over its seeds.

A cell is a task × row (e.g. a backbone, or a backbone and a λ) × calibrated or not. Its runs
share one :attr:`~repcali.identity.RunIdentity.setting` and one resolved precision (what
``precision=auto`` became on the run's machine, :mod:`repcali.precision`), so runs that differ in
anything but the seed are never averaged together, nor a bf16 run on a GPU with an fp32 run of the
same config on a CPU. A RepCali cell's baseline is the ``calib=off`` cell of the same table with the
same :attr:`~repcali.identity.RunIdentity.baseline` hash and precision: the same training without
the block, compared seed by seed. Row fields are names of ``RunIdentity`` attributes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from repcali.identity import BLOCK_OPTIONS, RunIdentity
from repcali.precision import recorded
from repcali.results import Results

NOT_EVALUATION = {"train_loss"}  # in results.json metrics, but not a test-set score
UNFINISHED = ("failed", "interrupted", "running")  # states of runs without results, counted in a cell
ROW_FORMATS = {"lam": "λ={}", "layernorm": "LN={}", "train": "train={}"}


@dataclass
class Run:
    """One ``results.json``, found in ``path``."""

    path: Path
    results: Results
    shown: str | None = None  # the status to show, if not the record's (running, owner gone: interrupted)

    @property
    def identity(self) -> RunIdentity:
        return self.results.identity

    @property
    def status(self) -> str:
        return self.shown or self.results.status

    @property
    def precision(self) -> str:
        """What the run computed in (fp32, tf32, bf16), as its record says."""
        return recorded(self.results.config, self.results.precision)

    @property
    def primary_metric(self) -> str | None:
        return (self.results.config.get("task") or {}).get("primary_metric")


@dataclass
class Stat:
    mean: float
    std: float  # sample standard deviation (ddof=1) over seeds; nan with one seed
    n: int


def _finite(value) -> bool:
    return value is not None and math.isfinite(float(value))


def stat(values: Iterable[float]) -> Stat | None:
    values = [float(v) for v in values if _finite(v)]
    if not values:
        return None
    std = float(np.std(values, ddof=1)) if len(values) > 1 else math.nan
    return Stat(float(np.mean(values)), std, len(values))


@dataclass
class Cell:
    task: str
    row: tuple  # values of the table's row fields; block options are None for a baseline
    calibrated: bool
    identity: RunIdentity  # of its first run (or of the grid point, for a missing cell)
    precision: str | None = None  # what its runs computed in (None: a missing cell)
    runs: list[Run] = field(default_factory=list)
    expected_seeds: set = field(default_factory=set)
    baseline: Cell | None = None

    @property
    def completed(self) -> list[Run]:
        return [run for run in self.runs if run.status == "completed"]

    def count(self, status: str) -> int:
        return sum(run.status == status for run in self.runs)

    @property
    def state(self) -> str:
        """done (all expected seeds), partial, failed, interrupted, running, missing."""
        if self.completed:
            return "done" if {r.identity.seed for r in self.completed} >= self.expected_seeds else "partial"
        for state in UNFINISHED:
            if self.count(state):
                return state
        return "missing"

    def metric(self, name: str) -> Stat | None:
        return stat(run.results.metrics.get(name) for run in self.completed)

    def param(self, name: str) -> Stat | None:
        return stat(run.results.params.get(name) for run in self.completed)

    def pairs(self) -> list[tuple[Run, Run]]:
        """(RepCali run, baseline run) with the same seed, both completed."""
        if self.baseline is None:
            return []
        by_seed = {run.identity.seed: run for run in self.baseline.completed}
        return [(run, by_seed[run.identity.seed]) for run in self.completed if run.identity.seed in by_seed]

    def paired_values(self, name: str) -> list[tuple[float, float]]:
        """(RepCali, baseline) values of a metric, one per paired seed where both runs have a finite one."""
        values = [(ours.results.metrics.get(name), theirs.results.metrics.get(name)) for ours, theirs in self.pairs()]
        return [(a, b) for a, b in values if _finite(a) and _finite(b)]

    def delta(self, name: str) -> Stat | None:
        """RepCali − baseline over the paired seeds: mean and std of the per-seed differences."""
        return stat(a - b for a, b in self.paired_values(name))

    def metrics(self) -> list[str]:
        names = [name for run in self.completed for name in run.results.metrics]
        return [name for name in dict.fromkeys(names) if name not in NOT_EVALUATION]


def group(
    runs: list[Run],
    row_fields: tuple[str, ...],
    select: Callable[[RunIdentity], bool],
    expected: list[RunIdentity] | None,
) -> list[Cell]:
    """Cells of one table, ordered: tasks and rows in grid order, each baseline before its RepCali rows.

    ``expected`` are the grid points of the table's sweeps; a grid point with no run becomes a
    *missing* cell, and the grid's seeds are the seeds a cell should have. Without a grid (an
    ad-hoc experiment) the table's observed seeds are expected.
    """
    expected = [entry for entry in expected or [] if select(entry)]

    def row_of(identity: RunIdentity) -> tuple:
        return tuple(
            None if name in BLOCK_OPTIONS and not identity.calibrated else getattr(identity, name)
            for name in row_fields
        )

    def place(identity: RunIdentity) -> tuple:
        return identity.task, row_of(identity), identity.calibrated

    cells: dict[tuple, Cell] = {}
    for run in runs:
        if select(run.identity):
            key = (*place(run.identity), run.identity.setting, run.precision)
            cell = Cell(*place(run.identity), identity=run.identity, precision=run.precision)
            cells.setdefault(key, cell).runs.append(run)
    seeds: dict[tuple, set] = {}
    for entry in expected:
        seeds.setdefault(place(entry), set()).add(entry.seed)
    for position, entry in zip(map(place, expected), expected, strict=True):
        if not any(key[:3] == position for key in cells):
            cells[(*position, None, None)] = Cell(*position, identity=entry)
    observed_seeds = {run.identity.seed for cell in cells.values() for run in cell.runs}
    for key, cell in cells.items():
        cell.expected_seeds = seeds.get(key[:3], observed_seeds)

    baselines = {}
    for cell in sorted(cells.values(), key=lambda c: len(c.completed)):  # most completed runs wins
        if not cell.calibrated and cell.runs:
            baselines[cell.runs[0].identity.baseline, cell.precision] = cell
    for cell in cells.values():
        if cell.calibrated and cell.runs:
            cell.baseline = baselines.get((cell.runs[0].identity.baseline, cell.precision))

    grid_order = [place(entry) for entry in expected]
    order = {
        "task": _positions(task for task, _, _ in grid_order),
        "base": _positions(_base(row, row_fields) for _, row, _ in grid_order),
        "row": _positions(row for _, row, _ in grid_order),
    }

    def sort_key(cell: Cell) -> tuple:
        def index(kind: str, value: Any) -> tuple:
            return (order[kind][value], "") if value in order[kind] else (len(order[kind]), str(value))

        base = _base(cell.row, row_fields)
        setting = cell.runs[0].identity.setting if cell.runs else ""
        row = index("row", cell.row)
        return index("task", cell.task), index("base", base), cell.calibrated, row, setting, cell.precision or ""

    return sorted(cells.values(), key=sort_key)


def _positions(values: Iterable) -> dict[Any, int]:
    return {value: i for i, value in enumerate(dict.fromkeys(values))}


def _base(row: tuple, row_fields: tuple[str, ...]) -> tuple:
    return tuple(None if name in BLOCK_OPTIONS else value for name, value in zip(row_fields, row, strict=True))


def row_labels(cells: list[Cell], row_fields: tuple[str, ...]) -> dict[int, str]:
    """A readable label per cell: fields that vary within the table, ``+ RepCali`` for calibrated rows.

    Two settings that would share a label (e.g. one backbone run with two learning rates in one
    experiment) get their setting hash appended, and cells of one setting in two precisions their
    precision, so they are never mistaken for one another.
    """
    shown = [
        name
        for i, name in enumerate(row_fields)
        if i == 0 or len({cell.row[i] for cell in cells if cell.row[i] is not None}) > 1
    ]
    labels = {}
    for cell in cells:
        values = dict(zip(row_fields, cell.row, strict=True))
        base = " · ".join(str(values[name]) for name in shown if name not in BLOCK_OPTIONS)
        calib = ", ".join(ROW_FORMATS[name].format(values[name]) for name in shown if name in BLOCK_OPTIONS)
        labels[id(cell)] = base + (" + RepCali" + (f" ({calib})" if calib else "") if cell.calibrated else "")
    seen: dict[tuple, list[Cell]] = {}
    for cell in cells:
        seen.setdefault((cell.task, labels[id(cell)]), []).append(cell)
    for clash in (group for group in seen.values() if len(group) > 1):
        settings = {cell.runs[0].identity.setting if cell.runs else "missing" for cell in clash}
        for cell in clash:
            setting = cell.runs[0].identity.setting if cell.runs else "missing"
            parts = [setting] if len(settings) > 1 else []
            parts += [cell.precision] if len({c.precision for c in clash}) > 1 and cell.precision else []
            labels[id(cell)] += f" [{', '.join(parts)}]" if parts else ""
    return labels
