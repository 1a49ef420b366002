"""The nnunet engine against nnU-Net's own nnUNetv2_predict, on a tiny model made by nnU-Net's own
planner and network classes (tiny_nnunet.py); its zip form, fold ensembles, bad model folders,
and the segment stage end to end through Snakemake."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tumorburden import labels as L
from tumorburden.imaging.volume import load_nifti
from tumorburden.segment.nnunet import NnUNetError, NnUNetModel
from tiny_nnunet import BIN, DATASET_ID, MODEL_LABELS, make_model, nnunet_env, nnunet_predict, write_phantom
from workflow_run import snakemake

FP32 = {"precision": "fp32"}


@pytest.fixture(scope="session")
def nnunet_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet")
    make_model(root, folds=(0, 1))
    return root


@pytest.fixture(scope="session")
def model_dir(nnunet_root):
    return next((nnunet_root / "results").glob("Dataset*/nnUNetTrainer__nnUNetPlans__3d_fullres"))


@pytest.fixture(scope="session")
def scans(nnunet_root):
    """Two CT images nnU-Net was not trained on: one at the model's spacing, one on another grid
    (so nnU-Net resamples the image to the model and the logits back), as nnU-Net's input folder."""
    folder = nnunet_root / "scans"
    write_phantom(folder / "native_0000.nii.gz", seed=21)
    write_phantom(folder / "other_0000.nii.gz", seed=22, spacing=(4.5, 5.0, 8.0), shape=(56, 40, 18))
    return folder


@pytest.fixture(scope="session")
def reference(nnunet_root, model_dir, scans):
    """nnU-Net's labels (the model's numbers): nnUNetv2_predict's with fold 0 and its defaults
    (mirroring); and nnUNetPredictor's (the class that CLI runs, here in-process, which saves a
    second CLI start) with folds 0+1 ensembled and mirroring off (--disable_tta)."""
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    nnunet_predict(nnunet_root, scans, nnunet_root / "fold0", folds=(0,))
    out = {"fold0": {case: np.asarray(nib.load(nnunet_root / "fold0" / f"{case}.nii.gz").dataobj)
                     for case in ("native", "other")}}
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_dir), use_folds=(0, 1))
    out["folds01"] = {}
    for case in ("native", "other"):
        image, properties = SimpleITKIO().read_images([str(scans / f"{case}_0000.nii.gz")])
        # SimpleITK's axis order (z, y, x) back to the NIfTI's
        out["folds01"][case] = np.asarray(predictor.predict_single_npy_array(image, properties)).transpose(2, 1, 0)
    return out


def _model_labels_to_ours(model_labels: np.ndarray) -> np.ndarray:
    lut = np.zeros(len(MODEL_LABELS), np.uint8)
    for name, number in MODEL_LABELS.items():
        lut[number] = L.label_of_name(name)
    return lut[model_labels]


def _agreement(model: NnUNetModel, scans, reference: dict) -> dict:
    out = {}
    for case, ref in reference.items():
        image = load_nifti(scans / f"{case}_0000.nii.gz", dtype=np.float32)
        labels, times = model.predict(image)
        assert labels.shape == image.shape and labels.dtype == np.uint8
        truth = _model_labels_to_ours(ref)
        # a model that predicts one class everywhere would agree trivially
        assert len(np.unique(truth)) >= 3, np.unique(truth)
        out[case] = float(np.mean(labels == truth))
    return out


def test_labels_equal_nnunetv2_predict(model_dir, scans, reference):
    model = NnUNetModel.load(model_dir, {**FP32, "folds": [0]}, "cpu")
    agreement = _agreement(model, scans, reference["fold0"])
    assert min(agreement.values()) >= 0.999, agreement


def test_two_folds_ensembled_without_mirroring_equal_nnunetv2_predict(model_dir, scans, reference):
    model = NnUNetModel.load(model_dir, {**FP32, "folds": [0, 1], "mirroring": False}, "cpu")
    assert len(model.networks) == 2
    agreement = _agreement(model, scans, reference["folds01"])
    assert min(agreement.values()) >= 0.999, agreement
    # the ensemble is not one fold's answer
    one = NnUNetModel.load(model_dir, {**FP32, "folds": [1], "mirroring": False}, "cpu")
    image = load_nifti(scans / "other_0000.nii.gz", dtype=np.float32)
    assert np.mean(one.predict(image)[0] != model.predict(image)[0]) > 0


def test_exported_zip_runs_in_place(nnunet_root, model_dir, scans, reference, tmp_path):
    zipped = tmp_path / "model.zip"
    subprocess.run([str(BIN / "nnUNetv2_export_model_to_zip"), "-d", str(DATASET_ID), "-o", str(zipped),
                    "-c", "3d_fullres", "-f", "0", "1"], env=nnunet_env(nnunet_root), check=True,
                   capture_output=True)
    before = sorted(p.name for p in tmp_path.iterdir())
    model = NnUNetModel.load(zipped, {**FP32, "folds": [0]}, "cpu")
    assert model.configuration == "3d_fullres" and model.folds == ["0"]
    agreement = _agreement(model, scans, reference["fold0"])
    assert min(agreement.values()) >= 0.999, agreement
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # read in place, nothing unpacked
    # every fold in the zip is found when none is named
    assert NnUNetModel.load(zipped, FP32, "cpu").folds == ["0", "1"]


def test_labels_are_mapped_by_name(model_dir):
    model = NnUNetModel.load(model_dir, {**FP32, "folds": [0]}, "cpu")
    assert model.lut[MODEL_LABELS["tumor"]] == L.LESION
    assert model.lut[MODEL_LABELS["liver"]] == L.LIVER
    assert model.provides == frozenset(range(1, 8))


def _broken_copy(model_dir, tmp_path):
    broken = tmp_path / model_dir.name
    shutil.copytree(model_dir, broken)
    return broken


def _edit_dataset(folder, **changes):
    path = folder / "dataset.json"
    dataset = json.loads(path.read_text())
    dataset.update(changes)
    path.write_text(json.dumps(dataset))


def _one_line_error(path, settings=None, match=()):
    with pytest.raises(NnUNetError) as err:
        NnUNetModel.load(path, {**FP32, **(settings or {})}, "cpu")
    message = str(err.value)
    assert "\n" not in message
    for text in match:
        assert text in message, message
    return message


def test_missing_model_says_what_to_download(tmp_path):
    _one_line_error(tmp_path / "nowhere", match=(str(tmp_path / "nowhere"), "download the trained model",
                                                 "segmentation.model"))


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line_error(tmp_path / "empty", match=("no plans.json", "download the trained model"))


def test_missing_plans(model_dir, tmp_path):
    broken = _broken_copy(model_dir, tmp_path)
    (broken / "plans.json").unlink()
    _one_line_error(broken, match=(str(broken / "plans.json"), "missing"))


def test_missing_fold(model_dir, tmp_path):
    broken = _broken_copy(model_dir, tmp_path)
    shutil.rmtree(broken / "fold_1")
    _one_line_error(broken, {"folds": [0, 1]}, match=(str(broken / "fold_1" / "checkpoint_final.pth"),
                                                      "folds present: 0", "segmentation.nnunet.folds"))


def test_wrong_channel_count(model_dir, tmp_path):
    broken = _broken_copy(model_dir, tmp_path)
    _edit_dataset(broken, channel_names={"0": "CT", "1": "PET"})
    _one_line_error(broken, match=(str(broken / "dataset.json"), "2 input channels", "CT, PET"))


def test_unmappable_labels(model_dir, tmp_path):
    broken = _broken_copy(model_dir, tmp_path)
    labels = {("heart" if k == "liver" else k): v for k, v in MODEL_LABELS.items()}  # an organ none of ours
    _edit_dataset(broken, labels=labels)
    _one_line_error(broken, match=(str(broken / "dataset.json"), "1='heart'", "rename"))


def test_model_without_a_lesion_label(model_dir, tmp_path):
    broken = _broken_copy(model_dir, tmp_path)
    renamed = {"tumor": "lungs", "lymph_node_lesion": "bg"}  # names of ours, none a lesion
    _edit_dataset(broken, labels={renamed.get(k, k): v for k, v in MODEL_LABELS.items()})
    _one_line_error(broken, match=(str(broken / "dataset.json"), "no label is a lesion"))


def test_an_ignore_label_is_not_an_output(model_dir, scans, reference, tmp_path):
    """nnU-Net v2's `ignore` label (sparse annotations in training) has the highest number and no output
    channel: a model that declares it runs as the same model without it, alone or as one of several."""
    from tumorburden.model_labels import _nnunet_labels

    with_ignore = _broken_copy(model_dir, tmp_path)
    _edit_dataset(with_ignore, labels={**MODEL_LABELS, "ignore": len(MODEL_LABELS)})
    model = NnUNetModel.load(with_ignore, {**FP32, "folds": [0]}, "cpu")
    assert len(model.lut) == len(MODEL_LABELS)
    assert min(_agreement(model, scans, reference["fold0"]).values()) >= 0.999
    assert _nnunet_labels(with_ignore, "segmentation.models[0]") == {v: k for k, v in MODEL_LABELS.items()}


def test_an_ignore_label_that_is_not_the_highest(model_dir, tmp_path):
    broken = _broken_copy(model_dir, tmp_path)
    shifted = {k: (v + 1 if v else v) for k, v in MODEL_LABELS.items()}
    _edit_dataset(broken, labels={**shifted, "ignore": 1})
    _one_line_error(broken, match=(str(broken / "dataset.json"), "'ignore' is 1", "highest"))


def test_weights_that_do_not_fit_the_plans(model_dir, tmp_path):
    broken = _broken_copy(model_dir, tmp_path)
    plans = json.loads((broken / "plans.json").read_text())
    arch = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    arch["features_per_stage"] = [f * 2 for f in arch["features_per_stage"]]
    (broken / "plans.json").write_text(json.dumps(plans))
    _one_line_error(broken, {"folds": [0]}, match=(str(broken / "fold_0" / "checkpoint_final.pth"),
                                                   "do not fit"))


@pytest.mark.e2e
def test_segment_stage_runs_an_nnunet_model(model_dir, scans, reference, tmp_path):
    """A study of NIfTI scans through Snakemake's segment rule with the nnunet engine: the written
    segmentation is nnUNetv2_predict's, in our label numbers."""
    shutil.copy(scans / "native_0000.nii.gz", tmp_path / "native.nii.gz")
    shutil.copy(scans / "other_0000.nii.gz", tmp_path / "other.nii.gz")
    pd.DataFrame({"patient_id": ["P1"], "cohort": ["lung"], "pfs_days": [100.0], "pfs_event": [1],
                  "os_days": [300.0], "os_event": [0]}).to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    pd.DataFrame({"patient_id": ["P1", "P1"], "scan_id": ["P1_d0", "P1_d60"], "days": [0.0, 60.0],
                  "image": ["native.nii.gz", "other.nii.gz"]}).to_csv(tmp_path / "scans.tsv", sep="\t", index=False)
    config = {"study": {"name": "nn", "clinical": str(tmp_path / "clinical.tsv"), "scans": str(tmp_path / "scans.tsv")},
              "segmentation": {"engine": "nnunet", "model": str(model_dir), "dicom_seg": False,
                               "precision": "fp32", "nnunet": {"folds": [0]}}}
    proc = snakemake(tmp_path, config, "results/nn/qc/segment/P1.tsv")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = pd.read_csv(tmp_path / "results/nn/qc/segment/P1.tsv", sep="\t")
    assert list(record["engine"]) == ["nnunet", "nnunet"]
    for scan_id, case in (("P1_d0", "native"), ("P1_d60", "other")):
        seg = load_nifti(tmp_path / f"results/nn/scans/{scan_id}/segmentation.nii.gz")
        truth = _model_labels_to_ours(reference["fold0"][case])
        assert seg.shape == truth.shape
        assert np.mean(seg.array == truth) >= 0.999


def test_an_nnunet_model_as_one_of_several_composed(model_dir, scans, reference, tmp_path):
    """`segmentation.models` with the nnU-Net model used for some of its labels only (the rest
    ignored by name): the segmentation is nnUNetv2_predict's restricted to those labels, and its
    organs (liver, lung) make the organ map; the model's muscle and fat stay out of both."""
    from tumorburden.segment.run import ScanJob, segment_patient

    used = ["tumor", "lymph_node_lesion", "liver", "lung"]
    settings = {"models": [{"nnunet": str(model_dir), "use": used, "ignore": "rest"}], "precision": "fp32",
                "device": "cpu", "nnunet": {"folds": [0]}, "dicom_seg": False}
    shutil.copy(scans / "native_0000.nii.gz", tmp_path / "native.nii.gz")
    out = tmp_path / "S1" / "segmentation.nii.gz"
    record = segment_patient("P1", [ScanJob("S1", tmp_path / "native.nii.gz", out, dicom_source=False)],
                             tmp_path / "record.tsv", settings=settings)
    truth = _model_labels_to_ours(reference["fold0"]["native"])
    kept = (L.LESION, L.NODE_LESION, L.LIVER, L.LUNG)
    expected = np.where(np.isin(truth, kept), truth, 0)
    assert np.isin(truth, (L.MUSCLE, L.SAT, L.VAT)).any()  # there was something to leave out
    assert np.mean(load_nifti(out).array == expected) >= 0.999
    organs = load_nifti(out.with_name(L.ORGAN_MAP_FILE)).array
    assert np.mean(organs == np.where(np.isin(truth, (L.LIVER, L.LUNG)), truth, 0)) >= 0.999
    assert record.loc[0, "lesions_from"] == model_dir.name


def test_a_single_nnunet_model_that_gives_an_organ_writes_it_to_the_organ_map(model_dir, scans, reference, tmp_path):
    """The nnunet engine on a model one of whose classes is renamed spleen (an organ of the organ
    map, not one of segmentation.nii.gz's eight labels): the spleen goes to organs.nii.gz, the
    segmentation keeps the rest of the model's labels."""
    from tumorburden.segment.run import ScanJob, segment_patient

    truth = _model_labels_to_ours(reference["fold0"]["native"])
    # the tissue class the tiny model predicts most on this scan becomes the spleen
    tissues = [L.LIVER, L.LUNG, L.MUSCLE, L.SAT, L.VAT]
    renamed = tissues[int(np.argmax([np.count_nonzero(truth == t) for t in tissues]))]
    assert (truth == renamed).any()
    model = _broken_copy(model_dir, tmp_path)
    _edit_dataset(model, labels={("spleen" if L.label_of_name(k) == renamed else k): v for k, v in MODEL_LABELS.items()})
    shutil.copy(scans / "native_0000.nii.gz", tmp_path / "native.nii.gz")
    out = tmp_path / "S1" / "segmentation.nii.gz"
    segment_patient("P1", [ScanJob("S1", tmp_path / "native.nii.gz", out, dicom_source=False)], tmp_path / "record.tsv",
                    settings={"engine": "nnunet", "model": str(model), "precision": "fp32", "device": "cpu",
                              "nnunet": {"folds": [0]}, "dicom_seg": False})
    assert np.mean(load_nifti(out).array == np.where(truth == renamed, 0, truth)) >= 0.999
    organs = load_nifti(out.with_name(L.ORGAN_MAP_FILE)).array
    expected = np.where(truth == renamed, L.SPLEEN, np.where(np.isin(truth, (L.LIVER, L.LUNG)), truth, 0))
    assert np.mean(organs == expected) >= 0.999


def test_labels_on_the_model_grid_are_the_argmax_ties_included():
    """The running maximum (slab by slab, uint8) picks what argmax picks, the first of tied classes."""
    import torch

    class Plans:
        transpose_forward = transpose_backward = [0, 1, 2]

    model = NnUNetModel.__new__(NnUNetModel)
    model.plans_manager, model.configuration_manager = Plans(), None
    logits = torch.randint(0, 4, (8, 37, 20, 21), generator=torch.Generator().manual_seed(0)).half()
    properties = {"shape_after_cropping_and_before_resampling": (37, 20, 21), "shape_before_cropping": (37, 20, 21),
                  "bbox_used_for_cropping": [[0, 37], [0, 20], [0, 21]]}
    np.testing.assert_array_equal(model._labels_on_scan_grid(logits, properties), torch.argmax(logits, 0).numpy())


class _TiedNet:
    """A fixed random convolution whose logits tie exactly: channel 2 repeats channel 0, and channel 3
    is coarsely rounded, so equal sums (argmax: the first of them) are common."""

    def __init__(self):
        import torch

        torch.manual_seed(3)
        self.conv = torch.nn.Conv3d(1, 3, 3, padding=1)

    def __call__(self, x):
        import torch

        h = self.conv(x)
        return torch.cat([h[:, :1], h[:, 1:2], h[:, :1], torch.round(h[:, 2:3] * 2) / 2], 1)


def _model_with(net, patch, step_size):
    import torch

    class Configuration:
        patch_size = patch

    model = NnUNetModel.__new__(NnUNetModel)
    model.path, model.configuration, model.configuration_manager = "fake", "3d_fullres", Configuration()
    model.lut, model.networks, model.mirror_axes = np.arange(4, dtype=np.uint8), [net], None
    model.device = torch.device("cpu")
    model.settings = {"step_size": step_size, "gaussian": True, "mirroring": False}
    return model


def _whole_volume_argmax(net, data, patch, step_size):
    """nnU-Net's sliding window as nnUNetPredictor runs it: the padded scan, a whole-volume fp16
    accumulator, then torch.argmax (the first of tied classes)."""
    import torch
    from acvl_utils.cropping_and_padding.padding import pad_nd_image
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

    x, revert = pad_nd_image(torch.from_numpy(data), patch, "constant", {"value": 0}, True, None)
    logits = torch.zeros((4, *x.shape[1:]), dtype=torch.half)
    weight = torch.zeros(x.shape[1:], dtype=torch.half)
    gaussian = compute_gaussian(tuple(patch), sigma_scale=1. / 8, value_scaling_factor=10, device=torch.device("cpu"))
    with torch.inference_mode():
        for corner in itertools.product(*compute_steps_for_sliding_window(x.shape[1:], patch, step_size)):
            tile = tuple(slice(c, c + p) for c, p in zip(corner, patch))
            logits[(slice(None), *tile)] += net(x[(slice(None), *tile)][None])[0].float() * gaussian
            weight[tile] += gaussian
        logits /= weight
        return torch.argmax(logits[(slice(None), *revert[1:])], 0).numpy()


@pytest.mark.parametrize("shape, step_size", [((45, 30, 13), 0.5), ((45, 30, 13), 0.3), ((40, 24, 32), 1.0),
                                              ((11, 30, 20), 0.5)])
def test_band_by_band_labels_equal_whole_volume_labels_ties_included(shape, step_size):
    """Labels made band by band along z (a ring of logits one patch deep) equal those of one
    whole-volume accumulator, ties included: several bands with tiles overlapping their borders
    (steps 0.5 and 0.3), tiles meeting at the borders (1.0), padding in x (13 < 16) and in z (11 < 16)."""
    import torch

    patch = [16, 12, 16]
    net = _TiedNet()
    data = np.asfortranarray(np.random.default_rng(5).normal(size=(1, *shape)).astype(np.float32))  # any memory order
    model = _model_with(net, patch, step_size)
    labels, bands = np.full(shape, 255, np.uint8), []

    def collect(z0, z1, rows):
        bands.append((z0, z1))
        assert rows.shape == (4, z1 - z0, *shape[1:])
        labels[z0:z1] = torch.argmax(rows, 0).numpy()

    model._sliding_window(data, None, collect, banded=True)
    expected = _whole_volume_argmax(net, data, patch, step_size)
    # each row once, in z order
    assert [z for band in bands for z in range(*band)] == list(range(shape[0]))
    if shape[0] > 2 * patch[0]:
        assert len(bands) >= 4, bands
    np.testing.assert_array_equal(labels, expected)
    # the model's labels 0 and 2 are always equal, so 2 never wins: the ties went to the first class
    assert (expected == 0).any() and not (expected == 2).any()
    # the whole-volume mode of the same code (the resampling path) gives the same labels
    whole = []
    model._sliding_window(data, None, lambda z0, z1, rows: whole.append((z0, z1, rows)), banded=False)
    assert len(whole) == 1 and whole[0][:2] == (0, shape[0])
    np.testing.assert_array_equal(torch.argmax(whole[0][2], 0).numpy(), expected)
