//! `summary.md` (also printed to stdout): one table per scenario and cell with the headline
//! metrics, `mean ± ci95` when there are several replications.

use super::{fmt_value, metric_index, SummaryRow};
use std::fmt::Write;

/// Headline columns: (metric, header, decimals shown).
const COLUMNS: &[(&str, &str, usize)] = &[
    ("ttft_ms_p50", "TTFT p50 ms", 1),
    ("ttft_ms_p95", "TTFT p95 ms", 1),
    ("ttft_ms_p99", "TTFT p99 ms", 1),
    ("e2e_ms_mean", "E2E mean ms", 1),
    ("queue_wait_ms_mean", "wait mean ms", 1),
    ("throughput_rps", "throughput rps", 1),
    ("timeout_rate", "timeout rate", 4),
    ("rejection_rate", "reject rate", 4),
    ("completed", "completed", 0),
];

/// The markdown summary of `rows` (sorted by key).
pub fn summary_md(rows: &[SummaryRow]) -> String {
    let mut out = String::new();
    let mut current: Option<(&str, u32)> = None;
    for r in rows {
        let group = (r.key.scenario.as_str(), r.key.cell);
        if current != Some(group) {
            if current.is_some() {
                out.push('\n');
            }
            current = Some(group);
            let _ = writeln!(
                out,
                "### {} (cell {}, {} replication{})\n",
                r.key.scenario,
                r.key.cell,
                r.replications,
                if r.replications == 1 { "" } else { "s" }
            );
            out.push_str("| policy |");
            for (_, h, _) in COLUMNS {
                let _ = write!(out, " {h} |");
            }
            out.push_str("\n|---|");
            out.push_str(&"---:|".repeat(COLUMNS.len()));
            out.push('\n');
        }
        let _ = write!(out, "| {} |", r.key.policy);
        for (name, _, p) in COLUMNS {
            let Some(i) = metric_index(name) else { continue };
            let p = *p;
            let v = r.values[i];
            let cell = match (v.mean, v.ci95) {
                (Some(_), Some(ci)) if r.replications > 1 => {
                    format!("{} ± {}", fmt_value(v.mean, p), fmt_value(Some(ci), p))
                }
                (Some(_), _) => fmt_value(v.mean, p),
                (None, _) => "–".to_string(),
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out
}
