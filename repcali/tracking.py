"""Weights & Biases as a mirror of ``results.json``: never required, never a reason for a run to fail."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from repcali.identity import RunIdentity
from repcali.redact import redact
from repcali.results import Results


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def start_wandb(cfg: DictConfig, run_dir: Path, identity: RunIdentity) -> list[str]:
    """Open the run's W&B run (named by its run path, grouped by experiment); return the Trainer's ``report_to``.

    Without an API key, or when the server cannot be reached, it logs offline into the run
    directory (``wandb sync`` uploads it later) and says so in one line.
    """
    if cfg.logger.name == "none" or not is_main_process():
        return []
    import wandb

    mode = cfg.logger.mode or os.environ.get("WANDB_MODE")
    if mode is None and not wandb.login(prompt=False, verify=False):
        print(f"W&B: no API key configured, logging offline to {run_dir}/wandb (upload later: wandb sync).")
        mode = "offline"
    kwargs: dict[str, Any] = dict(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.logger.group or identity.experiment,
        name=identity.path,
        tags=list(cfg.logger.tags),
        job_type="train",
        dir=str(run_dir),
        mode=mode,
        config=redact(OmegaConf.to_container(cfg, resolve=True)),
        settings=wandb.Settings(init_timeout=60),
    )
    try:
        wandb.init(**kwargs)
    except Exception as error:  # unreachable server, bad key: results must not depend on W&B
        print(f"W&B: could not start an online run ({type(error).__name__}), logging offline instead.")
        wandb.init(**{**kwargs, "mode": "offline"})
    return ["wandb"]


def finish_wandb(results: Results) -> None:
    """Put the metrics, parameter counts and status in the W&B summary and close the run."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    summary = {f"metrics/{k}": v for k, v in results.metrics.items()}
    summary.update({f"params/{k}": v for k, v in results.params.items()})
    summary.update({"status": results.status, "run_dir": results.run_dir})
    wandb.run.summary.update(summary)
    wandb.finish(exit_code=0 if results.status == "completed" else 1)
