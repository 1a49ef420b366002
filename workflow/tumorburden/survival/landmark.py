"""Dynamic prediction by a landmark super-model (van Houwelingen 2007; Putter & van Houwelingen's
dynpred): the probability of surviving the next ``window_days`` given everything the scans have
shown so far, updated at every scan.

Landmark data (dynpred's ``cutLM``). At each landmark s of the grid, the patients still at risk
(endpoint time > s) whose scan history has started (a baseline scan on or before s); their
covariates are those of the **latest scan on or before s** (scans from the baseline scan on;
nothing seen after s is used), plus any clinical.tsv column named; follow-up is cut at s + w
(an event after s + w is censored there). Stacked over the grid, one row per patient and
landmark, time kept on the study's scale with entry at s.

Covariates known at a scan (``SCAN_COVARIATES``): ``log_burden`` = ln(total volume + offset),
``log_burden_change`` = its change since the baseline scan, ``log_burden_slope`` = its change
per month between the latest scan and the one before it (0 while only the baseline scan is
known: no change seen yet), ``new_lesion`` = 1 once any scan since baseline showed a new lesion.

Super-model: one Cox model on the stacked rows with every covariate x entered as x, x f(s) and
x f(s)^2, f(s) = (s - s0) / (sL - s0); the baseline hazard either stratified by landmark
(``baseline: strata``) or one hazard on the study time scale with f(s) and f(s)^2 as terms
(``baseline: smooth``, dynpred's "ipl*"). Efron ties; standard errors robust to a patient's
repeated rows (sandwich over patients, as R's ``coxph(... + cluster(id))``). Coefficients come
from lifelines' ``CoxPHFitter`` (``entry_col`` for the delayed entry at s); lifelines' own robust
variance does not account for delayed entry (on pbcseq 3-19 % off R's), so the score residuals
of the counting-process Efron likelihood are summed per patient here (R's ``coxph`` robust SEs to
~1e-8, tests/survival/test_landmark.py).

Prediction at landmark s with covariates x(s): S(s + u | s) = exp(-[H0(s + u) - H0(s)] exp(lp))
for u <= w, H0 the Efron-corrected (survfit.coxph) baseline cumulative hazard; with strata the
hazard of the grid landmark s* <= s nearest to s, on its own time axis from s*. Outside
[s0, sL] no prediction (the model has seen no data there).

Baseline-only Cox model (the reference): the same covariates frozen at the baseline scan (those
that are constant there, e.g. the slope, drop out), fitted from time 0 on every patient;
prediction at s is the conditional survival S(s + u | x0) / S(s | x0).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from scipy.linalg import LinAlgWarning
from scipy.stats import norm

from tumorburden.baseline import baseline_scans
from tumorburden.study import LANDMARK_SCAN_COVARIATES
from tumorburden.survival import cox

SCAN_COVARIATES = LANDMARK_SCAN_COVARIATES
LANDMARK_MODEL = "landmark super-model"
BASELINE_MODEL = "baseline Cox"
BASELINES = ("strata", "smooth")
DAYS_PER_MONTH = 30.4375


class NotFitted(ValueError):
    """A model that cannot be fitted; the message is the reason the table shows."""


# --- the scan history and the landmark data -------------------------------------------------------


def scan_history(burden: pd.DataFrame, offset_ml: float, days_per_month: float = DAYS_PER_MONTH) -> pd.DataFrame:
    """Per scan from each patient's baseline scan on: patient_id, scan_id, days and the
    SCAN_COVARIATES as known at that scan. Scans before the baseline scan are not used; of two
    scans on one day the one with the greater scan_id (the baseline rule's order) stands."""
    base = baseline_scans(burden)
    b = burden[["patient_id", "scan_id", "days", "total_volume_ml", "n_new_lesions"]].copy()
    b = b[b["patient_id"].isin(base.index)]
    b = b.sort_values(["patient_id", "days", "scan_id"], kind="mergesort")
    base_day = b.set_index("scan_id")["days"].reindex(base.to_numpy())
    b = b[b["days"] >= b["patient_id"].map(dict(zip(base.index, base_day.to_numpy())))]
    b = b.drop_duplicates(["patient_id", "days"], keep="last").reset_index(drop=True)
    lb = np.log(b["total_volume_ml"].astype(float) + float(offset_ml))
    g = b.groupby("patient_id", sort=False)
    b["log_burden"] = lb
    b["log_burden_change"] = lb - lb.groupby(b["patient_id"]).transform("first")
    prev_lb, prev_day = lb.groupby(b["patient_id"]).shift(1), g["days"].shift(1)
    b["log_burden_slope"] = ((lb - prev_lb) / ((b["days"] - prev_day) / float(days_per_month))).fillna(0.0)
    new = (b["n_new_lesions"].fillna(0).astype(float) > 0).astype(float)
    b["new_lesion"] = new.groupby(b["patient_id"]).cummax()
    return b[["patient_id", "scan_id", "days", *SCAN_COVARIATES]]


def known_at(history: pd.DataFrame, patients: pd.Series, s: float) -> pd.DataFrame:
    """The latest scan on or before day s of each of ``patients`` (those without one left out)."""
    h = history[history["patient_id"].isin(set(patients)) & (history["days"] <= s)]
    return h.groupby("patient_id", sort=True).tail(1).rename(columns={"days": "scan_days"})


def landmark_data(outcome: pd.DataFrame, history: pd.DataFrame, landmarks, window: float) -> pd.DataFrame:
    """Stacked landmark data. ``outcome``: patient_id, time, event (+ any covariate columns,
    carried along). One row per landmark s and patient with time > s and a scan on or before s:
    landmark_days, scan_id and scan_days of the latest scan, stop = min(time, s + window),
    status = event if time <= s + window else 0, the SCAN_COVARIATES at that scan."""
    parts = []
    for s in sorted(float(x) for x in landmarks):
        at_risk = outcome[outcome["time"] > s]
        seen = known_at(history, at_risk["patient_id"], s)
        d = at_risk.merge(seen, on="patient_id", how="inner")
        d["landmark_days"] = s
        d["stop"] = np.minimum(d["time"].astype(float), s + float(window))
        d["status"] = np.where(d["time"].astype(float) <= s + float(window), d["event"], 0).astype(int)
        parts.append(d)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True).sort_values(["landmark_days", "patient_id"], kind="mergesort") \
        .reset_index(drop=True)


def landmark_terms(columns: list[str]) -> list[str]:
    """Each covariate column x as x, x:f1, x:f2 (R's order of coefficient names)."""
    return [*columns, *[f"{c}:f1" for c in columns], *[f"{c}:f2" for c in columns]]


def landmark_design(data: pd.DataFrame, covariates: list[str], s0: float, sL: float, baseline: str,
                    reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Design matrix of the super-model: covariates (text ones as indicators, levels from
    ``reference`` when given) times (1, f, f^2), and f, f^2 themselves with a smooth baseline."""
    ref = data if reference is None else reference
    X, _ = cox.design(pd.concat([ref[covariates], data[covariates]], ignore_index=True), covariates)
    X = X.iloc[len(ref):].set_axis(data.index)
    f1 = (data["landmark_days"].astype(float) - s0) / (sL - s0) if sL > s0 else 0.0 * data["landmark_days"]
    out = {c: X[c] for c in X.columns}
    out.update({f"{c}:f1": X[c] * f1 for c in X.columns})
    out.update({f"{c}:f2": X[c] * f1**2 for c in X.columns})
    if baseline == "smooth":
        out["f1"], out["f2"] = f1, f1**2
    return pd.DataFrame(out, index=data.index)


# --- Cox pieces lifelines does not give for counting-process data --------------------------------


def _death_groups(entry, stop, status, strata):
    """Yield (stratum rows, death time, tied-death rows, at-risk rows) per stratum and death time."""
    codes, keys = pd.factorize(pd.Series(list(strata), dtype=object))
    for code, key in enumerate(keys):
        rows = np.flatnonzero(codes == code)
        for u in np.unique(stop[rows][status[rows] == 1]):
            risk = rows[(entry[rows] < u) & (stop[rows] >= u)]
            dead = risk[(stop[risk] == u) & (status[risk] == 1)]
            yield key, u, dead, risk


def efron_score_residuals(X, entry, stop, status, strata, beta) -> np.ndarray:
    """Per-row score residuals of the Efron partial likelihood with delayed entry: R's
    ``residuals(coxph, type = "score")``. They sum to the score vector (0 at the maximum)."""
    n, p = X.shape
    eta = X @ beta
    r = np.exp(eta - eta.max())  # a common factor cancels in every ratio below
    U = np.zeros((n, p))
    for _, _, dead, risk in _death_groups(entry, stop, status, strata):
        d = len(dead)
        s0, s1 = r[risk].sum(), r[risk] @ X[risk]
        t0, t1 = r[dead].sum(), r[dead] @ X[dead]
        k = np.arange(d) / d
        S0 = s0 - k * t0
        xbar = (s1[None, :] - k[:, None] * t1[None, :]) / S0[:, None]
        U[dead] += X[dead] - xbar.mean(axis=0)
        # compensator: row i at risk carries r_i (x_i - xbar_k) / S0_k in each of the d steps,
        # a tied death only (1 - k/d) of it
        inv = 1.0 / S0
        a = inv.sum()
        b = inv @ xbar
        U[risk] -= r[risk, None] * (a * X[risk] - b[None, :])
        a_t = ((1 - k) * inv).sum()
        b_t = ((1 - k) * inv) @ xbar
        U[dead] += r[dead, None] * (a * X[dead] - b[None, :]) - r[dead, None] * (a_t * X[dead] - b_t[None, :])
    return U


def baseline_cumhaz(X, entry, stop, status, strata, beta) -> dict:
    """stratum -> (death times, cumulative hazard after each): survfit.coxph's Efron-corrected
    baseline (lp = X beta, not centred), with delayed entry."""
    r = np.exp(X @ beta)
    out: dict = {}
    for key, u, dead, risk in _death_groups(entry, stop, status, strata):
        d = len(dead)
        s0, t0 = r[risk].sum(), r[dead].sum()
        out.setdefault(key, ([], []))
        out[key][0].append(u)
        out[key][1].append(np.sum(1.0 / (s0 - np.arange(d) / d * t0)))
    return {k: (np.asarray(t), np.cumsum(h)) for k, (t, h) in out.items()}


def cumhaz_at(curve, t) -> np.ndarray:
    times, H = curve
    i = np.searchsorted(times, np.asarray(t, dtype=float), side="right")
    return np.where(i > 0, H[np.maximum(i - 1, 0)], 0.0)


# --- fitting -------------------------------------------------------------------------------------


def fit_cox_counting(X: pd.DataFrame, entry, stop, status, strata, cluster, alpha: float = 0.05) -> dict:
    """Cox model (Efron) on (entry, stop] rows with strata: lifelines' coefficients, naive SEs,
    robust SEs clustered on ``cluster`` (sandwich of per-patient summed score residuals), and the
    baseline cumulative hazard per stratum. Raises NotFitted with the reason."""
    entry, stop = np.asarray(entry, float), np.asarray(stop, float)
    status = np.asarray(status, int)
    strata = np.asarray(strata, dtype=object)
    if status.sum() == 0:
        raise NotFitted("no events")
    Xv = X.to_numpy(float)
    sd = Xv.std(axis=0)
    if (sd == 0).any():
        raise NotFitted(f"constant covariate {', '.join(X.columns[sd == 0])}")
    if np.linalg.matrix_rank(Xv - Xv.mean(axis=0)) < Xv.shape[1]:
        raise NotFitted("collinear covariates")
    frame = pd.DataFrame(Xv, columns=[f"x{j}" for j in range(Xv.shape[1])])
    frame = frame.assign(_entry=entry, _stop=stop, _status=status,
                         _stratum=pd.factorize(pd.Series(list(strata), dtype=object))[0])
    single = frame["_stratum"].nunique() == 1
    if single:
        frame = frame.drop(columns="_stratum")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", LinAlgWarning)
            cph = CoxPHFitter(strata=None if single else ["_stratum"]).fit(
                frame, "_stop", "_status", entry_col="_entry", fit_options=cox.FIT_OPTIONS)
    except (ConvergenceError, np.linalg.LinAlgError, ValueError) as exc:
        raise NotFitted(f"no convergence ({str(exc).splitlines()[0][:80]})") from None
    beta = cph.params_.to_numpy(float)
    if not np.all(np.isfinite(beta)) or np.abs(beta * sd).max() > cox.MAX_ABS_COEF:
        raise NotFitted(f"separation (|log HR| > {cox.MAX_ABS_COEF:g} per SD of a covariate)")
    naive = cph.variance_matrix_.to_numpy(float)
    # lifelines stops where the likelihood is flat but the coefficients still move at ~1e-5 (its
    # precision is on the step): one more Newton step on the same likelihood reaches R's precision
    beta = beta + naive @ efron_score_residuals(Xv, entry, stop, status, strata, beta).sum(axis=0)
    U = efron_score_residuals(Xv, entry, stop, status, strata, beta)
    by_patient = pd.DataFrame(U).groupby(np.asarray(cluster)).sum().to_numpy()
    D = by_patient @ naive
    robust = D.T @ D
    se, rse = np.sqrt(np.diag(naive)), np.sqrt(np.diag(robust))
    z = float(norm.ppf(1 - alpha / 2))
    terms = pd.DataFrame({"term": list(X.columns), "coef": beta, "se": se, "robust_se": rse,
                          "hr": np.exp(beta), "hr_lower": np.exp(beta - z * rse), "hr_upper": np.exp(beta + z * rse),
                          "p": 2 * norm.sf(np.abs(beta / rse))})
    return {"beta": beta, "terms": terms, "loglik": float(cph.log_likelihood_),
            "cumhaz": baseline_cumhaz(Xv, entry, stop, status, strata, beta)}


def fit_landmark(lm: pd.DataFrame, covariates: list[str], landmarks, baseline: str = "strata",
                 strata_cols: list[str] | None = None, alpha: float = 0.05) -> dict:
    """The super-model on stacked landmark data (``landmark_data``). ``strata_cols``: further
    baseline-hazard strata (the cohort in a pooled analysis)."""
    if baseline not in BASELINES:
        raise ValueError(f"survival settings: landmark_baseline {baseline!r} is not one of {', '.join(BASELINES)}")
    grid = sorted(float(s) for s in landmarks)
    s0, sL = grid[0], grid[-1]
    d = lm.dropna(subset=covariates).reset_index(drop=True)
    # a covariate that nobody at risk varies in (e.g. the new-lesion flag for PFS: a new lesion is
    # progression, so it is 0 for everyone still at risk) is left out and named
    dropped = [c for c in covariates if d[c].nunique(dropna=True) <= 1]
    covariates = [c for c in covariates if c not in dropped]
    if not covariates:
        raise NotFitted(f"every covariate is constant among the patients at risk ({', '.join(dropped)})")
    X = landmark_design(d, covariates, s0, sL, baseline)
    strata = _strata(d, (["landmark_days"] if baseline == "strata" else []) + list(strata_cols or []))
    fit = fit_cox_counting(X, d["landmark_days"], d["stop"], d["status"], strata, d["patient_id"], alpha)
    return {**fit, "kind": LANDMARK_MODEL, "covariates": covariates, "baseline": baseline, "s0": s0, "sL": sL,
            "grid": grid, "strata_cols": list(strata_cols or []), "reference": d, "n_rows": len(d), "dropped": dropped,
            "n_patients": int(d["patient_id"].nunique()), "events": int(d["status"].sum()),
            "n_dropped": len(lm) - len(d)}


def _strata(d: pd.DataFrame, cols: list[str]) -> np.ndarray:
    if not cols:
        return np.zeros(len(d), dtype=object)
    if len(cols) == 1:
        return d[cols[0]].to_numpy(dtype=object)
    keys = np.empty(len(d), dtype=object)
    keys[:] = list(zip(*[d[c].to_numpy() for c in cols]))
    return keys


def predict_landmark(fit: dict, rows: pd.DataFrame, horizons) -> np.ndarray:
    """(len(rows), len(horizons)) predicted S(s + u | s) for rows with landmark_days s (any value
    in [s0, sL]; NaN outside) and the covariates at s."""
    s = rows["landmark_days"].to_numpy(float)
    X = landmark_design(rows, fit["covariates"], fit["s0"], fit["sL"], fit["baseline"], fit["reference"])
    lp = X.to_numpy(float) @ fit["beta"]
    out = np.full((len(rows), len(horizons)), np.nan)
    grid = np.asarray(fit["grid"])
    for i in range(len(rows)):
        if not (fit["s0"] <= s[i] <= fit["sL"]) or not np.isfinite(lp[i]):
            continue
        extra = tuple(rows[c].iloc[i] for c in fit["strata_cols"])
        if fit["baseline"] == "strata":
            start = grid[np.searchsorted(grid, s[i], side="right") - 1]
            key = (start, *extra) if extra else start
            lo = start
        else:
            key = extra if len(extra) > 1 else (extra[0] if extra else 0)
            lo = s[i]
        curve = fit["cumhaz"].get(key)
        if curve is None:  # a stratum without deaths: no hazard in its window
            out[i] = 1.0
            continue
        h = cumhaz_at(curve, lo + np.asarray(horizons, float)) - cumhaz_at(curve, lo)
        out[i] = np.exp(-h * math.exp(lp[i]))
    return out


def fit_baseline_cox(outcome: pd.DataFrame, history: pd.DataFrame, covariates: list[str],
                     strata_cols: list[str] | None = None, alpha: float = 0.05) -> dict:
    """The same covariates frozen at the baseline scan, one Cox model from time 0 on everyone;
    covariates constant at baseline are left out (named in ``dropped``)."""
    first = history.groupby("patient_id", sort=True).head(1).rename(columns={"days": "scan_days"})
    d = outcome.merge(first, on="patient_id", how="inner").dropna(subset=covariates).reset_index(drop=True)
    X, _ = cox.design(d, covariates)
    constant = [c for c in X.columns if X[c].nunique() <= 1]
    X = X.drop(columns=constant)
    if X.shape[1] == 0:
        raise NotFitted("every covariate is constant at baseline")
    strata = _strata(d, list(strata_cols or []))
    fit = fit_cox_counting(X, np.zeros(len(d)) - 1.0, d["time"], d["event"], strata, d["patient_id"], alpha)
    return {**fit, "kind": BASELINE_MODEL, "covariates": covariates, "columns": list(X.columns),
            "dropped": constant, "reference": d, "strata_cols": list(strata_cols or []), "n_rows": len(d),
            "n_patients": len(d), "events": int(d["event"].sum()), "n_dropped": len(outcome) - len(d)}


def predict_baseline(fit: dict, patients: pd.DataFrame, landmarks, horizons) -> np.ndarray:
    """(len(patients), len(horizons)) S(s + u | x0) / S(s | x0) with s = landmarks (per row)."""
    ref = fit["reference"]
    X, _ = cox.design(pd.concat([ref[fit["covariates"]], patients[fit["covariates"]]], ignore_index=True),
                      fit["covariates"])
    X = X.iloc[len(ref):][fit["columns"]].to_numpy(float)
    lp = X @ fit["beta"]
    s = np.asarray(landmarks, float)
    out = np.full((len(patients), len(horizons)), np.nan)
    for i in range(len(patients)):
        extra = tuple(patients[c].iloc[i] for c in fit["strata_cols"])
        key = extra if len(extra) > 1 else (extra[0] if extra else 0)
        curve = fit["cumhaz"].get(key)
        if curve is None or not np.isfinite(lp[i]):
            continue
        h = cumhaz_at(curve, s[i] + np.asarray(horizons, float)) - cumhaz_at(curve, s[i])
        out[i] = np.exp(-h * math.exp(lp[i]))
    return out
