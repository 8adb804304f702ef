//! Engine throughput: events per second of a whole `routelab run` (scenario expansion, event
//! loop, routing, metrics, row building) on M/M/8 at load 0.8, next to a minimal hand-written
//! BinaryHeap DES of the same model as the yardstick.
//!
//! The `llm` group runs the one-million-request LLM scenario of the README; `routing` runs a
//! 64-replica scenario once per routing policy (routing overhead versus round_robin);
//! `protection` runs 64 replicas with and without health checks, outlier detection,
//! admission and retries (their cost).
//!
//! Run: `cargo bench --bench engine`. Figures go into the README's performance table.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand_core::RngCore;
use rand_pcg::Pcg64Mcg;
use routelab::experiment;
use routelab::scenario::{load_str, LoadOptions};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const REQUESTS: u64 = 1_000_000;

fn mm8_yaml(policy: &str, requests: u64) -> String {
    format!(
        "name: mm8\nseed: 1\nhorizon: {{ max_requests: {requests} }}\nwarmup: {{ requests: 10000 }}\n\
         workload:\n  - class: jobs\n    arrival: {{ process: poisson, rate_per_s: 64 }}\n    \
         service_s: {{ dist: exponential, mean: 0.1 }}\n\
         cluster:\n  pools:\n    - {{ name: q, kind: queue, replicas: 1, slots: 8 }}\n\
         policies: [{policy}]\n"
    )
}

/// One whole run as `routelab run --threads 1` does it; returns events processed.
fn routelab_run(yaml: &str) -> u64 {
    let s = load_str(yaml, "bench", &LoadOptions::default()).expect("valid bench scenario");
    let plan = experiment::plan(vec![s], None);
    let rows = experiment::execute(&plan, 1);
    rows.iter().map(|r| r.as_ref().expect("run ok").get("events").unwrap_or(0.0) as u64).sum()
}

/// The yardstick: the smallest reasonable M/M/c DES — a BinaryHeap of (time, seq, kind),
/// -ln(u) exponential draws from the same PCG-64, a counter for busy servers, a FIFO of
/// arrival times, and a running sum of waits. No routing, no histograms, no outputs.
fn minimal_des(requests: u64) -> u64 {
    let mut rng = Pcg64Mcg::new(0x2545_f491_4f6c_dd1d_u128 | 1);
    let mut u = move || ((rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
    let (lambda, mu, c) = (64.0, 10.0, 8u32);
    let mut heap: BinaryHeap<Reverse<(u64, u64, bool)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let ns = |s: f64| (s * 1e9) as u64;
    heap.push(Reverse((ns(-u().ln() / lambda), seq, true)));
    let (mut busy, mut arrived, mut events, mut wait_sum) = (0u32, 0u64, 0u64, 0u64);
    let mut queue = std::collections::VecDeque::new();
    while let Some(Reverse((t, _, is_arrival))) = heap.pop() {
        events += 1;
        seq += 1;
        if is_arrival {
            arrived += 1;
            if arrived < requests {
                heap.push(Reverse((t + ns(-u().ln() / lambda), seq, true)));
            }
            if busy < c {
                busy += 1;
                heap.push(Reverse((t + ns(-u().ln() / mu), seq, false)));
            } else {
                queue.push_back(t);
            }
        } else if let Some(a) = queue.pop_front() {
            wait_sum += t - a;
            heap.push(Reverse((t + ns(-u().ln() / mu), seq, false)));
        } else {
            busy -= 1;
        }
    }
    std::hint::black_box(wait_sum);
    events
}

fn engine(c: &mut Criterion) {
    let mut g = c.benchmark_group("mm8_load0.8");
    g.sample_size(10);
    let events = routelab_run(&mm8_yaml("round_robin", REQUESTS));
    g.throughput(Throughput::Elements(events));
    for policy in ["round_robin", "power_of_d", "least_requests", "join_shortest_queue"] {
        let yaml = mm8_yaml(policy, REQUESTS);
        g.bench_with_input(BenchmarkId::new("routelab_run", policy), &yaml, |b, y| {
            b.iter(|| routelab_run(y))
        });
    }
    let min_events = minimal_des(REQUESTS);
    g.throughput(Throughput::Elements(min_events));
    g.bench_function("minimal_binaryheap_des", |b| b.iter(|| minimal_des(REQUESTS)));
    g.finish();
}

/// A 100-run sweep (4 load cells x 5 policies x 5 replications, 20k requests each) on 1 and 2
/// threads: the parallel speed-up of `routelab run`.
fn sweep(c: &mut Criterion) {
    let yaml = "name: sweep100\nseed: 9\nreplications: 5\nhorizon: { max_requests: 20000 }\n\
                warmup: { requests: 2000 }\nworkload:\n  - class: r\n    \
                arrival: { process: poisson, rate_per_s: 100 }\n    \
                service_s: { dist: lognormal, mean: 0.1, cv: 2.0 }\n\
                cluster:\n  pools:\n    - { name: p, kind: queue, replicas: 8, slots: 2 }\n\
                policies: [random, round_robin, least_requests, join_shortest_queue, power_of_d]\n\
                sweep: { workload.0.arrival.rate_per_s: [60, 90, 120, 140] }\n";
    let cells = routelab::scenario::load_cells_str(yaml, "bench", &LoadOptions::default())
        .expect("valid sweep");
    let plan = experiment::plan(cells, None);
    assert_eq!(plan.runs.len(), 100);
    let mut g = c.benchmark_group("sweep_100_runs");
    g.sample_size(10);
    g.throughput(Throughput::Elements(100));
    for threads in [1usize, 2] {
        g.bench_with_input(BenchmarkId::new("threads", threads), &threads, |b, &t| {
            b.iter(|| experiment::execute(&plan, t).len())
        });
    }
    g.finish();
}

/// The LLM engine at scale: `scenarios/bench/llm-1m.yaml` (1M requests, 32 Llama-3-8B/H100
/// replicas at ~80% load, shared prefixes), single-threaded. Throughput = simulated requests.
fn llm(c: &mut Criterion) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/bench/llm-1m.yaml");
    let s = routelab::scenario::load(&path, &LoadOptions::default()).expect("valid bench scenario");
    let plan = experiment::plan(vec![s], None);
    let mut g = c.benchmark_group("llm_1m_requests_32xh100");
    g.sample_size(10);
    g.throughput(Throughput::Elements(1_000_000));
    g.bench_function("routelab_run", |b| b.iter(|| experiment::execute(&plan, 1).len()));
    g.finish();
}

/// One single-threaded run per policy of a bundled 100k-request scenario, each policy its own
/// benchmark `ID/label` in `group`.
fn per_policy(c: &mut Criterion, file: &str, group: &str, id: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let s = routelab::scenario::load(&path, &LoadOptions::default()).expect("valid bench scenario");
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    g.throughput(Throughput::Elements(100_000));
    for p in &s.policies {
        let mut one = s.clone();
        one.policies = vec![p.clone()];
        let plan = experiment::plan(vec![one], None);
        g.bench_function(BenchmarkId::new(id, &p.label), |b| {
            b.iter(|| experiment::execute(&plan, 1).len())
        });
    }
    g.finish();
}

/// Routing overhead: `scenarios/bench/routing-64.yaml` (100k requests on 64 replicas) once per
/// registered policy, single-threaded; compare each policy's time with round_robin's.
fn routing(c: &mut Criterion) {
    per_policy(c, "scenarios/bench/routing-64.yaml", "routing_64_replicas_100k", "policy");
}

/// Protection cost: `scenarios/bench/protection-64.yaml`, the same 64-replica run plain and
/// with every health mechanism, admission step and retries on (nothing fails, so both serve
/// the same requests), single-threaded; target: protected at most 1.3x plain.
fn protection(c: &mut Criterion) {
    per_policy(c, "scenarios/bench/protection-64.yaml", "protection_64_replicas_100k", "gateway");
}

criterion_group!(benches, engine, sweep, llm, routing, protection);
criterion_main!(benches);
