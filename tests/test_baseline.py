"""The baseline-scan rule (tumorburden.baseline), and that every stage that needs a baseline
takes it from there: kinetics, registration, survival and the synthetic truth agree."""

import pandas as pd

from tumorburden.baseline import baseline_scans, reference_scans
from tumorburden.survival.analysis import baseline_sld


def scans(rows):
    return pd.DataFrame(rows, columns=["patient_id", "scan_id", "days"]).astype({"days": float})


def test_baseline_is_the_last_scan_on_or_before_day_0():
    s = scans([("p", "a", 10), ("p", "b", 40), ("q", "c", -5), ("q", "d", 0), ("q", "e", 30)])
    assert baseline_scans(s).to_dict() == {"q": "d"}  # p has no scan on or before day 0: no baseline


def test_same_day_scans_break_the_tie_by_scan_id_whatever_the_row_order():
    rows = [("p", "s2", -3), ("p", "s9", 0), ("p", "s3", 0), ("p", "s4", 20)]
    assert baseline_scans(scans(rows)).to_dict() == {"p": "s9"}
    assert baseline_scans(scans(rows[::-1])).to_dict() == {"p": "s9"}


def test_reference_scan_is_the_baseline_else_the_first():
    s = scans([("a", "a0", -40), ("a", "a1", -2), ("a", "a2", 50), ("b", "b1", 60), ("b", "b0", 10),
               ("c", "c7", 5), ("c", "c6", 5)])
    assert reference_scans(s).to_dict() == {"a": "a1", "b": "b0", "c": "c6"}


def test_survival_takes_the_baseline_sld_from_the_same_rule():
    # a features table without baseline_scan_id: survival finds the baseline in the burden table;
    # two scans on day 0, listed the other way round, must give the tie-break's scan (s9: 30 mm)
    burden = scans([("p", "s9", 0), ("p", "s3", 0), ("p", "s4", 20)]).assign(sld_mm=[30.0, 50.0, 10.0])
    features = pd.DataFrame({"patient_id": ["p"]})
    assert baseline_sld(features, burden).tolist() == [30.0]
