//! Properties checked by the fuzz targets (shared by the libFuzzer targets in `fuzz_targets/`
//! and the stable driver in `examples/stable_driver.rs`).
//!
//! Every check decodes an arbitrary byte string into library inputs (finite, non-finite,
//! huge, tiny, zero, negative, wrong lengths) and asserts:
//! * no panic (a panic is the crash the fuzzer reports),
//! * no `Ok` result holding a NaN or an infinity,
//! * the documented guarantees that hold for every input (the guarded bound
//!   `|(H + s I)^-1 v| <= |v| / lambda`, parameters untouched by a refused optimiser step, box
//!   projection inside the box).
//!
//! Hangs are caught by libFuzzer's `-timeout` (and by the stable driver's slow-input report).
#![deny(missing_docs)]

mod parsers;
pub use parsers::{check_pose_npy, check_ransac_points, check_vot_dataset, check_vot_text};

use arbitrary::{Result, Unstructured};
use nalgebra::{DMatrix, DVector};
use wiberg::autodiff::DualScalar;
use wiberg::least_squares::{IrlsConfig, LeastSquares, RobustLeastSquares};
use wiberg::minimize::LbfgsBackend;
use wiberg::optim::{Adam, AdamEpsilon, Asgd, BoxConstraints, Optimizer, Sgd};
use wiberg::{
    ArgminLayer, AutoDiff, DampedSystem, Damping, DualEnergy, Energy, LbfgsConfig, LinearSolve, Linearization,
    Minimizer, NewtonConfig, RbfMixture, Solution, Start,
};

/// Values that break naive floating-point code.
const SPECIAL: [f64; 18] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.1,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    1e300,
    -1e300,
    1e-300,
    -1e-300,
    f64::MAX,
    f64::MIN,
    f64::MIN_POSITIVE,
    5e-324,
    1e154,
    1e-154,
];

/// One float: mostly moderate values (so that the deep code is reached), sometimes a special
/// value, sometimes raw bits.
fn float(u: &mut Unstructured<'_>) -> Result<f64> {
    let tag: u8 = u.arbitrary()?;
    Ok(match tag % 8 {
        0 => SPECIAL[usize::from(u.arbitrary::<u8>()?) % SPECIAL.len()],
        1 => f64::from_bits(u.arbitrary()?),
        2 => {
            // Wide log-uniform magnitudes, both signs.
            let e: i16 = u.int_in_range(-320..=308)?;
            let m: u8 = u.arbitrary()?;
            let s = if m & 1 == 0 { 1.0 } else { -1.0 };
            s * (1.0 + f64::from(m) / 256.0) * 10f64.powi(i32::from(e))
        }
        _ => f64::from(u.arbitrary::<i16>()?) / 256.0,
    })
}

/// A positive moderate float (widths, damping) with occasional special values.
fn positive(u: &mut Unstructured<'_>) -> Result<f64> {
    let tag: u8 = u.arbitrary()?;
    Ok(if tag.is_multiple_of(4) { float(u)? } else { 0.05 + f64::from(u.arbitrary::<u16>()?) / 2048.0 })
}

fn floats(u: &mut Unstructured<'_>, len: usize) -> Result<Vec<f64>> {
    (0..len).map(|_| float(u)).collect()
}

/// A length that is usually `expected` and sometimes wrong.
fn length(u: &mut Unstructured<'_>, expected: usize) -> Result<usize> {
    Ok(if u.ratio(1, 16)? { u.int_in_range(0..=expected + 2)? } else { expected })
}

fn all_finite(v: &[f64]) -> bool {
    v.iter().all(|x| x.is_finite())
}

/// Euclidean norm without overflow (entries near 1e300 are legal).
fn norm(v: &[f64]) -> f64 {
    let m = v.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    if m == 0.0 || !m.is_finite() {
        return m;
    }
    m * v.iter().map(|x| (x / m) * (x / m)).sum::<f64>().sqrt()
}

fn damping(u: &mut Unstructured<'_>) -> Result<Damping> {
    Ok(match u.int_in_range(0..=2)? {
        0 => Damping::Implicit,
        1 => Damping::TrustRegion { lambda: positive(u)? },
        _ => Damping::Guarded { lambda: positive(u)? },
    })
}

fn layer(u: &mut Unstructured<'_>) -> Result<ArgminLayer> {
    let minimizer = match u.int_in_range(0..=3)? {
        0 => Minimizer::None,
        1 => Minimizer::TrustRegionNewton(NewtonConfig {
            max_iters: u.int_in_range(0..=60)?,
            grad_tol: if u.ratio(1, 8)? { float(u)? } else { 1e-10 },
            initial_mu: if u.ratio(1, 8)? { float(u)? } else { 1e-3 },
        }),
        _ => Minimizer::Lbfgs(LbfgsConfig {
            max_iters: u.int_in_range(0..=120)?,
            memory: u.int_in_range(0..=9)?,
            grad_tol: if u.ratio(1, 8)? { float(u)? } else { 1e-10 },
            max_evals: u.int_in_range(0..=1200)?,
            backend: if u.ratio(1, 4)? { LbfgsBackend::Argmin } else { LbfgsBackend::Native },
        }),
    };
    let linear_solve = if u.ratio(1, 5)? {
        LinearSolve::ConjugateGradient {
            tol: if u.ratio(1, 4)? { float(u)? } else { 1e-10 },
            max_iters: u.int_in_range(0..=50)?,
        }
    } else {
        LinearSolve::Dense
    };
    let linearization = if u.ratio(1, 2)? { Linearization::AtSolution } else { Linearization::PolishStart };
    Ok(ArgminLayer { minimizer, polish: u.arbitrary()?, damping: damping(u)?, linear_solve, linearization })
}

/// Checks an `Ok` forward pass, then backward and Jacobian on it.
fn check_solution<E: Energy>(
    u: &mut Unstructured<'_>,
    lay: &ArgminLayer,
    e: &E,
    w: &[f64],
    sol: &Solution,
) -> Result<()> {
    let n = e.dim();
    assert_eq!(sol.y.len(), n);
    assert!(all_finite(&sol.y), "Ok forward with non-finite y*: {:?}", sol.y);
    assert!(all_finite(sol.linearization_point()), "non-finite linearisation point");
    let r = &sol.report;
    assert!(r.energy.is_finite(), "Ok forward with non-finite energy {}", r.energy);
    assert!(r.final_grad_norm.is_finite() && r.grad_norm.is_finite(), "Ok forward with non-finite |grad|: {r:?}");
    let vlen = length(u, n)?;
    let v = floats(u, vlen)?;
    match lay.backward(e, w, sol, &v) {
        Ok(b) => {
            assert!(vlen == n && all_finite(&v), "backward accepted a bad dl/dy*: {v:?}");
            assert!(all_finite(&b.grad_w), "Ok backward with non-finite dl/dw: {:?}", b.grad_w);
            assert!(all_finite(&b.u), "Ok backward with non-finite u: {:?}", b.u);
            assert_eq!(b.grad_w.len(), e.num_params());
            let d = &b.diagnostics;
            assert!(d.shift.is_finite() && d.shift >= 0.0, "bad shift {d:?}");
            if let Damping::Guarded { lambda } = lay.damping {
                // The guarded guarantee: the solved matrix is >= lambda I, so |u| <= |v| / lambda,
                // up to the rounding of the eigenvalues (relative to |H|).
                let scale = d.max_eigenvalue.abs().max(d.min_eigenvalue.abs());
                if d.eigen_exact && scale.is_finite() && scale * 1e-9 < lambda {
                    let bound = norm(&v) / lambda;
                    assert!(
                        norm(&b.u) <= bound * (1.0 + 1e-6) + 1e-300,
                        "guarded bound broken: |u| = {} > {bound} ({d:?})",
                        norm(&b.u)
                    );
                }
            }
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
    if let Ok(jac) = lay.jacobian(e, w, sol) {
        assert!(all_finite(jac.as_slice()), "Ok Jacobian with non-finite entries");
        assert_eq!(jac.shape(), (n, e.num_params()));
    }
    Ok(())
}

fn forward_and_check<E: Energy>(u: &mut Unstructured<'_>, lay: &ArgminLayer, e: &E, w: &[f64]) -> Result<()> {
    let n = e.dim();
    let use_seeds = u.arbitrary::<bool>()?;
    let pts = if use_seeds {
        let m = u.int_in_range(0..=12)?;
        let ragged = usize::from(u.ratio(1, 16)?);
        floats(u, m * n.max(1) + ragged)?
    } else {
        let len = length(u, n)?;
        floats(u, len)?
    };
    let start = if use_seeds { Start::Seeds(&pts) } else { Start::Point(&pts) };
    match lay.forward(e, w, start) {
        Ok(sol) => {
            assert!(all_finite(w) && all_finite(&pts), "forward accepted non-finite w or start");
            check_solution(u, lay, e, w, &sol)?;
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
    Ok(())
}

/// `RbfMixture` with arbitrary centres, index maps, widths and weights in 1-3 dimensions,
/// through forward, backward and Jacobian of an arbitrary layer configuration.
pub fn check_rbf_layer(data: &[u8]) {
    let _ = rbf_layer(&mut Unstructured::new(data));
}

fn rbf_layer(u: &mut Unstructured<'_>) -> Result<()> {
    let dim = u.int_in_range(0..=3)?;
    let k = u.int_in_range(0..=24)?;
    let p = u.int_in_range(0..=5)?;
    let clen = if u.ratio(1, 16)? { u.int_in_range(0..=k * dim.max(1) + 1)? } else { k * dim };
    let centers = floats(u, clen)?;
    let widx_len = length(u, k)?;
    let width_index = (0..widx_len).map(|_| u.int_in_range(0..=p)).collect::<Result<Vec<_>>>()?;
    let weight_index = if u.arbitrary()? {
        let l = length(u, k)?;
        Some((0..l).map(|_| u.int_in_range(0..=p)).collect::<Result<Vec<_>>>()?)
    } else {
        None
    };
    let e = match RbfMixture::new(dim, centers, width_index, weight_index, p) {
        Ok(e) => e,
        Err(err) => {
            assert!(!err.to_string().is_empty());
            return Ok(());
        }
    };
    let wlen = length(u, p)?;
    let w: Vec<f64> = (0..wlen).map(|_| positive(u)).collect::<Result<_>>()?;
    let lay = layer(u)?;
    if e.validate_params(&w).is_ok() {
        assert!(all_finite(&w));
    }
    forward_and_check(u, &lay, &e, &w)
}

/// An energy written over dual numbers whose shape is chosen by the fuzzer: smooth terms, terms
/// with singular derivatives (`sqrt` at 0, `ln` at 0), couplings and weights from `w`.
#[derive(Debug, Clone)]
struct FuzzEnergy {
    dim: usize,
    params: usize,
    data: Vec<f64>,
    terms: Vec<u8>,
}

impl DualEnergy for FuzzEnergy {
    fn dim(&self) -> usize {
        self.dim
    }
    fn num_params(&self) -> usize {
        self.params
    }
    fn energy<D: DualScalar>(&self, y: &[D], w: &[D]) -> D {
        let mut e = D::from(0.0);
        let wp = |i: usize| if w.is_empty() { D::from(1.0) } else { w[i % w.len()] };
        let c = |i: usize| if self.data.is_empty() { 0.0 } else { self.data[i % self.data.len()] };
        for (t, &kind) in self.terms.iter().enumerate() {
            let i = t % y.len().max(1);
            if y.is_empty() {
                break;
            }
            let yi = y[i];
            let yj = y[(i + 1) % y.len()];
            let d = yi - c(t);
            e += match kind % 9 {
                0 => wp(t) * d * d,
                1 => -wp(t) * (-(d * d) * wp(t + 1) * wp(t + 1)).exp(),
                2 => (yi * yi + wp(t) * wp(t)).sqrt(),
                3 => (yi * yi * wp(t) * wp(t)).ln(),
                4 => wp(t) * yi * yj,
                5 => (d * wp(t)).sin() + d * d * 0.5,
                6 => d.powi(4) * wp(t + 1),
                7 => (d * d * 0.5 + 1.0).ln() * wp(t),
                _ => d.tanh() * wp(t) + yi * yi * D::from(c(t + 1)),
            };
        }
        e
    }
}

/// `AutoDiff` energies (1-5 unknowns, 0-9 parameters, so every chunk width is hit) through
/// an arbitrary layer.
pub fn check_autodiff_layer(data: &[u8]) {
    let _ = autodiff_layer(&mut Unstructured::new(data));
}

fn autodiff_layer(u: &mut Unstructured<'_>) -> Result<()> {
    let dim = u.int_in_range(1..=5)?;
    let params = u.int_in_range(0..=9)?;
    let nd = u.int_in_range(0..=6)?;
    let data = floats(u, nd)?;
    let nt = u.int_in_range(1..=6)?;
    let terms = (0..nt).map(|_| u.arbitrary::<u8>()).collect::<Result<Vec<_>>>()?;
    let e = AutoDiff::new(FuzzEnergy { dim, params, data, terms });
    let wlen = length(u, params)?;
    let w = floats(u, wlen)?;
    let lay = layer(u)?;
    forward_and_check(u, &lay, &e, &w)
}

/// Damped (weighted) least squares and pseudo-Huber IRLS: solve and backward; the robust
/// energy also through the generic layer.
pub fn check_least_squares(data: &[u8]) {
    let _ = least_squares(&mut Unstructured::new(data));
}

fn matrix(u: &mut Unstructured<'_>, m: usize, n: usize) -> Result<DMatrix<f64>> {
    Ok(DMatrix::from_vec(m, n, floats(u, m * n)?))
}

fn least_squares(u: &mut Unstructured<'_>) -> Result<()> {
    let m = u.int_in_range(0..=7)?;
    let n = u.int_in_range(0..=4)?;
    let a = matrix(u, m, n)?;
    let blen = length(u, m)?;
    let b = DVector::from_vec(floats(u, blen)?);
    let damp = damping(u)?;
    if u.arbitrary()? {
        let mut ls = match LeastSquares::new(a, b) {
            Ok(ls) => ls,
            Err(_) => return Ok(()),
        };
        if u.arbitrary()? {
            let l = length(u, m)?;
            ls = match ls.with_weights(DVector::from_vec(floats(u, l)?)) {
                Ok(ls) => ls,
                Err(_) => return Ok(()),
            };
        }
        if u.arbitrary()? {
            ls = match ls.with_mu(float(u)?) {
                Ok(ls) => ls,
                Err(_) => return Ok(()),
            };
        }
        if let Ok(sol) = ls.solve(damp) {
            assert!(all_finite(sol.y.as_slice()), "Ok least squares with non-finite y: {:?}", sol.y);
            assert!(all_finite(sol.residual.as_slice()), "non-finite residual");
            assert!(sol.energy.is_finite(), "non-finite energy {}", sol.energy);
            let l = length(u, n)?;
            let v = DVector::from_vec(floats(u, l)?);
            if let Ok(g) = ls.backward(&sol, &v) {
                assert!(l == n && all_finite(v.as_slice()), "backward accepted a bad v");
                for part in [g.a.as_slice(), g.b.as_slice(), g.weights.as_slice(), g.u.as_slice(), &[g.mu]] {
                    assert!(all_finite(part), "Ok least-squares backward with non-finite entries: {g:?}");
                }
            }
        }
        return Ok(());
    }
    let group = u.int_in_range(0..=3)?;
    let delta = positive(u)?;
    let mut robust = match RobustLeastSquares::new(a, b, group, delta) {
        Ok(r) => r,
        Err(_) => return Ok(()),
    };
    if u.arbitrary()? {
        let q = u.int_in_range(0..=3)?;
        let qa = matrix(u, q, n)?;
        let qb = DVector::from_vec(floats(u, q)?);
        robust = match robust.with_quadratic(qa, qb) {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
    }
    if u.arbitrary()? {
        robust = match robust.with_mu(float(u)?) {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
    }
    let cfg = IrlsConfig {
        max_iters: u.int_in_range(0..=60)?,
        grad_tol: if u.ratio(1, 4)? { float(u)? } else { 1e-10 },
        step_tol: if u.ratio(1, 4)? { float(u)? } else { 1e-14 },
    };
    if let Ok(sol) = robust.solve(&cfg, damp) {
        assert!(all_finite(sol.y.as_slice()), "Ok IRLS with non-finite y: {:?}", sol.y);
        assert!(sol.report.energy.is_finite() && sol.report.grad_norm.is_finite(), "{:?}", sol.report);
        let l = length(u, n)?;
        let v = DVector::from_vec(floats(u, l)?);
        if let Ok(g) = robust.backward(&sol, &v) {
            assert!(all_finite(&g.to_flat()), "Ok IRLS backward with non-finite entries: {g:?}");
            assert!(all_finite(g.u.as_slice()));
        }
    }
    let (energy, w) = robust.to_energy();
    let lay = layer(u)?;
    forward_and_check(u, &lay, &energy, &w)
}

/// `DampedSystem::factorize` on arbitrary (also non-square, empty, large) matrices, then
/// solves: diagnostics finite, solutions finite, the guarded bound, and small residuals when
/// the reported condition number is moderate.
pub fn check_damped_system(data: &[u8]) {
    let _ = damped_system(&mut Unstructured::new(data));
}

fn damped_system(u: &mut Unstructured<'_>) -> Result<()> {
    let h = match u.int_in_range(0..=7)? {
        0 => {
            let r = u.int_in_range(0..=3)?;
            let c = u.int_in_range(0..=3)?;
            matrix(u, r, c)?
        }
        1 => {
            // Beyond the exact-eigenvalue size: a banded symmetric matrix from a few numbers.
            let n = u.int_in_range(65..=72)?;
            let diag = floats(u, 4)?;
            let off = float(u)?;
            DMatrix::from_fn(n, n, |i, j| {
                if i == j {
                    diag[i % 4]
                } else if i.abs_diff(j) == 1 {
                    off
                } else {
                    0.0
                }
            })
        }
        _ => {
            let n = u.int_in_range(1..=6)?;
            let mut h = matrix(u, n, n)?;
            if u.ratio(3, 4)? {
                h = 0.5 * (&h + h.transpose());
            }
            h
        }
    };
    let damp = damping(u)?;
    let sys = match DampedSystem::factorize(h.clone(), damp) {
        Ok(s) => s,
        Err(err) => {
            assert!(!err.to_string().is_empty());
            return Ok(());
        }
    };
    let n = h.nrows();
    assert!(h.is_square() && n > 0 && all_finite(h.as_slice()), "factorised a bad matrix {h}");
    let d = *sys.diagnostics();
    assert!(d.shift.is_finite() && d.shift >= 0.0, "{d:?}");
    assert!(d.min_eigenvalue.is_finite() && d.max_eigenvalue.is_finite(), "non-finite eigenvalues in Ok: {d:?}");
    assert!(d.condition.is_finite() && d.condition > 0.0, "non-finite condition in Ok: {d:?}");
    for _ in 0..2 {
        let l = length(u, n)?;
        let v = floats(u, l)?;
        let Ok(x) = sys.solve(&v) else { continue };
        assert!(l == n && all_finite(&v), "solve accepted a bad right-hand side");
        assert!(all_finite(&x), "Ok solve with non-finite x");
        if let Damping::Guarded { lambda } = damp {
            let scale = d.max_eigenvalue.abs().max(d.min_eigenvalue.abs());
            if d.eigen_exact && scale * 1e-9 < lambda {
                let bound = norm(&v) / lambda;
                assert!(
                    norm(&x) <= bound * (1.0 + 1e-6) + 1e-300,
                    "guarded bound: |x| = {} > {bound}, {d:?}",
                    norm(&x)
                );
            }
        }
        let hs = 0.5 * (&h + h.transpose()) + DMatrix::identity(n, n) * d.shift;
        let hnorm = hs.norm();
        if d.eigen_exact && d.condition < 1e6 && hnorm < 1e100 && hnorm > 1e-100 && norm(&x) < 1e100 && norm(&v) < 1e200
        {
            let xv = DVector::from_column_slice(&x);
            let res = norm((&hs * &xv - DVector::from_column_slice(&v)).as_slice());
            let scale = hnorm * norm(&x) + norm(&v);
            assert!(res <= 1e-7 * scale || norm(&v) / hnorm < 1e-280, "residual {res} vs scale {scale}: {d:?}");
        }
    }
    Ok(())
}

/// SGD, ASGD and Adam with arbitrary settings and gradients; box constraints.
pub fn check_optimizers(data: &[u8]) {
    let _ = optimizers(&mut Unstructured::new(data));
}

fn optimizers(u: &mut Unstructured<'_>) -> Result<()> {
    let p = u.int_in_range(1..=4)?;
    let mut params = floats(u, p)?;
    // Every step is committed only when the new parameters and state are finite, so an `Ok`
    // step always leaves finite parameters (whatever the settings); invalid settings
    // (ASGD alpha < 0 or lambd * lr >= 2, betas outside [0, 1), ...) are refused up front.
    let lr = positive(u)?;
    let desc;
    let opt: Option<Box<dyn Optimizer>> = match u.int_in_range(0..=3)? {
        0 => {
            let o = Sgd::new(lr, float(u)?.abs().min(2.0)).ok();
            desc = format!("{o:?}");
            o.map(|o| Box::new(o) as Box<dyn Optimizer>)
        }
        1 => {
            let o = Sgd::new(lr, 0.9).ok().map(Sgd::nesterov);
            desc = format!("{o:?}");
            o.map(|o| Box::new(o) as Box<dyn Optimizer>)
        }
        2 => {
            let (lambd, alpha, t0) = (float(u)?, float(u)?, float(u)?);
            let o = Asgd::new(lr, lambd, alpha, t0).ok();
            if o.is_some() {
                assert!(alpha >= 0.0 && lambd >= 0.0 && lambd * lr < 2.0, "ASGD accepted {lr} {lambd} {alpha} {t0}");
            }
            desc = format!("{o:?}");
            o.map(|o| Box::new(o) as Box<dyn Optimizer>)
        }
        _ => {
            let mode = if u.arbitrary()? { AdamEpsilon::PyTorch } else { AdamEpsilon::TensorFlow };
            let (b1, b2, eps) = (float(u)?, float(u)?, positive(u)?);
            let o = Adam::with_params(lr, b1, b2, eps, mode).ok();
            desc = format!("{o:?}");
            o.map(|o| Box::new(o) as Box<dyn Optimizer>)
        }
    };
    let Some(mut opt) = opt else { return Ok(()) };
    let bounds = if u.arbitrary()? {
        let lo = floats(u, p)?;
        let hi = floats(u, p)?;
        BoxConstraints::new(lo, hi).ok()
    } else {
        None
    };
    let steps = u.int_in_range(1..=30)?;
    for _ in 0..steps {
        let l = length(u, p)?;
        let g = floats(u, l)?;
        let before = params.clone();
        match opt.step(&mut params, &g) {
            Ok(()) => {
                assert!(l == p && all_finite(&g), "optimiser accepted a bad gradient {g:?}");
                assert!(
                    all_finite(&params),
                    "{desc}: Ok step left non-finite parameters: {before:?} -> {params:?} with gradient {g:?}"
                );
            }
            Err(_) => {
                let same = before.iter().zip(&params).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "a refused step changed the parameters: {before:?} -> {params:?}");
            }
        }
        if let Some(b) = &bounds {
            let unprojected = params.clone();
            if b.project(&mut params).is_ok() {
                assert!(all_finite(&params) || !all_finite(&unprojected), "projection made {unprojected:?} non-finite");
            }
        }
    }
    Ok(())
}
