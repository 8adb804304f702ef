//! `vllm_dp`: vLLM's internal data-parallel load balancer (`DPLBAsyncMPClient.
//! get_core_engine_for_request` in `vllm/v1/engine/core_client.py`, the v0.9–v0.11 rule).
//!
//! vLLM keeps `lb_engines[i] = [waiting, running]` per engine, replaced wholesale whenever the
//! DP coordinator publishes new stats (every 100 ms while they change). Each request scans the
//! engines from `eng_start_index`, scores `waiting * 4 + running` and keeps the first strict
//! minimum; it then bumps the chosen engine's *local* waiting count by `client_count`
//! ("increment local waiting count for better balancing between stats updates"), so a burst
//! between two stats updates spreads instead of piling on the engine that looked idle —
//! the "cached + dispatch delta" fix the issues corpus reports for stale-load routers
//! (reference §6, "Stale or partial signals").
//!
//! Here: `waiting` and `running` are the scraped `queued` and `in_service`. Per replica this
//! gateway keeps `delta[r]`, the waiting bumps it added since the last scrape, and scores
//! `waiting_weight × (queued[r] + delta[r]) + in_service[r]`; the minimum wins, ties go to the
//! first candidate in scan order. A new scrape is detected when any candidate's
//! `(queued, in_service)` differs from the values seen at the previous decision; then every
//! delta is dropped (an O(1) epoch bump), as vLLM drops its local bumps when `lb_engines` is
//! replaced. A scrape that returns exactly the previous values for every candidate goes
//! unnoticed, so the deltas then live until the next visible change (slightly more
//! conservative than vLLM); a replica joining the candidate set with values different from
//! those last seen for it also counts as a change. With live metrics (`metrics_refresh_ms: 0`) the values change on
//! almost every event and the delta rarely survives — the live view already counts the
//! dispatched request.
//!
//! Scan order: vLLM starts at `eng_start_index = n · client_index / client_count`; here the
//! scan starts at candidate position `(n · gateway / client_count) mod n`, which with the
//! default `client_count: 1` is position 0 — ties go to the lowest replica index. Newer vLLM
//! (2026) rotates the start on every pick and scores `max(client_count · in_flight, waiting +
//! running)` plus a KV-pressure term on waiting; that variant is not modelled.
//!
//! Signals: `queued`, `in_service` (scraped, as old as `metrics_refresh_ms`) plus this
//! gateway's own dispatch deltas (exact, local). Stream: none (deterministic).

use super::{parse_params, BuildCtx, ParamDoc, RequestView, RouteView, Router, RouterEntry};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_waiting_weight")]
    waiting_weight: u32,
    #[serde(default = "default_client_count")]
    client_count: u32,
    #[serde(default = "default_dispatch_delta")]
    dispatch_delta: bool,
}

fn default_waiting_weight() -> u32 {
    4
}

fn default_client_count() -> u32 {
    1
}

fn default_dispatch_delta() -> bool {
    true
}

impl Default for Params {
    fn default() -> Params {
        Params {
            waiting_weight: default_waiting_weight(),
            client_count: default_client_count(),
            dispatch_delta: default_dispatch_delta(),
        }
    }
}

/// Most `waiting_weight` accepted (keeps the u64 score far from overflow).
const MAX_WAITING_WEIGHT: u32 = 1 << 16;

struct VllmDp {
    waiting_weight: u64,
    bump: u32,
    dispatch_delta: bool,
    client_count: u64,
    gateway: u64,
    /// `(queued, in_service)` per replica as seen at the previous decision.
    seen_queued: Vec<u32>,
    seen_in_service: Vec<u32>,
    /// Local waiting bumps per replica, valid only while `delta_epoch[r] == epoch`.
    delta: Vec<u32>,
    delta_epoch: Vec<u64>,
    /// Bumped at every detected scrape.
    epoch: u64,
}

impl VllmDp {
    fn ensure_len(&mut self, n: usize) {
        if self.delta.len() < n {
            self.seen_queued.resize(n, 0);
            self.seen_in_service.resize(n, 0);
            self.delta.resize(n, 0);
            self.delta_epoch.resize(n, 0);
        }
    }

    /// Records the scraped values; drops every delta if any candidate's values changed.
    fn observe(&mut self, view: &RouteView<'_>) {
        let mut changed = false;
        for &r in view.candidates {
            let (q, s) = (view.queued[r as usize], view.in_service[r as usize]);
            let i = r as usize;
            if self.seen_queued[i] != q || self.seen_in_service[i] != s {
                self.seen_queued[i] = q;
                self.seen_in_service[i] = s;
                changed = true;
            }
        }
        if changed {
            self.epoch += 1;
        }
    }

    fn delta_of(&self, r: u32) -> u32 {
        if self.delta_epoch[r as usize] == self.epoch {
            self.delta[r as usize]
        } else {
            0
        }
    }

    fn score(&self, view: &RouteView<'_>, r: u32) -> u64 {
        let waiting = u64::from(view.queued[r as usize]) + u64::from(self.delta_of(r));
        self.waiting_weight * waiting + u64::from(view.in_service[r as usize])
    }
}

impl Router for VllmDp {
    fn route(&mut self, _req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        let c = view.candidates;
        self.ensure_len(view.queued.len());
        if self.dispatch_delta {
            self.observe(view);
        }
        let n = c.len();
        let start = (n as u64 * self.gateway / self.client_count) as usize % n;
        let mut best = c[start];
        let mut best_score = self.score(view, best);
        for i in 1..n {
            let r = c[(start + i) % n];
            let s = self.score(view, r);
            if s < best_score {
                best = r;
                best_score = s;
            }
        }
        if self.dispatch_delta {
            let i = best as usize;
            if self.delta_epoch[i] != self.epoch {
                self.delta_epoch[i] = self.epoch;
                self.delta[i] = 0;
            }
            self.delta[i] = self.delta[i].saturating_add(self.bump);
        }
        best
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    if p.waiting_weight == 0 || p.waiting_weight > MAX_WAITING_WEIGHT {
        return Err(format!(
            "waiting_weight = {}: must be in 1..={MAX_WAITING_WEIGHT} (vLLM uses 4)",
            p.waiting_weight
        ));
    }
    if p.client_count == 0 {
        return Err("client_count = 0: must be at least 1 (API-server processes)".to_string());
    }
    let n = ctx.replicas.len();
    Ok(Box::new(VllmDp {
        waiting_weight: u64::from(p.waiting_weight),
        bump: p.client_count,
        dispatch_delta: p.dispatch_delta,
        client_count: u64::from(p.client_count),
        gateway: u64::from(ctx.gateway),
        seen_queued: vec![0; n],
        seen_in_service: vec![0; n],
        delta: vec![0; n],
        delta_epoch: vec![0; n],
        epoch: 0,
    }))
}

/// Registry entry.
pub static ENTRY: RouterEntry = RouterEntry {
    name: "vllm_dp",
    summary: "vLLM DP balancer: min 4*waiting + running (scraped) + local dispatch delta",
    params: &[
        ParamDoc {
            name: "waiting_weight",
            default: "4",
            doc: "score = waiting_weight * (waiting + delta) + running (1..=65536)",
        },
        ParamDoc {
            name: "client_count",
            default: "1",
            doc: "vLLM API-server count: waiting bump per pick; scan starts at n*gateway/count",
        },
        ParamDoc {
            name: "dispatch_delta",
            default: "true",
            doc: "bump the pick's waiting count locally until the next scrape (false: pure scrape)",
        },
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::super::RequestView;

    fn route(r: &mut dyn super::Router, f: &Fixture) -> u32 {
        r.route(&RequestView::default(), &f.view())
    }

    #[test]
    fn waiting_counts_four_times_running() {
        let mut f = Fixture::new(&[1, 1, 1]);
        // Scores: 4*1+0 = 4, 4*0+5 = 5, 4*0+3 = 3.
        f.queued = vec![1, 0, 0];
        f.in_service = vec![0, 5, 3];
        let mut r = f.build("vllm_dp", "dispatch_delta: false");
        assert_eq!(route(r.as_mut(), &f), 2);
        f.in_service = vec![0, 5, 4];
        // 4, 5, 4: tie between 0 and 2 -> lowest index.
        assert_eq!(route(r.as_mut(), &f), 0);
    }

    #[test]
    fn without_delta_a_stale_scrape_herds() {
        let f = Fixture::new(&[1, 1, 1]);
        let mut r = f.build("vllm_dp", "dispatch_delta: false");
        let picks: Vec<u32> = (0..5).map(|_| route(r.as_mut(), &f)).collect();
        assert_eq!(picks, vec![0; 5]);
    }

    #[test]
    fn delta_spreads_a_burst_between_scrapes() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.in_service = vec![0, 0, 2];
        let mut r = f.build("vllm_dp", "");
        // Scores start 0, 0, 2; each pick adds 4 to the pick's score.
        // 0 -> (4,0,2) 1 -> (4,4,2) 2 -> (4,4,6) 0 -> (8,4,6) 1.
        let picks: Vec<u32> = (0..5).map(|_| route(r.as_mut(), &f)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1]);
    }

    #[test]
    fn a_new_scrape_drops_the_deltas() {
        let mut f = Fixture::new(&[1, 1]);
        let mut r = f.build("vllm_dp", "");
        assert_eq!(route(r.as_mut(), &f), 0); // delta (1, 0)
        assert_eq!(route(r.as_mut(), &f), 1); // delta (1, 1)
        assert_eq!(route(r.as_mut(), &f), 0); // delta (2, 1): scores 8, 4
                                              // The scrape now shows replica 1 running one request: scores 0 and 1 without the
                                              // old deltas (they would give 8 and 5 and pick 1).
        f.in_service = vec![0, 1];
        assert_eq!(route(r.as_mut(), &f), 0);
        // Same scrape again: the new delta on 0 (4) stays, so 1 (score 1) wins.
        assert_eq!(route(r.as_mut(), &f), 1);
    }

    #[test]
    fn client_count_scales_the_bump_and_offsets_the_scan() {
        let f = Fixture::new(&[1, 1, 1, 1]);
        // Gateway 1 of 2 starts scanning at position 4*1/2 = 2: ties go to replica 2 first.
        let mut r = f.build_for_gateway("vllm_dp", "client_count: 2", 1);
        assert_eq!(route(r.as_mut(), &f), 2);
        // Bump 2 waiting = score 8 on replica 2; the next tie at 0 starts the scan at 2 -> 3.
        assert_eq!(route(r.as_mut(), &f), 3);
        assert_eq!(route(r.as_mut(), &f), 0);
    }

    #[test]
    fn rejects_bad_params() {
        let f = Fixture::new(&[1, 1]);
        let ctx =
            super::BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
        for bad in ["waiting_weight: 0", "client_count: 0", "waiting_weight: -1", "bogus: 1"] {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(bad).expect("yaml");
            assert!((super::ENTRY.build)(&v, &ctx).is_err(), "{bad}");
        }
    }
}
