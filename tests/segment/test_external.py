"""External segmentations (NIfTI on other grids, DICOM-SEG, TotalSegmentator) and DICOM-SEG out."""

import nibabel as nib
import numpy as np
import pydicom
import pytest

from tumorburden import labels as L
from tumorburden.imaging.volume import Volume, save_nifti
from tumorburden.segment import dicomseg
from tumorburden.segment.engine import labels_to_grid
from tumorburden.segment.run import read_mask, read_totalsegmentator, segment
from tumorburden.synth.dicom import SeriesInfo, hu_to_stored, write_ct_series

SHAPE = (40, 40, 24)
PIXEL, SLICE = 5.0, 6.0
ORIGIN_LPS = (-97.5, -97.5, -60.0)
IMAGING = {"thickness_mm": [0.5, 8.0]}  # the series' 6 mm slices are thicker than ingest's default range


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A small CT series (DICOM, LPS voxel order) and the same image as NIfTI (RAS affine)."""
    folder = tmp_path_factory.mktemp("series")
    hu = np.full(SHAPE, -1000.0, np.float32)
    hu[5:35, 8:32, 2:22] = 40.0
    info = SeriesInfo(patient_id="P1", patient_sex="F", study_date="20200101", study_time="090000", study_id="1",
                      series_description="test", body_part="CHEST", uid_entropy=["test"])
    write_ct_series(hu_to_stored(hu), ORIGIN_LPS, PIXEL, SLICE, info, folder / "dicom")
    affine = np.array([[-PIXEL, 0, 0, -ORIGIN_LPS[0]], [0, -PIXEL, 0, -ORIGIN_LPS[1]],
                       [0, 0, SLICE, ORIGIN_LPS[2]], [0, 0, 0, 1.0]])
    image = Volume(hu, affine)
    save_nifti(image, folder / "image.nii.gz", dtype=np.int16)
    labels = np.zeros(SHAPE, np.uint8)
    labels[5:35, 8:32, 2:22] = L.VAT
    labels[10:16, 12:20, 5:9] = L.LESION
    labels[25:28, 20:23, 14:16] = L.NODE_LESION
    labels[5:35, 8:10, 2:22] = L.MUSCLE
    save_nifti(Volume(labels, affine), folder / "seg.nii.gz", dtype=np.uint8)
    return folder, image, labels


def test_dicom_seg_references_the_series_and_reads_back(series, tmp_path):
    """The identified copy (for the hospital's PACS) references the source instances by their UIDs;
    the de-identified one references the same number of instances under UIDs of its own, consistently."""
    folder, image, labels = series
    out = dicomseg.write_dicom_seg(folder / "seg.nii.gz", folder / "dicom", tmp_path / "seg.dcm", patient_id="S-01",
                                   namespace="study/S-01/scan", pacs_out=tmp_path / "pacs.dcm", model_version="1.0", settings=IMAGING)
    sources = [pydicom.dcmread(p, stop_before_pixels=True) for p in (folder / "dicom").glob("*.dcm")]
    pacs = pydicom.dcmread(tmp_path / "pacs.dcm")
    assert pacs.Modality == "SEG" and pacs.PatientID == "P1"
    referenced = {item.ReferencedSOPInstanceUID for s in pacs.ReferencedSeriesSequence for item in s.ReferencedInstanceSequence}
    assert referenced == {s.SOPInstanceUID for s in sources}
    assert pacs.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    ds = pydicom.dcmread(out)
    assert ds.Modality == "SEG" and ds.PatientID == "S-01" and ds.PatientIdentityRemoved == "YES"
    own = {item.ReferencedSOPInstanceUID for s in ds.ReferencedSeriesSequence for item in s.ReferencedInstanceSequence}
    assert len(own) == len(sources) and not own & referenced
    per_frame = {src.ReferencedSOPInstanceUID for f in ds.PerFrameFunctionalGroupsSequence
                 for d in f.DerivationImageSequence for src in d.SourceImageSequence}
    assert per_frame <= own
    hospital = {s.StudyInstanceUID for s in sources} | {s.SeriesInstanceUID for s in sources} | referenced
    assert {ds.StudyInstanceUID, ds.FrameOfReferenceUID, ds.SOPInstanceUID} & hospital == set()
    for copy in (out, tmp_path / "pacs.dcm"):
        array, affine = dicomseg.read_dicom_seg_labels(copy)
        back = labels_to_grid(array.astype(np.uint8), affine, image.shape, image.affine)
        np.testing.assert_array_equal(back, labels)


def test_de_identified_dicom_seg_is_the_same_on_every_run(series, tmp_path):
    folder, _, _ = series
    uids = []
    for run in ("a", "b"):
        out = dicomseg.write_dicom_seg(folder / "seg.nii.gz", folder / "dicom", tmp_path / f"{run}.dcm",
                                       patient_id="S-01", namespace="study/S-01/scan", settings=IMAGING)
        ds = pydicom.dcmread(out)
        uids.append((ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.FrameOfReferenceUID))
    assert uids[0] == uids[1]


def test_both_copies_are_byte_identical_on_a_rerun(series, tmp_path):
    """Derived UIDs and the study's date in place of now: the PACS copy pushed again replaces itself."""
    folder, _, _ = series
    for run in ("a", "b"):
        dicomseg.write_dicom_seg(folder / "seg.nii.gz", folder / "dicom", tmp_path / f"{run}.dcm", patient_id="S-01",
                                 namespace="study/S-01/scan", pacs_out=tmp_path / f"{run}_pacs.dcm", settings=IMAGING)
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()
    assert (tmp_path / "a_pacs.dcm").read_bytes() == (tmp_path / "b_pacs.dcm").read_bytes()
    other = dicomseg.write_dicom_seg(folder / "seg.nii.gz", folder / "dicom", tmp_path / "c.dcm", patient_id="S-01",
                                     namespace="study/S-01/other-scan", pacs_out=tmp_path / "c_pacs.dcm", settings=IMAGING)
    assert pydicom.dcmread(tmp_path / "c_pacs.dcm").SOPInstanceUID != pydicom.dcmread(tmp_path / "a_pacs.dcm").SOPInstanceUID
    assert pydicom.dcmread(other).SOPInstanceUID != pydicom.dcmread(tmp_path / "a.dcm").SOPInstanceUID


def test_dicom_seg_as_external_mask_gives_the_lesions(series, tmp_path):
    folder, image, labels = series
    out = dicomseg.write_dicom_seg(folder / "seg.nii.gz", folder / "dicom", tmp_path / "seg.dcm", patient_id="S-01",
                                   settings=IMAGING)
    mask = read_mask(out, image)
    np.testing.assert_array_equal(mask, np.isin(labels, L.LESION_LABELS))


def test_nifti_mask_on_a_finer_flipped_grid_is_resampled(series, tmp_path):
    folder, image, labels = series
    lesion = np.isin(labels, L.LESION_LABELS).astype(np.uint8)
    # a mask at half the voxel size in-plane, stored in RAS order (the image is LPS ordered)
    fine_affine = image.affine.copy()
    fine_affine[:3, :2] /= 2
    fine_affine[:3, 3] -= (image.affine[:3, 0] + image.affine[:3, 1]) / 4  # voxel centres of the finer grid
    fine = np.repeat(np.repeat(lesion, 2, axis=0), 2, axis=1)
    ras = nib.as_closest_canonical(nib.Nifti1Image(fine, fine_affine))
    nib.save(ras, tmp_path / "mask.nii.gz")
    mask = read_mask(tmp_path / "mask.nii.gz", image)
    np.testing.assert_array_equal(mask, lesion.astype(bool))


def test_mask_with_lesions_beyond_the_scan_is_rejected(series, tmp_path):
    folder, image, labels = series
    shifted = image.affine.copy()
    shifted[2, 3] += 100.0  # the same grid 10 cm higher: lesions above the scan's last slice
    data = np.zeros(SHAPE, np.uint8)
    data[10:16, 12:20, 18:24] = 1
    nib.save(nib.Nifti1Image(data, shifted), tmp_path / "mask.nii.gz")
    with pytest.raises(ValueError, match=r"mask.nii.gz: lesion mask grid .* labelled voxels extend outside the scan"):
        read_mask(tmp_path / "mask.nii.gz", image)


def test_unreadable_mask_is_named(series, tmp_path):
    folder, image, _ = series
    (tmp_path / "mask.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"mask.txt: cannot read the lesion mask as NIfTI or DICOM-SEG"):
        read_mask(tmp_path / "mask.txt", image)


def _totalsegmentator(folder, image, labels, skip=None):
    folder.mkdir()
    for name, label in (("skeletal_muscle", L.MUSCLE), ("subcutaneous_fat", L.SAT), ("torso_fat", L.VAT)):
        if name != skip:
            nib.save(nib.Nifti1Image((labels == label).astype(np.uint8), image.affine), folder / f"{name}.nii.gz")
    return folder


def test_totalsegmentator_tissues_replace_body_composition(series, tmp_path):
    folder, image, labels = series
    ts = _totalsegmentator(tmp_path / "ts", image, labels)
    tissues = read_totalsegmentator(ts, image)
    np.testing.assert_array_equal(tissues == L.MUSCLE, labels == L.MUSCLE)
    np.testing.assert_array_equal(tissues == L.VAT, labels == L.VAT)
    # through segment(): the classical engine's muscle/fat give way, lesions stay
    seg = segment(folder / "image.nii.gz", tmp_path / "out.nii.gz", bodycomp_path=ts, settings={"engine": "classical"})
    assert ((seg == L.MUSCLE) == (labels == L.MUSCLE)).all()


def test_totalsegmentator_folder_missing_a_file_is_named(series, tmp_path):
    folder, image, labels = series
    ts = _totalsegmentator(tmp_path / "ts", image, labels, skip="torso_fat")
    with pytest.raises(FileNotFoundError, match=r"ts: torso_fat.nii.gz missing; run TotalSegmentator"):
        read_totalsegmentator(ts, image)


def test_segment_refuses_a_one_slice_image_and_a_nan_mask_naming_them(series, tmp_path, capsys):
    """The segment stage's door: a single slice (which crashed the QC overlay) and a mask with NaN
    voxels (NaN != 0 would have counted as lesion) stop with one line naming the file."""
    from tumorburden.cli import main

    folder, image, _ = series
    save_nifti(Volume(image.array[:, :, :1], image.affine), tmp_path / "one.nii.gz", dtype=np.int16)
    code = main(["segment", "--image", str(tmp_path / "one.nii.gz"), "--out", str(tmp_path / "seg.nii.gz"),
                 "--overlay", str(tmp_path / "o.png"), "--settings", '{"engine": "classical"}'])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err
    assert err.startswith(f"tumorburden segment: error: {tmp_path / 'one.nii.gz'}: the CT image has shape (40, 40, 1)")
    assert not (tmp_path / "o.png").exists()
    mask = np.zeros(image.shape, np.float32)
    mask[0, 0, 0] = np.nan
    save_nifti(Volume(mask, image.affine), tmp_path / "nan.nii.gz")
    with pytest.raises(ValueError, match=r"nan.nii.gz: the lesion mask has 1 NaN or infinite voxel\(s\)"):
        read_mask(tmp_path / "nan.nii.gz", image)
