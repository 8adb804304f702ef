//! Reports: run rows, replication summaries, and their CSV, markdown and JSON forms.
//!
//! Everything here is a pure function from rows to bytes (writing files is in [`mod@write`]).
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
use crate::metrics::{LlmStats, Recorder};

pub use crate::metrics::columns::{metric_index, MetricDef, LLM_METRICS, METRICS};

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

/// One row of `runs.csv`: a run's overall values (group `all`), with its per-group rows.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    /// Which run.
    pub key: RunKey,
    /// The run seed.
    pub seed: u64,
    /// Values in [`METRICS`] order; `None` when undefined (no samples, or an
    /// [`LLM_METRICS`] column of a cluster without `llm` replicas).
    pub values: Vec<Option<f64>>,
    /// The run's per-group rows (class, tenant, tier, pool), in group order.
    pub groups: Vec<GroupRow>,
}

/// The values of one group of a run (`class:chat`, `tier:vip`, `pool:h100`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    /// Group label.
    pub label: String,
    /// Values in [`METRICS`] order; metrics a group does not define are `None`.
    pub values: Vec<Option<f64>>,
}

/// Which metrics a row defines: every one (the whole run), those of its requests and
/// replicas (a pool), or those of its requests only (a class, tenant or tier).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Run,
    Pool,
    Requests,
}

/// Metrics that describe replicas (defined for the whole run and for pools).
const REPLICA_METRICS: &[&str] = &[
    "prefix_hit_rate",
    "kv_util_mean",
    "preemptions",
    "rejected_never_fit",
    "cold_starts",
    "gpu_hours",
    "cost_usd",
    "usd_per_m_output_tokens",
];

/// Metrics that describe the whole run only.
const RUN_METRICS: &[&str] = &[
    "load_imbalance",
    "events",
    "stale_events",
    "ejections",
    "detect_s",
    "recover_s",
    "replicas_mean",
    "scale_events",
];

fn values(r: &Recorder, out: &RunOutput, scope: Scope) -> Vec<Option<f64>> {
    let c = r.measured;
    let window_s = out.window.as_secs_f64();
    let rate = |x: u64| (c.arrivals > 0).then(|| x as f64 / c.arrivals as f64);
    let per_s = |x: u64| (window_s > 0.0).then(|| x as f64 / window_s);
    let llm = r.llm.enabled.then_some(&r.llm);
    let f = &r.fault;
    METRICS
        .iter()
        .map(|d| {
            if (scope != Scope::Run && RUN_METRICS.contains(&d.name))
                || (scope == Scope::Requests && REPLICA_METRICS.contains(&d.name))
            {
                return None;
            }
            match d.name {
                "arrivals" => Some(c.arrivals as f64),
                "completed" => Some(c.completed as f64),
                "timed_out" => Some(c.timed_out as f64),
                "rejected" => Some(c.rejected as f64),
                "errors" => Some(c.errors as f64),
                "failed" => Some(c.failed as f64),
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
                "tpot_ms_p50" => r.tpot.quantile_ms(0.50),
                "tpot_ms_p95" => r.tpot.quantile_ms(0.95),
                "tpot_ms_p99" => r.tpot.quantile_ms(0.99),
                "throughput_rps" => per_s(r.window_completions),
                "output_tokens_per_s" => llm.and_then(|l| per_s(l.window_output_tokens)),
                "goodput_rps" => llm.and_then(|l| per_s(l.window_goodput)),
                "slo_attainment" => llm.and_then(|l| rate(l.slo_met)),
                "success_rate" => rate(c.completed),
                "timeout_rate" => rate(c.timed_out),
                "rejection_rate" => rate(c.rejected),
                "error_rate" => rate(c.errors),
                "failure_rate" => rate(c.failed),
                "attempts" => Some(r.attempts as f64),
                "retry_rate" => rate(r.retries),
                "downgrade_rate" => rate(r.downgraded),
                "prefix_hit_rate" => llm.and_then(|l| l.prefix_hit_rate()),
                "kv_util_mean" => llm.and_then(|l| l.kv_util_mean()),
                "preemptions" => llm.map(|l| l.preemptions as f64),
                "rejected_never_fit" => llm.map(|l| l.rejected_never_fit as f64),
                "cold_starts" => llm.map(|l| l.cold_starts as f64),
                "gpu_hours" => llm.map(|l| l.gpu_hours),
                "cost_usd" => llm.map(|l| l.cost_usd),
                "usd_per_m_output_tokens" => llm.and_then(LlmStats::usd_per_m_output_tokens),
                "replicas_mean" => (window_s > 0.0).then(|| r.replica_s / window_s),
                "scale_events" => Some(r.scale_events as f64),
                "load_imbalance" => r.load_imbalance(),
                "ejections" => Some(r.ejections as f64),
                "detect_s" => f.detect_s,
                "recover_s" => f.recover_s,
                "window_s" => Some(window_s),
                "events" => Some(out.events as f64),
                "stale_events" => Some(out.stale_events as f64),
                other => unreachable!("metric {other} has no source"),
            }
        })
        .zip(METRICS)
        .map(|(v, d)| round_to(v, d.precision))
        .collect()
}

impl RunRow {
    /// The row for a finished run, with its group rows.
    pub fn from_output(key: RunKey, out: &RunOutput) -> RunRow {
        let groups = out
            .groups
            .iter()
            .map(|(label, rec)| {
                let scope = if label.starts_with("pool:") { Scope::Pool } else { Scope::Requests };
                GroupRow { label: label.clone(), values: values(rec, out, scope) }
            })
            .collect();
        RunRow { key, seed: out.run_seed, values: values(&out.recorder, out, Scope::Run), groups }
    }

    /// The value of metric `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        metric_index(name).and_then(|i| self.values[i])
    }

    /// The values of group `group` (`all`: the run's own).
    pub fn group_values(&self, group: &str) -> Option<&[Option<f64>]> {
        if group == "all" {
            return Some(&self.values);
        }
        self.groups.iter().find(|g| g.label == group).map(|g| &g.values[..])
    }
}

/// One row of `summary.csv`: a (scenario, cell, policy, autoscaler, group) over its
/// replications.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// The run group (replication field unused, 0).
    pub key: RunKey,
    /// The result group: `all`, or a class, tenant, tier or pool label.
    pub group: String,
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
/// them: the overall row (group `all`), then one row per result group in the order groups
/// first appear. Rows must be sorted by key.
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
        let block = &rows[i..j];
        let mut labels: Vec<&str> = vec!["all"];
        for r in block {
            for g in &r.groups {
                if !labels.contains(&g.label.as_str()) {
                    labels.push(&g.label);
                }
            }
        }
        for label in labels {
            let per_rep: Vec<&[Option<f64>]> =
                block.iter().filter_map(|r| r.group_values(label)).collect();
            let values = (0..METRICS.len())
                .map(|m| stats::mean_ci(&per_rep.iter().map(|v| v[m]).collect::<Vec<_>>()))
                .collect();
            out.push(SummaryRow {
                key: RunKey { replication: 0, ..block[0].key.clone() },
                group: label.to_string(),
                replications: per_rep.len() as u32,
                values,
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Counts, LlmStats};
    use crate::time::{SimDuration, SimTime};

    fn key() -> RunKey {
        RunKey {
            scenario: "s".into(),
            cell: 0,
            params: String::new(),
            policy: "p".into(),
            autoscaler: "none".into(),
            replication: 0,
        }
    }

    /// The only place that builds a `RunOutput` by hand.
    fn output(recorder: Recorder, window_s: u64) -> RunOutput {
        RunOutput {
            run_seed: 7,
            recorder,
            window: SimDuration::from_secs(window_s),
            events: 1234,
            stale_events: 5,
            end_time: SimTime(window_s * crate::time::NANOS_PER_S),
            timeseries: Vec::new(),
            health: Vec::new(),
            routed: Vec::new(),
            pool_of: Vec::new(),
            replica_names: Vec::new(),
            decisions: Vec::new(),
            groups: Vec::new(),
            faults: Vec::new(),
            replica_state_ns: Vec::new(),
        }
    }

    /// 200 measured arrivals over a 40 s window; TPOT samples 1..=100 ms.
    fn recorder(llm: LlmStats) -> Recorder {
        let mut r = Recorder {
            measured: Counts {
                arrivals: 200,
                completed: 180,
                timed_out: 10,
                rejected: 6,
                errors: 0,
                failed: 0,
                unfinished: 4,
            },
            window_completions: 170,
            llm,
            ..Recorder::default()
        };
        r.all = r.measured;
        for ms in 1..=100u64 {
            r.tpot.record(SimDuration(ms * 1_000_000));
            r.e2e.record(SimDuration(ms * 10_000_000));
        }
        r.finalize();
        r
    }

    fn llm_stats(enabled: bool) -> LlmStats {
        LlmStats {
            enabled,
            window_output_tokens: 12_345,
            slo_met: 150,
            window_goodput: 130,
            prompt_tokens: 30_000,
            cached_prompt_tokens: 7_000,
            preemptions: 17,
            rejected_never_fit: 2,
            cold_starts: 1,
            kv_util_integral_s: 50.0,
            replica_window_s: 160.0,
            gpu_hours: 1.0 / 3.0,
            cost_usd: 2.5,
            iterations: 99_999,
        }
    }

    #[test]
    fn llm_metrics_come_from_the_recorder() {
        let row = RunRow::from_output(key(), &output(recorder(llm_stats(true)), 40));
        let get = |m: &str| row.get(m).unwrap_or_else(|| panic!("{m} undefined"));
        assert_eq!(get("output_tokens_per_s"), 308.625); // 12345 / 40
        assert_eq!(get("goodput_rps"), 3.25); // 130 / 40
        assert_eq!(get("throughput_rps"), 4.25); // 170 / 40
        assert_eq!(get("slo_attainment"), 0.75); // 150 / 200 measured arrivals
        assert_eq!(get("prefix_hit_rate"), 0.233333); // 7000 / 30000, 6 places
        assert_eq!(get("kv_util_mean"), 0.3125); // 50 / 160
        assert_eq!(get("preemptions"), 17.0);
        assert_eq!(get("rejected_never_fit"), 2.0);
        assert_eq!(get("cold_starts"), 1.0);
        assert_eq!(get("gpu_hours"), 0.333333);
        assert_eq!(get("cost_usd"), 2.5);
        // $2.50 over 12,345 output tokens: 2.5 / 12345 × 10^6 = 202.5111... $/M, 4 places.
        assert_eq!(get("usd_per_m_output_tokens"), 202.5111);
        // TPOT percentiles: the highest value equivalent to the HdrHistogram bucket (within
        // 0.1% of the sample).
        assert!((get("tpot_ms_p50") - 50.0).abs() <= 0.05, "{}", get("tpot_ms_p50"));
        assert!((get("tpot_ms_p95") - 95.0).abs() <= 0.1, "{}", get("tpot_ms_p95"));
        assert!((get("tpot_ms_p99") - 99.0).abs() <= 0.1, "{}", get("tpot_ms_p99"));
        assert_eq!(get("tpot_ms_mean"), 50.5);
        assert_eq!(row.seed, 7);
        assert_eq!(get("events"), 1234.0);
    }

    #[test]
    fn llm_metrics_are_empty_without_llm_replicas() {
        let on = RunRow::from_output(key(), &output(recorder(llm_stats(true)), 40));
        let off = RunRow::from_output(key(), &output(recorder(llm_stats(false)), 40));
        let default = RunRow::from_output(key(), &output(recorder(LlmStats::default()), 40));
        for (i, d) in METRICS.iter().enumerate() {
            if LLM_METRICS.contains(&d.name) {
                assert_eq!(off.values[i], None, "{}", d.name);
                assert_eq!(default.values[i], None, "{}", d.name);
            } else {
                // Every other metric is independent of the LLM counters.
                assert_eq!(off.values[i], on.values[i], "{}", d.name);
                assert_eq!(default.values[i], on.values[i], "{}", d.name);
            }
        }
        // Enabled but nothing to divide by: rates are undefined, counts are still defined.
        let mut empty = recorder(LlmStats { enabled: true, ..LlmStats::default() });
        empty.measured = Counts::default();
        let row = RunRow::from_output(key(), &output(empty, 0));
        for m in [
            "output_tokens_per_s",
            "goodput_rps",
            "slo_attainment",
            "prefix_hit_rate",
            "kv_util_mean",
            "usd_per_m_output_tokens",
        ] {
            assert_eq!(row.get(m), None, "{m}");
        }
        for m in ["preemptions", "rejected_never_fit", "cold_starts", "gpu_hours"] {
            assert_eq!(row.get(m), Some(0.0), "{m}");
        }
    }

    #[test]
    fn column_order_and_precision_are_fixed() {
        let expected: &[(&str, usize)] = &[
            ("arrivals", 0),
            ("completed", 0),
            ("timed_out", 0),
            ("rejected", 0),
            ("errors", 0),
            ("failed", 0),
            ("unfinished", 0),
            ("ttft_ms_mean", 3),
            ("ttft_ms_p50", 3),
            ("ttft_ms_p90", 3),
            ("ttft_ms_p95", 3),
            ("ttft_ms_p99", 3),
            ("ttft_ms_p95_all", 3),
            ("e2e_ms_mean", 3),
            ("e2e_ms_p50", 3),
            ("e2e_ms_p95", 3),
            ("e2e_ms_p99", 3),
            ("queue_wait_ms_mean", 3),
            ("queue_wait_ms_p50", 3),
            ("queue_wait_ms_p95", 3),
            ("queue_wait_ms_p99", 3),
            ("tpot_ms_mean", 3),
            ("tpot_ms_p50", 3),
            ("tpot_ms_p95", 3),
            ("tpot_ms_p99", 3),
            ("throughput_rps", 3),
            ("output_tokens_per_s", 3),
            ("goodput_rps", 3),
            ("slo_attainment", 6),
            ("success_rate", 6),
            ("timeout_rate", 6),
            ("rejection_rate", 6),
            ("error_rate", 6),
            ("failure_rate", 6),
            ("attempts", 0),
            ("retry_rate", 6),
            ("downgrade_rate", 6),
            ("prefix_hit_rate", 6),
            ("kv_util_mean", 6),
            ("preemptions", 0),
            ("rejected_never_fit", 0),
            ("cold_starts", 0),
            ("gpu_hours", 6),
            ("cost_usd", 4),
            ("usd_per_m_output_tokens", 4),
            ("replicas_mean", 4),
            ("scale_events", 0),
            ("load_imbalance", 4),
            ("ejections", 0),
            ("detect_s", 3),
            ("recover_s", 3),
            ("window_s", 3),
            ("events", 0),
            ("stale_events", 0),
        ];
        let got: Vec<(&str, usize)> = METRICS.iter().map(|d| (d.name, d.precision)).collect();
        assert_eq!(got, expected);
        for m in LLM_METRICS {
            assert!(metric_index(m).is_some(), "{m}");
        }

        // runs.csv: header in METRICS order, values at their precision, LLM cells empty for
        // a queue cluster.
        let on = RunRow::from_output(key(), &output(recorder(llm_stats(true)), 40));
        let off = RunRow::from_output(key(), &output(recorder(llm_stats(false)), 40));
        let text = String::from_utf8(csv_out::runs_csv(&[on, off])).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = lines[0].split(',').collect();
        let cell = |line: usize, m: &str| {
            let i = header.iter().position(|h| *h == m).expect("column");
            lines[line].split(',').nth(i).expect("cell").to_string()
        };
        assert_eq!(&header[8..], METRICS.iter().map(|d| d.name).collect::<Vec<_>>());
        for (m, want) in [
            ("output_tokens_per_s", "308.625"),
            ("goodput_rps", "3.250"),
            ("slo_attainment", "0.750000"),
            ("prefix_hit_rate", "0.233333"),
            ("kv_util_mean", "0.312500"),
            ("preemptions", "17"),
            ("rejected_never_fit", "2"),
            ("cold_starts", "1"),
            ("gpu_hours", "0.333333"),
            ("throughput_rps", "4.250"),
            ("tpot_ms_mean", "50.500"),
        ] {
            assert_eq!(cell(1, m), want, "{m}");
            let queue = if LLM_METRICS.contains(&m) { "" } else { want };
            assert_eq!(cell(2, m), queue, "{m}");
        }

        // summary.csv: `<metric>, <metric>_ci95` pairs in the same order.
        let rows = vec![
            RunRow::from_output(key(), &output(recorder(llm_stats(true)), 40)),
            RunRow {
                key: RunKey { replication: 1, ..key() },
                ..RunRow::from_output(key(), &output(recorder(llm_stats(true)), 20))
            },
        ];
        let text = String::from_utf8(csv_out::summary_csv(&summarize(&rows))).expect("utf-8");
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().expect("header").split(',').collect();
        let want: Vec<String> =
            METRICS.iter().flat_map(|d| [d.name.to_string(), format!("{}_ci95", d.name)]).collect();
        assert_eq!(&header[7..], want);
        let values: Vec<&str> = lines.next().expect("row").split(',').collect();
        let at = |m: &str| values[header.iter().position(|h| *h == m).expect("column")];
        // goodput 3.25 and 6.5 req/s: mean 4.875.
        assert_eq!(at("goodput_rps"), "4.875");
        assert_eq!(at("slo_attainment"), "0.750000");
        assert_eq!(at("slo_attainment_ci95"), "0.000000");
        assert_eq!(at("gpu_hours"), "0.333333");
    }
}
