//! Swarm test with the cluster breaking and the gateway protecting itself: the random queue
//! and `llm` scenarios of the other swarms, with random faults (every kind, scheduled and
//! random, named replicas and pool picks), health mechanisms (active checks, nginx passive,
//! Envoy outlier detection, SGLang breakers, readiness, degraded), admission (rate limits of
//! every kind, concurrency buckets, `max_conns`, queues with timeouts, shedding), retries
//! (budgets, previous hosts, per-try timeouts, hedging), time-to-first-token timeouts and
//! tiers, under three routing policies each.
//!
//! Every run must succeed — the engine fails a run that breaks request conservation (every
//! request ends in exactly one of completed, timed out, rejected, error, failed, unfinished),
//! causality, work conservation on live replicas, KV conservation, or leaves gateway
//! in-flight counters open — and its rows must be consistent: the outcome rates add up to 1,
//! no ejection without a health mechanism, no error or crash loss without a fault or a
//! protection that produces them. A sub-swarm gives every class unbounded retries on resets
//! and connect failures with an unlimited retry budget and only crash faults: then no
//! request may be lost to a crash with attempts left (`failed` counts only requests that
//! used every attempt). Runs are repeated to check they are
//! deterministic.
//!
//! `ROUTELAB_FAULT_SWARM=N` sets the number of scenarios (default 700 in release builds:
//! 2100 runs; 60 in debug builds).

use crate::common::Pick;
use crate::invariants::random_scenario;
use crate::llm_invariants::random_llm_scenario;
use routelab::engine;
use routelab::policy::routing::ROUTERS;
use routelab::report::{RunKey, RunRow};
use routelab::rng::Stream;
use routelab::scenario::{load_str, LoadOptions};
use serde_yaml_ng::{Mapping, Value};

fn size() -> u64 {
    // 700 scenarios (2100 runs, ~10 s on 2 cores) in release test runs; a debug build runs
    // ~20x slower, so it takes a sample.
    let default = if cfg!(debug_assertions) { 60 } else { 700 };
    std::env::var("ROUTELAB_FAULT_SWARM").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn yaml(s: &str) -> Value {
    serde_yaml_ng::from_str(s).unwrap_or_else(|e| panic!("test YAML {s:?}: {e}"))
}

fn map(v: &mut Value) -> &mut Mapping {
    v.as_mapping_mut().expect("a mapping")
}

/// What was switched on, to decide which checks apply.
#[derive(Debug, Default, Clone, Copy)]
struct On {
    faults: bool,
    health: bool,
    admission: bool,
    max_conns: bool,
    strict_retry: bool,
    sessions: bool,
}

/// The pools' names and replica counts.
fn pools(v: &Value) -> Vec<(String, u64)> {
    v["cluster"]["pools"]
        .as_sequence()
        .expect("pools")
        .iter()
        .map(|p| {
            (p["name"].as_str().expect("name").to_string(), p["replicas"].as_u64().expect("n"))
        })
        .collect()
}

fn fault(p: &mut Pick, pools: &[(String, u64)], gateways: u64, crash_only: bool) -> String {
    let kinds = ["crash", "slowdown", "errors", "hang", "partition"];
    let kind = if crash_only { "crash" } else { kinds[p.below(5) as usize] };
    let (pool, n) = &pools[p.below(pools.len() as u64) as usize];
    let target = match p.below(3) {
        0 => format!("replicas: [{pool}-{}]", p.below(*n)),
        1 if *n > 1 => format!("pool: {pool}, count: {}", 1 + p.below(*n - 1)),
        1 => format!("pool: {pool}, fraction: {:.2}", p.range(0.1, 1.0)),
        _ => format!("pool: {pool}"),
    };
    let random = p.chance(0.35) && !target.contains("count") && !target.contains("fraction");
    let timing = if random {
        format!("mtbf_s: {:.2}, mttr_s: {:.2}", p.log_range(1.0, 30.0), p.log_range(0.05, 5.0))
    } else {
        format!("at_s: {:.2}, duration_s: {:.2}", p.range(0.0, 20.0), p.log_range(0.05, 10.0))
    };
    let extra = match kind {
        "crash" if p.chance(0.5) => format!(", restart_s: {:.2}", p.range(0.0, 2.0)),
        "slowdown" => {
            let f = p.range(1.0, 20.0);
            if p.chance(0.3) {
                format!(", factor: {f:.2}, ramp_to: {:.2}", p.range(1.0, 20.0))
            } else {
                format!(", factor: {f:.2}")
            }
        }
        "errors" => format!(
            ", probability: {:.2}, status: {}, latency_ms: {:.1}",
            p.range(0.05, 1.0),
            [500, 502, 503][p.below(3) as usize],
            p.range(0.0, 20.0)
        ),
        "partition" if p.chance(0.5) => format!(", gateways: [{}]", p.below(gateways)),
        _ => String::new(),
    };
    format!("{{ kind: {kind}, {target}, {timing}{extra} }}")
}

fn health(p: &mut Pick) -> Value {
    let mut h = Mapping::new();
    if p.chance(0.4) {
        h.insert("active".into(), yaml(&format!(
            "{{ interval_s: {:.2}, timeout_s: {:.2}, unhealthy_threshold: {}, healthy_threshold: {} }}",
            p.range(0.5, 5.0), p.range(0.05, 0.5), 1 + p.below(3), 1 + p.below(3)
        )));
    }
    if p.chance(0.4) {
        h.insert(
            "passive".into(),
            yaml(&format!(
                "{{ max_fails: {}, fail_timeout_s: {}, next_upstream: [error, timeout{}] }}",
                p.below(4),
                1 + p.below(10),
                if p.chance(0.5) { ", http_500, http_502, http_503, non_idempotent" } else { "" }
            )),
        );
    }
    if p.chance(0.4) {
        h.insert("outlier_detection".into(), yaml(&format!(
            "{{ consecutive_5xx: {}, interval_s: {:.2}, base_ejection_time_s: {:.2}, max_ejection_percent: {}, always_eject_one_host: {}, legacy_ejection_cap: {} }}",
            1 + p.below(5), p.range(0.5, 5.0), p.range(0.5, 10.0), [10, 50, 100][p.below(3) as usize], p.chance(0.5), p.chance(0.3)
        )));
    }
    if p.chance(0.3) {
        h.insert(
            "circuit_breaker".into(),
            yaml(&format!(
                "{{ failure_threshold: {}, success_threshold: {}, timeout_s: {:.2} }}",
                1 + p.below(5),
                1 + p.below(3),
                p.range(0.5, 10.0)
            )),
        );
    }
    if p.chance(0.25) {
        h.insert("readiness".into(), yaml(&format!(
            "{{ period_s: {:.2}, timeout_s: 0.1, failure_threshold: {}, propagation_delay_s: {:.2} }}",
            p.range(0.5, 5.0), 1 + p.below(3), p.range(0.0, 2.0)
        )));
    }
    if p.chance(0.25) {
        h.insert(
            "degraded".into(),
            yaml(&format!("{{ kv_util_above: {:.2} }}", p.range(0.3, 1.0))),
        );
    }
    if p.chance(0.3) {
        h.insert("healthy_panic_threshold".into(), Value::from(p.below(101)));
    }
    Value::Mapping(h)
}

fn admission(p: &mut Pick, on: &mut On) -> Value {
    let mut a = Mapping::new();
    if p.chance(0.3) {
        let rl = match p.below(3) {
            0 => format!("{{ kind: token_bucket, rate_per_s: {:.2}, burst: {:.1}, cost: {} }}",
                p.log_range(1.0, 500.0), p.range(1.0, 50.0), if p.chance(0.5) { "requests" } else { "input_tokens" }),
            1 => format!("{{ kind: envoy_local, max_tokens: {}, tokens_per_fill: {}, fill_interval_s: {:.2} }}",
                1 + p.below(50), 1 + p.below(10), p.range(0.05, 1.0)),
            _ => format!("{{ kind: nginx_limit_req, rate_per_s: {:.2}, burst: {}, nodelay: {} }}",
                p.log_range(1.0, 500.0), p.below(20), p.chance(0.5)),
        };
        a.insert("rate_limit".into(), yaml(&rl));
    }
    if p.chance(0.3) {
        a.insert(
            "concurrency".into(),
            yaml(&format!(
                "{{ max_concurrent_requests: {}, rate_limit_tokens_per_second: {:.1} }}",
                1 + p.below(64),
                p.range(0.0, 200.0)
            )),
        );
    }
    if p.chance(0.25) {
        on.max_conns = true;
        a.insert("max_conns".into(), Value::from(1 + p.below(16)));
    }
    if p.chance(0.4) {
        a.insert(
            "queue".into(),
            yaml(&format!(
                "{{ size: {}, timeout_s: {:.2} }}",
                1 + p.below(100),
                p.log_range(0.05, 20.0)
            )),
        );
    }
    if p.chance(0.25) {
        a.insert(
            "shed".into(),
            yaml(&format!("{{ queue_depth_threshold: {:.1} }}", p.range(0.5, 10.0))),
        );
    }
    on.admission = !a.is_empty();
    Value::Mapping(a)
}

fn retries(p: &mut Pick, strict: bool) -> Value {
    if strict {
        return yaml("{ max_attempts: 100, retry_on: [5xx, reset, connect], max_retries: 1000000000, backoff: { base_interval_ms: 5 } }");
    }
    let mut r = format!(
        "max_attempts: {}, retry_on: [{}], previous_hosts: {}",
        1 + p.below(4),
        ["5xx, reset, connect, timeout", "connect", "reset, 429", "5xx, 429, connect, timeout"]
            [p.below(4) as usize],
        p.chance(0.5)
    );
    if p.chance(0.4) {
        r.push_str(&format!(
            ", per_try_timeout_s: {:.2}, hedge_on_per_try_timeout: {}",
            p.log_range(0.02, 5.0),
            p.chance(0.4)
        ));
    }
    if p.chance(0.5) {
        r.push_str(", budget: { budget_percent: 20, min_retry_concurrency: 3 }");
    }
    if p.chance(0.3) {
        r.push_str(", resend_broken_streams: false");
    }
    yaml(&format!("{{ {r} }}"))
}

/// Adds faults and protection to scenario `v`; what it switched on.
fn protect(p: &mut Pick, v: &mut Value, seed: u64, strict: bool) -> On {
    let mut on = On { strict_retry: strict, ..On::default() };
    let pools = pools(v);
    let gateways = v["gateway"]["replicas"].as_u64().unwrap_or(1);
    if strict || p.chance(0.8) {
        on.faults = true;
        let n = 1 + p.below(3);
        let list: Vec<Value> = (0..n).map(|_| yaml(&fault(p, &pools, gateways, strict))).collect();
        map(v).insert("faults".into(), Value::Sequence(list));
    }
    let mut g = v.get("gateway").cloned().unwrap_or(Value::Mapping(Mapping::new()));
    if !strict && p.chance(0.7) {
        let h = health(p);
        on.health = !h.as_mapping().is_some_and(|m| m.is_empty());
        map(&mut g).insert("health".into(), h);
    }
    if !strict && p.chance(0.5) {
        let a = admission(p, &mut on);
        map(&mut g).insert("admission".into(), a);
    }
    if !strict && p.chance(0.5) {
        map(&mut g).insert("connect_timeout_ms".into(), Value::from(p.log_range(1.0, 3000.0)));
    }
    if strict || p.chance(0.5) {
        map(&mut g).insert("retries".into(), retries(p, strict));
    }
    map(v).insert("gateway".into(), g);
    for c in v["workload"].as_sequence_mut().expect("workload") {
        let c = map(c);
        if c.contains_key("session") {
            on.sessions = true;
        }
        if strict {
            // Nothing but crashes may end a request early.
            c.remove("timeout_s");
            continue;
        }
        if p.chance(0.3) {
            c.insert("ttft_timeout_s".into(), Value::from(p.log_range(0.05, 10.0)));
        }
        if p.chance(0.4) {
            c.insert(
                "tier".into(),
                yaml(&format!("{{ name: t{}, priority: {} }}", p.below(3), p.below(5) as i64 - 2)),
            );
        }
        if p.chance(0.2) {
            c.insert("retries".into(), retries(p, false));
        }
    }
    let n = ROUTERS.len();
    let policies: Vec<Value> =
        (0..3).map(|j| Value::from(ROUTERS[(seed as usize * 7 + j) % n].name)).collect();
    map(v).insert("policies".into(), Value::Sequence(policies));
    on
}

/// The row-level checks of one run; what failed.
fn check(r: &RunRow, rec: &routelab::metrics::Recorder, on: &On) -> Vec<String> {
    let mut bad = Vec::new();
    let get = |m: &str| r.get(m).unwrap_or(0.0);
    let ends = ["completed", "timed_out", "rejected", "errors", "failed", "unfinished"];
    let sum: f64 = ends.iter().map(|m| get(m)).sum();
    if sum != get("arrivals") {
        bad.push(format!("arrivals {} != ended {sum}", get("arrivals")));
    }
    if get("arrivals") > 0.0 {
        let rates =
            ["success_rate", "timeout_rate", "rejection_rate", "error_rate", "failure_rate"];
        for m in rates {
            if !(0.0..=1.0).contains(&get(m)) {
                bad.push(format!("{m} = {} outside [0, 1]", get(m)));
            }
        }
        let total: f64 =
            rates.iter().map(|m| get(m)).sum::<f64>() + get("unfinished") / get("arrivals");
        if (total - 1.0).abs() > 5e-6 {
            bad.push(format!("outcome rates add up to {total}"));
        }
    }
    if !on.health && get("ejections") > 0.0 {
        bad.push(format!("{} ejections without a health mechanism", get("ejections")));
    }
    if !on.faults && !on.health && !on.max_conns && (get("errors") > 0.0 || get("failed") > 0.0) {
        bad.push(format!(
            "errors {} / failed {} with nothing to cause them",
            get("errors"),
            get("failed")
        ));
    }
    if on.strict_retry && rec.all.failed > rec.failed_unretriable {
        bad.push(format!(
            "{} requests lost to a crash with attempts and budget left",
            rec.all.failed - rec.failed_unretriable
        ));
    }
    if get("attempts") < get("completed") {
        bad.push(format!("{} attempts for {} completions", get("attempts"), get("completed")));
    }
    for g in &r.groups {
        let gsum: f64 = ends
            .iter()
            .map(|m| g.values[routelab::report::metric_index(m).expect("m")].unwrap_or(0.0))
            .sum();
        let arr = g.values[routelab::report::metric_index("arrivals").expect("m")].unwrap_or(0.0);
        if gsum != arr {
            bad.push(format!("group {}: arrivals {arr} != ended {gsum}", g.label));
        }
    }
    bad
}

fn scenario_for(seed: u64) -> (String, On) {
    let mut p = Pick(Stream::from_seed(seed ^ 0x6661_756c_7473));
    let base = if seed % 2 == 0 { random_scenario(seed) } else { random_llm_scenario(seed).0 };
    let mut v: Value = serde_yaml_ng::from_str(&base).expect("generated YAML parses");
    let strict = seed % 5 == 0;
    let on = protect(&mut p, &mut v, seed, strict);
    map(&mut v).insert("name".into(), Value::from(format!("fault-swarm-{seed}")));
    (serde_yaml_ng::to_string(&v).expect("serialises"), on)
}

/// `ROUTELAB_FAULT_DUMP=DIR` writes the generated scenarios into DIR instead of running them
/// (to replay one with the CLI).
#[test]
fn faults_health_admission_and_retries_keep_every_invariant() {
    if let Ok(dir) = std::env::var("ROUTELAB_FAULT_DUMP") {
        for seed in 1..=size() {
            let (text, _) = scenario_for(seed);
            std::fs::write(format!("{dir}/fault-{seed}.yaml"), text).expect("write");
        }
        return;
    }
    use rayon::prelude::*;
    let n = size();
    let results: Vec<(u64, String, Vec<String>, [f64; 6])> = (1..=n)
        .into_par_iter()
        .map(|seed| {
            let (text, on) = scenario_for(seed);
            let s = load_str(&text, &format!("fault swarm seed {seed}"), &LoadOptions::default())
                .unwrap_or_else(|e| {
                    panic!("seed {seed}: generated scenario rejected: {e}\n{text}")
                });
            let mut problems = Vec::new();
            let mut totals = [0.0; 6];
            for policy in &s.policies {
                let key = RunKey {
                    scenario: s.name.clone(),
                    cell: 0,
                    params: String::new(),
                    policy: policy.label.clone(),
                    autoscaler: "none".into(),
                    replication: 0,
                };
                match engine::run(&s, policy, 0) {
                    Ok(out) => {
                        let row = RunRow::from_output(key.clone(), &out);
                        for b in check(&row, &out.recorder, &on) {
                            problems.push(format!("{}: {b}", policy.label));
                        }
                        for (t, m) in totals.iter_mut().zip([
                            "errors",
                            "failed",
                            "timed_out",
                            "retry_rate",
                            "ejections",
                            "rejected",
                        ]) {
                            *t += row.get(m).unwrap_or(0.0);
                        }
                        // Same scenario, same seed: the same row.
                        if seed % 4 == 1 {
                            let again = engine::run(&s, policy, 0)
                                .ok()
                                .map(|o| RunRow::from_output(key, &o));
                            if again.as_ref() != Some(&row) {
                                problems.push(format!("{}: not deterministic", policy.label));
                            }
                        }
                    }
                    Err(e) => problems.push(format!("{}: run failed: {e}", policy.label)),
                }
            }
            (seed, text, problems, totals)
        })
        .collect();
    let mut failures = Vec::new();
    let mut totals = [0.0; 6];
    for (seed, text, problems, t) in &results {
        if !problems.is_empty() {
            failures.push(format!("seed {seed}: {}\n{text}", problems.join("; ")));
        }
        for (a, b) in totals.iter_mut().zip(t) {
            *a += b;
        }
    }
    eprintln!(
        "fault swarm: {n} scenarios, {} runs; errors {} failed {} timed out {} rejected {}, retries/request summed {:.2}, ejections {}",
        3 * n, totals[0], totals[1], totals[2], totals[5], totals[3], totals[4]
    );
    let strict_failed: f64 = results.iter().filter(|r| r.0 % 5 == 0).map(|r| r.3[1]).sum();
    eprintln!("fault swarm: crash-only scenarios with unbounded retries lost {strict_failed} requests (all after their last attempt or mid-stream)");
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n\n"));
    if n >= 50 {
        // The swarm must exercise what it claims.
        assert!(totals.iter().all(|&x| x > 0.0), "{totals:?}");
    }
}
