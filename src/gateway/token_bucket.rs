//! Token buckets and the `admission.rate_limit` limiter built from a [`RateLimitSpec`].
//!
//! * [`TokenBucket`] — the generic bucket with continuous refill: at a request of cost `c`,
//!   `tokens = min(B, tokens + r·Δt)`, admit iff `tokens >= c`, then `tokens -= c`. It starts
//!   full. This is SGLang's `core/token_bucket.rs` (f64 tokens, refill on access, `r = 0` for a
//!   pure concurrency cap); [`TokenBucket::give_back`] is its `return_tokens_sync`, called when a
//!   response body ends, capped at the capacity. SGLang caps the return without refilling first;
//!   refilling first gives the same `min(B, tokens + returned + r·Δt)`.
//! * [`EnvoyBucket`] — `envoy.type.v3.TokenBucket` as Envoy's timer-based local rate limiter
//!   filled it: `max_tokens` (also the initial fill), `tokens_per_fill` every `fill_interval` on
//!   a timer started with the limiter (here at t = 0; a fill due at `t` lands before a request
//!   at `t`), never above `max_tokens`; each request costs one whole token. Envoy refuses a fill
//!   interval under 50 ms. Since Envoy 1.31 the default is instead `AtomicTokenBucketImpl`, a
//!   continuous bucket (start full, rate `tokens_per_fill / fill_interval`) and the timer path
//!   was later removed; `kind: token_bucket` with `burst = max_tokens` and that rate reproduces
//!   current Envoy.
//! * [`Limiter`] — one per tenant per gateway instance, wrapping either bucket or nginx's
//!   `limit_req` ([`super::limit_req`]). Token buckets never delay: a request without a token is
//!   rejected with 429 (Envoy's local rate limit status); `limit_req` delays or rejects with
//!   `limit_req_status`.
//!
//! Invariants: `0 <= tokens <= capacity` at all times; refill happens only on access (the
//! result does not depend on how often the bucket is looked at); time never runs backwards
//! inside a bucket (an earlier `now` refills nothing).
//!
//! Sources: sgl-project/sglang `sgl-model-gateway/src/core/token_bucket.rs`; envoyproxy/envoy
//! `api/envoy/type/v3/token_bucket.proto` (`max_tokens > 0`, `tokens_per_fill` default 1 and
//! `> 0`, `fill_interval > 0`), `source/extensions/filters/common/local_ratelimit/
//! local_ratelimit_impl.cc` (`TimerTokenBucket::onFillTimer`, the 50 ms minimum, the
//! `no_timer_based_rate_limit_token_bucket` guard), `source/common/common/token_bucket_impl.cc`
//! (`AtomicTokenBucketImpl`); policies.md §3.6.

use super::limit_req::{LimitDecision, LimitReq};
use crate::spec::protection::{Cost, RateLimitSpec};
use crate::time::{SimDuration, SimTime, NANOS_PER_S};

/// A continuous-refill token bucket, full at creation.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    rate_per_s: f64,
    tokens: f64,
    last: SimTime,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens refilled at `rate_per_s`.
    pub fn new(capacity: f64, rate_per_s: f64) -> TokenBucket {
        TokenBucket { capacity, rate_per_s, tokens: capacity, last: SimTime::ZERO }
    }

    fn refill(&mut self, now: SimTime) {
        if now <= self.last {
            return;
        }
        let dt_s = (now - self.last).as_secs_f64();
        self.tokens = self.capacity.min(self.tokens + self.rate_per_s * dt_s);
        self.last = now;
    }

    /// Takes `cost` tokens at `now` if there are that many.
    pub fn try_take(&mut self, cost: f64, now: SimTime) -> bool {
        self.refill(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// Returns `cost` tokens at `now` (SGLang, when a response ends), capped at the capacity.
    pub fn give_back(&mut self, cost: f64, now: SimTime) {
        self.refill(now);
        self.tokens = self.capacity.min(self.tokens + cost);
    }

    /// Tokens in the bucket at `now`.
    pub fn tokens(&mut self, now: SimTime) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// The first instant at which refill alone puts `cost` tokens in the bucket (`now` if they
    /// are there already; `None` if never: no refill, or `cost` above the capacity).
    pub fn available_at(&mut self, cost: f64, now: SimTime) -> Option<SimTime> {
        self.refill(now);
        if self.tokens >= cost {
            return Some(now);
        }
        if cost > self.capacity || self.rate_per_s <= 0.0 || !self.rate_per_s.is_finite() {
            return None;
        }
        let reach = |ns: u64| self.tokens + self.rate_per_s * (ns as f64 / NANOS_PER_S as f64);
        let mut ns = ((cost - self.tokens) / self.rate_per_s * NANOS_PER_S as f64).ceil() as u64;
        // Float rounding may leave the bucket a hair short at the computed instant.
        while reach(ns) < cost {
            ns += 1;
        }
        Some(now + SimDuration(ns))
    }
}

/// `envoy.type.v3.TokenBucket` filled in discrete steps on a timer started at t = 0.
#[derive(Debug, Clone)]
pub struct EnvoyBucket {
    max_tokens: u32,
    tokens_per_fill: u32,
    fill_interval: SimDuration,
    tokens: u32,
    fills: u64,
}

impl EnvoyBucket {
    /// A bucket holding `max_tokens`, gaining `tokens_per_fill` every `fill_interval` (never,
    /// for a zero interval, as Envoy without a fill timer).
    pub fn new(max_tokens: u32, tokens_per_fill: u32, fill_interval: SimDuration) -> EnvoyBucket {
        EnvoyBucket { max_tokens, tokens_per_fill, fill_interval, tokens: max_tokens, fills: 0 }
    }

    fn catch_up(&mut self, now: SimTime) {
        let every = self.fill_interval.as_nanos();
        if every == 0 {
            return;
        }
        let due = now.as_nanos() / every;
        if due > self.fills {
            let added = (due - self.fills).saturating_mul(u64::from(self.tokens_per_fill));
            let total = u64::from(self.tokens).saturating_add(added);
            self.tokens = total.min(u64::from(self.max_tokens)) as u32;
            self.fills = due;
        }
    }

    /// Takes one token at `now` if there is one.
    pub fn try_take(&mut self, now: SimTime) -> bool {
        self.catch_up(now);
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }

    /// Tokens in the bucket at `now`.
    pub fn tokens(&mut self, now: SimTime) -> u32 {
        self.catch_up(now);
        self.tokens
    }

    /// When the next token is there: `now` if one is, else the next fill (`None`: no fills).
    pub fn available_at(&mut self, now: SimTime) -> Option<SimTime> {
        self.catch_up(now);
        if self.tokens > 0 {
            return Some(now);
        }
        let every = self.fill_interval.as_nanos();
        (every > 0 && self.tokens_per_fill > 0 && self.max_tokens > 0)
            .then(|| SimTime(self.fills.saturating_add(1).saturating_mul(every)))
    }
}

impl RateLimitSpec {
    /// A fresh limiter (full buckets, no `limit_req` history).
    pub fn build(&self) -> Limiter {
        let state = match *self {
            RateLimitSpec::TokenBucket { rate_per_s, burst, cost } => {
                State::Bucket { bucket: TokenBucket::new(burst, rate_per_s), cost }
            }
            RateLimitSpec::EnvoyLocal { max_tokens, tokens_per_fill, fill_interval_s } => {
                // Envoy reads the interval in whole milliseconds.
                let ms = SimDuration::from_secs_f64(fill_interval_s).as_nanos() / 1_000_000;
                State::Envoy(EnvoyBucket::new(
                    max_tokens,
                    tokens_per_fill,
                    SimDuration::from_millis(ms),
                ))
            }
            RateLimitSpec::NginxLimitReq { rate_per_s, burst, nodelay, status } => {
                State::Nginx { lr: LimitReq::new(rate_per_s, burst, nodelay), status }
            }
        };
        Limiter { state }
    }
}

/// What the limiter does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admitted now.
    Admit,
    /// Admitted after this delay (nginx `limit_req` without `nodelay`).
    Delay(SimDuration),
    /// Rejected with this status.
    Reject(u16),
}

/// Status of a request a token bucket refuses (Envoy's local rate limit default).
pub const BUCKET_REJECT_STATUS: u16 = 429;

#[derive(Debug, Clone)]
enum State {
    Bucket { bucket: TokenBucket, cost: Cost },
    Envoy(EnvoyBucket),
    Nginx { lr: LimitReq, status: u16 },
}

/// One tenant's rate limiter at one gateway instance.
#[derive(Debug, Clone)]
pub struct Limiter {
    state: State,
}

impl Limiter {
    /// Decides on one request with `input_tokens` prompt tokens arriving at `now`.
    pub fn admit(&mut self, input_tokens: u32, now: SimTime) -> Decision {
        let admitted = match &mut self.state {
            State::Bucket { bucket, cost } => {
                let c = match cost {
                    Cost::Requests => 1.0,
                    Cost::InputTokens => f64::from(input_tokens),
                };
                bucket.try_take(c, now)
            }
            State::Envoy(b) => b.try_take(now),
            State::Nginx { lr, status } => {
                return match lr.request(now) {
                    LimitDecision::Admit => Decision::Admit,
                    LimitDecision::Delay(d) => Decision::Delay(d),
                    LimitDecision::Reject => Decision::Reject(*status),
                };
            }
        };
        if admitted {
            Decision::Admit
        } else {
            Decision::Reject(BUCKET_REJECT_STATUS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::protection::*;

    fn ms(m: u64) -> SimTime {
        SimTime::ZERO + SimDuration::from_millis(m)
    }

    #[test]
    fn continuous_bucket_refills_exactly_and_caps() {
        // Capacity 10, 4 tokens/s: starts full.
        let mut b = TokenBucket::new(10.0, 4.0);
        assert_eq!(b.tokens(ms(0)), 10.0);
        assert!(b.try_take(6.0, ms(0)));
        assert!(b.try_take(4.0, ms(0)));
        assert!(!b.try_take(1.0, ms(0)));
        // 250 ms at 4/s = exactly 1 token.
        assert_eq!(b.tokens(ms(250)), 1.0);
        assert!(b.try_take(1.0, ms(250)));
        // 125 ms later: 0.5 tokens, not enough for 1; the refusal costs nothing.
        assert!(!b.try_take(1.0, ms(375)));
        assert_eq!(b.tokens(ms(375)), 0.5);
        // 1 s later: 0.5 + 4 = 4.5.
        assert_eq!(b.tokens(ms(1375)), 4.5);
        // An hour later: capped at 10, never above.
        assert_eq!(b.tokens(ms(3_600_000)), 10.0);
    }

    #[test]
    fn give_back_is_capped_and_zero_rate_is_a_concurrency_cap() {
        // SGLang concurrency bucket: 2 slots, no refill.
        let mut b = TokenBucket::new(2.0, 0.0);
        assert!(b.try_take(1.0, ms(0)) && b.try_take(1.0, ms(0)));
        assert!(!b.try_take(1.0, ms(60_000)), "no refill with rate 0");
        b.give_back(1.0, ms(61_000));
        assert!(b.try_take(1.0, ms(61_000)));
        b.give_back(1.0, ms(62_000));
        b.give_back(1.0, ms(62_000));
        b.give_back(1.0, ms(62_000));
        assert_eq!(b.tokens(ms(62_000)), 2.0, "returns are capped at the capacity");
    }

    #[test]
    fn available_at_is_when_refill_alone_suffices() {
        let mut b = TokenBucket::new(3.0, 4.0);
        assert!(b.try_take(3.0, ms(0)));
        // 1 token at 4/s: 250 ms.
        assert_eq!(b.available_at(1.0, ms(0)), Some(ms(250)));
        assert!(b.clone().try_take(1.0, ms(250)));
        // 3 tokens: 750 ms; 3.5 > capacity: never.
        assert_eq!(b.available_at(3.0, ms(0)), Some(ms(750)));
        assert_eq!(b.available_at(3.5, ms(0)), None);
        // Already there.
        assert_eq!(b.available_at(2.0, ms(500)), Some(ms(500)));
        // An awkward rate still lands where the take succeeds.
        let mut c = TokenBucket::new(1.0, 3.0);
        assert!(c.try_take(1.0, ms(0)));
        let t = c.available_at(1.0, ms(0)).expect("refills");
        assert!(c.clone().try_take(1.0, t));
        assert!(!c.try_take(1.0, SimTime(t.as_nanos() - 1)));
        let mut z = TokenBucket::new(1.0, 0.0);
        z.try_take(1.0, ms(0));
        assert_eq!(z.available_at(1.0, ms(0)), None);
    }

    #[test]
    fn envoy_bucket_fills_in_discrete_steps_never_above_max() {
        // max 2, 1 per fill, every second.
        let mut b = EnvoyBucket::new(2, 1, SimDuration::from_secs(1));
        assert!(b.try_take(ms(0)) && b.try_take(ms(0)));
        assert!(!b.try_take(ms(0)));
        // No partial refill before the first tick.
        assert!(!b.try_take(ms(999)));
        assert_eq!(b.available_at(ms(999)), Some(ms(1000)));
        // The tick at 1 s lands before a request at 1 s.
        assert!(b.try_take(ms(1000)));
        assert!(!b.try_take(ms(1000)));
        // Ticks at 2 s and 3 s: 2 tokens (capped at max).
        assert_eq!(b.tokens(ms(3500)), 2);
        // 100 s: still 2.
        assert_eq!(b.tokens(ms(100_000)), 2);
        // 3 per fill with max 4: from 0, one tick gives 3, two give 4 (not 6).
        let mut c = EnvoyBucket::new(4, 3, SimDuration::from_millis(50));
        for _ in 0..4 {
            assert!(c.try_take(ms(10)));
        }
        assert_eq!(c.tokens(ms(50)), 3);
        assert_eq!(c.tokens(ms(100)), 4);
        let mut none = EnvoyBucket::new(1, 1, SimDuration::ZERO);
        assert!(none.try_take(ms(0)));
        assert!(!none.try_take(ms(10_000)));
        assert_eq!(none.available_at(ms(10_000)), None);
    }

    #[test]
    fn limiter_decisions_per_kind() {
        let spec: RateLimitSpec = serde_yaml_ng::from_str(
            "kind: token_bucket\nrate_per_s: 1\nburst: 100\ncost: input_tokens",
        )
        .expect("parse");
        let mut l = spec.build();
        assert_eq!(l.admit(60, ms(0)), Decision::Admit);
        assert_eq!(l.admit(60, ms(0)), Decision::Reject(429), "40 tokens left");
        assert_eq!(l.admit(40, ms(0)), Decision::Admit);
        let spec =
            RateLimitSpec::EnvoyLocal { max_tokens: 1, tokens_per_fill: 1, fill_interval_s: 0.5 };
        let mut l = spec.build();
        assert_eq!(l.admit(1, ms(0)), Decision::Admit);
        assert_eq!(l.admit(1, ms(499)), Decision::Reject(429));
        assert_eq!(l.admit(1, ms(500)), Decision::Admit);
        let spec =
            RateLimitSpec::NginxLimitReq { rate_per_s: 2.0, burst: 1, nodelay: false, status: 503 };
        let mut l = spec.build();
        assert_eq!(l.admit(1, ms(0)), Decision::Admit);
        // Excess 1000 at 2000/1000 per second: 500 ms.
        assert_eq!(l.admit(1, ms(0)), Decision::Delay(SimDuration::from_millis(500)));
        assert_eq!(l.admit(1, ms(0)), Decision::Reject(503));
    }

    #[test]
    fn envoy_interval_is_read_in_whole_milliseconds() {
        let spec = RateLimitSpec::EnvoyLocal {
            max_tokens: 1,
            tokens_per_fill: 1,
            fill_interval_s: 0.0509,
        };
        let mut l = spec.build();
        assert_eq!(l.admit(1, ms(0)), Decision::Admit);
        // 50.9 ms truncates to 50 ms: the fill lands at 50 ms.
        assert_eq!(l.admit(1, ms(50)), Decision::Admit);
    }

    #[test]
    fn spec_parses_with_defaults_and_rejects_typos() {
        let p = |y: &str| serde_yaml_ng::from_str::<RateLimitSpec>(y);
        assert_eq!(
            p("kind: token_bucket\nrate_per_s: 5\nburst: 10").expect("bucket"),
            RateLimitSpec::TokenBucket { rate_per_s: 5.0, burst: 10.0, cost: Cost::Requests }
        );
        assert_eq!(
            p("kind: envoy_local\nmax_tokens: 20\nfill_interval_s: 1").expect("envoy"),
            RateLimitSpec::EnvoyLocal { max_tokens: 20, tokens_per_fill: 1, fill_interval_s: 1.0 }
        );
        assert_eq!(
            p("kind: nginx_limit_req\nrate_per_s: 10").expect("nginx"),
            RateLimitSpec::NginxLimitReq {
                rate_per_s: 10.0,
                burst: 0,
                nodelay: false,
                status: 503
            }
        );
        let e = p("kind: token_bucket\nrate_per_s: 5\nburst: 10\nbrust: 3").expect_err("typo");
        assert!(e.to_string().contains("unknown field `brust`"), "{e}");
        assert!(p("kind: envoy_local\nmax_tokens: 2\nfill_interval: 1").is_err());
        assert!(p("kind: nginx_limit_req\nrate_per_s: 1\nno_delay: true").is_err());
        assert!(p("kind: leaky\nrate_per_s: 1").is_err());
        assert!(p("kind: token_bucket\nrate_per_s: 5\nburst: 10\ncost: tokens").is_err());
        assert!(p("rate_per_s: 5\nburst: 10").is_err(), "kind is required");
    }

    #[test]
    fn validate_names_the_field_and_the_fix() {
        let err = |s: RateLimitSpec| s.validate().expect_err("invalid");
        let bucket = |rate_per_s, burst| RateLimitSpec::TokenBucket {
            rate_per_s,
            burst,
            cost: Cost::Requests,
        };
        assert_eq!(bucket(5.0, 10.0).validate(), Ok(()));
        assert_eq!(
            err(bucket(-1.0, 10.0)),
            "rate_per_s = -1: must be in [0, 1000000000] (tokens per second)"
        );
        assert_eq!(
            err(bucket(1.0, 0.5)),
            "burst = 0.5: must be in [1, 1000000000000] (a request costs at least one token)"
        );
        let envoy = |max_tokens, tokens_per_fill, fill_interval_s| RateLimitSpec::EnvoyLocal {
            max_tokens,
            tokens_per_fill,
            fill_interval_s,
        };
        assert_eq!(envoy(10, 1, 0.05).validate(), Ok(()));
        assert_eq!(err(envoy(0, 1, 1.0)), "max_tokens = 0: must be >= 1 (Envoy requires > 0)");
        assert_eq!(err(envoy(1, 0, 1.0)), "tokens_per_fill = 0: must be >= 1 (Envoy requires > 0)");
        assert_eq!(
            err(envoy(1, 1, 0.01)),
            "fill_interval_s = 0.01: must be in [0.05, 1000000000] (Envoy refuses fill intervals \
             under 50 ms)"
        );
        let nginx = |rate_per_s, status| RateLimitSpec::NginxLimitReq {
            rate_per_s,
            burst: 0,
            nodelay: false,
            status,
        };
        assert_eq!(nginx(1.0 / 60.0, 429).validate(), Ok(()));
        assert!(err(nginx(0.0, 503)).starts_with("rate_per_s = 0: must be in [0.001, 1000000]"));
        assert_eq!(
            err(nginx(1.0, 200)),
            "status = 200: must be in 400..=599 (nginx limit_req_status bounds)"
        );
    }
}
