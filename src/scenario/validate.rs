//! Checks every number and cross-field rule of a raw scenario and builds a [`Scenario`].
//!
//! Each failure is a [`ConfigError`] naming the field path (`workload[0].arrival.rate_per_s`),
//! the bad value, the rule, and the fix. Rules: rates and means > 0 and finite; cv >= 0;
//! Pareto alpha > 1 (finite mean); clamps `min <= max`; a horizon that ends; warm-up shorter
//! than the horizon; at least one replica, slot and policy; known policy names with valid
//! parameters; unique names.
//!
//! `llm` pools are resolved here, so the engine never sees a catalog: the GPU and models are
//! looked up in the built-in catalog plus the scenario's `gpus:`/`models:` entries, each model
//! gets its latency model and its KV capacity in blocks (refused, as vLLM refuses to start, when
//! the weights do not fit or the cache holds fewer tokens than `max_model_len`), and the engine
//! knobs follow vLLM's rules (`max_num_batched_tokens >= max_num_seqs`). Cross rules: a cluster
//! is all `queue` or all `llm` pools; in an llm cluster every class has token counts (or a
//! trace), no `service_s`, and a model some pool serves (filled in when only one is served, so
//! `ClassSpec::model` is always `Some` there); a queue cluster refuses `model`. A trace class has
//! no `arrival`, lengths, `prefix` or `session`, and its file must exist (resolved against the
//! scenario file's directory), parse cleanly over the replayed window and hold at least one
//! request in it (read once here, so a bad line is bad input, never a mid-run failure).

use super::raw::*;
use super::{Horizon, Limits, PolicySpec, Scenario, Warmup};
use crate::cluster::catalog::{
    self, Catalog, CatalogError, Dtype, Gpu, KvCacheConfig, Model, DEFAULT_RESERVE_BYTES_PER_GPU,
};
use crate::cluster::latency::{LatencyModel, Roofline, RooflineParams};
use crate::error::ConfigError;
use crate::policy::routing::{self, BuildCtx};
use crate::spec::llm::{EngineConfig, LlmPool, SchedulingPolicy, ServedModel};
use crate::spec::{GatewayConfig, Spread};
use crate::spec::{PoolKind, PoolSpec};
use crate::time::{SimDuration, SimTime};
use crate::workload::arrival::ArrivalSpec;
use crate::workload::dist::{Dist, Law};
use crate::workload::trace::{self, TraceFormat, TraceOptions, MOONCAKE_BLOCK_TOKENS};
use crate::workload::{ClassSpec, PrefixSpec, SessionSpec, Slo, TraceSpec};
use std::borrow::Cow;
use std::path::Path;

/// `v` for messages: plain decimals, or scientific notation when very large or small.
pub(super) fn num(v: f64) -> String {
    if v.is_finite() && v != 0.0 && !(1e-6..1e9).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

pub(super) struct Ctx<'a> {
    pub(super) file: &'a str,
}

impl Ctx<'_> {
    /// Checks a row label (`PATH.label`): letters, digits, '_' or '-'.
    pub(super) fn label(&self, path: &str, label: &str) -> Result<(), ConfigError> {
        if label.is_empty()
            || !label.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
        {
            return Err(self.err(
                &format!("{path}.label"),
                format!("= {label:?}: use letters, digits, '_' or '-'"),
            ));
        }
        Ok(())
    }

    pub(super) fn err(&self, path: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError::field(self.file, path, msg)
    }

    pub(super) fn finite(&self, path: &str, v: f64) -> Result<f64, ConfigError> {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(self.err(path, format!("= {}: must be a finite number", num(v))))
        }
    }

    pub(super) fn positive(&self, path: &str, v: f64) -> Result<f64, ConfigError> {
        if self.finite(path, v)? > 0.0 {
            Ok(v)
        } else {
            Err(self.err(path, format!("= {}: must be > 0", num(v))))
        }
    }

    pub(super) fn non_negative(&self, path: &str, v: f64) -> Result<f64, ConfigError> {
        if self.finite(path, v)? >= 0.0 {
            Ok(v)
        } else {
            Err(self.err(path, format!("= {}: must be >= 0", num(v))))
        }
    }

    pub(super) fn seconds(&self, path: &str, v: f64) -> Result<SimDuration, ConfigError> {
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
    let cat = catalog(&c, &raw)?;
    let pools = pools(&c, &raw.cluster, &cat)?;
    let classes = classes(&c, &raw.workload, &pools, &cat)?;
    let gateway = gateway_over(&c, "gateway", &GatewayConfig::default(), raw.gateway.as_ref())?;
    let mut policies = policies(&c, &raw.policies, &pools, &gateway)?;
    let served = served_models(&pools);
    for (i, p) in policies.iter_mut().enumerate() {
        let path = if p.gateway == gateway {
            "gateway".to_string()
        } else {
            format!("policies[{i}].gateway")
        };
        if let Some(d) = &mut p.gateway.admission.downgrade {
            // Catalog aliases name the same model.
            for m in [&mut d.from, &mut d.to] {
                if let Ok(x) = cat.model(m) {
                    *m = x.name.clone();
                }
            }
        }
        super::protection::check_downgrade(&c, &path, &p.gateway, &served)?;
    }
    let autoscalers = super::autoscalers::autoscalers(&c, raw.autoscalers.as_deref(), &pools)?;
    for (i, p) in pools.iter().enumerate() {
        if p.replicas == 0 && !autoscalers.iter().any(|a| a.pool == Some(i as u16)) {
            return Err(c.err(
                &format!("cluster.pools[{i}].replicas"),
                "= 0: a pool needs at least 1 replica unless an autoscaler scales it",
            ));
        }
    }
    let max_gateways = policies.iter().map(|p| p.gateway.replicas).max().unwrap_or(1);
    let faults = super::protection::faults(
        &c,
        raw.faults.as_deref().unwrap_or_default(),
        &pools,
        max_gateways,
    )?;
    let health_timeseries = raw.timeseries.is_some()
        && (!faults.is_empty() || policies.iter().any(|p| p.gateway.has_health()));
    let limits = limits(&c, raw.limits.as_ref())?;
    let groups = crate::metrics::groups::Groups::new(&classes, &pools);
    let scalers: Vec<&str> = autoscalers.iter().map(|a| a.label.as_str()).collect();
    let checks = checks(
        &c,
        raw.checks.as_deref().unwrap_or_default(),
        &policies,
        &scalers,
        groups.labels(),
    )?;
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
        autoscalers,
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
        health_timeseries,
        gateway,
        trace_decisions: None,
        faults,
    })
}

/// The model names the pools serve (catalog names), in pool order.
fn served_models(pools: &[PoolSpec]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in pools {
        if let PoolKind::Llm(l) = &p.kind {
            for m in &l.models {
                if !out.contains(&m.name) {
                    out.push(m.name.clone());
                }
            }
        }
    }
    out
}

/// Validates a `gateway:` mapping at `path` over `base` (keys it omits keep `base`'s values).
fn gateway_over(
    c: &Ctx<'_>,
    path: &str,
    base: &GatewayConfig,
    g: Option<&super::raw::RawGateway>,
) -> Result<GatewayConfig, ConfigError> {
    let mut out = base.clone();
    let Some(g) = g else { return Ok(out) };
    let key = |k: &str| format!("{path}.{k}");
    if let Some(n) = g.replicas {
        if !(1..=1024).contains(&n) {
            return Err(c.err(&key("replicas"), format!("= {n}: must be 1..=1024")));
        }
        out.replicas = n;
    }
    if let Some(s) = g.spread {
        out.spread = match s {
            super::raw::RawSpread::Random => Spread::Random,
            super::raw::RawSpread::RoundRobin => Spread::RoundRobin,
        };
    }
    let ms = |path: &str, v: f64| -> Result<SimDuration, ConfigError> {
        let v = c.non_negative(path, v)?;
        if v > 3.6e6 {
            return Err(c.err(path, format!("= {}: must be at most 3600000 (one hour)", num(v))));
        }
        Ok(SimDuration::from_secs_f64(v / 1000.0))
    };
    if let Some(v) = g.metrics_refresh_ms {
        out.metrics_refresh = ms(&key("metrics_refresh_ms"), v)?;
        if out.metrics_refresh > SimDuration::ZERO
            && out.metrics_refresh < SimDuration::from_millis(1)
        {
            return Err(c.err(
                &key("metrics_refresh_ms"),
                "must be 0 (live) or at least 1 ms (finer scrapes only slow the run down)",
            ));
        }
    }
    if let Some(v) = g.kv_event_delay_ms {
        out.kv_event_delay = ms(&key("kv_event_delay_ms"), v)?;
    }
    super::protection::gateway(c, path, g, &mut out)?;
    Ok(out)
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

/// The catalog the scenario's pools resolve against: the built-in GPUs and models plus the
/// scenario's own `gpus:` and `models:` entries (added one at a time so errors name the entry).
fn catalog(c: &Ctx<'_>, raw: &RawScenario) -> Result<Cow<'static, Catalog>, ConfigError> {
    let gpus = raw.gpus.as_deref().unwrap_or_default();
    let models = raw.models.as_deref().unwrap_or_default();
    let builtin = Catalog::builtin();
    if gpus.is_empty() && models.is_empty() {
        return Ok(Cow::Borrowed(builtin));
    }
    let mut cat = builtin.clone();
    for (k, g) in gpus.iter().enumerate() {
        cat = cat
            .with_custom(std::slice::from_ref(g), &[])
            .map_err(|e| custom_entry_error(c, &format!("gpus[{k}]"), e))?;
    }
    for (k, m) in models.iter().enumerate() {
        cat = cat
            .with_custom(&[], std::slice::from_ref(m))
            .map_err(|e| custom_entry_error(c, &format!("models[{k}]"), e))?;
    }
    Ok(Cow::Owned(cat))
}

/// The error for a custom catalog entry at `path` that the catalog rejected.
fn custom_entry_error(c: &Ctx<'_>, path: &str, e: CatalogError) -> ConfigError {
    match e {
        CatalogError::Invalid { field, message, .. } => {
            c.err(&format!("{path}.{field}"), format!("{message} (fix the custom entry)"))
        }
        CatalogError::Duplicate(_) => c.err(&format!("{path}.name"), e.to_string()),
        other => c.err(path, format!("{other} (fix the custom entry)")),
    }
}

/// The error for a failed catalog lookup at `path`, with where to find the valid names.
fn lookup_error(c: &Ctx<'_>, path: &str, e: CatalogError) -> ConfigError {
    let hint = match &e {
        CatalogError::UnknownGpu { .. } => {
            " (see `routelab list gpus`, or define it in a top-level `gpus:` list)"
        }
        CatalogError::UnknownModel { .. } => {
            " (see `routelab list models`, or define it in a top-level `models:` list)"
        }
        _ => "",
    };
    c.err(path, format!("{e}{hint}"))
}

fn kind_name(p: &RawPool) -> &'static str {
    match p {
        RawPool::Queue(_) => "queue",
        RawPool::Llm(_) => "llm",
    }
}

/// A pool's `lifecycle:` (defaults when absent; `gpu_hour_usd` defaults to `catalog_price`).
fn lifecycle(
    c: &Ctx<'_>,
    path: &str,
    l: Option<&super::raw::RawLifecycle>,
    catalog_price: f64,
) -> Result<crate::spec::pool::Lifecycle, ConfigError> {
    let mut out =
        crate::spec::pool::Lifecycle { gpu_hour_usd: catalog_price, ..Default::default() };
    let Some(l) = l else { return Ok(out) };
    if let Some(d) = &l.provision_s {
        out.provision_s = Some(dist(c, &format!("{path}.provision_s"), d)?);
    }
    let secs = |key: &str, v: Option<f64>, dflt: SimDuration| -> Result<SimDuration, ConfigError> {
        match v {
            Some(x) => Ok(SimDuration::from_secs_f64(c.non_negative(&format!("{path}.{key}"), x)?)),
            None => Ok(dflt),
        }
    };
    out.image_pull = secs("image_pull_s", l.image_pull_s, out.image_pull)?;
    out.load = secs("load_s", l.load_s, out.load)?;
    out.termination_grace =
        secs("termination_grace_s", l.termination_grace_s, out.termination_grace)?;
    if let Some(x) = l.gpu_hour_usd {
        out.gpu_hour_usd = c.non_negative(&format!("{path}.gpu_hour_usd"), x)?;
    }
    Ok(out)
}

fn pools(c: &Ctx<'_>, cl: &RawCluster, cat: &Catalog) -> Result<Vec<PoolSpec>, ConfigError> {
    let Some(first) = cl.pools.first() else {
        return Err(c.err("cluster.pools", "is empty: add at least one pool"));
    };
    let mut out: Vec<PoolSpec> = Vec::new();
    let mut total: u64 = 0;
    for (i, p) in cl.pools.iter().enumerate() {
        let path = format!("cluster.pools[{i}]");
        if kind_name(p) != kind_name(first) {
            return Err(c.err(
                &format!("{path}.kind"),
                format!(
                    "= {} but cluster.pools[0] is {}: a cluster is all queue pools or all llm \
                     pools; make them one kind or split the scenario",
                    kind_name(p),
                    kind_name(first)
                ),
            ));
        }
        let (name, replicas, weight, backup, lc) = match p {
            RawPool::Queue(q) => (&q.name, q.replicas, q.weight, q.backup, &q.lifecycle),
            RawPool::Llm(l) => (&l.name, l.replicas, l.weight, l.backup, &l.lifecycle),
        };
        if out.iter().any(|o| &o.name == name) {
            return Err(c.err(&format!("{path}.name"), format!("= {name:?}: duplicate pool name")));
        }
        let weight = weight.unwrap_or(1);
        if weight == 0 {
            return Err(c.err(&format!("{path}.weight"), "= 0: weights must be at least 1"));
        }
        let kind = match p {
            RawPool::Queue(q) => {
                let slots = q.slots.unwrap_or(1);
                if slots == 0 {
                    return Err(c.err(
                        &format!("{path}.slots"),
                        "= 0: a queue replica needs at least 1 slot",
                    ));
                }
                let service_s = q
                    .service_s
                    .as_ref()
                    .map(|d| dist(c, &format!("{path}.service_s"), d))
                    .transpose()?;
                PoolKind::Queue { slots, service_s, queue_capacity: q.queue_capacity }
            }
            RawPool::Llm(l) => PoolKind::Llm(Box::new(llm_pool(c, &path, l, cat)?)),
        };
        total += u64::from(replicas);
        // An llm pool is billed at its GPU's catalog price unless it names its own.
        let catalog_price = match &kind {
            PoolKind::Llm(l) => cat.gpu(&l.gpu).ok().and_then(|g| g.usd_per_gpu_hour),
            PoolKind::Queue { .. } => None,
        };
        let lifecycle = lifecycle(
            c,
            &format!("{path}.lifecycle"),
            lc.as_deref(),
            catalog_price.unwrap_or(0.0),
        )?;
        out.push(PoolSpec {
            name: name.clone(),
            replicas,
            weight,
            backup: backup.unwrap_or(false),
            kind,
            lifecycle,
        });
    }
    if total > 1_000_000 {
        return Err(c.err("cluster.pools", format!("{total} replicas in all: at most 1000000")));
    }
    if out.iter().all(|p| p.backup) {
        return Err(c.err(
            "cluster.pools",
            "every pool is `backup: true`: a backup pool only takes over from primary pools; \
             make at least one pool primary",
        ));
    }
    Ok(out)
}

/// Validates a `kind: llm` pool at `path`: resolves its GPU and models in `cat`, builds each
/// model's latency model and sizes its KV cache.
fn llm_pool(
    c: &Ctx<'_>,
    path: &str,
    l: &RawLlmPool,
    cat: &Catalog,
) -> Result<LlmPool, ConfigError> {
    let p = |k: &str| format!("{path}.{k}");
    let tp = l.tp.unwrap_or(1);
    if tp == 0 {
        return Err(c.err(&p("tp"), "= 0: a replica needs at least 1 GPU (tp: 1)"));
    }
    let gpu = cat.gpu(&l.gpu).map_err(|e| lookup_error(c, &p("gpu"), e))?;
    let names: Vec<(String, &str)> =
        match (&l.model, &l.models) {
            (Some(m), None) => vec![(p("model"), m.as_str())],
            (None, Some(ms)) if ms.is_empty() => {
                return Err(c.err(
                    &p("models"),
                    "is empty: list at least one model (see `routelab list models`)",
                ))
            }
            (None, Some(ms)) => ms
                .iter()
                .enumerate()
                .map(|(j, m)| (format!("{path}.models[{j}]"), m.as_str()))
                .collect(),
            (Some(_), Some(_)) => {
                return Err(c.err(
                    &p("models"),
                    "is given together with `model`: use `model:` for one model or `models:` for \
                 several, not both",
                ))
            }
            (None, None) => return Err(c.err(
                path,
                "names no model: add `model: <name>` or `models: [<name>, ...]` (see `routelab \
                 list models`)",
            )),
        };
    let util = l.gpu_memory_utilization.unwrap_or(0.9);
    if c.positive(&p("gpu_memory_utilization"), util)? > 1.0 {
        return Err(c.err(
            &p("gpu_memory_utilization"),
            format!("= {}: must be in (0, 1] (a fraction of GPU memory)", num(util)),
        ));
    }
    let engine = engine(c, &p("engine"), l.engine.as_ref())?;
    let raw_latency = l.latency.clone().unwrap_or(RawLatency::Roofline(RawRoofline::default()));
    let (load_bytes_per_s, load_init) = cold_start(c, &p("cold_start"), l.cold_start.as_ref())?;
    let mut models: Vec<ServedModel> = Vec::new();
    let mut peak_flops_per_s = 0.0;
    for (mp, name) in names {
        let m = cat.model(name).map_err(|e| lookup_error(c, &mp, e))?;
        if models.iter().any(|s| s.name == m.name) {
            return Err(c.err(
                &mp,
                format!("= {name:?}: {} is listed twice in this pool; remove the repeat", m.name),
            ));
        }
        if m.heads % tp != 0 {
            return Err(c.err(
                &p("tp"),
                format!(
                    "= {tp}: {}'s {} attention heads do not split evenly over {tp} GPUs (vLLM \
                     refuses it); use a tp that divides {}",
                    m.name, m.heads, m.heads
                ),
            ));
        }
        let dtype = l.dtype.unwrap_or_else(|| default_dtype(gpu, m));
        let peak = gpu.peak_flops_per_s(dtype).map_err(|e| c.err(&p("dtype"), e.to_string()))?;
        if peak_flops_per_s == 0.0 {
            peak_flops_per_s = peak * f64::from(tp);
        }
        let kv_dtype = l.kv_dtype.unwrap_or(dtype);
        let latency = latency_model(c, path, &raw_latency, gpu, m, tp, dtype, kv_dtype)?;
        let max_model_len = match engine.max_model_len {
            Some(n) if n > m.max_context => {
                return Err(c.err(
                    &p("engine.max_model_len"),
                    format!(
                        "= {n}: longer than {}'s context length ({}); lower it or remove it",
                        m.name, m.max_context
                    ),
                ))
            }
            Some(n) => n,
            None => m.max_context,
        };
        let kv_capacity_blocks = match engine.num_gpu_blocks_override {
            Some(n) => n,
            None => {
                let cfg = KvCacheConfig {
                    tp,
                    weight_dtype: dtype,
                    kv_dtype,
                    gpu_memory_utilization: util,
                    block_size: engine.config.block_size,
                    reserve_bytes_per_gpu: DEFAULT_RESERVE_BYTES_PER_GPU,
                };
                kv_blocks(c, path, &mp, gpu, m, &cfg, max_model_len)?
            }
        };
        models.push(ServedModel {
            name: m.name.clone(),
            latency,
            kv_capacity_blocks,
            max_model_len,
            weight_bytes: m.weight_bytes(dtype),
        });
    }
    Ok(LlmPool {
        gpu: gpu.name.clone(),
        tp,
        peak_flops_per_s,
        models,
        engine: engine.config,
        load_bytes_per_s,
        load_init,
        queue_capacity: l.queue_capacity,
    })
}

/// The weight format when the pool gives none: the model's native one, except that a BF16
/// model runs in FP16 on GPUs without BF16 (T4, V100), as vLLM's `dtype: auto` does.
fn default_dtype(gpu: &Gpu, m: &Model) -> Dtype {
    let native = m.native_dtype;
    if gpu.peak_flops_per_s(native).is_err()
        && native == Dtype::Bf16
        && gpu.peak_flops_per_s(Dtype::Fp16).is_ok()
    {
        Dtype::Fp16
    } else {
        native
    }
}

/// KV blocks of one replica of model `m` (at `model_path`) derived from memory; refuses what
/// vLLM refuses to start with: no block at all, or fewer tokens than `max_model_len`.
fn kv_blocks(
    c: &Ctx<'_>,
    path: &str,
    model_path: &str,
    gpu: &Gpu,
    m: &Model,
    cfg: &KvCacheConfig,
    max_model_len: u32,
) -> Result<u32, ConfigError> {
    let blocks = catalog::kv_capacity_blocks(gpu, m, cfg).map_err(|e| match e {
        CatalogError::DoesNotFit { .. } => c.err(model_path, e.to_string()),
        CatalogError::Invalid { field, .. } => c.err(&format!("{path}.{field}"), e.to_string()),
        other => c.err(path, other.to_string()),
    })?;
    let tp = cfg.tp;
    if blocks == 0 {
        return Err(c.err(
            model_path,
            format!(
                "{} leaves no room for a single KV block on {} with tp {tp}: raise tp or \
                 gpu_memory_utilization, use fp8 weights or a larger GPU",
                m.name, gpu.name
            ),
        ));
    }
    let blocks = u32::try_from(blocks).map_err(|_| {
        c.err(
            &format!("{path}.engine.block_size"),
            format!("{blocks} KV blocks is more than 4294967295: raise block_size"),
        )
    })?;
    let tokens = u64::from(blocks) * u64::from(cfg.block_size);
    if tokens < u64::from(max_model_len) {
        return Err(c.err(
            model_path,
            format!(
                "{}: the KV cache holds {tokens} tokens on {} with tp {tp}, fewer than \
                 max_model_len {max_model_len} (vLLM refuses to start): set \
                 engine.max_model_len to at most {tokens}, raise gpu_memory_utilization or tp, \
                 use kv_dtype fp8 or a larger GPU",
                m.name, gpu.name
            ),
        ));
    }
    Ok(blocks)
}

/// Validated `engine:` knobs plus the two that are not scheduler state.
struct Engine {
    config: EngineConfig,
    num_gpu_blocks_override: Option<u32>,
    max_model_len: Option<u32>,
}

fn engine(c: &Ctx<'_>, path: &str, e: Option<&RawEngine>) -> Result<Engine, ConfigError> {
    let d = EngineConfig::default();
    let Some(e) = e else {
        return Ok(Engine { config: d, num_gpu_blocks_override: None, max_model_len: None });
    };
    let p = |k: &str| format!("{path}.{k}");
    let max_num_seqs = e.max_num_seqs.unwrap_or(d.max_num_seqs);
    if max_num_seqs == 0 {
        return Err(c.err(&p("max_num_seqs"), "= 0: must be at least 1"));
    }
    let max_num_batched_tokens = e.max_num_batched_tokens.unwrap_or(d.max_num_batched_tokens);
    if max_num_batched_tokens < max_num_seqs {
        return Err(c.err(
            &p("max_num_batched_tokens"),
            format!(
                "= {max_num_batched_tokens}: must be >= max_num_seqs ({max_num_seqs}), as vLLM \
                 requires; raise it or lower max_num_seqs"
            ),
        ));
    }
    let block_size = e.block_size.unwrap_or(d.block_size);
    if !(1..=1024).contains(&block_size) {
        return Err(c.err(
            &p("block_size"),
            format!("= {block_size}: must be in 1..=1024 (vLLM's default is 16)"),
        ));
    }
    if e.num_gpu_blocks_override == Some(0) {
        return Err(c.err(
            &p("num_gpu_blocks_override"),
            "= 0: must be at least 1 block (remove it to size the cache from GPU memory)",
        ));
    }
    if e.max_model_len == Some(0) {
        return Err(c.err(
            &p("max_model_len"),
            "= 0: must be at least 1 (remove it for the model's context length)",
        ));
    }
    Ok(Engine {
        config: EngineConfig {
            max_num_seqs,
            max_num_batched_tokens,
            block_size,
            long_prefill_token_threshold: e
                .long_prefill_token_threshold
                .unwrap_or(d.long_prefill_token_threshold),
            enable_prefix_caching: e.enable_prefix_caching.unwrap_or(d.enable_prefix_caching),
            scheduling_policy: match e.scheduling_policy {
                Some(RawSchedulingPolicy::Priority) => SchedulingPolicy::Priority,
                Some(RawSchedulingPolicy::Fcfs) | None => SchedulingPolicy::Fcfs,
            },
        },
        num_gpu_blocks_override: e.num_gpu_blocks_override,
        max_model_len: e.max_model_len,
    })
}

/// The latency model of model `m` in the pool at `path`.
#[allow(clippy::too_many_arguments)]
fn latency_model(
    c: &Ctx<'_>,
    path: &str,
    raw: &RawLatency,
    gpu: &Gpu,
    m: &Model,
    tp: u32,
    dtype: Dtype,
    kv_dtype: Dtype,
) -> Result<LatencyModel, ConfigError> {
    let p = |k: &str| format!("{path}.latency.{k}");
    let invalid = |e: CatalogError| match e {
        CatalogError::Invalid { field: "tp", .. } => c.err(&format!("{path}.tp"), e.to_string()),
        CatalogError::Invalid { field, ref message, .. } => {
            c.err(&p(field), format!("{message} (fix the value)"))
        }
        CatalogError::UnsupportedDtype { .. } => c.err(&format!("{path}.dtype"), e.to_string()),
        other => c.err(&format!("{path}.latency"), other.to_string()),
    };
    match raw {
        RawLatency::Roofline(r) => {
            let d = RooflineParams::default();
            let eta = |k: &str, v: Option<f64>, default: f64| -> Result<f64, ConfigError> {
                let Some(v) = v else { return Ok(default) };
                if c.positive(&p(k), v)? > 1.0 {
                    return Err(c.err(
                        &p(k),
                        format!("= {}: must be in (0, 1] (a fraction of the peak)", num(v)),
                    ));
                }
                Ok(v)
            };
            let non_negative = |k: &str, v: Option<f64>, default: f64| match v {
                Some(v) => c.non_negative(&p(k), v),
                None => Ok(default),
            };
            let params = RooflineParams {
                eta_compute_max: eta("eta_compute_max", r.eta_compute_max, d.eta_compute_max)?,
                knee_x: non_negative("knee_x", r.knee_x, d.knee_x)?,
                eta_memory: eta("eta_memory", r.eta_memory, d.eta_memory)?,
                eta_attention: eta("eta_attention", r.eta_attention, d.eta_attention)?,
                eta_link: eta("eta_link", r.eta_link, d.eta_link)?,
                layer_fixed_s: non_negative("layer_fixed_s", r.layer_fixed_s, d.layer_fixed_s)?,
                allreduce_latency_s: non_negative(
                    "allreduce_latency_s",
                    r.allreduce_latency_s,
                    d.allreduce_latency_s,
                )?,
                overhead_s: non_negative("overhead_s", r.overhead_s, d.overhead_s)?,
            };
            Roofline::new(gpu, m, tp, dtype, kv_dtype, &params)
                .map(LatencyModel::Roofline)
                .map_err(invalid)
        }
        RawLatency::Linear(x) => {
            let b0 = c.non_negative(&p("beta0_s"), x.beta0_s)?;
            let b1 =
                c.non_negative(&p("beta1_s_per_prefill_token"), x.beta1_s_per_prefill_token)?;
            let b2 = c.non_negative(&p("beta2_s_per_decode_token"), x.beta2_s_per_decode_token)?;
            let b3 = match x.beta3_s_per_context_token {
                Some(v) => c.non_negative(&p("beta3_s_per_context_token"), v)?,
                None => 0.0,
            };
            if b0 + b1 + b2 + b3 == 0.0 {
                return Err(c.err(
                    &format!("{path}.latency"),
                    "has every coefficient 0, so an iteration would take no time: give beta0_s \
                     (seconds per iteration) a positive value",
                ));
            }
            LatencyModel::linear(b0, b1, b2, b3).map_err(invalid)
        }
    }
}

/// Bytes per second and fixed time of a model load.
fn cold_start(
    c: &Ctx<'_>,
    path: &str,
    cs: Option<&RawColdStart>,
) -> Result<(f64, SimDuration), ConfigError> {
    let (gb, init) = match cs {
        Some(cs) => (cs.load_gb_per_s, cs.init_s),
        None => (None, None),
    };
    let gb_per_s = match gb {
        Some(v) => c.positive(&format!("{path}.load_gb_per_s"), v)?,
        None => 2.0,
    };
    let init_s = match init {
        Some(v) => c.non_negative(&format!("{path}.init_s"), v)?,
        None => 20.0,
    };
    if init_s > 1e9 {
        return Err(c.err(
            &format!("{path}.init_s"),
            format!("= {}: must be at most 1e9 seconds", num(init_s)),
        ));
    }
    Ok((gb_per_s * 1e9, SimDuration::from_secs_f64(init_s)))
}

fn classes(
    c: &Ctx<'_>,
    w: &[RawClass],
    pools: &[PoolSpec],
    cat: &Catalog,
) -> Result<Vec<ClassSpec>, ConfigError> {
    if w.is_empty() {
        return Err(c.err("workload", "is empty: add at least one class"));
    }
    if w.len() > usize::from(u16::MAX) {
        return Err(c.err("workload", "too many classes (at most 65535)"));
    }
    let llm: Vec<&LlmPool> = pools
        .iter()
        .filter_map(|p| match &p.kind {
            PoolKind::Llm(l) => Some(&**l),
            PoolKind::Queue { .. } => None,
        })
        .collect();
    let is_llm = !llm.is_empty();
    let mut served: Vec<&str> = Vec::new();
    for m in llm.iter().flat_map(|l| &l.models) {
        if !served.contains(&m.name.as_str()) {
            served.push(&m.name);
        }
    }
    let all_pools_have_service = pools.iter().all(|p| match &p.kind {
        PoolKind::Queue { service_s, .. } => service_s.is_some(),
        PoolKind::Llm(_) => true,
    });
    let mut out: Vec<ClassSpec> = Vec::new();
    for (i, k) in w.iter().enumerate() {
        let path = format!("workload[{i}]");
        let p = |key: &str| format!("{path}.{key}");
        if out.iter().any(|o| o.name == k.class) {
            return Err(c.err(&p("class"), format!("= {:?}: duplicate class name", k.class)));
        }
        match (&k.arrival, &k.trace) {
            (Some(_), Some(_)) => {
                return Err(c.err(
                    &p("trace"),
                    "is given together with `arrival`: a trace class takes its arrivals from \
                     the file; remove one of them",
                ))
            }
            (None, None) => {
                return Err(c.err(
                    &p("arrival"),
                    "is missing: add an arrival process (e.g. { process: poisson, rate_per_s: \
                     10 }) or a `trace:`",
                ))
            }
            _ => {}
        }
        let trace = k.trace.as_ref().map(|t| trace(c, &p("trace"), t)).transpose()?;
        if trace.is_some() {
            for (key, given) in [
                ("prompt_tokens", k.prompt_tokens.is_some()),
                ("output_tokens", k.output_tokens.is_some()),
                ("prefix", k.prefix.is_some()),
                ("session", k.session.is_some()),
            ] {
                if given {
                    return Err(c.err(
                        &p(key),
                        "cannot be combined with `trace:` (the trace gives each request's \
                         arrival and lengths): remove it",
                    ));
                }
            }
        }
        let service_s = k.service_s.as_ref().map(|d| dist(c, &p("service_s"), d)).transpose()?;
        if is_llm {
            if service_s.is_some() {
                return Err(c.err(
                    &p("service_s"),
                    "llm replicas derive service from the latency model; remove service_s",
                ));
            }
            if trace.is_none() {
                for (key, given) in [
                    ("prompt_tokens", k.prompt_tokens.is_some()),
                    ("output_tokens", k.output_tokens.is_some()),
                ] {
                    if !given {
                        return Err(c.err(
                            &p(key),
                            format!(
                                "is missing: llm replicas need token counts; add {key} (e.g. \
                                 {{ dist: lognormal, mean: 1000, cv: 1 }}) or a `trace:`"
                            ),
                        ));
                    }
                }
            }
        } else if service_s.is_none() && !all_pools_have_service {
            return Err(c.err(
                &p("service_s"),
                "is missing: queue replicas need a service time; add service_s to the class or to every pool",
            ));
        }
        let model = if is_llm {
            Some(class_model(c, &p("model"), k.model.as_deref(), &served, cat)?)
        } else if k.model.is_some() {
            return Err(c.err(
                &p("model"),
                "is set but the cluster has only queue pools, which serve every class: remove \
                 `model:` or use `kind: llm` pools",
            ));
        } else {
            None
        };
        if k.max_tokens == Some(0) {
            return Err(c.err(&p("max_tokens"), "= 0: must be at least 1 (or remove the cap)"));
        }
        let prefix = k.prefix.as_ref().map(|x| prefix(c, &p("prefix"), x)).transpose()?;
        let session = match &k.session {
            Some(s) => {
                let sp = p("session");
                let max_context_tokens = match s.max_context_tokens {
                    Some(0) => {
                        return Err(c.err(
                            &format!("{sp}.max_context_tokens"),
                            "= 0: must be at least 1 (remove it for the model's max_model_len)",
                        ))
                    }
                    Some(n) => n,
                    None => llm
                        .iter()
                        .flat_map(|l| &l.models)
                        .filter(|m| Some(&m.name) == model.as_ref())
                        .map(|m| m.max_model_len)
                        .min()
                        .unwrap_or(u32::MAX),
                };
                Some(SessionSpec {
                    turns: dist(c, &format!("{sp}.turns"), &s.turns)?,
                    think_time_s: dist(c, &format!("{sp}.think_time_s"), &s.think_time_s)?,
                    max_context_tokens,
                    history: s.history.unwrap_or(true),
                })
            }
            None => None,
        };
        let tenant = match &k.tenant {
            Some(t) if t.trim().is_empty() => {
                return Err(c.err(&p("tenant"), "is empty: give a tenant name or remove the key"))
            }
            Some(t) => t.clone(),
            None => k.class.clone(),
        };
        let slo = slo(c, &p("slo"), k.slo.as_ref())?;
        let timeout = k.timeout_s.map(|t| c.seconds(&p("timeout_s"), t)).transpose()?;
        if let (Some(t), Some(model)) = (&trace, &model) {
            mooncake_block_sizes(c, &path, t, model, pools)?;
        }
        let (client, tier) = super::protection::client(c, &path, k)?;
        out.push(ClassSpec {
            client,
            tier,
            name: k.class.clone(),
            arrival: k.arrival.as_ref().map(|a| arrival(c, &p("arrival"), a)).transpose()?,
            service_s,
            prompt_tokens: k
                .prompt_tokens
                .as_ref()
                .map(|d| dist(c, &p("prompt_tokens"), d))
                .transpose()?,
            output_tokens: k
                .output_tokens
                .as_ref()
                .map(|d| dist(c, &p("output_tokens"), d))
                .transpose()?,
            timeout,
            model,
            max_tokens: k.max_tokens,
            prefix,
            session,
            tenant,
            priority: k.priority.unwrap_or(0),
            slo,
            trace,
        });
    }
    Ok(out)
}

/// The canonical name of the model a class in an llm cluster asks for: the one it names (by
/// any catalog name or alias), or the only one the cluster serves.
fn class_model(
    c: &Ctx<'_>,
    path: &str,
    given: Option<&str>,
    served: &[&str],
    cat: &Catalog,
) -> Result<String, ConfigError> {
    let list = served.join(", ");
    match given {
        Some(name) => match cat.model(name) {
            Ok(m) if served.contains(&m.name.as_str()) => Ok(m.name.clone()),
            _ => Err(c.err(
                path,
                format!(
                    "= {name:?}: no pool serves this model; served: {list} (name one of them, or \
                     add it to a pool's `models`)"
                ),
            )),
        },
        None if served.len() == 1 => Ok(served[0].to_string()),
        None => Err(c.err(
            path,
            format!(
                "is missing: the cluster serves several models ({list}); add `model:` naming one"
            ),
        )),
    }
}

/// Mooncake block hashes cover 512-token blocks, which the engine splits into its own blocks:
/// every pool serving a Mooncake trace class needs a `block_size` that divides 512.
fn mooncake_block_sizes(
    c: &Ctx<'_>,
    class_path: &str,
    t: &TraceSpec,
    model: &str,
    pools: &[PoolSpec],
) -> Result<(), ConfigError> {
    if t.format != TraceFormat::Mooncake {
        return Ok(());
    }
    for (j, pool) in pools.iter().enumerate() {
        let PoolKind::Llm(l) = &pool.kind else { continue };
        let bs = l.engine.block_size;
        if l.models.iter().any(|m| m.name == model) && MOONCAKE_BLOCK_TOKENS % bs != 0 {
            return Err(c.err(
                &format!("cluster.pools[{j}].engine.block_size"),
                format!(
                    "= {bs}: {class_path} replays a mooncake trace, whose {MOONCAKE_BLOCK_TOKENS}-token \
                     blocks need a block_size that divides {MOONCAKE_BLOCK_TOKENS} (e.g. 16)"
                ),
            ));
        }
    }
    Ok(())
}

fn trace(c: &Ctx<'_>, path: &str, t: &RawTrace) -> Result<TraceSpec, ConfigError> {
    let p = |k: &str| format!("{path}.{k}");
    if t.path.trim().is_empty() {
        return Err(c.err(&p("path"), "is empty: give the trace file's path"));
    }
    let resolved = trace::resolve_path(Path::new(c.file), Path::new(&t.path));
    if !resolved.exists() {
        return Err(c.err(
            &p("path"),
            format!(
                "= {:?}: file not found at {} (a relative path is relative to the scenario \
                 file's directory)",
                t.path,
                resolved.display()
            ),
        ));
    }
    if resolved.is_dir() {
        return Err(c.err(
            &p("path"),
            format!("= {:?}: {} is a directory; give the trace file", t.path, resolved.display()),
        ));
    }
    let time_scale = match t.time_scale {
        Some(v) => c.positive(&p("time_scale"), v)?,
        None => 1.0,
    };
    let start_s = match t.start_s {
        Some(v) => c.non_negative(&p("start_s"), v)?,
        None => 0.0,
    };
    let duration_s = t.duration_s.map(|v| c.positive(&p("duration_s"), v)).transpose()?;
    let spec = TraceSpec {
        path: resolved,
        format: match t.format {
            RawTraceFormat::Azure => TraceFormat::Azure,
            RawTraceFormat::Mooncake => TraceFormat::Mooncake,
        },
        options: TraceOptions { time_scale, start_s, duration_s, salt: None },
    };
    scan_trace(c, &p("path"), &t.path, &spec)?;
    Ok(spec)
}

/// Reads the replayed window of a trace once (streaming, O(one line) of memory), so that a
/// malformed line is bad input naming the trace's `file:line` rather than a failure in the
/// middle of a run, and refuses a window without a single request. Reading stops at the first
/// row past the window, here as in the run (later rows are never read). A window that passed is remembered for the process (keyed by
/// the file's size and modification time), so a sweep's cells do not read it again.
fn scan_trace(c: &Ctx<'_>, path: &str, given: &str, spec: &TraceSpec) -> Result<(), ConfigError> {
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    type Key = (std::path::PathBuf, bool, u64, Option<u64>, u64, Option<std::time::SystemTime>);
    static SCANNED: Mutex<BTreeSet<Key>> = Mutex::new(BTreeSet::new());
    let o = &spec.options;
    let meta = std::fs::metadata(&spec.path).ok();
    let key: Key = (
        spec.path.clone(),
        spec.format == TraceFormat::Mooncake,
        o.start_s.to_bits(),
        o.duration_s.map(f64::to_bits),
        meta.as_ref().map_or(0, |m| m.len()),
        meta.and_then(|m| m.modified().ok()),
    );
    if SCANNED.lock().is_ok_and(|s| s.contains(&key)) {
        return Ok(());
    }
    let bad = |e: trace::TraceError| {
        c.err(path, format!("= {given:?}: {e} (fix the trace file or select another window)"))
    };
    let mut requests = 0u64;
    for r in trace::TraceReader::open(&spec.path, spec.format, *o).map_err(bad)? {
        r.map_err(bad)?;
        requests += 1;
    }
    if requests == 0 {
        let clock = "the trace's own clock (seconds from its first request)";
        return Err(c.err(
            path,
            match o.duration_s {
                Some(d) => format!(
                    "= {given:?}: no request in [start_s, start_s + duration_s) = [{} s, {} s) \
                     of {clock}: lower start_s or raise duration_s",
                    num(o.start_s),
                    num(o.start_s + d)
                ),
                None => format!(
                    "= {given:?}: no request at or after start_s = {} s on {clock}: lower start_s",
                    num(o.start_s)
                ),
            },
        ));
    }
    if let Ok(mut s) = SCANNED.lock() {
        s.insert(key);
    }
    Ok(())
}

fn prefix(c: &Ctx<'_>, path: &str, x: &RawPrefix) -> Result<PrefixSpec, ConfigError> {
    if !(1..=1_000_000).contains(&x.groups) {
        return Err(
            c.err(&format!("{path}.groups"), format!("= {}: must be in 1..=1000000", x.groups))
        );
    }
    if x.group_tokens == 0 {
        return Err(c.err(&format!("{path}.group_tokens"), "= 0: must be at least 1"));
    }
    let zipf_s = match x.popularity_zipf_s {
        Some(v) => c.non_negative(&format!("{path}.popularity_zipf_s"), v)?,
        None => 1.0,
    };
    Ok(PrefixSpec { groups: x.groups, group_tokens: x.group_tokens, zipf_s })
}

fn slo(c: &Ctx<'_>, path: &str, s: Option<&RawSlo>) -> Result<Slo, ConfigError> {
    let Some(s) = s else { return Ok(Slo::default()) };
    let ms = |k: &str, v: Option<f64>| -> Result<Option<SimDuration>, ConfigError> {
        let Some(v) = v else { return Ok(None) };
        let kp = format!("{path}.{k}");
        if c.positive(&kp, v)? > 1e12 {
            return Err(c.err(&kp, format!("= {}: must be at most 1e12 ms", num(v))));
        }
        Ok(Some(SimDuration::from_secs_f64(v / 1e3)))
    };
    Ok(Slo { ttft: ms("ttft_ms", s.ttft_ms)?, tpot: ms("tpot_ms", s.tpot_ms)? })
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
pub(super) fn dist(c: &Ctx<'_>, path: &str, d: &RawDist) -> Result<Dist, ConfigError> {
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
        RawDist::Mixture(x) => (mixture(c, path, x)?, x.min, x.max),
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

fn mixture(c: &Ctx<'_>, path: &str, x: &RawMixture) -> Result<Law, ConfigError> {
    if x.components.is_empty() {
        return Err(c.err(&format!("{path}.components"), "is empty: list at least one dist"));
    }
    let mut comps = Vec::with_capacity(x.components.len());
    for (j, d) in x.components.iter().enumerate() {
        let cp = format!("{path}.components[{j}]");
        if matches!(d, RawDist::Mixture(_)) {
            return Err(
                c.err(&cp, "is a mixture: nest no mixtures; list all components at one level")
            );
        }
        comps.push(dist(c, &cp, d)?);
    }
    let weights = match &x.weights {
        Some(w) => {
            if w.len() != comps.len() {
                return Err(c.err(
                    &format!("{path}.weights"),
                    format!(
                        "has {} entries for {} components: give one weight each",
                        w.len(),
                        comps.len()
                    ),
                ));
            }
            for (j, v) in w.iter().enumerate() {
                c.non_negative(&format!("{path}.weights[{j}]"), *v)?;
            }
            if w.iter().sum::<f64>() <= 0.0 {
                return Err(c.err(&format!("{path}.weights"), "sum to 0: give a positive weight"));
            }
            w.clone()
        }
        None => vec![1.0; comps.len()],
    };
    Ok(Dist::mixture_law(comps, &weights))
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
    gateway: &GatewayConfig,
) -> Result<Vec<PolicySpec>, ConfigError> {
    if ps.is_empty() {
        return Err(
            c.err("policies", format!("is empty: list at least one of: {}", routing::names()))
        );
    }
    let weights: Vec<u32> =
        pools.iter().flat_map(|p| std::iter::repeat_n(p.weight, p.replicas as usize)).collect();
    let infos = vec![
        routing::ReplicaInfo {
            flops_per_s: 1.0,
            kv_capacity_blocks: 0,
            block_size: 0,
            pool: 0,
            slots: 1,
        };
        weights.len()
    ];
    let mut out: Vec<PolicySpec> = Vec::new();
    for (i, v) in ps.iter().enumerate() {
        let path = format!("policies[{i}]");
        if v.as_str() == Some("all") {
            // Every registered policy with defaults, skipping labels already listed.
            for e in routing::ROUTERS {
                let name = serde_yaml_ng::Value::String(e.name.to_string());
                let listed = ps.iter().any(|p| p.as_str() == Some(e.name));
                if !listed && !out.iter().any(|o| o.label == e.name) {
                    out.push(policy(c, &path, &name, gateway)?);
                }
            }
            continue;
        }
        let spec = policy(c, &path, v, gateway)?;
        let ctx = BuildCtx { run_seed: 0, weights: &weights, replicas: &infos, gateway: 0 };
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
fn policy(
    c: &Ctx<'_>,
    path: &str,
    v: &serde_yaml_ng::Value,
    gateway: &GatewayConfig,
) -> Result<PolicySpec, ConfigError> {
    use serde_yaml_ng::Value;
    let mut gw = gateway.clone();
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
            if let Some(g) = m.remove("gateway") {
                let gp = format!("{path}.gateway");
                let raw: super::raw::RawGateway =
                    serde_yaml_ng::from_value(g).map_err(|e| c.err(&gp, e.to_string()))?;
                gw = gateway_over(c, &gp, gateway, Some(&raw))?;
            }
            let params = if m.is_empty() { Value::Null } else { Value::Mapping(m) };
            (name, label, params)
        }
        _ => return Err(c.err(path, "must be a policy name or a mapping with `name:`")),
    };
    let entry = routing::find(&name).ok_or_else(|| {
        c.err(path, format!("unknown policy {name:?}; valid: {}", routing::names()))
    })?;
    let label = label.unwrap_or_else(|| name.clone());
    c.label(path, &label)?;
    Ok(PolicySpec { label, entry, params, gateway: gw })
}

/// Builds a policy spec from a bare name given on the command line (`--policy NAME`).
pub fn policy_from_name(name: &str) -> Result<PolicySpec, ConfigError> {
    let c = Ctx { file: "<command line>" };
    policy(
        &c,
        "--policy",
        &serde_yaml_ng::Value::String(name.to_string()),
        &GatewayConfig::default(),
    )
}

/// Parses every `checks:` entry and checks its policy labels and metric names, so a bad check
/// fails at load time with its column rather than after the run (see `report::check`).
fn checks(
    c: &Ctx<'_>,
    raw: &[String],
    policies: &[PolicySpec],
    scalers: &[&str],
    groups: &[String],
) -> Result<Vec<String>, ConfigError> {
    let labels: Vec<&str> = policies.iter().map(|p| p.label.as_str()).collect();
    for (i, text) in raw.iter().enumerate() {
        super::check_expr::validate(text, &labels, scalers, groups)
            .map_err(|e| c.err(&format!("checks[{i}]"), format!("{e} (in `{}`)", text.trim())))?;
    }
    Ok(raw.to_vec())
}
