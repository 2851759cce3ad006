//! Least squares and IRLS: derivatives against central finite differences, the robust energy
//! through `ArgminLayer`, and typed errors.

use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wiberg::least_squares::{IrlsConfig, LeastSquares, RobustLeastSquares};
use wiberg::minimize::Minimizer;
use wiberg::{ArgminLayer, Damping, Energy, Start, WibergError};

fn random_matrix(rng: &mut ChaCha8Rng, m: usize, n: usize) -> DMatrix<f64> {
    DMatrix::from_fn(m, n, |_, _| rng.random_range(-1.0..1.0))
}

fn random_vector(rng: &mut ChaCha8Rng, m: usize, lo: f64, hi: f64) -> DVector<f64> {
    DVector::from_fn(m, |_, _| rng.random_range(lo..hi))
}

/// |a - b| <= tol (1 + |b|).
fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}: analytic {a} vs finite differences {b}");
}

const EPS: f64 = 1e-6;

/// A loss `l = c^T y*` and its gradient for a least-squares problem built by `build`.
fn ls_loss(build: &dyn Fn() -> LeastSquares, c: &DVector<f64>) -> f64 {
    let sol = build().solve(Damping::Implicit).expect("well-posed problem");
    c.dot(&sol.y)
}

#[test]
fn least_squares_derivatives_match_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (m, n, mu) in [(6, 3, 0.0), (5, 4, 0.3), (3, 5, 0.2)] {
        let a = random_matrix(&mut rng, m, n);
        let b = random_vector(&mut rng, m, -2.0, 2.0);
        let weights = random_vector(&mut rng, m, 0.2, 2.0);
        let c = random_vector(&mut rng, n, -1.0, 1.0);
        let make = |a: &DMatrix<f64>, b: &DVector<f64>, wts: &DVector<f64>, mu: f64| {
            LeastSquares::new(a.clone(), b.clone()).unwrap().with_weights(wts.clone()).unwrap().with_mu(mu).unwrap()
        };
        let ls = make(&a, &b, &weights, mu);
        let sol = ls.solve(Damping::Implicit).unwrap();
        let g = ls.backward(&sol, &c).unwrap();
        let tol = 1e-7;
        for i in 0..m {
            for j in 0..n {
                let (mut ap, mut am) = (a.clone(), a.clone());
                ap[(i, j)] += EPS;
                am[(i, j)] -= EPS;
                let fd = (ls_loss(&|| make(&ap, &b, &weights, mu), &c) - ls_loss(&|| make(&am, &b, &weights, mu), &c))
                    / (2.0 * EPS);
                assert_close(g.a[(i, j)], fd, tol, &format!("dl/dA[{i},{j}] (m={m}, n={n})"));
            }
            let (mut bp, mut bm) = (b.clone(), b.clone());
            bp[i] += EPS;
            bm[i] -= EPS;
            let fd = (ls_loss(&|| make(&a, &bp, &weights, mu), &c) - ls_loss(&|| make(&a, &bm, &weights, mu), &c))
                / (2.0 * EPS);
            assert_close(g.b[i], fd, tol, &format!("dl/db[{i}]"));
            let (mut wp, mut wm) = (weights.clone(), weights.clone());
            wp[i] += EPS;
            wm[i] -= EPS;
            let fd = (ls_loss(&|| make(&a, &b, &wp, mu), &c) - ls_loss(&|| make(&a, &b, &wm, mu), &c)) / (2.0 * EPS);
            assert_close(g.weights[i], fd, tol, &format!("dl/dweights[{i}]"));
        }
        let fd = (ls_loss(&|| make(&a, &b, &weights, mu + EPS), &c)
            - ls_loss(&|| make(&a, &b, &weights, (mu - EPS).abs()), &c))
            / (mu + EPS - (mu - EPS).abs());
        if mu > 0.0 {
            assert_close(g.mu, fd, tol, "dl/dmu");
        }
    }
}

#[test]
fn least_squares_trust_region_shrinks_the_gradient() {
    // With lambda > 0 the derivative is -(H + lambda I)^-1 M: for a PSD H every component of
    // u is damped, and |u| <= |v| / (eig_min(H) + lambda).
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let a = random_matrix(&mut rng, 5, 3);
    let b = random_vector(&mut rng, 5, -1.0, 1.0);
    let ls = LeastSquares::new(a, b).unwrap();
    let v = DVector::from_vec(vec![1.0, -0.5, 0.25]);
    let exact = ls.backward(&ls.solve(Damping::Implicit).unwrap(), &v).unwrap();
    let sol = ls.solve(Damping::TrustRegion { lambda: 0.5 }).unwrap();
    let damped = ls.backward(&sol, &v).unwrap();
    assert!(damped.u.norm() < exact.u.norm());
    assert!(damped.u.norm() <= v.norm() / (sol.diagnostics().min_eigenvalue + 0.5) + 1e-12);
    assert_eq!(sol.diagnostics().shift, 0.5);
    assert_eq!(sol.normal_diagnostics().shift, 0.0);
}

#[test]
fn least_squares_singular_and_invalid_inputs_are_typed_errors() {
    // Rank 1 with mu = 0: singular. A tiny mu makes it solvable and finite.
    let a = DMatrix::from_row_slice(3, 2, &[1.0, 2.0, 2.0, 4.0, -1.0, -2.0]);
    let b = DVector::from_vec(vec![1.0, 0.0, 2.0]);
    let ls = LeastSquares::new(a.clone(), b.clone()).unwrap();
    assert!(matches!(ls.solve(Damping::Implicit), Err(WibergError::SingularHessian { .. })));
    assert!(matches!(ls.solve(Damping::TrustRegion { lambda: 0.1 }), Err(WibergError::SingularHessian { .. })));
    let sol = ls.clone().with_mu(1e-3).unwrap().solve(Damping::Implicit).unwrap();
    assert!(sol.y.iter().all(|v| v.is_finite()));
    // Zero weights on every row is singular too.
    let zero = ls.clone().with_weights(DVector::zeros(3)).unwrap();
    assert!(matches!(zero.solve(Damping::Implicit), Err(WibergError::SingularHessian { .. })));
    // Shapes, NaN, negative weights and damping.
    assert!(matches!(LeastSquares::new(a.clone(), DVector::zeros(2)), Err(WibergError::DimensionMismatch { .. })));
    let mut a_nan = a.clone();
    a_nan[(1, 1)] = f64::NAN;
    assert!(matches!(LeastSquares::new(a_nan, b.clone()), Err(WibergError::NonFinite { .. })));
    assert!(matches!(
        ls.clone().with_weights(DVector::from_vec(vec![1.0, -0.1, 1.0])),
        Err(WibergError::InvalidArgument(_))
    ));
    assert!(ls.clone().with_weights(DVector::from_vec(vec![1.0, 1.0])).is_err());
    assert!(ls.clone().with_mu(-1.0).is_err());
    let ok = ls.with_mu(0.1).unwrap();
    assert!(ok.solve(Damping::TrustRegion { lambda: -1.0 }).is_err());
    let sol = ok.solve(Damping::Implicit).unwrap();
    assert!(matches!(ok.backward(&sol, &DVector::from_vec(vec![f64::NAN, 0.0])), Err(WibergError::NonFinite { .. })));
}

/// A robust problem: 4 camera-joint-like 2-D groups (one an outlier), 2 quadratic rows.
fn robust_problem(rng: &mut ChaCha8Rng, delta: f64, mu: f64) -> RobustLeastSquares {
    let n = 3;
    let a = random_matrix(rng, 8, n);
    let mut b = random_vector(rng, 8, -1.0, 1.0);
    b[6] += 5.0; // an outlier group
    let aq = random_matrix(rng, 2, n);
    let bq = random_vector(rng, 2, -1.0, 1.0);
    RobustLeastSquares::new(a, b, 2, delta).unwrap().with_quadratic(aq, bq).unwrap().with_mu(mu).unwrap()
}

const TIGHT: IrlsConfig = IrlsConfig { max_iters: 2000, grad_tol: 1e-13, step_tol: 0.0 };

#[test]
fn irls_implicit_derivative_matches_finite_differences_of_the_solve() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let robust = robust_problem(&mut rng, 0.7, 0.05);
    let sol = robust.solve(&TIGHT, Damping::Implicit).unwrap();
    assert!(sol.report.converged && sol.report.grad_norm <= 1e-13, "{:?}", sol.report);
    let c = DVector::from_vec(vec![0.4, -1.0, 0.7]);
    let grad = robust.backward(&sol, &c).unwrap().to_flat();
    // Perturb every parameter through the flat layout of RobustEnergy and re-solve by IRLS.
    let (energy, w) = robust.to_energy();
    let solve_at = |w: &[f64]| -> f64 {
        // Rebuild the problem from the flat parameters: vec(A_r), b_r, vec(A_q), b_q, delta.
        let (mr, mq, n) = (8, 2, 3);
        let mut at = 0;
        let mut take = |len: usize| {
            let s = w[at..at + len].to_vec();
            at += len;
            s
        };
        let ar = DMatrix::from_column_slice(mr, n, &take(mr * n));
        let br = DVector::from_vec(take(mr));
        let aq = DMatrix::from_column_slice(mq, n, &take(mq * n));
        let bq = DVector::from_vec(take(mq));
        let delta = take(1)[0];
        let p =
            RobustLeastSquares::new(ar, br, 2, delta).unwrap().with_quadratic(aq, bq).unwrap().with_mu(0.05).unwrap();
        c.dot(&p.solve(&TIGHT, Damping::Implicit).unwrap().y)
    };
    assert_eq!(w.len(), energy.num_params());
    assert_eq!(grad.len(), w.len());
    for k in 0..w.len() {
        let (mut wp, mut wm) = (w.clone(), w.clone());
        wp[k] += EPS;
        wm[k] -= EPS;
        let fd = (solve_at(&wp) - solve_at(&wm)) / (2.0 * EPS);
        assert_close(grad[k], fd, 1e-6, &format!("robust parameter {k}"));
    }
    // mu, through the builder.
    let at_mu = |mu: f64| {
        let p = robust.clone().with_mu(mu).unwrap();
        c.dot(&p.solve(&TIGHT, Damping::Implicit).unwrap().y)
    };
    let g = robust.backward(&sol, &c).unwrap();
    assert_close(g.mu, (at_mu(0.05 + EPS) - at_mu(0.05 - EPS)) / (2.0 * EPS), 1e-6, "dl/dmu");
}

#[test]
fn robust_energy_mixed_product_matches_finite_differences_of_the_gradient() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let robust = robust_problem(&mut rng, 1.3, 0.0);
    let (e, w) = robust.to_energy();
    let y = [0.2, -0.4, 0.9];
    let u = [1.0, 0.5, -0.3];
    let mut mixed = vec![0.0; e.num_params()];
    e.mixed_vjp(&y, &w, &u, &mut mixed);
    let mut g = [0.0; 3];
    for k in 0..w.len() {
        let (mut wp, mut wm) = (w.clone(), w.clone());
        wp[k] += EPS;
        wm[k] -= EPS;
        e.gradient(&y, &wp, &mut g);
        let up: f64 = g.iter().zip(&u).map(|(a, b)| a * b).sum();
        e.gradient(&y, &wm, &mut g);
        let um: f64 = g.iter().zip(&u).map(|(a, b)| a * b).sum();
        assert_close(mixed[k], (up - um) / (2.0 * EPS), 1e-7, &format!("mixed product {k}"));
    }
}

#[test]
fn robust_backward_equals_the_argmin_layer_on_the_robust_energy() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let robust = robust_problem(&mut rng, 0.5, 0.01);
    let (e, w) = robust.to_energy();
    let v = DVector::from_vec(vec![1.0, 2.0, -1.0]);
    for damping in [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.1 }] {
        let sol = robust.solve(&IrlsConfig::default(), damping).unwrap();
        // The layer linearises at the IRLS solution (no inner minimiser, no polish).
        let layer = ArgminLayer { minimizer: Minimizer::None, polish: false, damping, ..Default::default() };
        let lsol = layer.forward(&e, &w, Start::Point(sol.y.as_slice())).unwrap();
        let back = layer.backward(&e, &w, &lsol, v.as_slice()).unwrap();
        let ours = robust.backward(&sol, &v).unwrap().to_flat();
        for (k, (a, b)) in ours.iter().zip(&back.grad_w).enumerate() {
            assert!((a - b).abs() <= 1e-10 * (1.0 + b.abs()), "{}: parameter {k}: {a} vs {b}", damping.name());
        }
        // And the layer's own L-BFGS + polish from the origin finds the same minimiser.
        let full = ArgminLayer::with_damping(damping).forward(&e, &w, Start::Point(&[0.0; 3])).unwrap();
        let dist: f64 = full.y.iter().zip(sol.y.iter()).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
        assert!(dist < 1e-7, "{}: layer {:?} vs IRLS {}", damping.name(), full.y, sol.y);
    }
}

#[test]
fn irls_energy_never_increases_and_fixed_iterations_differentiate_where_they_stop() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let robust = robust_problem(&mut rng, 0.3, 1e-3);
    let mut last = f64::INFINITY;
    for iters in 0..12 {
        let fixed = IrlsConfig { max_iters: iters, grad_tol: 0.0, step_tol: 0.0 };
        let sol = robust.solve(&fixed, Damping::TrustRegion { lambda: 1e-3 }).unwrap();
        assert_eq!(sol.report.iterations, iters);
        assert!(sol.report.energy <= last + 1e-12, "IRLS step {iters} raised the energy");
        last = sol.report.energy;
    }
    // Three fixed steps (the pose model's setting) stop short of the minimum; the derivative
    // is still the trust-region derivative of the robust energy at that point.
    let fixed = IrlsConfig { max_iters: 3, grad_tol: 0.0, step_tol: 0.0 };
    let damping = Damping::TrustRegion { lambda: 1e-3 };
    let sol = robust.solve(&fixed, damping).unwrap();
    assert!(!sol.report.converged && sol.report.grad_norm > 1e-8, "{:?}", sol.report);
    let (e, w) = robust.to_energy();
    let layer = ArgminLayer { minimizer: Minimizer::None, polish: false, damping, ..Default::default() };
    let lsol = layer.forward(&e, &w, Start::Point(sol.y.as_slice())).unwrap();
    let v = [0.3, -0.2, 1.0];
    let back = layer.backward(&e, &w, &lsol, &v).unwrap();
    let ours = robust.backward(&sol, &DVector::from_column_slice(&v)).unwrap().to_flat();
    for (k, (a, b)) in ours.iter().zip(&back.grad_w).enumerate() {
        assert!((a - b).abs() <= 1e-10 * (1.0 + b.abs()), "parameter {k}: {a} vs {b}");
    }
}

#[test]
fn irls_with_huge_delta_is_least_squares() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let a = random_matrix(&mut rng, 6, 2);
    let b = random_vector(&mut rng, 6, -1.0, 1.0);
    let ls = LeastSquares::new(a.clone(), b.clone()).unwrap().solve(Damping::Implicit).unwrap();
    let robust = RobustLeastSquares::new(a, b, 3, 1e6).unwrap();
    let sol = robust.solve(&IrlsConfig::default(), Damping::Implicit).unwrap();
    assert!((sol.y - ls.y).norm() < 1e-9);
}

#[test]
fn robust_invalid_inputs_are_typed_errors() {
    let a = DMatrix::from_element(4, 2, 1.0);
    let b = DVector::zeros(4);
    assert!(matches!(RobustLeastSquares::new(a.clone(), b.clone(), 3, 1.0), Err(WibergError::InvalidArgument(_))));
    assert!(matches!(
        RobustLeastSquares::new(a.clone(), DVector::zeros(3), 2, 1.0),
        Err(WibergError::DimensionMismatch { .. })
    ));
    let mut b_nan = b.clone();
    b_nan[0] = f64::INFINITY;
    assert!(matches!(RobustLeastSquares::new(a.clone(), b_nan, 2, 1.0), Err(WibergError::NonFinite { .. })));
    // Every row equal: rank 1 with mu = 0 is singular.
    let rank1 = RobustLeastSquares::new(a, b, 2, 1.0).unwrap();
    assert!(matches!(rank1.solve(&IrlsConfig::default(), Damping::Implicit), Err(WibergError::SingularHessian { .. })));
    let bad = IrlsConfig { grad_tol: f64::NAN, ..Default::default() };
    assert!(rank1.with_mu(0.1).unwrap().solve(&bad, Damping::Implicit).is_err());
}
