//! Failures and protection end to end, checked against theory and paired comparisons: error
//! rates under independent errors and retries, token-bucket throughput, backup failover,
//! hangs and hedging, partitions seen by one gateway instance only, readiness, TTFT
//! timeouts, the bounded replica queue of `llm` pools, and the routing files.

use crate::common::{get, run_rows, scenario};
use routelab::report::RunRow;

/// `replicas` single-slot-ish queue replicas, Poisson arrivals, with `extra` YAML appended
/// (faults, gateway, policies).
fn queue_yaml(replicas: u32, rate: f64, requests: u64, extra: &str) -> String {
    format!(
        "name: p\nseed: 3\nreplications: 3\nhorizon: {{ max_requests: {requests} }}\n\
         workload:\n  - class: r\n    arrival: {{ process: poisson, rate_per_s: {rate} }}\n    \
         service_s: {{ dist: exponential, mean: 0.05 }}\n\
         cluster: {{ pools: [ {{ name: p, kind: queue, replicas: {replicas}, slots: 4 }} ] }}\n{extra}"
    )
}

fn sum(rows: &[RunRow], metric: &str) -> f64 {
    rows.iter().map(|r| get(r, metric)).sum()
}

#[test]
fn independent_errors_give_p_and_retries_give_p_to_the_attempts() {
    // Every replica fails a request with probability p = 0.3, independently per request: the
    // error rate is p without retries and p^k with k attempts (retried on 5xx, unlimited
    // concurrent retries). Binomial standard errors over 3 x 20 000 requests.
    let p: f64 = 0.3;
    let faults = "faults:\n  - { kind: errors, pool: p, at_s: 0, duration_s: 100000, probability: 0.3, latency_ms: 1 }\n";
    for (k, retries) in [(1, ""), (2, "max_attempts: 2"), (3, "max_attempts: 3")] {
        let gw = if retries.is_empty() {
            String::new()
        } else {
            format!(
                "gateway: {{ retries: {{ {retries}, retry_on: [5xx], max_retries: 1000000 }} }}\n"
            )
        };
        let rows = run_rows(
            scenario(&queue_yaml(
                4,
                40.0,
                20_000,
                &format!("{faults}{gw}policies: [round_robin]\n"),
            )),
            2,
        );
        let n = sum(&rows, "arrivals");
        let rate = sum(&rows, "errors") / n;
        let want = p.powi(k);
        let se = (want * (1.0 - want) / n).sqrt();
        assert!(
            (rate - want).abs() < 4.0 * se,
            "k={k}: error rate {rate:.5} vs p^k {want:.5} (se {se:.5})"
        );
        // Each request makes 1 + (failed attempts before its last) attempts: E = sum p^i, i < k.
        let attempts = sum(&rows, "attempts") / n;
        let want_att: f64 = (0..k).map(|i| p.powi(i)).sum();
        assert!(
            (attempts - want_att).abs() < 0.01,
            "k={k}: {attempts:.4} attempts vs {want_att:.4}"
        );
    }
}

#[test]
fn a_token_bucket_admits_its_rate_and_refuses_the_rest() {
    // 100 req/s offered to a bucket of 40 tokens/s (burst 20): over 200 s it admits about
    // 40/s + 20, the rest get 429 (rejected).
    let yaml = queue_yaml(
        8,
        100.0,
        20_000,
        "gateway: { admission: { rate_limit: { kind: token_bucket, rate_per_s: 40, burst: 20 } } }\npolicies: [least_requests]\n",
    );
    let rows = run_rows(scenario(&yaml), 2);
    for r in &rows {
        let (n, rejected, window) = (get(r, "arrivals"), get(r, "rejected"), get(r, "window_s"));
        let admitted_per_s = (n - rejected) / window;
        assert!((admitted_per_s - 40.0).abs() < 0.5, "admitted {admitted_per_s:.2}/s");
        assert_eq!(get(r, "errors"), 0.0);
    }
}

#[test]
fn a_backup_pool_takes_over_only_when_the_primaries_are_out() {
    // Primaries p (2 replicas) crash from 10 s to 20 s; the backup pool b serves only then,
    // once passive health has ejected the primaries.
    let yaml = "name: b\nseed: 9\nreplications: 2\nhorizon: { duration_s: 40 }\n\
        workload:\n  - class: r\n    arrival: { process: poisson, rate_per_s: 40 }\n    \
        service_s: { dist: exponential, mean: 0.02 }\n\
        cluster:\n  pools:\n    - { name: p, kind: queue, replicas: 2, slots: 4 }\n    \
        - { name: b, kind: queue, replicas: 1, slots: 8, backup: true }\n\
        faults:\n  - { kind: crash, pool: p, at_s: 10, duration_s: 10 }\n\
        policies:\n  - { name: round_robin, label: none }\n  \
        - { name: round_robin, label: passive, gateway: { health: { passive: { max_fails: 1, fail_timeout_s: 5 } }, retries: { max_attempts: 3, previous_hosts: true, budget: {} } } }\n";
    let rows = run_rows(scenario(yaml), 2);
    let share = |label: &str, group: &str| -> f64 {
        let rs: Vec<&RunRow> = rows.iter().filter(|r| r.key.policy == label).collect();
        let i = routelab::report::metric_index("completed").expect("metric");
        rs.iter().map(|r| r.group_values(group).and_then(|v| v[i]).unwrap_or(0.0)).sum::<f64>()
            / rs.iter().map(|r| get(r, "completed")).sum::<f64>()
    };
    // Without health checks nothing knows the primaries are down: the backup never serves
    // and a quarter of the traffic (10 of 40 s) errs.
    assert_eq!(share("none", "pool:b"), 0.0);
    let none_err: f64 =
        rows.iter().filter(|r| r.key.policy == "none").map(|r| get(r, "error_rate")).sum::<f64>()
            / 2.0;
    assert!((none_err - 0.25).abs() < 0.03, "{none_err}");
    // With passive health and retries the backup carries the outage and nothing is lost.
    let b = share("passive", "pool:b");
    assert!(b > 0.15 && b < 0.35, "backup share {b}");
    for r in rows.iter().filter(|r| r.key.policy == "passive") {
        assert_eq!(get(r, "success_rate"), 1.0, "{:?}", r.key);
    }
}

#[test]
fn a_hang_freezes_work_which_resumes_and_hedges_route_around_it() {
    // One of 4 replicas hangs from 5 s to 8 s. Without timeouts its requests wait and then
    // complete (none lost); with a per-try timeout and hedging they complete elsewhere, the
    // slow copies are cancelled, and TTFT p99 drops.
    let faults = "faults:\n  - { kind: hang, replicas: [p-1], at_s: 5, duration_s: 3 }\n";
    let yaml = queue_yaml(
        4,
        40.0,
        1200,
        &format!(
            "{faults}policies:\n  - {{ name: round_robin, label: plain }}\n  \
             - {{ name: round_robin, label: hedged, gateway: {{ retries: {{ max_attempts: 2, per_try_timeout_s: 0.5, hedge_on_per_try_timeout: true, budget: {{}} }} }} }}\n"
        ),
    );
    let rows = run_rows(scenario(&yaml), 2);
    for r in &rows {
        assert_eq!(get(r, "success_rate"), 1.0, "{:?}: a hang loses nothing", r.key);
    }
    let p99 = |l: &str| {
        rows.iter().filter(|r| r.key.policy == l).map(|r| get(r, "ttft_ms_p99")).sum::<f64>()
    };
    assert!(
        p99("plain") > 1000.0 * 3.0,
        "plain p99 {} should include the 3 s hang",
        p99("plain") / 3.0
    );
    // The retry budget (20% of active, at least 3 concurrent) limits the hedges: the tail
    // halves rather than vanishing.
    assert!(
        p99("hedged") < p99("plain") / 2.0,
        "hedged {} vs plain {}",
        p99("hedged"),
        p99("plain")
    );
    assert!(rows.iter().filter(|r| r.key.policy == "hedged").all(|r| get(r, "retry_rate") > 0.0));
}

#[test]
fn a_partition_is_seen_only_by_the_instance_it_cuts_off() {
    // Gateway instance 1 of 2 cannot reach replica p-0 from 2 s on; connects time out after
    // 200 ms. With active checks only instance 1 ejects it, so instance 0 keeps using it:
    // errors come only from instance 1's attempts before detection.
    let yaml = queue_yaml(
        3,
        30.0,
        3000,
        "faults:\n  - { kind: partition, replicas: [p-0], gateways: [1], at_s: 2, duration_s: 1000 }\n\
         gateway: { replicas: 2, spread: round_robin, connect_timeout_ms: 200, health: { active: { interval_s: 1, timeout_s: 0.1, unhealthy_threshold: 2 } } }\n\
         policies: [round_robin]\n",
    );
    let rows = run_rows(scenario(&yaml), 2);
    for r in &rows {
        // About 1/2 (instance 1) x 1/3 (p-0) of the traffic for the ~2 s until detection,
        // out of a 100 s run: well under 1%, but not zero.
        let e = get(r, "error_rate");
        assert!(e > 0.0 && e < 0.01, "error rate {e}");
        assert_eq!(get(r, "ejections"), 1.0, "only instance 1 ejects p-0");
    }
}

#[test]
fn kubernetes_readiness_takes_a_crashed_pod_out_for_every_instance() {
    let yaml = queue_yaml(
        4,
        40.0,
        3000,
        "faults:\n  - { kind: crash, replicas: [p-2], at_s: 10, duration_s: 20 }\n\
         gateway: { replicas: 3, health: { readiness: { period_s: 10, propagation_delay_s: 1 } } }\n\
         policies: [round_robin]\n",
    );
    let rows = run_rows(scenario(&yaml), 2);
    for r in &rows {
        // The kubelet sees the container exit at once; endpoints follow 1 s later, so about
        // 1 s x 40/s x 1/4 requests err (~10 of 3000), then none until it is back.
        let errors = get(r, "errors") + get(r, "failed");
        assert!(errors > 0.0 && errors < 40.0, "errors {errors}");
        // Every instance drops it: 3 ejections (and 3 reinstatements later).
        assert_eq!(get(r, "ejections"), 3.0);
    }
}

#[test]
fn ttft_timeouts_end_requests_without_a_first_token() {
    // A 4-slot queue replica at twice its capacity: with a 1 s TTFT timeout (a queue replica's
    // first token is its whole answer) every request waiting longer ends as a timeout.
    let base = queue_yaml(1, 160.0, 4000, "policies: [round_robin]\n");
    let with = base.replace("    service_s:", "    ttft_timeout_s: 1\n    service_s:");
    let (a, b) = (run_rows(scenario(&base), 2), run_rows(scenario(&with), 2));
    assert_eq!(sum(&a, "timed_out"), 0.0);
    assert!(sum(&b, "timed_out") > 0.3 * sum(&b, "arrivals"));
    assert!(b.iter().all(|r| get(r, "e2e_ms_p99") < 1100.0), "completions all started within 1 s");
}

#[test]
fn llm_pools_refuse_arrivals_beyond_queue_capacity() {
    let yaml = |cap: &str| {
        format!(
            "name: q\nseed: 2\nhorizon: {{ max_requests: 3000 }}\n\
             workload:\n  - class: c\n    arrival: {{ process: poisson, rate_per_s: 400 }}\n    \
             prompt_tokens: {{ dist: constant, value: 500 }}\n    output_tokens: {{ dist: constant, value: 100 }}\n\
             cluster: {{ pools: [ {{ name: h, kind: llm, replicas: 1, gpu: h100-sxm, model: llama-3-8b{cap}, engine: {{ max_num_seqs: 16 }} }} ] }}\n\
             policies: [round_robin]\n"
        )
    };
    let open = run_rows(scenario(&yaml("")), 1);
    let capped = run_rows(scenario(&yaml(", queue_capacity: 10")), 1);
    assert_eq!(get(&open[0], "rejected"), 0.0);
    assert!(get(&capped[0], "rejection_rate") > 0.5, "{}", get(&capped[0], "rejection_rate"));
    // Those admitted wait for at most ~10 ahead of them: far less than the open queue.
    assert!(get(&capped[0], "ttft_ms_p95") * 10.0 < get(&open[0], "ttft_ms_p95"));
}

#[test]
fn broken_streams_are_resent_by_client_retries_and_failed_under_proxy_retries() {
    // Two H100s with long answers (~20 s of decoding each): when h-1 crashes at 30 s it holds
    // dozens of streaming answers. Client-side retries (the default) send them again, so none
    // is lost; a proxy's retries (`resend_broken_streams: false`) cannot retry a response
    // that has begun (Envoy retries a reset only before the downstream response started), so
    // every cut stream ends `failed`, as without retries.
    let yaml = |gw: &str| {
        format!(
            "name: mid\nseed: 9\nreplications: 2\nhorizon: {{ duration_s: 60 }}\n\
             workload:\n  - class: c\n    arrival: {{ process: poisson, rate_per_s: 6 }}\n    \
             prompt_tokens: {{ dist: constant, value: 400 }}\n    output_tokens: {{ dist: constant, value: 2000 }}\n\
             cluster: {{ pools: [ {{ name: h, kind: llm, replicas: 2, gpu: h100-sxm, model: llama-3-8b }} ] }}\n\
             faults:\n  - {{ kind: crash, replicas: [h-1], at_s: 30, duration_s: 5 }}\n\
             {gw}policies: [round_robin]\n"
        )
    };
    let retries = |extra: &str| {
        format!(
            "gateway: {{ retries: {{ max_attempts: 3, previous_hosts: true, max_retries: 1000{extra} }} }}\n"
        )
    };
    let plain = run_rows(scenario(&yaml("")), 2);
    let client = run_rows(scenario(&yaml(&retries(""))), 2);
    let proxy = run_rows(scenario(&yaml(&retries(", resend_broken_streams: false"))), 2);
    let (fp, fc, fx) = (sum(&plain, "failed"), sum(&client, "failed"), sum(&proxy, "failed"));
    // ~6/s x 2000 tokens at ~10 ms per token: ~60 streams per replica when it dies.
    assert!(fp > 20.0, "the crash must cut streams: {fp}");
    assert_eq!(fc, 0.0, "client retries re-send every cut stream");
    assert!(fx > 20.0 && fx <= fp, "proxy retries cannot save a begun stream: {fx} vs {fp}");
    // Re-sent streams cost attempts: more than the proxy's, which retries only refusals.
    assert!(sum(&client, "attempts") >= sum(&proxy, "attempts") + fx);
    // While h-1 is down (30 s to past the horizon: restart plus model load) round robin
    // sends it every other request: refused connections, errors without retries, none with.
    assert!(sum(&plain, "errors") > 50.0, "{}", sum(&plain, "errors"));
    assert_eq!(sum(&proxy, "errors"), 0.0);
    assert_eq!(sum(&client, "errors"), 0.0);
}
