"""Rigid registration of a follow-up scan to the reference scan, on an analytic body phantom."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tumorburden.imaging.volume import Volume, save_nifti
from tumorburden.lesions import register


def phantom_hu(p: np.ndarray) -> np.ndarray:
    """HU of an asymmetric trunk at RAS points p (..., 3): body, fat rim, two unequal lungs,
    spine, liver on the right."""
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    hu = np.full(x.shape, -1000.0, np.float32)
    body = (x / 150) ** 2 + (y / 100) ** 2 <= 1
    hu[body] = -100.0
    hu[body & ((x / 138) ** 2 + (y / 88) ** 2 <= 1)] = 40.0
    right_lung = ((x + 60) / 45) ** 2 + ((y - 5) / 55) ** 2 + ((z - 40) / 70) ** 2 <= 1
    left_lung = ((x - 55) / 38) ** 2 + ((y - 10) / 50) ** 2 + ((z - 60) / 55) ** 2 <= 1
    hu[right_lung | left_lung] = -850.0
    hu[((x - 5) / 14) ** 2 + ((y + 70) / 14) ** 2 <= 1] = 700.0
    hu[((x + 55) / 60) ** 2 + ((y + 5) / 50) ** 2 + ((z + 60) / 45) ** 2 <= 1] = 110.0
    return hu


def render(spacing, shape, origin, motion=np.eye(4)):
    """A Volume of the phantom seen after the patient moved by `motion` (anatomy -> scanner mm)."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    idx = np.indices(shape).reshape(3, -1).T
    q = idx @ affine[:3, :3].T + affine[:3, 3]
    inv = np.linalg.inv(motion)
    p = q @ inv[:3, :3].T + inv[:3, 3]
    return Volume(phantom_hu(p).reshape(shape), affine)


def motion_matrix(deg_z, shift):
    a = math.radians(deg_z)
    m = np.eye(4)
    m[:3, :3] = [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]]
    m[:3, 3] = shift
    return m


@pytest.fixture(scope="module")
def reference():
    return render((4.0, 4.0, 4.0), (84, 60, 56), (-166.0, -118.0, -110.0))


def test_recovers_a_known_motion_across_grids(reference):
    motion = motion_matrix(4.0, (12.0, -8.0, 15.0))
    # the follow-up is on another grid: finer in-plane, thicker slices, shifted origin
    moving = render((3.0, 3.0, 5.0), (110, 80, 48), (-160.0, -120.0, -100.0), motion)
    matrix, info = register.rigid_matrix(moving, reference)
    assert info["status"] == "ok"
    truth = np.linalg.inv(motion)
    points = np.array([[-60.0, 5.0, 40.0, 1.0], [55.0, 10.0, 60.0, 1.0], [5.0, -70.0, -50.0, 1.0]])
    moved = points @ motion.T  # where the anatomy sits in the follow-up scan
    err = np.linalg.norm((moved @ matrix.T)[:, :3] - (moved @ truth.T)[:, :3], axis=1)
    assert err.max() < 2.0, err  # a quarter voxel of the 8 mm registration grid; tracking's gate is 20 mm
    assert info["rotation_deg"] == pytest.approx(4.0, abs=0.5)


def test_the_transform_does_not_depend_on_the_callers_itk_threads(reference):
    """Bit for bit, whatever ITK's thread pool (a resumed run must give the tables of an uninterrupted
    one); the caller's setting is left as it was."""
    import SimpleITK as sitk

    moving = render((3.0, 3.0, 5.0), (110, 80, 48), (-160.0, -120.0, -100.0), motion_matrix(4.0, (12.0, -8.0, 15.0)))
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    results = []
    try:
        for threads in (1, 4):
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
            results.append(register.rigid_matrix(moving, reference))
            assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    (m1, info1), (m4, info4) = results
    assert np.array_equal(m1, m4) and info1["metric"] == info4["metric"]


def test_register_scan_files(tmp_path, reference):
    save_nifti(reference, tmp_path / "ref.nii.gz")
    rec = register.register_scan(tmp_path / "ref.nii.gz", tmp_path / "ref.nii.gz", "S0", "S0",
                                 tmp_path / "S0.json")
    assert rec["status"] == "reference scan" and rec["matrix"] == np.eye(4).tolist()
    rec = register.register_scan(tmp_path / "ref.nii.gz", tmp_path / "ref.nii.gz", "S1", "S0",
                                 tmp_path / "S1.json", {"registration": "none"})
    scan_id, matrix, status = register.read_transform(tmp_path / "S1.json")
    assert scan_id == "S1" and np.array_equal(matrix, np.eye(4)) and status.startswith("registration off")
    (tmp_path / "bad.json").write_text(json.dumps({"scan_id": "S2", "matrix": [[1, 0], [0, 1]]}))
    with pytest.raises(ValueError, match=r"bad\.json: matrix is not a finite 4x4"):
        register.read_transform(tmp_path / "bad.json")

