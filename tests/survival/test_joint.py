"""The joint model (survival/joint.py) on hand-computable pieces, its quadrature, one recovery
on data from tests/survival/joint_dgp.py, the dynamic predictions and the tables."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from joint_dgp import TRUTH, simulate
from tumorburden.survival import joint


def one_patient(y, days, time_days, event):
    lon = pd.DataFrame({"patient_id": "A", "scan_id": [f"A{k}" for k in range(len(y))], "days": days, "y": y})
    return joint.joint_data(lon, pd.DataFrame({"patient_id": ["A"], "time": [time_days], "event": [event]}))


@pytest.mark.parametrize("alpha_s", [None, -0.9])
def test_one_patient_without_random_effects_equals_closed_form(alpha_s):
    # D -> 0 (SDs e^-25): the scans are independent normals around b0 + b1 t and the hazard is
    # lam_k exp(alpha (b0 + b1 t)); its integral over each piece is closed-form
    y = np.array([3.1, 3.3, 3.2, 3.6])
    days = np.array([-5.0, 60.0, 120.0, 200.0])
    T, knot = 300 / 365.25, 100 / 365.25
    data = one_patient(y, days, 300.0, 1)
    b0, b1, sigma, lam1, lam2, alpha = 3.0, 0.8, 0.3, 0.2, 0.5, 0.7
    layout = joint.Layout(n_pieces=2, n_covariates=0, slope=alpha_s is not None)
    th = np.array([b0, b1, math.log(sigma), -25.0, 0.0, -25.0, math.log(lam1), math.log(lam2), alpha,
                   *([] if alpha_s is None else [alpha_s])])
    got = joint.loglik_terms(th, data, np.array([knot]), layout, joint.Quadrature())[0]
    t = days / 365.25
    k = alpha * b1
    slope_term = 0.0 if alpha_s is None else alpha_s * b1
    H = math.exp(alpha * b0 + slope_term) * (lam1 * (math.exp(k * knot) - 1) / k
                                             + lam2 * (math.exp(k * T) - math.exp(k * knot)) / k)
    expected = stats.norm.logpdf(y, b0 + b1 * t, sigma).sum() + math.log(lam2) + alpha * (b0 + b1 * T) + slope_term - H
    assert got == pytest.approx(expected, rel=1e-10)


def test_spline_basis_spans_lines_and_is_linear_beyond_its_boundary_knots():
    times = np.array([-0.02, 0.1, 0.15, 0.3, 0.45, 0.6, 0.9, 1.3])
    basis = joint.time_basis("spline", times, 3)
    assert basis.size == 4 and basis.labels == ("intercept", "ns1", "ns2", "ns3")
    assert basis.interior == pytest.approx(tuple(np.quantile(times, [1 / 3, 2 / 3])))
    t = np.linspace(-1.0, 3.0, 41)
    x, dx = basis.design(t)
    # a natural spline space holds every straight line: 2 - 0.7 t is fitted exactly
    coef = np.linalg.lstsq(x, 2 - 0.7 * t, rcond=None)[0]
    assert np.allclose(x @ coef, 2 - 0.7 * t, atol=1e-10)
    # the derivative is the basis' own (central differences), and constant beyond the boundary knots
    h = 1e-6
    numeric = (basis.design(t + h)[0] - basis.design(t - h)[0]) / (2 * h)
    assert np.allclose(dx, numeric, atol=1e-5)
    below, above = t < times.min(), t > times.max()
    assert np.allclose(dx[below], dx[below][0]) and np.allclose(dx[above], dx[above][0])
    assert not np.allclose(dx[~below & ~above], dx[~below & ~above][0])  # curved inside
    # the shape of the input is kept
    assert basis.design(np.zeros((2, 3, 5)))[0].shape == (2, 3, 5, 4)


def test_decay_basis_finds_the_shrinking_rate_of_the_data():
    # ln burden = a_i + b_i t + c_i exp(-3 t) + noise: the profile likelihood's rate is near 3
    rng = np.random.default_rng(5)
    n, t = 80, np.array([0.0, 0.15, 0.3, 0.45, 0.6, 0.8, 1.0])
    u = rng.normal(size=(n, 3)) * [0.8, 0.3, 0.4]
    y = (3.0 + u[:, :1]) + (0.6 + u[:, 1:2]) * t + (1.0 + u[:, 2:]) * np.exp(-3.0 * t) + rng.normal(0, 0.05, (n, len(t)))
    pid = np.repeat([f"P{i}" for i in range(n)], len(t))
    lon = pd.DataFrame({"patient_id": pid, "days": np.tile(t, n) * 365.25, "y": y.ravel()})
    data = joint.joint_data(lon, pd.DataFrame({"patient_id": np.unique(pid), "time": 1e9, "event": 0}))
    basis = joint.decay_basis(data)
    assert basis.kind == "decay" and basis.size == 3 and basis.rate == pytest.approx(3.0, rel=0.1)
    x, dx = basis.design(np.array([0.5]))
    assert np.allclose(x[0], [1, 0.5, math.exp(-0.5 * basis.rate)])
    assert np.allclose(dx[0], [0, 1, -basis.rate * math.exp(-0.5 * basis.rate)])


@pytest.mark.parametrize("alpha_s", [0.0, 0.2])
def test_one_patient_on_a_spline_without_random_effects_equals_numerical_integration(alpha_s):
    # D -> 0: the trajectory is x(t)'beta; the hazard lam_k exp(alpha m(t) + alpha_s m'(t)), with a
    # slope that changes along the curve, integrated here by adaptive quadrature (scipy)
    y = np.array([3.1, 2.6, 2.4, 2.9])
    days = np.array([-5.0, 60.0, 120.0, 200.0])
    data = one_patient(y, days, 300.0, 1)
    basis = joint.TimeBasis.natural_spline(np.array([-0.02, 0.1, 0.2, 0.3, 0.5]), 2)
    beta, sigma, lam, alpha = np.array([3.0, -0.5, 0.3]), 0.3, (0.2, 0.5), 0.7
    knot, T = 100 / 365.25, 300 / 365.25
    layout = joint.Layout(n_pieces=2, n_covariates=0, slope=alpha_s != 0.0, basis=basis)
    th = np.array([*beta, math.log(sigma), -25.0, 0.0, -25.0, 0.0, 0.0, -25.0, *np.log(lam), alpha,
                   *([alpha_s] if alpha_s else [])])
    got = joint.loglik_terms(th, data, np.array([knot]), layout, joint.Quadrature(3, 5))[0]

    def log_hazard(s):
        x, dx = basis.design(np.array([s]))
        return math.log(lam[int(s > knot)]) + alpha * (x[0] @ beta) + alpha_s * (dx[0] @ beta)

    H = sum(integrate.quad(lambda s: math.exp(log_hazard(s)), lo, hi, epsabs=0, epsrel=1e-12)[0]
            for lo, hi in ((0.0, knot), (knot, T)))
    m = basis.design(days / 365.25)[0] @ beta
    expected = stats.norm.logpdf(y, m, sigma).sum() + log_hazard(T) - H
    # the Legendre pieces are cut at the spline's knots too (its third derivative jumps there), so
    # the default 5 nodes per piece are as good as adaptive quadrature
    assert got == pytest.approx(expected, rel=1e-10)


def test_legendre_cumulative_hazard_converges_to_closed_form():
    knots = np.array([0.3, 1.1])
    upper = np.array([0.2, 0.9, 2.5])
    a, c = np.array([[3.0], [2.0], [4.0]]), np.array([[0.5], [-1.0], [2.0]])
    log_lam = np.log([0.1, 0.3, 0.2])
    alpha = 0.6
    edges = np.array([0.0, 0.3, 1.1, np.inf])
    exact = []
    for r in range(3):
        total = 0.0
        for kk in range(3):
            lo, hi = edges[kk], min(edges[kk + 1], upper[r])
            if hi > lo:
                total += math.exp(log_lam[kk]) * integrate.quad(lambda s: math.exp(alpha * (a[r, 0] + c[r, 0] * s)), lo, hi,
                                                                epsabs=0, epsrel=1e-13)[0]
        exact.append(total)
    errors = []
    for q in (1, 2, 5):
        s, ws = joint.legendre_grid(upper, knots, q)
        Xs, dXs = joint.TimeBasis().design(s)
        H = joint.cumulative_hazard(np.stack([a, c], -1), Xs, dXs, ws, log_lam, np.zeros(3), alpha, 0.0)
        errors.append(np.max(np.abs(H[:, 0] / exact - 1)))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-9


def test_gauss_hermite_rule_gives_normal_moments():
    # E exp(k'Z), Z ~ N(0, I): exp(|k|^2 / 2); the rule is exact for polynomials of degree < 2n
    z, w = joint.gauss_hermite(9, 2)
    assert w.sum() == pytest.approx(1.0, abs=1e-14)
    assert (w * z[:, 0] ** 2 * z[:, 1] ** 2).sum() == pytest.approx(1.0, abs=1e-12)
    k = np.array([0.8, -0.5])
    assert (w * np.exp(z @ k)).sum() == pytest.approx(math.exp(k @ k / 2), rel=1e-7)


@pytest.fixture(scope="module")
def simulated():
    lon, surv = simulate(200, np.random.default_rng(11))
    return lon, surv, joint.joint_data(lon, surv)


def truth_theta(data, knots):
    L = np.linalg.cholesky(np.array([[TRUTH["sd0"] ** 2, TRUTH["rho"] * TRUTH["sd0"] * TRUTH["sd1"]],
                                     [TRUTH["rho"] * TRUTH["sd0"] * TRUTH["sd1"], TRUTH["sd1"] ** 2]]))
    return np.concatenate([[TRUTH["b0"], TRUTH["b1"], math.log(TRUTH["sigma"]), math.log(L[0, 0]), L[1, 0],
                            math.log(L[1, 1])], np.full(len(knots) + 1, math.log(TRUTH["lam0"])), [TRUTH["alpha"]]])


def test_gauss_hermite_rule_in_three_dimensions_gives_normal_moments():
    z, w = joint.gauss_hermite(5, 3)
    assert z.shape == (125, 3) and w.sum() == pytest.approx(1.0, abs=1e-14)
    k = np.array([0.5, -0.3, 0.2])
    assert (w * np.exp(z @ k)).sum() == pytest.approx(math.exp(k @ k / 2), rel=1e-6)
    assert (w * z[:, 0] * z[:, 2]).sum() == pytest.approx(0.0, abs=1e-14)


def test_marginal_likelihood_converges_in_hermite_nodes(simulated):
    _, _, data = simulated
    knots = joint.hazard_knots(data.time, data.event, 7)
    layout = joint.Layout(len(knots) + 1, 0, False)
    th = truth_theta(data, knots)
    ll = {n: joint.loglik_terms(th, data, knots, layout, joint.Quadrature(n, 5)).sum() for n in (3, 7, 15)}
    assert abs(ll[7] - ll[15]) < 1e-6 and abs(ll[3] - ll[15]) > abs(ll[7] - ll[15])


@pytest.fixture(scope="module")
def fitted(simulated):
    _, _, data = simulated
    return data, joint.fit_joint(data)


def test_fit_recovers_the_association_and_the_trajectory(fitted):
    data, fit = fitted
    assert fit.converged
    for name, true in (("alpha_value", TRUTH["alpha"]), ("beta_intercept", TRUTH["b0"]), ("beta_time", TRUTH["b1"])):
        est, se = fit.estimate(name)
        assert 0 < se < 0.5 and abs(est - true) < 3 * se, (name, est, se)


def test_sandwich_variance_agrees_with_the_observed_information_where_the_model_is_right(fitted):
    # on data from the model itself both estimate the same variance (Huber 1967); they differ
    # only by sampling noise of the per-patient scores
    data, fit = fitted
    design = joint.design_of(data, fit.basis, fit.knots, fit.quad.legendre)
    S = joint.patient_scores(lambda th: joint.loglik_terms(th, data, fit.knots, fit.layout, fit.quad, design),
                             fit.theta)
    assert np.abs(S.sum(0)).max() < 0.05  # the fit's score is zero
    robust = fit.cov_observed @ (S.T @ S) @ fit.cov_observed
    assert np.allclose(robust, fit.cov, rtol=1e-12)  # the default variance
    i = fit.names().index("alpha_value")
    assert 0.8 < math.sqrt(fit.cov[i, i] / fit.cov_observed[i, i]) < 1.25


def test_per_patient_hessians_are_exact_on_quadratic_terms_and_add_up_to_the_whole():
    # f_i(x) = x'A_i x / 2 + b_i'x: central differences are exact on quadratics (up to rounding)
    rng = np.random.default_rng(3)
    p, n = 4, 6
    M = rng.normal(size=(n, p, p))
    A = M @ M.transpose(0, 2, 1)
    b = rng.normal(size=(n, p))

    def terms(x):
        return 0.5 * np.einsum("a,nab,b->n", x, A, x) + b @ x

    x = rng.normal(size=p)
    H_i = joint.numerical_hessian(terms, x)
    assert H_i.shape == (p, p, n)
    assert np.allclose(np.moveaxis(H_i, -1, 0), A, rtol=1e-5, atol=1e-5)
    # the same differences taken of the sum: equal up to the rounding of h = 1e-4 steps
    assert np.allclose(H_i.sum(-1), joint.numerical_hessian(lambda th: terms(th).sum(), x), rtol=1e-6, atol=1e-6)


def test_one_step_jackknife_equals_refitting_without_each_observation_in_least_squares():
    # a quadratic objective: one Newton step from the full fit IS the fit without observation i, so
    # the one-step jackknife must equal the jackknife from n refits (np.linalg.lstsq without row i)
    rng = np.random.default_rng(5)
    n, p = 40, 3
    X = np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))])
    y = X @ np.array([1.0, -0.5, 2.0]) + rng.standard_t(3, size=n)  # heavy tails: leverage matters
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
    e = y - X @ beta
    S = X * e[:, None]  # per-observation scores of -e^2/2
    H_i = np.einsum("na,nb->abn", X, X)  # per-observation information
    got = joint.one_step_jackknife(H_i.sum(-1), H_i, S)
    loo = np.array([np.linalg.lstsq(np.delete(X, i, 0), np.delete(y, i), rcond=None)[0] for i in range(n)])
    dev = loo - loo.mean(0)
    assert np.allclose(got, (n - 1) / n * dev.T @ dev, rtol=1e-10, atol=1e-14)
    # and it is not the sandwich (which leaves the observation's own information in)
    sandwich = np.linalg.inv(X.T @ X) @ (S.T @ S) @ np.linalg.inv(X.T @ X)
    assert not np.allclose(got, sandwich, rtol=0.02)


def test_cr2_of_a_cluster_mean_by_hand():
    # y = mu + e, clusters {1, 3}, {2}, {6, 4, 2}: mu = 3, each cluster's score s_i = sum(y - 3) =
    # -2, -1, 3; H = N = 6, H_i = n_i, leverage n_i / N = 1/3, 1/6, 1/2, so
    # CR2 = sum s_i^2 / (1 - n_i/N) / N^2 = (4 / (2/3) + 1 / (5/6) + 9 / (1/2)) / 36 = 25.2 / 36 = 0.7
    # against the sandwich's (4 + 1 + 9) / 36
    S = np.array([[-2.0], [-1.0], [3.0]])
    H_i = np.array([[[2.0, 1.0, 3.0]]])
    cov, df, terms = joint.bias_reduced_sandwich(np.array([[6.0]]), H_i, S)
    assert cov[0, 0] == pytest.approx(0.7, rel=1e-12)
    assert np.allclose(terms.T @ terms, cov, rtol=1e-12)
    # the mean of G balanced clusters: Bell-McCaffrey df = G - 1 (Imbens & Kolesar 2016), whatever the data
    for G, m in ((4, 2), (7, 3)):
        _, df, _ = joint.bias_reduced_sandwich(np.array([[float(G * m)]]), np.full((1, 1, G), float(m)),
                                               np.arange(G, dtype=float)[:, None] - (G - 1) / 2)
        assert df[0] == pytest.approx(G - 1, rel=1e-12)


def test_cr2_and_its_df_equal_bell_mccaffrey_in_least_squares_with_clusters():
    # OLS with unequal clusters, computed independently in observation space: the CR2 meat
    # X_i'(I - P_ii)^-1/2 e_i (Bell & McCaffrey 2002) and the df (tr G'G)^2 / tr((G'G)^2), G's
    # column i = (I - P)[:, i] (I - P_ii)^-1/2 X_i (X'X)^-1 c (Imbens & Kolesar 2016, Omega = I)
    from scipy import linalg

    rng = np.random.default_rng(7)
    sizes = [1, 2, 3, 5, 8, 2, 4, 1, 6, 3]
    g = np.repeat(np.arange(len(sizes)), sizes)
    X = np.column_stack([np.ones(len(g)), rng.normal(size=len(g)), rng.exponential(size=len(g))])
    y = X @ np.array([1.0, 2.0, -1.0]) + rng.standard_t(3, size=len(g))
    M = np.linalg.inv(X.T @ X)
    e = y - X @ (M @ X.T @ y)
    P = X @ M @ X.T
    S = np.array([X[g == i].T @ e[g == i] for i in range(len(sizes))])
    H_i = np.stack([X[g == i].T @ X[g == i] for i in range(len(sizes))], -1)
    cov, df, _ = joint.bias_reduced_sandwich(X.T @ X, H_i, S)
    A = [np.real(linalg.inv(linalg.sqrtm(np.eye(m) - P[np.ix_(g == i, g == i)]))) for i, m in enumerate(sizes)]
    meat = sum(np.outer(X[g == i].T @ A[i] @ e[g == i], X[g == i].T @ A[i] @ e[g == i]) for i in range(len(sizes)))
    assert np.allclose(cov, M @ meat @ M, rtol=1e-10, atol=1e-15)
    for k in range(3):
        G = np.column_stack([(np.eye(len(g)) - P)[:, g == i] @ A[i] @ X[g == i] @ M[:, k] for i in range(len(sizes))])
        GG = G.T @ G
        assert df[k] == pytest.approx(np.trace(GG) ** 2 / np.trace(GG @ GG), rel=1e-10)
    assert (df < len(sizes) - 1).all()  # unequal clusters: fewer than G - 1


def test_cr2_variance_fit_keeps_the_estimate_and_the_other_variances(fitted):
    data, fit = fitted
    cr2 = joint.fit_joint(data, variance="cr2")
    assert np.array_equal(cr2.theta, fit.theta)  # the variance does not touch the estimate
    assert np.allclose(cr2.cov_sandwich, fit.cov, rtol=1e-4, atol=1e-8)
    assert cr2.cov is cr2.cov_cr2 and cr2.cov_jackknife is not None
    i = fit.names().index("alpha_value")
    # on data from the model itself (200 patients, no patient dominating) CR2 lies within a few % of
    # the sandwich, and its df for alpha is well above 30 but under n - 1
    assert 0.97 < math.sqrt(cr2.cov[i, i] / fit.cov[i, i]) < 1.1
    assert 30 < cr2.df_cr2[i] < data.n - 1
    # its CI takes the t quantile on that df, the other variances' the normal one
    row = next(r for r in joint.estimate_rows(cr2) if r["term"] == "alpha_value")
    assert row["upper"] - row["estimate"] == pytest.approx(stats.t.ppf(0.975, cr2.df_cr2[i]) * row["se"], rel=1e-12)
    assert row["p"] == pytest.approx(2 * stats.t.sf(abs(row["estimate"] / row["se"]), cr2.df_cr2[i]), rel=1e-12)
    row = next(r for r in joint.estimate_rows(fit) if r["term"] == "alpha_value")
    assert row["upper"] - row["estimate"] == pytest.approx(stats.norm.ppf(0.975) * row["se"], rel=1e-12)


def test_jackknife_variance_fit_keeps_the_other_two(fitted):
    data, fit = fitted
    jack = joint.fit_joint(data, variance="jackknife")
    assert np.array_equal(jack.theta, fit.theta)  # the variance does not touch the estimate
    # its information is the sum of the per-patient Hessians: the observed one, up to the rounding of
    # second differences of a log-likelihood of ~1e3 (~1e-5 in H)
    assert np.allclose(jack.cov_observed, fit.cov_observed, rtol=1e-4, atol=1e-8)
    assert np.allclose(jack.cov_sandwich, fit.cov, rtol=1e-4, atol=1e-8)
    i = fit.names().index("alpha_value")
    # on data from the model itself (200 patients) the jackknife is within a few % of the sandwich
    assert 0.95 < math.sqrt(jack.cov[i, i] / fit.cov[i, i]) < 1.15
    assert jack.estimate("alpha_value")[1] == pytest.approx(math.sqrt(jack.cov[i, i]))


def test_no_association_predicts_the_baseline_survival(simulated):
    # alpha = 0: P(T > t + w | T > t) = exp(-lam0 w) whatever the scans say
    _, _, data = simulated
    layout = joint.Layout(1, 0, False)
    theta = truth_theta(data, np.zeros(0))
    theta[-1] = 0.0
    fit = joint.JointFit(theta=theta, cov=np.eye(layout.size), layout=layout, knots=np.zeros(0),
                         quad=joint.Quadrature(), loglik=0.0, converged=True, message="", n_patients=data.n,
                         n_events=0, n_scans=0)
    pred = joint.dynamic_survival(fit, data, [0.5])
    assert len(pred) == data.mask.sum()
    assert np.allclose(pred["predicted_survival"], math.exp(-TRUTH["lam0"] * 0.5), rtol=1e-12)


def test_predictions_use_only_the_scans_up_to_the_landmark_and_follow_the_burden(fitted):
    data, fit = fitted
    pred = joint.dynamic_survival(fit, data, [0.5]).set_index("scan_id")["predicted_survival"]
    i = int(np.argmax(data.mask.sum(1)))
    changed = joint.JointData(**{**data.__dict__, "y": data.y.copy()})
    changed.y[i, 2:] += 2.0  # the burden grows after the patient's second scan
    again = joint.dynamic_survival(fit, changed, [0.5]).set_index("scan_id")["predicted_survival"]
    sid = data.scan_id[i]
    assert again[sid[0]] == pred[sid[0]] and again[sid[1]] == pred[sid[1]]
    assert again[sid[2]] < pred[sid[2]]  # alpha > 0: more burden, lower predicted survival


def test_landmark_predictions_of_one_patient_without_random_effects_equal_closed_form():
    # D -> 0: the trajectory is b0 + b1 t whatever the scans say, so P(T > s + w | T > s) is
    # exp(-(H(s + w) - H(s))) with H the closed-form integral of lam_k exp(alpha (b0 + b1 t))
    y = np.array([3.1, 3.3, 3.2, 3.6])
    days = np.array([-5.0, 60.0, 120.0, 200.0])
    data = one_patient(y, days, 300.0, 1)
    b0, b1, sigma, lam1, lam2, alpha = 3.0, 0.8, 0.3, 0.2, 0.5, 0.7
    knot = 100 / 365.25
    layout = joint.Layout(n_pieces=2, n_covariates=0, slope=False)
    th = np.array([b0, b1, math.log(sigma), -25.0, 0.0, -25.0, math.log(lam1), math.log(lam2), alpha])
    fit = joint.JointFit(theta=th, cov=np.eye(layout.size), layout=layout, knots=np.array([knot]),
                         quad=joint.Quadrature(), loglik=0.0, converged=True, message="", n_patients=1,
                         n_events=1, n_scans=4)
    k = alpha * b1

    def H(x):
        first = lam1 * (math.exp(k * min(x, knot)) - 1) / k
        return math.exp(alpha * b0) * (first + (lam2 * (math.exp(k * x) - math.exp(k * knot)) / k if x > knot else 0.0))

    w = 180 / 365.25
    # at risk at 0, 90, 150 and 250 days; not on its event day (300) nor after it
    pred = joint.dynamic_survival(fit, data, [w], [d / 365.25 for d in (0.0, 90.0, 150.0, 250.0, 300.0, 400.0)])
    got = pred.set_index("landmark_days")
    assert list(got.index.round(9)) == [0.0, 60.0, 90.0, 120.0, 150.0, 200.0, 250.0]
    assert list(got["scan_id"]) == ["A0", "A1", "A1", "A2", "A2", "A3", "A3"]  # the latest scan on or before s
    for s_days, p in zip(got.index, got["predicted_survival"]):
        s = s_days / 365.25
        assert p == pytest.approx(math.exp(-(H(s + w) - H(s))), rel=1e-9), s_days


def test_joint_predictions_at_every_landmark_are_scored_beside_the_others(fitted):
    from tumorburden.survival import dynamic

    data, fit = fitted
    grid = [0.0, 90.0, 180.0, 270.0, 365.0]
    pred = joint.dynamic_survival(fit, data, [180 / 365.25], [s / 365.25 for s in grid])
    pred["landmark_days"] = pred["landmark_days"].round(6)
    pred["window_days"] = pred["window_days"].round(6)
    days = data.time * 365.25
    for s in grid:  # every patient at risk at s has the model's prediction there (the baseline scan is at day -7)
        assert set(pred.loc[pred["landmark_days"] == s, "patient_id"]) == set(data.patient_id[days > s]), s
    outcomes = pd.DataFrame({"patient_id": data.patient_id, "time": days, "event": data.event})
    rows = pd.DataFrame(dynamic.accuracy_rows({"cohort": "lung", "endpoint": "os"}, outcomes,
                                              pred.assign(cohort="lung", endpoint="os"), grid, 180.0, 0.05))
    scored = rows[rows["model"] == "joint"].set_index("landmark_days")
    assert list(scored.index) == grid and (scored["n_unpredicted"] == 0).all()
    assert (scored["n"] == scored["n_at_risk"]).all() and scored["auc"].between(0.5, 1.0).all()


def test_tables_say_why_a_set_is_not_fitted_and_reject_unknown_covariates(simulated):
    lon, surv, _ = simulated
    patients = surv["patient_id"].iloc[:8]
    features = pd.DataFrame({"patient_id": patients, "cohort": "lung", "baseline_scan_id": [f"{p}-S0" for p in patients]})
    lon = lon[lon["patient_id"].isin(patients)]
    burden = pd.DataFrame({"patient_id": lon["patient_id"], "scan_id": lon["scan_id"], "days": lon["days"],
                           "total_volume_ml": np.exp(lon["y"]) - 0.1, "sld_mm": 50.0})
    clinical = surv[surv["patient_id"].isin(patients)].rename(columns={"time": "os_days", "event": "os_event"})
    clinical = clinical.assign(cohort="lung", pfs_days=clinical["os_days"], pfs_event=clinical["os_event"])
    out = joint.joint_tables(features, clinical, burden, {"min_patients": 10})
    assert set(out["joint_model"]["status"]) == {"not fitted: 8 patients with a scan before their pfs time (min_patients 10)",
                                                 "not fitted: 8 patients with a scan before their os time (min_patients 10)"}
    assert len(out["joint_predictions"]) == 0
    with pytest.raises(ValueError, match="joint covariates 'ecog' is not a column of clinical.tsv"):
        joint.joint_tables(features, clinical, burden, {"joint": {"covariates": ["ecog"]}})
    with pytest.raises(ValueError, match="joint covariates 'sex' of clinical.tsv is not numeric"):
        joint.joint_tables(features, clinical.assign(sex="F"), burden, {"joint": {"covariates": ["sex"]}})


def test_numerical_hessian_of_a_quadratic_form_is_exact():
    A = np.array([[2.0, 0.3, -0.1], [0.3, 1.0, 0.2], [-0.1, 0.2, 4.0]])
    H = joint.numerical_hessian(lambda x: 0.5 * x @ A @ x, np.array([0.5, -2.0, 3.0]))
    assert np.allclose(H, A, rtol=1e-6)


# Five melanoma patients of a tiny synthetic run (burden in mL at each scan's day), on which the
# optimiser stepped to a singular random-effects covariance and the joint step crashed the pipeline.
FEW_SCANS = {  # exactly as the run measured them (the crash hung on the last bits)
    "SYN-002": ([-3, 42], [18.815999999999992, 21.63199999999999]),
    "SYN-004": ([-11, 44, 104, 160], [49.66399999999998, 62.46399999999998, 77.88799999999996, 105.66399999999996]),
    "SYN-006": ([-4, 38, 86, 131, 185, 228], [31.999999999999986, 35.45599999999999, 44.92799999999998,
                                              58.11199999999997, 82.04799999999996, 115.32799999999995]),
    "SYN-008": ([-9, 49, 96, 144, 199, 244, 304, 353, 416, 477, 533],
                [25.919999999999987, 16.959999999999994, 13.375999999999994, 11.455999999999996, 12.927999999999994,
                 15.167999999999994, 17.407999999999994, 21.24799999999999, 26.303999999999988, 30.207999999999988,
                 36.67199999999998]),
    "SYN-010": ([-4, 58, 104, 162], [20.67199999999999, 21.24799999999999, 21.75999999999999, 23.039999999999992]),
}
FEW_OUTCOMES = {"SYN-002": (635.95, 1, 28.72, 1), "SYN-004": (397.03, 1, 125.28, 1), "SYN-006": (252.78, 1, 200.26, 1),
                "SYN-008": (793.86, 0, 793.86, 0), "SYN-010": (213.81, 1, 195.83, 1)}


def test_a_set_too_small_for_the_model_gives_rows_not_a_crash():
    burden = pd.DataFrame([{"patient_id": p, "scan_id": f"{p}-S{i}", "days": d, "total_volume_ml": v, "sld_mm": 50.0}
                           for p, (days, ml) in FEW_SCANS.items() for i, (d, v) in enumerate(zip(days, ml))])
    features = pd.DataFrame({"patient_id": list(FEW_SCANS), "cohort": "melanoma",
                             "baseline_scan_id": [f"{p}-S0" for p in FEW_SCANS]})
    burden["days"] = burden["days"].astype(float)
    clinical = pd.DataFrame([{"patient_id": p, "cohort": "melanoma", "os_days": o, "os_event": oe, "pfs_days": f,
                              "pfs_event": fe} for p, (o, oe, f, fe) in FEW_OUTCOMES.items()])
    out = joint.joint_tables(features, clinical, burden, {"min_patients": 4})
    model = out["joint_model"]
    assert set(model["endpoint"]) == {"pfs", "os"}
    for _, rows in model.groupby("endpoint"):
        status = rows["status"].iloc[0]
        # fitted (then with the reason its estimates are shaky) or not, with the reason
        assert status.startswith(("ok", "not converged", "not fitted: ")), status
        if not status.startswith("not fitted"):
            assert "correlation at its bound" in status or np.isfinite(rows["estimate"]).all(), status


@pytest.fixture(scope="module")
def stein_trial():
    """60 lung patients of the project's simulator (Stein-shaped burden) as the pipeline's tables."""
    from tumorburden.synth import trial

    tr = trial.simulate_trial({"n_patients": 60, "seed": 7, "cohorts": {"lung": 1.0}})
    total = tr.lesions.groupby("scan_id")["volume_ml"].sum()
    burden = tr.scans.assign(total_volume_ml=tr.scans["scan_id"].map(total).fillna(0.0), sld_mm=50.0)
    first = burden.sort_values("days").groupby("patient_id")["scan_id"].first()
    features = pd.DataFrame({"patient_id": first.index, "cohort": "lung", "baseline_scan_id": first.to_numpy()})
    return features, tr.clinical, burden[["patient_id", "scan_id", "days", "total_volume_ml", "sld_mm"]]


def test_tables_with_the_spline_basis_name_its_coefficients_and_predict(stein_trial):
    features, clinical, burden = stein_trial
    out = joint.joint_tables(features, clinical, burden,
                             {"joint": {"time_basis": "spline", "spline_df": 2, "hermite_nodes": 3}})
    os_rows = out["joint_model"].query("endpoint == 'os'").set_index("term")
    assert os_rows["status"].iloc[0].startswith(("ok", "not converged")), os_rows["status"].iloc[0]
    for term in ("beta_intercept", "beta_ns1", "beta_ns2", "sd_intercept", "sd_ns1", "sd_ns2", "corr_ns2_ns1",
                 "sigma", "alpha_value"):
        assert np.isfinite(os_rows.loc[term, "estimate"]), term
    assert "interior knots at days" in os_rows.loc["beta_ns1", "note"]
    pred = out["joint_predictions"].query("endpoint == 'os'")
    assert len(pred) > 0 and pred["predicted_survival"].between(0, 1).all()
    with pytest.raises(ValueError, match="joint time_basis 'cubic' is not one of linear, spline"):
        joint.joint_tables(features, clinical, burden, {"joint": {"time_basis": "cubic"}})
    with pytest.raises(ValueError, match="joint variance 'robust' is not one of observed, sandwich, jackknife, cr2"):
        joint.joint_tables(features, clinical, burden, {"joint": {"variance": "robust"}})


def test_a_spline_with_more_random_effects_than_scans_is_not_fitted(stein_trial):
    features, clinical, burden = stein_trial
    few = burden.sort_values("days").groupby("patient_id").head(2)  # at most two scans a patient
    out = joint.joint_tables(features, clinical, few, {"joint": {"time_basis": "spline", "spline_df": 2}})
    assert set(out["joint_model"]["status"]) == {
        "not fitted: fewer than 3 patients with 3 scans or more: the 3 random effects of time_basis spline cannot be "
        "estimated (use time_basis: linear)"}
