"""End to end: the Snakemake workflow on a tiny synthetic trial, scored against its truth,
then the same scans as a *real* study (tables + DICOM folders + external masks)."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from tumorburden.synth.trial import truth_scan_dirs
from workflow_run import snakemake


@pytest.mark.e2e
def test_pipeline_outputs_follow_the_contract(synthetic_run):
    r = synthetic_run
    burden = pd.read_parquet(r / "tables/burden.parquet")
    scans = pd.read_csv(r / "synthetic/scans.tsv", sep="\t")
    assert sorted(burden["scan_id"]) == sorted(scans["scan_id"])
    for col in ["patient_id", "scan_id", "days", "total_volume_ml", "n_lesions", "n_new_lesions",
                "sld_mm", "muscle_ml", "sat_ml", "vat_ml"]:
        assert col in burden.columns
    features = pd.read_parquet(r / "tables/features.parquet")
    for col in ["patient_id", "cohort", "baseline_volume_ml", "nadir_volume_ml", "pct_change_first_fu"]:
        assert col in features.columns
    cox = pd.read_csv(r / "survival/cox.csv")
    assert {"cohort", "endpoint", "model", "term", "hr", "hr_lower", "hr_upper", "p", "n", "events"} <= set(cox.columns)
    assert set(cox["endpoint"]) == {"pfs", "os"}
    for cohort in ["lung", "melanoma", "all"]:
        for endpoint in ["pfs", "os"]:
            for ext in ["pdf", "png"]:
                assert (r / f"figures/km_{cohort}_{endpoint}_baseline_volume_median.{ext}").stat().st_size > 1000
    assert (r / "qc/exclusions.tsv").exists()
    image = nib.load(r / f"scans/{scans.scan_id[0]}/image.nii.gz")
    truth = nib.load(truth_scan_dirs(r / "truth")[scans.scan_id[0]] / "labels.nii.gz")
    np.testing.assert_allclose(image.affine, truth.affine, atol=1e-4)


@pytest.mark.e2e
def test_scores_against_truth(synthetic_run):
    scores = pd.read_csv(synthetic_run / "truth/scores.csv")
    per_scan = scores[scores["stage"].isin(["segment", "lesions", "burden"])]
    value = per_scan.set_index(["stage", "metric"])["value"].to_dict()
    # The default engine (the demo MONAI model) on 4 mm voxels: tolerances stated in README.
    assert value[("burden", "total_volume_median_abs_rel_error_ge5ml")] <= 0.20
    assert value[("segment", "lesion_dice_pooled")] >= 0.80
    for tissue in ["muscle", "sat", "vat"]:
        assert value[("segment", f"{tissue}_dice")] >= 0.95
    assert value[("lesions", "false_positives_per_scan")] <= 0.5
    assert value[("lesions", "tracking_accuracy")] >= 0.9


@pytest.mark.e2e
def test_no_identifying_dicom_fields_in_results(synthetic_run):
    for path in (synthetic_run / "qc").rglob("*.json"):
        text = path.read_text()
        assert "PatientName" not in text and "PatientBirthDate" not in text


def _mask_ml(path) -> float:
    mask = nib.load(path)
    return np.count_nonzero(np.asanyarray(mask.dataobj)) * abs(np.linalg.det(mask.affine[:3, :3])) / 1000


def _real_study_patients(clinical: pd.DataFrame, scans: pd.DataFrame, min_scans: int = 10) -> list[str]:
    """The first patient of each cohort, then the next ones in id order until `min_scans` scans."""
    chosen = sorted(clinical.sort_values("patient_id").groupby("cohort")["patient_id"].first())
    n_scans = scans["patient_id"].value_counts()
    for pid in sorted(set(clinical["patient_id"]) - set(chosen)):
        if n_scans.reindex(chosen).sum() >= min_scans:
            break
        chosen.append(pid)
    return chosen


@pytest.mark.e2e
def test_real_study_with_external_masks(synthetic_run, tmp_path):
    """The synthetic DICOM folders and truth lesion masks given as a real study's tables:
    with exact masks, the burden must equal the masks' volumes. Both cohorts, a few patients
    (every scan of them): the masks change every segmentation, so nothing of the shared run past
    its DICOM folders holds for this study, and running all 49 scans cost as much as the shared
    run itself (592 s)."""
    r = synthetic_run
    scans = pd.read_csv(r / "synthetic/scans.tsv", sep="\t", dtype={"scan_id": str})
    clinical = pd.read_csv(r / "synthetic/clinical.tsv", sep="\t", dtype={"patient_id": str})
    truth = truth_scan_dirs(r / "truth")
    mask_ml = {s: _mask_ml(truth[s] / "lesions.nii.gz") for s in scans["scan_id"]}
    patients = _real_study_patients(clinical, scans)
    scans = scans[scans["patient_id"].isin(patients)].copy()
    assert set(clinical.loc[clinical["patient_id"].isin(patients), "cohort"]) == set(clinical["cohort"])
    assert len(scans) >= 10 and (scans["scan_id"].map(mask_ml) > 0).any()
    scans["image"] = [str(r / "synthetic" / p) for p in scans["image"]]
    scans["mask"] = [str(truth[s] / "lesions.nii.gz") for s in scans["scan_id"]]
    scans.to_csv(tmp_path / "scans.tsv", sep="\t", index=False)
    clinical[clinical["patient_id"].isin(patients)].to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    config = {"study": {"name": "real", "clinical": str(tmp_path / "clinical.tsv"), "scans": str(tmp_path / "scans.tsv")},
              "lesions": {"min_volume_ml": 0.0}, "survival": {"bootstrap": 20}}
    proc = snakemake(tmp_path, config, "results/real/tables/burden.parquet")
    assert proc.returncode == 0, proc.stderr[-4000:]
    burden = pd.read_parquet(tmp_path / "results/real/tables/burden.parquet").set_index("scan_id")
    assert sorted(burden.index) == sorted(scans["scan_id"])
    for scan_id in scans["scan_id"]:
        assert burden.loc[scan_id, "total_volume_ml"] == pytest.approx(mask_ml[scan_id], rel=1e-6, abs=1e-9)


@pytest.mark.e2e  # a Snakemake dry run: parses the whole workflow
def test_bad_study_stops_before_any_job(tmp_path):
    clinical = "patient_id\tcohort\tpfs_days\tpfs_event\tos_days\tos_event\nP1\tlung\t10\t1\t20\tyes\n"
    (tmp_path / "clinical.tsv").write_text(clinical)
    (tmp_path / "scans.tsv").write_text("patient_id\tscan_id\tdays\timage\nP1\tS1\t0\tx\n")
    config = {"study": {"name": "bad", "clinical": str(tmp_path / "clinical.tsv"), "scans": str(tmp_path / "scans.tsv")}}
    proc = snakemake(tmp_path, config, "-n")
    assert proc.returncode != 0
    assert "clinical.tsv line 2 (patient_id=P1): os_event must be 0 or 1, got 'yes'" in proc.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.e2e
def test_bad_config_stops_with_schema_error(tmp_path):
    proc = snakemake(tmp_path, {"study": {"name": "x"}, "lesions": {"connectivity": 5}}, "-n")
    assert proc.returncode != 0
    assert "tumorburden: config key lesions.connectivity: 5 is not one of [6, 18, 26]" in proc.stderr
