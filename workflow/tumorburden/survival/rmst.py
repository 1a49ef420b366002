"""Restricted mean survival time up to tau, per group and between groups.

Per group, the area under the Kaplan-Meier curve from 0 to tau and its standard error as R's
``print(survfit(...), rmean = tau)`` gives them; between two groups the difference (SE from the
sum of the variances) and the ratio (delta method on the log scale), with CIs and p, as
survRM2's ``rmst2`` does.
"""

from __future__ import annotations

import pandas as pd

RMST_COLUMNS = ["group", "n", "events", "tau_days", "rmst", "se", "lower", "upper", "status"]
CONTRAST_COLUMNS = ["group", "reference", "tau_days", "difference", "difference_lower", "difference_upper",
                    "difference_p", "ratio", "ratio_lower", "ratio_upper", "ratio_p", "status"]


def rmst_by_group(time, event, group, tau: float, alpha: float = 0.05) -> pd.DataFrame:
    """RMST_COLUMNS, one row per group (sorted); group None = one row 'all'. A group whose
    follow-up ends before tau has no RMST to tau: row 'not estimated: ...'."""
    raise NotImplementedError


def rmst_contrasts(by_group: pd.DataFrame, reference=None, alpha: float = 0.05) -> pd.DataFrame:
    """CONTRAST_COLUMNS: each group against ``reference`` (default the first group): difference
    group - reference and ratio group / reference."""
    raise NotImplementedError
