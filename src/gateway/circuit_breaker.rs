//! SGLang Model Gateway's per-worker circuit breaker: `Closed → Open → HalfOpen → Closed` on
//! *consecutive* outcomes.
//!
//! One [`CircuitBreakers`] per gateway instance holds one breaker per replica and reproduces
//! `core/circuit_breaker.rs`:
//!
//! * success: `failures = 0; successes += 1`; in `HalfOpen` with `successes >=
//!   success_threshold` → `Closed`. Failure: `successes = 0; failures += 1`; in `Closed` with
//!   `failures >= failure_threshold` → `Open`; in `HalfOpen` → `Open` at once.
//! * Outcomes in `Open` (stragglers dispatched before it opened) only move the counters: no
//!   transition, and the open timer is **not** restarted.
//! * `Open → HalfOpen` happens **lazily on read** (`can_execute` / `state()`), once
//!   `now - last_state_change >= timeout` — at exactly `timeout`, not after.
//!   [`CircuitBreakers::record`] reads the stored state without that check, as SGLang's
//!   `record_success` / `record_failure` do.
//! * Every transition resets counters: to `Closed` both, to `Open` the successes, to `HalfOpen`
//!   both. `HalfOpen` admits every request (no probe limit).
//! * `window_s` is stored but unused: SGLang counts consecutive outcomes, not a window.
//!
//! What counts as a failure ([`CircuitBreakers::is_failure`]): the HTTP router records
//! `status.is_success()` for non-streaming requests, so **every non-2xx** response — 5xx, 429
//! and other 4xx alike — is a failure; a transport error is converted to a 5xx/504 response and
//! counts too; a streamed response counts at stream end (failure on a mid-stream error or a
//! non-2xx start, success on a clean end, nothing on client disconnect).
//!
//! Workers whose breaker refuses are removed from every policy's candidate set
//! (`is_available()`), so the engine filters on [`CircuitBreakers::can_execute`].
//!
//! Sources: sgl-project/sglang `sgl-model-gateway/src/core/circuit_breaker.rs` (state machine,
//! library defaults 5 / 2 / 30 s / 60 s), `sgl-model-gateway/src/routers/http/router.rs`
//! (`route_typed_request_once`, `send_typed_request`: where outcomes are recorded),
//! `sgl-model-gateway/src/main.rs` (CLI defaults 10 / 3 / 60 / 120),
//! `sgl-model-gateway/src/config/validation.rs` (thresholds >= 1, durations > 0);
//! policies.md §3.5.

use super::status::AttemptResult;
use crate::spec::protection::BreakerParams;
use crate::time::{SimDuration, SimTime};

/// The state of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are refused until `timeout` has passed since it opened.
    Open,
    /// Requests flow again; one failure reopens, `success_threshold` successes close.
    HalfOpen,
}

#[derive(Debug, Clone, Copy)]
struct Breaker {
    state: BreakerState,
    failures: u32,
    successes: u32,
    changed_at: SimTime,
}

impl Breaker {
    const NEW: Breaker = Breaker {
        state: BreakerState::Closed,
        failures: 0,
        successes: 0,
        changed_at: SimTime::ZERO,
    };

    fn transition(&mut self, to: BreakerState, now: SimTime) {
        if self.state == to {
            return;
        }
        self.state = to;
        self.changed_at = now;
        self.successes = 0;
        if to != BreakerState::Open {
            self.failures = 0;
        }
    }
}

/// One breaker per replica, as one gateway instance keeps them.
#[derive(Debug, Clone)]
pub struct CircuitBreakers {
    failure_threshold: u32,
    success_threshold: u32,
    timeout: SimDuration,
    workers: Vec<Breaker>,
}

impl CircuitBreakers {
    /// All `replicas` breakers closed.
    pub fn new(p: &BreakerParams, replicas: usize) -> CircuitBreakers {
        CircuitBreakers {
            failure_threshold: p.failure_threshold,
            success_threshold: p.success_threshold,
            timeout: SimDuration::from_secs_f64(p.timeout_s),
            workers: vec![Breaker::NEW; replicas],
        }
    }

    /// Grows or shrinks to `replicas` breakers; new ones start closed.
    pub fn resize(&mut self, replicas: usize) {
        self.workers.resize(replicas, Breaker::NEW);
    }

    /// SGLang's `state()`: the state after the lazy `Open → HalfOpen` check at `now`.
    pub fn state_at(&mut self, r: u32, now: SimTime) -> BreakerState {
        let timeout = self.timeout;
        let b = &mut self.workers[r as usize];
        if b.state == BreakerState::Open && now.since(b.changed_at) >= timeout {
            b.transition(BreakerState::HalfOpen, now);
        }
        b.state
    }

    /// Whether `r` may take a request at `now` (closed or half-open); an open breaker whose
    /// timeout has passed turns half-open here.
    pub fn can_execute(&mut self, r: u32, now: SimTime) -> bool {
        self.state_at(r, now) != BreakerState::Open
    }

    /// The stored state, without the lazy transition (what [`CircuitBreakers::record`] sees).
    pub fn state(&self, r: u32) -> BreakerState {
        self.workers[r as usize].state
    }

    /// Consecutive failures of `r` since the last success or reset.
    pub fn consecutive_failures(&self, r: u32) -> u32 {
        self.workers[r as usize].failures
    }

    /// Consecutive successes of `r` since the last failure or reset.
    pub fn consecutive_successes(&self, r: u32) -> u32 {
        self.workers[r as usize].successes
    }

    /// Records one outcome of `r` at `now`; returns `Some(t)` when `r` just opened, `t` the
    /// instant a read may turn it half-open.
    pub fn record(&mut self, r: u32, success: bool, now: SimTime) -> Option<SimTime> {
        let (ft, st, timeout) = (self.failure_threshold, self.success_threshold, self.timeout);
        let b = &mut self.workers[r as usize];
        if success {
            b.failures = 0;
            b.successes = b.successes.saturating_add(1);
            if b.state == BreakerState::HalfOpen && b.successes >= st {
                b.transition(BreakerState::Closed, now);
            }
            return None;
        }
        b.successes = 0;
        b.failures = b.failures.saturating_add(1);
        let opens = match b.state {
            BreakerState::Closed => b.failures >= ft,
            BreakerState::HalfOpen => true,
            BreakerState::Open => false,
        };
        opens.then(|| {
            b.transition(BreakerState::Open, now);
            now + timeout
        })
    }

    /// Whether SGLang counts `result` as a failure: everything but a 2xx response.
    pub fn is_failure(result: AttemptResult) -> bool {
        !matches!(result, AttemptResult::Success | AttemptResult::Status(200..=299))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::status::AttemptResult;
    use crate::spec::protection::*;
    use BreakerState::{Closed, HalfOpen, Open};

    fn at(s: u64) -> SimTime {
        SimTime::ZERO + SimDuration::from_secs(s)
    }

    fn breakers(ft: u32, st: u32, timeout_s: f64) -> CircuitBreakers {
        let p = BreakerParams {
            failure_threshold: ft,
            success_threshold: st,
            timeout_s,
            window_s: 60.0,
        };
        CircuitBreakers::new(&p, 2)
    }

    #[test]
    fn opens_at_the_threshold_of_consecutive_failures() {
        let mut b = breakers(3, 2, 30.0);
        assert_eq!(b.record(0, false, at(1)), None);
        assert_eq!(b.record(0, false, at(2)), None);
        // A success in between resets the run.
        assert_eq!(b.record(0, true, at(3)), None);
        assert_eq!(b.consecutive_failures(0), 0);
        assert_eq!(b.record(0, false, at(4)), None);
        assert_eq!(b.record(0, false, at(5)), None);
        assert_eq!(b.state(0), Closed);
        // Third consecutive failure: opens, may half-open at 6 + 30.
        assert_eq!(b.record(0, false, at(6)), Some(at(36)));
        assert_eq!(b.state(0), Open);
        assert_eq!(b.consecutive_failures(0), 3, "opening keeps the failure count");
        assert!(!b.can_execute(0, at(7)));
        assert!(b.can_execute(1, at(7)), "replica 1 has its own breaker");
    }

    #[test]
    fn open_half_open_closed_with_lazy_transition_exactly_at_timeout() {
        let mut b = breakers(1, 2, 30.0);
        assert_eq!(b.record(0, false, at(10)), Some(at(40)));
        // One nanosecond before the timeout: still open.
        assert!(!b.can_execute(0, SimTime(at(40).as_nanos() - 1)));
        // Nothing has read it at 40 s yet: the stored state stays open.
        assert_eq!(b.state(0), Open);
        // Read at exactly 40 s: half-open, counters reset.
        assert!(b.can_execute(0, at(40)));
        assert_eq!(b.state(0), HalfOpen);
        assert_eq!((b.consecutive_failures(0), b.consecutive_successes(0)), (0, 0));
        // Half-open admits everything; two successes close it.
        assert!(b.can_execute(0, at(41)));
        assert_eq!(b.record(0, true, at(42)), None);
        assert_eq!(b.state(0), HalfOpen);
        assert_eq!(b.record(0, true, at(43)), None);
        assert_eq!(b.state(0), Closed);
        assert_eq!(b.consecutive_successes(0), 0, "closing resets both counters");
    }

    #[test]
    fn half_open_failure_reopens_and_restarts_the_timer() {
        let mut b = breakers(5, 3, 60.0);
        for t in 0..5 {
            b.record(0, false, at(t));
        }
        assert_eq!(b.state(0), Open);
        assert_eq!(b.state_at(0, at(64)), HalfOpen);
        b.record(0, true, at(65));
        // One failure in half-open, whatever the threshold: open again until 66 + 60.
        assert_eq!(b.record(0, false, at(66)), Some(at(126)));
        assert_eq!(b.state_at(0, at(125)), Open);
        assert_eq!(b.state_at(0, at(126)), HalfOpen);
    }

    #[test]
    fn outcomes_while_open_do_not_transition_or_extend() {
        let mut b = breakers(1, 1, 10.0);
        b.record(0, false, at(0));
        // Stragglers: a failure does not restart the timer, a success does not close.
        assert_eq!(b.record(0, false, at(5)), None);
        assert_eq!(b.record(0, true, at(6)), None);
        assert_eq!(b.state(0), Open);
        assert_eq!(b.consecutive_successes(0), 1);
        // A success recorded after the timeout but before any read still sees Open.
        assert_eq!(b.record(0, true, at(12)), None);
        assert_eq!(b.state(0), Open);
        assert_eq!(b.state_at(0, at(12)), HalfOpen);
        b.record(0, true, at(13));
        assert_eq!(b.state(0), Closed);
    }

    #[test]
    fn every_non_2xx_result_is_a_failure() {
        assert!(!CircuitBreakers::is_failure(AttemptResult::Success));
        assert!(!CircuitBreakers::is_failure(AttemptResult::Status(200)));
        for r in [
            AttemptResult::Status(500),
            AttemptResult::Status(503),
            AttemptResult::Status(429),
            AttemptResult::Status(404),
            AttemptResult::Reset,
            AttemptResult::ConnectFailure,
            AttemptResult::Timeout,
        ] {
            assert!(CircuitBreakers::is_failure(r), "{r:?}");
        }
    }

    #[test]
    fn params_parse_with_cli_defaults_and_reject_typos() {
        let p: BreakerParams = serde_yaml_ng::from_str("{}").expect("empty mapping");
        assert_eq!(p, BreakerParams::default());
        assert_eq!((p.failure_threshold, p.success_threshold), (10, 3));
        assert_eq!((p.timeout_s, p.window_s), (60.0, 120.0));
        let lib = BreakerParams::library();
        assert_eq!((lib.failure_threshold, lib.success_threshold), (5, 2));
        assert_eq!((lib.timeout_s, lib.window_s), (30.0, 60.0));
        let p: BreakerParams =
            serde_yaml_ng::from_str("failure_threshold: 2\ntimeout_s: 0.5").expect("partial");
        assert_eq!((p.failure_threshold, p.success_threshold, p.timeout_s), (2, 3, 0.5));
        assert!(serde_yaml_ng::from_str::<BreakerParams>("timeout: 5").is_err());
    }

    #[test]
    fn validate_names_the_field() {
        assert_eq!(BreakerParams::default().validate(), Ok(()));
        let bad = |p: BreakerParams| p.validate().expect_err("invalid");
        let e = bad(BreakerParams { failure_threshold: 0, ..BreakerParams::default() });
        assert!(e.starts_with("failure_threshold = 0: must be >= 1"), "{e}");
        let e = bad(BreakerParams { success_threshold: 0, ..BreakerParams::default() });
        assert!(e.starts_with("success_threshold = 0: must be >= 1"), "{e}");
        let e = bad(BreakerParams { timeout_s: 0.0, ..BreakerParams::default() });
        assert_eq!(e, "timeout_s = 0: must be a number of seconds in (0, 1e9]");
        let e = bad(BreakerParams { window_s: f64::NAN, ..BreakerParams::default() });
        assert_eq!(e, "window_s = NaN: must be a number of seconds in (0, 1e9]");
    }
}
