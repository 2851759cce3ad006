//! Reading float64 arrays from Python (validated) and writing numpy arrays back.

use crate::value_error;
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt};

/// A validated float64 array: its shape and its values in C order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Arr {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Arr {
    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// As a numpy array (a copy).
    pub fn to_numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_numpy(py, self.data.clone(), &self.shape)
    }
}

/// A numpy array of `shape` holding `data` (C order).
pub(crate) fn to_numpy<'py, T: numpy::Element>(
    py: Python<'py>,
    data: Vec<T>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    let arr =
        ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| value_error(format!("internal shape error: {e}")))?;
    Ok(arr.into_pyarray(py).into_any())
}

/// Reads `obj` as a float64 array named `name`: numpy float64 arrays as they are (any
/// strides); Python floats, ints and (nested) lists of them through `numpy.asarray`. Numpy
/// arrays of any other dtype, and NaN or infinite values, are a `ValueError`.
pub(crate) fn read_array(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Arr> {
    let py = obj.py();
    if let Ok(a) = obj.cast::<PyArrayDyn<f64>>() {
        return from_f64_array(a, name);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return finite(Arr { shape: vec![], data: vec![f.value()] }, name);
    }
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        return Err(value_error(format!("{name} must be a float64 array, got dtype {}", a.dtype())));
    }
    if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<pyo3::types::PyBool>() {
        let v: f64 = obj.extract().map_err(|_| value_error(format!("{name}: integer too large")))?;
        return finite(Arr { shape: vec![], data: vec![v] }, name);
    }
    // Lists and tuples (or other sequences): numpy decides the dtype; floats and integers
    // only.
    let np = py.import("numpy")?;
    let converted =
        np.call_method1("asarray", (obj,)).map_err(|e| value_error(format!("{name} must be a float64 array: {e}")))?;
    let arr = converted.cast::<PyUntypedArray>().map_err(|_| value_error(format!("{name} must be a float64 array")))?;
    let kind = char::from(arr.dtype().kind());
    if !matches!(kind, 'f' | 'i' | 'u') {
        return Err(value_error(format!("{name} must be a float64 array, got a sequence of dtype {}", arr.dtype())));
    }
    let as_f64 = converted.call_method1("astype", ("float64",))?;
    let a = as_f64.cast::<PyArrayDyn<f64>>().map_err(|_| value_error(format!("{name} must be a float64 array")))?;
    from_f64_array(a, name)
}

fn from_f64_array(a: &Bound<'_, PyArrayDyn<f64>>, name: &str) -> PyResult<Arr> {
    let ro = a.try_readonly().map_err(|e| value_error(format!("{name}: cannot read the array ({e})")))?;
    let view = ro.as_array();
    let data: Vec<f64> = match view.as_slice() {
        Some(s) => s.to_vec(),
        None => view.iter().copied().collect(),
    };
    finite(Arr { shape: view.shape().to_vec(), data }, name)
}

fn finite(a: Arr, name: &str) -> PyResult<Arr> {
    if let Some(i) = a.data.iter().position(|v| !v.is_finite()) {
        return Err(value_error(format!("{name} must be finite, but element {i} (flat index) is {}", a.data[i])));
    }
    Ok(a)
}

/// `dl/dy` for a solution whose `y` is `(n,)` or, for a batch of `b`, `(b, n)`: read and
/// validated like any input, and a `ValueError` naming both shapes when it is not `y`'s.
pub(crate) fn read_dl_dy(obj: &Bound<'_, PyAny>, batch: Option<usize>, n: usize) -> PyResult<Arr> {
    let v = read_array(obj, "dl_dy")?;
    let want: Vec<usize> = match batch {
        Some(b) => vec![b, n],
        None => vec![n],
    };
    if v.shape != want {
        return Err(value_error(format!(
            "dl_dy must have the shape of y, {}, got {}",
            shape_str(&want),
            shape_str(&v.shape)
        )));
    }
    Ok(v)
}

/// Shape as Python writes it, `(2, 3)`.
pub(crate) fn shape_str(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    }
}

/// The gradient of one input over a batch: one per sample when the input has a batch
/// dimension (`batched`), else the sum over the samples, in sample order (the gradient of an
/// input shared by every sample; the order makes it independent of the thread count).
pub(crate) fn gather<G>(grads: &[G], batched: bool, len: usize, part: impl Fn(&G) -> &[f64]) -> Vec<f64> {
    if batched {
        grads.iter().flat_map(|g| part(g).iter().copied()).collect()
    } else {
        let mut acc = vec![0.0; len];
        for g in grads {
            for (a, x) in acc.iter_mut().zip(part(g)) {
                *a += x;
            }
        }
        acc
    }
}
