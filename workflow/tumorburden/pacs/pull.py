"""Pull a study from a DICOMweb server (`study.dicomweb`): the same scans the dicom_root route finds.

1. QIDO-RS, per row of the patient map (the one place hospital IDs are read): the patient's
   studies, then their series.
2. WADO-RS metadata (every instance's header, no pixel data) of each CT series, turned into the
   records discovery reads from files (`imaging.series.header_record`); discovery then runs
   unchanged on them (`imaging.discover.discover`: geometry checks, the series choice, scan IDs
   and days, the manifest, the exclusions, the private series lists), so the choice is made
   before a single pixel is fetched. A series of another modality (SEG, SR, a report) is not
   looked at.
3. WADO-RS retrieval of only the chosen series into the private cache
   (`<private>/pacs/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`), `workers`
   series at a time. Each instance is written to a `.part` file and renamed once complete and
   checked (its SOP Instance UID is the one the metadata listed, its pixel data all there: a
   multipart stream cut by a dropped connection still parses), so a file with the final name
   is always whole; a series counts as pulled when every SOP Instance UID of its metadata has its
   file. A re-run (after an interruption, or with new studies on the server) fetches only the
   instances whose files are missing.

Ingest then reads the cached files through the series lists, exactly as for a dicom_root export.
Log lines and errors name the server, the study's patient_id, the scan_id and the series number,
never a hospital ID or UID (the log is under results/).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from tumorburden.imaging.discover import discover
from tumorburden.imaging.series import header_record
from tumorburden.pacs.client import Pacs, PacsError, connect
from tumorburden.paths import inside

log = logging.getLogger(__name__)

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
CACHE = "pacs"  # under the private area


def _value(item: dict, tag: str):
    values = (item.get(tag) or {}).get("Value") or [None]
    return values[0]


def _uid(item: dict, tag: str, server: str) -> str:
    uid = str(_value(item, tag) or "")
    if not UID.match(uid) or len(uid) > 64:  # it becomes a folder name: nothing but a DICOM UID
        raise PacsError(f"DICOMweb server {server} answered a {tag} that is not a DICOM UID; check the server")
    return uid


def index(pacs: Pacs, patient_map: pd.DataFrame, cache: Path, workers: int = 4) -> tuple[list[dict], list[dict]]:
    """(header records of every CT instance of the mapped patients, exclusion rows of patients with
    no study on the server). Records carry the cache path their file will have."""
    url = pacs.server.url
    records: list[dict] = []
    exclusions: list[dict] = []
    todo: list[tuple[str, str, str, int]] = []
    for line, (hospital_id, pid) in enumerate(zip(patient_map["dicom_patient_id"].astype(str),
                                                  patient_map["patient_id"].astype(str)), start=2):
        try:
            studies = pacs.studies_of(hospital_id)
        except PacsError as exc:
            raise PacsError(f"patient {pid}: {exc}") from None
        # QIDO matching may be case-insensitive or read * and ? as wildcards: keep exact matches only
        studies = [st for st in studies if str(_value(st, "00100020") or "") == hospital_id]
        if not studies:
            exclusions.append({"stage": "ingest", "patient_id": pid, "scan_id": "",
                               "reason": f"no study on DICOMweb server {url} for this patient's hospital ID "
                                         f"(patient map line {line}); fix the patient map or send the scans to the server"})
            continue
        n_series = 0
        for study in studies:
            study_uid = _uid(study, "0020000D", url)
            for series in pacs.series_of(study_uid):
                if str(_value(series, "00080060") or "").upper() != "CT":
                    continue
                todo.append((pid, study_uid, _uid(series, "0020000E", url), _value(series, "00200011") or 0))
                n_series += 1
        log.info("patient %s: %d stud%s, %d CT series on %s", pid, len(studies), "y" if len(studies) == 1 else "ies",
                 n_series, url)

    def metadata(job):
        pid, study_uid, series_uid, number = job
        try:
            return job, pacs.series_metadata(study_uid, series_uid)
        except PacsError as exc:
            raise PacsError(f"patient {pid}, series number {number}: {exc}") from None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for (pid, study_uid, series_uid, _), instances in pool.map(metadata, todo):
            folder = cache / study_uid / series_uid
            for item in instances:
                sop = _uid(item, "00080018", url)
                ds = Dataset.from_json(item, bulk_data_uri_handler=lambda *args: b"")
                records.append(header_record(ds, str(folder / f"{sop}.dcm")))
    log.info("metadata of %d CT series: %d instances (no pixel data fetched yet)", len(todo), len(records))
    return records, exclusions


def fetch(pacs: Pacs, private: Path, workers: int = 4) -> dict:
    """Retrieve every file the private series lists name under the cache and do not exist yet."""
    import json

    cache = private / CACHE
    manifest = pd.read_parquet(private / "manifest" / "series.parquet")
    number = dict(zip(manifest["series_uid"], manifest["series_number"]))
    jobs = []
    for listing in sorted((private / "series").glob("*.json")):
        entry = json.loads(listing.read_text())
        files = [Path(f) for f in entry["files"]]
        if not files or files[0].parent.parent.parent != cache:
            continue  # a list of a dicom_root export, not ours
        jobs.append((entry["scan_id"], files))
    total = sum(len(f) for _, f in jobs)
    done = {"instances": 0, "fetched": 0, "bytes": 0, "series": 0}
    lock = threading.Lock()

    def one(job):
        scan_id, files = job
        series_uid, study_uid = files[0].parent.name, files[0].parent.parent.name
        label = f"scan {scan_id} (series number {number.get(series_uid, '?')})"
        missing = [f for f in files if not f.exists()]
        if missing and len(missing) < len(files):
            log.info("%s: %d of %d instances already pulled; fetching the %d missing", label,
                     len(files) - len(missing), len(files), len(missing))
        inside(cache, files[0]).parent.mkdir(parents=True, exist_ok=True)
        fetched = nbytes = 0
        try:
            if len(missing) == len(files):  # one streamed request for the whole series
                wanted = {f.stem: f for f in files}
                for ds in pacs.iter_series(study_uid, series_uid):
                    path = wanted.get(str(ds.SOPInstanceUID))
                    if path is not None and not path.exists():
                        nbytes += _write(ds, path, pacs.server.url)
                        fetched += 1
            for path in [f for f in files if not f.exists()]:
                nbytes += _write(pacs.instance(study_uid, series_uid, path.stem), path, pacs.server.url)
                fetched += 1
        except PacsError as exc:
            have = sum(f.exists() for f in files)
            if "HTTP 404" in str(exc):
                raise PacsError(f"{label}: the series (or {len(files) - have} of its instances) vanished from "
                                f"DICOMweb server {pacs.server.url} during the pull; re-run to choose the scan's "
                                "series again from what the server holds now") from None
            raise PacsError(f"{label}: {exc}; {have} of {len(files)} instances are pulled, and a re-run "
                            "fetches only the others") from None
        still = [f for f in files if not f.exists()]
        if still:
            raise PacsError(f"{label}: DICOMweb server {pacs.server.url} sent {len(files) - len(still)} of the "
                            f"{len(files)} instances its metadata lists; re-run, or check the series on the server")
        with lock:
            done["instances"] += len(files)
            done["fetched"] += fetched
            done["bytes"] += nbytes
            done["series"] += 1
            log.info("%s: %d instances (%d fetched, %.1f MB); %d/%d series, %d/%d instances pulled", label,
                     len(files), fetched, nbytes / 1e6, done["series"], len(jobs), done["instances"], total)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, jobs))
    return done


def _whole(ds: Dataset) -> bool:
    """Whether the pixel data are all there: a multipart stream cut mid-part still parses (pydicom
    reads a truncated last element), so a dropped connection must not leave a short file."""
    if "PixelData" not in ds:
        return False
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_compressed:
        try:
            return sum(1 for _ in generate_frames(ds.PixelData, number_of_frames=frames)) == frames
        except Exception:  # a fragment cut short: pydicom raises various kinds
            return False
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated) // 8 * frames
    return len(ds.PixelData) >= expected


def _write(ds: Dataset, path: Path, server: str) -> int:
    """ds to path, atomically: a file with the final name is complete and is the instance asked for."""
    if str(ds.SOPInstanceUID) != path.stem:
        raise PacsError("the server sent another instance than the one asked for; "
                        "check the server")
    if not _whole(ds):
        raise PacsError(f"DICOMweb server {server} broke off while sending an instance (the part that came is "
                        "dropped); check that it runs")
    part = path.with_name(path.name + ".part")
    ds.save_as(part, enforce_file_format=True)
    os.replace(part, path)
    return path.stat().st_size


def pull(dicomweb: dict, patient_map: pd.DataFrame, baseline: dict[str, str], results: Path, private: Path,
         settings: dict, override: pd.DataFrame | None = None) -> dict:
    """Index the server, choose one series per study (discovery's rules), retrieve the chosen ones."""
    results, private = Path(results), Path(private)
    pacs = connect(dicomweb)
    workers = int((dicomweb or {}).get("workers", 4))
    cache = private / CACHE
    log.info("pulling from DICOMweb server %s into the private cache", pacs.server.url)
    records, exclusions = index(pacs, patient_map, cache, workers)
    counts = discover(cache, patient_map, baseline, results, private, settings, override=override,
                      records=records, exclusions=exclusions)
    pulled = fetch(pacs, private, workers)
    log.info("pull done: %d series, %d instances (%d fetched now, %.1f MB)", pulled["series"], pulled["instances"],
             pulled["fetched"], pulled["bytes"] / 1e6)
    return {**counts, **{f"pulled_{k}": v for k, v in pulled.items()}}
