//! Quickstart: learn the kernel width of a 1-D robust estimator by differentiating through its
//! argmin (the RANSAC experiment of Toso et al. 2019 in miniature).
//!
//! Each sample is 10 inliers `N(m, 4^2)` around an unknown `m ~ U[-40, 40]` plus 30 outliers
//! uniform on `[-40, 40]` (the paper uses 100, which makes most of the loss come from picking
//! the wrong cluster, something no derivative sees). The estimate is
//! `t* = argmin_t E(t; sigma)` with `E(t) = -sum_i exp(-(x_i - t)^2 / sigma^2)`; the loss is
//! `(t* - mean of the inliers)^2`. We learn `sigma` with SGD, the gradient `dl/dsigma` coming
//! from the trust-region derivative `-(H + lambda I)^-1 M`.
//!
//! Run: `cargo run -p wiberg --release --example quickstart`

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wiberg::batch::mean_loss_and_grad;
use wiberg::optim::{Optimizer, Sgd};
use wiberg::{ArgminLayer, Damping, RbfMixture, Start};

/// One sample: the points (inliers first) and the target, the mean of the inliers.
struct Sample {
    points: Vec<f64>,
    target: f64,
}

fn make_sample(rng: &mut ChaCha8Rng) -> Sample {
    let m = rng.random_range(-40.0..40.0);
    let mut points = Vec::with_capacity(40);
    for _ in 0..10 {
        // Box-Muller: a N(m, 4^2) inlier.
        let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
        points.push(m + 4.0 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos());
    }
    let target = points.iter().sum::<f64>() / 10.0;
    points.extend((0..30).map(|_| rng.random_range(-40.0..40.0)));
    Sample { points, target }
}

/// Loss and `dl/dsigma` of one sample: forward (best seed, L-BFGS, polish), then backward.
fn loss_and_grad(layer: &ArgminLayer, sample: &Sample, sigma: &[f64]) -> wiberg::Result<(f64, Vec<f64>)> {
    // One kernel per point, all sharing the width w[0] = sigma.
    let energy = RbfMixture::shared_width(1, sample.points.clone())?;
    // Start from the lowest-energy data point (the seeds are the points themselves).
    let sol = layer.forward(&energy, sigma, Start::Seeds(&sample.points))?;
    let err = sol.y[0] - sample.target;
    // dl/dt* = 2 err; the backward pass turns it into dl/dsigma.
    let back = layer.backward(&energy, sigma, &sol, &[2.0 * err])?;
    Ok((err * err, back.grad_w))
}

fn main() -> wiberg::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let train: Vec<Sample> = (0..200).map(|_| make_sample(&mut rng)).collect();

    // The paper's damping: lambda = 0.1. `Damping::Implicit` would be eq. (6) instead.
    let layer = ArgminLayer::with_damping(Damping::TrustRegion { lambda: 0.1 });
    let mut sigma = vec![2.0]; // deliberately too narrow: t* snaps to single points
    let mut sgd = Sgd::new(2.0, 0.5)?;

    println!("step   sigma     mean loss  failed");
    for step in 0..=30 {
        // Mean loss and gradient over the batch, in parallel, identical for any thread count.
        let batch = mean_loss_and_grad(&train, 1, |_, s| loss_and_grad(&layer, s, &sigma))?;
        if step % 5 == 0 {
            println!("{step:>4}  {:>7.3}  {:>11.4}  {:>6}", sigma[0], batch.loss, batch.failures.len());
        }
        sgd.step(&mut sigma, &batch.grad)?;
        sigma[0] = sigma[0].max(0.5); // keep the width positive
    }

    // What one forward and backward pass reports.
    let energy = RbfMixture::shared_width(1, train[0].points.clone())?;
    let sol = layer.forward(&energy, &sigma, Start::Seeds(&train[0].points))?;
    let back = layer.backward(&energy, &sigma, &sol, &[1.0])?;
    let r = &sol.report;
    println!("\nsample 0: t* = {:.4}, mean of inliers = {:.4}", sol.y[0], train[0].target);
    println!(
        "report: seed {:?} of {} ranked, {} iterations, {} evaluations, stop {:?}, |grad| {:.2e} -> {:.2e} after polish",
        r.seed_index, r.seed_evaluations, r.iterations, r.evaluations, r.stop, r.grad_norm, r.final_grad_norm
    );
    let d = &back.diagnostics;
    println!(
        "diagnostics: eig_min(H) {:.4}, condition {:.2}, shift {}, solver {:?}; dt*/dsigma = {:.4}",
        d.min_eigenvalue, d.condition, d.shift, d.solver, back.grad_w[0]
    );
    Ok(())
}
