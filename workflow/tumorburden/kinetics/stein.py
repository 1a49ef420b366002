"""Stein's tumour growth/regression model (Stein et al., Clin Cancer Res 2008; Oncologist 2011).

    V(t) = V0 * (exp(-d t) + exp(g t) - 1),   t in days from the baseline scan,

a sensitive fraction decaying at rate d (1/day) and a resistant fraction growing at rate g
(1/day). V0 is the measured baseline volume; g and d are fitted by least squares on the
relative volume V(t)/V0 of the baseline and follow-up scans with
``scipy.optimize.curve_fit`` (trust-region, bounds g, d >= 0, so a pure decay (g = 0) or a
pure growth (d = 0) are the model's own edge cases). Several fixed starting points are tried
and the lowest residual wins, which keeps the fit deterministic.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

# Starting points (g, d) per day: slow/fast growth x slow/fast decay.
_STARTS = [(1e-3, 1e-3), (1e-2, 1e-4), (1e-4, 1e-2), (1e-3, 3e-2), (3e-2, 1e-3)]
MAX_RATE_PER_DAY = 1.0  # beyond a doubling/halving every 0.7 days the data cannot tell


def stein_relative(t, g, d):
    return np.exp(-d * t) + np.exp(g * t) - 1.0


def _jacobian(t, g, d):
    return np.column_stack([t * np.exp(g * t), -t * np.exp(-d * t)])


def fit_stein(days, volume_ml) -> tuple[float, float, float]:
    """Fit g, d (per day) to volumes at ``days`` from baseline (first element = baseline).

    Returns (g, d, rmse of the relative volume). Raises RuntimeError when no start converges.
    """
    t = np.asarray(days, dtype=float)
    v = np.asarray(volume_ml, dtype=float)
    y = v / v[0]
    best = None
    for p0 in _STARTS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)  # exp overflow while probing
                popt, _ = curve_fit(stein_relative, t, y, p0=p0, jac=_jacobian, bounds=(0.0, MAX_RATE_PER_DAY),
                                    method="trf", x_scale=[1e-3, 1e-3], max_nfev=2000,
                                    xtol=1e-12, ftol=1e-12, gtol=1e-12)
        except (RuntimeError, ValueError):
            continue
        resid = stein_relative(t, *popt) - y
        sse = float(np.sum(resid**2))
        if np.isfinite(sse) and (best is None or sse < best[0] - 1e-15):
            best = (sse, popt)
    if best is None:
        raise RuntimeError("Stein fit did not converge")
    g, d = (float(x) for x in best[1])
    return g, d, float(np.sqrt(best[0] / len(t)))
