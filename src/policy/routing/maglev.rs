//! `maglev`: Maglev consistent hashing as Envoy's `MAGLEV` builds it (reference §1.8,
//! `maglev_lb.cc`; Eisenbud et al. 2016, pseudocode listing 1), keyed on the request's session.
//!
//! Table of `M = table_size` entries (prime, default 65 537, at most 5 000 011 as Envoy's proto
//! allows). The candidates are sorted by their key (decimal replica id, compared as strings as
//! Envoy sorts host addresses); each gets `offset = hash(key) mod M` and
//! `skip = hash(key, seed 1) mod (M − 1) + 1` (pinned FNV-1a + SplitMix64 stand-in for xxHash64)
//! and the permutation `p_j = (offset + j·skip) mod M`. Fill rounds t = 1, 2, …: in each round
//! every host in order, unless the table is full, takes its next free preferred slot only if
//! `t × w_norm ≥ target`, and then `target += max_w_norm` (target starts at 0), so the heaviest
//! host fills every round and one with half its weight every other round. A request with hash
//! `h` (`mix64(session)`; random when the request has no session) goes to `table[h mod M]`.
//! Removing one of n hosts remaps its ≈1/n of the table plus a small extra disruption.
//!
//! With `hash_balance_factor` set, Envoy's bounded-load rule (§1.9, see `bounded_load_hash`)
//! applies over this gateway's in-flight counts; unset (the default, as in Envoy) is load-blind.
//!
//! The table is built over the current candidates when `candidates_epoch` is first seen and
//! cached per epoch: a decision is O(1) (O(candidates) when bounded), no allocation. Stream:
//! `router:maglev` (unkeyed requests only).

use super::consistent_hash::{
    check_balance_factor, hash_str, hash_str_seeded, replica_key, request_hash, BoundedLoad,
    EpochCache,
};
use super::{parse_params, BuildCtx, ParamDoc, RequestView, RouteView, Router, RouterEntry};
use crate::rng::Stream;
use serde::Deserialize;

/// Envoy `MaglevTable::DefaultTableSize` (section 5.3 of the paper).
const DEFAULT_TABLE_SIZE: u64 = 65_537;
/// Envoy's proto bound on `table_size`.
const MAX_TABLE_SIZE: u64 = 5_000_011;
const EMPTY: u32 = u32::MAX;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_table_size")]
    table_size: u64,
    #[serde(default)]
    hash_balance_factor: Option<u32>,
}

fn default_table_size() -> u64 {
    DEFAULT_TABLE_SIZE
}

impl Default for Params {
    fn default() -> Params {
        Params { table_size: DEFAULT_TABLE_SIZE, hash_balance_factor: None }
    }
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

struct BuildEntry {
    replica: u32,
    offset: u64,
    skip: u64,
    weight: f64,
    target: f64,
    next: u64,
}

/// The Maglev lookup table (replica ids) over `candidates`.
fn build_table(candidates: &[u32], weights: &[u32], m: u64) -> Vec<u32> {
    let sum: u64 = candidates.iter().map(|&r| u64::from(weights[r as usize])).sum();
    let mut keyed: Vec<(String, u32)> = candidates.iter().map(|&r| (replica_key(r), r)).collect();
    keyed.sort();
    let mut entries: Vec<BuildEntry> = keyed
        .iter()
        .map(|(key, r)| BuildEntry {
            replica: *r,
            offset: hash_str(key) % m,
            skip: hash_str_seeded(key, 1) % (m - 1) + 1,
            weight: f64::from(weights[*r as usize]) / sum as f64,
            target: 0.0,
            next: 0,
        })
        .collect();
    let max_w = entries.iter().map(|e| e.weight).fold(0.0, f64::max);
    let mut table = vec![EMPTY; m as usize];
    let mut filled = 0u64;
    let mut round = 1u32;
    while filled < m {
        for e in entries.iter_mut() {
            if filled == m {
                break;
            }
            if f64::from(round) * e.weight < e.target {
                continue;
            }
            e.target += max_w;
            let mut c = (e.offset + e.skip * e.next) % m;
            while table[c as usize] != EMPTY {
                e.next += 1;
                c = (e.offset + e.skip * e.next) % m;
            }
            table[c as usize] = e.replica;
            e.next += 1;
            filled += 1;
        }
        round += 1;
    }
    table
}

struct Maglev {
    size: u64,
    tables: EpochCache<Vec<u32>>,
    bounded: Option<BoundedLoad>,
    rng: Stream,
}

impl Router for Maglev {
    fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        let h = request_hash(req.session, &mut self.rng);
        let m = self.size;
        let table = self
            .tables
            .get(view.candidates_epoch, || build_table(view.candidates, view.weights, m));
        let first = table[(h % m) as usize];
        match &mut self.bounded {
            Some(b) => b.choose(view, first, h),
            None => first,
        }
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    if p.table_size > MAX_TABLE_SIZE || !is_prime(p.table_size) {
        return Err(format!(
            "table_size = {}: must be a prime number at most {MAX_TABLE_SIZE} (e.g. 65537)",
            p.table_size
        ));
    }
    if let Some(f) = p.hash_balance_factor {
        check_balance_factor(f)?;
    }
    Ok(Box::new(Maglev {
        size: p.table_size,
        tables: EpochCache::new(),
        bounded: p.hash_balance_factor.map(BoundedLoad::new),
        rng: ctx.stream("maglev"),
    }))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "maglev",
    summary: "Maglev lookup table on the session key, weighted fill, O(1) lookup (Envoy MAGLEV)",
    params: &[
        ParamDoc { name: "table_size", default: "65537", doc: "table entries; a prime <= 5000011" },
        super::consistent_hash::OPTIONAL_BALANCE_FACTOR,
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::*;

    use super::super::testutil::keyed;

    fn counts(table: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &r in table {
            c[r as usize] += 1;
        }
        c
    }

    #[test]
    fn primes() {
        assert!(is_prime(2) && is_prime(7) && is_prime(65_537) && is_prime(5_000_011));
        assert!(!is_prime(0) && !is_prime(1) && !is_prime(65_536) && !is_prime(5_000_013 * 3));
    }

    #[test]
    fn equal_weights_fill_the_table_evenly() {
        let t = build_table(&[0, 1, 2, 3, 4], &[2; 5], 65_537);
        assert!(t.iter().all(|&r| r != EMPTY));
        let c = counts(&t, 5);
        // Round-robin turns: counts differ by at most one.
        assert!(c.iter().max().unwrap_or(&0) - c.iter().min().unwrap_or(&0) <= 1, "{c:?}");
    }

    #[test]
    fn weighted_fill_is_proportional() {
        // Weights 1, 2, 1: the heavy host fills every round, the light ones every other round
        // after the first, so shares are 1/4, 1/2, 1/4 up to one round.
        let t = build_table(&[0, 1, 2], &[1, 2, 1], 65_537);
        let c = counts(&t, 3);
        assert!((c[1] as i64 - 32_768).abs() <= 3, "{c:?}");
        assert!((c[0] as i64 - 16_384).abs() <= 3 && (c[2] as i64 - 16_384).abs() <= 3, "{c:?}");
    }

    #[test]
    fn same_key_same_replica_via_table_lookup() {
        let f = Fixture::new(&[1, 1, 1]);
        let mut r = f.build("maglev", "table_size: 251");
        let table = build_table(&[0, 1, 2], &[1, 1, 1], 251);
        for k in 1..500u64 {
            let a = r.route(&keyed(k), &f.view());
            assert_eq!(a, table[(crate::rng::mix64(k) % 251) as usize]);
            assert_eq!(r.route(&keyed(k), &f.view()), a);
        }
    }

    #[test]
    fn removing_a_host_disrupts_little_beyond_its_own_entries() {
        let before = build_table(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], &[1; 10], 65_537);
        let after = build_table(&[0, 1, 2, 3, 5, 6, 7, 8, 9], &[1; 10], 65_537);
        let mut own = 0;
        let mut others_moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if *b == 4 {
                own += 1;
            } else if a != b {
                others_moved += 1;
            }
        }
        assert!((own as i64 - 6554).abs() <= 1);
        // Beyond its own 1/10, removing a host moves well under 1% of the table (133 entries
        // with these keys; the paper reports small extra disruption for M >> n).
        assert!(others_moved < 655, "{others_moved}");
    }

    #[test]
    fn rebuilt_when_the_candidate_epoch_changes() {
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        let mut r = f.build("maglev", "");
        let keys: Vec<u64> = (1..2000).filter(|&k| r.route(&keyed(k), &f.view()) == 2).collect();
        assert!(!keys.is_empty());
        f.candidates = vec![0, 1, 3];
        let mut view = f.view();
        view.candidates_epoch = 7;
        assert!(keys.iter().all(|&k| r.route(&keyed(k), &view) != 2));
    }

    #[test]
    fn bounded_when_asked() {
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        let mut r = f.build("maglev", "hash_balance_factor: 125");
        let home = r.route(&keyed(3), &f.view());
        f.in_flight[home as usize] = 10;
        // overall 10 -> total ceil(13.75) = 14 -> slots 4 < 10.
        assert_ne!(r.route(&keyed(3), &f.view()), home);
    }

    #[test]
    fn rejects_non_prime_or_huge_tables() {
        let f = Fixture::new(&[1, 1]);
        for bad in
            ["table_size: 65536", "table_size: 1", "table_size: 5000077", "hash_balance_factor: 0"]
        {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(bad).expect("yaml");
            let ctx =
                BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
            assert!((ENTRY.build)(&v, &ctx).is_err(), "{bad}");
        }
    }
}
