"""`tumorburden segment`: image.nii.gz -> segmentation.nii.gz (labels.py), or import a mask.

Methods (`method` in the segmentation settings):
  classical  HU thresholds + morphology (segment.classical), the baseline until a
             MONAI network method is added here next to it.

An external lesion mask (NIfTI, nonzero = lesion, on the image's grid) replaces the
method's lesions: its voxels become label 1, the method's lesions are discarded and
body composition still comes from the classical baseline.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from tumorburden import labels as L
from tumorburden.imaging.volume import Volume, load_nifti, save_nifti
from tumorburden.segment import classical

log = logging.getLogger(__name__)

DEFAULTS = {"method": "classical", **classical.DEFAULTS}
METHODS = ("classical",)
GRID_ATOL_MM = 1e-3


def segment(image_path: Path, out_path: Path, mask_path: Path | None = None,
            settings: dict | None = None) -> np.ndarray:
    """Write the label map of `image_path` to `out_path`; returns the labels."""
    s = {**DEFAULTS, **(settings or {})}
    if s["method"] not in METHODS:
        raise ValueError(f"segmentation method {s['method']!r} is unknown; choose one of {', '.join(METHODS)}")
    image = load_nifti(image_path, dtype=np.float32)
    mask = read_mask(mask_path, image) if mask_path is not None else None
    t0 = time.perf_counter()
    try:
        labels = classical.segment_volume(image, {**s, "lesions": mask is None})
    except ValueError as exc:
        raise ValueError(f"{image_path}: {exc}") from exc
    if mask is not None:
        labels[mask] = L.LESION
    log.info("%s: %s segmentation in %.2f s (%s)", image_path, s["method"], time.perf_counter() - t0,
             ", ".join(f"{L.NAMES[k]} {n}" for k, n in enumerate(np.bincount(labels.ravel(), minlength=8)) if k and n))
    save_nifti(Volume(labels, image.affine), out_path, dtype=np.uint8)
    return labels


def read_mask(path: Path, image: Volume) -> np.ndarray:
    """A boolean lesion mask on the image's grid; flipped/permuted axes are reoriented."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: external lesion mask not found")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read the lesion mask as NIfTI ({exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    mask = Volume(np.asarray(data) != 0, img.affine)
    on_image = mask.array_on_grid_of(image, atol=GRID_ATOL_MM)
    if on_image is not None:
        if on_image is not mask.array:
            log.info("%s: mask reoriented onto the image grid", path)
        return on_image
    raise ValueError(
        f"{path}: lesion mask grid {mask.shape} {_axes(mask.affine)} does not match the image grid "
        f"{image.shape} {_axes(image.affine)}; resample the mask onto the image first"
    )


def _axes(affine: np.ndarray) -> str:
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    codes = "".join(nib.aff2axcodes(affine))
    return f"[{codes}, {'x'.join(f'{v:.3g}' for v in spacing)} mm, origin {np.round(affine[:3, 3], 2).tolist()}]"
