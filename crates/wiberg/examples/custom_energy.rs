//! Your own energy, written once: a robust (Cauchy) line fit whose scale is learned.
//!
//! Each sample is 30 points `z_i = a x_i + b + noise` of which a third are gross outliers. The
//! estimate is the line `y* = (a, b)` minimising the Cauchy energy
//!
//! `E(y; w) = sum_i c^2 / 2 * ln(1 + r_i^2 / c^2) + mu / 2 |y|^2`, `r_i = z_i - (a x_i + b)`,
//!
//! with a learned scale `c = w[0]` (a small `mu` keeps every Hessian positive definite). The
//! loss is `|y* - y_true|^2`; Adam learns `c` through the trust-region derivative of the argmin,
//! and `gradcheck` compares the backward pass with finite differences of the whole forward pass.
//!
//! Run: `cargo run -p wiberg --release --example custom_energy`

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wiberg::batch::mean_loss_and_grad;
use wiberg::gradcheck::gradcheck;
use wiberg::optim::{Adam, Optimizer};
use wiberg::{ArgminLayer, AutoDiff, Damping, DualEnergy, DualScalar, LbfgsConfig, Minimizer, Start};

/// One sample's data; the energy's parameters `w` come from the caller.
struct CauchyLine {
    x: Vec<f64>,
    z: Vec<f64>,
}

impl DualEnergy for CauchyLine {
    fn dim(&self) -> usize {
        2 // y = (slope, intercept)
    }
    fn num_params(&self) -> usize {
        1 // w = (Cauchy scale c)
    }
    fn energy<D: DualScalar>(&self, y: &[D], w: &[D]) -> D {
        let c2 = w[0] * w[0];
        let mut e = (y[0] * y[0] + y[1] * y[1]) * 5e-3; // mu / 2 |y|^2 with mu = 0.01
        for (&x, &z) in self.x.iter().zip(&self.z) {
            // Constants on the right of the dual number (`y[0] * x`, not `x * y[0]`), data as `D::from`.
            let r = D::from(z) - (y[0] * x + y[1]);
            e += c2 * 0.5 * (r * r / c2).ln_1p();
        }
        e
    }
}

struct Sample {
    energy: AutoDiff<CauchyLine>,
    truth: [f64; 2],
}

fn make_sample(rng: &mut ChaCha8Rng) -> Sample {
    let truth = [rng.random_range(-2.0..2.0), rng.random_range(-5.0..5.0)];
    let (mut x, mut z) = (Vec::new(), Vec::new());
    for i in 0..30 {
        let xi = rng.random_range(-5.0..5.0);
        let noise = if i % 3 == 0 { rng.random_range(-30.0..30.0) } else { rng.random_range(-0.5..0.5) };
        x.push(xi);
        z.push(truth[0] * xi + truth[1] + noise);
    }
    Sample { energy: AutoDiff::new(CauchyLine { x, z }), truth }
}

fn main() -> wiberg::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let train: Vec<Sample> = (0..100).map(|_| make_sample(&mut rng)).collect();
    let layer = ArgminLayer {
        minimizer: Minimizer::Lbfgs(LbfgsConfig { max_iters: 100, grad_tol: 1e-10, ..Default::default() }),
        ..ArgminLayer::with_damping(Damping::TrustRegion { lambda: 0.1 })
    };
    // Squared error of the fitted line and its gradient in y*.
    let loss = |y: &[f64], t: &[f64; 2]| {
        let d = [y[0] - t[0], y[1] - t[1]];
        (d[0] * d[0] + d[1] * d[1], vec![2.0 * d[0], 2.0 * d[1]])
    };
    let start = [0.0, 0.0];
    let mut w = vec![20.0]; // a scale far too wide: the outliers pull the line
    let mut adam = Adam::new(0.5)?;
    println!("step  scale c   mean |y* - y_true|^2");
    for step in 0..=40 {
        let batch = mean_loss_and_grad(&train, 1, |_, s| {
            let sol = layer.forward(&s.energy, &w, Start::Point(&start))?;
            let (l, dl_dy) = loss(&sol.y, &s.truth);
            Ok((l, layer.backward(&s.energy, &w, &sol, &dl_dy)?.grad_w))
        })?;
        if step % 10 == 0 {
            println!("{step:>4}  {:>7.3}  {:>10.5}", w[0], batch.loss);
        }
        adam.step(&mut w, &batch.grad)?;
        w[0] = w[0].max(0.05);
    }
    // The backward pass against finite differences of the whole forward pass. With
    // `Damping::Implicit` they agree to finite-difference accuracy; the trust-region derivative
    // is biased by design (it solves with H + lambda I), which gradcheck measures too.
    let s = &train[0];
    for damping in [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }] {
        let l = ArgminLayer { damping, ..layer };
        let check = gradcheck(&l, &s.energy, &w, Start::Point(&start), |y| loss(y, &s.truth), 1e-6)?;
        println!(
            "gradcheck {damping:?}: analytic {:.6e}, finite differences {:.6e}, relative error {:.1e}",
            check.analytic[0], check.numeric[0], check.max_rel_error
        );
        if damping == Damping::Implicit && check.max_rel_error > 1e-4 {
            return Err(wiberg::WibergError::InvalidArgument(format!("gradcheck failed: {check:?}")));
        }
    }
    Ok(())
}
