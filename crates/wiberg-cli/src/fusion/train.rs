//! Train/test splits and the training loop (mini-batches of frames in parallel, Adam or SGD).

use super::model::{loss_and_grad, Frame, LossKind, ParamLayout};
use super::vot::Dataset;
use anyhow::{Context, Result};
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::Instant;
use wiberg::batch::mean_loss_and_grad;
use wiberg::optim::{Adam, Optimizer, Sgd};
use wiberg::{ArgminLayer, WibergError};

/// How frames are assigned to train and test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitKind {
    /// Every frame independently at random.
    Frames,
    /// Whole sequences at random.
    Sequences,
}

impl SplitKind {
    /// `frames` or `sequences`.
    pub fn name(&self) -> &'static str {
        match self {
            SplitKind::Frames => "frames",
            SplitKind::Sequences => "sequences",
        }
    }
}

/// Seeded split: `true` = train, one flag per frame in data-set order (sequence by sequence).
pub fn make_split(data: &Dataset, kind: SplitKind, train_fraction: f64, seed: u64) -> Vec<bool> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(0x0005_0117);
    match kind {
        SplitKind::Frames => (0..data.num_frames()).map(|_| rng.random::<f64>() < train_fraction).collect(),
        SplitKind::Sequences => {
            let n = data.sequences.len();
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng);
            let n_train = ((n as f64) * train_fraction).round() as usize;
            let mut is_train = vec![false; n];
            for &s in &order[..n_train.min(n)] {
                is_train[s] = true;
            }
            data.sequences
                .iter()
                .enumerate()
                .flat_map(|(s, seq)| std::iter::repeat(is_train[s]).take(seq.groundtruth.len()))
                .collect()
        }
    }
}

/// The split as text: `<sequence> <frame> train|test` per line (frames numbered from 1).
pub fn split_text(data: &Dataset, split: &[bool]) -> String {
    let mut out = String::with_capacity(split.len() * 16);
    let mut i = 0;
    for seq in &data.sequences {
        for f in 0..seq.groundtruth.len() {
            let set = if split.get(i).copied().unwrap_or(false) { "train" } else { "test" };
            out.push_str(&format!("{} {} {set}\n", seq.name, f + 1));
            i += 1;
        }
    }
    out
}

/// The outer optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam (PyTorch's defaults apart from the learning rate).
    Adam,
    /// Plain SGD with momentum 0.9.
    Sgd,
}

/// Training settings.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TrainConfig {
    /// Passes over the training frames.
    pub epochs: usize,
    /// Frames per mini-batch.
    pub batch: usize,
    /// Learning rate.
    pub lr: f64,
    /// Outer optimiser.
    pub optimizer: OptimizerKind,
    /// Training loss.
    pub loss: LossKind,
    /// Seed of the batch order.
    pub seed: u64,
}

/// One epoch's record.
#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    /// Epoch number (from 1).
    pub epoch: usize,
    /// Mean training loss over the frames that succeeded (at the parameters of their batch).
    pub loss: f64,
    /// Frames whose forward or backward failed in this epoch.
    pub failed_frames: usize,
    /// Batches in which every frame failed (no step made).
    pub failed_batches: usize,
    /// Wall time of the epoch in seconds.
    pub seconds: f64,
    /// CPU time of the whole process during the epoch (all threads), when the platform
    /// reports it (Linux): on a loaded machine it shows how much of the wall time was ours.
    pub cpu_seconds: Option<f64>,
}

pub use crate::common::process_cpu_seconds;

/// What training produced.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    /// The learned parameters.
    pub params: Vec<f64>,
    /// One record per epoch.
    pub epochs: Vec<EpochLog>,
    /// Counts of the failure kinds over all epochs: singular Hessian, non-finite, other.
    pub singular_hessian: usize,
    /// Non-finite loss, gradient or iterate.
    pub non_finite: usize,
    /// Other errors.
    pub other_errors: usize,
    /// Loss of the last epoch above 1.5 times that of the first (or not finite).
    pub diverged: bool,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
}

impl TrainOutcome {
    /// Whether training ran cleanly: no failed frame and no divergence.
    pub fn converged(&self) -> bool {
        self.singular_hessian == 0 && self.non_finite == 0 && self.other_errors == 0 && !self.diverged
    }

    /// Mean seconds per epoch.
    pub fn seconds_per_epoch(&self) -> f64 {
        self.epochs.iter().map(|e| e.seconds).sum::<f64>() / self.epochs.len().max(1) as f64
    }

    /// Mean process CPU seconds per epoch, when known.
    pub fn cpu_seconds_per_epoch(&self) -> Option<f64> {
        let v: Option<Vec<f64>> = self.epochs.iter().map(|e| e.cpu_seconds).collect();
        v.map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64)
    }
}

/// Trains the parameters from `init` on `frames[train]` with the given layer (its damping is the
/// derivative being tested). Frames without trackers must not be in `train`.
pub fn train(
    frames: &[Frame],
    train_idx: &[usize],
    layout: &ParamLayout,
    init: Vec<f64>,
    layer: &ArgminLayer,
    cfg: &TrainConfig,
    pb: &ProgressBar,
) -> Result<TrainOutcome> {
    anyhow::ensure!(!train_idx.is_empty(), "no training frames");
    anyhow::ensure!(cfg.batch > 0 && cfg.epochs > 0, "--batch and --epochs must be at least 1");
    let bounds = layout.bounds()?;
    let mut w = init;
    let mut opt: Box<dyn Optimizer> = match cfg.optimizer {
        OptimizerKind::Adam => Box::new(Adam::new(cfg.lr)?),
        OptimizerKind::Sgd => Box::new(Sgd::new(cfg.lr, 0.9)?),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(0xba7c4);
    let mut order = train_idx.to_vec();
    let mut out = TrainOutcome {
        params: Vec::new(),
        epochs: Vec::new(),
        singular_hessian: 0,
        non_finite: 0,
        other_errors: 0,
        diverged: false,
        first_error: None,
    };
    for epoch in 1..=cfg.epochs {
        let start = Instant::now();
        let cpu_start = process_cpu_seconds();
        order.shuffle(&mut rng);
        let (mut loss_sum, mut count, mut failed, mut failed_batches) = (0.0, 0usize, 0usize, 0usize);
        for batch in order.chunks(cfg.batch) {
            let outcome = mean_loss_and_grad(batch, w.len(), |_, &i| loss_and_grad(&frames[i], &w, layer, cfg.loss));
            let mut record = |e: &WibergError| {
                match e {
                    WibergError::SingularHessian { .. } => out.singular_hessian += 1,
                    WibergError::NonFinite { .. } => out.non_finite += 1,
                    _ => out.other_errors += 1,
                }
                if out.first_error.is_none() {
                    out.first_error = Some(e.to_string());
                }
            };
            match outcome {
                Ok(o) => {
                    for (_, e) in &o.failures {
                        record(e);
                    }
                    failed += o.failures.len();
                    loss_sum += o.loss * o.count as f64;
                    count += o.count;
                    opt.step(&mut w, &o.grad).context("optimiser step")?;
                    bounds.project(&mut w)?;
                }
                Err(e) => {
                    // Every frame of the batch failed; the error is the first one.
                    record(&e);
                    failed += batch.len();
                    failed_batches += 1;
                }
            }
            pb.inc(batch.len() as u64);
        }
        let loss = if count > 0 { loss_sum / count as f64 } else { f64::NAN };
        out.epochs.push(EpochLog {
            epoch,
            loss,
            failed_frames: failed,
            failed_batches,
            seconds: start.elapsed().as_secs_f64(),
            cpu_seconds: process_cpu_seconds().zip(cpu_start).map(|(b, a)| b - a),
        });
    }
    let first = out.epochs.first().map_or(f64::NAN, |e| e.loss);
    let last = out.epochs.last().map_or(f64::NAN, |e| e.loss);
    out.diverged = !(first.is_finite() && last.is_finite()) || last > 1.5 * first;
    out.params = w;
    Ok(out)
}
