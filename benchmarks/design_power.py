"""Study design by simulation (design.py): wall and CPU time of a whole design, and its Cox step
against lifelines' CoxTimeVaryingFitter on the same counting-process data.

Table level, no imaging: `design.run_design` with the config's synthetic trial (visits model) and
the given number of trials and sample sizes, `--workers` processes. The peer: the per-trial
analysis (stratified Cox on the time-varying ln burden) refitted with lifelines on the first
`--peer-trials` trials at the largest sample size, timed against design.analyse on the same frames,
coefficients compared.

    .venv/bin/python benchmarks/design_power.py --trials 200 --workers 2
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from tumorburden import design  # noqa: E402
from tumorburden.synth.trial import simulate_trial  # noqa: E402


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def peer(s: dict, trials: int) -> tuple[float, float, float]:
    """(our seconds, lifelines seconds, max |coefficient difference|) over `trials` fits."""
    from lifelines import CoxTimeVaryingFitter

    n = max(s["sample_sizes"])
    ours = theirs = diff = 0.0
    for k in range(trials):
        tr = simulate_trial({"seed": int(s["seed"]) * 100003 + k, "n_patients": n,
                             "survival_model": {"death_hr_per_log_burden": float(s["hr_per_log_burden"])}})
        burden = tr.truth_scans().set_index("scan_id").loc[tr.scans["scan_id"], "total_volume_ml"].to_numpy(float)
        cp = design.counting_process(tr.clinical, tr.scans, burden)
        t0 = time.perf_counter()
        coef, _ = design.analyse(cp, float(s["volume_offset_ml"]))
        ours += time.perf_counter() - t0
        d = cp.assign(x=np.log(cp["burden"] + float(s["volume_offset_ml"])))[
            ["patient_id", "start", "stop", "event", "cohort", "x"]]
        t0 = time.perf_counter()
        fit = CoxTimeVaryingFitter().fit(d, id_col="patient_id", event_col="event", start_col="start",
                                         stop_col="stop", strata=["cohort"])
        theirs += time.perf_counter() - t0
        diff = max(diff, abs(float(fit.params_["x"]) - coef))
    return ours, theirs, diff


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--sizes", default="50,100,150,200,300")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--peer-trials", type=int, default=5)
    a = ap.parse_args(argv)
    settings = {"trials": a.trials, "sample_sizes": [int(x) for x in a.sizes.split(",")]}
    s = design.resolve(settings)
    c0, w0 = cpu_seconds(), time.perf_counter()
    power, trials = design.run_design({}, settings, workers=a.workers)
    wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
    print(f"design: {a.trials} trials x {len(s['sample_sizes'])} sample sizes x 2 burdens ({len(trials)} Cox fits), "
          f"{a.workers} processes: {wall:.0f} s wall, {cpu:.0f} CPU s")
    print("| n | burden | power | 95 % CI | mean HR | attenuation | mean deaths |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in power.itertuples():
        print(f"| {r.n_patients} | {r.burden} | {r.power:.3f} | {r.power_lower:.3f}-{r.power_upper:.3f} | "
              f"{r.mean_hr_estimate:.3f} | {r.attenuation:.3f} | {r.mean_deaths:.1f} |")
    ours, theirs, diff = peer(s, a.peer_trials)
    print(f"Cox step, {a.peer_trials} trials at n={max(s['sample_sizes'])}: design.analyse {ours:.2f} s, "
          f"lifelines CoxTimeVaryingFitter {theirs:.2f} s (ratio {theirs / ours:.1f}x); max |coef difference| {diff:.2g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
