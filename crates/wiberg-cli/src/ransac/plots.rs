//! Figures: `figure1.png` (sigma^2 and |dL/dsigma| against iteration, like the paper's
//! Figure 1) and `energy.png` (one sample's energy landscape under each learned sigma).
//!
//! Text needs a TrueType font found through fontconfig (`fc-list`); without one the figures
//! are skipped with a clear message (the CSV and JSON are written regardless).

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use wiberg::{Energy, RbfMixture};

use super::training::{sample_step, Event, MethodRun, Training};
use crate::common::{atomic_write_with, check_fonts};
use crate::common::{DampingMode, OptimizerKind};
use wiberg_models::ransac::sampling::{draw, run_rng, Sample};

const WIDTH: u32 = 1400;
const FIGURE1_HEIGHT: u32 = 1000;
const ENERGY_HEIGHT: u32 = 700;

/// The colour of a method (the same in every figure).
pub(crate) fn color(method: DampingMode) -> RGBColor {
    match method {
        DampingMode::Implicit => RGBColor(214, 39, 40),
        DampingMode::TrustRegion => RGBColor(31, 119, 180),
        DampingMode::Guarded => RGBColor(44, 160, 44),
    }
}

fn plot_err<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> anyhow::Error {
    move |e| anyhow!("drawing {what}: {e:?}")
}

/// Draws every figure into `out`, returning the paths written.
pub(crate) fn draw_all(training: &Training, out: &Path) -> Result<Vec<PathBuf>> {
    check_fonts()?;
    // Drawn into a temporary file, then renamed: a kill never leaves a torn PNG.
    let figure1 = out.join("figure1.png");
    atomic_write_with(&figure1, |tmp| draw_figure1(training, tmp))
        .with_context(|| format!("writing {}", figure1.display()))?;
    let energy = out.join("energy.png");
    atomic_write_with(&energy, |tmp| draw_energy(training, tmp))
        .with_context(|| format!("writing {}", energy.display()))?;
    Ok(vec![figure1, energy])
}

/// Log-axis range covering the finite positive values (with a floor `max / 1e12`).
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (1e-3, 1.0);
    }
    let lo = lo.max(hi * 1e-10);
    (lo / 2.0, hi * 2.0)
}

fn run0(training: &Training) -> Vec<&MethodRun> {
    training.trajectories.iter().filter(|t| t.run == 0).collect()
}

fn series_style(method: DampingMode) -> ShapeStyle {
    // One pixel: plotters draws wider polylines as polygons with mitred joins, which shoot
    // spikes past the data at the sharp turns of a noisy trajectory.
    color(method).stroke_width(1)
}

fn legend_label(method: DampingMode, lambda: f64) -> String {
    match method {
        DampingMode::Implicit => "implicit (H)".to_string(),
        DampingMode::TrustRegion => format!("trust-region (H + {lambda})"),
        DampingMode::Guarded => "guarded (drawn last: hides trust-region where equal)".to_string(),
    }
}

fn draw_figure1(training: &Training, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, FIGURE1_HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err("the background"))?;
    let c = &training.config;
    let runs_note = if c.runs > 1 { format!(", run 0 of {}", c.runs) } else { String::new() };
    let title = format!(
        "RANSAC: learning sigma ({} protocol, {} forward, {}, seed {}{runs_note})",
        serde_plain(c.protocol),
        serde_plain(c.forward),
        match c.optimizer {
            OptimizerKind::Asgd => format!("ASGD lr {}", c.lr),
            OptimizerKind::Sgd => format!("SGD lr {} momentum {}", c.lr, c.momentum),
            OptimizerKind::Adam => format!("Adam lr {}", c.lr),
        },
        c.seed
    );
    let root = root.titled(&title, ("sans-serif", 26)).map_err(plot_err("the title"))?;
    let panels = root.split_evenly((2, 1));
    let trajectories = run0(training);
    let n = c.iterations as f64;
    draw_panel(&panels[0], &trajectories, n, "sigma^2", |r| r.sigma * r.sigma, true, c.lambda)?;
    draw_panel(&panels[1], &trajectories, n, "|dL/dsigma|", |r| r.grad.abs(), false, c.lambda)?;
    root.present().map_err(plot_err("figure1.png"))?;
    Ok(())
}

fn serde_plain<T: serde::Serialize>(v: T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    trajectories: &[&MethodRun],
    iterations: f64,
    label: &str,
    value: impl Fn(&super::training::IterRecord) -> f64,
    legend: bool,
    lambda: f64,
) -> Result<()> {
    let (lo, hi) = log_range(trajectories.iter().flat_map(|t| t.records.iter().map(&value)));
    // Head room above the data for the legend or the note (a decade or two on a log axis).
    let hi = if legend { hi * 4.0 } else { hi * 12.0 };
    let mut chart = ChartBuilder::on(area)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..iterations, (lo..hi).log_scale())
        .map_err(plot_err("the axes"))?;
    chart
        .configure_mesh()
        .x_desc("training iteration")
        .y_desc(label)
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 18))
        .axis_desc_style(("sans-serif", 20))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(plot_err("the mesh"))?;
    for t in trajectories {
        let col = color(t.method);
        let points: Vec<(f64, f64)> = t
            .records
            .iter()
            .map(|r| (r.iteration as f64, value(r)))
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
            .map(|(x, v)| (x, v.max(lo)))
            .collect();
        if legend {
            chart.draw_series(LineSeries::new(points, series_style(t.method))).map_err(plot_err("a series"))?;
        } else {
            // Raw values as faint dots, and the maximum over each window as a bold line.
            chart.draw_series(points.iter().map(|&p| Pixel::new(p, col.mix(0.35)))).map_err(plot_err("a series"))?;
            let window = (iterations / 100.0).max(1.0) as usize;
            let maxima: Vec<(f64, f64)> = t
                .records
                .chunks(window)
                .filter_map(|c| {
                    let m = c.iter().map(&value).filter(|v| v.is_finite()).fold(f64::NAN, f64::max);
                    let mid = c.iter().map(|r| r.iteration as f64).sum::<f64>() / c.len() as f64;
                    (m > 0.0).then_some((mid, m.max(lo)))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(maxima, series_style(t.method)))
                .map_err(plot_err("a series"))?
                .label(legend_label(t.method, lambda))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 30, y)], col.stroke_width(3)));
        }
        // Negative curvature at the linearisation point (t*): triangles; skipped steps: crosses at the top.
        let marks: Vec<(f64, f64)> = t
            .records
            .iter()
            .filter(|r| r.negative_curvature)
            .map(|r| (r.iteration as f64, value(r).clamp(lo, hi)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        chart
            .draw_series(marks.into_iter().map(|p| TriangleMarker::new(p, 6, col.filled())))
            .map_err(plot_err("markers"))?;
        let skipped: Vec<(f64, f64)> =
            t.records.iter().filter(|r| r.event != Event::None).map(|r| (r.iteration as f64, hi / 3.0)).collect();
        chart
            .draw_series(skipped.into_iter().map(|p| Cross::new(p, 6, col.stroke_width(2))))
            .map_err(plot_err("markers"))?;
    }
    if !legend {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(("sans-serif", 20))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(plot_err("the legend"))?;
    }
    let note = if legend {
        "sigma^2 at every iteration (the sign of sigma is not shown; only sigma^2 enters the energy)"
    } else {
        "dots: every iteration; lines: maximum per 1% of the run;  triangles: H < 0 at t* (negative curvature);  crosses (top): step skipped"
    };
    area.draw(&Text::new(note, (110, 18), ("sans-serif", 16).into_font().color(&BLACK.mix(0.7))))
        .map_err(plot_err("the note"))?;
    Ok(())
}

/// The sample shown in `energy.png`: a fixed draw from its own stream (not a training sample).
pub(crate) fn figure_sample(training: &Training) -> Sample {
    draw(training.config.protocol, &mut run_rng(training.config.seed, 1 << 40))
}

fn draw_energy(training: &Training, path: &Path) -> Result<()> {
    let c = &training.config;
    let sample = figure_sample(training);
    let energy = RbfMixture::shared_width(1, sample.points.clone())?;
    let (xmin, xmax) = sample.points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let (xmin, xmax) = (xmin - 4.0, xmax + 4.0);
    let grid: Vec<f64> = (0..=1200).map(|i| xmin + (xmax - xmin) * i as f64 / 1200.0).collect();
    // One curve per method at its learned sigma (run 0), plus the starting sigma.
    let mut curves: Vec<(String, RGBColor, f64, Option<f64>)> = Vec::new();
    curves.push((format!("start: sigma = {}", c.initial_sigma), RGBColor(150, 150, 150), c.initial_sigma, None));
    for t in run0(training) {
        // sigma is noisy from step to step: show the median |sigma| of the last 500 iterations.
        let start = t.records.len().saturating_sub(super::report::FINAL_WINDOW);
        let mut recent: Vec<f64> = t.records[start..].iter().map(|r| r.sigma.abs()).filter(|s| s.is_finite()).collect();
        recent.sort_by(f64::total_cmp);
        let Some(&sigma) = recent.get(recent.len() / 2) else { continue };
        let t_star = sample_step(&c.layer(t.method), sigma, &sample).ok().map(|s| s.t_star);
        curves.push((format!("{}: sigma = {sigma:.2}", t.method.name()), color(t.method), sigma, t_star));
    }
    let mut values: Vec<Vec<f64>> = Vec::new();
    for (_, _, sigma, _) in &curves {
        let mut v = vec![0.0; grid.len()];
        energy.values_at(&grid, &[*sigma], &mut v);
        values.push(v);
    }
    // Each curve is scaled by its own depth so that shapes compare across very different sigma.
    for v in &mut values {
        let depth = v.iter().copied().filter(|x| x.is_finite()).fold(0.0f64, |m, x| m.max(-x));
        if depth > 0.0 {
            v.iter_mut().for_each(|x| *x /= depth);
        }
    }
    let (ylo, yhi) = (-1.75, 0.4);
    let root = BitMapBackend::new(path, (WIDTH, ENERGY_HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err("the background"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Energy E(t) = sum_i -exp(-(x_i - t)^2 / sigma^2) of one sample ({} inliers, {} outliers), scaled to depth 1",
                sample.inliers().len(),
                sample.outliers().len()
            ),
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(xmin..xmax, ylo..yhi)
        .map_err(plot_err("the axes"))?;
    chart
        .configure_mesh()
        .x_desc("t")
        .y_desc("E(t) / max |E|")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v: &f64| format!("{:.1}", if v.abs() < 1e-9 { 0.0 } else { *v }))
        .label_style(("sans-serif", 18))
        .axis_desc_style(("sans-serif", 20))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(plot_err("the mesh"))?;
    for ((label, col, sigma, t_star), v) in curves.iter().zip(&values) {
        let col = *col;
        let depth = {
            let mut raw = vec![0.0; grid.len()];
            energy.values_at(&grid, &[*sigma], &mut raw);
            raw.iter().copied().filter(|x| x.is_finite()).fold(0.0f64, |m, x| m.max(-x)).max(f64::MIN_POSITIVE)
        };
        let curve = grid.iter().copied().zip(v.iter().copied());
        // Guarded equals trust-region whenever H >= 0: it is drawn dashed on top so both show.
        let is_guarded = label.starts_with("guarded");
        let series = if is_guarded {
            chart.draw_series(DashedLineSeries::new(curve, 14, 8, col.stroke_width(3)))
        } else {
            let width = if label.starts_with("start") { 1 } else { 4 };
            chart.draw_series(LineSeries::new(curve, col.stroke_width(width)))
        };
        series
            .map_err(plot_err("a curve"))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 30, y)], col.stroke_width(3)));
        if let Some(t) = t_star {
            let e = energy.value(&[*t], &[*sigma]) / depth;
            let radius = if is_guarded { 6 } else { 10 };
            chart
                .draw_series([
                    Circle::new((*t, e), radius, col.filled()),
                    Circle::new((*t, e), radius, BLACK.stroke_width(1)),
                ])
                .map_err(plot_err("an estimate"))?;
        }
    }
    // Rug of points just above zero: inliers green (taller), outliers grey; the target dashed.
    let tick = 0.12;
    let base = 0.05;
    chart
        .draw_series(
            sample
                .outliers()
                .iter()
                .map(|&x| PathElement::new(vec![(x, base), (x, base + tick)], BLACK.mix(0.45).stroke_width(2))),
        )
        .map_err(plot_err("outliers"))?
        .label("outliers")
        .legend(|(x, y)| PathElement::new(vec![(x + 15, y - 8), (x + 15, y + 8)], BLACK.mix(0.45).stroke_width(2)));
    let inlier_color = RGBColor(230, 150, 0);
    chart
        .draw_series(
            sample
                .inliers()
                .iter()
                .map(|&x| PathElement::new(vec![(x, base), (x, base + 2.0 * tick)], inlier_color.stroke_width(3))),
        )
        .map_err(plot_err("inliers"))?
        .label("inliers")
        .legend(move |(x, y)| PathElement::new(vec![(x + 15, y - 8), (x + 15, y + 8)], inlier_color.stroke_width(3)));
    chart
        .draw_series(DashedLineSeries::new([(sample.target, ylo), (sample.target, yhi)], 10, 6, BLACK.stroke_width(2)))
        .map_err(plot_err("the target"))?
        .label(format!("mean of inliers = {:.2} (target)", sample.target))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 30, y)], BLACK.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 18))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(plot_err("the legend"))?;
    root.draw(&Text::new(
        "sigma: median |sigma| over each method's last 500 iterations (run 0);  dots: the estimate t* at that sigma",
        (95, ENERGY_HEIGHT as i32 - 22),
        ("sans-serif", 16).into_font().color(&BLACK.mix(0.7)),
    ))
    .map_err(plot_err("the note"))?;
    root.present().map_err(plot_err("energy.png"))?;
    Ok(())
}
