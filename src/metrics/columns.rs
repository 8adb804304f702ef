//! The per-run metric columns of `runs.csv`: names (units last), order and precision.
//! Reports format them; scenario validation checks `checks:` references against them.

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

/// The metrics only `llm` replicas define: empty for queue clusters (see [`LlmStats`]).
///
/// [`LlmStats`]: super::LlmStats
pub const LLM_METRICS: &[&str] = &[
    "output_tokens_per_s",
    "goodput_rps",
    "slo_attainment",
    "prefix_hit_rate",
    "kv_util_mean",
    "preemptions",
    "rejected_never_fit",
    "cold_starts",
    "gpu_hours",
    "cost_usd",
    "usd_per_m_output_tokens",
];

/// Every per-run metric, in column order.
pub static METRICS: &[MetricDef] = &[
    m("arrivals", 0),
    m("completed", 0),
    m("timed_out", 0),
    m("rejected", 0),
    m("errors", 0),
    m("failed", 0),
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
    m("tpot_ms_p50", 3),
    m("tpot_ms_p95", 3),
    m("tpot_ms_p99", 3),
    m("throughput_rps", 3),
    m("output_tokens_per_s", 3),
    m("goodput_rps", 3),
    m("slo_attainment", 6),
    m("success_rate", 6),
    m("timeout_rate", 6),
    m("rejection_rate", 6),
    m("error_rate", 6),
    m("failure_rate", 6),
    m("attempts", 0),
    m("retry_rate", 6),
    m("downgrade_rate", 6),
    m("prefix_hit_rate", 6),
    m("kv_util_mean", 6),
    m("preemptions", 0),
    m("rejected_never_fit", 0),
    m("cold_starts", 0),
    m("gpu_hours", 6),
    m("cost_usd", 4),
    m("usd_per_m_output_tokens", 4),
    m("replicas_mean", 4),
    m("scale_events", 0),
    m("load_imbalance", 4),
    m("ejections", 0),
    m("detect_s", 3),
    m("recover_s", 3),
    m("window_s", 3),
    m("events", 0),
    m("stale_events", 0),
];

/// Index of the metric called `name` in [`METRICS`].
pub fn metric_index(name: &str) -> Option<usize> {
    METRICS.iter().position(|d| d.name == name)
}
