"""A plan that fits a budget: which of the paper's claims a sweep can test for so many GPU-hours, with how many seeds.

    python -m repcali.sweeps plan main_table --budget 200 --gpu h100
    python -m repcali.sweeps plan main_table --budget 200 --spread multiwoz:inform=2.0   # a spread, assumed

A claim is a row of :mod:`repcali.tables.paper` of kind ``delta`` whose table shows this sweep's runs and
whose backbone and task are a cell of its grid. It is tested, as the tables test it, by the seed-aware
test of :mod:`repcali.tables.seed_significance` (a RepCali cell against its ``calib=off`` baseline, seed
by seed); the seeds it needs are that test's :func:`~repcali.tables.seed_significance.seeds_needed` for
80 % power at α = 0.05 with the paper's own Δ as the true effect. The variance components come, in order:

1. ``--spread task:metric=std`` on the command line (the std of one run's score over seeds);
2. the cell's own paired runs under ``runs_dir`` (at least 3 paired seeds): the very test its table
   computes, its variance components (seeds and test set) taken as true;
3. the project's completed runs of the task with at least 3 seeds of one setting (the claim's backbone
   first, else any backbone), their pooled per-run std σ;
4. a published multi-seed fine-tuning study (:data:`PUBLISHED`) for that task and metric.

From a per-run σ (3, 4, 1), Δ's per-seed variance is 2σ² (RepCali and baseline runs taken as independent:
conservative where seeds share data order) and the test is the paired t-test over per-seed values, which
is the tables' test for corpus metrics (MultiWOZ's inform and success); for metrics that are means of
per-example scores (ROUGE) the tables' test adds the test set's sampling, so the seeds are a lower bound.

A Δ of unit ``unknown`` (the sources write "%": points or percent of the baseline) is planned at the
smaller of its two readings, the relative one taken of the baseline's mean in our runs, else of the
reference value in ``paper_numbers.csv``: a test with 80 % power at the smaller Δ has more at the larger.
Claims in one cell share its runs (seeds ``1..k`` of both sides, ``k`` the most any of them needs);
runs already completed cost nothing. The chosen set tests the most claims the budget allows (then the
cheapest); a cell whose spread is unknown gets a pilot of 3 seeds a side, if the budget leaves room,
which measures it for the next plan. The chosen cells are written as a sweep, one part per cell, whose
runs are the sweep's own (same identities): ``make sweep`` runs them, ``make tables`` shows them in the
sweep's table.
"""

from __future__ import annotations

import itertools
import math
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from repcali.config import PROJECT_ROOT
from repcali.metrics import missing_evaluator
from repcali.plan import GPUS, Pricing, resolved_on, run_cost
from repcali.results import find_results
from repcali.tables import paper
from repcali.tables import seed_significance as ss
from repcali.tables.cells import Cell, Run, stat
from repcali.tables.significance import cell_tests
from repcali.tables.specs import SPECS

# Published seed-to-seed spreads: (task, metric) -> (std of one run's score over seeds, in points; source).
PUBLISHED = {
    ("cnn_dailymail", "rouge2"): (
        0.065,
        "Raffel et al. 2020 (T5), Table 1: T5-base trained 10 times from scratch (initialisation and data order), "
        "CNN/DM validation ROUGE-2 F std 0.065",
    ),
}
PILOT_SEEDS = ss.MIN_SEEDS  # seeds a side that measure a cell's spread (and can already earn a star)


@dataclass
class Spread:
    """What a claim's test is planned with: a test whose variance components are taken as true, and their source."""

    test: ss.SeedTest
    source: str


@dataclass
class CellPlan:
    """A RepCali cell of the sweep's grid and its baseline: their points, cost and completed seeds."""

    task: str
    model: str
    method: str
    part: str
    ours: Any  # grid point of the RepCali side (any seed)
    theirs: Any  # grid point of the baseline side
    precision: str
    hours_per_pair: float  # one seed: a RepCali run and its baseline run
    done: dict[bool, set[int]] = field(default_factory=dict)  # calibrated -> completed seeds

    @property
    def name(self) -> str:
        return "_".join([self.task, self.model] + ([self.method] if self.method != "full" else []))

    def runs_to_go(self, seeds: int) -> int:
        wanted = set(range(1, seeds + 1))
        return sum(len(wanted - self.done.get(side, set())) for side in (True, False))

    def hours(self, seeds: int) -> float:
        return self.runs_to_go(seeds) * self.hours_per_pair / 2


@dataclass
class Claim:
    number: paper.PaperNumber
    cell: CellPlan | None = None
    delta: float | None = None  # the Δ planned for, in our points
    reading: str = ""  # how the paper's number became that Δ
    spread: Spread | None = None
    seeds: int | None = None
    left_out: str = ""  # why it cannot be planned (empty: it can)
    needs: str = ""  # what must be installed before its runs, or they record no score for it

    def describe(self) -> str:
        n = self.number
        return f"{n.task or '?'} {n.model or '(backbone not stated)'} {n.method} {n.metric} {n.value:+g}"


@dataclass
class BudgetPlan:
    name: str
    budget: float
    gpu: str
    precision: str
    claims: list[Claim]
    chosen: dict[str, int]  # cell name -> seeds a side (tests)
    pilots: dict[str, int]  # cell name -> seeds a side (spread unknown)
    cells: dict[str, CellPlan]
    notes: list[str]  # what else the sweep's tables hold that is not a claim
    efficiency: str  # where the MFU comes from
    spreads: dict[tuple[str, str], float] = field(default_factory=dict)  # given on the command line


def _planning_test(seed_mean_var: float, example_var: float = 0.0, examples: int = 1) -> ss.SeedTest:
    """A :class:`~repcali.tables.seed_significance.SeedTest` carrying assumed variance components, for
    :func:`~repcali.tables.seed_significance.seeds_needed` (which reads Δ, the components and the seeds)."""
    nan = np.float64(np.nan)
    return ss.SeedTest(
        *(nan,) * 7,
        seed_mean_var=np.float64(seed_mean_var),
        example_var=np.float64(example_var),
        seeds=ss.MIN_SEEDS,
        examples=examples,
        alpha=ss.ALPHA,
        method=ss.SEEDS_ONLY,
    )


def per_run_spread(std: float, source: str) -> Spread:
    """A claim's test planned from the std of one run's score over seeds: Δ per seed has variance 2σ²."""
    return Spread(_planning_test(2 * std**2), source)


def seeds_for(delta: float, spread: Spread) -> tuple[int | None, str]:
    """The paired seeds the tables' test needs for 80 % power at α = 0.05 if the true Δ is ``delta``."""
    return ss.seeds_needed(spread.test._replace(delta=np.float64(abs(delta))))


def _readings(number: paper.PaperNumber, baseline: float | None, baseline_source: str) -> tuple[float, str]:
    """The Δ a claim is planned at, in our points, and how it was read."""
    value = abs(number.value)
    if number.unit == "points":
        return value, "points"
    relative = value / 100 * baseline if baseline is not None else None
    if number.unit == "percent":
        return relative, f"{value:g} % of the baseline's {baseline:.4g} ({baseline_source})"
    if relative is None:
        return value, "unit unknown, read as points (no baseline value to read it as percent of)"
    if relative < value:
        return (
            relative,
            f"unit unknown: the smaller reading, {value:g} % of the baseline's {baseline:.4g} ({baseline_source})",
        )
    return value, f"unit unknown: the smaller reading, points (as percent of {baseline:.4g}: {relative:.3g})"


class OwnRuns:
    """The project's completed runs in one precision, for spreads and for seeds already done."""

    def __init__(self, runs_dir: Path, precision: str) -> None:
        found = find_results(runs_dir) if Path(runs_dir).is_dir() else None
        runs = [Run(path, results) for path, results in (found.runs if found else [])]
        self.runs = [run for run in runs if run.status == "completed" and run.precision == precision]
        self.runs_dir = runs_dir

    def of_setting(self, setting: str) -> list[Run]:
        return [run for run in self.runs if run.identity.setting == setting]

    def seeds(self, setting: str) -> set[int]:
        return {run.identity.seed for run in self.of_setting(setting)}

    def paired(self, cell: CellPlan, metric: str) -> Spread | None:
        """The tables' own test of the cell, where it has at least 3 paired seeds with the metric."""
        ours, theirs = (self.of_setting(point.identity.setting) for point in (cell.ours, cell.theirs))
        base = Cell(cell.task, (), False, cell.theirs.identity, cell.precision, theirs)
        made = Cell(cell.task, (), True, cell.ours.identity, cell.precision, ours, baseline=base)
        if len(made.paired_values(metric)) < ss.MIN_SEEDS:
            return None
        tested = cell_tests(made, [metric], metric).metrics[metric].seed_aware
        source = f"our {tested.seeds} paired seeds of this cell in {self.runs_dir} (the test its table computes)"
        return Spread(tested, source)

    def pooled(self, task: str, model: str, metric: str) -> Spread | None:
        """The pooled per-run std of settings of ``task`` with at least 3 seeds (``model``'s first)."""
        groups: dict[str, list[Run]] = defaultdict(list)
        for run in self.runs:
            if run.identity.task == task and _finite(run.results.metrics.get(metric)):
                groups[run.identity.setting].append(run)
        usable = {key: runs for key, runs in groups.items() if len(runs) >= ss.MIN_SEEDS}
        mine = {key: runs for key, runs in usable.items() if runs[0].identity.model == model}
        chosen = mine or usable
        if not chosen:
            return None
        stats = [stat(run.results.metrics[metric] for run in runs) for runs in chosen.values()]
        df = sum(s.n - 1 for s in stats)
        std = math.sqrt(sum((s.n - 1) * s.std**2 for s in stats) / df)
        models = sorted({runs[0].identity.model for runs in chosen.values()})
        seeds = sum(s.n for s in stats)
        source = (
            f"our runs in {self.runs_dir}: σ = {std:.3g} pooled over {len(stats)} setting(s) of {', '.join(models)}"
        )
        return per_run_spread(std, f"{source} ({seeds} runs)")


def _finite(value) -> bool:
    return value is not None and math.isfinite(float(value))


def claims_of(name: str) -> tuple[list[paper.PaperNumber], list[str]]:
    """The paper's numbers in the tables that show sweep ``name``'s runs: the claims of a Δ, and notes on the rest."""
    tables = {spec.name for spec in SPECS if any(part.split("/")[0] == name for part in spec.sweeps)}
    numbers = [number for number in paper.load() if number.table in tables]
    deltas = [number for number in numbers if number.kind == "delta"]
    notes = []
    for number in numbers:
        if number.kind == "claim":
            notes.append(f"{number.table}: {number.note} — not a Δ of a cell over its own baseline; left out.")
    references = [number for number in numbers if number.kind == "value"]
    if references:
        notes.append(
            f"{len(references)} value(s) beside our cells (baselines' own papers, parameter counts): no claim to test."
        )
    return deltas, notes


def _cells(parts: dict[str, list], pricing: Pricing, own: OwnRuns) -> dict[tuple, CellPlan]:
    """Every RepCali cell of the grid with its baseline: (task, model, method, metric-free) -> plan."""
    found: dict[tuple, CellPlan] = {}
    by_baseline: dict[str, Any] = {}
    for points in parts.values():
        for point in points:
            if not point.identity.calibrated:
                by_baseline.setdefault(point.identity.baseline, point)
    for part, points in parts.items():
        for point in points:
            identity = point.identity
            theirs = by_baseline.get(identity.baseline)
            key = (identity.task, identity.model, identity.method)
            if not identity.calibrated or theirs is None or key in found:
                continue
            cost = run_cost(point.config)
            precision, _ = resolved_on(pricing.gpu, cost.requested)
            if cost.missing or precision is None:
                continue
            hours = pricing.hours(cost, precision) + pricing.hours(run_cost(theirs.config), precision)
            cell = CellPlan(*key, part, point, theirs, precision, hours)
            cell.done = {True: own.seeds(identity.setting), False: own.seeds(theirs.identity.setting)}
            found[key] = cell
    return found


def _baseline_value(number: paper.PaperNumber, cell: CellPlan, own: OwnRuns) -> tuple[float | None, str]:
    values = [run.results.metrics.get(number.metric) for run in own.of_setting(cell.theirs.identity.setting)]
    mean = stat(values)
    if mean is not None:
        return mean.mean, f"our baseline's mean over {mean.n} seed(s)"
    for reference in paper.load():
        matches = (reference.table, reference.task, reference.model, reference.method, reference.metric)
        wanted = (number.table, number.task, number.model, number.method, number.metric)
        if reference.kind == "value" and reference.calib == "off" and matches == wanted:
            return reference.value, f"{reference.source}, {reference.note.split(';')[0]}"
    return None, ""


def plan_budget(
    name: str,
    parts: dict[str, list],
    budget: float,
    gpu_name: str = "h100",
    spreads: dict[tuple[str, str], float] | None = None,
    train_mfu: float | None = None,
    generate_mfu: float | None = None,
) -> BudgetPlan:
    """Which claims of the paper sweep ``name`` (``parts``: its grid points) can test within ``budget`` GPU-hours."""
    spreads = spreads or {}
    gpu = GPUS[gpu_name]
    requested = {run_cost(point.config).requested for points in parts.values() for point in points}
    precisions = {resolved_on(gpu, each)[0] for each in requested} - {None}
    precision = ", ".join(sorted(precisions)) or "none"
    pricing = Pricing(gpu, train_mfu, generate_mfu, precisions)
    runs_dirs = {point.config["runs_dir"] for points in parts.values() for point in points}
    own = OwnRuns(Path(sorted(runs_dirs)[0] if runs_dirs else "runs"), next(iter(sorted(precisions)), "fp32"))
    cells = _cells(parts, pricing, own)
    numbers, notes = claims_of(name)
    claims = [_claim(number, cells, own, spreads) for number in numbers]
    by_name = {cell.name: cell for cell in cells.values()}
    chosen = _choose(claims, budget)
    left = budget - sum(by_name[name].hours(seeds) for name, seeds in chosen.items())
    pilots: dict[str, int] = {}
    for claim in claims:
        cell = claim.cell
        unknown = claim.spread is None and cell is not None and not claim.left_out
        if unknown and cell.name not in {**chosen, **pilots} and cell.hours(PILOT_SEEDS) <= left:
            pilots[cell.name] = PILOT_SEEDS
            left -= cell.hours(PILOT_SEEDS)
    source = ", ".join(f"{each}: {pricing.of(each).source}" for each in sorted(precisions))
    return BudgetPlan(name, budget, gpu.name, precision, claims, chosen, pilots, by_name, notes, source, spreads)


def _claim(number: paper.PaperNumber, cells: dict, own: OwnRuns, spreads: dict) -> Claim:
    claim = Claim(number)
    if not number.model or not number.task:
        claim.left_out = "backbone not stated: the paper's number names no cell of ours to test it on"
        return claim
    cell = cells.get((number.task, number.model, number.method))
    if cell is None:
        claim.left_out = "no such RepCali cell (with its baseline) in the sweep's grid, or none this GPU can run"
        return claim
    claim.cell = cell
    claim.needs = missing_evaluator(number.metric) or ""
    baseline, baseline_source = _baseline_value(number, cell, own)
    claim.delta, claim.reading = _readings(number, baseline, baseline_source)
    if claim.delta is None:
        claim.left_out = "a relative Δ with no baseline value to take it of"
        return claim
    given = spreads.get((number.task, number.metric))
    if given is not None:
        claim.spread = per_run_spread(given, f"given on the command line: σ = {given:g} per run")
    else:
        claim.spread = own.paired(cell, number.metric) or own.pooled(number.task, number.model, number.metric)
    if claim.spread is None and (number.task, number.metric) in PUBLISHED:
        claim.spread = per_run_spread(*PUBLISHED[number.task, number.metric])
    if claim.spread is None:
        return claim  # a pilot measures it
    claim.seeds, why = seeds_for(claim.delta, claim.spread)
    if claim.seeds is None:
        claim.left_out = f"Δ too small to test in any budget ({why.removeprefix('unknown: ')})"
    return claim


def _choose(claims: list[Claim], budget: float) -> dict[str, int]:
    """Seeds a side per cell that test the most claims within ``budget`` (then the fewest GPU-hours).

    A cell tests its claims that need at most its seeds; so a cell's options are its claims' seeds. Exhaustive
    over the cells' options (the paper's claims are few)."""
    testable: dict[str, list[Claim]] = defaultdict(list)
    for claim in claims:
        if claim.seeds is not None and not claim.left_out:
            testable[claim.cell.name].append(claim)
    names = sorted(testable)
    options = [[0, *sorted({claim.seeds for claim in testable[name]})] for name in names]
    best: tuple[int, float, dict[str, int]] = (0, 0.0, {})
    for choice in itertools.product(*options):
        hours = sum(testable[name][0].cell.hours(seeds) for name, seeds in zip(names, choice, strict=True) if seeds)
        if hours > budget:
            continue
        tested = sum(
            claim.seeds <= seeds for name, seeds in zip(names, choice, strict=True) for claim in testable[name]
        )
        if (tested, -hours) > (best[0], -best[1]):
            best = (tested, hours, {name: seeds for name, seeds in zip(names, choice, strict=True) if seeds})
    return best[2]


def _range(seeds: int) -> str:
    return "seed 1" if seeds == 1 else f"seeds 1-{seeds}"


def report_budget(plan: BudgetPlan, written: Path | None = None) -> str:
    """The budget plan as text: chosen claims, pilots, left out and why, assumptions, and the sweep written."""
    lines = [
        f"Budget plan for sweep {plan.name}: {plan.budget:g} GPU-hours on {plan.gpu} GPUs in {plan.precision}. Each "
        f"chosen claim is tested by its table's seed-aware test (repcali/tables/seed_significance.py) with "
        f"{ss.POWER * 100:.0f} % power at α = {ss.ALPHA} if the paper's Δ is the true one.",
    ]
    tested = [
        c
        for c in plan.claims
        if c.cell and c.cell.name in plan.chosen and c.seeds and c.seeds <= plan.chosen[c.cell.name]
    ]
    lines.append(f"\nChosen: {len(tested)} claim(s), {_hours_runs(plan, plan.chosen)}" + (":" if tested else "."))
    for claim in tested:
        lines.append(f"  {claim.describe()}: Δ {claim.delta:.3g} ({claim.reading}); needs {claim.seeds} seeds a side")
    for name, seeds in plan.chosen.items():
        lines.append(f"  cell {name}: {_cell_line(plan.cells[name], seeds)}")
    if plan.pilots:
        lines.append(
            f"\nPilots (seed spread unknown: {PILOT_SEEDS} seeds a side measure it; plan again once they ran), "
            f"{_hours_runs(plan, plan.pilots)}:"
        )
        for name, seeds in plan.pilots.items():
            lines.append(f"  cell {name}: {_cell_line(plan.cells[name], seeds)}")
    scheduled = {**plan.chosen, **plan.pilots}
    needs = sorted({c.needs for c in plan.claims if c.needs and c.cell and c.cell.name in scheduled})
    if needs:
        lines.append("\nBefore make sweep (without it the runs record no score for those claims):")
        lines += [f"  {need}" for need in needs]
    lines.append("\nLeft out:")
    for claim in plan.claims:
        if claim in tested:
            continue
        lines.append(f"  {claim.describe()}: {_why_left(plan, claim)}")
    lines += [f"  {note}" for note in plan.notes]
    lines.append("\nAssumptions:")
    for claim in plan.claims:
        if claim.spread is not None:
            lines.append(f"  seed spread of {claim.number.task} {claim.number.metric}: {claim.spread.source}")
    lines.append(f"  MFU: {plan.efficiency}")
    if written is not None:
        shown = written.relative_to(PROJECT_ROOT) if written.is_relative_to(PROJECT_ROOT) else written
        lines.append(
            f"\nWritten: {shown}/ (make sweep SWEEP={written.name}; its runs are {plan.name}'s own, so make tables "
            f"shows them in {plan.name}'s cells)."
        )
    elif not plan.chosen and not plan.pilots:
        lines.append("\nNothing fits: no sweep written.")
    return "\n".join(lines)


def _hours_runs(plan: BudgetPlan, cells: dict[str, int]) -> str:
    runs = sum(plan.cells[name].runs_to_go(seeds) for name, seeds in cells.items())
    hours = sum(plan.cells[name].hours(seeds) for name, seeds in cells.items())
    return f"{runs} runs, {hours:,.1f} GPU-hours"


def _cell_line(cell: CellPlan, seeds: int) -> str:
    done = sum(len(cell.done.get(side, set()) & set(range(1, seeds + 1))) for side in (True, False))
    return (
        f"{_range(seeds)}, calib off and on: {cell.runs_to_go(seeds)} runs to go ({done} done), "
        f"{cell.hours_per_pair / 2:.2f} GPU-hours a run, {cell.hours(seeds):,.1f} GPU-hours"
    )


def affordable(cell: CellPlan, budget: float) -> int:
    """The most seeds a side ``budget`` GPU-hours buy for ``cell`` (completed runs are free)."""
    seeds = 0
    while seeds < ss.MAX_SEEDS and cell.hours(seeds + 1) <= budget:
        seeds += 1
    return seeds


def largest_spread(delta: float, seeds: int) -> float | None:
    """The largest per-run seed std σ at which ``seeds`` paired seeds give the tables' test 80 % power at ``delta``."""
    if seeds < ss.MIN_SEEDS:
        return None
    low, high = 0.0, abs(delta)
    while (seeds_for(delta, per_run_spread(high, ""))[0] or math.inf) <= seeds:
        low, high = high, 2 * high
    for _ in range(40):  # power falls as σ grows: bisect
        middle = (low + high) / 2
        low, high = (
            (middle, high) if (seeds_for(delta, per_run_spread(middle, ""))[0] or math.inf) <= seeds else (low, middle)
        )
    return low


def _why_left(plan: BudgetPlan, claim: Claim) -> str:
    if claim.left_out:
        return claim.left_out
    if claim.spread is None:
        pilot = "; a pilot is planned" if claim.cell.name in plan.pilots else ""
        seeds = affordable(claim.cell, plan.budget)
        sigma = largest_spread(claim.delta, seeds)
        within = (
            f"; the whole budget ({seeds} seeds a side) would test Δ {claim.delta:.3g} ({claim.reading}) "
            f"if a run's seed std is at most {sigma:.2f}"
            if sigma
            else ""
        )
        return (
            f"seed spread unknown (no runs of ours with {ss.MIN_SEEDS}+ seeds, no published multi-seed study of "
            f"{claim.number.task} {claim.number.metric} in repcali/budget.py PUBLISHED, none given with --spread)"
            + within
            + pilot
        )
    cost = claim.cell.hours(claim.seeds)
    return (
        f"too costly: Δ {claim.delta:.3g} ({claim.reading}) needs {claim.seeds} seeds a side, "
        f"{claim.cell.runs_to_go(claim.seeds)} runs, {cost:,.1f} GPU-hours"
        + (" (over the budget)" if cost > plan.budget else " (the budget went to more claims)")
    )


def write_sweep(plan: BudgetPlan, folder: Path, sweeps_dir: Path) -> Path | None:
    """Write the chosen cells and pilots as a sweep folder, one part per cell (replacing what the folder held).

    Each part is its source part (``defaults``, ``experiment_name``, ``precision``...) with a grid of the
    cell: its overrides, seeds ``1..k`` and both calib values, so its runs have the source sweep's identities."""
    if folder.exists():
        shutil.rmtree(folder)
    cells = {**plan.chosen, **plan.pilots}
    if not cells:
        return None
    folder.mkdir(parents=True)
    for name, seeds in cells.items():
        cell = plan.cells[name]
        source = yaml.safe_load((sweeps_dir / f"{cell.part}.yaml").read_text())
        params = dict(override.split("=", 1) for override in cell.ours.job if not override.startswith("+sweep="))
        theirs = dict(override.split("=", 1) for override in cell.theirs.job)
        params["seed"] = ",".join(str(seed) for seed in range(1, seeds + 1))
        params["calib"] = f"{theirs['calib']},{params['calib']}"
        source.setdefault("hydra", {}).setdefault("sweeper", {})["params"] = params
        why = "tests" if name in plan.chosen else "pilot, measures the seed spread of"
        claims = [c.describe() for c in plan.claims if c.cell is cell] or [name]
        given = "".join(f" --spread {task}:{metric}={std:g}" for (task, metric), std in plan.spreads.items())
        gpu = next(key for key, each in GPUS.items() if each.name == plan.gpu)
        command = f"python -m repcali.sweeps plan {plan.name} --budget {plan.budget:g} --gpu {gpu}{given}"
        header = (
            "# @package _global_\n"
            f"# Written by `{command}` (repcali/budget.py):\n"
            f"# {why}: {'; '.join(claims)}.\n"
            f"# The runs of {cell.part} for this cell, {_range(seeds)}: the same run directories.\n"
        )
        (folder / f"{name}.yaml").write_text(header + yaml.safe_dump(source, sort_keys=False, allow_unicode=True))
    return folder
