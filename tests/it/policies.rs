//! Conformance over the policy registry: every routing policy builds with default parameters,
//! only ever picks a candidate (never a non-ready replica), and is deterministic for a seed.
//! Invariants under every policy are covered by the swarm test in `invariants.rs`.

use routelab::policy::routing::{BuildCtx, RequestView, RouteView, ROUTERS};
use routelab::rng::Stream;

/// Routes 5000 requests over 8 replicas where only some are candidates, with random loads
/// and weights; returns the picks.
fn drive(name: &str, seed: u64) -> Vec<u32> {
    let entry = ROUTERS.iter().find(|e| e.name == name).expect("registered");
    let mut rng = Stream::from_seed(seed);
    let weights: Vec<u32> = (0..8).map(|_| 1 + (rng.next_u64() % 4) as u32).collect();
    let ctx = BuildCtx { run_seed: seed, weights: &weights };
    let mut router = (entry.build)(&serde_yaml_ng::Value::Null, &ctx)
        .unwrap_or_else(|e| panic!("{name} does not build with defaults: {e}"));
    let mut in_flight = vec![0u32; 8];
    let mut queued = vec![0u32; 8];
    let mut in_service = vec![0u32; 8];
    let mut picks = Vec::new();
    for step in 0..5000u64 {
        // The candidate set changes every 500 requests (replicas leaving and rejoining).
        let epoch = step / 500;
        let candidates: Vec<u32> = (0..8).filter(|r| (epoch + u64::from(*r)) % 3 != 0).collect();
        for r in 0..8 {
            if rng.next_u64() % 4 == 0 && in_flight[r] > 0 {
                in_flight[r] -= 1;
            }
            queued[r] = (rng.next_u64() % 5) as u32;
            in_service[r] = (rng.next_u64() % 3) as u32;
        }
        let view = RouteView {
            candidates: &candidates,
            candidates_epoch: epoch,
            in_flight: &in_flight,
            queued: &queued,
            in_service: &in_service,
            weights: &weights,
            now: routelab::time::SimTime(step * 1_000_000),
        };
        let pick = router.route(&RequestView::default(), &view);
        assert!(
            candidates.contains(&pick),
            "{name} picked non-candidate {pick} from {candidates:?}"
        );
        in_flight[pick as usize] += 1;
        picks.push(pick);
        // Feedback for latency-aware policies: a completion on a random replica.
        let r = (rng.next_u64() % 8) as u32;
        let total = routelab::time::SimDuration(1_000_000 * (1 + rng.next_u64() % 50));
        router.on_complete(&routelab::policy::routing::Completion {
            replica: r,
            now: routelab::time::SimTime(step * 1_000_000),
            first_token: Some(total),
            total,
            success: rng.next_u64() % 10 != 0,
        });
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
