"""Dynamic accuracy per landmark and the dynamic-prediction tables, on hand-worked cases."""

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter

from tumorburden import tables
from tumorburden.survival import dynamic, landmark


def outcome_frame(n=80, seed=5):
    rng = np.random.default_rng(seed)
    t = rng.exponential(300, n).round(1) + 1
    c = rng.uniform(50, 900, n).round(1)
    return pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(n)], "time": np.minimum(t, c),
                         "event": (t <= c).astype(int)})


def tidy(data, s, w, surv, model):
    return pd.DataFrame({"cohort": "c", "endpoint": "os", "patient_id": data["patient_id"], "scan_id": "x",
                         "landmark_days": float(s), "window_days": float(w), "model": model,
                         "predicted_survival": surv})


def rows_by_model(rows, s):
    return {r["model"]: r for r in rows if r["landmark_days"] == s}


def test_a_perfect_predictor_has_auc_1_and_brier_0_and_a_constant_one_auc_half():
    data = outcome_frame()
    s, w = 60.0, 180.0
    at = data[data["time"] > s]
    dies = ((at["time"] <= s + w) & (at["event"] == 1)).to_numpy()
    pred = pd.concat([tidy(at, s, w, np.where(dies, 0.0, 1.0), "perfect"), tidy(at, s, w, 0.5, "coin")])
    got = rows_by_model(dynamic.accuracy_rows({"cohort": "c", "endpoint": "os"}, data, pred, [s], w, 0.05), s)
    assert got["perfect"]["auc"] == pytest.approx(1.0, abs=1e-12)
    assert got["perfect"]["brier"] == pytest.approx(0.0, abs=1e-12)
    assert got["perfect"]["ipa"] == pytest.approx(1.0, abs=1e-12)
    assert got["coin"]["auc"] == pytest.approx(0.5, abs=1e-12)
    # a constant 1/2 is off by 1/2 for everyone: Brier 1/4 (the IPCW weights average to 1)
    assert got["coin"]["brier"] == pytest.approx(0.25, rel=1e-9)
    # the null model is the Kaplan-Meier of those at risk at s, on the time since s
    km = KaplanMeierFitter().fit(at["time"] - s, at["event"])
    risk = 1 - float(km.survival_function_at_times(w).iloc[0])
    assert got["null model"]["brier"] == pytest.approx(risk * (1 - risk), rel=1e-9)
    assert got["coin"]["ipa"] == pytest.approx(1 - 0.25 / (risk * (1 - risk)), rel=1e-9)
    assert got["perfect"]["n_at_risk"] == len(at) == got["perfect"]["n"]
    assert got["perfect"]["cases"] == int(dies.sum())


def test_models_are_scored_on_the_patients_every_model_predicts_for():
    data = outcome_frame()
    s, w = 0.0, 200.0
    rng = np.random.default_rng(2)
    a = tidy(data, s, w, rng.uniform(size=len(data)), "a")
    b = tidy(data, s, w, rng.uniform(size=len(data)), "b").iloc[10:]  # b has nothing for 10 patients
    got = rows_by_model(dynamic.accuracy_rows({}, data, pd.concat([a, b]), [s], w, 0.05), s)
    assert got["a"]["n"] == got["b"]["n"] == len(data) - 10
    assert got["a"]["n_unpredicted"] == 10
    # the same as scoring model a alone on those patients
    alone = rows_by_model(dynamic.accuracy_rows({}, data.iloc[10:], a.iloc[10:], [s], w, 0.05), s)
    assert got["a"]["brier"] == pytest.approx(alone["a"]["brier"], rel=1e-12)
    assert got["a"]["auc"] == pytest.approx(alone["a"]["auc"], rel=1e-12)


def test_a_model_without_predictions_at_a_landmark_does_not_stop_the_others_being_scored():
    data = outcome_frame()
    rng = np.random.default_rng(3)
    a = pd.concat([tidy(data, s, 200.0, rng.uniform(size=len(data)), "a") for s in (0.0, 100.0)])
    scan_days_only = tidy(data, 0.0, 200.0, rng.uniform(size=len(data)), "b")  # only at s = 0
    got = dynamic.accuracy_rows({}, data, pd.concat([a, scan_days_only]), [0.0, 100.0], 200.0, 0.05)
    at_100 = rows_by_model(got, 100.0)
    assert at_100["b"]["status"] == "not scored: no prediction at this landmark and window"
    assert at_100["a"]["status"] == "ok" and at_100["a"]["n"] == int((data["time"] > 100).sum())
    assert rows_by_model(got, 0.0)["b"]["status"] == "ok"


def small_study(n=60, seed=4):
    """A burden table and outcomes where the hazard rises with the current burden."""
    rng = np.random.default_rng(seed)
    scans, patients = [], []
    for i in range(n):
        pid = f"P{i:03d}"
        level, slope = rng.normal(3, 0.8), rng.normal(0, 0.004)
        death = rng.exponential(500 * np.exp(-(level - 3)))
        follow = min(death, rng.uniform(300, 800))
        for k, day in enumerate([-7, 60, 120, 180, 240, 300]):
            if day < follow:
                scans.append({"patient_id": pid, "scan_id": f"{pid}-S{k}", "days": float(day),
                              "total_volume_ml": float(np.exp(level + slope * max(day, 0))),
                              "n_new_lesions": int(k > 0 and rng.uniform() < 0.1)})
        patients.append({"patient_id": pid, "cohort": "lung", "time": round(follow, 1),
                         "event": int(death <= follow)})
    return pd.DataFrame(scans), pd.DataFrame(patients)


def test_baseline_cox_predicts_the_conditional_survival_of_a_cox_model_from_day_0():
    burden, data = small_study()
    history = landmark.scan_history(burden, 0.1)
    s = {**dynamic.DEFAULTS, "landmarks_days": [0, 100, 200], "landmark_window_days": 150,
         "landmark_covariates": ["log_burden"]}
    out = dynamic.dynamic_rows("lung", "os", data, history, s)
    pred = pd.concat(out["dynamic_prediction"])
    base = pred[(pred["model"] == landmark.BASELINE_MODEL) & (pred["window_days"] == 150)]
    # lifelines on the baseline covariate (no tied times, so its Breslow baseline is Efron's)
    x0 = history.groupby("patient_id").head(1).set_index("patient_id")["log_burden"]
    d = data.assign(x=data["patient_id"].map(x0))[["time", "event", "x"]]
    cph = CoxPHFitter().fit(d, "time", "event", fit_options={"precision": 1e-10})
    H0 = cph.baseline_cumulative_hazard_.iloc[:, 0]  # at the mean covariate; a step function

    def H(t):
        return float(H0[H0.index <= t].iloc[-1]) if (H0.index <= t).any() else 0.0

    for row in base.sample(8, random_state=1).itertuples():
        risk = float(cph.predict_partial_hazard(pd.DataFrame({"x": [x0[row.patient_id]]})).iloc[0])
        expected = np.exp(-(H(row.landmark_days + 150) - H(row.landmark_days)) * risk)
        assert row.predicted_survival == pytest.approx(expected, rel=1e-6)
    # a prediction at every scan (day 0 for the baseline scan) and every grid landmark, while at risk
    p0 = data.iloc[0]
    mine = pred[(pred["patient_id"] == p0["patient_id"]) & (pred["window_days"] == 150)
                & (pred["model"] == landmark.LANDMARK_MODEL)]
    days = burden.loc[burden["patient_id"] == p0["patient_id"], "days"].clip(lower=0)
    expected = sorted({float(x) for x in [*days, 0, 100, 200] if x < p0["time"] and x <= 200})
    assert sorted(mine["landmark_days"]) == expected


def test_dynamic_tables_follow_their_schemas_and_score_every_landmark():
    burden, data = small_study()
    features = pd.DataFrame({"patient_id": data["patient_id"], "cohort": "lung"})
    clinical = data.rename(columns={"time": "os_days", "event": "os_event"})
    burden = burden.assign(n_lesions=1, sld_mm=10.0)
    s = {"endpoints": ["os"], "pooled": False, "landmarks_days": [0, 100, 200], "landmark_covariates": ["log_burden"]}
    out = dynamic.dynamic_tables(features, clinical, burden, s)
    for name in dynamic.TABLES:
        tables.check(out[name], name)
    acc = out["dynamic_accuracy"]
    assert set(acc["model"]) == {"null model", landmark.LANDMARK_MODEL, landmark.BASELINE_MODEL}
    assert sorted(acc["landmark_days"].unique()) == [0, 100, 200]
    assert (acc["status"] == "ok").all()
    lm = out["landmark_model"]
    assert list(lm.loc[lm["model"] == landmark.LANDMARK_MODEL, "term"]) == landmark.landmark_terms(["log_burden"]) \
        + ["f1", "f2"]


def test_a_covariate_constant_among_those_at_risk_is_left_out_and_named():
    burden, data = small_study()
    burden = burden.assign(n_new_lesions=0)  # nobody shows a new lesion
    s = {**dynamic.DEFAULTS, "landmarks_days": [0, 100, 200], "landmark_covariates": ["log_burden", "new_lesion"]}
    out = dynamic.dynamic_rows("lung", "os", data, landmark.scan_history(burden, 0.1), s)
    lm = pd.DataFrame(out["landmark_model"])
    lm = lm[lm["model"] == landmark.LANDMARK_MODEL].set_index("term")
    assert lm.loc["new_lesion", "status"] == "not in model: constant among the patients at risk at the landmarks"
    assert lm.loc["log_burden", "status"] == "ok" and "new_lesion:f1" not in lm.index


@pytest.mark.parametrize("change, message", [
    ({"landmark_covariates": ["tumour_mood"]}, "landmark_covariates 'tumour_mood'"),
    ({"landmarks_days": [90]}, "at least two distinct landmarks"),
    ({"landmark_baseline": "wiggly"}, "landmark_baseline 'wiggly'"),
])
def test_bad_settings_stop_before_fitting_with_the_key_named(change, message):
    with pytest.raises(ValueError, match=message):
        dynamic.check_settings({**dynamic.DEFAULTS, **change}, ["patient_id", "age"])
