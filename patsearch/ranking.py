"""Rank agreement and sampling noise: Kendall's tau-b, Spearman's rho, and the binomial standard error of a top-1.

The latency table's fidelity and the proxy's fidelity are both judged by how well one ordering predicts another,
so both use these. scipy's implementations are used when scipy is installed (it is not a dependency); the numpy
fallbacks compute the same statistics (tau-b with ties, rho as Pearson's r of average ranks).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np


def _pair(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"rank correlation needs two 1-D sequences of equal length, got {x.shape} and {y.shape}")
    return x, y


def _scipy_statistic(name: str, x: np.ndarray, y: np.ndarray) -> float | None:
    """``scipy.stats.<name>(x, y).statistic``, or None when scipy is not installed."""
    try:
        from scipy import stats
    except ImportError:
        return None
    with warnings.catch_warnings():  # constant input: scipy warns and returns NaN, as the fallbacks do
        warnings.simplefilter("ignore")
        return float(getattr(stats, name)(x, y).statistic)


def kendall_tau(a: Sequence[float], b: Sequence[float], *, use_scipy: bool = True) -> float:
    """Kendall's tau-b (ties handled); NaN when either sequence is constant or shorter than 2."""
    x, y = _pair(a, b)
    if len(x) < 2:
        return float("nan")
    if use_scipy and (value := _scipy_statistic("kendalltau", x, y)) is not None:
        return value
    iu = np.triu_indices(len(x), k=1)
    dx = np.sign(x[:, None] - x[None, :])[iu]
    dy = np.sign(y[:, None] - y[None, :])[iu]
    nx, ny = float((dx != 0).sum()), float((dy != 0).sum())
    if nx == 0 or ny == 0:
        return float("nan")
    return float((dx * dy).sum()) / math.sqrt(nx * ny)


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks from 1, tied values sharing the mean of their positions (what Spearman's rho ranks by)."""
    x = np.asarray(values, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    sorted_x = x[order]
    start = 0
    while start < len(x):
        end = start
        while end + 1 < len(x) and sorted_x[end + 1] == sorted_x[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float], *, use_scipy: bool = True) -> float:
    """Spearman's rho (Pearson's r of average ranks); NaN when either sequence is constant or shorter than 2."""
    x, y = _pair(a, b)
    if len(x) < 2:
        return float("nan")
    if use_scipy and (value := _scipy_statistic("spearmanr", x, y)) is not None:
        return value
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx * rx).sum()) * float((ry * ry).sum()))
    return float((rx * ry).sum()) / denom if denom else float("nan")


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` (a fraction) measured on ``n`` independent images: sqrt(p(1-p)/n)."""
    if n < 1:
        raise ValueError(f"need at least one image, got n={n}")
    p = min(max(float(p), 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / n)


def pooled_std(groups: Sequence[Sequence[float]]) -> float | None:
    """The within-group standard deviation pooled over groups (e.g. one network's scores over seeds): sqrt of
    the within-group sums of squares over their degrees of freedom; groups of one value add nothing. None
    without a degree of freedom."""
    dof = sum(len(g) - 1 for g in groups if len(g) > 1)
    if dof < 1:
        return None
    ss = sum(float(((np.asarray(g, dtype=float) - np.mean(g)) ** 2).sum()) for g in groups if len(g) > 1)
    return math.sqrt(ss / dof)


def bootstrap_interval(a: Sequence[float], b: Sequence[float], statistic=None, *, resamples: int = 2000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of a rank statistic (default Kendall's tau-b) over the paired items.

    With 20 networks one tau moves by about 0.1 when a few networks are swapped for others like them: the
    interval says how far a measured tau can be trusted. Resamples whose statistic is undefined (all ties) are
    dropped. None with fewer than 3 pairs. With few pairs and ties the resampled statistic takes a handful of
    lopsided values and the percentile interval can leave out the estimate itself (7 networks, 6 tied: tau 0.53,
    interval 0.55-0.89): it is then widened to include the estimate."""
    x, y = _pair(a, b)
    if len(x) < 3:
        return None
    if not 0 < level < 1 or resamples < 10:
        raise ValueError(f"need 0 < level < 1 and resamples >= 10, got {level} and {resamples}")
    statistic = statistic or (lambda u, v: kendall_tau(u, v, use_scipy=False))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, len(x), len(x))
        v = statistic(x[idx], y[idx])
        if math.isfinite(v):
            values.append(v)
    if not values:
        return None
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    estimate = statistic(x, y)
    if math.isfinite(estimate):
        lo, hi = min(lo, estimate), max(hi, estimate)
    return float(lo), float(hi)


def describe_interval(interval: Sequence[float] | None, level: int = 95) -> str:
    """`` (95% interval 0.34 to 0.78)`` for a (low, high) pair, e.g. a report's ``kendall_tau_ci95``; empty for
    None or anything that is not a pair (reports written before the interval existed)."""
    if not isinstance(interval, (list, tuple)) or len(interval) != 2:
        return ""
    return f" ({level}% interval {interval[0]:.2f} to {interval[1]:.2f})"


def describe_figure(value: float | None, digits: int = 2) -> str:
    """A figure for a sentence, to the precision :func:`describe_interval` shows (so that a tau and its interval
    read alike), or ``-`` when it is missing (None, or not finite)."""
    if value is None or not math.isfinite(float(value)):
        return "-"
    return f"{float(value):.{digits}f}"


def describe_seed_std(value: float | None, seeds: int | None = None) -> str:
    """A seed-to-seed standard deviation in points, or ``-`` and why it is missing."""
    if value is not None:
        return f"{describe_figure(value)} points"
    if seeds is not None and seeds < 2:
        return "- (one proxy seed: --seeds 0,1 measures it)"
    return "- (no network trained on every seed yet)"


__all__ = ["kendall_tau", "spearman", "average_ranks", "binomial_se", "bootstrap_interval", "describe_figure",
           "describe_interval", "describe_seed_std", "pooled_std"]
