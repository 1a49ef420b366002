"""`tumorburden survival km|logrank|cox|zph|score|rmst|validate` on any table, so every number can
be checked in R.

    tumorburden survival cox --table lung.csv --duration time --event event \
        --covariates age,sex,ph.ecog --out cox.csv
    tumorburden survival score --table lung.csv --duration time --event event \
        --covariates age,sex --times 180,365 --out score.csv
    tumorburden survival rmst --table lung.csv --duration time --event event --group sex --tau 365 --out rmst.csv
    tumorburden survival validate --table lung.csv --duration time --event event \
        --covariates age,sex --horizon 365 --bootstrap 200 --seed 1 --out validate.csv

The table is TSV (or CSV by extension); rows with a missing value in a used column are left out
and counted (n_dropped). The event column must be coded 0/1 (R's lung codes 1/2: recode first)
and times must be numbers >= 0: any other value stops every command before it fits anything, in
one line naming the table and the first bad row. A model that cannot be fitted on good data (too
few events, a separated covariate) is a row with its reason, never a crash.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from tumorburden.survival import cox, km, rmst, score


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
    _stop_on(problem, df, duration, event)
    groups = sorted(d[group].astype(str).unique()) if group else ["all"]
    curves, summary = [], []
    for g in groups:
        sub = d if not group else d[d[group].astype(str) == g]
        row = {"group": g, "n": len(sub), "events": int(sub[event].clip(0, 1).sum()), "n_dropped": dropped,
               "conf_type": conf_type}
        if sub.empty:
            summary.append({**row, "median_days": math.nan, "median_lower": math.nan, "median_upper": math.nan,
                            "status": "not estimated: no rows"})
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
    _stop_on(problem, df, duration, event)
    levels = sorted(d[group].unique())
    r = km.logrank(d[duration], d[event], d[group].to_numpy(), strata=d[strata].to_numpy() if strata else None,
                   trend=trend, levels=levels)
    test = "trend" if trend else "stratified" if strata else "logrank"
    return pd.DataFrame([{"test": test, "groups": ",".join(map(str, levels)), **r, "n_dropped": dropped}])


def cox_command(df, duration, event, covariates, strata=None, ties="efron", alpha=0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not covariates:
        raise ValueError("cox needs --covariates a,b,... (the model's terms)")
    _, _, problem = _outcome(df, duration, event, [duration, event, *covariates] + ([strata] if strata else []))
    _stop_on(problem, df, duration, event)
    rows, zph = cox.fit_cox(df, duration, event, covariates, strata=strata, ties=ties, alpha=alpha,
                            min_patients=2, min_events=1)
    return pd.DataFrame(rows), pd.DataFrame(zph)


def score_command(df, duration, event, covariates, times, alpha=0.05) -> pd.DataFrame:
    """Brier, IPA and AUC(t) of the Cox model of ``covariates`` and of the null model at ``times``."""
    if not covariates:
        raise ValueError("score needs --covariates a,b,... (the Cox model's terms)")
    if not times:
        raise ValueError("score needs --times t1,t2,... (the horizons, in the table's time unit)")
    d, dropped, problem = _outcome(df, duration, event, [duration, event, *covariates])
    _stop_on(problem, df, duration, event)
    return score.score_cox(d, duration, event, covariates, times, alpha=alpha).assign(n_dropped=dropped)


def rmst_command(df, duration, event, group, tau, alpha=0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per group, contrasts against the first group)."""
    if tau is None:
        raise ValueError("rmst needs --tau T (the restriction time, in the table's time unit)")
    d, dropped, problem = _outcome(df, duration, event, [duration, event] + ([group] if group else []))
    _stop_on(problem, df, duration, event)
    by_group = rmst.rmst_by_group(d[duration], d[event], d[group].astype(str) if group else None, tau, alpha)
    contrasts = rmst.rmst_contrasts(by_group, alpha=alpha) if len(by_group) > 1 else pd.DataFrame(
        columns=rmst.CONTRAST_COLUMNS)
    return by_group.assign(n_dropped=dropped), contrasts


def validate_command(df, duration, event, covariates, horizons, n_boot, seed, ties="efron") -> pd.DataFrame:
    """rms::validate.cph's table of the Cox model of ``covariates`` (survival/validation.py)."""
    from tumorburden.survival import validation

    if not covariates:
        raise ValueError("validate needs --covariates a,b,... (the Cox model's terms)")
    d, dropped, problem = _outcome(df, duration, event, [duration, event, *covariates])
    _stop_on(problem, df, duration, event)
    X, _ = cox.design(d, covariates)
    out = validation.validate_cox(d[duration].to_numpy(float), d[event].to_numpy(bool), X.to_numpy(float),
                                  horizons=horizons, n_boot=n_boot, rng=np.random.default_rng(seed), ties=ties)
    return out.assign(n=len(d), n_dropped=dropped)


def _stop_on(problem, df, duration, event) -> None:
    """A bad outcome stops every command before any fitting, naming the first bad row (1-based,
    after the header) so it can be fixed."""
    if not problem:
        return
    t = pd.to_numeric(df[duration], errors="coerce")
    e = pd.to_numeric(df[event], errors="coerce")
    bad = df.index[(df[duration].notna() & (t.isna() | (t < 0))) | (df[event].notna() & ~e.isin([0, 1]))]
    where = f" (first: row {df.index.get_loc(bad[0]) + 1})" if len(bad) else ""
    raise ValueError(f"{problem}{where}: fix the table (event 1 = event, 0 = censored; times >= 0)")


def _numbers(text) -> list[float]:
    try:
        return [float(x) for x in (text or "").split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None


def _prediction_action(args, df, covariates, out) -> None:
    if args.action == "score":
        score_command(df, args.duration, args.event, covariates, _numbers(args.times), args.alpha).to_csv(
            out, index=False, float_format="%.10g")
    elif args.action == "rmst":
        by_group, contrasts = rmst_command(df, args.duration, args.event, args.group, args.tau, args.alpha)
        by_group.to_csv(out, index=False, float_format="%.10g")
        contrasts.to_csv(out.with_name(out.stem + "_contrast.csv"), index=False, float_format="%.10g")
    elif args.action == "validate":
        from tumorburden.survival.analysis import DEFAULTS

        n_boot = DEFAULTS["bootstrap"] if args.bootstrap is None else args.bootstrap
        seed = DEFAULTS["seed"] if args.seed is None else args.seed
        validate_command(df, args.duration, args.event, covariates, _numbers(args.horizon), n_boot, seed,
                         args.ties).to_csv(out, index=False, float_format="%.10g")


def run(args) -> None:
    df = read_any(Path(args.table))
    covariates = [c.strip() for c in (args.covariates or "").split(",") if c.strip()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        _action(args, df, covariates, out)
    except ValueError as exc:  # a bad table or option: say which table
        raise ValueError(f"{args.table}: {exc}") from None
    print(f"wrote {out}")


def _action(args, df, covariates, out) -> None:
    if args.action == "km":
        times = _numbers(args.times)
        curve, summary = km_command(df, args.duration, args.event, args.group, args.ci, args.alpha, times)
        summary.to_csv(out, index=False, float_format="%.10g")
        curve.to_csv(out.with_name(out.stem + "_curve.csv"), index=False, float_format="%.10g")
    elif args.action in ("score", "rmst", "validate"):
        _prediction_action(args, df, covariates, out)
    elif args.action == "logrank":
        logrank_command(df, args.duration, args.event, args.group, args.strata, args.trend).to_csv(
            out, index=False, float_format="%.10g")
    else:
        rows, zph = cox_command(df, args.duration, args.event, covariates, args.strata, args.ties, args.alpha)
        (rows if args.action == "cox" else zph).to_csv(out, index=False, float_format="%.10g")
