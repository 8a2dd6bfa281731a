"""A sweep part's runs: its grid points, expanded as Hydra's BasicSweeper does, composed as
``train.py`` would compose them, and cached on disk.

A part is one Hydra grid (``sweeps/<part>.yaml``, its ``hydra.sweeper.params``). Composing the
840 points of the main table takes 20–30 s on 2 CPU cores even with :class:`repcali.compose.Composer`,
so the composed points are cached (:mod:`repcali.cache`), keyed by the content of ``conf/`` (with
``sweeps/`` and ``experiments/`` through its links, and ``conf/local/``), of
``repcali/config.py`` (the schema the YAML is merged into), the Hydra and OmegaConf versions,
the overrides, what a point keeps and :data:`~repcali.identity.IDENTITY_VERSION`. A cached point
equals a fresh composition (tested); sweep status and the tables' expected cells both read points
from here, and each computes a point's identity from its config as it would from a results.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from importlib.metadata import version
from pathlib import Path
from typing import Any

from repcali import cache, compose, config
from repcali.identity import CONFIG_KEYS, IDENTITY_VERSION, RunIdentity

GRID_VERSION = 1  # bump when what a point stores changes (beyond SECTIONS, which is part of the cache key)
SECTIONS = ("runs_dir", *CONFIG_KEYS)  # what a point keeps of its resolved config


@dataclass(frozen=True)
class GridPoint:
    """One run of a grid: its overrides and the resolved ``SECTIONS`` of its config (model, task, trainer, ...)."""

    job: tuple[str, ...]  # as train.py -m passes them to the run
    config: dict[str, Any]

    @cached_property
    def identity(self) -> RunIdentity:
        return RunIdentity.of(self.config)

    @property
    def run_dir(self) -> Path:
        """Where ``train.py`` records this run: ``<runs_dir>/<identity path>``."""
        return Path(self.config["runs_dir"]) / self.identity.path


def jobs(part: str, overrides: list[str] = ()) -> list[list[str]]:
    """The override list of every run of a grid, in the BasicSweeper's order (inside ``compose.hydra_compose``).

    The grid is ``hydra.sweeper.params`` of the composed sweep config (the sweep file and what it
    includes); command-line ``overrides`` replace a swept key or add one, as for ``train.py -m``.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    overrides_parser = compose.parser()
    arguments = [f"+sweep={part}", *overrides]
    fixed = [o.input_line for o in overrides_parser.parse_overrides(arguments) if not o.is_sweep_override()]
    params = compose.compose(fixed, return_hydra_config=True).hydra.sweeper.params or {}
    lines = [f"{key}={value}" for key, value in params.items()] + arguments
    return BasicSweeper.split_arguments(overrides_parser.parse_overrides(lines), max_batch_size=None)[0]


def compose_jobs(job_overrides: list[list[str]]) -> list[GridPoint]:
    """The points of these override lists (each as ``train.py -m`` passes it to a run), composed now."""
    with compose.hydra_compose():
        composer = compose.Composer()
        points = []
        for job in job_overrides:
            resolved = composer.resolved(job)
            points.append(GridPoint(tuple(job), {key: resolved[key] for key in SECTIONS}))
        return points


def compose_points(part: str, overrides: list[str] = ()) -> list[GridPoint]:
    """Every point of a grid, composed now (no cache)."""
    with compose.hydra_compose():
        return compose_jobs(jobs(part, overrides))


def _cached(kind: str, inputs: list, compute) -> list[GridPoint]:
    """``compute()``'s points, from the cache when ``conf/`` and the code that composes are unchanged."""
    sources = cache.content_digest([compose.CONF_DIR, Path(config.__file__)])
    versions = [version("hydra-core"), version("omegaconf"), GRID_VERSION, IDENTITY_VERSION, SECTIONS]
    name = f"{kind}-" + cache.digest(str(config.PROJECT_ROOT), *inputs)[:16]  # one file per checkout and grid

    def composed() -> list[dict[str, Any]]:
        return [{"job": point.job, "config": point.config} for point in compute()]

    stored = cache.cached(name, cache.digest(sources, versions, *inputs), composed)
    return [GridPoint(tuple(point["job"]), point["config"]) for point in stored]


def points(part: str, overrides: list[str] = ()) -> list[GridPoint]:
    """Every point of a grid, from the cache when ``conf/`` and the code that composes are unchanged."""
    overrides = list(overrides)
    return _cached("grid", [part, overrides], lambda: compose_points(part, overrides))


def job_points(job_overrides: list[list[str]]) -> list[GridPoint]:
    """The points of a launcher's jobs (override lists as the sweeper hands them over), cached like :func:`points`."""
    return _cached("jobs", [job_overrides], lambda: compose_jobs(job_overrides))
