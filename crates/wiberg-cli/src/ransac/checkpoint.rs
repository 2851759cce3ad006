//! The training state of `wiberg ransac` in one file, `<out>/ransac-state.json`, written
//! atomically (temporary file, fsync, rename) between blocks, and read back by `--resume`.
//!
//! It holds, per (run, method): sigma, the optimiser (its whole state), the position of the
//! sample stream (ChaCha8 word position; seed and stream follow from `--seed` and the run),
//! the error messages and every iteration record so far (columns; floats as IEEE-754 bits in
//! hex so that NaN and every last bit survive). With the configuration it was written under,
//! the iteration count and the time spent so far. A resume refuses a state whose
//! configuration differs from the command line's, naming the differing settings.

use anyhow::{bail, ensure, Context, Result};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::args::TrainConfig;
use super::training::{CheckpointSink, Event, IterRecord, MethodRun};
use crate::common::DampingMode;
use crate::common::{exact_f64, exact_f64_vec, from_exact_json, json_differences, to_exact_json};
use wiberg_models::ransac::sampling::run_rng;

/// Name of the state file in `--out`.
pub(crate) const STATE_FILE: &str = "ransac-state.json";
const FORMAT: &str = "wiberg ransac training state";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct StateFile {
    format: String,
    version: u32,
    /// The configuration, floats exact (see `common::to_exact_json`).
    config: serde_json::Value,
    /// Iterations done by every trajectory.
    done: usize,
    /// Wall and CPU time spent in training so far (reported as the totals after a resume).
    wall_seconds: f64,
    cpu_seconds: Option<f64>,
    trajectories: Vec<TrajectoryState>,
}

#[derive(Serialize, Deserialize)]
struct TrajectoryState {
    run: usize,
    method: DampingMode,
    #[serde(with = "exact_f64")]
    sigma: f64,
    /// `ChaCha8Rng::get_word_pos` of the sample stream, as a decimal string (a u128).
    rng_word_pos: String,
    /// The outer optimiser, floats exact.
    optimizer: serde_json::Value,
    error_messages: Vec<String>,
    records: RecordColumns,
}

/// The iteration records as columns (iteration numbers are implicit: 1, 2, ...).
#[derive(Serialize, Deserialize)]
struct RecordColumns {
    #[serde(with = "exact_f64_vec")]
    sigma: Vec<f64>,
    #[serde(with = "exact_f64_vec")]
    loss: Vec<f64>,
    #[serde(with = "exact_f64_vec")]
    grad: Vec<f64>,
    #[serde(with = "exact_f64_vec")]
    t_star: Vec<f64>,
    #[serde(with = "exact_f64_vec")]
    min_eigenvalue: Vec<f64>,
    #[serde(with = "exact_f64_vec")]
    shift: Vec<f64>,
    #[serde(with = "exact_f64_vec")]
    micros: Vec<f64>,
    inner_iterations: Vec<usize>,
    /// Bit 0 converged, bit 1 negative curvature, bits 2-3 the event (0 none, 1 singular,
    /// 2 non-finite, 3 error).
    flags: Vec<u8>,
}

impl RecordColumns {
    fn of(records: &[IterRecord]) -> Self {
        let col = |f: fn(&IterRecord) -> f64| records.iter().map(f).collect();
        RecordColumns {
            sigma: col(|r| r.sigma),
            loss: col(|r| r.loss),
            grad: col(|r| r.grad),
            t_star: col(|r| r.t_star),
            min_eigenvalue: col(|r| r.min_eigenvalue),
            shift: col(|r| r.shift),
            micros: col(|r| r.micros),
            inner_iterations: records.iter().map(|r| r.inner_iterations).collect(),
            flags: records
                .iter()
                .map(|r| {
                    let event = match r.event {
                        Event::None => 0,
                        Event::Singular => 1,
                        Event::NonFinite => 2,
                        Event::Error => 3,
                    };
                    u8::from(r.converged) | (u8::from(r.negative_curvature) << 1) | (event << 2)
                })
                .collect(),
        }
    }

    fn records(&self) -> Result<Vec<IterRecord>> {
        let n = self.flags.len();
        let lengths = [
            self.sigma.len(),
            self.loss.len(),
            self.grad.len(),
            self.t_star.len(),
            self.min_eigenvalue.len(),
            self.shift.len(),
            self.micros.len(),
            self.inner_iterations.len(),
        ];
        ensure!(lengths.iter().all(|&l| l == n), "record columns of different lengths {lengths:?} and {n}");
        (0..n)
            .map(|i| {
                let flags = self.flags[i];
                let event = match flags >> 2 {
                    0 => Event::None,
                    1 => Event::Singular,
                    2 => Event::NonFinite,
                    3 => Event::Error,
                    _ => bail!("record {}: invalid flags {flags}", i + 1),
                };
                Ok(IterRecord {
                    iteration: i + 1,
                    sigma: self.sigma[i],
                    loss: self.loss[i],
                    grad: self.grad[i],
                    t_star: self.t_star[i],
                    inner_iterations: self.inner_iterations[i],
                    converged: flags & 1 != 0,
                    negative_curvature: flags & 2 != 0,
                    min_eigenvalue: self.min_eigenvalue[i],
                    shift: self.shift[i],
                    event,
                    micros: self.micros[i],
                })
            })
            .collect()
    }
}

/// Serialises the state after `done` iterations.
pub(crate) fn encode(
    config: &TrainConfig,
    trajectories: &[MethodRun],
    done: usize,
    wall_seconds: f64,
    cpu_seconds: Option<f64>,
) -> Result<Vec<u8>> {
    let trajectories = trajectories
        .iter()
        .map(|t| {
            Ok(TrajectoryState {
                run: t.run,
                method: t.method,
                sigma: t.sigma,
                rng_word_pos: t.rng.get_word_pos().to_string(),
                optimizer: to_exact_json(&t.optimizer)
                    .with_context(|| format!("run {} {}: the optimiser state", t.run, t.method.name()))?,
                error_messages: t.error_messages.clone(),
                records: RecordColumns::of(&t.records),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let file = StateFile {
        format: FORMAT.into(),
        version: VERSION,
        config: to_exact_json(config)?,
        done,
        wall_seconds,
        cpu_seconds,
        trajectories,
    };
    serde_json::to_vec(&file).context("serialising the training state")
}

/// A state read back by [`load`].
pub(crate) struct Checkpoint {
    /// Iterations done.
    pub(crate) done: usize,
    /// The trajectories, ready to continue.
    pub(crate) trajectories: Vec<MethodRun>,
    /// Wall time spent before.
    pub(crate) wall_seconds: f64,
    /// CPU time spent before (when known).
    pub(crate) cpu_seconds: Option<f64>,
}

/// Reads `path` and checks it against `config`; errors say what is wrong and what to do.
pub(crate) fn load(path: &Path, config: &TrainConfig) -> Result<Checkpoint> {
    let bytes = crate::common::read_resume_state(path)?;
    decode(&bytes, config).with_context(|| format!("--resume: {}", path.display()))
}

/// Parses and validates a state file's bytes.
pub(crate) fn decode(bytes: &[u8], config: &TrainConfig) -> Result<Checkpoint> {
    let file: StateFile = serde_json::from_slice(bytes).context("not a readable training state")?;
    ensure!(
        file.format == FORMAT && file.version == VERSION,
        "written by another format (`{}` version {}), expected `{FORMAT}` version {VERSION}",
        file.format,
        file.version
    );
    let current = to_exact_json(config)?;
    let differences = json_differences(&file.config, &current);
    if !differences.is_empty() {
        bail!(
            "the interrupted run had other settings: {}; resume with the same arguments (only --threads and \
             --checkpoint-every may change) or run without --resume to start afresh",
            differences.join(", ")
        );
    }
    ensure!(file.done <= config.iterations, "{} iterations done, more than --iterations", file.done);
    let expected: Vec<(usize, DampingMode)> =
        (0..config.runs).flat_map(|r| config.methods.iter().map(move |&m| (r, m))).collect();
    let found: Vec<(usize, DampingMode)> = file.trajectories.iter().map(|t| (t.run, t.method)).collect();
    ensure!(found == expected, "the trajectories {found:?} do not match the runs and methods {expected:?}");
    let mut trajectories = Vec::with_capacity(file.trajectories.len());
    for t in file.trajectories {
        let what = || format!("run {} {}", t.run, t.method.name());
        let mut run = MethodRun::new(config, t.run, t.method)?;
        run.sigma = t.sigma;
        run.records = t.records.records().with_context(what)?;
        ensure!(run.records.len() == file.done, "{}: {} records, expected {}", what(), run.records.len(), file.done);
        run.error_messages = t.error_messages;
        run.optimizer = from_exact_json(t.optimizer).with_context(|| format!("{}: the optimiser", what()))?;
        let pos: u128 = t.rng_word_pos.parse().with_context(|| format!("{}: rng_word_pos", what()))?;
        run.rng = run_rng(config.seed, t.run);
        run.rng.set_word_pos(pos);
        trajectories.push(run);
    }
    Ok(Checkpoint { done: file.done, trajectories, wall_seconds: file.wall_seconds, cpu_seconds: file.cpu_seconds })
}

/// Writes the state file every `every` iterations (see [`CheckpointSink`]). The state is
/// encoded at once, on the training thread; the write and its fsync run on a background
/// thread while training goes on (one at a time). [`Writer::finish`] waits for the last one.
pub(crate) struct Writer<'a> {
    /// The state file.
    pub(crate) path: PathBuf,
    /// The configuration.
    pub(crate) config: &'a TrainConfig,
    /// Iterations between checkpoints (0 = none).
    pub(crate) every: usize,
    /// Wall time of earlier segments (before a resume).
    pub(crate) wall_before: f64,
    /// CPU time of earlier segments.
    pub(crate) cpu_before: Option<f64>,
    /// When this segment started.
    pub(crate) started: Instant,
    /// CPU time of this segment so far.
    pub(crate) segment_cpu: &'a (dyn Fn() -> Option<f64> + Sync),
    /// For warnings without tearing the bar.
    pub(crate) progress: &'a ProgressBar,
    /// Checkpoints written so far.
    pub(crate) written: usize,
    /// Wall time the training waited for checkpoints (encoding, and a previous write not yet
    /// done), seconds.
    pub(crate) seconds: f64,
    /// Size of the last one, bytes.
    pub(crate) last_bytes: usize,
    pending: Option<(usize, std::thread::JoinHandle<Result<()>>)>,
}

impl<'a> Writer<'a> {
    /// A writer to `path` every `every` iterations, for a segment that started at `started`
    /// after `wall_before` / `cpu_before` seconds of earlier segments.
    pub(crate) fn new(
        path: PathBuf,
        config: &'a TrainConfig,
        every: usize,
        (wall_before, cpu_before): (f64, Option<f64>),
        started: Instant,
        segment_cpu: &'a (dyn Fn() -> Option<f64> + Sync),
        progress: &'a ProgressBar,
    ) -> Self {
        Writer {
            path,
            config,
            every,
            wall_before,
            cpu_before,
            started,
            segment_cpu,
            progress,
            written: 0,
            seconds: 0.0,
            last_bytes: 0,
            pending: None,
        }
    }

    /// Waits for the write in flight, if any (before the results are written and the state
    /// file removed, so that a late write cannot bring it back).
    pub(crate) fn finish(&mut self) {
        if let Some((done, handle)) = self.pending.take() {
            let result = handle.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the writing thread panicked")));
            match result {
                Ok(()) => self.written += 1,
                Err(e) => {
                    self.progress.suspend(|| eprintln!("warning: checkpoint at iteration {done} not written: {e:#}"))
                }
            }
        }
    }
}

impl CheckpointSink for Writer<'_> {
    fn every(&self) -> usize {
        self.every
    }

    /// A checkpoint that cannot be written is a warning, not the end of the training: the
    /// previous state file stays valid (it is only ever replaced by a rename).
    fn save(&mut self, trajectories: &[MethodRun], done: usize) -> Result<()> {
        let begun = Instant::now();
        let wall = self.wall_before + self.started.elapsed().as_secs_f64();
        let cpu = self.cpu_before.zip((self.segment_cpu)()).map(|(a, b)| a + b);
        let encoded = encode(self.config, trajectories, done, wall, cpu);
        self.finish();
        match encoded {
            Ok(bytes) => {
                self.last_bytes = bytes.len();
                let path = self.path.clone();
                let spawned = std::thread::Builder::new()
                    .name("checkpoint".into())
                    .spawn(move || crate::common::atomic_write(&path, &bytes));
                match spawned {
                    Ok(handle) => self.pending = Some((done, handle)),
                    Err(e) => self.progress.suspend(|| {
                        eprintln!("warning: checkpoint at iteration {done} not written: no thread for it: {e}")
                    }),
                }
            }
            Err(e) => self.progress.suspend(|| eprintln!("warning: checkpoint at iteration {done} not written: {e:#}")),
        }
        self.seconds += begun.elapsed().as_secs_f64();
        Ok(())
    }
}
