"""Prefetch: every model, tokenizer and dataset a sweep (or one run) needs, fetched into the Hugging Face cache
and checked with the project's own loaders before a GPU-hour is spent.

On a login node with network, each distinct backbone is loaded with :func:`repcali.modeling.load_backbone`
(which downloads it) and each distinct task's splits with :func:`repcali.data.load_splits`; then:

- the model is an encoder-decoder whose weights are in ``model.dtype``, the dtype the run trains in;
- every split the run reads has the columns the task reads (:func:`repcali.data.required_columns`) and
  yields as many examples as the task's ``stats`` say, counted as a run builds them
  (:func:`repcali.data.count_examples`). Published sizes are sometimes rounded or count a few rows
  differently, so a split within ``STATS_TOLERANCE`` (1 %) of its figure passes, with the difference
  shown; more is a failure. A split without a figure is counted and shown;
- no evaluation example has an empty reference (it would be scored against an empty string).

One table (item, size on disk, verdict) and the disk total are printed; any failure makes
:func:`prefetch` raise a one-line :class:`~repcali.errors.RepCaliError` naming every failed item. Compute
nodes then run with ``HF_HUB_OFFLINE=1`` from the same cache, with nothing left to fetch.

Offline (``HF_HUB_OFFLINE=1``, or the hub unreachable within ``PROBE_TIMEOUT_S``) nothing is downloaded:
an asset missing from the cache is reported at once, without network time-outs, and cached or local ones
are checked as above (``prefetch smoke`` passes anywhere: tiny T5 and ACLSum ship in ``assets/``).
"""

from __future__ import annotations

import gc
import json
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import OmegaConf

from repcali import grid
from repcali.config import selects
from repcali.errors import RepCaliError, one_line

STATS_TOLERANCE = 0.01  # a split's example count may differ from its published figure by this fraction
PROBE_TIMEOUT_S = 3.0  # how long the hub may take to accept a connection before prefetch works offline
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
# Model keys that decide what is loaded and how; backbones that differ only in others are checked once.
_LOADING = ("name_or_path", "tokenizer", "tokenizer_class", "init", "dtype", "trust_remote_code", "language_codes")
_LOADING += ("unsupported",)
# Task keys that change neither which rows are read nor how they are counted: tasks that differ only there
# are checked once.
_NOT_DATA = ("generation", "metrics", "primary_metric", "epochs", "max_source_length", "max_target_length")
_NOT_DATA += ("max_train_samples", "max_eval_samples", "prefix")
_BATCH = 1000  # rows formatted at a time
SAMPLES = {  # a sentence per task language, that a backbone's tokenizer must read
    "en": "The committee approved the new budget after a long debate on Tuesday.",
    "zh": "委员会在周二经过长时间辩论后批准了新的预算。",
}


@dataclass
class Asset:
    """One thing a sweep needs: a backbone (with its tokenizer) or a task's data, and the runs' settings for it."""

    kind: str  # model | data
    name: str  # the config's name (model.name, task.name)
    config: dict[str, Any]  # the model or task config, resolved
    languages: set[str] = field(default_factory=set)  # model: the languages of the tasks it runs on
    extra: tuple[str, ...] = ()  # data: splits read besides train and the evaluation split (selection)

    @property
    def label(self) -> str:
        if self.kind == "model":
            return f"model {self.name} ({self.config['name_or_path']})"
        local = any((self.config.get("data_files") or {}).values())
        source = "local files" if local or not self.config.get("dataset") else self.config["dataset"]
        revision = f"@{self.config['dataset_revision']}" if self.config.get("dataset_revision") else ""
        return f"data {self.name} ({source}{revision})"


@dataclass
class Verdict:
    """An asset's check: passed or not, what was found (or why it failed), and its size on disk."""

    asset: Asset
    ok: bool
    text: str
    size: int | None = None  # bytes on disk; None: unknown


def assets(configs: Iterable[Mapping[str, Any]]) -> list[Asset]:
    """The distinct backbones and datasets of these runs' configs (resolved: a grid point's ``config``)."""
    found: dict[str, Asset] = {}
    for config in configs:
        model, task = dict(config["model"]), dict(config["task"])
        key = "model:" + json.dumps({k: model.get(k) for k in _LOADING}, sort_keys=True, default=str)
        found.setdefault(key, Asset("model", model["name"], model)).languages.add(task.get("language", "en"))
        validating = selects(OmegaConf.create(dict(config))) and task["selection"]["split"] == "validation"
        extra = ("validation",) if validating and task["eval_split"] != "validation" else ()
        data = {k: v for k, v in task.items() if k not in _NOT_DATA}
        key = "data:" + json.dumps([data, extra], sort_keys=True, default=str)
        found.setdefault(key, Asset("data", task["name"], task, extra=extra))
    return sorted(found.values(), key=lambda asset: asset.kind != "model")


def sweep_configs(name: str, overrides: list[str] = ()) -> list[dict[str, Any]]:
    """Every run config of a sweep, part by part; a search (its trials chosen as it runs) as its one
    fixed config, which names the backbone and task its trials share."""
    from repcali.sweeps import is_search, parts

    configs = []
    for part in parts(name):
        if is_search(part):
            configs += [point.config for point in grid.job_points([[f"+sweep={part}", *overrides]])]
        else:
            configs += [point.config for point in grid.points(part, overrides)]
    return configs


def run_configs(overrides: list[str]) -> list[dict[str, Any]]:
    """The config of one run, ``train.py <overrides>``."""
    return [point.config for point in grid.job_points([list(overrides)])]


def prefetch(configs: list[Mapping[str, Any]], again: str, echo: Callable[[str], None] = print) -> list[Verdict]:
    """Fetch and check every asset of these run configs; print the table as it fills, then the total.

    Raises a one-line :class:`RepCaliError` naming every failed asset; offline, before anything is loaded,
    one naming every asset not on this machine. ``again``: the prefetch command's arguments, for the fix.
    """
    needed = assets(configs)
    if not needed:
        raise RepCaliError("No run to prefetch for. Fix: name a sweep with runs, or give --run a run's overrides.")
    if not _online(echo):
        _refuse_missing(needed, again)
    width = max(len(asset.label) for asset in needed)
    echo(f"{'item':<{width}}  {'size':>9}  verdict")
    verdicts = []
    for asset in needed:
        verdict = _check(asset)
        verdicts.append(verdict)
        echo(f"{asset.label:<{width}}  {_size(verdict.size):>9}  {verdict.text}")
    total = sum(_stored(place) for place in dict.fromkeys(place for asset in needed for place in _storage(asset)))
    echo(f"{'total on disk':<{width}}  {_size(total):>9}  {len(verdicts)} items")
    if failed := [verdict.asset.label for verdict in verdicts if not verdict.ok]:
        raise RepCaliError(
            f"{len(failed)} of {len(verdicts)} assets failed their check: {', '.join(failed)}. "
            "Fix: see each one's verdict in the table above."
        )
    return verdicts


def _refuse_missing(needed: list[Asset], again: str) -> None:
    """Offline: refuse at once, naming every asset that is not on this machine (nothing else is loaded)."""
    repos: dict[str, list[str]] = {"models": [], "datasets": []}
    local = []
    for asset in needed:
        absent = _missing(asset)
        if isinstance(absent, list):
            repos["models" if asset.kind == "model" else "datasets"] += absent
        elif absent:
            local.append(f"data {asset.name}: {absent}")
    found = [f"{kind} not in the cache: {', '.join(dict.fromkeys(names))}" for kind, names in repos.items() if names]
    if found or local:
        fix = f"run python -m repcali.sweeps prefetch {again} where huggingface.co can be reached, with this HF_HOME"
        raise RepCaliError(
            f"{'; '.join(found + local)}; nothing can be downloaded here. Fix: "
            + (f"{fix}." if found else "")
            + (" Give local data as task.data_files.<split>=<file>." if local else "")
        )


def _missing(asset: Asset) -> list[str] | str | None:
    """What of the asset is not on this machine: hub repos not in the cache (a list), a local problem (a
    sentence), or None."""
    config = asset.config
    if asset.kind == "model":
        return [repo for repo in _model_repos(config) if not _model_cached(repo)]
    files = [path for path in (config.get("data_files") or {}).values() if path]
    if files:
        from repcali.data import _resolve

        absent = [path for path in files if not _resolve(path).is_file()]
        return f"no file {', '.join(absent)}" if absent else None
    if not config.get("dataset"):
        return "neither task.dataset nor task.data_files"
    return [] if _dataset_cached(config["dataset"]) else [config["dataset"]]


def _online(echo: Callable[[str], None]) -> bool:
    """Whether downloads are allowed and the hub answers; if not, every Hugging Face library is put offline,
    so that nothing waits on a network time-out."""
    from huggingface_hub import is_offline_mode

    if is_offline_mode() or any(_truthy(os.environ.get(variable)) for variable in OFFLINE_VARIABLES):
        reason = "offline (HF_HUB_OFFLINE=1)"
    elif _hub_reachable():
        return True
    else:
        reason = f"{urlparse(_endpoint()).hostname} unreachable within {PROBE_TIMEOUT_S:g} s"
    echo(f"# {reason}: nothing is downloaded; the Hugging Face cache and local files are checked")
    _go_offline()
    return False


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _hub_reachable() -> bool:
    """A TCP connection to the hub within ``PROBE_TIMEOUT_S``; behind a proxy, assumed (the proxy decides)."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(_endpoint())
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=PROBE_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _go_offline() -> None:
    """Offline mode for this process, including libraries already imported (they read it at import)."""
    import datasets.config
    from huggingface_hub import constants

    os.environ.update(dict.fromkeys(OFFLINE_VARIABLES, "1"))
    constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True


def _check(asset: Asset) -> Verdict:
    """The asset's verdict; any error is a failed verdict, never a traceback."""
    try:
        return _check_model(asset) if asset.kind == "model" else _check_data(asset)
    except RepCaliError as error:
        return Verdict(asset, False, f"FAIL: {error}", _size_of(asset))
    except Exception as error:  # noqa: BLE001 - a library's error about one asset must not hide the others
        return Verdict(asset, False, f"FAIL: {type(error).__name__}: {one_line(error)}", _size_of(asset))


def _check_model(asset: Asset) -> Verdict:
    from repcali.modeling import count_parameters, load_backbone, weights_dtype

    config = asset.config
    if config.get("unsupported"):
        return Verdict(asset, False, f"FAIL: not supported: {config['unsupported']}")
    codes = config.get("language_codes") or {}
    unknown = sorted(language for language in asset.languages if codes and language not in codes)
    if unknown:
        return Verdict(asset, False, f"FAIL: no language code for {unknown} in model.language_codes")
    language = sorted(asset.languages)[0]
    os.environ.setdefault("DISABLE_SAFETENSORS_CONVERSION", "1")  # no background download of a bot PR's copy
    model, tokenizer = load_backbone(OmegaConf.create(config), language)
    try:
        dtype, parameters = weights_dtype(model), count_parameters(model)
        architecture = type(model).__name__
    finally:
        del model
        gc.collect()
    if dtype.partition("+")[0] != config["dtype"]:
        return Verdict(asset, False, f"FAIL: weights load as {dtype}, not model.dtype={config['dtype']}")
    if problem := _misreads(tokenizer, asset.languages):
        return Verdict(asset, False, f"FAIL: {problem}", _size_of(asset))
    return Verdict(asset, True, f"ok: {architecture}, {dtype}, {parameters / 1e6:,.1f}M parameters", _size_of(asset))


def _misreads(tokenizer, languages: set[str]) -> str | None:
    """Whether the tokenizer fails on a sentence in a language its tasks are in (no token, or more than a
    tenth unknown): what a tokenizer of the wrong class does (fnlp's Chinese BART read as BART's BPE)."""
    for language in sorted(languages):
        ids = tokenizer(SAMPLES.get(language, SAMPLES["en"]), add_special_tokens=False)["input_ids"]
        unknown = sum(1 for token in ids if token == tokenizer.unk_token_id)
        if not ids or unknown > len(ids) / 10:
            return (
                f"{type(tokenizer).__name__} reads a {language} sentence as {len(ids)} tokens, {unknown} unknown; "
                "Fix: name the tokenizer in model.tokenizer_class"
            )
    return None


def _model_repos(config: Mapping[str, Any]) -> list[str]:
    """The hub repos a backbone is read from (none for local folders and packages)."""
    from repcali.modeling import local_or_hub

    names = dict.fromkeys([config["name_or_path"], config.get("tokenizer") or config["name_or_path"]])
    return [name for name in names if not Path(local_or_hub(name)).exists()]


def _model_cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json"), str) or isinstance(
        try_to_load_from_cache(repo, "tokenizer_config.json"), str
    )


def _check_data(asset: Asset) -> Verdict:
    from repcali.data import count_examples, load_splits, required_columns

    task = asset.config
    splits = load_splits(OmegaConf.create(task), asset.extra)
    counts, problems = [], []
    for split, rows in splits.items():
        if lacking := [column for column in required_columns(task, split) if column not in rows.column_names]:
            problems.append(f"{split} lacks {lacking}, which the task reads (it has {rows.column_names})")
            continue
        examples = count_examples(rows, task, split)
        counts.append(f"{split} {examples:,}{_against(task.get('stats') or {}, split, examples, problems)}")
        if split != "train" and (empty := _empty_references(rows, task)):
            problems.append(f"{split}: {empty:,} of {examples:,} examples have an empty reference")
    text = ", ".join(counts)
    if problems:
        return Verdict(asset, False, f"FAIL: {'; '.join(problems)} ({text})", _size_of(asset))
    return Verdict(asset, True, f"ok: {text}", _size_of(asset))


def _empty_references(rows, task: Mapping[str, Any]) -> int:
    """Evaluation examples (grouped as a run groups them) with no reference or a blank one: each would be
    scored against an empty string."""
    from repcali.data import format_rows, group_by_source

    examples = []
    for start in range(0, len(rows), _BATCH):
        indices = list(range(start, min(start + _BATCH, len(rows))))
        examples += format_rows(rows[start : start + _BATCH], task, "", indices)
    if task.get("group_references"):
        examples = group_by_source(examples)
    return sum(1 for example in examples if not example.references or not all(r.strip() for r in example.references))


def _against(stats: Mapping[str, Any], split: str, count: int, problems: list[str]) -> str:
    """How ``count`` compares with the split's published figure; a difference beyond the tolerance is a problem."""
    expected = stats.get(split)
    if not expected:
        return " (no stats)"
    if count == expected:
        return " (= stats)"
    change = (count - expected) / expected
    if abs(change) <= STATS_TOLERANCE:
        return f" (stats {expected:,}: {change:+.2%})"
    problems.append(f"{split} has {count:,} examples, stats say {expected:,} ({change:+.1%})")
    return f" (stats {expected:,})"


def _dataset_cached(repo: str) -> bool:
    return bool(_hub_cache_size(repo, "dataset")) or _arrow_cache(repo).is_dir()


def _arrow_cache(repo: str) -> Path:
    """Where ``datasets`` keeps the Arrow tables it built from a hub dataset (``<namespace>___<name>``)."""
    import datasets.config
    from datasets.naming import camelcase_to_snakecase

    *namespace, name = repo.split("/")
    return Path(datasets.config.HF_DATASETS_CACHE) / "___".join([*namespace, camelcase_to_snakecase(name)])


def _size_of(asset: Asset) -> int | None:
    """Bytes on disk of the asset's storage (:func:`_storage`); None where it has none."""
    places = _storage(asset)
    return sum(_stored(place) for place in places) if places else None


def _storage(asset: Asset) -> list[tuple[str, str]]:
    """Where the asset lies: ``("model" | "dataset", repo id)`` in the hub cache, ``("path", file or folder)``
    for local ones. Assets that share a place (GLUE's tasks, one repo) count it once in the total."""
    from repcali.modeling import local_or_hub

    config = asset.config
    if asset.kind == "model":
        sources = dict.fromkeys([config["name_or_path"], config.get("tokenizer") or config["name_or_path"]])
        local = {source: Path(local_or_hub(source)) for source in sources}
        return [("path", str(local[s])) if local[s].exists() else ("model", s) for s in sources]
    files = [path for path in (config.get("data_files") or {}).values() if path]
    if files:
        from repcali.data import _resolve

        return [("path", str(_resolve(path))) for path in dict.fromkeys(files)]
    return [("dataset", config["dataset"])] if config.get("dataset") else []


def _stored(place: tuple[str, str]) -> int:
    """Bytes of one place: a hub cache repo (a dataset's with the Arrow tables built from it), or a path."""
    kind, name = place
    if kind == "path":
        return _folder_size(Path(name))
    return _hub_cache_size(name, kind) + (_folder_size(_arrow_cache(name)) if kind == "dataset" else 0)


def _hub_cache_size(repo: str, kind: str) -> int:
    from huggingface_hub import constants, scan_cache_dir

    try:
        cache = scan_cache_dir(constants.HF_HUB_CACHE)  # read now: its default is bound when imported
    except Exception:  # noqa: BLE001 - no cache folder yet (CacheNotFound) or an unreadable one: nothing cached
        return 0
    return sum(entry.size_on_disk for entry in cache.repos if entry.repo_id == repo and entry.repo_type == kind)


def _folder_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file()) if path.is_dir() else 0


def _size(size: int | None) -> str:
    """Bytes in decimal units, as the hub's pages show file sizes."""
    if size is None:
        return "?"
    if size < 1000:
        return f"{size} B"
    for unit in ("kB", "MB", "GB", "TB"):
        size /= 1000
        if size < 1000 or unit == "TB":
            return f"{size:.1f} {unit}"
