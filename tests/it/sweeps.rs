//! Sweeps, shards, merge and resume: the output bytes of a sweep do not depend on thread
//! count, on being cut into shards and merged, or on being interrupted and resumed.

use std::path::{Path, PathBuf};
use std::process::Command;

const SWEEP: &str = "name: sweep\nseed: 3\nreplications: 3\nhorizon: { max_requests: 6000 }\n\
warmup: { requests: 500 }\ntimeseries: { interval_s: 5 }\nworkload:\n  - class: r\n    \
arrival: { process: poisson, rate_per_s: 100 }\n    service_s: { dist: lognormal, mean: 0.1, cv: 2.0 }\n    \
timeout_s: 5\ncluster:\n  pools:\n    - { name: p, kind: queue, replicas: 8, slots: 2 }\n\
policies: [random, round_robin, least_requests, power_of_d]\n\
sweep:\n  workload.0.arrival.rate_per_s: [40, 80, 120, 150]\n  zip: { cluster.pools.0.slots: [2, 3], workload.0.timeout_s: [5, 2] }\n";

const FILES: &[&str] =
    &["runs.csv", "summary.csv", "summary.md", "quantiles.csv", "timeseries.csv", "manifest.json"];

struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("routelab-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        std::fs::write(d.join("sweep.yaml"), SWEEP).expect("scenario");
        Tmp(d)
    }
    fn run(&self, args: &[&str]) -> std::process::Output {
        let out = Command::new(env!("CARGO_BIN_EXE_routelab"))
            .current_dir(&self.0)
            .args(args)
            .output()
            .expect("run binary");
        assert_ne!(out.status.code(), Some(101), "panic: {}", String::from_utf8_lossy(&out.stderr));
        out
    }
    fn ok(&self, args: &[&str]) {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn same_files(a: &Path, b: &Path) {
    for f in FILES {
        let x = std::fs::read(a.join(f)).unwrap_or_else(|_| panic!("{f} missing in {a:?}"));
        let y = std::fs::read(b.join(f)).unwrap_or_else(|_| panic!("{f} missing in {b:?}"));
        assert!(x.len() > 50, "{f} is nearly empty");
        assert!(x == y, "{f} differs between {a:?} and {b:?}");
    }
}

const RUN: &[&str] = &["run", "sweep.yaml", "--quiet", "--no-plots"];

#[test]
fn sweep_expands_cells_and_is_identical_for_one_and_two_threads() {
    let t = Tmp::new("sweep-threads");
    t.ok(&[RUN, &["--threads", "1", "--out", "t1"]].concat());
    t.ok(&[RUN, &["--threads", "2", "--out", "t2"]].concat());
    same_files(&t.0.join("t1"), &t.0.join("t2"));
    let rows = routelab::report::csv_in::read_runs(
        &std::fs::read_to_string(t.0.join("t1/runs.csv")).expect("runs.csv"),
    )
    .expect("parses");
    // 4 rates x 2 zipped (slots, timeout) pairs = 8 cells, x 4 policies x 3 replications.
    assert_eq!(rows.len(), 8 * 4 * 3);
    assert_eq!(
        rows[0].key.params,
        "workload.0.arrival.rate_per_s=40;cluster.pools.0.slots=2;workload.0.timeout_s=5"
    );
    assert_eq!(rows.last().map(|r| r.key.cell), Some(7));
    // Load rises along the rate axis: random's p95 TTFT at 150/s exceeds that at 40/s.
    let p95 = |cell: u32| {
        rows.iter()
            .find(|r| r.key.cell == cell && r.key.policy == "random")
            .and_then(|r| r.get("ttft_ms_p95"))
    };
    assert!(p95(6).expect("defined") > p95(0).expect("defined"));
}

#[test]
fn four_shards_merge_into_the_bytes_of_one_run() {
    let t = Tmp::new("sweep-shards");
    t.ok(&[RUN, &["--out", "whole"]].concat());
    for i in 0..4 {
        t.ok(&[RUN, &["--shard", &format!("{i}/4"), "--out", &format!("s{i}")]].concat());
    }
    t.ok(&["merge", "s2", "s0", "s3", "s1", "--out", "merged"]);
    same_files(&t.0.join("whole"), &t.0.join("merged"));
    // Missing or repeated shards are errors, not silently short results.
    let missing = t.run(&["merge", "s0", "s1", "s2", "--out", "bad"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("of the plan's"));
    let twice = t.run(&["merge", "s0", "s0", "s1", "s2", "s3", "--out", "bad"]);
    assert_eq!(twice.status.code(), Some(2));
    let bad_shard = t.run(&[RUN, &["--shard", "4/4"]].concat());
    assert_eq!(bad_shard.status.code(), Some(2));
}

#[test]
fn resume_skips_recorded_runs_and_gives_the_same_bytes() {
    let t = Tmp::new("sweep-resume");
    t.ok(&[RUN, &["--out", "whole"]].concat());
    t.ok(&[RUN, &["--out", "part"]].concat());
    // Simulate an interrupted sweep: drop every third run from runs.csv.
    let p = t.0.join("part/runs.csv");
    let text = std::fs::read_to_string(&p).expect("runs.csv");
    let kept: Vec<&str> =
        text.lines().enumerate().filter(|(i, _)| *i == 0 || i % 3 != 1).map(|(_, l)| l).collect();
    std::fs::write(&p, kept.join("\n") + "\n").expect("write");
    let out = t.run(&[RUN, &["--out", "part", "--resume"]].concat());
    assert!(out.status.success());
    same_files(&t.0.join("whole"), &t.0.join("part"));
    // A resume into results of a different plan is refused, and leaves them alone.
    let before = std::fs::read(t.0.join("part/runs.csv")).expect("runs.csv");
    let other = t.run(&[RUN, &["--out", "part", "--resume", "--seed", "9"]].concat());
    assert_eq!(other.status.code(), Some(2));
    assert_eq!(std::fs::read(t.0.join("part/runs.csv")).expect("runs.csv"), before);
}

#[test]
fn bad_sweeps_are_one_line_errors() {
    let t = Tmp::new("sweep-bad");
    for (set, expect) in [
        (
            "sweep={zip: {workload.0.timeout_s: [1, 2], cluster.pools.0.slots: [1]}}",
            "equal lengths",
        ),
        ("sweep={workload.0.arrival.rate_per_s: []}", "non-empty list"),
        ("sweep={workload.0.arrival.rate_per_s: [10, -5]}", "sweep cell 1"),
        ("sweep={workload.0.arival.rate_per_s: [10]}", "sweep cell 0"),
    ] {
        let out = t.run(&[RUN, &["--set", set, "--out", "x"]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{set}: {err}");
        assert_eq!(err.lines().count(), 1, "{set}: {err}");
        assert!(err.contains(expect), "{set}: {err}");
    }
}

#[test]
fn checks_wait_for_merge_and_decide_its_exit_code() {
    let t = Tmp::new("sweep-checks");
    for (check, code) in [
        ("checks=[least_requests.e2e_ms_mean < random.e2e_ms_mean]", 0),
        ("checks=[random.e2e_ms_mean < least_requests.e2e_ms_mean]", 1),
    ] {
        for i in 0..2 {
            // A shard holds part of each cell: it evaluates no checks and succeeds.
            let out = t.run(
                &[RUN, &["--set", check, "--shard", &format!("{i}/2"), "--out", &format!("c{i}")]]
                    .concat(),
            );
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(!String::from_utf8_lossy(&out.stdout).contains("PASS"));
        }
        let merged = t.run(&["merge", "c0", "c1", "--out", "cm"]);
        let stdout = String::from_utf8_lossy(&merged.stdout);
        assert_eq!(merged.status.code(), Some(code), "{check}: {stdout}");
        let tag = if code == 0 { "PASS" } else { "FAIL" };
        assert_eq!(stdout.matches(tag).count(), 8, "one line per cell: {stdout}");
    }
}
