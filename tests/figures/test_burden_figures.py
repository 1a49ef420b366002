import numpy as np
import pandas as pd
import pytest

from tumorburden import tables
from tumorburden.figures import burden as bf
from tumorburden.figures import style

# Three patients: P1 shrinks (PR), P2 grows from a tiny baseline past the cap (PD), P3 has no follow-up.
SCANS = [
    ("P1", "P1-S0", -20.0, 0.0, 50.0, 0), ("P1", "P1-S1", 0.0, 0.0, 40.0, 0), ("P1", "P1-S2", 61.0, 0.0, 20.0, 0),
    ("P1", "P1-S3", 122.0, 0.0, 10.0, 1),
    ("P2", "P2-S0", -3.0, 0.0, 1.0, 0), ("P2", "P2-S1", 60.0, 0.0, 4.0, 2),
    ("P3", "P3-S0", 0.0, 0.0, 30.0, 0),
]


def burden_frame(**extra):
    df = pd.DataFrame(SCANS, columns=["patient_id", "scan_id", "days", "sld_mm", "total_volume_ml", "n_new_lesions"])
    df = df.assign(n_lesions=1, muscle_ml=1.0, sat_ml=1.0, vat_ml=1.0, **extra)
    return tables.conform(df, "burden")


def features_frame():
    df = pd.DataFrame({
        "patient_id": ["P1", "P2", "P3"], "cohort": ["lung", "melanoma", "lung"], "n_scans": [4, 2, 1],
        "baseline_scan_id": ["P1-S1", "P2-S0", "P3-S0"], "baseline_volume_ml": [40.0, 1.0, 30.0],
        "baseline_n_lesions": [1, 1, 1], "nadir_volume_ml": [10.0, 1.0, 30.0], "time_to_nadir_days": [122.0, 0, 0],
        "pct_change_first_fu": [-50.0, 300.0, np.nan], "best_pct_change": [-75.0, 300.0, np.nan],
        "tgr_pre": np.nan, "tgr_post": np.nan, "tgr_ratio": np.nan, "growth_g": np.nan, "decay_d": np.nan,
        "new_lesions_any": [True, True, False], "recist_bor": ["PR", "PD", "NE"],
        "volumetric_response": ["PR", "PD", "NE"], "time_to_new_lesion_days": [122.0, 60.0, np.nan],
        "time_to_volumetric_progression_days": [np.nan, 60.0, np.nan], "stein_model": [None, None, None]})
    return tables.conform(df, "features")


def clinical_frame():
    return pd.DataFrame({"patient_id": ["P1", "P2", "P3"], "cohort": ["lung", "melanoma", "lung"],
                         "pfs_days": [300.0, 60.0, 45.0], "pfs_event": [0, 1, 1],
                         "os_days": [300.0, 150.0, 45.0], "os_event": [0, 1, 1]})


def test_pct_change_from_the_baseline_scan_on():
    s = bf.pct_change_series(burden_frame(), features_frame())
    p1 = s[s["patient_id"] == "P1"]
    assert p1["scan_id"].tolist() == ["P1-S1", "P1-S2", "P1-S3"]  # the pre-baseline scan is not drawn
    assert p1["pct_change"].tolist() == [0.0, -50.0, -75.0]
    assert p1["days_from_baseline"].tolist() == [0.0, 61.0, 122.0]
    assert s[s["patient_id"] == "P2"]["pct_change"].tolist() == [0.0, 300.0]
    assert s[s["patient_id"] == "P2"]["days_from_baseline"].tolist() == [0.0, 63.0]


def test_a_zero_baseline_burden_has_no_percent_change():
    b = burden_frame()
    b.loc[b["scan_id"] == "P3-S0", "total_volume_ml"] = 0.0
    assert "P3" not in set(bf.pct_change_series(b, features_frame())["patient_id"])


def test_the_burden_tables_own_pct_change_wins_when_it_has_one():
    b = burden_frame(pct_change_volume=[np.nan, 0.0, -11.0, -22.0, 0.0, 33.0, 0.0])
    s = bf.pct_change_series(b, features_frame())
    assert s[s["patient_id"] == "P1"]["pct_change"].tolist() == [0.0, -11.0, -22.0]


def test_spaghetti_draws_each_patient_in_its_response_colour_and_caps_the_axis():
    f = features_frame()
    fig, drawn = bf.spaghetti_figure(bf.pct_change_series(burden_frame(), f), f, {"pct_change_cap": 200.0})
    assert drawn == {"lung": ["P1", "P3"], "melanoma": ["P2"]}
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.get_lines() if line.get_gid()}
    assert lines["patient:P1"].get_color() == style.RESPONSE_COLOURS["PR"]
    assert lines["patient:P2"].get_color() == style.RESPONSE_COLOURS["PD"]
    assert max(lines["patient:P2"].get_ydata()) == 200.0  # 300 % drawn at the cap
    assert fig.axes[0].get_ylim()[1] > 200.0
    # months on the x axis
    assert lines["patient:P1"].get_xdata()[-1] == pytest.approx(122.0 / 30.4375)


def test_waterfall_bars_are_the_best_changes_sorted_with_the_missing_counted():
    fig, drawn = bf.waterfall_figure(features_frame(), {"pct_change_cap": 200.0})
    assert drawn == {"lung": [-75.0], "melanoma": [300.0]}
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.startswith("1 without follow-up") for t in texts)
    heights = [p.get_height() for ax in fig.axes for p in ax.patches]
    assert heights == [-75.0, 200.0]


def test_response_column_must_exist():
    with pytest.raises(ValueError, match="no column 'bor'"):
        bf.waterfall_figure(features_frame(), {"response": "bor"})


def test_swimmer_rows_carry_scans_progression_death_and_new_lesions():
    c, b, f = clinical_frame(), burden_frame(), features_frame()
    fig, rows = bf.swimmer_figure(c, b, f, "All")
    by_id = {r["patient_id"]: r for r in rows}
    assert [r["patient_id"] for r in rows] == ["P1", "P2", "P3"]  # longest follow-up first
    assert by_id["P1"]["scan_days"] == [-20.0, 0.0, 61.0, 122.0]
    assert by_id["P1"]["new_lesion_days"] == [122.0] and by_id["P1"]["alive"]
    assert by_id["P1"]["progression_days"] is None and by_id["P1"]["death_days"] is None
    assert by_id["P2"]["progression_days"] == 60.0 and by_id["P2"]["death_days"] == 150.0
    assert by_id["P2"]["end_days"] == 150.0
    bars = {p.get_gid(): p for p in fig.axes[0].patches if (p.get_gid() or "").startswith("bar:")}
    assert bars["bar:P1"].get_width() == pytest.approx(300.0 / 30.4375)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["P1", "P2", "P3"]


def test_swimmer_marks_each_scans_response_when_the_burden_table_has_it():
    b = burden_frame(recist_response=["pre-baseline", "baseline", "PR", "PR", "baseline", "PD", "baseline"])
    fig, rows = bf.swimmer_figure(clinical_frame(), b, features_frame(), "All")
    colours = [line.get_color() for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    assert colours.count(style.RESPONSE_COLOURS["PR"]) == 2 and colours.count(style.RESPONSE_COLOURS["PD"]) == 1


def test_swimmer_pages_split_a_large_cohort():
    c = pd.DataFrame({"patient_id": [f"P{i}" for i in range(7)], "cohort": ["a"] * 5 + ["b"] * 2})
    assert bf.swimmer_pages(c, 2) == {"a": 3, "b": 1}


def test_write_burden_figures_from_files(tmp_path):
    # the burden table as the kinetics stage writes it (with its per-scan responses)
    responses = ["pre-baseline", "baseline", "PR", "PR", "baseline", "PD", "baseline"]
    burden = burden_frame(pct_change_volume=[np.nan, 0.0, -50.0, -75.0, 0.0, 300.0, 0.0], pct_change_sld=np.nan,
                          recist_response=responses, volumetric_response=responses)
    tables.write(burden, tmp_path / "burden.parquet", "burden")
    tables.write(features_frame(), tmp_path / "features.parquet", "features")
    clinical_frame().to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    written = bf.write_burden_figures(tmp_path / "burden.parquet", tmp_path / "features.parquet",
                                      tmp_path / "clinical.tsv", tmp_path / "fig",
                                      {"formats": ["png"], "swimmer_max_patients": 1})
    assert [p.name for p in written] == ["spaghetti.png", "waterfall.png", "swimmer_lung_p1.png",
                                         "swimmer_lung_p2.png", "swimmer_melanoma_p1.png"]
    assert all(p.stat().st_size > 5000 for p in written)
