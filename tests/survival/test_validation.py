"""Bootstrap optimism-corrected validation against rms::validate.cph, and its batched pieces
against the libraries on explicitly resampled (expanded) data.

tests/survival/r/validation.R wrote validation_reference.csv (R 4.2.2, rms 6.5, B = 1000, seed
20261202) on lung, Melanoma and pbc. Apparent indices are deterministic: equal to R's to 1e-6.
Corrected indices are bootstrap estimates with different random numbers in R and here: their
difference has standard error sqrt(sd^2 / B_R + sd^2 / B_py), sd the spread of one replicate's
optimism (estimated from our replicates); the tolerance is 4 such standard errors (a false
alarm about once in 16,000 comparisons).
"""

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter

from tumorburden.survival import concordance, cox
from tumorburden.survival.calibration import weighted_km_at
from tumorburden.survival.validation import fit_cox_batch, gini_md, somers_dxy, validate_cox
from r_live import r_has

R_DIR = Path(__file__).parent / "r"
REF = pd.read_csv(R_DIR / "validation_reference.csv")
R_INDEX = {"Dxy": "Dxy", "R2": "R2", "Slope": "slope", "D": "D", "U": "U", "Q": "Q", "g": "g"}


def _models():
    lung = pd.read_csv(R_DIR / "lung.csv")
    mel = pd.read_csv(R_DIR / "melanoma.csv")
    mel["log_thickness"] = np.log(mel["thickness"])
    pbc = pd.read_csv(R_DIR / "pbc.csv")
    pbc["log_bili"], pbc["log_protime"] = np.log(pbc["bili"]), np.log(pbc["protime"])
    return {"lung": (lung, ["age", "sex", "ph.ecog"]),
            "melanoma": (mel, ["log_thickness", "ulcer", "age", "sex"]),
            "pbc": (pbc, ["age", "log_bili", "albumin", "edema", "log_protime"])}


MODELS = _models()


def _validate(name, n_boot, seed=1):
    data, covs = MODELS[name]
    d = data.dropna(subset=["time", "event", *covs])
    return validate_cox(d["time"], d["event"], d[covs].to_numpy(float), (), n_boot, np.random.default_rng(seed))


def _compare(ours, ref, name):
    r = ref[(ref.dataset == name) & ref["index"].isin(list(R_INDEX))]
    r = r.assign(index=lambda x: x["index"].map(R_INDEX)).set_index("index")
    o = ours.set_index("index").loc[r.index]
    g_converged = ref[(ref.dataset == name) & (ref["index"] == "g_converged")]["apparent"].iloc[0]
    assert o.loc["g", "apparent"] == pytest.approx(g_converged, rel=1e-8)
    # cph's loose convergence (eps 1e-4 in log L) moves its coefficients, hence g, by ~1e-4
    np.testing.assert_allclose(o.loc["g", "apparent"], r.loc["g", "apparent"], rtol=1e-3)
    o, r = o.drop(index="g"), r.drop(index="g")
    np.testing.assert_allclose(o["apparent"], r["apparent"], rtol=1e-6, atol=1e-9)
    se = np.sqrt(o["optimism_sd"] ** 2 / o["n_replicates"] + o["optimism_sd"] ** 2 / r["B"])
    excess = (o["corrected"] - r["corrected"]).abs() - 4 * se
    assert (excess <= 0).all(), pd.DataFrame({"ours": o["corrected"], "R": r["corrected"], "4 se": 4 * se})


@pytest.mark.parametrize("name", ["lung", "melanoma", "pbc"])
def test_validate_equals_rms_apparent_exactly_corrected_within_monte_carlo_error(name):
    ours = _validate(name, 1000)
    _compare(ours, REF, name)
    c = ours.set_index("index")
    assert c.loc["C", "apparent"] == pytest.approx((1 + c.loc["Dxy", "apparent"]) / 2)
    assert (c["n_failed"] == 0).all() and (c["n_replicates"] == 1000).all()


@pytest.mark.skipif(not r_has("rms"), reason="R with rms not installed (apt: r-base-core r-cran-rms)")
def test_live_rms_reproduces_recorded_apparent_and_agrees_within_monte_carlo(tmp_path):
    subprocess.run(["Rscript", str(R_DIR / "validation.R"), str(tmp_path), "200"], check=True, capture_output=True,
                   timeout=300)
    live = pd.read_csv(tmp_path / "validation_reference.csv")
    rec = REF[REF.dataset != "version"].set_index(["dataset", "index"])
    lv = live[live.dataset != "version"].set_index(["dataset", "index"]).loc[rec.index]
    np.testing.assert_allclose(lv["apparent"], rec["apparent"], rtol=1e-9)
    assert len(lv) == len(live[live.dataset != "version"])
    _compare(_validate("lung", 200), live, "lung")


def _resample(n, seed):
    idx = np.random.default_rng(seed).integers(0, n, n)
    return idx, np.bincount(idx, minlength=n).astype(float)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_weighted_fit_equals_fit_on_the_resampled_rows(ties):
    # lung has tied death times; a resample adds tied copies: Efron must treat copies as deaths
    data, covs = MODELS["lung"]
    d = data.dropna(subset=covs).reset_index(drop=True)
    idx, w = _resample(len(d), 3)
    fit = fit_cox_batch(d["time"], d["event"], d[covs].to_numpy(float), w[None], ties=ties)
    rows, _ = cox.fit_cox(d.iloc[idx].reset_index(drop=True), "time", "event", covs, ties=ties)
    want = np.array([r["coef"] for r in rows])
    np.testing.assert_allclose(fit["beta"][0], want, rtol=1e-4 if ties == "efron" else 1e-7)
    lr = rows[0]["lr_chisq"]
    assert 2 * (fit["loglik"][0] - fit["loglik0"][0]) == pytest.approx(lr, rel=1e-6)


def test_weighted_dxy_gini_and_km_equal_the_expanded_sample():
    data, covs = MODELS["melanoma"]
    d = data.dropna(subset=covs).reset_index(drop=True)
    idx, w = _resample(len(d), 5)
    lp = d[covs].to_numpy(float) @ np.array([0.5, 1.0, 0.01, 0.3])
    e = d.iloc[idx]
    want_c = concordance.harrell_c(e["time"].to_numpy(), e["event"].to_numpy(), lp[idx])
    assert somers_dxy(d["time"], d["event"], lp[None], w[None])[0] == pytest.approx(2 * want_c - 1, abs=1e-12)
    x = lp[idx]
    brute = np.abs(x[:, None] - x[None, :]).sum() / (len(x) * (len(x) - 1))
    assert gini_md(lp[None], w[None])[0] == pytest.approx(brute, rel=1e-12)
    kmf = KaplanMeierFitter().fit(e["time"], e["event"])
    assert weighted_km_at(d["time"], d["event"], w[None], 1500.0)[0] == pytest.approx(
        float(kmf.survival_function_at_times(1500.0).iloc[0]), rel=1e-12)


def test_a_separating_resample_is_left_out_and_counted():
    rng = np.random.default_rng(0)
    n = 40
    x = np.r_[np.zeros(n - 3), np.ones(3)]
    time = rng.exponential(100, n)
    event = np.ones(n)
    time[x == 1] = 0.5  # the three x = 1 patients die first: some resamples separate
    out = validate_cox(time, event, x[:, None], (), 200, np.random.default_rng(1))
    row = out.set_index("index").loc["slope"]
    assert row["n_failed"] > 0 and row["n_replicates"] + row["n_failed"] == 200


# --- the batched fit against the one that recomputed every replicate at every step -------------


def _small_trial(n=14, seed=1, B=40):
    """A small two-stratum trial with tied times and 5 covariates: many resamples separate, and
    some of them send the Newton steps out of the finite numbers."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    X[:, 1], X[:, 4] = rng.integers(0, 2, n), rng.integers(0, 3, n)
    t = np.round(rng.exponential(300 * np.exp(-X @ np.array([0.8, -0.5, 0.3, 0.0, 0.4]))), -1) + 10
    c = rng.uniform(100, 900, n)
    W = np.zeros((B, n))
    np.add.at(W, (np.repeat(np.arange(B), n), rng.integers(0, n, (B, n)).ravel()), 1.0)
    return np.minimum(t, c), t <= c, X - X.mean(axis=0), W, np.repeat([0, 1], [n // 2, n - n // 2])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the old fit's overflows on separating replicates
@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("design", ["shared", "per replicate", "one covariate", "one replicate"])
def test_batched_fit_equals_the_fit_that_recomputed_every_replicate_to_the_last_bit(ties, design):
    import cox_batch_reference as before

    time, event, X, W, strata = _small_trial()
    if design == "per replicate":  # as the test fits of validate_cox and calibration's smooth curves
        X = np.stack([X * (1 + 0.1 * b) for b in range(len(W))])
    elif design == "one covariate":  # BLAS takes another kernel for a one-column product
        X = X[:, :1]
    elif design == "one replicate":  # ... and for a one-row product
        W = W[1:2]
    old = before.fit_cox_batch(time, event, X, W, strata, ties)
    new = fit_cox_batch(time, event, X, W, strata, ties)
    np.testing.assert_array_equal(new["ok"], old["ok"])
    ok = old["ok"]
    for key in ("beta", "loglik", "loglik0", "eta", "info"):
        np.testing.assert_array_equal(new[key][ok], old[key][ok], err_msg=key)
    for (s_old, t_old, dh_old), (s_new, t_new, dh_new) in zip(old["hazards"], new["hazards"], strict=True):
        assert s_new == s_old
        np.testing.assert_array_equal(t_new, t_old)
        np.testing.assert_array_equal(dh_new[ok], dh_old[ok])
    lost = ~np.isfinite(old["beta"]).all(axis=1)
    if design in ("shared", "per replicate"):  # the case has replicates of every kind
        assert ok.any() and (~ok & ~lost).any() and lost.any()
    # a replicate whose coefficients left the finite numbers is reported as no fit at all
    assert np.isnan(new["beta"][lost]).all() and np.isnan(new["loglik"][lost]).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_validation_and_calibration_tables_are_those_of_the_fit_that_recomputed_every_replicate(monkeypatch):
    import cox_batch_reference as before
    from tumorburden.survival import calibration, validation

    time, event, X, _, strata = _small_trial()
    horizons = (150.0, 300.0)

    def tables():
        v = validate_cox(time, event, X[:, :3], horizons, 40, np.random.default_rng(4), strata)
        c = calibration.calibration_at(time, event, X[:, :3], horizons, 3, 40, np.random.default_rng(5), strata)
        return v, c

    new = tables()
    monkeypatch.setattr(validation, "fit_cox_batch", before.fit_cox_batch)
    monkeypatch.setattr(calibration, "fit_cox_batch", before.fit_cox_batch)
    old = tables()
    assert old[0]["n_failed"].iloc[0] > 0  # some replicates separate
    for o, n in zip(old, new):
        pd.testing.assert_frame_equal(n, o, check_exact=True)
