//! What the plots read from a result directory: `summary.csv` (or `runs.csv`), and the optional
//! `quantiles.csv` and `timeseries.csv`, grouped per scenario.
//!
//! Columns are looked up by name. Optional files that are absent give empty data (the plots
//! that need them are skipped); files that exist but cannot be parsed are errors naming the file.

use crate::error::ConfigError;
use crate::report::{csv_in, summarize, SummaryRow};
use std::collections::BTreeMap;
use std::path::Path;

/// One plotted series: a policy (and its autoscaler, when a scenario has several).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeriesKey {
    /// Policy label.
    pub policy: String,
    /// Autoscaler label.
    pub autoscaler: String,
}

/// A series as drawn: its legend label and its palette slot.
#[derive(Debug, Clone)]
pub struct Series {
    /// Which rows belong to it.
    pub key: SeriesKey,
    /// Legend text.
    pub label: String,
    /// Index into the palette (fixed by first appearance in the directory).
    pub color: usize,
}

/// A sweep cell.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Cell index.
    pub index: u32,
    /// `key=value;...` as written.
    pub params: String,
    /// Parsed `(key, value)` pairs.
    pub pairs: Vec<(String, String)>,
}

/// The swept quantity on the x axis of the load curves.
#[derive(Debug, Clone)]
pub struct LoadAxis {
    /// Axis description with units.
    pub label: String,
    /// The key is an arrival rate in requests per second (offered load).
    pub is_rate: bool,
    /// Value per cell, in cell order.
    pub x: Vec<f64>,
}

/// A summary value: mean and 95% CI half-width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Val {
    /// Mean over replications.
    pub mean: f64,
    /// CI half-width (absent with one replication).
    pub ci: Option<f64>,
}

/// Quantile curve of one (cell, series): `(quantile, value_ms)` sorted by quantile.
#[derive(Debug, Clone, Default)]
pub struct QuantileCurve {
    /// Points, quantile ascending.
    pub points: Vec<(f64, f64)>,
    /// Replications averaged.
    pub replications: usize,
}

/// Samples of one run's cluster state.
#[derive(Debug, Clone, Default)]
pub struct TimeSeries {
    /// Sample times (s).
    pub t: Vec<f64>,
    /// Column name to values, for the plotted columns present in the file.
    pub columns: BTreeMap<String, Vec<f64>>,
}

/// Everything the plots of one scenario need.
#[derive(Debug, Clone)]
pub struct ScenarioData {
    /// Scenario name.
    pub name: String,
    /// Cells in index order.
    pub cells: Vec<Cell>,
    /// Series in first-appearance order.
    pub series: Vec<Series>,
    /// Most replications of any row.
    pub replications: u32,
    /// Summary rows of this scenario.
    pub rows: Vec<SummaryRow>,
    /// TTFT quantile curves per (cell, series index), replications averaged.
    pub ttft_quantiles: BTreeMap<(u32, usize), QuantileCurve>,
    /// Time series of the chosen run per series index (first cell, lowest replication).
    pub timeseries: BTreeMap<usize, TimeSeries>,
    /// Cell and replication of the time series.
    pub timeseries_run: Option<(u32, u32)>,
    /// Fault windows of that run: (start s, end s, `kind replica`), in opening order.
    pub faults: Vec<(f64, f64, String)>,
    /// Replica health states of that run per series index.
    pub health: BTreeMap<usize, HealthGrid>,
}

/// Every replica's health state at each sample of one run.
#[derive(Debug, Clone, Default)]
pub struct HealthGrid {
    /// Sample times (s).
    pub t: Vec<f64>,
    /// Replica names, by replica id.
    pub names: Vec<String>,
    /// `states[replica][sample]`: 0 ready, 1 degraded, 2 ejected, 3 failed, 4 recovering.
    pub states: Vec<Vec<u8>>,
}

/// The health states in `health.csv`, in [`HealthGrid`] code order.
pub const HEALTH_STATES: &[&str] =
    &["ready", "degraded", "ejected", "failed", "recovering", "draining", "off"];

impl ScenarioData {
    /// The summary value of `metric` for `cell` and series `s` (`None` when undefined, e.g.
    /// an LLM metric of a queue cluster, or not finite).
    pub fn value(&self, cell: u32, s: usize, metric: &str) -> Option<Val> {
        let key = &self.series[s].key;
        let row = self.rows.iter().find(|r| {
            r.key.cell == cell && r.key.policy == key.policy && r.key.autoscaler == key.autoscaler
        })?;
        let i = crate::report::metric_index(metric)?;
        let v = row.values[i];
        let mean = v.mean.filter(|m| m.is_finite())?;
        Some(Val { mean, ci: v.ci95.filter(|c| c.is_finite()) })
    }

    /// The load axis, when exactly one sweep key varies across cells and its values are numbers.
    pub fn load_axis(&self) -> Option<LoadAxis> {
        if self.cells.len() < 2 {
            return None;
        }
        let mut keys: Vec<&str> = Vec::new();
        for c in &self.cells {
            for (k, _) in &c.pairs {
                if !keys.contains(&k.as_str()) {
                    keys.push(k);
                }
            }
        }
        let value =
            |c: &Cell, k: &str| c.pairs.iter().find(|(ck, _)| ck == k).map(|(_, v)| v.clone());
        let varying: Vec<&str> = keys
            .into_iter()
            .filter(|k| self.cells.iter().any(|c| value(c, k) != value(&self.cells[0], k)))
            .collect();
        let [key] = varying[..] else { return None };
        let x = self
            .cells
            .iter()
            .map(|c| value(c, key).and_then(|v| v.parse::<f64>().ok()).filter(|x| x.is_finite()))
            .collect::<Option<Vec<f64>>>()?;
        Some(LoadAxis { label: key_label(key), is_rate: is_rate_key(key), x })
    }

    /// A short label for a cell: the values of the keys that vary, or `cell N`.
    pub fn cell_label(&self, cell: &Cell) -> String {
        let varying: Vec<&(String, String)> = cell
            .pairs
            .iter()
            .filter(|(k, v)| {
                self.cells
                    .iter()
                    .any(|c| c.pairs.iter().find(|(ck, _)| ck == k).map(|p| &p.1) != Some(v))
            })
            .collect();
        if varying.is_empty() {
            format!("cell {}", cell.index)
        } else {
            varying.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join(", ")
        }
    }

    /// The cell label with the load axis unit when there is one (`80 req/s`).
    pub fn cell_label_unit(&self, cell: &Cell) -> String {
        let label = self.cell_label(cell);
        let unit = self.load_axis().and_then(|a| {
            let (_, rest) = a.label.rsplit_once('(')?;
            rest.strip_suffix(')').map(str::to_string)
        });
        match unit {
            Some(u) => format!("{label} {u}"),
            None => label,
        }
    }

    /// A description of the cell for titles: `key=value, ...` of the varying keys.
    pub fn cell_title(&self, index: u32) -> String {
        let Some(cell) = self.cells.iter().find(|c| c.index == index) else {
            return format!("cell {index}");
        };
        if self.cells.len() < 2 {
            return String::new();
        }
        match self.load_axis() {
            Some(ax) => format!("{} = {}", ax.label, self.cell_label(cell)),
            None => format!("cell {} ({})", cell.index, cell.params.replace(';', ", ")),
        }
    }
}

fn is_rate_key(key: &str) -> bool {
    key.ends_with("rate_per_s")
}

/// An axis description with units for a dotted scenario key.
pub fn key_label(key: &str) -> String {
    if is_rate_key(key) {
        return "arrival rate (req/s)".to_string();
    }
    let last = key.rsplit('.').find(|part| part.parse::<usize>().is_err()).unwrap_or(key);
    let (base, unit) = if let Some(b) = last.strip_suffix("_per_s") {
        (b, " (1/s)")
    } else if let Some(b) = last.strip_suffix("_s") {
        (b, " (s)")
    } else if let Some(b) = last.strip_suffix("_tokens") {
        (b, " (tokens)")
    } else {
        (last, "")
    };
    format!("{}{unit}", base.replace('_', " "))
}

/// Parses a `params` cell: `key=value;key=value`.
pub fn parse_params(params: &str) -> Vec<(String, String)> {
    params
        .split(';')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

fn read_text(path: &Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::file(&path.display().to_string(), format!("cannot read: {e}"))),
    }
}

fn bad(path: &Path, msg: impl Into<String>) -> ConfigError {
    ConfigError::file(&path.display().to_string(), msg)
}

/// Reads the result directory `dir`: one [`ScenarioData`] per scenario, in file order.
pub fn load(dir: &Path) -> Result<Vec<ScenarioData>, ConfigError> {
    if !dir.is_dir() {
        return Err(bad(
            dir,
            "not a directory (pass a result directory written by `routelab run`)",
        ));
    }
    let summary_path = dir.join("summary.csv");
    let runs_path = dir.join("runs.csv");
    let mut rows = if let Some(text) = read_text(&summary_path)? {
        csv_in::read_summary(&text).map_err(|e| bad(&summary_path, e))?
    } else if let Some(text) = read_text(&runs_path)? {
        let mut runs = csv_in::read_runs(&text).map_err(|e| bad(&runs_path, e))?;
        runs.sort_by(|a, b| a.key.cmp(&b.key));
        summarize(&runs)
    } else {
        return Err(bad(
            &summary_path,
            "not found, and no runs.csv either (pass a result directory written by `routelab run`)",
        ));
    };

    // The plots show whole runs; rows by group stay in the tables.
    rows.retain(|r| r.group == "all");
    // Series colours follow first appearance across the whole directory.
    let mut palette_order: Vec<SeriesKey> = Vec::new();
    let mut scenario_order: Vec<String> = Vec::new();
    for r in &rows {
        let k = SeriesKey { policy: r.key.policy.clone(), autoscaler: r.key.autoscaler.clone() };
        if !palette_order.contains(&k) {
            palette_order.push(k);
        }
        if !scenario_order.contains(&r.key.scenario) {
            scenario_order.push(r.key.scenario.clone());
        }
    }

    let mut out: Vec<ScenarioData> = scenario_order
        .iter()
        .map(|name| {
            let mine: Vec<SummaryRow> =
                rows.iter().filter(|r| &r.key.scenario == name).cloned().collect();
            scenario(name, mine, &palette_order)
        })
        .collect();

    load_quantiles(&dir.join("quantiles.csv"), &mut out)?;
    load_timeseries(&dir.join("timeseries.csv"), &mut out)?;
    if let Some(text) = read_text(&dir.join("faults.csv"))? {
        read_faults(&text, &mut out).map_err(|e| bad(&dir.join("faults.csv"), e))?;
    }
    if let Some(text) = read_text(&dir.join("health.csv"))? {
        read_health(&text, &mut out).map_err(|e| bad(&dir.join("health.csv"), e))?;
    }
    Ok(out)
}

fn scenario(name: &str, rows: Vec<SummaryRow>, palette: &[SeriesKey]) -> ScenarioData {
    let mut cells: BTreeMap<u32, Cell> = BTreeMap::new();
    let mut keys: Vec<SeriesKey> = Vec::new();
    for r in &rows {
        cells.entry(r.key.cell).or_insert_with(|| Cell {
            index: r.key.cell,
            params: r.key.params.clone(),
            pairs: parse_params(&r.key.params),
        });
        let k = SeriesKey { policy: r.key.policy.clone(), autoscaler: r.key.autoscaler.clone() };
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let several_autoscalers = keys.iter().any(|k| k.autoscaler != keys[0].autoscaler);
    let series = keys
        .into_iter()
        .map(|key| Series {
            label: if several_autoscalers {
                format!("{} + {}", key.policy, key.autoscaler)
            } else {
                key.policy.clone()
            },
            color: palette.iter().position(|p| p == &key).unwrap_or(0),
            key,
        })
        .collect();
    ScenarioData {
        name: name.to_string(),
        cells: cells.into_values().collect(),
        series,
        replications: rows.iter().map(|r| r.replications).max().unwrap_or(0),
        rows,
        ttft_quantiles: BTreeMap::new(),
        timeseries: BTreeMap::new(),
        timeseries_run: None,
        faults: Vec::new(),
        health: BTreeMap::new(),
    }
}

/// Column positions of the run key in a per-run CSV.
struct KeyCols {
    scenario: usize,
    cell: usize,
    policy: usize,
    autoscaler: usize,
    replication: usize,
}

fn col(h: &csv::StringRecord, name: &str) -> Result<usize, String> {
    h.iter().position(|c| c == name).ok_or_else(|| format!("missing column `{name}`"))
}

fn key_cols(h: &csv::StringRecord) -> Result<KeyCols, String> {
    Ok(KeyCols {
        scenario: col(h, "scenario")?,
        cell: col(h, "cell")?,
        policy: col(h, "policy")?,
        autoscaler: col(h, "autoscaler")?,
        replication: col(h, "replication")?,
    })
}

fn field(rec: &csv::StringRecord, i: usize) -> &str {
    rec.get(i).unwrap_or("")
}

fn int(rec: &csv::StringRecord, i: usize, name: &str) -> Result<u32, String> {
    let line = rec.position().map_or(0, |p| p.line());
    field(rec, i).parse().map_err(|_| {
        format!("line {line}: column `{name}` = {:?} is not a whole number", field(rec, i))
    })
}

fn num(rec: &csv::StringRecord, i: usize, name: &str) -> Result<Option<f64>, String> {
    let line = rec.position().map_or(0, |p| p.line());
    match field(rec, i) {
        "" => Ok(None),
        "inf" => Ok(Some(f64::INFINITY)),
        s => s
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("line {line}: column `{name}` = {s:?} is not a number")),
    }
}

/// Finds the series index of a record in its scenario.
fn series_of(sc: &ScenarioData, rec: &csv::StringRecord, c: &KeyCols) -> Option<usize> {
    let (p, a) = (field(rec, c.policy), field(rec, c.autoscaler));
    sc.series.iter().position(|s| s.key.policy == p && s.key.autoscaler == a)
}

fn load_quantiles(path: &Path, scenarios: &mut [ScenarioData]) -> Result<(), ConfigError> {
    let Some(text) = read_text(path)? else { return Ok(()) };
    read_quantiles(&text, scenarios).map_err(|e| bad(path, e))
}

fn read_quantiles(text: &str, scenarios: &mut [ScenarioData]) -> Result<(), String> {
    let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let h = rdr.headers().map_err(|e| format!("cannot read the header: {e}"))?.clone();
    let c = key_cols(&h)?;
    let (metric, quantile, value) =
        (col(&h, "metric")?, col(&h, "quantile")?, col(&h, "value_ms")?);
    // (scenario index, cell, series) -> quantile bits -> (sum, count); replications seen.
    type Acc = BTreeMap<u64, (f64, usize)>;
    let mut acc: BTreeMap<(usize, u32, usize), (Acc, Vec<u32>)> = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("malformed CSV: {e}"))?;
        if field(&rec, metric) != "ttft_ms" {
            continue;
        }
        let Some(si) = scenarios.iter().position(|s| s.name == field(&rec, c.scenario)) else {
            continue;
        };
        let Some(series) = series_of(&scenarios[si], &rec, &c) else { continue };
        let cell = int(&rec, c.cell, "cell")?;
        let rep = int(&rec, c.replication, "replication")?;
        let Some(q) = num(&rec, quantile, "quantile")? else { continue };
        let Some(v) = num(&rec, value, "value_ms")? else { continue };
        if !(q > 0.0 && q <= 1.0 && v.is_finite()) {
            continue;
        }
        let entry = acc.entry((si, cell, series)).or_default();
        let e = entry.0.entry(q.to_bits()).or_insert((0.0, 0));
        e.0 += v;
        e.1 += 1;
        if !entry.1.contains(&rep) {
            entry.1.push(rep);
        }
    }
    for ((si, cell, series), (points, reps)) in acc {
        let curve = QuantileCurve {
            points: points
                .into_iter()
                .map(|(q, (s, n))| (f64::from_bits(q), s / n as f64))
                .collect(),
            replications: reps.len(),
        };
        let sc = &mut scenarios[si];
        sc.ttft_quantiles.insert((cell, series), curve);
    }
    Ok(())
}

/// Columns of `timeseries.csv` that are plotted, when present (the failure and admission
/// ones only when some sample is not zero).
pub const TIMESERIES_COLUMNS: &[&str] = &[
    "queued",
    "in_flight",
    "completions_per_s",
    "kv_util",
    "replicas",
    "admitted_per_s",
    "rejected_per_s",
    "errors_per_s",
    "gateway_queued",
    "ejected",
    "down",
];

/// Columns of `timeseries.csv` the `replicas` plot reads, when present: replicas by lifecycle
/// state, the offered load and the p95 TTFT of each sample window.
pub const REPLICA_COLUMNS: &[&str] =
    &["provisioning", "loading", "ready", "draining", "arrivals_per_s", "ttft_p95_ms"];

/// The fault windows of each scenario's time-series run (every policy sees the same ones).
fn read_faults(text: &str, scenarios: &mut [ScenarioData]) -> Result<(), String> {
    let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let h = rdr.headers().map_err(|e| format!("cannot read the header: {e}"))?.clone();
    let c = key_cols(&h)?;
    let (kind, name, start, end) =
        (col(&h, "kind")?, col(&h, "name")?, col(&h, "start_s")?, col(&h, "end_s")?);
    let mut first_series: Vec<Option<usize>> = vec![None; scenarios.len()];
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("malformed CSV: {e}"))?;
        let Some(si) = scenarios.iter().position(|s| s.name == field(&rec, c.scenario)) else {
            continue;
        };
        let Some(series) = series_of(&scenarios[si], &rec, &c) else { continue };
        let run = (int(&rec, c.cell, "cell")?, int(&rec, c.replication, "replication")?);
        if scenarios[si].timeseries_run != Some(run)
            || *first_series[si].get_or_insert(series) != series
        {
            continue;
        }
        let (Some(a), Some(b)) = (num(&rec, start, "start_s")?, num(&rec, end, "end_s")?) else {
            continue;
        };
        let label = format!("{} {}", field(&rec, kind), field(&rec, name));
        scenarios[si].faults.push((a, b, label));
    }
    Ok(())
}

/// The replica health states of each scenario's time-series run, per series.
fn read_health(text: &str, scenarios: &mut [ScenarioData]) -> Result<(), String> {
    let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let h = rdr.headers().map_err(|e| format!("cannot read the header: {e}"))?.clone();
    let c = key_cols(&h)?;
    let (t_col, rep_col, name_col, state_col) =
        (col(&h, "t_s")?, col(&h, "replica")?, col(&h, "name")?, col(&h, "state")?);
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("malformed CSV: {e}"))?;
        let Some(si) = scenarios.iter().position(|s| s.name == field(&rec, c.scenario)) else {
            continue;
        };
        let Some(series) = series_of(&scenarios[si], &rec, &c) else { continue };
        let run = (int(&rec, c.cell, "cell")?, int(&rec, c.replication, "replication")?);
        if scenarios[si].timeseries_run != Some(run) {
            continue;
        }
        let Some(t) = num(&rec, t_col, "t_s")? else { continue };
        let r = int(&rec, rep_col, "replica")? as usize;
        let line = rec.position().map_or(0, |p| p.line());
        let state = HEALTH_STATES
            .iter()
            .position(|s| *s == field(&rec, state_col))
            .ok_or_else(|| format!("line {line}: unknown state {:?}", field(&rec, state_col)))?;
        let g = scenarios[si].health.entry(series).or_default();
        if g.t.last() != Some(&t) {
            g.t.push(t);
        }
        if g.states.len() <= r {
            g.states.resize(r + 1, Vec::new());
            g.names.resize(r + 1, String::new());
        }
        g.names[r] = field(&rec, name_col).to_string();
        let k = g.t.len() - 1;
        let row = &mut g.states[r];
        row.resize(k, 0);
        row.push(state as u8);
    }
    Ok(())
}

fn load_timeseries(path: &Path, scenarios: &mut [ScenarioData]) -> Result<(), ConfigError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(bad(path, format!("cannot read: {e}"))),
    };
    read_timeseries(std::io::BufReader::new(file), scenarios).map_err(|e| bad(path, e))
}

fn read_timeseries<R: std::io::Read>(
    input: R,
    scenarios: &mut [ScenarioData],
) -> Result<(), String> {
    let mut rdr = csv::ReaderBuilder::new().from_reader(input);
    let h = rdr.headers().map_err(|e| format!("cannot read the header: {e}"))?.clone();
    let c = key_cols(&h)?;
    let t_col = col(&h, "t_s")?;
    let cols: Vec<(&str, usize)> = TIMESERIES_COLUMNS
        .iter()
        .chain(REPLICA_COLUMNS)
        .filter_map(|n| h.iter().position(|x| x == *n).map(|i| (*n, i)))
        .collect();
    // The chosen run per scenario: lowest (cell, replication) seen; samples per series.
    let mut chosen: Vec<Option<(u32, u32)>> = vec![None; scenarios.len()];
    let mut data: Vec<BTreeMap<usize, TimeSeries>> = vec![BTreeMap::new(); scenarios.len()];
    for rec in rdr.records() {
        let rec = rec.map_err(|e| format!("malformed CSV: {e}"))?;
        let Some(si) = scenarios.iter().position(|s| s.name == field(&rec, c.scenario)) else {
            continue;
        };
        let Some(series) = series_of(&scenarios[si], &rec, &c) else { continue };
        let run = (int(&rec, c.cell, "cell")?, int(&rec, c.replication, "replication")?);
        match chosen[si] {
            Some(best) if run > best => continue,
            Some(best) if run < best => data[si].clear(),
            _ => {}
        }
        chosen[si] = Some(run);
        let Some(t) = num(&rec, t_col, "t_s")? else { continue };
        let ts = data[si].entry(series).or_default();
        ts.t.push(t);
        for (name, i) in &cols {
            ts.columns
                .entry(name.to_string())
                .or_default()
                .push(num(&rec, *i, name)?.unwrap_or(f64::NAN));
        }
    }
    for (si, sc) in scenarios.iter_mut().enumerate() {
        sc.timeseries = std::mem::take(&mut data[si]);
        sc.timeseries_run = chosen[si].filter(|_| !sc.timeseries.is_empty());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_axis_labels() {
        assert_eq!(
            parse_params("workload.0.arrival.rate_per_s=40;cluster.pools.0.replicas=8"),
            vec![
                ("workload.0.arrival.rate_per_s".to_string(), "40".to_string()),
                ("cluster.pools.0.replicas".to_string(), "8".to_string())
            ]
        );
        assert!(parse_params("").is_empty());
        assert_eq!(key_label("workload.0.arrival.rate_per_s"), "arrival rate (req/s)");
        assert_eq!(key_label("cluster.pools.0.replicas"), "replicas");
        assert_eq!(key_label("workload.0.timeout_s"), "timeout (s)");
    }
}
