"""ingest: DICOM series -> HU NIfTI, checked voxel for voxel against SimpleITK's GDCM reader."""

from __future__ import annotations

import json
import random

import nibabel as nib
import numpy as np
import pytest
from dicomgen import sitk_arrays, sitk_read, write_enhanced, write_series

from tumorburden.imaging.ingest import ingest
from tumorburden.imaging.volume import Volume

N = 7

def _oblique(about_z_deg=20.0, about_x_deg=15.0):
    """Axial planes rotated about the body axis and then tilted about the left-right axis."""
    a, b = np.radians(about_z_deg), np.radians(about_x_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    r = rx @ rz
    return tuple(float(v) for v in np.round(np.concatenate([r[:, 0], r[:, 1]]), 7))


OBLIQUE = _oblique()
FEET_FIRST = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # normal points to the feet


def _read(out):
    img = nib.load(out)
    return np.asarray(img.dataobj), img.affine, img.get_data_dtype()


CASES = {
    "plain": {},
    "unsigned": {"signed": False, "intercept": -1024.0},
    "fractional_rescale": {"signed": False, "slope": 0.5, "intercept": -1000.5},
    "signed_12_bits": {"bits_stored": 12, "intercept": 0.0},
    "oblique": {"iop": OBLIQUE},
    "feet_first": {"iop": FEET_FIRST},
    "non_square_thick": {"pixel": (0.6, 1.1), "step": 1.25, "thickness": 2.5},
    "implicit_vr": {"syntax": "implicit"},
    "no_preamble_acr_nema_like": {"syntax": "no_preamble"},
    "trailing_padding_after_pixels": {"overrides": {k: {"DataSetTrailingPadding": b"\0" * 8} for k in range(N)}},
    "rle": {"syntax": "rle"},
    "jpegls": {"syntax": "jpegls"},
    "j2k": {"syntax": "j2k", "rows": 32, "cols": 32},
    "jpeg_lossless_sv1": {"syntax": "jpeg_sv1"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_simpleitk(tmp_path, case):
    """Shuffled file names without extension, InstanceNumber reversed: order comes from positions."""
    names = [f"IM{i}" for i in random.Random(3).sample(range(100, 200), N)]
    hu = write_series(tmp_path / "dcm", names=names, **CASES[case])
    (tmp_path / "dcm" / "notes.txt").write_text("not dicom")
    out, qc = tmp_path / "image.nii.gz", tmp_path / "qc.json"
    ingest(tmp_path / "dcm", out, qc_path=qc)
    data, affine, dtype = _read(out)
    ref, ref_affine = sitk_read(tmp_path / "dcm")
    np.testing.assert_array_equal(data, ref)
    np.testing.assert_allclose(affine, ref_affine, atol=1e-5)
    np.testing.assert_allclose(data, hu, atol=1e-4)
    assert dtype == (np.float32 if case == "fractional_rescale" else np.int16)
    report = json.loads(qc.read_text())
    assert report["n_slices"] == N and report["n_not_dicom"] == 1 and report["status"] == "ok"


def test_non_square_pixels_and_thickness_in_affine(tmp_path):
    write_series(tmp_path / "dcm", pixel=(0.7, 0.9), step=1.25, thickness=2.5)
    out, qc = tmp_path / "image.nii.gz", tmp_path / "qc.json"
    ingest(tmp_path / "dcm", out, qc_path=qc)
    # i = column (0.9 mm), j = row (0.7 mm), k = the position step (not SliceThickness)
    np.testing.assert_allclose(nib.affines.voxel_sizes(nib.load(out).affine), [0.9, 0.7, 1.25], atol=1e-6)
    assert any("thickness_vs_step" in w for w in json.loads(qc.read_text())["warnings"])


def test_two_series_in_one_folder_each_matches_simpleitk(tmp_path):
    folder = tmp_path / "mixed"
    hu_thin = write_series(folder, n=9, step=1.0, uid="1.2.3.4.1", names=[f"a{k}" for k in range(9)],
                           series_number=3, seed=1)
    write_series(folder, n=5, step=3.0, uid="1.2.3.4.2", names=[f"b{k}" for k in range(5)], series_number=2, seed=2)
    out = tmp_path / "image.nii.gz"
    ingest(folder, out)
    data, affine, _ = _read(out)
    ref, ref_affine = sitk_read(folder, "1.2.3.4.1")
    np.testing.assert_array_equal(data, ref)
    np.testing.assert_array_equal(data, hu_thin)
    np.testing.assert_allclose(affine, ref_affine, atol=1e-5)
    ingest(folder, out, series_uid="1.2.3.4.2")  # forced: the other one
    np.testing.assert_array_equal(_read(out)[0], sitk_read(folder, "1.2.3.4.2")[0])


def test_enhanced_multiframe_ct(tmp_path):
    import SimpleITK as sitk

    hu = write_enhanced(tmp_path / "mf", iop=OBLIQUE)
    out = tmp_path / "image.nii.gz"
    ingest(tmp_path / "mf", out)
    data, affine, _ = _read(out)
    np.testing.assert_array_equal(data, hu)
    # GDCM keeps the file's frame order (here head to feet) and flips the direction instead:
    # the same voxels in the same places, so compare on one grid.
    ref, ref_affine = sitk_arrays(sitk.ReadImage(str(tmp_path / "mf" / "enhanced.dcm")))
    ours = Volume(data, affine)
    np.testing.assert_array_equal(Volume(ref, ref_affine).array_on_grid_of(ours, atol=1e-4), data)


def test_gantry_tilt_keeps_the_shear(tmp_path):
    write_series(tmp_path / "dcm", tilt_shift=(0.0, 0.5, 0.0), step=2.0)
    out, qc = tmp_path / "image.nii.gz", tmp_path / "qc.json"
    ingest(tmp_path / "dcm", out, qc_path=qc)
    affine = nib.load(out).affine
    # slice k starts at (x, y + 0.5 k, z + 2 k) in LPS: RAS y moves by -0.5 per slice
    np.testing.assert_allclose(affine[:3, 2], [0.0, -0.5, 2.0], atol=1e-5)
    warning = json.loads(qc.read_text())["warnings"]
    assert any(w.startswith("gantry_tilt: slices are sheared by 14.0 degrees") for w in warning)


def test_missing_slice_rejected_names_the_neighbours(tmp_path):
    write_series(tmp_path / "dcm", skip=(3,))
    with pytest.raises(ValueError, match=r"missing_slices: about 1 missing slice\(s\): gap\(s\) between "
                                         r"slice002\.dcm and slice004\.dcm \(105\.00->110\.00 mm\)"):
        ingest(tmp_path / "dcm", tmp_path / "image.nii.gz")


def test_missing_slice_resampled_under_resample_policy(tmp_path):
    hu = write_series(tmp_path / "dcm", skip=(3,), slope=1.0, intercept=-1024.0)
    out, qc = tmp_path / "image.nii.gz", tmp_path / "qc.json"
    ingest(tmp_path / "dcm", out, qc_path=qc, settings={"irregular_slices": "resample"})
    img = nib.load(out)
    data = img.get_fdata()
    assert data.shape == hu.shape and img.get_data_dtype() == np.float32
    np.testing.assert_allclose(data[:, :, [0, 1, 2, 4, 5, 6]], hu[:, :, [0, 1, 2, 4, 5, 6]], atol=1e-3)
    np.testing.assert_allclose(data[:, :, 3], (hu[:, :, 2] + hu[:, :, 4]) / 2, atol=1e-3)  # interpolated
    np.testing.assert_allclose(img.affine[2, 2], 2.5, atol=1e-5)
    report = json.loads(qc.read_text())
    assert report["resampled"] and any(w.startswith("missing_slices") for w in report["warnings"])


def test_uneven_spacing_rejected(tmp_path):
    write_series(tmp_path / "dcm", positions=[0, 2.5, 5.0, 7.0, 9.5, 12.0, 14.5])
    with pytest.raises(ValueError, match=r"uneven_spacing: slice steps vary 2\.\.2\.5 mm"):
        ingest(tmp_path / "dcm", tmp_path / "image.nii.gz")


def test_inconsistent_orientation_names_the_file(tmp_path):
    write_series(tmp_path / "dcm", overrides={4: {"ImageOrientationPatient": [1, 0, 0, 0, 0.98, 0.199]}})
    with pytest.raises(ValueError, match=r"inconsistent_orientation: ImageOrientationPatient differs between slices \(slice004\.dcm"):
        ingest(tmp_path / "dcm", tmp_path / "image.nii.gz")


def test_duplicate_positions_rejected(tmp_path):
    write_series(tmp_path / "dcm", positions=[0, 2.5, 5.0, 5.0, 7.5])
    with pytest.raises(ValueError, match=r"duplicate_positions: 1 pair\(s\) of slices at the same position \(slice002\.dcm, slice003\.dcm"):
        ingest(tmp_path / "dcm", tmp_path / "image.nii.gz")


def test_truncated_pixel_data_names_the_file(tmp_path):
    write_series(tmp_path / "dcm")
    path = tmp_path / "dcm" / "slice004.dcm"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ValueError, match=r"slice004\.dcm: (truncated pixel data|cannot decode pixel data)"):
        ingest(tmp_path / "dcm", tmp_path / "image.nii.gz")


def test_damaged_header_is_unreadable(tmp_path):
    write_series(tmp_path / "dcm")
    path = tmp_path / "dcm" / "slice002.dcm"
    data = path.read_bytes()
    path.write_bytes(data[:140] + b"\xff" * 40)
    with pytest.raises(ValueError, match=r"unreadable file slice002\.dcm: damaged DICOM header"):
        ingest(tmp_path / "dcm", tmp_path / "image.nii.gz")


def test_implausible_hu_rejected(tmp_path):
    write_series(tmp_path / "dcm", signed=False, intercept=0.0, air=False)  # rescale forgotten
    with pytest.raises(ValueError, match=r"implausible HU: no air in the image"):
        ingest(tmp_path / "dcm", tmp_path / "image.nii.gz")


def test_too_few_slices(tmp_path):
    write_series(tmp_path / "dcm", n=1)
    with pytest.raises(ValueError, match=r"no usable CT series: #2 'abdomen portal venous': 1 slice\(s\), need at least 2"):
        ingest(tmp_path / "dcm", tmp_path / "image.nii.gz")


def test_no_ct_series(tmp_path):
    write_series(tmp_path / "dcm", modality="MR")
    (tmp_path / "dcm" / "b").write_bytes(b"\0" * 300)
    with pytest.raises(ValueError, match=r"no CT series \(modalities: MR\) \(8 files, 1 not DICOM\)"):
        ingest(tmp_path / "dcm", tmp_path / "image.nii.gz")


def test_qc_report_has_no_identity(tmp_path):
    write_series(tmp_path / "dcm", uid="1.2.826.0.1.3680043.8.498.77")
    qc = tmp_path / "qc.json"
    ingest(tmp_path / "dcm", tmp_path / "image.nii.gz", qc_path=qc)
    text = qc.read_text()
    for secret in ("Doe", "HOSP123", "19500101", "20240105", "1.2.826.0.1.3680043.8.498"):
        assert secret not in text


def test_free_text_naming_the_patient_is_redacted_on_the_folder_route(tmp_path, caplog):
    """A scans.tsv folder has no redaction list from discovery: its own headers give the words."""
    n = 7
    who = {"AccessionNumber": "ACC777", "ReferringPhysicianName": "Quill^Zebedee", "InstitutionName": "Klinikum Zorro"}
    write_series(tmp_path / "dcm", n=n, patient_name="Fairweather^Jane", patient_id="HOSP987", birth_date="19471113",
                 description="abdomen Fairweather HOSP987 ACC777 Quill Klinikum Zorro 19471113",
                 overrides={k: who for k in range(n)})
    qc = tmp_path / "qc.json"
    with caplog.at_level("INFO"):
        ingest(tmp_path / "dcm", tmp_path / "image.nii.gz", qc_path=qc)
    text = qc.read_text() + caplog.text
    assert "abdomen [name] [patient id] [accession number] [name] [institution] [birth date]" in qc.read_text()
    for secret in ("Fairweather", "Jane", "HOSP987", "19471113", "ACC777", "Quill", "Zorro"):
        assert secret.lower() not in text.lower(), secret
    write_series(tmp_path / "bad", n=n, patient_name="Fairweather^Jane", description="Fairweather", intercept=5000.0)
    with pytest.raises(ValueError, match="implausible HU") as err:
        ingest(tmp_path / "bad", tmp_path / "bad.nii.gz")
    assert "fairweather" not in str(err.value).lower()


def test_nifti_ct_without_air_is_implausible(tmp_path):
    """A NIfTI CT passes the HU check a DICOM series passes (here: stored values, intercept forgotten)."""
    data = np.full((6, 6, 4), 1024 + 40, np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0])), tmp_path / "in.nii.gz")
    with pytest.raises(ValueError, match=r"in.nii.gz: implausible HU: no air in the image: 1st percentile 1064 HU"):
        ingest(tmp_path / "in.nii.gz", tmp_path / "image.nii.gz")
    assert not (tmp_path / "image.nii.gz").exists()


def test_nifti_ct_needs_min_slices(tmp_path):
    data = np.full((6, 6, 3), -1000, np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0])), tmp_path / "in.nii.gz")
    with pytest.raises(ValueError, match=r"in.nii.gz: shape \(6, 6, 3\): 3 slice\(s\), need at least 4 \(imaging.min_slices\)"):
        ingest(tmp_path / "in.nii.gz", tmp_path / "image.nii.gz", settings={"min_slices": 4})


def test_zero_pixel_spacing_is_rejected_not_written(tmp_path):
    n = 7
    write_series(tmp_path / "dcm", n=n, overrides={k: {"PixelSpacing": [0.0, 0.9]} for k in range(n)})
    with pytest.raises(ValueError, match=r"bad_pixel_spacing: PixelSpacing 0.0.9 mm is zero, negative or not a number"):
        ingest(tmp_path / "dcm", tmp_path / "image.nii.gz")
    assert not (tmp_path / "image.nii.gz").exists()


def test_a_single_slice_series_gets_no_guessed_step(tmp_path):
    write_series(tmp_path / "dcm", n=1)
    with pytest.raises(ValueError, match=r"1 slice\(s\); a volume needs at least 2"):
        ingest(tmp_path / "dcm", tmp_path / "image.nii.gz", settings={"min_slices": 1})


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


@pytest.mark.parametrize("damage", ["header", "pixels"])
def test_cli_damaged_file_is_one_line(tmp_path, capsys, damage):
    from tumorburden.cli import main

    write_series(tmp_path / "dcm")
    path = tmp_path / "dcm" / "slice003.dcm"
    data = path.read_bytes()
    path.write_bytes(data[:140] + b"\xff" * 40 if damage == "header" else data[:-50])
    assert main(["ingest", str(tmp_path / "dcm"), "--out", str(tmp_path / "x.nii.gz")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tumorburden ingest: error: ") and "slice003.dcm" in err


def test_a_patients_scans_are_ingested_in_one_job(tmp_path):
    """`tumorburden ingest --scan-id ...` as the rule calls it: a DICOM folder and a NIfTI file of one
    patient, each to its own image and QC file (voxels as SimpleITK reads the series, as the NIfTI
    holds), and the patient's record with each image's grid."""
    import pandas as pd

    from tumorburden.cli import main
    from tumorburden.imaging.volume import save_nifti

    write_series(tmp_path / "dcm", n=9, step=2.0)
    hu = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4) - 1000.0
    save_nifti(Volume(hu, np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / "fu.nii.gz", dtype=np.int16)
    outs = [tmp_path / s / "image.nii.gz" for s in ("S0", "S1")]
    qcs = [tmp_path / "qc" / f"{s}.json" for s in ("S0", "S1")]
    code = main(["ingest", "--patient-id=P1", f"--record={tmp_path / 'P1.tsv'}", "--scan-id", "S0", "S1",
                 "--out", *map(str, outs), "--qc", *map(str, qcs), "--", str(tmp_path / "dcm"),
                 str(tmp_path / "fu.nii.gz")])
    assert code == 0
    np.testing.assert_array_equal(_read(outs[0])[0], sitk_read(tmp_path / "dcm")[0])
    np.testing.assert_array_equal(_read(outs[1])[0], hu)
    assert [json.loads(q.read_text())["status"] for q in qcs] == ["ok", "ok"]
    record = pd.read_csv(tmp_path / "P1.tsv", sep="\t").set_index("scan_id")
    for scan_id, out in zip(("S0", "S1"), outs):
        image = nib.load(out)
        assert tuple(record.loc[scan_id, ["size_i", "size_j", "size_k"]]) == image.shape
        np.testing.assert_allclose(record.loc[scan_id, ["spacing_i_mm", "spacing_j_mm", "spacing_k_mm"]].astype(float),
                                   image.header.get_zooms())
    assert main(["ingest", "--patient-id=P1", f"--record={tmp_path / 'P2.tsv'}", "--scan-id", "S0", "S1",
                 "--out", *map(str, outs), "--qc", *map(str, qcs), "--", str(tmp_path / "dcm")]) == 1
    assert not (tmp_path / "P2.tsv").exists()
