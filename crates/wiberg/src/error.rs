//! Typed errors of the library: never a silent NaN, inf or panic.

/// Everything that can go wrong in the library.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WibergError {
    /// The Hessian (or damped Hessian) is singular or numerically so; under
    /// [`crate::Damping::Implicit`] this is the expected failure near flat minima.
    #[error("singular Hessian: smallest |eigenvalue| {min_abs_eigenvalue:e} (damping {damping:e}); the implicit derivative does not exist here")]
    SingularHessian {
        /// Smallest absolute eigenvalue (or estimate) of the matrix that was solved.
        min_abs_eigenvalue: f64,
        /// Damping shift that had been added.
        damping: f64,
    },
    /// A value that must be finite was not (NaN or infinity).
    #[error("non-finite value in {what}")]
    NonFinite {
        /// What was non-finite (for example "energy gradient at the start point").
        what: String,
    },
    /// Lengths that must agree do not.
    #[error("dimension mismatch in {what}: expected {expected}, got {got}")]
    DimensionMismatch {
        /// Which argument.
        what: String,
        /// Expected length.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// An argument is out of its valid range (negative damping, zero width, empty set...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An iterative linear solver (conjugate gradients) did not reach its tolerance.
    #[error("conjugate gradients did not converge: residual {residual:e} after {iterations} iterations")]
    NotConverged {
        /// Iterations run.
        iterations: usize,
        /// Final relative residual.
        residual: f64,
    },
}

/// Checks that every value is finite, naming `what` otherwise.
pub(crate) fn check_finite(values: &[f64], what: &str) -> crate::Result<()> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(WibergError::NonFinite { what: what.to_string() })
    }
}

/// Checks a length.
pub(crate) fn check_len(len: usize, expected: usize, what: &str) -> crate::Result<()> {
    if len == expected {
        Ok(())
    } else {
        Err(WibergError::DimensionMismatch { what: what.to_string(), expected, got: len })
    }
}
