"""The numpy core: shapes, broadcasting, input validation, derivatives, threads, pickling."""

import pickle

import numpy as np
import pytest

import wiberg
from conftest import ransac_sample

IMPLICIT = dict(damping="implicit", lbfgs_iterations=200)


def energy_grad_hess_mixed(y, centers, sigma, weights):
    """Independent numpy formulas for E = -sum a_k exp(-|y - c_k|^2 / s_k^2): gradient,
    Hessian and M = d(grad_y E)/d(s, a) (one width and one weight per kernel)."""
    d = y[None, :] - centers  # (K, n)
    r = (d * d).sum(1)
    e = np.exp(-r / sigma**2)
    a = weights
    g = (2 * a * e / sigma**2)[:, None] * d
    grad = g.sum(0)
    n = y.size
    hess = np.zeros((n, n))
    for k in range(len(r)):
        hess += 2 * a[k] * e[k] / sigma[k] ** 2 * np.eye(n) - 4 * a[k] * e[k] / sigma[k] ** 4 * np.outer(d[k], d[k])
    # d/ds_k of 2 a e d / s^2 = 4 a e d (r / s^2 - 1) / s^3 ; d/da_k = 2 e d / s^2
    m_sigma = (4 * a * e * (r / sigma**2 - 1) / sigma**3)[None, :] * d.T
    m_weights = (2 * e / sigma**2)[None, :] * d.T
    return grad, hess, np.hstack([m_sigma, m_weights])


# ---------------------------------------------------------------- shapes and broadcasting


def test_shapes_unbatched_and_batched(rng):
    c1 = rng.normal(size=7)
    s = wiberg.rbf_argmin(c1, 1.0)
    assert s.y.shape == (1,) and s.y.dtype == np.float64 and len(s) == 1
    assert s.report["converged"].shape == ()
    g = s.vjp(np.ones(1))
    assert set(g) == {"sigma", "centers"} and g["sigma"].shape == () and g["centers"].shape == (7,)

    c2 = rng.normal(size=(7, 3))
    s = wiberg.rbf_argmin(c2, np.full(7, 1.5), np.ones(7))
    assert s.y.shape == (3,)
    g = s.vjp(np.ones(3))
    assert g["sigma"].shape == (7,) and g["weights"].shape == (7,) and g["centers"].shape == (7, 3)

    cb = rng.normal(size=(4, 7, 2))
    s = wiberg.rbf_argmin(cb, 1.0)
    assert s.y.shape == (4, 2) and len(s) == 4
    for key in ("converged", "iterations", "grad_norm", "seed_index", "min_eigenvalue", "shift", "stop"):
        assert s.report[key].shape == (4,), key
    g = s.vjp(np.ones((4, 2)))
    assert g["sigma"].shape == () and g["centers"].shape == (4, 7, 2)


def test_broadcasting_matches_per_sample_solves(rng):
    cb = rng.normal(size=(3, 9, 2))
    sig = rng.uniform(0.5, 2.0, size=(3, 9))
    w = rng.uniform(0.5, 1.5, size=9)  # shared by the batch
    sol = wiberg.rbf_argmin(cb, sig, w)
    v = rng.normal(size=(3, 2))
    g = sol.vjp(v)
    assert g["weights"].shape == (9,) and g["sigma"].shape == (3, 9)
    wsum = np.zeros(9)
    for b in range(3):
        one = wiberg.rbf_argmin(cb[b], sig[b], w)
        np.testing.assert_array_equal(one.y, sol.y[b])
        gb = one.vjp(v[b])
        np.testing.assert_array_equal(gb["sigma"], g["sigma"][b])
        np.testing.assert_array_equal(gb["centers"], g["centers"][b])
        wsum += gb["weights"]
    np.testing.assert_allclose(g["weights"], wsum, rtol=1e-14, atol=1e-300)
    # Centres shared, widths batched: the centres' gradient is the sum over the batch.
    shared = wiberg.rbf_argmin(cb[0], sig)
    assert shared.y.shape == (3, 2) and shared.vjp(v)["centers"].shape == (9, 2)


def test_lists_and_python_numbers_are_accepted():
    s = wiberg.rbf_argmin([0.0, 0.1, 3.0], 1)
    assert s.y.shape == (1,)
    s = wiberg.robust_lstsq([[1.0], [1.0]], [0.0, 2.0])
    np.testing.assert_allclose(s.y, [1.0])


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(centers=np.zeros((2, 3, 4, 5)), sigma=1.0), "centers must have shape"),
        (dict(centers=np.zeros(0), sigma=1.0), "at least one kernel"),
        (dict(centers=np.zeros(5, dtype=np.float32), sigma=1.0), "float64"),
        (dict(centers=np.arange(5), sigma=1.0), "float64"),
        (dict(centers=np.array([0.0, np.nan]), sigma=1.0), "finite"),
        (dict(centers=np.array([0.0, np.inf]), sigma=1.0), "finite"),
        (dict(centers=np.zeros(5), sigma=0.0), "sigma must be > 0"),
        (dict(centers=np.zeros(5), sigma=-2.0), "sigma must be > 0"),
        (dict(centers=np.zeros(5), sigma=np.ones(4)), "sigma must be"),
        (dict(centers=np.zeros(5), sigma=float("nan")), "finite"),
        (dict(centers=np.zeros(5), sigma=1.0, weights=np.ones(3)), "weights must have shape"),
        (dict(centers=np.zeros((2, 5, 1)), sigma=np.ones((3, 5))), "batch sizes differ"),
        (dict(centers=np.zeros(5), sigma=1.0, damping="newton"), "damping must be"),
        (dict(centers=np.zeros(5), sigma=1.0, lam=0.0), "lam"),
        (dict(centers=np.zeros(5), sigma=1.0, lam=-1.0, damping="guarded"), "lam"),
        (dict(centers=np.zeros(5), sigma=1.0, threads=-1), "threads"),
        (dict(centers=np.zeros(5), sigma=1.0, lbfgs_iterations=-1), "lbfgs_iterations"),
    ],
)
def test_bad_rbf_inputs_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        wiberg.rbf_argmin(**kwargs)


def test_bad_vjp_and_lstsq_inputs_raise_value_error():
    s = wiberg.rbf_argmin(np.array([0.0, 0.2]), 1.0)
    with pytest.raises(ValueError, match="shape of y"):
        s.vjp(np.ones(2))
    with pytest.raises(ValueError, match="finite"):
        s.vjp(np.array([np.nan]))
    A = np.eye(3)
    b = np.ones(3)
    for kwargs, match in [
        (dict(A=np.ones(3), b=b), "A must have shape"),
        (dict(A=A, b=np.ones(4)), "b must have shape"),
        (dict(A=A, b=b, delta=0.0), "delta must be > 0"),
        (dict(A=A, b=b, delta=-1.0), "delta must be > 0"),
        (dict(A=A, b=b, weights=-np.ones(3)), "weights must be >= 0"),
        (dict(A=A, b=b, weights=np.ones(2)), "weights must have one entry per group"),
        (dict(A=A, b=b, group_size=2), "group_size"),
        (dict(A=A, b=b, mu=-1.0), "mu"),
        (dict(A=A.astype(np.int64), b=b), "float64"),
        (dict(A=A, b=np.array([1.0, np.inf, 0.0])), "finite"),
    ]:
        with pytest.raises(ValueError, match=match):
            wiberg.robust_lstsq(**kwargs)


def test_failed_solves_raise_wiberg_errors():
    assert issubclass(wiberg.SingularHessianError, wiberg.WibergError)
    assert issubclass(wiberg.NonFiniteError, wiberg.WibergError)
    # Rank-deficient A, no damping in the energy: the normal matrix is singular.
    with pytest.raises(wiberg.SingularHessianError):
        wiberg.robust_lstsq(np.array([[1.0, 1.0], [2.0, 2.0]]), np.array([1.0, 2.0]), damping="implicit")
    # Two kernels at +-1 with width sqrt(2): y = 0 is a flat (singular) maximum-minimum
    # transition; with no minimiser and no polish the implicit derivative needs H^-1 there.
    c = np.array([-1.0, 1.0])
    sol = wiberg.rbf_argmin(c, np.sqrt(2.0), damping="implicit", lbfgs_iterations=0, polish=False)
    assert sol.report["seed_index"] == 0
    # A batch names the failing sample.
    with pytest.raises(wiberg.SingularHessianError, match="sample 1"):
        A = np.stack([np.eye(2), np.array([[1.0, 1.0], [2.0, 2.0]])])
        wiberg.robust_lstsq(A, np.ones((2, 2)), damping="implicit")


# ---------------------------------------------------------------- derivatives


def converged_ransac(rng, tries=50):
    for _ in range(tries):
        x, _ = ransac_sample(rng)
        sol = wiberg.rbf_argmin(x, 2.0, **IMPLICIT)
        if sol.report["converged"] and sol.report["grad_norm"] < 1e-10:
            return x
    raise AssertionError("no converged sample")


def test_implicit_derivative_equals_central_differences_of_y_of_sigma(rng):
    for _ in range(5):
        x = converged_ransac(rng)
        sigma = 2.0
        sol = wiberg.rbf_argmin(x, sigma, **IMPLICIT)
        g = sol.vjp(np.ones(1))["sigma"]
        h = 1e-6
        yp = wiberg.rbf_argmin(x, sigma + h, **IMPLICIT).y[0]
        ym = wiberg.rbf_argmin(x, sigma - h, **IMPLICIT).y[0]
        fd = (yp - ym) / (2 * h)
        assert abs(g - fd) <= 1e-6 * (1 + abs(fd)), (g, fd)


def test_implicit_derivative_in_centres_and_weights_equals_central_differences(rng):
    c = rng.normal(size=(6, 2))
    sig = rng.uniform(0.8, 1.5, 6)
    w = rng.uniform(0.5, 1.5, 6)
    sol = wiberg.rbf_argmin(c, sig, w, **IMPLICIT)
    assert sol.report["converged"]
    v = np.array([0.7, -0.4])
    g = sol.vjp(v)
    h = 1e-6

    def loss(c_, s_, w_):
        return wiberg.rbf_argmin(c_, s_, w_, **IMPLICIT).y @ v

    for name, arr in (("centers", c), ("sigma", sig), ("weights", w)):
        flat = arr.reshape(-1)
        for i in range(0, flat.size, 3):
            p, m = flat.copy(), flat.copy()
            p[i] += h
            m[i] -= h
            args = {"centers": c, "sigma": sig, "weights": w}
            args[name] = p.reshape(arr.shape)
            lp = loss(args["centers"], args["sigma"], args["weights"])
            args[name] = m.reshape(arr.shape)
            lm = loss(args["centers"], args["sigma"], args["weights"])
            fd = (lp - lm) / (2 * h)
            assert abs(g[name].reshape(-1)[i] - fd) <= 1e-6 * (1 + abs(fd)), (name, i, g[name].reshape(-1)[i], fd)


@pytest.mark.parametrize("damping", ["trust-region", "guarded"])
def test_damped_derivatives_equal_the_numpy_formula(rng, damping):
    lam = 0.1
    for _ in range(10):
        c = rng.normal(size=(8, 2)) * 1.5
        sig = rng.uniform(0.6, 1.6, 8)
        w = rng.uniform(0.5, 1.5, 8)
        sol = wiberg.rbf_argmin(c, sig, w, damping=damping, lam=lam, lbfgs_iterations=200)
        if not sol.report["converged"]:
            continue
        y = sol.y
        _, hess, m = energy_grad_hess_mixed(y, c, sig, w)
        lo = np.linalg.eigvalsh(hess).min()
        shift = lam if damping == "trust-region" else lam + max(0.0, -lo)
        assert abs(sol.report["shift"] - shift) < 1e-9
        jac = -np.linalg.solve(hess + shift * np.eye(2), m)  # dy/d(sigma, weights)
        v = rng.normal(size=2)
        g = sol.vjp(v)
        np.testing.assert_allclose(g["sigma"], (v @ jac)[:8], rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(g["weights"], (v @ jac)[8:], rtol=1e-7, atol=1e-10)


def test_guarded_shift_lifts_an_indefinite_hessian():
    # Seeded at a saddle-like point with no minimiser or polish: H has a negative eigenvalue.
    c = np.array([[-1.0, 0.0], [1.0, 0.0]])
    sol = wiberg.rbf_argmin(c, 1.0, damping="guarded", lam=0.1, lbfgs_iterations=0, polish=False)
    lo = sol.report["min_eigenvalue"]
    assert sol.report["shift"] >= 0.1 and np.isclose(sol.report["shift"], 0.1 + max(0.0, -lo))


def test_least_squares_derivatives(rng):
    A = rng.normal(size=(7, 3))
    b = rng.normal(size=7)
    w = rng.uniform(0.5, 2.0, 7)
    v = rng.normal(size=3)
    sol = wiberg.robust_lstsq(A, b, weights=w, damping="implicit")
    np.testing.assert_allclose(sol.y, np.linalg.solve(A.T @ (w[:, None] * A), A.T @ (w * b)), rtol=1e-12)
    g = sol.vjp(v)
    h = 1e-6
    for name, arr in (("A", A), ("b", b), ("weights", w)):
        flat = arr.reshape(-1)
        for i in range(0, flat.size, 2):
            p, m = flat.copy(), flat.copy()
            p[i] += h
            m[i] -= h
            args = {"A": A, "b": b, "weights": w}
            args[name] = p.reshape(arr.shape)
            lp = wiberg.robust_lstsq(args["A"], args["b"], weights=args["weights"], damping="implicit").y @ v
            args[name] = m.reshape(arr.shape)
            lm = wiberg.robust_lstsq(args["A"], args["b"], weights=args["weights"], damping="implicit").y @ v
            fd = (lp - lm) / (2 * h)
            assert abs(g[name].reshape(-1)[i] - fd) <= 1e-6 * (1 + abs(fd))
    # Trust-region: u = (H + lam I)^-1 v, dl/db = W A u.
    tr = wiberg.robust_lstsq(A, b, weights=w, lam=0.3).vjp(v)
    u = np.linalg.solve(A.T @ (w[:, None] * A) + 0.3 * np.eye(3), v)
    np.testing.assert_allclose(tr["b"], w * (A @ u), rtol=1e-10)


def test_robust_least_squares_derivatives(rng):
    A = rng.normal(size=(8, 2))
    b = rng.normal(size=8)
    b[3] += 20.0  # an outlier
    c = rng.uniform(0.5, 2.0, 4)
    sol = wiberg.robust_lstsq(A, b, weights=c, delta=0.7, group_size=2, damping="implicit")
    assert sol.report["converged"]
    v = np.array([1.0, -0.5])
    g = sol.vjp(v)
    assert set(g) == {"A", "b", "weights", "delta"} and g["delta"].shape == ()
    h = 1e-6

    def loss(d, c_):
        return wiberg.robust_lstsq(A, b, weights=c_, delta=d, group_size=2, damping="implicit").y @ v

    fd = (loss(0.7 + h, c) - loss(0.7 - h, c)) / (2 * h)
    assert abs(g["delta"] - fd) <= 1e-6 * (1 + abs(fd))
    for i in range(4):
        p, m = c.copy(), c.copy()
        p[i] += h
        m[i] -= h
        fd = (loss(0.7, p) - loss(0.7, m)) / (2 * h)
        assert abs(g["weights"][i] - fd) <= 1e-6 * (1 + abs(fd))


def test_vjp_wrt_returns_the_named_gradients_with_the_same_bits(rng):
    xs = np.stack([ransac_sample(rng)[0] for _ in range(6)])[:, :, None]
    sol = wiberg.rbf_argmin(xs, np.full((6, 110), 2.5), np.ones(110))
    v = rng.normal(size=(6, 1))
    full = sol.vjp(v)
    assert set(full) == {"sigma", "weights", "centers"}
    for wrt in ["sigma", ["centers"], ("weights", "sigma"), []]:
        part = sol.vjp(v, wrt=wrt)
        names = {wrt} if isinstance(wrt, str) else set(wrt)
        assert set(part) == names
        for name in names:
            np.testing.assert_array_equal(part[name], full[name])
    A = rng.normal(size=(6, 2))
    b = rng.normal(size=6)
    ls = wiberg.robust_lstsq(A, b, delta=0.4)
    v2 = np.array([1.0, -2.0])
    full = ls.vjp(v2)
    part = ls.vjp(v2, wrt=["delta", "A"])
    assert set(part) == {"delta", "A"}
    np.testing.assert_array_equal(part["delta"], full["delta"])
    np.testing.assert_array_equal(part["A"], full["A"])


def test_vjp_wrt_rejects_names_that_are_not_inputs():
    s = wiberg.rbf_argmin(np.array([0.0, 0.2]), 1.0)
    for wrt, match in [("weights", "not an input"), (["sigma", "A"], "not an input"), (3, "wrt must be")]:
        with pytest.raises(ValueError, match=match):
            s.vjp(np.ones(1), wrt=wrt)
    ls = wiberg.robust_lstsq(np.eye(2), np.ones(2))
    with pytest.raises(ValueError, match="inputs: A, b"):
        ls.vjp(np.ones(2), wrt="delta")


# ---------------------------------------------------------------- threads, pickling


def test_batches_are_identical_for_one_and_two_threads(rng):
    xs = np.stack([ransac_sample(rng)[0] for _ in range(64)])[:, :, None]
    a = wiberg.rbf_argmin(xs, 3.0, threads=1)
    b = wiberg.rbf_argmin(xs, 3.0, threads=2)
    np.testing.assert_array_equal(a.y, b.y)
    v = rng.normal(size=(64, 1))
    ga, gb = a.vjp(v), b.vjp(v)
    for k in ga:
        np.testing.assert_array_equal(ga[k], gb[k])
    A = rng.normal(size=(32, 6, 2))
    bb = rng.normal(size=(32, 6))
    la = wiberg.robust_lstsq(A, bb, delta=0.5, threads=1)
    lb = wiberg.robust_lstsq(A, bb, delta=0.5, threads=2)
    np.testing.assert_array_equal(la.y, lb.y)
    v2 = rng.normal(size=(32, 2))
    np.testing.assert_array_equal(la.vjp(v2)["delta"], lb.vjp(v2)["delta"])


def test_solutions_pickle(rng):
    xs = np.stack([ransac_sample(rng)[0] for _ in range(5)])[:, :, None]
    sol = wiberg.rbf_argmin(xs, np.full((5, 110), 2.5), np.ones(110), damping="guarded", lam=0.2)
    back = pickle.loads(pickle.dumps(sol))
    np.testing.assert_array_equal(sol.y, back.y)
    v = np.ones((5, 1))
    for k, g in sol.vjp(v).items():
        np.testing.assert_array_equal(g, back.vjp(v)[k])
    assert sol.report.keys() == back.report.keys()
    ls = wiberg.robust_lstsq(rng.normal(size=(6, 2)), rng.normal(size=6), delta=0.3, mu=0.1)
    back = pickle.loads(pickle.dumps(ls))
    np.testing.assert_array_equal(ls.y, back.y)


def test_gil_is_released_during_solves(rng):
    import threading
    import time

    xs = np.stack([ransac_sample(rng)[0] for _ in range(3000)])[:, :, None]
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    t0 = time.perf_counter()
    wiberg.rbf_argmin(xs, 3.0, threads=1)
    t1 = time.perf_counter()
    stop.set()
    t.join()
    during = [x for x in ticks if t0 < x < t1]
    # The other thread kept running while the solve held no GIL.
    assert t1 - t0 < 0.02 or len(during) >= 3, (t1 - t0, len(during))
