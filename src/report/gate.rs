//! `routelab gate --baseline A/summary.csv --current B/summary.csv`: the CI regression gate.
//!
//! Rows are matched by `(scenario, cell, policy, autoscaler, group)`. For each gated metric the
//! change is measured in the metric's *worse* direction — lower is better for latencies and
//! rates, higher is better for throughputs (`*_rps`, `*_per_s`), `completed`, hit rates and
//! `slo_attainment` — relative to the baseline mean:
//!
//! ```text
//! worse = (current − baseline) / max(|baseline|, floor)     (lower is better)
//! worse = (baseline − current) / max(|baseline|, floor)     (higher is better)
//! ```
//!
//! and the row is a **regression** when `worse > tolerance` (default 0.05 for every metric;
//! `--metric M --tolerance T` pairs set both, in order). The absolute `floor` keeps a zero or
//! near-zero baseline meaningful: it is 0.001 for fractions (`*_rate`, `slo_attainment`,
//! `kv_util_mean`, i.e. 0.1 percentage point) and otherwise the smallest step `summary.csv` can show (`10^-precision`: 0.001 ms for
//! latencies, 1 for counts). So with a baseline timeout rate of 0, a current rate of 0.0002
//! is a change of 0.2 floors, beyond a 5% tolerance. Infinite values (censored percentiles,
//! `inf`) compare as numbers: from finite to infinite in the worse direction is an infinite
//! regression, both infinite is no change. A metric defined in the baseline but undefined in
//! the current run is a regression; the reverse is not.
//!
//! The table also says whether each change exceeds the **replication noise**:
//! `|current − baseline| > sqrt(ci_b² + ci_c²)`, from the two 95% half-widths in the files
//! (two independent runs of the lab are not paired, so their intervals combine in quadrature;
//! see [`super::compare`] for paired comparisons within one run). The gate fails on the
//! tolerance, not on noise: a change beyond tolerance but within noise is still reported as a
//! regression, and the noise column tells the reader whether to raise the replication count
//! rather than hunt for a bug.
//!
//! A baseline row missing from the current file is a failure (a policy or cell silently
//! disappeared); rows only in the current file are listed as new and do not fail the gate.

use super::compare::read_text;
use super::stats::MeanCi;
use super::{csv_in, fmt_value, metric_index, CommandOutput, SummaryRow, METRICS};
use crate::error::ConfigError;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Metrics gated when none are given.
pub const DEFAULT_METRICS: &[&str] = &[
    "ttft_ms_p95",
    "ttft_ms_p99",
    "e2e_ms_mean",
    "timeout_rate",
    "rejection_rate",
    "throughput_rps",
];

/// Tolerance used when none is given.
pub const DEFAULT_TOLERANCE: f64 = 0.05;

/// One gated metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gated {
    /// Metric name.
    pub metric: &'static str,
    /// Allowed relative worsening.
    pub tolerance: f64,
    /// Whether a larger value is better.
    pub higher_is_better: bool,
    /// Absolute floor of the relative change's denominator.
    pub floor: f64,
}

/// Whether a larger value of `metric` is better (throughputs, completions, hit rates, SLO
/// attainment).
pub fn higher_is_better(metric: &str) -> bool {
    metric.ends_with("_rps")
        || metric.ends_with("_per_s")
        || metric.ends_with("hit_rate")
        || metric == "completed"
        || metric == "slo_attainment"
}

/// The absolute floor of `metric`'s relative-change denominator.
pub fn floor(metric: &str) -> f64 {
    if metric.ends_with("_rate") || metric == "slo_attainment" || metric == "kv_util_mean" {
        return 1e-3;
    }
    let precision = metric_index(metric).map_or(3, |i| METRICS[i].precision);
    10f64.powi(-(precision as i32))
}

/// The gated metrics and tolerances from `--metric`/`--tolerance` flags.
pub fn gated(metrics: &[String], tolerances: &[f64]) -> Result<Vec<Gated>, ConfigError> {
    if tolerances.len() != metrics.len() && !tolerances.is_empty() {
        return Err(ConfigError::flag(
            "--tolerance",
            format!(
                "given {} time(s) for {} --metric flag(s): give one --tolerance per --metric, \
                 in the same order, or none for the default {DEFAULT_TOLERANCE}",
                tolerances.len(),
                metrics.len()
            ),
        ));
    }
    for t in tolerances {
        if !t.is_finite() || *t < 0.0 {
            return Err(ConfigError::flag(
                "--tolerance",
                format!("= {t}: must be a finite number >= 0 (a fraction: 0.05 is 5%)"),
            ));
        }
    }
    let names: Vec<&str> = if metrics.is_empty() {
        DEFAULT_METRICS.to_vec()
    } else {
        metrics.iter().map(String::as_str).collect()
    };
    names
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let Some(idx) = metric_index(m) else {
                let valid: Vec<&str> = METRICS.iter().map(|d| d.name).collect();
                return Err(ConfigError::flag(
                    "--metric",
                    format!("= {m:?}: unknown metric; valid: {}", valid.join(", ")),
                ));
            };
            let metric = METRICS[idx].name;
            Ok(Gated {
                metric,
                tolerance: tolerances.get(i).copied().unwrap_or(DEFAULT_TOLERANCE),
                higher_is_better: higher_is_better(metric),
                floor: floor(metric),
            })
        })
        .collect()
}

/// The verdict on one metric of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Signed relative change `(current − baseline) / max(|baseline|, floor)`.
    pub change: Option<f64>,
    /// Relative worsening (positive = worse), as compared with the tolerance.
    pub worse: Option<f64>,
    /// The denominator was the floor, not the baseline.
    pub floored: bool,
    /// `|current − baseline| > sqrt(ci_b² + ci_c²)` (`None` without both intervals).
    pub beyond_noise: Option<bool>,
    /// Worse by more than the tolerance (or undefined in current only).
    pub regression: bool,
}

/// Judges one metric: baseline `b`, current `c`.
pub fn assess(g: &Gated, b: MeanCi, c: MeanCi) -> Verdict {
    let none = Verdict {
        change: None,
        worse: None,
        floored: false,
        beyond_noise: None,
        regression: false,
    };
    let (bm, cm) = match (b.mean, c.mean) {
        (Some(x), Some(y)) => (x, y),
        // Defined before, undefined now (e.g. no request completed): a regression.
        (Some(_), None) => return Verdict { regression: true, ..none },
        _ => return none,
    };
    let sign = if g.higher_is_better { -1.0 } else { 1.0 };
    let denom = bm.abs().max(g.floor);
    let (change, floored) = if bm == cm {
        (0.0, false)
    } else if bm.is_infinite() || cm.is_infinite() {
        // Any move to or from an infinite value is infinitely large relative to a finite one.
        (if cm > bm { f64::INFINITY } else { f64::NEG_INFINITY }, false)
    } else {
        ((cm - bm) / denom, bm.abs() < g.floor)
    };
    let worse = sign * change;
    let beyond_noise = match (b.ci95, c.ci95) {
        (Some(x), Some(y)) if bm.is_finite() && cm.is_finite() => {
            Some((cm - bm).abs() > (x * x + y * y).sqrt())
        }
        _ => None,
    };
    Verdict {
        change: Some(change),
        worse: Some(worse),
        floored,
        beyond_noise,
        regression: worse > g.tolerance,
    }
}

type RowKey<'a> = (&'a str, u32, &'a str, &'a str, &'a str);

fn row_key(r: &SummaryRow) -> RowKey<'_> {
    (&r.key.scenario, r.key.cell, &r.key.policy, &r.key.autoscaler, &r.group)
}

/// The rows of a summary file and the metrics it has no column for.
fn read(path: &Path) -> Result<(Vec<SummaryRow>, Vec<&'static str>), ConfigError> {
    let file = path.display().to_string();
    let text = read_text(path, "a summary.csv written by `routelab run`")?;
    let (rows, lacking) = csv_in::read_summary_lenient(&text).map_err(|e| {
        ConfigError::file(&file, format!("not a routelab summary.csv: {}", e.replace('\n', " ")))
    })?;
    if rows.is_empty() {
        return Err(ConfigError::file(&file, "has no rows: nothing to gate (was the run empty?)"));
    }
    Ok((rows, lacking))
}

fn pct(x: f64) -> String {
    if x.is_infinite() {
        return if x > 0.0 { "+inf".to_string() } else { "-inf".to_string() };
    }
    if x == 0.0 {
        return "0.00%".to_string();
    }
    format!("{:+.2}%", 100.0 * x)
}

fn value(v: MeanCi, precision: usize) -> String {
    match (v.mean, v.ci95) {
        (None, _) => "–".to_string(),
        (Some(_), Some(ci)) => {
            format!("{} ± {}", fmt_value(v.mean, precision), fmt_value(Some(ci), precision))
        }
        (Some(_), None) => fmt_value(v.mean, precision),
    }
}

/// Compares `current` against `baseline`; `failed` on any regression or missing row.
pub fn command(
    baseline: &Path,
    current: &Path,
    metrics: &[String],
    tolerances: &[f64],
) -> Result<CommandOutput, ConfigError> {
    let gated = gated(metrics, tolerances)?;
    let (base, base_lacks) = read(baseline)?;
    let (cur, _) = read(current)?;
    let cur_by_key: BTreeMap<RowKey<'_>, &SummaryRow> =
        cur.iter().map(|r| (row_key(r), r)).collect();
    let base_keys: BTreeMap<RowKey<'_>, ()> = base.iter().map(|r| (row_key(r), ())).collect();

    let mut md = String::new();
    let _ = writeln!(
        md,
        "### gate: {} against baseline {}\n\n\
         | scenario | cell | policy | autoscaler | metric | baseline | current | change | tolerance | beyond noise | result |\n\
         |---|---:|---|---|---|---:|---:|---:|---:|---|---|",
        current.display(),
        baseline.display()
    );
    let (mut compared, mut regressions, mut missing, mut new) = (0usize, 0usize, 0usize, 0usize);
    let mut notes = Vec::new();
    // A baseline from an older version may lack a metric: it cannot be gated until the
    // baseline is refreshed (a metric missing from the current file still fails).
    let lacking: Vec<&str> =
        gated.iter().map(|g| g.metric).filter(|m| base_lacks.contains(m)).collect();
    if !lacking.is_empty() {
        notes.push(format!(
            "note: the baseline has no column for {} (written by an older routelab?): not gated; \
             refresh it with `routelab run ... --out <baseline dir>`",
            lacking.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    for b in &base {
        let k = row_key(b);
        let policy = if k.4 == "all" { k.2.to_string() } else { format!("{} [{}]", k.2, k.4) };
        let head = format!("| {} | {} | {} | {} |", k.0, k.1, policy, k.3);
        let Some(c) = cur_by_key.get(&k) else {
            missing += 1;
            let _ = writeln!(md, "{head} (all) | | | | | | MISSING in current |");
            continue;
        };
        if b.key.params != c.key.params {
            notes.push(format!(
                "note: {} cell {} has params {:?} in the baseline but {:?} in the current file",
                k.0, k.1, b.key.params, c.key.params
            ));
        }
        for g in &gated {
            let Some(i) = metric_index(g.metric) else { continue };
            if base_lacks.contains(&g.metric) {
                continue;
            }
            let precision = METRICS[i].precision;
            let v = assess(g, b.values[i], c.values[i]);
            compared += 1;
            let change = match (v.change, v.worse) {
                (Some(ch), Some(w)) => {
                    let dir = if w > 0.0 {
                        " worse"
                    } else if w < 0.0 {
                        " better"
                    } else {
                        ""
                    };
                    let fl =
                        if v.floored { format!(", vs floor {}", g.floor) } else { String::new() };
                    format!("{}{dir}{fl}", pct(ch))
                }
                _ if v.regression => "now undefined".to_string(),
                _ => "–".to_string(),
            };
            let noise = match v.beyond_noise {
                Some(true) => "yes",
                Some(false) => "no",
                None => "n/a",
            };
            let result = if v.regression {
                regressions += 1;
                "REGRESSION"
            } else {
                "PASS"
            };
            let _ = writeln!(
                md,
                "{head} {} | {} | {} | {change} | {} | {noise} | {result} |",
                g.metric,
                value(b.values[i], precision),
                value(c.values[i], precision),
                pct(g.tolerance).trim_start_matches('+'),
            );
        }
    }
    for c in &cur {
        let k = row_key(c);
        if !base_keys.contains_key(&k) {
            new += 1;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | (all) | | | | | | NEW (not in baseline) |",
                k.0, k.1, k.2, k.3
            );
        }
    }
    md.push('\n');
    for n in notes {
        let _ = writeln!(md, "{n}");
    }
    let failed = regressions > 0 || missing > 0;
    let extra = if new > 0 { format!(", {new} new row(s)") } else { String::new() };
    if failed {
        let _ = writeln!(
            md,
            "gate: FAIL - {regressions} regression(s) beyond tolerance, {missing} row(s) missing \
             in current ({compared} comparisons{extra})"
        );
    } else {
        let _ = writeln!(
            md,
            "gate: PASS - no regression beyond tolerance ({compared} comparisons{extra})"
        );
    }
    Ok(CommandOutput { text: md, failed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mc(mean: f64, ci: f64) -> MeanCi {
        MeanCi { mean: Some(mean), ci95: Some(ci) }
    }

    fn g(metric: &str, tolerance: f64) -> Gated {
        let mut v = gated(&[metric.to_string()], &[tolerance]).expect("valid");
        v.remove(0)
    }

    #[test]
    fn direction_tolerance_and_noise() {
        let p95 = g("ttft_ms_p95", 0.05);
        let v = assess(&p95, mc(100.0, 2.0), mc(110.0, 2.0));
        assert!(v.regression && v.beyond_noise == Some(true));
        assert!((v.worse.expect("worse") - 0.1).abs() < 1e-12);
        let v = assess(&p95, mc(100.0, 20.0), mc(104.0, 20.0));
        assert!(!v.regression && v.beyond_noise == Some(false));
        assert!(!assess(&p95, mc(100.0, 2.0), mc(50.0, 2.0)).regression);
        let rps = g("throughput_rps", 0.01);
        assert!(assess(&rps, mc(100.0, 0.1), mc(98.0, 0.1)).regression);
        assert!(!assess(&rps, mc(100.0, 0.1), mc(120.0, 0.1)).regression);
    }

    #[test]
    fn zero_baseline_infinity_and_undefined() {
        let to = g("timeout_rate", 0.05);
        let v = assess(&to, mc(0.0, 0.0), mc(0.0002, 0.0001));
        assert!(v.regression && v.floored);
        assert!((v.worse.expect("worse") - 0.2).abs() < 1e-9);
        assert!(!assess(&to, mc(0.0, 0.0), mc(0.00004, 0.0)).regression);
        assert!(!assess(&to, mc(0.0, 0.0), mc(0.0, 0.0)).regression);
        let all = g("ttft_ms_p95_all", 0.05);
        let inf = MeanCi { mean: Some(f64::INFINITY), ci95: None };
        assert!(assess(&all, mc(100.0, 1.0), inf).regression);
        assert!(!assess(&all, inf, inf).regression);
        assert!(!assess(&all, inf, mc(100.0, 1.0)).regression);
        assert!(assess(&all, mc(1.0, 0.1), MeanCi::default()).regression);
        assert!(!assess(&all, MeanCi::default(), mc(1.0, 0.1)).regression);
        assert!(!assess(&all, MeanCi::default(), MeanCi::default()).regression);
    }

    #[test]
    fn flags_are_checked() {
        assert_eq!(gated(&[], &[]).expect("defaults").len(), DEFAULT_METRICS.len());
        assert!(gated(&["ttft_ms_p95".into()], &[]).is_ok());
        assert!(gated(&["ttft_ms_p95".into()], &[0.1, 0.2]).is_err());
        assert!(gated(&[], &[0.1]).is_err());
        assert!(gated(&["nope".into()], &[]).expect_err("unknown").message.contains("valid:"));
        assert!(gated(&["ttft_ms_p95".into()], &[-1.0]).is_err());
        assert!(higher_is_better("completed") && !higher_is_better("timeout_rate"));
        for m in ["output_tokens_per_s", "goodput_rps", "slo_attainment", "prefix_hit_rate"] {
            assert!(higher_is_better(m), "{m}");
        }
        for m in [
            "gpu_hours",
            "cost_usd",
            "usd_per_m_output_tokens",
            "preemptions",
            "tpot_ms_p99",
            "rejected_never_fit",
        ] {
            assert!(!higher_is_better(m), "{m}");
        }
        assert_eq!(floor("slo_attainment"), 1e-3);
        assert_eq!(floor("prefix_hit_rate"), 1e-3);
        assert_eq!(floor("kv_util_mean"), 1e-3);
        assert_eq!(floor("preemptions"), 1.0);
        assert!((floor("gpu_hours") - 1e-6).abs() < 1e-18);
        assert!((floor("output_tokens_per_s") - 1e-3).abs() < 1e-15);
    }
}
