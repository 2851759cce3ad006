//! `wiberg pose show`: one frame as a PNG: the four 2-D views (detections) above, and the 3-D
//! reconstruction (scaled by the ground truth's limb scale, as evaluated) beside the ground
//! truth in a front and a side view below.

use super::data::{self, Pose3d};
use super::metrics::{self, Metric};
use super::model::{normalise, Workspace};
use super::params::{ParamSource, N_CAMERAS, N_JOINTS};
use anyhow::{ensure, Context, Result};
use plotters::prelude::*;
use std::path::PathBuf;
use wiberg_models::pose::generate::BONES;

/// Arguments of `wiberg pose show`.
#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// Data directory.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Frame index over the whole directory (sequences in name order, frames concatenated).
    #[arg(long)]
    pub(crate) frame: usize,
    /// Parameters and solver.
    #[command(flatten)]
    pub(crate) model: super::ModelArgs,
    /// Output PNG.
    #[arg(long, default_value = "pose.png")]
    pub(crate) out: PathBuf,
}

fn bounds(points: impl Iterator<Item = (f64, f64)>) -> ((f64, f64), (f64, f64)) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    // Square, padded ranges so that the body keeps its proportions.
    let half = 0.55 * (x1 - x0).max(y1 - y0).max(1e-9);
    let (cx, cy) = (0.5 * (x0 + x1), 0.5 * (y0 + y1));
    ((cx - half, cx + half), (cy - half, cy + half))
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing: {e:?}")
}

/// Runs `wiberg pose show`.
pub(crate) fn run(args: ShowArgs) -> Result<()> {
    let seqs = data::load_dir(&args.data)?;
    let mut idx = args.frame;
    let mut found = None;
    for s in &seqs {
        if idx < s.joint_2d.len() {
            found = Some((s, idx));
            break;
        }
        idx -= s.joint_2d.len();
    }
    let total: usize = seqs.iter().map(|s| s.joint_2d.len()).sum();
    let (seq, f) = found.with_context(|| format!("--frame {} is out of range ({total} frames)", args.frame))?;
    let model = args.model.model()?;
    let det = seq.joint_2d[f];
    let gt = seq.joint_3d[f];
    let rec = model.reconstruct(&det, &mut Workspace::default())?;
    let err = metrics::frame_error(Metric::Mpjpe, &rec.pose, &gt);
    let truth = metrics::centre(&gt);
    let recon = metrics::scaled_reconstruction(&rec.pose, &gt);
    ensure!(normalise(&det).is_ok(), "frame cannot be normalised");

    let root = BitMapBackend::new(&args.out, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let source = match args.model.source()? {
        ParamSource::Checkpoint(d) => format!("checkpoint {}", d.display()),
        ParamSource::Init(d) => format!("init from {}", d.display()),
    };
    let title = format!(
        "{} frame {} ({:?}, {source}): MPJPE {:.1} mm   [red: reconstruction x l(GT), blue: ground truth]",
        seq.name, f, model.variant, err
    );
    let (top_title, rest) = root.split_vertically(40);
    top_title.draw(&Text::new(title, (10, 10), ("sans-serif", 18).into_font().color(&BLACK))).map_err(plot_err)?;
    let (views, bottom) = rest.split_vertically(330);
    let cams = views.split_evenly((1, N_CAMERAS));
    for (c, area) in cams.iter().enumerate() {
        let pts: Vec<(f64, f64)> =
            (0..N_JOINTS).filter(|&j| j != super::model::HIDDEN_JOINT).map(|j| (det[c][j][0], det[c][j][1])).collect();
        let ((x0, x1), (y0, y1)) = bounds(pts.iter().copied());
        // Image y points down: flip the axis.
        let mut chart = ChartBuilder::on(area)
            .caption(format!("camera {c} (detections)"), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(20)
            .y_label_area_size(40)
            .build_cartesian_2d(x0..x1, y1..y0)
            .map_err(plot_err)?;
        chart.configure_mesh().x_labels(4).y_labels(4).draw().map_err(plot_err)?;
        for &(a, b) in BONES.iter() {
            if a == super::model::HIDDEN_JOINT || b == super::model::HIDDEN_JOINT {
                continue;
            }
            chart
                .draw_series(LineSeries::new(
                    [(det[c][a][0], det[c][a][1]), (det[c][b][0], det[c][b][1])],
                    BLACK.stroke_width(2),
                ))
                .map_err(plot_err)?;
        }
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, GREEN.filled()))).map_err(plot_err)?;
    }
    let panels = bottom.split_evenly((1, 2));
    for (area, (name, u, v)) in panels.iter().zip([("front: x (mm) vs z (mm)", 0, 2), ("side: y (mm) vs z (mm)", 1, 2)])
    {
        let all: Vec<(f64, f64)> = truth.iter().chain(recon.iter()).map(|p| (p[u], p[v])).collect();
        let ((x0, x1), (y0, y1)) = bounds(all.into_iter());
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        chart.configure_mesh().draw().map_err(plot_err)?;
        for (pose, colour) in [(&truth, BLUE), (&recon, RED)] {
            draw_skeleton(&mut chart, pose, u, v, colour)?;
        }
    }
    root.present().map_err(plot_err).with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}: {} frame {}: MPJPE {:.1} mm -> {}", args.data.display(), seq.name, f, err, args.out.display());
    Ok(())
}

fn draw_skeleton<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    pose: &Pose3d,
    u: usize,
    v: usize,
    colour: RGBColor,
) -> Result<()> {
    for &(a, b) in BONES.iter() {
        chart
            .draw_series(LineSeries::new([(pose[a][u], pose[a][v]), (pose[b][u], pose[b][v])], colour.stroke_width(3)))
            .map_err(plot_err)?;
    }
    chart.draw_series(pose.iter().map(|p| Circle::new((p[u], p[v]), 4, colour.filled()))).map_err(plot_err)?;
    Ok(())
}
