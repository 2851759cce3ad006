//! Factorise + solve one right-hand side, per damped-solve strategy: dense vs conjugate
//! gradients on random positive definite systems of a few sizes, and block-arrow vs dense on a
//! pose-shaped system (17 blocks of 3 + a border of 29; fresh guarded factor, and a reused
//! trust-region one as the pose model uses it), and one pose-shaped robust least-squares problem
//! (1 + 3 IRLS solves and the backward solve) by the structured solver against the dense
//! `RobustLeastSquares`. `cargo bench -p wiberg --bench damped_solve`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use nalgebra::{DMatrix, DVector};
use std::hint::black_box;
use wiberg::damped::{BlockArrow, BlockArrowFactor, CgSolve, DampedFactor, DenseSolve, HessianFactor, HessianSolve};
use wiberg::least_squares::{FixedQuadratic, IrlsConfig, PseudoHuber, RobustLeastSquares, RobustRows, StructuredIrls};
use wiberg::{DampedSystem, Damping, Energy};

/// `E = 1/2 y^T H y - w^T y` with a fixed `H` and a matrix-vector `hvp`.
struct Quadratic(DMatrix<f64>);

impl Energy for Quadratic {
    fn dim(&self) -> usize {
        self.0.nrows()
    }
    fn num_params(&self) -> usize {
        0
    }
    fn value(&self, _y: &[f64], _w: &[f64]) -> f64 {
        0.0
    }
    fn gradient(&self, _y: &[f64], _w: &[f64], g: &mut [f64]) -> f64 {
        g.fill(0.0);
        0.0
    }
    fn hessian(&self, _y: &[f64], _w: &[f64], h: &mut DMatrix<f64>) {
        h.copy_from(&self.0);
    }
    fn mixed_vjp(&self, _y: &[f64], _w: &[f64], _u: &[f64], _out: &mut [f64]) {}
    fn hvp(&self, _y: &[f64], _w: &[f64], v: &[f64], out: &mut [f64]) {
        let x = DVector::from_column_slice(v);
        out.copy_from_slice((&self.0 * x).as_slice());
    }
}

fn spd(n: usize) -> DMatrix<f64> {
    let a = DMatrix::from_fn(n, n, |i, j| ((i * 7 + j * 13) % 17) as f64 / 17.0 - 0.5);
    a.transpose() * &a / n as f64 + DMatrix::identity(n, n)
}

fn dense_vs_cg(c: &mut Criterion) {
    let damping = Damping::TrustRegion { lambda: 0.1 };
    let mut group = c.benchmark_group("factorise_and_solve");
    for n in [8, 64, 256] {
        let e = Quadratic(spd(n));
        let (y, w) = (vec![0.0; n], vec![]);
        let v: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
        group.bench_with_input(BenchmarkId::new("dense", n), &n, |b, _| {
            b.iter(|| {
                let f = DenseSolve.factorize(&e, &y, &w, damping).unwrap();
                let mut x = v.clone();
                f.solve_in_place_at(&e, &y, &w, &mut x).unwrap();
                black_box(x)
            })
        });
        let cg = CgSolve { tol: 1e-10, max_iters: 1000 };
        group.bench_with_input(BenchmarkId::new("cg", n), &n, |b, _| {
            b.iter(|| {
                let f = cg.factorize(&e, &y, &w, damping).unwrap();
                let mut x = v.clone();
                f.solve_in_place_at(&e, &y, &w, &mut x).unwrap();
                black_box(x)
            })
        });
    }
    group.finish();
}

fn block_arrow_vs_dense(c: &mut Criterion) {
    let (m, k) = (29, 17);
    let mut h = BlockArrow::<3>::new(m, k);
    for r in 0..m {
        for c in 0..m {
            h.border_mut()[r * m + c] = if r == c { 40.0 } else { ((r * 3 + c * 5) % 7) as f64 * 0.1 };
        }
    }
    for (j, blk) in h.blocks_mut().iter_mut().enumerate() {
        *blk = [[5.0 + j as f64 * 0.1, 0.3, 0.1], [0.3, 4.0, 0.2], [0.1, 0.2, 6.0]];
    }
    for (q, row) in h.coupling_rows_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = ((q * 11 + c * 3) % 13) as f64 * 0.02 - 0.1;
        }
    }
    let dense = h.to_dense();
    let n = dense.nrows();
    let v: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
    let damping = Damping::Guarded { lambda: 0.1 };
    let mut group = c.benchmark_group("pose_shaped_17x3_plus_29");
    group.bench_function("dense", |b| {
        b.iter(|| {
            let f = DampedSystem::factorize(dense.clone(), damping).unwrap();
            let mut x = v.clone();
            DampedFactor::solve_in_place(&f, &mut x).unwrap();
            black_box(x)
        })
    });
    group.bench_function("block_arrow", |b| {
        b.iter(|| {
            let f = BlockArrowFactor::factorize(&h, damping).unwrap();
            let mut x = v.clone();
            f.solve_in_place(&mut x).unwrap();
            black_box(x)
        })
    });
    // As the pose model runs it: one factor reused (no allocation), trust-region damping (one
    // block Cholesky instead of Guarded's two on a positive definite matrix).
    let mut reused = BlockArrowFactor::<3>::new(m, k);
    group.bench_function("block_arrow_reused_trust_region", |b| {
        b.iter(|| {
            reused.factorize_into(black_box(&h), Damping::TrustRegion { lambda: 0.1 }).unwrap();
            let mut x = v.clone();
            reused.solve_in_place(&mut x).unwrap();
            black_box(x)
        })
    });
    group.finish();
}

/// A pose-shaped robust problem: border 29, 17 blocks of 3, fixed rows `B a - q` (51) and a
/// ridge on `a`, 64 robust groups of 2 rows on one block each.
fn structured_vs_dense_irls(c: &mut Criterion) {
    let (m, k) = (29, 17);
    let n = m + 3 * k;
    let basis = |q: usize, b: usize| ((q * 7 + b * 5) % 11) as f64 * 0.05 - 0.25;
    let mut fixed = FixedQuadratic::<3>::new(m, k);
    for r in 0..m {
        for c in 0..m {
            let btb: f64 = (0..3 * k).map(|q| basis(q, r) * basis(q, c)).sum();
            fixed.border_mut()[r * m + c] = btb + if r == c { 0.5 } else { 0.0 };
        }
    }
    for blk in fixed.blocks_mut() {
        *blk = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    for (q, row) in fixed.coupling_rows_mut().enumerate() {
        for (b, v) in row.iter_mut().enumerate() {
            *v = -basis(q, b);
        }
    }
    let mut rows = RobustRows::<3>::new(m, k);
    let mut a_r = DMatrix::zeros(128, n);
    let mut b_r = DVector::zeros(128);
    for g in 0..64 {
        let j = g % k;
        for ax in 0..2 {
            let r = 2 * g + ax;
            let coeffs = [((r * 3) % 5) as f64 * 0.3 - 0.6, ((r * 7) % 5) as f64 * 0.3 - 0.5, 0.4];
            let target = ((r * 13) % 17) as f64 * 0.1 - 0.8 + if g % 9 == 0 { 5.0 } else { 0.0 };
            rows.push_block_row(j, coeffs, target).unwrap();
            for d in 0..3 {
                a_r[(r, m + 3 * j + d)] = coeffs[d];
            }
            b_r[r] = target;
        }
        rows.end_group();
    }
    let loss = PseudoHuber::new(0.1).unwrap();
    let mut a_q = DMatrix::zeros(3 * k + m, n);
    for q in 0..3 * k {
        for b in 0..m {
            a_q[(q, b)] = basis(q, b);
        }
        a_q[(q, m + q)] = -1.0;
    }
    for b in 0..m {
        a_q[(3 * k + b, b)] = 0.5f64.sqrt();
    }
    let dense = RobustLeastSquares::new(a_r, b_r, 2, 0.1)
        .unwrap()
        .with_quadratic(a_q.clone(), DVector::zeros(3 * k + m))
        .unwrap();
    let config = IrlsConfig { max_iters: 3, grad_tol: 0.0, step_tol: 0.0 };
    let damping = Damping::TrustRegion { lambda: 1e-3 };
    let v: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
    let mut group = c.benchmark_group("pose_shaped_irls_1_plus_3");
    group.bench_function("dense_robust_least_squares", |b| {
        b.iter(|| black_box(dense.solve(black_box(&config), damping).unwrap().y[0]))
    });
    let mut irls = StructuredIrls::<3>::new(m, k);
    group.bench_function("structured", |b| {
        b.iter(|| black_box(irls.solve(&fixed, &fixed, black_box(&rows), &loss, 3, damping).unwrap()[0]))
    });
    let weights = irls.weights().to_vec();
    group.bench_function("structured_backward_solve", |b| {
        b.iter(|| {
            let mut u = v.clone();
            irls.adjoint(&fixed, black_box(&rows), &weights, damping, &mut u).unwrap();
            black_box(u)
        })
    });
    group.finish();
}

criterion_group!(benches, dense_vs_cg, block_arrow_vs_dense, structured_vs_dense_irls);
criterion_main!(benches);
