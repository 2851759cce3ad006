//! Helpers shared by the integration tests.

use std::path::Path;
use std::process::Command;

// One copy of the helpers that the crate's unit tests share with these tests.
#[path = "../../src/test_support.rs"]
mod test_support;
pub(crate) use test_support::{
    npy_bytes, pose_arrays, small_dataset, tome_dir, write_image, write_pose_dir, write_vot,
};

/// A pose data set (training/, testing/, index.json) in `out`, written by the binary's
/// `wiberg pose generate` from the PPCA files in `tome`, with the exact H36M joints.
pub fn generate_pose(tome: &Path, out: &Path, frames_per_sequence: usize, seed: u64) {
    let o = Command::new(env!("CARGO_BIN_EXE_wiberg"))
        .args(["pose", "generate", "--joints", "h36m", "--model-dir"])
        .arg(tome)
        .arg("--frames-per-sequence")
        .arg(frames_per_sequence.to_string())
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "pose generate: {}", String::from_utf8_lossy(&o.stderr));
}
