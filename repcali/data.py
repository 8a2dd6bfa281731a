"""Task data: load a dataset (hub id or local files), format rows as text, tokenize.

The same loader serves users with network (``load_dataset("EdinburghNLP/xsum")``) and offline
runs and tests (``task.data_files.train=path/to/train.jsonl``): only the source of rows changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset
from omegaconf import DictConfig, OmegaConf

from repcali.config import PROJECT_ROOT
from repcali.errors import RepCaliError

_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


@dataclass
class TaskData:
    """Tokenized splits plus the raw references that evaluation scores against."""

    train: Dataset
    eval: Dataset  # sorted by source length, longest first: batched generation pads little
    eval_ids: list[str]
    eval_references: list[str]


def _resolve(path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or candidate.exists() else PROJECT_ROOT / candidate


def load_splits(task: DictConfig) -> DatasetDict:
    """Rows of the train and evaluation splits, from local files if any is given, else from the hub."""
    wanted = {"train": task.splits.train, task.eval_split: task.splits[task.eval_split]}
    if any(task.data_files.values()):
        return _load_local(task, list(wanted))
    if not task.dataset:
        raise RepCaliError(f"Task {task.name!r} has neither task.dataset nor task.data_files. Fix: set one.")
    return _load_hub(task, wanted)


def _load_local(task: DictConfig, splits: list[str]) -> DatasetDict:
    files = {}
    for split in splits:
        if not task.data_files[split]:
            raise RepCaliError(f"task.data_files has no {split!r} file. Fix: add task.data_files.{split}=<path>.")
        files[split] = path = _resolve(task.data_files[split])
        if not path.is_file():
            raise RepCaliError(f"Data file not found: {path}. Fix: check the path in task.data_files.{split}.")
        if path.stat().st_size == 0:
            raise RepCaliError(f"Data file is empty: {path}. Fix: point task.data_files.{split} at data.")
    builders = {_BUILDERS.get(path.suffix) for path in files.values()}
    if len(builders) != 1 or None in builders:
        raise RepCaliError(
            f"Unusable data file types {sorted(map(str, files.values()))}. "
            f"Fix: all files of one kind among {sorted(_BUILDERS)}."
        )
    builder = builders.pop()
    try:
        return load_dataset(builder, data_files={split: str(path) for split, path in files.items()})
    except Exception as error:  # malformed JSON/CSV: datasets' own errors are long and indirect
        raise RepCaliError(
            f"Could not read {sorted(map(str, files.values()))} as {builder} ({type(error).__name__}: "
            f"{str(error)[:300]}). Fix: one record per line or row, with the same columns in each."
        ) from error


def _load_hub(task: DictConfig, wanted: dict[str, str]) -> DatasetDict:
    try:
        raw = load_dataset(task.dataset, task.dataset_config)
    except Exception as error:  # offline, unknown id, gated: the fix is the same
        raise RepCaliError(
            f"Could not load dataset {task.dataset!r} from the Hugging Face hub ({type(error).__name__}: {error}). "
            f"Fix: check the network and HF_DATASETS_OFFLINE, or give local files in the hub dataset's columns: "
            f"task.data_files.train=... task.data_files.{task.eval_split}=..."
        ) from error
    missing = [name for name in wanted.values() if name not in raw]
    if missing:
        raise RepCaliError(f"Dataset {task.dataset!r} has no split {missing}, only {list(raw)}. Fix: task.splits.")
    return DatasetDict({split: raw[name] for split, name in wanted.items()})


def format_rows(rows: dict[str, list], task: Mapping, prefix: str) -> tuple[list[str], list[str]]:
    """Apply the task's ``source``/``target`` templates (``str.format`` over columns) to a batch of rows."""
    columns = list(rows)
    n_rows = len(rows[columns[0]]) if columns else 0
    sources, targets = [], []
    for i in range(n_rows):
        row = {column: rows[column][i] for column in columns}
        try:
            sources.append(prefix + task["source"].format_map(row))
            targets.append(task["target"].format_map(row))
        except KeyError as error:
            raise RepCaliError(
                f"Task {task['name']!r}: template uses column {error} but the data has {columns}. "
                "Fix: task.source / task.target, or data in the task's schema."
            ) from None
    return sources, targets


def _limit(dataset: Dataset, limit: int | None) -> Dataset:
    return dataset if limit is None else dataset.select(range(min(limit, len(dataset))))


def build_task_data(task: DictConfig, tokenizer, use_prefix: bool) -> TaskData:
    """Load, format and tokenize; tokenized splits are cached by ``datasets`` between runs."""
    splits = load_splits(task)
    splits["train"] = _limit(splits["train"], task.max_train_samples)
    splits[task.eval_split] = _limit(splits[task.eval_split], task.max_eval_samples)
    for split, rows in splits.items():
        if len(rows) == 0:
            raise RepCaliError(f"The {split!r} split of task {task.name!r} is empty. Fix: check the data files.")
    prefix = task.prefix if use_prefix else ""
    # Plain values only in the closure, so `datasets` can hash it and reuse its cache next run.
    plain_task = OmegaConf.to_container(task, resolve=True)
    max_source, max_target, id_column = task.max_source_length, task.max_target_length, task.id_column

    def tokenize(rows: dict[str, list], indices: list[int]) -> dict[str, list]:
        sources, targets = format_rows(rows, plain_task, prefix)
        features = tokenizer(sources, max_length=max_source, truncation=True)
        features.pop("token_type_ids", None)  # BERT-style tokenizers; generate() rejects them
        features["labels"] = tokenizer(text_target=targets, max_length=max_target, truncation=True)["input_ids"]
        features["length"] = [len(ids) for ids in features["input_ids"]]
        features["reference"] = targets
        ids = rows.get(id_column) if id_column else None
        features["example_id"] = [str(x) for x in ids] if ids is not None else [str(i) for i in indices]
        return features

    tokenized = {
        split: rows.map(
            tokenize, batched=True, with_indices=True, remove_columns=rows.column_names, desc=f"tokenize {split}"
        )
        for split, rows in splits.items()
    }
    evaluation = tokenized[task.eval_split].sort("length", reverse=True)
    return TaskData(
        train=tokenized["train"].remove_columns(["reference", "example_id"]),
        eval=evaluation.remove_columns(["reference", "example_id"]),
        eval_ids=list(evaluation["example_id"]),
        eval_references=list(evaluation["reference"]),
    )
