"""DICOM-SEG out: the label map as a highdicom BINARY Segmentation that references the source series.

BINARY (one bit per pixel, a frame per segment and slice, empty frames left out; uncompressed:
JPEG 2000 costs ~20 ms a frame, and dciodvfy cannot read the deflated transfer syntax) rather than the Label Map Segmentation SOP class of 2024: PACS viewers and validators
(dicom3tools' dciodvfy in Debian 12) do not know that one yet.

The NIfTI label map lives on the RAS grid of image.nii.gz; the SEG frames must follow the
source slices. Each source slice's geometry gives a grid, and the labels are brought onto
it by nearest neighbour (an index permutation for the usual axial series), so the SEG lines
up with the CT in any viewer. Segment numbers equal our label numbers (1..7).

Two copies: the one under results/ is de-identified (imaging/deidentify.py: the study's
patient_id, no Basic Profile attribute, UIDs derived from the pseudonym, so its references
resolve only inside itself); the identified one, referencing the source instances by their
hospital UIDs for an import into the hospital's PACS, goes to the private area.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from tumorburden import labels as L
from tumorburden.imaging.deidentify import UID_ROOT, deidentify
from tumorburden.imaging.volume import load_nifti
from tumorburden.segment.engine import labels_to_grid

log = logging.getLogger(__name__)
# highdicom logs each source data set it copies from by its SOP Instance UID: the hospital's UID
# would reach the segment_dicom log under results/
logging.getLogger("highdicom").setLevel(logging.WARNING)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# label -> (segment label, category, type)
SEGMENTS = {
    L.LESION: ("lesion", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm),
    L.MUSCLE: ("skeletal muscle", codes.SCT.Tissue, codes.SCT.SkeletalMuscle),
    L.SAT: ("subcutaneous fat", codes.SCT.Tissue, codes.SCT.Fat),
    L.VAT: ("visceral fat", codes.SCT.Tissue, codes.SCT.Fat),
    L.NODE_LESION: ("lymph node lesion", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.LymphNode),
    L.LUNG: ("lung", codes.SCT.AnatomicalStructure, codes.SCT.Lung),
    L.LIVER: ("liver", codes.SCT.AnatomicalStructure, codes.SCT.Liver),
}


def read_series(source: Path | str | list, settings: dict | None = None) -> list[pydicom.Dataset]:
    """The CT slices a scan was read from, sorted along the slice normal (pixel data not decoded).

    `source` is what the scan's `image` names: a DICOM folder (the series is chosen as ingest
    chooses it under the same imaging `settings`, so a localizer or a second series in the folder
    is never referenced), a series list written by discovery (JSON), or the list of files itself."""
    from tumorburden.imaging.ingest import source_files

    files = source if isinstance(source, list) else source_files(Path(source), settings)
    datasets = []
    for path in sorted(files):
        try:
            ds = pydicom.dcmread(path)
        except (pydicom.errors.InvalidDicomError, OSError):
            continue
        if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds and "PixelData" in ds:
            datasets.append(ds)
    if not datasets:
        raise ValueError(f"{source}: no DICOM image slices found to reference in the DICOM-SEG")
    iop = np.asarray(datasets[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda d: float(np.dot(normal, np.asarray(d.ImagePositionPatient, float))))
    return datasets


def series_affine_ras(datasets: list[pydicom.Dataset]) -> np.ndarray:
    """Affine of the array indexed (column, row, slice) of the sorted series, in RAS mm."""
    first = datasets[0]
    iop = np.asarray(first.ImageOrientationPatient, float)
    row_mm, col_mm = (float(v) for v in first.PixelSpacing)  # between rows, between columns
    p0 = np.asarray(first.ImagePositionPatient, float)
    if len(datasets) < 2:  # ingest refuses these too: one slice has no step, and none is guessed
        raise ValueError(f"{first.filename}: a single slice; a DICOM-SEG needs the series of the scan (2 or more slices)")
    step = (np.asarray(datasets[-1].ImagePositionPatient, float) - p0) / (len(datasets) - 1)
    lps = np.eye(4)
    lps[:3, 0] = iop[:3] * col_mm
    lps[:3, 1] = iop[3:] * row_mm
    lps[:3, 2] = step
    lps[:3, 3] = p0
    return LPS_TO_RAS @ lps


def pacs_uid(namespace: str, source_uid: str, kind: str) -> str:
    """A UID for an object meant for the hospital's PACS, derived from the pseudonymous scan
    (`namespace`), the hospital UID it derives from and what it is ("seg", "sr-series", ...)."""
    return pydicom.uid.generate_uid(UID_ROOT, entropy_srcs=["tumorburden-pacs", namespace, str(source_uid), kind])


def stamp(ds: pydicom.Dataset, source: pydicom.Dataset, namespace: str) -> None:
    """What highdicom makes up on each run (dates and times of now, a random dimension
    organization UID) set to the source study's date and a UID derived from the scan, so that an
    object written again is the same bytes."""
    day, clock = str(source.get("StudyDate", "") or "19000101"), str(source.get("StudyTime", "") or "000000")
    for what in ("InstanceCreation", "Content", "Series"):
        if f"{what}Date" in ds or what != "Series":
            setattr(ds, f"{what}Date", day)
            setattr(ds, f"{what}Time", clock)
    for item in ds.get("ContributingEquipmentSequence") or []:
        if "ContributionDateTime" in item:
            item.ContributionDateTime = day + clock
    dimension_uid = pacs_uid(namespace, source.get("SeriesInstanceUID", ""), "dimension-organization")
    for name in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in ds.get(name) or []:
            if "DimensionOrganizationUID" in item:
                item.DimensionOrganizationUID = dimension_uid


def write_dicom_seg(segmentation_path: Path, source: Path | list, out: Path, patient_id: str, namespace: str = "",
                    pacs_out: Path | None = None, model_name: str = "tumorburden", model_version: str = "1",
                    settings: dict | None = None) -> Path:
    """Write the DICOM-SEG of a scan: `out` de-identified (imaging.deidentify: for results/, with
    `patient_id` as the patient and UIDs derived from `namespace`), and when `pacs_out` is given
    the identified object whose references the hospital's PACS resolves (for the private area).
    `settings`: the imaging settings ingest read the scan with (which series of a folder)."""
    import highdicom as hd

    t0 = time.perf_counter()
    seg = load_nifti(segmentation_path, dtype=np.uint8)
    datasets = read_series(source, settings)
    rows, cols = int(datasets[0].Rows), int(datasets[0].Columns)
    grid = labels_to_grid(seg.array, seg.affine, (cols, rows, len(datasets)), series_affine_ras(datasets))
    frames = np.ascontiguousarray(np.transpose(grid, (2, 1, 0)))  # (slice, row, column)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=model_name, version=str(model_version)[:64], family=codes.DCM.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=label, segment_label=name, segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm)
        for label, (name, category, kind) in sorted(SEGMENTS.items())
    ]
    missing = [k for k in ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
                           "StudyID", "AccessionNumber") if k not in datasets[0]]
    if missing:  # highdicom copies these Type-2 attributes; an empty value is what DICOM allows
        for ds in datasets:
            for k in missing:
                setattr(ds, k, "")
        log.info("source series lacks %s; written empty in the SEG", ", ".join(missing))
    # UIDs derived from the scan and its source series, the content date the study's: a rerun writes
    # the same bytes, and a second push to the PACS replaces the object instead of adding one
    seg_series_uid, uid_root = (pacs_uid(namespace, datasets[0].SeriesInstanceUID, kind) for kind in ("seg-series", "seg"))
    seg_ds = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=seg_series_uid,
        series_number=9001,
        sop_instance_uid=uid_root,
        instance_number=1,
        manufacturer="tumorburden",
        manufacturer_model_name=model_name[:64],
        software_versions=str(model_version)[:64],
        device_serial_number="0",
        series_description="tumorburden segmentation",
        transfer_syntax_uid=pydicom.uid.ExplicitVRLittleEndian,
        omit_empty_frames=True,
    )
    stamp(seg_ds, datasets[0], namespace)
    if seg_ds.get("PatientIdentityRemoved") == "YES" and "DeidentificationMethod" not in seg_ds:
        # highdicom copies the flag from the source but not the method it requires (Type 1C)
        seg_ds.DeidentificationMethod = str(datasets[0].get("DeidentificationMethod", "") or
                                            "source series marked PatientIdentityRemoved")[:64]
    if pacs_out is not None:
        Path(pacs_out).parent.mkdir(parents=True, exist_ok=True)
        seg_ds.save_as(pacs_out)
    public = deidentify(seg_ds, patient_id, namespace, in_place=True)  # seg_ds is no longer needed
    public.SeriesDescription = "tumorburden segmentation"  # ours, not the hospital's (the profile removes it)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    public.save_as(out)
    log.info("DICOM-SEG %s: %d frames (%d slices), %.1f MB, %.2f s%s", out, int(public.NumberOfFrames),
             frames.shape[0], out.stat().st_size / 1e6,
             time.perf_counter() - t0, f" (identified copy for the PACS: {pacs_out})" if pacs_out else "")
    return out


def read_dicom_seg_labels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(label array, RAS affine) of a DICOM-SEG written by write_dicom_seg."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    volume = seg.get_volume(combine_segments=True)
    return np.asarray(volume.array), LPS_TO_RAS @ np.asarray(volume.affine, float)
