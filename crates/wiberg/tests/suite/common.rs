//! Test energies shared by the integration tests.

use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wiberg::autodiff::DualScalar;
use wiberg::{DualEnergy, Energy};

/// `E(y; w) = 1/2 y^T A y - y^T B w`, analytic: `H = A`, `M = -B`; for invertible `A`,
/// `y*(w) = A^-1 B w` and `dy*/dw = A^-1 B`.
#[derive(Debug, Clone)]
pub struct Quadratic {
    pub a: DMatrix<f64>,
    pub b: DMatrix<f64>,
}

impl Energy for Quadratic {
    fn dim(&self) -> usize {
        self.a.nrows()
    }
    fn num_params(&self) -> usize {
        self.b.ncols()
    }
    fn value(&self, y: &[f64], w: &[f64]) -> f64 {
        let n = self.dim();
        let mut v = 0.0;
        for i in 0..n {
            let ay: f64 = (0..n).map(|j| self.a[(i, j)] * y[j]).sum();
            let bw: f64 = (0..w.len()).map(|j| self.b[(i, j)] * w[j]).sum();
            v += y[i] * (0.5 * ay - bw);
        }
        v
    }
    fn gradient(&self, y: &[f64], w: &[f64], g: &mut [f64]) -> f64 {
        let n = self.dim();
        for (i, gi) in g.iter_mut().enumerate() {
            let ay: f64 = (0..n).map(|j| self.a[(i, j)] * y[j]).sum();
            let bw: f64 = (0..w.len()).map(|j| self.b[(i, j)] * w[j]).sum();
            *gi = ay - bw;
        }
        self.value(y, w)
    }
    fn hessian(&self, _y: &[f64], _w: &[f64], h: &mut DMatrix<f64>) {
        h.copy_from(&self.a);
    }
    fn mixed_vjp(&self, _y: &[f64], _w: &[f64], u: &[f64], out: &mut [f64]) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = -(0..u.len()).map(|i| self.b[(i, j)] * u[i]).sum::<f64>();
        }
    }
}

/// A random matrix with entries in [-1, 1].
pub fn random_matrix(rng: &mut ChaCha8Rng, r: usize, c: usize) -> DMatrix<f64> {
    DMatrix::from_fn(r, c, |_, _| rng.random_range(-1.0..1.0))
}

/// A random symmetric positive semi-definite matrix of rank `rank`, plus `mu I`.
pub fn random_psd(rng: &mut ChaCha8Rng, n: usize, rank: usize, mu: f64) -> DMatrix<f64> {
    let r = random_matrix(rng, n, rank);
    &r * r.transpose() + DMatrix::identity(n, n) * mu
}

/// A random symmetric (generally indefinite) matrix.
pub fn random_symmetric(rng: &mut ChaCha8Rng, n: usize) -> DMatrix<f64> {
    let r = random_matrix(rng, n, n);
    (&r + r.transpose()) * 0.5
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A random smooth energy, written once over dual numbers:
/// `E = 1/2 y^T A y - y^T B w + gamma/4 sum y_i^4 + delta/2 sum w_(i%p)^2 y_i^2
///      - sum_k alpha_k exp(-|y - c_k|^2 / s_k^2)`,  `s_k = 1 + 0.1 w_(k%p)^2`.
/// With `A >= I`, `gamma, delta >= 0` and `sum alpha_k <= 0.45` it is strictly convex in `y`
/// (each kernel's curvature is at least `-2 alpha_k / s_k^2 >= -2 alpha_k`).
#[derive(Debug, Clone)]
pub struct Smooth {
    pub a: DMatrix<f64>,
    pub b: DMatrix<f64>,
    pub gamma: f64,
    pub delta: f64,
    pub centers: Vec<Vec<f64>>,
    pub alphas: Vec<f64>,
}

impl Smooth {
    /// A random strictly convex instance.
    pub fn random_convex(rng: &mut ChaCha8Rng, n: usize, p: usize) -> Self {
        let rank = rng.random_range(0..=n);
        Smooth {
            a: random_psd(rng, n, rank, 1.0),
            b: random_matrix(rng, n, p) * 2.0,
            gamma: rng.random_range(0.0..0.5),
            delta: rng.random_range(0.0..0.5),
            centers: (0..3).map(|_| (0..n).map(|_| rng.random_range(-1.5..1.5)).collect()).collect(),
            alphas: (0..3).map(|_| rng.random_range(0.0..0.15)).collect(),
        }
    }

    /// A random instance whose quadratic part is indefinite.
    pub fn random_indefinite(rng: &mut ChaCha8Rng, n: usize, p: usize) -> Self {
        let mut s = Smooth::random_convex(rng, n, p);
        s.a = random_symmetric(rng, n) * 2.0;
        s.alphas = (0..3).map(|_| rng.random_range(0.0..2.0)).collect();
        s
    }
}

impl DualEnergy for Smooth {
    fn dim(&self) -> usize {
        self.a.nrows()
    }
    fn num_params(&self) -> usize {
        self.b.ncols()
    }
    fn energy<D: DualScalar>(&self, y: &[D], w: &[D]) -> D {
        let (n, p) = (self.dim(), self.num_params());
        let mut e = D::from(0.0);
        for i in 0..n {
            let mut ay = D::from(0.0);
            for (j, yj) in y.iter().enumerate() {
                ay += *yj * self.a[(i, j)];
            }
            let mut bw = D::from(0.0);
            for (j, wj) in w.iter().enumerate() {
                bw += *wj * self.b[(i, j)];
            }
            e += y[i] * (ay * 0.5 - bw);
            e += y[i].powi(4) * (self.gamma / 4.0);
            e += w[i % p] * w[i % p] * y[i] * y[i] * (self.delta / 2.0);
        }
        for (k, (c, alpha)) in self.centers.iter().zip(&self.alphas).enumerate() {
            let s = w[k % p] * w[k % p] * 0.1 + 1.0;
            let mut r = D::from(0.0);
            for i in 0..n {
                let d = y[i] - c[i];
                r += d * d;
            }
            e -= (-(r / (s * s))).exp() * *alpha;
        }
        e
    }
}

/// Frobenius norm.
pub fn frobenius(m: &DMatrix<f64>) -> f64 {
    m.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// One RANSAC sample: 10 inliers N(m, 4^2) with m ~ U[-40, 40], 100 outliers U[-40, 40].
/// Returns (points, mean of the inliers).
pub fn ransac_points(seed: u64) -> (Vec<f64>, f64) {
    let mut r = rng(seed);
    let m: f64 = r.random_range(-40.0..40.0);
    let mut points = Vec::with_capacity(110);
    for _ in 0..10 {
        let (u1, u2): (f64, f64) = (r.random_range(f64::EPSILON..1.0), r.random_range(0.0..1.0));
        points.push(m + 4.0 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos());
    }
    let mean = points.iter().sum::<f64>() / 10.0;
    for _ in 0..100 {
        points.push(r.random_range(-40.0..40.0));
    }
    (points, mean)
}

/// The L-BFGS back-ends to test: the native one, and argmin's when the crate feature `argmin`
/// is on (`.ci/run` runs this test crate a second time with `--features argmin`; the plain
/// test command leaves it out so that its build reuses the release build's dependencies).
pub fn lbfgs_backends() -> Vec<wiberg::minimize::LbfgsBackend> {
    let mut out = vec![wiberg::minimize::LbfgsBackend::Native];
    if cfg!(feature = "argmin") {
        out.push(wiberg::minimize::LbfgsBackend::Argmin);
    }
    out
}
