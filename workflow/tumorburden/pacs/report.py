"""The measurement report a radiologist opens beside our DICOM-SEG: a DICOM SR TID 1500
(highdicom `Comprehensive3DSR` holding a `MeasurementReport`), one per scan.

Content:
- one volumetric ROI group (TID 1411) per lesion present on the scan, referencing the SEG's
  segment the lesion was labelled with (our SEG is a label map: every lesion is in segment 1,
  "lesion", or 5, "lymph node lesion"; the lesion itself is the ROI group's tracking identifier
  and its measurements), with volume (mL), longest axial diameter and short axis (mm), mean
  attenuation (HU) and the finding site (lung, liver, lymph node, soft tissue);
  its TrackingIdentifier is "lesion track <track_id>" and its TrackingUID is derived from the
  study, the patient and the track, so the same lesion has the same UID at every timepoint;
- one measurement group (TID 1501) for the scan's total tumour burden (volume, lesion count, RECIST
  sum of diameters) and one per body-composition tissue (skeletal muscle, subcutaneous and
  visceral fat volumes).

Two copies are written (`write_reports`): the identified one, built from the private area's SEG
(which carries the hospital's patient and study), with UIDs derived from the scan and that SEG, for
the PACS; and the pseudonymised one under results/, built from the de-identified SEG under results/
(its patient is the study's patient_id), with UIDs (tracking UIDs included) derived from the
pseudonyms under another salt, so nothing in it leads back to the hospital's objects.
Both copies are the same bytes on every run (derived UIDs, the study's date for "now").
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import highdicom as hd
import pandas as pd
import pydicom
from highdicom.sr.coding import CodedConcept
from pydicom.sr.codedict import codes

from tumorburden.imaging.deidentify import METHOD, UID_ROOT
from tumorburden.segment.dicomseg import stamp

log = logging.getLogger(__name__)
logging.getLogger("highdicom").setLevel(logging.WARNING)  # it logs source UIDs

MILLILITER = CodedConcept("mL", "UCUM", "milliliter")
SCHEME = "99TMBRDN"  # our private coding scheme, for what SNOMED/DCM have no code
TOTAL_VOLUME = CodedConcept("TTV", SCHEME, "Total tumour volume")
LESION_COUNT = CodedConcept("NLES", SCHEME, "Number of lesions")
SUM_OF_DIAMETERS = CodedConcept("SLD", SCHEME, "Sum of longest diameters (RECIST 1.1)")
VISCERAL_FAT = CodedConcept("VAT", SCHEME, "Visceral adipose tissue")
LESION_SEGMENT, NODE_SEGMENT = 1, 5  # labels.py: segment numbers of our SEG equal the labels
# the finding site of each lesion (lesions.parquet `organ`, labels.SITES); "other" has no code
SITES = {"lung": codes.SCT.Lung, "liver": codes.SCT.Liver, "node": codes.SCT.LymphNode,
         "soft_tissue": codes.SCT.SoftTissue, "spleen": codes.SCT.Spleen, "kidney": codes.SCT.Kidney,
         "adrenal_gland": codes.SCT.AdrenalGland, "pancreas": codes.SCT.Pancreas, "brain": codes.SCT.Brain,
         "bone": codes.SCT.Bone}
TISSUES = [("muscle_ml", codes.SCT.SkeletalMuscle, "skeletal muscle"),
           ("sat_ml", codes.SCT.SubcutaneousTissue, "subcutaneous fat"),
           ("vat_ml", VISCERAL_FAT, "visceral fat")]
SR_SERIES_NUMBER = 9002


def tracking_uid(salt: str, namespace: str, patient_id: str, track_id: int) -> str:
    """The same lesion track of a patient gets the same UID in every scan's report."""
    return pydicom.uid.generate_uid(UID_ROOT, entropy_srcs=[salt, namespace, patient_id, f"track {int(track_id)}"])


def _measurement(name, value: float, unit) -> hd.sr.Measurement | None:
    if value is None or not math.isfinite(float(value)):
        return None
    return hd.sr.Measurement(name=name, value=float(value), unit=unit)


def _source_evidence(seg: pydicom.Dataset) -> list[pydicom.Dataset]:
    """The CT instances the SEG references, as the evidence list of the SR needs them (UIDs only:
    the SR cites them, it does not copy them)."""
    out = []
    for series in seg.get("ReferencedSeriesSequence") or []:
        for ref in series.ReferencedInstanceSequence:
            ds = pydicom.Dataset()
            ds.StudyInstanceUID, ds.SeriesInstanceUID = seg.StudyInstanceUID, series.SeriesInstanceUID
            ds.SOPClassUID, ds.SOPInstanceUID = ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID
            out.append(ds)
    return out


def build_report(seg: pydicom.Dataset, lesions: pd.DataFrame, burden: pd.Series | None, *, patient_id: str,
                 scan_id: str, namespace: str, salt: str, series_uid: str, sop_uid: str,
                 stamp_from: pydicom.Dataset) -> hd.sr.Comprehensive3DSR:
    """The SR of one scan. lesions: its rows of tables/lesions.parquet (schema `lesions`);
    burden: its row of tables/burden.parquet."""
    algorithm = hd.sr.AlgorithmIdentification(name="tumorburden", version="1")
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=pydicom.uid.generate_uid(UID_ROOT, entropy_srcs=[salt, "tumorburden device"]), name="tumorburden"))
    context = hd.sr.ObservationContext(observer_device_context=observer)
    groups = []
    referenced: dict[int, hd.sr.ReferencedSegment] = {}
    present = lesions[lesions["volume_ml"] > 0].sort_values(["track_id", "lesion"])
    for row in present.itertuples():
        segment = NODE_SEGMENT if row.organ == "node" else LESION_SEGMENT
        if segment not in referenced:  # the CT series as the SEG's source: one reference, not one per slice
            referenced[segment] = hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=segment,
                source_series=hd.sr.SourceSeriesForSegmentation(seg.ReferencedSeriesSequence[0].SeriesInstanceUID))
        measurements = [m for m in (
            _measurement(codes.SCT.Volume, row.volume_ml, MILLILITER),
            _measurement(codes.SCT.LongAxis, row.longest_diameter_mm, codes.UCUM.Millimeter),
            _measurement(codes.SCT.ShortAxis, row.short_axis_mm, codes.UCUM.Millimeter),
            _measurement(codes.DCM.MeanAttenuationCoefficient, row.mean_hu, codes.UCUM.HounsfieldUnit),
        ) if m is not None]
        site = SITES.get(str(row.organ))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=tracking_uid(salt, namespace, patient_id, row.track_id),
                identifier=f"lesion track {int(row.track_id)}"),
            referenced_segment=copy.deepcopy(referenced[segment]),
            finding_type=codes.SCT.Neoplasm,
            finding_sites=[hd.sr.FindingSite(site)] if site is not None else None,
            algorithm_id=algorithm,
            measurements=measurements,
        ))
    if burden is not None:
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=pydicom.uid.generate_uid(UID_ROOT, entropy_srcs=[salt, namespace, patient_id, scan_id, "burden"]),
                identifier="total tumour burden"),
            finding_type=codes.SCT.Neoplasm, algorithm_id=algorithm,
            measurements=[m for m in (
                _measurement(TOTAL_VOLUME, burden["total_volume_ml"], MILLILITER),
                _measurement(LESION_COUNT, burden["n_lesions"], codes.UCUM.NoUnits),
                _measurement(SUM_OF_DIAMETERS, burden["sld_mm"], codes.UCUM.Millimeter),
            ) if m is not None]))
        for column, tissue, name in TISSUES:
            volume = _measurement(codes.SCT.Volume, burden[column], MILLILITER)
            if volume is not None:
                groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
                    tracking_identifier=hd.sr.TrackingIdentifier(
                        uid=pydicom.uid.generate_uid(UID_ROOT, entropy_srcs=[salt, namespace, patient_id, scan_id, column]),
                        identifier=name),
                    finding_type=tissue, algorithm_id=algorithm, measurements=[volume]))
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
                                     imaging_measurements=groups)
    sr = hd.sr.Comprehensive3DSR(
        evidence=[seg] + _source_evidence(seg), content=report[0], series_instance_uid=series_uid, series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sop_uid, instance_number=1, manufacturer="tumorburden", is_complete=True)
    sr.SeriesDescription = "tumorburden measurements"
    stamp(sr, stamp_from, namespace)
    return sr


def write_reports(private_seg: Path, public_seg: Path, lesions: pd.DataFrame, burden: pd.Series | None,
                  *, patient_id: str, scan_id: str, namespace: str, private_out: Path, public_out: Path) -> None:
    """The identified SR (for the PACS, from the private SEG) and the pseudonymised one (results/,
    from the de-identified SEG). namespace: study/patient/scan, as the SEG's."""
    study_namespace = namespace.split("/")[0]
    seg = pydicom.dcmread(private_seg)
    private = build_report(seg, lesions, burden, patient_id=patient_id, scan_id=scan_id, namespace=study_namespace,
                           salt="tumorburden-pacs", stamp_from=seg,
                           series_uid=pydicom.uid.generate_uid(UID_ROOT, entropy_srcs=["tumorburden-pacs", namespace, seg.SeriesInstanceUID, "sr-series"]),
                           sop_uid=pydicom.uid.generate_uid(UID_ROOT, entropy_srcs=["tumorburden-pacs", namespace, seg.SOPInstanceUID, "sr"]))
    public_seg_ds = pydicom.dcmread(public_seg)
    public = build_report(public_seg_ds, lesions, burden, patient_id=patient_id, scan_id=scan_id,
                          namespace=study_namespace, salt="tumorburden-results", stamp_from=public_seg_ds,
                          series_uid=pydicom.uid.generate_uid(UID_ROOT, entropy_srcs=["tumorburden-results", namespace, "sr-series"]),
                          sop_uid=pydicom.uid.generate_uid(UID_ROOT, entropy_srcs=["tumorburden-results", namespace, "sr"]))
    public.PatientIdentityRemoved = "YES"
    public.DeidentificationMethod = METHOD
    for out, ds in ((private_out, private), (public_out, public)):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(out, enforce_file_format=True)
    log.info("SR of scan %s: %d lesions", scan_id, int((lesions["volume_ml"] > 0).sum()))
