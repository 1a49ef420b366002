"""Groups of patients by a feature: median, tertiles, a prespecified cut-off, or an optimal
cut-point by maximally selected log-rank statistics.

The optimal cut-point is exploratory: choosing the cut that best separates the curves inflates
the log-rank statistic, so its plain p-value is wrong. The maximally selected statistic follows
R's ``maxstat`` (Hothorn & Lausen 2003, ``smethod = "LogRank"``): log-rank scores
a_i = delta_i - sum_{t_j <= t_i} delta_j / (N - rank_j + 1), candidate cuts at every distinct
value between the ``minprop`` and ``maxprop`` quantiles, the standardised sum of scores of the
patients at or below the cut, and its maximum M over cuts. The multiplicity-corrected p-value is
Lausen & Schumacher's (1992) approximation (``"Lau92"``) or the improved Bonferroni bound of
Lausen, Sauerbrei & Schumacher (1994) (``"Lau94"``, the default here), both as in maxstat;
no library in Python has them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import norm, rankdata

METHODS = ("median", "tertiles", "cutoff", "maxstat")


def logrank_scores(time, event) -> np.ndarray:
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=float)
    n = len(time)
    rank = rankdata(time, method="max").astype(int)   # exactRankTests' irank: tied times share the largest rank
    order = np.argsort(time, kind="mergesort")
    fact = event / (n - rank + 1)
    cum = np.cumsum(fact[order])
    return event - cum[rank - 1]


def p_lausen92(b: float, minprop: float = 0.1, maxprop: float = 0.9) -> float:
    if b < 1:
        return 1.0
    db = norm.pdf(b)
    p = 4 * db / b + db * (b - 1 / b) * math.log((maxprop * (1 - minprop)) / ((1 - maxprop) * minprop))
    return max(p, 0.0)


def p_lausen94(b: float, n: int, m: np.ndarray) -> float:
    if len(m) <= 1:
        d = 0.0
    else:
        m1, m2 = m[:-1].astype(float), m[1:].astype(float)
        t = np.sqrt(1 - m1 * (n - m2) / ((n - m1) * m2))
        d = float(np.sum(1 / math.pi * math.exp(-b * b / 2) * (t - (b * b / 4 - 1) * t**3 / 6)))
    return min(1.0, 1 - (norm.cdf(b) - norm.cdf(-b)) + d)


def maxstat(time, event, x, minprop: float = 0.1, maxprop: float = 0.9, pmethod: str = "Lau94") -> dict:
    """{'cutpoint', 'statistic', 'p', 'n_cuts'}: patients with x <= cutpoint form the low group."""
    x = np.asarray(x, dtype=float)
    y = logrank_scores(time, event)
    order = np.argsort(x, kind="mergesort")
    xs, ys = x[order], y[order]
    n = len(xs)
    m = np.nonzero(np.concatenate([[True], xs[1:] != xs[:-1]]))[0]  # R: which(!duplicated(x)) - 1
    m = m[(m >= max(1, math.floor(n * minprop))) & (m <= math.floor(n * maxprop))]
    if len(m) < 1:
        return {"cutpoint": math.nan, "statistic": math.nan, "p": math.nan, "n_cuts": 0}
    ss = ys.sum()
    E = m / n * ss
    V = m * (n - m) / (n**2 * (n - 1)) * (n * np.sum(ys**2) - ss**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        test = np.abs((np.cumsum(ys)[m - 1] - E) / np.sqrt(V))
    if not np.isfinite(test).any():
        return {"cutpoint": math.nan, "statistic": math.nan, "p": math.nan, "n_cuts": len(m)}
    best = int(np.nanargmax(test))
    stat = float(test[best])
    p = p_lausen92(stat, minprop, maxprop) if pmethod == "Lau92" else p_lausen94(stat, n, m)
    return {"cutpoint": float(xs[m[best] - 1]), "statistic": stat, "p": p, "n_cuts": int(len(m))}


def groups(values: pd.Series, method: str, cutoff: float | None = None, cutpoint: float | None = None) -> pd.Series:
    """Group labels (NaN where the value is missing).

    median: 'low' at or below the median, 'high' above; tertiles: 'T1' <= 1/3 quantile < 'T2' <=
    2/3 quantile < 'T3'; cutoff / maxstat: 'low' at or below the cut, 'high' above.
    """
    v = pd.to_numeric(values, errors="coerce").astype(float)
    if method == "median":
        cut = [v.median()]
        labels = ["low", "high"]
    elif method == "tertiles":
        cut = list(v.quantile([1 / 3, 2 / 3]))
        labels = ["T1", "T2", "T3"]
    elif method in ("cutoff", "maxstat"):
        cut = [cutoff if method == "cutoff" else cutpoint]
        labels = ["low", "high"]
    else:
        raise ValueError(f"unknown grouping {method!r} (choose from {', '.join(METHODS)})")
    idx = np.searchsorted(np.asarray(cut, dtype=float), v.to_numpy(), side="left")
    out = pd.Series(np.asarray(labels, dtype=object)[np.minimum(idx, len(labels) - 1)], index=v.index)
    return out.where(v.notna())


def group_order(method: str) -> list[str]:
    return ["T1", "T2", "T3"] if method == "tertiles" else ["low", "high"]
