"""Read a CT scan (a DICOM series folder or a NIfTI file) into an HU NIfTI with its RAS affine.

DICOM handling, in order:

1. Every file under the folder (any name, any extension, sub-folders included) is read
   header-only. Files that are not DICOM, DICOMDIR files, non-CT objects and localizers
   (ImageType containing LOCALIZER) are counted and skipped.
2. The remaining CT image slices are grouped by SeriesInstanceUID. Series choice rule
   (a stand-in until series selection by kernel/phase is configurable): the series with
   the most slices; ties are broken by the lowest SeriesNumber, then by UID, so the
   choice is deterministic. Every other series is listed in the QC report's warnings.
3. Slices are ordered by their position along the slice normal (the cross product of
   the ImageOrientationPatient row and column cosines), never by InstanceNumber or file name.
4. Quality checks; each failure is one ValueError naming the folder and the problem:
   the same orientation, pixel spacing and matrix on every slice, no two slices at one
   position, at least `min_slices` slices, and no missing slice (a step bigger than
   `max_gap_ratio` x the median step).
5. HU = stored value x RescaleSlope + RescaleIntercept (per slice; pydicom already returns
   signed or unsigned stored values as the file declares). The volume is written as int16
   when every slope and intercept is integral and the HU fit, otherwise as float32.
6. The affine maps (column, row, slice) indices to RAS mm: the DICOM (LPS) affine with its
   x and y rows negated.

The QC report (JSON) holds counts, geometry, HU range and warnings; never a patient's
name, ID or birth date (nor any UID).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from tumorburden.imaging.volume import Volume, load_nifti, save_nifti

log = logging.getLogger(__name__)

DEFAULTS = {
    "min_slices": 2,  # fewer slices is not a volume
    "max_gap_ratio": 1.5,  # a step above this x the median step = a missing slice
    "uneven_step_warn": 0.05,  # relative spread of slice steps reported as a warning
    "orientation_atol": 1e-4,  # direction cosines that differ by more are another orientation
    "spacing_atol_mm": 1e-3,
}

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
NIFTI_SUFFIXES = (".nii", ".nii.gz")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def ingest(series: Path, out: Path, qc_path: Path | None = None, settings: dict | None = None) -> Volume:
    """Read `series` (DICOM folder or NIfTI file), write `out` (HU NIfTI) and the QC JSON."""
    s = {**DEFAULTS, **(settings or {})}
    series, out = Path(series), Path(out)
    if not series.exists():
        raise FileNotFoundError(f"{series}: no such file or folder (check the scan's image path)")
    if series.is_file() and is_nifti(series):
        volume, qc = read_nifti(series)
    elif series.is_dir():
        volume, qc = read_dicom_series(series, s)
    else:
        raise ValueError(f"{series}: not a DICOM series folder nor a .nii/.nii.gz file")

    dtype = hu_dtype(volume.array, qc.pop("_integral", False))
    save_nifti(volume, out, dtype=dtype)
    qc.update(
        shape=list(volume.shape),
        spacing_mm=[round(v, 6) for v in volume.spacing],
        hu_min=float(np.min(volume.array)),
        hu_max=float(np.max(volume.array)),
        dtype=np.dtype(dtype).name,
        orientation="".join(_axcodes(volume.affine)),
    )
    if qc_path is not None:
        qc_path = Path(qc_path)
        qc_path.parent.mkdir(parents=True, exist_ok=True)
        qc_path.write_text(json.dumps(qc, indent=2, sort_keys=True) + "\n")
    for w in qc["warnings"]:
        log.warning("%s: %s", series, w)
    log.info("%s -> %s: %s voxels of %s mm", series, out, qc["shape"], qc["spacing_mm"])
    return volume


def _axcodes(affine: np.ndarray) -> tuple[str, ...]:
    import nibabel as nib

    return nib.aff2axcodes(affine)


def hu_dtype(array: np.ndarray, integral: bool) -> type:
    """int16 when the HU are whole numbers within int16, else float32."""
    if integral and array.size and array.min() >= -32768 and array.max() <= 32767:
        return np.int16
    return np.float32


def read_nifti(path: Path) -> tuple[Volume, dict]:
    try:
        volume = load_nifti(path)
    except Exception as exc:  # nibabel raises many kinds for a damaged file
        raise ValueError(f"{path}: cannot read as NIfTI ({exc})") from exc
    data = volume.array
    integral = np.issubdtype(data.dtype, np.integer) or bool(np.all(np.mod(data, 1) == 0))
    volume = Volume(data.astype(np.float32) if not integral else data, volume.affine)
    qc = {"format": "nifti", "warnings": [], "_integral": integral}
    return volume, qc


# --- DICOM -------------------------------------------------------------------------


def _read_header(path: Path):
    """Header of a DICOM file, or None when the file is not DICOM."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError:
        pass
    except Exception:
        return None
    # Files written without the 128-byte preamble are still DICOM; accept them only when
    # they parse into an image header.
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        return ds if "SOPClassUID" in ds and "ImagePositionPatient" in ds else None
    except Exception:
        return None


def _is_ct_slice(ds) -> bool:
    sop = str(ds.get("SOPClassUID", ""))
    if sop == ENHANCED_CT_IMAGE_STORAGE:
        return False  # multi-frame: not supported by this reader
    if sop != CT_IMAGE_STORAGE and ds.get("Modality", "") != "CT":
        return False
    if "LOCALIZER" in [str(v).upper() for v in (ds.get("ImageType") or [])]:
        return False
    needed = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")
    return all(k in ds for k in needed)


def read_dicom_series(folder: Path, s: dict) -> tuple[Volume, dict]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    n_not_dicom = n_skipped = 0
    by_series: dict[str, list] = defaultdict(list)
    for path in files:
        if path.name.upper() == "DICOMDIR":
            n_skipped += 1
            continue
        ds = _read_header(path)
        if ds is None:
            n_not_dicom += 1
        elif not _is_ct_slice(ds):
            n_skipped += 1
        else:
            by_series[str(ds.get("SeriesInstanceUID", ""))].append((path, ds))
    if not by_series:
        raise ValueError(
            f"{folder}: no CT image series found ({len(files)} files read, {n_not_dicom} not DICOM, "
            f"{n_skipped} not CT images or localizers)"
        )

    def rank(item):
        uid, slices = item
        number = slices[0][1].get("SeriesNumber")
        return (-len(slices), int(number) if number not in (None, "") else 1 << 31, uid)

    ranked = sorted(by_series.items(), key=rank)
    uid, slices = ranked[0]
    first = slices[0][1]
    label = _series_label(folder, first)
    others = [f"{_describe(sl[0][1])} ({len(sl)} slices)" for _, sl in ranked[1:]]
    warnings = []
    if others:
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        warnings.append(f"ignored {len(others)} other series with fewer slices: {', '.join(others[:5])}{more}")
    if len(slices) < s["min_slices"]:
        raise ValueError(f"{label}: {len(slices)} slice(s), need at least {s['min_slices']}")

    # Geometry must be one grid for the whole series.
    iop = np.array([[float(v) for v in ds.ImageOrientationPatient] for _, ds in slices])
    if np.abs(iop - iop[0]).max() > s["orientation_atol"]:
        raise ValueError(f"{label}: slices have different orientations (ImageOrientationPatient); "
                         "split the series or export it again")
    ps = np.array([[float(v) for v in ds.PixelSpacing] for _, ds in slices])
    if np.abs(ps - ps[0]).max() > s["spacing_atol_mm"]:
        raise ValueError(f"{label}: slices have different pixel spacings {sorted(set(map(tuple, ps)))}")
    matrix = {(int(ds.Rows), int(ds.Columns)) for _, ds in slices}
    if len(matrix) > 1:
        raise ValueError(f"{label}: slices have different matrix sizes {sorted(matrix)}")
    row_cos, col_cos = iop[0, :3], iop[0, 3:]
    normal = np.cross(row_cos, col_cos)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3):
        raise ValueError(f"{label}: ImageOrientationPatient is not two orthonormal directions")

    ipp = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in slices])
    along = ipp @ normal
    order = np.argsort(along, kind="stable")
    slices = [slices[i] for i in order]
    ipp, along = ipp[order], along[order]
    steps = np.diff(along)
    if np.any(steps < s["spacing_atol_mm"]):
        dup = along[1:][steps < s["spacing_atol_mm"]]
        raise ValueError(f"{label}: several slices at the same position ({_mm(dup)} mm along the normal); "
                         "the folder mixes acquisitions of one series")
    median = float(np.median(steps))
    gaps = np.flatnonzero(steps > s["max_gap_ratio"] * median)
    if gaps.size:
        where = ", ".join(f"{along[i]:.2f}->{along[i + 1]:.2f}" for i in gaps[:5])
        raise ValueError(f"{label}: missing slice(s): gap(s) at {where} mm along the normal "
                         f"(median step {median:.3g} mm); re-export the full series")
    spread = float((steps.max() - steps.min()) / median)
    if spread > s["uneven_step_warn"]:
        warnings.append(f"uneven slice steps {steps.min():.3g}..{steps.max():.3g} mm; "
                        "the affine uses the mean step")
    thickness = first.get("SliceThickness")
    if thickness not in (None, "") and abs(float(thickness) - median) > 0.1 * median:
        warnings.append(f"SliceThickness {float(thickness):.3g} mm differs from the slice step {median:.3g} mm")

    # LPS affine of (column i, row j, slice k): PixelSpacing is (between rows, between columns).
    step = (ipp[-1] - ipp[0]) / (len(slices) - 1)  # keeps gantry tilt as a shear
    if np.linalg.norm(np.cross(step / np.linalg.norm(step), normal)) > 1e-3:
        warnings.append("slices are sheared (gantry tilt); the affine keeps the shear")
    lps = np.eye(4)
    lps[:3, 0] = row_cos * ps[0, 1]
    lps[:3, 1] = col_cos * ps[0, 0]
    lps[:3, 2] = step
    lps[:3, 3] = ipp[0]
    affine = LPS_TO_RAS @ lps

    slope = np.array([float(ds.get("RescaleSlope", 1) or 1) for _, ds in slices])
    intercept = np.array([float(ds.get("RescaleIntercept", 0) or 0) for _, ds in slices])
    integral = bool(np.all(np.mod(slope, 1) == 0) and np.all(np.mod(intercept, 1) == 0))
    rows, cols = next(iter(matrix))
    # Integral rescales are exact in float32 for CT ranges; fill one preallocated array so a
    # 512x512x300 series never holds more than the output plus one slice.
    array = np.empty((cols, rows, len(slices)), dtype=np.float32)
    for k, (path, _) in enumerate(slices):
        try:
            pixels = pydicom.dcmread(path).pixel_array
        except Exception as exc:
            raise ValueError(f"{path}: cannot decode pixel data ({exc}); install the codec "
                             "(pylibjpeg / python-gdcm) or export uncompressed") from exc
        if pixels.shape != (rows, cols):
            raise ValueError(f"{path}: pixel array {pixels.shape} does not match Rows x Columns {rows}x{cols}")
        array[:, :, k] = (pixels.astype(np.float32) * np.float32(slope[k]) + np.float32(intercept[k])).T
    log.info("%s: %d slices of series %s", folder, len(slices), _describe(first))
    qc = {
        "format": "dicom",
        "n_files": len(files),
        "n_not_dicom": n_not_dicom,
        "n_skipped": n_skipped,
        "n_series": len(by_series),
        "n_slices": len(slices),
        "series_description": str(first.get("SeriesDescription", "")),
        "series_number": _int_or_none(first.get("SeriesNumber")),
        "slice_step_mm": round(median, 6),
        "slice_thickness_mm": float(thickness) if thickness not in (None, "") else None,
        "rescale_slope": sorted(set(slope.tolist())),
        "rescale_intercept": sorted(set(intercept.tolist())),
        "convolution_kernel": str(first.get("ConvolutionKernel", "")),
        "warnings": warnings,
        "_integral": integral,
    }
    return Volume(array, affine), qc


def _int_or_none(v):
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _describe(ds) -> str:
    number = ds.get("SeriesNumber", "?")
    desc = str(ds.get("SeriesDescription", "")).strip()
    return f"#{number}" + (f" '{desc}'" if desc else "")


def _series_label(folder: Path, ds) -> str:
    return f"{folder} (series {_describe(ds)})"


def _mm(values) -> str:
    return ", ".join(f"{v:.2f}" for v in list(values)[:5])
