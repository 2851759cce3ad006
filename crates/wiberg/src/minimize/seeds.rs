//! Starting points: the lowest-energy point of a set of seeds.

use crate::energy::Energy;
use crate::error::WibergError;
use crate::Result;

/// Index and energy of the lowest-energy seed among the points stored consecutively in
/// `points` (each of length `e.dim()`). Seeds with a non-finite energy are skipped; ties go
/// to the first. Energies may skip seeds that provably cannot be the lowest
/// ([`Energy::lowest_at`]); the result is the same as scanning them all.
///
/// ```
/// use wiberg::{minimize::seeds::best_seed, RbfMixture};
/// // Three unit kernels at 0, 0.5 and 10: the middle of the pair is lowest.
/// let e = RbfMixture::shared_width(1, vec![0.0, 0.5, 10.0]).unwrap();
/// let (i, _) = best_seed(&e, &[1.0], &[0.0, 0.5, 10.0]).unwrap();
/// assert!(i < 2);
/// ```
pub fn best_seed<E: Energy + ?Sized>(e: &E, w: &[f64], points: &[f64]) -> Result<(usize, f64)> {
    let n = e.dim();
    if n == 0 || points.is_empty() || !points.len().is_multiple_of(n) {
        return Err(WibergError::InvalidArgument(format!(
            "seeds must be a non-empty list of {n}-dimensional points, got {} numbers",
            points.len()
        )));
    }
    e.lowest_at(points, w).ok_or_else(|| WibergError::NonFinite { what: "energy at every seed".into() })
}
