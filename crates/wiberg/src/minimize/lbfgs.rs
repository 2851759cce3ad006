//! L-BFGS with a strong-Wolfe line search, with two back-ends: a dedicated one (default) and
//! the `argmin` crate's (`LBFGS` + `MoreThuenteLineSearch`).
//!
//! Why a dedicated back-end exists: the paper's experiments run tens of thousands of tiny
//! solves (1-D and 2-D, ~10 iterations). argmin evaluates cost and gradient separately (no
//! fused evaluation), sets up an executor and clones `Vec`s per call; measured here that is
//! about 10 of the 28 us of a 1-D solve, which alone breaks the 30 us budget for a whole
//! RANSAC training sample (seeds + solve + backward). argmin's line search also has no
//! iteration limit (it can loop for ever, `../shared/DEPENDENCIES.md` pitfall 1), which we
//! guard with an evaluation budget. `cargo bench -p wiberg` compares both back-ends.

use super::{dot, norm, MinimizeOutcome, StopReason};
use crate::energy::Energy;
use crate::error::WibergError;
use crate::Result;
use serde::{Deserialize, Serialize};

/// Which L-BFGS implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LbfgsBackend {
    /// The dedicated implementation in this module (fused value + gradient, no allocation per
    /// iteration beyond the history).
    #[default]
    Native,
    /// argmin's `LBFGS` with `MoreThuenteLineSearch`, guarded by the evaluation budget. Needs
    /// the crate feature `argmin` (off by default); without it, choosing this back-end is
    /// [`crate::WibergError::InvalidArgument`].
    Argmin,
}

/// L-BFGS settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LbfgsConfig {
    /// Maximum number of iterations (the RANSAC experiment uses 10).
    pub max_iters: usize,
    /// History length.
    pub memory: usize,
    /// Stop when `|grad E| <= grad_tol`.
    pub grad_tol: f64,
    /// Maximum number of energy + gradient evaluations (line searches included): the guard
    /// that makes every solve terminate.
    pub max_evals: usize,
    /// Implementation.
    pub backend: LbfgsBackend,
}

impl Default for LbfgsConfig {
    fn default() -> Self {
        LbfgsConfig { max_iters: 100, memory: 7, grad_tol: 1e-10, max_evals: 1000, backend: LbfgsBackend::Native }
    }
}

impl LbfgsConfig {
    /// Default settings with `max_iters` iterations.
    pub fn with_max_iters(max_iters: usize) -> Self {
        LbfgsConfig { max_iters, ..Default::default() }
    }

    fn validate(&self) -> Result<()> {
        if self.memory == 0 || self.max_evals == 0 || self.grad_tol.is_nan() || self.grad_tol < 0.0 {
            return Err(WibergError::InvalidArgument(format!(
                "L-BFGS needs memory >= 1, max_evals >= 1 and grad_tol >= 0, got {self:?}"
            )));
        }
        Ok(())
    }
}

const C1: f64 = 1e-4;
const C2: f64 = 0.9;
const MAX_LINE_SEARCH_EVALS: usize = 30;
/// Relative size of a decrease in energy that rounding can hide.
const ROUNDING_DECREASE: f64 = 64.0 * f64::EPSILON;

struct Evaluator<'a, E: Energy + ?Sized> {
    e: &'a E,
    w: &'a [f64],
    evals: usize,
    budget: usize,
}

impl<E: Energy + ?Sized> Evaluator<'_, E> {
    fn eval(&mut self, x: &[f64], g: &mut [f64]) -> Option<f64> {
        if self.evals >= self.budget {
            return None;
        }
        self.evals += 1;
        Some(self.e.gradient(x, self.w, g))
    }
}

/// Runs L-BFGS from `y` (overwritten with the best point found).
pub fn minimize<E: Energy + ?Sized>(cfg: &LbfgsConfig, e: &E, w: &[f64], y: &mut [f64]) -> Result<MinimizeOutcome> {
    minimize_into(cfg, e, w, y, &mut vec![0.0; y.len()])
}

/// [`minimize`], also writing the gradient at the returned point into `g` (the layer's
/// polish step reuses it instead of evaluating it again).
pub(crate) fn minimize_into<E: Energy + ?Sized>(
    cfg: &LbfgsConfig,
    e: &E,
    w: &[f64],
    y: &mut [f64],
    g: &mut [f64],
) -> Result<MinimizeOutcome> {
    cfg.validate()?;
    match cfg.backend {
        LbfgsBackend::Native => native(cfg, e, w, y, g),
        #[cfg(feature = "argmin")]
        LbfgsBackend::Argmin => super::lbfgs_argmin::minimize(cfg, e, w, y, g),
        #[cfg(not(feature = "argmin"))]
        LbfgsBackend::Argmin => Err(crate::WibergError::InvalidArgument(
            "the argmin L-BFGS back-end needs wiberg's `argmin` feature (cargo feature, off by default)".into(),
        )),
    }
}

thread_local! {
    /// Work space of [`native`], reused by every solve on a thread: the RANSAC experiment runs
    /// tens of thousands of 1-D solves, and their ~30 small allocations each (history pairs,
    /// line-search buffers) showed in its profile. Taken out while a solve runs, so that a
    /// solve nested inside an energy evaluation gets its own (empty) buffer.
    static WORKSPACE: std::cell::Cell<Vec<f64>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The last `m` curvature pairs `(s, y, rho = 1 / s.y)`, oldest first, in a ring of `m` slots
/// of length `n` each (no allocation or shifting per iteration).
struct History<'a> {
    s: &'a mut [f64],
    y: &'a mut [f64],
    rho: &'a mut [f64],
    n: usize,
    /// Physical slot of the oldest pair.
    start: usize,
    len: usize,
}

impl History<'_> {
    #[inline]
    fn capacity(&self) -> usize {
        self.rho.len()
    }
    /// (`start + i < 2 capacity`: a subtraction rather than a division.)
    #[inline]
    fn slot(&self, i: usize) -> usize {
        let j = self.start + i;
        if j >= self.capacity() {
            j - self.capacity()
        } else {
            j
        }
    }
    /// The `i`-th oldest pair.
    #[inline]
    fn s(&self, i: usize) -> &[f64] {
        let j = self.slot(i) * self.n;
        &self.s[j..j + self.n]
    }
    #[inline]
    fn y(&self, i: usize) -> &[f64] {
        let j = self.slot(i) * self.n;
        &self.y[j..j + self.n]
    }
    #[inline]
    fn rho(&self, i: usize) -> f64 {
        self.rho[self.slot(i)]
    }
    #[inline]
    fn clear(&mut self) {
        self.len = 0;
    }
    /// Drops the oldest pair.
    #[inline]
    fn drop_oldest(&mut self) {
        self.start = self.slot(1);
        self.len -= 1;
    }
    /// The slot after the newest pair, to be filled and then committed by [`History::push`]
    /// (the ring must not be full).
    #[inline]
    fn next_mut(&mut self) -> (&mut [f64], &mut [f64]) {
        let j = self.slot(self.len) * self.n;
        (&mut self.s[j..j + self.n], &mut self.y[j..j + self.n])
    }
    #[inline]
    fn push(&mut self, rho: f64) {
        let k = self.slot(self.len);
        self.rho[k] = rho;
        self.len += 1;
    }
}

fn native<E: Energy + ?Sized>(
    cfg: &LbfgsConfig,
    e: &E,
    w: &[f64],
    y: &mut [f64],
    g: &mut [f64],
) -> Result<MinimizeOutcome> {
    let n = y.len();
    let m = cfg.memory;
    let mut work = WORKSPACE.take();
    work.clear();
    work.resize(2 * m * n + 2 * m + 5 * n, 0.0);
    let out = native_in(cfg, e, w, y, g, &mut work);
    WORKSPACE.set(work);
    out
}

/// [`native`] in the work space `work` (length `2 m n + 2 m + 5 n`).
fn native_in<E: Energy + ?Sized>(
    cfg: &LbfgsConfig,
    e: &E,
    w: &[f64],
    y: &mut [f64],
    g: &mut [f64],
    work: &mut [f64],
) -> Result<MinimizeOutcome> {
    let n = y.len();
    let mut ev = Evaluator { e, w, evals: 0, budget: cfg.max_evals };
    let mut f = ev.eval(y, g).unwrap_or(f64::NAN);
    if !f.is_finite() || !g.iter().all(|v| v.is_finite()) {
        return Err(WibergError::NonFinite { what: "energy or gradient at the start point".into() });
    }
    let m = cfg.memory;
    let (s_buf, rest) = work.split_at_mut(m * n);
    let (y_buf, rest) = rest.split_at_mut(m * n);
    let (rho_buf, rest) = rest.split_at_mut(m);
    let (alpha_buf, rest) = rest.split_at_mut(m);
    let (d, rest) = rest.split_at_mut(n);
    let (x_new, rest) = rest.split_at_mut(n);
    let (g_new, rest) = rest.split_at_mut(n);
    let (ls_scratch, _) = rest.split_at_mut(2 * n);
    let mut hist = History { s: s_buf, y: y_buf, rho: rho_buf, n, start: 0, len: 0 };
    let mut iterations = 0;
    let mut gnorm = norm(g);
    let stop = loop {
        if gnorm <= cfg.grad_tol {
            break StopReason::GradientTolerance;
        }
        if iterations >= cfg.max_iters {
            break StopReason::MaxIterations;
        }
        // Two-loop recursion: d = -H_k g.
        d.copy_from_slice(g);
        let k = hist.len;
        for i in (0..k).rev() {
            alpha_buf[i] = hist.rho(i) * dot(hist.s(i), d);
            for (dj, yj) in d.iter_mut().zip(hist.y(i)) {
                *dj -= alpha_buf[i] * yj;
            }
        }
        let gamma = if k > 0 { 1.0 / (hist.rho(k - 1) * dot(hist.y(k - 1), hist.y(k - 1))) } else { 1.0 };
        for dj in d.iter_mut() {
            *dj *= -gamma;
        }
        for (i, &alpha_i) in alpha_buf[..k].iter().enumerate() {
            let b = hist.rho(i) * dot(hist.y(i), d);
            for (dj, sj) in d.iter_mut().zip(hist.s(i)) {
                *dj -= (alpha_i + b) * sj;
            }
        }
        let mut dphi0 = dot(g, d);
        if dphi0.is_nan() || dphi0 >= 0.0 {
            // Not a descent direction (bad curvature pairs): restart from steepest descent.
            hist.clear();
            for (dj, gj) in d.iter_mut().zip(g.iter()) {
                *dj = -gj;
            }
            dphi0 = -gnorm * gnorm;
        }
        // First step: unit-length move; afterwards the quasi-Newton step 1.
        let alpha0 = if hist.len == 0 { (1.0 / norm(d)).min(1.0) } else { 1.0 };
        // When the decrease the step can bring is below the rounding of E, no line search can
        // see it (it would burn its whole budget trying), but the gradient is still accurate:
        // take the step once if it reduces |grad E|, else stop, converged to machine precision.
        let ls = if -dphi0 * alpha0 <= ROUNDING_DECREASE * f.abs().max(f64::MIN_POSITIVE) {
            for j in 0..n {
                x_new[j] = y[j] + alpha0 * d[j];
            }
            let Some(f_new) = ev.eval(x_new, g_new) else { break StopReason::EvaluationBudget };
            if !(f_new.is_finite() && g_new.iter().all(|v| v.is_finite()) && norm(g_new) < gnorm) {
                break StopReason::NoProgress;
            }
            Some((alpha0, f_new))
        } else {
            line_search(&mut ev, y, f, dphi0, d, alpha0, x_new, g_new, ls_scratch)
        };
        let Some((alpha, f_new)) = ls else {
            if ev.evals >= ev.budget {
                break StopReason::EvaluationBudget;
            }
            // No decrease found along a descent direction whose predicted decrease is below
            // the rounding of E itself: converged to machine precision, not a failure.
            let predicted = -dphi0 * alpha0;
            break if predicted <= 16.0 * ROUNDING_DECREASE * f.abs().max(f64::MIN_POSITIVE) {
                StopReason::NoProgress
            } else {
                StopReason::LineSearchFailed
            };
        };
        iterations += 1;
        // Curvature pair. (A full history drops its oldest pair even when the new one is then
        // rejected.)
        if hist.len == m {
            hist.drop_oldest();
        }
        let (s, yy) = hist.next_mut();
        for j in 0..n {
            s[j] = alpha * d[j];
            yy[j] = g_new[j] - g[j];
        }
        let sy = dot(s, yy);
        let accept = sy > 1e-12 * norm(s) * norm(yy) && sy > 0.0;
        let f_old = f;
        y.copy_from_slice(x_new);
        g.copy_from_slice(g_new);
        f = f_new;
        gnorm = norm(g);
        if accept {
            hist.push(1.0 / sy);
        }
        if (f_old - f).abs() <= 4.0 * f64::EPSILON * f.abs().max(1e-300)
            && alpha * norm(d) <= 4.0 * f64::EPSILON * (1.0 + norm(y))
        {
            break StopReason::NoProgress;
        }
    };
    Ok(MinimizeOutcome { iterations, evaluations: ev.evals, energy: f, grad_norm: gnorm, stop })
}

/// Strong-Wolfe line search (Nocedal & Wright, algorithms 3.5 and 3.6, cubic interpolation).
/// Returns the step and the energy; `x_out`/`g_out` hold the new point and gradient. `None`
/// when no step that decreases the energy was found within the budget.
#[allow(clippy::too_many_arguments)]
fn line_search<E: Energy + ?Sized>(
    ev: &mut Evaluator<'_, E>,
    x: &[f64],
    f0: f64,
    dphi0: f64,
    d: &[f64],
    alpha0: f64,
    x_out: &mut [f64],
    g_out: &mut [f64],
    scratch: &mut [f64],
) -> Option<(f64, f64)> {
    let n = x.len();
    let (g, xb) = scratch.split_at_mut(n);
    let eval_at = |ev: &mut Evaluator<'_, E>, alpha: f64, xb: &mut [f64], g: &mut [f64]| -> Option<(f64, f64)> {
        for j in 0..n {
            xb[j] = x[j] + alpha * d[j];
        }
        let f = ev.eval(xb, g)?;
        let dphi = dot(g, d);
        if f.is_finite() && dphi.is_finite() {
            Some((f, dphi))
        } else {
            Some((f64::INFINITY, f64::NAN))
        }
    };
    // Best Armijo point seen, as fallback.
    let mut best: Option<(f64, f64)> = None;
    let keep = |alpha: f64,
                f: f64,
                xb: &[f64],
                g: &[f64],
                best: &mut Option<(f64, f64)>,
                x_out: &mut [f64],
                g_out: &mut [f64]| {
        if f < f0 && best.is_none_or(|(_, fb)| f < fb) {
            *best = Some((alpha, f));
            x_out.copy_from_slice(xb);
            g_out.copy_from_slice(g);
        }
    };
    let (mut a_prev, mut f_prev, mut dphi_prev) = (0.0, f0, dphi0);
    let mut alpha = alpha0;
    let mut evals = 0;
    let (mut lo, mut hi, mut f_lo, mut dphi_lo, mut f_hi, mut dphi_hi);
    // Bracketing phase.
    loop {
        if evals >= MAX_LINE_SEARCH_EVALS {
            return best;
        }
        evals += 1;
        let Some((f, dphi)) = eval_at(ev, alpha, xb, g) else { return best };
        if f.is_finite() && f <= f0 + C1 * alpha * dphi0 {
            keep(alpha, f, xb, g, &mut best, x_out, g_out);
        }
        if !f.is_finite() || f > f0 + C1 * alpha * dphi0 || (evals > 1 && f >= f_prev) {
            (lo, f_lo, dphi_lo, hi, f_hi, dphi_hi) = (a_prev, f_prev, dphi_prev, alpha, f, dphi);
            break;
        }
        if dphi.abs() <= -C2 * dphi0 {
            keep(alpha, f, xb, g, &mut best, x_out, g_out);
            x_out.copy_from_slice(xb);
            g_out.copy_from_slice(g);
            return Some((alpha, f));
        }
        if dphi >= 0.0 {
            (lo, f_lo, dphi_lo, hi, f_hi, dphi_hi) = (alpha, f, dphi, a_prev, f_prev, dphi_prev);
            break;
        }
        a_prev = alpha;
        f_prev = f;
        dphi_prev = dphi;
        alpha *= 4.0;
    }
    // Zoom phase.
    loop {
        if evals >= MAX_LINE_SEARCH_EVALS || (hi - lo).abs() <= f64::EPSILON * lo.abs().max(hi.abs()) {
            return best;
        }
        evals += 1;
        let a = interpolate(lo, f_lo, dphi_lo, hi, f_hi, dphi_hi);
        let Some((f, dphi)) = eval_at(ev, a, xb, g) else { return best };
        if !f.is_finite() || f > f0 + C1 * a * dphi0 || f >= f_lo {
            hi = a;
            f_hi = f;
            dphi_hi = dphi;
        } else {
            keep(a, f, xb, g, &mut best, x_out, g_out);
            if dphi.abs() <= -C2 * dphi0 {
                x_out.copy_from_slice(xb);
                g_out.copy_from_slice(g);
                return Some((a, f));
            }
            if dphi * (hi - lo) >= 0.0 {
                hi = lo;
                f_hi = f_lo;
                dphi_hi = dphi_lo;
            }
            lo = a;
            f_lo = f;
            dphi_lo = dphi;
        }
    }
}

/// Minimiser of the cubic through (lo, f_lo, d_lo) and (hi, f_hi, d_hi), safeguarded to the
/// middle 80 % of the interval (bisection when the cubic is unusable).
fn interpolate(lo: f64, f_lo: f64, d_lo: f64, hi: f64, f_hi: f64, d_hi: f64) -> f64 {
    let (a, b) = (lo.min(hi), lo.max(hi));
    let width = b - a;
    let mid = 0.5 * (lo + hi);
    let mut t = mid;
    if f_hi.is_finite() && d_hi.is_finite() {
        let d1 = d_lo + d_hi - 3.0 * (f_lo - f_hi) / (lo - hi);
        let disc = d1 * d1 - d_lo * d_hi;
        if disc >= 0.0 {
            let d2 = (hi - lo).signum() * disc.sqrt();
            let cand = hi - (hi - lo) * (d_hi + d2 - d1) / (d_hi - d_lo + 2.0 * d2);
            if cand.is_finite() {
                t = cand;
            }
        }
    }
    t.clamp(a + 0.1 * width, b - 0.1 * width)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RbfMixture;

    /// Rosenbrock in 2-D, a classic line-search stress test.
    struct Rosenbrock;
    impl Energy for Rosenbrock {
        fn dim(&self) -> usize {
            2
        }
        fn num_params(&self) -> usize {
            0
        }
        fn value(&self, y: &[f64], _w: &[f64]) -> f64 {
            (1.0 - y[0]).powi(2) + 100.0 * (y[1] - y[0] * y[0]).powi(2)
        }
        fn gradient(&self, y: &[f64], w: &[f64], g: &mut [f64]) -> f64 {
            g[0] = -2.0 * (1.0 - y[0]) - 400.0 * y[0] * (y[1] - y[0] * y[0]);
            g[1] = 200.0 * (y[1] - y[0] * y[0]);
            self.value(y, w)
        }
        fn hessian(&self, _y: &[f64], _w: &[f64], _h: &mut nalgebra::DMatrix<f64>) {}
        fn mixed_vjp(&self, _y: &[f64], _w: &[f64], _u: &[f64], _out: &mut [f64]) {}
    }

    #[test]
    fn native_solves_rosenbrock() {
        let cfg = LbfgsConfig { max_iters: 200, ..Default::default() };
        let mut y = [-1.2, 1.0];
        let out = minimize(&cfg, &Rosenbrock, &[], &mut y).unwrap();
        assert!(out.stop.is_converged(), "{out:?}");
        assert!((y[0] - 1.0).abs() < 1e-6 && (y[1] - 1.0).abs() < 1e-6, "{y:?}");
    }

    #[test]
    fn evaluation_budget_stops_the_solve() {
        let cfg = LbfgsConfig { max_iters: 200, max_evals: 5, ..Default::default() };
        let mut y = [-1.2, 1.0];
        let out = minimize(&cfg, &Rosenbrock, &[], &mut y).unwrap();
        assert_eq!(out.stop, StopReason::EvaluationBudget);
        assert!(out.evaluations <= 5);
        assert!(Rosenbrock.value(&y, &[]) <= Rosenbrock.value(&[-1.2, 1.0], &[]));
    }

    #[test]
    fn one_d_rbf_converges_in_few_iterations() {
        let e = RbfMixture::shared_width(1, vec![0.0, 0.3, 0.6, 5.0]).unwrap();
        let mut y = [0.25];
        let out = minimize(&LbfgsConfig::with_max_iters(10), &e, &[1.0], &mut y).unwrap();
        assert!(out.grad_norm < 1e-8, "{out:?}");
    }
}
