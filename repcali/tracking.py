"""Weights & Biases as a mirror of ``results.json``: never required, never a reason for a run to fail,
and never a reason for a run to wait.

Where the server cannot be reached (compute nodes without internet), W&B's own online attempt waits
out its timeout before failing: 88 s of a 91 s run in one measurement. So the mode is decided before
``wandb.init``: an explicit ``logger.mode`` or ``WANDB_MODE`` (the SLURM launchers export
``WANDB_MODE=offline``), else offline without an API key (looked up without asking the server), else a
TCP connection to the server (or the HTTPS proxy) must open within ``logger.probe_timeout_s``. The
probe runs once per process, so a sweep in one process (Hydra's basic launcher) asks once. Offline runs
are uploaded later with ``wandb sync``.
"""

from __future__ import annotations

import functools
import netrc
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from omegaconf import DictConfig, OmegaConf

from repcali.identity import RunIdentity
from repcali.redact import redact
from repcali.results import Results


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


INIT_TIMEOUT_S = 15  # once the server answered the probe, an online start that takes longer falls back


def base_url() -> str:
    """The W&B server a run would use: ``WANDB_BASE_URL``, else the installed wandb's default (wandb 0.31:
    https://api.forge.coreweave.com; earlier: https://api.wandb.ai)."""
    import wandb

    return os.environ.get("WANDB_BASE_URL") or wandb.Settings().base_url


def server_address() -> tuple[str, int]:
    """Where a W&B connection goes first: the HTTPS proxy if one is set, else the server (:func:`base_url`)."""
    url = urlsplit(os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or base_url())
    return url.hostname or "localhost", url.port or (443 if url.scheme == "https" else 80)


def api_key_configured() -> bool:
    """Whether wandb will find credentials, looked up where it looks (``WANDB_API_KEY``, an identity token
    file, the netrc entry for the server's host) without asking the server. ``wandb.login`` is not used:
    even with ``verify=False`` it asks the server whose key it is (wandb 0.31: 5 s, on every call, when
    the server cannot be reached)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlsplit(base_url()).hostname
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc").expanduser()
    try:
        return host is not None and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


@functools.cache
def reachable(address: tuple[str, int], timeout_s: float) -> bool:
    """Whether a TCP connection to ``address`` opens within ``timeout_s``; asked once per process."""
    try:
        socket.create_connection(address, timeout=timeout_s).close()
        return True
    except OSError:
        return False


def wandb_mode(cfg: DictConfig) -> tuple[str | None, str | None]:
    """The W&B mode for a run (None: online) and, when it is offline by our decision, why. No call here
    waits longer than ``logger.probe_timeout_s``, and that once per process."""
    mode = cfg.logger.mode or os.environ.get("WANDB_MODE")
    if mode is not None:
        return mode, None
    if not api_key_configured():
        return "offline", "no API key configured"
    host, port = address = server_address()
    if not reachable(address, cfg.logger.probe_timeout_s):
        return "offline", f"{host}:{port} not reachable within {cfg.logger.probe_timeout_s:g} s"
    return None, None


def start_wandb(cfg: DictConfig, run_dir: Path, identity: RunIdentity) -> list[str]:
    """Open the run's W&B run (named by its run path, grouped by experiment); return the Trainer's ``report_to``.

    Offline (into the run directory; ``wandb sync`` uploads it later) when :func:`wandb_mode` says so
    or an online start fails, which it says in one line.
    """
    if cfg.logger.name == "none" or not is_main_process():
        return []
    import wandb

    mode, why = wandb_mode(cfg)
    if why:
        print(f"W&B: {why}, logging offline to {run_dir}/wandb (upload later: wandb sync).")
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
        settings=wandb.Settings(init_timeout=INIT_TIMEOUT_S),
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
