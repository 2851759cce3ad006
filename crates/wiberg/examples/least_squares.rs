//! Least squares with gradients: a closed-form damped weighted fit, then a robust
//! (pseudo-Huber) fit by IRLS, each differentiated with respect to its data and parameters.
//!
//! Run: `cargo run -p wiberg --release --example least_squares`

use nalgebra::{DMatrix, DVector};
use wiberg::least_squares::{IrlsConfig, LeastSquares, RobustLeastSquares};
use wiberg::Damping;

fn main() -> wiberg::Result<()> {
    // Points on the line b = 1 + 2 t with a little noise, and one gross outlier at t = 0.9.
    let t = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
    let noise = [0.02, -0.03, 0.01, 0.04, -0.02, 0.0, 0.03, -0.01, -0.04, 0.0];
    let mut b: Vec<f64> = t.iter().zip(&noise).map(|(t, e)| 1.0 + 2.0 * t + e).collect();
    b[9] += 5.0;
    // Design matrix: rows (1, t) for y = (intercept, slope).
    let a = DMatrix::from_fn(t.len(), 2, |i, j| if j == 0 { 1.0 } else { t[i] });
    let b = DVector::from_vec(b);

    // 1. Damped weighted least squares: the outlier gets weight 0.1, and mu = 1e-3 damps y.
    let mut weights = DVector::from_element(t.len(), 1.0);
    weights[9] = 0.1;
    let ls = LeastSquares::new(a.clone(), b.clone())?.with_weights(weights.clone())?.with_mu(1e-3)?;
    let sol = ls.solve(Damping::Implicit)?;
    println!("weighted LS:  intercept {:.4}, slope {:.4}", sol.y[0], sol.y[1]);
    // Loss l = (slope - 2)^2; v = dl/dy*.
    let v = DVector::from_vec(vec![0.0, 2.0 * (sol.y[1] - 2.0)]);
    let grad = ls.backward(&sol, &v)?;
    // Exact derivative (Implicit): check dl/dweights[9] against a central finite difference.
    let loss_at = |w9: f64| -> wiberg::Result<f64> {
        let mut w = weights.clone();
        w[9] = w9;
        let y = LeastSquares::new(a.clone(), b.clone())?.with_weights(w)?.with_mu(1e-3)?.solve(Damping::Implicit)?.y;
        Ok((y[1] - 2.0).powi(2))
    };
    let h = 1e-6;
    let fd = (loss_at(0.1 + h)? - loss_at(0.1 - h)?) / (2.0 * h);
    println!("  dl/dweight of the outlier: {:.6} (finite differences {:.6})", grad.weights[9], fd);
    println!("  dl/db of the outlier:      {:.6}", grad.b[9]);

    // 2. Robust fit: pseudo-Huber residuals, solved by IRLS, no hand-set weights.
    let delta = 0.1;
    let robust = RobustLeastSquares::new(a.clone(), b.clone(), 1, delta)?.with_mu(1e-3)?;
    let config = IrlsConfig::default(); // to tolerance; `max_iters: 3` + zero tolerances = 3 fixed steps
    for damping in [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }] {
        let sol = robust.solve(&config, damping)?;
        let r = &sol.report;
        println!(
            "\nIRLS ({}): intercept {:.4}, slope {:.4}; {} iterations, |grad E| {:.1e}, stop {:?}",
            damping.name(),
            sol.y[0],
            sol.y[1],
            r.iterations,
            r.grad_norm,
            r.stop
        );
        // The derivative uses the true Hessian of the robust energy (not the IRLS weights).
        let v = DVector::from_vec(vec![0.0, 2.0 * (sol.y[1] - 2.0)]);
        let g = robust.backward(&sol, &v)?;
        let d = &g.diagnostics;
        println!(
            "  dl/ddelta {:.6}, dl/db of the outlier {:.2e}; eig_min(H) {:.4}, shift {}, solver {:?}",
            g.delta, g.b_robust[9], d.min_eigenvalue, d.shift, d.solver
        );
    }
    // Under Implicit, dl/ddelta is the exact derivative of the converged solve.
    let loss_at = |delta: f64| -> wiberg::Result<f64> {
        let p = RobustLeastSquares::new(a.clone(), b.clone(), 1, delta)?.with_mu(1e-3)?;
        let y = p.solve(&config, Damping::Implicit)?.y;
        Ok((y[1] - 2.0).powi(2))
    };
    let fd = (loss_at(delta + h)? - loss_at(delta - h)?) / (2.0 * h);
    println!("  finite differences of the IRLS solve: dl/ddelta {fd:.6}");
    Ok(())
}
