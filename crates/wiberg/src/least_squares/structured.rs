//! Robust least squares whose normal matrix is block-arrow, solved by IRLS with
//! [`BlockArrowFactor`] and differentiated with the IRLS weights held fixed.
//!
//! # The problem
//! Unknowns `y = (z, p_0, ..., p_{k-1})` ordered as in a [`BlockArrow`]: a border `z` of `m`
//! unknowns, then `k` blocks of `B`. The energy has two parts:
//!
//! * a **fixed quadratic part** ([`FixedQuadratic`]): a block-arrow matrix `F` and a vector `f`,
//!   assembled once by the user (from quadratic rows, a regulariser, a damping already added on
//!   the diagonal) and shared by as many problems as use it; its coupling is copied into a
//!   solver only when the solver last saw another one;
//! * **robust rows** ([`RobustRows`]), in consecutive *groups*: row `r` reads `a_r . y - b_r`,
//!   where `a_r` has at most `B` entries on one block and, optionally, `m` on the border (a
//!   bundle-adjustment reprojection row touches its point and the cameras; a pose projection
//!   row only its point). Each group `g` has an IRLS weight `w_g` computed from its residuals
//!   by a [`RowLoss`].
//!
//! One solve with group weights `w` is
//!
//! ```text
//! y = N(w)^-1 r(w),   N(w) = F + sum_r w_g(r) a_r a_r^T,   r(w) = f + sum_r w_g(r) b_r a_r
//! ```
//!
//! (`F` stored with a pre-shift `s0` on its diagonal; the [`Damping`] of the solve decides what
//! is added on top, see [`BlockArrowFactor::factorize_preshifted_into`]).
//!
//! # IRLS
//! [`StructuredIrls::solve`] makes one solve with every weight 1 and the fixed part `first`,
//! then `reweights` solves, each with the weights [`RowLoss::weight`] of the previous solution's
//! residuals and the fixed part `reweighted` (the two may be the same; a regulariser whose
//! weight changes once the robust weights exist, as in the pose model of Tome et al., gives
//! two). The loss decides what is robust: [`PseudoHuber`] reweights, [`SquaredLoss`] (plain
//! least squares) keeps every weight 1.
//!
//! When to use it instead of the dense [`crate::least_squares::RobustLeastSquares`]: when the
//! unknowns split into many small blocks that interact only through a small border (points and
//! cameras, joints and a shape basis), so that a solve costs `O(k B m^2)` instead of
//! `O((m + k B)^3)`, and when the derivative wanted is that of the IRLS fixed point with the
//! weights of the last solve held fixed (what code that unrolls a fixed number of IRLS steps and
//! stops the gradient at the weights computes). The dense type differentiates the true robust
//! energy instead.
//!
//! # The derivative (frozen weights)
//! With the weights `w` of the last solve held constant, `y = N^-1 r` is a smooth function of
//! `F`, `f`, the rows and the weights. Given `v = dl/dy` and `u = (N + s I)^-1 v` (`N`
//! symmetric; `s` the shift of the backward [`Damping`]; `Implicit` gives the exact
//! derivative of the frozen-weight map):
//!
//! ```text
//! dl/dF = -u y^T          dl/df = u
//! dl/da_r = w_g (b_r - a_r . y) u - w_g (a_r . u) y     (on the row's support)
//! dl/db_r = w_g (a_r . u)
//! dl/dw_g = -sum_{r in g} (a_r . u) (a_r . y - b_r)
//! ```
//!
//! When the loss also depends on a row's residual `e_r = a_r . y - b_r` directly (a score of
//! the solution, as the pose model's soft-min over rotations has), with `g_r = dl/de_r` of
//! that direct path, `dl/da_r` gains `g_r y` and `dl/db_r` gains `-g_r`.
//!
//! [`StructuredIrls::adjoint`] refactorises the system of given weights with the backward
//! damping and returns `u`; [`RobustRows::row_gradient`] gives a row's three lines above from
//! `y`, `u` and `g_r` in `O(B)` (`O(B + m)` with a border part), so a caller chains them to its
//! own parameters without forming `dl/dF` or any dense matrix. For `dl/dF` of a fixed part built
//! from rows `F = sum c_i c_i^T`, the same line as `dl/da_r` applies with weight 1.
//!
//! ```
//! use wiberg::least_squares::{FixedQuadratic, PseudoHuber, RobustRows, StructuredIrls};
//! use wiberg::Damping;
//! // Bundle-adjustment-like: one border unknown `z` (a shared offset) and two 1-D "points"
//! // p_0, p_1; robust observations p_j + z = t and p_j = t', and a weak prior on z.
//! let mut fixed = FixedQuadratic::<1>::new(1, 2);
//! fixed.border_mut()[0] = 1e-2; // prior 1e-2 z^2 / 2
//! let mut rows = RobustRows::<1>::new(1, 2);
//! for (j, t) in [(0, 1.0), (1, 3.0)] {
//!     rows.push_row(Some(j), [1.0], &[1.0], t).unwrap(); // p_j + z = t
//!     rows.end_group();
//!     rows.push_block_row(j, [1.0], t - 0.5).unwrap(); // p_j = t - 0.5
//!     rows.end_group();
//! }
//! rows.push_block_row(1, [1.0], 40.0).unwrap(); // an outlier on p_1
//! rows.end_group();
//! let mut irls = StructuredIrls::<1>::new(1, 2);
//! let loss = PseudoHuber::new(0.1).unwrap();
//! let y = irls.solve(&fixed, &fixed, &rows, &loss, 20, Damping::Implicit).unwrap().to_vec();
//! // The outlier is down-weighted: p_1 stays near 2.5 and z near 0.5.
//! assert!((y[2] - 2.5).abs() < 0.2 && (y[0] - 0.5).abs() < 0.2, "{y:?}");
//! assert!(irls.weights()[4] < 0.01);
//! // dz/d(target of the outlier), weights frozen: tiny.
//! let weights = irls.weights().to_vec();
//! let mut u = vec![1.0, 0.0, 0.0];
//! irls.adjoint(&fixed, &rows, &weights, Damping::Implicit, &mut u).unwrap();
//! let g = rows.row_gradient(4, weights[4], 0.0, &y, &u, &mut []).unwrap();
//! assert!(g.target.abs() < 1e-2);
//! ```

// The small kernels index rows and columns as the formulas do.
#![allow(clippy::needless_range_loop)]

use crate::damped::{BlockArrow, BlockArrowFactor, DampedFactor};
use crate::derivative::Damping;
use crate::error::{check_finite, check_len, WibergError};
use crate::Result;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

/// How a group of robust rows is weighted in IRLS: the weight from the group's residuals.
///
/// A group's energy is `rho(|r_g|^2)` with `rho` increasing and concave; IRLS majorises it by
/// the quadratic `w_g |r_g|^2 / 2` with `w_g = 2 rho'(|r_g|^2)`, so that the fixed quadratic
/// part's `1/2 |.|^2` convention and the robust rows agree where `w = 1`. Implementations:
/// [`PseudoHuber`], [`SquaredLoss`].
pub trait RowLoss {
    /// The IRLS weight of a group with residuals `residuals` (one per row, in row order).
    fn weight(&self, residuals: &[f64]) -> f64;
    /// The group's energy `rho` (for scores and reports; IRLS does not call it).
    fn energy(&self, residuals: &[f64]) -> f64;
}

/// Plain least squares: every weight 1, energy `|r_g|^2 / 2`. IRLS with it re-solves the same
/// system; use `reweights = 0`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SquaredLoss;

impl RowLoss for SquaredLoss {
    fn weight(&self, _residuals: &[f64]) -> f64 {
        1.0
    }

    fn energy(&self, residuals: &[f64]) -> f64 {
        residuals.iter().map(|r| r * r).sum::<f64>() / 2.0
    }
}

/// The pseudo-Huber loss of a group's norm, `rho(s) = delta^2 (sqrt(1 + s / delta^2) - 1)`,
/// IRLS weight `(1 + s / delta^2)^-1/2`, with the smoothed squared norm
/// `s = sum_r (r_r + offset)^2 + floor` (`offset = floor = 0` unless set with
/// [`PseudoHuber::with_smoothing`]: the released TensorFlow code of the pose model adds
/// `1e-7` to each residual and `1e-6` to the sum, which keeps its gradient finite at 0).
/// Quadratic (`w ~ 1`) for `|r_g| << delta`, linear for `|r_g| >> delta`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PseudoHuber {
    delta: f64,
    offset: f64,
    floor: f64,
}

impl PseudoHuber {
    /// The loss of width `delta`. Errors: `delta` not finite or 0.
    pub fn new(delta: f64) -> Result<Self> {
        if !(delta.is_finite() && delta != 0.0) {
            return Err(WibergError::InvalidArgument(format!(
                "pseudo-Huber width must be finite and non-zero, got {delta}"
            )));
        }
        Ok(PseudoHuber { delta, offset: 0.0, floor: 0.0 })
    }

    /// With `offset` added to every residual and `floor` to the squared norm. Errors: either
    /// not finite, or `floor < 0`.
    pub fn with_smoothing(mut self, offset: f64, floor: f64) -> Result<Self> {
        if !(offset.is_finite() && floor.is_finite() && floor >= 0.0) {
            return Err(WibergError::InvalidArgument(format!(
                "pseudo-Huber smoothing must be finite with floor >= 0, got offset {offset}, floor {floor}"
            )));
        }
        self.offset = offset;
        self.floor = floor;
        Ok(self)
    }

    /// The width `delta`.
    pub fn delta(&self) -> f64 {
        self.delta
    }

    /// The smoothed squared norm `s`.
    #[inline]
    fn norm_sq(&self, residuals: &[f64]) -> f64 {
        // Left to right from the first square, as the pose model's code sums.
        let mut s = match residuals.first() {
            Some(r) => (r + self.offset).powi(2),
            None => 0.0,
        };
        for r in residuals.iter().skip(1) {
            s += (r + self.offset).powi(2);
        }
        s + self.floor
    }
}

impl RowLoss for PseudoHuber {
    #[inline]
    fn weight(&self, residuals: &[f64]) -> f64 {
        let s = self.norm_sq(residuals);
        1.0 / (1.0 + s / (self.delta * self.delta)).sqrt()
    }

    fn energy(&self, residuals: &[f64]) -> f64 {
        let d2 = self.delta * self.delta;
        d2 * ((1.0 + self.norm_sq(residuals) / d2).sqrt() - 1.0)
    }
}

/// Source of [`FixedQuadratic`]'s coupling identities.
static NEXT_COUPLING_ID: AtomicU64 = AtomicU64::new(0);

/// The fixed quadratic part `(F, f)` of a structured robust least-squares problem (see the
/// [module documentation](self)): a block-arrow matrix stored with a pre-shift `s0` on its
/// diagonal, and a right-hand side.
///
/// Build it once and share it. The coupling (the largest part) carries an identity that changes
/// whenever it is written ([`FixedQuadratic::coupling_rows_mut`]) and that clones keep, so a
/// [`StructuredIrls`] copies it only when it meets a coupling it does not hold already: two
/// fixed parts that differ only in border, blocks or `f` (cloned, then edited there) share it.
#[derive(Debug, Clone)]
pub struct FixedQuadratic<const B: usize> {
    normal: BlockArrow<B>,
    rhs: Vec<f64>,
    preshift: f64,
    coupling_id: u64,
}

impl<const B: usize> FixedQuadratic<B> {
    /// The zero fixed part of a border of `border_dim` unknowns and `n_blocks` blocks.
    pub fn new(border_dim: usize, n_blocks: usize) -> Self {
        let normal = BlockArrow::new(border_dim, n_blocks);
        let rhs = vec![0.0; normal.dim()];
        FixedQuadratic { normal, rhs, preshift: 0.0, coupling_id: NEXT_COUPLING_ID.fetch_add(1, Ordering::Relaxed) }
    }

    /// The stored matrix `F + s0 I`.
    pub fn normal(&self) -> &BlockArrow<B> {
        &self.normal
    }

    /// The border of the stored matrix, row-major `m x m` (lower triangle read).
    pub fn border_mut(&mut self) -> &mut [f64] {
        self.normal.border_mut()
    }

    /// The diagonal blocks of the stored matrix (lower triangles read).
    pub fn blocks_mut(&mut self) -> &mut [[[f64; B]; B]] {
        self.normal.blocks_mut()
    }

    /// The coupling rows of the stored matrix (see [`BlockArrow::coupling_rows`]); gives the
    /// coupling a new identity.
    pub fn coupling_rows_mut(&mut self) -> impl Iterator<Item = &mut [f64]> + '_ {
        self.coupling_id = NEXT_COUPLING_ID.fetch_add(1, Ordering::Relaxed);
        self.normal.coupling_rows_mut()
    }

    /// The right-hand side `f` (border first, then block by block).
    pub fn rhs(&self) -> &[f64] {
        &self.rhs
    }

    /// The right-hand side `f`, to write.
    pub fn rhs_mut(&mut self) -> &mut [f64] {
        &mut self.rhs
    }

    /// The shift `s0` stored on the diagonal (0 unless set).
    pub fn preshift(&self) -> f64 {
        self.preshift
    }

    /// Declares that the stored matrix holds `F + s0 I` (the caller added `s0` to the diagonal
    /// while assembling, which rounds differently from adding it afterwards): a solve damped
    /// by `s0` then adds nothing. Errors: `s0` not finite.
    pub fn set_preshift(&mut self, s0: f64) -> Result<()> {
        check_finite(&[s0], "fixed part pre-shift")?;
        self.preshift = s0;
        Ok(())
    }

    /// Dimension `n = m + k B`.
    pub fn dim(&self) -> usize {
        self.normal.dim()
    }
}

/// Marks a border-only row (no block).
const NONE: usize = usize::MAX;

/// One robust row's block part and target.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Row<const B: usize> {
    /// The block (`NONE`: border only).
    block: usize,
    /// Block coefficients (zero without a block).
    coeffs: [f64; B],
    target: f64,
}

/// `a . p` from the first product, left to right (as the pose model's code sums).
#[inline(always)]
fn block_dot<const B: usize>(a: &[f64; B], p: &[f64]) -> f64 {
    let mut s = a[0] * p[0];
    for d in 1..B {
        s += a[d] * p[d];
    }
    s
}

/// The robust rows of a structured least-squares problem, in groups (see the
/// [module documentation](self)). Refill it per problem with [`RobustRows::clear`] and the
/// `push` methods: the storage is kept, so no allocation once it has grown.
#[derive(Debug, Clone, PartialEq)]
pub struct RobustRows<const B: usize> {
    border_dim: usize,
    n_blocks: usize,
    rows: Vec<Row<B>>,
    /// `(row, start in border)` of each row with border coefficients, in row order (empty for
    /// problems whose robust rows touch blocks only: the assembly's fast path).
    border_rows: Vec<(usize, usize)>,
    border: Vec<f64>,
    /// End (exclusive row index) of each closed group.
    group_ends: Vec<usize>,
}

/// `dl/d(row)` of one robust row with the weights frozen (see the
/// [module documentation](self)); a border part is written to the slice passed in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowGradient<const B: usize> {
    /// `dl/da_r` on the row's block (zero for a border-only row).
    pub coeffs: [f64; B],
    /// `dl/db_r`: `w (a_r . u) - g_r`.
    pub target: f64,
    /// This row's term of `dl/dw_g`: `-(a_r . u)(a_r . y - b_r)`.
    pub weight: f64,
    /// `a_r . u`.
    pub a_dot_u: f64,
    /// The residual `a_r . y - b_r`.
    pub residual: f64,
}

impl<const B: usize> RobustRows<B> {
    /// No rows, for a problem of `border_dim` border unknowns and `n_blocks` blocks of `B`.
    pub fn new(border_dim: usize, n_blocks: usize) -> Self {
        RobustRows {
            border_dim,
            n_blocks,
            rows: Vec::new(),
            border_rows: Vec::new(),
            border: Vec::new(),
            group_ends: Vec::new(),
        }
    }

    /// Removes every row and group (keeping the storage).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.border_rows.clear();
        self.border.clear();
        self.group_ends.clear();
    }

    /// Appends the row `coeffs . p_block - target` to the open group.
    ///
    /// Errors: `block` out of range.
    #[inline]
    pub fn push_block_row(&mut self, block: usize, coeffs: [f64; B], target: f64) -> Result<()> {
        if block >= self.n_blocks {
            return Err(block_out_of_range(block, self.n_blocks));
        }
        self.rows.push(Row { block, coeffs, target });
        Ok(())
    }

    /// Appends the row `coeffs . p_block + border . z - target` to the open group (`block`
    /// `None`: a border-only row, `coeffs` ignored).
    ///
    /// Errors: `block` out of range, `border` not of length `m`.
    pub fn push_row(&mut self, block: Option<usize>, coeffs: [f64; B], border: &[f64], target: f64) -> Result<()> {
        check_len(border.len(), self.border_dim, "border coefficients of a robust row")?;
        let row = match block {
            Some(j) if j >= self.n_blocks => return Err(block_out_of_range(j, self.n_blocks)),
            Some(j) => Row { block: j, coeffs, target },
            None => Row { block: NONE, coeffs: [0.0; B], target },
        };
        self.border_rows.push((self.rows.len(), self.border.len()));
        self.rows.push(row);
        self.border.extend_from_slice(border);
        Ok(())
    }

    /// Closes the open group: the rows pushed since the last close share one weight. An empty
    /// group is allowed (its weight is the loss's at no residuals and weighs nothing).
    pub fn end_group(&mut self) {
        self.group_ends.push(self.rows.len());
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.rows.len()
    }

    /// Number of closed groups.
    pub fn n_groups(&self) -> usize {
        self.group_ends.len()
    }

    /// The rows of group `g`.
    pub fn group(&self, g: usize) -> Range<usize> {
        let start = if g == 0 { 0 } else { self.group_ends[g - 1] };
        start..self.group_ends[g]
    }

    /// Whether some row has border coefficients.
    pub fn touches_border(&self) -> bool {
        !self.border_rows.is_empty()
    }

    /// The border coefficients of row `r`, if it has any.
    fn border_of(&self, r: usize) -> Option<&[f64]> {
        let k = self.border_rows.binary_search_by_key(&r, |&(row, _)| row).ok()?;
        let at = self.border_rows[k].1;
        Some(&self.border[at..at + self.border_dim])
    }

    /// `a_r . x` (block part first, then the border part), `x` of the problem's dimension.
    #[inline]
    pub fn dot(&self, r: usize, x: &[f64]) -> f64 {
        let row = &self.rows[r];
        let mut s = 0.0;
        if row.block != NONE {
            let o = self.border_dim + B * row.block;
            s = block_dot(&row.coeffs, &x[o..o + B]);
        }
        if self.touches_border() {
            if let Some(c) = self.border_of(r) {
                for (c, z) in c.iter().zip(&x[..self.border_dim]) {
                    s += c * z;
                }
            }
        }
        s
    }

    /// The residual `a_r . y - b_r`.
    #[inline]
    pub fn residual(&self, r: usize, y: &[f64]) -> f64 {
        self.dot(r, y) - self.rows[r].target
    }

    /// The block of row `r` (`None` for a border-only row).
    pub fn block_of(&self, r: usize) -> Option<usize> {
        let j = self.rows[r].block;
        (j != NONE).then_some(j)
    }

    /// `dl/d(row r)` with its group's weight `weight` frozen, from the solution `y`,
    /// `u = (N + s I)^-1 dl/dy` ([`StructuredIrls::adjoint`]) and `residual_grad`, the loss's
    /// direct derivative in the row's residual (see the [module documentation](self); 0 when
    /// the loss sees the rows only through `y`); `border_grad` (length `m`, or empty when the
    /// row has no border part) receives `dl/d(border coefficients)`.
    ///
    /// Errors: `r` out of range, `y`, `u` or `border_grad` of the wrong length.
    pub fn row_gradient(
        &self,
        r: usize,
        weight: f64,
        residual_grad: f64,
        y: &[f64],
        u: &[f64],
        border_grad: &mut [f64],
    ) -> Result<RowGradient<B>> {
        let n = self.border_dim + B * self.n_blocks;
        if r >= self.n_rows() {
            return Err(WibergError::InvalidArgument(format!("row {r} of {} robust rows", self.n_rows())));
        }
        check_len(y.len(), n, "solution y")?;
        check_len(u.len(), n, "adjoint u")?;
        let has_border = self.border_of(r).is_some();
        check_len(border_grad.len(), if has_border { self.border_dim } else { 0 }, "border gradient of a robust row")?;
        let e = self.residual(r, y);
        let au = self.dot(r, u);
        // dl/da_r = (g_r - w (a_r . u)) y - w e_r u, written as `along_y * y - along_u * u`.
        let along_y = residual_grad - weight * au;
        let along_u = weight * e;
        let mut coeffs = [0.0; B];
        let j = self.rows[r].block;
        if j != NONE {
            let o = self.border_dim + B * j;
            for d in 0..B {
                coeffs[d] = along_y * y[o + d] - along_u * u[o + d];
            }
        }
        for (k, g) in border_grad.iter_mut().enumerate() {
            *g = along_y * y[k] - along_u * u[k];
        }
        Ok(RowGradient { coeffs, target: -along_y, weight: -au * e, a_dot_u: au, residual: e })
    }
}

fn block_out_of_range(block: usize, n_blocks: usize) -> WibergError {
    WibergError::InvalidArgument(format!("robust row on block {block} of {n_blocks}"))
}

/// The solver of structured robust least squares (see the [module documentation](self)): the
/// assembled matrix, its [`BlockArrowFactor`], the solution and the weights of the last solve.
/// One per thread; every buffer is reused, so solves allocate nothing once the dimensions are
/// set.
#[derive(Debug, Clone)]
pub struct StructuredIrls<const B: usize> {
    normal: BlockArrow<B>,
    rhs: Vec<f64>,
    factor: BlockArrowFactor<B>,
    y: Vec<f64>,
    weights: Vec<f64>,
    residuals: Vec<f64>,
    /// Identity of the fixed coupling `normal` holds (`None`: none, or rows wrote into it).
    coupling_of: Option<u64>,
}

impl<const B: usize> StructuredIrls<B> {
    /// A solver for problems of `border_dim` border unknowns and `n_blocks` blocks of `B`.
    pub fn new(border_dim: usize, n_blocks: usize) -> Self {
        let normal = BlockArrow::new(border_dim, n_blocks);
        let n = normal.dim();
        StructuredIrls {
            normal,
            rhs: vec![0.0; n],
            factor: BlockArrowFactor::new(border_dim, n_blocks),
            y: vec![0.0; n],
            weights: Vec::new(),
            residuals: Vec::new(),
            coupling_of: None,
        }
    }

    /// IRLS (see the [module documentation](self)): one solve with every weight 1 and `first`,
    /// then `reweights` solves with the weights of `loss` at the previous solution and
    /// `reweighted`. Every solve is damped by `damping` (on top of the fixed parts' pre-shift,
    /// see [`FixedQuadratic::set_preshift`]). Returns the last solution; its weights are
    /// [`StructuredIrls::weights`] and its factorisation [`StructuredIrls::factor`].
    ///
    /// Errors: dimensions that do not match; an invalid damping;
    /// [`WibergError::SingularHessian`] when a damped normal matrix is (numerically) singular
    /// or a solution not finite; [`WibergError::NonFinite`] for non-finite entries or weights.
    pub fn solve<L: RowLoss + ?Sized>(
        &mut self,
        first: &FixedQuadratic<B>,
        reweighted: &FixedQuadratic<B>,
        rows: &RobustRows<B>,
        loss: &L,
        reweights: usize,
        damping: Damping,
    ) -> Result<&[f64]> {
        self.check(first, rows)?;
        self.check(reweighted, rows)?;
        self.weights.clear();
        self.weights.resize(rows.n_groups(), 1.0);
        self.solve_current(first, rows, damping)?;
        for _ in 0..reweights {
            self.reweight(rows, loss)?;
            self.solve_current(reweighted, rows, damping)?;
        }
        Ok(&self.y)
    }

    /// One damped solve with the group weights `weights` (one per group).
    ///
    /// Errors: as [`StructuredIrls::solve`], and `weights` of the wrong length.
    pub fn solve_with_weights(
        &mut self,
        fixed: &FixedQuadratic<B>,
        rows: &RobustRows<B>,
        weights: &[f64],
        damping: Damping,
    ) -> Result<&[f64]> {
        self.set_weights(fixed, rows, weights)?;
        self.solve_current(fixed, rows, damping)?;
        Ok(&self.y)
    }

    /// The backward solve: assembles the system of `weights` (those of the solve being
    /// differentiated, [`StructuredIrls::weights`] after it), factorises it with `damping` and
    /// overwrites `v = dl/dy` with `u = (N + s I)^-1 v`. The factorisation stays in
    /// [`StructuredIrls::factor`] for further right-hand sides; the solution `y` is not
    /// touched.
    ///
    /// Errors: as [`StructuredIrls::solve_with_weights`], and `v` of the wrong length or not
    /// finite.
    pub fn adjoint(
        &mut self,
        fixed: &FixedQuadratic<B>,
        rows: &RobustRows<B>,
        weights: &[f64],
        damping: Damping,
        v: &mut [f64],
    ) -> Result<()> {
        self.set_weights(fixed, rows, weights)?;
        self.factorize_current(fixed, rows, damping)?;
        self.factor.solve_in_place(v)
    }

    /// Exchanges the factorisation of the last solve with `kept`, without copying it: keeps a
    /// solve's factor for a later backward solve. `kept.solve_in_place(v)` then computes what
    /// [`StructuredIrls::adjoint`] would with that solve's rows, weights, fixed part and
    /// damping, without re-assembling and refactorising. Afterwards
    /// [`StructuredIrls::factor`] holds `kept`'s previous content (any factor, or none) until
    /// the next solve overwrites it; a `kept` of other dimensions is resized then.
    pub fn swap_factor(&mut self, kept: &mut BlockArrowFactor<B>) {
        std::mem::swap(&mut self.factor, kept);
    }

    /// The solution of the last solve.
    pub fn y(&self) -> &[f64] {
        &self.y
    }

    /// The group weights of the last assembled system.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The last assembled matrix `N + s0 I` (the fixed part's pre-shift on its diagonal).
    pub fn normal(&self) -> &BlockArrow<B> {
        &self.normal
    }

    /// The last assembled right-hand side `r(w)`.
    pub fn rhs(&self) -> &[f64] {
        &self.rhs
    }

    /// The factorisation of the last assembled system (its damping applied).
    pub fn factor(&self) -> &BlockArrowFactor<B> {
        &self.factor
    }

    fn check(&self, fixed: &FixedQuadratic<B>, rows: &RobustRows<B>) -> Result<()> {
        let (m, k) = (self.normal.border_dim(), self.normal.n_blocks());
        check_len(fixed.normal.border_dim(), m, "fixed part border unknowns")?;
        check_len(fixed.normal.n_blocks(), k, "fixed part blocks")?;
        check_len(rows.border_dim, m, "robust rows' border unknowns")?;
        check_len(rows.n_blocks, k, "robust rows' blocks")
    }

    fn set_weights(&mut self, fixed: &FixedQuadratic<B>, rows: &RobustRows<B>, weights: &[f64]) -> Result<()> {
        self.check(fixed, rows)?;
        check_len(weights.len(), rows.n_groups(), "group weights")?;
        check_finite(weights, "group weights")?;
        self.weights.clear();
        self.weights.extend_from_slice(weights);
        Ok(())
    }

    /// The weights of `loss` at the current solution.
    fn reweight<L: RowLoss + ?Sized>(&mut self, rows: &RobustRows<B>, loss: &L) -> Result<()> {
        self.residuals.resize(rows.n_rows(), 0.0);
        if rows.touches_border() {
            for (r, e) in self.residuals.iter_mut().enumerate() {
                *e = rows.residual(r, &self.y);
            }
        } else {
            let q = &self.y[rows.border_dim..];
            for (e, row) in self.residuals.iter_mut().zip(&rows.rows) {
                let o = B * row.block;
                *e = block_dot(&row.coeffs, &q[o..o + B]) - row.target;
            }
        }
        let mut start = 0;
        let mut finite = true;
        for (w, &end) in self.weights.iter_mut().zip(&rows.group_ends) {
            *w = loss.weight(&self.residuals[start..end]);
            finite &= w.is_finite();
            start = end;
        }
        if finite {
            Ok(())
        } else {
            check_finite(&self.weights, "IRLS weights")
        }
    }

    fn solve_current(&mut self, fixed: &FixedQuadratic<B>, rows: &RobustRows<B>, damping: Damping) -> Result<()> {
        self.factorize_current(fixed, rows, damping)?;
        self.y.copy_from_slice(&self.rhs);
        self.factor.solve_in_place(&mut self.y)
    }

    /// Assembles `N(w)` and `r(w)` for the current weights and factorises.
    fn factorize_current(&mut self, fixed: &FixedQuadratic<B>, rows: &RobustRows<B>, damping: Damping) -> Result<()> {
        let fresh_coupling = rows.touches_border() || self.coupling_of != Some(fixed.coupling_id);
        self.normal.copy_from(&fixed.normal, fresh_coupling);
        self.coupling_of = (!rows.touches_border()).then_some(fixed.coupling_id);
        self.rhs.copy_from_slice(&fixed.rhs);
        let m = rows.border_dim;
        if !rows.touches_border() {
            // The fast path: every row on one block only. Consecutive rows on the same block
            // (order the rows block by block where the problem allows it) accumulate in
            // registers, starting from the stored block: the same sums in the same order as
            // adding each row into memory.
            let blocks = self.normal.blocks_mut();
            let rhs_q = &mut self.rhs[m..];
            let mut current = NONE;
            let mut acc = [[0.0; B]; B];
            let mut racc = [0.0; B];
            let mut start = 0;
            for (&w, &end) in self.weights.iter().zip(&rows.group_ends) {
                for row in &rows.rows[start..end] {
                    let (j, a, b) = (row.block, &row.coeffs, row.target);
                    if j != current {
                        if current != NONE {
                            blocks[current] = acc;
                            rhs_q[B * current..B * current + B].copy_from_slice(&racc);
                        }
                        current = j;
                        acc = blocks[j];
                        racc.copy_from_slice(&rhs_q[B * j..B * j + B]);
                    }
                    // Lower triangle, each entry `w a_d a_e` multiplied in this order.
                    for d in 0..B {
                        for e in 0..d + 1 {
                            acc[d][e] += w * a[d] * a[e];
                        }
                    }
                    for d in 0..B {
                        racc[d] += w * a[d] * b;
                    }
                }
                start = end;
            }
            if current != NONE {
                blocks[current] = acc;
                rhs_q[B * current..B * current + B].copy_from_slice(&racc);
            }
        } else {
            let mut start = 0;
            for (&w, &end) in self.weights.iter().zip(&rows.group_ends) {
                for r in start..end {
                    let row = &rows.rows[r];
                    let (j, a, b) = (row.block, &row.coeffs, row.target);
                    if j != NONE {
                        let blk = &mut self.normal.blocks_mut()[j];
                        for d in 0..B {
                            for e in 0..d + 1 {
                                blk[d][e] += w * a[d] * a[e];
                            }
                        }
                        for d in 0..B {
                            self.rhs[m + B * j + d] += w * a[d] * b;
                        }
                    }
                    let Some(c) = rows.border_of(r) else { continue };
                    let border = self.normal.border_mut();
                    for p in 0..m {
                        for q in 0..p + 1 {
                            border[p * m + q] += w * c[p] * c[q];
                        }
                    }
                    for p in 0..m {
                        self.rhs[p] += w * c[p] * b;
                    }
                    if j != NONE {
                        for d in 0..B {
                            if let Some(row) = self.normal.coupling_row_mut(B * j + d) {
                                for (x, cp) in row.iter_mut().zip(c) {
                                    *x += w * a[d] * cp;
                                }
                            }
                        }
                    }
                }
                start = end;
            }
        }
        self.factor.factorize_preshifted_into(&self.normal, fixed.preshift, damping)
    }
}

#[cfg(test)]
mod tests;
