//! `wiberg pose train` as a child process: SIGKILLed at random moments and resumed each time,
//! it ends with the parameters, optimiser state and log of an uninterrupted run (a stop at
//! every write point is tested in `crash_safety`; the training loop's own tests are the
//! crate's, `src/pose/tests/train.rs`).

use std::path::{Path, PathBuf};
use wiberg_models::pose::params::{ParamSource, PoseParams};

use crate::common;
use common::{generate_pose, tome_dir};

fn latest(out: &Path) -> PathBuf {
    wiberg_models::pose::checkpoint::latest_checkpoint(out).unwrap().expect("a checkpoint")
}

/// The log without its last (wall-time) column.
fn log_without_time(out: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(out.join("train_log.csv")).unwrap();
    text.lines().map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head).to_string()).collect()
}

/// The training step a checkpoint's state file records.
fn step(ckpt: &Path) -> u64 {
    let path = ckpt.join(wiberg_models::pose::checkpoint::STATE_FILE);
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    state["step"].as_u64().expect("a step in the training state")
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
    let data = tempfile::tempdir().unwrap();
    // 60 training frames, every 2nd: 15 batches of 2 per epoch, 2 epochs.
    generate_pose(&tome, data.path(), 2, 8);
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
    // covered deterministically by `crash_safety`.
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
    assert_eq!((step(&latest(full.path())), step(&latest(killed.path()))), (30, 30));
    // The Adam moments, bit for bit.
    let moments = |out: &Path| std::fs::read(latest(out).join("adam_moments.npy")).unwrap();
    assert!(moments(full.path()) == moments(killed.path()), "optimiser moments differ");
    assert_eq!(log_without_time(full.path()), log_without_time(killed.path()), "logs differ");
    // Only the pointed-to checkpoint is left, and no temporary file of a killed write.
    assert_eq!(std::fs::read_dir(killed.path().join("checkpoints")).unwrap().count(), 1);
    let names: Vec<String> =
        std::fs::read_dir(killed.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}
