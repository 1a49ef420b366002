"""Body composition at L3 on label maps with a known L3 slab and known areas per slice."""

import math

import numpy as np
import pytest

from tumorburden import labels as L
from tumorburden import tables
from tumorburden.imaging.volume import Volume
from tumorburden.lesions.l3 import l3_row

# 1 x 1 mm pixels, 3 mm slices; the L3 vertebra on slices 10..16, so its middle is slice 13
AFFINE = np.array([[1.0, 0, 0, -30.0], [0, 1.0, 0, -30.0], [0, 0, 3.0, 100.0], [0, 0, 0, 1.0]])
SHAPE = (60, 60, 30)


def scene():
    labels = np.zeros(SHAPE, np.uint8)
    organs = np.zeros(SHAPE, np.uint8)
    organs[25:35, 25:35, 10:17] = L.VERTEBRA_L3
    organs[25:35, 25:35, 17:23] = L.BONE  # L2: bone, not L3
    for k in range(SHAPE[2]):  # a different muscle area on every slice: 10 * (k + 1) pixels
        labels[0:10, 0:k + 1, k] = L.MUSCLE
    labels[40:60, 0:15, 13] = L.SAT  # 300 pixels on the L3 slice only
    labels[40:45, 20:30, 13] = L.VAT  # 50 pixels
    return labels, organs


def test_areas_on_the_slice_at_the_middle_of_l3():
    labels, organs = scene()
    row = tables.check(l3_row(Volume(labels.astype(np.float32), AFFINE), labels, organs, "P1", "S1"), "scan_l3").iloc[0]
    assert row["l3_reason"] == ""
    assert row["l3_muscle_cm2"] == pytest.approx(140 / 100)  # slice 13: 10 x 14 pixels of 1 mm2
    assert row["l3_sat_cm2"] == pytest.approx(3.0)
    assert row["l3_vat_cm2"] == pytest.approx(0.5)
    assert row["l3_slice_mm"] == pytest.approx(100.0 + 13 * 3.0)


def test_the_axial_axis_is_found_whatever_the_array_order():
    labels, organs = scene()
    # the same body stored with the slice axis first and the column axis flipped (an LPS-like grid)
    perm = (2, 0, 1)
    affine = np.zeros((4, 4))
    affine[:3, 0] = AFFINE[:3, 2]
    affine[:3, 1] = AFFINE[:3, 0]
    affine[:3, 2] = -AFFINE[:3, 1]
    affine[:3, 3] = AFFINE[:3, 3] + AFFINE[:3, 1] * (SHAPE[1] - 1)
    affine[3, 3] = 1.0
    lab = np.transpose(labels, perm)[:, :, ::-1].copy()
    org = np.transpose(organs, perm)[:, :, ::-1].copy()
    row = l3_row(Volume(lab.astype(np.float32), affine), lab, org, "P1", "S1").iloc[0]
    assert row["l3_muscle_cm2"] == pytest.approx(1.4) and row["l3_sat_cm2"] == pytest.approx(3.0)
    assert row["l3_slice_mm"] == pytest.approx(139.0)


@pytest.mark.parametrize("case, reason", [
    ("no organ map", "no organ map"),
    ("no L3", "no L3 vertebra in the organ map"),
    ("cut", "touches the scan's first or last slice"),
])
def test_no_l3_gives_nan_and_the_reason(case, reason):
    labels, organs = scene()
    if case == "no L3":
        organs[organs == L.VERTEBRA_L3] = L.BONE
    if case == "cut":
        organs[25:35, 25:35, 0:5] = L.VERTEBRA_L3
    row = l3_row(Volume(labels.astype(np.float32), AFFINE), labels, None if case == "no organ map" else organs,
                 "P1", "S1").iloc[0]
    assert reason in row["l3_reason"]
    assert all(math.isnan(row[c]) for c in ("l3_slice_mm", "l3_muscle_cm2", "l3_sat_cm2", "l3_vat_cm2"))
