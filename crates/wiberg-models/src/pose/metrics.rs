//! The evaluation metrics of `test.py` / `compute_error`: the ground truth is centred on the mean
//! of its 17 joints and the reconstruction multiplied by the ground truth's limb scale `l(GT)`
//! (an oracle scale); then metric 2 (MPJPE, no alignment) or scaled Procrustes alignment of the
//! reconstruction onto the ground truth, averaged over 17 joints or 14 (dropping 0, 7, 9).

// Index loops over joints and axes mirror the formulas.
#![allow(clippy::needless_range_loop)]

use super::data::Pose3d;
use super::model::limb_scale;
use super::params::N_JOINTS;
use nalgebra::Matrix3;

/// Which error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Metric {
    /// Metric 2 (default): mean per-joint error in mm after the oracle scale, no alignment.
    Mpjpe,
    /// Metric 1: after scaled Procrustes alignment, mean over 17 joints.
    Procrustes17,
    /// Metric 0: after scaled Procrustes alignment, mean over 14 joints (not 0, 7, 9).
    Procrustes14,
}

impl Metric {
    /// Every metric, in display order.
    pub const ALL: [Metric; 3] = [Metric::Mpjpe, Metric::Procrustes17, Metric::Procrustes14];

    /// `mpjpe`, `procrustes17` or `procrustes14` (as the command line spells it).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Mpjpe => "mpjpe",
            Metric::Procrustes17 => "procrustes17",
            Metric::Procrustes14 => "procrustes14",
        }
    }

    /// One line on what the metric measures.
    pub fn description(self) -> &'static str {
        match self {
            Metric::Mpjpe => "Metric 2 (default): mean per-joint error in mm after the oracle scale, no alignment",
            Metric::Procrustes17 => "Metric 1: after scaled Procrustes alignment, mean over 17 joints",
            Metric::Procrustes14 => "Metric 0: after scaled Procrustes alignment, mean over 14 joints (not 0, 7, 9)",
        }
    }
}

/// The ground truth centred on the mean of its joints.
pub fn centre(gt: &Pose3d) -> Pose3d {
    let mut mean = [0.0; 3];
    for p in gt {
        for d in 0..3 {
            mean[d] += p[d] / N_JOINTS as f64;
        }
    }
    let mut out = *gt;
    for p in out.iter_mut() {
        for d in 0..3 {
            p[d] -= mean[d];
        }
    }
    out
}

/// The reconstruction in mm: `rec * l(GT)` (no centring, as in `test.py`).
pub fn scaled_reconstruction(rec: &Pose3d, gt: &Pose3d) -> Pose3d {
    let s = limb_scale(&centre(gt));
    let mut out = *rec;
    for p in out.iter_mut() {
        for v in p.iter_mut() {
            *v *= s;
        }
    }
    out
}

fn dist(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// Scaled Procrustes alignment of `y` onto `x` (MATLAB `procrustes` with scaling, reflections
/// removed); returns the transformed `y`.
pub fn procrustes_align(x: &Pose3d, y: &Pose3d) -> Pose3d {
    let n = N_JOINTS as f64;
    let mut mx = [0.0; 3];
    let mut my = [0.0; 3];
    for j in 0..N_JOINTS {
        for d in 0..3 {
            mx[d] += x[j][d] / n;
            my[d] += y[j][d] / n;
        }
    }
    let mut ssx = 0.0;
    let mut ssy = 0.0;
    for j in 0..N_JOINTS {
        for d in 0..3 {
            ssx += (x[j][d] - mx[d]).powi(2);
            ssy += (y[j][d] - my[d]).powi(2);
        }
    }
    let (nx, ny) = (ssx.sqrt(), ssy.sqrt());
    // a = x0^T y0 (3 x 3), with x0, y0 scaled to unit norm.
    let mut a = Matrix3::zeros();
    for j in 0..N_JOINTS {
        for r in 0..3 {
            for c in 0..3 {
                a[(r, c)] += (x[j][r] - mx[r]) / nx * (y[j][c] - my[c]) / ny;
            }
        }
    }
    let svd = a.svd(true, true);
    let (Some(u), Some(vt)) = (svd.u, svd.v_t) else { return *y };
    let mut v: Matrix3<f64> = vt.transpose();
    let mut s = svd.singular_values;
    let t0: Matrix3<f64> = v * u.transpose();
    if t0.determinant() < 0.0 {
        // Make it a rotation: flip the direction of the smallest singular value.
        let k = (0..3).min_by(|&i, &j| s[i].total_cmp(&s[j])).unwrap_or(2);
        for r in 0..3 {
            v[(r, k)] = -v[(r, k)];
        }
        s[k] = -s[k];
    }
    let t: Matrix3<f64> = v * u.transpose();
    let trace: f64 = s.iter().sum();
    let b = trace * nx / ny;
    let mut out = [[0.0; 3]; N_JOINTS];
    for j in 0..N_JOINTS {
        for c in 0..3 {
            // aligned = b * y t + (mu_x - b mu_y t)
            out[j][c] = mx[c] + b * (0..3).map(|k| (y[j][k] - my[k]) * t[(k, c)]).sum::<f64>();
        }
    }
    out
}

/// The error of reconstruction `rec` (unit limb scale times `magic`, as returned by the model)
/// against ground truth `gt` (mm), in mm.
pub fn frame_error(metric: Metric, rec: &Pose3d, gt: &Pose3d) -> f64 {
    let truth = centre(gt);
    let recon = scaled_reconstruction(rec, gt);
    match metric {
        Metric::Mpjpe => (0..N_JOINTS).map(|j| dist(&truth[j], &recon[j])).sum::<f64>() / N_JOINTS as f64,
        Metric::Procrustes17 | Metric::Procrustes14 => {
            let aligned = procrustes_align(&truth, &recon);
            let joints: Vec<usize> = match metric {
                Metric::Procrustes14 => (0..N_JOINTS).filter(|j| ![0, 7, 9].contains(j)).collect(),
                _ => (0..N_JOINTS).collect(),
            };
            joints.iter().map(|&j| dist(&truth[j], &aligned[j])).sum::<f64>() / joints.len() as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pose(seed: f64) -> Pose3d {
        let mut p = [[0.0; 3]; N_JOINTS];
        for (j, pj) in p.iter_mut().enumerate() {
            for (d, v) in pj.iter_mut().enumerate() {
                // Quadratic phase: the points must not be coplanar (a mirror of a planar set is a rotation).
                *v = 300.0 * (((j * 3 + d) as f64).powi(2) * 0.37 + seed).sin();
            }
        }
        p
    }

    #[test]
    fn perfect_reconstruction_scores_zero_and_procrustes_undoes_similarity() {
        let gt = pose(0.3);
        let c = centre(&gt);
        let l = limb_scale(&c);
        let mut rec = c;
        for p in rec.iter_mut() {
            for v in p.iter_mut() {
                *v /= l;
            }
        }
        assert!(frame_error(Metric::Mpjpe, &rec, &gt) < 1e-9);
        // Rotate, scale and shift: MPJPE grows, Procrustes does not.
        let (s, co) = 0.7f64.sin_cos();
        let mut moved = rec;
        for p in moved.iter_mut() {
            let (x, y) = (p[0], p[1]);
            p[0] = 1.3 * (co * x - s * y) + 0.2;
            p[1] = 1.3 * (s * x + co * y);
            p[2] *= 1.3;
        }
        assert!(frame_error(Metric::Mpjpe, &moved, &gt) > 10.0);
        assert!(frame_error(Metric::Procrustes17, &moved, &gt) < 1e-6);
        assert!(frame_error(Metric::Procrustes14, &moved, &gt) < 1e-6);
        // A reflection is not undone.
        let mut mirrored = rec;
        for p in mirrored.iter_mut() {
            p[0] = -p[0];
        }
        assert!(frame_error(Metric::Procrustes17, &mirrored, &gt) > 1.0);
    }
}
