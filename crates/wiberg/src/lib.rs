//! # wiberg
//!
//! Learning continuous energy functions by differentiating through their minimisers with the
//! trust-region ("Wibergian") derivative of Toso, Campbell and Russell (NeurIPS 2019).
//!
//! A prediction is `y*(w) = argmin_y E(y; w)`. Its derivative with respect to the energy's
//! parameters `w` is
//!
//! * implicit (Samuel & Tappen 2009): `dy*/dw = -H^-1 M`,
//! * trust-region (Toso et al. 2019, eq. 7): `dy*/dw = -(H + lambda I)^-1 M`,
//! * guarded (ours): `-(H + s I)^-1 M` with `s` chosen so that `H + s I >= lambda I` even when
//!   `H` is indefinite,
//!
//! where `H = d^2E/dy^2` and `M = d(grad_y E)/dw`, both at `y*`. See [`Damping`].
//!
//! The main pieces:
//! * The energy, [`Energy`]: one sample's energy with its derivatives; [`AutoDiff`] derives them
//!   exactly from an energy written once over `num_dual::DualNum`; [`RbfMixture`] is the
//!   paper's family with analytic derivatives.
//! * The layer, [`ArgminLayer`]: forward (seeds, L-BFGS or trust-region Newton, damped Newton polish)
//!   and backward (vector-Jacobian product reusing the forward factorisation), each with a
//!   [`Report`] of diagnostics.
//! * [`least_squares`]: closed-form damped least squares and IRLS with exact derivatives.
//! * [`optim`]: SGD, ASGD and Adam; [`batch`]: deterministic parallel batches;
//!   [`gradcheck`]: finite-difference checks.
#![deny(missing_docs)]
// One function may use `unsafe`: `avx2::run_kernel`, which calls safe code compiled for AVX2
// after the CPU was found to have it (the results are the same bits). Its kernels: the n-D
// seed ranking (`rbf::RankPass`, 34 % of a fusion training epoch, half as long eight lanes to
// a register instead of four), the 1-D single-precision seed ranking (`rbf::Rank1dF32Pass`,
// 22 % fewer instructions for a narrow RANSAC sample's seed choice) and the block-arrow
// factorisation and solve (`damped::block_arrow`, 36 % fewer instructions for the pose
// model's factorisation). Nothing else.
#![deny(unsafe_code)]

pub mod autodiff;
mod avx2;
pub mod batch;
pub mod damped;
pub mod derivative;
pub mod energy;
pub mod error;
mod fastexp;
pub mod gradcheck;
pub mod layer;
pub mod least_squares;
pub mod minimize;
pub mod optim;
pub mod rbf;

pub use autodiff::{AutoDiff, DualEnergy, DualScalar};
pub use damped::{BlockArrow, BlockArrowFactor, DampedFactor, DampedSystem};
pub use derivative::{Damping, Diagnostics, LinearSolver};
pub use energy::Energy;
pub use error::WibergError;
pub use layer::{ArgminLayer, Backward, LinearSolve, Linearization, Solution, Start};
pub use minimize::{LbfgsConfig, Minimizer, NewtonConfig, Report, StopReason};
pub use rbf::RbfMixture;

/// Result type of the library.
pub type Result<T> = std::result::Result<T, WibergError>;
