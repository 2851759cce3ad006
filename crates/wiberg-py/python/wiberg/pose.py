"""The Tome et al. 2018 multi-camera 3-D pose model as trained by Toso et al. 2019.

``Model.load(checkpoint_dir, variant="huber")`` reads our npy layout or the authors' h5 files;
``model.reconstruct(views)`` maps ``(B, 4, 17, 2)`` detections to ``(B, 17, 3)`` poses;
``model.loss_and_grad(views, gt_3d)`` gives the mean metric-2 loss and its gradient over the
6,662 parameters (``model.params`` / ``model.set_params``); ``mpjpe(pred, gt)`` is metric 2.
"""

from ._core import N_POSE_PARAMS, Model, mpjpe

__all__ = ["Model", "mpjpe", "N_POSE_PARAMS"]


def _rebuild_model(values, cameras, epoch, variant, damping, lam, threads):
    """Unpickles a ``Model`` from its parameters."""
    return Model._from_state(values, cameras, epoch, variant, damping, lam, threads)
