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
- organ, the finding site: "node" when most voxels are label 5. Else, when the scan has an organ
  map (organs.nii.gz, from an organ model of `segmentation.models`): the organ under the lesion,
  the most frequent organ among its voxels if organs cover at least half of them (an organ model
  segments the organ with its lesions); else the most frequent organ among those voxels and a
  1-voxel shell around the lesion (a lesion the organ model left out of its organ, or one on an
  organ's surface); labels.SITE_OF_LABEL names the sites (lung, liver, spleen, kidney,
  adrenal_gland, pancreas, brain, bone). Without an organ map, or with no organ under or around
  the lesion, the rule for the label map alone: the most frequent label in a 1-voxel shell
  around the lesion: 6 lung, 7 liver, 2/3 soft_tissue, anything else other.
Lesions are numbered 1.. by decreasing volume (ties by component order, deterministic).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cc3d
import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from tumorburden import labels as L
from tumorburden import tables
from tumorburden.imaging.volume import Volume, axial_axis, load_nifti
from tumorburden.lesions.l3 import l3_row

log = logging.getLogger(__name__)

DEFAULTS = {
    "min_volume_ml": 0.05,  # components smaller than this are not lesions
    "connectivity": 26,  # 6 | 18 | 26
}

ORGAN_OF_LABEL = {L.LUNG: "lung", L.LIVER: "liver", L.SAT: "soft_tissue", L.MUSCLE: "soft_tissue"}
CROSS3 = ndimage.generate_binary_structure(3, 1)


def measure_scan(image: Path, segmentation: Path, patient_id: str, scan_id: str,
                 lesions_out: Path, tissue_out: Path, settings: dict | None = None,
                 image_volume: Volume | None = None, organs: Path | None = None,
                 l3_out: Path | None = None) -> pd.DataFrame:
    """Write the scan's lesion table and tissue table (and, given `l3_out`, its body composition at
    L3: lesions/l3.py); returns the lesion table.
    `image_volume`: the image already read (a patient's job reads it once for both steps).
    `organs`: the scan's organ map, which gives the lesions' finding sites (module docstring)."""
    s = {**DEFAULTS, **(settings or {})}
    _check_connectivity(s)
    img = image_volume if image_volume is not None else load_nifti(image, dtype=np.float32)
    seg = load_nifti(segmentation)
    if not img.same_grid(seg):
        raise ValueError(f"{segmentation}: grid {seg.shape} does not match the image {image} grid {img.shape} "
                         "(segment the ingested image again)")
    labels = np.asarray(seg.array).astype(np.uint8, copy=False)
    organ_map = read_organ_map(organs, img, image)
    lesions = write_scan_lesions(img, labels, patient_id, scan_id, lesions_out, s, organs=organ_map)
    tables.write(tissue_table(labels, img.voxel_ml, patient_id, scan_id), tissue_out, "scan_tissue")
    if l3_out is not None:
        tables.write(l3_row(img, labels, organ_map, patient_id, scan_id), l3_out, "scan_l3")
    log.info("%s: %d lesion(s), %.1f mL", scan_id, len(lesions), lesions["volume_ml"].sum() if len(lesions) else 0.0)
    return lesions


def organ_map_beside(segmentation: Path) -> Path | None:
    """The scan's organ map (segment/compose.py), written beside its segmentation only with an organ model."""
    organs = L.organ_map_path(segmentation)
    return organs if organs.exists() else None


def read_organ_map(organs: Path | None, img: Volume, image: Path) -> np.ndarray | None:
    """The organ map's labels on the image's grid (None without an organ map)."""
    if organs is None:
        return None
    om = load_nifti(organs)
    if not img.same_grid(om):
        raise ValueError(f"{organs}: grid {om.shape} does not match the image {image} grid {img.shape} "
                         "(segment the ingested image again)")
    return np.asarray(om.array).astype(np.uint8, copy=False)


def write_scan_lesions(img: Volume, labels: np.ndarray, patient_id: str, scan_id: str, out: Path,
                       settings: dict, organs: np.ndarray | None = None) -> pd.DataFrame:
    """The scan's lesion table (schema scan_lesions) from its label map, written to `out`; returned."""
    lesions = measure_lesions(img, labels, settings, organs=organs)
    lesions.insert(0, "scan_id", scan_id)
    lesions.insert(0, "patient_id", patient_id)
    if lesions.empty:
        lesions = tables.empty("scan_lesions")
    tables.write(lesions, out, "scan_lesions")
    return lesions


def _check_connectivity(s: dict) -> None:
    if int(s["connectivity"]) not in (6, 18, 26):
        raise ValueError(f"lesions connectivity must be 6, 18 or 26, got {s['connectivity']!r}")


@dataclass
class ScanFiles:
    """One scan of a patient's measurement job: its inputs and the files written for it."""

    scan_id: str
    image: Path
    segmentation: Path
    lesions_out: Path
    tissue_out: Path
    transform_out: Path

    @property
    def l3_out(self) -> Path:
        """scans/<scan_id>/l3.parquet, beside the tissue table."""
        return Path(self.tissue_out).with_name("l3.parquet")


def measure_patient(patient_id: str, reference_scan_id: str, reference_image: Path, scans: list[ScanFiles],
                    record_out: Path, settings: dict | None = None) -> pd.DataFrame:
    """Every scan of one patient in one process: its rigid transform to the patient's reference scan
    (register.py; the reference read once), then its lesions and body composition, each to the
    scan's own files; then the patient's record (tables.py `measure_record`), the file the workflow
    tracks for the job. Returns the record."""
    from tumorburden.lesions.register import DEFAULTS as REGISTRATION_DEFAULTS
    from tumorburden.lesions.register import register_scan

    s = {**REGISTRATION_DEFAULTS, **DEFAULTS, **(settings or {})}
    _check_connectivity(s)
    if not scans:
        raise ValueError(f"patient {patient_id}: no scans to measure")
    for job in scans:
        for what, path in (("image", job.image), ("segmentation", job.segmentation)):
            if not Path(path).exists():
                raise FileNotFoundError(f"{path}: {what} of scan {job.scan_id} not found; run `tumorburden "
                                        f"{'ingest' if what == 'image' else 'segment'}` on the scan first")
    others = any(job.scan_id != reference_scan_id for job in scans)
    reference = load_nifti(reference_image, dtype=np.float32) if others and s["registration"] == "rigid" else None
    rows = []
    for job in scans:
        own = job.scan_id == reference_scan_id and reference is not None
        img = reference if own else load_nifti(job.image, dtype=np.float32)
        record = register_scan(job.image, reference_image, job.scan_id, reference_scan_id, job.transform_out,
                               settings=s, image_volume=img, reference_volume=reference)
        lesions = measure_scan(job.image, job.segmentation, patient_id, job.scan_id, job.lesions_out,
                               job.tissue_out, settings=s, image_volume=img,
                               organs=organ_map_beside(job.segmentation), l3_out=job.l3_out)
        rows.append({"patient_id": patient_id, "scan_id": job.scan_id, "reference_scan_id": reference_scan_id,
                     "registration_status": record["status"], "n_lesions": len(lesions),
                     "lesion_ml": float(lesions["volume_ml"].sum()) if len(lesions) else 0.0})
    table = tables.check(pd.DataFrame(rows), "measure_record", where=str(record_out))
    Path(record_out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(record_out, sep="\t", index=False)
    return table


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


def measure_lesions(image: Volume, labels: np.ndarray, settings: dict | None = None,
                    organs: np.ndarray | None = None) -> pd.DataFrame:
    """One row per lesion (columns COLUMNS), on the image's grid; `organs`: the organ map, if any."""
    s = {**DEFAULTS, **(settings or {})}
    mask = np.isin(labels, L.LESION_LABELS)
    cc = cc3d.connected_components(mask, connectivity=int(s["connectivity"]))
    stats = cc3d.statistics(cc, no_slice_conversion=True)
    counts = stats["voxel_counts"].astype(np.int64)
    keep = np.flatnonzero(counts * image.voxel_ml >= s["min_volume_ml"])
    keep = keep[keep > 0]  # component 0 is the background, whatever min_volume_ml is (0 is allowed)
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
            organ = (_organ_under(comp, organs[box]) if organs is not None else None) or _organ_around(comp, labels[box])
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


def _organ_under(comp: np.ndarray, organs: np.ndarray) -> str | None:
    """The finding site from the organ map (module docstring), or None when no organ is under or
    around the lesion."""
    under = organs[comp]
    under = under[under != L.BACKGROUND]
    if under.size * 2 < np.count_nonzero(comp):
        shell = ndimage.binary_dilation(comp, structure=CROSS3) & ~comp
        around = organs[shell]
        under = np.concatenate([under, around[around != L.BACKGROUND]])
    if under.size == 0:
        return None
    votes = np.bincount(under, minlength=max(L.ALL_NAMES) + 1)
    by_site: dict[str, int] = {}
    for label, site in L.SITE_OF_LABEL.items():  # L3 and the other bones vote together
        by_site[site] = by_site.get(site, 0) + int(votes[label])
    return max(L.SITES, key=lambda site: by_site.get(site, 0))  # ties: the first in labels.SITES


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
