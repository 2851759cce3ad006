//! Block-arrow damped solves: many small independent diagonal blocks coupled through a dense
//! border, factorised once by Schur complement.
//!
//! # The structure
//! A [`BlockArrow`] holds a symmetric `n x n` matrix with `n = m + k B`, unknowns ordered
//! `y = (z, p_0, ..., p_{k-1})`: a *border* `z` of `m` unknowns, then `k` *blocks* of `B`
//! unknowns each, where block `p_j` interacts only with itself and with the border:
//!
//! ```text
//!     [ A     C_0^T  C_1^T ... ]      A   : m x m, dense (the border)
//! H = [ C_0   D_0    0         ]      D_j : B x B (the diagonal blocks)
//!     [ C_1   0      D_1       ]      C_j : B x m (the coupling of block j with the border)
//!     [ ...              ...   ]
//! ```
//!
//! That is the shape of bundle adjustment (cameras in the border, 3-D points in 3 x 3 blocks)
//! and of the pose energy (29 basis coefficients in the border, 17 free 3-D points). Only the
//! lower triangles of `A` and of every `D_j` are read (the matrix is symmetric by definition);
//! the coupling is stored as `k B` rows of length `m`: row `B j + d` is row `d` of `C_j`.
//!
//! # The factorisation
//! [`BlockArrowFactor`] factorises `H + s I` (shift `s` chosen by the [`Damping`] mode) by
//! eliminating the blocks first: with `D_j + s I = L_j L_j^T` and `G_j = L_j^-1 C_j`, the Schur
//! complement `S = A + s I - sum_j G_j^T G_j` (`m x m`) is Cholesky-factorised, `S = U^T U`.
//! Cost `O(k B m^2)` instead of `O((m + k B)^3)`: linear in the number of blocks. A solve then
//! costs `O(k B m + m^2)`. That is the fast path (every pivot positive: the matrix is positive
//! definite); it is allocation-free when the factor is reused with
//! [`BlockArrowFactor::factorize_into`]. The coupling rows and `G` are stored padded to a
//! multiple of 4 columns. `S` and its factor are computed together, by block rows of 4 of `U`:
//! each 4 x 4 tile of a block row (two at a time in the AVX2 compilation) is `A - G^T G`
//! accumulated in registers, from which the earlier pivot rows of `U` are subtracted, still in
//! registers (4 x 1 strips for the last `m mod 4` columns, so no tile is spent on the padding);
//! then the block row's own pivots are taken one at a time. Every entry goes through the same
//! operations in the same order as in a right-looking factorisation of the whole `S`, without
//! its many short row updates (the pose model's factorisation: 26 % fewer instructions than
//! `G^T G` tiles followed by that factorisation). Borders of up to 32 unknowns run kernels
//! compiled for their padded width (unrolled, without bounds checks),
//! larger ones the same kernels with a runtime width (identical arithmetic). On x86-64 CPUs
//! with AVX2 the factorisation and the solve run compiled for it, four lanes to a register
//! (detected at run time; the same operations in the same order, so the same bits).
//!
//! When `H + s I` is not positive definite (only possible under `Implicit` and `TrustRegion`),
//! a slower *spectral* path is taken: every `D_j` is eigendecomposed, the Schur complement is
//! formed with `(D_j + s I)^-1` and solved by LU with partial pivoting. It needs every
//! `D_j + s I` to be invertible (a singular block is [`WibergError::SingularHessian`] even when
//! the whole matrix is not singular).
//!
//! # What the [`Diagnostics`] hold
//! `solver` is [`LinearSolver::BlockArrow`], `shift` the shift actually added, and
//! `eigen_exact` is always `false`:
//!
//! * Fast (Cholesky) path: the pivots of a Cholesky factorisation lie between the smallest and
//!   the largest eigenvalue of the matrix factorised (each pivot is `1 / (A_k^-1)_kk` for a
//!   leading principal submatrix `A_k`, and eigenvalues interlace). So `min_eigenvalue =
//!   min pivot - s` is an **upper bound** of the smallest eigenvalue of `H`, `max_eigenvalue =
//!   max pivot - s` a **lower bound** of the largest, and `condition = max pivot / min pivot`
//!   a **lower bound** of the 2-norm condition of `H + s I` (free: no extra solve; it can be far
//!   below the true condition, e.g. for a long chain of weakly coupled unknowns).
//! * `Guarded` when `H` itself is not positive definite: `min_eigenvalue` is a **lower bound**
//!   of the smallest eigenvalue of `H`, found by bisection to about `n eps |H|` (see below), and
//!   the shift is `lambda - min_eigenvalue`, so `H + s I >= lambda I` holds.
//! * Spectral path: `min_eigenvalue` is a lower bound and `max_eigenvalue` an upper bound of the
//!   extreme eigenvalues of `H` from the same bisection (tight to its tolerance), and
//!   `condition = max |eig| / min |eig|` of `H + s I` from those bisections (equal to the 2-norm
//!   condition up to the tolerance).
//!
//! # The smallest eigenvalue of the whole matrix (`Guarded`)
//! If the block Cholesky factorisation of `H` (unshifted) succeeds, `H` is positive definite and
//! the guarded shift is `lambda`. Otherwise the smallest eigenvalue is bracketed by bisection on
//! `t`, counting the eigenvalues of `H` below `t` with Sylvester's law of inertia applied to the
//! block elimination of `H - t I` (Haynsworth's inertia additivity): the count is the number of
//! eigenvalues of the blocks `D_j` below `t` plus the number of negative eigenvalues of the
//! Schur complement `S(t) = A - t I - sum_j C_j^T (D_j - t I)^-1 C_j` (an `m x m` symmetric
//! eigenvalue problem per step). The bisection starts from Gershgorin's interval and stops at a
//! relative width of about `n eps`; the lower end is returned.
//!
//! ```
//! use wiberg::damped::{BlockArrow, BlockArrowFactor, DampedFactor};
//! use wiberg::Damping;
//! // Border of 1 unknown, two 2 x 2 blocks: n = 5.
//! let mut h = BlockArrow::<2>::new(1, 2);
//! h.border_mut()[0] = 4.0;
//! for block in h.blocks_mut() {
//!     *block = [[2.0, 0.0], [0.5, 3.0]]; // lower triangle read: (1, 0) = 0.5
//! }
//! for row in h.coupling_rows_mut() {
//!     row[0] = 1.0;
//! }
//! let factor = BlockArrowFactor::factorize(&h, Damping::TrustRegion { lambda: 0.1 }).unwrap();
//! let mut v = vec![1.0, 0.0, 2.0, -1.0, 0.5];
//! factor.solve_in_place(&mut v).unwrap();
//! // Check (H + 0.1 I) v = rhs with the dense matrix.
//! let dense = h.to_dense();
//! let x = nalgebra::DVector::from_column_slice(&v);
//! let r = &dense * &x + &x * 0.1;
//! assert!((r[0] - 1.0).abs() < 1e-12 && (r[3] + 1.0).abs() < 1e-12);
//! assert_eq!(factor.diagnostics().shift, 0.1);
//! ```

// The small dense kernels index rows and columns as the formulas do.
#![allow(clippy::needless_range_loop)]

use crate::avx2::{run_kernel, Kernel};
use crate::damped::DampedFactor;
use crate::error::WibergError;
use crate::{Damping, Diagnostics, LinearSolver, Result};
use nalgebra::DMatrix;

/// A symmetric block-arrow matrix: a dense `m x m` border, `k` diagonal `B x B` blocks and
/// their `B x m` couplings with the border (see the [module documentation](self)).
///
/// Unknowns are ordered border first, then block by block. Only the lower triangles of the
/// border and of the blocks are read. The energy (or whoever assembles the matrix) writes the
/// entries through [`BlockArrow::border_mut`], [`BlockArrow::blocks_mut`] and
/// [`BlockArrow::coupling_rows_mut`]; the storage is reused between assemblies.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockArrow<const B: usize> {
    border_dim: usize,
    /// Row length of the coupling storage: `m` rounded up to a multiple of 4 (the padding is
    /// zero and never read into a result; it lets the Schur complement run in 4 x 4 tiles).
    stride: usize,
    /// `A`, row-major `m x m`.
    border: Vec<f64>,
    /// `D_j`.
    blocks: Vec<[[f64; B]; B]>,
    /// `C`, `k B` rows of `stride` values.
    coupling: Vec<f64>,
}

/// Row length of the padded coupling storage.
fn padded(m: usize) -> usize {
    m.div_ceil(4) * 4
}

impl<const B: usize> BlockArrow<B> {
    /// The zero matrix with a border of `border_dim` unknowns and `n_blocks` blocks of `B`
    /// (`B = 0` does not compile; an empty matrix is refused when factorised).
    pub fn new(border_dim: usize, n_blocks: usize) -> Self {
        const { assert!(B > 0, "block-arrow blocks must have size B >= 1") };
        let stride = padded(border_dim);
        BlockArrow {
            border_dim,
            stride,
            border: vec![0.0; border_dim * border_dim],
            blocks: vec![[[0.0; B]; B]; n_blocks],
            coupling: vec![0.0; n_blocks * B * stride],
        }
    }

    /// Number of border unknowns `m`.
    pub fn border_dim(&self) -> usize {
        self.border_dim
    }

    /// Number of diagonal blocks `k`.
    pub fn n_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Dimension `n = m + k B`.
    pub fn dim(&self) -> usize {
        self.border_dim + B * self.blocks.len()
    }

    /// The border `A`, row-major `m x m` (lower triangle read).
    pub fn border(&self) -> &[f64] {
        &self.border
    }

    /// The border `A`, row-major `m x m`, to write (only the lower triangle is read).
    pub fn border_mut(&mut self) -> &mut [f64] {
        &mut self.border
    }

    /// The diagonal blocks `D_j` (lower triangles read).
    pub fn blocks(&self) -> &[[[f64; B]; B]] {
        &self.blocks
    }

    /// The diagonal blocks `D_j`, to write (only the lower triangles are read).
    pub fn blocks_mut(&mut self) -> &mut [[[f64; B]; B]] {
        &mut self.blocks
    }

    /// The coupling rows, `k B` slices of length `m`: row `B j + d` is row `d` of `C_j`, the
    /// derivative of the gradient's component for unknown `d` of block `j` with respect to the
    /// border.
    pub fn coupling_rows(&self) -> impl Iterator<Item = &[f64]> + '_ {
        let m = self.border_dim;
        self.coupling.chunks_exact(self.stride.max(1)).map(move |row| &row[..m])
    }

    /// The coupling rows to write (see [`BlockArrow::coupling_rows`]).
    pub fn coupling_rows_mut(&mut self) -> impl Iterator<Item = &mut [f64]> + '_ {
        let m = self.border_dim;
        self.coupling.chunks_exact_mut(self.stride.max(1)).map(move |row| &mut row[..m])
    }

    /// Coupling row `r` (row `r mod B` of `C_{r / B}`) to write, `m` values; `None` past the
    /// last row.
    pub fn coupling_row_mut(&mut self, r: usize) -> Option<&mut [f64]> {
        let (m, stride) = (self.border_dim, self.stride);
        self.coupling.get_mut(r * stride..r * stride + m)
    }

    /// Copies the border and the blocks of `other`, and its coupling too when `coupling` is
    /// set (an assembly that starts from a fixed matrix whose coupling it already holds skips
    /// that copy, the largest of the three). Dimensions must match.
    pub(crate) fn copy_from(&mut self, other: &Self, coupling: bool) {
        self.border.copy_from_slice(&other.border);
        self.blocks.copy_from_slice(&other.blocks);
        if coupling {
            self.coupling.copy_from_slice(&other.coupling);
        }
    }

    /// Sets every entry to zero (keeping the storage).
    pub fn set_zero(&mut self) {
        self.border.fill(0.0);
        self.blocks.fill([[0.0; B]; B]);
        self.coupling.fill(0.0);
    }

    /// The full symmetric matrix (from the lower triangles), for tests and small problems.
    pub fn to_dense(&self) -> DMatrix<f64> {
        let m = self.border_dim;
        let mut h = DMatrix::zeros(self.dim(), self.dim());
        for r in 0..m {
            for c in 0..=r {
                h[(r, c)] = self.border[r * m + c];
                h[(c, r)] = self.border[r * m + c];
            }
        }
        for (q, row) in self.coupling_rows().enumerate() {
            for (c, v) in row.iter().enumerate() {
                h[(m + q, c)] = *v;
                h[(c, m + q)] = *v;
            }
        }
        for (j, blk) in self.blocks.iter().enumerate() {
            let o = m + B * j;
            for r in 0..B {
                for c in 0..=r {
                    h[(o + r, o + c)] = blk[r][c];
                    h[(o + c, o + r)] = blk[r][c];
                }
            }
        }
        h
    }

    /// Whether every entry that is read is finite.
    fn all_finite(&self) -> bool {
        let m = self.border_dim;
        (0..m).all(|r| self.border[r * m..r * m + r + 1].iter().all(|v| v.is_finite()))
            && self.coupling.iter().all(|v| v.is_finite())
            && self.blocks.iter().all(|b| (0..B).all(|r| b[r][..=r].iter().all(|v| v.is_finite())))
    }

    /// Gershgorin interval containing every eigenvalue.
    fn gershgorin(&self) -> (f64, f64) {
        let m = self.border_dim;
        let mut radius = vec![0.0; self.dim()];
        let mut diag = vec![0.0; self.dim()];
        for r in 0..m {
            diag[r] = self.border[r * m + r];
            for c in 0..r {
                let a = self.border[r * m + c].abs();
                radius[r] += a;
                radius[c] += a;
            }
        }
        for (q, row) in self.coupling_rows().enumerate() {
            for (c, v) in row.iter().enumerate() {
                radius[m + q] += v.abs();
                radius[c] += v.abs();
            }
        }
        for (j, blk) in self.blocks.iter().enumerate() {
            let o = m + B * j;
            for r in 0..B {
                diag[o + r] = blk[r][r];
                for c in 0..r {
                    radius[o + r] += blk[r][c].abs();
                    radius[o + c] += blk[r][c].abs();
                }
            }
        }
        diag.iter()
            .zip(&radius)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (d, r)| (lo.min(d - r), hi.max(d + r)))
    }
}

/// The factorisation of a damped block-arrow matrix `H + s I` (see the
/// [module documentation](self)): factorise once, solve in place as often as needed.
#[derive(Debug, Clone)]
pub struct BlockArrowFactor<const B: usize> {
    border_dim: usize,
    stride: usize,
    /// Cholesky factors `L_j` of `D_j + s I`, lower triangle, diagonal stored inverted (`1 /
    /// l_dd`) so that the substitutions multiply instead of divide.
    l_blocks: Vec<[[f64; B]; B]>,
    /// `G = blockdiag(L_j^-1) C`, `k B` rows of `stride`.
    g: Vec<f64>,
    /// Upper Cholesky factor `U` of the Schur complement, `S = U^T U`: `m` rows of `stride`
    /// (row-major, the columns past `m` unused).
    s_chol: Vec<f64>,
    /// `1 / diag(U)`.
    s_inv_diag: Vec<f64>,
    /// Set when the fast path did not apply.
    spectral: Option<Box<Spectral<B>>>,
    /// Whether the last factorisation succeeded.
    ready: bool,
    diagnostics: Diagnostics,
}

/// The spectral (indefinite) path: eigendecompositions of the blocks and an LU of the Schur
/// complement.
#[derive(Debug, Clone)]
struct Spectral<const B: usize> {
    /// Eigenvalues of each stored `D_j`.
    values: Vec<[f64; B]>,
    /// Eigenvectors: `vectors[j][r][i]` is component `r` of eigenvector `i` of `D_j`.
    vectors: Vec<[[f64; B]; B]>,
    /// `W_j = V_j^T C_j`, `k B` rows of `m`.
    w: Vec<f64>,
    /// `1 / (eigenvalue + delta)` per block, for the solve.
    inv: Vec<[f64; B]>,
    /// LU of the Schur complement of the solved matrix.
    s_lu: Option<nalgebra::LU<f64, nalgebra::Dyn, nalgebra::Dyn>>,
}

fn not_factorized() -> Diagnostics {
    Diagnostics {
        min_eigenvalue: f64::NAN,
        max_eigenvalue: f64::NAN,
        eigen_exact: false,
        condition: f64::NAN,
        shift: 0.0,
        solver: LinearSolver::NotFactorized,
    }
}

/// Relative size below which the smallest pivot or |eigenvalue| makes a matrix numerically
/// singular (as for the dense factorisation).
fn singular_tolerance(n: usize) -> f64 {
    (n.max(1) as f64) * f64::EPSILON
}

/// Folds a positive finite pivot into (min, max): plain comparisons (`f64::min` also handles
/// NaN, which cannot occur here, at several instructions per call).
#[inline(always)]
fn fold_pivot(pivots: &mut (f64, f64), d: f64) {
    if d < pivots.0 {
        pivots.0 = d;
    }
    if d > pivots.1 {
        pivots.1 = d;
    }
}

/// Cholesky factor of a block (lower triangle read), diagonal stored inverted; the pivots are
/// folded into `pivots` (min, max). `None` when a pivot is not positive and finite.
#[inline(always)]
fn chol_block<const B: usize>(m: &[[f64; B]; B], delta: f64, pivots: &mut (f64, f64)) -> Option<[[f64; B]; B]> {
    let mut l = [[0.0; B]; B];
    for c in 0..B {
        let mut d = m[c][c];
        if delta != 0.0 {
            d += delta;
        }
        for k in 0..c {
            d -= l[c][k] * l[c][k];
        }
        if !(d > 0.0 && d.is_finite()) {
            return None;
        }
        fold_pivot(pivots, d);
        let inv = 1.0 / d.sqrt();
        l[c][c] = inv;
        for r in c + 1..B {
            let mut v = m[r][c];
            for k in 0..c {
                v -= l[r][k] * l[c][k];
            }
            l[r][c] = v * inv;
        }
    }
    Some(l)
}

/// `y <- L^-1 y` with the inverted-diagonal factor.
#[inline(always)]
fn forward_block<const B: usize>(l: &[[f64; B]; B], y: &mut [f64]) {
    for i in 0..B {
        let mut v = y[i];
        for k in 0..i {
            v -= l[i][k] * y[k];
        }
        y[i] = v * l[i][i];
    }
}

/// `y <- L^-T y` with the inverted-diagonal factor.
#[inline(always)]
fn backward_block<const B: usize>(l: &[[f64; B]; B], y: &mut [f64]) {
    for i in (0..B).rev() {
        let mut v = y[i];
        for k in i + 1..B {
            v -= l[k][i] * y[k];
        }
        y[i] = v * l[i][i];
    }
}

/// `sum_k a[k] b[k]` over the shorter slice, with four accumulators (so it vectorises).
#[inline(always)]
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

/// The row stride to use: `W` when it is a compile-time width, else the runtime `stride`.
///
/// The factorisation and the solve are instantiated for every padded stride up to 32 (borders
/// of up to 32 unknowns) and for a runtime stride (`W = 0`) beyond. With the width known the
/// compiler unrolls the loops over the padded columns and drops their bounds checks (the pose
/// model, a border of 29, ran 6 % fewer instructions in all with them). The arithmetic, and so
/// every result bit, is the same in every instantiation.
#[inline(always)]
fn width<const W: usize>(stride: usize) -> usize {
    if W == 0 {
        stride
    } else {
        W
    }
}

/// One 4 x 4 tile of the Schur complement's upper triangle, rows `4 i..4 i + 4`, columns
/// `4 j..4 j + 4` (`i <= j`, both tiles within the first `4 floor(m / 4)` rows and columns),
/// into `s` (`U`'s storage: rows `0..4 i` already hold the finished rows of `U`):
///
/// ```text
/// t = A^T - G^T G  (+ delta on the diagonal),   then   t -= U[c, rows]^T U[c, cols], c < 4 i
/// ```
///
/// in registers: `G^T G` (`k B m^2 / 2` multiply-adds, the hot loop of the factorisation)
/// summed over the rows of `G` in order from 0, the updates of the eliminated pivot rows in
/// order. Each entry of `U` thus goes through the same operations in the same order as in the
/// right-looking factorisation of the whole `S` (which runs one pivot at a time along rows of
/// varying length). A diagonal tile's lower entries are not part of `U` (they start from 0 and
/// are never read). Out of line in the baseline compilation so that register allocation sees
/// only this loop (eight of the sixteen SSE2 registers hold a tile); inlined into the AVX2 one
/// ([`schur_tile_lanes`]), where a tile takes four.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn schur_tile<const W: usize>(
    g: &[f64],
    s: &mut [f64],
    border: &[f64],
    stride: usize,
    m: usize,
    i: usize,
    j: usize,
    delta: f64,
) {
    schur_tile_lanes::<W, 1>(g, s, border, stride, m, i, j, delta);
}

/// The loop of [`schur_tile`], inlined into each of its compilations: `N` adjacent tiles of
/// the block row at once, columns `4 j..4 (j + N)` (the AVX2 compilation takes two, eight
/// registers, so that each broadcast of a row of `G` or `U` serves eight columns).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn schur_tile_lanes<const W: usize, const N: usize>(
    g: &[f64],
    s: &mut [f64],
    border: &[f64],
    stride: usize,
    m: usize,
    i: usize,
    j: usize,
    delta: f64,
) {
    let st = width::<W>(stride);
    let (r0, q0) = (4 * i, 4 * j);
    // A's part first, from its lower triangle (A_qr, q >= r), with delta on the diagonal, so
    // that the tile is then one uniform subtraction (branches on the accumulated tile would
    // take it out of the vector registers).
    let mut t = [[[0.0f64; 4]; N]; 4];
    for n in 0..N {
        for y in 0..4 {
            let q = q0 + 4 * n + y;
            let a_row = &border[q * m + r0..q * m + r0 + 4];
            for x in 0..4 {
                let r = r0 + x;
                if r < q {
                    t[x][n][y] = a_row[x];
                } else if r == q {
                    t[x][n][y] = if delta != 0.0 { a_row[x] + delta } else { a_row[x] };
                }
            }
        }
    }
    let mut acc = [[[0.0f64; 4]; N]; 4];
    for row in g.chunks_exact(st) {
        let a = &row[r0..r0 + 4];
        let b = &row[q0..q0 + 4 * N];
        for x in 0..4 {
            for n in 0..N {
                for y in 0..4 {
                    acc[x][n][y] += a[x] * b[4 * n + y];
                }
            }
        }
    }
    for x in 0..4 {
        for n in 0..N {
            for y in 0..4 {
                t[x][n][y] -= acc[x][n][y];
            }
        }
    }
    let (done, rest) = s.split_at_mut(r0 * st);
    for u in done.chunks_exact(st) {
        let a = &u[r0..r0 + 4];
        let b = &u[q0..q0 + 4 * N];
        for x in 0..4 {
            for n in 0..N {
                for y in 0..4 {
                    t[x][n][y] -= a[x] * b[4 * n + y];
                }
            }
        }
    }
    // Unconditional stores of whole tile rows keep the tile in vector registers.
    for (x, t_row) in t.iter().enumerate() {
        for (n, tile_row) in t_row.iter().enumerate() {
            let start = x * st + q0 + 4 * n;
            rest[start..start + 4].copy_from_slice(tile_row);
        }
    }
}

/// Column `q >= 4 floor(m / 4)` (one of the last `m mod 4`) of the Schur complement's upper
/// triangle, rows `4 i..4 i + 4` up to `q`, into `s`: as [`schur_tile_lanes`], four rows at
/// once (the same operations on every entry).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn schur_strip<const W: usize>(
    g: &[f64],
    s: &mut [f64],
    border: &[f64],
    stride: usize,
    m: usize,
    i: usize,
    q: usize,
    delta: f64,
) {
    let st = width::<W>(stride);
    let r0 = 4 * i;
    let mut acc = [0.0f64; 4];
    for row in g.chunks_exact(st) {
        let a = row[q];
        let b = &row[r0..r0 + 4];
        for x in 0..4 {
            acc[x] += a * b[x];
        }
    }
    let mut v = [0.0f64; 4];
    for x in 0..4 {
        let r = r0 + x;
        if r < q {
            v[x] = border[q * m + r];
        } else if r == q {
            v[x] = if delta != 0.0 { border[q * m + q] + delta } else { border[q * m + q] };
        }
    }
    for x in 0..4 {
        v[x] -= acc[x];
    }
    for u in s[..r0 * st].chunks_exact(st) {
        let f = u[q];
        let a = &u[r0..r0 + 4];
        for x in 0..4 {
            v[x] -= a[x] * f;
        }
    }
    for x in 0..4 {
        let r = r0 + x;
        if r <= q {
            s[r * st + q] = v[x];
        }
    }
}

/// The block Cholesky factorisation of `h + delta I` into `factor`.
struct Factorize<'a, const B: usize> {
    factor: &'a mut BlockArrowFactor<B>,
    h: &'a BlockArrow<B>,
    delta: f64,
}

impl<const B: usize> Kernel for Factorize<'_, B> {
    type Output = Option<(f64, f64)>;

    #[inline(always)]
    fn run<const INLINE: bool>(self) -> Self::Output {
        self.factor.cholesky_strided::<INLINE>(self.h, self.delta)
    }
}

/// The fast path's solve in place.
struct SolveCholesky<'a, const B: usize> {
    factor: &'a BlockArrowFactor<B>,
    v: &'a mut [f64],
}

impl<const B: usize> Kernel for SolveCholesky<'_, B> {
    type Output = ();

    #[inline(always)]
    fn run<const INLINE: bool>(self) {
        self.factor.solve_cholesky_strided(self.v);
    }
}

impl<const B: usize> BlockArrowFactor<B> {
    /// An empty factor for matrices of `border_dim` border unknowns and `n_blocks` blocks, to be
    /// filled by [`BlockArrowFactor::factorize_into`] (solving before that is an error).
    pub fn new(border_dim: usize, n_blocks: usize) -> Self {
        let stride = padded(border_dim);
        BlockArrowFactor {
            border_dim,
            stride,
            l_blocks: vec![[[0.0; B]; B]; n_blocks],
            g: vec![0.0; n_blocks * B * stride],
            s_chol: vec![0.0; border_dim * stride],
            s_inv_diag: vec![0.0; border_dim],
            spectral: None,
            ready: false,
            diagnostics: not_factorized(),
        }
    }

    /// Factorises `H + s I`, `s` chosen by `damping` (see [`Damping::shift`] and the module
    /// documentation for how the smallest eigenvalue is obtained).
    ///
    /// Errors: [`WibergError::InvalidArgument`] for an empty matrix or an invalid `lambda`,
    /// [`WibergError::NonFinite`] for a non-finite entry, [`WibergError::SingularHessian`]
    /// when the damped matrix (or one of its diagonal blocks, on the spectral path) is
    /// numerically singular.
    pub fn factorize(h: &BlockArrow<B>, damping: Damping) -> Result<Self> {
        let mut f = Self::new(h.border_dim, h.n_blocks());
        f.factorize_into(h, damping)?;
        Ok(f)
    }

    /// [`BlockArrowFactor::factorize`] into `self`, reusing its storage (allocation-free on the
    /// fast path when the dimensions are unchanged).
    pub fn factorize_into(&mut self, h: &BlockArrow<B>, damping: Damping) -> Result<()> {
        self.factorize_preshifted_into(h, 0.0, damping)
    }

    /// Like [`BlockArrowFactor::factorize_into`] for a matrix stored with a shift `s0` already
    /// on its diagonal: `stored = H + s0 I` (an assembly that adds its damping while it sums is
    /// cheaper and rounds differently than adding it afterwards). The damping still applies to
    /// `H`: the matrix factorised is `H + s I = stored + (s - s0) I`, nothing is added when
    /// `s = s0`, and the diagnostics describe `H`.
    pub fn factorize_preshifted_into(&mut self, stored: &BlockArrow<B>, s0: f64, damping: Damping) -> Result<()> {
        self.ready = false;
        self.spectral = None;
        self.diagnostics = not_factorized();
        damping.validate()?;
        if !s0.is_finite() {
            return Err(WibergError::InvalidArgument(format!("block-arrow pre-shift must be finite, got {s0}")));
        }
        if stored.dim() == 0 {
            return Err(WibergError::InvalidArgument("block-arrow matrix with no unknowns".into()));
        }
        if stored.border_dim != self.border_dim || stored.n_blocks() != self.l_blocks.len() {
            *self = Self::new(stored.border_dim, stored.n_blocks());
        }
        let n = stored.dim();
        let tol = singular_tolerance(n);
        let (shift, guarded_min) = match damping {
            Damping::Implicit | Damping::TrustRegion { .. } => (damping.shift(0.0), None),
            Damping::Guarded { lambda } => {
                if self.cholesky(stored, -s0).is_some() {
                    (lambda, None)
                } else {
                    let spectral = self.spectral_setup(stored)?;
                    let min = spectral.min_eigenvalue(stored) - s0;
                    (damping.shift(min), Some(min))
                }
            }
        };
        let delta = shift - s0;
        if let Some((pmin, pmax)) = self.cholesky(stored, delta) {
            if pmin <= tol * pmax {
                return Err(WibergError::SingularHessian { min_abs_eigenvalue: pmin, damping: shift });
            }
            self.diagnostics = Diagnostics {
                min_eigenvalue: guarded_min.unwrap_or(pmin - shift),
                max_eigenvalue: pmax - shift,
                eigen_exact: false,
                condition: pmax / pmin,
                shift,
                solver: LinearSolver::BlockArrow,
            };
            self.ready = true;
            return Ok(());
        }
        // Not positive definite: the spectral path.
        let mut spectral = self.spectral_setup(stored)?;
        let (lo, hi) = (spectral.min_eigenvalue(stored), spectral.max_eigenvalue(stored));
        let max_abs = (lo + delta).abs().max((hi + delta).abs());
        let min_abs = spectral.min_abs_eigenvalue(stored, delta, max_abs);
        if ![lo, hi, max_abs, min_abs].iter().all(|v| v.is_finite()) {
            return Err(WibergError::NonFinite {
                what: "block-arrow eigenvalues (entries too large: overflow)".into(),
            });
        }
        if min_abs <= tol * max_abs {
            return Err(WibergError::SingularHessian { min_abs_eigenvalue: min_abs, damping: shift });
        }
        spectral
            .factor(stored, delta, tol * max_abs)
            .ok_or(WibergError::SingularHessian { min_abs_eigenvalue: min_abs, damping: shift })?;
        self.spectral = Some(spectral);
        self.diagnostics = Diagnostics {
            min_eigenvalue: guarded_min.unwrap_or(lo - s0),
            max_eigenvalue: hi - s0,
            eigen_exact: false,
            condition: max_abs / min_abs,
            shift,
            solver: LinearSolver::BlockArrow,
        };
        self.ready = true;
        Ok(())
    }

    /// The block Cholesky factorisation of `stored + delta I` into `self`: the (min, max)
    /// pivots, or `None` when the matrix is not (numerically) positive definite.
    fn cholesky(&mut self, h: &BlockArrow<B>, delta: f64) -> Option<(f64, f64)> {
        run_kernel(Factorize { factor: self, h, delta })
    }

    /// The factorisation for the stride of `self` (`INLINE`: with the `G^T G` loop inlined, for
    /// the AVX2 compilation).
    #[inline(always)]
    fn cholesky_strided<const INLINE: bool>(&mut self, h: &BlockArrow<B>, delta: f64) -> Option<(f64, f64)> {
        match self.stride {
            4 => self.cholesky_w::<4, INLINE>(h, delta),
            8 => self.cholesky_w::<8, INLINE>(h, delta),
            12 => self.cholesky_w::<12, INLINE>(h, delta),
            16 => self.cholesky_w::<16, INLINE>(h, delta),
            20 => self.cholesky_w::<20, INLINE>(h, delta),
            24 => self.cholesky_w::<24, INLINE>(h, delta),
            28 => self.cholesky_w::<28, INLINE>(h, delta),
            32 => self.cholesky_w::<32, INLINE>(h, delta),
            _ => self.cholesky_w::<0, INLINE>(h, delta),
        }
    }

    /// [`BlockArrowFactor::cholesky`] for row stride `W` (`0`: the runtime stride).
    #[inline(always)]
    fn cholesky_w<const W: usize, const INLINE: bool>(&mut self, h: &BlockArrow<B>, delta: f64) -> Option<(f64, f64)> {
        let st = width::<W>(self.stride);
        // m <= st always; stated so that the compiler knows every row slice below is in bounds.
        let m = self.border_dim.min(st);
        let mut pivots = (f64::INFINITY, 0.0f64);
        for (j, blk) in h.blocks.iter().enumerate() {
            let l = chol_block(blk, delta, &mut pivots)?;
            self.l_blocks[j] = l;
            if m == 0 {
                continue;
            }
            // G_j = L_j^-1 C_j: one pass along the padded columns, all B rows at once.
            let src = &h.coupling[B * j * st..B * (j + 1) * st];
            let dst = &mut self.g[B * j * st..B * (j + 1) * st];
            for col in 0..st {
                let mut y = [0.0; B];
                for i in 0..B {
                    let mut v = src[i * st + col];
                    for k in 0..i {
                        v -= l[i][k] * y[k];
                    }
                    y[i] = v * l[i][i];
                }
                for i in 0..B {
                    dst[i * st + col] = y[i];
                }
            }
        }
        if m == 0 {
            return Some(pivots);
        }
        // S = A + delta I - G^T G = U^T U, U upper, by block rows of 4: the tiles of a block row
        // (every earlier pivot row applied to them in registers), then its own pivots one at a
        // time, each updating the rest of the block row along contiguous rows.
        let s = &mut self.s_chol[..m * st];
        let border = &h.border[..m * m];
        let full = m / 4;
        for i in 0..m.div_ceil(4) {
            if INLINE {
                let mut j = i;
                while j + 2 <= full {
                    schur_tile_lanes::<W, 2>(&self.g, s, border, st, m, i, j, delta);
                    j += 2;
                }
                if j < full {
                    schur_tile_lanes::<W, 1>(&self.g, s, border, st, m, i, j, delta);
                }
            } else {
                for j in i..full {
                    schur_tile::<W>(&self.g, s, border, st, m, i, j, delta);
                }
            }
            for q in 4 * full..m {
                schur_strip::<W>(&self.g, s, border, st, m, i, q, delta);
            }
            for c in 4 * i..(4 * i + 4).min(m) {
                let d = s[c * st + c];
                if !(d > 0.0 && d.is_finite()) {
                    return None;
                }
                fold_pivot(&mut pivots, d);
                let root = d.sqrt();
                let inv = 1.0 / root;
                self.s_inv_diag[c] = inv;
                s[c * st + c] = root;
                for v in s[c * st + c + 1..c * st + m].iter_mut() {
                    *v *= inv;
                }
                let (top, bottom) = s.split_at_mut((c + 1) * st);
                let pivot = &top[c * st..c * st + m];
                for (k, row) in bottom.chunks_exact_mut(st).take(4 * i + 3 - c).enumerate() {
                    let r = c + 1 + k;
                    let f = pivot[r];
                    let (dst, src) = (&mut row[r..m], &pivot[r..m]);
                    for (v, p) in dst.iter_mut().zip(src) {
                        *v -= f * p;
                    }
                }
            }
        }
        Some(pivots)
    }

    /// Checks finiteness and eigendecomposes the blocks for the spectral path.
    fn spectral_setup(&self, h: &BlockArrow<B>) -> Result<Box<Spectral<B>>> {
        if !h.all_finite() {
            return Err(WibergError::NonFinite { what: "block-arrow Hessian".into() });
        }
        let m = self.border_dim;
        let k = h.n_blocks();
        let mut values = vec![[0.0; B]; k];
        let mut vectors = vec![[[0.0; B]; B]; k];
        let mut w = vec![0.0; k * B * m];
        for (j, blk) in h.blocks.iter().enumerate() {
            let dense = DMatrix::from_fn(B, B, |r, c| if r >= c { blk[r][c] } else { blk[c][r] });
            let eig = nalgebra::SymmetricEigen::new(dense);
            for i in 0..B {
                values[j][i] = eig.eigenvalues[i];
                for r in 0..B {
                    vectors[j][r][i] = eig.eigenvectors[(r, i)];
                }
            }
            // W_j = V_j^T C_j.
            for i in 0..B {
                for c in 0..m {
                    w[(B * j + i) * m + c] =
                        (0..B).map(|r| vectors[j][r][i] * h.coupling[(B * j + r) * self.stride + c]).sum();
                }
            }
        }
        Ok(Box::new(Spectral { values, vectors, w, inv: vec![[0.0; B]; k], s_lu: None }))
    }

    /// Solves `(H + s I) x = v` in place, for `v` holding several right-hand sides one after
    /// the other (its length a multiple of the dimension).
    pub fn solve_columns_in_place(&self, v: &mut [f64]) -> Result<()> {
        let n = self.dim();
        if n == 0 || !v.len().is_multiple_of(n) {
            return Err(WibergError::DimensionMismatch {
                what: "right-hand sides of the block-arrow solve (a multiple of the dimension)".into(),
                expected: n,
                got: v.len(),
            });
        }
        for column in v.chunks_exact_mut(n) {
            self.solve_in_place(column)?;
        }
        Ok(())
    }

    fn solve_cholesky(&self, v: &mut [f64]) {
        run_kernel(SolveCholesky { factor: self, v });
    }

    /// The solve for the stride of `self`.
    #[inline(always)]
    fn solve_cholesky_strided(&self, v: &mut [f64]) {
        match self.stride {
            4 => self.solve_cholesky_w::<4>(v),
            8 => self.solve_cholesky_w::<8>(v),
            12 => self.solve_cholesky_w::<12>(v),
            16 => self.solve_cholesky_w::<16>(v),
            20 => self.solve_cholesky_w::<20>(v),
            24 => self.solve_cholesky_w::<24>(v),
            28 => self.solve_cholesky_w::<28>(v),
            32 => self.solve_cholesky_w::<32>(v),
            _ => self.solve_cholesky_w::<0>(v),
        }
    }

    /// [`BlockArrowFactor::solve_cholesky`] for row stride `W` (`0`: the runtime stride).
    #[inline(always)]
    fn solve_cholesky_w<const W: usize>(&self, v: &mut [f64]) {
        let st = width::<W>(self.stride);
        let m = self.border_dim.min(st);
        let (va, vq) = v.split_at_mut(m);
        // h = blockdiag(L_j^-1) r_q.
        for (l, y) in self.l_blocks.iter().zip(vq.chunks_exact_mut(B)) {
            forward_block(l, y);
        }
        if m == 0 {
            for (l, y) in self.l_blocks.iter().zip(vq.chunks_exact_mut(B)) {
                backward_block(l, y);
            }
            return;
        }
        // Border right-hand side r_a - G^T h, accumulated along the padded rows (whole
        // vectors; the padding columns of G are zero) on the stack when the border is small.
        let mut stack = [0.0; 64];
        let mut heap = Vec::new();
        let acc: &mut [f64] = if st <= stack.len() {
            &mut stack[..st]
        } else {
            heap.resize(st, 0.0);
            &mut heap
        };
        acc[..m].copy_from_slice(va);
        for (row, hk) in self.g.chunks_exact(st).zip(vq.iter()) {
            for (x, g) in acc.iter_mut().zip(row) {
                *x -= g * hk;
            }
        }
        va.copy_from_slice(&acc[..m]);
        // S a = r with S = U^T U: forward (U^T) by row updates, backward (U) by row dots.
        let s = &self.s_chol[..m * st];
        let inv = &self.s_inv_diag[..m];
        for r in 0..m {
            let ar = va[r] * inv[r];
            va[r] = ar;
            for (x, u) in va[r + 1..].iter_mut().zip(&s[r * st + r + 1..r * st + m]) {
                *x -= u * ar;
            }
        }
        for r in (0..m).rev() {
            let x = va[r] - dot(&s[r * st + r + 1..r * st + m], &va[r + 1..]);
            va[r] = x * inv[r];
        }
        // p_j = L_j^-T (h_j - G_j a).
        for (row, hk) in self.g.chunks_exact(st).zip(vq.iter_mut()) {
            *hk -= dot(&row[..m], va);
        }
        for (l, y) in self.l_blocks.iter().zip(vq.chunks_exact_mut(B)) {
            backward_block(l, y);
        }
    }
}

impl<const B: usize> Spectral<B> {
    /// Number of eigenvalues of `stored` below `t` (Sylvester / Haynsworth on the block
    /// elimination of `stored - t I`).
    fn count_below(&self, h: &BlockArrow<B>, t: f64) -> usize {
        let m = h.border_dim;
        // Move t off the blocks' eigenvalues (the elimination needs D_j - t I invertible).
        let scale = t.abs().max(f64::MIN_POSITIVE);
        let mut t = t;
        for _ in 0..4 {
            if self.values.iter().flatten().any(|&e| e == t) {
                t += 4.0 * f64::EPSILON * scale;
            }
        }
        let mut count = self.values.iter().flatten().filter(|&&e| e < t).count();
        if m == 0 {
            return count;
        }
        let mut s = DMatrix::from_fn(m, m, |r, c| {
            let (r, c) = if r >= c { (r, c) } else { (c, r) };
            h.border[r * m + c] - if r == c { t } else { 0.0 }
        });
        for (j, vals) in self.values.iter().enumerate() {
            for (i, e) in vals.iter().enumerate() {
                let row = &self.w[(B * j + i) * m..(B * j + i + 1) * m];
                let f = 1.0 / (e - t);
                for r in 0..m {
                    let fr = f * row[r];
                    for c in 0..m {
                        s[(r, c)] -= fr * row[c];
                    }
                }
            }
        }
        count += s.symmetric_eigenvalues().iter().filter(|&&e| e < 0.0).count();
        count
    }

    /// Bisection for the smallest eigenvalue of `stored`: a lower bound.
    fn min_eigenvalue(&self, h: &BlockArrow<B>) -> f64 {
        let (lo, hi) = h.gershgorin();
        let width = (hi - lo).abs().max(lo.abs()).max(hi.abs()).max(f64::MIN_POSITIVE);
        let tol = 4.0 * singular_tolerance(h.dim()) * width;
        let (mut lo, mut hi) = (lo - tol, hi + tol);
        for _ in 0..200 {
            if hi - lo <= tol {
                break;
            }
            let mid = 0.5 * (lo + hi);
            if self.count_below(h, mid) == 0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Bisection for the largest eigenvalue of `stored`: an upper bound.
    fn max_eigenvalue(&self, h: &BlockArrow<B>) -> f64 {
        let n = h.dim();
        let (lo, hi) = h.gershgorin();
        let width = (hi - lo).abs().max(lo.abs()).max(hi.abs()).max(f64::MIN_POSITIVE);
        let tol = 4.0 * singular_tolerance(n) * width;
        let (mut lo, mut hi) = (lo - tol, hi + tol);
        for _ in 0..200 {
            if hi - lo <= tol {
                break;
            }
            let mid = 0.5 * (lo + hi);
            if self.count_below(h, mid) == n {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }

    /// Bisection for the smallest |eigenvalue| of `stored + delta I` (`max_abs` bounds it).
    fn min_abs_eigenvalue(&self, h: &BlockArrow<B>, delta: f64, max_abs: f64) -> f64 {
        let tol = 4.0 * singular_tolerance(h.dim()) * max_abs.max(f64::MIN_POSITIVE);
        // Eigenvalues of stored + delta I in [-t, t).
        let inside = |t: f64| {
            self.count_below(h, t - delta) - self.count_below(h, -t - delta).min(self.count_below(h, t - delta))
        };
        let (mut lo, mut hi) = (0.0, max_abs + tol);
        for _ in 0..200 {
            if hi - lo <= tol {
                break;
            }
            let mid = 0.5 * (lo + hi);
            if inside(mid) == 0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The Schur complement of `stored + delta I` with the blocks' eigendecompositions, LU
    /// factorised. `None` when a block's `|eigenvalue + delta| <= tiny`.
    fn factor(&mut self, h: &BlockArrow<B>, delta: f64, tiny: f64) -> Option<()> {
        let m = h.border_dim;
        for (vals, inv) in self.values.iter().zip(self.inv.iter_mut()) {
            for (e, iv) in vals.iter().zip(inv.iter_mut()) {
                let d = e + delta;
                if d.abs() <= tiny {
                    return None;
                }
                *iv = 1.0 / d;
            }
        }
        if m == 0 {
            return Some(());
        }
        let mut s = DMatrix::from_fn(m, m, |r, c| {
            let (r, c) = if r >= c { (r, c) } else { (c, r) };
            h.border[r * m + c] + if r == c { delta } else { 0.0 }
        });
        for (j, inv) in self.inv.iter().enumerate() {
            for (i, f) in inv.iter().enumerate() {
                let row = &self.w[(B * j + i) * m..(B * j + i + 1) * m];
                for r in 0..m {
                    let fr = f * row[r];
                    for c in 0..m {
                        s[(r, c)] -= fr * row[c];
                    }
                }
            }
        }
        self.s_lu = Some(s.lu());
        Some(())
    }

    /// Solves with the spectral factorisation; `false` when the LU solve fails.
    fn solve(&self, m: usize, v: &mut [f64]) -> bool {
        let (va, vq) = v.split_at_mut(m);
        // h_j = V_j^T r_j, then scaled: y_j = inv_j * h_j.
        let mut y = vec![0.0; vq.len()];
        for (j, (vecs, inv)) in self.vectors.iter().zip(&self.inv).enumerate() {
            let r = &vq[B * j..B * j + B];
            for i in 0..B {
                y[B * j + i] = inv[i] * (0..B).map(|d| vecs[d][i] * r[d]).sum::<f64>();
            }
        }
        if m > 0 {
            let mut rhs = nalgebra::DVector::from_column_slice(va);
            for (q, yq) in y.iter().enumerate() {
                for (c, x) in rhs.iter_mut().enumerate() {
                    *x -= self.w[q * m + c] * yq;
                }
            }
            let Some(lu) = &self.s_lu else { return false };
            let Some(a) = lu.solve(&rhs) else { return false };
            va.copy_from_slice(a.as_slice());
            // y_j -= inv_j * (W_j a).
            for (q, yq) in y.iter_mut().enumerate() {
                let i = q % B;
                let j = q / B;
                *yq -= self.inv[j][i] * dot(&self.w[q * m..(q + 1) * m], va);
            }
        }
        // p_j = V_j y_j.
        for (j, vecs) in self.vectors.iter().enumerate() {
            for d in 0..B {
                vq[B * j + d] = (0..B).map(|i| vecs[d][i] * y[B * j + i]).sum();
            }
        }
        true
    }
}

impl<const B: usize> DampedFactor for BlockArrowFactor<B> {
    fn dim(&self) -> usize {
        self.border_dim + B * self.l_blocks.len()
    }

    fn diagnostics(&self) -> &Diagnostics {
        &self.diagnostics
    }

    fn solve_in_place(&self, v: &mut [f64]) -> Result<()> {
        crate::error::check_len(v.len(), self.dim(), "right-hand side of the block-arrow solve")?;
        if !self.ready {
            return Err(WibergError::InvalidArgument(
                "block-arrow factor used before a successful factorisation".into(),
            ));
        }
        crate::error::check_finite(v, "right-hand side of the block-arrow solve")?;
        let ok = match &self.spectral {
            None => {
                self.solve_cholesky(v);
                true
            }
            Some(sp) => sp.solve(self.border_dim, v),
        };
        if ok && v.iter().all(|x| x.is_finite()) {
            Ok(())
        } else {
            Err(WibergError::SingularHessian {
                min_abs_eigenvalue: self.diagnostics.min_eigenvalue + self.diagnostics.shift,
                damping: self.diagnostics.shift,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// A random positive definite block-arrow matrix `J^T J + I` with the block-arrow pattern.
    fn random_spd<const B: usize>(rng: &mut ChaCha8Rng, m: usize, k: usize) -> BlockArrow<B> {
        let mut h = BlockArrow::<B>::new(m, k);
        let rows = B + 2;
        for j in 0..k {
            let jb: Vec<f64> = (0..rows * B).map(|_| rng.random_range(-1.0..1.0)).collect();
            let ja: Vec<f64> = (0..rows * m).map(|_| rng.random_range(-0.5..0.5)).collect();
            for r in 0..m {
                for c in 0..m {
                    h.border[r * m + c] += (0..rows).map(|i| ja[i * m + r] * ja[i * m + c]).sum::<f64>();
                }
            }
            for d in 0..B {
                for e in 0..B {
                    h.blocks[j][d][e] = (0..rows).map(|i| jb[i * B + d] * jb[i * B + e]).sum::<f64>();
                }
                let row = h.coupling_row_mut(B * j + d).unwrap();
                for (c, v) in row.iter_mut().enumerate() {
                    *v = (0..rows).map(|i| jb[i * B + d] * ja[i * m + c]).sum::<f64>();
                }
            }
        }
        for r in 0..m {
            h.border[r * m + r] += 1.0;
        }
        for blk in h.blocks.iter_mut() {
            for d in 0..B {
                blk[d][d] += 1.0;
            }
        }
        h
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn kernels_give_the_same_bits_whichever_compilation_runs() {
        // `run_kernel` takes the AVX2 compilation where the CPU has it; the baseline one must
        // give the same bits (checked on both sides where AVX2 is there; elsewhere both runs
        // are the baseline). Borders of every padded width, a ragged last tile row, and one
        // past the compiled widths (runtime stride).
        let mut rng = ChaCha8Rng::seed_from_u64(14);
        for (m, k) in [(0, 3), (1, 4), (3, 2), (4, 5), (6, 3), (13, 7), (29, 17), (32, 9), (37, 6)] {
            let h = random_spd::<3>(&mut rng, m, k);
            for delta in [0.0, 1e-3] {
                let mut dispatched = BlockArrowFactor::<3>::new(m, k);
                let mut baseline = dispatched.clone();
                let p1 = dispatched.cholesky(&h, delta).expect("positive definite");
                let p2 = baseline.cholesky_strided::<false>(&h, delta).expect("positive definite");
                assert_eq!((p1.0.to_bits(), p1.1.to_bits()), (p2.0.to_bits(), p2.1.to_bits()), "m {m}");
                let flat = |f: &BlockArrowFactor<3>| f.l_blocks.iter().flatten().flatten().copied().collect::<Vec<_>>();
                assert_eq!(bits(&flat(&dispatched)), bits(&flat(&baseline)), "m {m}");
                assert_eq!(bits(&dispatched.g), bits(&baseline.g), "m {m}");
                assert_eq!(bits(&dispatched.s_chol), bits(&baseline.s_chol), "m {m}");
                assert_eq!(bits(&dispatched.s_inv_diag), bits(&baseline.s_inv_diag), "m {m}");
                let rhs: Vec<f64> = (0..h.dim()).map(|_| rng.random_range(-1.0..1.0)).collect();
                let (mut x1, mut x2) = (rhs.clone(), rhs.clone());
                dispatched.solve_cholesky(&mut x1);
                dispatched.solve_cholesky_strided(&mut x2);
                assert_eq!(bits(&x1), bits(&x2), "m {m}");
                // And it is a solution.
                let dense = h.to_dense();
                let x = nalgebra::DVector::from_column_slice(&x1);
                let r = &dense * &x + &x * delta - nalgebra::DVector::from_column_slice(&rhs);
                assert!(r.amax() < 1e-9, "m {m}: residual {}", r.amax());
            }
        }
    }
}
