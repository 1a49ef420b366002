"""Tumour burden per scan: tables/burden.parquet (+ burden.csv).

One row per scan of scans.tsv, scans without any lesion included (burden 0):

- total_volume_ml: sum of volume_ml of the lesions present at the scan;
- n_lesions: lesions present (status baseline / persisting / new, volume > 0);
- n_new_lesions: lesions with status ``new``;
- sld_mm: RECIST 1.1 sum of diameters of the target lesions chosen at the patient's baseline
  scan (the last scan with days <= 0; none without one), see ``recist``;
  NaN when the patient has no measurable lesion at baseline;
- muscle_ml, sat_ml, vat_ml: body composition from the scan's tissue.parquet (NaN, with a
  warning, for a scan without one);
- pct_change_volume = 100 (V - V_B) / V_B, pct_change_sld likewise on sld_mm, against the
  patient's baseline scan B (NaN without a baseline scan or with nothing at baseline);
- recist_response: "pre-baseline" before B, "baseline" at B, then the RECIST 1.1 timepoint
  response CR / PR / SD / PD / NE (``recist``); NE for every scan of a patient without a
  baseline scan;
- volumetric_response: likewise with RECIST's rules on the total volume (PR <= -65 %,
  PD >= +73 % and >= ``volumetric_pd_abs_ml`` above the nadir, or a new lesion).

Extra columns: is_baseline (the scan used for target selection), n_target_lesions (the
patient's number of targets), targets_gone (the RECIST CR condition at this scan),
nontarget_volume_ml and nontarget_gone (the non-target lesions, see ``recist``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from tumorburden.study import read_scans_table
from tumorburden import tables
from tumorburden.baseline import baseline_scans
from tumorburden.kinetics import recist

log = logging.getLogger(__name__)

DEFAULTS = {
    "volumetric_pr_pct": -65.0,   # volumetric partial response: % change vs baseline at or below
    "volumetric_pd_pct": 73.0,    # volumetric progression: % increase vs nadir at or above ...
    "volumetric_pd_abs_ml": 0.5,  # ... and at least this many mL above the nadir (a 10 mm sphere)
    "volumetric_new_lesion_pd": True,  # a new lesion is volumetric progression, as in RECIST
    "recist_pr_pct": -30.0,       # RECIST PR: SLD change vs baseline at or below
    "recist_pd_pct": 20.0,        # RECIST PD: SLD increase vs nadir at or above ...
    "recist_pd_abs_mm": 5.0,      # ... and at least this many mm above the nadir
    "recist_nontarget_pd_pct": 73.0,   # non-target PD: their volume vs nadir at or above ...
    "recist_nontarget_pd_abs_ml": 1.0,  # ... and at least this many mL above it
    "recist_max_targets": 5,             # target lesions in all
    "recist_max_per_organ": 2,           # target lesions per organ (all nodes = one organ)
    "recist_min_diameter_mm": 10.0,      # measurable non-nodal lesion: longest diameter
    "recist_min_node_short_axis_mm": 15.0,  # measurable lymph node: short axis
}


def _read_tissue(paths) -> pd.DataFrame:
    frames = [tables.read(p, "scan_tissue") for p in paths]
    cols = ["patient_id", "scan_id", "muscle_ml", "sat_ml", "vat_ml"]
    tissue = pd.concat(frames, ignore_index=True)[cols] if frames else tables.empty("scan_tissue")[cols]
    dup = tissue.loc[tissue["scan_id"].duplicated(), "scan_id"].tolist()
    if dup:
        raise ValueError(f"tissue tables: scan {dup[0]} has more than one tissue row (pass one tissue.parquet per scan)")
    return tissue


def compute_burden(lesions: pd.DataFrame, tissue: pd.DataFrame, scans: pd.DataFrame,
                   settings: dict | None = None) -> pd.DataFrame:
    """The burden table (schema ``burden`` + extras) from frames; pure, no I/O."""
    s = {**DEFAULTS, **(settings or {})}
    known = set(scans["scan_id"])
    stray = sorted(set(lesions["scan_id"]) - known)
    if stray:
        raise ValueError(f"lesions table: scan {stray[0]} is not in scans.tsv (re-run tracking on this study's scans)")
    owner = scans.set_index("scan_id")["patient_id"]
    wrong = lesions[lesions["patient_id"].to_numpy() != owner.reindex(lesions["scan_id"]).to_numpy()]
    if len(wrong):
        r = wrong.iloc[0]
        raise ValueError(f"lesions table: scan {r.scan_id} is listed for patient {r.patient_id} but scans.tsv "
                         f"gives patient {owner[r.scan_id]} (re-run tracking on this study's scans)")

    live = recist.present(lesions)
    volume = live.groupby("scan_id")["volume_ml"].sum()
    count = live.groupby("scan_id").size()
    new = live[live["status"] == "new"].groupby("scan_id").size()

    out = scans.sort_values(["patient_id", "days", "scan_id"], kind="mergesort").reset_index(drop=True)
    out["total_volume_ml"] = out["scan_id"].map(volume).fillna(0.0).astype(float)
    out["n_lesions"] = out["scan_id"].map(count).fillna(0).astype("int64")
    out["n_new_lesions"] = out["scan_id"].map(new).fillna(0).astype("int64")

    base = baseline_scans(out)
    out["is_baseline"] = out["scan_id"].isin(set(base))
    by_patient = dict(tuple(lesions.groupby("patient_id", sort=False)))
    parts = []
    for pid, pscans in out.groupby("patient_id", sort=False):
        plesions = by_patient.get(pid, lesions.iloc[0:0])
        targets = recist.select_targets(
            plesions[plesions["scan_id"] == base.get(pid)],
            max_targets=int(s["recist_max_targets"]),
            max_per_organ=int(s["recist_max_per_organ"]),
            min_diameter_mm=float(s["recist_min_diameter_mm"]),
            min_node_short_axis_mm=float(s["recist_min_node_short_axis_mm"]),
        )
        sums = recist.target_sums(plesions, targets, pscans["scan_id"])
        sums["n_target_lesions"] = len(targets)
        if pid in base.index:
            nontargets = recist.nontarget_status(plesions, targets, base[pid], pscans["scan_id"])
        else:
            nontargets = pd.DataFrame({"scan_id": list(pscans["scan_id"]), "nontarget_volume_ml": np.nan,
                                       "nontarget_gone": pd.array([pd.NA] * len(pscans), dtype="boolean")})
        parts.append(sums.merge(nontargets, on="scan_id", validate="one_to_one"))
    sums = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["scan_id", "sld_mm", "targets_gone", "n_target_lesions", "nontarget_volume_ml", "nontarget_gone"])
    out = out.merge(sums, on="scan_id", how="left", validate="one_to_one")

    t = tissue.drop(columns="patient_id").set_index("scan_id")
    for col in ("muscle_ml", "sat_ml", "vat_ml"):
        out[col] = out["scan_id"].map(t[col]).astype(float)
    no_tissue = out.loc[out["muscle_ml"].isna(), "scan_id"].tolist()
    if no_tissue:
        log.warning("%d scan(s) without a tissue table, body composition left empty: %s",
                    len(no_tissue), ", ".join(no_tissue[:5]))
    out["n_target_lesions"] = out["n_target_lesions"].astype("int64")
    out = assess_responses(out, s)
    cols = list(tables.SCHEMAS["burden"]) + EXTRA_COLUMNS
    return out[cols]


EXTRA_COLUMNS = ["is_baseline", "n_target_lesions", "targets_gone", "nontarget_volume_ml", "nontarget_gone"]


def _pct(values: np.ndarray, reference: float) -> np.ndarray:
    if not np.isfinite(reference) or reference <= 0:
        return np.full(len(values), np.nan)
    return 100.0 * (values - reference) / reference


def assess_responses(burden: pd.DataFrame, settings: dict | None = None) -> pd.DataFrame:
    """Add pct_change_volume, pct_change_sld, recist_response and volumetric_response to burden
    rows (sorted by patient, days); needs sld_mm, n_new_lesions, targets_gone and, if known,
    nontarget_volume_ml / nontarget_gone. Pure: returns a new frame."""
    s = {**DEFAULTS, **(settings or {})}
    out = burden.copy()
    for col in ("pct_change_volume", "pct_change_sld"):
        out[col] = np.nan
    out["recist_response"] = "NE"
    out["volumetric_response"] = "NE"
    base = baseline_scans(out)
    for pid, rows in out.groupby("patient_id", sort=False):
        if pid not in base.index:
            continue
        rows = rows.sort_values(["days", "scan_id"], kind="mergesort")
        idx = rows.index.to_numpy()
        b = int(np.flatnonzero(rows["scan_id"].to_numpy() == base[pid])[0])
        vol = rows["total_volume_ml"].to_numpy(float)
        sld = rows["sld_mm"].to_numpy(float)
        out.loc[idx, "pct_change_volume"] = _pct(vol, vol[b])
        out.loc[idx, "pct_change_sld"] = _pct(sld, sld[b])
        new = rows["n_new_lesions"].to_numpy() > 0
        nt_vol = rows["nontarget_volume_ml"].to_numpy(float) if "nontarget_volume_ml" in rows else None
        nt_gone = rows["nontarget_gone"].to_numpy() if "nontarget_gone" in rows else None
        recist_tp = recist.timepoint_responses(
            sld[b:], new[b:], rows["targets_gone"].to_numpy()[b:],
            pr_pct=float(s["recist_pr_pct"]), pd_pct=float(s["recist_pd_pct"]),
            pd_abs_mm=float(s["recist_pd_abs_mm"]),
            nontarget_volume_ml=None if nt_vol is None else nt_vol[b:],
            nontarget_gone=None if nt_gone is None else nt_gone[b:],
            nontarget_pd_pct=float(s["recist_nontarget_pd_pct"]),
            nontarget_pd_abs_ml=float(s["recist_nontarget_pd_abs_ml"]))
        volume_tp = recist.volumetric_responses(
            vol[b:], new[b:], pr_pct=float(s["volumetric_pr_pct"]), pd_pct=float(s["volumetric_pd_pct"]),
            pd_abs_ml=float(s["volumetric_pd_abs_ml"]), new_lesion_pd=bool(s["volumetric_new_lesion_pd"]))
        labels = ["pre-baseline"] * b + ["baseline"]
        out.loc[idx, "recist_response"] = labels + recist_tp
        out.loc[idx, "volumetric_response"] = labels + volume_tp
    return out


def write_burden(lesions: Path, tissue_paths: list[Path], scans_table: Path, out: Path,
                 settings: dict | None = None) -> pd.DataFrame:
    """Write tables/burden.parquet and its CSV twin; return the table."""
    scans = read_scans_table(scans_table)[["patient_id", "scan_id", "days"]]
    lesion_table = tables.read(lesions, "lesions")
    tissue = _read_tissue(tissue_paths)
    log.info("burden of %d scans (%d patients) from %d lesion rows",
             len(scans), scans["patient_id"].nunique(), len(lesion_table))
    burden = compute_burden(lesion_table, tissue, scans, settings)
    tables.write(burden, out, "burden", csv=True)
    log.info("wrote %s", out)
    return burden
