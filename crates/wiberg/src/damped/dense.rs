//! The dense damped solve: `H + s I` factorised by Cholesky (LU when the damped matrix is
//! indefinite), with exact eigenvalue diagnostics up to [`EXACT_EIGEN_MAX_DIM`] unknowns and
//! estimates beyond.

use crate::damped::HessianSolve;
use crate::derivative::{Damping, Diagnostics, LinearSolver};
use crate::energy::Energy;
use crate::error::WibergError;
use crate::Result;
use nalgebra::{DMatrix, DVector, DVectorViewMut};
use serde::{Deserialize, Serialize};

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
        // |A|_1 of the damped (symmetric) matrix, for the condition estimate when not exact.
        let norm1 =
            if exact { f64::NAN } else { h.column_iter().map(|c| c.iter().map(|v| v.abs()).sum()).fold(0.0, f64::max) };
        let singular = |min_abs: f64, max_abs: f64| min_abs == 0.0 || min_abs <= singular_tolerance(n) * max_abs;
        let (factor, solver, condition) = match h.clone().cholesky() {
            Some(ch) => {
                let d = ch.l_dirty().diagonal();
                let (dmin, dmax) = (d.min(), d.max());
                let cond = if exact {
                    (max_eig + shift) / (min_eig + shift)
                } else {
                    norm1 * inverse_norm1_estimate(n, |x| Some(ch.solve(x)))
                };
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
                let cond = if exact { max_abs / min_abs } else { norm1 * inverse_norm1_estimate(n, |x| lu.solve(x)) };
                (Factor::Lu(lu), LinearSolver::Lu, cond)
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
        let mut x = v.to_vec();
        self.solve_in_place(&mut x)?;
        Ok(x)
    }

    /// Overwrites `v` with `(H + s I)^-1 v` (no allocation). On error `v` is unspecified.
    ///
    /// Errors: `v` of the wrong length or not finite; [`WibergError::SingularHessian`] when
    /// the result is not finite.
    pub fn solve_in_place(&self, v: &mut [f64]) -> Result<()> {
        crate::error::check_len(v.len(), self.dim(), "right-hand side of the damped solve")?;
        crate::error::check_finite(v, "right-hand side of the damped solve")?;
        let n = v.len();
        let solved = match &self.factor {
            Factor::Scalar(a) => {
                v[0] /= a;
                true
            }
            Factor::Cholesky(c) => {
                c.solve_mut(&mut DVectorViewMut::from_slice(v, n));
                true
            }
            Factor::Lu(l) => l.solve_mut(&mut DVectorViewMut::from_slice(v, n)),
        };
        if solved && v.iter().all(|e| e.is_finite()) {
            Ok(())
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

/// The dense strategy for the layer: the energy's Hessian as an `n x n` matrix
/// ([`Energy::hessian`]), factorised by [`DampedSystem`] (Cholesky, LU when the damped matrix
/// is indefinite). For any energy with small or moderate `n` (the cost is `O(n^3)` per
/// factorisation and `O(n^2)` memory); exact eigenvalue diagnostics for `n <= 64`.
///
/// `Guarded`: the shift uses the exact smallest eigenvalue of `H` (for `n > 64` too, paid for
/// only when `H` is not positive definite), so `H + s I >= lambda I` holds.
///
/// ```
/// use wiberg::damped::DenseSolve;
/// use wiberg::{ArgminLayer, Damping, RbfMixture, Start};
/// let points = vec![-0.2, 0.1, 0.3, 10.0];
/// let e = RbfMixture::shared_width(1, points.clone()).unwrap();
/// let layer = ArgminLayer::with_damping(Damping::Implicit).with_linear_solve(DenseSolve);
/// let sol = layer.forward(&e, &[1.0], Start::Seeds(&points)).unwrap();
/// let back = layer.backward(&e, &[1.0], &sol, &[1.0]).unwrap();
/// assert!(back.grad_w[0].is_finite());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DenseSolve;

impl<E: Energy + ?Sized> HessianSolve<E> for DenseSolve {
    type Factor = DampedSystem;

    fn factorize(&self, e: &E, y: &[f64], w: &[f64], damping: Damping) -> Result<DampedSystem> {
        let n = y.len();
        let mut h = DMatrix::zeros(n, n);
        e.hessian(y, w, &mut h);
        DampedSystem::factorize(h, damping)
    }

    fn factorize_with_gradient(
        &self,
        e: &E,
        y: &[f64],
        w: &[f64],
        damping: Damping,
        g: &mut [f64],
    ) -> (f64, Result<DampedSystem>) {
        let n = y.len();
        let mut h = DMatrix::zeros(n, n);
        let value = e.gradient_hessian(y, w, g, &mut h);
        (value, DampedSystem::factorize(h, damping))
    }
}

/// Estimate of `|A^-1|_1` for a symmetric `A` (so `A^-T = A^-1`) given a solver for `A`:
/// Hager (1984) with Higham's (1988) refinements (at most 5 iterations of two solves, stop
/// when the estimate stops growing or the same unit vector recurs, and the extra test vector
/// `b_i = (-1)^i (1 + i / (n - 1))`). A lower bound of `|A^-1|_1`, in practice within a factor
/// of 3. A failed or non-finite solve gives infinity (the caller then refuses the system).
fn inverse_norm1_estimate(n: usize, solve: impl Fn(&DVector<f64>) -> Option<DVector<f64>>) -> f64 {
    let solve_finite = |x: &DVector<f64>| solve(x).filter(|y| y.iter().all(|v| v.is_finite()));
    let norm1 = |y: &DVector<f64>| y.iter().map(|v| v.abs()).sum::<f64>();
    let mut x = DVector::from_element(n, 1.0 / n as f64);
    let mut est = 0.0;
    let mut last_j = None;
    for iter in 0..5 {
        let Some(y) = solve_finite(&x) else { return f64::INFINITY };
        let new_est = norm1(&y);
        if iter > 0 && new_est <= est {
            break;
        }
        est = new_est;
        let signs = y.map(|v| if v >= 0.0 { 1.0 } else { -1.0 });
        let Some(z) = solve_finite(&signs) else { return f64::INFINITY };
        let (j, zmax) =
            z.iter().enumerate().fold((0, -1.0), |(bj, bv), (i, v)| if v.abs() > bv { (i, v.abs()) } else { (bj, bv) });
        if iter > 0 && (zmax <= z.dot(&x) || last_j == Some(j)) {
            break;
        }
        x = DVector::zeros(n);
        x[j] = 1.0;
        last_j = Some(j);
    }
    let denom = (n.max(2) - 1) as f64;
    let b = DVector::from_fn(n, |i, _| if i % 2 == 0 { 1.0 } else { -1.0 } * (1.0 + i as f64 / denom));
    let Some(alt) = solve_finite(&b) else { return f64::INFINITY };
    est.max(2.0 * norm1(&alt) / (3.0 * n as f64))
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

    /// `Q diag(eigs) Q^T` with a random orthogonal `Q` (QR of a seeded random matrix).
    fn symmetric_with_eigenvalues(eigs: &[f64], seed: u64) -> DMatrix<f64> {
        let n = eigs.len();
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let q = DMatrix::from_fn(n, n, |_, _| next()).qr().q();
        &q * DMatrix::from_diagonal(&DVector::from_column_slice(eigs)) * q.transpose()
    }

    fn svd_condition(a: &DMatrix<f64>) -> f64 {
        let s = a.clone().svd(false, false).singular_values;
        s.max() / s.min()
    }

    #[test]
    fn large_condition_estimate_matches_svd_within_factor_10() {
        let n = 100;
        // 1-D Laplacian tridiag(-1, 2, -1): condition about 4 n^2 / pi^2, but every Cholesky
        // pivot lies in [1, sqrt 2] (the old pivot-ratio estimate said 2).
        let lap = DMatrix::from_fn(n, n, |i, j| {
            if i == j {
                2.0
            } else if i.abs_diff(j) == 1 {
                -1.0
            } else {
                0.0
            }
        });
        // Eigenvalues log-spaced over 8 decades: positive definite (Cholesky), and with
        // alternating signs (indefinite: LU under Implicit).
        let spd: Vec<f64> = (0..n).map(|i| 10f64.powf(-8.0 * i as f64 / (n - 1) as f64)).collect();
        let mixed: Vec<f64> = spd.iter().enumerate().map(|(i, e)| if i % 2 == 0 { *e } else { -e }).collect();
        let cases = [
            (lap, LinearSolver::Cholesky),
            (symmetric_with_eigenvalues(&spd, 7), LinearSolver::Cholesky),
            (symmetric_with_eigenvalues(&mixed, 8), LinearSolver::Lu),
        ];
        for (a, solver) in cases {
            let truth = svd_condition(&a);
            let sys = DampedSystem::factorize(a, Damping::Implicit).unwrap();
            let d = sys.diagnostics();
            assert_eq!(d.solver, solver);
            assert!(!d.eigen_exact);
            let ratio = d.condition / truth;
            assert!((0.1..=10.0).contains(&ratio), "{solver:?}: estimate {} vs SVD {truth}", d.condition);
        }
        // A trust-region shift is part of the solved matrix: the condition drops accordingly.
        let a = symmetric_with_eigenvalues(&spd, 9);
        let mut shifted = a.clone();
        for i in 0..n {
            shifted[(i, i)] += 1e-3;
        }
        let sys = DampedSystem::factorize(a, Damping::TrustRegion { lambda: 1e-3 }).unwrap();
        let ratio = sys.diagnostics().condition / svd_condition(&shifted);
        assert!((0.1..=10.0).contains(&ratio), "shifted: ratio {ratio}");
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
