//! Helpers shared by the integration tests.

#[path = "../support/tome_dir.rs"]
mod tome;
pub(crate) use tome::tome_dir;
#[path = "../support/fixtures.rs"]
mod fixtures;
pub(crate) use fixtures::{npy_bytes, pose_arrays, small_dataset, write_file, write_image, write_pose_dir, write_vot};

use ndarray::{ArrayD, IxDyn};
use std::path::Path;
use wiberg_models::pose::generate::{sample_dataset, DatasetConfig, Generator, SPLITS};
use wiberg_models::pose::params::{N_CAMERAS, N_JOINTS};

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
