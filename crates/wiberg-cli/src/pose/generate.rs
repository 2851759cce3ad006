//! Synthetic multi-camera Human3.6M-like data (spec section 5b): poses from the PPCA models,
//! the real average camera rotations, perspective projection, detection noise, outliers,
//! left/right swaps and joint 9 unobserved; written in the npy layout `eval` reads.

use super::params::{N_CAMERAS, N_JOINTS};
use anyhow::{ensure, Context, Result};
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

use wiberg_models::pose::generate::{sample_dataset, DatasetConfig, Generator, ACTIONS, SPLITS};

/// Arguments of `wiberg pose generate`.
#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// Output directory (gets training/, testing/ and index.json).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Frames per sequence file (split evenly over the subjects of the split).
    #[arg(long, default_value_t = 200)]
    pub(crate) frames_per_sequence: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Directory with the PPCA files and cameras (`model_parameters__*_3.npy`,
    /// `avg_cameras__cams.npy`, or the authors' .h5). Default: $WIBERG_TOME2018_DIR.
    #[arg(long)]
    pub(crate) model_dir: Option<PathBuf>,
    /// Multiplies the detection noise, the outlier rate and the left/right swap rate (1 = the
    /// spec's realistic values; 0 = exact projections, for diagnosis).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) noise_scale: f64,
    /// Which joints the 2-D detections mark. `stacked-hourglass` (default): the detector's
    /// "thorax" is reported as H36M joint 7 (Spine) and its "upper neck" as joint 8 (Thorax),
    /// as in the processed Human3.6M files the authors' checkpoint was trained on (their 2-D
    /// joints come from a Stacked Hourglass detector). `h36m`: the exact projections of the
    /// ground-truth H36M joints (spec 5b read literally).
    #[arg(long, value_enum, default_value_t = JointSemantics::StackedHourglass)]
    pub(crate) joints: JointSemantics,
    /// Accepted for uniformity; generation is sequential (and fast).
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: usize,
}

/// Which joints the generated 2-D detections mark (see [`GenerateArgs::joints`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum JointSemantics {
    /// A Stacked Hourglass detector's joints, as in the real processed Human3.6M files.
    StackedHourglass,
    /// The exact H36M ground-truth joints.
    H36m,
}

fn write_npy(path: &Path, shape: &[usize], data: Vec<f64>) -> Result<()> {
    use ndarray_npy::WriteNpyExt;
    let arr = ArrayD::from_shape_vec(IxDyn(shape), data).context("shaping an output array")?;
    let mut bytes = Vec::new();
    arr.write_npy(&mut bytes).with_context(|| format!("encoding {}", path.display()))?;
    crate::common::atomic_write(path, &bytes)
}

/// Generates the data set into `out` (see [`GenerateArgs`]): the models crate's
/// [`sample_dataset`], written sequence by sequence, then `index.json`.
pub(crate) fn generate(
    gen: &Generator,
    out: &Path,
    frames_per_sequence: usize,
    seed: u64,
    noise_scale: f64,
    sh_joints: bool,
) -> Result<serde_json::Value> {
    let config = DatasetConfig { frames_per_sequence, seed, noise_scale, sh_joints };
    let mut files: Vec<serde_json::Map<String, serde_json::Value>> =
        SPLITS.iter().map(|_| Default::default()).collect();
    sample_dataset(gen, &config, |seq| -> Result<()> {
        let dir = out.join(SPLITS[seq.split].0);
        let (name, nf) = (&seq.name, seq.frames());
        write_npy(&dir.join(format!("{name}__joint_2d.npy")), &[nf, N_CAMERAS, N_JOINTS, 2], seq.joint_2d)?;
        write_npy(&dir.join(format!("{name}__joint_3d.npy")), &[nf, N_JOINTS, 3], seq.joint_3d)?;
        write_npy(&dir.join(format!("{name}__camera.npy")), &[nf, N_CAMERAS, 3, 3], seq.camera)?;
        let ranges: Vec<serde_json::Value> = seq
            .subjects
            .iter()
            .map(|(subject, r)| serde_json::json!({"subject": subject, "start": r.start, "end": r.end}))
            .collect();
        files[seq.split].insert(
            seq.name,
            serde_json::json!({"frames": nf, "subjects": ranges, "noise_px": seq.noise_px, "outlier_rate": seq.outlier_rate}),
        );
        Ok(())
    })?;
    let mut index = serde_json::Map::new();
    index.insert("seed".into(), seed.into());
    index.insert("frames_per_sequence".into(), frames_per_sequence.into());
    index.insert("noise_scale".into(), noise_scale.into());
    index.insert("sh_joints".into(), sh_joints.into());
    for ((split, subjects), files) in SPLITS.iter().zip(files) {
        index.insert((*split).into(), serde_json::json!({"subjects": subjects, "files": files}));
    }
    let index = serde_json::Value::Object(index);
    crate::common::write_json(&out.join("index.json"), &index)?;
    Ok(index)
}

/// The checks of `generate`'s numbers (the models crate makes them too), made by `run` before
/// it creates `--out`, in the command line's words.
fn check_settings(frames_per_sequence: usize, noise_scale: f64) -> Result<()> {
    ensure!(frames_per_sequence >= 1, "--frames-per-sequence must be at least 1");
    ensure!(noise_scale.is_finite() && noise_scale >= 0.0, "--noise-scale must be finite and >= 0");
    Ok(())
}

/// Runs `wiberg pose generate`.
pub(crate) fn run(args: GenerateArgs) -> Result<()> {
    let dir = match &args.model_dir {
        Some(d) => d.clone(),
        None => std::env::var_os(super::TOME2018_ENV)
            .map(PathBuf::from)
            .with_context(|| format!("no PPCA directory: pass --model-dir DIR or set {}", super::TOME2018_ENV))?,
    };
    let gen = Generator::load(&dir)?;
    // Checked before --out is created, so that a refused run writes nothing.
    check_settings(args.frames_per_sequence, args.noise_scale)?;
    // Held while the data set is written: a second process on the same --out stops at once.
    let _lock = crate::common::lock_out_dir(&args.out)?;
    let sh_joints = args.joints == JointSemantics::StackedHourglass;
    generate(&gen, &args.out, args.frames_per_sequence, args.seed, args.noise_scale, sh_joints)?;
    println!(
        "wrote {} training and {} testing sequences of {} frames to {}",
        2 * ACTIONS.len(),
        2 * ACTIONS.len(),
        args.frames_per_sequence,
        args.out.display()
    );
    Ok(())
}
