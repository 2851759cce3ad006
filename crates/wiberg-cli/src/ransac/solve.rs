//! `wiberg ransac solve`: one sample from a file, forward and derivative, as JSON.

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use wiberg::{Linearization, Report};
use wiberg_models::ransac::solve::{parse_points, solve_sample, SolveSettings};

use super::args::{parse_linearization, parse_nonzero_f64, parse_positive_f64};
use crate::common::DampingMode;

/// Options of `wiberg ransac solve`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SolveArgs {
    /// File of numbers separated by whitespace, commas or newlines (`-` for standard input).
    #[arg(long)]
    pub(crate) points: PathBuf,
    /// Kernel width sigma (finite, non-zero).
    #[arg(long, value_parser = parse_nonzero_f64, allow_hyphen_values = true)]
    pub(crate) sigma: f64,
    /// Damping of the polish step and the derivative.
    #[arg(long, value_enum, default_value_t = DampingMode::TrustRegion)]
    pub(crate) damping: DampingMode,
    /// lambda of trust-region and guarded (> 0).
    #[arg(long, default_value_t = 0.1, value_parser = parse_positive_f64, allow_hyphen_values = true)]
    pub(crate) lambda: f64,
    /// L-BFGS iterations (0: best point and polish only, what the authors' code runs).
    #[arg(long, default_value_t = 10)]
    pub(crate) lbfgs_iterations: usize,
    /// Skip the final damped Newton step.
    #[arg(long)]
    pub(crate) no_polish: bool,
    /// Where dt*/dsigma takes H and M: `at-solution` (the returned t*) or `polish-start`
    /// (where the polish step started; earlier versions' derivative).
    #[arg(long, default_value = "at-solution", value_parser = parse_linearization)]
    pub(crate) linearization: Linearization,
}

/// What `solve` prints.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SolveOutput {
    /// The estimate `t*`.
    pub(crate) t_star: f64,
    /// `dt*/dsigma` under the chosen damping (null when it does not exist).
    pub(crate) dt_dsigma: Option<f64>,
    /// Why there is no derivative (singular Hessian under `implicit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) derivative_error: Option<String>,
    /// `E(t*)`.
    pub(crate) energy: f64,
    /// The damping used.
    pub(crate) damping: DampingMode,
    /// Its lambda (0 for implicit).
    pub(crate) lambda: f64,
    /// Number of points read.
    pub(crate) num_points: usize,
    /// The forward report (start seed, iterations, gradient norms, Hessian diagnostics).
    pub(crate) report: Report,
}

/// Reads a points file (`-` for standard input).
pub(crate) fn read_points(path: &Path) -> Result<Vec<f64>> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading points from standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read points file {}", path.display()))?
    };
    Ok(parse_points(&text, &path.display().to_string())?)
}

impl SolveArgs {
    /// The models crate's settings these options describe.
    pub(crate) fn settings(&self) -> SolveSettings {
        SolveSettings {
            sigma: self.sigma,
            damping: self.damping.damping(self.lambda),
            lbfgs_iterations: self.lbfgs_iterations,
            polish: !self.no_polish,
            linearization: self.linearization,
        }
    }
}

/// Forward pass from the lowest-energy point, then `dt*/dsigma`.
pub(crate) fn solve_points(points: &[f64], args: &SolveArgs) -> Result<SolveOutput> {
    let settings = args.settings();
    let solved = solve_sample(points, &settings)?;
    let (dt_dsigma, derivative_error) = match solved.dt_dsigma {
        Ok(d) => (Some(d), None),
        Err(err) => (None, Some(err.to_string())),
    };
    Ok(SolveOutput {
        t_star: solved.t_star,
        dt_dsigma,
        derivative_error,
        energy: solved.energy,
        damping: args.damping,
        lambda: settings.damping.lambda(),
        num_points: points.len(),
        report: solved.report,
    })
}

/// Runs `wiberg ransac solve`.
pub(crate) fn run(args: SolveArgs) -> Result<()> {
    let points = read_points(&args.points)?;
    let out = solve_points(&points, &args)?;
    if let Some(err) = &out.derivative_error {
        eprintln!("warning: no derivative: {err}");
    }
    println!("{}", serde_json::to_string(&out).context("serialising the result")?);
    Ok(())
}
