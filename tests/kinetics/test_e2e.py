"""Lesions over time on the shared tiny synthetic run: registration files, tracks, contract
columns, a reason for every missing feature, and the kinetics scores against the truth."""

import json

import numpy as np
import pandas as pd
import pytest

from tumorburden import tables

pytestmark = pytest.mark.e2e

CONTRACT_BURDEN = ["pct_change_volume", "pct_change_sld", "recist_response", "volumetric_response"]
CONTRACT_FEATURES = ["recist_bor", "volumetric_response", "time_to_new_lesion_days",
                     "time_to_volumetric_progression_days", "stein_model"]
RESPONSES = {"pre-baseline", "baseline", "CR", "PR", "SD", "PD", "NE"}


def test_every_scan_is_registered_to_its_baseline(synthetic_run):
    scans = pd.read_csv(synthetic_run / "synthetic/scans.tsv", sep="\t")
    for scan_id in scans["scan_id"]:
        record = json.loads((synthetic_run / "scans" / scan_id / "to_reference.json").read_text())
        assert record["status"] in ("ok", "reference scan"), record
        # the synthetic patient never moves: the transform is the identity to within a voxel's tenth
        matrix = np.array(record["matrix"])
        assert np.abs(matrix[:3, 3]).max() < 0.5 and np.abs(matrix[:3, :3] - np.eye(3)).max() < 1e-2


def test_tables_carry_the_contract_columns(synthetic_run):
    burden = tables.read(synthetic_run / "tables/burden.parquet", "burden")
    assert set(burden["recist_response"]) <= RESPONSES and set(burden["volumetric_response"]) <= RESPONSES
    assert all(c in burden.columns for c in CONTRACT_BURDEN)
    features = tables.read(synthetic_run / "tables/features.parquet", "features")
    assert all(c in features.columns for c in CONTRACT_FEATURES)
    lesions = tables.read(synthetic_run / "tables/lesions.parquet", "lesions")
    assert {"aligned_x_mm", "event", "linked_track_id"} <= set(lesions.columns)


def test_every_missing_feature_has_a_reason(synthetic_run):
    features = pd.read_parquet(synthetic_run / "tables/features.parquet")
    for col in [c for c in features.columns if f"{c}_reason" in features.columns]:
        missing = features[col].isna()
        reason = features[f"{col}_reason"].fillna("").astype(str) != ""
        assert (missing <= reason).all(), f"{col}: missing without a reason"


def test_kinetics_scores(synthetic_run):
    scores = pd.read_csv(synthetic_run / "truth/scores.csv")
    # survival has one row per cohort x endpoint x model: keep the stages scored here
    scores = scores[scores["stage"].isin(["lesions", "kinetics"])]
    value = scores.set_index(["stage", "metric"])["value"]
    assert value[("lesions", "tracking_accuracy")] >= 0.98
    assert value[("lesions", "tracking_accuracy_strict")] >= 0.9
    n = scores.set_index(["stage", "metric"])["n"]
    # Stein fits on the measured volumes, against the simulator's g and d. The shared run (10
    # patients, 4 mm voxels) gives 0.09 / 0.14 on 7 patients, as close as the same fits on the true
    # volumes (0.09 / 0.14: the visit schedule is the limit); the demo run gives 0.19 / 0.43. The
    # bounds leave room for that spread, while a fit in the wrong unit or of the wrong model is
    # off by about 1. Fewer than half the patients fitted would mean the fits fail.
    assert value[("kinetics", "growth_g_median_abs_rel_error")] <= 0.3
    assert value[("kinetics", "decay_d_median_abs_rel_error")] <= 0.5
    assert n[("kinetics", "growth_g_median_abs_rel_error")] >= 5 and n[("kinetics", "decay_d_median_abs_rel_error")] >= 5
    # % volume change vs baseline, against the simulator's volumes: 3.4 percentage points here
    # (a measurement bias of a scan cancels in the ratio to the same patient's baseline)
    assert value[("kinetics", "pct_change_volume_median_abs_error")] <= 10.0
    # Consistency with the same response rules on the true lesions (not a truth: docs/kinetics.md
    # section 8). Here 0.95 / 0.97 per follow-up scan and 1.0 / 1.0 per patient (demo run 0.96):
    # at least 4 in 5 must agree, one or two patients of ten may differ where a lesion measured
    # near a threshold (30 % / 65 % shrinkage) falls on its other side.
    for metric in ("recist_response_consistency", "volumetric_response_consistency",
                   "recist_bor_consistency", "volumetric_bor_consistency"):
        assert value[("kinetics", metric)] >= 0.8, metric


# the simulator's lesion sites -> the site groups of tables/site_burden (written out here, not taken
# from the code scored)
TRUE_SITE_GROUP = {"liver": "liver", "lung": "lung", "node": "node", "soft_tissue": "other"}


def test_burden_per_site_against_the_truth(synthetic_run):
    """Each site's measured burden against the simulator's lesions of that site: per scan, the
    median relative error where the site holds >= 5 mL, and the share of each site's true volume
    measured in that site (a lesion given the wrong site counts against both). On the shared run
    (lesion sites by the label map's shell rule) the medians are 0.08-0.18 and the shares 0.87-0.95,
    against 0.07 for the total burden; a site rule that confused liver and lung scores near 0."""
    site_burden = tables.read(synthetic_run / "tables/site_burden.parquet", "site_burden")
    truth = pd.read_parquet(synthetic_run / "truth/lesions.parquet")
    true = truth.assign(site=truth["site"].map(TRUE_SITE_GROUP)).groupby(["scan_id", "site"])["volume_ml"].sum()
    measured = site_burden.set_index(["scan_id", "site"])["volume_ml"]
    both = pd.DataFrame({"measured": measured, "true": true.reindex(measured.index).fillna(0.0)})
    assert set(site_burden["site"]) == {"liver", "lung", "node", "other"}
    for site, rows in both.groupby(level="site"):
        large = rows[rows["true"] >= 5.0]
        if len(large):
            error = ((large["measured"] - large["true"]).abs() / large["true"]).median()
            assert error <= 0.3, (site, error)
        share = np.minimum(rows["measured"], rows["true"]).sum() / rows["true"].sum()
        assert share >= 0.8, (site, share)
    kinetics = tables.read(synthetic_run / "tables/site_kinetics.parquet", "site_kinetics")
    features = tables.read(synthetic_run / "tables/features.parquet", "features")
    liver = kinetics[kinetics["site"] == "liver"].set_index("patient_id")["involved"]
    assert features.set_index("patient_id")["liver_involvement"].to_dict() == liver.to_dict()


def test_body_composition_has_every_scan_and_says_why_l3_is_missing(synthetic_run):
    """The phantom has no vertebrae and the default model no organs: whole-volume figures as in the
    burden table, and no L3 value without its reason."""
    body = tables.read(synthetic_run / "tables/body_composition.parquet", "body_composition")
    burden = tables.read(synthetic_run / "tables/burden.parquet", "burden")
    merged = body.merge(burden[["scan_id", "muscle_ml", "vat_ml"]], on="scan_id", suffixes=("", "_burden"))
    assert len(merged) == len(body) == len(burden)
    np.testing.assert_array_equal(merged["muscle_ml"], merged["muscle_ml_burden"])
    np.testing.assert_array_equal(merged["vat_ml"], merged["vat_ml_burden"])
    assert body["smi_cm2_m2"].isna().all() and body["sarcopenia"].isna().all()
    assert body["smi_reason"].str.startswith("no L3 slice: no organ map").all()
    clinical = pd.read_csv(synthetic_run / "synthetic/clinical.tsv", sep="\t")
    assert clinical["height_cm"].between(140, 210).all()
