//! Benches of the layer (`cargo bench -p wiberg`):
//! * `ransac_sample/*`: one RANSAC-sized training sample (1-D, 110 kernels: 10 inliers
//!   N(m, 4^2), 100 outliers U[-40, 40], sigma = 1; seeds = the 110 points; L-BFGS up to 10
//!   iterations; damped Newton polish; backward), split into seeds / L-BFGS / backward, for
//!   the native and the argmin L-BFGS back-ends; plus the seeds at sigma = 30.
//! * `mixed_vjp_n4_p1000/*`: `d/dw <grad_y E, u>` for a 4-D mixture of 500 kernels, each with
//!   its own width and weight (p = 1000): `AutoDiff` against the analytic `RbfMixture`.

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::Duration;
use wiberg::autodiff::DualScalar;
use wiberg::minimize::seeds::best_seed;
use wiberg::minimize::{LbfgsBackend, LbfgsConfig, Minimizer};
use wiberg::{ArgminLayer, AutoDiff, Damping, DualEnergy, Energy, RbfMixture, Start};

/// 10 inliers N(m, 4^2) with m ~ U[-40, 40], 100 outliers U[-40, 40]; returns (points, mean of inliers).
fn ransac_points(seed: u64) -> (Vec<f64>, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let m: f64 = rng.random_range(-40.0..40.0);
    let mut points = Vec::with_capacity(110);
    for _ in 0..10 {
        // Box-Muller.
        let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random_range(0.0..1.0));
        points.push(m + 4.0 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos());
    }
    let mean = points.iter().sum::<f64>() / 10.0;
    for _ in 0..100 {
        points.push(rng.random_range(-40.0..40.0));
    }
    (points, mean)
}

fn ransac_sample(c: &mut Criterion) {
    let (points, mean) = ransac_points(2019);
    let e = RbfMixture::shared_width(1, points.clone()).expect("valid centres");
    let w = [1.0];
    let mut group = c.benchmark_group("ransac_sample");
    group.sample_size(30).measurement_time(Duration::from_millis(1500)).warm_up_time(Duration::from_millis(300));
    group.bench_function("seeds", |b| b.iter(|| best_seed(&e, black_box(&w), black_box(&points))));
    // Wide kernels (where training spends most steps): every pair is within the scan's radius;
    // the seeds are ranked by a bounded expansion and only the candidates evaluated exactly.
    group.bench_function("seeds_sigma30", |b| b.iter(|| best_seed(&e, black_box(&[30.0]), black_box(&points))));
    let (best, _) = best_seed(&e, &w, &points).expect("seeds");
    // Calibration unit: one energy + gradient evaluation (110 kernels). On a loaded machine
    // the other figures are best read as multiples of this one.
    let mut g = [0.0];
    group.bench_function("one_gradient", |b| b.iter(|| e.gradient(black_box(&[points[best]]), &w, &mut g)));
    // argmin's back-end needs the crate feature: `cargo bench -p wiberg --features argmin`.
    let backends: &[(&str, LbfgsBackend)] = if cfg!(feature = "argmin") {
        &[("native", LbfgsBackend::Native), ("argmin", LbfgsBackend::Argmin)]
    } else {
        &[("native", LbfgsBackend::Native)]
    };
    for &(name, backend) in backends {
        let minimizer = Minimizer::Lbfgs(LbfgsConfig { max_iters: 10, backend, ..Default::default() });
        let layer = ArgminLayer {
            minimizer,
            polish: true,
            damping: Damping::TrustRegion { lambda: 0.1 },
            ..Default::default()
        };
        group.bench_function(format!("lbfgs_{name}"), |b| {
            b.iter(|| {
                let mut y = [points[best]];
                minimizer.minimize(&e, black_box(&w), &mut y).expect("solve");
                y
            })
        });
        let sol = layer.forward(&e, &w, Start::Seeds(&points)).expect("forward");
        let v = [2.0 * (sol.y[0] - mean)];
        group.bench_function(format!("backward_{name}"), |b| {
            b.iter(|| layer.backward(&e, black_box(&w), &sol, &v).expect("backward"))
        });
        group.bench_function(format!("total_{name}"), |b| {
            b.iter(|| {
                let sol = layer.forward(&e, black_box(&w), Start::Seeds(&points)).expect("forward");
                let v = [2.0 * (sol.y[0] - mean)];
                layer.backward(&e, &w, &sol, &v).expect("backward")
            })
        });
    }
    group.finish();
}

/// The same mixture as `RbfMixture` with per-kernel width and weight, over dual numbers.
struct DualRbf {
    dim: usize,
    centers: Vec<f64>,
}

impl DualEnergy for DualRbf {
    fn dim(&self) -> usize {
        self.dim
    }
    fn num_params(&self) -> usize {
        2 * self.centers.len() / self.dim
    }
    fn energy<D: DualScalar>(&self, y: &[D], w: &[D]) -> D {
        let k = self.centers.len() / self.dim;
        let mut e = D::from(0.0);
        for (i, c) in self.centers.chunks_exact(self.dim).enumerate() {
            let s = w[i];
            let mut r = D::from(0.0);
            for (yi, ci) in y.iter().zip(c) {
                let d = *yi - *ci;
                r += d * d;
            }
            e -= w[k + i] * (-(r / (s * s))).exp();
        }
        e
    }
}

fn mixed_vjp(c: &mut Criterion) {
    let (n, kernels) = (4, 500);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let centers: Vec<f64> = (0..n * kernels).map(|_| rng.random_range(-2.0..2.0)).collect();
    let p = 2 * kernels;
    let analytic = RbfMixture::new(n, centers.clone(), (0..kernels).collect(), Some((kernels..p).collect()), p)
        .expect("valid mixture");
    let auto = AutoDiff::new(DualRbf { dim: n, centers });
    let w: Vec<f64> = (0..p).map(|j| if j < kernels { 1.0 + 0.001 * j as f64 } else { 0.5 }).collect();
    let y = [0.1, -0.2, 0.3, 0.05];
    let u = [1.0, 0.5, -0.25, 2.0];
    let mut group = c.benchmark_group("mixed_vjp_n4_p1000");
    group.sample_size(10).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(300));
    let mut out = vec![0.0; p];
    group.bench_function("analytic", |b| b.iter(|| analytic.mixed_vjp(black_box(&y), &w, &u, &mut out)));
    group.bench_function("autodiff", |b| b.iter(|| auto.mixed_vjp(black_box(&y), &w, &u, &mut out)));
    group.finish();
}

criterion_group!(benches, ransac_sample, mixed_vjp);
criterion_main!(benches);
