//! Damping modes and the damped linear solve behind every derivative.
//!
//! The backward pass solves `(H + s I) u = v` with `H` the Hessian at the solution and `s` the
//! shift chosen by the [`Damping`] mode. [`DampedSystem`] factorises that matrix once (in the
//! forward pass) and reports what it saw in [`Diagnostics`].

use crate::error::WibergError;
use crate::Result;
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

/// How the Hessian is damped when differentiating through the minimiser.
///
/// ```
/// use wiberg::Damping;
/// assert_eq!(Damping::default(), Damping::TrustRegion { lambda: 0.1 });
/// // The guarded shift lifts an indefinite Hessian: eig_min(H) = -0.3 -> s = 0.1 + 0.3.
/// assert!((Damping::Guarded { lambda: 0.1 }.shift(-0.3) - 0.4).abs() < 1e-15);
/// assert_eq!(Damping::TrustRegion { lambda: 0.1 }.shift(-0.3), 0.1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case")]
pub enum Damping {
    /// `dy*/dw = -H^-1 M` (eq. 6 of the paper; Samuel & Tappen 2009). A singular `H` is
    /// [`WibergError::SingularHessian`].
    Implicit,
    /// `dy*/dw = -(H + lambda I)^-1 M` (eq. 7 of the paper). Bounded by `|M| / lambda` when
    /// `H` is positive semi-definite; unbounded when `H` has an eigenvalue near `-lambda`.
    TrustRegion {
        /// The damping `lambda > 0` (the paper uses 0.1).
        lambda: f64,
    },
    /// `dy*/dw = -(H + s I)^-1 M` with `s = lambda + max(0, -eig_min(H))`: the matrix solved
    /// is at least `lambda I` whatever `H` is, so `|dy*/dw| <= |M| / lambda` always holds.
    /// Equal to `TrustRegion` when `H` is positive semi-definite.
    Guarded {
        /// The smallest eigenvalue the solved matrix may have, `lambda > 0`.
        lambda: f64,
    },
}

impl Default for Damping {
    fn default() -> Self {
        Damping::TrustRegion { lambda: 0.1 }
    }
}

impl Damping {
    /// The nominal damping `lambda` (0 for `Implicit`).
    pub fn lambda(&self) -> f64 {
        match *self {
            Damping::Implicit => 0.0,
            Damping::TrustRegion { lambda } | Damping::Guarded { lambda } => lambda,
        }
    }

    /// The shift `s` added to a Hessian whose smallest eigenvalue is `min_eigenvalue`.
    pub fn shift(&self, min_eigenvalue: f64) -> f64 {
        match *self {
            Damping::Implicit => 0.0,
            Damping::TrustRegion { lambda } => lambda,
            Damping::Guarded { lambda } => lambda + (-min_eigenvalue).max(0.0),
        }
    }

    /// Rejects a negative or non-finite `lambda`, and `lambda = 0` for the damped modes.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Damping::Implicit => Ok(()),
            Damping::TrustRegion { lambda } | Damping::Guarded { lambda } => {
                if lambda.is_finite() && lambda > 0.0 {
                    Ok(())
                } else {
                    Err(WibergError::InvalidArgument(format!("damping lambda must be finite and > 0, got {lambda}")))
                }
            }
        }
    }

    /// Short name: `implicit`, `trust-region` or `guarded`.
    pub fn name(&self) -> &'static str {
        match self {
            Damping::Implicit => "implicit",
            Damping::TrustRegion { .. } => "trust-region",
            Damping::Guarded { .. } => "guarded",
        }
    }
}

/// Which linear solver handled the damped system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinearSolver {
    /// A scalar division (n = 1).
    Scalar,
    /// Cholesky: the damped matrix was positive definite.
    Cholesky,
    /// LU with partial pivoting: the damped matrix was indefinite (only possible for
    /// `Implicit` and `TrustRegion`).
    Lu,
    /// Matrix-free conjugate gradients on Hessian-vector products.
    ConjugateGradient,
    /// Nothing solved yet: the matrix-free path before its first solve, or a dense
    /// factorisation that failed (a forward pass without polish at a singular Hessian under
    /// `Implicit`; the backward pass then returns the error). The eigenvalue and condition
    /// fields of such [`Diagnostics`] are NaN: unknown, not computed.
    NotFactorized,
}

/// What the backward pass saw at the point it linearised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Smallest eigenvalue of the Hessian `H` (exact when `eigen_exact`, else an estimate).
    pub min_eigenvalue: f64,
    /// Largest eigenvalue of `H` (exact when `eigen_exact`, else an estimate).
    pub max_eigenvalue: f64,
    /// Whether the eigenvalues are exact (dense eigendecomposition, n <= 64) or estimates.
    pub eigen_exact: bool,
    /// Condition number of the matrix actually solved, `H + shift I` (estimate when not exact).
    pub condition: f64,
    /// The shift actually added to `H` (0 for implicit, lambda for trust-region, the guarded
    /// shift otherwise).
    pub shift: f64,
    /// The solver used.
    pub solver: LinearSolver,
}

impl Diagnostics {
    /// Whether the Hessian had negative curvature (smallest eigenvalue < 0): the point is not
    /// a strict minimum, and trust-region damping loses its bound there.
    pub fn negative_curvature(&self) -> bool {
        self.min_eigenvalue < 0.0
    }
}

/// Problems up to this size get an exact symmetric eigendecomposition for the diagnostics
/// (and the guarded shift); larger ones use estimates from the factorisation.
pub const EXACT_EIGEN_MAX_DIM: usize = 64;

/// A damped matrix `H + s I`, factorised once and solved against as often as needed.
#[derive(Debug, Clone)]
pub struct DampedSystem {
    factor: Factor,
    diagnostics: Diagnostics,
}

#[derive(Debug, Clone)]
enum Factor {
    Scalar(f64),
    Cholesky(nalgebra::Cholesky<f64, nalgebra::Dyn>),
    Lu(nalgebra::LU<f64, nalgebra::Dyn, nalgebra::Dyn>),
}

/// Relative size below which the smallest |eigenvalue| makes a matrix numerically singular.
fn singular_tolerance(n: usize) -> f64 {
    (n.max(1) as f64) * f64::EPSILON
}

impl DampedSystem {
    /// Factorises `H + s I` with `s` chosen by `damping` (see [`Damping::shift`]).
    ///
    /// Errors: [`WibergError::NonFinite`] if `H` has a NaN or infinity,
    /// [`WibergError::SingularHessian`] if the damped matrix is (numerically) singular, which
    /// can only happen for `Implicit`, or for `TrustRegion` when `H` has the eigenvalue
    /// `-lambda`.
    ///
    /// ```
    /// use wiberg::{Damping, DampedSystem};
    /// use nalgebra::DMatrix;
    /// let h = DMatrix::from_row_slice(2, 2, &[2.0, 0.0, 0.0, 0.0]); // singular
    /// assert!(DampedSystem::factorize(h.clone(), Damping::Implicit).is_err());
    /// let sys = DampedSystem::factorize(h, Damping::TrustRegion { lambda: 0.5 }).unwrap();
    /// let u = sys.solve(&[1.0, 1.0]).unwrap();
    /// assert!((u[0] - 1.0 / 2.5).abs() < 1e-15 && (u[1] - 2.0).abs() < 1e-15);
    /// ```
    pub fn factorize(mut h: DMatrix<f64>, damping: Damping) -> Result<Self> {
        damping.validate()?;
        let n = h.nrows();
        if n == 0 || h.ncols() != n {
            return Err(WibergError::DimensionMismatch {
                what: "Hessian (must be square and non-empty)".into(),
                expected: n.max(1),
                got: h.ncols(),
            });
        }
        if !h.iter().all(|v| v.is_finite()) {
            return Err(WibergError::NonFinite { what: "Hessian".into() });
        }
        if n == 1 {
            let h0 = h[(0, 0)];
            let shift = damping.shift(h0);
            let a = h0 + shift;
            let diagnostics = Diagnostics {
                min_eigenvalue: h0,
                max_eigenvalue: h0,
                eigen_exact: true,
                condition: 1.0,
                shift,
                solver: LinearSolver::Scalar,
            };
            if !a.is_finite() {
                return Err(WibergError::NonFinite { what: "damped Hessian (overflow)".into() });
            }
            if a == 0.0 || !(1.0 / a).is_finite() {
                return Err(WibergError::SingularHessian { min_abs_eigenvalue: a.abs(), damping: shift });
            }
            return Ok(DampedSystem { factor: Factor::Scalar(a), diagnostics });
        }
        // Symmetrise: energies assemble H from floating-point sums that may differ in the
        // last bit across the diagonal, and Cholesky reads only one triangle.
        for i in 0..n {
            for j in 0..i {
                let m = 0.5 * (h[(i, j)] + h[(j, i)]);
                h[(i, j)] = m;
                h[(j, i)] = m;
            }
        }
        let exact = n <= EXACT_EIGEN_MAX_DIM;
        let (mut min_eig, mut max_eig) = if exact {
            let eig = nalgebra::SymmetricEigen::new(h.clone()).eigenvalues;
            (eig.min(), eig.max())
        } else {
            (f64::NAN, f64::NAN)
        };
        if !exact {
            // Gershgorin bounds: cheap and always valid, refined below when needed.
            let (lo, hi) = gershgorin(&h);
            min_eig = lo;
            max_eig = hi;
            if matches!(damping, Damping::Guarded { .. }) && lo < 0.0 {
                // The guarded bound needs the true smallest eigenvalue: pay for it only here.
                if h.clone().cholesky().is_none() {
                    let eig = nalgebra::SymmetricEigen::new(h.clone()).eigenvalues;
                    min_eig = eig.min();
                    max_eig = eig.max();
                } else {
                    min_eig = 0.0;
                }
            }
        }
        let shift = damping.shift(min_eig);
        for i in 0..n {
            h[(i, i)] += shift;
        }
        let singular = |min_abs: f64, max_abs: f64| min_abs == 0.0 || min_abs <= singular_tolerance(n) * max_abs;
        let (factor, solver, condition) = match h.clone().cholesky() {
            Some(ch) => {
                let d = ch.l_dirty().diagonal();
                let (dmin, dmax) = (d.min(), d.max());
                let cond = if exact { (max_eig + shift) / (min_eig + shift) } else { (dmax / dmin).powi(2) };
                if !exact && (dmin * dmin) <= singular_tolerance(n) * dmax * dmax {
                    return Err(WibergError::SingularHessian { min_abs_eigenvalue: dmin * dmin, damping: shift });
                }
                if exact && singular((min_eig + shift).abs(), (max_eig + shift).abs()) {
                    return Err(WibergError::SingularHessian {
                        min_abs_eigenvalue: (min_eig + shift).abs(),
                        damping: shift,
                    });
                }
                (Factor::Cholesky(ch), LinearSolver::Cholesky, cond)
            }
            None => {
                let lu = h.clone().lu();
                let u = lu.u();
                let d = u.diagonal().map(f64::abs);
                let (dmin, dmax) = (d.min(), d.max());
                let (min_abs, max_abs) = if exact {
                    let e = nalgebra::SymmetricEigen::new(h.clone()).eigenvalues.map(f64::abs);
                    (e.min(), e.max())
                } else {
                    (dmin, dmax)
                };
                if singular(min_abs, max_abs) || singular(dmin, dmax) {
                    return Err(WibergError::SingularHessian { min_abs_eigenvalue: min_abs, damping: shift });
                }
                (Factor::Lu(lu), LinearSolver::Lu, max_abs / min_abs)
            }
        };
        if ![min_eig, max_eig, condition, shift].iter().all(|v| v.is_finite()) {
            return Err(WibergError::NonFinite { what: "Hessian eigenvalues (entries too large: overflow)".into() });
        }
        Ok(DampedSystem {
            factor,
            diagnostics: Diagnostics {
                min_eigenvalue: min_eig,
                max_eigenvalue: max_eig,
                eigen_exact: exact,
                condition,
                shift,
                solver,
            },
        })
    }

    /// Dimension of the system.
    pub fn dim(&self) -> usize {
        match &self.factor {
            Factor::Scalar(_) => 1,
            Factor::Cholesky(c) => c.l_dirty().nrows(),
            Factor::Lu(l) => l.u().nrows(),
        }
    }

    /// The diagnostics gathered while factorising.
    pub fn diagnostics(&self) -> &Diagnostics {
        &self.diagnostics
    }

    /// Solves `(H + s I) x = v`. A non-finite result is [`WibergError::SingularHessian`].
    pub fn solve(&self, v: &[f64]) -> Result<Vec<f64>> {
        crate::error::check_len(v.len(), self.dim(), "right-hand side of the damped solve")?;
        crate::error::check_finite(v, "right-hand side of the damped solve")?;
        let x: Vec<f64> = match &self.factor {
            Factor::Scalar(a) => vec![v[0] / a],
            Factor::Cholesky(c) => c.solve(&DVector::from_column_slice(v)).as_slice().to_vec(),
            Factor::Lu(l) => match l.solve(&DVector::from_column_slice(v)) {
                Some(x) => x.as_slice().to_vec(),
                None => {
                    return Err(self.singular_error());
                }
            },
        };
        if x.iter().all(|e| e.is_finite()) {
            Ok(x)
        } else {
            Err(self.singular_error())
        }
    }

    fn singular_error(&self) -> WibergError {
        WibergError::SingularHessian {
            min_abs_eigenvalue: (self.diagnostics.min_eigenvalue + self.diagnostics.shift).abs(),
            damping: self.diagnostics.shift,
        }
    }
}

/// Gershgorin interval containing every eigenvalue of a symmetric matrix.
fn gershgorin(h: &DMatrix<f64>) -> (f64, f64) {
    let n = h.nrows();
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for i in 0..n {
        let r: f64 = (0..n).filter(|&j| j != i).map(|j| h[(i, j)].abs()).sum();
        lo = lo.min(h[(i, i)] - r);
        hi = hi.max(h[(i, i)] + r);
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_shift_lifts_indefinite_hessian() {
        let h = DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, -0.3]);
        let sys = DampedSystem::factorize(h, Damping::Guarded { lambda: 0.1 }).unwrap();
        let d = sys.diagnostics();
        assert!((d.shift - 0.4).abs() < 1e-12);
        assert!(d.negative_curvature());
        assert_eq!(d.solver, LinearSolver::Cholesky);
        let x = sys.solve(&[0.0, 1.0]).unwrap();
        assert!((x[1] - 10.0).abs() < 1e-9, "{x:?}");
    }

    #[test]
    fn trust_region_at_minus_lambda_is_singular_not_inf() {
        let h = DMatrix::from_row_slice(1, 1, &[-0.1]);
        let e = DampedSystem::factorize(h, Damping::TrustRegion { lambda: 0.1 });
        assert!(matches!(e, Err(WibergError::SingularHessian { .. })), "{e:?}");
    }

    #[test]
    fn indefinite_implicit_uses_lu() {
        let h = DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 2.0, 1.0]);
        let sys = DampedSystem::factorize(h, Damping::Implicit).unwrap();
        assert_eq!(sys.diagnostics().solver, LinearSolver::Lu);
        let x = sys.solve(&[3.0, 3.0]).unwrap();
        assert!((x[0] - 1.0).abs() < 1e-12 && (x[1] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn nan_hessian_and_bad_lambda_are_errors() {
        let h = DMatrix::from_row_slice(1, 1, &[f64::NAN]);
        assert!(matches!(DampedSystem::factorize(h, Damping::Implicit), Err(WibergError::NonFinite { .. })));
        let h = DMatrix::from_row_slice(1, 1, &[1.0]);
        assert!(DampedSystem::factorize(h, Damping::TrustRegion { lambda: -1.0 }).is_err());
    }

    #[test]
    fn large_guarded_uses_true_min_eigenvalue() {
        let n = 70;
        let mut h = DMatrix::identity(n, n);
        h[(3, 3)] = -2.0;
        let sys = DampedSystem::factorize(h, Damping::Guarded { lambda: 0.1 }).unwrap();
        assert!((sys.diagnostics().shift - 2.1).abs() < 1e-9);
    }
}
