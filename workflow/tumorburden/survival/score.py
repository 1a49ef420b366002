"""Prediction error and discrimination at horizons, as ``riskRegression::Score`` computes them.

For predicted absolute risks F_i(t) = 1 - S(t | x_i) of one or more models at horizons t:

- **Brier score** (IPCW): mean over patients of w_i(t) (I(T_i <= t) - F_i(t))^2 with
  w_i = I(T_i <= t, event) / G(T_i-) + I(T_i > t) / G(t), patients censored by t weight 0, G the
  marginal Kaplan-Meier of the censoring times (riskRegression ``cens.model = "km"``; an event at
  the time of a censoring leaves the censoring risk set first, as in prodlim's reverse
  Kaplan-Meier).
- **IPA** (index of prediction accuracy, scaled Brier): 1 - Brier(model) / Brier(null model),
  the null model being the marginal Kaplan-Meier risk 1 - KM(t) given to every patient.
- **AUC(t)** (cumulative/dynamic, IPCW, Blanche et al. 2013): cases T_i <= t with the event
  weighted 1 / G(T_i-), controls T_j > t weighted 1 / G(t), risk ties count 1/2.

Standard errors: sd(IF) / sqrt(n) of the influence function of the estimator, including the
term for the estimated censoring curve (riskRegression's ``se.fit = TRUE, conservative = FALSE``);
CI estimate -+ z se clipped to [0, 1]; the predicted risks are taken as given.

Written here because neither library scores like R: scikit-survival's ``brier_score`` and
``cumulative_dynamic_auc`` weight cases by G(T_i) rather than G(T_i-) (on R's lung with a Cox
model: Brier 0.18033 vs R's 0.18029 at 180 days, AUC 0.68568 vs 0.68565) and give no standard
errors; lifelines has neither. The null model's Kaplan-Meier is
scikit-survival's; the censoring curve is counted here, as its influence function needs the
risk sets.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from lifelines.exceptions import ConvergenceWarning
from scipy.stats import norm
from sksurv.nonparametric import kaplan_meier_estimator

from tumorburden.survival import cox
from tumorburden.survival import partial_likelihood as pl
from tumorburden.tables import SCHEMAS

SCORE_COLUMNS = [c for c in SCHEMAS["score"] if c not in ("cohort", "endpoint")]
SCORE_CONTRAST_COLUMNS = [c for c in SCHEMAS["score_contrast"] if c not in ("cohort", "endpoint")]
NULL_MODEL = "null model"


class _Censoring:
    """The censoring Kaplan-Meier with what its influence function needs, on the unique times."""

    def __init__(self, time: np.ndarray, event: np.ndarray):
        self.n = len(time)
        self.times, own = np.unique(time, return_inverse=True)
        ending = np.bincount(own).astype(float)
        censored = np.bincount(own, weights=(event == 0).astype(float), minlength=len(self.times))
        at_risk = self.n - np.concatenate([[0.0], np.cumsum(ending)[:-1]])  # Y(u): time >= u
        # prodlim's reverse Kaplan-Meier: an event at u leaves the risk set before a censoring at u;
        # the influence function below, as riskRegression's, uses the whole risk set Y(u)
        self.surv = np.cumprod(1.0 - censored / np.maximum(at_risk - (ending - censored), 1.0))
        # H[m]: sum over the first m unique times of n dLambda_C(u) / Y(u), H[0] = 0
        self.H = np.concatenate([[0.0], np.cumsum(self.n * censored / at_risk**2)])
        pos = np.searchsorted(self.times, time)  # index of each patient's own time
        self.jump = np.where(event == 0, self.n / at_risk[pos], 0.0)
        self.pos = pos + 1  # 1-based: the integral up to and including T_k has pos_k terms

    def upto(self, t: float, lag: bool = False) -> int:
        """How many unique times are in [0, t] ([0, t) with lag)."""
        return int(np.searchsorted(self.times, t, side="left" if lag else "right"))

    def G(self, m) -> np.ndarray:
        m = np.asarray(m)
        return np.where(m > 0, self.surv[np.maximum(m - 1, 0)], 1.0)

    def term(self, R: np.ndarray, m: np.ndarray) -> np.ndarray:
        """For every patient k, (1/n) sum_i R_i int_0^{s_i} dM_C,k(u) / y(u), where s_i covers the
        first m_i unique times: the change in an IPCW mean sum_i R_i / n (R_i carrying 1/G(s_i))
        when patient k's weight in the censoring Kaplan-Meier moves."""
        K = len(self.times)
        A = np.bincount(m, weights=R, minlength=K + 1)              # sum of R_i with m_i = j
        tail = np.cumsum(A[::-1])[::-1]                             # sum over m_i >= j
        below = np.concatenate([[0.0], np.cumsum(A * self.H)])[:-1]  # sum over m_i < j of R_i H[m_i]
        p = self.pos
        return (self.jump * tail[p] - self.H[p] * tail[p] - below[p]) / self.n


def event_probability(time, event, times) -> np.ndarray:
    """1 - KM(t) of these patients at each of ``times`` (scikit-survival's Kaplan-Meier)."""
    grid, surv = kaplan_meier_estimator(np.asarray(event, dtype=bool), np.asarray(time, dtype=float))
    i = np.searchsorted(grid, np.asarray(times, dtype=float), side="right") - 1
    return np.where(i >= 0, 1.0 - surv[np.maximum(i, 0)], 0.0)


def censoring_survival(time, event, at, lag: bool = False) -> np.ndarray:
    """Marginal Kaplan-Meier G of the censoring times at ``at`` (G(at-) when ``lag``)."""
    time, event = _outcome(time, event)
    c = _Censoring(time, event)
    return c.G([c.upto(float(t), lag) for t in np.atleast_1d(at)])


def _outcome(time, event):
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=float)
    if len(time) != len(event):
        raise ValueError(f"time ({len(time)}) and event ({len(event)}) differ in length")
    if not np.all(np.isfinite(time)) or (time < 0).any():
        raise ValueError("time has missing, negative or non-finite values")
    if not np.isin(event, [0, 1]).all():
        raise ValueError("event has codes other than 0/1 (1 = event, 0 = censored)")
    return time, event.astype(int)


def _risk_matrix(name, risk, n, k) -> np.ndarray:
    r = np.asarray(risk, dtype=float)
    if r.ndim == 1:
        r = np.repeat(r[:, None], k, axis=1)
    if r.shape != (n, k):
        raise ValueError(f"model {name!r}: predicted risks have shape {r.shape}, expected ({n}, {k}) "
                         "(patients x horizons)")
    if not np.all(np.isfinite(r)) or (r < 0).any() or (r > 1).any():
        raise ValueError(f"model {name!r}: predicted risks must be probabilities in [0, 1]")
    return r


def _brier(c: _Censoring, time, event, t, risk):
    """(Brier, its influence function per patient)."""
    case = (time <= t) & (event == 1)
    control = time > t
    m_case = c.pos - 1  # G(T_i-): the unique times before T_i
    m_t = c.upto(t)
    R = np.where(case, (1 - risk) ** 2 / c.G(m_case), 0.0) + np.where(control, risk**2 / c.G(m_t), 0.0)
    brier = R.mean()
    m = np.where(case, m_case, m_t)
    return brier, R - brier + c.term(R, m)


def _auc(c: _Censoring, time, event, t, risk):
    """(AUC, its influence function per patient)."""
    n = len(time)
    case = (time <= t) & (event == 1)
    control = time > t
    m_case = c.pos - 1
    m_t = c.upto(t)
    w = np.where(case, 1.0 / c.G(m_case), 0.0)
    v = np.where(control, 1.0 / c.G(m_t), 0.0)
    # for each patient: weighted controls it outranks and weighted cases that outrank it (ties 1/2)
    order = np.argsort(risk, kind="mergesort")
    r_sorted = risk[order]
    lo = np.searchsorted(r_sorted, risk, side="left")
    hi = np.searchsorted(r_sorted, risk, side="right")
    cv = np.concatenate([[0.0], np.cumsum(v[order])])
    cw = np.concatenate([[0.0], np.cumsum(w[order])])
    beats = cv[lo] + 0.5 * (cv[hi] - cv[lo])                   # sum_j v_j K(r_i, r_j)
    beaten = (cw[-1] - cw[hi]) + 0.5 * (cw[hi] - cw[lo])       # sum_i w_i K(r_i, r_j)
    W, V = w.sum(), v.sum()
    nu = (w * beats).sum() / n**2
    mu = W * V / n**2
    auc = nu / mu
    m = np.where(case, m_case, m_t)
    if_nu = (w * beats + v * beaten) / n - 2 * nu + c.term(np.where(case, w * beats, v * beaten) / n, m)
    if_mu = (w * V + v * W) / n - 2 * mu + c.term(np.where(case, w * V, v * W) / n, m)
    return auc, (if_nu - auc * if_mu) / mu


def _se(ic) -> float:
    return float(np.std(ic, ddof=1) / math.sqrt(len(ic)))


def _prepare(time, event, risk_by_model, times, null_model):
    time, event = _outcome(time, event)
    times = [float(t) for t in np.atleast_1d(times)]
    n = len(time)
    risks = {name: _risk_matrix(name, r, n, len(times)) for name, r in risk_by_model.items()}
    if NULL_MODEL in risks:
        raise ValueError(f"{NULL_MODEL!r} is the reference model's name: call the model something else")
    if null_model:
        null = event_probability(time, event, times)
        risks = {NULL_MODEL: np.repeat(null[None, :], n, axis=0), **risks}
    return time, event, times, risks


def _problem(time, event, t):
    cases = int(((time <= t) & (event == 1)).sum())
    controls = int((time > t).sum())
    base = {"time_days": t, "n": len(time), "cases": cases, "controls": controls,
            "censored_before": len(time) - cases - controls}
    problem = ("no event by this time" if cases == 0 else "nobody followed beyond this time"
               if controls == 0 else None)
    return base, problem


def score_at(time, event, risk_by_model: dict[str, np.ndarray], times, alpha: float = 0.05,
             null_model: bool = True) -> pd.DataFrame:
    """One row per (horizon, model), columns SCORE_COLUMNS.

    time, event: the patients' follow-up (event 1/0). risk_by_model: model name -> predicted
    absolute risk of the event by each horizon, an (n, len(times)) array (an (n,) array is taken
    as the same risk at every horizon). With ``null_model`` the marginal Kaplan-Meier risk is
    scored too (model ``NULL_MODEL``, its IPA 0) and every model's IPA is against it.
    A horizon without a case or a control is a row "not scored: <reason>"."""
    time, event, times, risks = _prepare(time, event, risk_by_model, times, null_model)
    c = _Censoring(time, event)
    z = float(norm.ppf(1 - alpha / 2))
    rows = []
    for j, t in enumerate(times):
        base, problem = _problem(time, event, t)
        null_brier = math.nan
        for name, r in risks.items():
            row = {**base, "model": name, **dict.fromkeys(SCORE_COLUMNS[6:-1], math.nan)}
            if problem:
                rows.append({**row, "status": f"not scored: {problem}"})
                continue
            brier, ic = _brier(c, time, event, t, r[:, j])
            se = _se(ic)
            row.update(brier=brier, brier_se=se, brier_lower=max(0.0, brier - z * se),
                       brier_upper=min(1.0, brier + z * se), status="ok")
            if name == NULL_MODEL:
                null_brier = brier
            else:  # the null model gives everyone the same risk: no ranking, no AUC
                auc, ic = _auc(c, time, event, t, r[:, j])
                se = _se(ic)
                row.update(auc=auc, auc_se=se, auc_lower=max(0.0, auc - z * se), auc_upper=min(1.0, auc + z * se))
            row["ipa"] = 1.0 - brier / null_brier if null_model else math.nan
            rows.append(row)
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def score_contrasts(time, event, risk_by_model: dict[str, np.ndarray], times, alpha: float = 0.05,
                    null_model: bool = True) -> pd.DataFrame:
    """Differences between models at each horizon with influence-function CIs, as Score's
    ``contrasts``: every model against the null model (Brier only) and every model against each
    model before it in ``risk_by_model`` (delta = model - reference, Brier and AUC). One row per
    (horizon, model, reference), columns SCORE_CONTRAST_COLUMNS; the SE of a difference is
    sd(IF_model - IF_reference) / sqrt(n), p from the normal distribution."""
    time, event, times, risks = _prepare(time, event, risk_by_model, times, null_model)
    c = _Censoring(time, event)
    z = float(norm.ppf(1 - alpha / 2))
    names = list(risks)
    pairs = [(b, a) for i, a in enumerate(names) for b in names[i + 1:]]
    pairs.sort(key=lambda p: (p[1] != NULL_MODEL, names.index(p[1]) if p[1] == NULL_MODEL else 0))
    rows = []

    def delta(est, ic, prefix):
        se = _se(ic)
        return {prefix: est, f"{prefix}_se": se, f"{prefix}_lower": est - z * se, f"{prefix}_upper": est + z * se,
                f"{prefix}_p": float(2 * norm.sf(abs(est / se))) if se > 0 else math.nan}

    for j, t in enumerate(times):
        base, problem = _problem(time, event, t)
        if problem:
            rows += [{"time_days": t, "model": b, "reference": a, "status": f"not scored: {problem}"} for b, a in pairs]
            continue
        brier = {name: _brier(c, time, event, t, r[:, j]) for name, r in risks.items()}
        auc = {name: _auc(c, time, event, t, r[:, j]) for name, r in risks.items() if name != NULL_MODEL}
        for b, a in pairs:
            row = {"time_days": t, "model": b, "reference": a, "status": "ok",
                   **delta(brier[b][0] - brier[a][0], brier[b][1] - brier[a][1], "delta_brier")}
            if a != NULL_MODEL:
                row.update(delta(auc[b][0] - auc[a][0], auc[b][1] - auc[a][1], "delta_auc"))
            rows.append(row)
    return pd.DataFrame(rows, columns=SCORE_CONTRAST_COLUMNS)


def _require_columns(table: pd.DataFrame, used: list[str]) -> None:
    missing = [c for c in used if c not in table.columns]
    if missing:
        raise ValueError(f"column(s) {', '.join(missing)} not in the table (have: {', '.join(map(str, table.columns))})")


def cox_risk(train: pd.DataFrame, duration: str, event: str, covariates: list[str], times,
             newdata: pd.DataFrame | None = None) -> np.ndarray:
    """(n_new, len(times)) absolute risk 1 - S(t | x) from a Cox model (Efron ties) fitted on
    ``train``: riskRegression's ``predictRisk(coxph)``, i.e. exp(-H0(t) exp(x'beta)) with
    survfit.coxph's Efron-corrected baseline cumulative hazard. Text covariates become indicators
    against their first level in ``train``; patients missing a covariate in ``train`` are left
    out of the fit, in ``newdata`` get NaN."""
    used = [duration, event, *covariates]
    _require_columns(train, used)
    fit_rows = train.dropna(subset=used)
    time, status = _outcome(fit_rows[duration], fit_rows[event])
    new = train if newdata is None else newdata
    lacking = [c for c in covariates if c not in new.columns]
    if lacking:
        raise ValueError(f"column(s) {', '.join(lacking)} not in the data to predict for")
    X, _ = cox.design(pd.concat([fit_rows[covariates], new[covariates]], ignore_index=True), covariates)
    Xfit, Xnew = X.iloc[:len(fit_rows)].to_numpy(), X.iloc[len(fit_rows):].to_numpy()
    if status.sum() == 0:
        raise ValueError("no events: a Cox model needs at least one")
    if np.linalg.matrix_rank(Xfit - Xfit.mean(axis=0)) < Xfit.shape[1]:
        raise ValueError("constant or collinear covariates")
    frame = pd.DataFrame(Xfit, columns=[f"x{j}" for j in range(X.shape[1])]).assign(_time=time, _event=status)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        beta = CoxPHFitter().fit(frame, "_time", "_event", fit_options=cox.FIT_OPTIONS).params_.to_numpy(float)
    # lifelines stops its Newton-Raphson earlier than R (coefficients ~1e-5 apart): one more step
    # on the Efron partial likelihood brings them to R's precision
    m = pl.event_time_moments(time, status.astype(bool), Xfit, Xfit @ beta, ties="efron")
    beta = beta + np.linalg.solve(m["V"].sum(axis=0), m["U"].sum(axis=0))
    eta = Xfit @ beta
    death_times = np.unique(time[status == 1])
    risk_w = np.exp(eta)
    at_risk = np.array([risk_w[time >= u].sum() for u in death_times])
    increments = np.empty(len(death_times))
    for j, u in enumerate(death_times):
        tied = (time == u) & (status == 1)
        d, tied_w = int(tied.sum()), risk_w[tied].sum()
        # Efron: the tied deaths leave the risk set a fraction at a time (survfit.coxph, ctype 2)
        increments[j] = np.sum(1.0 / (at_risk[j] - np.arange(d) / d * tied_w))
    H = np.concatenate([[0.0], np.cumsum(increments)])
    H_at = H[np.searchsorted(death_times, np.asarray(times, dtype=float), side="right")]
    return 1.0 - np.exp(-np.outer(np.exp(Xnew @ beta), H_at))


def score_cox(df: pd.DataFrame, duration: str, event: str, covariates: list[str], times,
              alpha: float = 0.05) -> pd.DataFrame:
    """``score_at`` of the Cox model of ``covariates`` fitted and scored on ``df`` (complete cases)
    and of the null model: ``tumorburden survival score``. Columns SCORE_COLUMNS + n_dropped; a
    model that cannot be fitted is rows 'not fitted: <reason>' beside the null model's."""
    if not covariates:
        raise ValueError("score needs --covariates a,b,... (the Cox model's terms)")
    used = [duration, event, *covariates]
    _require_columns(df, used)
    d = df.dropna(subset=used)
    time, status = _outcome(d[duration], d[event])
    label = "cox(" + "+".join(covariates) + ")"
    try:
        risks = {label: cox_risk(d, duration, event, covariates, times)}
        reason = None
    except (ValueError, np.linalg.LinAlgError) as exc:
        risks, reason = {}, str(exc).splitlines()[0]
    out = score_at(time, status, risks, times, alpha=alpha)
    if reason:
        failed = out[["time_days", "n", "cases", "controls", "censored_before"]].drop_duplicates().assign(
            model=label, status=f"not fitted: {reason}")
        out = pd.concat([out, failed], ignore_index=True)[SCORE_COLUMNS]
    return out.assign(n_dropped=len(df) - len(d))
