//! The gateway layer: several gateway instances with local counters, scraped (stale) replica
//! metrics, and the accounting files. Comparisons are paired: the same requests, one knob
//! changed.

use crate::common::{get, run_rows, scenario, TempDir};
use routelab::report::RunRow;

/// 8 single-slot queue replicas at 85% load (exponential service, mean 100 ms) behind
/// `gateways` gateway instances that scrape every `refresh_ms`.
fn queue_cluster(policy: &str, gateways: u32, refresh_ms: u32, spread: &str) -> Vec<RunRow> {
    run_rows(
        scenario(&format!(
            "name: gw\nseed: 5\nreplications: 2\nhorizon: {{ max_requests: 40000 }}\n\
             warmup: {{ requests: 2000 }}\n\
             gateway: {{ replicas: {gateways}, metrics_refresh_ms: {refresh_ms}, spread: {spread} }}\n\
             workload:\n  - class: r\n    arrival: {{ process: poisson, rate_per_s: 68 }}\n    \
             service_s: {{ dist: exponential, mean: 0.1 }}\n\
             cluster: {{ pools: [ {{ name: p, kind: queue, replicas: 8 }} ] }}\n\
             policies: [{policy}]\n"
        )),
        2,
    )
}

fn mean(rows: &[RunRow], metric: &str) -> f64 {
    rows.iter().map(|r| get(r, metric)).sum::<f64>() / rows.len() as f64
}

#[test]
fn stale_queue_signals_make_gateways_herd() {
    // join_shortest_queue reads scraped queue lengths: with a 1 s scrape every instance sends
    // its whole interval's traffic to whichever replica looked shortest at the last scrape.
    let live = queue_cluster("join_shortest_queue", 4, 0, "random");
    let stale = queue_cluster("join_shortest_queue", 4, 1000, "random");
    let (a, b) = (mean(&live, "ttft_ms_p95"), mean(&stale, "ttft_ms_p95"));
    assert!(b > 2.0 * a, "1 s stale p95 {b:.1} ms should be far above live {a:.1} ms");
    let (ia, ib) = (mean(&live, "load_imbalance"), mean(&stale, "load_imbalance"));
    assert!(ib > ia * 1.2, "imbalance live {ia:.3} vs stale {ib:.3}");
    // Same requests: arrivals identical.
    assert_eq!(get(&live[0], "arrivals"), get(&stale[0], "arrivals"));
}

#[test]
fn local_counters_lose_balance_as_gateways_multiply() {
    // least_requests counts only this gateway's in-flight requests: one gateway balances the
    // whole load; 8 independent gateways each balance an eighth of it.
    let one = queue_cluster("least_requests", 1, 0, "random");
    let eight = queue_cluster("least_requests", 8, 0, "random");
    let (a, b) = (mean(&one, "ttft_ms_p95"), mean(&eight, "ttft_ms_p95"));
    assert!(b > 1.3 * a, "8 gateways p95 {b:.1} ms vs 1 gateway {a:.1} ms");
    // global_least_request reads the shared store: the number of gateways does not matter.
    let g1 = queue_cluster("{ name: global_least_request, weighting: none }", 1, 0, "random");
    let g8 = queue_cluster("{ name: global_least_request, weighting: none }", 8, 0, "round_robin");
    let (c, d) = (mean(&g1, "ttft_ms_p95"), mean(&g8, "ttft_ms_p95"));
    assert!((d - c).abs() <= 0.1 * c, "shared counters: 1 gateway {c:.1} vs 8 {d:.1}");
}

#[test]
fn routing_shares_and_decision_trace_are_written() {
    let dir = TempDir::new("gw-files");
    let yaml = "name: gwf\nseed: 3\nhorizon: { max_requests: 3000 }\n\
                gateway: { replicas: 3, metrics_refresh_ms: 50 }\n\
                workload:\n  - class: r\n    arrival: { process: poisson, rate_per_s: 50 }\n    \
                service_s: { dist: exponential, mean: 0.1 }\n\
                cluster: { pools: [ { name: p, kind: queue, replicas: 4 } ] }\n\
                policies: [round_robin, join_shortest_queue]\n";
    let f = dir.file("gwf.yaml", yaml.as_bytes());
    let out = dir.path().join("out");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_routelab"))
        .args(["run", "--quiet", "--no-plots", "--trace-decisions", "100..150", "--out"])
        .arg(&out)
        .arg(&f)
        .status()
        .expect("runs");
    assert!(status.success());
    let routing = std::fs::read_to_string(out.join("routing.csv")).expect("routing.csv");
    let rows: Vec<&str> = routing.lines().skip(1).collect();
    assert_eq!(rows.len(), 2 * 4, "one row per policy and replica");
    // round_robin over 3 gateways: each gateway cycles on its own, shares stay near 1/4.
    let shares: Vec<f64> = rows
        .iter()
        .filter(|l| l.contains(",round_robin,"))
        .map(|l| l.rsplit(',').next().expect("share").parse().expect("number"))
        .collect();
    assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-5);
    assert!(shares.iter().all(|s| (s - 0.25).abs() < 0.02), "{shares:?}");
    let decisions = std::fs::read_to_string(out.join("decisions.csv")).expect("decisions.csv");
    let lines: Vec<&str> = decisions.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 50, "50 traced decisions per policy");
    assert!(lines[0].starts_with("scenario,cell,params,policy,autoscaler,replication,request,"));
    let gateways: std::collections::BTreeSet<&str> =
        lines[1..].iter().map(|l| l.split(',').nth(8).expect("gateway")).collect();
    assert_eq!(gateways.len(), 3, "requests spread over the 3 instances: {gateways:?}");
}

#[test]
fn bad_gateway_keys_are_named() {
    let dir = TempDir::new("gw-bad");
    for (body, needle) in [
        ("gateway: { replicas: 0 }", "gateway.replicas"),
        ("gateway: { metrics_refresh_ms: -5 }", "gateway.metrics_refresh_ms"),
        ("gateway: { spread: sticky }", "spread"),
        ("gateway: { replica: 2 }", "replica"),
        ("gateway: { kv_event_delay_ms: 1e12 }", "gateway.kv_event_delay_ms"),
    ] {
        let yaml = format!(
            "name: b\nhorizon: {{ max_requests: 10 }}\n{body}\nworkload:\n  - class: r\n    arrival: {{ process: poisson, rate_per_s: 5 }}\n    \
             service_s: {{ dist: constant, value: 0.1 }}\n\
             cluster: {{ pools: [ {{ name: p, kind: queue, replicas: 2 }} ] }}\npolicies: [random]\n"
        );
        let f = dir.file("b.yaml", yaml.as_bytes());
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_routelab"))
            .args(["validate"])
            .arg(&f)
            .output()
            .expect("runs");
        assert_eq!(o.status.code(), Some(2), "{body}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{body}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn a_policy_entry_can_override_the_gateway() {
    // One table, one knob: the same policy with live and 1 s stale metrics, paired.
    let rows = run_rows(
        scenario(
            "name: gwo\nseed: 5\nreplications: 2\nhorizon: { max_requests: 40000 }\n\
             warmup: { requests: 2000 }\ngateway: { replicas: 4 }\n\
             workload:\n  - class: r\n    arrival: { process: poisson, rate_per_s: 68 }\n    \
             service_s: { dist: exponential, mean: 0.1 }\n\
             cluster: { pools: [ { name: p, kind: queue, replicas: 8 } ] }\n\
             policies:\n  - { name: join_shortest_queue, label: fresh }\n  \
             - { name: join_shortest_queue, label: stale, gateway: { metrics_refresh_ms: 1000 } }\n",
        ),
        2,
    );
    let of = |label: &str| -> Vec<RunRow> {
        rows.iter().filter(|r| r.key.policy == label).cloned().collect()
    };
    let direct = queue_cluster("join_shortest_queue", 4, 1000, "random");
    assert_eq!(
        mean(&of("stale"), "ttft_ms_p95"),
        mean(&direct, "ttft_ms_p95"),
        "the override equals setting the scenario's gateway"
    );
    assert!(mean(&of("stale"), "ttft_ms_p95") > 2.0 * mean(&of("fresh"), "ttft_ms_p95"));
}
