"""Kaplan-Meier step functions, medians and log-rank tests as R's survival package computes them.

The estimate comes from lifelines; the confidence band is R's ``survfit``:
``conf_type="log"`` (R's default: exp(log S +- z se)) or ``"log-log"`` (exp(-exp(log(-log S) +- z
se / log S)), lifelines' exponential Greenwood), where se = sqrt(sum d / (n (n - d))) is
Greenwood's standard error of the cumulative hazard. As in R, the band is missing where S = 0
and is [1, 1] where S = 1 (log-log); the log band is capped at 1.
The median and its CI follow R's ``quantile.survfit`` (see ``km_quantile``).
Log-rank tests come from scikit-survival's ``compare_survival`` (equal to R's ``survdiff``); the
stratified test sums each stratum's observed - expected and covariance, as ``survdiff`` with
``strata()`` does; the trend test for ordered groups is the 1-df test of the scores 1..k,
(w'(O - E))^2 / (w' V w).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from scipy.stats import chi2, norm
from sksurv.compare import compare_survival

KM_COLUMNS = ["time_days", "survival", "ci_lower", "ci_upper", "at_risk", "events", "censored"]
CONF_TYPES = ("log", "log-log")
TOLERANCE = math.sqrt(np.finfo(float).eps)  # R's quantile.survfit tolerance


def confidence_band(surv, se, alpha: float = 0.05, conf_type: str = "log"):
    """R survfit's band from S and the standard error of the cumulative hazard."""
    if conf_type not in CONF_TYPES:
        raise ValueError(f"unknown confidence interval type {conf_type!r} (choose log or log-log)")
    z = float(norm.ppf(1 - alpha / 2))
    surv = np.asarray(surv, dtype=float)
    se = np.asarray(se, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if conf_type == "log":
            lower = np.where(surv == 0, np.nan, np.exp(np.log(surv) - z * se))
            upper = np.where(surv == 0, np.nan, np.minimum(1.0, np.exp(np.log(surv) + z * se)))
        else:
            edge = (surv == 0) | (surv == 1)
            x = np.where(edge, 0.1, surv)
            fill = np.where(surv == 0, np.nan, 1.0)
            lower = np.where(edge, fill, np.exp(-np.exp(np.log(-np.log(x)) - z * se / np.log(x))))
            upper = np.where(edge, fill, np.exp(-np.exp(np.log(-np.log(x)) + z * se / np.log(x))))
    return lower, upper


def km_table(durations, events, alpha: float = 0.05, conf_type: str = "log") -> pd.DataFrame:
    """The KM step function at time 0 and at every event or censoring time.

    survival is S(t) just after t; at_risk counts patients with time >= t (at risk just before
    t), events and censored those ending at exactly t.
    """
    durations = np.asarray(durations, dtype=float)
    events = np.asarray(events, dtype=bool)
    kmf = KaplanMeierFitter(alpha=alpha).fit(durations, events)
    et = kmf.event_table
    n = et["at_risk"].to_numpy(dtype=float)
    d = et["observed"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_step = np.where(d > 0, d / (n * (n - d)), 0.0)
    se = np.sqrt(np.cumsum(var_step))
    surv = kmf.survival_function_.iloc[:, 0].to_numpy(dtype=float)
    lower, upper = confidence_band(surv, se, alpha, conf_type)
    return pd.DataFrame({
        "time_days": et.index.to_numpy(dtype=float),
        "survival": surv,
        "ci_lower": lower,
        "ci_upper": upper,
        "at_risk": et["at_risk"].to_numpy(dtype="int64"),
        "events": et["observed"].to_numpy(dtype="int64"),
        "censored": et["censored"].to_numpy(dtype="int64"),
    })


def _findq(x: np.ndarray, y: np.ndarray, p: float, tol: float = TOLERANCE) -> float:
    """R survival's findq: the time at which the curve 1 - S (y, nondecreasing) reaches p.

    Where 1 - S equals p (within tol) over an interval, the answer is the interval's midpoint;
    where it is flat at p to the end of follow-up, the midpoint of that flat part and the last
    time.
    """
    keep = ~np.isnan(y)
    if not keep.any() or np.nanmax(y) < p:
        return math.nan
    xmax = x[-1]
    x, y = x[keep], y[keep]
    _, first = np.unique(y, return_index=True)
    first = np.sort(first)
    x, y = x[first], y[first]

    def index(shift):  # R approx(y + shift, 1:n, p, "constant", f = 1): first i with y_i + shift >= p
        hits = np.nonzero(y + shift >= p)[0]
        return hits[0] if len(hits) else None

    i1, i2 = index(tol), index(-tol)
    if i1 is None:
        return math.nan
    if p == 0:
        return float(x[0])
    if abs(p - y[-1]) < tol and i1 is not None:
        return float((x[i1] + xmax) / 2)
    if i2 is None:
        return math.nan
    return float((x[i1] + x[i2]) / 2)


def km_quantile(table: pd.DataFrame, p: float = 0.5) -> tuple[float, float, float]:
    """(time, lower, upper) where the KM curve and its band reach 1 - p, as R's quantile.survfit.

    The CI of the median runs from where the upper band crosses 0.5 to where the lower band
    does (Brookmeyer-Crowley by inversion of the band); NaN where a curve never gets there.
    """
    t = table["time_days"].to_numpy(dtype=float)
    # R's curve starts at firstx = 0 with S = 1; lifelines' row at time 0 is that start unless
    # patients had their event at time 0, when it is also a step of the curve
    sel = (t > 0) | ((t == 0) & (table["events"].to_numpy() > 0))
    x = np.concatenate([[0.0], t[sel]])

    def one(col):
        y = np.concatenate([[0.0], 1 - table[col].to_numpy(dtype=float)[sel]])
        return _findq(x, y, p)

    # the lower band reaches 0.5 first: it gives the lower limit
    return one("survival"), one("ci_lower"), one("ci_upper")


def km_median(table: pd.DataFrame) -> float:
    """Median survival (R's rule); inf if the curve never reaches 0.5."""
    m = km_quantile(table, 0.5)[0]
    return math.inf if math.isnan(m) else m


def survival_at(table: pd.DataFrame, times) -> pd.DataFrame:
    """S(t), its band and the number at risk at each of ``times`` (R's summary(fit, times=)).

    Past the last follow-up time survival is NaN (R: extend = TRUE carries the last value, but
    only while patients remain at risk).
    """
    t = table["time_days"].to_numpy(dtype=float)
    times = np.asarray(times, dtype=float)
    idx = np.searchsorted(t, times, side="right") - 1
    rows = []
    for x, i in zip(times, idx):
        beyond = x > t[-1]
        rows.append({
            "time_days": float(x),
            "survival": math.nan if beyond else float(table["survival"].iloc[i]),
            "ci_lower": math.nan if beyond else float(table["ci_lower"].iloc[i]),
            "ci_upper": math.nan if beyond else float(table["ci_upper"].iloc[i]),
            "at_risk": int(at_risk_at(table, [x])[0]),
        })
    return pd.DataFrame(rows)


def at_risk_at(table: pd.DataFrame, times) -> np.ndarray:
    """Number at risk at each of ``times`` (patients with time >= t), read off a km table.

    Between table rows nobody leaves, so the count at t is the at_risk of the first row at or
    after t, and 0 past the last row.
    """
    t = table["time_days"].to_numpy(dtype=float)
    n = table["at_risk"].to_numpy(dtype="int64")
    pos = np.searchsorted(t, np.asarray(times, dtype=float), side="left")
    return np.where(pos < len(t), n[np.minimum(pos, len(t) - 1)], 0)


def _observed_expected(durations, events, groups, levels):
    """Observed - expected per level and its covariance, summed over nothing (one stratum)."""
    k = len(levels)
    present = sorted(set(groups))
    oe, cov = np.zeros(k), np.zeros((k, k))
    if len(present) < 2 or not events.any():
        return oe, cov
    y = np.empty(len(durations), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = events, durations
    _, _, stats, covar = compare_survival(y, groups, return_stats=True)
    pos = [levels.index(g) for g in stats.index]
    oe[pos] = stats["statistic"].to_numpy(dtype=float)
    cov[np.ix_(pos, pos)] = covar
    return oe, cov


def logrank(durations, events, groups, strata=None, trend: bool = False, levels=None) -> dict:
    """Log-rank test of ``groups`` (optionally within ``strata``): n, events, chisq, df, p, status.

    ``trend``: the 1-df test for a trend over the ordered ``levels`` (scores 1..k).
    """
    durations = np.asarray(durations, dtype=float)
    events = np.asarray(events, dtype=bool)
    groups = np.asarray(groups, dtype=object)
    levels = list(levels) if levels is not None else sorted(set(groups))
    present = [g for g in levels if (groups == g).any()]
    res = {"n": int(len(durations)), "events": int(events.sum()), "chisq": math.nan,
           "df": 1 if trend else len(present) - 1, "p": math.nan}
    if len(present) < 2:
        return {**res, "df": 0, "status": "not tested: fewer than 2 groups"}
    if not events.any():
        return {**res, "status": "not tested: no events"}
    strata = np.zeros(len(durations), dtype=int) if strata is None else np.asarray(strata, dtype=object)
    k = len(present)
    oe, cov = np.zeros(k), np.zeros((k, k))
    for s in pd.unique(strata):
        sel = strata == s
        o, c = _observed_expected(durations[sel], events[sel], groups[sel], present)
        oe += o
        cov += c
    if trend:
        w = np.arange(1, k + 1, dtype=float)
        var = float(w @ cov @ w)
        if var <= 0:
            return {**res, "status": "not tested: no information (no events in comparable groups)"}
        stat = float(w @ oe) ** 2 / var
        return {**res, "chisq": stat, "p": float(chi2.sf(stat, 1)), "status": "ok"}
    # the covariance has rank k - 1: R's survdiff drops the last group (generalised inverse)
    try:
        stat = float(np.linalg.solve(cov[:-1, :-1], oe[:-1]) @ oe[:-1])
    except np.linalg.LinAlgError:
        return {**res, "status": "not tested: singular covariance (a group with no patient at risk at any event)"}
    return {**res, "chisq": stat, "p": float(chi2.sf(stat, k - 1)), "status": "ok"}
