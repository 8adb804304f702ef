//! Validation of the failure and protection sections: `faults:`, a gateway's `health:`,
//! `admission:` and `retries:`, and a class's client keys (`ttft_timeout_s`, `retries`,
//! `tier`).
//!
//! Mechanism sections are mappings parsed into their parameter structs (`spec::protection`,
//! each strict about unknown keys, with the real systems' defaults) and then checked by the
//! struct's own `validate`, whose message is prefixed with the field path. A section set to
//! `false` is off; under a policy entry's `gateway:` this turns off what the scenario's
//! `gateway:` switched on, and any section given there replaces the scenario's.

use super::raw::{RawClass, RawFault, RawGateway};
use super::validate::{dist, num, Ctx};
use crate::error::ConfigError;
use crate::spec::client::{ClientSpec, Tier};
use crate::spec::faults::{FaultKind, FaultSpec, FaultTarget, FaultTiming};
use crate::spec::gateway::{
    AdmissionConfig, ConcurrencySpec, DowngradeSpec, GatewayConfig, HealthConfig, QueueSpec,
    RetryOverride, ShedSpec,
};
use crate::spec::protection::RetryParams;
use crate::spec::PoolSpec;
use crate::time::SimDuration;
use crate::workload::dist::{Dist, Law};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml_ng::Value;

/// Parses `v` at `path` into `T` (a mechanism's parameters), one line on error.
fn parse<T: DeserializeOwned>(c: &Ctx<'_>, path: &str, v: &Value) -> Result<T, ConfigError> {
    let v = if v.is_null() { Value::Mapping(Default::default()) } else { v.clone() };
    serde_yaml_ng::from_value(v).map_err(|e| {
        c.err(
            path,
            format!("{} (see the README's gateway reference)", e.to_string().replace('\n', " ")),
        )
    })
}

/// `false` (off), or a mapping parsed as `T` and checked with `check`.
fn section<T: DeserializeOwned>(
    c: &Ctx<'_>,
    path: &str,
    v: &Value,
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<Option<T>, ConfigError> {
    if v == &Value::Bool(false) {
        return Ok(None);
    }
    let t: T = parse(c, path, v)?;
    check(&t).map_err(|m| c.err(path, m))?;
    Ok(Some(t))
}

/// The keys of `v` (a mapping) checked against `allowed`.
fn keys<'v>(
    c: &Ctx<'_>,
    path: &str,
    v: &'v Value,
    allowed: &[&str],
) -> Result<Vec<(&'v str, &'v Value)>, ConfigError> {
    let Value::Mapping(m) = v else {
        return Err(c.err(path, "must be a mapping (or `false` to turn it off)"));
    };
    let mut out = Vec::new();
    for (k, val) in m {
        let Some(k) = k.as_str() else {
            return Err(c.err(path, "keys must be strings"));
        };
        if !allowed.contains(&k) {
            return Err(c.err(
                &format!("{path}.{k}"),
                format!("unknown key; valid keys: {}", allowed.join(", ")),
            ));
        }
        out.push((k, val));
    }
    Ok(out)
}

/// Applies a `gateway:` mapping's `connect_timeout_ms`, `health`, `admission` and
/// `retries` at `path` over `out`.
pub(super) fn gateway(
    c: &Ctx<'_>,
    path: &str,
    g: &RawGateway,
    out: &mut GatewayConfig,
) -> Result<(), ConfigError> {
    if let Some(ms) = g.connect_timeout_ms {
        let p = format!("{path}.connect_timeout_ms");
        let v = c.positive(&p, ms)?;
        if v > 3.6e6 {
            return Err(c.err(&p, format!("= {}: must be at most 3600000 (one hour)", num(v))));
        }
        out.connect_timeout = SimDuration::from_secs_f64(v / 1000.0);
    }
    if let Some(h) = &g.health {
        health(c, &format!("{path}.health"), h, &mut out.health)?;
    }
    if let Some(a) = &g.admission {
        admission(c, &format!("{path}.admission"), a, &mut out.admission)?;
    }
    if let Some(r) = &g.retries {
        let p = format!("{path}.retries");
        out.retries = match retries(c, &p, r)? {
            Some(r) => RetryOverride::Use(r),
            None => RetryOverride::Off,
        };
    }
    Ok(())
}

const HEALTH_KEYS: &[&str] = &[
    "active",
    "passive",
    "outlier_detection",
    "circuit_breaker",
    "readiness",
    "degraded",
    "healthy_panic_threshold",
];

fn health(c: &Ctx<'_>, path: &str, v: &Value, out: &mut HealthConfig) -> Result<(), ConfigError> {
    if v == &Value::Bool(false) {
        *out = HealthConfig::default();
        return Ok(());
    }
    for (k, val) in keys(c, path, v, HEALTH_KEYS)? {
        let p = format!("{path}.{k}");
        match k {
            "active" => {
                out.active = if val.as_str() == Some("sglang") {
                    Some(crate::spec::protection::ActiveHealthParams::sglang())
                } else {
                    section(c, &p, val, |x: &crate::spec::protection::ActiveHealthParams| {
                        x.validate()
                    })?
                }
            }
            "passive" => {
                out.passive =
                    section(c, &p, val, |x: &crate::spec::protection::NginxPassiveParams| {
                        x.validate()
                    })?
            }
            "outlier_detection" => {
                out.outlier =
                    section(c, &p, val, |x: &crate::spec::protection::OutlierParams| x.validate())?
            }
            "circuit_breaker" => {
                out.circuit_breaker = if val.as_str() == Some("library") {
                    Some(crate::spec::protection::BreakerParams::library())
                } else {
                    section(c, &p, val, |x: &crate::spec::protection::BreakerParams| x.validate())?
                }
            }
            "readiness" => {
                out.readiness =
                    section(c, &p, val, |x: &crate::spec::protection::ReadinessParams| {
                        x.validate()
                    })?
            }
            "degraded" => {
                out.degraded_kv_util = section(c, &p, val, |d: &RawDegraded| {
                    let x = d.kv_util_above;
                    if x > 0.0 && x <= 1.0 {
                        Ok(())
                    } else {
                        Err(format!("kv_util_above = {}: must be in (0, 1]", num(x)))
                    }
                })?
                .map(|d| d.kv_util_above)
            }
            _ => {
                let x: f64 = parse(c, &p, val)?;
                if !(0.0..=100.0).contains(&x) {
                    return Err(c.err(
                        &p,
                        format!("= {}: a percentage in 0..=100 (0 turns panic mode off)", num(x)),
                    ));
                }
                out.healthy_panic_threshold = x;
            }
        }
    }
    Ok(())
}

/// `health.degraded`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDegraded {
    /// KV use above which a replica gets no new work (default 0.95).
    #[serde(default = "default_degraded")]
    kv_util_above: f64,
}

fn default_degraded() -> f64 {
    0.95
}

/// `admission.concurrency`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConcurrency {
    max_concurrent_requests: u32,
    #[serde(default)]
    rate_limit_tokens_per_second: Option<f64>,
}

/// `admission.queue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    #[serde(default = "default_queue_size")]
    size: u32,
    #[serde(default = "default_queue_timeout")]
    timeout_s: f64,
    #[serde(default)]
    order: QueueOrder,
}

/// `admission.queue.order`.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum QueueOrder {
    /// Tier priority, then arrival.
    #[default]
    Priority,
    /// Arrival only.
    Fifo,
}

fn default_queue_size() -> u32 {
    100
}

fn default_queue_timeout() -> f64 {
    60.0
}

/// `admission.shed` (and a downgrade's `detector`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShed {
    #[serde(default = "five")]
    queue_depth_threshold: f64,
    #[serde(default = "point_eight")]
    kv_cache_util_threshold: f64,
    #[serde(default = "two_hundred")]
    metrics_staleness_threshold_ms: f64,
}

fn five() -> f64 {
    5.0
}
fn point_eight() -> f64 {
    0.8
}
fn two_hundred() -> f64 {
    200.0
}

impl RawShed {
    fn spec(&self) -> Result<ShedSpec, String> {
        for (k, v) in [
            ("queue_depth_threshold", self.queue_depth_threshold),
            ("kv_cache_util_threshold", self.kv_cache_util_threshold),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{k} = {}: must be > 0", num(v)));
            }
        }
        let ms = self.metrics_staleness_threshold_ms;
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(format!("metrics_staleness_threshold_ms = {}: must be >= 0", num(ms)));
        }
        Ok(ShedSpec {
            queue_depth_threshold: self.queue_depth_threshold,
            kv_cache_util_threshold: self.kv_cache_util_threshold,
            metrics_staleness_threshold: SimDuration::from_secs_f64(ms / 1000.0),
        })
    }
}

/// `admission.downgrade`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDowngrade {
    from: String,
    to: String,
    #[serde(default)]
    saturation_above: Option<f64>,
    #[serde(default)]
    queue_above: Option<f64>,
    #[serde(default)]
    detector: Option<RawShed>,
}

const ADMISSION_KEYS: &[&str] =
    &["rate_limit", "concurrency", "max_conns", "queue", "shed", "downgrade"];

fn admission(
    c: &Ctx<'_>,
    path: &str,
    v: &Value,
    out: &mut AdmissionConfig,
) -> Result<(), ConfigError> {
    if v == &Value::Bool(false) {
        *out = AdmissionConfig::default();
        return Ok(());
    }
    for (k, val) in keys(c, path, v, ADMISSION_KEYS)? {
        let p = format!("{path}.{k}");
        let off = val == &Value::Bool(false);
        match k {
            "rate_limit" => {
                out.rate_limit =
                    section(c, &p, val, |x: &crate::spec::protection::RateLimitSpec| x.validate())?
            }
            "concurrency" => {
                out.concurrency = if off {
                    None
                } else {
                    let r: RawConcurrency = parse(c, &p, val)?;
                    if r.max_concurrent_requests == 0 {
                        return Err(
                            c.err(&format!("{p}.max_concurrent_requests"), "= 0: must be >= 1")
                        );
                    }
                    let rate = r
                        .rate_limit_tokens_per_second
                        .unwrap_or(f64::from(r.max_concurrent_requests));
                    if !(rate.is_finite() && rate >= 0.0) {
                        return Err(c.err(
                            &format!("{p}.rate_limit_tokens_per_second"),
                            format!("= {}: must be >= 0", num(rate)),
                        ));
                    }
                    Some(ConcurrencySpec {
                        max_concurrent_requests: r.max_concurrent_requests,
                        tokens_per_s: rate,
                    })
                }
            }
            "max_conns" => {
                out.max_conns = if off {
                    None
                } else {
                    let n: u32 = parse(c, &p, val)?;
                    if n == 0 {
                        return Err(
                            c.err(&p, "= 0: must be >= 1 (nginx: 0 means no limit; leave it out)")
                        );
                    }
                    Some(n)
                }
            }
            "queue" => {
                out.queue = if off {
                    None
                } else {
                    let q: RawQueue = parse(c, &p, val)?;
                    if q.size == 0 {
                        return Err(c.err(
                            &format!("{p}.size"),
                            "= 0: must be >= 1 (leave `queue` out for no queue)",
                        ));
                    }
                    Some(QueueSpec {
                        size: q.size,
                        timeout: c.seconds(&format!("{p}.timeout_s"), q.timeout_s)?,
                        by_priority: q.order == QueueOrder::Priority,
                    })
                }
            }
            "shed" => {
                out.shed = if off {
                    None
                } else {
                    let r: RawShed = parse(c, &p, val)?;
                    Some(r.spec().map_err(|m| c.err(&p, m))?)
                }
            }
            _ => {
                out.downgrade = if off {
                    None
                } else {
                    let r: RawDowngrade = parse(c, &p, val)?;
                    if r.saturation_above.is_none() && r.queue_above.is_none() {
                        return Err(c.err(
                            &p,
                            "needs `saturation_above` or `queue_above`: when to downgrade",
                        ));
                    }
                    for (key, x) in
                        [("saturation_above", r.saturation_above), ("queue_above", r.queue_above)]
                    {
                        if let Some(x) = x {
                            if !(x.is_finite() && x >= 0.0) {
                                return Err(c.err(
                                    &format!("{p}.{key}"),
                                    format!("= {}: must be >= 0", num(x)),
                                ));
                            }
                        }
                    }
                    let detector = match &r.detector {
                        Some(d) => d.spec().map_err(|m| c.err(&format!("{p}.detector"), m))?,
                        None => ShedSpec::default(),
                    };
                    Some(DowngradeSpec {
                        from: r.from,
                        to: r.to,
                        saturation_above: r.saturation_above,
                        queue_above: r.queue_above,
                        detector,
                    })
                }
            }
        }
    }
    Ok(())
}

/// A `retries:` mapping (`None` for `false`).
fn retries(c: &Ctx<'_>, path: &str, v: &Value) -> Result<Option<RetryParams>, ConfigError> {
    section(c, path, v, |r: &RetryParams| r.validate())
}

/// A class's client keys and tier.
pub(super) fn client(
    c: &Ctx<'_>,
    path: &str,
    k: &RawClass,
) -> Result<(ClientSpec, Tier), ConfigError> {
    let ttft_timeout =
        k.ttft_timeout_s.map(|t| c.seconds(&format!("{path}.ttft_timeout_s"), t)).transpose()?;
    let retries = match &k.retries {
        Some(v) => retries(c, &format!("{path}.retries"), v)?,
        None => None,
    };
    let tier = match &k.tier {
        Some(t) => {
            let name = t.name.clone().unwrap_or_else(|| Tier::default().name);
            if name.trim().is_empty() {
                return Err(c.err(&format!("{path}.tier.name"), "is empty: give the tier a name"));
            }
            Tier { name, priority: t.priority.unwrap_or(0) }
        }
        None => Tier::default(),
    };
    Ok((ClientSpec { ttft_timeout, retries }, tier))
}

/// Checks that a downgrade's models are served (called once pools and classes are known).
pub(super) fn check_downgrade(
    c: &Ctx<'_>,
    path: &str,
    g: &GatewayConfig,
    served: &[String],
) -> Result<(), ConfigError> {
    if let Some(d) = &g.admission.downgrade {
        for (k, m) in [("from", &d.from), ("to", &d.to)] {
            if !served.iter().any(|s| s == m) {
                let known = if served.is_empty() {
                    "model downgrade needs `llm` pools serving both models".to_string()
                } else {
                    format!("served: {}", served.join(", "))
                };
                return Err(c.err(
                    &format!("{path}.admission.downgrade.{k}"),
                    format!("= {m:?}: no pool serves it; {known}"),
                ));
            }
        }
        if d.from == d.to {
            return Err(
                c.err(&format!("{path}.admission.downgrade.to"), "is the same model as `from`")
            );
        }
    }
    Ok(())
}

/// A number (the mean of an exponential) or a distribution mapping, in seconds.
fn law(c: &Ctx<'_>, path: &str, v: &Value) -> Result<Dist, ConfigError> {
    if let Some(x) = v.as_f64() {
        let mean = c.positive(path, x)?;
        return Ok(Dist::new(Law::Exponential { mean }, None, None));
    }
    let raw: super::raw::RawDist = parse(c, path, v)?;
    dist(c, path, &raw)
}

const KINDS: &[&str] = &["crash", "slowdown", "errors", "hang", "partition"];

/// Validates `faults:` against the pools (replica names) and the gateway instances.
pub(super) fn faults(
    c: &Ctx<'_>,
    raw: &[RawFault],
    pools: &[PoolSpec],
    max_gateways: u32,
) -> Result<Vec<FaultSpec>, ConfigError> {
    raw.iter()
        .enumerate()
        .map(|(i, f)| fault(c, &format!("faults[{i}]"), f, pools, max_gateways))
        .collect()
}

fn fault(
    c: &Ctx<'_>,
    path: &str,
    f: &RawFault,
    pools: &[PoolSpec],
    max_gateways: u32,
) -> Result<FaultSpec, ConfigError> {
    let p = |k: &str| format!("{path}.{k}");
    let not_for = |k: &str, set: bool| -> Result<(), ConfigError> {
        if set {
            Err(c.err(&p(k), format!("does not apply to `kind: {}`; remove it", f.kind)))
        } else {
            Ok(())
        }
    };
    let kind = match f.kind.as_str() {
        "crash" => {
            let restart = match f.restart_s {
                Some(s) => SimDuration::from_secs_f64(c.non_negative(&p("restart_s"), s)?),
                None => SimDuration::ZERO,
            };
            FaultKind::Crash { restart }
        }
        "slowdown" => {
            let Some(factor) = f.factor else {
                return Err(c.err(
                    &p("factor"),
                    "is missing: `kind: slowdown` needs a time factor (e.g. 5 = five times slower)",
                ));
            };
            for (k, x) in [("factor", Some(factor)), ("ramp_to", f.ramp_to)] {
                if let Some(x) = x {
                    if !(x.is_finite() && (1.0..=1e6).contains(&x)) {
                        return Err(c.err(
                            &p(k),
                            format!("= {}: must be in 1..=1e6 (1 = normal speed)", num(x)),
                        ));
                    }
                }
            }
            FaultKind::Slowdown { factor, ramp_to: f.ramp_to }
        }
        "errors" => {
            let probability = f.probability.unwrap_or(1.0);
            if !(probability > 0.0 && probability <= 1.0) {
                return Err(
                    c.err(&p("probability"), format!("= {}: must be in (0, 1]", num(probability)))
                );
            }
            let status = f.status.unwrap_or(503);
            if !(500..=599).contains(&status) {
                return Err(c.err(&p("status"), format!("= {status}: must be a 5xx status")));
            }
            let ms = c.non_negative(&p("latency_ms"), f.latency_ms.unwrap_or(5.0))?;
            FaultKind::Errors {
                probability,
                status,
                latency: SimDuration::from_secs_f64(ms / 1000.0),
            }
        }
        "hang" => FaultKind::Hang,
        "partition" => {
            let gateways = f.gateways.clone().unwrap_or_default();
            if let Some(&g) = gateways.iter().find(|&&g| u32::from(g) >= max_gateways) {
                return Err(c.err(&p("gateways"), format!("has instance {g}, but there are at most {max_gateways} gateway instances (0-based)")));
            }
            FaultKind::Partition { gateways }
        }
        other => {
            return Err(c.err(&p("kind"), format!("= {other:?}: valid kinds: {}", KINDS.join(", "))))
        }
    };
    not_for("restart_s", f.restart_s.is_some() && !matches!(kind, FaultKind::Crash { .. }))?;
    not_for("factor", f.factor.is_some() && !matches!(kind, FaultKind::Slowdown { .. }))?;
    not_for("ramp_to", f.ramp_to.is_some() && !matches!(kind, FaultKind::Slowdown { .. }))?;
    let errs = matches!(kind, FaultKind::Errors { .. });
    not_for("probability", f.probability.is_some() && !errs)?;
    not_for("status", f.status.is_some() && !errs)?;
    not_for("latency_ms", f.latency_ms.is_some() && !errs)?;
    not_for("gateways", f.gateways.is_some() && !matches!(kind, FaultKind::Partition { .. }))?;
    let target = target(c, path, f, pools)?;
    let timing = match (f.at_s, f.duration_s, &f.mtbf_s, &f.mttr_s) {
        (Some(at), Some(d), None, None) => FaultTiming::Scheduled {
            at: SimDuration::from_secs_f64(c.non_negative(&p("at_s"), at)?),
            duration: c.seconds(&p("duration_s"), d)?,
        },
        (None, None, Some(up), Some(down)) => {
            if matches!(target, FaultTarget::Pick { .. }) {
                return Err(c.err(&p("count"), "random faults hit every replica they name independently; name the replicas or the whole pool"));
            }
            FaultTiming::Random { mtbf_s: law(c, &p("mtbf_s"), up)?, mttr_s: law(c, &p("mttr_s"), down)? }
        }
        _ => {
            return Err(c.err(path, "needs `at_s` and `duration_s` (a scheduled fault) or `mtbf_s` and `mttr_s` (random faults), not a mix"))
        }
    };
    Ok(FaultSpec { kind, target, timing })
}

fn target(
    c: &Ctx<'_>,
    path: &str,
    f: &RawFault,
    pools: &[PoolSpec],
) -> Result<FaultTarget, ConfigError> {
    let p = |k: &str| format!("{path}.{k}");
    let mut first = Vec::with_capacity(pools.len());
    let mut acc = 0u32;
    for pool in pools {
        first.push(acc);
        acc += pool.replicas;
    }
    match (&f.replicas, &f.pool) {
        (Some(names), None) => {
            if f.count.is_some() || f.fraction.is_some() {
                return Err(c.err(
                    &p("count"),
                    "`count` and `fraction` pick from a `pool`; with `replicas` remove them",
                ));
            }
            if names.is_empty() {
                return Err(c.err(
                    &p("replicas"),
                    "is empty: name at least one replica (`<pool>-<index>`)",
                ));
            }
            let mut ids = Vec::new();
            for (i, n) in names.iter().enumerate() {
                let id = replica_id(n, pools, &first).ok_or_else(|| {
                    c.err(&format!("{path}.replicas[{i}]"), format!("= {n:?}: no such replica; replicas are named `<pool>-<index>` from 0, e.g. `{}-0`", pools[0].name))
                })?;
                if ids.contains(&id) {
                    return Err(
                        c.err(&format!("{path}.replicas[{i}]"), format!("= {n:?}: listed twice"))
                    );
                }
                ids.push(id);
            }
            Ok(FaultTarget::Replicas(ids))
        }
        (None, Some(pool)) => {
            let Some(pi) = pools.iter().position(|x| &x.name == pool) else {
                let names: Vec<&str> = pools.iter().map(|x| x.name.as_str()).collect();
                return Err(c.err(
                    &p("pool"),
                    format!("= {pool:?}: no such pool; pools: {}", names.join(", ")),
                ));
            };
            let size = pools[pi].replicas;
            let count = match (f.count, f.fraction) {
                (Some(_), Some(_)) => {
                    return Err(c.err(&p("fraction"), "give `count` or `fraction`, not both"))
                }
                (Some(n), None) => {
                    if n == 0 || n > size {
                        return Err(c.err(
                            &p("count"),
                            format!("= {n}: must be 1..={size} (the pool's replicas)"),
                        ));
                    }
                    Some(n)
                }
                (None, Some(x)) => {
                    if !(x > 0.0 && x <= 1.0) {
                        return Err(
                            c.err(&p("fraction"), format!("= {}: must be in (0, 1]", num(x)))
                        );
                    }
                    Some(((x * f64::from(size)).ceil() as u32).clamp(1, size))
                }
                (None, None) => None,
            };
            Ok(match count {
                Some(n) if n < size => FaultTarget::Pick { first: first[pi], size, count: n },
                _ => FaultTarget::Replicas((first[pi]..first[pi] + size).collect()),
            })
        }
        (Some(_), Some(_)) => Err(c.err(&p("pool"), "give `replicas` or `pool`, not both")),
        (None, None) => {
            Err(c.err(path, "needs a target: `replicas: [<pool>-<index>, ...]` or `pool: <name>`"))
        }
    }
}

/// The global id of replica `<pool>-<index>`.
fn replica_id(name: &str, pools: &[PoolSpec], first: &[u32]) -> Option<u32> {
    let (pool, idx) = name.rsplit_once('-')?;
    let i: u32 = idx.parse().ok()?;
    let pi = pools.iter().position(|p| p.name == pool)?;
    (i < pools[pi].replicas).then(|| first[pi] + i)
}
