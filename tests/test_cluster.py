"""Sweeps on a cluster: the launcher configs, submission, submitit's local executor (the SLURM code path in
real processes), a job preempted with a real signal and requeued, and one GPU per worker on one machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from omegaconf import OmegaConf

from repcali import launchers
from repcali.results import RESULTS_NAME, read_results
from repcali.threads import available_cores, concurrent_jobs
from tests import cli
from tests.grid import ROOT
from tests.test_train import FAST

LAUNCHERS = sorted(path.stem for path in (ROOT / "conf" / "hydra" / "launcher").glob("*.yaml"))
OURS = "hydra_plugins.repcali_launchers."
LOCAL_VALUES = """# @package _global_
cluster:
  partition: a100
  account: nlp-lab
  time_min: 600
  gpus_per_node: 4
"""


def local_values(folder: Path) -> list[str]:
    """Overrides that read cluster values from a ``local/`` file as conf/local/default.yaml would
    (the real one is the developer's own and git-ignored, so a test never writes it)."""
    (folder / "local").mkdir(parents=True, exist_ok=True)
    (folder / "local" / "cluster.yaml").write_text(LOCAL_VALUES)
    return ["local=cluster", f"hydra.searchpath=[file://{folder}]"]


def launcher_config(*overrides: str) -> dict:
    """``hydra.launcher`` as ``train.py --cfg all --resolve`` prints it."""
    process = cli.here("train.py", "--cfg", "all", "--resolve", *overrides)
    assert process.returncode == 0, process.stderr[-2000:]
    return OmegaConf.to_container(OmegaConf.create(process.stdout).hydra.launcher)


def test_the_launchers_are_the_four_documented():
    assert LAUNCHERS == ["local", "local_gpus", "slurm", "slurm_multigpu"]


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_each_launcher_config_composes_with_and_without_local_values(launcher, tmp_path):
    plain = cli.here("train.py", "--cfg", "hydra", f"hydra/launcher={launcher}")
    assert plain.returncode == 0 and f"_target_: {OURS}" in plain.stdout, plain.stderr[-2000:]

    default = launcher_config(f"hydra/launcher={launcher}")
    local = launcher_config(f"hydra/launcher={launcher}", *local_values(tmp_path))
    if launcher.startswith("slurm"):
        assert default["partition"] is None and default["timeout_min"] == 1440  # ClusterConfig's defaults
        assert (local["partition"], local["account"], local["timeout_min"]) == ("a100", "nlp-lab", 600)
        assert local["signal_delay_s"] == 300 and local["max_num_timeout"] == 5  # requeued after time-outs
        per_job = 4 if launcher == "slurm_multigpu" else 1
        assert local["gpus_per_node"] == local["tasks_per_node"] == per_job  # one task (rank) per GPU
        command_line = launcher_config(f"hydra/launcher={launcher}", *local_values(tmp_path), "cluster.partition=h100")
        assert command_line["partition"] == "h100"
    elif launcher == "local_gpus":
        assert (default["n_jobs"], local["n_jobs"]) == (1, 4)
    else:
        assert default["gpus_per_node"] == 0 and local["timeout_min"] == 600


def test_slurm_without_a_partition_fails_at_submission_with_one_line(tmp_path):
    process = cli.here("train.py", "-m", "+sweep=smoke", "hydra/launcher=slurm", f"runs_dir={tmp_path}")
    assert process.returncode == 1
    assert process.stderr.strip().splitlines() == [launchers.NO_PARTITION]
    assert not any(tmp_path.iterdir())  # nothing submitted, nothing written


def test_the_slurm_launcher_puts_cluster_setup_lines_into_each_job():
    from hydra_plugins.repcali_launchers.submitit_launchers import SlurmLauncher

    launcher = SlurmLauncher(partition="gpu", setup=None)
    config = OmegaConf.create({"cluster": {"setup": ["export WANDB_MODE=offline", "module load cuda"]}})
    launcher.setup(hydra_context=None, task_function=None, config=config)
    assert launcher.params["setup"] == ["export WANDB_MODE=offline", "module load cuda"]


def test_concurrent_workers_each_hold_a_gpu_of_their_own(tmp_path):
    """Real processes: two take the two GPUs; a third waits until one of them exits, then takes its GPU."""
    code = (
        "import sys, time; from pathlib import Path; from repcali.launchers import claim_gpu; "
        "print(claim_gpu(['3', '5'], Path(sys.argv[1]), poll_s=0.05), flush=True); time.sleep(float(sys.argv[2]))"
    )

    def worker(hold_s: float) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path), str(hold_s)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )

    first, second = worker(2.0), worker(30.0)
    gpus = {first.stdout.readline().strip(), second.stdout.readline().strip()}
    assert gpus == {"3", "5"}
    third = worker(0.0)
    assert third.stdout.readline().strip() in gpus and first.wait(timeout=60) == 0  # it had to wait for the first
    second.kill()
    second.wait()
    assert third.wait(timeout=60) == 0


def test_visible_gpus_come_from_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 6")
    assert launchers.visible_gpus(8) == ["2", "6"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert launchers.visible_gpus(3) == ["0", "1", "2"]


# The smoke sweep on fixture data, long enough (12 steps, a checkpoint every 3) to be interrupted mid-training.
SWEEP = ["+sweep=smoke", "seed=1", *FAST, "trainer.max_steps=12", "checkpoint.every_steps=3"]


def sweep(runs: Path, *overrides: str) -> cli.Started:
    """``python train.py -m`` on SWEEP, a process of its own (the launcher's jobs are processes of theirs)."""
    return cli.start("train.py", "-m", *SWEEP, f"runs_dir={runs}", *overrides, output=runs.with_suffix(".out"))


def job_threads() -> tuple[str, int, int]:
    """What each of the sweep's 2 runs, started together by a local launcher, computes with: its share of the
    cores of this process's share (repcali/threads.py), recorded as results.json's host.threads; one thread,
    for the tiny model, where that share is more."""
    jobs = concurrent_jobs() * 2
    share = available_cores() // jobs
    return ("small model", 1, jobs) if share > 1 else ("share", max(1, share), jobs)


def threads_of(runs: dict[str, object]) -> set[tuple[str, int, int]]:
    threads = [run.host["threads"] for run in runs.values()]
    return {(each["from"], each["count"], each["jobs"]) for each in threads}


def completed_runs(runs: Path) -> dict[str, object]:
    found = {str(path.parent.relative_to(runs)): read_results(path.parent) for path in runs.rglob(RESULTS_NAME)}
    assert len(found) == 2 and all(results.status == "completed" for results in found.values()), found
    return found


def preempt_one_job(process: cli.Started, runs: Path) -> set[str]:
    """While the sweep runs, send SIGUSR2 (what SLURM sends before a time limit, and where configured at
    preemption) to the first submitit job whose run has a complete checkpoint; return that run (the other
    job runs through: one preempted job shows the path, and each requeue is a fresh process to pay for).

    A job is the process running ``submitit.core._submit``; its run is the one whose train.log it writes.
    """
    while process.poll() is None:
        for task in psutil.Process(process.pid).children(recursive=True):
            try:
                if "submitit.core._submit" not in " ".join(task.cmdline()):
                    continue
                logs = [Path(f.path) for f in task.open_files() if f.path.endswith("train.log")]
            except psutil.Error:
                continue
            for log in logs:
                if list(log.parent.glob("checkpoints/checkpoint-*/repcali_manifest.json")):
                    os.kill(task.pid, signal.SIGUSR2)
                    return {str(log.parent.relative_to(runs))}
        time.sleep(0.2)
    return set()


@pytest.fixture(scope="module")
def basic(tmp_path_factory) -> Path:
    """The sweep through Hydra's basic launcher, in this process: what the submitit one must give (at a submitit
    job's thread count: the results are compared exactly)."""
    runs = tmp_path_factory.mktemp("basic") / "runs"
    process = cli.here("train.py", "-m", *SWEEP, f"runs_dir={runs}", f"run.threads={job_threads()[1]}")
    assert process.returncode == 0, process.stderr[-3000:]
    return runs


@pytest.fixture(scope="module")
def submitted(tmp_path_factory) -> tuple[Path, set[str]]:
    """The same sweep through hydra/launcher=local (submitit), one job preempted after its first checkpoint."""
    runs = tmp_path_factory.mktemp("submitit") / "runs"
    process = sweep(runs, "hydra/launcher=local")
    interrupted = preempt_one_job(process, runs)
    assert process.wait(timeout=900) == 0, (process.stdout + process.stderr)[-3000:]
    return runs, interrupted


def tables(runs: Path) -> dict[str, str]:
    """The tables built from ``runs``, with that folder's path (the CSV names each run's directory) as ``<runs>``."""
    out = runs.parent / "tables"
    process = cli.here("-m", "repcali.tables", "--runs", str(runs), "--out", str(out))
    assert process.returncode == 0, process.stderr[-3000:]
    built = sorted(path for path in out.glob("*") if path.suffix in (".csv", ".md", ".tex"))
    return {path.name: path.read_text().replace(str(runs), "<runs>") for path in built}


# the tests of the two sweeps below share one pytest-xdist worker: each sweep runs once
SAME_SWEEPS = pytest.mark.xdist_group("cluster-sweeps")


@pytest.mark.slow
@pytest.mark.launchers
@SAME_SWEEPS
def test_submitit_local_sweep_completes_every_run_and_gives_the_basic_launchers_tables(basic, submitted):
    runs, _ = submitted
    assert completed_runs(runs).keys() == completed_runs(basic).keys()
    assert threads_of(completed_runs(runs)) == {job_threads()}  # each job its share: cores / (jobs at once)
    assert threads_of(completed_runs(basic)) == {("run.threads", job_threads()[1], concurrent_jobs())}
    through_submitit, through_basic = tables(runs), tables(basic)
    assert set(through_basic) == {"smoke.csv", "smoke.md", "smoke.tex"}
    assert through_submitit == through_basic


@pytest.mark.slow
@pytest.mark.launchers
@SAME_SWEEPS
def test_a_job_preempted_mid_training_is_requeued_and_resumes_from_its_checkpoint(basic, submitted):
    runs, interrupted = submitted
    assert interrupted, "no job was still training when its first checkpoint appeared"
    resumed, uninterrupted = completed_runs(runs), completed_runs(basic)
    for run in resumed:
        if run in interrupted:
            assert 3 <= resumed[run].resumed_from_step < 12  # mid-training: the checkpoint SIGUSR2 asked for
        else:
            assert resumed[run].resumed_from_step is None  # the job left alone ran through
        assert resumed[run].metrics == uninterrupted[run].metrics  # exactly: resuming changes nothing
    logs = "".join(path.read_text() for path in runs.glob(".submitit/*/*_log.*"))  # Hydra's logging picks out or err
    assert logs.count("interrupted: stopped by SIGUSR2") >= len(interrupted)  # checkpointed and recorded first
    assert logs.count("Requeued job") >= len(interrupted)  # then submitit's own handler requeued


@pytest.mark.slow
@pytest.mark.launchers
def test_one_machine_with_two_gpus_runs_a_sweep_one_gpu_per_worker(tmp_path):
    """hydra/launcher=local_gpus (joblib): two workers, each on its own GPU of CUDA_VISIBLE_DEVICES (no GPU
    is needed to see which one each run was given)."""
    runs = tmp_path / "runs"
    command = ["train.py", "-m", *SWEEP[:-2], "trainer.max_steps=2", f"runs_dir={runs}"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "5,7"}
    process = cli.start(*command, "hydra/launcher=local_gpus", "cluster.gpus_per_node=2", env=env)
    assert process.wait(timeout=900) == 0, process.stderr[-3000:]
    assert threads_of(completed_runs(runs)) == {job_threads()}  # not loky's OMP_NUM_THREADS: the policy's share
    gpus = {
        line.split("runs on GPU ")[1][0]
        for log in runs.rglob("train.log")
        for line in log.read_text().splitlines()
        if "runs on GPU" in line
    }
    assert gpus == {"5", "7"}
