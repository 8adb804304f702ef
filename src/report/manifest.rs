//! `manifest.json`: what produced a result folder — crate version, one entry per scenario cell
//! (file, hash, seed, replications, policies, overrides), the total run count and, for a
//! shard, which shard. No timestamps or host names, so identical runs give identical bytes.
//! `merge` and `--resume` read it back to rebuild the plan's run order.

use super::RunKey;
use crate::experiment::Shard;
use crate::scenario::Scenario;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The manifest, as written and read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `routelab`.
    pub tool: String,
    /// Crate version that wrote it.
    pub version: String,
    /// Runs in the whole plan (all shards).
    pub runs: usize,
    /// `I/N` for a shard's folder; absent for a whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// One entry per scenario cell, in plan order.
    pub scenarios: Vec<ManifestEntry>,
}

/// One scenario cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Scenario name.
    pub name: String,
    /// File it came from.
    pub file: String,
    /// Sweep cell.
    pub cell: u32,
    /// Sweep values of the cell.
    pub params: String,
    /// FNV-1a 64 of the file text and overrides.
    pub hash_fnv1a64: String,
    /// Scenario seed.
    pub seed: u64,
    /// Replication indices run.
    pub replications: Vec<u32>,
    /// Policy labels in order.
    pub policies: Vec<String>,
    /// Autoscaler labels in order (`none` is the fixed-size run); absent in manifests from
    /// before autoscaling, which ran `none` only.
    #[serde(default = "fixed_only")]
    pub autoscalers: Vec<String>,
    /// `--set` overrides.
    pub overrides: Vec<String>,
    /// The scenario's `checks:` (so `merge` can evaluate them on the whole result).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
}

fn fixed_only() -> Vec<String> {
    vec!["none".into()]
}

impl Manifest {
    /// The manifest of a plan over `scenarios` with `replications` per scenario.
    pub fn new(
        scenarios: &[Scenario],
        replications: &[Vec<u32>],
        runs: usize,
        shard: Option<Shard>,
    ) -> Manifest {
        Manifest {
            tool: "routelab".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            runs,
            shard: shard.map(|s| format!("{}/{}", s.index, s.count)),
            scenarios: scenarios
                .iter()
                .zip(replications)
                .map(|(s, reps)| ManifestEntry {
                    name: s.name.clone(),
                    file: s.file.clone(),
                    cell: s.cell,
                    params: s.params.clone(),
                    hash_fnv1a64: format!("{:016x}", s.source_hash),
                    seed: s.seed,
                    replications: reps.clone(),
                    policies: s.policies.iter().map(|p| p.label.clone()).collect(),
                    autoscalers: s.autoscalers.iter().map(|a| a.label.clone()).collect(),
                    overrides: s.overrides.clone(),
                    checks: s.checks.clone(),
                })
                .collect(),
        }
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parses manifest JSON.
    pub fn from_json(text: &str) -> Result<Manifest, String> {
        serde_json::from_str(text).map_err(|e| format!("not a routelab manifest: {e}"))
    }

    /// The checks of every scenario cell.
    pub fn check_sets(&self) -> Vec<super::check::CheckSet> {
        self.scenarios
            .iter()
            .map(|e| super::check::CheckSet {
                scenario: e.name.clone(),
                cell: e.cell,
                checks: e.checks.clone(),
            })
            .collect()
    }

    /// Position of every run key in plan order.
    pub fn positions(&self) -> BTreeMap<RunKey, usize> {
        let mut out = BTreeMap::new();
        for e in &self.scenarios {
            for p in &e.policies {
                for a in &e.autoscalers {
                    for &r in &e.replications {
                        let key = RunKey {
                            scenario: e.name.clone(),
                            cell: e.cell,
                            params: e.params.clone(),
                            policy: p.clone(),
                            autoscaler: a.clone(),
                            replication: r,
                        };
                        let n = out.len();
                        out.entry(key).or_insert(n);
                    }
                }
            }
        }
        out
    }
}
