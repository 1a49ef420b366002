"""Render the synthetic trial's scans: DICOM CT series + the true label and lesion maps.

The trial is re-designed from the settings (deterministic, fast), so a render job needs only
the settings and a patient (or scan) id. The workflow renders one patient per job: at 600 x 6
scans a job per scan made rendering a quarter of the DAG's 15,000 jobs. The anatomy is drawn
slab by slab and each lesion only inside its bounding box, which keeps a 512 x 512 x 300 scan
near 1.2 GB of memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
import zlib
from pathlib import Path

import numpy as np
from scipy import ndimage

from tumorburden.imaging.volume import Volume, save_nifti
from tumorburden.paths import inside
from tumorburden.synth import phantom
from tumorburden.synth.dicom import SeriesInfo, hu_to_stored, write_ct_series
from tumorburden.synth.trial import design_trial, resolve_settings

log = logging.getLogger(__name__)

SLAB_VOXELS = 4_000_000  # anatomy is evaluated this many voxels at a time


def grid_affine_ras(grid: dict) -> np.ndarray:
    """Voxel (i, j, k) -> RAS mm for the trial grid: i along +x LPS, j along +y LPS, k along +z."""
    p, dz = grid["pixel_mm"], grid["slice_mm"]
    x0, y0, z0 = grid["origin_lps_mm"]
    return np.array([
        [-p, 0.0, 0.0, -x0],
        [0.0, -p, 0.0, -y0],
        [0.0, 0.0, dz, z0],
        [0.0, 0.0, 0.0, 1.0],
    ])


def _axes_lps(grid: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre coordinates along i (x LPS), j (y LPS) and k (u, mm above the pelvis)."""
    n, p, dz = grid["matrix"], grid["pixel_mm"], grid["slice_mm"]
    x0, y0, z0 = grid["origin_lps_mm"]
    x = x0 + p * np.arange(n)
    y = y0 + p * np.arange(n)
    u = z0 - phantom.Z_OF_U0_MM + dz * np.arange(grid["n_slices"])
    return x, y, u


def render_tissue(body: phantom.Body, lesions, grid: dict) -> tuple[np.ndarray, np.ndarray]:
    """Tissue-code map (uint8) and lesion-instance map (uint16 track_id) on the grid.

    `lesions`: frame with centroid_x/y/z_mm (RAS), semi_x/y/z_mm, site, track_id.
    """
    x, y, u = _axes_lps(grid)
    n, k_total = len(x), len(u)
    tissue = np.empty((n, n, k_total), dtype=np.uint8)
    step = max(1, SLAB_VOXELS // (n * n))
    for k0 in range(0, k_total, step):
        k1 = min(k_total, k0 + step)
        tissue[:, :, k0:k1] = phantom.tissue_at(x[:, None, None], y[None, :, None], u[None, None, k0:k1], body)

    instances = np.zeros(tissue.shape, dtype=np.uint16)
    p, dz = grid["pixel_mm"], grid["slice_mm"]
    for les in lesions.itertuples(index=False):
        centre = np.array([-les.centroid_x_mm, -les.centroid_y_mm, les.centroid_z_mm - phantom.Z_OF_U0_MM])
        semi = np.array([les.semi_x_mm, les.semi_y_mm, les.semi_z_mm])
        spacing = np.array([p, p, dz])
        first = np.array([x[0], y[0], u[0]])
        lo = np.maximum(np.ceil((centre - semi - first) / spacing), 0).astype(int)
        hi = np.minimum(np.floor((centre + semi - first) / spacing), [n - 1, n - 1, k_total - 1]).astype(int)
        if np.any(hi < lo):
            continue  # outside the field of view, or smaller than the voxel spacing between centres
        xs, ys, us = x[lo[0]:hi[0] + 1], y[lo[1]:hi[1] + 1], u[lo[2]:hi[2] + 1]
        inside = (((xs[:, None, None] - centre[0]) / semi[0]) ** 2
                  + ((ys[None, :, None] - centre[1]) / semi[1]) ** 2
                  + ((us[None, None, :] - centre[2]) / semi[2]) ** 2) <= 1.0
        box = (slice(lo[0], hi[0] + 1), slice(lo[1], hi[1] + 1), slice(lo[2], hi[2] + 1))
        tissue[box][inside] = phantom.SITE_CODE[les.site]
        instances[box][inside] = les.track_id
    return tissue, instances


def image_from_tissue(tissue: np.ndarray, grid: dict, blur_mm: float, noise_hu: float,
                      rng: np.random.Generator) -> np.ndarray:
    """HU map -> Gaussian PSF -> Gaussian noise -> stored uint16 (HU + 1024)."""
    hu = phantom.HU[tissue]  # float32
    if blur_mm > 0:
        sigma = (blur_mm / grid["pixel_mm"], blur_mm / grid["pixel_mm"], blur_mm / grid["slice_mm"])
        hu = ndimage.gaussian_filter(hu, sigma=sigma, mode="nearest", output=np.float32)
    n = hu.shape[0] * hu.shape[1]
    step = max(1, SLAB_VOXELS // n)
    for k0 in range(0, hu.shape[2], step):  # noise by slab so no second full-size float array is held
        k1 = min(hu.shape[2], k0 + step)
        if noise_hu > 0:
            hu[:, :, k0:k1] += noise_hu * rng.standard_normal(hu[:, :, k0:k1].shape, dtype=np.float32)
    return hu_to_stored(hu)


def render_patient(settings: dict | None, patient_id: str, dicom_dir: Path, truth_dir: Path) -> list[str]:
    """Every scan of a patient: dicom_dir/<scan_id>/IM*.dcm and truth_dir/<scan_id>/{labels,lesions}.nii.gz.
    Returns the scan ids."""
    trial = design_trial(settings)
    scan_ids = list(trial.scans.loc[trial.scans["patient_id"] == patient_id, "scan_id"])
    if not scan_ids:
        raise ValueError(f"patient {patient_id!r} is not in the synthetic trial (seed {resolve_settings(settings)['seed']}):"
                         " check the patient id against synthetic/scans.tsv")
    for k, scan_id in enumerate(scan_ids, 1):
        _render(trial, settings, scan_id, inside(Path(dicom_dir), Path(dicom_dir) / scan_id),
                inside(Path(truth_dir), Path(truth_dir) / scan_id))
        log.info("patient %s: %d of %d scans rendered", patient_id, k, len(scan_ids))
    return scan_ids


def render_scan(settings: dict | None, scan_id: str, dicom_dir: Path, truth_dir: Path) -> None:
    """Write dicom_dir/IM000001.dcm... and truth_dir/{labels,lesions}.nii.gz for one scan."""
    _render(design_trial(settings), settings, scan_id, dicom_dir, truth_dir)


def _render(trial, settings: dict | None, scan_id: str, dicom_dir: Path, truth_dir: Path) -> None:
    started = time.perf_counter()
    s = resolve_settings(settings)
    scan = trial.scan(scan_id)
    patient = trial.patients.set_index("patient_id").loc[scan["patient_id"]]
    clinical = trial.clinical.set_index("patient_id").loc[scan["patient_id"]]
    grid = trial.model["grid"]
    body = phantom.Body(a=patient["body_a_mm"], b=patient["body_b_mm"], sat=patient["sat_mm"],
                        muscle=patient["muscle_mm"])
    lesions = trial.lesions[trial.lesions["scan_id"] == scan_id]

    tissue, instances = render_tissue(body, lesions, grid)
    # noise seeded per scan: same scan -> same image, different scans -> independent noise
    rng = np.random.default_rng(np.random.SeedSequence([int(s["seed"]), zlib.crc32(scan_id.encode())]))
    stored = image_from_tissue(tissue, grid, float(s["blur_mm"]), float(s["noise_hu"]), rng)

    day0 = dt.date.fromisoformat(patient["day0_date"])
    date = day0 + dt.timedelta(days=int(math.floor(scan["days"])))
    minutes = 8 * 60 + zlib.crc32(f"time:{scan_id}".encode()) % 540
    info = SeriesInfo(
        patient_id=scan["patient_id"],
        patient_sex=str(clinical["sex"]),
        study_date=date.strftime("%Y%m%d"),
        study_time=f"{minutes // 60:02d}{minutes % 60:02d}00",
        study_id=scan_id.rsplit("-", 1)[-1][:16],
        series_description=f"synthetic CT TAP {grid['slice_mm']:g} mm",
        body_part="CHESTABDPELVIS",
        uid_entropy=[str(s["seed"]), scan_id],
    )
    dicom_dir = Path(dicom_dir)
    for old in sorted(dicom_dir.glob("IM*.dcm")):  # never mix a stale series into this one
        old.unlink()
    write_ct_series(stored, tuple(grid["origin_lps_mm"]), grid["pixel_mm"], grid["slice_mm"], info, dicom_dir)

    affine = grid_affine_ras(grid)
    truth_dir = Path(truth_dir)
    save_nifti(Volume(phantom.LABEL[tissue], affine), truth_dir / "labels.nii.gz", dtype=np.uint8)
    save_nifti(Volume(instances, affine), truth_dir / "lesions.nii.gz", dtype=np.uint16)
    log.info("rendered %s: %d x %d x %d voxels, %d lesions, %.2f s", scan_id, *stored.shape, len(lesions),
             time.perf_counter() - started)
