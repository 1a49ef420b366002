"""The `figures` config section: its defaults (config/config.yaml repeats them), labels, and
the names of the files the figures stage writes.

Light on purpose (no matplotlib, no lifelines): the workflow imports it to name its outputs
when it builds the DAG.
"""

from __future__ import annotations

import json
import math

from tumorburden.paths import KM_GROUPINGS

DEFAULTS = {
    # km.csv stratifiers drawn as Kaplan-Meier figures, one figure per cohort x endpoint x grouping
    "km_groupings": list(KM_GROUPINGS),
    "km_hr_term": "log_baseline_volume_ml",  # the cox.csv term whose univariable HR a KM figure quotes
    "response": "recist_bor",           # features column colouring spaghetti, waterfall and swimmer
    "pct_change_cap": 200.0,            # % change axes end here; larger values are drawn as arrows
    "swimmer_max_patients": 80,         # patients per swimmer figure; more go to further pages
    "contact_sheet_columns": 6,         # QC contact sheet: overlays per row ...
    "contact_sheet_rows": 8,            # ... and rows per page
    "cohort_colours": {},               # cohort -> colour, overriding the automatic palette
    "dynamic_patients": ["SYN-001", "SYN-002", "SYN-003"],  # per-patient dynamic-prediction figures
}

# Not in the config: set by the issue (300 dpi, PDF + PNG) or taken from another section.
INTERNAL = {
    "dpi": 300,
    "formats": ["pdf", "png"],
    "days_per_month": 30.4375,          # kinetics.days_per_month, passed on by the rule
}


def resolve(settings: dict | None) -> dict:
    return {**DEFAULTS, **INTERNAL, **(settings or {})}


# kinetics keys the figures draw with: months on time axes, the volumetric response thresholds
SHARED_KINETICS = ("days_per_month", "volumetric_pr_pct", "volumetric_pd_pct")


def rule_settings(config: dict) -> str:
    """The figures' `--settings` JSON from the whole config: the figures section and the kinetics
    keys the figures share (one setting, one value: the months of a KM axis are kinetics')."""
    kinetics = config.get("kinetics") or {}
    chosen = {**(config.get("figures") or {}), **{k: kinetics[k] for k in SHARED_KINETICS if k in kinetics}}
    return json.dumps(chosen, sort_keys=True)


ENDPOINT_LABELS = {"pfs": "Progression-free survival", "os": "Overall survival"}
TERM_LABELS = {
    "log_baseline_volume_ml": "ln baseline tumour volume (mL)",
    "baseline_volume_ml": "Baseline tumour volume (mL)",
    "pct_change_first_fu": "% change at first follow-up",
    "best_pct_change": "Best % change",
    "tgr_post": "Growth rate on treatment (%/month)",
    "tgr_pre": "Growth rate before treatment (%/month)",
    "tgr_ratio": "Growth-rate ratio",
    "growth_g": "Stein growth rate g",
    "decay_d": "Stein decay rate d",
    "baseline_n_lesions": "Baseline lesion count",
    "baseline_sld_mm": "Baseline RECIST sum of diameters (mm)",
    "sld_mm": "RECIST sum of diameters (mm)",
    "new_lesions_any": "New lesion",
    "age": "Age (years)",
    "ecog": "ECOG performance status",
    "sex": "Sex",
    "line_of_therapy": "Line of therapy",
    "log_current_burden_ml": "ln current tumour volume (mL), time-varying",
}
GROUPING_LABELS = {"baseline_volume": "Baseline tumour volume", "baseline_volume_ml": "Baseline tumour volume",
                   "recist_bor": "RECIST best overall response",
                   "volumetric_response": "Volumetric best response"}


def endpoint_order(endpoints) -> list[str]:
    """PFS before OS (the order of a paper), other endpoints after them by name."""
    fixed = ["pfs", "os"]
    endpoints = set(endpoints)
    return [e for e in fixed if e in endpoints] + sorted(endpoints - set(fixed))


def endpoint_label(endpoint: str) -> str:
    return ENDPOINT_LABELS.get(endpoint, endpoint.upper())


def term_label(term: str) -> str:
    if term in TERM_LABELS:
        return TERM_LABELS[term]
    term = str(term)
    if term.endswith("]") and "[" in term:  # an indicator of a text covariate's level, e.g. 'sex[M]'
        base, level = term[:-1].split("[", 1)
        return f"{term_label(base)}: {level.removeprefix('T.')}"
    return term.replace("_", " ")


# The ungrouped Kaplan-Meier curve's stratifier: 'none' in today's km.csv, 'all' in later tables.
KM_OVERALL = ("none", "all")
# Stratifier names that mean the same grouping in km.csv as written before and after the survival
# tables' renaming ("baseline_volume_ml:median" is the <column>:<cut> form); a configured grouping
# matches any of its names, and keeps its own name in the figure's file name.
KM_ALIASES = {
    "none": KM_OVERALL, "all": KM_OVERALL,
    "baseline_volume_median": ("baseline_volume_median", "baseline_volume_ml:median"),
    "baseline_volume_ml:median": ("baseline_volume_median", "baseline_volume_ml:median"),
}


def km_stratifier_names(grouping: str) -> set[str]:
    return set(KM_ALIASES.get(grouping, (grouping,)))


def swimmer_pages(clinical, max_patients: int) -> dict[str, int]:
    """cohort -> number of swimmer pages (every patient of clinical.tsv is drawn once)."""
    return {str(c): max(1, math.ceil(int(n) / int(max_patients)))
            for c, n in clinical.groupby("cohort", sort=True).size().items()}


def dynamic_patients(configured, patients) -> tuple[list[str], list[str]]:
    """(figured, absent): the configured patients the study has, in the configured order, and
    those it lacks (the rule draws the first; the workflow names the second in a warning)."""
    known = {str(p) for p in patients}
    return [str(p) for p in configured if str(p) in known], [str(p) for p in configured if str(p) not in known]


def contact_sheet_pages(n_scans: int, columns: int, rows: int) -> int:
    return max(1, math.ceil(n_scans / (int(columns) * int(rows))))
