"""Rigid alignment of each scan to its patient's reference scan, for lesion tracking.

The reference scan of a patient is its baseline scan (the last scan with days <= 0, the one
rule of ``tumorburden.baseline``), or its first scan when it has none. Every other
scan of the patient is registered to it with SimpleITK:

- both images are smoothed and resampled to an isotropic ``registration_resolution_mm`` grid
  (8 mm: the transform serves lesion tracking, whose gate is 20 mm, and an 8 mm grid recovers a
  known motion to under 2 mm at a sixth of the 4 mm grid's CPU; BENCHMARKS.md), HU clamped to
  [-1000, 1000];
- the start aligns the centres of mass of the two body masks (HU > -500), so scans taken with
  the table at different positions start close;
- a rigid (Euler 3-D) transform maximises Mattes mutual information inside the reference's
  body mask, two levels (shrink 2, 1), regular-step gradient descent down to a step of 0.01 mm,
  20 % of the voxels
  sampled at random with a fixed seed and one ITK thread throughout, so the same scans give the
  same transform, bit for bit;
- a result that rotates more than ``registration_max_rotation_deg`` is implausible for a
  patient lying on a CT table: the identity is used instead and the file says why.

The output is a small JSON file per scan: ``matrix`` (4x4) maps RAS mm of this scan to RAS mm
of the reference scan, with the reference scan_id, the method and a status. ``registration:
none`` writes the identity (lesions are then matched in scanner coordinates).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tumorburden.imaging.volume import Volume, load_nifti

log = logging.getLogger(__name__)

DEFAULTS = {
    "registration": "rigid",  # rigid | none
    "registration_resolution_mm": 8.0,  # isotropic grid the registration works on
    "registration_max_rotation_deg": 15.0,  # larger rotations are rejected (identity used)
}

BODY_HU = -500.0
# Fewer samples are cheaper on a textured demo scan (0.05: half the CPU, the same transform) but
# the metric's noise then keeps the optimiser from converging on a low-texture image: the analytic
# phantom of benchmarks/register_scan.py ran its 200 iterations and ended 1.4 mm off at 0.05, against
# 19 iterations and 0.04 mm at 0.2 (BENCHMARKS.md)
SAMPLING_FRACTION = 0.2
SAMPLING_SEED = 20261122
# The optimiser stops when its step (a physical shift, mm) falls below this: a hundredth of a mm is
# far below what tracking resolves; 0.001 cost a third more iterations for the same transform
MIN_STEP_MM = 0.01
SHRINK_FACTORS = (2, 1)  # the pyramid's levels, in voxels of registration_resolution_mm
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (its own inverse)


def _to_sitk(volume: Volume):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(volume.array, np.float32).transpose(2, 1, 0)))
    spacing = np.array(volume.spacing)
    direction_lps = (LPS[:3, :3] @ volume.affine[:3, :3]) / spacing[None, :]
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(x) for x in direction_lps.ravel()))
    image.SetOrigin(tuple(float(x) for x in LPS[:3, :3] @ volume.affine[:3, 3]))
    return image


def _isotropic(image, mm: float):
    """Anti-aliased resampling onto an isotropic grid covering the image, HU clamped."""
    import SimpleITK as sitk

    image = sitk.Clamp(image, sitk.sitkFloat32, -1000.0, 1000.0)
    spacing = np.array(image.GetSpacing())
    sigma = [max(0.0, (mm * mm - s * s)) ** 0.5 / 2.355 for s in spacing]  # FWHM of the coarse voxel
    if max(sigma) > 0:
        image = sitk.SmoothingRecursiveGaussian(image, [max(x, 1e-3) for x in sigma])
    size = [max(1, int(math.ceil(n * s / mm))) for n, s in zip(image.GetSize(), spacing)]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), (mm, mm, mm),
                         image.GetDirection(), -1000.0, sitk.sitkFloat32)


def rigid_matrix(moving: Volume, reference: Volume, settings: dict | None = None) -> tuple[np.ndarray, dict]:
    """(4x4 RAS matrix from `moving`'s mm to `reference`'s mm, info) by rigid registration."""
    import SimpleITK as sitk

    # One ITK thread for the whole registration (smoothing, resampling, the metric's work units), not
    # only the optimiser's: with ITK's pool the metric's sums were split by thread scheduling, and the
    # same two scans gave transforms a few 1e-7 apart from run to run (a resumed run's tables then
    # differed from an uninterrupted one's). The job is a one-thread job in the workflow anyway.
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        return _rigid_matrix(moving, reference, settings)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


_FIXED: dict = {}


def _fixed_side(reference: Volume, mm: float):
    """(isotropic image, body mask, metric mask) of the reference scan, made once per reference: a
    patient's job registers each of its scans to the same reference image."""
    import SimpleITK as sitk

    key = (id(reference), mm)
    if key not in _FIXED or _FIXED[key][0] is not reference:
        fixed = _isotropic(_to_sitk(reference), mm)
        body = sitk.BinaryThreshold(fixed, BODY_HU, 1e9, 1, 0)
        _FIXED.clear()  # one reference at a time: the Volume is held so its id is not reused
        _FIXED[key] = (reference, (fixed, body, sitk.BinaryDilate(body, [2, 2, 2])))
    return _FIXED[key][1]


def _rigid_matrix(moving: Volume, reference: Volume, settings: dict | None = None) -> tuple[np.ndarray, dict]:
    import SimpleITK as sitk

    s = {**DEFAULTS, **(settings or {})}
    mm = float(s["registration_resolution_mm"])
    fixed, fixed_body, fixed_mask = _fixed_side(reference, mm)
    mov = _isotropic(_to_sitk(moving), mm)
    moving_body = sitk.BinaryThreshold(mov, BODY_HU, 1e9, 1, 0)
    if not np.any(sitk.GetArrayViewFromImage(fixed_body)) or not np.any(sitk.GetArrayViewFromImage(moving_body)):
        return np.eye(4), {"status": "failed: no body (HU > -500) in one of the images; identity used"}
    initial = sitk.CenteredTransformInitializer(
        sitk.Cast(fixed_body, sitk.sitkFloat32), sitk.Cast(moving_body, sitk.sitkFloat32),
        sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg = sitk.ImageRegistrationMethod()
    reg.SetNumberOfThreads(1)  # summation order fixed: the same scans give the same transform
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(SAMPLING_FRACTION, SAMPLING_SEED)
    reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=MIN_STEP_MM, numberOfIterations=200,
                                                 relaxationFactor=0.5, gradientMagnitudeTolerance=1e-6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(SHRINK_FACTORS))
    reg.SetSmoothingSigmasPerLevel([f / 2 if f > 1 else 0 for f in SHRINK_FACTORS])  # voxels
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(initial, inPlace=False)
    try:
        result = reg.Execute(fixed, mov)
    except RuntimeError as exc:
        return np.eye(4), {"status": f"failed: {' '.join(str(exc).split())[:200]}; identity used"}
    euler = sitk.Euler3DTransform(result.GetNthTransform(0) if hasattr(result, "GetNthTransform") else result)
    rot = np.array(euler.GetMatrix()).reshape(3, 3)
    centre = np.array(euler.GetCenter())
    shift = np.array(euler.GetTranslation())
    # ITK maps reference (fixed) LPS points to moving LPS points: p_m = R (p_f - c) + c + t.
    fixed_to_moving = np.eye(4)
    fixed_to_moving[:3, :3] = rot
    fixed_to_moving[:3, 3] = centre + shift - rot @ centre
    matrix = LPS @ np.linalg.inv(fixed_to_moving) @ LPS
    angle = math.degrees(math.acos(float(np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0))))
    info = {
        "status": "ok",
        "rotation_deg": round(angle, 4),
        "translation_mm": [round(float(x), 4) for x in matrix[:3, 3]],
        "metric": float(reg.GetMetricValue()),
        "iterations": int(reg.GetOptimizerIteration()),
        "stop": reg.GetOptimizerStopConditionDescription(),
    }
    if angle > float(s["registration_max_rotation_deg"]):
        info["status"] = (f"rejected: rotation {angle:.1f} deg > registration_max_rotation_deg "
                          f"{float(s['registration_max_rotation_deg']):g}; identity used")
        return np.eye(4), info
    return matrix, info


def register_scan(image: Path, reference_image: Path, scan_id: str, reference_scan_id: str, out: Path,
                  settings: dict | None = None, image_volume: Volume | None = None,
                  reference_volume: Volume | None = None) -> dict:
    """Write scans/<scan_id>/to_reference.json; returns its content. `image_volume` and
    `reference_volume`: the images already read (a patient's job reads its reference once)."""
    s = {**DEFAULTS, **(settings or {})}
    if s["registration"] not in ("rigid", "none"):
        raise ValueError(f"lesions.registration must be rigid or none, got {s['registration']!r}")
    record = {"scan_id": scan_id, "reference_scan_id": reference_scan_id, "method": s["registration"]}
    if scan_id == reference_scan_id:
        matrix, info = np.eye(4), {"status": "reference scan"}
    elif s["registration"] == "none":
        matrix, info = np.eye(4), {"status": "registration off (lesions.registration: none)"}
    else:
        moving = image_volume if image_volume is not None else load_nifti(image, dtype=np.float32)
        reference = (reference_volume if reference_volume is not None
                     else load_nifti(reference_image, dtype=np.float32))
        matrix, info = rigid_matrix(moving, reference, s)
    record.update(info)
    record["matrix"] = [[round(float(x), 6) for x in row] for row in matrix]
    if not record["status"].startswith(("ok", "reference", "registration off")):
        log.warning("%s: %s", scan_id, record["status"])
    log.info("%s -> %s: %s", scan_id, reference_scan_id, json.dumps({k: v for k, v in record.items() if k != "matrix"}))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    return record


def read_transform(path: Path) -> tuple[str, np.ndarray, str]:
    """(scan_id, 4x4 matrix to the reference, status) of a to_reference.json file."""
    try:
        record = json.loads(Path(path).read_text())
        matrix = np.asarray(record["matrix"], dtype=float)
        scan_id = str(record["scan_id"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a registration file ({exc}); run `tumorburden register` for this scan again")
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"{path}: matrix is not a finite 4x4 matrix; run `tumorburden register` for this scan again")
    return scan_id, matrix, str(record.get("status", ""))
