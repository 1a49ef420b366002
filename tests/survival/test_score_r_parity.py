"""Score, RMST and decision curves against R (riskRegression 2022.11.28, survival 3.5-3).

tests/survival/r/score_reference.R wrote score_reference.csv (versions are rows of the file),
score_risks.csv (riskRegression::predictRisk of each Cox model, per patient and horizon) and
pbc.csv, on R's lung (event = status 2), MASS Melanoma (died of melanoma) and survival's pbc
(312 randomised patients, event = death). Where Rscript with riskRegression is installed,
test_score_reference_is_reproduced_by_live_r re-runs R and compares with the recorded numbers.
"""

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tumorburden.survival import score
from r_live import r_has

R_DIR = Path(__file__).parent / "r"
REF = pd.read_csv(R_DIR / "score_reference.csv", keep_default_na=False, na_values=["NA"])
RISKS = pd.read_csv(R_DIR / "score_risks.csv")
# the Cox models of score_reference.R, log terms as columns
MODELS = {"lung": ["age", "sex", "ph.ecog", "ph.karno"],
          "melanoma": ["log_thickness", "ulcer", "age", "sex"],
          "pbc": ["age", "edema", "log_bili", "albumin", "log_protime"]}


def data(name):
    d = pd.read_csv(R_DIR / f"{name}.csv")
    for c in ("thickness", "bili", "protime"):
        if c in d:
            d[f"log_{c}"] = np.log(d[c])
    return d


def complete(name):
    d = data(name)
    return d.dropna(subset=["time", "event", *MODELS[name]])


def ref(dataset, analysis, key, statistic):
    r = REF[(REF.dataset == dataset) & (REF.analysis == analysis) & (REF.key == key) & (REF.statistic == statistic)]
    assert len(r) == 1, (dataset, analysis, key, statistic)
    return float(r["value"].iloc[0])


def r_risks(name, d, model="cox"):
    """R's predicted risks, (patients of d) x horizons; rowname is the patient's row in the CSV."""
    r = RISKS[(RISKS.dataset == name) & (RISKS.model == model)]
    times = sorted(r.time_days.unique())
    return times, np.column_stack([r[r.time_days == t].set_index("rowname").loc[d.index + 1, "risk"] for t in times])


def test_recorded_versions():
    v = REF[REF.analysis == "version"]
    assert "2022.11.28" in set(v["key"]) and "3.5.3" in set(v["key"])


def rname(model):
    return "Null model" if model == score.NULL_MODEL else model


@pytest.mark.parametrize("name", list(MODELS))
def test_brier_ipa_and_auc_with_se_equal_score_on_rs_risks(name):
    # 'small' (e.g. lung: sex + ph.ecog) has a handful of distinct risks: ties in the AUC
    d = complete(name)
    assert len(d) == ref(name, "score_model", "cox", "n")
    times, risk = r_risks(name, d)
    small = r_risks(name, d, "small")[1]
    got = score.score_at(d["time"], d["event"], {"small": small, "cox": risk}, times)
    assert (got["status"] == "ok").all() and len(got) == 3 * len(times)
    for _, row in got.iterrows():
        k = f"{rname(row['model'])}|{row['time_days']:g}"
        for col, stat in [("brier", "Brier"), ("brier_se", "se"), ("brier_lower", "lower"),
                          ("brier_upper", "upper"), ("ipa", "IPA")]:
            assert row[col] == pytest.approx(ref(name, "brier", k, stat), rel=1e-9, abs=1e-12), (k, col)
        if row["model"] != score.NULL_MODEL:
            for col, stat in [("auc", "AUC"), ("auc_se", "se"), ("auc_lower", "lower"), ("auc_upper", "upper")]:
                assert row[col] == pytest.approx(ref(name, "auc", k, stat), rel=1e-9), (k, col)


@pytest.mark.parametrize("name", list(MODELS))
def test_contrasts_between_models_equal_scores_contrasts(name):
    d = complete(name)
    times, risk = r_risks(name, d)
    got = score.score_contrasts(d["time"], d["event"], {"small": r_risks(name, d, "small")[1], "cox": risk}, times)
    assert len(got) == 3 * len(times) and (got["status"] == "ok").all()
    for _, row in got.iterrows():
        k = f"{row['model']}|{rname(row['reference'])}|{row['time_days']:g}"
        for metric in ("brier", "auc"):
            if metric == "auc" and row["reference"] == score.NULL_MODEL:
                assert np.isnan(row["delta_auc"])
                continue
            for stat, col in [("delta", ""), ("se", "_se"), ("lower", "_lower"), ("upper", "_upper"), ("p", "_p")]:
                assert row[f"delta_{metric}{col}"] == pytest.approx(ref(name, f"{metric}_contrast", k, stat),
                                                                    rel=1e-9), (k, metric, stat)


@pytest.mark.parametrize("name", list(MODELS))
def test_cox_risk_equals_predictrisk(name):
    d = complete(name)
    times, want = r_risks(name, d)
    got = score.cox_risk(d, "time", "event", MODELS[name], times)
    np.testing.assert_allclose(got, want, rtol=1e-8)


@pytest.mark.parametrize("name", list(MODELS))
def test_score_cox_on_the_table_equals_score_of_coxph(name):
    d = data(name)
    times = sorted(RISKS[RISKS.dataset == name].time_days.unique())
    got = score.score_cox(d, "time", "event", MODELS[name], times)
    assert (got["n_dropped"] == len(d) - ref(name, "score_model", "cox", "n")).all()
    cox_rows = got[got.model != score.NULL_MODEL]
    assert len(cox_rows) == len(times)
    for _, row in cox_rows.iterrows():
        k = f"cox|{row['time_days']:g}"
        assert row["brier"] == pytest.approx(ref(name, "brier", k, "Brier"), rel=1e-8)
        assert row["ipa"] == pytest.approx(ref(name, "brier", k, "IPA"), rel=1e-7)
        assert row["auc"] == pytest.approx(ref(name, "auc", k, "AUC"), rel=1e-8)
        assert row["auc_se"] == pytest.approx(ref(name, "auc", k, "se"), rel=1e-7)


@pytest.mark.skipif(not r_has("survival", "MASS", "riskRegression"),
                    reason="R with riskRegression not installed (apt: r-cran-survival r-cran-riskregression)")
def test_score_reference_is_reproduced_by_live_r(tmp_path):
    subprocess.run(["Rscript", str(R_DIR / "score_reference.R"), str(tmp_path)], check=True, capture_output=True,
                   timeout=300)
    for name, key in [("score_reference.csv", ["dataset", "analysis", "key", "statistic"]),
                      ("score_risks.csv", ["dataset", "model", "rowname", "time_days"])]:
        rec = pd.read_csv(R_DIR / name, keep_default_na=False, na_values=["NA"])
        live = pd.read_csv(tmp_path / name, keep_default_na=False, na_values=["NA"])
        if "analysis" in rec:
            rec, live = rec[rec.analysis != "version"], live[live.analysis != "version"]
        col = "value" if "value" in rec else "risk"
        m = rec.merge(live, on=key, suffixes=("_rec", "_live"), how="outer", indicator=True)
        assert (m["_merge"] == "both").all(), m[m["_merge"] != "both"].head()
        np.testing.assert_allclose(m[f"{col}_live"], m[f"{col}_rec"], rtol=1e-6, equal_nan=True)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "pbc.csv"), pd.read_csv(R_DIR / "pbc.csv"))


RMST_CASES = [("lung", "sex", 365), ("lung", "sex", 730), ("melanoma", "ulcer", 1825), ("melanoma", "ulcer", 3650),
              ("pbc", "trt", 1825), ("pbc", "trt", 3650)]


@pytest.mark.parametrize("name,group,tau", RMST_CASES)
def test_rmst_per_group_equals_survfit_rmean_and_contrasts_rmst2s_formulas(name, group, tau):
    from tumorburden.survival import rmst

    d = data(name)
    by_group = rmst.rmst_by_group(d["time"], d["event"], d[group], tau)
    for _, row in by_group.iterrows():
        k = f"{group}|{tau}|{row['group']}"
        assert row["rmst"] == pytest.approx(ref(name, "rmst", k, "rmean"), rel=1e-10)
        assert row["se"] == pytest.approx(ref(name, "rmst", k, "se"), rel=1e-10)
    c = rmst.rmst_contrasts(by_group).iloc[0]
    k = f"{group}|{tau}|{by_group['group'].iloc[1]}-{by_group['group'].iloc[0]}"
    for stat in ("difference", "difference_lower", "difference_upper", "difference_p", "ratio", "ratio_lower",
                 "ratio_upper", "ratio_p"):
        assert c[stat] == pytest.approx(ref(name, "rmst_contrast", k, stat), rel=1e-9), stat


@pytest.mark.parametrize("name", list(MODELS))
def test_net_benefit_equals_the_kaplan_meier_decision_curve_computed_in_r(name):
    from tumorburden.survival import decision

    d = complete(name)
    times, risk = r_risks(name, d)
    thresholds = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5]
    got = decision.net_benefit(d["time"], d["event"], {"cox": risk}, times, thresholds).set_index(
        ["time_days", "threshold", "model"])
    for t in times:
        for p in thresholds:
            k = f"{t:g}|{p:g}"
            assert got.loc[(t, p, "cox"), "net_benefit"] == pytest.approx(ref(name, "decision", k, "cox"),
                                                                          rel=1e-9, abs=1e-12)
            assert got.loc[(t, p, decision.TREAT_ALL), "net_benefit"] == pytest.approx(
                ref(name, "decision", k, "treat_all"), rel=1e-9)
            assert got.loc[(t, p, decision.TREAT_NONE), "net_benefit"] == 0
