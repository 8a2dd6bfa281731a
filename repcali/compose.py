"""Hydra's compose API on ``conf/``: the configs ``train.py`` would run, without running them.

Composing takes 0.1–1 s (2 shared CPU cores), most of it Hydra assembling the defaults list, so
:class:`Composer` composes each group option once, puts it in place, and applies plain
``key=value`` overrides (seeds, λ) to a copy, as Hydra applies them (tested against full
composition).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig, OmegaConf

from repcali.config import PROJECT_ROOT, register
from repcali.errors import RepCaliError

CONF_DIR = PROJECT_ROOT / "conf"


@contextmanager
def hydra_compose() -> Iterator[None]:
    """Hydra's compose API on ``conf/``, as ``train.py`` sees it."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register()
    if GlobalHydra.instance().is_initialized():  # e.g. called from inside a Hydra app
        yield
        return
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    """``train.py``'s config for ``overrides`` (inside :func:`hydra_compose`); a bad override is one line."""
    from hydra import compose as hydra_compose_config
    from hydra.errors import HydraException

    try:
        return hydra_compose_config("train", overrides=overrides, return_hydra_config=return_hydra_config)
    except HydraException as error:  # a missing config option, a typo in an override
        first_line = str(error).strip().splitlines()[0]
        raise RepCaliError(
            f"Cannot compose {' '.join(overrides)}: {first_line}. "
            "Fix: add the missing config (conf/<group>/<name>.yaml) or correct the override."
        ) from None


def parser():
    """Hydra's command-line override parser (with the config loader, for ``glob()`` over options)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())


class Composer:
    """The composed config of each override list, composing as little as it can.

    Hydra assembles a config from one option per group. Options that set only their own group's
    node (``conf/<group>/<option>.yaml`` without ``@package`` or defaults outside the group; all
    of ``model``, ``task``, ``method``, ``calib`` here) are composed once each and put in place
    in a copy of the config without them; the rest is composed once per distinct combination.
    Plain ``key=value`` overrides are applied last, as Hydra applies them after the defaults.
    """

    def __init__(self) -> None:
        self.parser = parser()
        self._composed: dict[tuple[str, ...], DictConfig] = {}
        self._combined: dict[tuple[tuple[str, ...], tuple[str, ...]], DictConfig] = {}
        self._local: dict[tuple[str, str], bool] = {}
        self._parsed_lines: dict[str, Any] = {}
        self._working: dict[tuple[tuple[str, ...], ...], tuple[dict[str, str], DictConfig]] = {}

    def __call__(self, overrides: list[str]) -> DictConfig:
        others, groups, plain = self._split(overrides)
        cfg = copy.deepcopy(self._combination(others, groups))
        _apply(cfg, plain)
        return cfg

    def resolved(self, overrides: list[str]) -> dict[str, Any]:
        """``OmegaConf.to_container(self(overrides), resolve=True)``, without a copy where none is needed.

        The jobs of a grid share their override keys: each job sets its group options and values on one
        working config in turn (a group node replaced only when its option changes, then every value set
        again), so nothing of the previous job remains and no job copies the whole config.
        """
        others, groups, plain = self._split(overrides)
        if any(isinstance(override.value(), dict | list) for override in plain):
            return OmegaConf.to_container(self(overrides), resolve=True)
        shape = (others, tuple(line.partition("=")[0] for line in groups), tuple(o.key_or_group for o in plain))
        if shape not in self._working:
            self._working[shape] = ({}, copy.deepcopy(self._compose(others)))
        options, cfg = self._working[shape]
        for line in groups:
            group = line.partition("=")[0]
            if options.get(group) != line:
                cfg[group] = self._compose((*others, line))[group]  # a copy, set in place
                options[group] = line
        _apply(cfg, plain)
        return OmegaConf.to_container(cfg, resolve=True)

    def _split(self, overrides: list[str]) -> tuple[tuple[str, ...], tuple[str, ...], list]:
        """(overrides composed per combination, group options put in place, plain ``key=value`` overrides)."""
        others, groups, plain = [], [], []
        for override in map(self._parsed, overrides):
            group = override.key_or_group
            is_group = (CONF_DIR / group).is_dir() or override.package is not None
            simple = not (override.is_add() or override.is_force_add() or override.is_delete())
            if simple and not is_group and not override.is_hydra_override():
                plain.append(override)
            elif simple and override.package is None and self._is_local(group, override.value()):
                groups.append(override.input_line)
            else:
                others.append(override.input_line)
        return tuple(others), tuple(groups), plain

    def _parsed(self, line: str):
        """Hydra's parse of one override line, once per line: a grid repeats the same few lines."""
        if line not in self._parsed_lines:
            (self._parsed_lines[line],) = self.parser.parse_overrides([line])
        return self._parsed_lines[line]

    def _combination(self, others: tuple[str, ...], groups: tuple[str, ...]) -> DictConfig:
        if (others, groups) not in self._combined:
            cfg = copy.deepcopy(self._compose(others)) if groups else self._compose(others)
            for line in groups:
                group = line.partition("=")[0]
                cfg[group] = self._compose((*others, line))[group]  # a copy, set in place
            self._combined[others, groups] = cfg
        return self._combined[others, groups]

    def _compose(self, overrides: tuple[str, ...]) -> DictConfig:
        if overrides not in self._composed:
            self._composed[overrides] = compose(list(overrides))
        return self._composed[overrides]

    def _is_local(self, group: str, option: object) -> bool:
        """Whether ``conf/<group>/<option>.yaml`` (and the options it includes) sets only ``<group>``."""
        if not isinstance(option, str):
            return False
        if (group, option) not in self._local:
            path = CONF_DIR / group / f"{option}.yaml"
            local = path.is_file() and "@package" not in path.read_text()
            defaults = OmegaConf.load(path).get("defaults", []) if local else []
            self._local[group, option] = local and all(
                isinstance(entry, str) and (entry == "_self_" or self._is_local(group, entry)) for entry in defaults
            )
        return self._local[group, option]


def _apply(cfg: DictConfig, plain: list) -> None:
    """Plain overrides, as Hydra applies them after composing the defaults."""
    for override in plain:
        try:
            OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
        except Exception as error:
            raise RepCaliError(f"Cannot apply {override.input_line}: {error}. Fix: check the override.") from None
