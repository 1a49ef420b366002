"""Shared-parameter joint model of log total burden and survival, and its dynamic predictions.

Longitudinal part (a linear mixed model; time t in years from treatment start)::

    y_ij = ln(V_ij + volume_offset_ml) = m_i(t_ij) + e_ij,   m_i(t) = (b0 + u_i0) + (b1 + u_i1) t,
    u_i ~ N(0, D) (2 x 2, unstructured),  e_ij ~ N(0, sigma^2)

Survival part (proportional hazards, the current value, optionally also the current slope)::

    h_i(t) = h0(t) exp(gamma' w_i + alpha m_i(t) [+ alpha_slope (b1 + u_i1)])

with h0 piecewise constant between knots at quantiles of the observed event times (JM's
``piecewise-PH-aGH``; see docs/survival.md for why not JMbayes2's penalised B-splines).

Marginal likelihood per patient, integrating u exactly where it can be done in closed form::

    L_i = p(y_i) * integral p(T_i, delta_i | u) N(u; mu_i, V_i) du

p(y_i) and the posterior N(mu_i, V_i) of u given the scans alone are Gaussian in closed form for
the current parameters, so the remaining integral is over a smooth function against that
Gaussian: Gauss-Hermite product nodes centred at mu_i and scaled by chol(V_i) (adaptive
quadrature with the longitudinal posterior as the centring, re-centred at every parameter value;
Rizopoulos 2012's pseudo-adaptive rule fixes it at the first fit instead). The cumulative hazard
is a Gauss-Legendre sum on each piece of h0 between 0 and T_i (JM uses Gauss-Kronrod the same
way). Everything is vectorised over patients x quadrature nodes (scans padded with a mask).

Fitted by maximum likelihood (scipy L-BFGS-B from the mixed model's ML fit and per-piece event
rates); standard errors from the inverse of a central-difference Hessian of the marginal
log-likelihood (the observed information).

Dynamic prediction (Rizopoulos 2011, the first-order estimator at the MLE; JM's survfitJM), at
each scan and at each landmark of the grid a patient is at risk at::

    P(T_i > t + w | T_i > t, y_i(s <= t)) = E[S_i(t + w | u) / S_i(t | u)]

over p(u | T_i > t, y_i(s <= t)) proportional to S_i(t | u) N(u; mu_i(t), V_i(t)): the same
quadrature, with the scans up to t.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import logsumexp
from scipy.stats import norm

from tumorburden import tables
from tumorburden.study import read_clinical_table
from tumorburden.survival.analysis import DEFAULTS as SURVIVAL_DEFAULTS
from tumorburden.survival.analysis import analysis_sets, outcome_problem

log = logging.getLogger(__name__)

DAYS_PER_YEAR = 365.25
ASSOCIATIONS = ("value", "value+slope")
MODEL = "joint"


def settings_of(settings: dict | None) -> tuple[dict, dict]:
    """(survival settings, joint settings), each with its defaults filled in."""
    s = {**SURVIVAL_DEFAULTS, **(settings or {})}
    j = {**SURVIVAL_DEFAULTS["joint"], **(s.get("joint") or {})}
    if j["association"] not in ASSOCIATIONS:
        raise ValueError(f"survival settings: joint association {j['association']!r} is not one of "
                         f"{', '.join(ASSOCIATIONS)}")
    return s, j


# --- data ------------------------------------------------------------------------------------------


@dataclass
class JointData:
    """One analysed set as padded arrays: patients x scans (mask marks real scans); years."""
    patient_id: np.ndarray          # (n,)
    y: np.ndarray                   # (n, J) ln(V + offset), 0 where masked
    t: np.ndarray                   # (n, J) scan times, years
    mask: np.ndarray                # (n, J) bool
    time: np.ndarray                # (n,) event or censoring time, years
    event: np.ndarray               # (n,) 0/1
    w: np.ndarray                   # (n, p) baseline covariates of the hazard
    scan_id: np.ndarray = field(default=None)  # (n, J) object, "" where masked
    covariates: tuple = ()

    @property
    def n(self) -> int:
        return len(self.patient_id)


def pad(groups: list[np.ndarray], width: int, fill=0.0) -> np.ndarray:
    out = np.full((len(groups), width), fill, dtype=np.asarray(groups[0]).dtype if groups else float)
    for i, g in enumerate(groups):
        out[i, :len(g)] = g
    return out


def joint_data(longitudinal: pd.DataFrame, survival: pd.DataFrame, covariates=()) -> JointData:
    """longitudinal: patient_id, days, y (and scan_id); survival: patient_id, time (days), event,
    covariates. Only measurements before the patient's time enter (the marker is not observed
    after the event); patients without one are dropped by the caller."""
    lon = longitudinal.merge(survival[["patient_id", "time"]], on="patient_id")
    lon = lon[lon["days"] < lon["time"]].sort_values(["patient_id", "days"], kind="mergesort")
    surv = survival[survival["patient_id"].isin(lon["patient_id"])].sort_values("patient_id", kind="mergesort")
    groups = {pid: g for pid, g in lon.groupby("patient_id", sort=False)}
    pids = surv["patient_id"].to_numpy()
    width = max((len(g) for g in groups.values()), default=1)
    ys = [groups[p]["y"].to_numpy(float) for p in pids]
    ts = [groups[p]["days"].to_numpy(float) / DAYS_PER_YEAR for p in pids]
    sids = [groups[p]["scan_id"].astype(str).to_numpy(object) if "scan_id" in groups[p] else
            np.array([""] * len(groups[p]), object) for p in pids]
    mask = pad([np.ones(len(g), bool) for g in ys], width, False) if len(pids) else np.zeros((0, width), bool)
    return JointData(
        patient_id=pids,
        y=pad(ys, width) if len(pids) else np.zeros((0, width)),
        t=pad(ts, width) if len(pids) else np.zeros((0, width)),
        mask=mask,
        time=surv["time"].to_numpy(float) / DAYS_PER_YEAR,
        event=surv["event"].to_numpy(float),
        w=surv[list(covariates)].to_numpy(float) if covariates else np.zeros((len(pids), 0)),
        scan_id=pad(sids, width, "") if len(pids) else np.zeros((0, width), object),
        covariates=tuple(covariates),
    )


# --- parameters ------------------------------------------------------------------------------------


@dataclass
class Layout:
    """Where each parameter sits in the vector theta."""
    n_pieces: int
    n_covariates: int
    slope: bool

    @property
    def size(self) -> int:
        return 6 + self.n_pieces + self.n_covariates + 1 + int(self.slope)

    def names(self, covariates=()) -> list[str]:
        return (["beta_intercept", "beta_time", "log_sigma", "log_l11", "l21", "log_l22"]
                + [f"log_hazard_{k + 1}" for k in range(self.n_pieces)]
                + [f"gamma_{c}" for c in covariates] + ["alpha_value"] + (["alpha_slope"] if self.slope else []))

    def unpack(self, theta):
        beta = theta[0:2]
        sigma = math.exp(theta[2])
        L = np.array([[math.exp(theta[3]), 0.0], [theta[4], math.exp(theta[5])]])
        k = 6
        log_lam = theta[k:k + self.n_pieces]
        k += self.n_pieces
        gamma = theta[k:k + self.n_covariates]
        k += self.n_covariates
        alpha = theta[k]
        alpha_s = theta[k + 1] if self.slope else 0.0
        return beta, sigma, L, log_lam, gamma, alpha, alpha_s


def hazard_knots(time: np.ndarray, event: np.ndarray, pieces: int) -> np.ndarray:
    """Interior knots of the piecewise-constant baseline hazard: quantiles of the observed event
    times (JM's rule), at most one piece per 5 events so every piece has events to estimate it."""
    events = np.sort(time[event > 0])
    k = int(max(1, min(pieces, len(events) // 5)))
    if k == 1:
        return np.zeros(0)
    knots = np.unique(np.quantile(events, np.arange(1, k) / k))
    return knots[knots > 0]


# --- the pieces of the likelihood ------------------------------------------------------------------


def gauss_hermite_2d(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Product rule for E f(Z), Z ~ N(0, I_2): standard-normal nodes (G, 2), weights (G,)."""
    x, wt = np.polynomial.hermite.hermgauss(nodes)
    z = np.sqrt(2.0) * np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
    return z, (np.outer(wt, wt) / np.pi).ravel()


def longitudinal_posterior(y, t, mask, beta, sigma, L):
    """log p(y_i) and the Gaussian posterior N(mu_i, V_i) of the random effects given the scans,
    for every patient at once (Woodbury: |Sigma_i| = |D| |P_i| sigma^(2 n_i), P_i = D^-1 + Z'Z/s^2)."""
    m = mask.astype(float)
    n_obs = m.sum(axis=1)
    r = (y - beta[0] - beta[1] * t) * m
    s2 = sigma * sigma
    ztz = np.stack([np.stack([n_obs, (t * m).sum(1)], -1), np.stack([(t * m).sum(1), (t * t * m).sum(1)], -1)], -2)
    zr = np.stack([r.sum(1), (r * t).sum(1)], -1) / s2
    D = L @ L.T
    Dinv = np.linalg.inv(D)
    P = Dinv[None] + ztz / s2
    V = np.linalg.inv(P)
    mu = np.einsum("nab,nb->na", V, zr)
    logdet_P = np.linalg.slogdet(P)[1]
    logdet_D = 2.0 * (math.log(L[0, 0]) + math.log(L[1, 1]))
    quad = (r * r).sum(1) / s2 - np.einsum("na,na->n", zr, mu)
    loglik = -0.5 * (n_obs * math.log(2 * math.pi * s2) + logdet_D + logdet_P + quad)
    return loglik, mu, V


def legendre_grid(upper: np.ndarray, knots: np.ndarray, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on each piece of the baseline hazard within [0, upper]:
    (R, K, Q) each; a piece beyond upper has zero weight."""
    x, wt = np.polynomial.legendre.leggauss(nodes)
    edges = np.concatenate([[0.0], knots, [np.inf]])
    lo = np.minimum(edges[:-1][None, :], upper[:, None])
    hi = np.minimum(edges[1:][None, :], upper[:, None])
    half = 0.5 * (hi - lo)
    s = (lo + hi)[..., None] * 0.5 + half[..., None] * x
    return s, half[..., None] * wt


def cumulative_hazard(intercept, slope, s, ws, log_lam, lin, alpha, alpha_s):
    """H(upper | u) = sum_k lambda_k sum_q w exp(lin + alpha m(s) + alpha_s slope), for trajectories
    m(s) = intercept + slope * s: intercept, slope (R, G); s, ws (R, K, Q); lin (R,). (R, G)."""
    # laid out (R, K, G, Q) so that the weighted sum over Q is one batched matmul
    expo = slope[:, None, :, None] * s[:, :, None, :]
    expo += intercept[:, None, :, None]
    expo *= alpha
    per_piece = (np.exp(expo, out=expo) @ ws[..., None])[..., 0]
    return np.einsum("rkg,k->rg", per_piece, np.exp(log_lam)) * np.exp(lin[:, None] + alpha_s * slope)


def piece_of(time, knots):
    return np.searchsorted(knots, time, side="left")


@dataclass
class Quadrature:
    hermite: int = 7
    legendre: int = 5


def loglik_terms(theta, data: JointData, knots, layout: Layout, quad: Quadrature, grid=None):
    """Per-patient marginal log-likelihood (n,)."""
    beta, sigma, L, log_lam, gamma, alpha, alpha_s = layout.unpack(theta)
    ll_y, mu, V = longitudinal_posterior(data.y, data.t, data.mask, beta, sigma, L)
    z, wz = gauss_hermite_2d(quad.hermite)
    C = np.linalg.cholesky(V)
    u = mu[:, None, :] + np.einsum("nab,gb->nga", C, z)
    intercept = beta[0] + u[..., 0]
    slope = beta[1] + u[..., 1]
    s, ws = grid if grid is not None else legendre_grid(data.time, knots, quad.legendre)
    lin = data.w @ gamma if len(gamma) else np.zeros(data.n)
    H = cumulative_hazard(intercept, slope, s, ws, log_lam, lin, alpha, alpha_s)
    log_h = (log_lam[piece_of(data.time, knots)] + lin)[:, None] + alpha * (intercept + slope * data.time[:, None]) \
        + alpha_s * slope
    log_surv = data.event[:, None] * log_h - H
    return ll_y + logsumexp(log_surv, b=wz[None, :], axis=1)


# --- fitting ---------------------------------------------------------------------------------------


@dataclass
class MixedModelFit:
    beta: np.ndarray
    sigma: float
    L: np.ndarray
    loglik: float
    se_beta: np.ndarray

    @property
    def D(self):
        return self.L @ self.L.T


def fit_mixed_model(data: JointData) -> MixedModelFit:
    """Maximum-likelihood linear mixed model (random intercept and slope, unstructured D): the
    longitudinal part alone, as nlme::lme(method = "ML"). Starts from per-patient least squares."""
    y, t, m = data.y, data.t, data.mask
    X = np.stack([m.astype(float), t * m], -1)[m]
    beta0 = np.linalg.lstsq(X, y[m], rcond=None)[0]
    resid = y[m] - X @ beta0
    sd = max(float(np.std(resid)), 1e-3)
    start = np.array([beta0[0], beta0[1], math.log(sd / 2), math.log(sd), 0.0, math.log(sd / 2 + 1e-3)])

    def negll(th):
        L = np.array([[math.exp(th[3]), 0.0], [th[4], math.exp(th[5])]])
        try:
            v = -longitudinal_posterior(y, t, m, th[:2], math.exp(th[2]), L)[0].sum()
        except np.linalg.LinAlgError:  # a step to a singular random-effects covariance: outside the model
            return 1e300
        return v if np.isfinite(v) else 1e300

    res = optimize.minimize(negll, start, method="BFGS", options={"gtol": 1e-8, "maxiter": 2000})
    res = optimize.minimize(negll, res.x, method="Nelder-Mead",
                            options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 4000})
    th = res.x
    L = np.array([[math.exp(th[3]), 0.0], [th[4], math.exp(th[5])]])
    sigma = math.exp(th[2])
    # SE of the fixed effects as nlme's: (sum X_i' Sigma_i^-1 X_i)^-1 at the estimate
    Sigma_inv_X = _gls_information(data, L @ L.T, sigma)
    se = np.sqrt(np.diag(np.linalg.inv(Sigma_inv_X)))
    return MixedModelFit(beta=th[:2], sigma=sigma, L=L, loglik=-res.fun, se_beta=se)


def _gls_information(data: JointData, D, sigma):
    """sum_i X_i' Sigma_i^-1 X_i with X_i = Z_i = (1, t): by Woodbury, A_i - A_i P_i^-1 A_i,
    A_i = Z_i'Z_i / sigma^2, P_i = D^-1 + A_i."""
    m = data.mask.astype(float)
    t = data.t
    ztz = np.stack([np.stack([m.sum(1), (t * m).sum(1)], -1), np.stack([(t * m).sum(1), (t * t * m).sum(1)], -1)], -2)
    A = ztz / sigma ** 2
    V = np.linalg.inv(np.linalg.inv(D)[None] + A)
    return (A - A @ V @ A).sum(0)


def numerical_hessian(f, x, step=1e-4):
    """Central-difference Hessian of a scalar function, O(h^2), in 2p^2 + 1 evaluations: the
    diagonal from f(x +- h_a e_a), each off-diagonal from f(x +- (h_a e_a + h_b e_b)) and those
    (steps h = step * max(1, |x|))."""
    x = np.asarray(x, float)
    h = step * np.maximum(1.0, np.abs(x))
    p = len(x)
    E = np.diag(h)
    f0 = f(x)
    fp = np.array([f(x + E[a]) for a in range(p)])
    fm = np.array([f(x - E[a]) for a in range(p)])
    H = np.diag((fp - 2 * f0 + fm) / h ** 2)
    for a in range(p):
        for b in range(a):
            fpp, fmm = f(x + E[a] + E[b]), f(x - E[a] - E[b])
            H[a, b] = H[b, a] = (fpp - fp[a] - fp[b] + 2 * f0 - fm[a] - fm[b] + fmm) / (2 * h[a] * h[b])
    return H


@dataclass
class JointFit:
    theta: np.ndarray
    cov: np.ndarray
    layout: Layout
    knots: np.ndarray
    quad: Quadrature
    loglik: float
    converged: bool
    message: str
    n_patients: int
    n_events: int
    n_scans: int
    covariates: tuple = ()

    def names(self):
        return self.layout.names(self.covariates)

    def se(self):
        return np.sqrt(np.clip(np.diag(self.cov), 0, None))

    def estimate(self, name):
        i = self.names().index(name)
        return float(self.theta[i]), float(self.se()[i])


def fit_joint(data: JointData, association="value", pieces=7, quad: Quadrature | None = None,
              hessian=True) -> JointFit:
    """Maximum-likelihood joint model (module docstring) on one analysed set."""
    quad = quad or Quadrature()
    knots = hazard_knots(data.time, data.event, pieces)
    layout = Layout(n_pieces=len(knots) + 1, n_covariates=data.w.shape[1], slope=association == "value+slope")
    lmm = fit_mixed_model(data)
    # start: the mixed model, no association, per-piece event rates (exposure / events)
    edges = np.concatenate([[0.0], knots, [np.inf]])
    exposure = np.clip(np.minimum(data.time[:, None], edges[None, 1:]) - edges[None, :-1], 0, None).sum(0)
    events = np.bincount(piece_of(data.time[data.event > 0], knots), minlength=layout.n_pieces)
    rates = np.maximum(events, 0.5) / np.maximum(exposure, 1e-9)
    th0 = np.concatenate([lmm.beta, [math.log(lmm.sigma), math.log(lmm.L[0, 0]), lmm.L[1, 0], math.log(lmm.L[1, 1])],
                          np.log(rates), np.zeros(layout.n_covariates), [0.0], [0.0] if layout.slope else []])
    grid = legendre_grid(data.time, knots, quad.legendre)

    def negll(th):
        try:
            v = -loglik_terms(th, data, knots, layout, quad, grid).sum()
        except np.linalg.LinAlgError:  # a step to a singular random-effects covariance: outside the model
            return 1e300
        return v if np.isfinite(v) else 1e300

    options = {"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-6}
    res = optimize.minimize(negll, th0, method="L-BFGS-B", options=options)
    if not res.success:  # a line search that stalls on finite-difference noise: restart once from there
        res = optimize.minimize(negll, res.x, method="L-BFGS-B", options=options)
    theta = res.x
    cov = np.full((layout.size, layout.size), np.nan)
    if hessian:
        H = numerical_hessian(negll, theta)
        try:
            cov = np.linalg.inv(H)
        except np.linalg.LinAlgError:
            pass
    return JointFit(theta=theta, cov=cov, layout=layout, knots=knots, quad=quad, loglik=-float(res.fun),
                    converged=bool(res.success), message=str(res.message), n_patients=data.n,
                    n_events=int(data.event.sum()), n_scans=int(data.mask.sum()), covariates=data.covariates)


# --- dynamic predictions ---------------------------------------------------------------------------


def prediction_points(data: JointData, landmarks_years=()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the joint model predicts: every scan (at its time, at least 0) and every landmark s at
    which a patient is still at risk (event or censoring time after s) with a scan on or before s,
    as the landmark super-model does; one point per patient and time. (patient index, time in
    years, index of the latest scan on or before it), sorted by patient and time."""
    ii, jj = np.nonzero(data.mask)
    idx, when = [ii], [np.maximum(data.t[ii, jj], 0.0)]
    for s in landmarks_years:
        known = (data.mask & (data.t <= s)).any(axis=1)
        at_risk = np.nonzero((data.time > s) & known)[0]
        idx.append(at_risk)
        when.append(np.full(len(at_risk), float(s)))
    points = np.unique(np.rec.fromarrays([np.concatenate(idx), np.concatenate(when)], names="i,t"))
    i, t = points["i"].astype(int), points["t"].astype(float)
    # scans are sorted in time and padded at the end, so the scans known at t are the first ones
    latest = (data.mask[i] & (data.t[i] <= t[:, None])).sum(axis=1) - 1
    return i, t, latest


def dynamic_survival(fit: JointFit, data: JointData, windows_years, landmarks_years=(), chunk=400) -> pd.DataFrame:
    """P(T > t + w | T > t, scans up to t) at every point of ``prediction_points`` (each scan's
    time, at least 0, and each landmark a patient is at risk at) and window w: patient_id, scan_id
    (the latest scan used), landmark_days, window_days, predicted_survival."""
    beta, sigma, L, log_lam, gamma, alpha, alpha_s = fit.layout.unpack(fit.theta)
    z, wz = gauss_hermite_2d(fit.quad.hermite)
    ii, tt, latest = prediction_points(data, landmarks_years)
    lin_all = data.w @ gamma if len(gamma) else np.zeros(data.n)
    out = []
    for start in range(0, len(ii), chunk):
        i, t_land, last = ii[start:start + chunk], tt[start:start + chunk], latest[start:start + chunk]
        upto = data.mask[i] & (data.t[i] <= t_land[:, None])
        _, mu, V = longitudinal_posterior(data.y[i], data.t[i], upto, beta, sigma, L)
        u = mu[:, None, :] + np.einsum("nab,gb->nga", np.linalg.cholesky(V), z)
        intercept, slope = beta[0] + u[..., 0], beta[1] + u[..., 1]
        lin = lin_all[i]
        H_t = cumulative_hazard(intercept, slope, *legendre_grid(t_land, fit.knots, fit.quad.legendre),
                                log_lam, lin, alpha, alpha_s)
        log_post = np.log(wz)[None] - H_t
        for w in windows_years:
            H_tw = cumulative_hazard(intercept, slope, *legendre_grid(t_land + w, fit.knots, fit.quad.legendre),
                                     log_lam, lin, alpha, alpha_s)
            pred = np.exp(logsumexp(log_post - (H_tw - H_t), axis=1) - logsumexp(log_post, axis=1))
            out.append(pd.DataFrame({"patient_id": data.patient_id[i], "scan_id": data.scan_id[i, last],
                                     "landmark_days": t_land * DAYS_PER_YEAR, "window_days": w * DAYS_PER_YEAR,
                                     "model": MODEL, "predicted_survival": pred}))
    if not out:
        return pd.DataFrame(columns=["patient_id", "scan_id", "landmark_days", "window_days", "model",
                                     "predicted_survival"])
    return pd.concat(out, ignore_index=True).sort_values(["patient_id", "landmark_days", "window_days"],
                                                          kind="mergesort").reset_index(drop=True)


# --- tables per cohort x endpoint ------------------------------------------------------------------

ASSOCIATION_TERMS = ("alpha_value", "alpha_slope")


def _derived(theta, layout):
    """sigma, SD of the random intercept and slope, their correlation."""
    _, sigma, L, *_ = layout.unpack(theta)
    D = L @ L.T
    sd0, sd1 = math.sqrt(D[0, 0]), math.sqrt(D[1, 1])
    return np.array([sigma, sd0, sd1, D[0, 1] / (sd0 * sd1)])


def estimate_rows(fit: JointFit, alpha=0.05) -> list[dict]:
    """One row per reported parameter: estimate, SE, Wald CI and p; hazard ratios for the
    association and covariate terms (per unit of ln burden; slope per unit ln burden per year)."""
    z = norm.ppf(1 - alpha / 2)
    names, se = fit.names(), fit.se()
    rows = []

    def row(term, est, s, note="", hr=False):
        lo, hi = est - z * s, est + z * s
        p = 2 * norm.sf(abs(est / s)) if s > 0 else math.nan
        rows.append({"term": term, "estimate": est, "se": s, "lower": lo, "upper": hi, "p": p,
                     "hr": math.exp(est) if hr else math.nan, "hr_lower": math.exp(lo) if hr else math.nan,
                     "hr_upper": math.exp(hi) if hr else math.nan, "note": note})

    row("beta_intercept", fit.theta[0], se[0], "mean ln(burden + offset) at day 0")
    row("beta_time", fit.theta[1], se[1], "mean change of ln(burden + offset) per year")
    # delta method for the variance components (numerical Jacobian of _derived)
    eps = 1e-6
    base = _derived(fit.theta, fit.layout)
    J = np.zeros((4, len(fit.theta)))
    for k in range(2, 6):
        th = fit.theta.copy()
        th[k] += eps
        J[:, k] = (_derived(th, fit.layout) - base) / eps
    cov_d = J @ np.nan_to_num(fit.cov) @ J.T if np.isfinite(fit.cov).all() else np.full((4, 4), np.nan)
    notes = ("residual SD of ln burden", "SD of the random intercept", "SD of the random slope (per year)",
             "correlation of random intercept and slope")
    for k, (term, note) in enumerate(zip(("sigma", "sd_intercept", "sd_slope", "corr_intercept_slope"), notes)):
        row(term, float(base[k]), float(math.sqrt(max(cov_d[k, k], 0))) if np.isfinite(cov_d[k, k]) else math.nan, note)
    edges = np.concatenate([[0.0], fit.knots * DAYS_PER_YEAR, [np.inf]])
    for k in range(fit.layout.n_pieces):
        i = 6 + k
        row(f"log_baseline_hazard_{k + 1}", fit.theta[i], se[i],
            f"per year, days [{edges[k]:.0f}, {edges[k + 1]:.0f})")
    for name in names[6 + fit.layout.n_pieces:]:
        i = names.index(name)
        note = {"alpha_value": "log HR per unit of current ln(burden + offset)",
                "alpha_slope": "log HR per unit of current slope of ln burden (per year)"}.get(name, "log HR")
        row(name.removeprefix("gamma_"), fit.theta[i], se[i], note, hr=True)
    return rows


def longitudinal_frame(burden: pd.DataFrame, data: pd.DataFrame, offset_ml: float) -> pd.DataFrame:
    """patient_id, scan_id, days, y = ln(total burden + offset) for the patients of data, from
    each patient's baseline scan on (pre-treatment scans describe another regime)."""
    base_day = burden.set_index("scan_id")["days"]
    b = burden[burden["patient_id"].isin(data["patient_id"])][["patient_id", "scan_id", "days", "total_volume_ml"]]
    b = b.merge(data[["patient_id", "baseline_scan_id"]], on="patient_id")
    b = b[b["days"] >= b["baseline_scan_id"].map(base_day)]
    b = b.dropna(subset=["total_volume_ml"])
    return b.assign(y=np.log(b["total_volume_ml"] + offset_ml))[["patient_id", "scan_id", "days", "y"]]


def joint_rows(cohort, endpoint, data, burden, s, j):
    key = {"cohort": cohort, "endpoint": endpoint, "association": j["association"]}
    lon = longitudinal_frame(burden, data, s["volume_offset_ml"])
    covs = list(j["covariates"])
    surv = data[["patient_id", "time", "event", *covs]].dropna()
    jd = joint_data(lon, surv, covs)
    problem = outcome_problem(data)
    if problem is None and jd.n < s["min_patients"]:
        problem = f"{jd.n} patients with a scan before their {endpoint} time (min_patients {s['min_patients']})"
    if problem is None and jd.event.sum() < s["min_events"]:
        problem = f"{int(jd.event.sum())} events (min_events {s['min_events']})"
    if problem is None and jd.mask.sum() <= jd.n:
        problem = "at most one scan per patient: a random slope cannot be estimated"
    if problem:
        log.warning("%s %s joint model not fitted: %s", cohort, endpoint, problem)
        return [{**key, "term": "", "status": f"not fitted: {problem}", "n_patients": jd.n,
                 "n_events": int(jd.event.sum()), "n_scans": int(jd.mask.sum())}], None
    try:
        fit = fit_joint(jd, j["association"], j["baseline_hazard_pieces"],
                        Quadrature(j["hermite_nodes"], j["legendre_nodes"]))
    except np.linalg.LinAlgError as exc:
        problem = f"the model cannot be estimated on these data ({exc}: a random-effects covariance that is singular)"
        log.warning("%s %s joint model not fitted: %s", cohort, endpoint, problem)
        return [{**key, "term": "", "status": f"not fitted: {problem}", "n_patients": jd.n,
                 "n_events": int(jd.event.sum()), "n_scans": int(jd.mask.sum())}], None
    status = "ok" if fit.converged else f"not converged (L-BFGS-B: {fit.message.strip(' :') or 'line search failed'})"
    if not np.isfinite(fit.cov).all() or (np.diag(fit.cov) <= 0).any():
        status = "ok; observed information not positive definite: SEs unreliable" if fit.converged else status
    corr = _derived(fit.theta, fit.layout)[3]
    if abs(corr) > 0.999:
        status += "; random intercept-slope correlation at its bound (too few patients for an unstructured D)"
    log.info("%s %s joint model: %d patients, %d scans, %d events, alpha %.3f (%s)", cohort, endpoint, fit.n_patients,
             fit.n_scans, fit.n_events, fit.theta[fit.names().index("alpha_value")], status)
    rows = [{**key, **r, "status": status, "n_patients": fit.n_patients, "n_events": fit.n_events,
             "n_scans": fit.n_scans, "loglik": fit.loglik} for r in estimate_rows(fit, s["alpha"])]
    # the landmark grid and window of the dynamic accuracy too, so it scores this model at every landmark
    windows = sorted({float(w) for w in j["windows_days"]} | {float(s["landmark_window_days"])})
    pred = dynamic_survival(fit, jd, [w / DAYS_PER_YEAR for w in windows],
                            [float(x) / DAYS_PER_YEAR for x in s["landmarks_days"]])
    # landmarks and windows in the table's own days (no year round trip)
    pred["landmark_days"] = pred["landmark_days"].round(6)
    pred["window_days"] = pred["window_days"].round(6)
    return rows, pred.assign(cohort=cohort, endpoint=endpoint)


def joint_tables(features, clinical, burden, settings=None, path="clinical.tsv") -> dict[str, pd.DataFrame]:
    """joint_model (estimates per cohort x endpoint) and joint_predictions (the dynamic
    predictions); the pooled set is not fitted (cohorts differ in burden and hazard)."""
    s, j = settings_of(settings)
    s = {**s, "pooled": False}
    unknown = [c for c in j["covariates"] if c not in clinical.columns]
    if unknown:
        raise ValueError(f"survival settings: joint covariates {unknown[0]!r} is not a column of {path}")
    text = [c for c in j["covariates"] if not pd.api.types.is_numeric_dtype(clinical[c])]
    if text:
        raise ValueError(f"survival settings: joint covariates {text[0]!r} of {path} is not numeric "
                         f"(code it as numbers, e.g. 0/1, or leave it out)")
    rows, preds = [], []
    for cohort, endpoint, data in analysis_sets(features, clinical, s, path, [], burden):
        r, p = joint_rows(cohort, endpoint, data, burden, s, j)
        rows += r
        if p is not None:
            preds.append(p)
    model = pd.DataFrame(rows).reindex(columns=list(tables.SCHEMAS["joint_model"])) if rows else tables.empty("joint_model")
    model = tables.conform(model, "joint_model")
    pred = tables.conform(pd.concat(preds, ignore_index=True), "joint_predictions") if preds \
        else tables.empty("joint_predictions")
    return {"joint_model": model, "joint_predictions": pred}


def write_joint(features: Path, clinical: Path, burden: Path, model_csv: Path, predictions: Path,
                settings=None) -> dict:
    result = joint_tables(tables.read(features, "features"), read_clinical_table(clinical),
                          tables.read(burden, "burden"), settings, path=clinical)
    tables.write(result["joint_model"], model_csv, "joint_model", csv=True)
    tables.write(result["joint_predictions"], predictions, "joint_predictions")
    return result
