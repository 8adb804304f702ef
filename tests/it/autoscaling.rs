//! Autoscaling in the engine: replica-seconds are conserved across lifecycle states, the
//! provisioned time is what the time series integrates, drained requests end counted, the
//! activator's holds end as theory says, and autoscaled runs are deterministic.

use crate::common::scenario;
use routelab::cluster::Lifecycle;
use routelab::engine::{run_scaled, RunOutput};
use routelab::metrics::Counts;
use routelab::scenario::Scenario;
use std::process::Command;

const NS: f64 = 1e9;

fn run(sc: &Scenario, autoscaler: usize) -> RunOutput {
    run_scaled(sc, &sc.policies[0], &sc.autoscalers[autoscaler], 0)
        .unwrap_or_else(|e| panic!("run failed: {e}"))
}

fn ended(c: &Counts) -> u64 {
    c.completed + c.timed_out + c.rejected + c.errors + c.failed + c.unfinished
}

fn state_s(out: &RunOutput, r: usize, s: Lifecycle) -> f64 {
    out.replica_state_ns[r][s.index()] as f64 / NS
}

/// A timetable: 2 replicas, 6 from t = 30 s, 1 from t = 90 s; 10 s provisioning, 5 s load.
const TIMETABLE: &str = "\
name: timetable\nseed: 3\nreplications: 1\nhorizon: { duration_s: 150 }\n\
timeseries: { interval_s: 1 }\n\
workload:\n  - class: c\n    arrival: { process: poisson, rate_per_s: 20 }\n    \
service_s: { dist: exponential, mean: 0.2 }\n\
cluster:\n  pools:\n    - { name: q, kind: queue, replicas: 2, slots: 4, lifecycle: { provision_s: \
{ dist: constant, value: 10 }, load_s: 5, termination_grace_s: 30 } }\n\
autoscalers:\n  - { name: scheduled, pool: q, steps: [ { at_s: 0, replicas: 2 }, { at_s: 30, \
replicas: 6 }, { at_s: 90, replicas: 1 } ] }\n\
policies: [least_requests]\n";

#[test]
fn every_replica_second_is_in_exactly_one_state_and_startups_take_their_time() {
    let sc = scenario(TIMETABLE);
    let out = run(&sc, 0);
    let end_ns = out.end_time.as_nanos();
    assert_eq!(out.replica_state_ns.len(), 6, "the pool is allocated to its maximum");
    for (r, states) in out.replica_state_ns.iter().enumerate() {
        assert_eq!(states.iter().sum::<u64>(), end_ns, "replica {r}: states do not sum to the run");
    }
    // The two initial replicas never provision; the four started at t = 30 each spend exactly
    // 10 s provisioning and 5 s loading, and were Off for the first 30 s.
    for r in 0..2 {
        assert_eq!(state_s(&out, r, Lifecycle::Provisioning), 0.0);
    }
    for r in 2..6 {
        assert!((state_s(&out, r, Lifecycle::Provisioning) - 10.0).abs() < 1e-9, "replica {r}");
        assert!((state_s(&out, r, Lifecycle::Loading) - 5.0).abs() < 1e-9, "replica {r}");
        assert!(state_s(&out, r, Lifecycle::Off) >= 30.0, "replica {r}");
    }
    // At t = 90 the five newest go (ReplicaSet order): the oldest replica stays ready throughout.
    let end_s = end_ns as f64 / NS;
    assert!((state_s(&out, 0, Lifecycle::Ready) - end_s).abs() < 1e-9);
    assert!(state_s(&out, 1, Lifecycle::Draining) > 0.0, "replica 1 was drained");
    assert_eq!(out.recorder.scale_events, 2);
    assert_eq!(ended(&out.recorder.all), out.recorder.all.arrivals);
}

#[test]
fn provisioned_replica_seconds_are_the_integral_of_the_time_series() {
    let sc = scenario(TIMETABLE);
    let out = run(&sc, 0);
    // Samples every second hold the state just after their instant: a left Riemann sum over
    // the window differs from the exact integral by at most one second per replica transition.
    let provisioned =
        |s: &routelab::engine::Sample| f64::from(s.replicas.iter().sum::<u32>()) + s.down as f64;
    let horizon = 150.0;
    let integral: f64 = out
        .timeseries
        .iter()
        .filter(|s| s.time.as_secs_f64() <= horizon)
        .map(|s| provisioned(s) * 1.0)
        .sum();
    let exact = out.recorder.replica_s;
    // Transitions: 4 starts × 3 states and 5 stops × 2.
    assert!((integral - exact).abs() <= 22.0 + 2.0, "series {integral} vs exact {exact}");
    // And the value from theory: replica 0 for 150 s, replica 1 until t = 90, 4 more from
    // t = 30 to 90; each of the 5 victims then drains for at most its 30 s grace.
    let lo = 150.0 + 90.0 + 4.0 * 60.0 - 1.0;
    let hi = 150.0 + 90.0 + 4.0 * 60.0 + 5.0 * 30.0;
    assert!(exact > lo && exact < hi, "replica-seconds {exact} outside [{lo}, {hi}]");
}

/// Long requests on 4 replicas, cut to 1 at t = 60 s with a short or a long grace period.
fn drain_yaml(grace_s: f64) -> String {
    format!(
        "name: drain\nseed: 5\nreplications: 1\nhorizon: {{ duration_s: 120 }}\n\
workload:\n  - class: c\n    arrival: {{ process: poisson, rate_per_s: 1 }}\n    \
service_s: {{ dist: exponential, mean: 20 }}\n\
cluster:\n  pools:\n    - {{ name: q, kind: queue, replicas: 4, slots: 8, lifecycle: \
{{ termination_grace_s: {grace_s} }} }}\n\
autoscalers:\n  - {{ name: scheduled, pool: q, steps: [ {{ at_s: 0, replicas: 4 }}, \
{{ at_s: 60, replicas: 1 }} ] }}\n\
policies: [round_robin]\n"
    )
}

#[test]
fn requests_on_a_drained_replica_end_counted_and_grace_decides_how() {
    let short = run(&scenario(&drain_yaml(2.0)), 0);
    let long = run(&scenario(&drain_yaml(100_000.0)), 0);
    for out in [&short, &long] {
        let all = &out.recorder.all;
        assert_eq!(ended(all), all.arrivals, "a request did not end exactly once");
        assert_eq!(ended(&out.recorder.measured), out.recorder.measured.arrivals);
    }
    // 2 s of grace cuts requests of mean 20 s that were running on the three victims: reset,
    // no retry policy, failed. With the grace longer than any request, none is lost.
    assert!(short.recorder.all.failed > 0, "no request was cut by the grace period");
    assert_eq!(long.recorder.all.failed, 0);
    // Same arrivals (common random numbers).
    assert_eq!(short.recorder.all.arrivals, long.recorder.all.arrivals);
    // The long grace keeps the victims provisioned longer.
    assert!(long.recorder.replica_s > short.recorder.replica_s);
}

/// Scale from zero: deterministic arrivals every 0.5 s, a 10 s + 20 s start, KPA.
fn zero_yaml(activator: &str) -> String {
    format!(
        "name: zero\nseed: 1\nreplications: 1\nhorizon: {{ duration_s: 120 }}\n\
workload:\n  - class: c\n    arrival: {{ process: gamma, rate_per_s: 2, cv: 0 }}\n    \
service_s: {{ dist: constant, value: 0.1 }}\n\
cluster:\n  pools:\n    - {{ name: q, kind: queue, replicas: 0, slots: 4, lifecycle: \
{{ provision_s: {{ dist: constant, value: 10 }}, load_s: 20 }} }}\n\
autoscalers:\n  - {{ name: kpa, pool: q, max_scale: 4, target: 10, \
target_utilization_percentage: 100{activator} }}\n\
policies: [least_requests]\n"
    )
}

#[test]
fn the_activator_holds_requests_until_the_first_pod_and_scales_from_zero() {
    // The first request (t = 0.5) is held; the KPA tick at t = 2 sees it and starts a pod,
    // ready at 2 + 10 + 20 = 32 s, which releases every held request.
    let held = run(&scenario(&zero_yaml("")), 0);
    let c = held.recorder.all;
    // Arrivals at 0.5, 1.0, ..., 119.5 (arrivals stop at 120).
    assert_eq!(c.arrivals, 239);
    assert_eq!(c.completed, c.arrivals, "{c:?}");
    // Held: those arriving in [0.5, 32); the one at 32 comes after the pod is ready (capacity
    // changes go first within an instant).
    assert_eq!(held.recorder.held, 63);
    // Replica 0 was Off exactly until the first decision.
    assert!((state_s(&held, 0, Lifecycle::Provisioning) - 10.0).abs() < 1e-9);
    let first_off = held.replica_state_ns[0][Lifecycle::Off.index()] as f64 / NS;
    assert!(first_off >= 2.0 - 1e-9, "started before the first tick: {first_off}");

    // A 20 s hold: requests held at t with t + 20 < 32 expire (504): t = 0.5 .. 11.5, 23 of
    // them; the one held at 12 is released at 32, before its expiry at the same instant.
    let short = run(&scenario(&zero_yaml(", activator: { timeout_s: 20 }")), 0);
    let c = short.recorder.all;
    assert_eq!(short.recorder.held_expired, 23);
    assert_eq!(c.errors, 23);
    assert_eq!(c.completed, c.arrivals - 23);

    // Without an activator nothing reports demand at zero: the pool never starts and every
    // request is refused at once.
    let none = run(&scenario(&zero_yaml(", activator: false")), 0);
    let c = none.recorder.all;
    assert_eq!(c.rejected, c.arrivals);
    assert_eq!(none.recorder.scale_events, 0);
    assert_eq!(none.recorder.replica_s, 0.0);
}

#[test]
fn bad_activator_settings_are_one_line_errors() {
    for (bad, want) in [
        (", activator: 3", "activator: must be true, false or { timeout_s"),
        (", activator: { timeout_s: -1 }", "activator: must be true, false or { timeout_s"),
        (", activator: { wait: 2 }", "activator: must be true, false or { timeout_s"),
    ] {
        let e = routelab::scenario::load_str(&zero_yaml(bad), "z.yaml", &Default::default())
            .expect_err(bad);
        let msg = e.to_string();
        assert!(msg.contains(want) && !msg.contains('\n'), "{bad}: {msg}");
    }
}

const MIX: &str = "\
name: mix\nseed: 1\nreplications: 2\nhorizon: { duration_s: 200 }\n\
timeseries: { interval_s: 5 }\n\
workload:\n  - class: c\n    arrival: { process: diurnal, mean_rate_per_s: 20, peak_to_trough: 4, \
period_s: 200, peak_at_s: 100 }\n    service_s: { dist: exponential, mean: 0.4 }\n    \
timeout_s: 20\n\
cluster:\n  pools:\n    - { name: q, kind: queue, replicas: 1, slots: 4, lifecycle: { provision_s: \
{ dist: lognormal, mean: 8, cv: 0.3 }, load_s: 5, termination_grace_s: 5 } }\n\
faults:\n  - { kind: crash, replicas: [q-0], at_s: 70, duration_s: 10, restart_s: 5 }\n\
autoscalers:\n  - fixed\n  - { name: hpa, pool: q, minReplicas: 1, maxReplicas: 8, metrics: [ { type: \
Pods, pods: { metric: { name: 'vllm:num_requests_waiting' }, target: { type: AverageValue, \
averageValue: '2' } } } ] }\n  - { name: keda, pool: q, minReplicaCount: 0, maxReplicaCount: 8, \
activator: true }\n  - { name: kpa, pool: q, max_scale: 8, target: 3, \
target_utilization_percentage: 100 }\n\
policies: [least_requests, round_robin]\n";

#[test]
fn autoscaled_runs_give_the_same_bytes_for_threads_and_shards() {
    let dir = crate::common::TempDir::new("det-autoscale");
    let file = dir.file("mix.yaml", MIX.as_bytes());
    let run = |extra: &[&str], out: &str| {
        let st = Command::new(env!("CARGO_BIN_EXE_routelab"))
            .args(["run", file.to_str().expect("utf-8"), "--quiet", "--no-plots", "--out"])
            .arg(dir.path().join(out))
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
        .current_dir(dir.path())
        .args(["merge", "s2", "s0", "s1", "--out", "merged"])
        .output()
        .expect("merge");
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    for other in ["t2", "merged"] {
        for f in ["runs.csv", "summary.csv", "summary.md", "timeseries.csv", "health.csv"] {
            let x = std::fs::read(dir.path().join("t1").join(f)).unwrap_or_else(|_| panic!("{f}"));
            let y = std::fs::read(dir.path().join(other).join(f))
                .unwrap_or_else(|_| panic!("{other}/{f}"));
            assert!(x.len() > 100, "{f} nearly empty");
            assert!(x == y, "{f} differs between t1 and {other}");
        }
    }
    // Each autoscaler did scale (the comparison is not vacuous), and fixed did not.
    let rows = routelab::report::csv_in::read_runs(
        &std::fs::read_to_string(dir.path().join("t1/runs.csv")).expect("runs.csv"),
    )
    .expect("parses");
    assert_eq!(rows.len(), 2 * 4 * 2);
    for r in &rows {
        let events = r.get("scale_events").unwrap_or(0.0);
        let fixed = r.key.autoscaler == "fixed";
        assert_eq!(events == 0.0, fixed, "{:?}: {events} scale events", r.key);
    }
}

/// Two fixed sizes of one pool at a load near the small size's capacity: 2 × 4 slots at
/// 0.5 s per request serve 16/s, the load is 14/s, so the small pool queues (ρ = 0.875) and
/// the large one (6 replicas, ρ ≈ 0.29) hardly waits.
const SIZES: &str = "\
name: sizes\nseed: 3\nreplications: 3\nhorizon: { duration_s: 300 }\nwarmup: { duration_s: 30 }\n\
workload:\n  - class: c\n    arrival: { process: poisson, rate_per_s: 14 }\n    \
service_s: { dist: exponential, mean: 0.5 }\n\
cluster:\n  pools:\n    - { name: q, kind: queue, replicas: 1, slots: 4 }\n\
autoscalers:\n  - { name: fixed, label: small, pool: q, replicas: 2 }\n  \
- { name: fixed, label: large, pool: q, replicas: 6 }\n\
policies: [least_requests, random]\n\
checks:\n  - large.e2e_ms_p95 < small.e2e_ms_p95\n  \
- small.e2e_ms_p95 < large.e2e_ms_p95\n  - least_requests.e2e_ms_p95 <= random.e2e_ms_p95\n";

#[test]
fn checks_compare_autoscalers_per_policy_and_policies_per_autoscaler() {
    let dir = crate::common::TempDir::new("check-autoscalers");
    let file = dir.file("sizes.yaml", SIZES.as_bytes());
    let st = Command::new(env!("CARGO_BIN_EXE_routelab"))
        .args(["run", file.to_str().expect("utf-8"), "--quiet", "--no-plots", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .expect("run binary");
    let text = String::from_utf8_lossy(&st.stdout).to_string();
    // The second check is false by queueing theory: the run fails with exit 1.
    assert_eq!(st.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&st.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("sizes cell 0")).collect();
    let has = |tag: &str, place: &str, check: &str| {
        lines.iter().any(|l| l.starts_with(tag) && l.contains(place) && l.contains(check))
    };
    for p in ["least_requests", "random"] {
        let place = format!("policy {p}:");
        assert!(has("PASS", &place, "large.e2e_ms_p95 < small"), "{text}");
        assert!(has("FAIL", &place, "small.e2e_ms_p95 < large"), "{text}");
    }
    for a in ["small", "large"] {
        assert!(has("", &format!("autoscaler {a}:"), "least_requests.e2e_ms_p95"), "{text}");
    }
    // Each autoscaler check once per policy, the policy check once per autoscaler.
    assert_eq!(lines.len(), 2 * 2 + 2, "{text}");
    // The sized pools really ran at their sizes: replica-seconds ≈ size × horizon.
    let rows = routelab::report::csv_in::read_runs(
        &std::fs::read_to_string(dir.path().join("out/runs.csv")).expect("runs.csv"),
    )
    .expect("parses");
    for r in &rows {
        let size = if r.key.autoscaler == "small" { 2.0 } else { 6.0 };
        let mean = r.get("replicas_mean").expect("replicas_mean");
        assert!((mean - size).abs() < 1e-6, "{:?}: {mean}", r.key);
    }
}

#[test]
fn a_check_mixing_policies_and_autoscalers_is_a_load_error() {
    let bad = SIZES.replace(
        "  - least_requests.e2e_ms_p95 <= random",
        "  - least_requests.e2e_ms_p95 <= small",
    );
    let e =
        routelab::scenario::load_str(&bad, "sizes.yaml", &Default::default()).expect_err("mixed");
    let msg = e.to_string();
    assert!(msg.contains("not both") && msg.contains("checks[2]"), "{msg}");
}
