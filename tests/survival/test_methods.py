import numpy as np
import pandas as pd
import pytest

from tumorburden import cli, tables
from tumorburden.survival import analysis, concordance, cox, cutpoints

from survival_data import simulate

FAST = {"bootstrap": 10}


def _clinical(c, seed=0):
    rng = np.random.default_rng(seed)
    return c.assign(age=rng.integers(40, 80, len(c)), sex=rng.choice(["F", "M"], len(c)),
                    ecog=rng.integers(0, 3, len(c)), line_of_therapy=rng.integers(1, 4, len(c)))


def _burden(f, c):
    """Three scans per patient: baseline (day -7), day 49 and day 100, burden shrinking then growing."""
    rows = []
    for pid, v, pct in zip(f["patient_id"], f["baseline_volume_ml"], f["pct_change_first_fu"]):
        for k, day in enumerate((-7.0, 49.0, 100.0)):
            vol = v * (1 + pct / 100) ** k if k else v
            rows.append({"patient_id": pid, "scan_id": f"{pid}-S{k}", "days": day, "total_volume_ml": max(vol, 0.0),
                         "n_lesions": 1, "n_new_lesions": 0, "sld_mm": 10 * max(vol, 0.0) ** (1 / 3),
                         "muscle_ml": 1.0, "sat_ml": 1.0, "vat_ml": 1.0})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("tau", [None, 400.0])
def test_vectorised_bootstrap_equals_recomputing_each_resample(tau):
    f, c = simulate(n=150, seed=11)
    d = f.merge(c)
    risk = np.round(d["baseline_volume_ml"].to_numpy())  # ties in the score
    W = concordance.bootstrap_counts(len(d), 15, np.random.default_rng(2))
    fast = concordance.bootstrap_concordance(d["pfs_days"], d["pfs_event"], {"x": risk}, W, tau)["x"]
    slow = concordance.bootstrap_concordance_loop(d["pfs_days"], d["pfs_event"], {"x": risk}, W, tau)["x"]
    np.testing.assert_allclose(fast["harrell"], slow["harrell"], rtol=1e-12)
    np.testing.assert_allclose(fast["uno"], slow["uno"], rtol=1e-10)


def test_bootstrap_is_seeded_and_difference_is_paired():
    f, c = simulate(n=200, seed=12)
    d = f.merge(c)
    a = [concordance.concordance_with_ci(d["os_days"], d["os_event"], d["baseline_volume_ml"], 50,
                                         concordance.row_seed(7, "k")) for _ in range(2)]
    assert a[0] == a[1]
    same = concordance.c_difference(d["os_days"], d["os_event"], d["baseline_volume_ml"], d["baseline_volume_ml"], 30,
                                    concordance.row_seed(7, "d"))
    assert all(r["difference"] == 0 and r["lower"] == 0 and r["upper"] == 0 for r in same)


def test_full_analysis_writes_every_table_with_landmark_and_time_varying_models():
    f, c = simulate(n=160, seed=13)
    c = _clinical(c)
    res = analysis.survival_tables(f, c, FAST, burden=_burden(f, c))
    for name, frame in res.items():
        tables.check(tables.conform(frame, name), name)
    cx = res["cox"]
    assert {"univariable", "multivariable", "landmark", "time_varying"} <= set(cx["model"])
    assert (cx.loc[cx["cohort"] == "all", "status"] == "ok").all()
    lm = cx[(cx["model"] == "landmark") & (cx["cohort"] == "lung") & (cx["endpoint"] == "pfs")].iloc[0]
    d = f.merge(c)
    d = d[d["cohort"] == "lung"]
    assert lm["n"] == int((d["pfs_days"] > 70).sum())  # event-free and followed at day 70; FU scan day 49 <= 70
    tv = cx[(cx["model"] == "time_varying") & (cx["cohort"] == "all") & (cx["endpoint"] == "os")].iloc[0]
    assert tv["status"] == "ok" and tv["n"] == len(f) and tv["strata"] == "cohort"
    zph = res["zph"]
    assert set(zph["model"]) == set(cx["model"]) and (zph["term"] == "GLOBAL").any()
    assert {"logrank", "stratified", "trend", "maxstat"} <= set(res["logrank"]["test"])
    ms = res["logrank"][res["logrank"]["test"] == "maxstat"].iloc[0]
    assert "exploratory" in ms["note"]
    diff = res["c_index_difference"]
    assert (diff["status"] == "ok").all() and (diff["lower"] <= diff["upper"]).all()
    t1 = res["table1"]
    assert t1[(t1["variable"] == "patients") & (t1["cohort"] == "all")]["n"].iloc[0] == len(c)


def test_counting_process_rows_follow_the_scan_schedule():
    f, c = simulate(n=4, seed=14)
    b = _burden(f, c)
    d = f.merge(c.rename(columns={"pfs_days": "time", "pfs_event": "event"})).assign(baseline_scan_id=lambda x: x["patient_id"] + "-S0")
    d.loc[0, "time"], d.loc[0, "event"] = 80.0, 1
    cp = analysis.counting_process(d, b, 0.1)
    p0 = cp[cp["patient_id"] == d.loc[0, "patient_id"]]
    assert p0[["start", "time", "event"]].values.tolist() == [[0.0, 49.0, 0], [49.0, 80.0, 1]]  # day-100 scan after the event
    v0 = d.loc[0, "baseline_volume_ml"]
    assert p0[analysis.TV_TERM].iloc[0] == pytest.approx(np.log(v0 + 0.1))


@pytest.mark.parametrize("change,reason", [
    (lambda c: c.assign(os_days=np.where(np.arange(len(c)) == 3, -5.0, c["os_days"])), "negative time"),
    (lambda c: c.assign(os_event=np.where(np.arange(len(c)) == 3, 2, c["os_event"])), "an event code other than 0/1"),
])
def test_bad_outcomes_give_not_fitted_rows_and_the_rest_goes_on(change, reason):
    f, c = simulate(n=80, seed=15)
    res = analysis.survival_tables(f, change(_clinical(c)), {**FAST, "pooled": False})
    cx = res["cox"]
    bad = cx[(cx["endpoint"] == "os") & (cx["cohort"] == "melanoma")]
    assert bad["status"].str.startswith("not fitted: 1 patient(s) with " + reason).all()
    good = cx[(cx["endpoint"] == "pfs") & (cx["model"] == "univariable")]
    assert (good["status"] == "ok").all()
    assert res["performance"].query("endpoint == 'os' and cohort == 'melanoma'")["status"].str.startswith("not computed").all()


def test_missing_times_are_listed_and_missing_covariates_counted():
    f, c = simulate(n=80, seed=16)
    c = _clinical(c).astype({"age": float})
    c.loc[[1, 2], "pfs_days"] = np.nan
    c.loc[[5, 7, 9], "age"] = np.nan
    res = analysis.survival_tables(f, c, {**FAST, "groupings": ["median"]})
    ex = res["exclusions"]
    assert sorted(ex["patient_id"]) == sorted(c.loc[[1, 2], "patient_id"]) and ex["reason"].str.contains("pfs").all()
    mv = res["cox"].query("model == 'multivariable' and cohort == 'all' and endpoint == 'os'")
    assert (mv["n_dropped"] == 3).all() and (mv["n"] == 77).all()


def test_separation_and_too_few_patients_are_rows_not_crashes():
    df = pd.DataFrame({"time": np.arange(1.0, 21), "event": [1] * 10 + [0] * 10, "x": [1.0] * 10 + [0.0] * 10})
    rows, zph = cox.fit_cox(df, "time", "event", ["x"])
    assert rows[0]["status"].startswith("not fitted: perfect separation") and zph[0]["status"].startswith("not tested")
    rows, _ = cox.fit_cox(df.head(5), "time", "event", ["x"])
    assert rows[0]["status"] == "not fitted: too few patients (5 < 10)"


def test_groups_by_tertiles_and_cutoff():
    v = pd.Series([1.0, 2, 3, 4, 5, 6, np.nan])
    assert cutpoints.groups(v, "tertiles").tolist()[:6] == ["T1", "T1", "T2", "T2", "T3", "T3"]
    g = cutpoints.groups(v, "cutoff", cutoff=3.0)
    assert g.tolist()[:6] == ["low"] * 3 + ["high"] * 3 and pd.isna(g.iloc[6])


def test_standalone_cli_on_any_table(tmp_path, capsys):
    f, c = simulate(n=60, seed=17)
    c.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    assert cli.main(["survival", "km", "--table", str(tmp_path / "t.tsv"), "--duration", "pfs_days", "--event",
                     "pfs_event", "--group", "cohort", "--ci", "log-log", "--times", "100,200",
                     "--out", str(tmp_path / "km.csv")]) == 0
    km_out = pd.read_csv(tmp_path / "km.csv")
    assert list(km_out["group"]) == ["lung", "melanoma"] and (km_out["conf_type"] == "log-log").all()
    assert (tmp_path / "km_curve.csv").exists() and "survival_100" in km_out
    assert cli.main(["survival", "cox", "--table", str(tmp_path / "t.tsv"), "--duration", "pfs_days", "--event",
                     "pfs_event", "--covariates", "cohort", "--out", str(tmp_path / "cox.csv")]) == 0
    assert pd.read_csv(tmp_path / "cox.csv")["term"].tolist() == ["cohort[melanoma]"]
    assert cli.main(["survival", "logrank", "--table", str(tmp_path / "t.tsv"), "--duration", "pfs_days", "--event",
                     "os_days", "--group", "cohort", "--out", str(tmp_path / "lr.csv")]) == 1
    # a bad column stops the command in one line naming the table and its first bad row, and writes nothing
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "t.tsv: os_days has codes other than 0/1" in error[0] and "(first: row 1)" in error[0]
    assert not (tmp_path / "lr.csv").exists()
