//! Reproducibility and checkpoints of the training loop, through the crate's own types.

use clap::Parser;
use indicatif::ProgressBar;

use super::args::TrainConfig;
use super::checkpoint;
use super::training::{fresh_trajectories, train, train_from, CheckpointSink, IterRecord, MethodRun, NoCheckpoints};
use crate::common::with_threads;
use crate::{Cli, Command as Sub};

fn config(extra: &[&str]) -> TrainConfig {
    let mut argv = vec!["wiberg", "ransac", "--report-every", "100"];
    if !extra.contains(&"--iterations") {
        argv.extend(["--iterations", "300"]);
    }
    argv.extend_from_slice(extra);
    let cli = Cli::try_parse_from(argv).unwrap();
    let Sub::Ransac(args) = cli.command else { panic!("not ransac") };
    assert!(args.command.is_none());
    args.train.config().unwrap()
}

/// Everything of a trajectory except the timing.
fn trajectories(config: &TrainConfig, threads: usize) -> Vec<Vec<IterRecord>> {
    let runs = with_threads(threads, || train(config, &ProgressBar::hidden(), |_, _| {})).unwrap().unwrap();
    runs.into_iter().map(|t| t.records.into_iter().map(|r| IterRecord { micros: 0.0, ..r }).collect()).collect()
}

fn same(a: &[Vec<IterRecord>], b: &[Vec<IterRecord>]) -> bool {
    // NaN marks "no value": compare bit patterns so NaN == NaN.
    let key = |r: &IterRecord| {
        (
            r.iteration,
            r.sigma.to_bits(),
            r.loss.to_bits(),
            r.grad.to_bits(),
            r.t_star.to_bits(),
            r.inner_iterations,
            r.converged,
            r.negative_curvature,
            r.min_eigenvalue.to_bits(),
            r.shift.to_bits(),
            r.event,
        )
    };
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(p, q)| key(p) == key(q)))
}

#[test]
fn same_seed_same_results_any_thread_count() {
    let c = config(&["--runs", "2", "--seed", "11"]);
    let one = trajectories(&c, 1);
    let two = trajectories(&c, 2);
    let again = trajectories(&c, 2);
    assert_eq!(one.len(), 6);
    assert!(one.iter().all(|t| t.len() == 300));
    assert!(same(&one, &two), "1 vs 2 threads differ");
    assert!(same(&two, &again), "same seed differs");
    // The sigma trajectories actually move, and a different seed gives different samples.
    assert!(one[0].iter().any(|r| r.sigma != 1.0));
    let other = trajectories(&config(&["--runs", "2", "--seed", "12"]), 2);
    assert!(!same(&one, &other));
}

#[test]
fn every_method_sees_the_same_samples() {
    // Same first sample and same sigma: implicit and trust-region start from the same seed,
    // and the forward reports agree on the iteration count of the shared L-BFGS start.
    let c = config(&["--iterations", "1"]);
    let t = trajectories(&c, 1);
    assert_eq!(t.len(), 3);
    assert_eq!(t[0][0].sigma, t[1][0].sigma);
    assert_eq!(t[1][0].t_star.to_bits(), t[2][0].t_star.to_bits(), "trust-region = guarded at H > 0");
}

/// Captures the encoded state at one checkpoint.
struct Capture<'a> {
    config: &'a TrainConfig,
    at: usize,
    bytes: Option<Vec<u8>>,
}

impl CheckpointSink for Capture<'_> {
    fn every(&self) -> usize {
        70
    }
    fn save(&mut self, trajectories: &[MethodRun], done: usize) -> anyhow::Result<()> {
        if done == self.at {
            self.bytes = Some(checkpoint::encode(self.config, trajectories, done, 1.5, Some(1.0))?);
        }
        Ok(())
    }
}

#[test]
fn a_checkpoint_continues_bit_identically_and_checks_the_settings() {
    // SGD with momentum: the optimiser has a state (the buffer) that must survive too.
    let c = config(&["--runs", "2", "--optimizer", "sgd", "--seed", "4"]);
    let pb = ProgressBar::hidden();
    let mut capture = Capture { config: &c, at: 140, bytes: None };
    let full = with_threads(2, || train_from(&c, fresh_trajectories(&c).unwrap(), 0, &pb, |_, _| {}, &mut capture))
        .unwrap()
        .unwrap();
    let bytes = capture.bytes.expect("no checkpoint at iteration 140 (every 70, blocks of 100)");
    let restored = checkpoint::decode(&bytes, &c).unwrap();
    assert_eq!((restored.done, restored.wall_seconds, restored.cpu_seconds), (140, 1.5, Some(1.0)));
    let resumed =
        with_threads(1, || train_from(&c, restored.trajectories, 140, &pb, |_, _| {}, NoCheckpoints)).unwrap().unwrap();
    let records = |t: &[MethodRun]| -> Vec<Vec<IterRecord>> {
        t.iter().map(|t| t.records.iter().map(|r| IterRecord { micros: 0.0, ..*r }).collect()).collect()
    };
    assert!(same(&records(&full), &records(&resumed)), "resumed trajectories differ");
    assert!(full.iter().zip(&resumed).all(|(a, b)| a.sigma.to_bits() == b.sigma.to_bits()));
    // The timing column is restored too (it is part of the CSV).
    let restored_again = checkpoint::decode(&bytes, &c).unwrap();
    assert_eq!(restored_again.trajectories[0].records[5].micros, full[0].records[5].micros);

    let other = config(&["--runs", "2", "--optimizer", "sgd", "--seed", "5"]);
    let err = format!("{:#}", checkpoint::decode(&bytes, &other).err().unwrap());
    assert!(err.contains("seed 4 (state) vs 5 (now)"), "{err}");
    let err = format!("{:#}", checkpoint::decode(&bytes[..bytes.len() / 2], &c).err().unwrap());
    assert!(err.contains("not a readable training state"), "{err}");
}
