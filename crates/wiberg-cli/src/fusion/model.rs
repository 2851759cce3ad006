//! The fusion model: per frame and box corner, `E(y) = -(1/K) sum_i a_i(age_i) exp(-|y - c_i|^2 / s_i^2)`
//! over the `K` trackers with a box, in coordinates normalised per frame (origin and scale from
//! the trackers' boxes, never from the ground truth), so that widths are fractions of the
//! target size. The `1/K` keeps the Hessian's scale independent of how many trackers report,
//! which makes one damping `lambda` meaningful across frames.
//!
//! Parameters (`p = T + T B`): `w[t]` the width of tracker `t`, `w[T + t B + b]` its weight in
//! age bin `b`, where the age is the number of frames since the tracker's last
//! (re)initialisation and bin `b` holds ages `2^b ..= 2^(b+1) - 1` (the last bin is open).

use super::iou::{BoxXyxy, GroundTruthArea};
use super::vot::{Dataset, Entry};
use crate::common::median_finite;
use anyhow::{bail, Context, Result};
use nalgebra::DMatrix;
use wiberg::optim::BoxConstraints;
use wiberg::{ArgminLayer, Energy, Start, WibergError};

/// Kernels whose exponent exceeds this are skipped in the seed scan: `exp(-36.8) < 1.1e-16`.
const SEED_SCAN_CUTOFF: f64 = 36.8;

/// Where each learned quantity lives in the parameter vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParamLayout {
    /// Number of trackers `T`.
    pub trackers: usize,
    /// Number of age bins `B`.
    pub bins: usize,
}

impl ParamLayout {
    /// Total number of parameters, `T + T B`.
    pub fn num_params(&self) -> usize {
        self.trackers * (1 + self.bins)
    }

    /// Index of tracker `t`'s width.
    pub fn width(&self, t: usize) -> usize {
        t
    }

    /// Index of tracker `t`'s weight in age bin `b`.
    pub fn weight(&self, t: usize, b: usize) -> usize {
        self.trackers + t * self.bins + b
    }

    /// The untrained model: one shared width, equal weights (the "before" of Figure 2).
    pub fn initial(&self, width: f64) -> Vec<f64> {
        let mut w = vec![1.0; self.num_params()];
        w[..self.trackers].fill(width);
        w
    }

    /// Bounds kept during training: widths in `[0.01, 4]` box sizes, weights in `[0.001, 1000]`.
    pub fn bounds(&self) -> Result<BoxConstraints> {
        let mut b = BoxConstraints::unbounded(self.num_params());
        b.set(0..self.trackers, 0.01, 4.0)?;
        b.set(self.trackers..self.num_params(), 1e-3, 1e3)?;
        Ok(b)
    }

    /// Age bin of a tracker initialised `age >= 1` frames ago: `floor(log2(age))`, capped.
    pub fn age_bin(&self, age: usize) -> usize {
        let b = (usize::BITS - 1 - age.max(1).leading_zeros()) as usize;
        b.min(self.bins.saturating_sub(1))
    }
}

/// One frame, prepared for fusion and scoring.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Sequence index in the data set.
    pub seq: usize,
    /// Frame index in the sequence.
    pub index: usize,
    /// Normalisation: pixel = origin + scale * y.
    pub origin: [f64; 2],
    /// Normalisation scale (median tracker box size, pixels).
    pub scale: f64,
    /// Tracker id of each kernel.
    pub trackers: Vec<u16>,
    /// Age bin of each kernel.
    pub bins: Vec<u8>,
    /// Top-left corners, normalised, flat `[x, y, x, y, ...]`.
    pub tl: Vec<f64>,
    /// Bottom-right corners, normalised, flat.
    pub br: Vec<f64>,
    width_param: Vec<u32>,
    weight_param: Vec<u32>,
    /// Ground-truth axis-aligned box (pixels; pysot's box of the polygon, see
    /// [`super::vot::Region::axis_aligned`]): the target of the corner loss.
    pub gt_box: BoxXyxy,
    /// Ground truth cut to the image: the IoU scorer.
    pub gt: GroundTruthArea,
}

impl Frame {
    /// Number of trackers with a box.
    pub fn len(&self) -> usize {
        self.trackers.len()
    }

    /// Whether no tracker has a box (nothing to fuse).
    pub fn is_empty(&self) -> bool {
        self.trackers.is_empty()
    }

    /// Size of the ground-truth box, `sqrt(w h)` in pixels (0 for a degenerate one).
    pub fn gt_size(&self) -> f64 {
        let g = &self.gt_box;
        ((g[2] - g[0]).max(0.0) * (g[3] - g[1]).max(0.0)).sqrt()
    }

    /// A normalised point in pixels.
    pub fn to_pixels(&self, y: [f64; 2]) -> [f64; 2] {
        [self.origin[0] + self.scale * y[0], self.origin[1] + self.scale * y[1]]
    }

    /// Box from normalised corners.
    pub fn box_pixels(&self, tl: [f64; 2], br: [f64; 2]) -> BoxXyxy {
        let a = self.to_pixels(tl);
        let b = self.to_pixels(br);
        [a[0], a[1], b[0], b[1]]
    }

    /// Box of kernel `k` (a tracker's box) in pixels.
    pub fn tracker_box(&self, k: usize) -> BoxXyxy {
        self.box_pixels([self.tl[2 * k], self.tl[2 * k + 1]], [self.br[2 * k], self.br[2 * k + 1]])
    }

    /// The energy of one corner (0 = top-left, 1 = bottom-right).
    pub fn energy(&self, corner: usize, num_params: usize) -> CornerEnergy<'_> {
        CornerEnergy {
            centers: if corner == 0 { &self.tl } else { &self.br },
            width_param: &self.width_param,
            weight_param: &self.weight_param,
            inv_k: 1.0 / self.trackers.len().max(1) as f64,
            num_params,
        }
    }

    /// Mean fusion: the mean of each corner coordinate (pixels).
    pub fn mean_box(&self) -> Option<BoxXyxy> {
        if self.is_empty() {
            return None;
        }
        let k = self.len() as f64;
        let m = |v: &[f64], i: usize| v.iter().skip(i).step_by(2).sum::<f64>() / k;
        Some(self.box_pixels([m(&self.tl, 0), m(&self.tl, 1)], [m(&self.br, 0), m(&self.br, 1)]))
    }

    /// Median fusion: the median of each corner coordinate (pixels).
    pub fn median_box(&self) -> Option<BoxXyxy> {
        if self.is_empty() {
            return None;
        }
        let m = |v: &[f64], i: usize| median_finite(v.iter().skip(i).step_by(2).copied());
        Some(self.box_pixels([m(&self.tl, 0)?, m(&self.tl, 1)?], [m(&self.br, 0)?, m(&self.br, 1)?]))
    }

    /// The ground-truth box's corners in normalised coordinates, and the loss scale
    /// `(scale / gt_size)^2` that turns normalised squared errors into errors relative to the
    /// ground-truth size.
    fn target(&self) -> ([f64; 4], f64) {
        let g = &self.gt_box;
        let t = [
            (g[0] - self.origin[0]) / self.scale,
            (g[1] - self.origin[1]) / self.scale,
            (g[2] - self.origin[0]) / self.scale,
            (g[3] - self.origin[1]) / self.scale,
        ];
        let size = ((g[2] - g[0]) * (g[3] - g[1])).max(1e-12).sqrt();
        (t, (self.scale / size).powi(2))
    }
}

/// Builds the frames of a data set: ages from the VOT codes, corners normalised per frame.
pub fn build_frames(data: &Dataset, layout: &ParamLayout) -> Result<Vec<Frame>> {
    if data.trackers.len() != layout.trackers {
        bail!("the model has {} trackers, the data {}", layout.trackers, data.trackers.len());
    }
    if layout.trackers > u16::MAX as usize || layout.bins > u8::MAX as usize + 1 {
        bail!("too many trackers ({}) or age bins ({})", layout.trackers, layout.bins);
    }
    let mut frames = Vec::with_capacity(data.num_frames());
    for (s, seq) in data.sequences.iter().enumerate() {
        let mut last_init = vec![0usize; layout.trackers];
        for (f, region) in seq.groundtruth.iter().enumerate() {
            let mut boxes = Vec::new();
            for (t, per_seq) in data.results.iter().enumerate() {
                // No result file for this sequence: no box on any of its frames.
                let Some(entries) = &per_seq[s] else { continue };
                match &entries[f] {
                    Entry::Init => last_init[t] = f,
                    Entry::Box(r) => boxes.push((t, f.saturating_sub(last_init[t]).max(1), r.bounds())),
                    Entry::Failure | Entry::NotTracked => {}
                }
            }
            let gt_box = region.axis_aligned();
            let gt = GroundTruthArea::new(region, seq.image_size);
            let (origin, scale) = if boxes.is_empty() {
                ([0.0, 0.0], 1.0)
            } else {
                let no_box = || format!("sequence `{}` frame {}: no finite tracker box", seq.name, f + 1);
                let cx = median_finite(boxes.iter().map(|(_, _, b)| 0.5 * (b[0] + b[2]))).with_context(no_box)?;
                let cy = median_finite(boxes.iter().map(|(_, _, b)| 0.5 * (b[1] + b[3]))).with_context(no_box)?;
                let sz =
                    median_finite(boxes.iter().map(|(_, _, b)| ((b[2] - b[0]).abs() * (b[3] - b[1]).abs()).sqrt()))
                        .with_context(no_box)?;
                ([cx, cy], sz.max(1.0))
            };
            let mut frame = Frame {
                seq: s,
                index: f,
                origin,
                scale,
                trackers: Vec::with_capacity(boxes.len()),
                bins: Vec::with_capacity(boxes.len()),
                tl: Vec::with_capacity(2 * boxes.len()),
                br: Vec::with_capacity(2 * boxes.len()),
                width_param: Vec::with_capacity(boxes.len()),
                weight_param: Vec::with_capacity(boxes.len()),
                gt_box,
                gt,
            };
            for (t, age, b) in boxes {
                let bin = layout.age_bin(age);
                frame.trackers.push(t as u16);
                frame.bins.push(bin as u8);
                frame.tl.extend([(b[0] - origin[0]) / scale, (b[1] - origin[1]) / scale]);
                frame.br.extend([(b[2] - origin[0]) / scale, (b[3] - origin[1]) / scale]);
                frame.width_param.push(layout.width(t) as u32);
                frame.weight_param.push(layout.weight(t, bin) as u32);
            }
            frames.push(frame);
        }
    }
    Ok(frames)
}

/// One corner's energy in one frame (2-D), borrowing the frame's data.
///
/// Equal to `RbfMixture::new(2, centers, width_index, Some(weight_index), p)` times `1/K`
/// (checked in the tests); written out here because the seed scan over the `K` tracker corners
/// is the hot loop of training and benefits from the flat, branch-light layout.
#[derive(Debug, Clone, Copy)]
pub struct CornerEnergy<'a> {
    centers: &'a [f64],
    width_param: &'a [u32],
    weight_param: &'a [u32],
    inv_k: f64,
    num_params: usize,
}

impl CornerEnergy<'_> {
    /// The kernel centres (flat), which are also the seeds of the forward pass.
    pub fn centers(&self) -> &[f64] {
        self.centers
    }

    #[inline]
    fn kernel(&self, k: usize, y: &[f64], w: &[f64]) -> (f64, f64, f64, f64, f64) {
        let s = w[self.width_param[k] as usize];
        let a = w[self.weight_param[k] as usize];
        let inv_s2 = 1.0 / (s * s);
        let dx = y[0] - self.centers[2 * k];
        let dy = y[1] - self.centers[2 * k + 1];
        let r = dx * dx + dy * dy;
        (a, inv_s2, dx, dy, r)
    }
}

impl Energy for CornerEnergy<'_> {
    fn dim(&self) -> usize {
        2
    }

    fn num_params(&self) -> usize {
        self.num_params
    }

    fn value(&self, y: &[f64], w: &[f64]) -> f64 {
        let mut e = 0.0;
        for k in 0..self.width_param.len() {
            let (a, inv_s2, _, _, r) = self.kernel(k, y, w);
            e -= a * (-r * inv_s2).exp();
        }
        e * self.inv_k
    }

    fn gradient(&self, y: &[f64], w: &[f64], g: &mut [f64]) -> f64 {
        let (mut e, mut gx, mut gy) = (0.0, 0.0, 0.0);
        for k in 0..self.width_param.len() {
            let (a, inv_s2, dx, dy, r) = self.kernel(k, y, w);
            let ek = a * (-r * inv_s2).exp();
            e -= ek;
            let c = 2.0 * ek * inv_s2;
            gx += c * dx;
            gy += c * dy;
        }
        g[0] = gx * self.inv_k;
        g[1] = gy * self.inv_k;
        e * self.inv_k
    }

    fn hessian(&self, y: &[f64], w: &[f64], h: &mut DMatrix<f64>) {
        let (mut hxx, mut hxy, mut hyy) = (0.0, 0.0, 0.0);
        for k in 0..self.width_param.len() {
            let (a, inv_s2, dx, dy, r) = self.kernel(k, y, w);
            let ek = a * (-r * inv_s2).exp();
            let diag = 2.0 * ek * inv_s2;
            let outer = 4.0 * ek * inv_s2 * inv_s2;
            hxx += diag - outer * dx * dx;
            hyy += diag - outer * dy * dy;
            hxy -= outer * dx * dy;
        }
        h[(0, 0)] = hxx * self.inv_k;
        h[(1, 1)] = hyy * self.inv_k;
        h[(0, 1)] = hxy * self.inv_k;
        h[(1, 0)] = hxy * self.inv_k;
    }

    fn mixed_vjp(&self, y: &[f64], w: &[f64], u: &[f64], out: &mut [f64]) {
        out.iter_mut().for_each(|v| *v = 0.0);
        self.accumulate_mixed_vjp(y, w, u, out);
    }

    /// The seed scan (K seeds x K kernels, the hot loop of training). Only the argmin over the
    /// seeds matters, so it uses [`approx_exp`] (relative error < 1e-12 on the range used) in a
    /// branch-free loop the compiler vectorises.
    /// The seed scan (K seeds x K kernels, the hot loop of training). Only the argmin over the
    /// seeds matters (the minimiser then works with exact values), so it runs in `f32` with
    /// [`approx_exp_f32`] (relative error ~1e-7), kernels outside and seeds inside: the inner
    /// loop updates independent accumulators, four to a SIMD register.
    fn values_at(&self, points: &[f64], w: &[f64], out: &mut [f64]) {
        let (px, py): (Vec<f32>, Vec<f32>) = points.chunks_exact(2).map(|c| (c[0] as f32, c[1] as f32)).unzip();
        let mut acc = vec![0.0f32; px.len()];
        for k in 0..self.width_param.len() {
            let s = w[self.width_param[k] as usize];
            let a = w[self.weight_param[k] as usize] as f32;
            let inv_s2 = (1.0 / (s * s)) as f32;
            let (cx, cy) = (self.centers[2 * k] as f32, self.centers[2 * k + 1] as f32);
            for ((e, x), y) in acc.iter_mut().zip(&px).zip(&py) {
                let (dx, dy) = (x - cx, y - cy);
                let r = ((dx * dx + dy * dy) * inv_s2).min(SEED_SCAN_CUTOFF as f32);
                *e -= a * approx_exp_f32(-r);
            }
        }
        for (o, e) in out.iter_mut().zip(&acc) {
            *o = f64::from(*e) * self.inv_k;
        }
    }
}

/// `exp(x)` in `f32` for `x` in `[-SEED_SCAN_CUTOFF, 0]`, branch-free and call-free (so loops
/// over it vectorise): `2^(x log2 e)` split into an integer power, set in the exponent bits,
/// and a remainder whose exponential is a degree-6 Taylor polynomial (relative error ~1e-6,
/// mostly the `f32` rounding of `x log2 e`).
#[inline(always)]
pub fn approx_exp_f32(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E;
    let kd = t + SHIFTER;
    let n = kd - SHIFTER;
    let f = (t - n) * std::f32::consts::LN_2;
    // exp(f) for |f| <= ln(2)/2, Horner.
    let mut p = 1.0 / 720.0;
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p * f + c;
    }
    // 2^n for n in [-54, 0]: the low 9 bits of kd's pattern are n mod 512 (2^22 is a multiple
    // of 512), and n + 127 is a normal exponent.
    p * f32::from_bits(kd.to_bits().wrapping_add(127) << 23)
}

impl CornerEnergy<'_> {
    /// Adds `d/dw <grad_y E, u>` into `out` (which is not cleared): lets the two corners of a
    /// frame share one gradient vector without a `p`-sized temporary each.
    pub fn accumulate_mixed_vjp(&self, y: &[f64], w: &[f64], u: &[f64], out: &mut [f64]) {
        for k in 0..self.width_param.len() {
            let (a, inv_s2, dx, dy, r) = self.kernel(k, y, w);
            let e = (-r * inv_s2).exp() * self.inv_k;
            let du = dx * u[0] + dy * u[1];
            let s = w[self.width_param[k] as usize];
            out[self.width_param[k] as usize] += 4.0 * a * e * du * (r * inv_s2 - 1.0) * inv_s2 / s;
            out[self.weight_param[k] as usize] += 2.0 * e * du * inv_s2;
        }
    }
}

/// The training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Squared corner error over the ground-truth box size squared (both corners summed).
    Corner,
    /// `1 - IoU` of the fused box with the ground-truth region (bounded by the image); its
    /// gradient in the four box coordinates by central differences (the overlap is only
    /// piecewise smooth), then through the argmin layer.
    Iou,
}

/// The fused box of a frame (normalised corners) and the two forward solutions.
pub struct Fused {
    /// `[x0, y0, x1, y1]`, normalised.
    pub corners: [f64; 4],
    solutions: [wiberg::Solution; 2],
}

/// Forward pass of one frame: both corners' argmins, started at the best tracker corner.
pub fn fuse(frame: &Frame, w: &[f64], layer: &ArgminLayer) -> wiberg::Result<Fused> {
    if frame.is_empty() {
        return Err(WibergError::InvalidArgument("no tracker has a box in this frame".into()));
    }
    let e0 = frame.energy(0, w.len());
    let e1 = frame.energy(1, w.len());
    let s0 = layer.forward(&e0, w, Start::Seeds(&frame.tl))?;
    let s1 = layer.forward(&e1, w, Start::Seeds(&frame.br))?;
    Ok(Fused { corners: [s0.y[0], s0.y[1], s1.y[0], s1.y[1]], solutions: [s0, s1] })
}

/// The fused box in pixels, or the reason it could not be computed.
pub fn predict(frame: &Frame, w: &[f64], layer: &ArgminLayer) -> wiberg::Result<BoxXyxy> {
    let f = fuse(frame, w, layer)?;
    Ok(frame.box_pixels([f.corners[0], f.corners[1]], [f.corners[2], f.corners[3]]))
}

/// Loss of one frame and its gradient in `w` (both corners through the argmin layer).
pub fn loss_and_grad(frame: &Frame, w: &[f64], layer: &ArgminLayer, loss: LossKind) -> wiberg::Result<(f64, Vec<f64>)> {
    let fused = fuse(frame, w, layer)?;
    let y = fused.corners;
    let (value, dl_dy) = match loss {
        LossKind::Corner => {
            let (t, k) = frame.target();
            let mut g = [0.0; 4];
            let mut l = 0.0;
            for i in 0..4 {
                let d = y[i] - t[i];
                l += k * d * d;
                g[i] = 2.0 * k * d;
            }
            (l, g)
        }
        LossKind::Iou => {
            let iou = |c: &[f64; 4]| frame.gt.iou(&frame.box_pixels([c[0], c[1]], [c[2], c[3]]));
            let h = 1e-4;
            let mut g = [0.0; 4];
            for i in 0..4 {
                let (mut p, mut m) = (y, y);
                p[i] += h;
                m[i] -= h;
                g[i] = -(iou(&p) - iou(&m)) / (2.0 * h);
            }
            (1.0 - iou(&y), g)
        }
    };
    let mut grad = vec![0.0; w.len()];
    for (c, sol) in fused.solutions.iter().enumerate() {
        let e = frame.energy(c, w.len());
        let v = [dl_dy[2 * c], dl_dy[2 * c + 1]];
        let back = layer.backward(&e, w, sol, &v)?;
        for (g, b) in grad.iter_mut().zip(&back.grad_w) {
            *g += b;
        }
    }
    Ok((value, grad))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiberg::RbfMixture;

    #[test]
    fn approx_exp_is_accurate_on_the_scan_range() {
        for i in 0..=20_000 {
            let x = -(SEED_SCAN_CUTOFF as f32) * i as f32 / 20_000.0;
            let (a, b) = (approx_exp_f32(x) as f64, (x as f64).exp());
            // Most of the error is the f32 rounding of x log2(e) itself.
            assert!((a - b).abs() <= 3e-6 * b, "{x}: {a} vs {b}");
        }
    }

    #[test]
    fn age_bins_are_log_spaced() {
        let l = ParamLayout { trackers: 2, bins: 4 };
        let bins: Vec<usize> = [1, 2, 3, 4, 7, 8, 100].iter().map(|&a| l.age_bin(a)).collect();
        assert_eq!(bins, vec![0, 1, 1, 2, 2, 3, 3]);
        assert_eq!(l.weight(1, 2), 2 + 4 + 2);
    }

    #[test]
    fn corner_energy_matches_rbf_mixture() {
        let centers = vec![0.1, -0.2, 0.3, 0.25, -0.4, 0.05];
        let width_param = vec![0u32, 1, 1];
        let weight_param = vec![2u32, 3, 4];
        let p = 5;
        let ours = CornerEnergy {
            centers: &centers,
            width_param: &width_param,
            weight_param: &weight_param,
            inv_k: 1.0 / 3.0,
            num_params: p,
        };
        let rbf = RbfMixture::new(2, centers.clone(), vec![0, 1, 1], Some(vec![2, 3, 4]), p).unwrap();
        let w = [0.3, 0.45, 1.2, 0.7, 2.0];
        let y = [0.05, 0.1];
        let mut g1 = [0.0; 2];
        let mut g2 = [0.0; 2];
        let v1 = ours.gradient(&y, &w, &mut g1);
        let v2 = rbf.gradient(&y, &w, &mut g2);
        assert!((3.0 * v1 - v2).abs() < 1e-14 && (3.0 * ours.value(&y, &w) - v2).abs() < 1e-14);
        for i in 0..2 {
            assert!((3.0 * g1[i] - g2[i]).abs() < 1e-13);
        }
        let mut h1 = DMatrix::zeros(2, 2);
        let mut h2 = DMatrix::zeros(2, 2);
        ours.hessian(&y, &w, &mut h1);
        rbf.hessian(&y, &w, &mut h2);
        assert!((h1 * 3.0 - h2).abs().max() < 1e-12);
        let u = [0.7, -1.3];
        let mut m1 = vec![0.0; p];
        let mut m2 = vec![0.0; p];
        ours.mixed_vjp(&y, &w, &u, &mut m1);
        rbf.mixed_vjp(&y, &w, &u, &mut m2);
        for i in 0..p {
            assert!((3.0 * m1[i] - m2[i]).abs() < 1e-12, "{i}: {} vs {}", 3.0 * m1[i], m2[i]);
        }
        let mut s1 = [0.0; 3];
        let mut s2 = [0.0; 3];
        ours.values_at(&centers, &w, &mut s1);
        rbf.values_at(&centers, &w, &mut s2);
        for i in 0..3 {
            // The seed scan runs in f32.
            assert!((3.0 * s1[i] - s2[i]).abs() < 1e-5 * s2[i].abs(), "{} vs {}", 3.0 * s1[i], s2[i]);
        }
    }
}
