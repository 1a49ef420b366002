"""Pull from a real Orthanc: the same choice as discovery of the same files, only the chosen series
fetched, resumable, and the faults in one line."""

from __future__ import annotations

import json
import struct
import threading
import time
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from dicomgen import write_series

from tumorburden.imaging.discover import discover
from tumorburden.imaging.ingest import DEFAULTS
from tumorburden.imaging.series import SeriesError
from tumorburden.pacs.client import Pacs, PacsError, connect
from tumorburden.pacs.pull import _walk, _whole_instance, fetch, index, pull
from tumorburden.study import baseline_dates, read_patient_map

SECRETS = ("HOSP123", "HOSP456", "HOSP999", "Doe", "Jane", "19500101")
P1 = dict(patient_id="HOSP123", patient_name="Doe^Jane", birth_date="19500101")


def make_export(root: Path, n_big: int = 7, rows: int = 12) -> None:
    """P01 (HOSP123): a study with a topogram, a 3 mm and a 5 mm portal venous series, and a later
    study; HOSP999, on the server but not in the patient map. P02 (HOSP456) has nothing."""
    a = root / "HOSP123_DOE_JANE"
    write_series(a / "s1", study_uid="1.2.5.1", study_date="20240105", n=2, series_number=1,
                 description="Topogram", image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"], uid="1.2.5.1.1", **P1)
    write_series(a / "s2", study_uid="1.2.5.1", study_date="20240105", step=3.0, uid="1.2.5.1.2", n=n_big,
                 rows=rows, cols=rows, description="Abdomen portal venous 3.0 Doe", **P1)
    write_series(a / "s3", study_uid="1.2.5.1", study_date="20240105", step=5.0, uid="1.2.5.1.3",
                 description="Abdomen portal venous 5.0", series_number=3, **P1)
    write_series(a / "s4", study_uid="1.2.5.2", study_date="20240301", step=2.0, uid="1.2.5.2.1", **P1)
    write_series(root / "other", study_uid="1.2.7.1", study_date="20240110", uid="1.2.7.1.1",
                 patient_id="HOSP999", patient_name="Poe^Ann", birth_date="19700101", n=3)


@pytest.fixture()
def study(tmp_path):
    clinical = pd.DataFrame({"patient_id": ["P01", "P02"], "cohort": ["lung", "melanoma"], "pfs_days": [100, 200],
                             "pfs_event": [1, 0], "os_days": [300, 400], "os_event": [0, 0],
                             "baseline_date": ["2024-01-01", "2024-01-15"]})
    clinical.to_csv(tmp_path / "clinical.tsv", sep="\t", index=False)
    pd.DataFrame({"dicom_patient_id": ["HOSP123", "HOSP456"], "patient_id": ["P01", "P02"]}).to_csv(
        tmp_path / "patients.tsv", sep="\t", index=False)
    clinical = pd.read_csv(tmp_path / "clinical.tsv", sep="\t", dtype=str)
    return read_patient_map(tmp_path / "patients.tsv", clinical), baseline_dates(clinical, tmp_path / "clinical.tsv")


def _upload(orthanc, root: Path) -> None:
    orthanc.upload(sorted(p for p in root.rglob("*") if p.is_file()))


def _settings():
    return {**DEFAULTS, "workers": 1}


def _cached(private: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(d.glob("*.dcm")) for d in (private / "pacs").glob("*/*") if d.is_dir()}


def test_pull_chooses_as_discovery_does_and_fetches_only_the_chosen(orthanc, study, tmp_path, caplog):
    make_export(tmp_path / "export")
    _upload(orthanc, tmp_path / "export")
    pmap, baseline = study
    discover(tmp_path / "export", pmap, baseline, tmp_path / "disk", tmp_path / "disk_private", _settings())
    caplog.set_level("INFO")
    pull({"url": orthanc.url, "workers": 2}, pmap, baseline, tmp_path / "results", tmp_path / "private", _settings())

    keys = ["patient_id", "scan_id", "days", "status", "reason", "series_uid", "series_number", "description",
            "n_slices", "slice_thickness_mm", "findings"]
    disk = pd.read_parquet(tmp_path / "disk_private/manifest/series.parquet")[keys].sort_values("series_uid")
    server = pd.read_parquet(tmp_path / "private/manifest/series.parquet")[keys].sort_values("series_uid")
    pd.testing.assert_frame_equal(disk.reset_index(drop=True), server.reset_index(drop=True))
    assert (tmp_path / "disk/manifest/scans.tsv").read_text().count("\n") == 3  # header + P01's two scans
    scans = pd.read_csv(tmp_path / "results/manifest/scans.tsv", sep="\t")
    assert list(scans["scan_id"]) == ["P01_d4", "P01_d60"]

    # only the chosen series travelled; every cached instance is the server's, pixel for pixel
    cached = _cached(tmp_path / "private")
    assert sorted(cached) == ["1.2.5.1.2", "1.2.5.2.1"]
    originals = {pydicom.dcmread(p).SOPInstanceUID: p for p in (tmp_path / "export").rglob("*.dcm")}
    for files in cached.values():
        assert len(files) == 7
        for f in files:
            ds = pydicom.dcmread(f)
            assert ds.SOPInstanceUID == f.stem
            assert ds.PixelData == pydicom.dcmread(originals[f.stem]).PixelData
    for scan_id in scans["scan_id"]:
        listing = json.loads((tmp_path / f"private/series/{scan_id}.json").read_text())
        assert all(Path(f).exists() for f in listing["files"])

    excl = pd.read_csv(tmp_path / "results/qc/ingest_exclusions.tsv", sep="\t")
    p02 = excl[excl["patient_id"] == "P02"]["reason"].tolist()
    assert len(p02) == 1 and orthanc.url in p02[0] and "no study" in p02[0] and "patient map line 3" in p02[0]
    for path in (tmp_path / "results").rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("latin-1")
            assert not any(s in text for s in SECRETS), path
    assert not any(s in caplog.text for s in SECRETS + ("1.2.5.1.2",))
    assert "pull done: 2 series, 14 instances (14 fetched" in caplog.text


def test_under_on_bad_scan_fail_a_stopped_pull_fetches_no_pixel(orthanc, study, tmp_path):
    """Series are retrieved as discovery chooses them, except under on_bad_scan: fail, where the run
    stops at the end of discovery (here: P02 has no study on the server) with nothing fetched."""
    make_export(tmp_path / "export")
    _upload(orthanc, tmp_path / "export")
    pmap, baseline = study
    with pytest.raises(SeriesError, match="imaging.on_bad_scan is fail"):
        pull({"url": orthanc.url}, pmap, baseline, tmp_path / "results", tmp_path / "private",
             {**_settings(), "on_bad_scan": "fail"})
    assert (tmp_path / "private/series/P01_d4.json").exists()  # discovery chose, ...
    assert not list((tmp_path / "private").rglob("*.dcm"))  # ... and no pixel was fetched
    pull({"url": orthanc.url}, pmap, baseline, tmp_path / "results", tmp_path / "private", _settings())
    assert sorted(_cached(tmp_path / "private")) == ["1.2.5.1.2", "1.2.5.2.1"]  # skip: fetched


def test_a_patients_series_is_retrieved_while_the_next_patients_metadata_is_awaited(orthanc, study, tmp_path,
                                                                                      monkeypatch):
    """The look-ahead: P01's chosen series travels as soon as P01's metadata are in. The server's
    answer for P02's series waits here until P01's series is in the cache (a pull that retrieved
    only after every patient's metadata would stall), and the series override table is honoured
    by the look-ahead (P01_d4 forced to its 5 mm series: nothing else of that study travels)."""
    make_export(tmp_path / "export")
    _upload(orthanc, tmp_path / "export")
    pmap = pd.DataFrame({"dicom_patient_id": ["HOSP123", "HOSP999"], "patient_id": ["P01", "P02"]})
    baseline = {"P01": "2024-01-01", "P02": "2024-01-01"}
    first = tmp_path / "private/pacs/1.2.5.1/1.2.5.1.3"
    waited = []
    answer = Pacs.series_metadata

    def series_metadata(self, study_uid, series_uid):
        if series_uid == "1.2.7.1.1":  # P02's
            deadline = time.monotonic() + 30
            while len(list(first.glob("*.dcm"))) < 7 and time.monotonic() < deadline:
                time.sleep(0.01)
            waited.append(len(list(first.glob("*.dcm"))))
        return answer(self, study_uid, series_uid)

    monkeypatch.setattr(Pacs, "series_metadata", series_metadata)
    override = pd.DataFrame({"scan_id": ["P01_d4"], "series_uid": ["1.2.5.1.3"]})
    pull({"url": orthanc.url, "workers": 1}, pmap, baseline, tmp_path / "results", tmp_path / "private", _settings(),
         override=override)
    assert waited == [7]
    assert sorted(_cached(tmp_path / "private")) == ["1.2.5.1.3", "1.2.5.2.1", "1.2.7.1.1"]
    assert sorted(p.name for p in (tmp_path / "private/series").glob("*.json")) == [
        "P01_d4.json", "P01_d60.json", "P02_d9.json"]


def test_rerun_fetches_only_what_is_missing(orthanc, study, tmp_path, caplog):
    make_export(tmp_path / "export")
    _upload(orthanc, tmp_path / "export")
    pmap, baseline = study
    args = ({"url": orthanc.url}, pmap, baseline, tmp_path / "results", tmp_path / "private", _settings())
    pull(*args)
    files = _cached(tmp_path / "private")["1.2.5.1.2"]
    before = {f: f.stat().st_mtime_ns for f in files}
    files[0].unlink()
    files[3].unlink()
    files[3].with_name(files[3].name + ".part").write_bytes(b"half a file")  # an interrupted write
    caplog.set_level("INFO")
    pull(*args)
    assert "scan P01_d4 (series number 2): 5 of 7 instances already pulled; fetching the 2 missing" in caplog.text
    assert "pull done: 2 series, 14 instances (2 fetched" in caplog.text
    for f, mtime in before.items():
        assert pydicom.dcmread(f).SOPInstanceUID == f.stem
        if f not in (files[0], files[3]):
            assert f.stat().st_mtime_ns == mtime  # not fetched again


def test_series_vanishing_mid_pull_is_one_line_naming_the_scan(orthanc, study, tmp_path):
    make_export(tmp_path / "export")
    _upload(orthanc, tmp_path / "export")
    pmap, baseline = study
    pacs = connect({"url": orthanc.url})
    records, exclusions = index(pacs, pmap, tmp_path / "private/pacs")
    discover(tmp_path / "private/pacs", pmap, baseline, tmp_path / "results", tmp_path / "private", _settings(),
             records=records, exclusions=exclusions)
    orthanc.delete_series("1.2.5.2.1")  # after the choice, before the retrieval
    with pytest.raises(PacsError) as err:
        fetch(pacs, tmp_path / "private", workers=1)
    msg = str(err.value)
    assert "\n" not in msg and "scan P01_d60" in msg and "vanished" in msg and orthanc.url in msg and "re-run" in msg
    assert "1.2.5.2.1" not in msg


def test_server_killed_mid_pull_then_restarted_resumes(orthanc, study, tmp_path, caplog):
    # one big series (120 slices of 256 x 256), so the kill lands while it streams
    make_export(tmp_path / "export", n_big=120, rows=256)
    _upload(orthanc, tmp_path / "export")
    pmap, baseline = study
    args = ({"url": orthanc.url, "workers": 1}, pmap, baseline, tmp_path / "results", tmp_path / "private", _settings())
    folder = tmp_path / "private/pacs/1.2.5.1/1.2.5.1.2"
    failure = []

    def run():
        try:
            pull(*args)
        except PacsError as exc:
            failure.append(str(exc))

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while not list(folder.glob("*.dcm")) and time.monotonic() < deadline:
        time.sleep(0.002)
    orthanc.kill()
    worker.join(60)
    assert failure, "the pull finished before the server was killed"
    msg = failure[0]
    assert "\n" not in msg and orthanc.url in msg and "scan P01_d4" in msg and "re-run" in msg
    have = sorted(folder.glob("*.dcm"))
    assert 0 < len(have) < 120
    for f in have:  # whatever has the final name is whole
        assert pydicom.dcmread(f).pixel_array.shape == (256, 256)

    orthanc.restart()
    caplog.set_level("INFO")
    pull(*args)
    assert f"{len(have)} of 120 instances already pulled; fetching the {120 - len(have)} missing" in caplog.text
    assert len(list(folder.glob("*.dcm"))) == 120


def test_unreachable_server_and_wrong_credentials_stop_the_pull(orthanc_factory, study, tmp_path, monkeypatch):
    pmap, baseline = study
    server = orthanc_factory("radiology:s3cret")
    monkeypatch.setenv("TB_PACS", "radiology:nope")
    with pytest.raises(PacsError, match="refused the credentials"):
        pull({"url": server.url, "credentials_env": "TB_PACS"}, pmap, baseline, tmp_path / "r", tmp_path / "p", _settings())
    url = server.url
    server.stop()
    with pytest.raises(PacsError, match=f"{url} unreachable"):
        pull({"url": url}, pmap, baseline, tmp_path / "r", tmp_path / "p", _settings())
    assert not (tmp_path / "r/manifest").exists()



@pytest.mark.parametrize("syntax", [None, "rle"])
def test_an_instance_cut_anywhere_is_never_taken_for_whole(tmp_path, syntax):
    """The pull writes the bytes it received without decoding them: the header-only check must
    reject a part cut at any point (in the header, in the pixel data, in the last fragment, before
    the sequence delimiter of encapsulated pixel data)."""
    write_series(tmp_path / "s", n=1, rows=64, cols=64, syntax=syntax)
    (path,) = sorted((tmp_path / "s").iterdir())
    data = path.read_bytes()
    sop = pydicom.dcmread(path).SOPInstanceUID
    assert _whole_instance(data, "http://pacs/dicom-web") == sop
    for keep in (100, 400, len(data) // 2, len(data) - 1000, len(data) - 9, len(data) - 8, len(data) - 1):
        with pytest.raises(PacsError) as err:
            _whole_instance(data[:keep], "http://pacs/dicom-web")
        assert "\n" not in str(err.value) and "http://pacs/dicom-web" in str(err.value), keep


def test_an_instance_with_short_pixel_data_stops_the_pull_and_is_not_cached(orthanc, study, tmp_path):
    # one instance of the chosen series stored on the server with half its pixel data
    make_export(tmp_path / "export")
    files = sorted((tmp_path / "export/HOSP123_DOE_JANE/s2").iterdir())
    ds = pydicom.dcmread(files[3])
    short_sop = ds.SOPInstanceUID
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(files[3])
    _upload(orthanc, tmp_path / "export")
    pmap, baseline = study
    with pytest.raises(PacsError) as err:
        pull({"url": orthanc.url, "workers": 1}, pmap, baseline, tmp_path / "results", tmp_path / "private", _settings())
    msg = str(err.value)
    assert "\n" not in msg and orthanc.url in msg and "scan P01_d4 (series number 2)" in msg and "re-run" in msg
    assert "pixel data" in msg and "1.2.5.1.2" not in msg
    folder = tmp_path / "private/pacs/1.2.5.1/1.2.5.1.2"
    assert not (folder / f"{short_sop}.dcm").exists()
    for f in folder.glob("*.dcm"):  # what did arrive is whole
        assert pydicom.dcmread(f).pixel_array.shape == (12, 12)


# --- the header check on the bytes: explicit VR little endian walked, anything else to pydicom ---

UNDEFINED = 0xFFFFFFFF
SERVER = "http://pacs/dicom-web"


def _element(tag: int, vr: bytes, value: bytes, length: int | None = None) -> bytes:
    if vr in (b"SQ", b"OB", b"OW", b"UN", b"UT"):
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, vr, 0, len(value) if length is None else length) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


def _item(body: bytes, undefined: bool) -> bytes:
    if undefined:
        return struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + body + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


def _sequence(tag: int, items: list[bytes], undefined: bool) -> bytes:
    body = b"".join(_item(it, undefined) for it in items)
    if undefined:
        return _element(tag, b"SQ", body + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0), UNDEFINED)
    return _element(tag, b"SQ", body)


def _insert(data: bytes, tag: int, encoded: bytes) -> bytes:
    """data with the encoded element put before the first top-level element after tag."""
    ds = pydicom.dcmread(__import__("io").BytesIO(data))
    later = sorted(t for t in ds.keys() if t > tag)
    raw = ds.get_item(later[0])
    head = 12 if raw.VR in ("SQ", "OB", "OW", "UN", "UT") else 8
    at = raw.value_tell - head
    return data[:at] + encoded + data[at:]


def _with_sequences(data: bytes) -> bytes:
    """A CT file with what real ones carry and pydicom does not write: sequences and items of
    undefined length nested in each other, a sequence of defined length, and an icon image whose
    own pixel data is encapsulated (undefined length) inside an item."""
    code = _element(0x00080100, b"SH", b"121311") + _element(0x00080102, b"SH", b"DCM ")
    reference = (_element(0x00081150, b"UI", b"1.2.840.10008.5.1.4.1.1.2\0") + _element(0x00081155, b"UI", b"1.2.3.4\0")
                 + _sequence(0x0040A170, [code], undefined=True))
    data = _insert(data, 0x00081140, _sequence(0x00081140, [reference, reference], undefined=True))
    data = _insert(data, 0x00082112, _sequence(0x00082112, [reference], undefined=False))
    fragments = (struct.pack("<HHI", 0xFFFE, 0xE000, 0) + struct.pack("<HHI", 0xFFFE, 0xE000, 16) + b"\x01" * 16
                 + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    icon = (_element(0x00280002, b"US", struct.pack("<H", 1)) + _element(0x00280010, b"US", struct.pack("<H", 4))
            + _element(0x00280011, b"US", struct.pack("<H", 4)) + _element(0x00280100, b"US", struct.pack("<H", 8))
            + _element(0x7FE00010, b"OB", fragments, UNDEFINED))
    return _insert(data, 0x00880200, _sequence(0x00880200, [icon], undefined=True))


def _assert_whole_and_every_cut_refused(data: bytes, sop: str, cuts) -> None:
    assert _whole_instance(data, SERVER) == sop
    for keep in cuts:
        with pytest.raises(PacsError) as err:
            _whole_instance(data[:keep], SERVER)
        # cut before the preamble's end it is not even a DICOM file; after it, an instance cut short
        why = "not a DICOM file" if keep < 132 else "cut short"
        assert "\n" not in str(err.value) and SERVER in str(err.value) and why in str(err.value), keep


def test_walked_header_with_nested_undefined_length_sequences(tmp_path):
    write_series(tmp_path / "s", n=1, rows=32, cols=32)
    (path,) = sorted((tmp_path / "s").iterdir())
    data = _with_sequences(path.read_bytes())
    ds = pydicom.dcmread(__import__("io").BytesIO(data))  # pydicom reads the same bytes as valid DICOM
    assert ds.ReferencedImageSequence[1].PurposeOfReferenceCodeSequence[0].CodeValue == "121311"
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == "1.2.3.4" and ds.IconImageSequence[0].Rows == 4
    assert ds.pixel_array.shape == (32, 32)
    found, length, start = _walk(data)  # the walk, not pydicom, checks this one
    assert length == 32 * 32 * 2 and data[start:] == ds.PixelData
    pixels_at = start - 12
    _assert_whole_and_every_cut_refused(data, ds.SOPInstanceUID, [*range(0, pixels_at + 20), len(data) - 1])


def test_big_file_walked_and_short_pixel_data_refused(tmp_path):
    write_series(tmp_path / "s", n=1, rows=512, cols=512)
    (path,) = sorted((tmp_path / "s").iterdir())
    data = path.read_bytes()
    sop = pydicom.dcmread(path).SOPInstanceUID
    assert _walk(data) is not None
    _assert_whole_and_every_cut_refused(data, sop, [200, len(data) // 3, len(data) - 2, len(data) - 1])
    # the Pixel Data element whole in itself, but half of what Rows x Columns x 2 bytes needs
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    ds.save_as(tmp_path / "short.dcm")
    short = (tmp_path / "short.dcm").read_bytes()
    assert _walk(short) is not None
    with pytest.raises(PacsError, match="cut short"):
        _whole_instance(short, SERVER)


@pytest.mark.parametrize("syntax", ["implicit", "rle"])
def test_other_transfer_syntaxes_left_to_pydicom(tmp_path, syntax):
    write_series(tmp_path / "s", n=1, rows=32, cols=32, syntax=syntax)
    (path,) = sorted((tmp_path / "s").iterdir())
    data = path.read_bytes()
    assert _walk(data) is None
    _assert_whole_and_every_cut_refused(data, pydicom.dcmread(path).SOPInstanceUID,
                                        [*range(0, 600, 7), len(data) - 9, len(data) - 1])


def test_a_header_the_walk_does_not_know_goes_to_pydicom(tmp_path):
    """An undefined-length UN element (implicit VR items inside) and a file whose meta says explicit
    VR while its data set is implicit: the walk hands both to pydicom, whose answer stands."""
    write_series(tmp_path / "s", n=1, rows=16, cols=16)
    (path,) = sorted((tmp_path / "s").iterdir())
    data = path.read_bytes()
    sop = pydicom.dcmread(path).SOPInstanceUID
    item = struct.pack("<HHI", 0x0008, 0x0100, 6) + b"121311"  # implicit VR inside
    unknown = _element(0x00091010, b"UN", _item(item, True) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0), UNDEFINED)
    with_un = _insert(data, 0x00091010, unknown)
    assert _walk(with_un) is None
    assert _whole_instance(with_un, SERVER) == sop
    with pytest.raises(PacsError, match="cut short"):
        _whole_instance(with_un[:-1], SERVER)
    write_series(tmp_path / "i", n=1, rows=16, cols=16, syntax="implicit")
    (implicit,) = sorted((tmp_path / "i").iterdir())
    lying = implicit.read_bytes().replace(b"1.2.840.10008.1.2\0", b"1.2.840.10008.1.2.1")
    assert _walk(lying) is None


def test_the_pull_sets_the_imports_aside_from_the_collector_and_puts_them_back(monkeypatch, tmp_path):
    import gc

    from tumorburden.pacs import pull as pull_module

    seen = []

    def fake_pull(*args):
        seen.append(gc.get_freeze_count())
        if len(seen) == 2:
            raise PacsError("DICOMweb server http://pacs unreachable")
        return {}

    monkeypatch.setattr(pull_module, "_pull", fake_pull)
    assert gc.get_freeze_count() == 0
    pull({"url": "http://pacs"}, pd.DataFrame(), {}, tmp_path, tmp_path, _settings())
    assert seen[0] > 0 and gc.get_freeze_count() == 0  # frozen while it ran, thawed after
    with pytest.raises(PacsError):
        pull({"url": "http://pacs"}, pd.DataFrame(), {}, tmp_path, tmp_path, _settings())
    assert seen[1] > 0 and gc.get_freeze_count() == 0  # thawed after a failure too
    gc.freeze()  # someone else's freeze is left as it was
    try:
        frozen = gc.get_freeze_count()
        pull({"url": "http://pacs"}, pd.DataFrame(), {}, tmp_path, tmp_path, _settings())
        assert seen[2] == frozen and gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
