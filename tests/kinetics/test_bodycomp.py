"""Skeletal muscle index and sarcopenia per scan from L3 areas, heights and sexes written here."""

import math

import pandas as pd
import pytest

from tumorburden import tables
from tumorburden.kinetics.bodycomp import DEFAULTS, compute_body_composition

SCANS = pd.DataFrame({"patient_id": ["A", "A", "B", "C", "D", "E"], "scan_id": ["A0", "A1", "B0", "C0", "D0", "E0"],
                      "days": [0.0, 60.0, 0.0, 0.0, 0.0, 0.0]})
TISSUE = pd.DataFrame({"patient_id": SCANS["patient_id"], "scan_id": SCANS["scan_id"],
                       "muscle_ml": [5000.0, 4800, 4000, 3000, 3500, 4100], "sat_ml": 1000.0, "vat_ml": 900.0})
L3 = pd.DataFrame({"patient_id": SCANS["patient_id"], "scan_id": SCANS["scan_id"],
                   "l3_slice_mm": [10.0, 12.0, 0.0, math.nan, 5.0, 7.0],
                   "l3_muscle_cm2": [160.0, 150.0, 100.0, math.nan, 120.0, 110.0],
                   "l3_sat_cm2": 150.0, "l3_vat_cm2": 120.0,
                   "l3_reason": ["", "", "", "no organ map: no model gives the L3 vertebra", "", ""]})
CLINICAL = pd.DataFrame({"patient_id": ["A", "B", "C", "D", "E"], "cohort": "lung",
                         "sex": ["M", "female", "F", "F", "X"], "height_cm": [175.0, 160.0, 170.0, math.nan, 180.0]})


def test_smi_and_sarcopenia_by_prado():
    assert DEFAULTS["sarcopenia_smi_cm2_m2"] == {"male": 52.4, "female": 38.5}  # Prado et al. 2008
    bc = tables.check(compute_body_composition(TISSUE, L3, SCANS, CLINICAL), "body_composition").set_index("scan_id")
    # A: 160 / 1.75^2 = 52.24 < 52.4 (a man: sarcopenic); at A1 150 / 1.75^2 = 48.98
    assert bc.loc["A0", "smi_cm2_m2"] == pytest.approx(160 / 1.75 ** 2)
    assert bc.loc["A1", "smi_cm2_m2"] == pytest.approx(150 / 1.75 ** 2)
    assert bc.loc["A0", "sarcopenia"] == True and bc.loc["A1", "sarcopenia"] == True  # noqa: E712
    # B: 100 / 1.6^2 = 39.06 >= 38.5 (a woman: not sarcopenic)
    assert bc.loc["B0", "smi_cm2_m2"] == pytest.approx(39.0625)
    assert bc.loc["B0", "sarcopenia"] == False  # noqa: E712
    assert bc.loc["A0", "muscle_ml"] == 5000.0 and bc.loc["B0", "l3_sat_cm2"] == 150.0


def test_a_cut_off_of_ones_own():
    bc = compute_body_composition(TISSUE, L3, SCANS, CLINICAL, {"sarcopenia_smi_cm2_m2": {"male": 50.0}})
    bc = bc.set_index("scan_id")
    assert bc.loc["A0", "sarcopenia"] == False and bc.loc["A1", "sarcopenia"] == True  # noqa: E712


def test_missing_l3_height_or_sex_is_nan_with_the_reason():
    bc = compute_body_composition(TISSUE, L3, SCANS, CLINICAL).set_index("scan_id")
    assert math.isnan(bc.loc["C0", "smi_cm2_m2"]) and pd.isna(bc.loc["C0", "sarcopenia"])
    assert bc.loc["C0", "smi_reason"] == "no L3 slice: no organ map: no model gives the L3 vertebra"
    assert math.isnan(bc.loc["D0", "smi_cm2_m2"]) and bc.loc["D0", "smi_reason"] == "no height_cm for patient D in clinical.tsv"
    assert bc.loc["E0", "smi_cm2_m2"] == pytest.approx(110 / 1.8 ** 2) and pd.isna(bc.loc["E0", "sarcopenia"])
    assert bc.loc["E0", "sarcopenia_reason"] == "sex of patient E is not M, F, male or female"
    no_height = compute_body_composition(TISSUE, L3, SCANS, CLINICAL.drop(columns="height_cm")).set_index("scan_id")
    assert no_height["smi_cm2_m2"].isna().all()
    assert no_height.loc["A0", "smi_reason"] == "clinical.tsv has no height_cm column"
