//! `wiberg pose train`: a short run lowers the test error; a run stopped after a checkpoint and
//! resumed ends with the same parameters and log as an uninterrupted run.

use std::path::Path;
use wiberg_cli::pose::generate::{self, Generator};
use wiberg_cli::pose::grad::Damping;
use wiberg_cli::pose::metrics::Metric;
use wiberg_cli::pose::model::{PoseModel, Variant};
use wiberg_cli::pose::params::{ParamSource, PoseParams};
use wiberg_cli::pose::train::{self, TrainArgs};
use wiberg_cli::pose::{evaluate, ModelArgs};

mod common;
use common::tome_dir;

fn args(tome: &Path, data: &Path, out: &Path, max_batches: usize, resume: bool) -> TrainArgs {
    TrainArgs {
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        model: ModelArgs {
            checkpoint: Some(tome.to_path_buf()),
            init: false,
            model_dir: None,
            load_robust_params: false,
            variant: Variant::Huber,
        },
        damping: Damping::TrustRegion,
        lambda: 1e-3,
        epochs: 2,
        batch: 4,
        lr: 0.05,
        every: 1,
        checkpoint_every: 2,
        max_batches,
        seed: 5,
        threads: 2,
        resume,
    }
}

#[test]
fn short_training_lowers_the_test_error() {
    let Some(tome) = tome_dir() else { return };
    let gen = Generator::load(&tome).unwrap();
    let data = tempfile::tempdir().unwrap();
    generate::generate(&gen, data.path(), 5, 11, 1.0, false).unwrap();
    let test_dir = data.path().join("testing");
    let before =
        PoseModel::new(&PoseParams::load(&ParamSource::Checkpoint(tome.clone()), false).unwrap(), Variant::Huber)
            .unwrap();
    let err_before = evaluate(&before, &test_dir, Metric::Mpjpe, 2, 2, false).unwrap().mpjpe_mm;
    let out = tempfile::tempdir().unwrap();
    train::run(args(&tome, &data.path().join("training"), out.path(), 12, false)).unwrap();
    let trained = PoseParams::load(&ParamSource::Checkpoint(out.path().join("checkpoint")), true).unwrap();
    let err_after = evaluate(&PoseModel::new(&trained, Variant::Huber).unwrap(), &test_dir, Metric::Mpjpe, 2, 2, false)
        .unwrap()
        .mpjpe_mm;
    eprintln!("test MPJPE {err_before:.2} mm -> {err_after:.2} mm after 12 batches");
    assert!(err_after < err_before - 1.0, "test MPJPE {err_before:.2} -> {err_after:.2} mm");
    let log = std::fs::read_to_string(out.path().join("train_log.csv")).unwrap();
    assert_eq!(log.lines().count(), 13, "header + one line per batch");
}

#[test]
fn resumed_run_matches_an_uninterrupted_one() {
    let Some(tome) = tome_dir() else { return };
    let gen = Generator::load(&tome).unwrap();
    let data = tempfile::tempdir().unwrap();
    // Few frames: an epoch boundary falls inside the run.
    generate::generate(&gen, data.path(), 2, 3, 1.0, false).unwrap();
    let train_dir = data.path().join("training");
    let full = tempfile::tempdir().unwrap();
    train::run(args(&tome, &train_dir, full.path(), 0, false)).unwrap();
    let parts = tempfile::tempdir().unwrap();
    let mut first = args(&tome, &train_dir, parts.path(), 0, false);
    // Stop mid-epoch right after a checkpoint (every 2 batches), then resume.
    first.max_batches = 6;
    train::run(first).unwrap();
    train::run(args(&tome, &train_dir, parts.path(), 0, true)).unwrap();
    let a = PoseParams::load(&ParamSource::Checkpoint(full.path().join("checkpoint")), true).unwrap();
    let b = PoseParams::load(&ParamSource::Checkpoint(parts.path().join("checkpoint")), true).unwrap();
    assert_eq!(a.values, b.values, "resumed parameters differ");
    assert_eq!(a.epoch, 2);
    let strip = |p: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(p.join("train_log.csv")).unwrap();
        text.lines().map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head).to_string()).collect()
    };
    let (la, lb) = (strip(full.path()), strip(parts.path()));
    assert!(la.len() > 7, "the full run has {} log lines", la.len());
    assert_eq!(la, lb, "logs differ (besides the time column)");
}
