"""Shared fixtures: float64 JAX, RANSAC samples, the Tome et al. parameter directory."""

import os
import pathlib

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

REPO = pathlib.Path(__file__).resolve().parents[3]


def ransac_sample(rng, inliers=10, outliers=100, std=4.0, lo=-40.0, hi=40.0):
    """The paper's protocol: centre m ~ U[lo, hi], inliers N(m, std^2), outliers U[lo, hi];
    returns the points (inliers first) and the target mean(inliers)."""
    m = rng.uniform(lo, hi)
    inl = m + std * rng.standard_normal(inliers)
    out = rng.uniform(lo, hi, outliers)
    return np.concatenate([inl, out]), inl.mean()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def tome_dir():
    """The Tome et al. 2018 parameters: $WIBERG_TOME2018_DIR, else shared/data beside the
    repository (as for the cargo tests)."""
    env = os.environ.get("WIBERG_TOME2018_DIR")
    path = pathlib.Path(env) if env else REPO.parent / "shared" / "data" / "tome2018"
    assert path.is_dir(), f"Tome et al. parameters not found at {path} (set WIBERG_TOME2018_DIR)"
    return path
