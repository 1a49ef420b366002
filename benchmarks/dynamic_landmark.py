"""Dynamic prediction on an IMPACT-sized table: the landmark super-model, predictions at every
scan and landmark, and dynamic accuracy (tumorburden.survival.dynamic.dynamic_rows), for one
cohort x endpoint of 600 patients with up to 7 scans each (table level, no imaging).

Target (issue 19): dynamic predictions for all patients at all scans <= 30 s on 2 cores.
Peer, in the same run: R's ``coxph(Surv(landmark, stop, status) ~ ... + cluster(id))`` on the
same stacked landmark data (written here) plus ``survfit(fit, newdata)`` for the same stacked
rows, timed inside R (proc.time) and as a process (wall, and CPU of the child).

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 .venv/bin/python benchmarks/dynamic_landmark.py [patients]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tumorburden.survival import dynamic, landmark  # noqa: E402
from tumorburden.survival.analysis import DEFAULTS  # noqa: E402

R_PEER = r"""
suppressPackageStartupMessages(library(survival))
args <- commandArgs(trailingOnly = TRUE)
lm <- read.csv(args[1])
t0 <- proc.time()
fit <- coxph(Surv(landmark_days, stop, status) ~ log_burden + log_burden_slope + new_lesion +
             log_burden:f1 + log_burden_slope:f1 + new_lesion:f1 + log_burden:f2 + log_burden_slope:f2 +
             new_lesion:f2 + f1 + f2 + cluster(patient_id), data = lm, ties = "efron")
sf <- survfit(fit, newdata = lm)
t1 <- proc.time() - t0
cat(sprintf("R %.3f %.3f %d\n", t1[["elapsed"]], t1[["user.self"]] + t1[["sys.self"]], ncol(sf$surv)))
"""


def trial(n: int, seed: int = 20261202):
    rng = np.random.default_rng(seed)
    scans, patients = [], []
    for i in range(n):
        pid = f"SYN-{i:04d}"
        level, slope = rng.normal(3.5, 0.8), rng.normal(0.002, 0.006)
        t = np.arange(0, 2000, 1.0)
        hazard = 1 / 700 * np.exp(0.8 * (level + slope * t - 3.5))
        k = np.searchsorted(np.cumsum(hazard), rng.exponential())  # the day the cumulative hazard passes E ~ Exp(1)
        death = float(t[k]) if k < len(t) else 2000.0
        follow = min(death, rng.uniform(300, 900))
        for k, day in enumerate([-7, 56, 112, 168, 224, 280, 336]):
            if day < follow:
                scans.append({"patient_id": pid, "scan_id": f"{pid}-S{k}", "days": float(day),
                              "total_volume_ml": float(np.exp(level + slope * max(day, 0) + rng.normal(0, 0.05))),
                              "n_new_lesions": int(k > 0 and rng.uniform() < 0.08)})
        patients.append({"patient_id": pid, "cohort": "lung", "time": follow, "event": int(death <= follow)})
    return pd.DataFrame(scans), pd.DataFrame(patients)


def main(n: int = 600) -> None:
    burden, data = trial(n)
    s = dict(DEFAULTS)
    history = landmark.scan_history(burden, s["volume_offset_ml"])
    w0, c0 = time.perf_counter(), time.process_time()
    out = dynamic.dynamic_rows("lung", "os", data, history, s)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    pred = pd.concat(out["dynamic_prediction"])
    acc = pd.DataFrame(out["dynamic_accuracy"])
    lm = landmark.landmark_data(data, history, s["landmarks_days"], s["landmark_window_days"])
    print(f"{n} patients, {len(burden)} scans, {len(lm)} stacked rows, {int(lm['status'].sum())} events in windows, "
          f"{len(pred)} predictions ({pred[['patient_id', 'landmark_days']].drop_duplicates().shape[0]} "
          f"patient-landmarks x 4 windows x 2 models)")
    print(f"tumorburden dynamic_rows (fit both models, predict, score {acc['landmark_days'].nunique()} landmarks): "
          f"wall {wall:.2f} s, CPU {cpu:.2f} s")
    w0, c0 = time.perf_counter(), time.process_time()
    fit = landmark.fit_landmark(lm, s["landmark_covariates"], s["landmarks_days"], "smooth")
    landmark.predict_landmark(fit, lm, [s["landmark_window_days"]])
    wall_fit, cpu_fit = time.perf_counter() - w0, time.process_time() - c0
    print(f"tumorburden super-model fit + robust SE + predictions of the stacked rows: wall {wall_fit:.2f} s, "
          f"CPU {cpu_fit:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        f1 = (lm["landmark_days"] - min(s["landmarks_days"])) / (max(s["landmarks_days"]) - min(s["landmarks_days"]))
        lm.assign(f1=f1, f2=f1**2).to_csv(Path(tmp) / "lm.csv", index=False)
        (Path(tmp) / "peer.R").write_text(R_PEER)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        w0 = time.perf_counter()
        proc = subprocess.run(["Rscript", str(Path(tmp) / "peer.R"), str(Path(tmp) / "lm.csv")], capture_output=True,
                              text=True, check=True)
        r_wall = time.perf_counter() - w0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    r_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    _, inner_wall, inner_cpu, curves = proc.stdout.split()
    print(f"peer R coxph(cluster) + survfit(newdata = {curves} rows): inside R wall {float(inner_wall):.2f} s, "
          f"CPU {float(inner_cpu):.2f} s; process wall {r_wall:.2f} s, CPU {r_cpu:.2f} s")
    print(f"ratio (fit + predictions, ours / R inside R, wall): {wall_fit / float(inner_wall):.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 600)
