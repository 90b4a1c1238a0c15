"""Paired per-seed comparisons: the mean difference, its t interval over seeds. Pure functions (numpy and
math only), tested on cases with known answers."""
from __future__ import annotations

import math

import numpy as np


def t_cdf(x: float, df: int) -> float:
    """Student's t distribution function, by Simpson's rule on the density (error below 1e-9 for |x| < 50)."""
    if x < 0:
        return 1.0 - t_cdf(-x, df)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    n = 4000
    h = x / n
    grid = np.linspace(0.0, x, n + 1)
    density = np.exp(log_c - (df + 1) / 2 * np.log1p(grid * grid / df))
    weights = np.ones(n + 1)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    return 0.5 + float(h / 3 * (weights * density).sum())


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom, by bisection on :func:`t_cdf`."""
    if not 0 < p < 1 or df < 1:
        raise ValueError(f"need 0 < p < 1 and df >= 1, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def paired_interval(a, b, level: float = 0.95) -> dict:
    """The per-seed differences ``a - b`` (the same seeds, in the same order): their mean, standard
    deviation, and the ``level`` t interval of the mean; the interval is NaN with fewer than 2 seeds."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "std": float("nan"), "low": float("nan"), "high": float("nan"), "seeds": n}
    std = float(d.std(ddof=1))
    half = t_quantile(0.5 + level / 2, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "low": mean - half, "high": mean + half, "seeds": n}
