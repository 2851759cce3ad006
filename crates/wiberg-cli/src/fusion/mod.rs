//! Experiment 2: learned fusion of tracker boxes on VOT-format data (the paper's Table 1 and
//! Figure 2).
//!
//! * [`vot`]: reader and writer of the VOT / pysot layout.
//! * [`generate`]: a synthetic stand-in for the VOT2018 results (the real ones cannot be
//!   downloaded here).
//! * [`model`]: the per-corner RBF energy with per-tracker widths and age-binned weights.
//! * [`train`]: splits and the training loop; `report`: Table 1 and Figure 2;
//!   [`iou`]: VOT's overlap bounded by the image.
//!
//! `wiberg fusion` alone generates a small synthetic set and runs everything on it;
//! `wiberg fusion generate` and `wiberg fusion train` are the two steps for real use.

pub(crate) use wiberg_models::fusion::{generate, iou, model};
pub(crate) mod report;
#[cfg(test)]
mod tests;
pub(crate) mod train;
pub(crate) mod vot;

use crate::common::OptimizerKind;
use crate::common::{
    atomic_write, from_exact_json, json_differences, progress_bar, to_exact_json, with_threads, write_json, DampingMode,
};
use anyhow::{bail, Context, Result};
use model::{build_frames, layer_with, predict, LossKind, ParamLayout};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use train::{SplitKind, TrainConfig};
use wiberg::{ArgminLayer, Damping};
use wiberg_models::fusion::vot::{Dataset, Entry, ReadReport, Region};

/// `--loss`: the models crate's [`LossKind`] by its serialised name, with the help of each.
fn loss_parser() -> impl clap::builder::TypedValueParser<Value = LossKind> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("corner")
            .help("Squared corner error over the ground-truth box size squared (both corners summed)"),
        PossibleValue::new("iou").help(
            "`1 - IoU` of the fused box with the ground-truth region (bounded by the image); its gradient in \
             the four box coordinates by central differences (the overlap is only piecewise smooth), then \
             through the argmin layer",
        ),
    ])
    .map(|name| if name == "iou" { LossKind::Iou } else { LossKind::Corner })
}

/// Arguments of `wiberg fusion`.
#[derive(Debug, clap::Args)]
pub(crate) struct FusionArgs {
    /// `generate` or `train`; without one, a small synthetic set is generated into
    /// `<out>/data` and trained and evaluated into `<out>/run`.
    #[command(subcommand)]
    pub(crate) command: Option<FusionCommand>,
    /// Output folder of the quick demonstration (no subcommand).
    #[arg(long, default_value = "fusion-demo")]
    pub(crate) out: PathBuf,
    /// Seed of the demonstration.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub(crate) seed: u64,
    /// Worker threads of the demonstration (0 = all cores).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub(crate) threads: usize,
    /// Continue an interrupted demonstration from `<out>/run` (its data set is regenerated
    /// identically from the seed; the training resumes from its state file).
    #[arg(long)]
    pub(crate) resume: bool,
}

/// The steps of `wiberg fusion`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum FusionCommand {
    /// Write a synthetic VOT2018-like data set (ground truth + tracker results) in VOT layout.
    Generate(GenerateArgs),
    /// Train the fusion energy on a VOT-layout data set and print Table 1.
    Train(TrainArgs),
}

/// Arguments of `wiberg fusion generate`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GenerateArgs {
    /// Output folder (VOT layout).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Number of sequences.
    #[arg(long, default_value_t = 60, allow_hyphen_values = true)]
    pub(crate) sequences: usize,
    /// Number of trackers.
    #[arg(long, default_value_t = 72, allow_hyphen_values = true)]
    pub(crate) trackers: usize,
    /// Mean sequence length (log-normal lengths cut to 40..=1500; 356 x 60 = VOT2018's 21,356).
    #[arg(long, default_value_t = 356.0, allow_hyphen_values = true)]
    pub(crate) mean_frames: f64,
    /// Seed.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub(crate) seed: u64,
    /// Worker threads (0 = all cores); the output does not depend on it.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub(crate) threads: usize,
}

/// Arguments of `wiberg fusion train`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TrainArgs {
    /// Data set folder (VOT layout).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Output folder: table.{txt,csv,json}, training.json, params_*.json, split, figure2.png.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Split protocol.
    #[arg(long, value_enum, default_value_t = SplitKind::Frames)]
    pub(crate) split: SplitKind,
    /// Fraction of frames (or sequences) used for training.
    #[arg(long, default_value_t = 0.5, allow_hyphen_values = true)]
    pub(crate) train_fraction: f64,
    /// Epochs.
    #[arg(long, default_value_t = 10, allow_hyphen_values = true)]
    pub(crate) epochs: usize,
    /// Frames per mini-batch.
    #[arg(long, default_value_t = 256, allow_hyphen_values = true)]
    pub(crate) batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.02, allow_hyphen_values = true)]
    pub(crate) lr: f64,
    /// Outer optimiser.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub(crate) optimizer: OptimizerKind,
    /// Training loss.
    #[arg(long, value_parser = loss_parser(), default_value = "corner")]
    pub(crate) loss: LossKind,
    /// Our derivative's damping mode.
    #[arg(long, value_enum, default_value_t = DampingMode::TrustRegion)]
    pub(crate) damping: DampingMode,
    /// Damping lambda (in the normalised units of the energy).
    #[arg(long, default_value_t = 0.1, allow_hyphen_values = true)]
    pub(crate) lambda: f64,
    /// Number of log-spaced age bins per tracker.
    #[arg(long, default_value_t = 8, allow_hyphen_values = true)]
    pub(crate) bins: usize,
    /// Initial shared width, as a fraction of the frame's median tracker box size.
    #[arg(long, default_value_t = 0.25, allow_hyphen_values = true)]
    pub(crate) width0: f64,
    /// Skip the implicit-derivative baseline (halves the run time).
    #[arg(long)]
    pub(crate) no_implicit: bool,
    /// Frame of Figure 2 as `SEQUENCE:FRAME` (frame from 1); default: chosen by a fixed rule.
    #[arg(long)]
    pub(crate) figure_frame: Option<String>,
    /// Seed of the split and the batch order.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub(crate) seed: u64,
    /// Worker threads (0 = all cores); results do not depend on it.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub(crate) threads: usize,
    /// Write the training state to `<out>/fusion-state.json` (atomically) every this many
    /// batches, besides the end of every epoch (0 = at epoch ends only).
    #[arg(long, default_value_t = 10, allow_hyphen_values = true)]
    pub(crate) checkpoint_every: usize,
    /// Continue an interrupted training from `<out>/fusion-state.json`. The other arguments
    /// must be those of the interrupted run and the data the same (--threads and
    /// --checkpoint-every may differ); the results are those of an uninterrupted run, timing
    /// fields aside.
    #[arg(long)]
    pub(crate) resume: bool,
}

impl TrainArgs {
    /// Settings with the defaults of the command line.
    pub(crate) fn new(data: PathBuf, out: PathBuf) -> Self {
        TrainArgs {
            data,
            out,
            split: SplitKind::Frames,
            train_fraction: 0.5,
            epochs: 10,
            batch: 256,
            lr: 0.02,
            optimizer: OptimizerKind::Adam,
            loss: LossKind::Corner,
            damping: DampingMode::TrustRegion,
            lambda: 0.1,
            bins: 8,
            width0: 0.25,
            no_implicit: false,
            figure_frame: None,
            seed: 0,
            threads: 0,
            checkpoint_every: 10,
            resume: false,
        }
    }
}

/// Runs `wiberg fusion`.
pub(crate) fn run(args: FusionArgs) -> Result<()> {
    match args.command {
        Some(FusionCommand::Generate(g)) => run_generate(&g),
        Some(FusionCommand::Train(t)) => run_train(&t).map(|_| ()),
        None => {
            let data = args.out.join("data");
            let g = GenerateArgs {
                out: data.clone(),
                sequences: 12,
                trackers: 72,
                mean_frames: 150.0,
                seed: args.seed,
                threads: args.threads,
            };
            println!("No subcommand: a quick demonstration on a small synthetic set (12 sequences, 72 trackers).");
            println!("For the VOT2018-size set: `wiberg fusion generate --out DIR` then `wiberg fusion train --data DIR --out RUN`.\n");
            run_generate(&g)?;
            let mut t = TrainArgs::new(data, args.out.join("run"));
            t.epochs = 5;
            t.seed = args.seed;
            t.threads = args.threads;
            t.resume = args.resume;
            run_train(&t).map(|_| ())
        }
    }
}

/// `wiberg fusion generate`.
pub(crate) fn run_generate(args: &GenerateArgs) -> Result<()> {
    if args.sequences == 0 || args.trackers == 0 {
        bail!("--sequences and --trackers must be at least 1");
    }
    if !(args.mean_frames.is_finite() && args.mean_frames > 0.0) {
        bail!("--mean-frames must be a positive number, got {}", args.mean_frames);
    }
    let cfg = generate::GenerateConfig {
        sequences: args.sequences,
        trackers: args.trackers,
        seed: args.seed,
        mean_frames: args.mean_frames,
    };
    let _lock = crate::common::lock_out_dir(&args.out)?;
    let start = Instant::now();
    let pb = progress_bar(args.sequences as u64, "generate");
    let (data, profiles) = with_threads(args.threads, || generate::generate(&cfg, || pb.inc(1)))?;
    pb.finish_and_clear();
    vot::write_dataset(&args.out, &data)?;
    #[derive(Serialize)]
    struct GeneratorInfo<'a> {
        note: &'static str,
        config: &'a generate::GenerateConfig,
        frames: usize,
        profiles: &'a [generate::TrackerProfile],
    }
    let info = GeneratorInfo {
        note: "synthetic stand-in for the VOT2018 baseline results, written by `wiberg fusion generate`",
        config: &cfg,
        frames: data.num_frames(),
        profiles: &profiles,
    };
    write_json(&args.out.join("generator.json"), &info)?;
    for kind in [SplitKind::Frames, SplitKind::Sequences] {
        let split = train::make_split(&data, kind, 0.5, args.seed);
        let path = args.out.join("splits").join(format!("{}_seed{}.txt", kind.name(), args.seed));
        atomic_write(&path, train::split_text(&data, &split).as_bytes())?;
    }
    println!(
        "wrote {} sequences, {} frames, {} trackers to {} in {:.1} s (synthetic data)",
        data.sequences.len(),
        data.num_frames(),
        data.trackers.len(),
        args.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What `run_train` produced (for tests and the demo).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TrainReport {
    /// Table 1.
    pub(crate) table: report::Table,
    /// Our model's training record.
    pub(crate) trust_region: train::TrainOutcome,
    /// The implicit baseline's record (unless skipped).
    pub(crate) implicit: Option<train::TrainOutcome>,
    /// Training frames (with at least one tracker box).
    pub(crate) train_frames: usize,
}

/// The frame of Figure 2: among the test frames where at least 3/4 of the trackers report, the
/// one whose fused top-left corner training moved closest to the target compared with the
/// untrained energy (the largest gain; the figure shows what learning does, not an average
/// frame, and the README says so).
fn pick_figure_frame(
    frames: &[model::Frame],
    test: &[usize],
    trackers: usize,
    before: &[f64],
    after: &[f64],
    layer: &ArgminLayer,
) -> Option<usize> {
    use rayon::prelude::*;
    let gains: Vec<(usize, f64)> = test
        .par_iter()
        .filter(|&&i| frames[i].len() * 4 >= trackers * 3)
        .filter_map(|&i| {
            let f = &frames[i];
            let err =
                |w: &[f64]| predict(f, w, layer).ok().map(|b| (b[0] - f.gt_box[0]).hypot(b[1] - f.gt_box[1]) / f.scale);
            Some((i, err(before)? - err(after)?))
        })
        .collect();
    let best = gains.iter().copied().fold(None, |acc: Option<(usize, f64)>, (i, g)| match acc {
        Some((_, bg)) if bg >= g => acc,
        _ => Some((i, g)),
    });
    best.map(|(i, _)| i).or_else(|| test.iter().copied().find(|&i| !frames[i].is_empty()))
}

/// `wiberg fusion train`: reads the data, trains both derivatives, evaluates and writes the
/// table, the split, the parameters, the timing and Figure 2.
pub(crate) fn run_train(args: &TrainArgs) -> Result<TrainReport> {
    if !(args.train_fraction > 0.0 && args.train_fraction < 1.0) {
        bail!("--train-fraction must be in (0, 1), got {}", args.train_fraction);
    }
    if !(args.width0.is_finite() && args.width0 > 0.0) || args.bins == 0 {
        bail!("--width0 must be > 0 and --bins >= 1");
    }
    // Checked before anything is written: the resume state stores the settings.
    if !(args.lr.is_finite() && args.lr > 0.0) {
        bail!("--lr: the learning rate must be finite and > 0, got {}", args.lr);
    }
    let ours_damping = args.damping.damping(args.lambda);
    ours_damping.validate().context("--lambda")?;
    with_threads(args.threads, || run_train_inner(args, ours_damping))?
}

fn run_train_inner(args: &TrainArgs, ours_damping: Damping) -> Result<TrainReport> {
    let t0 = Instant::now();
    let (data, read_report) = wiberg_models::fusion::vot::read_dataset(&args.data)?;
    warn_about(&read_report);
    let layout = ParamLayout { trackers: data.trackers.len(), bins: args.bins };
    let frames = build_frames(&data, &layout)?;
    let read_seconds = t0.elapsed().as_secs_f64();
    let split = train::make_split(&data, args.split, args.train_fraction, args.seed);
    // Held until the run ends (taken once the data has been read: a broken data set writes
    // nothing). Temporaries of writes that a kill interrupted (state, split, results, figure)
    // are never read: once the lock is held they are just tidied away.
    let _lock = crate::common::lock_out_dir(&args.out)?;
    let state_path = args.out.join(STATE_FILE);
    let settings = to_exact_json(&ResumeKey::new(args, ours_damping, &data))?;
    let saved = if args.resume { load_state(&state_path, &settings)? } else { Vec::new() };
    if !args.resume && state_path.exists() {
        println!("note: {} of an interrupted run will be replaced (--resume continues it)", state_path.display());
    }
    atomic_write(
        &args.out.join(format!("split_{}_seed{}.txt", args.split.name(), args.seed)),
        train::split_text(&data, &split).as_bytes(),
    )?;
    // Training needs a box to fuse and a ground truth to normalise the loss by (VOT has a few
    // degenerate ground-truth boxes; they are still scored in the test set).
    let train_idx: Vec<usize> =
        (0..frames.len()).filter(|&i| split[i] && !frames[i].is_empty() && frames[i].gt_size() >= 1.0).collect();
    let test_idx: Vec<usize> = (0..frames.len()).filter(|&i| !split[i]).collect();
    if test_idx.is_empty() {
        bail!("the split left no test frames");
    }
    println!(
        "{}: {} sequences, {} frames, {} trackers; split `{}`: {} training frames (with a box and a ground truth), {} test frames (read in {:.1} s)",
        args.data.display(),
        data.sequences.len(),
        frames.len(),
        layout.trackers,
        args.split.name(),
        train_idx.len(),
        test_idx.len(),
        read_seconds
    );
    let cfg = TrainConfig {
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        optimizer: args.optimizer,
        loss: args.loss,
        seed: args.seed,
    };
    let init = layout.initial(args.width0);
    let ours_layer = layer_with(ours_damping);
    let implicit_layer = layer_with(Damping::Implicit);
    let mut resumed = saved.into_iter();
    let mut finished: Option<Vec<train::SavedTrainState>> = Some(Vec::new());
    let mut phase = Phase {
        frames: &frames,
        train_idx: &train_idx,
        layout: &layout,
        cfg: &cfg,
        state_path: &state_path,
        settings: &settings,
        checkpoint_every: args.checkpoint_every,
    };
    let ours = phase.train(ours_damping.name(), resumed.next(), &init, &ours_layer, &mut finished)?;
    let implicit = if args.no_implicit {
        None
    } else {
        Some(phase.train("implicit", resumed.next(), &init, &implicit_layer, &mut finished)?)
    };
    let status = |o: &train::TrainOutcome| {
        if o.converged() {
            String::new()
        } else {
            format!(
                "FAILED TO CONVERGE: {} singular Hessians, {} non-finite, {} other errors{}",
                o.singular_hessian,
                o.non_finite,
                o.other_errors,
                if o.diverged { ", loss diverged" } else { "" }
            )
        }
    };
    let mut models = Vec::new();
    if let Some(imp) = &implicit {
        models.push(report::Model {
            name: "implicit-derivative fusion".into(),
            params: &imp.params,
            layer: implicit_layer,
            note: status(imp),
        });
    }
    models.push(report::Model {
        name: format!("{} fusion (lambda {})", ours_damping.name(), args.lambda),
        params: &ours.params,
        layer: ours_layer,
        note: status(&ours),
    });
    let eval_start = Instant::now();
    let without_results: Vec<usize> = data
        .results
        .iter()
        .map(|per_seq| test_idx.iter().filter(|&&i| per_seq[frames[i].seq].is_none()).count())
        .collect();
    let table = report::evaluate(&frames, &test_idx, &data.trackers, &without_results, &models, args.split.name());
    let eval_seconds = eval_start.elapsed().as_secs_f64();
    print!("\n{}", table.to_text());
    let cpu = ours.cpu_seconds_per_epoch();
    println!(
        "\ntiming: {:.2} s per training epoch ({} frames, {:.0} us per frame, {} threads{}); evaluation {:.1} s",
        ours.seconds_per_epoch(),
        train_idx.len(),
        1e6 * ours.seconds_per_epoch() / train_idx.len() as f64,
        rayon::current_num_threads(),
        cpu.map_or(String::new(), |c| format!(", {c:.2} s of process CPU time")),
        eval_seconds
    );
    atomic_write(&args.out.join("table.txt"), table.to_text().as_bytes())?;
    atomic_write(&args.out.join("table.csv"), table.to_csv()?.as_bytes())?;
    write_json(&args.out.join("table.json"), &table)?;
    write_json(&args.out.join("params_ours.json"), &ParamsFile::new(&layout, &data.trackers, &ours.params))?;
    if let Some(imp) = &implicit {
        write_json(&args.out.join("params_implicit.json"), &ParamsFile::new(&layout, &data.trackers, &imp.params))?;
    }
    #[derive(Serialize)]
    struct Timing {
        threads: usize,
        read_seconds: f64,
        train_frames: usize,
        seconds_per_epoch: f64,
        cpu_seconds_per_epoch: Option<f64>,
        microseconds_per_frame: f64,
        evaluation_seconds: f64,
    }
    #[derive(Serialize)]
    struct TrainingFile<'a> {
        data: String,
        config: &'a TrainConfig,
        damping: String,
        lambda: f64,
        bins: usize,
        width0: f64,
        timing: Timing,
        ours: &'a train::TrainOutcome,
        implicit: Option<&'a train::TrainOutcome>,
        /// Missing result files, trackers left out, where image sizes came from.
        read: &'a ReadReport,
    }
    write_json(
        &args.out.join("training.json"),
        &TrainingFile {
            data: args.data.display().to_string(),
            config: &cfg,
            damping: ours_damping.name().into(),
            lambda: args.lambda,
            bins: args.bins,
            width0: args.width0,
            timing: Timing {
                threads: rayon::current_num_threads(),
                read_seconds,
                train_frames: train_idx.len(),
                seconds_per_epoch: ours.seconds_per_epoch(),
                cpu_seconds_per_epoch: cpu,
                microseconds_per_frame: 1e6 * ours.seconds_per_epoch() / train_idx.len() as f64,
                evaluation_seconds: eval_seconds,
            },
            ours: &ours,
            implicit: implicit.as_ref(),
            read: &read_report,
        },
    )?;
    let fig_frame = match &args.figure_frame {
        Some(spec) => Some(find_frame(&data, &frames, spec)?),
        None => pick_figure_frame(&frames, &test_idx, layout.trackers, &init, &ours.params, &ours_layer),
    };
    if let Some(i) = fig_frame {
        let f = &frames[i];
        let before = predict(f, &init, &ours_layer).ok();
        let after = predict(f, &ours.params, &ours_layer).ok();
        let path = args.out.join("figure2.png");
        // Drawn into a temporary file, then renamed: a kill never leaves a torn PNG.
        crate::common::atomic_write_with(&path, |tmp| {
            report::draw_figure2(
                tmp,
                f,
                &data.sequences[f.seq].name,
                &[
                    report::Panel { title: "before training".into(), params: &init, prediction: before },
                    report::Panel {
                        title: format!("after training ({})", ours_damping.name()),
                        params: &ours.params,
                        prediction: after,
                    },
                ],
            )
        })?;
    }
    // Every result is on disk: the state has served its purpose.
    match std::fs::remove_file(&state_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("warning: could not remove {}: {e}", state_path.display()),
    }
    println!("results in {}", args.out.display());
    Ok(TrainReport { table, trust_region: ours, implicit, train_frames: train_idx.len() })
}

/// At most this many missing result files are named one by one on stderr (`training.json`
/// lists them all).
const MAX_MISSING_WARNINGS: usize = 20;

/// Warns about what the reader left out: each missing result file (up to
/// [`MAX_MISSING_WARNINGS`]), each tracker left out, and once the sequences whose overlaps
/// cannot be bounded by the image (neither `meta.txt` nor an image to read the size from).
fn warn_about(report: &ReadReport) {
    for m in report.missing_results.iter().take(MAX_MISSING_WARNINGS) {
        eprintln!(
            "warning: tracker `{}` has no result file for sequence `{}` ({} is missing): it has no box on that \
             sequence's frames, its other sequences are used",
            m.tracker, m.sequence, m.file
        );
    }
    if report.missing_results.len() > MAX_MISSING_WARNINGS {
        eprintln!(
            "warning: ... and {} more missing result files (all are listed in training.json)",
            report.missing_results.len() - MAX_MISSING_WARNINGS
        );
    }
    for s in &report.skipped_trackers {
        eprintln!("warning: tracker `{}` left out: {}", s.tracker, s.reason);
    }
    if !report.sequences_without_size.is_empty() {
        eprintln!(
            "warning: {} sequences have neither meta.txt nor an image (e.g. `{}`); their overlaps are not \
             bounded by the image",
            report.sequences_without_size.len(),
            report.sequences_without_size[0]
        );
    }
}

fn find_frame(data: &Dataset, frames: &[model::Frame], spec: &str) -> Result<usize> {
    let (seq, f) =
        spec.rsplit_once(':').with_context(|| format!("--figure-frame `{spec}`: expected SEQUENCE:FRAME"))?;
    let f: usize = f.parse().with_context(|| format!("--figure-frame `{spec}`: `{f}` is not a frame number"))?;
    let s = data
        .sequences
        .iter()
        .position(|s| s.name == seq)
        .with_context(|| format!("--figure-frame: no sequence `{seq}`"))?;
    frames
        .iter()
        .position(|fr| fr.seq == s && fr.index + 1 == f)
        .with_context(|| format!("--figure-frame: sequence `{seq}` has no frame {f}"))
}

/// Learned parameters by name.
#[derive(Debug, Serialize)]
struct ParamsFile {
    layout: ParamLayout,
    trackers: Vec<TrackerParams>,
}

#[derive(Debug, Serialize)]
struct TrackerParams {
    name: String,
    width: f64,
    weights_by_age_bin: Vec<f64>,
}

impl ParamsFile {
    fn new(layout: &ParamLayout, names: &[String], w: &[f64]) -> Self {
        let trackers = names
            .iter()
            .enumerate()
            .map(|(t, n)| TrackerParams {
                name: n.clone(),
                width: w[layout.width(t)],
                weights_by_age_bin: (0..layout.bins).map(|b| w[layout.weight(t, b)]).collect(),
            })
            .collect();
        ParamsFile { layout: *layout, trackers }
    }
}

/// Name of the training state file in `--out`.
pub(crate) const STATE_FILE: &str = "fusion-state.json";
const STATE_FORMAT: &str = "wiberg fusion training state";
const STATE_VERSION: u32 = 1;

/// Everything that decides the result of `wiberg fusion train`: a resume must see the same.
#[derive(Debug, Serialize, Deserialize)]
struct ResumeKey {
    /// Hash of the data set's content (not its path: a moved copy still resumes).
    data_fingerprint: String,
    split: SplitKind,
    train_fraction: f64,
    epochs: usize,
    batch: usize,
    lr: f64,
    optimizer: OptimizerKind,
    loss: LossKind,
    damping: String,
    lambda: f64,
    bins: usize,
    width0: f64,
    no_implicit: bool,
    figure_frame: Option<String>,
    seed: u64,
}

impl ResumeKey {
    fn new(args: &TrainArgs, damping: Damping, data: &Dataset) -> Self {
        ResumeKey {
            data_fingerprint: format!("{:016x}", fingerprint(data)),
            split: args.split,
            train_fraction: args.train_fraction,
            epochs: args.epochs,
            batch: args.batch,
            lr: args.lr,
            optimizer: args.optimizer,
            loss: args.loss,
            damping: damping.name().to_string(),
            lambda: args.lambda,
            bins: args.bins,
            width0: args.width0,
            no_implicit: args.no_implicit,
            figure_frame: args.figure_frame.clone(),
            seed: args.seed,
        }
    }
}

/// FNV-1a over the data set's names, sizes, regions and tracker entries (bit patterns).
fn fingerprint(data: &Dataset) -> u64 {
    struct Fnv(u64);
    impl Fnv {
        fn bytes(&mut self, b: &[u8]) {
            for &x in b {
                self.0 = (self.0 ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        fn num(&mut self, x: u64) {
            self.bytes(&x.to_le_bytes());
        }
        fn region(&mut self, r: &Region) {
            let values: &[f64] = match r {
                Region::Rect(v) => v,
                Region::Polygon(v) => v,
            };
            self.num(values.len() as u64);
            values.iter().for_each(|v| self.num(v.to_bits()));
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    for seq in &data.sequences {
        h.bytes(seq.name.as_bytes());
        h.num(seq.groundtruth.len() as u64);
        seq.image_size.iter().flatten().for_each(|v| h.num(v.to_bits()));
        seq.groundtruth.iter().for_each(|r| h.region(r));
    }
    for (name, per_seq) in data.trackers.iter().zip(&data.results) {
        h.bytes(name.as_bytes());
        for entries in per_seq {
            // A marker no entry hashes to (entries hash 0 to 3): a missing result file.
            let Some(entries) = entries else {
                h.num(u64::MAX);
                continue;
            };
            for e in entries {
                match e {
                    Entry::Init => h.num(1),
                    Entry::Failure => h.num(2),
                    Entry::NotTracked => h.num(0),
                    Entry::Box(r) => {
                        h.num(3);
                        h.region(r);
                    }
                }
            }
        }
    }
    h.0
}

/// The state file: the settings it was written under and the models trained so far (ours
/// first, then the implicit baseline), the last one possibly unfinished.
#[derive(Serialize, Deserialize)]
struct StateFile {
    format: String,
    version: u32,
    settings: serde_json::Value,
    models: Vec<train::SavedTrainState>,
}

/// Reads the state file for `--resume` and checks its settings against the current ones.
fn load_state(path: &Path, settings: &serde_json::Value) -> Result<Vec<train::SavedTrainState>> {
    let bytes = crate::common::read_resume_state(path)?;
    let file: StateFile = serde_json::from_slice(&bytes)
        .with_context(|| format!("--resume: {} is not a readable training state", path.display()))?;
    if file.format != STATE_FORMAT || file.version != STATE_VERSION {
        bail!(
            "--resume: {} was written by another format (`{}` version {}), expected `{STATE_FORMAT}` version {STATE_VERSION}",
            path.display(),
            file.format,
            file.version
        );
    }
    let differences = json_differences(&file.settings, settings);
    if !differences.is_empty() {
        bail!(
            "--resume: {}: the interrupted run had other settings: {}; resume with the same arguments and data (only \
             --threads and --checkpoint-every may change) or run without --resume to start afresh",
            path.display(),
            differences.join(", ")
        );
    }
    let no_implicit: bool = from_exact_json(settings["no_implicit"].clone()).unwrap_or(false);
    let max_models = if no_implicit { 1 } else { 2 };
    if file.models.len() > max_models {
        bail!("--resume: {} holds {} models, expected at most {max_models}", path.display(), file.models.len());
    }
    Ok(file.models)
}

/// One model's training with checkpoints (ours, then the implicit baseline).
struct Phase<'a> {
    frames: &'a [model::Frame],
    train_idx: &'a [usize],
    layout: &'a ParamLayout,
    cfg: &'a TrainConfig,
    state_path: &'a Path,
    settings: &'a serde_json::Value,
    checkpoint_every: usize,
}

impl Phase<'_> {
    /// Trains one model from `saved` (a resume) or from `init`; `finished` holds the saved
    /// states of the models finished before (None when one of them could not be saved: then
    /// no further checkpoint is written, with a warning).
    fn train(
        &mut self,
        name: &str,
        saved: Option<train::SavedTrainState>,
        init: &[f64],
        layer: &ArgminLayer,
        finished: &mut Option<Vec<train::SavedTrainState>>,
    ) -> Result<train::TrainOutcome> {
        let state = match saved {
            Some(s) => train::TrainState::restore(s, self.train_idx, self.layout, self.cfg)
                .with_context(|| format!("--resume: {} ({name})", self.state_path.display()))?,
            None => train::TrainState::new(self.train_idx, init.to_vec(), self.cfg)?,
        };
        let pb = progress_bar((self.train_idx.len() * self.cfg.epochs) as u64, name);
        pb.set_position(state.frames_done(self.cfg) as u64);
        let mut save = |state: &train::TrainState| -> Result<()> {
            let written = finished.as_ref().context("an earlier model's state could not be saved").and_then(|done| {
                let mut models = done.clone();
                models.push(state.save()?);
                let file = StateFile {
                    format: STATE_FORMAT.into(),
                    version: STATE_VERSION,
                    settings: self.settings.clone(),
                    models,
                };
                let bytes = serde_json::to_vec(&file).context("serialising the training state")?;
                atomic_write(self.state_path, &bytes)
            });
            if let Err(e) = written {
                pb.suspend(|| eprintln!("warning: checkpoint not written: {e:#}"));
            }
            Ok(())
        };
        let state =
            train::train_from(self.frames, self.layout, state, layer, self.cfg, &pb, self.checkpoint_every, &mut save)?;
        pb.finish_and_clear();
        match state.save() {
            Ok(s) => {
                if let Some(done) = finished.as_mut() {
                    done.push(s);
                }
            }
            Err(e) => {
                eprintln!(
                    "warning: the finished {name} training cannot be checkpointed ({e:#}); no further checkpoints"
                );
                *finished = None;
            }
        }
        Ok(state.into_outcome())
    }
}
