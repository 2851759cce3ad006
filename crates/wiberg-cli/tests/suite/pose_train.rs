//! `wiberg pose train`: a short run lowers the test error; a run stopped after a checkpoint and
//! resumed ends with the same parameters and log as an uninterrupted run; so does a child
//! process SIGKILLed at random moments and resumed each time (a stop at every write point is
//! tested in tests/crash_safety.rs); resuming with other settings is refused.

use std::path::{Path, PathBuf};
use wiberg_cli::common::DampingMode;
use wiberg_cli::pose::generate;
use wiberg_cli::pose::train::{self, TrainArgs};
use wiberg_cli::pose::{evaluate, ModelArgs};
use wiberg_models::pose::generate::Generator;
use wiberg_models::pose::metrics::Metric;
use wiberg_models::pose::model::{PoseModel, Variant};
use wiberg_models::pose::params::{ParamSource, PoseParams};

use crate::common;
use common::tome_dir;

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

/// Command-line arguments of a small L2 training run as a child process.
fn child_args(tome: &Path, data: &Path, out: &Path, resume: bool) -> Vec<String> {
    let mut a: Vec<String> = [
        "pose",
        "train",
        "--data",
        "",
        "--out",
        "",
        "--checkpoint",
        "",
        "--variant",
        "l2",
        "--damping",
        "trust-region",
        "--epochs",
        "2",
        "--batch",
        "2",
        "--every",
        "2",
        "--checkpoint-every",
        "2",
        "--seed",
        "9",
        "--threads",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a[3] = data.display().to_string();
    a[5] = out.display().to_string();
    a[7] = tome.display().to_string();
    if resume {
        a.push("--resume".into());
    }
    a
}

fn spawn(args: &[String]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_wiberg"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigkilled_child_resumed_matches_an_uninterrupted_run() {
    use rand::{Rng, SeedableRng};
    use std::time::{Duration, Instant};
    let Some(tome) = tome_dir() else { return };
    let gen = Generator::load(&tome).unwrap();
    let data = tempfile::tempdir().unwrap();
    // 60 training frames, every 2nd: 15 batches of 2 per epoch, 2 epochs.
    generate::generate(&gen, data.path(), 2, 8, 1.0, false).unwrap();
    let train_dir = data.path().join("training");

    let full = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let status = spawn(&child_args(&tome, &train_dir, full.path(), false)).wait().unwrap();
    let full_time = t0.elapsed().as_secs_f64();
    assert!(status.success(), "uninterrupted run failed: {status}");

    let killed = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    // Which moments of the run the kills hit (or whether the run finished first) depends on
    // the machine's speed and load: it is logged, not asserted. The exact write points are
    // covered deterministically by tests/crash_safety.rs.
    let mut kills = 0;
    for round in 0..3 {
        let resume = killed.path().join(wiberg_models::pose::checkpoint::POINTER_FILE).exists();
        let mut child = spawn(&child_args(&tome, &train_dir, killed.path(), resume));
        let delay = rng.random_range(0.02..0.5) * full_time;
        std::thread::sleep(Duration::from_secs_f64(delay));
        let running = child.try_wait().unwrap().is_none();
        if running {
            child.kill().unwrap(); // SIGKILL on Unix
            kills += 1;
        }
        let status = child.wait().unwrap();
        assert!(running || status.success(), "round {round} failed: {status}");
        eprintln!("round {round}: killed after {delay:.2} s; {kills} kill(s) so far");
    }
    let resume = killed.path().join(wiberg_models::pose::checkpoint::POINTER_FILE).exists();
    let status = spawn(&child_args(&tome, &train_dir, killed.path(), resume)).wait().unwrap();
    assert!(status.success(), "the final run failed: {status}");

    let a = PoseParams::load(&ParamSource::Checkpoint(latest(full.path())), true).unwrap();
    let b = PoseParams::load(&ParamSource::Checkpoint(latest(killed.path())), true).unwrap();
    assert_eq!(a.epoch, 2);
    assert!(a.values.iter().zip(&b.values).all(|(x, y)| x.to_bits() == y.to_bits()), "parameters differ");
    let (sa, sb) = (
        train::read_state(&latest(full.path())).unwrap().unwrap(),
        train::read_state(&latest(killed.path())).unwrap().unwrap(),
    );
    assert_eq!((sa.step, sb.step), (30, 30));
    assert_eq!(sa.adam.moments(), sb.adam.moments(), "optimiser moments differ");
    assert_eq!(log_without_time(full.path()), log_without_time(killed.path()), "logs differ");
    // Only the pointed-to checkpoint is left, and no temporary file of a killed write.
    assert_eq!(std::fs::read_dir(killed.path().join("checkpoints")).unwrap().count(), 1);
    let names: Vec<String> =
        std::fs::read_dir(killed.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}
