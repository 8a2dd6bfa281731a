"""``make tables``: every paper table, rebuilt from the runs' ``results.json`` (no network, no W&B).

    python -m repcali.tables --runs runs --out tables

For each table (the specs below, plus one per other experiment found) it writes
``<out>/<name>.md``, ``.tex``, ``.csv`` and ``.png``:

- one section per task; a row per backbone (or method, or ablation setting), the baseline first
  and its RepCali row under it;
- cells are mean ± std over seeds, with completed/expected seeds in ``runs``; RepCali cells add
  Δ over their baseline (same backbone, method and training settings, seed by seed) and ``*``
  where the paired bootstrap on per-example scores gives p < 0.05 (:mod:`.significance`);
- the paper's known numbers (:mod:`.paper`) beside ours where they exist;
- missing, failed, running and partial cells say so; nothing is dropped;
- the CSV holds every number behind the cells, one row per cell and metric;
- the PNG plots Δ of each task's primary metric per row, with the std over seeds as error bars.

Predictions are read only for RepCali cells with a completed baseline, once per run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from repcali.report import find_results
from repcali.tables import paper, render
from repcali.tables.cells import CALIB_DEFAULTS, CALIB_FIELDS, Cell, Run, Stat, group, row_labels
from repcali.tables.expected import expected_fields, part_fields
from repcali.tables.plot import delta_plot, pyplot
from repcali.tables.significance import ALPHA, RESAMPLES, bootstrap_p, example_scores, paired_differences

__all__ = ["SPECS", "TableSpec", "build"]


def _everything(fields: dict) -> bool:
    return True


def _ablation_of(varied: str) -> Callable[[dict], bool]:
    """Baselines, and RepCali runs whose other block options are at their defaults."""

    def select(fields: dict) -> bool:
        others = (name for name in CALIB_FIELDS if name != varied)
        return not fields["calibrated"] or all(fields[name] == CALIB_DEFAULTS[name] for name in others)

    return select


@dataclass(frozen=True)
class TableSpec:
    name: str  # file names under the output folder
    title: str
    experiment: str  # the runs' experiment_name
    rows: tuple[str, ...]  # fields naming a row; those constant over the table are not shown
    sweeps: tuple[str, ...] = ()  # whose grid lists the expected cells
    select: Callable[[dict], bool] = _everything
    description: str = ""


SPECS = (
    TableSpec(
        "main_table",
        "Main table: backbones × tasks, without and with RepCali",
        "main_table",
        ("model", "method"),
        ("main_table",),
        description="Full fine-tuning of each backbone on its tasks, with (`+ RepCali`) and without the block.",
    ),
    TableSpec(
        "glue_comparison",
        "Comparison with fine-tuning baselines on GLUE (T5-base)",
        "glue_comparison",
        ("method", "model", "calib.train"),
        ("glue_comparison",),
        description="Each fine-tuning method with and without RepCali; parameter columns in % of the backbone.",
    ),
    TableSpec(
        "lambda_ablation",
        "Ablation: λ, the strength of calibration",
        "ablations",
        ("model", "calib.lam"),
        ("ablations/baseline", "ablations/lambda"),
        _ablation_of("calib.lam"),
        "LN(h + λ·d), full fine-tuning; λ varies.",
    ),
    TableSpec(
        "layernorm_ablation",
        "Ablation: where the LayerNorm sits",
        "ablations",
        ("model", "calib.layernorm"),
        ("ablations/baseline", "ablations/layernorm"),
        _ablation_of("calib.layernorm"),
        "post_add = LN(h + λ·d), on_delta = h + λ·LN(d), none = h + λ·d; λ = 1, full fine-tuning.",
    ),
    TableSpec(
        "frozen_vs_full",
        "Ablation: full fine-tuning with the block against the block alone",
        "ablations",
        ("model", "calib.train"),
        ("ablations/baseline", "ablations/frozen"),
        _ablation_of("calib.train"),
        "train=full: backbone and block train; train=frozen: only the block trains. λ = 1, LN(h + λ·d).",
    ),
)
GENERIC_ROWS = ("model", "method", *CALIB_FIELDS)


def _mean(value: Stat | None) -> float | None:
    return value.mean if value else None


def _runs_text(cell: Cell) -> str:
    if not cell.runs:
        return "missing"
    text = f"{len(cell.completed)}/{len(cell.expected_seeds)}"
    extra = [f"{cell.count(state)} {state}" for state in ("failed", "running") if cell.count(state)]
    return " · ".join([text, *extra])


def _mean_text(cell: Cell, metric: str) -> str:
    value = cell.metric(metric)
    if value is None:
        return cell.state if cell.state in ("failed", "running", "missing") else "–"
    return render.number(value.mean) + ("" if value.n < 2 else f" ± {render.number(value.std)}")


def _significance(cell: Cell, metrics: list[str], resamples: int) -> tuple[dict[str, float], int]:
    """p-value per metric that has per-example scores in every paired run, and the examples tested."""
    pairs = [(ours.path, theirs.path) for ours, theirs in cell.pairs()]
    loaded = [example_scores(path) for pair in pairs for path in pair]
    if not pairs or any(scores is None for scores in loaded):
        return {}, 0
    testable = [m for m in metrics if all(m in scores[1] for scores in loaded)]
    differences = paired_differences(pairs, testable) if testable else None
    if differences is None:
        return {}, 0
    return dict(zip(testable, bootstrap_p(differences, resamples), strict=True)), len(differences)


def _cell_metric(spec: TableSpec, cell: Cell, metric: str, p: float | None, numbers: list) -> tuple[str, dict, set]:
    """The text of one cell × metric, the numbers behind it (a CSV record), and the notes it needs."""
    mean, delta = cell.metric(metric), cell.delta(metric) if cell.calibrated else None
    significant = None if p is None else bool(p < ALPHA)
    text, notes = _mean_text(cell, metric) if metric else cell.state, set()
    if delta is not None:
        mark = {True: "*", False: "", None: "†"}[significant]
        text += f" (Δ {render.number(delta.mean, sign=True)}{mark})"
        notes |= {UNTESTED} if p is None else set()
    for entry in numbers:
        if entry.kind != "claim" and entry.matches(spec.name, cell.task, cell.fields, metric):
            value = render.number(entry.value, sign=entry.kind == "delta")
            text += f" [{'ref' if entry.evidence == 'reference' else 'paper'} {value}]"
            notes.add(entry.describe())
    record = {
        "table": spec.name,
        "task": cell.task,
        "calibrated": cell.calibrated,
        "state": cell.state,
        "setting": cell.runs[0].setting if cell.runs else "",
        "metric": metric,
        "mean": _mean(mean),
        "std": mean.std if mean and mean.n > 1 else None,
        "n": mean.n if mean else 0,
        "n_expected": len(cell.expected_seeds),
        "n_failed": cell.count("failed"),
        "n_running": cell.count("running"),
        "delta": _mean(delta),
        "delta_std": delta.std if delta and delta.n > 1 else None,
        "delta_seeds": delta.n if delta else 0,
        "p_value": p,
        "significant": significant,
        "trainable_pct": _mean(cell.param("trainable_pct")),
        "added_pct": _mean(cell.param("added_pct")),
        "run_dirs": " ".join(str(run.path) for run in cell.runs),
    }
    return text, record, notes


UNTESTED = "† not tested: no per-example scores in predictions.jsonl."


def _table(spec: TableSpec, cells: list[Cell], grid_note: str, numbers: list, resamples: int):
    """The table (sections per task, CSV records, notes) and the bars of its Δ plot."""
    labels = row_labels(cells, spec.rows)
    sections, records, bars = [], [], []
    for task in dict.fromkeys(cell.task for cell in cells):
        task_cells = [cell for cell in cells if cell.task == task]
        primary = next((run.primary_metric for cell in task_cells for run in cell.completed), None)
        metrics = list(dict.fromkeys([*([primary] if primary else []), *(m for c in task_cells for m in c.metrics())]))
        rows, notes = [], set()
        for cell in task_cells:
            p_values, n_examples = _significance(cell, metrics, resamples) if cell.calibrated else ({}, 0)
            texts = []
            for metric in metrics or [""]:
                text, record, needed = _cell_metric(spec, cell, metric, p_values.get(metric), numbers)
                tested = n_examples if record["p_value"] is not None else 0
                record = {"row": labels[id(cell)], **record, "examples_tested": tested}
                texts.append(text)
                records.append(record)
                notes |= needed
                if metric == primary and record["delta"] is not None:
                    bars.append({key: record[key] for key in ("task", "metric", "row", "delta", "significant")})
                    bars[-1]["std"] = record["delta_std"] if record["delta_std"] is not None else math.nan
            params = [render.number(_mean(cell.param(name))) for name in ("trainable_pct", "added_pct")]
            rows.append([labels[id(cell)], _runs_text(cell), *texts, *params])
        header = ["", "runs", *(metrics or ["result"]), "trainable %", "added %"]
        section_notes = sorted(notes - {UNTESTED}) + ([UNTESTED] if UNTESTED in notes else [])
        sections.append(render.Section(task, header, rows, section_notes))
    table_notes = [
        "Cells: mean ± std over seeds (sample std); runs: completed/expected seeds, failed and running counted.",
        "(Δ …): RepCali − its baseline row (same backbone, method and training settings without the block), "
        f"mean over the paired seeds; * p < {ALPHA}: paired bootstrap over test examples, "
        f"B = {resamples}, seeds averaged per example (repcali/tables/significance.py).",
        grid_note,
        *[entry.describe() for entry in numbers if entry.table == spec.name and entry.is_note],
    ]
    return render.Table(spec.name, spec.title, spec.description, sections, records, table_notes), bars


def build(runs_dir: Path, out_dir: Path, resamples: int = RESAMPLES) -> list[Path]:
    """Write every table with runs under ``runs_dir`` into ``out_dir``; return the files written."""
    example_scores.cache_clear()  # read each run's predictions once per build, and afresh in the next
    part_fields.cache_clear()  # likewise each sweep's grid
    runs = [Run(path, results) for path, results in find_results(runs_dir)]
    experiments = list(dict.fromkeys(run.fields["experiment"] for run in runs))
    claimed = {spec.experiment for spec in SPECS}
    generic = [
        TableSpec(name, f"Experiment {name}", name, GENERIC_ROWS, description="Runs of one experiment_name.")
        for name in experiments
        if name not in claimed
    ]
    numbers = paper.load()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, plots = [], []
    # Plots draw in a second process, beside the tables (they are ~⅓ of a build's time).
    with ProcessPoolExecutor(max_workers=1, initializer=pyplot) as plotter:
        for spec in [*SPECS, *generic]:
            mine = [run for run in runs if run.fields["experiment"] == spec.experiment]
            if not any(spec.select(run.fields) for run in mine):
                continue
            expected, grid_note = expected_fields(spec.sweeps) if spec.sweeps else (None, "Cells: those with runs.")
            cells = group(mine, spec.rows, spec.select, expected)
            table, bars = _table(spec, cells, grid_note, numbers, resamples)
            paths = [out_dir / f"{spec.name}.{suffix}" for suffix in ("md", "tex", "csv", "png")]
            plots.append(plotter.submit(delta_plot, spec.title, bars, paths[3]))
            paths[0].write_text(render.markdown(table))
            paths[1].write_text(render.latex(table))
            render.write_csv(table, paths[2])
            written += paths
        for plot in plots:
            plot.result()  # a plotting error surfaces here, as it would have inline
    return written


def main(argv: list[str] | None = None) -> None:
    import argparse

    cli = argparse.ArgumentParser(prog="python -m repcali.tables", description=__doc__.split("\n\n")[0])
    cli.add_argument("--runs", type=Path, default=Path("runs"), help="folder scanned for results.json (runs)")
    cli.add_argument("--out", type=Path, default=Path("tables"), help="where tables are written (tables)")
    cli.add_argument("--resamples", type=int, default=RESAMPLES, help=f"bootstrap resamples ({RESAMPLES})")
    args = cli.parse_args(argv)
    start = time.perf_counter()
    written = build(args.runs, args.out, args.resamples)
    for path in written:
        print(path)
    seconds = time.perf_counter() - start
    print(f"{len(written) // 4} tables from {args.runs} in {seconds:.1f} s" if written else f"No runs in {args.runs}.")
