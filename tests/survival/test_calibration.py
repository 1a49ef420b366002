"""Calibration at horizons (survival/calibration.py) against rms::calibrate (rms 6.5.0) and the smooth
curve of Austin, Harrell & van Klaveren (2020), and on simulated data whose truth is known.

tests/survival/r/calibration_reference.R wrote calibration_reference.csv (versions and B are rows
of the file) on R's lung (event = status 2), MASS Melanoma (died of melanoma) and survival's pbc
(312 randomised patients, event = death), with the Cox models of score_reference.R (B = 1000 for
lung at 365 days). Where Rscript with rms is installed,
test_calibration_reference_is_reproduced_by_live_r re-runs it (B = 2) and compares the rows that
do not depend on the bootstrap with the recorded ones.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from tumorburden import tables
from tumorburden.survival import calibration
from r_live import r_has

R_DIR = Path(__file__).parent / "r"
REF = pd.read_csv(R_DIR / "calibration_reference.csv", keep_default_na=False, na_values=["NA"])
# dataset -> (covariates with log terms as columns, horizons, rms's m = patients per group)
MODELS = {"lung": (["age", "sex", "ph.ecog", "ph.karno"], [180, 365], 50),
          "melanoma": (["log_thickness", "ulcer", "age", "sex"], [1825], 50),
          "pbc": (["age", "edema", "log_bili", "albumin", "log_protime"], [1825], 60)}
CASES = [(name, u) for name, (_, us, _) in MODELS.items() for u in us]


def complete(name):
    d = pd.read_csv(R_DIR / f"{name}.csv")
    for c in ("thickness", "bili", "protime"):
        if c in d:
            d[f"log_{c}"] = np.log(d[c])
    return d.dropna(subset=["time", "event", *MODELS[name][0]])


def ref(name, u, analysis):
    return REF[(REF.dataset == name) & (REF.horizon_days == u) & (REF.analysis == analysis)]


def r_predicted(name, u, d, analysis="predicted"):
    """R's S(u) per patient of d (key: the patient's row in the CSV, 1-based)."""
    return ref(name, u, analysis).set_index("key")["value"].loc[[str(i + 1) for i in d.index]].to_numpy()


def r_stat(rows, statistic, key="-"):
    r = rows[(rows.statistic == statistic) & (rows.key == key)]
    assert len(r) == 1, (statistic, key)
    return float(r["value"].iloc[0])


def test_recorded_versions_and_bootstrap():
    v = REF[REF.analysis == "version"]
    assert "6.5.0" in set(v["key"]) and "3.5.3" in set(v["key"])
    boot = REF[REF.analysis == "bootstrap"].set_index(["dataset", "horizon_days"])["value"]
    assert boot[("lung", 365)] == 1000  # the Monte-Carlo comparison's case; the others only need groups


@pytest.mark.parametrize("name,u", CASES)
def test_cut_points_groups_and_kaplan_meier_equal_rms_calibrate_on_rs_predictions(name, u):
    d = complete(name)
    p = r_predicted(name, u, d)
    groups = len(d) // MODELS[name][2]
    cuts = calibration.rms_cuts(p, groups)
    np.testing.assert_allclose(cuts, ref(name, u, "cuts")["value"].to_numpy(), rtol=1e-12)
    got = calibration.grouped_km(d["time"], d["event"], p, u, cuts).set_index("group")
    r = ref(name, u, "grouped").pivot(index="key", columns="statistic", values="value")
    assert list(got.index) == list(r.index)
    assert got["n"].sum() == len(d)
    np.testing.assert_allclose(got["predicted"], r["mean.predicted"], rtol=1e-12)
    np.testing.assert_allclose(got["observed"], r["KM"], rtol=1e-12)
    np.testing.assert_allclose(got["observed"] - got["predicted"], r["index.orig"], atol=1e-12)
    # groupkm's CI: KM exp(-+ z std.err), std.err of -log KM as survfit reports it
    z = norm.ppf(0.975)
    np.testing.assert_allclose(got["observed_lower"], r["KM"] * np.exp(-z * r["std.err"]), rtol=1e-10)
    np.testing.assert_allclose(got["observed_upper"], np.minimum(1, r["KM"] * np.exp(z * r["std.err"])), rtol=1e-10)


@pytest.mark.parametrize("name,u", CASES)
def test_grouped_rows_of_the_refitted_model_equal_rs_converged_cox_fit(name, u):
    # calibration_at fits the Cox model itself; R's coxph run to convergence (cph stops at
    # eps = 1e-4, which moves S(u) by up to 1e-4) gives the same predictions, so the same table
    d = complete(name)
    cols, _, m = MODELS[name]
    tab = calibration.calibration_at(d["time"], d["event"], d[cols].to_numpy(), [u], groups=len(d) // m, n_boot=0)
    grouped = tab[tab.method == "grouped"].set_index("group")
    pc = r_predicted(name, u, d, "predicted_converged")
    cuts = calibration.rms_cuts(pc, len(d) // m)
    want = calibration.grouped_km(d["time"], d["event"], pc, u, cuts).set_index("group")
    np.testing.assert_array_equal(grouped["n"], want["n"])
    np.testing.assert_allclose(grouped["predicted"], want["predicted"], rtol=1e-7)
    np.testing.assert_allclose(grouped[["observed", "observed_lower", "observed_upper"]],
                               want[["observed", "observed_lower", "observed_upper"]], rtol=1e-12)
    summary = tab[tab.method == "summary"].set_index("statistic")["value"]
    assert summary["mean_predicted_risk"] == pytest.approx(np.mean(1 - pc), rel=1e-7)


@pytest.mark.parametrize("name,u", CASES)
def test_smooth_curve_ici_e50_e90_equal_austin_et_al_in_r(name, u):
    d = complete(name)
    p = r_predicted(name, u, d)
    sm = ref(name, u, "smooth")
    grid = sm[sm.statistic == "predicted"].sort_values("key")["value"].to_numpy()
    got = calibration.smooth_calibration(d["time"], d["event"], p, u, grid)
    np.testing.assert_allclose(got["knots"], sm[sm.statistic == "knot"].sort_values("key")["value"], rtol=1e-10)
    np.testing.assert_allclose(got["grid_observed"], sm[sm.statistic == "observed"].sort_values("key")["value"],
                               rtol=1e-7)
    for stat in ("ICI", "E50", "E90"):
        assert got[stat.lower()] == pytest.approx(r_stat(sm, stat), rel=1e-7), stat
        # Austin et al.'s own code (cph, stops at eps = 1e-4) is within 1 % of the converged fit
        assert got[stat.lower()] == pytest.approx(r_stat(sm, f"{stat}_cph"), rel=0.01), stat


def test_bootstrap_optimism_is_within_monte_carlo_error_of_rms_calibrate():
    # Both are means of B = 1000 replicates of (KM - predicted in the resample) - (the same on the
    # original patients); their difference has SD sd * sqrt(2 / B). 4 SDs: a false alarm in
    # about 1 of 16 000 groups.
    name, u = "lung", 365
    d = complete(name)
    cols, _, m = MODELS[name]
    tab = calibration.calibration_at(d["time"], d["event"], d[cols].to_numpy(), [u], groups=len(d) // m,
                                     n_boot=1000, rng=np.random.default_rng(2024))
    got = tab[tab.method == "grouped"].set_index("group")
    r = ref(name, u, "grouped").pivot(index="key", columns="statistic", values="value")
    assert (got["n_replicates"] >= 990).all()
    tol = 4 * got["optimism_sd"] * np.sqrt(2 / 1000)
    assert (np.abs(got["optimism"] - r["mean.optimism"]) <= tol).all(), pd.DataFrame(
        {"ours": got["optimism"], "rms": r["mean.optimism"], "tol": tol})
    np.testing.assert_allclose(got["corrected"], got["observed"] - got["optimism"], rtol=1e-12)


def simulated(n, rng, beta=(0.8, -0.5), scale=400.0):
    """Exponential proportional hazards: S(u | x) = exp(-u / scale exp(x'beta)); uniform censoring."""
    X = rng.normal(size=(n, len(beta)))
    lp = X @ np.asarray(beta)
    t = rng.exponential(scale * np.exp(-lp))
    c = rng.uniform(0, 3 * scale, n)
    return np.minimum(t, c), t <= c, X, lp


def test_true_survival_is_calibrated_and_a_doubled_hazard_is_not():
    rng = np.random.default_rng(7)
    time, event, X, lp = simulated(3000, rng)
    u, scale = 365.0, 400.0
    truth = np.exp(-u / scale * np.exp(lp))  # the simulator's own S(u | x), not an estimate
    good = calibration.smooth_calibration(time, event, truth, u)
    bad = calibration.smooth_calibration(time, event, truth ** 2, u)  # hazard doubled
    assert good["ici"] < 0.02 < 0.05 < bad["ici"]
    # a doubled hazard under-predicts survival everywhere: observed above predicted
    assert np.all(bad["observed"] > truth ** 2)
    cuts = calibration.rms_cuts(truth, 10)
    grouped = calibration.grouped_km(time, event, truth, u, cuts)
    inside = (grouped["observed_lower"] <= grouped["predicted"]) & (grouped["predicted"] <= grouped["observed_upper"])
    assert inside.sum() >= 8  # 95 % CIs: 10 groups, 8 or more cover with probability > 0.98


def test_a_correct_model_is_calibrated_in_the_large_and_an_overfitted_one_shrinks():
    rng = np.random.default_rng(11)
    time, event, X, _ = simulated(400, rng)
    tab = calibration.calibration_at(time, event, X, [180.0, 365.0], groups=5, n_boot=100,
                                     rng=np.random.default_rng(1))
    assert set(tab["status"]) == {"ok"}
    summary = tab[tab.method == "summary"].set_index(["horizon_days", "statistic"])
    for u in (180.0, 365.0):
        assert abs(summary.loc[(u, "calibration_in_the_large"), "value"]) < 0.03
        assert summary.loc[(u, "slope"), "value"] == pytest.approx(1.0, abs=1e-6)  # cll = log H0 + lp
        assert summary.loc[(u, "slope"), "corrected"] > 0.85
    # 15 noise covariates on 80 patients: the bootstrap sees the optimism
    time, event, X, _ = simulated(80, np.random.default_rng(3), beta=(0.3,) + (0.0,) * 15)
    tab = calibration.calibration_at(time, event, X, [365.0], groups=3, n_boot=100, rng=np.random.default_rng(1))
    summary = tab[tab.method == "summary"].set_index("statistic")
    assert summary.loc["slope", "value"] == pytest.approx(1.0, abs=1e-6)
    assert summary.loc["slope", "corrected"] < 0.7
    grouped = tab[tab.method == "grouped"].set_index("group")
    # optimism pulls the extreme groups' observed survival towards the middle
    assert grouped.loc["G1", "corrected"] > grouped.loc["G1", "observed"]
    assert grouped.loc[grouped.index[-1], "corrected"] < grouped.loc[grouped.index[-1], "observed"]
    smooth = tab[tab.method == "smooth"]
    assert (smooth["n_replicates"] > 90).all()
    low, high = smooth.iloc[0], smooth.iloc[-1]
    assert low["corrected"] > low["observed"] and high["corrected"] < high["observed"]


def test_calibrate_at_splits_the_calibration_table_and_it_fits_the_schema():
    rng = np.random.default_rng(5)
    time, event, X, _ = simulated(200, rng)
    strata = np.repeat(["a", "b"], 100)  # the pooled model: stratified by cohort
    curve, summary = calibration.calibrate_at(time, event, X, [200.0, 100_000.0], groups=4, n_boot=20,
                                              rng=np.random.default_rng(1), strata=strata)
    assert set(curve["method"]) == {"grouped", "smooth"} and set(summary["method"]) == {"summary"}
    assert curve[curve.method == "grouped"]["n"].sum() == 200
    far = summary[summary.horizon_days == 100_000.0]
    assert far["status"].str.startswith("not computed").all()
    table = pd.concat([curve, summary]).assign(cohort="pooled", endpoint="os", model_set="clinical")
    tables.check(table, "calibration")


def test_bad_input_stops_with_what_to_do():
    with pytest.raises(ValueError, match="3 event indicators for 4 times"):
        calibration.calibration_at([1, 2, 3, 4], [1, 0, 1], np.ones((4, 1)), [2])
    with pytest.raises(ValueError, match="groups = 0"):
        calibration.calibration_at([1, 2, 3, 4], [1, 0, 1, 1], np.ones((4, 1)), [2], groups=0)


@pytest.mark.skipif(not r_has("rms"), reason="R with rms not installed (apt: r-cran-rms)")
def test_calibration_reference_is_reproduced_by_live_r(tmp_path):
    for name in MODELS:
        shutil.copy(R_DIR / f"{name}.csv", tmp_path)
    subprocess.run(["Rscript", str(R_DIR / "calibration_reference.R"), str(tmp_path), "2"], check=True,
                   capture_output=True, timeout=300)
    live = pd.read_csv(tmp_path / "calibration_reference.csv", keep_default_na=False, na_values=["NA"])
    boot_free = {"KM", "mean.predicted", "std.err", "index.orig", "survival", "cut", "knot", "predicted",
                 "observed", "ICI", "E50", "E90", "ICI_cph", "E50_cph", "E90_cph"}
    key = ["dataset", "horizon_days", "analysis", "key", "statistic"]
    rec = REF[REF.statistic.isin(boot_free) & (REF.analysis != "version")]
    m = rec.merge(live[live.statistic.isin(boot_free)], on=key, suffixes=("_rec", "_live"), how="outer",
                  indicator=True)
    assert (m["_merge"] == "both").all(), m[m["_merge"] != "both"].head()
    np.testing.assert_allclose(m["value_live"], m["value_rec"], rtol=1e-9)
