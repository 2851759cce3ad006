//! Iteratively reweighted least squares (IRLS) for pseudo-Huber residuals, and the
//! trust-region derivative of the robust energy at the IRLS solution.
//!
//! The energy ([`RobustLeastSquares`]) is
//!
//! ```text
//! E(y) = sum_g c_g delta^2 (sqrt(1 + |r_g|^2 / delta^2) - 1) + 1/2 |A_q y - b_q|^2 + mu/2 |y|^2
//! ```
//!
//! with `r = A_r y - b_r` split into consecutive groups `r_g` of `k` rows (`k = 1`: plain
//! pseudo-Huber per row; `k = 2`: one 2-D camera-joint residual per group, as in the pose
//! model of Tome et al.), and an optional block of ordinary quadratic rows `A_q, b_q` (fold
//! any fixed row weight `c` into them as `sqrt(c)`). The group weights `c_g >= 0` are 1 unless
//! set ([`RobustLeastSquares::with_group_weights`]); as `delta` grows, `c_g` times the
//! pseudo-Huber term tends to the weighted square `c_g |r_g|^2 / 2`.
//!
//! **IRLS** starts from the unweighted solution and repeats
//! `y <- (A_q^T A_q + A_r^T W A_r + mu I)^-1 (A_q^T b_q + A_r^T W b_r)` with
//! `W = diag(c_g w_g)` on each group's rows, `w_g = (1 + |r_g|^2/delta^2)^-1/2`. Every step is a
//! majorise-minimise step of the convex `E`, so `E` never increases.
//!
//! **The derivative** is that of the robust energy, not of the IRLS iteration:
//! `dy*/dp = -(H + s I)^-1 d(grad_y E)/dp` with `H` the true Hessian
//! `A_q^T A_q + sum_g A_g^T G_g A_g + mu I`, `G_g = c_g (w_g I - (w_g^3/delta^2) r_g r_g^T)`
//! (positive semi-definite: eigenvalues `c_g w_g` and `c_g w_g^3`), and `s` the shift of the
//! [`Damping`].
//! Under `Implicit` at a converged solution it is the exact derivative of the minimiser.
//! Given `v = dl/dy*` and `u = (H + s I)^-1 v`, with `phi_g = c_g w_g r_g`:
//!
//! ```text
//! dl/dA_g = -(phi_g u^T + (G_g A_g u) y^T)     dl/db_g = G_g A_g u
//! dl/dA_q = -(r_q u^T + (A_q u) y^T)           dl/db_q = A_q u
//! dl/ddelta = -sum_g c_g (A_g u)^T r_g w_g^3 |r_g|^2 / delta^3
//! dl/dc_g = -(A_g u)^T r_g w_g
//! dl/dmu = -u^T y
//! ```

use super::StopReason;
use crate::damped::DampedSystem;
use crate::derivative::{Damping, Diagnostics};
use crate::energy::Energy;
use crate::error::{check_finite, check_len, WibergError};
use crate::Result;
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

/// A pseudo-Huber robust least-squares problem (see the [module documentation](self)).
///
/// ```
/// use nalgebra::{DMatrix, DVector};
/// use wiberg::least_squares::{IrlsConfig, RobustLeastSquares};
/// use wiberg::Damping;
/// // Robust mean of 1, 1.2, 0.8 and an outlier at 50 (A = column of ones).
/// let a = DMatrix::from_element(4, 1, 1.0);
/// let b = DVector::from_vec(vec![1.0, 1.2, 0.8, 50.0]);
/// let robust = RobustLeastSquares::new(a, b, 1, 0.5).unwrap();
/// let sol = robust.solve(&IrlsConfig::default(), Damping::Implicit).unwrap();
/// assert!(sol.report.converged && (sol.y[0] - 1.2).abs() < 0.01); // the plain mean is 13.25
/// // The outlier barely moves the estimate: dy*/db_outlier is small, the inliers share the rest.
/// let g = robust.backward(&sol, &DVector::from_vec(vec![1.0])).unwrap();
/// assert!(g.b_robust[3].abs() < 1e-3 && (g.b_robust.sum() - 1.0).abs() < 1e-9);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RobustLeastSquares {
    a_robust: DMatrix<f64>,
    b_robust: DVector<f64>,
    group_size: usize,
    a_quadratic: DMatrix<f64>,
    b_quadratic: DVector<f64>,
    delta: f64,
    mu: f64,
    /// `c_g`, one per group.
    group_weights: DVector<f64>,
}

/// When IRLS stops.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IrlsConfig {
    /// Maximum number of reweighted solves (after the unweighted start). A fixed number of
    /// iterations, as in the pose model (3), is `max_iters = 3` with both tolerances 0.
    pub max_iters: usize,
    /// Stop when `|grad_y E| <= grad_tol`.
    pub grad_tol: f64,
    /// Stop when a step `|dy| <= step_tol (1 + |y|)`.
    pub step_tol: f64,
}

impl Default for IrlsConfig {
    fn default() -> Self {
        IrlsConfig { max_iters: 200, grad_tol: 1e-10, step_tol: 1e-14 }
    }
}

/// What IRLS did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IrlsReport {
    /// Reweighted solves made (the unweighted start not counted).
    pub iterations: usize,
    /// Energy at the returned point.
    pub energy: f64,
    /// `|grad_y E|` at the returned point.
    pub grad_norm: f64,
    /// Whether a tolerance was met.
    pub converged: bool,
    /// Why it stopped.
    pub stop: StopReason,
}

/// The IRLS solution and the factorised `H + s I` its derivative reuses.
#[derive(Debug, Clone)]
pub struct RobustSolution {
    /// The minimiser found by IRLS.
    pub y: DVector<f64>,
    /// What IRLS did.
    pub report: IrlsReport,
    /// The damping of the derivative.
    pub damping: Damping,
    system: DampedSystem,
}

impl RobustSolution {
    /// Diagnostics of `H + s I` (true Hessian of the robust energy at `y`).
    pub fn diagnostics(&self) -> &Diagnostics {
        self.system.diagnostics()
    }
}

/// `dl/d(parameters)` of the IRLS solution, from `v = dl/dy*`.
#[derive(Debug, Clone, PartialEq)]
pub struct RobustGradient {
    /// `dl/dA_r` (m_r x n).
    pub a_robust: DMatrix<f64>,
    /// `dl/db_r` (m_r).
    pub b_robust: DVector<f64>,
    /// `dl/dA_q` (m_q x n).
    pub a_quadratic: DMatrix<f64>,
    /// `dl/db_q` (m_q).
    pub b_quadratic: DVector<f64>,
    /// `dl/ddelta`.
    pub delta: f64,
    /// `dl/dmu`.
    pub mu: f64,
    /// `dl/dc_g`, one per group (see [`RobustLeastSquares::with_group_weights`]).
    pub group_weights: DVector<f64>,
    /// `u = (H + s I)^-1 v`.
    pub u: DVector<f64>,
    /// Diagnostics of the damped system solved.
    pub diagnostics: Diagnostics,
}

impl RobustGradient {
    /// The gradient flattened in the parameter layout of [`RobustEnergy`]
    /// (`vec(A_r), b_r, vec(A_q), b_q, delta`, matrices column-major); `mu` is left out.
    pub fn to_flat(&self) -> Vec<f64> {
        flatten(&self.a_robust, &self.b_robust, &self.a_quadratic, &self.b_quadratic, self.delta)
    }
}

/// The parameter layout of [`RobustEnergy`].
fn flatten(a_r: &DMatrix<f64>, b_r: &DVector<f64>, a_q: &DMatrix<f64>, b_q: &DVector<f64>, delta: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(a_r.len() + b_r.len() + a_q.len() + b_q.len() + 1);
    out.extend_from_slice(a_r.as_slice());
    out.extend_from_slice(b_r.as_slice());
    out.extend_from_slice(a_q.as_slice());
    out.extend_from_slice(b_q.as_slice());
    out.push(delta);
    out
}

/// `u^T d(grad_y E)/dp` for every parameter block (the mixed product).
struct MixedProducts {
    a_robust: DMatrix<f64>,
    b_robust: DVector<f64>,
    a_quadratic: DMatrix<f64>,
    b_quadratic: DVector<f64>,
    delta: f64,
    group_weights: DVector<f64>,
}

impl RobustLeastSquares {
    /// Pseudo-Huber on groups of `group_size` consecutive rows of `A y - b`, scale `delta`,
    /// no quadratic rows, `mu = 0`.
    ///
    /// Errors: empty `A`, `b` of the wrong length, a row count not a multiple of
    /// `group_size`, `delta` not finite and > 0, NaN or infinity in `A` or `b`.
    pub fn new(a: DMatrix<f64>, b: DVector<f64>, group_size: usize, delta: f64) -> Result<Self> {
        let (m, n) = a.shape();
        if m == 0 || n == 0 {
            return Err(WibergError::InvalidArgument(format!(
                "robust least squares needs a non-empty A, got {m} x {n}"
            )));
        }
        if group_size == 0 || m % group_size != 0 {
            return Err(WibergError::InvalidArgument(format!(
                "{m} robust rows cannot be split into groups of {group_size}"
            )));
        }
        if !(delta.is_finite() && delta > 0.0) {
            return Err(WibergError::InvalidArgument(format!(
                "pseudo-Huber delta must be finite and > 0, got {delta}"
            )));
        }
        check_len(b.len(), m, "robust b (one entry per row of A)")?;
        check_finite(a.as_slice(), "robust A")?;
        check_finite(b.as_slice(), "robust b")?;
        Ok(RobustLeastSquares {
            a_robust: a,
            b_robust: b,
            group_size,
            a_quadratic: DMatrix::zeros(0, n),
            b_quadratic: DVector::zeros(0),
            delta,
            mu: 0.0,
            group_weights: DVector::from_element(m / group_size, 1.0),
        })
    }

    /// Weights the robust groups: `E` gets `c_g` times group `g`'s pseudo-Huber term (one
    /// finite `c_g >= 0` per group; all 1 by default).
    ///
    /// ```
    /// use nalgebra::{DMatrix, DVector};
    /// use wiberg::least_squares::{IrlsConfig, RobustLeastSquares};
    /// use wiberg::Damping;
    /// // A robust mean of 0 and 3 weighted 1 : 0 is 0.
    /// let robust = RobustLeastSquares::new(DMatrix::from_element(2, 1, 1.0), DVector::from_vec(vec![0.0, 3.0]), 1, 1.0)
    ///     .unwrap()
    ///     .with_group_weights(DVector::from_vec(vec![1.0, 0.0]))
    ///     .unwrap();
    /// let sol = robust.solve(&IrlsConfig::default(), Damping::Implicit).unwrap();
    /// assert!(sol.y[0].abs() < 1e-12);
    /// ```
    pub fn with_group_weights(mut self, c: DVector<f64>) -> Result<Self> {
        check_len(c.len(), self.group_weights.len(), "robust group weights (one per group)")?;
        check_finite(c.as_slice(), "robust group weights")?;
        if let Some(i) = c.iter().position(|&v| v < 0.0) {
            return Err(WibergError::InvalidArgument(format!("robust group weight {i} is negative ({})", c[i])));
        }
        self.group_weights = c;
        Ok(self)
    }

    /// The group weights `c_g`.
    pub fn group_weights(&self) -> &DVector<f64> {
        &self.group_weights
    }

    /// Adds ordinary quadratic rows `1/2 |A_q y - b_q|^2` (same number of columns as `A_r`).
    pub fn with_quadratic(mut self, a: DMatrix<f64>, b: DVector<f64>) -> Result<Self> {
        check_len(a.ncols(), self.a_robust.ncols(), "columns of the quadratic A")?;
        check_len(b.len(), a.nrows(), "quadratic b (one entry per row of A_q)")?;
        check_finite(a.as_slice(), "quadratic A")?;
        check_finite(b.as_slice(), "quadratic b")?;
        self.a_quadratic = a;
        self.b_quadratic = b;
        Ok(self)
    }

    /// Sets the damping `mu >= 0` of the energy (`mu/2 |y|^2`).
    pub fn with_mu(mut self, mu: f64) -> Result<Self> {
        if !(mu.is_finite() && mu >= 0.0) {
            return Err(WibergError::InvalidArgument(format!("robust mu must be finite and >= 0, got {mu}")));
        }
        self.mu = mu;
        Ok(self)
    }

    /// Number of unknowns `n`.
    pub fn dim(&self) -> usize {
        self.a_robust.ncols()
    }

    /// The pseudo-Huber scale `delta`.
    pub fn delta(&self) -> f64 {
        self.delta
    }

    /// Rows per robust group.
    pub fn group_size(&self) -> usize {
        self.group_size
    }

    /// The robust energy `E(y)`.
    pub fn energy(&self, y: &DVector<f64>) -> Result<f64> {
        check_len(y.len(), self.dim(), "robust y")?;
        Ok(self.value(y))
    }

    /// The gradient `grad_y E(y)`.
    pub fn gradient(&self, y: &DVector<f64>) -> Result<DVector<f64>> {
        check_len(y.len(), self.dim(), "robust y")?;
        Ok(self.grad(y).1)
    }

    /// The true Hessian `d^2 E / dy^2` (not the IRLS normal matrix).
    pub fn hessian(&self, y: &DVector<f64>) -> Result<DMatrix<f64>> {
        check_len(y.len(), self.dim(), "robust y")?;
        Ok(self.hess(y))
    }

    /// The parameters of [`RobustEnergy`] for this problem, and that energy.
    pub fn to_energy(&self) -> (RobustEnergy, Vec<f64>) {
        let energy = RobustEnergy {
            n: self.dim(),
            m_robust: self.a_robust.nrows(),
            group_size: self.group_size,
            m_quadratic: self.a_quadratic.nrows(),
            mu: self.mu,
            group_weights: self.group_weights.clone(),
        };
        let w = flatten(&self.a_robust, &self.b_robust, &self.a_quadratic, &self.b_quadratic, self.delta);
        (energy, w)
    }

    fn residual_robust(&self, y: &DVector<f64>) -> DVector<f64> {
        &self.a_robust * y - &self.b_robust
    }

    fn residual_quadratic(&self, y: &DVector<f64>) -> DVector<f64> {
        &self.a_quadratic * y - &self.b_quadratic
    }

    /// IRLS weight of every group, `(1 + |r_g|^2/delta^2)^-1/2`, and `|r_g|^2`.
    fn irls_weights(&self, r: &DVector<f64>) -> (Vec<f64>, Vec<f64>) {
        let d2 = self.delta * self.delta;
        r.as_slice()
            .chunks_exact(self.group_size)
            .map(|g| {
                let s: f64 = g.iter().map(|x| x * x).sum();
                (1.0 / (1.0 + s / d2).sqrt(), s)
            })
            .unzip()
    }

    fn value(&self, y: &DVector<f64>) -> f64 {
        let d2 = self.delta * self.delta;
        let r = self.residual_robust(y);
        let robust: f64 = r
            .as_slice()
            .chunks_exact(self.group_size)
            .zip(self.group_weights.iter())
            .map(|(g, c)| {
                let s: f64 = g.iter().map(|x| x * x).sum();
                // delta^2 (sqrt(1 + t) - 1) = delta^2 t / (sqrt(1 + t) + 1): no cancellation.
                let t = s / d2;
                c * d2 * t / ((1.0 + t).sqrt() + 1.0)
            })
            .sum();
        robust + 0.5 * self.residual_quadratic(y).norm_squared() + 0.5 * self.mu * y.norm_squared()
    }

    /// Energy and gradient.
    fn grad(&self, y: &DVector<f64>) -> (f64, DVector<f64>) {
        let r = self.residual_robust(y);
        let (w, _) = self.irls_weights(&r);
        let mut phi = r.clone();
        for ((g, wg), c) in phi.as_mut_slice().chunks_exact_mut(self.group_size).zip(&w).zip(self.group_weights.iter())
        {
            g.iter_mut().for_each(|x| *x *= c * wg);
        }
        let rq = self.residual_quadratic(y);
        let g = self.a_robust.tr_mul(&phi) + self.a_quadratic.tr_mul(&rq) + y * self.mu;
        (self.value(y), g)
    }

    /// `G_g M_g` for every group, stacked: `G_g = c_g (w_g I - (w_g^3/delta^2) r_g r_g^T)`.
    fn apply_g(&self, r: &DVector<f64>, w: &[f64], m: &DMatrix<f64>) -> DMatrix<f64> {
        let k = self.group_size;
        let d2 = self.delta * self.delta;
        let mut out = DMatrix::zeros(m.nrows(), m.ncols());
        for (gi, &wg) in w.iter().enumerate() {
            let rg = r.rows(gi * k, k);
            let mg = m.rows(gi * k, k);
            let rtm = rg.transpose() * mg; // 1 x cols
            let cg = self.group_weights[gi];
            let c = cg * wg * wg * wg / d2;
            let block = mg * (cg * wg) - (rg * rtm) * c;
            out.rows_mut(gi * k, k).copy_from(&block);
        }
        out
    }

    fn hess(&self, y: &DVector<f64>) -> DMatrix<f64> {
        let n = self.dim();
        let r = self.residual_robust(y);
        let (w, _) = self.irls_weights(&r);
        let ga = self.apply_g(&r, &w, &self.a_robust);
        let mut h = self.a_robust.tr_mul(&ga) + self.a_quadratic.tr_mul(&self.a_quadratic);
        for i in 0..n {
            h[(i, i)] += self.mu;
        }
        h
    }

    /// `u^T d(grad_y E)/dp` for every parameter block at `y`.
    fn mixed(&self, y: &DVector<f64>, u: &DVector<f64>) -> MixedProducts {
        let k = self.group_size;
        let d2 = self.delta * self.delta;
        let r = self.residual_robust(y);
        let (w, s) = self.irls_weights(&r);
        let mut phi = r.clone();
        for ((g, wg), c) in phi.as_mut_slice().chunks_exact_mut(k).zip(&w).zip(self.group_weights.iter()) {
            g.iter_mut().for_each(|x| *x *= c * wg);
        }
        let au = &self.a_robust * u;
        let au_m = DMatrix::from_column_slice(au.len(), 1, au.as_slice());
        let gau = DVector::from_column_slice(self.apply_g(&r, &w, &au_m).as_slice());
        let a_robust = &phi * u.transpose() + &gau * y.transpose();
        let b_robust = -&gau;
        let rq = self.residual_quadratic(y);
        let aqu = &self.a_quadratic * u;
        let a_quadratic = &rq * u.transpose() + &aqu * y.transpose();
        let b_quadratic = -aqu;
        let delta: f64 = (0..w.len())
            .map(|gi| {
                let dot = au.rows(gi * k, k).dot(&r.rows(gi * k, k));
                self.group_weights[gi] * dot * w[gi].powi(3) * s[gi] / (d2 * self.delta)
            })
            .sum();
        let group_weights = DVector::from_fn(w.len(), |gi, _| au.rows(gi * k, k).dot(&r.rows(gi * k, k)) * w[gi]);
        MixedProducts { a_robust, b_robust, a_quadratic, b_quadratic, delta, group_weights }
    }

    /// Solves by IRLS and factorises the damped true Hessian `H + s I` at the result for the
    /// derivative (`damping` concerns the derivative only).
    ///
    /// Errors: an invalid configuration or damping; [`WibergError::SingularHessian`] when a
    /// weighted normal matrix or `H + s I` is singular (possible only with `mu = 0`).
    pub fn solve(&self, config: &IrlsConfig, damping: Damping) -> Result<RobustSolution> {
        damping.validate()?;
        if !(config.grad_tol >= 0.0 && config.step_tol >= 0.0) {
            return Err(WibergError::InvalidArgument(format!(
                "IRLS tolerances must be >= 0, got grad_tol {} and step_tol {}",
                config.grad_tol, config.step_tol
            )));
        }
        let mut y = self.weighted_solve(self.group_weights.as_slice())?;
        let mut stop = StopReason::MaxIterations;
        let mut iterations = 0;
        let (mut energy, mut g) = self.grad(&y);
        while iterations < config.max_iters {
            if g.norm() <= config.grad_tol {
                stop = StopReason::GradientTolerance;
                break;
            }
            let (w, _) = self.irls_weights(&self.residual_robust(&y));
            let cw: Vec<f64> = w.iter().zip(self.group_weights.iter()).map(|(w, c)| w * c).collect();
            let y_new = self.weighted_solve(&cw)?;
            iterations += 1;
            let step = (&y_new - &y).norm();
            y = y_new;
            (energy, g) = self.grad(&y);
            if step <= config.step_tol * (1.0 + y.norm()) {
                stop = StopReason::NoProgress;
                break;
            }
        }
        if stop == StopReason::MaxIterations && g.norm() <= config.grad_tol {
            stop = StopReason::GradientTolerance;
        }
        check_finite(y.as_slice(), "IRLS solution")?;
        check_finite(&[energy, g.norm()], "IRLS energy and gradient at the solution (overflow)")?;
        let system = DampedSystem::factorize(self.hess(&y), damping)?;
        let report = IrlsReport { iterations, energy, grad_norm: g.norm(), converged: stop.is_converged(), stop };
        Ok(RobustSolution { y, report, damping, system })
    }

    /// `(A_q^T A_q + A_r^T W A_r + mu I)^-1 (A_q^T b_q + A_r^T W b_r)` with group weights `w`.
    fn weighted_solve(&self, w: &[f64]) -> Result<DVector<f64>> {
        let n = self.dim();
        let k = self.group_size;
        let mut wa = self.a_robust.clone();
        let mut wb = self.b_robust.clone();
        for (gi, &wg) in w.iter().enumerate() {
            wa.rows_mut(gi * k, k).scale_mut(wg);
            wb.rows_mut(gi * k, k).scale_mut(wg);
        }
        let mut h = self.a_robust.tr_mul(&wa) + self.a_quadratic.tr_mul(&self.a_quadratic);
        for i in 0..n {
            h[(i, i)] += self.mu;
        }
        let rhs = self.a_robust.tr_mul(&wb) + self.a_quadratic.tr_mul(&self.b_quadratic);
        let scale = h.diagonal().amax();
        let singular = || WibergError::SingularHessian { min_abs_eigenvalue: 0.0, damping: self.mu };
        let ch = h.cholesky().ok_or_else(singular)?;
        // A pivot this small relative to the largest diagonal entry means a numerically
        // singular normal matrix: refuse rather than return a huge, meaningless y.
        let dmin = ch.l_dirty().diagonal().min();
        if dmin.is_nan() || dmin * dmin <= (n as f64) * f64::EPSILON * scale {
            return Err(WibergError::SingularHessian { min_abs_eigenvalue: dmin * dmin, damping: self.mu });
        }
        let y = ch.solve(&rhs);
        check_finite(y.as_slice(), "IRLS step")?;
        Ok(y)
    }

    /// Vector-Jacobian product from `v = dl/dy*`: the trust-region derivative of the robust
    /// energy at `sol.y` (formulas in the [module documentation](self)).
    pub fn backward(&self, sol: &RobustSolution, v: &DVector<f64>) -> Result<RobustGradient> {
        let n = self.dim();
        check_len(v.len(), n, "dl/dy*")?;
        check_len(sol.y.len(), n, "robust solution (from another problem?)")?;
        check_finite(v.as_slice(), "dl/dy*")?;
        let u = DVector::from_vec(sol.system.solve(v.as_slice())?);
        let mp = self.mixed(&sol.y, &u);
        let grad = RobustGradient {
            a_robust: -mp.a_robust,
            b_robust: -mp.b_robust,
            a_quadratic: -mp.a_quadratic,
            b_quadratic: -mp.b_quadratic,
            delta: -mp.delta,
            mu: -u.dot(&sol.y),
            group_weights: -mp.group_weights,
            u,
            diagnostics: *sol.diagnostics(),
        };
        check_finite(&grad.to_flat(), "dl/d(A_r, b_r, A_q, b_q, delta)")?;
        check_finite(&[grad.mu], "dl/dmu")?;
        check_finite(grad.group_weights.as_slice(), "dl/d(group weights)")?;
        Ok(grad)
    }
}

/// The robust energy as an [`Energy`], for [`crate::ArgminLayer`] and gradient checks (the
/// group weights are fixed data, not parameters):
/// `y` the unknowns, parameters
/// `w = (vec(A_r), b_r, vec(A_q), b_q, delta)` with the matrices column-major (nalgebra's
/// layout), `p = (n + 1)(m_r + m_q) + 1`. Built by [`RobustLeastSquares::to_energy`].
///
/// A `delta <= 0` in `w` gives a NaN energy (the layer refuses it).
///
/// ```
/// use nalgebra::{DMatrix, DVector};
/// use wiberg::{least_squares::RobustLeastSquares, Energy};
/// let robust = RobustLeastSquares::new(DMatrix::from_element(2, 1, 1.0), DVector::from_vec(vec![0.0, 2.0]), 1, 1.0)
///     .unwrap();
/// let (e, w) = robust.to_energy();
/// assert_eq!(e.num_params(), 2 + 2 + 1);
/// let mut g = [0.0];
/// e.gradient(&[1.0], &w, &mut g); // symmetric about 1
/// assert!(g[0].abs() < 1e-15);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RobustEnergy {
    n: usize,
    m_robust: usize,
    group_size: usize,
    m_quadratic: usize,
    mu: f64,
    group_weights: DVector<f64>,
}

impl RobustEnergy {
    /// Rebuilds the problem from `w` (no validation: this is the checking path).
    fn problem(&self, w: &[f64]) -> RobustLeastSquares {
        let (n, mr, mq) = (self.n, self.m_robust, self.m_quadratic);
        let mut at = 0;
        let mut take = |len: usize| {
            let s = &w[at..at + len];
            at += len;
            s
        };
        let a_robust = DMatrix::from_column_slice(mr, n, take(mr * n));
        let b_robust = DVector::from_column_slice(take(mr));
        let a_quadratic = DMatrix::from_column_slice(mq, n, take(mq * n));
        let b_quadratic = DVector::from_column_slice(take(mq));
        let delta = take(1)[0];
        RobustLeastSquares {
            a_robust,
            b_robust,
            group_size: self.group_size,
            a_quadratic,
            b_quadratic,
            delta: if delta > 0.0 { delta } else { f64::NAN },
            mu: self.mu,
            group_weights: self.group_weights.clone(),
        }
    }
}

impl Energy for RobustEnergy {
    fn dim(&self) -> usize {
        self.n
    }
    fn num_params(&self) -> usize {
        (self.n + 1) * (self.m_robust + self.m_quadratic) + 1
    }
    fn value(&self, y: &[f64], w: &[f64]) -> f64 {
        self.problem(w).value(&DVector::from_column_slice(y))
    }
    fn gradient(&self, y: &[f64], w: &[f64], g: &mut [f64]) -> f64 {
        let (e, grad) = self.problem(w).grad(&DVector::from_column_slice(y));
        g.copy_from_slice(grad.as_slice());
        e
    }
    fn hessian(&self, y: &[f64], w: &[f64], h: &mut DMatrix<f64>) {
        h.copy_from(&self.problem(w).hess(&DVector::from_column_slice(y)));
    }
    fn mixed_vjp(&self, y: &[f64], w: &[f64], u: &[f64], out: &mut [f64]) {
        let mp = self.problem(w).mixed(&DVector::from_column_slice(y), &DVector::from_column_slice(u));
        let flat = flatten(&mp.a_robust, &mp.b_robust, &mp.a_quadratic, &mp.b_quadratic, mp.delta);
        out.copy_from_slice(&flat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem() -> RobustLeastSquares {
        // Three 2-D groups and two quadratic rows, 2 unknowns.
        let a = DMatrix::from_row_slice(6, 2, &[1.0, 0.2, 0.1, 1.0, 0.9, -0.3, 0.4, 1.1, 1.2, 0.5, -0.2, 0.8]);
        let b = DVector::from_vec(vec![0.5, -0.4, 3.0, 2.5, 0.2, 0.1]);
        let aq = DMatrix::from_row_slice(1, 2, &[0.3, -0.7]);
        RobustLeastSquares::new(a, b, 2, 0.8)
            .unwrap()
            .with_quadratic(aq, DVector::from_vec(vec![0.2]))
            .unwrap()
            .with_mu(0.05)
            .unwrap()
    }

    #[test]
    fn gradient_and_hessian_match_finite_differences() {
        let p = problem();
        let y = DVector::from_vec(vec![0.3, -0.6]);
        let g = p.gradient(&y).unwrap();
        let h = p.hessian(&y).unwrap();
        let eps = 1e-6;
        for j in 0..2 {
            let mut yp = y.clone();
            let mut ym = y.clone();
            yp[j] += eps;
            ym[j] -= eps;
            let fd = (p.value(&yp) - p.value(&ym)) / (2.0 * eps);
            assert!((fd - g[j]).abs() < 1e-8, "grad {j}: {fd} vs {}", g[j]);
            let fdg = (p.grad(&yp).1 - p.grad(&ym).1) / (2.0 * eps);
            for i in 0..2 {
                assert!((fdg[i] - h[(i, j)]).abs() < 1e-7, "hess {i},{j}");
            }
        }
    }

    #[test]
    fn irls_decreases_energy_and_converges() {
        let p = problem();
        let fixed = IrlsConfig { max_iters: 1, grad_tol: 0.0, step_tol: 0.0 };
        let one = p.solve(&fixed, Damping::Implicit).unwrap();
        assert_eq!((one.report.iterations, one.report.stop), (1, StopReason::MaxIterations));
        let full = p.solve(&IrlsConfig::default(), Damping::Implicit).unwrap();
        assert!(full.report.converged, "{:?}", full.report);
        assert!(full.report.energy <= one.report.energy);
        assert!(full.report.grad_norm <= 1e-10);
        assert!(full.diagnostics().min_eigenvalue > 0.0);
    }

    #[test]
    fn group_weight_derivatives_match_finite_differences_of_the_solution() {
        let c = DVector::from_vec(vec![1.5, 0.4, 2.0]);
        let p = problem().with_group_weights(c.clone()).unwrap();
        let cfg = IrlsConfig { max_iters: 500, grad_tol: 1e-13, step_tol: 0.0 };
        let sol = p.solve(&cfg, Damping::Implicit).unwrap();
        assert!(sol.report.converged, "{:?}", sol.report);
        let v = DVector::from_vec(vec![0.8, -1.3]);
        let g = p.backward(&sol, &v).unwrap();
        let h = 1e-6;
        let loss = |c: DVector<f64>| {
            let q = problem().with_group_weights(c).unwrap();
            q.solve(&cfg, Damping::Implicit).unwrap().y.dot(&v)
        };
        for j in 0..3 {
            let (mut cp, mut cm) = (c.clone(), c.clone());
            cp[j] += h;
            cm[j] -= h;
            let fd = (loss(cp) - loss(cm)) / (2.0 * h);
            assert!((g.group_weights[j] - fd).abs() < 1e-6 * (1.0 + fd.abs()), "c{j}: {} vs {fd}", g.group_weights[j]);
        }
        // The weighted energy's other derivatives too (b and delta), through the same solve.
        let loss_b = |db: f64, dd: f64| {
            let a = p.a_robust.clone();
            let mut b = p.b_robust.clone();
            b[3] += db;
            let q = RobustLeastSquares::new(a, b, 2, 0.8 + dd)
                .unwrap()
                .with_quadratic(p.a_quadratic.clone(), p.b_quadratic.clone())
                .unwrap()
                .with_mu(0.05)
                .unwrap()
                .with_group_weights(c.clone())
                .unwrap();
            q.solve(&cfg, Damping::Implicit).unwrap().y.dot(&v)
        };
        let fd_b = (loss_b(h, 0.0) - loss_b(-h, 0.0)) / (2.0 * h);
        let fd_d = (loss_b(0.0, h) - loss_b(0.0, -h)) / (2.0 * h);
        assert!((g.b_robust[3] - fd_b).abs() < 1e-6 * (1.0 + fd_b.abs()), "{} vs {fd_b}", g.b_robust[3]);
        assert!((g.delta - fd_d).abs() < 1e-6 * (1.0 + fd_d.abs()), "{} vs {fd_d}", g.delta);
        // Bad weights are errors.
        assert!(problem().with_group_weights(DVector::from_vec(vec![1.0, -1.0, 1.0])).is_err());
        assert!(problem().with_group_weights(DVector::from_vec(vec![1.0, 1.0])).is_err());
    }

    #[test]
    fn invalid_problems_are_errors() {
        let a = DMatrix::from_element(3, 1, 1.0);
        let b = DVector::from_vec(vec![0.0, 1.0, 2.0]);
        assert!(RobustLeastSquares::new(a.clone(), b.clone(), 2, 1.0).is_err());
        assert!(RobustLeastSquares::new(a.clone(), b.clone(), 1, 0.0).is_err());
        assert!(RobustLeastSquares::new(a.clone(), b.clone(), 1, f64::NAN).is_err());
        let ok = RobustLeastSquares::new(a, b, 1, 1.0).unwrap();
        assert!(ok.clone().with_quadratic(DMatrix::zeros(1, 2), DVector::zeros(1)).is_err());
        assert!(ok.with_mu(-1.0).is_err());
        let zero = RobustLeastSquares::new(DMatrix::zeros(2, 2), DVector::zeros(2), 1, 1.0).unwrap();
        assert!(matches!(
            zero.solve(&IrlsConfig::default(), Damping::Implicit),
            Err(WibergError::SingularHessian { .. })
        ));
    }
}
