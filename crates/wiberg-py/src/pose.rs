//! `wiberg.pose`: the Tome et al. 2018 multi-camera pose model as trained by Toso et al. 2019
//! (the model of `wiberg pose`), its reconstruction, and the training loss with its gradient
//! over all 6,662 parameters.

use crate::arrays::{read_array, shape_str, to_numpy, Arr};
use crate::count_arg;
use crate::{par_map, value_error, with_pool, WibergErrorPy};
use pyo3::exceptions::PyFileNotFoundError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::path::PathBuf;
use wiberg_models::pose::checkpoint::{resolve_checkpoint_dir, STATE_FILE};
use wiberg_models::pose::data::{Frame2d, Pose3d};
use wiberg_models::pose::grad::frame_loss_and_grad;
use wiberg_models::pose::metrics::{frame_error, Metric};
use wiberg_models::pose::model::{PoseModel, Variant, Workspace};
use wiberg_models::pose::params::{PoseParams, N_CAMERAS, N_JOINTS, N_PARAMS};

const FRAME_2D: usize = N_CAMERAS * N_JOINTS * 2;
const POSE_3D: usize = N_JOINTS * 3;

fn parse_variant(name: &str) -> PyResult<Variant> {
    match name {
        "huber" => Ok(Variant::Huber),
        "l2" => Ok(Variant::L2),
        other => Err(value_error(format!("variant must be \"huber\" or \"l2\", got {other:?}"))),
    }
}

fn variant_name(v: Variant) -> &'static str {
    match v {
        Variant::Huber => "huber",
        Variant::L2 => "l2",
    }
}

/// The backward damping of the pose model's solves: 0 for `"implicit"`, `lam` for
/// `"trust-region"`.
fn backward_lambda(damping: &str, lam: f64) -> PyResult<f64> {
    match damping {
        "implicit" => Ok(0.0),
        "trust-region" | "trust_region" => {
            if lam.is_finite() && lam > 0.0 {
                Ok(lam)
            } else {
                Err(value_error(format!("lam must be finite and > 0, got {lam}")))
            }
        }
        other => Err(value_error(format!(
            "the pose model's damping must be \"implicit\" or \"trust-region\", got {other:?}"
        ))),
    }
}

/// `(B, 4, 17, 2)` (or one `(4, 17, 2)`) detections: the frames, and whether there was a
/// batch dimension.
fn read_views(obj: &Bound<'_, PyAny>) -> PyResult<(Vec<Frame2d>, bool)> {
    let a = read_array(obj, "views")?;
    let batched = match a.shape[..] {
        [N_CAMERAS, N_JOINTS, 2] => false,
        [_, N_CAMERAS, N_JOINTS, 2] => true,
        _ => {
            return Err(value_error(format!(
                "views must have shape (B, {N_CAMERAS}, {N_JOINTS}, 2) or ({N_CAMERAS}, {N_JOINTS}, 2), got {}",
                shape_str(&a.shape)
            )))
        }
    };
    let frames = a
        .data
        .chunks_exact(FRAME_2D)
        .map(|f| {
            let mut out = [[[0.0; 2]; N_JOINTS]; N_CAMERAS];
            for (c, cam) in out.iter_mut().enumerate() {
                for (j, pt) in cam.iter_mut().enumerate() {
                    pt[0] = f[(c * N_JOINTS + j) * 2];
                    pt[1] = f[(c * N_JOINTS + j) * 2 + 1];
                }
            }
            out
        })
        .collect();
    Ok((frames, batched))
}

/// `(B, 17, 3)` (or one `(17, 3)`) poses.
fn read_poses(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<(Vec<Pose3d>, bool)> {
    let a = read_array(obj, name)?;
    let batched = match a.shape[..] {
        [N_JOINTS, 3] => false,
        [_, N_JOINTS, 3] => true,
        _ => {
            return Err(value_error(format!(
                "{name} must have shape (B, {N_JOINTS}, 3) or ({N_JOINTS}, 3), got {}",
                shape_str(&a.shape)
            )))
        }
    };
    Ok((a.data.chunks_exact(POSE_3D).map(pose_from).collect(), batched))
}

fn pose_from(f: &[f64]) -> Pose3d {
    let mut out = [[0.0; 3]; N_JOINTS];
    for (j, p) in out.iter_mut().enumerate() {
        p.copy_from_slice(&f[j * 3..j * 3 + 3]);
    }
    out
}

fn wiberg_error(msg: String) -> PyErr {
    WibergErrorPy::new_err(msg)
}

/// The pose model: parameters, solver variant and the damping of its derivative.
///
/// Pickles by its parameters (the rebuilt model gives the same numbers).
#[pyclass(module = "wiberg.pose", name = "Model")]
pub(crate) struct Model {
    params: PoseParams,
    model: PoseModel,
    variant: Variant,
    damping: String,
    lam: f64,
    lambda: f64,
    threads: usize,
}

impl Model {
    fn build(params: PoseParams, variant: Variant, damping: &str, lam: f64, threads: usize) -> PyResult<Self> {
        let lambda = backward_lambda(damping, lam)?;
        let model = PoseModel::new(&params, variant).map_err(|e| value_error(format!("{e:#}")))?;
        Ok(Model { params, model, variant, damping: damping.to_string(), lam, lambda, threads })
    }
}

#[pymethods]
impl Model {
    /// Loads a checkpoint directory: our npy layout (`trained_model__*.npy` +
    /// `avg_cameras__cams.npy`), the authors' h5 files (`trained_model.h5` +
    /// `avg_cameras.h5`), or a `wiberg pose train --out` directory (its latest checkpoint).
    /// `load_robust_params` (default: only for checkpoints written by `pose train`) reads
    /// `hl_params` and `ir_reg` from the files instead of starting them at 1, as the released
    /// code does.
    #[staticmethod]
    #[pyo3(signature = (checkpoint_dir, variant="huber", *, damping="trust-region", lam=1e-3, load_robust_params=None, threads=0))]
    fn load(
        checkpoint_dir: PathBuf,
        variant: &str,
        damping: &str,
        lam: f64,
        load_robust_params: Option<bool>,
        threads: i64,
    ) -> PyResult<Self> {
        let variant = parse_variant(variant)?;
        let threads = count_arg(threads, "threads")?;
        if !checkpoint_dir.is_dir() {
            return Err(PyFileNotFoundError::new_err(format!(
                "checkpoint directory {} does not exist",
                checkpoint_dir.display()
            )));
        }
        let dir = resolve_checkpoint_dir(&checkpoint_dir).map_err(|e| value_error(format!("{e:#}")))?;
        let load_robust = load_robust_params.unwrap_or_else(|| dir.join(STATE_FILE).exists());
        let params = PoseParams::load_checkpoint(&dir, load_robust)
            .map_err(|e| value_error(format!("loading {}: {e:#}", dir.display())))?;
        Model::build(params, variant, damping, lam, threads)
    }

    /// Rebuilds a model from its parameters (used by pickling).
    #[staticmethod]
    #[pyo3(signature = (values, cameras, epoch, variant, damping, lam, threads))]
    fn _from_state(
        values: &Bound<'_, PyAny>,
        cameras: &Bound<'_, PyAny>,
        epoch: i64,
        variant: &str,
        damping: &str,
        lam: f64,
        threads: i64,
    ) -> PyResult<Self> {
        let values = read_params(values)?;
        let cams = read_array(cameras, "cameras")?;
        if cams.shape != [N_CAMERAS, 3, 3] {
            return Err(value_error(format!("cameras must have shape ({N_CAMERAS}, 3, 3)")));
        }
        let mut avg_cameras = [[[0.0; 3]; 3]; N_CAMERAS];
        for (c, cam) in avg_cameras.iter_mut().enumerate() {
            for (r, row) in cam.iter_mut().enumerate() {
                row.copy_from_slice(&cams.data[c * 9 + r * 3..c * 9 + r * 3 + 3]);
            }
        }
        let params = PoseParams { values, avg_cameras, epoch };
        Model::build(params, parse_variant(variant)?, damping, lam, count_arg(threads, "threads")?)
    }

    /// The 6,662 trainable parameters (a copy), in the flat order of the checkpoints' groups.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_numpy(py, self.params.values.clone(), &[N_PARAMS])
    }

    /// Replaces the parameters (`(6662,)`, finite) and rebuilds the model.
    fn set_params(&mut self, values: &Bound<'_, PyAny>) -> PyResult<()> {
        let values = read_params(values)?;
        let params = PoseParams { values, avg_cameras: self.params.avg_cameras, epoch: self.params.epoch };
        let model = PoseModel::new(&params, self.variant).map_err(|e| value_error(format!("{e:#}")))?;
        self.params = params;
        self.model = model;
        Ok(())
    }

    /// The solver variant, `"huber"` or `"l2"`.
    #[getter]
    fn variant(&self) -> &'static str {
        variant_name(self.variant)
    }

    /// 3-D poses `(B, 17, 3)` (unit limb scale times the learned output scale) from
    /// detections `(B, 4, 17, 2)` in pixels; one `(4, 17, 2)` frame gives `(17, 3)`.
    fn reconstruct<'py>(&self, py: Python<'py>, views: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let (frames, batched) = read_views(views)?;
        let results = py.detach(|| {
            par_map(self.threads, frames.len(), |i| {
                let mut ws = Workspace::default();
                self.model.reconstruct(&frames[i], &mut ws).map(|r| r.pose)
            })
        })?;
        let mut data: Vec<f64> = Vec::with_capacity(frames.len() * POSE_3D);
        for (i, r) in results.into_iter().enumerate() {
            let pose = r.map_err(|e| wiberg_error(format!("frame {i}: {e:#}")))?;
            data.extend(pose.iter().flatten());
        }
        if batched {
            to_numpy(py, data, &[frames.len(), N_JOINTS, 3])
        } else {
            to_numpy(py, data, &[N_JOINTS, 3])
        }
    }

    /// The training loss (metric 2, mm, mean over the frames) and its gradient with respect to
    /// the 6,662 parameters, through every (model, rotation) minimiser with the model's damping.
    fn loss_and_grad<'py>(
        &self,
        py: Python<'py>,
        views: &Bound<'py, PyAny>,
        gt_3d: &Bound<'py, PyAny>,
    ) -> PyResult<(f64, Bound<'py, PyAny>)> {
        let (frames, _) = read_views(views)?;
        let (gts, _) = read_poses(gt_3d, "gt_3d")?;
        if frames.len() != gts.len() {
            return Err(value_error(format!("{} frames of views but {} of gt_3d", frames.len(), gts.len())));
        }
        let outcome = py.detach(|| {
            with_pool(self.threads, || {
                wiberg::batch::mean_loss_and_grad(&frames, N_PARAMS, |i, frame| {
                    let mut ws = Workspace::default();
                    let damping = if self.lambda == 0.0 {
                        wiberg::Damping::Implicit
                    } else {
                        wiberg::Damping::TrustRegion { lambda: self.lambda }
                    };
                    frame_loss_and_grad(&self.model, &self.params, frame, &gts[i], damping, &mut ws)
                        .map_err(|e| wiberg::WibergError::InvalidArgument(format!("frame {i}: {e:#}")))
                })
            })
        })?;
        let outcome = outcome.map_err(|e| wiberg_error(e.to_string()))?;
        if let Some((i, e)) = outcome.failures.first() {
            return Err(wiberg_error(format!("frame {i}: {e}")));
        }
        Ok((outcome.loss, to_numpy(py, outcome.grad, &[N_PARAMS])?))
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let rebuild = py.import("wiberg.pose")?.getattr("_rebuild_model")?;
        let cams: Vec<f64> = self.params.avg_cameras.iter().flatten().flatten().copied().collect();
        let state = (
            to_numpy(py, self.params.values.clone(), &[N_PARAMS])?,
            to_numpy(py, cams, &[N_CAMERAS, 3, 3])?,
            self.params.epoch,
            variant_name(self.variant),
            self.damping.clone(),
            self.lam,
            self.threads,
        );
        PyTuple::new(py, [rebuild, state.into_pyobject(py)?.into_any()])
    }

    fn __repr__(&self) -> String {
        format!("Model(variant={:?}, damping={:?}, lam={})", variant_name(self.variant), self.damping, self.lam)
    }
}

fn read_params(values: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
    let a: Arr = read_array(values, "params")?;
    if a.shape != [N_PARAMS] {
        return Err(value_error(format!("params must have shape ({N_PARAMS},), got {}", shape_str(&a.shape))));
    }
    Ok(a.data)
}

/// Metric 2 (mm): the mean per-joint error after the oracle scale of `gt` (the model's
/// output has unit limb scale), averaged over the frames.
#[pyfunction]
pub(crate) fn mpjpe(pred: &Bound<'_, PyAny>, gt: &Bound<'_, PyAny>) -> PyResult<f64> {
    let (p, _) = read_poses(pred, "pred")?;
    let (g, _) = read_poses(gt, "gt")?;
    if p.len() != g.len() || p.is_empty() {
        return Err(value_error(format!("pred has {} frames and gt {}; they must match", p.len(), g.len())));
    }
    Ok(p.iter().zip(&g).map(|(a, b)| frame_error(Metric::Mpjpe, a, b)).sum::<f64>() / p.len() as f64)
}
