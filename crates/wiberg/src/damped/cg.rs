//! Matrix-free conjugate gradients on the damped system `(H + s I) x = b`, with `H v` from
//! the energy's Hessian-vector products ([`Energy::hvp`]): the [`CgSolve`] strategy.

use crate::damped::dense::DampedSystem;
use crate::damped::{not_factorized, HessianFactor, HessianSolve};
use crate::derivative::{Damping, Diagnostics, LinearSolver};
use crate::energy::Energy;
use crate::error::WibergError;
use crate::minimize::norm;
use crate::Result;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The matrix-free strategy for the layer: conjugate gradients on `(H + s I) x = v` with
/// Hessian-vector products from the energy ([`Energy::hvp`], which large energies should
/// override: the default forms the Hessian). For large `n` with a cheap `H v` and a
/// well-conditioned damped matrix; nothing is factorised up front, every solve runs CG from
/// zero to the relative residual `tol`.
///
/// # Negative curvature and `Guarded`
/// CG assumes the damped matrix is positive definite, and the factor starts with the shift
/// `s = lambda` (the guarded shift of a positive semi-definite `H`). Every CG step checks the
/// curvature of `H` along its search direction `p`: if `p^T H p < 0` (or `p^T (H + s I) p <= 0`),
/// the factor falls back to the dense path for good: it builds `H` from `n` Hessian-vector
/// products, factorises it with [`DampedSystem`] (which takes the exact smallest eigenvalue for
/// the guarded shift, so `H + s I >= lambda I`), keeps that factorisation for every later
/// solve, and reports its diagnostics. What is guaranteed:
///
/// * After a fallback: exactly the dense guarantees (the guarded bound `|x| <= |v| / lambda`).
/// * Without one: `H` had non-negative curvature along every search direction, hence (in exact
///   arithmetic, the directions being conjugate) `H + lambda I >= (lambda / k) I` on the Krylov
///   space CG explored in `k` iterations, and `|x| <= k |v| / lambda`. Negative curvature in
///   directions that space does not reach is **not** seen: the result is then the trust-region
///   solve `(H + lambda I)^-1 v` restricted to that space (in exact arithmetic: exactly
///   `(H + lambda I)^-1 v` when `v` has no component along the negative eigenvectors), not the
///   guarded one with `s = lambda - eig_min(H)`. The diagnostics' `min_eigenvalue` is the
///   smallest Rayleigh quotient met, an upper bound of `eig_min(H)`; use [`super::DenseSolve`]
///   when the guarded bound must hold whatever the right-hand side.
///
/// Under `Implicit` and `TrustRegion` the same fallback runs, and the dense factorisation
/// (LU for an indefinite matrix) solves the system as the dense strategy would.
///
/// ```
/// use wiberg::damped::CgSolve;
/// use wiberg::{ArgminLayer, Damping, RbfMixture, Start};
/// let points = vec![-0.2, 0.1, 0.3, 10.0];
/// let e = RbfMixture::shared_width(1, points.clone()).unwrap();
/// let dense = ArgminLayer::with_damping(Damping::TrustRegion { lambda: 0.1 });
/// let cg = dense.with_linear_solve(CgSolve { tol: 1e-12, max_iters: 50 });
/// let (s1, s2) = (dense.forward(&e, &[1.0], Start::Seeds(&points)).unwrap(), cg.forward(&e, &[1.0], Start::Seeds(&points)).unwrap());
/// let b1 = dense.backward(&e, &[1.0], &s1, &[1.0]).unwrap();
/// let b2 = cg.backward(&e, &[1.0], &s2, &[1.0]).unwrap();
/// assert!((b1.grad_w[0] - b2.grad_w[0]).abs() < 1e-10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CgSolve {
    /// Relative residual tolerance, `> 0`.
    pub tol: f64,
    /// Iteration limit, `>= 1` ([`WibergError::NotConverged`] beyond it).
    pub max_iters: usize,
}

impl CgSolve {
    /// Rejects `tol <= 0`, a NaN `tol` and `max_iters = 0`.
    pub fn check(&self) -> Result<()> {
        if self.tol.is_nan() || self.tol <= 0.0 || self.max_iters == 0 {
            return Err(WibergError::InvalidArgument(format!(
                "conjugate gradients need tol > 0 and max_iters >= 1, got {} and {}",
                self.tol, self.max_iters
            )));
        }
        Ok(())
    }
}

impl<E: Energy + ?Sized> HessianSolve<E> for CgSolve {
    type Factor = CgFactor;

    fn validate(&self) -> Result<()> {
        self.check()
    }

    fn factorize(&self, _e: &E, _y: &[f64], _w: &[f64], damping: Damping) -> Result<CgFactor> {
        self.check()?;
        damping.validate()?;
        Ok(CgFactor { config: *self, damping, shift: damping.shift(0.0), fallback: OnceLock::new() })
    }
}

/// The "factor" of [`CgSolve`]: the shift and settings, and the dense factorisation once CG
/// has met negative curvature (built then, kept for every later solve).
#[derive(Debug, Clone)]
pub struct CgFactor {
    config: CgSolve,
    damping: Damping,
    shift: f64,
    fallback: OnceLock<DampedSystem>,
}

impl CgFactor {
    /// Whether CG met negative curvature and the factor now solves with the dense fallback.
    pub fn fell_back(&self) -> bool {
        self.fallback.get().is_some()
    }

    fn dense_fallback<E: Energy + ?Sized>(&self, e: &E, y: &[f64], w: &[f64]) -> Result<&DampedSystem> {
        if let Some(sys) = self.fallback.get() {
            return Ok(sys);
        }
        // The Hessian from n products: the energy may only offer H v cheaply.
        let n = y.len();
        let mut h = DMatrix::zeros(n, n);
        let mut unit = vec![0.0; n];
        let mut col = vec![0.0; n];
        for j in 0..n {
            unit[j] = 1.0;
            e.hvp(y, w, &unit, &mut col);
            unit[j] = 0.0;
            h.column_mut(j).copy_from_slice(&col);
        }
        let sys = DampedSystem::factorize(h, self.damping)?;
        Ok(self.fallback.get_or_init(|| sys))
    }
}

impl<E: Energy + ?Sized> HessianFactor<E> for CgFactor {
    fn diagnostics(&self) -> Diagnostics {
        match self.fallback.get() {
            Some(sys) => *sys.diagnostics(),
            None => not_factorized(self.shift),
        }
    }

    fn solve_in_place_at(&self, e: &E, y: &[f64], w: &[f64], v: &mut [f64]) -> Result<Diagnostics> {
        if let Some(sys) = self.fallback.get() {
            sys.solve_in_place(v)?;
            return Ok(*sys.diagnostics());
        }
        crate::error::check_len(v.len(), y.len(), "right-hand side of the conjugate-gradient solve")?;
        crate::error::check_finite(v, "right-hand side of the conjugate-gradient solve")?;
        let CgSolve { tol, max_iters } = self.config;
        match cg(e, y, w, self.shift, v, tol, max_iters)? {
            CgOutcome::Solved { x, min_rayleigh, max_rayleigh } => {
                check_solution(&x, self.shift)?;
                v.copy_from_slice(&x);
                Ok(Diagnostics {
                    min_eigenvalue: min_rayleigh,
                    max_eigenvalue: max_rayleigh,
                    eigen_exact: false,
                    condition: (max_rayleigh + self.shift) / (min_rayleigh + self.shift),
                    shift: self.shift,
                    solver: LinearSolver::ConjugateGradient,
                })
            }
            CgOutcome::NegativeCurvature => {
                let sys = self.dense_fallback(e, y, w)?;
                sys.solve_in_place(v)?;
                Ok(*sys.diagnostics())
            }
        }
    }
}

/// A non-finite CG result is a singular system, as for the factorisations.
fn check_solution(x: &[f64], shift: f64) -> Result<()> {
    if x.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(WibergError::SingularHessian { min_abs_eigenvalue: 0.0, damping: shift })
    }
}

/// What one CG run ended with.
pub(crate) enum CgOutcome {
    Solved { x: Vec<f64>, min_rayleigh: f64, max_rayleigh: f64 },
    NegativeCurvature,
}

/// Conjugate gradients on `(H + shift I) x = b` with `H v` from the energy. Also returns the
/// extreme Rayleigh quotients of `H` met along the search directions (eigenvalue estimates).
pub(crate) fn cg<E: Energy + ?Sized>(
    e: &E,
    y: &[f64],
    w: &[f64],
    shift: f64,
    b: &[f64],
    tol: f64,
    max_iters: usize,
) -> Result<CgOutcome> {
    let n = b.len();
    let bnorm = norm(b);
    let mut x = vec![0.0; n];
    if bnorm == 0.0 {
        return Ok(CgOutcome::Solved { x, min_rayleigh: f64::NAN, max_rayleigh: f64::NAN });
    }
    let mut r = b.to_vec();
    let mut p = r.clone();
    let mut ap = vec![0.0; n];
    let mut rr: f64 = r.iter().map(|v| v * v).sum();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for it in 0..max_iters {
        e.hvp(y, w, &p, &mut ap);
        let pp: f64 = p.iter().map(|v| v * v).sum();
        let php: f64 = p.iter().zip(&ap).map(|(a, b)| a * b).sum();
        let rayleigh = php / pp;
        lo = lo.min(rayleigh);
        hi = hi.max(rayleigh);
        let pap = php + shift * pp;
        if pap.is_nan() || pap <= 0.0 || rayleigh < 0.0 {
            return Ok(CgOutcome::NegativeCurvature);
        }
        let alpha = rr / pap;
        for i in 0..n {
            x[i] += alpha * p[i];
            r[i] -= alpha * (ap[i] + shift * p[i]);
        }
        let rr_new: f64 = r.iter().map(|v| v * v).sum();
        if rr_new.sqrt() <= tol * bnorm {
            return Ok(CgOutcome::Solved { x, min_rayleigh: lo, max_rayleigh: hi });
        }
        let beta = rr_new / rr;
        rr = rr_new;
        for i in 0..n {
            p[i] = r[i] + beta * p[i];
        }
        if it + 1 == max_iters {
            break;
        }
    }
    Err(WibergError::NotConverged { iterations: max_iters, residual: rr.sqrt() / bnorm })
}
