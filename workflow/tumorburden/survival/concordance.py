"""Discrimination of a risk score: Harrell's and Uno's C, seeded bootstrap CIs, td-AUC.

The risk score is the feature itself (higher = higher risk). Point estimates come from the
libraries: Harrell's C from lifelines' ``concordance_index`` (given the negated score, as it
scores predicted survival), equal to R's ``concordance(..., reverse = TRUE)``; Uno's C from
scikit-survival's ``concordance_index_ipcw`` with the censoring distribution estimated on the same
patients; time-dependent AUC from ``cumulative_dynamic_auc``.

Bootstrap: a replicate resamples patients with replacement, i.e. gives patient i a count w_i.
Both C's are ratios of sums over comparable pairs, so a replicate's C is
(w' A w) / (w' B w) with A = comparable and concordant pairs (ties in the score 1/2), B =
comparable pairs, fixed n x n matrices; for Uno's C the pair weight 1 / G(T_i)^2 comes from the
censoring Kaplan-Meier of the replicate, computed with the same counts. All replicates are then a
few matrix products (``bootstrap_concordance``), identical to recomputing each resample with the
libraries (tests check that) and about two orders of magnitude faster (benchmarks/).
Pairs follow scikit-survival and R: i and j are comparable when i has the event and T_i < T_j,
or T_i = T_j and j is censored; Uno's C also needs T_i < tau. The CI is the 2.5/97.5 percentile of
the replicates; replicates where a C is undefined (no comparable pair, censoring survival 0) are
skipped for that C and counted.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
from lifelines.utils import concordance_index
from sksurv.metrics import concordance_index_ipcw, cumulative_dynamic_auc

MAX_VECTORISED_N = 4000  # n x n pair matrices above this would use too much memory: loop instead


def _surv(time, event):
    y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = np.asarray(event, dtype=bool), np.asarray(time, dtype=float)
    return y


def harrell_c(time, event, risk) -> float:
    try:
        return float(concordance_index(time, -np.asarray(risk, dtype=float), event))
    except ZeroDivisionError:  # no admissible pair
        return math.nan


def uno_c(time, event, risk, tau: float | None = None) -> tuple[float, str | None]:
    y = _surv(time, event)
    try:
        return float(concordance_index_ipcw(y, y, np.asarray(risk, dtype=float), tau=tau)[0]), None
    except (ValueError, ZeroDivisionError) as exc:
        return math.nan, str(exc).splitlines()[0]


def row_seed(seed: int, *key: str) -> np.random.Generator:
    """A generator per result row, so a row does not change when other rows are added."""
    return np.random.default_rng([int(seed), zlib.crc32("|".join(key).encode())])


def bootstrap_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) resampling counts: row b says how often each patient is in replicate b."""
    idx = rng.integers(0, n, size=(int(n_boot), n))
    counts = np.zeros((int(n_boot), n))
    np.add.at(counts, (np.repeat(np.arange(int(n_boot)), n), idx.ravel()), 1.0)
    return counts


def _pairs(time, event, risk):
    """A (concordant + ties/2 among comparable) and B (comparable) as n x n float matrices."""
    ti, tj = time[:, None], time[None, :]
    comparable = event[:, None] & ((ti < tj) | ((ti == tj) & ~event[None, :]))
    ri, rj = risk[:, None], risk[None, :]
    score = np.where(ri > rj, 1.0, np.where(ri == rj, 0.5, 0.0))
    return comparable * score, comparable.astype(float)


def _censoring_survival(time, event, W):
    """Per replicate, the censoring Kaplan-Meier G at each patient's own time (right-continuous)."""
    ut, inv = np.unique(time, return_inverse=True)
    K = len(ut)
    at_risk_ind = (time[:, None] >= ut[None, :]).astype(float)            # n x K
    cens_ind = np.zeros((len(time), K))
    cens_ind[np.arange(len(time)), inv] = (~event).astype(float)
    # as scikit-survival: an event at t leaves the risk set before a censoring at t
    event_ind = np.zeros((len(time), K))
    event_ind[np.arange(len(time)), inv] = event.astype(float)
    at_risk = W @ (at_risk_ind - event_ind)
    cens = W @ cens_ind
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(at_risk > 0, 1.0 - cens / at_risk, 1.0)
    G = np.cumprod(factor, axis=1)
    return G[:, inv]


def bootstrap_concordance(time, event, risks: dict[str, np.ndarray], W: np.ndarray,
                          tau: float | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{feature: {'harrell': (B,), 'uno': (B,)}} C of every replicate (rows of W), NaN if undefined."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    out = {}
    G = _censoring_survival(time, event, W)
    with np.errstate(divide="ignore", invalid="ignore"):
        omega = np.where(event[None, :] & (G > 0), 1.0 / G**2, 0.0)
    uno_undefined = (event[None, :] & (G <= 0) & (W > 0)).any(axis=1)
    in_tau = np.ones(len(time), bool) if tau is None else time < tau
    for name, risk in risks.items():
        A, B = _pairs(time, event, np.asarray(risk, dtype=float))
        WA, WB = W @ A.T, W @ B.T  # (B, n): sum_j w_j A_ij
        with np.errstate(divide="ignore", invalid="ignore"):
            harrell = (W * WA).sum(axis=1) / (W * WB).sum(axis=1)
            wt = W * omega * in_tau[None, :]
            uno = (wt * WA).sum(axis=1) / (wt * WB).sum(axis=1)
        uno[uno_undefined] = np.nan
        out[name] = {"harrell": harrell, "uno": uno}
    return out


def bootstrap_concordance_loop(time, event, risks: dict, W: np.ndarray, tau=None) -> dict:
    """The same replicates, each resample recomputed with lifelines / scikit-survival (slow)."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    out = {k: {"harrell": np.full(len(W), np.nan), "uno": np.full(len(W), np.nan)} for k in risks}
    for b, w in enumerate(W):
        idx = np.repeat(np.arange(len(time)), w.astype(int))
        for name, risk in risks.items():
            r = np.asarray(risk, dtype=float)[idx]
            out[name]["harrell"][b] = harrell_c(time[idx], event[idx], r)
            out[name]["uno"][b] = uno_c(time[idx], event[idx], r, tau)[0]
    return out


def percentile_ci(values, alpha: float = 0.05) -> tuple[float, float, int]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return math.nan, math.nan, len(v)
    lo, hi = np.percentile(v, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi), len(v)


def replicates(time, event, risks: dict, n_boot: int, rng: np.random.Generator, tau=None) -> dict:
    W = bootstrap_counts(len(time), n_boot, rng)
    if len(time) > MAX_VECTORISED_N:
        return bootstrap_concordance_loop(time, event, risks, W, tau)
    return bootstrap_concordance(time, event, risks, W, tau)


def concordance_with_ci(time, event, risk, n_boot: int, rng: np.random.Generator,
                        tau: float | None = None, alpha: float = 0.05) -> dict:
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    risk = np.asarray(risk, dtype=float)
    c = harrell_c(time, event, risk)
    cu, uno_reason = uno_c(time, event, risk, tau)
    reps = replicates(time, event, {"x": risk}, n_boot, rng, tau)["x"] if n_boot else None
    lo, hi, nb = percentile_ci(reps["harrell"], alpha) if n_boot else (math.nan, math.nan, 0)
    ulo, uhi, nbu = percentile_ci(reps["uno"], alpha) if n_boot else (math.nan, math.nan, 0)
    return {"c_index": c, "c_index_lower": lo, "c_index_upper": hi, "c_index_uno": cu,
            "c_index_uno_lower": ulo, "c_index_uno_upper": uhi, "bootstrap_used": nb,
            "bootstrap_used_uno": nbu, "c_index_uno_reason": uno_reason}


def c_difference(time, event, risk_a, risk_b, n_boot: int, rng: np.random.Generator, tau=None,
                 alpha: float = 0.05) -> list[dict]:
    """C(a) - C(b), Harrell and Uno, with a paired bootstrap CI (the same resamples for both)."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    a, b = np.asarray(risk_a, float), np.asarray(risk_b, float)
    point = {"harrell": harrell_c(time, event, a) - harrell_c(time, event, b),
             "uno": uno_c(time, event, a, tau)[0] - uno_c(time, event, b, tau)[0]}
    reps = replicates(time, event, {"a": a, "b": b}, n_boot, rng, tau) if n_boot else None
    rows = []
    for measure in ("harrell", "uno"):
        if reps is not None:
            lo, hi, used = percentile_ci(reps["a"][measure] - reps["b"][measure], alpha)
        else:
            lo, hi, used = math.nan, math.nan, 0
        rows.append({"measure": measure, "difference": point[measure], "lower": lo, "upper": hi,
                     "bootstrap_used": used})
    return rows


def td_auc(time, event, risk, times) -> list[dict]:
    """Cumulative/dynamic AUC at each of ``times`` (scikit-survival); NaN with a reason where a time
    is outside the follow-up (no event before it or nobody left after it)."""
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    y = _surv(time, event)
    rows = []
    for t in times:
        try:
            auc, _ = cumulative_dynamic_auc(y, y, np.asarray(risk, float), [float(t)])
            rows.append({"time_days": float(t), "auc": float(auc[0]), "status": "ok"})
        except ValueError as exc:
            rows.append({"time_days": float(t), "auc": math.nan,
                         "status": f"not computed: {str(exc).splitlines()[0][:120]}"})
    return rows
