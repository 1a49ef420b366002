import nibabel as nib
import numpy as np
import pytest

from tumorburden.imaging.volume import Volume, axial_axis, load_nifti, save_nifti


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
