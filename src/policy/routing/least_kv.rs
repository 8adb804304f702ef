//! `least_kv`: AIBrix `least-kv-cache` (reference §2.5) — the candidate whose KV cache is the
//! least used (`vllm:kv_cache_usage_perc`, blocks in use / capacity), as this gateway last
//! scraped it. AIBrix minimises GPU + CPU KV usage; routelab replicas have no CPU offload tier,
//! so the GPU fraction is the whole signal. Exact ties (e.g. several idle replicas at 0.0) are
//! broken uniformly at random by reservoir sampling (the k-th tie replaces the pick with
//! probability 1/k) — the same distribution as AIBrix's `SelectByScore`, which collects the
//! tied pods and draws one with `rand.Intn`. Weights are ignored.
//!
//! Between scrapes every request sees the same utilisations, so the whole burst goes to the one
//! least-used replica (or is spread only over exact ties): the herding this signal is known for
//! (reference §6, "Stale or partial signals"). Queue replicas report 0.0 everywhere, which makes
//! this policy uniform random there.
//!
//! Signals: `kv_util` (scraped: as old as `metrics_refresh_ms`, live when it is 0).
//! Stream: `router:least_kv` (one draw per tie).

use super::{
    argmin_reservoir, parse_params, BuildCtx, RequestView, RouteView, Router, RouterEntry,
};
use crate::rng::Stream;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

struct LeastKv {
    rng: Stream,
}

impl Router for LeastKv {
    fn route(&mut self, _req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        argmin_reservoir(view.candidates, &mut self.rng, |r| view.kv_util[r as usize])
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let _: Params = parse_params(v)?;
    Ok(Box::new(LeastKv { rng: ctx.stream("least_kv") }))
}

/// Registry entry.
pub static ENTRY: RouterEntry = RouterEntry {
    name: "least_kv",
    summary: "least KV-cache utilisation (scraped; AIBrix least-kv-cache), random tie-break",
    params: &[],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;

    #[test]
    fn picks_least_kv_utilisation() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.kv_util = vec![0.5, 0.2, 0.3];
        f.in_flight = vec![0, 10, 0];
        f.queued = vec![0, 10, 0];
        let mut r = f.build("least_kv", "");
        for _ in 0..20 {
            assert_eq!(r.route(&Default::default(), &f.view()), 1);
        }
    }

    #[test]
    fn ties_are_uniform() {
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        f.kv_util = vec![0.1, 0.1, 0.4, 0.1];
        let mut r = f.build("least_kv", "");
        let mut seen = [0usize; 4];
        for _ in 0..3000 {
            seen[r.route(&Default::default(), &f.view()) as usize] += 1;
        }
        assert_eq!(seen[2], 0);
        // Binomial(3000, 1/3): sd = 25.8; about 6 sd.
        for i in [0, 1, 3] {
            assert!((850..1150).contains(&seen[i]), "{seen:?}");
        }
    }

    #[test]
    fn stale_view_herds_on_the_minimum() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.kv_util = vec![0.3, 0.29, 0.3];
        let mut r = f.build("least_kv", "");
        // In-flight load accumulates but the scraped KV use does not move.
        let picks = f.route_accumulating(r.as_mut(), 10);
        assert_eq!(picks, vec![1; 10]);
    }
}
