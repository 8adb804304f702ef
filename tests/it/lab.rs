//! The lab: `checks:` in scenarios, `routelab compare` (paired differences) and `routelab gate`
//! (regressions between two summary.csv files).
//!
//! Two small fixtures in `tests/scenarios/checks/` drive most tests: `heavy_tail.yaml`, where
//! every check holds (least_requests beats round_robin on p95 TTFT under a heavy-tailed
//! service), and `heavy_tail_regressed.yaml`, the same scenario with a planted regression (the
//! policy labelled `least_requests` is really `random`). Each is run once (4 replications of
//! 5000 requests × 3 policies) and shared. Checks, gate and compare must fail on the planted
//! regression and pass otherwise; malformed input is a one-line error (exit 2 in the CLI).

use crate::common::{get, run_rows};
use routelab::report::{check, compare, csv_in, csv_out, gate, summarize, RunRow, SummaryRow};
use routelab::report::{metric_index, CommandOutput};
use routelab::scenario::{self, LoadOptions, Scenario};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/scenarios/checks").join(name)
}

/// A scenario, its run rows and summary.
struct Lab {
    scenario: Scenario,
    rows: Vec<RunRow>,
    summary: Vec<SummaryRow>,
}

fn run_fixture(name: &str) -> Lab {
    let s = scenario::load(&fixture(name), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let rows = run_rows(s.clone(), 0);
    let summary = summarize(&rows);
    Lab { scenario: s, rows, summary }
}

/// `heavy_tail.yaml`, run once: every check holds.
fn heavy() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| run_fixture("heavy_tail.yaml"))
}

/// `heavy_tail_regressed.yaml`, run once: a worse policy under the `least_requests` label.
fn regressed() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| run_fixture("heavy_tail_regressed.yaml"))
}

/// Evaluates `checks` (instead of the fixture's own) on a lab's results.
fn eval(lab: &Lab, checks: &[&str]) -> CommandOutput {
    let mut s = lab.scenario.clone();
    s.checks = checks.iter().map(|c| c.to_string()).collect();
    check::evaluate_all(&[s], &lab.summary, &lab.rows)
}

/// The single check line of `out` (panics unless there is exactly one).
fn line(out: &CommandOutput) -> &str {
    let lines: Vec<&str> = out
        .text
        .lines()
        .filter(|l| ["PASS ", "FAIL ", "SKIP "].iter().any(|p| l.starts_with(p)))
        .collect();
    assert_eq!(lines.len(), 1, "expected one check line:\n{}", out.text);
    lines[0]
}

fn mean(lab: &Lab, policy: &str, metric: &str) -> f64 {
    let row = lab.summary.iter().find(|r| r.key.policy == policy).expect("policy row");
    row.mean(metric).unwrap_or_else(|| panic!("{policy}.{metric} undefined"))
}

// ---------------------------------------------------------------------------------------------
// Parsing and load-time validation.

#[test]
fn check_parse_errors_give_the_column_and_what_was_expected() {
    let cases: &[(&str, usize, &str)] = &[
        ("a.ttft_ms_p95 <", 16, "expected a number, `label.metric`"),
        ("a.ttft_ms_p95 < b.ttft_ms_p95 < c.ttft_ms_p95", 31, "cannot be chained"),
        ("a.ttft_ms_p95 = b.ttft_ms_p95", 15, "use `==`"),
        ("(a.ttft_ms_p95 < b.ttft_ms_p95", 31, "expected `)` to close the `(` at column 1"),
        ("a.ttft_ms_p95 * 2", 1, "a check must be a comparison"),
        ("a.ttft_ms_p95 < 1 and 2", 23, "expected a comparison after `and`"),
        ("a.ttft_ms_p95 + (b.x < c.x) > 1", 17, "expected a number after `+`"),
        ("significant(a.ttft_ms_p95 <= b.ttft_ms_p95)", 27, "significant() takes `<`, `>` or `!=`"),
        ("significant a.x < b.x", 13, "expected `(` after `significant`"),
        ("a. < b.x", 3, "expected a metric name after `a.`"),
        ("a.x < b.x && c.x < 1", 11, "use `and`"),
        ("a.x < limit", 7, "unknown word `limit`"),
        ("a.x < 1.", 9, "expected digits after the decimal point"),
    ];
    for (text, column, want) in cases {
        let e = scenario::check_expr::parse(text).expect_err(text);
        assert_eq!(e.column, *column, "{text:?}: {e}");
        assert!(e.message.contains(want), "{text:?}: {e} should contain {want:?}");
    }
    for ok in [
        "p2c.ttft_ms_p95 < round_robin.ttft_ms_p95",
        "cache_aware.prefix_hit_rate >= 2 * round_robin.prefix_hit_rate",
        "all.timeout_rate < 0.01",
        "not (a.x > 1e-3 or -b.y / 2 >= 3) and significant(a.x != b.x)",
    ] {
        scenario::check_expr::parse(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
    }
}

const BASE: &str = "\
name: tiny
horizon: { max_requests: 1000 }
workload:
  - class: a
    arrival: { process: poisson, rate_per_s: 10 }
    service_s: { dist: exponential, mean: 0.05 }
cluster:
  pools:
    - { name: p, kind: queue, replicas: 2 }
policies: [random, round_robin]
";

fn load_with_checks(checks: &[&str]) -> Result<Scenario, routelab::error::ConfigError> {
    let mut yaml = format!("{BASE}checks:\n");
    for c in checks {
        yaml.push_str(&format!("  - {c:?}\n"));
    }
    scenario::load_str(&yaml, "<lab>", &LoadOptions::default())
}

#[test]
fn bad_checks_are_load_errors_naming_the_entry_and_column() {
    let ok = load_with_checks(&[
        "random.ttft_ms_p95 < round_robin.ttft_ms_p95",
        "all.timeout_rate < 0.01",
    ])
    .expect("valid checks load");
    assert_eq!(ok.checks.len(), 2);
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["p2c.ttft_ms_p95 < round_robin.ttft_ms_p95"],
            "checks[0]",
            "column 1: unknown policy label \"p2c\"; labels: random, round_robin",
        ),
        (
            &["all.timeout_rate < 0.01", "random.ttft_p95 < 1"],
            "checks[1]",
            "column 8: unknown metric \"ttft_p95\" (did you mean ttft_ms_p95?)",
        ),
        (&["random.ttft_ms_p95 <"], "checks[0]", "column 21: expected a number"),
        (&["random.ttft_ms_p95 < 1 < 2"], "checks[0]", "column 24: comparisons cannot be chained"),
    ];
    for (checks, path, want) in cases {
        let e = load_with_checks(checks).expect_err(want);
        let msg = e.to_string();
        assert_eq!(e.path, *path, "{msg}");
        // The line:column of the check in the file, then the column inside the expression.
        let loc = e.location.as_ref().expect("located in the text");
        let entry: usize = path["checks[".len()..path.len() - 1].parse().expect("index");
        assert_eq!(loc.line, BASE.lines().count() + 2 + entry, "{msg}");
        assert!(
            msg.starts_with(&format!("<lab>:{}:{}: {path}: {want}", loc.line, loc.column)),
            "{msg:?} should start with {want:?}"
        );
        assert!(!msg.contains('\n'), "not one line: {msg:?}");
    }
    // A policy labelled `all` would make `all.` ambiguous.
    let yaml = BASE.replace("[random, round_robin]", "[{ name: random, label: all }]")
        + "checks: [\"all.timeout_rate < 0.01\"]\n";
    let e = scenario::load_str(&yaml, "<lab>", &LoadOptions::default()).expect_err("reserved");
    assert!(e.to_string().contains("checks reserve"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Evaluating checks on real runs.

#[test]
fn fixture_checks_pass_and_the_planted_regression_fails_them() {
    let lab = heavy();
    let out = check::evaluate_all(std::slice::from_ref(&lab.scenario), &lab.summary, &lab.rows);
    assert!(!out.failed, "{}", out.text);
    assert_eq!(
        out.text.lines().filter(|l| l.starts_with("PASS heavy-tail-checks cell 0: ")).count(),
        4,
        "{}",
        out.text
    );
    let first = format!(
        "PASS heavy-tail-checks cell 0: least_requests.ttft_ms_p95 < round_robin.ttft_ms_p95  ({} < {})",
        fmt4(mean(lab, "least_requests", "ttft_ms_p95")),
        fmt4(mean(lab, "round_robin", "ttft_ms_p95")),
    );
    assert!(out.text.contains(&first), "{first:?} not in\n{}", out.text);
    assert!(out.text.ends_with("checks: 4 passed, 0 failed\n"), "{}", out.text);

    let bad = regressed();
    let out = check::evaluate_all(std::slice::from_ref(&bad.scenario), &bad.summary, &bad.rows);
    assert!(out.failed, "{}", out.text);
    let lines: Vec<&str> = out.text.lines().collect();
    assert!(
        lines[0]
            .starts_with("FAIL heavy-tail-checks cell 0: least_requests.ttft_ms_p95 < round_robin"),
        "{}",
        out.text
    );
    assert!(lines[1].starts_with("FAIL heavy-tail-checks cell 0: significant("), "{}", out.text);
    assert!(lines[1].contains("not > 0"), "{}", out.text);
    assert!(
        lines[2].starts_with("PASS heavy-tail-checks cell 0: all.timeout_rate < 0.01"),
        "{}",
        out.text
    );
    assert!(lines[3].starts_with("FAIL "), "{}", out.text);
}

/// The check output's number format: 4 significant digits, at least one decimal.
fn fmt4(x: f64) -> String {
    let decimals = (3 - x.abs().log10().floor() as i32).clamp(1, 12) as usize;
    let mut s = format!("{x:.decimals$}");
    while s.ends_with('0') && !s.ends_with(".0") {
        s.pop();
    }
    s
}

#[test]
fn false_undefined_and_skipped_checks() {
    let lab = heavy();
    let out = eval(lab, &["round_robin.ttft_ms_p95 < least_requests.ttft_ms_p95"]);
    assert!(out.failed && line(&out).starts_with("FAIL "), "{}", out.text);
    // Arithmetic: round robin is more than 1.5x worse, not 100x.
    assert!(!eval(lab, &["round_robin.ttft_ms_p95 > 1.5 * least_requests.ttft_ms_p95"]).failed);
    assert!(eval(lab, &["round_robin.ttft_ms_p95 > 100 * least_requests.ttft_ms_p95"]).failed);
    // Queue replicas have no TPOT: undefined fails with the reason, never panics.
    let out = eval(lab, &["round_robin.tpot_ms_mean < 1"]);
    assert!(out.failed, "{}", out.text);
    assert!(
        line(&out).contains("round_robin.tpot_ms_mean is undefined: no samples"),
        "{}",
        out.text
    );
    // ... unless the other side of an `or` holds (three-valued logic).
    assert!(!eval(lab, &["round_robin.tpot_ms_mean < 1 or round_robin.completed > 0"]).failed);
    let out = eval(lab, &["round_robin.ttft_ms_p95 / (least_requests.timed_out * 0) > 1"]);
    assert!(out.failed && line(&out).contains("division by zero"), "{}", out.text);
    // A policy that was not run (e.g. filtered with --policy) is skipped, not failed.
    let out = eval(lab, &["p2c.ttft_ms_p95 < round_robin.ttft_ms_p95"]);
    assert!(!out.failed && line(&out).starts_with("SKIP "), "{}", out.text);
    assert!(out.text.contains("1 skipped"), "{}", out.text);
    // No checks: no output.
    assert_eq!(eval(lab, &[]), CommandOutput::default());
}

#[test]
fn all_must_hold_for_every_other_policy() {
    let lab = heavy();
    let (lr, rr) =
        (mean(lab, "least_requests", "ttft_ms_p95"), mean(lab, "round_robin", "ttft_ms_p95"));
    assert!(lr < rr, "precondition: least_requests {lr} beats round_robin {rr}");
    let out = eval(lab, &[&format!("all.ttft_ms_p95 < {}", rr * 10.0)]);
    assert!(!out.failed, "{}", out.text);
    for p in ["round_robin:", "least_requests:", "weighted_round_robin:"] {
        assert!(line(&out).contains(p), "{p} not listed: {}", out.text);
    }
    let out = eval(lab, &[&format!("all.ttft_ms_p95 < {}", (lr + rr) / 2.0)]);
    assert!(out.failed, "{}", out.text);
    let l = line(&out);
    assert!(l.contains("fails for round_robin: ") && l.contains("weighted_round_robin: "), "{l}");
    assert!(!l.contains("least_requests:"), "least_requests holds and is not listed: {l}");
    // Policies named in the comparison are excluded from `all`, so strict `<` is usable.
    assert!(!eval(lab, &["least_requests.ttft_ms_p95 < all.ttft_ms_p95"]).failed);
    assert!(eval(lab, &["round_robin.ttft_ms_p95 < all.ttft_ms_p95"]).failed);
    assert!(eval(lab, &["all.timeout_rate > 0.5"]).failed);
}

#[test]
fn significant_needs_a_paired_difference_whose_ci_excludes_zero() {
    let lab = heavy();
    // Equal weights: weighted round robin visits replicas in a rotation of round robin's, and
    // replicas are identical, so every metric is identical replication by replication.
    let of = |p: &str| -> Vec<f64> {
        lab.rows.iter().filter(|r| r.key.policy == p).map(|r| get(r, "ttft_ms_p95")).collect()
    };
    assert_eq!(of("round_robin"), of("weighted_round_robin"), "precondition: identical rows");
    assert_ne!(of("round_robin"), of("least_requests"));

    let out = eval(lab, &["significant(least_requests.ttft_ms_p95 < round_robin.ttft_ms_p95)"]);
    assert!(!out.failed, "{}", out.text);
    assert!(
        line(&out).contains("over 4 replications") && line(&out).contains("] > 0"),
        "{}",
        out.text
    );
    // The reverse claim fails, and so does any claim about identical policies.
    assert!(
        eval(lab, &["significant(least_requests.ttft_ms_p95 > round_robin.ttft_ms_p95)"]).failed
    );
    for claim in ["!=", "<", ">"] {
        let c = format!(
            "significant(round_robin.ttft_ms_p95 {claim} weighted_round_robin.ttft_ms_p95)"
        );
        let out = eval(lab, &[&c]);
        assert!(out.failed, "{c}: {}", out.text);
        assert!(line(&out).contains("± 0.0 over 4 replications"), "{}", out.text);
    }
    // One replication: no interval, a clear reason.
    let rows: Vec<RunRow> = lab.rows.iter().filter(|r| r.key.replication == 0).cloned().collect();
    let summary = summarize(&rows);
    let mut s = lab.scenario.clone();
    s.checks = vec!["significant(least_requests.ttft_ms_p95 < round_robin.ttft_ms_p95)".into()];
    let out = check::evaluate_all(&[s], &summary, &rows);
    assert!(out.failed, "{}", out.text);
    assert!(line(&out).contains("needs at least 2 paired replications, have 1"), "{}", out.text);
}

// ---------------------------------------------------------------------------------------------
// Files and the command line.

use crate::common::TempDir;

/// `summary` with `metric` of `policy` multiplied by `factor` (mean only).
fn scaled(summary: &[SummaryRow], policy: &str, metric: &str, factor: f64) -> Vec<u8> {
    let i = metric_index(metric).expect("metric");
    let mut s = summary.to_vec();
    let row = s.iter_mut().find(|r| r.key.policy == policy).expect("policy row");
    row.values[i].mean = row.values[i].mean.map(|x| x * factor);
    csv_out::summary_csv(&s)
}

fn gate_files(base: &Path, cur: &Path, metrics: &[&str], tol: &[f64]) -> CommandOutput {
    let metrics: Vec<String> = metrics.iter().map(|m| m.to_string()).collect();
    gate::command(base, cur, &metrics, tol).unwrap_or_else(|e| panic!("gate: {e}"))
}

fn result_lines<'a>(out: &'a CommandOutput, word: &str) -> Vec<&'a str> {
    out.text.lines().filter(|l| l.contains(&format!("| {word}"))).collect()
}

#[test]
fn gate_passes_on_itself_and_fails_on_planted_regressions() {
    let lab = heavy();
    let dir = TempDir::new("gate");
    let base = dir.file("base.csv", &csv_out::summary_csv(&lab.summary));
    let same = gate_files(&base, &base, &[], &[]);
    assert!(!same.failed, "{}", same.text);
    assert_eq!(
        result_lines(&same, "PASS |").len(),
        3 * gate::DEFAULT_METRICS.len(),
        "{}",
        same.text
    );
    assert!(same.text.contains("gate: PASS"), "{}", same.text);

    // p95 TTFT of one policy 1.5x worse: exactly that comparison regresses.
    let cur = dir.file("p95.csv", &scaled(&lab.summary, "least_requests", "ttft_ms_p95", 1.5));
    let out = gate_files(&base, &cur, &[], &[]);
    assert!(out.failed, "{}", out.text);
    let reg = result_lines(&out, "REGRESSION");
    assert_eq!(reg.len(), 1, "{}", out.text);
    assert!(
        reg[0].contains("| least_requests | none | ttft_ms_p95 |")
            && reg[0].contains("+50.00% worse"),
        "{}",
        reg[0]
    );
    assert!(
        reg[0].contains("| yes | REGRESSION |"),
        "1.5x is beyond replication noise: {}",
        reg[0]
    );
    assert!(out.text.contains("gate: FAIL - 1 regression(s)"), "{}", out.text);

    // 3% worse: inside the default 5% tolerance, outside an explicit 1%.
    let cur = dir.file("p95-3.csv", &scaled(&lab.summary, "least_requests", "ttft_ms_p95", 1.03));
    assert!(!gate_files(&base, &cur, &[], &[]).failed);
    let out = gate_files(&base, &cur, &["ttft_ms_p95", "throughput_rps"], &[0.01, 0.01]);
    assert!(out.failed, "{}", out.text);
    assert_eq!(result_lines(&out, "PASS |").len() + 1, 3 * 2, "{}", out.text);
    // Lower is better for latencies; higher is better for throughput.
    let cur = dir.file("faster.csv", &scaled(&lab.summary, "round_robin", "ttft_ms_p95", 0.5));
    assert!(!gate_files(&base, &cur, &[], &[]).failed);
    let cur = dir.file("tput.csv", &scaled(&lab.summary, "round_robin", "throughput_rps", 0.9));
    let out = gate_files(&base, &cur, &[], &[]);
    assert!(
        out.failed && result_lines(&out, "REGRESSION")[0].contains("throughput_rps"),
        "{}",
        out.text
    );

    // A row missing from current fails; a new row does not.
    let fewer = csv_out::summary_csv(&lab.summary[..2]);
    let cur = dir.file("fewer.csv", &fewer);
    let out = gate_files(&base, &cur, &[], &[]);
    assert!(out.failed && out.text.contains("MISSING in current"), "{}", out.text);
    let out = gate_files(&cur, &base, &[], &[]);
    assert!(!out.failed && out.text.contains("NEW (not in baseline)"), "{}", out.text);
}

/// `text` (a CSV) without the columns named in `drop`.
fn without_columns(text: &str, drop: &[&str]) -> Vec<u8> {
    let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let h = rdr.headers().expect("header").clone();
    let keep: Vec<usize> = (0..h.len()).filter(|&i| !drop.contains(&&h[i])).collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(keep.iter().map(|&i| &h[i])).expect("write");
    for rec in rdr.records() {
        let rec = rec.expect("record");
        w.write_record(keep.iter().map(|&i| &rec[i])).expect("write");
    }
    w.into_inner().expect("flush")
}

#[test]
fn gate_reads_a_baseline_from_an_older_version_with_fewer_columns() {
    // An older routelab wrote no `group`, `errors` or `timeout_rate` columns: the gate still
    // compares the metrics both files have, says which it could not, and catches a regression.
    let lab = heavy();
    let dir = TempDir::new("gate-old");
    let text = String::from_utf8(csv_out::summary_csv(&lab.summary)).expect("utf-8");
    let old = without_columns(
        &text,
        &["group", "errors", "errors_ci95", "timeout_rate", "timeout_rate_ci95"],
    );
    let base = dir.file("old.csv", &old);
    let cur = dir.file("cur.csv", text.as_bytes());
    let out = gate_files(&base, &cur, &[], &[]);
    assert!(!out.failed, "{}", out.text);
    assert!(out.text.contains("no column for `timeout_rate`"), "{}", out.text);
    assert_eq!(
        result_lines(&out, "PASS |").len(),
        3 * (gate::DEFAULT_METRICS.len() - 1),
        "{}",
        out.text
    );
    let worse = dir.file("worse.csv", &scaled(&lab.summary, "round_robin", "ttft_ms_p99", 1.5));
    let out = gate_files(&base, &worse, &[], &[]);
    assert!(out.failed && result_lines(&out, "REGRESSION").len() == 1, "{}", out.text);
    // A file with no metric column at all is still refused.
    let keys = without_columns(
        &text,
        &routelab::report::METRICS
            .iter()
            .flat_map(|d| [d.name.to_string(), format!("{}_ci95", d.name)])
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let bad = dir.file("keys.csv", &keys);
    let metrics: Vec<String> = Vec::new();
    let err = gate::command(&bad, &cur, &metrics, &[]).expect_err("no metrics");
    assert!(err.to_string().contains("every other metric"), "{err}");
}

#[test]
fn gate_catches_a_worse_policy_under_the_same_label() {
    let dir = TempDir::new("gate-policy");
    let base = dir.file("base.csv", &csv_out::summary_csv(&heavy().summary));
    let cur = dir.file("cur.csv", &csv_out::summary_csv(&regressed().summary));
    let out = gate_files(&base, &cur, &[], &[]);
    assert!(out.failed, "{}", out.text);
    let reg = result_lines(&out, "REGRESSION");
    assert!(
        reg.iter().any(|l| l.contains("| least_requests | none | ttft_ms_p95 |")),
        "{}",
        out.text
    );
    assert!(
        reg.iter().all(|l| l.contains("| least_requests |")),
        "only that policy changed: {}",
        out.text
    );
}

#[test]
fn gate_rejects_malformed_input_in_one_line() {
    let dir = TempDir::new("gate-bad");
    let good = dir.file("good.csv", &csv_out::summary_csv(&heavy().summary));
    let text = String::from_utf8(csv_out::summary_csv(&heavy().summary)).expect("utf-8");
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            dir.file("garbage.csv", b"hello,world\n1,2\n"),
            "not a routelab summary.csv: missing column `scenario`",
        ),
        (
            dir.file("number.csv", text.replacen(",none,all,4,", ",none,all,four,", 1).as_bytes()),
            "line 2: column `replications`",
        ),
        (dir.file("empty.csv", text.lines().next().expect("header").as_bytes()), "has no rows"),
        (dir.0.join("absent.csv"), "no such file"),
    ];
    for (path, want) in &cases {
        let e = gate::command(path, &good, &[], &[]).expect_err(want);
        let msg = e.to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{msg:?} should name the file");
        assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        assert!(!msg.contains('\n'), "not one line: {msg:?}");
    }
    let e = gate::command(&good, &good, &["ttft_ms_p95".into()], &[0.1, 0.2]).expect_err("counts");
    assert!(e.to_string().contains("--tolerance: given 2 time(s) for 1 --metric"), "{e}");
    let e = gate::command(&good, &good, &["p95".into()], &[]).expect_err("metric");
    assert!(e.to_string().contains("--metric = \"p95\": unknown metric; valid: arrivals,"), "{e}");
}

#[test]
fn compare_reports_paired_differences_and_writes_compare_csv() {
    let lab = heavy();
    let dir = TempDir::new("compare");
    dir.file("runs.csv", &csv_out::runs_csv(&lab.rows));
    let out = compare::command(&dir.0, None, &[]).expect("compare");
    assert!(!out.failed);
    assert!(
        out.text.contains("### heavy-tail-checks (cell 0): paired differences vs round_robin"),
        "{}",
        out.text
    );
    let csv = std::fs::read(dir.0.join("compare.csv")).expect("compare.csv written");
    let text = String::from_utf8(csv.clone()).expect("utf-8");
    assert_eq!(text.lines().count(), 1 + 2 * compare::DEFAULT_METRICS.len(), "{text}");

    // least_requests − round_robin on p95, by hand from the rows.
    let d: Vec<f64> = (0..4)
        .map(|r| {
            let v = |p: &str| {
                get(
                    lab.rows
                        .iter()
                        .find(|x| x.key.policy == p && x.key.replication == r)
                        .expect("row"),
                    "ttft_ms_p95",
                )
            };
            v("least_requests") - v("round_robin")
        })
        .collect();
    let m = d.iter().sum::<f64>() / 4.0;
    let sd = (d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 3.0).sqrt();
    let ci = 3.182_446_305_284_263 * sd / 2.0;
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.contains(",least_requests,ttft_ms_p95,"))
        .expect("least_requests p95 row")
        .split(',')
        .collect();
    assert_eq!(row[7], "4");
    assert_eq!(row[10], format!("{m:.3}"));
    assert_eq!(row[11], format!("{ci:.3}"));
    assert_eq!(row[15], "true", "a clear difference: the paired CI excludes 0");
    // Throughput is driven by the shared workload: pairing removes most of its variance.
    let tput: Vec<&str> = text
        .lines()
        .find(|l| l.contains(",least_requests,throughput_rps,"))
        .expect("throughput row")
        .split(',')
        .collect();
    let (paired, unpaired): (f64, f64) =
        (tput[11].parse().expect("paired ci"), tput[16].parse().expect("unpaired ci"));
    assert!(2.0 * paired < unpaired, "paired CI {paired} should be far tighter than {unpaired}");
    // Identical policies: difference 0 with a zero-width interval that does not exclude 0.
    let same: Vec<&str> = text
        .lines()
        .find(|l| l.contains(",weighted_round_robin,ttft_ms_p95,"))
        .expect("wrr row")
        .split(',')
        .collect();
    assert_eq!((same[10], same[11], same[15]), ("0.000", "0.000", "false"));

    // Deterministic bytes; another baseline; bad flags.
    compare::command(&dir.0, None, &[]).expect("again");
    assert_eq!(std::fs::read(dir.0.join("compare.csv")).expect("again"), csv);
    let out = compare::command(&dir.0, Some("least_requests"), &["e2e_ms_mean".into()])
        .expect("baseline");
    assert!(out.text.contains("| round_robin | e2e_ms_mean | 4 |"), "{}", out.text);
    let e = compare::command(&dir.0, Some("p2c"), &[]).expect_err("baseline");
    assert!(
        e.to_string().contains("policies: round_robin, least_requests, weighted_round_robin"),
        "{e}"
    );
    let e = compare::command(&dir.0, None, &["nope".into()]).expect_err("metric");
    assert!(e.to_string().contains("unknown metric; valid:"), "{e}");
    let e = compare::command(&dir.0.join("absent"), None, &[]).expect_err("no dir");
    assert!(e.to_string().contains("runs.csv: no such file"), "{e}");
    // runs.csv read back gives the same rows the run produced.
    assert_eq!(
        csv_in::read_runs(&String::from_utf8(csv_out::runs_csv(&lab.rows)).expect("utf-8"))
            .expect("reads"),
        lab.rows
    );
}

fn routelab(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_routelab")).args(args).output().expect("run routelab")
}

#[test]
fn cli_gate_exits_0_1_2_and_compare_prints_the_table() {
    let lab = heavy();
    let dir = TempDir::new("cli");
    let base = dir.file("base.csv", &csv_out::summary_csv(&lab.summary));
    let bad = dir.file("bad.csv", &scaled(&lab.summary, "least_requests", "ttft_ms_p95", 1.5));
    let junk = dir.file("junk.csv", b"not,a,summary\n");
    let gate_run = |b: &Path, c: &Path, extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "gate".as_ref(),
            "--baseline".as_ref(),
            b.as_os_str(),
            "--current".as_ref(),
            c.as_os_str(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        routelab(&args)
    };
    let ok = gate_run(&base, &base, &[]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("gate: PASS"));
    let fail = gate_run(&base, &bad, &[]);
    assert_eq!(fail.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&fail.stdout).contains("| REGRESSION |"));
    // A generous tolerance on that metric lets it through.
    let loose = gate_run(&base, &bad, &["--metric", "ttft_ms_p95", "--tolerance", "0.6"]);
    assert_eq!(loose.status.code(), Some(0), "{}", String::from_utf8_lossy(&loose.stdout));
    for (b, c, extra) in [
        (&junk, &base, &[][..]),
        (&base, &junk, &[][..]),
        (
            &base,
            &base,
            &["--metric", "ttft_ms_p95", "--tolerance", "0.1", "--tolerance", "0.2"][..],
        ),
    ] {
        let out = gate_run(b, c, extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
        assert!(err.starts_with("error: "), "{err:?}");
    }

    dir.file("runs.csv", &csv_out::runs_csv(&lab.rows));
    let out = routelab(&["compare".as_ref(), dir.0.as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("| least_requests | ttft_ms_p95 | 4 |") && text.contains("| yes |"),
        "{text}"
    );
    let out = routelab(&[
        "compare".as_ref(),
        dir.0.as_os_str(),
        "--baseline-policy".as_ref(),
        "nope".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
fn checks_run_per_sweep_cell_and_decide_the_run_exit_code() {
    // Two cells of a sweep: one line per check per cell, naming the cell's values.
    let text = std::fs::read_to_string(fixture("heavy_tail.yaml")).expect("fixture")
        + "sweep: { \"workload.0.arrival.rate_per_s\": [16, 32] }\n";
    let mut cells =
        scenario::load_cells_str(&text, "<lab>", &LoadOptions::default()).expect("cells");
    for c in &mut cells {
        c.replications = 2;
        c.checks = vec!["least_requests.ttft_ms_p95 <= round_robin.ttft_ms_p95".into()];
    }
    let plan = routelab::experiment::plan(cells.clone(), None);
    let rows: Vec<RunRow> = routelab::experiment::execute(&plan, 0)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let out = check::evaluate_all(&cells, &summarize(&rows), &rows);
    assert!(!out.failed, "{}", out.text);
    let lines: Vec<&str> = out.text.lines().collect();
    assert!(
        lines[0].starts_with("PASS heavy-tail-checks cell 0 (workload.0.arrival.rate_per_s=16): "),
        "{}",
        out.text
    );
    assert!(
        lines[1].starts_with("PASS heavy-tail-checks cell 1 (workload.0.arrival.rate_per_s=32): "),
        "{}",
        out.text
    );
    assert_eq!(lines.len(), 3, "{}", out.text);

    // `routelab run`: exit 1 when a check fails, 0 when all hold; a bad check is exit 2.
    let dir = TempDir::new("run");
    for (file, code, word) in [
        ("heavy_tail.yaml", 0, "checks: 4 passed, 0 failed"),
        ("heavy_tail_regressed.yaml", 1, "checks: 1 passed, 3 failed"),
    ] {
        let out = routelab(&[
            "run".as_ref(),
            fixture(file).as_os_str(),
            "--out".as_ref(),
            dir.0.join(file).as_os_str(),
            "--quiet".as_ref(),
            "--no-plots".as_ref(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{file}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(word), "{file}: {stdout}");
    }
    let bad = root().join("tests/scenarios/invalid/check_unknown_label.yaml");
    let out = routelab(&["validate".as_ref(), bad.as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains("checks[1]: column 22: unknown policy label \"p2c\""), "{err}");
}
