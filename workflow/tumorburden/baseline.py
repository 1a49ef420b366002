"""The baseline-scan rule, in one place: every stage that needs a patient's baseline or
registration reference asks here (kinetics for targets and features, lesions for the
registration reference, survival for the baseline SLD, the synthetic truth for lesion
statuses), so they cannot disagree.

A patient's baseline scan is the last scan with days <= 0; among scans on the same day the one
with the greatest scan_id (so the choice never depends on the order of the table's rows).
"""

from __future__ import annotations

import pandas as pd


def _ordered(scans: pd.DataFrame) -> pd.DataFrame:
    return scans.sort_values(["patient_id", "days", "scan_id"], kind="mergesort")


def baseline_scans(scans: pd.DataFrame) -> pd.Series:
    """patient_id -> baseline scan_id (columns patient_id, scan_id, days). A patient without a
    scan on or before day 0 has no baseline (absent from the result): no RECIST targets, and
    no kinetics features."""
    ordered = _ordered(scans)
    return ordered[ordered["days"] <= 0].groupby("patient_id", sort=True)["scan_id"].last()


def reference_scans(scans: pd.DataFrame) -> pd.Series:
    """patient_id -> the scan every other scan of the patient is registered to: its baseline
    scan, else (no scan on or before day 0) its first scan."""
    first = _ordered(scans).groupby("patient_id", sort=True)["scan_id"].first()
    return baseline_scans(scans).reindex(first.index).fillna(first)
