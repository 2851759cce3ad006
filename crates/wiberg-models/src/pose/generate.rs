//! Synthetic multi-camera Human3.6M-like data (spec section 5b): poses from the PPCA models,
//! the real average camera rotations, perspective projection, detection noise, outliers and
//! left/right swaps: one frame ([`frame`]) or a whole data set, sequence by sequence
//! ([`sample_dataset`]); writing files is the caller's.

// Index loops over cameras, joints and axes mirror the formulas.
#![allow(clippy::needless_range_loop)]

use super::data::{Frame2d, Pose3d};
use super::h5;
use super::params::{N_CAMERAS, N_JOINTS, N_MODELS, N_PCA};
use crate::error::{Context, Error, Result};
use ndarray::ArrayD;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, StandardNormal};
use std::ops::Range;
use std::path::Path;

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
            return h5::read_f64(&h, name);
        }
    }
    Err(Error::Invalid(format!("{}: neither {stem}__{name}.npy nor {stem}.h5 found", dir.display())))
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
        if mu.shape() != [N_MODELS, 3, N_JOINTS] {
            return Err(Error::Invalid(format!("mu_3: shape {:?}", mu.shape())));
        }
        if e.shape() != [N_MODELS, N_PCA, 3, N_JOINTS] {
            return Err(Error::Invalid(format!("e_3: shape {:?}", e.shape())));
        }
        if sigma.shape() != [N_MODELS, N_PCA + 1] {
            return Err(Error::Invalid(format!("sigma_3: shape {:?}", sigma.shape())));
        }
        if cams.shape() != [N_CAMERAS, 3, 3] {
            return Err(Error::Invalid(format!("cams: shape {:?}", cams.shape())));
        }
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
                if g.sigma[m][k].is_nan() || g.sigma[m][k] <= 0.0 {
                    return Err(Error::Invalid(format!("sigma_3[{m}, {k}] must be positive")));
                }
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
        if !(g.mu.iter().flatten().flatten().all(|v| v.is_finite())) {
            return Err(Error::Invalid("non-finite mean pose".into()));
        }
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
#[derive(Debug, Clone, Copy)]
pub struct ActionStyle {
    /// Probability of each PPCA model.
    pub mix: [f64; N_MODELS],
    /// Scale of the PCA coefficients.
    pub coef_scale: f64,
}

/// How the simulated 2-D detector errs.
#[derive(Debug, Clone, Copy)]
pub struct Detector {
    /// Gaussian noise per coordinate (pixels).
    pub noise_px: f64,
    /// Probability that a joint is displaced by up to 100 px.
    pub outlier_rate: f64,
    /// Probability that a view swaps every left/right pair.
    pub swap_rate: f64,
    /// Mark the Stacked Hourglass detector's joints instead of the H36M ones.
    pub sh_joints: bool,
}

/// Generates one frame: a world pose (mm) and its four noisy detections.
pub fn frame(
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

/// The settings of a generated data set (`wiberg pose generate`).
#[derive(Debug, Clone, Copy)]
pub struct DatasetConfig {
    /// Frames per sequence, split evenly over the subjects of the split (at least 1).
    pub frames_per_sequence: usize,
    /// Seed of every draw.
    pub seed: u64,
    /// Multiplies the detection noise, the outlier rate and the left/right swap rate (1 = the
    /// spec's realistic values; 0 = exact projections).
    pub noise_scale: f64,
    /// Mark the Stacked Hourglass detector's joints instead of the H36M ones ([`Detector`]).
    pub sh_joints: bool,
}

/// The two splits of a data set, in the order [`sample_dataset`] generates them: the name
/// (`training`, `testing`) and its subjects.
pub const SPLITS: [(&str, &[&str]); 2] = [("training", &TRAIN_SUBJECTS), ("testing", &TEST_SUBJECTS)];

/// One generated sequence (one file set `<name>__joint_2d.npy`, `__joint_3d.npy`,
/// `__camera.npy` of the npy layout the evaluation reads).
#[derive(Debug, Clone)]
pub struct GeneratedSequence {
    /// The split, an index into [`SPLITS`].
    pub split: usize,
    /// `<action>` or `<action>_1`.
    pub name: String,
    /// Detections, `(frames, cameras, joints, 2)` row-major, pixels.
    pub joint_2d: Vec<f64>,
    /// World poses, `(frames, joints, 3)` row-major, mm.
    pub joint_3d: Vec<f64>,
    /// Camera rotations, `(frames, cameras, 3, 3)` row-major (each the transpose of the
    /// generator's rotation, as the processed Human3.6M files store them).
    pub camera: Vec<f64>,
    /// Each subject of the split and its frames.
    pub subjects: Vec<(&'static str, Range<usize>)>,
    /// The detection noise of this sequence (pixels).
    pub noise_px: f64,
    /// The outlier rate of this sequence.
    pub outlier_rate: f64,
}

impl GeneratedSequence {
    /// The number of frames.
    pub fn frames(&self) -> usize {
        self.joint_3d.len() / (N_JOINTS * 3)
    }
}

/// Samples a data set: per split ([`SPLITS`]), per action, two sequences (`<action>`,
/// `<action>_1`), each handed to `sink` as soon as it is drawn (so memory holds one sequence).
/// Per action a mix of PPCA models and a coefficient scale, per subject a body scale, per
/// sequence a detection noise and outlier rate; the draws come in a fixed order from one
/// generator seeded by `config.seed`, so a data set is a function of `config` and the PPCA
/// files.
///
/// Errors: `frames_per_sequence` of 0, `noise_scale` negative or not finite, or the sink's.
pub fn sample_dataset<E: From<Error>>(
    gen: &Generator,
    config: &DatasetConfig,
    mut sink: impl FnMut(GeneratedSequence) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let DatasetConfig { frames_per_sequence, seed, noise_scale, sh_joints } = *config;
    if frames_per_sequence == 0 {
        return Err(Error::Invalid("frames per sequence must be at least 1".into()).into());
    }
    if !(noise_scale.is_finite() && noise_scale >= 0.0) {
        return Err(Error::Invalid(format!("noise scale must be finite and >= 0, got {noise_scale}")).into());
    }
    let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
    let styles: Vec<ActionStyle> = ACTIONS
        .iter()
        .map(|_| {
            let raw: [f64; N_MODELS] = std::array::from_fn(|_| -rng.random::<f64>().max(1e-12).ln());
            let sum: f64 = raw.iter().sum();
            ActionStyle { mix: raw.map(|v| v / sum), coef_scale: rng.random_range(0.7..1.2) }
        })
        .collect();
    for (split, (_, subjects)) in SPLITS.iter().enumerate() {
        let subject_scale: Vec<f64> = subjects
            .iter()
            .map(|_| 1.0 + 0.05 * Normal::new(0.0, 1.0).map(|n| n.sample(&mut rng)).unwrap_or(0.0))
            .collect();
        for (a, action) in ACTIONS.iter().enumerate() {
            for suffix in ["", "_1"] {
                let noise_px: f64 = noise_scale * rng.random_range(4.0..6.0);
                let outlier_rate: f64 = noise_scale * rng.random_range(0.03..0.05);
                let detector = Detector { noise_px, outlier_rate, swap_rate: noise_scale * 0.02, sh_joints };
                let mut seq = GeneratedSequence {
                    split,
                    name: format!("{action}{suffix}"),
                    joint_2d: Vec::with_capacity(frames_per_sequence * N_CAMERAS * N_JOINTS * 2),
                    joint_3d: Vec::with_capacity(frames_per_sequence * N_JOINTS * 3),
                    camera: Vec::with_capacity(frames_per_sequence * N_CAMERAS * 9),
                    subjects: Vec::with_capacity(subjects.len()),
                    noise_px,
                    outlier_rate,
                };
                let mut start = 0;
                for (s, subject) in subjects.iter().enumerate() {
                    let n =
                        frames_per_sequence / subjects.len() + usize::from(s < frames_per_sequence % subjects.len());
                    for _ in 0..n {
                        let (world, det) = frame(gen, &styles[a], subject_scale[s], &detector, &mut rng);
                        seq.joint_2d.extend(det.iter().flatten().flatten());
                        seq.joint_3d.extend(world.iter().flatten());
                        for r in gen.cams.iter() {
                            for row in 0..3 {
                                for col in 0..3 {
                                    seq.camera.push(r[col][row]);
                                }
                            }
                        }
                    }
                    seq.subjects.push((*subject, start..start + n));
                    start += n;
                }
                sink(seq)?;
            }
        }
    }
    Ok(())
}
