"""The SR TID 1500 per scan: its content read back with highdicom, tracking UIDs stable across
timepoints, both copies valid for dciodvfy, the results/ copy free of the hospital's identity."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset

from tumorburden import labels as L
from tumorburden.imaging.deidentify import PROFILE_TABLE
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


def _hospital_value(i: int, vr: str):
    """A value of the VR that is found again in the bytes of a file: LEAKnnnn where text goes."""
    token = f"LEAK{i:04d}"
    return {"PN": token + "^Jonquil", "DA": f"{1910 + i // 336:04d}{1 + i // 28 % 12:02d}{1 + i % 28:02d}",
            "TM": f"111111.987{i:03d}", "DT": f"19100101111111.987{i:03d}", "AS": f"{i % 1000:03d}Y",
            "DS": f"7777.{i:04d}", "IS": f"7777{i:04d}", "UI": f"1.2.777.{i}", "OB": token.encode(),
            "UN": token.encode()}.get(vr, token)


def test_no_attribute_of_the_profile_reaches_the_results_copy(tmp_path):
    """The pseudonymised SR is built from the de-identified SEG, not put through imaging.deidentify
    itself: a CT with a value in every attribute of the PS3.15 table dicom-anonymizer knows (every
    level-0 tag whose VR holds text, a date or a number as text; a sequence with an item holding
    text; a private tag) gets none of them into the SR under results/, while the hospital's SR
    carries those highdicom copies (the patient, study and trial modules)."""
    table = dicom_anonymization_database_selector(PROFILE_TABLE)
    uid_rules = {tuple(t) for t in table["U_TAGS"] + table["X_Z_U_STAR_TAGS"]}  # the UIDs: checked below
    planted = {}
    for i, rule in enumerate(sorted(tuple(t) for t in table["ALL_TAGS"])):
        if len(rule) != 2 or rule in uid_rules or rule[0] in (0x0000, 0x0002):  # repeating groups; command, meta
            continue
        tag = rule[0] << 16 | rule[1]
        try:
            vr = dictionary_VR(tag)
        except KeyError:  # retired from the dictionary pydicom ships
            continue
        if vr not in ("US", "SS", "UL", "FL", "FD"):  # binary numbers: not found again in the bytes
            planted[tag] = (vr, _hospital_value(i, vr))
    assert len(planted) > 500
    folder = tmp_path / "hospital"
    hu = np.full(SHAPE, -1000.0, np.float32)
    hu[5:35, 8:32, 2:22] = 40.0
    info = SeriesInfo(patient_id="HOSP-77", patient_sex="F", study_date="20200101", study_time="090000", study_id="1",
                      series_description="test", body_part="CHEST", uid_entropy=["report-profile-test"])
    files = write_ct_series(hu_to_stored(hu), ORIGIN_LPS, PIXEL, SLICE, info, folder / "dicom")
    for path in files:
        ds = pydicom.dcmread(path)
        del ds.PatientIdentityRemoved
        for tag, (vr, value) in planted.items():
            if vr == "SQ":
                item = Dataset()
                item.CodeMeaning = f"LEAK{tag:08X}"
                ds.add_new(tag, vr, [item])
            elif tag == 0x00100040:
                ds.PatientSex = "F"  # highdicom accepts M, F or O only
            else:
                ds.add_new(tag, vr, value)
        ds.private_block(0x0029, "HOSPITAL PACS", create=True).add_new(0x01, "LO", "LEAKPRIVATE ward 4")
        ds.save_as(path)
    labels = np.zeros(SHAPE, np.uint8)
    labels[5:35, 8:32, 2:22] = L.VAT
    labels[10:16, 12:20, 5:9] = L.LESION
    affine = np.array([[-PIXEL, 0, 0, -ORIGIN_LPS[0]], [0, -PIXEL, 0, -ORIGIN_LPS[1]],
                       [0, 0, SLICE, ORIGIN_LPS[2]], [0, 0, 0, 1.0]])
    save_nifti(Volume(labels, affine), folder / "seg.nii.gz", dtype=np.uint8)
    write_dicom_seg(folder / "seg.nii.gz", folder / "dicom", folder / "public_seg.dcm", patient_id="P01",
                    namespace="trial/P01/P01_d0", pacs_out=folder / "private_seg.dcm", settings=IMAGING)
    private, public = _write(folder, tmp_path)

    def found(path) -> set[bytes]:
        data = path.read_bytes()
        values = {v if isinstance(v, bytes) else v.split("^")[0].encode() for vr, v in planted.values() if vr != "SQ"}
        return {v for v in values if v in data} | set(re.findall(rb"LEAK[0-9A-Z]+", data))

    ct = pydicom.dcmread(files[0])
    hospital_uids = {ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.FrameOfReferenceUID, *(
        pydicom.dcmread(f).SOPInstanceUID for f in files)}
    in_private = found(private)
    # what the hospital's SR carries: the test's identifiers do take the path the SR is built on
    name, birth, age, referrer, accession = (planted[t][1] for t in (0x00100010, 0x00100030, 0x00101010, 0x00080090,
                                                                      0x00080050))
    assert {name.split("^")[0].encode(), birth.encode(), age.encode(), referrer.split("^")[0].encode(),
            accession.encode()} <= in_private
    assert len(in_private) > 40
    assert pydicom.dcmread(private).StudyInstanceUID == ct.StudyInstanceUID
    assert found(public) == set()
    text = public.read_bytes().decode("latin-1")
    assert not [uid for uid in hospital_uids if uid in text]
    ds = pydicom.dcmread(public)
    assert (ds.PatientID, str(ds.PatientName), ds.PatientSex, ds.PatientIdentityRemoved) == ("P01", "P01", "", "YES")
    # no dciodvfy here: the planted sequences' items (a bare CodeMeaning) make the source invalid


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
