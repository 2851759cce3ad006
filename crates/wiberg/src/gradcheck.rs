//! Gradient check: central finite differences of the whole forward pass (start, minimise,
//! polish) and a loss, against the layer's backward pass.
//!
//! With `Damping::Implicit` and the polish step on, the two agree to finite-difference
//! accuracy at a strict minimum; with trust-region damping they differ by design (the damped
//! derivative is not the derivative of the forward pass), which this check also measures.

use crate::damped::HessianSolve;
use crate::energy::Energy;
use crate::error::{check_finite, check_len, WibergError};
use crate::layer::{ArgminLayer, Start};
use crate::Result;

/// Result of [`gradcheck`]: both gradients and their largest disagreement.
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheck {
    /// `dl/dw` from the backward pass.
    pub analytic: Vec<f64>,
    /// `dl/dw` from central finite differences of forward + loss.
    pub numeric: Vec<f64>,
    /// `max_j |analytic_j - numeric_j|`.
    pub max_abs_error: f64,
    /// `max_j |analytic_j - numeric_j| / max(|analytic_j|, |numeric_j|)` (entries where both
    /// are exactly 0 count as 0).
    pub max_rel_error: f64,
    /// `max_abs_error / max_j max(|analytic_j|, |numeric_j|)`: the error relative to the
    /// gradient's size, robust to entries that are near 0 (0 when both gradients are 0).
    pub scaled_error: f64,
    /// The loss at `w`.
    pub loss: f64,
}

/// Compares the layer's backward pass (any damped-solve strategy) with central finite
/// differences of `w -> loss(forward(e, w, start).y)`.
///
/// `loss(y)` returns the loss and its gradient `dl/dy` (length `n`). Parameter `j` is moved by
/// `h_j = step * max(1, |w_j|)`; `step = 1e-6` is a good default for smooth energies
/// (the error of the difference is `O(h^2)` plus the inner solver's tolerance over `h`, so
/// solve to a tight tolerance or polish).
///
/// Errors: any error of the forward or backward passes, a non-positive or non-finite `step`,
/// a loss gradient of the wrong length, or a non-finite loss.
///
/// ```
/// use wiberg::{gradcheck::gradcheck, ArgminLayer, Damping, RbfMixture, Start};
/// // Two unit kernels at 0 and 1 with a shared width s; y*(s) is their midpoint-ish mode.
/// let e = RbfMixture::shared_width(1, vec![0.0, 1.0, 3.0]).unwrap();
/// let layer = ArgminLayer::with_damping(Damping::Implicit);
/// let seeds = [0.0, 1.0, 3.0];
/// let loss = |y: &[f64]| ((y[0] - 0.2).powi(2), vec![2.0 * (y[0] - 0.2)]);
/// let check = gradcheck(&layer, &e, &[1.2], Start::Seeds(&seeds), loss, 1e-6).unwrap();
/// assert!(check.max_rel_error < 1e-6, "{check:?}");
/// assert!(check.analytic[0].abs() > 1e-3); // a gradient that means something
/// ```
pub fn gradcheck<E, L, S>(
    layer: &ArgminLayer<S>,
    e: &E,
    w: &[f64],
    start: Start<'_>,
    loss: L,
    step: f64,
) -> Result<GradCheck>
where
    E: Energy + ?Sized,
    S: HessianSolve<E>,
    L: Fn(&[f64]) -> (f64, Vec<f64>),
{
    if step.is_nan() || step <= 0.0 || !step.is_finite() {
        return Err(WibergError::InvalidArgument(format!("finite-difference step must be finite and > 0, got {step}")));
    }
    let sol = layer.forward(e, w, start)?;
    let (l0, dl) = loss(&sol.y);
    check_len(dl.len(), e.dim(), "loss gradient dl/dy")?;
    check_finite(&[l0], "loss")?;
    let analytic = layer.backward(e, w, &sol, &dl)?.grad_w;
    let mut numeric = vec![0.0; w.len()];
    let mut wp = w.to_vec();
    for j in 0..w.len() {
        let h = step * w[j].abs().max(1.0);
        wp[j] = w[j] + h;
        let lp = loss(&layer.forward(e, &wp, start)?.y).0;
        wp[j] = w[j] - h;
        let lm = loss(&layer.forward(e, &wp, start)?.y).0;
        wp[j] = w[j];
        numeric[j] = (lp - lm) / (2.0 * h);
    }
    check_finite(&numeric, "finite-difference gradient")?;
    let mut max_abs_error: f64 = 0.0;
    let mut max_rel_error: f64 = 0.0;
    let mut max_scale: f64 = 0.0;
    for (a, n) in analytic.iter().zip(&numeric) {
        let err = (a - n).abs();
        let scale = a.abs().max(n.abs());
        max_abs_error = max_abs_error.max(err);
        max_scale = max_scale.max(scale);
        if scale > 0.0 {
            max_rel_error = max_rel_error.max(err / scale);
        }
    }
    let scaled_error = if max_scale > 0.0 { max_abs_error / max_scale } else { 0.0 };
    Ok(GradCheck { analytic, numeric, max_abs_error, max_rel_error, scaled_error, loss: l0 })
}
