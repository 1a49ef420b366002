"""Decision-curve analysis at survival horizons (Vickers et al. 2008, time-to-event version).

Treating the patients whose predicted risk by the horizon t is at least the threshold
probability p_t has net benefit  TP/n - FP/n * p_t / (1 - p_t)  where, among the treated,
TP/n = (1 - KM_treated(t)) * treated / n and FP/n = KM_treated(t) * treated / n: the
Kaplan-Meier of the treated patients at the horizon accounts for censoring. Treat-all uses the
whole cohort's Kaplan-Meier; treat-none is 0. A patient is treated at p_t when risk >= p_t.

Not ``dcurves.dca`` (the Python port of MSKCC's dcurves; the same numbers on pbc at 5 years,
checked once): it refits a lifelines model per threshold and model, too slow for the pipeline's
grid of cohorts x endpoints x models x horizons x 99 thresholds and a dependency with statsmodels
for one formula; here each treated set's Kaplan-Meier is scikit-survival's
``kaplan_meier_estimator`` (score.event_probability).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tumorburden.survival.score import _outcome, _risk_matrix, event_probability
from tumorburden.tables import SCHEMAS

DECISION_COLUMNS = [c for c in SCHEMAS["decision_curve"] if c not in ("cohort", "endpoint")]
TREAT_ALL, TREAT_NONE = "treat all", "treat none"
DEFAULT_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


def net_benefit(time, event, risk_by_model: dict[str, np.ndarray], times,
                thresholds=DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """One row per (horizon, threshold, model incl. TREAT_ALL and TREAT_NONE), DECISION_COLUMNS.

    risk_by_model as in ``score.score_at``: model -> (n, len(times)) predicted absolute risk of
    the event by each horizon ((n,) = the same at every horizon). A horizon after the last
    follow-up is rows 'not computed: ...'."""
    time, event = _outcome(time, event)
    times = [float(t) for t in np.atleast_1d(times)]
    thresholds = [float(p) for p in np.atleast_1d(thresholds)]
    if any(not 0 <= p < 1 for p in thresholds):
        raise ValueError("decision-curve thresholds must be probabilities in [0, 1)")
    n = len(time)
    risks = {name: _risk_matrix(name, r, n, len(times)) for name, r in risk_by_model.items()}
    rows = []
    for j, t in enumerate(times):
        if time.max() < t:
            rows += [{"time_days": t, "threshold": p, "model": name, "n": n, "n_treated": np.nan,
                      "net_benefit": np.nan, "status": "not computed: the horizon is after the last follow-up"}
                     for name in [*risks, TREAT_ALL, TREAT_NONE] for p in thresholds]
            continue
        everyone = _event_probability(time, event, t)
        # the 99 thresholds treat at most n + 1 different sets of patients: one Kaplan-Meier each
        risk_of_set = {}
        for p in thresholds:
            harm = p / (1 - p)
            for name, r in risks.items():
                treated = r[:, j] >= p
                k = int(treated.sum())
                nb = 0.0
                if k:
                    key = treated.tobytes()
                    if key not in risk_of_set:
                        risk_of_set[key] = _event_probability(time[treated], event[treated], t)
                    risk_treated = risk_of_set[key]
                    nb = (risk_treated - (1 - risk_treated) * harm) * k / n
                rows.append({"time_days": t, "threshold": p, "model": name, "n": n, "n_treated": k,
                             "net_benefit": nb, "status": "ok"})
            rows.append({"time_days": t, "threshold": p, "model": TREAT_ALL, "n": n, "n_treated": n,
                         "net_benefit": everyone - (1 - everyone) * harm, "status": "ok"})
            rows.append({"time_days": t, "threshold": p, "model": TREAT_NONE, "n": n, "n_treated": 0,
                         "net_benefit": 0.0, "status": "ok"})
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)


def _event_probability(time, event, t) -> float:
    return float(event_probability(time, event, [t])[0])
