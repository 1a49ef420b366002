"""CPU seconds per scan of the demo model's inference with 1 or 2 torch threads (and other
sliding-window settings), on scans of a finished run, against the default settings in the same
process; label agreement with the default shows what a setting changes.

    .venv/bin/python benchmarks/segment_threads.py results/synthetic-demo SYN-001-S0 SYN-005-S1 [--threads 1]

One process per thread count (torch fixes its pool at the first parallel call): run it once with
--threads 1 and once with --threads 2 and compare the `default` lines.
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

CASES = [("default", {}), ("fp32", {"precision": "fp32"}), ("overlap 0", {"overlap": 0.0}),
         ("sw_batch_size 8", {"sw_batch_size": 8}), ("roi 64", {"roi_size": [64, 64, 64]})]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("results")
    p.add_argument("scans", nargs="+")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cases", type=int, default=len(CASES), help="the first N settings only")
    a = p.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import numpy as np
    import torch

    from tumorburden.imaging.volume import load_nifti
    from tumorburden.segment import engine
    from tumorburden.segment.bundle import load_bundle

    torch.set_num_threads(a.threads)
    device = torch.device("cpu")
    bundle = load_bundle(ROOT / "models" / "tumorburden_ct", device)
    images = [load_nifti(Path(a.results) / "scans" / s / "image.nii.gz") for s in a.scans]
    reference = None
    for name, settings in CASES[:a.cases]:
        c0, t0 = time.process_time(), time.perf_counter()
        labels = [engine.infer_labels(im, bundle, settings, device)[0] for im in images]
        wall, cpu = (time.perf_counter() - t0) / len(images), (time.process_time() - c0) / len(images)
        reference = reference or labels
        agree = np.mean([np.mean(x == r) for x, r in zip(labels, reference)])
        print(f"{a.threads} thread(s), {name:16s} wall/scan {wall:6.2f} s, CPU/scan {cpu:6.2f} s, "
              f"voxels equal to default {agree:.5f}", flush=True)


if __name__ == "__main__":
    main()
