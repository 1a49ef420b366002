"""Burden kinetics per patient: tables/features.parquet (+ features.csv) and qc/exclusions.tsv.

One row per patient of clinical.tsv that has a baseline scan. Scans of a patient, in order of
days: the baseline scan B is the last scan with days <= 0; scans before it are pre-baseline
(P = the last of them), scans after it are follow-ups F1, F2, ... V is total_volume_ml of
tables/burden, t is days. A patient with no scan, or no scan with days <= 0, is not
featurised and is listed in the exclusions table instead (stage ``features``).

- n_scans: all scans of the patient (pre-baseline included); n_followups: follow-ups.
- baseline_scan_id, baseline_volume_ml = V_B, baseline_n_lesions,
  baseline_n_organs (distinct organs with a lesion at B, from tables/lesions).
- nadir_volume_ml = min(V_B, V_F1, V_F2, ...), the smallest burden on study (V_B when there is
  no follow-up or none is smaller); time_to_nadir_days = t_nadir - t_B (the first scan reaching
  the minimum).
- pct_change_first_fu = 100 (V_F1 - V_B) / V_B.
- best_pct_change = min over follow-ups of 100 (V_Fi - V_B) / V_B (may be positive).
- tgr_pre = 100 (exp(ln(V_B / V_P) / months(t_B - t_P)) - 1): volume growth rate in % per
  month before treatment; tgr_post likewise from B to F1; tgr_ratio = tgr_post / tgr_pre.
  A month is 30.4375 days.
- growth_g, decay_d (per day): Stein model V(t) = V_B (exp(-d t) + exp(g t) - 1) fitted to B and
  all follow-ups (t from B), see ``stein``; needs at least 3 scans from B on; stein_rmse is the
  fit's root-mean-square error on V/V_B.
- new_lesions_any: a new lesion at any follow-up.
- recist_bor: RECIST 1.1 best overall response from the sld_mm series (see ``recist``): CR,
  PR, SD, PD or NE (no follow-up, or no target lesion at baseline);
  recist_first_pd_days: days from B to the first RECIST PD (NaN if none).
- volumetric_response: the volumetric analogue of the BOR, on best_pct_change: CR if the total
  volume reaches 0 at a follow-up, PR if best_pct_change <= volumetric_pr_pct (-65 %, the
  volume of a sphere whose diameter shrinks 30 %), PD if best_pct_change >= volumetric_pd_pct
  (+73 %, diameter +20 %: the burden never fell below that), SD otherwise; NE without a
  follow-up or without baseline burden.

Every feature that can be undefined has a ``<feature>_reason`` column: empty when the feature
is defined, else why not ('single scan', 'no baseline lesion', 'no pre-baseline scan', ...).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tumorburden.study import read_clinical_table
from tumorburden import tables
from tumorburden.kinetics import recist, stein
from tumorburden.kinetics.burden import baseline_scans

log = logging.getLogger(__name__)

DEFAULTS = {
    "volumetric_pr_pct": -65.0,   # volumetric partial response: best % change at or below
    "volumetric_pd_pct": 73.0,    # volumetric progression: best % change at or above
    "recist_pr_pct": -30.0,       # RECIST PR: SLD change vs baseline at or below
    "recist_pd_pct": 20.0,        # RECIST PD: SLD increase vs nadir at or above ...
    "recist_pd_abs_mm": 5.0,      # ... and at least this many mm above the nadir
    "stein_min_scans": 3,         # scans from baseline on needed to fit g and d
    "days_per_month": 30.4375,
}

REASON_FEATURES = ("pct_change_first_fu", "best_pct_change", "tgr_pre", "tgr_post", "tgr_ratio",
                   "growth_g", "decay_d", "stein_rmse", "recist_bor", "volumetric_response")


def growth_rate_pct_per_month(v1: float, v2: float, dt_days: float, days_per_month: float):
    """(TGR in % per month, reason or None)."""
    if dt_days <= 0:
        return math.nan, "scans on the same day"
    if v1 <= 0 or v2 <= 0:
        return math.nan, "no lesion at one of the two scans"
    months = dt_days / days_per_month
    return 100.0 * (math.exp(math.log(v2 / v1) / months) - 1.0), None


def patient_features(pscans: pd.DataFrame, n_organs: int, s: dict) -> dict:
    """Features of one patient from its burden rows (sorted by days); baseline must exist."""
    f: dict = {}
    why: dict = {}
    base_pos = int(np.flatnonzero(pscans["scan_id"].to_numpy() == baseline_scans(pscans).iloc[0])[0])
    b = pscans.iloc[base_pos]
    pre = pscans.iloc[:base_pos]
    fu = pscans.iloc[base_pos + 1:]
    v0, t0 = float(b["total_volume_ml"]), float(b["days"])
    dpm = float(s["days_per_month"])

    f["n_scans"] = len(pscans)
    f["n_followups"] = len(fu)
    f["baseline_scan_id"] = b["scan_id"]
    f["baseline_volume_ml"] = v0
    f["baseline_n_lesions"] = int(b["n_lesions"])
    f["baseline_n_organs"] = int(n_organs)

    on_study = pscans.iloc[base_pos:]
    nadir_pos = int(np.argmin(on_study["total_volume_ml"].to_numpy()))
    f["nadir_volume_ml"] = float(on_study["total_volume_ml"].iloc[nadir_pos])
    f["time_to_nadir_days"] = float(on_study["days"].iloc[nadir_pos]) - t0

    no_fu = "single scan" if len(pscans) == 1 else "no follow-up scan"
    if fu.empty or v0 <= 0:
        reason = no_fu if fu.empty else "no baseline lesion"
        for k in ("pct_change_first_fu", "best_pct_change"):
            f[k], why[k] = math.nan, reason
    else:
        pct = 100.0 * (fu["total_volume_ml"].to_numpy() - v0) / v0
        f["pct_change_first_fu"] = float(pct[0])
        f["best_pct_change"] = float(pct.min())

    if pre.empty:
        f["tgr_pre"], why["tgr_pre"] = math.nan, "no pre-baseline scan"
    else:
        p = pre.iloc[-1]
        f["tgr_pre"], why["tgr_pre"] = growth_rate_pct_per_month(
            float(p["total_volume_ml"]), v0, t0 - float(p["days"]), dpm)
    if fu.empty:
        f["tgr_post"], why["tgr_post"] = math.nan, no_fu
    else:
        f1 = fu.iloc[0]
        f["tgr_post"], why["tgr_post"] = growth_rate_pct_per_month(
            v0, float(f1["total_volume_ml"]), float(f1["days"]) - t0, dpm)
    if math.isnan(f["tgr_pre"]) or math.isnan(f["tgr_post"]):
        f["tgr_ratio"] = math.nan
        why["tgr_ratio"] = "; ".join(f"{k}: {why[k]}" for k in ("tgr_pre", "tgr_post") if why.get(k))
    elif f["tgr_pre"] == 0:
        f["tgr_ratio"], why["tgr_ratio"] = math.nan, "tgr_pre is 0"
    else:
        f["tgr_ratio"] = f["tgr_post"] / f["tgr_pre"]

    stein_keys = ("growth_g", "decay_d", "stein_rmse")
    if len(on_study) < int(s["stein_min_scans"]):
        reason = no_fu if fu.empty else f"fewer than {int(s['stein_min_scans'])} scans from baseline on"
        for k in stein_keys:
            f[k], why[k] = math.nan, reason
    elif v0 <= 0:
        for k in stein_keys:
            f[k], why[k] = math.nan, "no baseline lesion"
    else:
        try:
            g, d, rmse = stein.fit_stein(on_study["days"].to_numpy() - t0, on_study["total_volume_ml"].to_numpy())
            f.update(growth_g=g, decay_d=d, stein_rmse=rmse)
        except RuntimeError as exc:
            for k in stein_keys:
                f[k], why[k] = math.nan, str(exc)

    f["new_lesions_any"] = bool((fu["n_new_lesions"] > 0).any())

    # RECIST from the sum of target diameters
    f["recist_first_pd_days"] = math.nan
    n_targets = int(b["n_target_lesions"]) if "n_target_lesions" in b.index else int(b["sld_mm"] > 0)
    if fu.empty:
        f["recist_bor"], why["recist_bor"] = "NE", no_fu
    elif n_targets == 0 or not np.isfinite(b["sld_mm"]) or b["sld_mm"] <= 0:
        f["recist_bor"], why["recist_bor"] = "NE", "no target lesion at baseline"
    else:
        sld = on_study["sld_mm"].to_numpy(dtype=float)
        if "targets_gone" in on_study.columns:
            gone = on_study["targets_gone"].astype("boolean").fillna(False).to_numpy(dtype=bool)
        else:
            gone = sld == 0
        responses = recist.timepoint_responses(
            sld, on_study["n_new_lesions"].to_numpy() > 0, gone,
            pr_pct=float(s["recist_pr_pct"]), pd_pct=float(s["recist_pd_pct"]),
            pd_abs_mm=float(s["recist_pd_abs_mm"]))
        f["recist_bor"], first_pd = recist.best_overall_response(responses)
        if first_pd is not None:
            f["recist_first_pd_days"] = float(fu["days"].iloc[first_pd]) - t0

    if fu.empty or v0 <= 0:
        f["volumetric_response"], why["volumetric_response"] = "NE", (no_fu if fu.empty else "no baseline lesion")
    elif (fu["total_volume_ml"] <= 0).any():
        f["volumetric_response"] = "CR"
    elif f["best_pct_change"] <= float(s["volumetric_pr_pct"]):
        f["volumetric_response"] = "PR"
    elif f["best_pct_change"] >= float(s["volumetric_pd_pct"]):
        f["volumetric_response"] = "PD"
    else:
        f["volumetric_response"] = "SD"

    for k in REASON_FEATURES:
        f[f"{k}_reason"] = why.get(k)
    return f


def compute_features(burden: pd.DataFrame, lesions: pd.DataFrame, clinical: pd.DataFrame,
                     settings: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, exclusions) from frames; pure, no I/O."""
    s = {**DEFAULTS, **(settings or {})}
    burden = burden.sort_values(["patient_id", "days", "scan_id"], kind="mergesort")
    by_patient = dict(tuple(burden.groupby("patient_id", sort=False)))
    organs = recist.present(lesions).groupby(["patient_id", "scan_id"])["organ"].nunique()
    strays = sorted(set(by_patient) - set(clinical["patient_id"]))
    if strays:
        log.warning("%d patient(s) in the burden table but not in clinical.tsv, ignored: %s",
                    len(strays), ", ".join(strays[:5]))
    base = baseline_scans(burden)
    rows, excluded = [], []
    for pid, cohort in zip(clinical["patient_id"], clinical["cohort"]):
        pscans = by_patient.get(pid)
        if pscans is None or pscans.empty:
            excluded.append(("features", pid, "", "no scan"))
            continue
        if pid not in base:
            first = pscans.iloc[0]
            excluded.append(("features", pid, first["scan_id"],
                             f"no baseline scan (no scan with days <= 0; first scan at day {first['days']:g})"))
            continue
        base_id = base[pid]
        n_organs = int(organs.get((pid, base_id), 0))
        rows.append({"patient_id": pid, "cohort": cohort, **patient_features(pscans, n_organs, s)})
    features = pd.DataFrame(rows) if rows else tables.empty("features")
    for k in REASON_FEATURES:
        col = f"{k}_reason"
        if col not in features.columns:
            features[col] = pd.Series(dtype=object)
    exclusions = pd.DataFrame(excluded, columns=list(tables.SCHEMAS["exclusions"])) if excluded \
        else tables.empty("exclusions")
    return features, exclusions


def write_features(burden: Path, lesions: Path, clinical: Path, out: Path, exclusions_out: Path,
                   settings: dict | None = None) -> pd.DataFrame:
    """Write tables/features.parquet + CSV twin and the exclusions TSV (always, maybe header only)."""
    burden_table = tables.read(burden, "burden")
    lesion_table = tables.read(lesions, "lesions")
    clinical_table = read_clinical_table(clinical)
    features, exclusions = compute_features(burden_table, lesion_table, clinical_table, settings)
    log.info("features of %d patients, %d excluded", len(features), len(exclusions))
    tables.write(features, out, "features", csv=True)
    tables.write(exclusions, exclusions_out, "exclusions")
    return features
