//! Reports: run rows, replication summaries, and their CSV, markdown and JSON forms.
//!
//! Everything here is a pure function from rows to bytes (writing files is in [`write`]).
//! Column order and float precision are fixed by [`METRICS`]; rows are sorted by
//! `(scenario, cell, policy, autoscaler, replication)` in plan order before anything is
//! written, so output bytes never depend on thread count.

pub mod artifacts;
pub mod check;
pub mod compare;
pub mod csv_in;
pub mod csv_out;
pub mod gate;
pub mod manifest;
pub mod markdown;
pub mod merge;
pub mod output;
pub mod plot;
pub mod stats;
pub mod write;

/// What a report command prints, and whether it found a failure (exit code 1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// Text for stdout.
    pub text: String,
    /// A check, gate or comparison failed.
    pub failed: bool,
}

use crate::engine::RunOutput;
use crate::metrics::Recorder;

/// A per-run metric column: name (units last) and decimal places.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// Column name.
    pub name: &'static str,
    /// Decimal places in CSV and markdown.
    pub precision: usize,
}

const fn m(name: &'static str, precision: usize) -> MetricDef {
    MetricDef { name, precision }
}

/// Every per-run metric, in column order.
pub static METRICS: &[MetricDef] = &[
    m("arrivals", 0),
    m("completed", 0),
    m("timed_out", 0),
    m("rejected", 0),
    m("unfinished", 0),
    m("ttft_ms_mean", 3),
    m("ttft_ms_p50", 3),
    m("ttft_ms_p90", 3),
    m("ttft_ms_p95", 3),
    m("ttft_ms_p99", 3),
    m("ttft_ms_p95_all", 3),
    m("e2e_ms_mean", 3),
    m("e2e_ms_p50", 3),
    m("e2e_ms_p95", 3),
    m("e2e_ms_p99", 3),
    m("queue_wait_ms_mean", 3),
    m("queue_wait_ms_p50", 3),
    m("queue_wait_ms_p95", 3),
    m("queue_wait_ms_p99", 3),
    m("tpot_ms_mean", 3),
    m("tpot_ms_p95", 3),
    m("throughput_rps", 3),
    m("timeout_rate", 6),
    m("rejection_rate", 6),
    m("window_s", 3),
    m("events", 0),
    m("stale_events", 0),
];

/// Index of the metric called `name` in [`METRICS`].
pub fn metric_index(name: &str) -> Option<usize> {
    METRICS.iter().position(|d| d.name == name)
}

/// Identifies a run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RunKey {
    /// Scenario name.
    pub scenario: String,
    /// Sweep cell index (0 without a sweep).
    pub cell: u32,
    /// The cell's sweep values, `key=value;...` (empty without a sweep).
    pub params: String,
    /// Policy label.
    pub policy: String,
    /// Autoscaler label (`none` until autoscaling exists).
    pub autoscaler: String,
    /// Replication index.
    pub replication: u32,
}

/// One row of `runs.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// Which run.
    pub key: RunKey,
    /// The run seed.
    pub seed: u64,
    /// Values in [`METRICS`] order; `None` when undefined (no samples).
    pub values: Vec<Option<f64>>,
}

impl RunRow {
    /// The row for a finished run.
    pub fn from_output(key: RunKey, out: &RunOutput) -> RunRow {
        let r: &Recorder = &out.recorder;
        let c = r.measured;
        let window_s = out.window.as_secs_f64();
        let rate = |x: u64| (c.arrivals > 0).then(|| x as f64 / c.arrivals as f64);
        let values = METRICS
            .iter()
            .map(|d| match d.name {
                "arrivals" => Some(c.arrivals as f64),
                "completed" => Some(c.completed as f64),
                "timed_out" => Some(c.timed_out as f64),
                "rejected" => Some(c.rejected as f64),
                "unfinished" => Some(c.unfinished as f64),
                "ttft_ms_mean" => r.ttft.mean_ms(),
                "ttft_ms_p50" => r.ttft.quantile_ms(0.50),
                "ttft_ms_p90" => r.ttft.quantile_ms(0.90),
                "ttft_ms_p95" => r.ttft.quantile_ms(0.95),
                "ttft_ms_p99" => r.ttft.quantile_ms(0.99),
                "ttft_ms_p95_all" => r.ttft.censored_quantile_ms(0.95, r.no_first_token),
                "e2e_ms_mean" => r.e2e.mean_ms(),
                "e2e_ms_p50" => r.e2e.quantile_ms(0.50),
                "e2e_ms_p95" => r.e2e.quantile_ms(0.95),
                "e2e_ms_p99" => r.e2e.quantile_ms(0.99),
                "queue_wait_ms_mean" => r.queue_wait.mean_ms(),
                "queue_wait_ms_p50" => r.queue_wait.quantile_ms(0.50),
                "queue_wait_ms_p95" => r.queue_wait.quantile_ms(0.95),
                "queue_wait_ms_p99" => r.queue_wait.quantile_ms(0.99),
                "tpot_ms_mean" => r.tpot.mean_ms(),
                "tpot_ms_p95" => r.tpot.quantile_ms(0.95),
                "throughput_rps" => {
                    (window_s > 0.0).then(|| r.window_completions as f64 / window_s)
                }
                "timeout_rate" => rate(c.timed_out),
                "rejection_rate" => rate(c.rejected),
                "window_s" => Some(window_s),
                "events" => Some(out.events as f64),
                "stale_events" => Some(out.stale_events as f64),
                other => unreachable!("metric {other} has no source"),
            })
            .zip(METRICS)
            .map(|(v, d)| round_to(v, d.precision))
            .collect();
        RunRow { key, seed: out.run_seed, values }
    }

    /// The value of metric `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        metric_index(name).and_then(|i| self.values[i])
    }
}

/// One row of `summary.csv`: a (scenario, cell, policy, autoscaler) over its replications.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// The group (replication field unused, 0).
    pub key: RunKey,
    /// Replications aggregated.
    pub replications: u32,
    /// Per metric: mean and 95% CI half-width (`None` with fewer than 2 values).
    pub values: Vec<stats::MeanCi>,
}

impl SummaryRow {
    /// Mean of metric `name`.
    pub fn mean(&self, name: &str) -> Option<f64> {
        metric_index(name).and_then(|i| self.values[i].mean)
    }
}

/// Groups consecutive rows of the same (scenario, cell, policy, autoscaler) and summarises
/// them. Rows must be sorted by key.
pub fn summarize(rows: &[RunRow]) -> Vec<SummaryRow> {
    let mut out: Vec<SummaryRow> = Vec::new();
    let same = |a: &RunKey, b: &RunKey| {
        a.scenario == b.scenario
            && a.cell == b.cell
            && a.policy == b.policy
            && a.autoscaler == b.autoscaler
    };
    let mut i = 0;
    while i < rows.len() {
        let mut j = i + 1;
        while j < rows.len() && same(&rows[i].key, &rows[j].key) {
            j += 1;
        }
        let group = &rows[i..j];
        let values = (0..METRICS.len())
            .map(|m| stats::mean_ci(&group.iter().map(|r| r.values[m]).collect::<Vec<_>>()))
            .collect();
        out.push(SummaryRow {
            key: RunKey { replication: 0, ..rows[i].key.clone() },
            replications: group.len() as u32,
            values,
        });
        i = j;
    }
    out
}

/// Rounds `v` to what its CSV text says, so summaries computed from rows in memory and from
/// rows read back from `runs.csv` (merge, resume) are identical.
pub fn round_to(v: Option<f64>, precision: usize) -> Option<f64> {
    v.map(|x| if x.is_finite() { fmt_value(Some(x), precision).parse().unwrap_or(x) } else { x })
}

/// Formats a value with fixed precision; `inf` for infinity, empty for undefined.
pub fn fmt_value(v: Option<f64>, precision: usize) -> String {
    match v {
        None => String::new(),
        Some(x) if x.is_nan() => String::new(),
        Some(x) if x == f64::INFINITY => "inf".to_string(),
        Some(x) if x == f64::NEG_INFINITY => "-inf".to_string(),
        Some(x) => format!("{x:.precision$}"),
    }
}
