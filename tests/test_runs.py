"""Run identity and records: the directory follows the config; results.json is written atomically."""

import json

from omegaconf import OmegaConf

from repcali.config import TrainConfig, run_path
from repcali.runs import RESULTS_NAME, RunRecord, read_results, write_json_atomic


def config(**overrides):
    base = OmegaConf.structured(TrainConfig)
    required = {"model": {"name": "m", "name_or_path": "x", "family": "t5"}, "task": {"name": "t"}}
    return OmegaConf.merge(base, required, overrides)


def test_run_path_is_readable_stable_and_sensitive_to_every_identity_key():
    path = run_path(config())
    assert path.startswith("default/t/m/full/calib-off/seed42-")
    assert run_path(config()) == path
    changed = [
        config(calib={"lam": 0.5}),
        config(seed=1),
        config(trainer={"learning_rate": 1.0}),
        config(task={"data_files": {"train": "other.jsonl"}}),
    ]
    assert len({run_path(c) for c in changed} | {path}) == 5
    unchanged = [config(logger={"name": "wandb"}), config(rerun=True), config(runs_dir="elsewhere")]
    assert {run_path(c) for c in unchanged} == {path}


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_json_atomic(tmp_path / "a" / "results.json", {"x": float("nan")})
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["results.json"]
    assert json.loads((tmp_path / "a" / "results.json").read_text().replace("NaN", "null")) == {"x": None}


def test_record_lifecycle_and_archiving(tmp_path):
    cfg = config()
    first = RunRecord(tmp_path, cfg)
    first.start()
    assert read_results(tmp_path)["status"] == "running"
    first.complete()
    done = read_results(tmp_path)
    assert done["status"] == "completed" and done["timings"]["total_s"] >= 0 and done["versions"]["omegaconf"]
    second = RunRecord(tmp_path, cfg)
    second.start()
    second.fail(ValueError("boom"))
    assert read_results(tmp_path)["error"] == {"type": "ValueError", "message": "boom"}
    archived = [p for p in tmp_path.iterdir() if p.name != RESULTS_NAME]
    assert len(archived) == 1 and json.loads(archived[0].read_text()) == done
