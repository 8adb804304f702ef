//! `summary.md` (also printed to stdout): one table per scenario and cell with the headline
//! metrics, `mean ± ci95` when there are several replications.
//!
//! The core columns are always shown (`–` where undefined). The LLM columns (TPOT, output
//! tokens and goodput per second, prefix hit rate, KV utilisation) are shown only for
//! scenarios where some row defines them, i.e. scenarios with `llm` replicas; queue-only
//! scenarios get exactly the core table. The failure columns (error, failed and retry rates,
//! downgraded share) are shown only for scenarios where some row has a non-zero value, and so
//! are cost (`cost $`) and cost per million output tokens (`$/M out tok`): `llm` pools are
//! priced from the GPU catalog unless their `lifecycle.gpu_hour_usd` says otherwise.
//!
//! Rows of result groups (class, tenant, tier, pool) are left out of the overall tables; with
//! `groups`, each cell also gets a table by group.

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
    /// When it is shown.
    show: Show,
}

/// When a column is shown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Show {
    Always,
    /// When some row of the scenario defines the metric.
    Defined,
    /// When some row of the scenario has a non-zero value.
    NonZero,
    /// When the scenario compares autoscalers.
    Scaled,
}

const fn scaled(metric: &'static str, header: &'static str, decimals: usize) -> Column {
    Column { metric, header, decimals, show: Show::Scaled }
}

const fn core(metric: &'static str, header: &'static str, decimals: usize) -> Column {
    Column { metric, header, decimals, show: Show::Always }
}

const fn llm(metric: &'static str, header: &'static str, decimals: usize) -> Column {
    Column { metric, header, decimals, show: Show::Defined }
}

const fn fault(metric: &'static str, header: &'static str, decimals: usize) -> Column {
    Column { metric, header, decimals, show: Show::NonZero }
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
    fault("error_rate", "error rate", 4),
    fault("failure_rate", "failed rate", 4),
    fault("retry_rate", "retries/req", 4),
    fault("downgrade_rate", "downgraded", 4),
    llm("prefix_hit_rate", "prefix hit", 4),
    llm("kv_util_mean", "KV util", 4),
    scaled("replicas_mean", "replicas", 2),
    scaled("gpu_hours", "GPU-h", 2),
    fault("cost_usd", "cost $", 2),
    fault("usd_per_m_output_tokens", "$/M out tok", 2),
    scaled("scale_events", "scale events", 1),
    core("completed", "completed", 0),
];

/// The columns shown for `rows` (one scenario): core ones, and optional ones that some row
/// defines.
fn visible(rows: &[SummaryRow]) -> Vec<&'static Column> {
    COLUMNS
        .iter()
        .filter(|c| {
            let Some(i) = metric_index(c.metric) else { return false };
            match c.show {
                Show::Always => true,
                Show::Defined => rows.iter().any(|r| r.values[i].mean.is_some()),
                Show::NonZero => rows.iter().any(|r| r.values[i].mean.is_some_and(|x| x != 0.0)),
                Show::Scaled => {
                    rows.iter().any(|r| r.key.autoscaler != "none")
                        && rows.iter().any(|r| r.values[i].mean.is_some())
                }
            }
        })
        .collect()
}

/// The markdown summary of `rows` (sorted by key): the overall tables, and with `groups`
/// a table by group after each cell's.
pub fn summary_md(rows: &[SummaryRow], groups: bool) -> String {
    let overall: Vec<&SummaryRow> = rows.iter().filter(|r| r.group == "all").collect();
    let mut out = String::new();
    let mut k = 0;
    while k < overall.len() {
        let r = overall[k];
        let scenario: Vec<SummaryRow> = overall[k..]
            .iter()
            .take_while(|x| x.key.scenario == r.key.scenario)
            .map(|x| (*x).clone())
            .collect();
        let columns = visible(&scenario);
        let mut i = 0;
        while i < scenario.len() {
            let cell = scenario[i].key.cell;
            let n = scenario[i..].iter().take_while(|x| x.key.cell == cell).count();
            if !out.is_empty() {
                out.push('\n');
            }
            let head = &scenario[i];
            let reps = head.replications;
            let _ = writeln!(
                out,
                "### {} (cell {}, {} replication{})\n",
                head.key.scenario,
                cell,
                reps,
                if reps == 1 { "" } else { "s" }
            );
            table(&mut out, &columns, scenario[i..i + n].iter(), false);
            if groups {
                let by_group: Vec<&SummaryRow> = rows
                    .iter()
                    .filter(|x| {
                        x.group != "all"
                            && x.key.scenario == head.key.scenario
                            && x.key.cell == cell
                    })
                    .collect();
                if !by_group.is_empty() {
                    let _ = writeln!(out, "\nby group:\n");
                    table(&mut out, &columns, by_group.into_iter(), true);
                }
            }
            i += n;
        }
        k += scenario.len();
    }
    out
}

/// One markdown table of `rows` with `columns` (and a group column when `grouped`).
fn table<'r>(
    out: &mut String,
    columns: &[&Column],
    rows: impl Iterator<Item = &'r SummaryRow>,
    grouped: bool,
) {
    let rows: Vec<&SummaryRow> = rows.collect();
    // An autoscaler column when the scenario compares autoscalers.
    let scaled = rows.iter().any(|r| r.key.autoscaler != "none");
    out.push_str("| policy |");
    if scaled {
        out.push_str(" autoscaler |");
    }
    if grouped {
        out.push_str(" group |");
    }
    for c in columns {
        let _ = write!(out, " {} |", c.header);
    }
    out.push_str("\n|---|");
    if scaled {
        out.push_str("---|");
    }
    if grouped {
        out.push_str("---|");
    }
    out.push_str(&"---:|".repeat(columns.len()));
    out.push('\n');
    for r in rows {
        let _ = write!(out, "| {} |", r.key.policy);
        if scaled {
            let _ = write!(out, " {} |", r.key.autoscaler);
        }
        if grouped {
            let _ = write!(out, " {} |", r.group);
        }
        for c in columns {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::stats::MeanCi;
    use crate::report::{RunKey, LLM_METRICS, METRICS};

    const FAULT_COLUMNS: &[&str] = &["error_rate", "failure_rate", "retry_rate", "downgrade_rate"];

    #[test]
    fn failure_columns_appear_when_some_row_has_failures() {
        let mut r = row("q", 0, "a", false);
        let i = metric_index("error_rate").expect("metric");
        r.values[i].mean = Some(0.25);
        let md = summary_md(&[r, row("q", 0, "b", false)], false);
        let header = md.lines().nth(2).expect("header");
        assert!(header.contains("| error rate |"), "{header}");
        assert!(!header.contains("failed rate"), "{header}");
        assert!(md.contains("| 0.2500 |") && md.contains("| 0.0000 |"), "{md}");
    }

    #[test]
    fn group_rows_are_left_out_unless_asked() {
        let mut g = row("q", 0, "a", false);
        g.group = "tier:vip".into();
        let rows = [row("q", 0, "a", false), g];
        let plain = summary_md(&rows, false);
        assert!(!plain.contains("tier:vip") && !plain.contains("by group"), "{plain}");
        let grouped = summary_md(&rows, true);
        assert!(grouped.contains("by group:"), "{grouped}");
        assert!(grouped.contains("| policy | group |"), "{grouped}");
        assert!(grouped.contains("| a | tier:vip |"), "{grouped}");
    }

    fn row(scenario: &str, cell: u32, policy: &str, llm: bool) -> SummaryRow {
        let values = METRICS
            .iter()
            .map(|d| {
                let undefined =
                    !llm && (LLM_METRICS.contains(&d.name) || d.name.starts_with("tpot_"));
                // No failures: the failure columns stay hidden.
                let zero = FAULT_COLUMNS.contains(&d.name);
                let v = if zero { 0.0 } else { 0.5 };
                MeanCi { mean: (!undefined).then_some(v), ci95: None }
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
            group: "all".into(),
            replications: 1,
            values,
        }
    }

    const QUEUE_HEADER: &str = "| policy | TTFT p50 ms | TTFT p95 ms | TTFT p99 ms | \
        E2E mean ms | wait mean ms | throughput rps | timeout rate | reject rate | completed |";

    #[test]
    fn queue_scenarios_keep_the_core_table() {
        let md = summary_md(&[row("q", 0, "a", false), row("q", 0, "b", false)], false);
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
        let md = summary_md(&rows, false);
        let headers: Vec<&str> = md.lines().filter(|l| l.starts_with("| policy |")).collect();
        assert_eq!(headers.len(), 3, "{md}");
        let llm_header = "| policy | TTFT p50 ms | TTFT p95 ms | TTFT p99 ms | TPOT p95 ms | \
            E2E mean ms | wait mean ms | throughput rps | out tok/s | goodput rps | timeout rate | \
            reject rate | prefix hit | KV util | cost $ | $/M out tok | completed |";
        assert_eq!(headers[0], llm_header);
        assert_eq!(headers[1], llm_header, "every cell of a scenario has the same columns");
        assert_eq!(headers[2], QUEUE_HEADER);
        assert!(md.contains(
            "| a | 0.5 | 0.5 | 0.5 | 0.50 | 0.5 | 0.5 | 0.5 | 0.5 | 0.5 | \
            0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.50 | 0.50 | 0 |"
        ));
        // A column some row of the scenario defines is shown, with `–` where undefined.
        let mut partial = row("llm", 1, "b", true);
        let i = metric_index("kv_util_mean").expect("metric");
        partial.values[i] = MeanCi::default();
        let md = summary_md(&[row("llm", 1, "a", true), partial], false);
        assert!(
            md.contains("| KV util |") && md.contains("| 0.5000 | – | 0.50 | 0.50 | 0 |"),
            "{md}"
        );
    }
}
