"""The joint model's mixed-model part against nlme::lme (method = "ML"; nlme 3.1-162, R 4.2.2).

tests/survival/r/joint_reference.R wrote joint_reference.csv (R's estimates on nlme's Orthodont,
written to orthodont.csv, and on joint_burden.csv, ln burden of 60 patients from
tests/survival/joint_dgp.py; and, for `time_basis: spline`, lme(y ~ ns(time, df = 2), random =
~ ns(time, df = 2) | id) on joint_stein.csv, the Stein-shaped ln burden of 80 patients of the
project's simulator). Where Rscript with nlme is installed,
test_joint_reference_is_reproduced_by_live_r re-runs R and compares with the recorded numbers.
Standard errors are vcov(fit), the inverse of sum X' V^-1 X at the ML estimates (summary.lme
prints them times sqrt(N / (N - p)) for ML fits, its adjustSigma).
"""

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from r_live import r_has
from tumorburden.survival import joint

R_DIR = Path(__file__).parent / "r"
REF = pd.read_csv(R_DIR / "joint_reference.csv")


def ref(dataset, statistic):
    r = REF[(REF.dataset == dataset) & (REF.statistic == statistic)]
    assert len(r) == 1, (dataset, statistic)
    return float(r["value"].iloc[0])


def dataset(name) -> joint.JointData:
    if name == "orthodont":
        d = pd.read_csv(R_DIR / "orthodont.csv")
        lon = pd.DataFrame({"patient_id": d["Subject"], "days": d["age"] * joint.DAYS_PER_YEAR, "y": d["distance"]})
    else:
        d = pd.read_csv(R_DIR / ("joint_burden.csv" if name == "burden" else "joint_stein.csv"))
        lon = pd.DataFrame({"patient_id": d["patient_id"], "days": d["years"] * joint.DAYS_PER_YEAR, "y": d["y"]})
    # the mixed model ignores the survival outcome: every patient followed beyond its last scan
    surv = pd.DataFrame({"patient_id": sorted(lon["patient_id"].unique()), "time": 1e9, "event": 0})
    return joint.joint_data(lon, surv)


def basis_of(name, data) -> joint.TimeBasis:
    return joint.time_basis("spline" if name == "stein" else "linear", data.t[data.mask], 2)


@pytest.fixture(scope="module", params=["orthodont", "burden", "stein"])
def fitted(request):
    data = dataset(request.param)
    return request.param, data, joint.fit_mixed_model(data, basis_of(request.param, data))


def test_recorded_versions():
    assert ref("3.1.162", "nlme_version") == 0


def test_same_data_as_r(fitted):
    name, data, _ = fitted
    assert data.mask.sum() == ref(name, "n_obs") and data.n == ref(name, "n_groups")


def test_mixed_model_equals_nlme_lme_ml_at_printed_precision(fitted):
    # summary.lme prints fixed effects to 6-7 significant digits and variance components to 7:
    # agreement to rel 1e-5 is the printed precision
    name, _, fit = fitted
    D = fit.D
    sd = np.sqrt(np.diag(D))
    if name == "stein":  # the spline: R's names, ns's knots too
        labels = fit.basis.labels
        got = {"sigma": fit.sigma, "loglik": fit.loglik, "knot_1": fit.basis.interior[0],
               "boundary_lo": fit.basis.boundary[0], "boundary_hi": fit.basis.boundary[1]}
        for a, label in enumerate(labels):
            got |= {f"beta_{label}": fit.beta[a], f"se_{label}": fit.se_beta[a], f"sd_{label}": sd[a]}
            got |= {f"corr_{label}_{labels[b]}": D[a, b] / (sd[a] * sd[b]) for b in range(a)}
        assert len(got) == 17
    else:
        got = {"beta_intercept": fit.beta[0], "beta_time": fit.beta[1], "sigma": fit.sigma,
               "sd_intercept": sd[0], "sd_slope": sd[1], "corr_intercept_slope": D[0, 1] / (sd[0] * sd[1]),
               "se_intercept": fit.se_beta[0], "se_time": fit.se_beta[1], "loglik": fit.loglik}
    for stat, value in got.items():
        assert value == pytest.approx(ref(name, stat), rel=1e-5, abs=1e-7), (name, stat)


def test_spline_basis_equals_r_ns_inside_and_beyond_the_boundary_knots():
    data = dataset("stein")
    basis = basis_of("stein", data)
    for at in (-0.2, 0, 0.3, 1, 2.5):
        x, _ = basis.design(np.array([float(at)]))
        assert x[0, 0] == 1.0  # the intercept column
        for k in (1, 2):
            assert x[0, k] == pytest.approx(ref("stein", f"ns{k}_at_{at:g}"), rel=1e-10, abs=1e-12), (at, k)


def test_joint_loglik_without_association_is_mixed_model_plus_survival(fitted):
    # alpha = 0: the joint likelihood factorises into the mixed model's and an exponential
    # model's, so at the LMM estimates it equals nlme's logLik plus sum(d log lam - lam T)
    name, data, fit = fitted
    data = dataclasses.replace(data, event=(np.arange(data.n) % 3 == 0).astype(float), time=np.full(data.n, 2.0))
    layout = joint.Layout(n_pieces=1, n_covariates=0, slope=False, basis=fit.basis)
    lam = 0.7
    th = np.array([*fit.beta, np.log(fit.sigma), *joint.cholesky_values(fit.L), np.log(lam), 0.0])
    ll = joint.loglik_terms(th, data, np.zeros(0), layout, joint.Quadrature()).sum()
    expected = ref(name, "loglik") + (data.event * np.log(lam) - lam * data.time).sum()
    assert ll == pytest.approx(expected, rel=1e-7)


@pytest.mark.skipif(not r_has("nlme"), reason="Rscript with nlme not installed")
def test_joint_reference_is_reproduced_by_live_r(tmp_path):
    shutil.copy(R_DIR / "joint_burden.csv", tmp_path)
    shutil.copy(R_DIR / "joint_stein.csv", tmp_path)
    subprocess.run(["Rscript", str(R_DIR / "joint_reference.R"), str(tmp_path)], check=True, capture_output=True,
                   timeout=300)
    live = pd.read_csv(tmp_path / "joint_reference.csv")
    merged = live.merge(REF, on=["dataset", "statistic"], suffixes=("_live", "_recorded"))
    assert len(merged) == len(REF)
    assert np.allclose(merged["value_live"], merged["value_recorded"], rtol=1e-9, atol=0)
