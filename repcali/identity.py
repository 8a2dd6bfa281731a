"""Which run a config is: its identity, its hashes and its directory, computed once in one place.

A run is named by the resolved values of ``IDENTITY_KEYS``: the same config always finds its
earlier result, and a changed λ, learning rate or data file is a new run. Everything that needs
to know which run a config is (``train.py``'s run directory, sweeps, tables, tracking) builds a
:class:`RunIdentity` from the config, composed by Hydra or read back from ``results.json``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from repcali.precision import legacy

# The config groups that decide a run's result; their resolved values name its directory.
IDENTITY_KEYS = ("model", "task", "method", "calib", "trainer", "precision", "seed")
SETTING_KEYS = tuple(key for key in IDENTITY_KEYS if key != "seed")  # runs averaged over seeds share these
BASELINE_KEYS = tuple(key for key in SETTING_KEYS if key != "calib")  # a RepCali run and its baseline share these
BLOCK_OPTIONS = ("lam", "layernorm", "train")  # calib.<option>: what tables show of the block
CONFIG_KEYS = ("experiment_name", *IDENTITY_KEYS)  # what an identity is computed from
# Keys inside those groups that describe the backbone or the data for the cost planner and change no
# result: left out, so adding or correcting them renames no run.
DESCRIPTIVE = {"model": ("params",), "task": ("stats",)}
# Bump when what an identity is computed from, or how, changes: cached grids (repcali/grid.py) are keyed by it.
IDENTITY_VERSION = 2  # 2: precision (repcali/precision.py) joined the keys, trainer.bf16/fp16 left them
# Keys that records written before they existed lack: left out of those records' hashes, so an older run keeps
# its directory and its cells. (The identity reads such a record's precision from its trainer flags.)
ADDED_KEYS = ("precision",)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _without_descriptive(key: str, value: Any) -> Any:
    if key not in DESCRIPTIVE or not isinstance(value, Mapping):
        return value
    return {name: entry for name, entry in value.items() if name not in DESCRIPTIVE[key]}


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class RunIdentity:
    """A run's names and hashes. ``digest`` names its directory; ``setting`` and ``baseline`` group runs.

    - ``setting``: every identity key but the seed; runs with one setting are one table cell (one per
      resolved precision: ``precision=auto`` runs on a GPU and on a CPU share a setting, not a cell).
    - ``baseline``: every identity key but the seed and ``calib``; a RepCali run is compared with the
      ``calib=off`` runs of the same baseline hash, seed by seed.
    - ``lam``, ``layernorm``, ``train``: the block's options (``calib.<option>``), λ as a float
      whatever its spelling (1, 1.0), so recorded and swept values compare equal.
    """

    experiment: str
    task: str
    model: str
    method: str
    calib: str  # the calib option's name: off | on
    calibrated: bool
    lam: float
    layernorm: str
    train: str
    precision: str  # as requested (auto, fp32, tf32, bf16); a record from before precision existed: what it ran in
    seed: int
    digest: str
    setting: str
    baseline: str

    @classmethod
    def of(cls, config: Mapping) -> RunIdentity:
        """From a resolved config: a composed ``DictConfig``, or the ``config`` of a ``results.json``.

        Raises ``KeyError`` or ``TypeError`` when the config lacks a key identity is made of.
        """
        if OmegaConf.is_config(config):
            config = {key: _plain(config[key]) for key in CONFIG_KEYS if key in config}
        keys = [key for key in IDENTITY_KEYS if key in config or key not in ADDED_KEYS]
        values = {key: _without_descriptive(key, config[key]) for key in keys}
        calib = values["calib"]
        return cls(
            experiment=config["experiment_name"],
            task=values["task"]["name"],
            model=values["model"]["name"],
            method=values["method"]["name"],
            calib=calib["name"],
            calibrated=bool(calib["enabled"]),
            lam=float(calib["lam"]),
            layernorm=calib["layernorm"],
            train=calib["train"],
            precision=str(values.get("precision") or legacy(values["trainer"])),
            seed=values["seed"],
            digest=_hash(values),
            setting=_hash([values[key] for key in SETTING_KEYS if key in values]),
            baseline=_hash([values[key] for key in BASELINE_KEYS if key in values]),
        )

    @property
    def path(self) -> str:
        """``<experiment>/<task>/<model>/<method>/calib-<name>/seed<seed>-<digest>``, relative to ``runs_dir``."""
        parts = (self.experiment, self.task, self.model, self.method, f"calib-{self.calib}")
        return "/".join([*parts, f"seed{self.seed}-{self.digest}"])
