"""Restricted mean survival time up to tau, per group and between groups.

Per group, the area under the Kaplan-Meier curve from 0 to tau (lifelines'
``restricted_mean_survival_time``) and its standard error as R's ``print(survfit(...), rmean =
tau)`` gives it: Var = sum over event times t_j <= tau of A_j^2 d_j / (n_j (n_j - d_j)), A_j the
area under the curve from t_j to tau (lifelines' variance is that of min(T, tau) in the
population, not of the estimate, so it is not used). A curve whose follow-up ends before tau is
carried forward to tau as R does, and the row's note says so.
Between groups, the difference (SE from the sum of the variances) and the ratio (delta method on
the log scale) with normal CIs and p, as survRM2's ``rmst2`` forms them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.utils import restricted_mean_survival_time
from scipy.stats import norm

from tumorburden.tables import SCHEMAS

RMST_COLUMNS = [c for c in SCHEMAS["rmst"] if c not in ("cohort", "endpoint")]
CONTRAST_COLUMNS = [c for c in SCHEMAS["rmst_contrast"] if c not in ("cohort", "endpoint")]


def _rmst_one(time, event, tau):
    kmf = KaplanMeierFitter().fit(time, event)
    rmst = float(restricted_mean_survival_time(kmf, t=tau))
    et = kmf.event_table
    t = et.index.to_numpy(dtype=float)
    n = et["at_risk"].to_numpy(dtype=float)
    d = et["observed"].to_numpy(dtype=float)
    s = kmf.survival_function_.iloc[:, 0].to_numpy(dtype=float)  # S just after each t
    # area from t_j to tau: the step function's pieces after t_j, summed from the right
    ends = np.minimum(np.append(t[1:], tau), tau)
    piece = np.where(t < tau, s * np.maximum(ends - t, 0.0), 0.0)
    area_after = np.cumsum(piece[::-1])[::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        step = np.where((d > 0) & (t <= tau) & (n > d), d / (n * (n - d)), 0.0)
    var = float(np.sum(area_after**2 * step))
    return rmst, math.sqrt(var), float(time.max())


def rmst_by_group(time, event, group, tau: float, alpha: float = 0.05) -> pd.DataFrame:
    """RMST_COLUMNS, one row per group (sorted); group None = one row 'all'."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=float)
    if not np.all(np.isfinite(time)) or (time < 0).any():
        raise ValueError("time has missing, negative or non-finite values")
    if not np.isin(event, [0, 1]).all():
        raise ValueError("event has codes other than 0/1 (1 = event, 0 = censored)")
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau must be a positive number of days (got {tau})")
    labels = np.full(len(time), "all", dtype=object) if group is None else np.asarray(group, dtype=object)
    z = float(norm.ppf(1 - alpha / 2))
    rows = []
    for g in sorted(pd.unique(labels), key=str):
        sel = labels == g
        row = {"group": g, "n": int(sel.sum()), "events": int(event[sel].sum()), "tau_days": float(tau)}
        rmst, se, last = _rmst_one(time[sel], event[sel], tau)
        note = (f"follow-up ends at {last:g} days, before tau: the curve is carried forward to tau (as R does)"
                if last < tau else "")
        rows.append({**row, "rmst": rmst, "se": se, "lower": rmst - z * se, "upper": rmst + z * se,
                     "status": "ok", "note": note})
    return pd.DataFrame(rows, columns=RMST_COLUMNS)


def rmst_contrasts(by_group: pd.DataFrame, reference=None, alpha: float = 0.05) -> pd.DataFrame:
    """CONTRAST_COLUMNS: each group against ``reference`` (default the first group): difference
    group - reference and ratio group / reference."""
    z = float(norm.ppf(1 - alpha / 2))
    groups = list(by_group["group"])
    if reference is None:
        reference = groups[0]
    if reference not in groups:
        raise ValueError(f"reference group {reference!r} is not among the groups ({', '.join(map(str, groups))})")
    ref = by_group[by_group["group"] == reference].iloc[0]
    rows = []
    for _, r in by_group[by_group["group"] != reference].iterrows():
        diff = r["rmst"] - ref["rmst"]
        sd = math.hypot(r["se"], ref["se"])
        row = {"group": r["group"], "reference": reference, "tau_days": r["tau_days"], "difference": diff,
               "difference_lower": diff - z * sd, "difference_upper": diff + z * sd,
               "difference_p": float(2 * norm.sf(abs(diff / sd))) if sd > 0 else math.nan}
        if r["rmst"] > 0 and ref["rmst"] > 0:
            lr = math.log(r["rmst"] / ref["rmst"])
            sl = math.sqrt((r["se"] / r["rmst"]) ** 2 + (ref["se"] / ref["rmst"]) ** 2)
            row.update(ratio=math.exp(lr), ratio_lower=math.exp(lr - z * sl), ratio_upper=math.exp(lr + z * sl),
                       ratio_p=float(2 * norm.sf(abs(lr / sl))) if sl > 0 else math.nan, status="ok")
        else:
            row.update(ratio=math.nan, ratio_lower=math.nan, ratio_upper=math.nan, ratio_p=math.nan,
                       status="ratio not estimated: an RMST of 0")
        rows.append(row)
    return pd.DataFrame(rows, columns=CONTRAST_COLUMNS)
