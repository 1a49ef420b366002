"""A radiologist's review read back: a DICOM-SEG written by highdicom and an RT Structure Set written
with pydicom from known polygons, placed on the scan's grid, and matched to their scan by header."""

import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from tumorburden import labels as L
from tumorburden.imaging.ingest import ingest
from tumorburden.segment.review import ReviewError, apply_review, index_reviews, read_review
from tumorburden.segment.run import read_mask
from tumorburden.synth.dicom import SeriesInfo, hu_to_stored, write_ct_series
from review_objects import write_rtstruct, write_seg

SHAPE = (48, 40, 24)  # columns (LPS x), rows (LPS y), slices
PIXEL, SLICE = 5.0, 4.0
ORIGIN_LPS = (-110.0, -90.0, -40.0)
IMAGING = {"thickness_mm": [0.5, 8.0]}
# an off-centre bright block: where a flipped axis would put it, there is nothing
BLOCK = (slice(10, 20), slice(12, 22), slice(5, 10))
HOT_HU = 200.0


def _series(folder, name, hu):
    info = SeriesInfo(patient_id=name, patient_sex="F", study_date="20200101", study_time="090000", study_id="1",
                      series_description="CT", body_part="CHEST", uid_entropy=[name])
    write_ct_series(hu_to_stored(hu), ORIGIN_LPS, PIXEL, SLICE, info, folder)
    return sorted((pydicom.dcmread(p) for p in folder.glob("*.dcm")), key=lambda d: float(d.ImagePositionPatient[2]))


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A CT series with the block in it, and the image ingest reads from it (the scan's grid)."""
    root = tmp_path_factory.mktemp("review")
    hu = np.full(SHAPE, -1000.0, np.float32)
    hu[4:44, 4:36, :] = 40.0
    hu[BLOCK] = HOT_HU
    datasets = _series(root / "dicom", "P1", hu)
    image = ingest(root / "dicom", root / "image.nii.gz", settings=IMAGING)
    return root, datasets, image


def _voxel_lps(i, j, k):
    return ORIGIN_LPS[0] + i * PIXEL, ORIGIN_LPS[1] + j * PIXEL, ORIGIN_LPS[2] + k * SLICE


def _write_seg(datasets, labelmap, segments, path, description="corrected", **dates):
    """labelmap: (column, row, slice) array of segment numbers."""
    return write_seg(datasets, np.transpose(labelmap, (2, 1, 0)), segments, path, description, **dates)


def _rtstruct(datasets, rois, path, description="review", reference=True, **dates):
    """rois: name -> list of (k, [(x, y) in LPS mm]) closed planar contours on slice k."""
    contours = {name: [np.array([(x, y, ORIGIN_LPS[2] + k * SLICE) for x, y in points]) for k, points in items]
                for name, items in rois.items()}
    return write_rtstruct(datasets[0], contours, path, description, refer_to_series=reference, **dates)


def _square(i0, i1, j0, j1):
    """The outline of voxels i0..i1, j0..j1 (inclusive), along the voxel edges, in LPS mm."""
    x0, y0, _ = _voxel_lps(i0 - 0.5, j0 - 0.5, 0)
    x1, y1, _ = _voxel_lps(i1 + 0.5, j1 + 0.5, 0)
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _three_segments() -> np.ndarray:
    """Segment 1 on the CT's bright block, 2 a small box (4 x 3 x 2 voxels), 3 a slab along one side."""
    labelmap = np.zeros(SHAPE, np.uint8)
    labelmap[BLOCK] = 1
    labelmap[30:34, 25:28, 12:14] = 2
    labelmap[36:44, 4:12, 0:24] = 3
    return labelmap


def test_seg_from_another_tool_lands_on_the_ct_block(scan, tmp_path):
    """A highdicom SEG drawn on the CT's own pixels: its lesion is exactly where the CT is bright,
    its node segment stays a node, and the liver segment is left out (a review replaces lesions)."""
    _, datasets, image = scan
    path = _write_seg(datasets, _three_segments(), {
        1: ("Lesion 1", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm),
        2: ("lymph node lesion 2", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.LymphNode),
        3: ("Liver", codes.SCT.Organ, codes.SCT.Liver),
    }, tmp_path / "seg.dcm")
    review = read_review(path, image)
    assert review.shape == image.shape
    bright = image.array >= HOT_HU - 1
    np.testing.assert_array_equal(review == L.LESION, bright)
    assert np.count_nonzero(review == L.NODE_LESION) == 4 * 3 * 2
    assert np.count_nonzero(review) * image.voxel_ml == pytest.approx((10 * 10 * 5 + 4 * 3 * 2) * PIXEL ** 2 * SLICE / 1000)


def test_seg_organ_segments_are_neither_lesions_nor_errors(scan, tmp_path):
    """Organs an organ model gives (labels.py's organ map: spleen, kidney, ...) are known names: a review
    or a `mask` SEG that carries them keeps only its lesions, whether the organ is named or only coded."""
    _, datasets, image = scan
    path = _write_seg(datasets, _three_segments(), {
        1: ("Lesion 1", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm),
        2: ("Spleen", codes.SCT.Organ, codes.SCT.Spleen),
        3: ("Segment_3", codes.SCT.Organ, codes.SCT.Kidney),
    }, tmp_path / "seg.dcm")
    bright = image.array >= HOT_HU - 1
    np.testing.assert_array_equal(read_review(path, image), np.where(bright, L.LESION, 0))
    np.testing.assert_array_equal(read_mask(path, image), bright)  # the `mask` column's route


def test_seg_segment_that_maps_to_no_label_is_named(scan, tmp_path):
    _, datasets, image = scan
    labelmap = np.zeros(SHAPE, np.uint8)
    labelmap[BLOCK] = 1
    path = _write_seg(datasets, labelmap, {1: ("Segment_1", codes.SCT.Tissue, codes.SCT.Tissue)}, tmp_path / "seg.dcm")
    with pytest.raises(ReviewError, match=r"seg\.dcm: segment 'Segment_1' maps to none of our labels"):
        read_review(path, image)


def test_rtstruct_square_on_voxel_edges_is_the_ct_block(scan, tmp_path):
    """Contours in patient coordinates around the bright block: filled on the scan's grid they are the block."""
    _, datasets, image = scan
    square = _square(BLOCK[0].start, BLOCK[0].stop - 1, BLOCK[1].start, BLOCK[1].stop - 1)
    path = _rtstruct(datasets, {"GTV-1": [(k, square) for k in range(BLOCK[2].start, BLOCK[2].stop)]}, tmp_path / "rs.dcm")
    review = read_review(path, image)
    np.testing.assert_array_equal(review == L.LESION, image.array >= HOT_HU - 1)
    np.testing.assert_array_equal(read_mask(path, image), image.array >= HOT_HU - 1)  # the `mask` column's route


def test_rtstruct_circle_volume_and_hole(scan, tmp_path):
    """A 64-gon of radius 40 mm on 4 slices is within 3 % of pi r^2 h; a contour inside another is a hole."""
    _, datasets, image = scan
    r = 40.0
    cx, cy, _ = _voxel_lps(24, 20, 0)
    circle = [(cx + r * np.cos(t), cy + r * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 64, endpoint=False)]
    ring = [(0, _square(2, 11, 2, 11)), (0, _square(5, 8, 5, 8))]
    path = _rtstruct(datasets, {"tumour": [(k, circle) for k in range(14, 18)], "lesion 2": ring}, tmp_path / "rs.dcm")
    review = read_review(path, image)
    circle_ml = np.count_nonzero(review[:, :, 14:18]) * image.voxel_ml
    assert circle_ml == pytest.approx(np.pi * r ** 2 * 4 * SLICE / 1000, rel=0.03)
    assert np.count_nonzero(review[:, :, 0]) == 10 * 10 - 4 * 4


def test_rtstruct_unknown_roi_and_off_slice_contour_are_named(scan, tmp_path):
    _, datasets, image = scan
    square = _square(10, 12, 10, 12)
    path = _rtstruct(datasets, {"lesion": [(6, square)], "BODY": [(6, square)]}, tmp_path / "rs.dcm")
    with pytest.raises(ReviewError, match=r"rs\.dcm: ROI 'BODY' maps to none of our labels"):
        read_review(path, image)
    path = _rtstruct(datasets, {"lesion": [(6.5, square)]}, tmp_path / "half.dcm")
    with pytest.raises(ReviewError, match=r"half\.dcm: ROI 'lesion' has a contour that does not lie on one axial slice"):
        read_review(path, image)


def test_apply_review_replaces_the_models_lesions_only():
    ai = np.zeros((6, 6, 3), np.uint8)
    ai[0:2] = L.MUSCLE
    ai[3, 3, 1] = L.LESION
    ai[4, 4, 1] = L.NODE_LESION
    review = np.zeros_like(ai)
    review[4, 4, 1] = L.LESION  # where the model saw a node: stays a node
    review[5, 5, 2] = L.NODE_LESION
    out = apply_review(ai, review)
    assert out[3, 3, 1] == L.BACKGROUND and out[4, 4, 1] == L.NODE_LESION and out[5, 5, 2] == L.NODE_LESION
    assert np.count_nonzero(out == L.MUSCLE) == np.count_nonzero(ai == L.MUSCLE)


def test_reviews_are_matched_to_their_scan_by_header(scan, tmp_path):
    root, datasets, _ = scan
    other = _series(tmp_path / "other", "P2", np.full((8, 8, 4), 40.0, np.float32))
    folder = tmp_path / "reviews"
    folder.mkdir()
    labelmap = np.zeros(SHAPE, np.uint8)
    labelmap[BLOCK] = 1
    _write_seg(datasets, labelmap, {1: ("lesion", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm)},
               folder / "a.dcm")
    (folder / "notes.txt").write_text("not DICOM")
    scans = {"S1": str(root / "dicom"), "S2": str(tmp_path / "other"), "S3": str(root / "image.nii.gz")}
    assert index_reviews(folder, scans) == {"S1": folder / "a.dcm"}
    # an RTSTRUCT without a series reference, in S2's study: found by its description only
    _rtstruct(other, {"lesion": [(1, _square(2, 3, 2, 3))]}, folder / "b.dcm", description="RADIOLOGIST REVIEW",
              reference=False)
    with pytest.raises(ReviewError, match=r"b\.dcm: this RTSTRUCT belongs to no scan of the study"):
        index_reviews(folder, scans)
    assert index_reviews(folder, scans, series_description="*review*") == {"S1": folder / "a.dcm", "S2": folder / "b.dcm"}
    # a second review of S1 without any date: nothing tells which of the two is newer
    _rtstruct(datasets, {"lesion": [(6, _square(2, 3, 2, 3))]}, folder / "c.dcm")
    with pytest.raises(ReviewError, match=r"a\.dcm and .*c\.dcm: 2 reviews of scan S1 and nothing tells which is newer"):
        index_reviews(folder, scans, series_description="*review*")


def test_our_own_seg_as_review_gives_its_lesions_back(scan, tmp_path):
    """A review that is our DICOM-SEG left as it was (the radiologist confirmed everything): its lesion and
    node segments are the label map's, its tissue segments are left out."""
    from tumorburden.imaging.volume import Volume, save_nifti
    from tumorburden.segment.dicomseg import write_dicom_seg

    root, _, image = scan
    labels = np.zeros(image.shape, np.uint8)
    labels[image.array > -500] = L.VAT
    labels[BLOCK] = L.LESION
    labels[30:33, 25:28, 12:14] = L.NODE_LESION
    save_nifti(Volume(labels, image.affine), tmp_path / "seg.nii.gz", dtype=np.uint8)
    ours = write_dicom_seg(tmp_path / "seg.nii.gz", root / "dicom", tmp_path / "ours.dcm", patient_id="P1",
                           namespace="t", pacs_out=tmp_path / "pacs.dcm", settings=IMAGING)
    for path in (ours, tmp_path / "pacs.dcm"):
        review = read_review(path, image)
        np.testing.assert_array_equal(review, np.where(np.isin(labels, L.LESION_LABELS), labels, 0))


LESION_SEGMENT = {1: ("lesion", codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm)}


def test_of_two_reviews_of_a_scan_the_newest_counts(scan, tmp_path, caplog):
    """A radiologist who corrects twice: the newer object is taken, by content date/time (a structure
    set's Structure Set Date/Time), then series date/time, then instance creation; the other is passed
    over with the reason; a key only decides when every review has it; a tie stops the run."""
    from tumorburden.segment.review import choose_reviews

    root, datasets, _ = scan
    scans = {"S1": str(root / "dicom")}
    labelmap = np.zeros(SHAPE, np.uint8)
    labelmap[BLOCK] = 1
    folder = tmp_path / "reviews"
    folder.mkdir()
    # the morning's SEG and the afternoon's correction (written first, so file order says nothing)
    _write_seg(datasets, labelmap, LESION_SEGMENT, folder / "b-afternoon.dcm", content_date="20240301",
               content_time="153000")
    _write_seg(datasets, labelmap, LESION_SEGMENT, folder / "a-morning.dcm", content_date="20240301",
               content_time="093000")
    caplog.set_level("INFO")
    choice = choose_reviews(folder, scans)
    assert choice.paths() == {"S1": folder / "b-afternoon.dcm"}
    ((older, why),) = choice.passed_over["S1"]
    assert older.path == folder / "a-morning.dcm" and why == "older than the SEG taken (content date/time 6.0 h earlier)"
    (listed,) = choice.passed_over_table()["S1"]
    sop = pydicom.dcmread(folder / "a-morning.dcm").SOPInstanceUID
    assert listed.startswith("seg-") and listed.endswith(why) and sop not in listed and "morning" not in listed
    taken = choice.taken["S1"].name
    assert f"scan S1: 2 reviews; {taken} taken, passed over: seg-" in caplog.text
    assert "morning" not in caplog.text and "afternoon" not in caplog.text  # names, not the files' paths
    (notice,) = choice.notices()
    assert notice.startswith(f"tumorburden review: scan S1: the newest of 2 reviews is taken, {taken}; passed over: seg-")

    # a structure set drawn the next day: its Structure Set Date/Time is its content date/time
    _rtstruct(datasets, {"lesion": [(6, _square(2, 3, 2, 3))]}, folder / "c-next-day.dcm",
              StructureSetDate="20240302", StructureSetTime="080000")
    choice = choose_reviews(folder, scans)
    assert choice.paths() == {"S1": folder / "c-next-day.dcm"}
    assert sorted((o.path.name, why) for o, why in choice.passed_over["S1"]) == [
        ("a-morning.dcm", "older than the RTSTRUCT taken (content date/time 22.5 h earlier)"),
        ("b-afternoon.dcm", "older than the RTSTRUCT taken (content date/time 16.5 h earlier)")]

    # the same content date/time: the series date/time decides
    for f in folder.iterdir():
        f.unlink()
    _write_seg(datasets, labelmap, LESION_SEGMENT, folder / "x.dcm", content_date="20240305", content_time="090000",
               series_date="20240301", series_time="100000")
    _write_seg(datasets, labelmap, LESION_SEGMENT, folder / "y.dcm", content_date="20240305", content_time="090000",
               series_date="20240303", series_time="100000")
    choice = choose_reviews(folder, scans)
    assert choice.paths() == {"S1": folder / "y.dcm"}
    assert choice.passed_over["S1"][0][1] == "older than the SEG taken (series date/time 2.0 days earlier)"

    # a key one of them lacks is passed: an RTSTRUCT with no Structure Set Date, created last
    _rtstruct(datasets, {"lesion": [(6, _square(2, 3, 2, 3))]}, folder / "z.dcm", SeriesDate="20240301",
              SeriesTime="090000", InstanceCreationDate="20250101", InstanceCreationTime="000000")
    choice = choose_reviews(folder, scans)
    assert choice.paths() == {"S1": folder / "y.dcm"}  # series date/time: y 3 March, x 1 March 10:00, z 09:00
    reasons = {o.path.name: why for o, why in choice.passed_over["S1"]}
    assert reasons == {"x.dcm": "older than the SEG taken (series date/time 2.0 days earlier)",
                       "z.dcm": "older than the SEG taken (series date/time 2.0 days earlier)"}

    # the same dates throughout: a tie, which stops the run naming the scan and both objects
    for f in folder.iterdir():
        f.unlink()
    for name in ("p.dcm", "q.dcm"):
        _rtstruct(datasets, {"lesion": [(6, _square(2, 3, 2, 3))]}, folder / name, StructureSetDate="20240301",
                  StructureSetTime="090000", SeriesDate="20240301", SeriesTime="090000",
                  InstanceCreationDate="20240301", InstanceCreationTime="090000")
    with pytest.raises(ReviewError) as err:
        choose_reviews(folder, scans)
    msg = str(err.value)
    assert "\n" not in msg and "scan S1" in msg and "p.dcm" in msg and "q.dcm" in msg and "nothing tells which is newer" in msg
