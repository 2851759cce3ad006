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


def _grad(ctx, i, grads, key):
    return torch.from_numpy(grads[key]) if ctx.needs_input_grad[i] else None


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
        if not any(ctx.needs_input_grad[:3]):
            return None, None, None, None
        grads = ctx.solution.vjp(dl_dy.detach().to(torch.float64).cpu().numpy())
        return (
            _grad(ctx, 0, grads, "centers"),
            _grad(ctx, 1, grads, "sigma"),
            _grad(ctx, 2, grads, "weights") if "weights" in grads else None,
            None,
        )


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
        if not any(ctx.needs_input_grad[:4]):
            return None, None, None, None, None
        grads = ctx.solution.vjp(dl_dy.detach().to(torch.float64).cpu().numpy())
        return (
            _grad(ctx, 0, grads, "A"),
            _grad(ctx, 1, grads, "b"),
            _grad(ctx, 2, grads, "weights") if "weights" in grads else None,
            _grad(ctx, 3, grads, "delta") if "delta" in grads else None,
            None,
        )


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
