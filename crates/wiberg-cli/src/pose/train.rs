//! `wiberg pose train`: Adam (TensorFlow epsilon, eps 0.1) on the batch mean of metric 2, with the
//! gradient of [`super::grad`], the spec's clipping after each step (§1.9), frames reshuffled each
//! epoch, rayon over the frames of a batch, a CSV log and crash-safe checkpoints.
//!
//! Layout of `--out`:
//! - `checkpoints/step-<N>/`: the latest complete checkpoint: the parameters in the
//!   `trained_model__*.npy` layout (+ `avg_cameras__cams.npy`), `train_state.json` (run settings,
//!   position, optimiser), `adam_moments.npy` (bit-exact moments) and `train_log.csv`;
//! - `checkpoint.json`: names that directory;
//! - `train_log.csv` (a copy of the checkpoint's log; after a kill it may be one checkpoint ahead
//!   of it until the run is resumed) and `train_summary.json` (throughput).
//!
//! A checkpoint is written into a temporary directory, each file synced, renamed to
//! `step-<N>`, then `train_log.csv` is replaced, and only then is `checkpoint.json` atomically
//! replaced; older directories are removed after that. A SIGKILL at any moment thus leaves
//! `checkpoint.json` naming a complete, self-consistent checkpoint (parameters and state of the
//! same step), and `--resume` continues from it, removing anything else in `checkpoints/` and
//! the temporaries of killed writes in `--out`. `pose eval --checkpoint <out>`
//! (or the step directory itself) evaluates the latest checkpoint.

use super::data::{self, Frame2d, Pose3d};
use super::grad::frame_loss_and_grad;
use super::model::{PoseModel, Workspace};
use super::params::{offset, ParamSource, PoseParams, G, GROUPS, N_PARAMS};
use super::{process_cpu_seconds, ModelArgs};
use crate::common::DampingMode;
use anyhow::{bail, ensure, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use wiberg::batch::mean_loss_and_grad;
use wiberg::optim::{Adam, AdamEpsilon, BoxConstraints, Optimizer};
use wiberg::Damping;
use wiberg::WibergError;
use wiberg_models::pose::checkpoint::{
    latest_checkpoint, CheckpointPointer, CHECKPOINTS_DIR, POINTER_FILE, STATE_FILE,
};

/// Arguments of `wiberg pose train`.
#[derive(Debug, clap::Args)]
pub(crate) struct TrainArgs {
    /// Training data directory (`<name>__joint_2d.npy` / `<name>__joint_3d.npy` sequences).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Output directory: `checkpoints/step-<N>/` (the latest checkpoint, written every
    /// --checkpoint-every batches, at the end of each epoch and at the end), `checkpoint.json`
    /// (names it), `train_log.csv`, `train_summary.json`. Pass this directory (or the step
    /// directory) to `pose eval --checkpoint` or `pose table --runs`.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Initial parameters and solver.
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Derivative of the inner minimisers: `implicit` (lambda = 0), `trust-region` (`H + lambda
    /// I`) or `guarded` (`H + s I`, `s = lambda + max(0, -eig_min(H))`).
    #[arg(long, value_enum, default_value_t = DampingMode::TrustRegion)]
    pub(crate) damping: DampingMode,
    /// Lambda of the backward solves (`--damping trust-region` or `guarded`).
    #[arg(long, default_value_t = 1e-3, allow_hyphen_values = true)]
    pub(crate) lambda: f64,
    /// Epochs.
    #[arg(long, default_value_t = 20, allow_hyphen_values = true)]
    pub(crate) epochs: usize,
    /// Frames per batch (an incomplete last batch of an epoch is dropped).
    #[arg(long, default_value_t = 4, allow_hyphen_values = true)]
    pub(crate) batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.05, allow_hyphen_values = true)]
    pub(crate) lr: f64,
    /// Use every K-th frame of each sequence.
    #[arg(long, default_value_t = 5, allow_hyphen_values = true)]
    pub(crate) every: usize,
    /// Write a checkpoint every N batches (and at the end of each epoch).
    #[arg(long, default_value_t = 100, allow_hyphen_values = true)]
    pub(crate) checkpoint_every: usize,
    /// Stop after this many batches in total (0 = no limit), for short runs.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub(crate) max_batches: usize,
    /// Seed of the per-epoch shuffles.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub(crate) seed: u64,
    /// Worker threads (0 = all cores). Results do not depend on it.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub(crate) threads: usize,
    /// Continue from the latest checkpoint of --out. The settings that decide the parameters
    /// (--variant, --damping, --lambda, --batch, --lr, --every, --seed, the training data, and
    /// the parameter source if given) must equal the interrupted run's, or it stops with the
    /// differences; --epochs, --checkpoint-every, --max-batches and --threads may change.
    #[arg(long)]
    pub(crate) resume: bool,
}

/// The settings of a run that decide its parameters. Stored in every checkpoint; `--resume`
/// refuses to continue when any of them differs (`--epochs`, `--checkpoint-every`,
/// `--max-batches` and `--threads` may change: they move the stopping point or the checkpoints,
/// not the parameters).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RunConfig {
    /// The initial parameters (e.g. `checkpoint /path` or `init /path`).
    pub(crate) source: String,
    /// `--load-robust-params`.
    pub(crate) load_robust_params: bool,
    /// Inner solver (`huber` or `l2`): `pose table` evaluates the run with it.
    pub(crate) variant: String,
    /// Derivative of the inner minimisers (`trust-region`, `implicit` or `guarded`).
    pub(crate) damping: String,
    /// Backward lambda actually used (0 for `implicit`).
    pub(crate) lambda: f64,
    /// Frames per batch.
    pub(crate) batch: usize,
    /// Adam learning rate.
    pub(crate) lr: f64,
    /// Every K-th frame of each sequence.
    pub(crate) every: usize,
    /// Seed of the per-epoch shuffles.
    pub(crate) seed: u64,
    /// Training frames (after `--every`).
    pub(crate) frames: usize,
    /// FNV-1a hash (hex) of the bits of every training frame, detections and ground truth, in
    /// order: resuming on different data is refused even when the directory has moved.
    pub(crate) data_fingerprint: String,
}

/// What a checkpoint needs besides the parameters to continue a run exactly.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct TrainState {
    /// The run's settings.
    pub(crate) config: RunConfig,
    /// Epoch of the next batch.
    pub(crate) epoch: usize,
    /// Index in that epoch of the next batch.
    pub(crate) next_batch: usize,
    /// Optimiser steps taken.
    pub(crate) step: usize,
    /// The optimiser. Its moments are restored bit-exactly from `adam_moments.npy` (JSON
    /// floats need not round-trip exactly); the copy here is informative.
    pub(crate) adam: Adam,
    /// The CSV log so far.
    pub(crate) log: String,
    /// Frames of the run so far whose forward or backward pass met a numerically singular
    /// Hessian (counted, left out of their batch).
    #[serde(default)]
    pub(crate) singular_hessian: usize,
    /// Frames of the run so far with a non-finite reconstruction, loss or gradient.
    #[serde(default)]
    pub(crate) non_finite: usize,
}

/// Throughput of one `pose train` invocation, written to `<out>/train_summary.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct TrainSummary {
    /// Batches computed by this invocation.
    pub(crate) batches: usize,
    /// Frames whose loss and gradient were computed (forward + backward).
    pub(crate) frames: usize,
    /// Worker threads.
    pub(crate) threads: usize,
    /// Wall seconds of the whole invocation's training loop (with checkpoints).
    pub(crate) seconds_total: f64,
    /// Wall seconds inside the forward + backward passes.
    pub(crate) seconds_forward_backward: f64,
    /// CPU seconds (all threads) inside the forward + backward passes (Linux only).
    pub(crate) cpu_seconds_forward_backward: Option<f64>,
    /// Frames per wall second, forward + backward.
    pub(crate) frames_per_second: f64,
    /// Frames per CPU-second (per core), forward + backward: the figure to size runs with on a
    /// shared machine.
    pub(crate) frames_per_cpu_second: Option<f64>,
    /// Optimiser steps taken by the run so far.
    pub(crate) step: usize,
    /// The latest checkpoint directory (pass it, or `<out>` itself, to `pose eval --checkpoint`).
    pub(crate) checkpoint: PathBuf,
    /// Frames of the run so far left out of their batch for a singular Hessian.
    pub(crate) singular_hessian: usize,
    /// Frames of the run so far left out of their batch for a non-finite result.
    pub(crate) non_finite: usize,
}

const MOMENTS_FILE: &str = "adam_moments.npy";
const LOG_FILE: &str = "train_log.csv";
/// The log's columns; runs checkpointed before the singular-Hessian and non-finite counts
/// existed have `LOG_HEADER_WITHOUT_COUNTS`.
const LOG_HEADER: &str = "epoch,batch,step,loss_mm,frames_ok,failures,singular_hessian,non_finite,seconds";
const LOG_HEADER_WITHOUT_COUNTS: &str = "epoch,batch,step,loss_mm,frames_ok,failures,seconds";

/// Gives a log from a run checkpointed before the per-step counts existed the current columns,
/// with the counts of its old rows left empty (they were not counted), so that a resumed run
/// writes one consistent CSV.
fn upgrade_log(log: &str) -> String {
    let Some(rest) = log.strip_prefix(LOG_HEADER_WITHOUT_COUNTS).and_then(|r| r.strip_prefix('\n')) else {
        return log.to_string();
    };
    let mut out = format!("{LOG_HEADER}\n");
    for line in rest.lines() {
        match line.rsplit_once(',') {
            Some((head, seconds)) => out.push_str(&format!("{head},,,{seconds}\n")),
            None => out.push_str(&format!("{line}\n")),
        }
    }
    out
}

/// Reads the training state of a checkpoint directory (`None` when it has none, i.e. it was
/// not written by `pose train`).
pub(crate) fn read_state(ckpt: &Path) -> Result<Option<TrainState>> {
    let path = ckpt.join(STATE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut state: TrainState = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    state.log = upgrade_log(&state.log);
    let moments = ckpt.join(MOMENTS_FILE);
    if moments.exists() {
        let arr: ndarray::Array2<f64> =
            ndarray_npy::read_npy(&moments).with_context(|| format!("reading {}", moments.display()))?;
        ensure!(arr.nrows() == 2, "{}: shape {:?}, expected (2, N)", moments.display(), arr.shape());
        let m = arr.row(0).to_vec();
        let v = arr.row(1).to_vec();
        let steps = state.adam.steps();
        state.adam.restore(steps, m, v).with_context(|| format!("restoring {}", moments.display()))?;
    }
    Ok(Some(state))
}

/// Writes a complete checkpoint of `params` and `state` into `<out>/checkpoints/step-<N>/`,
/// then points `<out>/checkpoint.json` at it, then removes every other entry of
/// `checkpoints/`. Returns the checkpoint directory.
///
/// The order makes a kill at any moment recoverable by `--resume`: the files go into a
/// temporary directory (`.step-<N>.tmp<pid>`, see `common::temporary_path`), each
/// synced, which is renamed to `step-<N>` once complete; then `<out>/train_log.csv` is replaced
/// (before the pointer, so it is never behind the checkpoint the pointer names); only then is
/// the pointer replaced. A kill before the pointer leaves it naming the previous checkpoint;
/// whatever else is in `checkpoints/` is ignored and removed by the next run.
pub(crate) fn write_checkpoint(out: &Path, params: &PoseParams, state: &TrainState) -> Result<PathBuf> {
    use crate::common::{fault, sync_dir, write_synced};
    use ndarray_npy::WriteNpyExt;
    let root = out.join(CHECKPOINTS_DIR);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let name = format!("step-{:08}", state.step);
    let dir = root.join(&name);
    let tmp = crate::common::temporary_path(&dir)?;
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    params.save_with(&tmp, write_synced)?;
    let json = serde_json::to_vec_pretty(state).context("serialising the training state")?;
    write_synced(&tmp.join(STATE_FILE), &json)?;
    let (m, v) = state.adam.moments();
    let mut flat = m.to_vec();
    flat.extend_from_slice(v);
    let arr = ndarray::Array2::from_shape_vec((2, m.len()), flat).context("shaping the Adam moments")?;
    let mut bytes = Vec::new();
    arr.write_npy(&mut bytes).context("encoding the Adam moments")?;
    write_synced(&tmp.join(MOMENTS_FILE), &bytes)?;
    write_synced(&tmp.join(LOG_FILE), state.log.as_bytes())?;
    sync_dir(&tmp);
    fault::reached("after-temp-write", &name);
    if dir.exists() {
        // A complete but never-pointed-to checkpoint of an earlier, killed process.
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir).with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    sync_dir(&root);
    fault::reached("after-rename", &name);
    crate::common::atomic_write(&out.join(LOG_FILE), state.log.as_bytes())?;
    let ptr = CheckpointPointer { latest: format!("{CHECKPOINTS_DIR}/{name}"), step: state.step, epoch: state.epoch };
    crate::common::write_json(&out.join(POINTER_FILE), &ptr)?;
    prune_checkpoints(&root, Some(&name))?;
    Ok(dir)
}

/// Removes every entry of the checkpoints directory `root` except `keep` (the checkpoint the
/// pointer names, `None` when there is none): older checkpoints, complete ones the pointer
/// never reached and the temporary directories of killed processes. A temporary directory whose
/// writer is still running is left alone.
fn prune_checkpoints(root: &Path, keep: Option<&str>) -> Result<()> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", root.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", root.display()))?;
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let live_temporary = crate::common::is_temporary_name(&name) && !crate::common::is_stale_temporary(&p);
        if Some(name.as_str()) != keep && !live_temporary {
            crate::common::remove_path(&p).with_context(|| format!("removing the old checkpoint {}", p.display()))?;
        }
    }
    crate::common::sync_dir(root);
    Ok(())
}

/// FNV-1a over the bits of every frame (detections, then ground truth).
fn fingerprint(frames: &[(Frame2d, Pose3d)]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |v: f64| {
        for b in v.to_bits().to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (f2, f3) in frames {
        f2.iter().flatten().flatten().for_each(|&v| eat(v));
        f3.iter().flatten().for_each(|&v| eat(v));
    }
    format!("{h:016x}")
}

/// The damping of the backward solves for the command line's `mode` and `lambda`. A
/// trust-region or guarded `lambda` of 0 is the implicit derivative (the library refuses a
/// zero `lambda` for the damped modes).
pub(crate) fn backward_damping(mode: DampingMode, lambda: f64) -> Damping {
    if lambda == 0.0 {
        Damping::Implicit
    } else {
        mode.damping(lambda)
    }
}

/// The clap name of a value (`trust-region`, ...).
fn value_name<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

/// The parameter source with its path made absolute, so that `--resume` given the same
/// directory through another (relative) path is not refused.
fn describe_source(source: &ParamSource) -> String {
    let abs = |d: &Path| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf());
    match source {
        ParamSource::Checkpoint(d) => format!("checkpoint {}", abs(d).display()),
        ParamSource::Init(d) => format!("init {}", abs(d).display()),
    }
}

/// The differences between the stored run settings and this invocation's, one line each.
fn config_differences(stored: &RunConfig, now: &RunConfig, source_given: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut cmp = |flag: &str, a: String, b: String| {
        if a != b {
            out.push(format!("{flag}: the run has {a}, this invocation {b}"));
        }
    };
    if source_given {
        cmp("initial parameters", stored.source.clone(), now.source.clone());
        cmp("--load-robust-params", stored.load_robust_params.to_string(), now.load_robust_params.to_string());
    }
    cmp("--variant", stored.variant.clone(), now.variant.clone());
    cmp("--damping", stored.damping.clone(), now.damping.clone());
    cmp("--lambda (backward)", stored.lambda.to_string(), now.lambda.to_string());
    cmp("--batch", stored.batch.to_string(), now.batch.to_string());
    cmp("--lr", stored.lr.to_string(), now.lr.to_string());
    cmp("--every", stored.every.to_string(), now.every.to_string());
    cmp("--seed", stored.seed.to_string(), now.seed.to_string());
    cmp("training frames", stored.frames.to_string(), now.frames.to_string());
    if stored.frames == now.frames {
        cmp("training data (fingerprint)", stored.data_fingerprint.clone(), now.data_fingerprint.clone());
    }
    out
}

/// The clipping of §1.9 (`omega` [1e-3, 1e5]; `alpha`, `beta` [1e-5, 1e3]; `Sigma` [-5, 5];
/// `hl`, `ir` [1e-3, 5]); everything else is unbounded.
pub(crate) fn clipping() -> Result<BoxConstraints> {
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
pub(crate) fn run(args: TrainArgs) -> Result<()> {
    ensure!(args.batch >= 1, "--batch must be at least 1");
    ensure!(args.every >= 1, "--every must be at least 1");
    ensure!(args.checkpoint_every >= 1, "--checkpoint-every must be at least 1");
    ensure!(args.lambda.is_finite() && args.lambda >= 0.0, "--lambda must be finite and >= 0");
    ensure!(args.lr.is_finite() && args.lr > 0.0, "--lr: the learning rate must be finite and > 0, got {}", args.lr);
    let variant = args.model.variant;
    let damping = backward_damping(args.damping, args.lambda);
    let lambda = damping.lambda();
    let seqs = data::load_dir(&args.data)?;
    let mut frames = Vec::new();
    for seq in &seqs {
        for f in (0..seq.joint_2d.len()).step_by(args.every) {
            frames.push((seq.joint_2d[f], seq.joint_3d[f]));
        }
    }
    let batches_per_epoch = frames.len() / args.batch;
    ensure!(batches_per_epoch > 0, "{}: {} frames, fewer than one batch", args.data.display(), frames.len());
    // Held until the run ends; it also tidies away the temporaries of any write in --out that a
    // kill interrupted.
    let _lock = crate::common::lock_out_dir(&args.out)?;
    let existing = latest_checkpoint(&args.out)?;
    if let (false, Some(dir)) = (args.resume, &existing) {
        bail!(
            "{} already holds a training run (latest checkpoint {}); pass --resume to continue it, or another --out",
            args.out.display(),
            dir.display()
        );
    }
    let source = if args.resume && args.model.checkpoint.is_none() && !args.model.init {
        None
    } else {
        Some(args.model.source()?)
    };
    let config = RunConfig {
        source: source.as_ref().map(describe_source).unwrap_or_default(),
        load_robust_params: source.as_ref().is_some_and(|s| args.model.load_robust_for(s)),
        variant: variant.name().to_string(),
        damping: value_name(&args.damping),
        lambda,
        batch: args.batch,
        lr: args.lr,
        every: args.every,
        seed: args.seed,
        frames: frames.len(),
        data_fingerprint: fingerprint(&frames),
    };
    let clip = clipping()?;
    let keep = existing.as_ref().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().to_string());
    let (mut params, mut state) = match (args.resume, existing, source) {
        (true, Some(dir), source) => {
            let params = PoseParams::load_checkpoint(&dir, true)
                .with_context(|| format!("resuming: loading {}", dir.display()))?;
            let state =
                read_state(&dir)?.with_context(|| format!("resuming: {} has no {STATE_FILE}", dir.display()))?;
            let diffs = config_differences(&state.config, &config, source.is_some());
            ensure!(
                diffs.is_empty(),
                "--resume: {} was trained with other settings; pass the original ones (or train into a new --out):\n  {}",
                args.out.display(),
                diffs.join("\n  ")
            );
            (params, state)
        }
        (true, None, _) => bail!(
            "--resume: {} holds no checkpoint ({POINTER_FILE} is missing); run without --resume to start",
            args.out.display()
        ),
        (false, _, source) => {
            let source = source.context("no parameter source")?;
            let mut params = PoseParams::load(&source, args.model.load_robust_for(&source))
                .with_context(|| format!("loading {source:?}"))?;
            clip.project(&mut params.values)?;
            let adam = Adam::with_params(args.lr, 0.9, 0.999, 0.1, AdamEpsilon::TensorFlow)?;
            let log = format!("{LOG_HEADER}\n");
            let state =
                TrainState { config, epoch: 0, next_batch: 0, step: 0, adam, log, singular_hessian: 0, non_finite: 0 };
            (params, state)
        }
    };
    // What kills left behind in checkpoints/: every entry but the one the pointer names.
    prune_checkpoints(&args.out.join(CHECKPOINTS_DIR), keep.as_deref())?;
    let total = if args.max_batches > 0 {
        args.max_batches.min(batches_per_epoch * args.epochs)
    } else {
        batches_per_epoch * args.epochs
    };
    let pb = crate::common::progress_bar(total as u64, "batches");
    pb.set_position(state.step.min(total) as u64);
    let start = Instant::now();
    let first_step = state.step;
    let mut last_saved = state.step;
    let mut latest = latest_checkpoint(&args.out)?;
    let mut grad_seconds = 0.0;
    let mut grad_cpu_seconds = Some(0.0);
    let threads = if args.threads == 0 { num_cpus() } else { args.threads };
    // One pool for the whole run (not one per batch).
    crate::common::with_threads(args.threads, || -> Result<()> {
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
                let t0 = Instant::now();
                let cpu0 = process_cpu_seconds();
                let outcome = mean_loss_and_grad(&batch, N_PARAMS, |_, &i| {
                    let mut ws = Workspace::default();
                    let (frame, gt) = &frames[i];
                    // The solves' typed errors are kept (so that they can be counted by kind).
                    frame_loss_and_grad(&model, &params, frame, gt, damping, &mut ws).map_err(|e| match e {
                        wiberg_models::Error::Wiberg(e) => e,
                        e => WibergError::InvalidArgument(format!("frame {i}: {e}")),
                    })
                })?;
                let count = |kind: fn(&WibergError) -> bool| outcome.failures.iter().filter(|(_, e)| kind(e)).count();
                let singular = count(|e| matches!(e, WibergError::SingularHessian { .. }));
                let non_finite = count(|e| matches!(e, WibergError::NonFinite { .. }));
                state.singular_hessian += singular;
                state.non_finite += non_finite;
                grad_seconds += t0.elapsed().as_secs_f64();
                grad_cpu_seconds = match (grad_cpu_seconds, cpu0, process_cpu_seconds()) {
                    (Some(acc), Some(a), Some(b)) => Some(acc + (b - a).max(0.0)),
                    _ => None,
                };
                state.adam.step(&mut params.values, &outcome.grad)?;
                clip.project(&mut params.values)?;
                params.check_finite()?;
                state.step += 1;
                state.epoch = epoch;
                state.next_batch = b + 1;
                writeln!(
                    state.log,
                    "{epoch},{b},{},{},{},{},{singular},{non_finite},{:.3}",
                    state.step,
                    outcome.loss,
                    outcome.count,
                    outcome.failures.len(),
                    start.elapsed().as_secs_f64()
                )?;
                pb.inc(1);
                pb.set_message(format!("loss {:.2} mm", outcome.loss));
                // The end-of-epoch checkpoint below covers the last batch of an epoch.
                if state.step % args.checkpoint_every == 0 && b + 1 < batches_per_epoch {
                    params.epoch = epoch as i64;
                    latest = Some(write_checkpoint(&args.out, &params, &state)?);
                    last_saved = state.step;
                }
            }
            state.epoch = epoch + 1;
            state.next_batch = 0;
            params.epoch = state.epoch as i64;
            latest = Some(write_checkpoint(&args.out, &params, &state)?);
            last_saved = state.step;
        }
        if state.step != last_saved {
            latest = Some(write_checkpoint(&args.out, &params, &state)?);
        }
        Ok(())
    })??;
    pb.finish_and_clear();
    let checkpoint = latest.context("no checkpoint was written")?;
    let batches = state.step - first_step;
    let nframes = batches * args.batch;
    let summary = TrainSummary {
        batches,
        frames: nframes,
        threads,
        seconds_total: start.elapsed().as_secs_f64(),
        seconds_forward_backward: grad_seconds,
        cpu_seconds_forward_backward: grad_cpu_seconds,
        frames_per_second: nframes as f64 / grad_seconds.max(1e-9),
        frames_per_cpu_second: grad_cpu_seconds.filter(|c| *c > 0.0).map(|c| nframes as f64 / c),
        step: state.step,
        checkpoint: checkpoint.clone(),
        singular_hessian: state.singular_hessian,
        non_finite: state.non_finite,
    };
    if batches == 0 {
        // The log beside the pointer is written before the pointer, so a kill can leave it ahead
        // of the checkpoint; with nothing left to train it becomes the checkpoint's log again.
        let log = args.out.join(LOG_FILE);
        if std::fs::read(&log).ok().as_deref() != Some(state.log.as_bytes()) {
            crate::common::atomic_write(&log, state.log.as_bytes())?;
        }
    }
    crate::common::write_json(&args.out.join("train_summary.json"), &summary)?;
    if batches == 0 {
        println!(
            "nothing to do: the run is at step {} (epoch {}); checkpoint {}",
            state.step,
            state.epoch,
            checkpoint.display()
        );
        return Ok(());
    }
    println!(
        "{batches} batches of {} frames, forward + backward: {:.1} s wall = {:.2} frames/s on {threads} thread(s){}",
        args.batch,
        grad_seconds,
        summary.frames_per_second,
        match (summary.cpu_seconds_forward_backward, summary.frames_per_cpu_second) {
            (Some(c), Some(f)) => format!("; {c:.1} CPU-s = {f:.2} frames per CPU-second"),
            _ => String::new(),
        }
    );
    println!(
        "frames left out of their batch so far: {} singular Hessian, {} non-finite",
        state.singular_hessian, state.non_finite
    );
    println!(
        "step {}, latest checkpoint {} (evaluate it with `pose eval --checkpoint {}`)",
        state.step,
        checkpoint.display(),
        args.out.display()
    );
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_log_gets_the_count_columns_empty_and_a_new_one_is_unchanged() {
        let old = format!("{LOG_HEADER_WITHOUT_COUNTS}\n0,0,1,61.5,4,0,0.25\n0,1,2,60.1,3,1,0.5\n");
        let upgraded = upgrade_log(&old);
        assert_eq!(upgraded, format!("{LOG_HEADER}\n0,0,1,61.5,4,0,,,0.25\n0,1,2,60.1,3,1,,,0.5\n"));
        let columns = LOG_HEADER.split(',').count();
        assert!(upgraded.lines().all(|l| l.split(',').count() == columns), "{upgraded}");
        let new = format!("{LOG_HEADER}\n0,0,1,61.5,4,0,0,0,0.25\n");
        assert_eq!(upgrade_log(&new), new);
        assert_eq!(upgrade_log(&upgraded), upgraded);
    }
}
