//! Evaluation on the test frames (Table 1), the table as text/CSV/JSON, and Figure 2.

use super::iou::BoxXyxy;
use super::model::{predict, Frame};
use anyhow::{Context, Result};
use plotters::prelude::*;
use rayon::prelude::*;
use serde::Serialize;
use std::path::Path;
use wiberg::{ArgminLayer, Energy};

/// A learned fusion model to score.
pub(crate) struct Model<'a> {
    /// Row label.
    pub(crate) name: String,
    /// Parameters.
    pub(crate) params: &'a [f64],
    /// Layer used for the forward pass.
    pub(crate) layer: ArgminLayer,
    /// Note for the table (for example "did not converge").
    pub(crate) note: String,
}

/// One row of Table 1.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    /// Method.
    pub(crate) method: String,
    /// Mean IoU over the test frames (frames where a method has no box count as 0).
    pub(crate) mean_iou: f64,
    /// Remarks (failures, fallbacks).
    pub(crate) note: String,
}

/// Table 1 for one split.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Table {
    /// Split protocol.
    pub(crate) split: String,
    /// Number of test frames.
    pub(crate) test_frames: usize,
    /// Test frames where no tracker had a box (every method scores 0 there).
    pub(crate) empty_frames: usize,
    /// The rows, in the order of the paper.
    pub(crate) rows: Vec<Row>,
}

struct FrameScores {
    trackers: Vec<f64>,
    mean: f64,
    median: f64,
    models: Vec<(f64, bool)>,
}

/// Scores every method on the test frames. `without_results[t]` is the number of test frames
/// of sequences for which tracker `t` has no result file (noted in its row: it scores 0 there,
/// as on its failure frames); empty when every tracker has every file.
pub(crate) fn evaluate(
    frames: &[Frame],
    test: &[usize],
    trackers: &[String],
    without_results: &[usize],
    models: &[Model<'_>],
    split: &str,
) -> Table {
    let t = trackers.len();
    let scores: Vec<FrameScores> = test
        .par_iter()
        .map(|&i| {
            let f = &frames[i];
            let mut tr = vec![0.0; t];
            for k in 0..f.len() {
                tr[f.trackers[k] as usize] = f.gt.iou(&f.tracker_box(k));
            }
            let iou = |b: Option<BoxXyxy>| b.map_or(0.0, |b| f.gt.iou(&b));
            let median = iou(f.median_box());
            let models = models
                .iter()
                .map(|m| {
                    if f.is_empty() {
                        return (0.0, false);
                    }
                    match predict(f, m.params, &m.layer) {
                        Ok(b) => (f.gt.iou(&b), false),
                        // The forward pass failed (e.g. singular Hessian in the polish step): the
                        // frame falls back to median fusion and is counted.
                        Err(_) => (median, true),
                    }
                })
                .collect();
            FrameScores { trackers: tr, mean: iou(f.mean_box()), median, models }
        })
        .collect();
    let n = scores.len().max(1) as f64;
    let mut tracker_mean = vec![0.0; t];
    let (mut mean, mut median) = (0.0, 0.0);
    let mut model_sum = vec![0.0; models.len()];
    let mut fallbacks = vec![0usize; models.len()];
    for s in &scores {
        for (a, b) in tracker_mean.iter_mut().zip(&s.trackers) {
            *a += b;
        }
        mean += s.mean;
        median += s.median;
        for (j, (v, fb)) in s.models.iter().enumerate() {
            model_sum[j] += v;
            fallbacks[j] += *fb as usize;
        }
    }
    let mut order: Vec<usize> = (0..t).collect();
    order.sort_by(|&a, &b| tracker_mean[b].total_cmp(&tracker_mean[a]).then(a.cmp(&b)));
    let mut rows: Vec<Row> = order
        .iter()
        .take(5)
        .enumerate()
        .map(|(r, &k)| Row {
            method: format!("single tracker #{}: {}", r + 1, trackers[k]),
            mean_iou: tracker_mean[k] / n,
            note: match without_results.get(k) {
                Some(&m) if m > 0 => format!("no result file for {m} test frames (IoU 0 there)"),
                _ => String::new(),
            },
        })
        .collect();
    rows.push(Row { method: "mean fusion".into(), mean_iou: mean / n, note: String::new() });
    rows.push(Row { method: "median fusion".into(), mean_iou: median / n, note: String::new() });
    for (j, m) in models.iter().enumerate() {
        let mut note = m.note.clone();
        if fallbacks[j] > 0 {
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str(&format!("forward failed on {} test frames (median used there)", fallbacks[j]));
        }
        rows.push(Row { method: m.name.clone(), mean_iou: model_sum[j] / n, note });
    }
    Table {
        split: split.to_string(),
        test_frames: scores.len(),
        empty_frames: test.iter().filter(|&&i| frames[i].is_empty()).count(),
        rows,
    }
}

impl Table {
    /// The table as aligned text.
    pub(crate) fn to_text(&self) -> String {
        let width = self.rows.iter().map(|r| r.method.len()).max().unwrap_or(6).max(6);
        let mut s = format!(
            "Table 1 (split: {}, {} test frames, {} without any tracker box)\n{:<width$}  mean IoU  note\n",
            self.split, self.test_frames, self.empty_frames, "method"
        );
        for r in &self.rows {
            s.push_str(&format!("{:<width$}  {:>8.3}  {}\n", r.method, r.mean_iou, r.note));
        }
        s
    }

    /// The table as CSV (`method,mean_iou,note`).
    pub(crate) fn to_csv(&self) -> Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["split", "method", "mean_iou", "note"])?;
        for r in &self.rows {
            w.write_record([self.split.as_str(), r.method.as_str(), &format!("{:.6}", r.mean_iou), r.note.as_str()])?;
        }
        String::from_utf8(w.into_inner().context("finishing CSV")?).context("CSV is not UTF-8")
    }
}

/// Colour map from dark blue (low energy = likely) to light yellow.
fn colour(t: f64) -> RGBColor {
    let stops =
        [(13.0, 8.0, 135.0), (126.0, 3.0, 168.0), (204.0, 71.0, 120.0), (248.0, 149.0, 64.0), (240.0, 249.0, 33.0)];
    let x = t.clamp(0.0, 1.0) * (stops.len() - 1) as f64;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f64;
    let (a, b) = (stops[i], stops[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// One panel of Figure 2.
pub(crate) struct Panel<'a> {
    /// Title.
    pub(crate) title: String,
    /// Parameters of the energy shown.
    pub(crate) params: &'a [f64],
    /// The fused box predicted with them (pixels), if any.
    pub(crate) prediction: Option<BoxXyxy>,
}

/// Figure 2: the top-left corner's energy over the image plane for one frame, one panel per
/// parameter set, with the trackers' boxes (grey) and top-left corners (white dots), the ground
/// truth (green) and the fused box (red).
pub(crate) fn draw_figure2(path: &Path, frame: &Frame, seq_name: &str, panels: &[Panel<'_>]) -> Result<()> {
    let g = frame.gt_box;
    let size = ((g[2] - g[0]) * (g[3] - g[1])).sqrt().max(1.0);
    // The window: a square around the target corner, the predicted corners and the median
    // tracker corner, with half a target size of margin.
    let mut xs = vec![g[0]];
    let mut ys = vec![g[1]];
    for b in panels.iter().filter_map(|p| p.prediction).chain(frame.median_box()) {
        xs.push(b[0]);
        ys.push(b[1]);
    }
    let lo = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (cx, cy) = (0.5 * (lo(&xs) + hi(&xs)), 0.5 * (lo(&ys) + hi(&ys)));
    let half = 0.5 * (hi(&xs) - lo(&xs)).max(hi(&ys) - lo(&ys)) + 0.5 * size;
    let (x0, x1, y0, y1) = (cx - half, cx + half, cy - half, cy + half);
    let res = 160usize;
    let width = 560 * panels.len() as u32;
    {
        let root = BitMapBackend::new(path, (width, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let areas = root.split_evenly((1, panels.len()));
        for (area, panel) in areas.iter().zip(panels) {
            let e = frame.energy(0).context("the Figure 2 frame has no tracker box")?;
            let mut grid = vec![0.0; res * res];
            for j in 0..res {
                for i in 0..res {
                    let px = x0 + (i as f64 + 0.5) / res as f64 * (x1 - x0);
                    let py = y0 + (j as f64 + 0.5) / res as f64 * (y1 - y0);
                    let y = [(px - frame.origin[0]) / frame.scale, (py - frame.origin[1]) / frame.scale];
                    grid[j * res + i] = e.value(&y, panel.params);
                }
            }
            let lo = grid.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = grid.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let span = (hi - lo).max(1e-300);
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!("{seq_name} frame {}: {} (bright = low energy)", frame.index + 1, panel.title),
                    ("sans-serif", 17),
                )
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(50)
                .build_cartesian_2d(x0..x1, y1..y0)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("x (pixels)")
                .y_desc("y (pixels)")
                .label_style(("sans-serif", 13))
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_label_formatter(&|v| format!("{v:.0}"))
                .draw()?;
            let (dx, dy) = ((x1 - x0) / res as f64, (y1 - y0) / res as f64);
            chart.draw_series((0..res * res).map(|k| {
                let (i, j) = (k % res, k / res);
                let (ax, ay) = (x0 + i as f64 * dx, y0 + j as f64 * dy);
                // Low energy (a likely corner) bright.
                let c = colour(1.0 - (grid[k] - lo) / span);
                Rectangle::new([(ax, ay), (ax + dx, ay + dy)], c.filled())
            }))?;
            let clip = |b: BoxXyxy| b[2] >= x0 && b[0] <= x1 && b[3] >= y0 && b[1] <= y1;
            for k in 0..frame.len() {
                let b = frame.tracker_box(k);
                if clip(b) {
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(b[0], b[1]), (b[2], b[3])],
                        RGBAColor(230, 230, 230, 0.3).stroke_width(1),
                    )))?;
                }
            }
            let inside = |x: f64, y: f64| (x0..=x1).contains(&x) && (y0..=y1).contains(&y);
            chart.draw_series(
                (0..frame.len())
                    .map(|k| frame.tracker_box(k))
                    .filter(|b| inside(b[0], b[1]))
                    .map(|b| Circle::new((b[0], b[1]), 3, WHITE.filled())),
            )?;
            let poly = frame.gt.outline();
            if !poly.is_empty() {
                let mut pts: Vec<(f64, f64)> = poly.iter().map(|p| (p[0], p[1])).collect();
                pts.push(pts[0]);
                chart
                    .draw_series(std::iter::once(PathElement::new(pts, GREEN.stroke_width(3))))?
                    .label("ground truth")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], GREEN.stroke_width(3)));
            }
            chart
                .draw_series(std::iter::once(Cross::new((g[0], g[1]), 9, GREEN.stroke_width(3))))?
                .label("target corner (GT box)")
                .legend(|(x, y)| Cross::new((x + 9, y), 5, GREEN.stroke_width(2)));
            if let Some(b) = panel.prediction {
                chart
                    .draw_series(std::iter::once(Rectangle::new([(b[0], b[1]), (b[2], b[3])], RED.stroke_width(3))))?
                    .label("fused box")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED.stroke_width(3)));
                chart.draw_series(std::iter::once(Cross::new((b[0], b[1]), 8, RED.stroke_width(3))))?;
            }
            chart
                // Legend entry only (the dots are drawn above).
                .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?
                .label("tracker top-left corners")
                .legend(|(x, y)| Circle::new((x + 9, y), 3, BLACK.filled()));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()?;
        }
        root.present().with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
