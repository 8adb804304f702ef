//! Conformance over the policy registry: every routing policy builds with default parameters,
//! only ever picks a candidate (never a non-ready replica), and is deterministic for a seed.
//! Invariants under every policy are covered by the swarm test in `invariants.rs`.

use routelab::policy::routing::{
    BuildCtx, Completion, FirstToken, KvIndex, ReplicaInfo, RequestView, RouteView, ROUTERS,
};
use routelab::rng::Stream;
use routelab::time::{SimDuration, SimTime};
use std::collections::BTreeSet;

/// Per-replica sets of held block hashes.
struct Held(Vec<BTreeSet<u64>>);

impl KvIndex for Held {
    fn leading_matches(&self, hashes: &[u64], candidates: &[u32], out: &mut Vec<u32>) {
        out.clear();
        for &r in candidates {
            let n = hashes.iter().take_while(|h| self.0[r as usize].contains(h)).count();
            out.push(n as u32);
        }
    }
}

/// Routes 5000 requests over 8 heterogeneous replicas where only some are candidates, with
/// random scraped loads, weights, sessions, shared prefixes and KV residency; completes
/// routed requests in random order (first token, then completion). Returns the picks.
fn drive(name: &str, seed: u64) -> Vec<u32> {
    let entry = ROUTERS.iter().find(|e| e.name == name).expect("registered");
    let mut rng = Stream::from_seed(seed);
    let n = 8usize;
    let weights: Vec<u32> = (0..n).map(|_| 1 + (rng.next_u64() % 4) as u32).collect();
    let infos: Vec<ReplicaInfo> = (0..n)
        .map(|r| ReplicaInfo {
            flops_per_s: 1e14 * (1 + r % 3) as f64,
            kv_capacity_blocks: 500 + 100 * r as u32,
            block_size: 16,
            pool: (r % 2) as u16,
            slots: 64,
        })
        .collect();
    let ctx = BuildCtx { run_seed: seed, weights: &weights, replicas: &infos, gateway: 0 };
    let mut router = (entry.build)(&serde_yaml_ng::Value::Null, &ctx)
        .unwrap_or_else(|e| panic!("{name} does not build with defaults: {e}"));
    let mut in_flight = vec![0u32; n];
    let mut queued = vec![0u32; n];
    let mut in_service = vec![0u32; n];
    let mut kv_util = vec![0f32; n];
    let loaded: Vec<u16> = (0..n).map(|r| (r % 2) as u16).collect();
    let mut held = Held(vec![BTreeSet::new(); n]);
    let mut live: Vec<(u64, u32, bool)> = Vec::new();
    let mut picks = Vec::new();
    let mut hashes = Vec::new();
    for step in 0..5000u64 {
        let now = SimTime(step * 1_000_000);
        // The candidate set changes every 500 requests (replicas leaving and rejoining).
        let epoch = step / 500;
        let candidates: Vec<u32> =
            (0..n as u32).filter(|r| (epoch + u64::from(*r)) % 3 != 0).collect();
        for r in 0..n {
            queued[r] = (rng.next_u64() % 5) as u32;
            in_service[r] = (rng.next_u64() % 3) as u32;
            kv_util[r] = (rng.next_u64() % 100) as f32 / 100.0;
        }
        // A prompt: one of 5 shared prefixes of 1..=20 blocks, maybe a session.
        let group = rng.next_u64() % 5;
        let blocks = 1 + rng.next_u64() % 20;
        hashes.clear();
        hashes.extend((0..blocks).map(|b| 1 + group * 1000 + b));
        let session = if rng.next_u64() % 2 == 0 { 1 + rng.next_u64() % 50 } else { 0 };
        let req = RequestView {
            id: step,
            class: 0,
            model: (step % 2) as u16,
            prompt_tokens: 16 * blocks as u32 + (rng.next_u64() % 16) as u32,
            session,
            hashes: &hashes,
        };
        let view = RouteView {
            candidates: &candidates,
            candidates_epoch: epoch,
            in_flight: &in_flight,
            global_in_flight: &in_flight,
            queued: &queued,
            in_service: &in_service,
            kv_util: &kv_util,
            loaded_model: &loaded,
            weights: &weights,
            replicas: &infos,
            kv_index: &held,
            block_size: 16,
            now,
        };
        let pick = router.route(&req, &view);
        assert!(
            candidates.contains(&pick),
            "{name} picked non-candidate {pick} from {candidates:?}"
        );
        in_flight[pick as usize] += 1;
        held.0[pick as usize].extend(hashes.iter().copied());
        if rng.next_u64() % 7 == 0 {
            held.0[(rng.next_u64() % n as u64) as usize].clear();
        }
        live.push((step, pick, false));
        picks.push(pick);
        // Feedback: some live request gets its first token, some other one ends.
        for _ in 0..2 {
            if live.is_empty() {
                break;
            }
            let k = (rng.next_u64() % live.len() as u64) as usize;
            let (id, r, ft) = live[k];
            if !ft {
                router.on_first_token(&FirstToken { id, replica: r, now });
                live[k].2 = true;
                continue;
            }
            live.swap_remove(k);
            in_flight[r as usize] -= 1;
            let total = SimDuration(1_000_000 * (1 + rng.next_u64() % 50));
            router.on_complete(&Completion {
                id,
                replica: r,
                now,
                first_token: Some(total),
                total,
                success: rng.next_u64() % 10 != 0,
            });
        }
    }
    picks
}

#[test]
fn every_policy_builds_picks_only_candidates_and_is_deterministic() {
    assert!(ROUTERS.len() >= 6);
    for e in ROUTERS {
        let a = drive(e.name, 11);
        let b = drive(e.name, 11);
        assert_eq!(a, b, "{} is not deterministic", e.name);
        let distinct: std::collections::BTreeSet<u32> = a.iter().copied().collect();
        assert!(distinct.len() > 1, "{} sends everything to one replica", e.name);
    }
}

#[test]
fn registry_names_are_unique_sorted_and_documented() {
    let names: Vec<&str> = ROUTERS.iter().map(|e| e.name).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted, "ROUTERS must be alphabetical without duplicates");
    for e in ROUTERS {
        assert!(!e.summary.is_empty(), "{} has no summary", e.name);
        for p in e.params {
            assert!(
                !p.default.is_empty() && !p.doc.is_empty(),
                "{}.{} undocumented",
                e.name,
                p.name
            );
        }
    }
}

#[test]
fn policies_all_expands_to_every_registered_policy() {
    let base = "name: all\nhorizon: { max_requests: 10 }\nworkload:\n  - class: a\n    \
                arrival: { process: poisson, rate_per_s: 1 }\n    service_s: { dist: constant, value: 0.1 }\n\
                cluster:\n  pools:\n    - { name: q, kind: queue, replicas: 2 }\n";
    let s = crate::common::scenario(&format!("{base}policies: all\n"));
    let labels: Vec<&str> = s.policies.iter().map(|p| p.label.as_str()).collect();
    let names: Vec<&str> = ROUTERS.iter().map(|e| e.name).collect();
    assert_eq!(labels, names);
    // Listed policies keep their parameters; `all` adds the rest with defaults.
    let s = crate::common::scenario(&format!(
        "{base}policies: [{{ name: power_of_d, d: 3 }}, all, {{ name: power_of_d, label: p5, d: 5 }}]\n"
    ));
    let labels: Vec<&str> = s.policies.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels.len(), ROUTERS.len() + 1, "{labels:?}");
    assert_eq!(labels[0], "power_of_d");
    assert_eq!(labels.last(), Some(&"p5"));
    assert_eq!(s.policies[0].params["d"], serde_yaml_ng::Value::from(3));
}
