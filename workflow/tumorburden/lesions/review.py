"""A reviewed scan measured, and the model's segmentation set against the radiologist's.

Per reviewed scan (`measure_review`): the reviewed label map is measured as any segmentation
(lesions/measure.py) into scans/<scan_id>/review/lesions.parquet, which `track` takes in place
of the model's lesions, and one row of the `review` table compares the two:
- lesions are connected components of labels 1 and 5 with `lesions.connectivity`, those under
  `lesions.min_volume_ml` left out, as in the lesion tables;
- a reviewed lesion overlapping no model lesion was *added*; a model lesion overlapping no
  reviewed lesion was *removed*; a reviewed lesion overlapping exactly one model lesion that
  overlaps no other reviewed lesion, with Dice >= `review.same_lesion_dice` between the two,
  was *confirmed*; every other reviewed lesion (redrawn, split, merged) was *edited*;
- Dice of the model's and the reviewed lesion voxels (all lesion voxels of the scan; NaN when
  both are empty), and the total volume of each (the sums of their lesion tables).
`review_table` writes tables/review.parquet: that row for every reviewed scan and, for every
other scan, `reviewed` false with the model's count and volume; where the radiologist stored more
than one review of a scan, the ones passed over (older) are listed with the reason.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cc3d
import numpy as np
import pandas as pd

from tumorburden import labels as L
from tumorburden import tables
from tumorburden.imaging.volume import load_nifti
from tumorburden.lesions.measure import DEFAULTS as MEASURE_DEFAULTS
from tumorburden.lesions.measure import organ_map_beside, read_organ_map, write_scan_lesions
from tumorburden.study import read_scans_table

log = logging.getLogger(__name__)

DEFAULTS = {
    "same_lesion_dice": 0.9,  # a reviewed lesion this close (Dice) to the model's one is confirmed, else edited
}


def _components(labels: np.ndarray, voxel_ml: float, s: dict) -> np.ndarray:
    """Lesion components numbered 1.., those under min_volume_ml set to 0."""
    cc = cc3d.connected_components(np.isin(labels, L.LESION_LABELS), connectivity=int(s["connectivity"]))
    counts = np.bincount(cc.ravel())
    small = np.flatnonzero(counts * voxel_ml < float(s["min_volume_ml"]))
    cc[np.isin(cc, small[small > 0])] = 0
    return cc


def compare_lesions(ai: np.ndarray, reviewed: np.ndarray, voxel_ml: float, settings: dict | None = None) -> dict:
    """Counts of confirmed / edited / added / removed lesions and the lesion Dice of two label maps."""
    s = {**MEASURE_DEFAULTS, **DEFAULTS, **(settings or {})}
    a, r = _components(ai, voxel_ml, s), _components(reviewed, voxel_ml, s)
    a_ids, r_ids = set(np.unique(a)) - {0}, set(np.unique(r)) - {0}
    both = (a > 0) & (r > 0)
    pairs, overlap = np.unique(np.stack([a[both], r[both]]), axis=1, return_counts=True)
    partners_of_r: dict[int, set[int]] = {}
    partners_of_a: dict[int, set[int]] = {}
    shared = {}
    for (ai_id, r_id), n in zip(pairs.T.tolist(), overlap.tolist()):
        partners_of_r.setdefault(r_id, set()).add(ai_id)
        partners_of_a.setdefault(ai_id, set()).add(r_id)
        shared[ai_id, r_id] = n
    a_size, r_size = np.bincount(a.ravel()), np.bincount(r.ravel())
    confirmed = edited = 0
    for r_id in r_ids:
        partners = partners_of_r.get(r_id, set())
        if len(partners) == 1:
            (ai_id,) = partners
            dice = 2.0 * shared[ai_id, r_id] / (a_size[ai_id] + r_size[r_id])
            if partners_of_a[ai_id] == {r_id} and dice >= float(s["same_lesion_dice"]):
                confirmed += 1
                continue
        if partners:
            edited += 1
    ai_mask, r_mask = np.isin(ai, L.LESION_LABELS), np.isin(reviewed, L.LESION_LABELS)
    total = int(ai_mask.sum()) + int(r_mask.sum())
    return {
        "lesions_confirmed": confirmed,
        "lesions_edited": edited,
        "lesions_added": len(r_ids - set(partners_of_r)),
        "lesions_removed": len(a_ids - set(partners_of_a)),
        "dice": 2.0 * int((ai_mask & r_mask).sum()) / total if total else float("nan"),
    }


def measure_review(image: Path, ai_segmentation: Path, reviewed_segmentation: Path, ai_lesions: Path,
                   patient_id: str, scan_id: str, review_kind: str, lesions_out: Path, agreement_out: Path,
                   settings: dict | None = None) -> pd.DataFrame:
    """Measure the reviewed label map of a scan and write its row of the review table."""
    s = {**MEASURE_DEFAULTS, **DEFAULTS, **(settings or {})}
    img = load_nifti(image, dtype=np.float32)
    ai = load_nifti(ai_segmentation)
    reviewed = load_nifti(reviewed_segmentation)
    for seg, path in ((ai, ai_segmentation), (reviewed, reviewed_segmentation)):
        if not img.same_grid(seg):
            raise ValueError(f"{path}: grid {seg.shape} does not match the image {image} grid {img.shape}")
    reviewed_labels = np.asarray(reviewed.array).astype(np.uint8, copy=False)
    # the organ map the model's segmentation came with gives the reviewed lesions their sites too
    organ_map = read_organ_map(organ_map_beside(ai_segmentation), img, image)
    lesions = write_scan_lesions(img, reviewed_labels, patient_id, scan_id, lesions_out, s, organs=organ_map)
    model = tables.read(ai_lesions, "scan_lesions")
    row = {
        "patient_id": patient_id,
        "scan_id": scan_id,
        "reviewed": True,
        "review_kind": review_kind,
        "ai_n_lesions": len(model),
        "reviewed_n_lesions": len(lesions),
        **compare_lesions(np.asarray(ai.array).astype(np.uint8, copy=False), reviewed_labels, img.voxel_ml, s),
        "ai_volume_ml": float(model["volume_ml"].sum()),
        "reviewed_volume_ml": float(lesions["volume_ml"].sum()),
    }
    row["volume_difference_ml"] = row["reviewed_volume_ml"] - row["ai_volume_ml"]
    # the other reviews of the scan, passed over, are known to the study-level table (review_table)
    row["reviews_passed_over"], row["passed_over"] = 0, ""
    table = pd.DataFrame([row])
    tables.write(table, agreement_out, "review")
    log.info("%s reviewed (%s): %d lesion(s) %.1f mL, the model's %d %.1f mL; confirmed %d, edited %d, added %d, "
             "removed %d, Dice %.3f", scan_id, review_kind, row["reviewed_n_lesions"], row["reviewed_volume_ml"],
             row["ai_n_lesions"], row["ai_volume_ml"], row["lesions_confirmed"], row["lesions_edited"],
             row["lesions_added"], row["lesions_removed"], row["dice"])
    return table


def review_table(scans_table: Path, ai_lesion_paths: list[Path], agreement_paths: list[Path], out: Path,
                 passed_over: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """tables/review.parquet (+ CSV): every scan of the study, reviewed or not. `passed_over`: scan_id ->
    the reviews of the scan that were not taken, each '<name>: <why>' (segment.review.choose_reviews)."""
    passed_over = passed_over or {}
    scans = read_scans_table(scans_table)[["patient_id", "scan_id", "days"]]
    reviewed = {}
    for path in agreement_paths:
        row = tables.read(path, "review")
        reviewed[str(row["scan_id"].iloc[0])] = row
    model = {}
    for path in ai_lesion_paths:
        path = Path(path)
        table = tables.read(path, "scan_lesions")
        scan_id = str(table["scan_id"].iloc[0]) if len(table) else path.parent.name
        model[scan_id] = table
    unknown = sorted(set(reviewed) - set(scans["scan_id"]))
    if unknown:
        raise ValueError(f"reviews of scans not in {scans_table}: {', '.join(unknown)}")
    orphans = sorted(set(passed_over) - set(reviewed))
    if orphans:  # a passed-over review implies one taken
        raise ValueError(f"passed-over reviews of scans without a review taken: {', '.join(orphans)}")
    rows = []
    for scan in scans.sort_values(["patient_id", "days", "scan_id"], kind="stable").itertuples():
        if scan.scan_id in reviewed:
            rows.append(reviewed[scan.scan_id].assign(days=scan.days))
            continue
        if scan.scan_id not in model:
            raise ValueError(f"scan {scan.scan_id}: no lesion table among the model's measurements")
        lesions = model[scan.scan_id]
        rows.append(pd.DataFrame([{
            "patient_id": scan.patient_id, "scan_id": scan.scan_id, "days": scan.days, "reviewed": False,
            "review_kind": "none", "ai_n_lesions": len(lesions), "ai_volume_ml": float(lesions["volume_ml"].sum()),
        }]))
    result = pd.concat(rows, ignore_index=True) if rows else tables.empty("review")
    result["reviews_passed_over"] = [len(passed_over.get(s, [])) for s in result["scan_id"]]
    result["passed_over"] = ["; ".join(passed_over.get(s, [])) for s in result["scan_id"]]
    for col, kind in tables.SCHEMAS["review"].items():
        if col not in result:
            result[col] = pd.Series(dtype="float64" if kind == "float" else "Int64" if kind == "int" else object)
    tables.write(result, out, "review", csv=True)
    n = int(result["reviewed"].sum()) if len(result) else 0
    log.info("%d of %d scan(s) reviewed", n, len(result))
    for scan_id, items in sorted(passed_over.items()):
        log.info("scan %s: %d older review(s) passed over: %s", scan_id, len(items), "; ".join(items))
    return result
