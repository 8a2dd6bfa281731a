"""How many threads a run computes with, and how they wait: so that runs sharing a machine do not collapse.

torch's CPU kernels (MKL's and oneDNN's too) run on an OpenMP thread team: GNU libgomp in torch's Linux
wheels. Between parallel regions its threads spin (~300,000 iterations, milliseconds) before they sleep.
Two processes with a thread per core each then spend their time slices spinning against each other:
two tiny runs on 2 cores took 10× as long as one, not 2× (issue 20). A shorter spin does not cure it
(two default runs at once, two threads each, on 2 idle cores: 83 s with ``GOMP_SPINCOUNT=10000``, 191 s
with 30,000, 25 s with threads that sleep at once). The policy, unasked:

- before torch loads, in every command's first lines (:func:`wait_policy`): ``OMP_WAIT_POLICY=PASSIVE``
  (libgomp; LLVM's and Intel's OpenMP read it as KMP_BLOCKTIME=0), unless the user chose a wait policy or spin time;
- in the process that trains (:func:`use_threads`, called by the run: a launcher's job or worker too):
  ``run.threads`` if set; else ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` if the user set them; else its
  share of the cores: the physical cores this process may use (:func:`available_cores`: its CPU affinity,
  e.g. a SLURM job's or taskset's; its container's CPU quota) over the processes started together with it
  (``REPCALI_JOBS``, which a launcher sets for its jobs: :func:`started_together`), except that a model
  under :data:`SMALL_MODEL` parameters computes on one thread. Recorded in ``results.json``
  (``host.threads``); not part of the run's identity.

Why small models get one thread: with threads that sleep, every parallel region pays for waking them, and a
tiny model's operations are too small to repay it. Measured on 2 idle cores (AMD EPYC, torch 2.13, PASSIVE,
batch 16 × 128 → 32 tokens; one thread against two): the embedded 0.4M-parameter T5 trained a step in 102
against 106 ms and generated in 68 against 103 ms; an 8.4M-parameter T5 trained 1.41× faster on two threads
(generation 1.12×), a 46M one 1.67×, BART-base 1.74×. A run of the embedded default took 22.7 s on one
thread against 26.5 s on two. The threshold sits between the two smallest sizes measured.

A process forked from one whose OpenMP threads may have started computes with one thread: libgomp's
thread pool does not survive ``fork``, and a forked child that starts a parallel region hangs.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repcali.errors import RepCaliError

JOBS_ENV = "REPCALI_JOBS"  # processes sharing this machine's cores with this one, itself included
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")  # a user's choice of how threads wait
COUNT_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # a user's thread count, as torch reads it
SMALL_MODEL = 2_000_000  # parameters below which a second thread costs more than it brings (the docstring)

_forked_with_threads = False  # set in a forked child of a process whose torch had several threads


def wait_policy(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables to add to ``environ`` before torch loads, so that waiting OpenMP threads sleep rather than
    spin: ``os.environ.update(wait_policy(os.environ))``. Nothing where the user chose how threads wait."""
    if any(name in environ for name in WAIT_VARIABLES):
        return {}
    return {"OMP_WAIT_POLICY": "PASSIVE"}


def concurrent_jobs(environ: Mapping[str, str] = os.environ) -> int:
    """How many processes share this machine's cores, this one included (``REPCALI_JOBS``; 1 when unset)."""
    try:
        return max(1, int(environ.get(JOBS_ENV, "1")))
    except ValueError:
        raise RepCaliError(f"{JOBS_ENV}={environ[JOBS_ENV]!r}. Fix: a whole number of processes, e.g. 2.") from None


def started_together(jobs: int) -> dict[str, str]:
    """What a launcher puts into the environment of each of the ``jobs`` processes it starts at once: their
    count, times this process's own (a sweep's jobs started by one of several test workers share that
    worker's share)."""
    return {JOBS_ENV: str(concurrent_jobs() * jobs)}


def available_cores() -> int:
    """The physical cores this process may run on: its CPU affinity (a SLURM job, taskset), hyperthreads of
    one core counted once (as torch's own default counts), at most its cgroup's CPU quota (a container)."""
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = len({_core_of(cpu) for cpu in cpus})
    quota = cpu_quota()
    return max(1, min(cores, quota) if quota else cores)


def _core_of(cpu: int) -> tuple[str, str] | int:
    topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
    try:
        return (topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()
    except OSError:
        return cpu


def cpu_quota(root: Path = Path("/")) -> int | None:
    """CPUs' worth of time this process's cgroup may use (cgroup v2's ``cpu.max``, "quota period", rounded up);
    None without a quota ("max", cgroup v1, no cgroup file system)."""
    try:
        cgroup = (root / "proc/self/cgroup").read_text().splitlines()
        group = next(line[3:] for line in cgroup if line[:3] == "0::")
        quota, period = (root / "sys/fs/cgroup" / group.lstrip("/") / "cpu.max").read_text().split()
        return None if quota == "max" else math.ceil(int(quota) / int(period))
    except (OSError, StopIteration, ValueError):
        return None


def check_threads(threads: int | None) -> None:
    """``run.threads``: null (the policy) or a count of at least 1."""
    if threads is not None and threads < 1:
        raise RepCaliError(f"run.threads={threads}. Fix: a thread count >= 1, or null for this process's share.")


def use_threads(threads: int | None = None, parameters: int | None = None) -> dict[str, Any]:
    """Set torch's thread count in this process, the one that trains, for a model of ``parameters`` (see the
    module's docstring for the order of precedence); return what ``results.json`` records (``host.threads``)."""
    import torch

    check_threads(threads)
    cores, jobs = available_cores(), concurrent_jobs()
    user = next((name for name in COUNT_VARIABLES if _count(os.environ.get(name))), None)
    if _forked_with_threads:
        count, source = 1, "forked"  # more would hang: see the module's docstring
    elif threads is not None:
        count, source = threads, "run.threads"
    elif user:
        count, source = _count(os.environ[user]), user
    elif cores // jobs > 1 and parameters is not None and parameters < SMALL_MODEL:
        count, source = 1, "small model"
    else:
        count, source = max(1, cores // jobs), "share"
    torch.set_num_threads(count)
    return {
        "count": torch.get_num_threads(),
        "from": source,  # share (cores // jobs), small model, run.threads, OMP_NUM_THREADS, MKL_NUM_THREADS, forked
        "cores": cores,
        "jobs": jobs,
        "wait_policy": {name: os.environ[name] for name in WAIT_VARIABLES if name in os.environ},
    }


def _count(value: str | None) -> int | None:
    """A thread count as OpenMP reads it (``4``, or ``4,2`` per nesting level: the first); None if not one."""
    try:
        count = int((value or "").split(",")[0])
    except ValueError:
        return None
    return count if count >= 1 else None


def _after_fork_in_child() -> None:
    global _forked_with_threads
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() > 1:
        _forked_with_threads = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SharedCores:
    """A Hydra task function run in one of ``jobs`` worker processes that a launcher keeps at once (joblib's):
    each run computes on its share of the cores. loky puts ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` =
    cores // workers into its workers' environment where this process has none: not a user's count."""

    def __init__(self, task_function, jobs: int) -> None:
        self.task_function = task_function
        self.environment = started_together(jobs)
        self.loky_sets = [name for name in COUNT_VARIABLES if name not in os.environ]

    def __call__(self, cfg):
        for name in self.loky_sets:
            os.environ.pop(name, None)
        os.environ.update(self.environment)
        return self.task_function(cfg)
