"""Sweeps: the Hydra multirun grids in ``sweeps/``, expanded, run and checked.

A sweep is ``sweeps/<name>.yaml`` (one grid) or a folder ``sweeps/<name>/`` whose files are grids
run one after the other: a Hydra grid is a Cartesian product, and some paper tables are not one
(English backbones on English tasks, Chinese ones on Chinese tasks). Each grid runs as
``python train.py -m +sweep=<name>[/<part>]``, expanded by Hydra's BasicSweeper. Completed runs
are skipped by ``train.py`` and failed ones recorded, so running a sweep again runs only what is
missing or failed.

    python -m repcali.sweeps list
    python -m repcali.sweeps status main_table [overrides]   # done / failed / interrupted / running / missing
    python -m repcali.sweeps run main_table [overrides]      # every part in turn
    python -m repcali.sweeps plan main_table [--gpu a100]    # runs, tokens, FLOPs, GPU-hours (repcali/plan.py)
    python -m repcali.sweeps plan main_table --budget 200    # the paper's claims 200 GPU-hours can test (budget.py)
    python -m repcali.sweeps prefetch main_table [overrides] # fetch, check its models and data (repcali/prefetch.py)
    python -m repcali.sweeps prefetch --run model=bart task=xsum   # the same for one run's overrides
    python -m repcali.sweeps tune runs/lambda_search/xsum/t5_base   # write a finished search's best λ again

``status`` runs nothing: it reads ``results.json`` where ``train.py`` records each grid point
(:mod:`repcali.grid`: the points composed as ``train.py`` composes them, cached on disk, so only
the first status after a change of ``conf/`` composes). A ``running`` record whose process is gone
shows as ``interrupted`` (:func:`repcali.ownership.shown_status`); the next sweep resumes it.
A search (a sweep file that selects Hydra's Optuna sweeper, ``sweeps/lambda_search.yaml``) is not
a grid: its trials are chosen as it runs, so ``status`` names it and where its trials go instead
of listing points.
"""

from __future__ import annotations

import os

from repcali.threads import wait_policy

os.environ.update(wait_policy(os.environ))  # first, before anything loads torch: waiting threads sleep, never spin

import argparse
import math
import re
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from repcali import grid
from repcali.config import PROJECT_ROOT
from repcali.errors import RepCaliError
from repcali.ownership import shown_status
from repcali.results import InvalidResults, read_results
from repcali.validate import check_overrides

SWEEPS_DIR = PROJECT_ROOT / "sweeps"
STOPS = (signal.SIGINT, signal.SIGTERM)  # passed on to the running part
STATUS_NAMES = {"completed": "done", "failed": "failed", "running": "running", "interrupted": "interrupted"}
STATES = ("done", "failed", "running", "missing")  # counted always; interrupted and invalid when there are some


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


def is_search(part: str) -> bool:
    """A sweep file that selects a sweeper other than Hydra's grid (the Optuna λ search)."""
    text = (SWEEPS_DIR / f"{part}.yaml").read_text()
    return re.search(r"^\s*-\s*override\s+/hydra/sweeper\s*:", text, re.MULTILINE) is not None


@dataclass
class RunStatus:
    part: str
    job: tuple[str, ...]
    run_dir: Path
    status: str  # done | failed | interrupted | running | missing | invalid
    error: str | None = None  # a failed run's error, what is wrong with an invalid results.json, or the owner


def status(name: str, overrides: list[str] = ()) -> list[RunStatus]:
    """Where every run of a sweep stands, from its ``results.json``; nothing is run."""
    found = []
    for part in parts(name):
        for point in grid.points(part, overrides):
            try:
                results = read_results(point.run_dir)
            except InvalidResults as error:
                found.append(RunStatus(part, point.job, point.run_dir, "invalid", error.problem.reason))
                continue
            state = STATUS_NAMES.get(shown_status(point.run_dir, results), "missing") if results else "missing"
            error = results.error.message if results and results.error else None
            if state in ("running", "interrupted") and results.owner and not error:
                error = f"{'owner' if state == 'running' else 'was run by'} {results.owner.describe()}"
            found.append(RunStatus(part, point.job, point.run_dir, state, error))
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
        shown = [*STATES, *(state for state in ("interrupted", "invalid") if found[state])]
        states = ", ".join(f"{found[state]} {state}" for state in shown)
        text.append(f"{len(runs)} runs: {states}")
    return "\n".join(text)


def run(name: str, overrides: list[str] = ()) -> int:
    """Run every part of a sweep with ``train.py -m``; stop at the first part that cannot start or is stopped.

    SIGINT and SIGTERM are passed to the running part, whose run checkpoints, records ``interrupted``
    and exits 130 or 143, and this waits for it (``subprocess.run`` would kill it 0.25 s after a Ctrl-C).
    """
    for part in parts(name):
        command = [sys.executable, str(PROJECT_ROOT / "train.py"), "-m", f"+sweep={part}", *overrides]
        print("$", " ".join(command[1:]), flush=True)
        with subprocess.Popen(command) as process:
            forward = {signum: signal.signal(signum, lambda n, _: process.send_signal(n)) for signum in STOPS}
            try:
                code = process.wait()
            finally:
                for signum, previous in forward.items():
                    signal.signal(signum, previous)
        if code != 0:
            return code
    return 0


def plan(name: str, overrides: list[str] = (), **options) -> str:
    """The cost of a sweep (:func:`repcali.plan.report`), from its cached grid points."""
    from repcali.plan import report

    return report(name, {part: grid.points(part, overrides) for part in parts(name)}, **options)


def budget(name: str, overrides: list[str] = (), **options) -> str:
    """Which of the paper's claims sweep ``name`` can test within a budget (:mod:`repcali.budget`); the chosen
    cells are written as the sweep ``<name>_budget`` (a folder in ``sweeps/``, replaced each time)."""
    from repcali.budget import plan_budget, report_budget, write_sweep

    plan = plan_budget(name, {part: grid.points(part, overrides) for part in parts(name)}, **options)
    return report_budget(plan, write_sweep(plan, SWEEPS_DIR / f"{name}_budget", SWEEPS_DIR))


def _spread(text: str) -> tuple[tuple[str, str], float]:
    """``task:metric=std`` (``--spread multiwoz:inform=2.0``)."""
    where, _, std = text.partition("=")
    task, _, metric = where.partition(":")
    try:
        value = float(std)
    except ValueError:
        value = math.nan
    if not (task and metric and math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not task:metric=std (e.g. multiwoz:inform=2.0)")
    return (task, metric), value


def main(argv: list[str] | None = None) -> None:
    from repcali.plan import GPUS

    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("command", choices=("list", "status", "run", "plan", "tune", "prefetch"))
    cli.add_argument("name", nargs="?", help="a sweep: a file or folder in sweeps/ (tune: a search's folder)")
    cli.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py -m")
    cli.add_argument("--gpu", choices=sorted(GPUS), default="h100", help="plan: the GPU (default h100)")
    cli.add_argument("--mfu", type=float, help="plan: training MFU instead of the measured or assumed one")
    cli.add_argument("--mfu-generate", type=float, help="plan: generation MFU instead of the measured or assumed")
    cli.add_argument("--by", choices=("model", "task"), help="plan: subtotals by backbone or task")
    cli.add_argument("--budget", type=float, help="plan: GPU-hours; which of the paper's claims they can test")
    cli.add_argument(
        "--spread", type=_spread, action="append", default=[], help="plan --budget: task:metric=std, a run's seed std"
    )
    cli.add_argument("--run", action="store_true", help="prefetch: the arguments are one run's overrides (train.py's)")
    args = cli.parse_intermixed_args(argv)
    if args.command == "list":
        kinds = {True: " (a search: trials chosen as it runs)", False: ""}
        print("\n".join(f"{name}: {' '.join(parts(name))}{kinds[is_search(parts(name)[0])]}" for name in available()))
        return
    if not args.name and not (args.command == "prefetch" and args.run):
        cli.error(f"name a sweep: one of {available()}" if args.command != "tune" else "name a search's folder")
    try:
        if problem := check_overrides(args.overrides):  # a key that is no setting, a wrong type: train.py's check
            raise RepCaliError(problem)
        if args.command == "tune":
            from repcali.tuning import write_best_from

            entry = write_best_from(Path(args.name))
            print(f"λ = {entry['lam']:.4g} (validation {entry['metric']} {entry['validation_score']:.2f}) written.")
        elif args.command == "status":  # part by part: a large grid takes a while to compose the first time
            found = []
            for part in parts(args.name):
                if is_search(part):
                    print(
                        f"# +sweep={part}: a search, not a grid; its trials are chosen as it runs. They are recorded "
                        "under <runs_dir>/<experiment>/<task>/<model>/ with the sweeper's optimization_results.yaml; "
                        "python -m repcali.report <that folder> shows them."
                    )
                    continue
                found += status(part, args.overrides)
                print(format_status([run for run in found if run.part == part], counts=False), flush=True)
            print(format_status(found, lines=False))
        elif args.command == "prefetch":
            from repcali.prefetch import prefetch, run_configs, sweep_configs

            arguments = [*filter(None, [args.name]), *args.overrides]  # --run: every argument is an override
            configs = run_configs(arguments) if args.run else sweep_configs(args.name, args.overrides)
            prefetch(configs, again=" ".join(["--run"] * args.run + arguments))
        elif args.command == "plan":
            options = dict(gpu_name=args.gpu, train_mfu=args.mfu, generate_mfu=args.mfu_generate)
            if args.budget is None:
                print(plan(args.name, args.overrides, **options, by=args.by))
            else:
                print(budget(args.name, args.overrides, **options, budget=args.budget, spreads=dict(args.spread)))
        else:
            sys.exit(run(args.name, args.overrides))
    except RepCaliError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
