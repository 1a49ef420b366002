"""Decision-curve analysis for a survival horizon (Vickers et al. 2008, time-to-event version).

Treating the patients whose predicted risk by the horizon is at least the threshold probability
p_t has net benefit  TP/n - FP/n * p_t / (1 - p_t)  with, among the n_treated patients,
TP/n = (1 - KM_treated(t)) * n_treated / n and FP/n = KM_treated(t) * n_treated / n (the
Kaplan-Meier of the treated patients at the horizon accounts for censoring). Treat-all uses the
whole cohort's KM; treat-none is 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DECISION_COLUMNS = ["time_days", "threshold", "model", "n", "n_treated", "net_benefit", "status"]
TREAT_ALL, TREAT_NONE = "treat all", "treat none"
DEFAULT_THRESHOLDS = np.round(np.arange(0.01, 1.0, 0.01), 2)


def net_benefit(time, event, risk_by_model: dict[str, np.ndarray], times,
                thresholds=DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """One row per (horizon, threshold, model incl. TREAT_ALL and TREAT_NONE), DECISION_COLUMNS.

    risk_by_model as in ``score.score_at``: model -> (n, len(times)) predicted absolute risk."""
    raise NotImplementedError
