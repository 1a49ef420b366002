"""Survival analysis per cohort x endpoint: the tables under results/<name>/survival/.

Analysed sets: every cohort of clinical.tsv (sorted), plus ``all`` (every cohort together, with
cohort as stratum) when ``pooled`` is true; endpoints from ``endpoints`` (``pfs`` reads pfs_days /
pfs_event, ``os`` os_days / os_event). A patient enters an analysis when it has a features row
(a baseline scan) and both endpoint values. A patient with a missing endpoint value is left out
of that endpoint and listed in exclusions.csv; a negative time or an event code other than 0/1
makes every model of that cohort x endpoint a row "not fitted: <reason>" (the data must be fixed).

Tables (CSV + Parquet): km (step functions), km_summary (n, events, median and its CI per group),
survival_at (S(t) at ``km_times_days``), logrank (log-rank / stratified / trend / maxstat),
cox (univariable per feature, multivariable with clinical covariates, landmark, time-varying),
zph (cox.zph beside every Cox model), performance (Harrell's and Uno's C with bootstrap CIs),
td_auc, c_index_difference (volumetric burden vs RECIST sum of diameters), table1, exclusions.
See docs/survival.md for the methods and their agreement with R.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tumorburden import tables
from tumorburden.baseline import baseline_scans
from tumorburden.paths import POOLED
from tumorburden.study import read_clinical_table
from tumorburden.survival import concordance, cox, cutpoints, km

log = logging.getLogger(__name__)

DEFAULTS = {
    "endpoints": ["pfs", "os"],
    "pooled": True,                 # also analyse all cohorts together (cohort as stratum)
    "features": ["baseline_volume_ml", "pct_change_first_fu"],  # univariable Cox + C-index
    "bootstrap": 200,               # bootstrap replicates for the C-index CIs (0: no CI)
    "seed": 7,
    "volume_offset_ml": 0.1,        # ln(V + offset) in the Cox model
    "min_patients": 10,             # fewer: Cox / C-index not fitted
    "min_events": 3,
    "alpha": 0.05,                  # 1 - confidence level of KM bands and Cox CIs
    "uno_tau_days": None,           # truncation time of Uno's C (None: no truncation)
    "conf_type": "log",             # KM band: log (R's default) | log-log
    "ties": "efron",                # Cox ties: efron (R's default) | breslow
    "km_times_days": [180, 365, 730],
    "group_feature": "baseline_volume_ml",
    "groupings": ["median", "tertiles", "maxstat"],
    "cutoff": None,                 # prespecified cut of group_feature (adds grouping 'cutoff')
    "maxstat_minprop": 0.1,
    "maxstat_maxprop": 0.9,
    "maxstat_pmethod": "Lau94",
    "covariates": ["age", "sex", "ecog", "line_of_therapy"],
    "landmark_days": 70,
    "landmark_features": ["pct_change_first_fu"],
    "time_varying": True,
    "td_auc_days": [180, 365],
    "compare": ["baseline_volume_ml", "baseline_sld_mm"],
    # prediction models (survival/prediction.py): validation, calibration, score, decision curves
    "model_sets": {
        "clinical": ["age", "sex", "ecog", "line_of_therapy"],
        "clinical_burden": ["age", "sex", "ecog", "line_of_therapy", "log_baseline_volume_ml"],
        "clinical_burden_kinetics": ["age", "sex", "ecog", "line_of_therapy", "log_baseline_volume_ml", "growth_g"],
    },
    "horizons_days": [180, 365, 730],
    "calibration_groups": 5,        # quantile groups of predicted survival (rms::calibrate "KM")
    "rmst_tau_days": 730,           # restricted mean survival time up to tau
    # dynamic prediction (survival/landmark.py, dynamic.py): landmark super-model, dynamic accuracy
    "landmarks_days": [0, 90, 180, 270, 365],
    "landmark_window_days": 180,
    "landmark_covariates": ["log_burden", "log_burden_slope", "new_lesion"],
    "landmark_baseline": "smooth",  # smooth (one baseline hazard, f(s) terms) | strata (a baseline hazard per landmark)
    # joint model of log burden and survival (survival/joint.py, rule survival_joint)
    "joint": {
        "association": "value",     # value: current ln burden | value+slope: and its current slope
        "time_basis": "linear",     # linear: random intercept and slope | spline: natural cubic spline of time
        "spline_df": 2,             # spline: df of ns(t, df) (df - 1 interior knots); df + 1 random effects
        "variance": "sandwich",     # sandwich: robust (per patient) | jackknife: one-step leave-one-patient-out | cr2: bias-reduced, t on Bell-McCaffrey df | observed
        "baseline_hazard_pieces": 7,  # piecewise-constant h0, knots at event-time quantiles (JM's 6 inner knots)
        "hermite_nodes": 7,         # Gauss-Hermite nodes per random effect (7 x 7 product rule, adaptive)
        "legendre_nodes": 5,        # Gauss-Legendre nodes per piece of h0 in the cumulative hazard
        "covariates": [],           # clinical.tsv columns (numbers) entering the hazard beside the burden
        "windows_days": [180, 365], # dynamic predictions: P(T > t + w | T > t, scans up to t)
    },
}

LOG_FEATURES = ("baseline_volume_ml",)   # entered as ln(V + volume_offset_ml)
TV_TERM = "log_current_burden_ml"


def endpoint_columns(endpoint: str) -> tuple[str, str]:
    return f"{endpoint}_days", f"{endpoint}_event"


def cox_term(feature: str) -> str:
    return f"log_{feature}" if feature in LOG_FEATURES else feature


def outcome_problem(data: pd.DataFrame) -> str | None:
    """Why no model can be fitted on this outcome, or None."""
    neg = data.loc[data["time"] < 0, "patient_id"]
    if len(neg):
        return f"{len(neg)} patient(s) with negative time (first: {neg.iloc[0]}; times run from baseline, >= 0)"
    bad = data.loc[~data["event"].isin([0, 1]), "patient_id"]
    if len(bad):
        return f"{len(bad)} patient(s) with an event code other than 0/1 (first: {bad.iloc[0]}; 1 = event, 0 = censored)"
    return None


def _endpoint_frame(clinical: pd.DataFrame, endpoint: str, path, exclusions: list) -> pd.DataFrame:
    days_col, event_col = endpoint_columns(endpoint)
    missing = [c for c in (days_col, event_col) if c not in clinical.columns]
    if missing:
        raise ValueError(f"{path}: endpoint {endpoint!r} needs column(s) {', '.join(missing)} "
                         f"(add them or remove {endpoint!r} from survival endpoints)")
    out = pd.DataFrame({"patient_id": clinical["patient_id"],
                        "time": pd.to_numeric(clinical[days_col], errors="coerce"),
                        "event": pd.to_numeric(clinical[event_col], errors="coerce")})
    gone = out[out[["time", "event"]].isna().any(axis=1)]
    for pid in gone["patient_id"]:
        exclusions.append({"stage": "survival", "patient_id": pid, "scan_id": "",
                           "reason": f"{endpoint}: missing {days_col} or {event_col}; left out of {endpoint} analyses"})
    return out.dropna(subset=["time", "event"])


def baseline_scan_ids(features: pd.DataFrame, burden: pd.DataFrame) -> pd.Series:
    """features' baseline_scan_id, or (a table without it) the baseline rule on the burden table's scans."""
    if "baseline_scan_id" in features:
        return features["baseline_scan_id"]
    return features["patient_id"].map(baseline_scans(burden))


def baseline_sld(features: pd.DataFrame, burden: pd.DataFrame | None) -> pd.Series:
    """RECIST sum of diameters at each patient's baseline scan (NaN without burden)."""
    if burden is None:
        return pd.Series(np.nan, index=features.index)
    sld = burden.set_index("scan_id")["sld_mm"]
    return baseline_scan_ids(features, burden).map(sld).astype(float)


def analysis_sets(features, clinical, s, path, exclusions, burden=None):
    """Yield (cohort, endpoint, frame): patient_id, cohort, time, event, features, covariates."""
    cohorts = sorted(clinical["cohort"].dropna().astype(str).unique())
    if s["pooled"] and POOLED in cohorts:
        raise ValueError(f"{path}: a cohort is named {POOLED!r}, which names the pooled analysis "
                         f"(rename the cohort or set survival pooled: false)")
    feats = features.drop(columns=["cohort"]).assign(baseline_sld_mm=baseline_sld(features, burden))
    if burden is not None:
        feats["baseline_scan_id"] = baseline_scan_ids(features, burden)
    extra = [c for c in clinical.columns if c not in feats.columns and c != "patient_id"]
    feats = feats.merge(clinical[["patient_id", *extra]], on="patient_id")
    for endpoint in s["endpoints"]:
        data = feats.merge(_endpoint_frame(clinical, endpoint, path, exclusions), on="patient_id", how="inner")
        data = data.sort_values("patient_id", kind="mergesort").reset_index(drop=True)
        for cohort in cohorts + ([POOLED] if s["pooled"] else []):
            sub = data if cohort == POOLED else data[data["cohort"] == cohort]
            yield cohort, endpoint, sub.reset_index(drop=True)


# --- Kaplan-Meier and log-rank ----------------------------------------------------------------


def km_rows(cohort, endpoint, data, s, problem):
    key = {"cohort": cohort, "endpoint": endpoint}
    frames, summaries, at, tests = [], [], [], []
    alpha, ct = float(s["alpha"]), s["conf_type"]
    feature = s["group_feature"]

    def curve(stratifier, group, sub):
        t = km.km_table(sub["time"], sub["event"], alpha, ct)
        frames.append(t.assign(**key, stratifier=stratifier, group=group))
        med, lo, hi = km.km_quantile(t, 0.5)
        summaries.append({**key, "stratifier": stratifier, "group": group, "n": len(sub),
                          "events": int(sub["event"].sum()), "median_days": med, "median_lower": lo,
                          "median_upper": hi, "conf_type": ct})
        at.append(km.survival_at(t, s["km_times_days"]).assign(**key, stratifier=stratifier, group=group,
                                                                 conf_type=ct))

    def not_tested(stratifier, test, reason):
        tests.append({**key, "stratifier": stratifier, "groups": "", "n": len(data),
                      "events": int(data["event"].sum()) if len(data) else 0, "chisq": math.nan, "df": 0,
                      "p": math.nan, "test": test, "status": f"not tested: {reason}"})

    methods = list(s["groupings"]) + (["cutoff"] if s["cutoff"] is not None else [])
    if problem or data.empty:
        for m in methods:
            not_tested(f"{feature}:{m}", "logrank", problem or "no patients")
        return frames, summaries, at, tests
    curve("all", "all", data)
    values = pd.to_numeric(data[feature], errors="coerce") if feature in data else pd.Series(np.nan, index=data.index)
    ok = values.notna()
    for method in methods:
        strat = f"{feature}:{method}"
        sub, v = data[ok], values[ok]
        extra = {}
        if method == "maxstat":
            if len(sub) < int(s["min_patients"]) or sub["event"].sum() == 0:
                not_tested(strat, "maxstat", "too few patients or no events for a cut-point search")
                continue
            ms = cutpoints.maxstat(sub["time"], sub["event"], v, float(s["maxstat_minprop"]),
                                   float(s["maxstat_maxprop"]), s["maxstat_pmethod"])
            if not np.isfinite(ms["statistic"]):
                not_tested(strat, "maxstat", "no admissible cut-point")
                continue
            extra = {"cutpoint": ms["cutpoint"]}
            tests.append({**key, "stratifier": strat, "groups": "low,high", "n": len(sub),
                          "events": int(sub["event"].sum()), "chisq": ms["statistic"] ** 2, "df": 1, "p": ms["p"],
                          "test": "maxstat", "cutpoint": ms["cutpoint"],
                          "note": f"exploratory: cut-point chosen to maximise the log-rank statistic; p corrected "
                                  f"for {ms['n_cuts']} candidate cuts ({s['maxstat_pmethod']})",
                          "status": "ok"})
            log.warning("%s %s: optimal cut-point of %s = %.4g is exploratory (p corrected for selection: %.3g)",
                        cohort, endpoint, feature, ms["cutpoint"], ms["p"])
        g = cutpoints.groups(v, method, cutoff=s["cutoff"], cutpoint=extra.get("cutpoint"))
        levels = cutpoints.group_order(method)
        for lev in levels:
            sel = (g == lev).to_numpy()
            if sel.any():
                curve(strat, lev, sub[sel])
        present = [lev for lev in levels if (g == lev).any()]
        variants = [("logrank", None, False)]
        if cohort == POOLED:
            variants.append(("stratified", sub["cohort"].to_numpy(), False))
        if len(levels) > 2:
            variants.append(("trend", sub["cohort"].to_numpy() if cohort == POOLED else None, True))
        for test, strata, trend in variants:
            r = km.logrank(sub["time"], sub["event"], g.to_numpy(), strata=strata, trend=trend, levels=levels)
            tests.append({**key, "stratifier": strat, "groups": ",".join(present), **r, "test": test, **extra,
                          "note": ("stratified by cohort" if strata is not None else "")
                          + ("; " if strata is not None and extra else "")
                          + ("groups from the exploratory cut-point: p not corrected for its selection" if extra else "")})
    return frames, summaries, at, tests


# --- Cox models --------------------------------------------------------------------------------


def _model_rows(kind, key, data, terms, s, strata, start_col=None, id_col=None, extra=None, problem=None):
    extra = extra or {}
    if problem:
        base = {"n": len(data), "events": 0, "n_dropped": 0, "ties": s["ties"], "strata": ",".join(strata or [])}
        rows = [{"term": t, "hr": math.nan, "hr_lower": math.nan, "hr_upper": math.nan, "p": math.nan,
                 **base, **cox.ph_flag(math.nan), "status": f"not fitted: {problem}"} for t in terms]
        zph = [{"term": t, "chisq": math.nan, "df": 0, "p": math.nan, **base, "status": f"not tested: {problem}"}
               for t in [*terms, "GLOBAL"]]
    else:
        rows, zph = cox.fit_cox(data, "time", "event", terms, strata=strata, ties=s["ties"], alpha=float(s["alpha"]),
                                min_patients=int(s["min_patients"]), min_events=int(s["min_events"]),
                                start_col=start_col, id_col=id_col)
    label = {**key, "model": kind, "model_terms": ",".join(terms), **extra}
    return [{**label, **r} for r in rows], [{**label, **r} for r in zph]


def cox_rows(cohort, endpoint, data, s, problem, burden=None, first_followup=None):
    key = {"cohort": cohort, "endpoint": endpoint}
    strata = ["cohort"] if cohort == POOLED else None
    off = float(s["volume_offset_ml"])
    d = data.copy()
    for f in LOG_FEATURES:
        if f in d:
            d[cox_term(f)] = np.log(pd.to_numeric(d[f], errors="coerce") + off)
    rows, zph = [], []

    def add(*args, **kw):
        r, z = _model_rows(*args, **kw)
        rows.extend(r)
        zph.extend(z)

    for f in s["features"]:
        add("univariable", key, d, [cox_term(f)], s, strata, problem=problem)
    absent = [c for c in s["covariates"] if c not in d.columns]
    main = cox_term(s["group_feature"])
    if s["covariates"]:
        add("multivariable", key, d, [main, *[c for c in s["covariates"] if c in d.columns]], s, strata,
            problem=problem or (f"covariate(s) {', '.join(absent)} not in clinical.tsv" if absent else None))
    # landmark: patients event-free and followed at the landmark, time reset there
    L = s["landmark_days"]
    if L is not None and s["landmark_features"]:
        lm = d[d["time"] > float(L)].copy()
        known = (first_followup.reindex(lm["patient_id"]).to_numpy() <= float(L)) if first_followup is not None \
            else np.ones(len(lm), bool)
        lm = lm[known].assign(time=lambda x: x["time"] - float(L))
        for f in s["landmark_features"]:
            add("landmark", key, lm, [f], s, strata, extra={"landmark_days": float(L)}, problem=problem)
    if s["time_varying"] and burden is not None:
        cp = counting_process(d, burden, off)
        add("time_varying", key, cp, [TV_TERM], s, strata, start_col="start", id_col="patient_id", problem=problem)
    return rows, zph


def counting_process(data: pd.DataFrame, burden: pd.DataFrame, offset_ml: float) -> pd.DataFrame:
    """(start, stop] rows per patient: ln(total burden + offset) of the latest scan, from day 0 to
    the endpoint. The baseline scan (days <= 0) opens the first interval at 0; a scan on or after
    the endpoint time cannot change the covariate before it and is not used."""
    b = burden[burden["patient_id"].isin(data["patient_id"])][["patient_id", "days", "total_volume_ml"]]
    b = b.merge(data[["patient_id", "time", "event", "cohort", "baseline_scan_id"]], on="patient_id")
    base_day = burden.set_index("scan_id")["days"]
    b = b[b["days"] >= b["baseline_scan_id"].map(base_day)]
    b = b[b["days"] < b["time"]].sort_values(["patient_id", "days"], kind="mergesort")
    b["start"] = b["days"].clip(lower=0.0)
    b["stop"] = b.groupby("patient_id")["start"].shift(-1).fillna(b["time"])
    b["event"] = np.where(b["stop"] == b["time"], b["event"], 0)
    b[TV_TERM] = np.log(b["total_volume_ml"] + offset_ml)
    b = b.drop_duplicates(["patient_id", "start"], keep="last")  # two scans on one day: the later row
    b = b[b["stop"] > b["start"]]
    return b[["patient_id", "cohort", "start", "stop", "event", TV_TERM]].rename(columns={"stop": "time"}).reset_index(drop=True)


# --- discrimination ------------------------------------------------------------------------------


def performance_rows(cohort, endpoint, data, s, problem):
    rows, aucs, diffs = [], [], []
    key = {"cohort": cohort, "endpoint": endpoint}
    empty = {k: math.nan for k in ("c_index", "c_index_lower", "c_index_upper", "c_index_uno",
                                   "c_index_uno_lower", "c_index_uno_upper")}

    def usable(cols):
        vals = {c: pd.to_numeric(data[c].astype("float64"), errors="coerce") if c in data else
                pd.Series(np.nan, index=data.index) for c in cols}
        sel = np.logical_and.reduce([np.isfinite(v.to_numpy()) for v in vals.values()])
        sub = data[sel]
        n, events = len(sub), int(sub["event"].sum()) if len(sub) else 0
        if problem:
            return sub, vals, n, events, problem
        if n < int(s["min_patients"]):
            return sub, vals, n, events, f"too few patients ({n} < {s['min_patients']})"
        if events < int(s["min_events"]):
            return sub, vals, n, events, f"too few events ({events} < {s['min_events']})"
        const = [c for c, v in vals.items() if v[sel].nunique() < 2]
        if const:
            return sub, vals, n, events, f"constant or missing {', '.join(const)}"
        return sub, vals, n, events, None

    for feature in s["features"]:
        sub, vals, n, events, why = usable([feature])
        row = {**key, "feature": feature, "n": n, "events": events}
        if why:
            rows.append({**row, **empty, "status": f"not computed: {why}"})
            aucs += [{**row, "time_days": float(t), "auc": math.nan, "status": f"not computed: {why}"}
                     for t in s["td_auc_days"]]
            continue
        risk = vals[feature][sub.index].to_numpy()
        rng = concordance.row_seed(s["seed"], cohort, endpoint, feature)
        res = concordance.concordance_with_ci(sub["time"], sub["event"], risk, int(s["bootstrap"]), rng,
                                              s["uno_tau_days"], float(s["alpha"]))
        rows.append({**row, **res, "status": "ok"})
        aucs += [{**row, **r} for r in concordance.td_auc(sub["time"], sub["event"], risk, s["td_auc_days"])]
    if len(s["compare"]) == 2:
        a, b = s["compare"]
        sub, vals, n, events, why = usable([a, b])
        row = {**key, "feature_a": a, "feature_b": b, "n": n, "events": events}
        if why:
            diffs += [{**row, "measure": m, "difference": math.nan, "lower": math.nan, "upper": math.nan,
                       "status": f"not computed: {why}"} for m in ("harrell", "uno")]
        else:
            rng = concordance.row_seed(s["seed"], cohort, endpoint, a, b)
            for r in concordance.c_difference(sub["time"], sub["event"], vals[a][sub.index], vals[b][sub.index],
                                              int(s["bootstrap"]), rng, s["uno_tau_days"], float(s["alpha"])):
                diffs.append({**row, **r, "status": "ok"})
    return rows, aucs, diffs


# --- Table 1 -------------------------------------------------------------------------------------


def table1(features: pd.DataFrame, clinical: pd.DataFrame, s: dict, burden=None) -> pd.DataFrame:
    """Baseline characteristics per cohort (and all): counts with % for text columns, median
    (IQR) for numbers, events per endpoint, and median follow-up by reverse Kaplan-Meier."""
    feats = features.drop(columns=["cohort"]).assign(baseline_sld_mm=baseline_sld(features, burden))
    d = clinical.merge(feats, on="patient_id", how="left")
    variables = [c for c in s["covariates"] if c in d.columns] + [
        c for c in ("line_of_therapy", "baseline_volume_ml", "baseline_n_lesions", "baseline_sld_mm")
        if c in d.columns and c not in s["covariates"]]
    rows = []
    cohorts = sorted(d["cohort"].dropna().astype(str).unique())
    for cohort in cohorts + [POOLED]:
        sub = d if cohort == POOLED else d[d["cohort"] == cohort]
        n = len(sub)
        rows.append({"cohort": cohort, "variable": "patients", "level": "", "n": n, "percent": 100.0,
                     "summary": str(n)})
        for v in variables:
            col = sub[v]
            missing = int(col.isna().sum())
            if pd.api.types.is_numeric_dtype(col) and col.nunique() > 5:
                q1, med, q3 = col.quantile([0.25, 0.5, 0.75])
                rows.append({"cohort": cohort, "variable": v, "level": "", "n": int(col.notna().sum()),
                             "median": med, "q1": q1, "q3": q3, "missing": missing,
                             "summary": f"{med:.4g} ({q1:.4g}\u2013{q3:.4g})"})
            else:
                for lev, k in col.dropna().astype(str).value_counts().sort_index().items():
                    pct = 100.0 * k / max(1, col.notna().sum())
                    rows.append({"cohort": cohort, "variable": v, "level": lev, "n": int(k), "percent": pct,
                                 "missing": missing, "summary": f"{k} ({pct:.0f}%)"})
        for e in s["endpoints"]:
            t, ev = endpoint_columns(e)
            tt = pd.to_numeric(sub[t], errors="coerce")
            ee = pd.to_numeric(sub[ev], errors="coerce")
            ok = tt.notna() & ee.isin([0, 1]) & (tt >= 0)
            k = int(ee[ok].sum())
            rows.append({"cohort": cohort, "variable": f"{e}_events", "level": "", "n": k,
                         "percent": 100.0 * k / max(1, ok.sum()), "summary": f"{k} ({100.0 * k / max(1, ok.sum()):.0f}%)"})
            if ok.sum() and (ee[ok] == 0).any():
                fu = km.km_median(km.km_table(tt[ok], 1 - ee[ok]))  # reverse KM: censoring is the event
                rows.append({"cohort": cohort, "variable": f"{e}_median_followup_days", "level": "",
                             "n": int(ok.sum()), "median": fu, "summary": f"{fu:.0f}"})
    return pd.DataFrame(rows)


# --- driver --------------------------------------------------------------------------------------


def survival_tables(features: pd.DataFrame, clinical: pd.DataFrame, settings: dict | None = None,
                    path="clinical.tsv", burden: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Every survival table as a frame; pure, no I/O."""
    s = {**DEFAULTS, **(settings or {})}
    if s["conf_type"] not in km.CONF_TYPES:
        raise ValueError(f"survival settings: conf_type {s['conf_type']!r} is not log or log-log")
    known = set(features.columns) | {"baseline_sld_mm"}
    for key in ("features", "landmark_features", "compare"):
        unknown = [f for f in s[key] if f not in known]
        if unknown:
            raise ValueError(f"survival settings: {key} {unknown[0]!r} is not a column of the features table "
                             f"(choose from {', '.join(c for c in features.columns if not c.endswith('_reason'))})")
    first_fu = None
    if burden is not None:
        first_fu = burden[burden["days"] > 0].groupby("patient_id")["days"].min()
    out = {k: [] for k in ("km", "km_summary", "survival_at", "logrank", "cox", "zph", "performance", "td_auc",
                           "c_index_difference")}
    exclusions: list[dict] = []
    for cohort, endpoint, data in analysis_sets(features, clinical, s, path, exclusions, burden):
        problem = outcome_problem(data)
        log.info("%s %s: %d patients, %d events%s", cohort, endpoint, len(data), int(data["event"].clip(0, 1).sum()),
                 f" (not analysed: {problem})" if problem else "")
        frames, summaries, at, tests = km_rows(cohort, endpoint, data, s, problem)
        out["km"] += frames
        out["km_summary"] += summaries
        out["survival_at"] += at
        out["logrank"] += tests
        rows, zph = cox_rows(cohort, endpoint, data, s, problem, burden, first_fu)
        out["cox"] += rows
        out["zph"] += zph
        perf, aucs, diffs = performance_rows(cohort, endpoint, data, s, problem)
        out["performance"] += perf
        out["td_auc"] += aucs
        out["c_index_difference"] += diffs
    result = {}
    for name, parts in out.items():
        if not parts:
            result[name] = tables.empty(name)
        elif isinstance(parts[0], pd.DataFrame):
            result[name] = pd.concat(parts, ignore_index=True)
        else:
            result[name] = pd.DataFrame(parts)
    result["km"] = result["km"][list(tables.SCHEMAS["km"])] if len(result["km"]) else tables.empty("km")
    result["table1"] = table1(features, clinical, s, burden)
    result["exclusions"] = pd.DataFrame(exclusions) if exclusions else tables.empty("exclusions")
    return result


def write_survival(features: Path, clinical: Path, out_dir: Path, settings: dict | None = None,
                   burden: Path | None = None) -> dict:
    """Write every survival table (.csv + .parquet) under out_dir."""
    feature_table = tables.read(features, "features")
    clinical_table = read_clinical_table(clinical)
    burden_table = tables.read(burden, "burden") if burden else None
    result = survival_tables(feature_table, clinical_table, settings, path=clinical, burden=burden_table)
    out_dir = Path(out_dir)
    for name, frame in result.items():
        tables.write(frame, out_dir / f"{name}.csv", name, csv=True)
    log.info("wrote %s", ", ".join(f"{n}.csv" for n in result))
    return result
