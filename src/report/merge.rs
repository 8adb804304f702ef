//! `routelab merge`: combine shard directories into exactly the files one unsharded run
//! writes. Every shard must come from the same plan (identical manifests apart from the
//! `shard` field); together they must cover every run exactly once.

use super::output::ResultSet;
use super::{check, summarize, CommandOutput};
use crate::error::ConfigError;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Merges shard result directories into `out`; returns the markdown summary followed by the
/// scenarios' checks evaluated on the whole result (`failed` if one fails).
pub fn merge_dirs(dirs: &[PathBuf], out: &Path) -> Result<CommandOutput, ConfigError> {
    let mut merged: Option<ResultSet> = None;
    let mut seen = BTreeSet::new();
    for d in dirs {
        let set = ResultSet::read(d)?;
        let name = d.display().to_string();
        let mut plan = set.manifest.clone();
        plan.shard = None;
        for r in &set.runs {
            if !seen.insert(r.key.clone()) {
                return Err(ConfigError::file(
                    &name,
                    format!(
                    "run {} / {} / {} / replication {} is also in another shard (merge each shard once)",
                    r.key.scenario, r.key.policy, r.key.autoscaler, r.key.replication
                ),
                ));
            }
        }
        match &mut merged {
            None => merged = Some(ResultSet { manifest: plan, ..set }),
            Some(m) => {
                if m.manifest != plan {
                    return Err(ConfigError::file(
                        &name,
                        "comes from a different plan than the first directory (scenario, flags or version differ)",
                    ));
                }
                m.runs.extend(set.runs);
                m.quantiles.extend(set.quantiles);
                m.timeseries.extend(set.timeseries);
                m.routing.extend(set.routing);
                m.decisions.extend(set.decisions);
                m.health.extend(set.health);
                m.faults.extend(set.faults);
            }
        }
    }
    let mut m = merged.ok_or_else(|| ConfigError::flag("merge", "no directories given"))?;
    let positions = m.manifest.positions();
    if m.runs.len() != m.manifest.runs || seen.len() != positions.len() {
        return Err(ConfigError::flag(
            "merge",
            format!(
                "the shards hold {} of the plan's {} runs: pass every shard directory (or rerun the missing ones)",
                m.runs.len(),
                m.manifest.runs
            ),
        ));
    }
    m.sort(&positions);
    let md =
        m.write(out).map_err(|e| ConfigError::file(&out.display().to_string(), e.to_string()))?;
    let checks = check::evaluate_sets(&m.manifest.check_sets(), &summarize(&m.runs), &m.runs);
    let text = if checks.text.is_empty() { md } else { format!("{md}\n{}", checks.text) };
    Ok(CommandOutput { text, failed: checks.failed })
}
