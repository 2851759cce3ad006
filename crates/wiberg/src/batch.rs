//! Mean loss and gradient over a batch of samples, in parallel (rayon) and deterministic:
//! per-sample results are computed in any order but summed in sample order, so the result is
//! bitwise identical for any number of threads.

use crate::error::WibergError;
use crate::Result;
use rayon::prelude::*;

/// The mean loss and gradient over the samples that succeeded, and the failures.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutcome {
    /// Mean loss over the successful samples.
    pub loss: f64,
    /// Mean gradient over the successful samples.
    pub grad: Vec<f64>,
    /// Number of successful samples.
    pub count: usize,
    /// Samples that failed (index in the batch, error): counted and reported, never mixed in.
    pub failures: Vec<(usize, WibergError)>,
}

/// Evaluates `f(index, sample) -> (loss, gradient)` on every sample in parallel and averages
/// the successful ones in sample order. A sample whose loss or gradient is non-finite counts
/// as a failure ([`WibergError::NonFinite`]). Errors if every sample failed (the first
/// failure is returned) or a gradient has the wrong length.
///
/// ```
/// use wiberg::batch::mean_loss_and_grad;
/// let xs = [1.0, 2.0, 3.0];
/// let out = mean_loss_and_grad(&xs, 1, |_, x| Ok((x * x, vec![2.0 * x]))).unwrap();
/// assert!((out.loss - 14.0 / 3.0).abs() < 1e-15);
/// assert_eq!((out.grad[0], out.count), (4.0, 3));
/// ```
pub fn mean_loss_and_grad<S, F>(samples: &[S], num_params: usize, f: F) -> Result<BatchOutcome>
where
    S: Sync,
    F: Fn(usize, &S) -> Result<(f64, Vec<f64>)> + Sync,
{
    mean_loss_and_grad_with(samples, num_params, |i, s| f(i, s).map(|(l, g)| (l, g, ()))).map(|(out, _)| out)
}

/// [`mean_loss_and_grad`] with a per-sample extra returned beside the loss and gradient (for
/// example the forward pass's [`Report`](crate::Report): convergence, diagnostics), so that
/// callers need no side channel out of the parallel closure. `extras[i]` is sample `i`'s extra,
/// `None` when the sample failed (its error is in `failures`) or its loss or gradient was
/// non-finite.
///
/// ```
/// use wiberg::batch::mean_loss_and_grad_with;
/// let xs = [1.0, -2.0, 3.0];
/// let (out, extras) = mean_loss_and_grad_with(&xs, 1, |_, x| Ok((x * x, vec![2.0 * x], *x > 0.0))).unwrap();
/// assert_eq!(out.count, 3);
/// assert_eq!(extras, [Some(true), Some(false), Some(true)]);
/// ```
pub fn mean_loss_and_grad_with<S, X, F>(
    samples: &[S],
    num_params: usize,
    f: F,
) -> Result<(BatchOutcome, Vec<Option<X>>)>
where
    S: Sync,
    X: Send,
    F: Fn(usize, &S) -> Result<(f64, Vec<f64>, X)> + Sync,
{
    if samples.is_empty() {
        return Err(WibergError::InvalidArgument("empty batch".into()));
    }
    let results: Vec<Result<(f64, Vec<f64>, X)>> = samples.par_iter().enumerate().map(|(i, s)| f(i, s)).collect();
    let mut loss = 0.0;
    let mut grad = vec![0.0; num_params];
    let mut count = 0;
    let mut failures = Vec::new();
    let mut extras = Vec::with_capacity(samples.len());
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok((l, g, x)) => {
                if g.len() != num_params {
                    return Err(WibergError::DimensionMismatch {
                        what: format!("gradient of sample {i}"),
                        expected: num_params,
                        got: g.len(),
                    });
                }
                if !l.is_finite() || !crate::error::all_finite(&g) {
                    failures.push((i, WibergError::NonFinite { what: format!("loss or gradient of sample {i}") }));
                    extras.push(None);
                    continue;
                }
                loss += l;
                for (a, b) in grad.iter_mut().zip(&g) {
                    *a += b;
                }
                count += 1;
                extras.push(Some(x));
            }
            Err(e) => {
                failures.push((i, e));
                extras.push(None);
            }
        }
    }
    if count == 0 {
        return Err(failures.swap_remove(0).1);
    }
    let inv = 1.0 / count as f64;
    grad.iter_mut().for_each(|g| *g *= inv);
    Ok((BatchOutcome { loss: loss * inv, grad, count, failures }, extras))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_for_one_and_two_threads() {
        let xs: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin() * 1e3).collect();
        let f = |_: usize, x: &f64| Ok((x.exp().ln_1p(), vec![x.sin(), x.cos() * 1e-7, *x]));
        let run = |t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
                .install(|| mean_loss_and_grad(&xs, 3, f).unwrap())
        };
        let (a, b) = (run(1), run(2));
        assert_eq!(a.loss.to_bits(), b.loss.to_bits());
        for (x, y) in a.grad.iter().zip(&b.grad) {
            assert_eq!(x.to_bits(), y.to_bits());
        }
    }

    #[test]
    fn failures_are_counted_not_mixed_in() {
        let xs = [1.0, f64::NAN, 3.0, -1.0];
        let out = mean_loss_and_grad(&xs, 1, |_, x: &f64| {
            if *x < 0.0 {
                Err(WibergError::InvalidArgument("negative".into()))
            } else {
                Ok((*x, vec![*x]))
            }
        })
        .unwrap();
        assert_eq!(out.count, 2);
        assert_eq!(out.loss, 2.0);
        assert_eq!(out.failures.len(), 2);
        let (_, extras) = mean_loss_and_grad_with(&xs, 1, |i, x: &f64| {
            if *x < 0.0 {
                Err(WibergError::InvalidArgument("negative".into()))
            } else {
                Ok((*x, vec![*x], i))
            }
        })
        .unwrap();
        assert_eq!(extras, [Some(0), None, Some(2), None]);
        assert!(mean_loss_and_grad(&[-1.0], 1, |_, _: &f64| Err::<(f64, Vec<f64>), _>(WibergError::InvalidArgument(
            "x".into()
        )))
        .is_err());
    }
}
