import math

import numpy as np
import pandas as pd
import pytest

from tumorburden import tables
from tumorburden.kinetics import burden as kb
from tumorburden.kinetics import features as kf
from tumorburden.kinetics import recist, stein

from kinetics_rows import lesion, make_lesions


def burden_rows(pid, days, volumes, sld=None, new=None, n_targets=1, gone=None):
    n = len(days)
    sld = sld if sld is not None else [10.0] * n
    return kb.assess_responses(pd.DataFrame({
        "patient_id": pid, "scan_id": [f"{pid}_{i}" for i in range(n)], "days": np.asarray(days, float),
        "total_volume_ml": np.asarray(volumes, float), "n_lesions": [1 if v > 0 else 0 for v in volumes],
        "n_new_lesions": new if new is not None else [0] * n, "sld_mm": np.asarray(sld, float),
        "muscle_ml": 1.0, "sat_ml": 1.0, "vat_ml": 1.0, "n_target_lesions": n_targets,
        "targets_gone": gone if gone is not None else [s == 0 for s in sld],
    }))


def clinical(*pids):
    return pd.DataFrame({"patient_id": list(pids), "cohort": "lung"})


def run(burden, pids=None):
    pids = pids or list(dict.fromkeys(burden["patient_id"]))
    f, ex = kf.compute_features(burden, make_lesions([lesion("zz", "zz", 0, 1, "lung", 10)]), clinical(*pids))
    return f.set_index("patient_id"), ex


def test_single_scan_gives_nan_with_reasons():
    f, _ = run(burden_rows("a", [0], [5.0]))
    r = f.loc["a"]
    assert r["n_scans"] == 1 and r["nadir_volume_ml"] == 5.0 and r["time_to_nadir_days"] == 0
    for k in ("pct_change_first_fu", "best_pct_change", "tgr_post", "growth_g", "decay_d"):
        assert math.isnan(r[k]) and r[f"{k}_reason"] == "single scan"
    assert r["tgr_pre_reason"] == "no pre-baseline scan"
    assert r["recist_bor"] == "NE" and r["volumetric_response"] == "NE"


def test_no_baseline_lesion():
    f, _ = run(burden_rows("a", [0, 50, 100], [0.0, 2.0, 3.0], sld=[np.nan] * 3, n_targets=0))
    r = f.loc["a"]
    assert math.isnan(r["pct_change_first_fu"]) and r["pct_change_first_fu_reason"] == "no baseline lesion"
    assert r["growth_g_reason"] == "no baseline lesion"
    assert r["recist_bor"] == "NE" and r["recist_bor_reason"] == "no target lesion at baseline"


def test_changes_nadir_and_growth_rates():
    # pre-baseline 30.4375 days before baseline: volume doubles -> tgr_pre = 100 %/month
    f, _ = run(burden_rows("a", [-30.4375, 0, 60.875, 121.75], [5.0, 10.0, 2.5, 4.0]))
    r = f.loc["a"]
    assert r["tgr_pre"] == pytest.approx(100.0)
    assert r["tgr_post"] == pytest.approx(-50.0)  # quartered over 2 months
    assert r["tgr_ratio"] == pytest.approx(-0.5)
    assert r["pct_change_first_fu"] == pytest.approx(-75.0) and r["best_pct_change"] == pytest.approx(-75.0)
    assert r["nadir_volume_ml"] == 2.5 and r["time_to_nadir_days"] == pytest.approx(60.875)
    assert r["volumetric_response"] == "PR"  # best change -75 <= -65
    assert r["n_scans"] == 4 and r["baseline_scan_id"] == "a_1"


def test_stein_fit_recovers_g_and_d():
    g, d = 0.004, 0.015
    t = np.array([0, 42, 84, 126, 168, 250, 330.0])
    v = 20.0 * stein.stein_relative(t, g, d)
    fg, fd, rmse = stein.fit_stein(t, v)
    assert fg == pytest.approx(g, rel=0.05) and fd == pytest.approx(d, rel=0.05)
    f, _ = run(burden_rows("a", t, v))
    assert f.loc["a", "growth_g"] == pytest.approx(g, rel=0.05)
    assert f.loc["a", "decay_d"] == pytest.approx(d, rel=0.05)


def test_stein_needs_three_scans():
    f, _ = run(burden_rows("a", [0, 40], [5.0, 6.0]))
    assert math.isnan(f.loc["a", "growth_g"])
    assert f.loc["a", "growth_g_reason"].startswith("fewer than 3 scans")


@pytest.mark.parametrize("sld, new, expected", [
    ([100, 69, 75], [0, 0, 0], "PR"),     # -31 %
    ([100, 75, 85], [0, 0, 0], "SD"),     # -25 %
    ([20, 24, 25], [0, 0, 0], "SD"),      # +20 % but only 4 mm / +25 % but 5 mm: PD at scan 2
    ([100, 50, 61], [0, 0, 0], "PR"),     # PR then +22 % over the nadir 50 = PD after PR: BOR PR
    ([100, 90, 70], [0, 1, 0], "PD"),     # new lesion at the first follow-up ends the assessment
    ([100, 130, 60], [0, 0, 0], "PD"),    # PD first; later shrinkage does not count
])
def test_recist_bor(sld, new, expected):
    responses = recist.timepoint_responses(sld, np.array(new) > 0, [False] * len(sld))
    assert recist.best_overall_response(responses)[0] == expected


def test_recist_pd_needs_5mm_absolute():
    assert recist.timepoint_responses([20, 24], [0, 0], [0, 0]) == ["SD"]  # +20 %, +4 mm
    assert recist.timepoint_responses([25, 30], [0, 0], [0, 0]) == ["PD"]  # +20 %, +5 mm


def test_recist_pd_is_judged_against_the_nadir_not_baseline():
    # 100 -> 40 (PR) -> 49: +22.5 % and +9 mm over the nadir 40, although -51 % vs baseline
    assert recist.timepoint_responses([100, 40, 49], [0, 0, 0], [0, 0, 0]) == ["PR", "PD"]


def test_recist_bor_through_features_with_first_pd_day():
    f, _ = run(burden_rows("a", [0, 50, 100], [5.0, 3.0, 9.0], sld=[40, 26, 40], new=[0, 0, 0]))
    assert f.loc["a", "recist_bor"] == "PR" and f.loc["a", "recist_first_pd_days"] == 100
    f, _ = run(burden_rows("b", [0, 50], [5.0, 0.0], sld=[40, 0]))
    assert f.loc["b", "recist_bor"] == "CR" and f.loc["b", "volumetric_response"] == "CR"


def test_exclusions_and_written_tables(tmp_path):
    b = pd.concat([burden_rows("a", [0, 60], [5.0, 6.0]), burden_rows("late", [10, 60], [5.0, 6.0])])
    tables.write(b, tmp_path / "burden.parquet", "burden")
    tables.write(make_lesions([lesion("a", "a_0", 0, 1, "lung", 12), lesion("a", "a_0", 0, 2, "liver", 12)]),
                 tmp_path / "lesions.parquet", "lesions")
    (tmp_path / "clinical.tsv").write_text(
        "patient_id\tcohort\tpfs_days\tpfs_event\tos_days\tos_event\tage\n"
        "a\tlung\t100\t1\t200\t0\t60\nlate\tlung\t100\t1\t200\t0\t61\nnoscan\tmelanoma\t100\t1\t200\t0\t50\n")
    kf.write_features(tmp_path / "burden.parquet", tmp_path / "lesions.parquet", tmp_path / "clinical.tsv",
                      tmp_path / "features.parquet", tmp_path / "qc" / "exclusions.tsv", {})
    f = tables.read(tmp_path / "features.parquet", "features")
    assert f["patient_id"].tolist() == ["a"] and f["baseline_n_organs"].tolist() == [2]
    assert (tmp_path / "features.csv").exists()
    ex = tables.read(tmp_path / "qc" / "exclusions.tsv", "exclusions").set_index("patient_id")
    assert ex.loc["noscan", "reason"] == "no scan"
    assert ex.loc["late", "reason"].startswith("no baseline scan")


def test_exclusions_written_when_empty(tmp_path):
    b = burden_rows("a", [0], [5.0])
    tables.write(b, tmp_path / "burden.parquet", "burden")
    tables.write(make_lesions([lesion("a", "a_0", 0, 1, "lung", 12)]), tmp_path / "lesions.parquet", "lesions")
    (tmp_path / "clinical.tsv").write_text("patient_id\tcohort\tpfs_days\tpfs_event\tos_days\tos_event\na\tlung\t10\t1\t20\t1\n")
    kf.write_features(tmp_path / "burden.parquet", tmp_path / "lesions.parquet", tmp_path / "clinical.tsv",
                      tmp_path / "features.parquet", tmp_path / "exclusions.tsv")
    assert (tmp_path / "exclusions.tsv").read_text().strip() == "stage\tpatient_id\tscan_id\treason"


def test_time_to_new_lesion_and_to_volumetric_progression():
    f, _ = run(burden_rows("a", [-3, 40, 95, 150], [10.0, 6.0, 7.0, 20.0], sld=[50, 40, 41, 60], new=[0, 0, 1, 0]))
    r = f.loc["a"]
    assert r["new_lesions_any"] and r["time_to_new_lesion_days"] == 98  # from the baseline at day -3
    assert r["time_to_volumetric_progression_days"] == 98  # the new lesion; 20 mL at day 150 comes later
    assert r["recist_bor"] == "SD" and r["recist_first_pd_days"] == 98
    f, _ = run(burden_rows("b", [0, 40, 95], [10.0, 6.0, 5.0]))
    r = f.loc["b"]
    assert math.isnan(r["time_to_new_lesion_days"]) and r["time_to_new_lesion_days_reason"] == "no new lesion up to day 95"
    assert r["time_to_volumetric_progression_days_reason"] == "no progression up to day 95"
    assert r["volumetric_response"] == "SD"


def test_volumetric_progression_against_the_nadir():
    # 10 -> 4 (-60 %, SD) -> 7 (+75 % and +3 mL over the nadir 4): PD at day 80, BOR SD
    f, _ = run(burden_rows("a", [0, 40, 80], [10.0, 4.0, 7.0]))
    assert f.loc["a", "volumetric_response"] == "SD"
    assert f.loc["a", "time_to_volumetric_progression_days"] == 80


def test_every_lesion_disappearing():
    f, _ = run(burden_rows("a", [0, 50, 100], [5.0, 1.0, 0.0], sld=[30, 12, 0]))
    r = f.loc["a"]
    assert r["recist_bor"] == "CR" and r["volumetric_response"] == "CR"
    assert r["nadir_volume_ml"] == 0 and r["time_to_nadir_days"] == 100 and r["best_pct_change"] == -100
    assert math.isnan(r["tgr_post"]) is False and r["tgr_post"] < 0


def test_lesions_appearing_only_at_follow_up():
    f, _ = run(burden_rows("a", [0, 50, 100], [0.0, 0.5, 2.0], sld=[np.nan] * 3, new=[0, 1, 0], n_targets=0))
    r = f.loc["a"]
    assert r["baseline_volume_ml"] == 0 and r["baseline_n_lesions"] == 0
    assert r["recist_bor"] == "PD" and r["volumetric_response"] == "PD"  # a new lesion is progression
    assert r["time_to_new_lesion_days"] == 50
    assert math.isnan(r["pct_change_first_fu"]) and r["pct_change_first_fu_reason"] == "no baseline lesion"
    assert r["stein_model_reason"] == "no baseline lesion"


def test_hyperprogression():
    # pre-baseline growth 10 % / month, then x3 in 2 months (73 % / month, ratio 7.3) with RECIST PD
    f, _ = run(burden_rows("a", [-60.875, 0, 60.875], [10 / 1.21, 10.0, 30.0], sld=[25, 27, 40]))
    r = f.loc["a"]
    assert r["tgr_pre"] == pytest.approx(10.0) and r["tgr_ratio"] > 2 and r["hyperprogression"]
    f, _ = run(burden_rows("b", [0, 60], [10.0, 30.0], sld=[27, 40]))
    assert pd.isna(f.loc["b", "hyperprogression"])
    assert f.loc["b", "hyperprogression_reason"] == "tgr_ratio undefined (tgr_pre: no pre-baseline scan)"


def test_stein_model_and_reasons_in_features():
    t = np.array([0, 42, 84, 126, 168.0])
    f, _ = run(burden_rows("a", t, 10 * stein.dx(t, 0.01)))
    r = f.loc["a"]
    assert r["stein_model"] == "dx" and r["decay_d"] == pytest.approx(0.01, rel=1e-3)
    assert math.isnan(r["growth_g"]) and r["growth_g_reason"] == "model dx chosen (no growth term)"
    assert r["stein_phi_reason"] == "model dx chosen (phi only in gdphi)"
