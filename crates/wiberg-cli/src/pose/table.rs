//! `wiberg pose table`: the analogue of the paper's Table 2. Each run's parameters (a
//! `pose train` output, a checkpoint directory, or the authors' checkpoint / the from-scratch
//! initialisation) are evaluated on the test split, per Human3.6M action (`<A>_1` counts toward
//! `<A>`) and as the frame-weighted mean, each with the inner solver it was trained with.
//! Printed, and written to `--out` as `table.csv`, `table.md`, `table.json` and `table.png` (a
//! bar chart per action, one bar per run).

use super::metrics::Metric;
use super::model::{PoseModel, Variant};
use super::params::{ParamSource, PoseParams};
use super::train::{self, RunConfig};
use anyhow::{anyhow, ensure, Context, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use wiberg_models::pose::generate::ACTIONS;

/// Arguments of `wiberg pose table`.
#[derive(Debug, clap::Args)]
pub(crate) struct TableArgs {
    /// Test data: a directory of `<name>__joint_2d.npy` / `__joint_3d.npy` sequences, or a
    /// `pose generate` output directory (its `testing/` is used).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// The rows, in order: `NAME=DIR,NAME=DIR,...`. DIR is a `pose train --out` directory (its
    /// latest checkpoint), a checkpoint directory (`trained_model__*.npy`), or the literal
    /// `checkpoint` (the authors' checkpoint) or `init` (the from-scratch initialisation), both
    /// from --model-dir / $WIBERG_TOME2018_DIR. Write `./init` for a directory named `init`.
    #[arg(long)]
    pub(crate) runs: String,
    /// Evaluate run NAME with this inner solver (`NAME=huber` or `NAME=l2`; repeatable). Without
    /// it a `pose train` run is evaluated with the variant it was trained with, anything else
    /// with `huber`.
    #[arg(long = "variant-of")]
    pub(crate) variant_of: Vec<String>,
    /// Error metric.
    #[arg(long, value_parser = super::metric_parser(), default_value = "mpjpe")]
    pub(crate) metric: Metric,
    /// Use every K-th frame of each test sequence.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub(crate) every: usize,
    /// Directory of the authors' files for the `checkpoint` and `init` literals.
    /// Default: $WIBERG_TOME2018_DIR.
    #[arg(long)]
    pub(crate) model_dir: Option<PathBuf>,
    /// Output directory for table.{csv,md,json,png} (only printed without it).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Worker threads (0 = all cores). Results do not depend on it.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub(crate) threads: usize,
}

/// One row to evaluate.
#[derive(Debug, Clone)]
pub(crate) struct RunSpec {
    /// Row name.
    pub(crate) name: String,
    /// Where the parameters come from (a training output is already resolved to its latest
    /// checkpoint).
    pub(crate) source: ParamSource,
    /// Whether `hl_params` / `ir_reg` are read from the checkpoint (yes for `pose train`
    /// checkpoints, no for the authors' checkpoint, whose released code starts them at 1).
    pub(crate) load_robust: bool,
    /// Inner solver used to evaluate it.
    pub(crate) variant: Variant,
    /// The training settings, for `pose train` runs.
    pub(crate) trained: Option<RunConfig>,
}

/// One evaluated row.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct TableRow {
    /// Row name.
    pub(crate) name: String,
    /// Inner solver used (`huber` / `l2`).
    pub(crate) variant: String,
    /// Derivative the run was trained with (`trust-region` / `implicit`), `-` if not trained here.
    pub(crate) damping: String,
    /// The parameters evaluated.
    pub(crate) source: String,
    /// Error per action.
    pub(crate) per_action: BTreeMap<String, f64>,
    /// Frame-weighted mean over all actions.
    pub(crate) mean: f64,
}

/// The whole table.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Table {
    /// Column order: Human3.6M actions first (in the paper's order), then any others sorted.
    pub(crate) actions: Vec<String>,
    /// Frames per action.
    pub(crate) frames_per_action: BTreeMap<String, usize>,
    /// Rows in `--runs` order.
    pub(crate) rows: Vec<TableRow>,
    /// Metric.
    pub(crate) metric: Metric,
    /// Test data directory.
    pub(crate) data: PathBuf,
}

fn parse_variant(s: &str) -> Result<Variant> {
    Variant::parse(s).ok_or_else(|| anyhow!("unknown variant {s:?}: expected huber or l2"))
}

/// Parses `--runs` and `--variant-of` (see [`TableArgs`]). `model_dir` is needed only for the
/// `checkpoint` / `init` literals.
pub(crate) fn parse_runs(runs: &str, variant_of: &[String], model_dir: Option<&Path>) -> Result<Vec<RunSpec>> {
    let mut overrides: BTreeMap<String, Variant> = BTreeMap::new();
    for v in variant_of {
        let (name, variant) =
            v.split_once('=').with_context(|| format!("--variant-of {v:?}: expected NAME=huber or NAME=l2"))?;
        let variant = parse_variant(variant.trim()).with_context(|| format!("--variant-of {v:?}"))?;
        ensure!(overrides.insert(name.trim().to_string(), variant).is_none(), "--variant-of: {name} given twice");
    }
    let mut specs: Vec<RunSpec> = Vec::new();
    for item in runs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, dir) =
            item.split_once('=').with_context(|| format!("--runs: {item:?} has no `=`; expected NAME=DIR"))?;
        let (name, dir) = (name.trim(), dir.trim());
        ensure!(!name.is_empty(), "--runs: {item:?} has an empty name");
        ensure!(!dir.is_empty(), "--runs: {item:?} has an empty directory");
        ensure!(!specs.iter().any(|s| s.name == name), "--runs: the name {name:?} is used twice");
        let authors = || {
            model_dir.map(Path::to_path_buf).with_context(|| {
                format!("--runs {item}: no parameter directory; pass --model-dir or set {}", super::TOME2018_ENV)
            })
        };
        let (source, load_robust, trained) = match dir {
            "checkpoint" => (ParamSource::Checkpoint(authors()?), false, None),
            "init" => (ParamSource::Init(authors()?), false, None),
            _ => {
                let path = PathBuf::from(dir);
                ensure!(path.is_dir(), "--runs {item}: {} is not a directory", path.display());
                let ckpt = wiberg_models::pose::checkpoint::resolve_checkpoint_dir(&path)
                    .with_context(|| format!("--runs {item}"))?;
                let state = train::read_state(&ckpt).with_context(|| format!("--runs {item}"))?;
                let trained = state.map(|s| s.config);
                (ParamSource::Checkpoint(ckpt), trained.is_some(), trained)
            }
        };
        let variant = match (overrides.get(name), &trained) {
            (Some(v), _) => *v,
            (None, Some(cfg)) => {
                parse_variant(&cfg.variant).with_context(|| format!("--runs {item}: stored variant"))?
            }
            (None, None) => Variant::Huber,
        };
        specs.push(RunSpec { name: name.to_string(), source, load_robust, variant, trained });
    }
    ensure!(!specs.is_empty(), "--runs is empty; expected NAME=DIR,NAME=DIR,...");
    for name in overrides.keys() {
        ensure!(specs.iter().any(|s| &s.name == name), "--variant-of {name}: no run of that name in --runs");
    }
    Ok(specs)
}

/// The test sequences directory `--data` names.
pub(crate) fn test_dir(data: &Path) -> PathBuf {
    let testing = data.join("testing");
    if testing.is_dir() {
        testing
    } else {
        data.to_path_buf()
    }
}

/// Evaluates every run on `dir` (see [`super::evaluate`]: rayon over frames, results
/// independent of `threads`).
pub(crate) fn build(specs: &[RunSpec], dir: &Path, metric: Metric, every: usize, threads: usize) -> Result<Table> {
    let mut rows = Vec::new();
    let mut frames_per_action = BTreeMap::new();
    for spec in specs {
        let params = PoseParams::load(&spec.source, spec.load_robust)
            .with_context(|| format!("run {}: loading {:?}", spec.name, spec.source))?;
        let model = PoseModel::new(&params, spec.variant)?;
        eprintln!("evaluating {} ({})", spec.name, spec.variant.name());
        let res =
            super::evaluate(&model, dir, metric, every, threads, true).with_context(|| format!("run {}", spec.name))?;
        frames_per_action = res.frames_per_action.clone();
        rows.push(TableRow {
            name: spec.name.clone(),
            variant: spec.variant.name().to_string(),
            damping: spec.trained.as_ref().map_or_else(|| "-".to_string(), |c| c.damping.clone()),
            source: match &spec.source {
                ParamSource::Checkpoint(d) => d.display().to_string(),
                ParamSource::Init(d) => format!("init {}", d.display()),
            },
            per_action: res.per_action,
            mean: res.mpjpe_mm,
        });
    }
    let mut actions: Vec<String> =
        ACTIONS.iter().filter(|a| frames_per_action.contains_key(**a)).map(|a| a.to_string()).collect();
    actions.extend(frames_per_action.keys().filter(|a| !ACTIONS.contains(&a.as_str())).cloned());
    Ok(Table { actions, frames_per_action, rows, metric, data: dir.to_path_buf() })
}

impl Table {
    fn value(&self, row: &TableRow, action: &str) -> f64 {
        row.per_action.get(action).copied().unwrap_or(f64::NAN)
    }

    /// CSV: `run,variant,damping,<actions...>,Avg`, full precision.
    pub(crate) fn to_csv(&self) -> Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["run".to_string(), "variant".into(), "damping".into()];
        header.extend(self.actions.iter().cloned());
        header.push("Avg".into());
        w.write_record(&header)?;
        for row in &self.rows {
            let mut rec = vec![row.name.clone(), row.variant.clone(), row.damping.clone()];
            rec.extend(self.actions.iter().map(|a| self.value(row, a).to_string()));
            rec.push(row.mean.to_string());
            w.write_record(&rec)?;
        }
        String::from_utf8(w.into_inner().context("writing CSV")?).context("CSV is not UTF-8")
    }

    /// Markdown, one decimal, like the paper's table.
    pub(crate) fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "| run | variant | damping | {} | Avg |", self.actions.join(" | "));
        let _ = writeln!(s, "|---|---|---|{}---:|", "---:|".repeat(self.actions.len()));
        for row in &self.rows {
            let cells: Vec<String> = self.actions.iter().map(|a| format!("{:.1}", self.value(row, a))).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.1} |",
                row.name,
                row.variant,
                row.damping,
                cells.join(" | "),
                row.mean
            );
        }
        let frames: usize = self.frames_per_action.values().sum();
        let _ = writeln!(
            s,
            "\n{} in mm on {} ({frames} frames; Avg is weighted by frames).",
            metric_label(self.metric),
            self.data.display()
        );
        s
    }

    /// Fixed-width text for the terminal.
    pub(crate) fn to_text(&self) -> String {
        let name_w = self.rows.iter().map(|r| r.name.len() + r.variant.len() + 3).max().unwrap_or(4).max(10);
        let mut s = format!("{:<name_w$}", "run (variant)");
        for a in &self.actions {
            let _ = write!(s, " {:>w$}", a, w = a.len().max(6));
        }
        let _ = writeln!(s, " {:>7}", "Avg");
        for row in &self.rows {
            let _ = write!(s, "{:<name_w$}", format!("{} ({})", row.name, row.variant));
            for a in &self.actions {
                let _ = write!(s, " {:>w$.1}", self.value(row, a), w = a.len().max(6));
            }
            let _ = writeln!(s, " {:>7.1}", row.mean);
        }
        s
    }
}

fn metric_label(metric: Metric) -> &'static str {
    match metric {
        Metric::Mpjpe => "MPJPE (oracle scale, no alignment)",
        Metric::Procrustes17 => "error after scaled Procrustes (17 joints)",
        Metric::Procrustes14 => "error after scaled Procrustes (14 joints)",
    }
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(127, 127, 127),
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];

fn plot_err<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> anyhow::Error {
    move |e| anyhow!("drawing {what}: {e:?}")
}

/// Draws the bar chart (one group per action and one for the mean, one bar per run) to `path`.
pub(crate) fn draw_chart(table: &Table, path: &Path) -> Result<()> {
    let mut groups = table.actions.clone();
    groups.push("Avg".into());
    let n = groups.len() as f64;
    let k = table.rows.len().max(1);
    let ymax = table
        .rows
        .iter()
        .flat_map(|r| r.per_action.values().copied().chain([r.mean]))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    // Head room for the legend.
    let ymax = if ymax > 0.0 { ymax * (1.25 + 0.06 * k as f64) } else { 1.0 };
    let root = BitMapBackend::new(path, (1800, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err("the background"))?;
    let title = format!("Pose: {} per action, test split", metric_label(table.metric));
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(15)
        .x_label_area_size(75)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..n, 0.0..ymax)
        .map_err(plot_err("the axes"))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .x_desc("action (Human3.6M names; Avg = frame-weighted mean)")
        .y_desc("error (mm)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 18))
        .axis_desc_style(("sans-serif", 20))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(plot_err("the mesh"))?;
    let width = 0.8 / k as f64;
    for (r, row) in table.rows.iter().enumerate() {
        let colour = PALETTE[r % PALETTE.len()];
        let values: Vec<f64> = table.actions.iter().map(|a| table.value(row, a)).chain([row.mean]).collect();
        let bars = values.into_iter().enumerate().filter(|(_, v)| v.is_finite()).map(move |(g, v)| {
            let x0 = g as f64 + 0.1 + r as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, v)], colour.filled())
        });
        chart
            .draw_series(bars)
            .map_err(plot_err("the bars"))?
            .label(if row.damping == "-" {
                format!("{} ({})", row.name, row.variant)
            } else {
                format!("{} ({}, {})", row.name, row.variant, row.damping)
            })
            .legend(move |(x, y)| Rectangle::new([(x, y - 7), (x + 16, y + 7)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 18))
        .draw()
        .map_err(plot_err("the legend"))?;
    // Group names centred under their bars (the mesh's own labels sit at round numbers).
    let style = TextStyle::from(("sans-serif", 16).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (g, name) in groups.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        root.draw(&Text::new(name.clone(), (px, py + 8), style.clone())).map_err(plot_err("the action names"))?;
    }
    root.present().map_err(plot_err("table.png"))?;
    Ok(())
}

/// Runs `wiberg pose table`.
pub(crate) fn run(args: TableArgs) -> Result<()> {
    ensure!(args.every >= 1, "--every must be at least 1");
    let model_dir = args.model_dir.clone().or_else(|| std::env::var_os(super::TOME2018_ENV).map(PathBuf::from));
    let specs = parse_runs(&args.runs, &args.variant_of, model_dir.as_deref())?;
    let dir = test_dir(&args.data);
    let table = build(&specs, &dir, args.metric, args.every, args.threads)?;
    print!("{}", table.to_text());
    if let Some(out) = &args.out {
        // Held until the files are written: a second process on the same --out stops at once.
        let _lock = crate::common::lock_out_dir(out)?;
        crate::common::atomic_write(&out.join("table.csv"), table.to_csv()?.as_bytes())?;
        crate::common::atomic_write(&out.join("table.md"), table.to_markdown().as_bytes())?;
        crate::common::write_json(&out.join("table.json"), &table)?;
        let mut written = String::from("table.csv, table.md, table.json");
        match crate::common::check_fonts() {
            Ok(()) => {
                let png = out.join("table.png");
                // Drawn into a temporary file, then renamed: a kill never leaves a torn PNG.
                crate::common::atomic_write_with(&png, |tmp| draw_chart(&table, tmp))
                    .with_context(|| format!("writing {}", png.display()))?;
                written.push_str(", table.png");
            }
            Err(e) => eprintln!("table.png skipped: {e:#}"),
        }
        println!("wrote {written} to {}", out.display());
    }
    Ok(())
}
