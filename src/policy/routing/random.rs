//! `random`: pick a candidate uniformly at random (Envoy `RANDOM`); with unequal pool weights,
//! with probability proportional to weight (nginx `random`: one draw `x ~ U[0, sum w)`, first
//! cumulative range above `x`).
//!
//! Signals: none. Ties: not applicable. Stream: `router:random`.

use super::{equal_weights, parse_params, BuildCtx, RequestView, RouteView, Router, RouterEntry};
use crate::rng::Stream;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

struct RandomRouter {
    rng: Stream,
}

impl Router for RandomRouter {
    fn route(&mut self, _req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        let c = view.candidates;
        if equal_weights(view) {
            return c[self.rng.index_mod(c.len())];
        }
        let total: u64 = c.iter().map(|&r| u64::from(view.weights[r as usize])).sum();
        let mut x = self.rng.next_u64() % total;
        for &r in c {
            let w = u64::from(view.weights[r as usize]);
            if x < w {
                return r;
            }
            x -= w;
        }
        c[c.len() - 1]
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let _: Params = parse_params(v)?;
    Ok(Box::new(RandomRouter { rng: ctx.stream("random") }))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "random",
    summary: "uniform random pick (weighted by pool weight when weights differ)",
    params: &[],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;

    #[test]
    fn weighted_random_follows_weights() {
        let f = Fixture::new(&[3, 1]);
        let mut r = f.build("random", "");
        let n = 40_000;
        let zeros = (0..n).filter(|_| r.route(&Default::default(), &f.view()) == 0).count();
        // Binomial(n, 0.75): sd = 86.6; 5 sd.
        assert!((zeros as i64 - 30_000).abs() < 433, "{zeros}");
    }

    #[test]
    fn uniform_random_covers_all_candidates() {
        let f = Fixture::new(&[1, 1, 1, 1]);
        let mut r = f.build("random", "");
        let mut seen = [0usize; 4];
        for _ in 0..4000 {
            seen[r.route(&Default::default(), &f.view()) as usize] += 1;
        }
        assert!(seen.iter().all(|&s| (800..1200).contains(&s)), "{seen:?}");
    }
}
