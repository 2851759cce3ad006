//! Multi-camera pose data: a directory of sequences `<name>__joint_2d.npy` (N,4,17,2) float64
//! pixels and `<name>__joint_3d.npy` (N,17,3) float64 mm, Human3.6M joint and camera order.

pub use super::npy::{check_npy, parse_npy, parse_npy_f64};
use super::params::{N_CAMERAS, N_JOINTS};
use crate::error::{bail, ensure, Context};
use crate::Result;
use ndarray::ArrayD;
use std::path::Path;

/// One frame's detections: camera, joint, (x, y) in pixels.
pub type Frame2d = [[[f64; 2]; N_JOINTS]; N_CAMERAS];
/// One frame's ground truth: joint, (x, y, z) in mm.
pub type Pose3d = [[f64; 3]; N_JOINTS];

/// One sequence (one file pair).
#[derive(Debug, Clone)]
pub struct Sequence {
    /// File stem, e.g. `Directions_1`.
    pub name: String,
    /// The action it counts toward (`Directions_1` -> `Directions`).
    pub action: String,
    /// Detections per frame.
    pub joint_2d: Vec<Frame2d>,
    /// Ground truth per frame.
    pub joint_3d: Vec<Pose3d>,
}

/// The action a sequence name counts toward: a trailing `_<digits>` is dropped.
pub fn action_of(name: &str) -> String {
    match name.rsplit_once('_') {
        Some((head, tail)) if !head.is_empty() && !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()) => {
            head.to_string()
        }
        _ => name.to_string(),
    }
}

/// Decodes float64 `.npy` bytes of shape `(N, want...)` with only finite values; errors name
/// `what`, the shape, or the index of the first non-finite value.
pub fn parse_array(bytes: &[u8], want: &[usize], what: &str) -> Result<ArrayD<f64>> {
    let a = parse_npy_f64(bytes, what)?;
    let shape = a.shape();
    ensure!(
        shape.len() == want.len() + 1 && &shape[1..] == want,
        "{what}: shape {:?}, expected (N, {})",
        shape,
        want.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
    );
    if let Some(i) = a.iter().position(|v| !v.is_finite()) {
        let mut rem = i;
        let mut idx = vec![0; shape.len()];
        for (k, &d) in shape.iter().enumerate().rev() {
            idx[k] = rem % d;
            rem /= d;
        }
        bail!("{what}: non-finite value at index {:?}", idx);
    }
    Ok(a)
}

fn read_array(path: &Path, want: &[usize]) -> Result<ArrayD<f64>> {
    ensure!(path.exists(), "missing file {}", path.display());
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse_array(&bytes, want, &path.display().to_string())
}

/// Loads the sequence `name` from `dir`.
pub fn load_sequence(dir: &Path, name: &str) -> Result<Sequence> {
    let p2 = dir.join(format!("{name}__joint_2d.npy"));
    let p3 = dir.join(format!("{name}__joint_3d.npy"));
    let a2 = read_array(&p2, &[N_CAMERAS, N_JOINTS, 2])?;
    let a3 = read_array(&p3, &[N_JOINTS, 3])?;
    sequence_from(name, &a2, &a3, &p2.display().to_string(), &p3.display().to_string())
}

/// Builds the sequence `name` from the bytes of its two npy files (what [`load_sequence`] reads;
/// public so the fuzzer can drive it without touching disk). `what_2d`/`what_3d` name the files
/// in errors.
pub fn parse_sequence(name: &str, bytes_2d: &[u8], bytes_3d: &[u8], what_2d: &str, what_3d: &str) -> Result<Sequence> {
    let a2 = parse_array(bytes_2d, &[N_CAMERAS, N_JOINTS, 2], what_2d)?;
    let a3 = parse_array(bytes_3d, &[N_JOINTS, 3], what_3d)?;
    sequence_from(name, &a2, &a3, what_2d, what_3d)
}

fn sequence_from(name: &str, a2: &ArrayD<f64>, a3: &ArrayD<f64>, what_2d: &str, what_3d: &str) -> Result<Sequence> {
    let n = a2.shape()[0];
    ensure!(a3.shape()[0] == n, "{what_2d} has {n} frames but {what_3d} has {}", a3.shape()[0]);
    ensure!(n > 0, "{what_2d}: no frames (shape {:?})", a2.shape());
    let v2: Vec<f64> = a2.iter().copied().collect();
    let v3: Vec<f64> = a3.iter().copied().collect();
    let mut joint_2d = vec![[[[0.0; 2]; N_JOINTS]; N_CAMERAS]; n];
    let mut joint_3d = vec![[[0.0; 3]; N_JOINTS]; n];
    for f in 0..n {
        for c in 0..N_CAMERAS {
            for j in 0..N_JOINTS {
                for a in 0..2 {
                    joint_2d[f][c][j][a] = v2[((f * N_CAMERAS + c) * N_JOINTS + j) * 2 + a];
                }
            }
        }
        for j in 0..N_JOINTS {
            for d in 0..3 {
                joint_3d[f][j][d] = v3[(f * N_JOINTS + j) * 3 + d];
            }
        }
    }
    Ok(Sequence { name: name.to_string(), action: action_of(name), joint_2d, joint_3d })
}

/// Loads every sequence of `dir` (every `<name>__joint_2d.npy`), sorted by name. A directory
/// without any sequence is an error.
pub fn load_dir(dir: &Path) -> Result<Vec<Sequence>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))?;
    let mut names = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("reading directory {}", dir.display()))?;
        let fname = e.file_name().to_string_lossy().to_string();
        if let Some(stem) = fname.strip_suffix("__joint_2d.npy") {
            names.push(stem.to_string());
        } else if let Some(stem) = fname.strip_suffix("__joint_3d.npy") {
            ensure!(
                dir.join(format!("{stem}__joint_2d.npy")).exists(),
                "{} has no matching {stem}__joint_2d.npy",
                e.path().display()
            );
        }
    }
    names.sort();
    ensure!(!names.is_empty(), "{}: no `<name>__joint_2d.npy` sequences found", dir.display());
    names.iter().map(|n| load_sequence(dir, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_strip_numeric_suffix() {
        assert_eq!(action_of("Directions_1"), "Directions");
        assert_eq!(action_of("Directions"), "Directions");
        assert_eq!(action_of("WalkDog_1"), "WalkDog");
        assert_eq!(action_of("Sitting_Down"), "Sitting_Down");
    }
}
