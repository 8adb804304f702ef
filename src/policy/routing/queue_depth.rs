//! `queue_depth`: the candidate with the fewest requests *waiting* at the replica
//! (`vllm:num_requests_waiting`), as this gateway last scraped it. Running requests are ignored:
//! a replica with a long batch but an empty queue still admits the next request at once.
//!
//! This is the queue-only balancer of the LLM gateways (reference §2.3): llm-d / GIE
//! `queue-scorer` alone under `max-score-picker` (the score `(max_q − q)/(max_q − min_q)` is
//! maximal exactly at the minimum waiting count, and the picker shuffles then stable-sorts, so
//! exact ties are uniformly random), and the legacy GIE `leastQueue` filter followed by the
//! random picker. AIBrix's least-request family (§2.5) uses the same "minimum, ties random" shape
//! on its own counters.
//!
//! Rule: minimise `queued[r]`; among candidates with the same waiting count, the fewest requests
//! in flight *from this gateway* (`in_flight[r]`) — a routelab addition that spreads a burst
//! within one scrape period instead of piling it on the stalest minimum; remaining exact ties
//! are broken uniformly at random by reservoir sampling (the k-th tie replaces the pick with
//! probability 1/k). Weights are ignored.
//!
//! Signals: `queued` (scraped: as old as `metrics_refresh_ms`, live when it is 0) and this
//! gateway's in-flight counters (exact, local). Stream: `router:queue_depth` (one draw per tie).

use super::{
    argmin_reservoir, parse_params, BuildCtx, RequestView, RouteView, Router, RouterEntry,
};
use crate::rng::Stream;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

struct QueueDepth {
    rng: Stream,
}

impl Router for QueueDepth {
    fn route(&mut self, _req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        argmin_reservoir(view.candidates, &mut self.rng, |r| {
            (view.queued[r as usize], view.in_flight[r as usize])
        })
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let _: Params = parse_params(v)?;
    Ok(Box::new(QueueDepth { rng: ctx.stream("queue_depth") }))
}

/// Registry entry.
pub static ENTRY: RouterEntry = RouterEntry {
    name: "queue_depth",
    summary: "fewest waiting requests (scraped); ties: fewest in flight here, then random",
    params: &[],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;

    #[test]
    fn picks_fewest_waiting_ignoring_running() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.queued = vec![3, 1, 2];
        f.in_service = vec![0, 50, 0];
        f.in_flight = vec![0, 9, 0];
        let mut r = f.build("queue_depth", "");
        for _ in 0..20 {
            assert_eq!(r.route(&Default::default(), &f.view()), 1);
        }
    }

    #[test]
    fn equal_queues_prefer_fewest_in_flight_here() {
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        f.queued = vec![2, 2, 2, 5];
        f.in_flight = vec![3, 1, 2, 0];
        let mut r = f.build("queue_depth", "");
        for _ in 0..20 {
            assert_eq!(r.route(&Default::default(), &f.view()), 1);
        }
    }

    #[test]
    fn exact_ties_are_uniform() {
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        f.queued = vec![1, 0, 0, 0];
        let mut r = f.build("queue_depth", "");
        let mut seen = [0usize; 4];
        for _ in 0..3000 {
            seen[r.route(&Default::default(), &f.view()) as usize] += 1;
        }
        assert_eq!(seen[0], 0);
        // Binomial(3000, 1/3): sd = 25.8; about 6 sd.
        assert!(seen[1..].iter().all(|&s| (850..1150).contains(&s)), "{seen:?}");
    }

    #[test]
    fn rejects_unknown_params() {
        let f = Fixture::new(&[1, 1]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str("depth: 2").expect("yaml");
        let ctx =
            super::BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
        assert!((super::ENTRY.build)(&v, &ctx).is_err());
    }
}
