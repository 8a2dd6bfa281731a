"""Who runs a run: one process at a time per run directory, and whether a ``running`` record's process is alive.

A process that runs a config holds an OS lock on ``<run dir>/run.lock`` (``filelock.FileLock``:
``flock(2)``) from before it touches the directory (resume, checkpoints, ``results.json``) until its
record is final, and records itself as the run's :class:`~repcali.results.Owner` (host, pid, the
process's start time, SLURM job). The kernel drops the lock when the process ends however it ends
(SIGKILL, a crash, the OOM killer), so *the owner is gone* exactly when *the lock can be taken*:

- a second process on the same config waits up to ``run.lock_wait_s`` and then is refused with one
  line naming the owner (:class:`RunBusy`); it changes nothing in the directory;
- :func:`shown_status` shows a ``running`` record whose lock is free as ``interrupted``
  (``sweep-status``, the tables); probing takes the lock for an instant without waiting, which
  never disturbs a holder (a process about to take it waits at least ``GRACE_S``).

Where the lock cannot say (a file system without ``flock``: the probe fails; or the lock file is
missing), the owner's host, pid and start time are checked when it ran on this host; a run owned
on another host is then shown as its record says.

What it does not cover (docs/reliability.md): a shared file system whose ``flock`` is
local to each node (NFS mounted ``local_lock=flock``/``all`` or ``nolock``, Lustre ``localflock``)
lets two nodes own one run; Lustre without ``flock`` has no lock at all (refused unless
``run.lock=false``); a node that crashes holding an NFS lock keeps it until the server's lease
ends (NFSv4: ~90 s) or, with NFSv3's lock manager, until that client reboots. On NFS ``flock`` is
emulated with POSIX locks, which a process drops when it closes *any* descriptor of the file: the
owner never probes its own lock (:func:`owner_alive` answers for it without opening the file).

In a distributed run only the main process (rank 0) takes the lock and records; every rank learns
its decision through :func:`agree` (one broadcast), so no rank trains a run another process owns
and none waits in a collective for a rank that left.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import datetime, timezone
from errno import ENOSYS
from pathlib import Path
from typing import Any

import psutil
from filelock import FileLock, Timeout, lock_descriptor, unlock_descriptor

from repcali.errors import RepCaliError
from repcali.results import InvalidResults, Owner, Results, read_results

log = logging.getLogger("repcali")

LOCK_NAME = "run.lock"
GRACE_S = 2.0  # the shortest wait for the lock: a probe (sweep-status, the tables) holds it for microseconds
_START_TOLERANCE_S = 1.0  # psutil's start time may move by a clock tick between reads


def this_process() -> Owner:
    """This process as a run's owner."""
    slurm = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        slurm = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return Owner(
        host=socket.gethostname(),
        pid=os.getpid(),
        process_started=psutil.Process().create_time(),
        since=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        slurm_job_id=slurm,
    )


class RunBusy(RepCaliError):
    """Another process owns the run directory: nothing was done there."""

    @classmethod
    def of(cls, run_dir: Path, owner: Owner | None, waited_s: float) -> RunBusy:
        who = owner.describe() if owner else "another process (not recorded yet)"
        return cls(
            f"Run {run_dir} is being run by {who} (waited {waited_s:.0f} s). Fix: let it finish or stop it; "
            "run.lock_wait_s=<seconds> waits for it (one process trains a run directory at a time)."
        )


def _recorded_owner(run_dir: Path) -> Owner | None:
    try:
        results = read_results(run_dir)
    except InvalidResults:
        return None
    return results.owner if results else None


class RunLock:
    """The lock that makes this process a run directory's owner: ``acquire``, run, ``release``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self._lock = FileLock(self.run_dir / LOCK_NAME, fallback_to_soft=False)  # no marker files: they outlive kills

    def acquire(self, wait_s: float) -> None:
        """Take the lock within ``wait_s`` seconds (at least ``GRACE_S``), or raise :class:`RunBusy`."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        if self._try(GRACE_S):
            return
        if wait_s > GRACE_S:
            owner = _recorded_owner(self.run_dir)
            who = owner.describe() if owner else "another process"
            log.warning(
                "Run %s is being run by %s; waiting up to %g s for it (run.lock_wait_s).", self.run_dir, who, wait_s
            )
            if self._try(wait_s - GRACE_S):
                return
        raise RunBusy.of(self.run_dir, _recorded_owner(self.run_dir), time.monotonic() - start)

    def _try(self, timeout: float) -> bool:
        try:
            self._lock.acquire(timeout=timeout)
        except Timeout:
            return False
        except OSError as error:
            if error.errno != ENOSYS:
                raise
            raise RepCaliError(
                f"The file system of {self.run_dir} has no flock(2) locks, so nothing would stop two processes "
                "from training this run at once. Fix: put runs_dir on a file system with flock (Lustre: mount "
                "with -o flock), or set run.lock=false and start each config once."
            ) from None
        return True

    def release(self) -> None:
        self._lock.release()


def lock_held(run_dir: Path) -> bool | None:
    """Whether some process holds the run directory's lock; None when that cannot be told.

    Takes the lock without waiting and gives it back at once: a holder is never disturbed.
    None: no lock file (a copied directory, a record from before locks) or a probe that fails (no
    ``flock`` on this file system, a lock file this user cannot open).
    """
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError:
        try:  # a read-only runs folder: flock needs no write access (NFS's emulation may refuse it: None)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
    try:
        if not lock_descriptor(fd, blocking=False):
            return True
        unlock_descriptor(fd)
        return False
    except OSError:
        return None
    finally:
        os.close(fd)


def process_alive(owner: Owner) -> bool:
    """Whether the owner's process still runs on this host: its pid exists and started when the owner did."""
    try:
        started = psutil.Process(owner.pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process with that pid: it exists, its start time is hidden
        return True
    return abs(started - owner.process_started) < _START_TOLERANCE_S


def owner_alive(run_dir: Path, owner: Owner | None) -> bool | None:
    """Whether a run's owner is alive: the lock first; the process on this host where the lock cannot tell.

    None: it cannot be told (no owner recorded, or another host's owner where the lock cannot be probed).
    """
    if owner is None:
        return None
    here = owner.host == socket.gethostname()
    if here and owner.pid == os.getpid():  # our own run: never probe a lock we may hold (NFS would drop it)
        return True
    held = lock_held(run_dir)
    if held is not None:
        return held
    return process_alive(owner) if here else None


def shown_status(run_dir: Path, results: Results) -> str:
    """The status to show for a record: ``running`` whose owner is gone is ``interrupted``."""
    if results.status == "running" and owner_alive(run_dir, results.owner) is False:
        return "interrupted"
    return results.status


def agree(value: Any) -> Any:
    """The main process's ``value`` on every process (one broadcast when distributed; ``value`` otherwise)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    message = [value]
    dist.broadcast_object_list(message, src=0)
    return message[0]
