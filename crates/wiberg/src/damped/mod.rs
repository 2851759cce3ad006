//! Damped solves as strategies: a damped matrix `H + s I` is factorised once (with
//! [`Diagnostics`]) and then solved against as many right-hand sides as needed, in place.
//!
//! Two levels:
//!
//! * [`DampedFactor`]: a factorised matrix, whoever assembled it. The dense factorisation
//!   ([`DampedSystem`]: Cholesky with an LU fallback) implements it, and so does the structured
//!   [`BlockArrowFactor`] (block-arrow matrices, [`block_arrow`]), so code that only needs
//!   "solve with the damped Hessian" (a damped Newton step, IRLS) can take any of them.
//! * [`HessianSolve`]: a *strategy* for the layer ([`crate::ArgminLayer`] is generic over it):
//!   it turns an energy at a point into a [`HessianFactor`], which the layer keeps in its
//!   [`crate::Solution`] and solves against in the polish step, the backward pass and the
//!   Jacobian. The library's strategies:
//!   - [`DenseSolve`]: the Hessian as a dense matrix, [`DampedSystem`]. Any energy.
//!   - [`CgSolve`]: matrix-free conjugate gradients on Hessian-vector products
//!     ([`cg`]); its factor needs the energy at solve time, and falls back to (and caches) a
//!     dense factorisation when it meets negative curvature.
//!   - [`BlockArrowSolve`]: the Hessian in block-arrow form from energies that implement
//!     [`BlockArrowHessian`], factorised by Schur complement ([`BlockArrowFactor`]).
//!   - [`LinearSolve`]: the run-time choice between dense and conjugate gradients (the
//!     layer's default strategy; serialisable).
//!
//! Every strategy works with every [`Damping`] mode, `Guarded` included; what each
//! guarantees about the guarded shift is stated at the strategy.

pub mod block_arrow;
mod block_arrow_solve;
pub mod cg;
pub mod dense;

pub use block_arrow::{BlockArrow, BlockArrowFactor};
pub use block_arrow_solve::{BlockArrowHessian, BlockArrowSolve};
pub use cg::{CgFactor, CgSolve};
pub use dense::{DampedSystem, DenseSolve};

use crate::derivative::{Damping, Diagnostics, LinearSolver};
use crate::energy::Energy;
use crate::Result;
use serde::{Deserialize, Serialize};

/// A damped matrix `H + s I`, factorised once and solved against many right-hand sides.
///
/// ```
/// use wiberg::damped::DampedFactor;
/// use wiberg::{DampedSystem, Damping};
/// use nalgebra::DMatrix;
/// let h = DMatrix::from_row_slice(2, 2, &[2.0, 0.0, 0.0, 0.0]);
/// let factor = DampedSystem::factorize(h, Damping::TrustRegion { lambda: 0.5 }).unwrap();
/// let mut v = [1.0, 1.0];
/// factor.solve_in_place(&mut v).unwrap();
/// assert!((v[0] - 1.0 / 2.5).abs() < 1e-15 && (v[1] - 2.0).abs() < 1e-15);
/// assert_eq!(factor.diagnostics().shift, 0.5);
/// ```
pub trait DampedFactor {
    /// Dimension `n` of the system.
    fn dim(&self) -> usize;
    /// What the factorisation saw: eigenvalue bounds or estimates, condition, shift, solver.
    fn diagnostics(&self) -> &Diagnostics;
    /// Overwrites `v` with `(H + s I)^-1 v`.
    ///
    /// Errors: `v` of the wrong length or not finite; [`crate::WibergError::SingularHessian`]
    /// when the result is not finite.
    fn solve_in_place(&self, v: &mut [f64]) -> Result<()>;
}

impl DampedFactor for DampedSystem {
    fn dim(&self) -> usize {
        DampedSystem::dim(self)
    }

    fn diagnostics(&self) -> &Diagnostics {
        DampedSystem::diagnostics(self)
    }

    fn solve_in_place(&self, v: &mut [f64]) -> Result<()> {
        DampedSystem::solve_in_place(self, v)
    }
}

/// A damped Hessian `H(y; w) + s I` factorised by a [`HessianSolve`] strategy, as the layer
/// keeps it: solved in place against as many right-hand sides as needed.
///
/// The solve receives the energy and the point (`e`, `y`, `w`) again, so that a matrix-free
/// factor (conjugate gradients) can take Hessian-vector products at solve time; factors that
/// hold the whole matrix (every [`DampedFactor`], through a blanket implementation) ignore them.
pub trait HessianFactor<E: Energy + ?Sized> {
    /// What the factorisation saw. [`LinearSolver::NotFactorized`] (NaN eigenvalues) for a
    /// matrix-free factor before its first solve.
    fn diagnostics(&self) -> Diagnostics;
    /// Overwrites `v` with `(H(y; w) + s I)^-1 v`, `y` and `w` being the point this factor was
    /// made at, and returns the diagnostics of this solve (for a matrix-free factor they
    /// depend on the right-hand side). On error `v` is unspecified.
    fn solve_in_place_at(&self, e: &E, y: &[f64], w: &[f64], v: &mut [f64]) -> Result<Diagnostics>;
}

impl<E: Energy + ?Sized, F: DampedFactor> HessianFactor<E> for F {
    fn diagnostics(&self) -> Diagnostics {
        *DampedFactor::diagnostics(self)
    }

    fn solve_in_place_at(&self, _e: &E, _y: &[f64], _w: &[f64], v: &mut [f64]) -> Result<Diagnostics> {
        DampedFactor::solve_in_place(self, v)?;
        Ok(*DampedFactor::diagnostics(self))
    }
}

/// How the layer solves its damped systems: a strategy the layer ([`crate::ArgminLayer`]) is
/// generic over, in the spirit of faer's decompositions and optimistix's adjoint objects.
///
/// `factorize` is called once per linearisation point (the polish step's start, and the
/// returned `y*`); the factor is kept in the [`crate::Solution`] (its error too, for the
/// backward pass to return) and solved against in place.
///
/// A strategy for a structure of your own: implement this for your strategy type, with a
/// factor that implements [`DampedFactor`] (or [`HessianFactor`] if it needs the energy at
/// solve time).
///
/// ```
/// use wiberg::damped::{DenseSolve, HessianFactor, HessianSolve};
/// use wiberg::{Damping, RbfMixture};
/// let e = RbfMixture::shared_width(1, vec![-0.2, 0.1, 0.3]).unwrap();
/// let (y, w) = ([0.05], [1.0]);
/// let factor = DenseSolve.factorize(&e, &y, &w, Damping::TrustRegion { lambda: 0.1 }).unwrap();
/// let mut v = [1.0];
/// let diagnostics = factor.solve_in_place_at(&e, &y, &w, &mut v).unwrap();
/// // n = 1: v = 1 / (H + 0.1).
/// assert!((v[0] - 1.0 / (diagnostics.min_eigenvalue + 0.1)).abs() < 1e-15);
/// ```
pub trait HessianSolve<E: Energy + ?Sized> {
    /// The factorisation this strategy produces.
    type Factor: HessianFactor<E> + Clone + std::fmt::Debug;

    /// Checks the strategy's own settings (tolerances, limits); called by the forward pass.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// Factorises `H(y; w) + s I` with the shift `s` chosen by `damping` (see
    /// [`Damping::shift`]).
    ///
    /// Errors: [`crate::WibergError::SingularHessian`] when the damped matrix is (numerically)
    /// singular, [`crate::WibergError::NonFinite`] for a non-finite Hessian, and whatever the
    /// strategy's structure refuses.
    fn factorize(&self, e: &E, y: &[f64], w: &[f64], damping: Damping) -> Result<Self::Factor>;

    /// [`HessianSolve::factorize`], also writing `grad_y E` at `y` into `g` and returning the
    /// energy there: the forward pass needs all three at the returned point. Strategies that
    /// form the Hessian take the gradient from the same [`Energy::gradient_hessian`] call; the
    /// results are those of separate calls, bit for bit.
    fn factorize_with_gradient(
        &self,
        e: &E,
        y: &[f64],
        w: &[f64],
        damping: Damping,
        g: &mut [f64],
    ) -> (f64, Result<Self::Factor>) {
        let value = e.gradient(y, w, g);
        (value, self.factorize(e, y, w, damping))
    }
}

/// The layer's run-time choice of strategy: dense or matrix-free. The default strategy of
/// [`crate::ArgminLayer`], and the one its serialised form (JSON configurations, checkpoints)
/// names.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LinearSolve {
    /// Dense Hessian, Cholesky (LU fallback); exact diagnostics for n <= 64 ([`DenseSolve`]).
    #[default]
    Dense,
    /// Matrix-free conjugate gradients on Hessian-vector products, for large `n`
    /// ([`CgSolve`]). If CG meets curvature at or below zero (the damped matrix is not positive
    /// definite along a Krylov direction) the factor falls back to the dense path, built from
    /// `n` Hessian-vector products, and keeps it. Negative curvature outside the Krylov space
    /// is not seen (see [`CgSolve`] for what `Guarded` then guarantees).
    ConjugateGradient {
        /// Relative residual tolerance.
        tol: f64,
        /// Iteration limit.
        max_iters: usize,
    },
}

/// The factor of [`LinearSolve`]: whichever strategy was chosen.
#[derive(Debug, Clone)]
pub enum LinearFactor {
    /// [`LinearSolve::Dense`].
    Dense(DampedSystem),
    /// [`LinearSolve::ConjugateGradient`].
    ConjugateGradient(CgFactor),
}

impl<E: Energy + ?Sized> HessianSolve<E> for LinearSolve {
    type Factor = LinearFactor;

    fn validate(&self) -> Result<()> {
        match *self {
            LinearSolve::Dense => Ok(()),
            LinearSolve::ConjugateGradient { tol, max_iters } => CgSolve { tol, max_iters }.check(),
        }
    }

    fn factorize(&self, e: &E, y: &[f64], w: &[f64], damping: Damping) -> Result<LinearFactor> {
        match *self {
            LinearSolve::Dense => DenseSolve.factorize(e, y, w, damping).map(LinearFactor::Dense),
            LinearSolve::ConjugateGradient { tol, max_iters } => {
                CgSolve { tol, max_iters }.factorize(e, y, w, damping).map(LinearFactor::ConjugateGradient)
            }
        }
    }

    fn factorize_with_gradient(
        &self,
        e: &E,
        y: &[f64],
        w: &[f64],
        damping: Damping,
        g: &mut [f64],
    ) -> (f64, Result<LinearFactor>) {
        match *self {
            LinearSolve::Dense => {
                let (value, factor) = DenseSolve.factorize_with_gradient(e, y, w, damping, g);
                (value, factor.map(LinearFactor::Dense))
            }
            LinearSolve::ConjugateGradient { tol, max_iters } => {
                let (value, factor) = CgSolve { tol, max_iters }.factorize_with_gradient(e, y, w, damping, g);
                (value, factor.map(LinearFactor::ConjugateGradient))
            }
        }
    }
}

impl<E: Energy + ?Sized> HessianFactor<E> for LinearFactor {
    fn diagnostics(&self) -> Diagnostics {
        match self {
            LinearFactor::Dense(f) => *f.diagnostics(),
            LinearFactor::ConjugateGradient(f) => HessianFactor::<E>::diagnostics(f),
        }
    }

    fn solve_in_place_at(&self, e: &E, y: &[f64], w: &[f64], v: &mut [f64]) -> Result<Diagnostics> {
        match self {
            LinearFactor::Dense(f) => HessianFactor::<E>::solve_in_place_at(f, e, y, w, v),
            LinearFactor::ConjugateGradient(f) => f.solve_in_place_at(e, y, w, v),
        }
    }
}

/// Diagnostics of a point where nothing was factorised (yet): NaN eigenvalues and condition,
/// [`LinearSolver::NotFactorized`].
pub(crate) fn not_factorized(shift: f64) -> Diagnostics {
    Diagnostics {
        min_eigenvalue: f64::NAN,
        max_eigenvalue: f64::NAN,
        eigen_exact: false,
        condition: f64::NAN,
        shift,
        solver: LinearSolver::NotFactorized,
    }
}
