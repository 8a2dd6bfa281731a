"""Runs that survive: checkpoints, resume after a real kill or stop signal to identical results, a full
disk.

The faults are real: ``train.py`` in a process of its own killed or stopped by a signal, a checkpoint
file truncated on disk, a filesystem that is full (a 1 MiB tmpfs mounted in a user namespace where the
run writes). Those processes are forked from the test process (:func:`tests.cli.start`: real processes
that skip ~12 s of imports each). What is not a fault (the uninterrupted reference, a resume, a rerun)
runs ``train.py`` in this process (:func:`tests.cli.here`); test_train.py compares a fresh interpreter's
run with this process's. Each run is a few seconds of tiny T5 on the XSum fixture: 8 steps of 6
examples (16 examples: 3 steps per epoch, the last one short), a checkpoint every 2 steps, so a resume
from step 4 lands in the middle of the second epoch: the case the stock length-grouped sampler cannot
reproduce.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import TrainerCallback, set_seed

from repcali.checkpoints import (
    CHECKPOINTS_DIR,
    MANIFEST_NAME,
    Checkpointer,
    checkpoint_folders,
    incompleteness,
    latest_checkpoint,
    saving,
    train_resuming,
    write_manifest,
)
from repcali.errors import RepCaliError
from repcali.results import read_results
from tests import cli
from tests.test_train import FAST, ROOT, outcome, run_dir_of

pytestmark = pytest.mark.timeout(600)

SURVIVE = [
    *(o for o in FAST if not o.startswith("trainer.max_steps=")),
    "trainer.max_steps=8",
    "trainer.per_device_train_batch_size=6",
    "checkpoint.every_steps=2",
    "checkpoint.every_minutes=null",
    "calib=on",
    # One thread for every run here: runs forked from this process compute on one (repcali/threads.py), and
    # runs compare bit for bit only at one thread count.
    "run.threads=1",
]
ENV = {**os.environ, "HYDRA_FULL_ERROR": "0"}
# the tests that compare with the uninterrupted reference run share one pytest-xdist worker: one reference
SAME_REFERENCE = pytest.mark.xdist_group("checkpoints-reference")
CLONE_NEWUSER, CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x10000000, 0x00020000, 0x4000, 0x40000  # <sched.h>, <sys/mount.h>


def train(runs_dir: Path, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python train.py`` on SURVIVE, in this process."""
    return cli.here("train.py", *SURVIVE, f"runs_dir={runs_dir}", *overrides, env=env or ENV)


def interrupt(
    runs_dir: Path, signum: int, at_step: int, *overrides: str, env: dict | None = None, launcher=("train.py",)
) -> Path:
    """Start a run (``python <launcher> <overrides>``, a process of its own), send ``signum`` once checkpoint
    ``at_step`` is complete, return its run directory. The process must end as that signal says: killed by
    SIGKILL, exit 128 + n after any other."""
    process = cli.start(*launcher, *SURVIVE, f"runs_dir={runs_dir}", *overrides, env=env or ENV)
    deadline = time.monotonic() + 300
    try:
        while not (manifests := list(runs_dir.rglob(f"checkpoint-{at_step}/{MANIFEST_NAME}"))):
            assert process.poll() is None, f"the run ended before checkpoint-{at_step}: {process.stderr[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.02)
        process.send_signal(signum)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    expected = -signal.SIGKILL if signum == signal.SIGKILL else 128 + signum
    assert process.returncode == expected, process.stderr[-3000:]
    run_dir = manifests[0].parents[2]
    results = read_results(run_dir)
    assert results.status != "completed", "the run completed before the signal arrived"
    return run_dir


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uninterrupted run that every interrupted one must reproduce."""
    process = train(tmp_path_factory.mktemp("reference"))
    assert process.returncode == 0, process.stderr[-3000:]
    run_dir = run_dir_of(process)
    results = read_results(run_dir)
    assert results.status == "completed" and results.resumed_from_step is None
    assert not (run_dir / CHECKPOINTS_DIR).exists()  # a completed run keeps no checkpoints
    return outcome(run_dir)


@pytest.mark.slow
@SAME_REFERENCE
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_run_resumes_from_its_newest_complete_checkpoint_to_the_uninterrupted_result(
    tmp_path, reference, signum
):
    """SIGKILL at 75 %, its newest checkpoint then cut short on disk: it resumes from the one before
    (50 %, mid-epoch). SIGTERM at 50 %: the run saves a checkpoint at the next step, records
    ``interrupted`` and exits 143; it resumes from that checkpoint. Both end bit-identical to the
    uninterrupted run."""
    run_dir = interrupt(tmp_path, signum, at_step=6 if signum == signal.SIGKILL else 4)
    complete = [c for c in checkpoint_folders(run_dir / CHECKPOINTS_DIR) if not incompleteness(c.path)]
    if signum == signal.SIGKILL:
        assert read_results(run_dir).status == "running"  # nothing could record it
        *_, resume_from, newest = complete
        weights = newest.path / "model.safetensors"
        os.truncate(weights, weights.stat().st_size // 2)  # what a kill mid-write or a node crash leaves
        assert "model.safetensors has" in incompleteness(newest.path)
        assert latest_checkpoint(run_dir) == resume_from
    else:
        resume_from = complete[-1]  # saved after the signal: at the step that was running
        results = read_results(run_dir)
        assert results.status == "interrupted" and resume_from.step > 4
        assert results.error.message == f"stopped by SIGTERM; the same command resumes from {resume_from.path.name}."

    process = train(tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    assert run_dir_of(process) == run_dir
    results = read_results(run_dir)
    assert results.status == "completed" and results.resumed_from_step == resume_from.step >= 4
    assert outcome(run_dir) == reference  # bit-identical, train_loss included
    label = "running" if signum == signal.SIGKILL else "interrupted"
    assert list(run_dir.glob(f"results.{label}.*.json"))  # the stopped attempt's record is kept aside
    assert not (run_dir / CHECKPOINTS_DIR).exists()

    again = train(tmp_path)  # completed: skipped, not resumed
    assert again.returncode == 0 and "Already completed" in again.stdout


@pytest.mark.slow
@pytest.mark.launchers  # make sweep starts train.py -m in a fresh interpreter
def test_sigint_to_a_sweep_checkpoints_records_interrupted_and_stops_the_sweep(tmp_path):
    """``python -m repcali.sweeps run`` (``make sweep``) gets SIGINT while the first of two runs trains:
    it passes the signal to ``train.py -m``, whose run saves a checkpoint and records ``interrupted``;
    both exit 130 instead of going on to the second run."""
    sweep = ("-m", "repcali.sweeps", "run", "smoke")  # seed=1,2 (the grid's); the rest from SURVIVE
    run_dir = interrupt(tmp_path, signal.SIGINT, 2, launcher=sweep)
    results = read_results(run_dir)
    assert results.status == "interrupted" and results.error.message.startswith("stopped by SIGINT; ")
    assert latest_checkpoint(run_dir).step > 2 and results.seed == 1
    assert [path.parent for path in tmp_path.rglob("results.json")] == [run_dir]  # seed 2 never started


def test_completeness_is_checked_by_manifest_size_and_structure(tmp_path):
    """A checkpoint without a manifest, with a file cut short, or with a torn safetensors file is incomplete."""
    from safetensors.torch import save_file

    folder = tmp_path / "checkpoint-2"
    folder.mkdir()
    save_file({"w": torch.arange(1000.0)}, folder / "model.safetensors")
    torch.save({"step": 2}, folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text('{"global_step": 2}')
    assert incompleteness(folder) == "no manifest (killed while saving?)"
    write_manifest(folder)
    assert incompleteness(folder) is None

    optimizer = (folder / "optimizer.pt").read_bytes()
    (folder / "optimizer.pt").write_bytes(optimizer[:-20] + b"\0" * 20)  # same size, torn zip directory
    assert "optimizer.pt: BadZipFile" in incompleteness(folder)
    (folder / "optimizer.pt").write_bytes(optimizer)
    os.truncate(folder / "trainer_state.json", 5)
    assert incompleteness(folder) == "trainer_state.json has 5 bytes, not 18"

    torn = tmp_path / "checkpoint-4"
    torn.mkdir()
    save_file({"w": torch.arange(1000.0)}, torn / "model.safetensors")
    os.truncate(torn / "model.safetensors", 2000)  # cut short before the manifest: refused at once
    with pytest.raises(OSError, match="not written completely"):
        write_manifest(torn)


@pytest.fixture(scope="module")
def survive(compose_train):
    """``survive(*overrides)``: train.py's config from SURVIVE (its max_steps left out) and ``overrides``."""
    return lambda *overrides: compose_train(*(o for o in SURVIVE if not o.startswith("trainer.max_steps")), *overrides)


def _build_trainer(cfg, run_dir: Path):
    from repcali.calibration import attach_repcali
    from repcali.config import repcali_config, selects
    from repcali.data import build_task_data
    from repcali.methods import apply_method, unwrap
    from repcali.modeling import load_backbone
    from repcali.training import build_trainer

    set_seed(cfg.seed)
    model, tokenizer = load_backbone(cfg.model)
    model = apply_method(model, cfg.method.name, cfg.method.options)
    if cfg.calib.enabled:
        attach_repcali(unwrap(model), repcali_config(cfg.calib))
    data = build_task_data(
        cfg.task, tokenizer, use_prefix=cfg.model.task_prefix, max_positions=512, select=selects(cfg)
    )
    return build_trainer(cfg, model, tokenizer, data, run_dir, [])


def test_a_run_resumed_after_a_kill_selects_the_same_checkpoint_as_an_uninterrupted_one(tmp_path, survive):
    """Validation every 2 of 8 steps. Killed before the last save, the run resumes from step 6: the best
    checkpoint recorded before the kill is still there (rotation never deletes it), and the resumed run
    ends with the same validation curve, the same selected step and the same loaded weights."""
    validation = ROOT / "tests" / "fixtures" / "xsum" / "validation.jsonl"
    cfg = survive(
        "trainer.max_steps=8",
        f"task.data_files.validation={validation}",
        "trainer.eval_strategy=steps",
        "trainer.eval_steps=2",
    )
    whole = _build_trainer(cfg, tmp_path)
    train_resuming(whole, tmp_path)

    def curve_of(trainer) -> list[tuple]:
        return [(e["step"], e["eval_loss"], e["eval_rouge1"]) for e in trainer.state.log_history if "eval_loss" in e]

    curve = curve_of(whole)
    assert [step for step, *_ in curve] == [2, 4, 6, 8]
    selected = (whole.state.best_global_step, whole.state.best_metric, Path(whole.state.best_model_checkpoint).name)
    weights = whole.model.state_dict()

    shutil.rmtree(tmp_path / CHECKPOINTS_DIR / "checkpoint-8")  # killed after step 6's save, before step 8's
    assert {c.step for c in checkpoint_folders(tmp_path / CHECKPOINTS_DIR)} >= {6, selected[0]}  # keep=2, + best
    resumed = _build_trainer(cfg, tmp_path)
    trained = train_resuming(resumed, tmp_path)
    assert trained.resumed_from_step == 6
    assert curve_of(resumed) == curve
    state = resumed.state
    assert (state.best_global_step, state.best_metric, Path(state.best_model_checkpoint).name) == selected
    assert [k for k, v in resumed.model.state_dict().items() if not torch.equal(v, weights[k])] == []


@pytest.mark.parametrize(
    ("method", "calib"),
    [("lora", "on"), ("adapter", "on"), ("lora", "off")],  # full: the end-to-end tests
)
def test_resume_restores_the_block_and_the_method_weights_exactly(tmp_path, survive, method, calib):
    """PEFT checkpoints hold only the adapter; the block is saved beside it and restored on resume."""
    cfg = survive("trainer.max_steps=4", f"method={method}", f"calib={calib}")

    whole = _build_trainer(cfg, tmp_path / "whole")
    expected = train_resuming(whole, tmp_path / "whole")
    assert [c.step for c in checkpoint_folders(tmp_path / "whole" / CHECKPOINTS_DIR)] == [2, 4]  # keep=2

    state = whole.model.state_dict()
    assert any("repcali" in k for k in state) == (calib == "on")
    for step in (2, 4):  # 4: the end of training (a run killed while evaluating), loaded without a step
        resumed_dir = tmp_path / f"resumed-{step}"
        checkpoint = f"{CHECKPOINTS_DIR}/checkpoint-{step}"
        shutil.copytree(tmp_path / "whole" / checkpoint, resumed_dir / checkpoint)
        resumed = _build_trainer(cfg, resumed_dir)
        trained = train_resuming(resumed, resumed_dir)
        assert trained.resumed_from_step == step and resumed.state.global_step == 4
        assert trained.training_loss == expected.training_loss
        resumed_state = resumed.model.state_dict()
        assert state.keys() == resumed_state.keys()
        assert [k for k in state if not torch.equal(state[k], resumed_state[k])] == []


def test_saves_on_the_clock_at_logging_steps_and_on_request(tmp_path, survive):
    clock = survive("checkpoint.every_steps=null", "checkpoint.every_minutes=1e-9", "checkpoint.keep=3")
    trainer = _build_trainer(OmegaConf.merge(clock, {"trainer": {"max_steps": 6, "logging_steps": 2}}), tmp_path)
    train_resuming(trainer, tmp_path)
    assert [c.step for c in checkpoint_folders(tmp_path / CHECKPOINTS_DIR)] == [2, 4, 6]  # 6: end of training

    class Signal(TrainerCallback):  # what a signal handler will do: ask, from outside the training loop
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 2:
                checkpointer.save_at_next_step(stop=True)

    requested = survive("checkpoint.every_steps=null", "checkpoint.every_minutes=60", "trainer.max_steps=6")
    trainer = _build_trainer(requested, tmp_path / "requested")
    checkpointer = next(c for c in trainer.callback_handler.callbacks if isinstance(c, Checkpointer))
    trainer.add_callback(Signal())
    train_resuming(trainer, tmp_path / "requested")
    assert trainer.state.global_step == 3 and latest_checkpoint(tmp_path / "requested").step == 3
    assert [c.step for c in checkpoint_folders(tmp_path / "requested" / CHECKPOINTS_DIR)] == [3]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_write_that_finds_the_device_full_becomes_a_clean_error_and_leaves_no_partial_folder(tmp_path):
    """/dev/full answers every write with ENOSPC: torch.save then fails with a RuntimeError from its
    writer, Python writes with OSError(ENOSPC). An out-of-memory error is not a write error."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "optimizer.pt").symlink_to("/dev/full")
    with pytest.raises(RepCaliError) as caught, saving(folder, "resumes from checkpoint-2"):
        torch.save({"w": torch.zeros(100)}, folder / "optimizer.pt")
    assert f"Could not save {folder} (RuntimeError: " in str(caught.value) and "MiB free there" in str(caught.value)
    assert "Fix: free disk space there" in str(caught.value)
    assert str(caught.value).endswith("then run the same command again: it resumes from checkpoint-2.")
    assert not folder.exists()

    folder.mkdir()
    (folder / "config.json").symlink_to("/dev/full")
    with pytest.raises(RepCaliError, match=r"OSError: \[Errno 28\] No space left on device"), saving(folder, "x"):
        (folder / "config.json").write_text("{}" * 10_000)
    with pytest.raises(torch.OutOfMemoryError), saving(folder, "x"):
        raise torch.OutOfMemoryError("CUDA out of memory")


@pytest.fixture
def run_dir_for(compose_train):
    """``run_dir_for(runs_dir)``: where train.py puts the SURVIVE run (its directory is a function of the config)."""
    from repcali.identity import RunIdentity

    return lambda runs_dir: runs_dir / RunIdentity.of(compose_train(*SURVIVE)).path


def mount_full_disk(path: Path) -> None:
    """What ``unshare -rm`` then ``mount -t tmpfs -o size=1m tmpfs <path>`` do, in this (forked, so
    single-threaded) process: a user and a mount namespace of its own, where it is root, and a 1 MiB
    tmpfs at ``path`` that only it sees."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()

    def check(result: int, what: str) -> None:
        if result != 0:
            raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")

    check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
    Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    path.mkdir(parents=True, exist_ok=True)
    check(libc.mount(b"tmpfs", bytes(path), b"tmpfs", 0, b"size=1m"), f"mount tmpfs {path}")


def _full_disk_mounts() -> bool:
    """Whether a forked child may :func:`mount_full_disk` here (unprivileged user namespaces allowed)."""
    probe = Path(tempfile.mkdtemp(prefix="full-disk-probe-"))
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            mount_full_disk(probe / "full")
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    shutil.rmtree(probe, ignore_errors=True)
    return os.waitstatus_to_exitcode(status) == 0


needs_userns = pytest.mark.skipif(
    not _full_disk_mounts(), reason="a full disk is a 1 MiB tmpfs mounted in a user namespace: refused here"
)


def train_on_full_disk(full: Path, runs_dir: Path) -> cli.Started:
    """train.py, a process of its own, with a 1 MiB filesystem mounted at ``full`` (a real ENOSPC from the
    kernel there); returned once it has ended."""
    process = cli.start("train.py", *SURVIVE, f"runs_dir={runs_dir}", env=ENV, before=lambda: mount_full_disk(full))
    process.wait(timeout=600)
    return process


def error_line(process: cli.Started) -> str:
    lines = [line for line in process.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in process.stderr, process.stderr[-3000:]
    return lines[0]


@pytest.mark.slow
@needs_userns
def test_a_full_disk_while_checkpointing_fails_cleanly_and_keeps_the_previous_checkpoint(tmp_path, run_dir_for):
    run_dir = run_dir_for(tmp_path)
    process = train_on_full_disk(run_dir / CHECKPOINTS_DIR / "checkpoint-4", tmp_path)
    assert process.returncode == 1
    line = error_line(process)
    assert "Could not save" in line and "checkpoint-4" in line and "No space left on device" in line
    assert "Fix: free disk space there" in line and line.endswith("it resumes from checkpoint-2.")
    results = read_results(run_dir)
    assert results.status == "failed" and "No space left" in results.error.message
    assert latest_checkpoint(run_dir).step == 2 and incompleteness(latest_checkpoint(run_dir).path) is None


@pytest.mark.slow
@SAME_REFERENCE
@needs_userns
def test_a_full_disk_while_saving_the_model_fails_cleanly_and_the_rerun_does_not_train_again(
    tmp_path, reference, run_dir_for
):
    run_dir = run_dir_for(tmp_path)
    process = train_on_full_disk(run_dir / "model", tmp_path)
    assert process.returncode == 1
    line = error_line(process)
    assert f"Could not save {run_dir / 'model'}" in line and "No space left on device" in line
    assert "it resumes from checkpoint-8." in line
    assert read_results(run_dir).status == "failed"
    assert [json.loads(row)["id"] for row in (run_dir / "predictions.jsonl").open()]  # written before the model
    assert latest_checkpoint(run_dir).step == 8

    process = train(tmp_path)
    assert process.returncode == 0, process.stderr[-3000:]
    assert read_results(run_dir).resumed_from_step == 8  # the last checkpoint: no step is trained again
    assert outcome(run_dir) == reference
