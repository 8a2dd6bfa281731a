"""What a table says: each cell's text, the numbers behind it (a CSV record), and the notes.

A cell × metric reads ``mean ± std (Δ +x.xx*) [paper +y]``: mean and sample std over seeds, Δ
over the baseline with ``*`` where the seed-aware test of :mod:`.significance` stars it (p <
``ALPHA`` with at least 3 paired seeds), ``n < 3 seeds`` where there are too few for a star, ``†``
where nothing varies to test Δ against, and the paper's number where one is known
(:mod:`.paper`, with its unit when it is not ours). Missing, failed, interrupted, running and
partial cells say so; nothing is dropped. Under each task: the metrics tested over per-seed values only, and the
seeds each RepCali row would need for 80 % power at its observed Δ.
"""

from __future__ import annotations

import math

from repcali.tables import render
from repcali.tables.cells import UNFINISHED, Cell, Stat, row_labels
from repcali.tables.paper import PaperNumber
from repcali.tables.seed_significance import ALPHA, MIN_SEEDS, POWER, SEEDS_ONLY, SeedTest
from repcali.tables.significance import Tested, cell_tests
from repcali.tables.specs import TableSpec

UNTESTABLE = "† not testable: the paired seeds' differences do not vary, so there is nothing to compare Δ with."


def _mean(value: Stat | None) -> float | None:
    return value.mean if value else None


def _finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _runs_text(cell: Cell) -> str:
    if not cell.runs:
        return "missing"
    text = f"{len(cell.completed)}/{len(cell.expected_seeds)}"
    extra = [f"{cell.count(state)} {state}" for state in UNFINISHED if cell.count(state)]
    return " · ".join([text, *extra])


def _mean_text(cell: Cell, metric: str) -> str:
    value = cell.metric(metric)
    if value is None:
        return cell.state if cell.state in (*UNFINISHED, "missing") else "–"
    return render.number(value.mean) + ("" if value.n < 2 else f" ± {render.number(value.std)}")


def _test_note(result: SeedTest) -> str:
    """Why a test gives no star whatever its p: ``n < 3 seeds``, ``untestable`` (nothing varies), or ``""``."""
    return result.state or ("" if math.isfinite(result.p) else "untestable")


def _delta_text(delta: Stat, result: SeedTest) -> str:
    """``(Δ +1.00*)``, ``(Δ +3.39, n < 3 seeds)``, ``(Δ +0.00†)``."""
    number, note = render.number(delta.mean, sign=True), _test_note(result)
    if result.state:
        return f"(Δ {number}, {result.state})"
    return f"(Δ {number}{'†' if note else '*' if result.star else ''})"


def _cell_metric(
    spec: TableSpec, cell: Cell, metric: str, tested: Tested, primary: str | None, numbers: list[PaperNumber]
) -> tuple[str, dict, set]:
    """The text of one cell × metric, the numbers behind it (a CSV record), and the notes it needs."""
    mean, delta = cell.metric(metric), cell.delta(metric) if cell.calibrated else None
    test = tested.metrics.get(metric)
    result = test.seed_aware if test else None
    text, notes = _mean_text(cell, metric) if metric else cell.state, set()
    if delta is not None and result is not None:
        text += f" {_delta_text(delta, result)}"
        notes |= {UNTESTABLE} if _test_note(result) == "untestable" else set()
    for entry in numbers:
        if entry.kind != "claim" and entry.matches(spec.name, cell.identity, metric):
            text += f" {entry.beside()}"
            notes.add(entry.describe())
    on_primary = metric == primary and result is not None
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
        "n_interrupted": cell.count("interrupted"),
        "n_running": cell.count("running"),
        "delta": _mean(delta),
        "delta_std": delta.std if delta and delta.n > 1 else None,
        "delta_seeds": delta.n if delta else 0,
        "delta_ci_low": _finite(result.ci_low) if result else None,
        "delta_ci_high": _finite(result.ci_high) if result else None,
        "p_seed_aware": _finite(result.p) if result else None,
        "significant": bool(result.star) if result else None,
        "test_method": result.method if result else "",
        "test_note": _test_note(result) if result else "",
        "p_test_set_only": test.p_test_set_only if test else None,
        "examples_tested": tested.examples if test and test.p_test_set_only is not None else 0,
        "aso_epsilon": tested.aso_epsilon if on_primary else None,
        "seeds_needed": tested.seeds_needed if on_primary else None,
        "seeds_needed_note": tested.seeds_needed_note if on_primary else "",
        "trainable_pct": _mean(cell.param("trainable_pct")),
        "added_pct": _mean(cell.param("added_pct")),
        "run_dirs": " ".join(str(run.path) for run in cell.runs),
    }
    return text, record, notes


def _section_notes(notes: set, seeds_only: dict, seeds_needed: list[str], primary: str | None) -> list[str]:
    lines = sorted(notes - {UNTESTABLE}) + ([UNTESTABLE] if UNTESTABLE in notes else [])
    if seeds_only:
        cells = "; ".join(f"{row}: {', '.join(metrics)}" for row, metrics in seeds_only.items())
        lines.append(
            "Tested over per-seed values only, without the test set's sampling (the metric is not a mean of "
            f"per-example scores, or the runs have none): {cells}."
        )
    if seeds_needed:
        lines.append(
            f"Seeds for {POWER * 100:.0f} % power at the observed Δ of {primary} (a planning figure: the observed Δ "
            f"taken as the true one): {'; '.join(seeds_needed)}."
        )
    return lines


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
        rows, notes, seeds_only, seeds_needed = [], set(), {}, []
        for cell in task_cells:
            tested = cell_tests(cell, metrics, primary, resamples) if cell.calibrated else Tested()
            texts = []
            for metric in metrics or [""]:
                text, record, needed = _cell_metric(spec, cell, metric, tested, primary, numbers)
                record = {"row": labels[id(cell)], **record}
                texts.append(text)
                records.append(record)
                notes |= needed
                if record["test_method"] == SEEDS_ONLY and record["delta_seeds"] > 1:
                    seeds_only.setdefault(labels[id(cell)], []).append(metric)
                if metric == primary and record["delta"] is not None:
                    keys = ("task", "metric", "row", "delta", "delta_ci_low", "delta_ci_high", "significant")
                    bars.append({key: record[key] for key in keys} | {"few_seeds": record["delta_seeds"] < MIN_SEEDS})
                    needed_text = record["seeds_needed"] or record["seeds_needed_note"]
                    seeds_needed.append(f"{labels[id(cell)]} → {needed_text}")
            params = [render.number(_mean(cell.param(name))) for name in ("trainable_pct", "added_pct")]
            rows.append([labels[id(cell)], _runs_text(cell), *texts, *params])
        header = ["", "runs", *(metrics or ["result"]), "trainable %", "added %"]
        sections.append(render.Section(task, header, rows, _section_notes(notes, seeds_only, seeds_needed, primary)))
    table_notes = [
        "Cells: mean ± std over seeds (sample std); runs: completed/expected seeds, failed, interrupted (stopped, "
        "resumable) and running counted.",
        "(Δ …): RepCali − its baseline row (same backbone, method and training settings without the block), "
        f"mean over the paired seeds. * p < {ALPHA} in the seed-aware test with ≥ {MIN_SEEDS} paired seeds: "
        "the training seed's and the test set's variance together, from the per-example differences of the "
        "paired runs (seeds × examples, two-way ANOVA, Behrens–Fisher reference; a paired t-test over the "
        f"per-seed values where per-example scores cannot be used). n < {MIN_SEEDS} seeds: too few for a star, "
        "whatever p. Its 95 % interval and p are in the CSV (delta_ci_low, delta_ci_high, p_seed_aware); "
        "repcali/tables/seed_significance.py.",
        f"CSV p_test_set_only: paired bootstrap over test examples (B = {resamples}, seeds averaged per example): "
        "whether another test set would agree for these trained models, not whether RepCali helps; it never "
        "sets *. aso_epsilon: Almost Stochastic Order ε_min of the primary metric over seeds (< 0.2: RepCali "
        "almost stochastically dominates); not calibrated with 3 seeds, it never sets * either.",
        grid_note,
        *[entry.describe() for entry in numbers if entry.table == spec.name and entry.is_note],
    ]
    return render.Table(spec.name, spec.title, spec.description, sections, records, table_notes), bars
