//! Derivatives of the argmin layer: closed forms on quadratics, finite differences and the
//! 1/lambda bounds on random smooth energies, singular Hessians.

use crate::common;

use common::{frobenius, random_matrix, random_psd, rng, Quadratic, Smooth};
use nalgebra::DMatrix;
use proptest::prelude::*;
use wiberg::gradcheck::gradcheck;
use wiberg::{ArgminLayer, AutoDiff, Damping, Energy, Minimizer, NewtonConfig, RbfMixture, Start, WibergError};

fn quadratic(seed: u64, n: usize, p: usize) -> Quadratic {
    let mut r = rng(seed);
    Quadratic { a: random_psd(&mut r, n, n, 0.5), b: random_matrix(&mut r, n, p) }
}

#[test]
fn implicit_jacobian_of_a_quadratic_is_exact() {
    for seed in 0..5 {
        let (n, p) = (4, 3);
        let q = quadratic(seed, n, p);
        let w = [0.3, -1.2, 0.8];
        let a_inv = q.a.clone().try_inverse().unwrap();
        let layer = ArgminLayer::with_damping(Damping::Implicit);
        let sol = layer.forward(&q, &w, Start::Point(&[0.0; 4])).unwrap();
        let y_star = &a_inv * &q.b * nalgebra::DVector::from_column_slice(&w);
        for i in 0..n {
            assert!((sol.y[i] - y_star[i]).abs() < 1e-10, "y*: {:?} vs {y_star}", sol.y);
        }
        let jac = layer.jacobian(&q, &w, &sol).unwrap();
        let exact = &a_inv * &q.b;
        assert!(frobenius(&(&jac - &exact)) < 1e-10 * frobenius(&exact), "{jac} vs {exact}");
        // The vector-Jacobian product is v^T J.
        let v = [1.0, -2.0, 0.5, 0.25];
        let back = layer.backward(&q, &w, &sol, &v).unwrap();
        for j in 0..p {
            let vj: f64 = (0..n).map(|i| v[i] * exact[(i, j)]).sum();
            assert!((back.grad_w[j] - vj).abs() < 1e-10, "{j}: {} vs {vj}", back.grad_w[j]);
        }
    }
}

#[test]
fn implicit_jacobian_when_the_hessian_depends_on_w() {
    // E = w0/2 |y|^2 - c.y: y* = c / w0, dy*/dw0 = -c / w0^2 (AutoDiff energy).
    struct Scaled;
    impl wiberg::DualEnergy for Scaled {
        fn dim(&self) -> usize {
            2
        }
        fn num_params(&self) -> usize {
            1
        }
        fn energy<D: wiberg::autodiff::DualScalar>(&self, y: &[D], w: &[D]) -> D {
            w[0] * (y[0] * y[0] + y[1] * y[1]) * 0.5 - y[0] * 3.0 + y[1] * 2.0
        }
    }
    let e = AutoDiff::new(Scaled);
    let layer = ArgminLayer::with_damping(Damping::Implicit);
    let sol = layer.forward(&e, &[2.0], Start::Point(&[0.0, 0.0])).unwrap();
    assert!((sol.y[0] - 1.5).abs() < 1e-12 && (sol.y[1] + 1.0).abs() < 1e-12, "{:?}", sol.y);
    let jac = layer.jacobian(&e, &[2.0], &sol).unwrap();
    assert!((jac[(0, 0)] + 0.75).abs() < 1e-12 && (jac[(1, 0)] - 0.5).abs() < 1e-12, "{jac}");
}

#[test]
fn trust_region_jacobian_is_the_damped_formula() {
    for (seed, lambda) in [(1u64, 0.1), (2, 0.5), (3, 2.0)] {
        let (n, p) = (3, 4);
        let q = quadratic(seed, n, p);
        let w = [0.5, 0.1, -0.7, 1.0];
        let layer = ArgminLayer::with_damping(Damping::TrustRegion { lambda });
        let sol = layer.forward(&q, &w, Start::Point(&[1.0, 1.0, 1.0])).unwrap();
        let jac = layer.jacobian(&q, &w, &sol).unwrap();
        let m = -q.b.clone();
        let damped = (&q.a + DMatrix::identity(n, n) * lambda).try_inverse().unwrap();
        let expected = -(damped * m);
        assert!(frobenius(&(&jac - &expected)) < 1e-10 * frobenius(&expected), "{jac} vs {expected}");
        assert_eq!(sol.report.diagnostics.shift, lambda);
    }
}

/// `E = (y0 - w0)^2 / 2 + y1^4 / 4` at `y1 = 0`: `H = diag(1, 0)`, singular.
fn flat() -> Quadratic {
    // The quartic has no quadratic part: a quadratic with a zero row gives the same H and M.
    Quadratic { a: DMatrix::from_row_slice(2, 2, &[1.0, 0.0, 0.0, 0.0]), b: DMatrix::from_row_slice(2, 1, &[1.0, 0.0]) }
}

#[test]
fn singular_hessian_is_a_typed_error_under_implicit_only() {
    let e = flat();
    let w = [0.7];
    let start = [0.7, 0.0];
    let no_polish = |damping| ArgminLayer { damping, polish: false, minimizer: Minimizer::None, ..Default::default() };
    // Implicit: the forward pass succeeds without polish, the backward pass is refused.
    let layer = no_polish(Damping::Implicit);
    let sol = layer.forward(&e, &w, Start::Point(&start)).unwrap();
    let err = layer.backward(&e, &w, &sol, &[1.0, 1.0]).unwrap_err();
    assert!(matches!(err, WibergError::SingularHessian { .. }), "{err:?}");
    assert!(matches!(layer.jacobian(&e, &w, &sol), Err(WibergError::SingularHessian { .. })));
    // With the polish step the forward pass itself needs the singular solve.
    let polished = ArgminLayer::with_damping(Damping::Implicit);
    let err = polished.forward(&e, &w, Start::Point(&start)).unwrap_err();
    assert!(matches!(err, WibergError::SingularHessian { .. }), "{err:?}");
    // Damped modes: finite, and the flat direction gets 1/lambda.
    for damping in [Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.1 }] {
        for layer in [no_polish(damping), ArgminLayer::with_damping(damping)] {
            let sol = layer.forward(&e, &w, Start::Point(&start)).unwrap();
            let back = layer.backward(&e, &w, &sol, &[1.0, 1.0]).unwrap();
            assert!(back.grad_w.iter().chain(&back.u).all(|v| v.is_finite()), "{back:?}");
            assert!((back.u[1] + 10.0).abs() < 1e-12, "{back:?}");
            assert!((back.grad_w[0] - 1.0 / 1.1).abs() < 1e-12, "{back:?}");
        }
    }
}

fn smooth_layer(damping: Damping) -> ArgminLayer {
    ArgminLayer { damping, minimizer: Minimizer::TrustRegionNewton(NewtonConfig::default()), ..Default::default() }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Implicit + polish is the derivative of the whole forward pass (L-BFGS and Newton).
    #[test]
    fn implicit_with_polish_matches_finite_differences(seed in any::<u64>(), n in 1usize..5, p in 1usize..4, lbfgs in any::<bool>()) {
        let mut r = rng(seed);
        let e = AutoDiff::new(Smooth::random_convex(&mut r, n, p));
        let w: Vec<f64> = (0..p).map(|j| 0.2 + 0.3 * j as f64).collect();
        let layer = if lbfgs { ArgminLayer::with_damping(Damping::Implicit) } else { smooth_layer(Damping::Implicit) };
        let target: Vec<f64> = (0..n).map(|i| 0.1 * i as f64 - 0.2).collect();
        let loss = |y: &[f64]| {
            let d: Vec<f64> = y.iter().zip(&target).map(|(a, b)| a - b).collect();
            (d.iter().map(|v| v * v).sum::<f64>(), d.iter().map(|v| 2.0 * v).collect())
        };
        let start = vec![0.0; n];
        let check = gradcheck(&layer, &e, &w, Start::Point(&start), loss, 1e-5).unwrap();
        prop_assert!(check.scaled_error < 1e-6, "{:?}", check);
    }

    /// TrustRegion with a PSD Hessian: |dy*/dw|_F <= |M|_F / lambda, at any point.
    #[test]
    fn trust_region_obeys_the_bound_for_psd_hessians(seed in any::<u64>(), n in 1usize..6, p in 1usize..4, lambda in 0.01f64..1.0) {
        let mut r = rng(seed);
        let rank = n / 2;
        let q = Quadratic { a: random_psd(&mut r, n, rank, 0.0), b: random_matrix(&mut r, n, p) * 3.0 };
        let w: Vec<f64> = (0..p).map(|j| j as f64 - 0.5).collect();
        let layer = ArgminLayer { damping: Damping::TrustRegion { lambda }, minimizer: Minimizer::None, polish: false, ..Default::default() };
        let y0: Vec<f64> = (0..n).map(|i| 0.3 * i as f64).collect();
        let sol = layer.forward(&q, &w, Start::Point(&y0)).unwrap();
        let jac = layer.jacobian(&q, &w, &sol).unwrap();
        let m = q.mixed_matrix(&y0, &w);
        prop_assert!(frobenius(&jac) <= frobenius(&m) / lambda * (1.0 + 1e-9), "{} > {}", frobenius(&jac), frobenius(&m) / lambda);
    }

    /// Guarded obeys the bound for indefinite Hessians too (TrustRegion need not).
    #[test]
    fn guarded_obeys_the_bound_for_indefinite_hessians(seed in any::<u64>(), n in 1usize..6, p in 1usize..4, lambda in 0.01f64..1.0) {
        let mut r = rng(seed);
        let e = AutoDiff::new(Smooth::random_indefinite(&mut r, n, p));
        let w: Vec<f64> = (0..p).map(|j| 0.5 * j as f64 - 0.3).collect();
        let layer = ArgminLayer { damping: Damping::Guarded { lambda }, minimizer: Minimizer::None, polish: false, ..Default::default() };
        let y0: Vec<f64> = (0..n).map(|_| r_unit(&mut r)).collect();
        let sol = layer.forward(&e, &w, Start::Point(&y0)).unwrap();
        let jac = layer.jacobian(&e, &w, &sol).unwrap();
        let m = e.mixed_matrix(&y0, &w);
        prop_assert!(sol.report.diagnostics.min_eigenvalue + sol.report.diagnostics.shift >= lambda * (1.0 - 1e-9));
        prop_assert!(frobenius(&jac) <= frobenius(&m) / lambda * (1.0 + 1e-9), "{} > {}", frobenius(&jac), frobenius(&m) / lambda);
    }
}

fn r_unit(r: &mut rand_chacha::ChaCha8Rng) -> f64 {
    use rand::Rng;
    r.random_range(-1.0..1.0)
}

#[test]
fn trust_region_loses_the_bound_where_guarded_keeps_it() {
    // H = -0.09 (1-D), M = -1: trust-region solves with H + 0.1 = 0.01, guarded shifts by
    // 0.1 + 0.09 and solves with 0.1 = lambda: exactly on the bound |M| / lambda.
    let q = Quadratic { a: DMatrix::from_element(1, 1, -0.09), b: DMatrix::from_element(1, 1, 1.0) };
    let base = ArgminLayer { minimizer: Minimizer::None, polish: false, ..Default::default() };
    let tr = ArgminLayer { damping: Damping::TrustRegion { lambda: 0.1 }, ..base };
    let gu = ArgminLayer { damping: Damping::Guarded { lambda: 0.1 }, ..base };
    let sol = tr.forward(&q, &[0.0], Start::Point(&[0.0])).unwrap();
    let j_tr = tr.jacobian(&q, &[0.0], &sol).unwrap()[(0, 0)];
    let sol = gu.forward(&q, &[0.0], Start::Point(&[0.0])).unwrap();
    let j_gu = gu.jacobian(&q, &[0.0], &sol).unwrap()[(0, 0)];
    assert!((j_tr - 100.0).abs() < 1e-9, "{j_tr}");
    assert!((j_gu - 10.0).abs() < 1e-12, "{j_gu}");
}

// The same separation on the RANSAC energy (Experiment 1's `RbfMixture`), at a point where the
// curvature is just above -lambda.
/// Two points at +-1.2 with sigma = 1: d2E/dt2 is about -1.8 at the midpoint and +2 at the
/// points. Bisection finds t0 with d2E/dt2(t0) = -lambda + 1e-9.
fn near_minus_lambda_point(e: &RbfMixture, lambda: f64) -> f64 {
    let curvature = |t: f64| {
        let mut h = DMatrix::zeros(1, 1);
        e.hessian(&[t], &[1.0], &mut h);
        h[(0, 0)]
    };
    let target = -lambda + 1e-9;
    let (mut lo, mut hi) = (0.0, 1.2);
    assert!(curvature(lo) < target && curvature(hi) > target);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if curvature(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

#[test]
fn negative_curvature_near_minus_lambda_trust_region_explodes_guarded_is_bounded() {
    let lambda = 0.1;
    let e = RbfMixture::shared_width(1, vec![-1.2, 1.2]).unwrap();
    let t0 = near_minus_lambda_point(&e, lambda);
    let m = e.mixed_matrix(&[t0], &[1.0])[(0, 0)];
    assert!(m.abs() > 0.1, "M = {m}");
    let derivative = |damping: Damping| {
        // No minimiser and no polish: t0 itself is the solution, so H at y* is -lambda + 1e-9.
        let layer = ArgminLayer { minimizer: Minimizer::None, polish: false, damping, ..Default::default() };
        let sol = layer.forward(&e, &[1.0], Start::Point(&[t0])).unwrap();
        let d = sol.report.diagnostics;
        assert!(d.negative_curvature() && (d.min_eigenvalue + lambda).abs() < 1e-6, "{d:?}");
        layer.backward(&e, &[1.0], &sol, &[1.0]).unwrap().grad_w[0]
    };
    let trust = derivative(Damping::TrustRegion { lambda });
    let guarded = derivative(Damping::Guarded { lambda });
    assert!(trust.abs() > 1e6, "trust-region dt/dsigma = {trust}");
    assert!(guarded.abs() <= m.abs() / lambda * (1.0 + 1e-9), "guarded {guarded} vs bound {}", m.abs() / lambda);
    assert!(guarded.abs() > 0.5 * m.abs() / lambda, "guarded should be near its bound here: {guarded}");
    assert!(Damping::Guarded { lambda }.shift(-lambda) > lambda);
}
