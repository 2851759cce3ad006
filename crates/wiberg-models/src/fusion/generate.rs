//! A synthetic stand-in for the VOT2018 baseline results (which cannot be downloaded here):
//! smooth rotated ground truth and trackers of varied quality, written in the VOT layout.
//!
//! Rates follow `../shared/specs/fusion-vot2018-notes.md`: per tracker a centre bias (0-10 % of
//! the size) and scale bias (±10 %), Student-t corner jitter (1-8 %), a lag of 0-2 frames, an
//! error random walk (drift) that grows with the time since initialisation, and a failure
//! hazard (0.1-2 % per frame) raised eight-fold in hard segments shared by all trackers of a
//! sequence, so failures correlate. A failing tracker first loses the target (its box slides
//! off) until the overlap is zero, which VOT records as a failure (`2`); the tracker is
//! re-initialised (`1`) five frames later, with `0` in between. A few trackers are degenerate
//! (frozen box, huge noise); some report rotated boxes (8 numbers).

use super::iou::GroundTruthArea;
use super::vot::{Dataset, Entry, Region, Sequence};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal, StudentT};
use rayon::prelude::*;
use serde::Serialize;

/// Settings of the generator.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GenerateConfig {
    /// Number of sequences (VOT2018 has 60).
    pub sequences: usize,
    /// Number of trackers (VOT2018 has 72 entries).
    pub trackers: usize,
    /// Seed of everything.
    pub seed: u64,
    /// Mean sequence length: log-normal lengths (log-sd 0.8) are scaled to this mean, then
    /// cut to 40..=1500 frames.
    pub mean_frames: f64,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        // 60 sequences of 356 frames on average: VOT2018's 21,356 frames.
        GenerateConfig { sequences: 60, trackers: 72, seed: 0, mean_frames: 356.0 }
    }
}

/// How a tracker behaves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrackerKind {
    /// A working tracker with the profile's errors.
    Normal,
    /// Keeps its first box for ever (until the target leaves it).
    Frozen,
    /// Huge jitter.
    Noisy,
}

/// One synthetic tracker's error profile (written to `generator.json`).
#[derive(Debug, Clone, Serialize)]
pub struct TrackerProfile {
    /// Name used in `results/`.
    pub name: String,
    /// Quality tier: `good`, `medium`, `poor` or `degenerate`.
    pub tier: &'static str,
    /// Behaviour.
    pub kind: TrackerKind,
    /// Centre bias as a fraction of the target size.
    pub bias: f64,
    /// Multiplicative scale bias.
    pub scale_bias: f64,
    /// Student-t jitter of each corner coordinate, fraction of the size.
    pub jitter: f64,
    /// Frames of lag.
    pub lag: usize,
    /// Per-frame step of the error random walk, fraction of the size.
    pub drift: f64,
    /// Per-frame failure hazard outside hard segments.
    pub hazard: f64,
    /// Reports rotated boxes (8 numbers) instead of `x,y,w,h`.
    pub rotated: bool,
    /// How strongly the sequence's shared distractor error pulls this tracker (0 = immune).
    pub coupling: f64,
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Draws the tracker profiles (72 by default) in quality tiers.
pub fn tracker_profiles(count: usize, seed: u64) -> Vec<TrackerProfile> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::MAX);
    let degenerate = (count / 14).min(count);
    (0..count)
        .map(|i| {
            let u: f64 = rng.random();
            let (tier, q) = if i < degenerate {
                ("degenerate", 1.0)
            } else if u < 0.15 {
                ("good", rng.random_range(0.0..0.3))
            } else if u < 0.5 {
                ("medium", rng.random_range(0.3..0.7))
            } else {
                ("poor", rng.random_range(0.7..1.0))
            };
            let kind = match (i < degenerate, i % 2) {
                (false, _) => TrackerKind::Normal,
                (true, 0) => TrackerKind::Frozen,
                (true, _) => TrackerKind::Noisy,
            };
            let lerp = |a: f64, b: f64| a + (b - a) * q;
            TrackerProfile {
                name: format!("tracker{:02}", i + 1),
                tier,
                kind,
                bias: lerp(0.0, 0.1) * rng.random_range(0.5..1.0),
                scale_bias: (rng.random_range(-0.1..0.1f64) * (0.3 + q)).exp(),
                jitter: if kind == TrackerKind::Noisy { 0.4 } else { lerp(0.01, 0.08) },
                lag: if q > 0.5 { rng.random_range(0..3) } else { rng.random_range(0..2) },
                drift: lerp(0.002, 0.02),
                hazard: lerp(0.001, 0.02) * rng.random_range(0.5..1.0),
                rotated: rng.random::<f64>() < 0.15,
                coupling: lerp(0.1, 1.0),
            }
        })
        .collect()
}

/// The ground truth's state in one frame.
#[derive(Debug, Clone, Copy)]
struct Target {
    center: [f64; 2],
    /// Rotated rectangle's width and height.
    dims: [f64; 2],
    angle: f64,
}

impl Target {
    fn size(&self) -> f64 {
        (self.dims[0] * self.dims[1]).sqrt()
    }

    fn polygon(&self, dims: [f64; 2], angle: f64, center: [f64; 2]) -> [f64; 8] {
        let (s, c) = angle.sin_cos();
        let (hw, hh) = (dims[0] / 2.0, dims[1] / 2.0);
        let mut p = [0.0; 8];
        for (k, (dx, dy)) in [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)].iter().enumerate() {
            p[2 * k] = center[0] + c * dx - s * dy;
            p[2 * k + 1] = center[1] + s * dx + c * dy;
        }
        p
    }

    fn region(&self) -> [f64; 8] {
        self.polygon(self.dims, self.angle, self.center)
    }

    /// Half-extents of the axis-aligned bounding box.
    fn half_bbox(&self) -> [f64; 2] {
        let (s, c) = (self.angle.sin().abs(), self.angle.cos().abs());
        [(c * self.dims[0] + s * self.dims[1]) / 2.0, (s * self.dims[0] + c * self.dims[1]) / 2.0]
    }
}

/// Everything a tracker's simulation needs from the sequence.
struct Scene<'a> {
    targets: &'a [Target],
    /// Shared distractor error per frame (centre x, y and log-scale, in target sizes): what
    /// fools many trackers at once in real sequences (similar objects, clutter), so that
    /// tracker errors are correlated and averaging alone cannot remove them.
    shared: &'a [[f64; 3]],
    gt: &'a [GroundTruthArea],
    hard: &'a [bool],
}

fn simulate_ground_truth(rng: &mut ChaCha8Rng, n: usize, image: [f64; 2], hard: &[bool]) -> Vec<Target> {
    let [iw, ih] = image;
    let size0 = rng.random_range(0.08..0.3) * ih;
    let aspect = rng.random_range(0.4f64.ln()..2.5f64.ln()).exp();
    let log_size0 = size0.ln();
    let mut t = Target {
        center: [rng.random_range(0.3..0.7) * iw, rng.random_range(0.3..0.7) * ih],
        dims: [size0 * aspect.sqrt(), size0 / aspect.sqrt()],
        angle: rng.random_range(-0.3..0.3),
    };
    let normal = Normal::new(0.0, 1.0).unwrap_or_else(|_| unreachable!("unit normal"));
    let mut vel = [0.0f64; 2];
    let mut log_size = log_size0;
    let mut ang_vel = 0.0f64;
    let mut out = Vec::with_capacity(n);
    for (f, &is_hard) in hard.iter().enumerate().take(n) {
        if f > 0 {
            let speed = if is_hard { 3.0 } else { 1.0 };
            let size = t.size();
            for (axis, v) in vel.iter_mut().enumerate() {
                *v = 0.92 * *v + 0.012 * size * speed * normal.sample(rng);
                t.center[axis] += *v;
            }
            log_size += 0.03 * (log_size0 - log_size) + 0.01 * normal.sample(rng);
            let s = log_size.exp();
            t.dims = [s * aspect.sqrt(), s / aspect.sqrt()];
            ang_vel = 0.9 * ang_vel + 0.004 * normal.sample(rng);
            t.angle = (t.angle + ang_vel - 0.01 * t.angle).clamp(-0.6, 0.6);
            // Keep the target inside the image: reflect off the borders.
            let hb = t.half_bbox();
            for axis in 0..2 {
                let lim = image[axis];
                let (lo, hi) = (hb[axis] + 1.0, lim - hb[axis] - 1.0);
                if lo >= hi {
                    t.center[axis] = lim / 2.0;
                    vel[axis] = 0.0;
                } else if t.center[axis] < lo {
                    t.center[axis] = lo;
                    vel[axis] = vel[axis].abs();
                } else if t.center[axis] > hi {
                    t.center[axis] = hi;
                    vel[axis] = -vel[axis].abs();
                }
            }
        }
        out.push(t);
    }
    out
}

fn simulate_tracker(rng: &mut ChaCha8Rng, p: &TrackerProfile, scene: &Scene<'_>) -> Vec<Entry> {
    let n = scene.targets.len();
    let normal = Normal::new(0.0, 1.0).unwrap_or_else(|_| unreachable!("unit normal"));
    let student = StudentT::new(3.0).unwrap_or_else(|_| unreachable!("t with 3 dof"));
    let bias_dir = rng.random_range(0.0..std::f64::consts::TAU);
    let bias = [p.bias * bias_dir.cos(), p.bias * bias_dir.sin()];
    let mut out = Vec::with_capacity(n);
    let mut init = 0usize;
    let mut err = [0.0f64; 3];
    let mut lost: Option<[f64; 2]> = None;
    let mut frozen: Option<Region> = None;
    let mut reinit_at: Option<usize> = None;
    for f in 0..n {
        if f == 0 || reinit_at == Some(f) {
            out.push(Entry::Init);
            init = f;
            err = [0.0; 3];
            lost = None;
            frozen = None;
            reinit_at = None;
            continue;
        }
        if reinit_at.is_some() {
            out.push(Entry::NotTracked);
            continue;
        }
        let hard = scene.hard[f];
        let hazard = p.hazard * if hard { 8.0 } else { 1.0 };
        if lost.is_none() && rng.random::<f64>() < hazard {
            let dir = rng.random_range(0.0..std::f64::consts::TAU);
            let speed = rng.random_range(0.02..0.1);
            lost = Some([speed * dir.cos(), speed * dir.sin()]);
        }
        let step = p.drift * if hard { 2.0 } else { 1.0 };
        for e in err.iter_mut().take(2) {
            *e += step * normal.sample(rng);
        }
        err[2] += step * normal.sample(rng);
        if let Some(v) = lost {
            err[0] += v[0];
            err[1] += v[1];
        }
        let t = scene.targets[f.saturating_sub(p.lag).max(init)];
        let size = t.size();
        let jitter = p.jitter * size * if hard { 1.5 } else { 1.0 };
        let scale = p.scale_bias * err[2].exp();
        let d = scene.shared[f];
        let scale = scale * (p.coupling * d[2]).exp();
        let center = [
            t.center[0] + (bias[0] + err[0] + p.coupling * d[0]) * size,
            t.center[1] + (bias[1] + err[1] + p.coupling * d[1]) * size,
        ];
        let region = if let (TrackerKind::Frozen, Some(r)) = (p.kind, frozen) {
            r
        } else if p.rotated {
            let dims = [t.dims[0] * scale, t.dims[1] * scale];
            let angle = t.angle + 0.05 * normal.sample(rng);
            let mut poly = t.polygon(dims, angle, center);
            for v in poly.iter_mut() {
                *v = round2(*v + jitter * student.sample(rng));
            }
            Region::Polygon(poly)
        } else {
            // Axis-aligned trackers aim at pysot's axis-aligned box of the rotated target: its
            // bounding box shrunk to the target's area.
            let hb = t.half_bbox();
            let shrink = (t.dims[0] * t.dims[1] / (4.0 * hb[0] * hb[1])).sqrt() * scale;
            let half = [hb[0] * shrink, hb[1] * shrink];
            let mut c = [center[0] - half[0], center[1] - half[1], center[0] + half[0], center[1] + half[1]];
            for v in c.iter_mut() {
                *v += jitter * student.sample(rng);
            }
            let (x0, x1) = (c[0].min(c[2]), c[0].max(c[2]));
            let (y0, y1) = (c[1].min(c[3]), c[1].max(c[3]));
            Region::Rect([round2(x0), round2(y0), round2(x1 - x0), round2(y1 - y0)])
        };
        if p.kind == TrackerKind::Frozen && frozen.is_none() {
            frozen = Some(region);
        }
        // VOT declares a failure when the overlap with the ground truth drops to zero.
        if scene.gt[f].iou(&region.bounds()) <= 0.0 {
            out.push(Entry::Failure);
            reinit_at = Some(f + 5);
        } else {
            out.push(Entry::Box(region));
        }
    }
    out
}

/// Sequence lengths: log-normal draws scaled so that their mean is `cfg.mean_frames`.
fn sequence_lengths(cfg: &GenerateConfig) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    rng.set_stream(u64::MAX - 1);
    let dist = LogNormal::new(0.0, 0.8).unwrap_or_else(|_| unreachable!("log-normal with finite parameters"));
    let raw: Vec<f64> = (0..cfg.sequences).map(|_| dist.sample(&mut rng)).collect();
    let mean = raw.iter().sum::<f64>() / raw.len().max(1) as f64;
    raw.iter().map(|r| ((r / mean * cfg.mean_frames).round() as usize).clamp(40, 1500)).collect()
}

const IMAGE_SIZES: [[f64; 2]; 5] = [[640.0, 360.0], [640.0, 480.0], [854.0, 480.0], [960.0, 540.0], [1280.0, 720.0]];

/// Generates a data set; `on_sequence` is called once per finished sequence (progress).
/// Identical for any number of threads: every sequence has its own random stream.
pub fn generate(cfg: &GenerateConfig, on_sequence: impl Fn() + Sync) -> (Dataset, Vec<TrackerProfile>) {
    let profiles = tracker_profiles(cfg.trackers, cfg.seed);
    let lengths = sequence_lengths(cfg);
    let per_seq: Vec<(Sequence, Vec<Vec<Entry>>)> = (0..cfg.sequences)
        .into_par_iter()
        .map(|s| {
            let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
            rng.set_stream(s as u64);
            let n = lengths[s];
            let image = IMAGE_SIZES[rng.random_range(0..IMAGE_SIZES.len())];
            let mut hard = vec![false; n];
            let segments = 1 + rng.random_range(0..=n / 200);
            for _ in 0..segments {
                let len = rng.random_range(10..60).min(n);
                let start = rng.random_range(0..=n - len);
                hard[start..start + len].iter_mut().for_each(|h| *h = true);
            }
            let targets = simulate_ground_truth(&mut rng, n, image, &hard);
            let groundtruth: Vec<Region> = targets.iter().map(|t| Region::Polygon(t.region().map(round2))).collect();
            let gt: Vec<GroundTruthArea> = groundtruth.iter().map(|r| GroundTruthArea::new(r, Some(image))).collect();
            let mut shared = Vec::with_capacity(n);
            let mut d = [0.0f64; 3];
            let unit = Normal::new(0.0, 1.0).unwrap_or_else(|_| unreachable!("unit normal"));
            for &h in &hard {
                let sigma = if h { 0.08 } else { 0.03 };
                for v in d.iter_mut() {
                    *v = 0.95 * *v + sigma * unit.sample(&mut rng);
                }
                shared.push(d);
            }
            let scene = Scene { targets: &targets, shared: &shared, gt: &gt, hard: &hard };
            let results = profiles
                .iter()
                .enumerate()
                .map(|(k, p)| {
                    let mut trng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x9e37_79b9_7f4a_7c15);
                    trng.set_stream(((s as u64) << 16) | k as u64);
                    simulate_tracker(&mut trng, p, &scene)
                })
                .collect();
            on_sequence();
            (Sequence { name: format!("seq{:03}", s + 1), image_size: Some(image), groundtruth }, results)
        })
        .collect();
    let mut sequences = Vec::with_capacity(per_seq.len());
    let mut results: Vec<Vec<Option<Vec<Entry>>>> = vec![Vec::with_capacity(per_seq.len()); profiles.len()];
    for (seq, res) in per_seq {
        sequences.push(seq);
        for (t, r) in res.into_iter().enumerate() {
            results[t].push(Some(r));
        }
    }
    let trackers = profiles.iter().map(|p| p.name.clone()).collect();
    (Dataset { sequences, trackers, results }, profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trackers_fail_and_reinitialise_five_frames_later() {
        let cfg = GenerateConfig { sequences: 3, trackers: 20, seed: 3, mean_frames: 300.0 };
        let (d, profiles) = generate(&cfg, || {});
        assert_eq!(profiles.len(), 20);
        let mut failures = 0;
        for per_seq in &d.results {
            for entries in per_seq.iter().flatten() {
                assert_eq!(entries[0], Entry::Init);
                for (f, e) in entries.iter().enumerate() {
                    if *e == Entry::Failure && f + 5 < entries.len() {
                        failures += 1;
                        assert!(entries[f + 1..f + 5].iter().all(|x| *x == Entry::NotTracked));
                        assert_eq!(entries[f + 5], Entry::Init);
                    }
                }
            }
        }
        assert!(failures > 0, "no failures at all");
        // Same seed, same data.
        let (again, _) = generate(&cfg, || {});
        assert_eq!(again, d);
    }
}
