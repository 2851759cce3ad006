//! Stress run of the layer on random 1-D RANSAC samples: per sample, 10 inliers
//! `N(m, 4^2)` with `m ~ U[-40, 40]`, 100 outliers `U[-40, 40]`, a random width sigma
//! (log-uniform in `[0.05, 20]`); `RbfMixture::shared_width`, seeds = the points, L-BFGS with 10
//! iterations, then the damped Newton polish; backward with `dl/dt* = 1`, which gives
//! `dt*/dsigma`. Checked per damping mode:
//!
//! * `TrustRegion { 0.1 }`: no non-finite gradient; `|dt*/dsigma| <= |M| / lambda` whenever the
//!   Hessian at the linearisation point is `>= 0`; the samples where `H < 0` and the bound
//!   fails are counted (the paper's known gap).
//! * `Guarded { 0.1 }`: the bound always holds.
//! * `Implicit`: every failure is the typed `SingularHessian`, never a NaN or an infinity.
//!
//! ```text
//! cargo run --release -p wiberg --example stress -- 1000000 [seed]
//! ```
//! The same check runs in the test suite (`tests/suite/stress.rs`) at 20,000 samples.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use wiberg::{ArgminLayer, Damping, Energy, LbfgsConfig, Minimizer, RbfMixture, Start, WibergError};

/// The damping modes compared, in report order.
pub const MODES: [Damping; 3] =
    [Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.1 }, Damping::Implicit];

/// Relative slack on the bound `|dt*/dsigma| <= |M| / lambda` for rounding.
const BOUND_SLACK: f64 = 1e-9;

/// Counts for one damping mode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModeStats {
    /// Samples run.
    pub samples: u64,
    /// Forward and backward both `Ok`.
    pub ok: u64,
    /// `Ok` results with a NaN or infinite `y*` or gradient (must stay 0).
    pub non_finite_ok: u64,
    /// Failures that are `SingularHessian`.
    pub singular: u64,
    /// Failures of any other kind (must stay 0).
    pub other_errors: u64,
    /// `Ok` samples whose Hessian at the linearisation point is negative.
    pub negative_hessian: u64,
    /// `Ok` samples with `H >= 0` that break `|dt*/dsigma| <= |M| / lambda` (must stay 0 for the
    /// damped modes).
    pub bound_fail_psd: u64,
    /// `Ok` samples with `H < 0` that break the bound (the trust-region gap).
    pub bound_fail_negative: u64,
    /// `Ok` samples that break the bound with `|M|` alone but hold it once the rounding of the
    /// sum `M = sum_k m_k` is allowed for (`4 K eps sum_k |m_k| / lambda`): `M` cancelled to
    /// (nearly) 0 while the backward's own sum did not. Counted, not failures.
    pub bound_rounding: u64,
    /// Largest `|dt*/dsigma|` among `Ok` samples.
    pub max_abs_grad: f64,
    /// Largest `|dt*/dsigma| / (|M| / lambda)` among `Ok` samples (damped modes).
    pub max_bound_ratio: f64,
    /// Smallest Hessian at a linearisation point among `Ok` samples.
    pub min_hessian: f64,
    /// Example failure message (first seen), for the report.
    pub first_other_error: Option<String>,
}

impl ModeStats {
    fn empty() -> Self {
        ModeStats { min_hessian: f64::INFINITY, ..Default::default() }
    }

    fn merge(mut self, o: ModeStats) -> Self {
        self.samples += o.samples;
        self.ok += o.ok;
        self.non_finite_ok += o.non_finite_ok;
        self.singular += o.singular;
        self.other_errors += o.other_errors;
        self.negative_hessian += o.negative_hessian;
        self.bound_rounding += o.bound_rounding;
        self.bound_fail_psd += o.bound_fail_psd;
        self.bound_fail_negative += o.bound_fail_negative;
        self.max_abs_grad = self.max_abs_grad.max(o.max_abs_grad);
        self.max_bound_ratio = self.max_bound_ratio.max(o.max_bound_ratio);
        self.min_hessian = self.min_hessian.min(o.min_hessian);
        self.first_other_error = self.first_other_error.or(o.first_other_error);
        self
    }
}

/// One RANSAC sample: 110 points and a width, reproducible from `(seed, index)`.
pub fn sample(seed: u64, index: u64) -> (Vec<f64>, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let m: f64 = rng.random_range(-40.0..40.0);
    let mut points = Vec::with_capacity(110);
    for _ in 0..10 {
        // Box-Muller: N(m, 4^2).
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random();
        points.push(m + 4.0 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos());
    }
    points.extend((0..100).map(|_| rng.random_range(-40.0..40.0)));
    let sigma = (rng.random_range(0.05f64.ln()..20f64.ln())).exp();
    (points, sigma)
}

fn layer(damping: Damping) -> ArgminLayer {
    ArgminLayer {
        minimizer: Minimizer::Lbfgs(LbfgsConfig::with_max_iters(10)),
        polish: true,
        damping,
        ..Default::default()
    }
}

/// Runs one sample under one damping mode.
fn run_one(points: &[f64], sigma: f64, damping: Damping) -> ModeStats {
    let mut st = ModeStats::empty();
    st.samples = 1;
    let fail = |st: &mut ModeStats, err: WibergError| {
        if matches!(err, WibergError::SingularHessian { .. }) {
            st.singular += 1;
        } else {
            st.other_errors += 1;
            st.first_other_error = Some(err.to_string());
        }
    };
    let e = match RbfMixture::shared_width(1, points.to_vec()) {
        Ok(e) => e,
        Err(err) => {
            fail(&mut st, err);
            return st;
        }
    };
    let w = [sigma];
    let lay = layer(damping);
    let sol = match lay.forward(&e, &w, Start::Seeds(points)) {
        Ok(s) => s,
        Err(err) => {
            fail(&mut st, err);
            return st;
        }
    };
    let back = match lay.backward(&e, &w, &sol, &[1.0]) {
        Ok(b) => b,
        Err(err) => {
            fail(&mut st, err);
            return st;
        }
    };
    st.ok = 1;
    let grad = back.grad_w[0];
    if !grad.is_finite() || !sol.y[0].is_finite() {
        st.non_finite_ok = 1;
        return st;
    }
    st.max_abs_grad = grad.abs();
    let h = back.diagnostics.min_eigenvalue;
    st.min_hessian = h;
    let m = e.mixed_matrix(sol.linearization_point(), &w)[(0, 0)];
    let lambda = damping.lambda();
    if lambda > 0.0 {
        let bound = m.abs() / lambda;
        if bound > 0.0 {
            st.max_bound_ratio = grad.abs() / bound;
        }
        let strict = grad.abs() <= bound * (1.0 + BOUND_SLACK);
        let rounding =
            4.0 * points.len() as f64 * f64::EPSILON * mixed_abs_sum(points, sol.linearization_point()[0], sigma);
        let holds = grad.abs() <= (m.abs() + rounding) / lambda * (1.0 + BOUND_SLACK);
        if holds && !strict {
            st.bound_rounding = 1;
        }
        if h < 0.0 {
            st.negative_hessian = 1;
            if !holds {
                st.bound_fail_negative = 1;
            }
        } else if !holds {
            st.bound_fail_psd = 1;
        }
    } else if h < 0.0 {
        st.negative_hessian = 1;
    }
    st
}

/// `sum_k |d/dsigma dE_k/dt|` at `t`: the scale of the terms whose sum is `M` (its rounding).
fn mixed_abs_sum(points: &[f64], t: f64, sigma: f64) -> f64 {
    let inv_s2 = 1.0 / (sigma * sigma);
    points
        .iter()
        .map(|c| {
            let d = t - c;
            let r = d * d;
            (4.0 * (-r * inv_s2).exp() * d * (r * inv_s2 - 1.0) * inv_s2 / sigma).abs()
        })
        .sum()
}

/// Runs `samples` samples (in parallel, deterministic per sample) under every mode.
pub fn run(samples: u64, seed: u64) -> Vec<(Damping, ModeStats)> {
    MODES
        .iter()
        .map(|&damping| {
            let stats = (0..samples)
                .into_par_iter()
                .map(|i| {
                    let (points, sigma) = sample(seed, i);
                    run_one(&points, sigma, damping)
                })
                .reduce(ModeStats::empty, ModeStats::merge);
            (damping, stats)
        })
        .collect()
}

/// Energy used by the stress run, exposed for checks: `E(t) = -sum exp(-(x_i - t)^2 / sigma^2)`.
pub fn energy_at(points: &[f64], sigma: f64, t: f64) -> Option<f64> {
    RbfMixture::shared_width(1, points.to_vec()).ok().map(|e| e.value(&[t], &[sigma]))
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let samples: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let seed: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2019);
    let t0 = std::time::Instant::now();
    let results = run(samples, seed);
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{samples} samples x {} modes, seed {seed}, {secs:.1} s, {} threads",
        MODES.len(),
        rayon::current_num_threads()
    );
    for (damping, s) in &results {
        println!(
            "{:>12}: ok {}, singular {}, other errors {}, non-finite Ok {}, H<0 {}, bound fails (H>=0) {}, bound fails (H<0) {}, held only within the rounding of M {}, max |dt/dsigma| {:.3e}, max ratio to |M|/lambda {:.6}, min H {:.3e}{}",
            damping.name(),
            s.ok,
            s.singular,
            s.other_errors,
            s.non_finite_ok,
            s.negative_hessian,
            s.bound_fail_psd,
            s.bound_fail_negative,
            s.bound_rounding,
            s.max_abs_grad,
            s.max_bound_ratio,
            s.min_hessian,
            s.first_other_error.as_deref().map(|e| format!(", first other error: {e}")).unwrap_or_default()
        );
    }
}
