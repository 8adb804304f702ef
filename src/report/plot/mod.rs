//! Plots of a result directory, drawn from its CSV files (`routelab plot DIR`, and at the end
//! of `routelab run`).
//!
//! Every plot is written as `DIR/plots/<scenario>-<kind>.svg` and `.png`, 1200×700 px (the
//! time series taller), with the scenario in the title, what is aggregated in the subtitle,
//! axis descriptions with units, text of at least 20 px, and the legend in a column beside the
//! data. Each policy keeps one colour in every plot of a directory (Tableau 10, by first
//! appearance in `summary.csv`); every other palette slot draws dashed lines, so lines that
//! coincide stay visible. Inputs are read by column name: `summary.csv` (or, without it,
//! `runs.csv` summarised again), and the optional `quantiles.csv` and `timeseries.csv`.
//!
//! Kinds, in output order, each skipped without error when its input is absent or has
//! nothing to show:
//!
//! - `ttft_p95`: p95 TTFT per policy, grouped by sweep cell; bars are the mean over
//!   replications, whiskers the 95% confidence interval; values are printed over the bars when
//!   there are at most 12.
//! - `latency_vs_load`, `throughput_vs_load`: p95 TTFT and throughput (mean, 95% CI whiskers)
//!   against the swept quantity, drawn when exactly one sweep key varies across cells and its
//!   values are numbers. A key ending in `rate_per_s` is labelled "arrival rate (req/s)" and
//!   the throughput plot then shows `y = x` (offered load); other keys are labelled from their
//!   last segment and unit suffix (`_s`, `_per_s`, `_tokens`). Latency axes start at 0, so the
//!   saturation knee shows as the hockey stick; a point is hollow when over 5% of its requests
//!   timed out or were rejected (its percentile, over completed requests only, flatters it).
//!   When some policy completes under 95% of the offered rate (saturation), a dashed line marks
//!   the highest measured throughput.
//! - `ttft_cdf`: TTFT CDF per policy from `quantiles.csv` (`metric = ttft_ms`), TTFT on a log
//!   axis. With several replications the quantiles are averaged across replications at each
//!   grid point; in a sweep, the cell drawn is the one where p95 TTFT differs most between
//!   policies (largest max/min). The subtitle says both.
//! - `timeseries`: `queued`, `in_flight`, `completions_per_s` (and `replicas`, once
//!   `timeseries.csv` has that column), one panel each, over simulated time for one run per
//!   policy: the first cell and lowest replication in the file. Runs of more than 300 samples
//!   are drawn as averages over equal windows (the subtitle gives the window).
//! - `cost_vs_ttft`: cost against p95 TTFT per (series, cell) — dollars (`cost_usd`) when
//!   some row has a non-zero cost, else GPU-hours — CI whiskers both ways, with the Pareto
//!   front (no other point is both cheaper and faster) ringed, numbered and listed in the
//!   legend; with several autoscalers a series is `policy + autoscaler`. Drawn only for rows
//!   with a `gpu_hours` value: scenarios with `llm` replicas; queue clusters leave the column
//!   empty, so their results skip this plot.
//! - `health`: each replica's state over time (ready, degraded, ejected, failed, recovering)
//!   in the time-series run, one panel per policy, with the fault windows marked; from
//!   `health.csv`, drawn when some replica was ever not ready.
//! - `replicas`: replicas by lifecycle state (ready, draining, loading, provisioning, stacked
//!   in that order from the bottom; Okabe–Ito colours) over the time-series run, one panel per
//!   autoscaler of the first policy — one per policy when there is one autoscaler — at most 6,
//!   each under two strips: the offered load (`arrivals_per_s`) and the p95 TTFT of each sample
//!   window (`ttft_p95_ms`, in the series' colour). From `timeseries.csv`; drawn when it has
//!   the state columns and some replica changed state.
//!
//! The time series also shade the fault windows of their run (`faults.csv`) and add panels
//! for admitted and rejected requests, errors, the gateway queue, ejected and down replicas
//! when any of them is not zero.
//!
//! PNG text uses the bundled DejaVu Sans (`assets/fonts/`) through plotters' pure-Rust
//! `ab_glyph` path, so no system font library or installed font is needed; SVG text names the
//! generic `sans-serif` family. Same CSV input, same bytes, SVG and PNG. Files are replaced
//! atomically; a kind that is skipped has its old files for that scenario removed.

mod charts;
mod data;
mod health;
mod replicas;
mod style;

use crate::error::ConfigError;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Draws every plot for the results in `dir`; returns the files written, per scenario in file
/// order, per kind in the order above, SVG before PNG.
pub fn draw_dir(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    style::register_font().map_err(|e| ConfigError::file("<bundled font>", e))?;
    let scenarios = data::load(dir)?;
    if scenarios.is_empty() {
        return Ok(Vec::new());
    }
    let out = dir.join("plots");
    let io = |p: &Path, e: std::io::Error| {
        ConfigError::file(&p.display().to_string(), format!("cannot write: {e}"))
    };
    std::fs::create_dir_all(&out).map_err(|e| io(&out, e))?;
    let mut written = Vec::new();
    for sc in &scenarios {
        for (kind, build) in charts::KINDS {
            let name = format!("{}-{kind}", file_stem(&sc.name));
            let Some(plot) = build(sc, &name) else {
                for ext in ["svg", "png"] {
                    let stale = out.join(format!("{name}.{ext}"));
                    if stale.exists() {
                        std::fs::remove_file(&stale).map_err(|e| io(&stale, e))?;
                    }
                }
                continue;
            };
            written.push(write_svg(&plot, &out)?);
            written.push(write_png(&plot, &out)?);
        }
    }
    Ok(written)
}

/// A scenario name made safe for a file name.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect()
}

fn draw_error(path: &Path, e: String) -> ConfigError {
    ConfigError::file(&path.display().to_string(), format!("cannot draw the plot: {e}"))
}

fn temp_path(dir: &Path, name: &str, ext: &str) -> PathBuf {
    dir.join(format!(".{name}.tmp-{}.{ext}", std::process::id()))
}

fn finish(tmp: &Path, path: &Path) -> Result<PathBuf, ConfigError> {
    std::fs::rename(tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        ConfigError::file(&path.display().to_string(), format!("cannot write: {e}"))
    })?;
    Ok(path.to_path_buf())
}

fn write_svg(plot: &charts::Plot, dir: &Path) -> Result<PathBuf, ConfigError> {
    let path = dir.join(format!("{}.svg", plot.name()));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, plot.size()).into_drawing_area();
        plot.draw(&style::Pen::SVG, &root).map_err(|e| draw_error(&path, e))?;
    }
    let tmp = temp_path(dir, plot.name(), "svg");
    std::fs::write(&tmp, svg.as_bytes()).map_err(|e| {
        ConfigError::file(&path.display().to_string(), format!("cannot write: {e}"))
    })?;
    finish(&tmp, &path)
}

fn write_png(plot: &charts::Plot, dir: &Path) -> Result<PathBuf, ConfigError> {
    let path = dir.join(format!("{}.png", plot.name()));
    let tmp = temp_path(dir, plot.name(), "png");
    let drawn = {
        let root = BitMapBackend::new(&tmp, plot.size()).into_drawing_area();
        plot.draw(&style::Pen::BITMAP, &root)
    };
    if let Err(e) = drawn {
        let _ = std::fs::remove_file(&tmp);
        return Err(draw_error(&path, e));
    }
    finish(&tmp, &path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{csv_out, summarize, RunKey, RunRow, LLM_METRICS, METRICS};

    /// A fresh, empty directory under the system temp dir.
    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("routelab-plot-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    const POLICIES: [&str; 3] = ["random", "least_requests", "power_of_d"];

    fn runs(rates: &[f64]) -> Vec<RunRow> {
        let mut rows = Vec::new();
        for (cell, rate) in rates.iter().enumerate() {
            for (p, policy) in POLICIES.iter().enumerate() {
                for rep in 0..2u32 {
                    let scale =
                        (1.0 + p as f64) * (1.0 + f64::from(rep) * 0.1) * (1.0 + rate / 50.0);
                    let values = METRICS
                        .iter()
                        .map(|d| match d.name {
                            "throughput_rps" => Some(rate.min(100.0) - f64::from(rep)),
                            n if n.contains("_ms_") => Some(10.0 * scale),
                            // A queue cluster: the LLM metrics are undefined.
                            n if LLM_METRICS.contains(&n) => None,
                            _ => Some(1.0),
                        })
                        .collect();
                    let params = if rates.len() > 1 {
                        format!("workload.0.arrival.rate_per_s={rate};cluster.pools.0.replicas=4")
                    } else {
                        String::new()
                    };
                    rows.push(RunRow {
                        key: RunKey {
                            scenario: "tiny".into(),
                            cell: cell as u32,
                            params,
                            policy: (*policy).into(),
                            autoscaler: "none".into(),
                            replication: rep,
                        },
                        seed: 1,
                        values,
                        groups: Vec::new(),
                    });
                }
            }
        }
        rows
    }

    /// A result directory with summary.csv and runs.csv, and optionally the detail files.
    fn result_dir(tag: &str, rates: &[f64], details: bool) -> PathBuf {
        let d = temp_dir(tag);
        let rows = runs(rates);
        std::fs::write(d.join("runs.csv"), csv_out::runs_csv(&rows)).expect("write");
        std::fs::write(d.join("summary.csv"), csv_out::summary_csv(&summarize(&rows)))
            .expect("write");
        if details {
            let mut q = String::from(
                "scenario,cell,params,policy,autoscaler,replication,metric,quantile,value_ms\n",
            );
            let mut t = String::from(
                "scenario,cell,params,policy,autoscaler,replication,t_s,queued,in_service,in_flight,completions_per_s\n",
            );
            for r in &rows {
                let k = &r.key;
                let head = format!(
                    "{},{},{},{},{},{}",
                    k.scenario, k.cell, k.params, k.policy, k.autoscaler, k.replication
                );
                for i in 1..=20 {
                    let quant = f64::from(i) / 20.0;
                    q.push_str(&format!(
                        "{head},ttft_ms,{quant},{:.3}\n",
                        5.0 * (1.0 + 10.0 * quant * quant)
                    ));
                }
                for s in 1..=30 {
                    t.push_str(&format!(
                        "{head},{s}.000,{},{},{},{}.000\n",
                        s % 7,
                        4,
                        s % 7 + 4,
                        20 + s % 5
                    ));
                }
            }
            std::fs::write(d.join("quantiles.csv"), q).expect("write");
            std::fs::write(d.join("timeseries.csv"), t).expect("write");
        }
        d
    }

    fn names(files: &[PathBuf]) -> Vec<String> {
        files.iter().map(|f| f.file_name().expect("name").to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn sweep_plots_are_written_deterministically() {
        let d = result_dir("sweep", &[20.0, 60.0, 100.0, 140.0], true);
        let first = draw_dir(&d).expect("draws");
        let kinds = ["ttft_p95", "latency_vs_load", "throughput_vs_load", "ttft_cdf", "timeseries"];
        let expected: Vec<String> =
            kinds.iter().flat_map(|k| [format!("tiny-{k}.svg"), format!("tiny-{k}.png")]).collect();
        assert_eq!(names(&first), expected);
        let bytes: Vec<Vec<u8>> = first.iter().map(|f| std::fs::read(f).expect("read")).collect();
        for (f, b) in first.iter().zip(&bytes) {
            assert!(b.len() > 1000, "{} is nearly empty", f.display());
            if f.extension().is_some_and(|e| e == "png") {
                assert!(b.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", f.display());
            } else {
                let s = String::from_utf8_lossy(b);
                assert!(s.starts_with("<svg") && s.contains("least_requests"), "{}", f.display());
            }
        }
        let second = draw_dir(&d).expect("draws again");
        assert_eq!(first, second);
        for (f, b) in second.iter().zip(&bytes) {
            assert_eq!(
                &std::fs::read(f).expect("read"),
                b,
                "{} changed between two draws",
                f.display()
            );
        }
        let leftovers: Vec<String> = std::fs::read_dir(d.join("plots"))
            .expect("plots dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn missing_inputs_skip_their_plots() {
        // One cell, no quantiles or time series: only the bars; no load curves, no error.
        let d = result_dir("single", &[50.0], false);
        let files = draw_dir(&d).expect("draws");
        assert_eq!(names(&files), ["tiny-ttft_p95.svg", "tiny-ttft_p95.png"]);
        // Without summary.csv the runs are summarised again.
        std::fs::remove_file(d.join("summary.csv")).expect("rm");
        assert_eq!(draw_dir(&d).expect("draws from runs.csv").len(), 2);
        // Nothing to read at all is an error naming the file.
        std::fs::remove_file(d.join("runs.csv")).expect("rm");
        let e = draw_dir(&d).expect_err("no results");
        assert!(e.file.ends_with("summary.csv"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
        assert!(draw_dir(&d).is_err(), "a missing directory is an error");
    }

    #[test]
    fn cost_plot_appears_with_gpu_hours_values() {
        // All-empty `gpu_hours` (queue clusters): no cost plot.
        let d = result_dir("cost", &[50.0], false);
        let files = draw_dir(&d).expect("draws");
        assert!(!names(&files).iter().any(|n| n.contains("cost_vs_ttft")), "{files:?}");
        // With values (LLM clusters), from summary.csv and from runs.csv alone.
        let gi = crate::report::metric_index("gpu_hours").expect("gpu_hours is a metric");
        let mut rows = runs(&[50.0]);
        for (i, r) in rows.iter_mut().enumerate() {
            r.values[gi] = Some(10.0 - (i / 2) as f64 + 0.1 * (i % 2) as f64);
        }
        std::fs::write(d.join("runs.csv"), csv_out::runs_csv(&rows)).expect("write");
        std::fs::write(d.join("summary.csv"), csv_out::summary_csv(&summarize(&rows)))
            .expect("write");
        let files = draw_dir(&d).expect("draws");
        assert!(names(&files).contains(&"tiny-cost_vs_ttft.png".to_string()), "{files:?}");
        let svg = std::fs::read_to_string(d.join("plots/tiny-cost_vs_ttft.svg")).expect("svg");
        assert!(svg.contains("GPU-hours") && svg.contains("Pareto front"));
        std::fs::remove_file(d.join("summary.csv")).expect("rm");
        let files = draw_dir(&d).expect("draws from runs.csv");
        assert!(names(&files).contains(&"tiny-cost_vs_ttft.svg".to_string()), "{files:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Runs of two policies × two autoscalers (`fixed`, `hpa`), one cell, one replication.
    fn scaled_runs() -> Vec<RunRow> {
        let mut rows = Vec::new();
        for (p, policy) in ["least_requests", "round_robin"].iter().enumerate() {
            for (a, autoscaler) in ["fixed", "hpa"].iter().enumerate() {
                let values = METRICS
                    .iter()
                    .map(|d| match d.name {
                        "gpu_hours" => Some(1.0 + a as f64),
                        "cost_usd" => Some(4.0 * (1.0 + a as f64)),
                        "ttft_ms_p95" => Some(100.0 / (1.0 + a as f64) + p as f64),
                        _ => Some(1.0),
                    })
                    .collect();
                rows.push(RunRow {
                    key: RunKey {
                        scenario: "auto".into(),
                        cell: 0,
                        params: String::new(),
                        policy: (*policy).into(),
                        autoscaler: (*autoscaler).into(),
                        replication: 0,
                    },
                    seed: 1,
                    values,
                    groups: Vec::new(),
                });
            }
        }
        rows
    }

    /// `timeseries.csv` for `rows`: the fixed runs hold 2 ready replicas; the `hpa` runs add
    /// one that provisions, loads, serves and drains. `states: false` leaves the state columns
    /// out.
    fn scaled_timeseries(rows: &[RunRow], states: bool) -> String {
        let mut t = String::from(
            "scenario,cell,params,policy,autoscaler,replication,t_s,queued,in_flight,completions_per_s",
        );
        if states {
            t.push_str(",provisioning,loading,ready,draining,arrivals_per_s,ttft_p95_ms");
        }
        t.push('\n');
        for r in rows {
            let k = &r.key;
            for s in 1..=40u32 {
                t.push_str(&format!(
                    "{},{},{},{},{},{},{s}.000,0,3,10.000",
                    k.scenario, k.cell, k.params, k.policy, k.autoscaler, k.replication
                ));
                if states {
                    let phase =
                        |a: u32, b: u32| u32::from(k.autoscaler == "hpa" && (a..b).contains(&s));
                    let ttft = if s % 5 == 0 { String::new() } else { format!("{}.000", 20 + s) };
                    t.push_str(&format!(
                        ",{},{},{},{},{}.000,{ttft}",
                        phase(5, 10),
                        phase(10, 15),
                        2 + phase(15, 30),
                        phase(30, 33),
                        10 + s % 3
                    ));
                }
                t.push('\n');
            }
        }
        t
    }

    #[test]
    fn replicas_plot_needs_state_columns_and_a_state_change() {
        let d = temp_dir("replicas");
        let rows = scaled_runs();
        std::fs::write(d.join("runs.csv"), csv_out::runs_csv(&rows)).expect("write");
        std::fs::write(d.join("summary.csv"), csv_out::summary_csv(&summarize(&rows)))
            .expect("write");
        let has = |files: &[PathBuf], n: &str| names(files).iter().any(|f| f == n);
        // Without the state columns: no replicas plot, no error.
        std::fs::write(d.join("timeseries.csv"), scaled_timeseries(&rows, false)).expect("write");
        let files = draw_dir(&d).expect("draws");
        assert!(!has(&files, "auto-replicas.svg"), "{files:?}");
        assert!(has(&files, "auto-timeseries.svg"), "the time series itself is drawn");
        // With them: one panel per autoscaler of the first policy, SVG and PNG.
        std::fs::write(d.join("timeseries.csv"), scaled_timeseries(&rows, true)).expect("write");
        let files = draw_dir(&d).expect("draws");
        assert!(has(&files, "auto-replicas.svg") && has(&files, "auto-replicas.png"), "{files:?}");
        let svg = std::fs::read_to_string(d.join("plots/auto-replicas.svg")).expect("svg");
        for want in [
            "provisioning",
            "loading",
            "draining",
            "ready",
            "offered load",
            "p95 TTFT",
            "least_requests + fixed",
            "least_requests + hpa",
            "one run per autoscaler",
        ] {
            assert!(svg.contains(want), "{want} missing");
        }
        assert!(!svg.contains("round_robin"), "only the first policy's autoscalers are panels");
        let png = std::fs::read(d.join("plots/auto-replicas.png")).expect("png");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000);
        // Nobody ever changes state (only fixed runs): skipped, and the stale files go.
        let fixed: Vec<RunRow> =
            rows.iter().filter(|r| r.key.autoscaler == "fixed").cloned().collect();
        std::fs::write(d.join("runs.csv"), csv_out::runs_csv(&fixed)).expect("write");
        std::fs::write(d.join("summary.csv"), csv_out::summary_csv(&summarize(&fixed)))
            .expect("write");
        std::fs::write(d.join("timeseries.csv"), scaled_timeseries(&fixed, true)).expect("write");
        let files = draw_dir(&d).expect("draws");
        assert!(!has(&files, "auto-replicas.png"), "{files:?}");
        assert!(
            !d.join("plots/auto-replicas.png").exists(),
            "a skipped kind's old file is removed"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn cost_plot_uses_dollars_when_priced_and_names_autoscalers() {
        let d = temp_dir("cost-usd");
        let rows = scaled_runs();
        std::fs::write(d.join("summary.csv"), csv_out::summary_csv(&summarize(&rows)))
            .expect("write");
        draw_dir(&d).expect("draws");
        let svg = std::fs::read_to_string(d.join("plots/auto-cost_vs_ttft.svg")).expect("svg");
        assert!(svg.contains("cost ($)") && !svg.contains("GPU-hours"), "dollars on the x axis");
        assert!(svg.contains("least_requests + hpa") && svg.contains("round_robin + fixed"));
        // Nothing priced (cost 0 everywhere): GPU-hours, as before.
        let ci = crate::report::metric_index("cost_usd").expect("metric");
        let unpriced: Vec<RunRow> = rows
            .into_iter()
            .map(|mut r| {
                r.values[ci] = Some(0.0);
                r
            })
            .collect();
        std::fs::write(d.join("summary.csv"), csv_out::summary_csv(&summarize(&unpriced)))
            .expect("write");
        draw_dir(&d).expect("draws");
        let svg = std::fs::read_to_string(d.join("plots/auto-cost_vs_ttft.svg")).expect("svg");
        assert!(svg.contains("cost (GPU-hours)") && !svg.contains("cost ($)"));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn malformed_inputs_are_errors_naming_the_file() {
        let d = result_dir("bad", &[50.0], false);
        std::fs::write(d.join("summary.csv"), "scenario,cell\nx,1\n").expect("write");
        let e = draw_dir(&d).expect_err("malformed summary");
        assert!(e.file.ends_with("summary.csv") && e.message.contains("missing column"), "{e}");
        let d2 = result_dir("badq", &[50.0], false);
        std::fs::write(
            d2.join("quantiles.csv"),
            "scenario,cell,params,policy,autoscaler,replication\n",
        )
        .expect("write");
        let e = draw_dir(&d2).expect_err("malformed quantiles");
        assert!(e.file.ends_with("quantiles.csv") && e.message.contains("metric"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&d2);
    }
}
