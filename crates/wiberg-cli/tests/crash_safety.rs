//! Crash safety of the training commands `wiberg ransac` and `wiberg fusion train`, with real
//! child processes: a run is killed with SIGKILL at random moments (seeded), resumed with
//! `--resume` each time, and must end with exactly the results of an uninterrupted run
//! (timing fields aside). Also: a resume with other arguments or without a state file is a
//! clear error, and leftovers of a write cut short by a kill are ignored and tidied away.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn wiberg(args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wiberg"));
    c.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
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

/// Runs and expects failure; returns stderr.
fn run_err(args: &[String]) -> String {
    let out = wiberg(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{args:?} should fail");
    stderr
}

/// SIGKILLs `child` unless it has already exited (then it must have succeeded); returns
/// whether it was killed while running.
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

/// The uninterrupted reference takes `reference`; the interrupted run is killed `kills`
/// times at random moments: first after its state file appeared plus a random delay, then
/// each resumed process after a random delay. Before the first resume, `before_resume` may
/// check things against the state left behind. Finally resumed to the end.
fn kill_and_resume(
    args: impl Fn(&str) -> Vec<String>,
    state: &Path,
    reference: Duration,
    kills: usize,
    seed: u64,
    before_resume: impl FnOnce(),
) -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let child = wiberg(&args("1")).spawn().unwrap();
    let started = Instant::now();
    let mut child = Some(child);
    while !state.exists() {
        let c = child.as_mut().unwrap();
        if let Some(status) = c.try_wait().unwrap() {
            panic!("the run ended ({status}) before its first checkpoint; make the test run longer");
        }
        assert!(started.elapsed() < 20 * reference + Duration::from_secs(60), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(reference.mul_f64(rng.random_range(0.0..0.3)));
    let mut killed = usize::from(kill(child.take().unwrap()));
    assert!(state.exists(), "a kill left no state file");
    before_resume();
    let resume = |threads: &str| {
        let mut v = args(threads);
        v.push("--resume".into());
        v
    };
    for k in 1..kills {
        // Alternate the thread count: the results must not depend on it.
        let child = wiberg(&resume(&(1 + k % 2).to_string())).spawn().unwrap();
        std::thread::sleep(reference.mul_f64(rng.random_range(0.15..0.5)));
        killed += usize::from(kill(child));
        if !state.exists() {
            // The process finished before the kill (the state is removed at the end).
            return killed;
        }
    }
    run_ok(&resume("2"));
    killed
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

/// Files left in `dir` by an interrupted write (`.name.tmp<pid>...`).
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".tmp"))
        .collect()
}

fn plant_torn_temporary(state: &Path) -> PathBuf {
    let name = state.file_name().unwrap().to_string_lossy().to_string();
    // The temporary-name pattern `.<name>.tmp<pid>.<ext>`; 4242424 is above the largest
    // process id Linux hands out (2^22): a dead writer.
    let torn = state.with_file_name(format!(".{name}.tmp4242424.json"));
    std::fs::write(&torn, b"{\"format\": \"wiberg ransac tra").unwrap();
    torn
}

#[test]
fn ransac_killed_and_resumed_ends_exactly_like_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let common = [
        "ransac",
        "--iterations",
        "1500",
        "--runs",
        "2",
        "--report-every",
        "50",
        "--checkpoint-every",
        "50",
        "--seed",
        "3",
    ];
    let args = |out: &Path, threads: &str| {
        let mut v = strings(&common);
        v.extend(strings(&["--out", out.to_str().unwrap(), "--threads", threads]));
        v
    };
    let reference = run_ok(&args(&a, "2"));
    let state = b.join("ransac-state.json");
    let stale = std::cell::Cell::new(None);
    let killed = kill_and_resume(
        |t| args(&b, t),
        &state,
        reference,
        3,
        7,
        || {
            // A resume with other settings is refused and names them; the state stays usable.
            let mut other = args(&b, "1");
            other.extend(strings(&["--resume", "--lr", "0.25"]));
            let err = run_err(&other);
            assert!(err.contains("other settings") && err.contains("lr 0.5 (state) vs 0.25 (now)"), "{err}");
            // A torn temporary file of a kill during a write is never read, and is removed.
            stale.set(Some(plant_torn_temporary(&state)));
        },
    );
    eprintln!("{killed} of 3 processes killed while running");
    assert!(killed >= 1, "no process was killed while running");
    assert!(!stale.take().unwrap().exists(), "the torn temporary file was not removed");
    assert!(!state.exists(), "the state file outlived the finished run");
    assert!(temporaries(&b).is_empty(), "{:?}", temporaries(&b));

    // iterations.csv: equal apart from the last column (micros, the timing).
    let csv = |d: &Path| -> Vec<String> {
        let text = String::from_utf8(read(&d.join("iterations.csv"))).unwrap();
        text.lines().map(|l| l.rsplit_once(',').unwrap().0.to_string()).collect()
    };
    let (ca, cb) = (csv(&a), csv(&b));
    assert_eq!(ca.len(), 1 + 2 * 3 * 1500);
    assert!(ca == cb, "iterations.csv differs");
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
    assert_eq!(sa, sb, "summary.json differs");
    assert!(sa["summary"]["per_method"][0]["final_sigma"].is_number());
    for fig in ["figure1.png", "energy.png"] {
        let (fa, fb) = (a.join(fig), b.join(fig));
        assert_eq!(fa.exists(), fb.exists(), "{fig}");
        if fa.exists() {
            assert!(read(&fa) == read(&fb), "{fig} differs");
        }
    }

    // No state: a clear error, not a silent fresh start.
    let mut again = args(&b, "1");
    again.push("--resume".into());
    let err = run_err(&again);
    assert!(err.contains("no training state") && err.contains("without --resume"), "{err}");
}

#[test]
fn fusion_killed_and_resumed_ends_exactly_like_an_uninterrupted_run() {
    use wiberg_cli::fusion::generate::{generate, GenerateConfig};
    use wiberg_cli::fusion::vot::write_dataset;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let set = generate(&GenerateConfig { sequences: 6, trackers: 24, seed: 5, mean_frames: 150.0 }, || {}).0;
    write_dataset(&data, &set).unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let args = |out: &Path, threads: &str| {
        strings(&[
            "fusion",
            "train",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "4",
            "--batch",
            "16",
            "--checkpoint-every",
            "2",
            "--threads",
            threads,
        ])
    };
    let reference = run_ok(&args(&a, "2"));
    let state = b.join("fusion-state.json");
    let stale = std::cell::Cell::new(None);
    let killed = kill_and_resume(
        |t| args(&b, t),
        &state,
        reference,
        3,
        11,
        || {
            let mut other = args(&b, "1");
            other.extend(strings(&["--resume", "--lr", "0.01"]));
            let err = run_err(&other);
            assert!(err.contains("other settings") && err.contains("lr 0.02 (state) vs 0.01 (now)"), "{err}");
            stale.set(Some(plant_torn_temporary(&state)));
        },
    );
    eprintln!("{killed} of 3 processes killed while running");
    assert!(killed >= 1, "no process was killed while running");
    assert!(!stale.take().unwrap().exists(), "the torn temporary file was not removed");
    assert!(!state.exists(), "the state file outlived the finished run");
    assert!(temporaries(&b).is_empty(), "{:?}", temporaries(&b));

    for f in [
        "params_ours.json",
        "params_implicit.json",
        "table.csv",
        "table.txt",
        "table.json",
        "split_frames_seed0.txt",
        "figure2.png",
    ] {
        assert!(read(&a.join(f)) == read(&b.join(f)), "{f} differs");
    }
    let timing = ["timing", "seconds", "cpu_seconds"];
    let (ta, tb) = (without(json(&a.join("training.json")), &timing), without(json(&b.join("training.json")), &timing));
    assert_eq!(ta, tb, "training.json differs");
    assert_eq!(ta["ours"]["epochs"].as_array().unwrap().len(), 4);

    // Other data under the same settings is refused too (the state holds a fingerprint).
    let c = dir.path().join("c");
    let other_set = generate(&GenerateConfig { sequences: 6, trackers: 24, seed: 6, mean_frames: 150.0 }, || {}).0;
    let child = wiberg(&args(&c, "2")).spawn().unwrap();
    let started = Instant::now();
    let c_state = c.join("fusion-state.json");
    while !c_state.exists() && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2));
    }
    kill(child);
    if c_state.exists() {
        write_dataset(&data, &other_set).unwrap();
        let mut resume = args(&c, "2");
        resume.push("--resume".into());
        let err = run_err(&resume);
        assert!(err.contains("data-fingerprint"), "{err}");
    }
    let mut again = args(&b, "1");
    again.push("--resume".into());
    let err = run_err(&again);
    assert!(err.contains("no training state"), "{err}");
}
