"""One process per run directory: the lock names its owner, a dead owner's run shows as interrupted and is
taken over, a live one is never disturbed. Every owner and second process here is a real process."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from repcali import grid, sweeps
from repcali.compose import Composer, hydra_compose
from repcali.ownership import LOCK_NAME, RunBusy, RunLock, lock_held, shown_status
from repcali.results import RESULTS_NAME, Owner, read_results
from repcali.runs import RunRecord
from tests import cli
from tests.holder import end, hold
from tests.test_runs import config
from tests.test_train import FAST

HOST = socket.gethostname()


def running_record(run_dir: Path) -> None:
    RunRecord(run_dir, config()).start()


def test_the_lock_names_its_owner_and_is_free_once_the_owner_is_killed(tmp_path):
    running_record(tmp_path)
    owner = hold(tmp_path)
    try:
        results = read_results(tmp_path)
        assert results.owner.pid == owner.pid and results.owner.host == HOST
        assert results.owner.process_started == pytest.approx(psutil.Process(owner.pid).create_time())
        for _ in range(20):  # probing takes the lock for an instant without waiting: the owner keeps it
            assert lock_held(tmp_path) is True and shown_status(tmp_path, results) == "running"
        with pytest.raises(RunBusy, match=rf"Run {tmp_path} is being run by pid {owner.pid} on {HOST} since .*Fix: "):
            RunLock(tmp_path).acquire(0)
        assert owner.poll() is None and lock_held(tmp_path) is True
    finally:
        end(owner)
    assert lock_held(tmp_path) is False and shown_status(tmp_path, read_results(tmp_path)) == "interrupted"
    lock = RunLock(tmp_path)
    lock.acquire(0)  # the dead owner's run is free to take over
    assert lock_held(tmp_path) is True
    lock.release()


def test_where_the_lock_cannot_tell_the_process_on_this_host_does(tmp_path):
    """No lock file to probe (a copied directory, a file system without flock): host, pid and start time."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(process.pid).create_time()
        owner = Owner(host=HOST, pid=process.pid, process_started=started, since="2026-01-01T00:00:00+00:00")
        running_record(tmp_path)
        results = dataclasses.replace(read_results(tmp_path), owner=owner)
        assert not (tmp_path / LOCK_NAME).exists() and lock_held(tmp_path) is None
        assert shown_status(tmp_path, results) == "running"
        reused = dataclasses.replace(owner, process_started=started - 3600)  # same pid, another process
        assert shown_status(tmp_path, dataclasses.replace(results, owner=reused)) == "interrupted"
        elsewhere = dataclasses.replace(reused, host=f"not-{HOST}")  # another host's process: cannot tell
        assert shown_status(tmp_path, dataclasses.replace(results, owner=elsewhere)) == "running"
    finally:
        process.kill()
        process.wait()
    assert shown_status(tmp_path, results) == "interrupted"
    assert shown_status(tmp_path, dataclasses.replace(results, owner=None)) == "running"  # no owner recorded: as is


SWEEP = ["+sweep=smoke", "seed=1", *FAST, "trainer.max_steps=2", "experiment_name=ownership"]


def train_py(*args: str) -> cli.Started:
    return cli.start("train.py", *args)


@pytest.mark.slow
def test_a_run_owned_by_another_process_is_refused_or_skipped_untouched_then_waited_for(tmp_path):
    """A live owner (a real process holding the lock): a second ``train.py`` exits 1 with one line naming it,
    a sweep skips it and goes on; neither touches the directory. ``sweep-status`` says running. With
    ``run.lock_wait_s``, a sweep waits; once the owner is killed, it takes the run over and completes it."""
    runs = tmp_path / "runs"
    overrides = [*SWEEP[1:], f"runs_dir={runs}"]
    owned, completed = grid.points("smoke", overrides)  # calib off, calib on
    with hydra_compose():
        composer = Composer()
        RunRecord(owned.run_dir, composer(list(owned.job))).start()
        record = RunRecord(completed.run_dir, composer(list(completed.job)))
    record.start()
    record.complete()
    partial = owned.run_dir / "checkpoints" / "checkpoint-2"  # what only the owner may delete
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"being written")
    owner = hold(owned.run_dir)
    try:
        before = (owned.run_dir / RESULTS_NAME).read_bytes()
        single, sweep = train_py(*owned.job), train_py("-m", *SWEEP, f"runs_dir={runs}")
        single.wait(timeout=600)
        sweep.wait(timeout=600)
        single_err, sweep_out, sweep_err = single.stderr, sweep.stdout, sweep.stderr

        named = f"Run {owned.run_dir} is being run by pid {owner.pid} on {HOST} since "
        assert single.returncode == 1, single_err[-3000:]
        errors = [line for line in single_err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and errors[0].startswith(f"error: {named}") and "Fix: " in errors[0], single_err
        assert sweep.returncode == 0, sweep_err[-3000:]
        assert f"Skipped: {named}" in sweep_out and "Already completed; skipped" in sweep_out  # and went on
        assert (owned.run_dir / RESULTS_NAME).read_bytes() == before  # not recorded as failed, nothing deleted
        assert (partial / "model.safetensors").read_bytes() == b"being written"
        assert not (owned.run_dir / ".hydra").exists() and not list(owned.run_dir.glob("results.*.json"))
        found = sweeps.status("smoke", overrides)
        assert [run.status for run in found] == ["running", "done"] and f"pid {owner.pid}" in found[0].error

        waiting = train_py("-m", *SWEEP, f"runs_dir={runs}", "run.lock_wait_s=300")
        deadline = time.monotonic() + 300
        while "waiting up to 300 s" not in waiting.stdout:
            assert waiting.poll() is None and time.monotonic() < deadline, waiting.stderr[-3000:]
            time.sleep(0.1)
        assert (owned.run_dir / RESULTS_NAME).read_bytes() == before
    finally:
        end(owner)
    assert waiting.wait(timeout=600) == 0, waiting.stderr[-3000:]
    results = read_results(owned.run_dir)
    assert results.status == "completed" and results.owner.pid == waiting.pid
    assert list(owned.run_dir.glob("results.running.*.json"))  # the dead owner's record, kept aside
    assert [run.status for run in sweeps.status("smoke", overrides)] == ["done", "done"]
