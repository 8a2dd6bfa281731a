"""Fine-tune an encoder-decoder with or without RepCali, evaluate it, and record the run.

    python train.py                                        # embedded default: tiny T5 on ACLSum, offline
    python train.py model=bart task=xsum calib=on          # any backbone x task x calib (bart = bart_large)
    python train.py method=lora calib=on                   # any fine-tuning method (conf/method/), + RepCali
    python train.py -m calib=off,on seed=1,2,3             # a sweep; completed runs are skipped
    torchrun --standalone --nproc_per_node=4 train.py model=t5_base task=xsum   # multi-GPU, same code
    python train.py --cfg job                              # print the composed config
    python train.py -v                                     # everything: every log line and warning, progress bars

Every run lives in a directory derived from its config,
``runs/<experiment_name>/<task>/<model>/<method>/calib-<name>/seed<seed>-<hash>``, and ends with
``results.json`` there (status, metrics, parameters, config, git, versions, timings).
Running a completed config again prints its metrics and exits; ``rerun=true`` trains it again.
A killed or interrupted run resumes from its newest checkpoint; SIGTERM or SIGINT checkpoints it,
records ``interrupted`` and exits 143 or 130; a config another process is running exits 1 (a sweep
skips it).
"""

from __future__ import annotations

import os

from repcali.threads import wait_policy

os.environ.update(wait_policy(os.environ))  # first, before anything loads torch: waiting threads sleep, never spin

import logging
import math
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from repcali.config import register, unknown_choice
from repcali.console import set_up
from repcali.errors import RepCaliError
from repcali.experiment import Outcome, run_experiment
from repcali.ownership import RunBusy, lock_held
from repcali.redact import secret_in_overrides
from repcali.report import metrics_table
from repcali.results import RESULTS_NAME
from repcali.validate import check_overrides, validate

register()
log = logging.getLogger("repcali")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Returns the run's validation score (what the λ search maximises), NaN without one: a failed or
    refused run, or one without model selection, is a failed trial to Optuna. Never a test score."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    set_up(verbose=bool(HydraConfig.get().verbose), first=not sweep or HydraConfig.get().job.num == 0)
    try:
        validate(cfg)  # a key that nothing reads, a value of the wrong type: from any file or sweep, before anything
    except RepCaliError as refusal:
        outcome = Outcome(None, refusal)
    else:
        outcome = run_experiment(cfg, run_dir)
    selection = outcome.results.selection if outcome.results and outcome.error is None else None
    validation_score = selection.best_score if selection and selection.best_score is not None else math.nan
    if outcome.refused:
        remove_unrecorded(run_dir, Path(os.path.abspath(cfg.runs_dir)))  # as Hydra made run_dir
    elif outcome.results is not None:
        print(metrics_table({outcome.results.identity.path: outcome.results}))
    if outcome.skipped:
        print(f"Already completed; skipped (rerun=true trains it again). Run dir: {run_dir}")
        return validation_score
    error = outcome.error
    if isinstance(error, RunBusy):  # another process owns it: nothing was done, nothing recorded
        if sweep:
            print(f"Skipped: {error}")
            return validation_score
        print(f"\nerror: {error}", file=sys.stderr)
        sys.exit(1)
    if outcome.interrupted is not None:  # recorded; now the previous handler, or exit 128 + n: a sweep stops
        what = outcome.results.error.message if outcome.results and outcome.results.error else outcome.interrupted
        print(f"\ninterrupted: {what}", file=sys.stderr)
        if outcome.results is not None:
            print(f"Run {outcome.results.status}; results.json records it. Run dir: {run_dir}")
        outcome.interrupted.hand_on()
    if isinstance(error, SystemExit):  # e.g. submitit requeueing a preempted job: its exit code says so
        raise error
    if error is None:
        print(f"Run dir: {run_dir}")
        return validation_score
    if not isinstance(error, RepCaliError):
        log.error("run failed", exc_info=error)  # a bug, not a user error: keep the traceback
    print(f"\nerror: {error}", file=sys.stderr)  # newline: a progress bar may hold the line
    if outcome.results is not None:
        print(f"Run failed; results.json records why. Run dir: {run_dir}")
    if not sweep or not isinstance(error, Exception):
        sys.exit(1)  # a sweep goes on (a failed run is recorded, a refused one named above)
    return validation_score


def remove_unrecorded(run_dir: Path, runs_dir: Path) -> None:
    """Hydra makes a run's directory (.hydra/, train.log) before the run starts; a refused run with no
    earlier record leaves none, nor the folders above it that it alone made (unless another process owns it)."""
    if (run_dir / RESULTS_NAME).exists() or lock_held(run_dir):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    for folder in run_dir.parents:
        if runs_dir not in folder.parents:
            return
        try:
            folder.rmdir()  # only when empty: other runs may live there
        except OSError:
            return


VERBOSE = ("-v", "--verbose")  # everything a run logs, progress bars too: hydra.verbose=repcali (repcali/console.py)


def cli() -> None:
    """``python train.py [-v] <overrides>``: a closed choice misspelt, a secret, a key that is no setting or a
    value of the wrong type on the command line is refused in one line before Hydra composes anything; then
    the run (or sweep)."""
    overrides = [argument for argument in sys.argv[1:] if argument not in VERBOSE]
    if problem := (unknown_choice(overrides) or secret_in_overrides(overrides) or check_overrides(overrides)):
        sys.exit(f"error: {problem}")
    if len(overrides) < len(sys.argv) - 1:  # -v given: Hydra's own parser knows no -v
        verbose = [] if any(o.startswith("hydra.verbose=") for o in overrides) else ["hydra.verbose=repcali"]
        sys.argv = [sys.argv[0], *overrides, *verbose]
    main()


if __name__ == "__main__":
    cli()
