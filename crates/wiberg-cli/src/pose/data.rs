//! Multi-camera pose data: a directory of sequences `<name>__joint_2d.npy` (N,4,17,2) float64
//! pixels and `<name>__joint_3d.npy` (N,17,3) float64 mm, Human3.6M joint and camera order.

use super::params::{N_CAMERAS, N_JOINTS};
use anyhow::{bail, ensure, Context, Result};
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

/// Checks `.npy` bytes without trusting the header: the header and the data it declares
/// (`elem_size` bytes per value) must fit in `bytes` exactly, checked *before* anything is
/// allocated (ndarray-npy allocates the declared size first, so a 100-byte file declaring
/// 10^15 values would abort the process). With `want_descr`, the dtype descriptor must be one
/// of those (as numpy writes them, quoted: `"'<f8'"`). Returns the descriptor and the shape.
/// Errors start with `what` (the file name).
pub fn check_npy(
    bytes: &[u8],
    elem_size: usize,
    want_descr: Option<&[&str]>,
    what: &str,
) -> Result<(String, Vec<usize>)> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    ensure!(
        bytes.len() >= 10 && bytes.starts_with(MAGIC),
        "{what}: not an npy file (no \\x93NUMPY magic at the start; {} bytes in all)",
        bytes.len()
    );
    let major = bytes[6];
    let len_bytes = if major == 1 { 2 } else { 4 };
    ensure!(bytes.len() >= 8 + len_bytes, "{what}: truncated npy header ({} bytes)", bytes.len());
    let header_len = if len_bytes == 2 {
        usize::from(u16::from_le_bytes([bytes[8], bytes[9]]))
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    ensure!(
        header_len <= bytes.len() - 8 - len_bytes,
        "{what}: truncated: the npy (version {major}) header claims {header_len} bytes but the file has {}",
        bytes.len()
    );
    let mut rest = bytes;
    let header = ndarray_npy::npy::header::Header::from_reader(&mut rest)
        .map_err(|e| anyhow::anyhow!("{what}: bad npy header: {e}"))?;
    let descr = header.type_descriptor.to_string();
    if let Some(want) = want_descr {
        ensure!(
            want.contains(&descr.as_str()),
            "{what}: dtype {descr}, expected {}",
            want.iter().map(|d| format!("'{}'", d.trim_matches('\''))).collect::<Vec<_>>().join(" or ")
        );
    }
    // ndarray also refuses (by panicking inside ndarray-npy) a shape whose non-zero
    // dimensions multiply past isize::MAX, even when another dimension is 0.
    let product = |skip_zeros: bool| {
        header
            .shape
            .iter()
            .filter(|&&d| !(skip_zeros && d == 0))
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|n| n.checked_mul(elem_size))
            .filter(|&bytes| bytes <= isize::MAX as usize)
    };
    let (Some(need), Some(_)) = (product(false), product(true)) else {
        bail!("{what}: npy shape {:?} is too large", header.shape)
    };
    ensure!(
        rest.len() == need,
        "{what}: {}: the header declares shape {:?} ({need} bytes of data) but {} bytes follow",
        if rest.len() < need { "truncated" } else { "extra bytes" },
        header.shape,
        rest.len()
    );
    Ok((descr, header.shape))
}

/// Decodes `.npy` bytes of element type `A` (`elem_size` bytes each) after [`check_npy`].
pub fn parse_npy<A: ndarray_npy::ReadableElement>(bytes: &[u8], elem_size: usize, what: &str) -> Result<ArrayD<A>> {
    check_npy(bytes, elem_size, None, what)?;
    <ArrayD<A> as ndarray_npy::ReadNpyExt>::read_npy(bytes).with_context(|| format!("{what}: reading npy data"))
}

/// Decodes float64 `.npy` bytes (either byte order); another dtype is an error naming it.
pub fn parse_npy_f64(bytes: &[u8], what: &str) -> Result<ArrayD<f64>> {
    check_npy(bytes, 8, Some(&["'<f8'", "'>f8'"]), what)?;
    <ArrayD<f64> as ndarray_npy::ReadNpyExt>::read_npy(bytes).with_context(|| format!("{what}: reading npy data"))
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

    fn npy_with_header(dict: &str) -> Vec<u8> {
        let mut out = b"\x93NUMPY\x02\x00".to_vec();
        out.extend_from_slice(&(dict.len() as u32 + 1).to_le_bytes());
        out.extend_from_slice(dict.as_bytes());
        out.push(b'\n');
        out
    }

    #[test]
    fn deeply_nested_headers_are_errors_not_stack_overflows() {
        for depth in [100, 10_000, 1_000_000] {
            let dict = format!(
                "{{'descr': '<f8', 'fortran_order': False, 'shape': {}0{}, }}",
                "(".repeat(depth),
                ")".repeat(depth)
            );
            let err = parse_npy_f64(&npy_with_header(&dict), "deep.npy").unwrap_err().to_string();
            assert!(err.contains("deep.npy"), "{err}");
        }
    }

    #[test]
    fn empty_array_with_huge_dimensions_is_an_error_not_a_panic() {
        // Found by the pose_npy fuzz target: 0 values, but 2^62 x 4 overflows ndarray's size check.
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 4611686018427387904, 4), }";
        let err = parse_npy_f64(&npy_with_header(dict), "z.npy").unwrap_err().to_string();
        assert!(err.contains("z.npy: npy shape [0, 4611686018427387904, 4] is too large"), "{err}");
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 17, 3), }";
        assert_eq!(parse_npy_f64(&npy_with_header(dict), "z.npy").unwrap().shape(), &[0, 17, 3]);
    }

    #[test]
    fn actions_strip_numeric_suffix() {
        assert_eq!(action_of("Directions_1"), "Directions");
        assert_eq!(action_of("Directions"), "Directions");
        assert_eq!(action_of("WalkDog_1"), "WalkDog");
        assert_eq!(action_of("Sitting_Down"), "Sitting_Down");
    }
}
