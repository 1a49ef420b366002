"""Output table schemas, declared once and checked where a table is written and read.

Each schema lists required columns and their kinds. A table may carry extra columns
(e.g. reason columns, covariates); required ones must be present with the right kind.
Kinds: "str", "float", "int", "bool". Integer columns may be nullable (pandas Int64).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

# The columns of an IPCW Brier / IPA / AUC score (survival/score.py), at a horizon (score) or in a
# landmark window (dynamic_accuracy).
_SCORE_COLUMNS = {
    "n": "int",
    "cases": "int",
    "controls": "int",
    "censored_before": "int",
    "brier": "float",
    "brier_se": "float",
    "brier_lower": "float",
    "brier_upper": "float",
    "ipa": "float",
    "auc": "float",
    "auc_se": "float",
    "auc_lower": "float",
    "auc_upper": "float",
    "status": "str",
}

SCHEMAS: dict[str, dict[str, str]] = {
    # scans/<scan_id>/lesions.parquet: one row per lesion of one scan
    "scan_lesions": {
        "patient_id": "str",
        "scan_id": "str",
        "lesion": "int",
        "volume_ml": "float",
        "longest_diameter_mm": "float",
        "short_axis_mm": "float",
        "centroid_x_mm": "float",
        "centroid_y_mm": "float",
        "centroid_z_mm": "float",
        "mean_hu": "float",
        "organ": "str",
    },
    # scans/<scan_id>/tissue.parquet: one row per scan, body composition volumes
    "scan_tissue": {
        "patient_id": "str",
        "scan_id": "str",
        "muscle_ml": "float",
        "sat_ml": "float",
        "vat_ml": "float",
    },
    # scans/<scan_id>/l3.parquet: body composition on the axial slice at the middle of L3 (lesions/l3.py)
    "scan_l3": {
        "patient_id": "str",
        "scan_id": "str",
        "l3_slice_mm": "float",
        "l3_muscle_cm2": "float",
        "l3_sat_cm2": "float",
        "l3_vat_cm2": "float",
        "l3_reason": "str",
    },
    # qc/ingest/<patient_id>.tsv: one row per scan of the patient's ingest job (each scan's image:
    # scans/<scan_id>/image.nii.gz, its QC: qc/ingest/<scan_id>.json)
    "ingest_record": {
        "patient_id": "str",
        "scan_id": "str",
        "size_i": "int",
        "size_j": "int",
        "size_k": "int",
        "spacing_i_mm": "float",
        "spacing_j_mm": "float",
        "spacing_k_mm": "float",
    },
    # qc/segment/<patient_id>.tsv: one row per scan of the patient's segmentation job (what the
    # workflow tracks for the job; each scan's label map is scans/<scan_id>/segmentation.nii.gz)
    "segment_record": {
        "patient_id": "str",
        "scan_id": "str",
        "engine": "str",
        "lesions_from": "str",
        "body_composition_from": "str",
        "lesion_ml": "float",
        "muscle_ml": "float",
        "sat_ml": "float",
        "vat_ml": "float",
    },
    # qc/measure/<patient_id>.tsv: one row per scan of the patient's registration + measurement job
    # (each scan's files: scans/<scan_id>/lesions.parquet, tissue.parquet, to_reference.json)
    "measure_record": {
        "patient_id": "str",
        "scan_id": "str",
        "reference_scan_id": "str",
        "registration_status": "str",
        "n_lesions": "int",
        "lesion_ml": "float",
    },
    # tables/lesions.parquet: lesion x scan, with tracks
    "lesions": {
        "patient_id": "str",
        "scan_id": "str",
        "days": "float",
        "lesion": "int",
        "track_id": "int",
        "status": "str",
        "volume_ml": "float",
        "longest_diameter_mm": "float",
        "short_axis_mm": "float",
        "centroid_x_mm": "float",
        "centroid_y_mm": "float",
        "centroid_z_mm": "float",
        "mean_hu": "float",
        "organ": "str",
    },
    # tables/review.parquet (one row per scan) and scans/<scan_id>/review/agreement.parquet (the
    # reviewed scan's row): the model's lesions against the radiologist's (lesions/review.py)
    "review": {
        "patient_id": "str",
        "scan_id": "str",
        "reviewed": "bool",
        "review_kind": "str",  # SEG | RTSTRUCT | none
        "ai_n_lesions": "int",
        "reviewed_n_lesions": "int",
        "lesions_confirmed": "int",
        "lesions_edited": "int",
        "lesions_added": "int",
        "lesions_removed": "int",
        "ai_volume_ml": "float",
        "reviewed_volume_ml": "float",
        "volume_difference_ml": "float",
        "dice": "float",
        "reviews_passed_over": "int",  # other reviews of the scan not taken (an older correction)
        "passed_over": "str",  # each: its kind and hashed file name, and why ("; "-separated)
    },
    # tables/burden.parquet: one row per scan
    "burden": {
        "patient_id": "str",
        "scan_id": "str",
        "days": "float",
        "total_volume_ml": "float",
        "n_lesions": "int",
        "n_new_lesions": "int",
        "sld_mm": "float",
        "muscle_ml": "float",
        "sat_ml": "float",
        "vat_ml": "float",
        "pct_change_volume": "float",
        "pct_change_sld": "float",
        "recist_response": "str",
        "volumetric_response": "str",
    },
    # tables/site_burden.parquet: scan x site (liver, lung, node, other), kinetics/sites.py
    "site_burden": {
        "patient_id": "str",
        "scan_id": "str",
        "days": "float",
        "site": "str",
        "volume_ml": "float",
        "n_lesions": "int",
        "pct_change_volume": "float",
    },
    # tables/site_kinetics.parquet: patient x site, from the baseline scan on (kinetics/sites.py)
    "site_kinetics": {
        "patient_id": "str",
        "site": "str",
        "baseline_scan_id": "str",
        "baseline_volume_ml": "float",
        "involved": "bool",
        "nadir_volume_ml": "float",
        "time_to_nadir_days": "float",
        "pct_change_first_fu": "float",
        "best_pct_change": "float",
        "pct_change_reason": "str",
    },
    # tables/body_composition.parquet: one row per scan, whole-volume and at L3 (kinetics/bodycomp.py)
    "body_composition": {
        "patient_id": "str",
        "scan_id": "str",
        "days": "float",
        "muscle_ml": "float",
        "sat_ml": "float",
        "vat_ml": "float",
        "l3_slice_mm": "float",
        "l3_muscle_cm2": "float",
        "l3_sat_cm2": "float",
        "l3_vat_cm2": "float",
        "l3_reason": "str",
        "height_cm": "float",
        "smi_cm2_m2": "float",
        "smi_reason": "str",
        "sarcopenia": "bool",
        "sarcopenia_reason": "str",
    },
    # tables/features.parquet: one row per patient
    "features": {
        "patient_id": "str",
        "cohort": "str",
        "n_scans": "int",
        "baseline_scan_id": "str",
        "baseline_volume_ml": "float",
        "baseline_n_lesions": "int",
        "nadir_volume_ml": "float",
        "time_to_nadir_days": "float",
        "pct_change_first_fu": "float",
        "best_pct_change": "float",
        "tgr_pre": "float",
        "tgr_post": "float",
        "tgr_ratio": "float",
        "growth_g": "float",
        "decay_d": "float",
        "new_lesions_any": "bool",
        "recist_bor": "str",
        "volumetric_response": "str",
        "time_to_new_lesion_days": "float",
        "time_to_volumetric_progression_days": "float",
        "stein_model": "str",
    },
    # pacs/pushed/<patient_id>.tsv: what `tumorburden pacs push` sent, one row per scan
    "pushed": {
        "patient_id": "str",
        "scan_id": "str",
        "n_lesions": "int",
        "seg_bytes": "int",
        "sr_bytes": "int",
        "server": "str",
    },
    # qc/exclusions.tsv
    "exclusions": {
        "stage": "str",
        "patient_id": "str",
        "scan_id": "str",
        "reason": "str",
    },
    # survival/km.csv: the Kaplan-Meier step function per group
    "km": {
        "cohort": "str",
        "endpoint": "str",
        "stratifier": "str",
        "group": "str",
        "time_days": "float",
        "survival": "float",
        "ci_lower": "float",
        "ci_upper": "float",
        "at_risk": "int",
        "events": "int",
        "censored": "int",
    },
    "logrank": {
        "cohort": "str",
        "endpoint": "str",
        "stratifier": "str",
        "groups": "str",
        "n": "int",
        "events": "int",
        "chisq": "float",
        "df": "int",
        "p": "float",
        "status": "str",
        "test": "str",  # logrank | stratified | trend | maxstat
    },
    "cox": {
        "cohort": "str",
        "endpoint": "str",
        "model": "str",
        "term": "str",
        "hr": "float",
        "hr_lower": "float",
        "hr_upper": "float",
        "p": "float",
        "n": "int",
        "events": "int",
        "status": "str",
        "coef": "float",
        "se": "float",
        "wald_p": "float",  # global tests of the model, as R's summary(coxph)
        "lr_p": "float",
        "score_p": "float",
        "zph_global_p": "float",  # the model's cox.zph GLOBAL p (as zph.csv)
        "nonproportional": "bool",  # zph_global_p < alpha: read RMST beside the HR (docs/survival.md)
    },
    # survival/km_summary.csv: one row per curve
    "km_summary": {
        "cohort": "str",
        "endpoint": "str",
        "stratifier": "str",
        "group": "str",
        "n": "int",
        "events": "int",
        "median_days": "float",
        "median_lower": "float",
        "median_upper": "float",
        "conf_type": "str",
    },
    # survival/survival_at.csv: S(t) at set times per curve
    "survival_at": {
        "cohort": "str",
        "endpoint": "str",
        "stratifier": "str",
        "group": "str",
        "time_days": "float",
        "survival": "float",
        "ci_lower": "float",
        "ci_upper": "float",
        "at_risk": "int",
    },
    # survival/zph.csv: proportional-hazards tests (R cox.zph) per Cox model term and GLOBAL
    "zph": {
        "cohort": "str",
        "endpoint": "str",
        "model": "str",
        "model_terms": "str",
        "term": "str",
        "chisq": "float",
        "df": "int",
        "p": "float",
        "status": "str",
    },
    "td_auc": {
        "cohort": "str",
        "endpoint": "str",
        "feature": "str",
        "time_days": "float",
        "auc": "float",
    },
    "c_index_difference": {
        "cohort": "str",
        "endpoint": "str",
        "feature_a": "str",
        "feature_b": "str",
        "difference": "float",
        "lower": "float",
        "upper": "float",
    },
    # survival/score.csv: IPCW Brier, IPA and AUC(t) per horizon and model, as riskRegression::Score
    # (survival/score.py); model "null model" is the marginal Kaplan-Meier
    "score": {
        "cohort": "str",
        "endpoint": "str",
        "time_days": "float",
        "model": "str",
        **_SCORE_COLUMNS,
    },
    # survival/score_contrast.csv: model - reference at each horizon, influence-function CIs, as
    # riskRegression::Score's contrasts (survival/score.py)
    "score_contrast": {
        "cohort": "str",
        "endpoint": "str",
        "time_days": "float",
        "model": "str",
        "reference": "str",
        "delta_brier": "float",
        "delta_brier_se": "float",
        "delta_brier_lower": "float",
        "delta_brier_upper": "float",
        "delta_brier_p": "float",
        "delta_auc": "float",
        "delta_auc_se": "float",
        "delta_auc_lower": "float",
        "delta_auc_upper": "float",
        "delta_auc_p": "float",
        "status": "str",
    },
    # survival/decision_curve.csv: net benefit per horizon, threshold and model (survival/decision.py);
    # models "treat all" and "treat none" are the references
    "decision_curve": {
        "cohort": "str",
        "endpoint": "str",
        "time_days": "float",
        "threshold": "float",
        "model": "str",
        "n": "int",
        "n_treated": "int",
        "net_benefit": "float",
        "status": "str",
    },
    # survival/rmst.csv: restricted mean survival time to tau per group (survival/rmst.py)
    "rmst": {
        "cohort": "str",
        "endpoint": "str",
        "group": "str",
        "n": "int",
        "events": "int",
        "tau_days": "float",
        "rmst": "float",
        "se": "float",
        "lower": "float",
        "upper": "float",
        "status": "str",
        "note": "str",
    },
    # survival/rmst_contrast.csv: each group's RMST against the reference group's
    "rmst_contrast": {
        "cohort": "str",
        "endpoint": "str",
        "group": "str",
        "reference": "str",
        "tau_days": "float",
        "difference": "float",
        "difference_lower": "float",
        "difference_upper": "float",
        "difference_p": "float",
        "ratio": "float",
        "ratio_lower": "float",
        "ratio_upper": "float",
        "ratio_p": "float",
        "status": "str",
    },
    # survival/validation.csv: bootstrap optimism-corrected indices per model set, as
    # rms::validate.cph (+ IPCW Brier at horizons) (survival/validation.py, survival/prediction.py)
    "validation": {
        "cohort": "str",
        "endpoint": "str",
        "model_set": "str",
        "covariates": "str",
        "n": "int",
        "events": "int",
        "index": "str",
        "horizon_days": "float",
        "apparent": "float",
        "optimism": "float",
        "corrected": "float",
        "n_replicates": "int",
        "procedure": "str",
        "status": "str",
    },
    # survival/calibration.csv: grouped (rms::calibrate KM) and smooth calibration per horizon, and
    # summary statistics (in the large, O/E, slope, ICI) (survival/calibration.py)
    "calibration": {
        "cohort": "str",
        "endpoint": "str",
        "model_set": "str",
        "horizon_days": "float",
        "method": "str",
        "group": "str",
        "predicted": "float",
        "observed": "float",
        "observed_lower": "float",
        "observed_upper": "float",
        "optimism": "float",
        "corrected": "float",
        "statistic": "str",
        "value": "float",
        "status": "str",
    },
    # survival/model_comparison.csv: each model set against the one before it (LR test, C, AUC(t),
    # Brier(t) differences with CIs) (survival/prediction.py)
    "model_comparison": {
        "cohort": "str",
        "endpoint": "str",
        "model_set": "str",
        "reference": "str",
        "measure": "str",
        "time_days": "float",
        "difference": "float",
        "lower": "float",
        "upper": "float",
        "df": "float",
        "p": "float",
        "method": "str",
        "status": "str",
    },
    # survival/truth_comparison.csv (synthetic trials): corrected C and slope of each model set and
    # the simulator's true linear predictor
    "truth_comparison": {
        "cohort": "str",
        "endpoint": "str",
        "model_set": "str",
        "n": "int",
        "c_corrected": "float",
        "slope_corrected": "float",
        "note": "str",
    },
    # survival/tripod_summary.csv: one row per cohort x endpoint x model set x horizon, the numbers
    # a TRIPOD table cites (survival/prediction.py)
    "tripod_summary": {
        "cohort": "str",
        "endpoint": "str",
        "model_set": "str",
        "horizon_days": "float",
        "n": "int",
        "events": "int",
        "c_apparent": "float",
        "c_corrected": "float",
        "slope_corrected": "float",
        "r2_corrected": "float",
        "brier_corrected": "float",
        "ipa": "float",
        "auc": "float",
        "auc_lower": "float",
        "auc_upper": "float",
        "calibration_in_the_large": "float",
        "observed_expected_ratio": "float",
        "ici": "float",
        "reference": "str",
        "delta_c": "float",
        "delta_c_lower": "float",
        "delta_c_upper": "float",
        "lr_p": "float",
    },
    # survival/landmark_model.csv: the landmark super-model's and the baseline-only Cox model's terms
    # (survival/landmark.py); robust SEs clustered on patients
    "landmark_model": {
        "cohort": "str",
        "endpoint": "str",
        "model": "str",
        "term": "str",
        "coef": "float",
        "se": "float",
        "robust_se": "float",
        "hr": "float",
        "hr_lower": "float",
        "hr_upper": "float",
        "p": "float",
        "n_rows": "int",
        "n_patients": "int",
        "events": "int",
        "status": "str",
    },
    # survival/dynamic_predictions.parquet: what every dynamic model hands over (landmark super-model,
    # baseline Cox, joint model): P(alive and event-free at landmark + window | scans up to scan_id)
    "dynamic_prediction": {
        "cohort": "str",
        "endpoint": "str",
        "patient_id": "str",
        "scan_id": "str",
        "landmark_days": "float",
        "window_days": "float",
        "model": "str",
        "predicted_survival": "float",
    },
    # survival/joint_model.csv: joint model of ln burden and survival per cohort x endpoint
    # (survival/joint.py): one row per parameter; hr columns on the association and covariate terms
    "joint_model": {
        "cohort": "str",
        "endpoint": "str",
        "association": "str",   # value | value+slope
        "term": "str",
        "estimate": "float",
        "se": "float",
        "lower": "float",
        "upper": "float",
        "p": "float",
        "hr": "float",
        "hr_lower": "float",
        "hr_upper": "float",
        "note": "str",
        "status": "str",        # ok | not fitted: <reason> | not converged: <reason>
        "n_patients": "int",
        "n_events": "int",
        "n_scans": "int",
        "loglik": "float",
    },
    # survival/dynamic_accuracy.csv: Brier, IPA and AUC for (s, s + w] among those at risk at s
    # (survival/dynamic.py, with score.py's IPCW estimators)
    "dynamic_accuracy": {
        "cohort": "str",
        "endpoint": "str",
        "landmark_days": "float",
        "window_days": "float",
        "model": "str",
        "n_at_risk": "int",
        **_SCORE_COLUMNS,
    },
    # survival/table1.csv: baseline characteristics, long format
    "table1": {
        "cohort": "str",
        "variable": "str",
        "level": "str",
        "n": "int",
        "summary": "str",
    },
    # truth/patients.parquet: the synthetic trial's truth per patient (synth/trial.py); t_progression_days
    # and progression_day are NaN when no progression was seen, progression_visit (the scheduled visit
    # number under survival_model visits, the scan index under baseline) is null then
    "truth_patients": {
        "patient_id": "str",
        "cohort": "str",
        "growth_g": "float",
        "decay_d": "float",
        "responder": "bool",
        "baseline_volume_ml": "float",
        "v0_total_ml": "float",
        "n_lesions_baseline": "int",
        "lp": "float",
        "t_progression_days": "float",
        "t_death_days": "float",
        "censor_days": "float",
        "accrual_days": "float",
        "progression_observed": "bool",
        "n_new_lesions": "int",
        "progression_visit": "int",
        "progression_day": "float",
        "progression_cause": "str",
        "t_new_lesion_days": "float",
        "missed_visits": "int",
    },
    # design/power.csv: study design by simulation (design.py), one row per follow-up design x sample
    # size x burden (true / measured)
    "design_power": {
        "hr": "float",
        "max_followups": "int",
        "n_patients": "int",
        "burden": "str",
        "trials": "int",
        "not_fitted": "int",
        "rejections": "int",
        "power": "float",
        "power_lower": "float",
        "power_upper": "float",
        "mean_hr_estimate": "float",
        "attenuation": "float",
        "mean_deaths": "float",
        "mean_scans_per_patient": "float",
        "alpha": "float",
        "error_model": "str",
    },
    # design/trials.parquet: every simulated trial's fit behind design/power.csv
    "design_trials": {
        "trial": "int",
        "max_followups": "int",
        "n_patients": "int",
        "burden": "str",
        "coef": "float",
        "se": "float",
        "reject": "bool",
        "status": "str",
        "deaths": "int",
        "scans": "int",
    },
    # truth/scores.csv: a synthetic run scored against its truth
    "scores": {
        "stage": "str",
        "metric": "str",
        "value": "float",
        "n": "int",
        "detail": "str",
    },
    "performance": {
        "cohort": "str",
        "endpoint": "str",
        "feature": "str",
        "n": "int",
        "events": "int",
        "c_index": "float",
        "c_index_lower": "float",
        "c_index_upper": "float",
        "c_index_uno": "float",
        "c_index_uno_lower": "float",
        "c_index_uno_upper": "float",
        "status": "str",
    },
}

# survival/joint_predictions.parquet: P(T > landmark + window | T > landmark, scans up to the
# landmark) per patient at each scan's day (at least 0) and at each grid landmark it is at risk at,
# as the landmark super-model's rows: the joint model's rows of the dynamic_prediction table, which
# the dynamic accuracy scores beside the others.
SCHEMAS["joint_predictions"] = SCHEMAS["dynamic_prediction"]

_KIND_CHECK = {
    "str": lambda s: pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s),
    "float": lambda s: pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s),
    "int": lambda s: pd.api.types.is_integer_dtype(s),
    "bool": lambda s: pd.api.types.is_bool_dtype(s),
}


class TableSchemaError(ValueError):
    pass


def check(df: pd.DataFrame, name: str, where: str = "") -> pd.DataFrame:
    """Raise TableSchemaError naming the table, column and problem; return df unchanged."""
    schema = SCHEMAS[name]
    label = f"{name} table" + (f" {where}" if where else "")
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise TableSchemaError(f"{label}: missing column(s) {', '.join(missing)}")
    for col, kind in schema.items():
        if len(df) and not _KIND_CHECK[kind](df[col]):
            raise TableSchemaError(f"{label}: column {col!r} should be {kind}, got {df[col].dtype}")
    return df


def conform(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Cast the schema's columns to canonical dtypes and put them first (stable layout)."""
    schema = SCHEMAS[name]
    out = df.copy()
    for col, kind in schema.items():
        if col not in out.columns:
            continue
        if kind == "str":
            out[col] = out[col].astype(object).where(out[col].notna(), None)
        elif kind == "float":
            out[col] = pd.to_numeric(out[col], errors="raise").astype("float64")
        elif kind == "int":
            out[col] = out[col].astype("Int64")
        elif kind == "bool":
            out[col] = out[col].astype("boolean")
    cols = [c for c in schema if c in out.columns] + [c for c in out.columns if c not in schema]
    return out[cols]


def write(df: pd.DataFrame, path: str | Path, name: str, csv: bool = False) -> None:
    """Write a Parquet table (and a CSV twin if `csv`), checked against its schema."""
    path = Path(path)
    df = check(conform(df, name), name, str(path)).reset_index(drop=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False, engine="pyarrow")
        if csv:
            df.to_csv(path.with_suffix(".csv"), index=False, float_format="%.6g")
    elif path.suffix == ".csv":
        df.to_csv(path, index=False, float_format="%.6g")
        if csv:
            df.to_parquet(path.with_suffix(".parquet"), index=False, engine="pyarrow")
    elif path.suffix == ".tsv":
        df.to_csv(path, index=False, sep="\t", float_format="%.6g")
    else:
        raise ValueError(f"unknown table format: {path}")


def read(path: str | Path, name: str) -> pd.DataFrame:
    path = Path(path)
    if path.suffix == ".parquet":
        df = pd.read_parquet(path, engine="pyarrow")
    elif path.suffix == ".csv":
        df = pd.read_csv(path)
    elif path.suffix == ".tsv":
        df = pd.read_csv(path, sep="\t", dtype={"patient_id": str, "scan_id": str})
    else:
        raise ValueError(f"unknown table format: {path}")
    return check(conform(df, name), name, str(path))


def empty(name: str) -> pd.DataFrame:
    """An empty frame with the schema's columns and dtypes (for scans with no lesion)."""
    dtypes = {"str": object, "float": "float64", "int": "Int64", "bool": "boolean"}
    return pd.DataFrame({c: pd.Series(dtype=dtypes[k]) for c, k in SCHEMAS[name].items()})
