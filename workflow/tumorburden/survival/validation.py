"""Internal validation of a Cox model by bootstrap optimism correction (Harrell; rms::validate.cph).

For a model with prespecified covariates, every bootstrap replicate b refits the model on a
resample (the whole model-building procedure: here a Cox fit with fixed covariates, no variable
or cut-point selection), then computes each index on the resample (training) and, with the
replicate's coefficients, on the original patients (test). optimism = mean(training - test);
corrected = apparent - optimism. The indices are rms's (validate.cph, survival 3.5 / rms 6.5):

- Dxy: Somers' rank correlation between the linear predictor and the hazard (C = (1 + Dxy) / 2);
  pairs as Harrell's C: i has the event and T_i < T_j, or T_i = T_j and j is censored.
- R2: Nagelkerke's, from the likelihood-ratio chi-square LR and -2 log L0 over n.
- slope: the calibration slope, the Cox coefficient of the linear predictor refitted on the
  test patients (1 on the training sample by definition).
- D: discrimination index (LR - 1) / (-2 log L0); U: unreliability, the LR of the refitted slope
  against slope 1 over -2 log L0 (-2 / (-2 log L0) on the training sample); Q = D - U;
  g: Gini's mean difference of the linear predictor.
- Brier(t) at each horizon (not in rms): the inverse-probability-of-censoring-weighted Brier score
  of S(t | x) from the fit's baseline hazard (Breslow, or Efron-adjusted for Efron ties, as R's
  survfit.coxph), with censoring weights from the Kaplan-Meier of the original sample's censoring
  times held fixed across replicates (riskRegression's marginal censoring model on the original
  data; the resample's own weights differ by sampling noise only).

Why written here: neither lifelines nor scikit-survival has bootstrap optimism correction, and
refitting lifelines' CoxPHFitter B times costs ~30 ms a fit. A resample is the original patients
with counts w (a patient drawn twice is two tied copies), so all B replicates are one batched
Newton-Raphson on the weighted partial likelihood: Efron's tie correction with the copies counted
as separate deaths, which is exactly the likelihood of the resampled data that rms fits.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

MAX_ABS_COEF = 15.0  # |log HR| per SD of a covariate beyond this: a replicate separated and is left out
INDICES = ("Dxy", "C", "R2", "slope", "D", "U", "Q", "g")
VALIDATION_COLUMNS = ["index", "horizon_days", "apparent", "training", "test", "optimism", "corrected",
                      "optimism_sd", "n_replicates", "n_failed", "procedure"]
PROCEDURE = "Cox fit of prespecified covariates refitted in each bootstrap sample; no selection or cut-point search"


# --- batched weighted Cox partial likelihood ---------------------------------------------------


class _Stratum:
    """What one stratum's sums need that depends on the times, events and covariates only, made
    once per fit instead of once per Newton step: the patients in time order, the distinct event
    times, where each starts in the risk set, the deaths grouped by event time, and (shared design)
    the covariates in that order with each patient's x x'."""

    def __init__(self, time, event, X, rows):
        order = np.argsort(time[rows], kind="mergesort")
        self.idx = rows[order]  # the stratum's patients in time order (indices into all patients)
        t, e = time[self.idx], event[self.idx]
        self.ev_times = np.unique(t[e])
        self.first = np.searchsorted(t, self.ev_times, side="left")
        self.di = np.flatnonzero(e)
        self.grp = np.searchsorted(self.ev_times, t[self.di])
        self.bounds = np.r_[0, np.flatnonzero(np.diff(self.grp)) + 1]
        self.at_or_before = np.searchsorted(self.ev_times, t, side="right") - 1  # last event time <= T_i
        self.shared = X.ndim == 2
        self.XX = None
        if X.ndim == 2 or X.shape[0] == 1:  # one design for every replicate
            Xs = X[self.idx] if X.ndim == 2 else X[0, self.idx]
            self.X = Xs[None]
            n, p = Xs.shape
            self.XX = (Xs[:, :, None] * Xs[:, None, :]).reshape(n, p * p)


def _sums(st, X, eta, w, ties, rows=slice(None), batch=None):
    """Score U (B,p), information V (B,p,p), log partial likelihood (B,), event times (m,) and the
    baseline hazard increments dH (B,m), for the resample counts w (B,n) in one stratum ``st``
    (a _Stratum). X is st.X (shared by the replicates) or the replicates' own (B,n,p), and eta,
    w and a per-replicate X are in the stratum's time order. The B replicates are ``rows`` of a
    batch of ``batch`` replicates."""
    B, n = w.shape
    p = X.shape[-1]
    ev_times, first, di, grp, bounds = st.ev_times, st.first, st.di, st.grp, st.bounds
    m = len(ev_times)
    if m == 0:
        return (np.zeros((B, p)), np.zeros((B, p, p)), np.zeros(B), ev_times, np.zeros((B, 0)))
    shift = eta.max(axis=1, keepdims=True)
    r = w * np.exp(eta - shift)
    rx = r[..., None] * X

    def tail(a):
        return np.flip(np.cumsum(np.flip(a, axis=1), axis=1), axis=1)[:, first]

    S0, S1 = tail(r), tail(rx)

    def deaths(a):
        return np.add.reduceat(a[:, di], bounds, axis=1)

    Xd = np.broadcast_to(X, (B,) + X.shape[1:])
    d = deaths(w)
    D0, D1 = deaths(r), deaths(rx)
    U = deaths(w[..., None] * Xd).sum(axis=1)
    ll = (deaths(w * eta) - d * shift)
    # The information is sum over event times of (second moment - mean mean') of the risk set.
    # The second-moment part, sum_k c_k S2_k - e_k D2_k, is regrouped per patient i as
    # r_i x_i x_i' (sum of c_k over event times <= T_i, less e_k at its own death time), so no
    # (B, event times, p, p) array is formed.
    c = np.zeros((B, m))   # weight of the risk set's second moment at each event time
    e = np.zeros((B, m))   # weight of the dying's second moment (Efron)
    MM = np.zeros((B, p, p))
    if ties == "breslow":
        live = d > 0
        inv = np.where(live, 1.0 / np.where(live, S0, 1.0), 0.0)
        mean = S1 * inv[..., None]
        U -= (d[..., None] * mean).sum(axis=1)
        MM += np.matmul((d[..., None] * mean).swapaxes(1, 2), mean)
        ll -= np.where(live, d * np.log(np.where(live, S0, 1.0)), 0.0)
        c = d * inv
    else:  # Efron: the k-th of d tied deaths sees the risk set less k/d of the dying
        dsafe = np.where(d > 0, d, 1.0)
        for k in range(int(np.ceil(d.max()))):
            live = d > k
            frac = np.where(live, k / dsafe, 0.0)
            den = np.where(live, S0 - frac * D0, 1.0)
            inv = np.where(live, 1.0 / den, 0.0)
            mean = (S1 - frac[..., None] * D1) * inv[..., None]
            U -= mean.sum(axis=1)
            MM += np.matmul(mean.swapaxes(1, 2), mean)
            ll -= np.where(live, np.log(den), 0.0)
            c += inv
            e += frac * inv
    C = np.concatenate([np.zeros((B, 1)), np.cumsum(c, axis=1)], axis=1)[:, st.at_or_before + 1]
    own = np.zeros((B, n))
    own[:, di] = e[:, grp]
    coef = r * (C - own)
    if st.XX is not None:  # shared design: one matrix product with the patients' x x'
        if batch is not None and batch != B:
            # in the whole batch's shape: numpy hands a one-row product to BLAS's gemv, not gemm,
            # whose sums round differently, and a replicate's fit must not depend on its company
            whole = np.zeros((batch, n))
            whole[rows] = coef
            coef = whole
        V = (coef @ st.XX)[rows].reshape(B, p, p) - MM
    else:
        V = np.matmul((coef[..., None] * X).swapaxes(1, 2), X) - MM
    dH = c
    dH = dH * np.exp(-shift)  # back to the unshifted risk scale
    return U, V, ll.sum(axis=1), ev_times, dH


class _Batch:
    """The replicates' sums at their current coefficients, every stratum's, kept per replicate so
    that a Newton step recomputes only the replicates whose coefficients moved."""

    def __init__(self, time, event, X, w, strata, ties):
        self.X, self.w, self.ties = X, w, ties
        self.labels = np.unique(strata)
        self.strata = [_Stratum(time, event, X, np.flatnonzero(strata == s)) for s in self.labels]

    def sums(self, beta, rows=None):
        """(U, V, ll, hazards, eta) of the replicates ``rows`` (all: None), beta (B, p) holding every
        replicate's coefficients (only the rows' are used)."""
        # a separating replicate overflows exp(eta) on its way to |beta| = inf; fit_cox_batch flags it
        # (non-finite or |beta| per SD > 15) instead of filling the log with numpy warnings
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            return self._sums(beta, slice(None) if rows is None else rows)

    def _sums(self, beta, rows):
        Xb = self.X if self.X.ndim == 3 else self.X[None]
        # the linear predictor of the whole batch, as the sums' products below: a product's kernel
        # (and so its last bit) depends on its shape, not on the rows asked for
        eta = np.einsum("bnp,bp->bn", np.broadcast_to(Xb, (len(beta),) + Xb.shape[1:]), beta)[rows]
        X = self.X if self.X.ndim == 2 else self.X[rows]
        w = self.w[rows]
        U = V = ll = 0.0
        hazards = []
        for s, st in zip(self.labels, self.strata):
            Xs = st.X if st.shared else X[:, st.idx]
            u, v, lk, t, dh = _sums(st, Xs, eta[:, st.idx], w[:, st.idx], self.ties, rows, len(beta))
            U, V, ll = U + u, V + v, ll + lk
            hazards.append((s, t, dh))
        return U, V, ll, hazards, eta


def fit_cox_batch(time, event, X, weights=None, strata=None, ties="efron", tol=1e-10, max_iter=40) -> dict:
    """Maximum partial likelihood for each row of ``weights`` (B, n) at once (Newton-Raphson with
    step halving). Returns beta (B,p), loglik (B,), loglik0 (B,), ok (B,) (converged, finite,
    |coef| <= 15), hazards [(stratum, event times, dH (B,m))] and eta (B,n) at beta.

    Each replicate's iterations are its own: a step (or a halving) recomputes the sums of the
    replicates it moves only, so a replicate that converged or stopped early costs nothing while
    the others iterate, and one whose coefficients left the finite numbers (separation: it cannot
    come back, so it ends not ok) is not iterated further."""
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    X = np.asarray(X, float)
    n = len(time)
    if X.ndim == 1:
        X = X[:, None]
    w = np.ones((1, n)) if weights is None else np.atleast_2d(np.asarray(weights, float))
    B, p = w.shape[0], X.shape[-1]
    strata = np.zeros(n, int) if strata is None else np.asarray(strata)
    batch = _Batch(time, event, X, w, strata, ties)
    beta = np.zeros((B, p))
    U, V, ll, haz, eta = batch.sums(beta)
    haz = [(s, t, dh.copy()) for s, t, dh in haz]
    ll0 = ll.copy()
    ok = np.ones(B, bool)
    done = np.zeros(B, bool)
    lost = np.zeros(B, bool)  # coefficients no longer finite: inf and nan stay so under any step
    eye = np.eye(p)
    for _ in range(max_iter):
        sing = np.abs(np.linalg.det(V)) < 1e-300
        ok &= ~sing
        step = np.linalg.solve(np.where(sing[:, None, None], eye, V), U[..., None])[..., 0]
        step[done | ~ok] = 0.0
        trial = beta + step
        Ut, Vt, llt, haz_t, eta_t = U.copy(), V.copy(), ll.copy(), [(s, t, dh.copy()) for s, t, dh in haz], eta.copy()

        def recompute(rows):
            u, v, lk, hz, et = batch.sums(trial, rows)
            Ut[rows], Vt[rows], llt[rows], eta_t[rows] = u, v, lk, et
            for (_, _, dh), (_, _, dh_new) in zip(haz_t, hz):
                dh[rows] = dh_new

        # a non-finite step (a near-singular information) stays non-finite however often it is
        # halved: the replicate is lost whatever its likelihood says
        lost |= ~np.all(np.isfinite(trial), axis=1)
        llt[lost] = np.nan
        moving = np.flatnonzero(~done & ok & ~lost)
        if len(moving):
            recompute(moving)
        for _ in range(30):  # halve where the likelihood fell
            worse = ~(llt >= ll - 1e-12 * (1 + np.abs(ll))) & ~done & ok & ~lost
            if not worse.any():
                break
            step[worse] /= 2
            trial = beta + step
            recompute(np.flatnonzero(worse))
        converged = np.abs(llt - ll) <= tol * (1 + np.abs(ll))
        beta, U, V, ll, haz, eta = trial, Ut, Vt, llt, haz_t, eta_t
        done |= converged
        if (done | ~ok | lost).all():
            break
    if lost.any():  # NaN, as its sums at non-finite coefficients would be, so nothing reads them as a fit
        beta[lost], ll[lost], V[lost], eta[lost] = np.nan, np.nan, np.nan, np.nan
        for _, _, dh in haz:
            dh[lost] = np.nan
    # separation on the scale of one SD of each covariate, so per-day units (growth rates) are not flagged
    sd = X.std(axis=-2) if X.ndim == 3 else X.std(axis=0)[None]
    ok &= done & np.all(np.isfinite(beta), axis=1) & np.all(np.abs(beta * sd) <= MAX_ABS_COEF, axis=1)
    return {"beta": beta, "loglik": ll, "loglik0": ll0, "ok": ok, "hazards": haz, "eta": eta, "info": V}


def survival_at(hazards, eta, strata, horizons) -> np.ndarray:
    """S(t | x) = exp(-H0_stratum(t) exp(eta)) at each horizon: (B, n, len(horizons))."""
    horizons = np.asarray(horizons, float)
    out = np.ones(eta.shape + (len(horizons),))
    for s, t, dh in hazards:
        sel = strata == s
        H = np.concatenate([np.zeros((dh.shape[0], 1)), np.cumsum(dh, axis=1)], axis=1)
        H0 = H[:, np.searchsorted(t, horizons, side="right")]  # (B, h)
        out[:, sel] = np.exp(-H0[:, None, :] * np.exp(eta[:, sel])[..., None])
    return out


# --- indices -------------------------------------------------------------------------------------


def somers_dxy(time, event, lp, w, chunk: int = 32) -> np.ndarray:
    """Dxy of the linear predictor (B,n) with the hazard, resample counts w (B,n): pairs as Harrell's C.

    Dxy = sum over comparable pairs (i has the event first) of w_i w_j sign(lp_i - lp_j), over the
    sum of w_i w_j: a sign pass and a matrix product per chunk of replicates."""
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    di = np.flatnonzero(event)
    ti, tj = time[di, None], time[None, :]
    comparable = ((ti < tj) | ((ti == tj) & ~event[None, :])).astype(float)
    out = np.empty(lp.shape[0])
    chunk = max(1, min(chunk, int(2e7 // max(1, len(di) * len(time)))))  # <= ~160 MB of pair signs
    buf = np.empty((min(chunk, lp.shape[0]), len(di), len(time)))
    for a in range(0, lp.shape[0], chunk):
        L, W = lp[a:a + chunk], w[a:a + chunk]
        b = buf[:len(L)]
        np.subtract(L[:, di, None], L[:, None, :], out=b)
        np.sign(b, out=b)
        b *= comparable
        wd = W[:, di]
        num = np.einsum("bi,bi->b", wd, np.matmul(b, W[..., None])[..., 0])
        den = np.einsum("bi,bi->b", wd, W @ comparable.T)
        out[a:a + chunk] = num / den
    return out


def gini_md(x, w) -> np.ndarray:
    """Gini's mean difference sum_{i != j} |x_i - x_j| / (N (N - 1)) with counts w (N = sum w)."""
    order = np.argsort(x, axis=1, kind="mergesort")
    xs = np.take_along_axis(x, order, axis=1)
    ws = np.take_along_axis(w, order, axis=1)
    below_w = np.cumsum(ws, axis=1) - ws
    below_wx = np.cumsum(ws * xs, axis=1) - ws * xs
    total = 2 * (ws * (xs * below_w - below_wx)).sum(axis=1)
    N = w.sum(axis=1)
    return total / (N * (N - 1))


def ipcw_weights(time, event, horizons) -> np.ndarray:
    """(n, h) weights: 1/G(T_i-) for an event by t, 1/G(t) for still at risk after t, 0 if censored by t."""
    from tumorburden.survival.score import censoring_survival

    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    g_own = censoring_survival(time, event, time, lag=True)
    g_t = censoring_survival(time, event, np.asarray(horizons, float))
    out = np.zeros((len(time), len(horizons)))
    for k, t in enumerate(horizons):
        case = (time <= t) & event
        out[case, k] = 1 / g_own[case]
        out[time > t, k] = 1 / g_t[k]
    return out


def brier(time, event, surv, weights_ipcw, w, horizons) -> np.ndarray:
    """(B, h) IPCW Brier scores of predicted S(t | x) (B, n, h), patients counted w (B, n)."""
    died = (np.asarray(time)[:, None] <= np.asarray(horizons)[None, :]) & np.asarray(event, bool)[:, None]
    resid = (died[None].astype(float) - (1 - surv)) ** 2
    return np.einsum("bnh,nh,bn->bh", resid, weights_ipcw, w) / w.sum(axis=1)[:, None]


def _train_indices(fit, time, event, w, strata, horizons, ipcw):
    lp = fit["eta"]
    n = w.sum(axis=1)
    lr = 2 * (fit["loglik"] - fit["loglik0"])
    ll0 = -2 * fit["loglik0"]
    out = {"Dxy": somers_dxy(time, event, lp, w), "R2": (1 - np.exp(-lr / n)) / (1 - np.exp(-ll0 / n)),
           "slope": np.ones(len(lp)), "D": (lr - 1) / ll0, "U": -2 / ll0, "g": gini_md(lp, w)}
    out["Q"] = out["D"] - out["U"]
    out["C"] = (1 + out["Dxy"]) / 2
    if len(horizons):
        out["Brier"] = brier(time, event, survival_at(fit["hazards"], lp, strata, horizons), ipcw, w, horizons)
    return out


def _test_indices(beta, X, time, event, strata, ties, horizons, ipcw, hazards_train):
    """Indices of the replicates' coefficients beta (B,p) on the original patients."""
    B = len(beta)
    n = len(time)
    lp = beta @ X.T  # (B, n)
    ones = np.ones((B, n))
    refit = fit_cox_batch(time, event, lp[..., None], ones, strata, ties)
    slope = refit["beta"][:, 0]
    lr = 2 * (refit["loglik"] - refit["loglik0"])
    ll0 = -2 * refit["loglik0"]
    frozen = _Batch(time, event, lp[..., None], ones, strata, ties).sums(np.ones((B, 1)))[2]
    out = {"Dxy": somers_dxy(time, event, lp, ones), "R2": (1 - np.exp(-lr / n)) / (1 - np.exp(-ll0 / n)),
           "slope": slope, "D": (lr - 1) / ll0, "U": -2 * (frozen - refit["loglik"]) / ll0,
           "g": gini_md(slope[:, None] * lp, ones)}
    out["Q"] = out["D"] - out["U"]
    out["C"] = (1 + out["Dxy"]) / 2
    if len(horizons):
        # the replicate's own baseline hazard, from its training fit, with the original patients' lp
        out["Brier"] = brier(time, event, survival_at(hazards_train, lp, strata, horizons), ipcw, ones, horizons)
    return out, refit["ok"]


def validate_cox(time, event, X, horizons=(), n_boot: int = 200, rng: np.random.Generator | None = None,
                 strata=None, ties: str = "efron", chunk: int = 100) -> pd.DataFrame:
    """rms::validate.cph's table (plus Brier at horizons): one row per index (and horizon).

    X: (n, p) design matrix (complete cases). Replicates whose refit fails (separation, no
    convergence) are left out and counted in ``n_failed``, as rms does."""
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    X = np.asarray(X, float).reshape(len(time), -1)
    X = X - X.mean(axis=0)  # keeps exp(lp) in range; every index is invariant to the shift
    n = len(time)
    horizons = [float(h) for h in horizons]
    strata = np.zeros(n, int) if strata is None else np.asarray(strata)
    rng = rng or np.random.default_rng(1)
    ipcw = ipcw_weights(time, event, horizons) if horizons else None
    ones = np.ones((1, n))
    orig = fit_cox_batch(time, event, X, ones, strata, ties)
    if not orig["ok"][0]:
        raise ValueError("the Cox model does not converge on the original patients (separation?)")
    apparent = {k: v[0] for k, v in _train_indices(orig, time, event, ones, strata, horizons, ipcw).items()}
    train_parts, test_parts, failed = [], [], 0
    for a in range(0, int(n_boot), chunk):
        b = min(chunk, int(n_boot) - a)
        idx = rng.integers(0, n, size=(b, n))
        w = np.zeros((b, n))
        np.add.at(w, (np.repeat(np.arange(b), n), idx.ravel()), 1.0)
        fit = fit_cox_batch(time, event, X, w, strata, ties)
        tr = _train_indices(fit, time, event, w, strata, horizons, ipcw)
        te, ok_test = _test_indices(fit["beta"], X, time, event, strata, ties, horizons, ipcw, fit["hazards"])
        ok = fit["ok"] & ok_test
        failed += int((~ok).sum())
        train_parts.append({k: v[ok] for k, v in tr.items()})
        test_parts.append({k: v[ok] for k, v in te.items()})
    train = {k: np.concatenate([p[k] for p in train_parts]) for k in apparent}
    test = {k: np.concatenate([p[k] for p in test_parts]) for k in apparent}
    rows = []
    for k in [i for i in INDICES] + (["Brier"] if horizons else []):
        for j, h in enumerate(horizons if k == "Brier" else [math.nan]):
            app = apparent[k][j] if k == "Brier" else apparent[k]
            tr = train[k][:, j] if k == "Brier" else train[k]
            te = test[k][:, j] if k == "Brier" else test[k]
            opt = tr - te
            rows.append({"index": k, "horizon_days": h, "apparent": float(app), "training": float(tr.mean()),
                         "test": float(te.mean()), "optimism": float(opt.mean()),
                         "corrected": float(app - opt.mean()), "optimism_sd": float(opt.std(ddof=1)),
                         "n_replicates": int(len(opt)), "n_failed": failed, "procedure": PROCEDURE})
    return pd.DataFrame(rows, columns=VALIDATION_COLUMNS)
