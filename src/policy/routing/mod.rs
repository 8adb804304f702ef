//! Routing policies behind one registry.
//!
//! A router sees a [`RouteView`]: the candidate replicas (ready, able to serve the request),
//! this gateway's own in-flight counters, the replicas' queue and service counts, and the
//! routing weights. It returns one candidate. It never sees a request's output length (that
//! would be an oracle) and never touches engine state.
//!
//! Adding a policy is one file in this folder plus one line in [`ROUTERS`] (kept alphabetical).
//! The registry drives `routelab list policies`, scenario validation, and the conformance test
//! that every policy builds with defaults, only picks candidates and is deterministic.

mod bounded_load_hash;
mod cache_aware;
mod canary;
mod consistent_hash;
mod global_least_request;
mod gpu_aware;
mod join_shortest_queue;
mod kv_router;
mod least_kv;
mod least_requests;
mod least_response_time;
mod least_tokens;
mod maglev;
mod model_affinity;
mod peak_ewma;
mod power_of_d;
mod precise_prefix;
mod prefix_hash;
mod queue_depth;
mod random;
mod rendezvous_hash;
mod round_robin;
mod session_affinity;
mod vllm_dp;
mod weighted_round_robin;
mod weighted_scorers;

use crate::rng::Stream;
use crate::time::{SimDuration, SimTime};
use serde::de::DeserializeOwned;

/// What a router may know about the request being routed.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestView<'a> {
    /// Request id (arrival order within the run), unique per run.
    pub id: u64,
    /// Workload class index.
    pub class: u16,
    /// Model the request asks for (index into the run's model table; 0 for queue clusters).
    pub model: u16,
    /// Prompt length in tokens (0 when the workload has none).
    pub prompt_tokens: u32,
    /// Routing key (the value a session header or cookie carries): the conversation id for a
    /// turn of a session; otherwise the id of the request's shared-prefix group (the
    /// application or API key whose system prompt it carries); 0 when it has neither.
    pub session: u64,
    /// Chained hashes of the prompt's shared blocks of [`RouteView::block_size`] tokens
    /// (block *i*'s hash identifies the whole prefix up to it). Empty unless the router asked
    /// for them ([`Router::uses_prefix_hashes`]) or the prompt shares nothing.
    pub hashes: &'a [u64],
}

/// Static facts about one replica.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicaInfo {
    /// Peak dense compute of the replica in FLOP/s (GPU peak × tensor-parallel degree; 1.0
    /// for queue replicas).
    pub flops_per_s: f64,
    /// KV-cache capacity in blocks (0 for queue replicas).
    pub kv_capacity_blocks: u32,
    /// KV block size in tokens (0 for queue replicas).
    pub block_size: u32,
    /// Pool index.
    pub pool: u16,
    /// Most requests it runs at once (`max_num_seqs` for llm replicas, `slots` for queue
    /// replicas).
    pub slots: u32,
}

/// Where KV blocks live, as the replicas' KV events have reported them (possibly delayed by
/// `gateway.kv_event_delay_ms`). Exact block residency, unlike routing-history indexes.
pub trait KvIndex {
    /// For each `candidates[i]`, writes into `out[i]` (cleared first) how many *leading*
    /// blocks of `hashes` that replica holds.
    fn leading_matches(&self, hashes: &[u64], candidates: &[u32], out: &mut Vec<u32>);
}

/// A [`KvIndex`] that knows nothing (queue clusters; routers that do not ask for one).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKvIndex;

impl KvIndex for NoKvIndex {
    fn leading_matches(&self, _hashes: &[u64], candidates: &[u32], out: &mut Vec<u32>) {
        out.clear();
        out.resize(candidates.len(), 0);
    }
}

/// What a router may know about the replicas. Per-replica slices are indexed by replica id.
///
/// Two staleness classes: `in_flight` and `global_in_flight` are gateway-side counters,
/// exact at the decision; `queued`, `in_service`, `kv_util` and `loaded_model` are
/// replica-side metrics as of this gateway's last scrape (live when `metrics_refresh_ms` is
/// 0). `kv_index` is as fresh as the KV-event delay.
#[derive(Clone, Copy)]
pub struct RouteView<'a> {
    /// Replicas this request may go to, in replica-id order. Never empty when a router is called.
    pub candidates: &'a [u32],
    /// Bumped whenever the candidate set changes, so routers can rebuild derived state.
    pub candidates_epoch: u64,
    /// Requests this gateway sent to each replica that have not finished (exact, local).
    pub in_flight: &'a [u32],
    /// Requests all gateways together sent to each replica that have not finished (a shared
    /// store such as Redis: exact, global).
    pub global_in_flight: &'a [u32],
    /// Requests waiting at each replica (`vllm:num_requests_waiting`), as scraped.
    pub queued: &'a [u32],
    /// Requests running at each replica (`vllm:num_requests_running`), as scraped.
    pub in_service: &'a [u32],
    /// KV-cache blocks in use / capacity at each replica (`vllm:kv_cache_usage_perc`), as
    /// scraped; 0 for queue replicas.
    pub kv_util: &'a [f32],
    /// Model loaded (or loading) at each replica, as a model-table index (`u16::MAX`: none),
    /// as scraped.
    pub loaded_model: &'a [u16],
    /// Routing weight of each replica (the pool's `weight`).
    pub weights: &'a [u32],
    /// Static facts about each replica.
    pub replicas: &'a [ReplicaInfo],
    /// Block residency reported by KV events.
    pub kv_index: &'a dyn KvIndex,
    /// Tokens per block of [`RequestView::hashes`].
    pub block_size: u32,
    /// Simulated time of the decision (for time-decayed signals such as EWMAs).
    pub now: SimTime,
}

impl std::fmt::Debug for RouteView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteView")
            .field("candidates", &self.candidates)
            .field("in_flight", &self.in_flight)
            .field("queued", &self.queued)
            .field("in_service", &self.in_service)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// How a request this gateway routed ended, as the gateway observes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Completion {
    /// The request ([`RequestView::id`]).
    pub id: u64,
    /// The replica it went to.
    pub replica: u32,
    /// When it ended.
    pub now: SimTime,
    /// Arrival to first token (`None` if no token was produced).
    pub first_token: Option<SimDuration>,
    /// Arrival to the end of the response (or to the timeout).
    pub total: SimDuration,
    /// Served to the end (not timed out, rejected or cut off).
    pub success: bool,
}

/// The first token of a request this gateway routed reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstToken {
    /// The request ([`RequestView::id`]).
    pub id: u64,
    /// The replica serving it.
    pub replica: u32,
    /// When.
    pub now: SimTime,
}

/// A routing policy instance (one per run, per gateway replica).
pub trait Router {
    /// Picks one of `view.candidates` for `req`.
    fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32;

    /// A request this gateway routed has ended: feedback for latency-aware policies (EWMAs,
    /// response-time estimates) and for routers that track per-request load. Called exactly
    /// once per routed request, after `in_flight` is decremented. The default ignores it.
    fn on_complete(&mut self, _done: &Completion) {}

    /// A request this gateway routed produced its first token (at most once per request,
    /// before its `on_complete`; never for queue replicas). The default ignores it.
    fn on_first_token(&mut self, _ft: &FirstToken) {}

    /// Whether the router reads [`RequestView::hashes`] (the gateway computes them only then).
    fn uses_prefix_hashes(&self) -> bool {
        false
    }

    /// Whether the router reads [`RouteView::kv_index`] (replicas emit KV events only then).
    fn uses_kv_index(&self) -> bool {
        false
    }
}

/// What a router is built from.
#[derive(Debug, Clone, Copy)]
pub struct BuildCtx<'a> {
    /// Seed of the run; a router's stream is `router:<name>` under it.
    pub run_seed: u64,
    /// Routing weight of each replica.
    pub weights: &'a [u32],
    /// Static facts about each replica.
    pub replicas: &'a [ReplicaInfo],
    /// Which gateway replica this router serves (0-based); each has its own stream.
    pub gateway: u32,
}

impl BuildCtx<'_> {
    /// The router's own random stream (`router:<name>`, index = gateway replica).
    pub fn stream(&self, name: &str) -> Stream {
        Stream::new(self.run_seed, &format!("router:{name}"), u64::from(self.gateway))
    }
}

/// Documentation of one policy parameter.
#[derive(Debug, Clone, Copy)]
pub struct ParamDoc {
    /// Key in the scenario.
    pub name: &'static str,
    /// Default value as written in YAML.
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
}

/// Builds a router from its YAML parameters; `Err` is a one-line reason.
pub type BuildFn = fn(&serde_yaml_ng::Value, &BuildCtx<'_>) -> Result<Box<dyn Router>, String>;

/// A registered routing policy.
#[derive(Debug, Clone, Copy)]
pub struct RouterEntry {
    /// Name used in scenarios.
    pub name: &'static str,
    /// One line for `routelab list policies`.
    pub summary: &'static str,
    /// Parameters with defaults.
    pub params: &'static [ParamDoc],
    /// Constructor.
    pub build: BuildFn,
}

/// Every routing policy, alphabetical.
pub static ROUTERS: &[&RouterEntry] = &[
    &bounded_load_hash::ENTRY,
    &cache_aware::ENTRY,
    &canary::ENTRY,
    &consistent_hash::ENTRY,
    &global_least_request::ENTRY,
    &gpu_aware::ENTRY,
    &join_shortest_queue::ENTRY,
    &kv_router::ENTRY,
    &least_kv::ENTRY,
    &least_requests::ENTRY,
    &least_response_time::ENTRY,
    &least_tokens::ENTRY,
    &maglev::ENTRY,
    &model_affinity::ENTRY,
    &peak_ewma::ENTRY,
    &power_of_d::ENTRY,
    &precise_prefix::ENTRY,
    &prefix_hash::ENTRY,
    &queue_depth::ENTRY,
    &random::ENTRY,
    &rendezvous_hash::ENTRY,
    &round_robin::ENTRY,
    &session_affinity::ENTRY,
    &vllm_dp::ENTRY,
    &weighted_round_robin::ENTRY,
    &weighted_scorers::ENTRY,
];

/// The entry called `name`.
pub fn find(name: &str) -> Option<&'static RouterEntry> {
    ROUTERS.iter().copied().find(|e| e.name == name)
}

/// Comma-separated registered names, for error messages.
pub fn names() -> String {
    ROUTERS.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
}

/// Parses a policy's parameter mapping (`null` means all defaults) into its `Params` type.
pub fn parse_params<T: DeserializeOwned + Default>(v: &serde_yaml_ng::Value) -> Result<T, String> {
    if v.is_null() {
        return Ok(T::default());
    }
    serde_yaml_ng::from_value(v.clone()).map_err(|e| e.to_string())
}

/// The candidate with the smallest `key`; exact ties are broken uniformly at random by
/// reservoir sampling (the k-th tied candidate, in candidate order, replaces the pick with
/// probability 1/k: one draw of `rng` per tie). Keys compare with `partial_cmp`; an
/// incomparable key (NaN) never wins.
pub(crate) fn argmin_reservoir<K: PartialOrd>(
    candidates: &[u32],
    rng: &mut Stream,
    key: impl Fn(u32) -> K,
) -> u32 {
    let mut best = candidates[0];
    let mut best_key = key(best);
    let mut ties = 1u64;
    for &r in &candidates[1..] {
        let k = key(r);
        match k.partial_cmp(&best_key) {
            Some(std::cmp::Ordering::Less) => {
                best = r;
                best_key = k;
                ties = 1;
            }
            Some(std::cmp::Ordering::Equal) => {
                ties += 1;
                if rng.next_u64() % ties == 0 {
                    best = r;
                }
            }
            _ => {}
        }
    }
    best
}

/// Whether all candidates have the same weight.
pub(crate) fn equal_weights(view: &RouteView<'_>) -> bool {
    let w0 = view.weights[view.candidates[0] as usize];
    view.candidates.iter().all(|&r| view.weights[r as usize] == w0)
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use std::collections::BTreeSet;

    /// A request carrying routing key `session` and nothing else.
    pub fn keyed(session: u64) -> RequestView<'static> {
        RequestView { session, ..Default::default() }
    }

    /// A [`KvIndex`] over explicit per-replica hash sets.
    #[derive(Debug, Clone, Default)]
    pub struct SetKvIndex {
        pub held: Vec<BTreeSet<u64>>,
    }

    impl KvIndex for SetKvIndex {
        fn leading_matches(&self, hashes: &[u64], candidates: &[u32], out: &mut Vec<u32>) {
            out.clear();
            for &r in candidates {
                let set = self.held.get(r as usize);
                let n = hashes.iter().take_while(|h| set.is_some_and(|s| s.contains(h))).count();
                out.push(n as u32);
            }
        }
    }

    /// A view over `n` replicas with the given in-flight counts, weights and queue state.
    pub struct Fixture {
        pub candidates: Vec<u32>,
        pub in_flight: Vec<u32>,
        pub global_in_flight: Vec<u32>,
        pub queued: Vec<u32>,
        pub in_service: Vec<u32>,
        pub kv_util: Vec<f32>,
        pub loaded_model: Vec<u16>,
        pub weights: Vec<u32>,
        pub replicas: Vec<ReplicaInfo>,
        pub kv: SetKvIndex,
        pub block_size: u32,
        /// Time of the view (`SimTime::ZERO` unless a test moves it).
        pub now: SimTime,
    }

    impl Fixture {
        pub fn new(weights: &[u32]) -> Fixture {
            let n = weights.len();
            Fixture {
                candidates: (0..n as u32).collect(),
                in_flight: vec![0; n],
                global_in_flight: vec![0; n],
                queued: vec![0; n],
                in_service: vec![0; n],
                kv_util: vec![0.0; n],
                loaded_model: vec![0; n],
                weights: weights.to_vec(),
                replicas: vec![
                    ReplicaInfo {
                        flops_per_s: 1e15,
                        kv_capacity_blocks: 1000,
                        block_size: 16,
                        pool: 0,
                        slots: 256,
                    };
                    n
                ],
                kv: SetKvIndex { held: vec![BTreeSet::new(); n] },
                block_size: 16,
                now: SimTime::ZERO,
            }
        }

        pub fn view(&self) -> RouteView<'_> {
            RouteView {
                candidates: &self.candidates,
                candidates_epoch: 0,
                in_flight: &self.in_flight,
                global_in_flight: &self.global_in_flight,
                queued: &self.queued,
                in_service: &self.in_service,
                kv_util: &self.kv_util,
                loaded_model: &self.loaded_model,
                weights: &self.weights,
                replicas: &self.replicas,
                kv_index: &self.kv,
                block_size: self.block_size,
                now: self.now,
            }
        }

        pub fn build(&self, name: &str, params: &str) -> Box<dyn Router> {
            self.build_for_gateway(name, params, 0)
        }

        pub fn try_build(&self, name: &str, params: &str) -> Result<Box<dyn Router>, String> {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(params).expect("yaml");
            let ctx = BuildCtx {
                run_seed: 1,
                weights: &self.weights,
                replicas: &self.replicas,
                gateway: 0,
            };
            (find(name).expect("registered").build)(&v, &ctx)
        }

        pub fn build_for_gateway(&self, name: &str, params: &str, gateway: u32) -> Box<dyn Router> {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(params).expect("yaml");
            let ctx =
                BuildCtx { run_seed: 1, weights: &self.weights, replicas: &self.replicas, gateway };
            (find(name).expect("registered").build)(&v, &ctx).expect("builds")
        }

        /// Routes `n` requests, treating each as still in flight (load accumulates).
        pub fn route_accumulating(&mut self, r: &mut dyn Router, n: usize) -> Vec<u32> {
            (0..n)
                .map(|_| {
                    let pick = r.route(&RequestView::default(), &self.view());
                    self.in_flight[pick as usize] += 1;
                    self.global_in_flight[pick as usize] += 1;
                    pick
                })
                .collect()
        }
    }
}
