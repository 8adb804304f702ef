//! What a run measures: outcome counters, latency histograms, exact sums, and the invariant
//! checks run at the end of every run.
//!
//! Definitions (also in the README):
//! - TTFT = first token − arrival; for `queue` replicas the response is one unit delivered at
//!   service completion, so TTFT = E2E. E2E = completion − arrival. queue_wait = service
//!   start − arrival.
//! - Only requests that arrive after the warm-up are *measured*; counters are kept for all
//!   requests (for conservation) and for measured ones (for reports).
//! - Percentiles come from HdrHistograms over whole microseconds with 3 significant digits
//!   (quantisation at most 0.1% of the value); means come from exact nanosecond sums.
//! - `ttft_ms_p95_all` counts requests that never produced a first token (timed out, rejected,
//!   unfinished) as +infinity, so dropping slow requests cannot look fast.

pub mod invariants;

use crate::time::SimDuration;
use hdrhistogram::Histogram;

/// Highest latency a histogram resolves: about 27.8 hours in microseconds. Larger values are
/// recorded at this bound and counted in `overflows`.
pub const HIST_MAX_US: u64 = 100_000_000_000;

/// How a request ended. Every request ends in exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served to the end.
    Completed,
    /// Withdrawn at its deadline (from a queue or from service).
    TimedOut,
    /// Refused on arrival (full queue, no candidate).
    Rejected,
    /// Still in flight when the drain limit ended the run.
    Unfinished,
}

/// Outcome counters for one population of requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests that arrived.
    pub arrivals: u64,
    /// Completed.
    pub completed: u64,
    /// Timed out.
    pub timed_out: u64,
    /// Rejected.
    pub rejected: u64,
    /// Unfinished at the end of the drain.
    pub unfinished: u64,
}

impl Counts {
    /// Adds one outcome.
    #[inline]
    pub fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Completed => self.completed += 1,
            Outcome::TimedOut => self.timed_out += 1,
            Outcome::Rejected => self.rejected += 1,
            Outcome::Unfinished => self.unfinished += 1,
        }
    }

    /// Requests that have ended.
    pub fn ended(&self) -> u64 {
        self.completed + self.timed_out + self.rejected + self.unfinished
    }
}

/// A latency distribution: histogram for quantiles plus exact sum and count for the mean.
#[derive(Debug, Clone)]
pub struct Latency {
    hist_us: Histogram<u64>,
    sum_ns: u128,
    count: u64,
    /// Values above [`HIST_MAX_US`].
    pub overflows: u64,
}

impl Default for Latency {
    fn default() -> Latency {
        Latency::new()
    }
}

impl Latency {
    /// An empty distribution.
    pub fn new() -> Latency {
        let hist_us = Histogram::new_with_bounds(1, HIST_MAX_US, 3)
            .expect("constant histogram bounds are valid");
        Latency { hist_us, sum_ns: 0, count: 0, overflows: 0 }
    }

    /// Records one value.
    #[inline]
    pub fn record(&mut self, d: SimDuration) {
        let ns = d.as_nanos();
        self.sum_ns += u128::from(ns);
        self.count += 1;
        let us = (ns + 500) / 1000;
        if us > HIST_MAX_US {
            self.overflows += 1;
        }
        self.hist_us.saturating_record(us.min(HIST_MAX_US));
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Exact mean in milliseconds (`None` if empty).
    pub fn mean_ms(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_ns as f64 / self.count as f64 / 1e6)
    }

    /// Quantile `q` in [0, 1] in milliseconds (`None` if empty). Uses HdrHistogram's
    /// `value_at_quantile`: the smallest recorded bucket value with at least `q` of the
    /// population at or below it, reported as the bucket's highest equivalent value.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        (self.count > 0).then(|| {
            let v = self.hist_us.value_at_quantile(q);
            self.hist_us.highest_equivalent(v) as f64 / 1e3
        })
    }

    /// Quantile `q` where `censored` further requests count as +infinity: `Some(inf)` if the
    /// quantile falls among them, `None` if there is nothing at all.
    pub fn censored_quantile_ms(&self, q: f64, censored: u64) -> Option<f64> {
        let total = self.count + censored;
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        if rank > self.count {
            return Some(f64::INFINITY);
        }
        self.quantile_ms(rank as f64 / self.count as f64)
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// All requests (for conservation).
    pub all: Counts,
    /// Measured requests (arrived after warm-up).
    pub measured: Counts,
    /// TTFT of measured requests that produced a first token.
    pub ttft: Latency,
    /// E2E of measured completed requests.
    pub e2e: Latency,
    /// queue_wait of measured requests that started service.
    pub queue_wait: Latency,
    /// TPOT of measured completed requests with more than one output token.
    pub tpot: Latency,
    /// Completions (of any request) inside the measurement window.
    pub window_completions: u64,
    /// Measured requests that never produced a first token (censored for TTFT).
    pub no_first_token: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    #[test]
    fn hdr_quantiles_match_exact_quantiles_within_precision() {
        let mut l = Latency::new();
        let mut s = Stream::from_seed(3);
        let mut exact: Vec<u64> = (0..50_000)
            .map(|_| {
                // Log-uniform between 10 us and 10 s, whole microseconds.
                let us = (10f64 * (6.0 * s.uniform_open() * std::f64::consts::LN_10).exp()).round()
                    as u64;
                l.record(SimDuration(us * 1000));
                us
            })
            .collect();
        exact.sort_unstable();
        for q in [0.5, 0.9, 0.95, 0.99, 0.999] {
            let rank = ((q * exact.len() as f64).ceil() as usize).max(1);
            let truth_ms = exact[rank - 1] as f64 / 1e3;
            let got = l.quantile_ms(q).expect("non-empty");
            assert!(
                (got - truth_ms).abs() <= truth_ms * 1e-3 + 1e-3,
                "q {q}: hdr {got} vs exact {truth_ms}"
            );
        }
        let mean_exact = exact.iter().sum::<u64>() as f64 / exact.len() as f64 / 1e3;
        assert!((l.mean_ms().expect("non-empty") - mean_exact).abs() < 1e-9 * mean_exact);
    }

    #[test]
    fn censoring_pushes_quantiles_to_infinity() {
        let mut l = Latency::new();
        for ms in 1..=90 {
            l.record(SimDuration(ms * 1_000_000));
        }
        // 90 finite values and 10 censored: p50 is finite, p95 is infinite.
        let p50 = l.censored_quantile_ms(0.5, 10).expect("non-empty");
        assert!((p50 - 50.0).abs() < 0.06, "{p50}");
        assert_eq!(l.censored_quantile_ms(0.95, 10), Some(f64::INFINITY));
        assert_eq!(l.censored_quantile_ms(0.95, 0), l.quantile_ms(0.95));
        assert_eq!(Latency::new().censored_quantile_ms(0.95, 0), None);
        assert_eq!(Latency::new().censored_quantile_ms(0.95, 3), Some(f64::INFINITY));
    }
}
