"""RECIST 1.1 emulation, rule by rule, on hand-worked cases."""

import numpy as np
import pandas as pd
import pytest

from tumorburden.kinetics import burden as kb
from tumorburden.kinetics import recist

from kinetics_rows import lesion, make_lesions


def tp(sld, new=None, gone=None, **kw):
    n = len(sld)
    return recist.timepoint_responses(sld, new if new is not None else [0] * n,
                                      gone if gone is not None else [s == 0 for s in sld], **kw)


def test_target_selection_caps_total_at_five():
    base = make_lesions([lesion("p", "b", 0, k, organ, 20 + k)
                         for k, organ in enumerate(["lung", "liver", "node", "bone", "adrenal", "skin"], 1)])
    base.loc[base["organ"] == "node", "short_axis_mm"] = 30
    t = recist.select_targets(base)
    assert len(t) == 5 and 1 not in set(t["track_id"])  # the smallest (lung, 21 mm) is left out


def test_node_measured_by_short_axis_and_10mm_threshold_is_inclusive():
    base = make_lesions([lesion("p", "b", 0, 1, "lung", 10.0), lesion("p", "b", 0, 2, "node", 40, sa=15.0),
                         lesion("p", "b", 0, 3, "liver", 9.99)])
    t = recist.select_targets(base).set_index("track_id")
    assert list(t.index) == [2, 1] and t.loc[2, "measure_mm"] == 15.0


def test_partial_response_at_30_percent_below_baseline():
    assert tp([50, 35]) == ["PR"]     # -30 % exactly
    assert tp([50, 35.5]) == ["SD"]   # -29 %


def test_progression_needs_20_percent_and_5mm_over_the_nadir():
    assert tp([20, 24]) == ["SD"]     # +20 % but +4 mm
    assert tp([25, 30]) == ["PD"]     # +20 % and +5 mm
    assert tp([100, 119]) == ["SD"]   # +19 mm but +19 %
    assert tp([100, 40, 49]) == ["PR", "PD"]  # nadir 40: +22.5 %, +9 mm, though -51 % vs baseline


def test_nadir_includes_baseline_and_earlier_follow_ups_only():
    # scan 3: 71 is +18 % over the nadir 60 (no PD) and -29 % vs baseline (no PR)
    assert tp([100, 60, 71]) == ["PR", "SD"]
    assert tp([100, 60, 72]) == ["PR", "PD"]  # +20 %, +12 mm over 60


def test_complete_response_needs_nodes_below_10mm_and_non_targets_gone():
    lesions = make_lesions([
        lesion("p", "b", 0, 1, "liver", 30), lesion("p", "b", 0, 2, "node", 30, sa=20),
        lesion("p", "f", 60, 1, "liver", 0, status="disappeared"), lesion("p", "f", 60, 2, "node", 12, sa=9.5),
        lesion("p", "g", 120, 1, "liver", 0, status="disappeared"), lesion("p", "g", 120, 2, "node", 12, sa=10.0),
    ])
    scans = pd.DataFrame({"patient_id": "p", "scan_id": ["b", "f", "g"], "days": [0.0, 60, 120]})
    b = kb.compute_burden(lesions, kb.tables.empty("scan_tissue"), scans).set_index("scan_id")
    assert b.loc["f", "sld_mm"] == 9.5 and b.loc["f", "recist_response"] == "CR"  # node < 10 mm
    assert b.loc["g", "recist_response"] == "PR"  # 10 mm node: not normal; -80 % from 50 mm


def test_targets_gone_with_non_target_disease_left_is_pr():
    assert tp([40, 0], nontarget_volume_ml=[2.0, 1.0], nontarget_gone=[False, False]) == ["PR"]
    assert tp([40, 0], nontarget_volume_ml=[2.0, 0.0], nontarget_gone=[False, True]) == ["CR"]


def test_new_lesion_or_non_target_progression_is_pd():
    assert tp([40, 20], new=[0, 1]) == ["PD"]
    # non-target volume 2 -> 1 (nadir) -> 2.2: +120 % and +1.2 mL over the nadir
    assert tp([40, 40, 40], nontarget_volume_ml=[2.0, 1.0, 2.2], nontarget_gone=[0, 0, 0]) == ["SD", "PD"]
    # +100 % but only +0.5 mL: no unequivocal progression
    assert tp([40, 40], nontarget_volume_ml=[0.5, 1.0], nontarget_gone=[0, 0]) == ["SD"]


def test_no_target_at_baseline():
    nan = np.nan
    assert tp([nan, nan, nan], new=[0, 0, 1]) == ["NE", "PD"]
    assert tp([nan, nan], nontarget_volume_ml=[1.0, 0.0], nontarget_gone=[False, True]) == ["CR"]


def test_best_overall_response():
    assert recist.best_overall_response(["SD", "PR", "PD", "CR"]) == ("PR", 2)  # after PD: not counted
    assert recist.best_overall_response(["NE", "SD"]) == ("SD", None)
    assert recist.best_overall_response(["NE", "NE"]) == ("NE", None)
    assert recist.best_overall_response([]) == ("NE", None)


def test_volumetric_rules_mirror_recist():
    v = recist.volumetric_responses
    assert v([10, 3.5], [0, 0]) == ["PR"]          # -65 %
    assert v([10, 3.6], [0, 0]) == ["SD"]
    assert v([10, 2, 3.46], [0, 0, 0]) == ["PR", "PD"]  # +73 % and +1.46 mL over the nadir 2
    assert v([0.4, 0.2, 0.6], [0, 0, 0]) == ["SD", "SD"]  # +200 % but +0.4 mL < 0.5 mL
    assert v([10, 0], [0, 0]) == ["CR"]
    assert v([10, 9], [0, 1]) == ["PD"] and v([10, 9], [0, 1], new_lesion_pd=False) == ["SD"]
    assert v([0, 0, 1], [0, 0, 1]) == ["NE", "PD"]


def test_burden_responses_and_changes_per_scan():
    lesions = make_lesions([
        lesion("p", "pre", -50, 1, "liver", 30, vol=4.0, status="baseline"),
        lesion("p", "b", -1, 1, "liver", 40, vol=8.0),
        lesion("p", "f1", 60, 1, "liver", 26, vol=2.0),
        lesion("p", "f2", 120, 1, "liver", 26, vol=2.0),
        lesion("p", "f2", 120, 2, "lung", 8, vol=0.3, status="new"),
    ])
    scans = pd.DataFrame({"patient_id": "p", "scan_id": ["pre", "b", "f1", "f2"], "days": [-50.0, -1, 60, 120]})
    b = kb.compute_burden(lesions, kb.tables.empty("scan_tissue"), scans).set_index("scan_id")
    assert list(b["recist_response"]) == ["pre-baseline", "baseline", "PR", "PD"]  # -35 %; then a new lesion
    assert list(b["volumetric_response"]) == ["pre-baseline", "baseline", "PR", "PD"]
    assert b.loc["f1", "pct_change_volume"] == pytest.approx(-75.0)
    assert b.loc["f1", "pct_change_sld"] == pytest.approx(-35.0)
    assert b.loc["pre", "pct_change_volume"] == pytest.approx(-50.0)
    kb.tables.check(b.reset_index(), "burden")


def test_patient_without_baseline_scan_is_not_evaluable():
    lesions = make_lesions([lesion("p", "a", 10, 1, "liver", 30)])
    scans = pd.DataFrame({"patient_id": "p", "scan_id": ["a", "b"], "days": [10.0, 70]})
    b = kb.compute_burden(lesions, kb.tables.empty("scan_tissue"), scans)
    assert set(b["recist_response"]) == {"NE"} and b["pct_change_volume"].isna().all()
