//! Train/test splits and the training loop (mini-batches of frames in parallel, Adam or SGD).

use super::model::{loss_and_grad, Frame, LossKind, ParamLayout};
use crate::common::{exact_f64, exact_f64_vec, from_exact_json, to_exact_json, OptimizerKind};
use anyhow::{Context, Result};
use indicatif::ProgressBar;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use wiberg::batch::mean_loss_and_grad;
use wiberg::optim::{Adam, AnyOptimizer, Asgd, Optimizer, Sgd};
use wiberg::{ArgminLayer, WibergError};
use wiberg_models::fusion::vot::Dataset;

/// How frames are assigned to train and test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SplitKind {
    /// Every frame independently at random.
    Frames,
    /// Whole sequences at random.
    Sequences,
}

impl SplitKind {
    /// `frames` or `sequences`.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            SplitKind::Frames => "frames",
            SplitKind::Sequences => "sequences",
        }
    }
}

/// Seeded split: `true` = train, one flag per frame in data-set order (sequence by sequence).
pub(crate) fn make_split(data: &Dataset, kind: SplitKind, train_fraction: f64, seed: u64) -> Vec<bool> {
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
                .flat_map(|(s, seq)| std::iter::repeat_n(is_train[s], seq.groundtruth.len()))
                .collect()
        }
    }
}

/// The split as text: `<sequence> <frame> train|test` per line (frames numbered from 1).
pub(crate) fn split_text(data: &Dataset, split: &[bool]) -> String {
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

/// Training settings.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct TrainConfig {
    /// Passes over the training frames.
    pub(crate) epochs: usize,
    /// Frames per mini-batch.
    pub(crate) batch: usize,
    /// Learning rate.
    pub(crate) lr: f64,
    /// Outer optimiser.
    pub(crate) optimizer: OptimizerKind,
    /// Training loss.
    pub(crate) loss: LossKind,
    /// Seed of the batch order.
    pub(crate) seed: u64,
}

/// One epoch's record.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EpochLog {
    /// Epoch number (from 1).
    pub(crate) epoch: usize,
    /// Mean training loss over the frames that succeeded (at the parameters of their batch).
    pub(crate) loss: f64,
    /// Frames whose forward or backward failed in this epoch.
    pub(crate) failed_frames: usize,
    /// Batches in which every frame failed (no step made).
    pub(crate) failed_batches: usize,
    /// Wall time of the epoch in seconds.
    pub(crate) seconds: f64,
    /// CPU time of the whole process during the epoch (all threads), when the platform
    /// reports it (Linux): on a loaded machine it shows how much of the wall time was ours.
    pub(crate) cpu_seconds: Option<f64>,
}

pub(crate) use crate::common::process_cpu_seconds;

/// What training produced.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TrainOutcome {
    /// The learned parameters.
    pub(crate) params: Vec<f64>,
    /// One record per epoch.
    pub(crate) epochs: Vec<EpochLog>,
    /// Counts of the failure kinds over all epochs: singular Hessian, non-finite, other.
    pub(crate) singular_hessian: usize,
    /// Non-finite loss, gradient or iterate.
    pub(crate) non_finite: usize,
    /// Other errors.
    pub(crate) other_errors: usize,
    /// Loss of the last epoch above 1.5 times that of the first (or not finite).
    pub(crate) diverged: bool,
    /// The first error seen, for the report.
    pub(crate) first_error: Option<String>,
}

impl TrainOutcome {
    /// Whether training ran cleanly: no failed frame and no divergence.
    pub(crate) fn converged(&self) -> bool {
        self.singular_hessian == 0 && self.non_finite == 0 && self.other_errors == 0 && !self.diverged
    }

    /// Mean seconds per epoch.
    pub(crate) fn seconds_per_epoch(&self) -> f64 {
        self.epochs.iter().map(|e| e.seconds).sum::<f64>() / self.epochs.len().max(1) as f64
    }

    /// Mean process CPU seconds per epoch, when known.
    pub(crate) fn cpu_seconds_per_epoch(&self) -> Option<f64> {
        let v: Option<Vec<f64>> = self.epochs.iter().map(|e| e.cpu_seconds).collect();
        v.map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64)
    }
}

/// Everything a training needs to continue exactly where it stopped: the epoch in progress
/// (its frame order already shuffled) and the next batch in it, the parameters, the
/// optimiser, the shuffle generator's position, the epoch's running sums and the log so far.
/// A finished training has `epoch == epochs + 1`.
#[derive(Debug, Clone)]
pub(crate) struct TrainState {
    /// The epoch in progress, from 1.
    pub(crate) epoch: usize,
    /// Index of the next batch of that epoch.
    pub(crate) next_batch: usize,
    /// The frame order of the epoch in progress.
    pub(crate) order: Vec<usize>,
    /// `ChaCha8Rng::get_word_pos` of the shuffle generator (after this epoch's shuffle).
    pub(crate) rng_word_pos: u128,
    /// The parameters.
    pub(crate) params: Vec<f64>,
    /// The optimiser.
    pub(crate) optimizer: AnyOptimizer,
    /// Sum of the successful frames' losses in this epoch.
    pub(crate) loss_sum: f64,
    /// Successful frames in this epoch.
    pub(crate) count: usize,
    /// Failed frames in this epoch.
    pub(crate) failed: usize,
    /// Batches of this epoch in which every frame failed.
    pub(crate) failed_batches: usize,
    /// Wall seconds spent on this epoch before the last checkpoint.
    pub(crate) epoch_seconds: f64,
    /// CPU seconds spent on this epoch before the last checkpoint (when known).
    pub(crate) epoch_cpu_seconds: Option<f64>,
    /// Finished epochs' records and the failure counts so far (its `params` is unused).
    pub(crate) outcome: TrainOutcome,
}

fn shuffle_rng(seed: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(0xba7c4);
    rng
}

impl TrainState {
    /// The state before the first batch: parameters `init`, a fresh optimiser, the first
    /// epoch's order shuffled.
    pub(crate) fn new(train_idx: &[usize], init: Vec<f64>, cfg: &TrainConfig) -> Result<Self> {
        anyhow::ensure!(!train_idx.is_empty(), "no training frames");
        anyhow::ensure!(cfg.batch > 0 && cfg.epochs > 0, "--batch and --epochs must be at least 1");
        let optimizer = match cfg.optimizer {
            OptimizerKind::Adam => AnyOptimizer::Adam(Adam::new(cfg.lr)?),
            OptimizerKind::Sgd => AnyOptimizer::Sgd(Sgd::new(cfg.lr, 0.9)?),
            // PyTorch's defaults apart from the learning rate.
            OptimizerKind::Asgd => AnyOptimizer::Asgd(Asgd::new(cfg.lr, 1e-4, 0.75, 1e6)?),
        };
        let mut rng = shuffle_rng(cfg.seed);
        let mut order = train_idx.to_vec();
        order.shuffle(&mut rng);
        Ok(TrainState {
            epoch: 1,
            next_batch: 0,
            order,
            rng_word_pos: rng.get_word_pos(),
            params: init,
            optimizer,
            loss_sum: 0.0,
            count: 0,
            failed: 0,
            failed_batches: 0,
            epoch_seconds: 0.0,
            epoch_cpu_seconds: Some(0.0),
            outcome: TrainOutcome {
                params: Vec::new(),
                epochs: Vec::new(),
                singular_hessian: 0,
                non_finite: 0,
                other_errors: 0,
                diverged: false,
                first_error: None,
            },
        })
    }

    /// Frames already processed (for a progress bar).
    pub(crate) fn frames_done(&self, cfg: &TrainConfig) -> usize {
        let per_epoch = self.order.len();
        let in_epoch = (self.next_batch * cfg.batch).min(per_epoch);
        (self.epoch.saturating_sub(1) * per_epoch + in_epoch).min(cfg.epochs * per_epoch)
    }

    /// The outcome of a finished training.
    pub(crate) fn into_outcome(self) -> TrainOutcome {
        let mut out = self.outcome;
        let first = out.epochs.first().map_or(f64::NAN, |e| e.loss);
        let last = out.epochs.last().map_or(f64::NAN, |e| e.loss);
        out.diverged = !(first.is_finite() && last.is_finite()) || last > 1.5 * first;
        out.params = self.params;
        out
    }
}

/// Continues `state` to the end of training. `save(state)` is called every `checkpoint_every`
/// batches within an epoch (0 = never) and at the end of every epoch; the state it sees is
/// exactly what [`train_from`] needs to continue (the result does not depend on where it
/// stopped). Returns the finished state.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_from(
    frames: &[Frame],
    layout: &ParamLayout,
    mut state: TrainState,
    layer: &ArgminLayer,
    cfg: &TrainConfig,
    pb: &ProgressBar,
    checkpoint_every: usize,
    save: &mut dyn FnMut(&TrainState) -> Result<()>,
) -> Result<TrainState> {
    let bounds = layout.bounds()?;
    anyhow::ensure!(cfg.batch > 0, "--batch must be at least 1");
    let mut rng = shuffle_rng(cfg.seed);
    rng.set_word_pos(state.rng_word_pos);
    while state.epoch <= cfg.epochs {
        let start = Instant::now();
        let cpu_start = process_cpu_seconds();
        let elapsed = |state: &TrainState| {
            let seconds = state.epoch_seconds + start.elapsed().as_secs_f64();
            let cpu = state.epoch_cpu_seconds.zip(process_cpu_seconds().zip(cpu_start)).map(|(c, (b, a))| c + b - a);
            (seconds, cpu)
        };
        let batches = state.order.len().div_ceil(cfg.batch);
        while state.next_batch < batches {
            let lo = state.next_batch * cfg.batch;
            let batch = &state.order[lo..(lo + cfg.batch).min(state.order.len())];
            let w = &state.params;
            let outcome = mean_loss_and_grad(batch, w.len(), |_, &i| loss_and_grad(&frames[i], w, layer, cfg.loss));
            let out = &mut state.outcome;
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
            let batch_len = batch.len();
            match outcome {
                Ok(o) => {
                    for (_, e) in &o.failures {
                        record(e);
                    }
                    state.failed += o.failures.len();
                    state.loss_sum += o.loss * o.count as f64;
                    state.count += o.count;
                    state.optimizer.step(&mut state.params, &o.grad).context("optimiser step")?;
                    bounds.project(&mut state.params)?;
                }
                Err(e) => {
                    // Every frame of the batch failed; the error is the first one.
                    record(&e);
                    state.failed += batch_len;
                    state.failed_batches += 1;
                }
            }
            pb.inc(batch_len as u64);
            state.next_batch += 1;
            if checkpoint_every > 0 && state.next_batch.is_multiple_of(checkpoint_every) && state.next_batch < batches {
                let (seconds, cpu) = elapsed(&state);
                let snapshot = TrainState { epoch_seconds: seconds, epoch_cpu_seconds: cpu, ..state.clone() };
                save(&snapshot)?;
            }
        }
        let (seconds, cpu_seconds) = elapsed(&state);
        let loss = if state.count > 0 { state.loss_sum / state.count as f64 } else { f64::NAN };
        state.outcome.epochs.push(EpochLog {
            epoch: state.epoch,
            loss,
            failed_frames: state.failed,
            failed_batches: state.failed_batches,
            seconds,
            cpu_seconds,
        });
        state.epoch += 1;
        state.next_batch = 0;
        (state.loss_sum, state.count, state.failed, state.failed_batches) = (0.0, 0, 0, 0);
        (state.epoch_seconds, state.epoch_cpu_seconds) = (0.0, Some(0.0));
        if state.epoch <= cfg.epochs {
            // The next epoch's order now, so that a checkpoint holds a ready-to-run epoch.
            state.order.shuffle(&mut rng);
        }
        state.rng_word_pos = rng.get_word_pos();
        save(&state)?;
    }
    Ok(state)
}

/// One epoch's record in a checkpoint (the loss bit-exact: it may be NaN).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedEpoch {
    epoch: usize,
    #[serde(with = "exact_f64")]
    loss: f64,
    failed_frames: usize,
    failed_batches: usize,
    seconds: f64,
    cpu_seconds: Option<f64>,
}

/// A [`TrainState`] as written to the state file: floats bit-exact (IEEE-754 bits in hex),
/// the optimiser through `to_exact_json`, the generator position as a decimal string.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedTrainState {
    epoch: usize,
    next_batch: usize,
    order: Vec<usize>,
    rng_word_pos: String,
    #[serde(with = "exact_f64_vec")]
    params: Vec<f64>,
    optimizer: serde_json::Value,
    #[serde(with = "exact_f64")]
    loss_sum: f64,
    count: usize,
    failed: usize,
    failed_batches: usize,
    epoch_seconds: f64,
    epoch_cpu_seconds: Option<f64>,
    epochs: Vec<SavedEpoch>,
    singular_hessian: usize,
    non_finite: usize,
    other_errors: usize,
    first_error: Option<String>,
}

impl TrainState {
    /// The state in its file form.
    pub(crate) fn save(&self) -> Result<SavedTrainState> {
        Ok(SavedTrainState {
            epoch: self.epoch,
            next_batch: self.next_batch,
            order: self.order.clone(),
            rng_word_pos: self.rng_word_pos.to_string(),
            params: self.params.clone(),
            optimizer: to_exact_json(&self.optimizer).context("the optimiser state")?,
            loss_sum: self.loss_sum,
            count: self.count,
            failed: self.failed,
            failed_batches: self.failed_batches,
            epoch_seconds: self.epoch_seconds,
            epoch_cpu_seconds: self.epoch_cpu_seconds,
            epochs: self
                .outcome
                .epochs
                .iter()
                .map(|e| SavedEpoch {
                    epoch: e.epoch,
                    loss: e.loss,
                    failed_frames: e.failed_frames,
                    failed_batches: e.failed_batches,
                    seconds: e.seconds,
                    cpu_seconds: e.cpu_seconds,
                })
                .collect(),
            singular_hessian: self.outcome.singular_hessian,
            non_finite: self.outcome.non_finite,
            other_errors: self.outcome.other_errors,
            first_error: self.outcome.first_error.clone(),
        })
    }

    /// Reads a saved state back, checking it against the training it continues: the frame
    /// order must be a permutation of `train_idx`, the parameters of the layout's size.
    pub(crate) fn restore(
        saved: SavedTrainState,
        train_idx: &[usize],
        layout: &ParamLayout,
        cfg: &TrainConfig,
    ) -> Result<Self> {
        let mut sorted = saved.order.clone();
        sorted.sort_unstable();
        let mut expected = train_idx.to_vec();
        expected.sort_unstable();
        anyhow::ensure!(sorted == expected, "the saved frame order is not a permutation of the training frames");
        anyhow::ensure!(
            saved.params.len() == layout.num_params(),
            "{} saved parameters, the model has {}",
            saved.params.len(),
            layout.num_params()
        );
        anyhow::ensure!(
            saved.epoch >= 1
                && saved.epoch <= cfg.epochs + 1
                && saved.epochs.len() == saved.epoch - 1
                && saved.next_batch <= saved.order.len().div_ceil(cfg.batch.max(1)),
            "epoch {} batch {} with {} epochs logged does not fit --epochs {} and --batch {}",
            saved.epoch,
            saved.next_batch,
            saved.epochs.len(),
            cfg.epochs,
            cfg.batch
        );
        let rng_word_pos = saved.rng_word_pos.parse().context("rng_word_pos")?;
        Ok(TrainState {
            epoch: saved.epoch,
            next_batch: saved.next_batch,
            order: saved.order,
            rng_word_pos,
            params: saved.params,
            optimizer: from_exact_json(saved.optimizer).context("the optimiser state")?,
            loss_sum: saved.loss_sum,
            count: saved.count,
            failed: saved.failed,
            failed_batches: saved.failed_batches,
            epoch_seconds: saved.epoch_seconds,
            epoch_cpu_seconds: saved.epoch_cpu_seconds,
            outcome: TrainOutcome {
                params: Vec::new(),
                epochs: saved
                    .epochs
                    .into_iter()
                    .map(|e| EpochLog {
                        epoch: e.epoch,
                        loss: e.loss,
                        failed_frames: e.failed_frames,
                        failed_batches: e.failed_batches,
                        seconds: e.seconds,
                        cpu_seconds: e.cpu_seconds,
                    })
                    .collect(),
                singular_hessian: saved.singular_hessian,
                non_finite: saved.non_finite,
                other_errors: saved.other_errors,
                diverged: false,
                first_error: saved.first_error,
            },
        })
    }
}
