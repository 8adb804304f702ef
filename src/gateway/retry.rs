//! The client/route retry policy with Envoy `RetryPolicy` semantics: which attempt results are
//! retried ([`RetryParams::retriable`]), the wait before each retry ([`backoff`]) and the
//! per-gateway admission of concurrent retries ([`RetryLimiter`]: the cluster circuit breaker's
//! `max_retries`, or a retry budget).
//!
//! **Retry conditions.** [`RetryOn`](crate::spec::protection::RetryOn) splits Envoy's conditions into the results the simulator
//! produces: `5xx` (a 5xx status), `reset`, `connect`, `timeout` (per-try timeout) and `429`.
//! Envoy's own `retry_on: 5xx` is wider than a 5xx status: `wouldRetryFromReset` retries *every*
//! upstream reset under `5xx` (connect failures fall through to it too), and a non-hedged
//! per-try timeout is handled as a local reset, so `5xx` also retries per-try timeouts. The
//! default `[5xx, reset, connect, timeout]` is therefore exactly Envoy's `retry_on: 5xx`;
//! Envoy's `reset` is `[reset, connect, timeout]`, `connect-failure` is `[connect]`, and
//! `retriable-status-codes: [429]` is `[429]`. Envoy retries only before the response has
//! started downstream: a streamed response (first token sent on) is never retried, and a
//! per-try timeout that fires after that is ignored; the engine measures the per-try timeout
//! from the attempt's dispatch to its first token. With `hedge_on_per_try_timeout` a per-try
//! timeout starts another attempt without cancelling the first, whatever `retry_on` says
//! (Envoy `shouldHedgeRetryPerTryTimeout`); [`RetryParams::retries_on_timeout`] folds that in.
//!
//! **Per request** (Envoy `RetryStateImpl::shouldRetry`), in this order: the result must be
//! retriable; the request must have attempts left (`max_attempts` counts the first attempt,
//! Envoy `num_retries + 1`, default 2); then the limiter must admit one more concurrent retry,
//! else the request fails with the last result (`upstream_rq_retry_overflow`). A refused retry
//! has already used up one of the request's retries, as in Envoy, which no longer matters since
//! the request ends.
//!
//! **Backoff** (`JitteredExponentialBackOffStrategy`, one per request). Intervals are whole
//! milliseconds: `base = max(1, trunc(base_interval_ms))`, `max = max(1,
//! trunc(max_interval_ms))`, unset = `10·base`. The ceiling of retry 1 is `base`; after each
//! retry it doubles while it is below `max / 2` (integer division), otherwise it becomes `max`:
//! 25, 50, 100, 200, 250, 250, ... ms with the defaults. Retry `k` waits `next_u64() %
//! ceiling_k` ms, uniform on `{0, …, ceiling_k − 1}` ms. This is `U[0, min(2^(k−1)·base, max))`
//! except that the jump to `max` happens one doubling early when `max` is odd (base 1, max 5:
//! ceilings 1, 2, 5, not 1, 2, 4). Envoy's documentation phrases it as `[0, (2^N − 1)·base)`,
//! which is the older `JitteredBackOffStrategy` (ceilings 1, 3, 7, ... × base).
//!
//! **Concurrent retries** (Envoy `ResourceManagerImpl::RetryBudgetImpl`, per cluster and per
//! proxy, here per gateway instance). Without a budget at most `max_retries` (default 3; Istio
//! 2^32−1) retries are open at once; with a budget the limit is
//! `max(trunc(budget_percent/100 · (active + pending)), min_retry_concurrency)`, where `active`
//! is the attempts in flight from this gateway (retries and hedges included) and `pending` the
//! requests queued at it; admission is `open < limit`. A retry is open from the moment it is
//! *scheduled* (Envoy increments the retries resource in `shouldRetry`, before the backoff
//! timer starts, so retries waiting out their backoff count) until the retried attempt's
//! outcome is evaluated (its response headers, i.e. first token, or its reset or per-try
//! timeout: the next `shouldRetry` call starts with `resetRetry`, which decrements), or until
//! the request is torn down (retry state destroyed: success, global timeout, client gone). The
//! engine calls `Gateways::retry_started` and `Gateways::retry_ended` at those points; the open retries are counted per gateway instance over all classes.
//!
//! Invariant: every backoff of retry `k` lies in `[0, ceiling_k)` ms.
//!
//! Sources (read for facts, no code copied): envoyproxy/envoy
//! `source/common/router/retry_state_impl.cc` (`shouldRetry`, `resetRetry`,
//! `wouldRetryFromHeaders`, `wouldRetryFromReset`, `shouldHedgeRetryPerTryTimeout`),
//! `source/common/common/backoff_strategy.cc` and `.h` (`doubling_limit_ = max_interval_ / 2`),
//! `source/common/router/config_impl.cc` (`RetryPolicyImpl`: sub-millisecond intervals rounded up
//! to 1 ms, max >= base), `source/common/router/router.cc` and `upstream_request.cc` (per-try
//! timeout, hedging), `source/common/upstream/resource_manager_impl.h` (`RetryBudgetImpl::max`),
//! `api/envoy/config/cluster/v3/circuit_breaker.proto` (defaults 20 % and 3, `max_retries` 3).

use crate::rng::Stream;
use crate::spec::protection::{BackoffParams, BudgetParams, RetryParams};
use crate::time::SimDuration;

/// The backoff ceiling of retry `k` (k = 1 for the first retry) in whole milliseconds:
/// `base`, then doubling while below `max / 2`, then `max`. `k = 0` is treated as 1.
pub fn backoff_ceiling_ms(k: u32, p: &BackoffParams) -> u64 {
    let (base, max) = (p.base_ms(), p.max_ms());
    let mut c = base;
    for _ in 1..k {
        if c >= max {
            break;
        }
        c = if c < max / 2 { c * 2 } else { max };
    }
    c
}

/// The wait before retry number k (k = 1 for the first retry) with Envoy's
/// JitteredExponentialBackOffStrategy, drawn from `rng`: uniform on `{0, …, ceiling_k − 1}`
/// whole milliseconds, one draw (see [`backoff_ceiling_ms`]).
pub fn backoff(k: u32, p: &BackoffParams, rng: &mut Stream) -> SimDuration {
    let ceiling = backoff_ceiling_ms(k, p);
    SimDuration::from_millis(rng.next_u64() % ceiling)
}

/// The concurrent-retry limit of one class's retry policy (the retry budget or max_retries).
/// The retries it is compared with are counted per gateway instance over every class, as
/// Envoy counts them per cluster and proxy, not per route.
#[derive(Debug, Clone)]
pub struct RetryLimiter {
    budget: Option<BudgetParams>,
    max_retries: u32,
}

impl RetryLimiter {
    /// The limit of retry policy `p`.
    pub fn new(p: &RetryParams) -> RetryLimiter {
        RetryLimiter { budget: p.budget.clone(), max_retries: p.max_retries }
    }

    /// The concurrent-retry limit with `active_requests` in flight and `pending_requests`
    /// queued: `max(trunc(budget_percent/100 · (active + pending)), min_retry_concurrency)`
    /// with a budget, else `max_retries`.
    pub fn limit(&self, active_requests: u32, pending_requests: u32) -> u64 {
        match &self.budget {
            Some(b) => {
                let load = u64::from(active_requests) + u64::from(pending_requests);
                // Envoy's expression and evaluation order; `as` truncates toward zero.
                let share = (b.budget_percent / 100.0 * load as f64) as u64;
                share.max(u64::from(b.min_retry_concurrency))
            }
            None => u64::from(self.max_retries),
        }
    }

    /// Whether one more retry may start with `open_retries` open at the gateway,
    /// `active_requests` requests in flight and `pending_requests` queued there.
    pub fn may_retry(
        &self,
        open_retries: u32,
        active_requests: u32,
        pending_requests: u32,
    ) -> bool {
        u64::from(open_retries) < self.limit(active_requests, pending_requests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::status::AttemptResult;
    use crate::spec::protection::*;
    use AttemptResult::{ConnectFailure, Reset, Status, Success, Timeout};

    fn parse(yaml: &str) -> Result<RetryParams, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn serde_defaults_and_typo_rejected() {
        let p = parse("{}").expect("empty");
        assert_eq!(p, RetryParams::default());
        assert_eq!(p.max_attempts, 2);
        assert_eq!(p.max_retries, 3);
        assert_eq!((p.backoff.base_ms(), p.backoff.max_ms()), (25, 250));
        assert_eq!(p.budget, None);
        let p = parse(
            "retry_on: [5xx, 429, \"429\", connect]\nper_try_timeout_s: 2.5\nbudget: {}\n\
             backoff: {base_interval_ms: 10}",
        )
        .expect("yaml");
        assert_eq!(
            p.retry_on,
            vec![RetryOn::Http5xx, RetryOn::Http429, RetryOn::Http429, RetryOn::Connect]
        );
        assert_eq!(p.per_try_timeout(), Some(SimDuration::from_millis(2500)));
        assert_eq!(p.budget, Some(BudgetParams { budget_percent: 20.0, min_retry_concurrency: 3 }));
        assert_eq!((p.backoff.base_ms(), p.backoff.max_ms()), (10, 100));
        assert!(p.validate().is_ok());
        let e = parse("max_attempt: 3").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = parse("budget: {budget_percnt: 5}").unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = parse("retry_on: [5xx, gateway-error]").unwrap_err();
        assert!(e.contains("unknown retry_on `gateway-error`"), "{e}");
    }

    #[test]
    fn validate_messages() {
        let bad = |p: RetryParams| p.validate().unwrap_err();
        let e = bad(RetryParams { max_attempts: 0, ..Default::default() });
        assert!(e.starts_with("max_attempts = 0:"), "{e}");
        let e = bad(RetryParams { per_try_timeout_s: Some(0.0), ..Default::default() });
        assert!(e.starts_with("per_try_timeout_s = 0:"), "{e}");
        let e = bad(RetryParams { hedge_on_per_try_timeout: true, ..Default::default() });
        assert!(e.starts_with("hedge_on_per_try_timeout = true:") && e.contains("per_try"));
        let e = bad(RetryParams {
            backoff: BackoffParams { base_interval_ms: 100.0, max_interval_ms: Some(50.0) },
            ..Default::default()
        });
        assert!(e.starts_with("backoff.max_interval_ms = 50:") && e.contains("base"), "{e}");
        let e = bad(RetryParams {
            backoff: BackoffParams { base_interval_ms: -1.0, max_interval_ms: None },
            ..Default::default()
        });
        assert!(e.starts_with("backoff.base_interval_ms = -1:"), "{e}");
        let e = bad(RetryParams {
            budget: Some(BudgetParams { budget_percent: 120.0, min_retry_concurrency: 3 }),
            ..Default::default()
        });
        assert!(e.starts_with("budget.budget_percent = 120:"), "{e}");
        // Sub-millisecond intervals round up to 1 ms, as Envoy does, and then compare equal.
        let p = RetryParams {
            backoff: BackoffParams { base_interval_ms: 0.7, max_interval_ms: Some(0.3) },
            ..Default::default()
        };
        assert!(p.validate().is_ok());
        assert_eq!((p.backoff.base_ms(), p.backoff.max_ms()), (1, 1));
    }

    #[test]
    fn retriable_per_retry_on() {
        let with = |on: &[RetryOn]| RetryParams { retry_on: on.to_vec(), ..Default::default() };
        let cases: [(AttemptResult, Option<RetryOn>); 9] = [
            (Success, None),
            (Status(200), None),
            (Status(404), None),
            (Status(500), Some(RetryOn::Http5xx)),
            (Status(503), Some(RetryOn::Http5xx)),
            (Status(429), Some(RetryOn::Http429)),
            (Reset, Some(RetryOn::Reset)),
            (ConnectFailure, Some(RetryOn::Connect)),
            (Timeout, Some(RetryOn::Timeout)),
        ];
        for (result, needs) in cases {
            for c in RetryOn::ALL {
                assert_eq!(
                    with(&[c]).retriable(result),
                    needs == Some(c),
                    "{result:?} under {c:?}"
                );
            }
            assert!(!with(&[]).retriable(result));
        }
        // The default is Envoy's `5xx`: everything but success, 4xx and 429.
        let d = RetryParams::default();
        for r in [Status(500), Status(502), Reset, ConnectFailure, Timeout] {
            assert!(d.retriable(r), "{r:?}");
        }
        assert!(!d.retriable(Status(429)));
        // Hedging retries a per-try timeout even without `timeout`.
        let h = RetryParams {
            retry_on: vec![RetryOn::Http5xx],
            per_try_timeout_s: Some(1.0),
            hedge_on_per_try_timeout: true,
            ..Default::default()
        };
        assert!(!h.retriable(Timeout) && h.retries_on_timeout());
        assert!(d.retries_on_timeout());
        assert!(!with(&[RetryOn::Reset]).retries_on_timeout());
    }

    #[test]
    fn backoff_ceilings_follow_the_code() {
        let d = BackoffParams::default();
        let c: Vec<u64> = (1..=7).map(|k| backoff_ceiling_ms(k, &d)).collect();
        assert_eq!(c, vec![25, 50, 100, 200, 250, 250, 250]);
        assert_eq!(backoff_ceiling_ms(0, &d), 25);
        // Odd max: the jump to max happens when the ceiling reaches max/2 (integer): 1, 2, 5.
        let odd = BackoffParams { base_interval_ms: 1.0, max_interval_ms: Some(5.0) };
        let c: Vec<u64> = (1..=4).map(|k| backoff_ceiling_ms(k, &odd)).collect();
        assert_eq!(c, vec![1, 2, 5, 5]);
        // base == max: constant.
        let flat = BackoffParams { base_interval_ms: 40.0, max_interval_ms: Some(40.0) };
        assert_eq!(backoff_ceiling_ms(5, &flat), 40);
        // Huge k does not overflow or loop long.
        assert_eq!(backoff_ceiling_ms(u32::MAX, &d), 250);
    }

    #[test]
    fn jittered_backoff_bounds() {
        let p = BackoffParams::default();
        let mut rng = Stream::from_seed(3);
        for k in 1..=6 {
            let ceiling = backoff_ceiling_ms(k, &p);
            let (mut lo, mut hi) = (u64::MAX, 0);
            for _ in 0..20_000 {
                let d = backoff(k, &p, &mut rng);
                assert_eq!(d.as_nanos() % 1_000_000, 0, "whole milliseconds");
                let ms = d.as_nanos() / 1_000_000;
                assert!(ms < ceiling, "retry {k}: {ms} ms >= {ceiling} ms");
                lo = lo.min(ms);
                hi = hi.max(ms);
            }
            // 20 000 draws over at most 250 values: both ends are hit.
            assert_eq!((lo, hi), (0, ceiling - 1), "retry {k}");
        }
        // base 1 ms: the first retry is always immediate.
        let one = BackoffParams { base_interval_ms: 1.0, max_interval_ms: None };
        assert_eq!(backoff(1, &one, &mut rng), SimDuration::ZERO);
    }

    #[test]
    fn retry_budget() {
        let p = RetryParams { budget: Some(BudgetParams::default()), ..Default::default() };
        let l = RetryLimiter::new(&p);
        // max(trunc(0.2 · active), 3).
        let limits: Vec<u64> = [0, 10, 14, 15, 16, 100].iter().map(|&a| l.limit(a, 0)).collect();
        assert_eq!(limits, vec![3, 3, 3, 3, 3, 20]);
        assert_eq!(l.limit(20, 0), 4);
        assert_eq!(l.limit(10, 10), 4, "pending requests count too");
        // Admission is `open < limit`.
        assert!(l.may_retry(2, 10, 0));
        assert!(!l.may_retry(3, 10, 0));
        assert!(l.may_retry(3, 20, 0), "the limit grows with load");
    }

    #[test]
    fn max_retries_without_budget() {
        let l = RetryLimiter::new(&RetryParams::default());
        assert!(l.may_retry(2, 1000, 1000));
        assert!(!l.may_retry(3, 1000, 1000), "max_retries 3 ignores load");
        assert_eq!(l.limit(0, 0), 3);
        let none = RetryLimiter::new(&RetryParams { max_retries: 0, ..Default::default() });
        assert!(!none.may_retry(0, 0, 0));
    }
}
