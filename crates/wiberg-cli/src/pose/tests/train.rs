//! `wiberg pose train`: a short run lowers the test error; a run stopped after a checkpoint and
//! resumed ends with the same parameters and log as an uninterrupted run; resuming with other
//! settings is refused. (A child process SIGKILLed at random moments, and a stop at every write
//! point, are tested with the binary in `tests/suite/`.)

use std::path::{Path, PathBuf};
use wiberg_models::pose::generate::Generator;
use wiberg_models::pose::metrics::Metric;
use wiberg_models::pose::model::{PoseModel, Variant};
use wiberg_models::pose::params::{ParamSource, PoseParams};

use crate::common::DampingMode;
use crate::pose::train::{self, TrainArgs};
use crate::pose::{evaluate, generate, ModelArgs};
use crate::test_support::tome_dir;

fn latest(out: &Path) -> PathBuf {
    wiberg_models::pose::checkpoint::latest_checkpoint(out).unwrap().expect("a checkpoint")
}

/// The log without its last (wall-time) column.
fn log_without_time(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join("train_log.csv")).unwrap();
    text.lines().map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head).to_string()).collect()
}

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
        damping: DampingMode::TrustRegion,
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
    let trained = PoseParams::load(&ParamSource::Checkpoint(latest(out.path())), true).unwrap();
    let err_after = evaluate(&PoseModel::new(&trained, Variant::Huber).unwrap(), &test_dir, Metric::Mpjpe, 2, 2, false)
        .unwrap()
        .mpjpe_mm;
    eprintln!("test MPJPE {err_before:.2} mm -> {err_after:.2} mm after 12 batches");
    assert!(err_after < err_before - 1.0, "test MPJPE {err_before:.2} -> {err_after:.2} mm");
    let log = std::fs::read_to_string(out.path().join("train_log.csv")).unwrap();
    assert_eq!(log.lines().count(), 13, "header + one line per batch");
    // The failure kinds per step, and their totals in the state and the summary (none here:
    // every inner system of this data is positive definite).
    let header: Vec<&str> = log.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name} column"));
    let (singular, non_finite) = (col("singular_hessian"), col("non_finite"));
    for line in log.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!((fields[singular], fields[non_finite]), ("0", "0"), "{line}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("train_summary.json")).unwrap()).unwrap();
    assert_eq!((summary["singular_hessian"].as_u64(), summary["non_finite"].as_u64()), (Some(0), Some(0)));
    let state = train::read_state(&latest(out.path())).unwrap().unwrap();
    assert_eq!((state.singular_hessian, state.non_finite), (0, 0));
}

#[test]
fn resumed_run_matches_an_uninterrupted_one() {
    let Some(tome) = tome_dir() else { return };
    let gen = Generator::load(&tome).unwrap();
    let data = tempfile::tempdir().unwrap();
    // Few frames: an epoch boundary falls inside the run.
    generate::generate(&gen, data.path(), 2, 3, 1.0, false).unwrap();
    let train_dir = data.path().join("training");
    // 60 frames, every 2nd: 7 batches of 4 per epoch, 14 in all.
    let half = |out: &Path, max_batches: usize, resume: bool| TrainArgs {
        every: 2,
        ..args(&tome, &train_dir, out, max_batches, resume)
    };
    let full = tempfile::tempdir().unwrap();
    train::run(half(full.path(), 0, false)).unwrap();
    let parts = tempfile::tempdir().unwrap();
    // Stop mid-epoch right after a checkpoint (every 2 batches), then resume.
    train::run(half(parts.path(), 6, false)).unwrap();
    // What a kill while checkpointing can leave: a half-written temporary directory, and a
    // complete step directory the pointer never reached (here: garbage). Both are ignored.
    let ckpts = parts.path().join("checkpoints");
    // (4194304 = 2^22 is above the largest process id Linux hands out: a dead writer.)
    std::fs::create_dir_all(ckpts.join(".step-00000008.tmp4194304")).unwrap();
    std::fs::write(ckpts.join(".step-00000008.tmp4194304/trained_model__mean_pose.npy"), b"torn").unwrap();
    std::fs::create_dir_all(ckpts.join("step-00000008")).unwrap();
    std::fs::write(ckpts.join("step-00000008/train_state.json"), b"{").unwrap();
    train::run(half(parts.path(), 0, true)).unwrap();
    let left: Vec<String> =
        std::fs::read_dir(&ckpts).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(left, ["step-00000014"]);
    let a = PoseParams::load(&ParamSource::Checkpoint(latest(full.path())), true).unwrap();
    let b = PoseParams::load(&ParamSource::Checkpoint(latest(parts.path())), true).unwrap();
    assert_eq!(a.values, b.values, "resumed parameters differ");
    assert_eq!(a.epoch, 2);
    let (la, lb) = (log_without_time(full.path()), log_without_time(parts.path()));
    assert!(la.len() > 7, "the full run has {} log lines", la.len());
    assert_eq!(la, lb, "logs differ (besides the time column)");
}

#[test]
fn resume_refuses_other_settings_and_fresh_runs_refuse_an_existing_run() {
    let Some(tome) = tome_dir() else { return };
    let gen = Generator::load(&tome).unwrap();
    let data = tempfile::tempdir().unwrap();
    generate::generate(&gen, data.path(), 1, 4, 1.0, false).unwrap();
    let train_dir = data.path().join("training");
    let out = tempfile::tempdir().unwrap();
    let mut first = args(&tome, &train_dir, out.path(), 1, false);
    first.model.variant = Variant::L2;
    train::run(first).unwrap();
    let state = train::read_state(&latest(out.path())).unwrap().unwrap();
    assert_eq!((state.config.variant.as_str(), state.step), ("l2", 1));
    // Every setting that decides the parameters is checked, and the message names it.
    let mut changed = args(&tome, &train_dir, out.path(), 2, true);
    changed.lr = 0.1;
    changed.seed = 6;
    let err = format!("{:#}", train::run(changed).unwrap_err());
    assert!(err.contains("--variant") && err.contains("--lr") && err.contains("--seed"), "{err}");
    assert!(!err.contains("--batch"), "{err}");
    let mut other_data = args(&tome, &data.path().join("testing"), out.path(), 2, true);
    other_data.model.variant = Variant::L2;
    let err = format!("{:#}", train::run(other_data).unwrap_err());
    assert!(err.contains("training"), "{err}");
    // Nothing was written by the refused attempts.
    assert_eq!(train::read_state(&latest(out.path())).unwrap().unwrap().step, 1);
    let mut again = args(&tome, &train_dir, out.path(), 1, false);
    again.model.variant = Variant::L2;
    let err = format!("{:#}", train::run(again).unwrap_err());
    assert!(err.contains("--resume"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = format!("{:#}", train::run(args(&tome, &train_dir, empty.path(), 1, true)).unwrap_err());
    assert!(err.contains("no checkpoint"), "{err}");
    // A resumed run may change --max-batches and --threads.
    let mut more = args(&tome, &train_dir, out.path(), 2, true);
    more.model.variant = Variant::L2;
    more.threads = 1;
    train::run(more).unwrap();
    assert_eq!(train::read_state(&latest(out.path())).unwrap().unwrap().step, 2);
}
