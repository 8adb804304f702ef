//! `least_requests`: nginx `least_conn`, weighted. Picks the candidate with the fewest
//! requests in flight *from this gateway* relative to its weight, comparing
//! `conns_i * w_best < conns_best * w_i` in integers. When several candidates tie with the
//! best, smooth weighted round robin runs among the tied candidates, scanning from the first
//! best onward (nginx's tie rule), so equal loads spread evenly rather than piling on the
//! lowest index.
//!
//! Signals: this gateway's in-flight counters (exact, local; blind to other gateways).
//! Stream: none.

use super::weighted_round_robin::Swrr;
use super::{parse_params, BuildCtx, RequestView, RouteView, Router, RouterEntry};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {}

struct LeastRequests {
    swrr: Swrr,
}

impl Router for LeastRequests {
    fn route(&mut self, _req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        let c = view.candidates;
        let load = |r: u32| u64::from(view.in_flight[r as usize]);
        let weight = |r: u32| u64::from(view.weights[r as usize]);
        let mut best_pos = 0;
        let mut many = false;
        for (pos, &r) in c.iter().enumerate().skip(1) {
            let b = c[best_pos];
            let (lhs, rhs) = (load(r) * weight(b), load(b) * weight(r));
            if lhs < rhs {
                best_pos = pos;
                many = false;
            } else if lhs == rhs {
                many = true;
            }
        }
        if !many {
            return c[best_pos];
        }
        let b = c[best_pos];
        let tied =
            c[best_pos..].iter().copied().filter(|&r| load(r) * weight(b) == load(b) * weight(r));
        self.swrr.pick(tied, view.weights)
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let _: Params = parse_params(v)?;
    Ok(Box::new(LeastRequests { swrr: Swrr::new(ctx.weights.len()) }))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "least_requests",
    summary: "fewest in-flight requests from this gateway per unit weight (nginx least_conn)",
    params: &[],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;

    #[test]
    fn picks_fewest_in_flight_per_weight() {
        let mut f = Fixture::new(&[1, 2, 1]);
        f.in_flight = vec![2, 3, 1];
        let mut r = f.build("least_requests", "");
        // loads per weight: 2, 1.5, 1 -> replica 2.
        assert_eq!(r.route(&Default::default(), &f.view()), 2);
        f.in_flight = vec![2, 3, 4];
        // 2, 1.5, 4 -> replica 1.
        assert_eq!(r.route(&Default::default(), &f.view()), 1);
    }

    #[test]
    fn ties_rotate_by_smooth_wrr_instead_of_lowest_index() {
        let f = Fixture::new(&[1, 1, 1]);
        let mut r = f.build("least_requests", "");
        // All idle and the load never accumulates: a plain argmin would always say 0.
        let picks: Vec<u32> = (0..6).map(|_| r.route(&Default::default(), &f.view())).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn accumulating_load_balances_by_weight() {
        let mut f = Fixture::new(&[2, 1]);
        let mut r = f.build("least_requests", "");
        f.route_accumulating(r.as_mut(), 30);
        assert_eq!(f.in_flight, vec![20, 10]);
    }
}
