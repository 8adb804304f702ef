//! `weighted_round_robin`: nginx smooth weighted round robin. Each pick adds every candidate's
//! effective weight to its current weight, picks the largest current weight (strictly greater
//! wins, so the earliest candidate wins ties), and subtracts the total from the winner. For
//! weights 5, 1, 1 this gives `a a b a c a a`: interleaved, not bursty.
//!
//! Signals: none (weights only). Effective weight equals the configured weight until health
//! checking (a later layer) lowers it. Stream: none.

use super::{parse_params, BuildCtx, RequestView, RouteView, Router, RouterEntry};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

/// Smooth-WRR state shared with `least_requests`' tie-breaker.
#[derive(Debug, Clone)]
pub(super) struct Swrr {
    current: Vec<i64>,
}

impl Swrr {
    pub(super) fn new(replicas: usize) -> Swrr {
        Swrr { current: vec![0; replicas] }
    }

    /// One smooth-WRR selection among `peers` (replica ids in scan order).
    pub(super) fn pick(&mut self, peers: impl Iterator<Item = u32>, weights: &[u32]) -> u32 {
        let mut total: i64 = 0;
        let mut best: Option<u32> = None;
        for r in peers {
            let w = i64::from(weights[r as usize]);
            self.current[r as usize] += w;
            total += w;
            match best {
                Some(b) if self.current[r as usize] <= self.current[b as usize] => {}
                _ => best = Some(r),
            }
        }
        let b = best.expect("smooth WRR over an empty peer set");
        self.current[b as usize] -= total;
        b
    }
}

struct WeightedRoundRobin {
    swrr: Swrr,
}

impl Router for WeightedRoundRobin {
    fn route(&mut self, _req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        self.swrr.pick(view.candidates.iter().copied(), view.weights)
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let _: Params = parse_params(v)?;
    Ok(Box::new(WeightedRoundRobin { swrr: Swrr::new(ctx.weights.len()) }))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "weighted_round_robin",
    summary: "nginx smooth weighted round robin over pool weights (a a b a c a a for 5,1,1)",
    params: &[],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;

    #[test]
    fn nginx_sequence_for_weights_5_1_1() {
        let mut f = Fixture::new(&[5, 1, 1]);
        let mut r = f.build("weighted_round_robin", "");
        assert_eq!(f.route_accumulating(r.as_mut(), 7), vec![0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(f.route_accumulating(r.as_mut(), 7), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn equal_weights_is_plain_round_robin() {
        let mut f = Fixture::new(&[2, 2, 2]);
        let mut r = f.build("weighted_round_robin", "");
        assert_eq!(f.route_accumulating(r.as_mut(), 6), vec![0, 1, 2, 0, 1, 2]);
    }
}
