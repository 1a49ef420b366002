"""Stein model choice (tumgr): gd, gx, dx, gdphi by AIC among fits with significant parameters."""

import math

import numpy as np
import pytest

from tumorburden.kinetics import stein

T = np.array([0, 42, 84, 126, 168, 250, 330.0])


def noisy(f, rel=0.02, seed=0):
    rng = np.random.default_rng(seed)
    return f * (1 + rel * rng.standard_normal(len(f)))


def test_gd_recovered_and_chosen():
    c = stein.choose_model(T, 20.0 * noisy(stein.gd(T, 0.004, 0.015)))
    assert c.model == "gd"
    assert c.g == pytest.approx(0.004, rel=0.15) and c.d == pytest.approx(0.015, rel=0.15)
    assert c.g_reason is None and c.d_reason is None


def test_pure_decay_chooses_dx_and_says_why_g_is_missing():
    c = stein.choose_model(T, 8.0 * noisy(stein.dx(T, 0.01)))
    assert c.model == "dx" and c.d == pytest.approx(0.01, rel=0.1)
    assert math.isnan(c.g) and c.g_reason == "model dx chosen (no growth term)"


def test_pure_growth_chooses_gx():
    # noise-free: the decay of gd sits at its bound 0, not significant, so gx wins
    c = stein.choose_model(T, 3.0 * stein.gx(T, 0.005))
    assert c.model == "gx" and c.g == pytest.approx(0.005, rel=1e-4)
    assert math.isnan(c.d) and "no regression term" in c.d_reason
    # with 2 % noise g is still recovered, whichever model the noise favours
    assert stein.choose_model(T, 3.0 * noisy(stein.gx(T, 0.005))).g == pytest.approx(0.005, rel=0.1)


def test_no_model_fits_a_flat_burden():
    c = stein.choose_model(T, np.full(len(T), 5.0))
    assert c.model is None and math.isnan(c.g) and c.g_reason.startswith("no Stein model fits")
    assert "not significant" in c.g_reason


def test_gd_needs_a_residual_degree_of_freedom():
    fits = {f.model: f for f in stein.choose_model([0, 60, 120], [5.0, 2.0, 3.0]).fits}
    assert fits["gdphi"].problem == "gdphi: needs at least 4 scans"
    assert fits["gd"].params  # 3 points, 2 parameters: fitted (whether significant or not)


def test_unequal_intervals():
    t = np.array([0, 20, 130, 150, 400.0])
    c = stein.choose_model(t, 10 * stein.gd(t, 0.003, 0.02))
    assert c.model in ("gd", "gdphi") and c.g == pytest.approx(0.003, rel=0.05)
