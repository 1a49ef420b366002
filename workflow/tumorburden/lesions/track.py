"""Match lesions across each patient's scans: tables/lesions.parquet (+ CSV twin).

Per patient, scans in order of `days` (then scan_id):
- the first scan's lesions start tracks (status `baseline`);
- each later scan's lesions are matched to the patient's tracks, each track known by the
  centroid and volume where it was last seen, with scipy's linear_sum_assignment on
  centroid distance (+ `size_weight_mm` x |ln volume ratio| to prefer a lesion of similar
  size); a pair farther apart than `match_distance_mm` is never a match;
- matched lesions continue their track (`persisting`), unmatched lesions start a track
  (`new`), and a track without a lesion at a scan gets a row with status `disappeared`,
  volume_ml 0, diameters 0 and lesion <NA> (centroid and organ as last seen). A
  disappeared track can be picked up again later (`persisting`).
track_id is unique within a patient (1, 2, ... in order of appearance).

Matching is by position in scanner coordinates, so it assumes the patient lies about the
same way in every scan. Registration-based matching (rigid/deformable alignment of the
follow-up scan to the baseline before matching) comes later.

The scan of a per-scan lesion table is its `scan_id` column, or, for a table without
rows, the name of the folder that holds it (results/<name>/scans/<scan_id>/lesions.parquet)
or else the file's stem.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from tumorburden import tables
from tumorburden.study import read_scans_table

log = logging.getLogger(__name__)

DEFAULTS = {
    "match_distance_mm": 20.0,  # farthest centroid distance still called the same lesion
    "size_weight_mm": 5.0,  # cost in mm per unit of |ln(volume ratio)|
}

CENTROID = ["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]


def _scan_of(path: Path, table: pd.DataFrame, known: set[str]) -> str:
    ids = table["scan_id"].dropna().unique()
    if len(ids) > 1:
        raise ValueError(f"{path}: lesions of several scans in one per-scan table ({', '.join(map(str, ids[:3]))})")
    if len(ids) == 1:
        return str(ids[0])
    for candidate in (path.parent.name, path.stem):
        if candidate in known:
            return candidate
    raise ValueError(f"{path}: empty lesion table and neither its folder nor its name is a scan_id of the scans table")


def track_study(scans_table: Path, lesion_paths: list[Path], out: Path, settings: dict | None = None) -> pd.DataFrame:
    s = {**DEFAULTS, **(settings or {})}
    scans = read_scans_table(scans_table)[["patient_id", "scan_id", "days"]]
    known = set(scans["scan_id"])
    per_scan = {}
    for path in lesion_paths:
        path = Path(path)
        table = tables.read(path, "scan_lesions")
        scan_id = _scan_of(path, table, known)
        if scan_id not in known:
            raise ValueError(f"{path}: scan {scan_id!r} is not in the scans table {scans_table}")
        if scan_id in per_scan:
            raise ValueError(f"{path}: a second lesion table for scan {scan_id!r}")
        per_scan[scan_id] = table
    without = sorted(known - set(per_scan))
    if without:
        log.warning("%d scan(s) of %s have no lesion table and are not tracked: %s", len(without), scans_table,
                    ", ".join(without[:10]))
    scans = scans[scans["scan_id"].isin(per_scan)]
    parts = []
    for patient_id, visits in scans.groupby("patient_id", sort=True):
        visits = visits.sort_values(["days", "scan_id"], kind="stable")
        parts.append(track_patient([(r.scan_id, r.days, per_scan[r.scan_id]) for r in visits.itertuples()], s))
    columns = list(tables.SCHEMAS["lesions"])
    result = pd.concat(parts, ignore_index=True) if parts else tables.empty("lesions")
    if result.empty:
        result = tables.empty("lesions")
    result = result[columns + [c for c in result.columns if c not in columns]]
    tables.write(result, out, "lesions", csv=True)
    log.info("%d patient(s), %d lesion rows, %d tracks", len(parts), len(result),
             result.groupby("patient_id")["track_id"].nunique().sum() if len(result) else 0)
    return result


def track_patient(visits: list[tuple[str, float, pd.DataFrame]], s: dict) -> pd.DataFrame:
    """visits: (scan_id, days, lesion table) in time order -> rows of the lesions table."""
    cutoff = float(s["match_distance_mm"])
    tracks: dict[int, dict] = {}  # track_id -> last seen row
    rows = []
    for n, (scan_id, days, table) in enumerate(visits):
        table = table.sort_values("lesion", kind="stable").reset_index(drop=True)
        ids = sorted(tracks)
        assigned = np.full(len(table), -1)
        if n > 0 and ids and len(table):
            here = table[CENTROID].to_numpy(float)
            there = np.array([[tracks[t][c] for c in CENTROID] for t in ids])
            dist = np.linalg.norm(here[:, None, :] - there[None, :, :], axis=-1)
            vol_here = np.maximum(table["volume_ml"].to_numpy(float), 1e-6)
            vol_there = np.maximum(np.array([tracks[t]["volume_ml"] for t in ids]), 1e-6)
            cost = dist + float(s["size_weight_mm"]) * np.abs(np.log(vol_here[:, None] / vol_there[None, :]))
            cost = np.where(dist <= cutoff, cost, 1e9)
            li, ti = linear_sum_assignment(cost)
            ok = dist[li, ti] <= cutoff
            assigned[li[ok]] = np.asarray(ids)[ti[ok]]
        matched = set(assigned[assigned >= 0].tolist())
        for i, lesion in table.iterrows():
            row = lesion.to_dict()
            if assigned[i] >= 0:
                track_id, status = int(assigned[i]), "persisting"
            else:
                track_id = max(tracks, default=0) + 1
                status = "baseline" if n == 0 else "new"
            row.update(scan_id=scan_id, days=days, track_id=track_id, status=status)
            tracks[track_id] = row
            rows.append(row)
        for track_id in ids:
            if track_id in matched:
                continue
            last = tracks[track_id]
            rows.append({
                **{c: last[c] for c in CENTROID},
                "patient_id": last["patient_id"], "scan_id": scan_id, "days": days, "lesion": pd.NA,
                "track_id": track_id, "status": "disappeared", "volume_ml": 0.0,
                "longest_diameter_mm": 0.0, "short_axis_mm": 0.0, "mean_hu": np.nan, "organ": last["organ"],
            })
    if not rows:
        return tables.empty("lesions")
    out = pd.DataFrame(rows)
    out["lesion"] = out["lesion"].astype("Int64")
    return out.sort_values(["days", "scan_id", "track_id"], kind="stable").reset_index(drop=True)
