"""Coverage of the Cox 95 % CI for the hazard ratio per ln(baseline burden), over simulated trials.

Table level, no imaging: each trial is the synthetic trial's own design (synth.trial.design_trial,
the survival model of truth/model.json: Weibull proportional hazards in ln(baseline volume) and
the growth rate g, baseline hazard per cohort, administrative censoring + dropout), with the
seed changed. Each trial is analysed with tumorburden.survival.cox.fit_cox, stratified by cohort,
on the true baseline volume (v0_total_ml) for PFS and OS:
- "adjusted": ln(volume) + g / 0.001, the model the data were drawn from: the CI should cover the
  true HR in 95 % of trials;
- "univariable": ln(volume) alone, as a study without g would fit it: a Cox model that leaves out
  a covariate estimates a marginal HR nearer 1 than the conditional one (non-collapsibility), so
  its coverage of the conditional HR is below 95 %, by how much this measures.
Reports coverage with its Monte-Carlo SE, mean estimate, and the mean CI width.

    .venv/bin/python benchmarks/survival_coverage.py --trials 200 --patients 600 --workers 2
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from tumorburden.survival import cox  # noqa: E402
from tumorburden.synth import trial as synth  # noqa: E402


def one_trial(args) -> list[dict]:
    seed, n = args
    tr = synth.design_trial({"size": "impact", "seed": seed, "n_patients": n,
                               "survival_model": {"model": "baseline"}})
    true_hr = float(tr.model["hazard_ratios"]["per_log_volume"])
    d = tr.clinical.merge(tr.patients[["patient_id", "v0_total_ml", "growth_g"]], on="patient_id")
    d["log_volume"] = np.log(d["v0_total_ml"])
    d["g_per_0.001"] = d["growth_g"] / 0.001
    rows = []
    for endpoint in ("pfs", "os"):
        for model, terms in (("adjusted", ["log_volume", "g_per_0.001"]), ("univariable", ["log_volume"])):
            r, _ = cox.fit_cox(d, f"{endpoint}_days", f"{endpoint}_event", terms, strata="cohort")
            r = r[0]
            rows.append({"seed": seed, "endpoint": endpoint, "model": model, "hr": r["hr"], "lower": r["hr_lower"],
                         "upper": r["hr_upper"], "true_hr": true_hr, "status": r["status"],
                         "covers": r["hr_lower"] <= true_hr <= r["hr_upper"], "events": r["events"]})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--patients", type=int, default=600)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--out", default=None, help="per-trial CSV (optional)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    jobs = [(a.first_seed + i, a.patients) for i in range(a.trials)]
    rows = []
    with ProcessPoolExecutor(a.workers) as pool:
        for k, part in enumerate(pool.map(one_trial, jobs), 1):
            rows += part
            if k % 10 == 0:
                print(f"{k}/{a.trials} trials, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    if a.out:
        df.to_csv(a.out, index=False)
    ok = df[df["status"] == "ok"]
    print(f"{a.trials} trials x {a.patients} patients, {time.perf_counter() - t0:.0f} s; true HR {df['true_hr'].iloc[0]:g}")
    print("| endpoint | model | trials fitted | coverage of the true HR | Monte-Carlo SE | mean HR | mean events |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (endpoint, model), g in ok.groupby(["endpoint", "model"], sort=False):
        cov = g["covers"].mean()
        se = math.sqrt(cov * (1 - cov) / len(g))
        print(f"| {endpoint} | {model} | {len(g)} | {cov:.3f} | {se:.3f} | {np.exp(np.log(g['hr']).mean()):.3f} |"
              f" {g['events'].mean():.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
