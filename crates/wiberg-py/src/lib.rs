//! `wiberg._core`: the Python bindings of the `wiberg` library (PyO3 + numpy).
//!
//! Every function here validates its inputs at the boundary (float64 arrays of the documented
//! shapes, finite values) and raises `ValueError` otherwise; failed solves raise
//! `wiberg.WibergError` or one of its subclasses. No maths lives here: the forward and backward
//! passes are the library's, and the bindings only move arrays, broadcast the inputs of a batch
//! and sum the gradients of shared inputs over it (in sample order, so that results do not depend
//! on the number of threads). The GIL is released during solves.
#![deny(missing_docs)]

mod arrays;
mod lstsq;
mod pose;
mod rbf;
mod solution;

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use wiberg::{Damping, WibergError};

create_exception!(wiberg, WibergErrorPy, PyException, "A solve failed (the base of the library's errors).");
create_exception!(
    wiberg,
    SingularHessianError,
    WibergErrorPy,
    "The (damped) Hessian was singular: the implicit derivative does not exist there."
);
create_exception!(wiberg, NonFiniteError, WibergErrorPy, "A solve produced a NaN or an infinity.");
create_exception!(wiberg, NotConvergedError, WibergErrorPy, "An iterative linear solver did not converge.");

/// Turns a library error into a Python exception; `context` (for example "sample 3") is
/// prefixed to the message when not empty.
pub(crate) fn to_py_err(err: &WibergError, context: &str) -> PyErr {
    let msg = if context.is_empty() { err.to_string() } else { format!("{context}: {err}") };
    match err {
        WibergError::SingularHessian { .. } => SingularHessianError::new_err(msg),
        WibergError::NonFinite { .. } => NonFiniteError::new_err(msg),
        WibergError::NotConverged { .. } => NotConvergedError::new_err(msg),
        WibergError::InvalidArgument(_) | WibergError::DimensionMismatch { .. } => PyValueError::new_err(msg),
    }
}

/// A `ValueError` with this message.
pub(crate) fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// The damping mode named `name` with `lambda` (ignored by `"implicit"`).
pub(crate) fn parse_damping(name: &str, lambda: f64) -> PyResult<Damping> {
    let damping = match name {
        "implicit" => Damping::Implicit,
        "trust-region" | "trust_region" => Damping::TrustRegion { lambda },
        "guarded" => Damping::Guarded { lambda },
        other => {
            return Err(value_error(format!(
                "damping must be \"implicit\", \"trust-region\" or \"guarded\", got {other:?}"
            )))
        }
    };
    damping.validate().map_err(|e| value_error(format!("lam: {e}")))?;
    Ok(damping)
}

/// Runs `f` on a rayon pool of `threads` threads (0: the global pool, all cores). Pools are
/// built once per thread count and kept.
pub(crate) fn with_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    if threads == 0 {
        return Ok(f());
    }
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| Mutex::new(HashMap::new()));
    let pool = {
        let mut map = pools.lock().map_err(|_| value_error("thread pool registry poisoned"))?;
        match map.get(&threads) {
            Some(p) => Arc::clone(p),
            None => {
                let p = Arc::new(
                    rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .map_err(|e| value_error(format!("cannot start {threads} threads: {e}")))?,
                );
                map.insert(threads, Arc::clone(&p));
                p
            }
        }
    };
    Ok(pool.install(f))
}

/// Maps `f` over `0..count` (in parallel when `count > 1`), results in index order.
pub(crate) fn par_map<T: Send>(threads: usize, count: usize, f: impl Fn(usize) -> T + Sync + Send) -> PyResult<Vec<T>> {
    use rayon::prelude::*;
    if count <= 1 {
        return Ok((0..count).map(f).collect());
    }
    with_pool(threads, || (0..count).into_par_iter().with_min_len(4).map(f).collect())
}

/// The first error of a batch of results, as a Python exception naming the sample (when
/// batched), or all the values.
pub(crate) fn collect_batch<T>(results: Vec<Result<T, WibergError>>, batched: bool) -> PyResult<Vec<T>> {
    let mut out = Vec::with_capacity(results.len());
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(v) => out.push(v),
            Err(e) => return Err(to_py_err(&e, &if batched { format!("sample {i}") } else { String::new() })),
        }
    }
    Ok(out)
}

/// The compiled core of the `wiberg` package.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("WibergError", py.get_type::<WibergErrorPy>())?;
    m.add("SingularHessianError", py.get_type::<SingularHessianError>())?;
    m.add("NonFiniteError", py.get_type::<NonFiniteError>())?;
    m.add("NotConvergedError", py.get_type::<NotConvergedError>())?;
    m.add_class::<solution::Solution>()?;
    m.add_function(wrap_pyfunction!(rbf::rbf_argmin, m)?)?;
    m.add_function(wrap_pyfunction!(lstsq::robust_lstsq, m)?)?;
    m.add_function(wrap_pyfunction!(rbf::_rust_rbf_seconds_per_call, m)?)?;
    m.add_class::<pose::Model>()?;
    m.add_function(wrap_pyfunction!(pose::mpjpe, m)?)?;
    m.add("N_POSE_PARAMS", wiberg_models::pose::params::N_PARAMS)?;
    Ok(())
}

/// The name of a stop reason, as the library's serde names it.
pub(crate) fn stop_name(s: wiberg::StopReason) -> &'static str {
    use wiberg::StopReason::*;
    match s {
        GradientTolerance => "gradient-tolerance",
        NoProgress => "no-progress",
        MaxIterations => "max-iterations",
        EvaluationBudget => "evaluation-budget",
        LineSearchFailed => "line-search-failed",
        NotRun => "not-run",
    }
}

/// A count argument: a non-negative integer, else `ValueError`.
pub(crate) fn count_arg(v: i64, name: &str) -> PyResult<usize> {
    usize::try_from(v).map_err(|_| value_error(format!("{name} must be >= 0, got {v}")))
}
