"""DICOM headers -> series: indexing, geometry checks and the choice of one diagnostic series.

Everything here reads headers only (`stop_before_pixels`); pixel data is read by
`tumorburden.imaging.reader` once a series has been chosen and has passed these checks.

An enhanced (multi-frame) CT file becomes one `Slice` per frame, so ordering, geometry
checks and the reader treat a multi-frame image and a classic one-file-per-slice series alike.

Series choice (`choose`), per study, in this order:

1. Filters, each giving the reason a series is passed over: modality CT; not a localizer
   (ImageType LOCALIZER, or a description matching `localizer_keywords`); axial (slice
   normal within `max_axial_deg` of the body axis: coronal/sagittal reconstructions are
   passed over); at least `min_slices` slices; slice thickness within `thickness_mm`;
   and no geometry finding that rejects the series (missing slices under the reject
   policy, inconsistent orientation, ...).
2. Ranking of what is left: not matching `avoid_keywords` (e.g. lung or bone kernels,
   MIPs) first; then matching `phase_keywords` (e.g. portal venous) first; then the
   thinnest slice; then the most slices; then the lowest SeriesNumber; then the UID.
   Every other series gets the reason it lost against the chosen one.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.2"
MULTIFRAME_CT = {ENHANCED_CT_IMAGE_STORAGE, LEGACY_ENHANCED_CT_IMAGE_STORAGE}
NOT_IMAGES = {"DICOMDIR"}
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

# Header elements read at discovery (pydicom skips the rest of the file without parsing it).
TAGS = [
    "SOPClassUID", "SOPInstanceUID", "Modality", "PatientID", "PatientName", "PatientBirthDate",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription", "SeriesInstanceUID",
    "SeriesNumber", "SeriesDescription", "ImageType", "ImagePositionPatient",
    "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "SliceThickness",
    "SpacingBetweenSlices", "ConvolutionKernel", "ContrastBolusAgent", "RescaleSlope",
    "RescaleIntercept", "InstanceNumber", "NumberOfFrames", "BitsAllocated", "BitsStored",
    "PixelRepresentation", "SamplesPerPixel", "GantryDetectorTilt", "AcquisitionNumber",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence", "BodyPartExamined",
    "AccessionNumber", "ReferringPhysicianName", "InstitutionName",  # read only to redact them from free text
]

SELECTION_DEFAULTS = {
    "max_axial_deg": 45.0,
    "thickness_mm": [0.5, 5.0],
    "localizer_keywords": ["localizer", "localiser", "scout", "topogram", "surview", "scanogram", "pilot"],
    "phase_keywords": ["portal", "venous", "pv"],
    "avoid_keywords": ["lung", "bone", "mip", "minip"],
}


logging.getLogger("pydicom").setLevel(logging.ERROR)  # see read_header


class SeriesError(ValueError):
    """A series (or folder) that cannot be used: the message names the files and the reason."""


@dataclass
class Slice:
    """One image plane: a single-frame file, or one frame of a multi-frame file."""

    path: str
    frame: int | None  # index into a multi-frame file's frames, None for a single-frame file
    ipp: tuple
    iop: tuple
    pixel_spacing: tuple
    rows: int
    cols: int
    slope: float
    intercept: float
    # uncompressed little-endian 16-bit single-frame pixels that need no sign fix-up: the reader
    # may take them straight from the end of the file; None: unknown, decode with pydicom
    native16: str | None = None  # "<i2" | "<u2" | None


NATIVE_LE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


@dataclass
class Series:
    uid: str
    header: dict  # series-level attributes of the first file (no identity fields)
    patient: str  # the DICOM PatientID, never written out
    slices: list[Slice] = field(default_factory=list)
    files: set = field(default_factory=set)

    @property
    def n_slices(self) -> int:
        return len(self.slices)


@dataclass
class Geometry:
    """The ordered slices of a checked series and what the checks found."""

    slices: list[Slice]
    along: np.ndarray  # position of each slice along the normal (mm), ascending
    normal: np.ndarray
    step_mm: float  # median step between slices
    tilt_deg: float
    findings: list[dict]  # {"check", "severity": reject|warn, "message"}

    @property
    def rejected(self) -> list[dict]:
        return [f for f in self.findings if f["severity"] == "reject"]

    @property
    def needs_resampling(self) -> bool:
        return any(f["check"] in ("missing_slices", "uneven_spacing") and f["severity"] == "warn" for f in self.findings)


# --- headers ------------------------------------------------------------------------


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _floats(value) -> tuple | None:
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None


def _float(value, default=None):
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def read_header(path: str) -> dict:
    """See _read_header; pydicom's value validation is off while indexing (it costs a fifth of
    the time and a bad value still surfaces as a geometry finding)."""
    mode = pydicom.config.settings.reading_validation_mode
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        # a damaged file makes pydicom warn (log + warning) on its own lines; our record says
        # what is wrong in one line instead
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _read_header(path)
    finally:
        pydicom.config.settings.reading_validation_mode = mode


def _read_header(path: str) -> dict:
    """A file's header as a plain dict: {"status": "image"|"not_dicom"|"unreadable"|"other", ...}.

    Files without the 128-byte preamble are still read (old exports); a file that starts as
    DICOM but cannot be parsed is `unreadable` (truncated or damaged), anything else `not_dicom`.
    """
    name = os.path.basename(path)
    if name.upper() in NOT_IMAGES or name.startswith("."):
        return {"path": path, "status": "other", "why": "DICOMDIR or hidden file"}
    has_magic = True
    try:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=TAGS)
        except InvalidDicomError:  # no preamble/DICM: old exports write bare data sets
            has_magic = False
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=TAGS, force=True)
        if "SOPClassUID" not in ds:
            meta_sop = str(getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", ""))
            if meta_sop == MEDIA_STORAGE_DIRECTORY:
                return {"path": path, "status": "other", "why": "DICOMDIR"}
            if has_magic:  # a DICOM file whose data set did not parse
                return {"path": path, "status": "unreadable", "why": "damaged DICOM header (no SOPClassUID)"}
            return {"path": path, "status": "not_dicom"}
    except OSError as exc:
        return {"path": path, "status": "unreadable", "why": f"cannot open ({exc.strerror})"}
    except Exception as exc:  # pydicom raises many kinds on a damaged file
        if has_magic:
            return {"path": path, "status": "unreadable", "why": f"damaged DICOM header ({type(exc).__name__})"}
        return {"path": path, "status": "not_dicom"}
    meta = getattr(ds, "file_meta", None)
    return header_record(ds, path, _text(meta.get("TransferSyntaxUID")) if meta is not None else "")


def header_record(ds, path: str, transfer_syntax: str = "") -> dict:
    """The record of read_header from a data set already in memory (a pydicom Dataset, or the
    DICOM JSON metadata of a DICOMweb server as a `DicomJson`), `path` being where its file is or
    will be."""
    ds = ds if isinstance(ds, DicomJson) else _Fast(ds)
    sop = _text(ds.get("SOPClassUID"))
    rec = {
        "path": path,
        "status": "image" if ds.get("Rows") is not None else "other",
        "sop_class": sop,
        "modality": _text(ds.get("Modality")).upper(),
        "patient": _text(ds.get("PatientID")),
        "patient_name": _text(ds.get("PatientName")),
        "birth_date": _text(ds.get("PatientBirthDate")),
        "study_uid": _text(ds.get("StudyInstanceUID")),
        "study_date": _text(ds.get("StudyDate")),
        "study_time": _text(ds.get("StudyTime")),
        "series_uid": _text(ds.get("SeriesInstanceUID")),
        "series_number": _int(ds.get("SeriesNumber")),
        "description": _text(ds.get("SeriesDescription")),
        "image_type": _text(ds.get("ImageType")).upper(),
        "kernel": _text(ds.get("ConvolutionKernel")),
        "contrast_agent": _text(ds.get("ContrastBolusAgent")),
        "thickness": _float(ds.get("SliceThickness")),
        "transfer_syntax": transfer_syntax,
        "rows": _int(ds.get("Rows")),
        "cols": _int(ds.get("Columns")),
        "tilt": _float(ds.get("GantryDetectorTilt")),
        "body_part": _text(ds.get("BodyPartExamined")),
        "accession": _text(ds.get("AccessionNumber")),
        "referring": _text(ds.get("ReferringPhysicianName")),
        "institution": _text(ds.get("InstitutionName")),
    }
    try:
        rec["slices"] = _slices(ds, path, rec)
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        rec["slices"] = []
        rec["geometry_error"] = f"geometry attributes unreadable ({type(exc).__name__}: {exc})"
    return rec


# Value representations whose raw bytes are plain ASCII (no character set applies): read directly,
# which halves the cost of indexing compared with pydicom's generic conversion. Everything else
# (names, descriptions, sequences, big-endian files) goes through pydicom.
_ASCII_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"}


class _Fast:
    """Read access to the header elements of TAGS, converting the ASCII ones cheaply."""

    _tags = {kw: pydicom.datadict.tag_for_keyword(kw) for kw in TAGS}
    _vrs = {kw: pydicom.datadict.dictionary_VR(tag) for kw, tag in _tags.items()}

    def __init__(self, ds):
        self.ds = ds

    def __contains__(self, keyword):
        return keyword in self.ds

    def __getattr__(self, keyword):
        return getattr(self.ds, keyword)

    def __getitem__(self, keyword):
        return self.ds[keyword]

    def get(self, keyword, default=None):
        tag = self._tags.get(keyword)
        if tag is None or tag not in self.ds:
            return self.ds.get(keyword, default)
        raw = self.ds.get_item(tag)
        vr = raw.VR or self._vrs[keyword]
        value = raw.value
        if not isinstance(value, bytes) or not getattr(raw, "is_little_endian", True):
            return self.ds.get(keyword, default)
        if vr in _ASCII_VRS:
            parts = value.decode("ascii", "replace").strip("\0 ").split("\\")
            parts = [p.strip("\0 ") for p in parts]
            return parts if len(parts) > 1 else parts[0]
        if vr == "US" and len(value) >= 2:
            return int.from_bytes(value[:2], "little")
        return self.ds.get(keyword, default)


# DICOM JSON (PS3.18 F.2) keys of TAGS: a DICOMweb server's metadata of an instance, cut to these
JSON_TAGS = {f"{pydicom.datadict.tag_for_keyword(kw):08X}": kw for kw in TAGS}
# the JSON type each VR's values have in DICOM JSON (Table F.2.3-1), and DS and IS as strings too
# (servers send both, and pydicom reads both; header_record reads them with float() and int())
_JSON_NUMBER_VRS = {"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"}
_JSON_DECIMAL_VRS = {"DS", "IS"}
_JSON_STRING_VRS = {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}


class NotPlainJson(ValueError):
    """A DICOM JSON element that is not a plain string or number value: pydicom converts it."""


class DicomJson:
    """Keyword access to one instance's DICOM JSON, for header_record, with the values pydicom's
    Dataset.from_json gives (a value, or a list of several; a person name's groups joined by '=';
    pydicom's empty value of the VR when there is none). pydicom builds a DataElement per tag,
    1.5 CPU-ms an instance; this reads the JSON values as they are. Anything else than strings,
    numbers and person names (sequences, inline binary, bulk data, a value of the wrong JSON type)
    raises NotPlainJson: `json_header_record` then lets pydicom convert that instance."""

    __slots__ = ("values",)

    def __init__(self, item: dict):
        self.values = {}
        for key, keyword in JSON_TAGS.items():
            element = item.get(key)
            if element is not None:
                self.values[keyword] = _json_value(element)

    def __contains__(self, keyword) -> bool:
        return keyword in self.values

    def get(self, keyword, default=None):
        return self.values.get(keyword, default)


def _json_value(element: dict):
    vr = element.get("vr")
    if "Value" not in element:
        if "BulkDataURI" in element or "InlineBinary" in element or vr == "SQ":
            raise NotPlainJson(vr)
        return pydicom.dataelem.empty_value_for_VR(vr)
    values = element["Value"]
    if not isinstance(values, list):
        raise NotPlainJson(vr)
    if not values:
        return pydicom.dataelem.empty_value_for_VR(vr)
    if vr in _JSON_NUMBER_VRS:
        kind = (int, float)
    elif vr in _JSON_DECIMAL_VRS:
        kind = (int, float, str)
    elif vr in _JSON_STRING_VRS:
        kind = str
    elif vr == "PN":
        values = [_json_person_name(v) for v in values]
        kind = str
    else:
        raise NotPlainJson(vr)
    if not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
        raise NotPlainJson(vr)
    return values[0] if len(values) == 1 else values


def _json_person_name(value) -> str:
    if not isinstance(value, dict):
        raise NotPlainJson("PN")
    groups = ("Alphabetic", "Ideographic", "Phonetic")
    n = 3 if "Phonetic" in value else 2 if "Ideographic" in value else 1
    return "=".join(value.get(group, "") for group in groups[:n])


def json_header_record(item: dict, path: str) -> dict:
    """header_record of one instance's DICOM JSON metadata (a DICOMweb server's answer), read
    through DicomJson, or through pydicom's Dataset.from_json where it holds more than plain values
    (an enhanced CT's functional group sequences, say)."""
    try:
        ds = DicomJson(item)
    except NotPlainJson:
        # only discovery's elements: pydicom converts each with ~0.1 CPU-ms, and a CT header has
        # hundreds; pixel data (a BulkDataURI) is never among them
        ds = pydicom.Dataset.from_json({key: item[key] for key in JSON_TAGS if key in item})
    return header_record(ds, path)


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _slices(ds, path: str, rec: dict) -> list[Slice]:
    rows, cols = rec["rows"], rec["cols"]
    if rows is None:
        return []
    if rec["sop_class"] in MULTIFRAME_CT or "PerFrameFunctionalGroupsSequence" in ds:
        return _frames(ds, path, rows, cols, rec)
    ipp, iop, ps = _floats(ds.get("ImagePositionPatient")), _floats(ds.get("ImageOrientationPatient")), _floats(ds.get("PixelSpacing"))
    if ipp is None or iop is None or ps is None or len(ipp) != 3 or len(iop) != 6 or len(ps) != 2:
        return []
    native16 = None
    signed = ds.get("PixelRepresentation") == 1
    # no transfer syntax: a bare data set without file meta (old exports), always uncompressed
    if ((rec["transfer_syntax"] in NATIVE_LE_SYNTAXES or not rec["transfer_syntax"]) and ds.get("BitsAllocated") == 16
            and ds.get("SamplesPerPixel", 1) == 1 and int(ds.get("NumberOfFrames", 1) or 1) == 1
            and (ds.get("BitsStored") == 16 or not signed)):
        native16 = "<i2" if signed else "<u2"
    return [Slice(path, None, ipp, iop, ps, rows, cols, _float(ds.get("RescaleSlope"), 1.0) or 1.0,
                  _float(ds.get("RescaleIntercept"), 0.0), native16)]


def _group(item, shared, name):
    """A functional group macro of a frame, falling back to the shared one."""
    for source in (item, shared):
        if source is not None and name in source and len(source[name].value):
            return source[name].value[0]
    return None


def _frames(ds, path: str, rows: int, cols: int, rec: dict) -> list[Slice]:
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    out = []
    for k, item in enumerate(ds.get("PerFrameFunctionalGroupsSequence") or []):
        pos = _group(item, shared, "PlanePositionSequence")
        ori = _group(item, shared, "PlaneOrientationSequence")
        meas = _group(item, shared, "PixelMeasuresSequence")
        trans = _group(item, shared, "PixelValueTransformationSequence")
        if pos is None or ori is None or meas is None:
            return []
        if k == 0 and rec.get("thickness") is None:
            rec["thickness"] = _float(meas.get("SliceThickness"))
        out.append(Slice(path, k, _floats(pos.ImagePositionPatient), _floats(ori.ImageOrientationPatient),
                         _floats(meas.PixelSpacing), rows, cols,
                         _float(trans.get("RescaleSlope"), 1.0) if trans is not None else 1.0,
                         _float(trans.get("RescaleIntercept"), 0.0) if trans is not None else 0.0))
    return out


def list_files(root: Path) -> list[str]:
    """Every file under root (any name, any extension), sorted for a deterministic order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames))
    return out


def _headers_chunk(paths: list[str]) -> list[dict]:
    return [read_header(p) for p in paths]


def read_headers(paths: list[str], workers: int = 1, progress=None, min_files_for_pool: int = 200,
                 chunk: int = 500) -> list[dict]:
    """Headers of every file, in the order of `paths`; `workers` processes when > 1 (and there
    are enough files to pay for starting them)."""
    if workers <= 1 or len(paths) < min_files_for_pool:
        out = []
        for i, p in enumerate(paths):
            out.append(read_header(p))
            if progress and (i + 1) % 5000 == 0:
                progress(i + 1, len(paths))
        return out
    size = chunk
    chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
    out = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for chunk in pool.map(_headers_chunk, chunks):
            out.extend(chunk)
            if progress and len(out) % 5000 < size:
                progress(len(out), len(paths))
    return out


SERIES_FIELDS = ("sop_class", "modality", "study_uid", "study_date", "study_time", "series_number",
                 "description", "image_type", "kernel", "contrast_agent", "thickness", "transfer_syntax",
                 "body_part")


def group_series(records: list[dict]) -> list[Series]:
    """Image records grouped by SeriesInstanceUID (files without one form a series per folder)."""
    by_uid: dict[str, Series] = {}
    for rec in records:
        if rec["status"] != "image":
            continue
        uid = rec["series_uid"] or f"no-uid:{os.path.dirname(rec['path'])}"
        series = by_uid.get(uid)
        if series is None:
            header = {k: rec.get(k) for k in SERIES_FIELDS}
            header["geometry_error"] = None
            series = by_uid[uid] = Series(uid, header, rec["patient"])
        series.slices.extend(rec["slices"])
        series.files.add(rec["path"])
        if rec.get("geometry_error") or not rec["slices"]:
            series.header["geometry_error"] = series.header["geometry_error"] or (
                f"{os.path.basename(rec['path'])}: " + (rec.get("geometry_error") or "no position/orientation/pixel spacing"))
        if rec.get("transfer_syntax") and rec["transfer_syntax"] not in (series.header["transfer_syntax"] or ""):
            series.header["transfer_syntax"] = f"{series.header['transfer_syntax']}|{rec['transfer_syntax']}"
    return sorted(by_uid.values(), key=lambda s: (s.header["study_date"] or "", s.header["series_number"] or 0, s.uid))


# --- geometry checks -------------------------------------------------------------------

GEOMETRY_DEFAULTS = {
    "min_slices": 2,
    "max_gap_ratio": 1.5,
    "uneven_step_tolerance": 0.05,
    "irregular_slices": "reject",
    "orientation_atol": 1e-4,
    "spacing_atol_mm": 1e-3,
    "max_tilt_deg": 0.5,
}


def _names(slices, limit=3) -> str:
    names = sorted({os.path.basename(s.path) + (f"[frame {s.frame + 1}]" if s.frame is not None else "") for s in slices})
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _spacing(sl) -> str:
    return "\\".join(f"{v:g}" for v in sl.pixel_spacing)


def check_geometry(series: Series, settings: dict) -> Geometry:
    """Order the slices along the normal and check that they form one regular grid."""
    s = {**GEOMETRY_DEFAULTS, **settings}
    findings: list[dict] = []

    def finding(check, message, severity="reject"):
        findings.append({"check": check, "severity": severity, "message": message})

    slices = list(series.slices)
    if series.header.get("geometry_error"):
        finding("unreadable_geometry", series.header["geometry_error"])
    if len(slices) < s["min_slices"]:
        finding("too_few_slices", f"{len(slices)} slice(s), need at least {s['min_slices']}")
        return Geometry(slices, np.zeros(len(slices)), np.array([0.0, 0.0, 1.0]), 0.0, 0.0, findings)
    bad = [sl for sl in slices if not (np.all(np.isfinite(sl.pixel_spacing)) and min(sl.pixel_spacing) > 0)]
    if bad:
        finding("bad_pixel_spacing", f"PixelSpacing {_spacing(bad[0])} mm is zero, negative or not a number "
                f"({_names(bad)}); the pixel size is unknown")
        return Geometry(slices, np.zeros(len(slices)), np.array([0.0, 0.0, 1.0]), 0.0, 0.0, findings)
    bad = [sl for sl in slices if not (np.all(np.isfinite(sl.ipp)) and np.all(np.isfinite(sl.iop)))]
    if bad:
        finding("bad_position", f"ImagePositionPatient or ImageOrientationPatient is not a number ({_names(bad)})")
        return Geometry(slices, np.zeros(len(slices)), np.array([0.0, 0.0, 1.0]), 0.0, 0.0, findings)
    iop = np.array([sl.iop for sl in slices])
    ref = iop[0]
    off = np.abs(iop - ref).max(axis=1) > s["orientation_atol"]
    if off.any():
        finding("inconsistent_orientation", f"ImageOrientationPatient differs between slices ({_names([sl for sl, o in zip(slices, off) if o])} "
                f"vs {_names([slices[0]], 1)}); split the series or export it again")
    ps = np.array([sl.pixel_spacing for sl in slices])
    off = np.abs(ps - ps[0]).max(axis=1) > s["spacing_atol_mm"]
    if off.any():
        finding("inconsistent_pixel_spacing", f"PixelSpacing differs between slices ({_names([sl for sl, o in zip(slices, off) if o])})")
    off = np.array([(sl.rows, sl.cols) != (slices[0].rows, slices[0].cols) for sl in slices])
    if off.any():
        finding("inconsistent_matrix", f"Rows x Columns differ between slices ({_names([sl for sl, o in zip(slices, off) if o])})")
    row, col = ref[:3], ref[3:]
    normal = np.cross(row, col)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3) or abs(row @ col) > 1e-3:
        finding("bad_orientation", "ImageOrientationPatient is not two orthonormal directions")
        return Geometry(slices, np.zeros(len(slices)), np.array([0.0, 0.0, 1.0]), 0.0, 0.0, findings)
    normal = normal / np.linalg.norm(normal)
    ipp = np.array([sl.ipp for sl in slices])
    along = ipp @ normal
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    ipp, along = ipp[order], along[order]
    steps = np.diff(along)
    dup = np.flatnonzero(steps < s["spacing_atol_mm"])
    if dup.size:
        pairs = [sl for i in dup[:3] for sl in (slices[i], slices[i + 1])]
        finding("duplicate_positions", f"{dup.size} pair(s) of slices at the same position ({_names(pairs, 4)}, "
                f"at {along[dup[0]]:.2f} mm along the normal): the series mixes acquisitions")
        return Geometry(slices, along, normal, float(np.median(steps)), 0.0, findings)
    median = float(np.median(steps))
    irregular = "warn" if s["irregular_slices"] == "resample" else "reject"
    then = "; resampled to a uniform step" if irregular == "warn" else "; re-export the full series or set imaging.irregular_slices: resample"
    gaps = np.flatnonzero(steps > s["max_gap_ratio"] * median)
    if gaps.size:
        where = ", ".join(f"between {_names([slices[i]], 1)} and {_names([slices[i + 1]], 1)} "
                          f"({along[i]:.2f}->{along[i + 1]:.2f} mm)" for i in gaps[:3])
        missing = int(sum(round(steps[i] / median) - 1 for i in gaps))
        finding("missing_slices", f"about {missing} missing slice(s): gap(s) {where}, median step {median:.3g} mm{then}", irregular)
    regular = np.delete(steps, gaps)
    spread = float((regular.max() - regular.min()) / median) if regular.size else 0.0
    if spread > s["uneven_step_tolerance"]:
        finding("uneven_spacing", f"slice steps vary {regular.min():.3g}..{regular.max():.3g} mm "
                f"(more than {s['uneven_step_tolerance']:.0%} of the median {median:.3g} mm){then}", irregular)
    # Gantry tilt: the slice origins do not move along the normal but obliquely.
    shift = ipp[-1] - ipp[0]
    tilt = float(np.degrees(np.arccos(np.clip(abs(shift @ normal) / np.linalg.norm(shift), -1, 1))))
    if tilt > s["max_tilt_deg"]:
        finding("gantry_tilt", f"slices are sheared by {tilt:.1f} degrees (gantry tilt); the affine keeps the shear "
                "(SimpleITK ignores it)", "warn")
    thickness = series.header.get("thickness")
    if thickness and abs(thickness - median) > 0.1 * median:
        finding("thickness_vs_step", f"SliceThickness {thickness:.3g} mm differs from the slice step {median:.3g} mm", "warn")
    return Geometry(slices, along, normal, median, tilt, findings)


# --- series choice -------------------------------------------------------------------


def orientation_name(normal: np.ndarray, max_axial_deg: float = 45.0) -> str:
    """axial / coronal / sagittal by the patient axis closest to the slice normal (oblique when
    the angle to it exceeds `max_axial_deg`)."""
    axis = int(np.argmax(np.abs(normal)))
    angle = float(np.degrees(np.arccos(min(1.0, abs(normal[axis])))))
    if angle > max_axial_deg:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def _matches(text: str, keywords) -> str | None:
    for kw in keywords:
        if re.search(rf"(?<![a-z0-9]){re.escape(kw.lower())}(?![a-z0-9])", text.lower()):
            return kw
    return None


def series_summary(series: Series, geometry: Geometry, s: dict) -> dict:
    h = series.header
    first = series.slices[0] if series.slices else None
    text = f"{h['description']} {h['kernel']} {h['contrast_agent']}"
    return {
        "series_uid": series.uid,
        "study_uid": h["study_uid"],
        "study_date": h["study_date"],
        "series_number": h["series_number"],
        "modality": h["modality"],
        "description": h["description"],
        "image_type": h["image_type"],
        "orientation": orientation_name(geometry.normal, s["max_axial_deg"]) if first else "",
        "n_files": len(series.files),
        "n_slices": series.n_slices,
        "slice_thickness_mm": h["thickness"],
        "slice_step_mm": round(geometry.step_mm, 6) if geometry.step_mm else None,
        "pixel_spacing_mm": f"{first.pixel_spacing[0]:.6g}\\{first.pixel_spacing[1]:.6g}" if first else "",
        "rows": first.rows if first else None,
        "columns": first.cols if first else None,
        "kernel": h["kernel"],
        "contrast_agent": h["contrast_agent"],
        "phase_hint": _matches(text, s["phase_keywords"]) or "",
        "transfer_syntax": h["transfer_syntax"],
        "multiframe": h["sop_class"] in MULTIFRAME_CT,
        "tilt_deg": round(geometry.tilt_deg, 3),
        "findings": "; ".join(f"{f['check']}: {f['message']}" for f in geometry.findings),
    }


def _filter_reason(series: Series, geometry: Geometry, s: dict) -> str | None:
    h = series.header
    if h["modality"] != "CT" and h["sop_class"] not in (CT_IMAGE_STORAGE, *MULTIFRAME_CT):
        return f"modality {h['modality'] or '?'}, not CT"
    if "LOCALIZER" in h["image_type"].split("\\") or _matches(h["description"], s["localizer_keywords"]):
        return "localizer/scout"
    if series.slices and geometry.normal is not None:
        name = orientation_name(geometry.normal, s["max_axial_deg"])
        if name != "axial":
            return f"{name} slices, not axial"
    if series.n_slices < s["min_slices"]:
        return f"{series.n_slices} slice(s), need at least {s['min_slices']}"
    lo, hi = s["thickness_mm"]
    thickness = h["thickness"] or geometry.step_mm
    if thickness and not lo <= thickness <= hi:
        return f"slice thickness {thickness:.3g} mm outside [{lo:g}, {hi:g}] mm"
    if geometry.rejected:
        return "; ".join(f"{f['check']}: {f['message']}" for f in geometry.rejected)
    return None


def _rank(series: Series, geometry: Geometry, s: dict) -> tuple:
    h = series.header
    text = f"{h['description']} {h['kernel']}"
    return (
        _matches(text, s["avoid_keywords"]) is not None,
        _matches(f"{text} {h['contrast_agent']}", s["phase_keywords"]) is None,
        round(h["thickness"] or geometry.step_mm or 99.0, 3),
        -series.n_slices,
        h["series_number"] if h["series_number"] is not None else 1 << 31,
        series.uid,
    )


def describe(series: Series) -> str:
    h = series.header
    return f"#{h['series_number'] if h['series_number'] is not None else '?'}" + (f" '{h['description']}'" if h["description"] else "")


def _lost_because(loser: tuple, winner: tuple, series: Series, chosen: Series) -> str:
    if loser[0] != winner[0]:
        return f"description/kernel matches an avoided keyword; chose {describe(chosen)}"
    if loser[1] != winner[1]:
        return f"no contrast-phase keyword, {describe(chosen)} has one"
    if loser[2] != winner[2]:
        return f"thicker slices ({loser[2]:g} mm) than {describe(chosen)} ({winner[2]:g} mm)"
    if loser[3] != winner[3]:
        return f"fewer slices ({-loser[3]}) than {describe(chosen)} ({-winner[3]})"
    return f"tie broken by SeriesNumber/UID in favour of {describe(chosen)}"


def choose(candidates: list[tuple[Series, Geometry]], settings: dict, forced_uid: str | None = None
           ) -> tuple[tuple[Series, Geometry] | None, dict[str, tuple[str, str]]]:
    """The diagnostic series of one study, and {uid: (status, reason)} for every series.

    status is "chosen", "passed_over" (usable but ranked lower) or "rejected" (filtered out)."""
    s = {**SELECTION_DEFAULTS, **GEOMETRY_DEFAULTS, **settings}
    verdicts: dict[str, tuple[str, str]] = {}
    if forced_uid is not None:
        chosen = next(((se, g) for se, g in candidates if se.uid == forced_uid), None)
        for se, g in candidates:
            if chosen is not None and se is chosen[0]:
                bad = g.rejected
                verdicts[se.uid] = ("rejected", "forced by the override table, but " + "; ".join(
                    f"{f['check']}: {f['message']}" for f in bad)) if bad else ("chosen", "forced by the override table")
            else:
                verdicts[se.uid] = ("passed_over", "another series is forced by the override table")
        if chosen is not None and chosen[1].rejected:
            chosen = None
        return chosen, verdicts
    eligible = []
    for se, g in candidates:
        why = _filter_reason(se, g, s)
        if why:
            verdicts[se.uid] = ("rejected", why)
        else:
            eligible.append((_rank(se, g, s), se, g))
    if not eligible:
        return None, verdicts
    eligible.sort(key=lambda t: t[0])
    best_rank, best, best_g = eligible[0]
    verdicts[best.uid] = ("chosen", "best-ranked CT series" + (f" of {len(eligible)} usable" if len(eligible) > 1 else ""))
    for rank, se, _ in eligible[1:]:
        verdicts[se.uid] = ("passed_over", _lost_because(rank, best_rank, se, best))
    return (best, best_g), verdicts


def unusable_reason(candidates: list[tuple[Series, Geometry]], verdicts: dict) -> str:
    """One line saying why no series of a study/folder could be used."""
    if not candidates:
        return "no DICOM image series"
    ct = [(se, g) for se, g in candidates if not verdicts[se.uid][1].startswith("modality")]
    if not ct:
        mods = sorted({se.header["modality"] or "?" for se, _ in candidates})
        return f"no CT series (modalities: {', '.join(mods)})"
    parts = [f"{describe(se)}: {verdicts[se.uid][1]}" for se, _ in ct[:4]]
    more = f" (and {len(ct) - 4} more)" if len(ct) > 4 else ""
    return "no usable CT series: " + " | ".join(parts) + more
