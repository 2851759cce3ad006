//! `robust_lstsq`: the library's damped (optionally pseudo-Huber, by IRLS) least squares,
//! batched, with its vector-Jacobian product.

use crate::arrays::{gather, read_array, read_dl_dy, shape_str, to_numpy, Arr};
use crate::solution::{Solution, Solved};
use crate::{collect_batch, count_arg, par_map, parse_damping, stop_name, value_error};
use nalgebra::{DMatrix, DVector};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use wiberg::least_squares::{IrlsConfig, LeastSquares, LeastSquaresSolution, RobustLeastSquares, RobustSolution};
use wiberg::{Damping, Diagnostics, WibergError};

/// One solved sample.
enum Sample {
    /// `delta = None`: closed-form weighted least squares.
    Plain(LeastSquares, LeastSquaresSolution),
    /// Pseudo-Huber by IRLS.
    Robust(RobustLeastSquares, RobustSolution),
}

impl Sample {
    fn y(&self) -> &[f64] {
        match self {
            Sample::Plain(_, s) => s.y.as_slice(),
            Sample::Robust(_, s) => s.y.as_slice(),
        }
    }

    fn diagnostics(&self) -> &Diagnostics {
        match self {
            Sample::Plain(_, s) => s.diagnostics(),
            Sample::Robust(_, s) => s.diagnostics(),
        }
    }
}

/// A batch of least-squares problems and their solutions.
pub(crate) struct LstsqBatch {
    a: Arr,
    b: Arr,
    weights: Option<Arr>,
    delta: Option<Arr>,
    mu: f64,
    group_size: usize,
    damping_name: String,
    lam: f64,
    threads: usize,
    batch: Option<usize>,
    m: usize,
    n: usize,
    samples: Vec<Sample>,
}

/// Per-sample gradients: A (row-major), b, group weights, delta.
type Grads = (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>);

impl LstsqBatch {
    fn count(&self) -> usize {
        self.batch.unwrap_or(1)
    }

    fn groups(&self) -> usize {
        self.m / self.group_size
    }

    fn a_batched(&self) -> bool {
        self.a.ndim() == 3
    }

    fn b_batched(&self) -> bool {
        self.b.ndim() == 2
    }

    fn weights_batched(&self) -> bool {
        self.weights.as_ref().is_some_and(|w| w.ndim() == 2)
    }

    fn delta_batched(&self) -> bool {
        self.delta.as_ref().is_some_and(|d| d.ndim() == 1)
    }

    fn slice(a: &Arr, batched: bool, len: usize, i: usize) -> &[f64] {
        if batched {
            &a.data[i * len..(i + 1) * len]
        } else {
            &a.data
        }
    }

    fn solve_one(&self, i: usize, damping: Damping) -> Result<Sample, WibergError> {
        let (m, n, k) = (self.m, self.n, self.group_size);
        let a = DMatrix::from_row_slice(m, n, Self::slice(&self.a, self.a_batched(), m * n, i));
        let b = DVector::from_column_slice(Self::slice(&self.b, self.b_batched(), m, i));
        let c = self.weights.as_ref().map(|w| Self::slice(w, self.weights_batched(), self.groups(), i));
        match &self.delta {
            None => {
                let mut ls = LeastSquares::new(a, b)?.with_mu(self.mu)?;
                if let Some(c) = c {
                    // Group g's weight on each of its rows: E = 1/2 sum_g c_g |r_g|^2.
                    ls = ls.with_weights(DVector::from_fn(m, |r, _| c[r / k]))?;
                }
                let sol = ls.solve(damping)?;
                Ok(Sample::Plain(ls, sol))
            }
            Some(d) => {
                let delta = Self::slice(d, self.delta_batched(), 1, i)[0];
                let mut rls = RobustLeastSquares::new(a, b, k, delta)?.with_mu(self.mu)?;
                if let Some(c) = c {
                    rls = rls.with_group_weights(DVector::from_column_slice(c))?;
                }
                let sol = rls.solve(&IrlsConfig::default(), damping)?;
                Ok(Sample::Robust(rls, sol))
            }
        }
    }

    fn grads_one(&self, s: &Sample, v: &[f64]) -> Result<Grads, WibergError> {
        let v = DVector::from_column_slice(v);
        let row_major = |a: &DMatrix<f64>| a.transpose().as_slice().to_vec();
        match s {
            Sample::Plain(ls, sol) => {
                let g = ls.backward(sol, &v)?;
                // Row weights summed per group (every row of a group carries its weight).
                let mut gw = vec![0.0; self.groups()];
                for (r, x) in g.weights.iter().enumerate() {
                    gw[r / self.group_size] += x;
                }
                Ok((row_major(&g.a), g.b.as_slice().to_vec(), gw, vec![]))
            }
            Sample::Robust(rls, sol) => {
                let g = rls.backward(sol, &v)?;
                Ok((
                    row_major(&g.a_robust),
                    g.b_robust.as_slice().to_vec(),
                    g.group_weights.as_slice().to_vec(),
                    vec![g.delta],
                ))
            }
        }
    }
}

impl Solved for LstsqBatch {
    fn kind(&self) -> &'static str {
        "robust_lstsq"
    }

    /// Number of samples.
    fn len(&self) -> usize {
        self.count()
    }

    fn y<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let data: Vec<f64> = self.samples.iter().flat_map(|s| s.y().iter().copied()).collect();
        match self.batch {
            Some(b) => to_numpy(py, data, &[b, self.n]),
            None => to_numpy(py, data, &[self.n]),
        }
    }

    fn report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let shape: Vec<usize> = self.batch.map(|b| vec![b]).unwrap_or_default();
        let f = |g: &dyn Fn(&Sample) -> f64| -> PyResult<Bound<'py, PyAny>> {
            to_numpy(py, self.samples.iter().map(g).collect(), &shape)
        };
        let d = PyDict::new(py);
        let converged: Vec<bool> = self
            .samples
            .iter()
            .map(|s| match s {
                Sample::Plain(..) => true,
                Sample::Robust(_, r) => r.report.converged,
            })
            .collect();
        d.set_item("converged", to_numpy(py, converged, &shape)?)?;
        let iterations: Vec<i64> = self
            .samples
            .iter()
            .map(|s| match s {
                Sample::Plain(..) => 0,
                Sample::Robust(_, r) => r.report.iterations as i64,
            })
            .collect();
        d.set_item("iterations", to_numpy(py, iterations, &shape)?)?;
        d.set_item(
            "energy",
            f(&|s| match s {
                Sample::Plain(_, p) => p.energy,
                Sample::Robust(_, r) => r.report.energy,
            })?,
        )?;
        if self.delta.is_some() {
            d.set_item(
                "grad_norm",
                f(&|s| match s {
                    Sample::Plain(..) => 0.0,
                    Sample::Robust(_, r) => r.report.grad_norm,
                })?,
            )?;
            let stops: Vec<&str> = self
                .samples
                .iter()
                .map(|s| match s {
                    Sample::Plain(..) => "closed-form",
                    Sample::Robust(_, r) => stop_name(r.report.stop),
                })
                .collect();
            let np = py.import("numpy")?;
            d.set_item("stop", np.call_method1("array", (stops,))?.call_method1("reshape", (shape.clone(),))?)?;
        }
        d.set_item("min_eigenvalue", f(&|s| s.diagnostics().min_eigenvalue)?)?;
        d.set_item("max_eigenvalue", f(&|s| s.diagnostics().max_eigenvalue)?)?;
        d.set_item("condition", f(&|s| s.diagnostics().condition)?)?;
        d.set_item("shift", f(&|s| s.diagnostics().shift)?)?;
        Ok(d)
    }

    fn inputs(&self) -> Vec<&'static str> {
        let mut names = vec!["A", "b"];
        if self.weights.is_some() {
            names.push("weights");
        }
        if self.delta.is_some() {
            names.push("delta");
        }
        names
    }

    /// Every gradient is formed (they share the work), those named in `wrt` returned.
    fn vjp<'py>(&self, py: Python<'py>, dl_dy: &Bound<'py, PyAny>, wrt: &[&str]) -> PyResult<Bound<'py, PyDict>> {
        let v = read_dl_dy(dl_dy, self.batch, self.n)?;
        let n = self.n;
        let per_sample = py.detach(|| {
            par_map(self.threads, self.count(), |i| self.grads_one(&self.samples[i], &v.data[i * n..(i + 1) * n]))
        })?;
        let grads = collect_batch(per_sample, self.batch.is_some())?;
        let out = PyDict::new(py);
        if wrt.contains(&"A") {
            out.set_item(
                "A",
                to_numpy(py, gather(&grads, self.a_batched(), self.a.data.len(), |g| &g.0), &self.a.shape)?,
            )?;
        }
        if wrt.contains(&"b") {
            out.set_item(
                "b",
                to_numpy(py, gather(&grads, self.b_batched(), self.b.data.len(), |g| &g.1), &self.b.shape)?,
            )?;
        }
        if let Some(w) = self.weights.as_ref().filter(|_| wrt.contains(&"weights")) {
            let gw = gather(&grads, self.weights_batched(), w.data.len(), |g| &g.2);
            out.set_item("weights", to_numpy(py, gw, &w.shape)?)?;
        }
        if let Some(d) = self.delta.as_ref().filter(|_| wrt.contains(&"delta")) {
            let gd = gather(&grads, self.delta_batched(), d.data.len(), |g| &g.3);
            out.set_item("delta", to_numpy(py, gd, &d.shape)?)?;
        }
        Ok(out)
    }

    fn state<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
        let args = (self.a.to_numpy(py)?, self.b.to_numpy(py)?).into_pyobject(py)?.into_any();
        let kw = PyDict::new(py);
        kw.set_item("weights", self.weights.as_ref().map(|w| w.to_numpy(py)).transpose()?)?;
        kw.set_item("delta", self.delta.as_ref().map(|d| d.to_numpy(py)).transpose()?)?;
        kw.set_item("mu", self.mu)?;
        kw.set_item("group_size", self.group_size)?;
        kw.set_item("damping", &self.damping_name)?;
        kw.set_item("lam", self.lam)?;
        kw.set_item("threads", self.threads)?;
        Ok((args, kw))
    }
}

/// Damped (robust) least squares, batched (see the package documentation for the shapes).
#[pyfunction]
#[pyo3(signature = (A, b, *, weights=None, delta=None, mu=0.0, group_size=1, damping="trust-region", lam=0.1, threads=0))]
#[allow(clippy::too_many_arguments, non_snake_case)]
pub(crate) fn robust_lstsq(
    py: Python<'_>,
    A: &Bound<'_, PyAny>,
    b: &Bound<'_, PyAny>,
    weights: Option<&Bound<'_, PyAny>>,
    delta: Option<&Bound<'_, PyAny>>,
    mu: f64,
    group_size: i64,
    damping: &str,
    lam: f64,
    threads: i64,
) -> PyResult<Solution> {
    let damping_mode = parse_damping(damping, lam)?;
    let threads = count_arg(threads, "threads")?;
    let group_size = count_arg(group_size, "group_size")?;
    if !(mu.is_finite() && mu >= 0.0) {
        return Err(value_error(format!("mu must be finite and >= 0, got {mu}")));
    }
    let a = read_array(A, "A")?;
    let b = read_array(b, "b")?;
    let weights = weights.filter(|w| !w.is_none()).map(|w| read_array(w, "weights")).transpose()?;
    let delta = delta.filter(|d| !d.is_none()).map(|d| read_array(d, "delta")).transpose()?;
    let (batch_a, m, n) = match a.shape[..] {
        [m, n] => (None, m, n),
        [bb, m, n] => (Some(bb), m, n),
        _ => return Err(value_error(format!("A must have shape (m, n) or (B, m, n), got {}", shape_str(&a.shape)))),
    };
    if m == 0 || n == 0 {
        return Err(value_error(format!("A must be non-empty, got shape {}", shape_str(&a.shape))));
    }
    let batch_b = match b.shape[..] {
        [mm] if mm == m => None,
        [bb, mm] if mm == m => Some(bb),
        _ => {
            return Err(value_error(format!(
                "b must have shape ({m},) or (B, {m}) to match A, got {}",
                shape_str(&b.shape)
            )))
        }
    };
    if group_size == 0 || m % group_size != 0 {
        return Err(value_error(format!("group_size must be >= 1 and divide the {m} rows of A, got {group_size}")));
    }
    let g = m / group_size;
    let batch_w = match weights.as_ref().map(|w| &w.shape[..]) {
        None => None,
        Some([gg]) if *gg == g => None,
        Some([bb, gg]) if *gg == g => Some(*bb),
        Some(s) => {
            return Err(value_error(format!(
                "weights must have one entry per group of {group_size} rows, shape ({g},) or (B, {g}), got {}",
                shape_str(s)
            )))
        }
    };
    if let Some(i) = weights.as_ref().and_then(|w| w.data.iter().position(|&x| x < 0.0)) {
        return Err(value_error(format!("weights must be >= 0, but element {i} (flat index) is negative")));
    }
    let batch_d = match delta.as_ref().map(|d| &d.shape[..]) {
        None | Some([]) => None,
        Some([bb]) => Some(*bb),
        Some(s) => return Err(value_error(format!("delta must be a scalar or have shape (B,), got {}", shape_str(s)))),
    };
    if let Some(i) = delta.as_ref().and_then(|d| d.data.iter().position(|&x| x <= 0.0)) {
        return Err(value_error(format!("delta must be > 0, but element {i} (flat index) is not")));
    }
    let mut batch = None;
    for (name, bb) in [("A", batch_a), ("b", batch_b), ("weights", batch_w), ("delta", batch_d)] {
        match (batch, bb) {
            (_, None) => {}
            (None, Some(bb)) => batch = Some((name, bb)),
            (Some((first, b0)), Some(bb)) if b0 != bb => {
                return Err(value_error(format!("batch sizes differ: {first} has {b0} samples, {name} has {bb}")))
            }
            _ => {}
        }
    }
    let batch = batch.map(|(_, bb)| bb);
    if batch == Some(0) {
        return Err(value_error("the batch is empty"));
    }
    let mut lb = LstsqBatch {
        a,
        b,
        weights,
        delta,
        mu,
        group_size,
        damping_name: damping.to_string(),
        lam,
        threads,
        batch,
        m,
        n,
        samples: Vec::new(),
    };
    let results = py.detach(|| par_map(lb.threads, lb.count(), |i| lb.solve_one(i, damping_mode)))?;
    lb.samples = collect_batch(results, lb.batch.is_some())?;
    Ok(Solution { inner: Box::new(lb) })
}
