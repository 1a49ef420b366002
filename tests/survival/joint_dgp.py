"""The joint model's data-generating process (Rizopoulos 2012, ch. 4; the issue's 'faithful' death
hazard), written out here independently of tumorburden.survival.joint so the estimator is scored
against data it did not make.

log burden y_ij = (b0 + u_i0) + (b1 + u_i1) t_ij + e_ij at scheduled scans (years), u_i ~ N(0, D);
death hazard lam0 * exp(alpha * m_i(t) + alpha_slope * (b1 + u_i1)) with m_i(t) the true current
value: the cumulative hazard is closed-form for a linear trajectory, so T is drawn by inversion.
Administrative censoring at `follow_up` years and uniform dropout before it.
"""

import numpy as np
import pandas as pd

TRUTH = {"b0": 3.0, "b1": 0.4, "sd0": 1.0, "sd1": 0.6, "rho": 0.2, "sigma": 0.25,
         "lam0": 0.08, "alpha": 0.5, "alpha_slope": 0.0, "follow_up": 2.5}
SCHEDULE_DAYS = (-7, 56, 112, 168, 252, 336, 448, 560, 672, 784)


def simulate(n, rng, truth=None, schedule=SCHEDULE_DAYS):
    """(longitudinal: patient_id, scan_id, days, y; survival: patient_id, time (days), event)."""
    p = {**TRUTH, **(truth or {})}
    cov = np.array([[p["sd0"] ** 2, p["rho"] * p["sd0"] * p["sd1"]],
                    [p["rho"] * p["sd0"] * p["sd1"], p["sd1"] ** 2]])
    u = rng.multivariate_normal([0.0, 0.0], cov, size=n)
    a = p["b0"] + u[:, 0]
    c = p["b1"] + u[:, 1]
    rate = p["lam0"] * np.exp(p["alpha"] * a + p["alpha_slope"] * c)
    e = rng.exponential(size=n)
    k = p["alpha"] * c
    with np.errstate(divide="ignore", invalid="ignore"):
        arg = 1.0 + k * e / rate
        t_death = np.where(np.abs(k) < 1e-12, e / rate, np.where(arg > 0, np.log(arg) / k, np.inf))
    censor = np.minimum(p["follow_up"], rng.uniform(0.5, 6.0, size=n))
    time = np.minimum(t_death, censor)
    event = (t_death <= censor).astype(int)
    pid = np.array([f"P{i:04d}" for i in range(n)])
    days = np.asarray(schedule, float)
    jitter = rng.integers(-5, 6, size=(n, len(days)))
    d = days[None, :] + np.where(days[None, :] > 0, jitter, 0)
    tt = d / 365.25
    y = a[:, None] + c[:, None] * tt + rng.normal(0.0, p["sigma"], size=tt.shape)
    keep = tt < time[:, None]
    ii, jj = np.nonzero(keep)
    lon = pd.DataFrame({"patient_id": pid[ii], "scan_id": [f"{pid[i]}-S{j}" for i, j in zip(ii, jj)],
                        "days": d[ii, jj], "y": y[ii, jj]})
    surv = pd.DataFrame({"patient_id": pid, "time": time * 365.25, "event": event})
    return lon, surv
