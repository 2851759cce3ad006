//! The gradient check itself: it accepts exact derivatives, measures the (deliberate) bias of
//! trust-region damping, and refuses bad input.

use wiberg::gradcheck::gradcheck;
use wiberg::{ArgminLayer, Damping, RbfMixture, Start, WibergError};

fn setup() -> (RbfMixture, Vec<f64>) {
    let points = vec![-1.0, -0.2, 0.4, 0.9, 3.0];
    (RbfMixture::shared_width(1, points.clone()).unwrap(), points)
}

fn loss(y: &[f64]) -> (f64, Vec<f64>) {
    ((y[0] - 0.1).powi(2), vec![2.0 * (y[0] - 0.1)])
}

#[test]
fn implicit_passes_and_trust_region_shows_its_bias() {
    let (e, seeds) = setup();
    let implicit = ArgminLayer::with_damping(Damping::Implicit);
    let check = gradcheck(&implicit, &e, &[1.1], Start::Seeds(&seeds), loss, 1e-6).unwrap();
    assert!(check.max_rel_error < 1e-6 && check.scaled_error < 1e-6, "{check:?}");
    assert!(check.analytic[0].abs() > 1e-3, "{check:?}");
    // lambda = 1 is large next to H here: the damped derivative is visibly shrunk.
    let damped = ArgminLayer::with_damping(Damping::TrustRegion { lambda: 1.0 });
    let biased = gradcheck(&damped, &e, &[1.1], Start::Seeds(&seeds), loss, 1e-6).unwrap();
    assert!(biased.max_rel_error > 1e-2, "{biased:?}");
    assert!(biased.analytic[0].abs() < biased.numeric[0].abs(), "{biased:?}");
}

#[test]
fn bad_input_is_an_error() {
    let (e, seeds) = setup();
    let layer = ArgminLayer::with_damping(Damping::Implicit);
    for step in [0.0, -1e-6, f64::NAN, f64::INFINITY] {
        let r = gradcheck(&layer, &e, &[1.1], Start::Seeds(&seeds), loss, step);
        assert!(matches!(r, Err(WibergError::InvalidArgument(_))), "{step}: {r:?}");
    }
    let wrong_len = |_: &[f64]| (0.0, vec![0.0, 0.0]);
    let r = gradcheck(&layer, &e, &[1.1], Start::Seeds(&seeds), wrong_len, 1e-6);
    assert!(matches!(r, Err(WibergError::DimensionMismatch { .. })), "{r:?}");
    let nan_loss = |_: &[f64]| (f64::NAN, vec![0.0]);
    let r = gradcheck(&layer, &e, &[1.1], Start::Seeds(&seeds), nan_loss, 1e-6);
    assert!(matches!(r, Err(WibergError::NonFinite { .. })), "{r:?}");
}

#[test]
fn weight_scaled_2d_mixture_passes() {
    // Fusion's energy: 2-D, a width per tracker, a weight per (tracker, age bin), scale 1/K.
    let centers = vec![0.1, -0.2, 0.3, 0.25, -0.4, 0.05, 0.05, 0.1];
    let e = RbfMixture::new(2, centers.clone(), vec![0, 1, 1, 0], Some(vec![2, 3, 4, 2]), 5)
        .unwrap()
        .with_weight_scale(0.25)
        .unwrap();
    let w = [0.45, 0.6, 1.2, 0.7, 2.0];
    let loss2 = |y: &[f64]| {
        let (a, b) = (y[0] - 0.1, y[1] + 0.05);
        (a * a + b * b, vec![2.0 * a, 2.0 * b])
    };
    let implicit = ArgminLayer::with_damping(Damping::Implicit);
    let check = gradcheck(&implicit, &e, &w, Start::Seeds(&centers), loss2, 1e-6).unwrap();
    assert!(check.scaled_error < 1e-6, "{check:?}");
    assert!(check.analytic.iter().all(|g| g.is_finite()) && check.analytic.iter().any(|g| g.abs() > 1e-3), "{check:?}");
}
