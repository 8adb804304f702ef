//! `routelab compare DIR`: paired differences between the policies of a finished run.
//!
//! # Method
//!
//! Within a replication every policy of a cell sees the identical requests (common random
//! numbers: the workload derives from `run_seed = mix(seed, replication)` only, never from the
//! policy). So for a metric `x` and a policy `P` compared with a baseline `B` the natural
//! sample is the per-replication difference `d_r = x_{P,r} − x_{B,r}`, matched by replication
//! index. Over the `n` replications both policies have, the table reports the mean `d̄`, the
//! half-width of its 95% confidence interval `t_{0.975, n−1} · s_d / √n` (Student's t, `s_d`
//! the sample standard deviation of the `d_r`), the relative change `d̄ / |x̄_B|`, and whether
//! the interval excludes 0 (the difference is significant at the 5% level).
//!
//! Why paired: `Var(x_P − x_B) = Var(x_P) + Var(x_B) − 2 Cov(x_P, x_B)`. Much of a
//! replication's variability comes from its workload (a burst, a run of long requests), which
//! both policies share, so the covariance is usually positive and the paired interval tighter
//! than what comparing two independent intervals suggests — often far tighter for
//! workload-driven metrics such as throughput, or for two similar policies (identical policies
//! give a zero-width interval, never a spurious difference). When two policies react very
//! differently to the same workload (a tail percentile under load-blind versus load-aware
//! routing) the covariance is small and pairing gains little; it is still the right interval,
//! since it uses the design of the experiment. The `unpaired ±` column shows the naive
//! alternative, `sqrt(ci_B² + ci_P²)` from the two per-policy intervals, for contrast. The
//! paired interval assumes the `d_r` are independent across replications (they are:
//! replications use independent seeds) and their mean roughly normal (central limit theorem;
//! with few replications, heavy-tailed metrics make the interval approximate); with `n < 2`
//! there is no interval.
//!
//! The baseline defaults to the first policy of each cell (in `runs.csv` row order, which is
//! the scenario's order). Output: a markdown table per (scenario, cell, autoscaler) on stdout
//! and `DIR/compare.csv` with the same numbers at fixed precision (deterministic bytes).
//! Comparing informs; it never fails (exit 0).

use super::stats::{self, MeanCi};
use super::write::atomic_write;
use super::{csv_in, fmt_value, metric_index, CommandOutput, RunRow, METRICS};
use crate::error::{ConfigError, OutputError};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Metrics compared when none are given.
pub const DEFAULT_METRICS: &[&str] = &[
    "ttft_ms_p95",
    "ttft_ms_p99",
    "e2e_ms_mean",
    "queue_wait_ms_mean",
    "throughput_rps",
    "timeout_rate",
];

/// A paired comparison of one metric between a policy and the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Paired {
    /// Replications with a defined value for both policies.
    pub n: u32,
    /// Mean of the baseline over those replications.
    pub baseline_mean: Option<f64>,
    /// Mean of the policy over those replications.
    pub policy_mean: Option<f64>,
    /// Mean and 95% CI half-width of `policy − baseline`.
    pub diff: MeanCi,
    /// `diff.mean / |baseline_mean|` (undefined for a zero or infinite baseline).
    pub relative: Option<f64>,
    /// The paired CI excludes 0 (`None` without an interval).
    pub excludes_zero: Option<bool>,
    /// `sqrt(ci_B² + ci_P²)`: the half-width an unpaired comparison would suggest.
    pub unpaired_ci95: Option<f64>,
}

/// Pairs `policy` with `baseline` by replication (keys) and summarises the differences.
pub fn paired(
    baseline: &BTreeMap<u32, Option<f64>>,
    policy: &BTreeMap<u32, Option<f64>>,
) -> Paired {
    // (baseline, policy) per replication both have, in replication order.
    let pairs: Vec<(f64, f64)> =
        baseline.iter().filter_map(|(rep, bv)| Some(((*bv)?, (*policy.get(rep)?)?))).collect();
    if pairs.is_empty() {
        return Paired::default();
    }
    let b: Vec<Option<f64>> = pairs.iter().map(|x| Some(x.0)).collect();
    let p: Vec<Option<f64>> = pairs.iter().map(|x| Some(x.1)).collect();
    let d: Vec<Option<f64>> = pairs.iter().map(|(x, y)| Some(y - x)).collect();
    let mut diff = stats::mean_ci(&d);
    if diff.mean.is_some_and(f64::is_nan) {
        diff = MeanCi::default();
    }
    let (mb, mp) = (stats::mean_ci(&b), stats::mean_ci(&p));
    let relative = match (diff.mean, mb.mean) {
        (Some(dm), Some(bm)) if dm.is_finite() && bm.is_finite() && bm != 0.0 => {
            Some(dm / bm.abs())
        }
        _ => None,
    };
    let excludes_zero = match (diff.mean, diff.ci95) {
        (Some(m), Some(ci)) => Some(m - ci > 0.0 || m + ci < 0.0),
        _ => None,
    };
    let unpaired_ci95 = match (mb.ci95, mp.ci95) {
        (Some(x), Some(y)) => Some((x * x + y * y).sqrt()),
        _ => None,
    };
    Paired {
        n: pairs.len() as u32,
        baseline_mean: mb.mean,
        policy_mean: mp.mean,
        diff,
        relative,
        excludes_zero,
        unpaired_ci95,
    }
}

/// The runs of one (scenario, cell, autoscaler), by policy then replication.
struct Group<'a> {
    scenario: &'a str,
    cell: u32,
    params: &'a str,
    autoscaler: &'a str,
    policies: Vec<&'a str>,
    runs: BTreeMap<&'a str, BTreeMap<u32, &'a RunRow>>,
}

fn groups(rows: &[RunRow]) -> Vec<Group<'_>> {
    let mut out: Vec<Group<'_>> = Vec::new();
    let mut index: BTreeMap<(&str, u32, &str), usize> = BTreeMap::new();
    for r in rows {
        let k = (r.key.scenario.as_str(), r.key.cell, r.key.autoscaler.as_str());
        let i = *index.entry(k).or_insert_with(|| {
            out.push(Group {
                scenario: k.0,
                cell: k.1,
                params: &r.key.params,
                autoscaler: k.2,
                policies: Vec::new(),
                runs: BTreeMap::new(),
            });
            out.len() - 1
        });
        let g = &mut out[i];
        if !g.runs.contains_key(r.key.policy.as_str()) {
            g.policies.push(&r.key.policy);
        }
        g.runs.entry(&r.key.policy).or_default().insert(r.key.replication, r);
    }
    out
}

fn metric_list(metrics: &[String]) -> Result<Vec<&'static str>, ConfigError> {
    if metrics.is_empty() {
        return Ok(DEFAULT_METRICS.to_vec());
    }
    metrics
        .iter()
        .map(|m| match metric_index(m) {
            Some(i) => Ok(METRICS[i].name),
            None => {
                let valid: Vec<&str> = METRICS.iter().map(|d| d.name).collect();
                Err(ConfigError::flag(
                    "--metric",
                    format!("= {m:?}: unknown metric; valid: {}", valid.join(", ")),
                ))
            }
        })
        .collect()
}

/// Reads `path` as text, or a one-line error naming it.
pub(crate) fn read_text(path: &Path, what: &str) -> Result<String, ConfigError> {
    let file = path.display().to_string();
    std::fs::read_to_string(path).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::NotFound => format!("no such file (expected {what})"),
            _ if path.is_dir() => format!("is a directory (expected {what})"),
            _ => format!("cannot read: {e}"),
        };
        ConfigError::file(&file, why)
    })
}

/// Paired-difference table for the runs in `dir` (`DIR/runs.csv`); writes `DIR/compare.csv`.
pub fn command(
    dir: &Path,
    baseline: Option<&str>,
    metrics: &[String],
) -> Result<CommandOutput, ConfigError> {
    let metrics = metric_list(metrics)?;
    let path = dir.join("runs.csv");
    let file = path.display().to_string();
    let text = read_text(&path, "the runs.csv of a `routelab run` result directory")?;
    let rows =
        csv_in::read_runs(&text).map_err(|e| ConfigError::file(&file, e.replace('\n', " ")))?;
    if rows.is_empty() {
        return Err(ConfigError::file(&file, "has no runs (was the run empty?)"));
    }
    let groups = groups(&rows);
    if let Some(b) = baseline {
        if !groups.iter().any(|g| g.runs.contains_key(b)) {
            let mut all: Vec<&str> = Vec::new();
            for g in &groups {
                for p in &g.policies {
                    if !all.contains(p) {
                        all.push(p);
                    }
                }
            }
            return Err(ConfigError::flag(
                "--baseline-policy",
                format!("= {b:?}: no such policy in {file}; policies: {}", all.join(", ")),
            ));
        }
    }
    let (text, csv) = render(&groups, baseline, &metrics);
    let out_path = dir.join("compare.csv");
    atomic_write(&out_path, &csv).map_err(|e| match e {
        OutputError::Io { path, source } => {
            ConfigError::file(&path.display().to_string(), format!("cannot write: {source}"))
        }
    })?;
    Ok(CommandOutput { text: format!("{text}\nwrote {}\n", out_path.display()), failed: false })
}

const CSV_HEADER: &[&str] = &[
    "scenario",
    "cell",
    "params",
    "autoscaler",
    "baseline",
    "policy",
    "metric",
    "replications",
    "baseline_mean",
    "policy_mean",
    "diff_mean",
    "diff_ci95",
    "diff_lo",
    "diff_hi",
    "relative_change",
    "ci_excludes_zero",
    "unpaired_ci95",
];

/// The markdown text and the `compare.csv` bytes.
fn render(groups: &[Group<'_>], baseline: Option<&str>, metrics: &[&str]) -> (String, Vec<u8>) {
    let mut md = String::new();
    let mut w =
        csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    let _ = w.write_record(CSV_HEADER);
    for (gi, g) in groups.iter().enumerate() {
        if gi > 0 {
            md.push('\n');
        }
        let mut place = format!("{} (cell {}", g.scenario, g.cell);
        if !g.params.is_empty() {
            let _ = write!(place, ", {}", g.params);
        }
        if g.autoscaler != "none" {
            let _ = write!(place, ", autoscaler {}", g.autoscaler);
        }
        place.push(')');
        let base = baseline.unwrap_or(g.policies[0]);
        let Some(base_runs) = g.runs.get(base) else {
            let _ = writeln!(md, "### {place}\n\nbaseline {base} was not run here; skipped.");
            continue;
        };
        let _ = writeln!(
            md,
            "### {place}: paired differences vs {base}\n\n\
             difference = policy − {base}, matched by replication; ± is the 95% CI (Student t)\n\n\
             | policy | metric | n | {base} | policy | difference | relative | CI excludes 0 | unpaired ± |\n\
             |---|---|---:|---:|---:|---:|---:|---|---:|"
        );
        let others: Vec<&str> = g.policies.iter().copied().filter(|p| *p != base).collect();
        if others.is_empty() {
            let _ = writeln!(md, "| (no other policy) | | | | | | | | |");
        }
        for p in others {
            for m in metrics {
                let values = |runs: &BTreeMap<u32, &RunRow>| -> BTreeMap<u32, Option<f64>> {
                    runs.iter().map(|(r, row)| (*r, row.get(m))).collect()
                };
                let pr = paired(&values(base_runs), &values(&g.runs[p]));
                let prec = metric_index(m).map_or(3, |i| METRICS[i].precision);
                let dprec = prec.max(3);
                let f = |v: Option<f64>, p: usize| fmt_value(v, p);
                let (lo, hi) = match (pr.diff.mean, pr.diff.ci95) {
                    (Some(mm), Some(ci)) => (Some(mm - ci), Some(mm + ci)),
                    _ => (None, None),
                };
                let yes_no = |b: Option<bool>, y: &str, n: &str, none: &str| match b {
                    Some(true) => y.to_string(),
                    Some(false) => n.to_string(),
                    None => none.to_string(),
                };
                let diff_md = match pr.diff.ci95 {
                    Some(ci) => format!("{} ± {}", f(pr.diff.mean, dprec), f(Some(ci), dprec)),
                    None => f(pr.diff.mean, dprec),
                };
                let rel_md =
                    pr.relative.map_or("–".to_string(), |r| format!("{:+.2}%", 100.0 * r));
                let _ = writeln!(
                    md,
                    "| {p} | {m} | {} | {} | {} | {} | {rel_md} | {} | {} |",
                    pr.n,
                    or_dash(f(pr.baseline_mean, prec)),
                    or_dash(f(pr.policy_mean, prec)),
                    or_dash(diff_md),
                    yes_no(pr.excludes_zero, "yes", "no", "n/a"),
                    or_dash(f(pr.unpaired_ci95, dprec)),
                );
                let _ = w.write_record([
                    g.scenario.to_string(),
                    g.cell.to_string(),
                    g.params.to_string(),
                    g.autoscaler.to_string(),
                    base.to_string(),
                    p.to_string(),
                    m.to_string(),
                    pr.n.to_string(),
                    f(pr.baseline_mean, prec),
                    f(pr.policy_mean, prec),
                    f(pr.diff.mean, dprec),
                    f(pr.diff.ci95, dprec),
                    f(lo, dprec),
                    f(hi, dprec),
                    f(pr.relative, 6),
                    yes_no(pr.excludes_zero, "true", "false", ""),
                    f(pr.unpaired_ci95, dprec),
                ]);
            }
        }
    }
    (md, w.into_inner().unwrap_or_default())
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "–".to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(v: &[(u32, Option<f64>)]) -> BTreeMap<u32, Option<f64>> {
        v.iter().copied().collect()
    }

    #[test]
    fn paired_differences_match_hand_computation() {
        // Shared workload noise (10, 20, 30) plus an offset of 5 with small jitter.
        let b = m(&[(0, Some(10.0)), (1, Some(20.0)), (2, Some(30.0)), (3, None)]);
        let p = m(&[(0, Some(15.0)), (1, Some(24.0)), (2, Some(36.0)), (4, Some(1.0))]);
        let r = paired(&b, &p);
        assert_eq!(r.n, 3);
        assert_eq!(r.diff.mean, Some(5.0));
        // d = 5, 4, 6: s = 1, ci = 4.303 / sqrt(3).
        assert!((r.diff.ci95.expect("ci") - 2.484).abs() < 1e-3);
        assert_eq!(r.relative, Some(0.25));
        assert_eq!(r.excludes_zero, Some(true));
        // The unpaired half-width is dominated by the shared noise: far wider.
        assert!(r.unpaired_ci95.expect("unpaired") > 10.0 * r.diff.ci95.expect("ci"));
    }

    #[test]
    fn paired_edge_cases() {
        let same = m(&[(0, Some(5.0)), (1, Some(7.0))]);
        let r = paired(&same, &same);
        assert_eq!(
            (r.diff.mean, r.diff.ci95, r.excludes_zero),
            (Some(0.0), Some(0.0), Some(false))
        );
        let one = paired(&m(&[(0, Some(1.0))]), &m(&[(0, Some(2.0))]));
        assert_eq!((one.n, one.diff.ci95, one.excludes_zero), (1, None, None));
        assert_eq!(paired(&m(&[(0, Some(0.0))]), &m(&[(0, Some(2.0))])).relative, None);
        let inf = paired(
            &m(&[(0, Some(1.0)), (1, Some(1.0))]),
            &m(&[(0, Some(f64::INFINITY)), (1, Some(2.0))]),
        );
        assert_eq!((inf.diff.mean, inf.diff.ci95), (Some(f64::INFINITY), None));
        assert_eq!(paired(&m(&[]), &m(&[])), Paired::default());
    }
}
