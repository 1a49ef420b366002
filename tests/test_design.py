"""Study design by simulation (design.py): the error model, and power against Schoenfeld's formula."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tumorburden import design, tables
from tumorburden.synth.trial import simulate_trial


def test_volume_error_sd_gives_the_median_absolute_relative_error():
    z = np.random.default_rng(3).standard_normal(400_000)
    for m in (0.04, 0.2, 0.5):
        sd = design._sd_for_median_abs_rel_error(m)
        assert np.median(np.abs(np.exp(sd * z) - 1.0)) == pytest.approx(m, abs=0.003)
    assert design._sd_for_median_abs_rel_error(0.0) == 0.0
    with pytest.raises(ValueError, match="cannot be simulated"):
        design._sd_for_median_abs_rel_error(1.2)


def test_measured_burden_drops_lesions_by_size_and_scales_the_total():
    lesions = pd.DataFrame({
        "scan_id": ["a", "a", "a", "b", "b"],
        "longest_diameter_mm": [20.0, 7.0, 4.0, 12.0, 6.0],
        "volume_ml": [5.0, 0.3, 0.05, 2.0, 0.2],
    })
    scans = pd.DataFrame({"scan_id": ["a", "b", "c"]})
    rng = np.random.default_rng(0)
    exact = {"sensitivity_ge10mm": 1.0, "sensitivity_5to10mm": 1.0, "volume_sd_log": 0.0}
    # lesions under 5 mm are never found; scan c has no lesion
    assert list(design.measured_burden(lesions, scans, exact, rng)) == pytest.approx([5.3, 2.2, 0.0])
    no_small = {**exact, "sensitivity_5to10mm": 0.0}
    assert list(design.measured_burden(lesions, scans, no_small, rng)) == pytest.approx([5.0, 2.0, 0.0])
    noisy = design.measured_burden(lesions, scans, {**exact, "volume_sd_log": 0.3}, np.random.default_rng(1))
    z = np.random.default_rng(1)
    z.random(len(lesions))  # the detection draws come first
    assert list(noisy) == pytest.approx(list(np.array([5.3, 2.2, 0.0]) * np.exp(0.3 * z.standard_normal(3))))


def test_error_model_reads_the_scores_and_falls_back_to_the_config(tmp_path):
    scores = pd.DataFrame([
        {"stage": "burden", "metric": "total_volume_median_abs_rel_error_ge5ml", "value": 0.08, "n": 44, "detail": ""},
        {"stage": "lesions", "metric": "sensitivity_ge10mm", "value": 0.95, "n": 220, "detail": ""},
        {"stage": "lesions", "metric": "sensitivity_5to10mm", "value": float("nan"), "n": 0, "detail": "skipped"},
    ])
    tables.write(scores, tmp_path / "scores.csv", "scores")
    s = design.resolve({"error": {"sensitivity_5to10mm": 0.5}})
    model = design.error_model(s, tmp_path / "scores.csv")
    v = model["values"]
    assert (v["volume_median_abs_rel_error"], v["sensitivity_ge10mm"], v["sensitivity_5to10mm"]) == (0.08, 0.95, 0.5)
    assert "n=44" in model["source"]["volume_median_abs_rel_error"]
    assert model["source"]["sensitivity_5to10mm"] == "config design.error"


def test_settings_are_checked():
    with pytest.raises(ValueError, match="design.sample_sizes"):
        design.resolve({"sample_sizes": [50, 50]})
    with pytest.raises(ValueError, match="design.error.sensitivity_ge10mm"):
        design.resolve({"error": {"sensitivity_ge10mm": 1.5}})


# A trial whose burden stays what it was at baseline (no growth, no decay, no new lesion): the
# time-varying Cox model is then exactly the data-generating proportional-hazards model in
# ln(baseline volume), where Schoenfeld's formula holds.
STILL = {
    "kinetics": {"responder": {"g": [1e-9, 0.0], "d": [1e-9, 0.0]},
                 "non_responder": {"g": [1e-9, 0.0], "d": [1e-9, 0.0]}},
    "survival_model": {"new_lesion_median_days": {"lung": 1e9, "melanoma": 1e9}},
}
HR = 1.25
TRIALS = 120


@pytest.fixture(scope="module")
def still_design():
    settings = {"hr_per_log_burden": HR, "sample_sizes": [30, 80, 140], "trials": TRIALS, "seed": 5,
                "volume_offset_ml": 0.01, "error": {"volume_median_abs_rel_error": 0.6}}
    return design.run_design(STILL, settings, workers=2)


def test_power_grows_with_n_and_is_near_schoenfeld_without_error(still_design):
    power, trials = still_design
    true = power[power["burden"] == "true"].set_index("n_patients")
    assert list(true["power"]) == sorted(true["power"]) and true["power"].iloc[0] < true["power"].iloc[-1]
    # Schoenfeld (1983): power = Phi(|beta| sd(x) sqrt(D) - z), the covariate's sd from a large
    # cohort of the simulator's patients, D the deaths the simulated trials had
    cohort = simulate_trial({**STILL, "n_patients": 2000, "seed": 99,
                             "survival_model": {**STILL["survival_model"], "death_hr_per_log_burden": HR}})
    sd = float(np.log(cohort.patients["baseline_volume_ml"]).std())
    z = stats.norm.ppf(0.975)
    for n, row in true.iterrows():
        schoenfeld = stats.norm.cdf(math.log(HR) * sd * math.sqrt(row["mean_deaths"]) - z)
        # Monte-Carlo error (2.5 binomial SEs) and the formula's own: it takes the covariate's variance
        # in the whole sample, the risk sets at the deaths have less (the high burdens die first)
        tolerance = 2.5 * math.sqrt(schoenfeld * (1 - schoenfeld) / TRIALS) + 0.04
        assert row["power"] == pytest.approx(schoenfeld, abs=tolerance), (n, row["power"], schoenfeld)
        assert row["power_lower"] <= row["power"] <= row["power_upper"]
    assert 0.2 < true.loc[80, "power"] < 0.95  # the check above is not made at a floor or ceiling
    assert (trials["status"] == "ok").all() and len(trials) == TRIALS * 3 * 2


def test_imaging_error_attenuates_the_estimate_in_the_same_trials(still_design):
    power, trials = still_design
    wide = trials.pivot_table(index=["trial", "n_patients"], columns="burden", values=["coef", "deaths"])
    assert (wide["deaths"]["true"] == wide["deaths"]["measured"]).all()  # the very same trials
    measured = power[power["burden"] == "measured"].set_index("n_patients")
    assert (measured["attenuation"] < 0.95).all()  # a 60 % median volume error dilutes the coefficient
    true = power[power["burden"] == "true"].set_index("n_patients")
    assert measured.loc[140, "power"] <= true.loc[140, "power"]
