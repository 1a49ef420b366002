import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_lung
from sksurv.metrics import concordance_index_censored

from tumorburden import tables
from tumorburden.survival import analysis, concordance, cox, km

from survival_data import simulate

FAST = {"bootstrap": 10, "covariates": [], "groupings": ["median"], "time_varying": False}


def test_km_table_and_median_equal_lifelines_on_lung():
    lung = load_lung()
    t = km.km_table(lung["time"], lung["status"])
    kmf = KaplanMeierFitter().fit(lung["time"], lung["status"])
    assert km.km_median(t) == kmf.median_survival_time_ == 310.0  # R: survfit(Surv(time, status) ~ 1, lung)
    np.testing.assert_allclose(t["survival"], kmf.survival_function_["KM_estimate"].to_numpy())
    assert t["time_days"].iloc[0] == 0 and t["at_risk"].iloc[0] == len(lung) and t["survival"].iloc[0] == 1
    assert t["events"].sum() == lung["status"].sum()
    assert t["events"].sum() + t["censored"].sum() == len(lung)


def test_at_risk_read_off_the_table_counts_patients_still_followed():
    lung = load_lung()
    t = km.km_table(lung["time"], lung["status"])
    times = [0, 100, 100.5, 365, 2000]
    expected = [(lung["time"] >= x).sum() for x in times]
    assert km.at_risk_at(t, times).tolist() == expected


def test_cox_recovers_a_simulated_hazard_ratio():
    f, c = simulate(n=600, hr_per_log_volume=2.0, seed=3)
    res = analysis.survival_tables(f, c, {**FAST, "endpoints": ["pfs"]})
    cx = res["cox"]
    row = cx[(cx["model"] == "univariable") & (cx["term"] == "log_baseline_volume_ml")].set_index("cohort").loc["all"]
    assert row["status"] == "ok" and row["strata"] == "cohort"
    assert row["hr"] == pytest.approx(2.0, rel=0.15)
    assert row["hr_lower"] < 2.0 < row["hr_upper"]


def test_a_cohort_without_events_gives_not_fitted_rows_and_others_go_on():
    f, c = simulate(n=120, seed=4)
    c.loc[c["cohort"] == "melanoma", "pfs_event"] = 0
    res = analysis.survival_tables(f, c, FAST)
    cx = res["cox"]
    cx = cx[cx["model"] == "univariable"].groupby(["cohort", "endpoint"])["status"].first()
    assert cx.loc[("melanoma", "pfs")] == "not fitted: no events"
    assert cx.loc[("lung", "pfs")] == "ok" and cx.loc[("melanoma", "os")] == "ok"
    lr = res["logrank"][res["logrank"]["test"] == "logrank"].groupby(["cohort", "endpoint"])["status"].first()
    assert lr.loc[("melanoma", "pfs")] == "not tested: no events"
    perf = res["performance"].set_index(["cohort", "endpoint", "feature"])
    assert perf.loc[("melanoma", "pfs", "baseline_volume_ml"), "status"].startswith("not computed: too few events")
    for name, frame in res.items():
        tables.check(tables.conform(frame, name), name)


def test_constant_covariate_is_not_fitted():
    df = pd.DataFrame({"time": np.arange(1.0, 21), "event": [1, 0] * 10, "x": 1.0})
    rows, _ = cox.fit_cox(df, "time", "event", ["x"])
    assert rows[0]["status"] == "not fitted: constant covariate x"


def test_harrell_c_scores_higher_burden_as_higher_risk():
    f, c = simulate(n=200, hr_per_log_volume=3.0, seed=5)
    d = f.merge(c[["patient_id", "pfs_days", "pfs_event"]])
    got = concordance.harrell_c(d["pfs_days"], d["pfs_event"], d["baseline_volume_ml"])
    ref = concordance_index_censored(d["pfs_event"].astype(bool), d["pfs_days"], d["baseline_volume_ml"])[0]
    assert got == pytest.approx(ref) and got > 0.6
    res = concordance.concordance_with_ci(d["pfs_days"], d["pfs_event"], d["baseline_volume_ml"], 30,
                                          concordance.row_seed(7, "x"))
    assert res["c_index_lower"] < got < res["c_index_upper"]
    assert 0.6 < res["c_index_uno"] < 1


def test_km_groups_split_at_the_median():
    f, c = simulate(n=41, seed=6)
    res = analysis.survival_tables(f, c, {**FAST, "pooled": False, "endpoints": ["os"]})
    first = res["km"][res["km"]["time_days"] == 0].set_index(["cohort", "stratifier", "group"])["at_risk"]
    assert first[("lung", "all", "all")] == 21
    assert first[("lung", "baseline_volume_ml:median", "low")] == 11  # median patient goes to 'low'
    assert first[("lung", "baseline_volume_ml:median", "high")] == 10


def test_write_survival_is_deterministic_and_checks_input(tmp_path):
    f, c = simulate(n=60, seed=8)
    for col, kind in tables.SCHEMAS["features"].items():
        if col not in f:
            f[col] = {"str": "x", "float": 1.0, "int": 1, "bool": False}[kind]
    tables.write(f, tmp_path / "features.parquet", "features")
    c.to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    for out in ("a", "b"):
        analysis.write_survival(tmp_path / "features.parquet", tmp_path / "clinical.tsv", tmp_path / out, FAST)
    for name in ("km", "km_summary", "survival_at", "logrank", "cox", "zph", "performance", "td_auc",
                 "c_index_difference", "table1"):
        assert (tmp_path / "a" / f"{name}.csv").read_bytes() == (tmp_path / "b" / f"{name}.csv").read_bytes()
        assert (tmp_path / "a" / f"{name}.parquet").exists()
    c.loc[3, "os_days"] = -1
    c.to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"clinical.tsv line 5 \(patient_id=p003\): os_days must be >= 0"):
        analysis.write_survival(tmp_path / "features.parquet", tmp_path / "clinical.tsv", tmp_path / "c", FAST)
