//! [`ArgminLayer`]: the differentiable argmin. `forward` finds `y*(w)`, `backward` turns
//! `dl/dy*` into `dl/dw` with the damped derivative, reusing the forward factorisation.
//!
//! The layer is generic over how it solves the damped system (`S`, a
//! [`HessianSolve`] strategy from [`crate::damped`]); the default, [`LinearSolve`], is the
//! run-time choice between dense and matrix-free.

use crate::damped::{not_factorized, HessianFactor, HessianSolve};
use crate::derivative::{Damping, Diagnostics};
use crate::energy::Energy;
use crate::error::{check_finite, check_len, WibergError};
use crate::minimize::{norm, seeds, Minimizer, Report};
use crate::Result;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

pub use crate::damped::{LinearFactor, LinearSolve};

/// Where the forward pass starts.
#[derive(Debug, Clone, Copy)]
pub enum Start<'a> {
    /// At this point (length `n`).
    Point(&'a [f64]),
    /// At the lowest-energy point of these seeds, stored consecutively (`m * n` numbers).
    Seeds(&'a [f64]),
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
///
/// # Strategies
/// `S` says how the damped systems are solved (see [`crate::damped`]): [`LinearSolve`] (the
/// default: dense or conjugate gradients, chosen at run time), or a strategy type such as
/// [`crate::damped::DenseSolve`], [`crate::damped::CgSolve`] or
/// [`crate::damped::BlockArrowSolve`] (for energies that state a block-arrow Hessian), set with
/// [`ArgminLayer::with_linear_solve`]. The [`Solution`] keeps the strategy's factor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ArgminLayer<S = LinearSolve> {
    /// The inner minimiser.
    pub minimizer: Minimizer,
    /// Finish with one damped Newton step `y <- y - (H + s I)^-1 g` (shift from `damping`).
    pub polish: bool,
    /// The derivative's damping (also used by the polish step).
    pub damping: Damping,
    /// How the damped systems are solved: dense or matrix-free by default, or a strategy type.
    pub linear_solve: S,
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

/// The output of the forward pass: `y*`, its [`Report`], and what the backward pass reuses:
/// the strategy's factor `F` of the damped Hessian at the linearisation point (or the error
/// factorising it gave, which the backward pass returns).
#[derive(Debug, Clone)]
pub struct Solution<F = LinearFactor> {
    /// The minimiser `y*`.
    pub y: Vec<f64>,
    /// What happened on the way.
    pub report: Report,
    /// The point where `H` and `M` are taken: `y*`, or where the polish step started
    /// ([`Linearization::PolishStart`]).
    linearization: Vec<f64>,
    factor: std::result::Result<F, WibergError>,
}

impl<F> Solution<F> {
    /// The point at which the Hessian and the mixed derivatives are evaluated: the returned
    /// `y*` (the default, [`Linearization::AtSolution`]), or where the polish step started
    /// ([`Linearization::PolishStart`]).
    pub fn linearization_point(&self) -> &[f64] {
        &self.linearization
    }

    /// The factorised damped Hessian at [`Solution::linearization_point`], or the error
    /// factorising it gave (for example [`WibergError::SingularHessian`] under `Implicit`).
    pub fn factor(&self) -> std::result::Result<&F, &WibergError> {
        self.factor.as_ref()
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
}

impl<S> ArgminLayer<S> {
    /// The same layer with another damped-solve strategy.
    ///
    /// ```
    /// use wiberg::damped::CgSolve;
    /// use wiberg::{ArgminLayer, Damping};
    /// let layer = ArgminLayer::with_damping(Damping::Implicit).with_linear_solve(CgSolve { tol: 1e-10, max_iters: 100 });
    /// assert_eq!(layer.linear_solve.max_iters, 100);
    /// ```
    pub fn with_linear_solve<T>(self, linear_solve: T) -> ArgminLayer<T> {
        ArgminLayer {
            minimizer: self.minimizer,
            polish: self.polish,
            damping: self.damping,
            linear_solve,
            linearization: self.linearization,
        }
    }

    /// Forward pass: start, minimise, optionally polish, factorise the damped Hessian.
    ///
    /// Errors: wrong lengths or non-finite `w`/start; a non-finite energy or gradient;
    /// [`WibergError::SingularHessian`] when the polish step needs a singular solve.
    pub fn forward<E>(&self, e: &E, w: &[f64], start: Start<'_>) -> Result<Solution<S::Factor>>
    where
        E: Energy + ?Sized,
        S: HessianSolve<E>,
    {
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
        self.linear_solve.validate()?;
        let linearization = y.clone();
        let (factor, diagnostics) = self.linearize(e, w, &y);
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
            factor,
        };
        if self.polish {
            // `g` is the gradient at `sol.y`, left there by the minimiser; solved in place
            // into the step (it is overwritten by the gradient at the polished point next).
            let diag = match &sol.factor {
                Ok(f) => f.solve_in_place_at(e, &sol.linearization, w, &mut g)?,
                Err(err) => return Err(err.clone()),
            };
            sol.report.diagnostics = diag;
            for (yi, si) in sol.y.iter_mut().zip(&g) {
                *yi -= si;
            }
            check_finite(&sol.y, "polished solution")?;
            sol.report.polished = true;
            // H and M at the returned point, not where the polish started: a second Hessian
            // and factorisation, so that the derivative is the returned y*'s (formed with the
            // gradient there, in one evaluation when the energy can share the work).
            let at_solution = (self.linearization == Linearization::AtSolution)
                .then(|| self.linear_solve.factorize_with_gradient(e, &sol.y, w, self.damping, &mut g));
            let factor = match at_solution {
                Some((energy, factor)) => {
                    sol.report.energy = energy;
                    Some(factor)
                }
                None => {
                    sol.report.energy = e.gradient(&sol.y, w, &mut g);
                    None
                }
            };
            sol.report.final_grad_norm = norm(&g);
            check_finite(&g, "energy gradient at the polished solution")?;
            if let Some(factor) = factor {
                let diagnostics = match &factor {
                    Ok(f) => f.diagnostics(),
                    Err(_) => not_factorized(self.damping.lambda()),
                };
                sol.linearization.copy_from_slice(&sol.y);
                sol.factor = factor;
                sol.report.diagnostics = diagnostics;
            }
        }
        if !sol.report.energy.is_finite() {
            return Err(WibergError::NonFinite { what: "energy at the solution".into() });
        }
        Ok(sol)
    }

    /// The strategy's factor of `H(y) + s I` (kept as its error if that fails, for the
    /// backward pass to return), with its diagnostics: NaN with
    /// [`crate::LinearSolver::NotFactorized`] when nothing was factorised.
    #[allow(clippy::type_complexity)]
    fn linearize<E>(&self, e: &E, w: &[f64], y: &[f64]) -> (std::result::Result<S::Factor, WibergError>, Diagnostics)
    where
        E: Energy + ?Sized,
        S: HessianSolve<E>,
    {
        let factor = self.linear_solve.factorize(e, y, w, self.damping);
        let diagnostics = match &factor {
            Ok(f) => f.diagnostics(),
            Err(_) => not_factorized(self.damping.lambda()),
        };
        (factor, diagnostics)
    }

    /// Backward pass: `dl/dw = -M^T (H + s I)^-1 dl/dy*` for one sample, with `v = dl/dy*`.
    pub fn backward<E>(&self, e: &E, w: &[f64], sol: &Solution<S::Factor>, v: &[f64]) -> Result<Backward>
    where
        E: Energy + ?Sized,
        S: HessianSolve<E>,
    {
        check_len(v.len(), e.dim(), "dl/dy*")?;
        check_finite(v, "dl/dy*")?;
        check_len(w.len(), e.num_params(), "energy parameters w")?;
        let factor = sol.factor.as_ref().map_err(Clone::clone)?;
        let mut u = v.to_vec();
        let diagnostics = factor.solve_in_place_at(e, &sol.linearization, w, &mut u)?;
        u.iter_mut().for_each(|x| *x = -*x);
        check_finite(&u, "u = -(H + s I)^-1 dl/dy*")?;
        let mut grad_w = vec![0.0; e.num_params()];
        e.mixed_vjp(&sol.linearization, w, &u, &mut grad_w);
        check_finite(&grad_w, "gradient dl/dw")?;
        Ok(Backward { grad_w, u, diagnostics })
    }

    /// The full Jacobian `dy*/dw = -(H + s I)^-1 M` (n x p): the forward pass's factor solved
    /// against the `p` columns of `M` in place. Forms `M`: for small `p`.
    pub fn jacobian<E>(&self, e: &E, w: &[f64], sol: &Solution<S::Factor>) -> Result<DMatrix<f64>>
    where
        E: Energy + ?Sized,
        S: HessianSolve<E>,
    {
        let n = e.dim();
        let p = e.num_params();
        check_len(w.len(), p, "energy parameters w")?;
        let factor = sol.factor.as_ref().map_err(Clone::clone)?;
        let mut jac = e.mixed_matrix(&sol.linearization, w);
        // Column-major: column j is the slice [j n, (j + 1) n).
        for j in 0..p {
            let col = &mut jac.as_mut_slice()[j * n..(j + 1) * n];
            factor.solve_in_place_at(e, &sol.linearization, w, col)?;
            col.iter_mut().for_each(|x| *x = -*x);
        }
        check_finite(jac.as_slice(), "Jacobian dy*/dw")?;
        Ok(jac)
    }
}
