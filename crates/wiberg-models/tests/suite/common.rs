//! Helpers shared by the integration tests.

use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};
use wiberg_models::pose::generate::{sample_dataset, DatasetConfig, Generator, SPLITS};
use wiberg_models::pose::params::{N_CAMERAS, N_JOINTS};

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
/// `<name>__joint_3d.npy` pairs of `wiberg pose generate --joints h36m --frames-per-sequence N
/// --seed S` (the same sampler; that command also writes cameras and `index.json`, which
/// these tests do not read).
pub fn generate_pose(tome: &Path, out: &Path, frames_per_sequence: usize, seed: u64) {
    let gen = Generator::load(tome).unwrap();
    let config = DatasetConfig { frames_per_sequence, seed, noise_scale: 1.0, sh_joints: false };
    sample_dataset(&gen, &config, |seq| -> Result<(), wiberg_models::Error> {
        let dir = out.join(SPLITS[seq.split].0);
        std::fs::create_dir_all(&dir).unwrap();
        let nf = seq.frames();
        write_npy(&dir.join(format!("{}__joint_2d.npy", seq.name)), &[nf, N_CAMERAS, N_JOINTS, 2], seq.joint_2d);
        write_npy(&dir.join(format!("{}__joint_3d.npy", seq.name)), &[nf, N_JOINTS, 3], seq.joint_3d);
        Ok(())
    })
    .unwrap();
}
