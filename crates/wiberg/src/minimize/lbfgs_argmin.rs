//! The argmin back-end of L-BFGS (`LBFGS` + `MoreThuenteLineSearch`), guarded.
//!
//! Guards (see `../shared/DEPENDENCIES.md`): argmin's line search has no iteration limit, so
//! cost and gradient return an error once the evaluation budget is spent and the best point
//! so far is kept; `Executor::run` returns `Ok` on failure, so the termination status is read.

use super::{norm, MinimizeOutcome, StopReason};
use crate::energy::Energy;
use crate::error::WibergError;
use crate::minimize::LbfgsConfig;
use crate::Result;
use argmin::core::{
    CostFunction, Error as ArgminError, Executor, Gradient, State, TerminationReason, TerminationStatus,
};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use std::cell::{Cell, RefCell};

/// The problem handed to argmin. The counters live outside it (borrowed): when the budget
/// guard aborts the run, argmin drops the problem with the executor, and the best point must
/// survive that.
struct Problem<'a, E: Energy + ?Sized> {
    e: &'a E,
    w: &'a [f64],
    evals: &'a Cell<usize>,
    budget: usize,
    /// Best (energy, point) evaluated so far: the answer when the budget stops the solve.
    best: &'a RefCell<(f64, Vec<f64>)>,
    /// Consecutive cost evaluations that did not improve on the best point.
    stalled: &'a Cell<usize>,
}

/// Cost evaluations in a row without any decrease after which the solve is stopped as
/// converged to machine precision: near a minimum the decrease a step can bring falls below
/// the rounding of E, and argmin's More-Thuente line search (no iteration limit) would keep
/// bisecting until the evaluation budget is gone (measured: 1,000 evaluations on a 1-D
/// RANSAC energy whose gradient could not go below 1.6e-8).
const MAX_STALLED_COSTS: usize = 8;

#[derive(Debug)]
struct BudgetSpent;
impl std::fmt::Display for BudgetSpent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "evaluation budget spent")
    }
}
impl std::error::Error for BudgetSpent {}

impl<E: Energy + ?Sized> Problem<'_, E> {
    fn spend(&self) -> std::result::Result<(), ArgminError> {
        if self.evals.get() >= self.budget || self.stalled.get() >= MAX_STALLED_COSTS {
            return Err(BudgetSpent.into());
        }
        self.evals.set(self.evals.get() + 1);
        Ok(())
    }
    fn record(&self, p: &[f64], f: f64) {
        let mut best = self.best.borrow_mut();
        if f.is_finite() && f < best.0 {
            best.0 = f;
            best.1.clear();
            best.1.extend_from_slice(p);
        }
    }
}

impl<E: Energy + ?Sized> CostFunction for Problem<'_, E> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Self::Param) -> std::result::Result<f64, ArgminError> {
        self.spend()?;
        let f = self.e.value(p, self.w);
        if f.is_finite() && f < self.best.borrow().0 {
            self.stalled.set(0);
        } else {
            self.stalled.set(self.stalled.get() + 1);
        }
        self.record(p, f);
        Ok(f)
    }
}

impl<E: Energy + ?Sized> Gradient for Problem<'_, E> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Self::Param) -> std::result::Result<Vec<f64>, ArgminError> {
        self.spend()?;
        let mut g = vec![0.0; p.len()];
        let f = self.e.gradient(p, self.w, &mut g);
        self.record(p, f);
        Ok(g)
    }
}

pub(super) fn minimize<E: Energy + ?Sized>(
    cfg: &LbfgsConfig,
    e: &E,
    w: &[f64],
    y: &mut [f64],
    g: &mut [f64],
) -> Result<MinimizeOutcome> {
    let f0 = e.gradient(y, w, g);
    if !f0.is_finite() || !g.iter().all(|v| v.is_finite()) {
        return Err(WibergError::NonFinite { what: "energy or gradient at the start point".into() });
    }
    if norm(g) <= cfg.grad_tol {
        return Ok(MinimizeOutcome {
            iterations: 0,
            evaluations: 1,
            energy: f0,
            grad_norm: norm(g),
            stop: StopReason::GradientTolerance,
        });
    }
    let evals = Cell::new(1);
    let best = RefCell::new((f0, y.to_vec()));
    let stalled = Cell::new(0);
    let problem = Problem { e, w, evals: &evals, budget: cfg.max_evals, best: &best, stalled: &stalled };
    let invalid = |err: ArgminError| WibergError::InvalidArgument(format!("argmin L-BFGS set-up: {err}"));
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), cfg.memory)
        .with_tolerance_grad(cfg.grad_tol)
        .map_err(invalid)?
        .with_tolerance_cost(0.0)
        .map_err(invalid)?;
    let start = y.to_vec();
    let max_iters = cfg.max_iters as u64;
    let run = Executor::new(problem, solver).configure(|s| s.param(start).max_iters(max_iters)).run();
    // On `Err` (the budget guard, or a line-search failure) argmin's state is gone with the
    // executor: the iteration count is unknown (reported as 0), the best point is kept.
    let (iterations, status) = match run {
        Ok(res) => (res.state().get_iter() as usize, Some(res.state().get_termination_status().clone())),
        Err(_) => (0, None),
    };
    let evaluations = evals.get();
    let (_, best_point) = best.into_inner();
    y.copy_from_slice(&best_point);
    let energy = e.gradient(y, w, g);
    let gnorm = norm(g);
    let stop = match status {
        _ if gnorm <= cfg.grad_tol => StopReason::GradientTolerance,
        Some(TerminationStatus::Terminated(TerminationReason::MaxItersReached)) => StopReason::MaxIterations,
        Some(TerminationStatus::Terminated(TerminationReason::SolverConverged)) => StopReason::NoProgress,
        _ if evaluations >= cfg.max_evals => StopReason::EvaluationBudget,
        None if stalled.get() >= MAX_STALLED_COSTS => StopReason::NoProgress,
        _ if newton_decrease_in_rounding(e, w, y, g, energy) => StopReason::NoProgress,
        _ => StopReason::LineSearchFailed,
    };
    Ok(MinimizeOutcome { iterations, evaluations: evaluations + 1, energy, grad_norm: gnorm, stop })
}

/// Whether the decrease a Newton step along the gradient could bring,
/// `|g|^4 / (2 g.H.g)`, is below the rounding of `E`: then a line search that failed had
/// nothing left to find (converged to machine precision). One Hessian-vector product, paid
/// only when argmin's line search has failed.
fn newton_decrease_in_rounding<E: Energy + ?Sized>(e: &E, w: &[f64], y: &[f64], g: &[f64], f: f64) -> bool {
    let mut hg = vec![0.0; g.len()];
    e.hvp(y, w, g, &mut hg);
    let gg: f64 = g.iter().map(|v| v * v).sum();
    let ghg: f64 = g.iter().zip(&hg).map(|(a, b)| a * b).sum();
    ghg > 0.0 && gg * gg / (2.0 * ghg) <= 1024.0 * f64::EPSILON * f.abs().max(f64::MIN_POSITIVE)
}
