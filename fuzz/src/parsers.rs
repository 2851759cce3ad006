//! Properties of the experiments' file readers (RANSAC points, VOT text files and data sets, npy pose
//! data). Each check builds a *mostly well-formed* input from the fuzz bytes (so that the deep
//! code is reached), with malformed numbers, special values, wrong counts and shapes, wrong
//! headers and raw bytes mixed in, and asserts: no panic (and no abort from a huge
//! allocation), and an `Ok` result holds only finite numbers of the expected shape.
use arbitrary::{Result, Unstructured};
use std::path::{Path, PathBuf};
use wiberg::{Damping, Linearization};
use wiberg_models::fusion::iou::GroundTruthArea;
use wiberg_models::fusion::vot::{self, Entry, Region};
use wiberg_models::pose::data;
use wiberg_models::ransac::solve::{parse_points, solve_sample, SolveSettings};

use crate::float;

/// Tokens that are not plain decimal numbers.
const ODD_TOKENS: [&str; 24] = [
    "nan",
    "NaN",
    "inf",
    "-inf",
    "infinity",
    "-Infinity",
    "1e309",
    "-1e309",
    "1e-400",
    "4.9e-324",
    "0x10",
    "1_000",
    "+.5",
    "5.",
    ".",
    "-",
    "+",
    "e5",
    "1e",
    "abc",
    "１",
    "\u{0}",
    "--1",
    "1.7976931348623157e308",
];

/// Separators between numbers (some legal, some not).
const SEPARATORS: [&str; 8] = [",", " ", "\t", ", ", ",,", ";", "\u{a0}", " , "];

/// `min..=max` raw bytes.
fn raw(u: &mut Unstructured<'_>, min: usize, max: usize) -> Result<Vec<u8>> {
    let n = u.int_in_range(min..=max)?;
    Ok(u.bytes(n)?.to_vec())
}

fn token(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.int_in_range(0..=9)? {
        0 => ODD_TOKENS[u.choose_index(ODD_TOKENS.len())?].to_string(),
        1 => format!("{:e}", float(u)?),
        2 => u.int_in_range(0..=3u8)?.to_string(),
        3 => String::from_utf8_lossy(&raw(u, 0, 6)?).into_owned(),
        _ => format!("{}", float(u)?),
    })
}

/// Lines of `count` numbers each, where `count` is usually one of `counts`.
fn numeric_text(u: &mut Unstructured<'_>, counts: &[usize], max_lines: usize) -> Result<String> {
    if u.ratio(1, 16)? {
        return Ok(String::from_utf8_lossy(&raw(u, 0, 64)?).into_owned());
    }
    let mut text = String::new();
    let lines = u.int_in_range(0..=max_lines)?;
    let sep = if u.ratio(1, 8)? { SEPARATORS[u.choose_index(SEPARATORS.len())?] } else { "," };
    for _ in 0..lines {
        let count = if u.ratio(1, 10)? { u.int_in_range(0..=10)? } else { counts[u.choose_index(counts.len())?] };
        if u.ratio(1, 20)? {
            text.push_str("# comment");
        }
        for k in 0..count {
            if k > 0 {
                text.push_str(sep);
            }
            text.push_str(&token(u)?);
        }
        text.push_str(if u.ratio(1, 10)? { "\r\n" } else { "\n" });
    }
    Ok(text)
}

/// `parse_points` on whitespace/comma/comment-separated text; an `Ok` list of at most 40 points
/// then goes through `ransac solve` (forward and `dt*/dsigma`) with an arbitrary sigma and
/// damping: `Ok` means finite `t*`, energy and derivative.
pub fn check_ransac_points(data: &[u8]) {
    let _ = ransac_points(&mut Unstructured::new(data));
}

fn ransac_points(u: &mut Unstructured<'_>) -> Result<()> {
    let text = numeric_text(u, &[1, 2, 3, 5], 40)?;
    let Ok(points) = parse_points(&text, "points.txt") else { return Ok(()) };
    assert!(!points.is_empty(), "Ok with no points from {text:?}");
    assert!(points.iter().all(|p| p.is_finite()), "Ok with a non-finite point from {text:?}");
    if points.len() > 40 || !u.arbitrary::<bool>()? {
        return Ok(());
    }
    let sigma = float(u)?;
    if !(sigma.is_finite() && sigma != 0.0) {
        return Ok(()); // refused by `wiberg ransac solve`'s argument parser
    }
    let lambda = if u.ratio(1, 4)? { float(u)?.abs() } else { 0.1 };
    if !(lambda.is_finite() && lambda > 0.0) {
        return Ok(());
    }
    let damping =
        [Damping::Implicit, Damping::TrustRegion { lambda }, Damping::Guarded { lambda }][u.choose_index(3)?];
    let settings = SolveSettings {
        sigma,
        damping,
        lbfgs_iterations: u.int_in_range(0..=12)?,
        polish: !u.ratio(1, 4)?,
        linearization: if u.ratio(1, 2)? { Linearization::AtSolution } else { Linearization::PolishStart },
    };
    if let Ok(out) = solve_sample(&points, &settings) {
        assert!(out.t_star.is_finite() && out.energy.is_finite(), "non-finite Ok solve: {out:?}");
        assert!(out.dt_dsigma.as_ref().map_or(true, |d| d.is_finite()), "non-finite dt*/dsigma: {out:?}");
    }
    Ok(())
}

fn assert_region_finite(r: &Region, context: &str) {
    let values: Vec<f64> = match r {
        Region::Rect(v) => v.to_vec(),
        Region::Polygon(v) => v.to_vec(),
    };
    assert!(values.iter().all(|v| v.is_finite()), "{context}: non-finite region {r:?}");
    assert!(r.bounds().iter().all(|v| v.is_finite()), "{context}: non-finite bounds of {r:?}");
    assert!(r.axis_aligned().iter().all(|v| v.is_finite()), "{context}: non-finite axis-aligned box of {r:?}");
    if let Region::Rect([_, _, w, h]) = r {
        assert!(*w >= 0.0 && *h >= 0.0, "{context}: negative size accepted {r:?}");
    }
}

fn assert_overlaps_finite(r: &Region, image_size: Option<[f64; 2]>, context: &str) {
    let gt = GroundTruthArea::new(r, image_size);
    assert!(gt.area().is_finite() && gt.area() >= 0.0, "{context}: area {} of {r:?}", gt.area());
    let iou = gt.iou(&r.axis_aligned());
    assert!((0.0..=1.0).contains(&iou), "{context}: IoU {iou} of {r:?} with its own box");
}

/// The VOT text readers: `parse_results` (codes 0/1/2 or 4/8 numbers per line),
/// `parse_groundtruth` and `parse_meta` (`key=value`). `Ok` means finite regions with
/// finite bounds, areas and IoUs in [0, 1], and a finite positive image size.
pub fn check_vot_text(data: &[u8]) {
    let _ = vot_text(&mut Unstructured::new(data));
}

fn meta_text(u: &mut Unstructured<'_>) -> Result<String> {
    let mut text = String::new();
    for _ in 0..u.int_in_range(0..=4)? {
        let key = ["width", "height", "frames", "other", "", "width "][u.choose_index(6)?];
        let sep = ["=", ":", " = ", ""][u.choose_index(4)?];
        text.push_str(&format!("{key}{sep}{}\n", token(u)?));
    }
    Ok(text)
}

fn vot_text(u: &mut Unstructured<'_>) -> Result<()> {
    let path = Path::new("seq_001.txt");
    match u.int_in_range(0..=2)? {
        0 => {
            let text = numeric_text(u, &[1, 4, 8], 12)?;
            if let Ok(entries) = vot::parse_results(&text, path) {
                for e in &entries {
                    if let Entry::Box(r) = e {
                        assert_region_finite(r, "parse_results");
                        assert_overlaps_finite(r, None, "parse_results");
                    }
                }
            }
        }
        1 => {
            let text = numeric_text(u, &[4, 8], 12)?;
            if let Ok(regions) = vot::parse_groundtruth(&text, path) {
                assert!(!regions.is_empty());
                for r in &regions {
                    assert_region_finite(r, "parse_groundtruth");
                    assert_overlaps_finite(r, Some([640.0, 480.0]), "parse_groundtruth");
                }
            }
        }
        _ => {
            let text = meta_text(u)?;
            if let Ok(([w, h], _)) = vot::parse_meta(&text, path) {
                assert!(w.is_finite() && h.is_finite() && w > 0.0 && h > 0.0, "meta {w} x {h} from {text:?}");
            }
        }
    }
    Ok(())
}

/// Names in `list.txt` / `trackers.txt`: no path separators or dots, so a fuzzed name stays
/// inside the temporary directory.
fn name_list(u: &mut Unstructured<'_>, pool: &[&str]) -> Result<String> {
    let mut text = String::new();
    for _ in 0..u.int_in_range(0..=3)? {
        if u.ratio(1, 10)? {
            let name = String::from_utf8_lossy(&raw(u, 0, 4)?).into_owned();
            text.push_str(&name.replace(['/', '\\', '.', '\0'], "_"));
        } else {
            text.push_str(pool[u.choose_index(pool.len())?]);
        }
        text.push('\n');
    }
    Ok(text)
}

/// A per-process scratch directory, on tmpfs (`/dev/shm`) when there is one: the target
/// rewrites a dozen small files per execution.
fn scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() };
    base.join(format!("wiberg-fuzz-vot-{}", std::process::id()))
}

/// `read_dataset` on a VOT directory written from the fuzz bytes (list, ground truth, meta,
/// tracker list and result files, each possibly missing, empty or malformed). `Ok` means
/// consistent shapes (trackers x sequences x frames), finite regions and image sizes.
pub fn check_vot_dataset(data: &[u8]) {
    let root = scratch_dir();
    let _ = std::fs::remove_dir_all(&root);
    let _ = vot_dataset(&mut Unstructured::new(data), &root);
}

fn write(path: &Path, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("creating the fuzz scratch directory");
    }
    std::fs::write(path, text).expect("writing the fuzz scratch directory");
}

fn vot_dataset(u: &mut Unstructured<'_>, root: &Path) -> Result<()> {
    const SEQS: [&str; 3] = ["s0", "s1", "s2"];
    const TRACKERS: [&str; 2] = ["t0", "t1"];
    std::fs::create_dir_all(root).expect("creating the fuzz scratch directory");
    let list = if u.ratio(1, 8)? { name_list(u, &SEQS)? } else { "s0\ns1\n".to_string() };
    write(&root.join("sequences/list.txt"), &list);
    let frames = u.int_in_range(1..=4)?;
    for seq in SEQS {
        let dir = root.join("sequences").join(seq);
        if u.ratio(15, 16)? {
            let gt = if u.ratio(1, 4)? {
                numeric_text(u, &[4, 8], 5)?
            } else {
                (0..frames).map(|i| format!("{},{},{},{}\n", 10 * i, 20, 30 + i, 40)).collect()
            };
            write(&dir.join("groundtruth.txt"), &gt);
        }
        if u.arbitrary()? {
            let meta = if u.ratio(1, 4)? { meta_text(u)? } else { format!("width=640\nheight=480\nframes={frames}\n") };
            write(&dir.join("meta.txt"), &meta);
        }
    }
    if u.arbitrary()? {
        let trackers = if u.ratio(1, 4)? { name_list(u, &TRACKERS)? } else { "t0\nt1\n".to_string() };
        write(&root.join("trackers.txt"), &trackers);
    }
    for tracker in TRACKERS {
        for seq in SEQS {
            if u.ratio(1, 16)? {
                continue;
            }
            let text = if u.ratio(1, 3)? {
                numeric_text(u, &[1, 4, 8], 5)?
            } else {
                (0..frames).map(|i| if i == 0 { "1\n".to_string() } else { format!("{i},2,3,4\n") }).collect()
            };
            write(&vot::result_path(root, tracker, seq), &text);
        }
    }
    let Ok((ds, report)) = vot::read_dataset(root) else { return Ok(()) };
    assert!(!ds.sequences.is_empty() && !ds.trackers.is_empty(), "Ok data set without sequences or trackers");
    assert_eq!(ds.results.len(), ds.trackers.len());
    for seq in &ds.sequences {
        assert!(!seq.groundtruth.is_empty(), "sequence {} without frames", seq.name);
        if let Some([w, h]) = seq.image_size {
            assert!(w.is_finite() && h.is_finite() && w > 0.0 && h > 0.0, "image size {w} x {h}");
        }
        for r in &seq.groundtruth {
            assert_region_finite(r, "read_dataset ground truth");
            assert_overlaps_finite(r, seq.image_size, "read_dataset ground truth");
        }
    }
    for per_seq in &ds.results {
        assert_eq!(per_seq.len(), ds.sequences.len());
        assert!(per_seq.iter().any(Option::is_some), "a tracker without any result file was kept");
        for (entries, seq) in per_seq.iter().zip(&ds.sequences) {
            let Some(entries) = entries else { continue };
            assert_eq!(entries.len(), seq.groundtruth.len());
            for e in entries {
                if let Entry::Box(r) = e {
                    assert_region_finite(r, "read_dataset result");
                }
            }
        }
    }
    assert!(report.skipped_trackers.iter().all(|s| !ds.trackers.contains(&s.tracker)));
    let missing = ds.results.iter().flatten().filter(|e| e.is_none()).count();
    assert_eq!(report.missing_results.len(), missing, "every missing result file is reported");
    Ok(())
}

/// npy bytes: usually a well-formed header (versions 1-3, several dtypes, either order,
/// shapes near the expected ones, sometimes huge), sometimes a wrong header length, truncated
/// or extra data, garbage in the header, or raw bytes.
fn npy_bytes(u: &mut Unstructured<'_>, trailing: &[usize]) -> Result<Vec<u8>> {
    if u.ratio(1, 16)? {
        return raw(u, 0, 128);
    }
    let descr = ["<f8", "<f8", "<f8", ">f8", "<f4", "<i8", "|b1", "<c16", "O"][u.choose_index(9)?];
    let mut shape: Vec<usize> = vec![u.int_in_range(0..=2)?];
    shape.extend_from_slice(trailing);
    match u.int_in_range(0..=9)? {
        0 => shape.truncate(u.int_in_range(0..=shape.len())?),
        1 => shape.push(u.int_in_range(0..=3)?),
        2 => {
            let i = u.choose_index(shape.len())?;
            shape[i] = [0, 1, 5, 1 << 20, 1 << 40, usize::MAX / 2, usize::MAX][u.choose_index(7)?];
        }
        _ => {}
    }
    let shape_text = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let fortran = if u.ratio(1, 8)? { "True" } else { "False" };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape_text}, }}");
    if u.ratio(1, 10)? {
        // Mangle the dictionary: overwrite a few bytes.
        let mut b = dict.into_bytes();
        for _ in 0..u.int_in_range(1..=4)? {
            let i = u.choose_index(b.len())?;
            b[i] = u.arbitrary()?;
        }
        dict = String::from_utf8_lossy(&b).into_owned();
    }
    let major: u8 = if u.ratio(1, 8)? { u.int_in_range(0..=4)? } else { 1 };
    let prefix = if major == 1 { 10 } else { 12 };
    let mut header = dict.into_bytes();
    while (prefix + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut declared = header.len();
    if u.ratio(1, 16)? {
        declared = [0, 1, declared.saturating_sub(1), declared + 1, 65535, u32::MAX as usize][u.choose_index(6)?];
    }
    let mut out = b"\x93NUMPY".to_vec();
    out.push(major);
    out.push(0);
    if major == 1 {
        out.extend_from_slice(&(declared.min(65535) as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(declared as u32).to_le_bytes());
    }
    out.extend_from_slice(&header);
    let count: usize =
        shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).unwrap_or(usize::MAX).min(2 * 4 * 17 * 2);
    let elem = if descr.ends_with('4') { 4 } else { 8 };
    for _ in 0..count {
        let v = float(u)?;
        if descr == ">f8" {
            out.extend_from_slice(&v.to_be_bytes());
        } else {
            out.extend_from_slice(&v.to_le_bytes()[..elem]);
        }
    }
    if u.ratio(1, 10)? {
        let cut = u.int_in_range(0..=out.len())?;
        out.truncate(cut);
    } else if u.ratio(1, 20)? {
        out.extend_from_slice(&raw(u, 1, 9)?);
    }
    Ok(out)
}

/// The npy pose-data reader (`pose::data::parse_sequence`, what `load_dir` reads, plus
/// `parse_npy` / `parse_npy_f64` alone). `Ok` means shapes `(N, 4, 17, 2)` and `(N, 17, 3)`
/// with the same `N > 0` and only finite values.
pub fn check_pose_npy(data: &[u8]) {
    let _ = pose_npy(&mut Unstructured::new(data));
}

fn pose_npy(u: &mut Unstructured<'_>) -> Result<()> {
    let b2 = npy_bytes(u, &[4, 17, 2])?;
    let b3 = npy_bytes(u, &[17, 3])?;
    if let Ok(a) = data::parse_npy_f64(&b2, "x.npy") {
        let n: usize = a.shape().iter().product();
        assert_eq!(a.len(), n);
    }
    if let Ok(a) = data::parse_npy::<i64>(&b3, 8, "epoch.npy") {
        assert_eq!(a.len(), a.shape().iter().product::<usize>());
    }
    if let Ok(seq) = data::parse_sequence("Walk_1", &b2, &b3, "Walk_1__joint_2d.npy", "Walk_1__joint_3d.npy") {
        assert!(!seq.joint_2d.is_empty(), "Ok sequence without frames");
        assert_eq!(seq.joint_2d.len(), seq.joint_3d.len());
        assert_eq!(seq.action, "Walk");
        assert!(seq.joint_2d.iter().flatten().flatten().flatten().all(|v| v.is_finite()), "non-finite 2-D value");
        assert!(seq.joint_3d.iter().flatten().flatten().all(|v| v.is_finite()), "non-finite 3-D value");
    }
    Ok(())
}
