//! `global_least_request`: Higress `ai-load-balancer` `global_least_request` (reference §2.6) —
//! least in-flight requests counted by a store shared by every gateway instance (Higress keeps
//! a Redis hash `host → count`, `+1` in an atomic Lua script at dispatch, `−1` at stream end).
//!
//! `weighting: none` is plain Higress: minimise `global_in_flight[r]`, scanning candidates in
//! replica order; exact ties are broken by reservoir sampling (the k-th tie replaces the pick
//! with probability 1/k, Higress's `math.random(k) == 1`).
//!
//! `weighting: capacity` (the default) additionally weights each replica by its compute and
//! its free KV memory, as the issue asked ("by replica FLOPS and free KV memory"; Higress itself
//! has no such weighting — §2.6 notes GPU awareness there is only KV/queue metrics):
//!
//! ```text
//! score(r)    = (global_in_flight[r] + 1) / (flops_rel(r) · free_kv(r))      minimum wins
//! flops_rel(r) = flops_per_s[r] / max over candidates of flops_per_s
//! free_kv(r)   = max(1 − kv_util[r], min_free_kv)                             min_free_kv = 0.05
//! ```
//!
//! The `+ 1` counts the request being placed, so an idle fast replica beats an idle slow one
//! and a replica twice as fast takes about twice the requests. The `min_free_kv` floor keeps a
//! full replica's score finite (it is 20× worse, not excluded). Exact score ties (f64
//! equality, e.g. identical idle replicas) use the same reservoir sampling. On queue clusters
//! (FLOPS 1.0, KV use 0) `capacity` reduces to `none`.
//!
//! Not modelled: Higress's optional `maxRequestCount` 429 (a router here cannot reject) and the
//! Redis round-trip (the shared count is exact at the decision).
//!
//! Signals: `global_in_flight` (shared store, exact, all gateways); with `capacity` also
//! `kv_util` (scraped: as old as `metrics_refresh_ms`) and static replica FLOPS.
//! Stream: `router:global_least_request` (one draw per tie).

use super::{
    argmin_reservoir, parse_params, BuildCtx, ParamDoc, RequestView, RouteView, Router, RouterEntry,
};
use crate::rng::Stream;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Weighting {
    None,
    #[default]
    Capacity,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    weighting: Weighting,
    #[serde(default = "default_min_free_kv")]
    min_free_kv: f64,
}

fn default_min_free_kv() -> f64 {
    0.05
}

impl Default for Params {
    fn default() -> Params {
        Params { weighting: Weighting::default(), min_free_kv: default_min_free_kv() }
    }
}

struct GlobalLeastRequest {
    weighting: Weighting,
    min_free_kv: f64,
    rng: Stream,
}

impl GlobalLeastRequest {
    /// Reservoir argmin of `key` over the candidates (ties: exact equality).
    fn argmin(&mut self, view: &RouteView<'_>, key: impl Fn(u32) -> f64) -> u32 {
        argmin_reservoir(view.candidates, &mut self.rng, key)
    }
}

impl Router for GlobalLeastRequest {
    fn route(&mut self, _req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        match self.weighting {
            Weighting::None => self.argmin(view, |r| f64::from(view.global_in_flight[r as usize])),
            Weighting::Capacity => {
                let max_flops = view
                    .candidates
                    .iter()
                    .map(|&r| view.replicas[r as usize].flops_per_s)
                    .fold(0.0f64, f64::max);
                let floor = self.min_free_kv;
                self.argmin(view, |r| {
                    let i = r as usize;
                    let flops_rel = if max_flops > 0.0 {
                        view.replicas[i].flops_per_s / max_flops
                    } else {
                        1.0
                    };
                    let free_kv = (1.0 - f64::from(view.kv_util[i])).max(floor);
                    // A replica with no FLOPS scores +inf: last resort, still comparable.
                    (f64::from(view.global_in_flight[i]) + 1.0) / (flops_rel * free_kv)
                })
            }
        }
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    if !(p.min_free_kv > 0.0 && p.min_free_kv <= 1.0) {
        return Err(format!("min_free_kv = {}: must be in (0, 1]", p.min_free_kv));
    }
    Ok(Box::new(GlobalLeastRequest {
        weighting: p.weighting,
        min_free_kv: p.min_free_kv,
        rng: ctx.stream("global_least_request"),
    }))
}

/// Registry entry.
pub static ENTRY: RouterEntry = RouterEntry {
    name: "global_least_request",
    summary: "least in flight over all gateways (Higress, shared store), per FLOPS x free KV",
    params: &[
        ParamDoc {
            name: "weighting",
            default: "capacity",
            doc: "none (plain Higress) or capacity: (global + 1) / (flops_rel x free_kv)",
        },
        ParamDoc {
            name: "min_free_kv",
            default: "0.05",
            doc: "capacity: floor of free_kv = max(1 - kv_util, min_free_kv), in (0, 1]",
        },
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;

    fn route(r: &mut dyn super::Router, f: &Fixture) -> u32 {
        r.route(&Default::default(), &f.view())
    }

    #[test]
    fn none_reads_the_global_count_not_the_local_one() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.global_in_flight = vec![4, 2, 3];
        f.in_flight = vec![0, 2, 0];
        let mut r = f.build("global_least_request", "weighting: none");
        for _ in 0..20 {
            assert_eq!(route(r.as_mut(), &f), 1);
        }
    }

    #[test]
    fn none_ignores_capacity_and_breaks_ties_uniformly() {
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        f.global_in_flight = vec![1, 0, 0, 0];
        f.replicas[1].flops_per_s = 1e16;
        f.kv_util = vec![0.0, 0.0, 0.9, 0.0];
        let mut r = f.build("global_least_request", "weighting: none");
        let mut seen = [0usize; 4];
        for _ in 0..3000 {
            seen[route(r.as_mut(), &f) as usize] += 1;
        }
        assert_eq!(seen[0], 0);
        // Binomial(3000, 1/3): sd = 25.8; about 6 sd.
        assert!(seen[1..].iter().all(|&s| (850..1150).contains(&s)), "{seen:?}");
    }

    #[test]
    fn capacity_prefers_faster_replicas_in_proportion() {
        let mut f = Fixture::new(&[1, 1]);
        f.replicas[0].flops_per_s = 2e15;
        let mut r = f.build("global_least_request", "");
        // Idle: scores 1/1 vs 1/0.5 -> the fast one.
        assert_eq!(route(r.as_mut(), &f), 0);
        // Accumulating, the fast replica holds about twice as many.
        f.route_accumulating(r.as_mut(), 300);
        let (a, b) = (f.global_in_flight[0], f.global_in_flight[1]);
        assert!((199..=201).contains(&a) && a + b == 300, "{a} {b}");
    }

    #[test]
    fn capacity_divides_by_free_kv_with_a_floor() {
        let mut f = Fixture::new(&[1, 1, 1]);
        // Scores: (0+1)/0.5 = 2, (1+1)/1 = 2 (tie), (0+1)/0.05 = 20 (kv 1.0 floored).
        f.kv_util = vec![0.5, 0.0, 1.0];
        f.global_in_flight = vec![0, 1, 0];
        let mut r = f.build("global_least_request", "");
        let mut seen = [0usize; 3];
        for _ in 0..2000 {
            seen[route(r.as_mut(), &f) as usize] += 1;
        }
        assert_eq!(seen[2], 0);
        assert!((850..1150).contains(&seen[0]), "{seen:?}");
        // With the floor at 1.0 every replica's free KV counts as 1: 1, 2, 1.
        let mut r = f.build("global_least_request", "min_free_kv: 1.0");
        let mut seen = [0usize; 3];
        for _ in 0..2000 {
            seen[route(r.as_mut(), &f) as usize] += 1;
        }
        assert_eq!(seen[1], 0);
        assert!((850..1150).contains(&seen[2]), "{seen:?}");
    }

    #[test]
    fn rejects_bad_params() {
        let f = Fixture::new(&[1, 1]);
        let ctx =
            super::BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
        for bad in ["weighting: flops", "min_free_kv: 0", "min_free_kv: 1.5", "min_free_kv: .nan"] {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(bad).expect("yaml");
            assert!((super::ENTRY.build)(&v, &ctx).is_err(), "{bad}");
        }
    }
}
