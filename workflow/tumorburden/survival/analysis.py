"""Survival analysis per cohort x endpoint: survival/km.csv, logrank.csv, cox.csv, performance.csv.

Each table is written as CSV with a Parquet twin. Analysed sets: every cohort of clinical.tsv
(sorted), plus ``all`` (every cohort together) when ``pooled`` is true; endpoints from
``endpoints`` (``pfs`` reads pfs_days / pfs_event of clinical.tsv, ``os`` reads os_days /
os_event, any other name ``<name>_days`` / ``<name>_event``). A patient enters an analysis when
it has a features row (a baseline scan) and both endpoint columns are filled.

- km: Kaplan-Meier step function (lifelines; log-log 95 % band) for stratifier ``none``
  (group ``all``) and stratifier ``baseline_volume_median``: ``low`` = baseline_volume_ml <=
  the median of the analysed set, ``high`` above it (for ``all``: the median of the pooled set).
- logrank: log-rank test of low vs high (unstratified, also for ``all``: lifelines has no
  stratified log-rank).
- cox: univariable Cox (Efron ties) on log_baseline_volume_ml = ln(baseline_volume_ml +
  ``volume_offset_ml``); the offset (0.1 mL, about the smallest measurable lesion) keeps
  patients without a lesion in the model. Model ``univariable`` per cohort,
  ``univariable_strata_cohort`` for ``all`` (a baseline hazard per cohort). A model that cannot
  be fitted (too few patients or events, a constant covariate, no convergence) is a row with
  status ``not fitted: <reason>``.
- performance: Harrell's and Uno's C of each feature in ``features`` as a risk score (higher =
  higher risk), with percentile 95 % CI from ``bootstrap`` replicates seeded from ``seed``.
  Caution: features measured after baseline (e.g. pct_change_first_fu) are scored from
  baseline on, which favours patients who lived to their first follow-up (guarantee-time bias);
  a landmark analysis is the unbiased alternative.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tumorburden import tables
from tumorburden.study import read_clinical_table
from tumorburden.survival import concordance, cox, km

log = logging.getLogger(__name__)

DEFAULTS = {
    "endpoints": ["pfs", "os"],
    "pooled": True,                 # also analyse all cohorts together (Cox stratified by cohort)
    "features": ["baseline_volume_ml", "pct_change_first_fu"],  # scored by C-index
    "bootstrap": 200,               # bootstrap replicates for the C-index CIs (0: no CI)
    "seed": 7,
    "volume_offset_ml": 0.1,        # ln(V + offset) in the Cox model
    "min_patients": 10,             # fewer: Cox / C-index not fitted
    "min_events": 3,
    "alpha": 0.05,                  # 1 - confidence level of KM bands and Cox CIs
    "uno_tau_days": None,           # truncation time of Uno's C (None: no truncation)
}

POOLED = "all"
STRATIFIER = "baseline_volume_median"
COX_TERM = "log_baseline_volume_ml"


def endpoint_columns(endpoint: str) -> tuple[str, str]:
    return f"{endpoint}_days", f"{endpoint}_event"


def _endpoint_data(clinical: pd.DataFrame, endpoint: str, path) -> pd.DataFrame:
    days_col, event_col = endpoint_columns(endpoint)
    missing = [c for c in (days_col, event_col) if c not in clinical.columns]
    if missing:
        raise ValueError(f"{path}: endpoint {endpoint!r} needs column(s) {', '.join(missing)} "
                         f"(add them or remove {endpoint!r} from survival endpoints)")
    days = pd.to_numeric(clinical[days_col], errors="coerce")
    event = pd.to_numeric(clinical[event_col], errors="coerce")
    for col, values in ((days_col, days), (event_col, event)):
        bad = clinical.loc[values.isna() & clinical[col].notna(), "patient_id"].tolist()
        if bad:
            raise ValueError(f"{path}: patient {bad[0]} has a non-numeric {col} (give a number or leave it empty)")
    neg = clinical.loc[days < 0, "patient_id"].tolist()
    if neg:
        raise ValueError(f"{path}: patient {neg[0]} has negative {days_col} (times run from baseline, >= 0)")
    off = clinical.loc[event.notna() & ~event.isin([0, 1]), "patient_id"].tolist()
    if off:
        raise ValueError(f"{path}: patient {off[0]} has {event_col} not 0 or 1 (1 = event, 0 = censored)")
    out = pd.DataFrame({"patient_id": clinical["patient_id"], "time": days, "event": event})
    dropped = out[out[["time", "event"]].isna().any(axis=1)]
    if len(dropped):
        log.warning("%s: %d patient(s) without %s data left out of %s analyses",
                    path, len(dropped), endpoint, endpoint)
    return out.dropna(subset=["time", "event"]).astype({"event": "int64"})


def analysis_sets(features: pd.DataFrame, clinical: pd.DataFrame, s: dict, path="clinical.tsv"):
    """Yield (cohort, endpoint, frame): frame has patient_id, cohort, time, event, features."""
    cohorts = sorted(clinical["cohort"].dropna().unique())
    if s["pooled"] and POOLED in cohorts:
        raise ValueError(f"{path}: a cohort is named {POOLED!r}, which names the pooled analysis "
                         f"(rename the cohort or set survival pooled: false)")
    feats = features.drop(columns=["cohort"]).merge(clinical[["patient_id", "cohort"]], on="patient_id")
    for endpoint in s["endpoints"]:
        data = feats.merge(_endpoint_data(clinical, endpoint, path), on="patient_id", how="inner")
        data = data.sort_values("patient_id", kind="mergesort").reset_index(drop=True)
        for cohort in cohorts + ([POOLED] if s["pooled"] else []):
            sub = data if cohort == POOLED else data[data["cohort"] == cohort]
            yield cohort, endpoint, sub.reset_index(drop=True)


def burden_groups(volume: pd.Series) -> pd.Series:
    """'low' at or below the median of the set, 'high' above it."""
    return pd.Series(np.where(volume <= volume.median(), "low", "high"), index=volume.index)


def km_rows(cohort, endpoint, data, alpha) -> tuple[list[pd.DataFrame], dict | None]:
    frames = []
    key = {"cohort": cohort, "endpoint": endpoint}
    if data.empty:
        return frames, {**key, "stratifier": STRATIFIER, "groups": "", "n": 0, "events": 0,
                        "chisq": math.nan, "df": 0, "p": math.nan, "status": "not tested: no patients"}
    t = km.km_table(data["time"], data["event"], alpha)
    frames.append(t.assign(**key, stratifier="none", group="all"))
    groups = burden_groups(data["baseline_volume_ml"])
    for g in ("low", "high"):
        sel = (groups == g).to_numpy()
        if sel.any():
            t = km.km_table(data.loc[sel, "time"], data.loc[sel, "event"], alpha)
            frames.append(t.assign(**key, stratifier=STRATIFIER, group=g))
    present = [g for g in ("low", "high") if (groups == g).any()]
    test = km.logrank(data["time"], data["event"], groups.to_numpy())
    return frames, {**key, "stratifier": STRATIFIER, "groups": ",".join(present), **test}


def performance_rows(cohort, endpoint, data, s) -> list[dict]:
    rows = []
    for feature in s["features"]:
        values = pd.to_numeric(data[feature].astype("float64"), errors="coerce")
        sub = data.assign(**{feature: values})[np.isfinite(values.to_numpy())]
        n, events = len(sub), int(sub["event"].sum())
        row = {"cohort": cohort, "endpoint": endpoint, "feature": feature, "n": n, "events": events}
        empty = {k: math.nan for k in ("c_index", "c_index_lower", "c_index_upper", "c_index_uno",
                                       "c_index_uno_lower", "c_index_uno_upper")}
        if n < int(s["min_patients"]):
            rows.append({**row, **empty, "status": f"not computed: too few patients ({n} < {s['min_patients']})"})
        elif events < int(s["min_events"]):
            rows.append({**row, **empty, "status": f"not computed: too few events ({events} < {s['min_events']})"})
        elif sub[feature].nunique() < 2:
            rows.append({**row, **empty, "status": f"not computed: constant {feature}"})
        else:
            rng = concordance.row_seed(s["seed"], cohort, endpoint, feature)
            res = concordance.concordance_with_ci(sub["time"], sub["event"], sub[feature], int(s["bootstrap"]),
                                                  rng, s["uno_tau_days"])
            rows.append({**row, **res, "status": "ok"})
    return rows


def survival_tables(features: pd.DataFrame, clinical: pd.DataFrame, settings: dict | None = None,
                    path="clinical.tsv") -> dict[str, pd.DataFrame]:
    """{'km', 'logrank', 'cox', 'performance'} frames; pure, no I/O."""
    s = {**DEFAULTS, **(settings or {})}
    unknown = [f for f in s["features"] if f not in features.columns]
    if unknown:
        raise ValueError(f"survival settings: feature {unknown[0]!r} is not a column of the features table "
                         f"(choose from {', '.join(c for c in features.columns if not c.endswith('_reason'))})")
    km_frames, logranks, coxes, perf = [], [], [], []
    for cohort, endpoint, data in analysis_sets(features, clinical, s, path):
        log.info("%s %s: %d patients, %d events", cohort, endpoint, len(data), int(data["event"].sum()))
        frames, test = km_rows(cohort, endpoint, data, float(s["alpha"]))
        km_frames += frames
        logranks.append(test)
        model_data = data.assign(**{COX_TERM: np.log(data["baseline_volume_ml"] + float(s["volume_offset_ml"]))})
        pooled = cohort == POOLED
        for r in cox.fit_cox(model_data, "time", "event", [COX_TERM], strata=["cohort"] if pooled else None,
                             min_patients=int(s["min_patients"]), min_events=int(s["min_events"]),
                             alpha=float(s["alpha"])):
            coxes.append({"cohort": cohort, "endpoint": endpoint,
                          "model": "univariable_strata_cohort" if pooled else "univariable", **r,
                          "volume_offset_ml": float(s["volume_offset_ml"])})
        perf += performance_rows(cohort, endpoint, data, s)
    km_cols = list(tables.SCHEMAS["km"])
    return {
        "km": pd.concat(km_frames, ignore_index=True)[km_cols] if km_frames else tables.empty("km"),
        "logrank": pd.DataFrame(logranks) if logranks else tables.empty("logrank"),
        "cox": pd.DataFrame(coxes) if coxes else tables.empty("cox"),
        "performance": pd.DataFrame(perf) if perf else tables.empty("performance"),
    }


def write_survival(features: Path, clinical: Path, out_dir: Path, settings: dict | None = None) -> dict:
    """Write km, logrank, cox and performance (.csv + .parquet) under out_dir."""
    feature_table = tables.read(features, "features")
    clinical_table = read_clinical_table(clinical)
    result = survival_tables(feature_table, clinical_table, settings, path=clinical)
    out_dir = Path(out_dir)
    for name, frame in result.items():
        tables.write(frame, out_dir / f"{name}.csv", name, csv=True)
    log.info("wrote %s", ", ".join(f"{n}.csv" for n in result))
    return result
