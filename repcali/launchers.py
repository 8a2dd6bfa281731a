"""What sweeps need from Hydra's launcher plugins; the launcher classes themselves are in
``hydra_plugins/repcali_launchers/`` (Hydra instantiates launchers only from the ``hydra_plugins`` package).

- ``hydra/launcher=slurm`` and ``slurm_multigpu`` (hydra-submitit-launcher, ``conf/hydra/launcher/``):
  no partition, no submission (one line, before any job is composed); runs already completed are not
  submitted again (:func:`unfinished`), so re-running a sweep after an outage submits only what is left;
  a job with several tasks (one per GPU) starts as ``torchrun`` would (:func:`export_distributed`).
  Preemption and time limits are submitit's: its ``USR2`` handler calls the launcher's ``checkpoint``
  (resubmit the same job) and requeues; the run then resumes from its newest checkpoint.
- ``hydra/launcher=local``: submitit's local executor, the same code path on one machine (every run its
  own process, all at once, no GPU): tests, and a dry run before submitting.
- ``hydra/launcher=local_gpus`` (hydra-joblib-launcher): one worker process per GPU, each holding one GPU
  for its life (:func:`claim_gpu`), so concurrent runs never share one. submitit's local executor cannot
  do this: it gives every job the same ``CUDA_VISIBLE_DEVICES`` and starts them all at once.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("repcali")

NO_PARTITION = (
    "error: No SLURM partition for hydra/launcher=slurm. Fix: set cluster.partition in conf/local/default.yaml "
    "(copy conf/local/default.yaml.example) or pass cluster.partition=<name>."
)


def unfinished(job_overrides: Sequence[Sequence[str]]) -> list[Sequence[str]]:
    """The jobs whose run has no completed ``results.json`` yet (all of them with ``rerun=true``).

    Each job's run directory comes from its composed config, cached like a grid's (:mod:`repcali.grid`).
    """
    from repcali import grid
    from repcali.results import InvalidResults, read_results

    jobs = [list(overrides) for overrides in job_overrides]
    if any(line.lstrip("+") in ("rerun=true", "rerun=True") for job in jobs for line in job):
        return list(job_overrides)
    left = []
    for overrides, point in zip(job_overrides, grid.job_points(jobs), strict=True):
        try:
            results = read_results(point.run_dir)
        except InvalidResults:
            results = None  # train.py keeps it aside and runs the config again
        if results is None or results.status != "completed":
            left.append(overrides)
    if len(left) < len(jobs):
        log.info("%d of %d runs already completed: not submitted again.", len(jobs) - len(left), len(jobs))
    return left


def export_distributed() -> None:
    """In a submitit job with several tasks (one per GPU), make each task a rank as ``torchrun`` would:
    ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``.

    Every GPU of the node stays visible and accelerate takes ``cuda:LOCAL_RANK``, as under torchrun.
    """
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)


def visible_gpus(count: int) -> list[str]:
    """The GPUs a sweep may use on this machine: ``CUDA_VISIBLE_DEVICES`` if set, else ``0 .. count-1``."""
    listed = [gpu.strip() for gpu in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if gpu.strip()]
    return listed or [str(index) for index in range(count)]


_held: tuple[object, str] | None = None  # this process's GPU lock and GPU, for its whole life


def claim_gpu(gpus: Sequence[str], lock_dir: Path | None = None, poll_s: float = 5.0) -> str:
    """Hold one free GPU of ``gpus`` for the rest of this process, and make it its only visible GPU.

    A GPU is free when no process holds its lock file (``$TMPDIR/repcali-gpus-<uid>/gpu-<id>.lock``,
    shared by every sweep of this user on this machine); the lock goes when the process ends, however
    it ends. Waits while every GPU is held. Must run before anything in the process starts CUDA.
    """
    global _held
    from filelock import FileLock, Timeout

    if _held is None:
        lock_dir = lock_dir or Path(tempfile.gettempdir()) / f"repcali-gpus-{os.getuid()}"
        lock_dir.mkdir(parents=True, exist_ok=True)
        while _held is None:
            for gpu in gpus:
                lock = FileLock(lock_dir / f"gpu-{gpu}.lock")
                try:
                    lock.acquire(timeout=0)
                except Timeout:
                    continue
                _held = (lock, gpu)
                break
            else:
                time.sleep(poll_s)
        os.environ["CUDA_VISIBLE_DEVICES"] = _held[1]
    return _held[1]


class OneGpu:
    """A Hydra task function, run on the GPU that its worker process holds (:func:`claim_gpu`)."""

    def __init__(self, task_function, gpus: Sequence[str]) -> None:
        self.task_function = task_function
        self.gpus = list(gpus)

    def __call__(self, cfg):
        log.info("This worker runs on GPU %s (CUDA_VISIBLE_DEVICES).", claim_gpu(self.gpus))
        return self.task_function(cfg)
