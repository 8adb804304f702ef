//! The `gateway:` section as validated: gateway instances, how fresh their signals are, and
//! the protection they apply — health checking, admission control and the route's retry
//! policy. A policy entry's own `gateway:` keys override these for its runs.

use super::client::ClientSpec;
use super::protection::{
    ActiveHealthParams, BreakerParams, NginxPassiveParams, OutlierParams, RateLimitSpec,
    ReadinessParams, RetryParams,
};
use crate::time::SimDuration;

/// How requests are spread over gateway instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spread {
    /// Uniformly at random (stream `gateway:spread`).
    #[default]
    Random,
    /// In turn.
    RoundRobin,
}

/// The `gateway:` section of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Independent gateway instances.
    pub replicas: u32,
    /// How requests pick an instance.
    pub spread: Spread,
    /// Scrape period of replica metrics (`ZERO`: live).
    pub metrics_refresh: SimDuration,
    /// Delay of KV events on their way to the KV index.
    pub kv_event_delay: SimDuration,
    /// How long a connection attempt to an unreachable replica takes to fail (Envoy's
    /// cluster `connect_timeout`, default 5 s).
    pub connect_timeout: SimDuration,
    /// Health checking: which replicas each instance routes to.
    pub health: HealthConfig,
    /// Admission control in front of routing.
    pub admission: AdmissionConfig,
    /// The route's retry policy, overriding every class's `retries`.
    pub retries: RetryOverride,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            replicas: 1,
            spread: Spread::Random,
            metrics_refresh: SimDuration::ZERO,
            kv_event_delay: SimDuration::ZERO,
            connect_timeout: SimDuration::from_secs(5),
            health: HealthConfig::default(),
            admission: AdmissionConfig::default(),
            retries: RetryOverride::Inherit,
        }
    }
}

impl GatewayConfig {
    /// The retry policy in force for a class with client settings `client`.
    pub fn retries_for<'a>(&'a self, client: &'a ClientSpec) -> Option<&'a RetryParams> {
        match &self.retries {
            RetryOverride::Inherit => client.retries.as_ref(),
            RetryOverride::Off => None,
            RetryOverride::Use(p) => Some(p),
        }
    }

    /// Whether any health mechanism is on.
    pub fn has_health(&self) -> bool {
        let h = &self.health;
        h.active.is_some()
            || h.passive.is_some()
            || h.outlier.is_some()
            || h.circuit_breaker.is_some()
            || h.readiness.is_some()
            || h.degraded_kv_util.is_some()
    }
}

/// `gateway.retries`: keep the classes' own, none, or this one for every class.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum RetryOverride {
    /// Each class's `retries` (the default).
    #[default]
    Inherit,
    /// No retries for any class (`retries: false`).
    Off,
    /// This policy for every class.
    Use(RetryParams),
}

/// `gateway.health`: the mechanisms that decide which replicas an instance routes to. Each
/// is off unless given.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    /// Active health checks, per instance (Envoy `health_checks`; SGLang's health loop).
    pub active: Option<ActiveHealthParams>,
    /// nginx passive health (`max_fails` / `fail_timeout`), per instance.
    pub passive: Option<NginxPassiveParams>,
    /// Envoy outlier detection, per instance.
    pub outlier: Option<OutlierParams>,
    /// SGLang per-worker circuit breakers, per instance.
    pub circuit_breaker: Option<BreakerParams>,
    /// Kubernetes readiness probes (one prober per replica, shared by every instance).
    pub readiness: Option<ReadinessParams>,
    /// Degraded state: no new work to a replica whose (scraped) KV use is above this, while
    /// it keeps serving what it has (`degraded: {}` gives 0.95).
    pub degraded_kv_util: Option<f64>,
    /// Envoy's panic threshold in percent: below it, health is ignored and every replica is
    /// routed to (default 50; 0 disables, as Istio's `minHealthPercent` default).
    pub healthy_panic_threshold: f64,
}

impl Default for HealthConfig {
    fn default() -> HealthConfig {
        HealthConfig {
            active: None,
            passive: None,
            outlier: None,
            circuit_breaker: None,
            readiness: None,
            degraded_kv_util: None,
            healthy_panic_threshold: 50.0,
        }
    }
}

/// `gateway.admission`: what happens to a request before it is routed. All off by default.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AdmissionConfig {
    /// Rate limit per tenant, per gateway instance.
    pub rate_limit: Option<RateLimitSpec>,
    /// SGLang's concurrency bucket: a request takes a token at admission and returns it when
    /// it ends; no token means the queue (or 429 without one).
    pub concurrency: Option<ConcurrencySpec>,
    /// nginx `max_conns`: most requests this instance has in flight at one replica; a replica
    /// at the limit is skipped, and with every candidate at it the request queues (or fails
    /// with 503 without a queue).
    pub max_conns: Option<u32>,
    /// The admission queue: bounded, with a timeout, ordered by tier priority then arrival.
    pub queue: Option<QueueSpec>,
    /// GIE saturation-detector shedding of sheddable requests (tier priority < 0).
    pub shed: Option<ShedSpec>,
    /// Model downgrade under load.
    pub downgrade: Option<DowngradeSpec>,
}

/// SGLang's token bucket used as a concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConcurrencySpec {
    /// Bucket capacity (`max_concurrent_requests`).
    pub max_concurrent_requests: u32,
    /// Refill rate (`rate_limit_tokens_per_second`, default the capacity).
    pub tokens_per_s: f64,
}

/// The admission queue (SGLang gateway defaults: 100 places, 60 s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueSpec {
    /// Most requests waiting; an arrival finding it full gets 429.
    pub size: u32,
    /// Longest wait; then 408.
    pub timeout: SimDuration,
    /// Order by tier priority, then arrival (`order: priority`, the default); `false`:
    /// first come, first served (`order: fifo`).
    pub by_priority: bool,
}

/// The GIE saturation detector as an admission check (defaults: queue 5, KV 0.8, staleness
/// 200 ms). GIE's `headroom` widens the thresholds only where the detector filters endpoints,
/// which routelab does not model, so it is not a key here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShedSpec {
    /// Waiting requests at which an endpoint counts as saturated.
    pub queue_depth_threshold: f64,
    /// KV-cache use at which an endpoint counts as saturated.
    pub kv_cache_util_threshold: f64,
    /// Metrics older than this count as saturated.
    pub metrics_staleness_threshold: SimDuration,
}

impl Default for ShedSpec {
    fn default() -> ShedSpec {
        ShedSpec {
            queue_depth_threshold: 5.0,
            kv_cache_util_threshold: 0.8,
            metrics_staleness_threshold: SimDuration::from_millis(200),
        }
    }
}

/// Model downgrade: requests for `from` go to `to` while `from`'s replicas are saturated.
#[derive(Debug, Clone, PartialEq)]
pub struct DowngradeSpec {
    /// Model asked for.
    pub from: String,
    /// Smaller model served instead.
    pub to: String,
    /// Downgrade when the GIE saturation of `from`'s replicas (as the instance sees them) is
    /// at least this.
    pub saturation_above: Option<f64>,
    /// Downgrade when the mean waiting requests per replica of `from` is at least this.
    pub queue_above: Option<f64>,
    /// The saturation detector's thresholds.
    pub detector: ShedSpec,
}
