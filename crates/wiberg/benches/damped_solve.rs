//! Factorise + solve one right-hand side, per damped-solve strategy: dense vs conjugate
//! gradients on random positive definite systems of a few sizes, and block-arrow vs dense on a
//! pose-shaped system (17 blocks of 3 + a border of 29; fresh guarded factor, and a reused
//! trust-region one as the pose model uses it). `cargo bench -p wiberg --bench damped_solve`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use nalgebra::{DMatrix, DVector};
use std::hint::black_box;
use wiberg::damped::{BlockArrow, BlockArrowFactor, CgSolve, DampedFactor, DenseSolve, HessianFactor, HessianSolve};
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

criterion_group!(benches, dense_vs_cg, block_arrow_vs_dense);
criterion_main!(benches);
