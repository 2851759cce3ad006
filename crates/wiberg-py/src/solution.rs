//! `wiberg.Solution`: the result of `rbf_argmin` or `robust_lstsq`.

use crate::lstsq::LstsqBatch;
use crate::rbf::RbfBatch;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// Which problem a solution belongs to.
pub(crate) enum Inner {
    Rbf(RbfBatch),
    Lstsq(LstsqBatch),
}

/// The result of a solve: `y`, a `report` of diagnostics, and `vjp(dl_dy)`.
///
/// Pickles by its inputs and options; unpickling solves again, which gives the same numbers
/// bit for bit (solves are deterministic and independent of the thread count).
#[pyclass(module = "wiberg", name = "Solution", frozen)]
pub(crate) struct Solution {
    pub inner: Inner,
}

#[pymethods]
impl Solution {
    /// The minimiser: `(n,)`, or `(B, n)` for a batch.
    #[getter]
    fn y<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.inner {
            Inner::Rbf(r) => r.y(py),
            Inner::Lstsq(l) => l.y(py),
        }
    }

    /// Diagnostics: a dict of numpy arrays (scalars' arrays of shape `()` without a batch,
    /// `(B,)` with one).
    #[getter]
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        match &self.inner {
            Inner::Rbf(r) => r.report(py),
            Inner::Lstsq(l) => l.report(py),
        }
    }

    /// Vector-Jacobian product: the gradient of a loss with respect to each input, given
    /// `dl_dy` (shaped like `y`), as a dict of arrays shaped like the inputs given.
    fn vjp<'py>(&self, py: Python<'py>, dl_dy: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        match &self.inner {
            Inner::Rbf(r) => r.vjp(py, dl_dy),
            Inner::Lstsq(l) => l.vjp(py, dl_dy),
        }
    }

    /// Number of samples (1 without a batch dimension).
    fn __len__(&self) -> usize {
        match &self.inner {
            Inner::Rbf(r) => r.len(),
            Inner::Lstsq(l) => l.len(),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let (kind, y) = match &self.inner {
            Inner::Rbf(r) => ("rbf_argmin", r.y(py)?),
            Inner::Lstsq(l) => ("robust_lstsq", l.y(py)?),
        };
        Ok(format!("Solution({kind}, y={})", y.repr()?))
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (kind, (args, kwargs)) = match &self.inner {
            Inner::Rbf(r) => ("rbf_argmin", r.state(py)?),
            Inner::Lstsq(l) => ("robust_lstsq", l.state(py)?),
        };
        let rebuild = py.import("wiberg")?.getattr("_rebuild")?;
        PyTuple::new(py, [rebuild, (kind, args, kwargs).into_pyobject(py)?.into_any()])
    }
}
