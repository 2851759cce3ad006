//! Data fixtures of the workspace's tests: one copy, included by path by the models crate's
//! integration tests and by the CLI's tests (unit and integration).

use ndarray::{Array3, Array4};
use ndarray_npy::WriteNpyExt;
use std::path::Path;
use wiberg_models::fusion::generate::{generate, GenerateConfig};
use wiberg_models::fusion::vot::{write_dataset_with, Dataset};

/// A synthetic tracker-fusion data set (VOT-style) of the given size.
pub(crate) fn small_dataset(trackers: usize, sequences: usize, mean_frames: f64, seed: u64) -> Dataset {
    generate(&GenerateConfig { sequences, trackers, seed, mean_frames }, || {}).0
}

/// Writes `bytes` to `path` (for the models crate's writers, which take the caller's writer).
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Writes a fusion data set in the VOT layout under `root`.
pub(crate) fn write_vot(root: &Path, data: &Dataset) {
    write_dataset_with(root, data, write_file).unwrap();
}

/// A real image file of `size` pixels (PNG or JPEG by the extension), written with plotters'
/// bitmap encoder.
pub(crate) fn write_image(path: &Path, size: (u32, u32)) {
    use plotters::prelude::*;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).unwrap();
    root.present().unwrap();
}

/// The bytes of `a` as an `.npy` file.
pub(crate) fn npy_bytes<A: WriteNpyExt>(a: &A) -> Vec<u8> {
    let mut b = Vec::new();
    a.write_npy(&mut b).unwrap();
    b
}

/// Well-formed pose arrays of `frames` frames: detections `(frames, 4, 17, 2)` and 3-D joints
/// `(frames, 17, 3)`.
pub(crate) fn pose_arrays(frames: usize) -> (Array4<f64>, Array3<f64>) {
    let d2 = Array4::from_shape_fn((frames, 4, 17, 2), |(f, c, j, a)| 500.0 + (f + c * 7 + j * 3 + a) as f64);
    let d3 = Array3::from_shape_fn((frames, 17, 3), |(f, j, a)| 100.0 * (f + j + a) as f64);
    (d2, d3)
}

/// The sequence `name` in `dir`: its `__joint_2d.npy` and `__joint_3d.npy` files.
pub(crate) fn write_pose_dir(dir: &Path, name: &str, b2: &[u8], b3: &[u8]) {
    std::fs::write(dir.join(format!("{name}__joint_2d.npy")), b2).unwrap();
    std::fs::write(dir.join(format!("{name}__joint_3d.npy")), b3).unwrap();
}
