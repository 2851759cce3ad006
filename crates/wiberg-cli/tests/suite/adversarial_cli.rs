//! Adversarial inputs for every command: NaN / infinities / huge / tiny values in
//! every input file and numeric argument, empty and truncated files, wrong shapes and dtypes,
//! zero and negative widths, identical points, a single point, 10^6 points. Each must end in
//! a clear error (the message names the problem and the file/line or flag) or a correct,
//! finite answer: never a panic, a hang, or a NaN in the results.
//!
//! Commands run as the real binary (`CARGO_BIN_EXE_wiberg`, so argument parsing and error
//! printing are covered). The file readers' own tests, in-process, are in `wiberg-models`
//! (`tests/suite/adversarial.rs`).

use crate::common;
use crate::common::{npy_bytes, pose_arrays, write_pose_dir};

use std::path::{Path, PathBuf};
use std::process::Command;
use wiberg_models::fusion::generate::{generate, GenerateConfig};
use wiberg_models::fusion::vot::{result_path, Dataset};

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn wiberg(args: &[&str]) -> Outcome {
    let out = Command::new(env!("CARGO_BIN_EXE_wiberg")).args(args).output().expect("running the wiberg binary");
    let o = Outcome {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    // A panic exits with 101 and prints "panicked"; a clean error exits with 1 or 2 (clap).
    assert!(!o.stderr.contains("panicked") && out.status.code() != Some(101), "{args:?} panicked: {}", o.stderr);
    o
}

/// The command fails, and its message contains every one of `expect`.
fn fails_with(args: &[&str], expect: &[&str]) {
    let o = wiberg(args);
    assert!(!o.ok, "{args:?} was accepted: {}", o.stdout);
    for e in expect {
        assert!(o.stderr.contains(e), "{args:?}: expected `{e}` in the error:\n{}", o.stderr);
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

// ---------------------------------------------------------------- ransac solve

/// `ransac solve` output: t*, dt*/dsigma (None when refused, with a reason), energy.
fn solve_json(o: &Outcome) -> (f64, Option<f64>, f64) {
    assert!(o.ok, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).expect("one JSON object");
    let t = v["t_star"].as_f64().expect("t_star is a number");
    let e = v["energy"].as_f64().expect("energy is a number");
    let d = v["dt_dsigma"].as_f64();
    assert!(t.is_finite() && e.is_finite(), "{}", o.stdout);
    assert!(d.is_some() || v["derivative_error"].is_string(), "no derivative and no reason: {}", o.stdout);
    assert!(d.is_none_or(f64::is_finite));
    (t, d, e)
}

fn solve(points: &str, extra: &[&str]) -> Outcome {
    let mut argv = vec!["ransac", "solve", "--points", points];
    argv.extend_from_slice(extra);
    wiberg(&argv)
}

#[test]
fn ransac_points_files_non_finite_malformed_empty_truncated() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, expect) in [
        ("nan.txt", "1 2\n3 nan\n", vec!["line 2", "'nan' is not a finite number"]),
        ("inf.txt", "inf\n", vec!["line 1", "'inf' is not a finite number"]),
        ("neginf.txt", "1, 2, -Infinity", vec!["line 1", "'-Infinity' is not a finite number"]),
        ("overflow.txt", "1\n\n1e309\n", vec!["line 3", "'1e309' is not a finite number"]),
        ("empty.txt", "", vec!["no points"]),
        ("blank.txt", " \n\t\n,,\n", vec!["no points"]),
        ("comments.txt", "# only a comment\n", vec!["no points"]),
        ("truncated.txt", "1.5, 2.25, 3.1e", vec!["line 1", "'3.1e' is not a number"]),
        ("hex.txt", "0x10", vec!["line 1", "'0x10' is not a number"]),
        ("binary.txt", "\u{1}\u{2}\u{3}", vec!["line 1", "is not a number"]),
    ] {
        let path = write(dir.path(), name, text);
        let mut expect = expect;
        expect.push(name);
        fails_with(&["ransac", "solve", "--points", &path, "--sigma", "1"], &expect);
    }
    // Not UTF-8 at all.
    let bin = dir.path().join("bytes.txt");
    std::fs::write(&bin, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    fails_with(&["ransac", "solve", "--points", bin.to_str().unwrap(), "--sigma", "1"], &["cannot read points file"]);
}

#[test]
fn ransac_degenerate_point_sets_give_exact_answers() {
    let dir = tempfile::tempdir().unwrap();
    for damping in ["implicit", "trust-region", "guarded"] {
        // A single point: t* is the point and does not move with sigma.
        let single = write(dir.path(), "single.txt", "4.25");
        let (t, d, e) = solve_json(&solve(&single, &["--sigma", "2", "--damping", damping]));
        assert_eq!(t, 4.25);
        assert_eq!(d, Some(0.0));
        assert_eq!(e, -1.0);
        // 110 identical points: the same, energy -110.
        let same = write(dir.path(), "same.txt", &vec!["-7.5"; 110].join("\n"));
        let (t, d, e) = solve_json(&solve(&same, &["--sigma", "0.3", "--damping", damping]));
        assert_eq!((t, d), (-7.5, Some(0.0)));
        assert!((e + 110.0).abs() < 1e-9, "{e}");
    }
    // Huge and tiny coordinates: exact answers at the scale of the data.
    let huge = write(dir.path(), "huge.txt", "1e300 1e300 1e300 -1e300");
    let o = solve(&huge, &["--sigma", "1"]);
    let (t, d, _) = solve_json(&o);
    assert_eq!(t, 1e300);
    // dt*/dsigma is 0 here, but the far kernel's term is 0 * inf in floating point: the
    // library refuses it (typed error, reported in the JSON) rather than print a NaN.
    assert!(d == Some(0.0) || o.stdout.contains("non-finite value in gradient dl/dw"), "{}", o.stdout);
    let max = write(dir.path(), "max.txt", "1.7976931348623157e308, -1.7976931348623157e308, 1.7976931348623157e308");
    // Points at +-f64::MAX: the distance between the two ends overflows, but the energy's sums
    // leave the far kernel out (beyond the cut-off), so the answer is exact: the pair at +MAX,
    // energy -2, and a zero derivative.
    let (t, d, e) = solve_json(&solve(&max, &["--sigma", "1"]));
    assert_eq!((t, e, d), (f64::MAX, -2.0, Some(0.0)));
    let tiny = write(dir.path(), "tiny.txt", "1e-300 2e-300 4.9e-324 -1e-310");
    let (t, d, _) = solve_json(&solve(&tiny, &["--sigma", "1"]));
    assert!(t.abs() < 1e-290, "{t}");
    assert!(d.unwrap().abs() < 1e-290);
}

#[test]
fn ransac_solve_numeric_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let pts = write(dir.path(), "pts.txt", "0 0.5 1 1.5 10 20 -30");
    for bad in ["nan", "NaN", "inf", "-inf", "1e309", "0", "-0"] {
        fails_with(&["ransac", "solve", "--points", &pts, "--sigma", bad], &["--sigma", "non-zero"]);
    }
    for bad in ["", "abc", "1,5"] {
        fails_with(&["ransac", "solve", "--points", &pts, "--sigma", bad], &["--sigma", "must be a number"]);
    }
    for bad in ["nan", "inf", "1e309", "0", "-1", "-1e-300"] {
        fails_with(
            &["ransac", "solve", "--points", &pts, "--sigma", "1", "--lambda", bad],
            &["--lambda", "greater than 0"],
        );
    }
    // A negative width is a valid parametrisation (only sigma^2 enters): same t*, dt*/dsigma flips.
    let (tp, dp, _) = solve_json(&solve(&pts, &["--sigma", "1.5"]));
    let (tn, dn, _) = solve_json(&solve(&pts, &["--sigma", "-1.5"]));
    assert_eq!(tp, tn);
    assert!((dp.unwrap() + dn.unwrap()).abs() <= 1e-12 * (1.0 + dp.unwrap().abs()));
    // Huge width: a flat energy; t* stays finite (the polish moves it to the mean at most).
    let (t, _, _) = solve_json(&solve(&pts, &["--sigma", "1e300"]));
    assert!((-30.0..=20.0).contains(&t), "{t}");
    // Tiny widths: 1 / sigma^2 overflows (sigma below about 1e-154), the energy is NaN: an
    // error naming sigma.
    for tiny in ["1e-300", "5e-324", "1e-170"] {
        fails_with(
            &["ransac", "solve", "--points", &pts, "--sigma", tiny],
            &[&format!("sigma = {:e}", tiny.parse::<f64>().unwrap()), "out of range"],
        );
    }
    // At 1e-100 only the seed's own kernel is left (every other exponent underflows) and the
    // curvature there, 2 / sigma^2 = 2e200, is finite: t* is the seed, with no derivative.
    let (t, d, _) = solve_json(&solve(&pts, &["--sigma", "1e-100"]));
    assert_eq!((t, d), (0.0, Some(0.0)));
    let (t, _, _) = solve_json(&solve(&pts, &["--sigma", "1e-50"]));
    assert!([0.0, 0.5, 1.0, 1.5, 10.0, 20.0, -30.0].contains(&t), "{t}");
    // lambda huge and tiny: finite; huge lambda makes the derivative vanish.
    let (_, d, _) = solve_json(&solve(&pts, &["--sigma", "1", "--lambda", "1e300"]));
    assert!(d.unwrap().abs() < 1e-290);
    solve_json(&solve(&pts, &["--sigma", "1", "--lambda", "1e-300", "--damping", "guarded"]));
    // L-BFGS iterations: a count.
    fails_with(
        &["ransac", "solve", "--points", &pts, "--sigma", "1", "--lbfgs-iterations=-1"],
        &["--lbfgs-iterations"],
    );
    solve_json(&solve(&pts, &["--sigma", "1", "--lbfgs-iterations", "100000"]));
}

#[test]
fn ransac_solve_a_million_points() {
    // 10^6 points: 999,990 uniform on [-1e4, 1e4] (deterministic), 10 at 1234.5 +- 1e-3.
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::with_capacity(12_000_000);
    let mut state = 12345u64;
    for _ in 0..999_990 {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        text.push_str(&format!("{:.4}\n", -1e4 + 2e4 * u));
    }
    for k in 0..10 {
        text.push_str(&format!("{}\n", 1234.5 + (k as f64 - 4.5) * 2e-4));
    }
    let path = write(dir.path(), "million.txt", &text);
    let o = solve(&path, &["--sigma", "0.01"]);
    let (t, d, _) = solve_json(&o);
    assert!((t - 1234.5).abs() < 1e-3, "t* = {t}");
    assert!(d.is_some());
    let v: serde_json::Value = serde_json::from_str(o.stdout.trim()).unwrap();
    assert_eq!(v["num_points"].as_u64(), Some(1_000_000));
}

// ---------------------------------------------------------------- ransac training

#[test]
fn ransac_training_numeric_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let base = ["ransac", "--iterations", "20", "--report-every", "10", "--threads", "1", "--out", out];
    let run = |extra: &[&str]| {
        let mut argv = base.to_vec();
        argv.extend_from_slice(extra);
        wiberg(&argv)
    };
    for (flag, bad, expect) in [
        ("--lr", "nan", "greater than 0"),
        ("--lr", "inf", "greater than 0"),
        ("--lr", "0", "greater than 0"),
        ("--lr", "-0.5", "greater than 0"),
        ("--lr", "1e309", "greater than 0"),
        ("--lambda", "nan", "greater than 0"),
        ("--lambda", "-inf", "greater than 0"),
        ("--initial-sigma", "nan", "non-zero"),
        ("--initial-sigma", "inf", "non-zero"),
        ("--initial-sigma", "0", "non-zero"),
        ("--momentum", "nan", ""),
        ("--runs", "2.5", "whole number"),
        ("--runs", "-1", "whole number"),
    ] {
        let mut extra = vec![flag, bad];
        if flag == "--momentum" {
            extra.extend(["--optimizer", "sgd"]);
        }
        let o = run(&extra);
        assert!(!o.ok, "{flag} {bad} accepted");
        assert!(o.stderr.contains(flag) || o.stderr.contains(expect), "{flag} {bad}: {}", o.stderr);
        assert!(expect.is_empty() || o.stderr.contains(expect), "{flag} {bad}: {}", o.stderr);
    }
    // ASGD with lambd * lr >= 2 would diverge: refused up front, naming the reason.
    fails_with(&[&base[..], &["--lr", "1e308"]].concat(), &["lambd * lr < 2"]);
    // Values that are legal but extreme: a clear error or a finite summary.
    for extra in [
        vec!["--initial-sigma", "1e300"],
        vec!["--initial-sigma", "-3"],
        vec!["--initial-sigma", "1e-300"],
        vec!["--lambda", "1e300"],
        vec!["--lambda", "1e-300"],
        vec!["--optimizer", "sgd", "--lr", "1e300"],
        vec!["--optimizer", "sgd", "--lr", "1e-300", "--momentum", "0"],
    ] {
        let o = run(&extra);
        if o.ok {
            let summary = std::fs::read_to_string(Path::new(out).join("summary.json")).unwrap();
            assert!(!summary.contains("NaN"), "{extra:?}: {summary}");
            let v: serde_json::Value = serde_json::from_str(&summary).unwrap();
            for m in v["summary"]["per_method"].as_array().unwrap() {
                assert!(m["final_sigma"].as_f64().is_some_and(f64::is_finite), "{extra:?}: {m}");
                // No loss (null) only when every iteration's failure is counted: not silent.
                let failures: u64 =
                    ["singular", "non_finite", "other_errors"].iter().map(|k| m[k].as_u64().unwrap()).sum();
                assert!(m["final_mean_loss"].as_f64().is_some_and(f64::is_finite) || failures > 0, "{extra:?}: {m}");
            }
        } else {
            assert!(o.stderr.starts_with("error:") && o.stderr.len() > 20, "{extra:?}: {}", o.stderr);
        }
    }
}

// ---------------------------------------------------------------- fusion

fn fusion_data(dir: &Path) -> Dataset {
    let data = generate(&GenerateConfig { sequences: 2, trackers: 3, seed: 5, mean_frames: 40.0 }, || {}).0;
    common::write_vot(dir, &data);
    data
}

/// Replaces line `line` (1-based) of `path` with `text`.
fn set_line(path: &Path, line: usize, text: &str) {
    let old = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<&str> = old.lines().collect();
    lines[line - 1] = text;
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn fusion_zero_width_boxes_train_to_a_finite_table() {
    // Zero-size ground truth and tracker boxes are legal (VOT has some): training skips
    // them, evaluation scores them, and every number in the table is finite.
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = fusion_data(&data_dir);
    let seq = &data.sequences[0].name;
    set_line(&data_dir.join("sequences").join(seq).join("groundtruth.txt"), 2, "10,10,0,0");
    set_line(&result_path(&data_dir, &data.trackers[1], seq), 3, "5,5,0,7");
    let out = dir.path().join("run");
    let o = wiberg(&[
        "fusion",
        "train",
        "--data",
        data_dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch",
        "16",
        "--no-implicit",
        "--threads",
        "1",
    ]);
    assert!(o.ok, "{}", o.stderr);
    let table = std::fs::read_to_string(out.join("table.json")).unwrap();
    assert!(!table.contains("NaN") && !table.contains("null") && !table.contains("inf"), "{table}");
    let v: serde_json::Value = serde_json::from_str(&table).unwrap();
    let mut numbers = 0;
    let mut stack = vec![&v];
    while let Some(x) = stack.pop() {
        match x {
            serde_json::Value::Number(n) => {
                assert!(n.as_f64().is_some_and(f64::is_finite));
                numbers += 1;
            }
            serde_json::Value::Array(a) => stack.extend(a),
            serde_json::Value::Object(o) => stack.extend(o.values()),
            _ => {}
        }
    }
    assert!(numbers > 3, "{table}");
}

#[test]
fn fusion_numeric_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    fusion_data(&data_dir);
    let data = data_dir.to_str().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    for (flag, bad, expect) in [
        ("--train-fraction", "nan", "--train-fraction"),
        ("--train-fraction", "0", "--train-fraction"),
        ("--train-fraction", "1", "--train-fraction"),
        ("--train-fraction", "inf", "--train-fraction"),
        ("--train-fraction=-0.5", "", "--train-fraction"),
        ("--width0", "nan", "--width0"),
        ("--width0", "0", "--width0"),
        ("--width0=-1", "", "--width0"),
        ("--width0", "inf", "--width0"),
        ("--bins", "0", "--bins"),
        ("--lambda", "nan", "--lambda"),
        ("--lambda", "0", "--lambda"),
        ("--lambda=-1", "", "--lambda"),
        ("--lambda", "inf", "--lambda"),
        ("--lr", "nan", "learning rate"),
        ("--lr", "0", "learning rate"),
        ("--lr=-1", "", "learning rate"),
        ("--lr", "inf", "learning rate"),
        ("--lr", "1e309", "learning rate"),
        ("--epochs", "0", "--epochs"),
        ("--batch", "0", "--batch"),
        ("--epochs=-1", "", "--epochs"),
    ] {
        // (Negative values are written `--flag=-1`: fusion's flags do not take `--flag -1`.)
        let mut argv = vec!["fusion", "train", "--data", data, "--out", out, "--no-implicit", flag];
        if !bad.is_empty() {
            argv.push(bad);
        }
        fails_with(&argv, &[expect]);
    }
    let gen_out = dir.path().join("gen");
    let gen_out = gen_out.to_str().unwrap();
    for bad in ["nan", "0", "-5", "inf"] {
        fails_with(&["fusion", "generate", "--out", gen_out, &format!("--mean-frames={bad}")], &["--mean-frames"]);
    }
    for flag in ["--sequences", "--trackers"] {
        fails_with(&["fusion", "generate", "--out", gen_out, flag, "0"], &[flag]);
    }
    // A missing data folder names it.
    fails_with(&["fusion", "train", "--data", "/nonexistent/vot", "--out", out], &["/nonexistent/vot"]);
}

// ---------------------------------------------------------------- pose

#[test]
fn pose_commands_bad_data_and_numeric_arguments() {
    let Some(tome) = common::tome_dir() else { return };
    let tome = tome.to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data_dir: PathBuf = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let (d2, d3) = pose_arrays(8);
    let mut nan2 = d2.clone();
    nan2[[4, 1, 2, 0]] = f64::NAN;
    write_pose_dir(&data_dir, "Walk_1", &npy_bytes(&nan2), &npy_bytes(&d3));
    let data = data_dir.to_str().unwrap();
    fails_with(
        &["pose", "eval", "--data", data, "--checkpoint", &tome],
        &["Walk_1__joint_2d.npy", "non-finite value at index [4, 1, 2, 0]"],
    );
    // Huge detections: a clear error or finite figures.
    write_pose_dir(&data_dir, "Walk_1", &npy_bytes(&d2.mapv(|v| v * 1e300)), &npy_bytes(&d3));
    let o = wiberg(&["pose", "eval", "--data", data, "--checkpoint", &tome, "--json", "--threads", "1"]);
    if o.ok {
        assert!(!o.stdout.contains("NaN") && !o.stdout.contains("null"), "{}", o.stdout);
    } else {
        assert!(o.stderr.contains("Walk_1") || o.stderr.contains("finite"), "{}", o.stderr);
    }
    write_pose_dir(&data_dir, "Walk_1", &npy_bytes(&d2), &npy_bytes(&d3));
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut argv = vec![
            "pose",
            "train",
            "--data",
            data,
            "--checkpoint",
            &tome,
            "--out",
            out,
            "--max-batches",
            "1",
            "--every",
            "1",
        ];
        argv.extend_from_slice(extra);
        argv.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    for (flag, bad, expect) in [
        ("--lambda", "nan", "--lambda"),
        ("--lambda=-1", "", "--lambda"),
        ("--lambda", "inf", "--lambda"),
        ("--lr", "nan", "learning rate"),
        ("--lr", "0", "learning rate"),
        ("--lr=-0.05", "", "learning rate"),
        ("--lr", "inf", "learning rate"),
        ("--batch", "0", "--batch"),
        ("--batch", "100", "fewer than one batch"),
    ] {
        let argv = if bad.is_empty() { train(&[flag]) } else { train(&[flag, bad]) };
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        fails_with(&argv, &[expect]);
    }
    fails_with(&["pose", "eval", "--data", data, "--checkpoint", &tome, "--every", "0"], &["--every"]);
}

#[test]
fn pose_generate_numeric_arguments() {
    let Some(tome) = common::tome_dir() else { return };
    let tome = tome.to_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gen");
    let out = out.to_str().unwrap();
    for bad in ["nan", "inf", "-1", "-inf"] {
        let flag = format!("--noise-scale={bad}");
        fails_with(&["pose", "generate", "--out", out, "--model-dir", &tome, &flag], &["--noise-scale"]);
    }
    assert!(!Path::new(out).exists(), "a refused run wrote {out}");
}
