//! Integration tests of `wiberg ransac`: one sample's solve (`ransac solve`) against the
//! closed form, and the command's output and handling of bad arguments and files. (Reproducibility and
//! checkpoints are tested inside the crate, `src/ransac/tests.rs`; the solve's derivative
//! against finite differences in `wiberg-models`.)

use std::process::Command;
use wiberg_models::ransac::sampling::{draw, run_rng, Protocol};

fn wiberg(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wiberg")).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn solve_prints_one_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("points.txt");
    let points = draw(Protocol::Paper, &mut run_rng(9, 0)).points;
    let text: Vec<String> = points.iter().map(|p| p.to_string()).collect();
    std::fs::write(&file, text.join(",\n")).unwrap();
    let (ok, stdout, stderr) =
        wiberg(&["ransac", "solve", "--points", file.to_str().unwrap(), "--sigma", "2.5", "--damping", "guarded"]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let t = v["t_star"].as_f64().unwrap();
    assert!(points.iter().any(|p| (p - t).abs() < 5.0));
    assert!(v["dt_dsigma"].as_f64().unwrap().is_finite());
    assert!(v["energy"].as_f64().unwrap() < -1.0);
    assert_eq!(v["report"]["polished"], serde_json::Value::Bool(true));
    assert!(v["report"]["diagnostics"]["shift"].as_f64().unwrap() >= 0.1);
    // K = 0 and no polish: the start point itself, one of the points.
    let (ok, stdout, _) = wiberg(&[
        "ransac",
        "solve",
        "--points",
        file.to_str().unwrap(),
        "--sigma",
        "2.5",
        "--lbfgs-iterations",
        "0",
        "--no-polish",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let t = v["t_star"].as_f64().unwrap();
    assert!(points.contains(&t), "{t}");
}

#[test]
fn cli_rejects_bad_arguments_and_files_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    for (args, expect) in [
        (vec!["--iterations", "0"], "positive whole number"),
        (vec!["--iterations", "-5"], "positive whole number"),
        (vec!["--iterations", "many"], "positive whole number"),
        (vec!["--lambda", "-0.1"], "greater than 0"),
        (vec!["--lambda", "0"], "greater than 0"),
        (vec!["--runs", "0"], "positive whole number"),
        (vec!["--methods", "newton"], "invalid value"),
        (vec!["--momentum", "0.9"], "--optimizer sgd"),
        (vec!["--optimizer", "sgd", "--momentum", "1.5"], "[0, 1)"),
    ] {
        let mut argv = vec!["ransac", "--out", out];
        argv.extend(args.iter().copied());
        let (ok, _, stderr) = wiberg(&argv);
        assert!(!ok, "{args:?} accepted");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let missing = dir.path().join("missing.txt");
    for (file, expect) in [
        (missing.to_str().unwrap().to_string(), "cannot read points file"),
        (write("empty.txt", "\n  \n"), "no points"),
        (write("words.txt", "1.0\n2.0 3.0\nthree\n"), "line 3: 'three' is not a number"),
        (write("nan.txt", "1.0, NaN\n"), "line 1: 'NaN' is not a finite number"),
    ] {
        let (ok, _, stderr) = wiberg(&["ransac", "solve", "--points", &file, "--sigma", "1"]);
        assert!(!ok, "{file} accepted");
        assert!(stderr.contains(expect), "{file}: {stderr}");
    }
    let good = write("good.txt", "1 2 3");
    for (args, expect) in [
        (vec!["--sigma", "0"], "non-zero"),
        (vec!["--sigma", "nan"], "non-zero"),
        (vec!["--sigma", "1", "--lambda", "-1"], "greater than 0"),
    ] {
        let mut argv = vec!["ransac", "solve", "--points", &good];
        argv.extend(args.iter().copied());
        let (ok, _, stderr) = wiberg(&argv);
        assert!(!ok && stderr.contains(expect), "{args:?}: {stderr}");
    }
}

#[test]
fn short_run_writes_csv_summary_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("res");
    let (ok, stdout, stderr) = wiberg(&[
        "ransac",
        "--iterations",
        "300",
        "--report-every",
        "100",
        "--out",
        out.to_str().unwrap(),
        "--threads",
        "2",
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("Final (300 iterations") && stdout.contains("us/iter"), "{stdout}");
    let csv = std::fs::read_to_string(out.join("iterations.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3 * 300);
    assert!(csv
        .lines()
        .next()
        .unwrap()
        .starts_with("run,iteration,method,sigma,loss,grad,t_star,inner_iterations,converged,negative_curvature"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let methods = summary["summary"]["per_method"].as_array().unwrap();
    assert_eq!(methods.len(), 3);
    for m in methods {
        assert!(m["median_us_per_iteration"].as_f64().unwrap() > 0.0);
        assert!(m["final_mean_loss"].as_f64().unwrap().is_finite());
    }
    if stderr.contains("figures not drawn") {
        eprintln!("note: figures skipped on this machine: {stderr}");
    } else {
        for f in ["figure1.png", "energy.png"] {
            let bytes = std::fs::read(out.join(f)).unwrap();
            assert!(bytes.len() > 10_000 && bytes.starts_with(b"\x89PNG"), "{f}");
        }
    }
}

/// `E(t) = -sum_i exp(-(x_i - t)^2 / sigma^2)`: its second derivative in t and the mixed
/// derivative d^2E/(dt dsigma), written out by hand (no library code), summed in the points'
/// order. Returns (H, M).
fn closed_form_h_m(points: &[f64], t: f64, sigma: f64) -> (f64, f64) {
    let (s2, s3) = (sigma * sigma, sigma * sigma * sigma);
    let (mut h, mut m) = (0.0, 0.0);
    for &x in points {
        let r = x - t;
        let k = (-(r * r) / s2).exp();
        // d/dt of -k * 2r/s^2, and d/dsigma of the same.
        h -= k * (4.0 * r * r / (s2 * s2) - 2.0 / s2);
        m -= k * (4.0 * r * r * r / (s3 * s2) - 4.0 * r / s3);
    }
    (h, m)
}

/// `wiberg ransac solve --lbfgs-iterations 0` (best point and polish only: the polish has not
/// converged) returns exactly `-M(t*) / (H(t*) + s)` at the *returned* t*, for every damping;
/// `--linearization polish-start` returns the polish start's instead, which differs.
#[test]
fn solve_without_lbfgs_equals_the_closed_form_at_the_returned_t_star() {
    let dir = tempfile::tempdir().unwrap();
    let lambda = 0.1;
    let mut rng = run_rng(11, 0);
    let mut far_from_start = 0;
    for sample in 0..4 {
        let points = draw(Protocol::Paper, &mut rng).points;
        let file = dir.path().join(format!("points{sample}.txt"));
        let text: Vec<String> = points.iter().map(|p| format!("{p:?}")).collect();
        std::fs::write(&file, text.join("\n")).unwrap();
        for sigma in [2.0, 5.0] {
            for method in ["implicit", "trust-region", "guarded"] {
                let run = |linearization: &str| {
                    let sigma_arg = format!("{sigma}");
                    let (ok, stdout, stderr) = wiberg(&[
                        "ransac",
                        "solve",
                        "--points",
                        file.to_str().unwrap(),
                        "--sigma",
                        &sigma_arg,
                        "--damping",
                        method,
                        "--lbfgs-iterations",
                        "0",
                        "--linearization",
                        linearization,
                    ]);
                    assert!(ok, "{stderr}");
                    serde_json::from_str::<serde_json::Value>(stdout.trim()).unwrap()
                };
                let v = run("at-solution");
                let t = v["t_star"].as_f64().unwrap();
                let (h, m) = closed_form_h_m(&points, t, sigma);
                let shift = match method {
                    "implicit" => 0.0,
                    "trust-region" => lambda,
                    _ => lambda + (-h).max(0.0),
                };
                let expected = -m / (h + shift);
                let got = v["dt_dsigma"].as_f64().unwrap();
                assert!(
                    (got - expected).abs() <= 1e-12 * expected.abs(),
                    "sample {sample}, sigma {sigma}, {method}: {got} vs closed form {expected}"
                );
                assert!((v["report"]["diagnostics"]["min_eigenvalue"].as_f64().unwrap() - h).abs() <= 1e-12 * h.abs());
                // The polish start is the seed point; its derivative is another number unless
                // the polish barely moved.
                let old = run("polish-start");
                assert_eq!(old["t_star"], v["t_star"], "the forward pass does not depend on the linearisation");
                let seed = points[v["report"]["seed_index"].as_u64().unwrap() as usize];
                let (h0, m0) = closed_form_h_m(&points, seed, sigma);
                let shift0 = match method {
                    "implicit" => 0.0,
                    "trust-region" => lambda,
                    _ => lambda + (-h0).max(0.0),
                };
                let expected0 = -m0 / (h0 + shift0);
                let got0 = old["dt_dsigma"].as_f64().unwrap();
                assert!((got0 - expected0).abs() <= 1e-12 * expected0.abs(), "{got0} vs {expected0}");
                if (got0 - got).abs() > 1e-3 * got.abs() {
                    far_from_start += 1;
                }
            }
        }
    }
    assert!(far_from_start > 0, "no sample where the two linearisations differ: the test shows nothing");
}
