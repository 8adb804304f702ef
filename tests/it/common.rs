//! Helpers shared by the integration tests.

#![allow(dead_code)]

use routelab::experiment;
use routelab::report::RunRow;
use routelab::scenario::{self, LoadOptions, Scenario};

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
