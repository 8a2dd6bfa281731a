"""Every hub task reads its repo as published: a local mirror of the repo's layout at the task's revision
(tests/fixtures/hub/<repo id>/, same folders, file names, columns and feature types, a few rows) is loaded
through the run's own code with only the repo id swapped for the mirror's path.

A mirror that drifts from its task config (repo, revision, folders, split names, the columns the task
reads) fails here, and so does a mirror whose files no longer match the MIRROR.yaml that builds them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from repcali.data import build_task_data, count_examples, format_rows, hub_request, load_splits, required_columns
from repcali.errors import RepCaliError
from tests.fixtures.hub.build import SPEC, build, mirrors, spec
from tests.grid import ROOT, TASKS

HUB = ROOT / "tests" / "fixtures" / "hub"
WITH_REFERENCES = "rdf-to-text-generation-test-data-with-refs-en"


def _dataset(task: str) -> str | None:
    return OmegaConf.load(ROOT / "conf" / "task" / f"{task}.yaml").get("dataset")


HUB_TASKS = [task for task in TASKS if _dataset(task)]


def test_every_hub_task_has_a_mirror_of_its_repo_at_its_revision(compose_train):
    assert {"aclsum", "csds"}.isdisjoint(HUB_TASKS) and len(HUB_TASKS) == 11  # local-only tasks have no repo
    for task in HUB_TASKS:
        cfg = compose_train(f"task={task}").task
        described = spec(HUB / cfg.dataset)
        assert (described["repo"], described["revision"]) == (cfg.dataset, cfg.dataset_revision), task
        assert described["pages"], f"{task}: the mirror names no page it copies"
    assert {m.relative_to(HUB).as_posix() for m in mirrors()} == {_dataset(task) for task in HUB_TASKS}


def mirrored(compose_train, task: str, *overrides: str):
    """The task as a run composes it, with its repo id swapped for the mirror's path: nothing else changes."""
    cfg = compose_train(f"task={task}", *overrides)
    cfg.task.dataset = str(HUB / cfg.task.dataset)
    return cfg


def _splits_read(task) -> tuple[str, ...]:
    """The splits a run reads beside train and eval_split: validation, where it selects the checkpoint."""
    return ("validation",) if task.selection.split == "validation" and task.eval_split != "validation" else ()


@pytest.fixture(autouse=True)
def fresh_datasets_cache(tmp_path, monkeypatch):
    """A datasets cache per test: datasets keys a local folder read through its card by the folder's name and
    card alone, so a mirror edited (or a drifted copy) would otherwise read the rows cached before."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(ROOT / "assets" / "tiny-t5")


def check_reads(task) -> dict:
    """Load the task's splits as a run does and check each against what the task reads from it: the columns
    hold values, the formatter yields examples with references, and it reads nothing but the declared columns."""
    splits = load_splits(task, _splits_read(task))
    plain = OmegaConf.to_container(task, resolve=True)
    for split, rows in splits.items():
        assert len(rows), f"{task.name}: no {split} rows"
        columns = required_columns(plain, split)
        # a column the card declares but a file lacks reads as None in every row
        missing = [column for column in columns if column not in rows.column_names or None in rows[column]]
        assert not missing, f"{task.name} {split}: the task reads {missing}, which the rows lack"
        indices = list(range(len(rows)))
        examples = format_rows(rows.to_dict(), plain, "", indices)
        assert examples and all(ref for example in examples for ref in example.references), f"{task.name} {split}"
        assert format_rows(rows.select_columns(columns).to_dict(), plain, "", indices) == examples
    return splits


@pytest.mark.parametrize("task", HUB_TASKS)
def test_task_reads_its_mirror_through_the_hub_load_call(compose_train, tokenizer, task):
    hub = compose_train(f"task={task}").task
    cfg = mirrored(compose_train, task)
    for name in {hub.splits[split] for split in ("train", hub.eval_split, *_splits_read(hub))}:
        path, kwargs = hub_request(cfg.task, name)
        assert (path, kwargs) == (str(HUB / hub.dataset), hub_request(hub, name)[1])  # only the path differs
    splits = check_reads(cfg.task)
    # the whole run path: what a run builds equals what count_examples counts (task.stats' meaning)
    data = build_task_data(cfg.task, tokenizer, use_prefix=True, max_positions=512)
    assert count_examples(splits["train"], cfg.task, "train") == len(data.train)
    assert count_examples(splits[cfg.task.eval_split], cfg.task, cfg.task.eval_split) == len(data.eval)


def test_webnlg_scores_only_the_test_set_with_references_and_keeps_each_category(compose_train, tokenizer):
    published = pq.read_table(HUB / "webnlg-challenge/web_nlg/release_v3.0_en/test/0000.parquet").to_pylist()
    assert len({row["test_category"] for row in published}) == 3  # the mirror holds all three sets
    cfg = mirrored(compose_train, "webnlg")
    test = load_splits(cfg.task)["test"]
    assert set(test["test_category"]) == {WITH_REFERENCES}
    assert len(test) == sum(row["test_category"] == WITH_REFERENCES for row in published) == 2
    data = build_task_data(cfg.task, tokenizer, use_prefix=True, max_positions=512)
    by_id = {row["eid"]: row["category"] for row in published}
    assert data.eval_categories == [by_id[i] for i in data.eval_ids] and set(data.eval_categories) == {
        "Astronaut",
        "Airport",
    }


def test_lcsts_splits_load_apart_with_their_own_columns(compose_train):
    splits = load_splits(mirrored(compose_train, "lcsts").task, ("validation",))
    assert "human_label" not in splits["train"].column_names
    assert "human_label" in splits["validation"].column_names and "human_label" in splits["test"].column_names


@pytest.mark.parametrize("mirror", mirrors(), ids=lambda path: path.relative_to(HUB).as_posix())
def test_mirror_files_are_what_their_mirror_yaml_builds(mirror, tmp_path):
    built = {path.relative_to(tmp_path).as_posix(): path for path in build(mirror, tmp_path)}
    committed = {
        path.relative_to(mirror).as_posix(): path for path in mirror.rglob("*") if path.is_file() and path.name != SPEC
    }
    assert sorted(built) == sorted(committed)
    for name, path in built.items():
        if path.suffix == ".parquet":
            fresh, kept = pq.read_table(path), pq.read_table(committed[name])
            assert fresh.equals(kept) and fresh.schema.metadata == kept.schema.metadata, name  # rows and features
        else:
            assert path.read_text() == committed[name].read_text(), name


def _copy(mirror: str, into: Path) -> Path:
    shutil.copytree(HUB / mirror, into / mirror)
    return into / mirror


def test_a_mirror_whose_folders_drift_from_the_task_fails(compose_train, tmp_path):
    copy = _copy("webnlg-challenge/web_nlg", tmp_path)
    (copy / "release_v3.0_en").rename(copy / "release_v3.0")  # the task's globs no longer match
    task = compose_train("task=webnlg").task
    task.dataset = str(copy)
    with pytest.raises(RepCaliError, match="Could not load dataset .*release_v3.0_en/train"):
        check_reads(task)


def test_a_mirror_without_a_column_the_task_reads_fails(compose_train, tmp_path):
    copy = _copy("allenai/common_gen", tmp_path)
    path = copy / "data/validation-00000-of-00001.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["concepts"]), path)
    task = compose_train("task=common_gen").task
    task.dataset = str(copy)
    with pytest.raises(AssertionError, match=r"the task reads \['concepts'\]"):
        check_reads(task)


def test_a_formatter_reading_an_undeclared_column_fails(compose_train, monkeypatch):
    from repcali import formatters

    monkeypatch.setitem(formatters.COLUMNS, "anlg", (("label", "hypothesis_1"), ("hypothesis",)))
    task = mirrored(compose_train, "anlg").task
    with pytest.raises(KeyError, match="hypothesis_2"):
        check_reads(task)


def test_hub_request_refuses_a_config_with_files_and_a_split_without_files(compose_train):
    task = compose_train("task=webnlg").task
    with pytest.raises(RepCaliError, match="no 'validation' split, only \\['dev', 'test', 'train'\\]. Fix: "):
        hub_request(task, "validation")
    task.dataset_config = "release_v3.0_en"
    with pytest.raises(RepCaliError, match="both task.dataset_config and task.dataset_files. Fix: "):
        hub_request(task, "dev")


@pytest.mark.slow
def test_a_webnlg_run_on_its_mirror_records_each_example_category(tmp_path):
    """train.py on the WebNLG mirror (only task.dataset swapped): predictions.jsonl names each example's
    category and results.json holds BLEU per category, each equal to BLEU on that category's lines."""
    import json

    from repcali.metrics import compute
    from repcali.results import read_results
    from tests import cli

    process = cli.here(
        "train.py",
        "model=tiny_t5",
        "task=webnlg",
        f"task.dataset={HUB / 'webnlg-challenge/web_nlg'}",
        "trainer.max_steps=2",
        "trainer.eval_strategy=no",
        "task.generation.max_new_tokens=8",
        "task.metrics=[bleu]",
        f"runs_dir={tmp_path}",
    )
    assert process.returncode == 0, process.stderr[-3000:]
    run_dir = process.stdout.strip().splitlines()[-1].split("Run dir: ")[1]
    lines = [json.loads(line) for line in Path(run_dir, "predictions.jsonl").read_text().splitlines()]
    assert sorted(line["category"] for line in lines) == ["Airport", "Astronaut"]  # the with-references set
    found = read_results(run_dir).category_metrics
    assert set(found) == {"Airport", "Astronaut"}
    for category, scores in found.items():
        mine = [line for line in lines if line["category"] == category]
        expected = compute(["bleu"], [m["prediction"] for m in mine], [m["references"] for m in mine]).corpus["bleu"]
        assert scores == {"bleu": pytest.approx(expected), "n_examples": len(mine)}
