"""No identifier reaches results/ or Snakemake's log by any route, and the DICOM-SEG rule works on
every route with the default settings (issue 14).

One study of 2 patients x 2 scans, written as DICOM with recognisable identifiers, is run twice
through Snakemake up to every scan's segmentation, overlay and DICOM-SEG: once as scans.tsv with
DICOM folders (one folder also holds a localizer), once as a PACS export (dicom_root). Every
byte under results/ and .snakemake/log is searched for every identifier (gzip files
decompressed, Parquet tables read as text too)."""

from __future__ import annotations

import gzip
import io

import pandas as pd
import pydicom
import pytest
from workflow_run import snakemake

from imaging.dicomgen import write_series

PATIENTS = {"S-01": "MRN55501", "S-02": "MRN55502"}  # study patient_id -> hospital PatientID
NAME = "Fairweather^Jonquil"
IDENTITY = {"AccessionNumber": "ACC90411", "ReferringPhysicianName": "Quillfeather^Barnaby",
            "InstitutionName": "Sankt Ottilien Klinikum"}
BIRTH = "19390714"
SECRETS = ["Fairweather", "Jonquil", "MRN55501", "MRN55502", BIRTH, "ACC90411", "Quillfeather", "Barnaby",
           "Ottilien"]
N_SLICES = 8
SCAN_DAYS = (0, 60)
STUDY_DATES = {0: "20240105", 60: "20240305"}
# a visit's date leads back to the hospital's record too (scans are placed by days from baseline)
SECRETS += [*STUDY_DATES.values(), *(f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in STUDY_DATES.values())]


def _write_study(root):
    """{(patient_id, days): (folder, SOPInstanceUIDs of the diagnostic series, hospital UIDs)}."""
    out = {}
    for n, (pid, hospital_id) in enumerate(PATIENTS.items()):
        for days in SCAN_DAYS:
            folder = root / f"case{n}" / f"visit{days}"  # neutral names: Snakemake logs print the paths
            study_uid = pydicom.uid.generate_uid()[:60]  # dicomgen appends ".9" for the frame of reference
            common = dict(patient_id=hospital_id, patient_name=NAME, birth_date=BIRTH, study_uid=study_uid,
                          study_date=STUDY_DATES[days], rows=24, cols=20, pixel=(2.0, 2.0), step=2.5,
                          description=f"CT abdomen {NAME.split('^')[0]} portal venous")
            write_series(folder, n=N_SLICES, seed=n * 10 + days, overrides={k: IDENTITY for k in range(N_SLICES)},
                         **common)
            if days == 0:  # a localizer beside the diagnostic series: the SEG must not reference it
                write_series(folder, n=2, image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"], series_number=1,
                             names=["loc0.dcm", "loc1.dcm"], overrides={k: IDENTITY for k in range(2)},
                             **{**common, "description": "Topogram"})
            headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.glob("slice*.dcm"))]
            uids = {h.SOPInstanceUID for h in headers}
            hospital = uids | {headers[0].StudyInstanceUID, headers[0].SeriesInstanceUID,
                               headers[0].FrameOfReferenceUID}
            out[(pid, days)] = (folder, uids, hospital)
    return out


def _clinical(path, baseline_date=False):
    rows = [{"patient_id": pid, "cohort": "lung", "pfs_days": 100 + i, "pfs_event": 1, "os_days": 300 + i,
             "os_event": 0, **({"baseline_date": "2024-01-05"} if baseline_date else {})}
            for i, pid in enumerate(PATIENTS)]
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)


def _texts(path):
    """What a reader of the file sees: its bytes, decompressed when gzip, the table when Parquet."""
    data = path.read_bytes()
    yield data.decode("latin-1")
    if data[:2] == b"\x1f\x8b":
        yield gzip.decompress(data).decode("latin-1")
    if path.suffix == ".parquet":
        yield pd.read_parquet(io.BytesIO(data)).to_csv()


def _leaks(workdir, name, study):
    """(identifier, file) for every identifier found; the hospital's instance, series and study UIDs
    count too (a dicom_root study's manifest with the series UIDs is in the private area)."""
    uids = {u for _, _, hospital in study.values() for u in hospital}
    found = []
    for folder in (workdir / "results" / name, workdir / ".snakemake" / "log"):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            for text in _texts(path):
                found += [(secret, str(path.relative_to(workdir))) for secret in SECRETS
                          if secret.lower() in text.lower()]
                found += [(uid, str(path.relative_to(workdir))) for uid in uids if uid in text]
    return sorted(set(found))


def _check_dicom_seg(workdir, name, scan_id, pid, sources):
    """The results/ SEG is de-identified; the private copy references exactly the series read."""
    folder, uids, hospital = sources
    public = pydicom.dcmread(workdir / "results" / name / "dicom_seg" / pid / f"{scan_id}.dcm")
    assert public.Modality == "SEG" and public.PatientID == pid and str(public.PatientName) == pid
    assert public.PatientIdentityRemoved == "YES"
    referenced = {i.ReferencedSOPInstanceUID for s in public.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert len(referenced) == N_SLICES and not referenced & hospital
    raw = (workdir / "results" / name / "dicom_seg" / pid / f"{scan_id}.dcm").read_bytes()
    assert not [u for u in hospital if u.encode() in raw]
    pacs = pydicom.dcmread(workdir / "private" / name / "dicom_seg" / pid / f"{scan_id}.dcm")
    referenced = {i.ReferencedSOPInstanceUID for s in pacs.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence}
    assert referenced == uids
    assert pacs.PatientID == PATIENTS[pid]


@pytest.mark.e2e
def test_no_identifier_in_results_and_dicom_seg_on_both_routes_with_defaults(tmp_path):
    study = _write_study(tmp_path / "export")

    # route 1: scans.tsv naming DICOM folders, every setting at its default (DICOM-SEG on)
    work = tmp_path / "tsv"
    work.mkdir()
    _clinical(work / "clinical.tsv")
    rows = [{"patient_id": pid, "scan_id": f"{pid}_v{days}", "days": days, "image": str(folder)}
            for (pid, days), (folder, _, _) in study.items()]
    pd.DataFrame(rows).to_csv(work / "scans.tsv", sep="\t", index=False)
    config = {"study": {"name": "tsv", "clinical": str(work / "clinical.tsv"), "scans": str(work / "scans.tsv")}}
    proc = snakemake(work, config, "segment_outputs")
    assert proc.returncode == 0, proc.stderr[-4000:]
    for (pid, days), sources in study.items():
        _check_dicom_seg(work, "tsv", f"{pid}_v{days}", pid, sources)
        qc = (work / "results/tsv/qc/ingest" / f"{pid}_v{days}.json").read_text()
        assert "CT abdomen [name] portal venous" in qc
    assert _leaks(work, "tsv", study) == []

    # route 2: the same files as a PACS export (dicom_root), every setting at its default
    work = tmp_path / "pacs"
    work.mkdir()
    _clinical(work / "clinical.tsv", baseline_date=True)
    pd.DataFrame({"dicom_patient_id": list(PATIENTS.values()), "patient_id": list(PATIENTS)}).to_csv(
        work / "patients.tsv", sep="\t", index=False)
    config = {"study": {"name": "pacs", "dicom_root": str(tmp_path / "export"), "clinical": str(work / "clinical.tsv"),
                        "patient_map": str(work / "patients.tsv")}}
    proc = snakemake(work, config, "segment_outputs")
    assert proc.returncode == 0, proc.stderr[-4000:]
    for (pid, days), sources in study.items():
        _check_dicom_seg(work, "pacs", f"{pid}_d{days}", pid, sources)
    assert _leaks(work, "pacs", study) == []
