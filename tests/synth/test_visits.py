"""The faithful trial (survival_model visits): hand-worked cases of the visit-assessed progression
rule, the exact death-time draw, and by simulation the death hazard's link to the current burden."""

import math

import numpy as np
import pandas as pd
import pytest

from tumorburden.synth import visits
from tumorburden.synth.trial import design_trial, resolve_settings, simulate_trial

VISITS = [56.0, 112.0, 168.0, 224.0]  # due days of a 56-day schedule, no window


def linear_sld(start_mm, per_day):
    """One target whose diameter grows linearly: SLD(t) = start + per_day * max(t, 0)."""
    return lambda days: start_mm + per_day * np.maximum(np.asarray(days, float), 0.0)


def test_a_crossing_between_visits_is_seen_at_the_next_attended_visit():
    # SLD 40 mm + 0.1 mm/day: +5 mm on day 50, +20 % (48 mm) on day 80, between visits 1 and 2
    a = visits.assess(-7, VISITS, [True] * 4, 1000.0, linear_sld(40.0, 0.1), math.inf)
    assert (a.visit, a.cause, a.missed) == (2, "pd", 0)
    assert list(a.days) == [-7.0, 56.0, 112.0]  # imaging stops at the progression visit


def test_a_missed_visit_moves_progression_to_the_next_attended_one():
    a = visits.assess(-7, VISITS, [True, False, True, True], 1000.0, linear_sld(40.0, 0.1), math.inf)
    assert (a.visit, a.cause, a.missed) == (3, "pd", 1)
    assert list(a.days) == [-7.0, 56.0, 168.0]


def test_a_new_lesion_triggers_progression_with_a_stable_sum():
    a = visits.assess(0, VISITS, [True] * 4, 1000.0, linear_sld(40.0, 0.0), 130.0)
    assert (a.visit, a.cause) == (3, "new_lesion")  # first visit on or after day 130 is day 168


def test_death_or_censoring_before_the_crossing_visit_means_no_progression():
    a = visits.assess(0, VISITS, [True] * 4, 100.0, linear_sld(40.0, 0.1), math.inf)
    assert (a.visit, a.cause) == (None, None) and list(a.days) == [0.0, 56.0]


def test_pd_needs_both_20_percent_and_5_mm_over_the_nadir():
    # nadir 20 mm at visit 1: 24 mm is +20 % but only +4 mm; 25 mm is both
    assert visits.first_progression([30.0, 20.0, 24.0, 25.0], [False] * 4) == (3, "pd")
    # the nadir includes the baseline: growth from the baseline on counts
    assert visits.first_progression([30.0, 36.0], [False, False]) == (1, "pd")
    assert visits.first_progression([30.0, 35.9], [False, False]) == (None, None)
    # both at once: the sum of diameters names the cause
    assert visits.first_progression([30.0, 40.0], [False, True]) == (1, "pd")
    # no target at baseline: only a new lesion can show progression
    assert visits.first_progression([np.nan, np.nan, np.nan], [False, False, True]) == (2, "new_lesion")


def test_targets_are_measurable_largest_first_five_at_most_two_per_site():
    longest = [30, 25, 20, 9, 18, 40, 22, 16]
    short = [20, 20, 15, 8, 16, 14, 12, 10]
    sites = ["lung", "lung", "lung", "liver", "node", "node", "liver", "node"]
    # 3 (9 mm) is not measurable; 5 (node, short 14 mm) and 7 (node, short 10 mm) are not either;
    # lung: 0 and 1 (2 is over the cap); then liver 6 and node 4 (16 mm short axis)
    assert list(visits.choose_targets(longest, short, sites)) == [0, 1, 6, 4]
    sld = visits.sum_of_diameters(np.array([longest, longest]), np.array([short, short]), sites, [0, 1, 6, 4])
    assert list(sld) == [30 + 25 + 22 + 16] * 2  # the node adds its short axis


def test_death_time_inverts_the_cumulative_hazard():
    t = np.arange(0.0, 1001.0)
    flat = np.zeros_like(t)
    # constant hazard 1/scale (shape 1, no association): exponential time -ln(u) * scale
    assert visits.death_time(0.5, t, flat, flat, 400.0, 1.0, 0.0, 0.0, 0.0, 0.001) == pytest.approx(400 * math.log(2))
    # ln V = 0.002 t with association 1 and shape 1: H(t) = (exp(0.002 t) - 1) / (0.002 scale)
    u = 0.3
    want = math.log(1 + 0.002 * 400.0 * -math.log(u)) / 0.002
    got = visits.death_time(u, t, 0.002 * t, flat, 400.0, 1.0, 1.0, 0.0, 0.0, 0.001)
    assert got == pytest.approx(want, rel=1e-5)
    # beyond the grid the last hazard holds
    assert visits.death_time(1e-9, t, flat, flat, 100.0, 1.0, 0.0, 0.0, 0.0, 0.001) == \
        pytest.approx(100.0 * -math.log(1e-9))


def test_settings_are_checked():
    with pytest.raises(ValueError, match="survival_model.model"):
        resolve_settings({"survival_model": {"model": "weibull"}})
    with pytest.raises(ValueError, match="visit_window_days"):
        resolve_settings({"survival_model": {"visit_every_days": 28, "visit_window_days": 14}})
    with pytest.raises(ValueError, match="missed_visit_probability"):
        resolve_settings({"survival_model": {"missed_visit_probability": 1.0}})


def test_table_level_trial_is_the_rendered_trials_course():
    a, b = design_trial({"n_patients": 12}), simulate_trial({"n_patients": 12})
    for name in ("clinical", "scans", "patients"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
    cols = ["patient_id", "scan_id", "track_id", "volume_ml", "longest_diameter_mm", "new"]
    pd.testing.assert_frame_equal(a.lesions[cols], b.lesions[cols], check_exact=True)
    assert b.lesions["centroid_x_mm"].isna().all()


@pytest.fixture(scope="module")
def trial():
    return design_trial({"n_patients": 80})


def test_pfs_is_the_progression_visit_or_death_and_imaging_stops_there(trial):
    c = trial.clinical.merge(trial.patients, on=["patient_id", "cohort"])
    scans = trial.scans.groupby("patient_id")["days"].agg(["max", "size"])
    assert set(c["progression_cause"]) <= {"pd", "new_lesion", "death", "censored"}
    prog = c[c["progression_cause"].isin(["pd", "new_lesion"])]
    assert len(prog) > 20
    assert np.all(prog["pfs_event"] == 1)
    assert np.allclose(prog["pfs_days"], prog["progression_day"])
    assert np.allclose(prog["progression_day"], scans.loc[prog["patient_id"], "max"])  # the last scan
    died = c[c["progression_cause"] == "death"]
    assert np.all(died["pfs_event"] == 1) and np.allclose(died["pfs_days"], died["t_death_days"].round(2))
    cens = c[c["progression_cause"] == "censored"]
    assert np.all(cens["pfs_event"] == 0) and np.all(cens["os_event"] == 0)
    assert np.all(c["pfs_days"] <= c["os_days"])
    # visit k is done within +-7 days of day 56 k: the progression visit's number fits its day
    assert np.all(np.abs(prog["progression_day"] - 56 * prog["progression_visit"]) <= 7)
    new = trial.lesions[trial.lesions["new"]].merge(c[["patient_id", "t_new_lesion_days"]])
    assert np.all(new["days"] >= new["t_new_lesion_days"])


def test_the_simulators_progression_is_the_estimators_recist_pd_on_the_true_lesions(trial):
    """The pipeline's RECIST 1.1 (kinetics/recist.py) run on the true lesions finds PD at the
    simulator's progression visit, and at no earlier scan (non-target PD, which the simulator does
    not model, left out)."""
    from tumorburden.kinetics import recist

    les = trial.lesions.assign(organ=trial.lesions["site"], status="persisting")
    checked = 0
    for pid, p in trial.patients.set_index("patient_id").iterrows():
        rows = les[les["patient_id"] == pid]
        scan_ids = list(trial.scans.loc[trial.scans["patient_id"] == pid, "scan_id"])
        targets = recist.select_targets(rows[rows["scan_id"] == scan_ids[0]])
        sums = recist.target_sums(rows, targets, scan_ids)
        new = [bool(rows.loc[rows["scan_id"] == s, "new"].any()) for s in scan_ids]
        resp = recist.timepoint_responses(sums["sld_mm"], new, sums["targets_gone"])
        first_pd = resp.index("PD") + 1 if "PD" in resp else None
        if p["progression_cause"] in ("pd", "new_lesion"):
            assert first_pd == len(scan_ids) - 1, pid
            checked += 1
        else:
            assert first_pd is None, pid
    assert checked > 20


def test_death_hazard_follows_the_current_log_burden():
    """A Cox model with the true current ln burden as a time-varying covariate (7-day steps)
    recovers the configured association on a large simulated cohort."""
    from lifelines import CoxTimeVaryingFitter

    tr = simulate_trial({"n_patients": 1200, "seed": 7, "max_followups": 4})
    alpha = tr.model["association"]["log_burden"]
    rows = []
    for p in tr.clinical.itertuples():
        start = np.arange(0.0, p.os_days, 7.0)
        stop = np.append(start[1:], p.os_days)
        rows.append(pd.DataFrame({
            "id": p.patient_id, "start": start, "stop": stop, "cohort": p.cohort,
            "event": np.r_[np.zeros(len(start) - 1), p.os_event],
            "log_burden": np.log(np.maximum(tr.true_volume(p.patient_id, start), 1e-3)),
        }))
    d = pd.concat(rows, ignore_index=True)
    d = d[d["stop"] > d["start"]]
    fit = CoxTimeVaryingFitter().fit(d, id_col="id", event_col="event", start_col="start", stop_col="stop",
                                     strata=["cohort"])
    assert int(tr.clinical["os_event"].sum()) > 500
    assert fit.params_["log_burden"] == pytest.approx(alpha, abs=0.08)
    assert fit.confidence_intervals_.loc["log_burden"].iloc[0] < alpha < fit.confidence_intervals_.loc["log_burden"].iloc[1]
