"""fit_cox_batch as it was before it recomputed only the replicates a Newton step moves (main at
96672b5, tumorburden/survival/validation.py, verbatim): the oracle of test_cox_batch.py, which
checks that the faster fit returns the same numbers to the last bit for every replicate that
converged, and flags the same replicates as failed."""

from __future__ import annotations

import numpy as np

MAX_ABS_COEF = 15.0



def _sums(time, event, X, eta, w, ties):
    """Score U (B,p), information V (B,p,p), log partial likelihood (B,), event times (m,) and the
    baseline hazard increments dH (B,m), for the resample counts w (B,n) in one stratum.
    X is (n,p) shared by the replicates or (B,n,p) per replicate."""
    order = np.argsort(time, kind="mergesort")
    time, event = time[order], event[order]
    X = X[..., order, :] if X.ndim == 3 else X[order][None]
    eta, w = eta[:, order], w[:, order]
    B, n = w.shape
    p = X.shape[-1]
    ev_times = np.unique(time[event])
    m = len(ev_times)
    if m == 0:
        return (np.zeros((B, p)), np.zeros((B, p, p)), np.zeros(B), ev_times, np.zeros((B, 0)))
    shift = eta.max(axis=1, keepdims=True)
    r = w * np.exp(eta - shift)
    rx = r[..., None] * X
    first = np.searchsorted(time, ev_times, side="left")

    def tail(a):
        return np.flip(np.cumsum(np.flip(a, axis=1), axis=1), axis=1)[:, first]

    S0, S1 = tail(r), tail(rx)
    di = np.flatnonzero(event)
    grp = np.searchsorted(ev_times, time[di])
    bounds = np.r_[0, np.flatnonzero(np.diff(grp)) + 1]

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
    at_or_before = np.searchsorted(ev_times, time, side="right") - 1  # last event time <= T_i
    C = np.concatenate([np.zeros((B, 1)), np.cumsum(c, axis=1)], axis=1)[:, at_or_before + 1]
    own = np.zeros((B, n))
    own[:, di] = e[:, grp]
    coef = r * (C - own)
    if X.shape[0] == 1:  # shared design: one matrix product with the patients' x x'
        V = (coef @ (X[0][:, :, None] * X[0][:, None, :]).reshape(n, p * p)).reshape(B, p, p) - MM
    else:
        V = np.matmul((coef[..., None] * X).swapaxes(1, 2), X) - MM
    dH = c
    dH = dH * np.exp(-shift)  # back to the unshifted risk scale
    return U, V, ll.sum(axis=1), ev_times, dH


def _strata_sums(time, event, X, beta, w, strata, ties):
    # a separating replicate overflows exp(eta) on its way to |beta| = inf; fit_cox_batch flags it
    # (non-finite or |beta| per SD > 15) instead of filling the log with numpy warnings
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return _strata_sums_raw(time, event, X, beta, w, strata, ties)


def _strata_sums_raw(time, event, X, beta, w, strata, ties):
    Xb = X if X.ndim == 3 else X[None]
    eta = np.einsum("bnp,bp->bn", np.broadcast_to(Xb, (len(beta),) + Xb.shape[1:]), beta)
    U = V = ll = 0.0
    hazards = []
    for s in np.unique(strata):
        sel = strata == s
        Xs = X[:, sel] if X.ndim == 3 else X[sel]
        u, v, lk, t, dh = _sums(time[sel], event[sel], Xs, eta[:, sel], w[:, sel], ties)
        U, V, ll = U + u, V + v, ll + lk
        hazards.append((s, t, dh))
    return U, V, ll, hazards, eta


def fit_cox_batch(time, event, X, weights=None, strata=None, ties="efron", tol=1e-10, max_iter=40) -> dict:
    """Maximum partial likelihood for each row of ``weights`` (B, n) at once (Newton-Raphson with
    step halving). Returns beta (B,p), loglik (B,), loglik0 (B,), ok (B,) (converged, finite,
    |coef| <= 15), hazards [(stratum, event times, dH (B,m))] and eta (B,n) at beta."""
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    X = np.asarray(X, float)
    n = len(time)
    if X.ndim == 1:
        X = X[:, None]
    w = np.ones((1, n)) if weights is None else np.atleast_2d(np.asarray(weights, float))
    B, p = w.shape[0], X.shape[-1]
    strata = np.zeros(n, int) if strata is None else np.asarray(strata)
    beta = np.zeros((B, p))
    U, V, ll, haz, eta = _strata_sums(time, event, X, beta, w, strata, ties)
    ll0 = ll.copy()
    ok = np.ones(B, bool)
    done = np.zeros(B, bool)
    eye = np.eye(p)
    for _ in range(max_iter):
        sing = np.abs(np.linalg.det(V)) < 1e-300
        ok &= ~sing
        step = np.linalg.solve(np.where(sing[:, None, None], eye, V), U[..., None])[..., 0]
        step[done | ~ok] = 0.0
        trial = beta + step
        Ut, Vt, llt, haz_t, eta_t = _strata_sums(time, event, X, trial, w, strata, ties)
        for _ in range(30):  # halve where the likelihood fell
            worse = ~(llt >= ll - 1e-12 * (1 + np.abs(ll))) & ~done & ok
            if not worse.any():
                break
            step[worse] /= 2
            trial = beta + step
            Ut, Vt, llt, haz_t, eta_t = _strata_sums(time, event, X, trial, w, strata, ties)
        converged = np.abs(llt - ll) <= tol * (1 + np.abs(ll))
        beta, U, V, ll, haz, eta = trial, Ut, Vt, llt, haz_t, eta_t
        done |= converged
        if (done | ~ok).all():
            break
    # separation on the scale of one SD of each covariate, so per-day units (growth rates) are not flagged
    sd = X.std(axis=-2) if X.ndim == 3 else X.std(axis=0)[None]
    ok &= done & np.all(np.isfinite(beta), axis=1) & np.all(np.abs(beta * sd) <= MAX_ABS_COEF, axis=1)
    return {"beta": beta, "loglik": ll, "loglik0": ll0, "ok": ok, "hazards": haz, "eta": eta, "info": V}


