"""The thread policy (repcali/threads.py): every command makes waiting OpenMP threads sleep before torch loads; a
run computes on its share of the cores, or on run.threads; a forked child computes on one thread, and does not hang.
A launcher's jobs recording their share: tests/test_cluster.py; run.threads recorded by a run: tests/test_train.py.
"""

from __future__ import annotations

import json
import os

import pytest

from repcali.errors import RepCaliError
from repcali.threads import (
    available_cores,
    check_threads,
    concurrent_jobs,
    cpu_quota,
    started_together,
    wait_policy,
)
from tests import cli

# The commands that may load torch, imported in turn in one fresh interpreter: each must set the wait policy at
# import, before anything loads torch; then torch's own OpenMP runtime shows what it read (OMP_DISPLAY_ENV).
COMMANDS = ("train", "repcali.sweeps", "repcali.tables.__main__", "repcali.analysis.tsne", "benchmarks.run")
PROBE = """
import importlib, json, os, sys, time
seen = {}
for module in %r:
    os.environ.pop("OMP_WAIT_POLICY", None)
    importlib.import_module(module)
    seen[module] = [os.environ.get("OMP_WAIT_POLICY"), "torch" in sys.modules]
import torch
from repcali.threads import use_threads
policy = use_threads()
os.environ["REPCALI_JOBS"] = "1"  # alone: a share of every core, but a small model computes on one
small, large = use_threads(None, 400_000), use_threads(None, 50_000_000)
os.environ["OMP_NUM_THREADS"] = "3"
user = use_threads()
explicit = use_threads(1)
use_threads(2)
torch.ones(4_000_000).exp_().sum()  # starts OpenMP's threads in this process
child = os.fork()
if child == 0:  # one thread, or this parallel region would never end
    record = use_threads(2)
    torch.ones(4_000_000).exp_().sum()
    os._exit(0 if record["from"] == "forked" and record["count"] == 1 else 3)
deadline = time.monotonic() + 60
while not (done := os.waitpid(child, os.WNOHANG))[0] and time.monotonic() < deadline:
    time.sleep(0.05)
if not done[0]:
    os.kill(child, 9)
child_exit = os.waitstatus_to_exitcode(done[1]) if done[0] else "hung"
found = dict(seen=seen, policy=policy, small=small, large=large, user=user, explicit=explicit, child=child_exit)
print(json.dumps(found))
"""


def test_the_wait_policy_is_passive_unless_the_user_chose_how_threads_wait():
    assert wait_policy({}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10000"}, {"KMP_BLOCKTIME": "200"}):
        assert wait_policy(chosen) == {}


def test_jobs_started_together_share_their_parents_share(monkeypatch):
    monkeypatch.delenv("REPCALI_JOBS", raising=False)
    assert concurrent_jobs() == 1 and started_together(3) == {"REPCALI_JOBS": "3"}
    monkeypatch.setenv("REPCALI_JOBS", "2")  # e.g. one of two test workers, or a job of a 2-job sweep
    assert started_together(3) == {"REPCALI_JOBS": "6"}
    monkeypatch.setenv("REPCALI_JOBS", "two")
    with pytest.raises(RepCaliError, match="REPCALI_JOBS='two'. Fix: "):
        concurrent_jobs()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_the_cores_are_those_of_the_cpu_affinity():
    """As under taskset or a SLURM job: this thread pinned to one CPU sees one core, whatever the machine has."""
    cpus = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(cpus)})
        assert available_cores() == 1
    finally:
        os.sched_setaffinity(0, cpus)
    assert 1 <= available_cores() <= len(cpus)


def test_a_containers_cpu_quota_bounds_the_cores(tmp_path):
    """cgroup v2, as in a container started with --cpus=2.5: the files the kernel shows, laid out under tmp_path."""
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text("0::/system.slice/job.scope\n")
    group = tmp_path / "sys/fs/cgroup/system.slice/job.scope"
    group.mkdir(parents=True)
    (group / "cpu.max").write_text("250000 100000\n")
    assert cpu_quota(tmp_path) == 3
    (group / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path) is None
    (tmp_path / "proc/self/cgroup").write_text("4:memory:/job\n1:cpu:/job\n")  # cgroup v1 only: not read
    assert cpu_quota(tmp_path) is None


def test_run_threads_below_one_is_refused_before_the_run(compose_train, tmp_path):
    from repcali.checks import check_config

    check_threads(None)
    check_threads(1)
    with pytest.raises(RepCaliError, match=r"run.threads=0\. Fix: "):
        check_config(compose_train("run.threads=0"), tmp_path)


def test_each_command_sets_the_wait_policy_before_torch_loads_and_a_run_takes_its_share():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(OMP_DISPLAY_ENV="VERBOSE", REPCALI_JOBS="2")
    process = cli.run("-c", PROBE % (COMMANDS,), env=env, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    found = json.loads(process.stdout.strip().splitlines()[-1])
    assert found["seen"] == {module: ["PASSIVE", False] for module in COMMANDS}
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in process.stderr and "GOMP_SPINCOUNT = '0'" in process.stderr  # never spins
    cores = available_cores()
    assert found["policy"] == {
        "count": max(1, cores // 2),
        "from": "share",
        "cores": cores,
        "jobs": 2,
        "wait_policy": {"OMP_WAIT_POLICY": "PASSIVE"},
    }
    assert (found["large"]["count"], found["large"]["from"]) == (cores, "share")
    assert (found["small"]["count"], found["small"]["from"]) == (1, "small model" if cores > 1 else "share")
    assert (found["user"]["count"], found["user"]["from"]) == (3, "OMP_NUM_THREADS")  # the user's count stands
    assert (found["explicit"]["count"], found["explicit"]["from"]) == (1, "run.threads")  # above all
    assert found["child"] == 0  # forked after OpenMP started: one thread, finished
