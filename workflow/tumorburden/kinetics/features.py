"""Burden kinetics per patient: tables/features.parquet (+ features.csv) and qc/exclusions.tsv.

One row per patient of clinical.tsv that has a baseline scan. Scans of a patient, in order of
days: the baseline scan B is the last scan with days <= 0; scans before it are pre-baseline
(P = the last of them), scans after it are follow-ups F1, F2, ... V is total_volume_ml of
tables/burden, t is days. A patient with no scan, or no scan with days <= 0, is not
featurised and is listed in the exclusions table instead (stage ``features``).

- n_scans: all scans of the patient (pre-baseline included); n_followups: follow-ups.
- baseline_scan_id, baseline_volume_ml = V_B, baseline_n_lesions,
  baseline_n_organs (distinct organs with a lesion at B, from tables/lesions), liver_involvement
  (a liver lesion present at B: a covariate for the survival models; kinetics/sites.py).
- nadir_volume_ml = min(V_B, V_F1, V_F2, ...), the smallest burden on study (V_B when there is
  no follow-up or none is smaller); time_to_nadir_days = t_nadir - t_B (the first scan reaching
  the minimum).
- pct_change_first_fu = 100 (V_F1 - V_B) / V_B.
- best_pct_change = min over follow-ups of 100 (V_Fi - V_B) / V_B (may be positive).
- tgr_pre = 100 (exp(ln(V_B / V_P) / months(t_B - t_P)) - 1): volume growth rate in % per
  month before treatment; tgr_post likewise from B to F1; tgr_ratio = tgr_post / tgr_pre.
  A month is 30.4375 days.
- hyperprogression (Champiat et al., Clin Cancer Res 2017): RECIST PD at the first follow-up
  and tgr_ratio >= ``hyperprogression_tgr_ratio`` (2) with tgr_pre > 0; undefined without
  tgr_ratio or with a shrinking or stable burden before treatment (tgr_pre <= 0).
- stein_model, growth_g, decay_d (per day), stein_phi, stein_rmse: the Stein model chosen
  tumgr's way (see ``stein``) among gd, gx (g only), dx (d only) and gdphi, fitted on
  V / V_B of B and every follow-up (t from B); needs ``stein_min_scans`` scans from B on.
  g is undefined when the chosen model has no growth term (reason names it), d likewise.
- new_lesions_any: a new lesion at any follow-up; time_to_new_lesion_days = t of the first
  follow-up with a new lesion - t_B (undefined, with the last follow-up day in the reason, if none).
- recist_bor: the RECIST 1.1 best overall response from the per-scan recist_response of
  tables/burden (see ``recist``): CR, PR, SD, PD or NE; recist_first_pd_days: t of the first
  RECIST PD - t_B.
- volumetric_response: the best overall response from the per-scan volumetric_response
  (RECIST's rules on the total volume: PR <= -65 %, the volume of a sphere whose diameter
  shrinks 30 %; PD >= +73 % above the nadir, diameter +20 %, or a new lesion);
  time_to_volumetric_progression_days: t of the first volumetric PD - t_B.

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
from tumorburden.baseline import baseline_scans
from tumorburden.kinetics import recist, stein
from tumorburden.kinetics.burden import assess_responses
from tumorburden.kinetics.sites import liver_involvement

log = logging.getLogger(__name__)

DEFAULTS = {
    "stein_min_scans": 3,         # scans from baseline on needed to fit g and d
    "stein_alpha": 0.05,          # a Stein model is usable when all its parameters have p below this
    "stein_models": ["gd", "gx", "dx", "gdphi"],  # candidates (tumgr's four)
    "hyperprogression_tgr_ratio": 2.0,  # Champiat: TGR after / before treatment at or above
    "days_per_month": 30.4375,
}

REASON_FEATURES = ("pct_change_first_fu", "best_pct_change", "tgr_pre", "tgr_post", "tgr_ratio",
                   "hyperprogression", "stein_model", "growth_g", "decay_d", "stein_phi", "stein_rmse",
                   "time_to_new_lesion_days", "recist_bor", "recist_first_pd_days", "volumetric_response",
                   "time_to_volumetric_progression_days")


def growth_rate_pct_per_month(v1: float, v2: float, dt_days: float, days_per_month: float):
    """(TGR in % per month, reason or None)."""
    if dt_days <= 0:
        return math.nan, "scans on the same day"
    if v1 <= 0 or v2 <= 0:
        return math.nan, "no lesion at one of the two scans"
    months = dt_days / days_per_month
    return 100.0 * (math.exp(math.log(v2 / v1) / months) - 1.0), None


STEIN_KEYS = ("stein_model", "growth_g", "decay_d", "stein_phi", "stein_rmse")


def _stein_features(f: dict, why: dict, on_study: pd.DataFrame, v0: float, no_fu: str, no_followup: bool,
                    s: dict) -> None:
    f.update(stein_model=None, growth_g=math.nan, decay_d=math.nan, stein_phi=math.nan, stein_rmse=math.nan)
    minimum = int(s["stein_min_scans"])
    if len(on_study) < minimum:
        reason = no_fu if no_followup else f"fewer than {minimum} scans from baseline on"
    elif v0 <= 0:
        reason = "no baseline lesion"
    else:
        choice = stein.choose_model(on_study["days"].to_numpy(float) - float(on_study["days"].iloc[0]),
                                    on_study["total_volume_ml"].to_numpy(float), alpha=float(s["stein_alpha"]),
                                    models=s["stein_models"])
        if choice.model is None:
            reason = choice.g_reason
        else:
            f.update(stein_model=choice.model, growth_g=choice.g, decay_d=choice.d, stein_phi=choice.phi,
                     stein_rmse=choice.rmse)
            if choice.g_reason:
                why["growth_g"] = choice.g_reason
            if choice.d_reason:
                why["decay_d"] = choice.d_reason
            if choice.model != "gdphi":
                why["stein_phi"] = f"model {choice.model} chosen (phi only in gdphi)"
            return
    for k in STEIN_KEYS:
        why[k] = reason


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

    _stein_features(f, why, on_study, v0, no_fu, fu.empty, s)

    last_day = float(fu["days"].iloc[-1]) - t0 if len(fu) else math.nan
    new_at = np.flatnonzero(fu["n_new_lesions"].to_numpy() > 0)
    f["new_lesions_any"] = bool(new_at.size)
    if new_at.size:
        f["time_to_new_lesion_days"] = float(fu["days"].iloc[new_at[0]]) - t0
    else:
        f["time_to_new_lesion_days"] = math.nan
        why["time_to_new_lesion_days"] = no_fu if fu.empty else f"no new lesion up to day {last_day:g}"

    for key, column, first_key in (("recist_bor", "recist_response", "recist_first_pd_days"),
                                   ("volumetric_response", "volumetric_response",
                                    "time_to_volumetric_progression_days")):
        responses = list(fu[column]) if column in fu.columns else []
        f[key], first_pd = recist.best_overall_response(responses)
        f[first_key] = math.nan if first_pd is None else float(fu["days"].iloc[first_pd]) - t0
        if fu.empty:
            why[key] = why[first_key] = no_fu
            continue
        if f[key] == "NE":
            if key == "recist_bor":
                why[key] = ("no target lesion at baseline" if int(b.get("n_target_lesions", 0)) == 0
                            else "no evaluable follow-up")
            else:
                why[key] = "no baseline lesion" if v0 <= 0 else "no evaluable follow-up"
        if first_pd is None:
            why[first_key] = f"no progression up to day {last_day:g}"

    f["hyperprogression"] = pd.NA
    if math.isnan(f["tgr_ratio"]):
        why["hyperprogression"] = f"tgr_ratio undefined ({why['tgr_ratio']})"
    elif f["tgr_pre"] <= 0:
        why["hyperprogression"] = "no growth before treatment (tgr_pre <= 0)"
    else:
        first_pd = str(fu["recist_response"].iloc[0]) == "PD" if "recist_response" in fu.columns else False
        f["hyperprogression"] = bool(first_pd and f["tgr_ratio"] >= float(s["hyperprogression_tgr_ratio"]))

    for k in REASON_FEATURES:
        f[f"{k}_reason"] = why.get(k)
    return f


def compute_features(burden: pd.DataFrame, lesions: pd.DataFrame, clinical: pd.DataFrame,
                     settings: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, exclusions) from frames; pure, no I/O."""
    s = {**DEFAULTS, **(settings or {})}
    burden = burden.sort_values(["patient_id", "days", "scan_id"], kind="mergesort")
    if "recist_response" not in burden.columns:  # a burden frame made by hand, without responses
        burden = assess_responses(burden, settings)
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
    if rows:
        features["liver_involvement"] = liver_involvement(
            lesions, features.set_index("patient_id")["baseline_scan_id"]).to_numpy()
    for k in REASON_FEATURES:
        col = f"{k}_reason"
        if col not in features.columns:
            features[col] = pd.Series(dtype=object)
    if "hyperprogression" in features.columns:
        features["hyperprogression"] = features["hyperprogression"].astype("boolean")
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
