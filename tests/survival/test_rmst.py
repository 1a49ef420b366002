"""Restricted mean survival time: properties that hold whatever R says."""

import numpy as np
import pytest

from tumorburden.survival import rmst


def test_without_censoring_rmst_is_the_mean_of_time_capped_at_tau():
    rng = np.random.default_rng(3)
    time = rng.exponential(300, 200).round(1)
    got = rmst.rmst_by_group(time, np.ones(200), None, 365).iloc[0]
    assert got["group"] == "all" and got["n"] == 200 and got["events"] == 200
    assert got["rmst"] == pytest.approx(np.minimum(time, 365).mean(), rel=1e-12)
    # uncensored, the KM variance of the area is the empirical variance of min(T, tau) / n (ddof 0)
    assert got["se"] == pytest.approx(np.minimum(time, 365).std() / np.sqrt(200), rel=1e-9)


def test_a_curve_ending_before_tau_is_carried_forward_and_noted():
    got = rmst.rmst_by_group([10, 20, 30], [1, 0, 0], None, 100).iloc[0]
    assert got["rmst"] == pytest.approx(10 + (2 / 3) * 90)
    assert "carried forward" in got["note"]


def test_contrasts_against_a_named_reference_and_a_missing_one():
    by_group = rmst.rmst_by_group([5, 8, 12, 20, 9, 30, 40, 50], [1, 1, 1, 0, 1, 0, 1, 0],
                                  ["a", "a", "a", "a", "b", "b", "b", "b"], 25)
    c = rmst.rmst_contrasts(by_group, reference="b").iloc[0]
    ra, rb = by_group.set_index("group")["rmst"]
    assert c["group"] == "a" and c["difference"] == pytest.approx(ra - rb) and c["ratio"] == pytest.approx(ra / rb)
    assert c["difference_lower"] < c["difference"] < c["difference_upper"]
    with pytest.raises(ValueError, match="reference group 'c' is not among the groups"):
        rmst.rmst_contrasts(by_group, reference="c")


@pytest.mark.parametrize("time,event,tau,message", [
    ([1, -2], [1, 0], 10, "negative"), ([1, 2], [1, 3], 10, "codes other than 0/1"), ([1, 2], [1, 0], 0, "tau must be")])
def test_bad_input_is_named(time, event, tau, message):
    with pytest.raises(ValueError, match=message):
        rmst.rmst_by_group(time, event, None, tau)
