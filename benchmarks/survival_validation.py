"""Bootstrap validation of the prediction models: 3 model sets x 2 endpoints x 3 cohorts, B = 200.

Target (issue 18): <= 60 s on 2 cores for the 600-patient synthetic trial. Batched
(tumorburden.survival.validation.validate_cox: all replicates of a model in one weighted Newton-
Raphson, indices as rms::validate.cph, Brier at 3 horizons) against its peer, the naive loop: per
replicate, lifelines' CoxPHFitter on the resampled rows, the test slope refitted with lifelines on
the original patients, and lifelines' concordance_index on both. The peer runs on the first
``peer_replicates`` resamples of every model (the same resamples as the batched run) and its time
is quoted per replicate and x B; the script checks both give the same test C on those resamples.
The peer computes less (C and slope only, no R2/D/U/Q/g/Brier), which favours it.

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/survival_validation.py [B] [peer_replicates]

(defaults B = 200, peer_replicates = 10)
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from lifelines import CoxPHFitter  # noqa: E402
from lifelines.utils import concordance_index  # noqa: E402

from tumorburden.survival import cox  # noqa: E402
from tumorburden.survival.validation import fit_cox_batch, validate_cox  # noqa: E402
from tumorburden.synth import trial as synth  # noqa: E402

SETS = {"clinical": ["age", "sex", "ecog", "line_of_therapy"],
        "clinical_burden": ["age", "sex", "ecog", "line_of_therapy", "log_baseline_volume_ml"],
        "clinical_burden_kinetics": ["age", "sex", "ecog", "line_of_therapy", "log_baseline_volume_ml", "growth_g"]}
HORIZONS = (180.0, 365.0, 730.0)


def naive(time_, event, X, idx):
    """Per replicate: (training C, test C, test slope) from lifelines refits on the resampled rows."""
    cols = [f"x{j}" for j in range(X.shape[1])]
    out = []
    for rows in idx:
        frame = pd.DataFrame(X[rows], columns=cols).assign(t=time_[rows], e=event[rows])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            beta = CoxPHFitter().fit(frame, "t", "e", fit_options=cox.FIT_OPTIONS).params_.to_numpy()
            lp = X @ beta
            slope = CoxPHFitter().fit(pd.DataFrame({"lp": lp, "t": time_, "e": event}), "t", "e",
                                      fit_options=cox.FIT_OPTIONS).params_.iloc[0]
        c_train = concordance_index(time_[rows], -lp[rows], event[rows])
        c_test = concordance_index(time_, -lp, event)
        out.append((c_train, c_test, slope))
    return np.array(out)


def main() -> int:
    n_boot = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    n_peer = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    tr = synth.design_trial({"size": "impact", "seed": 20261122, "survival_model": {"model": "baseline"}})
    d = tr.clinical.merge(tr.patients[["patient_id", "baseline_volume_ml", "growth_g"]], on="patient_id")
    d["log_baseline_volume_ml"] = np.log(d["baseline_volume_ml"] + 0.1)
    jobs = []
    for endpoint in ("pfs", "os"):
        for cohort in ("lung", "melanoma", "all"):
            sub = d if cohort == "all" else d[d["cohort"] == cohort]
            for name, covs in SETS.items():
                X, _ = cox.design(sub, covs)
                jobs.append((endpoint, cohort, name, sub[f"{endpoint}_days"].to_numpy(float),
                             sub[f"{endpoint}_event"].to_numpy(bool), X.to_numpy(float),
                             sub["cohort"].to_numpy() if cohort == "all" else None))
    c0, w0 = time.process_time(), time.perf_counter()
    results = [validate_cox(t, e, X, HORIZONS, n_boot, np.random.default_rng(k), strata)
               for k, (_, _, _, t, e, X, strata) in enumerate(jobs)]
    batched_wall, batched_cpu = time.perf_counter() - w0, time.process_time() - c0
    # the peer: the same first n_peer resamples (same generator, same draws), unstratified refits
    c0, w0 = time.process_time(), time.perf_counter()
    worst = 0.0
    for k, (_, cohort, _, t, e, X, strata) in enumerate(jobs):
        idx = np.random.default_rng(k).integers(0, len(t), size=(n_peer, len(t)))
        got = naive(t, e, X, idx)
        if strata is None:  # the pooled models are stratified in validate_cox; lifelines' peer is not
            w = np.zeros((n_peer, len(t)))
            np.add.at(w, (np.repeat(np.arange(n_peer), len(t)), idx.ravel()), 1.0)
            beta = fit_cox_batch(t, e, X, w)["beta"]
            c_test = np.array([concordance_index(t, -(X @ b), e) for b in beta])
            worst = max(worst, float(np.max(np.abs(c_test - got[:, 1]))))
    peer_wall, peer_cpu = time.perf_counter() - w0, time.process_time() - c0
    per_b = batched_wall / (len(jobs) * n_boot)
    per_p = peer_wall / (len(jobs) * n_peer)
    print(f"{len(jobs)} models (3 sets x 2 endpoints x 3 cohorts), n = {len(d)} patients (cohorts "
          f"{', '.join(f'{c} {n}' for c, n in d['cohort'].value_counts().sort_index().items())}), B = {n_boot}, "
          f"Brier at {len(HORIZONS)} horizons; OMP/BLAS threads = {os.environ['OMP_NUM_THREADS']}")
    print("| method | wall time | CPU time | per replicate (wall) |")
    print("| --- | --- | --- | --- |")
    print(f"| batched (`validation.validate_cox`), B = {n_boot} | {batched_wall:.1f} s | {batched_cpu:.1f} s | "
          f"{1000 * per_b:.2f} ms |")
    print(f"| peer: lifelines refit per replicate, {n_peer} replicates per model | {peer_wall:.1f} s | "
          f"{peer_cpu:.1f} s | {1000 * per_p:.2f} ms (x B = {per_p * len(jobs) * n_boot:.0f} s) |")
    print(f"peer / batched per replicate = {per_p / per_b:.0f}x; test C of the same resamples agree to {worst:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
