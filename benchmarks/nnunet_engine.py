"""A real-size nnU-Net v2 network on a CT: the nnunet engine vs nnUNetv2_predict vs the plain
MONAI pipeline, in one run, each method a subprocess timed by /usr/bin/time (wall, CPU, peak RSS of
the largest process) with its whole process tree's summed RSS and PSS sampled (TreeMemory).

The network is nnU-Net's default 3d_fullres plan for CTs of 512 x 512 x 400 voxels at
0.8 x 0.8 x 1.5 mm: nnU-Net's own planner (nnUNetv2_plan_experiment) plans it from a dataset
fingerprint of that size and spacing (written here: no training data is needed to plan), with
random weights (speed does not depend on them) and 8 output classes named as our labels.

A whole 512 x 512 x 400 scan with mirroring is hours of CPU on 2 threads, so the run is a
z-slab of it (`--slices`, the full 512 x 512 in-plane) and mirroring may be turned off; the
cost per tile measured here scales to the full scan (BENCHMARKS.md says how).

    flock /tmp/tb-heavy.lock timeout 1500 python benchmarks/nnunet_engine.py --slices 80 \\
        --mirroring off --budget-min 15 --work /tmp/nnunet-bench

Methods (2 torch threads each; labels compared voxel by voxel with nnUNetv2_predict's):
  engine   tumorburden's nnunet engine (segment/nnunet.py), bf16 autocast where the CPU has it
  engine-fp32  the same in fp32
  nnunet   nnUNetv2_predict -npp 1 -nps 1 with nnUNet_def_n_proc=1 (its fastest on 2 cores)
  monai    the plain MONAI pipeline: LoadImage, nnU-Net's CT normalisation as MONAI transforms,
           sliding_window_inference (patch = the plan's, overlap 0.5, Gaussian), fp32, argmax
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DATASET_ID = 990
DATASET = f"Dataset{DATASET_ID}_CTbench"
CONFIG_FOLDER = "nnUNetTrainer__nnUNetPlans__3d_fullres"
FULL_SHAPE = (512, 512, 400)  # x, y, z voxels
SPACING = (0.8, 0.8, 1.5)     # mm
LABELS = {"background": 0, "lesion": 1, "skeletal_muscle": 2, "subcutaneous_fat": 3, "visceral_fat": 4,
          "lymph_node_lesion": 5, "lung": 6, "liver": 7}
# CT intensity statistics of the foreground, as nnU-Net's fingerprint holds them (typical abdomen CT)
CT_PROPERTIES = {"max": 3071.0, "mean": 60.0, "median": 70.0, "min": -1024.0, "percentile_00_5": -990.0,
                 "percentile_99_5": 1200.0, "std": 180.0}
THREADS = 2
NARROW = False


def env_for(work: Path) -> dict:
    return {**os.environ, "nnUNet_raw": str(work / "raw"), "nnUNet_preprocessed": str(work / "preprocessed"),
            "nnUNet_results": str(work / "results"), "nnUNet_def_n_proc": "1", "OMP_NUM_THREADS": str(THREADS),
            "MKL_NUM_THREADS": str(THREADS)}


def plan_and_weights(work: Path) -> Path:
    """nnU-Net's default 3d_fullres plan for the fingerprint of a 512x512x400 CT, random weights."""
    import nibabel as nib
    import torch

    model = work / "results" / DATASET / CONFIG_FOLDER
    if (model / "fold_0" / "checkpoint_final.pth").exists():
        return model
    raw = work / "raw" / DATASET
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(exist_ok=True)
    affine = np.diag([*SPACING, 1.0])
    # the planner opens one training case to choose its image reader; the fingerprint carries the rest
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.float32), affine), raw / "imagesTr" / "ct_000_0000.nii")
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.uint8), affine), raw / "labelsTr" / "ct_000.nii")
    dataset = {"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": 1, "file_ending": ".nii"}
    (raw / "dataset.json").write_text(json.dumps(dataset))
    pre = work / "preprocessed" / DATASET
    pre.mkdir(parents=True, exist_ok=True)
    # SimpleITK order (z, y, x), as nnU-Net's fingerprint extractor writes it
    fingerprint = {"foreground_intensity_properties_per_channel": {"0": CT_PROPERTIES},
                   "median_relative_size_after_cropping": 1.0,
                   "shapes_after_crop": [list(FULL_SHAPE[::-1])] * 3, "spacings": [list(SPACING[::-1])] * 3}
    (pre / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))
    subprocess.run([str(Path(sys.executable).parent / "nnUNetv2_plan_experiment"), "-d", str(DATASET_ID)],
                   env=env_for(work), check=True, capture_output=True)
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    model.mkdir(parents=True, exist_ok=True)
    (model / "plans.json").write_text(json.dumps(plans, indent=2))
    (model / "dataset.json").write_text(json.dumps(dataset))
    (model / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    if NARROW:  # the same plan and patch, 1/8 of the features: the pipeline's memory without the network's cost
        arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
        arch["features_per_stage"] = [max(4, f // 8) for f in arch["features_per_stage"]]
        (model / "plans.json").write_text(json.dumps(plans, indent=2))
        subprocess.run(["cp", str(model / "plans.json"), str(pre / "nnUNetPlans.json")], check=True)
    cm = PlansManager(plans).get_configuration("3d_fullres")
    torch.manual_seed(0)
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 1, len(LABELS), deep_supervision=False)
    (model / "fold_0").mkdir(exist_ok=True)
    torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainer",
                "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset},
                "inference_allowed_mirroring_axes": (0, 1, 2)}, model / "fold_0" / "checkpoint_final.pth")
    return model


def write_scan(work: Path, slices: int, inplane: int = 512, spacing=SPACING) -> Path:
    """An `inplane` x `inplane` x `slices` CT (of the 512 x 512 x 400 one) at `spacing` mm (the plan's,
    0.8 x 0.8 x 1.5, or another, which makes nnU-Net resample the scan and the logits): a
    body-sized ellipse of soft tissue and fat in air, with noise (random weights make any content
    equally costly; this keeps the normalisation honest)."""
    import nibabel as nib

    path = work / "scan" / "ct_0000.nii"
    if path.exists():
        old = nib.load(path)
        if old.shape == (inplane, inplane, slices) and np.allclose(old.header.get_zooms(), spacing):
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = (np.arange(inplane) - inplane / 2) * spacing[0]
    y = (np.arange(inplane) - inplane / 2) * spacing[1]
    inside = (x[:, None] / 170) ** 2 + (y[None, :] / 120) ** 2 <= 1
    fat = inside & ((x[:, None] / 150) ** 2 + (y[None, :] / 100) ** 2 > 1)
    plane = np.where(inside, 50.0, -1000.0)
    plane[fat] = -100.0
    hu = np.repeat(plane[:, :, None], slices, axis=2).astype(np.float32)
    hu += rng.normal(0, 15, hu.shape).astype(np.float32)
    nib.save(nib.Nifti1Image(hu, np.diag([*spacing, 1.0])), path)
    return path


def run_engine(work: Path, scan: Path, out: Path, mirroring: bool, precision: str) -> dict:
    import torch

    from tumorburden.imaging.volume import load_nifti
    from tumorburden.segment.nnunet import NnUNetModel

    torch.set_num_threads(THREADS)
    t0 = time.perf_counter()
    model = NnUNetModel.load(work / "results" / DATASET / CONFIG_FOLDER,
                             {"folds": [0], "mirroring": mirroring, "precision": precision}, "cpu")
    load_s = time.perf_counter() - t0
    image = load_nifti(scan, dtype=np.float32)
    labels, times = model.predict(image)
    np.save(out, labels)
    return {"load_s": load_s, **times}


def run_monai(work: Path, scan: Path, out: Path, mirroring: bool) -> dict:
    """MONAI's own pieces on the same network and weights: what a MONAI user would write."""
    import torch
    from monai.inferers import sliding_window_inference
    from monai.transforms import Compose, EnsureChannelFirst, LoadImage, NormalizeIntensity, ScaleIntensityRange

    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    torch.set_num_threads(THREADS)
    model = work / "results" / DATASET / CONFIG_FOLDER
    plans = json.loads((model / "plans.json").read_text())
    cm = PlansManager(plans).get_configuration("3d_fullres")
    net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                 cm.network_arch_init_kwargs_req_import, 1, len(LABELS), deep_supervision=False)
    net.load_state_dict(torch.load(model / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                                   weights_only=False)["network_weights"])
    net.eval()
    p = CT_PROPERTIES
    lo, hi = p["percentile_00_5"], p["percentile_99_5"]
    t0 = time.perf_counter()
    x = Compose([LoadImage(image_only=True), EnsureChannelFirst(),
                 # nnU-Net's CTNormalization: clip to the foreground's 0.5-99.5 percentiles, z-score
                 ScaleIntensityRange(a_min=lo, a_max=hi, b_min=lo, b_max=hi, clip=True),
                 NormalizeIntensity(subtrahend=p["mean"], divisor=p["std"])])(str(scan))
    # the plan's axes are (z, y, x); the NIfTI array is (x, y, z)
    x = x.as_tensor().permute(0, 3, 2, 1)[None].float()
    preprocess_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.inference_mode():
        def window(inp):
            return sliding_window_inference(inp, roi_size=list(cm.patch_size), sw_batch_size=1, predictor=net,
                                            overlap=0.5, mode="gaussian", sigma_scale=0.125)
        logits = window(x)
        if mirroring:
            for dims in [(2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]:
                logits += torch.flip(window(torch.flip(x, dims)), dims)
        labels = torch.argmax(logits[0], dim=0).to(torch.uint8).numpy().transpose(2, 1, 0)
    infer_s = time.perf_counter() - t0
    np.save(out, labels)
    return {"preprocess_s": preprocess_s, "infer_s": infer_s}


def run_nnunet(work: Path, scan: Path, out: Path, mirroring: bool) -> dict:
    cmd = [str(Path(sys.executable).parent / "nnUNetv2_predict"), "-i", str(scan.parent), "-o", str(out),
           "-d", str(DATASET_ID), "-c", "3d_fullres", "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"]
    if not mirroring:
        cmd.append("--disable_tta")
    subprocess.run(cmd, env=env_for(work), check=True, stdout=subprocess.DEVNULL)
    return {}


def one_tile(work: Path, mirroring: bool) -> dict:
    """Seconds for one patch through the network, fp32 and bf16 autocast (x8 with mirroring)."""
    import torch

    from tumorburden.segment.nnunet import NnUNetModel

    torch.set_num_threads(THREADS)
    model = NnUNetModel.load(work / "results" / DATASET / CONFIG_FOLDER, {"folds": [0]}, "cpu")
    net = model.networks[0]
    patch = [int(v) for v in model.configuration_manager.patch_size]
    x = torch.randn(1, 1, *patch)
    out = {"patch": patch, "parameters_m": sum(p.numel() for p in net.parameters()) / 1e6}
    with torch.inference_mode():
        for name, cast in (("fp32", None), ("bf16", torch.bfloat16)):
            ctx = torch.autocast("cpu", dtype=cast) if cast else torch.autocast("cpu", enabled=False)
            with ctx:
                net(x)  # warm-up
                t0 = time.perf_counter()
                net(x)
                out[f"tile_{name}_s"] = time.perf_counter() - t0
    return out


def n_tiles(shape_zyx, patch) -> int:
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    padded = [max(n, p) for n, p in zip(shape_zyx, patch)]
    return int(np.prod([len(s) for s in compute_steps_for_sliding_window(padded, patch, 0.5)]))


def pick_inplane(tile: dict, slices: int, mirroring: bool, budget_min: float, methods: int) -> int:
    """The largest in-plane crop whose run (every method at the fp32 tile cost, the slowest) fits."""
    per_tile = tile["tile_fp32_s"] * (8 if mirroring else 1)
    for inplane in (512, 384, 256, 192):
        estimate = methods * n_tiles((slices, inplane, inplane), tile["patch"]) * per_tile * 1.3 + 60 * methods
        if estimate <= budget_min * 60:
            return inplane
    return 192


class TreeMemory:
    """The peak of a process tree's summed memory, sampled while it runs: RSS summed over every
    process every `every_s` (/usr/bin/time's max RSS is the largest single process, which misses
    nnUNetv2_predict's worker processes), and PSS (shared pages split between the processes that
    share them: forked workers and libraries counted once) every fourth sample, as reading
    /proc/PID/smaps_rollup walks the page tables."""

    def __init__(self, pid: int, every_s: float = 0.05):
        import threading

        self.pid, self.every_s, self.rss_peak, self.pss_peak, self.samples = pid, every_s, 0, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self):
        import psutil

        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    @staticmethod
    def _pss(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self):
        import psutil

        while not self._stop.is_set():
            rss = 0
            tree = self._tree()
            for proc in tree:
                try:
                    rss += proc.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.rss_peak = max(self.rss_peak, rss)
            if self.samples % 4 == 0:
                self.pss_peak = max(self.pss_peak, sum(self._pss(proc.pid) for proc in tree))
            self.samples += 1
            self._stop.wait(self.every_s)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return {"tree_rss_peak_mb": self.rss_peak / 2**20, "tree_pss_peak_mb": self.pss_peak / 2**20,
                "memory_samples": self.samples}


def timed(cmd: list[str], env: dict) -> dict:
    """wall, user+sys CPU seconds and peak RSS of the largest process (MB) of a subprocess, by
    /usr/bin/time, and the sampled peak of its whole process tree's RSS and PSS (TreeMemory)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(["/usr/bin/time", "-f", "TIME %e %U %S %M", *cmd], env=env, stdout=out, stderr=err,
                                text=True)
        gauge = TreeMemory(proc.pid)
        proc.wait()
        tree = gauge.stop()
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(stderr[-3000:])
    line = [ln for ln in stderr.splitlines() if ln.startswith("TIME ")][-1].split()
    extra = [ln for ln in stdout.splitlines() if ln.startswith("{")]
    return {"wall_s": float(line[1]), "cpu_s": float(line[2]) + float(line[3]), "peak_mb": int(line[4]) / 1024,
            **tree, **(json.loads(extra[-1]) if extra else {})}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/nnunet-bench"))
    ap.add_argument("--slices", type=int, default=80, help="z-slab of the 512x512x400 scan to run (400: all; 0: the plan's patch depth)")
    ap.add_argument("--inplane", type=int, default=512, help="in-plane crop of the scan (512: all)")
    ap.add_argument("--spacing", default="0.8,0.8,1.5",
                    help="the scan's voxel size in mm, x,y,z (the plan's by default; another makes nnU-Net resample)")
    ap.add_argument("--budget-min", type=float, default=0,
                    help="if > 0: the largest in-plane crop (512, 384, 256, 192) whose estimated run fits")
    ap.add_argument("--mirroring", choices=["on", "off"], default="off")
    ap.add_argument("--methods", default="engine,engine-fp32,nnunet,monai")
    ap.add_argument("--tile-only", action="store_true", help="only the cost of one patch (to size a run)")
    ap.add_argument("--narrow", action="store_true",
                    help="the plan's network with 1/8 of its features (another dataset id): the memory and "
                         "time of everything around the network, affordable on a whole scan")
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    mirroring = a.mirroring == "on"
    if a.narrow:
        global DATASET_ID, DATASET, NARROW
        DATASET_ID, DATASET, NARROW = DATASET_ID + 1, f"Dataset{DATASET_ID + 1}_CTbenchNarrow", True
    work = a.work.resolve()
    if a.run:
        scan = work / "scan" / "ct_0000.nii"
        result = {"engine": lambda: run_engine(work, scan, a.out, mirroring, "auto"),
                  "engine-fp32": lambda: run_engine(work, scan, a.out, mirroring, "fp32"),
                  "monai": lambda: run_monai(work, scan, a.out, mirroring),
                  "nnunet": lambda: run_nnunet(work, scan, a.out, mirroring),
                  "tile": lambda: one_tile(work, mirroring)}[a.run]()
        print(json.dumps(result, default=str))
        return
    work.mkdir(parents=True, exist_ok=True)
    plan_and_weights(work)
    env = env_for(work)
    me = [sys.executable, str(Path(__file__).resolve()), "--work", str(work), "--mirroring", a.mirroring,
          *(["--narrow"] if a.narrow else [])]
    tile = timed([*me, "--run", "tile"], env)
    print(json.dumps({"one_tile": tile}), flush=True)
    if a.tile_only:
        return
    if a.slices <= 0:  # one tile deep: the plan's patch
        a.slices = int(tile["patch"][0])
    if a.budget_min > 0:
        a.inplane = pick_inplane(tile, a.slices, mirroring, a.budget_min, len(a.methods.split(",")))
    spacing = tuple(float(v) for v in a.spacing.split(","))
    # the tiles cover the scan on the plan's grid (z, y, x), as nnU-Net resamples it
    grid = [int(round(n * have / plan)) for n, have, plan in zip((a.slices, a.inplane, a.inplane), spacing[::-1],
                                                                  SPACING[::-1])]
    print(json.dumps({"slices": a.slices, "inplane": a.inplane, "model_grid": grid,
                      "tiles": n_tiles(grid, tile["patch"])}), flush=True)
    scan = write_scan(work, a.slices, a.inplane, spacing)
    results = {}
    for method in a.methods.split(","):
        out = work / "out" / method
        out.parent.mkdir(exist_ok=True)
        results[method] = timed([*me, "--run", method, "--out", str(out if method == "nnunet" else f"{out}.npy")],
                                env)
        print(json.dumps({method: results[method]}), flush=True)
    import nibabel as nib

    reference = None
    if "nnunet" in results:
        reference = np.asarray(nib.load(work / "out" / "nnunet" / "ct.nii").dataobj)
    for method in results:
        if method != "nnunet" and reference is not None:
            labels = np.load(work / "out" / f"{method}.npy")
            results[method]["agreement_with_nnunet"] = float(np.mean(labels == reference))
    base = results.get("nnunet")
    print(f"\nscan {a.inplane}x{a.inplane}x{a.slices} at {'x'.join(f'{v:g}' for v in spacing)} mm, mirroring "
          f"{a.mirroring}, {THREADS} threads; patch {tile['patch']}, {tile['parameters_m']:.2f} M parameters")
    print("| method | wall s | CPU s | max RSS MB (largest process) | tree RSS MB | tree PSS MB | wall vs nnUNetv2_predict "
          "| max RSS vs | tree PSS vs | labels = nnUNetv2_predict |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for method, r in results.items():
        ratios = ([f"{r[k] / base[k]:.2f}x" for k in ("wall_s", "peak_mb", "tree_pss_peak_mb")] if base
                  else ["", "", ""])
        agree = r.get("agreement_with_nnunet")
        print(f"| {method} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_mb']:.0f} | {r['tree_rss_peak_mb']:.0f} | "
              f"{r['tree_pss_peak_mb']:.0f} | {' | '.join(ratios)} | {'' if agree is None else f'{100 * agree:.4f} %'} |")
    (work / "results.json").write_text(json.dumps({"slices": a.slices, "inplane": a.inplane, "spacing": spacing, "mirroring": a.mirroring,
                                                   "one_tile": tile, "methods": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
