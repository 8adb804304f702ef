//! Per-run detail files beside `runs.csv`: `quantiles.csv` (latency quantiles on a fixed
//! grid, for CDF plots), `timeseries.csv` (sampled cluster state, when the scenario asks
//! for it: queues, rates, replicas by lifecycle state, offered load and the p95 TTFT of each
//! sample window), `health.csv` (each replica's health state at those samples, when the scenario has
//! faults or health checks), `faults.csv` (the fault windows that opened), `routing.csv` and
//! `decisions.csv`. Every record starts with the run key columns, so shards and resumed runs merge by
//! sorting records on the run's position in the plan.

use super::{fmt_value, RunKey};
use crate::engine::RunOutput;
use crate::metrics::Latency;

/// The run key columns every per-run file starts with.
pub const KEY_COLUMNS: &[&str] =
    &["scenario", "cell", "params", "policy", "autoscaler", "replication"];

/// Quantiles written per metric: 0.01..0.99 by 0.01, then 0.995, 0.999, 0.9999.
pub fn quantile_grid() -> Vec<f64> {
    let mut g: Vec<f64> = (1..=99).map(|i| f64::from(i) / 100.0).collect();
    g.extend([0.995, 0.999, 0.9999]);
    g
}

/// Header of `quantiles.csv`.
pub fn quantiles_header() -> Vec<&'static str> {
    [KEY_COLUMNS, &["metric", "quantile", "value_ms"]].concat()
}

/// Header of `timeseries.csv`.
pub fn timeseries_header() -> Vec<&'static str> {
    [
        KEY_COLUMNS,
        &[
            "t_s",
            "queued",
            "in_service",
            "in_flight",
            "completions_per_s",
            "kv_util",
            "admitted_per_s",
            "rejected_per_s",
            "errors_per_s",
            "gateway_queued",
            "ejected",
            "down",
            "provisioning",
            "loading",
            "ready",
            "draining",
            "arrivals_per_s",
            "ttft_p95_ms",
        ],
    ]
    .concat()
}

fn key_fields(k: &RunKey) -> Vec<String> {
    vec![
        k.scenario.clone(),
        k.cell.to_string(),
        k.params.clone(),
        k.policy.clone(),
        k.autoscaler.clone(),
        k.replication.to_string(),
    ]
}

/// `quantiles.csv` records of one run.
pub fn quantile_records(key: &RunKey, out: &RunOutput) -> Vec<Vec<String>> {
    let r = &out.recorder;
    let metrics: [(&str, &Latency); 3] =
        [("ttft_ms", &r.ttft), ("e2e_ms", &r.e2e), ("queue_wait_ms", &r.queue_wait)];
    let grid = quantile_grid();
    let mut recs = Vec::new();
    for (name, lat) in metrics {
        if lat.count() == 0 {
            continue;
        }
        for &q in &grid {
            let mut rec = key_fields(key);
            rec.push(name.to_string());
            rec.push(format!("{q}"));
            rec.push(fmt_value(lat.quantile_ms(q), 3));
            recs.push(rec);
        }
    }
    recs
}

/// `timeseries.csv` records of one run.
pub fn timeseries_records(key: &RunKey, out: &RunOutput) -> Vec<Vec<String>> {
    out.timeseries
        .iter()
        .map(|s| {
            let mut rec = key_fields(key);
            rec.push(fmt_value(Some(s.time.as_secs_f64()), 3));
            rec.push(s.queued.to_string());
            rec.push(s.in_service.to_string());
            rec.push(s.in_flight.to_string());
            rec.push(fmt_value(Some(s.completions_per_s), 3));
            rec.push(fmt_value(s.kv_util, 4));
            rec.push(fmt_value(Some(s.admitted_per_s), 3));
            rec.push(fmt_value(Some(s.rejected_per_s), 3));
            rec.push(fmt_value(Some(s.errors_per_s), 3));
            rec.push(s.gateway_queued.to_string());
            rec.push(s.ejected.to_string());
            rec.push(s.down.to_string());
            for n in s.replicas {
                rec.push(n.to_string());
            }
            rec.push(fmt_value(Some(s.arrivals_per_s), 3));
            rec.push(fmt_value(s.ttft_p95_ms, 3));
            rec
        })
        .collect()
}

/// Header of `health.csv`.
pub fn health_header() -> Vec<&'static str> {
    [KEY_COLUMNS, &["t_s", "replica", "name", "state"]].concat()
}

/// `health.csv` records of one run: every replica's state at every sample.
pub fn health_records(key: &RunKey, out: &RunOutput) -> Vec<Vec<String>> {
    out.health
        .iter()
        .map(|h| {
            let mut rec = key_fields(key);
            rec.push(fmt_value(Some(h.time.as_secs_f64()), 3));
            rec.push(h.replica.to_string());
            rec.push(out.replica_names.get(h.replica as usize).cloned().unwrap_or_default());
            rec.push(h.state.name().to_string());
            rec
        })
        .collect()
}

/// Header of `faults.csv`.
pub fn faults_header() -> Vec<&'static str> {
    [KEY_COLUMNS, &["fault", "kind", "replica", "name", "start_s", "end_s"]].concat()
}

/// `faults.csv` records of one run: every fault window that opened.
pub fn fault_records(key: &RunKey, out: &RunOutput) -> Vec<Vec<String>> {
    out.faults
        .iter()
        .map(|w| {
            let mut rec = key_fields(key);
            rec.push(w.fault.to_string());
            rec.push(w.kind.to_string());
            rec.push(w.replica.to_string());
            rec.push(out.replica_names.get(w.replica as usize).cloned().unwrap_or_default());
            rec.push(fmt_value(Some(w.start.as_secs_f64()), 3));
            rec.push(fmt_value(Some(w.end.as_secs_f64()), 3));
            rec
        })
        .collect()
}

/// Header of `routing.csv`.
pub fn routing_header() -> Vec<&'static str> {
    [KEY_COLUMNS, &["replica", "pool", "routed", "share"]].concat()
}

/// `routing.csv` records of one run: measured requests routed to each replica and their share.
pub fn routing_records(key: &RunKey, out: &RunOutput) -> Vec<Vec<String>> {
    let total: u64 = out.routed.iter().sum();
    out.routed
        .iter()
        .enumerate()
        .map(|(r, &n)| {
            let mut rec = key_fields(key);
            rec.push(r.to_string());
            rec.push(out.pool_of.get(r).map_or(0, |&p| p).to_string());
            rec.push(n.to_string());
            rec.push(fmt_value((total > 0).then(|| n as f64 / total as f64), 6));
            rec
        })
        .collect()
}

/// Header of `decisions.csv`.
pub fn decisions_header() -> Vec<&'static str> {
    [
        KEY_COLUMNS,
        &[
            "request",
            "t_s",
            "gateway",
            "class",
            "replica",
            "candidates",
            "in_flight",
            "queued_seen",
            "queued_live",
            "kv_util_seen",
            "matched_blocks",
            "prompt_blocks",
        ],
    ]
    .concat()
}

/// `decisions.csv` records of one run.
pub fn decision_records(key: &RunKey, out: &RunOutput) -> Vec<Vec<String>> {
    out.decisions
        .iter()
        .map(|d| {
            let mut rec = key_fields(key);
            rec.push(d.id.to_string());
            rec.push(fmt_value(Some(d.time.as_secs_f64()), 6));
            rec.push(d.gateway.to_string());
            rec.push(d.class.to_string());
            rec.push(d.replica.to_string());
            rec.push(d.candidates.to_string());
            rec.push(d.in_flight.to_string());
            rec.push(d.queued_seen.to_string());
            rec.push(d.queued_live.to_string());
            rec.push(fmt_value(Some(f64::from(d.kv_util_seen)), 4));
            rec.push(d.matched_blocks.to_string());
            rec.push(d.prompt_blocks.to_string());
            rec
        })
        .collect()
}

/// A CSV file from a header and records, in the order given.
pub fn keyed_csv(header: &[&str], records: &[Vec<String>]) -> Vec<u8> {
    let mut w =
        csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    let _ = w.write_record(header);
    for r in records {
        let _ = w.write_record(r);
    }
    w.into_inner().unwrap_or_default()
}

/// Reads a per-run CSV back: its header and records. The first columns must be the key.
pub fn read_keyed(text: &str) -> Result<(Vec<String>, Vec<Vec<String>>), String> {
    let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("cannot read the header: {e}"))?
        .iter()
        .map(String::from)
        .collect();
    if header.len() < KEY_COLUMNS.len() || header[..KEY_COLUMNS.len()] != *KEY_COLUMNS {
        return Err(format!("the first columns must be {}", KEY_COLUMNS.join(", ")));
    }
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("malformed CSV: {e}"))?;
        out.push(rec.iter().map(String::from).collect());
    }
    Ok((header, out))
}

/// The run key of a record read by [`read_keyed`].
pub fn record_key(rec: &[String]) -> Option<RunKey> {
    Some(RunKey {
        scenario: rec.first()?.clone(),
        cell: rec.get(1)?.parse().ok()?,
        params: rec.get(2)?.clone(),
        policy: rec.get(3)?.clone(),
        autoscaler: rec.get(4)?.clone(),
        replication: rec.get(5)?.parse().ok()?,
    })
}
