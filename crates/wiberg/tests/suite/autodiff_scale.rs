//! `AutoDiff` on a larger problem (n = 20, p = 1,000) against closed forms: the chunked
//! passes cover every unknown and parameter exactly once.

use nalgebra::DMatrix;
use wiberg::autodiff::DualScalar;
use wiberg::{AutoDiff, DualEnergy, Energy};

/// `E = sum_j w_j (y_(j%n) - c_j)^2 / 2 + sum_i y_i^4 / 4 + sum_i y_i y_(i+1)`.
struct Wide {
    n: usize,
    c: Vec<f64>,
}

impl DualEnergy for Wide {
    fn dim(&self) -> usize {
        self.n
    }
    fn num_params(&self) -> usize {
        self.c.len()
    }
    fn energy<D: DualScalar>(&self, y: &[D], w: &[D]) -> D {
        let mut e = D::from(0.0);
        for (j, c) in self.c.iter().enumerate() {
            let d = y[j % self.n] - *c;
            e += w[j] * d * d * 0.5;
        }
        for i in 0..self.n {
            e += y[i].powi(4) * 0.25 + y[i] * y[(i + 1) % self.n];
        }
        e
    }
}

#[test]
fn autodiff_is_exact_at_n20_p1000() {
    let (n, p) = (20, 1000);
    let c: Vec<f64> = (0..p).map(|j| (j as f64 * 0.37).sin()).collect();
    let e = AutoDiff::new(Wide { n, c: c.clone() });
    let y: Vec<f64> = (0..n).map(|i| (i as f64 * 0.1).cos()).collect();
    let w: Vec<f64> = (0..p).map(|j| 1.0 + 0.001 * j as f64).collect();
    let u: Vec<f64> = (0..n).map(|i| (i as f64 * 0.3).sin() + 0.1).collect();

    let mut mv = vec![0.0; p];
    e.mixed_vjp(&y, &w, &u, &mut mv);
    for j in 0..p {
        let exact = (y[j % n] - c[j]) * u[j % n];
        assert!((mv[j] - exact).abs() < 1e-13, "mixed {j}: {} vs {exact}", mv[j]);
    }

    let mut h = DMatrix::zeros(n, n);
    e.hessian(&y, &w, &mut h);
    let mut exact_h = DMatrix::zeros(n, n);
    for j in 0..p {
        exact_h[(j % n, j % n)] += w[j];
    }
    for i in 0..n {
        exact_h[(i, i)] += 3.0 * y[i] * y[i];
        let k = (i + 1) % n;
        exact_h[(i, k)] += 1.0;
        exact_h[(k, i)] += 1.0;
    }
    assert!((&h - &exact_h).abs().max() < 1e-11, "{}", (&h - &exact_h).abs().max());

    let mut g = vec![0.0; n];
    e.gradient(&y, &w, &mut g);
    let mut hv = vec![0.0; n];
    e.hvp(&y, &w, &u, &mut hv);
    for i in 0..n {
        let mut exact_g = y[i].powi(3) + y[(i + 1) % n] + y[(i + n - 1) % n];
        for j in (i..p).step_by(n) {
            exact_g += w[j] * (y[i] - c[j]);
        }
        assert!((g[i] - exact_g).abs() < 1e-11, "gradient {i}: {} vs {exact_g}", g[i]);
        let exact_hv: f64 = (0..n).map(|k| exact_h[(i, k)] * u[k]).sum();
        assert!((hv[i] - exact_hv).abs() < 1e-11, "hvp {i}: {} vs {exact_hv}", hv[i]);
    }
}
