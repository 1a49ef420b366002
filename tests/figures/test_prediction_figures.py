"""Prediction-model figures from the tables of tumorburden prediction on simulated patients."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tumorburden import tables
from tumorburden.figures import prediction as fig
from tumorburden.survival import prediction

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "survival"))
from survival_data import simulate  # noqa: E402


@pytest.fixture(scope="module")
def survival_dir(tmp_path_factory):
    features, clinical = simulate(n=120, seed=3)
    clinical["age"] = np.random.default_rng(1).normal(60, 10, len(clinical)).round()
    truth = pd.DataFrame({"patient_id": features["patient_id"],
                          "lp": np.log(2.0) * (np.log(features["baseline_volume_ml"] + 0.1) - 3.0)})
    sets = {"clinical": ["age"], "burden": ["age", "log_baseline_volume_ml"]}
    out = tmp_path_factory.mktemp("survival")
    result = prediction.prediction_tables(features, clinical, {"model_sets": sets, "bootstrap": 10,
                                                               "horizons_days": [180, 365]}, truth=truth)
    for name, frame in result.items():
        tables.write(frame, out / f"{name}.csv", name, csv=True)
    return out


def test_every_cohort_horizon_and_model_set_is_drawn(survival_dir, tmp_path):
    cal = pd.read_csv(survival_dir / "calibration.csv")
    f, drawn = fig.calibration_figure(cal, "pfs")
    assert set(drawn) == {(c, h, s) for c in ("lung", "melanoma", "all") for h in (180.0, 365.0)
                          for s in ("clinical", "burden")}
    dc = pd.read_csv(survival_dir / "decision_curve.csv")
    _, drawn = fig.decision_figure(dc, "os")
    assert {m for (_, _, m) in drawn} == {"clinical", "burden", "treat all", "treat none"}
    val = pd.read_csv(survival_dir / "validation.csv")
    _, drawn = fig.comparison_figure(val, pd.read_csv(survival_dir / "truth_comparison.csv"))
    want = val[(val["index"] == "C")].set_index(["cohort", "endpoint", "model_set"])["corrected"]
    assert drawn == pytest.approx({k: v for k, v in want.items()})
    written = fig.write_prediction_figures(survival_dir, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        f"{stem}.{ext}" for stem in ("calibration_pfs", "calibration_os", "decision_curve_pfs", "decision_curve_os",
                                     "model_comparison") for ext in ("pdf", "png"))
    assert all(p.stat().st_size > 1000 for p in written)
