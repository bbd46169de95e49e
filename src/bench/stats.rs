//! Report arithmetic: summaries of repeated measurements and ratios.

use serde::{Deserialize, Serialize};

/// Minimum, median and maximum of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Smallest sample.
    pub min: f64,
    /// Median sample (mean of the two middle samples for an even count).
    pub median: f64,
    /// Largest sample.
    pub max: f64,
    /// Number of samples.
    pub count: usize,
}

impl Summary {
    /// Summarises `samples`; `None` when there are none or any is not finite.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Summary {
            min: v[0],
            median,
            max: v[n - 1],
            count: n,
        })
    }
}

/// `bytes / seconds`, or `None` when the time is not positive (too fast to measure).
pub fn throughput(bytes: u64, seconds: f64) -> Option<f64> {
    (seconds.is_finite() && seconds > 0.0).then(|| bytes as f64 / seconds)
}

/// `value / reference`, or `None` when the reference is missing or not positive.
pub fn ratio(value: f64, reference: Option<f64>) -> Option<f64> {
    match reference {
        Some(r) if r.is_finite() && r > 0.0 && value.is_finite() => Some(value / r),
        _ => None,
    }
}

/// Rounds to 4 significant digits, so JSON reports stay readable.
pub fn round4(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let mag = x.abs().log10().floor() as i32;
    let scale = 10f64.powi(3 - mag);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_odd_even_and_unsorted() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.count), (1.0, 2.0, 3.0, 3));
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 4.0));
        let s = Summary::of(&[7.5]).unwrap();
        assert_eq!((s.min, s.median, s.max), (7.5, 7.5, 7.5));
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn throughput_and_ratio() {
        assert_eq!(throughput(1 << 30, 0.5), Some(2.0 * (1u64 << 30) as f64));
        assert_eq!(throughput(10, 0.0), None);
        assert_eq!(ratio(9.0, Some(10.0)), Some(0.9));
        assert_eq!(ratio(9.0, Some(0.0)), None);
        assert_eq!(ratio(9.0, None), None);
    }

    #[test]
    fn rounding() {
        assert_eq!(round4(1234567.0), 1235000.0);
        assert_eq!(round4(0.000123456), 0.0001235);
        assert_eq!(round4(0.0), 0.0);
    }
}
