"""Discrimination of a risk score: Harrell's and Uno's C with a seeded bootstrap CI.

The risk score is the feature itself (higher burden = higher risk); lifelines'
``concordance_index`` scores predicted *survival*, so it is given the negated feature.
Uno's C (scikit-survival ``concordance_index_ipcw``) weights pairs by the inverse of the
censoring distribution estimated on the same patients (train = test).
Both count ties in the score as 1/2. The CI is the 2.5/97.5 percentile of bootstrap
replicates (patients resampled with replacement); replicates where a C is undefined (no
event, no comparable pair, censoring survival 0) are skipped for that C.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
from lifelines.utils import concordance_index
from sksurv.metrics import concordance_index_ipcw
from sksurv.util import Surv


def harrell_c(time, event, risk) -> float:
    try:
        return float(concordance_index(time, -np.asarray(risk, dtype=float), event))
    except ZeroDivisionError:  # no admissible pair
        return math.nan


def uno_c(time, event, risk, tau: float | None = None) -> tuple[float, str | None]:
    y = Surv.from_arrays(event=np.asarray(event, dtype=bool), time=np.asarray(time, dtype=float))
    try:
        return float(concordance_index_ipcw(y, y, np.asarray(risk, dtype=float), tau=tau)[0]), None
    except (ValueError, ZeroDivisionError) as exc:
        return math.nan, str(exc).splitlines()[0]


def row_seed(seed: int, *key: str) -> np.random.Generator:
    """A generator per result row, so a row does not change when other rows are added."""
    return np.random.default_rng([int(seed), zlib.crc32("|".join(key).encode())])


def concordance_with_ci(time, event, risk, n_boot: int, rng: np.random.Generator,
                        tau: float | None = None) -> dict:
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    risk = np.asarray(risk, dtype=float)
    c = harrell_c(time, event, risk)
    cu, uno_reason = uno_c(time, event, risk, tau)
    boots_h, boots_u = [], []
    n = len(time)
    for _ in range(int(n_boot)):
        idx = rng.integers(0, n, n)
        if not event[idx].any():
            continue
        boots_h.append(harrell_c(time[idx], event[idx], risk[idx]))
        boots_u.append(uno_c(time[idx], event[idx], risk[idx], tau)[0])

    def ci(values):
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if len(v) < 2:
            return math.nan, math.nan, len(v)
        lo, hi = np.percentile(v, [2.5, 97.5])
        return float(lo), float(hi), len(v)

    lo, hi, nb = ci(boots_h)
    ulo, uhi, nbu = ci(boots_u)
    return {"c_index": c, "c_index_lower": lo, "c_index_upper": hi, "c_index_uno": cu,
            "c_index_uno_lower": ulo, "c_index_uno_upper": uhi, "bootstrap_used": nb,
            "bootstrap_used_uno": nbu, "c_index_uno_reason": uno_reason}
