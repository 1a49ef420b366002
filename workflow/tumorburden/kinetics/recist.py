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

Timepoint response of a follow-up scan, from the SLD series (targets only):

- CR: every non-nodal target has disappeared and every nodal target has a short axis < 10 mm;
- PD: SLD >= nadir x (1 + 20 %) and SLD - nadir >= 5 mm, where the nadir is the smallest SLD
  on study before this scan, baseline included; or any new lesion at this scan;
- PR: SLD <= baseline SLD x (1 - 30 %);
- SD otherwise.

Best overall response (BOR) is the best timepoint response up to and including the first PD,
ranked CR > PR > SD > PD; it is NE when the patient has no follow-up scan or no target lesion.
Simplifications, documented: non-target lesions are not assessed (only through new lesions),
CR/PR need no confirmation scan and SD has no minimum duration.
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


def timepoint_responses(
    sld_mm,
    new_lesion,
    targets_gone,
    pr_pct: float = -30.0,
    pd_pct: float = 20.0,
    pd_abs_mm: float = 5.0,
) -> list[str]:
    """Responses of the follow-ups; element 0 of each series is the baseline scan."""
    sld = np.asarray(sld_mm, dtype=float)
    new = np.asarray(new_lesion, dtype=bool)
    gone = np.asarray(targets_gone, dtype=bool)
    base = sld[0]
    out = []
    for i in range(1, len(sld)):
        nadir = np.min(sld[:i])
        if new[i] or (sld[i] >= nadir * (1 + pd_pct / 100.0) and sld[i] - nadir >= pd_abs_mm):
            out.append("PD")
        elif gone[i]:
            out.append("CR")
        elif base > 0 and 100.0 * (sld[i] - base) / base <= pr_pct:
            out.append("PR")
        else:
            out.append("SD")
    return out


def best_overall_response(responses: list[str]) -> tuple[str, int | None]:
    """(BOR, index of the first PD among the responses or None); 'NE' for an empty list."""
    if not responses:
        return "NE", None
    first_pd = responses.index("PD") if "PD" in responses else None
    considered = responses if first_pd is None else responses[: first_pd + 1]
    return min(considered, key=RANK.__getitem__), first_pd
