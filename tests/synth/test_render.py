import datetime as dt

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from tumorburden import labels
from tumorburden.synth import phantom
from tumorburden.synth.render import grid_affine_ras, render_scan, render_tissue

TYPE2 = ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber", "Modality", "Manufacturer",
         "SeriesDescription", "ImageType", "BodyPartExamined", "StudyInstanceUID", "SeriesInstanceUID",
         "FrameOfReferenceUID", "PositionReferenceIndicator"]


@pytest.fixture(scope="module")
def rendered(tiny_run):
    out, trial = tiny_run
    scan = trial.scans.iloc[1]
    dicom_dir = out / "synthetic" / "dicom" / scan["patient_id"] / scan["scan_id"]
    truth_dir = out / "truth" / "scans" / scan["patient_id"] / scan["scan_id"]
    return trial, scan, dicom_dir, truth_dir


def _sitk_ras_affine(img):
    lps = np.eye(4)
    lps[:3, :3] = np.array(img.GetDirection()).reshape(3, 3) * np.array(img.GetSpacing())
    lps[:3, 3] = img.GetOrigin()
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def test_series_reads_back_with_simpleitk_and_pydicom(rendered):
    trial, scan, dicom_dir, truth_dir = rendered
    grid = trial.model["grid"]
    files = sorted(dicom_dir.glob("IM*.dcm"))
    assert len(files) == grid["n_slices"] == 56
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(dicom_dir))
    reader.SetFileNames(names)
    img = reader.Execute()
    hu_sitk = sitk.GetArrayFromImage(img).transpose(2, 1, 0)  # (k, j, i) -> (i, j, k)
    lab = nib.load(truth_dir / "labels.nii.gz")
    assert hu_sitk.shape == lab.shape == (48, 48, 56)
    np.testing.assert_allclose(_sitk_ras_affine(img), lab.affine, atol=1e-4)
    np.testing.assert_allclose(lab.affine, grid_affine_ras(grid))

    # pydicom: rescaled pixels of one slice equal SimpleITK's HU
    ds = pydicom.dcmread(files[10])
    hu_pd = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(hu_pd.T, hu_sitk[:, :, 10])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage
    assert ds.pixel_array.dtype == np.uint16 and float(ds.RescaleIntercept) == -1024

    # tissues have their HU (8 mm voxels: the 1.2 mm PSF barely mixes them)
    L = np.asarray(lab.dataobj)
    for label, hu in ((labels.SAT, -100), (labels.MUSCLE, 50), (labels.VAT, -100), (labels.LUNG, -850),
                      (labels.LIVER, 120)):
        if (L == label).sum() > 20:
            assert np.median(hu_sitk[L == label]) == pytest.approx(hu, abs=25), label
    assert np.median(hu_sitk[L == 0][:100]) < -900  # the corner is air


def test_header_is_pseudonymous_and_complete(rendered):
    trial, scan, dicom_dir, _ = rendered
    ds = pydicom.dcmread(sorted(dicom_dir.glob("IM*.dcm"))[0])
    for keyword in TYPE2:
        assert keyword in ds, keyword
    assert ds.PatientBirthDate == "" and ds.ReferringPhysicianName == "" and ds.AccessionNumber == ""
    assert str(ds.PatientName) == ds.PatientID == scan["patient_id"]
    assert ds.Modality == "CT" and ds.Manufacturer == "tumorburden-synth"
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == 8.0
    day0 = dt.date.fromisoformat(trial.patients.set_index("patient_id").loc[scan["patient_id"], "day0_date"])
    assert ds.StudyDate == (day0 + dt.timedelta(days=int(scan["days"]))).strftime("%Y%m%d")


def test_truth_maps_agree_with_each_other_and_the_design(rendered):
    trial, scan, _, truth_dir = rendered
    L = np.asarray(nib.load(truth_dir / "labels.nii.gz").dataobj)
    inst = np.asarray(nib.load(truth_dir / "lesions.nii.gz").dataobj)
    assert L.dtype == np.uint8 and inst.dtype == np.uint16
    np.testing.assert_array_equal(np.isin(L, labels.LESION_LABELS), inst > 0)
    ids = set(np.unique(inst)) - {0}
    assert ids <= set(trial.lesions.loc[trial.lesions["scan_id"] == scan["scan_id"], "track_id"])


def test_render_is_deterministic(tmp_path, rendered, tiny_settings):
    _, scan, dicom_dir, truth_dir = rendered
    render_scan(tiny_settings, scan["scan_id"], tmp_path / "d", tmp_path / "t")
    for name in ("IM000001.dcm", "IM000030.dcm"):
        assert (tmp_path / "d" / name).read_bytes() == (dicom_dir / name).read_bytes()
    np.testing.assert_array_equal(nib.load(tmp_path / "t" / "lesions.nii.gz").get_fdata(),
                                  nib.load(truth_dir / "lesions.nii.gz").get_fdata())


def test_unknown_scan_is_a_clear_error(tmp_path, tiny_settings):
    with pytest.raises(ValueError, match="SYN-999-S0"):
        render_scan(tiny_settings, "SYN-999-S0", tmp_path / "d", tmp_path / "t")


def test_rendered_lesion_volume_and_position_match_the_analytic_truth():
    grid = {"matrix": 64, "pixel_mm": 2.0, "slice_mm": 2.0, "n_slices": 40,
            "origin_lps_mm": [-63.0, -63.0, -100.0]}
    lesion = pd.DataFrame({
        "centroid_x_mm": [-10.0], "centroid_y_mm": [5.0], "centroid_z_mm": [-60.0],  # RAS
        "semi_x_mm": [12.0], "semi_y_mm": [9.0], "semi_z_mm": [10.0], "site": ["soft_tissue"], "track_id": [3],
    })
    body = phantom.Body(a=150.0, b=110.0, sat=20.0, muscle=10.0)
    tissue, inst = render_tissue(body, lesion, grid)
    mask = inst == 3
    volume_ml = mask.sum() * 8.0 / 1000.0
    assert volume_ml == pytest.approx(4 / 3 * np.pi * 12 * 9 * 10 / 1000, rel=0.04)
    ijk = np.argwhere(mask).mean(axis=0)
    ras = grid_affine_ras(grid) @ np.append(ijk, 1.0)
    np.testing.assert_allclose(ras[:3], [-10.0, 5.0, -60.0], atol=0.5)
    assert np.all(tissue[mask] == phantom.LESION_SOFT)
