"""Reviews found on a real DICOMweb server (Orthanc): a radiologist's SEG and RTSTRUCT uploaded beside the
scan's CT series and our own SEG; fetch_reviews downloads only the reviews, and the folder route
matches them to their scan."""

import json

import numpy as np
import pandas as pd
import pydicom
from dicomweb_client import DICOMwebClient
from pydicom.sr.codedict import codes

from review_objects import LESION, pixel_outline, write_rtstruct, write_seg
from tumorburden.cli import main
from tumorburden.segment.review import choose_reviews, fetch_reviews, index_reviews
from tumorburden.synth.dicom import SeriesInfo, hu_to_stored, write_ct_series


def _ct(folder, name):
    hu = np.full((16, 16, 6), 40.0, np.float32)
    info = SeriesInfo(patient_id=name, patient_sex="F", study_date="20200101", study_time="090000", study_id="1",
                      series_description="CT", body_part="CHEST", uid_entropy=[name])
    write_ct_series(hu_to_stored(hu), (-40.0, -40.0, 0.0), 5.0, 5.0, info, folder)
    return sorted((pydicom.dcmread(p) for p in folder.glob("*.dcm")), key=lambda d: float(d.ImagePositionPatient[2]))


def test_fetch_reviews_downloads_only_the_reviews_of_the_scans_studies(orthanc, tmp_path):
    ct = _ct(tmp_path / "ct", "P1")
    other = _ct(tmp_path / "other", "P2")  # another patient's study, also with a review: not asked for
    frames = np.zeros((6, 16, 16), np.uint8)
    frames[2:4, 5:9, 5:9] = 1
    objects = tmp_path / "objects"
    objects.mkdir()
    write_seg(ct, frames, {1: ("Lesion 1", *LESION)}, objects / "corrected.dcm", description="corrected",
              content_date="20240301", content_time="100000")
    write_seg(ct, frames, {1: ("lesion", *LESION)}, objects / "ours.dcm", description="tumorburden segmentation")
    # the radiologist's second look, the next morning
    write_rtstruct(ct[0], {"GTV": [pixel_outline(ct[3], 4, 6, 4, 6)]}, objects / "rs.dcm",
                   description="Radiologist review", refer_to_series=False, StructureSetDate="20240302",
                   StructureSetTime="080000")
    write_seg(other, frames, {1: ("lesion", *LESION)}, objects / "other.dcm")
    assert orthanc.upload([*(tmp_path / "ct").glob("*.dcm"), *(tmp_path / "other").glob("*.dcm"),
                           *objects.glob("*.dcm")]) == 12 + 4
    ours = pydicom.dcmread(objects / "ours.dcm")
    studies = {ct[0].StudyInstanceUID: {ct[0].SeriesInstanceUID, ours.SeriesInstanceUID}}
    client = DICOMwebClient(orthanc.url)
    folder = tmp_path / "review"

    got = fetch_reviews(client, folder, studies)
    assert len(got) == 1 and sorted(folder.iterdir()) == got
    corrected = pydicom.dcmread(objects / "corrected.dcm")
    assert pydicom.dcmread(got[0]).SOPInstanceUID == corrected.SOPInstanceUID
    assert corrected.SOPInstanceUID not in got[0].name  # no hospital UID in a path Snakemake logs
    assert index_reviews(folder, {"S1": str(tmp_path / "ct"), "S2": str(tmp_path / "other")}) == {"S1": got[0]}

    stamp = got[0].stat().st_mtime_ns
    both = fetch_reviews(client, folder, studies, series_description="*review*")
    assert len(both) == 2 and got[0] in both and got[0].stat().st_mtime_ns == stamp  # not fetched again
    kinds = sorted(pydicom.dcmread(p).Modality for p in folder.iterdir())
    assert kinds == ["RTSTRUCT", "SEG"]
    # two reviews of one scan fetched from the server: the newer (the structure set) counts, as in a folder
    choice = choose_reviews(folder, {"S1": str(tmp_path / "ct")}, series_description="*review*")
    assert pydicom.dcmread(choice.paths()["S1"]).Modality == "RTSTRUCT"
    ((older, why),) = choice.passed_over["S1"]
    assert older.path == got[0] and why == "older than the RTSTRUCT taken (content date/time 22.0 h earlier)"


def test_fetch_reviews_command_takes_each_scans_review_once_and_names_no_hospital_uid(orthanc_factory, tmp_path,
                                                                                      monkeypatch, caplog, capsys):
    """`tumorburden pacs fetch-reviews` (the fetch_reviews rule) from the private side only: the scans table's
    series lists and our SEG copies; wrong credentials and a stopped server are one line; a rerun fetches nothing."""
    server = orthanc_factory("radiology:s3cret")
    private = tmp_path / "private"
    ct = {"S1": _ct(private / "pacs" / "a", "P1"), "S2": _ct(private / "pacs" / "b", "P2")}
    rows = []
    for scan_id, pid in (("S1", "P1"), ("S2", "P2")):
        listing = private / "series" / f"{scan_id}.json"
        listing.parent.mkdir(parents=True, exist_ok=True)
        files = sorted(str(p) for p in (private / "pacs" / ("a" if scan_id == "S1" else "b")).glob("*.dcm"))
        listing.write_text(json.dumps({"scan_id": scan_id, "series_uid": ct[scan_id][0].SeriesInstanceUID, "files": files}))
        rows.append({"patient_id": pid, "scan_id": scan_id, "days": 0.0, "image": str(listing)})
    scans = tmp_path / "scans.tsv"
    pd.DataFrame(rows).to_csv(scans, sep="\t", index=False)
    frames = np.zeros((6, 16, 16), np.uint8)
    frames[2:4, 5:9, 5:9] = 1
    ours = private / "dicom_seg" / "P1" / "S1.dcm"
    ours.parent.mkdir(parents=True)
    write_seg(ct["S1"], frames, {1: ("lesion", *LESION)}, ours, description="tumorburden segmentation")
    objects = tmp_path / "objects"
    objects.mkdir()
    write_seg(ct["S1"], frames, {1: ("Lesion 1", *LESION)}, objects / "corrected.dcm")
    write_rtstruct(ct["S2"][0], {"GTV": [pixel_outline(ct["S2"][3], 4, 6, 4, 6)]}, objects / "rs.dcm")
    uploaded = [*(private / "pacs").rglob("*.dcm"), ours, *objects.glob("*.dcm")]
    assert server.upload(uploaded) == 12 + 3
    folder = tmp_path / "reviews"
    argv = ["pacs", "fetch-reviews", f"--dicomweb={json.dumps({'url': server.url, 'credentials_env': 'TB_PACS'})}",
            f"--scans-table={scans}", f"--private-seg-dir={private / 'dicom_seg'}", f"--review-dir={folder}"]
    hospital = {ds.SeriesInstanceUID for d in ct.values() for ds in d} | {ds.StudyInstanceUID for d in ct.values()
                                                                          for ds in d}
    hospital |= {pydicom.dcmread(p).SOPInstanceUID for p in objects.glob("*.dcm")} | {"P1", "P2"}

    monkeypatch.setenv("TB_PACS", "radiology:nope")
    assert main(argv) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert f"DICOMweb server {server.url} refused the credentials" in line and "nope" not in line

    monkeypatch.setenv("TB_PACS", "radiology:s3cret")
    caplog.set_level("INFO")
    assert main(argv) == 0
    got = sorted(folder.iterdir())
    assert sorted(pydicom.dcmread(p).Modality for p in got) == ["RTSTRUCT", "SEG"]
    assert "scan S1: SEG review" in caplog.text and "scan S2: RTSTRUCT review" in caplog.text
    assert "2 new" in caplog.text
    assert not [u for u in hospital if u in caplog.text or any(u in p.name for p in got)]

    stamps = {p: p.stat().st_mtime_ns for p in got}
    caplog.clear()
    assert main(argv) == 0
    assert "0 new" in caplog.text and {p: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps

    server.stop()
    assert main(argv) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert f"DICOMweb server {server.url} unreachable" in line
