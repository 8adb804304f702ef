//! The scenario file as written: serde structs that mirror the YAML exactly.
//!
//! Every struct denies unknown keys, so a typo is an error naming the key and the valid ones.
//! Units are in the key names (`_s`, `_per_s`, `_tokens`). Nothing here is checked beyond its
//! type; `validate.rs` turns a [`RawScenario`] into a checked `Scenario`. This is the only
//! file that knows the YAML shape, so the schema documented in the README lives here.

use crate::cluster::catalog::{Dtype, GpuSpec, ModelSpec};
use serde::Deserialize;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    /// Short identifier used in result rows.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Scenario seed; replication `r` runs with `run_seed = mix(seed, r)`.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Independent replications per policy (common random numbers across policies).
    #[serde(default)]
    pub replications: Option<u32>,
    /// When arrivals stop.
    pub horizon: RawHorizon,
    /// Which requests are excluded from statistics.
    #[serde(default)]
    pub warmup: Option<RawWarmup>,
    /// Request classes, superposed.
    pub workload: Vec<RawClass>,
    /// Replica pools.
    pub cluster: RawCluster,
    /// Routing policies to compare: names or `{ name, label, ...params }` mappings; `all` (alone
    /// or as a list entry) stands for every registered policy with default parameters.
    #[serde(deserialize_with = "one_or_many")]
    pub policies: Vec<serde_yaml_ng::Value>,
    /// Autoscalers to compare: names, `{ name, label, ...params }` mappings or
    /// `{ manifest: FILE }` (default: `fixed`).
    #[serde(default)]
    pub autoscalers: Option<Vec<serde_yaml_ng::Value>>,
    /// Safety limits.
    #[serde(default)]
    pub limits: Option<RawLimits>,
    /// Per-run time series sampling (queue depth, in flight, completions).
    #[serde(default)]
    pub timeseries: Option<RawTimeseries>,
    /// Gateway instances and how fresh their view of the replicas is.
    #[serde(default)]
    pub gateway: Option<RawGateway>,
    /// Parameter sweep: dotted keys to lists of values (see `scenario::sweep`).
    #[serde(default)]
    pub sweep: Option<serde_yaml_ng::Value>,
    /// Policy-quality checks evaluated per cell (see `report::check`).
    #[serde(default)]
    pub checks: Option<Vec<String>>,
    /// Custom GPUs added to the built-in catalog (the columns of `data/gpus.csv`).
    #[serde(default)]
    pub gpus: Option<Vec<GpuSpec>>,
    /// Custom models added to the built-in catalog (the columns of `data/models.csv`).
    #[serde(default)]
    pub models: Option<Vec<ModelSpec>>,
    /// Failures to inject (see `spec::faults`).
    #[serde(default)]
    pub faults: Option<Vec<RawFault>>,
}

/// One `faults:` entry. Which keys apply depends on `kind`; validation refuses the others.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    /// `crash`, `slowdown`, `errors`, `hang` or `partition`.
    pub kind: String,
    /// Target replicas by name (`<pool>-<index>`).
    #[serde(default)]
    pub replicas: Option<Vec<String>>,
    /// Target pool (all its replicas, or `count` / `fraction` of them picked per run).
    #[serde(default)]
    pub pool: Option<String>,
    /// How many replicas of `pool`.
    #[serde(default)]
    pub count: Option<u32>,
    /// Which share of `pool`'s replicas (rounded up).
    #[serde(default)]
    pub fraction: Option<f64>,
    /// Scheduled start.
    #[serde(default)]
    pub at_s: Option<f64>,
    /// Scheduled length.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// Random faults: time between faults (a number is the mean of an exponential).
    #[serde(default)]
    pub mtbf_s: Option<serde_yaml_ng::Value>,
    /// Random faults: fault length (a number is the mean of an exponential).
    #[serde(default)]
    pub mttr_s: Option<serde_yaml_ng::Value>,
    /// `crash`: process restart time before the model load (default 0).
    #[serde(default)]
    pub restart_s: Option<f64>,
    /// `slowdown`: time factor (>= 1).
    #[serde(default)]
    pub factor: Option<f64>,
    /// `slowdown`: factor at the end of the window (linear ramp).
    #[serde(default)]
    pub ramp_to: Option<f64>,
    /// `errors`: share of requests failed (default 1).
    #[serde(default)]
    pub probability: Option<f64>,
    /// `errors`: status returned (default 503).
    #[serde(default)]
    pub status: Option<u16>,
    /// `errors`: time until the error response (default 5 ms).
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// `partition`: gateway instances cut off (default: all).
    #[serde(default)]
    pub gateways: Option<Vec<u16>>,
}

/// Accepts a single value or a list of values.
fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<serde_yaml_ng::Value>, D::Error> {
    match serde_yaml_ng::Value::deserialize(d)? {
        serde_yaml_ng::Value::Sequence(v) => Ok(v),
        other => Ok(vec![other]),
    }
}

/// `horizon:` — at least one of `max_requests` and `duration_s`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHorizon {
    /// Stop arrivals after this many requests (all classes together).
    #[serde(default)]
    pub max_requests: Option<u64>,
    /// Stop arrivals at this simulated time.
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// After arrivals stop, wait at most this long for in-flight requests (unbounded if unset).
    #[serde(default)]
    pub drain_s: Option<f64>,
}

/// `warmup:` — requests arriving before this are simulated but not measured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWarmup {
    /// The first N arrivals are warm-up.
    #[serde(default)]
    pub requests: Option<u64>,
    /// Arrivals before this simulated time are warm-up.
    #[serde(default)]
    pub duration_s: Option<f64>,
}

/// `timeseries:` — sample cluster state every `interval_s` into `timeseries.csv`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeseries {
    /// Sampling interval.
    pub interval_s: f64,
}

/// `gateway:` — gateway instances in front of the cluster and the staleness of their signals.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// Independent gateway instances (default 1).
    #[serde(default)]
    pub replicas: Option<u32>,
    /// How requests pick an instance: `random` (default) or `round_robin`.
    #[serde(default)]
    pub spread: Option<RawSpread>,
    /// Scrape period of replica metrics in ms (default 0 = live).
    #[serde(default)]
    pub metrics_refresh_ms: Option<f64>,
    /// Delay of KV events reaching cache indexes, in ms (default 0).
    #[serde(default)]
    pub kv_event_delay_ms: Option<f64>,
    /// Time a connection to an unreachable replica takes to fail, ms (default 5000).
    #[serde(default)]
    pub connect_timeout_ms: Option<f64>,
    /// Health mechanisms (a mapping; `false` turns every one off).
    #[serde(default)]
    pub health: Option<serde_yaml_ng::Value>,
    /// Admission control (a mapping; `false` turns every step off).
    #[serde(default)]
    pub admission: Option<serde_yaml_ng::Value>,
    /// The route's retry policy for every class (`false`: none).
    #[serde(default)]
    pub retries: Option<serde_yaml_ng::Value>,
}

/// `gateway.spread`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawSpread {
    /// Uniformly at random.
    Random,
    /// In turn.
    RoundRobin,
}

/// `limits:` — bounds that end a runaway run with an error instead of a hang.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Maximum events processed in one run.
    #[serde(default)]
    pub max_events: Option<u64>,
    /// Maximum requests in flight at once.
    #[serde(default)]
    pub max_in_flight: Option<u64>,
}

/// One workload class.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClass {
    /// Class name.
    pub class: String,
    /// Arrival process (of sessions, with `session`); required unless `trace` is given.
    #[serde(default)]
    pub arrival: Option<RawArrival>,
    /// Service time in seconds on a `queue` replica (a pool's own `service_s` overrides it).
    #[serde(default)]
    pub service_s: Option<RawDist>,
    /// Prompt length in tokens (of each new user message, with `session`).
    #[serde(default)]
    pub prompt_tokens: Option<RawDist>,
    /// Output length in tokens.
    #[serde(default)]
    pub output_tokens: Option<RawDist>,
    /// Requests not finished this long after arrival are withdrawn and counted as timed out.
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// Model the requests ask for (`llm` clusters; default: the only model served).
    #[serde(default)]
    pub model: Option<String>,
    /// Cap on output tokens (the request's `max_tokens`).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Shared system prompts.
    #[serde(default)]
    pub prefix: Option<RawPrefix>,
    /// Closed-loop multi-turn sessions.
    #[serde(default)]
    pub session: Option<RawSession>,
    /// Tenant label (default: the class name).
    #[serde(default)]
    pub tenant: Option<String>,
    /// Scheduling priority on replicas with `scheduling_policy: priority` (lower is served
    /// first; default 0), as vLLM's request `priority`.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Latency objectives for goodput.
    #[serde(default)]
    pub slo: Option<RawSlo>,
    /// Replay a request trace instead of `arrival`, `prompt_tokens` and `output_tokens`.
    #[serde(default)]
    pub trace: Option<RawTrace>,
    /// The client gives up when no first token came this long after arrival.
    #[serde(default)]
    pub ttft_timeout_s: Option<f64>,
    /// The client's retry policy.
    #[serde(default)]
    pub retries: Option<serde_yaml_ng::Value>,
    /// Tier at the gateway: `{ name, priority }` (priority < 0: sheddable).
    #[serde(default)]
    pub tier: Option<RawTier>,
}

/// `tier:` of a class.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    /// Name (default `standard`).
    #[serde(default)]
    pub name: Option<String>,
    /// Priority: higher is served first from a gateway queue; below 0 is sheddable.
    #[serde(default)]
    pub priority: Option<i32>,
}

/// `prefix:` — shared system prompts picked with Zipf popularity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrefix {
    /// Number of distinct shared prefixes.
    pub groups: u32,
    /// Tokens of each shared prefix.
    pub group_tokens: u32,
    /// Zipf exponent of group popularity (default 1.0; 0 = uniform).
    #[serde(default)]
    pub popularity_zipf_s: Option<f64>,
}

/// `session:` — each arrival starts a multi-turn conversation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    /// Turns per session.
    pub turns: RawDist,
    /// Think time between an answer and the next turn.
    pub think_time_s: RawDist,
    /// A turn whose prompt would exceed this ends the session (default: the smallest
    /// `max_model_len` of the pools serving the class's model).
    #[serde(default)]
    pub max_context_tokens: Option<u32>,
    /// Whether each turn resends the conversation so far (default true); `false` makes the
    /// session a closed-loop client sending independent requests.
    #[serde(default)]
    pub history: Option<bool>,
}

/// `slo:` — latency objectives; a completed request meets its SLO when all given hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlo {
    /// Time to first token.
    #[serde(default)]
    pub ttft_ms: Option<f64>,
    /// Mean time per output token after the first.
    #[serde(default)]
    pub tpot_ms: Option<f64>,
}

/// `trace:` — replay a trace file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrace {
    /// The file; a relative path is relative to the scenario file's directory.
    pub path: String,
    /// File format.
    pub format: RawTraceFormat,
    /// Speed-up factor (default 1; 2 replays twice as fast).
    #[serde(default)]
    pub time_scale: Option<f64>,
    /// Start of the replayed window on the trace's clock (default 0).
    #[serde(default)]
    pub start_s: Option<f64>,
    /// Length of the replayed window on the trace's clock (default: to the end).
    #[serde(default)]
    pub duration_s: Option<f64>,
}

/// Trace file formats.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawTraceFormat {
    /// Azure LLM inference 2023 CSV.
    Azure,
    /// Mooncake FAST'25 JSONL.
    Mooncake,
}

/// `arrival:` — tagged by `process`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "process", rename_all = "snake_case")]
pub enum RawArrival {
    /// Poisson process.
    Poisson(RawPoisson),
    /// Renewal process with gamma inter-arrival times.
    Gamma(RawGamma),
    /// Alternating on and off periods, Poisson within each.
    Onoff(RawOnOff),
    /// Sinusoidal rate (non-homogeneous Poisson).
    Diurnal(RawDiurnal),
    /// Piecewise-constant rate (non-homogeneous Poisson).
    Step(RawStep),
}

/// `process: poisson`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoisson {
    /// Mean arrival rate.
    pub rate_per_s: f64,
}

/// `process: gamma`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGamma {
    /// Mean arrival rate.
    pub rate_per_s: f64,
    /// Coefficient of variation of inter-arrival times (1 = Poisson, 0 = deterministic).
    pub cv: f64,
}

/// `process: onoff`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnOff {
    /// Mean (or fixed) length of an on period.
    pub on_s: f64,
    /// Mean (or fixed) length of an off period.
    pub off_s: f64,
    /// Poisson rate while on.
    pub on_rate_per_s: f64,
    /// Poisson rate while off (default 0).
    #[serde(default)]
    pub off_rate_per_s: Option<f64>,
    /// `exponential` (default; a two-state MMPP) or `fixed` period lengths.
    #[serde(default)]
    pub durations: Option<RawDurations>,
}

/// How on/off period lengths are drawn.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawDurations {
    /// Exponentially distributed with the given mean.
    Exponential,
    /// Exactly the given length.
    Fixed,
}

/// `process: diurnal`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiurnal {
    /// Time-average rate.
    pub mean_rate_per_s: f64,
    /// Ratio of the peak rate to the trough rate (>= 1).
    pub peak_to_trough: f64,
    /// Period of the sinusoid.
    pub period_s: f64,
    /// Time of the first peak (default: a quarter period).
    #[serde(default)]
    pub peak_at_s: Option<f64>,
}

/// `process: step`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Rate changes, in increasing `at_s`; the first must be at 0.
    pub steps: Vec<RawStepPoint>,
}

/// One rate change of a `step` process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStepPoint {
    /// When the rate takes effect.
    pub at_s: f64,
    /// Poisson rate from then on (0 allowed).
    pub rate_per_s: f64,
}

/// A distribution: tagged by `dist`, each with optional `min`/`max` clamps.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case")]
pub enum RawDist {
    /// Always `value`.
    Constant(RawConstant),
    /// Exponential with the given mean.
    Exponential(RawExponential),
    /// Uniform on `[low, high]`.
    Uniform(RawUniform),
    /// Lognormal with the given mean and coefficient of variation.
    Lognormal(RawLognormal),
    /// Pareto (type I) with shape `alpha` and scale `min`.
    Pareto(RawPareto),
    /// Discrete: `values` with optional `weights`.
    Empirical(RawEmpirical),
    /// A weighted mixture of other distributions (e.g. a short and a long mode).
    Mixture(RawMixture),
}

/// `dist: mixture`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMixture {
    /// Component distributions (no nested mixtures).
    pub components: Vec<RawDist>,
    /// Relative weights, one per component (default: equal).
    #[serde(default)]
    pub weights: Option<Vec<f64>>,
    /// Lower clamp.
    #[serde(default)]
    pub min: Option<f64>,
    /// Upper clamp.
    #[serde(default)]
    pub max: Option<f64>,
}

/// `dist: constant`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConstant {
    /// The value.
    pub value: f64,
    /// Lower clamp.
    #[serde(default)]
    pub min: Option<f64>,
    /// Upper clamp.
    #[serde(default)]
    pub max: Option<f64>,
}

/// `dist: exponential`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExponential {
    /// Mean.
    pub mean: f64,
    /// Lower clamp.
    #[serde(default)]
    pub min: Option<f64>,
    /// Upper clamp.
    #[serde(default)]
    pub max: Option<f64>,
}

/// `dist: uniform`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUniform {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
    /// Lower clamp.
    #[serde(default)]
    pub min: Option<f64>,
    /// Upper clamp.
    #[serde(default)]
    pub max: Option<f64>,
}

/// `dist: lognormal`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLognormal {
    /// Mean (of the unclamped distribution).
    pub mean: f64,
    /// Coefficient of variation (sd / mean).
    pub cv: f64,
    /// Lower clamp.
    #[serde(default)]
    pub min: Option<f64>,
    /// Upper clamp.
    #[serde(default)]
    pub max: Option<f64>,
}

/// `dist: pareto`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPareto {
    /// Shape; must be > 1 for a finite mean.
    pub alpha: f64,
    /// Scale: the smallest value.
    pub min: f64,
    /// Upper clamp.
    #[serde(default)]
    pub max: Option<f64>,
}

/// `dist: empirical`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmpirical {
    /// Possible values.
    pub values: Vec<f64>,
    /// Relative weights (default: equal).
    #[serde(default)]
    pub weights: Option<Vec<f64>>,
    /// Lower clamp.
    #[serde(default)]
    pub min: Option<f64>,
    /// Upper clamp.
    #[serde(default)]
    pub max: Option<f64>,
}

/// `cluster:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// Replica pools.
    pub pools: Vec<RawPool>,
}

/// A pool of identical replicas, tagged by `kind`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RawPool {
    /// `slots` parallel servers behind one FIFO queue per replica.
    Queue(RawQueuePool),
    /// vLLM-style continuous-batching engines on `tp` GPUs each.
    Llm(Box<RawLlmPool>),
}

/// `lifecycle:` of a pool: what an autoscaled replica goes through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLifecycle {
    /// Node provisioning and pod scheduling until the container starts (default 0).
    #[serde(default)]
    pub provision_s: Option<RawDist>,
    /// Image pull (default 0).
    #[serde(default)]
    pub image_pull_s: Option<f64>,
    /// Model load of a queue replica (llm pools take it from `cold_start`; default 0).
    #[serde(default)]
    pub load_s: Option<f64>,
    /// `terminationGracePeriodSeconds` of a drained replica (default 30).
    #[serde(default)]
    pub termination_grace_s: Option<f64>,
    /// Price of one GPU-hour in dollars (default: the GPU's catalog price; queue pools 0).
    #[serde(default)]
    pub gpu_hour_usd: Option<f64>,
}

/// `kind: queue`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueuePool {
    /// Pool name.
    pub name: String,
    /// Number of replicas.
    pub replicas: u32,
    /// Parallel servers per replica (default 1).
    #[serde(default)]
    pub slots: Option<u32>,
    /// Routing weight of each replica (default 1).
    #[serde(default)]
    pub weight: Option<u32>,
    /// Pool-specific service time; overrides the class's `service_s`.
    #[serde(default)]
    pub service_s: Option<RawDist>,
    /// Most requests that may wait in one replica's queue; arrivals beyond it are rejected.
    #[serde(default)]
    pub queue_capacity: Option<u32>,
    /// A backup pool (nginx `backup`): used only when no primary replica is available.
    #[serde(default)]
    pub backup: Option<bool>,
    /// How a replica starts and stops when autoscaled (provisioning, image pull, drain).
    #[serde(default)]
    pub lifecycle: Option<Box<RawLifecycle>>,
}

/// `kind: llm`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLlmPool {
    /// Pool name.
    pub name: String,
    /// Number of replicas.
    pub replicas: u32,
    /// Routing weight of each replica (default 1).
    #[serde(default)]
    pub weight: Option<u32>,
    /// GPU: a catalog name or alias, or a scenario `gpus:` entry.
    pub gpu: String,
    /// GPUs per replica, tensor parallel (default 1).
    #[serde(default)]
    pub tp: Option<u32>,
    /// The one model served (give this or `models`).
    #[serde(default)]
    pub model: Option<String>,
    /// Models a replica can serve, the first loaded at start (give this or `model`).
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Weight format (default: the model's native one).
    #[serde(default)]
    pub dtype: Option<Dtype>,
    /// KV-cache format (default: `dtype`).
    #[serde(default)]
    pub kv_dtype: Option<Dtype>,
    /// Fraction of GPU memory the engine may use (default 0.9).
    #[serde(default)]
    pub gpu_memory_utilization: Option<f64>,
    /// Scheduler knobs, by their vLLM names.
    #[serde(default)]
    pub engine: Option<RawEngine>,
    /// Iteration-time model (default: roofline with the calibrated parameters).
    #[serde(default)]
    pub latency: Option<RawLatency>,
    /// Model load costs.
    #[serde(default)]
    pub cold_start: Option<RawColdStart>,
    /// Most requests waiting per replica; arrivals beyond get 429 (default: unbounded).
    #[serde(default)]
    pub queue_capacity: Option<u32>,
    /// A backup pool (nginx `backup`): used only when no primary replica is available.
    #[serde(default)]
    pub backup: Option<bool>,
    /// How a replica starts and stops when autoscaled (provisioning, image pull, drain).
    #[serde(default)]
    pub lifecycle: Option<Box<RawLifecycle>>,
}

/// `engine:` of an llm pool — vLLM v1 scheduler knobs, with vLLM's names and defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    /// Most sequences in the running batch (default 256).
    #[serde(default)]
    pub max_num_seqs: Option<u32>,
    /// Token budget of one iteration (default 8192).
    #[serde(default)]
    pub max_num_batched_tokens: Option<u32>,
    /// Tokens per KV block (default 16).
    #[serde(default)]
    pub block_size: Option<u32>,
    /// Cap on one request's prefill chunk per iteration (default 0 = no cap).
    #[serde(default)]
    pub long_prefill_token_threshold: Option<u32>,
    /// Prefix caching (default true).
    #[serde(default)]
    pub enable_prefix_caching: Option<bool>,
    /// Pins the KV capacity to this many blocks instead of deriving it from memory.
    #[serde(default)]
    pub num_gpu_blocks_override: Option<u32>,
    /// Longest prompt + output accepted (default: the model's context length).
    #[serde(default)]
    pub max_model_len: Option<u32>,
    /// `fcfs` (default) or `priority` (by the classes' `priority`, lower first).
    #[serde(default)]
    pub scheduling_policy: Option<RawSchedulingPolicy>,
}

/// vLLM's `--scheduling-policy`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RawSchedulingPolicy {
    /// First come, first served.
    Fcfs,
    /// By request priority, then arrival.
    Priority,
}

/// `latency:` of an llm pool — tagged by `model`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum RawLatency {
    /// Roofline from the catalogs, with optional overrides of its parameters.
    Roofline(RawRoofline),
    /// `beta0 + beta1·prefill + beta2·decode + beta3·context` seconds per iteration.
    Linear(RawLinear),
}

/// `model: roofline` — overrides of the calibrated parameters (each optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoofline {
    /// Saturated GEMM efficiency, in (0, 1].
    #[serde(default)]
    pub eta_compute_max: Option<f64>,
    /// Knee of the GEMM efficiency curve, in ridge-intensity units.
    #[serde(default)]
    pub knee_x: Option<f64>,
    /// Memory streaming efficiency, in (0, 1].
    #[serde(default)]
    pub eta_memory: Option<f64>,
    /// Prefill attention efficiency, in (0, 1].
    #[serde(default)]
    pub eta_attention: Option<f64>,
    /// All-reduce link efficiency, in (0, 1].
    #[serde(default)]
    pub eta_link: Option<f64>,
    /// Fixed time per layer.
    #[serde(default)]
    pub layer_fixed_s: Option<f64>,
    /// All-reduce latency per doubling of `tp`.
    #[serde(default)]
    pub allreduce_latency_s: Option<f64>,
    /// Per-iteration engine overhead.
    #[serde(default)]
    pub overhead_s: Option<f64>,
}

/// `model: linear` — user-fitted coefficients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLinear {
    /// Fixed seconds per iteration.
    pub beta0_s: f64,
    /// Seconds per prefill token.
    pub beta1_s_per_prefill_token: f64,
    /// Seconds per decoding sequence.
    pub beta2_s_per_decode_token: f64,
    /// Seconds per KV token read (default 0).
    #[serde(default)]
    pub beta3_s_per_context_token: Option<f64>,
}

/// `cold_start:` of an llm pool — time to load a model: `init_s + weights / load_gb_per_s`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawColdStart {
    /// Weight loading bandwidth per replica in GB/s (default 2).
    #[serde(default)]
    pub load_gb_per_s: Option<f64>,
    /// Fixed start-up time (default 20).
    #[serde(default)]
    pub init_s: Option<f64>,
}
