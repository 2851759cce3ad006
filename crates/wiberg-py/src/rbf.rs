//! `rbf_argmin`: the argmin of `E(y) = -sum_k a_k exp(-|y - c_k|^2 / s_k^2)`, batched, with its
//! vector-Jacobian product with respect to the widths, weights and centres.

use crate::arrays::{gather, read_array, read_dl_dy, shape_str, to_numpy, Arr};
use crate::solution::{Solution, Solved};
use crate::{collect_batch, count_arg, par_map, parse_damping, stop_name, value_error};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::borrow::Cow;
use wiberg::{ArgminLayer, LbfgsConfig, Minimizer, RbfMixture, Start, WibergError};

/// A batch of RBF argmin problems and their solutions.
pub(crate) struct RbfBatch {
    centers: Arr,
    sigma: Arr,
    weights: Option<Arr>,
    /// `Some(B)` when any input has a batch dimension.
    batch: Option<usize>,
    k: usize,
    n: usize,
    damping: String,
    lam: f64,
    lbfgs_iterations: usize,
    polish: bool,
    pub threads: usize,
    layer: ArgminLayer,
    /// One mixture per sample, or a single one shared by all (centres without a batch dimension).
    mixtures: Vec<RbfMixture>,
    solutions: Vec<wiberg::Solution>,
}

/// Per-sample slice of an input that may have a batch dimension (`batched`) or not.
fn sample(a: &Arr, batched: bool, per_sample: usize, b: usize) -> &[f64] {
    if batched {
        &a.data[b * per_sample..(b + 1) * per_sample]
    } else {
        &a.data
    }
}

impl RbfBatch {
    fn centers_batched(&self) -> bool {
        self.centers.ndim() == 3
    }

    fn sigma_batched(&self) -> bool {
        self.sigma.ndim() == 2
    }

    fn weights_batched(&self) -> bool {
        self.weights.as_ref().is_some_and(|w| w.ndim() == 2)
    }

    fn count(&self) -> usize {
        self.batch.unwrap_or(1)
    }

    /// Number of width parameters: 1 (shared) or K.
    fn num_sigma(&self) -> usize {
        if self.sigma.ndim() == 0 {
            1
        } else {
            self.k
        }
    }

    /// The parameter vector `w = (widths, weights)` of sample `b`: the widths' own slice when
    /// there are no weights (no allocation per sample).
    fn params(&self, b: usize) -> Cow<'_, [f64]> {
        let widths = sample(&self.sigma, self.sigma_batched(), self.k, b);
        match &self.weights {
            None => Cow::Borrowed(widths),
            Some(a) => {
                let mut w = widths.to_vec();
                w.extend_from_slice(sample(a, self.weights_batched(), self.k, b));
                Cow::Owned(w)
            }
        }
    }

    fn mixture(&self, b: usize) -> &RbfMixture {
        &self.mixtures[if self.mixtures.len() == 1 { 0 } else { b }]
    }

    fn build_mixture(&self, centers: &[f64]) -> Result<RbfMixture, WibergError> {
        let ps = self.num_sigma();
        let width_index = if ps == 1 { vec![0; self.k] } else { (0..self.k).collect() };
        let weight_index = self.weights.as_ref().map(|_| (ps..ps + self.k).collect());
        let p = ps + if self.weights.is_some() { self.k } else { 0 };
        RbfMixture::new(self.n, centers.to_vec(), width_index, weight_index, p)
    }

    /// Solves every sample (GIL released by the caller). With a batch of centres, each
    /// sample's mixture is built where it is solved, while its arrays are in cache.
    fn solve(&mut self) -> PyResult<()> {
        let kn = self.k * self.n;
        let this = &*self;
        let solve_one = |e: &RbfMixture, b: usize| this.layer.forward(e, &this.params(b), Start::Seeds(e.centers()));
        if self.centers_batched() {
            let results = par_map(self.threads, self.count(), |b| {
                let e = this.build_mixture(sample(&this.centers, true, kn, b))?;
                let sol = solve_one(&e, b)?;
                Ok((e, sol))
            })?;
            (self.mixtures, self.solutions) = collect_batch(results, true)?.into_iter().unzip();
        } else {
            let e = self.build_mixture(&self.centers.data).map_err(|err| crate::to_py_err(&err, ""))?;
            let results = par_map(self.threads, self.count(), |b| solve_one(&e, b))?;
            self.solutions = collect_batch(results, self.batch.is_some())?;
            self.mixtures = vec![e];
        }
        Ok(())
    }
}

impl Solved for RbfBatch {
    fn kind(&self) -> &'static str {
        "rbf_argmin"
    }

    /// Number of samples.
    fn len(&self) -> usize {
        self.count()
    }

    fn y<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let data: Vec<f64> = self.solutions.iter().flat_map(|s| s.y.iter().copied()).collect();
        match self.batch {
            Some(b) => to_numpy(py, data, &[b, self.n]),
            None => to_numpy(py, data, &[self.n]),
        }
    }

    fn report<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let reports: Vec<&wiberg::Report> = self.solutions.iter().map(|s| &s.report).collect();
        let shape: Vec<usize> = self.batch.map(|b| vec![b]).unwrap_or_default();
        let d = PyDict::new(py);
        let f = |g: &dyn Fn(&wiberg::Report) -> f64| -> PyResult<Bound<'py, PyAny>> {
            to_numpy(py, reports.iter().map(|r| g(r)).collect(), &shape)
        };
        let i = |g: &dyn Fn(&wiberg::Report) -> i64| -> PyResult<Bound<'py, PyAny>> {
            to_numpy(py, reports.iter().map(|r| g(r)).collect(), &shape)
        };
        let flag = |g: &dyn Fn(&wiberg::Report) -> bool| -> PyResult<Bound<'py, PyAny>> {
            to_numpy(py, reports.iter().map(|r| g(r)).collect(), &shape)
        };
        d.set_item("converged", flag(&|r| r.converged)?)?;
        d.set_item("iterations", i(&|r| r.iterations as i64)?)?;
        d.set_item("evaluations", i(&|r| r.evaluations as i64)?)?;
        d.set_item("grad_norm", f(&|r| r.final_grad_norm)?)?;
        d.set_item("inner_grad_norm", f(&|r| r.grad_norm)?)?;
        d.set_item("energy", f(&|r| r.energy)?)?;
        d.set_item("seed_index", i(&|r| r.seed_index.map_or(-1, |s| s as i64))?)?;
        d.set_item("polished", flag(&|r| r.polished)?)?;
        d.set_item("min_eigenvalue", f(&|r| r.diagnostics.min_eigenvalue)?)?;
        d.set_item("max_eigenvalue", f(&|r| r.diagnostics.max_eigenvalue)?)?;
        d.set_item("condition", f(&|r| r.diagnostics.condition)?)?;
        d.set_item("shift", f(&|r| r.diagnostics.shift)?)?;
        let stops: Vec<String> = reports.iter().map(|r| stop_name(r.stop).to_string()).collect();
        let np = py.import("numpy")?;
        d.set_item("stop", np.call_method1("array", (stops,))?.call_method1("reshape", (shape.clone(),))?)?;
        Ok(d)
    }

    fn inputs(&self) -> Vec<&'static str> {
        let mut names = vec!["sigma"];
        if self.weights.is_some() {
            names.push("weights");
        }
        names.push("centers");
        names
    }

    /// `dl/d(sigma, weights, centers)` from `dl/dy`, those named in `wrt`: the centres'
    /// gradient (another pass over the kernels per sample) only when asked for.
    fn vjp<'py>(&self, py: Python<'py>, dl_dy: &Bound<'py, PyAny>, wrt: &[&str]) -> PyResult<Bound<'py, PyDict>> {
        let v = read_dl_dy(dl_dy, self.batch, self.n)?;
        let n = self.n;
        let kn = self.k * self.n;
        let wants_centers = wrt.contains(&"centers");
        let per_sample = py.detach(|| {
            par_map(self.threads, self.count(), |b| {
                let e = self.mixture(b);
                let w = self.params(b);
                let sol = &self.solutions[b];
                let back = self.layer.backward(e, &w, sol, &v.data[b * n..(b + 1) * n])?;
                let mut dc = Vec::new();
                if wants_centers {
                    dc.resize(kn, 0.0);
                    e.centers_vjp(sol.linearization_point(), &w, &back.u, &mut dc);
                    if !dc.iter().all(|x| x.is_finite()) {
                        return Err(WibergError::NonFinite { what: "gradient dl/dcenters".into() });
                    }
                }
                Ok((back.grad_w, dc))
            })
        })?;
        let grads = collect_batch(per_sample, self.batch.is_some())?;
        let ps = self.num_sigma();
        let out = PyDict::new(py);
        if wrt.contains(&"sigma") {
            let g_sigma = gather(&grads, self.sigma_batched(), self.sigma.data.len(), |g| &g.0[..ps]);
            out.set_item("sigma", to_numpy(py, g_sigma, &self.sigma.shape)?)?;
        }
        if let Some(wts) = self.weights.as_ref().filter(|_| wrt.contains(&"weights")) {
            let g_w = gather(&grads, self.weights_batched(), wts.data.len(), |g| &g.0[ps..]);
            out.set_item("weights", to_numpy(py, g_w, &wts.shape)?)?;
        }
        if wants_centers {
            let g_c = gather(&grads, self.centers_batched(), self.centers.data.len(), |g| &g.1);
            out.set_item("centers", to_numpy(py, g_c, &self.centers.shape)?)?;
        }
        Ok(out)
    }

    /// The arguments that rebuild this solution: `(args, kwargs)` of `rbf_argmin`.
    fn state<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
        let weights = match &self.weights {
            Some(w) => w.to_numpy(py)?,
            None => py.None().into_bound(py),
        };
        let args = (self.centers.to_numpy(py)?, self.sigma.to_numpy(py)?, weights).into_pyobject(py)?.into_any();
        let kw = PyDict::new(py);
        kw.set_item("damping", &self.damping)?;
        kw.set_item("lam", self.lam)?;
        kw.set_item("lbfgs_iterations", self.lbfgs_iterations)?;
        kw.set_item("polish", self.polish)?;
        kw.set_item("threads", self.threads)?;
        Ok((args, kw))
    }
}

/// The argmin of `E(y) = -sum_k a_k exp(-|y - c_k|^2 / s_k^2)`, seeded at the lowest-energy
/// centre (see the package documentation for the shapes).
#[pyfunction]
#[pyo3(signature = (centers, sigma, weights=None, *, damping="trust-region", lam=0.1, lbfgs_iterations=10, polish=true, threads=0))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn rbf_argmin(
    py: Python<'_>,
    centers: &Bound<'_, PyAny>,
    sigma: &Bound<'_, PyAny>,
    weights: Option<&Bound<'_, PyAny>>,
    damping: &str,
    lam: f64,
    lbfgs_iterations: i64,
    polish: bool,
    threads: i64,
) -> PyResult<Solution> {
    let damping_mode = parse_damping(damping, lam)?;
    let lbfgs_iterations = count_arg(lbfgs_iterations, "lbfgs_iterations")?;
    let threads = count_arg(threads, "threads")?;
    let centers = read_array(centers, "centers")?;
    let sigma = read_array(sigma, "sigma")?;
    let weights = weights.filter(|w| !w.is_none()).map(|w| read_array(w, "weights")).transpose()?;
    let (batch_c, k, n) = match centers.shape[..] {
        [k] => (None, k, 1),
        [k, n] => (None, k, n),
        [b, k, n] => (Some(b), k, n),
        _ => {
            return Err(value_error(format!(
                "centers must have shape (K,), (K, n) or (B, K, n), got {}",
                shape_str(&centers.shape)
            )))
        }
    };
    if k == 0 || n == 0 || batch_c == Some(0) {
        return Err(value_error(format!(
            "centers must hold at least one kernel of dimension >= 1 (and a non-empty batch), got shape {}",
            shape_str(&centers.shape)
        )));
    }
    let batch_s = match sigma.shape[..] {
        [] => None,
        [kk] if kk == k => None,
        [b, kk] if kk == k => Some(b),
        _ => {
            return Err(value_error(format!(
                "sigma must be a scalar or have shape ({k},) or (B, {k}), got {}",
                shape_str(&sigma.shape)
            )))
        }
    };
    if let Some(i) = sigma.data.iter().position(|&s| s <= 0.0) {
        return Err(value_error(format!("sigma must be > 0, but element {i} (flat index) is {}", sigma.data[i])));
    }
    let batch_w = match weights.as_ref().map(|w| &w.shape[..]) {
        None => None,
        Some([kk]) if *kk == k => None,
        Some([b, kk]) if *kk == k => Some(*b),
        Some(s) => {
            return Err(value_error(format!("weights must have shape ({k},) or (B, {k}), got {}", shape_str(s))))
        }
    };
    let mut batch = None;
    for (name, b) in [("centers", batch_c), ("sigma", batch_s), ("weights", batch_w)] {
        match (batch, b) {
            (_, None) => {}
            (None, Some(b)) => batch = Some((name, b)),
            (Some((first, b0)), Some(b)) if b0 != b => {
                return Err(value_error(format!("batch sizes differ: {first} has {b0} samples, {name} has {b}")))
            }
            _ => {}
        }
    }
    let batch = batch.map(|(_, b)| b);
    if batch == Some(0) {
        return Err(value_error("the batch is empty"));
    }
    let minimizer = if lbfgs_iterations > 0 {
        Minimizer::Lbfgs(LbfgsConfig::with_max_iters(lbfgs_iterations))
    } else {
        Minimizer::None
    };
    let layer = ArgminLayer { minimizer, polish, damping: damping_mode, ..Default::default() };
    let mut rb = RbfBatch {
        centers,
        sigma,
        weights,
        batch,
        k,
        n,
        damping: damping.to_string(),
        lam,
        lbfgs_iterations,
        polish,
        threads,
        layer,
        mixtures: Vec::new(),
        solutions: Vec::new(),
    };
    py.detach(|| rb.solve())?;
    Ok(Solution { inner: Box::new(rb) })
}

/// Measurement hook for the overhead benchmark: seconds per call of the plain Rust work that
/// `rbf_argmin(centers, sigma)` does for one 1-D sample (build the mixture, seed at the lowest
/// centre, L-BFGS, polish), timed in Rust over `repeats` calls with the GIL released.
#[pyfunction]
#[pyo3(signature = (centers, sigma, repeats, *, damping="trust-region", lam=0.1, lbfgs_iterations=10))]
pub(crate) fn _rust_rbf_seconds_per_call(
    py: Python<'_>,
    centers: &Bound<'_, PyAny>,
    sigma: f64,
    repeats: i64,
    damping: &str,
    lam: f64,
    lbfgs_iterations: i64,
) -> PyResult<f64> {
    let damping = parse_damping(damping, lam)?;
    let repeats = count_arg(repeats, "repeats")?.max(1);
    let lbfgs_iterations = count_arg(lbfgs_iterations, "lbfgs_iterations")?;
    let c = read_array(centers, "centers")?;
    if c.ndim() != 1 || c.data.is_empty() {
        return Err(value_error("centers must have shape (K,) with K >= 1"));
    }
    let minimizer = if lbfgs_iterations > 0 {
        Minimizer::Lbfgs(LbfgsConfig::with_max_iters(lbfgs_iterations))
    } else {
        Minimizer::None
    };
    let layer = ArgminLayer { minimizer, damping, ..Default::default() };
    let result = py.detach(|| {
        let start = std::time::Instant::now();
        let mut sink = 0.0;
        for _ in 0..repeats {
            let e = RbfMixture::shared_width(1, c.data.clone())?;
            let sol = layer.forward(&e, &[sigma], Start::Seeds(e.centers()))?;
            sink += sol.y[0];
        }
        std::hint::black_box(sink);
        Ok::<f64, WibergError>(start.elapsed().as_secs_f64() / repeats as f64)
    });
    result.map_err(|e| crate::to_py_err(&e, ""))
}
