//! Where the derivative is taken, on RANSAC samples whose inner solve has not converged.
//!
//! `cargo run --release -p wiberg-cli --example linearization`
//!
//! For paper-protocol samples and `--forward reference` (best point and one polish step, no
//! L-BFGS), prints `dt*/dsigma` with `H` and `M` at the returned `t*` (the default), at the
//! point the polish step started from (`Linearization::PolishStart`, the derivative of earlier
//! versions), and by central finite differences of the whole forward map `t*(sigma)`. The
//! implicit derivative is the one finite differences estimate (the trust-region one is biased
//! by design); samples whose seed changes within the difference step are skipped.

use wiberg::{ArgminLayer, Damping, Linearization, Minimizer, RbfMixture, Start};
use wiberg_models::ransac::sampling::{draw, run_rng, Protocol};

fn main() -> Result<(), wiberg::WibergError> {
    let layer = |damping, linearization| ArgminLayer {
        minimizer: Minimizer::None,
        polish: true,
        damping,
        linearization,
        ..Default::default()
    };
    let derivative =
        |points: &[f64], sigma: f64, damping, linearization| -> Result<(f64, f64, f64), wiberg::WibergError> {
            let e = RbfMixture::shared_width(1, points.to_vec())?;
            let l = layer(damping, linearization);
            let sol = l.forward(&e, &[sigma], Start::Seeds(points))?;
            let back = l.backward(&e, &[sigma], &sol, &[1.0])?;
            Ok((sol.y[0], back.grad_w[0], sol.report.grad_norm))
        };
    let t_of = |points: &[f64], sigma: f64, damping| -> Result<(f64, Option<usize>), wiberg::WibergError> {
        let e = RbfMixture::shared_width(1, points.to_vec())?;
        let sol = layer(damping, Linearization::AtSolution).forward(&e, &[sigma], Start::Seeds(points))?;
        Ok((sol.y[0], sol.report.seed_index))
    };
    // Central differences of the whole forward map (seed choice, polish step) under `damping`;
    // None when the seed changes within the step (not differentiable there).
    let fd = |points: &[f64], sigma: f64, damping| -> Result<Option<f64>, wiberg::WibergError> {
        let h = 1e-6 * sigma;
        let (plus, seed_plus) = t_of(points, sigma + h, damping)?;
        let (minus, seed_minus) = t_of(points, sigma - h, damping)?;
        Ok((seed_plus == seed_minus).then(|| (plus - minus) / (2.0 * h)))
    };
    println!(
        "{:>6} {:>5} {:>11} | {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10}",
        "sample", "sigma", "|g| seed", "impl. y*", "impl. start", "impl. FD", "TR y*", "TR start", "TR FD"
    );
    let mut rng = run_rng(0, 0);
    let (mut shown, mut err_new, mut err_old, mut tr_new_err, mut tr_old_err) =
        (0, Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for sample in 0..200 {
        let points = draw(Protocol::Paper, &mut rng).points;
        for sigma in [2.0, 5.0] {
            let (_, new, gnorm) = derivative(&points, sigma, Damping::Implicit, Linearization::AtSolution)?;
            let (_, old, _) = derivative(&points, sigma, Damping::Implicit, Linearization::PolishStart)?;
            let (_, tr_new, _) =
                derivative(&points, sigma, Damping::TrustRegion { lambda: 0.1 }, Linearization::AtSolution)?;
            let (_, tr_old, _) =
                derivative(&points, sigma, Damping::TrustRegion { lambda: 0.1 }, Linearization::PolishStart)?;
            let (Some(fd_impl), Some(fd_tr)) =
                (fd(&points, sigma, Damping::Implicit)?, fd(&points, sigma, Damping::TrustRegion { lambda: 0.1 })?)
            else {
                continue;
            };
            err_new.push(((new - fd_impl) / fd_impl).abs());
            err_old.push(((old - fd_impl) / fd_impl).abs());
            tr_new_err.push(((tr_new - fd_tr) / fd_tr).abs());
            tr_old_err.push(((tr_old - fd_tr) / fd_tr).abs());
            // Show the first few samples where the polish moved far (not converged).
            if gnorm > 1e-2 && shown < 8 {
                shown += 1;
                println!(
                    "{sample:>6} {sigma:>5} {gnorm:>11.2e} | {new:>10.4} {old:>10.4} {fd_impl:>10.4} | {tr_new:>10.4} {tr_old:>10.4} {fd_tr:>10.4}"
                );
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let n = err_new.len();
    if n == 0 {
        println!("no (sample, sigma) case kept its seed within the difference step");
        return Ok(());
    }
    let within = |v: &[f64], tol: f64| v.iter().filter(|e| **e <= tol).count();
    for (name, new, old) in [("implicit", &err_new, &err_old), ("trust-region", &tr_new_err, &tr_old_err)] {
        println!(
            "{name:>12}: {n} (sample, sigma) cases vs central FD of its forward map: relative error median {:.2e} at y*, {:.2e} at the polish start; within 1 %: {} at y*, {} at the polish start",
            median(&mut new.clone()),
            median(&mut old.clone()),
            within(new, 0.01),
            within(old, 0.01),
        );
    }
    Ok(())
}
