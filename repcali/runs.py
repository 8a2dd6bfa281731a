"""Writing a run: its record through its life, provenance (git, versions, host), predictions.

``results.json`` (its schema: :mod:`repcali.results`) is the source of truth for tables and
sweeps (W&B only mirrors it). It is written atomically (temporary file, then rename) at start
(``running``, with its owner) and at the end (``completed``, ``failed`` or ``interrupted``), so a
reader never sees half a file.
A forced rerun keeps the old record aside.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from repcali.config import PROJECT_ROOT
from repcali.redact import redact
from repcali.results import RESULTS_NAME, InvalidResults, Results, RunError, read_results

log = logging.getLogger("repcali")

PREDICTIONS_NAME = "predictions.jsonl"
PACKAGES = (
    "repcali",
    "torch",
    "transformers",
    "datasets",
    "accelerate",
    "peft",
    "hydra-core",
    "omegaconf",
    "tokenizers",
    "rouge-score",
    "sacrebleu",
    "scikit-learn",
    "pycocoevalcap",
    "wandb",
    "numpy",
)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write then rename: readers see the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        json.dump(payload, handle, indent=2, ensure_ascii=False, allow_nan=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_predictions(
    run_dir: Path,
    ids: list[str],
    predictions: list[str],
    references: list[list[str]] | list[str],
    per_example: dict[str, list[float]],
    categories: list[str] | None = None,
) -> None:
    """One JSON line per example, with its scores: what paired significance tests need.

    ``reference`` is the first reference, ``references`` all of them (multi-reference tasks);
    ``category`` the example's ``task.category_column``, where the task names one.
    """
    references = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    path = run_dir / PREDICTIONS_NAME
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        for i, (example_id, prediction, refs) in enumerate(zip(ids, predictions, references, strict=True)):
            scores = {name: values[i] for name, values in per_example.items()}
            row = {"id": example_id, "prediction": prediction, "reference": refs[0], "references": refs}
            if categories:
                row["category"] = categories[i]
            handle.write(json.dumps({**row, "scores": scores}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def git_info() -> dict[str, Any]:
    """Commit and dirty flag of the project checkout (None outside git)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    def safe_version(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"python": platform.python_version(), **{name: safe_version(name) for name in PACKAGES}}


def host_info() -> dict[str, Any]:
    import torch

    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "world_size": int(os.environ.get("WORLD_SIZE", 1)),
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunRecord:
    """Fills a run's :class:`~repcali.results.Results` and writes it (main process only).

    ``record.results`` is the typed record: set its attributes (``metrics``, ``params``, ...);
    ``start``, ``complete`` and ``fail`` write it.
    """

    def __init__(self, run_dir: Path, cfg: DictConfig, write: bool = True) -> None:
        self.run_dir = run_dir
        self.write = write
        self._start = time.perf_counter()
        config = redact(OmegaConf.to_container(cfg, resolve=True))
        self.results = Results.new(run_dir, config, git=git_info(), versions=package_versions(), started_at=_now())

    def start(self) -> None:
        """Keep a previous record aside (a forced rerun, a failed try, an unreadable file), then mark it running."""
        previous = self.run_dir / RESULTS_NAME
        if self.write and previous.exists():
            try:
                old = read_results(self.run_dir)
                label, stamp = old.status, old.finished_at or old.started_at or _now()
            except InvalidResults:
                label, stamp = "invalid", _now()
            os.replace(previous, self.run_dir / f"results.{label}.{stamp.replace(':', '')}.json")
        self._save()

    @contextmanager
    def timed(self, name: str):
        """Time a phase (load, data, train, evaluate, save) into ``timings``; one log line when it is done."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.results.timings[f"{name}_s"] = round(time.perf_counter() - start, 3)
        if self.write:
            log.info("%s done in %.1f s", name, self.results.timings[f"{name}_s"])

    def complete(self) -> None:
        self._finish("completed")

    def fail(self, error: BaseException) -> None:
        self.results.error = RunError(type=type(error).__name__, message=str(error))
        self._finish("failed")

    def interrupt(self, message: str) -> None:
        """Stopped by a signal: not a failure; the same command resumes it."""
        self.results.error = RunError(type="Interrupted", message=message)
        self._finish("interrupted")

    def _finish(self, status: str) -> None:
        self.results.status = status
        self.results.finished_at = _now()
        self.results.timings["total_s"] = round(time.perf_counter() - self._start, 3)
        self._save()

    def _save(self) -> None:
        if self.write:
            write_json_atomic(self.run_dir / RESULTS_NAME, self.results.to_json())
