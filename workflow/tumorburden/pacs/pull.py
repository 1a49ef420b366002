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
   series at a time, each in one request in the transfer syntax the server stores. Each part of
   the answer is written as it came (its bytes, not decoded and encoded again) to a `.part` file
   and renamed once a header-only read shows it whole (its SOP Instance UID is one the metadata
   listed, its pixel data all there: a multipart stream cut by a dropped connection still yields
   its last part, short), so a file with the final name is always whole; a series counts as
   pulled when every SOP Instance UID of its metadata has its file. A re-run (after an
   interruption, or with new studies on the server) fetches only the instances whose files are
   missing.

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
from io import BytesIO
from pathlib import Path

import pandas as pd
from pydicom import dcmread
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError

from tumorburden.imaging.discover import discover
from tumorburden.imaging.series import TAGS, header_record
from tumorburden.pacs.client import Pacs, PacsError, connect
from tumorburden.paths import inside

log = logging.getLogger(__name__)

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
CACHE = "pacs"  # under the private area
PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
HEADER_TAGS = [f"{tag_for_keyword(keyword):08X}" for keyword in TAGS]  # DICOM JSON keys
SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # (FFFE,E0DD), length 0, little endian


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
                # only the elements discovery reads: a CT header has a few hundred, and pydicom's
                # JSON conversion costs ~0.1 ms each; pixel data (a BulkDataURI) is never among them
                ds = Dataset.from_json({tag: item[tag] for tag in HEADER_TAGS if tag in item})
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
                for data in pacs.iter_series_files(study_uid, series_uid):
                    path = wanted.get(_whole_instance(data, pacs.server.url))
                    if path is not None and not path.exists():
                        nbytes += _write(data, path)
                        fetched += 1
            for path in [f for f in files if not f.exists()]:
                data = pacs.instance_file(study_uid, series_uid, path.stem)
                if data is not None:
                    if _whole_instance(data, pacs.server.url) != path.stem:
                        raise PacsError("the server sent another instance than the one asked for; check the server")
                    nbytes += _write(data, path)
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


def _whole_instance(data: bytes, server: str) -> str:
    """The SOP Instance UID of a DICOM file received as bytes, once it is known to be whole.

    The bytes are written to the cache as they came (no parse and re-encode of the pixel data), so
    this header-only read is what proves them complete: a multipart stream cut by a dropped
    connection still yields its last part, short. The Pixel Data element must hold Rows x Columns x
    SamplesPerPixel x BitsAllocated/8 x NumberOfFrames bytes (native transfer syntaxes), or every
    frame in fragments closed by the sequence delimiter (encapsulated ones)."""
    broke_off = PacsError(f"DICOMweb server {server} sent an instance cut short (its pixel data or header "
                          "incomplete: a dropped connection, or a damaged file on the server; the part is dropped)")
    try:
        ds = dcmread(BytesIO(data))  # elements stay raw: only those read below are converted
    except InvalidDicomError:
        if len(data) > 132 and data[128:132] == b"DICM":
            raise broke_off from None
        raise PacsError(f"DICOMweb server {server} sent a part that is not a DICOM file (no preamble and File Meta "
                        "Information); check the server's WADO-RS answer") from None
    except Exception:  # a header cut short: pydicom raises various kinds
        raise broke_off from None
    try:
        sop = str(ds.get("SOPInstanceUID", ""))
        if "PixelData" not in ds:
            raise broke_off
        pixels = ds.get_item(PIXEL_DATA)  # still raw: its declared length and where its value starts
        value = pixels.value
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if pixels.length == UNDEFINED_LENGTH:  # encapsulated: the fragments' items, then the delimiter
            end = pixels.value_tell + len(value)
            whole = (data[end:end + 8] == SEQUENCE_DELIMITER
                     and sum(1 for _ in generate_frames(value, number_of_frames=frames)) == frames)
        else:
            expected = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * int(ds.BitsAllocated)
                        // 8 * frames)
            whole = pixels.length >= expected and len(value) >= expected
    except PacsError:
        raise
    except Exception:  # a data set cut short or damaged: pydicom raises various kinds
        raise broke_off from None
    if not whole:
        raise broke_off
    if not UID.match(sop):
        raise PacsError(f"DICOMweb server {server} sent an instance without a valid SOP Instance UID; check the server")
    return sop


def _write(data: bytes, path: Path) -> int:
    """The file's bytes to path, atomically: a file with the final name is complete (checked first by
    _whole_instance) and is the instance asked for."""
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)
    return len(data)


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
