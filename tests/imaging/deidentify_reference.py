"""The de-identification that `imaging.deidentify` must equal, done the plain, slow way: every rule
of the PS3.15 table (dicom-anonymizer's, all of it) applied by dicom-anonymizer to every data set of
a copy of the object, none set aside; the UIDs replaced first by the module's UID function, in the
order in which they first appear (depth first, in tag order)."""

import copy

import pydicom
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from dicomanonymizer.simpledicomanonymizer import anonymize_dataset, initialize_actions, keep
from pydicom.dataset import Dataset

from tumorburden.imaging.deidentify import DUMMY_DATE, METHOD, PROFILE_TABLE, UidMap


def _every_data_set(ds: Dataset, seen: set) -> list[Dataset]:
    if id(ds) in seen:
        return []
    seen.add(id(ds))
    out = [ds]
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                out += _every_data_set(item, seen)
    return out


def generic_deidentify(ds: Dataset, patient_id: str, namespace: str) -> Dataset:
    out = copy.deepcopy(ds)
    tags = dicom_anonymization_database_selector(PROFILE_TABLE)
    uid_tags = {pydicom.tag.Tag(*t) for t in tags["U_TAGS"] + tags["X_Z_U_STAR_TAGS"] if len(t) == 2}
    actions = initialize_actions(PROFILE_TABLE)
    for t in tags["U_TAGS"] + tags["X_Z_U_STAR_TAGS"]:
        actions[t] = keep
    uids = UidMap(namespace)
    for item in _every_data_set(out, set()):
        for elem in item:
            if elem.tag in uid_tags and elem.VR == "UI" and elem.value:
                multi = isinstance(elem.value, pydicom.multival.MultiValue)
                elem.value = [uids(v) for v in elem.value] if multi else uids(elem.value)
    if "MediaStorageSOPInstanceUID" in getattr(out, "file_meta", {}):
        out.file_meta.MediaStorageSOPInstanceUID = uids(out.file_meta.MediaStorageSOPInstanceUID)
    for item in _every_data_set(out, set()):
        anonymize_dataset(item, extra_anonymization_rules=actions, delete_private_tags=True, base_rules_gen=dict)
    for item in _every_data_set(out, set()):
        for elem in item:
            if elem.VR == "DA" and str(elem.value) == "00010101":
                elem.value = DUMMY_DATE
    out.PatientID = out.PatientName = patient_id
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    out.DeidentificationMethodCodeSequence = [code]
    out.LongitudinalTemporalInformationModified = "REMOVED"
    return out
