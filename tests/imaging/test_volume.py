import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tumorburden.imaging.volume import ImageError, Volume, axial_axis, load_nifti, save_nifti


def test_axial_axis_is_the_array_axis_along_the_patient_s_i_direction():
    assert axial_axis(np.diag([-0.8, -0.8, 2.5, 1.0])) == 2       # axial slices stacked on axis 2
    sagittal_first = np.array([[0, 0, -0.7, 0], [0, 0.7, 0, 0], [3.0, 0, 0, 0], [0, 0, 0, 1]], float)
    assert axial_axis(sagittal_first) == 0                        # array axis 0 runs head-foot
    # a gantry tilt of 20 degrees about x: axis 2 still runs mostly head-foot (cos 20 = 0.94)
    t = np.deg2rad(20)
    tilt = np.array([[1, 0, 0, 0], [0, np.cos(t), -np.sin(t), 0], [0, np.sin(t), np.cos(t), 0], [0, 0, 0, 1]])
    tilted = tilt @ np.diag([0.8, 0.8, 4.0, 1.0])
    assert axial_axis(tilted) == 2


def test_geometry_from_affine():
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    vol = Volume(np.zeros((4, 5, 6), np.int16), affine)
    assert vol.spacing == pytest.approx((0.8, 0.8, 2.5))
    assert vol.voxel_ml == pytest.approx(0.8 * 0.8 * 2.5 / 1000)
    np.testing.assert_allclose(vol.index_to_mm([[1, 2, 3]]), [[-0.8, -1.6, 7.5]])


def test_round_trip_keeps_affine_and_sets_both_forms(tmp_path):
    affine = np.array([[-1.5, 0, 0, 10], [0, -1.5, 0, 20], [0, 0, 3, -30], [0, 0, 0, 1.0]])
    vol = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), affine)
    save_nifti(vol, tmp_path / "v.nii.gz")
    img = nib.load(tmp_path / "v.nii.gz")
    np.testing.assert_allclose(img.get_qform(), affine)
    np.testing.assert_allclose(img.get_sform(), affine)
    back = load_nifti(tmp_path / "v.nii.gz")
    assert back.same_grid(vol) and np.array_equal(back.array, vol.array)


def test_rejects_non_3d():
    with pytest.raises(ValueError, match="3-D"):
        Volume(np.zeros((2, 2)), np.eye(4))


def test_array_on_grid_of_reorders_axes_or_gives_none():
    lps = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([-2.0, -3.0, 4.0, 1.0]))
    ras = Volume(lps.array[::-1, ::-1, :].copy(), lps.affine @ np.array(
        [[-1, 0, 0, 1], [0, -1, 0, 2], [0, 0, 1, 0], [0, 0, 0, 1.0]]))
    assert ras.affine[0, 0] == 2.0 and not ras.same_grid(lps)
    np.testing.assert_array_equal(ras.array_on_grid_of(lps), lps.array)
    shifted_affine = lps.affine.copy()
    shifted_affine[0, 3] = 5.0  # half a voxel would need resampling, not reordering
    assert Volume(lps.array, shifted_affine).array_on_grid_of(lps) is None


# --- the door: a NIfTI whose geometry or voxels cannot be trusted is refused, naming the file ----


def _write_raw(path, data, **fields):
    """A NIfTI-1 file with header fields set as given and stored as they are (no nibabel fix-up)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype)
    hdr["vox_offset"] = 352
    hdr["pixdim"][1:4] = 1.0
    for key, value in fields.items():
        if key == "pixdim":
            hdr["pixdim"][1:1 + len(value)] = value
        else:
            hdr[key] = value
    with open(path, "wb") as fh:
        fh.write(hdr.binaryblock)
        fh.write(b"\0" * (352 - len(hdr.binaryblock)))
        fh.write(np.asfortranarray(data).tobytes(order="F"))
    return path


def _ct(shape=(4, 5, 6)):
    data = np.full(shape, 40, np.int16)
    data[0, 0, 0] = -1000
    return data


def test_zero_pixdim_is_not_read_as_1_mm(tmp_path):
    """nibabel reads a zero pixdim as 1 mm; without a form code that would be the voxel size."""
    path = _write_raw(tmp_path / "zero.nii", _ct(), pixdim=[0.8, 0.0, 2.5])
    assert nib.load(path).header.get_zooms()[1] == 1.0  # the default the pipeline must not take
    with pytest.raises(ImageError, match=r"zero.nii: image pixdim \(voxel size\) 0.8x0x2.5 mm has a zero"):
        load_nifti(path)


@pytest.mark.parametrize("srow, says", [
    ([np.nan, 0, 0, 0], "sform: its affine has NaN or infinite entries"),
    ([0, 0, 0, 0], "sform: its affine gives voxel sizes 0x1x1 mm: a zero voxel axis"),
])
def test_nan_or_zero_sform_is_refused(tmp_path, srow, says):
    path = _write_raw(tmp_path / "s.nii", _ct(), sform_code=1, srow_x=srow, srow_y=[0, 1, 0, 0], srow_z=[0, 0, 1, 0])
    with pytest.raises(ImageError, match=rf"s.nii: image {says}"):
        load_nifti(path)


def test_non_invertible_sform_is_refused(tmp_path):
    path = _write_raw(tmp_path / "s.nii", _ct(), sform_code=1, srow_x=[1, 1, 0, 0], srow_y=[1, 1, 0, 0],
                      srow_z=[0, 0, 1, 0])
    with pytest.raises(ImageError, match=r"sform: its affine is not invertible"):
        load_nifti(path)


def test_nan_voxels_are_refused(tmp_path):
    data = _ct().astype(np.float32)
    data[1, 2, 3] = np.nan
    path = _write_raw(tmp_path / "nan.nii", data)
    with pytest.raises(ImageError, match=r"nan.nii: the image has 1 NaN or infinite voxel\(s\) \(first at voxel \(1, 2, 3\)\)"):
        load_nifti(path)


def test_a_single_slice_is_not_a_volume(tmp_path):
    path = _write_raw(tmp_path / "one.nii", _ct((4, 5, 1)))
    with pytest.raises(ImageError, match=r"one.nii: the image has shape \(4, 5, 1\), 1 voxel\(s\) along axis 2"):
        load_nifti(path)


def test_a_nan_affine_never_reaches_the_writer(tmp_path):
    affine = np.eye(4)
    affine[0, 0] = np.nan
    with pytest.raises(ImageError, match=r"out.nii.gz: not written: its affine has NaN"):
        save_nifti(Volume(_ct(), affine), tmp_path / "out.nii.gz")
    assert not (tmp_path / "out.nii.gz").exists()


BAD = st.sampled_from([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30, 1e30, -2.0])
# the header fields the reader uses, each given a plausible value and then possibly broken
FIELDS = ["pixdim1", "pixdim2", "pixdim3", "qfac", "quatern_b", "quatern_c", "quatern_d", "qoffset_x",
          "srow_x0", "srow_y1", "srow_z2", "srow_x1", "srow_z3", "scl_slope", "scl_inter"]


@st.composite
def headers(draw):
    spacing = [draw(st.floats(0.3, 5.0)) for _ in range(3)]
    h = {f"pixdim{k + 1}": v for k, v in enumerate(spacing)}
    h["qfac"] = draw(st.sampled_from([1.0, -1.0]))
    for q in ("quatern_b", "quatern_c", "quatern_d"):
        h[q] = draw(st.floats(-0.5, 0.5))
    h["qoffset_x"] = draw(st.floats(-300, 300))
    for k, axis in enumerate("xyz"):
        for j in range(4):
            h[f"srow_{axis}{j}"] = spacing[k] * draw(st.sampled_from([-1.0, 1.0])) if j == k else (
                draw(st.floats(-300, 300)) if j == 3 else draw(st.floats(-0.2, 0.2)))
    h["scl_slope"] = draw(st.sampled_from([0.0, 1.0, 2.0]))
    h["scl_inter"] = draw(st.sampled_from([0.0, -1024.0]))
    for name, value in draw(st.lists(st.tuples(st.sampled_from(FIELDS), BAD), max_size=2)):
        h[name] = value
    return h


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=headers(), qform_code=st.integers(0, 2), sform_code=st.integers(0, 2),
       shape=st.tuples(*[st.integers(1, 4)] * 3), floats=st.booleans())
def test_fuzzed_header_is_read_right_or_refused_in_one_line(tmp_path, h, qform_code, sform_code, shape, floats):
    """Whatever the header fields the reader uses hold, load_nifti either refuses the file with an
    ImageError naming it, or returns a volume whose geometry is the one the header declares (the
    sform, else the qform, else pixdim: never a default), at least 2 voxels along every axis, no NaN."""
    data = _ct(shape).astype(np.float32 if floats else np.int16)
    srow = {f"srow_{a}": [h[f"srow_{a}{j}"] for j in range(4)] for a in "xyz"}
    path = _write_raw(tmp_path / "fuzz.nii", data, pixdim=[h["pixdim1"], h["pixdim2"], h["pixdim3"]],
                      qform_code=qform_code, sform_code=sform_code, quatern_b=h["quatern_b"],
                      quatern_c=h["quatern_c"], quatern_d=h["quatern_d"], qoffset_x=h["qoffset_x"],
                      scl_slope=h["scl_slope"], scl_inter=h["scl_inter"], **srow)
    with open(path, "r+b") as fh:  # pixdim[0] is qfac: stored as drawn, too
        fh.seek(76)
        fh.write(np.float32(h["qfac"]).tobytes())
    try:
        volume = load_nifti(path)
    except ImageError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message
        event("refused: " + " ".join(message.split(": ")[1].split()[:3]))
        return
    event("accepted")
    with open(path, "rb") as fh:
        stored = nib.Nifti1Header.from_fileobj(fh, check=False)
    assert np.all(np.isfinite(stored["pixdim"][1:4])) and np.all(stored["pixdim"][1:4] != 0)
    declared = (stored.get_sform() if sform_code > 0 else stored.get_qform() if qform_code > 0
                else stored.get_base_affine())
    np.testing.assert_allclose(volume.spacing, np.linalg.norm(declared[:3, :3], axis=0), rtol=1e-5)
    assert min(volume.shape) >= 2 and np.all(np.isfinite(volume.array))
    assert np.all(np.isfinite(volume.affine)) and abs(np.linalg.det(volume.affine[:3, :3])) > 0
