//! Damped solves as strategies: a damped matrix `H + s I` is factorised once (with
//! [`Diagnostics`]) and then solved against as many right-hand sides as needed, in place.
//!
//! [`DampedFactor`] is what every strategy produces: the dense factorisation
//! ([`DampedSystem`]: Cholesky with an LU fallback) implements it, and so do the structured
//! ones ([`BlockArrowFactor`] for block-arrow matrices, [`block_arrow`]), so code that only needs "solve with the damped Hessian" (the backward pass, a damped
//! Newton step, IRLS) can take any of them.

pub mod block_arrow;
pub(crate) mod cg;
pub mod dense;

pub use block_arrow::{BlockArrow, BlockArrowFactor};
pub use dense::DampedSystem;

use crate::derivative::Diagnostics;
use crate::Result;

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
        let x = self.solve(v)?;
        v.copy_from_slice(&x);
        Ok(())
    }
}
