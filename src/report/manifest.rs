//! `manifest.json`: what produced a result folder — crate version, scenario files and their
//! hashes, seeds, policies, run count. No timestamps or host names, so identical runs give
//! identical bytes.

use crate::scenario::Scenario;
use serde::Serialize;

#[derive(Serialize)]
struct Manifest<'a> {
    tool: &'static str,
    version: &'static str,
    runs: usize,
    scenarios: Vec<ScenarioEntry<'a>>,
}

#[derive(Serialize)]
struct ScenarioEntry<'a> {
    name: &'a str,
    file: &'a str,
    hash_fnv1a64: String,
    seed: u64,
    replications: Vec<u32>,
    policies: Vec<&'a str>,
    overrides: &'a [String],
}

/// The manifest for `scenarios` run with the given replication indices, `runs` runs in all.
pub fn manifest_json(scenarios: &[Scenario], replications: &[Vec<u32>], runs: usize) -> String {
    let m = Manifest {
        tool: "routelab",
        version: env!("CARGO_PKG_VERSION"),
        runs,
        scenarios: scenarios
            .iter()
            .zip(replications)
            .map(|(s, reps)| ScenarioEntry {
                name: &s.name,
                file: &s.file,
                hash_fnv1a64: format!("{:016x}", s.source_hash),
                seed: s.seed,
                replications: reps.clone(),
                policies: s.policies.iter().map(|p| p.label.as_str()).collect(),
                overrides: &s.overrides,
            })
            .collect(),
    };
    let mut s = serde_json::to_string_pretty(&m).unwrap_or_default();
    s.push('\n');
    s
}
