"""Landmark super-model: the landmark data on hand-worked cases, the fit against a stacked Cox
model built here by hand (lifelines) and against R's coxph on pbcseq.

tests/survival/r/landmark_reference.R builds the landmark data of survival::pbcseq in R (its own
code, not this package's), fits the stratified and the smooth super-model with
coxph(... + cluster(id)) and records pbcseq.csv, landmark_data.csv and landmark_reference.csv;
where Rscript is installed the last test re-runs it and compares.
"""

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from r_live import r_has
from tumorburden.survival import landmark

R_DIR = Path(__file__).parent / "r"
PBC_LANDMARKS = [0, 365, 730, 1095, 1460, 1825]
PBC_WINDOW = 1825
PBC_COVARIATES = ["log_burden", "log_burden_slope", "new_lesion"]
R_NAMES = {"log_burden_slope": "slope", "log_burden": "lb", "new_lesion": "newl"}


def burden_table(rows):
    """rows: (patient, day, volume, new lesions) -> a burden-like table."""
    return pd.DataFrame([{"patient_id": p, "scan_id": f"{p}-{i}", "days": float(d), "total_volume_ml": float(v),
                          "n_new_lesions": n} for i, (p, d, v, n) in enumerate(rows)])


def test_scan_history_starts_at_the_baseline_scan_and_carries_what_each_scan_knows():
    b = burden_table([("A", -30, 99.0, 0), ("A", -5, 9.9, 0), ("A", 40, 19.9, 0), ("A", 101, 4.9, 2),
                      ("A", 150, 9.9, 0)])
    h = landmark.scan_history(b, offset_ml=0.1, days_per_month=30.0)
    assert list(h["days"]) == [-5, 40, 101, 150]  # the scan at -30 precedes the baseline scan
    np.testing.assert_allclose(h["log_burden"], np.log([10, 20, 5, 10]))
    np.testing.assert_allclose(h["log_burden_change"], np.log([1, 2, 0.5, 1]))
    # per month (30 days here) from the scan before: ln 2 over 45 days, ln(1/4) over 61, ln 2 over 49
    np.testing.assert_allclose(h["log_burden_slope"],
                               [0, np.log(2) / 1.5, np.log(0.25) / (61 / 30), np.log(2) / (49 / 30)])
    assert list(h["new_lesion"]) == [0, 0, 1, 1]  # once seen, a new lesion stays seen


def test_landmark_data_keeps_those_at_risk_their_latest_scan_and_cuts_follow_up_at_s_plus_w():
    b = burden_table([("A", 0, 10, 0), ("A", 50, 20, 0), ("A", 90, 30, 0),
                      ("B", -3, 10, 0), ("B", 40, 5, 0),
                      ("C", 0, 10, 0),
                      ("D", 0, 10, 0), ("D", 60, 10, 1),
                      ("E", 20, 10, 0)])  # E: no scan on or before day 0, so no baseline: never in
    outcome = pd.DataFrame({"patient_id": list("ABCDE"), "time": [300.0, 50.0, 149.0, 150.0, 400.0],
                            "event": [1, 1, 0, 1, 1]})
    h = landmark.scan_history(b, 0.0)
    lm = landmark.landmark_data(outcome, h, [0, 50], window=100).set_index(["landmark_days", "patient_id"])
    # s = 0: A, B, C, D at risk (time > 0); s = 50: B's event at 50 is not after the landmark
    assert sorted(lm.index) == [(0, "A"), (0, "B"), (0, "C"), (0, "D"), (50, "A"), (50, "C"), (50, "D")]
    # the scan on the landmark's own day counts; the scan at 60 is not known at 50
    assert lm.loc[(50, "A"), "scan_id"] == "A-1"
    assert lm.loc[(50, "D"), "scan_id"] == "D-6"
    assert lm.loc[(50, "D"), "new_lesion"] == 0
    assert lm.loc[(50, "A"), "log_burden"] == pytest.approx(np.log(20))
    # censoring at s + w: A dies at 300 > 150: censored at 150; D dies at exactly 150: an event;
    # C is censored at 149 inside the window; B dies at 50 <= 0 + 100
    assert (lm.loc[(50, "A"), "stop"], lm.loc[(50, "A"), "status"]) == (150, 0)
    assert (lm.loc[(50, "D"), "stop"], lm.loc[(50, "D"), "status"]) == (150, 1)
    assert (lm.loc[(50, "C"), "stop"], lm.loc[(50, "C"), "status"]) == (149, 0)
    assert (lm.loc[(0, "A"), "stop"], lm.loc[(0, "A"), "status"]) == (100, 0)
    assert (lm.loc[(0, "B"), "stop"], lm.loc[(0, "B"), "status"]) == (50, 1)


def _pbcseq():
    v = pd.read_csv(R_DIR / "pbcseq.csv")
    pid = v["id"].astype(str).str.zfill(3)
    burden = pd.DataFrame({"patient_id": pid, "scan_id": pid + "-" + v["day"].astype(str).str.zfill(5),
                           "days": v["day"].astype(float), "total_volume_ml": v["bili"],
                           "n_new_lesions": v["ascites"]})
    first = v.drop_duplicates("id")
    outcome = pd.DataFrame({"patient_id": first["id"].astype(str).str.zfill(3), "time": first["futime"].astype(float),
                            "event": (first["status"] == 2).astype(int)})
    return burden, outcome


@pytest.fixture(scope="module")
def pbc_landmark():
    burden, outcome = _pbcseq()
    return landmark.landmark_data(outcome, landmark.scan_history(burden, 0.1), PBC_LANDMARKS, PBC_WINDOW)


def test_landmark_data_equals_the_data_r_built(pbc_landmark):
    r = pd.read_csv(R_DIR / "landmark_data.csv")
    r["patient_id"] = r["id"].astype(str).str.zfill(3)
    mine = pbc_landmark.set_index(["landmark_days", "patient_id"]).sort_index()
    r = r.set_index(["landmark", "patient_id"]).sort_index()
    assert list(mine.index) == list(r.index)
    np.testing.assert_array_equal(mine["stop"], r["tstop"])
    np.testing.assert_array_equal(mine["status"], r["status"])
    for ours, theirs in R_NAMES.items():
        np.testing.assert_allclose(mine[ours], r[theirs], rtol=1e-12, atol=1e-12)


def test_super_model_equals_a_stacked_cox_model_fitted_by_hand():
    # a small trial: each patient's log burden drifts; risk rises with the current burden
    rng = np.random.default_rng(3)
    scans, patients = [], []
    for i in range(60):
        level, slope = rng.normal(3, 0.7), rng.normal(0, 0.01)
        death = rng.exponential(400 * np.exp(-(level - 3)))
        follow = min(death, rng.uniform(200, 700))
        for day in [0, 60, 120, 180, 240]:
            if day < follow:
                scans.append((f"P{i:02d}", day, np.exp(level + slope * day + rng.normal(0, 0.1)), 0))
        patients.append({"patient_id": f"P{i:02d}", "time": round(follow, 1), "event": int(death <= follow)})
    outcome = pd.DataFrame(patients)
    grid, w = [0, 60, 120, 180], 150
    fit = landmark.fit_landmark(landmark.landmark_data(outcome, landmark.scan_history(burden_table(scans), 0.0),
                                                       grid, w), ["log_burden"], grid, "strata")
    # by hand: at each s, those alive at s, the last scan on or before s, follow-up cut at s + w
    rows = []
    for s in grid:
        for p in patients:
            if p["time"] <= s:
                continue
            known = [v for (q, day, v, _) in scans if q == p["patient_id"] and day <= s]
            x, f = np.log(known[-1]), (s - grid[0]) / (grid[-1] - grid[0])
            rows.append({"id": p["patient_id"], "s": s, "t": min(p["time"], s + w) - s,
                         "d": int(p["event"] and p["time"] <= s + w), "x": x, "x_f1": x * f, "x_f2": x * f * f})
    hand = CoxPHFitter(strata=["s"]).fit(pd.DataFrame(rows), "t", "d", cluster_col="id",
                                          fit_options={"precision": 1e-10, "max_steps": 100})
    np.testing.assert_allclose(fit["beta"], hand.params_[["x", "x_f1", "x_f2"]], rtol=1e-6)
    np.testing.assert_allclose(fit["terms"]["se"], hand.variance_matrix_.pipe(np.diag) ** 0.5, rtol=1e-6)


def _r_reference():
    return pd.read_csv(R_DIR / "landmark_reference.csv")


@pytest.mark.parametrize("baseline", ["strata", "smooth"])
def test_super_model_equals_r_coxph_on_pbcseq(pbc_landmark, baseline):
    ref = _r_reference()
    ref = ref[ref["model"] == baseline].set_index(["term", "statistic"])["value"]
    fit = landmark.fit_landmark(pbc_landmark, PBC_COVARIATES, PBC_LANDMARKS, baseline)
    assert fit["n_rows"] == 1552 and fit["events"] == 389
    for row in fit["terms"].to_dict("records"):
        term = row["term"]
        for ours, theirs in R_NAMES.items():
            term = term.replace(ours, theirs)
        # lifelines stops its Newton-Raphson at ~1e-7 in the coefficients (R ran to eps 1e-10)
        assert row["coef"] == pytest.approx(ref[(term, "coef")], rel=1e-7), term
        assert row["se"] == pytest.approx(ref[(term, "se")], rel=1e-6), term
        assert row["robust_se"] == pytest.approx(ref[(term, "robust_se")], rel=1e-6), term
    assert fit["loglik"] == pytest.approx(ref[("-", "loglik")], rel=1e-10)


@pytest.mark.parametrize("baseline", ["strata", "smooth"])
def test_predicted_survival_equals_r_survfit_on_pbcseq(pbc_landmark, baseline):
    ref = _r_reference()
    ref = ref[(ref["model"] == baseline) & ref["statistic"].str.startswith("predicted_survival_")]
    fit = landmark.fit_landmark(pbc_landmark, PBC_COVARIATES, PBC_LANDMARKS, baseline)
    rows = sorted({int(t.removeprefix("row")) for t in ref["term"]})
    got = landmark.predict_landmark(fit, pbc_landmark.iloc[[r - 1 for r in rows]], [PBC_WINDOW / 2, PBC_WINDOW])
    for i, r in enumerate(rows):
        for j, u in enumerate([PBC_WINDOW / 2, PBC_WINDOW]):
            want = ref[(ref["term"] == f"row{r}") & (ref["statistic"] == f"predicted_survival_{u:g}")]["value"]
            assert got[i, j] == pytest.approx(float(want.iloc[0]), rel=1e-6), (r, u)


def test_score_residuals_sum_to_the_score_zero_at_the_maximum(pbc_landmark):
    fit = landmark.fit_landmark(pbc_landmark, PBC_COVARIATES, PBC_LANDMARKS, "smooth")
    X = landmark.landmark_design(pbc_landmark, PBC_COVARIATES, 0, 1825, "smooth").to_numpy(float)
    U = landmark.efron_score_residuals(X, pbc_landmark["landmark_days"].to_numpy(float),
                                       pbc_landmark["stop"].to_numpy(float), pbc_landmark["status"].to_numpy(int),
                                       np.zeros(len(X), dtype=object), fit["beta"])
    assert np.abs(U.sum(axis=0)).max() < 1e-4 * np.abs(U).sum(axis=0).max()


def test_prediction_is_the_conditional_survival_of_the_stratum_baseline_hazard(pbc_landmark):
    fit = landmark.fit_landmark(pbc_landmark, PBC_COVARIATES, PBC_LANDMARKS, "strata")
    rows = pbc_landmark[pbc_landmark["landmark_days"] == 730].head(5)
    got = landmark.predict_landmark(fit, rows, [PBC_WINDOW])[:, 0]
    # Breslow-Efron baseline of the s = 730 stratum by hand, at its covariates
    d = pbc_landmark[pbc_landmark["landmark_days"] == 730]
    X = landmark.landmark_design(d, PBC_COVARIATES, 0, 1825, "strata").to_numpy(float)
    r = np.exp(X @ fit["beta"])
    H = 0.0
    for u in np.unique(d["stop"][d["status"] == 1]):
        at_risk = (d["stop"] >= u).to_numpy()
        dead = at_risk & (d["stop"] == u).to_numpy() & (d["status"] == 1).to_numpy()
        k = np.arange(dead.sum()) / dead.sum()
        H += np.sum(1 / (r[at_risk].sum() - k * r[dead].sum()))
    x = landmark.landmark_design(rows, PBC_COVARIATES, 0, 1825, "strata").to_numpy(float)
    np.testing.assert_allclose(got, np.exp(-H * np.exp(x @ fit["beta"])), rtol=1e-10)
    # outside the grid's range the model has seen nothing: no prediction
    late = rows.assign(landmark_days=2000.0)
    assert np.isnan(landmark.predict_landmark(fit, late, [PBC_WINDOW])).all()


@pytest.mark.skipif(not r_has("survival"), reason="Rscript with survival not installed")
def test_landmark_reference_is_reproduced_by_live_r(tmp_path):
    subprocess.run(["Rscript", str(R_DIR / "landmark_reference.R"), str(tmp_path)], check=True, capture_output=True,
                   timeout=300)
    fresh = pd.read_csv(tmp_path / "landmark_reference.csv")
    recorded = _r_reference()
    keep = fresh["model"] != "version"
    pd.testing.assert_frame_equal(fresh[keep].reset_index(drop=True), recorded[keep].reset_index(drop=True),
                                  rtol=1e-8)
