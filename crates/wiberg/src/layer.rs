//! [`ArgminLayer`]: the differentiable argmin. `forward` finds `y*(w)`, `backward` turns
//! `dl/dy*` into `dl/dw` with the damped derivative, reusing the forward factorisation.

use crate::damped::cg::{cg, CgOutcome};
use crate::damped::DampedSystem;
use crate::derivative::{Damping, Diagnostics, LinearSolver};
use crate::energy::Energy;
use crate::error::{check_finite, check_len, WibergError};
use crate::minimize::{norm, seeds, Minimizer, Report};
use crate::Result;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

/// Where the forward pass starts.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// At this point (length `n`).
    Point(&'a [f64]),
    /// At the lowest-energy point of these seeds, stored consecutively (`m * n` numbers).
    Seeds(&'a [f64]),
}

/// How the damped linear systems are solved.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LinearSolve {
    /// Dense Hessian, Cholesky (LU fallback); exact diagnostics for n <= 64.
    #[default]
    Dense,
    /// Matrix-free conjugate gradients on Hessian-vector products, for large `n`.
    /// If CG meets curvature at or below zero (the damped matrix is not positive definite
    /// along a Krylov direction) the layer falls back to the dense path, built from `n`
    /// Hessian-vector products. Negative curvature outside the Krylov space is not seen.
    ConjugateGradient {
        /// Relative residual tolerance.
        tol: f64,
        /// Iteration limit.
        max_iters: usize,
    },
}

/// Where the backward pass takes the Hessian `H` and the mixed derivatives `M`.
///
/// After the inner minimiser stops at `y0`, the polish step moves to
/// `y* = y0 - (H(y0) + s I)^-1 g(y0)`. The derivative `-(H + s I)^-1 M` is that of the
/// stationarity condition at the point it is evaluated: at `y*` it describes how the returned
/// minimiser moves with `w`, which is what the design (and the authors' released code, which
/// recomputes `H` and `M` after its Newton step) uses. The two points coincide when the inner
/// solve converged; when it did not (few L-BFGS iterations, or none) they can differ a lot: on
/// RANSAC samples with the polish only, `dt*/dsigma` at `y*` agrees with finite differences of
/// the whole forward map to about 1 % where the polish-start derivative was off by 30 % or had
/// the wrong sign (README, Experiment 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Linearization {
    /// `H` and `M` at the returned `y*` (after the polish step): one more Hessian and
    /// factorisation per forward pass than [`Linearization::PolishStart`]. The default.
    #[default]
    AtSolution,
    /// `H` and `M` where the polish step started, reusing the polish step's factorisation.
    /// Saves one Hessian evaluation and factorisation per sample; the derivative is then that
    /// of the stationarity condition at the pre-polish point, which differs from the returned
    /// minimiser's when the inner solve has not converged. Kept to reproduce results made
    /// before `AtSolution` became the default, and for energies whose Hessian is expensive
    /// and whose inner solves always converge (then the two agree).
    PolishStart,
}

/// The differentiable argmin layer: configuration of the forward and backward passes.
///
/// ```
/// use wiberg::{ArgminLayer, Damping, Energy, RbfMixture, Start};
/// // RANSAC in miniature: inliers near 0, one outlier at 10; sigma = 1.
/// let points = vec![-0.2, 0.1, 0.3, 10.0];
/// let e = RbfMixture::shared_width(1, points.clone()).unwrap();
/// let layer = ArgminLayer { damping: Damping::Implicit, ..Default::default() };
/// let sol = layer.forward(&e, &[1.0], Start::Seeds(&points)).unwrap();
/// assert!(sol.y[0].abs() < 0.2 && sol.report.final_grad_norm < 1e-12);
/// // dl/dsigma for l = t*: one backward pass, dl/dw = -M (H + s)^-1 dl/dy* in 1-D.
/// let back = layer.backward(&e, &[1.0], &sol, &[1.0]).unwrap();
/// let h = sol.report.diagnostics.min_eigenvalue; // n = 1: the Hessian at y* itself
/// let mut m = [0.0];
/// e.mixed_vjp(sol.linearization_point(), &[1.0], &[1.0], &mut m);
/// assert!((back.grad_w[0] - (-m[0] / h)).abs() < 1e-12);
/// // Trust-region damping divides by H + 0.1 instead.
/// let tr = ArgminLayer { damping: Damping::TrustRegion { lambda: 0.1 }, ..layer };
/// let sol = tr.forward(&e, &[1.0], Start::Seeds(&points)).unwrap();
/// let back_tr = tr.backward(&e, &[1.0], &sol, &[1.0]).unwrap();
/// assert!((back_tr.grad_w[0] - (-m[0] / (h + 0.1))).abs() < 1e-9);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ArgminLayer {
    /// The inner minimiser.
    pub minimizer: Minimizer,
    /// Finish with one damped Newton step `y <- y - (H + s I)^-1 g` (shift from `damping`).
    pub polish: bool,
    /// The derivative's damping (also used by the polish step).
    pub damping: Damping,
    /// Dense or matrix-free linear algebra.
    pub linear_solve: LinearSolve,
    /// Where the backward pass linearises (at the returned `y*` by default).
    #[serde(default)]
    pub linearization: Linearization,
}

impl Default for ArgminLayer {
    fn default() -> Self {
        ArgminLayer {
            minimizer: Minimizer::default(),
            polish: true,
            damping: Damping::default(),
            linear_solve: LinearSolve::Dense,
            linearization: Linearization::AtSolution,
        }
    }
}

/// The output of the forward pass: `y*`, its [`Report`], and what the backward pass reuses.
#[derive(Debug, Clone)]
pub struct Solution {
    /// The minimiser `y*`.
    pub y: Vec<f64>,
    /// What happened on the way.
    pub report: Report,
    /// The point where `H` and `M` are taken: `y*`, or where the polish step started
    /// ([`Linearization::PolishStart`]).
    linearization: Vec<f64>,
    system: Linearized,
}

#[derive(Debug, Clone)]
enum Linearized {
    Dense(std::result::Result<DampedSystem, WibergError>),
    Cg { shift: f64 },
}

impl Solution {
    /// The point at which the Hessian and the mixed derivatives are evaluated: the returned
    /// `y*` (the default, [`Linearization::AtSolution`]), or where the polish step started
    /// ([`Linearization::PolishStart`]).
    pub fn linearization_point(&self) -> &[f64] {
        &self.linearization
    }
}

/// The output of the backward pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Backward {
    /// `dl/dw = M^T u` (length `p`).
    pub grad_w: Vec<f64>,
    /// `u = -(H + s I)^-1 dl/dy*` (length `n`).
    pub u: Vec<f64>,
    /// Diagnostics of the damped system that was solved.
    pub diagnostics: Diagnostics,
}

impl ArgminLayer {
    /// A layer with the given damping and defaults otherwise (L-BFGS, polish, dense).
    pub fn with_damping(damping: Damping) -> Self {
        ArgminLayer { damping, ..Default::default() }
    }

    /// Forward pass: start, minimise, optionally polish, factorise the damped Hessian.
    ///
    /// Errors: wrong lengths or non-finite `w`/start; a non-finite energy or gradient;
    /// [`WibergError::SingularHessian`] when the polish step needs a singular solve.
    pub fn forward<E: Energy + ?Sized>(&self, e: &E, w: &[f64], start: Start<'_>) -> Result<Solution> {
        self.damping.validate()?;
        let n = e.dim();
        check_len(w.len(), e.num_params(), "energy parameters w")?;
        check_finite(w, "energy parameters w")?;
        let (mut y, seed_index, seed_evaluations) = match start {
            Start::Point(p) => {
                check_len(p.len(), n, "start point")?;
                check_finite(p, "start point")?;
                (p.to_vec(), None, 0)
            }
            Start::Seeds(s) => {
                check_finite(s, "seeds")?;
                let (i, _) = seeds::best_seed(e, w, s)?;
                (s[i * n..(i + 1) * n].to_vec(), Some(i), s.len() / n.max(1))
            }
        };
        let mut g = vec![0.0; n];
        let outcome = self.minimizer.minimize_into(e, w, &mut y, &mut g)?;
        check_finite(&[outcome.energy, outcome.grad_norm], "energy and |gradient| where the minimiser stopped")?;
        check_finite(&y, "inner minimiser result")?;
        if let LinearSolve::ConjugateGradient { tol, max_iters } = self.linear_solve {
            if tol.is_nan() || tol <= 0.0 || max_iters == 0 {
                return Err(WibergError::InvalidArgument(format!(
                    "conjugate gradients need tol > 0 and max_iters >= 1, got {tol} and {max_iters}"
                )));
            }
        }
        let linearization = y.clone();
        let (system, diagnostics) = self.linearize(e, w, &y);
        let mut sol = Solution {
            y,
            report: Report {
                seed_index,
                seed_evaluations,
                iterations: outcome.iterations,
                evaluations: outcome.evaluations,
                grad_norm: outcome.grad_norm,
                final_grad_norm: outcome.grad_norm,
                energy: outcome.energy,
                converged: outcome.stop.is_converged(),
                stop: outcome.stop,
                polished: false,
                diagnostics,
            },
            linearization,
            system,
        };
        if self.polish {
            // `g` is the gradient at `sol.y`, left there by the minimiser.
            let (step, diag) = self.solve(e, w, &mut sol, &g)?;
            sol.report.diagnostics = diag;
            for (yi, si) in sol.y.iter_mut().zip(&step) {
                *yi -= si;
            }
            check_finite(&sol.y, "polished solution")?;
            sol.report.polished = true;
            sol.report.energy = e.gradient(&sol.y, w, &mut g);
            sol.report.final_grad_norm = norm(&g);
            check_finite(&g, "energy gradient at the polished solution")?;
            if self.linearization == Linearization::AtSolution {
                // H and M at the returned point, not where the polish started: a second
                // Hessian and factorisation, so that the derivative is the returned y*'s.
                let (system, diagnostics) = self.linearize(e, w, &sol.y);
                sol.linearization.copy_from_slice(&sol.y);
                sol.system = system;
                sol.report.diagnostics = diagnostics;
            }
        }
        if !sol.report.energy.is_finite() {
            return Err(WibergError::NonFinite { what: "energy at the solution".into() });
        }
        Ok(sol)
    }

    /// Prepares the damped system at `y`: the dense factorisation of `H(y) + s I` (kept as
    /// its error if that fails, for the backward pass to return), or the matrix-free
    /// marker. Diagnostics are NaN with [`LinearSolver::NotFactorized`] when nothing was
    /// factorised.
    fn linearize<E: Energy + ?Sized>(&self, e: &E, w: &[f64], y: &[f64]) -> (Linearized, Diagnostics) {
        let not_factorized = Diagnostics {
            min_eigenvalue: f64::NAN,
            max_eigenvalue: f64::NAN,
            eigen_exact: false,
            condition: f64::NAN,
            shift: self.damping.lambda(),
            solver: LinearSolver::NotFactorized,
        };
        match self.linear_solve {
            LinearSolve::Dense => {
                let n = y.len();
                let mut h = DMatrix::zeros(n, n);
                e.hessian(y, w, &mut h);
                let sys = DampedSystem::factorize(h, self.damping);
                let diag = sys.as_ref().map(|s| *s.diagnostics()).unwrap_or(not_factorized);
                (Linearized::Dense(sys), diag)
            }
            LinearSolve::ConjugateGradient { .. } => {
                (Linearized::Cg { shift: self.damping.shift(0.0) }, not_factorized)
            }
        }
    }

    /// Solves `(H + s I) x = v` at the solution's linearisation point, caching the dense
    /// fallback of the matrix-free path in `sol`.
    fn solve<E: Energy + ?Sized>(
        &self,
        e: &E,
        w: &[f64],
        sol: &mut Solution,
        v: &[f64],
    ) -> Result<(Vec<f64>, Diagnostics)> {
        let (x, diag, fallback) = self.solve_shared(e, w, sol, v)?;
        if let Some(sys) = fallback {
            sol.system = Linearized::Dense(Ok(sys));
        }
        Ok((x, diag))
    }

    /// Solves `(H + s I) x = v` without touching `sol`; returns the dense system the
    /// matrix-free path fell back to, if it did.
    fn solve_shared<E: Energy + ?Sized>(
        &self,
        e: &E,
        w: &[f64],
        sol: &Solution,
        v: &[f64],
    ) -> Result<(Vec<f64>, Diagnostics, Option<DampedSystem>)> {
        match &sol.system {
            Linearized::Dense(Ok(sys)) => Ok((sys.solve(v)?, *sys.diagnostics(), None)),
            Linearized::Dense(Err(err)) => Err(err.clone()),
            Linearized::Cg { shift } => {
                let LinearSolve::ConjugateGradient { tol, max_iters } = self.linear_solve else {
                    return Err(WibergError::InvalidArgument(
                        "solution was made by a matrix-free layer; use the same layer".into(),
                    ));
                };
                let y = &sol.linearization;
                match cg(e, y, w, *shift, v, tol, max_iters)? {
                    CgOutcome::Solved { x, min_rayleigh, max_rayleigh } => {
                        let diag = Diagnostics {
                            min_eigenvalue: min_rayleigh,
                            max_eigenvalue: max_rayleigh,
                            eigen_exact: false,
                            condition: (max_rayleigh + shift) / (min_rayleigh + shift),
                            shift: *shift,
                            solver: LinearSolver::ConjugateGradient,
                        };
                        Ok((x, diag, None))
                    }
                    CgOutcome::NegativeCurvature => {
                        // Fall back to the dense path, Hessian built from n products.
                        let n = y.len();
                        let mut h = DMatrix::zeros(n, n);
                        let mut unit = vec![0.0; n];
                        let mut col = vec![0.0; n];
                        for j in 0..n {
                            unit[j] = 1.0;
                            e.hvp(y, w, &unit, &mut col);
                            unit[j] = 0.0;
                            for i in 0..n {
                                h[(i, j)] = col[i];
                            }
                        }
                        let sys = DampedSystem::factorize(h, self.damping)?;
                        let (x, diag) = (sys.solve(v)?, *sys.diagnostics());
                        Ok((x, diag, Some(sys)))
                    }
                }
            }
        }
    }

    /// Backward pass: `dl/dw = -M^T (H + s I)^-1 dl/dy*` for one sample, with `v = dl/dy*`.
    pub fn backward<E: Energy + ?Sized>(&self, e: &E, w: &[f64], sol: &Solution, v: &[f64]) -> Result<Backward> {
        check_len(v.len(), e.dim(), "dl/dy*")?;
        check_finite(v, "dl/dy*")?;
        check_len(w.len(), e.num_params(), "energy parameters w")?;
        let (x, diagnostics, _) = self.solve_shared(e, w, sol, v)?;
        let u: Vec<f64> = x.iter().map(|x| -x).collect();
        check_finite(&u, "u = -(H + s I)^-1 dl/dy*")?;
        let mut grad_w = vec![0.0; e.num_params()];
        e.mixed_vjp(&sol.linearization, w, &u, &mut grad_w);
        check_finite(&grad_w, "gradient dl/dw")?;
        Ok(Backward { grad_w, u, diagnostics })
    }

    /// The full Jacobian `dy*/dw = -(H + s I)^-1 M` (n x p). Forms `M`: for small `p`.
    pub fn jacobian<E: Energy + ?Sized>(&self, e: &E, w: &[f64], sol: &Solution) -> Result<DMatrix<f64>> {
        let n = e.dim();
        let p = e.num_params();
        check_len(w.len(), p, "energy parameters w")?;
        let m = e.mixed_matrix(&sol.linearization, w);
        let mut sol = sol.clone();
        let mut jac = DMatrix::zeros(n, p);
        for j in 0..p {
            let col: Vec<f64> = m.column(j).iter().copied().collect();
            let (x, _) = self.solve(e, w, &mut sol, &col)?;
            for i in 0..n {
                jac[(i, j)] = -x[i];
            }
        }
        check_finite(jac.as_slice(), "Jacobian dy*/dw")?;
        Ok(jac)
    }
}
