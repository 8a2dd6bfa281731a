"""A second, real process that owns a run directory: it takes the run's lock and records itself, then waits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.grid import ROOT

HOLD = """
import json, sys, time
from dataclasses import asdict
from pathlib import Path
from repcali.ownership import RunLock, this_process
run_dir = Path(sys.argv[1])
lock = RunLock(run_dir)  # kept: a FileLock released when collected
lock.acquire(0)
record = run_dir / "results.json"
if record.exists():  # as a run records itself once it owns the directory
    data = json.loads(record.read_text())
    record.write_text(json.dumps({**data, "status": "running", "owner": asdict(this_process())}))
print("holding", flush=True)
time.sleep(600)
"""


def hold(run_dir: Path) -> subprocess.Popen:
    """Start the owner of ``run_dir`` and return once it holds the lock (end it with ``.kill()``)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = process.stdout.readline()
    assert line == "holding\n", process.stderr.read()
    return process


def end(process: subprocess.Popen) -> None:
    """SIGKILL: the owner dies without a word, as on an OOM kill or a node failure."""
    process.kill()
    process.wait()
