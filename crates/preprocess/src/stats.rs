//! Small statistics helpers (f64).

/// numpy's `percentile(v, q)` with the default `method='linear'`: sorts a copy; `q` in
/// `[0, 100]`. `None` for an empty slice.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(percentile_sorted(&v, q))
}

/// [`percentile`] of an already sorted, NaN-free, non-empty slice.
pub(crate) fn percentile_sorted(v: &[f64], q: f64) -> f64 {
    let pos = (q / 100.0).clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let t = pos - lo as f64;
    let (a, b) = (v[lo], v[hi]);
    // numpy's _lerp: symmetric form for t >= 0.5
    if t >= 0.5 {
        b - (b - a) * (1.0 - t)
    } else {
        a + (b - a) * t
    }
}

/// Mean and population standard deviation (ddof = 0); `(0, 0)` when empty.
pub(crate) fn mean_std(values: impl Iterator<Item = f64> + Clone) -> (f64, f64, usize) {
    let (mut n, mut sum) = (0usize, 0.0);
    for v in values.clone() {
        n += 1;
        sum += v;
    }
    if n == 0 {
        return (0.0, 0.0, 0);
    }
    let mean = sum / n as f64;
    let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
    (mean, var.sqrt(), n)
}

/// Median of a list of numbers (mean of the two middle values for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_linear_percentiles() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), Some(2.5));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 100.0), Some(4.0));
        assert!((percentile(&v, 0.5).unwrap() - 1.015).abs() < 1e-12);
        assert_eq!(percentile(&[], 50.0), None);
        let (m, s, n) = mean_std([1.0, 3.0].into_iter());
        assert_eq!((m, s, n), (2.0, 1.0, 2));
    }
}
