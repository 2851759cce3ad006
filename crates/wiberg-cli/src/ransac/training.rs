//! The training loop: every method of a run sees the identical sample stream; methods and
//! runs are independent sequential trajectories, advanced in parallel in blocks of
//! `report_every` iterations (so the result does not depend on the number of threads).
//! Between blocks the whole state can be checkpointed (see [`super::checkpoint`]).

use anyhow::Result;
use indicatif::ProgressBar;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::time::{Duration, Instant};
use wiberg::optim::Optimizer;
use wiberg::{ArgminLayer, RbfMixture, Report, Start, WibergError};

use super::args::TrainConfig;
use crate::common::DampingMode;
use wiberg::optim::AnyOptimizer;
use wiberg_models::ransac::sampling::{draw, run_rng, Protocol, Sample};

/// What went wrong in a training step (the step is then skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Event {
    /// Nothing: the step was taken.
    None,
    /// The (damped) Hessian was singular: under `implicit` the derivative does not exist.
    Singular,
    /// A NaN or infinity in the energy, the solution or the gradient.
    NonFinite,
    /// Any other library error (recorded with its message in the summary).
    Error,
}

impl Event {
    /// Short name for the CSV.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Event::None => "",
            Event::Singular => "singular",
            Event::NonFinite => "non-finite",
            Event::Error => "error",
        }
    }

    fn of(err: &WibergError) -> Event {
        match err {
            WibergError::SingularHessian { .. } => Event::Singular,
            WibergError::NonFinite { .. } => Event::NonFinite,
            _ => Event::Error,
        }
    }
}

/// One training iteration of one method.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct IterRecord {
    /// Iteration number, from 1.
    pub(crate) iteration: usize,
    /// The width used for this sample (before the update).
    pub(crate) sigma: f64,
    /// `(t* - mean(inliers))^2` (NaN when the forward pass failed).
    pub(crate) loss: f64,
    /// `dL/dsigma` (NaN when there is none).
    pub(crate) grad: f64,
    /// The estimate `t*` (NaN when the forward pass failed).
    pub(crate) t_star: f64,
    /// L-BFGS iterations of the forward pass.
    pub(crate) inner_iterations: usize,
    /// Whether L-BFGS converged (always false with `--forward reference`).
    pub(crate) converged: bool,
    /// Whether the Hessian where the derivative was taken (t*, or the polish start under
    /// `--linearization polish-start`) was negative (not a minimum).
    pub(crate) negative_curvature: bool,
    /// The Hessian `d2E/dt2` where the derivative was taken.
    pub(crate) min_eigenvalue: f64,
    /// The shift added to it by the method's damping.
    pub(crate) shift: f64,
    /// What went wrong, if anything.
    pub(crate) event: Event,
    /// Wall time of the whole step (sample, forward, backward, update), microseconds.
    pub(crate) micros: f64,
}

/// Forward, loss and backward of one sample at width `sigma`.
#[derive(Debug, Clone)]
pub(crate) struct StepOutcome {
    /// The estimate.
    pub(crate) t_star: f64,
    /// The loss.
    pub(crate) loss: f64,
    /// The forward report.
    pub(crate) report: Report,
    /// `dL/dsigma`, or the error of the backward pass.
    pub(crate) grad: std::result::Result<f64, WibergError>,
}

/// Solves one sample and differentiates the loss `(t* - target)^2` with respect to sigma.
/// Errors of the forward pass are returned; errors of the backward pass are in `grad`.
pub(crate) fn sample_step(
    layer: &ArgminLayer,
    sigma: f64,
    sample: &Sample,
) -> std::result::Result<StepOutcome, WibergError> {
    let energy = RbfMixture::shared_width(1, sample.points.clone())?;
    let w = [sigma];
    let sol = layer.forward(&energy, &w, Start::Seeds(&sample.points))?;
    let t_star = sol.y[0];
    let residual = t_star - sample.target;
    let grad = layer.backward(&energy, &w, &sol, &[2.0 * residual]).map(|b| b.grad_w[0]);
    Ok(StepOutcome { t_star, loss: residual * residual, report: sol.report, grad })
}

/// One method's trajectory in one run.
pub(crate) struct MethodRun {
    /// Run index (0-based).
    pub(crate) run: usize,
    /// The method.
    pub(crate) method: DampingMode,
    /// Current sigma.
    pub(crate) sigma: f64,
    /// Every iteration so far.
    pub(crate) records: Vec<IterRecord>,
    /// Messages of the first few errors of kind [`Event::Error`].
    pub(crate) error_messages: Vec<String>,
    layer: ArgminLayer,
    protocol: Protocol,
    pub(super) optimizer: AnyOptimizer,
    pub(super) rng: ChaCha8Rng,
}

impl MethodRun {
    /// A fresh trajectory.
    pub(crate) fn new(config: &TrainConfig, run: usize, method: DampingMode) -> Result<Self> {
        Ok(MethodRun {
            run,
            method,
            sigma: config.initial_sigma,
            records: Vec::with_capacity(config.iterations),
            error_messages: Vec::new(),
            layer: config.layer(method),
            protocol: config.protocol,
            optimizer: config.optimizer()?,
            rng: run_rng(config.seed, run),
        })
    }

    /// Runs iterations until `records.len() == end`.
    pub(crate) fn advance(&mut self, end: usize, progress: &ProgressBar) {
        let mut pending = 0;
        while self.records.len() < end {
            let record = self.step();
            self.records.push(record);
            pending += 1;
            if pending == 64 {
                progress.inc(pending);
                pending = 0;
            }
        }
        progress.inc(pending);
    }

    fn step(&mut self) -> IterRecord {
        let started = Instant::now();
        let sample = draw(self.protocol, &mut self.rng);
        let sigma = self.sigma;
        let mut record = IterRecord {
            iteration: self.records.len() + 1,
            sigma,
            loss: f64::NAN,
            grad: f64::NAN,
            t_star: f64::NAN,
            inner_iterations: 0,
            converged: false,
            negative_curvature: false,
            min_eigenvalue: f64::NAN,
            shift: f64::NAN,
            event: Event::None,
            micros: 0.0,
        };
        let error = match sample_step(&self.layer, sigma, &sample) {
            Err(err) => Some(err),
            Ok(out) => {
                record.t_star = out.t_star;
                record.loss = out.loss;
                record.inner_iterations = out.report.iterations;
                record.converged = out.report.converged;
                record.negative_curvature = out.report.diagnostics.negative_curvature();
                record.min_eigenvalue = out.report.diagnostics.min_eigenvalue;
                record.shift = out.report.diagnostics.shift;
                match out.grad {
                    Ok(g) => {
                        record.grad = g;
                        let mut w = [self.sigma];
                        match self.optimizer.step(&mut w, &[g]) {
                            Ok(()) => {
                                self.sigma = w[0];
                                None
                            }
                            Err(err) => Some(err),
                        }
                    }
                    Err(err) => Some(err),
                }
            }
        };
        if let Some(err) = error {
            record.event = Event::of(&err);
            if record.event == Event::Error && self.error_messages.len() < 5 {
                self.error_messages.push(format!("iteration {}: {err}", record.iteration));
            }
        }
        record.micros = started.elapsed().as_secs_f64() * 1e6;
        record
    }
}

/// Everything a training experiment produced.
pub(crate) struct Training {
    /// The configuration.
    pub(crate) config: TrainConfig,
    /// One trajectory per (run, method), runs outer.
    pub(crate) trajectories: Vec<MethodRun>,
    /// Wall time of the training loop.
    pub(crate) wall: Duration,
    /// Threads used.
    pub(crate) threads: usize,
    /// CPU time (user + system) the process spent in the training loop, when the platform
    /// reports it (Linux `/proc/self/stat`).
    pub(crate) cpu_seconds: Option<f64>,
}

/// Fresh trajectories of every (run, method) of `config`, runs outer.
pub(crate) fn fresh_trajectories(config: &TrainConfig) -> Result<Vec<MethodRun>> {
    let mut trajectories = Vec::new();
    for run in 0..config.runs {
        for &method in &config.methods {
            trajectories.push(MethodRun::new(config, run, method)?);
        }
    }
    Ok(trajectories)
}

/// Trains every (run, method) of `config` for `config.iterations` iterations, calling
/// `on_block(trajectories, iterations_done)` after every block of `report_every` iterations.
/// (The command resumes through [`train_from`]; this fresh start is the tests'.)
#[cfg(test)]
pub(crate) fn train(
    config: &TrainConfig,
    progress: &ProgressBar,
    on_block: impl FnMut(&[MethodRun], usize),
) -> Result<Vec<MethodRun>> {
    train_from(config, fresh_trajectories(config)?, 0, progress, on_block, NoCheckpoints)
}

/// Continues `trajectories` (all at iteration `done`) to `config.iterations`. Blocks end at
/// every multiple of `report_every` (then `on_block` is called) and of `checkpoint_every`
/// (then `checkpoint(trajectories, done)` is called; 0 = never), and at the end. Where the
/// blocks end does not change the trajectories, only when the callbacks see them.
pub(crate) fn train_from(
    config: &TrainConfig,
    mut trajectories: Vec<MethodRun>,
    mut done: usize,
    progress: &ProgressBar,
    mut on_block: impl FnMut(&[MethodRun], usize),
    mut checkpoint: impl CheckpointSink,
) -> Result<Vec<MethodRun>> {
    let every = checkpoint.every();
    let next_multiple = |n: usize, k: usize| (n / k + 1) * k;
    while done < config.iterations {
        let mut end = next_multiple(done, config.report_every).min(config.iterations);
        if every > 0 {
            end = end.min(next_multiple(done, every));
        }
        trajectories.par_iter_mut().for_each(|t| t.advance(end, progress));
        done = end;
        if done.is_multiple_of(config.report_every) || done == config.iterations {
            on_block(&trajectories, done);
        }
        if every > 0 && done.is_multiple_of(every) && done < config.iterations {
            checkpoint.save(&trajectories, done)?;
        }
    }
    Ok(trajectories)
}

/// Where [`train_from`] sends its checkpoints.
pub(crate) trait CheckpointSink {
    /// Iterations between checkpoints (0 = never).
    fn every(&self) -> usize {
        0
    }
    /// Saves the state of `trajectories` after `done` iterations.
    fn save(&mut self, trajectories: &[MethodRun], done: usize) -> Result<()>;
}

impl<T: CheckpointSink + ?Sized> CheckpointSink for &mut T {
    fn every(&self) -> usize {
        (**self).every()
    }
    fn save(&mut self, trajectories: &[MethodRun], done: usize) -> Result<()> {
        (**self).save(trajectories, done)
    }
}

/// No checkpoints (the tests' sink).
#[cfg(test)]
pub(crate) struct NoCheckpoints;

#[cfg(test)]
impl CheckpointSink for NoCheckpoints {
    fn save(&mut self, _: &[MethodRun], _: usize) -> Result<()> {
        Ok(())
    }
}
