"""Bundles as MONAI runs them: the engine against `python -m monai.bundle run` on the same NIfTI,
for the shipped demo bundle and for a model-zoo-style bundle this test writes itself; the
declarations the engine reads, and the one-line errors of a bundle it cannot run."""

import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tiny_bundle import metadata as tiny_metadata, write_bundle
from tumorburden import labels as L
from tumorburden.imaging.volume import Volume, load_nifti, save_nifti
from tumorburden.segment import engine
from tumorburden.segment.bundle import BundleError, load_bundle
from tumorburden.synth import phantom
from tumorburden.synth.render import grid_affine_ras, image_from_tissue, render_tissue
from tumorburden.synth.trial import design_trial

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "models" / "tumorburden_ct"


def synth_scan(matrix: int, pixel_mm: float, slice_mm: float, n_slices: int) -> Volume:
    """A slab of `n_slices` through the first lesion of a scan of the synthetic trial (HU, its RAS
    affine, voxels in the DICOM order the renderer writes), rendered by tumorburden.synth."""
    trial = design_trial({"seed": 20261122, "n_patients": 2, "matrix": matrix, "pixel_mm": pixel_mm,
                          "slice_mm": slice_mm})
    grid = trial.model["grid"]
    scan_id = sorted(set(trial.lesions["scan_id"]))[0]
    scan = trial.scan(scan_id)
    p = trial.patients.set_index("patient_id").loc[scan["patient_id"]]
    body = phantom.Body(a=p["body_a_mm"], b=p["body_b_mm"], sat=p["sat_mm"], muscle=p["muscle_mm"])
    tissue, _ = render_tissue(body, trial.lesions[trial.lesions["scan_id"] == scan_id], grid)
    hu = image_from_tissue(tissue, grid, 1.2, 12.0, np.random.default_rng(zlib.crc32(scan_id.encode())))
    hu = np.round(hu - 1024.0).astype(np.float32)
    lesion_slices = np.nonzero(np.isin(phantom.LABEL[tissue], L.LESION_LABELS).any(axis=(0, 1)))[0]
    k0 = int(np.clip(lesion_slices[len(lesion_slices) // 2] - n_slices // 2, 0, hu.shape[2] - n_slices))
    affine = grid_affine_ras(grid)
    affine[:3, 3] += affine[:3, 2] * k0
    return Volume(hu[:, :, k0:k0 + n_slices], affine)


def monai_bundle_run(bundle: Path, images: dict[str, Path], work: Path) -> dict[str, nib.Nifti1Image]:
    """MONAI's own `monai.bundle run` of the bundle's configs/inference.json on the images, on the
    CPU, as a model-zoo bundle's README says to run it; its label maps by image name."""
    data = work / "data"
    (data / "imagesTs").mkdir(parents=True)
    for name, path in images.items():
        shutil.copy(path, data / "imagesTs" / f"{name}.nii.gz")
    out = work / "monai_out"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json",
           "--meta_file", "configs/metadata.json", "--bundle_root", str(bundle),
           "--dataset_dir", str(data), "--output_dir", str(out)]
    proc = subprocess.run(cmd, cwd=bundle, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = {p.name.split("_")[0]: nib.load(p) for p in out.glob("*/*.nii.gz")}
    assert sorted(written) == sorted(images), proc.stderr[-2000:]
    return written


def engine_labels(bundle_path: Path, image_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Our engine's labels (fp32 on the CPU, like the MONAI run) and the model grid's affine."""
    bundle = load_bundle(bundle_path)
    image = load_nifti(image_path, dtype=np.float32)
    labels, _ = engine.infer_labels(image, bundle, {"precision": "fp32", "device": "cpu"})
    model_affine = bundle.preprocess(engine.to_metatensor(image)).affine.numpy()
    return labels, model_affine


def on_a_tie(voxels: np.ndarray, scan_affine: np.ndarray, model_affine: np.ndarray) -> np.ndarray:
    """Whether each scan voxel's centre lies halfway between two model voxel centres on some axis:
    there nearest-neighbour may take either, and MONAI's grid_sample and our rounding differ."""
    m = np.linalg.inv(model_affine) @ scan_affine
    c = voxels @ m[:3, :3].T + m[:3, 3]
    return (np.abs(c - np.floor(c) - 0.5) < 1e-3).any(axis=1)


def test_demo_bundle_runs_under_monai_bundle_run_with_the_engines_labels(tmp_path):
    at_model_spacing = synth_scan(128, 3.0, 3.0, 16)  # the demo model's 3 mm: resampling is the identity
    finer = synth_scan(160, 2.5, 2.0, 24)             # 2.5 x 2.5 x 2 mm: model voxels half-way between scan voxels
    images = {}
    for name, vol in (("model", at_model_spacing), ("finer", finer)):
        images[name] = tmp_path / f"{name}.nii.gz"
        save_nifti(vol, images[name], dtype=np.int16)
    ran = monai_bundle_run(DEMO, images, tmp_path / "run")

    for name, path in images.items():
        ours, model_affine = engine_labels(DEMO, path)
        theirs = np.asanyarray(ran[name].dataobj)
        np.testing.assert_allclose(ran[name].affine, nib.load(path).affine, atol=1e-4)
        assert theirs.shape == ours.shape
        assert set(np.unique(ours)) >= {L.BACKGROUND, L.LESION, L.MUSCLE, L.SAT, L.VAT}
        differ = np.argwhere(theirs != ours)
        if name == "model":
            assert len(differ) == 0
        else:
            # the only difference: scan voxels exactly between two model voxels (nearest-neighbour ties)
            assert len(differ) / ours.size < 0.005
            assert on_a_tie(differ, nib.load(path).affine, model_affine).all()


def write_zoo_bundle(folder: Path, extra_transforms: bool = True) -> Path:
    """A bundle as the MONAI model zoo lays them out (spleen_ct_segmentation's inference.json):
    written here from MONAI's conventions, not by tumorburden. A 3-channel UNet with fixed (seeded)
    weights; preprocessing with a HU window to 0..1, a foreground crop and z-score normalisation,
    none of which the older `tumorburden` block could say; probabilities inverted, then argmax."""
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    net = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, "channels": [8, 16, 32],
           "strides": [2, 2], "num_res_units": 1, "norm": "batch"}
    transforms = [
        {"_target_": "LoadImaged", "keys": "@image_key"},
        {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
        {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "@image_key", "pixdim": [4.0, 4.0, 4.0], "mode": "bilinear"},
        {"_target_": "ScaleIntensityRanged", "keys": "@image_key", "a_min": -200, "a_max": 250, "b_min": 0.0,
         "b_max": 1.0, "clip": True},
    ]
    if extra_transforms:
        transforms += [
            {"_target_": "CropForegroundd", "keys": "@image_key", "source_key": "@image_key", "margin": 3,
             "allow_smaller": True},
            {"_target_": "NormalizeIntensityd", "keys": "@image_key", "nonzero": True},
        ]
    transforms.append({"_target_": "EnsureTyped", "keys": "@image_key"})
    inference = {
        "imports": ["$import glob", "$import numpy", "$import os"],
        "bundle_root": ".",
        "image_key": "image",
        "output_dir": "$@bundle_root + '/eval'",
        "output_ext": ".nii.gz",
        "output_dtype": "$numpy.float32",
        "output_postfix": "trans",
        "separate_folder": True,
        "load_pretrain": True,
        "dataset_dir": "/workspace/data/Task03_Liver",
        "datalist": "$list(sorted(glob.glob(@dataset_dir + '/imagesTs/*.nii.gz')))",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": net,
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": transforms},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False,
                       "num_workers": 0},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 32], "sw_batch_size": 4, "overlap": 0.5},
        "postprocessing": {"_target_": "Compose", "transforms": [
            {"_target_": "Activationsd", "keys": "pred", "softmax": True},
            {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key",
             "nearest_interp": False, "to_tensor": True},
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_ext": "@output_ext",
             "output_dtype": "@output_dtype", "output_postfix": "@output_postfix",
             "separate_folder": "@separate_folder"},
        ]},
        "handlers": [{"_target_": "StatsHandler", "iteration_log": False}],
        "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "val_handlers": "@handlers", "amp": True},
        "checkpointloader": {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                             "load_dict": {"model": "@network"}},
        "initialize": ["$monai.utils.set_determinism(seed=123)",
                       "$@checkpointloader(@evaluator) if @load_pretrain else None"],
        "run": ["$@evaluator.run()"],
    }
    meta = {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": "0.1.0", "name": "Liver tumour CT segmentation (test)", "task": "liver and tumour",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "hounsfield", "modality": "CT", "num_channels": 1,
                                 "spatial_shape": [32, 32, 32], "dtype": "float32", "is_patch_data": True,
                                 "channel_def": {"0": "image"}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": 3,
                                 "spatial_shape": [32, 32, 32], "dtype": "float32", "is_patch_data": True,
                                 "channel_def": {"0": "background", "1": "liver", "2": "tumor"}}},
        },
    }
    (folder / "configs" / "inference.json").write_text(json.dumps(inference, indent=4))
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4))
    from monai.networks.nets import UNet

    torch.manual_seed(17)
    model = UNet(**{k: v for k, v in net.items() if k != "_target_"})
    with torch.no_grad():  # batch-norm statistics that are not the identity, so the weights are all used
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(model.state_dict(), folder / "models" / "model.pt")
    return folder


def test_a_model_zoo_style_bundle_runs_unchanged_with_monai_bundle_runs_labels(tmp_path):
    bundle = write_zoo_bundle(tmp_path / "zoo")
    image = synth_scan(96, 4.0, 4.0, 20)  # at the bundle's 4 mm, stored L->R flipped (DICOM order)
    save_nifti(image, tmp_path / "scan.nii.gz", dtype=np.int16)
    theirs = np.asanyarray(monai_bundle_run(bundle, {"scan": tmp_path / "scan.nii.gz"}, tmp_path / "run")["scan"].dataobj)
    ours, _ = engine_labels(bundle, tmp_path / "scan.nii.gz")

    loaded = load_bundle(bundle)
    assert loaded.declared and loaded.lut == [L.BACKGROUND, L.LIVER, L.LESION]
    assert loaded.inferer["mode"] == "constant" and loaded.inferer["overlap"] == 0.5  # the declared inferer
    counts = np.bincount(ours.ravel(), minlength=8)
    assert (counts[[L.BACKGROUND, L.LIVER, L.LESION]] > 0.01 * ours.size).all()  # a map worth comparing
    # MONAI writes channel numbers; ours are tumorburden labels by channel_def's names
    np.testing.assert_array_equal(ours, np.asarray(loaded.lut, np.uint8)[theirs.astype(np.intp)])
    # the crop and normalisation are applied, not skipped: without them the same weights label otherwise
    plain, _ = engine_labels(write_zoo_bundle(tmp_path / "plain", extra_transforms=False), tmp_path / "scan.nii.gz")
    assert (plain != ours).mean() > 0.01


class _Recorder(torch.nn.Module):
    """Two channels (lesion where the input > 0), and the shape of every batch of windows it saw."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return torch.cat([-x, x], dim=1)


def _declared_bundle(folder: Path, inferer: dict | None = None, post: list | None = None,
                     extra_meta: dict | None = None) -> Path:
    write_bundle(folder)
    meta = tiny_metadata()
    del meta["tumorburden"]  # the declared form: inference.json says it all
    meta.update(extra_meta or {})
    cfg = json.loads((folder / "configs" / "inference.json").read_text())
    cfg["preprocessing"] = {"_target_": "Compose", "transforms": [
        {"_target_": "LoadImaged", "keys": "image"},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": "image", "pixdim": [4.0, 4.0, 4.0]},
        {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": -1000, "a_max": 1000, "b_min": -1,
         "b_max": 1, "clip": True},
    ]}
    if inferer is not False:
        cfg["inferer"] = inferer or {"_target_": "SlidingWindowInferer", "roi_size": [24, 24, 24], "sw_batch_size": 3,
                                     "overlap": 0.5}
    if post is not None:
        cfg["postprocessing"] = {"_target_": "Compose", "transforms": post}
    (folder / "configs" / "inference.json").write_text(json.dumps(cfg))
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta))
    return folder


def _cube(shape=(64, 64, 20), spacing=(2.5, 2.5, 5.0)) -> Volume:
    hu = np.full(shape, -300.0, np.float32)
    hu[10:25, 8:20, 5:12] = 200.0
    return Volume(hu, np.diag([*spacing, 1.0]))


def _windows(bundle, settings: dict) -> tuple[set, int, int, np.ndarray]:
    """(window shapes, largest batch, windows run, labels) of one inference with a recording network."""
    bundle.network = recorder = _Recorder()
    labels, _ = engine.infer_labels(_cube(), bundle, {"precision": "fp32", "device": "cpu", **settings})
    return {s[2:] for s in recorder.shapes}, max(s[0] for s in recorder.shapes), sum(s[0] for s in recorder.shapes), labels


def test_the_declared_inferer_runs_and_the_configuration_overrides_it(tmp_path):
    from scipy import ndimage

    bundle = load_bundle(_declared_bundle(tmp_path / "b"))
    assert bundle.declared and bundle.spacing_mm == (4.0, 4.0, 4.0)
    shapes, batch, n, labels = _windows(bundle, {})
    assert shapes == {(24, 24, 24)} and batch == 3  # the bundle's SlidingWindowInferer
    truth = _cube().array > 0
    assert (labels[ndimage.binary_erosion(truth, iterations=2)] == L.LESION).all()
    assert not labels[~ndimage.binary_dilation(truth, iterations=2)].any()
    shapes, batch, _, _ = _windows(bundle, {"roi_size": [16, 16, 16], "sw_batch_size": 1})
    assert shapes == {(16, 16, 16)} and batch == 1  # segmentation.roi_size / sw_batch_size win where set
    assert _windows(bundle, {"overlap": 0.0})[2] < n  # declared overlap 0.5: more windows than none


def test_a_legacy_bundle_keeps_its_tumorburden_block(tmp_path):
    bundle = load_bundle(write_bundle(tmp_path / "b"))  # metadata.json's tumorburden block, no preprocessing
    assert not bundle.declared and bundle.spacing_mm == (4.0, 4.0, 4.0) and bundle.roi_size == (32, 32, 32)
    assert bundle.inferer["mode"] == "gaussian" and bundle.inferer["overlap"] == 0.25


def test_the_shipped_bundle_declares_what_the_engine_reads():
    bundle = load_bundle(DEMO)
    meta = json.loads((DEMO / "configs" / "metadata.json").read_text())
    assert bundle.declared and "tumorburden" not in meta
    assert bundle.spacing_mm == (3.0, 3.0, 3.0) and bundle.roi_size == (48, 48, 48)
    assert (bundle.inferer["mode"], bundle.inferer["overlap"], bundle.inferer["sw_batch_size"]) == ("gaussian", 0.25, 2)


@pytest.mark.parametrize("change, message", [
    (dict(extra_meta={"tumorburden": {"spacing_mm": [2, 2, 2]}}),
     r"metadata.json: tumorburden.spacing_mm repeats what configs/inference.json declares"),
    (dict(inferer=False), r"inference.json: declares preprocessing but no inferer"),
    (dict(inferer={"_target_": "SimpleInferer"}), r"inference.json: inferer is a SimpleInferer; .*SlidingWindowInferer"),
    (dict(post=[{"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
                {"_target_": "AsDiscreted", "keys": "pred", "threshold": 0.5}]),
     r"inference.json: postprocessing's AsDiscreted does not take the argmax"),
])
def test_a_declaration_the_engine_cannot_run_is_a_one_line_error(tmp_path, change, message):
    with pytest.raises(BundleError, match=message) as err:
        load_bundle(_declared_bundle(tmp_path / "b", **change))
    assert "\n" not in str(err.value)


def test_a_transform_that_cannot_be_built_names_the_file_and_key(tmp_path):
    folder = _declared_bundle(tmp_path / "b")
    cfg = json.loads((folder / "configs" / "inference.json").read_text())
    cfg["preprocessing"]["transforms"].append({"_target_": "NoSuchTransformd", "keys": "image"})
    (folder / "configs" / "inference.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match=r"inference.json: preprocessing cannot be built \(.*NoSuchTransformd") as err:
        load_bundle(folder)
    assert "\n" not in str(err.value)


def test_label_changing_postprocessing_is_named_as_not_applied(tmp_path, caplog):
    post = [{"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            {"_target_": "KeepLargestConnectedComponentd", "keys": "pred", "applied_labels": [1]}]
    load_bundle(_declared_bundle(tmp_path / "b", post=post))
    assert "postprocessing KeepLargestConnectedComponentd not applied" in caplog.text


def test_preprocessing_that_fails_on_a_scan_names_the_file(tmp_path):
    folder = _declared_bundle(tmp_path / "b")
    cfg = json.loads((folder / "configs" / "inference.json").read_text())
    cfg["preprocessing"]["transforms"].append({"_target_": "ScaleIntensityd", "keys": ["image", "label"]})
    (folder / "configs" / "inference.json").write_text(json.dumps(cfg))
    bundle = load_bundle(folder)
    with pytest.raises(BundleError, match=r"inference.json: preprocessing failed on the scan .*key 'image' alone") as err:
        engine.infer_labels(_cube(), bundle, {"device": "cpu"})
    assert "\n" not in str(err.value)
