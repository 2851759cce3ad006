//! The damped 80-unknown normal equations of one (model, rotation) solve, by Schur complement.
//!
//! Unknowns `x = (a, q)`, `a` in R^29 (basis coefficients), `q` in R^51 (17 free 3-D points).
//! The normal matrix `N = A^T W A + lambda I` has the block form
//!
//! ```text
//!     [ Naa   -B^T ]        Naa = B^T B + w_reg D^T D + lambda I        (29 x 29)
//! N = [            ],       B   = the 51 x 29 basis matrix (3-D rows)
//!     [ -B    Qblk ]        Qblk = blockdiag(Q_0 .. Q_16), Q_j 3 x 3
//! ```
//!
//! because `q_j` appears only in its own three 3-D rows (coefficient -1) and its own 2-D rows.
//! Eliminating `q`: with `Q_j = L_j L_j^T`, `G_j = L_j^-1 B_j` and `h_j = L_j^-1 r_qj`,
//! `S = Naa - sum_j G_j^T G_j` (29 x 29, SPD) and `S a = r_a + sum_j G_j^T h_j`, then
//! `q_j = L_j^-T (h_j + G_j a)`. The factorisation is kept so that the same `N` can be applied
//! inversely to any right-hand side (the backward pass of a damped solve).

use super::params::{N_BASIS, N_JOINTS};
use anyhow::{bail, Result};

/// Number of basis coefficients.
pub const NA: usize = N_BASIS;
/// Number of free 3-D point coordinates.
pub const NQ: usize = 3 * N_JOINTS;
/// Total unknowns.
pub const NX: usize = NA + NQ;
/// Padded row length of the basis matrix (a multiple of 4 for the blocked products).
pub const NAP: usize = 32;

/// A symmetric 3x3 block, packed lower triangle: (00, 10, 11, 20, 21, 22).
pub type Sym3 = [f64; 6];

/// The basis matrix `B` of one model (51 x 29, rows padded to 32 with zeros):
/// `basis[3j+d][b] = B_b[d, j]`.
pub type Basis = [[f64; NAP]; NQ];

/// The inputs of one solve: the `a`-block (already damped), the `q`-blocks (already damped) and
/// the right-hand side `A^T W b`.
#[derive(Debug, Clone)]
pub struct NormalEquations {
    /// `Naa`, full symmetric 29 x 29.
    pub naa: [[f64; NA]; NA],
    /// `Q_j`, packed.
    pub q_blocks: [Sym3; N_JOINTS],
    /// Right-hand side for `a`.
    pub rhs_a: [f64; NA],
    /// Right-hand side for `q` (joint-major xyz).
    pub rhs_q: [f64; NQ],
}

impl Default for NormalEquations {
    fn default() -> Self {
        NormalEquations { naa: [[0.0; NA]; NA], q_blocks: [[0.0; 6]; N_JOINTS], rhs_a: [0.0; NA], rhs_q: [0.0; NQ] }
    }
}

/// The factorisation of `N` by Schur complement: reusable for any right-hand side.
#[derive(Debug, Clone)]
pub struct SchurFactor {
    /// Cholesky factors `L_j` of the q-blocks, packed lower triangle, diagonal stored inverted.
    pub l_blocks: [Sym3; N_JOINTS],
    /// `G = blockdiag(L_j^-1) B` (51 x 29, rows padded).
    pub g: [[f64; NAP]; NQ],
    /// Upper Cholesky factor `U` of the Schur complement, `S = U^T U` (lower part unused).
    pub s_chol: [[f64; NA]; NA],
    /// `1 / diag(s_chol)`.
    pub s_inv_diag: [f64; NA],
    /// Scratch: `G^T G` in 4 x 4 tiles (lower tiles only are filled).
    gtg: [[f64; NAP]; NAP],
}

impl Default for SchurFactor {
    fn default() -> Self {
        SchurFactor {
            l_blocks: [[0.0; 6]; N_JOINTS],
            g: [[0.0; NAP]; NQ],
            s_chol: [[0.0; NA]; NA],
            s_inv_diag: [0.0; NA],
            gtg: [[0.0; NAP]; NAP],
        }
    }
}

/// Cholesky factor of a packed 3x3 block, with the diagonal stored inverted (`1 / l_dd`) so
/// that the many substitutions multiply instead of divide.
fn chol3(m: &Sym3) -> Option<Sym3> {
    let l00 = m[0].sqrt();
    if l00.is_nan() || l00 <= 0.0 {
        return None;
    }
    let i00 = 1.0 / l00;
    let l10 = m[1] * i00;
    let l20 = m[3] * i00;
    let d1 = m[2] - l10 * l10;
    if d1.is_nan() || d1 <= 0.0 {
        return None;
    }
    let i11 = 1.0 / d1.sqrt();
    let l21 = (m[4] - l20 * l10) * i11;
    let d2 = m[5] - l20 * l20 - l21 * l21;
    if d2.is_nan() || d2 <= 0.0 {
        return None;
    }
    Some([i00, l10, i11, l20, l21, 1.0 / d2.sqrt()])
}

#[inline]
fn fwd3(l: &Sym3, b: [f64; 3]) -> [f64; 3] {
    let y0 = b[0] * l[0];
    let y1 = (b[1] - l[1] * y0) * l[2];
    let y2 = (b[2] - l[3] * y0 - l[4] * y1) * l[5];
    [y0, y1, y2]
}

#[inline]
fn bwd3(l: &Sym3, y: [f64; 3]) -> [f64; 3] {
    let x2 = y[2] * l[5];
    let x1 = (y[1] - l[4] * x2) * l[2];
    let x0 = (y[0] - l[1] * x1 - l[3] * x2) * l[0];
    [x0, x1, x2]
}

/// `sum_k a[k] b[k]` over the shorter slice, with four accumulators (so it vectorises).
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [0.0; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..4 {
            s[l] += x[l] * y[l];
        }
    }
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s[0] += x * y;
    }
    (s[0] + s[1]) + (s[2] + s[3])
}

/// `S = Naa - G^T G`, upper triangle, from 4 x 4 tiles accumulated in registers: the hot loop
/// of the whole model (51 x 29 x 29 / 2 multiply-adds per solve). Kept out of line so that
/// register allocation sees only this loop; `gtg` is scratch space.
#[inline(never)]
fn schur_complement(g: &[[f64; NAP]; NQ], naa: &[[f64; NA]; NA], gtg: &mut [[f64; NAP]; NAP], s: &mut [[f64; NA]; NA]) {
    for ti in 0..NAP / 4 {
        for tj in 0..=ti {
            let mut acc = [[0.0f64; 4]; 4];
            for row in g.iter() {
                let a = &row[4 * ti..4 * ti + 4];
                let b = &row[4 * tj..4 * tj + 4];
                for x in 0..4 {
                    for y in 0..4 {
                        acc[x][y] += a[x] * b[y];
                    }
                }
            }
            // Unconditional stores of whole tile rows: this is what lets the compiler keep the
            // tile in vector registers (conditional stores made it scalar and spill).
            for x in 0..4 {
                for y in 0..4 {
                    gtg[4 * ti + x][4 * tj + y] = acc[x][y];
                }
            }
        }
    }
    // Upper triangle of S (the tiles hold G^T G at [r][c] for r >= c).
    for r in 0..NA {
        for c in r..NA {
            s[r][c] = naa[r][c] - gtg[c][r];
        }
    }
}

impl SchurFactor {
    /// Factorises `N` (given by `eq`, with the model's basis matrix) into `self` and returns the
    /// solution `x = N^-1 rhs` of `eq`'s right-hand side.
    pub fn factor_and_solve(&mut self, basis: &Basis, eq: &NormalEquations) -> Result<[f64; NX]> {
        for j in 0..N_JOINTS {
            let Some(l) = chol3(&eq.q_blocks[j]) else {
                bail!("q-block {j} of the normal equations is not positive definite");
            };
            self.l_blocks[j] = l;
            // G_j = L_j^-1 B_j, three rows at once, vectorised over the 32 columns.
            let (b0, b1, b2) = (&basis[3 * j], &basis[3 * j + 1], &basis[3 * j + 2]);
            let rows = &mut self.g[3 * j..3 * j + 3];
            for col in 0..NAP {
                let y0 = b0[col] * l[0];
                let y1 = (b1[col] - l[1] * y0) * l[2];
                let y2 = (b2[col] - l[3] * y0 - l[4] * y1) * l[5];
                rows[0][col] = y0;
                rows[1][col] = y1;
                rows[2][col] = y2;
            }
        }
        let s = &mut self.s_chol;
        schur_complement(&self.g, &eq.naa, &mut self.gtg, s);
        // S = U^T U, right-looking on the upper triangle: every update runs along a contiguous
        // row, so it vectorises (a left-looking loop of short dot products did not).
        for c in 0..NA {
            let d = s[c][c];
            if d.is_nan() || d <= 0.0 {
                bail!("the 29 x 29 Schur complement is not positive definite (pivot {c}: {d:e})");
            }
            let root = d.sqrt();
            let inv = 1.0 / root;
            self.s_inv_diag[c] = inv;
            s[c][c] = root;
            for v in s[c][c + 1..].iter_mut() {
                *v *= inv;
            }
            let (top, bottom) = s.split_at_mut(c + 1);
            let pivot = &top[c];
            for (i, row) in bottom.iter_mut().enumerate() {
                let r = c + 1 + i;
                let f = pivot[r];
                for (v, p) in row[r..].iter_mut().zip(&pivot[r..]) {
                    *v -= f * p;
                }
            }
        }
        let mut rhs = [0.0; NX];
        rhs[..NA].copy_from_slice(&eq.rhs_a);
        rhs[NA..].copy_from_slice(&eq.rhs_q);
        Ok(self.solve(&rhs))
    }

    /// Solves `N x = rhs` with the stored factorisation.
    pub fn solve(&self, rhs: &[f64; NX]) -> [f64; NX] {
        let mut h = [0.0; NQ];
        for j in 0..N_JOINTS {
            let y = fwd3(&self.l_blocks[j], [rhs[NA + 3 * j], rhs[NA + 3 * j + 1], rhs[NA + 3 * j + 2]]);
            h[3 * j..3 * j + 3].copy_from_slice(&y);
        }
        // a-rhs: r_a + G^T h.
        let mut acc = [0.0; NAP];
        acc[..NA].copy_from_slice(&rhs[..NA]);
        for (row, hk) in self.g.iter().zip(&h) {
            for (v, g) in acc.iter_mut().zip(row) {
                *v += g * hk;
            }
        }
        let mut a = [0.0; NA];
        a.copy_from_slice(&acc[..NA]);
        // S a = r with S = U^T U: forward (U^T) by row updates, backward (U) by row dots.
        let s = &self.s_chol;
        let inv = &self.s_inv_diag;
        for r in 0..NA {
            let ar = a[r] * inv[r];
            a[r] = ar;
            for (v, u) in a[r + 1..].iter_mut().zip(&s[r][r + 1..]) {
                *v -= u * ar;
            }
        }
        for r in (0..NA).rev() {
            let v = a[r] - dot(&s[r][r + 1..], &a[r + 1..]);
            a[r] = v * inv[r];
        }
        // q_j = L_j^-T (h_j + G_j a).
        for (hk, row) in h.iter_mut().zip(self.g.iter()) {
            *hk += dot(&row[..NA], &a);
        }
        let mut x = [0.0; NX];
        x[..NA].copy_from_slice(&a);
        for j in 0..N_JOINTS {
            let q = bwd3(&self.l_blocks[j], [h[3 * j], h[3 * j + 1], h[3 * j + 2]]);
            x[NA + 3 * j..NA + 3 * j + 3].copy_from_slice(&q);
        }
        x
    }
}

/// The dense 80 x 80 normal matrix of `eq` (row-major), for tests and for the backward pass.
pub fn dense_matrix(basis: &Basis, eq: &NormalEquations) -> Vec<f64> {
    let mut n = vec![0.0; NX * NX];
    for r in 0..NA {
        for c in 0..NA {
            n[r * NX + c] = eq.naa[r][c];
        }
        for k in 0..NQ {
            n[r * NX + NA + k] = -basis[k][r];
            n[(NA + k) * NX + r] = -basis[k][r];
        }
    }
    for (j, m) in eq.q_blocks.iter().enumerate() {
        let full = [[m[0], m[1], m[3]], [m[1], m[2], m[4]], [m[3], m[4], m[5]]];
        for (d, row) in full.iter().enumerate() {
            for (e, v) in row.iter().enumerate() {
                n[(NA + 3 * j + d) * NX + NA + 3 * j + e] = *v;
            }
        }
    }
    n
}

/// Solves `eq` densely (nalgebra Cholesky on the full 80 x 80 matrix): the reference for tests.
pub fn dense_solve(basis: &Basis, eq: &NormalEquations) -> Result<[f64; NX]> {
    let n = nalgebra::DMatrix::from_row_slice(NX, NX, &dense_matrix(basis, eq));
    let mut rhs = nalgebra::DVector::zeros(NX);
    for i in 0..NA {
        rhs[i] = eq.rhs_a[i];
    }
    for k in 0..NQ {
        rhs[NA + k] = eq.rhs_q[k];
    }
    let Some(ch) = n.cholesky() else { bail!("the dense 80 x 80 normal matrix is not positive definite") };
    let sol = ch.solve(&rhs);
    let mut x = [0.0; NX];
    for i in 0..NX {
        x[i] = sol[i];
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_system(seed: u64) -> (Box<Basis>, NormalEquations) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut bt = Box::new([[0.0; NAP]; NQ]);
        for row in bt.iter_mut() {
            for v in row[..NA].iter_mut() {
                *v = rng.random_range(-1.0..1.0);
            }
        }
        let mut eq = NormalEquations::default();
        // Naa = B^T B + R^T R + 1e-3 I, q-blocks = I + U^T U + 1e-3 I: a real normal matrix.
        for r in 0..NA {
            for c in 0..NA {
                eq.naa[r][c] = (0..NQ).map(|k| bt[k][r] * bt[k][c]).sum::<f64>();
            }
        }
        let rr: Vec<f64> = (0..NA * NA).map(|_| rng.random_range(-0.5..0.5)).collect();
        for r in 0..NA {
            for c in 0..NA {
                eq.naa[r][c] += (0..NA).map(|k| rr[k * NA + r] * rr[k * NA + c]).sum::<f64>();
            }
            eq.naa[r][r] += 1e-3;
        }
        for blk in eq.q_blocks.iter_mut() {
            let u: Vec<f64> = (0..9).map(|_| rng.random_range(-2.0..2.0)).collect();
            let mut full = [[0.0; 3]; 3];
            for d in 0..3 {
                for e in 0..3 {
                    full[d][e] = (0..3).map(|k| u[k * 3 + d] * u[k * 3 + e]).sum::<f64>();
                }
                full[d][d] += 1.0 + 1e-3;
            }
            *blk = [full[0][0], full[1][0], full[1][1], full[2][0], full[2][1], full[2][2]];
        }
        for v in eq.rhs_a.iter_mut() {
            *v = rng.random_range(-1.0..1.0);
        }
        for v in eq.rhs_q.iter_mut() {
            *v = rng.random_range(-1.0..1.0);
        }
        (bt, eq)
    }

    #[test]
    fn schur_equals_dense_on_random_systems() {
        for seed in 0..5 {
            let (bt, eq) = random_system(seed);
            let mut f = Box::<SchurFactor>::default();
            let xs = f.factor_and_solve(&bt, &eq).unwrap();
            let xd = dense_solve(&bt, &eq).unwrap();
            let scale = xd.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for i in 0..NX {
                assert!((xs[i] - xd[i]).abs() <= 1e-9 * scale.max(1.0), "x[{i}]: {} vs {}", xs[i], xd[i]);
            }
            // The stored factorisation applies N^-1 to another vector too.
            let n = dense_matrix(&bt, &eq);
            let mut v = [0.0; NX];
            for (i, vi) in v.iter_mut().enumerate() {
                *vi = (i as f64 * 0.37).sin();
            }
            let y = f.solve(&v);
            for r in 0..NX {
                let nv: f64 = (0..NX).map(|c| n[r * NX + c] * y[c]).sum();
                assert!((nv - v[r]).abs() < 1e-8, "row {r}: {nv} vs {}", v[r]);
            }
        }
    }

    #[test]
    fn indefinite_blocks_are_errors() {
        let (bt, mut eq) = random_system(9);
        eq.q_blocks[4] = [-1.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        assert!(Box::<SchurFactor>::default().factor_and_solve(&bt, &eq).is_err());
    }
}
