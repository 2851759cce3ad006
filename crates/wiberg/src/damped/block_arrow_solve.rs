//! The block-arrow strategy for the layer: energies that state their Hessian in block-arrow
//! form ([`BlockArrowHessian`]) are factorised by Schur complement ([`BlockArrowFactor`]).

use crate::damped::block_arrow::{BlockArrow, BlockArrowFactor};
use crate::damped::HessianSolve;
use crate::derivative::Damping;
use crate::energy::Energy;
use crate::error::WibergError;
use crate::Result;
use serde::{Deserialize, Serialize};

/// An energy whose Hessian in `y` has the block-arrow structure of [`BlockArrow`]: a border of
/// `m` unknowns coupled to everything, then `k` blocks of `B` unknowns that interact only with
/// themselves and with the border (bundle adjustment: camera parameters in the border, 3-D
/// points in `3 x 3` blocks; the pose energy: basis coefficients in the border, free points in
/// blocks).
///
/// The unknowns `y` must be ordered as the matrix is: border first (`y[..m]`), then block `j`
/// at `y[m + B j..m + B (j + 1)]`. [`Energy::hessian`] must still return the same matrix in
/// dense form (the dense strategy, gradient checks and the tests use it).
pub trait BlockArrowHessian<const B: usize>: Energy {
    /// Number of border unknowns `m` (`dim() = m + B k`).
    fn border_dim(&self) -> usize;

    /// Writes the Hessian at `(y, w)` into `h` (shaped `border_dim()` by
    /// `(dim() - border_dim()) / B` blocks; its previous content is to be overwritten). Only
    /// the lower triangles of the border and of the blocks are read.
    fn block_arrow_hessian(&self, y: &[f64], w: &[f64], h: &mut BlockArrow<B>);
}

/// The block-arrow strategy for the layer: the Hessian from
/// [`BlockArrowHessian::block_arrow_hessian`], factorised by [`BlockArrowFactor`] (Schur
/// complement of the border: `O(k B m^2)` instead of `O((m + k B)^3)`). For energies with many
/// small independent groups of unknowns tied together by a few shared ones; with `k` blocks of
/// 3 and a border of 29 (the pose energy's shape) compare it with [`super::DenseSolve`] by
/// `cargo bench -p wiberg --bench damped_solve`.
///
/// `Guarded`: when `H` is not positive definite the smallest eigenvalue of the **whole**
/// matrix is bracketed by bisection on the inertia of the block elimination (Sylvester's law),
/// and its lower end is used, so `H + s I >= lambda I` holds up to a relative `n eps` (the
/// [`super::block_arrow`] module documentation states what every diagnostic is).
///
/// ```
/// use nalgebra::DMatrix;
/// use wiberg::damped::{BlockArrow, BlockArrowHessian, BlockArrowSolve};
/// use wiberg::{ArgminLayer, Damping, Energy, Start};
/// /// E(y; w) = |z - w|^2 / 2 + sum_j |p_j - z|^2 / 2: one border unknown z, 1-D blocks p_j.
/// struct Star(usize);
/// impl Energy for Star {
///     fn dim(&self) -> usize { 1 + self.0 }
///     fn num_params(&self) -> usize { 1 }
///     fn value(&self, y: &[f64], w: &[f64]) -> f64 {
///         0.5 * (y[0] - w[0]).powi(2) + y[1..].iter().map(|p| 0.5 * (p - y[0]).powi(2)).sum::<f64>()
///     }
///     fn gradient(&self, y: &[f64], w: &[f64], g: &mut [f64]) -> f64 {
///         g[0] = y[0] - w[0] - y[1..].iter().map(|p| p - y[0]).sum::<f64>();
///         for j in 1..y.len() { g[j] = y[j] - y[0]; }
///         self.value(y, w)
///     }
///     fn hessian(&self, _y: &[f64], _w: &[f64], h: &mut DMatrix<f64>) {
///         h.fill(0.0);
///         h[(0, 0)] = 1.0 + self.0 as f64;
///         for j in 1..=self.0 { h[(j, j)] = 1.0; h[(0, j)] = -1.0; h[(j, 0)] = -1.0; }
///     }
///     fn mixed_vjp(&self, _y: &[f64], _w: &[f64], u: &[f64], out: &mut [f64]) { out[0] = -u[0]; }
/// }
/// impl BlockArrowHessian<1> for Star {
///     fn border_dim(&self) -> usize { 1 }
///     fn block_arrow_hessian(&self, _y: &[f64], _w: &[f64], h: &mut BlockArrow<1>) {
///         h.border_mut()[0] = 1.0 + self.0 as f64;
///         h.blocks_mut().fill([[1.0]]);
///         h.coupling_rows_mut().for_each(|row| row[0] = -1.0);
///     }
/// }
/// let e = Star(4);
/// let layer = ArgminLayer::with_damping(Damping::Implicit).with_linear_solve(BlockArrowSolve::<1>);
/// let sol = layer.forward(&e, &[2.0], Start::Point(&[0.0; 5])).unwrap();
/// assert!(sol.y.iter().all(|v| (v - 2.0).abs() < 1e-9)); // everything moves with w
/// let jac = layer.jacobian(&e, &[2.0], &sol).unwrap();
/// assert!(jac.iter().all(|d| (d - 1.0).abs() < 1e-9));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BlockArrowSolve<const B: usize>;

impl<const B: usize, E: BlockArrowHessian<B> + ?Sized> HessianSolve<E> for BlockArrowSolve<B> {
    type Factor = BlockArrowFactor<B>;

    fn factorize(&self, e: &E, y: &[f64], w: &[f64], damping: Damping) -> Result<BlockArrowFactor<B>> {
        let n = e.dim();
        let m = e.border_dim();
        if y.len() != n || m > n || !(n - m).is_multiple_of(B) {
            return Err(WibergError::InvalidArgument(format!(
                "block-arrow energy of dimension {n} (point of length {}) with a border of {m}: the rest must be blocks of {B}",
                y.len()
            )));
        }
        let mut h = BlockArrow::<B>::new(m, (n - m) / B);
        e.block_arrow_hessian(y, w, &mut h);
        BlockArrowFactor::factorize(&h, damping)
    }
}
