"""Cox partial-likelihood pieces that lifelines and scikit-survival do not expose.

R's ``survival`` reports, beside every Cox model, the score (log-rank) test and, in
``cox.zph`` (survival >= 3.0), a score test of proportional hazards; neither library computes
these as R does, and scikit-survival's Breslow fit has no strata. All three need the same
quantities at each event time t: the score contribution U_t = sum over deaths of (x - mean_k)
and the information V_t = sum_k (second moment_k - mean_k mean_k'), with Efron's (or Breslow's)
handling of tied deaths, over the risk set of t's stratum. ``event_time_moments`` computes them
for right-censored or counting-process (start, stop] data, vectorised over event times.

``zph_test`` follows R's cox.zph (survival 3.5-3, transform "km"): g(t) = 1 - KM(t-), centred
at its mean over deaths; the test of term j is the score test for adding x_j g(t) to the fitted
model, u' I^-1 u with u = (0, sum_t g_t U_tj) and I the information of (x, x g(t)) at
(beta_hat, 0); the global test adds all x g(t) at once.
"""

from __future__ import annotations

import math

import numpy as np
from lifelines import KaplanMeierFitter
from scipy.stats import chi2


def _tail_sums(keys: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """sum of values[i] over keys[i] >= at, for every entry of ``at``."""
    order = np.argsort(keys, kind="mergesort")
    k = keys[order]
    v = values[order]
    suffix = np.concatenate([np.cumsum(v[::-1], axis=0)[::-1], np.zeros((1,) + v.shape[1:])], axis=0)
    return suffix[np.searchsorted(k, at, side="left")]


def event_time_moments(stop, event, X, eta=None, strata=None, start=None, ties: str = "efron") -> dict:
    """Per event time (of each stratum): time, stratum, deaths, U (m x p), V (m x p x p), loglik (m)."""
    stop = np.asarray(stop, dtype=float)
    event = np.asarray(event, dtype=bool)
    X = np.asarray(X, dtype=float).reshape(len(stop), -1)
    n, p = X.shape
    eta = np.zeros(n) if eta is None else np.asarray(eta, dtype=float)
    strata = np.zeros(n, dtype=int) if strata is None else np.asarray(strata)
    if ties not in ("efron", "breslow"):
        raise ValueError(f"unknown ties method {ties!r} (choose efron or breslow)")
    out = {k: [] for k in ("time", "stratum", "deaths", "U", "V", "loglik")}
    for s in np.unique(strata):
        sel = strata == s
        st, ev, x, e = stop[sel], event[sel], X[sel], eta[sel]
        if not ev.any():
            continue
        r = np.exp(e - e.max())  # a common shift cancels in every ratio; loglik corrected below
        shift = e.max()
        times = np.unique(st[ev])
        rx = r[:, None] * x
        rxx = rx[:, :, None] * x[:, None, :]
        S0 = _tail_sums(st, r, times)
        S1 = _tail_sums(st, rx, times)
        S2 = _tail_sums(st, rxx, times)
        if start is not None:  # counting process: leave the risk set of t when start >= t
            b = np.asarray(start, dtype=float)[sel]
            S0 = S0 - _tail_sums(b, r, times)
            S1 = S1 - _tail_sums(b, rx, times)
            S2 = S2 - _tail_sums(b, rxx, times)
        pos = np.searchsorted(times, st[ev])
        m = len(times)
        d = np.bincount(pos, minlength=m).astype(float)
        D0 = np.bincount(pos, weights=r[ev], minlength=m)
        D1 = np.zeros((m, p))
        np.add.at(D1, pos, rx[ev])
        D2 = np.zeros((m, p, p))
        np.add.at(D2, pos, rxx[ev])
        xsum = np.zeros((m, p))
        np.add.at(xsum, pos, x[ev])
        esum = np.bincount(pos, weights=e[ev], minlength=m)
        U, V, ll = xsum.copy(), np.zeros((m, p, p)), esum.copy()
        if ties == "breslow":
            mean = S1 / S0[:, None]
            U -= d[:, None] * mean
            V += d[:, None, None] * (S2 / S0[:, None, None] - mean[:, :, None] * mean[:, None, :])
            ll -= d * (np.log(S0) + shift)
        else:
            for k in range(int(d.max())):
                live = d > k
                frac = np.where(live, k / d, 0.0)
                den = S0 - frac * D0
                mean = (S1 - frac[:, None] * D1) / den[:, None]
                second = (S2 - frac[:, None, None] * D2) / den[:, None, None]
                U -= np.where(live[:, None], mean, 0.0)
                V += np.where(live[:, None, None], second - mean[:, :, None] * mean[:, None, :], 0.0)
                ll -= np.where(live, np.log(np.where(live, den, 1.0)) + shift, 0.0)
        out["time"].append(times)
        out["stratum"].append(np.full(m, s, dtype=object))
        out["deaths"].append(d)
        out["U"].append(U)
        out["V"].append(V)
        out["loglik"].append(ll)
    if not out["time"]:
        return {"time": np.zeros(0), "stratum": np.zeros(0, dtype=object), "deaths": np.zeros(0),
                "U": np.zeros((0, p)), "V": np.zeros((0, p, p)), "loglik": np.zeros(0)}
    return {k: np.concatenate(v) for k, v in out.items()}


def loglik(stop, event, X, beta, strata=None, start=None, ties="efron") -> float:
    X = np.asarray(X, dtype=float).reshape(len(np.asarray(stop)), -1)
    return float(event_time_moments(stop, event, X, X @ np.asarray(beta, float), strata, start, ties)["loglik"].sum())


def score_test(stop, event, X, strata=None, start=None, ties="efron") -> tuple[float, int, float]:
    """R's 'Score (logrank) test' of all coefficients = 0: (chisq, df, p)."""
    m = event_time_moments(stop, event, X, None, strata, start, ties)
    u, info = m["U"].sum(axis=0), m["V"].sum(axis=0)
    stat = float(np.linalg.solve(info, u) @ u)
    return stat, len(u), float(chi2.sf(stat, len(u)))


def fit_newton(stop, event, X, strata=None, start=None, ties="breslow", tol=1e-9, max_iter=50):
    """Maximum partial likelihood by Newton-Raphson with step halving (for stratified Breslow,
    which no library fits): (beta, covariance, loglik at beta, loglik at 0, iterations)."""
    X = np.asarray(X, dtype=float).reshape(len(np.asarray(stop)), -1)
    beta = np.zeros(X.shape[1])
    m = event_time_moments(stop, event, X, X @ beta, strata, start, ties)
    ll0 = ll = float(m["loglik"].sum())
    for it in range(1, max_iter + 1):
        u, info = m["U"].sum(axis=0), m["V"].sum(axis=0)
        step = np.linalg.solve(info, u)
        for _ in range(30):
            trial = beta + step
            mt = event_time_moments(stop, event, X, X @ trial, strata, start, ties)
            llt = float(mt["loglik"].sum())
            if np.isfinite(llt) and llt >= ll - 1e-12:
                break
            step = step / 2
        else:
            raise np.linalg.LinAlgError("Newton-Raphson could not increase the partial likelihood")
        done = abs(llt - ll) < tol * max(1.0, abs(ll))
        beta, ll, m = trial, llt, mt
        if done:
            break
    else:
        raise np.linalg.LinAlgError(f"no convergence in {max_iter} Newton-Raphson steps (separation?)")
    info = m["V"].sum(axis=0)
    return beta, np.linalg.inv(info), ll, ll0, it


def km_transform(stop, event, start=None) -> tuple[np.ndarray, np.ndarray]:
    """R cox.zph's transform 'km': (times, 1 - S(t-)) from a KM of all patients pooled."""
    kmf = KaplanMeierFitter().fit(np.asarray(stop, float), np.asarray(event, bool),
                                  entry=None if start is None else np.asarray(start, float))
    t = kmf.survival_function_.index.to_numpy(dtype=float)
    s = kmf.survival_function_.iloc[:, 0].to_numpy(dtype=float)
    return t, s


def zph_test(stop, event, X, beta, terms: dict[str, list[int]] | None = None, strata=None, start=None,
             ties="efron") -> list[dict]:
    """cox.zph's table: one row per term and GLOBAL with chisq, df, p."""
    stop = np.asarray(stop, dtype=float)
    event = np.asarray(event, dtype=bool)
    X = np.asarray(X, dtype=float).reshape(len(stop), -1)
    p = X.shape[1]
    terms = terms or {f"x{j}": [j] for j in range(p)}
    m = event_time_moments(stop, event, X, X @ np.asarray(beta, float), strata, start, ties)
    km_t, km_s = km_transform(stop, event, start)
    # S(t-) = S at the last KM time strictly before t
    idx = np.searchsorted(km_t, m["time"], side="left") - 1
    g = 1 - np.where(idx >= 0, km_s[np.maximum(idx, 0)], 1.0)
    g = g - np.sum(g * m["deaths"]) / m["deaths"].sum()  # centred over deaths, as R's mean(ttimes[event])
    V = m["V"]
    info = np.zeros((2 * p, 2 * p))
    info[:p, :p] = V.sum(axis=0)
    info[:p, p:] = info[p:, :p] = np.einsum("t,tij->ij", g, V)
    info[p:, p:] = np.einsum("t,tij->ij", g * g, V)
    ug = (g[:, None] * m["U"]).sum(axis=0)
    rows = []
    for name, cols in [*terms.items(), ("GLOBAL", list(range(p)))]:
        kk = list(range(p)) + [p + c for c in cols]
        u = np.concatenate([np.zeros(p), ug[cols]])
        try:
            stat = float(np.linalg.solve(info[np.ix_(kk, kk)], u) @ u)
        except np.linalg.LinAlgError:
            stat = math.nan
        rows.append({"term": name, "chisq": stat, "df": len(cols),
                     "p": float(chi2.sf(stat, len(cols))) if np.isfinite(stat) else math.nan})
    return rows
