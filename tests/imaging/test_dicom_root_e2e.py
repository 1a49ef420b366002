"""A study given as a PACS export (study.dicom_root), through Snakemake up to the features table."""

from __future__ import annotations

import math
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import generate_uid
from workflow_run import snakemake

SECRETS = ("HOSP-0", "HOSP-1", "HOSP-2", "Smith", "Johnny", "19491231")


def _export_scan(src_dir, dst_dir, hospital_id, *, drop_middle=False, localizer=False):
    files = sorted(p for p in src_dir.iterdir() if not p.name.startswith("."))  # not .snakemake_timestamp
    dst_dir.mkdir(parents=True)
    if drop_middle:
        files.pop(len(files) // 2)
    for k, path in enumerate(files):
        ds = pydicom.dcmread(path)
        ds.PatientID, ds.PatientName, ds.PatientBirthDate = hospital_id, "Smith^Johnny", "19491231"
        ds.save_as(dst_dir / f"{k:05d}")  # no extension, as many exports
    if localizer:
        ds = pydicom.dcmread(files[0])
        ds.PatientID, ds.PatientName = hospital_id, "Smith^Johnny"
        ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
        ds.ImageType, ds.SeriesDescription, ds.SeriesNumber = ["ORIGINAL", "PRIMARY", "LOCALIZER"], "Topogram", 1
        ds.save_as(dst_dir / "scout")


@pytest.mark.e2e
def test_dicom_root_study(synthetic_run, tmp_path):
    r = synthetic_run
    scans = pd.read_csv(r / "synthetic/scans.tsv", sep="\t", dtype={"scan_id": str, "patient_id": str})
    patients = pd.read_parquet(r / "truth/patients.parquet").set_index("patient_id")
    chosen = sorted(scans["patient_id"].unique())[:3]
    root = tmp_path / "export"
    expected, broken = [], None
    for n, pid in enumerate(chosen):
        hosp = f"HOSP-{n}"
        for i, row in enumerate(scans[scans["patient_id"] == pid].itertuples()):
            drop = n == 1 and i == 1
            _export_scan(r / "synthetic" / row.image, root / f"{hosp}_Smith" / f"study{i}", hosp,
                         drop_middle=drop, localizer=i == 0)
            scan_id = f"{pid}_d{math.floor(row.days)}"
            if n == 2:
                continue  # this patient is left out of the patient map
            if drop:
                broken = scan_id
            else:
                expected.append((scan_id, row.scan_id, math.floor(row.days)))
    clinical = pd.read_csv(r / "synthetic/clinical.tsv", sep="\t", dtype={"patient_id": str})
    clinical = clinical[clinical["patient_id"].isin(chosen[:2])]
    clinical["baseline_date"] = [patients.loc[p, "day0_date"] for p in clinical["patient_id"]]
    clinical.to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    pd.DataFrame({"dicom_patient_id": ["HOSP-0", "HOSP-1"], "patient_id": chosen[:2]}).to_csv(
        tmp_path / "patients.tsv", sep="\t", index=False)
    config = {"study": {"name": "pacs", "dicom_root": str(root), "clinical": str(tmp_path / "clinical.tsv"),
                        "patient_map": str(tmp_path / "patients.tsv")},
              # what is tested here is the route from the export to the tables; the default (MONAI) engine
              # on this route is run by tests/test_identifiers_e2e.py, and its start-up was most of this test
              "segmentation": {"engine": "classical"}}
    proc = snakemake(tmp_path, config, "results/pacs/tables/features.parquet")
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = tmp_path / "results/pacs"

    found = pd.read_csv(out / "manifest/scans.tsv", sep="\t")
    assert sorted(zip(found["scan_id"], found["days"].astype(int))) == sorted((s, d) for s, _, d in expected)
    manifest = pd.read_parquet(out / "manifest/series.parquet")
    assert (manifest.loc[manifest["description"] == "Topogram", "status"] == "rejected").all()
    for scan_id, synthetic_id, _ in expected:  # the same DICOM read by both routes
        a = nib.load(out / f"scans/{scan_id}/image.nii.gz")
        b = nib.load(r / f"scans/{synthetic_id}/image.nii.gz")
        np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
        np.testing.assert_allclose(a.affine, b.affine)
    burden = pd.read_parquet(out / "tables/burden.parquet")
    assert sorted(burden["scan_id"]) == sorted(s for s, _, _ in expected)
    excl = pd.read_csv(out / "qc/exclusions.tsv", sep="\t", keep_default_na=False)
    ingest = excl[excl["stage"] == "ingest"]
    assert ingest.set_index("scan_id").loc[broken, "reason"].startswith("no usable CT series: #")
    assert "missing_slices" in ingest.set_index("scan_id").loc[broken, "reason"]
    assert ingest["reason"].str.startswith("[unmapped patient 1]").sum() == 1
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("latin-1").lower()
            for secret in SECRETS:
                assert secret.lower() not in text, f"{secret} in {path}"
    shutil.rmtree(root)  # a few MB of copies
