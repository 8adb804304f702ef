//! Parameters of the gateway's protection mechanisms, as a scenario writes them: health
//! checks, passive health, outlier detection, circuit breakers, rate limits, retries and
//! readiness probes. Each struct is the YAML schema of its section (unknown keys are
//! errors; every field has the real system's default) with a `validate` that names the field
//! and the fix. The mechanisms themselves live in `crate::gateway`, one file each.

use crate::gateway::status::AttemptResult;
use crate::time::SimDuration;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

/// The `active_health:` parameters of a gateway (Envoy `HealthCheck` fields; the defaults are
/// ours where Envoy has none).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActiveHealthParams {
    /// Seconds between probes of a healthy host. Envoy requires it and has no default; 5 s is
    /// our choice (a common production setting).
    pub interval_s: f64,
    /// Seconds a probe waits for its response before it counts as a network failure.
    pub timeout_s: f64,
    /// Consecutive failures that mark a healthy host unhealthy.
    pub unhealthy_threshold: u32,
    /// Consecutive successes that mark an unhealthy host healthy.
    pub healthy_threshold: u32,
    /// Seconds between probes after a failure on an unhealthy host or the failure that flips
    /// it (default: `interval_s`).
    pub unhealthy_interval_s: Option<f64>,
    /// Seconds until the next probe after a failure that leaves a healthy host pending
    /// (default: the unhealthy interval).
    pub unhealthy_edge_interval_s: Option<f64>,
    /// Seconds until the next probe after a success that leaves an unhealthy host pending
    /// (default: `interval_s`).
    pub healthy_edge_interval_s: Option<f64>,
    /// Extra wait drawn uniformly from `[0, interval_jitter_s)` for every probe.
    pub interval_jitter_s: f64,
    /// Extra wait drawn uniformly from `[0, percent · base / 100)` for every probe.
    pub interval_jitter_percent: u32,
    /// Whether an unexpected HTTP status marks a healthy host unhealthy at once (Envoy) rather
    /// than counting as one failure (SGLang).
    pub bad_status_immediate: bool,
    /// Whether the next probe is due an interval after the previous one was sent (a ticker, as
    /// in SGLang) rather than an interval after its result (Envoy).
    pub fixed_rate: bool,
}

impl Default for ActiveHealthParams {
    fn default() -> ActiveHealthParams {
        ActiveHealthParams {
            interval_s: 5.0,
            timeout_s: 1.0,
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            unhealthy_interval_s: None,
            unhealthy_edge_interval_s: None,
            healthy_edge_interval_s: None,
            interval_jitter_s: 0.0,
            interval_jitter_percent: 0,
            bad_status_immediate: true,
            fixed_rate: false,
        }
    }
}

impl ActiveHealthParams {
    /// The SGLang gateway's health checker: `GET /health` every 60 s on a ticker, 5 s timeout,
    /// unhealthy after 3 consecutive failures of any kind, healthy after 2 successes.
    pub fn sglang() -> ActiveHealthParams {
        ActiveHealthParams {
            interval_s: 60.0,
            timeout_s: 5.0,
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            bad_status_immediate: false,
            fixed_rate: true,
            ..ActiveHealthParams::default()
        }
    }

    /// Checks ranges; the message names the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        let i = self.interval_s;
        if !i.is_finite() || i <= 0.0 {
            return Err(format!("interval_s = {i}: must be a finite number of seconds > 0"));
        }
        let t = self.timeout_s;
        if !t.is_finite() || t <= 0.0 || t > i {
            return Err(format!(
                "timeout_s = {t}: must be > 0 and <= interval_s ({i}); one probe per host is in \
                 flight at a time"
            ));
        }
        for (name, v) in [
            ("unhealthy_interval_s", self.unhealthy_interval_s),
            ("unhealthy_edge_interval_s", self.unhealthy_edge_interval_s),
            ("healthy_edge_interval_s", self.healthy_edge_interval_s),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || v <= 0.0 {
                    return Err(format!(
                        "{name} = {v}: must be a finite number of seconds > 0 (or left out)"
                    ));
                }
                if self.fixed_rate && v < t {
                    return Err(format!(
                        "{name} = {v}: must be >= timeout_s ({t}) with fixed_rate, or the next \
                         probe would be due before the previous one ends"
                    ));
                }
            }
        }
        let j = self.interval_jitter_s;
        if !j.is_finite() || j < 0.0 {
            return Err(format!(
                "interval_jitter_s = {j}: must be a finite number of seconds >= 0"
            ));
        }
        if self.interval_jitter_percent > 100 {
            return Err(format!(
                "interval_jitter_percent = {}: must be in [0, 100]",
                self.interval_jitter_percent
            ));
        }
        for (name, v) in [
            ("unhealthy_threshold", self.unhealthy_threshold),
            ("healthy_threshold", self.healthy_threshold),
        ] {
            if v == 0 {
                return Err(format!("{name} = 0: must be >= 1"));
            }
        }
        Ok(())
    }
}

/// The `readiness:` parameters (a container's `readinessProbe`, plus the endpoint delay).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadinessParams {
    /// Seconds between probe sends (`periodSeconds`; Kubernetes takes whole seconds >= 1).
    pub period_s: f64,
    /// Seconds a probe waits for its answer before failing (`timeoutSeconds`).
    pub timeout_s: f64,
    /// Consecutive failures that make a Ready pod unready (`failureThreshold`).
    pub failure_threshold: u32,
    /// Consecutive successes that make an unready pod Ready (`successThreshold`).
    pub success_threshold: u32,
    /// Seconds after a container starts before it is probed (`initialDelaySeconds`).
    pub initial_delay_s: f64,
    /// Seconds from a Ready flip to the gateways seeing the endpoint change (kubelet → API
    /// server → EndpointSlice → gateway watch). The 1 s default is an assumption.
    pub propagation_delay_s: f64,
}

impl Default for ReadinessParams {
    fn default() -> ReadinessParams {
        ReadinessParams {
            period_s: 10.0,
            timeout_s: 1.0,
            failure_threshold: 3,
            success_threshold: 1,
            initial_delay_s: 0.0,
            propagation_delay_s: 1.0,
        }
    }
}

impl ReadinessParams {
    /// Checks ranges; the message names the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        let p = self.period_s;
        if !p.is_finite() || p <= 0.0 {
            return Err(format!("period_s = {p}: must be a finite number of seconds > 0"));
        }
        let t = self.timeout_s;
        if !t.is_finite() || t <= 0.0 || t > p {
            return Err(format!(
                "timeout_s = {t}: must be > 0 and <= period_s ({p}); one probe per pod is in \
                 flight at a time"
            ));
        }
        for (name, v) in [
            ("initial_delay_s", self.initial_delay_s),
            ("propagation_delay_s", self.propagation_delay_s),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} = {v}: must be a finite number of seconds >= 0"));
            }
        }
        for (name, v) in [
            ("failure_threshold", self.failure_threshold),
            ("success_threshold", self.success_threshold),
        ] {
            if v == 0 {
                return Err(format!("{name} = 0: must be >= 1"));
            }
        }
        Ok(())
    }
}

/// One `proxy_next_upstream` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum NextUpstream {
    /// Connection errors (refused, reset, broken while sending or reading).
    #[serde(rename = "error")]
    Error,
    /// Connect, send or read timeouts.
    #[serde(rename = "timeout")]
    Timeout,
    /// HTTP 500.
    #[serde(rename = "http_500")]
    Http500,
    /// HTTP 502.
    #[serde(rename = "http_502")]
    Http502,
    /// HTTP 503.
    #[serde(rename = "http_503")]
    Http503,
    /// HTTP 504.
    #[serde(rename = "http_504")]
    Http504,
    /// HTTP 429.
    #[serde(rename = "http_429")]
    Http429,
    /// Also pass on POST/LOCK/PATCH requests once they were sent (every LLM request is a POST).
    #[serde(rename = "non_idempotent")]
    NonIdempotent,
}

impl NextUpstream {
    pub(crate) fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The name in the scenario file (and in nginx's `proxy_next_upstream`).
    pub fn name(self) -> &'static str {
        match self {
            NextUpstream::Error => "error",
            NextUpstream::Timeout => "timeout",
            NextUpstream::Http500 => "http_500",
            NextUpstream::Http502 => "http_502",
            NextUpstream::Http503 => "http_503",
            NextUpstream::Http504 => "http_504",
            NextUpstream::Http429 => "http_429",
            NextUpstream::NonIdempotent => "non_idempotent",
        }
    }
}

/// `health: { kind: nginx_passive, ... }` — nginx's per-server `max_fails` / `fail_timeout` and
/// the location's `proxy_next_upstream`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxPassiveParams {
    /// Failures within `fail_timeout_s` that make a server unavailable (nginx default 1; 0
    /// disables the accounting).
    #[serde(default = "default_max_fails")]
    pub max_fails: u32,
    /// How long a server stays unavailable, and the window failures are counted in, in whole
    /// seconds (nginx default 10).
    #[serde(default = "default_fail_timeout_s")]
    pub fail_timeout_s: u32,
    /// `proxy_next_upstream` conditions (nginx default `error timeout`; an empty list is `off`).
    #[serde(default = "default_next_upstream")]
    pub next_upstream: Vec<NextUpstream>,
}

fn default_max_fails() -> u32 {
    1
}

fn default_fail_timeout_s() -> u32 {
    10
}

fn default_next_upstream() -> Vec<NextUpstream> {
    vec![NextUpstream::Error, NextUpstream::Timeout]
}

impl Default for NginxPassiveParams {
    fn default() -> NginxPassiveParams {
        NginxPassiveParams {
            max_fails: default_max_fails(),
            fail_timeout_s: default_fail_timeout_s(),
            next_upstream: default_next_upstream(),
        }
    }
}

impl NginxPassiveParams {
    /// Checks the parameters; every `u32` value is one nginx accepts, so only a repeated
    /// `next_upstream` condition is refused.
    pub fn validate(&self) -> Result<(), String> {
        for (i, c) in self.next_upstream.iter().enumerate() {
            if self.next_upstream[..i].contains(c) {
                return Err(format!(
                    "next_upstream lists {} twice: list each condition once",
                    c.name()
                ));
            }
        }
        Ok(())
    }
}

/// `health: { kind: circuit_breaker, ... }` — SGLang's `--cb-*` options.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerParams {
    /// Consecutive failures that open a closed breaker (`--cb-failure-threshold`, CLI default
    /// 10; library default 5).
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// Consecutive successes in half-open that close it (`--cb-success-threshold`, CLI default
    /// 3; library default 2).
    #[serde(default = "default_success_threshold")]
    pub success_threshold: u32,
    /// Seconds open before the next read turns it half-open (`--cb-timeout-duration-secs`, CLI
    /// default 60; library default 30).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// `--cb-window-duration-secs` (CLI default 120; library default 60): stored and validated
    /// but unused, as in SGLang.
    #[serde(default = "default_window_s")]
    pub window_s: f64,
}

fn default_failure_threshold() -> u32 {
    10
}

fn default_success_threshold() -> u32 {
    3
}

fn default_timeout_s() -> f64 {
    60.0
}

fn default_window_s() -> f64 {
    120.0
}

impl Default for BreakerParams {
    /// The SGLang CLI defaults (what a deployed gateway runs with).
    fn default() -> BreakerParams {
        BreakerParams {
            failure_threshold: default_failure_threshold(),
            success_threshold: default_success_threshold(),
            timeout_s: default_timeout_s(),
            window_s: default_window_s(),
        }
    }
}

impl BreakerParams {
    /// The library defaults (`CircuitBreakerConfig::default()`): 5 / 2 / 30 s / 60 s.
    pub fn library() -> BreakerParams {
        BreakerParams {
            failure_threshold: 5,
            success_threshold: 2,
            timeout_s: 30.0,
            window_s: 60.0,
        }
    }

    /// Checks the parameters against SGLang's own validation.
    pub fn validate(&self) -> Result<(), String> {
        if self.failure_threshold < 1 {
            return Err("failure_threshold = 0: must be >= 1 (SGLang refuses 0; use a huge \
                        value to effectively disable the breaker)"
                .to_string());
        }
        if self.success_threshold < 1 {
            return Err("success_threshold = 0: must be >= 1 (SGLang refuses 0)".to_string());
        }
        for (name, v) in [("timeout_s", self.timeout_s), ("window_s", self.window_s)] {
            if !(v.is_finite() && v > 0.0 && v <= 1e9) {
                return Err(format!("{name} = {v}: must be a number of seconds in (0, 1e9]"));
            }
        }
        Ok(())
    }
}

/// What one request costs in a [`RateLimitSpec::TokenBucket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cost {
    /// One token per request.
    #[default]
    Requests,
    /// One token per prompt token (a TPM-style limit).
    InputTokens,
}

fn one() -> u32 {
    1
}

fn status_503() -> u16 {
    503
}

/// `admission.rate_limit` in a scenario: one limiter per tenant per gateway instance.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RateLimitSpec {
    /// The generic continuous bucket (also current Envoy's local rate limit).
    TokenBucket {
        /// Refill rate, tokens per second.
        rate_per_s: f64,
        /// Capacity and initial fill, in tokens.
        burst: f64,
        /// What a request costs (`requests`, the default, or `input_tokens`).
        #[serde(default)]
        cost: Cost,
    },
    /// Envoy's local rate limit with timer fills (`envoy.type.v3.TokenBucket`).
    EnvoyLocal {
        /// Capacity and initial fill.
        max_tokens: u32,
        /// Tokens added per fill (Envoy default 1).
        #[serde(default = "one")]
        tokens_per_fill: u32,
        /// Seconds between fills (Envoy requires at least 0.05).
        fill_interval_s: f64,
    },
    /// nginx `limit_req_zone rate=...` + `limit_req burst=... [nodelay]` + `limit_req_status`.
    NginxLimitReq {
        /// Zone rate in requests per second (nginx keeps it in thousandths).
        rate_per_s: f64,
        /// Requests allowed in excess of the rate (nginx default 0).
        #[serde(default)]
        burst: u32,
        /// Serve burst requests at once instead of delaying them (nginx default off).
        #[serde(default)]
        nodelay: bool,
        /// Status of rejected requests (nginx `limit_req_status`, default 503).
        #[serde(default = "status_503")]
        status: u16,
    },
}

/// Checks that `v` is finite and within `[lo, hi]`, else says so naming `name`.
fn in_range(name: &str, v: f64, lo: f64, hi: f64, why: &str) -> Result<(), String> {
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err(format!("{name} = {v}: must be in [{lo}, {hi}]{why}"))
    }
}

impl RateLimitSpec {
    /// Checks the numbers; the message names the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            RateLimitSpec::TokenBucket { rate_per_s, burst, .. } => {
                in_range("rate_per_s", rate_per_s, 0.0, 1e9, " (tokens per second)")?;
                in_range("burst", burst, 1.0, 1e12, " (a request costs at least one token)")
            }
            RateLimitSpec::EnvoyLocal { max_tokens, tokens_per_fill, fill_interval_s } => {
                if max_tokens == 0 {
                    return Err("max_tokens = 0: must be >= 1 (Envoy requires > 0)".to_string());
                }
                if tokens_per_fill == 0 {
                    return Err(
                        "tokens_per_fill = 0: must be >= 1 (Envoy requires > 0)".to_string()
                    );
                }
                in_range(
                    "fill_interval_s",
                    fill_interval_s,
                    0.05,
                    1e9,
                    " (Envoy refuses fill intervals under 50 ms)",
                )
            }
            RateLimitSpec::NginxLimitReq { rate_per_s, status, .. } => {
                in_range(
                    "rate_per_s",
                    rate_per_s,
                    0.001,
                    1e6,
                    " (nginx keeps the rate in thousandths; 1r/m is 0.0167)",
                )?;
                if !(400..=599).contains(&status) {
                    return Err(format!(
                        "status = {status}: must be in 400..=599 (nginx limit_req_status bounds)"
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The outlier-detection section: Envoy's `OutlierDetection` fields (durations in seconds).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierParams {
    /// Consecutive 5xx (and, unsplit, local-origin errors mapped to 503/504) that trigger a
    /// detection; 0 disables. Envoy default 5.
    pub consecutive_5xx: u32,
    /// Consecutive 502/503/504 (unsplit: including resets, connect failures and timeouts) that
    /// trigger a detection; 0 disables (Istio's default). Envoy default 5.
    pub consecutive_gateway_failure: u32,
    /// Consecutive local-origin failures that trigger a detection (only with
    /// `split_external_local_origin_errors`); 0 disables. Envoy default 5.
    pub consecutive_local_origin_failure: u32,
    /// Period of the ejection-analysis timer. Envoy default 10 s.
    pub interval_s: f64,
    /// Ejection time per unit of the backoff multiplier. Envoy default 30 s.
    pub base_ejection_time_s: f64,
    /// Cap of `base × multiplier`; unset means 300 s or `base_ejection_time_s` if larger.
    pub max_ejection_time_s: Option<f64>,
    /// Upper end of the random extra ejection time drawn per ejection. Envoy default 0.
    pub max_ejection_time_jitter_s: f64,
    /// Largest share of the replicas that may be ejected at once, in percent (0-100).
    /// Envoy default 10.
    pub max_ejection_percent: u32,
    /// Allow one ejection whatever `max_ejection_percent` says. Envoy default false.
    pub always_eject_one_host: bool,
    /// Older Envoy behaviour (before PR #27909): one host may always be ejected whatever
    /// max_ejection_percent says (precisely: eject while `100·ejected/n < max_ejection_percent`).
    pub legacy_ejection_cap: bool,
    /// Percent chance a consecutive-5xx detection ejects. Envoy default 100.
    pub enforcing_consecutive_5xx: u32,
    /// Percent chance a consecutive-gateway-failure detection ejects. Envoy default 0 (detect
    /// only).
    pub enforcing_consecutive_gateway_failure: u32,
    /// Percent chance a consecutive-local-origin-failure detection ejects. Envoy default 100.
    pub enforcing_consecutive_local_origin_failure: u32,
    /// Percent chance a success-rate detection ejects. Envoy default 100.
    pub enforcing_success_rate: u32,
    /// Percent chance a local-origin success-rate detection ejects. Envoy default 100.
    pub enforcing_local_origin_success_rate: u32,
    /// Percent chance a failure-percentage detection ejects. Envoy default 0.
    pub enforcing_failure_percentage: u32,
    /// Percent chance a local-origin failure-percentage detection ejects. Envoy default 0.
    pub enforcing_failure_percentage_local_origin: u32,
    /// Hosts with enough volume needed for the success-rate pass. Envoy default 5.
    pub success_rate_minimum_hosts: u32,
    /// Requests in the last interval for a host to take part in the success-rate pass.
    /// Envoy default 100.
    pub success_rate_request_volume: u32,
    /// Standard deviations below the mean, times 1000, that make a success-rate outlier.
    /// Envoy default 1900 (= 1.9).
    pub success_rate_stdev_factor: u32,
    /// Failure percentage (0-100) at or above which a host is a failure-percentage outlier.
    /// Envoy default 85.
    pub failure_percentage_threshold: u32,
    /// Hosts with enough volume needed for the failure-percentage pass. Envoy default 5.
    pub failure_percentage_minimum_hosts: u32,
    /// Requests in the last interval for a host to take part in the failure-percentage pass.
    /// Envoy default 50.
    pub failure_percentage_request_volume: u32,
    /// Count local-origin errors (connect failures, resets, timeouts) apart from HTTP codes.
    /// Envoy default false.
    pub split_external_local_origin_errors: bool,
    /// A successful active health check un-ejects the host. Envoy default true.
    pub successful_active_health_check_uneject_host: bool,
}

impl Default for OutlierParams {
    fn default() -> OutlierParams {
        OutlierParams {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 5,
            consecutive_local_origin_failure: 5,
            interval_s: 10.0,
            base_ejection_time_s: 30.0,
            max_ejection_time_s: None,
            max_ejection_time_jitter_s: 0.0,
            max_ejection_percent: 10,
            always_eject_one_host: false,
            legacy_ejection_cap: false,
            enforcing_consecutive_5xx: 100,
            enforcing_consecutive_gateway_failure: 0,
            enforcing_consecutive_local_origin_failure: 100,
            enforcing_success_rate: 100,
            enforcing_local_origin_success_rate: 100,
            enforcing_failure_percentage: 0,
            enforcing_failure_percentage_local_origin: 0,
            success_rate_minimum_hosts: 5,
            success_rate_request_volume: 100,
            success_rate_stdev_factor: 1900,
            failure_percentage_threshold: 85,
            failure_percentage_minimum_hosts: 5,
            failure_percentage_request_volume: 50,
            split_external_local_origin_errors: false,
            successful_active_health_check_uneject_host: true,
        }
    }
}

/// Seconds to whole milliseconds, rounded to nearest (callers validate first).
pub(crate) fn secs_to_ms(s: f64) -> u64 {
    (s * 1000.0).round() as u64
}

impl OutlierParams {
    /// Checks ranges; the message names the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in
            [("interval_s", self.interval_s), ("base_ejection_time_s", self.base_ejection_time_s)]
        {
            if !v.is_finite() || v < 0.0005 {
                return Err(format!("{name} = {v}: must be at least 0.001 (one millisecond)"));
            }
        }
        if let Some(m) = self.max_ejection_time_s {
            if !m.is_finite() || secs_to_ms(m) < secs_to_ms(self.base_ejection_time_s) {
                return Err(format!(
                    "max_ejection_time_s = {m}: must be at least base_ejection_time_s ({})",
                    self.base_ejection_time_s
                ));
            }
        }
        let j = self.max_ejection_time_jitter_s;
        if !j.is_finite() || j < 0.0 {
            return Err(format!("max_ejection_time_jitter_s = {j}: must be a finite number >= 0"));
        }
        for (name, v) in [
            ("max_ejection_percent", self.max_ejection_percent),
            ("enforcing_consecutive_5xx", self.enforcing_consecutive_5xx),
            ("enforcing_consecutive_gateway_failure", self.enforcing_consecutive_gateway_failure),
            (
                "enforcing_consecutive_local_origin_failure",
                self.enforcing_consecutive_local_origin_failure,
            ),
            ("enforcing_success_rate", self.enforcing_success_rate),
            ("enforcing_local_origin_success_rate", self.enforcing_local_origin_success_rate),
            ("enforcing_failure_percentage", self.enforcing_failure_percentage),
            (
                "enforcing_failure_percentage_local_origin",
                self.enforcing_failure_percentage_local_origin,
            ),
            ("failure_percentage_threshold", self.failure_percentage_threshold),
        ] {
            if v > 100 {
                return Err(format!("{name} = {v}: must be a percentage from 0 to 100"));
            }
        }
        Ok(())
    }

    /// The interval, in whole milliseconds.
    pub fn interval_ms(&self) -> u64 {
        secs_to_ms(self.interval_s)
    }

    /// The base ejection time, in whole milliseconds.
    pub fn base_ejection_time_ms(&self) -> u64 {
        secs_to_ms(self.base_ejection_time_s)
    }

    /// The effective maximum ejection time in whole milliseconds (unset: 300 s or the base if
    /// larger).
    pub fn max_ejection_time_ms(&self) -> u64 {
        match self.max_ejection_time_s {
            Some(m) => secs_to_ms(m),
            None => self.base_ejection_time_ms().max(300_000),
        }
    }
}

/// One retry condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RetryOn {
    /// `5xx`: a 5xx status (Envoy's `5xx` also covers the three conditions below).
    Http5xx,
    /// `reset`: the connection broke after the request was sent (after the first token only
    /// with `resend_broken_streams`).
    Reset,
    /// `connect`: the connection could not be made.
    Connect,
    /// `timeout`: the per-try timeout expired before the first token.
    Timeout,
    /// `429`: the replica's queue was full (Envoy `retriable-status-codes: [429]`).
    Http429,
}

impl RetryOn {
    /// The YAML name.
    pub fn name(self) -> &'static str {
        match self {
            RetryOn::Http5xx => "5xx",
            RetryOn::Reset => "reset",
            RetryOn::Connect => "connect",
            RetryOn::Timeout => "timeout",
            RetryOn::Http429 => "429",
        }
    }

    pub(crate) const ALL: [RetryOn; 5] =
        [RetryOn::Http5xx, RetryOn::Reset, RetryOn::Connect, RetryOn::Timeout, RetryOn::Http429];
}

/// Accepts the names as strings, and `429` also as a YAML integer.
impl<'de> serde::Deserialize<'de> for RetryOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RetryOn, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RetryOn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("one of 5xx, reset, connect, timeout, 429")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RetryOn, E> {
                RetryOn::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
                    E::custom(format!(
                        "unknown retry_on `{s}`: expected one of 5xx, reset, connect, timeout, 429"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RetryOn, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RetryOn, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// Envoy `retry_back_off`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffParams {
    /// Ceiling of the first retry's wait; truncated to whole ms, at least 1 ms. Envoy default
    /// 25 ms.
    pub base_interval_ms: f64,
    /// Largest ceiling; unset means 10 × base (Envoy's default).
    pub max_interval_ms: Option<f64>,
}

impl Default for BackoffParams {
    fn default() -> BackoffParams {
        BackoffParams { base_interval_ms: 25.0, max_interval_ms: None }
    }
}

impl BackoffParams {
    /// The base interval in whole milliseconds, as Envoy stores it.
    pub fn base_ms(&self) -> u64 {
        (self.base_interval_ms as u64).max(1)
    }

    /// The maximum interval in whole milliseconds.
    pub fn max_ms(&self) -> u64 {
        match self.max_interval_ms {
            Some(m) => (m as u64).max(1),
            None => self.base_ms().saturating_mul(10),
        }
    }
}

/// Envoy `RetryBudget` (circuit-breaker thresholds).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetParams {
    /// Concurrent retries allowed as a percentage (0-100) of active plus pending requests.
    /// Envoy default 20.
    pub budget_percent: f64,
    /// Concurrent retries always allowed, whatever the percentage gives. Envoy default 3.
    pub min_retry_concurrency: u32,
}

impl Default for BudgetParams {
    fn default() -> BudgetParams {
        BudgetParams { budget_percent: 20.0, min_retry_concurrency: 3 }
    }
}

/// The retry policy of a route, plus the cluster's retry limit.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryParams {
    /// Attempts per request including the first (Envoy `num_retries` + 1; default 2).
    pub max_attempts: u32,
    /// Results that are retried; default `[5xx, reset, connect, timeout]`, which is Envoy's
    /// `retry_on: 5xx` (a 5xx status, any reset, connect failures and per-try timeouts).
    pub retry_on: Vec<RetryOn>,
    /// Timeout of one attempt, measured to the attempt's first token (as Envoy's: it does not
    /// fire once the response has begun); unset: none.
    pub per_try_timeout_s: Option<f64>,
    /// Envoy hedging: on per-try timeout start another attempt without cancelling the first.
    pub hedge_on_per_try_timeout: bool,
    /// Backoff between attempts.
    pub backoff: BackoffParams,
    /// Retry budget; overrides `max_retries` when set.
    pub budget: Option<BudgetParams>,
    /// Envoy circuit breaker `max_retries`: concurrent retries per gateway, default 3 (used
    /// when there is no budget).
    pub max_retries: u32,
    /// Envoy's `previous_hosts` retry host predicate (on in Istio's default retry policy): a
    /// retry avoids the replicas the request already tried, while others are available.
    pub previous_hosts: bool,
    /// Whether a broken stream (a reset after the first token) is retried by sending the whole
    /// request again, as a client's own retry loop does: the answer starts over and its TTFT is
    /// the new attempt's. `false` is a proxy's retry policy (Envoy retries a reset only before
    /// the downstream response started; nginx never after the header): a crash mid-answer is
    /// then `failed`. Default `true`.
    pub resend_broken_streams: bool,
}

impl Default for RetryParams {
    fn default() -> RetryParams {
        RetryParams {
            max_attempts: 2,
            retry_on: vec![RetryOn::Http5xx, RetryOn::Reset, RetryOn::Connect, RetryOn::Timeout],
            per_try_timeout_s: None,
            hedge_on_per_try_timeout: false,
            backoff: BackoffParams::default(),
            budget: None,
            max_retries: 3,
            previous_hosts: false,
            resend_broken_streams: true,
        }
    }
}

impl RetryParams {
    /// Checks ranges; the message names the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_attempts == 0 {
            return Err("max_attempts = 0: must be at least 1 (the first attempt counts)".into());
        }
        if let Some(t) = self.per_try_timeout_s {
            if !t.is_finite() || t <= 0.0 {
                return Err(format!(
                    "per_try_timeout_s = {t}: must be a positive number of seconds (omit it for none)"
                ));
            }
        } else if self.hedge_on_per_try_timeout {
            return Err(
                "hedge_on_per_try_timeout = true: needs per_try_timeout_s to be set".to_string()
            );
        }
        let b = self.backoff.base_interval_ms;
        if !b.is_finite() || b <= 0.0 {
            return Err(format!("backoff.base_interval_ms = {b}: must be a positive number"));
        }
        if let Some(m) = self.backoff.max_interval_ms {
            if !m.is_finite() || m <= 0.0 || self.backoff.max_ms() < self.backoff.base_ms() {
                return Err(format!(
                    "backoff.max_interval_ms = {m}: must be at least backoff.base_interval_ms ({b})"
                ));
            }
        }
        if let Some(budget) = &self.budget {
            let p = budget.budget_percent;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!(
                    "budget.budget_percent = {p}: must be a percentage from 0 to 100"
                ));
            }
        }
        Ok(())
    }

    /// Whether `r` is retried under `retry_on` (a success never is). A hedged per-try timeout
    /// is started regardless; see [`RetryParams::retries_on_timeout`].
    pub fn retriable(&self, r: AttemptResult) -> bool {
        let on = |c: RetryOn| self.retry_on.contains(&c);
        match r {
            AttemptResult::Success => false,
            AttemptResult::Status(c) if (500..600).contains(&c) => on(RetryOn::Http5xx),
            AttemptResult::Status(429) => on(RetryOn::Http429),
            AttemptResult::Status(_) => false,
            AttemptResult::Reset => on(RetryOn::Reset),
            AttemptResult::ConnectFailure => on(RetryOn::Connect),
            AttemptResult::Timeout => on(RetryOn::Timeout),
        }
    }

    /// Whether a per-try timeout leads to another attempt: hedging always does, otherwise
    /// `timeout` in `retry_on`.
    pub fn retries_on_timeout(&self) -> bool {
        self.hedge_on_per_try_timeout || self.retry_on.contains(&RetryOn::Timeout)
    }

    /// The per-try timeout as a duration.
    pub fn per_try_timeout(&self) -> Option<SimDuration> {
        self.per_try_timeout_s.map(SimDuration::from_secs_f64)
    }
}
