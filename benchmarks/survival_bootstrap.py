"""Bootstrap of the C-index: 1000 replicates of Harrell's and Uno's C for 600 patients.

Target (issue 6): <= 5 s on 2 cores. Vectorised (tumorburden.survival.concordance: every
replicate as matrix products over resampling counts) against its peer, the same replicates
recomputed one resample at a time with lifelines' concordance_index and scikit-survival's
concordance_index_ipcw. Both get the same resampling counts; the script checks they agree.

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/survival_bootstrap.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import numpy as np  # noqa: E402

from tumorburden.survival import concordance  # noqa: E402
from tumorburden.synth import trial as synth  # noqa: E402


def main() -> int:
    n_boot = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    tr = synth.design_trial({"size": "impact", "seed": 20261122, "survival_model": {"model": "baseline"}})
    d = tr.clinical.merge(tr.patients[["patient_id", "baseline_volume_ml"]], on="patient_id")
    t, e, risk = d["pfs_days"].to_numpy(), d["pfs_event"].to_numpy().astype(bool), d["baseline_volume_ml"].to_numpy()
    W = concordance.bootstrap_counts(len(t), n_boot, np.random.default_rng(7))
    timings = {}
    for name, fn in (("vectorised", concordance.bootstrap_concordance),
                     ("loop (lifelines + scikit-survival per resample)", concordance.bootstrap_concordance_loop)):
        best = None
        for _ in range(3 if name == "vectorised" else 1):
            t0 = time.perf_counter()
            out = fn(t, e, {"x": risk}, W)["x"]
            dt = time.perf_counter() - t0
            best = dt if best is None else min(best, dt)
        timings[name] = (best, out)
    (tv, a), (tl, b) = timings.values()
    assert np.allclose(a["harrell"], b["harrell"], rtol=1e-12) and np.allclose(a["uno"], b["uno"], rtol=1e-10)
    print(f"{n_boot} bootstrap replicates of Harrell's + Uno's C, n = {len(t)} patients, "
          f"{int(e.sum())} events; OMP/BLAS threads = {os.environ['OMP_NUM_THREADS']}")
    print("| method | wall time | per replicate |")
    print("| --- | --- | --- |")
    for name, (dt, _) in timings.items():
        print(f"| {name} | {dt:.2f} s | {1000 * dt / n_boot:.2f} ms |")
    print(f"loop / vectorised = {tl / tv:.0f}x; replicates identical (max |diff| "
          f"{max(np.nanmax(abs(a['harrell'] - b['harrell'])), np.nanmax(abs(a['uno'] - b['uno']))):.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
