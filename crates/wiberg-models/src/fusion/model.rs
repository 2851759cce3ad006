//! The fusion model: per frame and box corner, `E(y) = -(1/K) sum_i a_i(age_i) exp(-|y - c_i|^2 / s_i^2)`
//! over the `K` trackers with a box, in coordinates normalised per frame (origin and scale from
//! the trackers' boxes, never from the ground truth), so that widths are fractions of the
//! target size. The `1/K` keeps the Hessian's scale independent of how many trackers report,
//! which makes one damping `lambda` meaningful across frames. Each corner's energy is the
//! library's [`RbfMixture`] (2-D, index maps into the parameters below, weight scale `1/K`).
//!
//! Parameters (`p = T + T B`): `w[t]` the width of tracker `t`, `w[T + t B + b]` its weight in
//! age bin `b`, where the age is the number of frames since the tracker's last
//! (re)initialisation and bin `b` holds ages `2^b ..= 2^(b+1) - 1` (the last bin is open).

use super::iou::{BoxXyxy, GroundTruthArea};
use super::vot::{Dataset, Entry};
use crate::error::{bail, Context, Result};
use crate::stats::median_finite;
use wiberg::optim::BoxConstraints;
use wiberg::{ArgminLayer, Damping, LbfgsConfig, Minimizer, RbfMixture, Start, WibergError};

/// The argmin layer of fusion's forward and backward passes with the given damping: L-BFGS
/// (at most 50 iterations, memory 5, gradient tolerance `1e-7`, at most 200 evaluations)
/// started at the best tracker corner, then the damped Newton polish.
pub fn layer_with(damping: Damping) -> ArgminLayer {
    ArgminLayer {
        minimizer: Minimizer::Lbfgs(LbfgsConfig {
            max_iters: 50,
            memory: 5,
            grad_tol: 1e-7,
            max_evals: 200,
            ..Default::default()
        }),
        polish: true,
        damping,
        ..Default::default()
    }
}

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
    /// The energies of the top-left and bottom-right corners, whose centres are the trackers'
    /// corners, normalised, flat `[x, y, x, y, ...]` (none when no tracker has a box).
    energies: Option<[RbfMixture; 2]>,
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

    /// The trackers' top-left corners, normalised, flat `[x, y, x, y, ...]`.
    pub fn tl(&self) -> &[f64] {
        self.energies.as_ref().map_or(&[], |e| e[0].centers())
    }

    /// The trackers' bottom-right corners, normalised, flat.
    pub fn br(&self) -> &[f64] {
        self.energies.as_ref().map_or(&[], |e| e[1].centers())
    }

    /// Box of kernel `k` (a tracker's box) in pixels.
    pub fn tracker_box(&self, k: usize) -> BoxXyxy {
        let (tl, br) = (self.tl(), self.br());
        self.box_pixels([tl[2 * k], tl[2 * k + 1]], [br[2 * k], br[2 * k + 1]])
    }

    /// The energy of one corner (0 = top-left, 1 = bottom-right); `None` when no tracker has a
    /// box or `corner > 1`.
    pub fn energy(&self, corner: usize) -> Option<&RbfMixture> {
        self.energies.as_ref().and_then(|e| e.get(corner))
    }

    /// Both corners' energies, or the error that no tracker has a box.
    fn energies(&self) -> wiberg::Result<&[RbfMixture; 2]> {
        self.energies.as_ref().ok_or_else(|| WibergError::InvalidArgument("no tracker has a box in this frame".into()))
    }

    /// Mean fusion: the mean of each corner coordinate (pixels).
    pub fn mean_box(&self) -> Option<BoxXyxy> {
        if self.is_empty() {
            return None;
        }
        let k = self.len() as f64;
        let m = |v: &[f64], i: usize| v.iter().skip(i).step_by(2).sum::<f64>() / k;
        let (tl, br) = (self.tl(), self.br());
        Some(self.box_pixels([m(tl, 0), m(tl, 1)], [m(br, 0), m(br, 1)]))
    }

    /// Median fusion: the median of each corner coordinate (pixels).
    pub fn median_box(&self) -> Option<BoxXyxy> {
        if self.is_empty() {
            return None;
        }
        let m = |v: &[f64], i: usize| median_finite(v.iter().skip(i).step_by(2).copied());
        let (tl, br) = (self.tl(), self.br());
        Some(self.box_pixels([m(tl, 0)?, m(tl, 1)?], [m(br, 0)?, m(br, 1)?]))
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
            let k = boxes.len();
            let mut trackers = Vec::with_capacity(k);
            let mut bins = Vec::with_capacity(k);
            let (mut tl, mut br) = (Vec::with_capacity(2 * k), Vec::with_capacity(2 * k));
            let (mut width_index, mut weight_index) = (Vec::with_capacity(k), Vec::with_capacity(k));
            for (t, age, b) in boxes {
                let bin = layout.age_bin(age);
                trackers.push(t as u16);
                bins.push(bin as u8);
                tl.extend([(b[0] - origin[0]) / scale, (b[1] - origin[1]) / scale]);
                br.extend([(b[2] - origin[0]) / scale, (b[3] - origin[1]) / scale]);
                width_index.push(layout.width(t));
                weight_index.push(layout.weight(t, bin));
            }
            let energies = if k == 0 {
                None
            } else {
                let p = layout.num_params();
                let corner = |centers: Vec<f64>| {
                    RbfMixture::new(2, centers, width_index.clone(), Some(weight_index.clone()), p)
                        .and_then(|e| e.with_weight_scale(1.0 / k as f64))
                        .with_context(|| format!("sequence `{}` frame {}: corner energy", seq.name, f + 1))
                };
                Some([corner(tl)?, corner(br)?])
            };
            frames.push(Frame { seq: s, index: f, origin, scale, trackers, bins, energies, gt_box, gt });
        }
    }
    Ok(frames)
}

/// The training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    let [e0, e1] = frame.energies()?;
    let s0 = layer.forward(e0, w, Start::Seeds(e0.centers()))?;
    let s1 = layer.forward(e1, w, Start::Seeds(e1.centers()))?;
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
    for (c, (sol, e)) in fused.solutions.iter().zip(frame.energies()?).enumerate() {
        let v = [dl_dy[2 * c], dl_dy[2 * c + 1]];
        let back = layer.backward(e, w, sol, &v)?;
        for (g, b) in grad.iter_mut().zip(&back.grad_w) {
            *g += b;
        }
    }
    Ok((value, grad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_bins_are_log_spaced() {
        let l = ParamLayout { trackers: 2, bins: 4 };
        let bins: Vec<usize> = [1, 2, 3, 4, 7, 8, 100].iter().map(|&a| l.age_bin(a)).collect();
        assert_eq!(bins, vec![0, 1, 1, 2, 2, 3, 3]);
        assert_eq!(l.weight(1, 2), 2 + 4 + 2);
    }

    #[test]
    fn corner_energy_is_the_documented_model() {
        // A small synthetic set: a frame with at least three boxes, several age bins.
        let data = super::super::generate::generate(
            &super::super::generate::GenerateConfig { sequences: 1, trackers: 5, seed: 3, mean_frames: 30.0 },
            || {},
        )
        .0;
        let layout = ParamLayout { trackers: 5, bins: 3 };
        let frames = build_frames(&data, &layout).unwrap();
        let frame = frames.iter().find(|f| f.len() >= 3).unwrap();
        let p = layout.num_params();
        let w: Vec<f64> = (0..p).map(|i| if i < 5 { 0.2 + 0.1 * i as f64 } else { 0.5 + 0.07 * i as f64 }).collect();
        let k = frame.len() as f64;
        for (corner, centers) in [(0, frame.tl()), (1, frame.br())] {
            let e = frame.energy(corner).unwrap();
            let y = [0.03, -0.02];
            let direct: f64 = (0..frame.len())
                .map(|i| {
                    let (t, b) = (frame.trackers[i] as usize, frame.bins[i] as usize);
                    let (s, a) = (w[layout.width(t)], w[layout.weight(t, b)]);
                    let r = (y[0] - centers[2 * i]).powi(2) + (y[1] - centers[2 * i + 1]).powi(2);
                    -a * (-r / (s * s)).exp() / k
                })
                .sum();
            let value = wiberg::Energy::value(e, &y, &w);
            assert!((value - direct).abs() < 1e-14, "corner {corner}: {value} vs {direct}");
        }
        assert!(frame.energy(2).is_none());
    }
}
