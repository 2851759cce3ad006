//! Damping modes and what a damped solve reports.
//!
//! The backward pass solves `(H + s I) u = v` with `H` the Hessian at the solution and `s` the
//! shift chosen by the [`Damping`] mode. The solve itself is a strategy in [`crate::damped`]
//! (dense [`crate::damped::DampedSystem`], conjugate gradients, ...); each reports what it saw in
//! [`Diagnostics`].

use crate::error::WibergError;
use crate::Result;
use serde::{Deserialize, Serialize};

/// How the Hessian is damped when differentiating through the minimiser.
///
/// # Choosing `lambda`
/// `lambda` is an *absolute* shift, in the units of `H` (energy per unit of `y` squared). Along
/// an eigenvector of a positive semi-definite `H` with eigenvalue `e`, the damped derivative is
/// the implicit one times `e / (e + lambda)`: nearly unbiased where `e >> lambda`, and capped at
/// `|M| / lambda` where `e << lambda` (the flat minima where the implicit derivative explodes).
/// For example with eigenvalues between 3 and 730, `lambda = 0.1` changes the derivative by at
/// most 3 % (along the eigenvalue 3) and by 0.01 % along the largest.
/// [`Diagnostics::relative_shift`] reports that largest relative change for each solve: look at
/// it over a batch. A practical rule: `lambda` at 1-10 % of the smallest eigenvalue of `H` at
/// typical, well-conditioned solutions, so that those keep their implicit gradient and only
/// flat or ill-posed minima are damped. If you scale the energy by `k`, scale `lambda` by `k`
/// too (the derivative is then unchanged).
///
/// There is deliberately no mode with a shift relative to `H` (say `rho * |H|`): the bound
/// `|M| / lambda` is what keeps gradients finite at flat minima, and a shift proportional to
/// the curvature vanishes exactly there, so it would give the protection up where it is needed.
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
    /// Block-arrow Schur complement: many small independent diagonal blocks coupled through a
    /// dense border (`crate::damped`).
    BlockArrow,
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
    /// Condition number of the matrix actually solved, `H + shift I`. When `eigen_exact`
    /// (n <= [`crate::damped::dense::EXACT_EIGEN_MAX_DIM`]): the exact 2-norm condition `max|eig| / min|eig|`.
    /// Otherwise an *estimate* of the 1-norm condition `|A|_1 |A^-1|_1` from the factors
    /// (Hager's estimator with Higham's refinements, the method of LAPACK's `xLACON`; a few
    /// solves, no inverse): it is a lower bound of the 1-norm condition, in practice within a
    /// factor of 3 of it, and the 1-norm and 2-norm conditions differ by at most a factor `n`
    /// (typically far less).
    pub condition: f64,
    /// The shift actually added to `H` (0 for implicit, lambda for trust-region, the guarded
    /// shift otherwise).
    pub shift: f64,
    /// The solver used.
    pub solver: LinearSolver,
}

impl Diagnostics {
    /// The largest relative change the shift makes to the derivative, `shift / (eig_min(H) +
    /// shift)`: along the eigenvector of the smallest eigenvalue the damped derivative is the
    /// implicit one times `1 - relative_shift` (see "Choosing `lambda`" at [`Damping`]). 0 for
    /// the implicit derivative, near 0 when `H` is large against the shift, near 1 at a flat
    /// minimum. NaN when `H` is indefinite (the implicit derivative is not that of a minimum
    /// there) or its smallest eigenvalue is unknown.
    ///
    /// ```
    /// use wiberg::{DampedSystem, Damping};
    /// use nalgebra::DMatrix;
    /// let h = DMatrix::from_row_slice(2, 2, &[3.0, 0.0, 0.0, 730.0]);
    /// let sys = DampedSystem::factorize(h, Damping::TrustRegion { lambda: 0.1 }).unwrap();
    /// let r = sys.diagnostics().relative_shift();
    /// assert!((r - 0.1 / 3.1).abs() < 1e-15); // at most 3.2 % of the derivative
    /// ```
    pub fn relative_shift(&self) -> f64 {
        if self.shift == 0.0 && self.min_eigenvalue >= 0.0 {
            0.0
        } else if self.min_eigenvalue >= 0.0 {
            self.shift / (self.min_eigenvalue + self.shift)
        } else {
            f64::NAN
        }
    }

    /// Whether the Hessian had negative curvature (smallest eigenvalue < 0): the point is not
    /// a strict minimum, and trust-region damping loses its bound there.
    pub fn negative_curvature(&self) -> bool {
        self.min_eigenvalue < 0.0
    }
}
