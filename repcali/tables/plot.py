"""Δ(RepCali − baseline) per row (backbone, or ablation setting) and task, with its 95 % interval."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib's pyplot for files only (no display), imported on first use: it takes ~0.6 s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def delta_plot(title: str, bars: list[dict], path: Path) -> None:
    """One panel per task; a horizontal bar per row: mean Δ of the task's primary metric.

    ``bars``: dicts with ``task``, ``metric``, ``row``, ``delta``, the seed-aware 95 % interval
    ``delta_ci_low`` / ``delta_ci_high`` (None when untestable: drawn without an error bar),
    ``significant`` (the star) and ``few_seeds`` (fewer than 3 paired seeds: labelled ``n<3``).
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
        errors = [_interval(mine.get(row)) for row in rows]
        colors = ["tab:blue" if value >= 0 else "tab:red" for value in values]
        axis.barh(positions, values, xerr=list(zip(*errors, strict=True)), color=colors, alpha=0.8, capsize=3)
        axis.axvline(0, color="black", linewidth=0.8)
        missing = [i for i, row in enumerate(rows) if row not in mine]
        axis.scatter([0] * len(missing), missing, marker="x", color="gray", label="no Δ")
        for i, row in enumerate(rows):
            if row not in mine or not (mine[row]["significant"] or mine[row]["few_seeds"]):
                continue
            below, above = errors[i]
            end = values[i] + above if values[i] >= 0 else values[i] - below  # beyond the interval
            star = mine[row]["significant"]
            axis.annotate(
                "★" if star else "n<3",
                (end, i),
                xytext=(4 if values[i] >= 0 else -4, 0),
                textcoords="offset points",
                ha="left" if values[i] >= 0 else "right",
                va="center",
                fontsize=11 if star else 7,
            )
        metric = next(iter(mine.values()))["metric"]
        axis.set_title(f"{task} (Δ {metric})", fontsize=10)
        axis.grid(axis="x", alpha=0.3)
        axis.margins(x=0.12)  # room for the labels beyond the intervals
    axes[0][0].set_yticks(range(len(rows)), rows, fontsize=8)  # once: the panels share the y axis
    axes[0][0].invert_yaxis()
    subtitle = (
        "Δ = RepCali − baseline, mean over seeds; bars: 95 % interval of the seed-aware test\n"
        "★ p < 0.05 with ≥ 3 seeds; n<3: too few seeds for a star; × no Δ"
    )
    figure.suptitle(f"{title}\n{subtitle}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _interval(bar: dict | None) -> tuple[float, float]:
    """How far the interval reaches below and above Δ; (0, 0) where there is none."""
    if bar is None or bar["delta_ci_low"] is None or bar["delta_ci_high"] is None:
        return 0.0, 0.0
    return bar["delta"] - bar["delta_ci_low"], bar["delta_ci_high"] - bar["delta"]
