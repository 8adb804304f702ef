//! `join_shortest_queue`: the classic JSQ policy — the candidate with the fewest requests
//! queued plus in service, as scraped from the replicas (with `metrics_refresh_ms: 0`, the
//! default, read live: an oracle signal, exact and current, shared by all gateways). Ties are
//! broken uniformly at random (reservoir sampling over the tied candidates), as in the
//! queueing-theory model, so idle replicas share load evenly.
//!
//! Signals: replica queue length and in-service count, as of this gateway's last scrape.
//! Stream: `router:join_shortest_queue`.

use super::{
    argmin_reservoir, parse_params, BuildCtx, RequestView, RouteView, Router, RouterEntry,
};
use crate::rng::Stream;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

struct Jsq {
    rng: Stream,
}

impl Router for Jsq {
    fn route(&mut self, _req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        argmin_reservoir(view.candidates, &mut self.rng, |r| {
            view.queued[r as usize] + view.in_service[r as usize]
        })
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let _: Params = parse_params(v)?;
    Ok(Box::new(Jsq { rng: ctx.stream("join_shortest_queue") }))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "join_shortest_queue",
    summary: "fewest queued + in-service requests as scraped from replicas; random tie-break",
    params: &[],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;

    #[test]
    fn picks_shortest_live_queue() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.queued = vec![3, 0, 1];
        f.in_service = vec![1, 2, 0];
        let mut r = f.build("join_shortest_queue", "");
        assert_eq!(r.route(&Default::default(), &f.view()), 2);
    }

    #[test]
    fn ties_are_uniform() {
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        f.in_service = vec![1, 0, 0, 0];
        let mut r = f.build("join_shortest_queue", "");
        let mut seen = [0usize; 4];
        for _ in 0..3000 {
            seen[r.route(&Default::default(), &f.view()) as usize] += 1;
        }
        assert_eq!(seen[0], 0);
        assert!(seen[1..].iter().all(|&s| (850..1150).contains(&s)), "{seen:?}");
    }
}
