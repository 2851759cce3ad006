"""The paper's Figure 1 in PyTorch: learn the width sigma of a 1-D MLESAC energy
E(t) = -sum_i exp(-(x_i - t)^2 / sigma^2) by ASGD on (t* - mean(inliers))^2, differentiating
through t* = argmin E with the implicit and the trust-region derivative (`wiberg ransac` in
Python; every method sees the same samples)."""

import argparse

import numpy as np
import torch

import wiberg
import wiberg.torch as wt


def sample(rng):
    """10 inliers N(m, 4^2) around m ~ U[-40, 40], 100 outliers U[-40, 40]; the target."""
    inliers = rng.uniform(-40, 40) + 4.0 * rng.standard_normal(10)
    return torch.from_numpy(np.concatenate([inliers, rng.uniform(-40, 40, 100)])), inliers.mean()


def train(damping, iterations, seed):
    rng = np.random.default_rng(seed)
    sigma = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.ASGD([sigma], lr=0.5, lambd=5e-4, alpha=0.75, t0=0.0)
    losses = []
    for _ in range(iterations):
        points, target = sample(rng)
        try:  # E depends on sigma^2 only: the layer gets the width |sigma| > 0
            t = wt.rbf_argmin(points, sigma.abs(), damping=damping, lam=0.1, lbfgs_iterations=10)
        except wiberg.WibergError:  # e.g. a singular Hessian under "implicit": skip the sample
            continue
        loss = (t[0] - target) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return abs(sigma.item()), float(np.mean(losses[-500:]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for damping in ("implicit", "trust-region"):
        s, loss = train(damping, args.iterations, args.seed)
        print(f"{damping:13s} |sigma| {s:7.2f}   loss (mean of the last 500) {loss:8.2f}")
