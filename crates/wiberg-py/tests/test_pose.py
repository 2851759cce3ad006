"""wiberg.pose: loading, reconstruction, the loss gradient against finite differences,
pickling."""

import pickle

import numpy as np
import pytest

import wiberg
import wiberg.pose as wp

# The projection of `wiberg pose generate`: pinhole cameras looking at (0, 0, 900) mm from
# 5300 mm, focal length 1145 px, principal point (512, 512), rotations avg_cameras.
FOCAL, PRINCIPAL, DISTANCE, LOOK_AT = 1145.0, np.array([512.0, 512.0]), 5300.0, np.array([0.0, 0.0, 900.0])


def frames(tome_dir, count, rng, noise_px=2.0):
    """`count` frames: PPCA mean poses turned about the vertical, seen by the four cameras."""
    mu = np.load(tome_dir / "model_parameters__mu_3.npy")  # (3, 3, 17) mm
    cams = np.load(tome_dir / "avg_cameras__cams.npy")  # (4, 3, 3)
    views, gts = [], []
    for i in range(count):
        p = mu[i % 3].T  # (17, 3)
        t = rng.uniform(0, 2 * np.pi)
        rz = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
        world = p @ rz.T + LOOK_AT
        v = []
        for r in cams:
            centre = LOOK_AT - DISTANCE * r[2]
            xc = (world - centre) @ r.T
            v.append(FOCAL * xc[:, :2] / xc[:, 2:3] + PRINCIPAL + noise_px * rng.standard_normal((17, 2)))
        views.append(v)
        gts.append(world)
    return np.array(views), np.array(gts)


@pytest.fixture(scope="module")
def model(tome_dir):
    return wp.Model.load(tome_dir)


def test_load_and_reconstruct(model, tome_dir):
    rng = np.random.default_rng(1)
    views, gts = frames(tome_dir, 4, rng)
    assert model.params.shape == (wp.N_POSE_PARAMS,) == (6662,)
    rec = model.reconstruct(views)
    assert rec.shape == (4, 17, 3) and np.isfinite(rec).all()
    np.testing.assert_array_equal(model.reconstruct(views[1]), rec[1])
    err = wp.mpjpe(rec, gts)
    assert 0.0 < err < 120.0, err  # mm, on clean synthetic frames
    # The authors' h5 files give the same model.
    h5 = wp.Model.load(tome_dir / "h5")
    np.testing.assert_array_equal(h5.params, model.params)


def test_bad_pose_inputs(model, tome_dir):
    with pytest.raises(ValueError, match="views must have shape"):
        model.reconstruct(np.zeros((2, 3, 17, 2)))
    with pytest.raises(ValueError, match="finite"):
        model.reconstruct(np.full((4, 17, 2), np.nan))
    with pytest.raises(ValueError, match="params must have shape"):
        model.set_params(np.zeros(5))
    with pytest.raises(ValueError, match="variant"):
        wp.Model.load(tome_dir, "l1")
    with pytest.raises(FileNotFoundError):
        wp.Model.load(tome_dir / "does-not-exist")
    with pytest.raises(ValueError):
        wp.Model.load(tome_dir / "..")  # a directory without parameters


def test_loss_gradient_matches_central_differences(tome_dir):
    # The L2 variant with the implicit derivative is the exact derivative of the loss.
    m = wp.Model.load(tome_dir, "l2", damping="implicit")
    rng = np.random.default_rng(2)
    views, gts = frames(tome_dir, 2, rng, noise_px=4.0)
    loss, grad = m.loss_and_grad(views, gts)
    assert grad.shape == (6662,) and np.isfinite(grad).all() and loss > 0
    p0 = m.params
    order = np.argsort(-np.abs(grad))
    for i in [order[0], order[5], order[50]]:
        h = 1e-5 * max(1.0, abs(p0[i]))
        p = p0.copy()
        p[i] += h
        m.set_params(p)
        lp, _ = m.loss_and_grad(views, gts)
        p[i] -= 2 * h
        m.set_params(p)
        lm, _ = m.loss_and_grad(views, gts)
        fd = (lp - lm) / (2 * h)
        tol = 1e-4 * max(abs(fd), abs(grad[i])) + 1e3 * np.finfo(float).eps * loss / h
        assert abs(fd - grad[i]) <= tol, (i, grad[i], fd)
    m.set_params(p0)
    np.testing.assert_array_equal(m.params, p0)


def test_model_pickles(model, tome_dir):
    views, gts = frames(tome_dir, 2, np.random.default_rng(3))
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.params, model.params)
    np.testing.assert_array_equal(back.reconstruct(views), model.reconstruct(views))
    l0, g0 = model.loss_and_grad(views, gts)
    l1, g1 = back.loss_and_grad(views, gts)
    assert l0 == l1
    np.testing.assert_array_equal(g0, g1)
