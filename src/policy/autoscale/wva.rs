//! `wva`: the llm-d Workload Variant Autoscaler (WVA) with its V1 saturation analyzer,
//! applied, as in a real deployment, through the HPA that targets the `wva_desired_replicas`
//! metric it emits.
//!
//! **The analyzer** (every `interval_s`, 60 s, the controller's `reconcileInterval`). Each Ready
//! pod with both samples is one replica; its load is the peak over the last minute of
//! `vllm:kv_cache_usage_perc` (`kv`) and `vllm:num_requests_waiting` (`q`), WVA's
//! `max by (pod) (max_over_time(...[1m]))` queries.
//!
//! ```text
//! saturated(r)  = kv >= kv_threshold (0.80)  or  q >= queue_threshold (5)
//! N             = replicas not saturated
//! spare_kv      = mean over them of (kv_threshold − kv)        (0 when N = 0)
//! spare_q       = mean over them of (queue_threshold − q)      (0 when N = 0)
//! scale_up      = spare_kv < kv_spare_trigger (0.10)  or  spare_q < queue_spare_trigger (3)
//! scale_down_ok = N >= 2 and, with their load spread over N − 1 replicas
//!                 (mean load × N / (N − 1)), both spares stay >= their triggers
//! ```
//!
//! Saturated replicas give no headroom, so when every replica is saturated both spares are 0
//! and the analyzer asks for more. The two verdicts never hold at once: spreading the load over
//! fewer replicas only shrinks the spares.
//!
//! **The target** (`CalculateSaturationTargets`, one variant). `current` is the pool's replica
//! count, `pending` the pods of it not Ready yet, `desired` the value emitted last time:
//! - the model is *in transition* when `desired != current` (a previous decision is not
//!   applied yet) or `pending > 0`: the target is `desired` (first case) or `current`, and the
//!   analysis is not acted on;
//! - else `current + 1` on `scale_up`, `current − 1` on `scale_down_ok` when `current > 1`,
//!   otherwise `current`;
//! - clamped to `[min_replicas, max_replicas]` (the VariantAutoscaling's bounds: "the optimizer
//!   will never scale below/above this value").
//!
//! No replica with metrics (none Ready yet): the analysis is skipped and the previous value is
//! emitted again; before the first analysis nothing is emitted and the HPA has no metric (it
//! keeps the pool as it is).
//!
//! **The HPA** (`hpa::HpaCore`, every `hpa_sync_period_s`, 15 s): one External metric,
//! `wva_desired_replicas`, `AverageValue` target 1 (the WVA chart's `hpa.targetAverageValue`),
//! so it proposes `ceil(desired / 1)` unless `desired / statusReplicas` is within the tolerance
//! (then `statusReplicas`), `minReplicas`/`maxReplicas` = `min_replicas`/`max_replicas`, and
//! `behavior` (the HPA's `behavior` block in Kubernetes camelCase; default: the WVA chart's,
//! both directions `stabilizationWindowSeconds: 240`, `selectPolicy: Max`, one policy `Pods 10
//! per 150 s`). So the 240 s scale-*up* stabilization delays every WVA step by four minutes —
//! the slow scale-up users report for WVA + HPA. And with the cluster tolerance of 10 %, from 10
//! replicas on a `+1` (11 / 10 = 1.1) or `−1` lies inside the tolerance band and the HPA never
//! applies it; WVA then stays "in transition" (desired ≠ current) and re-emits that value
//! until `current` moves for another reason — the same trap as gocrane/crane issue #836 for
//! cron targets. Set `behavior.scaleUp.tolerance: 0` (KEP-4951) to avoid it. The engine ticks at
//! `gcd(interval_s, hpa_sync_period_s)`; on a tick where both run, WVA emits first and the HPA
//! reads the new value (in a cluster the two loops are independent).
//!
//! ```yaml
//! autoscalers:
//!   - { name: wva, pool: h100, max_replicas: 8 }
//!   - { name: wva, label: wva-fast, pool: h100, max_replicas: 8,
//!       behavior: { scaleUp: { stabilizationWindowSeconds: 0, tolerance: 0 } } }
//! ```
//!
//! Parameters: `pool` (required), `interval_s` (60), `kv_threshold` (0.80, in (0, 1]),
//! `queue_threshold` (5, > 0), `kv_spare_trigger` (0.10, in [0, kv_threshold]),
//! `queue_spare_trigger` (3, in [0, queue_threshold]; WVA itself checks only the KV pair),
//! `min_replicas` (1, >= 1), `max_replicas` (required), `behavior` (see above),
//! `hpa_sync_period_s` (15), `tolerance` (0.1, the HPA controller flag). Defaults are those of
//! WVA's `internal/config/saturation_scaling.go` (`DefaultKvCacheThreshold` 0.80,
//! `DefaultQueueLengthThreshold` 5, `DefaultKvSpareTrigger` 0.10, `DefaultQueueSpareTrigger` 3)
//! and `config/manager/configmap-saturation-scaling.yaml`.
//!
//! **Not modelled.** *The cheapest variant.* WVA analyses one model across all its variants
//! (pools of different accelerators serving it) and adds the replica to the cheapest variant
//! without pending pods, or removes it from the most expensive one. An autoscaler here owns one
//! pool and the engine has no multi-pool targets, so this is the single-variant case: the
//! cross-variant choice is not simulated (not approximated either). Also not modelled: scale to
//! zero (`WVA_SCALE_TO_ZERO`, hence `min_replicas >= 1`), the GPU limiter (`enableLimiter`), the
//! V2 token-based, throughput and queueing-model analyzers, and per-model config overrides.
//!
//! Sources (read, not copied): llm-d-incubation/workload-variant-autoscaler
//! `internal/saturation/analyzer.go` (`AnalyzeModelSaturation`, `analyzeVariant`,
//! `shouldScaleUp`, `isScaleDownSafe`, `CalculateSaturationTargets`),
//! `internal/config/saturation_scaling.go` (defaults, `Validate`),
//! `config/manager/configmap-saturation-scaling.yaml`, `charts/workload-variant-autoscaler/
//! values.yaml` (`reconcileInterval: 60s`, `hpa.targetAverageValue`, `hpa.behavior`),
//! `charts/workload-variant-autoscaler/templates/hpa.yaml` (External metric, AverageValue),
//! `api/v1alpha1/variantautoscaling_types.go` (`minReplicas`/`maxReplicas`); the saturation
//! `engine.go` of the same controller (`BuildVariantStates`: current = `status.replicas`,
//! pending = current − ready; no metrics → previous desired re-emitted), the per-pod queries
//! (`max_over_time(...[1m])`) of its saturation query registration, the constant
//! `MinNonSaturatedReplicasForScaleDown = 2`; llm-d/llm-d-autoscaling PR #1303 (transition on
//! pending pods, target from current replicas); gocrane/crane issue #836; routelab
//! `policies.md` §4.3 and §9.6.

use super::hpa::{
    cluster_tolerance, positive_or, Behavior, BehaviorSpec, HpaConfig, HpaCore, MetricRule, Policy,
    PolicyKind, Rules, SelectPolicy, Source, Target, DEFAULT_DOWNSCALE_WINDOW, DEFAULT_SYNC_PERIOD,
};
use super::{
    parse_params, AutoscaleCtx, Autoscaler, AutoscalerEntry, MetricQuery, PodPhase, PodView,
    ScaleInput, Seconds, SimMetric,
};
use crate::time::{SimDuration, SimTime};
use serde::Deserialize;

/// Registry entry.
pub static ENTRY: AutoscalerEntry = AutoscalerEntry {
    name: "wva",
    summary: "llm-d WVA saturation analyzer (KV >= 0.8 or queue >= 5; spare triggers) +-1 \
              replica per 60 s, applied through an HPA",
    build,
};

/// WVA's reconcile interval (the chart's `reconcileInterval`).
const DEFAULT_INTERVAL: SimDuration = SimDuration::from_secs(60);
/// `DefaultKvCacheThreshold`.
const DEFAULT_KV_THRESHOLD: f64 = 0.80;
/// `DefaultQueueLengthThreshold`.
const DEFAULT_QUEUE_THRESHOLD: f64 = 5.0;
/// `DefaultKvSpareTrigger`.
const DEFAULT_KV_SPARE_TRIGGER: f64 = 0.10;
/// `DefaultQueueSpareTrigger`.
const DEFAULT_QUEUE_SPARE_TRIGGER: f64 = 3.0;
/// `MinNonSaturatedReplicasForScaleDown`.
const MIN_NON_SATURATED_FOR_SCALE_DOWN: usize = 2;
/// The `[1m]` range of WVA's per-pod queries.
const METRIC_WINDOW: SimDuration = SimDuration::from_secs(60);
/// The WVA chart's HPA stabilization window, both directions.
const CHART_WINDOW: SimDuration = SimDuration::from_secs(240);
/// The WVA chart's HPA policy: Pods 10 per 150 s, both directions.
const CHART_POLICY: Policy =
    Policy { kind: PolicyKind::Pods, value: 10, period: SimDuration::from_secs(150) };
/// The HPA target of `wva_desired_replicas` (AverageValue 1), in milli-units.
const DESIRED_TARGET_MILLI: i64 = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    pool: Option<String>,
    interval_s: Option<Seconds>,
    kv_threshold: Option<f64>,
    queue_threshold: Option<f64>,
    kv_spare_trigger: Option<f64>,
    queue_spare_trigger: Option<f64>,
    min_replicas: Option<u32>,
    max_replicas: Option<u32>,
    behavior: Option<BehaviorSpec>,
    hpa_sync_period_s: Option<Seconds>,
    tolerance: Option<f64>,
}

/// The saturation thresholds and spare triggers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// A replica is saturated at KV usage >= this (0..1).
    pub kv: f64,
    /// A replica is saturated at this many waiting requests or more.
    pub queue: f64,
    /// Scale up when the mean spare KV of the non-saturated replicas is below this.
    pub kv_spare: f64,
    /// Scale up when their mean spare queue is below this.
    pub queue_spare: f64,
}

/// One replica's load: peak KV usage and peak waiting requests over the last minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaLoad {
    /// `max_over_time(vllm:kv_cache_usage_perc[1m])`.
    pub kv: f64,
    /// `max_over_time(vllm:num_requests_waiting[1m])`.
    pub queue: f64,
}

/// The analyzer's verdict over the replicas with metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Analysis {
    /// Replicas analysed.
    pub replicas: usize,
    /// Those not saturated.
    pub non_saturated: usize,
    /// Their mean spare KV (0 when none).
    pub spare_kv: f64,
    /// Their mean spare queue (0 when none).
    pub spare_queue: f64,
    /// A spare is below its trigger.
    pub scale_up: bool,
    /// Removing one replica keeps both spares at or above their triggers.
    pub scale_down_ok: bool,
}

impl Thresholds {
    fn saturated(&self, r: &ReplicaLoad) -> bool {
        r.kv >= self.kv || r.queue >= self.queue
    }

    /// The analysis of `loads`.
    pub fn analyze(&self, loads: &[ReplicaLoad]) -> Analysis {
        let (mut n, mut spare_kv_sum, mut spare_q_sum) = (0usize, 0.0, 0.0);
        for r in loads.iter().filter(|r| !self.saturated(r)) {
            n += 1;
            spare_kv_sum += self.kv - r.kv;
            spare_q_sum += self.queue - r.queue;
        }
        let (spare_kv, spare_queue) =
            if n > 0 { (spare_kv_sum / n as f64, spare_q_sum / n as f64) } else { (0.0, 0.0) };
        let scale_up = spare_kv < self.kv_spare || spare_queue < self.queue_spare;
        let scale_down_ok = n >= MIN_NON_SATURATED_FOR_SCALE_DOWN && {
            let spread = n as f64 / (n - 1) as f64;
            let kv_after = self.kv - (self.kv - spare_kv) * spread;
            let q_after = self.queue - (self.queue - spare_queue) * spread;
            kv_after >= self.kv_spare && q_after >= self.queue_spare
        };
        Analysis {
            replicas: loads.len(),
            non_saturated: n,
            spare_kv,
            spare_queue,
            scale_up,
            scale_down_ok,
        }
    }
}

/// WVA's target for one variant: `current` replicas of which `ready` are Ready, `desired` the
/// value emitted last (`None`: never), bounded by `(min, max)`.
pub fn target(
    a: &Analysis,
    current: u32,
    ready: u32,
    desired: Option<u32>,
    bounds: (u32, u32),
) -> u32 {
    let unapplied = desired.filter(|&d| d != 0 && d != current);
    let t = if let Some(d) = unapplied {
        d
    } else if current > ready {
        current // pods still starting
    } else if a.scale_up {
        current + 1
    } else if a.scale_down_ok && current > 1 {
        current - 1
    } else {
        current
    };
    t.clamp(bounds.0, bounds.1)
}

/// A WVA controller and the HPA applying its metric.
#[derive(Debug, Clone)]
pub struct Wva {
    pool: u16,
    thresholds: Thresholds,
    bounds: (u32, u32),
    hpa: HpaCore,
    queries: [MetricQuery; 2],
    analysis_period: SimDuration,
    sync_period: SimDuration,
    tick: SimDuration,
    next_analysis: SimTime,
    next_sync: SimTime,
    /// The last `wva_desired_replicas` emitted.
    desired: Option<u32>,
}

impl Wva {
    /// The replicas with metrics: Ready pods with both samples.
    fn loads(pods: &[PodView]) -> Vec<ReplicaLoad> {
        pods.iter()
            .filter(|p| p.phase == PodPhase::Ready)
            .filter_map(|p| Some(ReplicaLoad { kv: p.values[0]?, queue: p.values[1]? }))
            .collect()
    }

    /// One WVA cycle: the new `wva_desired_replicas` (unchanged without metrics).
    fn reconcile(&mut self, input: &ScaleInput<'_>) {
        let loads = Wva::loads(input.pods);
        if loads.is_empty() {
            return;
        }
        let a = self.thresholds.analyze(&loads);
        self.desired = Some(target(&a, input.current, input.ready(), self.desired, self.bounds));
    }

    /// The last value emitted.
    pub fn desired(&self) -> Option<u32> {
        self.desired
    }
}

impl Autoscaler for Wva {
    fn pool(&self) -> u16 {
        self.pool
    }
    fn interval(&self) -> SimDuration {
        self.tick
    }
    fn metrics(&self) -> &[MetricQuery] {
        &self.queries
    }
    fn decide(&mut self, input: &ScaleInput<'_>) -> u32 {
        let now = input.now;
        if now >= self.next_analysis {
            self.next_analysis = now + self.analysis_period;
            self.reconcile(input);
        }
        if now >= self.next_sync {
            self.next_sync = now + self.sync_period;
            if let Some(d) = self.desired {
                return self.hpa.sync(now, input.current, input.pods, &[f64::from(d)]);
            }
        }
        input.current
    }
    fn bounds(&self) -> (u32, u32) {
        self.bounds
    }
}

/// `v` in `(lo, hi]` (`lo_open`) or `[lo, hi]`, or a one-line error naming `key`.
fn in_range(key: &str, v: f64, lo: f64, hi: f64, lo_open: bool) -> Result<f64, String> {
    let above = if lo_open { v > lo } else { v >= lo };
    if v.is_finite() && above && v <= hi {
        return Ok(v);
    }
    let open = if lo_open { "(" } else { "[" };
    Err(format!("{key} = {v}: must be in {open}{lo}, {hi}]"))
}

/// The WVA chart's HPA behavior.
fn chart_behavior() -> Behavior {
    let rules = Rules {
        window: CHART_WINDOW,
        select: SelectPolicy::Max,
        policies: vec![CHART_POLICY],
        tolerance: None,
    };
    Behavior { scale_up: rules.clone(), scale_down: rules }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn configure(v: &serde_yaml_ng::Value, ctx: &AutoscaleCtx<'_>) -> Result<Wva, String> {
    let p: Params = parse_params(v)?;
    let name = p.pool.as_deref().ok_or("`wva` needs `pool`: the pool it scales")?;
    let pool = ctx.pool_index(name)?;
    let kv =
        in_range("kv_threshold", p.kv_threshold.unwrap_or(DEFAULT_KV_THRESHOLD), 0.0, 1.0, true)?;
    let queue = p.queue_threshold.unwrap_or(DEFAULT_QUEUE_THRESHOLD);
    let queue = in_range("queue_threshold", queue, 0.0, f64::MAX, true)?;
    let kv_spare = p.kv_spare_trigger.unwrap_or(DEFAULT_KV_SPARE_TRIGGER);
    let kv_spare = in_range("kv_spare_trigger", kv_spare, 0.0, kv, false)
        .map_err(|e| format!("{e} (kv_threshold)"))?;
    let queue_spare = p.queue_spare_trigger.unwrap_or(DEFAULT_QUEUE_SPARE_TRIGGER);
    let queue_spare = in_range("queue_spare_trigger", queue_spare, 0.0, queue, false)
        .map_err(|e| format!("{e} (queue_threshold)"))?;
    let min = p.min_replicas.unwrap_or(1);
    if min == 0 {
        return Err("min_replicas = 0: WVA's scale to zero is not simulated; use 1 or more".into());
    }
    let max = p.max_replicas.ok_or("`wva` needs `max_replicas` (the HPA's maxReplicas)")?;
    if max < min {
        return Err(format!("max_replicas = {max}: must be >= min_replicas ({min})"));
    }
    let interval = positive_or(p.interval_s, DEFAULT_INTERVAL, "interval_s", false)?;
    let sync = positive_or(p.hpa_sync_period_s, DEFAULT_SYNC_PERIOD, "hpa_sync_period_s", false)?;
    let behavior = match &p.behavior {
        Some(b) => b.resolve(DEFAULT_DOWNSCALE_WINDOW)?,
        None => chart_behavior(),
    };
    let latest_max = |metric| MetricQuery { metric, window: METRIC_WINDOW, max: true };
    let hpa = HpaConfig {
        min_replicas: min,
        max_replicas: max,
        // `wva_desired_replicas`, handed to the HPA directly (its query is not scraped).
        metrics: vec![MetricRule {
            source: Source::External,
            target: Target::AverageValue(DESIRED_TARGET_MILLI),
            query: latest_max(SimMetric::KvUsage),
        }],
        behavior: Some(behavior),
        sync_period: sync,
        tolerance: cluster_tolerance(p.tolerance)?,
        downscale_window: DEFAULT_DOWNSCALE_WINDOW,
    };
    hpa.validate()?;
    Ok(Wva {
        pool,
        thresholds: Thresholds { kv, queue, kv_spare, queue_spare },
        bounds: (min, max),
        hpa: HpaCore::new(hpa),
        queries: [latest_max(SimMetric::KvUsage), latest_max(SimMetric::Waiting)],
        analysis_period: interval,
        sync_period: sync,
        tick: SimDuration(gcd(interval.0, sync.0)),
        next_analysis: SimTime::ZERO,
        next_sync: SimTime::ZERO,
        desired: None,
    })
}

fn build(v: &serde_yaml_ng::Value, ctx: &AutoscaleCtx<'_>) -> Result<Box<dyn Autoscaler>, String> {
    Ok(Box::new(configure(v, ctx)?))
}

#[cfg(test)]
mod tests {
    use super::super::MAX_METRICS;
    use super::*;

    const T: Thresholds = Thresholds { kv: 0.8, queue: 5.0, kv_spare: 0.1, queue_spare: 3.0 };

    fn load(kv: f64, queue: f64) -> ReplicaLoad {
        ReplicaLoad { kv, queue }
    }

    fn secs(s: u64) -> SimTime {
        SimTime(s * crate::time::NANOS_PER_S)
    }

    fn pod(phase: PodPhase, kv: f64, queue: f64) -> PodView {
        let mut values = [None; MAX_METRICS];
        if phase == PodPhase::Ready {
            values[0] = Some(kv);
            values[1] = Some(queue);
        }
        PodView { phase, created: SimTime::ZERO, values }
    }

    fn wva(extra: &str) -> Wva {
        static POOLS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let pools = POOLS.get_or_init(|| vec!["p".to_string()]);
        let ctx = AutoscaleCtx::new(pools, &[2]);
        let v: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&format!("{{ pool: p, max_replicas: 20{extra} }}"))
                .expect("yaml");
        configure(&v, &ctx).expect("builds")
    }

    fn err(yaml: &str) -> String {
        let pools = vec!["p".to_string()];
        let ctx = AutoscaleCtx::new(&pools, &[2]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
        configure(&v, &ctx).expect_err("must be rejected")
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn spare_capacity_is_the_mean_headroom_of_the_non_saturated_replicas() {
        // KV 0.72 and 0.74: spare (0.08 + 0.06) / 2 = 0.07 < 0.10 → up.
        let a = T.analyze(&[load(0.72, 1.0), load(0.74, 0.0)]);
        assert!(close(a.spare_kv, 0.07) && close(a.spare_queue, 4.5));
        assert!(a.scale_up && !a.scale_down_ok);
        // Queues 2 and 3: spare (3 + 2) / 2 = 2.5 < 3 → up, though KV is low.
        let a = T.analyze(&[load(0.3, 2.0), load(0.3, 3.0)]);
        assert!(close(a.spare_queue, 2.5) && a.scale_up);
        // KV 0.4, queue 1 on two replicas: spares 0.4 and 4 → no scale-up; one replica left
        // would carry 0.8 KV (spare 0 < 0.1) → no scale-down either.
        let a = T.analyze(&[load(0.4, 1.0), load(0.4, 1.0)]);
        assert!(!a.scale_up && !a.scale_down_ok);
    }

    #[test]
    fn saturated_replicas_give_no_headroom() {
        // KV 0.85 (saturated by KV) and queue 6 (saturated by queue) are left out; the one
        // non-saturated replica (0.4, 1) has spares 0.4 and 4: no scale-up, and a single
        // non-saturated replica never allows a scale-down.
        let a = T.analyze(&[load(0.85, 0.0), load(0.3, 6.0), load(0.4, 1.0)]);
        assert_eq!((a.replicas, a.non_saturated), (3, 1));
        assert!(close(a.spare_kv, 0.4) && close(a.spare_queue, 4.0));
        assert!(!a.scale_up && !a.scale_down_ok);
        // The thresholds are inclusive: KV exactly 0.8 or queue exactly 5 is saturated.
        let a = T.analyze(&[load(0.8, 0.0), load(0.1, 5.0)]);
        assert_eq!(a.non_saturated, 0);
        // All saturated: both spares are 0, below the triggers → scale up.
        assert!(a.spare_kv == 0.0 && a.spare_queue == 0.0 && a.scale_up && !a.scale_down_ok);
    }

    #[test]
    fn scale_down_needs_headroom_after_spreading_the_load_over_one_replica_less() {
        // KV 0.2, 0.3, 0.25 (mean 0.25), queues 1: on two replicas the mean load is 0.375 KV
        // (spare 0.425) and 1.5 waiting (spare 3.5): both >= triggers → safe.
        let a = T.analyze(&[load(0.2, 1.0), load(0.3, 1.0), load(0.25, 1.0)]);
        assert!(a.scale_down_ok && !a.scale_up);
        // Queues 1, 2, 2 (mean 5/3): on two replicas 2.5 waiting, spare 2.5 < 3 → unsafe.
        let a = T.analyze(&[load(0.2, 1.0), load(0.3, 2.0), load(0.25, 2.0)]);
        assert!(!a.scale_down_ok && !a.scale_up);
        // KV 0.5 × 4 (queues 0): on three replicas 0.667, spare 0.133 >= 0.1 → safe; KV
        // 0.55 × 4 → 0.733, spare 0.067 → unsafe.
        assert!(T.analyze(&[load(0.5, 0.0); 4]).scale_down_ok);
        assert!(!T.analyze(&[load(0.55, 0.0); 4]).scale_down_ok);
    }

    #[test]
    fn scale_up_and_scale_down_never_hold_together() {
        // A grid of 3-replica loads: a safe removal implies the spares were above the triggers.
        let steps = [0.0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9];
        let queues = [0.0, 1.0, 2.0, 4.0, 6.0];
        let mut safe = 0;
        for &k1 in &steps {
            for &k2 in &steps {
                for &q1 in &queues {
                    for &q2 in &queues {
                        let a = T.analyze(&[load(k1, q1), load(k2, q2), load(0.1, 0.0)]);
                        assert!(!(a.scale_up && a.scale_down_ok), "{k1} {k2} {q1} {q2}");
                        safe += usize::from(a.scale_down_ok);
                    }
                }
            }
        }
        assert!(safe > 0, "the grid must contain safe scale-downs");
    }

    #[test]
    fn target_steps_by_one_and_holds_while_a_change_is_in_flight() {
        let up = T.analyze(&[load(0.79, 0.0); 3]);
        let down = T.analyze(&[load(0.1, 0.0); 3]);
        let calm = T.analyze(&[load(0.5, 1.0); 3]);
        let b = (1, 10);
        assert_eq!(target(&up, 3, 3, None, b), 4);
        assert_eq!(target(&down, 3, 3, Some(3), b), 2);
        assert_eq!(target(&calm, 3, 3, Some(3), b), 3);
        // A previous desired value not reached yet is kept, whatever the analysis says.
        assert_eq!(target(&down, 3, 3, Some(5), b), 5);
        // Pods starting (4 asked for, 3 Ready): hold the current count.
        assert_eq!(target(&up, 4, 3, Some(4), b), 4);
        // Never below one replica by WVA itself, and the VA bounds clamp.
        let one = T.analyze(&[load(0.0, 0.0)]);
        assert_eq!(target(&one, 1, 1, None, b), 1);
        assert_eq!(target(&up, 10, 10, None, b), 10);
        assert_eq!(target(&down, 3, 3, None, (3, 10)), 3);
    }

    #[test]
    fn the_chart_hpa_delays_each_step_by_its_240_s_scale_up_window() {
        // Two Ready pods near KV saturation: WVA emits 3 at the first tick (t = 15 s). The HPA
        // recorded 2 at its first sync, and the scale-up window keeps the minimum of the last
        // 240 s: 2 until the t = 15 entry is out of the window (at t = 255, 15 > 255 − 240 is
        // false), then 3.
        let mut w = wva("");
        assert_eq!(w.interval(), SimDuration::from_secs(15));
        let pods = [pod(PodPhase::Ready, 0.78, 0.0), pod(PodPhase::Ready, 0.78, 0.0)];
        for t in (15..=240).step_by(15) {
            let got = w.decide(&ScaleInput::new(secs(t), 2, &pods));
            assert_eq!(got, 2, "t={t}");
            assert_eq!(w.desired(), Some(3), "WVA re-emits its unapplied value, t={t}");
        }
        assert_eq!(w.decide(&ScaleInput::new(secs(255), 2, &pods)), 3);
        // Without a stabilization window the HPA follows at its first sync.
        let mut w = wva(", behavior: { scaleUp: { stabilizationWindowSeconds: 0 } }");
        assert_eq!(w.decide(&ScaleInput::new(secs(15), 2, &pods)), 3);
    }

    #[test]
    fn from_ten_replicas_the_hpa_tolerance_swallows_a_one_replica_step() {
        // 10 saturated replicas: WVA emits 11, the HPA sees 11 / (1 × 10) = 1.1, inside the
        // 10 % band → keeps 10; WVA stays in transition (desired 11 ≠ current 10) for good.
        let pods = [pod(PodPhase::Ready, 0.9, 0.0); 10];
        let behavior = ", behavior: { scaleUp: { stabilizationWindowSeconds: 0 } }";
        let mut w = wva(behavior);
        for t in (15..=600).step_by(15) {
            assert_eq!(w.decide(&ScaleInput::new(secs(t), 10, &pods)), 10, "t={t}");
        }
        assert_eq!(w.desired(), Some(11));
        // Paired: the same with a zero scale-up tolerance (KEP-4951) scales to 11 at once.
        let mut w = wva(", behavior: { scaleUp: { stabilizationWindowSeconds: 0, tolerance: 0 } }");
        assert_eq!(w.decide(&ScaleInput::new(secs(15), 10, &pods)), 11);
        // And at 4 replicas the step (5 / 4 = 1.25) is outside the band anyway.
        let mut w = wva(behavior);
        assert_eq!(w.decide(&ScaleInput::new(secs(15), 4, &pods[..4])), 5);
    }

    #[test]
    fn no_metrics_emit_nothing_first_then_the_previous_value() {
        let mut w = wva(", behavior: { scaleUp: { stabilizationWindowSeconds: 0 } }");
        // Only Starting pods: no replica with metrics → no metric → the pool is left alone.
        let starting = [pod(PodPhase::Starting, 0.0, 0.0); 2];
        assert_eq!(w.decide(&ScaleInput::new(secs(15), 2, &starting)), 2);
        assert_eq!(w.desired(), None);
        // Pending and Deleting pods have no metrics either; the Ready one is saturated: 3
        // pods asked for, 1 Ready → pending → hold 3.
        let pods = [
            pod(PodPhase::Ready, 0.9, 0.0),
            pod(PodPhase::Pending, 0.0, 0.0),
            pod(PodPhase::Starting, 0.0, 0.0),
            pod(PodPhase::Deleting, 0.0, 0.0),
        ];
        assert_eq!(w.decide(&ScaleInput::new(secs(75), 3, &pods)), 3);
        assert_eq!(w.desired(), Some(3));
        // The next cycle sees no Ready pod at all: the previous 3 is emitted again.
        assert_eq!(w.decide(&ScaleInput::new(secs(135), 3, &starting)), 3);
        assert_eq!(w.desired(), Some(3));
    }

    #[test]
    fn analysis_runs_every_interval_and_the_hpa_every_sync() {
        // interval 60 s, HPA 15 s: ticks every 15 s; WVA decides at 15, 75, 135 s only.
        let mut w = wva(", behavior: { scaleUp: { stabilizationWindowSeconds: 0 } }");
        let hot = |n: usize| vec![pod(PodPhase::Ready, 0.79, 0.0); n];
        assert_eq!(w.decide(&ScaleInput::new(secs(15), 2, &hot(2))), 3);
        // t = 30..60: no new analysis, the HPA re-applies 3 (pods of 3 still "hot").
        for t in [30, 45, 60] {
            assert_eq!(w.decide(&ScaleInput::new(secs(t), 3, &hot(3))), 3, "t={t}");
        }
        assert_eq!(w.decide(&ScaleInput::new(secs(75), 3, &hot(3))), 4);
        // interval_s 45 with the HPA at 20 s: the engine ticks at gcd(45, 20) = 5 s.
        assert_eq!(
            wva(", interval_s: 45, hpa_sync_period_s: 20").interval(),
            SimDuration::from_secs(5)
        );
    }

    #[test]
    fn reads_peak_kv_and_queue_over_one_minute() {
        let w = wva("");
        let q = w.metrics();
        assert_eq!(q.len(), 2);
        assert_eq!((q[0].metric, q[1].metric), (SimMetric::KvUsage, SimMetric::Waiting));
        assert!(q.iter().all(|q| q.max && q.window == SimDuration::from_secs(60)));
        assert_eq!(w.bounds(), (1, 20));
    }

    #[test]
    fn config_errors_are_one_line_and_name_the_field() {
        let cases = [
            ("{ max_replicas: 4 }", "pool"),
            ("{ pool: q, max_replicas: 4 }", "q"),
            ("{ pool: p }", "max_replicas"),
            ("{ pool: p, max_replicas: 4, min_replicas: 5 }", "max_replicas"),
            ("{ pool: p, max_replicas: 4, min_replicas: 0 }", "min_replicas"),
            ("{ pool: p, max_replicas: 4, kv_threshold: 1.2 }", "kv_threshold"),
            (
                "{ pool: p, max_replicas: 4, kv_threshold: 0.5, kv_spare_trigger: 0.6 }",
                "kv_spare_trigger",
            ),
            ("{ pool: p, max_replicas: 4, queue_threshold: 0 }", "queue_threshold"),
            ("{ pool: p, max_replicas: 4, queue_spare_trigger: -1 }", "queue_spare_trigger"),
            ("{ pool: p, max_replicas: 4, interval_s: 0 }", "interval_s"),
            ("{ pool: p, max_replicas: 4, kv_treshold: 0.7 }", "kv_treshold"),
            ("{ pool: p, max_replicas: 4, behavior: { scaleUp: { policies: [] } } }", "policies"),
        ];
        for (yaml, field) in cases {
            let e = err(yaml);
            assert!(e.contains(field), "{yaml}: {e}");
            assert!(!e.contains('\n'), "{yaml}: {e}");
        }
    }

    #[test]
    fn registry_entry_builds() {
        let pools = vec!["p".to_string()];
        let ctx = AutoscaleCtx::new(&pools, &[1]);
        let v: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("{ pool: p, max_replicas: 3 }").expect("yaml");
        let a = (ENTRY.build)(&v, &ctx).expect("builds");
        assert_eq!(a.bounds(), (1, 3));
        assert!(!a.is_fixed());
    }
}
