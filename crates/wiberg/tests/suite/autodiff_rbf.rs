//! `AutoDiff` against the analytic `RbfMixture`, and the matrix-free (CG) path against the
//! dense one.

use crate::common;

use common::{rng, Smooth};
use nalgebra::DMatrix;
use rand::Rng;
use wiberg::autodiff::DualScalar;
use wiberg::{ArgminLayer, AutoDiff, Damping, DualEnergy, Energy, LinearSolve, LinearSolver, RbfMixture, Start};

/// The same family as `RbfMixture`, written once over dual numbers.
struct DualRbf {
    dim: usize,
    centers: Vec<f64>,
    width_index: Vec<usize>,
    weight_index: Option<Vec<usize>>,
    num_params: usize,
}

impl DualEnergy for DualRbf {
    fn dim(&self) -> usize {
        self.dim
    }
    fn num_params(&self) -> usize {
        self.num_params
    }
    fn energy<D: DualScalar>(&self, y: &[D], w: &[D]) -> D {
        let mut e = D::from(0.0);
        for (k, c) in self.centers.chunks_exact(self.dim).enumerate() {
            let s = w[self.width_index[k]];
            let mut r = D::from(0.0);
            for (yi, ci) in y.iter().zip(c) {
                let d = *yi - *ci;
                r += d * d;
            }
            let a = match &self.weight_index {
                Some(wi) => w[wi[k]],
                None => D::from(1.0),
            };
            e -= a * (-(r / (s * s))).exp();
        }
        e
    }
}

fn assert_close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-10 * (1.0 + a.abs().max(b.abs())), "{what}: {a} vs {b}");
}

fn compare(analytic: &RbfMixture, dual: DualRbf, w: &[f64], points: &[Vec<f64>]) {
    let ad = AutoDiff::new(dual);
    let (n, p) = (analytic.dim(), analytic.num_params());
    assert_eq!((ad.dim(), ad.num_params()), (n, p));
    for y in points {
        assert_close(analytic.value(y, w), ad.value(y, w), "value");
        let (mut g1, mut g2) = (vec![0.0; n], vec![0.0; n]);
        assert_close(analytic.gradient(y, w, &mut g1), ad.gradient(y, w, &mut g2), "value from gradient");
        for i in 0..n {
            assert_close(g1[i], g2[i], "gradient");
        }
        let (mut h1, mut h2) = (DMatrix::zeros(n, n), DMatrix::zeros(n, n));
        analytic.hessian(y, w, &mut h1);
        ad.hessian(y, w, &mut h2);
        for (a, b) in h1.iter().zip(h2.iter()) {
            assert_close(*a, *b, "Hessian");
        }
        let u: Vec<f64> = (0..n).map(|i| 0.7 - 1.1 * i as f64).collect();
        let (mut m1, mut m2) = (vec![0.0; p], vec![0.0; p]);
        analytic.mixed_vjp(y, w, &u, &mut m1);
        ad.mixed_vjp(y, w, &u, &mut m2);
        for j in 0..p {
            assert_close(m1[j], m2[j], "mixed_vjp");
        }
        let (mut v1, mut v2) = (vec![0.0; n], vec![0.0; n]);
        analytic.hvp(y, w, &u, &mut v1);
        ad.hvp(y, w, &u, &mut v2);
        for i in 0..n {
            assert_close(v1[i], v2[i], "hvp");
        }
    }
}

#[test]
fn autodiff_matches_rbf_mixture_1d_shared_width() {
    let mut r = rng(11);
    let centers: Vec<f64> = (0..30).map(|_| r.random_range(-5.0..5.0)).collect();
    let analytic = RbfMixture::shared_width(1, centers.clone()).unwrap();
    let dual = DualRbf { dim: 1, centers, width_index: vec![0; 30], weight_index: None, num_params: 1 };
    let points: Vec<Vec<f64>> = (0..20).map(|_| vec![r.random_range(-6.0..6.0)]).collect();
    compare(&analytic, dual, &[1.3], &points);
}

#[test]
fn autodiff_matches_rbf_mixture_2d_index_mapped() {
    let mut r = rng(12);
    let k = 12;
    let centers: Vec<f64> = (0..2 * k).map(|_| r.random_range(-2.0..2.0)).collect();
    // 3 trackers with their own width; weights per (tracker, age bin), 3 x 2 bins.
    let width_index: Vec<usize> = (0..k).map(|i| i % 3).collect();
    let weight_index: Vec<usize> = (0..k).map(|i| 3 + (i % 3) * 2 + (i / 3) % 2).collect();
    let p = 9;
    let analytic = RbfMixture::new(2, centers.clone(), width_index.clone(), Some(weight_index.clone()), p).unwrap();
    let dual = DualRbf { dim: 2, centers, width_index, weight_index: Some(weight_index), num_params: p };
    let w: Vec<f64> = (0..p).map(|j| 0.6 + 0.13 * j as f64).collect();
    let points: Vec<Vec<f64>> = (0..20).map(|_| vec![r.random_range(-2.5..2.5), r.random_range(-2.5..2.5)]).collect();
    compare(&analytic, dual, &w, &points);
}

fn cg_layer(damping: Damping) -> ArgminLayer {
    ArgminLayer {
        damping,
        linear_solve: LinearSolve::ConjugateGradient { tol: 1e-13, max_iters: 500 },
        ..Default::default()
    }
}

#[test]
fn dense_and_conjugate_gradient_paths_agree() {
    for seed in 0..4 {
        let (n, p) = (12, 3);
        let e = AutoDiff::new(Smooth::random_convex(&mut rng(100 + seed), n, p));
        let w = [0.4, -0.2, 0.9];
        let v: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
        for damping in [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.3 }] {
            let dense = ArgminLayer::with_damping(damping);
            let cg = cg_layer(damping);
            let start = vec![0.5; n];
            let s1 = dense.forward(&e, &w, Start::Point(&start)).unwrap();
            let s2 = cg.forward(&e, &w, Start::Point(&start)).unwrap();
            // The polish step's CG solve was at the pre-polish point; at the returned y*
            // nothing is solved until the backward pass, which reports its own diagnostics.
            assert_eq!(s2.report.diagnostics.solver, LinearSolver::NotFactorized);
            assert!(s2.report.polished);
            for i in 0..n {
                assert!((s1.y[i] - s2.y[i]).abs() < 1e-8, "y*: {} vs {}", s1.y[i], s2.y[i]);
            }
            let b1 = dense.backward(&e, &w, &s1, &v).unwrap();
            let b2 = cg.backward(&e, &w, &s2, &v).unwrap();
            assert_eq!(b2.diagnostics.solver, LinearSolver::ConjugateGradient);
            for j in 0..p {
                let (a, b) = (b1.grad_w[j], b2.grad_w[j]);
                assert!((a - b).abs() < 1e-8 * (1.0 + a.abs()), "{damping:?} grad_w[{j}]: {a} vs {b}");
            }
        }
    }
}

#[test]
fn conjugate_gradient_falls_back_to_dense_on_negative_curvature() {
    // Indefinite energy at an arbitrary point, guarded: CG meets negative curvature.
    let (n, p) = (6, 2);
    let e = AutoDiff::new(Smooth::random_indefinite(&mut rng(5), n, p));
    let w = [0.3, 0.8];
    let y0: Vec<f64> = (0..n).map(|i| 0.2 * i as f64 - 0.5).collect();
    let mut h = DMatrix::zeros(n, n);
    e.hessian(&y0, &w, &mut h);
    assert!(h.clone().symmetric_eigen().eigenvalues.min() < 0.0, "test needs an indefinite Hessian");
    let damping = Damping::Guarded { lambda: 0.2 };
    let base = ArgminLayer { damping, minimizer: wiberg::Minimizer::None, polish: false, ..Default::default() };
    let dense = base;
    let cg = ArgminLayer { linear_solve: LinearSolve::ConjugateGradient { tol: 1e-13, max_iters: 200 }, ..base };
    let v: Vec<f64> = (0..n).map(|i| 1.0 - 0.3 * i as f64).collect();
    let s1 = dense.forward(&e, &w, Start::Point(&y0)).unwrap();
    let s2 = cg.forward(&e, &w, Start::Point(&y0)).unwrap();
    let b1 = dense.backward(&e, &w, &s1, &v).unwrap();
    let b2 = cg.backward(&e, &w, &s2, &v).unwrap();
    assert_ne!(b2.diagnostics.solver, LinearSolver::ConjugateGradient);
    for j in 0..p {
        assert!((b1.grad_w[j] - b2.grad_w[j]).abs() < 1e-8 * (1.0 + b1.grad_w[j].abs()));
    }
}
