"""De-identification of DICOM objects written under results/ (PS3.15 Basic Profile, UIDs from the pseudonym)."""

import copy
import io

import pydicom
import pytest
from deidentify_reference import generic_deidentify
from pydicom.dataset import Dataset

from tumorburden.imaging.deidentify import deidentify

SOURCE_UID = "1.2.826.0.1.3680043.8.498.111"
STUDY_UID = "1.2.826.0.1.3680043.8.498.222"


def _identified() -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Fairweather^Jonquil", "MRN55501", "19390714"
    ds.AccessionNumber, ds.ReferringPhysicianName = "ACC90411", "Quillfeather^Barnaby"
    ds.InstitutionName, ds.StudyDate, ds.StudyInstanceUID = "Sankt Ottilien Klinikum", "20240105", STUDY_UID
    ds.SOPInstanceUID, ds.SOPClassUID = "1.2.826.0.1.3680043.8.498.333", "1.2.840.10008.5.1.4.1.1.66.7"
    ref = Dataset()
    ref.ReferencedSOPInstanceUID, ref.ReferencedSOPClassUID = SOURCE_UID, "1.2.840.10008.5.1.4.1.1.2"
    ref.OperatorsName = "Nurse^Ratched"  # a Basic Profile attribute inside a nested item
    series = Dataset()
    series.SeriesInstanceUID, series.ReferencedInstanceSequence = "1.2.826.0.1.3680043.8.498.444", [ref]
    ds.ReferencedSeriesSequence = [series]
    frame = Dataset()
    source = Dataset()
    source.ReferencedSOPInstanceUID = SOURCE_UID
    derivation = Dataset()
    derivation.SourceImageSequence = [source]
    frame.DerivationImageSequence = [derivation]
    ds.PerFrameFunctionalGroupsSequence = [frame]
    ds.add_new(0x00091001, "LO", "private note on Fairweather")
    return ds


def test_every_identifier_goes_and_references_stay_consistent():
    original = _identified()
    out = deidentify(original, "S-01", "study/S-01/S-01_d0")
    text = str(out) + str(out.file_meta if hasattr(out, "file_meta") else "")
    for secret in ("Fairweather", "MRN55501", "19390714", "ACC90411", "Quillfeather", "Ottilien", "Ratched",
                   "20240105", SOURCE_UID, STUDY_UID, "1.2.826.0.1.3680043.8.498.333"):
        assert secret not in text, secret
    assert out.PatientID == "S-01" and out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    referenced = out.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID
    per_frame = out.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert referenced == per_frame.ReferencedSOPInstanceUID  # one source instance, one new UID
    assert pydicom.uid.UID(referenced).is_valid
    assert out.SOPClassUID == original.SOPClassUID  # what the object is, not whose
    assert original.PatientName == "Fairweather^Jonquil"  # the identified object is left as it was


def test_uids_depend_on_the_pseudonym_not_the_hospital_uids():
    a = deidentify(_identified(), "S-01", "study/S-01/S-01_d0")
    b = deidentify(_identified(), "S-01", "study/S-01/S-01_d0")
    other = _identified()
    other.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.999"
    c = deidentify(other, "S-01", "study/S-01/S-01_d0")
    d = deidentify(_identified(), "S-02", "study/S-02/S-02_d0")
    assert a.StudyInstanceUID == b.StudyInstanceUID == c.StudyInstanceUID
    assert a.StudyInstanceUID != d.StudyInstanceUID


def _identifiers_in_every_frame() -> Dataset:
    """_identified() whose per-frame items (which the module sets aside when they hold nothing but
    UIDs) hold what the profile removes: a private tag, a date, an operator's name two levels down."""
    ds = _identified()
    frames = []
    for k in range(3):
        frame = copy.deepcopy(ds.PerFrameFunctionalGroupsSequence[0])
        frame.FrameAcquisitionDateTime = "20240105101500"
        frame.add_new(0x00111001, "LO", "private frame note on Fairweather")
        frame.DerivationImageSequence[0].SourceImageSequence[0].OperatorsName = "Nurse^Ratched"
        frame.DerivationImageSequence[0].SourceImageSequence[0].ContentDate = "20240105"
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = frames
    return ds


@pytest.mark.parametrize("make", [_identified, _identifiers_in_every_frame])
def test_equals_every_rule_applied_to_every_data_set(make):
    """The module sets aside sequences that hold nothing the profile acts on but UIDs, and copies
    nothing in place; the result is what the plain walk of the whole profile gives, to the byte."""
    reference = generic_deidentify(make(), "S-01", "study/S-01/S-01_d0")
    assert deidentify(make(), "S-01", "study/S-01/S-01_d0") == reference
    original = make()
    out = deidentify(original, "S-01", "study/S-01/S-01_d0", in_place=True)
    assert out is original and out == reference
    assert _encoded(out) == _encoded(reference)


def test_identifiers_inside_per_frame_items_go():
    out = deidentify(_identifiers_in_every_frame(), "S-01", "study/S-01/S-01_d0")
    text = str(out)
    for secret in ("Fairweather", "Ratched", "20240105", SOURCE_UID):
        assert secret not in text, secret
    assert len(out.PerFrameFunctionalGroupsSequence) == 3


def _encoded(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=False, little_endian=True)
    return buffer.getvalue()
