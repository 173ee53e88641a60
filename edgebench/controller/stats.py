"""The statistics every comparison uses: intervals, a rank test, a shift estimate, change points.

Pure Python, no numpy: the controller's base install has none, and the sample
sizes are small (repeats, batch blocks, runs of one cell: tens, not thousands).

Why a rank test (Mann-Whitney U) with the Hodges-Lehmann estimate, not a
bootstrap (docs/REPORTS.md says the same for users):

- deterministic: the same stores give the same verdict every time, which a CI
  gate (``compare --fail-on-regression``) needs; a bootstrap's answer moves
  with its seed and its resample count;
- exact at the sizes benchmarks have: with 3 repeats a side a bootstrap
  resamples 10 distinct medians and reports intervals far too narrow, while
  the exact U distribution says honestly that 3 against 3 can never reach
  p < 0.05 (the smallest two-sided p is 0.1);
- robust: one run disturbed by a background job moves a rank by one, not a
  mean by its whole error; throughput is not normal (it has a hard ceiling
  and a long slow tail).

Throughputs are compared on a log scale, so that the shift is a ratio
(candidate / baseline) and its interval is the interval of that ratio.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

# Two-sided 95 % Student t quantiles for n-1 degrees of freedom.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101,
        19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}

# Exact U distributions are tabulated up to this many samples per side and used
# when there are no ties; beyond, the normal approximation with tie correction.
EXACT_MAX_N = 40


def t95(dof: int) -> float:
    """Two-sided 95 % quantile of Student's t with ``dof`` degrees of freedom (>= 1)."""
    if dof < 1:
        raise ValueError("t95 needs at least one degree of freedom")
    if dof in _T95:
        return _T95[dof]
    known = sorted(_T95)
    if dof > known[-1]:
        return 1.960
    lower = max(d for d in known if d < dof)
    upper = min(d for d in known if d > dof)
    # interpolate in 1/dof, in which the quantile is nearly linear
    w = (1 / lower - 1 / dof) / (1 / lower - 1 / upper)
    return _T95[lower] + w * (_T95[upper] - _T95[lower])


def mean_ci95(values: Sequence[float]) -> float | None:
    """Half-width of the Student-t 95 % interval of the mean; None below 2 values."""
    if len(values) < 2:
        return None
    return t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def geometric_mean(values: Sequence[float]) -> float | None:
    positive = [v for v in values if v > 0]
    if not positive or len(positive) != len(values):
        return None
    return math.exp(sum(math.log(v) for v in positive) / len(positive))


# --- Mann-Whitney U ------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _u_counts(n: int, m: int) -> tuple[int, ...]:
    """Number of arrangements of n x's and m y's giving each U (ties absent), U = 0 .. n*m."""
    # f(n, m)[u] = f(n - 1, m)[u - m] + f(n, m - 1)[u]: the largest element is a y or an x
    if n == 0 or m == 0:
        return (1,)
    a = _u_counts(n - 1, m)
    b = _u_counts(n, m - 1)
    out = [0] * (n * m + 1)
    for u, c in enumerate(a):
        out[u + m] += c
    for u, c in enumerate(b):
        out[u] += c
    return tuple(out)


def _u_cdf_exact(n: int, m: int) -> list[float]:
    """P(U <= u) for u = 0 .. n*m under the null."""
    counts = _u_counts(n, m)
    total = math.comb(n + m, n)
    out = []
    acc = 0
    for c in counts:
        acc += c
        out.append(acc / total)
    return out


def _norm_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Mid-ranks (1-based) and the sizes of tie groups."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        mid = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = mid
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


@dataclass(frozen=True)
class RankTest:
    u: float  # U of y (the candidate): pairs with y > x, ties count half
    p: float  # two-sided
    exact: bool


def mann_whitney(x: Sequence[float], y: Sequence[float]) -> RankTest | None:
    """Two-sided Mann-Whitney U test of x against y; None when a side is empty."""
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        return None
    ranks, ties = _ranks([*x, *y])
    u_y = sum(ranks[n:]) - m * (m + 1) / 2
    if not ties and max(n, m) <= EXACT_MAX_N:
        cdf = _u_cdf_exact(n, m)
        lo = round(min(u_y, n * m - u_y))
        p = min(1.0, 2 * cdf[lo])
        return RankTest(u_y, p, True)
    mu = n * m / 2
    tie_term = sum(t**3 - t for t in ties) / ((n + m) * (n + m - 1))
    var = n * m / 12 * ((n + m + 1) - tie_term)
    if var <= 0:
        return RankTest(u_y, 1.0, False)
    z = (abs(u_y - mu) - 0.5) / math.sqrt(var)  # continuity correction
    return RankTest(u_y, min(1.0, 2 * (1 - _norm_cdf(max(z, 0.0)))), False)


def _lower_rank(n: int, m: int, alpha: float) -> int:
    """k such that [D(k), D(nm+1-k)] is a >= 1 - alpha interval for the shift; 0 if none exists."""
    if max(n, m) <= EXACT_MAX_N:
        cdf = _u_cdf_exact(n, m)
        k = 0
        while k < len(cdf) and cdf[k] <= alpha / 2:
            k += 1
        return k  # P(U <= k - 1) <= alpha / 2
    z = statistics.NormalDist().inv_cdf(1 - alpha / 2)
    return max(0, math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12)))


@dataclass(frozen=True)
class RatioEstimate:
    """candidate / baseline, from the Hodges-Lehmann shift of log throughputs."""

    ratio: float
    low: float | None  # None: too few samples for an interval at this level
    high: float | None
    p: float | None
    exact: bool
    n_baseline: int
    n_candidate: int


# Above this many pairwise differences (n x m) the Hodges-Lehmann estimate and its
# interval are taken from each side's QUANTILE_POINTS quantiles instead of every
# sample: 200 x 200 differences sort in about 20 ms in pure Python, while two
# sides of 1,600 runs (a cell's history at 100,000 results) would be 2.6 million.
# The rank test's p always uses every sample.
MAX_PAIRS = 40_000
QUANTILE_POINTS = 200


def _quantiles(values: list[float], k: int) -> list[float]:
    s = sorted(values)
    return [s[min(len(s) - 1, int((i + 0.5) * len(s) / k))] for i in range(k)]


def ratio_estimate(baseline: Sequence[float], candidate: Sequence[float], alpha: float = 0.05
                   ) -> RatioEstimate | None:
    """Ratio candidate/baseline with its distribution-free (1 - alpha) interval and the rank test's p.

    The estimate is the median of all pairwise ratios (Hodges-Lehmann on log
    values); the interval is Moses' order-statistic interval of those ratios
    (from quantiles of each side above ``MAX_PAIRS`` pairs).
    """
    x = [math.log(v) for v in baseline if v > 0]
    y = [math.log(v) for v in candidate if v > 0]
    if not x or not y:
        return None
    n, m = len(x), len(y)
    xs, ys = x, y
    if n * m > MAX_PAIRS:
        xs, ys = (_quantiles(v, QUANTILE_POINTS) if len(v) > QUANTILE_POINTS else v for v in (x, y))
    diffs = sorted(b - a for a in xs for b in ys)
    shift = statistics.median(diffs)
    test = mann_whitney(x, y) if n + m > 2 else None
    k = _lower_rank(n, m, alpha)
    low = high = None
    if k >= 1:
        # the k-th of n*m differences, as a position among the (maybe reduced) ones
        i = min(len(diffs) - 1, max(0, math.ceil(k * len(diffs) / (n * m)) - 1))
        low, high = math.exp(diffs[i]), math.exp(diffs[len(diffs) - 1 - i])
    return RatioEstimate(ratio=math.exp(shift), low=low, high=high, p=test.p if test else None,
                         exact=test.exact if test else False, n_baseline=n, n_candidate=m)


# --- paired samples (Wilcoxon signed-rank) ---------------------------------------------


@lru_cache(maxsize=256)
def _w_counts(n: int) -> tuple[int, ...]:
    """Number of sign assignments of ranks 1..n giving each positive-rank sum W = 0 .. n(n+1)/2."""
    counts = [1]
    for r in range(1, n + 1):
        nxt = counts + [0] * r
        for w, c in enumerate(counts):
            nxt[w + r] += c
        counts = nxt
    return tuple(counts)


def _w_cdf(n: int) -> list[float]:
    counts = _w_counts(n)
    total = 2**n
    out, acc = [], 0
    for c in counts:
        acc += c
        out.append(acc / total)
    return out


def signed_rank(diffs: Sequence[float]) -> RankTest | None:
    """Two-sided Wilcoxon signed-rank test that the differences centre on 0 (zeros dropped)."""
    d = [v for v in diffs if v != 0.0]
    n = len(d)
    if n == 0:
        return RankTest(0.0, 1.0, True) if diffs else None
    ranks, ties = _ranks([abs(v) for v in d])
    w = sum(r for r, v in zip(ranks, d) if v > 0)
    if not ties and n <= EXACT_MAX_N and len(d) == len(diffs):
        cdf = _w_cdf(n)
        lo = round(min(w, n * (n + 1) / 2 - w))
        return RankTest(w, min(1.0, 2 * cdf[lo]), True)
    mu = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in ties) / 48
    if var <= 0:
        return RankTest(w, 1.0, False)
    z = (abs(w - mu) - 0.5) / math.sqrt(var)
    return RankTest(w, min(1.0, 2 * (1 - _norm_cdf(max(z, 0.0)))), False)


def paired_ratio_estimate(baseline: Sequence[float], candidate: Sequence[float], alpha: float = 0.05
                          ) -> RatioEstimate | None:
    """candidate_i / baseline_i, pair by pair: the Hodges-Lehmann estimate of the log ratios (the median of
    their Walsh averages), its signed-rank interval, and the signed-rank test's p.

    For interleaved runs (A, B, A, B, ... on one box): each pair shares the machine's conditions, so
    the load that varies between pairs cancels, where an unpaired test must see through it.
    """
    pairs = [(a, b) for a, b in zip(baseline, candidate) if a > 0 and b > 0]
    if not pairs:
        return None
    d = [math.log(b) - math.log(a) for a, b in pairs]
    n = len(d)
    walsh = sorted((d[i] + d[j]) / 2 for i in range(n) for j in range(i, n))
    test = signed_rank(d) if n >= 2 else None
    low = high = None
    if n <= EXACT_MAX_N:
        cdf = _w_cdf(n)
        k = 0
        while k < len(cdf) and cdf[k] <= alpha / 2:
            k += 1
    else:
        z = statistics.NormalDist().inv_cdf(1 - alpha / 2)
        k = max(0, math.floor(n * (n + 1) / 4 - z * math.sqrt(n * (n + 1) * (2 * n + 1) / 24)))
    if 1 <= k <= len(walsh):
        low, high = math.exp(walsh[k - 1]), math.exp(walsh[len(walsh) - k])
    return RatioEstimate(ratio=math.exp(statistics.median(walsh)), low=low, high=high,
                         p=test.p if test else None, exact=test.exact if test else False, n_baseline=n,
                         n_candidate=n)


# --- change points --------------------------------------------------------------------


@dataclass(frozen=True)
class ChangePoint:
    index: int  # first element of the new level
    ratio: float  # median after / median before (Hodges-Lehmann)
    p: float


def change_points(values: Sequence[float], *, min_before: int = 5, min_after: int = 3, alpha: float = 0.01,
                  min_effect: float = 0.05) -> list[ChangePoint]:
    """Level shifts in a series of throughputs (oldest first), by binary segmentation.

    Each segment is split where the log-mean shift statistic (the CUSUM
    maximum) peaks; the split is kept when the rank test between the two
    sides gives p < ``alpha`` and the ratio differs from 1 by at least
    ``min_effect``, and both sides hold enough runs. Returns the changes in
    series order.
    """
    logs = [math.log(v) for v in values]
    found: list[ChangePoint] = []

    def split(lo: int, hi: int) -> None:  # [lo, hi)
        n = hi - lo
        if n < min_before + min_after:
            return
        prefix = [0.0]
        for v in logs[lo:hi]:
            prefix.append(prefix[-1] + v)
        best, best_k = -1.0, -1
        for k in range(min_before, n - min_after + 1):
            mean_before = prefix[k] / k
            mean_after = (prefix[n] - prefix[k]) / (n - k)
            score = abs(mean_after - mean_before) * math.sqrt(k * (n - k) / n)
            if score > best:
                best, best_k = score, k
        if best_k < 0:
            return
        cut = lo + best_k
        before, after = logs[lo:cut], logs[cut:hi]
        # decide on the cheap figures (the rank test, the medians' ratio); the Hodges-Lehmann
        # ratio, a sort of up to 40,000 differences, only for a kept split
        test = mann_whitney(before, after)
        shift = math.exp(statistics.median(after) - statistics.median(before))
        if test is None or test.p >= alpha or abs(shift - 1) < min_effect:
            return
        est = ratio_estimate([math.exp(v) for v in before], [math.exp(v) for v in after], alpha)
        found.append(ChangePoint(cut, est.ratio if est else shift, test.p))
        split(lo, cut)
        split(cut, hi)

    split(0, len(logs))
    return sorted(found, key=lambda c: c.index)
