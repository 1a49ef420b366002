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
   series at a time, each in one request in the transfer syntax the server stores, each started
   as soon as its patient's metadata are in and discovery of that patient alone has chosen it
   (while the other patients' metadata arrive; under `on_bad_scan: fail` only after discovery of
   everyone has passed every study). Each part of
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

import gc
import logging
import os
import re
import struct
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

import pandas as pd
from pydicom import dcmread
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError

from tumorburden.imaging.discover import discover
from tumorburden.imaging.series import json_header_record
from tumorburden.pacs.client import Pacs, PacsError, connect
from tumorburden.paths import inside

log = logging.getLogger(__name__)

UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
CACHE = "pacs"  # under the private area
PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # (FFFE,E0DD), length 0, little endian


def _value(item: dict, tag: str):
    values = (item.get(tag) or {}).get("Value") or [None]
    return values[0]


def _uid(item: dict, tag: str, server: str) -> str:
    uid = str(_value(item, tag) or "")
    if not UID.match(uid) or len(uid) > 64:  # it becomes a folder name: nothing but a DICOM UID
        raise PacsError(f"DICOMweb server {server} answered a {tag} that is not a DICOM UID; check the server")
    return uid


def index(pacs: Pacs, patient_map: pd.DataFrame, cache: Path, workers: int = 4,
          on_patient=None) -> tuple[list[dict], list[dict]]:
    """(header records of every CT instance of the mapped patients, exclusion rows of patients with
    no study on the server). Records carry the cache path their file will have. on_patient(row,
    records): called with the patient map's row number and the patient's records as soon as the
    metadata of all its series are in (the others' may still be on their way)."""
    url = pacs.server.url
    records: list[dict] = []
    exclusions: list[dict] = []
    todo: list[tuple[str, str, str, int]] = []
    row_of: dict[str, int] = {}
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
        row_of[pid] = line - 2
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

    last = {job[0]: k for k, job in enumerate(todo)}  # the patient's last series
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        mine: list[dict] = []
        for k, ((pid, study_uid, series_uid, _), instances) in enumerate(pool.map(metadata, todo)):
            folder = cache / study_uid / series_uid
            for item in instances:
                sop = _uid(item, "00080018", url)
                mine.append(json_header_record(item, str(folder / f"{sop}.dcm")))
            if last[pid] == k:
                records += mine
                if on_patient is not None:
                    on_patient(row_of[pid], mine)
                mine = []
    log.info("metadata of %d CT series: %d instances (no pixel data fetched yet)", len(todo), len(records))
    return records, exclusions


def fetch(pacs: Pacs, private: Path, workers: int = 4) -> dict:
    """Retrieve every file the private series lists name under the cache and do not exist yet."""
    import json

    cache = private / CACHE
    manifest = pd.read_parquet(private / "manifest" / "series.parquet")
    number = dict(zip(manifest["series_uid"], manifest["series_number"]))
    retrieval = Retrieval(pacs, cache, workers)
    with retrieval:
        for listing in sorted((private / "series").glob("*.json")):
            entry = json.loads(listing.read_text())
            files = [Path(f) for f in entry["files"]]
            if not files or files[0].parent.parent.parent != cache:
                continue  # a list of a dicom_root export, not ours
            retrieval.submit(entry["scan_id"], number.get(files[0].parent.name), files)
    return retrieval.done


class Retrieval:
    """The chosen series retrieved `workers` at a time, each as soon as it is submitted (the pull
    submits a series as discovery chooses it). Leaving the `with` block waits for every series and
    raises the first failure, in the order the series were submitted."""

    def __init__(self, pacs: Pacs, cache: Path, workers: int = 4):
        self.pacs, self.cache = pacs, cache
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers))
        self.futures: list = []
        self.submitted = {"series": 0, "instances": 0}
        self.started: set[Path] = set()
        self.done = {"instances": 0, "fetched": 0, "bytes": 0, "series": 0}
        self.lock = threading.Lock()

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        self.pool.shutdown(wait=True)  # a series that failed does not stop the others: a re-run has less to do
        if kind is None:
            for future in self.futures:
                future.result()
        return False

    def submit(self, scan_id: str, series_number, files) -> None:
        """Retrieve the series of these files (once: a series submitted again is not fetched twice)."""
        files = [Path(f) for f in files]
        with self.lock:
            if files[0].parent in self.started:
                return
            self.started.add(files[0].parent)
            self.submitted["series"] += 1
            self.submitted["instances"] += len(files)
        self.futures.append(self.pool.submit(self.one, scan_id, series_number, files))

    def one(self, scan_id: str, series_number, files: list[Path]) -> None:
        pacs, cache = self.pacs, self.cache
        series_uid, study_uid = files[0].parent.name, files[0].parent.parent.name
        label = f"scan {scan_id} (series number {'?' if series_number is None else series_number})"
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
        with self.lock:
            done = self.done
            done["instances"] += len(files)
            done["fetched"] += fetched
            done["bytes"] += nbytes
            done["series"] += 1
            log.info("%s: %d instances (%d fetched, %.1f MB); %d/%d series, %d/%d instances pulled", label,
                     len(files), fetched, nbytes / 1e6, done["series"], self.submitted["series"], done["instances"],
                     self.submitted["instances"])


def _whole_instance(data: bytes, server: str) -> str:
    """The SOP Instance UID of a DICOM file received as bytes, once it is known to be whole.

    The bytes are written to the cache as they came (no parse and re-encode of the pixel data), so
    this header-only read is what proves them complete: a multipart stream cut by a dropped
    connection still yields its last part, short. The Pixel Data element must hold Rows x Columns x
    SamplesPerPixel x BitsAllocated/8 x NumberOfFrames bytes (native transfer syntaxes), or every
    frame in fragments closed by the sequence delimiter (encapsulated ones). A file in explicit VR
    little endian with native pixel data (what a CT is stored as, uncompressed) is checked by
    `_walk` on its bytes; anything else, and whatever the walk does not vouch for, by pydicom."""
    broke_off = PacsError(f"DICOMweb server {server} sent an instance cut short (its pixel data or header "
                          "incomplete: a dropped connection, or a damaged file on the server; the part is dropped)")
    try:
        walked = _walk(data)
    except _CutShort:
        raise broke_off from None
    if walked is not None:
        found, length, start = walked
        try:
            rows, cols, bits = (int.from_bytes(found[tag], "little") for tag in (ROWS, COLUMNS, BITS_ALLOCATED))
            samples = int.from_bytes(found[SAMPLES_PER_PIXEL], "little") if SAMPLES_PER_PIXEL in found else 1
            frames = int(found.get(NUMBER_OF_FRAMES, b"").decode("ascii").strip("\0 ") or 1)
        except (KeyError, ValueError, UnicodeDecodeError):  # pydicom would fail on these too
            raise broke_off from None
        expected = rows * cols * samples * bits // 8 * frames
        if length < expected or len(data) - start < expected:
            raise broke_off
        sop = found.get(SOP_INSTANCE_UID, b"").decode("ascii", "replace").strip("\0 ")
    else:
        sop = _whole_instance_pydicom(data, broke_off, server)
    if not UID.match(sop):
        raise PacsError(f"DICOMweb server {server} sent an instance without a valid SOP Instance UID; check the server")
    return sop


def _whole_instance_pydicom(data: bytes, broke_off: PacsError, server: str) -> str:
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
    return sop


# --- the header of a received file, walked on its bytes -------------------------------------
# pydicom's dcmread of a part costs ~0.8 CPU-ms (it builds every element of the header); the walk
# below only steps from element to element of an explicit VR little endian file and keeps the
# handful of top-level values the check needs (~0.05 ms).

SOP_INSTANCE_UID, ROWS, COLUMNS = 0x00080018, 0x00280010, 0x00280011
SAMPLES_PER_PIXEL, BITS_ALLOCATED, NUMBER_OF_FRAMES = 0x00280002, 0x00280100, 0x00280008
_WALK_KEEP = {SOP_INSTANCE_UID, ROWS, COLUMNS, SAMPLES_PER_PIXEL, BITS_ALLOCATED, NUMBER_OF_FRAMES}
_US_KEPT = (ROWS, COLUMNS, SAMPLES_PER_PIXEL, BITS_ALLOCATED)
_TRANSFER_SYNTAX = 0x00020010
EXPLICIT_VR_LITTLE_ENDIAN = b"1.2.840.10008.1.2.1"
# VRs whose length takes 4 bytes after 2 reserved ones, and those whose length takes 2 (PS3.5 7.1.2)
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_SHORT_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN", b"SH",
              b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_HEADER = struct.Struct("<HH2sH")
_LONG_LENGTH = struct.Struct("<I")


class _CutShort(Exception):
    """The bytes end before the header does, or before the pixel data starts."""


class _NotPlain(Exception):
    """Something the walk leaves to pydicom (another transfer syntax, a VR it does not know, ...)."""


def _walk(data: bytes) -> tuple[dict[int, bytes], int, int] | None:
    """({tag: raw value} of the top-level elements the check needs, Pixel Data's declared length,
    where its value starts) of a DICOM file in explicit VR little endian with native (defined
    length) Pixel Data; None for anything else (pydicom reads it)."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    try:
        found, syntax = {}, None
        # the file meta information (group 0002) is explicit VR little endian in every file
        pos, tag, length, start = _element(data, 132)
        while tag >> 16 == 0x0002:
            if tag == _TRANSFER_SYNTAX:
                syntax = data[start:start + length].rstrip(b"\0 ")
            pos, tag, length, start = _element(data, pos)
        if syntax != EXPLICIT_VR_LITTLE_ENDIAN:
            return None
        while tag != PIXEL_DATA:
            if tag in _WALK_KEEP:
                found[tag] = data[start:start + length]
            pos, tag, length, start = _element(data, pos)
    except _NotPlain:
        return None
    if length == UNDEFINED_LENGTH or any(tag in found and len(found[tag]) != 2 for tag in _US_KEPT):
        return None  # encapsulated pixel data; a US value that is not one
    return found, length, start


def _element(data: bytes, pos: int, nested: bool = False) -> tuple[int, int, int, int]:
    """(where the next element starts, this element's tag, its length, where its value starts) of
    the element at pos (in a sequence's item when nested), a sequence of undefined length stepped
    over item by item. The top level's Pixel Data is not stepped over: the walk ends there."""
    if pos + 8 > len(data):
        raise _CutShort
    group, number, vr, length = _HEADER.unpack_from(data, pos)
    tag = group << 16 | number
    if vr in _SHORT_VRS:
        start = pos + 8
    elif vr in _LONG_VRS:
        if pos + 12 > len(data):
            raise _CutShort
        (length,) = _LONG_LENGTH.unpack_from(data, pos + 8)
        start = pos + 12
    else:  # an item tag out of place, a VR unknown, or implicit VR after all
        raise _NotPlain
    if length == UNDEFINED_LENGTH:
        if vr == b"SQ" or (tag == PIXEL_DATA and nested):  # items, or an icon's fragments
            return _sequence_end(data, start), tag, length, start
        if tag == PIXEL_DATA:
            return start, tag, length, start
        raise _NotPlain  # an undefined-length UN holds implicit VR items
    if start + length > len(data) and (tag != PIXEL_DATA or nested):  # the top level's is checked after
        raise _CutShort
    return start + length, tag, length, start


def _sequence_end(data: bytes, pos: int) -> int:
    """Where a sequence of undefined length whose items start at pos ends (after its delimiter)."""
    while True:
        if pos + 8 > len(data):
            raise _CutShort
        group, number, length = struct.unpack_from("<HHI", data, pos)
        tag = group << 16 | number
        if tag == _SEQUENCE_END:
            return pos + 8
        if tag != _ITEM:
            raise _NotPlain
        pos += 8
        if length != UNDEFINED_LENGTH:
            pos += length
            continue
        while True:  # an item of undefined length: its elements up to the item delimiter
            if pos + 8 > len(data):
                raise _CutShort
            group, number = struct.unpack_from("<HH", data, pos)
            if group << 16 | number == _ITEM_END:
                pos += 8
                break
            pos = _element(data, pos, nested=True)[0]


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
    # The metadata's DICOM JSON (34 tags x 3 containers per instance) makes the cyclic garbage
    # collector run dozens of times, and its full collections walk every object the imports left
    # (pandas, pydicom: ~80,000): 0.05 CPU-s of a 300-slice pull's 0.5. Those objects outlive the
    # pull, so they are set aside (gc.freeze) while it runs; what the pull makes is still collected.
    frozen_here = gc.get_freeze_count() == 0
    if frozen_here:
        gc.freeze()
    try:
        return _pull(dicomweb, patient_map, baseline, results, private, settings, override)
    finally:
        if frozen_here:
            gc.unfreeze()


def _pull(dicomweb: dict, patient_map: pd.DataFrame, baseline: dict[str, str], results: Path, private: Path,
          settings: dict, override: pd.DataFrame | None) -> dict:
    results, private = Path(results), Path(private)
    pacs = connect(dicomweb)
    workers = int((dicomweb or {}).get("workers", 4))
    cache = private / CACHE
    log.info("pulling from DICOMweb server %s into the private cache", pacs.server.url)
    # A patient's series are retrieved as soon as its choice is known: discovery's choice depends on
    # the patient's own studies only (scan IDs and days count from its baseline, the override table
    # is keyed by its scan IDs), so discovery run on the patient's records alone, as soon as their
    # metadata are in, chooses what discovery of everyone will; the retrieval then overlaps the other
    # patients' metadata (which the server reads from disk) and discovery of everyone. Under
    # on_bad_scan: fail the retrieval waits until discovery has passed every study, so a run that
    # stops has fetched no pixel.
    early = settings.get("on_bad_scan") != "fail"
    chosen = []
    private.mkdir(parents=True, exist_ok=True)
    with Retrieval(pacs, cache, workers) as retrieval, tempfile.TemporaryDirectory(dir=private) as scratch:
        def look_ahead(row: int, mine: list[dict]) -> None:
            discover(cache, patient_map.iloc[[row]], baseline, Path(scratch) / "results", Path(scratch) / str(row),
                     settings, override=override, records=mine, on_chosen=retrieval.submit, tables=False)

        records, exclusions = index(pacs, patient_map, cache, workers, on_patient=look_ahead if early else None)
        counts = discover(cache, patient_map, baseline, results, private, settings, override=override,
                          records=records, exclusions=exclusions,
                          on_chosen=retrieval.submit if early else lambda *job: chosen.append(job))
        for job in chosen:
            retrieval.submit(*job)
    pulled = retrieval.done
    log.info("pull done: %d series, %d instances (%d fetched now, %.1f MB)", pulled["series"], pulled["instances"],
             pulled["fetched"], pulled["bytes"] / 1e6)
    return {**counts, **{f"pulled_{k}": v for k, v in pulled.items()}}
