//! The layer's damped-solve strategies (`wiberg::damped`: dense, conjugate gradients,
//! block-arrow) against the dense one: random positive definite, near-singular and indefinite
//! systems under every damping mode, property tests, and the layer's gradient on a small
//! bundle-adjustment-like energy against the dense strategy and finite differences.

use crate::common::{random_matrix, rng};
use nalgebra::{DMatrix, DVector};
use proptest::prelude::*;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use wiberg::autodiff::DualScalar;
use wiberg::damped::{
    BlockArrow, BlockArrowHessian, BlockArrowSolve, CgSolve, DenseSolve, HessianFactor, HessianSolve, LinearFactor,
};
use wiberg::gradcheck::gradcheck;
use wiberg::{
    ArgminLayer, AutoDiff, Damping, DualEnergy, Energy, LinearSolve, LinearSolver, Minimizer, NewtonConfig, Start,
    WibergError,
};

const DAMPINGS: [Damping; 3] =
    [Damping::Implicit, Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.1 }];

/// `E(y; w) = 1/2 y^T H y - w^T y` with a fixed symmetric `H` laid out as a block-arrow matrix
/// (border of `m`, blocks of 3): `y*(w) = H^-1 w`, `M = -I`, so the layer's Jacobian is
/// `(H + s I)^-1`, the damped solve itself.
struct ArrowQuadratic {
    h: DMatrix<f64>,
    m: usize,
}

impl Energy for ArrowQuadratic {
    fn dim(&self) -> usize {
        self.h.nrows()
    }
    fn num_params(&self) -> usize {
        self.h.nrows()
    }
    fn value(&self, y: &[f64], w: &[f64]) -> f64 {
        let y = DVector::from_column_slice(y);
        0.5 * y.dot(&(&self.h * &y)) - y.dot(&DVector::from_column_slice(w))
    }
    fn gradient(&self, y: &[f64], w: &[f64], g: &mut [f64]) -> f64 {
        let hy = &self.h * DVector::from_column_slice(y);
        for i in 0..g.len() {
            g[i] = hy[i] - w[i];
        }
        self.value(y, w)
    }
    fn hessian(&self, _y: &[f64], _w: &[f64], h: &mut DMatrix<f64>) {
        h.copy_from(&self.h);
    }
    fn mixed_vjp(&self, _y: &[f64], _w: &[f64], u: &[f64], out: &mut [f64]) {
        for (o, ui) in out.iter_mut().zip(u) {
            *o = -ui;
        }
    }
    fn hvp(&self, _y: &[f64], _w: &[f64], v: &[f64], out: &mut [f64]) {
        out.copy_from_slice((&self.h * DVector::from_column_slice(v)).as_slice());
    }
}

impl BlockArrowHessian<3> for ArrowQuadratic {
    fn border_dim(&self) -> usize {
        self.m
    }
    fn block_arrow_hessian(&self, _y: &[f64], _w: &[f64], h: &mut BlockArrow<3>) {
        fill_block_arrow(&self.h, self.m, h);
    }
}

/// Copies the block-arrow entries of the dense `h` into `out`, asserting that everything
/// outside the pattern (block-block couplings) is exactly zero.
fn fill_block_arrow(h: &DMatrix<f64>, m: usize, out: &mut BlockArrow<3>) {
    let n = h.nrows();
    for r in 0..m {
        for c in 0..m {
            out.border_mut()[r * m + c] = h[(r, c)];
        }
    }
    for (q, row) in out.coupling_rows_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = h[(m + q, c)];
        }
    }
    for (j, blk) in out.blocks_mut().iter_mut().enumerate() {
        for (r, blk_row) in blk.iter_mut().enumerate() {
            for (c, v) in blk_row.iter_mut().enumerate() {
                *v = h[(m + 3 * j + r, m + 3 * j + c)];
            }
        }
    }
    for r in m..n {
        for c in m..n {
            if (r - m) / 3 != (c - m) / 3 {
                assert_eq!(h[(r, c)], 0.0, "entry ({r}, {c}) outside the block-arrow pattern");
            }
        }
    }
}

/// A random symmetric block-arrow matrix with the given eigenvalues' *shape*: `J^T J` of a
/// random block-arrow Jacobian plus `shift I` (negative shifts make it indefinite).
fn random_arrow(rng: &mut ChaCha8Rng, m: usize, k: usize, shift: f64) -> DMatrix<f64> {
    let n = m + 3 * k;
    let mut h = DMatrix::zeros(n, n);
    let jb = random_matrix(rng, m + 2, m);
    h.view_mut((0, 0), (m, m)).copy_from(&(jb.transpose() * &jb));
    for j in 0..k {
        // Rows of the Jacobian touching the border and block j only.
        let mut jac = DMatrix::zeros(5, n);
        for r in 0..5 {
            for c in 0..m {
                jac[(r, c)] = 0.5 * rng.random_range(-1.0..1.0);
            }
            for c in 0..3 {
                jac[(r, m + 3 * j + c)] = rng.random_range(-1.0..1.0);
            }
        }
        h += jac.transpose() * jac;
    }
    for i in 0..n {
        h[(i, i)] += shift;
    }
    h
}

fn min_eigenvalue(h: &DMatrix<f64>) -> f64 {
    h.clone().symmetric_eigen().eigenvalues.min()
}

/// Solves with the strategy's factor (through the trait the layer uses) at y = 0.
fn solve_with<S: HessianSolve<ArrowQuadratic>>(
    strategy: &S,
    e: &ArrowQuadratic,
    damping: Damping,
    v: &[f64],
) -> wiberg::Result<(Vec<f64>, wiberg::Diagnostics)> {
    let (y, w) = (vec![0.0; e.dim()], vec![0.0; e.dim()]);
    let factor = strategy.factorize(e, &y, &w, damping)?;
    let mut x = v.to_vec();
    let diag = factor.solve_in_place_at(e, &y, &w, &mut x)?;
    Ok((x, diag))
}

fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |s, v| s.max(v.abs())).max(1e-300);
    a.iter().zip(b).fold(0.0f64, |d, (x, y)| d.max((x - y).abs())) / scale
}

const CG: CgSolve = CgSolve { tol: 1e-13, max_iters: 500 };

#[test]
fn every_strategy_equals_dense_on_random_spd_systems() {
    let mut r = rng(31);
    for (m, k) in [(1, 1), (4, 5), (7, 12)] {
        let e = ArrowQuadratic { h: random_arrow(&mut r, m, k, 0.05), m };
        assert!(min_eigenvalue(&e.h) > 0.0);
        let v: Vec<f64> = (0..e.dim()).map(|_| r.random_range(-1.0..1.0)).collect();
        for damping in DAMPINGS {
            let (dense, dd) = solve_with(&DenseSolve, &e, damping, &v).unwrap();
            let (arrow, da) = solve_with(&BlockArrowSolve::<3>, &e, damping, &v).unwrap();
            let (cg, dc) = solve_with(&CG, &e, damping, &v).unwrap();
            assert_eq!((da.solver, dc.solver), (LinearSolver::BlockArrow, LinearSolver::ConjugateGradient));
            assert_eq!((dd.shift, da.shift, dc.shift), (damping.lambda(), damping.lambda(), damping.lambda()));
            assert!(rel_diff(&arrow, &dense) < 1e-10, "{m}+3x{k} {damping:?}: block-arrow");
            assert!(rel_diff(&cg, &dense) < 1e-9, "{m}+3x{k} {damping:?}: CG");
            // The runtime choice gives the same as the strategy types.
            let (lin, _) = solve_with(&LinearSolve::Dense, &e, damping, &v).unwrap();
            assert_eq!(lin, dense);
            let lcg = LinearSolve::ConjugateGradient { tol: CG.tol, max_iters: CG.max_iters };
            assert_eq!(solve_with(&lcg, &e, damping, &v).unwrap().0, cg);
            // Extreme eigenvalue reports bracket or estimate the truth consistently.
            let lo = min_eigenvalue(&e.h);
            assert!((dd.min_eigenvalue - lo).abs() < 1e-9 * lo.abs().max(1.0));
            assert!(da.min_eigenvalue >= lo - 1e-12 && dc.min_eigenvalue >= lo - 1e-12);
        }
    }
}

#[test]
fn near_singular_systems_agree_or_fail_together() {
    let mut r = rng(32);
    let (m, k) = (4, 6);
    // Shift the whole matrix so that its smallest eigenvalue is 1e-10 of the largest (a
    // diagonal shift keeps the block-arrow pattern).
    let h0 = random_arrow(&mut r, m, k, 0.0);
    let eig = h0.clone().symmetric_eigen().eigenvalues;
    let h = &h0 + DMatrix::identity(h0.nrows(), h0.nrows()) * (1e-10 * eig.max() - eig.min());
    let e = ArrowQuadratic { h, m };
    let v: Vec<f64> = (0..e.dim()).map(|_| r.random_range(-1.0..1.0)).collect();
    // Damped: well conditioned, every strategy agrees.
    for damping in [Damping::TrustRegion { lambda: 0.1 }, Damping::Guarded { lambda: 0.1 }] {
        let (dense, _) = solve_with(&DenseSolve, &e, damping, &v).unwrap();
        let (arrow, _) = solve_with(&BlockArrowSolve::<3>, &e, damping, &v).unwrap();
        let (cg, _) = solve_with(&CG, &e, damping, &v).unwrap();
        assert!(rel_diff(&arrow, &dense) < 1e-9 && rel_diff(&cg, &dense) < 1e-8, "{damping:?}");
        // |x| <= |v| / lambda: the damped solve's bound.
        let bound = DVector::from_column_slice(&v).norm() / 0.1;
        assert!(DVector::from_column_slice(&dense).norm() <= bound * (1.0 + 1e-12));
    }
    // Implicit: condition ~1e10, the factorisations still agree to ~cond * eps.
    let (dense, _) = solve_with(&DenseSolve, &e, Damping::Implicit, &v).unwrap();
    let (arrow, _) = solve_with(&BlockArrowSolve::<3>, &e, Damping::Implicit, &v).unwrap();
    assert!(rel_diff(&arrow, &dense) < 1e-4, "implicit near-singular: {}", rel_diff(&arrow, &dense));
    // Exactly singular (a zero row and column in a block): typed errors, never NaN.
    let mut hs = e.h.clone();
    let z = m + 3 * 2 + 1;
    for c in 0..e.dim() {
        hs[(z, c)] = 0.0;
        hs[(c, z)] = 0.0;
    }
    let es = ArrowQuadratic { h: hs, m };
    for r in [
        solve_with(&DenseSolve, &es, Damping::Implicit, &v).map(|_| ()),
        solve_with(&BlockArrowSolve::<3>, &es, Damping::Implicit, &v).map(|_| ()),
    ] {
        assert!(matches!(r, Err(WibergError::SingularHessian { .. })), "{r:?}");
    }
    // The layer keeps the error in the Solution and returns it from the backward pass.
    let layer =
        ArgminLayer { minimizer: Minimizer::None, polish: false, damping: Damping::Implicit, ..Default::default() }
            .with_linear_solve(BlockArrowSolve::<3>);
    let sol = layer.forward(&es, &v, Start::Point(&vec![0.0; es.dim()])).unwrap();
    assert!(matches!(sol.factor(), Err(WibergError::SingularHessian { .. })));
    assert_eq!(sol.report.diagnostics.solver, LinearSolver::NotFactorized);
    assert!(matches!(layer.backward(&es, &v, &sol, &v), Err(WibergError::SingularHessian { .. })));
    assert!(matches!(layer.jacobian(&es, &v, &sol), Err(WibergError::SingularHessian { .. })));
}

#[test]
fn indefinite_systems_under_guarded_match_dense_and_keep_the_bound() {
    let mut r = rng(33);
    for (m, k, shift) in [(3, 4, -0.5), (5, 8, -2.0)] {
        let e = ArrowQuadratic { h: random_arrow(&mut r, m, k, shift), m };
        let lo = min_eigenvalue(&e.h);
        assert!(lo < 0.0, "test needs an indefinite matrix");
        let v: Vec<f64> = (0..e.dim()).map(|_| r.random_range(-1.0..1.0)).collect();
        let damping = Damping::Guarded { lambda: 0.1 };
        let (dense, dd) = solve_with(&DenseSolve, &e, damping, &v).unwrap();
        let (arrow, da) = solve_with(&BlockArrowSolve::<3>, &e, damping, &v).unwrap();
        let (cg, dc) = solve_with(&CG, &e, damping, &v).unwrap();
        assert!((dd.shift - (0.1 - lo)).abs() < 1e-9);
        // Block-arrow: a lower bound of eig_min, so a shift at least the dense one.
        assert!(da.shift >= dd.shift - 1e-12 && da.shift - dd.shift < 1e-9 * dd.shift.max(1.0));
        // CG meets the negative curvature and falls back to the dense factorisation.
        assert_eq!(dc.solver, LinearSolver::Cholesky);
        assert_eq!(cg, dense);
        assert!(rel_diff(&arrow, &dense) < 1e-7, "{m}+3x{k}: {}", rel_diff(&arrow, &dense));
        let bound = DVector::from_column_slice(&v).norm() / 0.1;
        for x in [&dense, &arrow, &cg] {
            assert!(DVector::from_column_slice(x).norm() <= bound * (1.0 + 1e-9));
        }
        // Trust-region on an indefinite matrix: LU (dense), spectral path (block-arrow), and
        // CG's dense fallback all solve the same system.
        let tr = Damping::TrustRegion { lambda: 0.1 };
        let (dense, _) = solve_with(&DenseSolve, &e, tr, &v).unwrap();
        let (arrow, _) = solve_with(&BlockArrowSolve::<3>, &e, tr, &v).unwrap();
        let (cg, _) = solve_with(&CG, &e, tr, &v).unwrap();
        assert!(rel_diff(&arrow, &dense) < 1e-8 && rel_diff(&cg, &dense) < 1e-12);
    }
}

#[test]
fn cg_factor_keeps_its_dense_fallback_and_reports_it() {
    let mut r = rng(34);
    let e = ArrowQuadratic { h: random_arrow(&mut r, 2, 3, -1.0), m: 2 };
    let layer = ArgminLayer {
        minimizer: Minimizer::None,
        polish: false,
        damping: Damping::Guarded { lambda: 0.2 },
        ..Default::default()
    }
    .with_linear_solve(CG);
    let w = vec![0.3; e.dim()];
    let sol = layer.forward(&e, &w, Start::Point(&vec![0.0; e.dim()])).unwrap();
    let factor = sol.factor().unwrap();
    assert!(!factor.fell_back());
    assert_eq!(HessianFactor::<ArrowQuadratic>::diagnostics(factor).solver, LinearSolver::NotFactorized);
    let jac = layer.jacobian(&e, &w, &sol).unwrap();
    assert!(factor.fell_back(), "the Jacobian's first column met negative curvature");
    assert_eq!(HessianFactor::<ArrowQuadratic>::diagnostics(factor).solver, LinearSolver::Cholesky);
    let dense = ArgminLayer { linear_solve: LinearSolve::Dense, ..layer.with_linear_solve(LinearSolve::Dense) };
    let sol_d = dense.forward(&e, &w, Start::Point(&vec![0.0; e.dim()])).unwrap();
    assert!(matches!(sol_d.factor(), Ok(LinearFactor::Dense(_))));
    assert_eq!(jac, dense.jacobian(&e, &w, &sol_d).unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Dense: `(H + s I) x = v` holds to rounding for any positive definite `H`, and the
    /// Jacobian of the quadratic energy is the inverse.
    #[test]
    fn dense_solves_what_it_factorised(seed in 0u64..10_000, m in 1usize..5, k in 0usize..5, shift in 1e-3f64..2.0, lambda in 1e-3f64..1.0) {
        let mut r = rng(seed);
        let e = ArrowQuadratic { h: random_arrow(&mut r, m, k, shift), m };
        let v: Vec<f64> = (0..e.dim()).map(|_| r.random_range(-1.0..1.0)).collect();
        for damping in [Damping::Implicit, Damping::TrustRegion { lambda }, Damping::Guarded { lambda }] {
            let (x, d) = solve_with(&DenseSolve, &e, damping, &v).unwrap();
            let a = &e.h + DMatrix::identity(e.dim(), e.dim()) * d.shift;
            let res = &a * DVector::from_column_slice(&x) - DVector::from_column_slice(&v);
            prop_assert!(res.norm() <= 1e-10 * (1.0 + a.norm() * DVector::from_column_slice(&x).norm()), "{damping:?}: {}", res.norm());
        }
    }

    /// CG: agrees with dense to its tolerance times the condition number on positive definite
    /// systems, and with dense exactly after a negative-curvature fallback.
    #[test]
    fn cg_agrees_with_dense(seed in 0u64..10_000, m in 1usize..5, k in 0usize..5, shift in -1.0f64..2.0, lambda in 0.05f64..1.0) {
        let mut r = rng(seed);
        let e = ArrowQuadratic { h: random_arrow(&mut r, m, k, shift), m };
        let v: Vec<f64> = (0..e.dim()).map(|_| r.random_range(-1.0..1.0)).collect();
        for damping in [Damping::TrustRegion { lambda }, Damping::Guarded { lambda }] {
            let dense = solve_with(&DenseSolve, &e, damping, &v);
            let cg = solve_with(&CG, &e, damping, &v);
            match (dense, cg) {
                (Ok((xd, dd)), Ok((xc, dc))) => {
                    if dc.solver == LinearSolver::ConjugateGradient {
                        // No negative curvature met: CG solved with the shift lambda, i.e. the
                        // trust-region system (the documented limit of Guarded with CG).
                        if let Ok((xt, dt)) = solve_with(&DenseSolve, &e, Damping::TrustRegion { lambda }, &v) {
                        prop_assert_eq!(dc.shift, dt.shift);
                        prop_assert!(rel_diff(&xc, &xt) < 1e-12 * dt.condition.max(1.0) * 10.0, "{damping:?}: {}", rel_diff(&xc, &xt));
}
if dd.min_eigenvalue >= 0.0 {
                            prop_assert!(rel_diff(&xc, &xd) < 1e-12 * dd.condition.max(1.0) * 10.0);
                        }
                    } else {
                        prop_assert_eq!(xc, xd);
                    }
                }
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "dense {:?} vs CG {:?}", a.map(|x| x.1), b.map(|x| x.1)),
            }
        }
    }
}

/// A tiny bundle-adjustment-like energy: `k` 3-D points `p_j` (the blocks) seen directly and
/// through a shared similarity `x -> s x + t` (the border `z = (s, t)`, 4 unknowns), with
/// Cauchy losses of learned scale `c = w[0]` and a prior of learned weight `mu = w[1]` pulling
/// `z` to `(1, 0, 0, 0)`:
/// `E = sum_j rho(|p_j - a_j|^2) + rho(|s p_j + t - b_j|^2) + mu/2 |z - z0|^2`,
/// `rho(r2) = c^2/2 ln(1 + r2 / c^2)`. Points interact only through `z`: block-arrow Hessian.
struct BundleLike {
    a: Vec<[f64; 3]>,
    b: Vec<[f64; 3]>,
}

impl DualEnergy for BundleLike {
    fn dim(&self) -> usize {
        4 + 3 * self.a.len()
    }
    fn num_params(&self) -> usize {
        2
    }
    fn energy<D: DualScalar>(&self, y: &[D], w: &[D]) -> D {
        let c2 = w[0] * w[0];
        let rho = |r2: D| c2 * 0.5 * (r2 / c2).ln_1p();
        let (s, t) = (y[0], &y[1..4]);
        let mut e = w[1] * 0.5 * ((s - 1.0) * (s - 1.0) + t[0] * t[0] + t[1] * t[1] + t[2] * t[2]);
        for (j, (a, b)) in self.a.iter().zip(&self.b).enumerate() {
            let p = &y[4 + 3 * j..7 + 3 * j];
            let mut r2a = D::from(0.0);
            let mut r2b = D::from(0.0);
            for d in 0..3 {
                let ra = p[d] - a[d];
                let rb = s * p[d] + t[d] - b[d];
                r2a += ra * ra;
                r2b += rb * rb;
            }
            e += rho(r2a) + rho(r2b);
        }
        e
    }
}

/// [`BundleLike`] with its Hessian also stated in block-arrow form.
struct BundleArrow(AutoDiff<BundleLike>);

impl Energy for BundleArrow {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn num_params(&self) -> usize {
        self.0.num_params()
    }
    fn value(&self, y: &[f64], w: &[f64]) -> f64 {
        self.0.value(y, w)
    }
    fn gradient(&self, y: &[f64], w: &[f64], g: &mut [f64]) -> f64 {
        self.0.gradient(y, w, g)
    }
    fn hessian(&self, y: &[f64], w: &[f64], h: &mut DMatrix<f64>) {
        self.0.hessian(y, w, h)
    }
    fn mixed_vjp(&self, y: &[f64], w: &[f64], u: &[f64], out: &mut [f64]) {
        self.0.mixed_vjp(y, w, u, out)
    }
}

impl BlockArrowHessian<3> for BundleArrow {
    fn border_dim(&self) -> usize {
        4
    }
    fn block_arrow_hessian(&self, y: &[f64], w: &[f64], h: &mut BlockArrow<3>) {
        let n = self.dim();
        let mut dense = DMatrix::zeros(n, n);
        self.0.hessian(y, w, &mut dense);
        // Asserts the pattern: the energy really is block-arrow.
        fill_block_arrow(&dense, 4, h);
    }
}

fn bundle(seed: u64, k: usize) -> (BundleArrow, Vec<f64>) {
    let mut r = rng(seed);
    let (s, t) = (1.3, [0.4, -0.2, 0.7]);
    let mut a = Vec::new();
    let mut b = Vec::new();
    let mut start = vec![1.0, 0.0, 0.0, 0.0];
    for _ in 0..k {
        let p: [f64; 3] = std::array::from_fn(|_| r.random_range(-2.0..2.0));
        a.push(std::array::from_fn(|d| p[d] + 0.05 * r.random_range(-1.0..1.0)));
        b.push(std::array::from_fn(|d| s * p[d] + t[d] + 0.05 * r.random_range(-1.0..1.0)));
        start.extend_from_slice(&p);
    }
    (BundleArrow(AutoDiff::new(BundleLike { a, b })), start)
}

/// `-M^T (H + s I)^-1 v` with `H` and `M` by central differences of the gradient.
fn finite_difference_damped_gradient(e: &BundleArrow, y: &[f64], w: &[f64], shift: f64, v: &[f64]) -> Vec<f64> {
    let (n, p) = (e.dim(), e.num_params());
    let grad = |y: &[f64], w: &[f64]| {
        let mut g = vec![0.0; n];
        e.gradient(y, w, &mut g);
        g
    };
    let step = 1e-5;
    let mut h = DMatrix::zeros(n, n);
    let mut yp = y.to_vec();
    for j in 0..n {
        yp[j] = y[j] + step;
        let gp = grad(&yp, w);
        yp[j] = y[j] - step;
        let gm = grad(&yp, w);
        yp[j] = y[j];
        for i in 0..n {
            h[(i, j)] = (gp[i] - gm[i]) / (2.0 * step);
        }
    }
    let mut mm = DMatrix::zeros(n, p);
    let mut wp = w.to_vec();
    for j in 0..p {
        wp[j] = w[j] + step;
        let gp = grad(y, &wp);
        wp[j] = w[j] - step;
        let gm = grad(y, &wp);
        wp[j] = w[j];
        for i in 0..n {
            mm[(i, j)] = (gp[i] - gm[i]) / (2.0 * step);
        }
    }
    let h = (&h + h.transpose()) * 0.5 + DMatrix::identity(n, n) * shift;
    let x = h.lu().solve(&DVector::from_column_slice(v)).unwrap_or_else(|| DVector::from_element(n, f64::NAN));
    (-(mm.transpose() * x)).as_slice().to_vec()
}

#[test]
fn block_arrow_layer_gradient_matches_dense_and_finite_differences() {
    let (e, start) = bundle(35, 5);
    let w = [0.8, 0.5];
    let target: Vec<f64> = start.iter().map(|v| 0.9 * v + 0.1).collect();
    let loss = |y: &[f64]| {
        let l = y.iter().zip(&target).map(|(a, b)| (a - b).powi(2)).sum::<f64>();
        (l, y.iter().zip(&target).map(|(a, b)| 2.0 * (a - b)).collect::<Vec<f64>>())
    };
    for damping in DAMPINGS {
        let dense = ArgminLayer {
            damping,
            minimizer: Minimizer::TrustRegionNewton(NewtonConfig::default()),
            ..Default::default()
        };
        let arrow = dense.with_linear_solve(BlockArrowSolve::<3>);
        let s1 = dense.forward(&e, &w, Start::Point(&start)).unwrap();
        let s2 = arrow.forward(&e, &w, Start::Point(&start)).unwrap();
        assert_eq!(s2.report.diagnostics.solver, LinearSolver::BlockArrow);
        assert!(s2.report.final_grad_norm < 1e-10, "{damping:?}: {}", s2.report.final_grad_norm);
        assert!(rel_diff(&s2.y, &s1.y) < 1e-12, "{damping:?}: y*");
        let (_, v) = loss(&s2.y);
        let b1 = dense.backward(&e, &w, &s1, &v).unwrap();
        let b2 = arrow.backward(&e, &w, &s2, &v).unwrap();
        assert!(b2.grad_w.iter().any(|g| g.abs() > 1e-3), "a gradient that means something: {:?}", b2.grad_w);
        assert!(rel_diff(&b2.grad_w, &b1.grad_w) < 1e-10, "{damping:?}: {:?} vs {:?}", b2.grad_w, b1.grad_w);
        // Finite differences of H and M in the damped formula (every mode).
        let fd = finite_difference_damped_gradient(&e, s2.linearization_point(), &w, b2.diagnostics.shift, &v);
        assert!(rel_diff(&b2.grad_w, &fd) < 1e-6, "{damping:?}: {:?} vs FD {fd:?}", b2.grad_w);
        // The positive definite minimum: guarded shifts by lambda, like trust-region.
        assert_eq!(b2.diagnostics.shift, damping.lambda());
        // Jacobian: factorise once, p columns solved in place; the same as the dense one.
        let j1 = dense.jacobian(&e, &w, &s1).unwrap();
        let j2 = arrow.jacobian(&e, &w, &s2).unwrap();
        assert!((&j2 - &j1).abs().max() < 1e-10 * j1.abs().max());
    }
    // Implicit: finite differences of the whole forward map.
    let implicit = ArgminLayer {
        damping: Damping::Implicit,
        minimizer: Minimizer::TrustRegionNewton(NewtonConfig::default()),
        ..Default::default()
    }
    .with_linear_solve(BlockArrowSolve::<3>);
    let check = gradcheck(&implicit, &e, &w, Start::Point(&start), loss, 1e-6).unwrap();
    assert!(check.scaled_error < 1e-6, "{check:?}");
}
