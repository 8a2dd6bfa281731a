"""Print runs side by side from their ``results.json`` (the demo's comparison, quick looks).

python -m repcali.report runs/default/aclsum/tiny_bart
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

from repcali.runs import RESULTS_NAME


def find_results(root: str | Path) -> Iterator[tuple[Path, dict]]:
    """Every ``results.json`` under ``root`` (sorted), with its parsed content."""
    for path in sorted(Path(root).rglob(RESULTS_NAME)):
        try:
            yield path.parent, json.loads(path.read_text())
        except json.JSONDecodeError:
            continue


def metrics_table(columns: dict[str, dict]) -> str:
    """A plain-text table: one row per metric, one column per run; Δ when two runs are compared."""
    names = list(dict.fromkeys(name for results in columns.values() for name in results.get("metrics", {})))
    labels = list(columns)
    show_delta = len(labels) == 2
    header = ["metric", *labels, *(["delta"] if show_delta else [])]
    rows = []
    for name in names:
        values = [columns[label].get("metrics", {}).get(name) for label in labels]
        cells = [f"{v:.2f}" if isinstance(v, int | float) else "-" for v in values]
        if show_delta:
            cells.append(f"{values[1] - values[0]:+.2f}" if None not in values else "-")
        rows.append([name, *cells])
    for key, fmt in (("added_pct", "{:.3f}%"), ("trainable", "{:,}")):
        rows.append(
            [
                f"params {key}",
                *[
                    fmt.format(columns[lb]["params"][key]) if key in columns[lb].get("params", {}) else "-"
                    for lb in labels
                ],
                *([""] if show_delta else []),
            ]
        )
    rows.append(["status", *[columns[label]["status"] for label in labels], *([""] if show_delta else [])])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="a run directory or any folder above several")
    args = parser.parse_args(argv)
    columns = {}
    for run_dir, results in find_results(args.root):
        label = str(run_dir.relative_to(args.root)) if run_dir != Path(args.root) else run_dir.name
        columns[label] = results
    if not columns:
        raise SystemExit(f"No {RESULTS_NAME} under {args.root}.")
    print(metrics_table(columns))


if __name__ == "__main__":
    main()
