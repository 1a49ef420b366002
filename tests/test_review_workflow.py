"""End to end, on a copy of the shared tiny run: a radiologist corrects two scans (a DICOM-SEG written by
highdicom, an RT Structure Set written with pydicom), and only those scans' review step and what
depends on it reruns; the reviewed scans' burden is the volume the radiologist drew. Then the same for
a study given as a folder export (study.dicom_root): one patient, two scans, a corrected SEG dropped
in the review folder."""

import math

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.sr.codedict import codes
from scipy import ndimage

from review_objects import LESION, block_without_node_lesion, pixel_outline, sorted_slices, write_rtstruct, write_seg
from tumorburden import labels as L
from workflow_run import TINY, copy_run, pending_jobs, snakemake

VOXEL_ML = 4.0 ** 3 / 1000  # the tiny trial's 4 mm voxels: one is above lesions.min_volume_ml
PER_SCAN = {"ingest", "segment", "measure", "synth_render", "segment_dicom"}
DOWNSTREAM = {"measure_review", "review_table", "track", "burden", "site_burden", "features", "survival", "survival_prediction",
              "survival_joint", "survival_dynamic", "burden_figures", "c_index_figure", "forest_figures", "km_figures",
              "prediction_figures", "td_auc_figures", "dynamic_figures", "score_against_truth", "all"}


def _series(results, scan):
    return sorted_slices(sorted((results / "synthetic" / "dicom" / scan.patient_id / scan.scan_id).glob("*.dcm")))


def write_reviews(results, folder):
    """For one scan a SEG that is the simulation's true lesions (the radiologist as good as the truth),
    for another an RTSTRUCT of one square lesion (5 x 5 pixels on 3 slices); returns scan_id -> (kind,
    lesion count, volume in mL) as drawn."""
    scans = pd.read_csv(results / "synthetic" / "scans.tsv", sep="\t")
    followups = scans[scans.groupby("patient_id").cumcount() == 1].sort_values("scan_id")
    seg_scan, rt_scan = followups.iloc[0], followups.iloc[1]
    folder.mkdir()
    datasets = _series(results, seg_scan)
    truth = nib.load(results / "truth" / "scans" / seg_scan.patient_id / seg_scan.scan_id / "labels.nii.gz")
    # the truth lies on the scan's grid, which is the series' own: voxel (i, j, k) = column i, row j, slice k
    (x0, y0, z0), (row_mm, col_mm) = datasets[0].ImagePositionPatient, datasets[0].PixelSpacing
    assert list(datasets[0].ImageOrientationPatient) == [1, 0, 0, 0, 1, 0]
    step = float(datasets[1].ImagePositionPatient[2]) - float(z0)
    np.testing.assert_allclose(truth.affine, [[-col_mm, 0, 0, -x0], [0, -row_mm, 0, -y0], [0, 0, step, z0], [0, 0, 0, 1]])
    labels = np.asarray(truth.dataobj).astype(np.uint8)
    frames = np.transpose(np.select([labels == L.LESION, labels == L.NODE_LESION], [1, 2], 0), (2, 1, 0))
    segments = {1: ("lesion", *LESION), 2: ("lymph node lesion", LESION[0], codes.SCT.LymphNode)}
    write_seg(datasets, frames, {n: segments[n] for n in np.unique(frames) if n}, folder / "corrected-seg.dcm")
    lesion = np.isin(labels, L.LESION_LABELS)
    n_true = ndimage.label(lesion, structure=np.ones((3, 3, 3)))[1]  # every component is >= min_volume_ml here
    datasets = _series(results, rt_scan)
    contours = [pixel_outline(datasets[k], 44, 48, 44, 48) for k in (60, 61, 62)]
    write_rtstruct(datasets[0], {"GTV 1": contours}, folder / "structures.dcm", description="radiologist review")
    return {seg_scan.scan_id: ("SEG", n_true, int(lesion.sum()) * VOXEL_ML),
            rt_scan.scan_id: ("RTSTRUCT", 1, 5 * 5 * 3 * VOXEL_ML)}


def review_round_trip(workdir):
    """The checks, on a finished tiny run's working directory (a copy: it is changed)."""
    results = workdir / "results" / "tiny"
    # the copy's files are older than this checkout's model weights: mark them up to date first
    proc = snakemake(workdir, TINY, "--touch")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert pending_jobs(workdir, TINY) == {}
    # a review of a study the trial does not have stops the run before any job, in one line naming it
    stray = workdir / "stray"
    stray.mkdir()
    elsewhere = _series(results, pd.read_csv(results / "synthetic" / "scans.tsv", sep="\t").iloc[0])[0]
    elsewhere.StudyInstanceUID = pydicom.uid.generate_uid()
    write_rtstruct(elsewhere, {"lesion": [pixel_outline(elsewhere, 40, 42, 40, 42)]}, stray / "stray.dcm")
    proc = snakemake(workdir, {**TINY, "review": {"dir": str(stray)}}, "-n")
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tumorburden:")]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-2000:]
    assert "stray.dcm: this RTSTRUCT belongs to no scan of the study" in lines[0]

    before = {p: p.stat().st_mtime_ns for p in (results / "scans").rglob("*") if p.is_file()}
    burden_before = pd.read_parquet(results / "tables" / "burden.parquet").set_index("scan_id")
    drawn = write_reviews(results, workdir / "review")
    config = {**TINY, "review": {"dir": str(workdir / "review")}}

    pending = pending_jobs(workdir, config)
    assert pending.get("measure_review") == 2 and pending.get("review_table") == 1
    assert set(pending) <= DOWNSTREAM and not set(pending) & PER_SCAN, pending

    targets = ["results/tiny/tables/burden.parquet", "results/tiny/tables/review.parquet"]
    proc = snakemake(workdir, config, *targets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    changed = sorted(str(p.relative_to(results)) for p, t in before.items() if p.stat().st_mtime_ns != t)
    assert changed == [], changed  # no scan's segmentation, measurement or registration was redone
    made = sorted(str(p.relative_to(results)) for p in (results / "scans").rglob("*") if p.is_file() and p not in before)
    assert made == sorted(f"scans/{s}/review/{f}" for s in drawn
                          for f in ("agreement.parquet", "lesions.parquet", "segmentation.nii.gz"))

    burden = pd.read_parquet(results / "tables" / "burden.parquet").set_index("scan_id")
    review = pd.read_parquet(results / "tables" / "review.parquet").set_index("scan_id")
    for scan_id, (kind, n, volume_ml) in drawn.items():
        assert burden.loc[scan_id, "total_volume_ml"] == pytest.approx(volume_ml, abs=1e-9)
        assert burden.loc[scan_id, "n_lesions"] == n
        row = review.loc[scan_id]
        assert row["reviewed"] and row["review_kind"] == kind and row["reviewed_n_lesions"] == n
        assert row["reviewed_volume_ml"] == pytest.approx(volume_ml, abs=1e-9)
        assert row["ai_volume_ml"] == pytest.approx(burden_before.loc[scan_id, "total_volume_ml"], abs=1e-9)
    others = [s for s in burden.index if s not in drawn]
    assert not review.loc[others, "reviewed"].any()
    # every other scan's burden is the model's, as before (its patient's tracks may differ, its volume not)
    pd.testing.assert_series_equal(burden.loc[others, "total_volume_ml"], burden_before.loc[others, "total_volume_ml"])
    assert pending_jobs(workdir, config, *targets) == {}


@pytest.mark.e2e
def test_a_review_reruns_only_its_scans_downstream(synthetic_run, tmp_path):
    workdir = tmp_path / "run"
    copy_run(synthetic_run.parents[1], workdir)
    review_round_trip(workdir)


def _export(src, dst, hospital_id):
    """A scan's synthetic DICOM as a hospital export has it: the hospital's patient ID in every file."""
    dst.mkdir(parents=True)
    for k, path in enumerate(sorted(p for p in src.iterdir() if p.suffix == ".dcm")):
        ds = pydicom.dcmread(path)
        ds.PatientID, ds.PatientName = hospital_id, "Smith^Johnny"
        ds.save_as(dst / f"{k:05d}")


@pytest.mark.e2e
def test_a_review_of_a_dicom_root_scan_reruns_only_its_downstream(synthetic_run, tmp_path):
    """One patient's first two scans as a folder export; a corrected SEG of the second one (a 3 x 3 x 3
    voxel lesion) dropped in the review folder: its burden becomes the drawn volume, the first scan's
    stays, and no scan's ingest, segmentation or measurement runs again."""
    r = synthetic_run
    scans = pd.read_csv(r / "synthetic/scans.tsv", sep="\t", dtype={"scan_id": str, "patient_id": str})
    pid = sorted(scans["patient_id"])[0]
    first_two = scans[scans["patient_id"] == pid].sort_values("days").iloc[:2]
    for i, row in enumerate(first_two.itertuples()):
        _export(r / "synthetic" / row.image, tmp_path / "export" / "HOSP-0" / f"study{i}", "HOSP-0")
    clinical = pd.read_csv(r / "synthetic/clinical.tsv", sep="\t", dtype={"patient_id": str})
    clinical = clinical[clinical["patient_id"] == pid].assign(
        baseline_date=pd.read_parquet(r / "truth/patients.parquet").set_index("patient_id").loc[pid, "day0_date"])
    clinical.to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    pd.DataFrame({"dicom_patient_id": ["HOSP-0"], "patient_id": [pid]}).to_csv(tmp_path / "patients.tsv", sep="\t",
                                                                               index=False)
    config = {"study": {"name": "rev", "dicom_root": str(tmp_path / "export"), "clinical": str(tmp_path / "clinical.tsv"),
                        "patient_map": str(tmp_path / "patients.tsv")},
              "segmentation": {"engine": "classical", "dicom_seg": False}}
    targets = ["results/rev/tables/burden.parquet", "results/rev/tables/review.parquet"]
    proc = snakemake(tmp_path, config, *targets)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = tmp_path / "results/rev"
    baseline_id, followup_id = (f"{pid}_d{math.floor(d)}" for d in first_two["days"])
    burden_before = pd.read_parquet(results / "tables/burden.parquet").set_index("scan_id")
    assert sorted(burden_before.index) == sorted([baseline_id, followup_id])
    before = {p: p.stat().st_mtime_ns for p in (results / "scans").rglob("*") if p.is_file()}

    folder = tmp_path / "review"
    folder.mkdir()
    datasets = sorted_slices(sorted((tmp_path / "export/HOSP-0/study1").iterdir()))
    first, k = block_without_node_lesion(results / f"scans/{followup_id}/segmentation.nii.gz", 3, len(datasets))
    frames = np.zeros((len(datasets), datasets[0].Rows, datasets[0].Columns), np.uint8)
    frames[k - 1:k + 2, first:first + 3, first:first + 3] = 1
    write_seg(datasets, frames, {1: ("lesion", *LESION)}, folder / "corrected.dcm")
    config["review"] = {"dir": str(folder)}
    pending = pending_jobs(tmp_path, config, *targets)
    assert pending.get("measure_review") == 1 and pending.get("review_table") == 1
    assert not set(pending) & (PER_SCAN | {"discover"}), pending
    proc = snakemake(tmp_path, config, *targets)
    assert proc.returncode == 0, proc.stderr[-4000:]

    changed = sorted(str(p.relative_to(results)) for p, t in before.items() if p.stat().st_mtime_ns != t)
    assert changed == [], changed  # neither scan's image, segmentation, registration or lesions was redone
    made = sorted(str(p.relative_to(results)) for p in (results / "scans").rglob("*") if p.is_file() and p not in before)
    assert made == [f"scans/{followup_id}/review/{f}" for f in ("agreement.parquet", "lesions.parquet",
                                                                 "segmentation.nii.gz")]
    burden = pd.read_parquet(results / "tables/burden.parquet").set_index("scan_id")
    voxel_ml = math.prod(float(v) for v in datasets[0].PixelSpacing) * abs(
        float(datasets[1].ImagePositionPatient[2]) - float(datasets[0].ImagePositionPatient[2])) / 1000
    assert burden.loc[followup_id, "total_volume_ml"] == pytest.approx(27 * voxel_ml, abs=1e-9)
    assert burden.loc[followup_id, "n_lesions"] == 1
    assert burden_before.loc[followup_id, "total_volume_ml"] != pytest.approx(27 * voxel_ml, abs=1e-9)
    assert burden.loc[baseline_id, "total_volume_ml"] == pytest.approx(burden_before.loc[baseline_id, "total_volume_ml"])
    review = pd.read_parquet(results / "tables/review.parquet").set_index("scan_id")
    assert review.loc[followup_id, "reviewed"] and review.loc[followup_id, "review_kind"] == "SEG"
    assert not review.loc[baseline_id, "reviewed"] and review["reviews_passed_over"].sum() == 0
    assert pending_jobs(tmp_path, config, *targets) == {}

    # the radiologist's first look at the scan, older, found beside it: passed over and listed; only the
    # review table is written again
    frames[:] = 0
    frames[k - 1:k + 1, first:first + 2, first:first + 2] = 1
    write_seg(datasets, frames, {1: ("lesion", *LESION)}, folder / "first-look.dcm", content_date="20200101",
              content_time="120000")
    assert pending_jobs(tmp_path, config, *targets) == {"review_table": 1}
    stamp = (results / "tables/burden.parquet").stat().st_mtime_ns
    proc = snakemake(tmp_path, config, *targets)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # the run says so, naming reviews as the table does (kind and hashed UID: a file name may carry a UID)
    notice = next(line for line in proc.stderr.splitlines() if line.startswith(f"tumorburden review: scan {followup_id}:"))
    assert "the newest of 2 reviews is taken, seg-" in notice and "passed over: seg-" in notice
    assert "first-look" not in proc.stderr
    review = pd.read_parquet(results / "tables/review.parquet").set_index("scan_id")
    assert review.loc[followup_id, "reviews_passed_over"] == 1
    assert "older than the SEG taken (content date/time" in review.loc[followup_id, "passed_over"]
    assert "first-look" not in review.loc[followup_id, "passed_over"]
    assert (results / "tables/burden.parquet").stat().st_mtime_ns == stamp
