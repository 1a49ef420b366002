"""Calibration of a Cox model's predicted survival at horizons: grouped, smooth, in the large, slope.

- **grouped** (rms::calibrate, cmethod "KM"): patients in quantile groups of predicted S(u); per
  group the mean predicted S(u) and the Kaplan-Meier S(u) with its log-type CI (R's survfit
  default). Optimism of each group's (KM - predicted) by the bootstrap as rms does: each replicate
  refits the model on a resample, groups the resample by the original cut-points and takes
  (KM - predicted) on the resample minus the same with the replicate's model on the original
  patients; ``corrected`` = KM - mean optimism.
- **smooth** (Austin, Harrell & van Klaveren 2020, Stat Med 39:2714): a Cox model of the outcome on
  a restricted cubic spline (3 knots at the 10/50/90 % quantiles, Harrell's rcs) of
  cll = log(-log S(u | x)); its S(u | cll) is the observed survival as a smooth function of the
  predicted one, drawn on a grid of predicted values; ICI is the mean |observed - predicted| over
  the patients. Not rms's hare (polspline, not in Debian or PyPI); Austin et al. recommend this one.
- **in the large**: observed risk 1 - KM(u) against the mean predicted risk (difference and O/E).
- **slope**: the Cox coefficient of cll(u) refitted on the patients; for a proportional-hazards
  model cll(u) = log H0(u) + lp, so it equals the calibration slope of the linear predictor at
  every horizon (validation.csv has its optimism-corrected value).

Written here because neither lifelines nor scikit-survival has calibration of survival models
(lifelines' ``survival_probability_calibration`` plots one smooth curve, no groups, no bootstrap).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tumorburden.survival import km
from tumorburden.survival.validation import fit_cox_batch, survival_at

CALIBRATION_COLUMNS = ["horizon_days", "method", "group", "n", "predicted", "observed", "observed_lower",
                       "observed_upper", "optimism", "corrected", "statistic", "value", "status"]


def rcs_basis(x, knots) -> np.ndarray:
    """Harrell's restricted cubic spline with 3 knots: (x, nonlinear term), as rms::rcs."""
    k1, k2, k3 = knots
    pos = lambda v: np.maximum(v, 0.0) ** 3  # noqa: E731
    nl = (pos(x - k1) - pos(x - k2) * (k3 - k1) / (k3 - k2) + pos(x - k3) * (k2 - k1) / (k3 - k2)) / (k3 - k1) ** 2
    return np.column_stack([x, nl])


def weighted_km_at(time, event, w, u) -> np.ndarray:
    """Kaplan-Meier S(u) of each row of counts w (B, n): prod over event times <= u of 1 - d/n."""
    order = np.argsort(time, kind="mergesort")
    t, e, w = np.asarray(time, float)[order], np.asarray(event, bool)[order], w[:, order]
    times = np.unique(t[e & (t <= u)])
    if not len(times):
        return np.ones(w.shape[0])
    first = np.searchsorted(t, times, side="left")
    at_risk = np.flip(np.cumsum(np.flip(w, 1), 1), 1)[:, first]
    dead = np.stack([(w[:, (t == s) & e]).sum(axis=1) for s in times], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = np.where(at_risk > 0, 1 - dead / np.where(at_risk > 0, at_risk, 1), 1.0)
    return factor.prod(axis=1)


def _cll(s):
    return np.log(-np.log(np.clip(s, 1e-12, 1 - 1e-12)))


def calibration_at(time, event, X, horizons, groups: int = 5, n_boot: int = 200,
                   rng: np.random.Generator | None = None, strata=None, ties: str = "efron",
                   alpha: float = 0.05, grid_points: int = 50) -> pd.DataFrame:
    """CALIBRATION_COLUMNS: grouped rows (method 'grouped'), smooth curve rows ('smooth'), and
    per-horizon statistics ('summary': calibration-in-the-large, O/E, slope, ICI)."""
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    X = np.asarray(X, float).reshape(len(time), -1)
    n = len(time)
    strata = np.zeros(n, int) if strata is None else np.asarray(strata)
    rng = rng or np.random.default_rng(1)
    horizons = [float(h) for h in horizons]
    ones = np.ones((1, n))
    orig = fit_cox_batch(time, event, X, ones, strata, ties)
    pred = survival_at(orig["hazards"], orig["eta"], strata, horizons)[0]  # (n, h)
    # replicates: the same resamples for every horizon
    idx = rng.integers(0, n, size=(int(n_boot), n))
    W = np.zeros((int(n_boot), n))
    np.add.at(W, (np.repeat(np.arange(int(n_boot)), n), idx.ravel()), 1.0)
    boot = fit_cox_batch(time, event, X, W, strata, ties) if n_boot else None
    if boot is not None:
        ok = boot["ok"]
        train_pred = survival_at(boot["hazards"], boot["eta"], strata, horizons)[ok]
        test_eta = boot["beta"][ok] @ X.T
        test_pred = survival_at([(s, t, dh[ok]) for s, t, dh in boot["hazards"]], test_eta, strata, horizons)
        Wok = W[ok]
    rows = []
    for j, u in enumerate(horizons):
        p = pred[:, j]
        base = {"horizon_days": u}
        if not ((time <= u) & event).any() or not (time > u).any():
            rows.append({**base, "method": "summary", "statistic": "all",
                         "status": "not computed: no event by this horizon or nobody followed beyond it"})
            continue
        edges = np.unique(np.quantile(p, np.linspace(0, 1, groups + 1)))
        edges[0], edges[-1] = -np.inf, np.inf
        g_orig = np.clip(np.searchsorted(edges, p, side="left") - 1, 0, len(edges) - 2)
        for g in range(len(edges) - 1):
            sel = g_orig == g
            if not sel.any():
                continue
            tab = km.survival_at(km.km_table(time[sel], event[sel].astype(int), alpha, "log"), [u]).iloc[0]
            observed = float(tab["survival"])
            row = {**base, "method": "grouped", "group": f"G{g + 1}", "n": int(sel.sum()),
                   "predicted": float(p[sel].mean()), "observed": observed,
                   "observed_lower": float(tab["ci_lower"]), "observed_upper": float(tab["ci_upper"]),
                   "optimism": math.nan, "corrected": math.nan, "status": "ok"}
            if boot is not None and ok.any():
                g_train = np.clip(np.searchsorted(edges, train_pred[..., j], side="left") - 1, 0, len(edges) - 2)
                g_test = np.clip(np.searchsorted(edges, test_pred[..., j], side="left") - 1, 0, len(edges) - 2)
                m_tr = Wok * (g_train == g)
                m_te = (g_test == g).astype(float)
                has = (m_tr.sum(axis=1) > 0) & (m_te.sum(axis=1) > 0)
                err_tr = weighted_km_at(time, event, m_tr[has], u) - (m_tr[has] * train_pred[has, :, j]).sum(1) / m_tr[has].sum(1)
                err_te = weighted_km_at(time, event, m_te[has], u) - (m_te[has] * test_pred[has, :, j]).sum(1) / m_te[has].sum(1)
                opt = float(np.mean(err_tr - err_te)) if has.any() else math.nan
                row.update(optimism=opt, corrected=observed - opt)
            rows.append(row)
        # smooth: Cox of the outcome on rcs(cll(u)); observed S(u | cll) on a grid
        c = _cll(p)
        knots = np.quantile(c, [0.1, 0.5, 0.9])
        summary = {}
        if len(np.unique(knots)) == 3:
            cal = fit_cox_batch(time, event, rcs_basis(c, knots), ones, None, ties)
            grid_p = np.quantile(p, np.linspace(0.025, 0.975, grid_points))
            eta_grid = (rcs_basis(_cll(grid_p), knots) @ cal["beta"][0])[None]
            obs_grid = survival_at(cal["hazards"], eta_grid, np.zeros(grid_points, int), [u])[0, :, 0]
            rows += [{**base, "method": "smooth", "group": f"{k:02d}", "predicted": float(gp), "observed": float(o),
                      "status": "ok"} for k, (gp, o) in enumerate(zip(grid_p, obs_grid))]
            obs_pat = survival_at(cal["hazards"], cal["eta"], np.zeros(n, int), [u])[0, :, 0]
            summary["ici"] = float(np.mean(np.abs(obs_pat - p)))
        lin = fit_cox_batch(time, event, c[:, None], ones, None, ties)
        summary["slope"] = float(lin["beta"][0, 0]) if lin["ok"][0] else math.nan
        observed_risk = 1 - float(weighted_km_at(time, event, ones, u)[0])
        mean_risk = float(np.mean(1 - p))
        summary.update({"observed_risk": observed_risk, "mean_predicted_risk": mean_risk,
                        "calibration_in_the_large": observed_risk - mean_risk,
                        "observed_expected_ratio": observed_risk / mean_risk if mean_risk > 0 else math.nan})
        rows += [{**base, "method": "summary", "statistic": k, "value": v, "n": n, "status": "ok"}
                 for k, v in summary.items()]
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)


def calibrate_at(time, event, X, horizons, groups: int = 5, n_boot: int = 200,
                 rng: np.random.Generator | None = None, strata=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pipeline's entry point (engineer C owns this module; A calls this from the rule).

    time, event, X: one row per patient (X the model's covariates, no intercept); horizons in days;
    groups: quantile groups of predicted S(u) (rms::calibrate's g=); n_boot: bootstrap replicates
    of the whole Cox fit for the optimism-corrected curve; strata: e.g. cohort for the pooled fit.
    Returns (curve, summary): curve has the grouped and smooth rows of the ``calibration`` table
    (horizon_days, method, group, n, predicted, observed with CI, optimism, corrected), summary the
    per-horizon statistics (calibration-in-the-large, O/E, slope, ICI, E50, E90).
    """
    table = calibration_at(time, event, X, horizons, groups=groups, n_boot=n_boot, rng=rng, strata=strata)
    summary = table["method"] == "summary"
    return table[~summary].reset_index(drop=True), table[summary].reset_index(drop=True)
