"""``make tables``: every table with runs, from the ``results.json`` found under a folder.

The cells a table should have come from its sweeps' grids (:mod:`repcali.grid`, composed once and
cached), so a cell never run shows as missing. A ``results.json`` that cannot be read is logged
by path and left out; a ``predictions.jsonl`` that cannot be used is logged by path and named in
the table's notes, and its run counts with what its record holds; every other run still counts.
A ``running`` record whose process is gone counts as ``interrupted``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from repcali import grid, sweeps
from repcali.errors import RepCaliError
from repcali.identity import RunIdentity
from repcali.ownership import shown_status
from repcali.results import find_results
from repcali.tables import paper, render
from repcali.tables.cells import Run, group
from repcali.tables.plot import delta_plot, pyplot
from repcali.tables.significance import RESAMPLES, forget, unusable_predictions
from repcali.tables.specs import SPECS, generic
from repcali.tables.text import table

log = logging.getLogger("repcali")


def expected_cells(sweep_names: tuple[str, ...]) -> tuple[list[RunIdentity] | None, str]:
    """Every grid point of the sweeps, and a note for the table saying where its cells come from.

    A sweep that cannot be composed (a config not written yet) leaves the cells that have runs.
    """
    if not sweep_names:
        return None, "Cells: those with runs."
    try:
        parts = [part for name in sweep_names for part in sweeps.parts(name)]
        expected = [point.identity for part in parts for point in grid.points(part)]
    except RepCaliError as error:
        return None, f"Expected cells unknown ({error}); only cells with runs are shown."
    sources = ", ".join(f"`{name}`" for name in sweep_names)
    return expected, f"Expected cells and seeds: the grid of sweep {sources}; a cell without runs shows as missing."


def build(runs_dir: Path, out_dir: Path, resamples: int = RESAMPLES) -> list[Path]:
    """Write every table with runs under ``runs_dir`` into ``out_dir``; return the files written."""
    forget()  # read each run's predictions once per build, and afresh in the next
    found = find_results(runs_dir)
    for problem in found.problems:
        log.warning("Left out of the tables: %s", problem)
    runs = [Run(path, results, shown_status(path, results)) for path, results in found.runs]
    experiments = dict.fromkeys(run.identity.experiment for run in runs)
    claimed = {spec.experiment for spec in SPECS}
    numbers = paper.load()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, plots = [], []
    # Plots draw in a second process, beside the tables (they are ~⅓ of a build's time).
    with ProcessPoolExecutor(max_workers=1, initializer=pyplot) as plotter:
        for spec in [*SPECS, *(generic(name) for name in experiments if name not in claimed)]:
            mine = [run for run in runs if run.identity.experiment == spec.experiment]
            if not any(spec.select(run.identity) for run in mine):
                continue
            expected, grid_note = expected_cells(spec.sweeps)
            cells = group(mine, spec.rows, spec.select, expected)
            content, bars = table(spec, cells, grid_note, numbers, resamples)
            content.notes += _unusable_note({run.path for run in mine})
            paths = [out_dir / f"{spec.name}.{suffix}" for suffix in ("md", "tex", "csv", "png")]
            plots.append(plotter.submit(delta_plot, spec.title, bars, paths[3]))
            paths[0].write_text(render.markdown(content))
            paths[1].write_text(render.latex(content))
            render.write_csv(content, paths[2])
            written += paths
        for plot in plots:
            plot.result()  # a plotting error surfaces here, as it would have inline
    for problem in unusable_predictions():
        log.warning("Per-example scores left out: %s", problem)
    return written


def _unusable_note(run_dirs: set[Path]) -> list[str]:
    """A note naming the table's predictions.jsonl files that could not be used (their cells show the rest)."""
    problems = [str(problem) for problem in unusable_predictions() if problem.path.parent in run_dirs]
    if not problems:
        return []
    return [
        "Unusable predictions.jsonl, left out (those runs' cells use their results.json: per-seed tests only): "
        + "; ".join(problems)
        + "."
    ]
