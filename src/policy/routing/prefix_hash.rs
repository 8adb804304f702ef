//! `prefix_hash`: SGLang's `prefix_hash` (reference §1.9, `policies/prefix_hash.rs`): hash the
//! first `prefix_token_count` prompt tokens onto a consistent-hash ring, keep the ring's choice
//! unless it is overloaded, else take the least-loaded replica that is not. This is the
//! "two-stage" router of AI gateways (prefix hash → home replica, least loaded among the
//! acceptable ones, else the home anyway) with SGLang's exact acceptance test.
//!
//! Key: we have no token ids, only the prompt's chained block hashes (`block_size` tokens per
//! block, block i's hash identifying the whole prefix up to it), so the key is the hash of the
//! last full block inside the first `prefix_token_count` tokens: index
//! `min(prefix_token_count / block_size, hashes.len()) − 1`. Prompts that share those blocks
//! share the key, as token prefixes do in SGLang. Differences: a partial trailing block is not
//! hashed (SGLang hashes `min(len, N)` tokens, so two short prompts differing only after their
//! last full block collide here), and a prompt with no full block in range (or a queue cluster
//! without blocks) uses its session key, or a random key when it has none, where SGLang has no
//! tokens to route by.
//!
//! Ring: SGLang's `HashRing`, 150 unweighted virtual nodes per candidate at
//! `hash("<replica>#<i>")` (pinned FNV-1a + SplitMix64 stand-in for blake3), the first entry at or
//! after `mix64(key)` with wrap-around. Built when `candidates_epoch` is first seen, cached per
//! epoch; an unhealthy replica's arcs fall to the next candidate clockwise as in SGLang.
//!
//! Load test: with `total = Σ in_flight` over the candidates and `n` candidates, a replica is
//! acceptable iff `total == 0` or `in_flight ≤ (total + 1) / n × load_factor` (floats, the `+1`
//! counts the incoming request). Ring choice acceptable → it; else the acceptable candidate
//! with the fewest in-flight requests (lowest replica id on ties); none acceptable → the ring
//! choice. Signals: this gateway's in-flight counts (SGLang `worker.load()`: exact, local).
//! Weights are ignored (SGLang's ring is unweighted). Cost: O(log ring) when the home replica
//! is acceptable (plus the O(candidates) load sum), O(candidates) otherwise; no allocation.
//! Stream: `router:prefix_hash` (random keys only).

use super::consistent_hash::{request_hash, EpochCache, Ring};
use super::{parse_params, BuildCtx, ParamDoc, RequestView, RouteView, Router, RouterEntry};
use crate::rng::{mix64, Stream};
use serde::Deserialize;

/// SGLang `VIRTUAL_NODES_PER_WORKER`.
const VIRTUAL_NODES: u32 = 150;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_prefix_tokens")]
    prefix_token_count: u32,
    #[serde(default = "default_load_factor")]
    load_factor: f64,
}

fn default_prefix_tokens() -> u32 {
    256
}

fn default_load_factor() -> f64 {
    1.25
}

impl Default for Params {
    fn default() -> Params {
        Params { prefix_token_count: default_prefix_tokens(), load_factor: default_load_factor() }
    }
}

struct PrefixHash {
    prefix_tokens: u32,
    load_factor: f64,
    rings: EpochCache<Ring>,
    rng: Stream,
}

impl PrefixHash {
    /// The ring hash of the request's key (see the module docs).
    fn key_hash(&mut self, req: &RequestView<'_>, block_size: u32) -> u64 {
        let blocks = self.prefix_tokens.checked_div(block_size).unwrap_or(0) as usize;
        let last = blocks.min(req.hashes.len());
        if last > 0 {
            return mix64(req.hashes[last - 1]);
        }
        request_hash(req.session, &mut self.rng)
    }

    /// SGLang `load_ok`.
    fn acceptable(&self, load: u32, total: u64, n: usize) -> bool {
        total == 0 || f64::from(load) <= (total + 1) as f64 / n as f64 * self.load_factor
    }
}

impl Router for PrefixHash {
    fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        let h = self.key_hash(req, view.block_size);
        let ring =
            self.rings.get(view.candidates_epoch, || Ring::uniform(view.candidates, VIRTUAL_NODES));
        let home = ring.lookup(h);
        let c = view.candidates;
        let total: u64 = c.iter().map(|&r| u64::from(view.in_flight[r as usize])).sum();
        let n = c.len();
        if self.acceptable(view.in_flight[home as usize], total, n) {
            return home;
        }
        let mut best: Option<u32> = None;
        for &r in c {
            let load = view.in_flight[r as usize];
            if !self.acceptable(load, total, n) {
                continue;
            }
            if best.is_none_or(|b| load < view.in_flight[b as usize]) {
                best = Some(r);
            }
        }
        best.unwrap_or(home)
    }

    fn uses_prefix_hashes(&self) -> bool {
        true
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    if p.prefix_token_count == 0 {
        return Err("prefix_token_count = 0: must be at least 1 token".to_string());
    }
    if !p.load_factor.is_finite() || p.load_factor <= 0.0 {
        return Err(format!(
            "load_factor = {}: must be a finite number > 0 (1.25 = 125% of the average)",
            p.load_factor
        ));
    }
    Ok(Box::new(PrefixHash {
        prefix_tokens: p.prefix_token_count,
        load_factor: p.load_factor,
        rings: EpochCache::new(),
        rng: ctx.stream("prefix_hash"),
    }))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "prefix_hash",
    summary: "ring hash of the prompt's first N tokens, least-loaded acceptable when the home is over load_factor x average (SGLang prefix_hash)",
    params: &[
        ParamDoc {
            name: "prefix_token_count",
            default: "256",
            doc: "leading prompt tokens that form the key (whole blocks of block_size)",
        },
        ParamDoc {
            name: "load_factor",
            default: "1.25",
            doc: "acceptable iff in_flight <= (total_in_flight + 1) / n x load_factor",
        },
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::super::{BuildCtx, RequestView};

    fn prompt(hashes: &[u64]) -> RequestView<'_> {
        RequestView { hashes, session: 0, ..Default::default() }
    }

    #[test]
    fn asks_for_prefix_hashes() {
        let f = Fixture::new(&[1, 1]);
        assert!(f.build("prefix_hash", "").uses_prefix_hashes());
    }

    #[test]
    fn the_key_is_the_last_block_inside_the_prefix() {
        // block_size 16, prefix 256 tokens -> block index 15 decides.
        let f = Fixture::new(&[1; 8]);
        let mut r = f.build("prefix_hash", "");
        let base: Vec<u64> = (100..140).collect();
        let home = r.route(&prompt(&base), &f.view());
        let mut tail = base.clone();
        tail[16..].iter_mut().for_each(|h| *h += 1000);
        assert_eq!(r.route(&prompt(&tail), &f.view()), home, "blocks after the prefix are ignored");
        assert_eq!(r.route(&prompt(&base[..16]), &f.view()), home, "exactly 16 blocks");
        // Prompts differing at block 15 get independent keys: over many, homes differ.
        let homes: std::collections::BTreeSet<u32> = (0..50u64)
            .map(|i| {
                let mut h = base.clone();
                h[15] = 9_000 + i;
                r.route(&prompt(&h), &f.view())
            })
            .collect();
        assert!(homes.len() >= 5, "{homes:?}");
        // Short prompts key on their own last block.
        let short_home = r.route(&prompt(&base[..3]), &f.view());
        let mut other = base[..3].to_vec();
        other.push(77);
        assert_eq!(r.route(&prompt(&other[..3]), &f.view()), short_home);
    }

    #[test]
    fn without_blocks_the_session_is_the_key() {
        let f = Fixture::new(&[1; 8]);
        let mut r = f.build("prefix_hash", "prefix_token_count: 8");
        // 8 tokens < one 16-token block: no hashed block in range.
        let h = [1u64, 2, 3];
        let req = RequestView { hashes: &h, session: 42, ..Default::default() };
        let home = r.route(&req, &f.view());
        let homes: std::collections::BTreeSet<u32> = (1..200u64)
            .map(|s| {
                r.route(&RequestView { hashes: &h, session: s, ..Default::default() }, &f.view())
            })
            .collect();
        assert!(homes.len() >= 5, "sessions spread: {homes:?}");
        for _ in 0..5 {
            assert_eq!(r.route(&req, &f.view()), home);
        }
    }

    #[test]
    fn acceptance_threshold_is_total_plus_one_over_n_times_factor() {
        // 4 candidates: the home at load L, the others at 5 each; total = L + 15.
        // Acceptable iff L <= (L + 16) / 4 x 1.25: L = 7 gives 7 <= 7.1875 (stays; without
        // the +1 for the incoming request it would be 7 > 6.875), L = 8 gives 8 > 7.5 (moves).
        let mut f = Fixture::new(&[1; 4]);
        let mut r = f.build("prefix_hash", "");
        let key: Vec<u64> = (1..=16).collect();
        let home = r.route(&prompt(&key), &f.view()) as usize;
        for (load, stays) in [(0u32, true), (7, true), (8, false), (30, false)] {
            f.in_flight = vec![5; 4];
            f.in_flight[home] = load;
            let pick = r.route(&prompt(&key), &f.view()) as usize;
            assert_eq!(pick == home, stays, "load {load}");
        }
        // The factor scales the bound: at 1.5, 9 <= 25 / 4 x 1.5 = 9.375 stays, 10 > 9.75 moves.
        let mut r = f.build("prefix_hash", "load_factor: 1.5");
        for (load, stays) in [(9u32, true), (10, false)] {
            f.in_flight = vec![5; 4];
            f.in_flight[home] = load;
            let pick = r.route(&prompt(&key), &f.view()) as usize;
            assert_eq!(pick == home, stays, "load {load} at 1.5");
        }
    }

    #[test]
    fn overloaded_home_goes_to_the_least_loaded_acceptable_lowest_id() {
        let mut f = Fixture::new(&[1; 4]);
        let mut r = f.build("prefix_hash", "");
        let key: Vec<u64> = (1..=16).collect();
        let home = r.route(&prompt(&key), &f.view()) as usize;
        // Others at 2, 1, 1 in id order (skipping the home); the home far above.
        let mut others = [2u32, 1, 1].into_iter();
        f.in_flight =
            (0..4).map(|i| if i == home { 30 } else { others.next().unwrap_or(0) }).collect();
        let want = (0..4).find(|&i| i != home && f.in_flight[i] == 1).unwrap_or(0);
        assert_eq!(r.route(&prompt(&key), &f.view()) as usize, want);
    }

    #[test]
    fn the_ring_ignores_weights() {
        // SGLang's ring has 150 entries per worker whatever its weight.
        let f = Fixture::new(&[1, 100]);
        let mut r = f.build("prefix_hash", "");
        let n = 4000u64;
        let ones = (1..=n).filter(|&k| r.route(&prompt(&[k]), &f.view()) == 1).count();
        // Even split up to arc noise with 150 entries each.
        assert!((ones as f64 / n as f64 - 0.5).abs() < 0.08, "{ones}");
    }

    #[test]
    fn removing_a_replica_moves_only_its_prefixes() {
        let mut f = Fixture::new(&[1; 5]);
        let mut r = f.build("prefix_hash", "");
        let keys: Vec<[u64; 1]> = (1..3000u64).map(|k| [k]).collect();
        let before: Vec<u32> = keys.iter().map(|k| r.route(&prompt(k), &f.view())).collect();
        f.candidates = vec![0, 1, 2, 4];
        let mut view = f.view();
        view.candidates_epoch = 1;
        for (k, &b) in keys.iter().zip(&before) {
            let a = r.route(&prompt(k), &view);
            if b != 3 {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn rejects_bad_params() {
        let f = Fixture::new(&[1, 1]);
        for bad in ["prefix_token_count: 0", "load_factor: 0", "load_factor: .nan", "block: 3"] {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(bad).expect("yaml");
            let ctx =
                BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
            assert!((super::ENTRY.build)(&v, &ctx).is_err(), "{bad}");
        }
    }
}
