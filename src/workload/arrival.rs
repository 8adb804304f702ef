//! Arrival processes: each class owns one, which yields the next arrival time on demand.
//!
//! Arrivals are generated lazily (one pending arrival per class in the event queue), so memory
//! does not grow with the number of requests. Each process draws only from its class's
//! `arrivals` stream, so the arrival times are the same whatever policy runs.
//!
//! Non-homogeneous processes: `onoff` and `step` are piecewise-constant-rate Poisson processes
//! sampled exactly (an exponential gap that crosses a rate change restarts at the change, which
//! is exact by memorylessness); `diurnal` uses Lewis–Shedler thinning against the peak rate.

use crate::rng::Stream;
use crate::time::{SimDuration, SimTime};
use crate::workload::dist::normal_quantile;

/// A validated arrival process description.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrivalSpec {
    /// Poisson with this rate.
    Poisson {
        /// Requests per second.
        rate_per_s: f64,
    },
    /// Gamma-distributed gaps with this mean rate and coefficient of variation.
    Gamma {
        /// Requests per second.
        rate_per_s: f64,
        /// Coefficient of variation of the gaps (0 = deterministic).
        cv: f64,
    },
    /// Alternating on/off periods, Poisson within each.
    OnOff {
        /// Length (mean, or fixed) of on periods.
        on: SimDuration,
        /// Length (mean, or fixed) of off periods.
        off: SimDuration,
        /// Rate while on.
        on_rate_per_s: f64,
        /// Rate while off.
        off_rate_per_s: f64,
        /// Whether period lengths are exponential (MMPP-2) or fixed (square wave).
        exponential_periods: bool,
    },
    /// Sinusoidal rate `mean * (1 + a * cos(2 pi (t - peak_at) / period))`.
    Diurnal {
        /// Time-average rate.
        mean_rate_per_s: f64,
        /// Relative amplitude `a = (r - 1) / (r + 1)` for peak-to-trough ratio `r`.
        amplitude: f64,
        /// Period in seconds.
        period_s: f64,
        /// Time of a peak in seconds.
        peak_at_s: f64,
    },
    /// Piecewise-constant rate: `(from, rate)` pairs, first at time 0, increasing times.
    Step {
        /// Rate changes.
        steps: Vec<(SimTime, f64)>,
    },
}

impl ArrivalSpec {
    /// The long-run mean arrival rate (for reports and sanity checks).
    pub fn mean_rate_per_s(&self) -> f64 {
        match self {
            ArrivalSpec::Poisson { rate_per_s } | ArrivalSpec::Gamma { rate_per_s, .. } => {
                *rate_per_s
            }
            ArrivalSpec::OnOff { on, off, on_rate_per_s, off_rate_per_s, .. } => {
                let (a, b) = (on.as_secs_f64(), off.as_secs_f64());
                (a * on_rate_per_s + b * off_rate_per_s) / (a + b)
            }
            ArrivalSpec::Diurnal { mean_rate_per_s, .. } => *mean_rate_per_s,
            ArrivalSpec::Step { steps } => steps.last().map_or(0.0, |s| s.1),
        }
    }
}

/// The running state of one class's arrival process.
#[derive(Debug, Clone)]
pub struct ArrivalGen {
    spec: ArrivalSpec,
    rng: Stream,
    /// OnOff: currently in an on period; Step: index of the active step.
    phase_on: bool,
    phase_index: usize,
    /// End of the current on/off period.
    phase_end: SimTime,
    /// Gamma: shape k and Marsaglia–Tsang constants.
    gamma_k: f64,
}

impl ArrivalGen {
    /// A fresh process starting at time 0, drawing from `rng`.
    pub fn new(spec: ArrivalSpec, mut rng: Stream) -> ArrivalGen {
        let mut phase_end = SimTime::MAX;
        let mut gamma_k = 1.0;
        match &spec {
            ArrivalSpec::OnOff { on, exponential_periods, .. } => {
                phase_end = SimTime::ZERO + period_length(*on, *exponential_periods, &mut rng);
            }
            ArrivalSpec::Gamma { cv, .. } if *cv > 0.0 => gamma_k = 1.0 / (cv * cv),
            _ => {}
        }
        ArrivalGen { spec, rng, phase_on: true, phase_index: 0, phase_end, gamma_k }
    }

    /// The first arrival strictly after `now` (the previous arrival, or 0 at the start);
    /// `None` when the process has no further arrivals (a step process ending at rate 0).
    pub fn next_after(&mut self, now: SimTime) -> Option<SimTime> {
        match &self.spec {
            ArrivalSpec::Poisson { rate_per_s } => {
                let rate = *rate_per_s;
                Some(now + exp_gap(rate, &mut self.rng))
            }
            ArrivalSpec::Gamma { rate_per_s, cv } => {
                let mean_gap = 1.0 / rate_per_s;
                let gap = if *cv == 0.0 {
                    mean_gap
                } else {
                    gamma_sample(self.gamma_k, &mut self.rng) * mean_gap / self.gamma_k
                };
                Some(now + SimDuration::from_secs_f64(gap))
            }
            ArrivalSpec::OnOff { .. } => Some(self.next_onoff(now)),
            ArrivalSpec::Diurnal { .. } => Some(self.next_diurnal(now)),
            ArrivalSpec::Step { .. } => self.next_step(now),
        }
    }

    fn next_onoff(&mut self, mut t: SimTime) -> SimTime {
        let ArrivalSpec::OnOff { on, off, on_rate_per_s, off_rate_per_s, exponential_periods } =
            self.spec.clone()
        else {
            unreachable!("next_onoff on another process")
        };
        loop {
            let rate = if self.phase_on { on_rate_per_s } else { off_rate_per_s };
            if rate > 0.0 {
                let cand = t + exp_gap(rate, &mut self.rng);
                if cand < self.phase_end {
                    return cand;
                }
            }
            t = self.phase_end;
            self.phase_on = !self.phase_on;
            let mean = if self.phase_on { on } else { off };
            self.phase_end = t + period_length(mean, exponential_periods, &mut self.rng);
        }
    }

    fn next_diurnal(&mut self, mut t: SimTime) -> SimTime {
        let ArrivalSpec::Diurnal { mean_rate_per_s, amplitude, period_s, peak_at_s } = self.spec
        else {
            unreachable!("next_diurnal on another process")
        };
        let peak_rate = mean_rate_per_s * (1.0 + amplitude);
        loop {
            t += exp_gap(peak_rate, &mut self.rng);
            let phase = std::f64::consts::TAU * (t.as_secs_f64() - peak_at_s) / period_s;
            let accept = (1.0 + amplitude * phase.cos()) / (1.0 + amplitude);
            if self.rng.uniform_open() < accept {
                return t;
            }
        }
    }

    fn next_step(&mut self, mut t: SimTime) -> Option<SimTime> {
        let ArrivalSpec::Step { steps } = &self.spec else {
            unreachable!("next_step on another process")
        };
        while self.phase_index + 1 < steps.len() && steps[self.phase_index + 1].0 <= t {
            self.phase_index += 1;
        }
        loop {
            let rate = steps[self.phase_index].1;
            let change = steps.get(self.phase_index + 1).map_or(SimTime::MAX, |s| s.0);
            if rate > 0.0 {
                let cand = t + exp_gap(rate, &mut self.rng);
                if cand < change {
                    return Some(cand);
                }
            }
            if change == SimTime::MAX {
                return None;
            }
            t = change;
            self.phase_index += 1;
        }
    }
}

/// An exponential gap with the given rate (> 0).
#[inline]
fn exp_gap(rate_per_s: f64, rng: &mut Stream) -> SimDuration {
    SimDuration::from_secs_f64(-rng.uniform_open().ln() / rate_per_s)
}

fn period_length(mean: SimDuration, exponential: bool, rng: &mut Stream) -> SimDuration {
    let d = if exponential {
        SimDuration::from_secs_f64(-rng.uniform_open().ln() * mean.as_secs_f64())
    } else {
        mean
    };
    // A zero-length period would stall the phase loop; one nanosecond is the floor.
    SimDuration(d.as_nanos().max(1))
}

/// A Gamma(k, 1) variate: Marsaglia–Tsang for k >= 1, boosted by `U^(1/k)` for k < 1.
fn gamma_sample(k: f64, rng: &mut Stream) -> f64 {
    if k < 1.0 {
        let g = gamma_sample(k + 1.0, rng);
        return g * rng.uniform_open().powf(1.0 / k);
    }
    let d = k - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let z = normal_quantile(rng.uniform_open());
        let v = 1.0 + c * z;
        if v <= 0.0 {
            continue;
        }
        let v3 = v * v * v;
        let u = rng.uniform_open();
        if u.ln() < 0.5 * z * z + d - d * v3 + d * v3.ln() {
            return d * v3;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(spec: ArrivalSpec, n: usize) -> Vec<f64> {
        let mut g = ArrivalGen::new(spec, Stream::from_seed(5));
        let mut t = SimTime::ZERO;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let next = g.next_after(t).expect("process ended");
            out.push((next - t).as_secs_f64());
            t = next;
        }
        out
    }

    fn mean_cv(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let m = xs.iter().sum::<f64>() / n;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
        (m, v.sqrt() / m)
    }

    #[test]
    fn poisson_gaps_are_exponential() {
        let (m, cv) = mean_cv(&gaps(ArrivalSpec::Poisson { rate_per_s: 50.0 }, 200_000));
        // sd of the mean gap = 0.02 / sqrt(2e5) = 4.5e-5; 5 sd.
        assert!((m - 0.02).abs() < 2.3e-4, "{m}");
        assert!((cv - 1.0).abs() < 0.02, "{cv}");
    }

    #[test]
    fn gamma_gaps_have_requested_rate_and_cv() {
        for cv_target in [0.0, 0.5, 2.0] {
            let spec = ArrivalSpec::Gamma { rate_per_s: 10.0, cv: cv_target };
            let (m, cv) = mean_cv(&gaps(spec, 200_000));
            let tol_m = 5.0 * 0.1 * cv_target.max(0.01) / (200_000f64).sqrt();
            assert!((m - 0.1).abs() < tol_m.max(1e-9), "cv {cv_target}: mean {m}");
            assert!((cv - cv_target).abs() < 0.03 * cv_target.max(0.1), "cv {cv} vs {cv_target}");
        }
    }

    #[test]
    fn step_rates_change_at_the_given_times_and_end_at_zero() {
        let spec = ArrivalSpec::Step {
            steps: vec![(SimTime::ZERO, 100.0), (SimTime(SimDuration::from_secs(10).0), 0.0)],
        };
        let mut g = ArrivalGen::new(spec, Stream::from_seed(9));
        let mut t = SimTime::ZERO;
        let mut n = 0;
        while let Some(next) = g.next_after(t) {
            assert!(next.as_secs_f64() < 10.0);
            t = next;
            n += 1;
        }
        // Poisson(1000): sd 31.6; 5 sd.
        assert!((n as i64 - 1000).abs() < 160, "{n}");
    }

    #[test]
    fn onoff_and_diurnal_average_to_their_mean_rate() {
        let onoff = ArrivalSpec::OnOff {
            on: SimDuration::from_secs(2),
            off: SimDuration::from_secs(6),
            on_rate_per_s: 40.0,
            off_rate_per_s: 0.0,
            exponential_periods: false,
        };
        let diurnal = ArrivalSpec::Diurnal {
            mean_rate_per_s: 10.0,
            amplitude: 0.5,
            period_s: 100.0,
            peak_at_s: 25.0,
        };
        for spec in [onoff, diurnal] {
            let target = spec.mean_rate_per_s();
            let g = gaps(spec, 100_000);
            let rate = g.len() as f64 / g.iter().sum::<f64>();
            assert!((rate - target).abs() / target < 0.03, "rate {rate} vs {target}");
        }
    }

    #[test]
    fn fixed_onoff_has_no_arrivals_in_off_periods() {
        let spec = ArrivalSpec::OnOff {
            on: SimDuration::from_secs(1),
            off: SimDuration::from_secs(1),
            on_rate_per_s: 100.0,
            off_rate_per_s: 0.0,
            exponential_periods: false,
        };
        let mut g = ArrivalGen::new(spec, Stream::from_seed(3));
        let mut t = SimTime::ZERO;
        for _ in 0..5000 {
            t = g.next_after(t).expect("on/off never ends");
            let phase = t.as_secs_f64() % 2.0;
            assert!(phase < 1.0, "arrival at {t} is in an off period");
        }
    }
}
