"""`tumorburden survival km|logrank|cox|zph` on any table, so every number can be checked in R.

    tumorburden survival cox --table lung.csv --duration time --event event \
        --covariates age,sex,ph.ecog --out cox.csv

The table is TSV (or CSV by extension); rows with a missing value in a used column are left out
and counted (n_dropped). The event column must be coded 0/1 (R's lung codes 1/2: recode first).
A model that cannot be fitted is a row with its reason, never a crash.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from tumorburden.survival import cox, km


def read_any(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: table not found (give --table a TSV or CSV file)")
    return pd.read_csv(path, sep="," if path.suffix.lower() == ".csv" else "\t")


def _outcome(df, duration, event, used):
    for c in used:
        if c not in df.columns:
            raise ValueError(f"column {c!r} is not in the table (columns: {', '.join(map(str, df.columns))})")
    complete = df[used].notna().all(axis=1)
    d = df[complete]
    t = pd.to_numeric(d[duration], errors="coerce")
    e = pd.to_numeric(d[event], errors="coerce")
    problem = None
    if t.isna().any() or (t < 0).any():
        problem = f"{duration} has negative or non-numeric values"
    elif not e.isin([0, 1]).all():
        problem = f"{event} has codes other than 0/1 (1 = event, 0 = censored)"
    return d.assign(**{duration: t, event: e}), int((~complete).sum()), problem


def km_command(df, duration, event, group=None, conf_type="log", alpha=0.05, times=()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curves, summary): the step function per group and n, events, median with CI."""
    d, dropped, problem = _outcome(df, duration, event, [duration, event] + ([group] if group else []))
    groups = sorted(d[group].astype(str).unique()) if group else ["all"]
    curves, summary = [], []
    for g in groups:
        sub = d if not group else d[d[group].astype(str) == g]
        row = {"group": g, "n": len(sub), "events": int(sub[event].clip(0, 1).sum()), "n_dropped": dropped,
               "conf_type": conf_type}
        if problem or sub.empty:
            summary.append({**row, "median_days": math.nan, "median_lower": math.nan, "median_upper": math.nan,
                            "status": f"not estimated: {problem or 'no rows'}"})
            continue
        t = km.km_table(sub[duration], sub[event], alpha, conf_type)
        curves.append(t.assign(group=g))
        med, lo, hi = km.km_quantile(t)
        summary.append({**row, "median_days": med, "median_lower": lo, "median_upper": hi, "status": "ok"})
        for _, r in km.survival_at(t, times).iterrows():
            summary[-1][f"survival_{r['time_days']:g}"] = r["survival"]
            summary[-1][f"lower_{r['time_days']:g}"] = r["ci_lower"]
            summary[-1][f"upper_{r['time_days']:g}"] = r["ci_upper"]
    curve = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(columns=["group", *km.KM_COLUMNS])
    return curve[["group", *km.KM_COLUMNS]], pd.DataFrame(summary)


def logrank_command(df, duration, event, group, strata=None, trend=False) -> pd.DataFrame:
    if not group:
        raise ValueError("logrank needs --group COL (the groups to compare)")
    used = [duration, event, group] + ([strata] if strata else [])
    d, dropped, problem = _outcome(df, duration, event, used)
    levels = sorted(d[group].unique())
    if problem:
        return pd.DataFrame([{"groups": ",".join(map(str, levels)), "n": len(d), "chisq": math.nan, "df": 0,
                              "p": math.nan, "n_dropped": dropped, "status": f"not tested: {problem}"}])
    r = km.logrank(d[duration], d[event], d[group].to_numpy(), strata=d[strata].to_numpy() if strata else None,
                   trend=trend, levels=levels)
    test = "trend" if trend else "stratified" if strata else "logrank"
    return pd.DataFrame([{"test": test, "groups": ",".join(map(str, levels)), **r, "n_dropped": dropped}])


def cox_command(df, duration, event, covariates, strata=None, ties="efron", alpha=0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not covariates:
        raise ValueError("cox needs --covariates a,b,... (the model's terms)")
    d, dropped, problem = _outcome(df, duration, event, [duration, event, *covariates] + ([strata] if strata else []))
    if problem:
        rows = [{"term": c, "hr": math.nan, "n": len(d), "n_dropped": dropped, "status": f"not fitted: {problem}"}
                for c in covariates]
        return pd.DataFrame(rows), pd.DataFrame([{"term": "GLOBAL", "status": f"not tested: {problem}"}])
    rows, zph = cox.fit_cox(df, duration, event, covariates, strata=strata, ties=ties, alpha=alpha,
                            min_patients=2, min_events=1)
    return pd.DataFrame(rows), pd.DataFrame(zph)


def run(args) -> None:
    df = read_any(Path(args.table))
    covariates = [c.strip() for c in (args.covariates or "").split(",") if c.strip()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.action == "km":
        times = [float(x) for x in (args.times or "").split(",") if x.strip()]
        curve, summary = km_command(df, args.duration, args.event, args.group, args.ci, args.alpha, times)
        summary.to_csv(out, index=False, float_format="%.10g")
        curve.to_csv(out.with_name(out.stem + "_curve.csv"), index=False, float_format="%.10g")
    elif args.action == "logrank":
        logrank_command(df, args.duration, args.event, args.group, args.strata, args.trend).to_csv(
            out, index=False, float_format="%.10g")
    else:
        rows, zph = cox_command(df, args.duration, args.event, covariates, args.strata, args.ties, args.alpha)
        (rows if args.action == "cox" else zph).to_csv(out, index=False, float_format="%.10g")
    print(f"wrote {out}")
