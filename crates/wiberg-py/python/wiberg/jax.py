"""JAX layers: ``rbf_argmin`` and ``robust_lstsq`` as ``jax.custom_vjp`` functions over
``jax.pure_callback``, usable under ``jit`` and ``vmap``.

Inputs must be float64 (enable it with ``jax.config.update("jax_enable_x64", True)``). Inside
the callback the solve is ``wiberg.rbf_argmin`` / ``wiberg.robust_lstsq`` on numpy arrays; the
backward pass solves again (deterministic: the same solution) and calls its ``vjp``. Under
``vmap`` the callback receives the whole batch at once and solves it in parallel
(``vmap_method="broadcast_all"``).

A scalar ``sigma`` is broadcast to one width per kernel and a 1-D ``centers`` reshaped to
``(K, 1)`` in JAX before the callback (JAX differentiates those steps itself), so that a batch
dimension added by ``vmap`` is never ambiguous.
"""

import jax
import jax.numpy as jnp
import numpy as np

import wiberg as _wiberg

__all__ = ["rbf_argmin", "robust_lstsq"]


def _check(x, name):
    x = jnp.asarray(x)
    if x.dtype != jnp.float64:
        raise ValueError(
            f"{name} must be float64, got {x.dtype} (enable it with jax.config.update('jax_enable_x64', True))"
        )
    return x


def _lead(arr, core_ndim):
    """Leading (vmap) dimensions of a callback argument."""
    return arr.shape[: arr.ndim - core_ndim]


def _flat(arr, lead, core_ndim):
    """`arr` with its leading dimensions merged into one (or none when there are none)."""
    arr = np.asarray(arr, dtype=np.float64)
    if not lead:
        return arr
    return arr.reshape((-1,) + arr.shape[arr.ndim - core_ndim :])


def _unflat(arr, lead):
    arr = np.asarray(arr, dtype=np.float64)
    if not lead:
        return arr
    return arr.reshape(tuple(lead) + arr.shape[1:])


def _make_rbf(with_weights, options):
    def solve(c, s, w):
        lead = _lead(c, 2)
        return _wiberg.rbf_argmin(
            _flat(c, lead, 2), _flat(s, lead, 1), None if w is None else _flat(w, lead, 1), **options
        ), lead

    def y_cb(c, s, *w):
        sol, lead = solve(c, s, w[0] if with_weights else None)
        return _unflat(sol.y, lead)

    def vjp_cb(c, s, g, *w):
        sol, lead = solve(c, s, w[0] if with_weights else None)
        grads = sol.vjp(_flat(g, lead, 1))
        out = (_unflat(grads["centers"], lead), _unflat(grads["sigma"], lead))
        if with_weights:
            out = out + (_unflat(grads["weights"], lead),)
        return out

    def y_shape(c):
        return jax.ShapeDtypeStruct(c.shape[:-2] + c.shape[-1:], jnp.float64)

    @jax.custom_vjp
    def f(c, s, *w):
        return jax.pure_callback(y_cb, y_shape(c), c, s, *w, vmap_method="broadcast_all")

    def fwd(c, s, *w):
        return f(c, s, *w), (c, s, w)

    def bwd(res, g):
        c, s, w = res
        shapes = (jax.ShapeDtypeStruct(c.shape, c.dtype), jax.ShapeDtypeStruct(s.shape, s.dtype))
        shapes = shapes + tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in w)
        return jax.pure_callback(vjp_cb, shapes, c, s, g, *w, vmap_method="broadcast_all")

    f.defvjp(fwd, bwd)
    return f


def rbf_argmin(
    centers, sigma, weights=None, *, damping="trust-region", lam=0.1, lbfgs_iterations=10, polish=True, threads=0
):
    """``wiberg.rbf_argmin`` for one sample, differentiable in ``centers`` (``(K,)`` or
    ``(K, n)``), ``sigma`` (scalar or ``(K,)``) and ``weights`` (``(K,)``); returns ``y``
    ``(n,)``. Batch it with ``jax.vmap``."""
    options = dict(damping=damping, lam=lam, lbfgs_iterations=lbfgs_iterations, polish=polish, threads=threads)
    c = _check(centers, "centers")
    s = _check(sigma, "sigma")
    if c.ndim not in (1, 2):
        raise ValueError(f"centers must have shape (K,) or (K, n) (batch with jax.vmap), got {c.shape}")
    c2 = c[:, None] if c.ndim == 1 else c
    k = c2.shape[0]
    if s.ndim == 0:
        s = jnp.broadcast_to(s, (k,))
    elif s.shape != (k,):
        raise ValueError(f"sigma must be a scalar or have shape ({k},), got {s.shape}")
    args = (c2, s)
    if weights is not None:
        w = _check(weights, "weights")
        if w.shape != (k,):
            raise ValueError(f"weights must have shape ({k},), got {w.shape}")
        args = args + (w,)
    return _make_rbf(weights is not None, options)(*args)


def _make_lstsq(with_weights, with_delta, options):
    def solve(a, b, rest):
        lead = _lead(a, 2)
        i = 0
        kw = {}
        if with_weights:
            kw["weights"] = _flat(rest[i], lead, 1)
            i += 1
        if with_delta:
            kw["delta"] = _flat(rest[i], lead, 0)
        return _wiberg.robust_lstsq(_flat(a, lead, 2), _flat(b, lead, 1), **kw, **options), lead

    def y_cb(a, b, *rest):
        sol, lead = solve(a, b, rest)
        return _unflat(sol.y, lead)

    def vjp_cb(a, b, g, *rest):
        sol, lead = solve(a, b, rest)
        grads = sol.vjp(_flat(g, lead, 1))
        out = (_unflat(grads["A"], lead), _unflat(grads["b"], lead))
        if with_weights:
            out = out + (_unflat(grads["weights"], lead),)
        if with_delta:
            out = out + (_unflat(grads["delta"], lead),)
        return out

    @jax.custom_vjp
    def f(a, b, *rest):
        shape = jax.ShapeDtypeStruct(a.shape[:-2] + a.shape[-1:], jnp.float64)
        return jax.pure_callback(y_cb, shape, a, b, *rest, vmap_method="broadcast_all")

    def fwd(a, b, *rest):
        return f(a, b, *rest), (a, b, rest)

    def bwd(res, g):
        a, b, rest = res
        shapes = tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in (a, b) + tuple(rest))
        return jax.pure_callback(vjp_cb, shapes, a, b, g, *rest, vmap_method="broadcast_all")

    f.defvjp(fwd, bwd)
    return f


def robust_lstsq(
    A, b, *, weights=None, delta=None, mu=0.0, group_size=1, damping="trust-region", lam=0.1, threads=0
):
    """``wiberg.robust_lstsq`` for one problem, differentiable in ``A`` ``(m, n)``, ``b``
    ``(m,)``, ``weights`` ``(m // group_size,)`` and ``delta`` (scalar); returns ``y``
    ``(n,)``. Batch it with ``jax.vmap``."""
    options = dict(mu=mu, group_size=group_size, damping=damping, lam=lam, threads=threads)
    a = _check(A, "A")
    bb = _check(b, "b")
    if a.ndim != 2 or bb.shape != a.shape[:1]:
        raise ValueError(f"A must have shape (m, n) and b (m,) (batch with jax.vmap), got {a.shape} and {bb.shape}")
    args = (a, bb)
    if weights is not None:
        args = args + (_check(weights, "weights"),)
    if delta is not None:
        d = _check(delta, "delta")
        if d.ndim != 0:
            raise ValueError(f"delta must be a scalar (batch with jax.vmap), got shape {d.shape}")
        args = args + (d,)
    return _make_lstsq(weights is not None, delta is not None, options)(*args)
