"""The protocol: validation during training selects the scored checkpoint, never on the reported split;
early stopping; the λ search on validation with Hydra's Optuna sweeper, and where its best λ goes."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from repcali import checkpoints, sweeps, tuning
from repcali.checkpoints import CHECKPOINTS_DIR, _rotate, write_manifest
from repcali.errors import RepCaliError
from repcali.identity import RunIdentity
from repcali.results import read_results
from repcali.selection import check_selection
from tests import cli
from tests.grid import FIXTURES, ROOT
from tests.test_train import FAST

XSUM = FIXTURES / "xsum"
# FAST with model selection on: a validation every step on the 8 validation rows of the fixture
SELECT = [
    *(o for o in FAST if not o.startswith(("trainer.eval_strategy=", "trainer.max_steps="))),
    f"task.data_files.validation={XSUM}/validation.jsonl",
    "trainer.eval_strategy=steps",
    "trainer.eval_steps=1",
]


def test_selection_is_refused_on_the_reported_split_and_holds_out_train_instead(compose_train):
    """By the split's name, by the hub split it maps to, by its file: each is the reported split."""
    rte = ["task=rte", "trainer.eval_strategy=steps"]
    with pytest.raises(RepCaliError, match="select on the reported split. Fix: task.selection.split=train_holdout"):
        check_selection(compose_train(*rte, "task.selection.split=validation"))
    check_selection(compose_train(*rte))  # the task's default: a held-out part of train
    with pytest.raises(RepCaliError, match="reported split"):
        check_selection(compose_train("task.splits.validation=test"))
    test_file = "task.data_files.test=assets/aclsum/validation.jsonl"
    with pytest.raises(RepCaliError, match="reported split"):
        check_selection(compose_train(test_file))
    with pytest.raises(RepCaliError, match=r"task.selection.metric=bleu is not computed .* Fix: one of rouge1"):
        check_selection(compose_train("task.selection.metric=bleu"))
    check_selection(compose_train("task=rte", "task.selection.split=validation", "trainer.eval_strategy=no"))


def test_held_out_sources_are_never_trained_on_and_do_not_depend_on_order_or_cap():
    """CommonGen: rows of a concept set share a source; the held-out ones take all their rows."""
    from datasets import Dataset
    from omegaconf import OmegaConf

    from repcali.config import TaskConfig
    from repcali.data import format_rows, split_by_source

    task = OmegaConf.to_container(
        OmegaConf.merge(OmegaConf.structured(TaskConfig), OmegaConf.load(ROOT / "conf/task/common_gen.yaml")),
        resolve=True,
    )
    concepts = [["dog", "run"], ["cat", "sit"], ["sun", "rise"], ["boy", "kick"], ["bird", "sing"]]
    rows = Dataset.from_dict(  # five concept sets, two targets each
        {
            "concept_set_idx": [i for i in range(5) for _ in range(2)],
            "concepts": [c for c in concepts for _ in range(2)],
            "target": [f"{' '.join(c)} {k}" for c in concepts for k in range(2)],
        }
    )

    def sources(dataset) -> list[str]:
        return [ex.source for ex in format_rows(dataset.to_dict(), task, "", list(range(len(dataset))))]

    held, train = split_by_source(rows, task, "", 2)
    assert len(set(sources(held))) == 2 and len(held) == 4  # whole concept sets, both rows of each
    assert not set(sources(held)) & set(sources(train)) and len(held) + len(train) == len(rows)
    shuffled, _ = split_by_source(rows.shuffle(seed=3), task, "", 2)
    assert sorted(sources(shuffled)) == sorted(sources(held))
    larger, _ = split_by_source(rows, task, "", 3)
    assert set(sources(held)) < set(sources(larger))


def test_rotation_keeps_the_newest_and_never_the_best_away(tmp_path):
    for step in (2, 4, 6, 8):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text("{}")
        write_manifest(folder)
    _rotate(tmp_path, keep=1, best=str(tmp_path / "checkpoint-4"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-8"]


@pytest.mark.slow
def test_the_best_validated_checkpoint_is_the_model_scored_and_early_stopping_stops(
    tmp_path, monkeypatch, compose_train
):
    """In process (checkpoints kept to compare with): the run stops `patience` evaluations after its
    best, records the curve and the selected step, and the model it scores and saves is that step's."""
    from repcali.experiment import run_experiment

    monkeypatch.setattr(checkpoints, "remove_checkpoints", lambda run_dir: None)  # keep them to compare with
    overrides = [*SELECT, "trainer.max_steps=12", "task.selection.patience=2", "checkpoint.keep=1", "calib=on"]
    cfg = compose_train(*overrides, f"runs_dir={tmp_path}")
    run_dir = tmp_path / RunIdentity.of(cfg).path
    outcome = run_experiment(cfg, run_dir)
    assert outcome.error is None, outcome.error
    selection = read_results(run_dir).selection
    scores = [point["score"] for point in selection.curve]
    steps = [point["step"] for point in selection.curve]
    assert (selection.split, selection.scored_split, selection.metric) == ("validation", "test", "rouge1")
    assert selection.n_examples == 8 and steps == list(range(1, len(steps) + 1))  # eval_steps=1
    assert selection.best_score == max(scores) and selection.best_step == steps[scores.index(max(scores))]
    assert selection.stopped_early and steps[-1] == selection.best_step + 2 < 12  # patience 2, then it stopped
    assert selection.checkpoint == f"checkpoint-{selection.best_step}"

    folders = {p.name for p in (run_dir / CHECKPOINTS_DIR).iterdir()}
    assert folders == {selection.checkpoint, f"checkpoint-{steps[-1]}"}  # keep=1, and the best is never rotated
    best = load_file(run_dir / CHECKPOINTS_DIR / selection.checkpoint / "model.safetensors")
    last = load_file(run_dir / CHECKPOINTS_DIR / f"checkpoint-{steps[-1]}" / "model.safetensors")
    saved = load_file(run_dir / "model" / "model.safetensors")
    assert set(saved) <= set(best)  # the block is saved beside the backbone (repcali.safetensors)
    assert all((tensor == best[name]).all() for name, tensor in saved.items())
    assert any((tensor != last[name]).any() for name, tensor in saved.items())
    block = load_file(run_dir / "model" / "repcali.safetensors")
    best_block = load_file(run_dir / CHECKPOINTS_DIR / selection.checkpoint / "repcali.safetensors")
    assert all((block[name] == tensor).all() for name, tensor in best_block.items())
    assert math.isfinite(read_results(run_dir).metrics["rouge1"])  # scored once, on test


def search(runs_dir: Path, tuned: Path, *overrides: str):
    """Three trials on the tiny default (tiny T5, ACLSum), 4 steps each, 8 validation abstracts (Hydra's Optuna
    sweeper and basic launcher, in this process)."""
    return cli.here(
        "train.py",
        "-m",
        "+sweep=lambda_search",
        "trainer.max_steps=4",
        "task.selection.max_samples=8",
        "hydra.sweeper.n_trials=3",
        f"runs_dir={runs_dir}",
        f"tuned_file={tuned}",
        *overrides,
    )


@pytest.mark.slow
def test_the_lambda_search_maximises_the_validation_metric_and_writes_its_best_lambda(tmp_path, compose_train):
    tuned = tmp_path / "tuned.yaml"
    process = search(tmp_path / "runs", tuned)
    assert process.returncode == 0, process.stderr[-3000:]
    search_dir = tmp_path / "runs" / "lambda_search" / "aclsum" / "tiny_t5"
    trials = [read_results(path.parent) for path in sorted(search_dir.rglob("results.json"))]
    assert len(trials) == 3 and len({t.identity.lam for t in trials}) == 3
    for trial in trials:  # judged on validation alone: no test score was even computed
        assert trial.status == "completed" and trial.experiment == "lambda_search"
        assert trial.selection.split == "validation" and set(trial.metrics) == {"train_loss"}
        assert not (Path(trial.run_dir) / "predictions.jsonl").exists()
        assert Path(trial.run_dir).parent.parent.parent == search_dir  # a run's directory, as for any run
    scores = [t.selection.best_score for t in trials]
    assert len(set(scores)) > 1, f"the trials tie ({scores}): nothing to maximise; give them more steps"
    entry = yaml.safe_load(tuned.read_text())["tiny_t5"]["aclsum"]
    assert entry["validation_score"] == max(scores)
    assert entry["lam"] in {t.identity.lam for t in trials if t.selection.best_score == max(scores)}
    assert (entry["metric"], entry["split"], entry["trials"]) == ("rouge1", "validation", 3)
    assert json.dumps(entry)  # plain values

    # calib=tuned runs that λ; the same file, written again from the search's folder, is unchanged
    cfg = compose_train("calib=tuned", f"tuned_file={tuned}")
    assert cfg.calib.lam == entry["lam"] and cfg.calib.name == "on"
    listing = cli.here("-m", "repcali.sweeps", "tune", str(search_dir))
    assert listing.returncode == 0, listing.stderr
    rewritten = yaml.safe_load(tuned.read_text())["tiny_t5"]["aclsum"]
    assert {k: v for k, v in rewritten.items() if k != "written_at"} == {
        k: v for k, v in entry.items() if k != "written_at"
    }

    again = search(tmp_path / "runs", tuned)  # resumed: the same λ values, read back, nothing trained
    assert again.returncode == 0 and again.stdout.count("Already completed; skipped") == 3


def test_calib_tuned_reads_the_searched_lambda_and_falls_back_to_one(compose_train, tmp_path):
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text(yaml.safe_dump({"tiny_t5": {"aclsum": {"lam": 0.25}}}))
    searched = compose_train("calib=tuned", f"tuned_file={tuned}")
    untuned = compose_train("calib=tuned", "task=xsum", f"tuned_file={tuned}")
    plain = compose_train("calib=on", "task=xsum")
    assert searched.calib.lam == 0.25 and untuned.calib.lam == 1.0
    assert RunIdentity.of(untuned).path == RunIdentity.of(plain).path  # λ = 1.0: the calib=on run itself
    assert RunIdentity.of(searched).lam == 0.25


def test_a_missing_searched_lambda_is_said_once_however_many_pairs_lack_one(compose_train, monkeypatch, caplog):
    """Composing the main table resolves ~130 pairs without a searched λ: one warning, not one per pair."""
    monkeypatch.setattr(tuning, "_warned", set())
    with caplog.at_level(logging.DEBUG, logger="repcali"):
        lams = [compose_train("calib=tuned", f"task={task}").calib.lam for task in ("xsum", "webnlg", "xsum")]
    assert lams == [1.0, 1.0, 1.0]
    said = [(r.levelno, r.getMessage()) for r in caplog.records if "no λ searched" in r.getMessage()]
    assert [level for level, _ in said] == [logging.WARNING, logging.DEBUG]  # xsum, then webnlg; xsum not again
    assert "no λ searched for tiny_t5 on xsum" in said[0][1] and "Fix: run the λ search" in said[0][1]


def test_a_search_is_listed_as_one_and_status_names_it_instead_of_a_grid(capsys):
    assert sweeps.is_search("lambda_search") and not sweeps.is_search("smoke")
    sweeps.main(["list"])
    assert "lambda_search: lambda_search (a search: trials chosen as it runs)" in capsys.readouterr().out
    sweeps.main(["status", "lambda_search"])
    assert "a search, not a grid" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="No trials"):
        sweeps.main(["tune", str(ROOT / "assets")])
