"""The SR TID 1500 per scan: its content read back with highdicom, tracking UIDs stable across
timepoints, both copies valid for dciodvfy, the results/ copy free of the hospital's identity."""

from __future__ import annotations

import os
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest

from tumorburden import labels as L
from tumorburden.imaging.volume import Volume, save_nifti
from tumorburden.pacs.report import write_reports
from tumorburden.segment.dicomseg import write_dicom_seg
from tumorburden.synth.dicom import SeriesInfo, hu_to_stored, write_ct_series

SHAPE, PIXEL, SLICE, ORIGIN_LPS = (40, 40, 24), 5.0, 6.0, (-97.5, -97.5, -60.0)
IMAGING = {"thickness_mm": [0.5, 8.0]}


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A CT series with the hospital's identity, its label map, and both DICOM-SEG copies."""
    folder = tmp_path_factory.mktemp("scan")
    hu = np.full(SHAPE, -1000.0, np.float32)
    hu[5:35, 8:32, 2:22] = 40.0
    info = SeriesInfo(patient_id="HOSP-77", patient_sex="F", study_date="20200101", study_time="090000", study_id="1",
                      series_description="test", body_part="CHEST", uid_entropy=["report-test"])
    write_ct_series(hu_to_stored(hu), ORIGIN_LPS, PIXEL, SLICE, info, folder / "dicom")
    for path in (folder / "dicom").glob("*.dcm"):  # a hospital's header: name and birth date
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientBirthDate = "Smith^Johnny", "19491231"
        del ds.PatientIdentityRemoved
        ds.save_as(path)
    affine = np.array([[-PIXEL, 0, 0, -ORIGIN_LPS[0]], [0, -PIXEL, 0, -ORIGIN_LPS[1]],
                       [0, 0, SLICE, ORIGIN_LPS[2]], [0, 0, 0, 1.0]])
    labels = np.zeros(SHAPE, np.uint8)
    labels[5:35, 8:32, 2:22] = L.VAT
    labels[10:16, 12:20, 5:9] = L.LESION
    labels[25:28, 20:23, 14:16] = L.NODE_LESION
    save_nifti(Volume(labels, affine), folder / "seg.nii.gz", dtype=np.uint8)
    write_dicom_seg(folder / "seg.nii.gz", folder / "dicom", folder / "public_seg.dcm", patient_id="P01",
                    namespace="trial/P01/P01_d0", pacs_out=folder / "private_seg.dcm", settings=IMAGING)
    return folder


LESIONS = pd.DataFrame({
    "patient_id": ["P01"] * 3, "scan_id": ["P01_d0"] * 3, "days": [0.0] * 3, "lesion": [1, 2, 3],
    "track_id": [4, 7, 9], "status": ["baseline", "baseline", "disappeared"], "volume_ml": [2.88, 0.11, 0.0],
    "longest_diameter_mm": [39.05, 15.0, np.nan], "short_axis_mm": [25.0, 10.0, np.nan],
    "centroid_x_mm": [1.0, 2.0, 3.0], "centroid_y_mm": [1.0, 2.0, 3.0], "centroid_z_mm": [1.0, 2.0, 3.0],
    "mean_hu": [40.0, 38.5, np.nan], "organ": ["liver", "node", "lung"]})
BURDEN = pd.Series({"total_volume_ml": 2.99, "n_lesions": 2, "sld_mm": 49.0, "muscle_ml": 10.0, "sat_ml": 20.0,
                    "vat_ml": 1500.5})


def _write(scan, tmp_path, scan_id="P01_d0", lesions=LESIONS):
    private, public = tmp_path / f"private_{scan_id}.dcm", tmp_path / f"public_{scan_id}.dcm"
    write_reports(scan / "private_seg.dcm", scan / "public_seg.dcm", lesions, BURDEN, patient_id="P01", scan_id=scan_id,
                  namespace=f"trial/P01/{scan_id}", private_out=private, public_out=public)
    return private, public


def _groups(path):
    sr = hd.sr.srread(str(path))
    return sr, sr.content.get_volumetric_roi_measurement_groups(), sr.content.get_image_measurement_groups()


def test_report_holds_every_lesion_measurement_and_the_burden(scan, tmp_path):
    private, public = _write(scan, tmp_path)
    for path, seg in ((private, scan / "private_seg.dcm"), (public, scan / "public_seg.dcm")):
        sr, rois, groups = _groups(path)
        assert len(rois) == 2  # the disappeared lesion (volume 0) has no ROI
        seg_uid = pydicom.dcmread(seg).SOPInstanceUID
        for roi, row in zip(rois, LESIONS.iloc[:2].itertuples()):
            assert roi.tracking_identifier == f"lesion track {row.track_id}"
            ref = roi.referenced_segment
            assert ref.referenced_sop_instance_uid == seg_uid
            assert ref.referenced_segment_numbers == [5 if row.organ == "node" else 1]
            values = {m.name.meaning: m.value for m in roi.get_measurements()}
            assert values == pytest.approx({"Volume": row.volume_ml, "Long axis": row.longest_diameter_mm,
                                            "Short axis": row.short_axis_mm, "Mean Attenuation Coefficient": row.mean_hu})
            assert [s.value.value for s in roi.finding_sites] == [{"liver": "10200004", "node": "59441001"}[row.organ]]
        named = {g.tracking_identifier: {m.name.meaning: m.value for m in g.get_measurements()} for g in groups}
        assert named["total tumour burden"] == pytest.approx(
            {"Total tumour volume": 2.99, "Number of lesions": 2, "Sum of longest diameters (RECIST 1.1)": 49.0})
        assert named["visceral fat"] == pytest.approx({"Volume": 1500.5})
        assert named["skeletal muscle"] == pytest.approx({"Volume": 10.0})


def test_tracking_uid_follows_the_track_and_reruns_are_byte_identical(scan, tmp_path):
    first, first_public = _write(scan, tmp_path)
    again = tmp_path / "again"
    again.mkdir()
    second, second_public = _write(scan, again)
    assert first.read_bytes() == second.read_bytes() and first_public.read_bytes() == second_public.read_bytes()
    later = LESIONS.assign(scan_id="P01_d60", track_id=[9, 4, 7])  # track 4 is now the second lesion
    followup, followup_public = _write(scan, tmp_path, "P01_d60", later)
    for a, b in ((first, followup), (first_public, followup_public)):
        uid_a = {r.tracking_identifier: r.tracking_uid for r in _groups(a)[1]}
        uid_b = {r.tracking_identifier: r.tracking_uid for r in _groups(b)[1]}
        assert uid_a["lesion track 4"] == uid_b["lesion track 4"]
        assert uid_a["lesion track 4"] != uid_a["lesion track 7"]
        assert pydicom.dcmread(a).SOPInstanceUID != pydicom.dcmread(b).SOPInstanceUID
    # the results/ copy shares no UID with the hospital's copy, tracking UIDs included
    private_uids = {r.tracking_uid for r in _groups(first)[1]} | {pydicom.dcmread(first).SOPInstanceUID}
    public_uids = {r.tracking_uid for r in _groups(first_public)[1]} | {pydicom.dcmread(first_public).SOPInstanceUID}
    assert not private_uids & public_uids


def test_identity_only_in_the_private_copy(scan, tmp_path):
    private, public = _write(scan, tmp_path)
    ct = pydicom.dcmread(next((scan / "dicom").glob("*.dcm")))
    hospital = ["HOSP-77", "Smith", "Johnny", "19491231", ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID]
    ds = pydicom.dcmread(private)
    assert ds.PatientID == "HOSP-77" and ds.StudyInstanceUID == ct.StudyInstanceUID and str(ds.PatientName) == "Smith^Johnny"
    text = public.read_bytes().decode("latin-1")
    assert not [h for h in hospital if h in text]
    ds = pydicom.dcmread(public)
    assert ds.PatientID == "P01" and ds.PatientIdentityRemoved == "YES"


def _dciodvfy_errors(path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        if os.environ.get("TUMORBURDEN_REQUIRE_ORTHANC") == "1":  # CI installs dicom3tools with Orthanc
            pytest.fail("TUMORBURDEN_REQUIRE_ORTHANC=1 but dciodvfy is not installed (apt-get install dicom3tools)")
        pytest.skip("dciodvfy not installed (apt-get install dicom3tools)")
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def test_seg_and_sr_pass_dciodvfy(scan, tmp_path):
    private, public = _write(scan, tmp_path)
    for path in (private, public, scan / "private_seg.dcm", scan / "public_seg.dcm"):
        assert _dciodvfy_errors(path) == [], path.name


# SNOMED CT concept IDs of the sites an organ model gives (SNOMED CT browser), written out here
# rather than taken from the report's table
ORGAN_SITE_CODES = {"spleen": "78961009", "kidney": "64033007", "adrenal_gland": "23451007",
                    "pancreas": "15776009", "brain": "12738006", "bone": "272673000"}


def test_every_finding_site_of_an_organ_model_gets_its_snomed_code(scan, tmp_path):
    from tumorburden import labels as L

    assert set(L.SITES) - {"other"} <= set(ORGAN_SITE_CODES) | {"lung", "liver", "node", "soft_tissue"}
    n = len(ORGAN_SITE_CODES)
    lesions = pd.DataFrame({
        "patient_id": ["P01"] * n, "scan_id": ["P01_d0"] * n, "days": [0.0] * n, "lesion": list(range(1, n + 1)),
        "track_id": list(range(1, n + 1)), "status": ["baseline"] * n, "volume_ml": [1.0] * n,
        "longest_diameter_mm": [12.0] * n, "short_axis_mm": [8.0] * n, "centroid_x_mm": [1.0] * n,
        "centroid_y_mm": [1.0] * n, "centroid_z_mm": [1.0] * n, "mean_hu": [40.0] * n,
        "organ": list(ORGAN_SITE_CODES)})
    private, _ = _write(scan, tmp_path, lesions=lesions)
    _, rois, _ = _groups(private)
    assert [[s.value.value for s in roi.finding_sites] for roi in rois] == [[c] for c in ORGAN_SITE_CODES.values()]
