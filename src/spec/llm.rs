//! Validated configuration of `llm` pools: the engine knobs (vLLM names and defaults), the
//! models a replica can serve with their latency model and KV capacity, and cold-start costs.
//!
//! Everything here is resolved at scenario validation: catalog lookups are done, the roofline
//! is folded into per-GPU constants and the KV capacity is a block count, so the engine never
//! touches the catalogs.

use crate::cluster::latency::LatencyModel;
use crate::time::SimDuration;

/// vLLM-v1 scheduler knobs of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Most sequences in the running batch (vLLM `max_num_seqs`, default 256).
    pub max_num_seqs: u32,
    /// Token budget of one iteration (vLLM `max_num_batched_tokens`, default 8192).
    pub max_num_batched_tokens: u32,
    /// Tokens per KV block (vLLM `block_size`, default 16).
    pub block_size: u32,
    /// Cap on one request's prefill chunk per iteration; 0 = no cap (vLLM
    /// `long_prefill_token_threshold`, default 0).
    pub long_prefill_token_threshold: u32,
    /// Prefix caching on (vLLM `enable_prefix_caching`, default true in v1).
    pub enable_prefix_caching: bool,
    /// Waiting-queue order and preemption victim (vLLM `scheduling_policy`, default `fcfs`).
    pub scheduling_policy: SchedulingPolicy,
}

/// vLLM's `--scheduling-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulingPolicy {
    /// First come, first served; the most recently admitted request is preempted first.
    #[default]
    Fcfs,
    /// By the request's `priority` (lower first), then arrival; the running request with the
    /// largest `(priority, arrival)` is preempted first.
    Priority,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            max_num_seqs: 256,
            max_num_batched_tokens: 8192,
            block_size: 16,
            long_prefill_token_threshold: 0,
            enable_prefix_caching: true,
            scheduling_policy: SchedulingPolicy::Fcfs,
        }
    }
}

/// One model a replica of the pool can serve, resolved for the pool's GPU and `tp`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServedModel {
    /// Model name (catalog name or custom entry), as requests name it.
    pub name: String,
    /// Iteration-time model.
    pub latency: LatencyModel,
    /// KV blocks of one replica while this model is loaded (`num_gpu_blocks_override` or
    /// derived from memory).
    pub kv_capacity_blocks: u32,
    /// Longest sequence (prompt + output) the model accepts (its `max_context`).
    pub max_model_len: u32,
    /// Bytes of weights the whole replica loads for this model (all `tp` GPUs together).
    pub weight_bytes: f64,
}

/// A validated `kind: llm` pool (the replica count and weight live in `PoolSpec`).
#[derive(Debug, Clone, PartialEq)]
pub struct LlmPool {
    /// GPU catalog name.
    pub gpu: String,
    /// GPUs per replica (tensor parallel degree).
    pub tp: u32,
    /// Dense tensor peak of one replica (all its GPUs) at the first model's weight format.
    pub peak_flops_per_s: f64,
    /// Models a replica can serve; the first is loaded at start. A replica holds one model at
    /// a time: a request for another one waits until the replica is idle, then the replica
    /// swaps (unload, then load = cold start).
    pub models: Vec<ServedModel>,
    /// Scheduler knobs.
    pub engine: EngineConfig,
    /// Cold start of model `m`: `init + weight_bytes / load_bytes_per_s`.
    pub load_bytes_per_s: f64,
    /// Fixed part of a cold start (process and CUDA-graph initialisation).
    pub load_init: SimDuration,
    /// Most waiting requests per replica; arrivals beyond get 429 (`None`: unbounded, as
    /// vLLM).
    pub queue_capacity: Option<u32>,
}

impl LlmPool {
    /// Time to load model `m` on one replica.
    pub fn cold_start(&self, m: usize) -> SimDuration {
        self.load_init
            + SimDuration::from_secs_f64(self.models[m].weight_bytes / self.load_bytes_per_s)
    }
}
