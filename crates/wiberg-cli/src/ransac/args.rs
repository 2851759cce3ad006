//! Command-line options of the training experiment and their validation.

use anyhow::{bail, Result};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use wiberg::optim::AnyOptimizer;
use wiberg::{ArgminLayer, LbfgsConfig, Linearization, Minimizer};

use crate::common::{DampingMode, OptimizerKind};
use wiberg_models::ransac::sampling::Protocol;

/// What the forward pass runs after picking the lowest-energy point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ForwardMode {
    /// L-BFGS (at most 10 iterations), then the damped Newton polish.
    Full,
    /// The polish only, no L-BFGS: what the authors' released code effectively runs (its
    /// L-BFGS call returns at once).
    Reference,
}

/// The forward/backward layer of one method: seeds, L-BFGS (or nothing), polish.
pub(crate) fn layer(
    method: DampingMode,
    lambda: f64,
    forward: ForwardMode,
    lbfgs_iterations: usize,
    linearization: Linearization,
) -> ArgminLayer {
    let minimizer = match forward {
        ForwardMode::Full if lbfgs_iterations > 0 => Minimizer::Lbfgs(LbfgsConfig::with_max_iters(lbfgs_iterations)),
        _ => Minimizer::None,
    };
    ArgminLayer { minimizer, polish: true, damping: method.damping(lambda), linearization, ..Default::default() }
}

/// Parses `--linearization`: `at-solution` (H and M at the returned t*, the default) or
/// `polish-start` (where the polish step started: the derivative of earlier versions).
pub(crate) fn parse_linearization(s: &str) -> std::result::Result<Linearization, String> {
    match s.trim() {
        "at-solution" => Ok(Linearization::AtSolution),
        "polish-start" => Ok(Linearization::PolishStart),
        other => Err(format!("must be at-solution or polish-start, got '{other}'")),
    }
}

fn parse_positive_int(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(v) if v >= 1 && v <= usize::MAX as i128 => Ok(v as usize),
        Ok(v) => Err(format!("must be a positive whole number (at least 1), got {v}")),
        Err(_) => Err(format!("must be a positive whole number, got '{s}'")),
    }
}

fn parse_count(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<i128>() {
        Ok(v) if v >= 0 && v <= usize::MAX as i128 => Ok(v as usize),
        Ok(v) => Err(format!("must be 0 or a positive whole number, got {v}")),
        Err(_) => Err(format!("must be a whole number, got '{s}'")),
    }
}

/// A finite number `> 0`.
pub(crate) fn parse_positive_f64(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite number greater than 0, got {v}")),
        Err(_) => Err(format!("must be a number, got '{s}'")),
    }
}

/// A finite non-zero number (a width may be negative: only `sigma^2` enters the energy).
pub(crate) fn parse_nonzero_f64(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v != 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite non-zero number, got {v}")),
        Err(_) => Err(format!("must be a number, got '{s}'")),
    }
}

/// Options of `wiberg ransac` (training). Defaults reproduce the paper's Figure 1 in seconds.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TrainArgs {
    /// How samples are drawn: `paper` (inlier centre ~ U[-40, 40], outliers U[-40, 40]) or
    /// `reference` (inliers N(2, 4^2), outliers U[-60, 20], as in the authors' code).
    #[arg(long, default_value_t = Protocol::Paper)]
    pub(crate) protocol: Protocol,
    /// `full`: best point, L-BFGS (10 iterations), damped Newton polish; `reference`: best
    /// point and polish only (what the authors' released code effectively runs).
    #[arg(long, value_enum, default_value_t = ForwardMode::Full)]
    pub(crate) forward: ForwardMode,
    /// Which derivatives to train, comma separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = DampingMode::ALL.to_vec())]
    pub(crate) methods: Vec<DampingMode>,
    /// Damping lambda of `trust-region` and `guarded` (> 0).
    #[arg(long, default_value_t = 0.1, value_parser = parse_positive_f64, allow_hyphen_values = true)]
    pub(crate) lambda: f64,
    /// Where dt*/dsigma takes H and M: `at-solution` (the returned t*) or `polish-start`
    /// (where the polish step started, reusing its factorisation; earlier versions' derivative).
    #[arg(long, default_value = "at-solution", value_parser = parse_linearization)]
    pub(crate) linearization: Linearization,
    /// Outer optimiser of sigma.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Asgd)]
    pub(crate) optimizer: OptimizerKind,
    /// Learning rate [default: 0.5 for asgd, 5e-3 for sgd].
    #[arg(long, value_parser = parse_positive_f64, allow_hyphen_values = true)]
    pub(crate) lr: Option<f64>,
    /// SGD momentum in [0, 1) [default: 0.99]; only with `--optimizer sgd`.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) momentum: Option<f64>,
    /// Training iterations (one sample each) per run.
    #[arg(long, default_value_t = 10_000, value_parser = parse_positive_int, allow_hyphen_values = true)]
    pub(crate) iterations: usize,
    /// Independent runs, each trained on its own sample stream (stream r of the seed).
    #[arg(long, default_value_t = 1, value_parser = parse_positive_int, allow_hyphen_values = true)]
    pub(crate) runs: usize,
    /// Random seed of the sample stream (the same stream feeds every method).
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Initial width sigma.
    #[arg(long, default_value_t = 1.0, value_parser = parse_nonzero_f64, allow_hyphen_values = true)]
    pub(crate) initial_sigma: f64,
    /// Print a row per method every this many iterations.
    #[arg(long, default_value_t = 500, value_parser = parse_positive_int, allow_hyphen_values = true)]
    pub(crate) report_every: usize,
    /// Output directory (CSV, summary.json, figure1.png, energy.png).
    #[arg(long, default_value = "results/ransac")]
    pub(crate) out: PathBuf,
    /// Worker threads (0 = all cores). Results do not depend on it.
    #[arg(long, default_value_t = 0, value_parser = parse_count)]
    pub(crate) threads: usize,
    /// Skip the figures (CSV and JSON only).
    #[arg(long)]
    pub(crate) no_plots: bool,
    /// Write the training state to `<out>/ransac-state.json` every this many iterations
    /// (atomically; 0 = never) [default: a quarter of --iterations, so the whole default run
    /// writes 3 checkpoints and their cost stays proportional to the CSV's].
    #[arg(long, value_parser = parse_count)]
    pub(crate) checkpoint_every: Option<usize>,
    /// Continue an interrupted run from `<out>/ransac-state.json`. The other arguments must
    /// be those of the interrupted run (--threads and --checkpoint-every may differ); the
    /// results are those of an uninterrupted run, timing columns aside.
    #[arg(long)]
    pub(crate) resume: bool,
}

/// The validated configuration of a training experiment (also written to `summary.json` and
/// to the checkpoint, where a resume checks it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TrainConfig {
    /// Sample protocol.
    pub(crate) protocol: Protocol,
    /// Forward pass.
    pub(crate) forward: ForwardMode,
    /// Methods, without duplicates, in the order given.
    pub(crate) methods: Vec<DampingMode>,
    /// Damping of trust-region and guarded.
    pub(crate) lambda: f64,
    /// Where the derivative takes H and M (absent in files written before it existed, whose
    /// derivative was the polish start's; a resume of such a state is refused by the
    /// configuration check, since the default now differs).
    #[serde(default = "polish_start")]
    pub(crate) linearization: Linearization,
    /// Outer optimiser.
    pub(crate) optimizer: OptimizerKind,
    /// Learning rate.
    pub(crate) lr: f64,
    /// SGD momentum (0 for ASGD).
    pub(crate) momentum: f64,
    /// ASGD decay `lambd`.
    pub(crate) asgd_lambd: f64,
    /// ASGD power `alpha`.
    pub(crate) asgd_alpha: f64,
    /// ASGD averaging start `t0`.
    pub(crate) asgd_t0: f64,
    /// L-BFGS iteration limit of the full forward pass.
    pub(crate) lbfgs_iterations: usize,
    /// Iterations per run.
    pub(crate) iterations: usize,
    /// Number of runs.
    pub(crate) runs: usize,
    /// Seed.
    pub(crate) seed: u64,
    /// Initial sigma.
    pub(crate) initial_sigma: f64,
    /// Rows every this many iterations.
    pub(crate) report_every: usize,
}

fn polish_start() -> Linearization {
    Linearization::PolishStart
}

impl TrainArgs {
    /// Checks the options together and fills in the optimiser defaults.
    pub(crate) fn config(&self) -> Result<TrainConfig> {
        if self.methods.is_empty() {
            bail!("--methods: give at least one of implicit, trust-region, guarded");
        }
        let mut methods = Vec::new();
        for m in &self.methods {
            if !methods.contains(m) {
                methods.push(*m);
            }
        }
        let (lr, momentum) = match self.optimizer {
            OptimizerKind::Asgd => {
                if self.momentum.is_some() {
                    bail!("--momentum applies to --optimizer sgd only (ASGD has no momentum)");
                }
                (self.lr.unwrap_or(0.5), 0.0)
            }
            OptimizerKind::Sgd => {
                let momentum = self.momentum.unwrap_or(0.99);
                if !(0.0..1.0).contains(&momentum) {
                    bail!("--momentum must be in [0, 1), got {momentum}");
                }
                (self.lr.unwrap_or(5e-3), momentum)
            }
            OptimizerKind::Adam => {
                if self.momentum.is_some() {
                    bail!("--momentum applies to --optimizer sgd only (Adam keeps its own moments)");
                }
                (self.lr.unwrap_or(0.05), 0.0)
            }
        };
        Ok(TrainConfig {
            protocol: self.protocol,
            forward: self.forward,
            methods,
            lambda: self.lambda,
            linearization: self.linearization,
            optimizer: self.optimizer,
            lr,
            momentum,
            asgd_lambd: 5e-4,
            asgd_alpha: 0.75,
            asgd_t0: 0.0,
            lbfgs_iterations: 10,
            iterations: self.iterations,
            runs: self.runs,
            seed: self.seed,
            initial_sigma: self.initial_sigma,
            report_every: self.report_every,
        })
    }
}

impl TrainArgs {
    /// Iterations between checkpoints (0 = none): `--checkpoint-every`, or a quarter of the
    /// iterations.
    pub(crate) fn checkpoint_interval(&self) -> usize {
        self.checkpoint_every.unwrap_or(self.iterations.div_ceil(4))
    }
}

impl TrainConfig {
    /// A fresh outer optimiser for one method's run.
    pub(crate) fn optimizer(&self) -> Result<AnyOptimizer> {
        Ok(match self.optimizer {
            OptimizerKind::Asgd => {
                AnyOptimizer::Asgd(wiberg::optim::Asgd::new(self.lr, self.asgd_lambd, self.asgd_alpha, self.asgd_t0)?)
            }
            OptimizerKind::Sgd => AnyOptimizer::Sgd(wiberg::optim::Sgd::new(self.lr, self.momentum)?),
            OptimizerKind::Adam => AnyOptimizer::Adam(wiberg::optim::Adam::new(self.lr)?),
        })
    }

    /// The layer of one method under this configuration.
    pub(crate) fn layer(&self, method: DampingMode) -> ArgminLayer {
        layer(method, self.lambda, self.forward, self.lbfgs_iterations, self.linearization)
    }
}
