"""Discovery: a PACS export under `study.dicom_root` -> the study's scans, headers only.

Every file under the root is read once, header only, by `workers` processes. Image files are
grouped into series; each series is ordered and checked (series.check_geometry); the DICOM
PatientID is mapped to the study's pseudonymous patient_id (the patient map); each study
(StudyInstanceUID) of a mapped patient becomes one scan whose diagnostic series is chosen by
series.choose (or forced / excluded by the series override table). Scan days are the StudyDate
minus the patient's baseline_date (clinical.tsv).

Writes (under results/<name>/, nothing identifying):
- manifest/series.parquet (+ .csv): one row per series of a mapped patient: patient_id, scan_id,
  days, the series' attributes, status (chosen | passed_over | rejected | excluded); the private
  area's manifest/series.parquet holds the same rows with the study date and series UID
  and the reason.
- manifest/scans.tsv: one row per usable scan (patient_id, scan_id, days, image), where image
  is the scan's series list in the private folder.
- qc/ingest_exclusions.tsv: every study without a usable series, every unreadable file, every
  unmapped patient, with the reason (schema `exclusions`).
and under the private folder (study.private_dir, outside results/ because paths of a PACS export
often carry hospital IDs or names): series/<scan_id>.json, the files of each chosen series.

Text written to results/ goes through a redactor that replaces every PatientID, patient name part
and birth date seen in the headers, so a folder or description that carries them cannot leak.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from datetime import date
from pathlib import Path

import pandas as pd

from tumorburden.imaging.series import (
    SeriesError,
    check_geometry,
    choose,
    group_series,
    list_files,
    read_headers,
    series_summary,
    unusable_reason,
)
from tumorburden.paths import inside

log = logging.getLogger(__name__)

EXCLUDE = "exclude"  # series_uid value in the override table that drops a study
HOSPITAL_COLUMNS = ("study_date", "series_uid")  # manifest columns kept in the private copy only


class Redactor:
    """Replaces identifying strings (hospital IDs, name parts of the patient and the referring
    physician, birth dates, accession numbers, institutions) in text."""

    def __init__(self):
        self.words: dict[str, str] = {}
        self.by_label: dict[str, dict[str, str]] = {}  # the words of each patient

    @classmethod
    def from_dict(cls, words: dict | None) -> "Redactor":
        r = cls()
        r.words.update(words or {})
        return r

    def add(self, text: str, replacement: str, min_len: int = 3) -> None:
        text = (text or "").strip()
        if len(text) >= min_len and text not in self.words:
            self.words[text] = replacement

    def add_record(self, rec: dict, patient_label: str) -> None:
        mine = self.by_label.setdefault(patient_label, {})
        names = f"{rec.get('patient_name', '')}^{rec.get('referring', '')}"
        for text, replacement, min_len in [(rec.get("patient", ""), patient_label, 1),
                                           (rec.get("birth_date", ""), "[birth date]", 6),
                                           (rec.get("accession", ""), "[accession number]", 3),
                                           (rec.get("institution", ""), "[institution]", 3)] + [
                (part, "[name]", 3) for part in re.split(r"[\^ ,=]+", names)]:
            text = (text or "").strip()
            if len(text) >= min_len:
                self.add(text, replacement, min_len)
                mine[text] = replacement

    def __call__(self, text):
        if not isinstance(text, str) or not self.words:
            return text
        # longest first, so a name part inside a longer ID is not replaced first
        pattern = "|".join(re.escape(w) for w in sorted(self.words, key=len, reverse=True))
        lowered = {k.lower(): v for k, v in self.words.items()}
        return re.sub(pattern, lambda m: lowered[m.group(0).lower()], text, flags=re.IGNORECASE)


def _iso(dicom_date: str) -> str | None:
    try:
        return date(int(dicom_date[:4]), int(dicom_date[4:6]), int(dicom_date[6:8])).isoformat()
    except (ValueError, TypeError):
        return None


def discover(root: Path, patient_map: pd.DataFrame, baseline: dict[str, str], results: Path, private: Path,
             settings: dict, override: pd.DataFrame | None = None, records: list[dict] | None = None,
             exclusions: list[dict] | None = None, on_chosen=None, tables: bool = True) -> dict:
    """Index `root`, choose one series per study, write the manifest and exclusions.

    patient_map: columns dicom_patient_id, patient_id. baseline: patient_id -> ISO date.
    records: the headers when they come from elsewhere than the files under root (a DICOMweb
    server's metadata, `tumorburden.pacs.pull`; their paths are where the files will be), with
    that source's own `exclusions` rows. on_chosen(scan_id, series_number, files): called as each
    scan's series is chosen and its list written (the pull starts retrieving it then, while the
    other studies are chosen and the tables written). tables=False: the choice and the series lists
    only (no manifest, scans.tsv, exclusions or log; the pull's look-ahead on one patient). Returns
    counts for the log; raises SeriesError under on_bad_scan: fail."""
    root, results, private = Path(root), Path(results), Path(private)
    if records is None:
        files = list_files(root)
        log.info("%s: %d files; reading headers with %d worker(s)", root, len(files), settings["workers"])
        records = read_headers(files, workers=settings["workers"],
                               progress=lambda i, n: log.info("headers: %d/%d files", i, n))
    else:
        files = [rec["path"] for rec in records]
    to_patient = dict(zip(patient_map["dicom_patient_id"].astype(str), patient_map["patient_id"].astype(str)))
    redact = Redactor()
    unmapped_label: dict[str, str] = {}
    for rec in records:
        if rec["status"] != "image":
            continue
        pid = to_patient.get(rec["patient"])
        if pid is None:
            pid = unmapped_label.setdefault(rec["patient"], f"[unmapped patient {len(unmapped_label) + 1}]")
        redact.add_record(rec, pid)
    for hospital_id, pid in to_patient.items():
        redact.add(hospital_id, pid, min_len=1)

    def rel(path: str) -> str:
        return redact(os.path.relpath(path, root))

    exclusions = list(exclusions or [])
    for rec in records:
        if rec["status"] == "unreadable":
            exclusions.append({"stage": "ingest", "patient_id": "", "scan_id": "",
                               "reason": f"unreadable file {rel(rec['path'])}: {rec['why']}; remove it or export it again"})
    series_all = group_series(records)
    by_study: dict[tuple[str, str], list] = defaultdict(list)
    unmapped: dict[str, list] = defaultdict(list)
    for se in series_all:
        pid = to_patient.get(se.patient)
        if pid is None:
            unmapped[se.patient].append(se)
        else:
            by_study[(pid, se.header["study_uid"])].append(se)
    for hospital_id, lst in unmapped.items():
        first = sorted(lst[0].files)[0]
        exclusions.append({"stage": "ingest", "patient_id": "", "scan_id": "",
                           "reason": f"{unmapped_label[hospital_id]}: {len(lst)} series (e.g. {rel(first)}) of a "
                                     "PatientID missing from the patient map (study.patient_map); add a row to include them"})

    # scan IDs: <patient_id>_d<days>, in study order; a second study on one day gets _2, _3, ...
    studies = []
    for (pid, study_uid), lst in by_study.items():
        h = lst[0].header
        iso = _iso(h["study_date"])
        days = (date.fromisoformat(iso) - date.fromisoformat(baseline[pid])).days if iso else None
        studies.append((pid, days if days is not None else 10**9, h["study_time"] or "", study_uid, iso, lst))
    studies.sort(key=lambda t: t[:4])
    used: dict[str, int] = {}
    forced = {}
    if override is not None and len(override):
        forced = dict(zip(override["scan_id"].astype(str), override["series_uid"].astype(str)))
    rows, scans = [], []
    (private / "series").mkdir(parents=True, exist_ok=True)
    for pid, days, _, study_uid, iso, lst in studies:
        base = f"{pid}_d{days}" if iso else f"{pid}_nodate"
        used[base] = used.get(base, 0) + 1
        scan_id = base if used[base] == 1 else f"{base}_{used[base]}"
        candidates = [(se, check_geometry(se, settings)) for se in lst]
        force = forced.get(scan_id)
        if force == EXCLUDE:
            chosen, verdicts = None, {se.uid: ("excluded", "study excluded by the series override table") for se in lst}
            why = "excluded by the series override table"
        elif iso is None:
            chosen, verdicts = None, {se.uid: ("rejected", "no valid StudyDate") for se in lst}
            why = "the study has no valid StudyDate, so its day cannot be computed; fix the header or exclude it"
        elif force is not None and not any(se.uid == force for se in lst):
            chosen, verdicts = None, {se.uid: ("rejected", "the override table forces a series not in this study") for se in lst}
            why = f"the series override table forces series {force}, which is not in this study; fix the table"
        else:
            chosen, verdicts = choose(candidates, settings, forced_uid=force)
            why = verdicts[force][1] if force is not None else unusable_reason(candidates, verdicts)
        for se, g in candidates:
            row = series_summary(se, g, settings)
            row.pop("study_uid")
            status, reason = verdicts[se.uid]
            row.update(patient_id=pid, scan_id=scan_id, study_date=iso or "", days=days if iso else None,
                       status=status, reason=reason)
            rows.append(row)
        if chosen is None:
            exclusions.append({"stage": "ingest", "patient_id": pid, "scan_id": scan_id, "reason": redact(why)})
            continue
        se, _ = chosen
        listing = inside(private / "series", private / "series" / f"{scan_id}.json")
        # the patient's identifiers travel with the (private) list, so the ingest job redacts too
        listing.write_text(json.dumps({"scan_id": scan_id, "series_uid": se.uid, "files": sorted(se.files),
                                       "redact": redact.by_label.get(pid, {})}, indent=1) + "\n")
        if on_chosen is not None:
            on_chosen(scan_id, se.header["series_number"], sorted(se.files))
        scans.append({"patient_id": pid, "scan_id": scan_id, "days": float(days), "image": str(listing)})
    if not tables:
        return {"files": len(files), "series": len(series_all), "scans": len(scans)}

    columns = ["patient_id", "scan_id", "study_date", "days", "status", "reason", "series_uid", "series_number",
               "modality", "description", "image_type", "orientation", "n_files", "n_slices", "slice_thickness_mm",
               "slice_step_mm", "pixel_spacing_mm", "rows", "columns", "kernel", "contrast_agent", "phase_hint",
               "transfer_syntax", "multiframe", "tilt_deg", "findings"]
    manifest = pd.DataFrame(rows, columns=columns)
    for c in ("reason", "description", "findings", "kernel", "contrast_agent"):
        manifest[c] = manifest[c].map(redact)
    manifest["days"] = manifest["days"].astype("Int64")
    # A series UID and a study date lead back to the hospital's record of the visit (both are PS3.15
    # Basic Profile attributes): the manifest that names them, from which the series override table
    # is written, stays in the private area; results/ gets the same rows without them.
    for folder, table in ((private, manifest), (results, manifest.drop(columns=list(HOSPITAL_COLUMNS)))):
        (folder / "manifest").mkdir(parents=True, exist_ok=True)
        table.to_parquet(folder / "manifest" / "series.parquet", index=False)
        table.to_csv(folder / "manifest" / "series.csv", index=False)
    scan_table = pd.DataFrame(scans, columns=["patient_id", "scan_id", "days", "image"])
    scan_table.to_csv(results / "manifest" / "scans.tsv", sep="\t", index=False)
    excl = pd.DataFrame(exclusions, columns=["stage", "patient_id", "scan_id", "reason"])
    (results / "qc").mkdir(parents=True, exist_ok=True)
    excl.to_csv(results / "qc" / "ingest_exclusions.tsv", sep="\t", index=False)
    counts = {"files": len(files), "series": len(series_all), "scans": len(scans), "excluded": len(excl)}
    log.info("discovery: %s", counts)
    for e in exclusions:
        log.warning("excluded %s %s: %s", e["patient_id"], e["scan_id"], e["reason"])
    bad = [e for e in exclusions if not e["reason"].startswith("[unmapped")]
    if settings.get("on_bad_scan") == "fail" and bad:
        e = bad[0]
        raise SeriesError(f"{e['scan_id'] or 'dicom_root'}: {e['reason']} (imaging.on_bad_scan is fail; "
                          f"{len(bad)} problem(s) in qc/ingest_exclusions.tsv; set it to skip to go on without them)")
    if not scans:
        raise SeriesError(f"{root}: no usable CT scan of a mapped patient; see {results / 'qc' / 'ingest_exclusions.tsv'}")
    return counts


def merge_exclusions(into: Path, extra: list[Path]) -> None:
    """Append the rows of `extra` exclusion tables to `into` (schema `exclusions`), sorted."""
    frames = [pd.read_csv(into, sep="\t", dtype=str, keep_default_na=False)] if Path(into).exists() else []
    frames += [pd.read_csv(p, sep="\t", dtype=str, keep_default_na=False) for p in extra]
    if not frames:
        return
    out = pd.concat(frames, ignore_index=True)[["stage", "patient_id", "scan_id", "reason"]].drop_duplicates()
    out.to_csv(into, sep="\t", index=False)
