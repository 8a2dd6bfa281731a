"""A run's record: ``results.json`` with status, metrics, parameters, config and provenance.

The file is the source of truth for tables and sweeps (W&B only mirrors it). It is written
atomically (temporary file, then rename) at start (``running``) and at the end (``completed``
or ``failed``), so a reader never sees half a file. A forced rerun keeps the old record aside.
"""

from __future__ import annotations

import json
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

RESULTS_NAME = "results.json"
PREDICTIONS_NAME = "predictions.jsonl"
SCHEMA_VERSION = 1
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
) -> None:
    """One JSON line per example, with its scores: what paired significance tests need.

    ``reference`` is the first reference, ``references`` all of them (multi-reference tasks).
    """
    references = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    path = run_dir / PREDICTIONS_NAME
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        for i, (example_id, prediction, refs) in enumerate(zip(ids, predictions, references, strict=True)):
            scores = {name: values[i] for name, values in per_example.items()}
            row = {"id": example_id, "prediction": prediction, "reference": refs[0], "references": refs}
            handle.write(json.dumps({**row, "scores": scores}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_results(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / RESULTS_NAME
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_completed(run_dir: str | Path) -> bool:
    results = read_results(run_dir)
    return results is not None and results.get("status") == "completed"


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
    """Accumulates what a run produces and writes ``results.json`` (main process only)."""

    def __init__(self, run_dir: Path, cfg: DictConfig, write: bool = True) -> None:
        self.run_dir = run_dir
        self.write = write
        self._start = time.perf_counter()
        self.data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "status": "running",
            "error": None,
            "run_dir": str(run_dir),
            "experiment": cfg.experiment_name,
            "task": cfg.task.name,
            "model": cfg.model.name,
            "method": cfg.method.name,
            "calib": cfg.calib.name,
            "seed": cfg.seed,
            "metrics": {},
            "metric_settings": {},
            "params": {},
            "config": redact(OmegaConf.to_container(cfg, resolve=True)),
            "git": git_info(),
            "versions": package_versions(),
            "host": None,
            "timings": {},
            "started_at": _now(),
            "finished_at": None,
        }

    def start(self) -> None:
        """Keep a previous record aside (forced rerun or a failed try), then mark this run as running."""
        previous = self.run_dir / RESULTS_NAME
        if self.write and previous.exists():
            old = read_results(self.run_dir) or {}
            stamp = (old.get("finished_at") or old.get("started_at") or _now()).replace(":", "")
            os.replace(previous, self.run_dir / f"results.{old.get('status', 'unknown')}.{stamp}.json")
        self._save()

    @contextmanager
    def timed(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.data["timings"][f"{name}_s"] = round(time.perf_counter() - start, 3)

    def complete(self) -> None:
        self._finish("completed")

    def fail(self, error: BaseException) -> None:
        self.data["error"] = {"type": type(error).__name__, "message": str(error)}
        self._finish("failed")

    def _finish(self, status: str) -> None:
        self.data["status"] = status
        self.data["finished_at"] = _now()
        self.data["timings"]["total_s"] = round(time.perf_counter() - self._start, 3)
        self._save()

    def _save(self) -> None:
        if self.write:
            write_json_atomic(self.run_dir / RESULTS_NAME, self.data)
