"""Brier score, IPA and AUC at horizons: properties that hold whatever R says."""

import numpy as np
import pandas as pd
import pytest

from tumorburden.survival import score


def test_censoring_curve_counts_an_event_before_a_censoring_at_the_same_time():
    # times 1 2 2 3 4, events 1 1 0 0 1: at t = 2 one death and one censoring among 4 at risk;
    # the death leaves first, so the censoring hazard at 2 is 1/3, at 3 it is 1/2
    time, event = [1, 2, 2, 3, 4], [1, 1, 0, 0, 1]
    G = score.censoring_survival(time, event, [1, 2, 3, 3.5])
    np.testing.assert_allclose(G, [1.0, 2 / 3, 1 / 3, 1 / 3])
    np.testing.assert_allclose(score.censoring_survival(time, event, [2, 3], lag=True), [1.0, 2 / 3])


def test_without_censoring_brier_is_the_mean_squared_error_and_auc_the_mann_whitney_statistic():
    rng = np.random.default_rng(1)
    time = rng.exponential(100, 80).round(1)
    risk = rng.uniform(size=80)
    got = score.score_at(time, np.ones(80), {"m": risk}, [60]).set_index("model")
    y = (time <= 60).astype(float)
    assert got.loc["m", "brier"] == pytest.approx(np.mean((y - risk) ** 2), rel=1e-12)
    assert got.loc[score.NULL_MODEL, "brier"] == pytest.approx(np.mean((y - y.mean()) ** 2), rel=1e-12)
    cases, controls = risk[y == 1], risk[y == 0]
    mann_whitney = ((cases[:, None] > controls[None, :]).mean()
                    + 0.5 * (cases[:, None] == controls[None, :]).mean())
    assert got.loc["m", "auc"] == pytest.approx(mann_whitney, rel=1e-12)
    assert got.loc["m", "ipa"] == pytest.approx(1 - got.loc["m", "brier"] / got.loc[score.NULL_MODEL, "brier"])


def test_auc_of_the_reversed_risk_is_one_minus_auc_and_se_the_same():
    rng = np.random.default_rng(2)
    time = rng.exponential(100, 120).round()
    event = (rng.uniform(size=120) < 0.7).astype(int)
    risk = rng.uniform(size=120) * 0.5
    got = score.score_at(time, event, {"a": risk, "b": 1 - risk}, [50, 90], null_model=False).set_index(
        ["time_days", "model"])
    for t in (50.0, 90.0):
        assert got.loc[(t, "a"), "auc"] + got.loc[(t, "b"), "auc"] == pytest.approx(1.0, abs=1e-12)
        assert got.loc[(t, "a"), "auc_se"] == pytest.approx(got.loc[(t, "b"), "auc_se"], rel=1e-10)
        assert np.isnan(got.loc[(t, "a"), "ipa"])


def test_a_horizon_without_cases_or_controls_is_a_row_saying_so():
    got = score.score_at([10, 20, 30], [1, 0, 1], {"m": [0.2, 0.3, 0.4]}, [5, 40])
    assert got["status"].str.startswith("not scored").all()
    assert got.loc[got.time_days == 5, "status"].iloc[0] == "not scored: no event by this time"
    assert got.loc[got.time_days == 40, "status"].iloc[0] == "not scored: nobody followed beyond this time"


@pytest.mark.parametrize("risk,message", [
    (np.zeros((3, 2)), r"shape \(3, 2\), expected \(3, 1\)"),
    (np.array([0.1, 1.2, 0.3]), r"probabilities in \[0, 1\]"),
])
def test_bad_predictions_are_named(risk, message):
    with pytest.raises(ValueError, match=message):
        score.score_at([1, 2, 3], [1, 0, 1], {"m": risk}, [2])


def test_bad_event_codes_are_named():
    with pytest.raises(ValueError, match="event has codes other than 0/1"):
        score.score_at([1, 2, 3], [1, 2, 1], {"m": [0.1, 0.2, 0.3]}, [2])


def test_score_cox_of_a_constant_covariate_is_a_not_fitted_row_beside_the_null_model():
    df = pd.DataFrame({"t": [5, 8, 12, 20, 25, 30], "e": [1, 1, 0, 1, 0, 1], "x": [1.0] * 6})
    got = score.score_cox(df, "t", "e", ["x"], [15])
    assert got.loc[got.model == score.NULL_MODEL, "status"].iloc[0] == "ok"
    assert got.loc[got.model == "cox(x)", "status"].iloc[0] == "not fitted: constant or collinear covariates"
