"""Print runs side by side from their ``results.json`` (the demo's comparison, quick looks).

python -m repcali.report runs/default/aclsum/tiny_bart
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from repcali.results import RESULTS_NAME, Results, find_results


def _cell(value, fmt: str = "{:.2f}") -> str:
    return fmt.format(value) if isinstance(value, int | float) else "-"


def _selected(results: Results) -> str:
    chosen = results.selection
    if chosen is None or chosen.best_step is None:
        return "-"
    return f"step {chosen.best_step}: {chosen.metric} {chosen.best_score:.2f} on {chosen.split}"


def metrics_table(columns: dict[str, Results]) -> str:
    """A plain-text table: one row per metric, one column per run, and Δ when two runs are compared."""
    labels = list(columns)
    metric_names = list(dict.fromkeys(name for results in columns.values() for name in results.metrics))
    rows = [["metric", *labels]]
    for name in metric_names:
        values = [columns[label].metrics.get(name) for label in labels]
        delta = [_cell(values[1] - values[0], "{:+.2f}") if None not in values else "-"] if len(labels) == 2 else []
        rows.append([name, *map(_cell, values), *delta])
    if any(results.selection for results in columns.values()):  # what chose the scored model, never the test
        rows.append(["selected (validation)", *(_selected(columns[label]) for label in labels)])
    rows.append(["params added %", *(_cell(columns[lb].params.get("added_pct"), "{:.3f}") for lb in labels)])
    rows.append(["params trainable", *(_cell(columns[lb].params.get("trainable"), "{:,}") for lb in labels)])
    rows.append(["status", *(columns[label].status for label in labels)])
    if len(labels) == 2:
        rows[0].append("delta")
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip() for row in rows
    ]  # rows may be short
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="a run directory or any folder above several")
    args = parser.parse_args(argv)
    found = find_results(args.root)
    for problem in found.problems:
        print(f"skipped {problem}", file=sys.stderr)
    columns = {}
    for run_dir, results in found.runs:
        label = str(run_dir.relative_to(args.root)) if run_dir != Path(args.root) else run_dir.name
        columns[label] = results
    if not columns:
        raise SystemExit(f"No {RESULTS_NAME} under {args.root}.")
    print(metrics_table(columns))


if __name__ == "__main__":
    main()
