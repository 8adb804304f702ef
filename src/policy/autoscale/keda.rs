//! `keda`: a KEDA `ScaledObject` (`keda.sh/v1alpha1`): KEDA's own activation 0 ↔ 1 with
//! cooldown, and the HPA it generates (External metrics) between 1 and max.
//!
//! **Config.** The parameters are the ScaledObject `spec` in camelCase: `scaleTargetRef.name`
//! (or `pool:`), `pollingInterval` (30 s), `cooldownPeriod` (300 s), `initialCooldownPeriod`
//! (0), `minReplicaCount` (0), `maxReplicaCount` (100), `idleReplicaCount` (unset), `fallback
//! {failureThreshold, replicas}`, `advanced.horizontalPodAutoscalerConfig.behavior` (the
//! generated HPA's `behavior`, see `hpa`), `triggers`. Simulator fields:
//! `hpaSyncPeriodSeconds` (15, the HPA controller's sync period) and `tolerance` (0.1, the HPA
//! controller flag). Only `type: prometheus` triggers are simulated: `metricType`
//! `AverageValue` (default) or `Value`; `metadata.threshold` (required) and
//! `metadata.activationThreshold` (0) as strings or numbers, parsed as floats like KEDA does;
//! the metric is the first simulated metric name in `metadata.query` (else
//! `metadata.metricName`), e.g. `sum(vllm:num_requests_waiting{model="x"})` → waiting.
//!
//! With only `pool:` given, the trigger is the vLLM production-stack default
//! (`helm/templates/scaledobject-vllm.yaml`): prometheus `vllm:num_requests_waiting`, threshold
//! 5, i.e. `desired ≈ ceil(total waiting / 5)`, with KEDA's defaults otherwise (min 0: the pool
//! goes to zero 300 s after the queue was last non-empty — even while requests are running,
//! exactly as that chart does).
//!
//! **Query value.** The query's outer aggregation over the pool's pods with a sample: `sum`,
//! `avg`, `max`, `min`, `count`; anything else (a bare selector, `rate(...)`) is summed. No
//! sample → 0 (KEDA's `ignoreNullValues: true` default). With an activator (scenario
//! `activator:`, the HTTP add-on's interceptor), the requests it holds add to `sum` queries
//! of `vllm:num_requests_waiting` / concurrency, so a ScaledObject at zero activates on them. `avg_over_time(...[d])` /
//! `max_over_time(...[d])` set the scrape window; other range functions are read as the latest
//! scrape.
//!
//! **Every `pollingInterval`** (`scale_scaledobjects.go: RequestScale`): `isActive` = some
//! trigger's value > its `activationThreshold`.
//! - Active: at 0 replicas (or, with `idleReplicaCount`, below `minReplicaCount`) scale to
//!   `max(minReplicaCount, 1)`; `lastActiveTime = now`.
//! - Inactive, replicas > 0 and `minReplicaCount == 0` (or replicas > `idleReplicaCount`):
//!   scale to `idleReplicaCount` (else `minReplicaCount`) once `lastActiveTime + cooldownPeriod
//!   < now`, or, never active, once `creation + initialCooldownPeriod < now` (creation: t = 0).
//! - Inactive below `minReplicaCount` without idle mode: scale to `minReplicaCount`.
//!
//! **Every `hpaSyncPeriodSeconds`** the generated HPA syncs (`hpa::HpaCore`): `minReplicas =
//! max(minReplicaCount, 1)`, `maxReplicas = maxReplicaCount`, one External metric per trigger
//! with target `threshold` (`AverageValue`: `ceil(value / threshold)`; `Value`:
//! `ceil(value / threshold × readyPods)`, both with the tolerance), the behavior, and the HPA's
//! "replicas 0 → no action" rule, which leaves 0 ↔ 1 to KEDA. Real KEDA runs the two loops
//! independently (KEDA's scale loop every `pollingInterval`, the HPA every 15 s, querying
//! KEDA's metrics server at each sync); here the engine ticks at `gcd(pollingInterval,
//! hpaSyncPeriodSeconds)` and each loop runs on its own schedule from the first tick. When both
//! fall on one tick, KEDA's write comes first and the HPA reads it.
//!
//! **Fallback** is parsed and validated (non-negative fields; `AverageValue` triggers only) but
//! never triggers: the simulator's scrapes and queries never fail. Real KEDA also errors when a
//! query returns several series (a bare selector over several pods) — routelab sums them
//! instead. `scalingModifiers` are not simulated (rejected).
//!
//! Sources (read, not copied): kedacore/keda `pkg/scaling/executor/scale_scaledobjects.go`
//! (`RequestScale`, `scaleToZeroOrIdle`, `scaleFromZeroOrIdle`),
//! `apis/keda/v1alpha1/scaledobject_types.go` (`GetHPAMinReplicas`,
//! `CheckReplicaCountBoundsAreValid`, `CheckFallbackValid`), `pkg/scalers/prometheus_scaler.go`,
//! `pkg/fallback/fallback.go`, kedacore/keda-docs `content/docs/2.15/reference/scaledobject-
//! spec.md`; vllm-project/production-stack `helm/templates/scaledobject-vllm.yaml`; routelab
//! `policies.md` §4.2, §4.3, §9.7.

use super::hpa::{
    cluster_tolerance, positive_or, target_pool, BehaviorSpec, HpaConfig, HpaCore, MetricRule,
    Source, Target, DEFAULT_DOWNSCALE_WINDOW, DEFAULT_SYNC_PERIOD,
};
use super::{
    parse_params, AutoscaleCtx, Autoscaler, AutoscalerEntry, MetricQuery, PodView, ScaleInput,
    Seconds, SimMetric, MAX_METRICS,
};
use crate::time::{SimDuration, SimTime};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Registry entry.
pub static ENTRY: AutoscalerEntry = AutoscalerEntry {
    name: "keda",
    summary: "KEDA ScaledObject: activation 0<->1 with cooldown, HPA External metrics 1..max",
    build,
};

/// KEDA's default `pollingInterval`, seconds.
const DEFAULT_POLLING_S: u32 = 30;
/// KEDA's default `cooldownPeriod`, seconds.
const DEFAULT_COOLDOWN_S: u32 = 300;
/// KEDA's default `maxReplicaCount`.
const DEFAULT_MAX_REPLICAS: u32 = 100;
/// The vLLM production-stack trigger (summed over the pods).
const DEFAULT_QUERY: &str = "sum(vllm:num_requests_waiting)";
/// The vLLM production-stack threshold.
const DEFAULT_THRESHOLD: f64 = 5.0;

// ------------------------------------------------------------------------------------------
// The spec as written
// ------------------------------------------------------------------------------------------

/// `spec` of a `ScaledObject`, plus the simulator fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KedaSpec {
    scale_target_ref: Option<KedaTargetRef>,
    pool: Option<String>,
    polling_interval: Option<u32>,
    cooldown_period: Option<u32>,
    initial_cooldown_period: Option<u32>,
    min_replica_count: Option<u32>,
    max_replica_count: Option<u32>,
    idle_replica_count: Option<u32>,
    fallback: Option<FallbackSpec>,
    advanced: Option<AdvancedSpec>,
    triggers: Option<Vec<TriggerSpec>>,
    hpa_sync_period_seconds: Option<Seconds>,
    tolerance: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KedaTargetRef {
    name: String,
    #[allow(dead_code)] // Deployment; not checked
    kind: Option<String>,
    #[allow(dead_code)] // apps/v1; not checked
    api_version: Option<String>,
    #[allow(dead_code)] // no environment in the simulator
    env_source_container_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FallbackSpec {
    failure_threshold: i64,
    replicas: i64,
    #[allow(dead_code)] // fallback never triggers in the simulator
    behavior: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AdvancedSpec {
    horizontal_pod_autoscaler_config: Option<HpaConfigSpec>,
    #[allow(dead_code)] // only matters when the ScaledObject is deleted
    restore_to_original_replica_count: Option<bool>,
    scaling_modifiers: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HpaConfigSpec {
    #[allow(dead_code)] // the generated HPA's name
    name: Option<String>,
    behavior: Option<BehaviorSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TriggerSpec {
    #[serde(rename = "type")]
    kind: String,
    metric_type: Option<String>,
    #[allow(dead_code)] // a label
    name: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, serde_yaml_ng::Value>,
    #[allow(dead_code)] // no credentials in the simulator
    authentication_ref: Option<serde_yaml_ng::Value>,
    #[allow(dead_code)] // the simulator's queries are free
    use_cached_metrics: Option<bool>,
}

// ------------------------------------------------------------------------------------------
// Prometheus triggers
// ------------------------------------------------------------------------------------------

/// How a query reduces the per-pod series to one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// `sum(...)` (and anything without a recognised outer aggregation).
    Sum,
    /// `avg(...)`.
    Avg,
    /// `max(...)`.
    Max,
    /// `min(...)`.
    Min,
    /// `count(...)`.
    Count,
}

impl Aggregation {
    fn from_name(name: &str) -> Option<Aggregation> {
        Some(match name {
            "sum" => Aggregation::Sum,
            "avg" => Aggregation::Avg,
            "max" => Aggregation::Max,
            "min" => Aggregation::Min,
            "count" => Aggregation::Count,
            _ => return None,
        })
    }

    /// The aggregate of `values` (0 when empty, as with `ignoreNullValues`).
    fn of(self, values: impl Iterator<Item = f64>) -> f64 {
        let (mut n, mut sum) = (0usize, 0.0);
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            n += 1;
            sum += v;
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if n == 0 {
            return 0.0;
        }
        match self {
            Aggregation::Sum => sum,
            Aggregation::Avg => sum / n as f64,
            Aggregation::Max => hi,
            Aggregation::Min => lo,
            Aggregation::Count => n as f64,
        }
    }
}

/// What a PromQL query reads, as far as the simulator understands it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryRead {
    /// The metric.
    pub metric: SimMetric,
    /// The outer aggregation.
    pub aggregation: Aggregation,
    /// `avg_over_time` / `max_over_time` range (0: the latest scrape).
    pub window: SimDuration,
    /// `max_over_time`.
    pub max: bool,
}

/// The identifiers of a PromQL query (metric, function and label names), skipping quoted
/// label values and numbers or durations.
fn identifiers(query: &str) -> Vec<&str> {
    let bytes = query.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            // A quoted label value: skip to the closing quote.
            i += 1;
            while i < bytes.len() && bytes[i] != c {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c.is_ascii_digit() {
            // A number or a duration such as `5m`.
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || b"_:".contains(&bytes[i]))
            {
                i += 1;
            }
            out.push(&query[start..i]);
        } else {
            i += 1;
        }
    }
    out
}

/// A Prometheus duration (`30s`, `5m`, `1h30m`, `500ms`).
fn prom_duration(text: &str) -> Option<SimDuration> {
    let mut total_ms: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let units: &[(&str, u64)] = &[
            ("ms", 1),
            ("s", 1000),
            ("m", 60_000),
            ("h", 3_600_000),
            ("d", 86_400_000),
            ("w", 604_800_000),
            ("y", 31_536_000_000),
        ];
        let (unit, ms) = units.iter().find(|(u, _)| rest.starts_with(u))?;
        rest = &rest[unit.len()..];
        total_ms = total_ms.checked_add(n.checked_mul(*ms)?)?;
    }
    Some(SimDuration::from_millis(total_ms))
}

/// Reads `query` (and the `metricName` fallback); `Err` is one line naming both.
pub fn read_query(query: Option<&str>, metric_name: Option<&str>) -> Result<QueryRead, String> {
    let ids = query.map(identifiers).unwrap_or_default();
    let metric = ids
        .iter()
        .chain(metric_name.iter())
        .find_map(|name| SimMetric::from_name(name))
        .ok_or_else(|| {
        format!(
            "no simulated metric in query `{}` (metricName `{}`): supported metrics are {}",
            query.unwrap_or(""),
            metric_name.unwrap_or(""),
            SimMetric::supported()
        )
    })?;
    let aggregation =
        ids.first().and_then(|f| Aggregation::from_name(f)).unwrap_or(Aggregation::Sum);
    let q = query.unwrap_or("");
    let over_time = ["avg_over_time", "max_over_time"];
    let window = if over_time.iter().any(|f| ids.contains(f)) {
        let range = q.split_once('[').and_then(|(_, r)| r.split_once(']')).map(|(d, _)| d);
        range.and_then(prom_duration).ok_or_else(|| format!("no range `[...]` in query `{q}`"))?
    } else {
        SimDuration::ZERO
    };
    Ok(QueryRead { metric, aggregation, window, max: ids.contains(&"max_over_time") })
}

/// A float in trigger metadata, written as a string (`'5'`) or a number.
fn metadata_f64(
    meta: &BTreeMap<String, serde_yaml_ng::Value>,
    key: &str,
) -> Result<Option<f64>, String> {
    let Some(v) = meta.get(key) else { return Ok(None) };
    let parsed = match v {
        serde_yaml_ng::Value::Number(n) => n.as_f64(),
        serde_yaml_ng::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match parsed {
        Some(x) if x.is_finite() => Ok(Some(x)),
        _ => Err(format!("metadata.{key} must be a number, got {v:?}")),
    }
}

fn metadata_str<'a>(
    meta: &'a BTreeMap<String, serde_yaml_ng::Value>,
    key: &str,
) -> Option<&'a str> {
    meta.get(key).and_then(serde_yaml_ng::Value::as_str)
}

/// One prometheus trigger.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Trigger {
    read: QueryRead,
    threshold: f64,
    activation: f64,
    /// `metricType: Value` (else AverageValue).
    value_type: bool,
}

impl TriggerSpec {
    fn resolve(&self, i: usize) -> Result<Trigger, String> {
        let at = |e: String| format!("trigger {i}: {e}");
        if self.kind != "prometheus" {
            return Err(at(format!(
                "type `{}` is not simulated: supported: prometheus",
                self.kind
            )));
        }
        let value_type = match self.metric_type.as_deref() {
            None | Some("AverageValue") => false,
            Some("Value") => true,
            Some(other) => {
                return Err(at(format!(
                    "metricType `{other}`: prometheus takes AverageValue or Value"
                )))
            }
        };
        let read = read_query(
            metadata_str(&self.metadata, "query"),
            metadata_str(&self.metadata, "metricName"),
        )
        .map_err(at)?;
        let threshold = metadata_f64(&self.metadata, "threshold").map_err(at)?;
        let threshold = threshold.ok_or_else(|| at("metadata.threshold is required".into()))?;
        // The HPA target is `NewMilliQuantity(int64(threshold * 1000))`.
        if (threshold * 1000.0) as i64 <= 0 {
            return Err(at(format!("metadata.threshold must be >= 0.001, got {threshold}")));
        }
        let activation =
            metadata_f64(&self.metadata, "activationThreshold").map_err(at)?.unwrap_or(0.0);
        Ok(Trigger { read, threshold, activation, value_type })
    }
}

fn default_trigger() -> Trigger {
    let read = read_query(Some(DEFAULT_QUERY), None).unwrap_or(QueryRead {
        metric: SimMetric::Waiting,
        aggregation: Aggregation::Sum,
        window: SimDuration::ZERO,
        max: false,
    });
    Trigger { read, threshold: DEFAULT_THRESHOLD, activation: 0.0, value_type: false }
}

// ------------------------------------------------------------------------------------------
// The autoscaler
// ------------------------------------------------------------------------------------------

/// A ScaledObject: KEDA's activation loop and the HPA it owns.
#[derive(Debug, Clone)]
pub struct Keda {
    pool: u16,
    triggers: Vec<Trigger>,
    hpa: HpaCore,
    polling: SimDuration,
    sync: SimDuration,
    tick: SimDuration,
    next_poll: SimTime,
    next_sync: SimTime,
    cooldown: SimDuration,
    initial_cooldown: SimDuration,
    min_replicas: u32,
    max_replicas: u32,
    idle_replicas: Option<u32>,
    created: SimTime,
    last_active: Option<SimTime>,
}

impl KedaSpec {
    /// Validates the spec into a ScaledObject.
    pub fn resolve(&self, ctx: &AutoscaleCtx<'_>) -> Result<Keda, String> {
        let ref_name = self.scale_target_ref.as_ref().map(|r| r.name.as_str());
        let pool = target_pool(ctx, ref_name, self.pool.as_deref())?;
        let triggers = match &self.triggers {
            None => vec![default_trigger()],
            Some(ts) if ts.is_empty() || ts.len() > MAX_METRICS => {
                return Err(format!(
                    "a ScaledObject takes 1..={MAX_METRICS} triggers in routelab, got {}",
                    ts.len()
                ))
            }
            Some(ts) => {
                ts.iter().enumerate().map(|(i, t)| t.resolve(i)).collect::<Result<_, _>>()?
            }
        };
        let min_replicas = self.min_replica_count.unwrap_or(0);
        let max_replicas = self.max_replica_count.unwrap_or(DEFAULT_MAX_REPLICAS);
        self.check_bounds(min_replicas, max_replicas)?;
        self.check_fallback(&triggers)?;
        let advanced = self.advanced.as_ref();
        if advanced.is_some_and(|a| a.scaling_modifiers.is_some()) {
            return Err("advanced.scalingModifiers are not simulated".into());
        }
        let behavior = advanced
            .and_then(|a| a.horizontal_pod_autoscaler_config.as_ref())
            .and_then(|h| h.behavior.as_ref())
            .map(|b| b.resolve(DEFAULT_DOWNSCALE_WINDOW))
            .transpose()?;
        let sync = positive_or(
            self.hpa_sync_period_seconds,
            DEFAULT_SYNC_PERIOD,
            "hpaSyncPeriodSeconds",
            false,
        )?;
        let polling_s = self.polling_interval.unwrap_or(DEFAULT_POLLING_S);
        if polling_s == 0 {
            return Err("`pollingInterval` must be at least 1 second".into());
        }
        let polling = SimDuration::from_secs(u64::from(polling_s));
        let hpa = HpaConfig {
            min_replicas: min_replicas.max(1),
            max_replicas,
            metrics: triggers.iter().map(hpa_metric).collect(),
            behavior,
            sync_period: sync,
            tolerance: cluster_tolerance(self.tolerance)?,
            downscale_window: DEFAULT_DOWNSCALE_WINDOW,
        };
        hpa.validate()?;
        Ok(Keda {
            pool,
            triggers,
            hpa: HpaCore::new(hpa),
            polling,
            sync,
            tick: SimDuration(gcd(polling.0, sync.0)),
            next_poll: SimTime::ZERO,
            next_sync: SimTime::ZERO,
            cooldown: SimDuration::from_secs(u64::from(
                self.cooldown_period.unwrap_or(DEFAULT_COOLDOWN_S),
            )),
            initial_cooldown: SimDuration::from_secs(u64::from(
                self.initial_cooldown_period.unwrap_or(0),
            )),
            min_replicas,
            max_replicas,
            idle_replicas: self.idle_replica_count,
            created: SimTime::ZERO,
            last_active: None,
        })
    }

    /// `CheckReplicaCountBoundsAreValid` (an explicit `minReplicaCount` counts as at least 1,
    /// an absent one as 0).
    fn check_bounds(&self, min_replicas: u32, max_replicas: u32) -> Result<(), String> {
        let min = if self.min_replica_count.is_some() { min_replicas.max(1) } else { 0 };
        if min > max_replicas {
            return Err(format!(
                "MinReplicaCount={min} must be less than MaxReplicaCount={max_replicas}"
            ));
        }
        match self.idle_replica_count {
            Some(idle) if idle >= min => {
                Err(format!("IdleReplicaCount={idle} must be less than MinReplicaCount={min}"))
            }
            _ => Ok(()),
        }
    }

    /// `CheckFallbackValid`; an unset `metricType` is AverageValue, its default.
    fn check_fallback(&self, triggers: &[Trigger]) -> Result<(), String> {
        let Some(f) = &self.fallback else { return Ok(()) };
        if f.failure_threshold < 0 || f.replicas < 0 {
            return Err(format!(
                "fallback: FailureThreshold={} & Replicas={} must both be >= 0",
                f.failure_threshold, f.replicas
            ));
        }
        if triggers.iter().any(|t| t.value_type) {
            return Err(
                "fallback can only be enabled for triggers with metricType AverageValue".into()
            );
        }
        Ok(())
    }
}

fn hpa_metric(t: &Trigger) -> MetricRule {
    let milli = (t.threshold * 1000.0) as i64;
    MetricRule {
        source: Source::External,
        target: if t.value_type { Target::Value(milli) } else { Target::AverageValue(milli) },
        query: MetricQuery { metric: t.read.metric, window: t.read.window, max: t.read.max },
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Keda {
    /// Each trigger's query value now.
    fn trigger_values(&self, pods: &[PodView]) -> [f64; MAX_METRICS] {
        let mut out = [0.0; MAX_METRICS];
        for (k, (t, v)) in self.triggers.iter().zip(out.iter_mut()).enumerate() {
            *v = t.read.aggregation.of(pods.iter().filter_map(|p| p.values[k]));
        }
        out
    }

    /// KEDA's scale loop (`RequestScale`): the new replica count.
    fn poll(&mut self, now: SimTime, current: u32, values: &[f64]) -> u32 {
        let active = self.triggers.iter().zip(values).any(|(t, v)| *v > t.activation);
        if active {
            self.last_active = Some(now);
            let below_idle_min = self.idle_replicas.is_some() && current < self.min_replicas;
            return if below_idle_min || current == 0 { self.min_replicas.max(1) } else { current };
        }
        let above_idle = self.idle_replicas.is_some_and(|idle| current > idle);
        if above_idle || (current > 0 && self.min_replicas == 0) {
            return if self.cooled_down(now) {
                self.idle_replicas.unwrap_or(self.min_replicas)
            } else {
                current
            };
        }
        if current < self.min_replicas && self.idle_replicas.is_none() {
            return self.min_replicas;
        }
        current
    }

    /// `scaleToZeroOrIdle`'s condition.
    fn cooled_down(&self, now: SimTime) -> bool {
        match self.last_active {
            Some(t) => t + self.cooldown < now,
            None => self.created + self.initial_cooldown < now,
        }
    }
}

impl Autoscaler for Keda {
    fn pool(&self) -> u16 {
        self.pool
    }
    fn interval(&self) -> SimDuration {
        self.tick
    }
    fn metrics(&self) -> &[MetricQuery] {
        self.hpa.queries()
    }
    fn decide(&mut self, input: &ScaleInput<'_>) -> u32 {
        let now = input.now;
        let mut values = self.trigger_values(input.pods);
        for (v, t) in values.iter_mut().zip(&self.triggers) {
            if t.read.metric.counts_held() && t.read.aggregation == Aggregation::Sum {
                *v += f64::from(input.pool.held);
            }
        }
        let mut replicas = input.current;
        if now >= self.next_poll {
            self.next_poll = now + self.polling;
            replicas = self.poll(now, replicas, &values);
        }
        if now >= self.next_sync {
            self.next_sync = now + self.sync;
            replicas = self.hpa.sync(now, replicas, input.pods, &values);
        }
        replicas
    }
    fn bounds(&self) -> (u32, u32) {
        (self.idle_replicas.unwrap_or(self.min_replicas).min(self.min_replicas), self.max_replicas)
    }
}

/// Builds a `keda` from its ScaledObject spec.
pub fn build(
    v: &serde_yaml_ng::Value,
    ctx: &AutoscaleCtx<'_>,
) -> Result<Box<dyn Autoscaler>, String> {
    let spec: KedaSpec = parse_params(v)?;
    Ok(Box::new(spec.resolve(ctx)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::autoscale::PodPhase;

    fn secs(s: u64) -> SimTime {
        SimTime(s * crate::time::NANOS_PER_S)
    }

    fn pod(phase: PodPhase, waiting: f64) -> PodView {
        PodView { phase, created: SimTime::ZERO, values: [Some(waiting), None, None, None] }
    }

    fn keda(yaml: &str) -> Keda {
        let names = vec!["llama".to_string()];
        let ctx = AutoscaleCtx::new(&names, &[1]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
        let spec: KedaSpec = parse_params(&v).expect("spec parses");
        spec.resolve(&ctx).expect("spec resolves")
    }

    fn keda_err(yaml: &str) -> String {
        let names = vec!["llama".to_string()];
        let ctx = AutoscaleCtx::new(&names, &[1]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
        build(&v, &ctx).err().expect("must fail")
    }

    /// `decide` at `t` seconds.
    fn at(k: &mut Keda, t: u64, current: u32, pods: &[PodView]) -> u32 {
        k.decide(&ScaleInput::new(secs(t), current, pods))
    }

    #[test]
    fn pool_only_builds_the_vllm_production_stack_default() {
        let k = keda("{ pool: llama }");
        assert_eq!(k.metrics().len(), 1);
        assert_eq!(k.metrics()[0].metric, SimMetric::Waiting);
        assert_eq!(k.triggers[0].threshold, 5.0);
        assert_eq!(k.hpa.config().metrics[0].target, Target::AverageValue(5000));
        assert_eq!(k.bounds(), (0, 100));
        // gcd(pollingInterval 30 s, HPA sync 15 s).
        assert_eq!(k.interval(), SimDuration::from_secs(15));
        assert_eq!(k.cooldown, SimDuration::from_secs(300));
    }

    #[test]
    fn activation_from_zero_needs_value_above_threshold_at_a_poll() {
        // At zero replicas only a draining pod still exports its queue.
        let mut k = keda(
            "{ pool: llama, triggers: [{ type: prometheus, metadata: { query: \
             'sum(vllm:num_requests_waiting)', threshold: '5', activationThreshold: '2' } }] }",
        );
        // t=0 (poll): 2 is not > 2 → inactive; the HPA at 0 does nothing.
        assert_eq!(at(&mut k, 0, 0, &[pod(PodPhase::Deleting, 2.0)]), 0);
        // t=15: 3 waiting, but no poll until t=30 (the HPA alone never leaves 0).
        assert_eq!(at(&mut k, 15, 0, &[pod(PodPhase::Deleting, 3.0)]), 0);
        // t=30 (poll): active → max(min 0, 1) = 1; the HPA then reads 1 and proposes
        // ceil(3 / 5) = 1 (the draining pod is not in statusReplicas → ratio inf → not within).
        assert_eq!(at(&mut k, 30, 0, &[pod(PodPhase::Deleting, 3.0)]), 1);
    }

    #[test]
    fn cooldown_then_zero() {
        let mut k = keda("{ pool: llama }");
        // t=0: 3 waiting → active (lastActiveTime 0); HPA: ceil(3 / 5) = 1.
        assert_eq!(at(&mut k, 0, 1, &[pod(PodPhase::Ready, 3.0)]), 1);
        // From t=15 the queue is empty. Polls at 30, 60, ..., 300: 0 + 300 < now is false
        // through t=300 (the HPA holds its minReplicas 1); at t=330: scale to 0.
        let idle = [pod(PodPhase::Ready, 0.0)];
        for t in (15..=315).step_by(15) {
            assert_eq!(at(&mut k, t, 1, &idle), 1, "t={t}");
        }
        assert_eq!(at(&mut k, 330, 1, &idle), 0);
        // At zero with nothing waiting: nothing happens.
        assert_eq!(at(&mut k, 345, 0, &[]), 0);
        assert_eq!(at(&mut k, 360, 0, &[]), 0);
    }

    #[test]
    fn idle_replica_count_and_min() {
        let mut k =
            keda("{ pool: llama, minReplicaCount: 2, idleReplicaCount: 0, maxReplicaCount: 10 }");
        assert_eq!(k.bounds(), (0, 10));
        // Active at 0 in idle mode → minReplicaCount 2. The HPA (min 2) proposes
        // ceil(3 / 5) = 1, clamped to 2.
        assert_eq!(at(&mut k, 0, 0, &[pod(PodPhase::Deleting, 3.0)]), 2);
        let idle = [pod(PodPhase::Ready, 0.0), pod(PodPhase::Ready, 0.0)];
        for t in (15..=315).step_by(15) {
            assert_eq!(at(&mut k, t, 2, &idle), 2, "t={t}");
        }
        // Inactive for more than the cooldown with replicas > idle → idleReplicaCount 0.
        assert_eq!(at(&mut k, 330, 2, &idle), 0);
        // KEDA's bounds check: idle must be below an explicit min (an absent min counts 0).
        assert!(keda_err("{ pool: llama, idleReplicaCount: 0 }").contains("IdleReplicaCount=0"));
        assert!(keda_err("{ pool: llama, minReplicaCount: 2, idleReplicaCount: 2 }")
            .contains("less than"));
        assert!(keda_err("{ pool: llama, minReplicaCount: 5, maxReplicaCount: 3 }")
            .contains("MaxReplicaCount"));
    }

    #[test]
    fn initial_cooldown_period() {
        // Never active: the creation time (t=0) + initialCooldownPeriod must pass first.
        let idle = [pod(PodPhase::Ready, 0.0), pod(PodPhase::Ready, 0.0)];
        let mut k = keda("{ pool: llama, initialCooldownPeriod: 60 }");
        for t in (0..=75).step_by(15) {
            // Polls at 0, 30, 60: 0 + 60 < t fails; the HPA's legacy 300 s window holds 2.
            assert_eq!(at(&mut k, t, 2, &idle), 2, "t={t}");
        }
        assert_eq!(at(&mut k, 90, 2, &idle), 0);
        // Without it: t=0 fails (0 < 0), the poll at t=30 scales to 0.
        let mut k = keda("{ pool: llama }");
        assert_eq!(at(&mut k, 0, 2, &idle), 2);
        assert_eq!(at(&mut k, 15, 2, &idle), 2);
        assert_eq!(at(&mut k, 30, 2, &idle), 0);
    }

    #[test]
    fn average_value_is_ceil_of_sum_over_threshold() {
        let mut k = keda("{ pool: llama, minReplicaCount: 1 }");
        let busy = [pod(PodPhase::Ready, 23.0)];
        // ceil(23 / 5) = 5; no behavior → legacy limit max(2 × 1, 4) = 4.
        assert_eq!(at(&mut k, 0, 1, &busy), 4);
        // t=15 (HPA only): u = 23 / (5 × 1 pod) = 4.6 → ceil(23 / 5) = 5 (limit 8).
        assert_eq!(at(&mut k, 15, 4, &busy), 5);
        // advanced behavior feeds the HPA: scaleUp Pods 1 per 60 s → 1 → 2.
        let mut k = keda(
            "{ pool: llama, minReplicaCount: 1, advanced: { horizontalPodAutoscalerConfig: \
             { behavior: { scaleUp: { policies: [{ type: Pods, value: 1, periodSeconds: 60 }] } } } } }",
        );
        assert_eq!(at(&mut k, 0, 1, &busy), 2);
        assert_eq!(at(&mut k, 15, 2, &busy), 2); // +1 within the last 60 s
                                                 // metricType Value: ceil(total / threshold × ready): 2 ready pods, 10 waiting → u = 2 →
                                                 // ceil(2 × 2) = 4 (legacy limit 4); 5 waiting → u = 1 → within tolerance → 2.
        let value = "{ pool: llama, minReplicaCount: 1, triggers: [{ type: prometheus, metricType: \
                     Value, metadata: { metricName: 'vllm:num_requests_waiting', threshold: 5 } }] }";
        let mut k = keda(value);
        assert_eq!(at(&mut k, 0, 2, &[pod(PodPhase::Ready, 6.0), pod(PodPhase::Ready, 4.0)]), 4);
        let mut k = keda(value);
        assert_eq!(at(&mut k, 0, 2, &[pod(PodPhase::Ready, 3.0), pod(PodPhase::Ready, 2.0)]), 2);
    }

    #[test]
    fn queries_map_to_metrics() {
        let r =
            read_query(Some("sum(vllm:num_requests_waiting{model=\"llama3\"})"), None).expect("q");
        assert_eq!(
            (r.metric, r.aggregation, r.window),
            (SimMetric::Waiting, Aggregation::Sum, SimDuration::ZERO)
        );
        let r = read_query(Some("avg(vllm:gpu_cache_usage_perc)"), None).expect("q");
        assert_eq!((r.metric, r.aggregation), (SimMetric::KvUsage, Aggregation::Avg));
        let r = read_query(Some("max(max_over_time(vllm:num_requests_running[1m30s]))"), None)
            .expect("q");
        assert_eq!(
            (r.metric, r.aggregation, r.window, r.max),
            (SimMetric::Running, Aggregation::Max, SimDuration::from_secs(90), true)
        );
        // A metric name inside a label value is not a metric; metricName is the fallback.
        let r = read_query(Some("sum(queue{name=\"cpu\"})"), Some("vllm:num_requests_waiting"))
            .expect("q");
        assert_eq!(r.metric, SimMetric::Waiting);
        let err = read_query(Some("sum(my_queue_depth)"), None).expect_err("unknown");
        assert!(
            err.contains("my_queue_depth") && err.contains("vllm:num_requests_waiting"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        // Aggregations over the pods with a sample.
        let vals = [1.0, 4.0, 7.0];
        assert_eq!(Aggregation::Sum.of(vals.into_iter()), 12.0);
        assert_eq!(Aggregation::Avg.of(vals.into_iter()), 4.0);
        assert_eq!(Aggregation::Max.of(vals.into_iter()), 7.0);
        assert_eq!(Aggregation::Count.of(vals.into_iter()), 3.0);
        assert_eq!(Aggregation::Min.of(std::iter::empty()), 0.0);
    }

    #[test]
    fn trigger_and_spec_errors() {
        let err = keda_err(
            "{ pool: llama, triggers: [{ type: kafka, metadata: { lagThreshold: '5' } }] }",
        );
        assert!(err.contains("kafka") && err.contains("prometheus"), "{err}");
        let err = keda_err("{ pool: llama, triggers: [{ type: prometheus, metadata: { query: 'sum(vllm:num_requests_waiting)' } }] }");
        assert!(err.contains("threshold"), "{err}");
        let err = keda_err(
            "{ pool: llama, triggers: [{ type: prometheus, metadata: { query: \
             'sum(vllm:num_requests_waiting)', threshold: five } }] }",
        );
        assert!(err.contains("metadata.threshold must be a number"), "{err}");
        // Thresholds as strings or numbers.
        let k = keda("{ pool: llama, triggers: [{ type: prometheus, metadata: { metricName: rps, threshold: 2.5 } }] }");
        assert_eq!(k.hpa.config().metrics[0].target, Target::AverageValue(2500));
        // Fallback: parsed, validated, never triggers.
        keda("{ pool: llama, minReplicaCount: 1, fallback: { failureThreshold: 3, replicas: 2 } }");
        let err = keda_err(
            "{ pool: llama, fallback: { failureThreshold: 3, replicas: 2 }, triggers: [{ type: \
             prometheus, metricType: Value, metadata: { metricName: rps, threshold: 1 } }] }",
        );
        assert!(err.contains("AverageValue"), "{err}");
        assert!(keda_err("{ pool: llama, fallback: { failureThreshold: -1, replicas: 2 } }")
            .contains("FailureThreshold"));
        assert!(keda_err("{ pool: llama, advanced: { scalingModifiers: { formula: x } } }")
            .contains("scalingModifiers"));
        assert!(keda_err("{ pool: llama, pollingIntervall: 5 }").contains("pollingIntervall"));
        assert!(keda_err("{ }").contains("pool"));
    }
}
