"""Δ(RepCali − baseline) per row (backbone, or ablation setting) and task, with error bars."""

from __future__ import annotations

import math
from pathlib import Path


def pyplot():
    """matplotlib's pyplot for files only (no display), imported on first use: it takes ~0.6 s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def delta_plot(title: str, bars: list[dict], path: Path) -> None:
    """One panel per task; a horizontal bar per row: mean Δ of the task's primary metric.

    ``bars``: dicts with ``task``, ``metric``, ``row``, ``delta``, ``std`` (over seeds; nan with
    one seed, drawn without an error bar) and ``significant``.
    """
    plt = pyplot()
    tasks = list(dict.fromkeys(bar["task"] for bar in bars))
    rows = list(dict.fromkeys(bar["row"] for bar in bars))
    width = max(7.0, 2.0 + 3.2 * len(tasks))
    height = 1.6 + 0.22 * max(1, len(rows))
    figure, axes = plt.subplots(1, max(1, len(tasks)), figsize=(width, height), sharey=True, squeeze=False)
    if not bars:
        axes[0][0].text(0.5, 0.5, "no RepCali run with a completed baseline yet", ha="center", va="center")
        axes[0][0].set_axis_off()
    for axis, task in zip(axes[0], tasks, strict=False):
        mine = {bar["row"]: bar for bar in bars if bar["task"] == task}
        positions = range(len(rows))
        values = [mine[row]["delta"] if row in mine else 0.0 for row in rows]
        errors = [mine[row]["std"] if row in mine and math.isfinite(mine[row]["std"]) else 0.0 for row in rows]
        colors = ["tab:blue" if value >= 0 else "tab:red" for value in values]
        axis.barh(positions, values, xerr=errors, color=colors, alpha=0.8, capsize=3)
        axis.axvline(0, color="black", linewidth=0.8)
        missing = [i for i, row in enumerate(rows) if row not in mine]
        significant = [i for i, row in enumerate(rows) if row in mine and mine[row]["significant"]]
        axis.scatter([0] * len(missing), missing, marker="x", color="gray", label="no Δ")
        ends = [values[i] + math.copysign(errors[i], values[i]) for i in significant]  # beyond the error bar
        axis.scatter(ends, significant, marker="*", s=70, color="black", zorder=3, label="p < 0.05")
        metric = next(iter(mine.values()))["metric"]
        axis.set_title(f"{task} (Δ {metric})", fontsize=10)
        axis.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(range(len(rows)), rows, fontsize=8)  # once: the panels share the y axis
    axes[0][0].invert_yaxis()
    subtitle = "Δ = RepCali − baseline, mean ± std over seeds; ★ p < 0.05 (paired bootstrap); × no Δ"
    figure.suptitle(f"{title}\n{subtitle}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
