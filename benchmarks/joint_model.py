"""Joint model of ln burden and survival: recovery and 95 % CI coverage of the association by
simulation, the two-stage approach beside it, and timings.

Usage:
  python benchmarks/joint_model.py coverage --source published --trials 100 --patients 200
  python benchmarks/joint_model.py coverage --source published --trials 100 --patients 200 --sigma 0.6
  python benchmarks/joint_model.py coverage --source synth --trials 100 --patients 200
  python benchmarks/joint_model.py coverage --source synth --trials 200 --first 200 --patients 200 --profile
  python benchmarks/joint_model.py coverage --source synth --trials 100 --patients 200 --basis spline --df 2
  python benchmarks/joint_model.py pool synth200.csv synth200b.csv
  python benchmarks/joint_model.py timing --patients 600
  python benchmarks/joint_model.py influence --patients 200 --seed 19
  python benchmarks/joint_model.py bootstrap --patients 200 --seed 19 --resamples 40 --workers 2 --trials 20
  python benchmarks/joint_model.py blocks --seeds 40 --blocks 4 --patients 200 --workers 2
  python benchmarks/joint_model.py jackknife --patients 200 --seed 19 --top 15 --workers 2

Sources of the simulated trials (never the estimator's code):
- published: tests/survival/joint_dgp.py, the joint model's own data-generating process (linear
  ln-burden trajectories with random intercept and slope, exponential baseline hazard, death on
  the current true value; Rizopoulos 2012 ch. 4): the model is correctly specified.
- synth: the project's simulator at table level (tumorburden.synth.trial.simulate_trial, survival
  model `visits`, one cohort): Stein-shaped true burden (shrink, then regrow), Weibull baseline
  hazard, death on the current true ln burden with the configured association
  (synthetic.survival_model.death_hr_per_log_burden); the burden a scan shows is the sum of the
  true lesion volumes. The joint model's linear trajectory is then misspecified.

Per trial: the joint model (ML, alpha_value with its Wald CI from the observed information, and
from the sandwich, the one-step jackknife and the CR2 variances too, CR2 also with a t on the
Bell-McCaffrey and on an empirical Satterthwaite df; with `--profile` the profile-likelihood
intervals, plain and robust-adjusted; `--basis spline --df 2` for the natural-spline trajectory) and the two-stage approach: the mixed model alone, each patient's
fitted current value (empirical Bayes, all of the patient's scans) plugged into a time-varying
Cox model (lifelines CoxTimeVaryingFitter, follow-up split every 14 days, the value at the start
of each piece).
Prints Markdown tables; timings are CPU seconds (process) and wall seconds of the fits.
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "tests" / "survival"))

from tumorburden.survival import joint  # noqa: E402

OFFSET_ML = 0.1
SPLIT_DAYS = 14.0


def published_trial(n, rng, sigma=None):
    from joint_dgp import TRUTH, simulate

    lon, surv = simulate(n, rng, None if sigma is None else {"sigma": sigma})
    return lon, surv, (TRUTH["alpha"], TRUTH["alpha_slope"])


def synth_trial(n, seed, imaging_after_progression=False):
    from tumorburden.synth import trial

    tr = trial.simulate_trial({"n_patients": n, "seed": seed, "cohorts": {"lung": 1.0}})
    total = tr.lesions.groupby("scan_id")["volume_ml"].sum()
    scans = tr.scans.assign(total=tr.scans["scan_id"].map(total).fillna(0.0))
    surv = tr.clinical.rename(columns={"os_days": "time", "os_event": "event"})[["patient_id", "time", "event"]]
    if imaging_after_progression:
        # the diagnosis' counterfactual: scans go on every visit interval after the trial's last one
        # (progression or the last follow-up) until death or censoring, showing the true burden then
        every = tr.model["progression"]["visit_every_days"]
        extra = []
        for pid, t_end in zip(surv["patient_id"], surv["time"]):
            last = scans.loc[scans["patient_id"] == pid, "days"].max()
            days = np.arange(last + every, t_end, every)
            if len(days):
                extra.append(pd.DataFrame({"patient_id": pid, "scan_id": [f"{pid}-X{k}" for k in range(len(days))],
                                           "days": days, "total": tr.true_volume(pid, days)}))
        scans = pd.concat([scans, *extra], ignore_index=True)
    lon = pd.DataFrame({"patient_id": scans["patient_id"], "scan_id": scans["scan_id"], "days": scans["days"],
                        "y": np.log(scans["total"] + OFFSET_ML)})
    slope = tr.model["association"]["slope_per_0.001_per_day"] * 1000 / joint.DAYS_PER_YEAR  # per unit / year
    return lon, surv, (tr.model["association"]["log_burden"], slope)


def two_stage(data: joint.JointData):
    """alpha and its SE from the plug-in time-varying Cox model."""
    from lifelines import CoxTimeVaryingFitter

    lmm = joint.fit_mixed_model(data)
    X = lmm.basis.design(data.t)[0]
    _, mu, _ = joint.longitudinal_posterior(data.y, X, data.mask, lmm.beta, lmm.sigma, lmm.L)
    step = SPLIT_DAYS / joint.DAYS_PER_YEAR
    # whole-day times on a 14-day grid: without the tolerance a float error adds an empty last piece
    # (start == stop), on which lifelines' Efron step divides by zero
    n_pieces = np.maximum(np.ceil(data.time / step - 1e-9), 1).astype(int)
    pid = np.repeat(np.arange(data.n), n_pieces)
    k = np.concatenate([np.arange(m) for m in n_pieces])
    start = k * step
    stop = np.minimum(start + step, data.time[pid])
    last = k == n_pieces[pid] - 1
    value = lmm.beta[0] + mu[pid, 0] + (lmm.beta[1] + mu[pid, 1]) * start
    rows = pd.DataFrame({"id": pid, "start": start, "stop": stop, "event": (last & (data.event[pid] > 0)).astype(int),
                         "current_value": value})
    ctv = CoxTimeVaryingFitter().fit(rows, id_col="id", event_col="event", start_col="start", stop_col="stop")
    return float(ctv.params_["current_value"]), float(ctv.standard_errors_["current_value"])


def residual_diagnosis(data, basis):
    """The mixed model's residual SD and the lag-1 autocorrelation of its within-patient residuals
    (y minus each patient's fitted trajectory; patients with 3 scans or more): near 0 where the
    trajectory's shape fits, positive where it runs beside the data for several scans."""
    lmm = joint.fit_mixed_model(data, basis)
    X = basis.design(data.t)[0]
    _, mu, _ = joint.longitudinal_posterior(data.y, X, data.mask, lmm.beta, lmm.sigma, lmm.L)
    res = data.y - np.einsum("njc,nc->nj", X, lmm.beta + mu)
    pairs = (data.mask[:, 1:] & data.mask[:, :-1]) & (data.mask.sum(axis=1) >= 3)[:, None]
    return lmm.sigma, float(np.corrcoef(res[:, :-1][pairs], res[:, 1:][pairs])[0, 1])


def profile_sides(data, fit, name, z=1.959963984540054):
    """The profile log-likelihood of one parameter at two points, estimate -+ z x its observed-
    information SE (the nuisance parameters refitted by L-BFGS-B from their quadratic prediction),
    read as a spread per side, sd = distance / sqrt(2 (log L - profile log L)): the profile-likelihood
    (LR) interval's half-widths are z x sd on each side, exact where the profile is quadratic on each
    side, and a skewed likelihood gives a skewed interval."""
    from scipy import optimize

    design = joint.design_of(data, fit.basis, fit.knots, fit.quad.legendre)
    i = fit.names().index(name)
    theta, cov = fit.theta, fit.cov_observed
    free = np.arange(len(theta)) != i

    def negll(th):
        try:
            v = -joint.loglik_terms(th, data, fit.knots, fit.layout, fit.quad, design).sum()
        except np.linalg.LinAlgError:
            return 1e300
        return v if np.isfinite(v) else 1e300

    f0 = negll(theta)
    sds = []
    for d in (-z * math.sqrt(cov[i, i]), z * math.sqrt(cov[i, i])):
        start = theta + cov[:, i] * d / cov[i, i]

        def constrained(x, start=start):
            th = start.copy()
            th[free] = x
            return negll(th)

        res = optimize.minimize(constrained, start[free], method="L-BFGS-B",
                                options={"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-6})
        w = 2 * (res.fun - f0)
        sds.append(abs(d) / math.sqrt(w) if w > 0 else math.nan)
    return sds


def one_trial(job):
    source, patients, seed, r, sigma, association, kind, df, hermite, after, profile = job
    if source == "published":
        lon, surv, (alpha, alpha_slope) = published_trial(patients, np.random.default_rng([seed, r]), sigma)
    else:
        lon, surv, (alpha, alpha_slope) = synth_trial(patients, seed + r, after)
    data = joint.joint_data(lon, surv)
    c0 = time.process_time()
    basis = joint.time_basis(kind, data.t[data.mask], df, data)
    quad = joint.Quadrature(hermite or (7 if basis.size == 2 else 5), 5)
    # the CR2 fit holds all four variances: observed information, sandwich, jackknife and CR2
    fit = joint.fit_joint(data, association, quad=quad, basis=basis, variance="cr2")
    c1 = time.process_time()
    names = fit.names()
    est = fit.estimate("alpha_value")[0]
    i = names.index("alpha_value")
    se_observed, se = math.sqrt(fit.cov_observed[i, i]), math.sqrt(fit.cov_sandwich[i, i])
    se_jackknife, se_cr2 = math.sqrt(fit.cov_jackknife[i, i]), math.sqrt(fit.cov_cr2[i, i])
    # Satterthwaite df from the spread of the patients' own terms of the CR2 variance, V = sum_i z_i^2:
    # 2 V^2 / (n var(z_i^2)), n for normal z_i of equal variance, small where a few z_i^2 dominate
    zz = fit.cr2_terms[:, i] ** 2 if fit.cr2_terms is not None else np.full(data.n, np.nan)
    df_empirical = 2 * zz.sum() ** 2 / (len(zz) * zz.var(ddof=1))
    profile_low, profile_high = profile_sides(data, fit, "alpha_value") if profile else (math.nan, math.nan)
    c_profile = time.process_time()
    try:
        a2, se2 = two_stage(data)
    except Exception as exc:  # noqa: BLE001 (the peer failing on one trial must not end the run: counted)
        print(f"trial {r + 1}: two-stage failed: {type(exc).__name__}", file=sys.stderr, flush=True)
        a2, se2 = math.nan, math.nan
    c2 = time.process_time()
    sigma, autocorrelation = residual_diagnosis(data, basis)
    print(f"trial {r + 1}: alpha {alpha:.3f} joint {est:.3f} ({se_observed:.3f}; sandwich {se:.3f}; "
          f"jackknife {se_jackknife:.3f}; CR2 {se_cr2:.3f}) "
          f"two-stage {a2:.3f} ({se2:.3f})", file=sys.stderr, flush=True)
    row = {"alpha": alpha, "joint": est, "joint_se": se_observed, "joint_se_sandwich": se,
           "joint_se_jackknife": se_jackknife, "joint_se_cr2": se_cr2, "joint_df_cr2": math.nan if fit.df_cr2 is None else fit.df_cr2[i],
           "joint_df_empirical": df_empirical,
           "joint_profile_sd_low": profile_low, "joint_profile_sd_high": profile_high, "two_stage": a2,
           "two_stage_se": se2,
           "events": int(data.event.sum()), "scans": int(data.mask.sum()), "converged": fit.converged,
           "residual_sd": sigma, "residual_autocorrelation": autocorrelation,
           "cpu_joint": c1 - c0, "cpu_profile": c_profile - c1, "cpu_two_stage": c2 - c_profile}
    if association == "value+slope":
        row["alpha_slope"] = alpha_slope
        row["joint_slope"], row["joint_slope_se_jackknife"] = fit.estimate("alpha_slope")
        k = names.index("alpha_slope")
        row["joint_slope_se"] = math.sqrt(fit.cov_observed[k, k])
        row["joint_slope_se_sandwich"] = math.sqrt(fit.cov_sandwich[k, k])
    return row


def summary_row(label, est, se, truth, cpu=None, below=None, above=None):
    """Bias with its Monte-Carlo SE, empirical SD against the mean model SE, coverage with its MC SE
    and where the misses fall (a biased estimator misses on one side). The interval is est -+ z se,
    or est - below to est + above where those half-widths are given."""
    z = 1.959963984540054
    below = z * se if below is None else below
    above = z * se if above is None else above
    ok = est.notna() & se.notna() & below.notna() & above.notna()
    est, se, truth, below, above = est[ok], se[ok], truth[ok], below[ok], above[ok]
    n = len(est)
    low, high = est - below, est + above
    cover = ((low <= truth) & (truth <= high)).mean()
    mc = math.sqrt(cover * (1 - cover) / n)
    below, above = int((high < truth).sum()), int((low > truth).sum())
    return (f"| {label} | {truth.mean():.3f} | {est.mean():.4f} | {est.mean() - truth.mean():+.4f} ({est.std() / math.sqrt(n):.4f}) | "
            f"{est.std():.4f} | {se.mean():.4f} | {se.mean() / est.std():.2f} | {100 * cover:.1f} % ({100 * mc:.1f}) | "
            f"{below} / {above} |" + ("" if cpu is None else f" {cpu:.2f} |" if cpu == cpu else " |"))


def interval_candidates(d):
    """The small-sample intervals of alpha beside the Wald ones, from the same fits: (SE, half-width
    below, half-width above) each. t: the CR2 variance with a t reference on the Bell-McCaffrey df;
    profile: the likelihood-ratio interval (two-point reading of the profile, profile_sides), on its
    own and with the robust (Chandler & Bate 2007) scaling of the LR statistic by observed / robust
    variance, which widens each side by sqrt(robust / observed)."""
    from scipy import stats

    z = 1.959963984540054
    t = pd.Series(stats.t.ppf(0.975, d.joint_df_cr2), index=d.index)
    out = {"CR2 SE": (d.joint_se_cr2, None, None),
           "CR2 SE, t on Bell-McCaffrey df": (d.joint_se_cr2, t * d.joint_se_cr2, t * d.joint_se_cr2)}
    t_empirical = pd.Series(stats.t.ppf(0.975, d.joint_df_empirical), index=d.index)
    out["CR2 SE, t on the empirical Satterthwaite df"] = (d.joint_se_cr2, t_empirical * d.joint_se_cr2,
                                                          t_empirical * d.joint_se_cr2)
    if d.joint_profile_sd_low.notna().any():
        for label, ratio, q in (("profile LR", 1.0, z),
                                ("profile LR, sandwich-adjusted", d.joint_se_sandwich / d.joint_se, z),
                                ("profile LR, CR2-adjusted, t on Bell-McCaffrey df", d.joint_se_cr2 / d.joint_se, t)):
            out[label] = (d.joint_se * ratio, q * ratio * d.joint_profile_sd_low, q * ratio * d.joint_profile_sd_high)
    return out


def coverage(args):
    jobs = [(args.source, args.patients, args.seed, r, args.sigma, args.association, args.basis, args.df, args.hermite,
             args.imaging_after_progression, args.profile)
            for r in range(args.first, args.first + args.trials)]
    w0 = time.perf_counter()
    if args.workers > 1:
        with multiprocessing.Pool(args.workers) as pool:
            rows = pool.map(one_trial, jobs, chunksize=1)
    else:
        rows = [one_trial(j) for j in jobs]
    wall = time.perf_counter() - w0
    d = pd.DataFrame(rows)
    if args.save:
        d.to_csv(args.save, index=False)
    print(f"\n{args.source}{' with imaging after progression' if args.imaging_after_progression else ''}: "
          f"{args.trials} trials x {args.patients} patients (mean {d.scans.mean() / args.patients:.1f} "
          f"scans per patient, {d.events.mean():.0f} deaths), association {args.association}, time basis "
          f"{args.basis}{f' (df {args.df})' if args.basis == 'spline' else ''}, {int(d.converged.sum())} joint fits "
          f"converged\n")
    coverage_table(d)
    print(f"\nwall {wall:.0f} s with {args.workers} worker(s)")


def coverage_table(d):
    """The coverage run's table from its per-trial rows (one run's, or several runs' pooled)."""
    print("| method: parameter | truth | mean estimate | bias (MC SE) | empirical SD | mean SE | SE / SD "
          "| 95 % CI coverage (MC SE) | misses below / above | CPU s per fit |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(summary_row("joint: alpha (current value), observed-information SE", d.joint, d.joint_se, d.alpha,
                      d.cpu_joint.mean()))
    print(summary_row("joint: alpha (current value), sandwich SE", d.joint, d.joint_se_sandwich, d.alpha, math.nan))
    print(summary_row("joint: alpha (current value), one-step jackknife SE", d.joint, d.joint_se_jackknife, d.alpha,
                      math.nan))
    for label, (se, below, above) in interval_candidates(d).items():
        print(summary_row(f"joint: alpha (current value), {label}", d.joint, se, d.alpha, math.nan, below, above))
    if "joint_slope" in d:
        print(summary_row("joint: alpha_slope (current slope), observed-information SE", d.joint_slope,
                          d.joint_slope_se, d.alpha_slope, math.nan))
        print(summary_row("joint: alpha_slope (current slope), sandwich SE", d.joint_slope, d.joint_slope_se_sandwich,
                          d.alpha_slope, math.nan))
        print(summary_row("joint: alpha_slope (current slope), one-step jackknife SE", d.joint_slope,
                          d.joint_slope_se_jackknife, d.alpha_slope, math.nan))
    print(summary_row("two-stage: alpha (current value)", d.two_stage, d.two_stage_se, d.alpha, d.cpu_two_stage.mean()))
    if d.two_stage.isna().any():
        print(f"\ntwo-stage failed (lifelines did not converge) in {int(d.two_stage.isna().sum())} trial(s): left out of its row")
    print(f"\nthe mixed model alone: residual SD of ln burden {d.residual_sd.mean():.3f}, lag-1 autocorrelation of "
          f"the within-patient residuals {d.residual_autocorrelation.mean():+.2f} (means over trials)")


def pool(args):
    """Several coverage runs' per-trial CSVs (--save) pooled: the same table over all their trials,
    with the spread of the z-scores and how the estimate and its SE move together."""
    from scipy.stats import chi2

    d = pd.concat([pd.read_csv(f) for f in args.csv], ignore_index=True)
    print(f"{len(d)} trials pooled from {', '.join(args.csv)}\n")
    coverage_table(d)
    n = len(d)
    lo, hi = (d.joint.std() * math.sqrt((n - 1) / q) for q in (chi2.ppf(0.975, n - 1), chi2.ppf(0.025, n - 1)))
    z = (d.joint - d.alpha) / d.joint_se_sandwich
    print(f"\nempirical SD of alpha {d.joint.std():.4f} (95 % CI {lo:.4f} to {hi:.4f}); z-scores (estimate - truth) / "
          f"sandwich SE: mean {z.mean():+.2f}, SD {z.std():.2f}; correlation of alpha and its sandwich SE "
          f"{np.corrcoef(d.joint, d.joint_se_sandwich)[0, 1]:.2f}")


def _bootstrap_fit(job):
    seed, patients, b = job
    lon, surv, _ = _synth_trial_once(patients, seed)
    pids = surv["patient_id"].to_numpy()
    draw = np.random.default_rng([seed, b]).choice(len(pids), len(pids), replace=True)
    # each draw a patient of its own (a patient drawn twice is two patients)
    surv_b = surv.iloc[draw].assign(patient_id=[f"B{k:04d}" for k in range(len(draw))])
    lon_b = pd.concat([lon[lon["patient_id"] == pids[i]].assign(patient_id=f"B{k:04d}") for k, i in enumerate(draw)])
    fit = joint.fit_joint(joint.joint_data(lon_b, surv_b), hessian=False)
    return fit.theta[fit.names().index("alpha_value")]


def _full_fit(job):
    seed, patients = job
    lon, surv, (alpha, _) = synth_trial(patients, seed)
    fit = joint.fit_joint(joint.joint_data(lon, surv), variance="cr2")
    i = fit.names().index("alpha_value")
    return {"seed": seed, "alpha": alpha, "joint": fit.theta[i], "joint_se": math.sqrt(fit.cov_observed[i, i]),
            "joint_se_sandwich": math.sqrt(fit.cov_sandwich[i, i]), "joint_se_cr2": math.sqrt(fit.cov_cr2[i, i])}


def bootstrap(args):
    """Trials seed, seed + 1, ...: the SD of alpha over bootstrap resamples of each trial's patients
    (each resample refitted, knots and all), beside the trial's own observed-information, sandwich and
    CR2 SEs (is the spread across trials a within-trial spread that resampling sees?)."""
    seeds = range(args.seed, args.seed + args.trials)
    with multiprocessing.Pool(args.workers) as pool:
        full = pd.DataFrame(pool.map(_full_fit, [(s, args.patients) for s in seeds], chunksize=1))
        boot = pool.map(_bootstrap_fit, [(s, args.patients, b) for s in seeds for b in range(args.resamples)],
                        chunksize=1)
    full["bootstrap_sd"] = np.array(boot).reshape(args.trials, args.resamples).std(axis=1, ddof=1)
    if args.save:
        full.to_csv(args.save, index=False)
    for r in full.itertuples():
        print(f"synth trial seed {r.seed}, {args.patients} patients: alpha {r.joint:.4f}, observed-information SE "
              f"{r.joint_se:.4f}, sandwich SE {r.joint_se_sandwich:.4f}, CR2 SE {r.joint_se_cr2:.4f}, bootstrap SD "
              f"{r.bootstrap_sd:.4f} over {args.resamples} resamples")
    if args.trials > 1:
        ratio = np.log(full.bootstrap_sd / full.joint_se_cr2)
        print(f"\n{args.trials} trials: bootstrap SD / CR2 SE geometric mean {math.exp(ratio.mean()):.3f} (95 % CI "
              f"{math.exp(ratio.mean() - 1.96 * ratio.std() / math.sqrt(len(ratio))):.3f} to "
              f"{math.exp(ratio.mean() + 1.96 * ratio.std() / math.sqrt(len(ratio))):.3f}); bootstrap SD / sandwich SE "
              f"{math.exp(np.log(full.bootstrap_sd / full.joint_se_sandwich).mean()):.3f}")


@functools.lru_cache(maxsize=1)
def _synth_trial_once(patients, seed):  # each worker simulates the trial once for all its refits
    return synth_trial(patients, seed)


def _leave_out_fit(job):
    seed, patients, k = job
    lon, surv, _ = _synth_trial_once(patients, seed)
    pid = surv["patient_id"].iloc[k]
    fit = joint.fit_joint(joint.joint_data(lon[lon["patient_id"] != pid], surv[surv["patient_id"] != pid]),
                          hessian=False)
    return fit.theta[fit.names().index("alpha_value")]


def jackknife(args):
    """One trial: the jackknife of alpha with the trial refitted without each patient in turn (knots
    and all) for the --top most influential patients (all with --top 0), the one-step rule for the
    rest, beside the one-step jackknife and the sandwich of the full fit."""
    lon, surv, _ = synth_trial(args.patients, args.seed)
    data = joint.joint_data(lon, surv)
    fit = joint.fit_joint(data, variance="jackknife")
    i = fit.names().index("alpha_value")
    design = joint.design_of(data, fit.basis, fit.knots, fit.quad.legendre)

    def terms(th):
        return joint.loglik_terms(th, data, fit.knots, fit.layout, fit.quad, design)

    S = joint.patient_scores(terms, fit.theta)
    H_i = joint.numerical_hessian(lambda th: -terms(th), fit.theta)
    H = H_i.sum(axis=-1)
    step = -np.linalg.solve(H[None] - np.moveaxis(H_i, -1, 0), S[..., None])[:, i, 0]  # the one-step rule
    n = data.n
    top = np.argsort(-np.abs(step))[:args.top or n]
    order = {pid: k for k, pid in enumerate(surv["patient_id"])}
    w0 = time.perf_counter()
    with multiprocessing.Pool(args.workers) as pool:
        refit = np.array(pool.map(_leave_out_fit, [(args.seed, args.patients, order[data.patient_id[k]]) for k in top]))
    d = step.copy()
    d[top] = refit - fit.theta[i]
    var = (n - 1) / n * ((d - d.mean()) ** 2).sum()
    share = (step[top] ** 2).sum() / (step ** 2).sum()
    print(f"synth trial seed {args.seed}, {n} patients: alpha {fit.theta[i]:.4f}; SE of alpha: observed information "
          f"{math.sqrt(fit.cov_observed[i, i]):.4f}, sandwich {math.sqrt(fit.cov_sandwich[i, i]):.4f}, one-step "
          f"jackknife {math.sqrt(fit.cov[i, i]):.4f}, jackknife with {len(top)} patients refitted exactly "
          f"{math.sqrt(var):.4f} (they carry {100 * share:.0f} % of the one-step variance); refits "
          f"{time.perf_counter() - w0:.0f} s wall")


def influence(args):
    """One trial: each patient's influence on alpha (row of H^-1 times its score), the patients that
    carry most of its variance and how long each was followed after its last scan."""
    lon, surv, _ = synth_trial(args.patients, args.seed)
    data = joint.joint_data(lon, surv)
    fit = joint.fit_joint(data)
    design = joint.design_of(data, fit.basis, fit.knots, fit.quad.legendre)
    S = joint.patient_scores(lambda th: joint.loglik_terms(th, data, fit.knots, fit.layout, fit.quad, design),
                             fit.theta)
    infl = S @ fit.cov_observed[:, fit.names().index("alpha_value")]
    last = np.where(data.mask, data.t, -np.inf).max(axis=1)
    after = data.time - last
    share = np.sort(infl ** 2)[::-1]
    deaths = data.event > 0
    print(f"synth trial seed {args.seed}, {data.n} patients, {int(deaths.sum())} deaths: years from the last scan to "
          f"death or censoring: median {np.median(after):.2f}; deaths more than 90 days after the last scan: "
          f"{100 * (after[deaths] > 90 / joint.DAYS_PER_YEAR).mean():.0f} %")
    print(f"share of the variance of alpha carried by the 10 most influential patients: "
          f"{100 * share[:10].sum() / share.sum():.0f} %; kurtosis of the influences "
          f"{float(pd.Series(infl).kurt()):.1f}\n")
    print("| patient | influence on alpha | event | years followed | years after the last scan | scans | ln burden at the scans |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for k in np.argsort(-np.abs(infl))[:10]:
        y = ", ".join(f"{v:.2f}" for v in data.y[k][data.mask[k]])
        print(f"| {data.patient_id[k]} | {infl[k]:+.4f} | {int(data.event[k])} | {data.time[k]:.2f} | {after[k]:.2f} | "
              f"{int(data.mask[k].sum())} | {y} |")


def _seed_blocks(job):
    seed, patients, blocks = job
    lon, surv, (alpha, _) = synth_trial(patients * blocks, seed)
    rows = []
    for b in range(blocks):
        # patient i of a seed is the same whatever the trial's size (synth.trial), so block 0 is the
        # `coverage` trial of this seed and blocks 1, 2, ... are further patients of the same seed
        pids = set(surv["patient_id"].iloc[b * patients:(b + 1) * patients])
        data = joint.joint_data(lon[lon["patient_id"].isin(pids)], surv[surv["patient_id"].isin(pids)])
        c0 = time.process_time()
        fit = joint.fit_joint(data, variance="sandwich")
        est, se = fit.estimate("alpha_value")
        k = fit.names().index("alpha_value")
        rows.append({"seed": seed, "block": b, "alpha": alpha, "joint": est, "joint_se": math.sqrt(fit.cov_observed[k, k]),
                     "joint_se_sandwich": se, "events": int(data.event.sum()), "converged": fit.converged,
                     "cpu_joint": time.process_time() - c0})
        print(f"seed {seed} block {b}: joint {est:.4f} (sandwich {se:.4f})", file=sys.stderr, flush=True)
    return rows


def blocks(args):
    """Is there randomness shared by the patients of one simulated trial (one seed)? Each seed's
    trial of blocks x patients is cut into blocks of `patients`, each fitted alone: a component
    shared within a seed makes the block estimates of one seed correlated (one-way ANOVA of the
    estimates by seed: between-seed variance component, F test); without one, the spread of the
    blocks around their seed's mean is the spread across seeds."""
    from scipy import stats

    jobs = [(args.seed + r, args.patients, args.blocks) for r in range(args.seeds)]
    w0 = time.perf_counter()
    with multiprocessing.Pool(args.workers) as pool:
        d = pd.DataFrame([row for rows in pool.map(_seed_blocks, jobs, chunksize=1) for row in rows])
    wall = time.perf_counter() - w0
    if args.save:
        d.to_csv(args.save, index=False)
    k, m = args.seeds, args.blocks
    means = d.groupby("seed")["joint"].mean()
    msb = m * means.var(ddof=1)
    msw = d.groupby("seed")["joint"].var(ddof=1).mean()
    f = msb / msw
    p = stats.f.sf(f, k - 1, k * (m - 1))
    lo, hi = (f / stats.f.ppf(q, k - 1, k * (m - 1)) for q in (0.975, 0.025))
    print(f"\nsynth: {k} seeds x {m} blocks of {args.patients} patients, {int(d.converged.sum())} of {len(d)} joint "
          f"fits converged, {d.events.mean():.0f} deaths per block, {d.cpu_joint.mean():.1f} CPU s per fit\n")
    print(f"- SD of alpha over all {len(d)} blocks {d.joint.std():.4f}; within a seed (pooled) {math.sqrt(msw):.4f}; "
          f"SD of the seed means {means.std():.4f} (without a shared component: {math.sqrt(msw / m):.4f})")
    print(f"- between-seed variance component (MSB - MSW) / {m} = {(msb - msw) / m:+.5f}; F = {f:.2f} on {k - 1} and "
          f"{k * (m - 1)} df, p = {p:.3f}; 95 % CI of the variance ratio 1 + {m} c / (a/n): {lo:.2f} to {hi:.2f}")
    print(f"- mean SE: observed {d.joint_se.mean():.4f}, sandwich {d.joint_se_sandwich.mean():.4f}")
    print("\n| method: parameter | truth | mean estimate | bias (MC SE) | empirical SD | mean SE | SE / SD "
          "| 95 % CI coverage (MC SE) | misses below / above |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(summary_row("joint: alpha (current value), observed-information SE", d.joint, d.joint_se, d.alpha))
    print(summary_row("joint: alpha (current value), sandwich SE", d.joint, d.joint_se_sandwich, d.alpha))
    print(f"\nwall {wall:.0f} s with {args.workers} worker(s)")


def timing(args):
    rng = np.random.default_rng(args.seed)
    lon, surv, _ = published_trial(args.patients, rng)
    data = joint.joint_data(lon, surv)
    print(f"{data.n} patients, {data.mask.sum()} scans ({data.mask.sum() / data.n:.1f} per patient), "
          f"{int(data.event.sum())} deaths\n")
    print("| step | wall s | CPU s |")
    print("| --- | --- | --- |")
    basis = joint.time_basis(args.basis, data.t[data.mask], args.df, data)
    quad = joint.Quadrature(args.hermite or (7 if basis.size == 2 else 5), 5)
    label = f"joint model fit, {args.basis} basis{f' (df {args.df})' if args.basis == 'spline' else ''}"
    for name, call in (("two-stage (mixed model + time-varying Cox), the peer", lambda: two_stage(data)),
                       (f"{label} (ML + observed-information SEs)",
                        lambda: joint.fit_joint(data, basis=basis, quad=quad, variance="observed")),
                       (f"{label} (ML + sandwich SEs)",
                        lambda: joint.fit_joint(data, basis=basis, quad=quad, variance="sandwich"))):
        w0, c0 = time.perf_counter(), time.process_time()
        out = call()
        print(f"| {name} | {time.perf_counter() - w0:.1f} | {time.process_time() - c0:.1f} |")
        if isinstance(out, joint.JointFit):
            fit = out
    w0, c0 = time.perf_counter(), time.process_time()
    landmarks = [d / joint.DAYS_PER_YEAR for d in (0, 90, 180, 270, 365)]  # the survival settings' default grid
    pred = joint.dynamic_survival(fit, data, [180 / joint.DAYS_PER_YEAR, 365 / joint.DAYS_PER_YEAR], landmarks)
    print(f"| dynamic predictions ({len(pred)} rows: every scan and every landmark at risk x 2 windows) | "
          f"{time.perf_counter() - w0:.1f} | "
          f"{time.process_time() - c0:.1f} |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    c = sub.add_parser("coverage")
    c.add_argument("--source", choices=["published", "synth"], default="published")
    c.add_argument("--trials", type=int, default=100)
    c.add_argument("--patients", type=int, default=200)
    c.add_argument("--seed", type=int, default=19)
    c.add_argument("--save", help="per-trial estimates as CSV")
    c.add_argument("--workers", type=int, default=1, help="trials in parallel (processes)")
    c.add_argument("--association", choices=joint.ASSOCIATIONS, default="value",
                   help="the joint model's association (value+slope also estimates the slope's, true 0 in both sources)")
    c.add_argument("--sigma", type=float, help="published source: residual SD of ln burden (default joint_dgp's 0.25)")
    c.add_argument("--basis", choices=joint.TIME_BASES, default="linear", help="the trajectory's time basis")
    c.add_argument("--df", type=int, default=2, help="spline basis: df of ns(t, df)")
    c.add_argument("--hermite", type=int, help="Gauss-Hermite nodes per random effect (default 7 linear, 5 spline)")
    c.add_argument("--imaging-after-progression", action="store_true",
                   help="synth: scans continue every visit interval until death or censoring (a diagnosis)")
    c.add_argument("--first", type=int, default=0, help="first trial (its seed: --seed + first)")
    c.add_argument("--profile", action="store_true",
                   help="also the profile-likelihood intervals of alpha (two constrained fits per trial)")
    t = sub.add_parser("timing")
    t.add_argument("--patients", type=int, default=600)
    t.add_argument("--seed", type=int, default=19)
    t.add_argument("--basis", choices=joint.TIME_BASES, default="linear")
    t.add_argument("--df", type=int, default=2)
    t.add_argument("--hermite", type=int)
    b = sub.add_parser("bootstrap")
    b.add_argument("--patients", type=int, default=200)
    b.add_argument("--seed", type=int, default=19)
    b.add_argument("--resamples", type=int, default=40)
    b.add_argument("--trials", type=int, default=1, help="trials seed, seed + 1, ...")
    b.add_argument("--save", help="per-trial SEs and bootstrap SDs as CSV")
    b.add_argument("--workers", type=int, default=2)
    k = sub.add_parser("blocks", help="synth: randomness shared within a trial? seeds x blocks of patients")
    k.add_argument("--seeds", type=int, default=40)
    k.add_argument("--blocks", type=int, default=4)
    k.add_argument("--patients", type=int, default=200, help="patients per block")
    k.add_argument("--seed", type=int, default=19, help="first seed")
    k.add_argument("--workers", type=int, default=2)
    k.add_argument("--save", help="per-block estimates as CSV")
    j = sub.add_parser("jackknife", help="synth: one trial's jackknife by refits against the one-step one")
    j.add_argument("--patients", type=int, default=200)
    j.add_argument("--top", type=int, default=0, help="refit only the most influential patients (0: all)")
    j.add_argument("--seed", type=int, default=19)
    j.add_argument("--workers", type=int, default=2)
    o = sub.add_parser("pool", help="coverage runs' per-trial CSVs pooled into one table")
    o.add_argument("csv", nargs="+")
    i = sub.add_parser("influence")
    i.add_argument("--patients", type=int, default=200)
    i.add_argument("--seed", type=int, default=19)
    args = p.parse_args()
    {"coverage": coverage, "pool": pool, "timing": timing, "influence": influence, "bootstrap": bootstrap,
     "blocks": blocks, "jackknife": jackknife}[args.what](args)


if __name__ == "__main__":
    main()
