"""Checkpoints that survive kills: which ones are complete, when to save, and resuming from the newest.

The Hugging Face Trainer writes ``checkpoints/checkpoint-<step>/`` (model, optimizer, scheduler, RNG
states, trainer state) straight into place, so a kill while it writes leaves a partial folder. When
the Trainer is done with a folder, :class:`Checkpointer` adds what the Trainer leaves out (the RepCali
block, which PEFT checkpoints do not hold, and the run's loss sum) and then a manifest: every file's
name and size. A folder is complete when its manifest exists and every file still has its size and
structure, so resuming skips a partial or truncated checkpoint without hashing gigabytes.

What later code calls: :func:`latest_checkpoint` (the newest complete checkpoint of a run directory),
:meth:`Checkpointer.save_at_next_step` (save, and optionally stop, at the next step boundary: what
:mod:`repcali.signals` asks for), :func:`train_resuming` (train from the newest complete checkpoint)
and :func:`remove_checkpoints`. Deleting checkpoints is for the run directory's owner only
(:mod:`repcali.ownership`): another process may be writing one.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import struct
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers import TrainerCallback, TrainerState

from repcali.calibration import WEIGHTS_NAME, find_block, save_repcali
from repcali.errors import RepCaliError
from repcali.runs import write_json_atomic

log = logging.getLogger("repcali")

CHECKPOINTS_DIR = "checkpoints"  # inside a run directory: the Trainer's output_dir
MANIFEST_NAME = "repcali_manifest.json"  # written last: the folder is complete
STATE_NAME = "repcali_state.json"  # what the Trainer's own state leaves out (the loss sum since step 0)
_FOLDER = re.compile(r"^checkpoint-(\d+)$")


def _is_write_error(error: BaseException) -> bool:
    """What a failed write raises while saving: OSError (Python), SafetensorError, and RuntimeError
    (torch.save's writer, whose message varies), but not an out-of-memory error."""
    return isinstance(error, (OSError, SafetensorError, RuntimeError)) and not isinstance(
        error, torch.OutOfMemoryError
    )


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int


def checkpoint_folders(directory: Path) -> list[Checkpoint]:
    """Every ``checkpoint-<step>`` folder under ``directory``, complete or not, oldest step first."""
    if not directory.is_dir():
        return []
    found = [(_FOLDER.match(p.name), p) for p in directory.iterdir() if p.is_dir()]
    return sorted((Checkpoint(p, int(m.group(1))) for m, p in found if m), key=lambda c: c.step)


def _structure_problem(path: Path) -> str | None:
    """Cheap checks that a file was written to its end: a safetensors header's own length, a zip's
    directory (``torch.save``), a JSON document. Other files are checked by size only."""
    try:
        if path.suffix == ".safetensors":
            with open(path, "rb") as handle:
                (header_size,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(header_size))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
            if path.stat().st_size != 8 + header_size + end:
                return "safetensors data shorter or longer than its header says"
        elif path.suffix in (".pt", ".pth", ".bin"):
            with zipfile.ZipFile(path) as archive:
                archive.infolist()
        elif path.suffix == ".json":
            json.loads(path.read_bytes())
    except (OSError, ValueError, struct.error, zipfile.BadZipFile, KeyError, TypeError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def write_manifest(folder: Path) -> None:
    """Record the finished folder's files and sizes, after checking each was written to its end."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME):
        if problem := _structure_problem(path):
            raise OSError(f"{path} was not written completely ({problem})")
        files[str(path.relative_to(folder))] = path.stat().st_size
    write_json_atomic(folder / MANIFEST_NAME, {"files": files})


def incompleteness(folder: Path) -> str | None:
    """Why ``folder`` cannot be resumed from (no manifest, missing, resized or torn file), or None."""
    try:
        files = json.loads((folder / MANIFEST_NAME).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no manifest (killed while saving?)"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, not {size}"
        if problem := _structure_problem(path):
            return f"{name}: {problem}"
    return None


def latest_checkpoint(run_dir: Path) -> Checkpoint | None:
    """The newest complete checkpoint of a run directory, or None."""
    complete = [c for c in checkpoint_folders(Path(run_dir) / CHECKPOINTS_DIR) if incompleteness(c.path) is None]
    return complete[-1] if complete else None


def discard_incomplete(run_dir: Path) -> list[tuple[Checkpoint, str]]:
    """Delete checkpoint folders that cannot be resumed from; returns them with the reason.

    Only for a process that owns the run directory: another one could be writing such a folder.
    """
    discarded = []
    for checkpoint in checkpoint_folders(Path(run_dir) / CHECKPOINTS_DIR):
        if reason := incompleteness(checkpoint.path):
            shutil.rmtree(checkpoint.path, ignore_errors=True)
            discarded.append((checkpoint, reason))
    return discarded


def remove_checkpoints(run_dir: Path) -> None:
    """A completed run needs none (its results and model are saved); a rerun starts from step 0."""
    shutil.rmtree(Path(run_dir) / CHECKPOINTS_DIR, ignore_errors=True)


def _rotate(directory: Path, keep: int, best: str | None = None) -> None:
    """Delete all but the ``keep`` newest complete checkpoints (called once a new one is complete), and
    never ``best``: the checkpoint model selection will load (``TrainerState.best_model_checkpoint``)."""
    complete = [c for c in checkpoint_folders(directory) if incompleteness(c.path) is None]
    for checkpoint in complete[: max(len(complete) - keep, 0)]:
        if best is None or checkpoint.path.name != Path(best).name:
            shutil.rmtree(checkpoint.path, ignore_errors=True)


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _max_over_processes(value: int, device) -> int:
    """The same number on every process: the largest (one all-reduce when distributed)."""
    if not _distributed():
        return value
    tensor = torch.tensor([value], device=device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return int(tensor.item())


def _any_process(flag: bool, device) -> bool:
    """The same decision on every process: True if any says so."""
    return bool(_max_over_processes(int(flag), device))


class Checkpointer(TrainerCallback):
    """Saves on a wall-clock interval and on request, completes each checkpoint, keeps the newest ones.

    The Trainer saves on its step interval and at the end of training (``save_strategy="steps"``);
    this adds the time-based saves. The clock is read at logging steps, where the Trainer already
    synchronises, so every process takes the same decision at the cost of one all-reduce there.
    ``loss`` is the trainer's :class:`~repcali.training.RunningLoss`, saved with each checkpoint.
    ``every_steps``: a step interval of its own, for runs whose Trainer saves at each evaluation
    (model selection); otherwise the Trainer's ``save_steps`` is that interval. The checkpoint that
    model selection will load is never rotated away.
    """

    def __init__(self, every_minutes: float | None, keep: int, loss, every_steps: int | None = None) -> None:
        if every_minutes is not None and not every_minutes > 0:
            raise RepCaliError(f"checkpoint.every_minutes={every_minutes}. Fix: a positive number, or null.")
        if keep < 1:
            raise RepCaliError(f"checkpoint.keep={keep}. Fix: keep at least 1 checkpoint (2 is the default).")
        self.interval_s = every_minutes * 60 if every_minutes is not None else math.inf
        self.every_steps = every_steps
        self.keep = keep
        self.loss = loss
        self.saving: int | None = None  # the step being saved, until the checkpoint is complete
        # Requests (a signal handler's): counted by the requester, marked served here; neither side
        # overwrites the other's field, so a request made while one is being served is never lost.
        self._requests = 0
        self._served = 0
        self._stop = False  # a request to stop is final
        self._last_save = time.monotonic()

    def save_at_next_step(self, stop: bool = False) -> None:
        """Save a checkpoint at the next step boundary (and stop training if ``stop``). Only sets flags.

        Distributed, the processes agree at the next logging step (where they synchronise already), so
        that all of them save and stop at the same step whichever received the request.
        """
        self._stop = self._stop or stop
        self._requests += 1

    def _pending(self, at_logging_step: bool, device) -> int:
        """0: nothing to do now; 1: save; 2: save and stop."""
        pending = self._requests
        local = (2 if self._stop else 1) if pending > self._served else 0
        if _distributed():
            if not at_logging_step:
                return 0
            local = _max_over_processes(local, device)
        self._served = pending
        return local

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_save = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if request := self._pending(control.should_log, args.device):
            control.should_save = True
            control.should_training_stop = control.should_training_stop or request == 2
        if self.every_steps and state.global_step % self.every_steps == 0:
            control.should_save = True
        if control.should_log and math.isfinite(self.interval_s):
            due = time.monotonic() - self._last_save >= self.interval_s
            control.should_save = _any_process(due, args.device) or control.should_save
        if control.should_save:
            self.loss.synchronize()  # every process, before the Trainer saves: the saved sum is the run's
            self.saving = state.global_step

    def on_save(self, args, state, control, model=None, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        _barrier()  # every process has written its RNG state
        if args.should_save:
            # PEFT checkpoints hold only the adapter, not the block. Sharded runs (FSDP, ZeRO-3; full
            # fine-tuning only) hold it in the Trainer's own checkpoint, and this process has a shard of it.
            if find_block(model) is not None and not (args.fsdp or args.deepspeed):
                save_repcali(model, folder)
            write_json_atomic(folder / STATE_NAME, self.loss.state_dict())
            write_manifest(folder)
            _rotate(folder.parent, self.keep, state.best_model_checkpoint)
        _barrier()
        self.saving = None
        self._last_save = time.monotonic()


def restore_extras(checkpoint: Checkpoint, model, loss) -> None:
    """What :class:`Checkpointer` added to a checkpoint: the block's weights and the loss sum."""
    block = find_block(model)
    if block is not None and (checkpoint.path / WEIGHTS_NAME).is_file():
        block.load_state_dict(load_file(checkpoint.path / WEIGHTS_NAME, device=str(next(block.parameters()).device)))
    loss.load_state_dict(json.loads((checkpoint.path / STATE_NAME).read_text()))


def save_failure(folder: Path, error: BaseException, resume_hint: str) -> RepCaliError:
    """A clean error for a save that failed (a full disk, mostly): the partial folder is removed, since
    it is what filled the disk; what is left is said."""
    try:
        free = f"{shutil.disk_usage(folder.parent).free / 2**20:.0f} MiB free there"
    except OSError:
        free = "free space unknown"
    shutil.rmtree(folder, ignore_errors=True)
    detail = str(error).splitlines()[0] if str(error) else ""
    return RepCaliError(
        f"Could not save {folder} ({type(error).__name__}: {detail}; {free}). "
        f"Fix: free disk space there (or mend what that error names), then run the same command again: "
        f"it {resume_hint}."
    )


@contextmanager
def saving(folder: Path, resume_hint: str):
    """Turn an I/O error while writing ``folder`` into :func:`save_failure`'s error."""
    try:
        yield
    except Exception as error:
        if not _is_write_error(error):
            raise
        raise save_failure(folder, error, resume_hint) from error


@dataclass
class Trained:
    """What training produced, over the whole run however often it was resumed."""

    training_loss: float
    metrics: dict
    resumed_from_step: int | None


def resume_hint(run_dir: Path) -> str:
    latest = latest_checkpoint(run_dir)
    return f"resumes from {latest.path.name}" if latest else "starts from step 0"


def _finished(checkpoint: Checkpoint) -> bool:
    """Saved at the end of training: the last step, or the evaluation that stopped it early."""
    state = json.loads((checkpoint.path / "trainer_state.json").read_text())
    stopping = state.get("stateful_callbacks", {}).get("EarlyStoppingCallback")
    stopped = stopping is not None and (
        stopping["attributes"]["early_stopping_patience_counter"] >= stopping["args"]["early_stopping_patience"]
    )
    return 0 < state["max_steps"] <= state["global_step"] or stopped


def load_best_block(trainer) -> None:
    """The RepCali block of the best checkpoint, where model selection loaded one."""
    best = trainer.state.best_model_checkpoint
    block = find_block(trainer.model)
    if trainer.args.load_best_model_at_end and best and block is not None and (Path(best) / WEIGHTS_NAME).is_file():
        block.load_state_dict(load_file(Path(best) / WEIGHTS_NAME, device=str(next(block.parameters()).device)))


def load_best(trainer) -> None:
    """Load the best checkpoint that model selection recorded (``load_best_model_at_end``), RepCali
    block included (PEFT checkpoints hold only the adapter): what the Trainer does at the end of
    ``train()``, for a run resumed after training had ended."""
    best = trainer.state.best_model_checkpoint
    if not (trainer.args.load_best_model_at_end and best):
        return
    trainer._load_best_model()
    load_best_block(trainer)


def find_checkpointer(trainer) -> Checkpointer | None:
    """The trainer's :class:`Checkpointer` (None: checkpoints are off)."""
    return next((c for c in trainer.callback_handler.callbacks if isinstance(c, Checkpointer)), None)


def train_resuming(trainer, run_dir: Path) -> Trained:
    """``trainer.train()``, from the newest complete checkpoint of ``run_dir`` if there is one.

    Incomplete checkpoints are deleted first (main process; the others wait). A failed save becomes
    a :class:`RepCaliError` that names the checkpoint the next attempt resumes from. The checkpoint
    written at the end of training (a run killed while evaluating) is loaded without ``train()``:
    resumed there, the Trainer would run one more step when ``max_steps`` ends mid-epoch.
    """
    checkpointer = find_checkpointer(trainer)
    latest = None
    if checkpointer is not None:
        with trainer.args.main_process_first(desc="checkpoints"):
            if trainer.args.should_save:
                for checkpoint, reason in discard_incomplete(run_dir):
                    log.warning("Deleted %s: %s.", checkpoint.path, reason)
            latest = latest_checkpoint(run_dir)
    if latest is not None:
        log.info("Resuming from %s (step %d).", latest.path, latest.step)
        restore_extras(latest, trainer.model, trainer.running_loss)
    if latest is not None and _finished(latest):
        trainer._load_from_checkpoint(str(latest.path))
        trainer.state = TrainerState.load_from_json(str(latest.path / "trainer_state.json"))
        load_best(trainer)
        return Trained(trainer.running_loss.total() / max(trainer.state.global_step, 1), {}, latest.step)
    try:
        output = trainer.train(resume_from_checkpoint=str(latest.path) if latest else None)
    except Exception as error:
        if checkpointer is None or checkpointer.saving is None or not _is_write_error(error):
            raise
        folder = Path(trainer.args.output_dir) / f"checkpoint-{checkpointer.saving}"
        raise save_failure(folder, error, resume_hint(run_dir)) from error
    load_best_block(trainer)  # train() loaded the best weights; a PEFT checkpoint's lack the block
    trainer.running_loss.synchronize()
    steps = max(trainer.state.global_step, 1)
    return Trained(trainer.running_loss.total() / steps, output.metrics, latest.step if latest else None)
