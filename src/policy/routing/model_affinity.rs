//! `model_affinity`: send a request to a replica that already has its model, so multi-model
//! pools avoid cold starts (model swaps) whenever a warm replica exists.
//!
//! Rule:
//!
//! 1. Affinity set: candidates whose `loaded_model[r] == req.model` — the model is loaded or
//!    being loaded there (a load in progress counts: joining it is cheaper than starting
//!    another). `u16::MAX` (nothing loaded) never matches.
//! 2. If the set is non-empty: within it, the fewest requests in flight from this gateway per
//!    unit weight (`in_flight_i · w_best < in_flight_best · w_i` in integers, as
//!    `least_requests`); ties are broken by nginx smooth weighted round robin among the tied
//!    affinity candidates, scanning from the first best, so equal loads rotate instead of
//!    piling on the lowest index.
//! 3. Otherwise the same least-in-flight rule over all candidates: the request causes a cold
//!    start wherever it lands, so it lands where this gateway has the least work queued.
//!
//! This is the model-level analogue of the LoRA-affinity stage of the gateways (reference
//! §2.3): the legacy GIE `loraAffinity` filter keeps pods with the adapter active or waiting
//! (falling back to pods with a free adapter slot), and llm-d's `lora-affinity-scorer` gives
//! active 1.0 / free slot 0.8 / waiting 0.6. Routelab replicas hold one model at a time, so
//! "loaded or loading" is a single yes/no and there is no free-slot tier.
//!
//! Signals: `loaded_model` (scraped: as old as `metrics_refresh_ms`, so a replica that just
//! started swapping may still look warm for the old model), this gateway's in-flight counters
//! (exact, local). Stream: none.

use super::weighted_round_robin::Swrr;
use super::{parse_params, BuildCtx, RequestView, RouteView, Router, RouterEntry};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

struct ModelAffinity {
    swrr: Swrr,
}

/// Position of the first least-loaded candidate accepted by `keep`, and whether another
/// accepted candidate ties with it (`None` when `keep` accepts none).
fn least_loaded(view: &RouteView<'_>, keep: impl Fn(u32) -> bool) -> Option<(usize, bool)> {
    let c = view.candidates;
    let load = |r: u32| u64::from(view.in_flight[r as usize]);
    let weight = |r: u32| u64::from(view.weights[r as usize]);
    let mut best: Option<(usize, bool)> = None;
    for (pos, &r) in c.iter().enumerate() {
        if !keep(r) {
            continue;
        }
        match best {
            None => best = Some((pos, false)),
            Some((bp, _)) => {
                let b = c[bp];
                let (lhs, rhs) = (load(r) * weight(b), load(b) * weight(r));
                if lhs < rhs {
                    best = Some((pos, false));
                } else if lhs == rhs {
                    best = Some((bp, true));
                }
            }
        }
    }
    best
}

impl Router for ModelAffinity {
    fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        let warm = |r: u32| req.model != u16::MAX && view.loaded_model[r as usize] == req.model;
        let (pos, many, only_warm) = match least_loaded(view, warm) {
            Some((pos, many)) => (pos, many, true),
            None => {
                let (pos, many) = least_loaded(view, |_| true).expect("candidates are non-empty");
                (pos, many, false)
            }
        };
        let c = view.candidates;
        let b = c[pos];
        if !many {
            return b;
        }
        let load = |r: u32| u64::from(view.in_flight[r as usize]);
        let weight = |r: u32| u64::from(view.weights[r as usize]);
        let tied = c[pos..]
            .iter()
            .copied()
            .filter(|&r| (!only_warm || warm(r)) && load(r) * weight(b) == load(b) * weight(r));
        self.swrr.pick(tied, view.weights)
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let _: Params = parse_params(v)?;
    Ok(Box::new(ModelAffinity { swrr: Swrr::new(ctx.weights.len()) }))
}

/// Registry entry.
pub static ENTRY: RouterEntry = RouterEntry {
    name: "model_affinity",
    summary: "replicas with the model loaded (scraped) first, then least in flight per weight",
    params: &[],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::super::RequestView;

    fn for_model(model: u16) -> RequestView<'static> {
        RequestView { model, ..Default::default() }
    }

    #[test]
    fn prefers_a_warm_replica_even_if_busier() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.loaded_model = vec![1, 0, 1];
        f.in_flight = vec![0, 7, 0];
        let mut r = f.build("model_affinity", "");
        for _ in 0..5 {
            assert_eq!(r.route(&for_model(0), &f.view()), 1);
        }
    }

    #[test]
    fn warm_replicas_balance_per_weight() {
        let mut f = Fixture::new(&[1, 2, 1, 1]);
        f.loaded_model = vec![3, 3, 0, 3];
        f.in_flight = vec![2, 3, 0, 4];
        let mut r = f.build("model_affinity", "");
        // Warm: 0 (2/1), 1 (3/2), 3 (4/1); the idle cold replica 2 is not considered.
        assert_eq!(r.route(&for_model(3), &f.view()), 1);
    }

    #[test]
    fn no_warm_replica_means_least_in_flight_overall() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.loaded_model = vec![1, u16::MAX, 2];
        f.in_flight = vec![3, 1, 2];
        let mut r = f.build("model_affinity", "");
        assert_eq!(r.route(&for_model(0), &f.view()), 1);
        // u16::MAX is "nothing loaded", never a match, even for a request asking for it.
        f.in_flight = vec![0, 1, 2];
        assert_eq!(r.route(&for_model(u16::MAX), &f.view()), 0);
    }

    #[test]
    fn ties_rotate_among_warm_replicas_only() {
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        f.loaded_model = vec![0, 1, 0, 0];
        let mut r = f.build("model_affinity", "");
        let picks: Vec<u32> = (0..6).map(|_| r.route(&for_model(0), &f.view())).collect();
        assert_eq!(picks, vec![0, 2, 3, 0, 2, 3]);
    }

    #[test]
    fn accumulating_load_stays_on_warm_replicas() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.loaded_model = vec![0, 1, 1];
        let mut r = f.build("model_affinity", "");
        for _ in 0..6 {
            let pick = r.route(&for_model(1), &f.view());
            f.in_flight[pick as usize] += 1;
        }
        assert_eq!(f.in_flight, vec![0, 3, 3]);
        // RequestView::default() asks for model 0: only replica 0 is warm for it.
        f.route_accumulating(r.as_mut(), 10);
        assert_eq!(f.in_flight, vec![10, 3, 3]);
    }
}
