"""Per-lesion measurements and body composition of one scan.

A lesion is a connected component of the voxels labelled 1 or 5 (labels.py). For each:
- volume_ml: voxel count x voxel volume.
- longest_diameter_mm: on the axial slice where the lesion's area is largest, the
  centre-to-centre distance of the two farthest pixels (convex hull) plus half a pixel's
  extent along that direction, in mm from the in-plane spacing. The half-pixel term makes
  it unbiased on digital ellipses (mean error +0.05 mm at 3 mm pixels, +0.17 mm at 0.8 mm;
  a full pixel overestimates by ~2 mm at 3 mm, none underestimates by ~1.8 mm).
- short_axis_mm: on the same slice, the longest chord perpendicular to that diameter
  (RECIST's short axis), measured in strips one pixel wide along the diameter, with the
  same half-pixel term (mean error -0.4 mm at 3 mm pixels, 0.0 mm at 0.8 mm).
- centroid_x/y/z_mm: RAS mm via the affine. mean_hu: mean of the image over the lesion.
- organ: "node" when most voxels are label 5, else the most frequent organ label in a
  1-voxel shell around the lesion: 6 lung, 7 liver, 2/3 soft_tissue, anything else other.
Lesions are numbered 1.. by decreasing volume (ties by component order, deterministic).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cc3d
import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from tumorburden import labels as L
from tumorburden import tables
from tumorburden.imaging.volume import Volume, axial_axis, load_nifti

log = logging.getLogger(__name__)

DEFAULTS = {
    "min_volume_ml": 0.05,  # components smaller than this are not lesions
    "connectivity": 26,  # 6 | 18 | 26
}

ORGAN_OF_LABEL = {L.LUNG: "lung", L.LIVER: "liver", L.SAT: "soft_tissue", L.MUSCLE: "soft_tissue"}
CROSS3 = ndimage.generate_binary_structure(3, 1)


def measure_scan(image: Path, segmentation: Path, patient_id: str, scan_id: str,
                 lesions_out: Path, tissue_out: Path, settings: dict | None = None) -> pd.DataFrame:
    """Write the scan's lesion table and tissue table; returns the lesion table."""
    s = {**DEFAULTS, **(settings or {})}
    if int(s["connectivity"]) not in (6, 18, 26):
        raise ValueError(f"lesions connectivity must be 6, 18 or 26, got {s['connectivity']!r}")
    img = load_nifti(image, dtype=np.float32)
    seg = load_nifti(segmentation)
    if not img.same_grid(seg):
        raise ValueError(f"{segmentation}: grid {seg.shape} does not match the image {image} grid {img.shape} "
                         "(segment the ingested image again)")
    labels = np.asarray(seg.array).astype(np.uint8, copy=False)
    lesions = measure_lesions(img, labels, s)
    lesions.insert(0, "scan_id", scan_id)
    lesions.insert(0, "patient_id", patient_id)
    if lesions.empty:
        lesions = tables.empty("scan_lesions")
    tables.write(lesions, lesions_out, "scan_lesions")
    tables.write(tissue_table(labels, img.voxel_ml, patient_id, scan_id), tissue_out, "scan_tissue")
    log.info("%s: %d lesion(s), %.1f mL", scan_id, len(lesions), lesions["volume_ml"].sum() if len(lesions) else 0.0)
    return lesions


def tissue_table(labels: np.ndarray, voxel_ml: float, patient_id: str, scan_id: str) -> pd.DataFrame:
    counts = np.bincount(labels.ravel(), minlength=len(L.NAMES))
    return pd.DataFrame({
        "patient_id": [patient_id],
        "scan_id": [scan_id],
        "muscle_ml": [counts[L.MUSCLE] * voxel_ml],
        "sat_ml": [counts[L.SAT] * voxel_ml],
        "vat_ml": [counts[L.VAT] * voxel_ml],
    })


COLUMNS = ["lesion", "volume_ml", "longest_diameter_mm", "short_axis_mm", "centroid_x_mm",
           "centroid_y_mm", "centroid_z_mm", "mean_hu", "organ"]


def measure_lesions(image: Volume, labels: np.ndarray, settings: dict | None = None) -> pd.DataFrame:
    """One row per lesion (columns COLUMNS), on the image's grid."""
    s = {**DEFAULTS, **(settings or {})}
    mask = np.isin(labels, L.LESION_LABELS)
    cc = cc3d.connected_components(mask, connectivity=int(s["connectivity"]))
    stats = cc3d.statistics(cc, no_slice_conversion=True)
    counts = stats["voxel_counts"].astype(np.int64)
    counts[0] = 0
    keep = np.flatnonzero(counts * image.voxel_ml >= s["min_volume_ml"])
    if keep.size == 0:
        return pd.DataFrame(columns=COLUMNS)
    order = keep[np.lexsort((keep, -counts[keep]))]  # decreasing volume, then component order
    centroids = image.index_to_mm(stats["centroids"][order])
    ax = axial_axis(image.affine)
    in_plane = [i for i in range(3) if i != ax]
    spacing = np.array(image.spacing)
    rows = []
    for n, label in enumerate(order, start=1):
        b = stats["bounding_boxes"][label]
        box = tuple(slice(max(0, int(b[2 * i]) - 1), min(cc.shape[i], int(b[2 * i + 1]) + 2)) for i in range(3))
        comp = cc[box] == label
        longest, short = axial_diameters(comp, ax, spacing[in_plane])
        if np.count_nonzero(labels[box][comp] == L.NODE_LESION) * 2 > counts[label]:
            organ = "node"
        else:
            organ = _organ_around(comp, labels[box])
        rows.append({
            "lesion": n,
            "volume_ml": counts[label] * image.voxel_ml,
            "longest_diameter_mm": longest,
            "short_axis_mm": short,
            "centroid_x_mm": centroids[n - 1, 0],
            "centroid_y_mm": centroids[n - 1, 1],
            "centroid_z_mm": centroids[n - 1, 2],
            "mean_hu": float(np.mean(image.array[box][comp], dtype=np.float64)),
            "organ": organ,
        })
    return pd.DataFrame(rows, columns=COLUMNS)


def _organ_around(comp: np.ndarray, labels: np.ndarray) -> str:
    shell = ndimage.binary_dilation(comp, structure=CROSS3) & ~comp
    around = labels[shell]
    around = around[~np.isin(around, L.LESION_LABELS)]
    if around.size == 0:
        return "other"
    votes = np.bincount(around, minlength=len(L.NAMES))
    return ORGAN_OF_LABEL.get(int(np.argmax(votes)), "other")


def axial_diameters(comp: np.ndarray, axial: int, pixel_mm) -> tuple[float, float]:
    """(longest diameter, perpendicular extent) in mm on the slice of largest area."""
    area = comp.sum(axis=tuple(i for i in range(3) if i != axial))
    k = int(np.argmax(area))  # first slice of largest area
    plane = np.take(comp, k, axis=axial)
    pixel_mm = np.asarray(pixel_mm, dtype=np.float64)
    pts = np.argwhere(plane) * pixel_mm
    hull = pts
    if len(pts) >= 3:
        try:
            hull = pts[ConvexHull(pts).vertices]
        except QhullError:  # collinear pixels: a line, every point is on the hull
            hull = pts
    diff = hull[:, None, :] - hull[None, :, :]
    dist = np.sqrt((diff ** 2).sum(-1))
    i, j = np.unravel_index(int(np.argmax(dist)), dist.shape)
    if dist[i, j] == 0:
        return float(pixel_mm.max()), float(pixel_mm.min())
    u = diff[i, j] / dist[i, j]
    v = np.array([-u[1], u[0]])
    longest = dist[i, j] + 0.5 * (np.abs(u) @ pixel_mm)  # see the module docstring
    # Longest chord perpendicular to the diameter: the extent along v within each strip
    # one pixel wide along u (a plain projection would widen with the diameter's tilt).
    along, across = pts @ u, pts @ v
    strip = np.floor((along - along.min()) / pixel_mm.min()).astype(np.int64)
    order = np.lexsort((across, strip))
    strip, across = strip[order], across[order]
    starts = np.flatnonzero(np.r_[True, strip[1:] != strip[:-1]])
    ends = np.r_[starts[1:], len(strip)] - 1
    short = float((across[ends] - across[starts]).max()) + 0.5 * (np.abs(v) @ pixel_mm)
    return float(longest), float(short)
