"""The task loader: local files in the hub schema, templates, limits, order, and clear errors."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from repcali.config import TaskConfig
from repcali.data import build_task_data
from repcali.errors import RepCaliError

ROOT = Path(__file__).resolve().parents[1]
XSUM = ROOT / "tests" / "fixtures" / "xsum"


def task(**overrides):
    base = OmegaConf.structured(TaskConfig(name="xsum", dataset="EdinburghNLP/xsum"))
    return OmegaConf.merge(base, overrides)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(ROOT / "assets" / "tiny-t5")


def test_local_files_in_xsum_schema(tokenizer):
    data = build_task_data(
        task(
            data_files={"train": str(XSUM / "train.jsonl"), "test": str(XSUM / "test.jsonl")},
            prefix="summarize: ",
            max_train_samples=10,
            max_source_length=32,
        ),
        tokenizer,
        use_prefix=True,
    )
    assert len(data.train) == 10 and len(data.eval) == 8 == len(data.eval_ids) == len(data.eval_references)
    first = tokenizer.decode(data.train[0]["input_ids"], skip_special_tokens=True)
    assert first.startswith("summarize: ") and max(data.train["length"]) <= 32
    assert list(data.eval["length"]) == sorted(data.eval["length"], reverse=True)  # longest first
    rows = {row["id"]: row["summary"] for row in map(eval_row, (XSUM / "test.jsonl").read_text().splitlines())}
    assert [[rows[i]] for i in data.eval_ids] == data.eval_references  # raw, untruncated references


def eval_row(line):
    import json

    return json.loads(line)


def test_relative_paths_resolve_against_the_project_root(tokenizer, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    data = build_task_data(
        task(data_files={"train": "tests/fixtures/xsum/train.jsonl", "test": "tests/fixtures/xsum/test.jsonl"}),
        tokenizer,
        use_prefix=False,
    )
    assert len(data.train) == 16


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data_files": {"train": str(XSUM / "train.jsonl")}}, "task.data_files has no 'test' file"),
        ({"data_files": {"train": str(XSUM / "train.jsonl"), "test": "missing.jsonl"}}, "Data file not found"),
        ({"data_files": {"train": str(XSUM / "train.jsonl"), "test": str(XSUM / "README.md")}}, "Unusable data file"),
        (
            {
                "data_files": {"train": str(XSUM / "train.jsonl"), "test": str(XSUM / "test.jsonl")},
                "source": "{article}",
            },
            "template uses column 'article'",
        ),
        (
            {
                "data_files": {"train": str(XSUM / "train.jsonl"), "test": str(XSUM / "test.jsonl")},
                "keep_rows": {"test": {"category": ["news"]}},
            },
            r"task.keep_rows.test filters on \['category'\], which the 'test' rows lack",
        ),
        ({}, "Could not load dataset 'EdinburghNLP/xsum' from the Hugging Face hub"),
        ({"dataset": None}, "has neither task.dataset nor task.data_files"),
    ],
)
def test_bad_data_fails_with_the_fix(tokenizer, overrides, message):
    with pytest.raises(RepCaliError, match=message) as caught:
        build_task_data(task(**overrides), tokenizer, use_prefix=False)
    assert "Fix: " in str(caught.value)


def test_truncation_is_counted_per_split(tokenizer):
    """Sources and targets cut by the length limits are counted (and recorded), never silent."""
    rows = [eval_row(line) for line in (XSUM / "train.jsonl").read_text().splitlines()]
    source_lengths = sorted(len(tokenizer("summarize: " + row["document"])["input_ids"]) for row in rows)
    target_lengths = sorted(len(tokenizer(text_target=row["summary"])["input_ids"]) for row in rows)
    max_source, max_target = source_lengths[len(rows) // 2], target_lengths[len(rows) // 3]  # some cut, some not
    data = build_task_data(
        task(
            data_files={"train": str(XSUM / "train.jsonl"), "test": str(XSUM / "test.jsonl")},
            prefix="summarize: ",
            max_source_length=max_source,
            max_target_length=max_target,
        ),
        tokenizer,
        use_prefix=True,
    )
    expected_sources = sum(length > max_source for length in source_lengths)
    expected_targets = sum(length > max_target for length in target_lengths)
    assert 0 < expected_sources < len(rows) and 0 < expected_targets < len(rows)
    assert data.truncation["max_source_length"] == max_source
    assert data.truncation["train"] == {"rows": 16, "sources_cut": expected_sources, "targets_cut": expected_targets}
    assert data.truncation["test"]["rows"] == 8
    assert "source_cut" not in data.train.column_names and "source_cut" not in data.eval.column_names
