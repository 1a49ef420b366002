"""Study design by simulation: power to detect the burden's association with death, against n.

"How many patients (and scans per patient) to detect a hazard ratio X of death per unit of the
current ln tumour burden, at power P?" Each simulated trial is the synthetic trial at table level
(`synth.trial.simulate_trial`, survival model `visits`, association `death_hr_per_log_burden` = X),
with the patients' seed changed per trial. It is analysed as a trial would be: a Cox model of OS,
stratified by cohort, with ln(burden at the latest scan + offset) as a time-varying covariate
(`survival.partial_likelihood.fit_newton`), Wald test at `alpha`; once with the true burden at the
scans, once with the burden as the segmentation would measure it, in the very same trials:

- missed lesions: a lesion-timepoint is found with the evaluation's sensitivity for its size
  (longest diameter >= 10 mm, 5-10 mm; smaller ones are never found);
- volume error: the total volume of a scan times exp(sigma Z), Z standard normal per scan, sigma
  such that the median absolute relative error is the evaluation's (scans with true burden >= 5 mL).

These come from a run's `truth/scores.csv` (`--scores`), or the `design.error` settings where it is
absent or a metric was not computed. Patients are prefix-stable in the simulator, so the sample
sizes of one trial are nested (the first n patients): power is monotone in n up to Monte-Carlo
error, and the comparison between sizes is paired. Power carries a Clopper-Pearson 95 % CI.

Here because it needs both the simulator and the estimators; neither of them imports it.
"""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

from tumorburden import tables
from tumorburden.survival.partial_likelihood import fit_newton
from tumorburden.synth.trial import resolve_settings, simulate_trial

log = logging.getLogger(__name__)

DEFAULTS: dict = {
    "hr_per_log_burden": 1.15,
    "sample_sizes": [50, 100, 150, 200, 300],
    "max_followups": [None],  # scans per patient after the baseline; None: synthetic.max_followups
    "trials": 200,
    "alpha": 0.05,
    "target_power": 0.8,
    "seed": 1,
    "volume_offset_ml": 0.1,
    "workers": None,  # processes; None: the CPUs this process may use
    "scores": None,  # a truth/scores.csv to take the error from; None: the run's own, when it has one
    "error": {
        "volume_median_abs_rel_error": 0.04,
        "sensitivity_ge10mm": 0.99,
        "sensitivity_5to10mm": 0.82,
    },
}
# truth/scores.csv metric -> design.error key
SCORE_METRICS = {
    ("burden", "total_volume_median_abs_rel_error_ge5ml"): "volume_median_abs_rel_error",
    ("lesions", "sensitivity_ge10mm"): "sensitivity_ge10mm",
    ("lesions", "sensitivity_5to10mm"): "sensitivity_5to10mm",
}
BURDENS = ("true", "measured")


def resolve(settings: dict | None) -> dict:
    s = {**DEFAULTS, **(settings or {})}
    s["error"] = {**DEFAULTS["error"], **(s.get("error") or {})}
    sizes = [int(n) for n in s["sample_sizes"]]
    if not sizes or min(sizes) < 2 or len(set(sizes)) != len(sizes):
        raise ValueError(f"config key design.sample_sizes {s['sample_sizes']}: give distinct sizes of at least 2")
    s["sample_sizes"] = sorted(sizes)
    if float(s["hr_per_log_burden"]) <= 0:
        raise ValueError(f"config key design.hr_per_log_burden {s['hr_per_log_burden']} must be > 0")
    if int(s["trials"]) < 1:
        raise ValueError(f"config key design.trials {s['trials']} must be at least 1")
    if not 0 < float(s["alpha"]) < 1 or not 0 < float(s["target_power"]) < 1:
        raise ValueError("config keys design.alpha and design.target_power must lie in (0, 1)")
    for key in ("sensitivity_ge10mm", "sensitivity_5to10mm"):
        if not 0 <= float(s["error"][key]) <= 1:
            raise ValueError(f"config key design.error.{key} {s['error'][key]} must lie in [0, 1]")
    if float(s["volume_offset_ml"]) <= 0:
        raise ValueError(f"config key design.volume_offset_ml {s['volume_offset_ml']} must be > 0: a scan where the "
                         "segmentation found no lesion needs a finite ln(V + offset)")
    if float(s["error"]["volume_median_abs_rel_error"]) < 0:
        raise ValueError("config key design.error.volume_median_abs_rel_error must be >= 0")
    return s


def error_model(settings: dict, scores_path: Path | None) -> dict:
    """The segmentation error to simulate: each value from the scores file where it has it."""
    err = {k: float(v) for k, v in settings["error"].items()}
    source = {k: "config design.error" for k in err}
    if scores_path is not None:
        scores = tables.read(scores_path, "scores")
        for (stage, metric), key in SCORE_METRICS.items():
            row = scores[(scores["stage"] == stage) & (scores["metric"] == metric)]
            if len(row) and np.isfinite(row["value"].iloc[0]):
                err[key] = float(row["value"].iloc[0])
                source[key] = f"{scores_path.name} {metric} (n={int(row['n'].iloc[0])})"
            else:
                log.warning("%s has no value for %s/%s: design.error.%s = %g is used", scores_path, stage,
                            metric, key, err[key])
    m = err["volume_median_abs_rel_error"]
    err["volume_sd_log"] = _sd_for_median_abs_rel_error(m)
    return {"values": err, "source": source}


def _sd_for_median_abs_rel_error(m: float) -> float:
    """sigma with median |exp(sigma Z) - 1| = m, Z standard normal."""
    if m <= 0:
        return 0.0
    if m >= 1:
        raise ValueError(f"a median absolute relative volume error of {m:g} (>= 100 %) cannot be simulated as "
                         "log-normal; check the scores file or design.error.volume_median_abs_rel_error")
    hi_z = math.log1p(m)
    lo_z = math.log1p(-m)
    return float(optimize.brentq(lambda sd: stats.norm.cdf(hi_z / sd) - stats.norm.cdf(lo_z / sd) - 0.5,
                                 1e-6, 50.0))


def measured_burden(lesions: pd.DataFrame, scans: pd.DataFrame, err: dict, rng: np.random.Generator) -> np.ndarray:
    """Per row of `scans`, the total volume the segmentation would report (see the module doc)."""
    diam = lesions["longest_diameter_mm"].to_numpy(float)
    p_find = np.where(diam >= 10.0, err["sensitivity_ge10mm"], np.where(diam >= 5.0, err["sensitivity_5to10mm"], 0.0))
    found = rng.random(len(lesions)) < p_find
    seen = pd.Series(np.where(found, lesions["volume_ml"].to_numpy(float), 0.0)).groupby(
        lesions["scan_id"].to_numpy()).sum()
    total = scans["scan_id"].map(seen).fillna(0.0).to_numpy(float)
    return total * np.exp(err["volume_sd_log"] * rng.standard_normal(len(scans)))


def counting_process(clinical: pd.DataFrame, scans: pd.DataFrame, burden: np.ndarray) -> pd.DataFrame:
    """(start, stop] rows of OS per patient with the burden of the latest scan (scans after day 0
    open a new interval; a scan on or after the end of follow-up changes nothing)."""
    b = scans[["patient_id", "days"]].assign(burden=burden)
    b = b.merge(clinical[["patient_id", "cohort", "os_days", "os_event"]], on="patient_id")
    b = b[b["days"] < b["os_days"]].sort_values(["patient_id", "days"], kind="mergesort")
    b["start"] = b["days"].clip(lower=0.0)
    b["stop"] = b.groupby("patient_id")["start"].shift(-1).fillna(b["os_days"])
    b["event"] = np.where(b["stop"] == b["os_days"], b["os_event"], 0)
    b = b.drop_duplicates(["patient_id", "start"], keep="last")
    return b[b["stop"] > b["start"]].reset_index(drop=True)


def analyse(cp: pd.DataFrame, offset_ml: float) -> tuple[float, float]:
    """(coefficient, standard error) of ln(burden + offset) in the stratified Cox model of OS."""
    x = np.log(cp["burden"].to_numpy(float) + offset_ml)[:, None]
    strata = pd.factorize(cp["cohort"])[0]
    beta, cov, *_ = fit_newton(cp["stop"].to_numpy(float), cp["event"].to_numpy(int), x, strata=strata,
                               start=cp["start"].to_numpy(float))
    return float(beta[0]), float(math.sqrt(cov[0, 0]))


def simulate_one(k: int, synthetic: dict, s: dict, err: dict) -> list[dict]:
    """Trial k: one simulated trial per follow-up design, analysed at every sample size, true and
    measured burden."""
    z = stats.norm.ppf(1 - float(s["alpha"]) / 2)
    rows = []
    for j, followups in enumerate(s["max_followups"]):
        settings = {**synthetic, "seed": int(s["seed"]) * 100003 + k, "n_patients": max(s["sample_sizes"]),
                    "survival_model": {**(synthetic.get("survival_model") or {}), "model": "visits",
                                       "death_hr_per_log_burden": float(s["hr_per_log_burden"])}}
        if followups is not None:
            settings["max_followups"] = int(followups)
        tr = simulate_trial(settings)
        rng = np.random.default_rng(np.random.SeedSequence([int(s["seed"]), k, j]))
        burdens = {"true": tr.truth_scans().set_index("scan_id").loc[tr.scans["scan_id"], "total_volume_ml"]
                   .to_numpy(float),
                   "measured": measured_burden(tr.lesions, tr.scans, err, rng)}
        order = tr.clinical["patient_id"].to_numpy()
        for n in s["sample_sizes"]:
            keep = set(order[:n])
            clinical = tr.clinical[tr.clinical["patient_id"].isin(keep)]
            in_scans = tr.scans["patient_id"].isin(keep).to_numpy()
            scans = tr.scans[in_scans]
            for name in BURDENS:
                cp = counting_process(clinical, scans, burdens[name][in_scans])
                try:
                    coef, se = analyse(cp, float(s["volume_offset_ml"]))
                    status = "ok"
                except (np.linalg.LinAlgError, ValueError) as exc:
                    coef, se, status = math.nan, math.nan, f"not fitted: {exc}"
                rows.append({
                    "trial": k, "max_followups": int(settings.get("max_followups", tr.model["progression"]["max_followups"])),
                    "n_patients": n, "burden": name, "coef": coef, "se": se,
                    "reject": bool(np.isfinite(coef) and abs(coef / se) > z), "status": status,
                    "deaths": int(clinical["os_event"].sum()), "scans": len(scans),
                })
    return rows


def power_table(trials: pd.DataFrame, s: dict, err: dict, source: dict) -> pd.DataFrame:
    out = []
    keys = ["max_followups", "n_patients", "burden"]
    true_coef = trials[trials["burden"] == "true"].groupby(["max_followups", "n_patients"])["coef"].mean()
    for (f, n, name), g in trials.groupby(keys, sort=True):
        fitted = g[g["status"] == "ok"]
        k, m = int(fitted["reject"].sum()), len(fitted)
        ci = stats.binomtest(k, m).proportion_ci(0.95, method="exact") if m else None
        mean_coef = float(fitted["coef"].mean()) if m else math.nan
        out.append({
            "hr": float(s["hr_per_log_burden"]), "max_followups": int(f), "n_patients": int(n), "burden": name,
            "trials": m, "not_fitted": len(g) - m, "rejections": k, "power": k / m if m else math.nan,
            "power_lower": ci.low if ci else math.nan, "power_upper": ci.high if ci else math.nan,
            "mean_hr_estimate": math.exp(mean_coef) if m else math.nan,
            "attenuation": mean_coef / float(true_coef.loc[(f, n)]) if m else math.nan,
            "mean_deaths": float(g["deaths"].mean()), "mean_scans_per_patient": float(g["scans"].mean()) / n,
            "alpha": float(s["alpha"]),
            "error_model": "; ".join(f"{key} {err[key]:.4g} ({source[key]})" for key in source)
            + f"; volume sd of log {err['volume_sd_log']:.4g}",
        })
    return pd.DataFrame(out)


def run_design(synthetic: dict | None, settings: dict | None, scores_path: Path | None = None,
               workers: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(power table, per-trial table): every trial simulated and analysed, `workers` processes."""
    s = resolve(settings)
    synthetic = dict(synthetic or {})
    resolve_settings(synthetic)  # a bad synthetic block stops here, before any worker starts
    s["max_followups"] = [None if f is None else int(f) for f in (s["max_followups"] or [None])]
    model = error_model(s, scores_path)
    err = model["values"]
    n_trials = int(s["trials"])
    workers = int(workers or s["workers"] or len(os.sched_getaffinity(0)))
    log.info("design: %d trials x %d sample sizes (%s) x %d follow-up design(s), HR %.3g per ln burden, "
             "%d processes; error model %s", n_trials, len(s["sample_sizes"]), s["sample_sizes"],
             len(s["max_followups"]), float(s["hr_per_log_burden"]), workers, err)
    rows, done, step = [], 0, max(1, n_trials // 10)
    if workers == 1:
        for k in range(n_trials):
            rows += simulate_one(k, synthetic, s, err)
            done += 1
            if done % step == 0 or done == n_trials:
                log.info("design: %d/%d trials", done, n_trials)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(simulate_one, k, synthetic, s, err) for k in range(n_trials)]
            for fut in as_completed(futures):
                rows += fut.result()
                done += 1
                if done % step == 0 or done == n_trials:
                    log.info("design: %d/%d trials", done, n_trials)
    trials = pd.DataFrame(rows).sort_values(["trial", "max_followups", "n_patients", "burden"],
                                            kind="mergesort").reset_index(drop=True)
    power = power_table(trials, s, err, model["source"])
    for f, g in power[power["burden"] == "measured"].groupby("max_followups"):
        enough = g[g["power_lower"] >= float(s["target_power"])]
        log.info("design: %d follow-ups: power %s; smallest n with the power CI above %.2f (measured burden): %s",
                 f, ", ".join(f"n={r.n_patients} {r.power:.2f}" for r in g.itertuples()), float(s["target_power"]),
                 enough["n_patients"].min() if len(enough) else "none of the sizes")
    return power, trials


def write_design(synthetic: dict | None, settings: dict | None, out_dir: Path, scores_path: Path | None = None,
                 workers: int | None = None, figure_settings: dict | None = None) -> pd.DataFrame:
    """design/power.csv, design/trials.parquet and figures design/power_curve.{pdf,png}."""
    from tumorburden.figures.design import power_curve

    out_dir = Path(out_dir)
    power, trials = run_design(synthetic, settings, scores_path, workers)
    tables.write(power, out_dir / "power.csv", "design_power")
    tables.write(trials, out_dir / "trials.parquet", "design_trials")
    power_curve(power, out_dir / "power_curve", float(resolve(settings)["target_power"]), figure_settings)
    return power
