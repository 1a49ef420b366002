"""Decision curves: properties that hold whatever R says."""

import numpy as np
import pytest

from tumorburden.survival import decision


def test_without_censoring_net_benefit_is_true_minus_weighted_false_positives():
    rng = np.random.default_rng(4)
    time = rng.exponential(100, 150).round(1)
    risk = np.clip(1 - np.exp(-60 / time) + rng.normal(0, 0.1, 150), 0, 1)
    got = decision.net_benefit(time, np.ones(150), {"m": risk}, [60], [0.1, 0.3, 0.6]).set_index(["threshold", "model"])
    y = time <= 60
    for p in (0.1, 0.3, 0.6):
        treated = risk >= p
        want = (y & treated).mean() - (~y & treated).mean() * p / (1 - p)
        assert got.loc[(p, "m"), "net_benefit"] == pytest.approx(want, abs=1e-12)
        assert got.loc[(p, "m"), "n_treated"] == treated.sum()
        assert got.loc[(p, decision.TREAT_ALL), "net_benefit"] == pytest.approx(y.mean() - (~y).mean() * p / (1 - p))


def test_models_named_like_the_reference_strategies_stay_apart():
    got = decision.net_benefit([5, 10, 20, 30], [1, 1, 0, 1], {"all": [0.9, 0.8, 0.1, 0.2]}, [15], [0.5])
    assert set(got["model"]) == {"all", decision.TREAT_ALL, decision.TREAT_NONE}


def test_a_horizon_after_follow_up_and_bad_thresholds_are_named():
    got = decision.net_benefit([5, 10], [1, 0], {"m": [0.2, 0.3]}, [50], [0.1])
    assert got["status"].str.startswith("not computed").all()
    with pytest.raises(ValueError, match=r"thresholds must be probabilities in \[0, 1\)"):
        decision.net_benefit([5, 10], [1, 0], {"m": [0.2, 0.3]}, [5], [1.0])
