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
//! - [`LlmStats`] holds the counters of `llm` replicas; the report turns them into
//!   `output_tokens_per_s`, `goodput_rps`, `slo_attainment`, `prefix_hit_rate`,
//!   `kv_util_mean`, `preemptions`, `rejected_never_fit`, `cold_starts`, `gpu_hours`,
//!   `cost_usd` and `usd_per_m_output_tokens` (empty when [`LlmStats::enabled`] is false;
//!   definitions in the README).

pub mod columns;
pub mod groups;
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
    /// Refused: 429 from a rate limiter, a full queue or load shedding, 408 after a gateway
    /// queue timeout, a request that can never fit.
    Rejected,
    /// An error status reached the client: a 5xx from a replica, a connect failure, or no
    /// healthy replica to send it to.
    Error,
    /// Lost to a crash (the connection broke) with no retry left.
    Failed,
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
    /// Ended with an error status.
    pub errors: u64,
    /// Lost to a crash.
    pub failed: u64,
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
            Outcome::Error => self.errors += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Unfinished => self.unfinished += 1,
        }
    }

    /// Requests that have ended.
    pub fn ended(&self) -> u64 {
        self.completed
            + self.timed_out
            + self.rejected
            + self.errors
            + self.failed
            + self.unfinished
    }
}

/// Sub-buckets per power of two: 2048 gives 3 significant decimal digits, the same layout as
/// an HdrHistogram with `sigfig = 3` and a lowest discernible value of 1.
const SUB_BUCKETS: u64 = 2048;
const HALF: u64 = SUB_BUCKETS / 2;

/// Index of `v` in the log-linear layout: values below 2048 get their own slot; above, the
/// top 11 significant bits select the slot, so a slot spans `2^shift` values.
#[inline(always)]
fn slot_of(v: u64) -> usize {
    if v < SUB_BUCKETS {
        v as usize
    } else {
        let shift = 63 - u64::from(v.leading_zeros()) - 10;
        (SUB_BUCKETS + (shift - 1) * HALF + ((v >> shift) - HALF)) as usize
    }
}

/// The lowest value of slot `i` (inverse of [`slot_of`] on slot boundaries).
fn slot_low(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB_BUCKETS {
        i
    } else {
        let shift = (i - SUB_BUCKETS) / HALF + 1;
        let top = (i - SUB_BUCKETS) % HALF + HALF;
        top << shift
    }
}

/// A latency distribution: log-linear counts for quantiles plus exact sum and count for the
/// mean. Recording is a few instructions (it is on the hot path of every request); the counts
/// use HdrHistogram's own bucket layout and are loaded into an `hdrhistogram::Histogram` once,
/// when the run ends, for quantile queries. The result is identical to recording into the
/// HdrHistogram directly (tested).
#[derive(Debug, Clone)]
pub struct Latency {
    counts: Vec<u64>,
    hist_us: Option<Histogram<u64>>,
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
        Latency { counts: Vec::new(), hist_us: None, sum_ns: 0, count: 0, overflows: 0 }
    }

    /// Records one value.
    #[inline]
    pub fn record(&mut self, d: SimDuration) {
        let ns = d.as_nanos();
        self.sum_ns += u128::from(ns);
        self.count += 1;
        let mut us = (ns + 500) / 1000;
        if us > HIST_MAX_US {
            self.overflows += 1;
            us = HIST_MAX_US;
        }
        let i = slot_of(us);
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
    }

    /// Loads the counts into the HdrHistogram used for quantiles. Idempotent.
    pub fn finalize(&mut self) {
        if self.hist_us.is_some() {
            return;
        }
        let mut h = Histogram::new_with_bounds(1, HIST_MAX_US, 3)
            .expect("constant histogram bounds are valid");
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                h.saturating_record_n(slot_low(i), c);
            }
        }
        self.hist_us = Some(h);
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
    /// Requires [`Latency::finalize`] first (the engine finalizes every run's recorder).
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let h = self.hist_us.as_ref()?;
        (self.count > 0).then(|| {
            let v = h.value_at_quantile(q);
            h.highest_equivalent(v) as f64 / 1e3
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
    /// Token-level counters of `llm` replicas (all zero for queue clusters).
    pub llm: LlmStats,
    /// Sum over load samples in the measurement window of max/mean in-flight per replica.
    pub imbalance_sum: f64,
    /// Load samples in the measurement window with anything in flight.
    pub imbalance_samples: u64,
    /// Attempts made by measured requests (one per request without retries or hedges).
    pub attempts: u64,
    /// Attempts beyond each measured request's first (retries and hedges).
    pub retries: u64,
    /// Hedged attempts started on per-try timeouts (all requests).
    pub hedges: u64,
    /// Measured requests served by a smaller model than they asked for.
    pub downgraded: u64,
    /// Requests refused by gateway admission (rate limits, full or timed-out queues,
    /// shedding), all requests.
    pub gateway_rejected: u64,
    /// Requests a gateway had no healthy or available replica for, all requests.
    pub no_healthy: u64,
    /// Requests the activator held (a scaled pool had no ready replica), all requests.
    pub held: u64,
    /// Held requests that waited the whole hold timeout (504, counted `error`).
    pub held_expired: u64,
    /// Replica ejections by the gateways' health mechanisms, summed over instances.
    pub ejections: u64,
    /// Replica-seconds provisioned within the measurement window (every state but `Off`).
    pub replica_s: f64,
    /// Autoscaler decisions that changed the scaled pool's `spec.replicas`.
    pub scale_events: u64,
    /// Requests lost to a crash after using every attempt their retry policy allows, or after
    /// their answer began streaming under a policy that does not re-send broken streams (all
    /// requests): with retries on, the only ways a crash loses a request while the budget has
    /// room.
    pub failed_unretriable: u64,
    /// Detection and recovery times of fault windows.
    pub fault: FaultMetrics,
}

/// How fast faults were noticed and got over.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultMetrics {
    /// Fault windows that opened during the run.
    pub windows: u64,
    /// Mean time from a window's start to the first exclusion of its replica by some
    /// gateway instance, over the windows where that happened before the window ended
    /// (`None`: none did).
    pub detect_s: Option<f64>,
    /// Windows not detected while open.
    pub undetected: u64,
    /// Mean time from a window's end until the p95 TTFT of a 10 s window of arrivals is back
    /// within 10% of the 60 s before the fault (`inf` if it never was by the end of the run;
    /// `None` without a baseline).
    pub recover_s: Option<f64>,
}

/// How one measured or unmeasured request ended, as every recorder it belongs to records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestEnd {
    /// Its outcome.
    pub outcome: Outcome,
    /// Arrived after warm-up.
    pub measured: bool,
    /// Arrival to the end.
    pub e2e: SimDuration,
    /// Arrival to the first token the client saw (`None`: it saw none).
    pub ttft: Option<SimDuration>,
    /// Arrival to the start of service of its latest attempt (`None`: never served).
    pub queue_wait: Option<SimDuration>,
    /// Mean time per output token after the first (completed requests with >= 2 tokens).
    pub tpot: Option<SimDuration>,
    /// Completed within its class SLO (`llm` clusters).
    pub met: bool,
    /// Completed inside the measurement window.
    pub in_window: bool,
    /// Output tokens generated (completed `llm` requests).
    pub generated: u32,
    /// Attempts it made.
    pub attempts: u64,
    /// Served by a smaller model.
    pub downgraded: bool,
}

impl RequestEnd {
    /// Adds this request to `rec` (everything but `rec.all`, which only the run's recorder
    /// keeps).
    pub fn apply(&self, rec: &mut Recorder) {
        let done = self.outcome == Outcome::Completed;
        if self.measured {
            rec.measured.add(self.outcome);
            rec.attempts += self.attempts;
            rec.retries += self.attempts.saturating_sub(1);
            rec.downgraded += u64::from(self.downgraded);
            if let Some(t) = self.ttft {
                rec.ttft.record(t);
            } else if !done {
                rec.no_first_token += 1;
            }
            if let Some(w) = self.queue_wait {
                rec.queue_wait.record(w);
            }
            if done {
                rec.e2e.record(self.e2e);
                if let Some(t) = self.tpot {
                    rec.tpot.record(t);
                }
                rec.llm.slo_met += u64::from(self.met);
            }
        }
        if self.in_window {
            rec.window_completions += 1;
            rec.llm.window_output_tokens += u64::from(self.generated);
            rec.llm.window_goodput += u64::from(self.met);
        }
    }
}

impl Recorder {
    /// Mean over time of max/mean requests in flight per replica (`None` without samples).
    pub fn load_imbalance(&self) -> Option<f64> {
        (self.imbalance_samples > 0).then(|| self.imbalance_sum / self.imbalance_samples as f64)
    }
}

/// Token, cache and cost counters of `llm` replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LlmStats {
    /// Whether the cluster has `llm` replicas (selects which metrics are reported).
    pub enabled: bool,
    /// Output tokens of requests completed inside the measurement window.
    pub window_output_tokens: u64,
    /// Measured completed requests that met their class SLO.
    pub slo_met: u64,
    /// Completions inside the measurement window that met their class SLO.
    pub window_goodput: u64,
    /// Prompt tokens of measured requests at their first admission.
    pub prompt_tokens: u64,
    /// Of those, tokens served from the prefix cache.
    pub cached_prompt_tokens: u64,
    /// Recompute preemptions (all requests).
    pub preemptions: u64,
    /// Requests refused by a replica because they can never fit (all requests).
    pub rejected_never_fit: u64,
    /// Model cold starts (loads after the initial one).
    pub cold_starts: u64,
    /// Time integral over the measurement window of the KV blocks in use / capacity, summed
    /// over replicas (seconds).
    pub kv_util_integral_s: f64,
    /// Replica-seconds in the measurement window (denominator of the KV utilisation mean).
    pub replica_window_s: f64,
    /// GPU-hours over the measurement window: GPUs × time provisioned (every lifecycle state
    /// but `Off`: a provisioning, loading, draining or crashed replica is billed too).
    pub gpu_hours: f64,
    /// Those GPU-hours at the pools' `lifecycle.gpu_hour_usd`.
    pub cost_usd: f64,
    /// Engine iterations run (all).
    pub iterations: u64,
}

impl LlmStats {
    /// Mean KV-cache utilisation over replicas and the measurement window.
    pub fn kv_util_mean(&self) -> Option<f64> {
        (self.replica_window_s > 0.0).then(|| self.kv_util_integral_s / self.replica_window_s)
    }

    /// Dollars per million output tokens: `cost_usd` over the output tokens of the requests
    /// completed in the measurement window (those `output_tokens_per_s` counts), × 10^6;
    /// `None` without such tokens.
    pub fn usd_per_m_output_tokens(&self) -> Option<f64> {
        (self.window_output_tokens > 0)
            .then(|| self.cost_usd / self.window_output_tokens as f64 * 1e6)
    }

    /// Cached prompt tokens / prompt tokens of measured requests.
    pub fn prefix_hit_rate(&self) -> Option<f64> {
        (self.prompt_tokens > 0)
            .then(|| self.cached_prompt_tokens as f64 / self.prompt_tokens as f64)
    }
}

impl Recorder {
    /// Ends a run's recording: for clusters without `llm` replicas, where the response is one
    /// unit delivered at completion, TTFT is E2E; then every distribution is prepared.
    pub fn finalize_run(&mut self, llm: bool) {
        if !llm {
            self.ttft = self.e2e.clone();
        }
        self.finalize();
    }

    /// Prepares every distribution for quantile queries.
    pub fn finalize(&mut self) {
        for l in [&mut self.ttft, &mut self.e2e, &mut self.queue_wait, &mut self.tpot] {
            l.finalize();
        }
    }
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
        l.finalize();
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
    fn layout_matches_hdrhistogram_exactly() {
        let mut ours = Latency::new();
        let mut direct = Histogram::<u64>::new_with_bounds(1, HIST_MAX_US, 3).expect("bounds");
        let mut s = Stream::from_seed(99);
        for _ in 0..100_000 {
            let us = (20.0 * s.uniform_open() * std::f64::consts::LN_10).exp() as u64 % HIST_MAX_US;
            ours.record(SimDuration(us * 1000));
            direct.saturating_record(us);
        }
        for v in [0, 1, 2047, 2048, 2049, 4095, 4096, 123_456_789, HIST_MAX_US] {
            ours.record(SimDuration(v * 1000));
            direct.saturating_record(v);
        }
        ours.finalize();
        let h = ours.hist_us.as_ref().expect("finalized");
        for q in [0.0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.9999, 1.0] {
            assert_eq!(h.value_at_quantile(q), direct.value_at_quantile(q), "q {q}");
        }
        assert_eq!(h.len(), direct.len());
        // Slot boundaries are HdrHistogram's bucket boundaries: the first and last value of a
        // slot are equivalent there, and the next slot's first value is not.
        for i in [0usize, 5, 2046, 2047, 2048, 3071, 3072, 10_000, 25_000] {
            assert_eq!(slot_of(slot_low(i)), i);
            let (lo, next) = (slot_low(i), slot_low(i + 1));
            assert!(direct.equivalent(lo, next - 1), "slot {i}");
            assert!(!direct.equivalent(lo, next), "slot {i}");
        }
    }

    #[test]
    fn censoring_pushes_quantiles_to_infinity() {
        let mut l = Latency::new();
        for ms in 1..=90 {
            l.record(SimDuration(ms * 1_000_000));
        }
        l.finalize();
        // 90 finite values and 10 censored: p50 is finite, p95 is infinite.
        let p50 = l.censored_quantile_ms(0.5, 10).expect("non-empty");
        assert!((p50 - 50.0).abs() < 0.06, "{p50}");
        assert_eq!(l.censored_quantile_ms(0.95, 10), Some(f64::INFINITY));
        assert_eq!(l.censored_quantile_ms(0.95, 0), l.quantile_ms(0.95));
        assert_eq!(Latency::new().censored_quantile_ms(0.95, 0), None);
        assert_eq!(Latency::new().censored_quantile_ms(0.95, 3), Some(f64::INFINITY));
    }
}
