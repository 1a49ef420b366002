"""Prediction-model tables per cohort x endpoint x model set (TRIPOD): validation, calibration,
score, decision curves, model comparison, RMST, and (on a synthetic trial) the true model's.

Model sets (``model_sets`` in the survival settings): name -> covariates, the clinical model
first, each later set usually adding terms (nested). ``log_baseline_volume_ml`` is
ln(baseline volume + volume_offset_ml) as in cox.csv. All sets of a cohort x endpoint are fitted
on the same patients (complete cases over every set's covariates), so likelihood-ratio tests
between nested sets are valid; the pooled set is stratified by cohort.

- validation.csv: validation.validate_cox (bootstrap optimism, B = ``bootstrap``, seeded per row).
- calibration.csv: calibration.calibration_at at ``horizons_days``.
- score.csv: Brier, IPA, AUC(t) of each set's predicted risk and the null model (score.score_at).
- decision_curve.csv: net benefit (decision.net_benefit).
- model_comparison.csv: each set against the one before it: LR test (when nested), Harrell's and
  Uno's C difference with a paired bootstrap CI (concordance.c_difference), and AUC(t) and
  Brier(t) differences twice: with paired bootstrap CIs (paired_bootstrap_score_differences) and
  with riskRegression's influence-function CIs (score.score_contrasts), column ``method``.
- rmst.csv / rmst_contrast.csv: RMST to ``rmst_tau_days`` by the median groups of group_feature.
- tripod_summary.csv: per model set and horizon, the numbers a TRIPOD table cites (corrected C,
  slope, R2 and Brier; IPA and AUC with CI; calibration in the large, O/E, ICI; C difference to
  the previous set with its CI and the LR test p).
- truth_comparison.csv (synthetic trial only): each set's corrected C and slope beside the C and
  calibration slope of the simulator's own linear predictor (truth/patients.parquet ``lp``),
  which is not fitted and so has no optimism.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import chi2

from tumorburden import tables
from tumorburden.study import read_clinical_table
from tumorburden.survival import concordance, cox, cutpoints, decision, rmst, score
from tumorburden.survival.analysis import DEFAULTS, LOG_FEATURES, POOLED, analysis_sets, cox_term, outcome_problem
from tumorburden.survival.calibration import calibration_at
from tumorburden.survival.validation import fit_cox_batch, ipcw_weights, survival_at, validate_cox

log = logging.getLogger(__name__)

TABLES = ("validation", "calibration", "score", "decision_curve", "model_comparison", "rmst", "rmst_contrast")


def paired_bootstrap_score_differences(time, event, risk_a, risk_b, horizons, n_boot: int,
                                       rng: np.random.Generator, alpha: float = 0.05) -> list[dict]:
    """AUC(t) and Brier(t) of a minus b, with paired bootstrap percentile CIs: each replicate
    resamples patients (counts w) and scores both models' fixed predicted risks on it.

    The estimators are score.score_at's (IPCW, cases T <= t with the event weighted 1/G(T-),
    controls T > t weighted 1/G(t), risk ties 1/2); the censoring weights come from the original
    patients and are held fixed across replicates. With the counts w every replicate's AUC is
    (a' M b) / (a' 1)(1' b) for a fixed case x control concordance matrix M, so all replicates
    are matrix products (no library scores weighted resamples)."""
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    ipcw = ipcw_weights(time, event, horizons)
    n = len(time)
    W = concordance.bootstrap_counts(n, n_boot, rng) if n_boot else np.zeros((0, n))
    W1 = np.vstack([np.ones((1, n)), W])  # row 0: the original patients
    rows = []
    for j, t in enumerate(horizons):
        case = (time <= t) & event
        ctrl = time > t
        if not case.any() or not ctrl.any():
            rows += [{"measure": m, "time_days": t, "status": "not computed: no case or no control at this horizon"}
                     for m in ("auc", "brier")]
            continue
        died = case.astype(float)
        est = {}
        for name, r in (("a", risk_a[:, j]), ("b", risk_b[:, j])):
            wc, wk = W1[:, case] * ipcw[case, j], W1[:, ctrl] * ipcw[ctrl, j]
            ri, rj = r[case][:, None], r[ctrl][None, :]
            M = (ri > rj) + 0.5 * (ri == rj)
            auc = np.einsum("bi,bi->b", wc, wk @ M.T) / (wc.sum(axis=1) * wk.sum(axis=1))
            brier = (W1 * ipcw[:, j] * (died - r) ** 2).sum(axis=1) / W1.sum(axis=1)
            est[name] = {"auc": auc, "brier": brier}
        for m in ("auc", "brier"):
            d = est["a"][m] - est["b"][m]
            lo, hi, used = concordance.percentile_ci(d[1:], alpha)
            rows.append({"measure": m, "time_days": t, "difference": float(d[0]), "lower": lo, "upper": hi,
                         "method": f"paired bootstrap ({used} replicates)", "status": "ok"})
    return rows


def check_model_sets(model_sets: dict, columns) -> None:
    """A one-line error before any fitting: an empty set or a covariate that is no column."""
    if not model_sets:
        raise ValueError("survival settings: model_sets is empty (name -> list of covariates)")
    known = set(columns) | {cox_term(f) for f in LOG_FEATURES}
    for name, covs in model_sets.items():
        if not covs:
            raise ValueError(f"survival settings: model set {name!r} has no covariates")
        unknown = [c for c in covs if c not in known]
        if unknown:
            raise ValueError(f"survival settings: model set {name!r}: covariate {unknown[0]!r} is neither a "
                             f"features nor a clinical.tsv column (nor log_baseline_volume_ml)")


def _design(data: pd.DataFrame, model_sets: dict) -> tuple[pd.DataFrame, dict]:
    """Complete cases over every set's covariates and each set's design matrix."""
    used = sorted({c for covs in model_sets.values() for c in covs})
    d = data.dropna(subset=used).reset_index(drop=True)
    designs = {}
    for name, covs in model_sets.items():
        X, _ = cox.design(d, list(covs))
        designs[name] = X
    return d, designs


def _truth_lp(truth: pd.DataFrame | None, patients) -> np.ndarray | None:
    if truth is None or "lp" not in truth:
        return None
    return pd.Series(truth.set_index("patient_id")["lp"]).reindex(patients).to_numpy(float)


def prediction_rows(cohort, endpoint, data, s, truth=None) -> dict[str, list]:
    key = {"cohort": cohort, "endpoint": endpoint}
    out = {k: [] for k in (*TABLES, "truth_comparison")}
    sets = dict(s["model_sets"])
    horizons = [float(h) for h in s["horizons_days"]]
    n_boot, alpha, ties = int(s["bootstrap"]), float(s["alpha"]), s["ties"]
    d = data.copy()
    for f in LOG_FEATURES:
        if f in d:
            d[cox_term(f)] = np.log(pd.to_numeric(d[f], errors="coerce") + float(s["volume_offset_ml"]))
    # RMST by the median groups of the grouping feature: needs the outcome only, not the model sets
    gf = s["group_feature"]
    if not outcome_problem(d) and gf in d and s["rmst_tau_days"] and len(d):
        rt, re = d["time"].to_numpy(float), d["event"].to_numpy(float)
        g = cutpoints.groups(d[gf], "median")
        ok = g.notna().to_numpy()
        if len(set(g[ok])) == 2:
            by = rmst.rmst_by_group(rt[ok], re[ok], g[ok].to_numpy(), float(s["rmst_tau_days"]), alpha)
            out["rmst"] += [{**key, **r, "group": f"{gf}:{r['group']}"} for r in by.to_dict("records")]
            con = rmst.rmst_contrasts(by, reference="low", alpha=alpha)
            out["rmst_contrast"] += [{**key, **r, "group": f"{gf}:{r['group']}", "reference": f"{gf}:{r['reference']}"}
                                     for r in con.to_dict("records")]
    problem = outcome_problem(d)
    absent = sorted({c for covs in sets.values() for c in covs if c not in d.columns})
    if absent:
        problem = problem or f"covariate(s) {', '.join(absent)} not in the data"
    if not problem:
        d, designs = _design(d, sets)
        events = int(d["event"].sum())
        if len(d) < int(s["min_patients"]):
            problem = f"too few complete cases ({len(d)} < {s['min_patients']})"
        elif events < int(s["min_events"]):
            problem = f"too few events ({events} < {s['min_events']})"
    if problem:
        for name in sets:
            out["validation"].append({**key, "model_set": name, "status": f"not fitted: {problem}"})
        return out
    time = d["time"].to_numpy(float)
    event = d["event"].to_numpy(float).astype(bool)
    strata = d["cohort"].astype(str).to_numpy() if cohort == POOLED else None
    n = len(d)
    fits, risks, lps = {}, {}, {}
    for name, X in designs.items():
        base = {**key, "model_set": name, "covariates": ",".join(sets[name]), "n": n, "events": int(event.sum())}
        Xv = X.to_numpy(float)
        Xv = Xv - Xv.mean(axis=0)  # centred: exp(lp) stays in range; every index is shift-invariant
        rng = concordance.row_seed(s["seed"], "validation", cohort, endpoint, name)
        try:
            constant = [c for c, sd in zip(X.columns, Xv.std(axis=0)) if sd == 0]
            if constant:
                raise ValueError(f"constant covariate {', '.join(constant)}")
            if np.linalg.matrix_rank(Xv) < Xv.shape[1]:
                raise ValueError("collinear covariates")
            v = validate_cox(time, event, Xv, horizons, n_boot, rng, strata, ties)
            fit = fit_cox_batch(time, event, Xv, None, strata, ties)
            risk = 1 - survival_at(fit["hazards"], fit["eta"], np.zeros(n, int) if strata is None else strata,
                                   horizons)[0]
            if not np.isfinite(risk).all():
                raise ValueError("predicted risks not finite (separation?)")
        except (ValueError, np.linalg.LinAlgError) as exc:
            out["validation"].append({**base, "status": f"not fitted: {str(exc).splitlines()[0]}"})
            continue
        out["validation"] += [{**base, **r, "status": "ok"} for r in v.to_dict("records")]
        fits[name] = (fit, Xv.shape[1])
        lps[name] = fit["eta"][0]
        risks[name] = np.clip(risk, 0.0, 1.0)
        rng = concordance.row_seed(s["seed"], "calibration", cohort, endpoint, name)
        try:
            cal = calibration_at(time, event, Xv, horizons, int(s["calibration_groups"]), n_boot, rng, strata, ties,
                                 alpha)
            out["calibration"] += [{**base, **r} for r in cal.to_dict("records")]
        except (ValueError, np.linalg.LinAlgError) as exc:
            reason = str(exc).splitlines()[0]
            out["calibration"].append({**base, "method": "summary", "status": f"not computed: {reason}"})
    if not risks:
        return out
    out["score"] += [{**key, **r} for r in score.score_at(time, event, risks, horizons, alpha).to_dict("records")]
    curves = decision.net_benefit(time, event, risks, horizons)
    out["decision_curve"] += [{**key, **r} for r in curves.to_dict("records")]
    names = list(risks)
    contrasts = score.score_contrasts(time, event, risks, horizons, alpha, null_model=False)
    for prev, name in zip(names, names[1:]):
        (fa, pa), (fb, pb) = fits[prev], fits[name]
        nested = set(sets[prev]) < set(sets[name])
        lr = 2 * float(fb["loglik"][0] - fa["loglik"][0])
        row = {**key, "model_set": name, "reference": prev, "n": n, "events": int(event.sum())}
        out["model_comparison"].append({**row, "measure": "lr_test", "time_days": math.nan,
                                        "difference": lr, "df": pb - pa,
                                        "p": float(chi2.sf(lr, pb - pa)) if nested else math.nan,
                                        "method": "likelihood ratio, nested" if nested else "not nested: no LR test",
                                        "status": "ok" if nested else "not tested: not nested"})
        rng = concordance.row_seed(s["seed"], "comparison", cohort, endpoint, name, prev)
        for r in concordance.c_difference(time, event, lps[name], lps[prev], n_boot, rng, s["uno_tau_days"], alpha):
            out["model_comparison"].append({**row, "measure": f"c_{r['measure']}", "time_days": math.nan,
                                            "difference": r["difference"], "lower": r["lower"], "upper": r["upper"],
                                            "method": f"paired bootstrap ({r['bootstrap_used']} replicates)",
                                            "status": "ok"})
        rng = concordance.row_seed(s["seed"], "comparison_scores", cohort, endpoint, name, prev)
        for r in paired_bootstrap_score_differences(time, event, risks[name], risks[prev], horizons, n_boot, rng,
                                                    alpha):
            out["model_comparison"].append({**row, **r})
        sel = contrasts[(contrasts["model"] == name) & (contrasts["reference"] == prev)]
        for c in sel.to_dict("records"):
            for m in ("auc", "brier"):
                out["model_comparison"].append({**row, "measure": m, "time_days": c["time_days"],
                                                "difference": c[f"delta_{m}"], "lower": c[f"delta_{m}_lower"],
                                                "upper": c[f"delta_{m}_upper"], "p": c[f"delta_{m}_p"],
                                                "method": "influence function (riskRegression::Score)",
                                                "status": c["status"]})
    true_lp = _truth_lp(truth, d["patient_id"])
    if true_lp is not None and np.isfinite(true_lp).all():
        ones = np.ones((1, n))
        slope_fit = fit_cox_batch(time, event, true_lp[:, None], ones, strata, ties)
        c_true = concordance.harrell_c(time, event, true_lp)
        out["truth_comparison"].append({**key, "model_set": "true model (simulator)", "n": n,
                                        "c_corrected": c_true, "slope_corrected": float(slope_fit["beta"][0, 0]),
                                        "note": "simulator's own linear predictor; not fitted, so no optimism"})
        for name in fits:
            v = [r for r in out["validation"] if r.get("model_set") == name and r.get("status") == "ok"]
            get = {r["index"]: r["corrected"] for r in v}
            out["truth_comparison"].append({**key, "model_set": name, "n": n, "c_corrected": get.get("C", math.nan),
                                            "slope_corrected": get.get("slope", math.nan),
                                            "note": "bootstrap optimism-corrected"})
    return out


def tripod_summary(result: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per cohort x endpoint x model set x horizon: what a TRIPOD table reports.

    Discrimination and the slope optimism-corrected (validation), Brier corrected and IPA and AUC
    apparent with CI (score), calibration at the horizon (calibration summary), and the comparison
    with the previous set (C difference with its paired bootstrap CI, LR test p)."""
    v = result["validation"]
    v = v[v["status"] == "ok"]
    if v.empty:
        return tables.empty("tripod_summary")
    key = ["cohort", "endpoint", "model_set"]
    out = v[v["index"] == "Brier"][[*key, "horizon_days", "n", "events", "corrected"]].rename(
        columns={"corrected": "brier_corrected"})
    flat = v[v["index"].isin(["C", "slope", "R2"])].pivot_table(index=key, columns="index",
                                                                 values=["apparent", "corrected"], aggfunc="first")
    flat.columns = [f"{i.lower()}_{stat}" for stat, i in flat.columns]
    out = out.merge(flat.reset_index()[[*key, "c_apparent", "c_corrected", "slope_corrected", "r2_corrected"]],
                    on=key, how="left")
    sc = result["score"].rename(columns={"model": "model_set", "time_days": "horizon_days"})
    out = out.merge(sc[[*key, "horizon_days", "ipa", "auc", "auc_lower", "auc_upper"]], on=[*key, "horizon_days"],
                    how="left")
    cal = result["calibration"]
    cal = cal[(cal["method"] == "summary") & cal["statistic"].notna()]
    if len(cal):
        cal = cal.pivot_table(index=[*key, "horizon_days"], columns="statistic", values="value", aggfunc="first")
        cal = cal.reindex(columns=["calibration_in_the_large", "observed_expected_ratio", "ici"]).reset_index()
        out = out.merge(cal, on=[*key, "horizon_days"], how="left")
    comp = result["model_comparison"]
    dc = comp[comp["measure"] == "c_harrell"][[*key, "reference", "difference", "lower", "upper"]].rename(
        columns={"difference": "delta_c", "lower": "delta_c_lower", "upper": "delta_c_upper"})
    lr = comp[comp["measure"] == "lr_test"][[*key, "p"]].rename(columns={"p": "lr_p"})
    out = out.merge(dc, on=key, how="left").merge(lr, on=key, how="left")
    cols = list(tables.SCHEMAS["tripod_summary"])
    return tables.conform(out.reindex(columns=cols), "tripod_summary")


def prediction_tables(features, clinical, settings=None, path="clinical.tsv", burden=None,
                      truth=None) -> dict[str, pd.DataFrame]:
    s = {**DEFAULTS, **(settings or {})}
    check_model_sets(s["model_sets"], set(features.columns) | set(clinical.columns) | {"baseline_sld_mm"})
    parts = {k: [] for k in (*TABLES, "truth_comparison")}
    for cohort, endpoint, data in analysis_sets(features, clinical, s, path, [], burden):
        log.info("%s %s: prediction models on %d patients", cohort, endpoint, len(data))
        for k, v in prediction_rows(cohort, endpoint, data, s, truth).items():
            parts[k] += v
    result = {}
    for k, rows in parts.items():
        if k == "truth_comparison" and truth is None:
            continue
        if not rows:
            result[k] = tables.empty(k)
            continue
        frame = pd.DataFrame(rows)
        result[k] = tables.conform(frame.reindex(columns=[*tables.SCHEMAS[k], *[c for c in frame.columns
                                                                                 if c not in tables.SCHEMAS[k]]]), k)
    result["tripod_summary"] = tripod_summary(result)
    return result


def write_prediction(features: Path, clinical: Path, out_dir: Path, settings=None, burden: Path | None = None,
                     truth: Path | None = None) -> dict:
    feature_table = tables.read(features, "features")
    clinical_table = read_clinical_table(clinical)
    burden_table = tables.read(burden, "burden") if burden else None
    truth_table = pd.read_parquet(truth) if truth else None
    result = prediction_tables(feature_table, clinical_table, settings, clinical, burden_table, truth_table)
    out_dir = Path(out_dir)
    for name, frame in result.items():
        tables.write(frame, out_dir / f"{name}.csv", name, csv=True)
    log.info("wrote %s", ", ".join(f"{n}.csv" for n in result))
    return result
