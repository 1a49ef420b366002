"""Dynamic accuracy side by side on the faithful simulator (table level, no imaging): the landmark
super-model against the baseline-only Cox model (and the null model), Brier, IPA and AUC for the
window at each landmark, on the simulator's true burden (sum of true lesion volumes per scan, new
lesions as the simulator draws them), so the comparison is free of segmentation error.

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/dynamic_accuracy_sim.py [patients] [seed]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import pandas as pd  # noqa: E402

from tumorburden.survival import dynamic  # noqa: E402
from tumorburden.synth import trial as synth  # noqa: E402


def true_burden(tr) -> pd.DataFrame:
    per_scan = tr.lesions.groupby("scan_id").agg(total_volume_ml=("volume_ml", "sum"), n_new_lesions=("new", "sum"))
    b = tr.scans[["patient_id", "scan_id", "days"]].merge(per_scan, on="scan_id", how="left")
    return b.fillna({"total_volume_ml": 0.0, "n_new_lesions": 0}).assign(n_lesions=0, sld_mm=0.0)


def main(n: int = 600, seed: int = 20261202) -> None:
    tr = synth.simulate_trial({"n_patients": n, "seed": seed})
    features = tr.clinical[["patient_id", "cohort"]]
    w0, c0 = time.perf_counter(), time.process_time()
    out = dynamic.dynamic_tables(features, tr.clinical, true_burden(tr), {"pooled": True})
    print(f"{n} patients (seed {seed}), {len(tr.scans)} scans: wall {time.perf_counter() - w0:.1f} s, "
          f"CPU {time.process_time() - c0:.1f} s")
    acc = out["dynamic_accuracy"]
    acc = acc[(acc["cohort"] == "all") & (acc["status"] == "ok")]
    cols = ["endpoint", "landmark_days", "model", "n", "cases", "brier", "ipa", "auc", "auc_lower", "auc_upper"]
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(acc[cols].to_string(index=False))
    lm = out["landmark_model"]
    with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
        print(lm[lm["cohort"] == "all"][["endpoint", "model", "term", "coef", "robust_se", "p", "status"]]
              .to_string(index=False))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
