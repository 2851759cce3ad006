//! Inner minimisers: both L-BFGS back-ends, the argmin budget guard, trust-region Newton from
//! negative curvature.

use crate::common;

use common::{rng, Smooth};
use nalgebra::DMatrix;
use wiberg::autodiff::DualScalar;
use wiberg::minimize::{LbfgsBackend, LbfgsConfig, Minimizer, NewtonConfig, StopReason};
use wiberg::{AutoDiff, DualEnergy, Energy, RbfMixture};

struct Rosenbrock;
impl DualEnergy for Rosenbrock {
    fn dim(&self) -> usize {
        2
    }
    fn num_params(&self) -> usize {
        1
    }
    fn energy<D: DualScalar>(&self, y: &[D], w: &[D]) -> D {
        let a = -y[0] + 1.0;
        let b = y[1] - y[0] * y[0];
        a * a + w[0] * b * b
    }
}

/// `(y0^2 - 1)^2 + y1^2`: a saddle at 0, minima at (+-1, 0), negative curvature for |y0| < 1/sqrt(3).
struct DoubleWell;
impl DualEnergy for DoubleWell {
    fn dim(&self) -> usize {
        2
    }
    fn num_params(&self) -> usize {
        0
    }
    fn energy<D: DualScalar>(&self, y: &[D], _w: &[D]) -> D {
        let a = y[0] * y[0] - 1.0;
        a * a + y[1] * y[1]
    }
}

fn lbfgs(backend: LbfgsBackend) -> Minimizer {
    Minimizer::Lbfgs(LbfgsConfig { max_iters: 200, backend, ..Default::default() })
}

fn grad_norm<E: Energy>(e: &E, y: &[f64], w: &[f64]) -> f64 {
    let mut g = vec![0.0; y.len()];
    e.gradient(y, w, &mut g);
    g.iter().map(|v| v * v).sum::<f64>().sqrt()
}

#[test]
fn both_lbfgs_backends_converge() {
    let rosen = AutoDiff::new(Rosenbrock);
    let rbf = RbfMixture::shared_width(1, vec![-0.4, 0.0, 0.3, 0.5, 4.0]).unwrap();
    let smooth = AutoDiff::new(Smooth::random_convex(&mut rng(3), 5, 2));
    for backend in common::lbfgs_backends() {
        let m = lbfgs(backend);
        let mut y = [-1.2, 1.0];
        let out = m.minimize(&rosen, &[100.0], &mut y).unwrap();
        assert!(out.stop.is_converged(), "{backend:?} Rosenbrock: {out:?}");
        assert!((y[0] - 1.0).abs() < 1e-5 && (y[1] - 1.0).abs() < 1e-5, "{backend:?}: {y:?}");
        let mut y = [0.9];
        let out = m.minimize(&rbf, &[1.0], &mut y).unwrap();
        assert!(out.stop.is_converged() && grad_norm(&rbf, &y, &[1.0]) < 1e-8, "{backend:?} RBF: {out:?}");
        assert!(y[0] > -0.4 && y[0] < 0.5, "{y:?}");
        let mut y = [1.0; 5];
        let w = [0.3, -0.6];
        let out = m.minimize(&smooth, &w, &mut y).unwrap();
        assert!(out.stop.is_converged() && grad_norm(&smooth, &y, &w) < 1e-8, "{backend:?} smooth: {out:?}");
        assert!(out.iterations > 0 && out.evaluations >= out.iterations);
    }
}

#[cfg(feature = "argmin")]
#[test]
fn backends_agree_on_the_minimiser() {
    let smooth = AutoDiff::new(Smooth::random_convex(&mut rng(4), 4, 2));
    let w = [0.5, 0.1];
    let mut y1 = [0.0; 4];
    let mut y2 = [0.0; 4];
    lbfgs(LbfgsBackend::Native).minimize(&smooth, &w, &mut y1).unwrap();
    lbfgs(LbfgsBackend::Argmin).minimize(&smooth, &w, &mut y2).unwrap();
    for i in 0..4 {
        assert!((y1[i] - y2[i]).abs() < 1e-7, "{y1:?} vs {y2:?}");
    }
}

#[test]
fn argmin_budget_guard_stops_the_solve_and_keeps_the_best_point() {
    let rosen = AutoDiff::new(Rosenbrock);
    let start = [-1.2, 1.0];
    for backend in common::lbfgs_backends() {
        let m = Minimizer::Lbfgs(LbfgsConfig { max_iters: 1000, max_evals: 30, backend, ..Default::default() });
        let mut y = start;
        let out = m.minimize(&rosen, &[100.0], &mut y).unwrap();
        assert_eq!(out.stop, StopReason::EvaluationBudget, "{backend:?}: {out:?}");
        assert!(!out.stop.is_converged());
        // Progress made before the budget ran out is kept, not thrown away.
        assert!(out.energy < rosen.value(&start, &[100.0]), "{backend:?}: {out:?}");
        assert!((out.energy - rosen.value(&y, &[100.0])).abs() < 1e-12);
    }
}

#[test]
fn trust_region_newton_converges_from_negative_curvature() {
    let e = AutoDiff::new(DoubleWell);
    let m = Minimizer::TrustRegionNewton(NewtonConfig::default());
    for start in [[0.1, 0.5], [-0.05, -1.0], [0.3, 0.0]] {
        let mut h = DMatrix::zeros(2, 2);
        e.hessian(&start, &[], &mut h);
        assert!(h[(0, 0)] < 0.0, "start must have negative curvature");
        let mut y = start;
        let out = m.minimize(&e, &[], &mut y).unwrap();
        assert!(out.stop.is_converged(), "{out:?}");
        assert!((y[0].abs() - 1.0).abs() < 1e-9 && y[1].abs() < 1e-9, "{y:?}");
        assert_eq!(y[0].signum(), start[0].signum());
        e.hessian(&y, &[], &mut h);
        assert!(h.symmetric_eigen().eigenvalues.min() > 0.0);
    }
    // 1-D: a Gaussian well started on its concave flank.
    let rbf = RbfMixture::shared_width(1, vec![0.0]).unwrap();
    let mut y = [1.5];
    let out = m.minimize(&rbf, &[1.0], &mut y).unwrap();
    assert!(out.stop.is_converged() && y[0].abs() < 1e-9, "{out:?} {y:?}");
}

#[test]
fn ransac_solves_stop_at_machine_precision_without_burning_the_budget() {
    use wiberg::{ArgminLayer, Start};
    for seed in 0..16 {
        let (points, _) = common::ransac_points(seed);
        let e = RbfMixture::shared_width(1, points.clone()).unwrap();
        for backend in common::lbfgs_backends() {
            let minimizer = Minimizer::Lbfgs(LbfgsConfig { max_iters: 10, backend, ..Default::default() });
            let layer = ArgminLayer { minimizer, ..Default::default() };
            let sol = layer.forward(&e, &[1.0], Start::Seeds(&points)).unwrap();
            let r = &sol.report;
            assert!(r.converged, "seed {seed} {backend:?}: {r:?}");
            assert!(r.final_grad_norm < 1e-8, "seed {seed} {backend:?}: {r:?}");
            let limit = if backend == LbfgsBackend::Native { 15 } else { 60 };
            assert!(r.evaluations <= limit, "seed {seed} {backend:?}: {r:?}");
        }
    }
}
