"""DICOM-SEG out: the de-identified copy under results/ is the identified SEG put through the whole
PS3.15 profile the plain way (every rule on every data set of a copy), to the byte."""

import numpy as np
import pydicom
import pytest
from imaging.deidentify_reference import generic_deidentify

from tumorburden import labels as L
from tumorburden.imaging.volume import Volume, save_nifti
from tumorburden.segment import dicomseg
from tumorburden.synth.dicom import SeriesInfo, hu_to_stored, write_ct_series

SHAPE = (24, 24, 6)
PIXEL, SLICE = 5.0, 5.0
ORIGIN_LPS = (-57.5, -57.5, -15.0)
HOSPITAL = {"PatientName": "Fairweather^Jonquil", "PatientBirthDate": "19390714", "AccessionNumber": "ACC90411",
            "ReferringPhysicianName": "Quillfeather^Barnaby", "InstitutionName": "Sankt Ottilien Klinikum",
            "OperatorsName": "Nurse^Ratched", "StudyID": "HOSP-7781"}


@pytest.fixture(scope="module")
def hospital_series(tmp_path_factory):
    """A CT series as a hospital exports it (names, birth date, accession number, a private tag) and
    a label map with every label of labels.py, so the SEG has a frame per segment and slice."""
    folder = tmp_path_factory.mktemp("hospital")
    hu = np.full(SHAPE, -1000.0, np.float32)
    hu[2:22, 2:22, :] = 40.0
    info = SeriesInfo(patient_id="MRN55501", patient_sex="F", study_date="20240105", study_time="091500",
                      study_id="1", series_description="CT TAP", body_part="CHEST", uid_entropy=["hospital"])
    for path in write_ct_series(hu_to_stored(hu), ORIGIN_LPS, PIXEL, SLICE, info, folder / "dicom"):
        ds = pydicom.dcmread(path)
        for keyword, value in HOSPITAL.items():
            setattr(ds, keyword, value)
        ds.private_block(0x0029, "HOSPITAL PACS", create=True).add_new(0x01, "LO", "ward 4, Fairweather")
        ds.save_as(path)
    affine = np.array([[-PIXEL, 0, 0, -ORIGIN_LPS[0]], [0, -PIXEL, 0, -ORIGIN_LPS[1]],
                       [0, 0, SLICE, ORIGIN_LPS[2]], [0, 0, 0, 1.0]])
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:22, 2:22, :] = L.VAT
    labels[2:22, 2:4, :] = L.MUSCLE
    labels[2:4, 4:22, :] = L.SAT
    labels[6:12, 6:12, 1:4] = L.LUNG
    labels[14:20, 6:12, 2:6] = L.LIVER
    labels[8:10, 8:10, 2:3] = L.LESION
    labels[16:18, 16:18, 4:5] = L.NODE_LESION
    save_nifti(Volume(labels, affine), folder / "seg.nii.gz", dtype=np.uint8)
    return folder


def test_public_seg_is_the_identified_one_through_the_whole_profile(hospital_series, tmp_path):
    folder = hospital_series
    public = dicomseg.write_dicom_seg(folder / "seg.nii.gz", folder / "dicom", tmp_path / "seg.dcm", patient_id="S-01",
                                      namespace="study/S-01/S-01_d0", pacs_out=tmp_path / "pacs.dcm",
                                      settings={"thickness_mm": [0.5, 8.0]})
    identified = pydicom.dcmread(tmp_path / "pacs.dcm")
    assert identified.PatientName == HOSPITAL["PatientName"] and identified.PatientID == "MRN55501"
    assert int(identified.NumberOfFrames) > SHAPE[2] and len(identified.SegmentSequence) == 7
    reference = generic_deidentify(identified, "S-01", "study/S-01/S-01_d0")
    reference.SeriesDescription = "tumorburden segmentation"
    reference.save_as(tmp_path / "reference.dcm")
    assert pydicom.dcmread(public) == pydicom.dcmread(tmp_path / "reference.dcm")
    assert public.read_bytes() == (tmp_path / "reference.dcm").read_bytes()
    text = public.read_bytes()
    for secret in list(HOSPITAL.values()) + ["MRN55501", "20240105", "ward 4", identified.StudyInstanceUID]:
        assert secret.encode() not in text, secret
