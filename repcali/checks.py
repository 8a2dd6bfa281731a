"""A run's config, checked before anything loads: what cannot run fails in one line, leaving no run directory.

Hydra's schema types every key it can (:mod:`repcali.config`); this checks the rest: λ, the free-form
``method.options.*`` against the method's options, the method with the block, and ``trainer.*``
against ``Seq2SeqTrainingArguments``, with the values training cannot use, and model selection
(never on the split that is reported).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from repcali.config import repcali_config
from repcali.methods import check_combination, method_named
from repcali.redact import refuse_secrets
from repcali.selection import check_selection
from repcali.training import training_arguments


def check_config(cfg: DictConfig, run_dir: Path) -> None:
    """Raise a :class:`~repcali.errors.RepCaliError` naming the first problem and its fix."""
    refuse_secrets(cfg)  # a key or token in a config file: refused before anything writes the config
    repcali_config(cfg.calib)  # RepCaliConfig checks its own options: λ finite, LearnEmb's size
    method_named(cfg.method.name).settings(cfg.method.options)
    check_combination(cfg.method.name, cfg.calib.enabled, cfg.calib.train)
    check_selection(cfg)  # never select on the reported split
    training_arguments(cfg, run_dir)
