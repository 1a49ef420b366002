"""Per-lesion measurements on label maps built in the test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tumorburden import labels as L
from tumorburden import tables
from tumorburden.imaging.volume import Volume, save_nifti
from tumorburden.lesions.measure import axial_diameters, measure_scan

SPACING = (0.8, 0.8, 2.0)
SHAPE = (120, 110, 40)


def grid():
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-40.0, -30.0, 100.0]
    idx = np.indices(SHAPE).reshape(3, -1).T
    mm = (idx @ affine[:3, :3].T + affine[:3, 3]).reshape(*SHAPE, 3)
    return affine, mm


def ellipsoid(mm, centre, radii):
    return (((mm - np.array(centre)) / np.array(radii)) ** 2).sum(-1) <= 1


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scan")
    affine, mm = grid()
    labels = np.full(SHAPE, L.SAT, np.uint8)
    labels[:, :, :] = L.SAT
    lung = ellipsoid(mm, (-20, 0, 130), (18, 25, 25))
    liver = ellipsoid(mm, (25, 0, 130), (18, 25, 25))
    labels[lung] = L.LUNG
    labels[liver] = L.LIVER
    big = ellipsoid(mm, (25, 0, 130), (12, 8, 6))  # in the liver, long axis along x
    small = ellipsoid(mm, (-20, 0, 130), (5, 5, 5))  # in the lung
    node = ellipsoid(mm, (0, 30, 160), (6, 4, 4))
    speck = ellipsoid(mm, (-30, -25, 110), (0.5, 0.5, 0.5))  # one voxel: below min_volume_ml
    labels[big | small | speck] = L.LESION
    labels[node] = L.NODE_LESION
    hu = np.where(np.isin(labels, L.LESION_LABELS), 40.0, -100.0).astype(np.float32)
    save_nifti(Volume(hu, affine), tmp / "image.nii.gz")
    save_nifti(Volume(labels, affine), tmp / "seg.nii.gz", dtype=np.uint8)
    les, tis = tmp / "lesions.parquet", tmp / "tissue.parquet"
    measure_scan(tmp / "image.nii.gz", tmp / "seg.nii.gz", "P1", "S1", les, tis, settings={"min_volume_ml": 0.05})
    return tables.read(les, "scan_lesions"), tables.read(tis, "scan_tissue"), labels, (big, small, node)


def test_lesions_numbered_by_volume_with_organs(scan):
    lesions, _, _, (big, small, node) = scan
    assert list(lesions["lesion"]) == [1, 2, 3]
    assert list(lesions["organ"]) == ["liver", "lung", "node"]
    assert lesions["volume_ml"].is_monotonic_decreasing
    voxel_ml = np.prod(SPACING) / 1000
    np.testing.assert_allclose(lesions["volume_ml"], [m.sum() * voxel_ml for m in (big, small, node)])
    assert lesions["volume_ml"].iloc[0] == pytest.approx(4 / 3 * np.pi * 12 * 8 * 6 / 1000, rel=0.05)
    assert (lesions["patient_id"] == "P1").all() and (lesions["scan_id"] == "S1").all()
    assert lesions["mean_hu"].tolist() == pytest.approx([40.0] * 3)


def test_ellipsoid_diameters_and_centroid(scan):
    lesions, *_ = scan
    first = lesions.iloc[0]
    assert first["longest_diameter_mm"] == pytest.approx(24.0, abs=SPACING[0])
    assert first["short_axis_mm"] == pytest.approx(16.0, abs=SPACING[0])
    assert [first["centroid_x_mm"], first["centroid_y_mm"], first["centroid_z_mm"]] == pytest.approx(
        [25, 0, 130], abs=0.05)


def test_tissue_volumes(scan):
    _, tissue, labels, _ = scan
    voxel_ml = np.prod(SPACING) / 1000
    assert tissue["sat_ml"].iloc[0] == pytest.approx((labels == L.SAT).sum() * voxel_ml)
    assert tissue["muscle_ml"].iloc[0] == 0 and tissue["vat_ml"].iloc[0] == 0


def test_rotated_ellipse_diameter():
    y, x = np.mgrid[-40:41, -40:41] * 0.5
    u, v = (x + y) / np.sqrt(2), (x - y) / np.sqrt(2)  # 45 degrees in plane
    plane = (u / 15) ** 2 + (v / 6) ** 2 <= 1
    longest, short = axial_diameters(plane[:, :, None], 2, (0.5, 0.5))
    assert longest == pytest.approx(30.0, abs=1.0)
    assert short == pytest.approx(12.0, abs=1.0)


def test_scan_without_lesions_writes_typed_empty_table(tmp_path):
    affine, _ = grid()
    labels = np.full(SHAPE, L.MUSCLE, np.uint8)
    save_nifti(Volume(np.zeros(SHAPE, np.float32), affine), tmp_path / "image.nii.gz")
    save_nifti(Volume(labels, affine), tmp_path / "seg.nii.gz", dtype=np.uint8)
    measure_scan(tmp_path / "image.nii.gz", tmp_path / "seg.nii.gz", "P1", "S2",
                 tmp_path / "l.parquet", tmp_path / "t.parquet", settings={})
    empty = pd.read_parquet(tmp_path / "l.parquet")
    assert len(empty) == 0 and list(empty.columns) == list(tables.SCHEMAS["scan_lesions"])
    assert str(empty["volume_ml"].dtype) == "float64" and str(empty["lesion"].dtype) == "Int64"
    tissue = tables.read(tmp_path / "t.parquet", "scan_tissue")
    assert tissue["muscle_ml"].iloc[0] == pytest.approx(np.prod(SHAPE) * np.prod(SPACING) / 1000)


def test_grid_mismatch_is_an_error(tmp_path):
    affine, _ = grid()
    save_nifti(Volume(np.zeros(SHAPE, np.float32), affine), tmp_path / "image.nii.gz")
    save_nifti(Volume(np.zeros((4, 4, 4), np.uint8), affine), tmp_path / "seg.nii.gz")
    with pytest.raises(ValueError, match="does not match"):
        measure_scan(tmp_path / "image.nii.gz", tmp_path / "seg.nii.gz", "P1", "S2",
                     tmp_path / "l.parquet", tmp_path / "t.parquet")


@pytest.mark.parametrize("spacing, flip", [((0.7, 0.7, 1.25), False), ((1.5, 1.5, 5.0), True)])
def test_same_lesion_on_different_grids_measures_the_same(spacing, flip):
    """An ellipsoid (semi-axes 15, 10, 12 mm) centred at (5, -3, 20) mm, on another grid, and
    with the first axis running right-to-left (an LPS-ordered array): same mm measurements."""
    from tumorburden.lesions.measure import measure_lesions

    shape = tuple(int(round(80 / s)) for s in spacing)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-40.0, -43.0, -20.0]
    if flip:
        affine[0, 0] = -spacing[0]
        affine[0, 3] = 40.0
    idx = np.indices(shape).reshape(3, -1).T
    mm = (idx @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape, 3)
    labels = np.where(ellipsoid(mm, (5, -3, 20), (15, 10, 12)), L.LESION, L.SAT).astype(np.uint8)
    got = measure_lesions(Volume(np.zeros(shape, np.float32), affine), labels).iloc[0]
    assert got["volume_ml"] == pytest.approx(4 / 3 * np.pi * 15 * 10 * 12 / 1000, rel=0.04)
    assert got["longest_diameter_mm"] == pytest.approx(30.0, abs=spacing[0])
    assert got["short_axis_mm"] == pytest.approx(20.0, abs=spacing[0])
    assert [got["centroid_x_mm"], got["centroid_y_mm"], got["centroid_z_mm"]] == pytest.approx([5, -3, 20], abs=0.1)


def test_min_volume_zero_keeps_every_lesion_voxel_and_no_background():
    """min_volume_ml: 0 (the schema allows it) keeps a one-voxel lesion; the background is never a lesion."""
    from tumorburden.lesions.measure import measure_lesions

    labels = np.zeros((12, 12, 12), np.uint8)
    labels[2:5, 2:5, 2:5] = L.LESION
    labels[9, 9, 9] = L.NODE_LESION
    got = measure_lesions(Volume(np.zeros(labels.shape, np.float32), np.eye(4)), labels, {"min_volume_ml": 0})
    assert sorted(got["volume_ml"]) == pytest.approx([0.001, 0.027])
    assert sorted(got["organ"]) == ["node", "other"]


def test_a_patients_scans_are_registered_and_measured_in_one_job(tmp_path):
    """`measure_patient`: the follow-up moved by a known motion is aligned to the reference scan
    (within half a registration voxel), each scan's lesions land in its own files with the same rows
    as measuring it alone, and the patient's record names each scan's registration and lesions."""
    from test_register import motion_matrix, render

    from tumorburden.lesions.measure import ScanFiles, measure_patient
    from tumorburden.lesions.register import read_transform

    reference = render((4.0, 4.0, 4.0), (84, 60, 56), (-166.0, -118.0, -110.0))
    motion = motion_matrix(4.0, (12.0, -8.0, 15.0))
    moved = render((4.0, 4.0, 4.0), (84, 60, 56), (-166.0, -118.0, -110.0), motion)
    scans = []
    for scan_id, image, box in (("S1", moved, (slice(30, 36), slice(20, 26), slice(20, 24))),
                                ("S0", reference, (slice(40, 48), slice(30, 36), slice(30, 35)))):
        folder = tmp_path / scan_id
        save_nifti(image, folder / "image.nii.gz")
        labels = np.zeros(image.shape, np.uint8)
        labels[box] = L.LESION
        save_nifti(Volume(labels, image.affine), folder / "segmentation.nii.gz", dtype=np.uint8)
        scans.append(ScanFiles(scan_id, folder / "image.nii.gz", folder / "segmentation.nii.gz",
                               folder / "lesions.parquet", folder / "tissue.parquet", folder / "to_reference.json"))
    record = measure_patient("P1", "S0", tmp_path / "S0" / "image.nii.gz", scans, tmp_path / "P1.tsv")

    _, matrix, status = read_transform(tmp_path / "S1" / "to_reference.json")
    assert status == "ok"
    points = np.array([[-60.0, 5.0, 40.0, 1.0], [55.0, 10.0, 60.0, 1.0], [5.0, -70.0, -50.0, 1.0]]) @ motion.T
    err = np.linalg.norm((points @ matrix.T)[:, :3] - (points @ np.linalg.inv(motion).T)[:, :3], axis=1)
    assert err.max() < 2.0, err
    assert read_transform(tmp_path / "S0" / "to_reference.json")[2] == "reference scan"
    for job, voxels in zip(scans, (6 * 6 * 4, 8 * 6 * 5)):
        lesions = tables.read(job.lesions_out, "scan_lesions")
        assert len(lesions) == 1 and lesions["volume_ml"].iloc[0] == pytest.approx(voxels * 0.064)
        alone = measure_scan(job.image, job.segmentation, "P1", job.scan_id, tmp_path / "alone.parquet",
                             tmp_path / "alone_tissue.parquet")
        pd.testing.assert_frame_equal(lesions, tables.read(tmp_path / "alone.parquet", "scan_lesions"))
        assert alone["scan_id"].iloc[0] == job.scan_id
    written = pd.read_csv(tmp_path / "P1.tsv", sep="\t")
    assert list(written["scan_id"]) == ["S1", "S0"] and list(written["reference_scan_id"]) == ["S0", "S0"]
    assert list(written["registration_status"]) == ["ok", "reference scan"]
    assert list(written["n_lesions"]) == [1, 1] and list(record["n_lesions"]) == [1, 1]


def _sites(labels, organs):
    from tumorburden.lesions.measure import measure_lesions

    image = Volume(np.zeros(labels.shape, np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    return list(measure_lesions(image, labels, {"min_volume_ml": 0.01}, organs=organs)
                .sort_values("centroid_x_mm")["organ"])


def test_the_organ_map_gives_the_site_under_each_lesion():
    labels = np.full((60, 20, 20), L.SAT, np.uint8)
    organs = np.zeros_like(labels)
    # 1: in the spleen, which the organ model segmented with its lesion; around it the label map has
    #    only fat (a lesion model knows no spleen: soft tissue by the label map alone)
    organs[2:12, 4:16, 4:16] = L.SPLEEN
    labels[5:9, 8:12, 8:12] = L.LESION
    # 2: a kidney lesion the organ model left out of the kidney: the kidney around it
    organs[14:24, 4:16, 4:16] = L.KIDNEY
    organs[17:21, 8:12, 8:12] = L.BACKGROUND
    labels[17:21, 8:12, 8:12] = L.LESION
    # 3: in a vertebra, part L3 and part L4: bone, both voting for it, over the pancreas beside
    organs[26:32, 8:12, 8:12] = L.VERTEBRA_L3
    organs[32:34, 8:12, 8:12] = L.BONE
    organs[34:36, 8:12, 8:12] = L.PANCREAS
    labels[27:36, 8:12, 8:12] = L.LESION
    # 4: no organ under or around it in the organ map: the label map's liver around it decides
    labels[40:50, 4:16, 4:16] = L.LIVER
    labels[43:47, 8:12, 8:12] = L.LESION
    # 5: a lymph-node lesion is a node wherever it lies
    organs[52:58, 4:16, 4:16] = L.LIVER
    labels[54:57, 8:11, 8:11] = L.NODE_LESION
    assert _sites(labels, organs) == ["spleen", "kidney", "bone", "liver", "node"]
    # without the organ map: the rule of the label map alone (fat around 1-3: soft tissue)
    assert _sites(labels, None) == ["soft_tissue", "soft_tissue", "soft_tissue", "liver", "node"]


def test_measure_scan_reads_the_organ_map_and_checks_its_grid(tmp_path):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    labels = np.full((20, 20, 20), L.SAT, np.uint8)
    labels[8:12, 8:12, 8:12] = L.LESION
    organs = np.zeros_like(labels)
    organs[6:14, 6:14, 6:14] = L.ADRENAL
    save_nifti(Volume(np.zeros(labels.shape, np.float32), affine), tmp_path / "image.nii.gz")
    save_nifti(Volume(labels, affine), tmp_path / "seg.nii.gz", dtype=np.uint8)
    save_nifti(Volume(organs, affine), tmp_path / "organs.nii.gz", dtype=np.uint8)
    les = measure_scan(tmp_path / "image.nii.gz", tmp_path / "seg.nii.gz", "P1", "S1", tmp_path / "l.parquet",
                       tmp_path / "t.parquet", organs=tmp_path / "organs.nii.gz")
    assert list(les["organ"]) == ["adrenal_gland"]
    save_nifti(Volume(organs[:, :, :10], affine), tmp_path / "organs.nii.gz", dtype=np.uint8)
    with pytest.raises(ValueError, match=r"organs.nii.gz: grid \(20, 20, 10\) does not match"):
        measure_scan(tmp_path / "image.nii.gz", tmp_path / "seg.nii.gz", "P1", "S1", tmp_path / "l.parquet",
                     tmp_path / "t.parquet", organs=tmp_path / "organs.nii.gz")
