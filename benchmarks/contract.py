"""What a benchmark hands the runner: a ``Benchmark`` of ``Row``s, and the one way a figure is written and judged.

A benchmark's ``run(mode, device)`` returns a ``Benchmark``; the runner adds the machine and the
timing and writes it as JSON; ``benchmarks.summary`` renders every row the same way. A row's
result, target and verdict come from ``judged``, so "median (IQR q1 … q3, n=rounds)" and the
met / missed / unresolved rule live here only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NO_TARGET = "—"  # the target and verdict cells of a row without a target


@dataclass(frozen=True)
class Row:
    """One line of the summary: a measure on a case, baseline against compared, judged against a target."""

    case: str  # what is measured on: model, data, sizes, device
    measure: str  # what is measured
    baseline: str = ""  # the reference variant's figure (median)
    compared: str = ""  # the measured variant's figure (median)
    result: str = ""  # see judged(): median (IQR q1 … q3, n=rounds)
    target: str = NO_TARGET
    verdict: str = NO_TARGET  # met / missed / unresolved (IQR spans target)


@dataclass
class Benchmark:
    """A benchmark's figures: its section of the summary (title, method, rows) and every raw sample (results)."""

    title: str
    method: str  # how it measures, as the summary prints it under the title; line breaks fold to spaces
    rows: list[Row]
    results: list[dict[str, Any]] = field(default_factory=list)  # settings and samples, JSON-serialisable

    def __post_init__(self) -> None:
        self.method = " ".join(self.method.split())


def verdict(stats: dict[str, Any], target: float, at_most: bool = True) -> str:
    """``met`` if the median meets the target, ``missed`` if even the better quartile does not, else ``unresolved``.

    ``unresolved``: the interquartile range spans the target, so this machine's noise is larger
    than the difference being judged.
    """
    median, better = (stats["median"], stats["q1"]) if at_most else (stats["median"], stats["q3"])
    if (median <= target) if at_most else (median >= target):
        return "met"
    return "missed" if ((better > target) if at_most else (better < target)) else "unresolved (IQR spans target)"


def judged(
    stats: dict[str, Any], fmt: str, unit: str, target: float | None = None, at_most: bool = True
) -> dict[str, str]:
    """A row's result, target and verdict cells for ``stats`` (``measure.summarize``), in the units shown.

    ``fmt`` is a format spec (``".2f"``, ``"+.2f"`` for changes); ``unit`` follows the number
    (``" s"``, ``"×"``, ``" %"``). One sample (n=1) is written without an IQR.
    """
    result = f"{stats['median']:{fmt}}{unit}"
    if stats["n"] > 1:
        result += f" (IQR {stats['q1']:{fmt}} … {stats['q3']:{fmt}}{unit}, n={stats['n']})"
    if target is None:
        return {"result": result}
    sign = "+" if fmt.startswith("+") else ""
    target_text = f"{'≤' if at_most else '≥'} {target:{sign}g}{unit}"
    return {"result": result, "target": target_text, "verdict": verdict(stats, target, at_most)}
