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
