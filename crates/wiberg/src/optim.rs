//! Outer optimisers for the energy parameters `w`: SGD (momentum, Nesterov), ASGD with
//! PyTorch's semantics, Adam (PyTorch's or TensorFlow's epsilon), and box clipping.
//!
//! Every `step` refuses a gradient of the wrong length or with a NaN/infinity (typed error,
//! parameters untouched), so a bad sample can never poison the parameters silently. A step
//! is computed into temporaries and committed only when the new parameters and the
//! optimiser's state are all finite: an overflowing step (learning rate too large for the
//! gradient) is a [`WibergError::NonFinite`] with the parameters and the state unchanged.

use crate::error::{check_finite, check_len, WibergError};
use crate::Result;
use serde::{Deserialize, Serialize};

/// A first-order optimiser over a flat parameter vector.
pub trait Optimizer {
    /// One update of `params` from `grad` (the gradient of the loss to minimise).
    fn step(&mut self, params: &mut [f64], grad: &[f64]) -> Result<()>;
}

/// Any of the library's optimisers as one concrete, serialisable type, so that a training
/// checkpoint can store the whole state of whichever optimiser the user chose (serialised as
/// `{"sgd": {...}}`, `{"asgd": {...}}` or `{"adam": {...}}`).
///
/// ```
/// use wiberg::optim::{Adam, AnyOptimizer, Optimizer};
/// let mut opt = AnyOptimizer::Adam(Adam::new(0.1).unwrap());
/// let mut x = [1.0];
/// opt.step(&mut x, &[2.0]).unwrap(); // Adam's first step moves by the learning rate
/// assert!((x[0] - 0.9).abs() < 1e-6);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnyOptimizer {
    /// SGD with momentum.
    Sgd(Sgd),
    /// Averaged SGD.
    Asgd(Asgd),
    /// Adam.
    Adam(Adam),
}

impl Optimizer for AnyOptimizer {
    fn step(&mut self, params: &mut [f64], grad: &[f64]) -> Result<()> {
        match self {
            AnyOptimizer::Sgd(o) => o.step(params, grad),
            AnyOptimizer::Asgd(o) => o.step(params, grad),
            AnyOptimizer::Adam(o) => o.step(params, grad),
        }
    }
}

fn check_step(params: &[f64], grad: &[f64]) -> Result<()> {
    check_len(grad.len(), params.len(), "gradient")?;
    check_finite(grad, "gradient passed to the optimiser")
}

fn check_lr(lr: f64) -> Result<()> {
    if lr.is_finite() && lr > 0.0 {
        Ok(())
    } else {
        Err(WibergError::InvalidArgument(format!("learning rate must be finite and > 0, got {lr}")))
    }
}

/// Stochastic gradient descent with optional (Nesterov) momentum, PyTorch's formulation:
/// `b <- momentum b + g`, step `g + momentum b` (Nesterov) or `b`.
///
/// ```
/// use wiberg::optim::{Optimizer, Sgd};
/// let mut sgd = Sgd::new(0.1, 0.0).unwrap();
/// let mut w = [1.0];
/// sgd.step(&mut w, &[2.0]).unwrap();
/// assert!((w[0] - 0.8).abs() < 1e-15);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f64,
    /// Momentum in `[0, 1)`.
    pub momentum: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    buffer: Option<Vec<f64>>,
}

impl Sgd {
    /// SGD with learning rate `lr` and momentum (0 for none).
    pub fn new(lr: f64, momentum: f64) -> Result<Self> {
        check_lr(lr)?;
        if !(0.0..1.0).contains(&momentum) {
            return Err(WibergError::InvalidArgument(format!("momentum must be in [0, 1), got {momentum}")));
        }
        Ok(Sgd { lr, momentum, nesterov: false, buffer: None })
    }

    /// Switches Nesterov momentum on.
    pub fn nesterov(mut self) -> Self {
        self.nesterov = true;
        self
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut [f64], grad: &[f64]) -> Result<()> {
        check_step(params, grad)?;
        let mut new_params = params.to_vec();
        if self.momentum == 0.0 {
            for (p, g) in new_params.iter_mut().zip(grad) {
                *p -= self.lr * g;
            }
            check_finite(&new_params, "parameters after the SGD step (learning rate too large?)")?;
            params.copy_from_slice(&new_params);
            return Ok(());
        }
        // PyTorch: the buffer starts as a copy of the first gradient.
        let first = self.buffer.is_none();
        let mut buf = match &self.buffer {
            Some(b) if b.len() != grad.len() => {
                return Err(WibergError::DimensionMismatch {
                    what: "SGD momentum buffer".into(),
                    expected: b.len(),
                    got: grad.len(),
                })
            }
            Some(b) => b.clone(),
            None => grad.to_vec(),
        };
        for ((p, g), b) in new_params.iter_mut().zip(grad).zip(buf.iter_mut()) {
            if !first {
                *b = self.momentum * *b + g;
            }
            let d = if self.nesterov { g + self.momentum * *b } else { *b };
            *p -= self.lr * d;
        }
        check_finite(&buf, "SGD momentum buffer after the step (gradient too large?)")?;
        check_finite(&new_params, "parameters after the SGD step (learning rate too large?)")?;
        params.copy_from_slice(&new_params);
        self.buffer = Some(buf);
        Ok(())
    }
}

/// Averaged SGD with PyTorch's semantics (`torch.optim.ASGD`): per step `t = 1, 2, ...`
/// `w <- w (1 - lambd eta) - eta g`, then the average `ax` is updated with `mu`, and
/// `eta <- lr / (1 + lambd lr t)^alpha`, `mu <- 1 / max(1, t - t0)`.
///
/// ```
/// use wiberg::optim::{Asgd, Optimizer};
/// let mut opt = Asgd::new(0.5, 5e-4, 0.75, 0.0).unwrap();
/// let mut w = [1.0];
/// opt.step(&mut w, &[0.2]).unwrap();
/// assert!((w[0] - (1.0 * (1.0 - 5e-4 * 0.5) - 0.5 * 0.2)).abs() < 1e-15);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Asgd {
    /// Learning rate.
    pub lr: f64,
    /// Decay term.
    pub lambd: f64,
    /// Power of the step-size decay.
    pub alpha: f64,
    /// Step at which averaging starts.
    pub t0: f64,
    step: u64,
    eta: f64,
    mu: f64,
    average: Option<Vec<f64>>,
}

impl Asgd {
    /// ASGD with PyTorch's parameters (`lr`, `lambd`, `alpha`, `t0`). Refused
    /// (`InvalidArgument`): a non-finite or non-positive `lr`, `lambd < 0`, `alpha < 0` (the
    /// step size would grow with `t`), `lambd * lr >= 2` (divergent decay), non-finite values.
    pub fn new(lr: f64, lambd: f64, alpha: f64, t0: f64) -> Result<Self> {
        check_lr(lr)?;
        if !(lambd.is_finite() && lambd >= 0.0 && alpha.is_finite() && alpha >= 0.0 && t0.is_finite()) {
            return Err(WibergError::InvalidArgument(format!(
                "ASGD needs finite lambd >= 0, alpha >= 0 and t0, got {lambd}, {alpha}, {t0}"
            )));
        }
        // eta <= lr for alpha >= 0, so the decay 1 - lambd eta stays in (-1, 1].
        if lambd * lr >= 2.0 {
            return Err(WibergError::InvalidArgument(format!(
                "ASGD needs lambd * lr < 2 (else the decay 1 - lambd lr is below -1 and w diverges), got {lambd:e} * {lr:e}"
            )));
        }
        Ok(Asgd { lr, lambd, alpha, t0, step: 0, eta: lr, mu: 1.0, average: None })
    }

    /// The current step size `eta`.
    pub fn eta(&self) -> f64 {
        self.eta
    }

    /// The averaged parameters `ax` (None before the first step).
    pub fn averaged(&self) -> Option<&[f64]> {
        self.average.as_deref()
    }
}

impl Optimizer for Asgd {
    fn step(&mut self, params: &mut [f64], grad: &[f64]) -> Result<()> {
        check_step(params, grad)?;
        if let Some(ax) = &self.average {
            check_len(params.len(), ax.len(), "parameters (ASGD average)")?;
        }
        let step = self.step + 1;
        let decay = 1.0 - self.lambd * self.eta;
        let new_params: Vec<f64> = params.iter().zip(grad).map(|(p, g)| p * decay - self.eta * g).collect();
        let new_average: Vec<f64> = match &self.average {
            Some(ax) if self.mu != 1.0 => ax.iter().zip(&new_params).map(|(a, p)| a + (p - a) * self.mu).collect(),
            _ => new_params.clone(),
        };
        let t = step as f64;
        let eta = self.lr / (1.0 + self.lambd * self.lr * t).powf(self.alpha);
        let mu = 1.0 / (t - self.t0).max(1.0);
        check_finite(&new_params, "parameters after the ASGD step (learning rate too large?)")?;
        check_finite(&new_average, "ASGD average after the step")?;
        check_finite(&[eta, mu], "ASGD step size")?;
        params.copy_from_slice(&new_params);
        self.average = Some(new_average);
        self.step = step;
        self.eta = eta;
        self.mu = mu;
        Ok(())
    }
}

/// Where Adam adds its `eps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AdamEpsilon {
    /// PyTorch: `m_hat / (sqrt(v_hat) + eps)`.
    #[default]
    PyTorch,
    /// TensorFlow 1 (`tf.train.AdamOptimizer`): `lr_t m / (sqrt(v) + eps)` with
    /// `lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)` (the "epsilon hat" of Kingma & Ba). Differs
    /// from PyTorch when `eps` is large, as in the pose experiment (`eps = 0.1`).
    TensorFlow,
}

/// Adam (Kingma & Ba).
///
/// ```
/// use wiberg::optim::{Adam, Optimizer};
/// let mut opt = Adam::new(0.1).unwrap();
/// let mut w = [1.0];
/// opt.step(&mut w, &[3.0]).unwrap(); // first step moves by about lr
/// assert!((w[0] - 0.9).abs() < 1e-6);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator guard.
    pub eps: f64,
    /// Where `eps` enters.
    pub epsilon_mode: AdamEpsilon,
    t: u64,
    m: Vec<f64>,
    v: Vec<f64>,
}

impl Adam {
    /// Adam with `lr` and the usual defaults (0.9, 0.999, 1e-8, PyTorch epsilon).
    pub fn new(lr: f64) -> Result<Self> {
        Adam::with_params(lr, 0.9, 0.999, 1e-8, AdamEpsilon::PyTorch)
    }

    /// Adam with every setting given.
    pub fn with_params(lr: f64, beta1: f64, beta2: f64, eps: f64, epsilon_mode: AdamEpsilon) -> Result<Self> {
        check_lr(lr)?;
        if !((0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps.is_finite() && eps > 0.0) {
            return Err(WibergError::InvalidArgument(format!(
                "Adam needs betas in [0, 1) and eps > 0, got {beta1}, {beta2}, {eps}"
            )));
        }
        Ok(Adam { lr, beta1, beta2, eps, epsilon_mode, t: 0, m: Vec::new(), v: Vec::new() })
    }

    /// Number of steps taken.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// The moment estimates `(m, v)` (for checkpoints).
    pub fn moments(&self) -> (&[f64], &[f64]) {
        (&self.m, &self.v)
    }

    /// Restores the state saved from [`Adam::steps`] and [`Adam::moments`].
    pub fn restore(&mut self, steps: u64, m: Vec<f64>, v: Vec<f64>) -> Result<()> {
        check_len(v.len(), m.len(), "Adam second moments")?;
        check_finite(&m, "Adam first moments")?;
        check_finite(&v, "Adam second moments")?;
        self.t = steps;
        self.m = m;
        self.v = v;
        Ok(())
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &mut [f64], grad: &[f64]) -> Result<()> {
        check_step(params, grad)?;
        let (mut m, mut v) = if self.m.is_empty() {
            (vec![0.0; params.len()], vec![0.0; params.len()])
        } else {
            check_len(params.len(), self.m.len(), "parameters (Adam state)")?;
            (self.m.clone(), self.v.clone())
        };
        let steps = self.t + 1;
        let t = i32::try_from(steps).unwrap_or(i32::MAX);
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let mut new_params = params.to_vec();
        for i in 0..params.len() {
            let g = grad[i];
            m[i] = self.beta1 * m[i] + (1.0 - self.beta1) * g;
            v[i] = self.beta2 * v[i] + (1.0 - self.beta2) * g * g;
            new_params[i] -= match self.epsilon_mode {
                AdamEpsilon::PyTorch => self.lr * (m[i] / bc1) / ((v[i] / bc2).sqrt() + self.eps),
                AdamEpsilon::TensorFlow => self.lr * bc2.sqrt() / bc1 * m[i] / (v[i].sqrt() + self.eps),
            };
        }
        check_finite(&m, "Adam first moments after the step (gradient too large?)")?;
        check_finite(&v, "Adam second moments after the step (gradient too large?)")?;
        check_finite(&new_params, "parameters after the Adam step (learning rate too large?)")?;
        params.copy_from_slice(&new_params);
        self.m = m;
        self.v = v;
        self.t = steps;
        Ok(())
    }
}

/// Per-parameter box constraints `lower <= w <= upper`, applied after each step.
///
/// ```
/// use wiberg::optim::BoxConstraints;
/// let b = BoxConstraints::new(vec![0.0, -1.0], vec![1.0, 1.0]).unwrap();
/// let mut w = [2.0, -3.0];
/// b.project(&mut w).unwrap();
/// assert_eq!(w, [1.0, -1.0]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoxConstraints {
    lower: Vec<f64>,
    upper: Vec<f64>,
}

impl BoxConstraints {
    /// Bounds per parameter; infinities are allowed, NaN and `lower > upper` are not.
    pub fn new(lower: Vec<f64>, upper: Vec<f64>) -> Result<Self> {
        check_len(upper.len(), lower.len(), "upper bounds")?;
        let empty =
            |lo: f64, hi: f64| lo.is_nan() || hi.is_nan() || lo > hi || lo == f64::INFINITY || hi == f64::NEG_INFINITY;
        if let Some(i) = (0..lower.len()).find(|&i| empty(lower[i], upper[i])) {
            return Err(WibergError::InvalidArgument(format!(
                "bounds of parameter {i} are [{}, {}]",
                lower[i], upper[i]
            )));
        }
        Ok(BoxConstraints { lower, upper })
    }

    /// Unbounded box for `n` parameters.
    pub fn unbounded(n: usize) -> Self {
        BoxConstraints { lower: vec![f64::NEG_INFINITY; n], upper: vec![f64::INFINITY; n] }
    }

    /// Sets the bounds of the parameters in `range`.
    pub fn set(&mut self, range: std::ops::Range<usize>, lower: f64, upper: f64) -> Result<()> {
        if range.end > self.lower.len() || !(lower <= upper && lower < f64::INFINITY && upper > f64::NEG_INFINITY) {
            return Err(WibergError::InvalidArgument(format!("bounds [{lower}, {upper}] for parameters {range:?}")));
        }
        self.lower[range.clone()].fill(lower);
        self.upper[range].fill(upper);
        Ok(())
    }

    /// Clips `w` into the box.
    pub fn project(&self, w: &mut [f64]) -> Result<()> {
        check_len(w.len(), self.lower.len(), "parameters to clip")?;
        for ((x, lo), hi) in w.iter_mut().zip(&self.lower).zip(&self.upper) {
            *x = x.clamp(*lo, *hi);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asgd_matches_pytorch_reference() {
        // torch.optim.ASGD([w], lr=0.5, lambd=5e-4, alpha=0.75, t0=0) with w = 1 and grads
        // 0.2, -0.1, 0.3: eta_t = lr / (1 + lambd lr t)^alpha after step t.
        let mut opt = Asgd::new(0.5, 5e-4, 0.75, 0.0).unwrap();
        let mut w = [1.0];
        let mut expect = 1.0;
        let mut eta: f64 = 0.5;
        for (t, g) in [0.2, -0.1, 0.3].iter().enumerate() {
            expect = expect * (1.0 - 5e-4 * eta) - eta * g;
            opt.step(&mut w, &[*g]).unwrap();
            eta = 0.5 / (1.0 + 5e-4 * 0.5 * (t + 1) as f64).powf(0.75);
            assert!((w[0] - expect).abs() < 1e-15);
            assert!((opt.eta() - eta).abs() < 1e-15);
        }
        // t0 = 0: mu = 1/max(1, t), so ax is the running mean from step 2 on.
        assert!(opt.averaged().is_some());
    }

    #[test]
    fn sgd_momentum_matches_pytorch() {
        // PyTorch: b1 = g1; b_t = m b + g_t; w -= lr b.
        let mut opt = Sgd::new(0.1, 0.9).unwrap();
        let mut w = [0.0];
        opt.step(&mut w, &[1.0]).unwrap();
        assert!((w[0] + 0.1).abs() < 1e-15);
        opt.step(&mut w, &[1.0]).unwrap();
        assert!((w[0] + 0.1 + 0.19).abs() < 1e-15);
        let mut nes = Sgd::new(0.1, 0.9).unwrap().nesterov();
        let mut w = [0.0];
        nes.step(&mut w, &[1.0]).unwrap();
        assert!((w[0] + 0.19).abs() < 1e-15);
    }

    #[test]
    fn adam_epsilon_modes_differ_with_large_eps() {
        let mut a = Adam::with_params(0.05, 0.9, 0.999, 0.1, AdamEpsilon::PyTorch).unwrap();
        let mut b = Adam::with_params(0.05, 0.9, 0.999, 0.1, AdamEpsilon::TensorFlow).unwrap();
        let (mut wa, mut wb) = ([0.0], [0.0]);
        a.step(&mut wa, &[0.01]).unwrap();
        b.step(&mut wb, &[0.01]).unwrap();
        // PyTorch: 0.05 * 0.01 / (0.01 + 0.1); TF: 0.05 sqrt(0.001)/0.1 * 0.001 / (sqrt(1e-7) + 0.1).
        assert!((wa[0] + 0.05 * 0.01 / 0.11).abs() < 1e-12);
        let tf = 0.05 * 0.001f64.sqrt() / 0.1 * 0.001 / (1e-7f64.sqrt() + 0.1);
        assert!((wb[0] + tf).abs() < 1e-12);
    }

    #[test]
    fn non_finite_gradient_is_refused_and_params_untouched() {
        let mut opt = Adam::new(0.1).unwrap();
        let mut w = [1.0, 2.0];
        assert!(opt.step(&mut w, &[f64::NAN, 0.0]).is_err());
        assert_eq!(w, [1.0, 2.0]);
        assert!(opt.step(&mut w, &[1.0]).is_err());
        assert!(Sgd::new(-1.0, 0.0).is_err());
        assert!(Asgd::new(0.5, -1.0, 0.75, 0.0).is_err());
    }

    fn is_non_finite(r: Result<()>) -> bool {
        matches!(r, Err(WibergError::NonFinite { .. }))
    }

    #[test]
    fn overflowing_step_is_an_error_with_params_and_state_unchanged() {
        let huge = [1e308, -1.0];
        // Plain SGD: 1 - 10 * 1e308 = -inf.
        let mut sgd = Sgd::new(10.0, 0.0).unwrap();
        let mut w = [1.0, 2.0];
        assert!(is_non_finite(sgd.step(&mut w, &huge)));
        assert_eq!(w, [1.0, 2.0]);
        // Momentum: the refused step must not leave an infinite buffer behind, so the next
        // steps equal those of a fresh optimiser.
        let mut sgd = Sgd::new(10.0, 0.9).unwrap().nesterov();
        let mut fresh = Sgd::new(10.0, 0.9).unwrap().nesterov();
        let (mut w, mut w_fresh) = ([1.0, 2.0], [1.0, 2.0]);
        sgd.step(&mut w, &[0.5, 0.5]).unwrap();
        fresh.step(&mut w_fresh, &[0.5, 0.5]).unwrap();
        assert!(is_non_finite(sgd.step(&mut w, &huge)));
        assert_eq!(w, w_fresh);
        sgd.step(&mut w, &[0.1, 0.2]).unwrap();
        fresh.step(&mut w_fresh, &[0.1, 0.2]).unwrap();
        assert_eq!(w, w_fresh);
        // ASGD: same, and the step counter and eta do not move.
        let mut asgd = Asgd::new(10.0, 1e-4, 0.75, 0.0).unwrap();
        let mut w = [1.0, 2.0];
        asgd.step(&mut w, &[0.1, 0.1]).unwrap();
        let (before, eta, avg) = (w, asgd.eta(), asgd.averaged().unwrap().to_vec());
        assert!(is_non_finite(asgd.step(&mut w, &huge)));
        assert_eq!((w, asgd.eta(), asgd.averaged().unwrap().to_vec()), (before, eta, avg));
        // Adam: the update itself stays finite (m / sqrt(v)), but v = g^2 overflows: refused,
        // and the step count and moments are unchanged.
        let mut adam = Adam::new(10.0).unwrap();
        let mut w = [1.0, 2.0];
        adam.step(&mut w, &[0.1, 0.1]).unwrap();
        let (before, steps, m) = (w, adam.steps(), adam.moments().0.to_vec());
        assert!(is_non_finite(adam.step(&mut w, &huge)));
        assert_eq!((w, adam.steps(), adam.moments().0.to_vec()), (before, steps, m));
        // Parameters near the top of the range: a moderate step overflows them.
        let mut sgd = Sgd::new(10.0, 0.0).unwrap();
        let mut w = [f64::MAX];
        assert!(is_non_finite(sgd.step(&mut w, &[-1e300])));
        assert_eq!(w, [f64::MAX]);
    }

    #[test]
    fn invalid_hyper_parameters_are_refused_at_construction() {
        let invalid = |r: Result<()>| matches!(r, Err(WibergError::InvalidArgument(_)));
        assert!(invalid(Asgd::new(0.5, 5e-4, -0.75, 0.0).map(|_| ())));
        assert!(invalid(Asgd::new(0.5, 5e-4, f64::NAN, 0.0).map(|_| ())));
        assert!(invalid(Asgd::new(0.5, 5e-4, 0.75, f64::INFINITY).map(|_| ())));
        assert!(invalid(Asgd::new(10.0, 0.3, 0.75, 0.0).map(|_| ())), "lambd * lr = 3 diverges");
        assert!(invalid(Asgd::new(0.0, 5e-4, 0.75, 0.0).map(|_| ())));
        assert!(Asgd::new(0.5, 5e-4, 0.0, 0.0).is_ok(), "alpha = 0 (constant step) is valid");
        assert!(invalid(Sgd::new(f64::INFINITY, 0.0).map(|_| ())));
        assert!(invalid(Sgd::new(0.1, 1.0).map(|_| ())));
        assert!(invalid(Sgd::new(0.1, f64::NAN).map(|_| ())));
        assert!(invalid(Adam::with_params(0.1, 1.0, 0.999, 1e-8, AdamEpsilon::PyTorch).map(|_| ())));
        assert!(invalid(Adam::with_params(0.1, 0.9, -0.1, 1e-8, AdamEpsilon::PyTorch).map(|_| ())));
        assert!(invalid(Adam::with_params(0.1, 0.9, 0.999, 0.0, AdamEpsilon::PyTorch).map(|_| ())));
        assert!(invalid(Adam::with_params(f64::NAN, 0.9, 0.999, 1e-8, AdamEpsilon::PyTorch).map(|_| ())));
    }

    #[test]
    fn asgd_state_length_mismatch_is_refused() {
        let mut asgd = Asgd::new(0.5, 5e-4, 0.75, 0.0).unwrap();
        let mut w = [1.0, 2.0];
        asgd.step(&mut w, &[0.1, 0.1]).unwrap();
        let mut w3 = [1.0, 2.0, 3.0];
        assert!(asgd.step(&mut w3, &[0.1, 0.1, 0.1]).is_err());
        assert_eq!(w3, [1.0, 2.0, 3.0]);
    }
}
