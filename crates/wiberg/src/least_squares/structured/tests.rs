use super::*;
use crate::least_squares::{IrlsConfig, LeastSquares, RobustLeastSquares};
use crate::DampedSystem;
use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const M: usize = 3;
const K: usize = 4;
const N: usize = M + 2 * K;

/// A random problem with blocks of 2: fixed rows on (border, one block) and a ridge `mu`,
/// robust groups of two rows, some with a border part. Returns the structured form and the
/// dense rows (`A_q, b_q` fixed, `A_r, b_r` robust).
struct Problem {
    fixed: FixedQuadratic<2>,
    rows: RobustRows<2>,
    a_q: DMatrix<f64>,
    b_q: DVector<f64>,
    a_r: DMatrix<f64>,
    b_r: DVector<f64>,
    mu: f64,
}

fn problem(seed: u64, mu: f64) -> Problem {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut u = || rng.random_range(-1.0..1.0);
    let n_fixed = 2 * K;
    let mut a_q = DMatrix::zeros(n_fixed, N);
    let mut b_q = DVector::zeros(n_fixed);
    for i in 0..n_fixed {
        let j = i % K;
        for c in 0..M {
            a_q[(i, c)] = u();
        }
        for d in 0..2 {
            a_q[(i, M + 2 * j + d)] = u();
        }
        b_q[i] = u();
    }
    let n_groups = 3 * K;
    let mut a_r = DMatrix::zeros(2 * n_groups, N);
    let mut b_r = DVector::zeros(2 * n_groups);
    let mut rows = RobustRows::<2>::new(M, K);
    for g in 0..n_groups {
        let j = g % K;
        for r in 2 * g..2 * g + 2 {
            let coeffs = [u(), u()];
            let target = 3.0 * u();
            a_r[(r, M + 2 * j)] = coeffs[0];
            a_r[(r, M + 2 * j + 1)] = coeffs[1];
            b_r[r] = target;
            if g % 3 == 0 {
                let border: Vec<f64> = (0..M).map(|_| u()).collect();
                for c in 0..M {
                    a_r[(r, c)] = border[c];
                }
                rows.push_row(Some(j), coeffs, &border, target).unwrap();
            } else {
                rows.push_block_row(j, coeffs, target).unwrap();
            }
        }
        rows.end_group();
    }
    // One border-only row in a group of its own would break the dense type's fixed group
    // size; the border-only path is covered by the documentation example.
    let mut fixed = FixedQuadratic::<2>::new(M, K);
    let dense_f = a_q.transpose() * &a_q + DMatrix::identity(N, N) * mu;
    set_dense(&mut fixed, &dense_f);
    fixed.rhs_mut().copy_from_slice((a_q.transpose() * &b_q).as_slice());
    Problem { fixed, rows, a_q, b_q, a_r, b_r, mu }
}

/// Writes a dense symmetric block-arrow matrix into `fixed` (block-block entries must be 0).
fn set_dense(fixed: &mut FixedQuadratic<2>, h: &DMatrix<f64>) {
    for p in 0..M {
        for q in 0..M {
            fixed.border_mut()[p * M + q] = h[(p, q)];
        }
    }
    for (j, blk) in fixed.blocks_mut().iter_mut().enumerate() {
        for d in 0..2 {
            for e in 0..2 {
                blk[d][e] = h[(M + 2 * j + d, M + 2 * j + e)];
            }
        }
    }
    for (r, row) in fixed.coupling_rows_mut().enumerate() {
        for c in 0..M {
            row[c] = h[(M + r, c)];
        }
    }
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    let scale = b.iter().fold(1.0f64, |s, v| s.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * scale, "{what}[{i}]: {x} vs {y}");
    }
}

#[test]
fn irls_solution_equals_the_dense_robust_least_squares() {
    for seed in 0..8 {
        let p = problem(seed, 0.1);
        let delta = 0.7;
        let dense = RobustLeastSquares::new(p.a_r.clone(), p.b_r.clone(), 2, delta)
            .unwrap()
            .with_quadratic(p.a_q.clone(), p.b_q.clone())
            .unwrap()
            .with_mu(p.mu)
            .unwrap();
        for reweights in [0, 1, 3] {
            let config = IrlsConfig { max_iters: reweights, grad_tol: 0.0, step_tol: 0.0 };
            let reference = dense.solve(&config, Damping::Implicit).unwrap();
            assert_eq!(reference.report.iterations, reweights);
            let mut irls = StructuredIrls::<2>::new(M, K);
            let loss = PseudoHuber::new(delta).unwrap();
            let y = irls.solve(&p.fixed, &p.fixed, &p.rows, &loss, reweights, Damping::Implicit).unwrap();
            close(y, reference.y.as_slice(), 1e-10, "y");
        }
    }
}

#[test]
fn frozen_weight_gradients_equal_the_dense_weighted_least_squares() {
    for seed in 0..8 {
        let p = problem(100 + seed, 0.05);
        let mut irls = StructuredIrls::<2>::new(M, K);
        let loss = PseudoHuber::new(0.5).unwrap();
        irls.solve(&p.fixed, &p.fixed, &p.rows, &loss, 3, Damping::Implicit).unwrap();
        let weights = irls.weights().to_vec();
        assert!(weights.iter().any(|w| *w < 0.9), "the loss should reweight: {weights:?}");
        // The dense weighted problem of the last solve: fixed rows (weight 1) then robust rows.
        let n_q = p.a_q.nrows();
        let n_r = p.a_r.nrows();
        let mut a = DMatrix::zeros(n_q + n_r, N);
        a.rows_mut(0, n_q).copy_from(&p.a_q);
        a.rows_mut(n_q, n_r).copy_from(&p.a_r);
        let b = DVector::from_iterator(n_q + n_r, p.b_q.iter().chain(p.b_r.iter()).copied());
        let w = DVector::from_iterator(n_q + n_r, (0..n_q).map(|_| 1.0).chain((0..n_r).map(|r| weights[r / 2])));
        let ls = LeastSquares::new(a, b).unwrap().with_weights(w).unwrap().with_mu(p.mu).unwrap();
        for damping in [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.2 }] {
            let sol = ls.solve(damping).unwrap();
            close(irls.y(), sol.y.as_slice(), 1e-10, "y");
            let v = DVector::from_fn(N, |i, _| (i as f64 * 0.7).sin());
            let g = ls.backward(&sol, &v).unwrap();
            let mut u = v.as_slice().to_vec();
            irls.adjoint(&p.fixed, &p.rows, &weights, damping, &mut u).unwrap();
            close(&u, g.u.as_slice(), 1e-10, "u");
            let y = irls.y().to_vec();
            for r in 0..n_r {
                let mut border = vec![0.0; if p.a_r[(r, 0)] != 0.0 { M } else { 0 }];
                let rg = p.rows.row_gradient(r, weights[r / 2], 0.0, &y, &u, &mut border).unwrap();
                let dense_row = g.a.row(n_q + r);
                let j = p.rows.block_of(r).unwrap();
                close(&rg.coeffs, &[dense_row[M + 2 * j], dense_row[M + 2 * j + 1]], 1e-10, "dl/da (block)");
                if !border.is_empty() {
                    close(&border, &dense_row.iter().take(M).copied().collect::<Vec<_>>(), 1e-10, "dl/da (border)");
                }
                close(&[rg.target], &[g.b[n_q + r]], 1e-10, "dl/db");
                // The dense gradient is per row weight; a group's weight is shared by its rows.
                close(&[rg.weight], &[g.weights[n_q + r]], 1e-10, "dl/dw");
            }
        }
    }
}

#[test]
fn a_kept_factor_solves_bit_for_bit_as_the_adjoint_of_its_solve() {
    let p = problem(7, 0.05);
    let loss = PseudoHuber::new(0.5).unwrap();
    for damping in [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }] {
        let mut irls = StructuredIrls::<2>::new(M, K);
        // A kept factor of other dimensions is fine: the solver resizes what it receives.
        let mut kept = BlockArrowFactor::<2>::new(1, 1);
        irls.solve(&p.fixed, &p.fixed, &p.rows, &loss, 3, damping).unwrap();
        irls.swap_factor(&mut kept);
        let weights = irls.weights().to_vec();
        let v: Vec<f64> = (0..N).map(|i| (i as f64 * 0.7).sin()).collect();
        let mut u_kept = v.clone();
        kept.solve_in_place(&mut u_kept).unwrap();
        let mut u = v;
        irls.adjoint(&p.fixed, &p.rows, &weights, damping, &mut u).unwrap();
        assert_eq!(u_kept, u, "{damping:?}");
    }
}

#[test]
fn guarded_adjoint_shifts_an_indefinite_fixed_part_to_at_least_lambda() {
    let mut p = problem(7, 0.0);
    // Make the fixed part indefinite: subtract 3 from the border's diagonal.
    let mut dense_f = p.a_q.transpose() * &p.a_q;
    for c in 0..M {
        dense_f[(c, c)] -= 3.0;
    }
    set_dense(&mut p.fixed, &dense_f);
    let weights = vec![1.0; p.rows.n_groups()];
    let mut irls = StructuredIrls::<2>::new(M, K);
    let lambda = 0.25;
    let mut u: Vec<f64> = (0..N).map(|i| 1.0 + i as f64).collect();
    let v = u.clone();
    irls.adjoint(&p.fixed, &p.rows, &weights, Damping::Guarded { lambda }, &mut u).unwrap();
    let n = dense_f + p.a_r.transpose() * &p.a_r;
    let min_eig = n.clone().symmetric_eigen().eigenvalues.min();
    assert!(min_eig < 0.0, "the test needs an indefinite matrix, min eigenvalue {min_eig}");
    let shift = irls.factor().diagnostics().shift;
    let shifted = &n + DMatrix::identity(N, N) * shift;
    let min_shifted = shifted.clone().symmetric_eigen().eigenvalues.min();
    assert!(min_shifted >= lambda * (1.0 - 1e-9), "min eigenvalue of N + sI {min_shifted}");
    assert!(min_shifted <= lambda * (1.0 + 1e-6), "shift {shift} larger than needed");
    let dense = DampedSystem::factorize(n, Damping::Guarded { lambda }).unwrap();
    close(&u, &dense.solve(&v).unwrap(), 1e-8, "guarded u");
    // The same indefinite system without a guard is solved as it is, or refused as singular.
    let mut w = v.clone();
    match irls.adjoint(&p.fixed, &p.rows, &weights, Damping::Implicit, &mut w) {
        Ok(()) => assert!(w.iter().all(|x| x.is_finite())),
        Err(e) => assert!(matches!(e, WibergError::SingularHessian { .. }), "{e}"),
    }
}

#[test]
fn squared_loss_is_plain_least_squares_and_bad_input_is_an_error() {
    let p = problem(3, 0.1);
    let mut irls = StructuredIrls::<2>::new(M, K);
    let y0 = irls.solve(&p.fixed, &p.fixed, &p.rows, &SquaredLoss, 0, Damping::Implicit).unwrap().to_vec();
    let y2 = irls.solve(&p.fixed, &p.fixed, &p.rows, &SquaredLoss, 2, Damping::Implicit).unwrap().to_vec();
    assert_eq!(y0, y2);
    assert!(irls.weights().iter().all(|w| *w == 1.0));
    // Wrong dimensions, wrong weight count, non-finite weights, a row off the blocks.
    let mut other = StructuredIrls::<2>::new(M, K + 1);
    assert!(matches!(
        other.solve(&p.fixed, &p.fixed, &p.rows, &SquaredLoss, 0, Damping::Implicit),
        Err(WibergError::DimensionMismatch { .. })
    ));
    assert!(irls.solve_with_weights(&p.fixed, &p.rows, &[1.0], Damping::Implicit).is_err());
    let mut nan = vec![1.0; p.rows.n_groups()];
    nan[0] = f64::NAN;
    assert!(matches!(
        irls.solve_with_weights(&p.fixed, &p.rows, &nan, Damping::Implicit),
        Err(WibergError::NonFinite { .. })
    ));
    let mut rows = RobustRows::<2>::new(M, K);
    assert!(rows.push_block_row(K, [1.0, 0.0], 0.0).is_err());
    assert!(rows.push_row(Some(0), [1.0, 0.0], &[1.0], 0.0).is_err());
    assert!(PseudoHuber::new(0.0).is_err() && PseudoHuber::new(f64::NAN).is_err());
    assert!(PseudoHuber::new(1.0).unwrap().with_smoothing(0.0, -1.0).is_err());
    // A zero matrix without damping is singular: a typed error, not NaN.
    let zero = FixedQuadratic::<2>::new(M, K);
    let empty = RobustRows::<2>::new(M, K);
    assert!(matches!(
        irls.solve(&zero, &zero, &empty, &SquaredLoss, 0, Damping::Implicit),
        Err(WibergError::SingularHessian { .. })
    ));
}

#[test]
fn pseudo_huber_weight_is_twice_the_derivative_of_its_energy() {
    let loss = PseudoHuber::new(0.3).unwrap().with_smoothing(1e-3, 1e-4).unwrap();
    for r in [[0.0, 0.0], [0.1, -0.2], [2.0, 5.0]] {
        let s = (r[0] + 1e-3f64).powi(2) + (r[1] + 1e-3f64).powi(2) + 1e-4;
        // rho(s) as a function of s: d rho / ds by central differences.
        let h = 1e-6 * s.max(1e-3);
        let rho = |s: f64| 0.09 * ((1.0 + s / 0.09).sqrt() - 1.0);
        let drho = (rho(s + h) - rho(s - h)) / (2.0 * h);
        assert!((loss.weight(&r) - 2.0 * drho).abs() < 1e-7, "{r:?}");
        assert!((loss.energy(&r) - rho(s)).abs() < 1e-15);
    }
    assert!(loss.weight(&[100.0, 0.0]) < 0.01);
    assert_eq!(SquaredLoss.energy(&[3.0, 4.0]), 12.5);
}

/// Central differences of `f` in row `r`'s target, block coefficients and border coefficients
/// (the last empty when the row has no border part), steps of `h`.
fn row_differences(
    rows: &RobustRows<2>,
    r: usize,
    h: f64,
    mut f: impl FnMut(&RobustRows<2>) -> f64,
) -> (f64, [f64; 2], Vec<f64>) {
    let mut diff = |perturb: &dyn Fn(&mut RobustRows<2>, f64)| {
        let (mut plus, mut minus) = (rows.clone(), rows.clone());
        perturb(&mut plus, h);
        perturb(&mut minus, -h);
        (f(&plus) - f(&minus)) / (2.0 * h)
    };
    let target = diff(&|x, d| x.rows[r].target += d);
    let coeffs = [0, 1].map(|c| diff(&|x, d| x.rows[r].coeffs[c] += d));
    let border = match rows.border_rows.iter().find(|&&(row, _)| row == r) {
        Some(&(_, at)) => (0..M).map(|c| diff(&|x, d| x.border[at + c] += d)).collect(),
        None => Vec::new(),
    };
    (target, coeffs, border)
}

/// [`row_differences`] against a row's gradient `g` and its border part `border`: each within
/// `1e-6 (1 + |difference|)`.
fn check_row_differences(
    (d_target, d_coeffs, d_border): (f64, [f64; 2], Vec<f64>),
    g: &RowGradient<2>,
    border: &[f64],
) -> std::result::Result<(), proptest::test_runner::TestCaseError> {
    proptest::prop_assert!(
        (d_target - g.target).abs() < 1e-6 * (1.0 + d_target.abs()),
        "target: {d_target} vs {}",
        g.target
    );
    for c in 0..2 {
        let d = d_coeffs[c];
        proptest::prop_assert!((d - g.coeffs[c]).abs() < 1e-6 * (1.0 + d.abs()), "coeff {c}: {d} vs {}", g.coeffs[c]);
    }
    proptest::prop_assert_eq!(d_border.len(), border.len());
    for (c, &d) in d_border.iter().enumerate() {
        proptest::prop_assert!((d - border[c]).abs() < 1e-6 * (1.0 + d.abs()), "border {c}: {d} vs {}", border[c]);
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 48,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_1ea5),
        failure_persistence: None,
        ..Default::default()
    })]

    /// The frozen-weight derivative (implicit) is the exact derivative of `w -> N(w)^-1 r(w)`
    /// with the weights held: central differences in a row's target and coefficients, a
    /// group's weight and the fixed right-hand side agree with `row_gradient` and `u`.
    #[test]
    fn frozen_weight_derivative_matches_finite_differences(seed in 0u64..1_000, r in 0usize..24, i in 0usize..N) {
        let p = problem(seed, 0.2);
        let mut irls = StructuredIrls::<2>::new(M, K);
        let loss = PseudoHuber::new(0.8).unwrap();
        irls.solve(&p.fixed, &p.fixed, &p.rows, &loss, 2, Damping::Implicit).unwrap();
        let weights = irls.weights().to_vec();
        let y = irls.y().to_vec();
        // l = y_i.
        let mut u = vec![0.0; N];
        u[i] = 1.0;
        irls.adjoint(&p.fixed, &p.rows, &weights, Damping::Implicit, &mut u).unwrap();
        let mut border = vec![0.0; if p.rows.border_of(r).is_some() { M } else { 0 }];
        let g = p.rows.row_gradient(r, weights[r / 2], 0.0, &y, &u, &mut border).unwrap();
        let h = 1e-6;
        let mut solver = StructuredIrls::<2>::new(M, K);
        let mut fd = |rows: &RobustRows<2>, fixed: &FixedQuadratic<2>, w: &[f64]| {
            solver.solve_with_weights(fixed, rows, w, Damping::Implicit).unwrap()[i]
        };
        // Target, block and border coefficients.
        let differences = row_differences(&p.rows, r, h, |rows| fd(rows, &p.fixed, &weights));
        check_row_differences(differences, &g, &border)?;
        // The group's weight: both rows' terms.
        let grp = r / 2;
        let dw: f64 = p.rows.group(grp).map(|k| {
            let mut b = vec![0.0; if p.rows.border_of(k).is_some() { M } else { 0 }];
            p.rows.row_gradient(k, weights[grp], 0.0, &y, &u, &mut b).unwrap().weight
        }).sum();
        let (mut wp, mut wm) = (weights.clone(), weights.clone());
        wp[grp] += h;
        wm[grp] -= h;
        let d = (fd(&p.rows, &p.fixed, &wp) - fd(&p.rows, &p.fixed, &wm)) / (2.0 * h);
        proptest::prop_assert!((d - dw).abs() < 1e-6 * (1.0 + d.abs()), "weight: {d} vs {dw}");
        // The fixed right-hand side: dl/df = u.
        let k = (r * 7) % N;
        let (mut fp, mut fm) = (p.fixed.clone(), p.fixed.clone());
        fp.rhs_mut()[k] += h;
        fm.rhs_mut()[k] -= h;
        let d = (fd(&p.rows, &fp, &weights) - fd(&p.rows, &fm, &weights)) / (2.0 * h);
        proptest::prop_assert!((d - u[k]).abs() < 1e-6 * (1.0 + d.abs()), "fixed rhs: {d} vs {}", u[k]);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 32,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5c0_4e5),
        failure_persistence: None,
        ..Default::default()
    })]

    /// A loss that also sees a row's residual directly (`l = y_i + gamma e_r(y)`, as a score
    /// of the solution does): `row_gradient` with `residual_grad = gamma` and
    /// `u = N^-1 dl/dy` agrees with central differences of the whole `l` in the row's target,
    /// block coefficients and border coefficients.
    #[test]
    fn residual_grad_adds_the_direct_path(seed in 0u64..1_000, r in 0usize..24, i in 0usize..N, gamma in -2.0f64..2.0) {
        let p = problem(seed, 0.2);
        let mut irls = StructuredIrls::<2>::new(M, K);
        let loss = PseudoHuber::new(0.8).unwrap();
        irls.solve(&p.fixed, &p.fixed, &p.rows, &loss, 2, Damping::Implicit).unwrap();
        let weights = irls.weights().to_vec();
        let y = irls.y().to_vec();
        // dl/dy = e_i + gamma a_r.
        let mut u: Vec<f64> = (0..N).map(|k| gamma * p.a_r[(r, k)]).collect();
        u[i] += 1.0;
        irls.adjoint(&p.fixed, &p.rows, &weights, Damping::Implicit, &mut u).unwrap();
        let mut border = vec![0.0; if p.rows.border_of(r).is_some() { M } else { 0 }];
        let g = p.rows.row_gradient(r, weights[r / 2], gamma, &y, &u, &mut border).unwrap();
        let h = 1e-6;
        let mut solver = StructuredIrls::<2>::new(M, K);
        let l = |rows: &RobustRows<2>| {
            let y = solver.solve_with_weights(&p.fixed, rows, &weights, Damping::Implicit).unwrap().to_vec();
            y[i] + gamma * rows.residual(r, &y)
        };
        check_row_differences(row_differences(&p.rows, r, h, l), &g, &border)?;
    }
}
