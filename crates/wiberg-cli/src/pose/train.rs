//! `wiberg pose train`: Adam (TensorFlow epsilon, eps 0.1) on the batch mean of metric 2, with the
//! gradient of [`super::grad`], the spec's clipping after each step (§1.9), frames reshuffled each
//! epoch, rayon over the frames of a batch, a CSV log and atomic checkpoints in the
//! `trained_model__*.npy` layout.

use super::data;
use super::grad::{backward_lambda, frame_loss_and_grad, Damping};
use super::model::{PoseModel, Workspace};
use super::params::{offset, PoseParams, G, GROUPS, N_PARAMS};
use super::ModelArgs;
use anyhow::{ensure, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;
use wiberg::batch::mean_loss_and_grad;
use wiberg::optim::{Adam, AdamEpsilon, BoxConstraints, Optimizer};
use wiberg::WibergError;

/// Arguments of `wiberg pose train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Training data directory (`<name>__joint_2d.npy` / `<name>__joint_3d.npy` sequences).
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory: `train_log.csv`, `checkpoint/` (every --checkpoint-every batches and
    /// at the end of each epoch).
    #[arg(long)]
    pub out: PathBuf,
    /// Initial parameters and solver.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Derivative of the inner minimisers.
    #[arg(long, value_enum, default_value_t = Damping::TrustRegion)]
    pub damping: Damping,
    /// Trust-region lambda of the backward solves (`--damping trust-region`).
    #[arg(long, default_value_t = 1e-3)]
    pub lambda: f64,
    /// Epochs.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Frames per batch (an incomplete last batch of an epoch is dropped).
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.05)]
    pub lr: f64,
    /// Use every K-th frame of each sequence.
    #[arg(long, default_value_t = 5)]
    pub every: usize,
    /// Write a checkpoint every N batches (and at the end of each epoch).
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Stop after this many batches in total (0 = no limit), for short runs.
    #[arg(long, default_value_t = 0)]
    pub max_batches: usize,
    /// Seed of the per-epoch shuffles.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (0 = all cores). Results do not depend on it.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Continue from `<out>/checkpoint` and `<out>/train_state.json` (the parameter source
    /// arguments are then ignored); the other arguments must match the interrupted run.
    #[arg(long)]
    pub resume: bool,
}

/// What a checkpoint needs besides the parameters to continue a run exactly.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    /// Epoch of the next batch.
    pub epoch: usize,
    /// Index in that epoch of the next batch.
    pub next_batch: usize,
    /// Optimiser steps taken.
    pub step: usize,
    /// The optimiser (moments and step count).
    pub adam: Adam,
    /// The CSV log so far.
    pub log: String,
}

/// The clipping of §1.9 (`omega` [1e-3, 1e5]; `alpha`, `beta` [1e-5, 1e3]; `Sigma` [-5, 5];
/// `hl`, `ir` [1e-3, 5]); everything else is unbounded.
pub fn clipping() -> Result<BoxConstraints> {
    let mut b = BoxConstraints::unbounded(N_PARAMS);
    let range = |g: G| offset(g)..offset(g) + GROUPS[g as usize].len();
    b.set(range(G::JointWeights), 1e-3, 1e5)?;
    b.set(range(G::ExpWeights), 1e-5, 1e3)?;
    b.set(range(G::ExpWeightsModel), 1e-5, 1e3)?;
    b.set(range(G::SigmaVariance), -5.0, 5.0)?;
    b.set(range(G::HlParams), 1e-3, 5.0)?;
    b.set(range(G::IrReg), 1e-3, 5.0)?;
    Ok(b)
}

/// Runs `wiberg pose train`.
pub fn run(args: TrainArgs) -> Result<()> {
    ensure!(args.batch >= 1, "--batch must be at least 1");
    ensure!(args.every >= 1, "--every must be at least 1");
    ensure!(args.checkpoint_every >= 1, "--checkpoint-every must be at least 1");
    ensure!(args.lambda.is_finite() && args.lambda >= 0.0, "--lambda must be finite and >= 0");
    let variant = args.model.variant;
    let lambda = backward_lambda(args.damping, args.lambda);
    let seqs = data::load_dir(&args.data)?;
    let mut frames = Vec::new();
    for seq in &seqs {
        for f in (0..seq.joint_2d.len()).step_by(args.every) {
            frames.push((seq.joint_2d[f], seq.joint_3d[f]));
        }
    }
    let batches_per_epoch = frames.len() / args.batch;
    ensure!(batches_per_epoch > 0, "{}: {} frames, fewer than one batch", args.data.display(), frames.len());
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let ckpt_dir = args.out.join("checkpoint");
    let log_path = args.out.join("train_log.csv");
    let state_path = args.out.join("train_state.json");
    let clip = clipping()?;
    let (mut params, mut state) = if args.resume {
        let params = PoseParams::load_checkpoint(&ckpt_dir, true)
            .with_context(|| format!("resuming: loading {}", ckpt_dir.display()))?;
        let text = std::fs::read_to_string(&state_path)
            .with_context(|| format!("resuming: reading {}", state_path.display()))?;
        let state: TrainState =
            serde_json::from_str(&text).with_context(|| format!("resuming: parsing {}", state_path.display()))?;
        (params, state)
    } else {
        let source = args.model.source()?;
        let mut params =
            PoseParams::load(&source, args.model.load_robust_params).with_context(|| format!("loading {source:?}"))?;
        clip.project(&mut params.values)?;
        let adam = Adam::with_params(args.lr, 0.9, 0.999, 0.1, AdamEpsilon::TensorFlow)?;
        let log = String::from("epoch,batch,step,loss_mm,frames_ok,failures,seconds\n");
        (params, TrainState { epoch: 0, next_batch: 0, step: 0, adam, log })
    };
    let total = if args.max_batches > 0 {
        args.max_batches.min(batches_per_epoch * args.epochs)
    } else {
        batches_per_epoch * args.epochs
    };
    let pb = crate::common::progress_bar(total as u64, "batches");
    pb.set_position(state.step.min(total) as u64);
    let start = Instant::now();
    let first_step = state.step;
    let save = |params: &PoseParams, state: &TrainState| -> Result<()> {
        params.save(&ckpt_dir)?;
        crate::common::write_json(&state_path, state)?;
        crate::common::atomic_write(&log_path, state.log.as_bytes())
    };
    'epochs: for epoch in state.epoch..args.epochs {
        // Each epoch's order depends only on the seed and the epoch, so a resumed run sees the same batches.
        let mut order: Vec<usize> = (0..frames.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed.wrapping_add(epoch as u64));
        order.shuffle(&mut rng);
        let first_batch = if epoch == state.epoch { state.next_batch } else { 0 };
        for b in first_batch..batches_per_epoch {
            if args.max_batches > 0 && state.step >= args.max_batches {
                break 'epochs;
            }
            let model = PoseModel::new(&params, variant)?;
            let batch: Vec<usize> = order[b * args.batch..(b + 1) * args.batch].to_vec();
            let outcome = crate::common::with_threads(args.threads, || {
                mean_loss_and_grad(&batch, N_PARAMS, |_, &i| {
                    let mut ws = Workspace::default();
                    let (frame, gt) = &frames[i];
                    frame_loss_and_grad(&model, &params, frame, gt, lambda, &mut ws)
                        .map_err(|e| WibergError::InvalidArgument(format!("frame {i}: {e:#}")))
                })
            })??;
            state.adam.step(&mut params.values, &outcome.grad)?;
            clip.project(&mut params.values)?;
            params.check_finite()?;
            state.step += 1;
            state.epoch = epoch;
            state.next_batch = b + 1;
            writeln!(
                state.log,
                "{epoch},{b},{},{},{},{},{:.3}",
                state.step,
                outcome.loss,
                outcome.count,
                outcome.failures.len(),
                start.elapsed().as_secs_f64()
            )?;
            pb.inc(1);
            pb.set_message(format!("loss {:.2} mm", outcome.loss));
            if state.step % args.checkpoint_every == 0 {
                params.epoch = epoch as i64;
                save(&params, &state)?;
            }
        }
        state.epoch = epoch + 1;
        state.next_batch = 0;
        params.epoch = state.epoch as i64;
        save(&params, &state)?;
    }
    save(&params, &state)?;
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let steps = state.step - first_step;
    println!(
        "{steps} batches of {} frames in {secs:.1} s: {:.2} frames/s (forward + backward); checkpoint in {}",
        args.batch,
        (steps * args.batch) as f64 / secs.max(1e-9),
        ckpt_dir.display()
    );
    Ok(())
}
