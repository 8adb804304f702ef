//! Experiments: scenarios × policies × replications → a list of runs, executed in parallel.
//!
//! Each run is independent and single-threaded; rayon spreads runs over threads and the
//! indexed `collect` returns results in plan order, which is also the sorted key order
//! `(scenario, cell, policy, replication)`. So output is identical for any thread count.
//! A failed run becomes a [`RunError`] with its seed and a command that reproduces it; the
//! other runs' rows are kept.

use crate::engine;
use crate::error::RunError;
use crate::report::{RunKey, RunRow};
use crate::scenario::Scenario;
use rayon::prelude::*;

/// One run to execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSpec {
    /// Index into the plan's scenarios.
    pub scenario: usize,
    /// Sweep cell.
    pub cell: u32,
    /// Index into the scenario's policies.
    pub policy: usize,
    /// Replication index.
    pub replication: u32,
}

/// Scenarios and the runs to execute, in output order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Validated scenarios.
    pub scenarios: Vec<Scenario>,
    /// Runs in (scenario, cell, policy, replication) order.
    pub runs: Vec<RunSpec>,
    /// Replication indices run per scenario.
    pub replications: Vec<Vec<u32>>,
}

/// Expands scenarios into runs; `only_replication` restricts every scenario to one index.
pub fn plan(scenarios: Vec<Scenario>, only_replication: Option<u32>) -> Plan {
    let mut runs = Vec::new();
    let mut replications = Vec::new();
    for (si, s) in scenarios.iter().enumerate() {
        let reps: Vec<u32> = match only_replication {
            Some(r) => vec![r],
            None => (0..s.replications).collect(),
        };
        for pi in 0..s.policies.len() {
            for &r in &reps {
                runs.push(RunSpec { scenario: si, cell: 0, policy: pi, replication: r });
            }
        }
        replications.push(reps);
    }
    Plan { scenarios, runs, replications }
}

/// Executes one run.
pub fn execute_one(plan: &Plan, spec: RunSpec) -> Result<RunRow, RunError> {
    let sc = &plan.scenarios[spec.scenario];
    let policy = &sc.policies[spec.policy];
    let key = RunKey {
        scenario: sc.name.clone(),
        cell: spec.cell,
        policy: policy.label.clone(),
        autoscaler: "none".to_string(),
        replication: spec.replication,
    };
    match engine::run(sc, policy, spec.replication) {
        Ok(out) => Ok(RunRow::from_output(key, &out)),
        Err(failure) => Err(RunError {
            scenario: sc.name.clone(),
            policy: policy.label.clone(),
            replication: spec.replication,
            run_seed: crate::rng::run_seed(sc.seed, spec.replication),
            failure,
            repro: repro_command(sc, &policy.label, spec.replication),
        }),
    }
}

/// A command line that reruns exactly one run.
pub fn repro_command(sc: &Scenario, policy: &str, replication: u32) -> String {
    let mut cmd = format!(
        "routelab run {} --policy {} --seed {} --only-replication {}",
        sc.file, policy, sc.seed, replication
    );
    for kv in &sc.overrides {
        cmd.push_str(&format!(" --set '{kv}'"));
    }
    cmd
}

/// Executes every run of `plan` on `threads` threads (0 = one per core).
pub fn execute(plan: &Plan, threads: usize) -> Vec<Result<RunRow, RunError>> {
    let run_all = || plan.runs.par_iter().map(|&s| execute_one(plan, s)).collect::<Vec<_>>();
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(run_all),
        Err(_) => plan.runs.iter().map(|&s| execute_one(plan, s)).collect(),
    }
}
