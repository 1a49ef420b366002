"""Stein's tumour growth/regression models, chosen as the R package tumgr does.

Stein et al., Clin Cancer Res 2008 and Oncologist 2011; Wilkerson et al., tumgr (CRAN), 2017.
With t in days from the baseline scan and f(t) = V(t) / V(0) the burden relative to baseline:

    gd     f(t) = exp(-d t) + exp(g t) - 1            (regression and growth)
    gx     f(t) = exp(g t)                            (growth only)
    dx     f(t) = exp(-d t)                           (regression only)
    gdphi  f(t) = phi exp(g t) + (1 - phi) exp(-d t)  (phi: the resistant fraction, 0..1)

Each model is fitted by least squares (``scipy.optimize.curve_fit``, trust-region, bounds
g, d >= 0 and 0 <= phi <= 1, several fixed starting points, the lowest residual wins, so the
fit is deterministic). A fit is *usable* when it converged, every parameter is significant
(two-sided t-test of estimate / standard error on n - k degrees of freedom, p < ``alpha``),
and n > k (a parameter needs a residual degree of freedom to have a standard error). Among
usable fits the lowest AIC wins (least-squares AIC: n ln(SSE / n) + 2 k); tumgr's order of
preference breaks ties (gdphi is tried only with at least 4 points). g is reported by
models with a growth term (gd, gx, gdphi), d by models with a decay term (gd, dx, gdphi);
the other one is undefined and its reason names the chosen model. No usable fit: g and d
are undefined with the reason of each model.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit

MAX_RATE_PER_DAY = 1.0  # beyond a doubling/halving every 0.7 days the data cannot tell
SSE_FLOOR = 1e-12  # keeps AIC finite for an exact fit
# Residual sd floor, in units of the baseline volume: 0.01 %, far below any measurement, so an
# exact (noise-free) fit cannot make a parameter of 1e-8 per day look significant.
SIGMA_FLOOR = 1e-4


def gd(t, g, d):
    return np.exp(-d * t) + np.exp(g * t) - 1.0


def gx(t, g):
    return np.exp(g * t)


def dx(t, d):
    return np.exp(-d * t)


def gdphi(t, g, d, phi):
    return phi * np.exp(g * t) + (1.0 - phi) * np.exp(-d * t)


stein_relative = gd  # the model of the synthetic trial


def _jac_gd(t, g, d):
    return np.column_stack([t * np.exp(g * t), -t * np.exp(-d * t)])


def _jac_gx(t, g):
    return (t * np.exp(g * t))[:, None]


def _jac_dx(t, d):
    return (-t * np.exp(-d * t))[:, None]


def _jac_gdphi(t, g, d, phi):
    eg, ed = np.exp(g * t), np.exp(-d * t)
    return np.column_stack([phi * t * eg, -(1.0 - phi) * t * ed, eg - ed])


@dataclass(frozen=True)
class Model:
    name: str
    func: object
    jac: object
    params: tuple[str, ...]
    upper: tuple[float, ...]
    starts: tuple[tuple[float, ...], ...]
    min_points: int


_RATES = (1e-4, 1e-3, 1e-2, 3e-2)
MODELS = (
    Model("gd", gd, _jac_gd, ("g", "d"), (MAX_RATE_PER_DAY, MAX_RATE_PER_DAY),
          ((1e-3, 1e-3), (1e-2, 1e-4), (1e-4, 1e-2), (1e-3, 3e-2), (3e-2, 1e-3)), 3),
    Model("gx", gx, _jac_gx, ("g",), (MAX_RATE_PER_DAY,), tuple((r,) for r in _RATES), 2),
    Model("dx", dx, _jac_dx, ("d",), (MAX_RATE_PER_DAY,), tuple((r,) for r in _RATES), 2),
    Model("gdphi", gdphi, _jac_gdphi, ("g", "d", "phi"), (MAX_RATE_PER_DAY, MAX_RATE_PER_DAY, 1.0),
          ((1e-3, 1e-2, 0.5), (1e-2, 1e-2, 0.2), (1e-3, 3e-2, 0.8), (3e-3, 3e-3, 0.5)), 4),
)
PREFERENCE = {m.name: i for i, m in enumerate(MODELS)}


@dataclass
class Fit:
    model: str
    params: dict[str, float] = field(default_factory=dict)
    p_values: dict[str, float] = field(default_factory=dict)
    sse: float = math.nan
    aic: float = math.nan
    rmse: float = math.nan
    problem: str | None = None  # why the fit is not usable; None when it is


@dataclass
class Choice:
    model: str | None  # the chosen model, None when no fit is usable
    g: float
    d: float
    phi: float
    rmse: float
    g_reason: str | None
    d_reason: str | None
    fits: list[Fit]


def _fit_one(model: Model, t: np.ndarray, y: np.ndarray, alpha: float) -> Fit:
    n, k = len(t), len(model.params)
    if n < model.min_points or n <= k:
        return Fit(model.name, problem=f"{model.name}: needs at least {max(model.min_points, k + 1)} scans")
    best = None
    for p0 in model.starts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                warnings.simplefilter("ignore", RuntimeWarning)  # exp overflow while probing
                popt, _ = curve_fit(model.func, t, y, p0=p0, jac=model.jac, bounds=(0.0, model.upper),
                                    method="trf", x_scale=[1e-3 if p != "phi" else 0.1 for p in model.params],
                                    max_nfev=500, xtol=1e-10, ftol=1e-10, gtol=1e-10)
        except (RuntimeError, ValueError):
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            sse = float(np.sum((model.func(t, *popt) - y) ** 2))
        if np.isfinite(sse) and (best is None or sse < best[0] - 1e-15):
            best = (sse, popt)
    if best is None:
        return Fit(model.name, problem=f"{model.name}: did not converge")
    sse, popt = best
    fit = Fit(model.name, params=dict(zip(model.params, map(float, popt))), sse=sse,
              aic=n * math.log(max(sse, SSE_FLOOR) / n) + 2 * k, rmse=math.sqrt(sse / n))
    # Standard errors from the Jacobian at the optimum (what R's nls summary reports).
    with np.errstate(over="ignore", invalid="ignore"):
        jac = np.asarray(model.jac(t, *popt), dtype=float)
    sigma2 = max(sse / (n - k), SIGMA_FLOOR ** 2)
    try:
        cov = sigma2 * np.linalg.inv(jac.T @ jac)
        se = np.sqrt(np.diag(cov))
    except np.linalg.LinAlgError:
        se = np.full(k, np.inf)
    for name, est, s in zip(model.params, popt, se):
        tval = abs(est) / s if s > 0 and np.isfinite(s) else (math.inf if s == 0 and est != 0 else 0.0)
        fit.p_values[name] = float(2 * stats.t.sf(tval, n - k)) if np.isfinite(tval) else 0.0
    weak = [p for p in model.params if not fit.p_values[p] < alpha]
    if weak:
        fit.problem = f"{model.name}: {', '.join(weak)} not significant (p >= {alpha:g})"
    return fit


def choose_model(days, volume_ml, alpha: float = 0.05, models=None) -> Choice:
    """Fit the models (names; default all four) to volumes at ``days`` from baseline (first
    element = baseline, > 0) and choose one."""
    t = np.asarray(days, dtype=float)
    v = np.asarray(volume_ml, dtype=float)
    if v[0] <= 0:
        raise ValueError("the Stein models need a baseline volume > 0")
    y = v / v[0]
    names = list(models) if models is not None else [m.name for m in MODELS]
    unknown = sorted(set(names) - set(PREFERENCE))
    if unknown or not names:
        raise ValueError(f"kinetics.stein_models: unknown model(s) {', '.join(unknown) or '(none given)'} "
                         f"(use some of {', '.join(PREFERENCE)})")
    fits = [_fit_one(m, t, y, alpha) for m in MODELS if m.name in names]
    usable = [f for f in fits if f.problem is None]
    if not usable:
        reason = "no Stein model fits: " + "; ".join(f.problem for f in fits)
        return Choice(None, math.nan, math.nan, math.nan, math.nan, reason, reason, fits)
    best = min(usable, key=lambda f: (round(f.aic, 9), PREFERENCE[f.model]))
    g = best.params.get("g", math.nan)
    d = best.params.get("d", math.nan)
    return Choice(best.model, g, d, best.params.get("phi", math.nan), best.rmse,
                  None if "g" in best.params else f"model {best.model} chosen (no growth term)",
                  None if "d" in best.params else f"model {best.model} chosen (no regression term)",
                  fits)


def fit_stein(days, volume_ml) -> tuple[float, float, float]:
    """The gd model alone: (g, d, rmse of the relative volume); RuntimeError if it does not converge."""
    t = np.asarray(days, dtype=float)
    v = np.asarray(volume_ml, dtype=float)
    fit = _fit_one(MODELS[0], t, v / v[0], alpha=1.0)
    if not fit.params:
        raise RuntimeError(fit.problem or "Stein fit did not converge")
    return fit.params["g"], fit.params["d"], fit.rmse
