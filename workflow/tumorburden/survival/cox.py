"""Cox proportional-hazards models that never crash a run: a failure is a 'not fitted' row.

lifelines' CoxPHFitter handles ties with Efron's method (R's default). Its convergence
tolerance is tightened so coefficients match R's coxph to about 6 decimals.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from scipy.stats import norm
from lifelines.exceptions import ConvergenceError, ConvergenceWarning

FIT_OPTIONS = {"precision": 1e-9, "max_steps": 200}


def fit_cox(df: pd.DataFrame, duration_col: str, event_col: str, terms: list[str],
            strata: list[str] | None = None, min_patients: int = 10, min_events: int = 3,
            alpha: float = 0.05) -> list[dict]:
    """One row per term: term, hr, hr_lower, hr_upper, p, coef, se_coef, n, events, status."""
    data = df[[duration_col, event_col, *terms, *(strata or [])]].dropna()
    n, events = len(data), int(data[event_col].sum()) if len(data) else 0

    def failed(reason: str) -> list[dict]:
        return [{"term": t, "hr": math.nan, "hr_lower": math.nan, "hr_upper": math.nan, "p": math.nan,
                 "coef": math.nan, "se_coef": math.nan, "n": n, "events": events,
                 "status": f"not fitted: {reason}"} for t in terms]

    if n < min_patients:
        return failed(f"too few patients ({n} < {min_patients})")
    if events < min_events:
        return failed("no events" if events == 0 else f"too few events ({events} < {min_events})")
    constant = [t for t in terms if np.nanstd(data[t].to_numpy(dtype=float)) == 0]
    if constant:
        return failed(f"constant covariate {', '.join(constant)}")
    cph = CoxPHFitter(alpha=alpha)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            cph.fit(data, duration_col=duration_col, event_col=event_col, strata=strata or None,
                    fit_options=FIT_OPTIONS)
    except (ConvergenceError, np.linalg.LinAlgError, ValueError, ZeroDivisionError) as exc:
        return failed(f"convergence failure ({str(exc).splitlines()[0][:120]})")
    bad = [w for w in caught if issubclass(w.category, ConvergenceWarning) and "converge" in str(w.message).lower()]
    if bad:
        return failed(f"convergence failure ({str(bad[0].message).splitlines()[0][:120]})")
    s = cph.summary
    q = float(norm.ppf(1 - alpha / 2))
    rows = []
    for t in terms:
        coef, se = float(s.loc[t, "coef"]), float(s.loc[t, "se(coef)"])
        if not (np.isfinite(coef) and np.isfinite(se)):
            return failed("non-finite estimate (separation?)")
        rows.append({"term": t, "hr": math.exp(coef), "hr_lower": math.exp(coef - q * se),
                     "hr_upper": math.exp(coef + q * se), "p": float(s.loc[t, "p"]), "coef": coef,
                     "se_coef": se, "n": n, "events": events, "status": "ok"})
    return rows
