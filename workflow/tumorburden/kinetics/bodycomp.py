"""Body composition per scan: tables/body_composition.parquet (+ CSV twin).

Beside the whole-volume figures of each scan (muscle_ml, sat_ml, vat_ml: tissue.parquet), the
figures clinicians use, from the axial slice at the middle of L3 (lesions/l3.py):

- l3_muscle_cm2, l3_sat_cm2, l3_vat_cm2: the areas on that slice; l3_slice_mm its S position;
- smi_cm2_m2, the skeletal muscle index = l3_muscle_cm2 / (height_cm / 100)², with height_cm
  from clinical.tsv (an optional column: the patient's height in cm);
- sarcopenia: SMI below the sex-specific cut-off `body_composition.sarcopenia_smi_cm2_m2`, by
  default Prado et al.'s (Lancet Oncol 2008;9:629-35, obese patients with solid tumours of the
  respiratory and gastrointestinal tracts): < 52.4 cm²/m² for men, < 38.5 for women; the sex from
  clinical.tsv's `sex` column (M / F / male / female, any case).

A value that cannot be had is NaN (sarcopenia NA) with the reason in smi_reason /
sarcopenia_reason: no L3 slice (lesions/l3.py says why), no height_cm column or no height for
the patient, no sex; never an error.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from tumorburden import tables
from tumorburden.study import read_clinical_table, read_scans_table

log = logging.getLogger(__name__)

DEFAULTS = {
    # Prado et al., Lancet Oncol 2008: SMI at L3 below these (cm²/m²) is sarcopenia
    "sarcopenia_smi_cm2_m2": {"male": 52.4, "female": 38.5},
}
SEXES = {"m": "male", "male": "male", "f": "female", "female": "female"}
L3_COLUMNS = ["l3_slice_mm", "l3_muscle_cm2", "l3_sat_cm2", "l3_vat_cm2"]


def compute_body_composition(tissue: pd.DataFrame, l3: pd.DataFrame, scans: pd.DataFrame, clinical: pd.DataFrame,
                             settings: dict | None = None) -> pd.DataFrame:
    """Schema body_composition, one row per scan of `scans`; pure, no I/O."""
    s = {**DEFAULTS, **(settings or {})}
    cutoff = {**DEFAULTS["sarcopenia_smi_cm2_m2"], **(s["sarcopenia_smi_cm2_m2"] or {})}
    out = scans.sort_values(["patient_id", "days", "scan_id"], kind="mergesort")[["patient_id", "scan_id", "days"]]
    out = out.merge(tissue[["scan_id", "muscle_ml", "sat_ml", "vat_ml"]], on="scan_id", how="left", validate="one_to_one")
    out = out.merge(l3[["scan_id", *L3_COLUMNS, "l3_reason"]], on="scan_id", how="left", validate="one_to_one")
    out["l3_reason"] = out["l3_reason"].fillna("no L3 table for the scan")
    patients = clinical.set_index("patient_id")
    has_height = "height_cm" in clinical.columns
    height = patients["height_cm"].astype(float) if has_height else pd.Series(dtype=float)
    sex = patients["sex"].astype(str).str.strip().str.lower().map(SEXES) if "sex" in clinical.columns else None
    smi, smi_why, sarc, sarc_why, heights = [], [], [], [], []
    for row in out.itertuples():
        h = float(height.get(row.patient_id, math.nan)) if has_height else math.nan
        heights.append(h)
        if math.isnan(row.l3_muscle_cm2):
            value, why = math.nan, f"no L3 slice: {row.l3_reason}"
        elif not has_height:
            value, why = math.nan, "clinical.tsv has no height_cm column"
        elif not math.isfinite(h):
            value, why = math.nan, f"no height_cm for patient {row.patient_id} in clinical.tsv"
        else:
            value, why = row.l3_muscle_cm2 / (h / 100.0) ** 2, ""
        smi.append(value)
        smi_why.append(why)
        who = None if sex is None else sex.get(row.patient_id)
        if math.isnan(value):
            sarc.append(pd.NA)
            sarc_why.append(f"no SMI ({why})")
        elif not isinstance(who, str):
            sarc.append(pd.NA)
            sarc_why.append("clinical.tsv has no sex column" if sex is None else
                            f"sex of patient {row.patient_id} is not M, F, male or female")
        else:
            sarc.append(bool(value < float(cutoff[who])))
            sarc_why.append("")
    out["height_cm"] = heights
    out["smi_cm2_m2"] = smi
    out["smi_reason"] = smi_why
    out["sarcopenia"] = pd.array(sarc, dtype="boolean")
    out["sarcopenia_reason"] = sarc_why
    return out.reset_index(drop=True)[list(tables.SCHEMAS["body_composition"])]


def write_body_composition(tissue_paths: list[Path], l3_paths: list[Path], scans_table: Path, clinical: Path,
                           out: Path, settings: dict | None = None) -> pd.DataFrame:
    """Write tables/body_composition.parquet and its CSV twin; return the table."""
    missing = [p for p in l3_paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no L3 table for the scan (written by measure since body composition "
                                "at L3 was added); run the patient's measure job again: snakemake -R measure")
    tissue = pd.concat([tables.read(p, "scan_tissue") for p in tissue_paths], ignore_index=True)
    l3 = pd.concat([tables.read(p, "scan_l3") for p in l3_paths], ignore_index=True)
    scans = read_scans_table(scans_table)[["patient_id", "scan_id", "days"]]
    table = compute_body_composition(tissue, l3, scans, read_clinical_table(clinical), settings)
    tables.write(table, out, "body_composition", csv=True)
    defined = table["smi_cm2_m2"].notna()
    log.info("body composition of %d scans; SMI at L3 for %d (%s)", len(table), int(defined.sum()),
             "; ".join(f"{n} scan(s): {why}" for why, n in table.loc[~defined, "smi_reason"].value_counts().items())
             or "all")
    return table
