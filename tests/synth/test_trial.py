import math

import numpy as np
import pandas as pd
import pytest

from tumorburden.synth import phantom
from tumorburden.synth.trial import (
    DEFAULTS, design_trial, resolve_settings, semi_axes, stein_volume, volume_cap_ml, write_trial,
)


BASELINE = {"survival_model": {"model": "baseline"}}  # today's first model: Weibull times of baseline covariates


def _frames(trial):
    return {"clinical": trial.clinical, "scans": trial.scans, "patients": trial.patients, "lesions": trial.lesions}


def test_same_seed_gives_identical_trial_and_other_seed_differs(tiny_settings):
    a, b = design_trial(tiny_settings), design_trial(dict(tiny_settings))
    for name, frame in _frames(a).items():
        pd.testing.assert_frame_equal(frame, _frames(b)[name], check_exact=True)
    assert a.model == b.model
    c = design_trial({**tiny_settings, "seed": tiny_settings["seed"] + 1})
    assert not c.patients["growth_g"].equals(a.patients["growth_g"])


def test_a_patient_does_not_depend_on_trial_size(tiny_settings):
    small = design_trial(tiny_settings)
    large = design_trial({**tiny_settings, "n_patients": 7})
    pd.testing.assert_frame_equal(small.patients, large.patients.iloc[:3], check_exact=True)
    same = large.lesions[large.lesions["patient_id"].isin(small.patients["patient_id"])]
    pd.testing.assert_frame_equal(small.lesions, same.reset_index(drop=True))


def test_presets_and_explicit_keys():
    s = resolve_settings({"size": "impact", "matrix": 256})
    assert (s["n_patients"], s["matrix"], s["pixel_mm"], s["slice_mm"]) == (600, 256, 0.78, 1.5)
    d = resolve_settings(None)
    assert (d["n_patients"], d["matrix"], d["pixel_mm"], d["slice_mm"]) == (24, 128, 3.0, 3.0)
    assert d["survival_model"]["hr_per_log_volume"] == DEFAULTS["survival_model"]["hr_per_log_volume"]
    with pytest.raises(ValueError, match="size"):
        resolve_settings({"size": "huge"})
    with pytest.raises(ValueError, match="mesothelioma"):
        resolve_settings({"cohorts": {"mesothelioma": 1.0}})


def test_ids_cohorts_and_columns():
    trial = design_trial({"n_patients": 10})
    assert list(trial.clinical["patient_id"][:2]) == ["SYN-001", "SYN-002"]
    assert trial.clinical["cohort"].value_counts().to_dict() == {"lung": 5, "melanoma": 5}
    assert list(trial.clinical.columns) == ["patient_id", "cohort", "pfs_days", "pfs_event", "os_days",
                                            "os_event", "age", "sex", "ecog", "line_of_therapy", "height_cm"]
    assert list(trial.scans.columns) == ["patient_id", "scan_id", "days", "image"]
    first = trial.scans.iloc[0]
    assert first["scan_id"] == "SYN-001-S0" and first["image"] == "dicom/SYN-001/SYN-001-S0"
    assert set(trial.lesions["site"]) <= {"lung", "liver", "node", "soft_tissue"}
    mel = trial.lesions.merge(trial.patients[["patient_id", "cohort"]])
    assert "soft_tissue" not in set(mel.loc[mel["cohort"] == "lung", "site"])


def test_schedule_rules():
    s = resolve_settings({"n_patients": 40, **BASELINE})
    trial = design_trial(s)
    lo, hi = s["visit_interval_days"]
    pts = trial.patients.set_index("patient_id")
    for pid, scans in trial.scans.groupby("patient_id"):
        days = scans["days"].to_numpy()
        p = pts.loc[pid]
        assert -14 <= days[0] <= 0 and days[0] == int(days[0])
        gaps = np.diff(days)
        assert np.all((gaps >= lo) & (gaps <= hi))
        assert len(days) - 1 <= s["max_followups"]
        assert np.all(days[1:] <= min(p["t_death_days"], p["censor_days"]))
        after = np.flatnonzero(days >= p["t_progression_days"])
        assert after.size <= 1 and (after.size == 0 or after[0] == len(days) - 1)  # stop after the PD scan


def test_survival_consistency():
    trial = design_trial({"n_patients": 60, **BASELINE})
    c = trial.clinical.merge(trial.patients, on=["patient_id", "cohort"])
    assert np.all(c["pfs_days"] <= c["os_days"])
    assert np.all(c["pfs_event"] >= c["os_event"])  # death is a PFS event
    assert np.allclose(c["os_days"], np.minimum(c["t_death_days"], c["censor_days"]).round(2))
    assert np.all(c["censor_days"] <= DEFAULTS["study_days"])
    m = trial.model
    assert m["hazard_ratios"]["per_log_volume"] == 1.5
    scale = m["baseline_hazard"]["scale_progression_days"]["lung"]
    assert math.isclose(scale * math.log(2) ** (1 / 1.2), 220.0)


def test_hazard_ratios_are_recovered_from_true_event_times():
    from lifelines import CoxPHFitter

    trial = design_trial({"n_patients": 600, **BASELINE})
    p = trial.patients
    df = pd.DataFrame({
        "t": p["t_death_days"], "e": 1, "cohort": p["cohort"],
        "log_v": np.log(p["v0_total_ml"]), "g": p["growth_g"] / 0.001,
    })
    fit = CoxPHFitter().fit(df, "t", "e", strata=["cohort"])
    assert fit.params_["log_v"] == pytest.approx(math.log(1.5), abs=0.15)
    assert fit.params_["g"] == pytest.approx(math.log(1.3), abs=0.12)


def test_stein_volume_at_known_times():
    assert stein_volume(2.0, 0.01, 0.02, 100.0) == pytest.approx(2.0 * (math.exp(-2.0) + math.exp(1.0) - 1.0))
    assert stein_volume(2.0, 0.01, 0.02, 0.0) == pytest.approx(2.0)
    assert stein_volume(2.0, 0.01, 0.02, -10.0) == pytest.approx(2.0 * math.exp(-0.1))  # untreated growth


def test_lesion_volumes_follow_stein_and_new_lesions_follow_progression():
    trial = design_trial({"n_patients": 30, **BASELINE})
    pts = trial.patients.set_index("patient_id")
    cap = volume_cap_ml([0.7, 0.7, 0.7])
    checked = 0
    for (pid, track), rows in trial.lesions.groupby(["patient_id", "track_id"]):
        p = pts.loc[pid]
        if rows["new"].iloc[0]:
            assert np.all(rows["days"] >= p["t_progression_days"])
            continue
        t, v = rows["days"].to_numpy(), rows["volume_ml"].to_numpy()
        if v.max() >= cap:
            continue
        expected = stein_volume(1.0, p["growth_g"], p["decay_d"], t)
        assert np.allclose(v / v[0], expected / expected[0])
        checked += 1
    assert checked > 20
    les = trial.lesions
    semi = les[["semi_x_mm", "semi_y_mm", "semi_z_mm"]].to_numpy()
    assert np.allclose(4 / 3 * np.pi * semi.prod(axis=1) / 1000, les["volume_ml"])
    assert np.allclose(les["longest_diameter_mm"], 2 * semi[:, :2].max(axis=1))
    assert semi.max() <= 45.0 + 1e-9
    assert np.allclose(semi_axes(1.0, [1, 1, 1]), (3000 / (4 * np.pi)) ** (1 / 3))


def test_lesion_centres_lie_in_their_host_tissue():
    trial = design_trial({"n_patients": 30})
    pts = trial.patients.set_index("patient_id")
    first = trial.lesions.drop_duplicates(["patient_id", "track_id"])
    inside = 0
    for les in first.itertuples():
        p = pts.loc[les.patient_id]
        body = phantom.Body(p["body_a_mm"], p["body_b_mm"], p["sat_mm"], p["muscle_mm"])
        code = phantom.tissue_at(np.array([-les.centroid_x_mm]), np.array([-les.centroid_y_mm]),
                                 np.array([les.centroid_z_mm - phantom.Z_OF_U0_MM]), body)[0]
        inside += code == phantom.SITE_HOST[les.site]
    assert inside == len(first)


def test_write_trial_is_byte_identical(tmp_path, tiny_settings):
    write_trial(tiny_settings, tmp_path / "a")
    write_trial(tiny_settings, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert {str(f) for f in files} == {
        "synthetic/clinical.tsv", "synthetic/scans.tsv", "truth/patients.parquet", "truth/lesions.parquet",
        "truth/scans.parquet", "truth/model.json",
    }
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    scans = pd.read_csv(tmp_path / "a" / "synthetic" / "scans.tsv", sep="\t")
    truth = pd.read_parquet(tmp_path / "a" / "truth" / "scans.parquet")
    assert list(scans["scan_id"]) == list(truth["scan_id"])
    assert np.all(truth["n_lesions"] >= 1)


def test_defaults_match_the_embedded_config():
    from pathlib import Path

    import yaml

    config = Path(__file__).resolve().parents[2] / "config" / "config.yaml"
    assert yaml.safe_load(config.read_text())["synthetic"] == DEFAULTS


def test_heights_are_drawn_by_sex_on_their_own_stream():
    trial = design_trial({"n_patients": 200})
    by_sex = trial.clinical.groupby("sex")["height_cm"]
    # the cited means (175.3 men, 161.3 women) within 3 standard errors (SD about 7 cm)
    assert abs(by_sex.mean()["M"] - 175.3) < 3 * 7.5 / np.sqrt(by_sex.size()["M"])
    assert abs(by_sex.mean()["F"] - 161.3) < 3 * 7.0 / np.sqrt(by_sex.size()["F"])
    assert 5.0 < by_sex.std()["M"] < 10.0 and 5.0 < by_sex.std()["F"] < 10.0
