//! Stress test on random RANSAC samples (see `examples/stress.rs` for the set-up and the full-size
//! command). Size from env `WIBERG_STRESS_SAMPLES` (default 20,000).

// The example's code as a module of the test module of the same name.
#[allow(dead_code, clippy::module_inception)]
#[path = "../../examples/stress.rs"]
mod stress;

use wiberg::Damping;

#[test]
fn random_ransac_samples_keep_the_derivative_guarantees() {
    let samples: u64 = std::env::var("WIBERG_STRESS_SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let results = stress::run(samples, 2019);
    for (damping, s) in &results {
        let name = damping.name();
        assert_eq!(s.samples, samples, "{name}");
        assert_eq!(s.ok + s.singular + s.other_errors, samples, "{name}: {s:?}");
        assert_eq!(s.non_finite_ok, 0, "{name}: NaN or inf in an Ok result: {s:?}");
        assert_eq!(s.other_errors, 0, "{name}: untyped failure: {s:?}");
        assert!(s.max_abs_grad.is_finite(), "{name}: {s:?}");
        match damping {
            Damping::TrustRegion { .. } => {
                assert_eq!(s.bound_fail_psd, 0, "trust-region bound broken at H >= 0: {s:?}");
                assert!(s.bound_fail_negative <= s.negative_hessian);
                // Most samples must solve: the width range includes tiny sigmas (isolated kernels,
                // H = 2/sigma^2 > 0), never a flat energy.
                assert!(s.ok * 10 >= samples * 9, "{s:?}");
            }
            Damping::Guarded { .. } => {
                assert_eq!(s.singular, 0, "guarded solves are never singular: {s:?}");
                assert_eq!(s.bound_fail_psd + s.bound_fail_negative, 0, "guarded bound broken: {s:?}");
            }
            Damping::Implicit => {
                // Every failure is the typed SingularHessian (checked by other_errors == 0).
                assert!(s.ok > 0, "{s:?}");
            }
        }
    }
    // The same samples under every mode: a sample is generated from (seed, index) only.
    assert_eq!(stress::sample(2019, 5), stress::sample(2019, 5));
    let (points, sigma) = stress::sample(2019, 5);
    assert_eq!(points.len(), 110);
    assert!((0.05..=20.0).contains(&sigma), "{sigma}");
    assert!(stress::energy_at(&points, sigma, 0.0).is_some_and(f64::is_finite));
}
