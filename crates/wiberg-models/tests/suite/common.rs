//! Helpers shared by the integration tests.

use ndarray::{ArrayD, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::path::{Path, PathBuf};
use wiberg_models::pose::generate::{frame, ActionStyle, Detector, Generator};
use wiberg_models::pose::generate::{ACTIONS, TEST_SUBJECTS, TRAIN_SUBJECTS};
use wiberg_models::pose::params::{N_CAMERAS, N_JOINTS, N_MODELS};

/// The Tome et al. parameter directory (`$WIBERG_TOME2018_DIR`, else
/// `../shared/data/tome2018` beside the repository), or `None` (with a note) when absent
/// outside CI.
pub fn tome_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("WIBERG_TOME2018_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tome2018"));
    if dir.join("avg_cameras__cams.npy").exists() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI=true but the Tome et al. 2018 parameters are not at {}", dir.display());
    }
    eprintln!("note: {} not found; set WIBERG_TOME2018_DIR to run this test", dir.display());
    None
}

/// Writes `bytes` to `path` (for the crate's writers, which take the caller's writer).
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Writes a fusion data set in the VOT layout under `root`.
pub fn write_vot(root: &Path, data: &wiberg_models::fusion::vot::Dataset) {
    wiberg_models::fusion::vot::write_dataset_with(root, data, write_file).unwrap();
}

fn write_npy(path: &Path, shape: &[usize], data: Vec<f64>) {
    let a = ArrayD::from_shape_vec(IxDyn(shape), data).unwrap();
    ndarray_npy::write_npy(path, &a).unwrap();
}

/// A pose data set in `out`: `training/` and `testing/` with the `<name>__joint_2d.npy` and
/// `<name>__joint_3d.npy` pairs, sampled from the PPCA files in `tome` with the draws of
/// `wiberg pose generate --joints h36m --frames-per-sequence N --seed S` in the same order, so
/// the frames are the ones that command writes (it also writes cameras and `index.json`, which
/// these tests do not read).
pub fn generate_pose(tome: &Path, out: &Path, frames_per_sequence: usize, seed: u64) {
    let gen = Generator::load(tome).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let styles: Vec<ActionStyle> = ACTIONS
        .iter()
        .map(|_| {
            let raw: [f64; N_MODELS] = std::array::from_fn(|_| -rng.random::<f64>().max(1e-12).ln());
            let sum: f64 = raw.iter().sum();
            ActionStyle { mix: raw.map(|v| v / sum), coef_scale: rng.random_range(0.7..1.2) }
        })
        .collect();
    for (split, subjects) in [("training", &TRAIN_SUBJECTS[..]), ("testing", &TEST_SUBJECTS[..])] {
        let subject_scale: Vec<f64> = subjects
            .iter()
            .map(|_| 1.0 + 0.05 * Normal::new(0.0, 1.0).map(|n| n.sample(&mut rng)).unwrap_or(0.0))
            .collect();
        let dir = out.join(split);
        std::fs::create_dir_all(&dir).unwrap();
        for (a, action) in ACTIONS.iter().enumerate() {
            for suffix in ["", "_1"] {
                let noise_px: f64 = rng.random_range(4.0..6.0);
                let outlier_rate: f64 = rng.random_range(0.03..0.05);
                let detector = Detector { noise_px, outlier_rate, swap_rate: 0.02, sh_joints: false };
                let (mut j2, mut j3) = (Vec::new(), Vec::new());
                for (s, &scale) in subject_scale.iter().enumerate() {
                    let n =
                        frames_per_sequence / subjects.len() + usize::from(s < frames_per_sequence % subjects.len());
                    for _ in 0..n {
                        let (world, det) = frame(&gen, &styles[a], scale, &detector, &mut rng);
                        j2.extend(det.iter().flatten().flatten());
                        j3.extend(world.iter().flatten());
                    }
                }
                let nf = j3.len() / (N_JOINTS * 3);
                write_npy(&dir.join(format!("{action}{suffix}__joint_2d.npy")), &[nf, N_CAMERAS, N_JOINTS, 2], j2);
                write_npy(&dir.join(format!("{action}{suffix}__joint_3d.npy")), &[nf, N_JOINTS, 3], j3);
            }
        }
    }
}
