//! The seed choice of the forward pass (`best_seed`, which may rule seeds out by a bound) is
//! the full scan's: the lowest finite value of `values_at`, ties to the first index, with the
//! same value bit for bit, on RANSAC-protocol samples at the widths training visits.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wiberg::minimize::seeds::best_seed;
use wiberg::{ArgminLayer, Energy, RbfMixture, Start};

/// 10 inliers within +-4 of a centre in [-40, 40] and 100 uniform outliers (the paper's shape).
fn ransac_sample(seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let m: f64 = rng.random_range(-40.0..40.0);
    let mut points: Vec<f64> = (0..10).map(|_| m + rng.random_range(-4.0..4.0)).collect();
    points.extend((0..100).map(|_| rng.random_range(-40.0..40.0)));
    points
}

/// The reference: every value, then the lowest finite one (ties: the first).
fn full_scan(e: &RbfMixture, w: &[f64], points: &[f64]) -> Option<(usize, u64)> {
    let mut values = vec![0.0; points.len()];
    e.values_at(points, w, &mut values);
    let mut best: Option<(usize, f64)> = None;
    for (i, &v) in values.iter().enumerate() {
        if v.is_finite() && best.is_none_or(|(_, b)| v < b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, v)| (i, v.to_bits()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn best_seed_is_the_full_scans_choice(seed in any::<u64>(), log_sigma in -0.5..2.2f64, negative in any::<bool>()) {
        let points = ransac_sample(seed);
        let sigma = if negative { -(10f64.powf(log_sigma)) } else { 10f64.powf(log_sigma) };
        let e = RbfMixture::shared_width(1, points.clone()).unwrap();
        let (i, v) = best_seed(&e, &[sigma], &points).unwrap();
        prop_assert_eq!(Some((i, v.to_bits())), full_scan(&e, &[sigma], &points));
    }
}

#[test]
fn forward_pass_starts_at_the_full_scans_seed_for_any_width() {
    let layer = ArgminLayer::default();
    for seed in 0..20 {
        let points = ransac_sample(1000 + seed);
        let e = RbfMixture::shared_width(1, points.clone()).unwrap();
        for sigma in [0.7, 2.0, 6.0, 15.0, 25.0, 40.0, 90.0] {
            let sol = layer.forward(&e, &[sigma], Start::Seeds(&points)).unwrap();
            let expected = full_scan(&e, &[sigma], &points).map(|(i, _)| i);
            assert_eq!(sol.report.seed_index, expected, "sample {seed} sigma {sigma}");
        }
    }
}
