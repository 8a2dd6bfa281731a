"""Sweeps: every grid composes, cheaply and exactly; a tiny sweep runs, reruns with nothing to do, and feeds
status, the tables and t-SNE."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from repcali import grid, sweeps
from repcali.compose import Composer, compose, hydra_compose
from repcali.results import RESULTS_NAME, read_results
from repcali.runs import RunRecord
from tests import cli
from tests.test_console import assert_quiet
from tests.test_train import FAST

CHINESE_TASKS = {"csds", "lcsts"}


def grid_values(part: str) -> dict[str, set[str]]:
    """Swept and fixed values per key, from the override lists of the grid's points."""
    values: dict[str, set[str]] = {}
    for point in grid.points(part):
        for line in point.job:
            key, _, value = line.partition("=")
            values.setdefault(key.lstrip("+"), set()).add(value)
    return values


def all_parts() -> list[str]:
    """Every grid; a search (the λ search) is not one and has tests of its own (test_selection.py)."""
    return [part for name in sweeps.available() for part in sweeps.parts(name) if not sweeps.is_search(part)]


def test_every_sweep_is_listed_with_its_parts():
    assert set(sweeps.available()) >= {"smoke", "main_table", "glue_comparison", "ablations"}
    assert sweeps.parts("main_table") == ["main_table/en", "main_table/zh"]
    assert sweeps.parts("ablations/lambda") == ["ablations/lambda"]
    with pytest.raises(Exception, match="Fix: use one of"):
        sweeps.parts("no_such_sweep")


@pytest.mark.parametrize("part", all_parts())
def test_every_grid_composes(part):
    """Every point as train.py composes it (the composer equals Hydra's compose: below), through the grid
    cache that sweep-status and the tables read too."""
    points = grid.points(part)
    assert points and all(point.config["runs_dir"] == "runs" and point.identity.path for point in points)
    assert len(grid_values(part)["seed"]) >= 2, "a sweep reports seeds' spread"


def test_main_table_pairs_backbones_with_tasks_of_their_language():
    english, chinese = grid_values("main_table/en"), grid_values("main_table/zh")
    assert not english["task"] & CHINESE_TASKS and chinese["task"] == CHINESE_TASKS
    assert len(english["model"]) == 22 and len(chinese["model"]) == 4
    assert english["model"] & chinese["model"] == {"mt5_base"}  # multilingual: in both, on different tasks
    assert english["calib"] == chinese["calib"] == {"off", "tuned"} and english["seed"] == {"1", "2", "3"}


def test_ablations_share_one_experiment_and_one_baseline():
    parts = {part: grid_values(part) for part in sweeps.parts("ablations")}
    assert {value for values in parts.values() for value in values["calib"]} == {"off", "on"}
    assert parts["ablations/baseline"]["calib"] == {"off"}
    assert parts["ablations/lambda"]["calib.lam"] >= {"0.5", "1.0", "2.0"}
    assert parts["ablations/layernorm"]["calib.layernorm"] == {"post_add", "on_delta", "none"}
    assert parts["ablations/frozen"]["calib.train"] == {"full", "frozen"}


def test_the_composer_gives_exactly_what_full_composition_gives():
    """Each group option composed once and put in place, then value overrides on a copy: train.py's config."""
    overrides = ["model=tiny_t5,t5_small", "task=aclsum,xsum", "seed=1", "calib.lam=0.5", "trainer.max_steps=5"]
    with hydra_compose():
        jobs = grid.jobs("smoke", overrides)
        composer = Composer()
        for job in jobs:  # resolved() sets each job's values on one working config; composer() copies
            expected = OmegaConf.to_container(compose(job), resolve=True)
            assert composer.resolved(job) == expected == OmegaConf.to_container(composer(job), resolve=True), job
        default_lam = [line for line in jobs[-1] if not line.startswith("calib.lam=")]  # other keys: no leftovers
        assert composer.resolved(default_lam) == OmegaConf.to_container(compose(default_lam), resolve=True)
        assert composer.resolved(default_lam)["calib"]["lam"] == 1.0
    assert len(jobs) == 8 and len({point.run_dir for point in grid.compose_points("smoke", overrides)}) == 8


def test_status_reads_each_run_where_train_py_records_it_and_names_unreadable_records(tmp_path):
    overrides = [f"runs_dir={tmp_path}"]
    first, second = (point.run_dir for point in grid.points("smoke", overrides)[:2])
    first.mkdir(parents=True)
    (first / RESULTS_NAME).write_text('{"status": "comp')
    found = sweeps.status("smoke", overrides)
    assert [run.status for run in found] == ["invalid", "missing", "missing", "missing"]
    assert found[0].error.startswith("not JSON") and found[1].run_dir == second
    assert sweeps.format_status(found, lines=False) == "4 runs: 0 done, 0 failed, 0 running, 3 missing, 1 invalid"


SWEEP = ["+sweep=smoke", "seed=1", *FAST, "trainer.max_steps=2", "experiment_name=main_table"]


def sweep(runs_dir: Path, here: bool = False) -> subprocess.CompletedProcess:
    """``python train.py -m`` on SWEEP: in a process of its own, the user's command (``here``: in this one)."""
    command = ("train.py", "-m", *SWEEP, f"runs_dir={runs_dir}")
    return cli.here(*command) if here else cli.run(*command, timeout=900)


@pytest.mark.slow
def test_a_sweep_runs_reruns_nothing_and_feeds_status_tables_and_tsne(tmp_path):
    runs = tmp_path / "runs"
    first = sweep(runs)
    assert first.returncode == 0, first.stderr[-3000:]
    results = sorted(runs.rglob(RESULTS_NAME))
    assert len(results) == 2 and all(read_results(path.parent).status == "completed" for path in results)
    assert_quiet(first.stdout + first.stderr, [path.parent for path in results])  # no warning twice; losses logged
    stamps = [path.stat().st_mtime_ns for path in results]

    second = sweep(runs, here=True)
    assert second.returncode == 0 and second.stdout.count("Already completed; skipped") == 2
    assert [path.stat().st_mtime_ns for path in results] == stamps

    overrides = [line for line in SWEEP[1:] if line != "seed=1"] + [f"runs_dir={runs}"]
    done = sweeps.status("smoke", ["seed=1", *overrides])
    assert [run.status for run in done] == ["done", "done"] and {run.run_dir for run in done} == {
        path.parent for path in results
    }
    wider = sweeps.status("smoke", ["seed=1,2", *overrides])
    assert [run.status for run in wider] == ["done", "done", "missing", "missing"]
    with hydra_compose():  # seed 2, calib=off fails: recorded where train.py would record it
        cfg = Composer()(list(wider[2].job))
    record = RunRecord(wider[2].run_dir, cfg)
    record.results.precision = "fp32"  # as repcali.experiment records it, from the start
    record.fail(RuntimeError("CUDA out of memory"))
    listing = cli.here("-m", "repcali.sweeps", "status", "smoke", "seed=1,2", *overrides).stdout
    assert "failed   seed=2 calib=off" in listing and "(CUDA out of memory)" in listing
    assert listing.strip().endswith("4 runs: 2 done, 1 failed, 0 running, 1 missing")

    tables = cli.here("-m", "repcali.tables", "--runs", str(runs), "--out", str(tmp_path / "tables"))
    assert tables.returncode == 0, tables.stderr[-3000:]
    assert {path.name for path in (tmp_path / "tables").iterdir()} == {
        f"main_table.{suffix}" for suffix in ("md", "tex", "csv", "png")
    }
    markdown = (tmp_path / "tables" / "main_table.md").read_text()
    assert "| tiny_t5 | 1/2 · 1 failed |" in markdown and "| tiny_t5 + RepCali | 1/2 |" in markdown  # seed 2 seen

    calibrated = next(path.parent for path in results if "calib-on" in str(path))
    png = tmp_path / "tsne.png"
    tsne = cli.here("-m", "repcali.analysis.tsne", str(calibrated), "--out", str(png))
    assert tsne.returncode == 0, tsne.stderr[-3000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
