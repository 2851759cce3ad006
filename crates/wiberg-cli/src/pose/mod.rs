//! Experiment 3: the Tome et al. 2018 multi-camera 3-D pose model (3 PPCA models, 4 cameras,
//! 100 sampled rotations, pseudo-Huber IRLS) as trained by Toso et al. 2019, exactly, with its
//! evaluation, a synthetic data generator and a figure.
//!
//! The model and its formats are [`wiberg_models::pose`]'s (parameters, HDF5 and npy files, the
//! energy and its damped 80-unknown solves by the library's block-arrow strategy, the gradient
//! of the training loss, the metrics, the generator's sampling, the checkpoint layout). Here:
//! [`generate`] (`wiberg pose generate`, writing the data crash-safely), [`show`] (the figure),
//! [`train`] (`wiberg pose train`, checkpoints and resume), [`table`] (`wiberg pose table`,
//! Table 2), and `eval` below.

// Index loops over cameras, joints and axes mirror the maths of the spec; iterator chains would hide it.
#![allow(clippy::needless_range_loop)]

use wiberg_models::pose::data;
pub(crate) mod generate;
use wiberg_models::pose::grad;
use wiberg_models::pose::metrics;
use wiberg_models::pose::model;
use wiberg_models::pose::params;
pub(crate) mod show;
pub(crate) mod table;
#[cfg(test)]
mod tests;
pub(crate) mod train;

use anyhow::{Context, Result};
use metrics::Metric;
use model::{PoseModel, Variant, Workspace};
use params::{ParamSource, PoseParams};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `--variant` values (the model crate's [`Variant`] has no clap derive).
pub(crate) fn variant_parser() -> impl clap::builder::TypedValueParser<Value = Variant> {
    use clap::builder::TypedValueParser;
    let values = Variant::ALL.map(|v| clap::builder::PossibleValue::new(v.name()).help(v.description()));
    // Only the names above pass the parser, so the fallback is never taken.
    clap::builder::PossibleValuesParser::new(values).map(|s| Variant::parse(&s).unwrap_or(Variant::Huber))
}

/// The `--metric` values (the model crate's [`Metric`] has no clap derive).
pub(crate) fn metric_parser() -> impl clap::builder::TypedValueParser<Value = Metric> {
    use clap::builder::TypedValueParser;
    let values = Metric::ALL.map(|m| clap::builder::PossibleValue::new(m.name()).help(m.description()));
    // Only the names above pass the parser, so the fallback is never taken.
    clap::builder::PossibleValuesParser::new(values)
        .map(|s| Metric::ALL.into_iter().find(|m| m.name() == s).unwrap_or(Metric::Mpjpe))
}

/// Environment variable naming the directory of the Tome et al. 2018 parameters.
pub(crate) const TOME2018_ENV: &str = "WIBERG_TOME2018_DIR";

/// Arguments of `wiberg pose`.
#[derive(Debug, clap::Args)]
pub(crate) struct PoseArgs {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: PoseCommand,
}

/// The `wiberg pose` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum PoseCommand {
    /// Reconstruct every frame of a data directory and report the error per action.
    Eval(EvalArgs),
    /// Generate synthetic multi-camera data (training/ and testing/ sub-directories).
    Generate(generate::GenerateArgs),
    /// Draw one frame: the four 2-D views and the 3-D reconstruction beside the ground truth.
    Show(show::ShowArgs),
    /// Train the energy's parameters (Adam on metric 2, trust-region or implicit derivative).
    Train(train::TrainArgs),
    /// Compare runs on the test split per action (the paper's Table 2): table.{csv,md,json,png}.
    Table(table::TableArgs),
}

/// Where the parameters come from (shared by `eval` and `show`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ModelArgs {
    /// Checkpoint directory (`trained_model__*.npy` + `avg_cameras__cams.npy`, or the authors'
    /// `trained_model.h5` + `avg_cameras.h5`), or a `pose train --out` directory (its latest
    /// checkpoint). Default: $WIBERG_TOME2018_DIR.
    #[arg(long, conflicts_with = "init")]
    pub(crate) checkpoint: Option<PathBuf>,
    /// Use the from-scratch initialisation (from the PPCA files in --model-dir) instead of a checkpoint.
    #[arg(long)]
    pub(crate) init: bool,
    /// Directory with `model_parameters__*_3.npy` and `avg_cameras__cams.npy` (or the
    /// authors' `model_parameters.h5`, `avg_cameras.h5`) for --init. Default: $WIBERG_TOME2018_DIR.
    #[arg(long)]
    pub(crate) model_dir: Option<PathBuf>,
    /// Load `hl_params` and `ir_reg` from the checkpoint (the released code starts them at 1).
    /// Always on for checkpoints written by `pose train`.
    #[arg(long)]
    pub(crate) load_robust_params: bool,
    /// Inner solver.
    #[arg(long, value_parser = variant_parser(), default_value = "huber")]
    pub(crate) variant: Variant,
}

impl ModelArgs {
    /// The parameter source these arguments name.
    pub(crate) fn source(&self) -> Result<ParamSource> {
        let env_dir = || {
            std::env::var_os(TOME2018_ENV).map(PathBuf::from).with_context(|| {
                format!(
                    "no parameter directory: pass --checkpoint DIR (or --init --model-dir DIR) or set {TOME2018_ENV}"
                )
            })
        };
        Ok(if self.init {
            ParamSource::Init(match &self.model_dir {
                Some(d) => d.clone(),
                None => env_dir()?,
            })
        } else {
            ParamSource::Checkpoint(match &self.checkpoint {
                // A `pose train` output directory means its latest checkpoint.
                Some(d) => wiberg_models::pose::checkpoint::resolve_checkpoint_dir(d)?,
                None => env_dir()?,
            })
        })
    }

    /// Whether `hl_params` and `ir_reg` are read from `source`: with --load-robust-params, and
    /// always for a checkpoint written by `pose train` (they were trained with the rest).
    pub(crate) fn load_robust_for(&self, source: &ParamSource) -> bool {
        self.load_robust_params
            || matches!(source, ParamSource::Checkpoint(d) if d.join(wiberg_models::pose::checkpoint::STATE_FILE).exists())
    }

    /// Loads the parameters these arguments name.
    pub(crate) fn params(&self) -> Result<PoseParams> {
        let source = self.source()?;
        PoseParams::load(&source, self.load_robust_for(&source)).with_context(|| format!("loading {source:?}"))
    }

    /// Loads the parameters and builds the model.
    pub(crate) fn model(&self) -> Result<PoseModel> {
        Ok(PoseModel::new(&self.params()?, self.variant)?)
    }
}

/// Arguments of `wiberg pose eval`.
#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// Data directory: `<name>__joint_2d.npy` / `<name>__joint_3d.npy` sequences.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Parameters and solver.
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Error metric.
    #[arg(long, value_parser = metric_parser(), default_value = "mpjpe")]
    pub(crate) metric: Metric,
    /// Use every K-th frame of each sequence.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub(crate) every: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the JSON result to this file.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Worker threads (0 = all cores). Results do not depend on it.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub(crate) threads: usize,
}

/// The result of an evaluation.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct EvalResult {
    /// Frame-weighted mean error over all actions (mm).
    pub(crate) mpjpe_mm: f64,
    /// Mean error per action (mm).
    pub(crate) per_action: BTreeMap<String, f64>,
    /// Number of frames evaluated.
    pub(crate) frames: usize,
    /// Frames per action.
    pub(crate) frames_per_action: BTreeMap<String, usize>,
    /// Metric used.
    pub(crate) metric: Metric,
    /// Solver variant.
    pub(crate) variant: Variant,
    /// Wall-clock seconds of the reconstruction.
    pub(crate) seconds: f64,
    /// Frames per second (all threads).
    pub(crate) frames_per_second: f64,
    /// Worker threads used.
    pub(crate) threads: usize,
    /// CPU seconds of the process during the reconstruction (all threads; Linux only, from
    /// `/proc/self/stat`), so that the speed per core can be read on a busy machine.
    pub(crate) cpu_seconds: Option<f64>,
    /// Frames per CPU-second: the speed per core.
    pub(crate) frames_per_cpu_second: Option<f64>,
}

pub(crate) use crate::common::process_cpu_seconds;

/// Evaluates `model` on the sequences of `dir` (every `every`-th frame), in parallel; results do
/// not depend on the thread count (each frame is independent; sums are taken in frame order).
pub(crate) fn evaluate(
    model: &PoseModel,
    dir: &Path,
    metric: Metric,
    every: usize,
    threads: usize,
    show_progress: bool,
) -> Result<EvalResult> {
    anyhow::ensure!(every >= 1, "--every must be at least 1");
    let seqs = data::load_dir(dir)?;
    let mut jobs = Vec::new();
    for (s, seq) in seqs.iter().enumerate() {
        for f in (0..seq.joint_2d.len()).step_by(every) {
            jobs.push((s, f));
        }
    }
    anyhow::ensure!(!jobs.is_empty(), "{}: no frames to evaluate", dir.display());
    let pb = crate::common::progress_bar(jobs.len() as u64, "frames");
    if !show_progress {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let start = std::time::Instant::now();
    let cpu_start = process_cpu_seconds();
    let errors: Vec<Result<f64>> = crate::common::with_threads(threads, || {
        jobs.par_iter()
            .map_init(Workspace::default, |ws, &(s, f)| {
                let seq = &seqs[s];
                let rec = model.reconstruct(&seq.joint_2d[f], ws).with_context(|| format!("{} frame {f}", seq.name))?;
                pb.inc(1);
                Ok(metrics::frame_error(metric, &rec.pose, &seq.joint_3d[f]))
            })
            .collect()
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let cpu_seconds = match (cpu_start, process_cpu_seconds()) {
        (Some(a), Some(b)) if b > a => Some(b - a),
        _ => None,
    };
    pb.finish_and_clear();
    let mut sums: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut total = 0.0;
    for (&(s, _), e) in jobs.iter().zip(errors) {
        let e = e?;
        anyhow::ensure!(e.is_finite(), "{}: non-finite error", seqs[s].name);
        let entry = sums.entry(seqs[s].action.clone()).or_insert((0.0, 0));
        entry.0 += e;
        entry.1 += 1;
        total += e;
    }
    let threads_used = if threads == 0 { rayon::current_num_threads() } else { threads };
    Ok(EvalResult {
        mpjpe_mm: total / jobs.len() as f64,
        per_action: sums.iter().map(|(k, (s, n))| (k.clone(), s / *n as f64)).collect(),
        frames_per_action: sums.iter().map(|(k, (_, n))| (k.clone(), *n)).collect(),
        frames: jobs.len(),
        metric,
        variant: model.variant,
        seconds,
        frames_per_second: jobs.len() as f64 / seconds.max(1e-9),
        threads: threads_used,
        cpu_seconds,
        frames_per_cpu_second: cpu_seconds.map(|c| jobs.len() as f64 / c),
    })
}

fn run_eval(args: EvalArgs) -> Result<()> {
    let model = args.model.model()?;
    let res = evaluate(&model, &args.data, args.metric, args.every, args.threads, !args.json)?;
    if let Some(out) = &args.out {
        crate::common::write_json(out, &res)?;
    }
    if args.json {
        let obj = serde_json::json!({
            "mpjpe_mm": res.mpjpe_mm,
            "per_action": res.per_action,
            "frames": res.frames,
            "metric": res.metric,
            "variant": res.variant,
            "frames_per_second": res.frames_per_second,
            "threads": res.threads,
            "frames_per_cpu_second": res.frames_per_cpu_second,
        });
        println!("{}", serde_json::to_string(&obj)?);
    } else {
        println!("{:<16} {:>8} {:>10}", "action", "frames", "error_mm");
        for (action, err) in &res.per_action {
            println!("{:<16} {:>8} {:>10.2}", action, res.frames_per_action[action], err);
        }
        println!("{:<16} {:>8} {:>10.2}", "mean (frames)", res.frames, res.mpjpe_mm);
        println!(
            "metric {:?}, variant {:?}: {} frames in {:.2} s = {:.1} frames/s on {} thread(s) ({:.1} frames/s per thread)",
            res.metric,
            res.variant,
            res.frames,
            res.seconds,
            res.frames_per_second,
            res.threads,
            res.frames_per_second / res.threads as f64
        );
        if let (Some(cpu), Some(fpc)) = (res.cpu_seconds, res.frames_per_cpu_second) {
            println!("CPU time {cpu:.2} s: {fpc:.1} frames per CPU-second (per core)");
        }
    }
    Ok(())
}

/// Runs `wiberg pose`.
pub(crate) fn run(args: PoseArgs) -> Result<()> {
    match args.command {
        PoseCommand::Eval(a) => run_eval(a),
        PoseCommand::Generate(a) => generate::run(a),
        PoseCommand::Show(a) => show::run(a),
        PoseCommand::Train(a) => train::run(a),
        PoseCommand::Table(a) => table::run(a),
    }
}
