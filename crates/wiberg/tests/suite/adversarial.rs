//! Adversarial inputs for the library: NaN, infinities, huge (1e300) and tiny (1e-300) values,
//! zero and negative widths, degenerate point sets, a million kernels, empty inputs and wrong
//! lengths. Each must end in a typed [`WibergError`] or a correct answer: never a panic, a
//! hang, or a NaN inside an `Ok`.

use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wiberg::least_squares::{IrlsConfig, LeastSquares, RobustLeastSquares};
use wiberg::optim::{Adam, Asgd, BoxConstraints, Optimizer, Sgd};
use wiberg::{
    ArgminLayer, DampedSystem, Damping, Energy, LbfgsConfig, LinearSolve, Linearization, Minimizer, NewtonConfig,
    RbfMixture, Solution, Start, WibergError,
};

const BAD: [f64; 3] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];

fn all_finite(v: &[f64]) -> bool {
    v.iter().all(|x| x.is_finite())
}

/// Every layer configuration the adversarial cases run through.
fn layers() -> Vec<ArgminLayer> {
    let mut out = Vec::new();
    let mut minimizers = vec![
        Minimizer::None,
        Minimizer::Lbfgs(LbfgsConfig::with_max_iters(10)),
        Minimizer::Lbfgs(LbfgsConfig::default()),
        Minimizer::TrustRegionNewton(NewtonConfig::default()),
    ];
    if cfg!(feature = "argmin") {
        minimizers.push(Minimizer::Lbfgs(LbfgsConfig {
            backend: wiberg::minimize::LbfgsBackend::Argmin,
            ..Default::default()
        }));
    }
    let dampings = [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.1 }];
    for minimizer in minimizers {
        for damping in dampings {
            for polish in [false, true] {
                for linearization in [Linearization::AtSolution, Linearization::PolishStart] {
                    out.push(ArgminLayer {
                        minimizer,
                        polish,
                        damping,
                        linear_solve: LinearSolve::Dense,
                        linearization,
                    });
                }
            }
        }
    }
    out.push(ArgminLayer {
        linear_solve: LinearSolve::ConjugateGradient { tol: 1e-10, max_iters: 50 },
        ..Default::default()
    });
    out
}

/// Forward then backward (with `v = 1`) and Jacobian; every `Ok` must be finite. Returns the
/// forward result for case-specific checks.
fn run_checked<E: Energy>(layer: &ArgminLayer, e: &E, w: &[f64], start: Start<'_>) -> wiberg::Result<Solution> {
    let sol = layer.forward(e, w, start)?;
    assert!(all_finite(&sol.y), "{layer:?}: Ok forward with y* = {:?}", sol.y);
    assert!(sol.report.energy.is_finite(), "{layer:?}: Ok forward with energy {}", sol.report.energy);
    assert!(all_finite(sol.linearization_point()));
    let v = vec![1.0; e.dim()];
    if let Ok(b) = layer.backward(e, w, &sol, &v) {
        assert!(all_finite(&b.grad_w) && all_finite(&b.u), "{layer:?}: Ok backward with {b:?}");
    }
    if let Ok(j) = layer.jacobian(e, w, &sol) {
        assert!(all_finite(j.as_slice()), "{layer:?}: Ok Jacobian with non-finite entries");
    }
    Ok(sol)
}

#[test]
fn rbf_constructor_rejects_bad_centres_and_maps() {
    for bad in BAD {
        let r = RbfMixture::shared_width(1, vec![0.0, bad, 1.0]);
        assert!(matches!(r, Err(WibergError::NonFinite { .. })), "{bad}: {r:?}");
        let r = RbfMixture::shared_width(2, vec![0.0, 1.0, 2.0, bad]);
        assert!(matches!(r, Err(WibergError::NonFinite { .. })), "{bad}: {r:?}");
    }
    // Empty, ragged, zero-dimensional.
    assert!(matches!(RbfMixture::shared_width(1, vec![]), Err(WibergError::InvalidArgument(_))));
    assert!(matches!(RbfMixture::shared_width(2, vec![1.0, 2.0, 3.0]), Err(WibergError::InvalidArgument(_))));
    assert!(matches!(RbfMixture::shared_width(0, vec![1.0]), Err(WibergError::InvalidArgument(_))));
    // Index maps of the wrong length or out of range.
    assert!(matches!(RbfMixture::new(1, vec![0.0, 1.0], vec![0], None, 1), Err(WibergError::DimensionMismatch { .. })));
    assert!(matches!(
        RbfMixture::new(1, vec![0.0, 1.0], vec![0, 0], Some(vec![1]), 2),
        Err(WibergError::DimensionMismatch { .. })
    ));
    assert!(matches!(RbfMixture::new(1, vec![0.0], vec![1], None, 1), Err(WibergError::InvalidArgument(_))));
    assert!(matches!(RbfMixture::new(1, vec![0.0], vec![0], Some(vec![5]), 2), Err(WibergError::InvalidArgument(_))));
    assert!(matches!(RbfMixture::new(1, vec![0.0], vec![0], None, 0), Err(WibergError::InvalidArgument(_))));
}

#[test]
fn non_finite_parameters_start_seeds_and_loss_gradient_are_typed_errors() {
    let points = vec![-1.0, 0.0, 0.5, 7.0];
    let e = RbfMixture::shared_width(1, points.clone()).unwrap();
    for layer in layers() {
        for bad in BAD {
            let r = layer.forward(&e, &[bad], Start::Seeds(&points));
            assert!(matches!(r, Err(WibergError::NonFinite { .. })), "w = {bad}: {r:?}");
            let r = layer.forward(&e, &[1.0], Start::Point(&[bad]));
            assert!(matches!(r, Err(WibergError::NonFinite { .. })), "start = {bad}: {r:?}");
            let r = layer.forward(&e, &[1.0], Start::Seeds(&[0.0, bad, 1.0]));
            assert!(matches!(r, Err(WibergError::NonFinite { .. })), "seed = {bad}: {r:?}");
        }
        let Ok(sol) = layer.forward(&e, &[1.0], Start::Seeds(&points)) else { continue };
        for bad in BAD {
            let r = layer.backward(&e, &[1.0], &sol, &[bad]);
            assert!(matches!(r, Err(WibergError::NonFinite { .. })), "dl/dy* = {bad}: {r:?}");
        }
    }
}

#[test]
fn wrong_lengths_and_empty_inputs_are_typed_errors() {
    let e = RbfMixture::new(2, vec![0.0, 0.0, 1.0, 1.0], vec![0, 1], None, 2).unwrap();
    let layer = ArgminLayer::default();
    let w = [1.0, 1.5];
    assert!(matches!(layer.forward(&e, &[1.0], Start::Point(&[0.0, 0.0])), Err(WibergError::DimensionMismatch { .. })));
    assert!(matches!(layer.forward(&e, &[], Start::Point(&[0.0, 0.0])), Err(WibergError::DimensionMismatch { .. })));
    assert!(matches!(layer.forward(&e, &w, Start::Point(&[0.0])), Err(WibergError::DimensionMismatch { .. })));
    assert!(matches!(layer.forward(&e, &w, Start::Point(&[])), Err(WibergError::DimensionMismatch { .. })));
    assert!(matches!(layer.forward(&e, &w, Start::Seeds(&[])), Err(WibergError::InvalidArgument(_))));
    assert!(matches!(layer.forward(&e, &w, Start::Seeds(&[0.0, 1.0, 2.0])), Err(WibergError::InvalidArgument(_))));
    let sol = layer.forward(&e, &w, Start::Point(&[0.2, 0.1])).unwrap();
    assert!(matches!(layer.backward(&e, &w, &sol, &[1.0]), Err(WibergError::DimensionMismatch { .. })));
    assert!(matches!(layer.backward(&e, &w, &sol, &[]), Err(WibergError::DimensionMismatch { .. })));
    assert!(matches!(layer.backward(&e, &[1.0], &sol, &[1.0, 1.0]), Err(WibergError::DimensionMismatch { .. })));
    assert!(matches!(layer.jacobian(&e, &[1.0, 2.0, 3.0], &sol), Err(WibergError::DimensionMismatch { .. })));
    // Invalid layer settings.
    for lambda in [0.0, -0.1, f64::NAN, f64::INFINITY] {
        let bad = ArgminLayer::with_damping(Damping::TrustRegion { lambda });
        assert!(matches!(bad.forward(&e, &w, Start::Point(&[0.0, 0.0])), Err(WibergError::InvalidArgument(_))));
        let bad = ArgminLayer::with_damping(Damping::Guarded { lambda });
        assert!(matches!(bad.forward(&e, &w, Start::Point(&[0.0, 0.0])), Err(WibergError::InvalidArgument(_))));
    }
    let bad = ArgminLayer { minimizer: Minimizer::Lbfgs(LbfgsConfig { memory: 0, ..Default::default() }), ..layer };
    assert!(matches!(bad.forward(&e, &w, Start::Point(&[0.0, 0.0])), Err(WibergError::InvalidArgument(_))));
    let bad = ArgminLayer { linear_solve: LinearSolve::ConjugateGradient { tol: f64::NAN, max_iters: 5 }, ..layer };
    assert!(matches!(bad.forward(&e, &w, Start::Point(&[0.0, 0.0])), Err(WibergError::InvalidArgument(_))));
}

#[test]
fn zero_and_tiny_widths_are_errors_never_nan() {
    let points = vec![-1.0, 0.0, 0.5, 7.0];
    let e = RbfMixture::shared_width(1, points.clone()).unwrap();
    assert!(matches!(e.validate_params(&[0.0]), Err(WibergError::InvalidArgument(_))));
    for s in [0.0, -0.0, 1e-300, 5e-324, 1e-170] {
        for layer in layers() {
            // Seeds on the centres: 0 * inf = NaN at every seed; away from them the gradient is NaN.
            let r = run_checked(&layer, &e, &[s], Start::Seeds(&points));
            assert!(r.is_err(), "width {s}, {layer:?}: {r:?}");
            let r = run_checked(&layer, &e, &[s], Start::Point(&[0.25]));
            assert!(r.is_err(), "width {s}, {layer:?}: {r:?}");
        }
    }
}

#[test]
fn negative_width_is_the_same_energy_with_a_sign_flipped_derivative() {
    // E depends on s^2 only: -s is a valid parametrisation, y* is the same and dl/ds flips sign.
    let points = vec![-0.4, 0.1, 0.3, 0.35, 6.0];
    let e = RbfMixture::shared_width(1, points.clone()).unwrap();
    for layer in layers() {
        let (Ok(pos), Ok(neg)) = (
            run_checked(&layer, &e, &[0.8], Start::Seeds(&points)),
            run_checked(&layer, &e, &[-0.8], Start::Seeds(&points)),
        ) else {
            panic!("{layer:?}: width +-0.8 must solve");
        };
        assert_eq!(pos.y, neg.y, "{layer:?}");
        let (Ok(bp), Ok(bn)) = (layer.backward(&e, &[0.8], &pos, &[1.0]), layer.backward(&e, &[-0.8], &neg, &[1.0]))
        else {
            panic!("{layer:?}: backward must succeed at a strict minimum");
        };
        assert!((bp.grad_w[0] + bn.grad_w[0]).abs() <= 1e-12 * bp.grad_w[0].abs().max(1.0), "{bp:?} vs {bn:?}");
    }
}

#[test]
fn huge_width_is_flat_singular_for_implicit_and_zero_gradient_when_damped() {
    // s = 1e300: every kernel is exp(-r / 1e600) = 1, the energy is flat, H = 0 and M = 0.
    let points = vec![-3.0, 0.0, 2.0];
    let e = RbfMixture::shared_width(1, points.clone()).unwrap();
    for layer in layers() {
        match run_checked(&layer, &e, &[1e300], Start::Seeds(&points)) {
            Ok(sol) => {
                assert!(points.contains(&sol.y[0]) || sol.y[0].abs() < 10.0, "{layer:?}: {:?}", sol.y);
                if let Ok(b) = layer.backward(&e, &[1e300], &sol, &[1.0]) {
                    assert_eq!(b.grad_w[0], 0.0, "{layer:?}");
                }
                if layer.damping == Damping::Implicit {
                    let r = layer.backward(&e, &[1e300], &sol, &[1.0]);
                    assert!(matches!(r, Err(WibergError::SingularHessian { .. })), "{layer:?}: {r:?}");
                }
            }
            Err(err) => assert!(
                matches!(err, WibergError::SingularHessian { .. }),
                "{layer:?}: only the polish's singular solve may fail, got {err:?}"
            ),
        }
    }
}

#[test]
fn huge_and_tiny_centres_give_the_right_minimiser() {
    // Centres at +-1e300: the squared distance between them overflows to inf, exp(-inf) = 0,
    // so each kernel is alone and y* is exactly a centre.
    let points = vec![-1e300, 1e300, 1e300];
    let e = RbfMixture::shared_width(1, points.clone()).unwrap();
    for layer in layers() {
        if let Ok(sol) = run_checked(&layer, &e, &[1.0], Start::Seeds(&points)) {
            assert_eq!(sol.y[0], 1e300, "{layer:?}: the double kernel is lowest");
        } else if layer.damping != Damping::Implicit {
            panic!("{layer:?}: a damped layer must solve this");
        }
    }
    // Centres at 1e-300 scale: all at (numerically) one point.
    let tiny = vec![1e-300, -1e-300, 3e-300];
    let e = RbfMixture::shared_width(1, tiny.clone()).unwrap();
    for layer in layers() {
        let sol = run_checked(&layer, &e, &[1.0], Start::Seeds(&tiny)).expect("tiny centres solve");
        assert!(sol.y[0].abs() < 1e-290, "{layer:?}: {:?}", sol.y);
    }
    // Huge start point far from every kernel: flat (zero-gradient) region, no NaN.
    let e = RbfMixture::shared_width(1, vec![0.0, 1.0]).unwrap();
    for layer in layers() {
        let _ = run_checked(&layer, &e, &[1.0], Start::Point(&[1e300]));
        let _ = run_checked(&layer, &e, &[1.0], Start::Point(&[-f64::MAX]));
    }
    // Huge weights: energies of -1e300 scale; the weights must not turn into inf silently.
    let e = RbfMixture::new(1, vec![0.0, 1.0], vec![0, 0], Some(vec![1, 2]), 3).unwrap();
    for layer in layers() {
        for w in [[1.0, 1e300, 1e300], [1.0, f64::MAX, f64::MAX], [1.0, -1e300, 1e300], [1.0, 1e-300, 0.0]] {
            let _ = run_checked(&layer, &e, &w, Start::Seeds(&[0.0, 1.0]));
        }
    }
}

#[test]
fn all_points_identical_and_single_point_are_exact() {
    for points in [vec![3.0; 110], vec![3.0]] {
        let e = RbfMixture::shared_width(1, points.clone()).unwrap();
        for layer in layers() {
            let sol = run_checked(&layer, &e, &[1.3], Start::Seeds(&points)).expect("a strict minimum");
            assert!((sol.y[0] - 3.0).abs() < 1e-12, "{layer:?}: {:?}", sol.y);
            // At the centre the kernel's width derivative of the gradient vanishes: dl/ds = 0.
            let b = layer.backward(&e, &[1.3], &sol, &[1.0]).expect("H > 0 at the centre");
            assert!(b.grad_w[0].abs() < 1e-9, "{layer:?}: {b:?}");
        }
    }
    // The same in 3-D with per-kernel weights, one of them zero.
    let centers = [0.5, -1.0, 2.0].repeat(4);
    let e = RbfMixture::new(3, centers, vec![0; 4], Some(vec![1, 1, 2, 2]), 3).unwrap();
    for layer in layers().into_iter().filter(|l| l.minimizer != Minimizer::None) {
        let sol = run_checked(&layer, &e, &[0.7, 1.0, 0.0], Start::Point(&[0.6, -0.9, 2.1])).expect("strict minimum");
        for (a, b) in sol.y.iter().zip([0.5, -1.0, 2.0]) {
            assert!((a - b).abs() < 1e-7, "{layer:?}: {:?}", sol.y);
        }
    }
}

#[test]
fn a_million_kernels_with_the_seed_scan() {
    // 10^6 one-dimensional points spread over [-1e6, 1e6] plus a tight cluster: the seed scan
    // visits only the kernels within the cut-off of each seed, so this stays fast.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut points: Vec<f64> = (0..999_990).map(|_| rng.random_range(-1e6..1e6)).collect();
    points.extend((0..10).map(|i| 123.0 + 0.01 * i as f64));
    let e = RbfMixture::shared_width(1, points.clone()).unwrap();
    let layer = ArgminLayer::with_damping(Damping::TrustRegion { lambda: 0.1 });
    let sol = run_checked(&layer, &e, &[1.0], Start::Seeds(&points)).expect("solves");
    assert!((sol.y[0] - 123.045).abs() < 0.05, "the cluster is the deepest well: {:?}", sol.y);
    assert!(sol.report.final_grad_norm < 1e-8, "{:?}", sol.report);
    let b = layer.backward(&e, &[1.0], &sol, &[1.0]).expect("backward");
    assert!(b.grad_w[0].is_finite());
}

#[test]
fn least_squares_adversarial_inputs() {
    let a = DMatrix::from_row_slice(3, 2, &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let b = DVector::from_vec(vec![1.0, 2.0, 3.0]);
    for bad in BAD {
        let mut ab = a.clone();
        ab[(1, 1)] = bad;
        assert!(matches!(LeastSquares::new(ab, b.clone()), Err(WibergError::NonFinite { .. })));
        let mut bb = b.clone();
        bb[2] = bad;
        assert!(matches!(LeastSquares::new(a.clone(), bb.clone()), Err(WibergError::NonFinite { .. })));
        let ls = LeastSquares::new(a.clone(), b.clone()).unwrap();
        assert!(ls.clone().with_weights(DVector::from_vec(vec![1.0, bad, 1.0])).is_err());
        assert!(ls.clone().with_mu(bad).is_err());
        let sol = ls.solve(Damping::Implicit).unwrap();
        assert!(matches!(ls.backward(&sol, &DVector::from_vec(vec![bad, 0.0])), Err(WibergError::NonFinite { .. })));
        assert!(RobustLeastSquares::new(a.clone(), b.clone(), 1, bad).is_err());
    }
    assert!(LeastSquares::new(DMatrix::zeros(0, 0), DVector::zeros(0)).is_err());
    assert!(LeastSquares::new(DMatrix::zeros(3, 0), DVector::zeros(3)).is_err());
    assert!(RobustLeastSquares::new(a.clone(), b.clone(), 2, 1.0).is_err(), "3 rows in groups of 2");
    assert!(RobustLeastSquares::new(a.clone(), b.clone(), 0, 1.0).is_err());
    assert!(RobustLeastSquares::new(a.clone(), b.clone(), 1, 0.0).is_err());
    assert!(RobustLeastSquares::new(a.clone(), b.clone(), 1, -1.0).is_err());
    // All-zero weights: singular normal matrix, typed error under implicit; ridge makes it solvable.
    let ls = LeastSquares::new(a.clone(), b.clone()).unwrap().with_weights(DVector::zeros(3)).unwrap();
    assert!(matches!(ls.solve(Damping::Implicit), Err(WibergError::SingularHessian { .. })));
    let sol = ls.with_mu(1e-3).unwrap().solve(Damping::Implicit).unwrap();
    assert_eq!(sol.y.norm(), 0.0);
    // Huge and tiny entries: a typed error or a finite answer.
    for scale in [1e300, 1e154, 1e-300, 1e-160] {
        let ls = LeastSquares::new(&a * scale, &b * scale).unwrap();
        for damping in [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.1 }] {
            if let Ok(sol) = ls.solve(damping) {
                assert!(all_finite(sol.y.as_slice()) && all_finite(sol.residual.as_slice()), "{scale}: {sol:?}");
                assert!(sol.energy.is_finite(), "{scale}: energy {}", sol.energy);
                if let Ok(g) = ls.backward(&sol, &DVector::from_vec(vec![1.0, 1.0])) {
                    for part in [g.a.as_slice(), g.b.as_slice(), g.weights.as_slice(), g.u.as_slice(), &[g.mu]] {
                        assert!(all_finite(part), "{scale}: {g:?}");
                    }
                }
            }
        }
        let robust = RobustLeastSquares::new(&a * scale, &b * scale, 1, 1.0).unwrap();
        if let Ok(sol) = robust.solve(&IrlsConfig::default(), Damping::TrustRegion { lambda: 0.1 }) {
            assert!(all_finite(sol.y.as_slice()) && sol.report.energy.is_finite(), "{scale}: {:?}", sol.report);
            if let Ok(g) = robust.backward(&sol, &DVector::from_vec(vec![1.0, 1.0])) {
                assert!(all_finite(&g.to_flat()), "{scale}: {g:?}");
            }
        }
    }
}

#[test]
fn damped_system_adversarial_matrices() {
    // Empty and non-square.
    for (r, c) in [(0, 0), (2, 3), (3, 2), (0, 1)] {
        let r = DampedSystem::factorize(DMatrix::zeros(r, c), Damping::TrustRegion { lambda: 0.1 });
        assert!(matches!(r, Err(WibergError::DimensionMismatch { .. })), "{r:?}");
    }
    for bad in BAD {
        let mut h = DMatrix::identity(3, 3);
        h[(0, 2)] = bad;
        assert!(matches!(DampedSystem::factorize(h, Damping::Implicit), Err(WibergError::NonFinite { .. })));
    }
    // Zero matrix: singular for implicit, exactly v / lambda when damped.
    for n in [1, 2, 5, 70] {
        let z = DMatrix::zeros(n, n);
        assert!(matches!(
            DampedSystem::factorize(z.clone(), Damping::Implicit),
            Err(WibergError::SingularHessian { .. })
        ));
        for damping in [Damping::TrustRegion { lambda: 0.5 }, Damping::Guarded { lambda: 0.5 }] {
            let sys = DampedSystem::factorize(z.clone(), damping).unwrap();
            let x = sys.solve(&vec![1.0; n]).unwrap();
            assert!(x.iter().all(|v| (v - 2.0).abs() < 1e-15), "{x:?}");
        }
    }
    // Exactly -lambda I under trust region: singular, typed.
    for n in [1, 3, 70] {
        let h = DMatrix::identity(n, n) * -0.1;
        let r = DampedSystem::factorize(h, Damping::TrustRegion { lambda: 0.1 });
        assert!(matches!(r, Err(WibergError::SingularHessian { .. })), "n = {n}: {r:?}");
    }
    // Huge and tiny scales: typed error or finite diagnostics and solutions.
    for scale in [1e300, -1e300, f64::MAX, 1e-300, 5e-324] {
        for n in [1, 2, 4, 66] {
            let h = DMatrix::from_fn(n, n, |i, j| {
                if i == j {
                    scale
                } else if i.abs_diff(j) == 1 {
                    0.5 * scale
                } else {
                    0.0
                }
            });
            for damping in [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.1 }] {
                let Ok(sys) = DampedSystem::factorize(h.clone(), damping) else { continue };
                let d = sys.diagnostics();
                assert!(d.shift.is_finite() && d.condition.is_finite(), "{scale} {n} {damping:?}: {d:?}");
                assert!(d.min_eigenvalue.is_finite() && d.max_eigenvalue.is_finite(), "{scale} {n} {damping:?}: {d:?}");
                if let Ok(x) = sys.solve(&vec![1.0; n]) {
                    assert!(all_finite(&x));
                }
            }
        }
    }
}

#[test]
fn optimizers_refuse_bad_gradients_and_keep_parameters() {
    let mut opts: Vec<Box<dyn Optimizer>> = vec![
        Box::new(Sgd::new(0.1, 0.0).unwrap()),
        Box::new(Sgd::new(0.1, 0.9).unwrap().nesterov()),
        Box::new(Asgd::new(0.1, 1e-4, 0.75, 0.0).unwrap()),
        Box::new(Adam::new(0.1).unwrap()),
    ];
    for opt in opts.iter_mut() {
        let mut w = [1.0, 2.0];
        for bad in BAD {
            assert!(matches!(opt.step(&mut w, &[0.1, bad]), Err(WibergError::NonFinite { .. })));
            assert_eq!(w, [1.0, 2.0]);
        }
        assert!(matches!(opt.step(&mut w, &[0.1]), Err(WibergError::DimensionMismatch { .. })));
        assert_eq!(w, [1.0, 2.0]);
        opt.step(&mut w, &[0.1, 0.1]).unwrap();
        assert!(all_finite(&w));
    }
    for lr in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(Sgd::new(lr, 0.0).is_err() && Adam::new(lr).is_err() && Asgd::new(lr, 0.0, 0.75, 0.0).is_err());
    }
    assert!(Sgd::new(0.1, 1.0).is_err() && Sgd::new(0.1, f64::NAN).is_err());
    assert!(BoxConstraints::new(vec![1.0], vec![0.0]).is_err());
    assert!(BoxConstraints::new(vec![f64::NAN], vec![0.0]).is_err());
    let b = BoxConstraints::new(vec![0.0, f64::NEG_INFINITY], vec![1.0, f64::INFINITY]).unwrap();
    let mut w = [1e300, -1e300];
    b.project(&mut w).unwrap();
    assert_eq!(w, [1.0, -1e300]);
    assert!(b.project(&mut [0.0]).is_err());
}

#[test]
fn newton_and_lbfgs_budgets_end_every_solve() {
    // A zero evaluation budget, zero iterations, or an enormous tolerance: all end at once
    // with a report or a typed error, never a hang.
    let points = vec![-1.0, 0.0, 0.5];
    let e = RbfMixture::shared_width(1, points.clone()).unwrap();
    for minimizer in [
        Minimizer::Lbfgs(LbfgsConfig { max_evals: 1, ..Default::default() }),
        Minimizer::Lbfgs(LbfgsConfig { max_iters: 0, ..Default::default() }),
        Minimizer::Lbfgs(LbfgsConfig { grad_tol: f64::INFINITY, ..Default::default() }),
        Minimizer::Lbfgs(LbfgsConfig { grad_tol: 0.0, max_iters: 100_000, ..Default::default() }),
        Minimizer::TrustRegionNewton(NewtonConfig { max_iters: 0, ..Default::default() }),
        Minimizer::TrustRegionNewton(NewtonConfig { grad_tol: 0.0, max_iters: 100_000, ..Default::default() }),
        Minimizer::TrustRegionNewton(NewtonConfig { initial_mu: f64::NAN, ..Default::default() }),
        Minimizer::TrustRegionNewton(NewtonConfig { initial_mu: 1e300, ..Default::default() }),
    ] {
        let layer = ArgminLayer { minimizer, ..Default::default() };
        match run_checked(&layer, &e, &[1.0], Start::Seeds(&points)) {
            Ok(sol) => assert!(sol.y[0] > -1.5 && sol.y[0] < 1.0, "{minimizer:?}: {:?}", sol.y),
            Err(err) => assert!(matches!(err, WibergError::InvalidArgument(_)), "{minimizer:?}: {err:?}"),
        }
    }
}
