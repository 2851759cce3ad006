//! Crash safety of the training commands `wiberg ransac`, `wiberg fusion train` and
//! `wiberg pose train`, with real child processes.
//!
//! Deterministic: an uninterrupted run lists every write point it passes
//! (`WIBERG_FAULT_LIST`); then, for each point in turn, a run is stopped exactly there
//! (`WIBERG_FAULT_AT`, exit status 86, no cleanup: what a kill at that moment leaves, the
//! temporary file of a write included), continued (`--resume` when its state survived, else
//! afresh) and must end with exactly the results of the uninterrupted run and no temporary file.
//!
//! Random: SIGKILL at seeded random moments, resumed each time; the results must again be
//! exact. Which writes those kills hit depends on the machine's speed, so nothing is asserted
//! about where (or whether) they landed.
//!
//! Also: a resume with other arguments or data, or without a state, is a clear error.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;

/// The exit status of a run stopped at `WIBERG_FAULT_AT`.
const FAULT_EXIT: i32 = 86;

/// The lock file every command that writes to an `--out` holds while it writes.
const LOCK_FILE: &str = ".wiberg.lock";

fn wiberg(args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wiberg"));
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    c.env_remove("WIBERG_FAULT_AT").env_remove("WIBERG_FAULT_LIST");
    c
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Runs to completion; returns the wall time, panics with stderr on failure.
fn run_ok(args: &[String]) -> Duration {
    let started = Instant::now();
    let out = wiberg(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    started.elapsed()
}

/// Runs `args` once this process's lock on their `--out` is really gone, then expects success.
///
/// `flock` belongs to the open file, and every child that another test thread is spawning at
/// the moment holds a copy of this process's descriptors between its fork and its exec (close-
/// on-exec closes them only at the exec). So for a short while after `drop(lock)` the lock can
/// still be held in this process's name: a refusal naming this process (`refused`) is retried;
/// any other failure fails at once.
fn run_ok_once_unlocked(args: &[String], refused: &str) {
    for _ in 0..500 {
        let out = wiberg(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            return;
        }
        assert!(stderr.contains(refused), "{args:?}: {stderr}");
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{args:?}: the --out lock of this process was never released");
}

/// Runs and expects failure; returns stderr.
fn run_err(args: &[String]) -> String {
    let out = wiberg(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} should fail");
    stderr
}

/// Every write point an uninterrupted run of `args` passes, in order, as `<point>:<n>`
/// (the value of `WIBERG_FAULT_AT` that stops a run there); also returns the run's wall time.
fn write_points(args: &[String]) -> (Vec<String>, Duration) {
    let list = tempfile::NamedTempFile::new().unwrap();
    let started = Instant::now();
    let out = wiberg(args).env("WIBERG_FAULT_LIST", list.path()).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let elapsed = started.elapsed();
    let text = std::fs::read_to_string(list.path()).unwrap();
    (text.lines().map(str::to_string).collect(), elapsed)
}

/// Runs `args` until it reaches `point`, where it must stop with the fault status.
fn stop_at(args: &[String], point: &str) {
    let out = wiberg(args).env("WIBERG_FAULT_AT", point).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(FAULT_EXIT),
        "{point}: the run did not stop there ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SIGKILLs `child` unless it has already exited (then it must have succeeded); returns
/// whether it was still running.
fn kill(mut child: Child) -> bool {
    if let Some(status) = child.try_wait().unwrap() {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut stderr).unwrap();
        }
        assert!(status.success(), "the child failed: {stderr}");
        return false;
    }
    // `Child::kill` sends SIGKILL on Unix: no handler, no cleanup, like a crash or power cut.
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&read(path)).unwrap()
}

/// Removes the named keys at any depth (the timing fields).
fn without(mut v: Value, keys: &[&str]) -> Value {
    fn strip(v: &mut Value, keys: &[&str]) {
        match v {
            Value::Object(o) => {
                o.retain(|k, _| !keys.contains(&k.as_str()));
                o.values_mut().for_each(|x| strip(x, keys));
            }
            Value::Array(a) => a.iter_mut().for_each(|x| strip(x, keys)),
            _ => {}
        }
    }
    strip(&mut v, keys);
    v
}

/// The lines of a CSV file without their last column (the wall time).
fn csv_without_time(path: &Path) -> Vec<String> {
    let text = String::from_utf8(read(path)).unwrap();
    text.lines().map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head).to_string()).collect()
}

/// Files and directories under `dir` (at any depth) left by an interrupted write: every
/// temporary is named `.<name>.tmp<pid>[.<ext>]`.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().contains(".tmp") {
            found.push(path);
        } else if path.is_dir() {
            found.extend(temporaries(&path));
        }
    }
    found
}

/// One training command under test.
struct Case<'a> {
    /// The command line writing into `out` with `threads` threads (results do not depend on
    /// the thread count, so the runs alternate it).
    args: &'a (dyn Fn(&Path, &str) -> Vec<String> + Sync),
    /// The file in `out` whose presence means the run can be resumed.
    state: &'a str,
    /// Asserts that `out` holds exactly the results of the uninterrupted run in `reference`;
    /// the label says which experiment is being checked.
    same: &'a (dyn Fn(&Path, &Path, &str) + Sync),
}

impl Case<'_> {
    /// The command line that continues whatever a stopped run left in `out`: `--resume` when
    /// its state survived, the original command when it never got that far.
    fn continuation(&self, out: &Path, threads: &str) -> Vec<String> {
        let mut args = (self.args)(out, threads);
        if out.join(self.state).exists() {
            args.push("--resume".into());
        }
        args
    }

    /// Runs uninterrupted into `<root>/reference`, then for every write point of that run:
    /// stops a run into a fresh directory there, lets `check` look at what was left, continues
    /// it to the end and compares. Two points are worked on at a time (the runs mostly wait
    /// for fsync). Returns the points.
    fn stop_at_every_write_point(&self, root: &Path, check: impl Fn(&Path, &str) + Sync) -> Vec<String> {
        let reference = root.join("reference");
        let (points, _) = write_points(&(self.args)(&reference, "2"));
        assert!(temporaries(&reference).is_empty(), "{:?}", temporaries(&reference));
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(point) = points.get(i) else { break };
                    let out = root.join(format!("stopped-{i}"));
                    stop_at(&(self.args)(&out, "1"), point);
                    let left = temporaries(&out);
                    if point.starts_with("after-temp-write:") {
                        assert_eq!(left.len(), 1, "{point}: the stopped write should leave its temporary: {left:?}");
                    }
                    check(&out, point);
                    run_ok(&self.continuation(&out, "2"));
                    assert!(temporaries(&out).is_empty(), "{point}: temporaries left: {:?}", temporaries(&out));
                    (self.same)(&reference, &out, &format!("stopped at {point}, continued"));
                    std::fs::remove_dir_all(&out).unwrap();
                });
            }
        });
        eprintln!("{} write points, each stopped at and continued", points.len());
        points
    }

    /// Runs uninterrupted into `<root>/reference`, then SIGKILLs a run into `<root>/killed`
    /// `kills` times at seeded random moments (a fraction of the reference run's time after
    /// each start), continuing it each time, and finally runs it to the end and compares.
    fn kill_at_random_moments(&self, root: &Path, kills: usize, seed: u64) {
        let reference = root.join("reference");
        let took = run_ok(&(self.args)(&reference, "2"));
        let out = root.join("killed");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut landed, mut finished) = (0, false);
        for k in 0..kills {
            let child = wiberg(&self.continuation(&out, &(1 + k % 2).to_string())).spawn().unwrap();
            std::thread::sleep(took.mul_f64(rng.random_range(0.05..0.7)));
            if !kill(child) {
                finished = true;
                break;
            }
            landed += 1;
        }
        // For the log only: how many kills hit a running process depends on the machine.
        eprintln!("{landed} of {kills} kills hit a running process");
        if !finished {
            run_ok(&self.continuation(&out, "2"));
        }
        assert!(temporaries(&out).is_empty(), "{:?}", temporaries(&out));
        (self.same)(&reference, &out, "killed at random moments, resumed");
    }
}

/// The point where a run has written its state once and is stopped in the middle of writing
/// it a second time: a resume from a state file with a torn temporary beside it.
fn second_state_write(state: &str) -> String {
    format!("after-temp-write:{state}:2")
}

// ---------------------------------------------------------------------------------------
// wiberg ransac

fn ransac_args(iterations: &str, runs: &str, every: &str) -> impl Fn(&Path, &str) -> Vec<String> {
    let common = strings(&[
        "ransac",
        "--iterations",
        iterations,
        "--runs",
        runs,
        "--report-every",
        every,
        "--checkpoint-every",
        every,
        "--seed",
        "3",
    ]);
    move |out: &Path, threads: &str| {
        let mut v = common.clone();
        v.extend(strings(&["--out", out.to_str().unwrap(), "--threads", threads]));
        v
    }
}

fn ransac_same(a: &Path, b: &Path, label: &str) {
    assert!(!b.join("ransac-state.json").exists(), "{label}: the state file outlived the finished run");
    // iterations.csv: equal apart from the last column (micros, the timing).
    let (ca, cb) = (csv_without_time(&a.join("iterations.csv")), csv_without_time(&b.join("iterations.csv")));
    assert!(ca.len() > 1, "{label}: iterations.csv is empty");
    assert!(ca == cb, "{label}: iterations.csv differs");
    let timing = [
        "wall_seconds",
        "compute_seconds",
        "cpu_seconds",
        "median_compute_seconds",
        "load_average",
        "threads",
        "median_us_per_iteration",
    ];
    let (sa, sb) = (without(json(&a.join("summary.json")), &timing), without(json(&b.join("summary.json")), &timing));
    assert_eq!(sa, sb, "{label}: summary.json differs");
    assert!(sa["summary"]["per_method"][0]["final_sigma"].is_number());
    for fig in ["figure1.png", "energy.png"] {
        let (fa, fb) = (a.join(fig), b.join(fig));
        assert_eq!(fa.exists(), fb.exists(), "{label}: {fig}");
        if fa.exists() {
            assert!(read(&fa) == read(&fb), "{label}: {fig} differs");
        }
    }
}

#[test]
fn ransac_stopped_at_every_write_point_ends_exactly_like_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let args = ransac_args("60", "1", "20");
    let state = "ransac-state.json";
    let case = Case { args: &args, state, same: &ransac_same };
    let points = case.stop_at_every_write_point(dir.path(), |out, point| {
        if point == second_state_write(state) {
            // A resume with other settings is refused and names them; the state stays usable.
            let mut other = args(out, "1");
            other.extend(strings(&["--resume", "--lr", "0.25"]));
            let err = run_err(&other);
            assert!(err.contains("other settings") && err.contains("lr 0.5 (state) vs 0.25 (now)"), "{err}");
        }
    });
    // Two checkpoints (iterations 20 and 40), the CSV, both figures and the summary.
    let writes =
        [(state, 1), (state, 2), ("iterations.csv", 1), ("figure1.png", 1), ("energy.png", 1), ("summary.json", 1)];
    let expected: Vec<String> = writes
        .iter()
        .flat_map(|(file, n)| [format!("after-temp-write:{file}:{n}"), format!("after-rename:{file}:{n}")])
        .collect();
    assert_eq!(points, expected);

    // The finished run removed its state: --resume is a clear error, not a silent fresh start.
    let mut again = args(&dir.path().join("reference"), "1");
    again.push("--resume".into());
    let err = run_err(&again);
    assert!(err.contains("no training state") && err.contains("without --resume"), "{err}");
}

#[test]
fn ransac_killed_at_random_moments_and_resumed_ends_exactly_like_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let args = ransac_args("600", "2", "50");
    let case = Case { args: &args, state: "ransac-state.json", same: &ransac_same };
    case.kill_at_random_moments(dir.path(), 3, 7);
}

// ---------------------------------------------------------------------------------------
// wiberg fusion train

/// A small synthetic VOT-format data set in `dir`.
fn fusion_data(dir: &Path, seed: u64) {
    use wiberg_models::fusion::generate::{generate, GenerateConfig};
    let set = generate(&GenerateConfig { sequences: 3, trackers: 6, seed, mean_frames: 40.0 }, || {}).0;
    common::write_vot(dir, &set);
}

fn fusion_args(data: &Path, epochs: &str, every: &str) -> impl Fn(&Path, &str) -> Vec<String> {
    let data = data.to_str().unwrap().to_string();
    let (epochs, every) = (epochs.to_string(), every.to_string());
    move |out: &Path, threads: &str| {
        strings(&[
            "fusion",
            "train",
            "--data",
            &data,
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            &epochs,
            "--batch",
            "16",
            "--checkpoint-every",
            &every,
            "--threads",
            threads,
        ])
    }
}

fn fusion_same(a: &Path, b: &Path, label: &str) {
    assert!(!b.join("fusion-state.json").exists(), "{label}: the state file outlived the finished run");
    for f in [
        "params_ours.json",
        "params_implicit.json",
        "table.csv",
        "table.txt",
        "table.json",
        "split_frames_seed0.txt",
        "figure2.png",
    ] {
        assert!(read(&a.join(f)) == read(&b.join(f)), "{label}: {f} differs");
    }
    let timing = ["timing", "seconds", "cpu_seconds"];
    let (ta, tb) = (without(json(&a.join("training.json")), &timing), without(json(&b.join("training.json")), &timing));
    assert_eq!(ta, tb, "{label}: training.json differs");
    assert!(!ta["ours"]["epochs"].as_array().unwrap().is_empty());
}

#[test]
fn fusion_stopped_at_every_write_point_ends_exactly_like_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fusion_data(&data, 5);
    // Two epochs, checkpoints at the epoch ends only: 2 states per model.
    let args = fusion_args(&data, "2", "0");
    let state = "fusion-state.json";
    let case = Case { args: &args, state, same: &fusion_same };
    let points = case.stop_at_every_write_point(&dir.path().join("runs"), |out, point| {
        if point == second_state_write(state) {
            let mut other = args(out, "1");
            other.extend(strings(&["--resume", "--lr", "0.01"]));
            let err = run_err(&other);
            assert!(err.contains("other settings") && err.contains("lr 0.02 (state) vs 0.01 (now)"), "{err}");
        }
    });
    let files: Vec<&str> = points.iter().map(|p| p.split(':').nth(1).unwrap()).collect();
    assert_eq!(files.iter().filter(|f| **f == state).count(), 2 * 4, "{points:?}");
    for f in
        ["split_frames_seed0.txt", "table.txt", "table.json", "params_implicit.json", "training.json", "figure2.png"]
    {
        assert!(files.contains(&f), "no write point for {f}: {points:?}");
    }

    // Other data under the same settings is refused (the state holds a fingerprint).
    let other_data = dir.path().join("other-data");
    fusion_data(&other_data, 5);
    let args = fusion_args(&other_data, "2", "0");
    let out = dir.path().join("other-data-run");
    stop_at(&args(&out, "2"), &format!("after-rename:{state}:1"));
    fusion_data(&other_data, 6);
    let mut resume = args(&out, "2");
    resume.push("--resume".into());
    let err = run_err(&resume);
    assert!(err.contains("data-fingerprint"), "{err}");

    let mut again = fusion_args(&data, "2", "0")(&dir.path().join("runs/reference"), "1");
    again.push("--resume".into());
    let err = run_err(&again);
    assert!(err.contains("no training state"), "{err}");
}

#[test]
fn fusion_killed_at_random_moments_and_resumed_ends_exactly_like_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fusion_data(&data, 5);
    let args = fusion_args(&data, "3", "2");
    let case = Case { args: &args, state: "fusion-state.json", same: &fusion_same };
    case.kill_at_random_moments(&dir.path().join("runs"), 3, 11);
}

// ---------------------------------------------------------------------------------------
// wiberg pose train

/// A training directory of 2 frames (two one-frame sequences of the generator's training set).
fn pose_data(tome: &Path, dir: &Path) -> PathBuf {
    common::generate_pose(tome, &dir.join("generated"), 1, 4);
    let small = dir.join("training");
    std::fs::create_dir_all(&small).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.join("generated/training"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter_map(|n| n.strip_suffix("__joint_2d.npy").map(str::to_string))
        .collect();
    names.sort();
    for name in names.iter().take(2) {
        for part in ["joint_2d", "joint_3d"] {
            let file = format!("{name}__{part}.npy");
            std::fs::copy(dir.join("generated/training").join(&file), small.join(&file)).unwrap();
        }
    }
    small
}

fn pose_args(tome: &Path, data: &Path) -> impl Fn(&Path, &str) -> Vec<String> {
    let (tome, data) = (tome.to_str().unwrap().to_string(), data.to_str().unwrap().to_string());
    move |out: &Path, threads: &str| {
        strings(&[
            "pose",
            "train",
            "--data",
            &data,
            "--out",
            out.to_str().unwrap(),
            "--checkpoint",
            &tome,
            "--variant",
            "l2",
            "--epochs",
            "2",
            "--batch",
            "1",
            "--checkpoint-every",
            "3",
            "--seed",
            "9",
            "--threads",
            threads,
        ])
    }
}

fn pose_same(a: &Path, b: &Path, label: &str) {
    assert_eq!(json(&a.join("checkpoint.json")), json(&b.join("checkpoint.json")), "{label}: checkpoint.json");
    let latest = json(&a.join("checkpoint.json"))["latest"].as_str().unwrap().to_string();
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
        v.sort();
        v
    };
    // Only the pointed-to checkpoint is left, with the same files.
    assert_eq!(names(&b.join("checkpoints")), names(&a.join("checkpoints")), "{label}: checkpoints/");
    let (ca, cb) = (a.join(&latest), b.join(&latest));
    for f in names(&ca) {
        match f.as_str() {
            "train_log.csv" => {}
            "train_state.json" => {
                let log = |d: &Path| json(&d.join(&f))["log"].as_str().unwrap().to_string();
                let (mut sa, mut sb) = (json(&ca.join(&f)), json(&cb.join(&f)));
                let strip =
                    |l: String| l.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string()).collect::<Vec<_>>();
                assert_eq!(strip(log(&ca)), strip(log(&cb)), "{label}: the state's log");
                sa["log"] = Value::Null;
                sb["log"] = Value::Null;
                assert_eq!(sa, sb, "{label}: {f}");
            }
            // The parameters and the Adam moments, bit for bit.
            _ => assert!(read(&ca.join(&f)) == read(&cb.join(&f)), "{label}: {f} differs"),
        }
    }
    let log = |d: &Path| csv_without_time(&d.join("train_log.csv"));
    assert_eq!(log(&ca), log(&cb), "{label}: the checkpoint's train_log.csv");
    assert_eq!(
        csv_without_time(&a.join("train_log.csv")),
        csv_without_time(&b.join("train_log.csv")),
        "{label}: train_log.csv"
    );
    assert!(b.join("train_summary.json").exists(), "{label}: train_summary.json");
}

#[test]
fn pose_stopped_at_every_write_point_ends_exactly_like_an_uninterrupted_run() {
    let Some(tome) = common::tome_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = pose_data(&tome, dir.path());
    // 2 frames, batch 1, 2 epochs, a checkpoint every 3 batches: checkpoints at steps 2 (end of
    // the first epoch), 3 (in the second) and 4 (its end).
    let args = pose_args(&tome, &data);
    let case = Case { args: &args, state: "checkpoint.json", same: &pose_same };
    let points = case.stop_at_every_write_point(&dir.path().join("runs"), |_, _| {});
    let mut expected = Vec::new();
    for (k, step) in [2, 3, 4].into_iter().enumerate() {
        for (file, n) in
            [(format!("step-{step:08}"), 1), ("train_log.csv".into(), k + 1), ("checkpoint.json".into(), k + 1)]
        {
            expected.push(format!("after-temp-write:{file}:{n}"));
            expected.push(format!("after-rename:{file}:{n}"));
        }
    }
    expected.push("after-temp-write:train_summary.json:1".into());
    expected.push("after-rename:train_summary.json:1".into());
    assert_eq!(points, expected);
}

// ---------------------------------------------------------------------------------------
// Two processes writing one --out

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    v.sort();
    v
}

/// Takes `dir`'s lock as a wiberg process does: `LOCK_FILE` in it, locked, holding this
/// process's id. The lock lasts as long as the returned file is open.
fn hold_lock(dir: &Path) -> std::fs::File {
    use std::io::Write;
    std::fs::create_dir_all(dir).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .unwrap();
    file.try_lock().unwrap();
    file.set_len(0).unwrap();
    writeln!(file, "{}", std::process::id()).unwrap();
    file
}

/// Each command that writes to an `--out` stops at once, writing nothing, with an error naming
/// the directory, while another process (here the test process) holds the directory's lock;
/// once the lock is released the same command runs. The lock file stays and blocks nothing:
/// the runs stopped or killed above are continued in the directories they locked.
#[test]
fn a_locked_out_directory_is_refused_then_used_once_released() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fusion_data(&data, 5);
    let out = |name: &str| dir.path().join(name);
    let generate = strings(&["fusion", "generate", "--sequences", "2", "--trackers", "3", "--mean-frames", "20"]);
    let mut cases = vec![
        ("ransac", ransac_args("20", "1", "10")(&out("ransac"), "1")),
        ("fusion-generate", [generate, strings(&["--out", out("fusion-generate").to_str().unwrap()])].concat()),
        ("fusion-train", fusion_args(&data, "1", "0")(&out("fusion-train"), "1")),
    ];
    if let Some(tome) = common::tome_dir() {
        let pose = pose_data(&tome, dir.path());
        cases.push(("pose-train", pose_args(&tome, &pose)(&out("pose-train"), "1")));
        let tome = tome.to_str().unwrap();
        let generate = ["pose", "generate", "--model-dir", tome, "--frames-per-sequence", "1", "--seed", "4", "--out"];
        cases.push((
            "pose-generate",
            [strings(&generate), vec![out("pose-generate").to_str().unwrap().to_string()]].concat(),
        ));
    }
    for (name, args) in &cases {
        let out = out(name);
        let lock = hold_lock(&out);
        let o = wiberg(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && o.status.code() != Some(FAULT_EXIT), "{name}: {:?} {stderr}", o.status);
        let expected = format!("another wiberg process (pid {}) is writing to {}", std::process::id(), out.display());
        assert!(stderr.contains(&expected), "{name}: expected `{expected}` in: {stderr}");
        assert_eq!(listing(&out), [LOCK_FILE], "{name}: wrote while locked out");
        drop(lock);
        run_ok_once_unlocked(args, &expected);
        let after = listing(&out);
        assert!(after.len() > 1 && after.contains(&LOCK_FILE.to_string()), "{name}: {after:?}");
        assert!(temporaries(&out).is_empty(), "{name}: {:?}", temporaries(&out));
    }
}
