//! `power_of_d`: Envoy `LEAST_REQUEST` — the power of d choices.
//!
//! With equal weights and `selection_method: n_choices` (the default) it draws `d` candidates
//! *with replacement* (`random() mod n` each), keeps the first, and replaces it only by a later
//! draw with strictly fewer active requests, so ties keep the earlier draw and with d = 2 the
//! busier of two hosts still wins 25% of the time when both draws land on it. `full_scan`
//! takes the minimum over all candidates, ties broken uniformly (reservoir sampling).
//!
//! With unequal weights it switches, as Envoy does, to an earliest-deadline-first schedule
//! over dynamic weights `w / (active + 1)^active_request_bias`; a host's weight is evaluated
//! when it is (re)inserted after being picked, so it is stale by one pick (Envoy's documented
//! behaviour). The schedule starts at a seed-dependent point so gateways are not in lockstep.
//!
//! Signals: this gateway's active (in-flight) requests, exact and local (Envoy `rq_active`).
//! Stream: `router:power_of_d`.

use super::RouterEntry;
use super::{equal_weights, parse_params, BuildCtx, ParamDoc, RequestView, RouteView, Router};
use crate::rng::Stream;
use serde::Deserialize;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Selection {
    #[default]
    NChoices,
    FullScan,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_d")]
    d: u32,
    #[serde(default = "default_bias")]
    active_request_bias: f64,
    #[serde(default)]
    selection_method: Selection,
}

fn default_d() -> u32 {
    2
}

fn default_bias() -> f64 {
    1.0
}

impl Default for Params {
    fn default() -> Params {
        Params { d: 2, active_request_bias: 1.0, selection_method: Selection::NChoices }
    }
}

#[derive(Debug, Clone, Copy)]
struct EdfEntry {
    deadline: f64,
    seq: u64,
    replica: u32,
}

impl PartialEq for EdfEntry {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for EdfEntry {}
impl PartialOrd for EdfEntry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for EdfEntry {
    /// Reversed so `BinaryHeap` pops the earliest deadline; FIFO among equal deadlines.
    fn cmp(&self, o: &Self) -> Ordering {
        o.deadline.total_cmp(&self.deadline).then(o.seq.cmp(&self.seq))
    }
}

struct PowerOfD {
    d: u32,
    bias: f64,
    selection: Selection,
    rng: Stream,
    edf: BinaryHeap<EdfEntry>,
    edf_now: f64,
    edf_seq: u64,
    edf_epoch: Option<u64>,
}

impl PowerOfD {
    fn n_choices(&mut self, view: &RouteView<'_>) -> u32 {
        let c = view.candidates;
        let mut best = c[self.rng.index_mod(c.len())];
        for _ in 1..self.d {
            let r = c[self.rng.index_mod(c.len())];
            if view.in_flight[r as usize] < view.in_flight[best as usize] {
                best = r;
            }
        }
        best
    }

    fn full_scan(&mut self, view: &RouteView<'_>) -> u32 {
        let mut best = view.candidates[0];
        let mut ties = 1u64;
        for &r in &view.candidates[1..] {
            let (l, b) = (view.in_flight[r as usize], view.in_flight[best as usize]);
            if l < b {
                best = r;
                ties = 1;
            } else if l == b {
                ties += 1;
                if self.rng.next_u64() % ties == 0 {
                    best = r;
                }
            }
        }
        best
    }

    fn dynamic_weight(&self, view: &RouteView<'_>, r: u32) -> f64 {
        let w = f64::from(view.weights[r as usize]);
        let active = f64::from(view.in_flight[r as usize]);
        if self.bias == 0.0 {
            w
        } else if self.bias == 1.0 {
            w / (active + 1.0)
        } else {
            w / (active + 1.0).powf(self.bias)
        }
    }

    fn edf_push(&mut self, view: &RouteView<'_>, r: u32) {
        let deadline = self.edf_now + 1.0 / self.dynamic_weight(view, r);
        self.edf.push(EdfEntry { deadline, seq: self.edf_seq, replica: r });
        self.edf_seq += 1;
    }

    fn edf_pick(&mut self, view: &RouteView<'_>) -> u32 {
        if self.edf_epoch != Some(view.candidates_epoch) || self.edf.is_empty() {
            self.edf.clear();
            self.edf_now = 0.0;
            for &r in view.candidates {
                self.edf_push(view, r);
            }
            self.edf_epoch = Some(view.candidates_epoch);
            for _ in 0..self.rng.index_mod(view.candidates.len()) {
                self.edf_step(view);
            }
        }
        self.edf_step(view)
    }

    fn edf_step(&mut self, view: &RouteView<'_>) -> u32 {
        let e = self.edf.pop().expect("EDF schedule holds every candidate");
        self.edf_now = e.deadline;
        self.edf_push(view, e.replica);
        e.replica
    }
}

impl Router for PowerOfD {
    fn route(&mut self, _req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        if !equal_weights(view) {
            return self.edf_pick(view);
        }
        match self.selection {
            Selection::NChoices => self.n_choices(view),
            Selection::FullScan => self.full_scan(view),
        }
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    if p.d < 2 {
        return Err(format!("d = {}: must be at least 2 (Envoy choice_count)", p.d));
    }
    if !p.active_request_bias.is_finite() || p.active_request_bias < 0.0 {
        return Err(format!(
            "active_request_bias = {}: must be a finite number >= 0",
            p.active_request_bias
        ));
    }
    Ok(Box::new(PowerOfD {
        d: p.d,
        bias: p.active_request_bias,
        selection: p.selection_method,
        rng: ctx.stream("power_of_d"),
        edf: BinaryHeap::new(),
        edf_now: 0.0,
        edf_seq: 0,
        edf_epoch: None,
    }))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "power_of_d",
    summary: "least of d random picks by this gateway's in-flight count (Envoy LEAST_REQUEST)",
    params: &[
        ParamDoc { name: "d", default: "2", doc: "choices drawn with replacement (>= 2)" },
        ParamDoc {
            name: "active_request_bias",
            default: "1.0",
            doc: "weighted mode: weight / (active + 1)^bias",
        },
        ParamDoc {
            name: "selection_method",
            default: "n_choices",
            doc: "n_choices (sample d) or full_scan (global minimum, random tie-break)",
        },
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;

    #[test]
    fn samples_with_replacement_so_busier_of_two_wins_a_quarter() {
        let mut f = Fixture::new(&[1, 1]);
        f.in_flight = vec![5, 0];
        let mut r = f.build("power_of_d", "");
        let n = 40_000;
        let busy = (0..n).filter(|_| r.route(&Default::default(), &f.view()) == 0).count();
        // Both draws land on replica 0 with probability 1/4: Binomial sd = 86.6; 5 sd.
        assert!((busy as i64 - 10_000).abs() < 433, "{busy}");
    }

    #[test]
    fn ties_keep_the_first_draw() {
        let f = Fixture::new(&[1, 1, 1]);
        let mut r = f.build("power_of_d", "d: 3");
        let mut seen = [0usize; 3];
        for _ in 0..3000 {
            seen[r.route(&Default::default(), &f.view()) as usize] += 1;
        }
        // All idle: the pick is the first draw, uniform.
        assert!(seen.iter().all(|&s| (850..1150).contains(&s)), "{seen:?}");
    }

    #[test]
    fn full_scan_finds_the_global_minimum() {
        let mut f = Fixture::new(&[1, 1, 1, 1, 1]);
        f.in_flight = vec![4, 3, 9, 1, 2];
        let mut r = f.build("power_of_d", "selection_method: full_scan");
        for _ in 0..20 {
            assert_eq!(r.route(&Default::default(), &f.view()), 3);
        }
    }

    #[test]
    fn unequal_weights_use_edf_in_proportion() {
        let mut f = Fixture::new(&[3, 1]);
        let mut r = f.build("power_of_d", "active_request_bias: 0");
        let picks = f.route_accumulating(r.as_mut(), 400);
        let zeros = picks.iter().filter(|&&p| p == 0).count();
        assert!((298..=302).contains(&zeros), "{zeros}");
    }

    #[test]
    fn rejects_d_below_two() {
        let f = Fixture::new(&[1, 1]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str("d: 1").expect("yaml");
        let ctx =
            super::BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
        assert!((super::ENTRY.build)(&v, &ctx).is_err());
    }
}
