//! Autoscalers behind one registry, like the routers.
//!
//! An autoscaler owns one target pool (a Deployment). Every [`Autoscaler::interval`] the
//! engine gives it a [`ScaleInput`]: the pool's `spec.replicas` (`current`), and one
//! [`PodView`] per pod that exists (provisioning, loading, ready, draining, crashed) with
//! the metric values the autoscaler asked for, *as scraped and windowed* — the autoscaler
//! never reads live engine state. It answers the new `spec.replicas`; the engine then starts
//! pods (provisioning → image pull → model load → ready) or drains the newest ones (as a
//! ReplicaSet picks its scale-down victims).
//!
//! Adding an autoscaler is one file in this folder plus one line in [`AUTOSCALERS`]
//! (alphabetical). The registry drives `routelab list autoscalers`, scenario validation and
//! `autoscalers: all`.

pub mod fixed;
pub mod hpa;
pub mod keda;
pub mod kpa;
pub mod manifest;
pub mod planner;
pub mod predictive;
pub mod scheduled;
pub mod wva;

use crate::time::{SimDuration, SimTime};
use serde::Deserialize;

/// A metric an autoscaler can read, by its real exporter name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimMetric {
    /// `vllm:num_requests_waiting`: requests queued on the replica (not yet scheduled).
    Waiting,
    /// `vllm:num_requests_running`: requests in the running batch (in service).
    Running,
    /// `vllm:kv_cache_usage_perc`: KV blocks in use / capacity, 0..1.
    KvUsage,
    /// `DCGM_FI_DEV_GPU_UTIL`: percentage of the interval the replica was busy, 0..100.
    GpuUtil,
    /// Requests in flight on the replica (waiting + running): Knative's concurrency.
    Concurrency,
    /// Requests per second arriving at the replica (`rate(vllm:request_success_total)`-like).
    RequestRate,
    /// CPU utilisation in percent of the request (a busy fraction proxy), for `Resource cpu`.
    Cpu,
}

impl SimMetric {
    /// Every metric with the names accepted for it (first: canonical).
    pub const ALL: &'static [(SimMetric, &'static [&'static str])] = &[
        (SimMetric::Waiting, &["vllm:num_requests_waiting", "vllm_num_requests_waiting"]),
        (SimMetric::Running, &["vllm:num_requests_running", "vllm_num_requests_running"]),
        (
            SimMetric::KvUsage,
            &["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm_kv_cache_usage_perc"],
        ),
        (SimMetric::GpuUtil, &["DCGM_FI_DEV_GPU_UTIL", "gpu_util"]),
        (SimMetric::Concurrency, &["concurrency"]),
        (SimMetric::RequestRate, &["request_rate", "rps"]),
        (SimMetric::Cpu, &["cpu"]),
    ];

    /// The metric called `name` (exact).
    pub fn from_name(name: &str) -> Option<SimMetric> {
        SimMetric::ALL.iter().find(|(_, ns)| ns.contains(&name)).map(|(m, _)| *m)
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        SimMetric::ALL.iter().find(|(m, _)| *m == self).map_or("?", |(_, ns)| ns[0])
    }

    /// Whether requests held by an activator count in this metric's pool total: they wait
    /// (the KEDA HTTP add-on interceptor's pending queue, Knative's activator concurrency).
    pub fn counts_held(self) -> bool {
        matches!(self, SimMetric::Waiting | SimMetric::Concurrency)
    }

    /// The supported names, for error messages.
    pub fn supported() -> String {
        SimMetric::ALL.iter().map(|(_, ns)| ns[0]).collect::<Vec<_>>().join(", ")
    }
}

/// What Kubernetes would say about a pod of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodPhase {
    /// Not running yet: node provisioning, scheduling, image pull (`Pending`).
    Pending,
    /// Running but not Ready: loading model weights, or restarting after a crash. Exports no
    /// vLLM metrics yet, so its samples are missing.
    Starting,
    /// Running and Ready.
    Ready,
    /// Being deleted (draining after scale-down): ignored by the HPA.
    Deleting,
    /// Crashed (container failed, not yet restarting).
    Failed,
}

/// One pod of the target pool as the autoscaler sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodView {
    /// Its phase.
    pub phase: PodPhase,
    /// When it was created (scale-up time).
    pub created: SimTime,
    /// The scraped, windowed value of each metric the autoscaler asked for
    /// ([`Autoscaler::metrics`], same order); `None`: no sample (missing).
    pub values: [Option<f64>; MAX_METRICS],
}

/// The longest an activator holds a request by default: Knative's default revision timeout
/// (`revision-timeout-seconds: "300"`).
pub const DEFAULT_HOLD_TIMEOUT: SimDuration = SimDuration::from_secs(300);

/// Most metrics one autoscaler reads.
pub const MAX_METRICS: usize = 4;

/// What an autoscaler decides from.
#[derive(Debug, Clone, Copy)]
pub struct ScaleInput<'a> {
    /// Now.
    pub now: SimTime,
    /// The pool's `spec.replicas` (pods asked for, ready or not; draining ones excluded).
    pub current: u32,
    /// Every existing pod of the pool, oldest first.
    pub pods: &'a [PodView],
    /// Pool-level signals the gateway sees (not per pod).
    pub pool: PoolSignals,
}

/// What the gateway in front of the pool measured since the previous decision: the signals
/// a forecaster or an SLA planner reads (Dynamo's planner reads the frontend's request rate
/// and TTFT/ITL; a Knative activator reports the requests it holds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PoolSignals {
    /// Requests held at the gateway now because the pool has no ready pod (the activator's
    /// buffer; 0 without one). The demand that scales a pool up from zero.
    pub held: u32,
    /// Requests for the pool's model(s) arriving at the gateway per second since the
    /// previous decision (all of them: routed, held or refused).
    pub arrival_rate_per_s: f64,
    /// Requests of the pool's models that ended with an answer on one of its replicas since
    /// the previous decision.
    pub completed: u32,
    /// Mean and 95th percentile of their time to first token (s); `None`: none finished.
    pub ttft_mean_s: Option<f64>,
    /// 95th percentile TTFT (s).
    pub ttft_p95_s: Option<f64>,
    /// Mean time per output token of those with at least two tokens (s).
    pub tpot_mean_s: Option<f64>,
    /// Seconds since the previous decision (the interval the rates cover).
    pub interval_s: f64,
}

impl<'a> ScaleInput<'a> {
    /// An input with no pool-level signals.
    pub fn new(now: SimTime, current: u32, pods: &'a [PodView]) -> ScaleInput<'a> {
        ScaleInput { now, current, pods, pool: PoolSignals::default() }
    }

    /// The same with pool signals `pool`.
    pub fn with_pool(self, pool: PoolSignals) -> ScaleInput<'a> {
        ScaleInput { pool, ..self }
    }
}

impl ScaleInput<'_> {
    /// Pods Ready now.
    pub fn ready(&self) -> u32 {
        self.pods.iter().filter(|p| p.phase == PodPhase::Ready).count() as u32
    }
}

/// How a metric is windowed before the autoscaler reads it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricQuery {
    /// The metric.
    pub metric: SimMetric,
    /// `avg_over_time` range (0: the latest scrape).
    pub window: SimDuration,
    /// Reduce the range with the maximum instead of the mean (`max_over_time`).
    pub max: bool,
}

/// A built autoscaler, one per run.
pub trait Autoscaler: Send {
    /// The pool it scales (pool index in the scenario).
    fn pool(&self) -> u16;
    /// Time between decisions (HPA sync period, KEDA polling interval, KPA tick).
    fn interval(&self) -> SimDuration;
    /// The metrics it reads, in the order of [`PodView::values`] (at most [`MAX_METRICS`]).
    fn metrics(&self) -> &[MetricQuery];
    /// The new `spec.replicas`.
    fn decide(&mut self, input: &ScaleInput<'_>) -> u32;
    /// Bounds of `spec.replicas` (min, max), for pre-allocating the pool.
    fn bounds(&self) -> (u32, u32);
    /// How often the pods' metrics are scraped (Prometheus' `scrape_interval`, 15 s).
    fn scrape_interval(&self) -> SimDuration {
        SimDuration::from_secs(15)
    }
    /// Whether an activator holds the pool's requests while it has no ready pod (Knative's
    /// activator is always in the path of a revision at zero). A scenario entry's
    /// `activator:` overrides it.
    fn holds_requests(&self) -> bool {
        false
    }
    /// Whether it never changes anything (`fixed`): the engine schedules no ticks.
    /// The pool's `spec.replicas` at time 0 when the autoscaler sets it (`fixed` with
    /// `replicas:`); `None`: the pool's own `replicas`.
    fn start_replicas(&self) -> Option<u32> {
        None
    }
    /// Whether this is `fixed` without a pool (no pool is scaled, no ticks).
    fn is_fixed(&self) -> bool {
        false
    }
}

/// What an autoscaler is built from.
#[derive(Debug, Clone, Copy)]
pub struct AutoscaleCtx<'a> {
    /// Pool names, in scenario order (for `pool:` / `scaleTargetRef.name`).
    pub pools: &'a [String],
    /// Initial replicas of each pool.
    pub initial: &'a [u32],
    /// Mean time from a scale-up decision to a Ready pod, per pool (provisioning + image
    /// pull + model load); empty: unknown (zero).
    pub startup: &'a [SimDuration],
    /// Price of one replica-hour of each pool in $ (GPUs × per-GPU-hour price); empty: 0.
    pub replica_hour_usd: &'a [f64],
}

impl<'a> AutoscaleCtx<'a> {
    /// A context of pools `pools` with initial sizes `initial`, startup and prices unknown.
    pub fn new(pools: &'a [String], initial: &'a [u32]) -> AutoscaleCtx<'a> {
        AutoscaleCtx { pools, initial, startup: &[], replica_hour_usd: &[] }
    }

    /// Mean startup of pool `p` (zero when unknown).
    pub fn startup_of(&self, p: u16) -> SimDuration {
        self.startup.get(p as usize).copied().unwrap_or(SimDuration::ZERO)
    }
}

impl AutoscaleCtx<'_> {
    /// The index of pool `name`, or a one-line error naming the pools.
    pub fn pool_index(&self, name: &str) -> Result<u16, String> {
        self.pools
            .iter()
            .position(|p| p == name)
            .map(|i| i as u16)
            .ok_or_else(|| format!("no pool named `{name}`: pools are {}", self.pools.join(", ")))
    }
}

/// Builds an autoscaler from its YAML parameters; `Err` is a one-line reason.
pub type BuildFn =
    fn(&serde_yaml_ng::Value, &AutoscaleCtx<'_>) -> Result<Box<dyn Autoscaler>, String>;

/// A registered autoscaler.
#[derive(Debug, Clone, Copy)]
pub struct AutoscalerEntry {
    /// Name used in scenarios.
    pub name: &'static str,
    /// One line for `routelab list autoscalers`.
    pub summary: &'static str,
    /// Constructor.
    pub build: BuildFn,
}

/// Every autoscaler, alphabetical.
pub static AUTOSCALERS: &[&AutoscalerEntry] = &[
    &fixed::ENTRY,
    &hpa::ENTRY,
    &keda::ENTRY,
    &kpa::ENTRY,
    &planner::ENTRY,
    &predictive::ENTRY,
    &scheduled::ENTRY,
    &wva::ENTRY,
];

/// The entry called `name`.
pub fn find(name: &str) -> Option<&'static AutoscalerEntry> {
    AUTOSCALERS.iter().copied().find(|e| e.name == name)
}

/// Comma-separated registered names, for error messages.
pub fn names() -> String {
    AUTOSCALERS.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
}

/// Parses an autoscaler's parameter mapping (`null`: all defaults) into `T`.
pub fn parse_params<T: serde::de::DeserializeOwned + Default>(
    v: &serde_yaml_ng::Value,
) -> Result<T, String> {
    if v.is_null() {
        return Ok(T::default());
    }
    serde_yaml_ng::from_value(v.clone()).map_err(|e| e.to_string())
}

/// A duration in seconds as written in specs.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Seconds(pub f64);

impl Seconds {
    /// As a simulated duration.
    pub fn dur(self) -> SimDuration {
        SimDuration::from_secs_f64(self.0.max(0.0))
    }
}
