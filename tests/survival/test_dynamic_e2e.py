"""End to end: rule survival_dynamic and the dynamic-prediction figures of the shared tiny run."""

import numpy as np
import pandas as pd
import pytest

from tumorburden import tables
from tumorburden.figures import dynamic as dynamic_figures
from tumorburden.figures import names
from tumorburden.figures import settings as fsettings
from tumorburden.survival import landmark
from tumorburden.survival.analysis import DEFAULTS

pytestmark = pytest.mark.e2e


def check_dynamic_outputs(r):
    """What the run's dynamic tables and figures must show (also run by hand on a copy of a run)."""
    clinical = pd.read_csv(r / "synthetic/clinical.tsv", sep="\t", dtype={"patient_id": str})
    burden = tables.read(r / "tables/burden.parquet", "burden")
    pred = tables.read(r / "survival/dynamic_predictions.parquet", "dynamic_prediction")
    acc = tables.read(r / "survival/dynamic_accuracy.csv", "dynamic_accuracy")
    model = tables.read(r / "survival/landmark_model.csv", "landmark_model")
    w = float(DEFAULTS["landmark_window_days"])
    cohorts = sorted(clinical["cohort"].unique()) + ["all"]
    # every cohort x endpoint has both models' rows (fitted or with the reason) and a row per landmark
    for cohort in cohorts:
        for endpoint in ("pfs", "os"):
            m = model[(model["cohort"] == cohort) & (model["endpoint"] == endpoint)]
            assert {landmark.LANDMARK_MODEL, landmark.BASELINE_MODEL} <= set(m["model"]), (cohort, endpoint)
            a = acc[(acc["cohort"] == cohort) & (acc["endpoint"] == endpoint)]
            assert sorted(a["landmark_days"].unique()) == sorted(float(s) for s in DEFAULTS["landmarks_days"])
    # every model (the joint model's rows included) predicts only while the patient is at risk, from a
    # scan on or before the landmark
    days = burden.set_index("scan_id")["days"]
    p = pred.merge(clinical[["patient_id", "pfs_days", "os_days"]], on="patient_id")
    end = np.where(p["endpoint"] == "pfs", p["pfs_days"], p["os_days"])
    assert (p["landmark_days"] < end).all()
    assert (p["scan_id"].map(days) <= p["landmark_days"]).all()
    assert pred["predicted_survival"].between(0, 1).all()
    ours = p[p["model"].isin([landmark.LANDMARK_MODEL, landmark.BASELINE_MODEL])]
    assert set(ours["window_days"]) == {w * f for f in (0.25, 0.5, 0.75, 1.0)}
    # a fitted joint model predicts at every landmark, so it is scored wherever patients are at risk
    joint = tables.read(r / "survival/joint_model.csv", "joint_model")
    fitted = joint[~joint["status"].str.startswith("not fitted")][["cohort", "endpoint"]].drop_duplicates()
    for cohort, endpoint in fitted.itertuples(index=False):
        a = acc[(acc["cohort"] == cohort) & (acc["endpoint"] == endpoint) & (acc["model"] == "joint")
                & (acc["n_at_risk"] > 0)]
        assert len(a) and not a["status"].str.contains("no prediction at this landmark").any(), (cohort, endpoint)
    # the scored patients at a landmark are those at risk there
    ok = acc[acc["status"] == "ok"]
    for row in ok.itertuples():
        sel = clinical if row.cohort == "all" else clinical[clinical["cohort"] == row.cohort]
        assert row.n_at_risk == int((sel[f"{row.endpoint}_days"] > row.landmark_days).sum())
    # the figures: one per selected patient and endpoint, a column per scan with a prediction
    for patient in fsettings.DEFAULTS["dynamic_patients"]:
        for endpoint in ("pfs", "os"):
            stem = r / "figures" / names.dynamic_stem(patient, endpoint)
            assert stem.with_suffix(".pdf").stat().st_size > 0 and stem.with_suffix(".png").stat().st_size > 0
            t, e = clinical.set_index("patient_id").loc[patient, [f"{endpoint}_days", f"{endpoint}_event"]]
            _, drawn = dynamic_figures.dynamic_figure(patient, endpoint, pred, burden, (float(t), int(e)))
            scans = burden[burden["patient_id"] == patient].sort_values("days")
            cohort = clinical.set_index("patient_id").loc[patient, "cohort"]
            made = pred[(pred["patient_id"] == patient) & (pred["endpoint"] == endpoint) & (pred["cohort"] == cohort)]
            at_scan = made["landmark_days"].to_numpy() == made["scan_id"].map(days).clip(lower=0).to_numpy()
            expected = [sc for sc in scans["scan_id"] if sc in set(made.loc[at_scan, "scan_id"])]
            assert list(drawn) == expected[:dynamic_figures.MAX_COLUMNS]
            # every scan at which the landmark and baseline models predict (at risk, within the grid) is a column
            ours = scans[(scans["days"].clip(lower=0) < t) & (scans["days"] <= max(DEFAULTS["landmarks_days"]))]
            assert set(ours["scan_id"][:dynamic_figures.MAX_COLUMNS]) <= set(drawn)


def test_dynamic_tables_and_figures_of_the_run(synthetic_run):
    check_dynamic_outputs(synthetic_run)
