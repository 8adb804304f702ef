//! `kv_router`: NVIDIA Dynamo's KV router, current cost function (reference §2.4,
//! `lib/kv-router` `selector/default.rs`, `ActiveSequences`).
//!
//! Rule: every candidate `w` gets a logit (lower is better), with `B = block_size`, `ISL =
//! prompt tokens`, `request_blocks = ceil(ISL / B)` and `overlap(w)` = leading blocks of the
//! prompt that `w` holds according to the replicas' KV events:
//!
//! ```text
//! raw_prefill_blocks(w) = (active_prefill_tokens(w) + ISL) / B
//! decay(w)              = 1 / (1 + overlap_score_credit_decay
//!                              · (active_prefill_tokens(w) − min_w' active_prefill_tokens(w')) / B
//!                              / request_blocks)                       (1 when the decay is 0)
//! overlap_credit(w)     = overlap_score_credit · decay(w) · overlap(w)   (host / disk tiers: 0)
//! prefill_cost(w)       = prefill_load_scale · max(0, raw_prefill_blocks(w) − overlap_credit(w))
//! decode_cost(w)        = active_blocks(w) + (request_blocks − overlap(w))
//! logit(w)              = prefill_cost(w) + decode_cost(w)
//!                         + decode_active_request_weight · active_requests(w)
//! ```
//!
//! Selection (Dynamo `softmax_sample`): with `router_temperature = 0` the minimum logit; ties go
//! to the smallest "tree size" (fewest cached blocks), then uniformly at random (reservoir
//! sampling, one draw per extra tie). With `T > 0`, `x_w = logit_w / (max − min)` and `p_w ∝
//! exp(−x_w / T)` (uniform when all logits are equal), sampled with one uniform draw against
//! the cumulative probabilities in candidate order.
//!
//! Router-side active load per replica (Dynamo `ActiveSequences`), tracked from this gateway's
//! own decisions: `active_prefill_tokens` (the chosen replica's uncached prompt tokens, `ISL −
//! overlap·B` floored at 0, added at routing and removed at the request's first token, or at its
//! end if no token came), `active_blocks` and `active_requests` (added at routing, removed when
//! the request ends).
//!
//! Simplifications, all documented deviations: `active_blocks` counts `ceil(ISL / B)` blocks per
//! active request rather than Dynamo's set of unique blocks (shared prefixes are counted once
//! per request, and decode growth is not tracked), and "blocks of this request not already in
//! w's active set" is approximated by `request_blocks − overlap(w)` (blocks w does not already
//! cache). The tie-break "tree size" is the replica's scraped KV use in blocks (`kv_util ×
//! kv_capacity_blocks`), since the KV-event index is not queried for per-replica totals. Only
//! the device tier exists, so the host/disk hit weights and shared-cache multiplier do not
//! apply, and there is no router queue (`router_queue_threshold`) or busy threshold.
//!
//! Signals and freshness: overlap from KV events (exact residency, as late as
//! `gateway.kv_event_delay_ms`); active load exact but local to this gateway replica (Dynamo
//! without `router_replica_sync`); `kv_util` as of the last scrape (tie-break only). Per route:
//! O(prompt blocks + candidates) plus a `BTreeMap` insert; scratch buffers are reused.
//! Stream: `router:kv_router` (ties at T = 0, sampling at T > 0).

use super::RouterEntry;
use super::{
    parse_params, BuildCtx, Completion, FirstToken, ParamDoc, RequestView, RouteView, Router,
};
use crate::rng::Stream;
use serde::Deserialize;
use std::cmp::Ordering;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    overlap_score_credit: f64,
    overlap_score_credit_decay: f64,
    prefill_load_scale: f64,
    decode_active_request_weight: f64,
    router_temperature: f64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            overlap_score_credit: 1.0,
            overlap_score_credit_decay: 0.0,
            prefill_load_scale: 1.0,
            decode_active_request_weight: 0.0,
            router_temperature: 0.0,
        }
    }
}

impl Params {
    fn validate(&self) -> Result<(), String> {
        let c = self.overlap_score_credit;
        if !(0.0..=1.0).contains(&c) {
            return Err(format!("overlap_score_credit = {c}: must be in [0, 1]"));
        }
        for (name, v) in [
            ("overlap_score_credit_decay", self.overlap_score_credit_decay),
            ("prefill_load_scale", self.prefill_load_scale),
            ("decode_active_request_weight", self.decode_active_request_weight),
            ("router_temperature", self.router_temperature),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} = {v}: must be a finite number >= 0"));
            }
        }
        Ok(())
    }
}

/// A request this gateway routed that has not ended.
#[derive(Debug, Clone, Copy)]
struct Active {
    replica: u32,
    /// Uncached prompt tokens still counted as pending prefill (0 after the first token).
    prefill_tokens: u64,
    blocks: u64,
}

struct KvRouter {
    p: Params,
    rng: Stream,
    active_prefill_tokens: Vec<u64>,
    active_blocks: Vec<u64>,
    active_requests: Vec<u64>,
    live: BTreeMap<u64, Active>,
    /// Scratch: overlap per candidate position.
    overlap: Vec<u32>,
    /// Scratch: logit per candidate position.
    logits: Vec<f64>,
}

impl KvRouter {
    fn new(p: Params, replicas: usize, rng: Stream) -> KvRouter {
        KvRouter {
            p,
            rng,
            active_prefill_tokens: vec![0; replicas],
            active_blocks: vec![0; replicas],
            active_requests: vec![0; replicas],
            live: BTreeMap::new(),
            overlap: Vec::new(),
            logits: Vec::new(),
        }
    }

    fn ensure(&mut self, r: u32) {
        let n = r as usize + 1;
        if self.active_blocks.len() < n {
            self.active_prefill_tokens.resize(n, 0);
            self.active_blocks.resize(n, 0);
            self.active_requests.resize(n, 0);
        }
    }

    /// Fills `self.logits` for the candidates (and `self.overlap` from the KV index).
    fn score(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) {
        let c = view.candidates;
        if let Some(&max) = c.last() {
            self.ensure(max);
        }
        view.kv_index.leading_matches(req.hashes, c, &mut self.overlap);
        let b = u64::from(view.block_size.max(1));
        let bf = b as f64;
        let isl = u64::from(req.prompt_tokens);
        let request_blocks = isl.div_ceil(b);
        let decaying = self.p.overlap_score_credit_decay > 0.0 && request_blocks > 0;
        let min_apt = if decaying {
            c.iter().map(|&r| self.active_prefill_tokens[r as usize]).min().unwrap_or(0)
        } else {
            0
        };
        self.logits.clear();
        for (i, &r) in c.iter().enumerate() {
            let r = r as usize;
            let apt = self.active_prefill_tokens[r];
            let overlap = u64::from(self.overlap.get(i).copied().unwrap_or(0));
            let raw_prefill_blocks = (apt + isl) as f64 / bf;
            let decay = if decaying {
                let excess = (apt - min_apt) as f64 / bf / request_blocks as f64;
                1.0 / (1.0 + self.p.overlap_score_credit_decay * excess)
            } else {
                1.0
            };
            let credit = self.p.overlap_score_credit * decay * overlap as f64;
            let prefill = self.p.prefill_load_scale * (raw_prefill_blocks - credit).max(0.0);
            let decode = (self.active_blocks[r] + request_blocks.saturating_sub(overlap)) as f64;
            let requests = self.p.decode_active_request_weight * self.active_requests[r] as f64;
            self.logits.push(prefill + decode + requests);
        }
    }

    /// T = 0: minimum logit, then smallest tree size, then reservoir-uniform.
    fn argmin(&mut self, view: &RouteView<'_>) -> usize {
        let tree = |pos: usize| {
            let r = view.candidates[pos] as usize;
            f64::from(view.kv_util[r]) * f64::from(view.replicas[r].kv_capacity_blocks)
        };
        let mut best = 0;
        let mut ties = 1u64;
        for pos in 1..self.logits.len() {
            let ord = self.logits[pos]
                .total_cmp(&self.logits[best])
                .then_with(|| tree(pos).total_cmp(&tree(best)));
            match ord {
                Ordering::Less => {
                    best = pos;
                    ties = 1;
                }
                Ordering::Equal => {
                    ties += 1;
                    if self.rng.next_u64() % ties == 0 {
                        best = pos;
                    }
                }
                Ordering::Greater => {}
            }
        }
        best
    }

    /// T > 0: `p ∝ exp(−(logit / (max − min)) / T)`, one uniform draw.
    fn sample(&mut self) -> usize {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &l in &self.logits {
            lo = lo.min(l);
            hi = hi.max(l);
        }
        let scale = if hi > lo { 1.0 / ((hi - lo) * self.p.router_temperature) } else { 0.0 };
        // Shifted by the minimum for range; the common factor cancels in the normalisation.
        let weight = |l: f64| (-(l - lo) * scale).exp();
        let total: f64 = self.logits.iter().map(|&l| weight(l)).sum();
        let u = self.rng.uniform_open() * total;
        let mut cumulative = 0.0;
        for (pos, &l) in self.logits.iter().enumerate() {
            cumulative += weight(l);
            if u <= cumulative {
                return pos;
            }
        }
        self.logits.len() - 1
    }

    /// Ends the router-side accounting of `id`, if it is live.
    fn release(&mut self, id: u64) {
        if let Some(a) = self.live.remove(&id) {
            let r = a.replica as usize;
            self.active_prefill_tokens[r] -= a.prefill_tokens;
            self.active_blocks[r] -= a.blocks;
            self.active_requests[r] -= 1;
        }
    }
}

impl Router for KvRouter {
    fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        self.score(req, view);
        let pos = if self.p.router_temperature == 0.0 { self.argmin(view) } else { self.sample() };
        let r = view.candidates[pos];
        let b = u64::from(view.block_size.max(1));
        let isl = u64::from(req.prompt_tokens);
        let overlap = u64::from(self.overlap.get(pos).copied().unwrap_or(0));
        let a = Active {
            replica: r,
            prefill_tokens: isl.saturating_sub(overlap * b),
            blocks: isl.div_ceil(b),
        };
        self.release(req.id);
        let ri = r as usize;
        self.active_prefill_tokens[ri] += a.prefill_tokens;
        self.active_blocks[ri] += a.blocks;
        self.active_requests[ri] += 1;
        self.live.insert(req.id, a);
        r
    }

    fn on_first_token(&mut self, ft: &FirstToken) {
        if let Some(a) = self.live.get_mut(&ft.id) {
            self.active_prefill_tokens[a.replica as usize] -= a.prefill_tokens;
            a.prefill_tokens = 0;
        }
    }

    fn on_complete(&mut self, done: &Completion) {
        self.release(done.id);
    }

    fn uses_prefix_hashes(&self) -> bool {
        true
    }

    fn uses_kv_index(&self) -> bool {
        true
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    p.validate()?;
    Ok(Box::new(KvRouter::new(p, ctx.weights.len(), ctx.stream("kv_router"))))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "kv_router",
    summary: "Dynamo KV router: min of prefill blocks after KV-event overlap credit + active \
              decode blocks",
    params: &[
        ParamDoc {
            name: "overlap_score_credit",
            default: "1.0",
            doc: "fraction of each cached leading block credited against prefill, in [0, 1]",
        },
        ParamDoc {
            name: "overlap_score_credit_decay",
            default: "0.0",
            doc: "shrinks the credit of replicas with excess pending prefill (0: no decay)",
        },
        ParamDoc {
            name: "prefill_load_scale",
            default: "1.0",
            doc: "weight of the prefill cost (pending + new uncached prefill blocks)",
        },
        ParamDoc {
            name: "decode_active_request_weight",
            default: "0.0",
            doc: "cost per active request, added to the logit",
        },
        ParamDoc {
            name: "router_temperature",
            default: "0.0",
            doc: "0: minimum logit; T > 0: softmax over logits normalised by their range",
        },
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::super::{Completion, FirstToken, RequestView};
    use crate::time::SimTime;

    /// A request of `tokens` prompt tokens whose shared blocks are `hashes`.
    fn req(id: u64, tokens: u32, hashes: &[u64]) -> RequestView<'_> {
        RequestView { id, prompt_tokens: tokens, hashes, ..Default::default() }
    }

    fn done(id: u64, replica: u32) -> Completion {
        Completion { id, replica, ..Default::default() }
    }

    const H: [u64; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

    #[test]
    fn prefers_the_replica_holding_the_prefix_when_loads_are_equal() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.kv.held[2].extend(H);
        f.kv.held[1].extend(&H[..4]);
        let mut r = f.build("kv_router", "");
        assert!(r.uses_kv_index() && r.uses_prefix_hashes());
        for id in 0..20 {
            assert_eq!(r.route(&req(id, 170, &H), &f.view()), 2);
            r.on_complete(&done(id, 2));
        }
    }

    #[test]
    fn prefers_the_unloaded_replica_when_pending_prefill_outweighs_the_credit() {
        let mut f = Fixture::new(&[1, 1]);
        f.kv_util = vec![0.5, 0.0];
        let mut r = f.build("kv_router", "");
        // Idle tie: the smaller tree (replica 1) wins.
        assert_eq!(r.route(&req(1, 3200, &[]), &f.view()), 1);
        f.kv.held[1].extend(H);
        // r0: prefill 160/16 = 10, decode 10 -> 20. r1: (3200 + 160)/16 - 10 = 200, decode
        // 200 + 0 -> 400.
        assert_eq!(r.route(&req(2, 160, &H), &f.view()), 0);
        // Without the pending long prompt, the cached replica wins: r1 = 0 + 0 + 0 < 20.
        r.on_complete(&done(1, 1));
        r.on_complete(&done(2, 0));
        assert_eq!(r.route(&req(3, 160, &H), &f.view()), 1);
    }

    #[test]
    fn the_first_token_releases_prefill_load_but_not_blocks() {
        let mut f = Fixture::new(&[1, 1]);
        f.kv_util = vec![0.0, 0.5];
        let mut r = f.build("kv_router", "");
        assert_eq!(r.route(&req(1, 2000, &[]), &f.view()), 0, "smaller tree");
        assert_eq!(r.route(&req(2, 2000, &[]), &f.view()), 1, "r0 loaded");
        // Both: prefill 125, blocks 125. A token from request 2 clears r1's prefill only:
        // r0 = (2000 + 160)/16 + 125 + 10 = 270, r1 = 10 + 135 = 145.
        r.on_first_token(&FirstToken { id: 2, replica: 1, now: SimTime::ZERO });
        assert_eq!(r.route(&req(3, 160, &[]), &f.view()), 1);
        r.on_complete(&done(3, 1));
        // Ending request 1 without a token releases its prefill too: r0 = 10 + 10 = 20 <
        // r1 = 145 (kept, r0 would tie r1 at 145 and lose on tree size).
        r.on_complete(&done(1, 0));
        f.kv_util = vec![0.5, 0.0];
        assert_eq!(r.route(&req(4, 160, &[]), &f.view()), 0);
    }

    #[test]
    fn the_credit_decays_with_excess_pending_prefill() {
        let mut f = Fixture::new(&[1, 1]);
        f.kv_util = vec![0.5, 0.0];
        let mut r = f.build("kv_router", "{ overlap_score_credit_decay: 4.0 }");
        assert_eq!(r.route(&req(1, 160, &[]), &f.view()), 1);
        f.kv.held[1].extend(H);
        // r0 = 160/16 + 10 = 20. Without decay r1 = (160 + 160)/16 - 10 + 10 = 20, a tie the
        // smaller tree (r1) wins. With decay 4: excess 10 blocks / 10 request blocks = 1, so
        // the credit is 10 / (1 + 4) = 2 and r1 = 18 + 10 = 28 > 20.
        assert_eq!(r.route(&req(2, 160, &H), &f.view()), 0);
        let mut r = f.build("kv_router", "");
        assert_eq!(r.route(&req(1, 160, &[]), &f.view()), 1);
        assert_eq!(r.route(&req(2, 160, &H), &f.view()), 1, "no decay: tie -> smaller tree");
    }

    #[test]
    fn exact_ties_go_to_the_smaller_tree_then_uniformly() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.kv_util = vec![0.2, 0.1, 0.1];
        let mut r = f.build("kv_router", "");
        let mut seen = [0u32; 3];
        for id in 0..3000 {
            let p = r.route(&req(id, 100, &[]), &f.view());
            seen[p as usize] += 1;
            r.on_complete(&done(id, p));
        }
        assert_eq!(seen[0], 0, "{seen:?}");
        // Binomial(3000, 1/2): sd 27; 5 sd.
        assert!((1365..=1635).contains(&seen[1]), "{seen:?}");
    }

    #[test]
    fn a_positive_temperature_samples_both_favouring_the_cheaper() {
        let mut f = Fixture::new(&[1, 1]);
        f.kv.held[1].extend(&H[..5]);
        let mut r = f.build("kv_router", "{ router_temperature: 1.0 }");
        let mut seen = [0u32; 2];
        for id in 0..4000 {
            let p = r.route(&req(id, 160, &H), &f.view());
            seen[p as usize] += 1;
            r.on_complete(&done(id, p));
        }
        // Logits 20 and 10: x = 2 and 1, p1 = 1 / (1 + e^-1) = 0.731; sd 28, 5 sd.
        assert!((2784..=3064).contains(&seen[1]), "{seen:?}");
    }

    #[test]
    fn rejects_bad_parameters() {
        let f = Fixture::new(&[1]);
        let ctx =
            super::BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
        for bad in [
            "overlap_score_credit: 1.5",
            "prefill_load_scale: -1",
            "router_temperature: .nan",
            "overlap_score_weight: 1",
        ] {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(bad).expect("yaml");
            assert!((super::ENTRY.build)(&v, &ctx).is_err(), "{bad}");
        }
    }
}
