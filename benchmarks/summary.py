"""summary.md from the benchmark JSON files of a folder: the only place rows are rendered.

It reads the files, not the live results, so a benchmark run alone (``--only``) keeps the
others' last figures, and a change of format re-renders committed figures without re-measuring
(``python -m benchmarks.run --summary-only --out <folder>``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from benchmarks.contract import Row

SUMMARY_NAME = "summary.md"
COLUMNS = tuple(column.name for column in fields(Row))
PREAMBLE = (
    "Written by `python -m benchmarks.run` (`make bench`, `make bench-full`); one JSON per benchmark beside "
    "this file holds every sample. Ratios are medians of per-round ratios (variants interleaved, first "
    "variant rotating); IQR = interquartile range, n = rounds."
)


def machine_line(machine: dict[str, Any]) -> str:
    versions = machine["versions"]
    gpus = ", ".join(machine["gpus"]) or "no GPU"
    load = machine.get("load_average_1_5_15")
    return (
        f"{machine['cpu']}, {machine['cpus_usable']} of {machine['cpu_count']} CPUs usable, "
        f"torch threads {machine['torch_threads']}, {gpus}; torch {versions['torch']}, "
        f"transformers {versions['transformers']}, Python {versions['python']}"
        + (f"; load average at start {load[0]:.1f}" if load else "")
    )


def section(record: dict[str, Any]) -> list[str]:
    """One benchmark's JSON record as Markdown: title, when and where, method, then its rows as a table."""
    return [
        "",
        f"## {record['title']}",
        "",
        f"*{record['mode']} mode, {record['finished_at']}, {record['seconds']:.0f} s; "
        f"{machine_line(record['machine'])}.*",
        "",
        record["method"],
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(row.get(column, "") for column in COLUMNS) + " |" for row in record["rows"]),
    ]


def write_summary(out: Path, order: Sequence[str]) -> Path:
    """summary.md from every ``*.json`` in ``out``: benchmarks in ``order`` first, any others after, by name."""
    records = {path.stem: json.loads(path.read_text()) for path in sorted(out.glob("*.json"))}
    names = sorted(records, key=lambda name: order.index(name) if name in order else len(order))
    lines = ["# Benchmarks", "", PREAMBLE]
    for name in names:
        lines += section(records[name])
    path = out / SUMMARY_NAME
    path.write_text("\n".join(lines) + "\n")
    return path
