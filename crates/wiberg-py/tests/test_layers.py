"""The PyTorch and JAX layers: gradient checks, agreement with the numpy core, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.test_util import check_grads

import wiberg
import wiberg.jax as wj
import wiberg.torch as wt

IMPLICIT = dict(damping="implicit", lbfgs_iterations=200)


def small_problem(rng):
    c = np.array([-0.3, 0.1, 0.25, 0.4, 6.0, -7.0])
    return c, 1.0


def test_import_does_not_need_torch_or_jax():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['jax'] = None\n"
        "import wiberg, wiberg.pose\n"
        "print(wiberg.rbf_argmin([0.0, 1.0], 1.0).y)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_torch_gradcheck_on_the_implicit_layer(rng):
    c, s = small_problem(rng)
    ct = torch.tensor(c, requires_grad=True)
    st = torch.tensor(s, dtype=torch.float64, requires_grad=True)
    wt_ = torch.tensor(np.linspace(0.8, 1.2, c.size), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, w: wt.rbf_argmin(a, b, w, **IMPLICIT), (ct, st, wt_))
    c2 = torch.tensor(rng.normal(size=(5, 2)), requires_grad=True)
    s2 = torch.tensor(rng.uniform(0.8, 1.4, 5), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: wt.rbf_argmin(a, b, **IMPLICIT), (c2, s2))


def test_torch_gradcheck_on_least_squares(rng):
    A = torch.tensor(rng.normal(size=(6, 2)), requires_grad=True)
    b = torch.tensor(rng.normal(size=6), requires_grad=True)
    w = torch.tensor(rng.uniform(0.5, 2.0, 3), requires_grad=True)
    d = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)

    def f(A, b, w, d):
        return wt.robust_lstsq(A, b, weights=w, delta=d, group_size=2, damping="implicit")

    assert torch.autograd.gradcheck(f, (A, b, w, d))
    assert torch.autograd.gradcheck(lambda A, b: wt.robust_lstsq(A, b, damping="implicit"), (A, b))


def test_torch_layer_refuses_float32_and_cuda_like_tensors():
    with pytest.raises(ValueError, match="float64"):
        wt.rbf_argmin(torch.zeros(3, dtype=torch.float32), 1.0)
    meta = torch.zeros(3, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match="CPU tensor"):
        wt.rbf_argmin(meta, 1.0)
    with pytest.raises(ValueError, match="CPU tensor"):
        wt.robust_lstsq(torch.zeros((3, 2), dtype=torch.float64, device="meta"), torch.zeros(3, dtype=torch.float64))


def test_jax_check_grads(rng):
    c, s = small_problem(rng)
    check_grads(lambda a, b: wj.rbf_argmin(a, b, **IMPLICIT), (jnp.array(c), jnp.array(s)), order=1, modes=["rev"])
    w = jnp.linspace(0.8, 1.2, c.size)
    check_grads(lambda a, b, w: wj.rbf_argmin(a, b, w, **IMPLICIT), (jnp.array(c), jnp.array(s), w), order=1, modes=["rev"])
    A = jnp.array(rng.normal(size=(6, 2)))
    b = jnp.array(rng.normal(size=6))
    check_grads(
        lambda A, b, d: wj.robust_lstsq(A, b, delta=d, damping="implicit"), (A, b, jnp.array(0.8)), order=1, modes=["rev"]
    )


def test_torch_jax_and_numpy_give_the_same_numbers(rng):
    c = rng.normal(size=(12, 2)) * 2
    sig = rng.uniform(0.8, 1.6, 12)
    w = rng.uniform(0.5, 1.5, 12)
    v = np.array([0.3, -1.1])
    for damping in ("implicit", "trust-region", "guarded"):
        sol = wiberg.rbf_argmin(c, sig, w, damping=damping)
        g = sol.vjp(v)
        ct, st, wt_ = (torch.tensor(x, requires_grad=True) for x in (c, sig, w))
        y = wt.rbf_argmin(ct, st, wt_, damping=damping)
        (y @ torch.tensor(v)).backward()
        np.testing.assert_array_equal(y.detach().numpy(), sol.y)
        np.testing.assert_array_equal(ct.grad.numpy(), g["centers"])
        np.testing.assert_array_equal(st.grad.numpy(), g["sigma"])
        np.testing.assert_array_equal(wt_.grad.numpy(), g["weights"])
        # Only sigma needs a gradient: the layer asks the solution for that one alone.
        st1 = torch.tensor(sig, requires_grad=True)
        (wt.rbf_argmin(torch.tensor(c), st1, torch.tensor(w), damping=damping) @ torch.tensor(v)).backward()
        np.testing.assert_array_equal(st1.grad.numpy(), g["sigma"])

        def loss(c_, s_, w_):
            return wj.rbf_argmin(c_, s_, w_, damping=damping) @ jnp.array(v)

        yj = wj.rbf_argmin(jnp.array(c), jnp.array(sig), jnp.array(w), damping=damping)
        gj = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(jnp.array(c), jnp.array(sig), jnp.array(w))
        np.testing.assert_array_equal(np.asarray(yj), sol.y)
        for got, key in zip(gj, ("centers", "sigma", "weights")):
            np.testing.assert_array_equal(np.asarray(got), g[key])
    # A shared scalar width: JAX broadcasts it to one per kernel and sums the gradient back.
    x = rng.normal(size=30)
    sol = wiberg.rbf_argmin(x, 0.7)
    gj = jax.grad(lambda s: wj.rbf_argmin(jnp.array(x), s)[0])(0.7)
    np.testing.assert_allclose(np.asarray(gj), sol.vjp(np.ones(1))["sigma"], rtol=1e-10)
    np.testing.assert_allclose(np.asarray(wj.rbf_argmin(jnp.array(x), 0.7)), sol.y, rtol=1e-12)


def test_jax_vmap_solves_the_batch_in_one_call(rng):
    xs = rng.normal(size=(16, 40)) * 3
    sol = wiberg.rbf_argmin(xs[:, :, None], 1.3)
    f = jax.jit(jax.vmap(lambda x: wj.rbf_argmin(x, 1.3)[0]))
    np.testing.assert_allclose(np.asarray(f(jnp.array(xs))), sol.y[:, 0], rtol=1e-12)
    # Gradient of the mean with respect to the shared width, under jit + vmap.
    gs = jax.jit(jax.grad(lambda s: jnp.mean(jax.vmap(lambda x: wj.rbf_argmin(x, s)[0])(jnp.array(xs)))))(1.3)
    ref = np.mean([wiberg.rbf_argmin(x, 1.3).vjp(np.ones(1))["sigma"] for x in xs])
    np.testing.assert_allclose(np.asarray(gs), ref, rtol=1e-9)
    A = jnp.array(rng.normal(size=(8, 5, 2)))
    b = jnp.array(rng.normal(size=(8, 5)))
    y = jax.vmap(lambda A, b: wj.robust_lstsq(A, b, delta=0.5))(A, b)
    np.testing.assert_allclose(np.asarray(y), wiberg.robust_lstsq(np.asarray(A), np.asarray(b), delta=0.5).y, rtol=1e-12)


def test_jax_layer_refuses_float32():
    with pytest.raises(ValueError, match="float64"):
        wj.rbf_argmin(np.zeros(3, dtype=np.float32), 1.0)
