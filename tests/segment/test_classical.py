"""Classical baseline segmentation on a small torso phantom; mask import."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from torso_phantom import make_phantom
from tumorburden import labels as L
from tumorburden.imaging.volume import Volume, load_nifti, save_nifti
from tumorburden.segment.classical import segment_volume
from tumorburden.segment.run import segment


@pytest.fixture(scope="module")
def segmented(phantom):
    image, truth, affine, spheres = phantom
    return segment_volume(Volume(image, affine)), truth, affine, spheres


@pytest.mark.parametrize("label,tol", [(L.MUSCLE, 0.06), (L.SAT, 0.03), (L.VAT, 0.04), (L.LUNG, 0.03),
                                       (L.LIVER, 0.10)])
def test_tissue_volumes_match_truth(segmented, label, tol):
    seg, truth, _, _ = segmented
    n_seg, n_true = (seg == label).sum(), (truth == label).sum()
    assert abs(n_seg - n_true) <= tol * n_true, (L.NAMES[label], n_seg, n_true)
    dice = 2 * ((seg == label) & (truth == label)).sum() / (n_seg + n_true)
    assert dice > 0.9


@pytest.mark.parametrize("name", ["lung", "liver", "node", "sat"])
def test_each_lesion_found_with_its_volume(segmented, name):
    seg, truth, affine, spheres = segmented
    centre, radii, inside = spheres[name]
    analytic = 4 / 3 * np.pi * np.prod(radii) / 1000  # mL
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000
    found = np.isin(seg, L.LESION_LABELS)
    # the component that overlaps this lesion
    import cc3d

    cc = cc3d.connected_components(found, connectivity=26)
    ids = np.unique(cc[inside])
    ids = ids[ids > 0]
    assert len(ids) == 1, f"{name}: {len(ids)} components"
    volume = (cc == ids[0]).sum() * voxel_ml
    assert volume == pytest.approx(analytic, rel=0.12)
    expected = L.NODE_LESION if name == "node" else L.LESION
    assert np.all(seg[cc == ids[0]] == expected)


def test_no_false_lesions(segmented):
    seg, truth, _, spheres = segmented
    found = np.isin(seg, L.LESION_LABELS)
    assert not (found & ~np.isin(truth, L.LESION_LABELS)).sum() > 0.2 * np.isin(truth, L.LESION_LABELS).sum()


def test_lesion_free_scan_has_no_lesion(tmp_path):
    image, truth, affine, _ = make_phantom(lesions=False, seed=1)
    seg = segment_volume(Volume(image, affine))
    assert not np.isin(seg, L.LESION_LABELS).any()
    assert {L.MUSCLE, L.SAT, L.VAT} <= set(np.unique(seg).tolist())


def test_axis_order_does_not_matter(phantom, segmented):
    image, _, affine, _ = phantom
    seg = segmented[0]
    # z first, x flipped: the same voxels in another array layout
    arr = np.transpose(image, (2, 0, 1))[:, ::-1, :]
    aff = affine[:, [2, 0, 1, 3]].copy()
    aff[:3, 3] += aff[:3, 1] * (arr.shape[1] - 1)
    aff[:3, 1] *= -1
    again = segment_volume(Volume(np.ascontiguousarray(arr), aff))
    np.testing.assert_array_equal(np.transpose(again[:, ::-1, :], (1, 2, 0)), seg)


def _write_image(tmp_path, phantom):
    image, truth, affine, spheres = phantom
    path = tmp_path / "image.nii.gz"
    save_nifti(Volume(np.round(image).astype(np.int16), affine), path)
    return path


def test_segment_writes_uint8_on_the_image_grid(tmp_path, phantom):
    image_path = _write_image(tmp_path, phantom)
    out = tmp_path / "seg.nii.gz"
    segment(image_path, out, settings={"engine": "classical"})
    img = nib.load(out)
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.affine, nib.load(image_path).affine)
    assert set(np.unique(np.asarray(img.dataobj))) >= {2, 3, 4, 6, 7}


def test_external_mask_replaces_lesions(tmp_path, phantom):
    image, truth, affine, spheres = phantom
    image_path = _write_image(tmp_path, phantom)
    mask = np.zeros(image.shape, np.uint8)
    mask[10:14, 30:34, 5:8] = 1  # somewhere in the subcutaneous fat / muscle
    # stored with the first axis flipped: must be reoriented onto the image grid
    flipped_aff = affine.copy()
    flipped_aff[:3, 3] += affine[:3, 0] * (image.shape[0] - 1)
    flipped_aff[:3, 0] *= -1
    nib.save(nib.Nifti1Image(mask[::-1].copy(), flipped_aff), tmp_path / "mask.nii.gz")
    out = tmp_path / "seg.nii.gz"
    seg = segment(image_path, out, mask_path=tmp_path / "mask.nii.gz", settings={"engine": "classical"})
    lesion = np.isin(seg, L.LESION_LABELS)
    np.testing.assert_array_equal(lesion, mask.astype(bool))
    assert (seg[mask.astype(bool)] == L.LESION).all()
    assert (seg == L.MUSCLE).sum() > 0.9 * (truth == L.MUSCLE).sum()


def test_mask_outside_the_scan_is_an_error(tmp_path, phantom):
    image_path = _write_image(tmp_path, phantom)
    far = np.eye(4)
    far[:3, 3] = 5000.0  # another frame of reference: nowhere near the scan
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.uint8), far), tmp_path / "far.nii.gz")
    with pytest.raises(ValueError, match=r"far\.nii\.gz: lesion mask grid \(10, 10, 10\).*scan's grid \(64, 64, 48\)"
                       r".*does not overlap the scan"):
        segment(image_path, tmp_path / "seg.nii.gz", mask_path=tmp_path / "far.nii.gz", settings={"engine": "classical"})


def test_unknown_method_is_an_error(tmp_path, phantom):
    image_path = _write_image(tmp_path, phantom)
    with pytest.raises(ValueError, match="engine 'unet' is unknown"):
        segment(image_path, tmp_path / "seg.nii.gz", settings={"engine": "unet"})
    assert load_nifti(image_path).shape == (64, 64, 48)


# --- lesions the rim opening or the wall used to swallow ------------------------------
# Phantom scale 0.75: body semi-axes 120 x 86.25 mm, fat 22.5 mm, muscle ring 9 mm,
# so the ring's outer surface is at 63.75 mm (A-P) and the cavity's at 54.75 mm.
HARD = {
    # a 10 mm nodule in the right lung: 2-3 voxels across at 4 mm, erased by the rim opening
    "small_lung": ((55 * 0.75 + 8, 10 * 0.75, 0.55 * 192 + 0.3 * 192), (5, 5, 5), 35, L.LESION),
    # a 10 mm hypodense metastasis deep in the liver, below the standard one
    "small_liver": ((55 * 0.75, 5, 0.55 * 192 - 45), (5, 5, 5), 55, L.LESION),
    # a subcutaneous lesion pressed 4 mm into the muscle wall (anterior, patient left)
    "sat_on_wall": ((-45, 63.75 + 4, 0.2 * 192), (12, 8, 10), 45, L.LESION),
    # a node in the visceral fat lying on the inner side of the wall (patient left flank)
    "node_on_wall": ((-(120 - 31.5) + 7, 0, 0.45 * 192), (8, 8, 9), 45, L.NODE_LESION),
}


@pytest.fixture(scope="module")
def hard():
    image, truth, affine, spheres = make_phantom(extra_lesions=HARD, seed=2)
    return segment_volume(Volume(image, affine)), truth, spheres


@pytest.mark.parametrize("name", list(HARD))
def test_small_or_wall_attached_lesion_is_found(hard, name):
    seg, truth, spheres = hard
    inside = spheres[name][2]
    expected = HARD[name][3]
    share = np.mean(seg[inside] == expected)
    # most of it is lesion: not lung, liver or muscle
    assert share > 0.5, (name, np.bincount(seg[inside], minlength=8))


def test_hard_lesions_cost_no_false_lesion_or_muscle(hard):
    seg, truth, spheres = hard
    import cc3d

    cc = cc3d.connected_components(np.isin(seg, L.LESION_LABELS), connectivity=26)
    truth_lesion = np.isin(truth, L.LESION_LABELS)
    false = [i for i in range(1, int(cc.max()) + 1) if not truth_lesion[cc == i].any()]
    assert not false
    n_seg, n_true = (seg == L.MUSCLE).sum(), (truth == L.MUSCLE).sum()
    assert 2 * ((seg == L.MUSCLE) & (truth == L.MUSCLE)).sum() / (n_seg + n_true) > 0.9
