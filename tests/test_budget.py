"""The budget planner: its seeds give the tables' test 80 % power (checked by simulation), it reads spreads from
our own runs, chooses claims within the budget, says why it leaves the others out, and writes a sweep whose runs
are the main table's own."""

from __future__ import annotations

import importlib.util
import os
import shutil

import numpy as np
import pytest
from omegaconf import OmegaConf

from repcali import budget, grid, sweeps
from repcali.grid import GridPoint
from repcali.identity import RunIdentity
from repcali.metrics import MWZEVAL_MISSING
from repcali.runs import RunRecord
from repcali.tables import seed_significance as ss
from tests.test_seed_significance import EXAMPLE_SD, EXAMPLES, INTERACTION_SD, SEED_SD, simulate

REPLICATES = 4000  # binomial SE of an 80 % rate: 0.0063


def star_rate(differences: np.ndarray, crossed: bool) -> float:
    result = ss.seed_test(differences) if crossed else ss.seed_test_from_seeds(differences)
    return float(result.star.mean())


def within(rate: float, power: float, replicates: int = REPLICATES) -> float:
    return 3 * np.sqrt(power * (1 - power) / replicates)


@pytest.mark.parametrize(("std", "delta"), [(2.0, 3.49), (4.0, 4.02)])
def test_seeds_planned_from_a_per_run_spread_give_80_percent_power_in_simulation(std, delta):
    """Runs of a baseline and of RepCali, each seed's score N(μ, σ²), RepCali's shifted by the paper's Δ: the
    tables' test (the paired t-test over per-seed values, as for MultiWOZ's inform) stars ≥ 80 % of replicates
    at the planned seeds and < 80 % at one seed fewer."""
    seeds, why = budget.seeds_for(delta, budget.per_run_spread(std, "assumed"))
    assert seeds is not None and seeds > ss.MIN_SEEDS, why
    rng = np.random.default_rng(seeds)
    for k, enough in ((seeds, True), (seeds - 1, False)):
        baseline = rng.normal(80.0, std, (k, REPLICATES))
        ours = rng.normal(80.0 + delta, std, (k, REPLICATES))
        rate = star_rate(ours - baseline, crossed=False)
        predicted = ss.power(k, delta, 2 * std**2)
        assert rate == pytest.approx(predicted, abs=within(rate, 0.8))
        assert (rate >= 0.8 - within(rate, 0.8)) if enough else (rate < 0.8 + within(rate, 0.8))


def test_seeds_planned_from_a_cells_own_crossed_test_give_80_percent_power_in_simulation():
    """From a cell's paired runs with per-example scores (ROUGE): its seeds × examples variance components."""
    components = budget._planning_test(SEED_SD**2 + INTERACTION_SD**2 / EXAMPLES, EXAMPLE_SD**2, EXAMPLES)
    delta = 6.0
    seeds, _ = budget.seeds_for(delta, budget.Spread(components, "our runs"))
    replicates = 2000
    for k, enough in ((seeds, True), (seeds - 1, False)):
        rate = star_rate(simulate(np.random.default_rng(k), k, replicates, effect=delta), crossed=True)
        bound = within(rate, 0.8, replicates)
        assert (rate >= 0.8 - bound) if enough else (rate < 0.8 + bound), (k, rate)


@pytest.fixture(scope="module")
def multiwoz(tmp_path_factory):
    """The main table's BART-large × MultiWOZ cell (6 points: calib off and tuned, seeds 1-3), in a runs folder of
    its own."""
    runs_dir = tmp_path_factory.mktemp("runs")
    points = grid.points("main_table/en", ["model=bart_large", "task=multiwoz"])
    moved = [GridPoint(point.job, {**point.config, "runs_dir": str(runs_dir)}) for point in points]
    return runs_dir, {"main_table/en": moved}


def write(runs_dir, point: GridPoint, inform: float, success: float) -> None:
    """A completed run of a grid point as the run records it, in bf16 (its pinned precision, on a GPU)."""
    cfg = OmegaConf.create(point.config)
    record = RunRecord(runs_dir / RunIdentity.of(cfg).path, cfg)
    record.results.precision = "bf16"
    record.start()
    record.results.metrics = {"inform": inform, "success": success}
    record.complete()


def test_without_a_known_spread_a_pilot_measures_it_and_the_claims_left_out_say_why(multiwoz):
    _, parts = multiwoz
    plan = budget.plan_budget("main_table", parts, budget=200)
    assert plan.precision == "bf16" and plan.chosen == {} and plan.pilots == {"multiwoz_bart_large": 3}
    cell = plan.cells["multiwoz_bart_large"]
    assert cell.runs_to_go(3) == 6 and cell.hours(3) == pytest.approx(3 * cell.hours_per_pair)
    text = budget.report_budget(plan)
    inform = next(claim for claim in plan.claims if claim.number.metric == "inform")
    assert inform.delta == pytest.approx(4.11 / 100 * 84.9)  # unit unknown: the smaller reading, % of MinTL's 84.9
    assert "seed spread unknown" in text and "a pilot is planned" in text
    assert "xsum (backbone not stated) full rouge1 +0.11: backbone not stated" in text
    if importlib.util.find_spec("mwzeval") is None:  # not on PyPI: the pilot would record no inform or success
        assert inform.needs == MWZEVAL_MISSING and "Before make sweep (without it" in text and MWZEVAL_MISSING in text
    seeds = budget.affordable(cell, 200)
    sigma = budget.largest_spread(inform.delta, seeds)
    assert f"the whole budget ({seeds} seeds a side)" in text and f"at most {sigma:.2f}" in text
    assert budget.seeds_for(inform.delta, budget.per_run_spread(sigma, ""))[0] <= seeds
    assert budget.seeds_for(inform.delta, budget.per_run_spread(1.01 * sigma, ""))[0] > seeds
    assert any("not a Δ of a cell over its own baseline" in note for note in budget.claims_of("glue_comparison")[1])


def test_a_spread_given_on_the_command_line_plans_each_claims_seeds(multiwoz):
    _, parts = multiwoz
    spreads = {("multiwoz", "inform"): 2.0, ("multiwoz", "success"): 3.0}
    plan = budget.plan_budget("main_table", parts, budget=200, spreads=spreads)
    needed = {
        c.number.metric: budget.seeds_for(c.delta, budget.per_run_spread(spreads["multiwoz", c.number.metric], ""))[0]
        for c in plan.claims
        if c.cell
    }
    assert plan.chosen == {"multiwoz_bart_large": max(needed.values())} and not plan.pilots
    assert {c.number.metric: c.seeds for c in plan.claims if c.cell} == needed
    assert "given on the command line: σ = 2 per run" in budget.report_budget(plan)


def test_our_paired_runs_give_the_spread_the_baseline_and_the_seeds_done(multiwoz):
    """Three seeds each way: the claims are planned with this cell's own test (the paired t-test over seeds for
    MultiWOZ's corpus metrics), Δ read against our baseline's mean, and the 6 runs done cost nothing."""
    runs_dir, parts = multiwoz
    off = {1: (85.0, 75.0), 2: (83.0, 74.0), 3: (87.0, 76.0)}
    gains = {1: (1.0, 6.0), 2: (5.0, 3.0), 3: (-2.0, 4.5)}
    for point in parts["main_table/en"]:
        seed = point.identity.seed
        base = off[seed]
        scores = [b + g for b, g in zip(base, gains[seed], strict=True)] if point.identity.calibrated else base
        write(runs_dir, point, *scores)
    plan = budget.plan_budget("main_table", parts, budget=10_000)
    claims = {claim.number.metric: claim for claim in plan.claims if claim.cell}
    for metric, index, paper in (("inform", 0, 4.11), ("success", 1, 5.37)):
        claim = claims[metric]
        differences = np.array([gains[seed][index] for seed in (1, 2, 3)])
        baseline = np.mean([off[seed][index] for seed in (1, 2, 3)])
        assert claim.delta == pytest.approx(min(paper, paper / 100 * baseline))
        assert "our baseline's mean over 3 seed(s)" in claim.reading or claim.delta == paper
        assert float(claim.spread.test.seed_mean_var) == pytest.approx(differences.var(ddof=1))
        assert claim.spread.source.startswith("our 3 paired seeds of this cell")
        by_hand = next(k for k in range(3, 1000) if ss.power(k, claim.delta, differences.var(ddof=1)) >= 0.8)
        assert claim.seeds == by_hand
    seeds = max(claim.seeds for claim in claims.values())
    cell = plan.cells["multiwoz_bart_large"]
    assert plan.chosen == {"multiwoz_bart_large": seeds} and cell.runs_to_go(seeds) == 2 * seeds - 6

    fewer = min(claim.seeds for claim in claims.values())  # a budget for the cheaper claim only
    tight = budget.plan_budget("main_table", parts, budget=cell.hours(fewer) + 0.01)
    assert tight.chosen == {"multiwoz_bart_large": fewer}
    costly = next(claim for claim in tight.claims if claim.cell and claim.seeds > fewer)
    assert "too costly" in budget._why_left(tight, costly) and "(over the budget)" in budget._why_left(tight, costly)

    folder = sweeps.SWEEPS_DIR / f"_test_budget_{os.getpid()}"
    try:
        assert budget.write_sweep(plan, folder, sweeps.SWEEPS_DIR) == folder
        written = grid.compose_points(f"{folder.name}/multiwoz_bart_large")
        main = [p.identity for p in parts["main_table/en"]]
        assert {p.identity.setting for p in written} == {identity.setting for identity in main}
        assert {p.identity.seed for p in written} == set(range(1, seeds + 1)) and len(written) == 2 * seeds
        assert {p.identity.path for p in written} >= {identity.path for identity in main}  # the main table's runs
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_plan_command_with_a_budget(capsys):
    sweeps.main(["plan", "smoke", "--budget", "5"])
    out = capsys.readouterr().out
    assert "Budget plan for sweep smoke: 5 GPU-hours" in out and "Nothing fits: no sweep written." in out
    assert not (sweeps.SWEEPS_DIR / "smoke_budget").exists()
    with pytest.raises(SystemExit):
        sweeps.main(["plan", "smoke", "--budget", "5", "--spread", "multiwoz=2"])
    assert "is not task:metric=std" in capsys.readouterr().err
