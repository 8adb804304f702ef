//! Bad input and the command line.
//!
//! Every fixture in `tests/scenarios/invalid/` must fail to load with a one-line error that
//! starts with the file, names the field path (or line:column for YAML-level errors) and
//! contains the substring its `# expect:` header gives. The CLI tests run the real binary:
//! bad input exits 2 with one `error:` line and never panics (exit 101) nor touches results
//! already written; `validate`, `list policies`, `--help` and `run` (with and without a file)
//! work. Runs are kept tiny so the module takes a few seconds.

use routelab::policy::routing::ROUTERS;
use routelab::scenario::{self, LoadOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The crate root: where `scenarios/` and `tests/scenarios/` live.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn invalid_dir() -> PathBuf {
    root().join("tests/scenarios/invalid")
}

/// The `.yaml` files directly in `dir`, sorted; empty if `dir` does not exist.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("read_dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// What a fixture's header comments promise about its error.
#[derive(Debug, Default)]
struct Expect {
    /// Substrings the message must contain (`# expect: ...`, one or more).
    substrings: Vec<String>,
    /// `# expect-location: yes`: the message carries `:line:col` after the file.
    location: bool,
    /// `# expect-whole-file: yes`: an error about the whole file (no path, no location).
    whole_file: bool,
}

fn expectations(text: &str) -> Expect {
    let mut e = Expect::default();
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        if let Some(s) = line.strip_prefix("# expect: ") {
            e.substrings.push(s.to_string());
        } else if line.trim() == "# expect-location: yes" {
            e.location = true;
        } else if line.trim() == "# expect-whole-file: yes" {
            e.whole_file = true;
        }
    }
    e
}

/// Whether `rest` starts with `:LINE:COL: ` (both 1-based numbers).
fn starts_with_location(rest: &str) -> bool {
    let mut parts = rest.splitn(4, ':');
    let empty = parts.next() == Some("");
    let number = |p: Option<&str>| {
        p.is_some_and(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) && s != "0")
    };
    empty && number(parts.next()) && number(parts.next()) && parts.next().is_some()
}

#[test]
fn invalid_fixtures_fail_with_one_line_naming_the_field() {
    let files = yaml_files(&invalid_dir());
    assert!(files.len() >= 30, "expected the invalid fixtures, found {}", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().expect("file name").to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).expect("fixture readable");
        assert!(text.starts_with("# expect: "), "{name}: first line must be `# expect: ...`");
        let expect = expectations(&text);
        let loaded = std::panic::catch_unwind(|| scenario::load(path, &LoadOptions::default()));
        let err = match loaded {
            Err(_) => {
                failures.push(format!("{name}: load panicked"));
                continue;
            }
            Ok(Ok(_)) => {
                failures.push(format!("{name}: loaded without error"));
                continue;
            }
            Ok(Err(e)) => e,
        };
        let msg = err.to_string();
        let file = path.display().to_string();
        let mut problems = Vec::new();
        if msg.contains(['\n', '\r']) {
            problems.push("is not one line".to_string());
        }
        if !msg.starts_with(&file) {
            problems.push(format!("does not start with the file path {file}"));
        }
        for s in &expect.substrings {
            if !msg.contains(s.as_str()) {
                problems.push(format!("does not contain {s:?}"));
            }
        }
        let rest = msg.strip_prefix(&file).unwrap_or("");
        if expect.location && (!starts_with_location(rest) || err.location.is_none()) {
            problems.push("has no :line:col after the file".to_string());
        }
        if !expect.whole_file && err.location.is_none() && err.path.is_empty() {
            problems.push("names neither a field path nor a line:col".to_string());
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {msg:?} {}", problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} fixture(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn bad_set_overrides_name_the_flag_or_the_field() {
    let quickstart = root().join("scenarios/quickstart.yaml");
    let file = quickstart.display().to_string();
    let cases: &[(&str, &str)] = &[
        ("noequals", "<command line>: --set noequals: expected KEY=VALUE"),
        ("=3", "empty path component"),
        ("workload..class=x", "empty path component"),
        ("workload.7.class=x", "`workload` has no entry 7"),
        ("workload.first.class=x", "`first` is not an index"),
        ("name.sub=1", "`name` is a single value, not a mapping, so it has no key `sub`"),
        ("name=[", "VALUE is not valid YAML"),
        ("workload.0.arrival.rate_per_s=fast", "workload[0].arrival.rate_per_s: invalid type"),
        ("workload.0.arrival.rate_per_s=-3", "workload[0].arrival.rate_per_s = -3: must be > 0"),
        ("workload.0.arrival.rate_per_sec=3", "workload[0].arrival: unknown field `rate_per_sec`"),
        ("cluster.pools.0.replicas=0", "cluster.pools[0].replicas = 0"),
        ("cluster.pools.0.replicas=-1", "cluster.pools[0].replicas: invalid value"),
        ("policies=[nope]", "policies[0]: unknown policy \"nope\"; valid: "),
        ("horizon.max_requests=x", "horizon.max_requests: invalid type"),
    ];
    for (kv, want) in cases {
        let opts = LoadOptions { set: vec![(*kv).to_string()] };
        let err = scenario::load(&quickstart, &opts).expect_err(kv);
        let msg = err.to_string();
        assert!(!msg.contains('\n'), "--set {kv}: not one line: {msg:?}");
        assert!(msg.contains(want), "--set {kv}: {msg:?} should contain {want:?}");
        if msg.starts_with(&file) {
            // Line:column would point into the rewritten tree, not the file.
            assert!(err.location.is_none(), "--set {kv}: {msg:?} has a location");
            assert!(!err.path.is_empty(), "--set {kv}: {msg:?} names no field");
        } else {
            assert!(msg.starts_with("<command line>: --set "), "--set {kv}: {msg:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The binary.

use crate::common::TempDir;

/// A scenario that runs in milliseconds: 2 policies × 2 replications of 2000 requests.
const TINY: &str = "\
name: tiny
seed: 7
replications: 2
horizon: { max_requests: 2000 }
warmup: { requests: 100 }
workload:
  - class: a
    arrival: { process: poisson, rate_per_s: 20 }
    service_s: { dist: exponential, mean: 0.05 }
    timeout_s: 5
cluster:
  pools:
    - { name: p, kind: queue, replicas: 2, slots: 1 }
policies: [round_robin, least_requests]
";

/// Writes [`TINY`] into `dir` and returns its path.
fn write_tiny(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.yaml");
    std::fs::write(&path, TINY).expect("write scenario");
    path
}

/// Runs the binary in `cwd`; never lets a panic (exit 101) or a signal pass.
fn routelab<S: AsRef<std::ffi::OsStr>>(cwd: &Path, args: &[S]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_routelab"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("spawn routelab");
    let code = out.status.code();
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy().to_string()).collect();
    assert!(
        code.is_some() && code != Some(101),
        "routelab {shown:?} panicked or was killed ({:?}); stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// Asserts exit code 2, nothing on stdout, and exactly one stderr line starting `error:`;
/// returns that line.
fn assert_bad_input(o: &Output, what: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{what}: exit code; stderr: {err}");
    assert!(o.stdout.is_empty(), "{what}: stdout not empty: {}", stdout(o));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: stderr is not one line: {err:?}");
    assert!(lines[0].starts_with("error: "), "{what}: {err:?}");
    lines[0].to_string()
}

#[test]
fn cli_bad_input_exits_2_with_one_error_line() {
    let tmp = TempDir::new("bad");
    let tiny = write_tiny(tmp.path());
    let tiny = tiny.to_str().expect("utf-8 path");
    let out = tmp.path().join("out");
    let out = out.to_str().expect("utf-8 path");
    let negative_rate = invalid_dir().join("negative_rate.yaml");
    let negative_rate = negative_rate.to_str().expect("utf-8 path");
    let names: Vec<&str> = ROUTERS.iter().map(|e| e.name).collect();
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (
            vec!["run", "missing.yaml", "--out", out],
            vec!["missing.yaml".into(), "no such file".into()],
        ),
        (vec!["validate", "missing.yaml"], vec!["missing.yaml".into()]),
        (
            vec!["run", tiny, "--policy", "nope", "--out", out],
            vec!["unknown policy \"nope\"".into(), format!("valid: {}", names.join(", "))],
        ),
        (vec!["run", tiny, "--set", "noequals", "--out", out], vec!["--set noequals".into()]),
        (
            vec!["run", tiny, "--set", "workload.3.class=x", "--out", out],
            vec!["has no entry 3".into()],
        ),
        (
            vec!["run", tiny, "--set", "workload.0.arrival.rate_per_s=fast", "--out", out],
            vec!["workload[0].arrival.rate_per_s".into()],
        ),
        (vec!["run", tiny, "--replications", "0", "--out", out], vec!["--replications".into()]),
        (
            vec!["run", negative_rate, "--out", out],
            vec!["negative_rate.yaml:".into(), ": workload[0].arrival.rate_per_s = ".into()],
        ),
    ];
    for (args, wants) in &cases {
        let o = routelab(tmp.path(), args);
        let line = assert_bad_input(&o, &format!("{args:?}"));
        for want in wants {
            assert!(line.contains(want.as_str()), "{args:?}: {line:?} should contain {want:?}");
        }
    }
    assert!(!Path::new(out).exists(), "bad input created the output directory");
}

#[test]
fn cli_validate_rejects_every_invalid_fixture() {
    for path in yaml_files(&invalid_dir()) {
        let o = routelab(&root(), &[Path::new("validate"), &path]);
        let line = assert_bad_input(&o, &path.display().to_string());
        assert!(line.contains(&path.display().to_string()), "{line:?}");
    }
}

#[test]
fn cli_validate_accepts_the_bundled_scenarios() {
    let mut files = yaml_files(&root().join("scenarios"));
    files.extend(yaml_files(&root().join("scenarios/validation")));
    assert!(!files.is_empty(), "no bundled scenarios found");
    let mut args = vec![PathBuf::from("validate")];
    args.extend(files.iter().cloned());
    let o = routelab(&root(), &args);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let text = stdout(&o);
    for f in &files {
        assert!(text.contains(&format!("{}: ok", f.display())), "{f:?} not reported ok:\n{text}");
    }
}

#[test]
fn cli_lists_every_policy_with_its_parameters() {
    let o = routelab(&root(), &["list", "policies"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let text = stdout(&o);
    assert!(ROUTERS.len() >= 6, "policies missing from the registry");
    for e in ROUTERS {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(e.name))
            .unwrap_or_else(|| panic!("{} not listed:\n{text}", e.name));
        assert!(line.contains(e.summary), "{}: summary missing in {line:?}", e.name);
        for p in e.params {
            let listed = text.lines().any(|l| {
                let mut w = l.split_whitespace();
                w.next() == Some(p.name) && l.contains(p.default)
            });
            assert!(listed, "{}.{} (default {}) not listed:\n{text}", e.name, p.name, p.default);
        }
    }
}

#[test]
fn cli_help_and_version_work() {
    for args in [
        &["--help"][..],
        &["run", "--help"],
        &["validate", "--help"],
        &["list", "--help"],
        &["help", "run"],
    ] {
        let o = routelab(&root(), args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Usage"), "{args:?}: no usage:\n{}", stdout(&o));
    }
    let run_help = stdout(&routelab(&root(), &["run", "--help"]));
    for flag in ["--out", "--set", "--policy", "--replications", "--seed", "--threads"] {
        assert!(run_help.contains(flag), "run --help does not mention {flag}");
    }
    let o = routelab(&root(), &["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains(env!("CARGO_PKG_VERSION")), "{}", stdout(&o));
}

const REQUIRED_RUN_COLUMNS: &[&str] = &[
    "scenario",
    "cell",
    "policy",
    "replication",
    "seed",
    "arrivals",
    "completed",
    "timed_out",
    "rejected",
    "ttft_ms_mean",
    "ttft_ms_p50",
    "ttft_ms_p95",
    "ttft_ms_p99",
    "e2e_ms_mean",
    "e2e_ms_p95",
    "e2e_ms_p99",
    "queue_wait_ms_mean",
    "queue_wait_ms_p95",
    "throughput_rps",
    "timeout_rate",
];

const RESULT_FILES: &[&str] = &["runs.csv", "summary.csv", "summary.md", "manifest.json"];

/// Every file under `dir` (recursively) with its bytes, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).expect("under base").to_path_buf();
                out.insert(rel, std::fs::read(&p).expect("read result file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The header of a CSV file and its data rows, split on commas (our values have none).
fn csv(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::str::from_utf8(bytes).expect("CSV is UTF-8");
    let mut lines = text.lines().map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>());
    let header = lines.next().expect("CSV has a header");
    (header, lines.collect())
}

#[test]
fn cli_run_writes_results_and_prints_the_summary() {
    let tmp = TempDir::new("run");
    let tiny = write_tiny(tmp.path());
    let out = tmp.path().join("out");
    let o = routelab(
        tmp.path(),
        &[Path::new("run"), &tiny, Path::new("--out"), &out, Path::new("--quiet")],
    );
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(o.stderr.is_empty(), "--quiet run wrote to stderr: {}", stderr(&o));
    let files = snapshot(&out);
    for f in RESULT_FILES {
        assert!(files.contains_key(Path::new(f)), "{f} not written; have {:?}", files.keys());
    }
    let md = String::from_utf8(files[Path::new("summary.md")].clone()).expect("UTF-8");
    assert_eq!(stdout(&o), md, "stdout is not the markdown summary");
    assert!(md.contains('|') && md.contains("round_robin") && md.contains("least_requests"));

    let (header, rows) = csv(&files[Path::new("runs.csv")]);
    let positions: Vec<usize> = REQUIRED_RUN_COLUMNS
        .iter()
        .map(|c| header.iter().position(|h| h == c).unwrap_or_else(|| panic!("runs.csv lacks {c}")))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "runs.csv column order: {header:?}");
    assert_eq!(rows.len(), 2 * 2, "2 policies x 2 replications");
    let col = |name: &str| header.iter().position(|h| h == name).expect("column");
    for r in &rows {
        assert_eq!(r.len(), header.len(), "ragged row {r:?}");
        assert_eq!(r[col("scenario")], "tiny");
        assert_eq!(r[col("arrivals")], "1900", "2000 arrivals minus 100 warm-up");
    }
    let (sheader, srows) = csv(&files[Path::new("summary.csv")]);
    assert!(sheader.iter().any(|h| h == "ttft_ms_p95"), "summary.csv header {sheader:?}");
    assert_eq!(srows.len(), 2, "one summary row per policy");
    let manifest: serde_json::Value =
        serde_json::from_slice(&files[Path::new("manifest.json")]).expect("manifest is JSON");
    assert_eq!(manifest["runs"], 4, "{manifest}");
}

#[test]
fn cli_run_without_a_file_runs_the_quickstart() {
    let small = ["--set", "horizon.max_requests=2000", "--set", "warmup.requests=100"];
    // From the crate root (scenarios/quickstart.yaml on disk) and from an empty directory
    // (the copy built into the binary).
    let here = TempDir::new("quickstart");
    for cwd in [root(), here.path().to_path_buf()] {
        let out = TempDir::new("quickstart-out");
        let mut args: Vec<&str> = vec!["run", "--replications", "1", "--quiet", "--out"];
        args.push(out.path().to_str().expect("utf-8 path"));
        args.extend(small);
        let o = routelab(&cwd, &args);
        assert_eq!(o.status.code(), Some(0), "in {cwd:?}: {}", stderr(&o));
        let (header, rows) = csv(&std::fs::read(out.path().join("runs.csv")).expect("runs.csv"));
        let scenario = header.iter().position(|h| h == "scenario").expect("scenario column");
        assert!(!rows.is_empty(), "in {cwd:?}: no rows");
        assert!(rows.iter().all(|r| r[scenario] == "quickstart"), "in {cwd:?}: {rows:?}");
        assert!(stdout(&o).contains("quickstart"), "in {cwd:?}: {}", stdout(&o));
    }
}

#[test]
fn cli_bad_input_keeps_results_already_written() {
    let tmp = TempDir::new("keep");
    let tiny = write_tiny(tmp.path());
    let tiny = tiny.to_str().expect("utf-8 path");
    let out = tmp.path().join("out");
    let out = out.to_str().expect("utf-8 path");
    let o = routelab(tmp.path(), &["run", tiny, "--out", out, "--quiet"]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let before = snapshot(Path::new(out));
    for f in RESULT_FILES {
        assert!(before.contains_key(Path::new(f)), "{f} not written");
    }
    let invalid = invalid_dir().join("zero_replicas.yaml");
    let invalid = invalid.to_str().expect("utf-8 path");
    let bad: &[&[&str]] = &[
        &["run", tiny, "--out", out, "--set", "workload.0.arrival.rate_per_s"],
        &["run", tiny, "--out", out, "--set", "workload.5.class=x"],
        &["run", tiny, "--out", out, "--set", "workload.0.arrival.rate_per_s=-1"],
        &["run", tiny, "--out", out, "--policy", "nope"],
        &["run", tiny, "--out", out, "--replications", "0"],
        &["run", tiny, invalid, "--out", out],
        &["run", tiny, "missing.yaml", "--out", out],
    ];
    for args in bad {
        let o = routelab(tmp.path(), args);
        assert_bad_input(&o, &format!("{args:?}"));
        let after = snapshot(Path::new(out));
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>(),
            "{args:?} changed the set of files"
        );
        for (f, bytes) in &before {
            assert!(after[f] == *bytes, "{args:?} changed {f:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// llm pools and LLM workload classes.

use routelab::cluster::catalog::{self, Catalog, Dtype, KvCacheConfig};
use routelab::cluster::latency::{LatencyModel, Roofline, RooflineParams};
use routelab::scenario::Scenario;
use routelab::spec::llm::{EngineConfig, LlmPool, SchedulingPolicy};
use routelab::spec::PoolKind;
use routelab::time::SimDuration;
use routelab::workload::trace::TraceFormat;

/// An llm scenario: `classes` and `pools` are the YAML list items (indented by 2).
fn llm_yaml(classes: &str, pools: &str) -> String {
    format!(
        "name: llm\nhorizon: {{ max_requests: 1000 }}\nworkload:\n{classes}cluster:\n  pools:\n\
         {pools}policies: [round_robin]\n"
    )
}

const CHAT: &str = "  - class: chat
    arrival: { process: poisson, rate_per_s: 10 }
    prompt_tokens: { dist: lognormal, mean: 1000, cv: 1 }
    output_tokens: { dist: constant, value: 100 }
";

fn load_llm(classes: &str, pools: &str) -> Scenario {
    let yaml = llm_yaml(classes, pools);
    scenario::load_str(&yaml, "<llm>", &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn load_llm_err(classes: &str, pools: &str) -> String {
    let yaml = llm_yaml(classes, pools);
    let e = scenario::load_str(&yaml, "<llm>", &LoadOptions::default())
        .expect_err("scenario should be rejected");
    let msg = e.to_string();
    assert!(!msg.contains('\n') && msg.starts_with("<llm>"), "{msg:?}");
    msg
}

fn llm_pool(s: &Scenario, i: usize) -> &LlmPool {
    match &s.pools[i].kind {
        PoolKind::Llm(l) => l,
        other => panic!("pool {i} is not llm: {other:?}"),
    }
}

#[test]
fn llm_pool_loads_with_vllm_defaults_and_catalog_sizing() {
    let s = load_llm(
        CHAT,
        "    - { name: h100, kind: llm, replicas: 4, gpu: h100, model: llama-3-8b }\n",
    );
    assert_eq!((s.pools[0].replicas, s.pools[0].weight), (4, 1));
    let l = llm_pool(&s, 0);
    assert_eq!(l.gpu, "H100-SXM5-80GB");
    assert_eq!(l.tp, 1);
    assert_eq!(l.engine, EngineConfig::default());
    assert_eq!(l.engine.max_num_seqs, 256);
    assert_eq!(l.engine.max_num_batched_tokens, 8192);
    assert_eq!(l.engine.block_size, 16);
    assert!(l.engine.enable_prefix_caching);
    assert_eq!(l.load_bytes_per_s, 2e9);
    assert_eq!(l.load_init, SimDuration::from_secs(20));
    assert_eq!(l.models.len(), 1);
    let m = &l.models[0];
    assert_eq!(m.name, "Llama-3-8B");
    assert_eq!(m.max_model_len, 8192);
    // bf16 weights and cache, utilisation 0.9: the catalog's own sizing (25,650 blocks by hand).
    let cat = Catalog::builtin();
    let (gpu, model) = (cat.gpu("h100").unwrap(), cat.model("llama-3-8b").unwrap());
    let want = catalog::kv_capacity_blocks(gpu, model, &KvCacheConfig::new(1)).unwrap();
    assert!(m.kv_capacity_blocks > 0);
    assert_eq!(u64::from(m.kv_capacity_blocks), want);
    assert!((25_500..=25_800).contains(&m.kv_capacity_blocks), "{}", m.kv_capacity_blocks);
    assert_eq!(m.weight_bytes, model.weight_bytes(Dtype::Bf16));
    let roofline =
        Roofline::new(gpu, model, 1, Dtype::Bf16, Dtype::Bf16, &RooflineParams::default()).unwrap();
    assert_eq!(m.latency, LatencyModel::Roofline(roofline));
    // The class asks for the only model served; tenant defaults to the class name.
    let c = &s.classes[0];
    assert_eq!(c.model.as_deref(), Some("Llama-3-8B"));
    assert_eq!(c.tenant, "chat");
    assert_eq!((c.slo.ttft, c.slo.tpot), (None, None));
    assert!(c.service_s.is_none() && c.trace.is_none() && c.session.is_none());
}

#[test]
fn llm_pool_keys_override_the_defaults() {
    let pool = "    - name: big
      kind: llm
      replicas: 2
      weight: 3
      gpu: H100-SXM5-80GB
      tp: 4
      models: [llama-3-70b, Qwen2.5-72B]
      dtype: fp8
      kv_dtype: fp8
      gpu_memory_utilization: 0.85
      engine:
        max_num_seqs: 128
        max_num_batched_tokens: 2048
        block_size: 32
        long_prefill_token_threshold: 512
        enable_prefix_caching: false
        max_model_len: 4096
        scheduling_policy: priority
      latency: { model: roofline, eta_memory: 0.8, overhead_s: 0.004 }
      cold_start: { load_gb_per_s: 10, init_s: 5 }
";
    let class = format!("{CHAT}    model: qwen2.5-72b\n");
    let s = load_llm(&class, pool);
    assert_eq!(s.pools[0].weight, 3);
    let l = llm_pool(&s, 0);
    assert_eq!(l.tp, 4);
    assert_eq!(
        l.engine,
        EngineConfig {
            max_num_seqs: 128,
            max_num_batched_tokens: 2048,
            block_size: 32,
            long_prefill_token_threshold: 512,
            enable_prefix_caching: false,
            scheduling_policy: SchedulingPolicy::Priority,
        }
    );
    assert_eq!(l.load_bytes_per_s, 10e9);
    assert_eq!(l.load_init, SimDuration::from_secs(5));
    let names: Vec<&str> = l.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["Llama-3-70B", "Qwen2.5-72B"]);
    let cat = Catalog::builtin();
    let gpu = cat.gpu("h100").unwrap();
    let params = RooflineParams { eta_memory: 0.8, overhead_s: 0.004, ..RooflineParams::default() };
    for m in &l.models {
        let model = cat.model(&m.name).unwrap();
        assert_eq!(m.max_model_len, 4096);
        assert_eq!(m.weight_bytes, model.weight_bytes(Dtype::Fp8));
        let cfg = KvCacheConfig {
            weight_dtype: Dtype::Fp8,
            kv_dtype: Dtype::Fp8,
            gpu_memory_utilization: 0.85,
            block_size: 32,
            ..KvCacheConfig::new(4)
        };
        let blocks = catalog::kv_capacity_blocks(gpu, model, &cfg).unwrap();
        assert_eq!(u64::from(m.kv_capacity_blocks), blocks, "{}", m.name);
        let r = Roofline::new(gpu, model, 4, Dtype::Fp8, Dtype::Fp8, &params).unwrap();
        assert_eq!(m.latency, LatencyModel::Roofline(r), "{}", m.name);
    }
    // Any catalog name of a served model resolves to the canonical one.
    assert_eq!(s.classes[0].model.as_deref(), Some("Qwen2.5-72B"));
}

#[test]
fn llm_pool_linear_latency_and_pinned_kv_capacity() {
    let pool = "    - name: l4
      kind: llm
      replicas: 1
      gpu: l4
      model: llama-3.2-1b
      engine: { num_gpu_blocks_override: 100 }
      latency:
        model: linear
        beta0_s: 0.005
        beta1_s_per_prefill_token: 1.0e-4
        beta2_s_per_decode_token: 2.0e-4
";
    let s = load_llm(CHAT, pool);
    let m = &llm_pool(&s, 0).models[0];
    assert_eq!(m.kv_capacity_blocks, 100, "num_gpu_blocks_override pins the capacity");
    assert_eq!(m.latency, LatencyModel::linear(0.005, 1e-4, 2e-4, 0.0).unwrap());
}

#[test]
fn llm_dtype_defaults_follow_the_model_and_the_gpu() {
    // Native bf16 on a GPU without bf16 runs in fp16, as vLLM's `dtype: auto` does.
    let s = load_llm(
        CHAT,
        "    - { name: t4, kind: llm, replicas: 1, gpu: t4, model: llama-3.2-1b }\n",
    );
    let cat = Catalog::builtin();
    let (gpu, model) = (cat.gpu("t4").unwrap(), cat.model("llama-3.2-1b").unwrap());
    let r = Roofline::new(gpu, model, 1, Dtype::Fp16, Dtype::Fp16, &RooflineParams::default());
    assert_eq!(llm_pool(&s, 0).models[0].latency, LatencyModel::Roofline(r.unwrap()));
    // Asked for explicitly, bf16 on a T4 is an error naming what works.
    let msg = load_llm_err(
        CHAT,
        "    - { name: t4, kind: llm, replicas: 1, gpu: t4, model: llama-3.2-1b, dtype: bf16 }\n",
    );
    assert!(
        msg.contains("cluster.pools[0].dtype: GPU `T4` has no bf16 support; use fp16"),
        "{msg}"
    );
}

#[test]
fn custom_gpus_and_models_join_the_catalog() {
    let yaml = "\
name: custom
horizon: { max_requests: 1000 }
gpus:
  - { name: my-gpu, memory_gb: 48, mem_bw_gb_per_s: 1000, bf16_dense_tflops: 200 }
models:
  - { name: tiny, layers: 2, hidden: 256, ffn_intermediate: 1024, heads: 4, kv_heads: 2,
      head_dim: 64, vocab: 1000, max_context: 2048, attention: gqa }
workload:
  - class: a
    arrival: { process: poisson, rate_per_s: 10 }
    prompt_tokens: { dist: constant, value: 100 }
    output_tokens: { dist: constant, value: 10 }
cluster:
  pools:
    - { name: p, kind: llm, replicas: 1, gpu: MY-GPU, model: tiny }
policies: [round_robin]
";
    let s = scenario::load_str(yaml, "<custom>", &LoadOptions::default()).unwrap();
    let l = llm_pool(&s, 0);
    assert_eq!(l.gpu, "my-gpu");
    assert_eq!((l.models[0].name.as_str(), l.models[0].max_model_len), ("tiny", 2048));
    assert!(l.models[0].kv_capacity_blocks > 0);
    // A custom entry may not reuse a built-in name; the error names the entry.
    let dup = yaml.replace("name: my-gpu", "name: h100").replace("gpu: MY-GPU", "gpu: h100");
    let e = scenario::load_str(&dup, "<custom>", &LoadOptions::default()).unwrap_err();
    assert_eq!(e.path, "gpus[0].name", "{e}");
    assert!(e.message.contains("defined twice"), "{e}");
}

#[test]
fn llm_class_keys_are_validated_into_the_class_spec() {
    let class = "  - class: chat
    arrival: { process: poisson, rate_per_s: 2 }
    model: Llama-3.1-8B
    prompt_tokens: { dist: lognormal, mean: 200, cv: 1 }
    output_tokens: { dist: pareto, alpha: 1.8, min: 16, max: 4096 }
    max_tokens: 1024
    prefix: { groups: 50, group_tokens: 800 }
    session:
      turns: { dist: constant, value: 4 }
      think_time_s: { dist: exponential, mean: 20 }
    tenant: acme
    slo: { ttft_ms: 2000, tpot_ms: 100 }
";
    let pools = "    - { name: a, kind: llm, replicas: 1, gpu: h100, model: llama-3-8b, engine: { max_model_len: 6000 } }
    - { name: b, kind: llm, replicas: 1, gpu: a100, model: llama-3-8b }
";
    let s = load_llm(class, pools);
    let c = &s.classes[0];
    assert_eq!(c.model.as_deref(), Some("Llama-3-8B"));
    assert_eq!(c.max_tokens, Some(1024));
    let p = c.prefix.expect("prefix");
    assert_eq!((p.groups, p.group_tokens, p.zipf_s), (50, 800, 1.0));
    let session = c.session.as_ref().expect("session");
    assert_eq!(session.max_context_tokens, 6000, "the smallest max_model_len serving the model");
    assert_eq!(session.turns.quantile(0.5), 4.0);
    assert_eq!(c.tenant, "acme");
    assert_eq!(c.slo.ttft, Some(SimDuration::from_secs(2)));
    assert_eq!(c.slo.tpot, Some(SimDuration::from_secs_f64(0.1)));
    // An explicit context cap wins; in a queue cluster the default is unbounded.
    let capped =
        class.replace("      think_time_s:", "      max_context_tokens: 3000\n      think_time_s:");
    let s = load_llm(&capped, pools);
    assert_eq!(s.classes[0].session.as_ref().unwrap().max_context_tokens, 3000);
    let queue = format!(
        "name: q\nhorizon: {{ max_requests: 10 }}\nworkload:\n{}    service_s: {{ dist: constant, value: 1 }}\n\
         cluster:\n  pools:\n    - {{ name: q, kind: queue, replicas: 1 }}\npolicies: [random]\n",
        class.replace("    model: Llama-3.1-8B\n", "")
    );
    let s = scenario::load_str(&queue, "<q>", &LoadOptions::default()).unwrap();
    assert_eq!(s.classes[0].model, None);
    assert_eq!(s.classes[0].session.as_ref().unwrap().max_context_tokens, u32::MAX);
}

#[test]
fn trace_classes_resolve_their_file_against_the_scenario() {
    let dir = TempDir::new("trace");
    std::fs::create_dir_all(dir.path().join("traces")).unwrap();
    dir.file(
        "traces/t.jsonl",
        b"{\"timestamp\": 0, \"input_length\": 10, \"output_length\": 5, \"hash_ids\": [1]}\n\
          {\"timestamp\": 2000, \"input_length\": 10, \"output_length\": 5, \"hash_ids\": [1]}\n",
    );
    let yaml = llm_yaml(
        "  - class: replay\n    trace: { path: traces/t.jsonl, format: mooncake, time_scale: 2, start_s: 1, duration_s: 60 }\n",
        "    - { name: p, kind: llm, replicas: 1, gpu: h100, model: llama-3-8b }\n",
    );
    let path = dir.file("s.yaml", yaml.as_bytes());
    let s = scenario::load(&path, &LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let c = &s.classes[0];
    assert!(c.arrival.is_none() && c.prompt_tokens.is_none());
    assert_eq!(c.model.as_deref(), Some("Llama-3-8B"));
    let t = c.trace.as_ref().expect("trace");
    assert_eq!(t.path, dir.path().join("traces/t.jsonl"));
    assert_eq!(t.format, TraceFormat::Mooncake);
    assert_eq!((t.options.time_scale, t.options.start_s), (2.0, 1.0));
    assert_eq!(t.options.duration_s, Some(60.0));
    assert_eq!(t.options.salt, None);
    // A missing file names the field and where it was looked for.
    std::fs::remove_file(dir.path().join("traces/t.jsonl")).unwrap();
    let e = scenario::load(&path, &LoadOptions::default()).unwrap_err().to_string();
    let looked = dir.path().join("traces/t.jsonl").display().to_string();
    assert!(e.contains("workload[0].trace.path") && e.contains("file not found"), "{e}");
    assert!(e.contains(&looked), "{e}");
}

/// Mooncake rows for [`trace_windows_are_read_when_the_scenario_loads`].
fn mooncake_row(timestamp_ms: u64) -> String {
    format!(
        "{{\"timestamp\": {timestamp_ms}, \"input_length\": 40, \"output_length\": 3, \"hash_ids\": [1]}}\n"
    )
}

#[test]
fn trace_windows_are_read_when_the_scenario_loads() {
    let dir = TempDir::new("trace-scan");
    let good: String = [0, 1000, 2000].map(mooncake_row).concat();
    let bad_fourth = format!("{good}{{\"timestamp\": 3000, \"input_length\"\n");
    let yaml = |window: &str| {
        llm_yaml(
            &format!(
                "  - class: replay\n    trace: {{ path: t.jsonl, format: mooncake{window} }}\n"
            ),
            "    - { name: p, kind: llm, replicas: 1, gpu: h100, model: llama-3-8b }\n",
        )
    };
    let trace = dir.file("t.jsonl", bad_fourth.as_bytes());
    let shown = trace.display().to_string();
    let load = |window: &str| {
        let path = dir.file("s.yaml", yaml(window).as_bytes());
        scenario::load(&path, &LoadOptions::default()).map_err(|e| e.to_string())
    };
    // A malformed line inside the window is bad input naming the field and the trace's line.
    let e = load("").expect_err("malformed line 4");
    assert!(!e.contains('\n'), "{e:?}");
    assert!(e.contains("workload[0].trace.path = \"t.jsonl\": "), "{e}");
    assert!(e.contains(&format!("{shown}:4: not a Mooncake JSON record")), "{e}");
    // Reading stops at the first row past the window, here as in the run.
    load(", duration_s: 1.5").unwrap_or_else(|e| panic!("{e}"));
    load(", start_s: 0.5, duration_s: 1").unwrap_or_else(|e| panic!("{e}"));
    // A window without a request is refused.
    dir.file("t.jsonl", good.as_bytes());
    let e = load(", start_s: 2.5, duration_s: 10").expect_err("empty window");
    assert!(e.contains("no request in [start_s, start_s + duration_s) = [2.5 s, 12.5 s)"), "{e}");
    let e = load(", start_s: 3").expect_err("empty window to the end");
    assert!(e.contains("no request at or after start_s = 3 s"), "{e}");
    // The CLI reports it as bad input (exit 2, one line), for `run` as for `validate`.
    let out = dir.path().join("out");
    for fixture in ["trace_malformed_line.yaml", "trace_empty_window.yaml"] {
        let f = invalid_dir().join(fixture);
        let o = routelab(&root(), &[Path::new("run"), &f, Path::new("--out"), &out]);
        let line = assert_bad_input(&o, fixture);
        assert!(line.contains("workload[0].trace.path"), "{line}");
    }
    assert!(!out.exists(), "bad input created the output directory");
    // A trace that goes bad after validation fails the run with the trace's line, never
    // silently ends the class's arrivals.
    let s = load("").unwrap_or_else(|e| panic!("{e}"));
    dir.file("t.jsonl", bad_fourth.as_bytes());
    let e = routelab::engine::run(&s, &s.policies[0], 0).expect_err("the trace went bad");
    let e = e.to_string();
    assert!(e.contains("workload[0] (replay): trace read failed during the run"), "{e}");
    assert!(e.contains(&format!("{shown}:4: not a Mooncake JSON record")), "{e}");
    dir.file("t.jsonl", good.as_bytes());
    let ok = routelab::engine::run(&s, &s.policies[0], 0).expect("the good trace runs");
    assert_eq!(ok.recorder.all.completed, 3);
}

#[test]
fn llm_cross_rules_name_the_field() {
    let h100 = "    - { name: h100, kind: llm, replicas: 1, gpu: h100, model: llama-3-8b }\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            &CHAT.replace("    output_tokens: { dist: constant, value: 100 }\n", ""),
            h100,
            "workload[0].output_tokens: is missing: llm replicas need token counts",
        ),
        (
            CHAT,
            "    - { name: a, kind: llm, replicas: 1, gpu: h100, models: [llama-3-8b, mistral-7b] }\n",
            "workload[0].model: is missing: the cluster serves several models (Llama-3-8B, Mistral-7B-v0.1)",
        ),
        (
            &format!("{CHAT}    model: llama-2-7b\n"),
            h100,
            "workload[0].model = \"llama-2-7b\": no pool serves this model; served: Llama-3-8B",
        ),
        (
            CHAT,
            "    - { name: a, kind: llm, replicas: 1, gpu: h100, model: llama-3-8b, latency: { model: linear, beta0_s: 0, beta1_s_per_prefill_token: 0, beta2_s_per_decode_token: 0 } }\n",
            "cluster.pools[0].latency: has every coefficient 0",
        ),
        (
            CHAT,
            "    - { name: a, kind: llm, replicas: 1, gpu: h100, model: llama-3-8b, cold_start: { load_gb_per_s: 0 } }\n",
            "cluster.pools[0].cold_start.load_gb_per_s = 0: must be > 0",
        ),
        (
            &format!("{CHAT}    tenant: \"\"\n"),
            h100,
            "workload[0].tenant: is empty",
        ),
    ];
    for (classes, pools, want) in cases {
        let msg = load_llm_err(classes, pools);
        assert!(msg.contains(want), "{msg:?} should contain {want:?}");
    }
}

#[test]
fn llm_keys_work_with_set_and_sweeps() {
    let yaml = llm_yaml(
        CHAT,
        "    - { name: h100, kind: llm, replicas: 1, gpu: h100, model: llama-3-8b }\n",
    ) + "sweep: { cluster.pools.0.engine.max_num_seqs: [64, 128] }\n";
    let cells = scenario::load_cells_str(&yaml, "<llm>", &LoadOptions::default()).unwrap();
    let seqs: Vec<u32> = cells.iter().map(|s| llm_pool(s, 0).engine.max_num_seqs).collect();
    assert_eq!(seqs, [64, 128]);
    // Errors inside a pool's tagged `latency:` keep their exact path after overrides.
    let opts = LoadOptions {
        set: vec![
            "cluster.pools.0.latency.model=roofline".into(),
            "cluster.pools.0.latency.eta_mem=0.8".into(),
        ],
    };
    let e = scenario::load_str(&yaml, "<llm>", &opts).unwrap_err();
    assert_eq!(e.path, "cluster.pools[0].latency", "{e}");
    assert!(e.message.starts_with("unknown field `eta_mem`"), "{e}");
    let opts = LoadOptions { set: vec!["cluster.pools.0.engine.max_num_batched_tokens=8".into()] };
    let e = scenario::load_str(&yaml, "<llm>", &opts).unwrap_err();
    assert_eq!(e.path, "cluster.pools[0].engine.max_num_batched_tokens", "{e}");
}
