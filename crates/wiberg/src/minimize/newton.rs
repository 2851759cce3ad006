//! Trust-region Newton with the exact Hessian.
//!
//! Written here rather than taken from argmin: argmin's `TrustRegion` never reports
//! convergence from `terminate()` and always runs to `max_iters` (`../shared/DEPENDENCIES.md`).
//! This is the Levenberg-Marquardt form of the trust region: the step solves
//! `(H + mu I) p = -g` with `mu >= max(0, -eig_min(H)) + eps`, and `mu` grows when the model
//! predicts the decrease badly and shrinks when it predicts it well (ratio test).

use super::{norm, MinimizeOutcome, StopReason};
use crate::damped::DampedSystem;
use crate::derivative::Damping;
use crate::energy::Energy;
use crate::error::WibergError;
use crate::Result;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

/// Trust-region Newton settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NewtonConfig {
    /// Maximum number of accepted or rejected steps.
    pub max_iters: usize,
    /// Stop when `|grad E| <= grad_tol`.
    pub grad_tol: f64,
    /// Initial damping `mu` (inverse of a trust radius).
    pub initial_mu: f64,
}

impl Default for NewtonConfig {
    fn default() -> Self {
        NewtonConfig { max_iters: 50, grad_tol: 1e-10, initial_mu: 1e-3 }
    }
}

/// Runs trust-region Newton from `y` (overwritten with the result).
pub fn minimize<E: Energy + ?Sized>(cfg: &NewtonConfig, e: &E, w: &[f64], y: &mut [f64]) -> Result<MinimizeOutcome> {
    minimize_into(cfg, e, w, y, &mut vec![0.0; y.len()])
}

/// [`minimize`], also writing the gradient at the returned point into `g`.
pub(crate) fn minimize_into<E: Energy + ?Sized>(
    cfg: &NewtonConfig,
    e: &E,
    w: &[f64],
    y: &mut [f64],
    g_out: &mut [f64],
) -> Result<MinimizeOutcome> {
    if cfg.grad_tol.is_nan()
        || cfg.grad_tol < 0.0
        || cfg.initial_mu.is_nan()
        || cfg.initial_mu <= 0.0
        || !cfg.initial_mu.is_finite()
    {
        return Err(WibergError::InvalidArgument(format!(
            "trust-region Newton needs grad_tol >= 0 and initial_mu > 0, got {cfg:?}"
        )));
    }
    let n = y.len();
    let mut g = vec![0.0; n];
    let mut g_trial = vec![0.0; n];
    let mut trial = vec![0.0; n];
    let mut h = DMatrix::zeros(n, n);
    let mut f = e.gradient(y, w, &mut g);
    let mut evaluations = 1;
    if !f.is_finite() || !g.iter().all(|v| v.is_finite()) {
        return Err(WibergError::NonFinite { what: "energy or gradient at the start point".into() });
    }
    let mut mu = cfg.initial_mu;
    let mut iterations = 0;
    let mut need_hessian = true;
    let stop = loop {
        let gnorm = norm(&g);
        if gnorm <= cfg.grad_tol {
            break StopReason::GradientTolerance;
        }
        if iterations >= cfg.max_iters {
            break StopReason::MaxIterations;
        }
        iterations += 1;
        if need_hessian {
            e.hessian(y, w, &mut h);
        }
        // Guarded damping makes H + shift I >= mu I: the step is always a descent direction.
        let sys = match DampedSystem::factorize(h.clone(), Damping::Guarded { lambda: mu }) {
            Ok(s) => s,
            Err(WibergError::NonFinite { .. }) => {
                return Err(WibergError::NonFinite { what: "Hessian during trust-region Newton".into() })
            }
            Err(_) => {
                mu *= 10.0;
                need_hessian = false;
                continue;
            }
        };
        let step = sys.solve(&g)?;
        // Predicted decrease of the quadratic model m(p) = g.p + p.H.p/2 with p = -step.
        let mut hp = vec![0.0; n];
        for i in 0..n {
            hp[i] = (0..n).map(|j| h[(i, j)] * step[j]).sum();
        }
        let predicted = super::dot(&g, &step) - 0.5 * super::dot(&step, &hp);
        for i in 0..n {
            trial[i] = y[i] - step[i];
        }
        let f_trial = e.gradient(&trial, w, &mut g_trial);
        evaluations += 1;
        let actual = f - f_trial;
        let rho = if predicted > 0.0 { actual / predicted } else { -1.0 };
        let finite = f_trial.is_finite() && g_trial.iter().all(|v| v.is_finite());
        // Near the minimum the predicted decrease drops below the rounding of E, and the
        // ratio test only sees noise: there a step is judged by the gradient it reaches.
        let in_rounding = predicted.abs() <= 64.0 * f64::EPSILON * f.abs().max(f64::MIN_POSITIVE);
        let accept = finite && if in_rounding { norm(&g_trial) < gnorm } else { actual >= 0.0 && rho > 0.1 };
        if !accept && finite && in_rounding {
            break StopReason::NoProgress;
        }
        if accept {
            let small_step = norm(&step) <= 4.0 * f64::EPSILON * (1.0 + norm(y));
            y.copy_from_slice(&trial);
            g.copy_from_slice(&g_trial);
            f = f_trial;
            need_hessian = true;
            if rho > 0.75 {
                mu = (mu / 4.0).max(1e-12);
            }
            if small_step {
                break StopReason::NoProgress;
            }
        } else {
            need_hessian = false;
            mu *= 4.0;
            if !mu.is_finite() || mu > 1e300 {
                break StopReason::NoProgress;
            }
        }
    };
    g_out.copy_from_slice(&g);
    Ok(MinimizeOutcome { iterations, evaluations, energy: f, grad_norm: norm(&g), stop })
}
