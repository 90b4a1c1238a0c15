"""Paired per-seed comparisons: the mean difference, its t interval over seeds, the detectable effect and the
verdict on a claim. Pure functions (numpy and math only), tested on cases with known answers."""
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


def mde(std: float, n: int, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest true mean difference a two-sided paired t test over ``n`` seeds at ``level`` detects
    with probability ``power``, for per-seed differences of standard deviation ``std``:
    ``(t_{1-a/2} + t_{power}) * std / sqrt(n)`` with ``n - 1`` degrees of freedom. NaN below 2 seeds."""
    if n < 2 or not math.isfinite(std):
        return float("nan")
    return (t_quantile(0.5 + level / 2, n - 1) + t_quantile(power, n - 1)) * std / math.sqrt(n)


def seeds_needed(effect: float, std: float, level: float = 0.95, power: float = 0.8, most: int = 10_000) -> int | None:
    """The fewest seeds whose :func:`mde` is at most ``|effect|`` (for an effect and seed-to-seed spread as
    observed); None when even ``most`` seeds would not do (an effect of about zero)."""
    effect = abs(effect)
    if not (math.isfinite(effect) and math.isfinite(std)) or effect == 0:
        return None
    if std == 0:
        return 2
    n = 2
    while mde(std, n, level, power) > effect:
        n = n * 2 if n < 64 else n + 64
        if n > most:
            return None
    lo = max(2, n // 2)
    while lo < n:  # the smallest n in (n/2, n] that is enough
        mid = (lo + n) // 2
        lo, n = (mid + 1, n) if mde(std, mid, level, power) > effect else (lo, mid)
    return n


REPRODUCED, SMALLER, CONTRADICTED, INCONCLUSIVE = "reproduced", "smaller than claimed", "contradicted", "inconclusive"
VERDICTS = (REPRODUCED, SMALLER, CONTRADICTED, INCONCLUSIVE)


def verdict(low: float, high: float, paper_effect: float | None = None) -> str:
    """The verdict on an effect signed so that a positive value favours the paper, from its interval
    ``[low, high]`` and, where the paper gives one, its own effect (in the same units):

    - ``contradicted``: the interval lies wholly below 0, against the paper;
    - ``smaller than claimed``: it lies wholly below ``paper_effect`` (it may include 0: what the seeds rule out
      is the paper's size);
    - ``reproduced``: it lies wholly above 0, and not wholly below ``paper_effect``;
    - ``inconclusive``: otherwise, including a missing interval (fewer than 2 seeds)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    if high < 0:
        return CONTRADICTED
    if paper_effect is not None and math.isfinite(paper_effect) and high < paper_effect:
        return SMALLER
    if low > 0:
        return REPRODUCED
    return INCONCLUSIVE


def claim(effects, paper_effect: float | None = None, level: float = 0.95, power: float = 0.8) -> dict:
    """One claim's statistics from its per-seed effects (positive favours the paper): the mean effect, its
    ``level`` t interval, the :func:`mde` of these seeds, the seeds and the :func:`verdict`."""
    effects = np.asarray(effects, dtype=float)
    r = paired_interval(effects, np.zeros_like(effects), level)
    return {"effect": r["mean"], "ci_low": r["low"], "ci_high": r["high"], "std": r["std"],
            "mde": mde(r["std"], r["seeds"], level, power), "n_seeds": r["seeds"],
            "paper_effect": float("nan") if paper_effect is None else float(paper_effect),
            "verdict": verdict(r["low"], r["high"], paper_effect)}


def claim_row(name, dataset, task, metric, method, comparator, effects, paper_effect=None, bucket="") -> dict:
    """A row of the report's ``claims.csv``: what is claimed, where, against what, and :func:`claim`'s figures."""
    return {"claim": name, "dataset": dataset, "task": task, "metric": metric, "method": method,
            "comparator": comparator, "bucket": bucket, **claim(effects, paper_effect)}
