//! What the user reads: the introduction, a row per method every block, the final tables,
//! the per-iteration CSV and `summary.json`.

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::Path;

use super::args::{ForwardMode, TrainConfig};
use super::training::{Event, IterRecord, MethodRun, Training};
use crate::common::readable_number;
use crate::common::{DampingMode, OptimizerKind};
use wiberg_models::ransac::sampling::Protocol;

/// `|dL/dsigma|` above this counts as a large gradient in the tables.
pub(crate) const LARGE_GRAD: f64 = 100.0;
/// A run "explodes" when `|dL/dsigma|` or `|sigma|` passes this.
pub(crate) const EXPLOSION: f64 = 1000.0;
/// The final loss is averaged over this many last iterations.
pub(crate) const FINAL_WINDOW: usize = 500;

/// A number in at most ~9 characters: fixed for ordinary magnitudes, scientific otherwise.
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return "-".to_string();
    }
    let a = x.abs();
    if a == 0.0 || (1e-3..1e5).contains(&a) {
        let decimals = if a >= 1000.0 {
            1
        } else if a >= 10.0 {
            2
        } else {
            3
        };
        format!("{x:.decimals$}")
    } else {
        format!("{x:.2e}")
    }
}

/// The median of the finite values, NaN (shown as `-`, written as null) when there is none.
fn median(v: Vec<f64>) -> f64 {
    wiberg_models::stats::median_finite(v).unwrap_or(f64::NAN)
}

fn mean_finite(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.filter(|x| x.is_finite()).fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

fn max_abs(v: impl Iterator<Item = f64>) -> f64 {
    v.filter(|x| x.is_finite()).fold(f64::NAN, |m, x| if m.is_nan() { x.abs() } else { m.max(x.abs()) })
}

/// Prints the introduction: what the experiment is and how it is configured.
pub(crate) fn print_intro(config: &TrainConfig, threads: usize, out: &Path) {
    let protocol = match config.protocol {
        Protocol::Paper => "paper: inlier centre m ~ U[-40,40], 10 inliers N(m,4^2), 100 outliers U[-40,40]",
        Protocol::Reference => "reference: 10 inliers N(2,4^2), 100 outliers U[-60,20]",
    };
    let forward = match config.forward {
        ForwardMode::Full => {
            format!("full: lowest-energy point, L-BFGS ({} it.), damped Newton polish", config.lbfgs_iterations)
        }
        ForwardMode::Reference => "reference: lowest-energy point, damped Newton polish (no L-BFGS)".to_string(),
    };
    let optimizer = match config.optimizer {
        OptimizerKind::Asgd => format!(
            "ASGD lr {} lambd {} alpha {} t0 {}",
            readable_number(config.lr),
            readable_number(config.asgd_lambd),
            readable_number(config.asgd_alpha),
            readable_number(config.asgd_t0)
        ),
        OptimizerKind::Sgd => {
            format!("SGD lr {} momentum {}", readable_number(config.lr), readable_number(config.momentum))
        }
        OptimizerKind::Adam => format!("Adam lr {}", readable_number(config.lr)),
    };
    let methods: Vec<String> = config
        .methods
        .iter()
        .map(|m| match m {
            DampingMode::Implicit => "implicit (H)".to_string(),
            DampingMode::TrustRegion => format!("trust-region (H + {} I)", readable_number(config.lambda)),
            DampingMode::Guarded => format!("guarded (H + max({0}, {0} - eig_min) I)", readable_number(config.lambda)),
        })
        .collect();
    println!("RANSAC / MLESAC: learning the kernel width sigma (Toso, Campbell & Russell 2019, Figure 1)");
    println!("  estimate   t* = argmin_t E(t), E(t) = sum_i -exp(-(x_i - t)^2 / sigma^2) over 110 points");
    println!("  loss       (t* - mean(inliers))^2, gradient dL/dsigma through dt*/dsigma");
    println!("  samples    {protocol}");
    println!("  forward    {forward}");
    println!("  methods    {}", methods.join(", "));
    println!("  optimiser  {optimizer}, sigma starts at {}", readable_number(config.initial_sigma));
    println!(
        "  runs       {} x {} iterations, seed {}, {} thread(s), output {}",
        config.runs,
        config.iterations,
        config.seed,
        threads,
        out.display()
    );
    println!();
}

/// Prints a row per method after every block of iterations.
pub(crate) struct BlockPrinter {
    methods: Vec<DampingMode>,
    runs: usize,
    report_every: usize,
    last: usize,
    header_done: bool,
}

impl BlockPrinter {
    /// A printer for this configuration.
    pub(crate) fn new(config: &TrainConfig) -> Self {
        BlockPrinter {
            methods: config.methods.clone(),
            runs: config.runs,
            report_every: config.report_every,
            last: 0,
            header_done: false,
        }
    }

    /// Continues after a resume at iteration `done`: the next row covers the iterations since
    /// the last multiple of `report_every`, as it would have without the interruption (the
    /// restored trajectories hold every record).
    pub(crate) fn resume_at(&mut self, done: usize) {
        self.last = done - done % self.report_every.max(1);
    }

    /// Prints the rows of the block that ended at iteration `done`.
    pub(crate) fn print(&mut self, trajectories: &[MethodRun], done: usize) {
        if !self.header_done {
            let sigma = if self.runs > 1 { "sigma (median)" } else { "sigma" };
            println!(
                "{:>6}  {:<13}{:>11}{:>15}{:>11}{:>10}{:>9}",
                "iter", "method", "mean loss", sigma, "max|grad|", "neg.curv", "skipped"
            );
            self.header_done = true;
        }
        for &m in &self.methods {
            let ts: Vec<&MethodRun> = trajectories.iter().filter(|t| t.method == m).collect();
            let block = |t: &&MethodRun| t.records[self.last..done].to_vec();
            let recs: Vec<IterRecord> = ts.iter().flat_map(block).collect();
            let loss = mean_finite(recs.iter().map(|r| r.loss));
            let sigma = median(ts.iter().map(|t| t.sigma).collect());
            let grad = max_abs(recs.iter().map(|r| r.grad));
            let neg = recs.iter().filter(|r| r.negative_curvature).count();
            let skipped = recs.iter().filter(|r| r.event != Event::None).count();
            println!(
                "{:>6}  {:<13}{:>11}{:>15}{:>11}{:>10}{:>9}",
                done,
                m.name(),
                num(loss),
                num(sigma),
                num(grad),
                neg,
                skipped
            );
        }
        self.last = done;
    }
}

/// Statistics of one trajectory (or of all runs of one method).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Stats {
    /// The method.
    pub(crate) method: DampingMode,
    /// Run index (None for the across-runs aggregate).
    pub(crate) run: Option<usize>,
    /// Number of runs aggregated.
    pub(crate) runs: usize,
    /// Mean loss over the last 500 iterations (mean over runs for the aggregate).
    pub(crate) final_mean_loss: f64,
    /// Smallest and largest per-run final mean loss.
    pub(crate) final_mean_loss_range: [f64; 2],
    /// Sigma after the last iteration (median over runs for the aggregate).
    pub(crate) final_sigma: f64,
    /// Median |sigma| over all iterations.
    pub(crate) median_abs_sigma: f64,
    /// Max |sigma| over all iterations.
    pub(crate) max_abs_sigma: f64,
    /// Max |dL/dsigma|.
    pub(crate) max_abs_grad: f64,
    /// Iterations with |dL/dsigma| > 100.
    pub(crate) iterations_grad_over_100: usize,
    /// Runs where |dL/dsigma| passed 1000.
    pub(crate) runs_grad_over_1000: usize,
    /// Runs where |sigma| passed 1000.
    pub(crate) runs_sigma_over_1000: usize,
    /// Iterations with negative curvature where the derivative was taken (not a minimum).
    pub(crate) negative_curvature: usize,
    /// Steps skipped for a singular Hessian.
    pub(crate) singular: usize,
    /// Steps skipped for a non-finite value.
    pub(crate) non_finite: usize,
    /// Steps skipped for another error.
    pub(crate) other_errors: usize,
    /// Median wall time of one training iteration (sample, forward, backward, update), us.
    pub(crate) median_us_per_iteration: f64,
    /// Total compute time of this method's iterations, seconds.
    pub(crate) compute_seconds: f64,
}

fn stats(method: DampingMode, run: Option<usize>, ts: &[&MethodRun]) -> Stats {
    let recs = || ts.iter().flat_map(|t| t.records.iter());
    let finals: Vec<f64> = ts
        .iter()
        .map(|t| {
            let start = t.records.len().saturating_sub(FINAL_WINDOW);
            mean_finite(t.records[start..].iter().map(|r| r.loss))
        })
        .collect();
    let finite_finals: Vec<f64> = finals.iter().copied().filter(|x| x.is_finite()).collect();
    let count = |f: &dyn Fn(&IterRecord) -> bool| recs().filter(|r| f(r)).count();
    Stats {
        method,
        run,
        runs: ts.len(),
        final_mean_loss: mean_finite(finals.iter().copied()),
        final_mean_loss_range: [
            finite_finals.iter().copied().fold(f64::NAN, f64::min),
            finite_finals.iter().copied().fold(f64::NAN, f64::max),
        ],
        final_sigma: median(ts.iter().map(|t| t.sigma).collect()),
        median_abs_sigma: median(recs().map(|r| r.sigma.abs()).collect()),
        max_abs_sigma: max_abs(recs().map(|r| r.sigma).chain(ts.iter().map(|t| t.sigma))),
        max_abs_grad: max_abs(recs().map(|r| r.grad)),
        iterations_grad_over_100: count(&|r| r.grad.abs() > LARGE_GRAD),
        runs_grad_over_1000: ts.iter().filter(|t| t.records.iter().any(|r| r.grad.abs() > EXPLOSION)).count(),
        runs_sigma_over_1000: ts
            .iter()
            .filter(|t| t.sigma.abs() > EXPLOSION || t.records.iter().any(|r| r.sigma.abs() > EXPLOSION))
            .count(),
        negative_curvature: count(&|r| r.negative_curvature),
        singular: count(&|r| r.event == Event::Singular),
        non_finite: count(&|r| r.event == Event::NonFinite),
        other_errors: count(&|r| r.event == Event::Error),
        median_us_per_iteration: median(recs().map(|r| r.micros).collect()),
        compute_seconds: recs().map(|r| r.micros).sum::<f64>() * 1e-6,
    }
}

/// Per-trajectory and per-method statistics.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    /// One entry per (run, method).
    pub(crate) per_run: Vec<Stats>,
    /// One entry per method, over all runs.
    pub(crate) per_method: Vec<Stats>,
    /// Wall time of the training loop, seconds.
    pub(crate) wall_seconds: f64,
    /// Sum of all iterations' times (all methods, all runs), seconds.
    pub(crate) compute_seconds: f64,
    /// Threads used.
    pub(crate) threads: usize,
    /// CPU time (user + system) of the training loop, seconds (when the platform reports it).
    pub(crate) cpu_seconds: Option<f64>,
    /// Sum over methods of median time per iteration x iterations x runs, seconds: the
    /// compute an unloaded machine would need (robust to preemption by other processes).
    pub(crate) median_compute_seconds: f64,
    /// The 1-minute load average when training ended (Linux), to judge the timings.
    pub(crate) load_average: Option<f64>,
}

/// Computes the summary of a training.
pub(crate) fn summarize(training: &Training) -> Summary {
    let per_run = training.trajectories.iter().map(|t| stats(t.method, Some(t.run), &[t])).collect();
    let per_method: Vec<Stats> = training
        .config
        .methods
        .iter()
        .map(|&m| {
            let ts: Vec<&MethodRun> = training.trajectories.iter().filter(|t| t.method == m).collect();
            stats(m, None, &ts)
        })
        .collect();
    let iterations = (training.config.iterations * training.config.runs) as f64;
    Summary {
        compute_seconds: per_method.iter().map(|s| s.compute_seconds).sum(),
        cpu_seconds: training.cpu_seconds,
        median_compute_seconds: per_method.iter().map(|s| s.median_us_per_iteration * 1e-6 * iterations).sum(),
        load_average: load_average(),
        per_run,
        per_method,
        wall_seconds: training.wall.as_secs_f64(),
        threads: training.threads,
    }
}

/// The 1-minute load average (Linux `/proc/loadavg`).
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn print_table(title: &str, rows: &[Stats], with_run: bool, across_runs: bool) {
    println!("{title}");
    let run_col = if with_run { format!("{:>4} ", "run") } else { String::new() };
    let explosions = if across_runs { format!("{:>15}", "runs >1e3 g/s") } else { String::new() };
    let header = format!(
        "{run_col}{:<13}{:>11}{:>10}{:>10}{:>11}{:>10}{}{:>9}{:>9}{:>11}{:>9}",
        "method", "loss(last", "median", "max", "max", "iters", explosions, "neg.", "singular", "non-finite", "us/iter"
    );
    let header2 = format!(
        "{}{:<13}{:>11}{:>10}{:>10}{:>11}{:>10}{}{:>9}{:>9}{:>11}{:>9}",
        if with_run { "     " } else { "" },
        "",
        "500 it.)",
        "|sigma|",
        "|sigma|",
        "|grad|",
        "|g|>100",
        if across_runs { format!("{:>15}", "") } else { String::new() },
        "curv.",
        "",
        "",
        "(median)"
    );
    println!("{header}");
    println!("{header2}");
    println!("{}", "-".repeat(header.len()));
    for s in rows {
        let run = match (with_run, s.run) {
            (true, Some(r)) => format!("{r:>4} "),
            (true, None) => format!("{:>4} ", "all"),
            _ => String::new(),
        };
        let expl = if across_runs {
            format!("{:>15}", format!("{} / {}", s.runs_grad_over_1000, s.runs_sigma_over_1000))
        } else {
            String::new()
        };
        println!(
            "{run}{:<13}{:>11}{:>10}{:>10}{:>11}{:>10}{expl}{:>9}{:>9}{:>11}{:>9}",
            s.method.name(),
            num(s.final_mean_loss),
            num(s.median_abs_sigma),
            num(s.max_abs_sigma),
            num(s.max_abs_grad),
            s.iterations_grad_over_100,
            s.negative_curvature,
            s.singular,
            s.non_finite + s.other_errors,
            format!("{:.1}", s.median_us_per_iteration)
        );
    }
}

/// Prints the final tables and the timing.
pub(crate) fn print_final(training: &Training, summary: &Summary) {
    let c = &training.config;
    println!();
    if c.runs == 1 {
        print_table(
            &format!("Final ({} iterations, seed {}):", c.iterations, c.seed),
            &summary.per_method,
            false,
            false,
        );
    } else {
        print_table(&format!("Per run ({} iterations each):", c.iterations), &summary.per_run, true, false);
        println!();
        print_table(
            &format!("Across {} runs (loss: mean of the runs' means; runs >1e3 g/s: runs where |grad| / |sigma| passed 1000):", c.runs),
            &summary.per_method,
            false,
            true,
        );
    }
    let iterations = c.iterations * c.runs * c.methods.len();
    println!();
    let cpu = summary.cpu_seconds.map(|s| format!("{s:.2} s CPU (user + system), ")).unwrap_or_default();
    let load = summary.load_average.map(|l| format!(", load average {l:.1}")).unwrap_or_default();
    println!(
        "Time: {iterations} training iterations in {:.2} s wall on {} thread(s){load}; {cpu}{:.2} s by the medians (us/iter x iterations).",
        summary.wall_seconds, summary.threads, summary.median_compute_seconds
    );
    let neg: usize = summary.per_method.iter().map(|s| s.negative_curvature).sum();
    if neg > 0 {
        println!(
            "Note: 'neg. curv.' counts samples with d2E/dt2 < 0 where dt*/dsigma was taken (a maximum or inflection, not a minimum);\n      there H + lambda can be ~0 and the trust-region derivative unbounded, the guarded shift keeps it <= |M| / lambda."
        );
    }
}

/// Writes one row per (run, method, iteration).
pub(crate) fn write_csv(training: &Training, path: &Path) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "run",
        "iteration",
        "method",
        "sigma",
        "loss",
        "grad",
        "t_star",
        "inner_iterations",
        "converged",
        "negative_curvature",
        "min_eigenvalue",
        "shift",
        "event",
        "micros",
    ])
    .context("writing the CSV header")?;
    let f = |x: f64| if x.is_finite() { x.to_string() } else { String::new() };
    let rows = training.trajectories.iter().flat_map(|t| t.records.iter().map(move |r| (t, r)));
    for (t, r) in rows {
        w.write_record([
            t.run.to_string(),
            r.iteration.to_string(),
            t.method.name().to_string(),
            f(r.sigma),
            f(r.loss),
            f(r.grad),
            f(r.t_star),
            r.inner_iterations.to_string(),
            r.converged.to_string(),
            r.negative_curvature.to_string(),
            f(r.min_eigenvalue),
            f(r.shift),
            r.event.name().to_string(),
            format!("{:.2}", r.micros),
        ])
        .context("writing a CSV row")?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("finishing the CSV: {e}"))?;
    crate::common::atomic_write(path, &bytes)
}

#[derive(Serialize)]
struct SummaryFile<'a> {
    experiment: &'static str,
    config: &'a TrainConfig,
    summary: &'a Summary,
    error_messages: Vec<String>,
    columns: &'static str,
}

/// Writes `summary.json`: configuration, statistics and timing.
pub(crate) fn write_summary(training: &Training, summary: &Summary, path: &Path) -> Result<()> {
    let error_messages = training
        .trajectories
        .iter()
        .flat_map(|t| t.error_messages.iter().map(move |m| format!("run {} {}: {m}", t.run, t.method.name())))
        .collect();
    let file = SummaryFile {
        experiment: "ransac",
        config: &training.config,
        summary,
        error_messages,
        columns: "iterations.csv: sigma is the width used for the sample (before the update); loss, grad and t_star are empty when the step failed; negative_curvature marks d2E/dt2 < 0 where dt*/dsigma was taken (t* by default); event is singular, non-finite or error when the step was skipped",
    };
    crate::common::write_json(path, &file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_nan_is_a_dash() {
        assert_eq!(num(f64::NAN), "-");
        assert_eq!(num(1.23456), "1.235");
        assert_eq!(num(12345.6), "12345.6");
        assert_eq!(num(1.5e7), "1.50e7");
        assert_eq!(median(vec![3.0, f64::NAN, 1.0, 2.0]), 2.0);
        assert!(max_abs([f64::NAN, -3.0, 2.0].into_iter()) == 3.0);
    }
}
