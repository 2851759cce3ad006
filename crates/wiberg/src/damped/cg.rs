//! Matrix-free conjugate gradients on the damped system `(H + s I) x = b`, with `H v` from
//! the energy's Hessian-vector products.

use crate::energy::Energy;
use crate::error::WibergError;
use crate::minimize::norm;
use crate::Result;

pub(crate) enum CgOutcome {
    Solved { x: Vec<f64>, min_rayleigh: f64, max_rayleigh: f64 },
    NegativeCurvature,
}

/// Conjugate gradients on `(H + shift I) x = b` with `H v` from the energy. Also returns the
/// extreme Rayleigh quotients of `H` met along the search directions (eigenvalue estimates).
pub(crate) fn cg<E: Energy + ?Sized>(
    e: &E,
    y: &[f64],
    w: &[f64],
    shift: f64,
    b: &[f64],
    tol: f64,
    max_iters: usize,
) -> Result<CgOutcome> {
    let n = b.len();
    let bnorm = norm(b);
    let mut x = vec![0.0; n];
    if bnorm == 0.0 {
        return Ok(CgOutcome::Solved { x, min_rayleigh: f64::NAN, max_rayleigh: f64::NAN });
    }
    let mut r = b.to_vec();
    let mut p = r.clone();
    let mut ap = vec![0.0; n];
    let mut rr: f64 = r.iter().map(|v| v * v).sum();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for it in 0..max_iters {
        e.hvp(y, w, &p, &mut ap);
        let pp: f64 = p.iter().map(|v| v * v).sum();
        let php: f64 = p.iter().zip(&ap).map(|(a, b)| a * b).sum();
        let rayleigh = php / pp;
        lo = lo.min(rayleigh);
        hi = hi.max(rayleigh);
        let pap = php + shift * pp;
        if pap.is_nan() || pap <= 0.0 || rayleigh < 0.0 {
            return Ok(CgOutcome::NegativeCurvature);
        }
        let alpha = rr / pap;
        for i in 0..n {
            x[i] += alpha * p[i];
            r[i] -= alpha * (ap[i] + shift * p[i]);
        }
        let rr_new: f64 = r.iter().map(|v| v * v).sum();
        if rr_new.sqrt() <= tol * bnorm {
            return Ok(CgOutcome::Solved { x, min_rayleigh: lo, max_rayleigh: hi });
        }
        let beta = rr_new / rr;
        rr = rr_new;
        for i in 0..n {
            p[i] = r[i] + beta * p[i];
        }
        if it + 1 == max_iters {
            break;
        }
    }
    Err(WibergError::NotConverged { iterations: max_iters, residual: rr.sqrt() / bnorm })
}
