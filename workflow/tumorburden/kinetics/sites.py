"""Tumour burden per site: tables/site_burden.parquet (scan x site) and tables/site_kinetics.parquet
(patient x site), with their CSV twins.

Sites as oncologists read them: liver, lung, node (lymph nodes) and other (every other finding
site of lesions.parquet's `organ`: soft tissue, spleen, adrenal, bone, ...). Liver metastases
carry their own prognosis under immune checkpoint inhibitors (Tumeh et al., Cancer Immunol Res
2017; Yu et al., Nat Med 2021), hence `liver_involvement` among the patient's features.

Per scan and site (every scan of scans.tsv gets all four sites, 0 where none):
- volume_ml: the summed volume_ml of the lesions present (recist.present: status baseline,
  persisting or new, volume > 0) whose organ is that site; n_lesions: their number.
- pct_change_volume = 100 (V - V_B) / V_B against the same site at the patient's baseline scan B
  (tumorburden.baseline); NaN when the site had no lesion at B (or the patient no baseline scan).

Per patient and site, from B on (patients without a baseline scan are left out, as in features):
- baseline_volume_ml = V_B; involved: V_B > 0;
- nadir_volume_ml = min(V_B, V_F1, ...); time_to_nadir_days = t_nadir - t_B (the first scan at it);
- pct_change_first_fu, best_pct_change: as in features, on the site's volume; NaN with a reason
  when the site had no lesion at B or there is no follow-up.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from tumorburden import tables
from tumorburden.baseline import baseline_scans
from tumorburden.kinetics import recist
from tumorburden.study import read_scans_table

log = logging.getLogger(__name__)

SITE_GROUPS = ("liver", "lung", "node", "other")


def site_group(organ) -> str:
    """The site group of a lesion's finding site (lesions.parquet `organ`)."""
    organ = str(organ)
    return organ if organ in SITE_GROUPS else "other"


def compute_site_burden(lesions: pd.DataFrame, scans: pd.DataFrame) -> pd.DataFrame:
    """Schema site_burden, sorted by patient, days, scan, site; pure, no I/O."""
    live = recist.present(lesions)
    live = live.assign(site=live["organ"].map(site_group))
    volume = live.groupby(["scan_id", "site"])["volume_ml"].sum()
    count = live.groupby(["scan_id", "site"]).size()
    order = scans.sort_values(["patient_id", "days", "scan_id"], kind="mergesort")[["patient_id", "scan_id", "days"]]
    out = order.merge(pd.DataFrame({"site": list(SITE_GROUPS)}), how="cross")
    key = pd.MultiIndex.from_frame(out[["scan_id", "site"]])
    out["volume_ml"] = volume.reindex(key).fillna(0.0).to_numpy(float)
    out["n_lesions"] = count.reindex(key).fillna(0).to_numpy("int64")
    out["pct_change_volume"] = np.nan
    base = baseline_scans(order)
    for (pid, site), rows in out.groupby(["patient_id", "site"], sort=False):
        if pid not in base.index:
            continue
        v0 = float(rows.loc[rows["scan_id"] == base[pid], "volume_ml"].iloc[0])
        if v0 > 0:
            out.loc[rows.index, "pct_change_volume"] = 100.0 * (rows["volume_ml"].to_numpy(float) - v0) / v0
    return out.reset_index(drop=True)[list(tables.SCHEMAS["site_burden"])]


def compute_site_kinetics(site_burden: pd.DataFrame) -> pd.DataFrame:
    """Schema site_kinetics, one row per patient with a baseline scan and site; pure, no I/O."""
    scans = site_burden.drop_duplicates("scan_id")[["patient_id", "scan_id", "days"]]
    base = baseline_scans(scans)
    rows = []
    for (pid, site), sb in site_burden.groupby(["patient_id", "site"], sort=False):
        if pid not in base.index:
            continue
        sb = sb.sort_values(["days", "scan_id"], kind="mergesort")
        b = int(np.flatnonzero(sb["scan_id"].to_numpy() == base[pid])[0])
        on_study = sb.iloc[b:]
        v = on_study["volume_ml"].to_numpy(float)
        t = on_study["days"].to_numpy(float)
        nadir = int(np.argmin(v))
        row = {"patient_id": pid, "site": site, "baseline_scan_id": base[pid], "baseline_volume_ml": v[0],
               "involved": bool(v[0] > 0), "nadir_volume_ml": v[nadir], "time_to_nadir_days": t[nadir] - t[0],
               "pct_change_first_fu": math.nan, "best_pct_change": math.nan, "pct_change_reason": None}
        if len(v) == 1:
            row["pct_change_reason"] = "no follow-up scan"
        elif v[0] <= 0:
            row["pct_change_reason"] = f"no {site} lesion at baseline"
        else:
            pct = 100.0 * (v[1:] - v[0]) / v[0]
            row["pct_change_first_fu"], row["best_pct_change"] = float(pct[0]), float(pct.min())
        rows.append(row)
    if not rows:
        return tables.empty("site_kinetics")
    return pd.DataFrame(rows)[list(tables.SCHEMAS["site_kinetics"])]


def liver_involvement(lesions: pd.DataFrame, baseline_scan_ids: pd.Series) -> pd.Series:
    """Per patient (index of `baseline_scan_ids`: patient -> baseline scan): a liver lesion present at B."""
    live = recist.present(lesions)
    liver_scans = set(live.loc[live["organ"].map(site_group) == "liver", "scan_id"])
    return baseline_scan_ids.map(lambda scan: scan in liver_scans).astype(bool)


def write_site_tables(lesions: Path, scans_table: Path, burden_out: Path, kinetics_out: Path) -> pd.DataFrame:
    """Write tables/site_burden.parquet and tables/site_kinetics.parquet (+ CSV twins); return the first."""
    scans = read_scans_table(scans_table)[["patient_id", "scan_id", "days"]]
    lesion_table = tables.read(lesions, "lesions")
    stray = sorted(set(lesion_table["scan_id"]) - set(scans["scan_id"]))
    if stray:
        raise ValueError(f"{lesions}: scan {stray[0]} is not in {scans_table} (re-run tracking on this study's scans)")
    site_burden = compute_site_burden(lesion_table, scans)
    tables.write(site_burden, burden_out, "site_burden", csv=True)
    tables.write(compute_site_kinetics(site_burden), kinetics_out, "site_kinetics", csv=True)
    log.info("burden per site of %d scans: %s", len(scans), ", ".join(
        f"{site} {v:.1f} mL" for site, v in site_burden.groupby("site", sort=False)["volume_ml"].sum().items()))
    return site_burden
