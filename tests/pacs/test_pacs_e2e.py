"""A small synthetic trial uploaded to a real Orthanc, run from the server, pushed back; the SEG and
SR read back from the server with highdicom and compared with lesions.parquet. Then the review round
trip on the same run: a radiologist's corrected SEG and an RT Structure Set stored on the server,
`snakemake fetch_reviews`, and only the reviewed scans' downstream reruns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest
from review_objects import LESION, block_without_node_lesion, pixel_outline, sorted_slices, write_rtstruct, write_seg
from workflow_run import TINY, pending_jobs, snakemake

from tumorburden.cli import main
from tumorburden.imaging.volume import load_nifti
from tumorburden.pacs.client import connect
from tumorburden.segment.dicomseg import read_dicom_seg_labels
from tumorburden.segment.engine import labels_to_grid

SECRETS = ("HOSP-0", "HOSP-1", "Smith", "Johnny", "19491231")
# jobs that read a scan's pixels or the server's series: a review must not rerun any of them
PER_SCAN = {"discover", "ingest", "segment", "measure", "segment_dicom", "push_patient"}


def _hospital_export(tmp_path: Path) -> tuple[Path, list[str]]:
    """Two synthetic patients rendered as DICOM, given a hospital's identity; clinical + patient map."""
    settings = json.dumps(TINY["synthetic"])
    assert main(["synth-trial", f"--settings={settings}", f"--out-dir={tmp_path / 'trial'}"]) == 0
    scans = pd.read_csv(tmp_path / "trial/synthetic/scans.tsv", sep="\t", dtype=str)
    # the two patients with the fewest scans (at least 2), their first two scans: a baseline and a follow-up
    counts = scans.groupby("patient_id").size()
    chosen = sorted(counts[counts >= 2].index, key=lambda p: (counts[p], p))[:2]
    by_day = scans.assign(days=scans["days"].astype(float)).sort_values("days")
    kept = set(by_day.groupby("patient_id").head(2)["scan_id"])
    export = tmp_path / "export"
    for n, pid in enumerate(chosen):
        rendered = tmp_path / "render" / pid
        assert main(["synth-render", f"--settings={settings}", f"--patient-id={pid}", f"--dicom-dir={rendered}",
                     f"--truth-dir={tmp_path / 'truth' / pid}"]) == 0
        for path in sorted(p for p in rendered.rglob("*.dcm") if p.relative_to(rendered).parts[0] in kept):
            ds = pydicom.dcmread(path)
            ds.PatientID, ds.PatientName, ds.PatientBirthDate = f"HOSP-{n}", "Smith^Johnny", "19491231"
            del ds.PatientIdentityRemoved
            out = export / path.relative_to(rendered)
            out.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(out)
    patients = pd.read_parquet(tmp_path / "trial/truth/patients.parquet").set_index("patient_id")
    clinical = pd.read_csv(tmp_path / "trial/synthetic/clinical.tsv", sep="\t", dtype={"patient_id": str})
    clinical = clinical[clinical["patient_id"].isin(chosen)]  # (their outcomes as simulated)
    clinical["baseline_date"] = [patients.loc[p, "day0_date"] for p in clinical["patient_id"]]
    clinical.to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    pd.DataFrame({"dicom_patient_id": ["HOSP-0", "HOSP-1"], "patient_id": chosen}).to_csv(
        tmp_path / "patients.tsv", sep="\t", index=False)
    return export, chosen


def _server_objects(pacs, hospital_ids, modality):
    out = []
    for hospital_id in hospital_ids:
        for study in pacs.studies_of(hospital_id):
            study_uid = study["0020000D"]["Value"][0]
            for series in pacs.series_of(study_uid, modality=modality):
                out += list(pacs.iter_series(study_uid, series["0020000E"]["Value"][0]))
    return out


def _dciodvfy_errors(ds, tmp_path) -> list[str]:
    path = tmp_path / "check.dcm"
    ds.save_as(path, enforce_file_format=True)
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.e2e
def test_pull_run_push_and_read_back(orthanc, tmp_path):
    if shutil.which("dciodvfy") is None:
        if os.environ.get("TUMORBURDEN_REQUIRE_ORTHANC") == "1":  # CI installs dicom3tools with Orthanc
            pytest.fail("TUMORBURDEN_REQUIRE_ORTHANC=1 but dciodvfy is not installed (apt-get install dicom3tools)")
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    export, chosen = _hospital_export(tmp_path)
    orthanc.upload(sorted(export.rglob("*.dcm")))
    config = {**TINY, "study": {"name": "pacs", "dicomweb": {"url": orthanc.url, "workers": 2},
                                "clinical": str(tmp_path / "clinical.tsv"), "patient_map": str(tmp_path / "patients.tsv")},
              "segmentation": {"dicom_seg": True, "engine": "classical"}}  # the round trip, not the model, is tested here
    config.pop("synthetic")
    proc = snakemake(tmp_path, config, "push_results")
    assert proc.returncode == 0, proc.stderr[-4000:]
    out, private = tmp_path / "results/pacs", tmp_path / "private/pacs"
    lesions = pd.read_parquet(out / "tables/lesions.parquet")
    scans = pd.read_csv(out / "manifest/scans.tsv", sep="\t")
    assert sorted(set(scans["patient_id"])) == chosen
    scan_of_series = {json.loads((private / f"series/{s}.json").read_text())["series_uid"]: s for s in scans["scan_id"]}

    pacs = connect({"url": orthanc.url})
    reports = _server_objects(pacs, ["HOSP-0", "HOSP-1"], "SR")
    segs = {ds.SOPInstanceUID: ds for ds in _server_objects(pacs, ["HOSP-0", "HOSP-1"], "SEG")}
    assert len(reports) == len(segs) == len(scans)
    seen, compared = set(), 0
    for ds in reports:
        assert ds.PatientID in ("HOSP-0", "HOSP-1") and str(ds.PatientName) == "Smith^Johnny"
        assert _dciodvfy_errors(ds, tmp_path) == []
        sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
        ct_series = {s.SeriesInstanceUID for e in ds.CurrentRequestedProcedureEvidenceSequence
                     for s in e.ReferencedSeriesSequence}
        (scan_id,) = [scan_of_series[u] for u in ct_series if u in scan_of_series]
        seen.add(scan_id)
        rois = sr.content.get_volumetric_roi_measurement_groups()
        got = sorted((int(r.tracking_identifier.split()[-1]),) + tuple(
            float(m.value) for m in r.get_measurements()) for r in rois)
        mine = lesions[(lesions["scan_id"] == scan_id) & (lesions["volume_ml"] > 0)]
        want = sorted((int(r.track_id), r.volume_ml, r.longest_diameter_mm, r.short_axis_mm, r.mean_hu)
                      for r in mine.itertuples())
        assert len(got) == len(want), scan_id
        compared += len(got)
        for g, w in zip(got, want):  # SR numbers are decimal strings of up to 16 characters
            assert g == pytest.approx(w, rel=1e-9), scan_id
        for r in rois:  # every ROI points at a segment of the SEG the server holds for this scan
            seg = segs[r.referenced_segment.referenced_sop_instance_uid]
            assert r.referenced_segment.referenced_segment_numbers[0] in {s.SegmentNumber for s in seg.SegmentSequence}
    assert seen == set(scans["scan_id"]) and compared > 0
    for seg in segs.values():
        assert _dciodvfy_errors(seg, tmp_path) == []
        (series_uid,) = {s.SeriesInstanceUID for s in seg.ReferencedSeriesSequence}
        scan_id = scan_of_series[series_uid]
        seg.save_as(tmp_path / "seg.dcm", enforce_file_format=True)
        array, affine = read_dicom_seg_labels(tmp_path / "seg.dcm")
        ours = load_nifti(out / f"scans/{scan_id}/segmentation.nii.gz", dtype=np.uint8)
        np.testing.assert_array_equal(labels_to_grid(array.astype(np.uint8), affine, ours.array.shape, ours.affine),
                                      ours.array)

    # results/ keeps the pseudonymised SR; nothing there or in the logs names the hospital's patient
    for pid in chosen:
        for path in (out / "dicom_sr" / pid).glob("*.dcm"):
            ds = pydicom.dcmread(path)
            assert ds.PatientID == pid and ds.PatientIdentityRemoved == "YES"
    hospital_uids = {ds.StudyInstanceUID for ds in reports} | set(scan_of_series)
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("latin-1")
            assert not [s for s in SECRETS + tuple(hospital_uids) if s in text], path

    # a second push replaces: the same bytes, one SR per scan on the server
    before = {p: p.read_bytes() for p in (private / "dicom_sr").rglob("*.dcm")}
    proc = snakemake(tmp_path, config, "push_results", "--forcerun", "push_patient")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert {p: p.read_bytes() for p in (private / "dicom_sr").rglob("*.dcm")} == before
    assert len(_server_objects(pacs, ["HOSP-0", "HOSP-1"], "SR")) == len(scans)

    hospital_uids |= _review_round_trip(tmp_path, config, orthanc, scans)
    for path in out.rglob("*"):  # the review's objects carry the hospital's identity too: none of it in results/
        if path.is_file():
            text = path.read_bytes().decode("latin-1")
            assert not [s for s in SECRETS + tuple(hospital_uids) if s in text], path


def _review_round_trip(workdir: Path, config: dict, orthanc, scans: pd.DataFrame) -> set[str]:
    """On the finished run: a corrected SEG (one cube lesion in place of the model's) for a scan of the first
    patient and an RT Structure Set (one square on three slices) for a scan of the second, stored on the
    server; `snakemake fetch_reviews` takes them into the private review folder; then only those scans'
    measure_review and the study steps after them rerun, and their burden is what the radiologist drew.
    Returns the UIDs of the review objects (the hospital's)."""
    out, private = workdir / "results/pacs", workdir / "private/pacs"
    by_patient = scans.sort_values(["patient_id", "days"]).groupby("patient_id")["scan_id"]
    seg_scan, rt_scan = by_patient.last().iloc[0], by_patient.first().iloc[1]
    slices = {s: sorted_slices([workdir / f for f in json.loads((private / f"series/{s}.json").read_text())["files"]])
              for s in (seg_scan, rt_scan)}
    voxel_ml = {}
    for s, datasets in slices.items():  # from the headers, not from what the pipeline wrote
        row_mm, col_mm = (float(v) for v in datasets[0].PixelSpacing)
        step = abs(float(datasets[1].ImagePositionPatient[2]) - float(datasets[0].ImagePositionPatient[2]))
        voxel_ml[s] = row_mm * col_mm * step / 1000
    objects = workdir / "review-objects"
    objects.mkdir()
    datasets = slices[seg_scan]
    first, k = block_without_node_lesion(out / f"scans/{seg_scan}/segmentation.nii.gz", 4, len(datasets))
    frames = np.zeros((len(datasets), datasets[0].Rows, datasets[0].Columns), np.uint8)
    frames[k - 1:k + 2, first:first + 4, first:first + 4] = 1  # 3 slices x 4 x 4 pixels
    write_seg(datasets, frames, {1: ("Lesion 1", *LESION)}, objects / "corrected.dcm", description="corrected by Dr X")
    datasets = slices[rt_scan]
    first, k = block_without_node_lesion(out / f"scans/{rt_scan}/segmentation.nii.gz", 5, len(datasets))
    contours = [pixel_outline(datasets[j], first, first + 4, first, first + 4) for j in (k - 1, k, k + 1)]  # 3 x 5 x 5
    write_rtstruct(datasets[0], {"GTV 1": contours}, objects / "structures.dcm")
    drawn = {seg_scan: ("SEG", 3 * 4 * 4 * voxel_ml[seg_scan]), rt_scan: ("RTSTRUCT", 5 * 5 * 3 * voxel_ml[rt_scan])}
    assert orthanc.upload(sorted(objects.glob("*.dcm"))) == 2
    burden_before = pd.read_parquet(out / "tables/burden.parquet").set_index("scan_id")
    before = {p: p.stat().st_mtime_ns for p in (out / "scans").rglob("*") if p.is_file()}

    proc = snakemake(workdir, config, "fetch_reviews")
    assert proc.returncode == 0, proc.stderr[-4000:]
    fetched = sorted((private / "reviews").iterdir())  # review.dir unset: the dicomweb study's default
    assert sorted(pydicom.dcmread(p).Modality for p in fetched) == ["RTSTRUCT", "SEG"]
    log = (out / "logs/fetch_reviews.log").read_text()
    assert f"scan {seg_scan}: SEG review" in log and f"scan {rt_scan}: RTSTRUCT review" in log, log

    # a plain run now: no scan's ingest, segmentation or measurement, the two reviews measured once each
    pending = pending_jobs(workdir, config)
    assert pending.get("measure_review") == 2 and not set(pending) & PER_SCAN, pending
    targets = ["results/pacs/tables/burden.parquet", "results/pacs/tables/review.parquet"]
    assert pending_jobs(workdir, config, *targets) == {"measure_review": 2, "review_table": 1, "track": 1, "burden": 1}
    proc = snakemake(workdir, config, *targets)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert [p for p, t in before.items() if p.stat().st_mtime_ns != t] == []
    burden = pd.read_parquet(out / "tables/burden.parquet").set_index("scan_id")
    review = pd.read_parquet(out / "tables/review.parquet").set_index("scan_id")
    for scan_id, (kind, volume_ml) in drawn.items():
        assert burden.loc[scan_id, "total_volume_ml"] == pytest.approx(volume_ml, rel=1e-9)
        assert burden.loc[scan_id, "n_lesions"] == 1
        assert review.loc[scan_id, "reviewed"] and review.loc[scan_id, "review_kind"] == kind
    others = [s for s in burden.index if s not in drawn]
    assert others and not review.loc[others, "reviewed"].any()
    pd.testing.assert_series_equal(burden.loc[others, "total_volume_ml"], burden_before.loc[others, "total_volume_ml"])
    return {uid for p in objects.glob("*.dcm") for uid in (pydicom.dcmread(p).SOPInstanceUID,
                                                           pydicom.dcmread(p).SeriesInstanceUID)}
