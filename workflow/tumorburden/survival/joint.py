"""Shared-parameter joint model of log total burden and survival, and its dynamic predictions.

Longitudinal part (a linear mixed model; time t in years from treatment start)::

    y_ij = ln(V_ij + volume_offset_ml) = m_i(t_ij) + e_ij,   m_i(t) = x(t)'(beta + u_i),
    u_i ~ N(0, D) (q x q, unstructured),  e_ij ~ N(0, sigma^2)

with x(t) = (1, t) (``linear``: random intercept and slope), (1, ns(t, df)) (``spline``, R's
natural cubic spline) or (1, t, exp(-kappa t)) (``decay``); see TimeBasis.

Survival part (proportional hazards, the current value, optionally also the current slope)::

    h_i(t) = h0(t) exp(gamma' w_i + alpha m_i(t) [+ alpha_slope m_i'(t)])

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
log-likelihood (the observed information H) or, by default, the sandwich H^-1 (sum_i s_i s_i') H^-1
with each patient's score s_i (or its one-step jackknife and bias-reduced CR2 versions).

Dynamic prediction (Rizopoulos 2011, the first-order estimator at the MLE; JM's survfitJM), at
each scan and at each landmark of the grid a patient is at risk at::

    P(T_i > t + w | T_i > t, y_i(s <= t)) = E[S_i(t + w | u) / S_i(t | u)]

over p(u | T_i > t, y_i(s <= t)) proportional to S_i(t | u) N(u; mu_i(t), V_i(t)): the same
quadrature, with the scans up to t.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.interpolate import BSpline
from scipy.special import logsumexp
from scipy.stats import norm
from scipy.stats import t as student_t

from tumorburden import tables
from tumorburden.study import read_clinical_table
from tumorburden.survival.analysis import DEFAULTS as SURVIVAL_DEFAULTS
from tumorburden.survival.analysis import analysis_sets, outcome_problem

log = logging.getLogger(__name__)

DAYS_PER_YEAR = 365.25
ASSOCIATIONS = ("value", "value+slope")
TIME_BASES = ("linear", "spline", "decay")
VARIANCES = ("observed", "sandwich", "jackknife", "cr2")
MODEL = "joint"


def settings_of(settings: dict | None) -> tuple[dict, dict]:
    """(survival settings, joint settings), each with its defaults filled in."""
    s = {**SURVIVAL_DEFAULTS, **(settings or {})}
    j = {**SURVIVAL_DEFAULTS["joint"], **(s.get("joint") or {})}
    if j["association"] not in ASSOCIATIONS:
        raise ValueError(f"survival settings: joint association {j['association']!r} is not one of "
                         f"{', '.join(ASSOCIATIONS)}")
    if j["time_basis"] not in TIME_BASES:
        raise ValueError(f"survival settings: joint time_basis {j['time_basis']!r} is not one of {', '.join(TIME_BASES)}")
    if j["variance"] not in VARIANCES:
        raise ValueError(f"survival settings: joint variance {j['variance']!r} is not one of {', '.join(VARIANCES)}")
    if int(j["spline_df"]) < 1:
        raise ValueError(f"survival settings: joint spline_df {j['spline_df']} must be at least 1")
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


# --- the trajectory's basis in time ----------------------------------------------------------------


def random_effects(kind: str, spline_df: int) -> int:
    """Columns of a time basis, one random effect each: linear 2, decay 3, spline df + 1."""
    return {"linear": 2, "decay": 3}.get(kind, int(spline_df) + 1)


@dataclass(frozen=True)
class TimeBasis:
    """The columns x(t) of the trajectory m_i(t) = x(t)'(beta + u_i), t in years: ``linear`` (1, t);
    ``spline``, an intercept and R's natural cubic spline ``splines::ns(t, df)`` with its df - 1
    interior knots at quantiles of the scan times and its boundary knots at their range (linear
    beyond them, as ns is); ``decay`` (1, t, exp(-rate t)). The same columns serve the fixed and
    the random effects."""
    kind: str = "linear"
    interior: tuple = ()
    boundary: tuple = (0.0, 1.0)
    rate: float = 0.0   # decay: the rate kappa (per year) of the shrinking component

    @classmethod
    def natural_spline(cls, times, df: int) -> TimeBasis:
        times = np.asarray(times, float)
        if df < 1:
            raise ValueError(f"spline_df {df} must be at least 1")
        inner = np.quantile(times, np.arange(1, df) / df) if df > 1 else np.zeros(0)
        return cls("spline", tuple(float(k) for k in inner), (float(times.min()), float(times.max())))

    @property
    def size(self) -> int:
        return random_effects(self.kind, len(self.interior) + 1)

    @property
    def labels(self) -> tuple:
        """Names of the columns: the random effects' in the tables."""
        if self.kind in ("linear", "decay"):
            return ("intercept", "slope", "decay")[:self.size]
        return ("intercept", *(f"ns{k + 1}" for k in range(self.size - 1)))

    @property
    def breaks(self) -> np.ndarray:
        """Where x(t) is not smooth (a cubic spline's third derivative jumps at its knots)."""
        return np.array([*self.interior, *self.boundary]) if self.kind == "spline" else np.zeros(0)

    @functools.cached_property
    def _spline(self):
        """The cubic B-splines with the natural boundary constraints projected out, as ns does:
        basis = B[:, 1:] Q[:, 2:], Q from the QR of the second derivatives at the boundary knots."""
        aknots = np.sort(np.concatenate([np.repeat(self.boundary, 4), self.interior]))
        n_b = len(aknots) - 4
        bspline = BSpline(aknots, np.eye(n_b), 3, extrapolate=True)
        const = bspline.derivative(2)(np.asarray(self.boundary))[:, 1:]
        q = np.linalg.qr(const.T, mode="complete")[0]
        return bspline, bspline.derivative(1), q[:, 2:]

    def design(self, t) -> tuple[np.ndarray, np.ndarray]:
        """(x(t), x'(t)), each of shape t.shape + (size,)."""
        t = np.asarray(t, float)
        if self.kind == "linear":
            return np.stack([np.ones_like(t), t], -1), np.stack([np.zeros_like(t), np.ones_like(t)], -1)
        if self.kind == "decay":
            e = np.exp(-self.rate * t)
            return (np.stack([np.ones_like(t), t, e], -1),
                    np.stack([np.zeros_like(t), np.ones_like(t), -self.rate * e], -1))
        bspline, deriv, proj = self._spline
        flat = t.ravel()
        inside = np.clip(flat, *self.boundary)
        d1 = deriv(inside)[:, 1:]
        value = (bspline(inside)[:, 1:] + (flat - inside)[:, None] * d1) @ proj
        slope = d1 @ proj
        ones = np.ones((len(flat), 1))
        return (np.hstack([ones, value]).reshape(*t.shape, self.size),
                np.hstack([0.0 * ones, slope]).reshape(*t.shape, self.size))


def time_basis(kind: str, times, df: int, data=None) -> TimeBasis:
    if kind == "linear":
        return TimeBasis()
    if kind == "spline":
        return TimeBasis.natural_spline(times, df)
    if kind == "decay":
        return decay_basis(data)
    raise ValueError(f"survival settings: joint time_basis {kind!r} is not one of {', '.join(TIME_BASES)}")


DECAY_RATES = np.log(2) / np.geomspace(0.02, 1.0, 7)  # half-lives of 1 week to 1 year


def decay_basis(data, rates=DECAY_RATES) -> TimeBasis:
    """(1, t, exp(-kappa t)): a line the burden regrows along plus a shrinking component, the Stein
    shape's two phases; kappa by profile likelihood of the mixed model over a grid of half-lives,
    then refined by a bounded scalar search around the best."""
    def profile(rate):
        return fit_mixed_model(data, TimeBasis("decay", rate=float(rate)), polish=False).loglik

    k = int(np.argmax([profile(r) for r in rates]))
    lo, hi = np.log(rates[min(k + 1, len(rates) - 1)]), np.log(rates[max(k - 1, 0)])
    res = optimize.minimize_scalar(lambda lr: -profile(math.exp(lr)), bounds=(lo, hi), method="bounded",
                                   options={"xatol": 0.02})
    return TimeBasis("decay", rate=math.exp(res.x))


# --- parameters ------------------------------------------------------------------------------------


def cholesky_factor(values, q: int) -> np.ndarray:
    """Lower-triangular L (q x q) from its entries row by row, the diagonal on the log scale."""
    L = np.zeros((q, q))
    k = 0
    for a in range(q):
        for b in range(a + 1):
            L[a, b] = math.exp(values[k]) if a == b else values[k]
            k += 1
    return L


def cholesky_values(L: np.ndarray) -> list[float]:
    return [math.log(L[a, b]) if a == b else float(L[a, b]) for a in range(len(L)) for b in range(a + 1)]


@dataclass
class Layout:
    """Where each parameter sits in the vector theta: the basis' fixed effects, log sigma, the
    Cholesky factor of D (row by row, log diagonal), the log baseline hazard per piece, the
    covariates' and the association's coefficients."""
    n_pieces: int
    n_covariates: int
    slope: bool
    basis: TimeBasis = field(default_factory=TimeBasis)

    @property
    def q(self) -> int:
        return self.basis.size

    @property
    def hazard_start(self) -> int:
        return self.q + 1 + self.q * (self.q + 1) // 2

    @property
    def size(self) -> int:
        return self.hazard_start + self.n_pieces + self.n_covariates + 1 + int(self.slope)

    def beta_names(self) -> list[str]:
        return ["beta_intercept", "beta_time"] if self.basis.kind == "linear" else \
            [f"beta_{label}" for label in self.basis.labels]

    def names(self, covariates=()) -> list[str]:
        chol = [f"log_l{a + 1}{b + 1}" if a == b else f"l{a + 1}{b + 1}" for a in range(self.q) for b in range(a + 1)]
        return (self.beta_names() + ["log_sigma"] + chol
                + [f"log_hazard_{k + 1}" for k in range(self.n_pieces)]
                + [f"gamma_{c}" for c in covariates] + ["alpha_value"] + (["alpha_slope"] if self.slope else []))

    def unpack(self, theta):
        q = self.q
        beta = np.asarray(theta[:q], float)
        sigma = math.exp(theta[q])
        L = cholesky_factor(theta[q + 1:self.hazard_start], q)
        k = self.hazard_start
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


@functools.lru_cache(maxsize=16)
def gauss_hermite(nodes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Product rule for E f(Z), Z ~ N(0, I_dim): standard-normal nodes (nodes^dim, dim), weights."""
    x, wt = np.polynomial.hermite.hermgauss(nodes)
    z = np.sqrt(2.0) * np.stack(np.meshgrid(*[x] * dim, indexing="ij"), -1).reshape(-1, dim)
    w = np.ones(1)
    for _ in range(dim):
        w = np.outer(w, wt / np.sqrt(np.pi)).ravel()
    z.flags.writeable = w.flags.writeable = False  # cached: shared by every caller
    return z, w


def longitudinal_posterior(y, Z, mask, beta, sigma, L, ztz=None):
    """log p(y_i) and the Gaussian posterior N(mu_i, V_i) of the random effects given the scans,
    for every patient at once; Z (n, J, q) the basis at the scans (Woodbury: |Sigma_i| = |D| |P_i|
    sigma^(2 n_i), P_i = D^-1 + Z'Z/s^2). ztz: sum_j Z_ij Z_ij' over the masked scans, if known."""
    m = mask.astype(float)
    n_obs = m.sum(axis=1)
    Zm = Z * m[..., None]
    r = (y - Z @ beta) * m
    s2 = sigma * sigma
    if ztz is None:
        ztz = np.einsum("nja,njb->nab", Zm, Zm)
    zr = np.einsum("nja,nj->na", Zm, r) / s2
    Linv = np.linalg.inv(L)
    P = (Linv.T @ Linv)[None] + ztz / s2
    V = np.linalg.inv(P)
    mu = np.einsum("nab,nb->na", V, zr)
    logdet_P = np.linalg.slogdet(P)[1]
    logdet_D = 2.0 * np.log(np.diag(L)).sum()
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


def integration_grid(upper, knots, basis: TimeBasis, nodes: int):
    """legendre_grid on the pieces of h0 cut also at the basis' knots, so the integrand is smooth on
    every piece (Gauss-Legendre then converges fast): (s, ws, the piece of h0 of each cut piece)."""
    cuts = np.unique(np.concatenate([knots, basis.breaks[basis.breaks > 0]]))
    s, ws = legendre_grid(upper, cuts, nodes)
    return s, ws, np.searchsorted(knots, np.concatenate([[0.0], cuts]), side="right")


def cumulative_hazard(coef, Xs, dXs, ws, log_lam, lin, alpha, alpha_s):
    """H(upper | u) = sum_k lambda_k sum_q w exp(lin + alpha m(s) + alpha_s m'(s)) for trajectories
    m(s) = x(s)'coef: coef (R, G, q) per patient and quadrature node; Xs, dXs (R, K, Q, q) the basis
    and its derivative at the Legendre nodes; ws (R, K, Q); lin (R,). Returns (R, G)."""
    R, K, Q, q = Xs.shape
    # (R, K*Q, q) @ (R, q, G): one batched matmul for the trajectory at every node
    expo = Xs.reshape(R, K * Q, q) @ (alpha * coef).transpose(0, 2, 1)
    if alpha_s != 0.0:
        expo += dXs.reshape(R, K * Q, q) @ (alpha_s * coef).transpose(0, 2, 1)
    np.exp(expo, out=expo)
    # the weighted sum over Q as batched matmuls too: (R, K, 1, Q) @ (R, K, Q, G), then over K
    per_piece = (ws[:, :, None, :] @ expo.reshape(R, K, Q, -1))[:, :, 0, :]
    return (np.exp(log_lam) @ per_piece) * np.exp(lin)[:, None]


def piece_of(time, knots):
    return np.searchsorted(knots, time, side="left")


@dataclass
class Quadrature:
    hermite: int = 7
    legendre: int = 5


@dataclass
class Design:
    """What the likelihood needs of the data and the basis, fixed while theta moves."""
    X: np.ndarray       # (n, J, q) basis at the scans
    xtx: np.ndarray     # (n, q, q) its cross-products over the real scans
    Xs: np.ndarray      # (n, K, Q, q) basis at the Legendre nodes of the cumulative hazard
    dXs: np.ndarray
    ws: np.ndarray      # (n, K, Q) their weights
    cut_piece: np.ndarray  # (K,) the piece of h0 of each piece of the grid (cut also at the basis' knots)
    XT: np.ndarray      # (n, q) basis at the event or censoring time
    dXT: np.ndarray
    piece: np.ndarray   # (n,) the baseline hazard's piece of that time


def design_of(data: JointData, basis: TimeBasis, knots, legendre: int) -> Design:
    X = basis.design(data.t)[0] * data.mask[..., None]
    s, ws, cut_piece = integration_grid(data.time, knots, basis, legendre)
    Xs, dXs = basis.design(s)
    XT, dXT = basis.design(data.time)
    return Design(X=X, xtx=np.einsum("nja,njb->nab", X, X), Xs=Xs, dXs=dXs, ws=ws, cut_piece=cut_piece, XT=XT,
                  dXT=dXT, piece=piece_of(data.time, knots))


def loglik_terms(theta, data: JointData, knots, layout: Layout, quad: Quadrature, design: Design | None = None):
    """Per-patient marginal log-likelihood (n,)."""
    beta, sigma, L, log_lam, gamma, alpha, alpha_s = layout.unpack(theta)
    d = design if design is not None else design_of(data, layout.basis, knots, quad.legendre)
    ll_y, mu, V = longitudinal_posterior(data.y, d.X, data.mask, beta, sigma, L, d.xtx)
    z, wz = gauss_hermite(quad.hermite, layout.q)
    coef = (beta + mu)[:, None, :] + z @ np.linalg.cholesky(V).transpose(0, 2, 1)
    lin = data.w @ gamma if len(gamma) else np.zeros(data.n)
    H = cumulative_hazard(coef, d.Xs, d.dXs, d.ws, log_lam[d.cut_piece], lin, alpha, alpha_s)
    log_h = (log_lam[d.piece] + lin)[:, None] + (coef @ (alpha * d.XT + alpha_s * d.dXT)[:, :, None])[..., 0]
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
    basis: TimeBasis = field(default_factory=TimeBasis)

    @property
    def D(self):
        return self.L @ self.L.T


def fit_mixed_model(data: JointData, basis: TimeBasis | None = None, polish: bool = True) -> MixedModelFit:
    """Maximum-likelihood linear mixed model, the same basis for the fixed and the random effects
    (unstructured D): the longitudinal part alone, as nlme::lme(y ~ x(t), random = ~ x(t) | id,
    method = "ML"). Starts from least squares; BFGS, then Nelder-Mead to polish (q = 2) or Newton
    steps on a numerical Hessian (more random effects, where Nelder-Mead crawls)."""
    basis = basis or TimeBasis()
    q = basis.size
    y, m = data.y, data.mask
    Z = basis.design(data.t)[0] * m[..., None]
    ztz = np.einsum("nja,njb->nab", Z, Z)
    beta0 = np.linalg.lstsq(Z[m], y[m], rcond=None)[0]
    sd = max(float(np.std(y[m] - Z[m] @ beta0)), 1e-3)
    L0 = np.diag([sd] + [sd / 2 + 1e-3] * (q - 1))
    start = np.concatenate([beta0, [math.log(sd / 2)], cholesky_values(L0)])

    def negll(th):
        try:
            v = -longitudinal_posterior(y, Z, m, th[:q], math.exp(th[q]), cholesky_factor(th[q + 1:], q), ztz)[0].sum()
        except np.linalg.LinAlgError:  # a step to a singular random-effects covariance: outside the model
            return 1e300
        return v if np.isfinite(v) else 1e300

    res = optimize.minimize(negll, start, method="BFGS", options={"gtol": 1e-8, "maxiter": 2000})
    th, fun = res.x, res.fun
    if not polish:
        pass
    elif q == 2:
        res = optimize.minimize(negll, th, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 4000})
        th, fun = res.x, res.fun
    else:
        th, fun = _newton_polish(negll, th, fun)
    L = cholesky_factor(th[q + 1:], q)
    sigma = math.exp(th[q])
    # SE of the fixed effects as nlme's: (sum X_i' Sigma_i^-1 X_i)^-1 at the estimate
    se = np.sqrt(np.diag(np.linalg.inv(_gls_information(ztz, L @ L.T, sigma))))
    return MixedModelFit(beta=th[:q], sigma=sigma, L=L, loglik=-fun, se_beta=se, basis=basis)


def _newton_polish(f, x, fx, steps=8):
    """Newton steps with a central-difference gradient and Hessian, each kept only if it lowers f."""
    for _ in range(steps):
        h = 1e-5 * np.maximum(1.0, np.abs(x))
        g = np.array([(f(x + e) - f(x - e)) / (2 * e[a]) for a, e in enumerate(np.diag(h))])
        try:
            step = np.linalg.solve(numerical_hessian(f, x), g)
        except np.linalg.LinAlgError:
            break
        new = x - step
        f_new = f(new)
        if not f_new < fx:
            break
        x, fx = new, f_new
        if np.max(np.abs(step)) < 1e-10:
            break
    return x, fx


def _gls_information(xtx, D, sigma):
    """sum_i X_i' Sigma_i^-1 X_i with X_i = Z_i: by Woodbury, A_i - A_i P_i^-1 A_i,
    A_i = Z_i'Z_i / sigma^2, P_i = D^-1 + A_i."""
    A = xtx / sigma ** 2
    V = np.linalg.inv(np.linalg.inv(D)[None] + A)
    return (A - A @ V @ A).sum(0)


def numerical_hessian(f, x, step=1e-4):
    """Central-difference Hessian of a function, O(h^2), in 2p^2 + 1 evaluations: the diagonal
    from f(x +- h_a e_a), each off-diagonal from f(x +- (h_a e_a + h_b e_b)) and those (steps
    h = step * max(1, |x|)). f scalar: (p, p); f with values of shape s (each patient's term): one
    Hessian per value, (p, p, *s), from the same evaluations."""
    x = np.asarray(x, float)
    h = step * np.maximum(1.0, np.abs(x))
    p = len(x)
    E = np.diag(h)
    f0 = np.asarray(f(x), float)
    fp = np.array([f(x + E[a]) for a in range(p)])
    fm = np.array([f(x - E[a]) for a in range(p)])
    H = np.empty((p, p) + f0.shape)
    for a in range(p):
        H[a, a] = (fp[a] - 2 * f0 + fm[a]) / h[a] ** 2
    for a in range(p):
        for b in range(a):
            fpp, fmm = f(x + E[a] + E[b]), f(x - E[a] - E[b])
            H[a, b] = H[b, a] = (fpp - fp[a] - fp[b] + 2 * f0 - fm[a] - fm[b] + fmm) / (2 * h[a] * h[b])
    return H


def patient_scores(f_terms, x, step=1e-4) -> np.ndarray:
    """(n, p) central-difference gradients of each patient's log-likelihood term."""
    x = np.asarray(x, float)
    h = step * np.maximum(1.0, np.abs(x))
    return np.stack([(f_terms(x + e) - f_terms(x - e)) / (2 * h[a]) for a, e in enumerate(np.diag(h))], -1)


def one_step_jackknife(H, H_i, S) -> np.ndarray:
    """Jackknife variance (n - 1)/n sum_i (d_i - mean d)(d_i - mean d)' of the estimate without
    patient i, each d_i = theta_(-i) - theta taken as one Newton step from the full fit:
    -(H - H_i)^-1 s_i, H the observed information, H_i and s_i patient i's share of it and score.
    With H_i left out it is the sandwich (up to (n - 1)/n); with it, each step is the refit's
    Newton step (exact for a quadratic log-likelihood), so a patient who carries much of the
    information moves the estimate as far as refitting without them would. A jackknife variance
    errs upwards (Efron & Stein 1981), the safe side for a CI. H_i: (p, p, n); S: (n, p)."""
    n = S.shape[0]
    A = H[None] - np.moveaxis(H_i, -1, 0)
    try:
        d = -np.linalg.solve(A, S[..., None])[..., 0]
    except np.linalg.LinAlgError:  # a patient without whom the information is singular: the linear step
        d = np.stack([-np.linalg.lstsq(a, s_, rcond=None)[0] for a, s_ in zip(A, S)])
    d -= d.mean(axis=0)
    return (n - 1) / n * d.T @ d


def bias_reduced_sandwich(H, H_i, S) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bias-reduced (CR2) sandwich and the Bell-McCaffrey degrees of freedom of each parameter.

    The sandwich sums s_i s_i' of scores taken at the fit, which fitted each patient in part to
    itself: patient i's score is shrunk by about (I - H_i H^-1), so the sandwich is biased down,
    most where a few patients carry much of the information. The CR2 variance (Kauermann & Carroll
    2001; Mancl & DeRouen 2001; Bell & McCaffrey 2002) undoes half of that shrinkage on each side,
    H^-1 sum_i (I - H_i H^-1)^-1/2 s_i s_i' (I - H^-1 H_i)^-1/2 H^-1 (the one-step jackknife undoes
    all of it on each side: CR3). Computed in the coordinates whitened by H = LL', where
    B_i = L^-1 H_i L^-T is symmetric (sum_i B_i = I) and the root is taken of its eigenvalues; for
    least squares with clusters this is exactly the CR2 of Bell & McCaffrey (X_i'(I - P_ii)^-1/2 =
    (I - X_i'X_i (X'X)^-1)^-1/2 X_i'). A patient's observed Hessian need not be positive definite,
    so B_i's eigenvalues are clipped to [0, 1 - 1e-3] (its positive part; leverage below 1).

    Degrees of freedom for a t reference (Bell & McCaffrey 2002; Imbens & Kolesar 2016; Pustejovsky &
    Tipton 2018): the scalar variance c'Vc = sum_i z_i^2 is matched to a scaled chi-square under the
    working model, where the whitened scores at the fit have covariance B_i delta_ij - B_i B_j, so
    z = (g_i' L^-1 s_i)_i, g_i = (I - B_i)^-1/2 L^-1 c, has covariance C = diag(g_i'B_i g_i) - VV'
    (rows v_i = B_i g_i) and df = (tr C)^2 / tr(C^2): near n - 1 when the patients share the
    information evenly, small when a few dominate. H (p, p), H_i (p, p, n), S (n, p);
    returns (covariance (p, p), df (p,), each patient's term (n, p): covariance = terms' terms)."""
    L = np.linalg.cholesky(H)
    Linv = np.linalg.inv(L)
    B = Linv[None] @ np.moveaxis(H_i, -1, 0) @ Linv.T[None]
    lam, Q = np.linalg.eigh((B + B.transpose(0, 2, 1)) / 2)
    lam = np.clip(lam, 0.0, 1 - 1e-3)
    B = (Q * lam[:, None, :]) @ Q.transpose(0, 2, 1)
    root = (Q * (1 - lam[:, None, :]) ** -0.5) @ Q.transpose(0, 2, 1)   # (I - B_i)^-1/2
    adjusted = np.einsum("nab,nb->na", root, S @ Linv.T)                 # (I - B_i)^-1/2 L^-1 s_i
    terms = adjusted @ Linv
    cov = terms.T @ terms
    df = np.empty(H.shape[0])
    for k in range(H.shape[0]):
        g = root @ Linv[:, k]                                            # (n, p): (I - B_i)^-1/2 L^-1 e_k
        v = np.einsum("nab,nb->na", B, g)
        a = np.einsum("na,na->n", g, v)
        vv = np.einsum("na,na->n", v, v)
        trace = a.sum() - vv.sum()
        trace2 = (a ** 2).sum() - 2 * (a * vv).sum() + ((v.T @ v) ** 2).sum()
        df[k] = trace ** 2 / trace2 if trace2 > 0 else np.inf
    return cov, df, terms


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
    variance: str = "sandwich"
    cov_observed: np.ndarray | None = None
    cov_sandwich: np.ndarray | None = None
    cov_jackknife: np.ndarray | None = None
    cov_cr2: np.ndarray | None = None
    df_cr2: np.ndarray | None = None   # Bell-McCaffrey degrees of freedom of each parameter (CR2)
    cr2_terms: np.ndarray | None = None  # (n, p) each patient's term of the CR2 variance

    @property
    def basis(self) -> TimeBasis:
        return self.layout.basis

    def names(self):
        return self.layout.names(self.covariates)

    def se(self):
        return np.sqrt(np.clip(np.diag(self.cov), 0, None))

    def estimate(self, name):
        i = self.names().index(name)
        return float(self.theta[i]), float(self.se()[i])


def fit_joint(data: JointData, association="value", pieces=7, quad: Quadrature | None = None,
              hessian=True, basis: TimeBasis | None = None, variance="sandwich") -> JointFit:
    """Maximum-likelihood joint model (module docstring) on one analysed set. variance:
    ``observed`` (inverse observed information), ``sandwich`` (H^-1 (sum_i s_i s_i') H^-1 with
    the per-patient scores s_i; the observed one is kept in cov_observed), ``jackknife``
    (one_step_jackknife) or ``cr2`` (bias_reduced_sandwich, with df_cr2 for t intervals); the last
    two keep all four covariances. The sandwich is the default: on the project's simulator it is
    closer than the observed information to the estimate's spread, and cr2 did not reach the 93 %
    coverage on the first 200 trials that switching required (BENCHMARKS.md)."""
    if variance not in VARIANCES:
        raise ValueError(f"survival settings: joint variance {variance!r} is not one of {', '.join(VARIANCES)}")
    quad = quad or Quadrature()
    basis = basis or TimeBasis()
    knots = hazard_knots(data.time, data.event, pieces)
    layout = Layout(n_pieces=len(knots) + 1, n_covariates=data.w.shape[1], slope=association == "value+slope",
                    basis=basis)
    lmm = fit_mixed_model(data, basis)
    # start: the mixed model, no association, per-piece event rates (exposure / events)
    edges = np.concatenate([[0.0], knots, [np.inf]])
    exposure = np.clip(np.minimum(data.time[:, None], edges[None, 1:]) - edges[None, :-1], 0, None).sum(0)
    events = np.bincount(piece_of(data.time[data.event > 0], knots), minlength=layout.n_pieces)
    rates = np.maximum(events, 0.5) / np.maximum(exposure, 1e-9)
    th0 = np.concatenate([lmm.beta, [math.log(lmm.sigma)], cholesky_values(lmm.L),
                          np.log(rates), np.zeros(layout.n_covariates), [0.0], [0.0] if layout.slope else []])
    design = design_of(data, basis, knots, quad.legendre)

    def terms(th):
        return loglik_terms(th, data, knots, layout, quad, design)

    def negll(th):
        try:
            v = -terms(th).sum()
        except np.linalg.LinAlgError:  # a step to a singular random-effects covariance: outside the model
            return 1e300
        return v if np.isfinite(v) else 1e300

    options = {"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-6}
    res = optimize.minimize(negll, th0, method="L-BFGS-B", options=options)
    if not res.success:  # a line search that stalls on finite-difference noise: restart once from there
        res = optimize.minimize(negll, res.x, method="L-BFGS-B", options=options)
    theta = res.x
    cov = np.full((layout.size, layout.size), np.nan)
    observed = sandwich = jackknife = cr2 = cov
    df = cr2_terms = None
    if hessian:
        per_patient = variance in ("jackknife", "cr2")
        if per_patient:  # each patient's Hessian too, from the very same evaluations
            H_i = numerical_hessian(lambda th: -terms(th), theta)
            H = H_i.sum(axis=-1)
        else:
            H = numerical_hessian(negll, theta)
        try:
            observed = cov = np.linalg.inv(H)
        except np.linalg.LinAlgError:
            pass
        if variance != "observed" and np.isfinite(cov).all():
            S = patient_scores(terms, theta)
            cov = sandwich = observed @ (S.T @ S) @ observed
            if per_patient:
                jackknife = one_step_jackknife(H, H_i, S)
                try:
                    cr2, df, cr2_terms = bias_reduced_sandwich(H, H_i, S)
                except np.linalg.LinAlgError:  # an information that is not positive definite
                    pass
                cov = {"jackknife": jackknife, "cr2": cr2}[variance]
    return JointFit(theta=theta, cov=cov, layout=layout, knots=knots, quad=quad, loglik=-float(res.fun),
                    converged=bool(res.success), message=str(res.message), n_patients=data.n,
                    n_events=int(data.event.sum()), n_scans=int(data.mask.sum()), covariates=data.covariates,
                    variance=variance, cov_observed=observed, cov_sandwich=sandwich, cov_jackknife=jackknife,
                    cov_cr2=cr2, df_cr2=df, cr2_terms=cr2_terms)


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
    basis = fit.basis
    z, wz = gauss_hermite(fit.quad.hermite, fit.layout.q)
    ii, tt, latest = prediction_points(data, landmarks_years)
    lin_all = data.w @ gamma if len(gamma) else np.zeros(data.n)

    def hazard_to(coef, upper, lin):
        s, ws, cut_piece = integration_grid(upper, fit.knots, basis, fit.quad.legendre)
        Xs, dXs = basis.design(s)
        return cumulative_hazard(coef, Xs, dXs, ws, log_lam[cut_piece], lin, alpha, alpha_s)

    out = []
    for start in range(0, len(ii), chunk):
        i, t_land, last = ii[start:start + chunk], tt[start:start + chunk], latest[start:start + chunk]
        upto = data.mask[i] & (data.t[i] <= t_land[:, None])
        _, mu, V = longitudinal_posterior(data.y[i], basis.design(data.t[i])[0], upto, beta, sigma, L)
        coef = beta + mu[:, None, :] + np.einsum("nab,gb->nga", np.linalg.cholesky(V), z)
        lin = lin_all[i]
        H_t = hazard_to(coef, t_land, lin)
        log_post = np.log(wz)[None] - H_t
        for w in windows_years:
            H_tw = hazard_to(coef, t_land + w, lin)
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


def _derived_names(basis: TimeBasis) -> list[tuple[str, str]]:
    """(term, note) of sigma, the random effects' SDs and their correlations, in _derived's order."""
    labels = basis.labels
    what = {"intercept": "the random intercept", "slope": "the random slope (per year)",
            "decay": "the random size of the shrinking component"}
    rows = [("sigma", "residual SD of ln burden")]
    rows += [(f"sd_{a}", f"SD of {what.get(a, f'the random coefficient of spline column {a}')}") for a in labels]
    if basis.kind == "linear":
        return rows + [("corr_intercept_slope", "correlation of random intercept and slope")]
    return rows + [(f"corr_{labels[a]}_{labels[b]}", f"correlation of the random {labels[a]} and {labels[b]}")
                   for a in range(len(labels)) for b in range(a)]


def _derived(theta, layout):
    """sigma, the SD of each random effect, their correlations (pairs (a, b), b < a)."""
    _, sigma, L, *_ = layout.unpack(theta)
    D = L @ L.T
    sd = np.sqrt(np.diag(D))
    corr = [D[a, b] / (sd[a] * sd[b]) for a in range(len(sd)) for b in range(a)]
    return np.array([sigma, *sd, *corr])


def estimate_rows(fit: JointFit, alpha=0.05) -> list[dict]:
    """One row per reported parameter: estimate, SE, Wald CI and p; hazard ratios for the
    association and covariate terms (per unit of ln burden; slope per unit ln burden per year).
    With the CR2 variance the model's own parameters take a t reference on their Bell-McCaffrey
    df (the derived variance components stay normal)."""
    names, se = fit.names(), fit.se()
    df = fit.df_cr2 if fit.variance == "cr2" and fit.df_cr2 is not None else np.full(len(names), np.inf)
    rows = []

    def row(term, est, s, note="", hr=False, dof=np.inf):
        ref = norm if math.isinf(dof) else student_t(dof)
        q = ref.ppf(1 - alpha / 2)
        lo, hi = est - q * s, est + q * s
        p = 2 * ref.sf(abs(est / s)) if s > 0 else math.nan
        rows.append({"term": term, "estimate": est, "se": s, "lower": lo, "upper": hi, "p": p,
                     "hr": math.exp(est) if hr else math.nan, "hr_lower": math.exp(lo) if hr else math.nan,
                     "hr_upper": math.exp(hi) if hr else math.nan, "note": note})

    layout = fit.layout
    if fit.basis.kind == "linear":
        row("beta_intercept", fit.theta[0], se[0], "mean ln(burden + offset) at day 0", dof=df[0])
        row("beta_time", fit.theta[1], se[1], "mean change of ln(burden + offset) per year", dof=df[1])
    elif fit.basis.kind == "decay":
        half_life = math.log(2) / fit.basis.rate * DAYS_PER_YEAR
        row("beta_intercept", fit.theta[0], se[0], "mean ln(burden + offset) of the regrowth line at day 0", dof=df[0])
        row("beta_slope", fit.theta[1], se[1], "mean regrowth of ln(burden + offset) per year", dof=df[1])
        row("beta_decay", fit.theta[2], se[2], f"mean size of the shrinking component at day 0 (half-life "
            f"{half_life:.0f} days, by profile likelihood of the mixed model)", dof=df[2])
    else:
        row("beta_intercept", fit.theta[0], se[0],
            f"mean ln(burden + offset) at the first scan day ({fit.basis.boundary[0] * DAYS_PER_YEAR:.0f})", dof=df[0])
        knots = ", ".join(f"{k * DAYS_PER_YEAR:.0f}" for k in fit.basis.interior) or "none"
        for k in range(1, layout.q):
            row(f"beta_ns{k}", fit.theta[k], se[k], f"natural cubic spline coefficient {k} of {layout.q - 1} "
                f"(R's ns; interior knots at days {knots}, boundary at days "
                f"{fit.basis.boundary[0] * DAYS_PER_YEAR:.0f} and {fit.basis.boundary[1] * DAYS_PER_YEAR:.0f})", dof=df[k])
    # delta method for the variance components (numerical Jacobian of _derived)
    eps = 1e-6
    base = _derived(fit.theta, layout)
    J = np.zeros((len(base), len(fit.theta)))
    for k in range(layout.q, layout.hazard_start):
        th = fit.theta.copy()
        th[k] += eps
        J[:, k] = (_derived(th, layout) - base) / eps
    cov_d = J @ np.nan_to_num(fit.cov) @ J.T if np.isfinite(fit.cov).all() else np.full((len(base),) * 2, np.nan)
    for k, (term, note) in enumerate(_derived_names(fit.basis)):
        row(term, float(base[k]), float(math.sqrt(max(cov_d[k, k], 0))) if np.isfinite(cov_d[k, k]) else math.nan, note)
    edges = np.concatenate([[0.0], fit.knots * DAYS_PER_YEAR, [np.inf]])
    for k in range(layout.n_pieces):
        i = layout.hazard_start + k
        row(f"log_baseline_hazard_{k + 1}", fit.theta[i], se[i],
            f"per year, days [{edges[k]:.0f}, {edges[k + 1]:.0f})", dof=df[i])
    for name in names[layout.hazard_start + layout.n_pieces:]:
        i = names.index(name)
        note = {"alpha_value": "log HR per unit of current ln(burden + offset)",
                "alpha_slope": "log HR per unit of current slope of ln burden (per year)"}.get(name, "log HR")
        row(name.removeprefix("gamma_"), fit.theta[i], se[i], note, hr=True, dof=df[i])
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
    n_effects = random_effects(j["time_basis"], j["spline_df"])
    if problem is None and (jd.mask.sum(axis=1) >= n_effects).sum() < n_effects:
        problem = (f"fewer than {n_effects} patients with {n_effects} scans or more: the {n_effects} random effects of "
                   f"time_basis {j['time_basis']} cannot be estimated (use time_basis: linear)")
    if problem:
        log.warning("%s %s joint model not fitted: %s", cohort, endpoint, problem)
        return [{**key, "term": "", "status": f"not fitted: {problem}", "n_patients": jd.n,
                 "n_events": int(jd.event.sum()), "n_scans": int(jd.mask.sum())}], None
    try:
        basis = time_basis(j["time_basis"], jd.t[jd.mask], int(j["spline_df"]), jd)
        fit = fit_joint(jd, j["association"], j["baseline_hazard_pieces"],
                        Quadrature(j["hermite_nodes"], j["legendre_nodes"]), basis=basis, variance=j["variance"])
    except np.linalg.LinAlgError as exc:
        problem = f"the model cannot be estimated on these data ({exc}: a random-effects covariance that is singular)"
        log.warning("%s %s joint model not fitted: %s", cohort, endpoint, problem)
        return [{**key, "term": "", "status": f"not fitted: {problem}", "n_patients": jd.n,
                 "n_events": int(jd.event.sum()), "n_scans": int(jd.mask.sum())}], None
    status = "ok" if fit.converged else f"not converged (L-BFGS-B: {fit.message.strip(' :') or 'line search failed'})"
    if not np.isfinite(fit.cov).all() or (np.diag(fit.cov) <= 0).any():
        status = "ok; observed information not positive definite: SEs unreliable" if fit.converged else status
    corr = _derived(fit.theta, fit.layout)[1 + fit.layout.q:]
    if (np.abs(corr) > 0.999).any():
        status += "; a random-effects correlation at its bound (too few patients for an unstructured D)"
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
