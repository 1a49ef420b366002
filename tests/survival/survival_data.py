"""Simulated patients with a known effect of baseline burden on the hazard."""

import numpy as np
import pandas as pd


def simulate(n=200, hr_per_log_volume=2.0, seed=1, cohorts=("lung", "melanoma")):
    rng = np.random.default_rng(seed)
    log_v = rng.normal(3.0, 1.0, n)
    volume = np.exp(log_v) - 0.1
    hazard = 0.002 * np.exp(np.log(hr_per_log_volume) * (log_v - 3.0))
    t_event = rng.exponential(1 / hazard)
    t_cens = rng.uniform(100, 1500, n)
    pfs = np.minimum(t_event, t_cens)
    ids = [f"p{i:03d}" for i in range(n)]
    cohort = np.array(cohorts)[np.arange(n) % len(cohorts)]
    features = pd.DataFrame({"patient_id": ids, "cohort": cohort, "baseline_volume_ml": volume,
                             "pct_change_first_fu": rng.normal(0, 30, n)})
    clinical = pd.DataFrame({"patient_id": ids, "cohort": cohort,
                             "pfs_days": np.round(pfs, 1), "pfs_event": (t_event <= t_cens).astype(int),
                             "os_days": np.round(pfs * 1.5, 1), "os_event": (t_event <= t_cens).astype(int)})
    return features, clinical
