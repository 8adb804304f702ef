//! Value distributions for service times and token lengths, sampled by inverse transform.
//!
//! Every distribution maps one uniform draw `u` in (0, 1) to a value through its quantile
//! function, then applies the optional `min`/`max` clamps. Inverse transform is used for all of
//! them (not the fastest sampler for each) because it makes draws *coupled*: a request carries
//! one uniform for its service time, and whichever pool serves it maps that same uniform
//! through the pool's own distribution. A slower pool then serves the same request more slowly,
//! never with an unrelated draw, which keeps comparisons between policies paired.
//!
//! Parameters are as users state them: lognormal by mean and coefficient of variation,
//! Pareto by shape `alpha` (> 1) and scale `min`. `mean` always refers to the unclamped law.

use statrs::function::erf::erf_inv;

/// A validated distribution with clamps.
#[derive(Debug, Clone, PartialEq)]
pub struct Dist {
    law: Law,
    min: f64,
    max: f64,
}

/// The unclamped law.
#[derive(Debug, Clone, PartialEq)]
pub enum Law {
    /// Always this value.
    Constant(f64),
    /// Exponential with this mean.
    Exponential {
        /// Mean.
        mean: f64,
    },
    /// Uniform on `[low, high]`.
    Uniform {
        /// Lower end.
        low: f64,
        /// Upper end.
        high: f64,
    },
    /// `exp(mu + sigma * Z)`.
    Lognormal {
        /// Location of the underlying normal.
        mu: f64,
        /// Scale of the underlying normal.
        sigma: f64,
    },
    /// Pareto type I: `P(X > x) = (scale / x)^alpha` for `x >= scale`.
    Pareto {
        /// Shape.
        alpha: f64,
        /// Scale (the minimum).
        scale: f64,
    },
    /// A mixture: component `k` with probability `cumulative[k] − cumulative[k−1]`. A draw
    /// `u` picks the component whose cumulative interval holds it and is rescaled into that
    /// interval, so one uniform still yields one value (monotone within each component).
    Mixture {
        /// Components (each with its own clamps).
        components: Vec<Dist>,
        /// Cumulative probabilities, last = 1.
        cumulative: Vec<f64>,
    },
    /// Discrete values with cumulative weights normalised to end at 1.
    Empirical {
        /// Values in the order given.
        values: Vec<f64>,
        /// Cumulative probabilities, last = 1.
        cumulative: Vec<f64>,
    },
}

impl Dist {
    /// A distribution with clamps (`None` = unbounded on that side). Callers validate parameters.
    pub fn new(law: Law, min: Option<f64>, max: Option<f64>) -> Dist {
        Dist { law, min: min.unwrap_or(f64::NEG_INFINITY), max: max.unwrap_or(f64::INFINITY) }
    }

    /// Lognormal with the given mean and coefficient of variation.
    pub fn lognormal_law(mean: f64, cv: f64) -> Law {
        let sigma2 = (1.0 + cv * cv).ln();
        Law::Lognormal { mu: mean.ln() - sigma2 / 2.0, sigma: sigma2.sqrt() }
    }

    /// Empirical law from values and (unnormalised, non-negative, positive-sum) weights.
    pub fn empirical_law(values: Vec<f64>, weights: &[f64]) -> Law {
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let mut cumulative: Vec<f64> = weights
            .iter()
            .map(|w| {
                acc += w;
                acc / total
            })
            .collect();
        if let Some(last) = cumulative.last_mut() {
            *last = 1.0;
        }
        Law::Empirical { values, cumulative }
    }

    /// The law without clamps.
    pub fn law(&self) -> &Law {
        &self.law
    }

    /// The value at quantile `u` in (0, 1), clamped.
    #[inline]
    pub fn quantile(&self, u: f64) -> f64 {
        let x = match &self.law {
            Law::Constant(v) => *v,
            Law::Exponential { mean } => -mean * (1.0 - u).ln(),
            Law::Uniform { low, high } => low + (high - low) * u,
            Law::Lognormal { mu, sigma } => (mu + sigma * normal_quantile(u)).exp(),
            Law::Pareto { alpha, scale } => scale * (-(1.0 - u).ln() / alpha).exp(),
            Law::Empirical { values, cumulative } => {
                let i = cumulative.partition_point(|c| *c <= u);
                values[i.min(values.len() - 1)]
            }
            Law::Mixture { components, cumulative } => {
                let i = cumulative.partition_point(|c| *c <= u).min(components.len() - 1);
                let lo = if i == 0 { 0.0 } else { cumulative[i - 1] };
                let w = cumulative[i] - lo;
                let v = if w > 0.0 { (u - lo) / w } else { 0.5 };
                components[i].quantile(v.clamp(f64::MIN_POSITIVE, 1.0 - f64::EPSILON))
            }
        };
        x.clamp(self.min, self.max)
    }

    /// The mean of the unclamped law (infinite for Pareto with alpha <= 1).
    pub fn mean_unclamped(&self) -> f64 {
        match &self.law {
            Law::Constant(v) => *v,
            Law::Exponential { mean } => *mean,
            Law::Uniform { low, high } => (low + high) / 2.0,
            Law::Lognormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp(),
            Law::Pareto { alpha, scale } => {
                if *alpha > 1.0 {
                    alpha * scale / (alpha - 1.0)
                } else {
                    f64::INFINITY
                }
            }
            Law::Empirical { values, cumulative } => {
                let mut prev = 0.0;
                let mut m = 0.0;
                for (v, c) in values.iter().zip(cumulative) {
                    m += v * (c - prev);
                    prev = *c;
                }
                m
            }
            Law::Mixture { components, cumulative } => {
                mixture_moment(components, cumulative, Dist::mean_unclamped)
            }
        }
    }

    /// The second moment E[X^2] of the unclamped law (for Pollaczek–Khinchine checks).
    pub fn second_moment_unclamped(&self) -> f64 {
        match &self.law {
            Law::Constant(v) => v * v,
            Law::Exponential { mean } => 2.0 * mean * mean,
            Law::Uniform { low, high } => (low * low + low * high + high * high) / 3.0,
            Law::Lognormal { mu, sigma } => (2.0 * mu + 2.0 * sigma * sigma).exp(),
            Law::Pareto { alpha, scale } => {
                if *alpha > 2.0 {
                    alpha * scale * scale / (alpha - 2.0)
                } else {
                    f64::INFINITY
                }
            }
            Law::Empirical { values, cumulative } => {
                let mut prev = 0.0;
                let mut m = 0.0;
                for (v, c) in values.iter().zip(cumulative) {
                    m += v * v * (c - prev);
                    prev = *c;
                }
                m
            }
            Law::Mixture { components, cumulative } => {
                mixture_moment(components, cumulative, Dist::second_moment_unclamped)
            }
        }
    }

    /// A mixture law from components and (unnormalised, positive-sum) weights.
    pub fn mixture_law(components: Vec<Dist>, weights: &[f64]) -> Law {
        let Law::Empirical { cumulative, .. } =
            Dist::empirical_law(vec![0.0; weights.len()], weights)
        else {
            unreachable!("empirical_law builds an empirical law")
        };
        Law::Mixture { components, cumulative }
    }
}

/// `Σ p_k · moment(component_k)` (components' moments of their unclamped laws).
fn mixture_moment(components: &[Dist], cumulative: &[f64], moment: fn(&Dist) -> f64) -> f64 {
    let mut prev = 0.0;
    let mut m = 0.0;
    for (d, c) in components.iter().zip(cumulative) {
        m += moment(d) * (c - prev);
        prev = *c;
    }
    m
}

/// The standard normal quantile `Phi^-1(u)` for u in (0, 1).
#[inline]
pub fn normal_quantile(u: f64) -> f64 {
    std::f64::consts::SQRT_2 * erf_inv(2.0 * u - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    fn sample_moments(d: &Dist, n: usize) -> (f64, f64) {
        let mut s = Stream::from_seed(11);
        let (mut m1, mut m2) = (0.0, 0.0);
        for _ in 0..n {
            let x = d.quantile(s.uniform_open());
            m1 += x;
            m2 += x * x;
        }
        (m1 / n as f64, m2 / n as f64)
    }

    #[test]
    fn sample_means_match_theory() {
        let n = 400_000;
        let cases = [
            Dist::new(Law::Exponential { mean: 2.0 }, None, None),
            Dist::new(Law::Uniform { low: 1.0, high: 3.0 }, None, None),
            Dist::new(Dist::lognormal_law(5.0, 0.5), None, None),
            Dist::new(Law::Pareto { alpha: 3.5, scale: 1.0 }, None, None),
            Dist::new(Dist::empirical_law(vec![1.0, 10.0], &[3.0, 1.0]), None, None),
        ];
        for d in &cases {
            let (m1, m2) = sample_moments(d, n);
            let mean = d.mean_unclamped();
            let var = d.second_moment_unclamped() - mean * mean;
            // 6 standard errors of the sample mean.
            let tol = 6.0 * (var / n as f64).sqrt();
            assert!((m1 - mean).abs() < tol, "{d:?}: mean {m1} vs {mean} (tol {tol})");
            assert!(m2 > 0.0);
        }
    }

    #[test]
    fn lognormal_parameters_reproduce_mean_and_cv() {
        let d = Dist::new(Dist::lognormal_law(1000.0, 1.5), None, None);
        let mean = d.mean_unclamped();
        let cv = (d.second_moment_unclamped() - mean * mean).sqrt() / mean;
        assert!((mean - 1000.0).abs() < 1e-9 * 1000.0);
        assert!((cv - 1.5).abs() < 1e-9);
    }

    #[test]
    fn quantiles_are_monotone_and_clamped() {
        let d = Dist::new(Law::Exponential { mean: 1.0 }, Some(0.5), Some(2.0));
        let mut prev = f64::NEG_INFINITY;
        for i in 1..1000 {
            let x = d.quantile(i as f64 / 1000.0);
            assert!(x >= prev && (0.5..=2.0).contains(&x));
            prev = x;
        }
        let p = Dist::new(Law::Pareto { alpha: 1.5, scale: 16.0 }, None, Some(4096.0));
        let lo = p.quantile(1e-12);
        assert!((16.0..16.0001).contains(&lo), "{lo}");
        assert!(p.quantile(1.0 - 1e-15) <= 4096.0);
        assert!((normal_quantile(0.975) - 1.959_963_984_540_054).abs() < 1e-9);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
    }

    #[test]
    fn empirical_picks_by_cumulative_weight() {
        let d = Dist::new(Dist::empirical_law(vec![1.0, 2.0, 3.0], &[1.0, 0.0, 1.0]), None, None);
        assert_eq!(d.quantile(0.25), 1.0);
        assert_eq!(d.quantile(0.75), 3.0);
        assert_eq!(d.quantile(0.5), 3.0);
    }
}

#[cfg(test)]
mod mixture_tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn mixture_samples_match_its_moments_and_components() {
        let short = Dist::new(Dist::lognormal_law(100.0, 0.5), None, None);
        let long = Dist::new(Law::Pareto { alpha: 2.5, scale: 1000.0 }, None, Some(20_000.0));
        let d = Dist::new(Dist::mixture_law(vec![short, long], &[9.0, 1.0]), None, None);
        let truth = 0.9 * 100.0 + 0.1 * (2.5 * 1000.0 / 1.5);
        assert!((d.mean_unclamped() - truth).abs() < 1e-9);
        let mut s = Stream::from_seed(17);
        let n = 400_000;
        let (mut sum, mut long_draws) = (0.0, 0u32);
        for _ in 0..n {
            let x = d.quantile(s.uniform_open());
            sum += x;
            long_draws += u32::from(x >= 1000.0);
        }
        // The long mode (every draw >= 1000; the short mode is above 1000 with probability
        // ~1e-6) has weight 0.1; the clamp at 20000 lowers the mean a little.
        let frac = f64::from(long_draws) / n as f64;
        assert!((frac - 0.1).abs() < 0.003, "long fraction {frac}");
        let mean = sum / n as f64;
        assert!(mean < truth && mean > truth * 0.95, "mean {mean} vs unclamped {truth}");
        // One uniform, one value: draws below the first weight come from the short mode.
        assert!(d.quantile(0.5) < 1000.0 && d.quantile(0.95) >= 1000.0);
    }
}
