//! Reader and writer for the VOT / pysot result layout.
//!
//! ```text
//! sequences/list.txt                        one sequence name per line
//! sequences/<seq>/groundtruth.txt           x,y,w,h or x1,y1,...,x4,y4 per frame
//! sequences/<seq>/meta.txt                  width=.., height=.., frames=.. (our addition, optional)
//! sequences/<seq>/color/00000001.jpg        the images (optional; without meta.txt the first
//!                                           one's header gives the image size)
//! results/<tracker>/baseline/<seq>/<seq>_001.txt   1 | 2 | 0 | a box of 4 or 8 numbers
//! trackers.txt                              tracker names (optional: else the folders in results/)
//! ```

use crate::error::{bail, Context};
use crate::Result;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A region in the image: an axis-aligned rectangle `x, y, w, h` or a polygon of four corners.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Region {
    /// `x, y, w, h` (top-left corner and size).
    Rect([f64; 4]),
    /// `x1, y1, ..., x4, y4`.
    Polygon([f64; 8]),
}

impl Region {
    /// The axis-aligned bounding box `[x0, y0, x1, y1]`.
    pub fn bounds(&self) -> [f64; 4] {
        match self {
            Region::Rect([x, y, w, h]) => [*x, *y, x + w, y + h],
            Region::Polygon(p) => {
                let xs = [p[0], p[2], p[4], p[6]];
                let ys = [p[1], p[3], p[5], p[7]];
                let min = |v: [f64; 4]| v.iter().copied().fold(f64::INFINITY, f64::min);
                let max = |v: [f64; 4]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                [min(xs), min(ys), max(xs), max(ys)]
            }
        }
    }

    /// The axis-aligned box `[x0, y0, x1, y1]` pysot derives from a region
    /// (`get_axis_aligned_bbox`): the bounding box shrunk about its centre to the region's area.
    /// For a rectangle it is the rectangle.
    pub fn axis_aligned(&self) -> [f64; 4] {
        let b = self.bounds();
        let Region::Polygon(_) = self else { return b };
        let pts = self.points();
        let mut twice = 0.0;
        for i in 0..4 {
            let (p, q) = (pts[i], pts[(i + 1) % 4]);
            twice += p[0] * q[1] - p[1] * q[0];
        }
        let bbox_area = (b[2] - b[0]) * (b[3] - b[1]);
        if bbox_area <= 0.0 {
            return b;
        }
        let s = (0.5 * twice.abs() / bbox_area).sqrt();
        let c = [pts.iter().map(|p| p[0]).sum::<f64>() / 4.0, pts.iter().map(|p| p[1]).sum::<f64>() / 4.0];
        let half = [0.5 * s * (b[2] - b[0]), 0.5 * s * (b[3] - b[1])];
        [c[0] - half[0], c[1] - half[1], c[0] + half[0], c[1] + half[1]]
    }

    /// The corners as a closed-ring-free list of points (4 of them).
    pub fn points(&self) -> [[f64; 2]; 4] {
        match self {
            Region::Rect([x, y, w, h]) => [[*x, *y], [x + w, *y], [x + w, y + h], [*x, y + h]],
            Region::Polygon(p) => [[p[0], p[1]], [p[2], p[3]], [p[4], p[5]], [p[6], p[7]]],
        }
    }

    fn write(&self, out: &mut String) {
        let values: &[f64] = match self {
            Region::Rect(r) => r,
            Region::Polygon(p) => p,
        };
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{v}");
        }
    }
}

/// One line of a VOT result file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Entry {
    /// `1`: the tracker was (re)initialised on this frame (no box is reported).
    Init,
    /// `2`: the tracker failed on this frame.
    Failure,
    /// `0`: not tracked (the frames between a failure and the re-initialisation).
    NotTracked,
    /// A reported box.
    Box(Region),
}

/// One sequence: its ground truth and (optional) image size.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Name (folder name).
    pub name: String,
    /// Image width and height in pixels, when known (`meta.txt`, else the first image).
    pub image_size: Option<[f64; 2]>,
    /// Ground-truth region per frame.
    pub groundtruth: Vec<Region>,
}

/// A VOT-format data set: sequences, trackers and each tracker's entries per sequence and frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The sequences, in `list.txt` order.
    pub sequences: Vec<Sequence>,
    /// Names of the trackers that were read.
    pub trackers: Vec<String>,
    /// `results[tracker][sequence][frame]`; `results[tracker][sequence]` is `None` when the
    /// tracker has no result file for that sequence (it then has no box on its frames).
    pub results: Vec<Vec<Option<Vec<Entry>>>>,
}

/// A tracker's result file that is missing for one sequence: the tracker is kept, with no box
/// on that sequence's frames (as on the frames of a VOT failure).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissingResult {
    /// The tracker.
    pub tracker: String,
    /// The sequence it has no results for.
    pub sequence: String,
    /// The file that was looked for.
    pub file: String,
    /// What follows, in words.
    pub reason: String,
}

/// A tracker left out of the data set altogether.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedTracker {
    /// The tracker.
    pub tracker: String,
    /// Why.
    pub reason: String,
}

/// What the reader left out or filled in (missing files), for the user to see.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReadReport {
    /// Result files missing for a tracker on a sequence: that tracker has no box there.
    pub missing_results: Vec<MissingResult>,
    /// Trackers left out: listed (in `trackers.txt`) but without a result file for any
    /// sequence.
    pub skipped_trackers: Vec<SkippedTracker>,
    /// Sequences without `meta.txt` whose image size was read from their first image.
    pub sizes_from_images: Vec<String>,
    /// Sequences with neither `meta.txt` nor an image: their overlaps are not bounded by the
    /// image.
    pub sequences_without_size: Vec<String>,
}

impl Dataset {
    /// Total number of frames over all sequences.
    pub fn num_frames(&self) -> usize {
        self.sequences.iter().map(|s| s.groundtruth.len()).sum()
    }
}

/// Path of a tracker's result file for a sequence.
pub fn result_path(root: &Path, tracker: &str, seq: &str) -> PathBuf {
    root.join("results").join(tracker).join("baseline").join(seq).join(format!("{seq}_001.txt"))
}

/// Largest coordinate (and image size) accepted, in pixels: far beyond any image, and small
/// enough that areas, unions and the fusion energy's squares stay finite.
pub const MAX_COORDINATE: f64 = 1e9;

fn parse_numbers(line: &str, path: &Path, lineno: usize) -> Result<Vec<f64>> {
    line.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|tok| {
            let v: f64 =
                tok.parse().with_context(|| format!("{}:{}: `{tok}` is not a number", path.display(), lineno))?;
            if !v.is_finite() {
                bail!("{}:{}: non-finite value `{tok}`", path.display(), lineno);
            }
            if v.abs() > MAX_COORDINATE {
                bail!("{}:{}: `{tok}` is out of range (|value| <= {MAX_COORDINATE:e} pixels)", path.display(), lineno);
            }
            Ok(v)
        })
        .collect()
}

fn region_from(values: &[f64], path: &Path, lineno: usize) -> Result<Region> {
    match values.len() {
        4 => {
            let r = [values[0], values[1], values[2], values[3]];
            if r[2] < 0.0 || r[3] < 0.0 {
                bail!("{}:{}: negative width or height in `x,y,w,h`", path.display(), lineno);
            }
            Ok(Region::Rect(r))
        }
        8 => {
            let mut p = [0.0; 8];
            p.copy_from_slice(values);
            Ok(Region::Polygon(p))
        }
        n => bail!("{}:{}: expected 4 or 8 numbers, found {n}", path.display(), lineno),
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Parses a ground-truth file: one region (4 or 8 numbers) per line.
pub fn parse_groundtruth(text: &str, path: &Path) -> Result<Vec<Region>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let values = parse_numbers(line, path, i + 1)?;
        out.push(region_from(&values, path, i + 1)?);
    }
    if out.is_empty() {
        bail!("{}: no ground-truth regions", path.display());
    }
    Ok(out)
}

/// Parses a VOT baseline result file: `1`, `2`, `0` or a box of 4 or 8 numbers per line.
pub fn parse_results(text: &str, path: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let values = parse_numbers(line, path, i + 1)?;
        let entry = match values.as_slice() {
            [c] if *c == 1.0 => Entry::Init,
            [c] if *c == 2.0 => Entry::Failure,
            [c] if *c == 0.0 => Entry::NotTracked,
            [c] => bail!("{}:{}: unknown VOT code {c} (expected 0, 1 or 2)", path.display(), i + 1),
            v => Entry::Box(region_from(v, path, i + 1)?),
        };
        out.push(entry);
    }
    Ok(out)
}

/// Parses `meta.txt`: `key=value` lines with `width`, `height` (and optionally `frames`).
pub fn parse_meta(text: &str, path: &Path) -> Result<([f64; 2], Option<usize>)> {
    let (mut w, mut h, mut frames) = (None, None, None);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once(['=', ':'])
            .with_context(|| format!("{}:{}: expected `key=value`", path.display(), i + 1))?;
        let v = v.trim();
        let num = |v: &str| -> Result<f64> {
            let x: f64 = v.parse().with_context(|| format!("{}:{}: `{v}` is not a number", path.display(), i + 1))?;
            if !(x.is_finite() && x > 0.0 && x <= MAX_COORDINATE) {
                bail!("{}:{}: `{v}` must be a positive number up to {MAX_COORDINATE:e}", path.display(), i + 1);
            }
            Ok(x)
        };
        match k.trim() {
            "width" => w = Some(num(v)?),
            "height" => h = Some(num(v)?),
            "frames" => {
                frames = Some(v.parse().with_context(|| format!("{}:{}: `{v}` is not a count", path.display(), i + 1))?)
            }
            _ => {}
        }
    }
    match (w, h) {
        (Some(w), Some(h)) => Ok(([w, h], frames)),
        _ => bail!("{}: needs both `width` and `height`", path.display()),
    }
}

/// File extensions taken for images (VOT ships JPEG).
const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// The first image of a sequence folder, by name: in `color/` (the VOT toolkit's layout), else
/// in the folder itself (the older layout); `None` when neither holds an image.
pub fn first_image(seq_dir: &Path) -> Result<Option<PathBuf>> {
    for dir in [seq_dir.join("color"), seq_dir.to_path_buf()] {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut first: Option<PathBuf> = None;
        for entry in entries {
            let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
            let is_image = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)));
            if is_image && path.is_file() && first.as_ref().is_none_or(|f| path < *f) {
                first = Some(path);
            }
        }
        if first.is_some() {
            return Ok(first);
        }
    }
    Ok(None)
}

/// Width and height of an image from its header (PNG or JPEG; the pixels are not read).
pub fn image_size(path: &Path) -> Result<[f64; 2]> {
    let size = imagesize::size(path).with_context(|| {
        format!(
            "{}: cannot read the image size from its header (give it in meta.txt beside groundtruth.txt: \
             width=.., height=..)",
            path.display()
        )
    })?;
    let [w, h] = [size.width as f64, size.height as f64];
    if !(w > 0.0 && h > 0.0 && w <= MAX_COORDINATE && h <= MAX_COORDINATE) {
        bail!("{}: image size {}x{} is out of range", path.display(), size.width, size.height);
    }
    Ok([w, h])
}

fn read_list(path: &Path) -> Result<Vec<String>> {
    Ok(read_text(path)?.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect())
}

/// Reads a data set from `root`. Malformed files are errors naming file and line. A tracker
/// without the result file of a sequence has no box on that sequence (it keeps the others); a
/// tracker without any result file is left out. Both are listed in the [`ReadReport`].
pub fn read_dataset(root: &Path) -> Result<(Dataset, ReadReport)> {
    let names = read_list(&root.join("sequences").join("list.txt"))?;
    if names.is_empty() {
        bail!("{}: no sequences listed", root.join("sequences/list.txt").display());
    }
    let mut report = ReadReport::default();
    let mut sequences = Vec::with_capacity(names.len());
    for name in &names {
        let dir = root.join("sequences").join(name);
        let gt_path = dir.join("groundtruth.txt");
        let groundtruth = parse_groundtruth(&read_text(&gt_path)?, &gt_path)?;
        let meta_path = dir.join("meta.txt");
        let image_size = if meta_path.exists() {
            let (size, frames) = parse_meta(&read_text(&meta_path)?, &meta_path)?;
            if let Some(f) = frames {
                if f != groundtruth.len() {
                    bail!("{}: says {f} frames but the ground truth has {}", meta_path.display(), groundtruth.len());
                }
            }
            Some(size)
        } else if let Some(image) = first_image(&dir)? {
            report.sizes_from_images.push(name.clone());
            Some(image_size(&image)?)
        } else {
            report.sequences_without_size.push(name.clone());
            None
        };
        sequences.push(Sequence { name: name.clone(), image_size, groundtruth });
    }
    let tracker_list = root.join("trackers.txt");
    let tracker_names = if tracker_list.exists() {
        read_list(&tracker_list)?
    } else {
        let dir = root.join("results");
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let mut trackers = Vec::new();
    let mut results = Vec::new();
    for tracker in tracker_names {
        let mut per_seq = Vec::with_capacity(sequences.len());
        let mut missing = Vec::new();
        for seq in &sequences {
            let path = result_path(root, &tracker, &seq.name);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    missing.push(MissingResult {
                        tracker: tracker.clone(),
                        sequence: seq.name.clone(),
                        file: path.display().to_string(),
                        reason: format!(
                            "result file missing: the tracker has no box on the sequence's {} frames",
                            seq.groundtruth.len()
                        ),
                    });
                    per_seq.push(None);
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            let entries = parse_results(&text, &path)?;
            if entries.len() != seq.groundtruth.len() {
                bail!(
                    "{}: {} lines, but sequence `{}` has {} frames",
                    path.display(),
                    entries.len(),
                    seq.name,
                    seq.groundtruth.len()
                );
            }
            per_seq.push(Some(entries));
        }
        if missing.len() == sequences.len() {
            let dir = root.join("results").join(&tracker);
            report.skipped_trackers.push(SkippedTracker {
                reason: format!(
                    "no result file for any of the {} sequences (looked in {})",
                    sequences.len(),
                    dir.display()
                ),
                tracker,
            });
            continue;
        }
        report.missing_results.extend(missing);
        trackers.push(tracker);
        results.push(per_seq);
    }
    if trackers.is_empty() {
        bail!("{}: no tracker has results (a result file for at least one sequence)", root.display());
    }
    Ok((Dataset { sequences, trackers, results }, report))
}

/// Writes `bytes` to `path`, creating its folder. Not atomic: a data set is thousands of small
/// files and a sync per file made generation 20 times slower; `trackers.txt` and
/// `sequences/list.txt`, which name everything else, are written last and atomically.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Writes a data set in the VOT layout under `root` (plus `meta.txt` and `trackers.txt`);
/// `atomic_write(path, bytes)` writes the two lists that name everything else, last (the
/// caller's crash-safe writer).
pub fn write_dataset_with<E>(
    root: &Path,
    data: &Dataset,
    atomic_write: impl Fn(&Path, &[u8]) -> std::result::Result<(), E>,
) -> Result<()>
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    let seq_dir = root.join("sequences");
    let mut list = String::new();
    for seq in &data.sequences {
        list.push_str(&seq.name);
        list.push('\n');
        let mut gt = String::new();
        for r in &seq.groundtruth {
            r.write(&mut gt);
            gt.push('\n');
        }
        write_file(&seq_dir.join(&seq.name).join("groundtruth.txt"), gt.as_bytes())?;
        if let Some([w, h]) = seq.image_size {
            let meta = format!("width={w}\nheight={h}\nframes={}\n", seq.groundtruth.len());
            write_file(&seq_dir.join(&seq.name).join("meta.txt"), meta.as_bytes())?;
        }
    }
    let mut names = String::new();
    for (t, tracker) in data.trackers.iter().enumerate() {
        names.push_str(tracker);
        names.push('\n');
        for (s, seq) in data.sequences.iter().enumerate() {
            let mut text = String::new();
            // A tracker without results for a sequence has no file for it.
            let Some(entries) = &data.results[t][s] else { continue };
            for e in entries {
                match e {
                    Entry::Init => text.push('1'),
                    Entry::Failure => text.push('2'),
                    Entry::NotTracked => text.push('0'),
                    Entry::Box(r) => r.write(&mut text),
                }
                text.push('\n');
            }
            write_file(&result_path(root, tracker, &seq.name), text.as_bytes())?;
        }
    }
    let list_path = seq_dir.join("list.txt");
    atomic_write(&list_path, list.as_bytes()).with_context(|| format!("writing {}", list_path.display()))?;
    let trackers_path = root.join("trackers.txt");
    atomic_write(&trackers_path, names.as_bytes()).with_context(|| format!("writing {}", trackers_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_boxes_parse() {
        let p = Path::new("r.txt");
        let e = parse_results("1\n10,20,30,40\n2\n0\n1,2,3,4,5,6,7,8\n", p).unwrap();
        assert_eq!(e.len(), 5);
        assert_eq!(e[0], Entry::Init);
        assert_eq!(e[1], Entry::Box(Region::Rect([10.0, 20.0, 30.0, 40.0])));
        assert_eq!(e[2], Entry::Failure);
        assert_eq!(e[3], Entry::NotTracked);
        assert!(matches!(e[4], Entry::Box(Region::Polygon(_))));
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let p = Path::new("seq_001.txt");
        let err = format!("{:#}", parse_results("1\n1,2,3\n", p).unwrap_err());
        assert!(err.contains("seq_001.txt:2") && err.contains("4 or 8"), "{err}");
        let err = format!("{:#}", parse_results("1\n3\n", p).unwrap_err());
        assert!(err.contains(":2") && err.contains("code 3"), "{err}");
        let err = format!("{:#}", parse_groundtruth("1,2,3,4\n1,x,3,4\n", p).unwrap_err());
        assert!(err.contains(":2") && err.contains("`x`"), "{err}");
        let err = format!("{:#}", parse_groundtruth("1,2,nan,4\n", p).unwrap_err());
        assert!(err.contains(":1") && err.contains("non-finite"), "{err}");
        assert!(parse_meta("width=640\n", p).is_err());
        assert_eq!(parse_meta("width=640\nheight=360\nframes=3\n", p).unwrap(), ([640.0, 360.0], Some(3)));
    }

    #[test]
    fn image_size_reads_only_the_header() {
        let dir = tempfile::tempdir().unwrap();
        // A PNG signature and IHDR chunk of a 123 x 321 image, and nothing else.
        let png = [
            0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
            0x00, 0x7B, 0x00, 0x00, 0x01, 0x41, 0x08, 0x06, 0x00, 0x00, 0x00, 0x9A, 0x38, 0xC4,
        ];
        // JPEG start of image, a JFIF APP0 segment and a baseline SOF0 of 320 x 240.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        jpeg.extend(b"JFIF\0");
        jpeg.extend([0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00]);
        jpeg.extend([0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0xF0, 0x01, 0x40, 0x03]);
        jpeg.extend([0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
        let color = dir.path().join("color");
        std::fs::create_dir(&color).unwrap();
        std::fs::write(color.join("00000002.png"), png).unwrap();
        std::fs::write(color.join("00000001.jpg"), &jpeg).unwrap();
        std::fs::write(color.join("00000000.txt"), "not an image").unwrap();
        assert_eq!(image_size(&color.join("00000002.png")).unwrap(), [123.0, 321.0]);
        assert_eq!(image_size(&color.join("00000001.jpg")).unwrap(), [320.0, 240.0]);
        assert_eq!(first_image(dir.path()).unwrap(), Some(color.join("00000001.jpg")));
        // A zero height is refused.
        jpeg[25..27].copy_from_slice(&[0, 0]);
        std::fs::write(color.join("00000001.jpg"), &jpeg).unwrap();
        let err = format!("{:#}", image_size(&color.join("00000001.jpg")).unwrap_err());
        assert!(err.contains("out of range") && err.contains("00000001.jpg"), "{err}");
        // No image at all.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(first_image(empty.path()).unwrap(), None);
    }

    #[test]
    fn polygon_bounds() {
        let r = Region::Polygon([1.0, 0.0, 2.0, 1.0, 1.0, 2.0, 0.0, 1.0]);
        assert_eq!(r.bounds(), [0.0, 0.0, 2.0, 2.0]);
        // The diamond has area 2, its bounding box 4: pysot's box is sqrt(1/2) of it, centred.
        let a = r.axis_aligned();
        let h = 0.5 * 2.0 * 0.5f64.sqrt();
        let expect = [1.0 - h, 1.0 - h, 1.0 + h, 1.0 + h];
        assert!(a.iter().zip(&expect).all(|(x, y)| (x - y).abs() < 1e-12), "{a:?}");
    }
}
