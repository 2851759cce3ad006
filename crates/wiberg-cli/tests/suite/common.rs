//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Tome et al. parameter directory, or `None` (with a note) when absent outside CI.
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

/// Writes `bytes` to `path` (for the models crate's writers, which take the caller's writer).
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Writes a fusion data set in the VOT layout under `root`.
pub fn write_vot(root: &Path, data: &wiberg_models::fusion::vot::Dataset) {
    wiberg_models::fusion::vot::write_dataset_with(root, data, write_file).unwrap();
}

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
