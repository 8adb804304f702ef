//! Swarm test: hundreds of small random scenarios, every policy, checked against the
//! engine's end-of-run invariants (conservation, causality, monotone clock, work
//! conservation — a violation fails the run) and against row-level consistency checks here.
//! Each scenario is chosen by a seed; a failure prints the seed and the scenario YAML.

use crate::common::Pick;
use crate::common::{get, run_rows};
use routelab::policy::routing::ROUTERS;
use routelab::rng::Stream;
use routelab::scenario::{load_str, LoadOptions};

fn dist_yaml(p: &mut Pick, mean: f64) -> String {
    let clamp = if p.chance(0.3) {
        format!(", max: {:.4}", mean * p.range(1.5, 6.0))
    } else {
        String::new()
    };
    match p.below(6) {
        0 => format!("{{ dist: constant, value: {mean:.5} }}"),
        1 => format!("{{ dist: exponential, mean: {mean:.5}{clamp} }}"),
        2 => format!("{{ dist: uniform, low: {:.5}, high: {:.5}{clamp} }}", mean * 0.5, mean * 1.5),
        3 => format!("{{ dist: lognormal, mean: {mean:.5}, cv: {:.2}{clamp} }}", p.range(0.0, 3.0)),
        4 => {
            let alpha = p.range(1.2, 4.0);
            format!(
                "{{ dist: pareto, alpha: {alpha:.3}, min: {:.5}{clamp} }}",
                mean * (alpha - 1.0) / alpha
            )
        }
        _ => format!(
            "{{ dist: empirical, values: [{:.5}, {:.5}, {:.5}], weights: [5, 3, 1] }}",
            mean * 0.3,
            mean,
            mean * 4.0
        ),
    }
}

fn arrival_yaml(p: &mut Pick, rate: f64) -> String {
    match p.below(5) {
        0 => format!("{{ process: poisson, rate_per_s: {rate:.4} }}"),
        1 => format!("{{ process: gamma, rate_per_s: {rate:.4}, cv: {:.2} }}", p.range(0.0, 3.0)),
        2 => format!(
            "{{ process: onoff, on_s: {:.3}, off_s: {:.3}, on_rate_per_s: {:.4}, off_rate_per_s: {:.4}, durations: {} }}",
            p.range(0.5, 5.0),
            p.range(0.5, 5.0),
            rate * 2.0,
            rate * p.range(0.0, 0.5),
            if p.chance(0.5) { "fixed" } else { "exponential" }
        ),
        3 => format!(
            "{{ process: diurnal, mean_rate_per_s: {rate:.4}, peak_to_trough: {:.2}, period_s: {:.2} }}",
            p.range(1.0, 20.0),
            p.range(5.0, 60.0)
        ),
        _ => format!(
            "{{ process: step, steps: [{{ at_s: 0, rate_per_s: {:.4} }}, {{ at_s: {:.2}, rate_per_s: {:.4} }}, {{ at_s: {:.2}, rate_per_s: {:.4} }}] }}",
            rate * 0.5,
            p.range(1.0, 5.0),
            rate * 2.0,
            p.range(6.0, 10.0),
            if p.chance(0.3) { 0.0 } else { rate }
        ),
    }
}

/// A random small scenario running every registered policy.
pub(crate) fn random_scenario(seed: u64) -> String {
    let mut p = Pick(Stream::from_seed(seed));
    let mut pools = String::new();
    let mut capacity = 0.0;
    let npools = 1 + p.below(3);
    let mut any_pool_without_service = false;
    for i in 0..npools {
        let replicas = 1 + p.below(5);
        let slots = 1 + p.below(4);
        let weight = 1 + p.below(3);
        let cap = if p.chance(0.25) {
            format!(", queue_capacity: {}", p.below(4))
        } else {
            String::new()
        };
        let svc = if p.chance(0.3) {
            format!(", service_s: {}", dist_yaml(&mut p, 0.05))
        } else {
            any_pool_without_service = true;
            String::new()
        };
        capacity += (replicas * slots) as f64 / 0.05;
        pools.push_str(&format!(
            "    - {{ name: p{i}, kind: queue, replicas: {replicas}, slots: {slots}, weight: {weight}{cap}{svc} }}\n"
        ));
    }
    let load = p.range(0.2, 1.4);
    let nclasses = 1 + p.below(3);
    let mut classes = String::new();
    for k in 0..nclasses {
        let rate = capacity * load / nclasses as f64;
        let arrival = arrival_yaml(&mut p, rate);
        let svc = if any_pool_without_service || p.chance(0.5) {
            format!("\n    service_s: {}", dist_yaml(&mut p, 0.05))
        } else {
            String::new()
        };
        let tokens = if p.chance(0.3) {
            format!(
                "\n    prompt_tokens: {}\n    output_tokens: {}",
                dist_yaml(&mut p, 500.0),
                dist_yaml(&mut p, 100.0)
            )
        } else {
            String::new()
        };
        let timeout = if p.chance(0.4) {
            format!("\n    timeout_s: {:.3}", p.range(0.02, 1.0))
        } else {
            String::new()
        };
        classes
            .push_str(&format!("  - class: c{k}\n    arrival: {arrival}{svc}{tokens}{timeout}\n"));
    }
    let horizon = match p.below(3) {
        0 => format!("{{ max_requests: {} }}", 200 + p.below(3000)),
        1 => format!("{{ duration_s: {:.2} }}", p.range(1.0, 20.0)),
        _ => format!(
            "{{ max_requests: {}, duration_s: {:.2}, drain_s: {:.3} }}",
            200 + p.below(3000),
            p.range(1.0, 20.0),
            p.range(0.0, 0.5)
        ),
    };
    let warmup = if p.chance(0.5) {
        format!("warmup: {{ requests: {} }}\n", p.below(150))
    } else {
        String::new()
    };
    let gateway = if p.chance(0.5) {
        format!(
            "gateway: {{ replicas: {}, metrics_refresh_ms: {} }}\n",
            1 + p.below(4),
            [0, 10, 100][p.below(3) as usize]
        )
    } else {
        String::new()
    };
    let policies: Vec<&str> = ROUTERS.iter().map(|e| e.name).collect();
    format!(
        "name: swarm-{seed}\nseed: {seed}\nreplications: 1\nhorizon: {horizon}\n{warmup}{gateway}workload:\n{classes}cluster:\n  pools:\n{pools}policies: [{}]\n",
        policies.join(", ")
    )
}

#[test]
fn invariants_hold_over_200_random_scenarios_and_every_policy() {
    let mut runs = 0;
    let (mut timed_out, mut rejected, mut unfinished) = (0.0, 0.0, 0.0);
    for seed in 1..=200u64 {
        let yaml = random_scenario(seed);
        let s = load_str(&yaml, &format!("swarm seed {seed}"), &LoadOptions::default())
            .unwrap_or_else(|e| panic!("seed {seed}: generated scenario rejected: {e}\n{yaml}"));
        let has_timeout = s.classes.iter().any(|c| c.timeout.is_some());
        let has_drain = s.horizon.drain.is_some();
        let rows = run_rows(s, 0);
        let arrivals0 = get(&rows[0], "arrivals");
        for r in &rows {
            let ctx = || format!("seed {seed}, policy {}:\n{yaml}", r.key.policy);
            let (a, c, t, j, u) = (
                get(r, "arrivals"),
                get(r, "completed"),
                get(r, "timed_out"),
                get(r, "rejected"),
                get(r, "unfinished"),
            );
            assert_eq!(a, c + t + j + u, "measured conservation, {}", ctx());
            // Common random numbers: every policy sees the same arrivals.
            assert_eq!(a, arrivals0, "arrivals differ between policies, {}", ctx());
            if !has_timeout {
                assert_eq!(t, 0.0, "timeouts without timeout_s, {}", ctx());
            }
            if !has_drain {
                assert_eq!(u, 0.0, "unfinished without drain_s, {}", ctx());
            }
            if let (Some(p50), Some(p95), Some(p99)) =
                (r.get("ttft_ms_p50"), r.get("ttft_ms_p95"), r.get("ttft_ms_p99"))
            {
                assert!(p50 <= p95 && p95 <= p99, "quantiles out of order, {}", ctx());
                let all = get(r, "ttft_ms_p95_all");
                assert!(all >= p95, "censored p95 below uncensored, {}", ctx());
                if t == 0.0 && u == 0.0 {
                    // Every request that started service completed, so E2E >= wait per request.
                    let (e2e, wait) = (get(r, "e2e_ms_mean"), get(r, "queue_wait_ms_mean"));
                    assert!(e2e + 1e-6 >= wait, "mean E2E {e2e} < mean wait {wait}, {}", ctx());
                }
            }
            let rate = r.get("timeout_rate").unwrap_or(0.0);
            assert!((0.0..=1.0).contains(&rate), "timeout rate {rate}, {}", ctx());
            timed_out += t;
            rejected += j;
            unfinished += u;
            runs += 1;
        }
    }
    assert_eq!(runs, 200 * ROUTERS.len());
    // The sweep must exercise every way a request can end, or it proves little.
    assert!(
        timed_out > 0.0 && rejected > 0.0 && unfinished > 0.0,
        "{timed_out} {rejected} {unfinished}"
    );
}
