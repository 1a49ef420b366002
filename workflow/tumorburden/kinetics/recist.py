"""RECIST 1.1 emulated on the measured lesions: target selection, sum of diameters, response.

Target lesions (Eisenhauer et al., Eur J Cancer 2009; RECIST 1.1 sections 3.1-3.3, 4.3):

- chosen once, at the patient's baseline scan, among the lesions present there;
- measurable: a non-nodal lesion with longest diameter >= ``min_diameter_mm`` (10 mm),
  a lymph node (``organ == "node"``) with short axis >= ``min_node_short_axis_mm`` (15 mm);
- largest first (nodes ranked by short axis, other lesions by longest diameter; ties by
  ``track_id`` so the choice is reproducible), at most ``max_targets`` (5) in all and
  ``max_per_organ`` (2) per organ, all lymph nodes counting as one organ;
- the sum of diameters (SLD) at any scan adds the targets' longest diameters, short axes for
  nodes; a target that has disappeared (or has no row at that scan) contributes 0 mm.

Non-target lesions: every other lesion present at the baseline scan (measurable ones over the
caps, and the non-measurable). Their track volumes are followed; "unequivocal progression" of
non-target disease, which RECIST leaves to the reader, is emulated as the non-target volume
rising at least ``nontarget_pd_pct`` (+73 %, the volume of +20 % in diameter) and at least
``nontarget_pd_abs_ml`` above its nadir. Non-target lesions are gone when every non-nodal one
has disappeared and every nodal one has a short axis < 10 mm.

Timepoint response of a follow-up scan (RECIST 1.1 tables 1 and 2):

- PD: SLD >= nadir x (1 + 20 %) and SLD - nadir >= 5 mm, where the nadir is the smallest SLD
  on study before this scan, baseline included; or a new lesion at this scan; or non-target PD;
- CR: every non-nodal target has disappeared and every nodal target has a short axis < 10 mm,
  and the non-target lesions are gone;
- PR: SLD <= baseline SLD x (1 - 30 %), or the targets are gone while non-target lesions remain;
- SD otherwise.
Without a target lesion at baseline (non-measurable disease only, or none) a follow-up is PD
(new lesion or non-target PD), CR (non-target lesions existed and are gone) or NE (RECIST's
"non-CR/non-PD", which has no place among CR/PR/SD/PD/NE).

Best overall response (BOR) is the best timepoint response up to and including the first PD,
ranked CR > PR > SD > PD, NE timepoints skipped; it is NE when the patient has no follow-up
scan or every timepoint is NE.
Simplifications, documented: CR/PR need no confirmation scan and SD has no minimum duration.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NODE_ORGAN = "node"
NODAL_NORMAL_MM = 10.0  # a nodal target below this short axis counts as gone for CR
RANK = {"CR": 0, "PR": 1, "SD": 2, "PD": 3}


def present(lesions: pd.DataFrame) -> pd.DataFrame:
    """The lesions that exist at their scan (not the placeholder rows of disappeared tracks)."""
    keep = (lesions["status"] != "disappeared") & (lesions["volume_ml"] > 0)
    return lesions[keep]


def select_targets(
    baseline_lesions: pd.DataFrame,
    max_targets: int = 5,
    max_per_organ: int = 2,
    min_diameter_mm: float = 10.0,
    min_node_short_axis_mm: float = 15.0,
) -> pd.DataFrame:
    """Target lesions of one patient's baseline scan: track_id, organ, is_node, measure_mm."""
    cols = ["track_id", "organ", "is_node", "measure_mm"]
    lesions = present(baseline_lesions)
    if lesions.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(cols, ["int64", object, bool, float])})
    is_node = (lesions["organ"] == NODE_ORGAN).to_numpy()
    measure = np.where(is_node, lesions["short_axis_mm"], lesions["longest_diameter_mm"]).astype(float)
    cand = pd.DataFrame(
        {
            "track_id": lesions["track_id"].astype("int64").to_numpy(),
            "organ": lesions["organ"].astype(str).to_numpy(),
            "is_node": is_node,
            "measure_mm": measure,
        }
    )
    threshold = np.where(cand["is_node"], min_node_short_axis_mm, min_diameter_mm)
    cand = cand[cand["measure_mm"] >= threshold]
    cand = cand.sort_values(["measure_mm", "track_id"], ascending=[False, True], kind="mergesort")
    chosen, per_organ = [], {}
    for row in cand.itertuples(index=False):
        if len(chosen) >= max_targets:
            break
        if per_organ.get(row.organ, 0) >= max_per_organ:
            continue
        per_organ[row.organ] = per_organ.get(row.organ, 0) + 1
        chosen.append(row)
    return pd.DataFrame(chosen, columns=cols).astype({"track_id": "int64", "is_node": bool, "measure_mm": float})


def target_sums(patient_lesions: pd.DataFrame, targets: pd.DataFrame, scan_ids) -> pd.DataFrame:
    """Per scan: sld_mm (sum of the targets' diameters) and targets_gone (the CR condition).

    sld_mm is NaN for every scan when the patient has no target lesion.
    """
    scan_ids = list(scan_ids)
    if targets.empty:
        return pd.DataFrame({"scan_id": scan_ids, "sld_mm": np.nan, "targets_gone": pd.NA},
                            ).astype({"targets_gone": "boolean"})
    rows = present(patient_lesions)
    rows = rows[rows["track_id"].isin(targets["track_id"])]
    node_tracks = set(targets.loc[targets["is_node"], "track_id"])
    is_node = rows["track_id"].isin(node_tracks).to_numpy()
    measure = np.where(is_node, rows["short_axis_mm"], rows["longest_diameter_mm"]).astype(float)
    per = pd.DataFrame({"scan_id": rows["scan_id"].to_numpy(), "track_id": rows["track_id"].to_numpy(),
                        "measure": measure})
    # A track split into several components at one scan: its diameters add up.
    per = per.groupby(["scan_id", "track_id"], sort=False)["measure"].sum().reset_index()
    per["is_node"] = per["track_id"].isin(node_tracks)
    per["still_disease"] = np.where(per["is_node"], per["measure"] >= NODAL_NORMAL_MM, per["measure"] > 0)
    sld = per.groupby("scan_id")["measure"].sum()
    disease = per.groupby("scan_id")["still_disease"].any()
    out = pd.DataFrame({"scan_id": scan_ids})
    out["sld_mm"] = out["scan_id"].map(sld).fillna(0.0).astype(float)
    still = disease.reindex(out["scan_id"], fill_value=False).to_numpy(dtype=bool)
    out["targets_gone"] = pd.array(~still, dtype="boolean")
    return out


def nontarget_status(patient_lesions: pd.DataFrame, targets: pd.DataFrame, baseline_scan_id,
                     scan_ids) -> pd.DataFrame:
    """Per scan: nontarget_volume_ml (tracks present at baseline that are not targets) and
    nontarget_gone (non-nodal ones gone, nodal ones < 10 mm short axis); NA without any."""
    scan_ids = list(scan_ids)
    base = present(patient_lesions[patient_lesions["scan_id"] == baseline_scan_id])
    tracks = set(base["track_id"].astype("int64")) - set(targets["track_id"].astype("int64"))
    if not tracks:
        return pd.DataFrame({"scan_id": scan_ids, "nontarget_volume_ml": np.nan,
                             "nontarget_gone": pd.array([pd.NA] * len(scan_ids), dtype="boolean")})
    node_tracks = set(base.loc[base["organ"] == NODE_ORGAN, "track_id"].astype("int64"))
    rows = present(patient_lesions)
    rows = rows[rows["track_id"].isin(tracks)]
    is_node = rows["track_id"].isin(node_tracks).to_numpy()
    disease = np.where(is_node, rows["short_axis_mm"] >= NODAL_NORMAL_MM, rows["volume_ml"] > 0)
    per = pd.DataFrame({"scan_id": rows["scan_id"].to_numpy(), "volume": rows["volume_ml"].to_numpy(float),
                        "disease": disease})
    out = pd.DataFrame({"scan_id": scan_ids})
    out["nontarget_volume_ml"] = out["scan_id"].map(per.groupby("scan_id")["volume"].sum()).fillna(0.0)
    still = out["scan_id"].map(per.groupby("scan_id")["disease"].any()).astype("boolean").fillna(False)
    out["nontarget_gone"] = pd.array(~still.to_numpy(dtype=bool), dtype="boolean")
    return out


def progressed(value: float, nadir: float, pct: float, minimum: float) -> bool:
    """value at least pct % and at least `minimum` above the nadir (RECIST's PD rule)."""
    return bool(value >= nadir * (1 + pct / 100.0) and value - nadir >= minimum)


def timepoint_responses(
    sld_mm,
    new_lesion,
    targets_gone,
    pr_pct: float = -30.0,
    pd_pct: float = 20.0,
    pd_abs_mm: float = 5.0,
    nontarget_volume_ml=None,
    nontarget_gone=None,
    nontarget_pd_pct: float = 73.0,
    nontarget_pd_abs_ml: float = 1.0,
) -> list[str]:
    """Responses of the follow-ups; element 0 of each series is the baseline scan.

    sld_mm is NaN (or the patient has no target) when there was no target lesion at baseline;
    nontarget_* are None / NaN when there was no non-target lesion.
    """
    sld = np.asarray(sld_mm, dtype=float)
    n = len(sld)
    new = np.asarray(new_lesion, dtype=bool)
    gone = np.asarray(pd.array(targets_gone, dtype="boolean").fillna(False), dtype=bool)
    ntv = np.full(n, np.nan) if nontarget_volume_ml is None else np.asarray(nontarget_volume_ml, dtype=float)
    nt_gone = np.zeros(n, bool) if nontarget_gone is None else \
        np.asarray(pd.array(nontarget_gone, dtype="boolean").fillna(False), dtype=bool)
    has_targets = np.isfinite(sld[0]) and sld[0] > 0
    has_nontargets = np.isfinite(ntv[0])
    base = sld[0]
    out = []
    for i in range(1, n):
        nt_pd = has_nontargets and progressed(ntv[i], np.nanmin(ntv[:i]), nontarget_pd_pct, nontarget_pd_abs_ml)
        nt_cr = (not has_nontargets) or nt_gone[i]
        if new[i] or nt_pd:
            out.append("PD")
        elif not has_targets:
            out.append("CR" if has_nontargets and nt_gone[i] else "NE")
        elif progressed(sld[i], np.min(sld[:i]), pd_pct, pd_abs_mm):
            out.append("PD")
        elif gone[i]:
            out.append("CR" if nt_cr else "PR")
        elif 100.0 * (sld[i] - base) / base <= pr_pct:
            out.append("PR")
        else:
            out.append("SD")
    return out


def volumetric_responses(volume_ml, new_lesion, pr_pct: float = -65.0, pd_pct: float = 73.0,
                         pd_abs_ml: float = 0.5, new_lesion_pd: bool = True) -> list[str]:
    """RECIST's rules on the total volume: CR at 0 mL, PR at <= pr_pct vs baseline, PD at
    >= pd_pct and >= pd_abs_ml above the nadir (or a new lesion), SD otherwise; NE without
    a baseline volume (unless a new lesion appears)."""
    v = np.asarray(volume_ml, dtype=float)
    new = np.asarray(new_lesion, dtype=bool)
    out = []
    for i in range(1, len(v)):
        if (new_lesion_pd and new[i]) or (v[0] > 0 and progressed(v[i], np.min(v[:i]), pd_pct, pd_abs_ml)):
            out.append("PD")
        elif v[0] <= 0:
            out.append("NE")
        elif v[i] <= 0:
            out.append("CR")
        elif 100.0 * (v[i] - v[0]) / v[0] <= pr_pct:
            out.append("PR")
        else:
            out.append("SD")
    return out


def best_overall_response(responses: list[str]) -> tuple[str, int | None]:
    """(BOR, index of the first PD among the responses or None); 'NE' when nothing is evaluable."""
    first_pd = responses.index("PD") if "PD" in responses else None
    considered = responses if first_pd is None else responses[: first_pd + 1]
    considered = [r for r in considered if r != "NE"]
    if not considered:
        return "NE", None
    return min(considered, key=RANK.__getitem__), first_pd
