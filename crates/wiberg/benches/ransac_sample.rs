//! One RANSAC training sample (the `wiberg ransac` hot path): the seed scan over 110 points
//! (`seed_scan_*`: every energy, `values_at`; `best_seed_*`: the lowest seed as the forward
//! pass finds it, ranking seeds by a bounded expansion at wide sigma), and a full forward
//! (seeds, L-BFGS 10, polish) + backward for each damping mode at sigma 1, 20 and 40; one pass
//! over the kernels (`kernels_*`: gradient alone; value, gradient, curvature and mixed
//! derivative fused or as three calls).
//!
//! `cargo bench -p wiberg --bench ransac_sample`

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use wiberg::minimize::seeds::best_seed;
use wiberg::{ArgminLayer, Damping, Energy, LbfgsConfig, Minimizer, RbfMixture, Start};

/// A paper-protocol sample: 10 inliers around a centre in [-40, 40], 100 uniform outliers.
/// (Inliers are drawn uniformly within +-4 here: the bench needs the shape, not the law.)
fn sample(seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let m: f64 = rng.random_range(-40.0..40.0);
    let mut points: Vec<f64> = (0..10).map(|_| m + rng.random_range(-4.0..4.0)).collect();
    points.extend((0..100).map(|_| rng.random_range(-40.0..40.0)));
    points
}

fn bench(c: &mut Criterion) {
    let points = sample(7);
    let e = RbfMixture::shared_width(1, points.clone()).unwrap();
    let mut out = vec![0.0; points.len()];
    for sigma in [1.0, 3.0, 5.0, 10.0, 20.0, 30.0, 50.0] {
        c.bench_function(&format!("seed_scan_110_sigma{sigma}"), |b| {
            b.iter(|| e.values_at(black_box(&points), black_box(&[sigma]), &mut out))
        });
        // What the forward pass runs: the lowest seed, ruling seeds out by a bound when the
        // kernels are wide (bit-identical choice).
        c.bench_function(&format!("best_seed_110_sigma{sigma}"), |b| {
            b.iter(|| best_seed(&e, black_box(&[sigma]), black_box(&points)))
        });
        // The reference under the same machine load: the energy summed at every point.
        c.bench_function(&format!("seed_scan_direct_110_sigma{sigma}"), |b| {
            b.iter(|| {
                for (o, p) in out.iter_mut().zip(&points) {
                    *o = e.value(black_box(&[*p]), black_box(&[sigma]));
                }
            })
        });
    }
    c.bench_function("shared_width_new_110", |b| {
        b.iter(|| RbfMixture::shared_width(1, black_box(points.clone())).unwrap())
    });
    // One pass over the 110 kernels at a learned width: the energy and gradient (what each
    // L-BFGS evaluation costs), and the energy, gradient, curvature and mixed derivative fused
    // in one pass against the three separate calls the layer makes at t*.
    let (y, w) = ([points[3] + 0.5], [30.0]);
    let mut g = [0.0];
    let mut h = nalgebra::DMatrix::zeros(1, 1);
    let mut m = [0.0];
    c.bench_function("kernels_gradient_110_sigma30", |b| b.iter(|| e.gradient(black_box(&y), black_box(&w), &mut g)));
    c.bench_function("kernels_separate_110_sigma30", |b| {
        b.iter(|| {
            let v = e.gradient(black_box(&y), black_box(&w), &mut g);
            e.hessian(black_box(&y), black_box(&w), &mut h);
            e.mixed_vjp(black_box(&y), black_box(&w), &[1.0], &mut m);
            v
        })
    });
    c.bench_function("kernels_fused_110_sigma30", |b| {
        b.iter(|| e.value_grad_curvature(black_box(y[0]), black_box(&w)))
    });
    for damping in [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.1 }] {
        let layer = ArgminLayer {
            minimizer: Minimizer::Lbfgs(LbfgsConfig::with_max_iters(10)),
            polish: true,
            damping,
            ..Default::default()
        };
        // sigma 1 (the start: narrow kernels, short seed-scan windows), 20 and 40 (the learned
        // widths where training spends most of its steps with the default ASGD: every pair is
        // in the window). Each iteration is a training step but for drawing the sample and the
        // ASGD update: build the mixture, forward, backward.
        for sigma in [1.0, 20.0, 40.0] {
            c.bench_function(&format!("sample_forward_backward_{}_sigma{sigma}", damping.name()), |b| {
                b.iter(|| {
                    let e = RbfMixture::shared_width(1, points.clone()).unwrap();
                    let sol = layer.forward(&e, &[sigma], Start::Seeds(&points)).unwrap();
                    let back = layer.backward(&e, &[sigma], &sol, &[1.0]).unwrap();
                    black_box(back.grad_w[0])
                })
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
