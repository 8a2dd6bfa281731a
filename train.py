"""Fine-tune an encoder-decoder with or without RepCali, evaluate it, and record the run.

    python train.py                                        # embedded default: tiny T5 on ACLSum, offline
    python train.py model=bart task=xsum calib=on          # any backbone x task x calib (bart = bart_large)
    python train.py method=lora calib=on                   # any fine-tuning method (conf/method/), + RepCali
    python train.py -m calib=off,on seed=1,2,3             # a sweep; completed runs are skipped
    torchrun --standalone --nproc_per_node=4 train.py model=t5_base task=xsum   # multi-GPU, same code
    python train.py --cfg job                              # print the composed config

Every run lives in a directory derived from its config,
``runs/<experiment_name>/<task>/<model>/<method>/calib-<name>/seed<seed>-<hash>``, and ends with
``results.json`` there (status, metrics, parameters, config, git, versions, timings).
Running a completed config again prints its metrics and exits; ``rerun=true`` trains it again.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from repcali.config import register, run_path, unknown_choice
from repcali.errors import RepCaliError
from repcali.experiment import run_experiment
from repcali.redact import secret_in_overrides
from repcali.report import metrics_table

register()
log = logging.getLogger("repcali")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    outcome = run_experiment(cfg, run_dir)
    print(metrics_table({run_path(cfg): outcome.results}))
    if outcome.skipped:
        print(f"Already completed; skipped (rerun=true trains it again). Run dir: {run_dir}")
        return
    error = outcome.error
    if error is None:
        print(f"Run dir: {run_dir}")
        return
    if not isinstance(error, RepCaliError):
        log.error("run failed", exc_info=error)  # a bug, not a user error: keep the traceback
    print(f"\nerror: {error}", file=sys.stderr)  # newline: a progress bar may hold the line
    print(f"Run failed; results.json records why. Run dir: {run_dir}")
    if HydraConfig.get().mode != RunMode.MULTIRUN or not isinstance(error, Exception):
        sys.exit(1)  # in a sweep, a failed run is recorded and the sweep goes on


if __name__ == "__main__":
    if problem := unknown_choice(sys.argv[1:]) or secret_in_overrides(sys.argv[1:]):
        sys.exit(f"error: {problem}")
    main()
