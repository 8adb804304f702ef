//! `consistent_hash`: Envoy `RING_HASH` (reference §1.8) keyed on the request's session, plus
//! the hashing machinery the other hash routers share (`bounded_load_hash`, `maglev`,
//! `rendezvous_hash`, `prefix_hash`).
//!
//! Ring: the candidates' weights are normalised to sum 1 (`w_norm = w / Σw`);
//! `scale = min(ceil(min_w_norm × minimum_ring_size) / min_w_norm, maximum_ring_size)`; walking
//! the candidates in replica-id order with running sums `target += scale × w_norm`, a host adds
//! entries while `current < target`, entry `i` at position `hash("<replica>_<i>")`. With equal
//! weights each host gets `ceil(minimum_ring_size / n)` entries. The entries are sorted by
//! position (replica id breaks the vanishingly rare position ties) and a request with hash `h`
//! goes to the first entry with position `≥ h`, wrapping to the first entry (ketama search).
//!
//! Hashing: Envoy uses xxHash64; we use a pinned stand-in, FNV-1a 64 over the key's bytes
//! followed by the SplitMix64 finaliser ([`hash_str`]; the finaliser fixes FNV's weak avalanche
//! on short keys such as `"3_17"`). A replica's key is its decimal id. The request hash is
//! `mix64(session)`; a request without a session (key 0) gets a random hash from the stream, as
//! Envoy does when the hash policy yields nothing, which makes it weighted-random routing.
//!
//! Staleness and signals: load-blind; only the candidate set and the pool weights matter. The
//! ring is built over the current candidates when `candidates_epoch` is first seen and kept in
//! a small per-epoch cache (candidate sets differ by class, each with its own epoch), so a
//! decision is one binary search: O(log ring), no allocation.
//!
//! Disruption: entries are placed by name, so a rebuilt ring keeps every surviving entry; but,
//! as in Envoy, the ring size stays near `minimum_ring_size`, so when a replica leaves the
//! others each gain entries (`ceil(1024/5) = 205` → `256` going from 5 to 4 equal replicas)
//! and those new entries take keys from other survivors: the leaving replica's ≈1/n of keys
//! move plus up to the new entries' share (≈0.36 of keys in that example, not the ideal 0.2).
//!
//! Stream: `router:consistent_hash` (only for requests without a key).

use super::{parse_params, BuildCtx, ParamDoc, RequestView, RouteView, Router, RouterEntry};
use crate::rng::{fnv1a64, mix64, Stream};
use serde::Deserialize;
use std::fmt::Write as _;

/// Envoy `DefaultMinRingSize`.
pub(super) const DEFAULT_MIN_RING_SIZE: u64 = 1024;
/// Envoy `DefaultMaxRingSize`, also the proto's upper bound on both ring sizes.
pub(super) const DEFAULT_MAX_RING_SIZE: u64 = 8_388_608;
/// Distinct candidate sets (epochs) whose tables are kept; older ones are rebuilt on demand.
const EPOCH_CACHE_SLOTS: usize = 8;
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The pinned 64-bit string hash standing in for xxHash64: FNV-1a 64, then SplitMix64's mixer.
pub(super) fn hash_str(s: &str) -> u64 {
    mix64(fnv1a64(s))
}

/// A seeded variant of [`hash_str`] (Envoy `xxHash64(key, seed)`); seed 0 is [`hash_str`].
pub(super) fn hash_str_seeded(s: &str, seed: u64) -> u64 {
    mix64(fnv1a64(s).wrapping_add(seed.wrapping_mul(GOLDEN_GAMMA)))
}

/// The key a replica is hashed by (Envoy hashes the host address; we use the replica id).
pub(super) fn replica_key(r: u32) -> String {
    r.to_string()
}

/// The request hash: `mix64(session)` for a keyed request, a random draw otherwise.
pub(super) fn request_hash(session: u64, rng: &mut Stream) -> u64 {
    if session != 0 {
        mix64(session)
    } else {
        rng.next_u64()
    }
}

/// Σ of the candidates' weights.
pub(super) fn weight_sum(view: &RouteView<'_>) -> u64 {
    view.candidates.iter().map(|&r| u64::from(view.weights[r as usize])).sum()
}

/// A sorted hash ring of `(position, replica)` entries.
#[derive(Debug, Clone)]
pub(super) struct Ring {
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// Envoy `RingHashLoadBalancer::Ring` over `candidates` (see the module docs).
    pub(super) fn envoy(candidates: &[u32], weights: &[u32], min_size: u64, max_size: u64) -> Ring {
        let sum: u64 = candidates.iter().map(|&r| u64::from(weights[r as usize])).sum();
        let norm = |r: u32| f64::from(weights[r as usize]) / sum as f64;
        let min_w = candidates.iter().map(|&r| norm(r)).fold(1.0, f64::min);
        let scale = ((min_w * min_size as f64).ceil() / min_w).min(max_size as f64);
        let mut points = Vec::with_capacity(scale.ceil() as usize);
        let (mut current, mut target) = (0.0f64, 0.0f64);
        let mut key = String::new();
        for &r in candidates {
            target += scale * norm(r);
            let mut i = 0u64;
            while current < target {
                key.clear();
                let _ = write!(key, "{r}_{i}");
                points.push((hash_str(&key), r));
                i += 1;
                current += 1.0;
            }
        }
        Ring::sorted(points)
    }

    /// SGLang's `HashRing`: `vnodes` entries per replica at `hash("<replica>#<i>")`, unweighted.
    pub(super) fn uniform(candidates: &[u32], vnodes: u32) -> Ring {
        let mut points = Vec::with_capacity(candidates.len() * vnodes as usize);
        let mut key = String::new();
        for &r in candidates {
            for i in 0..vnodes {
                key.clear();
                let _ = write!(key, "{r}#{i}");
                points.push((hash_str(&key), r));
            }
        }
        Ring::sorted(points)
    }

    fn sorted(mut points: Vec<(u64, u32)>) -> Ring {
        points.sort_unstable();
        Ring { points }
    }

    /// The replica of the first entry at or after `h`, wrapping to the first entry.
    #[inline]
    pub(super) fn lookup(&self, h: u64) -> u32 {
        let i = self.points.partition_point(|p| p.0 < h);
        self.points[if i == self.points.len() { 0 } else { i }].1
    }

    /// Entries of replica `r` (tests).
    #[cfg(test)]
    pub(super) fn entries_of(&self, r: u32) -> usize {
        self.points.iter().filter(|p| p.1 == r).count()
    }
}

/// Tables derived from a candidate set, kept per `candidates_epoch` (least recently used one
/// replaced when full). Building happens only when an epoch is first seen.
#[derive(Debug)]
pub(super) struct EpochCache<T> {
    slots: Vec<(u64, u64, T)>,
    clock: u64,
}

impl<T> EpochCache<T> {
    pub(super) fn new() -> EpochCache<T> {
        EpochCache { slots: Vec::with_capacity(EPOCH_CACHE_SLOTS), clock: 0 }
    }

    /// The table of `epoch`, built by `build` if it is not cached.
    pub(super) fn get(&mut self, epoch: u64, build: impl FnOnce() -> T) -> &T {
        self.clock += 1;
        let i = match self.slots.iter().position(|s| s.0 == epoch) {
            Some(i) => i,
            None if self.slots.len() < EPOCH_CACHE_SLOTS => {
                self.slots.push((epoch, 0, build()));
                self.slots.len() - 1
            }
            None => {
                let lru = (0..self.slots.len()).min_by_key(|&i| self.slots[i].1).unwrap_or(0);
                self.slots[lru] = (epoch, 0, build());
                lru
            }
        };
        self.slots[i].1 = self.clock;
        &self.slots[i].2
    }
}

/// Envoy's bounded-load wrapper (`hash_balance_factor`, reference §1.9,
/// `BoundedLoadHashingLoadBalancer::chooseHost`), over this gateway's in-flight counts.
///
/// `overall = Σ in_flight` over the candidates (Envoy's per-proxy `upstream_rq_active`);
/// `total_slots = ceil((overall + 1) × factor / 100)` in integers; a host's
/// `slots = max(ceil(total_slots × w_norm), 1)` and `overload = in_flight / slots`; the hashed
/// host is kept iff `overload ≤ 1` (so a host at exactly `slots` still takes the request).
/// Otherwise the candidates are probed in a Fisher–Yates order driven by a generator seeded
/// with the request hash (same key → same probe order, Envoy's "random jump"): the first with
/// `overload ≤ 1` wins, else the least overloaded seen (the hashed host first, strict `<`).
/// That fallback is kept for fidelity but cannot trigger here: `overall` covers exactly the
/// candidates, so `Σ slots ≥ total_slots > overall` and some host always has room.
/// Envoy seeds `mt19937` and draws by rejection; we seed [`Stream::from_seed`] with the hash and
/// draw `random() mod k`. O(candidates), no allocation after the first call.
#[derive(Debug)]
pub(super) struct BoundedLoad {
    factor: u64,
    order: Vec<u32>,
}

impl BoundedLoad {
    pub(super) fn new(factor: u32) -> BoundedLoad {
        BoundedLoad { factor: u64::from(factor), order: Vec::new() }
    }

    /// Applies the bound to `first`, the underlying hash choice for `hash`.
    pub(super) fn choose(&mut self, view: &RouteView<'_>, first: u32, hash: u64) -> u32 {
        let c = view.candidates;
        let mut overall = 0u64;
        let mut wsum = 0u64;
        for &r in c {
            overall += u64::from(view.in_flight[r as usize]);
            wsum += u64::from(view.weights[r as usize]);
        }
        let total_slots = ((overall + 1) * self.factor).div_ceil(100);
        let overload = |r: u32| {
            let w = f64::from(view.weights[r as usize]) / wsum as f64;
            let slots = ((total_slots as f64 * w).ceil() as u64).max(1);
            f64::from(view.in_flight[r as usize]) / slots as f64
        };
        let mut least = (first, overload(first));
        if least.1 <= 1.0 {
            return first;
        }
        let n = c.len();
        self.order.clear();
        self.order.extend(0..n as u32);
        let mut rng = Stream::from_seed(hash);
        for i in 0..n {
            let j = rng.index_mod(n - i);
            self.order.swap(i, i + j);
            let r = c[self.order[i] as usize];
            if r == first {
                continue;
            }
            let f = overload(r);
            if f <= 1.0 {
                return r;
            }
            if least.1 > f {
                least = (r, f);
            }
        }
        least.0
    }
}

/// Validates an Envoy `hash_balance_factor` (integer percent, at least 100).
pub(super) fn check_balance_factor(f: u32) -> Result<(), String> {
    if f < 100 {
        return Err(format!(
            "hash_balance_factor = {f}: must be an integer percent >= 100 (Envoy; 125 = 1.25x average)"
        ));
    }
    Ok(())
}

/// Validates Envoy's ring sizes: `1 <= minimum_ring_size <= maximum_ring_size <= 8388608`.
pub(super) fn check_ring_sizes(min: u64, max: u64) -> Result<(), String> {
    if min == 0 || min > DEFAULT_MAX_RING_SIZE {
        return Err(format!("minimum_ring_size = {min}: must be in 1..={DEFAULT_MAX_RING_SIZE}"));
    }
    if max > DEFAULT_MAX_RING_SIZE {
        return Err(format!("maximum_ring_size = {max}: must be at most {DEFAULT_MAX_RING_SIZE}"));
    }
    if min > max {
        return Err(format!(
            "minimum_ring_size ({min}) > maximum_ring_size ({max}): the ring cannot be built"
        ));
    }
    Ok(())
}

/// Ring hash, optionally with bounded loads (`bounded_load_hash` builds it with a factor).
pub(super) struct RingHash {
    min_size: u64,
    max_size: u64,
    rings: EpochCache<Ring>,
    bounded: Option<BoundedLoad>,
    rng: Stream,
}

impl RingHash {
    pub(super) fn new(min_size: u64, max_size: u64, factor: Option<u32>, rng: Stream) -> RingHash {
        RingHash {
            min_size,
            max_size,
            rings: EpochCache::new(),
            bounded: factor.map(BoundedLoad::new),
            rng,
        }
    }
}

impl Router for RingHash {
    fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        let h = request_hash(req.session, &mut self.rng);
        let (min, max) = (self.min_size, self.max_size);
        let ring = self
            .rings
            .get(view.candidates_epoch, || Ring::envoy(view.candidates, view.weights, min, max));
        let first = ring.lookup(h);
        match &mut self.bounded {
            Some(b) => b.choose(view, first, h),
            None => first,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_min_ring")]
    minimum_ring_size: u64,
    #[serde(default = "default_max_ring")]
    maximum_ring_size: u64,
}

pub(super) fn default_min_ring() -> u64 {
    DEFAULT_MIN_RING_SIZE
}

pub(super) fn default_max_ring() -> u64 {
    DEFAULT_MAX_RING_SIZE
}

impl Default for Params {
    fn default() -> Params {
        Params {
            minimum_ring_size: DEFAULT_MIN_RING_SIZE,
            maximum_ring_size: DEFAULT_MAX_RING_SIZE,
        }
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    check_ring_sizes(p.minimum_ring_size, p.maximum_ring_size)?;
    Ok(Box::new(RingHash::new(
        p.minimum_ring_size,
        p.maximum_ring_size,
        None,
        ctx.stream("consistent_hash"),
    )))
}

/// The optional bound of `rendezvous_hash` and `maglev` (unset: load-blind).
pub(super) const OPTIONAL_BALANCE_FACTOR: ParamDoc = ParamDoc {
    name: "hash_balance_factor",
    default: "null",
    doc: "unset: load-blind; integer percent >= 100: Envoy bounded loads over in-flight",
};

/// Ring-size parameter docs, shared with `bounded_load_hash`.
pub(super) const RING_PARAMS: [ParamDoc; 2] = [
    ParamDoc {
        name: "minimum_ring_size",
        default: "1024",
        doc: "ring entries at least (the lightest host gets a whole number of entries)",
    },
    ParamDoc {
        name: "maximum_ring_size",
        default: "8388608",
        doc: "ring entries at most (Envoy's cap; also the largest value accepted)",
    },
];

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "consistent_hash",
    summary: "ring hash on the session key, weighted virtual nodes, load-blind (Envoy RING_HASH)",
    params: &RING_PARAMS,
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::*;

    use super::super::testutil::keyed;

    #[test]
    fn hash_is_pinned() {
        // Golden values: a change here remaps every key of every published result.
        assert_eq!(hash_str(""), mix64(0xcbf2_9ce4_8422_2325));
        assert_eq!(hash_str("0_0"), mix64(fnv1a64("0_0")));
        assert_eq!(hash_str_seeded("7", 0), hash_str("7"));
        assert_ne!(hash_str_seeded("7", 1), hash_str("7"));
    }

    #[test]
    fn equal_weights_give_ceil_min_size_over_n_entries_each() {
        let ring = Ring::envoy(&[0, 1, 2], &[5, 5, 5], 1024, DEFAULT_MAX_RING_SIZE);
        for r in 0..3 {
            assert_eq!(ring.entries_of(r), 342, "ceil(1024 / 3)");
        }
    }

    #[test]
    fn entries_follow_weights_and_respect_the_maximum() {
        let ring = Ring::envoy(&[0, 1], &[3, 1], 1024, DEFAULT_MAX_RING_SIZE);
        // min_w = 1/4: scale = ceil(256) * 4 = 1024; 768 and 256 entries.
        assert_eq!((ring.entries_of(0), ring.entries_of(1)), (768, 256));
        let capped = Ring::envoy(&[0, 1, 2, 3], &[1, 1, 1, 1], 1024, 6);
        // Envoy's own example: scale 6, 1.5 hashes per host -> 2, 1, 2, 1.
        let got: Vec<usize> = (0..4).map(|r| capped.entries_of(r)).collect();
        assert_eq!(got, vec![2, 1, 2, 1]);
    }

    #[test]
    fn lookup_takes_the_first_entry_at_or_after_the_hash_and_wraps() {
        let ring = Ring { points: vec![(10, 7), (20, 8), (30, 9)] };
        assert_eq!(ring.lookup(0), 7);
        assert_eq!(ring.lookup(10), 7);
        assert_eq!(ring.lookup(11), 8);
        assert_eq!(ring.lookup(30), 9);
        assert_eq!(ring.lookup(31), 7);
    }

    #[test]
    fn same_key_same_replica_and_keys_spread_by_weight() {
        let f = Fixture::new(&[1, 2, 1]);
        let mut r = f.build("consistent_hash", "");
        let n = 30_000u64;
        let mut seen = [0usize; 3];
        for k in 1..=n {
            let a = r.route(&keyed(k), &f.view());
            assert_eq!(r.route(&keyed(k), &f.view()), a);
            seen[a as usize] += 1;
        }
        // Shares 1/4, 1/2, 1/4 up to ring-arc noise (1024 entries: a few percent).
        let share = |i: usize| seen[i] as f64 / n as f64;
        assert!((share(1) - 0.5).abs() < 0.04, "{seen:?}");
        assert!((share(0) - 0.25).abs() < 0.04 && (share(2) - 0.25).abs() < 0.04, "{seen:?}");
    }

    #[test]
    fn a_rebuilt_ring_keeps_every_surviving_entry() {
        // Envoy rebuilds from scratch: with 5 equal hosts each has ceil(1024 / 5) = 205
        // entries, with 4 each has 256. Entries `<r>_<i>` are positioned by name, so the
        // survivors' first 205 entries are unchanged and 51 new ones per host are added.
        let five = Ring::envoy(&[0, 1, 2, 3, 4], &[1; 5], 1024, DEFAULT_MAX_RING_SIZE);
        let four = Ring::envoy(&[0, 1, 3, 4], &[1; 5], 1024, DEFAULT_MAX_RING_SIZE);
        let kept: std::collections::BTreeSet<(u64, u32)> = four.points.iter().copied().collect();
        let survivors: Vec<(u64, u32)> = five.points.iter().copied().filter(|p| p.1 != 2).collect();
        assert_eq!(survivors.len(), 4 * 205);
        assert!(survivors.iter().all(|p| kept.contains(p)));
        assert_eq!(four.points.len(), 4 * 256);
    }

    #[test]
    fn removing_a_replica_moves_its_keys_and_those_under_new_entries() {
        let mut f = Fixture::new(&[1, 1, 1, 1, 1]);
        let mut r = f.build("consistent_hash", "");
        let n = 20_000u64;
        let before: Vec<u32> = (1..=n).map(|k| r.route(&keyed(k), &f.view())).collect();
        f.candidates = vec![0, 1, 3, 4];
        let mut view = f.view();
        view.candidates_epoch = 1;
        let mut moved = 0;
        for (k, &b) in (1..=n).zip(&before) {
            let a = r.route(&keyed(k), &view);
            assert_ne!(a, 2);
            if a != b {
                moved += 1;
            }
        }
        // Replica 2's fifth of the keys, plus those now under the 204 new entries (about
        // 204/1024 of the ring, 4/5 of them taken from another survivor): ~0.2 + 0.16.
        let frac = moved as f64 / n as f64;
        assert!(frac > 0.2 && frac < 0.4, "{frac}");
        // And the old epoch's ring is still cached: the full set maps as before.
        assert_eq!(r.route(&keyed(1), &f.view()), before[0]);
    }

    #[test]
    fn unkeyed_requests_are_spread_randomly() {
        let f = Fixture::new(&[1, 1]);
        let mut r = f.build("consistent_hash", "");
        let zeros = (0..4000).filter(|_| r.route(&keyed(0), &f.view()) == 0).count();
        // Fair coin up to arc imbalance; sd 32.
        assert!((1700..2300).contains(&zeros), "{zeros}");
    }

    #[test]
    fn load_blind() {
        let mut f = Fixture::new(&[1, 1, 1]);
        let mut r = f.build("consistent_hash", "");
        let a = r.route(&keyed(42), &f.view());
        f.in_flight[a as usize] = 1000;
        assert_eq!(r.route(&keyed(42), &f.view()), a);
    }

    #[test]
    fn rejects_bad_ring_sizes() {
        for bad in [
            "minimum_ring_size: 0",
            "maximum_ring_size: 9000000",
            "minimum_ring_size: 2048\nmaximum_ring_size: 1024",
            "ring: 3",
        ] {
            let f = Fixture::new(&[1]);
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(bad).expect("yaml");
            let ctx =
                BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
            assert!((ENTRY.build)(&v, &ctx).is_err(), "{bad}");
        }
    }

    #[test]
    fn epoch_cache_rebuilds_only_new_epochs_and_evicts_the_least_recent() {
        let mut c = EpochCache::new();
        let mut builds = 0;
        for e in 0..EPOCH_CACHE_SLOTS as u64 {
            c.get(e, || {
                builds += 1;
                e
            });
        }
        assert_eq!(*c.get(0, || unreachable!()), 0);
        assert_eq!(builds, EPOCH_CACHE_SLOTS);
        // Epoch 1 is now the least recently used and makes room for a new one.
        c.get(99, || 99);
        let mut rebuilt = false;
        c.get(1, || {
            rebuilt = true;
            1
        });
        assert!(rebuilt);
        assert_eq!(*c.get(0, || unreachable!()), 0);
    }
}
