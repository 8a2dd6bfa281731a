"""λ tuned on validation: the file the λ search writes and ``calib=tuned`` reads.

The search (``sweeps/lambda_search.yaml``, Hydra's Optuna sweeper) runs one ``train.py`` per
trial and maximises the validation metric each returns; its sweeper writes the best trial to
``optimization_results.yaml`` in the search's folder. :class:`WriteTunedLambda` (a Hydra callback
of that sweep, also ``python -m repcali.sweeps tune <search folder>``) copies the best λ into
``tuned_file`` (``conf/tuned_lambda.yaml``), one entry per backbone and task, and
``${tuned_lambda:}`` (``conf/calib/tuned.yaml``) reads it back, so the main table's grid
(``calib: off,tuned``) runs each backbone and task with its own λ. The resolved λ is part of the
run's identity: a new tuned value is a new run, never a stale result.
"""

from __future__ import annotations

import fcntl
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from repcali.errors import RepCaliError

log = logging.getLogger("repcali")

DEFAULT_LAMBDA = 1.0  # RepCaliConfig.lam: the value where no search has run
RESULTS_FILE = "optimization_results.yaml"  # what the Optuna sweeper writes into its sweep dir
HEADER = """\
# λ chosen by the λ search on the validation metric, per backbone and task; read by calib=tuned.
# Written by sweeps/lambda_search.yaml (or python -m repcali.sweeps tune <search folder>); do not
# edit by hand. Never chosen on the test split: each trial was scored on the `split` named below.
"""
_warned: set[tuple[str, str]] = set()


def _path(tuned_file: str) -> Path:
    from repcali.config import PROJECT_ROOT

    path = Path(tuned_file).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def read_tuned(tuned_file: str) -> dict[str, Any]:
    path = _path(tuned_file)
    try:
        data = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except yaml.YAMLError as error:
        raise RepCaliError(f"{path} is not YAML ({error}). Fix: restore it from git or delete it.") from None
    return data or {}


def tuned_lambda(root: DictConfig) -> float:
    """The λ the search chose for ``root``'s backbone and task, else 1.0: said once per process as a warning
    (composing the main table's grid resolves every pair), each further pair at debug level."""
    model, task = root.model.name, root.task.name
    entry = read_tuned(root.tuned_file).get(model, {}).get(task)
    if entry is not None:
        return float(entry["lam"])
    if (model, task) not in _warned:
        log.log(
            logging.DEBUG if _warned else logging.WARNING,
            "calib=tuned: no λ searched for %s on %s in %s; using λ = %s (and for any other backbone and task "
            "without one). Fix: run the λ search (docs/protocol.md).",
            model,
            task,
            root.tuned_file,
            DEFAULT_LAMBDA,
        )
        _warned.add((model, task))
    return DEFAULT_LAMBDA


def write_best(search_dir: Path, config: DictConfig, trials: int) -> dict[str, Any]:
    """Copy the best λ of the search in ``search_dir`` (its ``optimization_results.yaml``) into
    ``config.tuned_file`` under the search's backbone and task (``config``: the search's or a trial's);
    returns the entry written."""
    results_path = Path(search_dir) / RESULTS_FILE
    if not results_path.is_file():
        raise RepCaliError(
            f"No {RESULTS_FILE} in {search_dir}: the search did not finish. Fix: run the same search command "
            "again (completed trials are not trained again), then this."
        )
    results = OmegaConf.to_container(OmegaConf.load(results_path))
    best = dict(results["best_params"])
    if "calib.lam" not in best:
        raise RepCaliError(f"{results_path} has no calib.lam in best_params {best}. Fix: search calib.lam.")
    selection = config.task.selection
    entry = {
        "lam": float(best.pop("calib.lam")),
        "validation_score": float(results["best_value"]),
        "metric": selection.metric or config.task.primary_metric,
        "split": str(selection.split),
        "trials": trials,
        "search": str(search_dir),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **({"searched_with": best} if best else {}),  # e.g. a learning rate searched jointly: not applied
    }
    path = _path(config.tuned_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:  # two searches ending at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        tuned = read_tuned(config.tuned_file)
        tuned.setdefault(config.model.name, {})[config.task.name] = entry
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(HEADER + yaml.safe_dump(tuned, sort_keys=True, allow_unicode=True))
        os.replace(tmp, path)
    return entry


def write_best_from(search_dir: Path) -> dict[str, Any]:
    """:func:`write_best` for a finished search's folder, with the config its trials recorded."""
    from repcali.results import find_results

    trials = find_results(search_dir).runs
    if not trials:
        raise RepCaliError(f"No trials (results.json) under {search_dir}. Fix: name the folder of a λ search.")
    return write_best(search_dir, OmegaConf.create(trials[0][1].config), len(trials))


class WriteTunedLambda(Callback):
    """Hydra callback of the λ search: when the sweep ends, write its best λ (see :func:`write_best`)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        search_dir = Path(config.hydra.sweep.dir)
        try:
            entry = write_best(search_dir, config, int(config.hydra.sweeper.n_trials))
        except RepCaliError as error:
            log.error("%s", error)
            return
        print(
            f"Best λ for {config.model.name} on {config.task.name}: {entry['lam']:.4g} "
            f"(validation {entry['metric']} {entry['validation_score']:.2f}); written to {config.tuned_file}"
        )
