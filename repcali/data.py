"""Task data: load a dataset (hub id or local files), format rows as text, tokenize.

The same loader serves users with network (the hub repo, read as :func:`hub_request` says) and
offline runs and tests (``task.data_files.train=path/to/train.jsonl``): only the source of rows changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import string
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset
from omegaconf import DictConfig, OmegaConf

from repcali.config import PROJECT_ROOT
from repcali.errors import RepCaliError
from repcali.formatters import COLUMNS, get_formatter

log = logging.getLogger("repcali")

_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
_CUT = ("source_cut", "target_cut")  # per row: did max_source_length / max_target_length drop tokens
# of a tokenized split
SELECTION = "selection"  # the split name of the rows that select the scored checkpoint
_TEXT = ("references", "example_id", "category", *_CUT)  # what evaluation reads; the model never sees it
_COLUMNS = ("input_ids", "attention_mask", "labels", "length", *_TEXT)


@dataclass
class TaskData:
    """Tokenized splits plus the raw references that evaluation scores against."""

    train: Dataset
    eval: Dataset  # sorted by source length, longest first: batched generation pads little
    eval_ids: list[str]
    eval_references: list[list[str]]  # one or more references per evaluation example
    eval_categories: list[str] = field(default_factory=list)  # per evaluation example, with task.category_column
    # the length limits and, per split, how many rows lost tokens to them (recorded in results.json)
    truncation: dict = field(default_factory=dict)
    # what selects the scored checkpoint (task.selection): sorted and grouped as `eval`; None without selection
    validation: Dataset | None = None
    validation_ids: list[str] = field(default_factory=list)
    validation_references: list[list[str]] = field(default_factory=list)


@dataclass
class Example:
    """One model input with its reference text(s); training uses each reference as a target."""

    id: str
    source: str
    references: list[str]
    category: str | None = None  # the row's task.category_column (WebNLG: its DBpedia category)


def _resolve(path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() or candidate.exists() else PROJECT_ROOT / candidate


def load_splits(task: DictConfig, extra: tuple[str, ...] = ()) -> DatasetDict:
    """Rows of the train and evaluation splits (and ``extra`` ones) as a run sees them: from local files if
    any is given, else from the hub, then ``task.keep_rows`` (WebNLG's test: the set with references)."""
    wanted = {split: task.splits[split] for split in ("train", task.eval_split, *extra)}
    if any(task.data_files.values()):
        splits = _load_local(task, list(wanted))
    elif not task.dataset:
        raise RepCaliError(f"Task {task.name!r} has neither task.dataset nor task.data_files. Fix: set one.")
    else:
        splits = _load_hub(task, wanted)
    return DatasetDict({split: _keep_rows(rows, task, split) for split, rows in splits.items()})


def _keep_rows(rows: Dataset, task: DictConfig, split: str) -> Dataset:
    """The rows whose ``task.keep_rows.<split>`` columns hold one of the listed values (compared as text)."""
    kept = task.keep_rows.get(split)
    if not kept:
        return rows
    missing = [column for column in kept if column not in rows.column_names]
    if missing:
        raise RepCaliError(
            f"task.keep_rows.{split} filters on {missing}, which the {split!r} rows lack (they have "
            f"{rows.column_names}). Fix: data in the task's schema, or task.keep_rows."
        )
    columns = list(kept)
    allowed = [tuple(sorted(str(value) for value in kept[column])) for column in columns]  # hashed alike each run

    def keep(*batch: list) -> list[bool]:
        return [
            all(str(value) in values for value, values in zip(row, allowed, strict=True))
            for row in zip(*batch, strict=True)
        ]

    return rows.filter(keep, input_columns=columns, batched=True, desc=f"keep_rows {split}")


def _load_local(task: DictConfig, splits: list[str]) -> DatasetDict:
    files = {}
    for split in splits:
        if not task.data_files[split]:
            selecting = split == "validation" != task.eval_split
            raise RepCaliError(
                f"task.data_files has no {split!r} file"
                + (" (model selection validates on it)" if selecting else "")
                + f". Fix: add task.data_files.{split}=<path>"
                + (
                    ", or task.selection.split=train_holdout, or trainer.eval_strategy=no (no selection: the last "
                    "model is scored)."
                    if selecting
                    else "."
                )
            )
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
        # one split at a time: splits may differ in extra columns (LCSTS: human_label on valid/test only)
        return DatasetDict(
            {split: load_dataset(builder, data_files={split: str(path)}, split=split) for split, path in files.items()}
        )
    except Exception as error:  # malformed JSON/CSV: datasets' own errors are long and indirect
        raise RepCaliError(
            f"Could not read {sorted(map(str, files.values()))} as {builder} ({type(error).__name__}: "
            f"{str(error)[:300]}). Fix: one record per line or row, with the same columns in each."
        ) from error


def hub_request(task: Mapping, split: str) -> tuple[str, dict[str, Any]]:
    """``(path, kwargs)`` of the ``load_dataset`` call that reads hub split ``split`` of the task.

    With ``task.dataset_files`` each split is read on its own from its files (a parquet export has
    no card, so no config names; LCSTS's splits differ in columns); otherwise the repo's config
    ``task.dataset_config``. The path is the repo id and nothing else: the hub-layout tests read a
    local mirror of the repo through this same call with only the path swapped.
    """
    if task["dataset_files"]:
        if task["dataset_config"]:
            raise RepCaliError(
                f"Task {task['name']!r} sets both task.dataset_config and task.dataset_files. Fix: one of them "
                "(files name the config's folder themselves)."
            )
        if split not in task["dataset_files"]:
            raise RepCaliError(
                f"task.dataset_files has no {split!r} split, only {sorted(task['dataset_files'])}. "
                "Fix: task.dataset_files or task.splits."
            )
        kwargs: dict[str, Any] = {"data_files": {split: task["dataset_files"][split]}}
    else:
        kwargs = {"name": task["dataset_config"]}
    return task["dataset"], {**kwargs, "revision": task["dataset_revision"]}


def _load_hub(task: DictConfig, wanted: dict[str, str]) -> DatasetDict:
    loaded: dict[str, DatasetDict] = {}  # one load per distinct call: a config's splits come together
    rows = {}
    for split, name in wanted.items():
        path, kwargs = hub_request(task, name)
        call = json.dumps(kwargs, sort_keys=True)
        if call not in loaded:
            try:
                loaded[call] = load_dataset(path, **kwargs)
            except Exception as error:  # offline, unknown id, gated: the fix is the same
                raise RepCaliError(
                    f"Could not load dataset {task.dataset!r} from the Hugging Face hub (load_dataset({path!r}, "
                    f"**{kwargs}): {type(error).__name__}: {error}). Fix: check the network and "
                    "HF_DATASETS_OFFLINE, or give local files in the hub dataset's columns: "
                    f"task.data_files.train=... task.data_files.{task.eval_split}=..."
                ) from error
        if name not in loaded[call]:
            raise RepCaliError(
                f"Dataset {task.dataset!r} has no split {name!r}, only {list(loaded[call])}. Fix: task.splits."
            )
        rows[split] = loaded[call][name]
    return DatasetDict(rows)


def required_columns(task: Mapping, split: str) -> list[str]:
    """The row columns a run reads from ``split``: its formatter's, its templates' other fields, the id and
    category columns, and those ``task.keep_rows.<split>`` filters on. The formatter's are declared in
    :data:`repcali.formatters.COLUMNS`, which the hub-layout tests hold to what it really reads."""
    get_formatter(task["formatter"])  # an unknown formatter fails here, with the fix
    reads, adds = COLUMNS[task["formatter"]]
    fields = [
        name.split(".")[0].split("[")[0]
        for template in (task["source"], task["target"])
        for _, name, _, _ in string.Formatter().parse(template)
        if name
    ]
    filters = list(task["keep_rows"].get(split) or {})
    named = [task["id_column"], task["category_column"], *filters]
    return list(dict.fromkeys([*reads, *(f for f in fields if f not in adds), *(c for c in named if c)]))


def count_examples(rows: Dataset, task: Mapping, split: str) -> int:
    """How many examples ``rows`` of ``split`` make as a run builds them: what ``task.stats.<split>`` counts.

    ``train``: training pairs, one per reference. Any other split: evaluation examples, one per distinct
    source where ``task.group_references``. Rows are formatted as a run formats them (GLUE's test rows,
    whose labels are hidden, cannot be); ``keep_rows`` is :func:`load_splits`' business, applied before.
    """
    plain = OmegaConf.to_container(task, resolve=True) if OmegaConf.is_config(task) else task
    grouped = split != "train" and plain["group_references"]
    total, sources = 0, set()
    for start in range(0, len(rows), 1000):
        indices = list(range(start, min(start + 1000, len(rows))))
        examples = format_rows(rows[start : start + 1000], plain, "", indices)
        if split == "train":
            total += sum(len(example.references) for example in examples)
        elif grouped:
            sources.update(example.source for example in examples)
        else:
            total += len(examples)
    return len(sources) if grouped else total


def format_rows(rows: dict[str, list], task: Mapping, prefix: str, indices: list[int]) -> list[Example]:
    """A batch of rows -> examples: the task's formatter, then its ``source``/``target`` templates (``str.format``)."""
    formatter = get_formatter(task["formatter"])
    columns = list(rows)
    examples = []
    for i, index in enumerate(indices):
        row = {column: rows[column][i] for column in columns}
        records = formatter(row, task)
        for k, record in enumerate(records):
            try:
                source = prefix + task["source"].format_map(record)
                references = record.get("references") or [task["target"].format_map(record)]
            except KeyError as error:
                raise RepCaliError(
                    f"Task {task['name']!r}: template uses column {error} but the data has {sorted(record)}. "
                    "Fix: task.source / task.target, or data in the task's schema."
                ) from None
            default_id = row.get(task["id_column"]) if task["id_column"] else None
            default_id = str(index) if default_id is None else str(default_id)
            example_id = record.get("id") or (default_id if len(records) == 1 else f"{default_id}-{k}")
            category = row.get(task["category_column"]) if task.get("category_column") else None
            category = None if category is None else str(category)
            examples.append(Example(str(example_id), source, [str(r) for r in references], category))
    return examples


def group_by_source(examples: list[Example]) -> list[Example]:
    """Merge examples with the same source into one with all their references (first id, first order)."""
    merged: dict[str, Example] = {}
    for example in examples:
        if example.source in merged:
            merged[example.source].references.extend(example.references)
        else:
            merged[example.source] = Example(example.id, example.source, list(example.references), example.category)
    return list(merged.values())


def _cut(encoded, texts: list[str], tokenizer, max_length: int, target: bool = False) -> list[bool]:
    """Which texts lost tokens to ``max_length``. Fast tokenizers say so (an encoding's overflow);
    others are measured once more without truncation."""
    if encoded.encodings is not None:
        return [bool(encoding.overflowing) for encoding in encoded.encodings]
    full = tokenizer(text_target=texts) if target else tokenizer(texts)
    return [len(ids) > max_length for ids in full["input_ids"]]


def _truncation(tokenized: dict[str, Dataset], max_source: int, max_target: int) -> dict:
    """Per split: rows, and how many sources and targets were cut. Logged, so a cut is never silent."""
    report: dict = {"max_source_length": max_source, "max_target_length": max_target}
    for split, rows in tokenized.items():
        counts = {"rows": len(rows), "sources_cut": sum(rows["source_cut"]), "targets_cut": sum(rows["target_cut"])}
        report[split] = counts
        if counts["sources_cut"] or counts["targets_cut"]:
            log.info(
                "%s: %d of %d sources cut at %d tokens, %d targets at %d",
                split,
                counts["sources_cut"],
                len(rows),
                max_source,
                counts["targets_cut"],
                max_target,
            )
    return report


def _limit(dataset: Dataset, limit: int | None) -> Dataset:
    return dataset if limit is None else dataset.select(range(min(limit, len(dataset))))


def split_by_source(rows: Dataset, task: Mapping, prefix: str, sources: int) -> tuple[Dataset, Dataset]:
    """(the rows of the ``sources`` distinct source texts with the smallest SHA-1, the other rows).

    Rows that share a source (a concept set, an observation pair, a graph with several texts) fall
    on one side, so nothing held out is also trained on; the choice depends on the texts alone, not
    on the rows' order, the seed or how large a cap is (a larger cap only adds sources).
    """

    def keys(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        columns, found = list(batch), []
        for i, index in enumerate(indices):  # a row at a time; a row that makes several examples (a dialogue's
            # turns) goes where its first source goes
            examples = format_rows({column: [batch[column][i]] for column in columns}, task, prefix, [index])
            found.append(hashlib.sha1(examples[0].source.encode()).hexdigest() if examples else "")
        return {"_key": found}

    keyed = rows.map(keys, batched=True, with_indices=True, remove_columns=rows.column_names, desc="hash sources")[
        "_key"
    ]
    chosen = set(sorted(set(keyed))[:sources])
    inside = [i for i, key in enumerate(keyed) if key in chosen]
    outside = [i for i, key in enumerate(keyed) if key not in chosen]
    return rows.select(inside), rows.select(outside)


def selection_rows(splits: DatasetDict, task: DictConfig, plain_task: Mapping, prefix: str) -> Dataset:
    """The rows that select the scored checkpoint (``task.selection``); carves them out of train for
    ``train_holdout``. Never rows of the evaluation split: the config checks refuse that first."""
    selection = task.selection
    if selection.split == "train_holdout":
        size = max(1, min(selection.max_samples, len(splits["train"]) // 10))
        held, splits["train"] = split_by_source(splits["train"], plain_task, prefix, size)
        return held
    held, _ = split_by_source(splits.pop("validation"), plain_task, prefix, selection.max_samples)
    return held


def build_task_data(
    task: DictConfig, tokenizer, use_prefix: bool, max_positions: int | None = None, select: bool = False
) -> TaskData:
    """Load, format and tokenize; tokenized splits are cached by ``datasets`` between runs.

    Training has one row per (source, reference); evaluation one row per source with all its
    references. Sources are cut at ``min(task.max_source_length, max_positions)``; how many were cut
    is counted per split (``TaskData.truncation``). ``select``: also the rows that select the scored
    checkpoint (``task.selection``), as ``validation``.
    """
    validating = select and task.selection.split == "validation"
    splits = load_splits(task, ("validation",) if validating else ())
    splits["train"] = _limit(splits["train"], task.max_train_samples)
    splits[task.eval_split] = _limit(splits[task.eval_split], task.max_eval_samples)
    for split, rows in splits.items():
        if len(rows) == 0:
            raise RepCaliError(f"The {split!r} split of task {task.name!r} is empty. Fix: check the data files.")
    prefix = task.prefix if use_prefix else ""
    # Plain values only in the closure, so `datasets` can hash it and reuse its cache next run.
    plain_task = OmegaConf.to_container(task, resolve=True)
    if select:  # named apart from the evaluation split, even where both are the hub's "validation"
        splits[SELECTION] = selection_rows(splits, task, plain_task, prefix)
    max_source = min(task.max_source_length, max_positions or task.max_source_length)
    max_target = task.max_target_length

    def tokenize(rows: dict[str, list], indices: list[int], evaluation: bool) -> dict[str, list]:
        examples = format_rows(rows, plain_task, prefix, indices)
        if evaluation and plain_task["group_references"]:
            examples = group_by_source(examples)
        pairs = (
            [(ex, ex.references[0]) for ex in examples]
            if evaluation
            else [(ex, reference) for ex in examples for reference in ex.references]
        )
        if not pairs:
            return {column: [] for column in _COLUMNS}
        sources = [ex.source for ex, _ in pairs]
        targets = [reference for _, reference in pairs]
        encoded = tokenizer(sources, max_length=max_source, truncation=True)
        features = {key: encoded[key] for key in ("input_ids", "attention_mask")}  # no token_type_ids: generate()
        # rejects them (BERT-style tokenizers: Chinese BART, BERT2BERT)
        labels = tokenizer(text_target=targets, max_length=max_target, truncation=True)
        features["labels"] = labels["input_ids"]
        features["source_cut"] = _cut(encoded, sources, tokenizer, max_source)
        features["target_cut"] = _cut(labels, targets, tokenizer, max_target, target=True)
        features["length"] = [len(ids) for ids in features["input_ids"]]
        features["references"] = [ex.references for ex, _ in pairs]
        features["example_id"] = [ex.id for ex, _ in pairs]
        features["category"] = [ex.category or "" for ex, _ in pairs]
        return features

    tokenized = {}
    for split, rows in splits.items():
        evaluation = split in (task.eval_split, SELECTION)
        tokenized[split] = rows.map(
            tokenize,
            batched=True,
            # grouping references needs the whole split in one call
            batch_size=None if evaluation and task.group_references else 1000,
            with_indices=True,
            remove_columns=rows.column_names,
            fn_kwargs={"evaluation": evaluation},
            desc=f"tokenize {split}",
        )
    truncation = _truncation(tokenized, max_source, max_target)
    evaluation = _scored(tokenized[task.eval_split])
    validation = _scored(tokenized[SELECTION]) if select else None
    return TaskData(
        train=tokenized["train"].remove_columns(list(_TEXT)),
        eval=evaluation.remove_columns(list(_TEXT)),
        eval_ids=list(evaluation["example_id"]),
        eval_references=[list(refs) for refs in evaluation["references"]],
        eval_categories=list(evaluation["category"]) if task.category_column else [],
        truncation=truncation,
        validation=validation.remove_columns(list(_TEXT)) if select else None,
        validation_ids=list(validation["example_id"]) if select else [],
        validation_references=[list(refs) for refs in validation["references"]] if select else [],
    )


def _scored(tokenized: Dataset) -> Dataset:
    """Longest source first: batched generation pads little. Ids and references are read in this order."""
    with warnings.catch_warnings():  # datasets' sort passes pyarrow an option pyarrow 25 deprecated; harmless
        warnings.filterwarnings("ignore", "Specifying null_placement in SortOptions is deprecated", FutureWarning)
        return tokenized.sort("length", reverse=True)
