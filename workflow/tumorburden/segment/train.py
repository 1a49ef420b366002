"""Train the demo segmentation model on a synthetic trial and write it as a MONAI bundle.

The training trial is the embedded synthetic trial drawn with its own seed (`trial_seed`),
so the pipeline's default trial (another seed) is held out. Scans are rendered in memory
on several voxel grids (the model must work whatever the scanner's spacing) and passed
through the very preprocessing the engine uses at inference: the transforms the bundle
declares in configs/inference.json (`inference_config`, built by the same
bundle.declared_inference the engine runs), so training and inference cannot disagree about
orientation, spacing or HU window.

Everything random is seeded (`seed`): the same settings on the same torch build and thread
count give the same weights.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from tumorburden import labels as L
from tumorburden.imaging.volume import Volume
from tumorburden.segment import engine
from tumorburden.synth import phantom
from tumorburden.synth.render import grid_affine_ras, image_from_tissue, render_tissue
from tumorburden.synth.trial import design_trial

log = logging.getLogger(__name__)

DEFAULTS: dict = {
    "trial_seed": 4242,        # seed of the training trial; the evaluation trial must use another
    "seed": 0,                 # weights init, patch sampling, augmentation
    "n_patients": 40,
    "scans_per_grid": 40,      # scans rendered on each grid below
    "grids": [[128, 3.0, 3.0], [96, 4.0, 4.0]],  # [matrix, pixel_mm, slice_mm]
    "spacing_mm": [3.0, 3.0, 3.0],
    "roi_size": [48, 48, 48],
    "channels": [16, 32, 64, 128],
    "steps": 6000,
    "batch_size": 4,
    "lr": 0.005,
    "lr_decay": 0.9995,          # per step after the warm-up
    "checkpoint_every": 250,    # write the bundle every this many steps (0: only at the end)
    "lesion_fraction": 0.67,   # share of patches centred on a lesion
    "hu_window": [-300.0, 300.0],  # HU scaled to -1..1 (clipped): a soft-tissue window, where lesions
                                   # differ from their host organ by 30-65 HU
    "lesion_weight": 2.0,      # loss weight of the lesion classes (1, 5) against 1 for the others
    "inserted_lesions": 0.5,   # share of patches that get 1-3 small lesions inserted (see insert_small_lesions)
    "inserted_diameter_mm": [4.0, 12.0],
    "inserted_hu": [20.0, 70.0],  # soft-tissue density of metastases
    "bf16": True,              # bf16 autocast for training on a CPU with native bf16
}

WARMUP_STEPS = 10
# The training scans' image formation (the synthetic trial's defaults).
TRAIN_BLUR_MM, TRAIN_NOISE_HU = 1.2, 12.0


def intensity(s: dict) -> dict:
    """The bundle's intensity handling: the HU window scaled to -1..1."""
    lo, hi = (float(v) for v in s["hu_window"])
    return {"a_min": lo, "a_max": hi, "b_min": -1.0, "b_max": 1.0, "clip": True}


def model_units_per_hu(s: dict) -> float:
    """How much one HU moves the model's input (the intensity window's slope)."""
    w = intensity(s)
    return (w["b_max"] - w["b_min"]) / (w["a_max"] - w["a_min"])


def network_def(channels) -> dict:
    """The MONAI UNet, in MONAI bundle config syntax (what configs/inference.json holds)."""
    channels = [int(c) for c in channels]
    return {
        "_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": len(L.NAMES),
        "channels": channels, "strides": [2] * (len(channels) - 1), "num_res_units": 1, "norm": "INSTANCE",
    }


def inference_config(s: dict, nd: dict) -> dict:
    """configs/inference.json: the network and its inference in MONAI bundle config syntax, laid out
    as the model zoo's bundles are (`python -m monai.bundle run --config_file configs/inference.json
    --meta_file configs/metadata.json --bundle_root <bundle> --dataset_dir <dir with imagesTs/>`).
    The engine reads preprocessing and inferer from it; the postprocessing takes the argmax at the
    model's grid and inverts it with nearest-neighbour labels, which is what the engine does."""
    window = intensity(s)
    image = "@image_key"
    return {
        "imports": ["$import glob", "$import numpy", "$import torch"],
        "bundle_root": ".",
        "image_key": "image",
        "output_dir": "$@bundle_root + '/eval'",
        "output_ext": ".nii.gz",
        "output_dtype": "$numpy.uint8",
        "output_postfix": "seg",
        "separate_folder": True,
        "load_pretrain": True,
        "dataset_dir": "/workspace/data",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": nd,
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "LoadImaged", "keys": image},
            {"_target_": "EnsureChannelFirstd", "keys": image},
            # labels spelled out: MONAI's default is changing to the image's own `space`
            {"_target_": "Orientationd", "keys": image, "axcodes": "RAS", "labels": [["L", "R"], ["P", "A"], ["I", "S"]]},
            # border: a scan whose extent is not a whole number of model voxels keeps its edge values
            {"_target_": "Spacingd", "keys": image, "pixdim": list(map(float, s["spacing_mm"])), "mode": "bilinear",
             "padding_mode": "border"},
            {"_target_": "ScaleIntensityRanged", "keys": image, **window},
            {"_target_": "EnsureTyped", "keys": image},
        ]},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": list(map(int, s["roi_size"])), "sw_batch_size": 2,
                    "overlap": 0.25, "mode": "gaussian", "padding_mode": "replicate"},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": image,
             "nearest_interp": True, "to_tensor": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_ext": "@output_ext",
             "output_dtype": "@output_dtype", "output_postfix": "@output_postfix",
             "separate_folder": "@separate_folder"},
        ]},
        "handlers": [{"_target_": "StatsHandler", "iteration_log": False}],
        # fp32: the reference run; the engine's bf16 autocast gives the same labels (docs/README.md)
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers", "amp": False},
        "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                             "load_dict": {"model": "@network"}, "map_location": "@device"},
        "initialize": ["$@checkpointloader(@evaluator) if @load_pretrain else None"],
        "run": ["$@evaluator.run()"],
    }


def render_training_scans(s: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, labels) pairs at the model spacing, preprocessed exactly as at inference."""
    from monai.transforms import Orientation, Spacing

    from tumorburden.segment.bundle import declared_inference

    pre_image = declared_inference(inference_config(s, network_def(s["channels"])), Path("."))[0]
    pre_label = [Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))), Spacing(pixdim=s["spacing_mm"], mode="nearest")]
    out = []
    for g, (matrix, pixel, slice_mm) in enumerate(s["grids"]):
        trial = design_trial({"seed": int(s["trial_seed"]), "n_patients": int(s["n_patients"]),
                              "matrix": int(matrix), "pixel_mm": float(pixel), "slice_mm": float(slice_mm),
                              # the trial the shipped bundle was trained on (the first survival model)
                              "survival_model": {"model": "baseline"}})
        grid = trial.model["grid"]
        rng = np.random.default_rng(np.random.SeedSequence([int(s["seed"]), g]))
        # every grid gets other scans, and scans with lesions are preferred: they carry the rare class
        with_lesions = sorted(set(trial.lesions["scan_id"]))
        order = rng.permutation(len(with_lesions))
        chosen = [with_lesions[i] for i in order[: int(s["scans_per_grid"])]]
        for scan_id in chosen:
            scan = trial.scan(scan_id)
            p = trial.patients.set_index("patient_id").loc[scan["patient_id"]]
            body = phantom.Body(a=p["body_a_mm"], b=p["body_b_mm"], sat=p["sat_mm"], muscle=p["muscle_mm"])
            tissue, _ = render_tissue(body, trial.lesions[trial.lesions["scan_id"] == scan_id], grid)
            noise_rng = np.random.default_rng(np.random.SeedSequence([int(s["trial_seed"]), zlib.crc32(scan_id.encode())]))
            hu = image_from_tissue(tissue, grid, TRAIN_BLUR_MM, TRAIN_NOISE_HU, noise_rng).astype(np.float32) - 1024.0
            affine = grid_affine_ras(grid)
            image = pre_image(engine.to_metatensor(Volume(hu, affine))).as_tensor()[0].numpy()
            lab = engine.to_metatensor(Volume(phantom.LABEL[tissue], affine))
            for t in pre_label:
                lab = t(lab)
            out.append((image.astype(np.float32), lab.as_tensor()[0].numpy().astype(np.uint8)))
        log.info("grid %d x %g mm / %g mm: %d scans rendered", matrix, pixel, slice_mm, len(chosen))
    return out


def lesion_voxels(lab: np.ndarray) -> list[np.ndarray]:
    """Voxel indices of each lesion (connected component) in a label map.

    Lesion patches are centred on a lesion drawn uniformly, then a voxel of it: drawn over all
    lesion voxels instead, a 5 mm lesion (2-3 voxels at 3 mm) is a thousand times rarer than a
    50 mm one and the model barely sees small lesions (issue 4's 5-10 mm sensitivity).
    """
    from scipy import ndimage

    comp, _ = ndimage.label(np.isin(lab, L.LESION_LABELS))
    per_lesion = ndimage.value_indices(comp, ignore_value=0)
    return [np.stack(per_lesion[k], axis=1) for k in sorted(per_lesion)]


# Where small lesions are inserted: host tissue -> the label the lesion gets.
INSERTION_HOSTS = {L.LIVER: L.LESION, L.LUNG: L.LESION, L.SAT: L.LESION, L.VAT: L.NODE_LESION}


def insert_small_lesions(img: np.ndarray, lab: np.ndarray, rng: np.random.Generator, s: dict) -> None:
    """Insert 1-3 small ellipsoidal lesions into a patch (in place), each inside one host tissue.

    Small lesions are rare in any trial (5-10 mm: one in ten lesions of the demo trial), and a
    model that meets them only there learns that a small spot inside liver or fat is liver or fat.
    Each inserted lesion has soft-tissue density (`inserted_hu`), a one-voxel partial-volume rim
    and the training scans' noise; voxels at least half covered take the lesion label."""
    window = intensity(s)
    per_hu = model_units_per_hu(s)
    spacing = np.asarray(s["spacing_mm"], dtype=float)
    for _ in range(int(rng.integers(1, 4))):
        host = list(INSERTION_HOSTS)[int(rng.integers(len(INSERTION_HOSTS)))]
        where = np.argwhere(lab == host)
        if len(where) == 0:
            continue
        centre = where[int(rng.integers(len(where)))]
        semi = rng.uniform(*s["inserted_diameter_mm"]) / 2 * rng.uniform(0.8, 1.2, 3)  # mm per axis
        reach = np.ceil(semi / spacing).astype(int) + 1
        lo = np.maximum(centre - reach, 0)
        hi = np.minimum(centre + reach + 1, lab.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        grid = np.stack(np.meshgrid(*[np.arange(a, b) - c for a, b, c in zip(lo, hi, centre)], indexing="ij"), -1)
        r = np.sqrt((((grid * spacing) / semi) ** 2).sum(-1))  # 1 on the surface
        rim_voxels = semi.mean() / spacing.mean()  # r per voxel at the surface
        cover = np.clip((1.0 - r) * rim_voxels + 0.5, 0.0, 1.0) * (lab[box] == host)
        hu = rng.uniform(*s["inserted_hu"])
        value = (np.clip(hu, window["a_min"], window["a_max"]) - window["a_min"]) * per_hu + window["b_min"]
        patch = img[box]
        noise = rng.normal(0.0, TRAIN_NOISE_HU * per_hu, patch.shape)
        img[box] = (patch * (1 - cover) + cover * (value + noise)).astype(img.dtype)
        lab[box][cover >= 0.5] = INSERTION_HOSTS[host]


def _crop(image, lab, centre, size):
    """Patch of `size` around `centre`, edge-padded where it leaves the volume."""
    lo = np.asarray(centre) - np.asarray(size) // 2
    pad = [(max(0, -lo[a]), max(0, lo[a] + size[a] - image.shape[a])) for a in range(3)]
    sl = tuple(slice(max(0, lo[a]), min(image.shape[a], lo[a] + size[a])) for a in range(3))
    img, lb = image[sl], lab[sl]
    if any(p != (0, 0) for p in pad):
        img = np.pad(img, pad, mode="edge")
        lb = np.pad(lb, pad, mode="constant")
    return img, lb


def train(settings: dict | None, out_dir: Path) -> dict:
    """Train and write the bundle to out_dir; returns a summary (also in docs/training.json)."""
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet
    from monai.utils import set_determinism

    s = {**DEFAULTS, **(settings or {})}
    started = time.perf_counter()
    set_determinism(seed=int(s["seed"]))
    torch.manual_seed(int(s["seed"]))
    rng = np.random.default_rng(int(s["seed"]))

    data = render_training_scans(s)
    lesions = [lesion_voxels(lab) for _, lab in data]
    body_idx = [np.argwhere(lab > 0) for _, lab in data]
    render_s = time.perf_counter() - started
    log.info("%d training scans rendered in %.0f s", len(data), render_s)

    nd = network_def(s["channels"])
    net = UNet(**{k: v for k, v in nd.items() if k != "_target_"})
    weight = torch.ones(len(L.NAMES))
    weight[list(L.LESION_LABELS)] = float(s["lesion_weight"])
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True, weight=weight)
    opt = torch.optim.AdamW(net.parameters(), lr=float(s["lr"]), weight_decay=1e-5)
    steps = int(s["steps"])
    # warm-up, then exponential decay: the learning rate at a step does not depend on the total, so a
    # run of N steps is exactly the first N steps of a longer one (checkpoints are shorter runs)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / WARMUP_STEPS) * float(s["lr_decay"]) ** max(0, k - WARMUP_STEPS))
    size = [int(v) for v in s["roi_size"]]
    use_bf16 = bool(s["bf16"]) and engine.cpu_has_bf16()
    per_hu = model_units_per_hu(s)
    net.train()
    t_loop, losses = time.perf_counter(), []
    for step in range(steps):
        imgs, labs = [], []
        for _ in range(int(s["batch_size"])):
            i = int(rng.integers(len(data)))
            if lesions[i] and rng.random() < float(s["lesion_fraction"]):
                pool = lesions[i][int(rng.integers(len(lesions[i])))]
            else:
                pool = body_idx[i]
            centre = pool[int(rng.integers(len(pool)))] + rng.integers(-size[0] // 4, size[0] // 4 + 1, 3)
            img, lb = _crop(*data[i], centre, size)
            img, lb = img.copy(), lb.copy()  # never alter the training scans themselves
            if rng.random() < float(s["inserted_lesions"]):
                insert_small_lesions(img, lb, rng, s)
            # intensity augmentation: scanner calibration offset and noise level differ between sites
            img = img + np.float32(rng.normal(0, 10.0) * per_hu)
            img = img + rng.normal(0, rng.uniform(0, 8.0) * per_hu, img.shape).astype(np.float32)
            imgs.append(img)
            labs.append(lb)
        x = torch.from_numpy(np.stack(imgs)[:, None])
        y = torch.from_numpy(np.stack(labs)[:, None].astype(np.int64))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            out = net(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if int(s["checkpoint_every"]) and (step + 1) % int(s["checkpoint_every"]) == 0 and step + 1 < steps:
            write_bundle(net, nd, {**s, "steps": step + 1}, out_dir, {"checkpoint_of": steps, "steps_done": step + 1,
                                                                        "train_s": round(time.perf_counter() - t_loop, 1)})
            net.train()
        if (step + 1) % 10 == 0 or step == 0:
            el = time.perf_counter() - t_loop
            log.info("step %d/%d loss %.4f (mean of last 10 %.4f), %.1f s, ~%.0f s left", step + 1, steps,
                     losses[-1], float(np.mean(losses[-10:])), el, el / (step + 1) * (steps - step - 1))
    train_s = time.perf_counter() - t_loop
    summary = {"settings": s, "n_scans": len(data), "render_s": round(render_s, 1), "train_s": round(train_s, 1),
               "final_loss_mean_last_100": round(float(np.mean(losses[-100:])), 4),
               "params": int(sum(p.numel() for p in net.parameters())),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "bf16": use_bf16}
    write_bundle(net.eval(), nd, s, out_dir, summary)
    log.info("trained %d steps in %.0f s (%d parameters) -> %s", steps, train_s, summary["params"], out_dir)
    return summary


def write_bundle(net: torch.nn.Module, nd: dict, s: dict, out_dir: Path, summary: dict) -> None:
    out_dir = Path(out_dir)
    (out_dir / "configs").mkdir(parents=True, exist_ok=True)
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    (out_dir / "docs").mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    torch.save(state, out_dir / "models" / "model.pt")
    metadata = {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": "1.0.0",
        "name": "tumorburden_ct",
        "task": "Whole-body CT segmentation of lesions, skeletal muscle, subcutaneous and visceral fat, lung, liver",
        "description": "Demo model trained on the tumorburden synthetic trial only. It has never seen a real CT: "
                       "replace it with your own bundle for real studies.",
        "authors": "tumorburden",
        "copyright": "tumorburden contributors",
        "monai_version": __import__("monai").__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "data_source": f"tumorburden synthetic trial, seed {s['trial_seed']}",
        "data_type": "nifti",
        "intended_use": "Testing and demonstrating the tumorburden pipeline; not for clinical use.",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1,
                                 "spatial_shape": list(s["roi_size"]), "dtype": "float32",
                                 "value_range": [-1.0, 1.0], "is_patch_data": True,
                                 "channel_def": {"0": "image"}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": len(L.NAMES),
                                 "spatial_shape": list(s["roi_size"]), "dtype": "float32", "value_range": [],
                                 "is_patch_data": True,
                                 "channel_def": {str(k): v for k, v in sorted(L.NAMES.items())}}},
        },
    }
    (out_dir / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    (out_dir / "configs" / "inference.json").write_text(json.dumps(inference_config(s, nd), indent=2) + "\n")
    (out_dir / "docs" / "training.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
