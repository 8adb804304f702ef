//! `bounded_load_hash`: consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam
//! 2016) exactly as Envoy applies `hash_balance_factor` to `RING_HASH` (reference §1.9,
//! `thread_aware_lb_impl.cc`).
//!
//! The request hash picks a host on the `consistent_hash` ring (same ring, same key rules:
//! `mix64(session)`, random when the request has no session). With
//! `overall = Σ in_flight` over the candidates, `total_slots = ceil((overall + 1) × factor / 100)`
//! (integer arithmetic) and `slots(host) = max(ceil(total_slots × w_norm), 1)`, a host is
//! eligible iff `in_flight / slots ≤ 1`: one at exactly `slots` still takes the request. If the
//! ring's host is not eligible, the candidates are probed in a Fisher–Yates shuffle seeded by
//! the request hash (the same key always probes in the same order, which avoids the cascading
//! overflow of walking the ring) and the first eligible host wins; if none is, the least
//! overloaded (ring host first, strict `<`, then probe order) — a branch that cannot trigger
//! here, since `overall` covers exactly the candidates and so some host always has room.
//!
//! Signals and staleness: this gateway's in-flight counts, exact and local (Envoy's per-proxy
//! `rq_active` / `upstream_rq_active`); other gateways' load is invisible. Envoy has no default
//! factor (unset means unbounded); we default to 125, the low end of HAProxy's recommended
//! 125–200 for `hash-balance-factor`. Cost: O(log ring) + O(candidates) per decision, tables
//! rebuilt only on a candidate-set change. Stream: `router:bounded_load_hash` (unkeyed requests
//! only; the probe order draws from a generator seeded by the hash).

use super::consistent_hash::{
    check_balance_factor, check_ring_sizes, default_max_ring, default_min_ring, RingHash,
    DEFAULT_MAX_RING_SIZE, DEFAULT_MIN_RING_SIZE,
};
use super::{parse_params, BuildCtx, ParamDoc, Router, RouterEntry};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_factor")]
    hash_balance_factor: u32,
    #[serde(default = "default_min_ring")]
    minimum_ring_size: u64,
    #[serde(default = "default_max_ring")]
    maximum_ring_size: u64,
}

fn default_factor() -> u32 {
    125
}

impl Default for Params {
    fn default() -> Params {
        Params {
            hash_balance_factor: default_factor(),
            minimum_ring_size: DEFAULT_MIN_RING_SIZE,
            maximum_ring_size: DEFAULT_MAX_RING_SIZE,
        }
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    check_balance_factor(p.hash_balance_factor)?;
    check_ring_sizes(p.minimum_ring_size, p.maximum_ring_size)?;
    Ok(Box::new(RingHash::new(
        p.minimum_ring_size,
        p.maximum_ring_size,
        Some(p.hash_balance_factor),
        ctx.stream("bounded_load_hash"),
    )))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "bounded_load_hash",
    summary: "ring hash on the session key, capped at factor x average in-flight (Envoy hash_balance_factor)",
    params: &[
        ParamDoc {
            name: "hash_balance_factor",
            default: "125",
            doc: "integer percent >= 100: a host takes at most ceil((in_flight_total + 1) x f / 100) x w_norm",
        },
        super::consistent_hash::RING_PARAMS[0],
        super::consistent_hash::RING_PARAMS[1],
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::super::BuildCtx;

    use super::super::testutil::keyed;

    /// The replica `consistent_hash` (the unbounded ring) gives key `k`.
    fn ring_choice(f: &Fixture, k: u64) -> u32 {
        f.build("consistent_hash", "").route(&keyed(k), &f.view())
    }

    #[test]
    fn idle_cluster_follows_the_ring() {
        let f = Fixture::new(&[1, 1, 1, 1]);
        let mut r = f.build("bounded_load_hash", "");
        for k in 1..200 {
            assert_eq!(r.route(&keyed(k), &f.view()), ring_choice(&f, k));
        }
    }

    #[test]
    fn overflow_goes_elsewhere_exactly_when_in_flight_exceeds_slots() {
        // 4 equal hosts, factor 125. With the ring host at load L and the others at 2:
        // overall = L + 6, total_slots = ceil((L + 7) x 1.25), slots = ceil(total_slots / 4).
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        let k = 7;
        let home = ring_choice(&f, k) as usize;
        let mut r = f.build("bounded_load_hash", "");
        for load in 0..20u32 {
            f.in_flight = vec![2; 4];
            f.in_flight[home] = load;
            let total_slots = ((u64::from(load) + 7) * 125).div_ceil(100);
            let slots = total_slots.div_ceil(4).max(1);
            let pick = r.route(&keyed(k), &f.view()) as usize;
            if u64::from(load) <= slots {
                assert_eq!(pick, home, "load {load} <= slots {slots} must stay");
            } else {
                assert_ne!(pick, home, "load {load} > slots {slots} must overflow");
            }
        }
    }

    #[test]
    fn at_exactly_slots_the_host_still_takes_the_request() {
        // 2 equal hosts, factor 100, overall 4: total_slots = 5, slots = ceil(2.5) = 3.
        let mut f = Fixture::new(&[1, 1]);
        let k = 11;
        let home = ring_choice(&f, k) as usize;
        let mut r = f.build("bounded_load_hash", "hash_balance_factor: 100");
        f.in_flight[home] = 3;
        f.in_flight[1 - home] = 1;
        assert_eq!(r.route(&keyed(k), &f.view()) as usize, home);
        f.in_flight[home] = 4;
        f.in_flight[1 - home] = 0;
        assert_eq!(r.route(&keyed(k), &f.view()) as usize, 1 - home);
    }

    #[test]
    fn same_key_probes_in_the_same_order() {
        let mut f = Fixture::new(&[1; 8]);
        let k = 5;
        let home = ring_choice(&f, k) as usize;
        f.in_flight[home] = 100;
        let mut r = f.build("bounded_load_hash", "");
        let first = r.route(&keyed(k), &f.view());
        assert_ne!(first as usize, home);
        // A second router (another gateway, other stream) probes the same way.
        let mut other = f.build_for_gateway("bounded_load_hash", "", 3);
        for _ in 0..10 {
            assert_eq!(r.route(&keyed(k), &f.view()), first);
            assert_eq!(other.route(&keyed(k), &f.view()), first);
        }
        // Overloaded keys do not all pile onto the ring successor: the probe is key-seeded.
        let mut alt = std::collections::BTreeSet::new();
        for k in 1..400 {
            if ring_choice(&f, k) as usize == home {
                alt.insert(r.route(&keyed(k), &f.view()));
            }
        }
        assert!(alt.len() >= 4, "{alt:?}");
    }

    #[test]
    fn overflow_takes_the_first_eligible_in_probe_order_not_the_least_loaded() {
        // 8 equal hosts, factor 125: ring host at 20, the others at 0, 1, 2, 3, 3, 3, 3.
        // overall = 35 -> total_slots = ceil(36 x 1.25) = 45 -> slots = ceil(45 / 8) = 6.
        let mut f = Fixture::new(&[1; 8]);
        let mut r = f.build("bounded_load_hash", "");
        let mut not_least = 0;
        for k in 1..300 {
            let home = ring_choice(&f, k) as usize;
            let mut others = [0u32, 1, 2, 3, 3, 3, 3].into_iter();
            f.in_flight =
                (0..8).map(|i| if i == home { 20 } else { others.next().unwrap_or(0) }).collect();
            let pick = r.route(&keyed(k), &f.view()) as usize;
            assert_ne!(pick, home);
            assert!(f.in_flight[pick] <= 6, "picked an overloaded host");
            if f.in_flight[pick] > 0 {
                not_least += 1;
            }
        }
        // Probe order is a key-seeded shuffle: the idle host is the first probe ~1/7 of the time.
        assert!(not_least > 200, "{not_least}");
    }

    #[test]
    fn a_single_host_cannot_overflow() {
        let mut g = Fixture::new(&[1]);
        g.in_flight = vec![50];
        let mut s = g.build("bounded_load_hash", "");
        assert_eq!(s.route(&keyed(3), &g.view()), 0);
    }

    #[test]
    fn slots_follow_normalised_weights() {
        // Weights 1 and 3, factor 100, loads (a, b): total = a + b + 1; slots ceil(total / 4)
        // and ceil(3 total / 4). Loads (3, 5): total 9, slots 3 and 7: both stay home.
        // Loads (4, 4): total 9, slots 3 and 7: host 0 overflows to host 1.
        let mut f = Fixture::new(&[1, 3]);
        let mut r = f.build("bounded_load_hash", "hash_balance_factor: 100");
        for k in 1..100 {
            let home = ring_choice(&f, k);
            f.in_flight = vec![3, 5];
            assert_eq!(r.route(&keyed(k), &f.view()), home);
            f.in_flight = vec![4, 4];
            assert_eq!(r.route(&keyed(k), &f.view()), 1);
            f.in_flight = vec![0, 8];
            assert_eq!(r.route(&keyed(k), &f.view()), 0);
        }
    }

    #[test]
    fn rejects_factor_below_100() {
        let f = Fixture::new(&[1, 1]);
        for bad in ["hash_balance_factor: 99", "hash_balance_factor: 1.5", "factor: 150"] {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(bad).expect("yaml");
            let ctx =
                BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
            assert!((super::ENTRY.build)(&v, &ctx).is_err(), "{bad}");
        }
    }
}
