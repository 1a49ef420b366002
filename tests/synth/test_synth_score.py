import json
import shutil

import numpy as np
import pandas as pd
import pytest

from tumorburden import tables
from tumorburden.kinetics.burden import compute_burden
from tumorburden.kinetics.features import compute_features
from tumorburden.synth.score import _truth_lesion_table, write_scores
from tumorburden.synth.trial import truth_scan_dirs


def _perfect_results(out, trial, results):
    """A run that got everything right: the truth copied into the results layout."""
    truth = out / "truth"
    for scan_id in trial.scans["scan_id"]:
        (results / "scans" / scan_id).mkdir(parents=True)
        shutil.copy(truth_scan_dirs(truth)[scan_id] / "labels.nii.gz", results / "scans" / scan_id / "segmentation.nii.gz")
    les = pd.read_parquet(truth / "lesions.parquet")
    measured = les.assign(lesion=les["track_id"], status="persisting", mean_hu=40.0, organ=les["site"])
    tables.write(measured, results / "tables" / "lesions.parquet", "lesions")
    ts = pd.read_parquet(truth / "scans.parquet")
    # burden and features by the pipeline's own kinetics on the true lesions: perfectly measured
    true_lesions = _truth_lesion_table(les, ts)
    burden = compute_burden(true_lesions, tables.empty("scan_tissue"), ts[["patient_id", "scan_id", "days"]])
    burden[["muscle_ml", "sat_ml", "vat_ml"]] = 0.0
    tables.write(burden, results / "tables" / "burden.parquet", "burden")
    p = pd.read_parquet(truth / "patients.parquet")
    feats, _ = compute_features(burden, true_lesions, p[["patient_id", "cohort"]])
    tables.write(feats, results / "tables" / "features.parquet", "features")
    cox = pd.DataFrame([
        {"cohort": "all", "endpoint": "os", "model": "univariate", "term": "log_baseline_volume_ml", "hr": 1.6,
         "hr_lower": 1.2, "hr_upper": 2.1, "p": 0.01, "n": 3, "events": 2, "status": "ok",
         "coef": 0.47, "se": 0.14, "wald_p": 0.01, "lr_p": 0.01, "score_p": 0.01,
         "zph_global_p": 0.5, "nonproportional": False},
        {"cohort": "all", "endpoint": "pfs", "model": "univariate", "term": "log2_baseline_volume_ml", "hr": 1.1,
         "hr_lower": 1.0, "hr_upper": 1.2, "p": 0.01, "n": 3, "events": 2, "status": "ok",
         "coef": 0.095, "se": 0.05, "wald_p": 0.01, "lr_p": 0.01, "score_p": 0.01,
         "zph_global_p": 0.5, "nonproportional": False},
        # the visits model's truth: HR of death per unit of the current ln burden (1.6)
        {"cohort": "all", "endpoint": "os", "model": "time_varying", "term": "log_current_burden_ml", "hr": 1.7,
         "hr_lower": 1.3, "hr_upper": 2.2, "p": 0.01, "n": 3, "events": 2, "status": "ok",
         "coef": 0.53, "se": 0.14, "wald_p": 0.01, "lr_p": 0.01, "score_p": 0.01,
         "zph_global_p": 0.5, "nonproportional": False},
        {"cohort": "lung", "endpoint": "os", "model": "time_varying", "term": "log_current_burden_ml", "hr": 1.1,
         "hr_lower": 1.0, "hr_upper": 1.2, "p": 0.01, "n": 3, "events": 2, "status": "ok",
         "coef": 0.095, "se": 0.05, "wald_p": 0.01, "lr_p": 0.01, "score_p": 0.01,
         "zph_global_p": 0.5, "nonproportional": False},
        {"cohort": "all", "endpoint": "pfs", "model": "time_varying", "term": "log_current_burden_ml", "hr": 5.0,
         "hr_lower": 4.0, "hr_upper": 6.0, "p": 0.01, "n": 3, "events": 2, "status": "ok",
         "coef": 1.6, "se": 0.1, "wald_p": 0.01, "lr_p": 0.01, "score_p": 0.01,
         "zph_global_p": 0.5, "nonproportional": False},
    ])
    tables.write(cox, results / "survival" / "cox.csv", "cox")


def _value(scores, metric):
    row = scores[scores["metric"] == metric]
    assert len(row) >= 1, metric
    return row["value"].iloc[0]


def test_perfect_run_scores_perfectly(tiny_run, tmp_path):
    out, trial = tiny_run
    results = tmp_path / "results"
    _perfect_results(out, trial, results)
    scores = write_scores(out / "truth", results, tmp_path / "scores.csv")
    assert list(scores.columns) == ["stage", "metric", "value", "n", "detail"]
    assert _value(scores, "lesion_dice_pooled") == 1.0
    assert _value(scores, "lesion_dice_median_per_scan") == 1.0
    for tissue in ("muscle", "sat", "vat", "lung", "liver"):
        assert _value(scores, f"{tissue}_dice") == 1.0
    assert _value(scores, "sensitivity_ge10mm") == 1.0
    assert _value(scores, "false_positives_per_scan") == 0.0
    assert _value(scores, "tracking_accuracy") == 1.0
    assert _value(scores, "tracking_accuracy_strict") == 1.0
    assert _value(scores, "total_volume_median_abs_rel_error") == 0.0
    assert _value(scores, "total_volume_p90_abs_rel_error") == 0.0
    assert _value(scores, "baseline_volume_median_abs_rel_error") == 0.0
    # the % change against the simulator's own volumes (no kinetics code on the truth side)
    assert _value(scores, "pct_change_volume_median_abs_error") == pytest.approx(0.0, abs=1e-9)
    for metric in ("recist_response_consistency", "volumetric_response_consistency", "recist_bor_consistency",
                   "volumetric_bor_consistency"):
        assert _value(scores, metric) == 1.0, metric
    for param in ("growth_g", "decay_d"):  # perfect volumes: the error of the fits on the true volumes
        fitted = scores[scores["metric"].str.startswith(f"{param}_median_abs_rel_error")]
        assert len(fitted) == 2 and (fitted["value"].isna().all() or fitted["value"].nunique() == 1), fitted
    hr = scores[scores["metric"] == "hr_log_volume_ci_covers"]
    # the visits model (the default): only the OS models on the current burden estimate its truth,
    # 1.6 lies in 1.3-2.2 and not in 1.0-1.2; baseline-volume and PFS rows have no truth there
    assert list(hr["value"]) == [1.0, 0.0]
    assert all("log_current_burden_ml" in d and "true HR 1.6" in d for d in hr["detail"])
    assert pd.read_csv(tmp_path / "scores.csv").shape == scores.shape

    # the baseline model: the truth is per unit of ln(baseline volume); ln-scale term: 1.5 lies in
    # 1.2-2.1; log2 term: true HR 1.5**ln2 = 1.32 lies outside 1.0-1.2
    truth = tmp_path / "truth-baseline"
    shutil.copytree(out / "truth", truth)
    (truth / "model.json").write_text(json.dumps({"survival_model": "baseline", "hazard_ratios": {"per_log_volume": 1.5}}))
    scores = write_scores(truth, results, tmp_path / "scores-baseline.csv")
    hr = scores[scores["metric"] == "hr_log_volume_ci_covers"]
    assert list(hr["value"]) == [1.0, 0.0]


def test_errors_are_measured_and_missing_inputs_are_reported(tiny_run, tmp_path):
    out, trial = tiny_run
    results = tmp_path / "results"
    _perfect_results(out, trial, results)
    burden = tables.read(results / "tables" / "burden.parquet", "burden")
    burden["total_volume_ml"] *= 1.2
    burden["pct_change_volume"] += 10.0
    tables.write(burden, results / "tables" / "burden.parquet", "burden")
    gone = trial.scans["scan_id"].iloc[0]
    (results / "scans" / gone / "segmentation.nii.gz").unlink()
    (results / "tables" / "features.parquet").unlink()
    (results / "survival" / "cox.csv").unlink()

    scores = write_scores(out / "truth", results, tmp_path / "scores.csv")
    assert _value(scores, "total_volume_median_abs_rel_error") == pytest.approx(0.2)
    assert _value(scores, "pct_change_volume_median_abs_error") == pytest.approx(10.0)
    assert _value(scores, "lesion_dice_pooled") == 1.0
    dice = scores[scores["metric"] == "lesion_dice_pooled"].iloc[0]
    assert dice["n"] == len(trial.scans) - 1 and gone in dice["detail"]
    feat = scores[scores["metric"] == "baseline_volume_median_abs_rel_error"].iloc[0]
    assert np.isnan(feat["value"]) and "not found" in feat["detail"]
    assert np.isnan(_value(scores, "hr_log_volume"))


def test_response_consistency_counts_the_follow_up_scans_that_differ(tiny_run, tmp_path):
    out, trial = tiny_run
    results = tmp_path / "results"
    _perfect_results(out, trial, results)
    burden = tables.read(results / "tables" / "burden.parquet", "burden")
    # follow-up scans counted here from the scans table alone: after the patient's baseline scan
    ts = pd.read_parquet(out / "truth" / "scans.parquet")
    base_day = ts[ts["days"] <= 0].groupby("patient_id")["days"].max()
    follow_up = ts[ts["days"] > ts["patient_id"].map(base_day)]["scan_id"]
    assert len(follow_up) >= 4
    flipped = list(follow_up.iloc[:3])
    rows = burden["scan_id"].isin(flipped)
    burden.loc[rows, "recist_response"] = burden.loc[rows, "recist_response"].map(lambda r: "PD" if r != "PD" else "SD")
    tables.write(burden, results / "tables" / "burden.parquet", "burden")
    scores = write_scores(out / "truth", results, tmp_path / "scores.csv")
    row = scores[scores["metric"] == "recist_response_consistency"].iloc[0]
    assert row["n"] == len(follow_up) and row["value"] == pytest.approx(1 - 3 / len(follow_up))
    assert "consistency check" in row["detail"]
    assert _value(scores, "volumetric_response_consistency") == 1.0


def test_segmentation_errors_lower_dice_and_add_false_positives(tiny_run, tmp_path):
    import nibabel as nib

    out, trial = tiny_run
    results = tmp_path / "results"
    _perfect_results(out, trial, results)
    for scan_id in trial.scans["scan_id"]:
        path = results / "scans" / scan_id / "segmentation.nii.gz"
        img = nib.load(path)
        seg = np.asarray(img.dataobj).copy()
        seg[np.isin(seg, (1, 5))] = 4  # every lesion missed
        seg[2:4, 2:4, 2:4] = 1  # one false positive in the corner
        nib.save(nib.Nifti1Image(seg, img.affine), path)
    scores = write_scores(out / "truth", results, tmp_path / "scores.csv")
    assert _value(scores, "lesion_dice_pooled") == 0.0
    assert _value(scores, "sensitivity_ge10mm") == 0.0
    assert _value(scores, "false_positives_per_scan") == 1.0


def test_missing_truth_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="synth-trial"):
        write_scores(tmp_path / "truth", tmp_path, tmp_path / "s.csv")


def test_segmentation_in_another_orientation_is_brought_onto_the_truth_grid(tiny_run, tmp_path):
    import nibabel as nib

    out, trial = tiny_run
    results = tmp_path / "results"
    _perfect_results(out, trial, results)
    for scan_id in trial.scans["scan_id"]:
        path = results / "scans" / scan_id / "segmentation.nii.gz"
        img = nib.as_closest_canonical(nib.load(path))  # RAS+ voxel order: i and j flipped
        assert not np.allclose(img.affine, nib.load(truth_scan_dirs(out / "truth")[scan_id] / "labels.nii.gz").affine)
        nib.save(img, path)
    scores = write_scores(out / "truth", results, tmp_path / "scores.csv")
    assert _value(scores, "lesion_dice_pooled") == 1.0 and _value(scores, "vat_dice") == 1.0
