"""Secrets never reach a run's files: they are refused in configs and redacted wherever configs are written.

Tokens and API keys belong in the environment (``HF_TOKEN``, ``WANDB_API_KEY``), where the Hub and W&B
read them. A config value is a secret when its key names one (``hub_token``, ``api_key``, ...) or when it
contains the value of a secret environment variable. Runs refuse such configs (``train.py`` before
Hydra writes anything, :func:`refuse_secrets` for values from config files), and everything that
serialises a config (``results.json``, ``.hydra/``, W&B) passes it through :func:`redact` first.
Cheap to import (no torch): ``train.py`` uses it at start-up.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from repcali.errors import RepCaliError

REDACTED = "<redacted>"
# Key names that hold secrets: hub_token, token, api_key, wandb_api_key, password, client_secret, ...
_SECRET_KEY = re.compile(r"(^|_)(token|api_?key|secret|password|passwd|credentials?)$", re.IGNORECASE)
# Environment variables holding secrets: HF_TOKEN, WANDB_API_KEY, AWS_SECRET_ACCESS_KEY (not HF_TOKEN_PATH)
_SECRET_ENV = re.compile(r"(^|_)(TOKEN|API_?KEY|ACCESS_KEY|SECRET|PASSWORD)$", re.IGNORECASE)
_MIN_SECRET_LENGTH = 8  # shorter environment values are not treated as secrets (they would match anything)


def is_secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.search(str(name)))


def environment_secrets() -> list[str]:
    """Values of environment variables whose names say they are secrets (HF_TOKEN, WANDB_API_KEY, ...)."""
    return [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= _MIN_SECRET_LENGTH]


def _override_key(text: str) -> str | None:
    """``trainer.hub_token`` out of ``+trainer.hub_token=...``; None if ``text`` is no override."""
    key, equals, _ = text.partition("=")
    key = key.lstrip("+~")
    return key if equals and re.fullmatch(r"[\w.\-/@]+", key) else None


def _find(value: Any, path: str, secrets: list[str]) -> list[str]:
    if isinstance(value, dict):
        return [
            found
            for key, item in value.items()
            for found in (
                [f"{path}{key}"]
                if is_secret_key(key) and item not in (None, "", REDACTED)
                else _find(item, f"{path}{key}.", secrets)
            )
        ]
    if isinstance(value, (list, tuple)):
        return [found for i, item in enumerate(value) for found in _find(item, f"{path}{i}.", secrets)]
    if isinstance(value, str):
        key = _override_key(value)
        if (key and is_secret_key(key.rpartition(".")[2])) or any(secret in value for secret in secrets):
            return [key or path.rstrip(".") or "a value"]
    return []


def find_secrets(config: Any) -> list[str]:
    """Where ``config`` (a container, DictConfig or list of overrides) holds secrets, as dotted keys."""
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config, resolve=False)
    return _find(config, "", environment_secrets())


def redact(value: Any, _secrets: list[str] | None = None) -> Any:
    """A copy of a plain container with every secret replaced by ``<redacted>``."""
    secrets = environment_secrets() if _secrets is None else _secrets
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret_key(key) and item not in (None, "") else redact(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(item, secrets) for item in value]
    if isinstance(value, str):
        key = _override_key(value)
        if key and is_secret_key(key.rpartition(".")[2]):
            return f"{value.partition('=')[0]}={REDACTED}"
        for secret in secrets:
            value = value.replace(secret, REDACTED)
    return value


def _refusal(where: list[str], source: str) -> str:
    return (
        f"{source} holds a secret at {', '.join(where)}; it would be written into results.json, .hydra/ "
        "and checkpoints. Fix: remove it and set it in the environment instead (HF_TOKEN for the Hub, "
        "WANDB_API_KEY for W&B), where those libraries read it."
    )


def secret_in_overrides(overrides: list[str]) -> str | None:
    """The refusal for command-line overrides carrying a secret, checked before Hydra writes them anywhere."""
    where = find_secrets([o for o in overrides if not o.startswith("-")])
    return _refusal(where, "The command line") if where else None


def refuse_secrets(cfg: DictConfig) -> None:
    """Refuse a composed config with a secret in it (e.g. from conf/local/), before anything runs."""
    if where := find_secrets(OmegaConf.to_container(cfg, resolve=True)):
        raise RepCaliError(_refusal(where, "The config"))


def _write_yaml(config: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(redact(config))))
    os.replace(tmp, path)


class RedactedHydraOutput(Callback):
    """Writes ``.hydra/`` (config, hydra config, overrides) as Hydra does, with secrets redacted.

    Hydra's own writer is off (``hydra.output_subdir: null`` in ``conf/train.yaml``): it writes before
    any callback could redact. A sweep's ``multirun.yaml``, which Hydra writes before the first job, is
    rewritten redacted when a job starts. A run directory that another process owns keeps the
    ``.hydra/`` that process wrote.
    """

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        from repcali.ownership import lock_held

        hydra = OmegaConf.to_container(HydraConfig.instance().cfg, resolve=False)
        task = {k: v for k, v in OmegaConf.to_container(config, resolve=False).items() if k != "hydra"}
        output = Path(config.hydra.runtime.output_dir) / ".hydra"
        if not lock_held(output.parent):  # another process runs it: its .hydra/ stays as it wrote it
            output.mkdir(parents=True, exist_ok=True)
            _write_yaml(task, output / "config.yaml")
            _write_yaml(hydra, output / "hydra.yaml")
            _write_yaml(list(config.hydra.overrides.task), output / "overrides.yaml")
        multirun = Path(config.hydra.sweep.dir) / "multirun.yaml"
        if multirun.is_file() and find_secrets(OmegaConf.to_container(OmegaConf.load(multirun), resolve=False)):
            _write_yaml(OmegaConf.to_container(OmegaConf.load(multirun), resolve=False), multirun)
