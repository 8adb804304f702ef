//! `round_robin`: Envoy `ROUND_ROBIN` with equal weights — a counter, initialised from the
//! router's stream (`start: random`, Envoy's behaviour) or to 0 (`start: zero`, vLLM
//! production-stack), picks `candidates[counter mod n]` and increments. The counter keeps
//! going when the candidate set changes. Weights are ignored (see `weighted_round_robin`).
//!
//! Signals: none. Ties: not applicable. Stream: `router:round_robin` (start only).

use super::{parse_params, BuildCtx, RequestView, RouteView, Router, RouterEntry};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Start {
    #[default]
    Random,
    Zero,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    start: Start,
}

/// `next` is the Envoy counter; `pos = next mod n` is kept incrementally (no division per
/// pick) and recomputed when the candidate set changes.
struct RoundRobin {
    next: u64,
    pos: usize,
    epoch: Option<(u64, usize)>,
}

impl Router for RoundRobin {
    #[inline]
    fn route(&mut self, _req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        let c = view.candidates;
        if self.epoch != Some((view.candidates_epoch, c.len())) {
            self.epoch = Some((view.candidates_epoch, c.len()));
            self.pos = (self.next % c.len() as u64) as usize;
        }
        let pick = c[self.pos];
        self.next = self.next.wrapping_add(1);
        self.pos += 1;
        if self.pos == c.len() {
            self.pos = 0;
        }
        pick
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    let next = match p.start {
        Start::Random => ctx.stream("round_robin").next_u64() >> 1,
        Start::Zero => 0,
    };
    Ok(Box::new(RoundRobin { next, pos: 0, epoch: None }))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "round_robin",
    summary: "cycle through replicas in order (Envoy ROUND_ROBIN; weights ignored)",
    params: &[super::ParamDoc {
        name: "start",
        default: "random",
        doc: "initial counter: random (Envoy) or zero (vLLM production-stack)",
    }],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;

    #[test]
    fn cycles_in_order_from_zero() {
        let mut f = Fixture::new(&[1, 1, 1]);
        let mut r = f.build("round_robin", "start: zero");
        assert_eq!(f.route_accumulating(r.as_mut(), 7), vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn random_start_still_cycles() {
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        let mut r = f.build("round_robin", "");
        let picks = f.route_accumulating(r.as_mut(), 8);
        for w in picks.windows(2) {
            assert_eq!(w[1], (w[0] + 1) % 4);
        }
    }
}
