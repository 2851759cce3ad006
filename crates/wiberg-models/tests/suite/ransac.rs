//! One RANSAC sample's solve (`ransac::solve`): its derivative against central differences.

use wiberg::Damping;
use wiberg_models::ransac::sampling::{draw, run_rng, Protocol};
use wiberg_models::ransac::solve::{solve_sample, SolveSettings};

fn implicit_at(sigma: f64) -> SolveSettings {
    SolveSettings {
        sigma,
        damping: Damping::Implicit,
        lbfgs_iterations: 10,
        polish: true,
        linearization: wiberg::Linearization::AtSolution,
    }
}

#[test]
fn solve_derivative_matches_central_difference_under_implicit() {
    let mut rng = run_rng(4, 0);
    let mut checked = 0;
    for _ in 0..6 {
        let points = draw(Protocol::Paper, &mut rng).points;
        let sigma = 3.0;
        let out = solve_sample(&points, &implicit_at(sigma)).unwrap();
        let Ok(d) = out.dt_dsigma else { continue };
        let h = 1e-6;
        let plus = solve_sample(&points, &implicit_at(sigma + h)).unwrap();
        let minus = solve_sample(&points, &implicit_at(sigma - h)).unwrap();
        if plus.report.seed_index != minus.report.seed_index {
            continue; // the start jumped between seeds: not differentiable there
        }
        let fd = (plus.t_star - minus.t_star) / (2.0 * h);
        assert!((fd - d).abs() <= 1e-4 * (1.0 + d.abs()), "fd {fd} vs analytic {d}");
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} samples checked");
}
