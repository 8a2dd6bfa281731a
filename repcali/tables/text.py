"""What a table says: each cell's text, the numbers behind it (a CSV record), and the notes.

A cell × metric reads ``mean ± std (Δ +x.xx*) [paper +y]``: mean and sample std over seeds, Δ
over the baseline with ``*`` where :mod:`.significance` gives p < ``ALPHA`` (``†``: not testable),
and the paper's number where one is known (:mod:`.paper`). Missing, failed, running and partial
cells say so; nothing is dropped.
"""

from __future__ import annotations

import math

from repcali.tables import render
from repcali.tables.cells import Cell, Stat, row_labels
from repcali.tables.paper import PaperNumber
from repcali.tables.significance import ALPHA, paired_test
from repcali.tables.specs import TableSpec

UNTESTED = "† not tested: no per-example scores in predictions.jsonl."


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


def _cell_metric(
    spec: TableSpec, cell: Cell, metric: str, p: float | None, numbers: list[PaperNumber]
) -> tuple[str, dict, set]:
    """The text of one cell × metric, the numbers behind it (a CSV record), and the notes it needs."""
    mean, delta = cell.metric(metric), cell.delta(metric) if cell.calibrated else None
    significant = None if p is None else bool(p < ALPHA)
    text, notes = _mean_text(cell, metric) if metric else cell.state, set()
    if delta is not None:
        mark = {True: "*", False: "", None: "†"}[significant]
        text += f" (Δ {render.number(delta.mean, sign=True)}{mark})"
        notes |= {UNTESTED} if p is None else set()
    for entry in numbers:
        if entry.kind != "claim" and entry.matches(spec.name, cell.identity, metric):
            value = render.number(entry.value, sign=entry.kind == "delta")
            text += f" [{'ref' if entry.evidence == 'reference' else 'paper'} {value}]"
            notes.add(entry.describe())
    record = {
        "table": spec.name,
        "task": cell.task,
        "calibrated": cell.calibrated,
        "state": cell.state,
        "setting": cell.runs[0].identity.setting if cell.runs else "",
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


def table(
    spec: TableSpec, cells: list[Cell], grid_note: str, numbers: list[PaperNumber], resamples: int
) -> tuple[render.Table, list[dict]]:
    """The table (sections per task, CSV records, notes) and the bars of its Δ plot."""
    labels = row_labels(cells, spec.rows)
    sections, records, bars = [], [], []
    for task in dict.fromkeys(cell.task for cell in cells):
        task_cells = [cell for cell in cells if cell.task == task]
        primary = next((run.primary_metric for cell in task_cells for run in cell.completed), None)
        metrics = list(dict.fromkeys([*([primary] if primary else []), *(m for c in task_cells for m in c.metrics())]))
        rows, notes = [], set()
        for cell in task_cells:
            pairs = [(ours.path, theirs.path) for ours, theirs in cell.pairs()] if cell.calibrated else []
            tested = paired_test(pairs, metrics, resamples)
            texts = []
            for metric in metrics or [""]:
                text, record, needed = _cell_metric(spec, cell, metric, tested.p_values.get(metric), numbers)
                examples = tested.examples if record["p_value"] is not None else 0
                record = {"row": labels[id(cell)], **record, "examples_tested": examples}
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
