//! `wiberg.Solution`: the result of `rbf_argmin` or `robust_lstsq`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

/// A solved batch of one of the package's problems (`rbf_argmin`, `robust_lstsq`): what
/// [`Solution`] shows to Python. A trait, so that this module needs none of the problems' own.
pub(crate) trait Solved: Send + Sync {
    /// The package function that made it: named in the repr, called again when unpickling.
    fn kind(&self) -> &'static str;
    /// Number of samples.
    fn len(&self) -> usize;
    /// The minimisers, shaped as the inputs' batch.
    fn y<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>>;
    /// The diagnostics as a dict of numpy arrays.
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>>;
    /// The names of the inputs that `vjp` can differentiate in (those given).
    fn inputs(&self) -> Vec<&'static str>;
    /// The gradients of a loss with respect to the inputs named in `wrt` (a subset of
    /// [`Solved::inputs`]).
    fn vjp<'py>(&self, py: Python<'py>, dl_dy: &Bound<'py, PyAny>, wrt: &[&str]) -> PyResult<Bound<'py, PyDict>>;
    /// The inputs and options (positional, keyword) that solve it again.
    fn state<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)>;
}

/// The result of a solve: `y`, a `report` of diagnostics, and `vjp(dl_dy)`.
///
/// Pickles by its inputs and options; unpickling solves again, which gives the same numbers
/// bit for bit (solves are deterministic and independent of the thread count).
#[pyclass(module = "wiberg", name = "Solution", frozen)]
pub(crate) struct Solution {
    pub inner: Box<dyn Solved>,
}

#[pymethods]
impl Solution {
    /// The minimiser: `(n,)`, or `(B, n)` for a batch.
    #[getter]
    fn y<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.inner.y(py)
    }

    /// Diagnostics: a dict of numpy arrays (scalars' arrays of shape `()` without a batch,
    /// `(B,)` with one).
    #[getter]
    fn report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.inner.report(py)
    }

    /// Vector-Jacobian product: the gradient of a loss with respect to each input, given
    /// `dl_dy` (shaped like `y`), as a dict of arrays shaped like the inputs given. `wrt`
    /// (a name or a list of names of inputs given) keeps only those gradients, and skips the
    /// work of the others where it can (`rbf_argmin`'s centres gradient).
    #[pyo3(signature = (dl_dy, wrt=None))]
    fn vjp<'py>(
        &self,
        py: Python<'py>,
        dl_dy: &Bound<'py, PyAny>,
        wrt: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let inputs = self.inner.inputs();
        let wrt: Vec<&str> = match wrt.filter(|w| !w.is_none()) {
            None => inputs.clone(),
            Some(w) => {
                let names: Vec<String> = match w.extract::<String>() {
                    Ok(name) => vec![name],
                    Err(_) => w.extract().map_err(|_| {
                        PyValueError::new_err("wrt must be None, an input's name or a list of input names")
                    })?,
                };
                let mut chosen = Vec::with_capacity(names.len());
                for name in &names {
                    match inputs.iter().find(|&&i| i == name) {
                        Some(&i) => chosen.push(i),
                        None => {
                            return Err(PyValueError::new_err(format!(
                                "wrt names {name:?}, which is not an input of this solution (inputs: {})",
                                inputs.join(", ")
                            )))
                        }
                    }
                }
                chosen
            }
        };
        self.inner.vjp(py, dl_dy, &wrt)
    }

    /// Number of samples (1 without a batch dimension).
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Solution({}, y={})", self.inner.kind(), self.inner.y(py)?.repr()?))
    }

    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (kind, (args, kwargs)) = (self.inner.kind(), self.inner.state(py)?);
        let rebuild = py.import("wiberg")?.getattr("_rebuild")?;
        PyTuple::new(py, [rebuild, (kind, args, kwargs).into_pyobject(py)?.into_any()])
    }
}
