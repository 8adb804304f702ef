//! `summary.md` (also printed to stdout): one table per scenario and cell with the headline
//! metrics, `mean ± ci95` when there are several replications.
//!
//! The core columns are always shown (`–` where undefined). The LLM columns (TPOT, output
//! tokens and goodput per second, prefix hit rate, KV utilisation) are shown only for
//! scenarios where some row defines them, i.e. scenarios with `llm` replicas; queue-only
//! scenarios get exactly the core table.

use super::{fmt_value, metric_index, SummaryRow};
use std::fmt::Write;

/// A headline column.
struct Column {
    /// Metric name.
    metric: &'static str,
    /// Table header.
    header: &'static str,
    /// Decimals shown.
    decimals: usize,
    /// Shown only when some row of the scenario defines the metric.
    optional: bool,
}

const fn core(metric: &'static str, header: &'static str, decimals: usize) -> Column {
    Column { metric, header, decimals, optional: false }
}

const fn llm(metric: &'static str, header: &'static str, decimals: usize) -> Column {
    Column { metric, header, decimals, optional: true }
}

/// Headline columns, in table order.
const COLUMNS: &[Column] = &[
    core("ttft_ms_p50", "TTFT p50 ms", 1),
    core("ttft_ms_p95", "TTFT p95 ms", 1),
    core("ttft_ms_p99", "TTFT p99 ms", 1),
    llm("tpot_ms_p95", "TPOT p95 ms", 2),
    core("e2e_ms_mean", "E2E mean ms", 1),
    core("queue_wait_ms_mean", "wait mean ms", 1),
    core("throughput_rps", "throughput rps", 1),
    llm("output_tokens_per_s", "out tok/s", 1),
    llm("goodput_rps", "goodput rps", 1),
    core("timeout_rate", "timeout rate", 4),
    core("rejection_rate", "reject rate", 4),
    llm("prefix_hit_rate", "prefix hit", 4),
    llm("kv_util_mean", "KV util", 4),
    core("completed", "completed", 0),
];

/// The columns shown for `rows` (one scenario): core ones, and optional ones that some row
/// defines.
fn visible(rows: &[SummaryRow]) -> Vec<&'static Column> {
    COLUMNS
        .iter()
        .filter(|c| {
            !c.optional
                || metric_index(c.metric)
                    .is_some_and(|i| rows.iter().any(|r| r.values[i].mean.is_some()))
        })
        .collect()
}

/// The markdown summary of `rows` (sorted by key).
pub fn summary_md(rows: &[SummaryRow]) -> String {
    let mut out = String::new();
    let mut current: Option<(&str, u32)> = None;
    let mut columns: Vec<&Column> = Vec::new();
    for (k, r) in rows.iter().enumerate() {
        let group = (r.key.scenario.as_str(), r.key.cell);
        if current.map(|c| c.0) != Some(group.0) {
            // Rows are sorted by key, so a scenario's rows are contiguous.
            let n = rows[k..].iter().take_while(|x| x.key.scenario == r.key.scenario).count();
            columns = visible(&rows[k..k + n]);
        }
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
            for c in &columns {
                let _ = write!(out, " {} |", c.header);
            }
            out.push_str("\n|---|");
            out.push_str(&"---:|".repeat(columns.len()));
            out.push('\n');
        }
        let _ = write!(out, "| {} |", r.key.policy);
        for c in &columns {
            let Some(i) = metric_index(c.metric) else { continue };
            let p = c.decimals;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::stats::MeanCi;
    use crate::report::{RunKey, LLM_METRICS, METRICS};

    fn row(scenario: &str, cell: u32, policy: &str, llm: bool) -> SummaryRow {
        let values = METRICS
            .iter()
            .map(|d| {
                let undefined =
                    !llm && (LLM_METRICS.contains(&d.name) || d.name.starts_with("tpot_"));
                MeanCi { mean: (!undefined).then_some(0.5), ci95: None }
            })
            .collect();
        SummaryRow {
            key: RunKey {
                scenario: scenario.into(),
                cell,
                params: String::new(),
                policy: policy.into(),
                autoscaler: "none".into(),
                replication: 0,
            },
            replications: 1,
            values,
        }
    }

    const QUEUE_HEADER: &str = "| policy | TTFT p50 ms | TTFT p95 ms | TTFT p99 ms | \
        E2E mean ms | wait mean ms | throughput rps | timeout rate | reject rate | completed |";

    #[test]
    fn queue_scenarios_keep_the_core_table() {
        let md = summary_md(&[row("q", 0, "a", false), row("q", 0, "b", false)]);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines[2], QUEUE_HEADER);
        assert_eq!(lines[3], format!("|---|{}", "---:|".repeat(9)));
        assert_eq!(lines[4], "| a | 0.5 | 0.5 | 0.5 | 0.5 | 0.5 | 0.5 | 0.5000 | 0.5000 | 0 |");
    }

    #[test]
    fn llm_scenarios_add_their_columns() {
        let rows = [
            row("llm", 0, "a", true),
            row("llm", 1, "a", true),
            row("q", 0, "a", false),
            row("q", 0, "b", false),
        ];
        let md = summary_md(&rows);
        let headers: Vec<&str> = md.lines().filter(|l| l.starts_with("| policy |")).collect();
        assert_eq!(headers.len(), 3, "{md}");
        let llm_header = "| policy | TTFT p50 ms | TTFT p95 ms | TTFT p99 ms | TPOT p95 ms | \
            E2E mean ms | wait mean ms | throughput rps | out tok/s | goodput rps | timeout rate | \
            reject rate | prefix hit | KV util | completed |";
        assert_eq!(headers[0], llm_header);
        assert_eq!(headers[1], llm_header, "every cell of a scenario has the same columns");
        assert_eq!(headers[2], QUEUE_HEADER);
        assert!(md.contains(
            "| a | 0.5 | 0.5 | 0.5 | 0.50 | 0.5 | 0.5 | 0.5 | 0.5 | 0.5 | \
            0.5000 | 0.5000 | 0.5000 | 0.5000 | 0 |"
        ));
        // A column some row of the scenario defines is shown, with `–` where undefined.
        let mut partial = row("llm", 1, "b", true);
        let i = metric_index("kv_util_mean").expect("metric");
        partial.values[i] = MeanCi::default();
        let md = summary_md(&[row("llm", 1, "a", true), partial]);
        assert!(md.contains("| KV util |") && md.contains("| 0.5000 | – | 0 |"), "{md}");
    }
}
