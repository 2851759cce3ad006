//! The [`Energy`] trait: one sample's energy `E(y; w)` and the derivatives the layer needs.

use nalgebra::DMatrix;

/// The energy of one sample, `E(y; w)`, with `y` the `n` unknowns and `w` the `p` parameters.
///
/// The implementor owns or borrows the sample's data. Required are the value, the gradient in
/// `y`, the Hessian in `y` and the mixed product
/// `mixed_vjp(y, w, u) = d/dw <grad_y E(y; w), u>` (length `p`), which must be computed
/// without forming the `n x p` matrix `M = d(grad_y E)/dw`: that is what keeps the backward
/// pass linear in `p`.
///
/// Energies written once over `num_dual::DualNum` get all of this from
/// [`crate::AutoDiff`]; [`crate::RbfMixture`] implements it analytically.
///
/// ```
/// use wiberg::Energy;
/// use nalgebra::DMatrix;
/// /// E(y; w) = (y - w)^2 / 2: y* = w, dy*/dw = 1.
/// struct Pull;
/// impl Energy for Pull {
///     fn dim(&self) -> usize { 1 }
///     fn num_params(&self) -> usize { 1 }
///     fn value(&self, y: &[f64], w: &[f64]) -> f64 { 0.5 * (y[0] - w[0]).powi(2) }
///     fn gradient(&self, y: &[f64], w: &[f64], g: &mut [f64]) -> f64 {
///         g[0] = y[0] - w[0];
///         self.value(y, w)
///     }
///     fn hessian(&self, _y: &[f64], _w: &[f64], h: &mut DMatrix<f64>) { h[(0, 0)] = 1.0; }
///     fn mixed_vjp(&self, _y: &[f64], _w: &[f64], u: &[f64], out: &mut [f64]) { out[0] = -u[0]; }
/// }
/// let mut h = DMatrix::zeros(1, 1);
/// Pull.hessian(&[0.0], &[2.0], &mut h);
/// assert_eq!(h[(0, 0)], 1.0);
/// ```
pub trait Energy {
    /// Number of unknowns `n`.
    fn dim(&self) -> usize;
    /// Number of parameters `p`.
    fn num_params(&self) -> usize;
    /// `E(y; w)`.
    fn value(&self, y: &[f64], w: &[f64]) -> f64;
    /// Writes `grad_y E(y; w)` into `g` (length `n`) and returns `E(y; w)`.
    fn gradient(&self, y: &[f64], w: &[f64], g: &mut [f64]) -> f64;
    /// Writes the Hessian `d^2 E / dy^2` (n x n, symmetric) into `h`.
    fn hessian(&self, y: &[f64], w: &[f64], h: &mut DMatrix<f64>);
    /// Writes the mixed product `d/dw <grad_y E(y; w), u>` (length `p`) into `out`.
    fn mixed_vjp(&self, y: &[f64], w: &[f64], u: &[f64], out: &mut [f64]);

    /// `E(y; w)`, with `grad_y E` written into `g` and the Hessian into `h`: what
    /// [`Energy::gradient`] and [`Energy::hessian`] give, bit for bit. The forward pass needs
    /// both at the returned point; energies that can share the work override it (the RANSAC
    /// energy, [`crate::RbfMixture`] in 1-D with one width, takes one pass over its kernels).
    fn gradient_hessian(&self, y: &[f64], w: &[f64], g: &mut [f64], h: &mut DMatrix<f64>) -> f64 {
        let value = self.gradient(y, w, g);
        self.hessian(y, w, h);
        value
    }

    /// Hessian-vector product `H v` into `out`. The default forms the Hessian; energies with
    /// large `n` should override it (the matrix-free conjugate-gradient path relies on it).
    fn hvp(&self, y: &[f64], w: &[f64], v: &[f64], out: &mut [f64]) {
        let n = self.dim();
        let mut h = DMatrix::zeros(n, n);
        self.hessian(y, w, &mut h);
        for (i, o) in out.iter_mut().enumerate().take(n) {
            *o = (0..n).map(|j| h[(i, j)] * v[j]).sum();
        }
    }

    /// Energies at `m` points stored consecutively in `points` (length `m n`), into `out`
    /// (length `m`). Used by the seed scan; energies with structure (for example a kernel
    /// sum whose centres are the seeds) override it with something faster.
    fn values_at(&self, points: &[f64], w: &[f64], out: &mut [f64]) {
        let n = self.dim().max(1);
        for (o, y) in out.iter_mut().zip(points.chunks_exact(n)) {
            *o = self.value(y, w);
        }
    }

    /// Index and value of the lowest finite entry of [`Energy::values_at`] (ties: the first),
    /// `None` when no value is finite. Energies that can rule seeds out without evaluating
    /// them (bounds) override it; the override must return exactly what this default returns.
    fn lowest_at(&self, points: &[f64], w: &[f64]) -> Option<(usize, f64)> {
        let mut values = vec![0.0; points.len() / self.dim().max(1)];
        self.values_at(points, w, &mut values);
        lowest_finite(&values)
    }

    /// The full mixed matrix `M = d(grad_y E)/dw` (n x p), one [`Energy::mixed_vjp`] per row.
    /// Meant for small problems, tests and analysis.
    fn mixed_matrix(&self, y: &[f64], w: &[f64]) -> DMatrix<f64> {
        let (n, p) = (self.dim(), self.num_params());
        let mut m = DMatrix::zeros(n, p);
        let mut u = vec![0.0; n];
        let mut row = vec![0.0; p];
        for i in 0..n {
            u[i] = 1.0;
            self.mixed_vjp(y, w, &u, &mut row);
            u[i] = 0.0;
            for (j, r) in row.iter().enumerate() {
                m[(i, j)] = *r;
            }
        }
        m
    }
}

impl<E: Energy + ?Sized> Energy for &E {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn num_params(&self) -> usize {
        (**self).num_params()
    }
    fn value(&self, y: &[f64], w: &[f64]) -> f64 {
        (**self).value(y, w)
    }
    fn gradient(&self, y: &[f64], w: &[f64], g: &mut [f64]) -> f64 {
        (**self).gradient(y, w, g)
    }
    fn hessian(&self, y: &[f64], w: &[f64], h: &mut DMatrix<f64>) {
        (**self).hessian(y, w, h)
    }
    fn mixed_vjp(&self, y: &[f64], w: &[f64], u: &[f64], out: &mut [f64]) {
        (**self).mixed_vjp(y, w, u, out)
    }
    fn gradient_hessian(&self, y: &[f64], w: &[f64], g: &mut [f64], h: &mut DMatrix<f64>) -> f64 {
        (**self).gradient_hessian(y, w, g, h)
    }
    fn hvp(&self, y: &[f64], w: &[f64], v: &[f64], out: &mut [f64]) {
        (**self).hvp(y, w, v, out)
    }
    fn values_at(&self, points: &[f64], w: &[f64], out: &mut [f64]) {
        (**self).values_at(points, w, out)
    }
    fn lowest_at(&self, points: &[f64], w: &[f64]) -> Option<(usize, f64)> {
        (**self).lowest_at(points, w)
    }
}

/// Index and value of the lowest finite entry of `values` (ties: the first), `None` when no
/// entry is finite: the selection rule of
/// the seed choice (`minimize::seeds::best_seed`) and of [`Energy::lowest_at`].
pub(crate) fn lowest_finite(values: &[f64]) -> Option<(usize, f64)> {
    let mut best: Option<(usize, f64)> = None;
    for (i, v) in values.iter().enumerate() {
        if v.is_finite() && best.is_none_or(|(_, b)| *v < b) {
            best = Some((i, *v));
        }
    }
    best
}
