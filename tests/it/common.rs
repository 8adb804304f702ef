//! Helpers shared by the integration tests.

#![allow(dead_code)]

use routelab::experiment;
use routelab::report::RunRow;
use routelab::scenario::{self, LoadOptions, Scenario};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Parses scenario YAML text (panics with the error on bad input: tests own their YAML).
pub fn scenario(yaml: &str) -> Scenario {
    scenario::load_str(yaml, "<test>", &LoadOptions::default())
        .unwrap_or_else(|e| panic!("test scenario invalid: {e}"))
}

/// Runs every policy × replication of `s` on `threads` threads and returns the rows in order.
pub fn run_rows(s: Scenario, threads: usize) -> Vec<RunRow> {
    let plan = experiment::plan(vec![s], None);
    experiment::execute(&plan, threads)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("run failed: {e}")))
        .collect()
}

/// The value of `metric` in `row`, which must be defined.
pub fn get(row: &RunRow, metric: &str) -> f64 {
    row.get(metric).unwrap_or_else(|| panic!("{metric} undefined in {:?}", row.key))
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory whose name carries `tag`, the process id and a counter.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("routelab-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `bytes` to `name` inside the directory and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Random choices for swarm tests, from a seeded stream.
pub struct Pick(pub routelab::rng::Stream);

impl Pick {
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.0.uniform_open() < p
    }
    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.0.uniform_open()
    }
    /// Log-uniform in `[lo, hi)`.
    pub fn log_range(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + (hi.ln() - lo.ln()) * self.0.uniform_open()).exp()
    }
    /// One element of `xs`.
    pub fn one<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}
