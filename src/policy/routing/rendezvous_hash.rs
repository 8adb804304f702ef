//! `rendezvous_hash`: highest-random-weight hashing as Envoy's `RENDEZVOUS_HASH` computes it
//! (reference §1.8, `rendezvous_hash_lb.cc`), keyed on the request's session.
//!
//! Each replica has a fixed hash `hh = hash(<replica id>)` (pinned FNV-1a + SplitMix64 stand-in
//! for xxHash64, see `consistent_hash`). For request hash `h` (`mix64(session)`; random for a
//! request without a session) every candidate scores `x = xorshift*(h XOR hh)`,
//! `u = (x & (2^53 − 1)) / 2^53 ∈ [0, 1)`, `score = −w_norm / ln(u)` with `w_norm = w / Σw` over
//! the candidates, and the highest score wins; on an exact tie the earlier candidate (lower
//! replica id) wins. A key's winner changes only when that winner leaves or a newcomer outscores
//! it, so removing one of n replicas moves ≈1/n of keys, and keys land in proportion to weight.
//! Envoy evaluates `ln` with a rational-polynomial fast log; we use the exact `ln` (the scores
//! differ in the low bits only, so a few near-tie keys may land differently).
//!
//! With `hash_balance_factor` set, Envoy's bounded-load rule (§1.9, see `bounded_load_hash`)
//! caps each host at its share of `ceil((Σ in_flight + 1) × factor / 100)` slots of this
//! gateway's in-flight requests; unset (the default, as in Envoy) is load-blind.
//!
//! Cost: O(candidates) per decision, no table and no allocation. Stream:
//! `router:rendezvous_hash` (unkeyed requests only).

use super::consistent_hash::{
    check_balance_factor, hash_str, replica_key, request_hash, weight_sum, BoundedLoad,
};
use super::{parse_params, BuildCtx, RequestView, RouteView, Router, RouterEntry};
use crate::rng::Stream;
use serde::Deserialize;

const MASK_53: u64 = (1 << 53) - 1;
const SCALE_53: f64 = 1.0 / (1u64 << 53) as f64;
const XORSHIFT_MULT: u64 = 2_685_821_657_736_338_717;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    hash_balance_factor: Option<u32>,
}

/// xorshift* (Vigna): the mixer Envoy applies to `h XOR hh`.
fn xorshift_mult(mut x: u64) -> u64 {
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(XORSHIFT_MULT)
}

/// `−w_norm / ln(u)` for the host with hash `hh` and request hash `h`.
fn score(h: u64, hh: u64, w_norm: f64) -> f64 {
    let u = (xorshift_mult(h ^ hh) & MASK_53) as f64 * SCALE_53;
    -w_norm / u.ln()
}

struct Rendezvous {
    /// `hash(replica key)` of every replica, by replica id (extended if the cluster grows).
    host_hash: Vec<u64>,
    bounded: Option<BoundedLoad>,
    rng: Stream,
}

impl Rendezvous {
    fn argmax(&self, h: u64, view: &RouteView<'_>) -> u32 {
        let wsum = weight_sum(view) as f64;
        let c = view.candidates;
        let norm = |r: u32| f64::from(view.weights[r as usize]) / wsum;
        let mut best = c[0];
        let mut best_score = score(h, self.host_hash[best as usize], norm(best));
        for &r in &c[1..] {
            let s = score(h, self.host_hash[r as usize], norm(r));
            if s > best_score {
                best = r;
                best_score = s;
            }
        }
        best
    }
}

impl Router for Rendezvous {
    fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        let h = request_hash(req.session, &mut self.rng);
        if self.host_hash.len() < view.weights.len() {
            let known = self.host_hash.len() as u32;
            let all = view.weights.len() as u32;
            self.host_hash.extend((known..all).map(|r| hash_str(&replica_key(r))));
        }
        let first = self.argmax(h, view);
        match &mut self.bounded {
            Some(b) => b.choose(view, first, h),
            None => first,
        }
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    if let Some(f) = p.hash_balance_factor {
        check_balance_factor(f)?;
    }
    let host_hash = (0..ctx.weights.len() as u32).map(|r| hash_str(&replica_key(r))).collect();
    Ok(Box::new(Rendezvous {
        host_hash,
        bounded: p.hash_balance_factor.map(BoundedLoad::new),
        rng: ctx.stream("rendezvous_hash"),
    }))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "rendezvous_hash",
    summary:
        "highest random weight -w/ln(u) per candidate on the session key (Envoy RENDEZVOUS_HASH)",
    params: &[super::consistent_hash::OPTIONAL_BALANCE_FACTOR],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::consistent_hash::{hash_str, replica_key};
    use super::super::testutil::Fixture;
    use super::*;
    use crate::rng::mix64;

    use super::super::testutil::keyed;

    #[test]
    fn xorshift_star_matches_the_reference_steps() {
        // x = 1: 1 ^ 0 = 1; 1 ^ (1 << 25) = 0x2000001; ^ (>> 27) unchanged; times the multiplier.
        assert_eq!(xorshift_mult(1), 0x200_0001u64.wrapping_mul(XORSHIFT_MULT));
        assert_eq!(xorshift_mult(0), 0);
    }

    #[test]
    fn picks_the_argmax_of_the_documented_score() {
        let f = Fixture::new(&[1, 2, 3, 1, 1]);
        let mut r = f.build("rendezvous_hash", "");
        for k in 1..300u64 {
            let h = mix64(k);
            let scores: Vec<f64> = (0..5u32)
                .map(|i| {
                    score(h, hash_str(&replica_key(i)), f64::from(f.weights[i as usize]) / 8.0)
                })
                .collect();
            let mut best = 0;
            for i in 1..5 {
                if scores[i] > scores[best] {
                    best = i;
                }
            }
            assert_eq!(r.route(&keyed(k), &f.view()), best as u32, "key {k}");
        }
    }

    #[test]
    fn keys_land_in_proportion_to_weight() {
        let f = Fixture::new(&[1, 2, 1]);
        let mut r = f.build("rendezvous_hash", "");
        let n = 40_000u64;
        let mut seen = [0usize; 3];
        for k in 1..=n {
            seen[r.route(&keyed(k), &f.view()) as usize] += 1;
        }
        // Binomial(n, 1/2): sd 100; 5 sd.
        assert!((seen[1] as i64 - 20_000).abs() < 500, "{seen:?}");
        assert!((seen[0] as i64 - 10_000).abs() < 450, "{seen:?}");
    }

    #[test]
    fn removing_a_replica_moves_only_its_keys() {
        let mut f = Fixture::new(&[1; 6]);
        let mut r = f.build("rendezvous_hash", "");
        let n = 12_000u64;
        let before: Vec<u32> = (1..=n).map(|k| r.route(&keyed(k), &f.view())).collect();
        f.candidates = vec![0, 1, 2, 4, 5];
        let mut moved = 0;
        for (k, &b) in (1..=n).zip(&before) {
            let a = r.route(&keyed(k), &f.view());
            if b == 3 {
                moved += 1;
                assert_ne!(a, 3);
            } else {
                assert_eq!(a, b);
            }
        }
        assert!((moved as i64 - 2000).abs() < 250, "{moved}");
    }

    #[test]
    fn load_blind_by_default_bounded_when_asked() {
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        let mut plain = f.build("rendezvous_hash", "");
        let mut bounded = f.build("rendezvous_hash", "hash_balance_factor: 150");
        let home = plain.route(&keyed(9), &f.view());
        f.in_flight[home as usize] = 40;
        assert_eq!(plain.route(&keyed(9), &f.view()), home);
        // overall 40 -> total ceil(41 x 1.5) = 62 -> slots 16 < 40.
        assert_ne!(bounded.route(&keyed(9), &f.view()), home);
        f.in_flight[home as usize] = 16;
        // overall 16 -> total ceil(25.5) = 26 -> slots 7 < 16: still overflows; at 2 it stays.
        assert_ne!(bounded.route(&keyed(9), &f.view()), home);
        f.in_flight[home as usize] = 2;
        assert_eq!(bounded.route(&keyed(9), &f.view()), home);
    }

    #[test]
    fn rejects_bad_factor() {
        let f = Fixture::new(&[1, 1]);
        for bad in ["hash_balance_factor: 50", "table_size: 7"] {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(bad).expect("yaml");
            let ctx =
                BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
            assert!((ENTRY.build)(&v, &ctx).is_err(), "{bad}");
        }
    }
}
