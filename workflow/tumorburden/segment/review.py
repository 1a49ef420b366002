"""A radiologist's review of a scan's segmentation, read back onto the scan's grid.

A review is one DICOM object the radiologist's tool writes:
  SEG       a DICOM-SEG (ours, corrected, or one drawn from scratch on the same series), read
            with highdicom; its segments are named as our labels (labels.ALIASES: "lesion",
            "tumor", "Lesion 3", "lymph node lesion", "liver", ...)
  RTSTRUCT  an RT Structure Set: closed planar contours in patient coordinates per ROI, what most
            annotation and radiotherapy tools export. The contours are filled here, on the slices
            of the scan's own grid (skimage's point-in-polygon on voxel centres, holes by the
            even-odd rule). rt-utils was not taken: it fills contours on the pixel grid of the
            DICOM series it is handed (OpenCV), and our grid is image.nii.gz's, which for a
            NIfTI-sourced scan has no series at all.
Lesion structures (labels 1 and 5) are kept; structures named as one of our tissues are left
out (the review replaces lesions only); a structure whose name maps to none of our labels stops
the step, naming file and structure.

Which scan a review belongs to is decided from headers only (`index_reviews`): the same study
as the scan's source series and either a reference to that series (or to our DICOM-SEG of the
scan) or a series description matching `review.series_description`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from datetime import time as dt_time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.valuerep import DA, TM

from tumorburden import labels as L
from tumorburden.imaging.volume import Volume, axial_axis

log = logging.getLogger(__name__)
# highdicom logs the SOP Instance UIDs it reads at INFO: the hospital's UIDs would reach the step's log
logging.getLogger("highdicom").setLevel(logging.WARNING)

DEFAULTS = {
    "dir": None,  # the folder the radiologist's SEG / RTSTRUCT objects are put in
    "series_description": None,  # fnmatch pattern, case-insensitive: a review series found by its description
}
MODALITIES = ("SEG", "RTSTRUCT")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# WADO-RS in the transfer syntax the server stores (as the pull asks, pacs.client.AS_STORED): asking for
# another makes the server transcode, and Orthanc 1.10 answers HTTP 500 for a JPEG 2000 SEG
AS_STORED = (("application/dicom", "*"),)
# A contour is drawn on a slice: its points lie this close (in slices) to one slice of the scan.
ON_SLICE_TOLERANCE = 0.25


class ReviewError(ValueError):
    """A review that cannot be read or placed; the message names the file and what to do."""


# ---------------------------------------------------------------- reading a review onto the grid

def review_modality(path: Path) -> str | None:
    """'SEG' or 'RTSTRUCT' for a review object, None for any other file."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
    except (pydicom.errors.InvalidDicomError, OSError, IsADirectoryError):
        return None
    modality = str(ds.get("Modality", ""))
    return modality if modality in MODALITIES else None


def _label_of(name: str, path: Path, what: str) -> int:
    label = L.label_of_name(name, numbered=True)
    if label is None or label == L.BACKGROUND:
        raise ReviewError(
            f"{path}: {what} {name!r} maps to none of our labels ({', '.join(sorted(set(L.ALL_NAMES.values()) - {'background'}))},"
            f" their aliases in labels.py, or a numbered 'Lesion 3'); rename it in the review tool or delete it")
    return label


def read_review(path: Path, image: Volume) -> np.ndarray:
    """The review's lesions on the image's grid: uint8, 0, 1 (lesion) or 5 (lymph-node lesion)."""
    path = Path(path)
    modality = review_modality(path)
    if modality == "SEG":
        return read_seg_lesions(path, image)
    if modality == "RTSTRUCT":
        return rasterise_rtstruct(path, image)
    raise ReviewError(f"{path}: not a DICOM-SEG or RT Structure Set; a review is one of these two")


def read_seg_lesions(path: Path, image: Volume) -> np.ndarray:
    import highdicom as hd

    from tumorburden.segment.run import _on_image_grid

    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:
        raise ReviewError(f"{path}: not a readable DICOM-SEG ({' '.join(str(exc).split())[:200]})") from exc
    lut = {}
    for number in seg.segment_numbers:
        desc = seg.get_segment_description(number)
        label = L.label_of_name(str(desc.segment_label), numbered=True)
        if label is None:  # a tool that names segments "Segment_1" still codes what they are
            label = L.label_of_name(str(desc.segmented_property_type.meaning), numbered=True)
        if label is None or label == L.BACKGROUND:
            _label_of(str(desc.segment_label), path, "segment")
        if label in L.LESION_LABELS:
            lut[int(number)] = label
    if not lut:
        return np.zeros(image.shape, np.uint8)
    try:
        volume = seg.get_volume(segment_numbers=sorted(lut), combine_segments=True, relabel=False,
                                skip_overlap_checks=True)
    except Exception as exc:
        raise ReviewError(f"{path}: the DICOM-SEG frames do not form one regular volume "
                          f"({' '.join(str(exc).split())[:200]}); export it as an RT Structure Set instead") from exc
    numbers = np.asarray(volume.array)
    table = np.zeros(max(int(numbers.max()), max(lut)) + 1, np.uint8)
    for number, label in lut.items():
        table[number] = label
    labels = table[numbers.astype(np.int64)]
    return _on_image_grid(labels, LPS_TO_RAS @ np.asarray(volume.affine, float), image, path, "review segmentation")


def rasterise_rtstruct(path: Path, image: Volume) -> np.ndarray:
    """Fill an RT Structure Set's closed planar contours on the image's slices (labels 0, 1, 5)."""
    from skimage.draw import polygon

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError) as exc:
        raise ReviewError(f"{path}: not a readable RT Structure Set ({exc})") from exc
    if str(ds.get("Modality", "")) != "RTSTRUCT" or "ROIContourSequence" not in ds:
        raise ReviewError(f"{path}: not an RT Structure Set with contours (Modality {ds.get('Modality', '?')})")
    names = {int(item.ROINumber): str(item.get("ROIName", "")) for item in ds.get("StructureSetROISequence", [])}
    axial = axial_axis(image.affine)
    a, b = [i for i in range(3) if i != axial]
    to_voxel = np.linalg.inv(image.affine) @ LPS_TO_RAS
    out = np.zeros(image.shape, np.uint8)
    for roi in ds.ROIContourSequence:
        number = int(roi.ReferencedROINumber)
        if number not in names:
            raise ReviewError(f"{path}: contours of ROI number {number}, which StructureSetROISequence does not name")
        name = names[number]
        label = _label_of(name, path, "ROI")
        if label not in L.LESION_LABELS:
            continue
        planes: dict[int, np.ndarray] = {}
        for contour in roi.get("ContourSequence", []):
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
            if kind != "CLOSED_PLANAR":
                log.info("%s: ROI %r has a %s contour, not an outline: left out", path, name, kind)
                continue
            lps = np.asarray(contour.ContourData, float).reshape(-1, 3)
            ijk = np.c_[lps, np.ones(len(lps))] @ to_voxel[:3].T
            k = int(np.round(ijk[:, axial].mean()))
            if np.abs(ijk[:, axial] - k).max() > ON_SLICE_TOLERANCE:
                raise ReviewError(
                    f"{path}: ROI {name!r} has a contour that does not lie on one axial slice of the scan "
                    f"(slice position {ijk[:, axial].min():.2f}..{ijk[:, axial].max():.2f}); was it drawn on "
                    "this scan's series?")
            if not 0 <= k < image.shape[axial]:
                raise ReviewError(f"{path}: ROI {name!r} has a contour outside the scan (slice {k} of "
                                  f"{image.shape[axial]}); is it this scan's structure set (same frame of reference)?")
            rr, cc = polygon(ijk[:, a], ijk[:, b], shape=(image.shape[a], image.shape[b]))
            plane = planes.setdefault(k, np.zeros((image.shape[a], image.shape[b]), bool))
            plane[rr, cc] ^= True  # a contour inside another is a hole (even-odd rule)
        for k, plane in planes.items():
            index = [slice(None)] * 3
            index[axial] = k
            target = out[tuple(index)]
            target[plane] = label
    return out


def apply_review(ai_labels: np.ndarray, review: np.ndarray) -> np.ndarray:
    """The scan's label map with the review's lesions in place of the model's: the model's lesion
    voxels become background, the review's voxels its labels; a review 'lesion' voxel the model
    called a lymph-node lesion stays one (the review says where, the model which site) unless the
    review names the site itself. The tissues stay the model's."""
    labels = ai_labels.copy()
    node = labels == L.NODE_LESION
    labels[np.isin(labels, L.LESION_LABELS)] = L.BACKGROUND
    labels[review == L.LESION] = L.LESION
    labels[(review == L.LESION) & node] = L.NODE_LESION
    labels[review == L.NODE_LESION] = L.NODE_LESION
    return labels


# ---------------------------------------------------------------- which scan a review belongs to

# Which of two reviews of one scan is the newer, in this order; a key decides only when every review of
# the scan has it (an RT Structure Set's content date/time is its Structure Set Date/Time)
WHEN = (("content date/time", "content"), ("series date/time", "series_time"),
        ("instance creation date/time", "created"))


@dataclass
class ReviewObject:
    path: Path
    modality: str
    study_uid: str
    series_uid: str
    series_description: str
    referenced_series: set[str] = field(default_factory=set)
    frame_of_reference: str = ""
    sop_uid: str = ""
    content: datetime | None = None
    series_time: datetime | None = None
    created: datetime | None = None

    @property
    def name(self) -> str:
        """What the review is called under results/ (the review table): its kind and the hashed file
        name fetch_reviews gives it, never the path (a file name may carry a hospital UID)."""
        return review_file_name(self.sop_uid or str(self.path), self.modality)


@dataclass
class ReviewChoice:
    """Per scan the review taken, and the reviews of the same scan passed over with the reason."""
    taken: dict[str, ReviewObject] = field(default_factory=dict)
    passed_over: dict[str, list[tuple[ReviewObject, str]]] = field(default_factory=dict)

    def paths(self) -> dict[str, Path]:
        return {scan_id: obj.path for scan_id, obj in self.taken.items()}

    def notices(self) -> list[str]:
        """One line per scan corrected more than once, for the run's terminal: the review taken and
        those passed over, by their names (kind and hashed UID, as in the review table), not paths."""
        return [f"tumorburden review: scan {scan_id}: the newest of {len(items) + 1} reviews is taken, "
                f"{self.taken[scan_id].name}; passed over: " + "; ".join(f"{o.name} ({why})" for o, why in items)
                for scan_id, items in sorted(self.passed_over.items())]

    def passed_over_table(self) -> dict[str, list[str]]:
        """scan_id -> '<name>: <reason>' per passed-over review (what the review table lists)."""
        return {scan_id: [f"{obj.name}: {reason}" for obj, reason in items]
                for scan_id, items in sorted(self.passed_over.items())}


def referenced_series(ds: pydicom.Dataset) -> set[str]:
    """The series a SEG (ReferencedSeriesSequence) or an RTSTRUCT (through its frame of reference's
    RTReferencedSeriesSequence) says it was drawn on."""
    refs = {str(item.SeriesInstanceUID) for item in ds.get("ReferencedSeriesSequence", [])
            if "SeriesInstanceUID" in item}
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            refs |= {str(s.SeriesInstanceUID) for s in study.get("RTReferencedSeriesSequence", [])
                     if "SeriesInstanceUID" in s}
    return refs


def _when(ds: pydicom.Dataset, date_keyword: str, time_keyword: str) -> datetime | None:
    """A DA + TM pair as a datetime (midnight without the time); None when the date is missing or
    not a DICOM date."""
    date = str(ds.get(date_keyword, "") or "").strip()
    if not date:
        return None
    try:
        day = DA(date)
        clock = str(ds.get(time_keyword, "") or "").strip()
        return datetime.combine(day, TM(clock) if clock else dt_time())
    except (ValueError, TypeError):
        return None


def read_review_header(path: Path) -> ReviewObject | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (pydicom.errors.InvalidDicomError, OSError):
        return None
    modality = str(ds.get("Modality", ""))
    if modality not in MODALITIES:
        return None
    refs = referenced_series(ds)
    frame = str(ds.get("FrameOfReferenceUID", ""))
    if not frame and ds.get("ReferencedFrameOfReferenceSequence"):
        frame = str(ds.ReferencedFrameOfReferenceSequence[0].get("FrameOfReferenceUID", ""))
    content = _when(ds, "ContentDate", "ContentTime")
    if content is None and modality == "RTSTRUCT":
        content = _when(ds, "StructureSetDate", "StructureSetTime")
    return ReviewObject(Path(path), modality, str(ds.get("StudyInstanceUID", "")), str(ds.get("SeriesInstanceUID", "")),
                        str(ds.get("SeriesDescription", "")), refs, frame, str(ds.get("SOPInstanceUID", "")),
                        content, _when(ds, "SeriesDate", "SeriesTime"),
                        _when(ds, "InstanceCreationDate", "InstanceCreationTime"))


def _span(delta) -> str:
    """A time difference in words (no calendar date: those stay out of results/)."""
    seconds = delta.total_seconds()
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.3g} s"


def newest_review(scan_id: str, objects: list[ReviewObject]) -> tuple[ReviewObject, list[tuple[ReviewObject, str]]]:
    """The review of a scan that counts when the radiologist stored more than one: the newest by
    content date/time, then series date/time, then instance creation date/time, each used only when
    every review still in the running has it. Returns (taken, [(passed over, why)]); reviews nothing
    tells apart stop the run, naming the scan and the files."""
    running = sorted(objects, key=lambda o: str(o.path))
    dropped: list[tuple[ReviewObject, str, datetime]] = []  # (object, key that decided, newest value of that key)
    for what, attr in WHEN:
        if len(running) == 1:
            break
        values = [getattr(o, attr) for o in running]
        if any(v is None for v in values):
            continue
        newest = max(values)
        dropped += [(o, what, newest) for o, v in zip(running, values) if v != newest]
        running = [o for o, v in zip(running, values) if v == newest]
    if len(running) > 1:
        raise ReviewError(
            f"{' and '.join(str(o.path) for o in running)}: {len(running)} reviews of scan {scan_id} and nothing tells "
            "which is newer (the same or a missing content, series and instance creation date/time); keep the one "
            "the radiologist signed off and move the other out of the review folder")
    taken = running[0]
    reasons = []
    for obj, what, newest in dropped:
        older = newest - getattr(obj, dict(WHEN)[what])
        reasons.append((obj, f"older than the {taken.modality} taken ({what} {_span(older)} earlier)"))
    return taken, reasons


def review_objects(folder: Path) -> list[ReviewObject]:
    """Every SEG and RTSTRUCT under `folder` (headers only; other files are passed over)."""
    objects = []
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            if name.endswith(".part"):  # a download not yet complete (fetch_reviews)
                continue
            found = read_review_header(Path(root) / name)
            if found is not None:
                objects.append(found)
    return sorted(objects, key=lambda o: str(o.path))


def _dicom_files(image: str) -> list[str]:
    """The DICOM files of a scan's source: a folder, or discovery's series list (JSON)."""
    path = Path(image)
    if path.suffix == ".json":
        import json

        return list(json.loads(path.read_text())["files"])
    if path.is_dir():
        return sorted(str(p) for p in path.rglob("*") if p.is_file())
    return []


def _series_of(files: list[str], first_only: bool) -> tuple[str, set[str]]:
    """(study UID, series UIDs) of the readable DICOM files (only the first one when `first_only`)."""
    study, series = "", set()
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["StudyInstanceUID", "SeriesInstanceUID"])
        except (pydicom.errors.InvalidDicomError, OSError):
            continue
        if "SeriesInstanceUID" not in ds:
            continue
        study = study or str(ds.get("StudyInstanceUID", ""))
        series.add(str(ds.SeriesInstanceUID))
        if first_only:
            break
    return study, series


def index_reviews(folder: Path, scan_images: dict[str, str], series_description: str | None = None,
                  our_segs: dict[str, str] | None = None) -> dict[str, Path]:
    """scan_id -> the path of its review object in `folder` (choose_reviews)."""
    return choose_reviews(folder, scan_images, series_description, our_segs).paths()


def choose_reviews(folder: Path, scan_images: dict[str, str], series_description: str | None = None,
                   our_segs: dict[str, str] | None = None) -> ReviewChoice:
    """Each scan's review object in `folder`, from headers only.

    `scan_images`: scan_id -> the scan's `image` (DICOM folder or discovery's series list; a
    NIfTI source has no series a review could reference). `our_segs`: scan_id -> our DICOM-SEG of
    the scan (the hospital's copy in the private area), which a corrected SEG may reference.
    A review object that belongs to no scan stops the run; of several reviews of one scan the
    newest is taken (newest_review) and the others are passed over, each logged."""
    objects = review_objects(Path(folder))
    if not objects:
        return ReviewChoice()
    pattern = series_description.lower() if series_description else None
    first = {}  # scan_id -> (study UID, series UID of its first file): one header per scan
    for scan_id, image in scan_images.items():
        files = _dicom_files(str(image))
        if files:
            first[scan_id] = (files, *_series_of(files, first_only=True))
    seg_series = {}
    for scan_id, seg in (our_segs or {}).items():
        if Path(seg).is_file():
            header = read_review_header(Path(seg))
            if header is not None:
                seg_series[scan_id] = header.series_uid
    of_scan: dict[str, list[ReviewObject]] = {}
    for obj in objects:
        in_study = [s for s, (_, study, _) in first.items() if study and study == obj.study_uid]
        matches = []
        for scan_id in in_study:
            files, _, series = first[scan_id]
            if obj.referenced_series & (series | {seg_series.get(scan_id, "")}):
                matches.append(scan_id)
            elif pattern and fnmatch.fnmatch(obj.series_description.lower(), pattern):
                matches.append(scan_id)
            elif obj.referenced_series and obj.referenced_series & _series_of(files, first_only=False)[1]:
                matches.append(scan_id)  # a folder holding several series: its first file was another's
        if not matches:
            raise ReviewError(
                f"{obj.path}: this {obj.modality} belongs to no scan of the study (it must be in the study of a "
                "scan's source series and reference that series or our DICOM-SEG of it"
                + (f", or have a series description matching {series_description!r}" if pattern else "")
                + "); move it out of the review folder or export it from the scan's series")
        if len(matches) > 1:
            raise ReviewError(f"{obj.path}: this {obj.modality} matches scans {', '.join(sorted(matches))} of one study;"
                              " it must reference the series it was drawn on")
        of_scan.setdefault(matches[0], []).append(obj)
    choice = ReviewChoice()
    for scan_id, candidates in sorted(of_scan.items()):
        taken, passed_over = newest_review(scan_id, candidates)
        choice.taken[scan_id] = taken
        if passed_over:
            choice.passed_over[scan_id] = passed_over
            log.info("scan %s: %d reviews; %s taken, passed over: %s", scan_id, len(candidates), taken.name,
                     "; ".join(f"{o.name} ({why})" for o, why in passed_over))
    return choice


def review_references(scan_images: dict[str, str], our_segs: dict[str, str] | None = None) -> dict[str, set[str]]:
    """StudyInstanceUID -> the series a review in that study may reference: each scan's source series
    (from its first file's header) and our DICOM-SEG of the scan when it exists. Read from the private
    side only (the scans' files, our identified SEG copies): what `fetch_reviews` asks the server for."""
    studies: dict[str, set[str]] = {}
    for scan_id, image in sorted(scan_images.items()):
        study, series = _series_of(_dicom_files(str(image)), first_only=True)
        if not study:
            continue  # a NIfTI source: no series a review could reference
        refs = studies.setdefault(study, set())
        refs |= series
        seg = (our_segs or {}).get(scan_id)
        header = read_review_header(Path(seg)) if seg and Path(seg).is_file() else None
        if header is not None:
            refs.add(header.series_uid)
    return studies


def review_file_name(sop_instance_uid: str, modality: str) -> str:
    """A file name for a downloaded review that does not carry the hospital's UID (Snakemake's log
    prints input paths)."""
    return f"{modality.lower()}-{hashlib.sha256(sop_instance_uid.encode()).hexdigest()[:20]}.dcm"


def write_reviewed_segmentation(image_path: Path, segmentation_path: Path, review_path: Path, out: Path) -> str:
    """Write the scan's label map with the review's lesions in place of the model's; returns the
    review's kind (SEG or RTSTRUCT)."""
    from tumorburden.imaging.volume import load_nifti, save_nifti

    image = load_nifti(image_path, dtype=np.float32, what="CT image")
    ai = load_nifti(segmentation_path, dtype=np.uint8, what="segmentation")
    if not image.same_grid(ai):
        raise ReviewError(f"{segmentation_path}: grid {ai.shape} does not match the image {image_path} grid {image.shape}")
    review = read_review(review_path, image)
    labels = apply_review(np.asarray(ai.array), review)
    save_nifti(Volume(labels, image.affine), out, dtype=np.uint8)
    log.info("%s: %d lesion voxel(s) reviewed in place of the model's %d", review_path,
             int(np.count_nonzero(review)), int(np.count_nonzero(np.isin(ai.array, L.LESION_LABELS))))
    return review_modality(Path(review_path)) or "?"


# ---------------------------------------------------------------- reviews found on a DICOMweb server

def fetch_reviews(client, folder: Path, studies: dict[str, set[str]], series_description: str | None = None) -> list[Path]:
    """Download the review series of the given studies from a DICOMweb server into the review folder.

    `client`: a dicomweb_client.DICOMwebClient (the session the pull uses, with its credentials).
    `studies`: StudyInstanceUID -> the series a review there may reference (the scan's CT series and
    our DICOM-SEG of it). A SEG or RTSTRUCT series of such a study is a review when it references one
    of them (read from its WADO-RS metadata, no pixels) or, with `series_description`, when its
    description matches; our own SEG series are left alone. Each instance is written once (a rerun
    skips what is there; a file is renamed into place only when complete), named by a hash of its
    SOP Instance UID. Returns the review files, present or new."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pattern = series_description.lower() if series_description else None
    paths = []
    for study_uid, referable in sorted(studies.items()):
        for modality in MODALITIES:
            for found in client.search_for_series(study_instance_uid=study_uid, search_filters={"Modality": modality},
                                                  get_remaining=True):
                series_uid = str((found.get("0020000E", {}).get("Value") or [""])[0])
                if not series_uid or series_uid in referable:
                    continue
                description = str((found.get("0008103E", {}).get("Value") or [""])[0])
                wanted = bool(pattern) and fnmatch.fnmatch(description.lower(), pattern)
                if not wanted:
                    metadata = client.retrieve_series_metadata(study_uid, series_uid)
                    wanted = any(referenced_series(pydicom.Dataset.from_json(m, bulk_data_uri_handler=lambda *a: b""))
                                 & referable for m in metadata)
                if not wanted:
                    continue
                for ds in client.retrieve_series(study_uid, series_uid, media_types=AS_STORED):
                    path = folder / review_file_name(str(ds.SOPInstanceUID), modality)
                    if not path.exists():
                        partial = path.with_suffix(".part")
                        ds.save_as(partial, enforce_file_format=True)
                        partial.replace(path)
                        log.info("review %s of a scan's study downloaded to %s", modality, path)
                    paths.append(path)
    return paths
