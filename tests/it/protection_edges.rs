//! Edge cases of admission, retries and draining where mechanisms meet: a drain deadline with
//! a full gateway queue, hedges on a single replica, a rate limiter's delay followed by a
//! concurrency bucket, the concurrent-retry limit shared by every class, admission counted
//! once per request, nginx's after-header rule for broken streams. Each checks a law
//! (conservation, Little's law, a paired comparison) that the mechanism would break if it
//! were wrong.

use crate::common::{get, run_rows, scenario};
use routelab::engine;
use routelab::report::RunRow;

fn ends(r: &RunRow) -> f64 {
    ["completed", "timed_out", "rejected", "errors", "failed", "unfinished"]
        .iter()
        .map(|m| get(r, m))
        .sum()
}

#[test]
fn a_drain_deadline_with_a_full_gateway_queue_ends_every_request_once() {
    // The bucket admits almost nothing, so the gateway queue is full when the 0.5 s drain
    // ends the run: queued requests, requests in service and their timeouts must each end
    // exactly once (the drain closes the gateway; later pumps and deadlines find nothing).
    let yaml = "name: drain\nseed: 5\nreplications: 3\nhorizon: { duration_s: 10, drain_s: 0.5 }\n\
        workload:\n  - class: c\n    arrival: { process: poisson, rate_per_s: 100 }\n    \
        service_s: { dist: exponential, mean: 1.0 }\n\
        cluster:\n  pools:\n    - { name: q, kind: queue, replicas: 4, slots: 1, queue_capacity: 1 }\n\
        gateway:\n  admission:\n    concurrency: { max_concurrent_requests: 8, rate_limit_tokens_per_second: 0.001 }\n    \
        queue: { size: 200, timeout_s: 60 }\npolicies: [round_robin]\n";
    for r in run_rows(scenario(yaml), 2) {
        assert_eq!(ends(&r), get(&r, "arrivals"), "{:?}", r.key);
        let left = get(&r, "unfinished");
        assert!(left >= 150.0, "the queue (200) is full at the drain: {left} {:?}", r.key);
    }
}

#[test]
fn hedges_on_a_single_llm_replica_end_every_request_once() {
    // Every hedge of a per-try timeout lands on the one replica the first attempt is on; the
    // cancelled copies' pending first tokens must be ignored (a stale handle), and a call
    // may hedge more than once.
    let yaml = "name: hedge1\nseed: 7\nreplications: 2\nhorizon: { duration_s: 20 }\n\
        workload:\n  - class: chat\n    model: llama-3-8b\n    \
        arrival: { process: poisson, rate_per_s: 60 }\n    \
        prompt_tokens: { dist: lognormal, mean: 200, cv: 0.5, min: 16, max: 1000 }\n    \
        output_tokens: { dist: lognormal, mean: 100, cv: 1.0, min: 1, max: 500 }\n    \
        timeout_s: 60\n    retries: { max_attempts: 3, retry_on: [5xx, reset, connect, timeout], \
        per_try_timeout_s: 0.3, hedge_on_per_try_timeout: true, max_retries: 100000, \
        budget: { budget_percent: 100, min_retry_concurrency: 100000 } }\n\
        cluster:\n  pools:\n    - { name: h100, kind: llm, replicas: 1, gpu: h100-sxm, model: llama-3-8b, \
        engine: { max_num_seqs: 8, max_num_batched_tokens: 8192, block_size: 16 } }\n\
        policies: [round_robin]\n";
    for r in run_rows(scenario(yaml), 2) {
        assert_eq!(ends(&r), get(&r, "arrivals"), "{:?}", r.key);
        // Overloaded (8 sequences for 60/s): nearly every call waits past two per-try
        // timeouts and hedges twice (retry slots unlimited).
        let (attempts, n) = (get(&r, "attempts"), get(&r, "arrivals"));
        assert!(attempts > 2.5 * n, "{attempts} attempts for {n} requests: hedges twice");
        assert!(attempts <= 3.0 * n);
    }
}

#[test]
fn a_request_delayed_by_the_rate_limiter_still_needs_a_concurrency_token() {
    // nginx `limit_req` delays what exceeds 15/s (burst 10 000: nothing refused), then the
    // concurrency bucket of 2 applies: at most 2 requests in service of mean 0.5 s, so by
    // Little's law no more than 4/s complete in the window; the rest are refused by the bucket
    // (a limiter delay that skipped the bucket would let through 15/s).
    let yaml = "name: rl\nseed: 3\nreplications: 2\nhorizon: { duration_s: 60 }\n\
        workload:\n  - class: c\n    arrival: { process: poisson, rate_per_s: 20 }\n    \
        service_s: { dist: exponential, mean: 0.5 }\n\
        cluster:\n  pools:\n    - { name: q, kind: queue, replicas: 8, slots: 1 }\n\
        gateway:\n  admission:\n    rate_limit: { kind: nginx_limit_req, rate_per_s: 15, burst: 10000 }\n    \
        concurrency: { max_concurrent_requests: 2, rate_limit_tokens_per_second: 0.001 }\npolicies: [round_robin]\n";
    for r in run_rows(scenario(yaml), 2) {
        let per_s = get(&r, "throughput_rps");
        assert!(per_s < 4.4, "{per_s:.2}/s completed through 2 tokens of 0.5 s");
        assert!(get(&r, "rejected") > 0.5 * get(&r, "arrivals"), "{:?}", r.key);
    }
}

/// Retry rate with 50 % errors under a gateway retry policy of `max_retries` concurrent
/// retries, the traffic split into `classes` identical classes.
fn retry_rate(classes: u32, max_retries: u32) -> f64 {
    let rate = 400.0 / f64::from(classes);
    let workload: String = (0..classes)
        .map(|k| {
            format!(
                "  - class: c{k}\n    arrival: {{ process: poisson, rate_per_s: {rate} }}\n    \
                 service_s: {{ dist: exponential, mean: 0.01 }}\n"
            )
        })
        .collect();
    let yaml = format!(
        "name: rl\nseed: 11\nreplications: 2\nhorizon: {{ duration_s: 40 }}\nworkload:\n{workload}\
         cluster:\n  pools:\n    - {{ name: p, kind: queue, replicas: 8, slots: 8 }}\n\
         faults:\n  - {{ kind: errors, pool: p, at_s: 0, duration_s: 1000, probability: 0.5, latency_ms: 1 }}\n\
         gateway: {{ retries: {{ max_attempts: 5, retry_on: [5xx], max_retries: {max_retries}, \
         backoff: {{ base_interval_ms: 25 }} }} }}\npolicies: [round_robin]\n"
    );
    let rows = run_rows(scenario(&yaml), 2);
    rows.iter().map(|r| get(r, "retry_rate")).sum::<f64>() / rows.len() as f64
}

#[test]
fn the_concurrent_retry_limit_is_shared_by_every_class() {
    // Envoy's `max_retries` is a circuit breaker of the cluster: concurrent retries over all
    // requests. Splitting the traffic into two classes must not double it. The control (a
    // limit of 2) shows the retry rate is sensitive to the limit at this load.
    let one = retry_rate(1, 1);
    let two = retry_rate(2, 1);
    let doubled = retry_rate(1, 2);
    assert!(doubled > 1.15 * one, "limit 2 {doubled:.4} vs limit 1 {one:.4}: not binding");
    assert!((two - one).abs() < 0.05 * one, "two classes {two:.4} vs one {one:.4}");
}

#[test]
fn each_request_is_admitted_at_most_once() {
    // Requests wait in the gateway queue under `max_conns`, are routed from it, and retried
    // (10 % errors) through it again: the admitted series counts each request once.
    let yaml = "name: adm\nseed: 4\nreplications: 1\nhorizon: { duration_s: 30 }\n\
        timeseries: { interval_s: 1 }\n\
        workload:\n  - class: c\n    arrival: { process: poisson, rate_per_s: 60 }\n    \
        service_s: { dist: exponential, mean: 0.1 }\n\
        cluster:\n  pools:\n    - { name: q, kind: queue, replicas: 4, slots: 4 }\n\
        faults:\n  - { kind: errors, pool: q, at_s: 0, duration_s: 1000, probability: 0.1, latency_ms: 1 }\n\
        gateway:\n  admission: { max_conns: 2, queue: { size: 1000, timeout_s: 30 } }\n  \
        retries: { max_attempts: 3, retry_on: [5xx], max_retries: 1000 }\n\
        policies: [round_robin, least_requests]\n";
    let s = scenario(yaml);
    for policy in &s.policies {
        let out = engine::run(&s, policy, 0).expect("run");
        let admitted: f64 = out.timeseries.iter().map(|x| x.admitted_per_s).sum();
        let arrivals = out.recorder.all.arrivals as f64;
        assert!(admitted <= arrivals, "{}: {admitted} admitted of {arrivals}", policy.label);
        assert!(admitted > 0.9 * arrivals, "{}: {admitted} of {arrivals}", policy.label);
    }
}

#[test]
fn nginx_does_not_count_streams_broken_after_the_header_as_failures() {
    // h-1 crashes at 30 s holding dozens of streaming answers. nginx releases a peer whose
    // response broke after the header as a success, so those resets do not exclude h-1; the
    // connects refused afterwards do, three of them (`max_fails: 3`), about a second later
    // (round robin sends h-1 every other request of 6/s).
    let yaml = "name: mid\nseed: 9\nreplications: 1\nhorizon: { duration_s: 40 }\n\
        timeseries: { interval_s: 0.1 }\n\
        workload:\n  - class: c\n    arrival: { process: poisson, rate_per_s: 6 }\n    \
        prompt_tokens: { dist: constant, value: 400 }\n    output_tokens: { dist: constant, value: 2000 }\n\
        cluster: { pools: [ { name: h, kind: llm, replicas: 2, gpu: h100-sxm, model: llama-3-8b } ] }\n\
        faults:\n  - { kind: crash, replicas: [h-1], at_s: 30, duration_s: 5 }\n\
        gateway: { health: { passive: { max_fails: 3, fail_timeout_s: 10 } } }\n\
        policies: [round_robin]\n";
    let s = scenario(yaml);
    let out = engine::run(&s, &s.policies[0], 0).expect("run");
    let at = |t: f64| {
        out.timeseries
            .iter()
            .find(|x| (x.time.as_secs_f64() - t).abs() < 0.01)
            .unwrap_or_else(|| panic!("no sample at {t}"))
    };
    assert!(out.recorder.all.failed > 20, "the crash cuts streams: {}", out.recorder.all.failed);
    assert_eq!(at(30.1).ejected, 0, "broken streams must not exclude h-1");
    assert_eq!(at(33.0).ejected, 1, "refused connects exclude it");
}

#[test]
fn nginx_counts_a_503_only_when_next_upstream_lists_it_and_non_idempotent() {
    // 30 % of requests to one of 4 replicas get a fast 503, with a retry policy that retries
    // them. nginx counts a status against `max_fails` only when it would pass the request
    // on: the status listed in `proxy_next_upstream` and, for a POST already sent,
    // `non_idempotent` too. Otherwise the 503 is delivered and the peer released as a success.
    let run = |list: &str| {
        let yaml = format!(
            "name: n\nseed: 2\nreplications: 2\nhorizon: {{ duration_s: 30 }}\n\
             workload:\n  - class: c\n    arrival: {{ process: poisson, rate_per_s: 40 }}\n    \
             service_s: {{ dist: exponential, mean: 0.02 }}\n\
             cluster: {{ pools: [ {{ name: p, kind: queue, replicas: 4, slots: 4 }} ] }}\n\
             faults:\n  - {{ kind: errors, replicas: [p-1], at_s: 5, duration_s: 1000, probability: 0.3, latency_ms: 1 }}\n\
             gateway: {{ health: {{ passive: {{ max_fails: 1, fail_timeout_s: 2, next_upstream: {list} }} }}, \
             retries: {{ max_attempts: 2, retry_on: [5xx], max_retries: 1000 }} }}\n\
             policies: [round_robin]\n"
        );
        run_rows(scenario(&yaml), 2).iter().map(|r| get(r, "ejections")).sum::<f64>()
    };
    assert_eq!(run("[error, timeout]"), 0.0, "a 503 not listed is a success");
    assert_eq!(run("[error, timeout, http_503]"), 0.0, "a sent POST needs non_idempotent");
    let counted = run("[error, timeout, http_503, non_idempotent]");
    assert!(counted >= 10.0, "every 503 excludes p-1 for ~2 s: {counted} ejections");
}
