"""One run, end to end: skip if completed, own the directory, record, train, evaluate, save; what ``train.py`` calls.

It lives here rather than in ``train.py`` so that tests and other tools (sweepers, notebooks) run
exactly what the command line runs, in-process, on a config composed with Hydra's compose API.

The run's life cycle: a completed run is skipped; a config that cannot run is refused; then the
process takes the run directory's lock (:mod:`repcali.ownership`; another owner: :class:`RunBusy`,
nothing touched) and handles the stop signals (:mod:`repcali.signals`) until its record is final:
``completed``, ``failed``, or ``interrupted`` after a checkpoint.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from repcali.errors import RepCaliError
from repcali.ownership import RunBusy, RunLock, agree, this_process
from repcali.results import InvalidResults, Results, read_results
from repcali.runs import RunRecord, write_predictions
from repcali.signals import Interrupted, StopOnSignals
from repcali.threads import use_threads
from repcali.tracking import finish_wandb, is_main_process, start_wandb

log = logging.getLogger("repcali")


@dataclass
class Outcome:
    """What a run ended with: its record (as written to ``results.json``) and the error, if any."""

    results: Results | None  # None: refused, run by another process, or stopped while waiting; nothing recorded
    error: BaseException | None = None  # RunBusy: another process owns the run directory
    skipped: bool = False  # completed before; nothing was run
    interrupted: Interrupted | None = None  # a stop signal arrived: hand it on (Interrupted.hand_on) once reported

    @property
    def refused(self) -> bool:
        """A config that cannot run: refused before anything was recorded or locked."""
        return self.results is None and isinstance(self.error, RepCaliError) and not isinstance(self.error, RunBusy)


def train_and_evaluate(cfg: DictConfig, run_dir: Path, record: RunRecord, stop: StopOnSignals | None = None) -> None:
    """The experiment: load, apply the method, calibrate, tokenize, train, generate, score, save."""
    # Heavy libraries load here, so `--cfg job` and skipped reruns start in a fraction of a second.
    from transformers import set_seed

    from repcali.calibration import attach_repcali
    from repcali.checkpoints import find_checkpointer, resume_hint, saving, train_resuming
    from repcali.config import repcali_config, selects
    from repcali.data import build_task_data
    from repcali.methods import apply_method, unwrap
    from repcali.metrics import by_category, compute
    from repcali.modeling import (
        add_tokens,
        count_parameters,
        load_backbone,
        parameter_report,
        save_model,
        weights_dtype,
    )
    from repcali.runs import host_info
    from repcali.selection import selection_record
    from repcali.sharding import gathered_state_dict
    from repcali.training import build_trainer, predict

    results = record.results
    results.host = host_info()
    set_seed(cfg.seed)
    with record.timed("load"):
        model, tokenizer = load_backbone(cfg.model, cfg.task.language)
        add_tokens(model, tokenizer, cfg.task.new_tokens)
        backbone_total = count_parameters(model)
        model = apply_method(model, cfg.method.name, cfg.method.options)  # LoRA, adapter, ...: what trains
        if cfg.calib.enabled:
            attach_repcali(unwrap(model), repcali_config(cfg.calib))  # on the HF model inside a PEFT wrapper
    results.params = parameter_report(model, backbone_total)
    # here: the process that trains (a launcher's job or worker too), sized for the model it trains
    results.host["threads"] = use_threads(cfg.run.threads, results.params["total"])
    results.weights_dtype = weights_dtype(model)  # model.dtype as trained; autocast leaves it
    log.info("parameters: %s", results.params)

    with record.timed("data"):
        data = build_task_data(
            cfg.task,
            tokenizer,
            use_prefix=cfg.model.task_prefix,
            max_positions=cfg.model.max_positions,
            select=selects(cfg),  # the rows that select the scored checkpoint: validation, or held out of train
        )
    results.truncation = data.truncation

    report_to = start_wandb(cfg, run_dir, results.identity)
    trainer = build_trainer(cfg, model, tokenizer, data, run_dir, report_to)
    training = stop.training(find_checkpointer(trainer)) if stop else nullcontext()  # a signal: checkpoint, stop
    with record.timed("train"), training:  # nothing to train (method=frozen calib=off): evaluated as loaded
        train_output = train_resuming(trainer, run_dir) if results.params["trainable"] else None
    if train_output is not None:
        results.timings["train_samples_per_second"] = train_output.metrics.get("train_samples_per_second")
        results.resumed_from_step = train_output.resumed_from_step
        if selects(cfg):  # the Trainer loaded the best validated checkpoint: that model is scored and saved
            results.selection = selection_record(trainer, cfg, len(data.validation))
            selected = results.selection
            log.info("selected %s: validation %s %s", selected.checkpoint, selected.metric, selected.best_score)
    results.metrics = {"train_loss": train_output.training_loss} if train_output else {}

    if cfg.score_eval_split:  # false in a λ-search trial: judged on validation alone, no test score to look at
        with record.timed("evaluate"):
            predictions = predict(trainer, data.eval, tokenizer, cfg.task.language)
            scores = compute(
                list(cfg.task.metrics), predictions, data.eval_references, cfg.task.language, ids=data.eval_ids
            )
        results.metrics = {**scores.corpus, **results.metrics}
        if data.eval_categories:  # task.category_column (WebNLG): the primary metric per category
            results.category_metrics = by_category(
                list(cfg.task.metrics),
                cfg.task.primary_metric,
                predictions,
                data.eval_references,
                data.eval_categories,
                cfg.task.language,
                ids=data.eval_ids,
            )
        results.metric_settings = {
            "eval_split": cfg.task.eval_split,
            "n_examples": len(predictions),
            **scores.settings,
        }

    # FSDP / ZeRO-3: every process holds shards; all of them gather the whole model for the first to save.
    gathered = gathered_state_dict(trainer) if cfg.save_model else None
    if trainer.is_world_process_zero():
        if cfg.score_eval_split:
            write_predictions(
                run_dir, data.eval_ids, predictions, data.eval_references, scores.per_example, data.eval_categories
            )
        if cfg.save_model:
            with record.timed("save"):  # a pretrained backbone is reloaded from its source, not copied
                base_model = model.config.name_or_path if cfg.model.init == "pretrained" else None
                with saving(run_dir / "model", resume_hint(run_dir)):
                    save_model(model, tokenizer, run_dir / "model", base_model=base_model, state_dict=gathered)


def _previous(run_dir: Path, warn: bool = True) -> Results | None:
    try:
        return read_results(run_dir)
    except InvalidResults as error:  # RunRecord.start() keeps the unreadable file aside
        if warn:
            log.warning("Unreadable record %s; kept aside as results.invalid.<time>.json; running it.", error.problem)
        return None


def _take(run_dir: Path, settings) -> RunLock | None:
    """The run directory's lock, on the main process (every process learns whether it got it); raises
    :class:`RunBusy`, or a :class:`RepCaliError` where the file system has no locks."""
    lock, refusal = None, None
    if is_main_process() and settings.lock:
        lock = RunLock(run_dir)
        try:
            lock.acquire(settings.lock_wait_s)
        except RepCaliError as error:
            lock, refusal = None, error
    if (refusal := agree(refusal)) is not None:
        raise refusal
    return lock


def run_experiment(cfg: DictConfig, run_dir: Path) -> Outcome:
    """Run ``cfg`` in ``run_dir`` and record it; a completed run is not run again unless ``cfg.rerun``.

    Every failure, a stop signal included, is recorded in ``results.json`` and returned, never raised;
    a config that cannot run is refused before anything is recorded; a run directory that another
    process owns is left as it is (:class:`RunBusy`). The caller hands ``Outcome.interrupted`` on.
    """
    previous = _previous(run_dir)
    if previous and previous.status == "completed" and not cfg.rerun:
        return Outcome(previous, skipped=True)
    from repcali.checks import check_config  # loads torch and transformers: after the skip

    try:
        check_config(cfg, run_dir)
    except RepCaliError as refusal:
        return Outcome(None, refusal)

    stop = StopOnSignals(cfg.run.stop_signals)
    with stop:
        try:
            lock = _take(run_dir, cfg.run)
        except (RepCaliError, Interrupted) as error:  # owned by another process, or stopped while waiting
            return Outcome(None, error, interrupted=stop.interrupted())
        try:
            return _own(cfg, run_dir, stop)
        finally:
            if lock is not None:
                lock.release()


def _own(cfg: DictConfig, run_dir: Path, stop: StopOnSignals) -> Outcome:
    """The run, by the process that owns its directory: only it resumes, deletes checkpoints and records."""
    from repcali.checkpoints import remove_checkpoints, resume_hint
    from repcali.precision import run_precision

    main = is_main_process()
    previous = _previous(run_dir, warn=False) if main else None  # again: another owner may have completed it
    if agree(bool(previous and previous.status == "completed" and not cfg.rerun)):
        return Outcome(read_results(run_dir), skipped=True)
    if main and previous and previous.status == "completed":
        remove_checkpoints(run_dir)  # a rerun trains from step 0, not from the completed run's last checkpoint
    record = RunRecord(run_dir, cfg, write=main)
    record.results.owner = this_process() if main else None
    record.results.precision = run_precision(cfg)  # what precision=auto resolved to on this machine
    error: BaseException | None = None
    completed = False
    try:
        record.start()
        train_and_evaluate(cfg, run_dir, record, stop)
        stop.defer()  # from here on a signal is noted, not raised: the record is written whatever comes
        record.complete()
        completed = True
        if main:
            remove_checkpoints(run_dir)  # only now: a kill before `completed` is on disk resumes from them
    except BaseException as caught:  # record every failure, a signal included, before reporting it
        stop.defer()
        error = caught
        if isinstance(caught, Interrupted) and not completed:
            record.interrupt(f"{caught}; the same command {resume_hint(run_dir)}.")
        elif not completed:
            record.fail(caught)
    finally:
        finish_wandb(record.results)
    return Outcome(record.results, error, interrupted=stop.interrupted())
