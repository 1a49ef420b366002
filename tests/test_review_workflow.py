"""End to end, on a copy of the shared tiny run: a radiologist corrects two scans (a DICOM-SEG written by
highdicom, an RT Structure Set written with pydicom), and only those scans' review step and what
depends on it reruns; the reviewed scans' burden is the volume the radiologist drew."""


import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.sr.codedict import codes
from scipy import ndimage

from review_objects import LESION, pixel_outline, sorted_slices, write_rtstruct, write_seg
from tumorburden import labels as L
from workflow_run import TINY, copy_run, pending_jobs, snakemake

VOXEL_ML = 4.0 ** 3 / 1000  # the tiny trial's 4 mm voxels: one is above lesions.min_volume_ml
PER_SCAN = {"ingest", "segment", "measure", "synth_render", "segment_dicom"}
DOWNSTREAM = {"measure_review", "review_table", "track", "burden", "features", "survival", "survival_prediction",
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
