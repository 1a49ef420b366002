"""A tiny nnU-Net v2 trained model, made with nnU-Net's own tools: a raw dataset of torso
phantoms (their own label numbers and names, not ours), nnUNetv2_plan_and_preprocess's
fingerprint and 3d_fullres plan (its network narrowed to 4-16 features so it runs in seconds),
the trainer class's network, a few optimiser steps on the phantoms preprocessed by the plan's
own preprocessor, and checkpoints written as nnU-Net writes them (fold_N/checkpoint_final.pth)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from tumorburden import labels as L
from tumorburden.imaging.volume import Volume, save_nifti
from torso_phantom import make_phantom

DATASET_ID = 517
DATASET = f"Dataset{DATASET_ID:03d}_TinyTorso"
CONFIG_FOLDER = "nnUNetTrainer__nnUNetPlans__3d_fullres"
# the model's own label numbers, in another order than ours; "tumor" is an alias of our lesion
MODEL_LABELS = {"background": 0, "liver": 1, "tumor": 2, "lung": 3, "skeletal_muscle": 4,
                "subcutaneous_fat": 5, "visceral_fat": 6, "lymph_node_lesion": 7}
OURS_TO_MODEL = {L.label_of_name(name): number for name, number in MODEL_LABELS.items()}
BIN = Path(sys.executable).parent


def nnunet_env(root: Path) -> dict:
    env = {**os.environ, "nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "preprocessed"),
           "nnUNet_results": str(root / "results"), "nnUNet_def_n_proc": "1", "OMP_NUM_THREADS": "1"}
    return env


SHAPE, SPACING, SCALE = (40, 32, 24), (6.0, 6.0, 6.0), 0.6  # the training phantoms: 240 x 192 x 144 mm


def write_phantom(path: Path, seed: int, spacing=SPACING, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """A torso phantom CT (NIfTI) at `path`; returns its truth labels (ours) and affine."""
    hu, truth, affine, _ = make_phantom(shape=shape, spacing=spacing, seed=seed, scale=SCALE)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_nifti(Volume(hu, affine), path, dtype=np.float32)
    return truth, affine


def make_model(root: Path, folds=(0, 1), steps: int = 12) -> Path:
    """The trained-model folder (nnUNet_results/<dataset>/<trainer>__<plans>__3d_fullres)."""
    import torch

    raw = root / "raw" / DATASET
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    lut = np.zeros(256, np.uint8)
    for ours, model in OURS_TO_MODEL.items():
        lut[ours] = model
    for i in range(3):
        truth, affine = write_phantom(raw / "imagesTr" / f"torso_{i:03d}_0000.nii.gz", seed=i)
        save_nifti(Volume(lut[truth], affine), raw / "labelsTr" / f"torso_{i:03d}.nii.gz", dtype=np.uint8)
    (raw / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": MODEL_LABELS, "numTraining": 3, "file_ending": ".nii.gz"}))
    env = nnunet_env(root)
    subprocess.run([str(BIN / "nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres",
                    "--no_pp", "-npfp", "1"], env=env, check=True, capture_output=True)
    plans_file = root / "preprocessed" / DATASET / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [min(4 * 2 ** k, 16) for k in range(arch["n_stages"])]
    plans_file.write_text(json.dumps(plans, indent=2))

    out = root / "results" / DATASET / CONFIG_FOLDER
    out.mkdir(parents=True)
    shutil.copy(plans_file, out / "plans.json")
    shutil.copy(raw / "dataset.json", out / "dataset.json")
    shutil.copy(root / "preprocessed" / DATASET / "dataset_fingerprint.json", out / "dataset_fingerprint.json")

    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset = json.loads((out / "dataset.json").read_text())
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    pre = cm.preprocessor_class(verbose=False)
    cases = []
    for i in range(3):
        data, seg, _ = pre.run_case([str(raw / "imagesTr" / f"torso_{i:03d}_0000.nii.gz")],
                                    str(raw / "labelsTr" / f"torso_{i:03d}.nii.gz"), pm, cm, dataset)
        cases.append((torch.from_numpy(np.asarray(data, np.float32))[None],
                      torch.from_numpy(np.maximum(np.asarray(seg), 0).astype(np.int64))))
    patch = [int(v) for v in cm.patch_size]
    torch.set_num_threads(1)
    for fold in folds:
        torch.manual_seed(fold)
        net = nnUNetTrainer.build_network_architecture(pm, cm, 1, len(MODEL_LABELS), enable_deep_supervision=False)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        rng = np.random.default_rng(fold)
        losses = []
        for step in range(steps):
            x, y = cases[step % len(cases)]
            corner = [int(rng.integers(0, max(1, n - p + 1))) for n, p in zip(x.shape[2:], patch)]
            box = tuple(slice(c, c + p) for c, p in zip(corner, patch))
            xb, yb = x[(slice(None), slice(None), *box)], y[(slice(None), *box)]
            loss = torch.nn.functional.cross_entropy(net(_pad(xb, patch)), _pad(yb, patch, channel=False))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        (out / f"fold_{fold}" / "validation").mkdir(parents=True)
        _progress_png(losses, out / f"fold_{fold}" / "progress.png")
        # what nnU-Net's validation writes (nnUNetv2_export_model_to_zip ships it); no validation was run
        (out / f"fold_{fold}" / "validation" / "summary.json").write_text(json.dumps({"foreground_mean": {}}))
        torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainer",
                    "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": fold,
                                  "dataset_json": dataset},
                    "inference_allowed_mirroring_axes": (0, 1, 2), "current_epoch": steps},
                   out / f"fold_{fold}" / "checkpoint_final.pth")
    return out


def _progress_png(losses, path: Path) -> None:
    """The training curve, as nnU-Net's trainer leaves one in each fold folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(losses)
    fig.savefig(path)
    plt.close(fig)


def _pad(t, patch, channel=True):
    import torch

    lead = 2 if channel else 1
    pad = []
    for n, p in reversed(list(zip(t.shape[lead:], patch))):
        pad += [0, max(0, p - n)]
    return torch.nn.functional.pad(t, pad) if any(pad) else t


def nnunet_predict(root: Path, images: Path, out: Path, folds=(0,), mirroring=True) -> None:
    """nnU-Net's own CLI on a folder of <case>_0000.nii.gz images."""
    cmd = [str(BIN / "nnUNetv2_predict"), "-i", str(images), "-o", str(out), "-d", str(DATASET_ID),
           "-c", "3d_fullres", "-f", *map(str, folds), "-device", "cpu", "-npp", "1", "-nps", "1"]
    if not mirroring:
        cmd.append("--disable_tta")
    subprocess.run(cmd, env=nnunet_env(root), check=True, capture_output=True)
