"""The model's lesions against a radiologist's, on label maps built in the test (counts worked out by hand)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tumorburden import labels as L
from tumorburden import tables
from tumorburden.imaging.volume import Volume, save_nifti
from tumorburden.lesions.measure import measure_scan
from tumorburden.lesions.review import compare_lesions, measure_review, review_table

SHAPE = (40, 40, 20)
VOXEL_ML = 2.0 * 2.0 * 2.0 / 1000  # 2 mm voxels
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def maps():
    """Model: A (4^3 = 64 voxels), B (64), C (2^3 = 8 voxels, 0.064 mL); review: A as it was, B halved
    (32), C deleted, D added (3^3 = 27); muscle everywhere else on one slab in both."""
    ai = np.zeros(SHAPE, np.uint8)
    ai[:, :, 0] = L.MUSCLE
    ai[2:6, 2:6, 2:6] = L.LESION  # A
    ai[20:24, 20:24, 2:6] = L.NODE_LESION  # B
    ai[30:32, 2:4, 10:12] = L.LESION  # C
    reviewed = ai.copy()
    reviewed[20:24, 20:24, 4:6] = L.BACKGROUND  # B: half of it
    reviewed[30:32, 2:4, 10:12] = L.BACKGROUND  # C gone
    reviewed[10:13, 30:33, 14:17] = L.LESION  # D
    return ai, reviewed


def test_added_removed_edited_confirmed_and_dice():
    ai, reviewed = maps()
    got = compare_lesions(ai, reviewed, VOXEL_ML)
    assert got["lesions_confirmed"] == 1 and got["lesions_edited"] == 1
    assert got["lesions_added"] == 1 and got["lesions_removed"] == 1
    # |model| = 64 + 64 + 8 = 136, |review| = 64 + 32 + 27 = 123, shared = 64 + 32
    assert got["dice"] == pytest.approx(2 * 96 / (136 + 123))


def test_split_lesion_is_two_edits_and_small_components_do_not_count():
    ai = np.zeros(SHAPE, np.uint8)
    ai[2:12, 2:6, 2:6] = L.LESION
    reviewed = np.zeros_like(ai)
    reviewed[2:6, 2:6, 2:6] = L.LESION
    reviewed[8:12, 2:6, 2:6] = L.LESION
    reviewed[30, 30, 15] = L.LESION  # 0.008 mL: under lesions.min_volume_ml, not a lesion
    got = compare_lesions(ai, reviewed, VOXEL_ML)
    assert (got["lesions_confirmed"], got["lesions_edited"], got["lesions_added"], got["lesions_removed"]) == (0, 2, 0, 0)
    # the Dice threshold decides confirmed vs edited: 4x4x4 inside 4x4x5 is Dice 128/144 = 0.89
    model, cube = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    model[2:6, 2:6, 2:7] = L.LESION
    cube[2:6, 2:6, 2:6] = L.LESION
    for threshold, confirmed in ((0.85, 1), (0.9, 0)):
        got = compare_lesions(model, cube, VOXEL_ML, {"same_lesion_dice": threshold})
        assert got["lesions_confirmed"] == confirmed and got["lesions_edited"] == 1 - confirmed


def test_both_empty_gives_no_dice():
    empty = np.zeros(SHAPE, np.uint8)
    assert np.isnan(compare_lesions(empty, empty, VOXEL_ML)["dice"])


def test_measure_review_and_the_study_table(tmp_path):
    ai, reviewed = maps()
    image = Volume(np.where(ai > 0, 40.0, -100.0).astype(np.float32), AFFINE)
    save_nifti(image, tmp_path / "image.nii.gz", dtype=np.int16)
    save_nifti(Volume(ai, AFFINE), tmp_path / "seg.nii.gz", dtype=np.uint8)
    save_nifti(Volume(reviewed, AFFINE), tmp_path / "reviewed.nii.gz", dtype=np.uint8)
    for scan in ("S0", "S1"):
        (tmp_path / scan).mkdir()
        measure_scan(tmp_path / "image.nii.gz", tmp_path / "seg.nii.gz", "P1", scan, tmp_path / scan / "lesions.parquet",
                     tmp_path / scan / "tissue.parquet")
    row = measure_review(tmp_path / "image.nii.gz", tmp_path / "seg.nii.gz", tmp_path / "reviewed.nii.gz",
                         tmp_path / "S1" / "lesions.parquet", "P1", "S1", "RTSTRUCT", tmp_path / "S1" / "review" / "lesions.parquet",
                         tmp_path / "S1" / "review" / "agreement.parquet")
    lesions = tables.read(tmp_path / "S1" / "review" / "lesions.parquet", "scan_lesions")
    assert sorted(lesions["volume_ml"].round(6)) == sorted(round(n * VOXEL_ML, 6) for n in (64, 32, 27))
    assert row.loc[0, "ai_volume_ml"] == pytest.approx(136 * VOXEL_ML)
    assert row.loc[0, "reviewed_volume_ml"] == pytest.approx(123 * VOXEL_ML)
    assert row.loc[0, "volume_difference_ml"] == pytest.approx(-13 * VOXEL_ML)
    scans = pd.DataFrame({"patient_id": ["P1", "P1"], "scan_id": ["S0", "S1"], "days": [-3, 60]})
    scans.to_csv(tmp_path / "scans.tsv", sep="\t", index=False)
    table = review_table(tmp_path / "scans.tsv", [tmp_path / s / "lesions.parquet" for s in ("S0", "S1")],
                         [tmp_path / "S1" / "review" / "agreement.parquet"], tmp_path / "review.parquet")
    assert table["reviewed"].tolist() == [False, True]
    assert table["review_kind"].tolist() == ["none", "RTSTRUCT"]
    assert table["ai_n_lesions"].tolist() == [3, 3] and table.loc[1, "reviewed_n_lesions"] == 3
    assert pd.isna(table.loc[0, "dice"]) and pd.isna(table.loc[0, "reviewed_volume_ml"])
    assert (tmp_path / "review.csv").exists()
    tables.read(tmp_path / "review.parquet", "review")
    assert table["reviews_passed_over"].tolist() == [0, 0] and table["passed_over"].tolist() == ["", ""]

    # a second, older review of S1 the radiologist stored: listed with its reason, the row otherwise the same
    older = ["seg-0123456789abcdef0123.dcm: older than the RTSTRUCT taken (content date/time 2.0 h earlier)"]
    again = review_table(tmp_path / "scans.tsv", [tmp_path / s / "lesions.parquet" for s in ("S0", "S1")],
                         [tmp_path / "S1" / "review" / "agreement.parquet"], tmp_path / "review2.parquet",
                         passed_over={"S1": older})
    assert again["reviews_passed_over"].tolist() == [0, 1] and again.loc[1, "passed_over"] == older[0]
    pd.testing.assert_frame_equal(again.drop(columns=["reviews_passed_over", "passed_over"]),
                                  table.drop(columns=["reviews_passed_over", "passed_over"]))
    with pytest.raises(ValueError, match="passed-over reviews of scans without a review taken: S0"):
        review_table(tmp_path / "scans.tsv", [tmp_path / s / "lesions.parquet" for s in ("S0", "S1")],
                     [tmp_path / "S1" / "review" / "agreement.parquet"], tmp_path / "review3.parquet",
                     passed_over={"S0": older})


def test_reviewed_lesions_take_their_site_from_the_models_organ_map(tmp_path):
    """With an organ model the segment job writes organs.nii.gz beside the segmentation: a reviewed
    scan's lesions get their finding site from it, as the model's own lesions do (the label map alone
    would call A and D "other"); B stays a node."""
    ai, reviewed = maps()
    image = Volume(np.where(ai > 0, 40.0, -100.0).astype(np.float32), AFFINE)
    save_nifti(image, tmp_path / "image.nii.gz", dtype=np.int16)
    (tmp_path / "S1").mkdir()
    save_nifti(Volume(ai, AFFINE), tmp_path / "S1" / "segmentation.nii.gz", dtype=np.uint8)
    save_nifti(Volume(reviewed, AFFINE), tmp_path / "reviewed.nii.gz", dtype=np.uint8)
    organs = np.zeros(SHAPE, np.uint8)
    organs[:16] = L.LIVER  # A (x 2-5) and D (x 10-12)
    organs[16:] = L.SPLEEN
    measure_scan(tmp_path / "image.nii.gz", tmp_path / "S1" / "segmentation.nii.gz", "P1", "S1",
                 tmp_path / "S1" / "lesions.parquet", tmp_path / "S1" / "tissue.parquet")
    args = (tmp_path / "image.nii.gz", tmp_path / "S1" / "segmentation.nii.gz", tmp_path / "reviewed.nii.gz",
            tmp_path / "S1" / "lesions.parquet", "P1", "S1", "SEG")
    measure_review(*args, tmp_path / "without" / "lesions.parquet", tmp_path / "without" / "agreement.parquet")
    save_nifti(Volume(organs, AFFINE), tmp_path / "S1" / L.ORGAN_MAP_FILE, dtype=np.uint8)
    measure_review(*args, tmp_path / "with" / "lesions.parquet", tmp_path / "with" / "agreement.parquet")
    site = {}
    for run in ("without", "with"):
        lesions = tables.read(tmp_path / run / "lesions.parquet", "scan_lesions")
        site[run] = dict(zip(lesions["centroid_x_mm"].round(1), lesions["organ"]))
    assert site["with"] == {7.0: "liver", 43.0: "node", 22.0: "liver"}
    assert site["without"][7.0] != "liver" and site["without"][43.0] == "node"
