"""Burden per site and its kinetics, on hand-made lesion rows whose sums are written out here."""

import math

import pandas as pd
import pytest

from kinetics_rows import lesion, make_lesions
from tumorburden import tables
from tumorburden.kinetics.sites import compute_site_burden, compute_site_kinetics, liver_involvement, site_group

SCANS = pd.DataFrame({"patient_id": ["A", "A", "A", "B"], "scan_id": ["A0", "A1", "A2", "B1"],
                      "days": [-5.0, 60.0, 120.0, 30.0]})
LESIONS = make_lesions([
    lesion("A", "A0", -5, 1, "liver", 20, vol=10.0, status="baseline"),
    lesion("A", "A0", -5, 2, "liver", 15, vol=4.0, status="baseline"),
    lesion("A", "A0", -5, 3, "node", 16, vol=2.0, status="baseline"),
    lesion("A", "A0", -5, 4, "spleen", 12, vol=3.0, status="baseline"),  # other
    lesion("A", "A1", 60, 1, "liver", 18, vol=7.0),
    lesion("A", "A1", 60, 2, "liver", 0, status="disappeared"),  # not present: counts nothing
    lesion("A", "A1", 60, 3, "node", 18, vol=3.0),
    lesion("A", "A1", 60, 5, "lung", 11, vol=1.5, status="new"),
    lesion("A", "A2", 120, 1, "liver", 19, vol=8.0),
    lesion("A", "A2", 120, 3, "node", 14, vol=1.0),
    lesion("A", "A2", 120, 5, "lung", 12, vol=2.0),
    lesion("A", "A2", 120, 4, "bone", 12, vol=0.5),  # other
    lesion("B", "B1", 30, 1, "liver", 30, vol=20.0, status="baseline"),  # B has no baseline scan
])


def test_site_groups():
    assert [site_group(o) for o in ("liver", "lung", "node", "soft_tissue", "spleen", "bone", "other")] == \
        ["liver", "lung", "node", "other", "other", "other", "other"]


def test_burden_per_site_per_scan():
    sb = tables.check(compute_site_burden(LESIONS, SCANS), "site_burden")
    a = sb[sb["patient_id"] == "A"].set_index(["scan_id", "site"])
    assert a["volume_ml"].to_dict() == {
        ("A0", "liver"): 14.0, ("A0", "lung"): 0.0, ("A0", "node"): 2.0, ("A0", "other"): 3.0,
        ("A1", "liver"): 7.0, ("A1", "lung"): 1.5, ("A1", "node"): 3.0, ("A1", "other"): 0.0,
        ("A2", "liver"): 8.0, ("A2", "lung"): 2.0, ("A2", "node"): 1.0, ("A2", "other"): 0.5}
    assert a["n_lesions"].to_dict()[("A0", "liver")] == 2 and a["n_lesions"].to_dict()[("A1", "liver")] == 1
    pct = a["pct_change_volume"]
    assert pct[("A1", "liver")] == pytest.approx(-50.0) and pct[("A2", "node")] == pytest.approx(-50.0)
    assert pct[("A2", "other")] == pytest.approx(100 * (0.5 - 3.0) / 3.0)
    assert math.isnan(pct[("A1", "lung")])  # no lung lesion at baseline
    # each scan's sites sum to its total burden
    totals = sb.groupby("scan_id")["volume_ml"].sum().to_dict()
    assert totals == {"A0": 19.0, "A1": 11.5, "A2": 11.5, "B1": 20.0}
    assert sb["pct_change_volume"][sb["patient_id"] == "B"].isna().all()  # no baseline scan


def test_site_kinetics_per_patient():
    sk = tables.check(compute_site_kinetics(compute_site_burden(LESIONS, SCANS)), "site_kinetics")
    assert set(sk["patient_id"]) == {"A"}  # B has no baseline scan, as in features
    a = sk.set_index("site")
    assert a.loc["liver", ["baseline_volume_ml", "nadir_volume_ml", "time_to_nadir_days"]].tolist() == [14.0, 7.0, 65.0]
    assert a.loc["liver", "pct_change_first_fu"] == pytest.approx(-50.0)
    assert a.loc["liver", "best_pct_change"] == pytest.approx(-50.0)
    assert a.loc["node", "best_pct_change"] == pytest.approx(-50.0)
    assert a.loc["node", "pct_change_first_fu"] == pytest.approx(50.0)
    assert a["involved"].to_dict() == {"liver": True, "lung": False, "node": True, "other": True}
    assert math.isnan(a.loc["lung", "pct_change_first_fu"])
    assert a.loc["lung", "pct_change_reason"] == "no lung lesion at baseline"
    assert a.loc["other", "nadir_volume_ml"] == 0.0 and a.loc["other", "time_to_nadir_days"] == 65.0


def test_liver_involvement_at_baseline():
    base = pd.Series({"A": "A0", "B": "B1", "C": "C0"})
    no_liver_at_a0 = LESIONS[~((LESIONS["scan_id"] == "A0") & (LESIONS["organ"] == "liver"))]
    assert liver_involvement(LESIONS, base).to_dict() == {"A": True, "B": True, "C": False}
    assert liver_involvement(no_liver_at_a0, base).to_dict() == {"A": False, "B": True, "C": False}
