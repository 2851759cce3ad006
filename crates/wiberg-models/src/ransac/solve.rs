//! One RANSAC sample solved the way `wiberg ransac solve` solves it: the points as a 1-D RBF
//! energy with a shared width `sigma`, the forward pass from the lowest-energy point, and
//! `dt*/dsigma` under the chosen damping.

use crate::error::{bail, Error, Result};
use wiberg::{ArgminLayer, Damping, LbfgsConfig, Linearization, Minimizer, RbfMixture, Report, Start, WibergError};

/// Parses numbers separated by whitespace, commas or newlines (`#` starts a comment); errors name
/// `source` and the line.
pub fn parse_points(text: &str, source: &str) -> Result<Vec<f64>> {
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let content = line.split('#').next().unwrap_or("");
        for token in content.split(|c: char| c.is_whitespace() || c == ',').filter(|t| !t.is_empty()) {
            let Ok(value) = token.parse::<f64>() else {
                bail!("{source} line {line_no}: '{token}' is not a number");
            };
            if !value.is_finite() {
                bail!("{source} line {line_no}: '{token}' is not a finite number (NaN and infinities are not allowed)");
            }
            points.push(value);
        }
    }
    if points.is_empty() {
        bail!("{source}: no points (the file is empty or has only separators and comments)");
    }
    Ok(points)
}

/// How one sample is solved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolveSettings {
    /// The kernel width (finite, non-zero; its sign does not matter).
    pub sigma: f64,
    /// Damping of the polish step and the derivative.
    pub damping: Damping,
    /// L-BFGS iterations after the seed (0: the lowest-energy point and the polish step only,
    /// what the authors' code runs).
    pub lbfgs_iterations: usize,
    /// Whether the final damped Newton step runs.
    pub polish: bool,
    /// Where `H` and `M` of the derivative are taken.
    pub linearization: Linearization,
}

impl SolveSettings {
    /// The layer these settings describe.
    pub fn layer(&self) -> ArgminLayer {
        let minimizer = if self.lbfgs_iterations == 0 {
            Minimizer::None
        } else {
            Minimizer::Lbfgs(LbfgsConfig::with_max_iters(self.lbfgs_iterations))
        };
        ArgminLayer {
            minimizer,
            polish: self.polish,
            damping: self.damping,
            linearization: self.linearization,
            ..Default::default()
        }
    }
}

/// A solved sample.
#[derive(Debug, Clone)]
pub struct SolvedSample {
    /// The estimate `t*`.
    pub t_star: f64,
    /// `dt*/dsigma` under the chosen damping, or why it does not exist (a singular Hessian under
    /// implicit differentiation).
    pub dt_dsigma: std::result::Result<f64, WibergError>,
    /// `E(t*)`.
    pub energy: f64,
    /// The forward report (start seed, iterations, gradient norms, Hessian diagnostics).
    pub report: Report,
}

/// The forward pass from the lowest-energy point, then `dt*/dsigma`.
///
/// A forward pass that fails is an [`Error::Failed`] whose source is the library's error; when
/// its terms overflowed, the message says that `sigma` is out of range for the points' spread.
pub fn solve_sample(points: &[f64], settings: &SolveSettings) -> Result<SolvedSample> {
    let layer = settings.layer();
    let energy = RbfMixture::shared_width(1, points.to_vec())?;
    let w = [settings.sigma];
    let sol = layer.forward(&energy, &w, Start::Seeds(points)).map_err(|err| {
        let hint = if matches!(err, WibergError::NonFinite { .. }) {
            // The energy's terms scale like (x - t)^2 / sigma^2 and 1 / sigma^4: they overflow
            // when sigma is tiny (or huge) for the points' spread.
            format!(
                " (|sigma| = {:e} is out of range for points spread over {:e}: rescale them)",
                settings.sigma.abs(),
                spread(points)
            )
        } else {
            String::new()
        };
        Error::Failed {
            message: format!("forward pass with sigma = {:e}{hint}", settings.sigma),
            source: Box::new(err),
        }
    })?;
    let dt_dsigma = layer.backward(&energy, &w, &sol, &[1.0]).map(|b| b.grad_w[0]);
    Ok(SolvedSample { t_star: sol.y[0], dt_dsigma, energy: sol.report.energy, report: sol.report })
}

fn spread(points: &[f64]) -> f64 {
    let (lo, hi) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| (l.min(*p), h.max(*p)));
    hi - lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mixed_separators_and_names_bad_lines() {
        let p = parse_points("1, 2 3\n\n4.5e0,\t-6 # comment\n", "f").unwrap();
        assert_eq!(p, vec![1.0, 2.0, 3.0, 4.5, -6.0]);
        let e = parse_points("1\n2\nabc\n", "pts.txt").unwrap_err().to_string();
        assert!(e.contains("pts.txt line 3") && e.contains("'abc'"), "{e}");
        let e = parse_points("1 NaN", "f").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("NaN"), "{e}");
        assert!(parse_points(" \n,\n", "f").unwrap_err().to_string().contains("no points"));
    }

    #[test]
    fn a_refused_width_is_a_failed_forward_pass_naming_sigma() {
        let settings = SolveSettings {
            sigma: f64::NAN,
            damping: Damping::TrustRegion { lambda: 0.1 },
            lbfgs_iterations: 10,
            polish: true,
            linearization: Linearization::AtSolution,
        };
        let err = solve_sample(&[0.0, 1.0, 5.0], &settings).unwrap_err();
        assert!(matches!(err, Error::Failed { .. }), "{err:?}");
        assert!(err.to_string().contains("forward pass with sigma = NaN"), "{err}");
    }

    #[test]
    fn a_symmetric_pair_has_its_minimum_and_zero_derivative_in_the_middle() {
        for damping in [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.1 }] {
            let settings = SolveSettings {
                sigma: 3.0,
                damping,
                lbfgs_iterations: 10,
                polish: true,
                linearization: Linearization::AtSolution,
            };
            let s = solve_sample(&[-1.0, 1.0], &settings).unwrap();
            assert!(s.t_star.abs() < 1e-9, "{damping:?}: t* = {}", s.t_star);
            let d = s.dt_dsigma.unwrap();
            assert!(d.abs() < 1e-6, "{damping:?}: dt*/dsigma = {d}");
        }
    }
}
