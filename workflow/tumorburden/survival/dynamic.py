"""Dynamic prediction and its accuracy per cohort x endpoint: ``tumorburden dynamic`` (rule
``survival_dynamic``).

Writes, under results/<name>/survival/:

- ``landmark_model.csv``: the landmark super-model's and the baseline-only Cox model's terms
  (coef, naive and robust SE, HR with robust CI, p), or a row "not fitted: <reason>".
- ``dynamic_predictions.parquet``/``.csv``: the tidy predictions every dynamic model hands over,
  one row per cohort, endpoint, patient, landmark, window and model: the probability of surviving
  from the landmark s to s + u (u = ``window_days`` x 1/4, 1/2, 3/4, 1: the curve the per-patient
  figure draws), made from the scans on or before s (``scan_id``: the latest of them). Landmarks:
  every grid landmark at which the patient is at risk, and every scan's day (day 0 for the
  baseline scan) within the grid's range.
- ``dynamic_accuracy.csv``: at each grid landmark s, among the patients at risk at s, the IPCW
  Brier score, IPA and time-dependent AUC for the window (s, s + w] of every model (and the
  Kaplan-Meier null model of those patients), as ``riskRegression::Score`` on the landmark data:
  ``score.score_at`` on the residual times T - s. A model's rows count only patients it predicts
  for; patients some model has no prediction for are left out of every model's row at that
  landmark (so the models are compared on the same patients) and counted in ``n_unpredicted``.

Other dynamic models (the joint model) enter through ``extra_predictions``: tables of the same
``dynamic_prediction`` schema, scored beside the landmark and baseline models.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from tumorburden import tables
from tumorburden.study import read_clinical_table
from tumorburden.survival import landmark, score
from tumorburden.survival.analysis import DEFAULTS, analysis_sets, outcome_problem

log = logging.getLogger(__name__)

CURVE_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
TABLES = ("landmark_model", "dynamic_prediction", "dynamic_accuracy")
FILES = {"landmark_model": "landmark_model.csv", "dynamic_prediction": "dynamic_predictions.parquet",
         "dynamic_accuracy": "dynamic_accuracy.csv"}


def check_settings(s: dict, clinical_columns) -> None:
    """One-line errors before any fitting: an unknown covariate, a grid too short, a bad window."""
    grid = list(s["landmarks_days"])
    if len(grid) < 2 or len(set(float(x) for x in grid)) != len(grid):
        raise ValueError("survival settings: landmarks_days needs at least two distinct landmarks "
                         f"(got {grid})")
    if min(float(x) for x in grid) < 0:
        raise ValueError("survival settings: landmarks_days must be >= 0 (days from baseline)")
    if not float(s["landmark_window_days"]) > 0:
        raise ValueError("survival settings: landmark_window_days must be > 0")
    if s["landmark_baseline"] not in landmark.BASELINES:
        raise ValueError(f"survival settings: landmark_baseline {s['landmark_baseline']!r} is not one of "
                         f"{', '.join(landmark.BASELINES)}")
    covs = list(s["landmark_covariates"])
    if not covs:
        raise ValueError("survival settings: landmark_covariates is empty")
    known = set(landmark.SCAN_COVARIATES) | set(clinical_columns)
    unknown = [c for c in covs if c not in known]
    if unknown:
        raise ValueError(f"survival settings: landmark_covariates {unknown[0]!r} is neither a scan covariate "
                         f"({', '.join(landmark.SCAN_COVARIATES)}) nor a clinical.tsv column")


def prediction_landmarks(data: pd.DataFrame, history: pd.DataFrame, grid, s0: float, sL: float) -> pd.DataFrame:
    """patient_id, landmark_days: the grid landmarks at which each patient is at risk and the
    day of each of its scans (0 for scans before day 0), within [s0, sL] and before its endpoint."""
    scans = history[["patient_id", "days"]].assign(landmark_days=lambda x: x["days"].clip(lower=0.0))
    grid_rows = pd.DataFrame([(p, float(s)) for p in data["patient_id"] for s in grid],
                             columns=["patient_id", "landmark_days"])
    c = pd.concat([grid_rows, scans[["patient_id", "landmark_days"]]], ignore_index=True)
    c = c[c["patient_id"].isin(set(data["patient_id"]))]
    c = c.merge(data[["patient_id", "time"]], on="patient_id")
    c = c[(c["landmark_days"] >= s0) & (c["landmark_days"] <= sL) & (c["time"] > c["landmark_days"])]
    c = c.drop_duplicates(["patient_id", "landmark_days"]).sort_values(["landmark_days", "patient_id"],
                                                                       kind="mergesort")
    h = history.rename(columns={"days": "scan_days"}).sort_values("scan_days", kind="mergesort")
    out = pd.merge_asof(c.drop(columns="time"), h, left_on="landmark_days", right_on="scan_days",
                        by="patient_id", direction="backward")
    out = out.dropna(subset=["scan_id"])
    return out.merge(data, on="patient_id", how="left").sort_values(["patient_id", "landmark_days"],
                                                                    kind="mergesort").reset_index(drop=True)


def _tidy(key, rows: pd.DataFrame, surv: np.ndarray, horizons, model: str) -> list[dict]:
    out = []
    for j, u in enumerate(horizons):
        ok = np.isfinite(surv[:, j])
        out.append(pd.DataFrame({**key, "patient_id": rows["patient_id"].to_numpy()[ok],
                                 "scan_id": rows["scan_id"].to_numpy()[ok],
                                 "landmark_days": rows["landmark_days"].to_numpy(float)[ok], "window_days": u,
                                 "model": model, "predicted_survival": np.clip(surv[ok, j], 0.0, 1.0)}))
    return out


def _terms(key, fit: dict, s: dict) -> list[dict]:
    base = {**key, "model": fit["kind"], "baseline": fit.get("baseline", "one hazard from day 0"),
            "n_rows": fit["n_rows"], "n_patients": fit["n_patients"], "events": fit["events"],
            "n_dropped": fit["n_dropped"]}
    rows = [{**base, **r, "status": "ok"} for r in fit["terms"].to_dict("records")]
    why = "constant at the baseline scan" if fit["kind"] == landmark.BASELINE_MODEL else \
        "constant among the patients at risk at the landmarks"
    for c in fit.get("dropped", []):
        rows.append({**base, "term": c, "status": f"not in model: {why}"})
    return rows


def dynamic_rows(cohort: str, endpoint: str, data: pd.DataFrame, history: pd.DataFrame, s: dict,
                 extra: pd.DataFrame | None = None) -> dict[str, list]:
    """The three tables' rows of one cohort x endpoint (``data``: analysis_sets' frame)."""
    key = {"cohort": cohort, "endpoint": endpoint}
    out: dict[str, list] = {k: [] for k in TABLES}
    grid = sorted(float(x) for x in s["landmarks_days"])
    w = float(s["landmark_window_days"])
    horizons = [w * f for f in CURVE_FRACTIONS]
    covs = list(s["landmark_covariates"])
    strata_cols = ["cohort"] if cohort == "all" else []
    problem = outcome_problem(data)
    absent = [c for c in covs if c not in landmark.SCAN_COVARIATES and c not in data.columns]
    if absent:
        problem = problem or f"covariate(s) {', '.join(absent)} not in clinical.tsv"
    preds = []
    fits = {}
    if not problem:
        lm = landmark.landmark_data(data, history, grid, w)
        rows = prediction_landmarks(data, history, grid, grid[0], grid[-1])
        for kind in (landmark.LANDMARK_MODEL, landmark.BASELINE_MODEL):
            try:
                if kind == landmark.LANDMARK_MODEL:
                    if len(lm) == 0:
                        raise landmark.NotFitted("no patient at risk at any landmark")
                    if lm["patient_id"].nunique() < int(s["min_patients"]):
                        raise landmark.NotFitted(f"too few patients ({lm['patient_id'].nunique()} < "
                                                 f"{s['min_patients']})")
                    if lm["status"].sum() < int(s["min_events"]):
                        raise landmark.NotFitted(f"too few events in the windows ({int(lm['status'].sum())} < "
                                                 f"{s['min_events']})")
                    fit = landmark.fit_landmark(lm, covs, grid, s["landmark_baseline"], strata_cols, float(s["alpha"]))
                    surv = landmark.predict_landmark(fit, rows, horizons)
                else:
                    if len(data) < int(s["min_patients"]) or data["event"].sum() < int(s["min_events"]):
                        raise landmark.NotFitted("too few patients or events")
                    fit = landmark.fit_baseline_cox(data, history, covs, strata_cols, float(s["alpha"]))
                    frozen = rows.drop(columns=list(landmark.SCAN_COVARIATES)).merge(
                        history.groupby("patient_id").head(1)[["patient_id", *landmark.SCAN_COVARIATES]],
                        on="patient_id", how="left")
                    surv = landmark.predict_baseline(fit, frozen, rows["landmark_days"], horizons)
            except (landmark.NotFitted, np.linalg.LinAlgError) as exc:
                out["landmark_model"].append({**key, "model": kind, "status": f"not fitted: {exc}"})
                log.warning("%s %s: %s not fitted: %s", cohort, endpoint, kind, exc)
                continue
            fits[kind] = fit
            out["landmark_model"] += _terms(key, fit, s)
            preds += _tidy(key, rows, surv, horizons, kind)
    else:
        for kind in (landmark.LANDMARK_MODEL, landmark.BASELINE_MODEL):
            out["landmark_model"].append({**key, "model": kind, "status": f"not fitted: {problem}"})
    if extra is not None and len(extra):
        preds.append(extra[(extra["cohort"] == cohort) & (extra["endpoint"] == endpoint)])
    pred = pd.concat(preds, ignore_index=True) if preds else tables.empty("dynamic_prediction")
    out["dynamic_prediction"] = [pred] if len(pred) else []
    out["dynamic_accuracy"] = accuracy_rows(key, data, pred, grid, w, float(s["alpha"]), problem)
    return out


def accuracy_rows(key: dict, data: pd.DataFrame, pred: pd.DataFrame, grid, window: float, alpha: float,
                  problem: str | None = None) -> list[dict]:
    """Brier, IPA and AUC for (s, s + window] at each landmark s of ``grid`` for every model of
    ``pred`` (tidy dynamic_prediction rows), among the patients of ``data`` at risk at s."""
    rows = []
    models = list(dict.fromkeys(pred["model"])) if len(pred) else []
    for s in grid:
        base = {**key, "landmark_days": s, "window_days": window}
        at_risk = data[data["time"] > s]
        if problem or not models:
            rows.append({**base, "model": "", "n_at_risk": len(at_risk),
                         "status": f"not scored: {problem or 'no model predicted'}"})
            continue
        p = pred[np.isclose(pred["landmark_days"], s) & np.isclose(pred["window_days"], window)]
        wide = p.pivot_table(index="patient_id", columns="model", values="predicted_survival", aggfunc="first")
        wide = wide.reindex(index=at_risk["patient_id"], columns=models)
        # a model that predicts nobody at this landmark (e.g. one that predicts only at scan days)
        # gets its own row and does not shrink the others' common patients to none
        silent = [m for m in models if wide[m].isna().all()]
        rows += [{**base, "model": m, "n_at_risk": len(at_risk),
                  "status": "not scored: no prediction at this landmark and window"} for m in silent]
        scored = [m for m in models if m not in silent]
        if not scored:
            continue
        wide = wide[scored]
        complete = wide.notna().all(axis=1).to_numpy()
        d = at_risk[complete]
        n_unpredicted = int((~complete).sum())
        if len(d) == 0:
            rows += [{**base, "model": m, "n_at_risk": len(at_risk), "n_unpredicted": n_unpredicted,
                      "status": "not scored: no patient with a prediction from every model"} for m in scored]
            continue
        risks = {m: 1.0 - wide.loc[complete, m].to_numpy(float) for m in scored}
        sc = score.score_at(d["time"].to_numpy(float) - s, d["event"].to_numpy(float), risks, [window], alpha)
        for r in sc.to_dict("records"):
            r.pop("time_days")
            rows.append({**base, **r, "n_at_risk": len(at_risk), "n_unpredicted": n_unpredicted})
    return rows


def dynamic_tables(features, clinical, burden, settings=None, path="clinical.tsv",
                   extra_predictions: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    s = {**DEFAULTS, **(settings or {})}
    check_settings(s, clinical.columns)
    history = landmark.scan_history(burden, float(s["volume_offset_ml"]))
    parts: dict[str, list] = {k: [] for k in TABLES}
    for cohort, endpoint, data in analysis_sets(features, clinical, s, path, [], burden):
        log.info("%s %s: landmark super-model and dynamic accuracy on %d patients", cohort, endpoint, len(data))
        for k, v in dynamic_rows(cohort, endpoint, data, history, s, extra_predictions).items():
            parts[k] += v
    result = {}
    for k, rows in parts.items():
        if not rows:
            result[k] = tables.empty(k)
            continue
        frame = pd.concat(rows, ignore_index=True) if isinstance(rows[0], pd.DataFrame) else pd.DataFrame(rows)
        cols = [*tables.SCHEMAS[k], *[c for c in frame.columns if c not in tables.SCHEMAS[k]]]
        result[k] = tables.conform(frame.reindex(columns=cols), k)
    return result


def write_dynamic(features: Path, clinical: Path, burden: Path, out_dir: Path, settings=None,
                  extra_predictions: list[Path] | None = None) -> dict:
    extra = [tables.read(p, "dynamic_prediction") for p in (extra_predictions or [])]
    result = dynamic_tables(tables.read(features, "features"), read_clinical_table(clinical),
                            tables.read(burden, "burden"), settings, clinical,
                            pd.concat(extra, ignore_index=True) if extra else None)
    out_dir = Path(out_dir)
    for name, frame in result.items():
        tables.write(frame, out_dir / FILES[name], name, csv=True)
    log.info("wrote %s", ", ".join(FILES.values()))
    return result
