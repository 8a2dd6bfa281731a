"""Seed-aware significance of RepCali − baseline: a crossed seeds × examples test, ASO, seeds needed.

Pure functions on numpy arrays, no file I/O. Two things make a RepCali run score differently from
its baseline besides the block itself:

- **training randomness** (the *seed*): initialisation of the block, data order, dropout. Another
  seed of the same setting gives another model, whose mean over the test set moves by an amount
  that, for fine-tuned language models, is often larger than the effect under study;
- **test-set sampling** (the *examples*): the test set is one sample of the task's examples; another
  sample would give another mean.

The paper's question, "does RepCali help this backbone on this task?", is about both: seeds not
run and examples not in the test set. The tables' first test (:func:`.significance.bootstrap_p`,
a paired bootstrap over examples of the seed-averaged differences) knows only the second; with a
large seed variance it calls almost any difference significant (37-45 % false positives in the
simulations below). It stays, as the CSV's ``p_test_set_only``; :mod:`.significance` decides which
of the tests here each metric of a cell gets.

**The seed-aware test** (:func:`seed_test`). Data: ``d[s, i]`` = RepCali − baseline for seed ``s``
(runs paired by seed number) on test example ``i`` (paired by id; every seed on the same test set,
so seeds and examples are *crossed*). Model: ``d[s, i] = Δ + a_s + b_i + e_si``, with a random seed
effect ``a`` (variance σ²_seed), a random example effect ``b`` that all seeds share (σ²_ex) and a
seed × example interaction ``e`` (σ²_int). The mean Δ̂ of ``d`` then has

    Var(Δ̂) = σ²_seed / k + σ²_ex / n + σ²_int / (k n)

for ``k`` seeds and ``n`` examples (the crossed random-effects variance: Searle, Casella &
McCulloch 1992; Owen 2007). It is estimated without bias from the two-way ANOVA mean squares of
``d`` as two parts: the **seeds' part** ``MS_seed / (k n)``, the variance of the per-seed means over
``k`` (what a paired t-test over seeds uses; k − 1 degrees of freedom), and the **test set's part**
``(MS_ex − MS_int) / (k n)``, floored at 0 (n − 1 degrees of freedom, so nearly exact). The
statistic ``T = Δ̂ / SE`` is referred to the distribution it has under no effect: with ``w`` the
seeds' share of SE², ``√w · t_{k−1} + √(1 − w) · N(0, 1)``, Fisher's Behrens–Fisher distribution
with the test set's side known (Fisher 1935; Kendall & Stuart, ch. 21). p-value and 95 % interval
``Δ̂ ± c · SE`` come from it (a one-dimensional integral, by quadrature), so p < 0.05 exactly when
the interval excludes 0. When the seeds dominate (w → 1) it is the paired t-test over seeds; when
the test set dominates (w → 0), the normal test of the example bootstrap.

Why this reference and not another, at k = 3 (checked by the simulations of
``tests/test_seed_significance.py``: no effect, seed std 4-6× the test set's standard error;
star rates 4.8-5.0 % at k = 3, 5, 10, where the example-only bootstrap gives 37-45 %; the
percentages for the alternatives below come from the same kind of simulation):

- a bootstrap over 3 seeds sees at most 10 distinct resamples, estimates the seed variance
  ×(k − 1)/k = ⅔ too small and has normal-like tails where t with 2 degrees of freedom applies
  (t_{2, .975} = 4.30, not 1.96): 25 % false positives resampling the seeds' means, 12 % with the
  two-level (seeds, then examples) percentile bootstrap;
- an exact randomisation test (flipping the sign of each seed's difference) cannot go below
  p = 2/2³ = 0.25 with 3 seeds: never a star;
- Student's t with Satterthwaite's (1946) degrees of freedom for the same SE is anti-conservative
  at k = 3 (7-8 % false positives when seeds and test set both matter: its degrees of freedom are
  large exactly when the seeds' part happens to be small, i.e. when T is large);
- t with k − 1 degrees of freedom is valid but conservative (≤ 1 % when the test set dominates);
- the Behrens–Fisher reference stays at or below 5 % in all these cases (it is known to be
  conservative, Robinson 1976) and keeps much of the power that t with k − 1 degrees of freedom
  gives up (52 % against 43 % at k = 3 for an effect where seeds and test set matter alike).

It assumes roughly normal seed effects, as any t-test on 3 seeds must. Without per-example
scores, or for a metric that is not a mean of them (corpus BLEU), :func:`seed_test_from_seeds` is
the paired t-test over the per-seed values, and its method says that the test set's sampling is
not included.

**Too few seeds.** With fewer than :data:`MIN_SEEDS` paired seeds a result still has Δ, interval
and p (2 seeds), but no star: ``star`` is False and ``state`` is ``"n < 3 seeds"``. With no spread
at all (identical runs) p and the interval are NaN: untestable, no star.

**ASO** (:func:`aso_epsilon`): Almost Stochastic Order (Dror, Shlomov & Reichart 2019; del Barrio,
Cuesta-Albertos & Matrán 2018) as ``deepsig.aso`` computes it (Ulmer, Hardmeier & Frellsen 2022),
on the per-seed scores of each side (unpaired). ε_min bounds (at 95 % confidence) how far RepCali's
score distribution is from dominating the baseline's: 0 = better at every quantile, 0.5 =
undecided, 1 = worse at every quantile. Ulmer et al. recommend claiming dominance at
ε_min < τ = 0.2 (:data:`ASO_TAU`); 0.5 has a high false-positive rate. With 3 seeds per side ASO
is not calibrated either (no effect: ε_min < 0.2 in ≈ 11 % of cases, < 0.5 in ≈ 24 %), so it is a
second view, never the star. The code is deepsig's algorithm vectorised over the bootstrap
iterations (deepsig 1.2.8 takes ~10 s per call at its default 1,000 iterations and ~5 s to import):
given the same random draws it returns deepsig's value (the tests check it); the draws come from a
fixed seed, so tables are reproducible.

**Seeds needed** (:func:`seeds_needed`): the number of paired seeds (same test set) at which this
test, two-sided at α = 0.05, would detect the observed Δ with 80 % power, taking the observed
variance components as true (:func:`power`; for per-seed values only it is the paired t-test's
power, from the noncentral t). A planning figure, not evidence: with 3 seeds the seeds' variance
rests on 2 degrees of freedom, and an observed Δ used as the true effect is optimistic when it is
large by chance (Hoenig & Heisey 2001).

References: Efron & Tibshirani (1993), An Introduction to the Bootstrap; Fisher (1935), The
fiducial argument in statistical inference, Ann. Eugen. 6:391-398; Kendall & Stuart (1973), The
Advanced Theory of Statistics, vol. 2, ch. 21 (the Behrens–Fisher distribution); Satterthwaite (1946),
Biometrics Bulletin 2(6):110-114; Robinson (1976), Properties of Student's t and of the
Behrens-Fisher solution to the two means problem, Ann. Statist. 4(5):963-971; Searle, Casella &
McCulloch (1992), Variance Components, Wiley; Owen (2007), The pigeonhole bootstrap, Ann. Appl.
Stat. 1(2):386-411; del Barrio, Cuesta-Albertos & Matrán (2018), An optimal transportation
approach for assessing almost stochastic order; Dror, Shlomov & Reichart (2019), Deep Dominance -
How to Properly Compare Deep Neural Models, ACL; Ulmer, Hardmeier & Frellsen (2022),
deep-significance, arXiv:2204.06815; Hoenig & Heisey (2001), The abuse of power, Am. Stat.
55(1):19-24.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from scipy import special

ALPHA = 0.05
MIN_SEEDS = 3  # fewer paired seeds: no star, whatever the p-value
FEW_SEEDS = f"n < {MIN_SEEDS} seeds"
POWER = 0.8
MAX_SEEDS = 1000  # seeds_needed looks no further
ASO_TAU = 0.2  # Ulmer et al. (2022): claim dominance at ε_min < 0.2
ASO_CONFIDENCE = 0.95
ASO_RESAMPLES = 1000
ASO_DT = 0.005
ASO_SEED = 0

CROSSED = "seeds × examples crossed random effects (ANOVA variance components), Behrens–Fisher reference"
SEEDS_ONLY = "paired t-test over per-seed values (test-set sampling not included)"


_PER_TEST = ("delta", "se", "t", "ci_low", "ci_high", "p", "seed_share", "seed_mean_var", "example_var")


class SeedTest(NamedTuple):
    """One seed-aware test; arrays over the batch axes the input had after (seeds, examples)."""

    delta: np.ndarray  # Δ̂, the mean difference
    se: np.ndarray  # standard error of Δ̂: seeds and test set
    t: np.ndarray  # Δ̂ / se
    ci_low: np.ndarray
    ci_high: np.ndarray
    p: np.ndarray  # two-sided
    seed_share: np.ndarray  # the seeds' share of se²: w in the reference distribution
    seed_mean_var: np.ndarray  # variance of one seed's mean over its test set: σ²_seed + σ²_int / n
    example_var: np.ndarray  # σ²_ex, the example effect shared by the seeds (0 without per-example scores)
    seeds: int
    examples: int  # 1: per-seed values only
    alpha: float
    method: str

    @property
    def star(self) -> np.ndarray:
        """Significant at ``alpha`` with at least :data:`MIN_SEEDS` seeds."""
        return (self.seeds >= MIN_SEEDS) & (self.p < self.alpha)

    @property
    def state(self) -> str:
        """``""``, or :data:`FEW_SEEDS` when there are too few seeds for a star."""
        return FEW_SEEDS if self.seeds < MIN_SEEDS else ""

    def at(self, index) -> SeedTest:
        """The test of one batch element (e.g. one metric of a batched call)."""
        return self._replace(**{name: getattr(self, name)[index] for name in _PER_TEST})


def seed_test(differences: np.ndarray, alpha: float = ALPHA) -> SeedTest:
    """Seed-aware test of the mean of ``differences`` (seeds × examples × any batch axes, e.g. metrics).

    ``differences[s, i]``: RepCali − baseline of seed ``s`` on example ``i``, every seed on the same
    examples (complete: no NaN). Closed form over all batch axes at once (a few passes over the
    array, no resampling).
    """
    d = np.asarray(differences, dtype=float)
    if d.ndim < 2:
        raise ValueError("differences must be seeds × examples (× batch); per-seed values: seed_test_from_seeds")
    k, n = d.shape[:2]
    if k == 0 or n == 0:
        raise ValueError("no seeds or no examples")
    if n == 1:
        return seed_test_from_seeds(d[:, 0], alpha)
    seed_means, example_means = d.mean(axis=1), d.mean(axis=0)
    grand = seed_means.mean(axis=0)
    if k == 1:  # nothing separates the seed from the interaction: untestable
        nan = np.full_like(grand, np.nan)
        return _result(grand, nan, nan, 1, n, alpha, CROSSED)
    ms_seed = n * ((seed_means - grand) ** 2).sum(axis=0) / (k - 1)
    ms_example = k * ((example_means - grand) ** 2).sum(axis=0) / (n - 1)
    residual = d - seed_means[:, None] - example_means[None] + grand
    ms_interaction = (residual**2).sum(axis=(0, 1)) / ((k - 1) * (n - 1))
    example_var = np.maximum(ms_example - ms_interaction, 0.0) / k
    return _result(grand, ms_seed / n, example_var, k, n, alpha, CROSSED)


def seed_test_from_seeds(seed_differences: np.ndarray, alpha: float = ALPHA) -> SeedTest:
    """The paired t-test over per-seed differences (seeds × any batch axes), e.g. of corpus BLEU.

    Used when there are no per-example scores or the metric is not a mean of them: the test-set
    sampling cannot be estimated and is not included (the method says so).
    """
    d = np.asarray(seed_differences, dtype=float)
    if d.ndim < 1 or len(d) == 0:
        raise ValueError("no seeds")
    k = len(d)
    seed_var = d.var(axis=0, ddof=1) if k > 1 else np.full(d.shape[1:], np.nan)
    return _result(d.mean(axis=0), seed_var, np.zeros_like(seed_var), k, 1, alpha, SEEDS_ONLY)


def _result(delta, seed_mean_var, example_var, k, n, alpha, method) -> SeedTest:
    variance, share = _variance_share(k, n, seed_mean_var, example_var)
    se = np.sqrt(variance)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = delta / se
    if k < 2:
        p = half = np.full_like(variance, np.nan)
    else:  # no spread at all (identical runs, a constant metric): nothing to refer Δ̂ to, untestable
        p = np.where(se > 0, _tail(np.abs(t), share, k - 1), np.nan)
        half = np.where(se > 0, _critical(share, k - 1, alpha) * se, np.nan)
    return SeedTest(
        *(np.asarray(x, dtype=float) for x in (delta, se, t, delta - half, delta + half, p, share)),
        *(np.asarray(x, dtype=float) for x in (seed_mean_var, example_var)),
        seeds=k,
        examples=n,
        alpha=alpha,
        method=method,
    )


def _variance_share(seeds, examples, seed_mean_var, example_var):
    """Var(Δ̂) with ``seeds`` × ``examples``, and the seeds' share of it (1 where it is 0)."""
    seed_part = seed_mean_var / seeds
    variance = seed_part + example_var / examples
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(variance > 0, seed_part / variance, 1.0)
    return variance, share


# The reference distribution. T = Δ̂ / SE, with SE² = ĉ_seed + ĉ_ex, where ĉ_seed = c_seed·W and
# W ~ χ²_{k−1} / (k − 1) (k − 1 degrees of freedom), while ĉ_ex rests on n − 1 ≫ k − 1 and is
# taken as known. Under H0 and normal effects T has Fisher's Behrens–Fisher distribution with
# ν = (k − 1, ∞): B = √w·T_{k−1} + √(1 − w)·Z, w = the seeds' share of SE², i.e. given W, a normal
# with variance w / W + 1 − w. Its tail is a one-dimensional integral over W, done by Gauss–Legendre
# quadrature on the probability scale (u = v^{k−1} makes the integrand smooth near W = 0, where
# the t's heavy tails come from); w = 1 is Student's t, computed exactly.
_NODES = 64


@lru_cache(maxsize=1)
def _legendre() -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights on [0, 1] (numpy's: scipy's roots_legendre imports scipy.linalg, ~0.2 s)."""
    v, q = np.polynomial.legendre.leggauss(_NODES)
    return (v + 1) / 2, q / 2


@lru_cache(maxsize=MAX_SEEDS)
def _chi2_nodes(df: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes W_j and weights q_j with E f(W) ≈ Σ q_j f(W_j) for W = χ²_df / df."""
    v, q = _legendre()
    u = v**df
    return 2 * special.gammaincinv(df / 2, u) / df, q * df * v ** (df - 1)


def _scales(share: np.ndarray, df: int) -> tuple[np.ndarray, np.ndarray]:
    """Per node, the standard deviation of B given W: √(w / W + 1 − w); and the weights."""
    nodes, weights = _chi2_nodes(df)
    share = np.asarray(share, dtype=float)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(nodes > 0, share / nodes, np.where(share > 0, np.inf, 0.0))
    return np.sqrt(ratio + 1 - share), weights


def _tail(t: np.ndarray, share: np.ndarray, df: int) -> np.ndarray:
    """P(|B| ≥ t) for B of the Behrens–Fisher distribution with ν = (df, ∞) and seed share ``share``."""
    t, share = np.broadcast_arrays(np.asarray(t, dtype=float), np.asarray(share, dtype=float))
    scales, weights = _scales(share, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        mixed = (2 * special.ndtr(-t[..., None] / scales)) @ weights
    return np.where(share >= 1, 2 * special.stdtr(df, -t), np.minimum(mixed, 1.0))


def _critical(share: np.ndarray, df: int, alpha: float) -> np.ndarray:
    """The c with P(|B| ≥ c) = alpha: between the normal's and Student's t's two-sided quantiles.

    Newton's method (the two-sided tail is convex and decreasing for c > 0), from the t quantile with
    Satterthwaite's degrees of freedom (k − 1) / w², which is close: a few steps.
    """
    share = np.asarray(share, dtype=float)
    if np.all(share >= 1):  # Student's t
        return special.stdtrit(df, 1 - alpha / 2) + np.zeros_like(share)
    scales, weights = _scales(share, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = special.stdtrit(np.minimum(df / share**2, 1e6), 1 - alpha / 2)
        for _ in range(30):
            z = c[..., None] / scales
            excess = (2 * special.ndtr(-z)) @ weights - alpha
            slope = (2 * np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi) / scales) @ weights
            step = np.where(slope > 0, excess / slope, 0.0)
            c = c + step
            if np.all(np.abs(step) <= 1e-12 * c):
                break
    return np.where(share >= 1, special.stdtrit(df, 1 - alpha / 2), c)


def power(
    seeds: int,
    effect: float,
    seed_mean_var: float,
    example_var: float = 0.0,
    examples: int = 1,
    alpha: float = ALPHA,
) -> float:
    """Power of :func:`seed_test` with ``seeds`` paired seeds for a true Δ = ``effect``.

    The variance components are those of :class:`SeedTest` (``seed_mean_var`` = σ²_seed + σ²_int / n
    for a test set of ``examples``, ``example_var`` = σ²_ex). Power = P(|T| > c) with T = (Z + δ) / s(W),
    δ = Δ / SE, s(W)² = w·W + 1 − w and c the test's critical value at the expected seed share w:
    with per-seed values only (w = 1) it is exactly the paired t-test's power (noncentral t).
    """
    if seeds < 2:
        return float("nan")
    variance, share = _variance_share(seeds, examples, seed_mean_var, example_var)
    if variance == 0:
        return 1.0 if effect != 0 else alpha
    shift, critical = abs(effect) / np.sqrt(variance), float(_critical(share, seeds - 1, alpha))
    if share >= 1:  # Student's t: the noncentral t, where scipy's nctdtr returns a number
        exact = 1 - special.nctdtr(seeds - 1, shift, critical) + special.nctdtr(seeds - 1, shift, -critical)
        if np.isfinite(exact):
            return float(exact)
    nodes, weights = _chi2_nodes(seeds - 1)
    threshold = critical * np.sqrt(share * nodes + 1 - share)
    return float((special.ndtr(-threshold - shift) + special.ndtr(-threshold + shift)) @ weights)


def seeds_needed(
    result: SeedTest, target: float = POWER, alpha: float = ALPHA, max_seeds: int = MAX_SEEDS
) -> tuple[int | None, str]:
    """Paired seeds (same test set) at which :func:`seed_test` has ``target`` power for the observed Δ.

    ``result`` must be one test (no batch axes). Never fewer than :data:`MIN_SEEDS`, the fewest that
    can earn a star. ``(None, reason)`` when it cannot be said: fewer than 2 seeds, Δ = 0, no spread
    observed, or not reached by ``max_seeds`` (the test set's own sampling variance may keep the
    power below target however many seeds run).
    """
    delta, seed_var, example_var = float(result.delta), float(result.seed_mean_var), float(result.example_var)
    if result.seeds < 2 or not np.isfinite(seed_var):
        return None, "unknown: needs ≥ 2 seeds to estimate the seed spread"
    if delta == 0:
        return None, "unknown: Δ = 0, no effect to detect"
    if seed_var == 0 and example_var == 0:
        return None, "unknown: no spread observed"

    def enough(seeds: int) -> bool:
        return power(seeds, delta, seed_var, example_var, result.examples, alpha) >= target

    # Power rises with the seeds. Start where a z-test with these variances would reach the target
    # (close, not a bound), search exponentially down or up from there, then bisect.
    room = delta**2 / (special.ndtri(1 - alpha / 2) + special.ndtri(target)) ** 2 - example_var / result.examples
    guess = max_seeds if room <= 0 else int(np.clip(np.ceil(seed_var / room), MIN_SEEDS, max_seeds))
    if enough(guess):
        high, step = guess, 1
        while True:
            low = high - step
            if low < MIN_SEEDS:
                low = MIN_SEEDS - 1  # stands for "not enough": fewer seeds never earn a star
                break
            if not enough(low):
                break
            high, step = low, 2 * step
    else:
        low, step = guess, 1
        while True:
            if low >= max_seeds:
                return None, f"unknown: {target:.0%} power not reached with {max_seeds} seeds"
            high = min(low + step, max_seeds)
            if enough(high):
                break
            low, step = high, 2 * step
    while high - low > 1:  # enough(high), not enough(low)
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high, ""


def aso_epsilon(
    scores_a,
    scores_b,
    confidence: float = ASO_CONFIDENCE,
    resamples: int = ASO_RESAMPLES,
    dt: float = ASO_DT,
    seed: int = ASO_SEED,
) -> float:
    """ε_min of Almost Stochastic Order of ``scores_a`` (RepCali, per seed) over ``scores_b`` (baseline).

    ``deepsig.aso(scores_a, scores_b, confidence_level=confidence, num_bootstrap_iterations=resamples,
    dt=dt)``, vectorised; the bootstrap's uniform draws come from ``numpy.random.default_rng(seed)``.
    Below :data:`ASO_TAU`: RepCali almost stochastically dominates.
    """
    a, b = np.asarray(scores_a, dtype=float).ravel(), np.asarray(scores_b, dtype=float).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("ASO needs scores on both sides")
    uniforms = np.random.default_rng(seed).random((resamples, a.size + b.size))
    return _aso(a, b, uniforms[:, : a.size], uniforms[:, a.size :], dt, confidence)


def _aso(a, b, uniforms_a, uniforms_b, dt, confidence) -> float:
    """deepsig's ASO for given bootstrap draws (``resamples`` × len per side, uniform on [0, 1))."""
    index_a, index_b, weight, violation_weight = _grid(a.size, b.size, dt)
    sorted_a, sorted_b = np.sort(a), np.sort(b)
    observed = _violation_ratio(sorted_a[index_a], sorted_b[index_b], weight, violation_weight)
    # A bootstrap draw is the empirical quantile function at uniform points, i.e. sampling with replacement.
    draws_a = np.sort(sorted_a[_quantile_index(a.size, uniforms_a)], axis=1)
    draws_b = np.sort(sorted_b[_quantile_index(b.size, uniforms_b)], axis=1)
    samples = _violation_ratio(draws_a[:, index_a], draws_b[:, index_b], weight, violation_weight)
    const = np.sqrt(a.size * b.size / (a.size + b.size))
    sigma = np.std(const * (samples - observed))
    return float(np.clip(observed - (1 / const) * sigma * special.ndtri(1 - confidence), 0, 1))


def _quantile_index(size: int, p: np.ndarray) -> np.ndarray:
    """Index into sorted scores of the empirical quantile at ``p`` (deepsig: ``ceil(size·p) − 1``, clipped)."""
    return np.clip(np.ceil(size * p).astype(int) - 1, 0, size - 1)


@lru_cache(maxsize=64)
def _grid(size_a: int, size_b: int, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """deepsig's integration grid t = dt, 2·dt, … < 1, collapsed: empirical quantile functions are steps.

    Runs of grid points where both quantile indices stay the same become one segment: the indices
    per segment, its weight (points × dt) and the weight the violation integral gives it (deepsig
    leaves the grid's first point out of that integral).
    """
    t = np.arange(dt, 1, dt)
    index_a, index_b = _quantile_index(size_a, t), _quantile_index(size_b, t)
    starts = np.flatnonzero(np.r_[True, (np.diff(index_a) != 0) | (np.diff(index_b) != 0)])
    points = np.diff(np.r_[starts, t.size])
    skipped = np.r_[1, np.zeros(starts.size - 1, dtype=int)]
    return index_a[starts], index_b[starts], points * dt, (points - skipped) * dt


def _violation_ratio(f: np.ndarray, g: np.ndarray, weight: np.ndarray, violation_weight: np.ndarray) -> np.ndarray:
    """ε_W2 (Dror et al. 2019, eq. 4-5) from the quantiles of A (``f``) and B (``g``) per grid segment.

    The squared Wasserstein-2 distance's share where B's quantile is above A's; 0.5 where A = B.
    """
    squared = (g - f) ** 2
    distance = squared @ weight
    violation = np.where(f < g, squared, 0.0) @ violation_weight
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(distance == 0, 0.5, violation / distance)
