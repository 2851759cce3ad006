"""Speed of wiberg's Python package on the paper's RANSAC step (110 kernels in 1-D, seed at the
lowest-energy point, L-BFGS <= 10 iterations, polish, trust-region derivative of the loss
(t* - mean(inliers))^2 with respect to sigma):

1. per-call overhead of `wiberg.rbf_argmin` on one sample above the same work in Rust;
2. a batch of 10,000 samples per call (forward + vjp), per sample, on 1 and 2 threads;
3. JAXopt (`jaxopt.LBFGS`, maxiter 10, implicit differentiation) from the same seed, the loss
   and its gradient fused over the 10,000 samples with `lax.scan` under `jit`.

Usage: python ransac_speed.py [--samples 10000] [--repeats 5]   (needs jax and jaxopt)
Prints a Markdown table. Times are the fastest of `--repeats` runs (wall clock).
"""

import argparse
import os
import time

import numpy as np

import wiberg
from wiberg import _core


def samples(rng, count):
    m = rng.uniform(-40, 40, count)
    inl = m[:, None] + 4.0 * rng.standard_normal((count, 10))
    out = rng.uniform(-40, 40, (count, 100))
    return np.concatenate([inl, out], axis=1), inl.mean(axis=1)


def best_time(fn, repeats):
    """The fastest of `repeats` runs: on a shared machine, the least disturbed one."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sigma", type=float, default=3.0)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    xs, targets = samples(rng, args.samples)
    sigma = args.sigma
    rows = []

    # 1. Per-call overhead on one sample.
    x0 = xs[0].copy()
    calls = 2000
    py_times, rust_times = [], []
    for _ in range(args.repeats):  # interleaved, so that both see the same machine load
        py_times.append(best_time(lambda: [wiberg.rbf_argmin(x0, sigma) for _ in range(calls)], 1) / calls)
        rust_times.append(_core._rust_rbf_seconds_per_call(x0, sigma, calls))
    py, rust = min(py_times), min(rust_times)
    rows.append(("one sample: `wiberg.rbf_argmin(x, sigma)` from Python", py * 1e6))
    rows.append(("one sample: the same work in Rust (build the mixture, forward)", rust * 1e6))
    rows.append(("per-call overhead of the Python call", (py - rust) * 1e6))

    # 2. Batches: forward + vjp of the loss.
    batch = xs[:, :, None]

    def step(threads):
        sol = wiberg.rbf_argmin(batch, sigma, threads=threads)
        dl_dy = 2 * (sol.y - targets[:, None])
        return sol.vjp(dl_dy, wrt="sigma")["sigma"]  # as JAXopt below: dl/dsigma only

    for threads in (1, 2):
        t = best_time(lambda: step(threads), args.repeats) / args.samples
        rows.append((f"batch of {args.samples:,}: forward + vjp, {threads} thread(s), per sample", t * 1e6))
    t_fwd = best_time(lambda: wiberg.rbf_argmin(batch, sigma, threads=1), args.repeats) / args.samples
    rows.append((f"batch of {args.samples:,}: forward only, 1 thread, per sample", t_fwd * 1e6))

    # 3. JAXopt, fused with lax.scan.
    try:
        import jax
        import jax.numpy as jnp
        import jaxopt
    except ImportError:
        jax = None
    if jax is not None:
        jax.config.update("jax_enable_x64", True)

        def energy(t, x, s):
            return -jnp.sum(jnp.exp(-((x - t[0]) ** 2) / s**2))

        solver = jaxopt.LBFGS(fun=energy, maxiter=10, tol=1e-10, implicit_diff=True)

        def loss(s, x, target):
            seeds = jax.vmap(lambda t: energy(jnp.array([t]), x, s))(x)
            t0 = x[jnp.argmin(seeds)]
            t = solver.run(jnp.array([t0]), x=x, s=s).params
            return (t[0] - target) ** 2

        def scan_body(acc, xt):
            value, grad = jax.value_and_grad(loss)(sigma, xt[0], xt[1])
            return acc + grad, value

        fused = jax.jit(lambda X, T: jax.lax.scan(scan_body, 0.0, (X, T)))
        X, T = jnp.asarray(xs), jnp.asarray(targets)
        jax.block_until_ready(fused(X, T))  # compile
        t_jax = best_time(lambda: jax.block_until_ready(fused(X, T)), args.repeats) / args.samples
        rows.append((f"JAXopt LBFGS, loss + grad fused with `lax.scan` over {args.samples:,}, per sample", t_jax * 1e6))
        for threads in (1, 2):
            t = [r for r in rows if f"{threads} thread(s)" in r[0]][0][1]
            rows.append((f"JAXopt scan / wiberg batch ({threads} thread(s))", t_jax * 1e6 / t))

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print("| measurement | us (or ratio) |")
    print("|---|---|")
    for name, value in rows:
        unit = "x" if "/" in name else ""
        print(f"| {name} | {value:.2f}{unit} |")


if __name__ == "__main__":
    main()
