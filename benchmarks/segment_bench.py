"""Seconds per scan and peak RSS of segmentation on a full thorax-abdomen-pelvis CT, end to end
(load image.nii.gz, preprocess, infer, labels back on the scan grid, write segmentation.nii.gz),
against a plain MONAI pipeline on the same network in the same run:

  plain: LoadImage -> Orientation -> Spacing -> ScaleIntensityRange -> sliding_window_inference
         in fp32 -> softmax resampled back to the full-resolution grid (float, all channels)
         -> argmax -> SaveImage
  ours:  tumorburden.segment.run.segment (bf16 autocast where the CPU has it, argmax at model
         resolution, uint8 labels resampled by index lookup)

Networks: the shipped demo bundle, and a SegResNet with 32 initial filters at 1.5 mm (random
weights: the time does not depend on them), the size of real lesion models.
Each case runs in its own process so its peak RSS is its own.

Usage: .venv/bin/python benchmarks/segment_bench.py [--threads 2] [--cases demo,segresnet32]
       [--shape 512 512 400]   (prints a Markdown table for BENCHMARKS.md)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))


def make_scan(path: Path, shape) -> None:
    """A synthetic TAP CT of the requested size (one patient of the IMPACT-sized trial)."""
    import numpy as np

    from tumorburden.imaging.volume import Volume, save_nifti
    from tumorburden.synth import phantom
    from tumorburden.synth.render import grid_affine_ras, image_from_tissue, render_tissue
    from tumorburden.synth.trial import design_trial

    matrix, _, n_slices = shape
    slice_mm = phantom.SCAN_LENGTH_MM / n_slices
    trial = design_trial({"size": "impact", "n_patients": 1, "matrix": matrix, "slice_mm": slice_mm})
    scan_id = trial.scans["scan_id"].iloc[0]
    p = trial.patients.iloc[0]
    body = phantom.Body(a=p["body_a_mm"], b=p["body_b_mm"], sat=p["sat_mm"], muscle=p["muscle_mm"])
    grid = trial.model["grid"]
    tissue, _ = render_tissue(body, trial.lesions[trial.lesions["scan_id"] == scan_id], grid)
    stored = image_from_tissue(tissue, grid, 1.2, 12.0, np.random.default_rng(0))
    hu = (stored.astype(np.int32) - 1024).astype(np.int16)
    save_nifti(Volume(hu, grid_affine_ras(grid)), path)


def segresnet_bundle(folder: Path) -> Path:
    """A bundle folder holding a SegResNet(32 filters) at 1.5 mm with random weights."""
    import torch
    from monai.networks.nets import SegResNet

    sys.path.insert(0, str(ROOT / "workflow"))
    from tumorburden import labels as L

    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "models").mkdir(parents=True, exist_ok=True)
    net_def = {"_target_": "SegResNet", "spatial_dims": 3, "in_channels": 1, "out_channels": len(L.NAMES),
               "init_filters": 32, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1]}
    torch.manual_seed(0)
    net = SegResNet(**{k: v for k, v in net_def.items() if k != "_target_"})
    torch.save(net.state_dict(), folder / "models" / "model.pt")
    meta = {"name": "segresnet32", "version": "bench",
            "network_data_format": {"inputs": {"image": {"num_channels": 1}},
                                    "outputs": {"pred": {"channel_def": {str(k): v for k, v in L.NAMES.items()}}}},
            "tumorburden": {"spacing_mm": [1.5, 1.5, 1.5], "roi_size": [96, 96, 96],
                            "intensity": {"a_min": -1000.0, "a_max": 1000.0, "b_min": -1.0, "b_max": 1.0, "clip": True}}}
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta))
    (folder / "configs" / "inference.json").write_text(json.dumps({"network_def": net_def}))
    return folder


def run_ours(image: str, bundle: str, out: str, threads: int) -> dict:
    from tumorburden.segment.run import segment

    segment(Path(image), Path(out), settings={"bundle": bundle}, threads=threads)
    return {}


def run_plain(image: str, bundle: str, out: str, threads: int) -> dict:
    import torch
    from monai.inferers import sliding_window_inference
    from monai.transforms import Compose, EnsureChannelFirst, LoadImage, SaveImage, SpatialResample

    from tumorburden.segment.bundle import load_bundle

    torch.set_num_threads(threads)
    b = load_bundle(bundle)
    loaded = Compose([LoadImage(image_only=True), EnsureChannelFirst()])(image)
    original_affine, original_shape = loaded.affine.clone(), loaded.shape[1:]
    x = b.preprocess(loaded)  # the bundle's own transforms (orientation, spacing, HU window)
    with torch.inference_mode():
        logits = sliding_window_inference(x[None], roi_size=b.roi_size, sw_batch_size=2, predictor=b.network,
                                          overlap=0.25, mode="gaussian")[0]
        prob = torch.softmax(logits, dim=0)
        prob.affine = x.affine
        # full-resolution float post-processing: every channel back on the scan grid, then argmax
        full = SpatialResample(mode="bilinear")(prob, dst_affine=original_affine, spatial_size=original_shape)
        labels = torch.argmax(full, dim=0, keepdim=True).to(torch.uint8)
    labels.affine = original_affine
    SaveImage(output_dir=str(Path(out).parent), output_postfix="", separate_folder=False, resample=False,
              output_dtype="uint8")(labels)
    return {}


def child(case: str, image: str, bundle: str, out: str, threads: int) -> None:
    import resource

    import torch

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    (run_ours if case == "ours" else run_plain)(image, bundle, out, threads)
    wall = time.perf_counter() - t0
    rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
    cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    print(json.dumps({"wall_s": wall, "rss_gb": rss_gb, "cpu_s": cpu}))


def measure(case, image, bundle, out, threads) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "workflow"), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, __file__, "--child", case, image, bundle, out, str(threads)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cases", default="demo,segresnet32")
    ap.add_argument("--shape", type=int, nargs=3, default=[512, 512, 400])
    ap.add_argument("--work", default=None, help="folder for the scan and outputs (default: a temporary one)")
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="segbench"))
    work.mkdir(parents=True, exist_ok=True)
    image = work / f"ct_{'x'.join(map(str, a.shape))}.nii.gz"
    if not image.exists():
        t0 = time.perf_counter()
        make_scan(image, a.shape)
        print(f"# rendered {image} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    bundles = {"demo": str(ROOT / "models" / "tumorburden_ct"),
               "segresnet32": str(segresnet_bundle(work / "segresnet32"))}
    print(f"| network | pipeline | wall s | CPU s | peak RSS GB | plain / ours (wall) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in a.cases.split(","):
        res = {}
        for case in ("ours", "plain"):
            res[case] = measure(case, str(image), bundles[name], str(work / f"{name}_{case}.nii.gz"), a.threads)
            print(f"# {name} {case}: {res[case]}", file=sys.stderr)
        for case in ("ours", "plain"):
            r = res[case]
            if "error" in r:
                print(f"| {name} | {case} | failed: {r['error'][:120]} | | | |")
                continue
            ratio = (res["plain"]["wall_s"] / res["ours"]["wall_s"]) if case == "plain" and "error" not in res["ours"] else None
            print(f"| {name} | {case} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['rss_gb']:.2f} | "
                  f"{'' if ratio is None else f'{ratio:.2f}'} |")


if __name__ == "__main__":
    main()
