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

mod join_shortest_queue;
mod least_requests;
mod least_response_time;
mod peak_ewma;
mod power_of_d;
mod random;
mod round_robin;
mod weighted_round_robin;

use crate::rng::Stream;
use crate::time::{SimDuration, SimTime};
use serde::de::DeserializeOwned;

/// What a router may know about the request being routed.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestView {
    /// Workload class index.
    pub class: u16,
    /// Prompt length in tokens (0 when the workload has none).
    pub prompt_tokens: u32,
}

/// What a router may know about the replicas. Per-replica slices are indexed by replica id.
#[derive(Debug, Clone, Copy)]
pub struct RouteView<'a> {
    /// Replicas this request may go to, in replica-id order. Never empty when a router is called.
    pub candidates: &'a [u32],
    /// Bumped whenever the candidate set changes, so routers can rebuild derived state.
    pub candidates_epoch: u64,
    /// Requests this gateway sent to each replica that have not finished (exact, local).
    pub in_flight: &'a [u32],
    /// Requests waiting in each replica's queue (live).
    pub queued: &'a [u32],
    /// Requests in service at each replica (live).
    pub in_service: &'a [u32],
    /// Routing weight of each replica (the pool's `weight`).
    pub weights: &'a [u32],
    /// Simulated time of the decision (for time-decayed signals such as EWMAs).
    pub now: SimTime,
}

/// How a request this gateway routed ended, as the gateway observes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
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

/// A routing policy instance (one per run, per gateway).
pub trait Router {
    /// Picks one of `view.candidates` for `req`.
    fn route(&mut self, req: &RequestView, view: &RouteView<'_>) -> u32;

    /// A request this gateway routed has ended: feedback for latency-aware policies (EWMAs,
    /// response-time estimates). Called once per routed request, after `in_flight` is
    /// decremented. The default ignores it.
    fn on_complete(&mut self, _done: &Completion) {}
}

/// What a router is built from.
#[derive(Debug, Clone, Copy)]
pub struct BuildCtx<'a> {
    /// Seed of the run; a router's stream is `router:<name>` under it.
    pub run_seed: u64,
    /// Routing weight of each replica.
    pub weights: &'a [u32],
}

impl BuildCtx<'_> {
    /// The router's own random stream.
    pub fn stream(&self, name: &str) -> Stream {
        Stream::new(self.run_seed, &format!("router:{name}"), 0)
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
    &join_shortest_queue::ENTRY,
    &least_requests::ENTRY,
    &least_response_time::ENTRY,
    &peak_ewma::ENTRY,
    &power_of_d::ENTRY,
    &random::ENTRY,
    &round_robin::ENTRY,
    &weighted_round_robin::ENTRY,
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

/// Whether all candidates have the same weight.
pub(crate) fn equal_weights(view: &RouteView<'_>) -> bool {
    let w0 = view.weights[view.candidates[0] as usize];
    view.candidates.iter().all(|&r| view.weights[r as usize] == w0)
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// A view over `n` replicas with the given in-flight counts, weights and queue state.
    pub struct Fixture {
        pub candidates: Vec<u32>,
        pub in_flight: Vec<u32>,
        pub queued: Vec<u32>,
        pub in_service: Vec<u32>,
        pub weights: Vec<u32>,
        /// Time of the view (`SimTime::ZERO` unless a test moves it).
        pub now: SimTime,
    }

    impl Fixture {
        pub fn new(weights: &[u32]) -> Fixture {
            let n = weights.len();
            Fixture {
                candidates: (0..n as u32).collect(),
                in_flight: vec![0; n],
                queued: vec![0; n],
                in_service: vec![0; n],
                weights: weights.to_vec(),
                now: SimTime::ZERO,
            }
        }

        pub fn view(&self) -> RouteView<'_> {
            RouteView {
                candidates: &self.candidates,
                candidates_epoch: 0,
                in_flight: &self.in_flight,
                queued: &self.queued,
                in_service: &self.in_service,
                weights: &self.weights,
                now: self.now,
            }
        }

        pub fn build(&self, name: &str, params: &str) -> Box<dyn Router> {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(params).expect("yaml");
            let ctx = BuildCtx { run_seed: 1, weights: &self.weights };
            (find(name).expect("registered").build)(&v, &ctx).expect("builds")
        }

        /// Routes `n` requests, treating each as still in flight (load accumulates).
        pub fn route_accumulating(&mut self, r: &mut dyn Router, n: usize) -> Vec<u32> {
            (0..n)
                .map(|_| {
                    let pick = r.route(&RequestView::default(), &self.view());
                    self.in_flight[pick as usize] += 1;
                    pick
                })
                .collect()
        }
    }
}
