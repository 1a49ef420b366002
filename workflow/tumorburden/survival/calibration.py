"""Calibration of a Cox model's predicted survival at horizons: grouped, smooth, in the large, slope.

- **grouped** (as rms::calibrate.cph, cmethod "KM"): cut-points are the quantiles of
  c(0, 1, predicted S(u)) at seq(0, 1, length = groups + 1) (rms's ``g = floor(n / m)``), groups
  as Hmisc::cut2 makes them ([c_i, c_i+1), the last one closed); per group the mean predicted S(u)
  and the Kaplan-Meier S(u) (groupkm: missing when the group has < 2 patients or its follow-up
  ends before u alive) with the log-type CI S exp(+-z se) of survfit. Optimism as
  rms::predab.resample: each replicate refits the model on a resample, groups the resample by the
  original cut-points and takes (KM - mean predicted) on the resample minus the same with the
  replicate's model on the original patients; a replicate with < 5 events, or a group left empty,
  is left out of that group's mean (``n_replicates``); ``corrected`` = KM - mean optimism.
- **smooth** (Austin, Harrell & van Klaveren 2020, Stat Med 39:2714, their Appendix code): a Cox
  model of the outcome on rcs(cll, 3) (Harrell's restricted cubic spline, knots at the 10/50/90 %
  quantiles of cll as Hmisc::rcspline.eval places them) with cll = log(-log S(u | x)); its
  S(u | cll) is the observed survival as a smooth function of the predicted one, on a grid of
  predicted values. ICI, E50 and E90 are the mean, median and 90th percentile of |observed -
  predicted| over the patients. The curve's optimism at each grid point is the bootstrap's (the
  calibration model refitted on the resample with the replicate's predictions minus on the
  original patients with them); ``corrected`` = observed - optimism. rms's own smoother
  (cmethod "hare") needs polspline, which is neither in Debian nor on PyPI.
- **in the large**: observed risk 1 - KM(u) against the mean predicted risk (difference and O/E).
- **slope**: the Cox coefficient of cll(u) refitted on the patients; for a one-stratum
  proportional-hazards model cll(u) = log H0(u) + lp, so it is 1 on the fitting patients and its
  optimism-corrected value is validate's calibration slope at every horizon.

Written here because neither lifelines nor scikit-survival has calibration of survival models
(lifelines' ``survival_probability_calibration`` draws one smooth curve: no groups, no bootstrap,
no optimism). All bootstrap replicates are batched through validation.fit_cox_batch.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import norm

from tumorburden.survival.validation import fit_cox_batch, survival_at

CALIBRATION_COLUMNS = ["horizon_days", "method", "group", "n", "predicted", "observed", "observed_lower",
                       "observed_upper", "optimism", "corrected", "optimism_sd", "n_replicates", "statistic", "value",
                       "status"]
MIN_REPLICATE_EVENTS = 5  # rms::calibrate's distance(): a resample with fewer events gives NA
SMOOTH_KNOT_QUANTILES = (0.10, 0.50, 0.90)


# --- grouping and Kaplan-Meier -----------------------------------------------------------------


def rms_cuts(predicted, groups: int) -> np.ndarray:
    """calibrate.cph's cut-points: unique(quantile(c(0, 1, S), seq(0, 1, length = g + 1)))."""
    return np.unique(np.quantile(np.r_[0.0, 1.0, np.asarray(predicted, float)], np.linspace(0, 1, int(groups) + 1)))


def group_of(predicted, cuts) -> np.ndarray:
    """0-based group as Hmisc::cut2(x, cuts): [c_i, c_i+1), the last interval closed."""
    x = np.where(np.abs(predicted) < 1e-10, 0.0, predicted)  # groupkm zeroes |x| < 1e-10
    return np.clip(np.searchsorted(cuts, x, side="right") - 1, 0, len(cuts) - 2)


def _km_at(time, event, w, u):
    """Kaplan-Meier S(u), survfit's std.err (Greenwood, of -log S) and whether groupkm reports it,
    for each row of counts w (B, n): missing (False) when < 2 patients or follow-up ends alive
    before u. Not km.km_table: this one runs every bootstrap replicate's group at once, and the
    apparent groups go through it too so that training and test use the same arithmetic."""
    order = np.argsort(time, kind="mergesort")
    t, e, w = np.asarray(time, float)[order], np.asarray(event, bool)[order], np.asarray(w, float)[:, order]
    times, first = np.unique(t, return_index=True)
    at_risk = np.flip(np.cumsum(np.flip(w, 1), 1), 1)[:, first]
    dead = np.add.reduceat(w * e, first, axis=1)
    use = times <= u + 1e-6
    r, d = at_risk[:, use], dead[:, use]
    live = r > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        surv = np.where(live, 1 - d / np.where(live, r, 1), 1.0).prod(axis=1)
        green = np.where(live & (r > d), d / (r * (r - d)), np.where(live & (d > 0), np.inf, 0.0)).sum(axis=1)
    last = np.where(w > 0, t[None], -np.inf).max(axis=1)
    ok = (w.sum(axis=1) >= 2) & ~((u > last + 1e-6) & (surv > 0))
    return surv, np.sqrt(green), ok


def weighted_km_at(time, event, w, u) -> np.ndarray:
    """Kaplan-Meier S(u) of each row of counts w (B, n) (a resample as counts of the patients)."""
    return _km_at(time, event, np.atleast_2d(w), u)[0]


def grouped_km(time, event, predicted, u, cuts, alpha: float = 0.05) -> pd.DataFrame:
    """One row per group of ``predicted`` S(u) cut at ``cuts`` (rms_cuts): group (G1 = lowest
    predicted), n, predicted (mean), observed (Kaplan-Meier S(u)), its log-type CI, status."""
    time, event, p = np.asarray(time, float), np.asarray(event, bool), np.asarray(predicted, float)
    z = norm.ppf(1 - alpha / 2)
    g_of = group_of(p, cuts)
    members = (g_of[None] == np.arange(len(cuts) - 1)[:, None]).astype(float)
    km, se, ok = _km_at(time, event, members, u)
    rows = []
    for g in range(len(cuts) - 1):
        sel = g_of == g
        row = {"group": f"G{g + 1}", "n": int(sel.sum()), "predicted": float(p[sel].mean()) if sel.any() else math.nan,
               "observed": math.nan, "observed_lower": math.nan, "observed_upper": math.nan, "status": "ok"}
        if ok[g]:
            s = float(km[g])
            # survfit's log CI; groupkm's ciupper/cilower give 0 at S = 0
            row.update(observed=s, observed_lower=s * math.exp(-z * se[g]) if s > 0 else 0.0,
                       observed_upper=min(1.0, s * math.exp(z * se[g])) if s > 0 else 0.0)
        else:
            row["status"] = "no Kaplan-Meier estimate: fewer than 2 patients or follow-up ends before the horizon"
        rows.append(row)
    return pd.DataFrame(rows)


def _group_distance(time, event, w, pred, groups, g, u):
    """KM - weighted mean predicted in group g per replicate, NaN where groupkm gives none."""
    m = w * (groups == g)
    km, _, ok = _km_at(time, event, m, u)
    size = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (m * pred).sum(axis=1) / size
    return np.where(ok & (size > 0), km - mean, np.nan)


# --- smooth curve ------------------------------------------------------------------------------


def cll(s) -> np.ndarray:
    """log(-log S), S kept off 0 and 1 only where it is exactly there (a tighter clip moves the
    smooth curve: pbc has predicted 5-year survival below 1e-12)."""
    return np.log(-np.log(np.clip(s, np.finfo(float).tiny, np.nextafter(1.0, 0.0))))


def rcs_knots(x) -> np.ndarray:
    """3 knots as Hmisc::rcspline.eval: quantiles .1/.5/.9; below 100 values the outer ones are the
    5th smallest and 5th largest."""
    x = np.sort(np.asarray(x, float))
    knots = np.quantile(x, SMOOTH_KNOT_QUANTILES)
    if 6 <= len(x) < 100:
        knots[0], knots[-1] = x[4], x[-5]
    return knots


def rcs_basis(x, knots) -> np.ndarray:
    """Harrell's restricted cubic spline with 3 knots: (x, nonlinear term), as rms::rcs (norm 2)."""
    k1, k2, k3 = knots
    pos = lambda v: np.maximum(v, 0.0) ** 3  # noqa: E731
    nl = (pos(x - k1) - pos(x - k2) * (k3 - k1) / (k3 - k2) + pos(x - k3) * (k2 - k1) / (k3 - k2)) / (k3 - k1) ** 2
    return np.stack([x, nl], axis=-1)


def _smooth_fit(time, event, pred, w, knots, ties):
    """Calibration models of the outcome on rcs(cll(pred)), one per row of pred (B, n), counts
    w (B, n) and knots (B, 3), in one batched fit."""
    X = np.stack([rcs_basis(cll(pred[b]), knots[b]) for b in range(pred.shape[0])])  # (B, n, 2)
    return fit_cox_batch(time, event, X, w, None, ties)


def _observed(fit, eta, u):
    return survival_at(fit["hazards"], eta, np.zeros(eta.shape[1], int), [u])[..., 0]


def smooth_calibration(time, event, predicted, u, grid=None, ties: str = "efron") -> dict:
    """Austin et al.'s smooth curve of one set of predicted S(u): observed S(u) at each patient and
    at ``grid`` (predicted values), ICI, E50, E90. NaNs when the three knots are not distinct."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    p = np.asarray(predicted, float)
    grid = np.asarray(p if grid is None else grid, float)
    knots = rcs_knots(cll(p))
    if len(np.unique(knots)) < 3:
        nan = np.full(len(p), np.nan)
        return {"observed": nan, "grid_observed": np.full(len(grid), np.nan), "ici": math.nan, "e50": math.nan,
                "e90": math.nan, "knots": knots}
    fit = _smooth_fit(time, event, p[None], np.ones((1, len(p))), knots[None], ties)
    observed = _observed(fit, fit["eta"], u)[0]
    grid_eta = (rcs_basis(cll(grid), knots) @ fit["beta"][0])[None]
    diff = np.abs(observed - p)
    return {"observed": observed, "grid_observed": _observed(fit, grid_eta, u)[0], "ici": float(diff.mean()),
            "e50": float(np.median(diff)), "e90": float(np.quantile(diff, 0.9)), "knots": knots}


# --- the table ---------------------------------------------------------------------------------


def calibration_at(time, event, X, horizons, groups: int = 5, n_boot: int = 200,
                   rng: np.random.Generator | None = None, strata=None, ties: str = "efron",
                   alpha: float = 0.05, grid_points: int = 50) -> pd.DataFrame:
    """CALIBRATION_COLUMNS for the Cox model of X (no intercept) refitted per bootstrap replicate:
    per horizon ``grouped`` rows (G1 = the lowest predicted S(u)), ``smooth`` rows on
    ``grid_points`` predicted values between their 2.5 and 97.5 % quantiles, and ``summary`` rows
    (statistic: observed_risk, mean_predicted_risk, calibration_in_the_large,
    observed_expected_ratio, slope (with optimism and corrected), ici, e50, e90)."""
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    X = np.asarray(X, float).reshape(len(time), -1)
    n = len(time)
    if len(event) != n:
        raise ValueError(f"calibration: {len(event)} event indicators for {n} times; give one per patient")
    if int(groups) < 1:
        raise ValueError(f"calibration: groups = {groups}; give at least 1 quantile group")
    strata = np.zeros(n, int) if strata is None else np.asarray(strata)
    rng = rng or np.random.default_rng(1)
    horizons = [float(h) for h in horizons]
    n_boot = int(n_boot)
    ones = np.ones((1, n))
    orig = fit_cox_batch(time, event, X, ones, strata, ties)
    pred = survival_at(orig["hazards"], orig["eta"], strata, horizons)[0]  # (n, h)
    boot = None
    if n_boot:
        idx = rng.integers(0, n, size=(n_boot, n))
        W = np.zeros((n_boot, n))
        np.add.at(W, (np.repeat(np.arange(n_boot), n), idx.ravel()), 1.0)
        fit = fit_cox_batch(time, event, X, W, strata, ties)
        keep = fit["ok"] & ((W * event).sum(axis=1) >= MIN_REPLICATE_EVENTS)
        if keep.any():
            W = W[keep]
            # the replicate's model predicts every original patient; its resample is W's counts
            boot_pred = survival_at([(s, t, dh[keep]) for s, t, dh in fit["hazards"]], fit["eta"][keep], strata,
                                    horizons)
            boot = (W, boot_pred)
    rows = []
    for j, u in enumerate(horizons):
        p = pred[:, j]
        base = {"horizon_days": u}
        if not ((time <= u) & event).any() or not (time > u).any():
            rows.append({**base, "method": "summary", "statistic": "all", "n": n,
                         "status": "not computed: no event by this horizon or nobody followed beyond it"})
            continue
        cuts = rms_cuts(p, groups)
        grouped = grouped_km(time, event, p, u, cuts, alpha)
        for g, row in enumerate(grouped.to_dict("records")):
            row.update(optimism=math.nan, corrected=math.nan, optimism_sd=math.nan, n_replicates=0)
            if boot is not None and row["status"] == "ok":
                W, bp = boot
                gb = group_of(bp[..., j], cuts)
                train = _group_distance(time, event, W, bp[..., j], gb, g, u)
                test = _group_distance(time, event, np.ones_like(W), bp[..., j], gb, g, u)
                both = ~np.isnan(train + test)
                if both.any():
                    opt = train[both] - test[both]
                    row.update(optimism=float(opt.mean()), corrected=row["observed"] - float(opt.mean()),
                               optimism_sd=float(opt.std(ddof=1)) if both.sum() > 1 else math.nan,
                               n_replicates=int(both.sum()))
            if row["n"]:
                rows.append({**base, "method": "grouped", **row})
        # smooth curve on a grid of predicted S(u), and its bootstrap optimism
        grid = np.quantile(p, np.linspace(0.025, 0.975, grid_points))
        sm = smooth_calibration(time, event, p, u, grid, ties)
        opt_grid, n_rep = np.full(grid_points, np.nan), 0
        if boot is not None and np.isfinite(sm["ici"]):
            W, bp = boot
            bpj = bp[..., j]
            train_knots = np.stack([rcs_knots(np.repeat(cll(bpj[b]), W[b].astype(int))) for b in range(len(W))])
            test_knots = np.stack([rcs_knots(cll(bpj[b])) for b in range(len(W))])
            distinct = np.array([len(np.unique(k)) == 3 for k in np.r_[train_knots, test_knots]]).reshape(2, -1).all(0)
            if distinct.any():
                sel = np.flatnonzero(distinct)
                tr = _smooth_fit(time, event, bpj[sel], W[sel], train_knots[sel], ties)
                te = _smooth_fit(time, event, bpj[sel], np.ones((len(sel), n)), test_knots[sel], ties)
                good = tr["ok"] & te["ok"]
                eta_tr = np.einsum("bgk,bk->bg", np.stack([rcs_basis(cll(grid), k) for k in train_knots[sel]]),
                                   tr["beta"])
                eta_te = np.einsum("bgk,bk->bg", np.stack([rcs_basis(cll(grid), k) for k in test_knots[sel]]),
                                   te["beta"])
                diff = _observed(tr, eta_tr, u) - _observed(te, eta_te, u)
                if good.any():
                    opt_grid, n_rep = diff[good].mean(axis=0), int(good.sum())
        for k, (gp, o, op) in enumerate(zip(grid, sm["grid_observed"], opt_grid)):
            rows.append({**base, "method": "smooth", "group": f"{k:02d}", "predicted": float(gp), "observed": float(o),
                         "optimism": float(op), "corrected": float(o - op), "n_replicates": n_rep,
                         "status": "ok" if np.isfinite(o) else "not computed: predicted S(u) has < 3 distinct knots"})
        # calibration slope of cll(u): apparent, and its optimism (train on resample - test on all)
        c = cll(p)
        lin = fit_cox_batch(time, event, c[:, None], ones, strata, ties)
        slope = float(lin["beta"][0, 0]) if lin["ok"][0] else math.nan
        slope_row = {"statistic": "slope", "value": slope, "optimism": math.nan, "corrected": math.nan,
                     "n_replicates": 0}
        if boot is not None:
            W, bp = boot
            cb = cll(bp[..., j])[..., None]  # (B, n, 1)
            tr = fit_cox_batch(time, event, cb, W, strata, ties)
            te = fit_cox_batch(time, event, cb, np.ones_like(W), strata, ties)
            good = tr["ok"] & te["ok"]
            if good.any():
                opt = float(np.mean(tr["beta"][good, 0] - te["beta"][good, 0]))
                slope_row.update(optimism=opt, corrected=slope - opt, n_replicates=int(good.sum()))
        observed_risk = 1 - float(weighted_km_at(time, event, ones, u)[0])
        mean_risk = float(np.mean(1 - p))
        summary = [{"statistic": "observed_risk", "value": observed_risk},
                   {"statistic": "mean_predicted_risk", "value": mean_risk},
                   {"statistic": "calibration_in_the_large", "value": observed_risk - mean_risk},
                   {"statistic": "observed_expected_ratio",
                    "value": observed_risk / mean_risk if mean_risk > 0 else math.nan},
                   slope_row,
                   {"statistic": "ici", "value": sm["ici"]},
                   {"statistic": "e50", "value": sm["e50"]},
                   {"statistic": "e90", "value": sm["e90"]}]
        rows += [{**base, "method": "summary", "n": n, "status": "ok", **r} for r in summary]
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)


def calibrate_at(time, event, X, horizons, groups: int = 5, n_boot: int = 200,
                 rng: np.random.Generator | None = None, strata=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """calibration_at split in two: (curve, summary). curve: the grouped and smooth rows
    (horizon_days, method, group, n, predicted, observed with CI, optimism, corrected); summary:
    the per-horizon statistics (calibration-in-the-large, O/E, slope with its corrected value,
    ICI, E50, E90)."""
    table = calibration_at(time, event, X, horizons, groups=groups, n_boot=n_boot, rng=rng, strata=strata)
    summary = table["method"] == "summary"
    return table[~summary].reset_index(drop=True), table[summary].reset_index(drop=True)
