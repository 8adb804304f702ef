//! Checks every number and cross-field rule of a raw scenario and builds a [`Scenario`].
//!
//! Each failure is a [`ConfigError`] naming the field path (`workload[0].arrival.rate_per_s`),
//! the bad value, the rule, and the fix. Rules: rates and means > 0 and finite; cv >= 0;
//! Pareto alpha > 1 (finite mean); clamps `min <= max`; a horizon that ends; warm-up shorter
//! than the horizon; at least one replica, slot and policy; known policy names with valid
//! parameters; unique names.

use super::raw::*;
use super::{Horizon, Limits, PolicySpec, PoolKind, PoolSpec, Scenario, Warmup};
use crate::error::ConfigError;
use crate::policy::routing::{self, BuildCtx};
use crate::time::{SimDuration, SimTime};
use crate::workload::arrival::ArrivalSpec;
use crate::workload::dist::{Dist, Law};
use crate::workload::ClassSpec;

/// `v` for messages: plain decimals, or scientific notation when very large or small.
fn num(v: f64) -> String {
    if v.is_finite() && v != 0.0 && !(1e-6..1e9).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, path: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError::field(self.file, path, msg)
    }

    fn finite(&self, path: &str, v: f64) -> Result<f64, ConfigError> {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(self.err(path, format!("= {}: must be a finite number", num(v))))
        }
    }

    fn positive(&self, path: &str, v: f64) -> Result<f64, ConfigError> {
        if self.finite(path, v)? > 0.0 {
            Ok(v)
        } else {
            Err(self.err(path, format!("= {}: must be > 0", num(v))))
        }
    }

    fn non_negative(&self, path: &str, v: f64) -> Result<f64, ConfigError> {
        if self.finite(path, v)? >= 0.0 {
            Ok(v)
        } else {
            Err(self.err(path, format!("= {}: must be >= 0", num(v))))
        }
    }

    fn seconds(&self, path: &str, v: f64) -> Result<SimDuration, ConfigError> {
        let s = self.positive(path, v)?;
        if s > 1e9 {
            return Err(self.err(path, format!("= {}: must be at most 1e9 seconds", num(v))));
        }
        Ok(SimDuration::from_secs_f64(s))
    }
}

/// Validates `raw` (read from `file`) into a [`Scenario`].
pub fn validate(raw: RawScenario, file: &str) -> Result<Scenario, ConfigError> {
    let c = Ctx { file };
    if raw.name.trim().is_empty() {
        return Err(c.err("name", "is empty: give the scenario a short identifier"));
    }
    let replications = raw.replications.unwrap_or(1);
    if !(1..=100_000).contains(&replications) {
        return Err(c.err("replications", format!("= {replications}: must be 1..=100000")));
    }
    let horizon = horizon(&c, &raw.horizon)?;
    let warmup = warmup(&c, raw.warmup.as_ref(), &horizon)?;
    let pools = pools(&c, &raw.cluster)?;
    let classes = classes(&c, &raw.workload, &pools)?;
    let policies = policies(&c, &raw.policies, &pools)?;
    let limits = limits(&c, raw.limits.as_ref())?;
    let checks = checks(&c, raw.checks.as_deref().unwrap_or_default(), &policies)?;
    Ok(Scenario {
        name: raw.name,
        description: raw.description.unwrap_or_default(),
        file: file.to_string(),
        source_hash: 0,
        seed: raw.seed.unwrap_or(1),
        replications,
        horizon,
        warmup,
        classes,
        pools,
        policies,
        limits,
        overrides: Vec::new(),
        cell: 0,
        params: String::new(),
        checks,
        file_index: 0,
        timeseries_interval: match &raw.timeseries {
            Some(t) => Some(c.seconds("timeseries.interval_s", t.interval_s)?),
            None => None,
        },
    })
}

fn horizon(c: &Ctx<'_>, h: &RawHorizon) -> Result<Horizon, ConfigError> {
    if h.max_requests.is_none() && h.duration_s.is_none() {
        return Err(
            c.err("horizon", "sets neither max_requests nor duration_s: add one so the run ends")
        );
    }
    if h.max_requests == Some(0) {
        return Err(c.err("horizon.max_requests", "= 0: must be at least 1"));
    }
    let duration = h.duration_s.map(|d| c.seconds("horizon.duration_s", d)).transpose()?;
    let drain = match h.drain_s {
        Some(d) => Some(SimDuration::from_secs_f64(c.non_negative("horizon.drain_s", d)?)),
        None => None,
    };
    Ok(Horizon { max_requests: h.max_requests, duration, drain })
}

fn warmup(c: &Ctx<'_>, w: Option<&RawWarmup>, h: &Horizon) -> Result<Warmup, ConfigError> {
    let Some(w) = w else { return Ok(Warmup::default()) };
    let requests = w.requests.unwrap_or(0);
    if let Some(max) = h.max_requests {
        if requests >= max {
            return Err(c.err(
                "warmup.requests",
                format!("= {requests}: must be below horizon.max_requests ({max}) or nothing is measured"),
            ));
        }
    }
    let duration = match w.duration_s {
        Some(d) => SimDuration::from_secs_f64(c.non_negative("warmup.duration_s", d)?),
        None => SimDuration::ZERO,
    };
    if let Some(hd) = h.duration {
        if duration >= hd {
            return Err(c.err(
                "warmup.duration_s",
                format!(
                    "= {}: must be below horizon.duration_s ({}) or nothing is measured",
                    num(duration.as_secs_f64()),
                    num(hd.as_secs_f64())
                ),
            ));
        }
    }
    Ok(Warmup { requests, duration })
}

fn limits(c: &Ctx<'_>, l: Option<&RawLimits>) -> Result<Limits, ConfigError> {
    let mut out = Limits::default();
    if let Some(l) = l {
        if let Some(m) = l.max_events {
            if m == 0 {
                return Err(c.err("limits.max_events", "= 0: must be at least 1"));
            }
            out.max_events = m;
        }
        if let Some(m) = l.max_in_flight {
            if m == 0 {
                return Err(c.err("limits.max_in_flight", "= 0: must be at least 1"));
            }
            out.max_in_flight = m;
        }
    }
    Ok(out)
}

fn pools(c: &Ctx<'_>, cl: &RawCluster) -> Result<Vec<PoolSpec>, ConfigError> {
    if cl.pools.is_empty() {
        return Err(c.err("cluster.pools", "is empty: add at least one pool"));
    }
    let mut out: Vec<PoolSpec> = Vec::new();
    let mut total: u64 = 0;
    for (i, p) in cl.pools.iter().enumerate() {
        let RawPool::Queue(q) = p;
        let path = format!("cluster.pools[{i}]");
        if out.iter().any(|o| o.name == q.name) {
            return Err(
                c.err(&format!("{path}.name"), format!("= {:?}: duplicate pool name", q.name))
            );
        }
        if q.replicas == 0 {
            return Err(c.err(&format!("{path}.replicas"), "= 0: a pool needs at least 1 replica"));
        }
        let slots = q.slots.unwrap_or(1);
        if slots == 0 {
            return Err(
                c.err(&format!("{path}.slots"), "= 0: a queue replica needs at least 1 slot")
            );
        }
        let weight = q.weight.unwrap_or(1);
        if weight == 0 {
            return Err(c.err(&format!("{path}.weight"), "= 0: weights must be at least 1"));
        }
        let service_s =
            q.service_s.as_ref().map(|d| dist(c, &format!("{path}.service_s"), d)).transpose()?;
        total += u64::from(q.replicas);
        out.push(PoolSpec {
            name: q.name.clone(),
            replicas: q.replicas,
            weight,
            kind: PoolKind::Queue { slots, service_s, queue_capacity: q.queue_capacity },
        });
    }
    if total > 1_000_000 {
        return Err(c.err("cluster.pools", format!("{total} replicas in all: at most 1000000")));
    }
    Ok(out)
}

fn classes(c: &Ctx<'_>, w: &[RawClass], pools: &[PoolSpec]) -> Result<Vec<ClassSpec>, ConfigError> {
    if w.is_empty() {
        return Err(c.err("workload", "is empty: add at least one class"));
    }
    if w.len() > usize::from(u16::MAX) {
        return Err(c.err("workload", "too many classes (at most 65535)"));
    }
    let all_pools_have_service = pools.iter().all(|p| match &p.kind {
        PoolKind::Queue { service_s, .. } => service_s.is_some(),
        PoolKind::Llm(_) => true,
    });
    let mut out: Vec<ClassSpec> = Vec::new();
    for (i, k) in w.iter().enumerate() {
        let path = format!("workload[{i}]");
        if out.iter().any(|o| o.name == k.class) {
            return Err(
                c.err(&format!("{path}.class"), format!("= {:?}: duplicate class name", k.class))
            );
        }
        let service_s =
            k.service_s.as_ref().map(|d| dist(c, &format!("{path}.service_s"), d)).transpose()?;
        if service_s.is_none() && !all_pools_have_service {
            return Err(c.err(
                &format!("{path}.service_s"),
                "is missing: queue replicas need a service time; add service_s to the class or to every pool",
            ));
        }
        let timeout =
            k.timeout_s.map(|t| c.seconds(&format!("{path}.timeout_s"), t)).transpose()?;
        out.push(ClassSpec {
            name: k.class.clone(),
            arrival: Some(arrival(c, &format!("{path}.arrival"), &k.arrival)?),
            service_s,
            prompt_tokens: k
                .prompt_tokens
                .as_ref()
                .map(|d| dist(c, &format!("{path}.prompt_tokens"), d))
                .transpose()?,
            output_tokens: k
                .output_tokens
                .as_ref()
                .map(|d| dist(c, &format!("{path}.output_tokens"), d))
                .transpose()?,
            timeout,
            model: None,
            max_tokens: None,
            prefix: None,
            session: None,
            tenant: k.class.clone(),
            slo: Default::default(),
            trace: None,
        });
    }
    Ok(out)
}

fn arrival(c: &Ctx<'_>, path: &str, a: &RawArrival) -> Result<ArrivalSpec, ConfigError> {
    let p = |k: &str| format!("{path}.{k}");
    Ok(match a {
        RawArrival::Poisson(x) => {
            ArrivalSpec::Poisson { rate_per_s: c.positive(&p("rate_per_s"), x.rate_per_s)? }
        }
        RawArrival::Gamma(x) => {
            let cv = c.non_negative(&p("cv"), x.cv)?;
            if cv > 100.0 {
                return Err(c.err(&p("cv"), format!("= {}: must be at most 100", num(cv))));
            }
            ArrivalSpec::Gamma { rate_per_s: c.positive(&p("rate_per_s"), x.rate_per_s)?, cv }
        }
        RawArrival::Onoff(x) => ArrivalSpec::OnOff {
            on: c.seconds(&p("on_s"), x.on_s)?,
            off: c.seconds(&p("off_s"), x.off_s)?,
            on_rate_per_s: c.positive(&p("on_rate_per_s"), x.on_rate_per_s)?,
            off_rate_per_s: c
                .non_negative(&p("off_rate_per_s"), x.off_rate_per_s.unwrap_or(0.0))?,
            exponential_periods: x.durations.unwrap_or(RawDurations::Exponential)
                == RawDurations::Exponential,
        },
        RawArrival::Diurnal(x) => {
            let r = c.finite(&p("peak_to_trough"), x.peak_to_trough)?;
            if !(1.0..=1000.0).contains(&r) {
                return Err(c.err(
                    &p("peak_to_trough"),
                    format!("= {}: must be in 1..=1000 (1 = flat)", num(r)),
                ));
            }
            let period_s = c.positive(&p("period_s"), x.period_s)?;
            let peak_at_s = match x.peak_at_s {
                Some(v) => c.non_negative(&p("peak_at_s"), v)?,
                None => period_s / 4.0,
            };
            ArrivalSpec::Diurnal {
                mean_rate_per_s: c.positive(&p("mean_rate_per_s"), x.mean_rate_per_s)?,
                amplitude: (r - 1.0) / (r + 1.0),
                period_s,
                peak_at_s,
            }
        }
        RawArrival::Step(x) => step(c, path, x)?,
    })
}

fn step(c: &Ctx<'_>, path: &str, x: &RawStep) -> Result<ArrivalSpec, ConfigError> {
    if x.steps.is_empty() {
        return Err(c.err(
            &format!("{path}.steps"),
            "is empty: list { at_s, rate_per_s } points starting at 0",
        ));
    }
    let mut steps: Vec<(SimTime, f64)> = Vec::new();
    for (j, s) in x.steps.iter().enumerate() {
        let sp = format!("{path}.steps[{j}]");
        let at = c.non_negative(&format!("{sp}.at_s"), s.at_s)?;
        if j == 0 && at != 0.0 {
            return Err(c.err(
                &format!("{sp}.at_s"),
                format!("= {}: the first step must be at 0", num(at)),
            ));
        }
        let t = SimTime::ZERO + SimDuration::from_secs_f64(at);
        if let Some(prev) = steps.last() {
            if t <= prev.0 {
                return Err(c.err(
                    &format!("{sp}.at_s"),
                    format!("= {}: steps must be in increasing time", num(at)),
                ));
            }
        }
        steps.push((t, c.non_negative(&format!("{sp}.rate_per_s"), s.rate_per_s)?));
    }
    if steps.iter().all(|s| s.1 == 0.0) {
        return Err(
            c.err(&format!("{path}.steps"), "all rates are 0: no request would ever arrive")
        );
    }
    Ok(ArrivalSpec::Step { steps })
}

/// Validates a distribution whose support must be non-negative (times and token counts).
fn dist(c: &Ctx<'_>, path: &str, d: &RawDist) -> Result<Dist, ConfigError> {
    let p = |k: &str| format!("{path}.{k}");
    let (law, min, max) = match d {
        RawDist::Constant(x) => {
            (Law::Constant(c.non_negative(&p("value"), x.value)?), x.min, x.max)
        }
        RawDist::Exponential(x) => {
            (Law::Exponential { mean: c.positive(&p("mean"), x.mean)? }, x.min, x.max)
        }
        RawDist::Uniform(x) => {
            let low = c.non_negative(&p("low"), x.low)?;
            let high = c.finite(&p("high"), x.high)?;
            if high < low {
                return Err(c.err(&p("high"), format!("= {}: must be >= low ({low})", num(high))));
            }
            (Law::Uniform { low, high }, x.min, x.max)
        }
        RawDist::Lognormal(x) => {
            let mean = c.positive(&p("mean"), x.mean)?;
            let cv = c.non_negative(&p("cv"), x.cv)?;
            (Dist::lognormal_law(mean, cv), x.min, x.max)
        }
        RawDist::Pareto(x) => {
            let alpha = c.finite(&p("alpha"), x.alpha)?;
            if alpha <= 1.0 {
                return Err(c.err(
                    &p("alpha"),
                    format!("= {}: must be > 1 (the mean is infinite otherwise)", num(alpha)),
                ));
            }
            let scale = c.positive(&p("min"), x.min)?;
            (Law::Pareto { alpha, scale }, Some(scale), x.max)
        }
        RawDist::Empirical(x) => (empirical(c, path, x)?, x.min, x.max),
    };
    if let Some(m) = min {
        c.non_negative(&p("min"), m)?;
    }
    if let Some(m) = max {
        c.non_negative(&p("max"), m)?;
    }
    if let (Some(lo), Some(hi)) = (min, max) {
        if hi < lo {
            return Err(c.err(&p("max"), format!("= {}: must be >= min ({lo})", num(hi))));
        }
    }
    Ok(Dist::new(law, min, max))
}

fn empirical(c: &Ctx<'_>, path: &str, x: &RawEmpirical) -> Result<Law, ConfigError> {
    if x.values.is_empty() {
        return Err(c.err(&format!("{path}.values"), "is empty: list at least one value"));
    }
    for (j, v) in x.values.iter().enumerate() {
        c.non_negative(&format!("{path}.values[{j}]"), *v)?;
    }
    let weights = match &x.weights {
        Some(w) => {
            if w.len() != x.values.len() {
                return Err(c.err(
                    &format!("{path}.weights"),
                    format!(
                        "has {} entries but values has {}: give one weight per value",
                        w.len(),
                        x.values.len()
                    ),
                ));
            }
            for (j, v) in w.iter().enumerate() {
                c.non_negative(&format!("{path}.weights[{j}]"), *v)?;
            }
            if w.iter().sum::<f64>() <= 0.0 {
                return Err(
                    c.err(&format!("{path}.weights"), "sum to 0: at least one weight must be > 0")
                );
            }
            w.clone()
        }
        None => vec![1.0; x.values.len()],
    };
    Ok(Dist::empirical_law(x.values.clone(), &weights))
}

fn policies(
    c: &Ctx<'_>,
    ps: &[serde_yaml_ng::Value],
    pools: &[PoolSpec],
) -> Result<Vec<PolicySpec>, ConfigError> {
    if ps.is_empty() {
        return Err(
            c.err("policies", format!("is empty: list at least one of: {}", routing::names()))
        );
    }
    let weights: Vec<u32> =
        pools.iter().flat_map(|p| std::iter::repeat_n(p.weight, p.replicas as usize)).collect();
    let mut out: Vec<PolicySpec> = Vec::new();
    for (i, v) in ps.iter().enumerate() {
        let path = format!("policies[{i}]");
        if v.as_str() == Some("all") {
            // Every registered policy with defaults, skipping labels already listed.
            for e in routing::ROUTERS {
                let name = serde_yaml_ng::Value::String(e.name.to_string());
                let listed = ps.iter().any(|p| p.as_str() == Some(e.name));
                if !listed && !out.iter().any(|o| o.label == e.name) {
                    out.push(policy(c, &path, &name)?);
                }
            }
            continue;
        }
        let spec = policy(c, &path, v)?;
        let ctx = BuildCtx { run_seed: 0, weights: &weights };
        (spec.entry.build)(&spec.params, &ctx)
            .map_err(|e| policy_param_error(c, &path, &spec, &ctx, &e))?;
        if out.iter().any(|o| o.label == spec.label) {
            return Err(c.err(
                &path,
                format!(
                    "label {:?} is used twice: give one of them a distinct `label:`",
                    spec.label
                ),
            ));
        }
        out.push(spec);
    }
    Ok(out)
}

/// The error for policy parameters that `spec`'s constructor rejected with `e`: names the
/// parameter when one alone reproduces the error, and lists the valid ones for unknown keys.
fn policy_param_error(
    c: &Ctx<'_>,
    path: &str,
    spec: &PolicySpec,
    ctx: &BuildCtx<'_>,
    e: &str,
) -> ConfigError {
    use serde_yaml_ng::{Mapping, Value};
    let name = spec.entry.name;
    if let Some(rest) = e.strip_prefix("unknown field `") {
        let key = rest.split('`').next().unwrap_or_default();
        let valid: Vec<&str> = spec.entry.params.iter().map(|p| p.name).collect();
        let msg = if valid.is_empty() {
            format!("{name} takes no parameters: remove `{key}`")
        } else {
            format!("{name} has no parameter `{key}`; valid: {}", valid.join(", "))
        };
        return c.err(path, format!("{msg} (see `routelab list policies`)"));
    }
    // serde_yaml_ng's wording for an enum given a non-string value.
    let shown = e.replace("a Value::Tagged enum", "one of the names listed");
    if let Value::Mapping(m) = &spec.params {
        for (k, v) in m {
            let mut one = Mapping::new();
            one.insert(k.clone(), v.clone());
            let alone = (spec.entry.build)(&Value::Mapping(one), ctx).err();
            if let (Some(alone), Some(k)) = (alone, k.as_str()) {
                if alone == e {
                    return c.err(
                        &format!("{path}.{k}"),
                        format!("{name}: {shown} (see `routelab list policies`)"),
                    );
                }
            }
        }
    }
    c.err(path, format!("{name}: {shown} (see `routelab list policies`)"))
}

/// Parses one `policies:` entry: a name, or a mapping with `name`, optional `label`, and the
/// policy's parameters.
fn policy(c: &Ctx<'_>, path: &str, v: &serde_yaml_ng::Value) -> Result<PolicySpec, ConfigError> {
    use serde_yaml_ng::Value;
    let (name, label, params) = match v {
        Value::String(s) => (s.clone(), None, Value::Null),
        Value::Mapping(m) => {
            let mut m = m.clone();
            let name = match m.remove("name") {
                Some(Value::String(s)) => s,
                _ => return Err(c.err(path, "needs `name: <policy>` (a string)")),
            };
            let label = match m.remove("label") {
                Some(Value::String(s)) => Some(s),
                None => None,
                Some(_) => return Err(c.err(&format!("{path}.label"), "must be a string")),
            };
            let params = if m.is_empty() { Value::Null } else { Value::Mapping(m) };
            (name, label, params)
        }
        _ => return Err(c.err(path, "must be a policy name or a mapping with `name:`")),
    };
    let entry = routing::find(&name).ok_or_else(|| {
        c.err(path, format!("unknown policy {name:?}; valid: {}", routing::names()))
    })?;
    let label = label.unwrap_or_else(|| name.clone());
    if label.is_empty()
        || !label.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
    {
        return Err(c.err(
            &format!("{path}.label"),
            format!("= {label:?}: use letters, digits, '_' or '-'"),
        ));
    }
    Ok(PolicySpec { label, entry, params })
}

/// Builds a policy spec from a bare name given on the command line (`--policy NAME`).
pub fn policy_from_name(name: &str) -> Result<PolicySpec, ConfigError> {
    let c = Ctx { file: "<command line>" };
    policy(&c, "--policy", &serde_yaml_ng::Value::String(name.to_string()))
}

/// Parses every `checks:` entry and checks its policy labels and metric names, so a bad check
/// fails at load time with its column rather than after the run (see `report::check`).
fn checks(
    c: &Ctx<'_>,
    raw: &[String],
    policies: &[PolicySpec],
) -> Result<Vec<String>, ConfigError> {
    let labels: Vec<&str> = policies.iter().map(|p| p.label.as_str()).collect();
    for (i, text) in raw.iter().enumerate() {
        crate::report::check::validate(text, &labels)
            .map_err(|e| c.err(&format!("checks[{i}]"), format!("{e} (in `{}`)", text.trim())))?;
    }
    Ok(raw.to_vec())
}
