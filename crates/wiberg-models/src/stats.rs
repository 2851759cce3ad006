//! Small statistics the experiments share.

/// The median of the finite values of `values`, `None` when there is none (NaN and
/// infinities are dropped first, so one bad value cannot poison it).
pub fn median_finite(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_finite_has_an_explicit_empty_case() {
        assert_eq!(median_finite([3.0, f64::NAN, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_finite([4.0, 1.0, f64::INFINITY, 2.0, 3.0]), Some(2.5));
        assert_eq!(median_finite([f64::NAN]), None);
        assert_eq!(median_finite(Vec::new()), None);
    }
}
