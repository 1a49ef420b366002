"""The MONAI inference engine and bundle loading, on tiny volumes and tiny bundles."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from tiny_bundle import metadata, unet_def, write_bundle, write_threshold_bundle
from tumorburden import labels as L
from tumorburden.imaging.volume import Volume, save_nifti
from tumorburden.segment import engine
from tumorburden.segment.bundle import BundleError, load_bundle
from tumorburden.segment.run import segment


def _lps_affine(spacing, origin=(10.0, -20.0, 30.0)):
    """Voxel order of a DICOM axial series: i -> patient left, j -> posterior (RAS signs flipped)."""
    a = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    a[:3, 3] = origin
    return a


@pytest.mark.parametrize("label_affine, grid_affine, grid_shape", [
    (np.diag([2.0, 2.0, 2.0, 1.0]), np.diag([1.0, 1.0, 1.0, 1.0]), (20, 20, 20)),  # finer grid
    (np.diag([2.0, 2.0, 2.0, 1.0]), _lps_affine((1.0, 1.0, 3.0), (19.0, 19.0, 0.0)), (20, 20, 7)),  # flipped axes
    (np.diag([2.0, 2.0, 2.0, 1.0]), np.array([[0, 1.5, 0, 0], [1.5, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), (13, 13, 20)),
])
def test_labels_to_grid_equals_nearest_neighbour_resampling(label_affine, grid_affine, grid_shape):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, (10, 10, 10)).astype(np.uint8)
    got = engine.labels_to_grid(labels, label_affine, grid_shape, grid_affine)
    m = np.linalg.inv(label_affine) @ grid_affine
    # the reference: voxel centres mapped through the affine, rounded half away from ties like np.rint
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in grid_shape], indexing="ij"), -1).reshape(-1, 3)
    src = np.rint(ijk @ m[:3, :3].T + m[:3, 3]).astype(int)
    ok = np.all((src >= 0) & (src < 10), axis=1)
    expected = np.zeros(len(ijk), np.uint8)
    expected[ok] = labels[tuple(src[ok].T)]
    np.testing.assert_array_equal(got, expected.reshape(grid_shape))
    assert got.dtype == np.uint8


def test_labels_to_grid_oblique_falls_back_to_affine_resampling():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[3:7, 3:7, 3:7] = 1
    theta = np.deg2rad(30)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0, 0], [np.sin(theta), np.cos(theta), 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    got = engine.labels_to_grid(labels, np.eye(4), (10, 10, 10), rot)
    expected = ndimage.affine_transform(labels, rot, output_shape=(10, 10, 10), order=0)
    np.testing.assert_array_equal(got, expected)


def _bright_cube_image(shape=(40, 36, 18), spacing=(2.5, 2.5, 5.0)):
    hu = np.full(shape, -300.0, np.float32)
    hu[10:25, 8:20, 5:12] = 200.0
    return Volume(hu, _lps_affine(spacing))


@pytest.mark.parametrize("settings", [{}, {"precision": "fp32"}, {"flip_tta": [0, 2]}, {"roi_size": [16, 16, 16]}])
def test_inference_maps_the_model_answer_back_onto_the_scan_grid(tmp_path, settings):
    bundle = load_bundle(write_threshold_bundle(tmp_path / "b", spacing=(3.0, 3.0, 3.0), roi=(24, 24, 24)))
    image = _bright_cube_image()
    labels, times = engine.infer_labels(image, bundle, settings)
    assert labels.shape == image.shape and labels.dtype == np.uint8
    truth = image.array > 0
    # nearest neighbour through a 3 mm model grid: at most one model voxel of difference at the edges
    assert (labels == L.LESION)[truth].mean() > 0.6
    eroded = ndimage.binary_erosion(truth, iterations=2)
    assert (labels[eroded] == L.LESION).all()
    assert not labels[~ndimage.binary_dilation(truth, iterations=2)].any()
    assert times["device"] in ("cpu", "cuda")


def test_segment_with_a_torchscript_bundle_writes_labels_and_overlay(tmp_path):
    bundle = write_threshold_bundle(tmp_path / "b")
    image = _bright_cube_image()
    save_nifti(image, tmp_path / "image.nii.gz", dtype=np.int16)
    out, overlay = tmp_path / "seg.nii.gz", tmp_path / "qc" / "overlay.png"
    segment(tmp_path / "image.nii.gz", out, settings={"engine": "monai", "bundle": str(bundle)}, overlay_path=overlay,
            threads=1)
    img = nib.load(out)
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.affine, image.affine)
    assert overlay.stat().st_size > 5000
    assert overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_state_dict_bundle_loads_and_predicts_its_channels(tmp_path):
    bundle = load_bundle(write_bundle(tmp_path / "b"))
    assert bundle.lut == [L.BACKGROUND, L.LESION]
    labels, _ = engine.infer_labels(_bright_cube_image(), bundle, {"roi_size": [16, 16, 16]})
    assert set(np.unique(labels)) <= {L.BACKGROUND, L.LESION}


def test_aliases_map_a_users_channel_names(tmp_path):
    meta = metadata({"0": "Background", "1": "Tumor", "2": "Skeletal Muscle", "3": "torso_fat"})
    bundle = load_bundle(write_bundle(tmp_path / "b", meta))
    assert bundle.lut == [L.BACKGROUND, L.LESION, L.MUSCLE, L.VAT]


def test_missing_bundle_folder_is_a_clear_error(tmp_path):
    with pytest.raises(BundleError, match=r"nowhere: segmentation bundle folder not found"):
        load_bundle(tmp_path / "nowhere")


def test_missing_weights_name_the_folder(tmp_path):
    folder = write_bundle(tmp_path / "b")
    (folder / "models" / "model.pt").unlink()
    with pytest.raises(BundleError, match=r"models: neither model.pt .* nor model.ts"):
        load_bundle(folder)


def test_missing_metadata_is_named(tmp_path):
    folder = write_bundle(tmp_path / "b")
    (folder / "configs" / "metadata.json").unlink()
    with pytest.raises(BundleError, match=r"metadata.json: missing"):
        load_bundle(folder)


def test_labels_that_do_not_map_to_ours_are_an_error(tmp_path):
    meta = metadata({"0": "background", "1": "kidney", "2": "tumor"})
    with pytest.raises(BundleError, match=r"output channels 1='kidney' do not map to tumorburden labels"):
        load_bundle(write_bundle(tmp_path / "b", meta))


def test_a_model_without_lesion_channel_is_an_error(tmp_path):
    meta = metadata({"0": "background", "1": "liver"})
    with pytest.raises(BundleError, match="no output channel is a lesion"):
        load_bundle(write_bundle(tmp_path / "b", meta))


def test_wrong_number_of_input_channels_is_an_error(tmp_path):
    with pytest.raises(BundleError, match="takes 2 input channels"):
        load_bundle(write_bundle(tmp_path / "b", metadata(in_channels=2), network_def=unet_def()))


def test_weights_that_do_not_fit_the_network_are_an_error(tmp_path):
    folder = write_bundle(tmp_path / "b")
    bigger = dict(unet_def(), channels=[8, 16])
    (folder / "configs" / "inference.json").write_text(json.dumps({"network_def": bigger}))
    with pytest.raises(BundleError, match=r"model.pt: the weights do not fit network_def"):
        load_bundle(folder)


def test_network_with_other_output_count_than_channel_def_is_an_error(tmp_path):
    meta = metadata({"0": "background", "1": "lesion", "2": "liver"})
    folder = write_bundle(tmp_path / "b", meta, network_def=unet_def(out_channels=2))
    meta_only = load_bundle  # the state dict of a 2-channel net loads; the mismatch shows at inference
    bundle = meta_only(folder)
    with pytest.raises(ValueError, match="gives 2 output channels but channel_def names 3"):
        engine.infer_labels(_bright_cube_image(), bundle, {"roi_size": [16, 16, 16]})


def test_precision_auto_is_bf16_only_where_the_cpu_has_it():
    dtype = engine.autocast_dtype("auto", torch.device("cpu"))
    assert dtype == (torch.bfloat16 if engine.cpu_has_bf16() else None)
    assert engine.autocast_dtype("fp32", torch.device("cpu")) is None
    with pytest.raises(ValueError, match="precision 'fp16' is unknown"):
        engine.autocast_dtype("fp16", torch.device("cpu"))
