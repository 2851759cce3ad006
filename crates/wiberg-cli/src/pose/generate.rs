//! Synthetic multi-camera Human3.6M-like data (spec section 5b): poses from the PPCA models,
//! the real average camera rotations, perspective projection, detection noise, outliers,
//! left/right swaps and joint 9 unobserved; written in the npy layout `eval` reads.

use super::data::{Frame2d, Pose3d};
use super::h5;
use super::params::{N_CAMERAS, N_JOINTS, N_MODELS, N_PCA};
use anyhow::{ensure, Context, Result};
use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, StandardNormal};
use std::path::{Path, PathBuf};

/// The 15 Human3.6M actions.
pub const ACTIONS: [&str; 15] = [
    "Directions",
    "Discussion",
    "Eating",
    "Greeting",
    "Phoning",
    "Photo",
    "Posing",
    "Purchases",
    "Sitting",
    "SittingDown",
    "Smoking",
    "Waiting",
    "WalkDog",
    "Walking",
    "WalkTogether",
];
/// Training subjects.
pub const TRAIN_SUBJECTS: [&str; 5] = ["S1", "S5", "S6", "S7", "S8"];
/// Test subjects.
pub const TEST_SUBJECTS: [&str; 2] = ["S9", "S11"];
/// The anatomical bones of the 17-joint skeleton (for the bone-length check and drawing).
pub const BONES: [(usize, usize); 16] = [
    (0, 1),
    (1, 2),
    (2, 3),
    (0, 4),
    (4, 5),
    (5, 6),
    (0, 7),
    (7, 8),
    (8, 9),
    (9, 10),
    (8, 11),
    (11, 12),
    (12, 13),
    (8, 14),
    (14, 15),
    (15, 16),
];
/// Left/right joint pairs (hips, knees, feet, shoulders, elbows, wrists).
const LR_PAIRS: [(usize, usize); 6] = [(1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16)];
/// Focal length (px), principal point, camera distance (mm), image size.
const FOCAL: f64 = 1145.0;
const PRINCIPAL: [f64; 2] = [512.0, 512.0];
const CAMERA_DISTANCE: f64 = 5300.0;
const LOOK_AT: [f64; 3] = [0.0, 0.0, 900.0];
/// Target root-mean-square deviation of a joint from the mean pose (mm).
const TARGET_RMS_DEVIATION: f64 = 130.0;
/// Largest relative bone-length change accepted.
const MAX_BONE_CHANGE: f64 = 0.15;

/// Arguments of `wiberg pose generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Output directory (gets training/, testing/ and index.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Frames per sequence file (split evenly over the subjects of the split).
    #[arg(long, default_value_t = 200)]
    pub frames_per_sequence: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Directory with the PPCA files and cameras (`model_parameters__*_3.npy`,
    /// `avg_cameras__cams.npy`, or the authors' .h5). Default: $WIBERG_TOME2018_DIR.
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Multiplies the detection noise, the outlier rate and the left/right swap rate (1 = the
    /// spec's realistic values; 0 = exact projections, for diagnosis).
    #[arg(long, default_value_t = 1.0)]
    pub noise_scale: f64,
    /// Which joints the 2-D detections mark. `stacked-hourglass` (default): the detector's
    /// "thorax" is reported as H36M joint 7 (Spine) and its "upper neck" as joint 8 (Thorax),
    /// as in the processed Human3.6M files the authors' checkpoint was trained on (their 2-D
    /// joints come from a Stacked Hourglass detector). `h36m`: the exact projections of the
    /// ground-truth H36M joints (spec 5b read literally).
    #[arg(long, value_enum, default_value_t = JointSemantics::StackedHourglass)]
    pub joints: JointSemantics,
    /// Accepted for uniformity; generation is sequential (and fast).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Which joints the generated 2-D detections mark (see [`GenerateArgs::joints`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JointSemantics {
    /// A Stacked Hourglass detector's joints, as in the real processed Human3.6M files.
    StackedHourglass,
    /// The exact H36M ground-truth joints.
    H36m,
}

/// The PPCA models and cameras the generator samples from.
#[derive(Debug, Clone)]
pub struct Generator {
    /// Mean pose per model (joint, xyz) in mm.
    pub mu: Vec<Pose3d>,
    /// Basis vectors per model.
    pub e: Vec<Vec<Pose3d>>,
    /// Per-basis regulariser weights (precision-like).
    pub sigma: Vec<[f64; N_PCA]>,
    /// World-to-camera rotations.
    pub cams: [[[f64; 3]; 3]; N_CAMERAS],
    /// Coefficient scale tau per model.
    pub tau: [f64; N_MODELS],
}

fn read(dir: &Path, stem: &str, name: &str) -> Result<ArrayD<f64>> {
    let npy = dir.join(format!("{stem}__{name}.npy"));
    if npy.exists() {
        return ndarray_npy::read_npy(&npy).with_context(|| format!("reading {}", npy.display()));
    }
    for h in [
        dir.join(format!("{stem}.h5")),
        dir.join("h5").join(format!("{stem}.h5")),
        dir.join("data").join(format!("{stem}.h5")),
    ] {
        if h.exists() {
            return Ok(h5::read_f64(&h, name)?);
        }
    }
    anyhow::bail!("{}: neither {stem}__{name}.npy nor {stem}.h5 found", dir.display())
}

fn bone_lengths(p: &Pose3d) -> [f64; 16] {
    let mut out = [0.0; 16];
    for (k, &(a, b)) in BONES.iter().enumerate() {
        out[k] = (0..3).map(|d| (p[a][d] - p[b][d]).powi(2)).sum::<f64>().sqrt();
    }
    out
}

impl Generator {
    /// Loads the PPCA models (M = 3) and cameras from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let mu = read(dir, "model_parameters", "mu_3")?;
        let e = read(dir, "model_parameters", "e_3")?;
        let sigma = read(dir, "model_parameters", "sigma_3")?;
        let cams = read(dir, "avg_cameras", "cams")?;
        ensure!(mu.shape() == [N_MODELS, 3, N_JOINTS], "mu_3: shape {:?}", mu.shape());
        ensure!(e.shape() == [N_MODELS, N_PCA, 3, N_JOINTS], "e_3: shape {:?}", e.shape());
        ensure!(sigma.shape() == [N_MODELS, N_PCA + 1], "sigma_3: shape {:?}", sigma.shape());
        ensure!(cams.shape() == [N_CAMERAS, 3, 3], "cams: shape {:?}", cams.shape());
        let mut g = Generator {
            mu: vec![[[0.0; 3]; N_JOINTS]; N_MODELS],
            e: vec![vec![[[0.0; 3]; N_JOINTS]; N_PCA]; N_MODELS],
            sigma: vec![[0.0; N_PCA]; N_MODELS],
            cams: [[[0.0; 3]; 3]; N_CAMERAS],
            tau: [0.0; N_MODELS],
        };
        for m in 0..N_MODELS {
            for j in 0..N_JOINTS {
                for d in 0..3 {
                    g.mu[m][j][d] = mu[[m, d, j]];
                    for k in 0..N_PCA {
                        g.e[m][k][j][d] = e[[m, k, d, j]];
                    }
                }
            }
            for k in 0..N_PCA {
                g.sigma[m][k] = sigma[[m, k]];
                ensure!(g.sigma[m][k] > 0.0, "sigma_3[{m}, {k}] must be positive");
            }
            // c_k ~ N(0, (tau / sigma_k)^2) and orthonormal bases: the mean squared joint
            // deviation is tau^2 sum_k sigma_k^-2 / 17.
            let s: f64 = g.sigma[m].iter().map(|v| v.powi(-2)).sum();
            g.tau[m] = TARGET_RMS_DEVIATION * (N_JOINTS as f64 / s).sqrt();
        }
        for c in 0..N_CAMERAS {
            for r in 0..3 {
                for k in 0..3 {
                    g.cams[c][r][k] = cams[[c, r, k]];
                }
            }
        }
        ensure!(g.mu.iter().flatten().flatten().all(|v| v.is_finite()), "non-finite mean pose");
        Ok(g)
    }

    /// A pose of model `m` with coefficient scale `coef_scale` (in the model frame, mm),
    /// rejecting bone lengths more than 15 % off the mean pose's.
    pub fn sample_pose(&self, m: usize, coef_scale: f64, rng: &mut ChaCha8Rng) -> Pose3d {
        let mean_bones = bone_lengths(&self.mu[m]);
        let mut shrink = 1.0;
        loop {
            for _ in 0..50 {
                let mut p = self.mu[m];
                for k in 0..N_PCA {
                    let sd = shrink * coef_scale * self.tau[m] / self.sigma[m][k];
                    let c: f64 = Normal::new(0.0, sd).map(|n| n.sample(rng)).unwrap_or(0.0);
                    for (pj, ej) in p.iter_mut().zip(&self.e[m][k]) {
                        for d in 0..3 {
                            pj[d] += c * ej[d];
                        }
                    }
                }
                let ok = bone_lengths(&p).iter().zip(&mean_bones).all(|(b, m0)| (b - m0).abs() <= MAX_BONE_CHANGE * m0);
                if ok {
                    return p;
                }
            }
            // Too many rejections at this scale: shrink the coefficients (the mean pose itself
            // always passes, so this terminates).
            shrink *= 0.8;
        }
    }

    /// Projects a world pose into camera `c` (pixels).
    pub fn project(&self, c: usize, p: &Pose3d) -> [[f64; 2]; N_JOINTS] {
        let r = &self.cams[c];
        // Centre C = look-at - d * (row 2 of R): the optical axis passes through the look-at point.
        let centre: [f64; 3] = std::array::from_fn(|d| LOOK_AT[d] - CAMERA_DISTANCE * r[2][d]);
        let mut out = [[0.0; 2]; N_JOINTS];
        for j in 0..N_JOINTS {
            let x: [f64; 3] = std::array::from_fn(|d| p[j][d] - centre[d]);
            let xc: [f64; 3] = std::array::from_fn(|a| (0..3).map(|d| r[a][d] * x[d]).sum());
            out[j] = [FOCAL * xc[0] / xc[2] + PRINCIPAL[0], FOCAL * xc[1] / xc[2] + PRINCIPAL[1]];
        }
        out
    }
}

/// Per-action style: component mix and coefficient scale.
struct ActionStyle {
    mix: [f64; N_MODELS],
    coef_scale: f64,
}

fn write_npy(path: &Path, shape: &[usize], data: Vec<f64>) -> Result<()> {
    use ndarray_npy::WriteNpyExt;
    let arr = ArrayD::from_shape_vec(IxDyn(shape), data).context("shaping an output array")?;
    let mut bytes = Vec::new();
    arr.write_npy(&mut bytes).with_context(|| format!("encoding {}", path.display()))?;
    crate::common::atomic_write(path, &bytes)
}

/// How the simulated 2-D detector errs.
#[derive(Debug, Clone, Copy)]
struct Detector {
    noise_px: f64,
    outlier_rate: f64,
    swap_rate: f64,
    sh_joints: bool,
}

/// Generates one frame: a world pose (mm) and its four noisy detections.
fn frame(
    gen: &Generator,
    style: &ActionStyle,
    subject_scale: f64,
    det_model: &Detector,
    rng: &mut ChaCha8Rng,
) -> (Pose3d, Frame2d) {
    let Detector { noise_px, outlier_rate, swap_rate, sh_joints } = *det_model;
    let u: f64 = rng.random();
    let mut m = 0;
    let mut acc = 0.0;
    for (k, w) in style.mix.iter().enumerate() {
        acc += w;
        if u < acc {
            m = k;
            break;
        }
        m = k;
    }
    let local = gen.sample_pose(m, style.coef_scale, rng);
    let yaw: f64 = rng.random_range(0.0..std::f64::consts::TAU);
    let (s, c) = yaw.sin_cos();
    let tx: f64 = rng.random_range(-1500.0..1500.0);
    let ty: f64 = rng.random_range(-1500.0..1500.0);
    let mut world = [[0.0; 3]; N_JOINTS];
    for j in 0..N_JOINTS {
        let p = local[j];
        world[j] = [
            subject_scale * (c * p[0] - s * p[1]) + tx,
            subject_scale * (s * p[0] + c * p[1]) + ty,
            subject_scale * p[2],
        ];
    }
    let feet = world[3][2].min(world[6][2]);
    for p in world.iter_mut() {
        p[2] -= feet;
    }
    let mut seen = world;
    if sh_joints {
        // Stacked Hourglass "thorax" -> H36M 7, "upper neck" -> H36M 8: the 2-D joints sit
        // where the detector's joints are, the ground truth stays H36M's.
        seen[7] = world[8];
        seen[8] = std::array::from_fn(|d| 0.5 * (world[8][d] + world[10][d]));
    }
    let mut det = [[[0.0; 2]; N_JOINTS]; N_CAMERAS];
    for (cam, view) in det.iter_mut().enumerate() {
        *view = gen.project(cam, &seen);
        for p in view.iter_mut() {
            p[0] += noise_px * rng.sample::<f64, _>(StandardNormal);
            p[1] += noise_px * rng.sample::<f64, _>(StandardNormal);
            if rng.random::<f64>() < outlier_rate {
                let r = 100.0 * rng.random::<f64>().sqrt();
                let a: f64 = rng.random_range(0.0..std::f64::consts::TAU);
                p[0] += r * a.cos();
                p[1] += r * a.sin();
            }
        }
        if rng.random::<f64>() < swap_rate {
            // A detector's left/right confusion: all pairs of the view at once.
            for &(a, b) in LR_PAIRS.iter() {
                view.swap(a, b);
            }
        }
        view[9] = [0.0, 0.0];
    }
    (world, det)
}

/// Generates the data set into `out` (see [`GenerateArgs`]).
pub fn generate(
    gen: &Generator,
    out: &Path,
    frames_per_sequence: usize,
    seed: u64,
    noise_scale: f64,
    sh_joints: bool,
) -> Result<serde_json::Value> {
    check_settings(frames_per_sequence, noise_scale)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let styles: Vec<ActionStyle> = ACTIONS
        .iter()
        .map(|_| {
            let raw: [f64; N_MODELS] = std::array::from_fn(|_| -rng.random::<f64>().max(1e-12).ln());
            let sum: f64 = raw.iter().sum();
            ActionStyle { mix: raw.map(|v| v / sum), coef_scale: rng.random_range(0.7..1.2) }
        })
        .collect();
    let mut index = serde_json::Map::new();
    index.insert("seed".into(), seed.into());
    index.insert("frames_per_sequence".into(), frames_per_sequence.into());
    index.insert("noise_scale".into(), noise_scale.into());
    index.insert("sh_joints".into(), sh_joints.into());
    for (split, subjects) in [("training", &TRAIN_SUBJECTS[..]), ("testing", &TEST_SUBJECTS[..])] {
        let subject_scale: Vec<f64> = subjects
            .iter()
            .map(|_| 1.0 + 0.05 * Normal::new(0.0, 1.0).map(|n| n.sample(&mut rng)).unwrap_or(0.0))
            .collect();
        let dir = out.join(split);
        let mut files = serde_json::Map::new();
        for (a, action) in ACTIONS.iter().enumerate() {
            for suffix in ["", "_1"] {
                let name = format!("{action}{suffix}");
                let noise_px: f64 = noise_scale * rng.random_range(4.0..6.0);
                let outlier_rate: f64 = noise_scale * rng.random_range(0.03..0.05);
                let detector = Detector { noise_px, outlier_rate, swap_rate: noise_scale * 0.02, sh_joints };
                let mut j2 = Vec::with_capacity(frames_per_sequence * N_CAMERAS * N_JOINTS * 2);
                let mut j3 = Vec::with_capacity(frames_per_sequence * N_JOINTS * 3);
                let mut cam = Vec::with_capacity(frames_per_sequence * N_CAMERAS * 9);
                let mut ranges = Vec::new();
                let mut start = 0;
                for (s, subject) in subjects.iter().enumerate() {
                    let n =
                        frames_per_sequence / subjects.len() + usize::from(s < frames_per_sequence % subjects.len());
                    for _ in 0..n {
                        let (world, det) = frame(gen, &styles[a], subject_scale[s], &detector, &mut rng);
                        j2.extend(det.iter().flatten().flatten());
                        j3.extend(world.iter().flatten());
                        for r in gen.cams.iter() {
                            for row in 0..3 {
                                for col in 0..3 {
                                    cam.push(r[col][row]);
                                }
                            }
                        }
                    }
                    ranges.push(serde_json::json!({"subject": subject, "start": start, "end": start + n}));
                    start += n;
                }
                let nf = start;
                write_npy(&dir.join(format!("{name}__joint_2d.npy")), &[nf, N_CAMERAS, N_JOINTS, 2], j2)?;
                write_npy(&dir.join(format!("{name}__joint_3d.npy")), &[nf, N_JOINTS, 3], j3)?;
                write_npy(&dir.join(format!("{name}__camera.npy")), &[nf, N_CAMERAS, 3, 3], cam)?;
                files.insert(
                    name,
                    serde_json::json!({"frames": nf, "subjects": ranges, "noise_px": noise_px, "outlier_rate": outlier_rate}),
                );
            }
        }
        index.insert(split.into(), serde_json::json!({"subjects": subjects, "files": files}));
    }
    let index = serde_json::Value::Object(index);
    crate::common::write_json(&out.join("index.json"), &index)?;
    Ok(index)
}

/// The checks of `generate`'s numbers, shared with `run` (which makes them before it creates
/// `--out`).
fn check_settings(frames_per_sequence: usize, noise_scale: f64) -> Result<()> {
    ensure!(frames_per_sequence >= 1, "--frames-per-sequence must be at least 1");
    ensure!(noise_scale.is_finite() && noise_scale >= 0.0, "--noise-scale must be finite and >= 0");
    Ok(())
}

/// Runs `wiberg pose generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
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
