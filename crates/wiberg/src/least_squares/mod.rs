//! Closed-form damped weighted linear least squares with exact derivatives, (re-exported
//! from [`crate::minimize::irls`]) IRLS for pseudo-Huber residuals, and ([`structured`]) robust
//! least squares whose normal matrix is block-arrow, solved by IRLS with the block-arrow factor
//! and differentiated with the IRLS weights held fixed.
//!
//! [`LeastSquares`] solves
//!
//! ```text
//! y* = argmin_y 1/2 |W^(1/2) (A y - b)|^2 + mu/2 |y|^2 = (A^T W A + mu I)^-1 A^T W b
//! ```
//!
//! with `W = diag(weights)`, and returns `dl/dA`, `dl/db`, `dl/dweights` and `dl/dmu` from
//! `v = dl/dy*` (a vector-Jacobian product). With `H = A^T W A + mu I`, `r = A y* - b` and
//! `u = (H + s I)^-1 v` (`s` the shift of the [`Damping`]; 0 for [`Damping::Implicit`], which
//! gives the exact derivative):
//!
//! ```text
//! dl/db       = W A u
//! dl/dA       = -W r u^T - W (A u) y*^T
//! dl/dweights = -(A u) .* r
//! dl/dmu      = -u^T y*
//! ```
//!
//! This is `dl/dp = -u^T d(grad_y E)/dp`, the trust-region ("Wibergian") derivative of the
//! quadratic energy; the energy being quadratic, `Implicit` is the exact derivative of the
//! closed form.

use crate::damped::DampedSystem;
use crate::derivative::{Damping, Diagnostics};
use crate::error::{check_finite, check_len, WibergError};
use crate::Result;
use nalgebra::{DMatrix, DVector};

pub mod structured;

pub use structured::{FixedQuadratic, PseudoHuber, RobustRows, RowGradient, RowLoss, SquaredLoss, StructuredIrls};

pub use crate::minimize::irls::{
    IrlsConfig, IrlsReport, RobustEnergy, RobustGradient, RobustLeastSquares, RobustSolution,
};

/// A damped weighted linear least-squares problem `min 1/2 |W^(1/2)(A y - b)|^2 + mu/2 |y|^2`.
///
/// ```
/// use nalgebra::{DMatrix, DVector};
/// use wiberg::{least_squares::LeastSquares, Damping};
/// // Fit a line y0 + y1 t through (0, 1), (1, 3), (2, 5): exactly 1 + 2 t.
/// let a = DMatrix::from_row_slice(3, 2, &[1.0, 0.0, 1.0, 1.0, 1.0, 2.0]);
/// let b = DVector::from_vec(vec![1.0, 3.0, 5.0]);
/// let ls = LeastSquares::new(a, b).unwrap();
/// let sol = ls.solve(Damping::Implicit).unwrap();
/// assert!((sol.y[0] - 1.0).abs() < 1e-12 && (sol.y[1] - 2.0).abs() < 1e-12);
/// // d(intercept)/db: v = (1, 0) picks y0; moving b by db moves the fit by db's projection.
/// let g = ls.backward(&sol, &DVector::from_vec(vec![1.0, 0.0])).unwrap();
/// assert!((g.b[0] - 5.0 / 6.0).abs() < 1e-12); // the first row of the hat map (A^T A)^-1 A^T
/// assert!((g.b.sum() - 1.0).abs() < 1e-12); // shifting every b by 1 shifts the intercept by 1
/// // Zero damping and a rank-deficient A is a typed error, never NaN.
/// let a0 = DMatrix::from_row_slice(2, 2, &[1.0, 1.0, 2.0, 2.0]);
/// let singular = LeastSquares::new(a0, DVector::from_vec(vec![1.0, 2.0])).unwrap();
/// assert!(matches!(singular.solve(Damping::Implicit), Err(wiberg::WibergError::SingularHessian { .. })));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LeastSquares {
    a: DMatrix<f64>,
    b: DVector<f64>,
    weights: DVector<f64>,
    mu: f64,
}

/// The solution of a [`LeastSquares`] problem and the factorisations its derivative reuses.
#[derive(Debug, Clone)]
pub struct LeastSquaresSolution {
    /// The minimiser `y* = (A^T W A + mu I)^-1 A^T W b`.
    pub y: DVector<f64>,
    /// The residual `A y* - b` (unweighted).
    pub residual: DVector<f64>,
    /// The energy `1/2 |W^(1/2) r|^2 + mu/2 |y*|^2` at the solution.
    pub energy: f64,
    /// The damping of the derivative.
    pub damping: Damping,
    /// `H = A^T W A + mu I`, factorised (used for `y*`, and for the derivative under `Implicit`).
    normal: DampedSystem,
    /// `H + s I` for the damped modes (None: the derivative reuses `normal`).
    damped: Option<DampedSystem>,
}

impl LeastSquaresSolution {
    /// Diagnostics of the matrix the derivative solves, `H + s I` (`H = A^T W A + mu I`).
    pub fn diagnostics(&self) -> &Diagnostics {
        self.damped.as_ref().unwrap_or(&self.normal).diagnostics()
    }

    /// Diagnostics of the normal matrix `H = A^T W A + mu I` used for `y*`.
    pub fn normal_diagnostics(&self) -> &Diagnostics {
        self.normal.diagnostics()
    }

    /// `u = (H + s I)^-1 v`, the solve behind every derivative.
    pub fn solve_damped(&self, v: &[f64]) -> Result<Vec<f64>> {
        self.damped.as_ref().unwrap_or(&self.normal).solve(v)
    }
}

/// `dl/d(parameters)` of a least-squares solution, from `v = dl/dy*`.
#[derive(Debug, Clone, PartialEq)]
pub struct LeastSquaresGradient {
    /// `dl/dA` (m x n).
    pub a: DMatrix<f64>,
    /// `dl/db` (m).
    pub b: DVector<f64>,
    /// `dl/dweights` (m).
    pub weights: DVector<f64>,
    /// `dl/dmu`.
    pub mu: f64,
    /// `u = (H + s I)^-1 v` (n).
    pub u: DVector<f64>,
    /// Diagnostics of the damped system that was solved.
    pub diagnostics: Diagnostics,
}

impl LeastSquares {
    /// Unweighted, undamped problem `min 1/2 |A y - b|^2`.
    ///
    /// Errors: empty `A`, `b` of the wrong length, NaN or infinity in `A` or `b`.
    pub fn new(a: DMatrix<f64>, b: DVector<f64>) -> Result<Self> {
        let (m, n) = a.shape();
        if m == 0 || n == 0 {
            return Err(WibergError::InvalidArgument(format!("least squares needs a non-empty A, got {m} x {n}")));
        }
        check_len(b.len(), m, "least-squares b (one entry per row of A)")?;
        check_finite(a.as_slice(), "least-squares A")?;
        check_finite(b.as_slice(), "least-squares b")?;
        Ok(LeastSquares { a, b, weights: DVector::from_element(m, 1.0), mu: 0.0 })
    }

    /// Sets the row weights (one per row of `A`, finite and `>= 0`).
    pub fn with_weights(mut self, weights: DVector<f64>) -> Result<Self> {
        check_len(weights.len(), self.a.nrows(), "least-squares weights (one per row of A)")?;
        check_finite(weights.as_slice(), "least-squares weights")?;
        if let Some(i) = weights.iter().position(|&w| w < 0.0) {
            return Err(WibergError::InvalidArgument(format!("least-squares weight {i} is negative ({})", weights[i])));
        }
        self.weights = weights;
        Ok(self)
    }

    /// Sets the damping `mu >= 0` of the energy (`mu/2 |y|^2`, ridge regression).
    pub fn with_mu(mut self, mu: f64) -> Result<Self> {
        if !(mu.is_finite() && mu >= 0.0) {
            return Err(WibergError::InvalidArgument(format!("least-squares mu must be finite and >= 0, got {mu}")));
        }
        self.mu = mu;
        Ok(self)
    }

    /// The design matrix `A` (m x n).
    pub fn a(&self) -> &DMatrix<f64> {
        &self.a
    }

    /// The target `b` (m).
    pub fn b(&self) -> &DVector<f64> {
        &self.b
    }

    /// The row weights (m).
    pub fn weights(&self) -> &DVector<f64> {
        &self.weights
    }

    /// The energy's damping `mu`.
    pub fn mu(&self) -> f64 {
        self.mu
    }

    /// The energy `1/2 |W^(1/2)(A y - b)|^2 + mu/2 |y|^2`.
    pub fn energy(&self, y: &DVector<f64>) -> Result<f64> {
        check_len(y.len(), self.a.ncols(), "least-squares y")?;
        let r = &self.a * y - &self.b;
        Ok(0.5 * r.iter().zip(self.weights.iter()).map(|(r, w)| w * r * r).sum::<f64>()
            + 0.5 * self.mu * y.norm_squared())
    }

    /// Solves the problem; `damping` is that of the derivative only (the solution is always
    /// the exact minimiser). The normal matrix is factorised once (Cholesky) and reused by
    /// [`LeastSquares::backward`] under `Implicit`; the damped modes factorise `H + s I` once
    /// more here.
    ///
    /// Errors: [`WibergError::SingularHessian`] when `A^T W A + mu I` is (numerically)
    /// singular, which needs `mu = 0`; an invalid `damping`.
    pub fn solve(&self, damping: Damping) -> Result<LeastSquaresSolution> {
        damping.validate()?;
        let n = self.a.ncols();
        // W A, row by row.
        let mut wa = self.a.clone();
        for (i, &w) in self.weights.iter().enumerate() {
            wa.row_mut(i).scale_mut(w);
        }
        let mut h = self.a.tr_mul(&wa);
        for i in 0..n {
            h[(i, i)] += self.mu;
        }
        let rhs = wa.tr_mul(&self.b);
        let normal = DampedSystem::factorize(h.clone(), Damping::Implicit)?;
        let y = DVector::from_vec(normal.solve(rhs.as_slice())?);
        let damped = match damping {
            Damping::Implicit => None,
            _ => Some(DampedSystem::factorize(h, damping)?),
        };
        let residual = &self.a * &y - &self.b;
        let energy = 0.5 * residual.iter().zip(self.weights.iter()).map(|(r, w)| w * r * r).sum::<f64>()
            + 0.5 * self.mu * y.norm_squared();
        check_finite(y.as_slice(), "least-squares solution")?;
        check_finite(residual.as_slice(), "least-squares residual (overflow)")?;
        check_finite(&[energy], "least-squares energy (overflow)")?;
        Ok(LeastSquaresSolution { y, residual, energy, damping, normal, damped })
    }

    /// Vector-Jacobian product: `dl/dA`, `dl/db`, `dl/dweights`, `dl/dmu` from `v = dl/dy*`
    /// (formulas in the [module documentation](self)). `sol` must come from this problem.
    pub fn backward(&self, sol: &LeastSquaresSolution, v: &DVector<f64>) -> Result<LeastSquaresGradient> {
        let (m, n) = self.a.shape();
        check_len(v.len(), n, "dl/dy*")?;
        check_len(sol.y.len(), n, "least-squares solution (from another problem?)")?;
        check_len(sol.residual.len(), m, "least-squares residual (from another problem?)")?;
        check_finite(v.as_slice(), "dl/dy*")?;
        let u = DVector::from_vec(sol.solve_damped(v.as_slice())?);
        let au = &self.a * &u;
        let wau = au.component_mul(&self.weights);
        let wr = sol.residual.component_mul(&self.weights);
        // dl/dA = -W r u^T - W (A u) y^T
        let a_grad = -(&wr * u.transpose()) - &wau * sol.y.transpose();
        let weights = -au.component_mul(&sol.residual);
        let mu = -u.dot(&sol.y);
        check_finite(a_grad.as_slice(), "dl/dA")?;
        check_finite(wau.as_slice(), "dl/db")?;
        check_finite(&[weights.as_slice(), &[mu]].concat(), "dl/dweights and dl/dmu")?;
        Ok(LeastSquaresGradient { a: a_grad, b: wau, weights, mu, u, diagnostics: *sol.diagnostics() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem() -> LeastSquares {
        let a = DMatrix::from_row_slice(4, 2, &[1.0, 0.5, -0.3, 2.0, 0.7, 0.1, 1.5, -1.0]);
        let b = DVector::from_vec(vec![0.3, -1.2, 0.8, 2.0]);
        LeastSquares::new(a, b)
            .unwrap()
            .with_weights(DVector::from_vec(vec![1.0, 0.5, 2.0, 0.0]))
            .unwrap()
            .with_mu(0.1)
            .unwrap()
    }

    #[test]
    fn solution_zeroes_the_gradient() {
        let ls = problem();
        let sol = ls.solve(Damping::Implicit).unwrap();
        let wr = sol.residual.component_mul(ls.weights());
        let g = ls.a().tr_mul(&wr) + &sol.y * ls.mu();
        assert!(g.norm() < 1e-12, "{g}");
        assert!((sol.energy - ls.energy(&sol.y).unwrap()).abs() < 1e-15);
    }

    #[test]
    fn trust_region_u_is_the_damped_solve() {
        let ls = problem();
        let sol = ls.solve(Damping::TrustRegion { lambda: 0.5 }).unwrap();
        let v = DVector::from_vec(vec![1.0, -2.0]);
        let g = ls.backward(&sol, &v).unwrap();
        let mut wa = ls.a().clone();
        for i in 0..4 {
            wa.row_mut(i).scale_mut(ls.weights()[i]);
        }
        let h = ls.a().tr_mul(&wa) + DMatrix::identity(2, 2) * (ls.mu() + 0.5);
        assert!((h * &g.u - v).norm() < 1e-12);
        assert_eq!(g.diagnostics.shift, 0.5);
        // The zero-weight row gets no gradient in b and A.
        assert_eq!(g.b[3], 0.0);
        assert_eq!(g.a.row(3).norm(), 0.0);
    }

    #[test]
    fn invalid_inputs_are_typed_errors() {
        let a = DMatrix::from_row_slice(2, 1, &[1.0, 2.0]);
        let b = DVector::from_vec(vec![1.0, 2.0]);
        assert!(matches!(
            LeastSquares::new(a.clone(), DVector::from_vec(vec![1.0])),
            Err(WibergError::DimensionMismatch { .. })
        ));
        assert!(matches!(
            LeastSquares::new(a.clone(), DVector::from_vec(vec![1.0, f64::NAN])),
            Err(WibergError::NonFinite { .. })
        ));
        let ls = LeastSquares::new(a, b).unwrap();
        assert!(ls.clone().with_weights(DVector::from_vec(vec![1.0, -1.0])).is_err());
        assert!(ls.clone().with_mu(f64::NAN).is_err());
        let sol = ls.solve(Damping::Implicit).unwrap();
        assert!(ls.backward(&sol, &DVector::from_vec(vec![1.0, 1.0])).is_err());
        assert!(LeastSquares::new(DMatrix::zeros(0, 1), DVector::zeros(0)).is_err());
    }
}
