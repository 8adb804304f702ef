//! Experiments: scenario cells × policies × replications → a list of runs, executed in
//! parallel.
//!
//! Each run is independent and single-threaded; rayon spreads runs over threads and the
//! indexed `collect` returns results in plan order, which is the output order
//! `(file, cell, policy, autoscaler, replication)`. So output is identical for any thread count. A plan
//! can be cut into shards (`--shard I/N`: every N-th run starting at I) whose results merge
//! back into exactly the rows of the whole plan. A failed run becomes a [`RunError`] with its
//! seed and a command that reproduces it; the other runs' rows are kept.

use crate::engine;
use crate::error::RunError;
use crate::report::{artifacts, RunKey, RunRow};
use crate::scenario::Scenario;
use rayon::prelude::*;
use std::collections::BTreeMap;

/// One run to execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSpec {
    /// Index into the plan's scenarios (one per file and sweep cell).
    pub scenario: usize,
    /// Index into that scenario's policies.
    pub policy: usize,
    /// Index into that scenario's autoscalers.
    pub autoscaler: usize,
    /// Replication index.
    pub replication: u32,
}

/// Scenario cells and the runs to execute, in output order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Validated scenarios, one per (file, sweep cell), in file then cell order.
    pub scenarios: Vec<Scenario>,
    /// Runs in (file, cell, policy, autoscaler, replication) order.
    pub runs: Vec<RunSpec>,
    /// Replication indices run per scenario.
    pub replications: Vec<Vec<u32>>,
}

/// A shard of a plan: `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard.
    pub index: u32,
    /// Shards in all.
    pub count: u32,
}

/// Expands scenario cells into runs; `only_replication` restricts every scenario to one index.
pub fn plan(scenarios: Vec<Scenario>, only_replication: Option<u32>) -> Plan {
    let mut runs = Vec::new();
    let mut replications = Vec::new();
    for (si, s) in scenarios.iter().enumerate() {
        let reps: Vec<u32> = match only_replication {
            Some(r) => vec![r],
            None => (0..s.replications).collect(),
        };
        for pi in 0..s.policies.len() {
            for ai in 0..s.autoscalers.len() {
                for &r in &reps {
                    runs.push(RunSpec { scenario: si, policy: pi, autoscaler: ai, replication: r });
                }
            }
        }
        replications.push(reps);
    }
    Plan { scenarios, runs, replications }
}

impl Plan {
    /// The key a run's row will carry.
    pub fn key(&self, spec: RunSpec) -> RunKey {
        let sc = &self.scenarios[spec.scenario];
        RunKey {
            scenario: sc.name.clone(),
            cell: sc.cell,
            params: sc.params.clone(),
            policy: sc.policies[spec.policy].label.clone(),
            autoscaler: sc.autoscalers[spec.autoscaler].label.clone(),
            replication: spec.replication,
        }
    }

    /// Position of every run key in plan order (to sort rows gathered from elsewhere).
    pub fn positions(&self) -> BTreeMap<RunKey, usize> {
        self.runs.iter().enumerate().map(|(i, &s)| (self.key(s), i)).collect()
    }

    /// Keeps only the runs of `shard` (every `count`-th run, starting at `index`).
    pub fn keep_shard(&mut self, shard: Shard) {
        let all = std::mem::take(&mut self.runs);
        self.runs = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i as u64 % u64::from(shard.count) == u64::from(shard.index))
            .map(|(_, r)| r)
            .collect();
    }
}

/// A finished run: its row and its per-run detail records.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The `runs.csv` row.
    pub row: RunRow,
    /// `quantiles.csv` records.
    pub quantiles: Vec<Vec<String>>,
    /// `timeseries.csv` records.
    pub timeseries: Vec<Vec<String>>,
    /// `routing.csv` records (requests routed per replica).
    pub routing: Vec<Vec<String>>,
    /// `decisions.csv` records (`--trace-decisions`).
    pub decisions: Vec<Vec<String>>,
    /// `health.csv` records.
    pub health: Vec<Vec<String>>,
    /// `faults.csv` records.
    pub faults: Vec<Vec<String>>,
}

/// Executes one run.
pub fn execute_one(plan: &Plan, spec: RunSpec) -> Result<RunResult, RunError> {
    let sc = &plan.scenarios[spec.scenario];
    let policy = &sc.policies[spec.policy];
    let autoscaler = &sc.autoscalers[spec.autoscaler];
    match engine::run_scaled(sc, policy, autoscaler, spec.replication) {
        Ok(out) => {
            let key = plan.key(spec);
            Ok(RunResult {
                quantiles: artifacts::quantile_records(&key, &out),
                timeseries: artifacts::timeseries_records(&key, &out),
                routing: artifacts::routing_records(&key, &out),
                decisions: artifacts::decision_records(&key, &out),
                health: artifacts::health_records(&key, &out),
                faults: artifacts::fault_records(&key, &out),
                row: RunRow::from_output(key, &out),
            })
        }
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
    for kv in sc.params.split(';').filter(|p| !p.is_empty()) {
        cmd.push_str(&format!(" --set '{kv}'"));
    }
    for kv in &sc.overrides {
        cmd.push_str(&format!(" --set '{kv}'"));
    }
    cmd
}

/// Executes `runs` of `plan` on `threads` threads (0 = one per core), calling `progress`
/// after each run with its simulated seconds. Results come back in the order of `runs`.
pub fn execute_runs(
    plan: &Plan,
    runs: &[RunSpec],
    threads: usize,
    progress: &(dyn Fn(f64) + Sync),
) -> Vec<Result<RunResult, RunError>> {
    let one = |&s: &RunSpec| {
        let r = execute_one(plan, s);
        progress(r.as_ref().ok().and_then(|x| x.row.get("window_s")).unwrap_or(0.0));
        r
    };
    let run_all = || runs.par_iter().map(one).collect::<Vec<_>>();
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(run_all),
        Err(_) => runs.iter().map(one).collect(),
    }
}

/// Executes every run of `plan` on `threads` threads (0 = one per core).
pub fn execute(plan: &Plan, threads: usize) -> Vec<Result<RunRow, RunError>> {
    execute_runs(plan, &plan.runs, threads, &|_| {}).into_iter().map(|r| r.map(|x| x.row)).collect()
}
