"""A run's config, checked before anything loads: what cannot run fails in one line, leaving no run directory.

Hydra's schema types every key it can (:mod:`repcali.config`), and :mod:`repcali.validate` has refused any
key that is no setting and any ``trainer.*`` of the wrong type; this checks what needs the libraries or
more than a type: λ, the free-form ``method.options.*`` against the method's options, the method with the
block, the ``trainer.*`` values training cannot use, and model selection (never on the split that is reported).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from omegaconf import DictConfig

from repcali.config import repcali_config
from repcali.console import set_up_libraries
from repcali.errors import RepCaliError
from repcali.methods import check_combination, method_named
from repcali.precision import refuse_other_precision
from repcali.redact import refuse_secrets
from repcali.selection import check_selection
from repcali.sharding import engine
from repcali.signals import signals_named
from repcali.threads import check_threads
from repcali.training import training_arguments


def check_config(cfg: DictConfig, run_dir: Path) -> None:
    """Raise a :class:`~repcali.errors.RepCaliError` naming the first problem and its fix."""
    set_up_libraries()  # transformers and datasets have just loaded (this module's imports): their logs and bars
    refuse_secrets(cfg)  # a key or token in a config file: refused before anything writes the config
    repcali_config(cfg.calib)  # RepCaliConfig checks its own options: λ finite, LearnEmb's size
    method_named(cfg.method.name).settings(cfg.method.options)
    check_combination(cfg.method.name, cfg.calib.enabled, cfg.calib.train)
    check_sharding(cfg)
    check_selection(cfg)  # never select on the reported split
    training_arguments(cfg, run_dir)
    refuse_other_precision(cfg, run_dir)  # a checkpoint is resumed in the precision it was trained in
    signals_named(cfg.run.stop_signals)
    check_threads(cfg.run.threads)
    if not cfg.run.lock_wait_s >= 0:
        raise RepCaliError(f"run.lock_wait_s={cfg.run.lock_wait_s}. Fix: a number of seconds >= 0.")


def check_sharding(cfg: DictConfig) -> None:
    """``trainer=fsdp`` / ``trainer=zero3``: full fine-tuning, on GPUs, with the engine installed."""
    name = engine(cfg.trainer)
    if name is None:
        return
    option = "trainer=fsdp" if name == "fsdp" else "trainer=zero3"
    if cfg.method.name != "full":
        raise RepCaliError(
            f"{option} shards full fine-tuning; method={cfg.method.name} trains few weights, and its frozen "
            f"backbone fits on one GPU in bf16. Fix: method=full with {option}, or drop {option} (DDP)."
        )
    if name == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        raise RepCaliError(f"{option} needs DeepSpeed. Fix: pip install -e '.[deepspeed]' (on a machine with CUDA).")
    if not torch.cuda.is_available():
        raise RepCaliError(
            f"{option} needs GPUs: accelerate turns {name} on for GPU processes only, and on CPU would run plain "
            f"DDP instead. Fix: run it on GPUs (hydra/launcher=slurm_multigpu, or torchrun), or drop {option}."
        )
