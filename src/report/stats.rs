//! Replication statistics: mean and a 95% confidence interval from Student's t.
//!
//! Replications are independent runs (different run seeds), so for a metric with values
//! `x_1..x_n` the interval is `mean ± t_{0.975, n-1} · s / sqrt(n)`, with `s` the sample
//! standard deviation. With one replication there is no interval. An infinite value (a
//! censored percentile) makes the mean infinite and the interval undefined.

use statrs::distribution::{ContinuousCDF, StudentsT};

/// A mean and the half-width of its 95% confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MeanCi {
    /// Mean of the defined values (`None` if there are none).
    pub mean: Option<f64>,
    /// Half-width of the 95% CI (`None` with fewer than 2 finite values).
    pub ci95: Option<f64>,
}

/// The two-sided 95% Student t quantile for `df` degrees of freedom.
pub fn t975(df: u32) -> f64 {
    StudentsT::new(0.0, 1.0, f64::from(df)).map(|t| t.inverse_cdf(0.975)).unwrap_or(f64::NAN)
}

/// Mean and 95% CI of the defined values among `xs`.
pub fn mean_ci(xs: &[Option<f64>]) -> MeanCi {
    let v: Vec<f64> = xs.iter().flatten().copied().collect();
    if v.is_empty() {
        return MeanCi::default();
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 || !mean.is_finite() {
        return MeanCi { mean: Some(mean), ci95: None };
    }
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    let ci = t975(v.len() as u32 - 1) * (var / n).sqrt();
    MeanCi { mean: Some(mean), ci95: Some(ci) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_tables() {
        assert!((t975(1) - 12.706).abs() < 1e-3);
        assert!((t975(4) - 2.776).abs() < 1e-3);
        assert!((t975(1000) - 1.962).abs() < 1e-3);
    }

    #[test]
    fn mean_ci_of_known_sample() {
        let r = mean_ci(&[Some(1.0), Some(2.0), Some(3.0), None]);
        assert_eq!(r.mean, Some(2.0));
        // s = 1, n = 3: 4.303 / sqrt(3) = 2.484.
        assert!((r.ci95.expect("ci") - 2.484).abs() < 1e-3);
        assert_eq!(mean_ci(&[Some(5.0)]), MeanCi { mean: Some(5.0), ci95: None });
        assert_eq!(mean_ci(&[None]), MeanCi::default());
        assert_eq!(mean_ci(&[Some(1.0), Some(f64::INFINITY)]).ci95, None);
    }
}
