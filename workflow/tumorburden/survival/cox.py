"""Cox proportional-hazards models that never crash a run: a failure is a 'not fitted' row.

Fitting: lifelines' ``CoxPHFitter`` (Efron ties, R's default) with a tight convergence tolerance
so coefficients match R's ``coxph`` to about 6 significant digits; ``CoxTimeVaryingFitter`` for
counting-process (start, stop] data. Breslow ties (``ties="breslow"``): scikit-survival's
``CoxPHSurvivalAnalysis`` without strata; with strata, which scikit-survival lacks, Newton-Raphson
on the partial likelihood (``partial_likelihood.fit_newton``).
Beside every model, as R's ``summary(coxph)`` and ``cox.zph`` print them: the global
likelihood-ratio, Wald and score (log-rank) tests, and the proportional-hazards test per term
and global.

Covariates: numeric columns enter linearly; a text column (e.g. sex) becomes indicator columns
``<name>[<level>]`` against its first level in sorted order, tested together in cox.zph as R
does for a factor. Patients missing any model column are left out (complete cases) and counted
in ``n_dropped``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter, CoxTimeVaryingFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from scipy.stats import chi2, norm

from tumorburden.survival import partial_likelihood as pl

FIT_OPTIONS = {"precision": 1e-9, "max_steps": 200}
TIES = ("efron", "breslow")
MAX_ABS_COEF = 15.0  # |log HR| beyond this (HR > 3 million per unit) means separation, not an estimate

_NAN_TESTS = {k: math.nan for k in ("coef", "se", "wald_p", "lr_p", "score_p", "wald_chisq", "lr_chisq",
                                    "score_chisq")}


class NotFitted(Exception):
    """A model that cannot be fitted; the message is the reason shown in the table."""


def design(df: pd.DataFrame, covariates: list[str]) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Numeric design matrix and term -> columns (indicators for text covariates)."""
    cols, terms = {}, {}
    for c in covariates:
        s = df[c]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            cols[c] = s.astype(float)
            terms[c] = [c]
        else:
            levels = sorted(s.dropna().astype(str).unique())
            names = []
            for lev in levels[1:]:
                name = f"{c}[{lev}]"
                cols[name] = (s.astype(str) == lev).astype(float).where(s.notna())
                names.append(name)
            terms[c] = names
    return pd.DataFrame(cols, index=df.index), terms


def _check_outcome(time, event, start=None) -> None:
    if np.any(~np.isfinite(time)):
        raise NotFitted("missing or non-finite time")
    if np.any(time < 0):
        raise NotFitted("negative time")
    if not np.isin(event, [0, 1]).all():
        raise NotFitted("event code other than 0/1")
    if start is not None and np.any(np.asarray(start) >= np.asarray(time)):
        raise NotFitted("an interval with start >= stop")


def fit_cox(df: pd.DataFrame, duration_col: str, event_col: str, covariates: list[str],
            strata: list[str] | str | None = None, ties: str = "efron", alpha: float = 0.05,
            min_patients: int = 10, min_events: int = 3, start_col: str | None = None,
            id_col: str | None = None) -> tuple[list[dict], list[dict]]:
    """(term rows, zph rows) of one model. Rows carry n, events, n_dropped and status."""
    if ties not in TIES:
        raise ValueError(f"unknown ties method {ties!r} (choose efron or breslow)")
    strata = [strata] if isinstance(strata, str) else list(strata or [])
    needed = [duration_col, event_col, *covariates, *strata, *([start_col] if start_col else [])]
    missing_cols = [c for c in needed if c not in df.columns]
    if missing_cols:
        raise ValueError(f"column(s) {', '.join(missing_cols)} not in the table (have: {', '.join(map(str, df.columns))})")
    complete = df[needed].notna().all(axis=1)
    data = df[complete]
    units = data[id_col].nunique() if id_col else len(data)
    dropped = (df[id_col].nunique() - units) if id_col else int((~complete).sum())
    n, events = int(units), int(pd.to_numeric(data[event_col], errors="coerce").fillna(0).sum())
    X, term_cols = design(data, covariates)
    base = {"n": n, "events": events, "n_dropped": int(dropped), "ties": ties,
            "strata": ",".join(strata)}

    def failed(reason: str):
        return ([{"term": t, "hr": math.nan, "hr_lower": math.nan, "hr_upper": math.nan, "p": math.nan,
                  **_NAN_TESTS, "df": len(X.columns), **base, **ph_flag(math.nan, alpha),
                  "status": f"not fitted: {reason}"}
                 for t in (list(X.columns) or covariates)],
                [{"term": t, "chisq": math.nan, "df": len(c), "p": math.nan, **base,
                  "status": f"not tested: {reason}"} for t, c in [*term_cols.items(), ("GLOBAL", [])]])

    try:
        time = pd.to_numeric(data[duration_col], errors="coerce").to_numpy(dtype=float)
        event = pd.to_numeric(data[event_col], errors="coerce").to_numpy(dtype=float)
        start = None if start_col is None else data[start_col].to_numpy(dtype=float)
        _check_outcome(time, event, start)
        if n < min_patients:
            raise NotFitted(f"too few patients ({n} < {min_patients})")
        if events < min_events:
            raise NotFitted("no events" if events == 0 else f"too few events ({events} < {min_events})")
        constant = [c for c in X.columns if np.nanstd(X[c].to_numpy()) == 0]
        if constant:
            raise NotFitted(f"constant covariate {', '.join(constant)}")
        if np.linalg.matrix_rank(X.to_numpy() - X.to_numpy().mean(axis=0)) < X.shape[1]:
            raise NotFitted("collinear covariates")
        strat = (data[strata].astype(str).agg("|".join, axis=1).to_numpy() if strata else None)
        beta, cov, ll, ll0 = _fit(data, X, time, event.astype(bool), start, strat, strata, ties, id_col,
                                  duration_col, event_col, start_col)
    except NotFitted as exc:
        return failed(str(exc))
    se = np.sqrt(np.diag(cov))
    if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(se))) or np.any(np.abs(beta) > MAX_ABS_COEF):
        return failed("perfect separation (a covariate predicts the events exactly; coefficient unbounded)")
    p = len(beta)
    lr = 2 * (ll - ll0)
    wald = float(np.linalg.solve(cov, beta) @ beta)
    Xv = X.to_numpy()
    try:
        sc, _, _ = pl.score_test(time, event.astype(bool), Xv, strat, start, ties)
    except np.linalg.LinAlgError:
        sc = math.nan
    q = float(norm.ppf(1 - alpha / 2))
    tests = {"wald_chisq": wald, "wald_p": float(chi2.sf(wald, p)), "lr_chisq": lr, "lr_p": float(chi2.sf(lr, p)),
             "score_chisq": sc, "score_p": float(chi2.sf(sc, p)) if np.isfinite(sc) else math.nan, "df": p}
    # Peduzzi et al. 1995: fewer than ~10 events per coefficient gives biased, unstable estimates
    note = (f"{events} events for {p} coefficient(s): fewer than 10 per coefficient, estimates unstable"
            if events < 10 * p else "")
    rows = []
    for j, t in enumerate(X.columns):
        z = beta[j] / se[j]
        rows.append({"term": t, "hr": math.exp(beta[j]), "hr_lower": math.exp(beta[j] - q * se[j]),
                     "hr_upper": math.exp(beta[j] + q * se[j]), "p": float(2 * norm.sf(abs(z))),
                     "coef": float(beta[j]), "se": float(se[j]), **tests, **base, "status": "ok", "note": note})
    col_index = {c: i for i, c in enumerate(X.columns)}
    zph = pl.zph_test(time, event.astype(bool), Xv, beta,
                      {t: [col_index[c] for c in cs] for t, cs in term_cols.items()}, strat, start, ties)
    zph_rows = [{**r, **base, "status": "ok" if np.isfinite(r["chisq"]) else "not tested: singular information"}
                for r in zph]
    flag = ph_flag(next((z["p"] for z in zph_rows if z["term"] == "GLOBAL"), math.nan), alpha)
    return [{**r, **flag} for r in rows], zph_rows


def ph_flag(global_p: float, alpha: float = 0.05) -> dict:
    """The model's cox.zph GLOBAL p and whether it is below alpha: hazards not proportional, so
    the HR averages an effect that changes over time (read RMST or a time-split model too).
    None where the test could not be done."""
    tested = global_p is not None and np.isfinite(global_p)
    return {"zph_global_p": float(global_p) if tested else math.nan,
            "nonproportional": bool(global_p < alpha) if tested else None}


def _fit(data, X, time, event, start, strat, strata, ties, id_col, duration_col, event_col, start_col):
    """beta, covariance, loglik at beta, loglik at 0."""
    Xv = X.to_numpy()
    ll0 = pl.loglik(time, event, Xv, np.zeros(X.shape[1]), strat, start, ties)
    if ties == "breslow":
        try:
            if strat is None and start is None:
                from sksurv.linear_model import CoxPHSurvivalAnalysis

                y = np.empty(len(time), dtype=[("event", bool), ("time", float)])
                y["event"], y["time"] = event, time
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    model = CoxPHSurvivalAnalysis(ties="breslow", n_iter=200, tol=1e-12).fit(Xv, y)
                beta = np.asarray(model.coef_, dtype=float)
                m = pl.event_time_moments(time, event, Xv, Xv @ beta, None, None, "breslow")
                cov = np.linalg.inv(m["V"].sum(axis=0))
                return beta, cov, float(m["loglik"].sum()), ll0
            beta, cov, ll, ll0, _ = pl.fit_newton(time, event, Xv, strat, start, "breslow")
            return beta, cov, ll, ll0
        except (np.linalg.LinAlgError, ValueError, RuntimeWarning, UserWarning) as exc:
            raise NotFitted(f"no convergence ({str(exc).splitlines()[0][:100]})") from None
    frame = X.assign(**{"_time": time, "_event": event.astype(int)})
    if strata:
        frame["_stratum"] = strat
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            if start is None:
                cph = CoxPHFitter().fit(frame, duration_col="_time", event_col="_event",
                                        strata=["_stratum"] if strata else None, fit_options=FIT_OPTIONS)
            else:
                frame["_start"] = start
                cph = CoxTimeVaryingFitter(strata=["_stratum"] if strata else None).fit(
                    frame, event_col="_event", start_col="_start", stop_col="_time", fit_options=FIT_OPTIONS)
    except (ConvergenceError, np.linalg.LinAlgError, ValueError, ZeroDivisionError) as exc:
        raise NotFitted(f"no convergence ({str(exc).splitlines()[0][:100]})") from None
    bad = [w for w in caught if issubclass(w.category, ConvergenceWarning)
           and ("converge" in str(w.message).lower() or "separation" in str(w.message).lower())]
    if bad:
        raise NotFitted("perfect separation or no convergence "
                        f"({str(bad[0].message).splitlines()[0][:100]})")
    names = list(cph.params_.index)
    order = [names.index(c) for c in X.columns]
    beta = cph.params_.to_numpy(dtype=float)[order]
    cov = np.asarray(cph.variance_matrix_, dtype=float)[np.ix_(order, order)]  # unlabelled in CoxTimeVaryingFitter
    return beta, cov, float(cph.log_likelihood_), ll0
