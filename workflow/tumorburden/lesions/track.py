"""Match lesions across each patient's scans: tables/lesions.parquet (+ CSV twin).

Per patient, scans in order of `days` (then scan_id):
- every centroid is first mapped into the patient's reference scan (its baseline, see
  ``register``) with the scan's rigid transform (scans/<scan_id>/to_reference.json; the
  identity when no transform is given): ``aligned_x/y/z_mm``. The measured centroids stay in
  each scan's own patient coordinates;
- each lesion has an equivalent sphere, radius (3 V / 4 pi)^(1/3);
- each scan's lesions are matched to the patient's tracks, each track known by the aligned
  centroid and volume where it was last seen, with scipy's linear_sum_assignment on centroid
  distance + ``size_weight_mm`` x |ln volume ratio|. A pair may match when the centroids are
  at most ``match_distance_mm`` apart *or* overlap (one centroid inside the other's
  equivalent sphere, so a large lesion that grows lopsided keeps its track). Leaving a lesion
  or a track unmatched costs max(``match_distance_mm``, its radius), so a poor pair is not
  forced to avoid a forbidden one;
- a matched lesion continues its track (`persisting`). A track without a lesion at a scan gets
  a row with status `disappeared`, volume_ml 0, diameters 0 and lesion <NA> (centroid and
  organ as last seen); it can be picked up again later (`persisting`): a lesion missed at
  one visit keeps its track;
- splits: an unmatched lesion whose centroid lies inside the equivalent sphere of a track
  matched at this scan (as last seen) is a fragment of it: same track_id, `persisting`,
  event `split` (RECIST adds the diameters of fragments);
- merges: a track seen at the previous scan and unmatched now, whose last centroid lies inside
  the equivalent sphere of a lesion matched to another track, has merged into it: its row is
  `disappeared` with event `merged` and linked_track_id the track it merged into; a merged
  track is closed (never picked up again);
- any other unmatched lesion starts a track: `baseline` at or before the reference scan,
  `new` after it.
track_id is unique within a patient (1, 2, ... in order of appearance).

The scan of a per-scan lesion table is its `scan_id` column, or, for a table without
rows, the name of the folder that holds it (results/<name>/scans/<scan_id>/lesions.parquet, or
.../<scan_id>/review/lesions.parquet for a reviewed scan) or else the file's stem.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from tumorburden import tables
from tumorburden.baseline import reference_scans
from tumorburden.lesions.register import DEFAULTS as REGISTER_DEFAULTS
from tumorburden.lesions.register import read_transform
from tumorburden.study import read_scans_table

log = logging.getLogger(__name__)

DEFAULTS = {
    "match_distance_mm": 20.0,  # farthest centroid distance still called the same lesion
    "size_weight_mm": 5.0,  # cost in mm per unit of |ln(volume ratio)|
    **REGISTER_DEFAULTS,
}

CENTROID = ["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]


def _scan_of(path: Path, table: pd.DataFrame, known: set[str]) -> str:
    ids = table["scan_id"].dropna().unique()
    if len(ids) > 1:
        raise ValueError(f"{path}: lesions of several scans in one per-scan table ({', '.join(map(str, ids[:3]))})")
    if len(ids) == 1:
        return str(ids[0])
    # scans/<scan_id>/lesions.parquet, scans/<scan_id>/review/lesions.parquet (a reviewed scan's)
    folder = path.parent.parent.name if path.parent.name == "review" else path.parent.name
    for candidate in (folder, path.stem):
        if candidate in known:
            return candidate
    raise ValueError(f"{path}: empty lesion table and neither its folder nor its name is a scan_id of the scans table")


def _transforms(paths, known: set[str]) -> dict[str, np.ndarray]:
    matrices = {}
    for path in paths or []:
        scan_id, matrix, status = read_transform(Path(path))
        if scan_id not in known:
            raise ValueError(f"{path}: scan {scan_id!r} is not in the scans table")
        if status and not status.startswith(("ok", "reference", "registration off")):
            log.warning("%s: registration %s", scan_id, status)
        matrices[scan_id] = matrix
    return matrices


def track_study(scans_table: Path, lesion_paths: list[Path], out: Path, settings: dict | None = None,
                transform_paths: list[Path] | None = None) -> pd.DataFrame:
    s = {**DEFAULTS, **(settings or {})}
    scans = read_scans_table(scans_table)[["patient_id", "scan_id", "days"]]
    known = set(scans["scan_id"])
    matrices = _transforms(transform_paths, known)
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
    unaligned = sorted(set(per_scan) - set(matrices))
    if transform_paths and unaligned:
        log.warning("%d scan(s) without a registration file are matched in scanner coordinates: %s",
                    len(unaligned), ", ".join(unaligned[:10]))
    scans = scans[scans["scan_id"].isin(per_scan)]
    reference = reference_scans(scans)
    parts = []
    for patient_id, visits in scans.groupby("patient_id", sort=True):
        visits = visits.sort_values(["days", "scan_id"], kind="stable")
        parts.append(track_patient(
            [(r.scan_id, r.days, per_scan[r.scan_id], matrices.get(r.scan_id)) for r in visits.itertuples()], s,
            reference_scan=reference.get(patient_id)))
    columns = list(tables.SCHEMAS["lesions"])
    result = pd.concat(parts, ignore_index=True) if parts else tables.empty("lesions")
    if result.empty:
        result = tables.empty("lesions")
        for col in EXTRA_COLUMNS:
            result[col] = pd.Series(dtype="Int64" if col == "linked_track_id" else object if col == "event"
                                    else "float64")
    result = result[columns + [c for c in result.columns if c not in columns]]
    tables.write(result, out, "lesions", csv=True)
    n_events = result["event"].value_counts().to_dict() if "event" in result else {}
    log.info("%d patient(s), %d lesion rows, %d tracks, %d split fragment(s), %d merge(s)", len(parts), len(result),
             result.groupby("patient_id")["track_id"].nunique().sum() if len(result) else 0,
             n_events.get("split", 0), n_events.get("merged", 0))
    return result


ALIGNED = ["aligned_x_mm", "aligned_y_mm", "aligned_z_mm"]
EXTRA_COLUMNS = [*ALIGNED, "event", "linked_track_id"]


def sphere_radius_mm(volume_ml) -> np.ndarray:
    return np.cbrt(3.0 * np.maximum(np.asarray(volume_ml, dtype=float), 0.0) * 1000.0 / (4.0 * np.pi))


def _assign(cost: np.ndarray, leave_lesion: np.ndarray, leave_track: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimal matching where leaving lesion i unmatched costs leave_lesion[i] and track j
    leave_track[j]; inf = never a match. The "leave" options matter: without them the solver
    must match as many as it can and takes a poor pair to avoid a forbidden one."""
    n, m = cost.shape
    big = 1e12
    full = np.full((n + m, m + n), big)
    full[:n, :m] = np.where(np.isfinite(cost), cost, big)
    full[np.arange(n), m + np.arange(n)] = leave_lesion
    full[n + np.arange(m), np.arange(m)] = leave_track
    full[n:, m:] = 0.0
    rows, cols = linear_sum_assignment(full)
    keep = (rows < n) & (cols < m) & np.isfinite(cost[np.minimum(rows, n - 1), np.minimum(cols, m - 1)])
    return rows[keep], cols[keep]


def track_patient(visits: list[tuple], s: dict, reference_scan: str | None = None) -> pd.DataFrame:
    """visits: (scan_id, days, lesion table[, 4x4 matrix to the reference or None]) in time
    order -> rows of the lesions table (with EXTRA_COLUMNS)."""
    s = {**DEFAULTS, **s}
    cutoff = float(s["match_distance_mm"])
    ids_in_order = [v[0] for v in visits]
    ref_pos = ids_in_order.index(reference_scan) if reference_scan in ids_in_order else 0
    tracks: dict[int, dict] = {}  # track_id -> {"xyz", "volume", "radius", "row", "seen", "closed"}
    rows = []
    for n, visit in enumerate(visits):
        scan_id, days, table = visit[:3]
        matrix = visit[3] if len(visit) > 3 and visit[3] is not None else np.eye(4)
        table = table.sort_values("lesion", kind="stable").reset_index(drop=True)
        here = table[CENTROID].to_numpy(float) @ matrix[:3, :3].T + matrix[:3, 3] if len(table) else np.zeros((0, 3))
        vol_here = table["volume_ml"].to_numpy(float)
        r_here = sphere_radius_mm(vol_here)
        ids = sorted(t for t in tracks if not tracks[t]["closed"])
        assigned = np.full(len(table), -1)
        event = [""] * len(table)
        if ids and len(table):
            there = np.array([tracks[t]["xyz"] for t in ids])
            r_there = np.array([tracks[t]["radius"] for t in ids])
            vol_there = np.array([tracks[t]["volume"] for t in ids])
            dist = np.linalg.norm(here[:, None, :] - there[None, :, :], axis=-1)
            ok = (dist <= cutoff) | (dist <= np.maximum(r_here[:, None], r_there[None, :]))
            cost = dist + float(s["size_weight_mm"]) * np.abs(
                np.log(np.maximum(vol_here[:, None], 1e-6) / np.maximum(vol_there[None, :], 1e-6)))
            li, ti = _assign(np.where(ok, cost, np.inf), np.maximum(cutoff, r_here), np.maximum(cutoff, r_there))
            assigned[li] = np.asarray(ids)[ti]
            # fragments: inside the sphere (as last seen) of a track matched at this scan
            matched_now = set(assigned[assigned >= 0].tolist())
            for i in np.flatnonzero(assigned < 0):
                parents = [(dist[i, k], t) for k, t in enumerate(ids)
                           if t in matched_now and dist[i, k] <= r_there[k]]
                if parents:
                    assigned[i] = min(parents)[1]
                    event[i] = "split"
        matched = set(assigned[assigned >= 0].tolist())
        merged_into = {}
        for t in ids:
            if t in matched or tracks[t]["seen"] != n - 1:
                continue
            hosts = [(np.linalg.norm(here[i] - tracks[t]["xyz"]), int(assigned[i])) for i in range(len(table))
                     if assigned[i] >= 0 and assigned[i] != t
                     and np.linalg.norm(here[i] - tracks[t]["xyz"]) <= r_here[i]]
            if hosts:
                merged_into[t] = min(hosts)[1]
        seen_now: dict[int, list[int]] = {}
        for i, lesion in table.iterrows():
            row = lesion.to_dict()
            if assigned[i] >= 0:
                track_id, status = int(assigned[i]), "persisting"
            else:
                track_id = max(tracks, default=0) + 1
                status = "baseline" if n <= ref_pos else "new"
                tracks[track_id] = {"closed": False}
            row.update(scan_id=scan_id, days=days, track_id=track_id, status=status, event=event[i],
                       linked_track_id=pd.NA, **dict(zip(ALIGNED, here[i])))
            seen_now.setdefault(track_id, []).append(i)
            rows.append(row)
        for track_id, members in seen_now.items():
            w = np.maximum(vol_here[members], 1e-9)
            total = float(vol_here[members].sum())
            tracks[track_id].update(xyz=(here[members] * w[:, None]).sum(0) / w.sum(), volume=total,
                                    radius=float(sphere_radius_mm(total)), seen=n,
                                    row=rows[-len(table) + members[0]] if len(table) else None)
        for track_id in sorted(tracks):
            if track_id in seen_now:
                continue
            last = tracks[track_id]["row"]
            is_merge = track_id in merged_into
            rows.append({
                **{c: last[c] for c in CENTROID}, **{c: last[c] for c in ALIGNED},
                "patient_id": last["patient_id"], "scan_id": scan_id, "days": days, "lesion": pd.NA,
                "track_id": track_id, "status": "disappeared", "volume_ml": 0.0,
                "longest_diameter_mm": 0.0, "short_axis_mm": 0.0, "mean_hu": np.nan, "organ": last["organ"],
                "event": "merged" if is_merge else "", "linked_track_id": merged_into.get(track_id, pd.NA),
            })
            if is_merge:
                tracks[track_id]["closed"] = True
    if not rows:
        out = tables.empty("lesions")
        for col in EXTRA_COLUMNS:
            out[col] = pd.Series(dtype="Int64" if col == "linked_track_id" else object if col == "event" else "float64")
        return out
    out = pd.DataFrame(rows)
    out["lesion"] = out["lesion"].astype("Int64")
    out["linked_track_id"] = out["linked_track_id"].astype("Int64")
    return out.sort_values(["days", "scan_id", "track_id", "lesion"], kind="stable").reset_index(drop=True)
