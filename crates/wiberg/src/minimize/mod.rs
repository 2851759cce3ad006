//! Inner minimisers: seed selection, L-BFGS, trust-region Newton, and (for least squares) IRLS.
//!
//! All share [`Minimizer`] as configuration and return a [`Report`].

pub mod irls;
pub mod lbfgs;
#[cfg(feature = "argmin")]
mod lbfgs_argmin;
pub mod newton;
pub mod seeds;

use crate::derivative::Diagnostics;
use crate::energy::Energy;
use crate::Result;
use serde::{Deserialize, Serialize};

pub use lbfgs::{LbfgsBackend, LbfgsConfig};
pub use newton::NewtonConfig;

/// Why an inner minimiser stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// `|grad E| <= grad_tol`.
    GradientTolerance,
    /// The step or the decrease in energy became negligible (converged to machine precision).
    NoProgress,
    /// The iteration limit was reached.
    MaxIterations,
    /// The evaluation budget ran out (the guard against endless line searches).
    EvaluationBudget,
    /// The line search could not find an acceptable step; the best point so far is kept.
    LineSearchFailed,
    /// No minimiser ran (seeds or the given start only).
    NotRun,
}

impl StopReason {
    /// Whether this reason means convergence.
    pub fn is_converged(&self) -> bool {
        matches!(self, StopReason::GradientTolerance | StopReason::NoProgress)
    }
}

/// What the forward pass did, and what the backward pass found at the solution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Index of the seed chosen as start (when seeds were given).
    pub seed_index: Option<usize>,
    /// Energies ranked by the seed scan: one per seed point, 0 without seeds. On small
    /// problems the scan can be most of a solve's time (110 seeds against about 10 L-BFGS
    /// evaluations on a RANSAC sample); an energy's [`crate::Energy::lowest_at`]
    /// may compute fewer of them exactly (the RBF mixture prunes with a proven bound) but
    /// ranks them all.
    #[serde(default)]
    pub seed_evaluations: usize,
    /// Iterations of the inner minimiser.
    pub iterations: usize,
    /// Energy (and gradient) evaluations, seed scan excluded.
    pub evaluations: usize,
    /// `|grad E|` where the inner minimiser stopped (before any polish).
    pub grad_norm: f64,
    /// `|grad E|` at the returned point (after the polish, when one was made).
    pub final_grad_norm: f64,
    /// Energy at the returned point.
    pub energy: f64,
    /// Whether the inner minimiser converged to its tolerance.
    pub converged: bool,
    /// Why the inner minimiser stopped.
    pub stop: StopReason,
    /// Whether a damped Newton polish step was made.
    pub polished: bool,
    /// Hessian diagnostics at the linearisation point of the backward pass (the returned
    /// solution by default; where the polish started under
    /// [`Linearization::PolishStart`](crate::Linearization::PolishStart)): smallest
    /// eigenvalue, condition, shift, solver. NaN with `NotFactorized` when nothing was
    /// factorised there (the matrix-free path, whose backward pass reports its own).
    pub diagnostics: Diagnostics,
}

/// Outcome of an inner minimisation (before polish and diagnostics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinimizeOutcome {
    /// Iterations made.
    pub iterations: usize,
    /// Function evaluations made.
    pub evaluations: usize,
    /// Energy at the returned point.
    pub energy: f64,
    /// `|grad E|` at the returned point.
    pub grad_norm: f64,
    /// Why it stopped.
    pub stop: StopReason,
}

/// The inner minimiser of the forward pass.
///
/// ```
/// use wiberg::{Energy, LbfgsConfig, Minimizer, NewtonConfig, RbfMixture};
/// // Two kernels at 0 and 1 (width 1): the minimum is at 1/2 by symmetry.
/// let e = RbfMixture::shared_width(1, vec![0.0, 1.0]).unwrap();
/// for m in [Minimizer::Lbfgs(LbfgsConfig::with_max_iters(20)), Minimizer::TrustRegionNewton(NewtonConfig::default())] {
///     let mut y = [0.2];
///     let out = m.minimize(&e, &[1.0], &mut y).unwrap();
///     assert!(out.stop.is_converged() && (y[0] - 0.5).abs() < 1e-9, "{out:?}");
///     assert!((out.energy + 2.0 * (-0.25f64).exp()).abs() < 1e-15);
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Minimizer {
    /// No minimisation: the start point (or best seed) is used as is (then usually polished).
    None,
    /// L-BFGS with a strong-Wolfe line search.
    Lbfgs(LbfgsConfig),
    /// Trust-region Newton with the exact Hessian.
    TrustRegionNewton(NewtonConfig),
}

impl Default for Minimizer {
    fn default() -> Self {
        Minimizer::Lbfgs(LbfgsConfig::default())
    }
}

impl Minimizer {
    /// Minimises `e(., w)` starting at `y`, which is overwritten with the result.
    pub fn minimize<E: Energy + ?Sized>(&self, e: &E, w: &[f64], y: &mut [f64]) -> Result<MinimizeOutcome> {
        self.minimize_into(e, w, y, &mut vec![0.0; y.len()])
    }

    /// [`Minimizer::minimize`], also writing the gradient at the returned point into `g`
    /// (length `n`).
    pub(crate) fn minimize_into<E: Energy + ?Sized>(
        &self,
        e: &E,
        w: &[f64],
        y: &mut [f64],
        g: &mut [f64],
    ) -> Result<MinimizeOutcome> {
        match self {
            Minimizer::None => {
                let energy = e.gradient(y, w, g);
                if !energy.is_finite() || !g.iter().all(|v| v.is_finite()) {
                    return Err(crate::WibergError::NonFinite { what: "energy or gradient at the start point".into() });
                }
                Ok(MinimizeOutcome {
                    iterations: 0,
                    evaluations: 1,
                    energy,
                    grad_norm: norm(g),
                    stop: StopReason::NotRun,
                })
            }
            Minimizer::Lbfgs(cfg) => lbfgs::minimize_into(cfg, e, w, y, g),
            Minimizer::TrustRegionNewton(cfg) => newton::minimize_into(cfg, e, w, y, g),
        }
    }
}

/// Euclidean norm.
#[inline]
pub(crate) fn norm(v: &[f64]) -> f64 {
    let sq = v.iter().map(|x| x * x).sum::<f64>();
    // Entries above ~1e154 overflow the squares; hypot does not (slower, so only then).
    if sq.is_finite() {
        sq.sqrt()
    } else {
        v.iter().fold(0.0f64, |a, x| a.hypot(*x))
    }
}

/// Dot product.
#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
