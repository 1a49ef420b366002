"""Reviews found on a real DICOMweb server (Orthanc): a radiologist's SEG and RTSTRUCT uploaded beside the
scan's CT series and our own SEG; fetch_reviews downloads only the reviews, and the folder route
matches them to their scan."""

import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.sr.codedict import codes

from review_objects import LESION, pixel_outline, write_rtstruct, write_seg
from tumorburden.segment.review import ReviewError, fetch_reviews, index_reviews
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
    write_seg(ct, frames, {1: ("Lesion 1", *LESION)}, objects / "corrected.dcm", description="corrected")
    write_seg(ct, frames, {1: ("lesion", *LESION)}, objects / "ours.dcm", description="tumorburden segmentation")
    write_rtstruct(ct[0], {"GTV": [pixel_outline(ct[3], 4, 6, 4, 6)]}, objects / "rs.dcm",
                   description="Radiologist review", refer_to_series=False)
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
    # two reviews of one scan: the folder route asks which one counts
    with pytest.raises(ReviewError, match="two reviews of scan S1"):
        index_reviews(folder, {"S1": str(tmp_path / "ct")}, series_description="*review*")
