"""Read a CT scan (a DICOM folder, a list of DICOM files, or a NIfTI file) into an HU NIfTI
with its RAS affine, plus a QC report. `tumorburden ingest` and the pipeline's ingest rule
both run `ingest()`.

DICOM, in order (see series.py and reader.py for each step):

1. Every file (any name, any extension, sub-folders included) is read header-only. Files that
   are not DICOM are counted; a file that starts as DICOM but cannot be parsed is an error.
2. Image files are grouped by SeriesInstanceUID; each series is ordered along its slice normal
   and checked (orientation, pixel spacing, matrix, duplicate positions, missing slices, uneven
   steps, gantry tilt, slice count).
3. One diagnostic CT series is chosen by the rules of `series.choose` (or forced by UID).
4. Its pixel data is read into HU (int16 when exact, else float32), checked for a plausible HU
   range, and written as NIfTI with the RAS affine.

The QC report (JSON) holds counts, geometry, findings and why other series were passed over;
never a patient's name, ID, birth date or a UID.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tumorburden.imaging.reader import hu_problem, read_volume
from tumorburden.imaging.series import (
    GEOMETRY_DEFAULTS,
    SELECTION_DEFAULTS,
    CT_IMAGE_STORAGE,  # noqa: F401  (re-exported for tests and callers)
    SeriesError,
    check_geometry,
    choose,
    describe,
    group_series,
    list_files,
    read_headers,
    series_summary,
    unusable_reason,
)
from tumorburden.imaging.volume import Volume, affine_problem, load_nifti, save_nifti

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DEFAULTS = {
    **GEOMETRY_DEFAULTS,
    **SELECTION_DEFAULTS,
    "hu_bounds": [-3100.0, 32767.0],
    "air_hu_max": -500.0,
    "on_bad_scan": "skip",
    "workers": 2,
}

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def ingest(series: Path | None, out: Path, qc_path: Path | None = None, settings: dict | None = None, *,
           files: list[str] | None = None, series_uid: str | None = None, dtype: str = "auto",
           label: str | None = None, redact: dict | None = None) -> Volume:
    """Read `series` (DICOM folder or NIfTI file) or the DICOM `files`, write `out` and the QC JSON.

    `series_uid` forces that series; `label` names the scan in messages (default: the path);
    `redact` ({identifying text: replacement}, from discovery's series list) and what the DICOM
    headers of the files themselves identify (patient ID, name parts, birth date, accession
    number, referring physician, institution) are redacted from every message, log line and
    the QC report, whichever route the scan came by."""
    from tumorburden.imaging.discover import Redactor

    redactor = Redactor.from_dict(redact)
    try:
        return _ingest(series, out, qc_path, settings, files, series_uid, dtype, label, redactor)
    except SeriesError as exc:
        raise SeriesError(redactor(str(exc))) from None


@dataclass
class IngestJob:
    """One scan of a patient's ingest job: its source (a DICOM folder or NIfTI file, or the series
    list discovery wrote for a dicom_root study) and its outputs."""

    scan_id: str
    out: Path
    qc: Path
    source: Path | None = None
    series_list: Path | None = None


def ingest_series_list(series_list: Path, out: Path, qc_path: Path | None = None, settings: dict | None = None,
                       dtype: str = "auto") -> Volume:
    """Ingest the scan a discovery series list names (its files, series UID, scan ID and what to redact)."""
    listing = json.loads(Path(series_list).read_text())
    return ingest(None, out, qc_path=qc_path, settings=settings, files=listing["files"],
                  series_uid=listing["series_uid"], dtype=dtype, label=listing["scan_id"],
                  redact=listing.get("redact"))


def ingest_patient(patient_id: str, scans: list[IngestJob], record_out: Path, settings: dict | None = None,
                   dtype: str = "auto") -> pd.DataFrame:
    """Every scan of one patient in one process, each to its own image and QC file; then the
    patient's record (tables.py `ingest_record`), the file the workflow tracks for the job."""
    import pandas as pd  # here, not at the top: segment-dicom takes source_files from this module, and pandas is 0.5 CPU-s of its start

    from tumorburden import tables

    if not scans:
        raise ValueError(f"patient {patient_id}: no scans to ingest")
    rows = []
    for i, job in enumerate(scans, 1):
        log.info("scan %s (%d/%d of patient %s)", job.scan_id, i, len(scans), patient_id)
        if job.series_list is not None:
            volume = ingest_series_list(job.series_list, job.out, job.qc, settings, dtype)
        else:
            volume = ingest(job.source, job.out, qc_path=job.qc, settings=settings, dtype=dtype)
        spacing = volume.spacing
        rows.append({"patient_id": patient_id, "scan_id": job.scan_id,
                     "size_i": int(volume.shape[0]), "size_j": int(volume.shape[1]), "size_k": int(volume.shape[2]),
                     "spacing_i_mm": float(spacing[0]), "spacing_j_mm": float(spacing[1]),
                     "spacing_k_mm": float(spacing[2])})
    table = tables.check(pd.DataFrame(rows), "ingest_record", where=str(record_out))
    Path(record_out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(record_out, sep="\t", index=False)
    return table


def _ingest(series, out, qc_path, settings, files, series_uid, dtype, label, redactor) -> Volume:
    s = {**DEFAULTS, **(settings or {})}
    out = Path(out)
    if files is None:
        series = Path(series)
        if not series.exists():
            raise FileNotFoundError(f"{series}: no such file or folder (check the scan's image path)")
        if series.is_file() and is_nifti(series):
            volume, qc = read_nifti(series)
            integral = qc.pop("_integral")
            nifti_checks(volume, series, s)
            target = np.int16 if dtype == "int16" or (dtype == "auto" and _fits_int16(volume.array, integral)) else np.float32
            return _finish(volume, qc, out, qc_path, target, str(series), redactor)
        if not series.is_dir():
            raise ValueError(f"{series}: not a DICOM series folder nor a .nii/.nii.gz file")
        files = list_files(series)
    label = label or str(series)
    volume, qc = read_dicom(files, s, label, series_uid=series_uid, dtype=dtype, redactor=redactor)
    return _finish(volume, qc, out, qc_path, volume.array.dtype, label, redactor)


def _redacted(obj, redactor):
    if isinstance(obj, str):
        return redactor(obj)
    if isinstance(obj, dict):
        return {k: _redacted(v, redactor) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_redacted(v, redactor) for v in obj]
    return obj


def _finish(volume: Volume, qc: dict, out: Path, qc_path: Path | None, dtype, label: str, redactor) -> Volume:
    problem = affine_problem(volume.affine)
    if problem:  # the reader's last word: no header nibabel would refuse, and the input is named
        raise SeriesError(f"{label}: {problem}; check PixelSpacing, ImagePositionPatient and ImageOrientationPatient")
    save_nifti(volume, out, dtype=dtype)
    qc.update(
        status="ok",
        shape=list(volume.shape),
        spacing_mm=[round(v, 6) for v in volume.spacing],
        hu_min=float(np.min(volume.array)),
        hu_max=float(np.max(volume.array)),
        dtype=np.dtype(dtype).name,
        orientation="".join(_axcodes(volume.affine)),
    )
    qc = _redacted(qc, redactor)
    if qc_path is not None:
        write_json(qc, Path(qc_path))
    label = redactor(label)
    for w in qc["warnings"]:
        log.warning("%s: %s", label, w)
    log.info("%s -> %s: %s voxels of %s mm", label, out, qc["shape"], qc["spacing_mm"])
    return volume


def write_json(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _axcodes(affine: np.ndarray) -> tuple[str, ...]:
    import nibabel as nib

    return nib.aff2axcodes(affine)


def _fits_int16(array: np.ndarray, integral: bool) -> bool:
    return bool(integral and array.size and array.min() >= -32768 and array.max() <= 32767)


def nifti_checks(volume: Volume, path: Path, s: dict) -> None:
    """What a DICOM series must pass, for a NIfTI CT: enough slices and plausible HU."""
    if min(volume.shape) < s["min_slices"]:
        raise SeriesError(f"{path}: shape {volume.shape}: {min(volume.shape)} slice(s), need at least "
                          f"{s['min_slices']} (imaging.min_slices)")
    problem = hu_problem(volume, s)
    if problem:
        raise SeriesError(f"{path}: implausible HU: {problem}; a scan's NIfTI must hold the CT in HU")


def read_nifti(path: Path) -> tuple[Volume, dict]:
    """A NIfTI CT, checked at the door by load_nifti (geometry, NaN voxels, a single slice)."""
    volume = load_nifti(path, what="CT image")
    data = volume.array
    integral = np.issubdtype(data.dtype, np.integer) or bool(np.all(np.mod(data, 1) == 0))
    volume = Volume(data.astype(np.float32) if not integral else data, volume.affine)
    return volume, {"format": "nifti", "warnings": [], "_integral": integral}


def read_dicom(files: list[str], s: dict, label: str, series_uid: str | None = None,
               dtype: str = "auto", redactor=None) -> tuple[Volume, dict]:
    """Choose, check and read the diagnostic CT series among `files`; `redactor` (a discover.Redactor)
    learns the identifiers of their headers."""
    from tumorburden.imaging.discover import Redactor

    redactor = Redactor() if redactor is None else redactor
    records = read_headers(files, workers=1)
    for rec in records:  # the scans.tsv route has no redaction list from discovery: the headers give it
        if rec["status"] == "image":
            redactor.add_record(rec, "[patient id]")
    unreadable = [r for r in records if r["status"] == "unreadable"]
    if unreadable:
        r = unreadable[0]
        more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        raise SeriesError(f"{label}: unreadable file {Path(r['path']).name}: {r['why']}{more}; "
                          "remove it or export the series again")
    candidates = [(se, check_geometry(se, s)) for se in group_series(records)]
    if series_uid is not None and not any(se.uid == series_uid for se, _ in candidates):
        raise SeriesError(f"{label}: the forced series is not among the files; check the override table")
    chosen, verdicts = choose(candidates, s, forced_uid=series_uid)
    n_not_dicom = sum(r["status"] == "not_dicom" for r in records)
    if chosen is None:
        why = (verdicts[series_uid][1] if series_uid is not None else unusable_reason(candidates, verdicts))
        raise SeriesError(f"{label}: {why} ({len(records)} files, {n_not_dicom} not DICOM)")
    series, geometry = chosen
    log.info("%s: reading %d slices of series %s", label, series.n_slices, redactor(describe(series)))
    volume, info = read_volume(geometry, dtype=dtype)
    problem = hu_problem(volume, s)
    if problem:
        raise SeriesError(f"{label}: series {describe(series)}: implausible HU: {problem}")
    summary = series_summary(series, geometry, s)
    for key in ("series_uid", "study_uid", "study_date"):
        summary.pop(key)  # the QC report carries no identifiers
    warnings = [f"{f['check']}: {f['message']}" for f in geometry.findings if f["severity"] == "warn"]
    others = [{"series": describe(se), "status": verdicts[se.uid][0], "reason": verdicts[se.uid][1]}
              for se, _ in candidates if se is not series]
    qc = {
        "format": "dicom",
        "n_files": len(records),
        "n_not_dicom": n_not_dicom,
        "n_other": sum(r["status"] == "other" for r in records),
        "n_series": len(candidates),
        "series": summary,
        "series_description": summary["description"],
        "n_slices": series.n_slices,
        "findings": geometry.findings,
        "warnings": warnings,
        "other_series": others,
        "resampled": info["resampled"],
    }
    return volume, qc


def source_files(image: str | Path, settings: dict | None = None) -> list[str]:
    """The DICOM files of the series that `ingest` reads for a scan's `image` (a series list
    written by discovery, or a folder, where the series is chosen as ingest chooses it), e.g.
    for a DICOM-SEG that must reference exactly the source images."""
    image = Path(image)
    if image.suffix == ".json":
        return list(json.loads(image.read_text())["files"])
    s = {**DEFAULTS, **(settings or {})}
    candidates = [(se, check_geometry(se, s)) for se in group_series(read_headers(list_files(image)))]
    chosen, verdicts = choose(candidates, s)
    if chosen is None:
        raise SeriesError(f"{image}: {unusable_reason(candidates, verdicts)}")
    return sorted(chosen[0].files)
