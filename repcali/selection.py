"""Model selection's protocol: what may select (never the scored split), and what a run records of it.

The Trainer does the selecting (``eval_strategy``, ``load_best_model_at_end``,
``metric_for_best_model``, ``EarlyStoppingCallback``; set up in :mod:`repcali.training`). This
module refuses a config that would select on the split it reports, before anything loads, and
turns the Trainer's state into the ``selection`` record of ``results.json``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from repcali.config import selection_metric, selects
from repcali.errors import RepCaliError
from repcali.metrics import PRODUCES, producing
from repcali.results import Selection


def check_selection(cfg: DictConfig) -> None:
    """Refuse selection on the reported split (by name, by hub split or by file), an unknown metric, a bad cap."""
    if not selects(cfg):
        return
    task, selection = cfg.task, cfg.task.selection
    fix_off = "trainer.eval_strategy=no (no selection: the last model is scored)"
    if selection.split == "validation":
        same_split = task.eval_split == "validation" or task.splits.validation == task.splits[task.eval_split]
        files = task.data_files.validation, task.data_files[task.eval_split]
        if same_split or (files[0] and files[0] == files[1]):
            raise RepCaliError(
                f"Task {task.name!r} reports its {task.eval_split!r} split, so selecting the checkpoint on validation "
                f"would select on the reported split. Fix: task.selection.split=train_holdout (sources held out of "
                f"train), or {fix_off}."
            )
    metric = selection_metric(task)
    if not producing(metric, list(task.metrics)):
        offered = sorted({score for name in task.metrics for score in PRODUCES.get(name, ())})
        raise RepCaliError(
            f"task.selection.metric={metric} is not computed by task.metrics {list(task.metrics)}. "
            f"Fix: one of {', '.join(offered)}."
        )
    if selection.max_samples < 1 or (selection.patience is not None and selection.patience < 1):
        raise RepCaliError(
            f"task.selection.max_samples={selection.max_samples}, patience={selection.patience}. "
            "Fix: at least 1 example, and a patience of at least 1 evaluation (or null: no early stopping)."
        )


def selection_record(trainer, cfg: DictConfig, n_examples: int) -> Selection:
    """What selected the scored model, from the Trainer's state (which a resumed run restores)."""
    state, task = trainer.state, cfg.task
    metric = selection_metric(task)
    curve = [
        {
            "step": entry["step"],
            "epoch": entry.get("epoch"),
            "score": entry[f"eval_{metric}"],
            "loss": entry.get("eval_loss"),
        }
        for entry in state.log_history
        if f"eval_{metric}" in entry
    ]
    best = state.best_model_checkpoint
    return Selection(
        metric=metric,
        split=str(task.selection.split),
        scored_split=task.eval_split,
        n_examples=n_examples,
        num_beams=task.selection.num_beams or task.generation.num_beams,
        patience=task.selection.patience,
        best_step=state.best_global_step or None,
        best_score=state.best_metric,
        checkpoint=Path(best).name if best else None,
        stopped_early=0 < state.global_step < state.max_steps,
        curve=curve,
    )
