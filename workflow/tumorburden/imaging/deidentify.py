"""De-identification of the DICOM objects the pipeline writes under results/.

A DICOM object built from a hospital's images (highdicom copies the source's patient, study and
clinical-trial modules into a DICOM-SEG) carries the patient's name, hospital ID, birth date,
accession number, referring physician, institution, dates and the hospital's UIDs. Before such
an object is written under results/ it goes through `deidentify`:

- every attribute of the DICOM PS3.15 Basic Application Confidentiality Profile is removed,
  emptied or replaced as the profile's table says (the table as dicom-anonymizer ships it,
  `PROFILE_TABLE`), at every nesting level, and private tags are removed;
- every UID the profile replaces (instance, series, study, frame of reference and referenced
  instance UIDs) becomes a UID derived from the pseudonymous scan alone (`namespace`, e.g.
  study/patient/scan) and the order in which the UID first appears in the object: the same
  object gives the same UIDs on every run, references inside it stay consistent, and nothing of
  the hospital's UID survives (a hash of it would let the hospital match it back);
- PatientID and PatientName become the study's pseudonymous patient_id; PatientIdentityRemoved
  is YES with the Basic Profile's code (DCM 113100) in DeidentificationMethodCodeSequence.

The identified object, whose references a hospital's PACS can resolve, is written only under
the private area (study.private_dir).

What it costs: a BINARY SEG of a 150-slice scan holds ~5,000 per-frame items, and each pass of
dicom-anonymizer walks all of them. A top-level sequence whose items hold nothing the profile
acts on but UIDs (checked item by item, on the way through the UIDs: no rule other than keep, no
repeating group, no private tag, no date) is set aside while the anonymizer runs and put back
after; with `in_place` there is no copy either. The result is the same, to the byte, as every
rule of the table applied to every data set (tests/imaging/deidentify_reference.py).
"""

from __future__ import annotations

import copy

import pydicom
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from dicomanonymizer.simpledicomanonymizer import anonymize_dataset, initialize_actions, keep
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

PROFILE_TABLE = "dicomfields_2026c"  # PS3.15 Table E.1-1 of DICOM 2026c, as dicom-anonymizer ships it
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root: hashed UIDs under it are unique by construction
METHOD = "PS3.15 Basic Profile; UIDs from the pseudonym"  # LO: at most 64 characters
DUMMY_DATE = "19000101"


def _profile() -> tuple[dict, set]:
    tags = dicom_anonymization_database_selector(PROFILE_TABLE)
    uid_tags = {pydicom.tag.Tag(*t) for t in tags["U_TAGS"] + tags["X_Z_U_STAR_TAGS"] if len(t) == 2}
    actions = initialize_actions(PROFILE_TABLE)
    # UIDs are replaced beforehand (deterministically, at every level); the sequences that hold
    # references keep their (by then pseudonymous) items rather than being emptied
    for t in tags["U_TAGS"] + tags["X_Z_U_STAR_TAGS"]:
        actions[t] = keep
    return actions, uid_tags


class UidMap:
    """Hospital UID -> a UID derived from `namespace` and the order of first appearance."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self.mapping: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        uid = str(uid)
        if not uid:
            return uid
        if uid not in self.mapping:
            self.mapping[uid] = generate_uid(UID_ROOT, entropy_srcs=["tumorburden", self.namespace, str(len(self.mapping))])
        return self.mapping[uid]


def _nested(ds: Dataset, seen: set | None = None):
    """ds and every data set inside its sequences, depth first, in tag order, each once (an item
    object may sit in several sequences: changing it twice would map a UID twice)."""
    seen = set() if seen is None else seen
    if id(ds) in seen:
        return
    seen.add(id(ds))
    yield ds
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                yield from _nested(item, seen)


def _acted_on(elem, single: dict, groups: list) -> bool:
    """Whether the profile does anything to `elem` beyond replacing a UID (done beforehand): a rule
    other than keep, a repeating group's rule, a private tag, or a date (the dummy date's fix)."""
    tag = elem.tag
    if tag.is_private or elem.VR == "DA":
        return True
    action = single.get((tag.group, tag.element))
    if action is not None and action is not keep:
        return True
    return any(tag.group & gmask == group & gmask and tag.element & emask == element & emask
               for group, element, gmask, emask in groups)


def deidentify(ds: Dataset, patient_id: str, namespace: str, in_place: bool = False) -> Dataset:
    """A de-identified copy of `ds` (see the module docstring); `ds` itself is left as it is, unless
    `in_place`: then `ds` is de-identified and returned (the same result without the copy, for a
    caller that has no further use of the identified object: a SEG's copy costs as much as the rest)."""
    out = ds if in_place else copy.deepcopy(ds)
    actions, uid_tags = _profile()
    single = {t: a for t, a in actions.items() if len(t) == 2}
    groups = [t for t in actions if len(t) == 4]
    uids = UidMap(namespace)

    def map_uids(item: Dataset) -> None:
        for elem in item:
            if elem.tag in uid_tags and elem.VR == "UI" and elem.value:
                if isinstance(elem.value, pydicom.multival.MultiValue):
                    elem.value = [uids(v) for v in elem.value]
                else:
                    elem.value = uids(elem.value)

    # UIDs first, in the order of _nested (the order fixes the new UIDs); on the way, the top-level
    # sequences whose items hold nothing else the profile acts on (a SEG's per-frame items, ~5,000 of
    # them: frame content, plane position, source image references, segment number) are set aside
    # while the anonymizer walks the rest: each of its passes would walk them and change nothing
    map_uids(out)
    seen = {id(out)}
    inert = []
    for elem in out:
        if elem.VR != "SQ":
            continue
        acted_on = False
        for item in elem.value:
            for nested in _nested(item, seen):
                map_uids(nested)
                acted_on = acted_on or any(_acted_on(e, single, groups) for e in nested)
        rule = single.get((elem.tag.group, elem.tag.element))
        if not acted_on and (rule is None or rule is keep):
            inert.append(elem)
    meta = getattr(out, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = uids(meta.MediaStorageSOPInstanceUID)
    for elem in inert:
        del out[elem.tag]
    # the top level gets every rule (the repeating-group ones walk the whole object); a nested item
    # only the rules of the tags it holds (all ~700 rules on each item cost seconds), and no pass at
    # all where those are all `keep` (the UIDs, replaced above): such a pass would only remove
    # private tags, which the top level's pass removed at every level
    anonymize_dataset(out, extra_anonymization_rules=actions, delete_private_tags=True, base_rules_gen=dict)
    for item in list(_nested(out))[1:]:
        present = {t: single[t] for t in ((e.tag.group, e.tag.element) for e in item)
                   if t in single and single[t] is not keep}
        if present:
            anonymize_dataset(item, extra_anonymization_rules=present, delete_private_tags=True, base_rules_gen=dict)
    # the profile's dummy date, 00010101, is refused by validators (dciodvfy); 19000101 says as little
    for item in _nested(out):
        for elem in item:
            if elem.VR == "DA" and str(elem.value) == "00010101":
                elem.value = DUMMY_DATE
    for elem in inert:
        out[elem.tag] = elem
    out.PatientID = patient_id
    out.PatientName = patient_id
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = METHOD
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
    code.CodeMeaning = "Basic Application Confidentiality Profile"
    out.DeidentificationMethodCodeSequence = [code]
    out.LongitudinalTemporalInformationModified = "REMOVED"
    return out
