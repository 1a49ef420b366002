"""Kaplan-Meier step functions and log-rank tests, as tidy frames (lifelines underneath).

The confidence band is lifelines' exponential Greenwood ("log-log") interval; R's
``survfit`` defaults to ``conf.type = "log"``, so R's bands differ while the estimates agree.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test

KM_COLUMNS = ["time_days", "survival", "ci_lower", "ci_upper", "at_risk", "events", "censored"]


def km_table(durations, events, alpha: float = 0.05) -> pd.DataFrame:
    """The KM step function at time 0 and at every event or censoring time.

    survival is S(t) just after t; at_risk counts patients with time >= t (at risk just before
    t), events and censored those ending at exactly t.
    """
    durations = np.asarray(durations, dtype=float)
    events = np.asarray(events, dtype=bool)
    kmf = KaplanMeierFitter(alpha=alpha).fit(durations, events)
    et = kmf.event_table
    ci = kmf.confidence_interval_survival_function_
    out = pd.DataFrame({
        "time_days": et.index.to_numpy(dtype=float),
        "survival": kmf.survival_function_.iloc[:, 0].to_numpy(dtype=float),
        "ci_lower": ci.iloc[:, 0].to_numpy(dtype=float),
        "ci_upper": ci.iloc[:, 1].to_numpy(dtype=float),
        "at_risk": et["at_risk"].to_numpy(dtype="int64"),
        "events": et["observed"].to_numpy(dtype="int64"),
        "censored": et["censored"].to_numpy(dtype="int64"),
    })
    return out


def km_median(table: pd.DataFrame) -> float:
    """Median survival from a km table: the first time with S(t) <= 0.5 (inf if never)."""
    below = table.loc[table["survival"] <= 0.5, "time_days"]
    return float(below.iloc[0]) if len(below) else math.inf


def at_risk_at(table: pd.DataFrame, times) -> np.ndarray:
    """Number at risk at each of ``times`` (patients with time >= t), read off a km table.

    Between table rows nobody leaves, so the count at t is the at_risk of the first row at or
    after t, and 0 past the last row.
    """
    t = table["time_days"].to_numpy(dtype=float)
    n = table["at_risk"].to_numpy(dtype="int64")
    pos = np.searchsorted(t, np.asarray(times, dtype=float), side="left")
    return np.where(pos < len(t), n[np.minimum(pos, len(t) - 1)], 0)


def logrank(durations, events, groups) -> dict:
    """chisq, df, p, status for a comparison of the survival of ``groups``."""
    durations = np.asarray(durations, dtype=float)
    events = np.asarray(events, dtype=bool)
    groups = np.asarray(groups, dtype=object)
    levels = sorted(set(groups))
    res = {"n": int(len(durations)), "events": int(events.sum()), "chisq": math.nan, "df": len(levels) - 1,
           "p": math.nan}
    if len(levels) < 2:
        return {**res, "df": 0, "status": "not tested: fewer than 2 groups"}
    if not events.any():
        return {**res, "status": "not tested: no events"}
    if len(levels) == 2:
        a, b = (groups == levels[0]), (groups == levels[1])
        r = logrank_test(durations[a], durations[b], events[a], events[b])
    else:
        r = multivariate_logrank_test(durations, groups, events)
    return {**res, "chisq": float(r.test_statistic), "p": float(r.p_value), "status": "ok"}
