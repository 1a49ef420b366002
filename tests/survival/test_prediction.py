"""Prediction-model tables (survival/prediction.py) and calibration (survival/calibration.py) on
simulated patients whose hazard depends on baseline volume only."""

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index
from survival_data import simulate

from tumorburden import tables
from tumorburden.survival import prediction
from tumorburden.survival.calibration import calibration_at

SETS = {"clinical": ["age", "sex"], "burden": ["age", "sex", "log_baseline_volume_ml"]}


@pytest.fixture(scope="module")
def trial():
    features, clinical = simulate(n=160, hr_per_log_volume=2.5, seed=4)
    rng = np.random.default_rng(9)
    clinical["age"] = rng.normal(62, 9, len(clinical)).round()
    clinical["sex"] = rng.choice(["F", "M"], len(clinical))
    truth = pd.DataFrame({"patient_id": features["patient_id"],
                          "lp": np.log(2.5) * (np.log(features["baseline_volume_ml"] + 0.1) - 3.0)})
    return features, clinical, truth


@pytest.fixture(scope="module")
def result(trial):
    features, clinical, truth = trial
    return prediction.prediction_tables(features, clinical, {"model_sets": SETS, "bootstrap": 30,
                                                             "horizons_days": [180, 365]}, truth=truth)


def test_every_table_follows_its_schema_for_every_cohort_and_endpoint(result):
    for name, frame in result.items():
        tables.check(frame, name)
        assert set(frame["cohort"]) == {"lung", "melanoma", "all"}, name
        assert set(frame["endpoint"]) == {"pfs", "os"}, name
    v = result["validation"]
    assert (v["status"] == "ok").all() and (v["n_replicates"] == 30).all()


def test_burden_adds_to_the_clinical_model(result):
    v = result["validation"].query("cohort == 'all' and endpoint == 'pfs' and index == 'C'").set_index("model_set")
    assert v.loc["burden", "corrected"] > v.loc["clinical", "corrected"] + 0.1
    lr = result["model_comparison"].query("cohort == 'all' and endpoint == 'pfs' and measure == 'lr_test'")
    assert len(lr) == 1 and lr["df"].iloc[0] == 1 and lr["p"].iloc[0] < 1e-4
    dc = result["model_comparison"].query("cohort == 'all' and endpoint == 'pfs' and measure == 'c_harrell'")
    assert dc["lower"].iloc[0] > 0
    t = result["tripod_summary"].query("cohort == 'all' and endpoint == 'pfs' and model_set == 'burden'")
    assert list(t["horizon_days"]) == [180.0, 365.0]
    assert (t["c_corrected"] == v.loc["burden", "corrected"]).all() and (t["reference"] == "clinical").all()
    assert (t["delta_c"] == dc["difference"].iloc[0]).all() and (t["lr_p"] == lr["p"].iloc[0]).all()


def test_truth_row_is_the_simulators_linear_predictor(trial, result):
    features, clinical, truth = trial
    t = result["truth_comparison"].query("cohort == 'lung' and endpoint == 'os'").set_index("model_set")
    lung = clinical[clinical.cohort == "lung"].merge(truth, on="patient_id")
    want = concordance_index(lung["os_days"], -lung["lp"], lung["os_event"])
    assert t.loc["true model (simulator)", "c_corrected"] == pytest.approx(want, abs=1e-12)
    assert set(t.index) == {"true model (simulator)", *SETS}


def test_unknown_covariate_stops_before_fitting(trial):
    features, clinical, _ = trial
    with pytest.raises(ValueError, match=r"model set 'burden': covariate 'ecog_typo'"):
        prediction.prediction_tables(features, clinical, {"model_sets": {"burden": ["ecog_typo"]}})


def test_calibration_grouped_observed_is_the_groups_kaplan_meier_and_apparent_slope_is_one(trial):
    features, clinical, _ = trial
    d = clinical.merge(features, on="patient_id")
    X = np.log(d[["baseline_volume_ml"]].to_numpy() + 0.1)
    cal = calibration_at(d["pfs_days"], d["pfs_event"], X, [365.0], groups=4, n_boot=20,
                         rng=np.random.default_rng(1))
    grouped = cal[cal.method == "grouped"]
    assert len(grouped) == 4 and grouped["n"].sum() == len(d)
    # the lowest-risk group (highest predicted S) is the smallest volumes: recompute its KM
    small = d[X[:, 0] <= np.quantile(X[:, 0], 0.25)]
    kmf = KaplanMeierFitter().fit(small["pfs_days"], small["pfs_event"])
    g4 = grouped.set_index("group").loc["G4"]
    assert g4["observed"] == pytest.approx(float(kmf.survival_function_at_times(365.0).iloc[0]), rel=1e-12)
    summary = cal[cal.method == "summary"].set_index("statistic")["value"]
    assert summary["slope"] == pytest.approx(1.0, abs=1e-6)  # cll(S(u|x)) = log H0(u) + lp
    assert abs(summary["calibration_in_the_large"]) < 0.05
    smooth = cal[cal.method == "smooth"]
    assert np.all(np.diff(smooth["observed"]) >= -1e-9)  # more predicted survival, more observed


def test_paired_bootstrap_differences_start_from_scores_point_estimates(trial):
    # the bootstrap's own estimator on the original patients equals riskRegression-parity score_contrasts
    from tumorburden.survival import score

    features, clinical, _ = trial
    d = clinical.merge(features, on="patient_id")
    rng = np.random.default_rng(4)
    risk_a = rng.uniform(0.1, 0.9, (len(d), 2))
    risk_b = np.column_stack([np.clip(risk_a[:, 0] + rng.normal(0, 0.2, len(d)), 0, 1), rng.uniform(0, 1, len(d))])
    rows = prediction.paired_bootstrap_score_differences(d["pfs_days"], d["pfs_event"], risk_a, risk_b,
                                                         [180.0, 365.0], 50, np.random.default_rng(1))
    ref = score.score_contrasts(d["pfs_days"], d["pfs_event"], {"b": risk_b, "a": risk_a}, [180.0, 365.0],
                                null_model=False).set_index("time_days")
    for r in rows:
        want = ref.loc[r["time_days"], f"delta_{r['measure']}"]
        assert r["difference"] == pytest.approx(want, rel=1e-10, abs=1e-12)
        assert r["lower"] <= r["difference"] <= r["upper"] and r["method"] == "paired bootstrap (50 replicates)"
