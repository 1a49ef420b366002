import numpy as np
import pandas as pd
import pytest

from tumorburden import tables
from tumorburden.kinetics import burden as kb
from tumorburden.kinetics import recist

from kinetics_rows import lesion, make_lesions


def scans_frame(rows):
    return pd.DataFrame(rows, columns=["patient_id", "scan_id", "days"]).astype({"days": float})


def test_target_selection_two_per_organ_and_node_rule():
    base = make_lesions([
        lesion("p", "b", 0, 1, "liver", 50),
        lesion("p", "b", 0, 2, "liver", 40),
        lesion("p", "b", 0, 3, "liver", 30),    # third liver lesion: over the per-organ cap
        lesion("p", "b", 0, 4, "node", 30, sa=14),  # node short axis < 15 mm: not measurable
        lesion("p", "b", 0, 5, "node", 20, sa=16),
        lesion("p", "b", 0, 6, "lung", 9.5),    # < 10 mm: not measurable
        lesion("p", "b", 0, 7, "lung", 12),
        lesion("p", "b", 0, 8, "soft_tissue", 25),
        lesion("p", "b", 0, 9, "other", 11),
    ])
    t = recist.select_targets(base)
    assert list(t["track_id"]) == [1, 2, 8, 5, 7]  # largest first: 50, 40, 25, 16 (node SA), 12
    assert t.loc[t["track_id"] == 5, "measure_mm"].item() == 16


def test_burden_table():
    lesions = make_lesions([
        lesion("p1", "s0", -30, 1, "liver", 20, vol=3.0),
        lesion("p1", "s1", 0, 1, "liver", 22, vol=4.0),
        lesion("p1", "s1", 0, 2, "node", 25, sa=18, vol=2.0),
        lesion("p1", "s2", 60, 1, "liver", 0, status="disappeared"),
        lesion("p1", "s2", 60, 2, "node", 12, sa=8, vol=0.5),
        lesion("p1", "s2", 60, 3, "lung", 6, vol=0.1, status="new"),
    ])
    scans = scans_frame([("p1", "s0", -30), ("p1", "s1", 0), ("p1", "s2", 60), ("p2", "x0", -2)])
    tissue = pd.DataFrame({"patient_id": ["p1", "p1", "p1", "p2"], "scan_id": ["s0", "s1", "s2", "x0"],
                           "muscle_ml": [1.0, 2, 3, 4], "sat_ml": [1.0, 1, 1, 1], "vat_ml": [2.0, 2, 2, 2]})
    b = kb.compute_burden(lesions, tissue, scans).set_index("scan_id")
    tables.check(b.reset_index(), "burden")
    assert b.loc["s1", "total_volume_ml"] == 6.0 and b.loc["s1", "n_lesions"] == 2
    assert b.loc["s2", "n_lesions"] == 2 and b.loc["s2", "n_new_lesions"] == 1
    # targets chosen at s1 (last scan with days <= 0): liver LD 22 + node SA 18
    assert b.loc["s1", "sld_mm"] == 40.0
    assert b.loc["s0", "sld_mm"] == 20.0          # pre-baseline: node track absent -> 0
    assert b.loc["s2", "sld_mm"] == 8.0           # liver disappeared (0) + node SA 8; new lung not a target
    assert bool(b.loc["s2", "targets_gone"])      # node < 10 mm and liver gone: CR condition
    # a scan with no lesion at all is still a row, burden 0, no target
    assert b.loc["x0", "total_volume_ml"] == 0 and b.loc["x0", "n_lesions"] == 0
    assert np.isnan(b.loc["x0", "sld_mm"]) and b.loc["x0", "muscle_ml"] == 4


def test_targets_are_chosen_at_the_baseline_scan_only():
    scans = scans_frame([("p", "a", 10), ("p", "b", 40), ("q", "c", -5), ("q", "d", 0), ("q", "e", 30)])
    # p has no scan on or before day 0: no baseline, no targets (tests/test_baseline.py has the rule)
    lesions = make_lesions([lesion("p", "a", 0, 1, "lung", 15), lesion("q", "d", 0, 1, "lung", 15)])
    burden = kb.compute_burden(lesions, tables.empty("scan_tissue"), scans).set_index("scan_id")
    assert burden.loc[["a", "b"], "sld_mm"].isna().all() and not burden.loc[["a", "b"], "is_baseline"].any()
    assert burden.loc["d", "sld_mm"] == 15 and burden.loc["d", "is_baseline"]


def test_lesion_scan_missing_from_scans_table_is_an_error():
    lesions = make_lesions([lesion("p", "zz", 0, 1, "liver", 20)])
    with pytest.raises(ValueError, match="zz"):
        kb.compute_burden(lesions, tables.empty("scan_tissue"), scans_frame([("p", "a", 0)]))


def test_write_burden_files(tmp_path):
    lesions = make_lesions([lesion("p", "a", 0, 1, "lung", 15, vol=2.0)])
    tables.write(lesions, tmp_path / "lesions.parquet", "lesions")
    tissue = tmp_path / "a_tissue.parquet"
    tables.write(pd.DataFrame({"patient_id": ["p"], "scan_id": ["a"], "muscle_ml": [1.0],
                               "sat_ml": [1.0], "vat_ml": [1.0]}), tissue, "scan_tissue")
    (tmp_path / "scans.tsv").write_text("patient_id\tscan_id\tdays\timage\np\ta\t0\tx\np\tb\t50\ty\n")
    out = tmp_path / "burden.parquet"
    kb.write_burden(tmp_path / "lesions.parquet", [tissue], tmp_path / "scans.tsv", out, {})
    back = tables.read(out, "burden")
    assert (tmp_path / "burden.csv").exists() and list(back["scan_id"]) == ["a", "b"]
    assert back["sld_mm"].tolist() == [15.0, 0.0]
