//! [`RbfMixture`]: the paper's energy family, `E(y) = -sum_k a_k exp(-|y - c_k|^2 / s_k^2)`,
//! with analytic derivatives (the fast path of the experiments).

use crate::energy::Energy;
use crate::error::WibergError;
use crate::Result;
use nalgebra::DMatrix;

/// Kernels whose exponent `|y - c|^2 / s^2` exceeds this are skipped by the seed scan
/// ([`Energy::values_at`]): `exp(-36.8) < 1.1e-16`, below the rounding of any kernel's own
/// weight.
const SEED_SCAN_CUTOFF: f64 = 36.8;

/// Width of the batches of [`exp_neg_batch`].
const EXP_BATCH: usize = 8;

/// `out[j] = exp(-x[j])` for `0 <= x[j] <= 36.8` (the seed scan's range), branch-free over a
/// batch of 8 so that the compiler vectorises it and runs 4 independent chains of packed
/// operations (a single Horner chain is latency-bound): Cody-Waite reduction
/// `-x = k ln2 + r`, `|r| <= ln2 / 2`, a degree-13 Taylor polynomial (truncation below 5e-18,
/// evaluated by Estrin's scheme)
/// and `2^k` assembled from its bits. Within 2 ulp of `f64::exp` (unit test); used only to
/// rank seeds, never in the energy, gradient, Hessian or mixed derivatives.
#[inline(always)]
fn exp_neg_batch(x: &[f64; EXP_BATCH], out: &mut [f64; EXP_BATCH]) {
    const LN2_HI: f64 = 0.693_147_180_369_123_8; // 0x3FE62E42FEE00000: k * LN2_HI is exact
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10; // ln 2 - LN2_HI
                                                     // Adding 1.5 * 2^52 rounds to an integer, which then sits in the low mantissa bits.
    const SHIFTER: f64 = 6_755_399_441_055_744.0;
    const C13: f64 = 1.0 / 6_227_020_800.0;
    // 1/n! for n = 12 down to 0.
    const COEFFS: [f64; 13] = [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ];
    let mut z = [0.0; EXP_BATCH];
    let mut r = [0.0; EXP_BATCH];
    for j in 0..EXP_BATCH {
        z[j] = -x[j] * std::f64::consts::LOG2_E + SHIFTER;
        let k = z[j] - SHIFTER;
        r[j] = (-x[j] - k * LN2_HI) - k * LN2_LO;
    }
    // Estrin's scheme: the same polynomial with a dependency depth of 6 instead of 26.
    let mut p = [0.0; EXP_BATCH];
    for j in 0..EXP_BATCH {
        let r1 = r[j];
        let r2 = r1 * r1;
        let r4 = r2 * r2;
        let r8 = r4 * r4;
        let c = |i: usize| COEFFS[12 - i];
        let q01 = c(0) + c(1) * r1;
        let q23 = c(2) + c(3) * r1;
        let q45 = c(4) + c(5) * r1;
        let q67 = c(6) + c(7) * r1;
        let q89 = c(8) + c(9) * r1;
        let q1011 = c(10) + c(11) * r1;
        let q1213 = c(12) + C13 * r1;
        let low = (q01 + q23 * r2) + (q45 + q67 * r2) * r4;
        let high = (q89 + q1011 * r2) + q1213 * r4;
        p[j] = low + high * r8;
    }
    for j in 0..EXP_BATCH {
        // k is in [-54, 0]: 2^k is a normal number with exponent bits k + 1023.
        let k_bits = z[j].to_bits().wrapping_sub(SHIFTER.to_bits());
        out[j] = p[j] * f64::from_bits(k_bits.wrapping_add(1023) << 52);
    }
}

/// A weighted sum of Gaussian kernels in `d` dimensions, `E(y) = -sum_k a_k exp(-|y-c_k|^2/s_k^2)`.
///
/// The widths `s_k` and weights `a_k` are read from the parameter vector `w` through index
/// maps: `s_k = w[width_index[k]]`, `a_k = w[weight_index[k]]` (or 1 when there is no weight
/// map). Kernels may share parameters: one width for all (RANSAC), one width per tracker and a
/// weight per (tracker, age bin) (fusion).
///
/// ```
/// use wiberg::{Energy, RbfMixture};
/// // RANSAC-style: every kernel shares the width w[0].
/// let e = RbfMixture::shared_width(1, vec![-1.0, 1.0]).unwrap();
/// let mut g = [0.0];
/// let value = e.gradient(&[0.0], &[1.0], &mut g);
/// assert!((value + 2.0 * (-1.0f64).exp()).abs() < 1e-15);
/// assert!(g[0].abs() < 1e-15); // symmetric: the gradient vanishes at 0
/// ```
#[derive(Debug, Clone)]
pub struct RbfMixture {
    dim: usize,
    centers: Vec<f64>,
    width_index: Vec<usize>,
    weight_index: Option<Vec<usize>>,
    num_params: usize,
    /// Kernel indices sorted by the first coordinate of their centre (for the seed scan).
    order: Vec<usize>,
    /// `Some(i)` when the mixture is 1-D, unweighted and every kernel uses the width `w[i]`
    /// (RANSAC): the gradient then takes a loop with `1 / s^2` hoisted.
    shared_1d_width: Option<usize>,
}

impl RbfMixture {
    /// A mixture of `centers.len() / dim` kernels with index maps into a parameter vector of
    /// length `num_params`. `weight_index = None` fixes every weight at 1.
    ///
    /// Errors: empty or ragged centres, non-finite centres, index maps of the wrong length or
    /// pointing outside `0..num_params`.
    pub fn new(
        dim: usize,
        centers: Vec<f64>,
        width_index: Vec<usize>,
        weight_index: Option<Vec<usize>>,
        num_params: usize,
    ) -> Result<Self> {
        if dim == 0 || centers.is_empty() || centers.len() % dim != 0 {
            return Err(WibergError::InvalidArgument(format!(
                "RBF centres must be a non-empty list of {dim}-dimensional points, got {} numbers",
                centers.len()
            )));
        }
        crate::error::check_finite(&centers, "RBF centres")?;
        let k = centers.len() / dim;
        crate::error::check_len(width_index.len(), k, "RBF width index map")?;
        if let Some(wi) = &weight_index {
            crate::error::check_len(wi.len(), k, "RBF weight index map")?;
        }
        let out_of_range = width_index.iter().chain(weight_index.iter().flatten()).find(|&&i| i >= num_params);
        if let Some(i) = out_of_range {
            return Err(WibergError::InvalidArgument(format!(
                "RBF index map points at parameter {i}, but there are only {num_params}"
            )));
        }
        let mut order: Vec<usize> = (0..k).collect();
        order.sort_by(|&a, &b| centers[a * dim].total_cmp(&centers[b * dim]));
        let shared = width_index.iter().all(|&i| i == width_index[0]);
        let shared_1d_width = (dim == 1 && weight_index.is_none() && shared).then(|| width_index[0]);
        Ok(RbfMixture { dim, centers, width_index, weight_index, num_params, order, shared_1d_width })
    }

    /// All kernels share one width `w[0]` and have weight 1 (the RANSAC energy).
    pub fn shared_width(dim: usize, centers: Vec<f64>) -> Result<Self> {
        let k = centers.len().checked_div(dim).unwrap_or(0);
        RbfMixture::new(dim, centers, vec![0; k], None, 1)
    }

    /// Number of kernels.
    pub fn num_kernels(&self) -> usize {
        self.width_index.len()
    }

    /// The kernel centres, `num_kernels() * dim` numbers.
    pub fn centers(&self) -> &[f64] {
        &self.centers
    }

    #[inline]
    fn center(&self, k: usize) -> &[f64] {
        &self.centers[k * self.dim..(k + 1) * self.dim]
    }

    #[inline]
    fn weight(&self, k: usize, w: &[f64]) -> f64 {
        match &self.weight_index {
            Some(wi) => w[wi[k]],
            None => 1.0,
        }
    }

    #[inline]
    fn sq_dist(&self, y: &[f64], k: usize) -> f64 {
        self.center(k).iter().zip(y).map(|(c, yy)| (yy - c) * (yy - c)).sum()
    }

    /// The seed scan of the RANSAC case: one dimension, one shared width, seeds = centres.
    /// Pairs are visited once (the kernel matrix is symmetric) in the sorted window, and the
    /// exponentials of a row are computed in batches by [`exp_neg_batch`] (a polynomial the
    /// compiler vectorises; within 2 ulp of `f64::exp`), then added to both ends.
    fn values_at_centers_1d(&self, inv_s2: f64, radius: f64, xs: &[f64], w: &[f64], out: &mut [f64]) {
        let n = xs.len();
        let weights: Vec<f64> = self.order.iter().map(|&k| self.weight(k, w)).collect();
        let mut acc = vec![0.0; n];
        let mut exps = vec![0.0; n + EXP_BATCH];
        let mut row = vec![0.0; n + EXP_BATCH];
        let mut hi = 0;
        for a in 0..n {
            let xa = xs[a];
            while hi < n && xs[hi] - xa <= radius {
                hi += 1;
            }
            let lo = a + 1;
            if lo >= hi {
                acc[a] += weights[a];
                continue;
            }
            let m = hi - lo;
            // Exponents, padded with zeros to whole batches (the padding results are ignored).
            let padded = m.div_ceil(EXP_BATCH) * EXP_BATCH;
            for (xv, &xb) in exps[..m].iter_mut().zip(&xs[lo..hi]) {
                let dlt = xb - xa;
                *xv = dlt * dlt * inv_s2;
            }
            exps[m..padded].iter_mut().for_each(|v| *v = 0.0);
            for (xc, ec) in exps[..padded].chunks_exact(EXP_BATCH).zip(row[..padded].chunks_exact_mut(EXP_BATCH)) {
                let (Ok(xc), Ok(ec)) = (<&[f64; EXP_BATCH]>::try_from(xc), <&mut [f64; EXP_BATCH]>::try_from(ec))
                else {
                    continue; // unreachable: chunks_exact yields whole batches
                };
                exp_neg_batch(xc, ec);
                for (e, &x) in ec.iter_mut().zip(xc) {
                    if x > SEED_SCAN_CUTOFF {
                        *e = 0.0;
                    }
                }
            }
            let ex = &row[..m];
            // Point b sees kernel a (weight w_a): vectorisable update.
            let wa = weights[a];
            for (o, &e) in acc[lo..hi].iter_mut().zip(ex.iter()) {
                *o += wa * e;
            }
            // Point a sees kernels b: a reduction in a fixed order (four partial sums).
            let mut partial = [0.0; 4];
            let chunks = ex.chunks_exact(4);
            let wchunks = weights[lo..hi].chunks_exact(4);
            let (rest_e, rest_w) = (chunks.remainder(), wchunks.remainder());
            for (c, wc) in chunks.zip(wchunks) {
                for j in 0..4 {
                    partial[j] += wc[j] * c[j];
                }
            }
            let mut sum = (partial[0] + partial[1]) + (partial[2] + partial[3]);
            for (e, wb) in rest_e.iter().zip(rest_w) {
                sum += wb * e;
            }
            acc[a] += weights[a] + sum;
        }
        for (a, &k) in self.order.iter().enumerate() {
            out[k] = -acc[a];
        }
    }

    /// The seed scan when the seeds are the centres themselves (RANSAC): the kernel matrix
    /// `exp(-|c_i - c_j|^2 / s^2)` is symmetric when both kernels share a width, so each pair
    /// within the window is evaluated once and added to both ends (half the `exp` calls).
    /// Same cutoff as the general scan; only the summation order differs.
    fn values_at_centers(&self, w: &[f64], radius: f64, firsts: &[f64], out: &mut [f64]) {
        out.iter_mut().for_each(|o| *o = 0.0);
        let n = self.order.len();
        for a in 0..n {
            let i = self.order[a];
            let si = w[self.width_index[i]];
            let inv_si2 = 1.0 / (si * si);
            let ai = self.weight(i, w);
            // The kernel's own centre: exponent 0 (NaN for a zero width, skipped as below).
            if 0.0 * inv_si2 <= SEED_SCAN_CUTOFF {
                out[i] -= ai;
            }
            for b in a + 1..n {
                if firsts[b] - firsts[a] > radius {
                    break;
                }
                let j = self.order[b];
                let r = self.sq_dist(self.center(i), j);
                let aj = self.weight(j, w);
                let xi = r * inv_si2;
                if self.width_index[i] == self.width_index[j] {
                    if xi <= SEED_SCAN_CUTOFF {
                        let ex = (-xi).exp();
                        out[i] -= aj * ex;
                        out[j] -= ai * ex;
                    }
                } else {
                    let sj = w[self.width_index[j]];
                    let xj = r / (sj * sj);
                    // Point i sees kernel j (width sj), point j sees kernel i (width si).
                    if xj <= SEED_SCAN_CUTOFF {
                        out[i] -= aj * (-xj).exp();
                    }
                    if xi <= SEED_SCAN_CUTOFF {
                        out[j] -= ai * (-xi).exp();
                    }
                }
            }
        }
    }

    /// Checks that `w` has the right length and that every width used is finite and non-zero.
    pub fn validate_params(&self, w: &[f64]) -> Result<()> {
        crate::error::check_len(w.len(), self.num_params, "RBF parameters")?;
        crate::error::check_finite(w, "RBF parameters")?;
        if let Some(&i) = self.width_index.iter().find(|&&i| w[i] == 0.0) {
            return Err(WibergError::InvalidArgument(format!("RBF width w[{i}] is zero")));
        }
        Ok(())
    }
}

impl Energy for RbfMixture {
    fn dim(&self) -> usize {
        self.dim
    }

    fn num_params(&self) -> usize {
        self.num_params
    }

    fn value(&self, y: &[f64], w: &[f64]) -> f64 {
        let mut e = 0.0;
        for k in 0..self.num_kernels() {
            let s = w[self.width_index[k]];
            e -= self.weight(k, w) * (-self.sq_dist(y, k) / (s * s)).exp();
        }
        e
    }

    fn gradient(&self, y: &[f64], w: &[f64], g: &mut [f64]) -> f64 {
        g.iter_mut().for_each(|v| *v = 0.0);
        if let (Some(i), [y0], [g0]) = (self.shared_1d_width, y, &mut *g) {
            // The general loop below, specialised: the same operations in the same order
            // (bit-identical results), without a division and index lookups per kernel.
            let s = w[i];
            let inv_s2 = 1.0 / (s * s);
            let mut e = 0.0;
            for &c in &self.centers {
                let d = y0 - c;
                let ek = (-(d * d) * inv_s2).exp();
                e -= ek;
                *g0 += 2.0 * ek * inv_s2 * d;
            }
            return e;
        }
        let mut e = 0.0;
        for k in 0..self.num_kernels() {
            let s = w[self.width_index[k]];
            let inv_s2 = 1.0 / (s * s);
            let ek = self.weight(k, w) * (-self.sq_dist(y, k) * inv_s2).exp();
            e -= ek;
            let coef = 2.0 * ek * inv_s2;
            for (gi, (yi, ci)) in g.iter_mut().zip(y.iter().zip(self.center(k))) {
                *gi += coef * (yi - ci);
            }
        }
        e
    }

    fn hessian(&self, y: &[f64], w: &[f64], h: &mut DMatrix<f64>) {
        let d = self.dim;
        h.fill(0.0);
        let mut delta = vec![0.0; d];
        for k in 0..self.num_kernels() {
            let s = w[self.width_index[k]];
            let inv_s2 = 1.0 / (s * s);
            for (di, (yi, ci)) in delta.iter_mut().zip(y.iter().zip(self.center(k))) {
                *di = yi - ci;
            }
            let r: f64 = delta.iter().map(|v| v * v).sum();
            let ek = self.weight(k, w) * (-r * inv_s2).exp();
            let diag = 2.0 * ek * inv_s2;
            let outer = 4.0 * ek * inv_s2 * inv_s2;
            for i in 0..d {
                h[(i, i)] += diag;
                for j in 0..d {
                    h[(i, j)] -= outer * delta[i] * delta[j];
                }
            }
        }
    }

    fn mixed_vjp(&self, y: &[f64], w: &[f64], u: &[f64], out: &mut [f64]) {
        // <grad_y E, u> = sum_k 2 a_k e_k (delta_k . u) / s_k^2, e_k = exp(-r_k / s_k^2):
        //   d/da_k = 2 e_k (delta.u) / s^2
        //   d/ds_k = 4 a_k e_k (delta.u) (r / s^2 - 1) / s^3
        out.iter_mut().for_each(|v| *v = 0.0);
        for k in 0..self.num_kernels() {
            let s = w[self.width_index[k]];
            let inv_s2 = 1.0 / (s * s);
            let mut r = 0.0;
            let mut du = 0.0;
            for ((yi, ci), ui) in y.iter().zip(self.center(k)).zip(u) {
                let dlt = yi - ci;
                r += dlt * dlt;
                du += dlt * ui;
            }
            let e = (-r * inv_s2).exp();
            let a = self.weight(k, w);
            out[self.width_index[k]] += 4.0 * a * e * du * (r * inv_s2 - 1.0) * inv_s2 / s;
            if let Some(wi) = &self.weight_index {
                out[wi[k]] += 2.0 * e * du * inv_s2;
            }
        }
    }

    fn hvp(&self, y: &[f64], w: &[f64], v: &[f64], out: &mut [f64]) {
        out.iter_mut().for_each(|o| *o = 0.0);
        for k in 0..self.num_kernels() {
            let s = w[self.width_index[k]];
            let inv_s2 = 1.0 / (s * s);
            let mut r = 0.0;
            let mut dv = 0.0;
            for ((yi, ci), vi) in y.iter().zip(self.center(k)).zip(v) {
                let dlt = yi - ci;
                r += dlt * dlt;
                dv += dlt * vi;
            }
            let ek = self.weight(k, w) * (-r * inv_s2).exp();
            let diag = 2.0 * ek * inv_s2;
            let outer = 4.0 * ek * inv_s2 * inv_s2 * dv;
            for ((o, vi), (yi, ci)) in out.iter_mut().zip(v).zip(y.iter().zip(self.center(k))) {
                *o += diag * vi - outer * (yi - ci);
            }
        }
    }

    /// Seed scan: kernels are visited in order of their centre's first coordinate and only
    /// those within `sqrt(36.8) * max|s|` of the point on that axis are summed, so terms below
    /// `1.1e-16 * a_k` are dropped (the result can differ from [`Energy::value`] by that much
    /// per kernel; it only ranks seeds).
    fn values_at(&self, points: &[f64], w: &[f64], out: &mut [f64]) {
        let d = self.dim;
        let max_s2 = self.width_index.iter().map(|&i| w[i] * w[i]).fold(0.0f64, f64::max);
        let radius = (SEED_SCAN_CUTOFF * max_s2).sqrt();
        if !radius.is_finite() {
            for (o, y) in out.iter_mut().zip(points.chunks_exact(d)) {
                *o = self.value(y, w);
            }
            return;
        }
        let firsts: Vec<f64> = self.order.iter().map(|&k| self.centers[k * d]).collect();
        if points == self.centers.as_slice() {
            let shared = self.width_index.iter().all(|&i| i == self.width_index[0]);
            let inv_s2 = 1.0 / max_s2;
            if d == 1 && shared && inv_s2.is_finite() && inv_s2 > 0.0 {
                self.values_at_centers_1d(inv_s2, radius, &firsts, w, out);
            } else {
                self.values_at_centers(w, radius, &firsts, out);
            }
            return;
        }
        for (o, y) in out.iter_mut().zip(points.chunks_exact(d)) {
            let lo = firsts.partition_point(|&c| c < y[0] - radius);
            let hi = firsts.partition_point(|&c| c <= y[0] + radius);
            let mut e = 0.0;
            for &k in &self.order[lo..hi] {
                let s = w[self.width_index[k]];
                let x = self.sq_dist(y, k) / (s * s);
                if x <= SEED_SCAN_CUTOFF {
                    e -= self.weight(k, w) * (-x).exp();
                }
            }
            *o = e;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd_check(e: &RbfMixture, y: &[f64], w: &[f64]) {
        let n = e.dim();
        let p = e.num_params();
        let h = 1e-6;
        let mut g = vec![0.0; n];
        e.gradient(y, w, &mut g);
        let mut hess = DMatrix::zeros(n, n);
        e.hessian(y, w, &mut hess);
        for i in 0..n {
            let mut yp = y.to_vec();
            let mut ym = y.to_vec();
            yp[i] += h;
            ym[i] -= h;
            let fd = (e.value(&yp, w) - e.value(&ym, w)) / (2.0 * h);
            assert!((fd - g[i]).abs() < 1e-7, "grad {i}: {fd} vs {}", g[i]);
            let mut gp = vec![0.0; n];
            let mut gm = vec![0.0; n];
            e.gradient(&yp, w, &mut gp);
            e.gradient(&ym, w, &mut gm);
            for j in 0..n {
                let fdh = (gp[j] - gm[j]) / (2.0 * h);
                assert!((fdh - hess[(j, i)]).abs() < 1e-6, "hess {j},{i}: {fdh} vs {}", hess[(j, i)]);
            }
        }
        let u: Vec<f64> = (0..n).map(|i| 0.3 + i as f64).collect();
        let mut mv = vec![0.0; p];
        e.mixed_vjp(y, w, &u, &mut mv);
        for j in 0..p {
            let mut wp = w.to_vec();
            let mut wm = w.to_vec();
            wp[j] += h;
            wm[j] -= h;
            let mut gp = vec![0.0; n];
            let mut gm = vec![0.0; n];
            e.gradient(y, &wp, &mut gp);
            e.gradient(y, &wm, &mut gm);
            let fd: f64 = (0..n).map(|i| (gp[i] - gm[i]) / (2.0 * h) * u[i]).sum();
            assert!((fd - mv[j]).abs() < 1e-6, "mixed {j}: {fd} vs {}", mv[j]);
        }
        let mut hv = vec![0.0; n];
        e.hvp(y, w, &u, &mut hv);
        for i in 0..n {
            let dense: f64 = (0..n).map(|j| hess[(i, j)] * u[j]).sum();
            assert!((dense - hv[i]).abs() < 1e-12);
        }
    }

    #[test]
    fn derivatives_match_finite_differences_2d_with_weights() {
        let centers = vec![0.0, 0.0, 1.0, 0.5, -0.5, 1.2];
        let e = RbfMixture::new(2, centers, vec![0, 1, 1], Some(vec![2, 3, 2]), 4).unwrap();
        fd_check(&e, &[0.3, 0.4], &[0.9, 1.3, 0.7, 1.1]);
    }

    #[test]
    fn seed_scan_agrees_with_value() {
        let centers: Vec<f64> = (0..50).map(|i| ((i * 37) % 50) as f64 * 0.7 - 10.0).collect();
        let e = RbfMixture::shared_width(1, centers.clone()).unwrap();
        let mut fast = vec![0.0; 50];
        e.values_at(&centers, &[1.3], &mut fast);
        for (i, c) in centers.iter().enumerate() {
            assert!((fast[i] - e.value(&[*c], &[1.3])).abs() < 1e-14);
        }
    }

    #[test]
    fn symmetric_seed_scan_agrees_with_value_mixed_widths_and_weights() {
        // 2-D, two widths, weights: the pairwise scan over the centres themselves must match
        // the direct sum (pairs with different widths take the two-exp path).
        let k = 40;
        let centers: Vec<f64> = (0..2 * k).map(|i| ((i * 29) % 41) as f64 * 0.3 - 6.0).collect();
        let widths: Vec<usize> = (0..k).map(|i| i % 2).collect();
        let weights: Vec<usize> = (0..k).map(|i| 2 + i % 3).collect();
        let e = RbfMixture::new(2, centers.clone(), widths, Some(weights), 5).unwrap();
        let w = [0.8, 1.7, 0.5, 1.0, 2.0];
        let mut fast = vec![0.0; k];
        e.values_at(&centers, &w, &mut fast);
        for (i, y) in centers.chunks_exact(2).enumerate() {
            let direct = e.value(y, &w);
            assert!((fast[i] - direct).abs() < 1e-13, "{i}: {} vs {direct}", fast[i]);
        }
        // Seeds that are not the centres take the general path and agree too.
        let other: Vec<f64> = centers.iter().map(|c| c + 0.1).collect();
        e.values_at(&other, &w, &mut fast);
        for (i, y) in other.chunks_exact(2).enumerate() {
            assert!((fast[i] - e.value(y, &w)).abs() < 1e-13);
        }
    }

    #[test]
    fn exp_neg_is_within_two_ulp_of_std() {
        let mut worst: f64 = 0.0;
        let mut x = [0.0; EXP_BATCH];
        let mut out = [0.0; EXP_BATCH];
        for i in 0..46_000 {
            for (j, xj) in x.iter_mut().enumerate() {
                *xj = ((i * EXP_BATCH + j) as f64 * 1e-4 + (j % 3) as f64 * 1.3e-7).min(SEED_SCAN_CUTOFF);
            }
            exp_neg_batch(&x, &mut out);
            for j in 0..EXP_BATCH {
                let exact = (-x[j]).exp();
                worst = worst.max(((out[j] - exact) / exact).abs());
            }
        }
        assert!(worst <= 2.0 * f64::EPSILON, "worst relative error {worst:e}");
        exp_neg_batch(&[0.0; EXP_BATCH], &mut out);
        assert_eq!(out, [1.0; EXP_BATCH]);
    }

    #[test]
    fn fast_1d_scan_agrees_with_value_and_picks_an_equally_good_seed() {
        // Weights on, shared width: the 1-D fast path with weights.
        let k = 110;
        let centers: Vec<f64> = (0..k).map(|i| ((i * 53) % 97) as f64 * 0.83 - 40.0 + (i as f64) * 1e-3).collect();
        let e = RbfMixture::new(1, centers.clone(), vec![0; k], Some((0..k).map(|i| 1 + i % 2).collect()), 3).unwrap();
        for sigma in [0.3, 1.0, 4.0, 30.0, -7.0] {
            let w = [sigma, 0.7, 1.4];
            let mut fast = vec![0.0; k];
            e.values_at(&centers, &w, &mut fast);
            let direct: Vec<f64> = centers.iter().map(|c| e.value(&[*c], &w)).collect();
            for i in 0..k {
                assert!((fast[i] - direct[i]).abs() <= 1e-13 * (1.0 + direct[i].abs()), "{sigma} {i}");
            }
            let argmin = |v: &[f64]| (0..k).min_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
            let (a, b) = (argmin(&fast), argmin(&direct));
            assert!(
                a == b || (direct[a] - direct[b]).abs() <= 1e-13 * direct[b].abs(),
                "{sigma}: {a} {b} {} {} {} {}",
                direct[a],
                direct[b],
                fast[a],
                fast[b]
            );
        }
    }

    #[test]
    fn shared_1d_gradient_is_bit_identical_to_the_general_loop() {
        let centers: Vec<f64> = (0..60).map(|i| ((i * 37) % 61) as f64 * 1.3 - 40.0).collect();
        let fast = RbfMixture::shared_width(1, centers.clone()).unwrap();
        // Same kernels through the general path: a weight map pointing at a weight of 1.
        let general = RbfMixture::new(1, centers, vec![0; 60], Some(vec![1; 60]), 2).unwrap();
        for (y, s) in [(0.3, 1.0), (-12.7, 4.5), (33.0, -20.0)] {
            let (mut ga, mut gb) = ([0.0], [0.0]);
            let ea = fast.gradient(&[y], &[s], &mut ga);
            let eb = general.gradient(&[y], &[s, 1.0], &mut gb);
            assert_eq!((ea.to_bits(), ga[0].to_bits()), (eb.to_bits(), gb[0].to_bits()), "y {y} s {s}");
        }
    }

    #[test]
    fn bad_maps_are_errors() {
        assert!(RbfMixture::new(2, vec![0.0, 1.0, 2.0], vec![0], None, 1).is_err());
        assert!(RbfMixture::new(1, vec![0.0], vec![3], None, 1).is_err());
        assert!(RbfMixture::new(1, vec![f64::NAN], vec![0], None, 1).is_err());
        let e = RbfMixture::shared_width(1, vec![0.0]).unwrap();
        assert!(e.validate_params(&[0.0]).is_err());
        assert!(e.validate_params(&[f64::INFINITY]).is_err());
    }
}
