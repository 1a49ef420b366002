"""ingest: DICOM series -> HU NIfTI, checked against SimpleITK's GDCM reader."""

from __future__ import annotations

import json
import random

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tumorburden.imaging.ingest import CT_IMAGE_STORAGE, ingest

ROWS, COLS, N = 12, 10, 7


def write_series(folder, *, pixel=(0.7, 0.9), step=2.5, n=N, names=None, signed=True,
                 slope=1.0, intercept=-1024.0, skip=None, uid=None, localizer=False,
                 description="abdomen", seed=0):
    """A small axial CT series; returns the HU array as (column, row, slice) from feet to head."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    uid = uid or generate_uid()
    hu = np.empty((COLS, ROWS, n), dtype=np.float64)
    for k in range(n):
        if skip is not None and k == skip:
            continue
        stored = rng.integers(0, 2000, size=(ROWS, COLS)) if not signed else rng.integers(-1000, 1500, size=(ROWS, COLS))
        hu[:, :, k] = (stored * slope + intercept).T
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        name = names[k] if names else f"slice{k:03d}.dcm"
        ds = FileDataset(str(folder / name), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientName = "Doe^Jane"
        ds.PatientID = "HOSP123"
        ds.PatientBirthDate = "19500101"
        ds.StudyInstanceUID = "1.2.3"
        ds.SeriesInstanceUID = uid
        ds.SeriesNumber = 2
        ds.SeriesDescription = description
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER" if localizer else "AXIAL"]
        ds.InstanceNumber = n - k  # deliberately the reverse of the spatial order
        ds.ImagePositionPatient = [-40.0, -30.0, 100.0 + k * step]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = list(pixel)
        ds.SliceThickness = step
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
        ds.save_as(folder / name, enforce_file_format=True)
    return hu


def sitk_volume(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    direction = np.array(img.GetDirection()).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.array(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    return arr, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


@pytest.mark.parametrize("shuffled", [False, True])
def test_matches_simpleitk(tmp_path, shuffled):
    names = [f"IM{i}" for i in random.Random(3).sample(range(100, 200), N)] if shuffled else None
    hu = write_series(tmp_path / "dcm", names=names)
    (tmp_path / "dcm" / "notes.txt").write_text("not dicom")
    out, qc = tmp_path / "image.nii.gz", tmp_path / "qc.json"
    ingest(tmp_path / "dcm", out, qc_path=qc)
    img = nib.load(out)
    ref, ref_affine = sitk_volume(tmp_path / "dcm")
    np.testing.assert_array_equal(np.asarray(img.dataobj), ref)
    np.testing.assert_array_equal(np.asarray(img.dataobj), hu)
    np.testing.assert_allclose(img.affine, ref_affine, atol=1e-5)
    assert img.get_data_dtype() == np.int16
    # non-square pixels: column step 0.9 mm along i, row step 0.7 mm along j, slices 2.5 mm
    np.testing.assert_allclose(nib.affines.voxel_sizes(img.affine), [0.9, 0.7, 2.5])
    report = json.loads(qc.read_text())
    assert report["n_slices"] == N and report["n_not_dicom"] == 1
    text = qc.read_text()
    for secret in ("Doe", "HOSP123", "19500101"):
        assert secret not in text


def test_unsigned_fractional_rescale_is_float(tmp_path):
    hu = write_series(tmp_path / "dcm", signed=False, slope=0.5, intercept=-1000.5)
    out = tmp_path / "image.nii.gz"
    ingest(tmp_path / "dcm", out)
    img = nib.load(out)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.get_fdata(), hu, atol=1e-3)


def test_picks_largest_series_and_skips_localizer(tmp_path):
    folder = tmp_path / "mixed"
    hu = write_series(folder / "a", n=6, description="main", seed=1)
    write_series(folder / "b", n=4, description="other", seed=2)
    write_series(folder / "c", n=9, description="scout", localizer=True, seed=3)
    out, qc = tmp_path / "image.nii.gz", tmp_path / "qc.json"
    ingest(folder, out, qc_path=qc)
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), hu)
    report = json.loads(qc.read_text())
    assert report["series_description"] == "main" and report["n_skipped"] == 9
    assert any("other" in w for w in report["warnings"])


def test_missing_slice_is_an_error(tmp_path):
    write_series(tmp_path / "dcm", skip=3)
    with pytest.raises(ValueError, match=r"missing slice.*105\.00->110\.00"):
        ingest(tmp_path / "dcm", tmp_path / "image.nii.gz")


def test_no_ct_series_is_an_error(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    (folder / "b").write_bytes(b"\0" * 300)
    with pytest.raises(ValueError, match=r"no CT image series found \(2 files read, 2 not DICOM"):
        ingest(folder, tmp_path / "image.nii.gz")


def test_nifti_input_is_copied_with_its_affine(tmp_path):
    affine = np.diag([-0.8, -0.8, 2.0, 1.0])
    affine[:3, 3] = [10, 20, -30]
    data = np.arange(60, dtype=np.int16).reshape(3, 4, 5) - 1000
    src = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), src)
    out = tmp_path / "image.nii.gz"
    ingest(src, out, qc_path=tmp_path / "qc.json")
    img = nib.load(out)
    np.testing.assert_array_equal(np.asarray(img.dataobj), data)
    np.testing.assert_allclose(img.affine, affine)


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        ingest(tmp_path / "nowhere", tmp_path / "image.nii.gz")
