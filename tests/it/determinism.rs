//! Determinism: the same scenario and seed give the same bytes — across repeated runs and
//! thread counts, through the library and through the CLI. Also checks that the seed matters
//! (a different seed gives different results), so these tests can fail.

use crate::common::scenario;
use routelab::experiment;
use routelab::report::{self, csv_out};
use std::path::Path;
use std::process::Command;

const YAML: &str = "name: det\nseed: 7\nreplications: 3\nhorizon: { max_requests: 20000 }\n\
warmup: { requests: 1000 }\nworkload:\n  - class: a\n    arrival: { process: gamma, rate_per_s: 70, cv: 2 }\n    \
service_s: { dist: lognormal, mean: 0.1, cv: 1.5 }\n    timeout_s: 1.0\n  - class: b\n    \
arrival: { process: onoff, on_s: 2, off_s: 3, on_rate_per_s: 40 }\n    service_s: { dist: exponential, mean: 0.05 }\n\
cluster:\n  pools:\n    - { name: a, kind: queue, replicas: 3, slots: 2, weight: 2 }\n    \
- { name: b, kind: queue, replicas: 3, slots: 1, queue_capacity: 5 }\n\
policies: [random, round_robin, weighted_round_robin, least_requests, join_shortest_queue, power_of_d]\n";

fn csvs(yaml: &str, threads: usize) -> (Vec<u8>, Vec<u8>) {
    let plan = experiment::plan(vec![scenario(yaml)], None);
    let rows: Vec<_> =
        experiment::execute(&plan, threads).into_iter().map(|r| r.expect("run ok")).collect();
    let summary = report::summarize(&rows);
    (csv_out::runs_csv(&rows), csv_out::summary_csv(&summary))
}

#[test]
fn same_bytes_across_runs_and_thread_counts() {
    let one = csvs(YAML, 1);
    let two = csvs(YAML, 2);
    let again = csvs(YAML, 2);
    assert_eq!(one, two, "output depends on thread count");
    assert_eq!(two, again, "output differs between identical runs");
    let other_seed = csvs(&YAML.replace("seed: 7", "seed: 8"), 2);
    assert_ne!(one.0, other_seed.0, "the seed has no effect");
}

#[test]
fn cli_writes_identical_files_for_one_and_two_threads() {
    let dir = std::env::temp_dir().join(format!("routelab-det-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("det.yaml");
    std::fs::write(&file, YAML).expect("write scenario");
    let run = |threads: &str, out: &Path| {
        let st = Command::new(env!("CARGO_BIN_EXE_routelab"))
            .args(["run", file.to_str().expect("utf-8"), "--quiet", "--threads", threads, "--out"])
            .arg(out)
            .output()
            .expect("run binary");
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
        st.stdout
    };
    let (a, b) = (dir.join("t1"), dir.join("t2"));
    let stdout1 = run("1", &a);
    let stdout2 = run("2", &b);
    assert_eq!(stdout1, stdout2, "stdout differs");
    for f in ["runs.csv", "summary.csv", "summary.md", "manifest.json"] {
        let x = std::fs::read(a.join(f)).expect("file written");
        let y = std::fs::read(b.join(f)).expect("file written");
        assert!(!x.is_empty());
        assert_eq!(x, y, "{f} differs between --threads 1 and 2");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An `llm` cluster exercising every source of state: a multi-model pool with a tight pinned KV
/// cache (preemptions, cold starts), chunked prefill, shared prefixes, sessions, timeouts,
/// SLOs, `max_tokens`, a Mooncake trace window, and three gateway instances on scraped metrics
/// and delayed KV events with stateful (prefix-tree, KV-index, hash-ring, sticky) routers.
fn llm_yaml() -> String {
    let trace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/traces/mooncake_conversation_trace.jsonl")
        .display()
        .to_string();
    format!(
        "name: det-llm\nseed: 11\nreplications: 2\nhorizon: {{ max_requests: 3000 }}\n\
warmup: {{ requests: 100 }}\nworkload:\n  - class: chat\n    model: llama-3-8b\n    \
arrival: {{ process: poisson, rate_per_s: 12 }}\n    \
prompt_tokens: {{ dist: lognormal, mean: 400, cv: 1, max: 3000 }}\n    \
output_tokens: {{ dist: lognormal, mean: 80, cv: 1.5, max: 600 }}\n    \
prefix: {{ groups: 5, group_tokens: 200 }}\n    \
session: {{ turns: {{ dist: uniform, low: 1, high: 4 }}, think_time_s: {{ dist: exponential, mean: 1 }} }}\n    \
timeout_s: 20\n    slo: {{ ttft_ms: 500, tpot_ms: 40 }}\n  - class: small\n    model: llama-3.2-1b\n    \
arrival: {{ process: gamma, rate_per_s: 10, cv: 2 }}\n    \
prompt_tokens: {{ dist: exponential, mean: 200, max: 2000 }}\n    \
output_tokens: {{ dist: constant, value: 100 }}\n    max_tokens: 64\n  - class: replay\n    \
model: llama-3-8b\n    trace: {{ path: {trace}, format: mooncake, time_scale: 5, start_s: 100, duration_s: 60 }}\n    \
max_tokens: 32\ncluster:\n  pools:\n    - name: mixed\n      kind: llm\n      replicas: 2\n      \
gpu: h100-sxm\n      models: [llama-3-8b, llama-3.2-1b]\n      \
engine: {{ max_num_seqs: 16, max_num_batched_tokens: 512, num_gpu_blocks_override: 700 }}\n      \
cold_start: {{ init_s: 0.5, load_gb_per_s: 20 }}\n    - name: a100\n      kind: llm\n      \
replicas: 1\n      gpu: a100-80gb\n      model: llama-3-8b\n      \
engine: {{ long_prefill_token_threshold: 256, max_model_len: 8192 }}\n\
gateway: {{ replicas: 3, metrics_refresh_ms: 50, kv_event_delay_ms: 20 }}\n\
policies: [round_robin, least_requests, power_of_d, join_shortest_queue, cache_aware, kv_router, \
precise_prefix, weighted_scorers, bounded_load_hash, session_affinity]\n"
    )
}

#[test]
fn llm_runs_give_the_same_bytes_across_runs_and_thread_counts() {
    let yaml = llm_yaml();
    let one = csvs(&yaml, 1);
    let two = csvs(&yaml, 2);
    let again = csvs(&yaml, 2);
    assert_eq!(one, two, "llm output depends on thread count");
    assert_eq!(two, again, "llm output differs between identical runs");
    // The scenario exercises what it claims (so these bytes cover that state).
    let text = String::from_utf8(one.0.clone()).expect("utf-8");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    let (pre, cold, hit) = (col("preemptions"), col("cold_starts"), col("prefix_hit_rate"));
    let group = col("group");
    let all: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let rows: Vec<Vec<&str>> = all.iter().filter(|r| r[group] == "all").cloned().collect();
    assert_eq!(rows.len(), 20);
    assert!(all.len() > rows.len(), "the scenario's classes and pools give group rows too");
    let num = |r: &Vec<&str>, i: usize| r[i].parse::<f64>().unwrap_or(0.0);
    assert!(rows.iter().any(|r| num(r, pre) > 0.0), "no preemption");
    assert!(rows.iter().any(|r| num(r, cold) > 0.0), "no cold start");
    assert!(rows.iter().all(|r| num(r, hit) > 0.0), "no prefix hit");
    let other_seed = csvs(&yaml.replace("seed: 11", "seed: 12"), 2);
    assert_ne!(one.0, other_seed.0, "the seed has no effect");
}

/// Faults of every kind (scheduled and random), health mechanisms, admission with a queue,
/// retries with hedging, two tiers and two pools: the state that failures and protection add.
const FAULT_YAML: &str = "name: det-faults\nseed: 5\nreplications: 2\nhorizon: { duration_s: 40 }\n\
timeseries: { interval_s: 1 }\nworkload:\n  - class: vip\n    tier: { name: vip, priority: 10 }\n    \
arrival: { process: poisson, rate_per_s: 60 }\n    service_s: { dist: lognormal, mean: 0.08, cv: 1.5 }\n    \
timeout_s: 3\n    ttft_timeout_s: 2\n  - class: free\n    tier: { name: free, priority: -1 }\n    \
arrival: { process: onoff, on_s: 2, off_s: 3, on_rate_per_s: 120 }\n    service_s: { dist: exponential, mean: 0.05 }\n    \
retries: { max_attempts: 3, per_try_timeout_s: 0.5, hedge_on_per_try_timeout: true, budget: {} }\n\
cluster:\n  pools:\n    - { name: a, kind: queue, replicas: 4, slots: 2 }\n    - { name: b, kind: queue, replicas: 2, slots: 2, backup: true }\n\
faults:\n  - { kind: crash, replicas: [a-1], at_s: 5, duration_s: 6, restart_s: 1 }\n  \
- { kind: hang, pool: a, count: 1, at_s: 12, duration_s: 3 }\n  - { kind: slowdown, replicas: [a-2], at_s: 0, duration_s: 30, factor: 2, ramp_to: 6 }\n  \
- { kind: errors, pool: a, mtbf_s: 8, mttr_s: 1, probability: 0.5 }\n  - { kind: partition, replicas: [a-0], gateways: [1], at_s: 20, duration_s: 5 }\n\
gateway:\n  replicas: 2\n  metrics_refresh_ms: 50\n  connect_timeout_ms: 200\n  \
health: { active: { interval_s: 1, timeout_s: 0.2 }, passive: { max_fails: 2 }, outlier_detection: { consecutive_5xx: 3, max_ejection_percent: 50 }, circuit_breaker: { failure_threshold: 4, timeout_s: 2 }, readiness: { period_s: 2 } }\n  \
admission: { rate_limit: { kind: token_bucket, rate_per_s: 80, burst: 40 }, concurrency: { max_concurrent_requests: 40 }, queue: { size: 50, timeout_s: 1 }, max_conns: 6 }\n\
policies: [least_requests, power_of_d, round_robin, peak_ewma]\n";

#[test]
fn faults_and_protection_give_the_same_bytes_for_threads_and_shards() {
    let dir = std::env::temp_dir().join(format!("routelab-det-faults-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("f.yaml");
    std::fs::write(&file, FAULT_YAML).expect("write scenario");
    let run = |extra: &[&str], out: &str| {
        let st = Command::new(env!("CARGO_BIN_EXE_routelab"))
            .args(["run", file.to_str().expect("utf-8"), "--quiet", "--no-plots", "--out"])
            .arg(dir.join(out))
            .args(extra)
            .output()
            .expect("run binary");
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    };
    run(&["--threads", "1"], "t1");
    run(&["--threads", "2"], "t2");
    for i in 0..3 {
        run(&["--shard", &format!("{i}/3")], &format!("s{i}"));
    }
    let st = Command::new(env!("CARGO_BIN_EXE_routelab"))
        .current_dir(&dir)
        .args(["merge", "s1", "s0", "s2", "--out", "merged"])
        .output()
        .expect("merge");
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let files =
        ["runs.csv", "summary.csv", "summary.md", "timeseries.csv", "health.csv", "faults.csv"];
    for other in ["t2", "merged"] {
        for f in files {
            let x = std::fs::read(dir.join("t1").join(f)).unwrap_or_else(|_| panic!("{f}"));
            let y =
                std::fs::read(dir.join(other).join(f)).unwrap_or_else(|_| panic!("{other}/{f}"));
            assert!(x.len() > 100, "{f} nearly empty");
            assert!(x == y, "{f} differs between t1 and {other}");
        }
    }
    // The scenario exercises what it claims: every fault kind opened, some requests erred,
    // were retried, queued and rejected, and replicas were ejected.
    let faults = std::fs::read_to_string(dir.join("t1/faults.csv")).expect("faults.csv");
    for kind in ["crash", "hang", "slowdown", "errors", "partition"] {
        assert!(faults.contains(&format!(",{kind},")), "no {kind} window");
    }
    let rows = routelab::report::csv_in::read_runs(
        &std::fs::read_to_string(dir.join("t1/runs.csv")).expect("runs.csv"),
    )
    .expect("parses");
    let sum = |m: &str| rows.iter().map(|r| r.get(m).unwrap_or(0.0)).sum::<f64>();
    for m in ["errors", "rejected", "retry_rate", "ejections", "timed_out"] {
        assert!(sum(m) > 0.0, "{m} never happened");
    }
    assert!(rows.iter().all(|r| r.groups.iter().any(|g| g.label == "tier:vip")));
    let health = std::fs::read_to_string(dir.join("t1/health.csv")).expect("health.csv");
    for state in ["failed", "recovering", "ejected"] {
        assert!(health.contains(&format!(",{state}\n")), "health.csv never shows {state}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
