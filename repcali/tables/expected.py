"""The cells a table should have: the grid points of its sweeps, read without composing each one.

Composing every grid point (as ``sweep-status`` does, to find its exact run directory) takes
~0.1 s each; a table only needs each point's task, row fields and seed, which the grid's overrides
name directly. Group options are read from their YAML (``name``; ``enabled`` for ``calib``),
everything else comes from the sweep's composed config. Any sweep that cannot be composed (a
config not written yet) makes the table fall back to the cells that have runs, and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from omegaconf import DictConfig, OmegaConf

from repcali import sweeps
from repcali.errors import RepCaliError
from repcali.tables.cells import CALIB_DEFAULTS, CALIB_FIELDS, normal_value


@cache
def _option(group: str, name: str) -> dict:
    path = sweeps.CONF_DIR / group / f"{name}.yaml"
    return OmegaConf.to_container(OmegaConf.load(path)) if path.is_file() else {}


def _base_fields(composed: DictConfig) -> dict[str, Any]:
    fields = {
        "experiment": composed.experiment_name,
        "task": composed.task.name,
        "model": composed.model.name,
        "method": composed.method.name,
        "calibrated": bool(composed.calib.enabled),
        "seed": composed.seed,
    }
    return fields | {name: normal_value(name, composed.calib[name.split(".")[1]]) for name in CALIB_FIELDS}


def job_fields(base: dict[str, Any], job: list[str], parse: Callable[[str], tuple[str, Any]]) -> dict[str, Any]:
    """Fields of one grid point (as :attr:`repcali.tables.cells.Run.fields`): groups first, then values."""
    fields = dict(base)
    overrides = [parse(line) for line in job]
    for key, value in sorted(overrides, key=lambda override: override[0] not in ("model", "task", "method", "calib")):
        if key in ("model", "task", "method"):
            fields[key] = _option(key, str(value)).get("name", str(value))
        elif key == "calib":
            option = _option("calib", str(value))
            fields["calibrated"] = bool(option.get("enabled", False))
            for name in CALIB_FIELDS:
                fields[name] = normal_value(name, option.get(name.split(".")[1], CALIB_DEFAULTS[name]))
        elif key in CALIB_FIELDS:
            fields[key] = normal_value(key, value)
        elif key in ("seed", "experiment_name"):
            fields[{"experiment_name": "experiment"}.get(key, key)] = value
    return fields


def expected_fields(sweep_names: tuple[str, ...]) -> tuple[list[dict] | None, str]:
    """Every grid point of the sweeps, and a note for the table saying where its cells come from."""
    try:
        entries = [entry for name in sweep_names for part in sweeps.parts(name) for entry in part_fields(part)]
    except RepCaliError as error:
        return None, f"Expected cells unknown ({error}); only cells with runs are shown."
    sources = ", ".join(f"`{name}`" for name in sweep_names)
    return entries, f"Expected cells and seeds: the grid of sweep {sources}; a cell without runs shows as missing."


@cache  # tables share sweeps (every ablation has the baseline's); composing one takes ~0.25 s
def part_fields(part: str) -> tuple[dict[str, Any], ...]:
    """The fields of every grid point of one sweep file. ``part_fields.cache_clear()`` reads conf/ afresh."""
    with sweeps.hydra_compose():
        parser = sweeps.parser()

        @cache  # a grid repeats a few override strings many times; Hydra's parser is slow
        def parse(line: str) -> tuple[str, Any]:
            override = parser.parse_override(line)
            return override.key_or_group, override.value()

        composed, jobs = sweeps.grid(part)
        base = _base_fields(composed)
        return tuple(job_fields(base, job, parse) for job in jobs)
