"""A small synthetic trial uploaded to a real Orthanc, run from the server, pushed back; the SEG and
SR read back from the server with highdicom and compared with lesions.parquet."""

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
from workflow_run import TINY, snakemake

from tumorburden.cli import main
from tumorburden.imaging.volume import load_nifti
from tumorburden.pacs.client import connect
from tumorburden.segment.dicomseg import read_dicom_seg_labels
from tumorburden.segment.engine import labels_to_grid

SECRETS = ("HOSP-0", "HOSP-1", "Smith", "Johnny", "19491231")


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
