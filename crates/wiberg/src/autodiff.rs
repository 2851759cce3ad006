//! [`AutoDiff`]: exact derivatives of an energy written once, generic over num-dual's dual numbers.
//!
//! The user implements [`DualEnergy`] (`E(y; w)` for any [`DualScalar`]); [`AutoDiff`] then
//! implements [`Energy`] with forward-mode automatic differentiation on statically sized
//! dual numbers (`Copy`, on the stack: dynamically sized ones allocate on every operation):
//!
//! | quantity | dual type | passes over `E` | cost per operation of `E` (all passes) |
//! |---|---|---|---|
//! | value | `f64` | 1 | 1 |
//! | gradient | `DualSVec64<C>`: a chunk of `C <= 4` unknowns | `n / C` | `O(n)` |
//! | Hessian, `n <= 4` | `HyperDualSVec64<C, C>`, `C` in 1, 2, 4 | 1 | `O(n^2)` |
//! | Hessian, `n > 4` | `DualSVec<Dual64, 4>`: columns `H e_k`, upper triangle | `n^2 / 8` | `O(n^2)` |
//! | `H v` | `DualSVec<Dual64, C>`: inner epsilon along `v`, outer a chunk of `y` | `n / C` | `O(n)` |
//! | `mixed_vjp` | `DualSVec<Dual64, C>`: inner epsilon along `u`, outer a chunk of `w` | `p / C` | `O(p)` |
//!
//! Chunks are at most 4 wide: measured with a throw-away timing program (best of 15-40 runs,
//! on the shared 2-core machine) on the 4-D mixture of `cargo bench -p wiberg -- mixed_vjp`
//! (p = 1,000), the nested `DualSVec<Dual64, 4>` ran the mixed product in about 3-5 ms where
//! chunks of 5 to 64 (nested or `HyperDualSVec64<1, C>`) took 10-35 ms: past 4 entries nalgebra's small-vector arithmetic stops being unrolled, and the
//! larger numbers are copied on every operation. For the same reason the Hessian of a larger
//! `n` is built column by column from the small nested numbers: at n = 100 (an energy of
//! 10,000 terms) that took about 0.3 s against 1.2 s for 4 x 4 hyper-dual blocks.
//!
//! The mixed product `d/dw <grad_y E, u>` therefore never forms the `n x p` matrix and costs
//! `O(p)` per operation of `E`, independent of `n`. It is still `p` times the cost of `E`
//! (forward mode): energies with thousands of parameters should implement [`Energy`] with an
//! analytic `mixed_vjp` when it is on a hot path (`cargo bench -p wiberg` compares both).
//! The buffers of dual numbers are allocated once per call and only the active chunk is
//! rewritten between passes; entries outside the chunk carry no outer derivative part
//! (`None`), which num-dual skips cheaply.

use crate::energy::Energy;
use nalgebra::DMatrix;
use num_dual::{Dual64, DualNum, DualSVec, DualSVec64, HyperDualSVec64};

/// The scalar types an energy is written for: any num-dual number over `f64` that is `Copy`
/// (plain `f64` included). A shorthand for `num_dual::DualNum<Primitive = f64> + Copy`.
///
/// Constants enter as `D::from(2.0)`; `D * 2.0` and `D + 2.0` work directly. With an `f64` on
/// the *left* the operators do not exist (Rust cannot implement `f64: Mul<D>` for a generic
/// `D`), so `2.0 * d` and `x - d` do not compile: write `d * 2.0` and `D::from(x) - d`.
///
/// ```
/// use wiberg::DualScalar;
/// fn residual<D: DualScalar>(x: f64, z: f64, slope: D) -> D {
///     D::from(z) - slope * x // not `z - slope * x`
/// }
/// assert_eq!(residual(2.0, 5.0, 1.5), 2.0);
/// ```
///
/// ```compile_fail
/// use wiberg::DualScalar;
/// fn twice<D: DualScalar>(d: D) -> D {
///     2.0 * d // error: cannot multiply `f64` by `D`
/// }
/// ```
pub trait DualScalar: DualNum<Primitive = f64> + Copy {}
impl<T: DualNum<Primitive = f64> + Copy> DualScalar for T {}

/// An energy `E(y; w)` written once over dual numbers; wrap it in [`AutoDiff`] to get an
/// [`Energy`] with exact derivatives.
///
/// `y` has [`DualEnergy::dim`] entries, `w` has [`DualEnergy::num_params`]. The sample's data
/// lives in `self` as plain `f64` (convert with `D::from(x)`).
pub trait DualEnergy {
    /// Number of unknowns `n`.
    fn dim(&self) -> usize;
    /// Number of parameters `p`.
    fn num_params(&self) -> usize;
    /// `E(y; w)`.
    fn energy<D: DualScalar>(&self, y: &[D], w: &[D]) -> D;
}

impl<E: DualEnergy> DualEnergy for &E {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn num_params(&self) -> usize {
        (**self).num_params()
    }
    fn energy<D: DualScalar>(&self, y: &[D], w: &[D]) -> D {
        (**self).energy(y, w)
    }
}

/// Adapter: an [`Energy`] whose derivatives are computed exactly by forward-mode automatic
/// differentiation of a [`DualEnergy`]. See the [module documentation](self) for the costs.
///
/// ```
/// use wiberg::{AutoDiff, DualEnergy, Energy};
/// use wiberg::autodiff::DualScalar;
/// use nalgebra::DMatrix;
///
/// /// E(y; w) = w0 exp(y0) + w1 y0 y1 + y1^2 / 2
/// struct Toy;
/// impl DualEnergy for Toy {
///     fn dim(&self) -> usize { 2 }
///     fn num_params(&self) -> usize { 2 }
///     fn energy<D: DualScalar>(&self, y: &[D], w: &[D]) -> D {
///         w[0] * y[0].exp() + w[1] * y[0] * y[1] + y[1] * y[1] * 0.5
///     }
/// }
/// let e = AutoDiff::new(Toy);
/// let (y, w) = ([0.0, 2.0], [2.0, 3.0]);
/// let mut g = [0.0; 2];
/// assert_eq!(e.gradient(&y, &w, &mut g), 4.0);
/// assert_eq!(g, [8.0, 2.0]); // [w0 e^y0 + w1 y1, w1 y0 + y1]
/// let mut h = DMatrix::zeros(2, 2);
/// e.hessian(&y, &w, &mut h);
/// assert_eq!(h, DMatrix::from_row_slice(2, 2, &[2.0, 3.0, 3.0, 1.0]));
/// // d/dw <grad_y E, u> with u = (1, 2): M = [[e^y0, y1], [0, y0]] = [[1, 2], [0, 0]].
/// let mut mv = [0.0; 2];
/// e.mixed_vjp(&y, &w, &[1.0, 2.0], &mut mv);
/// assert_eq!(mv, [1.0, 2.0]);
/// let mut hv = [0.0; 2];
/// e.hvp(&y, &w, &[1.0, -1.0], &mut hv);
/// assert_eq!(hv, [-1.0, 2.0]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AutoDiff<E>(pub E);

impl<E> AutoDiff<E> {
    /// Wraps an energy.
    pub fn new(energy: E) -> Self {
        AutoDiff(energy)
    }

    /// The wrapped energy.
    pub fn inner(&self) -> &E {
        &self.0
    }

    /// Unwraps the energy.
    pub fn into_inner(self) -> E {
        self.0
    }
}

impl<E: DualEnergy> AutoDiff<E> {
    /// [`Energy::mixed_vjp`] with an explicit chunk width `C` (parameters differentiated per
    /// pass over `E`): `p / C` passes with dual numbers of about `16 C` bytes. The trait
    /// method picks `C` from `p`; this is for tuning a particular energy.
    pub fn mixed_vjp_chunked<const C: usize>(&self, y: &[f64], w: &[f64], u: &[f64], out: &mut [f64]) {
        mixed_chunked::<E, C>(&self.0, y, w, u, out)
    }
}

/// Chunk width for `n` unknowns (gradient, Hessian, hvp).
macro_rules! by_dim_chunk {
    ($n:expr, $f:ident :: <$e:ty>, $($arg:expr),*) => {
        match $n {
            0 | 1 => $f::<$e, 1>($($arg),*),
            2 => $f::<$e, 2>($($arg),*),
            _ => $f::<$e, 4>($($arg),*),
        }
    };
}

impl<E: DualEnergy> Energy for AutoDiff<E> {
    fn dim(&self) -> usize {
        self.0.dim()
    }

    fn num_params(&self) -> usize {
        self.0.num_params()
    }

    fn value(&self, y: &[f64], w: &[f64]) -> f64 {
        self.0.energy(y, w)
    }

    fn gradient(&self, y: &[f64], w: &[f64], g: &mut [f64]) -> f64 {
        let n = self.0.dim();
        by_dim_chunk!(n, gradient_chunked::<E>, &self.0, y, w, g)
    }

    fn hessian(&self, y: &[f64], w: &[f64], h: &mut DMatrix<f64>) {
        match self.0.dim() {
            0 => {}
            1 => hessian_chunked::<E, 1>(&self.0, y, w, h),
            2 => hessian_chunked::<E, 2>(&self.0, y, w, h),
            3 | 4 => hessian_chunked::<E, 4>(&self.0, y, w, h),
            _ => hessian_columns::<E, 4>(&self.0, y, w, h),
        }
    }

    fn hvp(&self, y: &[f64], w: &[f64], v: &[f64], out: &mut [f64]) {
        let n = self.0.dim();
        by_dim_chunk!(n, hvp_chunked::<E>, &self.0, y, w, v, out)
    }

    fn mixed_vjp(&self, y: &[f64], w: &[f64], u: &[f64], out: &mut [f64]) {
        match self.0.num_params() {
            0 => {}
            1 => mixed_chunked::<E, 1>(&self.0, y, w, u, out),
            2 => mixed_chunked::<E, 2>(&self.0, y, w, u, out),
            _ => mixed_chunked::<E, 4>(&self.0, y, w, u, out),
        }
    }
}

fn gradient_chunked<E: DualEnergy, const C: usize>(e: &E, y: &[f64], w: &[f64], g: &mut [f64]) -> f64 {
    let n = y.len();
    if n == 0 {
        return e.energy(y, w);
    }
    let wd: Vec<DualSVec64<C>> = w.iter().map(|&v| DualSVec64::from_re(v)).collect();
    let mut yd: Vec<DualSVec64<C>> = y.iter().map(|&v| DualSVec64::from_re(v)).collect();
    let mut value = f64::NAN;
    for start in (0..n).step_by(C) {
        let end = (start + C).min(n);
        for i in start..end {
            yd[i] = DualSVec64::from_re(y[i]).derivative(i - start);
        }
        let r = e.energy(&yd, &wd);
        value = r.re;
        for i in start..end {
            g[i] = r.eps.0.as_ref().map_or(0.0, |d| d[i - start]);
            yd[i] = DualSVec64::from_re(y[i]);
        }
    }
    value
}

fn hessian_chunked<E: DualEnergy, const C: usize>(e: &E, y: &[f64], w: &[f64], h: &mut DMatrix<f64>) {
    let n = y.len();
    let wd: Vec<HyperDualSVec64<C, C>> = w.iter().map(|&v| HyperDualSVec64::from_re(v)).collect();
    let mut yd: Vec<HyperDualSVec64<C, C>> = y.iter().map(|&v| HyperDualSVec64::from_re(v)).collect();
    for bi in (0..n).step_by(C) {
        let ei = (bi + C).min(n);
        for bj in (bi..n).step_by(C) {
            let ej = (bj + C).min(n);
            for (a, yi) in yd[bi..ei].iter_mut().enumerate() {
                *yi = yi.derivative1(a);
            }
            for (b, yj) in yd[bj..ej].iter_mut().enumerate() {
                *yj = yj.derivative2(b);
            }
            let r = e.energy(&yd, &wd);
            for i in bi..ei {
                for j in bj..ej {
                    let v = r.eps1eps2.0.as_ref().map_or(0.0, |m| m[(i - bi, j - bj)]);
                    h[(i, j)] = v;
                    h[(j, i)] = v;
                }
            }
            for k in bi..ei {
                yd[k] = HyperDualSVec64::from_re(y[k]);
            }
            for k in bj..ej {
                yd[k] = HyperDualSVec64::from_re(y[k]);
            }
        }
    }
}

/// The Hessian column by column (`H e_k`, as in [`hvp_chunked`]), upper triangle only: `n`
/// directions times the chunks at or below the diagonal, about `n^2 / (2 C)` passes with the
/// small nested dual numbers.
fn hessian_columns<E: DualEnergy, const C: usize>(e: &E, y: &[f64], w: &[f64], h: &mut DMatrix<f64>) {
    let n = y.len();
    let wd: Vec<Nested<C>> = w.iter().map(|&x| Nested::from_re(Dual64::from(x))).collect();
    let mut yd: Vec<Nested<C>> = y.iter().map(|&x| Nested::from_re(Dual64::from(x))).collect();
    for k in 0..n {
        yd[k] = Nested::from_re(Dual64::new(y[k], 1.0));
        for start in ((k / C) * C..n).step_by(C) {
            let end = (start + C).min(n);
            for (b, yj) in yd[start..end].iter_mut().enumerate() {
                *yj = yj.derivative(b);
            }
            let r = e.energy(&yd, &wd);
            for j in start..end {
                if j >= k {
                    let v = r.eps.0.as_ref().map_or(0.0, |m| m[j - start].eps);
                    h[(j, k)] = v;
                    h[(k, j)] = v;
                }
                let dir = if j == k { 1.0 } else { 0.0 };
                yd[j] = Nested::from_re(Dual64::new(y[j], dir));
            }
        }
        yd[k] = Nested::from_re(Dual64::from(y[k]));
    }
}

/// A dual number over `Dual64`: the inner epsilon carries the scalar direction (`d/dt` along
/// `u` or `v`), the outer `C` epsilons a chunk of variables.
type Nested<const C: usize> = DualSVec<Dual64, C>;

fn hvp_chunked<E: DualEnergy, const C: usize>(e: &E, y: &[f64], w: &[f64], v: &[f64], out: &mut [f64]) {
    let n = y.len();
    let wd: Vec<Nested<C>> = w.iter().map(|&x| Nested::from_re(Dual64::from(x))).collect();
    let mut yd: Vec<Nested<C>> = y.iter().zip(v).map(|(&x, &d)| Nested::from_re(Dual64::new(x, d))).collect();
    for start in (0..n).step_by(C) {
        let end = (start + C).min(n);
        for (b, yi) in yd[start..end].iter_mut().enumerate() {
            *yi = yi.derivative(b);
        }
        let r = e.energy(&yd, &wd);
        for i in start..end {
            out[i] = r.eps.0.as_ref().map_or(0.0, |m| m[i - start].eps);
            yd[i] = Nested::from_re(Dual64::new(y[i], v[i]));
        }
    }
}

fn mixed_chunked<E: DualEnergy, const C: usize>(e: &E, y: &[f64], w: &[f64], u: &[f64], out: &mut [f64]) {
    let p = w.len();
    let yd: Vec<Nested<C>> = y.iter().zip(u).map(|(&x, &d)| Nested::from_re(Dual64::new(x, d))).collect();
    let mut wd: Vec<Nested<C>> = w.iter().map(|&x| Nested::from_re(Dual64::from(x))).collect();
    for start in (0..p).step_by(C) {
        let end = (start + C).min(p);
        for (b, wj) in wd[start..end].iter_mut().enumerate() {
            *wj = wj.derivative(b);
        }
        let r = e.energy(&yd, &wd);
        for j in start..end {
            out[j] = r.eps.0.as_ref().map_or(0.0, |m| m[j - start].eps);
            wd[j] = Nested::from_re(Dual64::from(w[j]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A coupled energy with every kind of term: E = sum_i w_(i % p) y_i^2 exp(0.1 y_(i+1)) +
    /// (sum_j w_j) sin(y_0) + w_0 w_1 y_(n-1)^3 / 3.
    struct Coupled {
        n: usize,
        p: usize,
    }
    impl DualEnergy for Coupled {
        fn dim(&self) -> usize {
            self.n
        }
        fn num_params(&self) -> usize {
            self.p
        }
        fn energy<D: DualScalar>(&self, y: &[D], w: &[D]) -> D {
            let n = self.n;
            let mut e = D::from(0.0);
            for i in 0..n {
                e += w[i % self.p] * y[i] * y[i] * (y[(i + 1) % n] * 0.1).exp();
            }
            let sw = w.iter().fold(D::from(0.0), |a, b| a + *b);
            e += sw * y[0].sin();
            e += w[0] * w[1 % self.p] * y[n - 1].powi(3) / 3.0;
            e
        }
    }

    fn check(n: usize, p: usize) {
        let e = AutoDiff::new(Coupled { n, p });
        let y: Vec<f64> = (0..n).map(|i| 0.3 + 0.17 * i as f64 - 0.02 * (i * i) as f64).collect();
        let w: Vec<f64> = (0..p).map(|j| 0.5 + 0.1 * j as f64).collect();
        let h = 1e-5;
        let mut g = vec![0.0; n];
        let v = e.gradient(&y, &w, &mut g);
        assert!((v - e.value(&y, &w)).abs() < 1e-14);
        let mut hess = DMatrix::zeros(n, n);
        e.hessian(&y, &w, &mut hess);
        for i in 0..n {
            let (mut yp, mut ym) = (y.clone(), y.clone());
            yp[i] += h;
            ym[i] -= h;
            let fd = (e.value(&yp, &w) - e.value(&ym, &w)) / (2.0 * h);
            assert!((fd - g[i]).abs() < 1e-7 * (1.0 + fd.abs()), "grad {i}: {fd} vs {}", g[i]);
            let (mut gp, mut gm) = (vec![0.0; n], vec![0.0; n]);
            e.gradient(&yp, &w, &mut gp);
            e.gradient(&ym, &w, &mut gm);
            for j in 0..n {
                let fdh = (gp[j] - gm[j]) / (2.0 * h);
                assert!((fdh - hess[(j, i)]).abs() < 1e-6 * (1.0 + fdh.abs()), "hess {j},{i}");
            }
        }
        let dir: Vec<f64> = (0..n).map(|i| if i == 1 { 0.0 } else { 0.7 - 0.3 * i as f64 }).collect();
        let mut hv = vec![0.0; n];
        e.hvp(&y, &w, &dir, &mut hv);
        for i in 0..n {
            let dense: f64 = (0..n).map(|j| hess[(i, j)] * dir[j]).sum();
            assert!((dense - hv[i]).abs() < 1e-12 * (1.0 + dense.abs()), "hvp {i}: {dense} vs {}", hv[i]);
        }
        let mut mv = vec![0.0; p];
        e.mixed_vjp(&y, &w, &dir, &mut mv);
        for j in 0..p {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[j] += h;
            wm[j] -= h;
            let (mut gp, mut gm) = (vec![0.0; n], vec![0.0; n]);
            e.gradient(&y, &wp, &mut gp);
            e.gradient(&y, &wm, &mut gm);
            let fd: f64 = (0..n).map(|i| (gp[i] - gm[i]) / (2.0 * h) * dir[i]).sum();
            assert!((fd - mv[j]).abs() < 1e-6 * (1.0 + fd.abs()), "mixed {j}: {fd} vs {}", mv[j]);
        }
    }

    #[test]
    fn derivatives_match_finite_differences_for_every_chunk_width() {
        for (n, p) in [(1, 1), (2, 2), (3, 3), (4, 5), (9, 17), (17, 40)] {
            check(n, p);
        }
    }
}
