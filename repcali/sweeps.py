"""Sweeps: the Hydra multirun grids in ``sweeps/``, expanded, run and checked.

A sweep is ``sweeps/<name>.yaml`` (one grid) or a folder ``sweeps/<name>/`` whose files are grids
run one after the other: a Hydra grid is a Cartesian product, and some paper tables are not one
(English backbones on English tasks, Chinese ones on Chinese tasks). Each grid runs as
``python train.py -m +sweep=<name>[/<part>]``, expanded by Hydra's BasicSweeper. Completed runs
are skipped by ``train.py`` and failed ones recorded, so running a sweep again runs only what is
missing or failed.

    python -m repcali.sweeps list
    python -m repcali.sweeps status main_table [overrides]   # done / failed / running / missing per run
    python -m repcali.sweeps run main_table [overrides]      # every part in turn

``status`` runs nothing: it expands the grid the way the BasicSweeper does, composes each grid
point with Hydra's compose API and looks for ``results.json`` in ``<runs_dir>/<run_path(cfg)>``,
the directory ``train.py`` would use. Composition is the slow part (~0.1 s per distinct choice of
config groups), so each group combination is composed once and the plain ``key=value``
overrides of its runs (seeds, λ, ...) are applied on a copy, as Hydra applies them.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from repcali.config import PROJECT_ROOT, register, run_path
from repcali.errors import RepCaliError
from repcali.runs import read_results

SWEEPS_DIR = PROJECT_ROOT / "sweeps"
CONF_DIR = PROJECT_ROOT / "conf"
STATUS_NAMES = {"completed": "done", "failed": "failed", "running": "running"}


def available() -> list[str]:
    """Every sweep name: files at the top of ``sweeps/`` and folders of parts."""
    names = {path.stem for path in SWEEPS_DIR.glob("*.yaml")} | {p.name for p in SWEEPS_DIR.iterdir() if p.is_dir()}
    return sorted(names)


def parts(name: str) -> list[str]:
    """The grids of a sweep, in the order they run: ``[name]`` or ``[name/part, ...]``."""
    if (SWEEPS_DIR / f"{name}.yaml").is_file():
        return [name]
    folder = SWEEPS_DIR / name
    if folder.is_dir() and (files := sorted(folder.glob("*.yaml"))):
        return [f"{name}/{path.stem}" for path in files]
    raise RepCaliError(f"No sweep {name!r} in {SWEEPS_DIR}. Fix: use one of {available()}.")


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


def _compose(overrides: list[str], return_hydra_config: bool = False) -> DictConfig:
    from hydra import compose
    from hydra.errors import HydraException

    try:
        return compose("train", overrides=overrides, return_hydra_config=return_hydra_config)
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


def grid(part: str, overrides: list[str] = ()) -> tuple[DictConfig, list[list[str]]]:
    """The composed sweep config and the override list of every run, in the BasicSweeper's order.

    Call inside :func:`hydra_compose`. The grid is ``hydra.sweeper.params`` of the composed
    config (the sweep file and whatever it includes); command-line ``overrides`` replace a
    swept key or add one, as they do for ``train.py -m``.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    overrides_parser = parser()
    arguments = [f"+sweep={part}", *overrides]
    fixed = [o.input_line for o in overrides_parser.parse_overrides(arguments) if not o.is_sweep_override()]
    composed = _compose(fixed, return_hydra_config=True)
    params = composed.hydra.sweeper.params or {}
    lines = [f"{key}={value}" for key, value in params.items()] + arguments
    return composed, BasicSweeper.split_arguments(overrides_parser.parse_overrides(lines), max_batch_size=None)[0]


class RunDirs:
    """``<runs_dir>/<run_path(cfg)>`` of grid points; one composition per choice of config groups."""

    def __init__(self) -> None:
        self.parser = parser()
        self._composed: dict[tuple[str, ...], DictConfig] = {}

    def config(self, job: list[str]) -> DictConfig:
        composed, plain = [], []
        for override in self.parser.parse_overrides(job):
            is_group = (CONF_DIR / override.key_or_group).is_dir() or override.package is not None
            simple = not (override.is_add() or override.is_force_add() or override.is_delete())
            (plain if simple and not is_group and not override.is_hydra_override() else composed).append(override)
        key = tuple(o.input_line for o in composed)
        if key not in self._composed:
            self._composed[key] = _compose(list(key))
        cfg = copy.deepcopy(self._composed[key])
        for override in plain:  # what Hydra does with a plain override after composing the defaults
            try:
                OmegaConf.update(cfg, override.key_or_group, override.value(), merge=True)
            except Exception as error:
                raise RepCaliError(f"Cannot apply {override.input_line}: {error}. Fix: check the override.") from None
        return cfg

    def __call__(self, job: list[str]) -> Path:
        cfg = self.config(job)
        return Path(cfg.runs_dir) / run_path(cfg)


@dataclass
class RunStatus:
    part: str
    job: list[str]
    run_dir: Path
    status: str  # done | failed | running | missing
    error: str | None = None


def status(name: str, overrides: list[str] = ()) -> list[RunStatus]:
    """Where every run of a sweep stands, from its ``results.json``; nothing is run."""
    found = []
    with hydra_compose():
        run_dirs = RunDirs()
        for part in parts(name):
            for job in grid(part, overrides)[1]:
                run_dir = run_dirs(job)
                results = read_results(run_dir) or {}
                error = (results.get("error") or {}).get("message")
                found.append(RunStatus(part, job, run_dir, STATUS_NAMES.get(results.get("status"), "missing"), error))
    return found


def format_status(runs: list[RunStatus], lines: bool = True, counts: bool = True) -> str:
    """One line per run (the overrides that vary within its grid), then the counts."""
    text = []
    for part in dict.fromkeys(run.part for run in runs) if lines else ():
        grid = [run for run in runs if run.part == part]
        varying = {i for i in range(len(grid[0].job)) if len({run.job[i] for run in grid}) > 1}
        text.append(f"# +sweep={part}: {len(grid)} runs")
        for run in grid:
            label = " ".join(run.job[i] for i in sorted(varying)) or "(one run)"
            where = "" if run.status == "missing" else f"  {run.run_dir}"
            error = f"  ({run.error.splitlines()[0][:160]})" if run.error else ""
            text.append(f"{run.status:<8} {label}{where}{error}")
    if counts:
        found = Counter(run.status for run in runs)
        states = ", ".join(f"{found[state]} {state}" for state in ("done", "failed", "running", "missing"))
        text.append(f"{len(runs)} runs: {states}")
    return "\n".join(text)


def run(name: str, overrides: list[str] = ()) -> int:
    """Run every part of a sweep with ``train.py -m``; stop at the first part that cannot start."""
    for part in parts(name):
        command = [sys.executable, str(PROJECT_ROOT / "train.py"), "-m", f"+sweep={part}", *overrides]
        print("$", " ".join(command[1:]), flush=True)
        code = subprocess.run(command).returncode
        if code != 0:
            return code
    return 0


def main(argv: list[str] | None = None) -> None:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("command", choices=("list", "status", "run"))
    cli.add_argument("name", nargs="?", help="a sweep: a file or folder in sweeps/")
    cli.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py -m")
    args = cli.parse_args(argv)
    if args.command == "list":
        print("\n".join(f"{name}: {' '.join(parts(name))}" for name in available()))
        return
    if not args.name:
        cli.error(f"name a sweep: one of {available()}")
    try:
        if args.command == "status":  # part by part: a large grid takes a while to compose
            found = []
            for part in parts(args.name):
                found += status(part, args.overrides)
                print(format_status([run for run in found if run.part == part], counts=False), flush=True)
            print(format_status(found, lines=False))
        else:
            sys.exit(run(args.name, args.overrides))
    except RepCaliError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
