//! The block-arrow damped factorisation against the dense `DampedSystem`: random positive
//! definite, near-singular and indefinite block-arrow systems, every damping mode.

use nalgebra::{DMatrix, DVector};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wiberg::damped::{BlockArrow, BlockArrowFactor, DampedFactor};
use wiberg::{DampedSystem, Damping, LinearSolver, WibergError};

/// A random block-arrow matrix `J^T J + diag` built from a random sparse "Jacobian" with the
/// block-arrow pattern, shifted by `diag_shift` (negative: indefinite).
fn random_block_arrow<const B: usize>(rng: &mut ChaCha8Rng, m: usize, k: usize, diag_shift: f64) -> BlockArrow<B> {
    let mut h = BlockArrow::<B>::new(m, k);
    let dense_border = DMatrix::from_fn(m + 2, m, |_, _| rng.random_range(-1.0..1.0));
    let border = dense_border.transpose() * &dense_border;
    for r in 0..m {
        for c in 0..m {
            h.border_mut()[r * m + c] = border[(r, c)];
        }
        h.border_mut()[r * m + r] += diag_shift;
    }
    // Each block j sees B + 2 residual rows touching the border and the block.
    let mut couplings = vec![0.0; k * B * m];
    for j in 0..k {
        let jb = DMatrix::from_fn(B + 2, B, |_, _| rng.random_range(-1.0..1.0));
        let ja = DMatrix::from_fn(B + 2, m, |_, _| rng.random_range(-0.5..0.5));
        let d = jb.transpose() * &jb;
        let c = jb.transpose() * &ja;
        let a = ja.transpose() * &ja;
        for r in 0..m {
            for cc in 0..m {
                h.border_mut()[r * m + cc] += a[(r, cc)];
            }
        }
        let blk = &mut h.blocks_mut()[j];
        for r in 0..B {
            for cc in 0..B {
                blk[r][cc] = d[(r, cc)] + if r == cc { diag_shift } else { 0.0 };
            }
        }
        for r in 0..B {
            for cc in 0..m {
                couplings[(B * j + r) * m + cc] = c[(r, cc)];
            }
        }
    }
    for (q, row) in h.coupling_rows_mut().enumerate() {
        row.copy_from_slice(&couplings[q * m..(q + 1) * m]);
    }
    h
}

fn random_rhs(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// |x - y|_inf <= tol (1 + |y|_inf).
fn assert_close_vec(x: &[f64], y: &[f64], tol: f64, what: &str) {
    let scale = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in x.iter().zip(y).enumerate() {
        assert!((a - b).abs() <= tol * (1.0 + scale), "{what}: x[{i}] = {a} vs dense {b}");
    }
}

/// Solves with both strategies and compares solution and shift.
fn compare<const B: usize>(h: &BlockArrow<B>, damping: Damping, rhs: &[f64], tol: f64, what: &str) {
    let dense = DampedSystem::factorize(h.to_dense(), damping).unwrap();
    let block = BlockArrowFactor::factorize(h, damping).unwrap();
    assert_eq!(block.dim(), h.dim());
    assert_eq!(block.diagnostics().solver, LinearSolver::BlockArrow);
    let d = dense.diagnostics();
    let b = block.diagnostics();
    assert!(
        (d.shift - b.shift).abs() <= 1e-9 * (1.0 + d.shift.abs()),
        "{what}: shift {} vs dense {}",
        b.shift,
        d.shift
    );
    let mut x = rhs.to_vec();
    block.solve_in_place(&mut x).unwrap();
    let y = dense.solve(rhs).unwrap();
    assert_close_vec(&x, &y, tol, what);
}

#[test]
fn block_arrow_equals_dense_on_random_spd_systems() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (m, k) in [(29, 17), (5, 3), (1, 4), (7, 1), (4, 0)] {
        let h = random_block_arrow::<3>(&mut rng, m, k, 1e-3);
        let rhs = random_rhs(&mut rng, h.dim());
        for damping in [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.1 }] {
            compare(&h, damping, &rhs, 1e-9, &format!("m={m} k={k} {damping:?}"));
        }
        let f = BlockArrowFactor::factorize(&h, Damping::Implicit).unwrap();
        // Pivot bounds: min_eigenvalue bounds the true one from above, max from below.
        let eig = nalgebra::SymmetricEigen::new(h.to_dense()).eigenvalues;
        let d = f.diagnostics();
        assert!(d.min_eigenvalue >= eig.min() * (1.0 - 1e-12), "{} vs {}", d.min_eigenvalue, eig.min());
        assert!(d.max_eigenvalue <= eig.max() * (1.0 + 1e-12), "{} vs {}", d.max_eigenvalue, eig.max());
        assert!(d.condition >= 1.0 && d.condition <= eig.max() / eig.min() * (1.0 + 1e-9));
        assert!(!d.eigen_exact);
    }
    // Other block sizes: 1 (a diagonal) and 2; no border at all.
    let h = random_block_arrow::<1>(&mut rng, 6, 9, 0.0);
    let rhs = random_rhs(&mut rng, h.dim());
    compare(&h, Damping::TrustRegion { lambda: 0.01 }, &rhs, 1e-9, "B=1");
    let h = random_block_arrow::<2>(&mut rng, 3, 5, 0.0);
    let rhs = random_rhs(&mut rng, h.dim());
    compare(&h, Damping::Implicit, &rhs, 1e-9, "B=2");
    let h = random_block_arrow::<3>(&mut rng, 0, 5, 0.0);
    let rhs = random_rhs(&mut rng, h.dim());
    compare(&h, Damping::Guarded { lambda: 0.01 }, &rhs, 1e-9, "m=0");
}

#[test]
fn many_right_hand_sides_and_reuse_of_the_factor() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let h = random_block_arrow::<3>(&mut rng, 8, 6, 0.01);
    let n = h.dim();
    let mut factor = BlockArrowFactor::<3>::new(8, 6);
    // Solving before factorising is an error, not garbage.
    assert!(factor.solve_in_place(&mut vec![1.0; n]).is_err());
    factor.factorize_into(&h, Damping::TrustRegion { lambda: 0.5 }).unwrap();
    let mut cols: Vec<f64> = random_rhs(&mut rng, 3 * n);
    let orig = cols.clone();
    factor.solve_columns_in_place(&mut cols).unwrap();
    let a = h.to_dense() + DMatrix::identity(n, n) * 0.5;
    for c in 0..3 {
        let r = &a * DVector::from_column_slice(&cols[c * n..(c + 1) * n]);
        assert_close_vec(r.as_slice(), &orig[c * n..(c + 1) * n], 1e-10, "column");
    }
    assert!(factor.solve_columns_in_place(&mut vec![0.0; n + 1]).is_err());
    assert!(matches!(factor.solve_in_place(&mut vec![0.0; n - 1]), Err(WibergError::DimensionMismatch { .. })));
    // A pre-shifted assembly gives the same factorisation as adding the damping afterwards.
    let mut pre = h.clone();
    for r in 0..8 {
        pre.border_mut()[r * 8 + r] += 0.5;
    }
    for blk in pre.blocks_mut() {
        for (d, row) in blk.iter_mut().enumerate() {
            row[d] += 0.5;
        }
    }
    let mut f2 = BlockArrowFactor::<3>::new(1, 1);
    f2.factorize_preshifted_into(&pre, 0.5, Damping::TrustRegion { lambda: 0.5 }).unwrap();
    let mut x = orig[..n].to_vec();
    f2.solve_in_place(&mut x).unwrap();
    assert_close_vec(&x, &cols[..n], 1e-12, "pre-shifted");
    assert!((f2.diagnostics().min_eigenvalue - factor.diagnostics().min_eigenvalue).abs() < 1e-9);
}

#[test]
fn near_singular_systems_agree_or_fail_together() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    // A positive semi-definite matrix with a null space (rank-deficient Jacobian): the
    // implicit solve is singular, the damped ones agree with dense.
    let mut h = random_block_arrow::<3>(&mut rng, 6, 4, 0.0);
    // Make block 2 and its coupling zero: three zero eigenvalues.
    h.blocks_mut()[2] = [[0.0; 3]; 3];
    for (q, row) in h.coupling_rows_mut().enumerate() {
        if q / 3 == 2 {
            row.fill(0.0);
        }
    }
    assert!(matches!(BlockArrowFactor::factorize(&h, Damping::Implicit), Err(WibergError::SingularHessian { .. })));
    assert!(DampedSystem::factorize(h.to_dense(), Damping::Implicit).is_err());
    let rhs = random_rhs(&mut rng, h.dim());
    compare(&h, Damping::TrustRegion { lambda: 1e-3 }, &rhs, 1e-8, "psd, trust-region");
    compare(&h, Damping::Guarded { lambda: 1e-3 }, &rhs, 1e-8, "psd, guarded");
    // Nearly singular but regular: smallest eigenvalue about 1e-7 on a well-scaled matrix.
    let mut h = random_block_arrow::<3>(&mut rng, 6, 4, 0.0);
    let eig = nalgebra::SymmetricEigen::new(h.to_dense()).eigenvalues.min();
    for r in 0..6 {
        h.border_mut()[r * 6 + r] += 1e-7 - eig;
    }
    for blk in h.blocks_mut() {
        for (d, row) in blk.iter_mut().enumerate() {
            row[d] += 1e-7 - eig;
        }
    }
    let rhs = random_rhs(&mut rng, h.dim());
    compare(&h, Damping::Implicit, &rhs, 1e-5, "near-singular, implicit");
    compare(&h, Damping::TrustRegion { lambda: 1e-3 }, &rhs, 1e-9, "near-singular, trust-region");
}

#[test]
fn indefinite_systems_guarded_and_implicit_match_dense() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    for (m, k, shift) in [(5, 4, -0.5), (29, 17, -0.3), (3, 6, -2.0), (0, 4, -1.0)] {
        let h = random_block_arrow::<3>(&mut rng, m, k, shift);
        let eig = nalgebra::SymmetricEigen::new(h.to_dense()).eigenvalues;
        assert!(eig.min() < 0.0, "the test matrix must be indefinite");
        let f = BlockArrowFactor::factorize(&h, Damping::Guarded { lambda: 0.1 }).unwrap();
        let d = f.diagnostics();
        // A valid lower bound, tight to the bisection's tolerance.
        assert!(d.min_eigenvalue <= eig.min(), "{} vs {}", d.min_eigenvalue, eig.min());
        assert!(d.min_eigenvalue >= eig.min() - 1e-10 * eig.max().abs(), "{} vs {}", d.min_eigenvalue, eig.min());
        assert!(d.shift >= 0.1 - eig.min());
        let rhs = random_rhs(&mut rng, h.dim());
        compare(&h, Damping::Guarded { lambda: 0.1 }, &rhs, 1e-8, &format!("guarded m={m} k={k}"));
        // Implicit on an indefinite (regular) matrix: the spectral path.
        let f = BlockArrowFactor::factorize(&h, Damping::Implicit).unwrap();
        let d = f.diagnostics();
        assert!(d.min_eigenvalue <= eig.min() && d.min_eigenvalue >= eig.min() - 1e-10 * eig.max().abs());
        assert!(d.max_eigenvalue >= eig.max() && d.max_eigenvalue <= eig.max() * (1.0 + 1e-10));
        let abs = eig.map(f64::abs);
        let cond = abs.max() / abs.min();
        assert!((d.condition / cond - 1.0).abs() < 1e-6, "condition {} vs {}", d.condition, cond);
        compare(&h, Damping::Implicit, &rhs, 1e-7, &format!("implicit m={m} k={k}"));
    }
}

/// Borders of up to 32 unknowns are factorised by kernels of a compile-time row width (one
/// per padded width 4, 8, ..., 32), larger ones by the runtime-width kernels: every width on
/// either side of the limit against dense, positive definite, near-singular and indefinite.
#[test]
fn compile_time_and_runtime_widths_match_dense() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let modes = [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.1 }];
    for (m, k) in [(2, 3), (8, 2), (11, 5), (13, 4), (17, 6), (22, 3), (27, 5), (32, 4), (33, 3), (37, 5), (46, 2)] {
        // Positive definite.
        let h = random_block_arrow::<3>(&mut rng, m, k, 1e-3);
        let rhs = random_rhs(&mut rng, h.dim());
        for damping in modes {
            compare(&h, damping, &rhs, 1e-9, &format!("spd m={m} k={k} {damping:?}"));
        }
        // Several right-hand sides through the same factor.
        let f = BlockArrowFactor::factorize(&h, Damping::TrustRegion { lambda: 0.1 }).unwrap();
        let n = h.dim();
        let mut cols = random_rhs(&mut rng, 2 * n);
        let orig = cols.clone();
        f.solve_columns_in_place(&mut cols).unwrap();
        let a = h.to_dense() + DMatrix::identity(n, n) * 0.1;
        for c in 0..2 {
            let r = &a * DVector::from_column_slice(&cols[c * n..(c + 1) * n]);
            assert_close_vec(r.as_slice(), &orig[c * n..(c + 1) * n], 1e-9, &format!("columns m={m}"));
        }
        // Near-singular but regular (smallest eigenvalue about 1e-7): implicit still solves it.
        let mut h = random_block_arrow::<3>(&mut rng, m, k, 0.0);
        let eig = nalgebra::SymmetricEigen::new(h.to_dense()).eigenvalues.min();
        for r in 0..m {
            h.border_mut()[r * m + r] += 1e-7 - eig;
        }
        for blk in h.blocks_mut() {
            for (d, row) in blk.iter_mut().enumerate() {
                row[d] += 1e-7 - eig;
            }
        }
        let rhs = random_rhs(&mut rng, h.dim());
        compare(&h, Damping::Implicit, &rhs, 1e-4, &format!("near-singular m={m} k={k}"));
        compare(&h, Damping::TrustRegion { lambda: 1e-3 }, &rhs, 1e-9, &format!("near-singular damped m={m}"));
        // Indefinite: the guarded shift and the spectral path.
        let h = random_block_arrow::<3>(&mut rng, m, k, -0.4);
        let eig = nalgebra::SymmetricEigen::new(h.to_dense()).eigenvalues;
        assert!(eig.min() < 0.0, "the test matrix must be indefinite (m={m})");
        let f = BlockArrowFactor::factorize(&h, Damping::Guarded { lambda: 0.1 }).unwrap();
        assert!(f.diagnostics().shift >= 0.1 - eig.min(), "guarded shift m={m}");
        let rhs = random_rhs(&mut rng, h.dim());
        compare(&h, Damping::Guarded { lambda: 0.1 }, &rhs, 1e-8, &format!("indefinite guarded m={m} k={k}"));
    }
}

#[test]
fn non_finite_and_invalid_inputs_are_typed_errors() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let h = random_block_arrow::<3>(&mut rng, 4, 3, 0.1);
    for (what, poke) in [("border", 0usize), ("block", 1), ("coupling", 2)] {
        let mut bad = h.clone();
        match poke {
            0 => bad.border_mut()[5] = f64::NAN,
            1 => bad.blocks_mut()[1][2][0] = f64::INFINITY,
            _ => {
                if let Some(row) = bad.coupling_rows_mut().nth(4) {
                    row[1] = f64::NAN;
                }
            }
        }
        for damping in [Damping::Implicit, Damping::Guarded { lambda: 0.1 }] {
            let e = BlockArrowFactor::factorize(&bad, damping);
            assert!(matches!(e, Err(WibergError::NonFinite { .. })), "{what} {damping:?}: {e:?}");
        }
    }
    assert!(BlockArrowFactor::factorize(&h, Damping::TrustRegion { lambda: -1.0 }).is_err());
    assert!(BlockArrowFactor::factorize(&BlockArrow::<3>::new(0, 0), Damping::Implicit).is_err());
    let f = BlockArrowFactor::factorize(&h, Damping::Implicit).unwrap();
    let mut v = vec![0.0; h.dim()];
    v[2] = f64::NAN;
    assert!(matches!(f.solve_in_place(&mut v), Err(WibergError::NonFinite { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Any block-arrow system, any mode: the block-arrow solve equals the dense one whenever
    /// the dense one succeeds with a moderate condition number.
    #[test]
    fn block_arrow_matches_dense(seed in 0u64..10_000, m in 0usize..9, k in 1usize..7, shift in -1.5f64..0.5, mode in 0usize..3) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = random_block_arrow::<3>(&mut rng, m, k, shift);
        let damping = match mode {
            0 => Damping::Implicit,
            1 => Damping::TrustRegion { lambda: 0.2 },
            _ => Damping::Guarded { lambda: 0.2 },
        };
        let rhs = random_rhs(&mut rng, h.dim());
        if let Ok(dense) = DampedSystem::factorize(h.to_dense(), damping) {
            let cond = dense.diagnostics().condition;
            prop_assume!(cond < 1e6);
            let block = BlockArrowFactor::factorize(&h, damping);
            prop_assert!(block.is_ok(), "{:?}", block.err());
            if let Ok(block) = block {
                let mut x = rhs.clone();
                block.solve_in_place(&mut x).unwrap();
                let y = dense.solve(&rhs).unwrap();
                let scale = y.iter().fold(1.0f64, |a, v| a.max(v.abs()));
                for (a, b) in x.iter().zip(&y) {
                    prop_assert!((a - b).abs() <= 1e-9 * cond * scale, "{} vs {}", a, b);
                }
                let (ds, bs) = (dense.diagnostics().shift, block.diagnostics().shift);
                prop_assert!((ds - bs).abs() <= 1e-9 * (1.0 + ds.abs()));
            }
        }
    }
}
