"""The tests of a RepCali cell, on its runs paired seed by seed: which test each metric gets, and the data.

Per metric, two p-values (the statistics of the first: :mod:`.seed_significance`):

- **seed-aware** (``p_seed_aware``, the interval, and the star): the training seed and the test
  set both vary Δ. When every paired run scored the same examples (paired by ``id``) and the
  metric's corpus value is the mean of its per-example scores in every run (ROUGE, accuracy,
  CIDEr: checked on the numbers, not assumed), :func:`.seed_significance.seed_test` on the
  seeds × examples differences, whose Δ̂ is then the Δ the table shows. Otherwise (corpus BLEU,
  chrF, METEOR, MCC, MultiWOZ, runs without ``predictions.jsonl``) the paired t-test over the
  per-seed corpus differences (:func:`.seed_significance.seed_test_from_seeds`), which leaves the
  test set's sampling out; its method says so.
- **test-set sampling only** (``p_test_set_only``): the paired bootstrap over test examples of
  the per-example differences averaged over the seeds (:func:`bootstrap_p`; the shift method,
  Efron & Tibshirani 1993, §16.4): ``(1 + #{|mean* − Δ| ≥ |Δ|}) / (B + 1)``. It asks whether
  another test set would agree for *these* trained models; the seeds' variance is not in it, so it
  never sets the star. For a corpus metric it tests the mean of the per-example proxy (sentence
  BLEU for corpus BLEU).

For the primary metric also ASO's ε_min on the per-seed values and the seeds the seed-aware test
would need for 80 % power at the observed Δ: a second view and a planning figure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from repcali.results import Problem
from repcali.runs import PREDICTIONS_NAME
from repcali.tables import seed_significance as ss
from repcali.tables.cells import Cell, Run

RESAMPLES = 1000
_CHUNK_ELEMENTS = 1 << 22  # ~32 MB of float64 per block of resamples
_MEAN_TOLERANCE = 1e-6  # |corpus − mean of per-example scores|, relative to max(1, |corpus|)


_unusable: dict[Path, str] = {}  # predictions.jsonl files that exist but cannot be used, and why


def unusable_predictions() -> list[Problem]:
    """The ``predictions.jsonl`` files :func:`example_scores` could not use since :func:`forget`."""
    return [Problem(path, reason) for path, reason in _unusable.items()]


def forget() -> None:
    """Read every run's predictions afresh (once per tables build)."""
    example_scores.cache_clear()
    _unusable.clear()


def _row_problem(rows: list) -> str | None:
    """What makes parsed rows unusable as per-example scores (the first problem, by row)."""
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or "id" not in row:
            return f"row {number} is not an object with an id"
        scores = row.get("scores", {})
        if not isinstance(scores, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in scores.values()
        ):
            return f"row {number}: scores is not an object of numbers"
    return None


def _first_bad_line(lines: list[str]) -> str:
    for number, line in enumerate(lines, start=1):
        try:
            json.loads(line)
        except json.JSONDecodeError as error:
            return f"line {number} is not JSON ({error}; truncated?)"
    return "not JSON lines"


@cache
def example_scores(run_dir: Path) -> tuple[dict[str, int], dict[str, np.ndarray]] | None:
    """Example id → position, and metric → per-example scores, from a run's ``predictions.jsonl``.

    None without one, or with one that cannot be used (truncated, hand-edited: named by
    :func:`unusable_predictions`); the run's cells then use what ``results.json`` holds.
    """
    path = Path(run_dir) / PREDICTIONS_NAME
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        _unusable[path] = f"cannot be read ({error})"
        return None
    try:
        rows = json.loads(f"[{','.join(line for line in lines if line.strip())}]")  # one parse: ~2x faster
    except json.JSONDecodeError:
        _unusable[path] = _first_bad_line(lines)
        return None
    if problem := _row_problem(rows):
        _unusable[path] = problem
        return None
    positions = {str(row["id"]): i for i, row in enumerate(rows)}
    names = dict.fromkeys(name for row in rows[:1] for name in row.get("scores", {}))
    scores = {
        name: np.array([row["scores"].get(name, np.nan) for row in rows], dtype=float)
        for name in names
        if all(name in row.get("scores", {}) for row in rows)
    }
    return positions, scores


def seed_differences(pairs: list[tuple[Path, Path]], metrics: list[str]) -> tuple[np.ndarray, bool] | None:
    """RepCali − baseline per seed pair, test example and metric (seeds × examples × metrics).

    Examples are paired by id and kept if every run has them; the flag says whether every run had
    exactly these (none dropped). None when a run has no predictions or lacks a metric's scores.
    """
    loaded = [(example_scores(ours), example_scores(theirs)) for ours, theirs in pairs]
    if not loaded or any(s is None or not all(m in s[1] for m in metrics) for pair in loaded for s in pair):
        return None
    ids = [s[0] for pair in loaded for s in pair]
    common = set(ids[0]).intersection(*ids[1:])
    shared = [i for i in ids[0] if i in common]  # in the first run's order
    if not shared:
        return None
    complete = all(len(run) == len(shared) for run in ids)
    per_seed = []
    for ours, theirs in loaded:
        a = np.fromiter((ours[0][i] for i in shared), dtype=int, count=len(shared))
        b = np.fromiter((theirs[0][i] for i in shared), dtype=int, count=len(shared))
        per_seed.append(np.stack([ours[1][m][a] - theirs[1][m][b] for m in metrics], axis=1))
    return np.stack(per_seed), complete


def _mean_of_examples(runs: list[Run], metric: str) -> bool:
    """Whether in every run the corpus value of ``metric`` is the mean of its per-example scores."""
    for run in runs:
        corpus, scores = run.results.metrics.get(metric), example_scores(run.path)
        if corpus is None or scores is None or metric not in scores[1]:
            return False
        if not abs(float(np.mean(scores[1][metric])) - corpus) <= _MEAN_TOLERANCE * max(1.0, abs(corpus)):
            return False
    return True


@dataclass
class MetricTest:
    """Both tests of one metric of a cell."""

    seed_aware: ss.SeedTest  # sets the star
    p_test_set_only: float | None = None  # None: no per-example scores in every run


@dataclass
class Tested:
    """What :func:`cell_tests` found: per metric, and for the primary metric ASO and seeds needed."""

    metrics: dict[str, MetricTest] = field(default_factory=dict)
    examples: int = 0  # test examples behind the per-example tests
    aso_epsilon: float | None = None
    seeds_needed: int | None = None
    seeds_needed_note: str = ""


def cell_tests(cell: Cell, metrics: list[str], primary: str | None, resamples: int = RESAMPLES) -> Tested:
    """The tests of a RepCali cell against its baseline, over its paired seeds; nothing without pairs."""
    tested, pairs = Tested(), cell.pairs()
    dirs = [(ours.path, theirs.path) for ours, theirs in pairs]
    loaded = [example_scores(path) for pair in dirs for path in pair]
    scored = [m for m in metrics if loaded and all(s is not None and m in s[1] for s in loaded)]
    paired = seed_differences(dirs, scored) if scored else None
    crossed: dict[str, ss.SeedTest] = {}
    p_values: dict[str, float] = {}
    if paired is not None:
        differences, complete = paired
        tested.examples = differences.shape[1]
        p_values = dict(zip(scored, bootstrap_p(differences.mean(axis=0), resamples).tolist(), strict=True))
        runs = [run for pair in pairs for run in pair]
        means = [j for j, metric in enumerate(scored) if complete and _mean_of_examples(runs, metric)]
        if means:
            batch = ss.seed_test(differences[:, :, means])
            crossed = {scored[j]: batch.at(position) for position, j in enumerate(means)}
    for metric in metrics:
        values = cell.paired_values(metric)
        if values:
            if metric in crossed:
                result = crossed[metric]
            else:
                result = ss.seed_test_from_seeds(np.subtract(*zip(*values, strict=True)))
            tested.metrics[metric] = MetricTest(result, p_values.get(metric))
    if primary in tested.metrics:
        values = cell.paired_values(primary)
        if len(values) >= 2:
            ours, theirs = zip(*values, strict=True)
            tested.aso_epsilon = ss.aso_epsilon(ours, theirs)
        tested.seeds_needed, tested.seeds_needed_note = ss.seeds_needed(tested.metrics[primary].seed_aware)
    return tested


def bootstrap_p(differences: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """Two-sided paired bootstrap p-value per column of ``differences`` (examples × metrics).

    Vectorised: a resample is a row of weights (how often each example is drawn, over n), so a
    block of resample means is one matrix product; every metric sees the same resampled examples.
    Fixed RNG seed, so tables are reproducible.
    """
    differences = np.asarray(differences, dtype=float)
    if differences.ndim == 1:
        differences = differences[:, None]
    observed = differences.mean(axis=0)
    extreme = np.zeros(differences.shape[1], dtype=int)
    for weights in _resample_weights(len(differences), resamples, seed):
        means = weights @ differences
        extreme += np.count_nonzero(np.abs(means - observed) >= np.abs(observed), axis=0)
    return (extreme + 1) / (resamples + 1)


@lru_cache(maxsize=2)  # cells of one task share n and the fixed seed: their resamples are drawn once
def _resample_weights(n: int, resamples: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    block = max(1, _CHUNK_ELEMENTS // n)
    weights = []
    for start in range(0, resamples, block):
        rows = min(block, resamples - start)
        indices = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]  # one range of ids per row
        weights.append(np.bincount(indices.ravel(), minlength=rows * n).reshape(rows, n) / n)
    return tuple(weights)
