"""A run: its identity names its directory; its record (results.json) is typed, validated and atomic."""

import json
from dataclasses import dataclass

import pytest
from omegaconf import OmegaConf

from repcali.config import TrainConfig
from repcali.identity import RunIdentity
from repcali.results import RESULTS_NAME, InvalidResults, Owner, Results, _build, find_results, read_results
from repcali.runs import RunRecord, write_json_atomic
from tests.grid import FIXTURES

SCHEMA_1 = FIXTURES / "results_v1"
# Directory names, setting and baseline hashes as the code before RunIdentity computed them
# (config.run_path and tables/cells.py), for the two schema-1 records: existing runs keep their names.
ON = "smoke/aclsum/tiny_t5/full/calib-on/seed1-7c184fea"
OFF = "smoke/aclsum/tiny_t5/full/calib-off/seed1-aeab1a16"
HASHES = {ON: ("0879e22e", "e7723d18"), OFF: ("57418ec7", "e7723d18")}


def config(**overrides):
    base = OmegaConf.structured(TrainConfig)
    required = {"model": {"name": "m", "name_or_path": "x", "family": "t5"}, "task": {"name": "t"}}
    return OmegaConf.merge(base, required, overrides)


@pytest.mark.parametrize("path", [ON, OFF])
def test_schema_1_records_read_and_their_identity_is_their_directory(path):
    results = read_results(SCHEMA_1 / path)
    assert results.schema_version == 1 and results.identity.path == path
    assert (results.identity.setting, results.identity.baseline) == HASHES[path]
    assert RunIdentity.of(OmegaConf.create(results.config)) == results.identity  # composed or read: one identity


def test_identity_fields():
    on, off = (read_results(SCHEMA_1 / path).identity for path in (ON, OFF))
    names = (on.experiment, on.task, on.model, on.method, on.calib, on.seed)
    assert names == ("smoke", "aclsum", "tiny_t5", "full", "on", 1)
    assert (on.calibrated, on.lam, on.layernorm, on.train) == (True, 0.5, "post_add", "full")
    assert not off.calibrated and off.baseline == on.baseline and off.setting != on.setting
    assert RunIdentity.of(config(calib={"lam": 1})).lam == 1.0 and isinstance(RunIdentity.of(config()).lam, float)


def test_run_path_is_readable_stable_and_sensitive_to_every_identity_key():
    path = RunIdentity.of(config()).path
    assert path.startswith("default/t/m/full/calib-off/seed42-")
    changed = [
        config(calib={"lam": 0.5}),
        config(seed=1),
        config(trainer={"learning_rate": 1.0}),
        config(task={"data_files": {"train": "other.jsonl"}}),
    ]
    assert len({RunIdentity.of(c).path for c in changed} | {path}) == 5
    unchanged = [config(), config(logger={"name": "wandb"}), config(rerun=True), config(runs_dir="elsewhere")]
    assert {RunIdentity.of(c).path for c in unchanged} == {path}


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_json_atomic(tmp_path / "a" / "results.json", {"x": float("nan")})
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["results.json"]
    assert json.loads((tmp_path / "a" / "results.json").read_text().replace("NaN", "null")) == {"x": None}


def test_record_lifecycle_and_archiving(tmp_path):
    cfg = config()
    first = RunRecord(tmp_path, cfg)
    first.results.owner = Owner(host="node1", pid=7, process_started=1.5e9, since="2026-11-30T00:00:00+00:00")
    first.start()
    assert read_results(tmp_path).status == "running"
    first.results.metrics = {"rouge1": 1.5}
    first.complete()
    done = read_results(tmp_path)
    assert done == first.results and done.schema_version == 2 and done.identity == RunIdentity.of(cfg)
    assert done.status == "completed" and done.timings["total_s"] >= 0 and done.versions["omegaconf"]
    assert done.owner.describe() == "pid 7 on node1 since 2026-11-30T00:00:00+00:00"
    assert (done.experiment, done.model, done.calib, done.seed) == ("default", "m", "off", 42)
    second = RunRecord(tmp_path, cfg)
    second.start()
    second.fail(ValueError("boom"))
    assert read_results(tmp_path).error.message == "boom" and read_results(tmp_path).error.type == "ValueError"
    archived = [p for p in tmp_path.iterdir() if p.name != RESULTS_NAME]
    assert len(archived) == 1 and json.loads(archived[0].read_text()) == done.to_json()


def broken(data: dict) -> list[tuple[str, str]]:
    """Hand edits of a valid record, each with what the reader should say about it."""
    return [
        (json.dumps(data)[:200], "not JSON"),
        (json.dumps({**data, "seed": "one"}), "field seed is str, not int"),
        (json.dumps({**data, "status": "done"}), "status 'done' is not one of"),
        (json.dumps({**data, "error": {"type": "X"}}), "field error.message is missing"),
        (json.dumps({**data, "schema_version": 7}), "schema_version 7"),
        (json.dumps({k: v for k, v in data.items() if k != "config"}), "field config is missing"),
        (json.dumps({**data, "config": {"model": {}}}), "its config cannot tell which run it is"),
        (json.dumps({**data, "metrics": {"rouge1": "20.1"}}), "field metrics.rouge1 is str, not a number"),
        (json.dumps({**data, "owner": {"host": "h", "pid": "7"}}), "field owner.pid is str, not int"),
        ("[]", "not a JSON object"),
    ]


def test_unreadable_records_are_problems_by_path_and_the_others_still_count(tmp_path):
    valid = (SCHEMA_1 / ON / RESULTS_NAME).read_text()
    cases = broken(json.loads(valid))
    for i, (text, _) in enumerate(cases):
        (tmp_path / f"run{i}").mkdir()
        (tmp_path / f"run{i}" / RESULTS_NAME).write_text(text)
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / RESULTS_NAME).write_text(valid)
    found = find_results(tmp_path)
    assert [path.name for path, _ in found.runs] == ["good"]
    problems = {problem.path.parent.name: problem.reason for problem in found.problems}
    assert len(problems) == len(cases)
    for i, (_, reason) in enumerate(cases):
        assert reason in problems[f"run{i}"], problems[f"run{i}"]
    with pytest.raises(InvalidResults, match=f"{tmp_path / 'run0' / RESULTS_NAME}: not JSON.*Fix: "):
        read_results(tmp_path / "run0")
    assert read_results(tmp_path / "nowhere") is None  # no file: not a problem, a run not run


def test_a_new_record_replaces_an_unreadable_one_and_keeps_it_aside(tmp_path):
    (tmp_path / RESULTS_NAME).write_text('{"status": "compl')
    RunRecord(tmp_path, config()).start()
    assert read_results(tmp_path).status == "running"
    assert [p.read_text() for p in tmp_path.glob("results.invalid.*.json")] == ['{"status": "compl']


def test_types_are_checked_as_json_spells_them():
    data = json.loads((SCHEMA_1 / OFF / RESULTS_NAME).read_text())
    with pytest.raises(ValueError, match="field seed is bool"):
        Results.from_json({**data, "seed": True})  # a bool is an int to Python, not to the schema

    @dataclass
    class Selection:  # the shape of a record someone may add: JSON writes 20.0 as 20
        step: int
        score: float

    assert _build(Selection, {"step": 3, "score": 20}, "") == Selection(3, 20.0)
