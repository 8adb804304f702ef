//! Limits end runaway runs with an error that names the seed and a reproduction command —
//! never a hang, never an out-of-memory crash.

use crate::common::scenario;
use routelab::error::RunFailure;
use routelab::experiment;
use std::process::Command;

const OVERLOAD: &str = "name: overload\nseed: 5\nreplications: 2\nhorizon: { max_requests: 200000 }\n\
workload:\n  - class: a\n    arrival: { process: poisson, rate_per_s: 200 }\n    \
service_s: { dist: exponential, mean: 0.1 }\ncluster:\n  pools:\n    - { name: q, kind: queue, replicas: 2, slots: 4 }\n\
policies: [round_robin]\n";

#[test]
fn event_limit_ends_the_run_with_seed_and_repro() {
    let yaml = format!("{OVERLOAD}limits: {{ max_events: 1000 }}\n");
    let plan = experiment::plan(vec![scenario(&yaml)], None);
    let results = experiment::execute(&plan, 1);
    assert_eq!(results.len(), 2);
    for (r, res) in results.iter().enumerate() {
        let e = res.as_ref().expect_err("limit must stop the run");
        assert_eq!(e.failure, RunFailure::EventLimit(1000));
        assert_eq!(e.run_seed, routelab::rng::run_seed(5, r as u32));
        assert!(e.repro.contains(&format!("--seed 5 --only-replication {r}")), "{}", e.repro);
        assert!(e.to_string().contains("reproduce: routelab run"), "{e}");
    }
}

#[test]
fn unbounded_overload_hits_the_in_flight_limit() {
    // 200/s offered to 80/s of capacity with no timeout: the backlog grows without bound.
    let yaml = format!("{OVERLOAD}limits: {{ max_in_flight: 5000 }}\n");
    let plan = experiment::plan(vec![scenario(&yaml)], None);
    let e = experiment::execute(&plan, 1).remove(0).expect_err("overload must be stopped");
    assert_eq!(e.failure, RunFailure::InFlightLimit(5000));
    // The same overload with a timeout is a legitimate study: it completes and counts timeouts.
    let with_timeout = OVERLOAD.replace("mean: 0.1 }\n", "mean: 0.1 }\n    timeout_s: 2\n");
    let plan = experiment::plan(
        vec![scenario(&format!("{with_timeout}limits: {{ max_in_flight: 5000 }}\n"))],
        None,
    );
    let row = experiment::execute(&plan, 1).remove(0).expect("timeouts bound the backlog");
    let rate = row.get("timeout_rate").expect("defined");
    // Capacity 80/s of 200/s offered: at least half must time out.
    assert!(rate > 0.5, "timeout rate {rate}");
    let thr = row.get("throughput_rps").expect("defined");
    assert!((thr - 80.0).abs() / 80.0 < 0.03, "throughput {thr} should be the 80/s capacity");
}

#[test]
fn cli_reports_a_limit_with_exit_code_2() {
    let dir = std::env::temp_dir().join(format!("routelab-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("overload.yaml");
    std::fs::write(&file, OVERLOAD).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_routelab"))
        .args(["run", file.to_str().expect("utf-8"), "--quiet", "--set", "limits.max_events=500"])
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .expect("run binary");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("event limit of 500") && err.contains("--only-replication 1"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
