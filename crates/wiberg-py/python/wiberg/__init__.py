"""wiberg: differentiable argmin layers with the trust-region ("Wibergian") derivative.

The numpy core (this module) wraps the Rust library ``wiberg``; ``wiberg.torch`` and
``wiberg.jax`` (optional: they import torch and jax) make its solves differentiable layers,
and ``wiberg.pose`` holds the Tome et al. 2018 pose model.

* ``rbf_argmin(centers, sigma, weights=None, *, damping="trust-region", lam=0.1,
  lbfgs_iterations=10, polish=True, threads=0)``: the argmin of
  ``E(y) = -sum_k a_k exp(-|y - c_k|^2 / s_k^2)``, seeded at the lowest-energy centre.
* ``robust_lstsq(A, b, *, weights=None, delta=None, mu=0.0, group_size=1,
  damping="trust-region", lam=0.1, threads=0)``: damped (pseudo-Huber when ``delta`` is
  given) least squares.

Both return a ``Solution`` with ``.y``, ``.report`` and ``.vjp(dl_dy, wrt=None)`` (the
gradients of every input given, or of those named in ``wrt``). Bad inputs raise
``ValueError``; failed solves raise ``WibergError`` or a subclass (``SingularHessianError``,
``NonFiniteError``, ``NotConvergedError``).
"""

from ._core import (
    NonFiniteError,
    NotConvergedError,
    SingularHessianError,
    Solution,
    WibergError,
    rbf_argmin,
    robust_lstsq,
)

__all__ = [
    "NonFiniteError",
    "NotConvergedError",
    "SingularHessianError",
    "Solution",
    "WibergError",
    "rbf_argmin",
    "robust_lstsq",
]

__version__ = "0.1.0"


def _rebuild(kind, args, kwargs):
    """Unpickles a ``Solution``: solves again from its inputs (deterministic)."""
    fn = {"rbf_argmin": rbf_argmin, "robust_lstsq": robust_lstsq}[kind]
    return fn(*args, **kwargs)
