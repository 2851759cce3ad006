//! `wiberg ransac solve`: one sample from a file, forward and derivative, as JSON.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use wiberg::{ArgminLayer, LbfgsConfig, Linearization, Minimizer, RbfMixture, Report, Start};

use super::args::{parse_linearization, parse_nonzero_f64, parse_positive_f64};
use crate::common::DampingMode;

/// Options of `wiberg ransac solve`.
#[derive(Debug, Clone, clap::Args)]
pub struct SolveArgs {
    /// File of numbers separated by whitespace, commas or newlines (`-` for standard input).
    #[arg(long)]
    pub points: PathBuf,
    /// Kernel width sigma (finite, non-zero).
    #[arg(long, value_parser = parse_nonzero_f64, allow_hyphen_values = true)]
    pub sigma: f64,
    /// Damping of the polish step and the derivative.
    #[arg(long, value_enum, default_value_t = DampingMode::TrustRegion)]
    pub damping: DampingMode,
    /// lambda of trust-region and guarded (> 0).
    #[arg(long, default_value_t = 0.1, value_parser = parse_positive_f64, allow_hyphen_values = true)]
    pub lambda: f64,
    /// L-BFGS iterations (0: best point and polish only, what the authors' code runs).
    #[arg(long, default_value_t = 10)]
    pub lbfgs_iterations: usize,
    /// Skip the final damped Newton step.
    #[arg(long)]
    pub no_polish: bool,
    /// Where dt*/dsigma takes H and M: `at-solution` (the returned t*) or `polish-start`
    /// (where the polish step started; earlier versions' derivative).
    #[arg(long, default_value = "at-solution", value_parser = parse_linearization)]
    pub linearization: Linearization,
}

/// What `solve` prints.
#[derive(Debug, Clone, Serialize)]
pub struct SolveOutput {
    /// The estimate `t*`.
    pub t_star: f64,
    /// `dt*/dsigma` under the chosen damping (null when it does not exist).
    pub dt_dsigma: Option<f64>,
    /// Why there is no derivative (singular Hessian under `implicit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derivative_error: Option<String>,
    /// `E(t*)`.
    pub energy: f64,
    /// The damping used.
    pub damping: DampingMode,
    /// Its lambda (0 for implicit).
    pub lambda: f64,
    /// Number of points read.
    pub num_points: usize,
    /// The forward report (start seed, iterations, gradient norms, Hessian diagnostics).
    pub report: Report,
}

/// Parses numbers separated by whitespace, commas or newlines; errors name the line.
pub fn parse_points(text: &str, source: &str) -> Result<Vec<f64>> {
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let content = line.split('#').next().unwrap_or("");
        for token in content.split(|c: char| c.is_whitespace() || c == ',').filter(|t| !t.is_empty()) {
            let value: f64 =
                token.parse().map_err(|_| anyhow::anyhow!("{source} line {line_no}: '{token}' is not a number"))?;
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

/// Reads a points file (`-` for standard input).
pub fn read_points(path: &Path) -> Result<Vec<f64>> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading points from standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read points file {}", path.display()))?
    };
    parse_points(&text, &path.display().to_string())
}

/// The layer of `solve`.
pub fn solve_layer(args: &SolveArgs) -> ArgminLayer {
    let minimizer = if args.lbfgs_iterations == 0 {
        Minimizer::None
    } else {
        Minimizer::Lbfgs(LbfgsConfig::with_max_iters(args.lbfgs_iterations))
    };
    ArgminLayer {
        minimizer,
        polish: !args.no_polish,
        damping: args.damping.damping(args.lambda),
        linearization: args.linearization,
        ..Default::default()
    }
}

/// Forward pass from the lowest-energy point, then `dt*/dsigma`.
pub fn solve_points(points: &[f64], args: &SolveArgs) -> Result<SolveOutput> {
    let layer = solve_layer(args);
    let energy = RbfMixture::shared_width(1, points.to_vec())?;
    let w = [args.sigma];
    let sol = layer.forward(&energy, &w, Start::Seeds(points)).map_err(|err| {
        let hint = if matches!(err, wiberg::WibergError::NonFinite { .. }) {
            // The energy's terms scale like (x - t)^2 / sigma^2 and 1 / sigma^4: they overflow
            // when sigma is tiny (or huge) for the points' spread.
            format!(
                " (|sigma| = {:e} is out of range for points spread over {:e}: rescale them)",
                args.sigma.abs(),
                spread(points)
            )
        } else {
            String::new()
        };
        anyhow::Error::new(err).context(format!("forward pass with sigma = {:e}{hint}", args.sigma))
    })?;
    let (dt_dsigma, derivative_error) = match layer.backward(&energy, &w, &sol, &[1.0]) {
        Ok(b) => (Some(b.grad_w[0]), None),
        Err(err) => (None, Some(err.to_string())),
    };
    Ok(SolveOutput {
        t_star: sol.y[0],
        dt_dsigma,
        derivative_error,
        energy: sol.report.energy,
        damping: args.damping,
        lambda: layer.damping.lambda(),
        num_points: points.len(),
        report: sol.report,
    })
}

fn spread(points: &[f64]) -> f64 {
    let (lo, hi) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| (l.min(*p), h.max(*p)));
    hi - lo
}

/// Runs `wiberg ransac solve`.
pub fn run(args: SolveArgs) -> Result<()> {
    let points = read_points(&args.points)?;
    let out = solve_points(&points, &args)?;
    if let Some(err) = &out.derivative_error {
        eprintln!("warning: no derivative: {err}");
    }
    println!("{}", serde_json::to_string(&out).context("serialising the result")?);
    Ok(())
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
}
