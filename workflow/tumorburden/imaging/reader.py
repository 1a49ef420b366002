"""Pixel data of a checked series -> HU `Volume` with its RAS affine, as SimpleITK reads it.

Agreement with SimpleITK's ImageSeriesReader (GDCM), which the tests check voxel for voxel:
- slices ordered by position along the slice normal (cross product of the row and column
  cosines of ImageOrientationPatient), ascending; the first slice is the origin;
- voxel (i, j, k) = (column, row, slice); i steps along the row cosine by PixelSpacing[1],
  j along the column cosine by PixelSpacing[0] (non-square pixels), k along the normal by
  the position step (not SliceThickness);
- HU = stored value x RescaleSlope + RescaleIntercept, per slice (per frame for enhanced
  CT), on the stored values as the file declares them (signed or unsigned, any BitsStored);
- the LPS affine is turned into RAS by negating its x and y rows.
Where we differ on purpose: a gantry-tilted series keeps its shear in the affine (ITK drops
it), and under `irregular_slices: resample` a series with missing slices or uneven steps is
interpolated (linearly, along the normal) onto a uniform grid (ITK silently assumes one).

Memory: one output array (int16 when every slope/intercept is integral, else float32) filled
slice by slice; the largest extra buffer is one decoded slice (or one multi-frame file).
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from tumorburden.imaging.series import Geometry, SeriesError, _names
from tumorburden.imaging.volume import Volume

log = logging.getLogger(__name__)

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
NATIVE_LE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
INT16 = (-32768, 32767)


def _stored_pixels(ds, path: str) -> np.ndarray:
    """Stored values of a slice (rows, cols) or of all frames (frames, rows, cols)."""
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if (syntax in NATIVE_LE and frames == 1 and ds.get("BitsAllocated") == 16 and ds.get("SamplesPerPixel", 1) == 1
            and (ds.get("BitsStored") == 16 or ds.get("PixelRepresentation") == 0)):
        # The common uncompressed case, without pydicom's generic pixel pipeline.
        dtype = "<i2" if ds.get("PixelRepresentation") == 1 else "<u2"
        data = ds.PixelData
        expected = int(ds.Rows) * int(ds.Columns) * 2
        if len(data) < expected:
            raise SeriesError(f"{os.path.basename(path)}: truncated pixel data ({len(data)} of {expected} bytes); "
                              "export the file again")
        return np.frombuffer(data, dtype=dtype, count=expected // 2).reshape(int(ds.Rows), int(ds.Columns))
    return ds.pixel_array


PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"


def _tail_pixels(path: str, rows: int, cols: int, dtype: str) -> np.ndarray | None:
    """Uncompressed 16-bit pixels read straight from the end of the file, when the file ends with
    the Pixel Data element of exactly rows x cols values (checked: tag, VR and length); None
    otherwise, and the caller decodes with pydicom. Saves parsing every header a second time."""
    size = rows * cols * 2
    with open(path, "rb") as fh:
        end = fh.seek(0, 2)
        if end < size + 12:
            return None
        fh.seek(end - size - 12)
        head = fh.read(12)
        explicit = head[:4] == PIXEL_DATA_TAG and head[4:6] in (b"OW", b"OB") and head[6:8] == b"\0\0"
        implicit = head[4:8] == PIXEL_DATA_TAG
        if not ((explicit or implicit) and int.from_bytes(head[8:12], "little") == size):
            return None
        return np.frombuffer(fh.read(size), dtype=dtype).reshape(rows, cols)


def _decode(path: str) -> np.ndarray:
    with warnings.catch_warnings():  # a damaged file is reported in one line below, not by pydicom
        warnings.simplefilter("ignore")
        return _decode_quiet(path)


def _decode_quiet(path: str) -> np.ndarray:
    try:
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:  # no preamble/meta (ACR-NEMA-like): uncompressed
            ds = pydicom.dcmread(path, force=True)
            implicit = getattr(ds, "original_encoding", (True, True))[0]
            if "TransferSyntaxUID" not in ds.file_meta:
                ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        return _stored_pixels(ds, path)
    except SeriesError:
        raise
    except Exception as exc:  # pydicom/pylibjpeg raise many kinds on damaged or unsupported data
        msg = " ".join(str(exc).split())[:200]
        raise SeriesError(f"{os.path.basename(path)}: cannot decode pixel data ({type(exc).__name__}: {msg}); "
                          "the file is damaged or its transfer syntax needs a codec (pylibjpeg plugins)") from None


def read_volume(geometry: Geometry, dtype: str = "auto", progress_every: int = 100) -> tuple[Volume, dict]:
    """Read the ordered slices of a checked series; returns the volume and read facts."""
    slices = geometry.slices
    n = len(slices)
    if n < 2:  # one slice has no slice step: its spacing along the normal would be a guess
        raise SeriesError(f"{_names(slices)}: {n} slice(s); a volume needs at least 2 (imaging.min_slices >= 2)")
    rows, cols = slices[0].rows, slices[0].cols
    slope = np.array([sl.slope for sl in slices])
    intercept = np.array([sl.intercept for sl in slices])
    integral = bool(np.all(np.mod(slope, 1) == 0) and np.all(np.mod(intercept, 1) == 0))
    use_int = integral and dtype in ("auto", "int16")
    # (slice, row, column) in C order = (column, row, slice) in Fortran order: the NIfTI layout.
    array = np.empty((n, rows, cols), dtype=np.int16 if use_int else np.float32)
    multiframe: dict[str, np.ndarray] = {}
    for k, sl in enumerate(slices):
        if sl.frame is None:
            stored = _tail_pixels(sl.path, rows, cols, sl.native16) if sl.native16 else None
            if stored is None:
                stored = _decode(sl.path)
        else:
            if sl.path not in multiframe:
                multiframe.clear()  # one multi-frame file in memory at a time
                decoded = _decode(sl.path)
                multiframe[sl.path] = decoded if decoded.ndim == 3 else decoded[None]
            stored = multiframe[sl.path][sl.frame]
        if stored.shape != (rows, cols):
            raise SeriesError(f"{os.path.basename(sl.path)}: pixel array {stored.shape} does not match "
                              f"Rows x Columns {rows}x{cols}")
        if use_int:
            s_k, i_k = int(slope[k]), int(intercept[k])
            lo, hi = sorted((int(stored.min()) * s_k + i_k, int(stored.max()) * s_k + i_k))
            fits = INT16[0] <= lo and hi <= INT16[1]
            if fits and s_k == 1 and stored.dtype == np.int16 and INT16[0] <= i_k <= INT16[1]:
                np.add(stored, np.int16(i_k), out=array[k])  # exact: the range was checked
            elif fits:
                array[k] = stored.astype(np.int32) * s_k + i_k
            elif dtype == "int16":
                raise SeriesError(f"{os.path.basename(sl.path)}: HU {lo}..{hi} do not fit int16; use --dtype float32")
            else:
                array = array.astype(np.float32)  # rare: HU beyond int16; switch once
                use_int = False
                array[k] = stored.astype(np.float64) * s_k + i_k
        else:
            array[k] = stored.astype(np.float64) * slope[k] + intercept[k]
        if progress_every and (k + 1) % progress_every == 0:
            log.info("read %d/%d slices", k + 1, n)
    if geometry.needs_resampling:
        array = _resample(array, geometry.along, geometry.step_mm)
    affine = _affine(geometry, len(array))
    volume = Volume(array.transpose(2, 1, 0), LPS_TO_RAS @ affine)
    return volume, {"integral": integral, "dtype": array.dtype.name, "resampled": geometry.needs_resampling}


def _affine(geometry: Geometry, n: int) -> np.ndarray:
    """LPS affine of n slices spread evenly from the first to the last slice position."""
    sl = geometry.slices
    iop = np.array(sl[0].iop)
    row, col = iop[:3], iop[3:]
    ps = sl[0].pixel_spacing
    span = geometry.along[-1] - geometry.along[0]
    step = span / (n - 1)
    if any(f["check"] == "gantry_tilt" for f in geometry.findings):
        k_vec = (np.array(sl[-1].ipp) - np.array(sl[0].ipp)) / (n - 1)  # keeps the shear
    else:
        k_vec = geometry.normal * step  # as ITK: the normal, by the mean position step
    lps = np.eye(4)
    lps[:3, 0] = row * ps[1]
    lps[:3, 1] = col * ps[0]
    lps[:3, 2] = k_vec
    lps[:3, 3] = sl[0].ipp
    return lps


def _resample(array: np.ndarray, along: np.ndarray, step: float) -> np.ndarray:
    """Linear interpolation along the slice axis onto a uniform grid of `step` mm."""
    n_out = int(round((along[-1] - along[0]) / step)) + 1
    step = (along[-1] - along[0]) / (n_out - 1)
    out = np.empty((n_out,) + array.shape[1:], dtype=np.float32)
    for j in range(n_out):
        t = along[0] + j * step
        i = int(np.clip(np.searchsorted(along, t, side="right") - 1, 0, len(along) - 2))
        w = (t - along[i]) / (along[i + 1] - along[i])
        w = min(max(w, 0.0), 1.0)
        out[j] = (1 - w) * array[i].astype(np.float32) + w * array[i + 1].astype(np.float32)
    return out


def hu_problem(volume: Volume, settings: dict) -> str | None:
    """Why the HU of a volume are implausible for a CT, or None."""
    lo_bound, hi_bound = settings["hu_bounds"]
    a = volume.array
    lo, hi = float(a.min()), float(a.max())
    if lo < lo_bound or hi > hi_bound:
        return f"HU {lo:.0f}..{hi:.0f} outside [{lo_bound:g}, {hi_bound:g}] (wrong RescaleSlope/Intercept or not a CT?)"
    sample = a.ravel(order="K")[:: max(1, a.size // 200_000)]
    p01 = float(np.percentile(sample, 1))
    if p01 > settings["air_hu_max"]:
        return (f"no air in the image: 1st percentile {p01:.0f} HU above {settings['air_hu_max']:g} HU "
                "(RescaleIntercept missing or not a CT?)")
    return None
