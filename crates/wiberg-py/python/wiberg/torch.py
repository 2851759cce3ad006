"""PyTorch layers: ``rbf_argmin`` and ``robust_lstsq`` as ``torch.autograd.Function``s.

CPU float64 tensors only (a CUDA or float32 tensor is a ``ValueError``); every tensor
argument is differentiable. The forward pass is ``wiberg.rbf_argmin`` /
``wiberg.robust_lstsq`` on the tensors' numpy views, the backward pass the solution's
``vjp``. Arguments that are not tensors (floats, numpy arrays) are treated as constants.
"""

import numpy as np
import torch

import wiberg as _wiberg

__all__ = ["rbf_argmin", "robust_lstsq"]


def _numpy(x, name):
    """The numpy view of a CPU float64 tensor (other values pass through unchanged)."""
    if x is None or not isinstance(x, torch.Tensor):
        return x
    if x.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor (wiberg solves on the CPU), got device {x.device}")
    if x.dtype != torch.float64:
        raise ValueError(f"{name} must be a float64 tensor, got {x.dtype}")
    return x.detach().numpy()


def _vjp(ctx, dl_dy, names):
    """The gradients of the inputs that need one (``needs_input_grad``), by name: the solution's
    ``vjp`` is asked for those only, so that it skips the others' work."""
    wanted = [name for name, needed in zip(names, ctx.needs_input_grad) if needed]
    if not wanted:
        return [None] * len(names)
    grads = ctx.solution.vjp(dl_dy.detach().to(torch.float64).cpu().numpy(), wrt=wanted)
    return [torch.from_numpy(grads[name]) if name in grads else None for name in names]


class _RbfArgmin(torch.autograd.Function):
    @staticmethod
    def forward(ctx, centers, sigma, weights, options):
        sol = _wiberg.rbf_argmin(
            _numpy(centers, "centers"), _numpy(sigma, "sigma"), _numpy(weights, "weights"), **options
        )
        ctx.solution = sol
        return torch.from_numpy(sol.y)

    @staticmethod
    def backward(ctx, dl_dy):
        return (*_vjp(ctx, dl_dy, ("centers", "sigma", "weights")), None)


class _RobustLstsq(torch.autograd.Function):
    @staticmethod
    def forward(ctx, A, b, weights, delta, options):
        sol = _wiberg.robust_lstsq(
            _numpy(A, "A"),
            _numpy(b, "b"),
            weights=_numpy(weights, "weights"),
            delta=_numpy(delta, "delta"),
            **options,
        )
        ctx.solution = sol
        return torch.from_numpy(sol.y)

    @staticmethod
    def backward(ctx, dl_dy):
        return (*_vjp(ctx, dl_dy, ("A", "b", "weights", "delta")), None)


def rbf_argmin(
    centers, sigma, weights=None, *, damping="trust-region", lam=0.1, lbfgs_iterations=10, polish=True, threads=0
):
    """``wiberg.rbf_argmin`` as a differentiable layer: returns ``y`` as a tensor."""
    options = dict(damping=damping, lam=lam, lbfgs_iterations=lbfgs_iterations, polish=polish, threads=threads)
    return _RbfArgmin.apply(centers, sigma, weights, options)


def robust_lstsq(
    A, b, *, weights=None, delta=None, mu=0.0, group_size=1, damping="trust-region", lam=0.1, threads=0
):
    """``wiberg.robust_lstsq`` as a differentiable layer: returns ``y`` as a tensor."""
    options = dict(mu=mu, group_size=group_size, damping=damping, lam=lam, threads=threads)
    return _RobustLstsq.apply(A, b, weights, delta, options)
