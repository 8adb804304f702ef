//! Scenarios: loading a YAML file, applying `--set` overrides, validating into [`Scenario`].
//!
//! Pipeline: read the file → parse YAML (syntax errors carry line:column) → apply `--set
//! KEY=VALUE` overrides on the YAML tree → deserialize into the strict raw structs of
//! [`raw`] (unknown keys and wrong types are errors naming the field and, when the file was not
//! overridden, its line:column) → [`validate`] every number and cross-field rule into a
//! [`Scenario`] whose fields are typed, unit-converted and ready to run.

pub mod autoscalers;
pub mod check_expr;
mod diagnose;
mod protection;
pub mod raw;
pub mod set;
pub mod sweep;
pub mod validate;

use crate::error::ConfigError;
use crate::policy::routing::RouterEntry;
use crate::spec::PoolSpec;
use crate::time::SimDuration;
use crate::workload::ClassSpec;
use std::path::Path;

/// A validated scenario, ready to expand into runs.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Identifier used in result rows.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The file it came from, as given.
    pub file: String,
    /// FNV-1a 64 of the file bytes plus the applied overrides (for the manifest).
    pub source_hash: u64,
    /// Scenario seed.
    pub seed: u64,
    /// Replications per policy.
    pub replications: u32,
    /// When arrivals stop and how long to drain.
    pub horizon: Horizon,
    /// Which arrivals are excluded from statistics.
    pub warmup: Warmup,
    /// Request classes.
    pub classes: Vec<ClassSpec>,
    /// Replica pools.
    pub pools: Vec<PoolSpec>,
    /// Policies to compare, in the order given.
    pub policies: Vec<PolicySpec>,
    /// Autoscalers to compare, in the order given (`fixed`, labelled `none`, by default).
    pub autoscalers: Vec<AutoscalerSpec>,
    /// Safety limits.
    pub limits: Limits,
    /// The `--set` overrides applied, as given (for reproduction commands).
    pub overrides: Vec<String>,
    /// Sweep cell index (0 without a sweep).
    pub cell: u32,
    /// The cell's values as `key=value;...` (empty without a sweep).
    pub params: String,
    /// Policy-quality check expressions, as written.
    pub checks: Vec<String>,
    /// Index of the scenario file this came from, in command-line order.
    pub file_index: usize,
    /// Sampling interval of the per-run time series (`None`: not sampled).
    pub timeseries_interval: Option<SimDuration>,
    /// Gateway instances and signal staleness.
    pub gateway: crate::spec::GatewayConfig,
    /// Request ids `from..to` whose routing decisions are traced (`--trace-decisions`).
    pub trace_decisions: Option<(u64, u64)>,
    /// Failures to inject.
    pub faults: Vec<crate::spec::faults::FaultSpec>,
    /// Whether time-series samples also record each replica's health state
    /// (`health.csv`): when sampling is on and the scenario has faults or health checks.
    pub health_timeseries: bool,
}

/// When arrivals stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    /// Stop after this many arrivals.
    pub max_requests: Option<u64>,
    /// Stop arrivals at this time.
    pub duration: Option<SimDuration>,
    /// Bound on the drain after arrivals stop.
    pub drain: Option<SimDuration>,
}

/// Warm-up: arrivals before both thresholds are passed are not measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Warmup {
    /// Number of initial arrivals excluded.
    pub requests: u64,
    /// Arrivals before this time are excluded.
    pub duration: SimDuration,
}

/// Safety limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Events per run.
    pub max_events: u64,
    /// Requests in flight at once.
    pub max_in_flight: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_events: 20_000_000_000, max_in_flight: 2_000_000 }
    }
}

/// A policy to run, with its parameters.
#[derive(Debug, Clone)]
pub struct PolicySpec {
    /// Name in result rows (defaults to the policy name).
    pub label: String,
    /// Registry entry.
    pub entry: &'static RouterEntry,
    /// Parameters as a YAML mapping (`Null` for defaults).
    pub params: serde_yaml_ng::Value,
    /// Gateway configuration for this policy's runs (the scenario's `gateway:` with the
    /// policy entry's own `gateway:` keys on top).
    pub gateway: crate::spec::GatewayConfig,
}

/// An autoscaler to run, with its parameters.
#[derive(Debug, Clone)]
pub struct AutoscalerSpec {
    /// Name in result rows (`none` for the implicit `fixed`).
    pub label: String,
    /// Registry entry.
    pub entry: &'static crate::policy::autoscale::AutoscalerEntry,
    /// Parameters (a manifest's `spec`; `Null` for defaults).
    pub params: serde_yaml_ng::Value,
    /// The pool it scales (`None`: `fixed`).
    pub pool: Option<u16>,
    /// Bounds of the pool's `spec.replicas` (min, max).
    pub bounds: (u32, u32),
    /// The activator's hold timeout when one holds the pool's requests at zero ready pods
    /// (`gateway::activator`); `None`: no activator, such requests are refused.
    pub activator: Option<SimDuration>,
    /// The scaled pool's replicas at time 0 (`None`: the pool's `replicas`).
    pub start: Option<u32>,
}

/// Options that change a scenario as it is loaded.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `KEY=VALUE` overrides by dotted path.
    pub set: Vec<String>,
}

/// Reads, overrides and validates the scenario at `path`.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Scenario, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        use std::io::ErrorKind;
        let why = match e.kind() {
            ErrorKind::NotFound => "no such file (check the path)".to_string(),
            ErrorKind::InvalidData => "is not UTF-8 text (save the scenario as UTF-8 YAML)".into(),
            _ if path.is_dir() => "is a directory (give a scenario .yaml file)".into(),
            _ => format!("cannot read scenario: {e} (check the path and its permissions)"),
        };
        ConfigError::file(&file, why)
    })?;
    load_str(&text, &file, opts)
}

/// Parses, overrides and validates scenario text; `file` names it in errors.
pub fn load_str(text: &str, file: &str, opts: &LoadOptions) -> Result<Scenario, ConfigError> {
    let raw = parse_raw(text, file, &opts.set)?;
    let mut hash_input = text.to_string();
    for kv in &opts.set {
        hash_input.push('\n');
        hash_input.push_str(kv);
    }
    let mut s = validate::validate(raw, file).map_err(|e| {
        // With overrides the value may not come from the text: no location then.
        if opts.set.is_empty() {
            diagnose::with_location(e, text)
        } else {
            e
        }
    })?;
    s.source_hash = crate::rng::fnv1a64(&hash_input);
    s.overrides = opts.set.clone();
    Ok(s)
}

/// Reads the scenario at `path` and expands its sweep: one validated [`Scenario`] per cell, in
/// cell order. The base scenario (without sweep values) must be valid on its own, so its
/// errors carry line:column; a cell's errors name the cell's values.
pub fn load_cells(path: &Path, opts: &LoadOptions) -> Result<Vec<Scenario>, ConfigError> {
    let file = path.display().to_string();
    let base = load(path, opts)?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::file(&file, format!("cannot read scenario: {e}")))?;
    expand(base, &text, &file, opts)
}

/// Like [`load_cells`] for scenario text.
pub fn load_cells_str(
    text: &str,
    file: &str,
    opts: &LoadOptions,
) -> Result<Vec<Scenario>, ConfigError> {
    let base = load_str(text, file, opts)?;
    expand(base, text, file, opts)
}

fn expand(
    base: Scenario,
    text: &str,
    file: &str,
    opts: &LoadOptions,
) -> Result<Vec<Scenario>, ConfigError> {
    let mut tree: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| ConfigError::file(file, format!("YAML syntax error: {e}")))?;
    // `--set` may define or change the sweep itself; it is applied again after each cell's
    // values so that it also overrides them.
    for kv in &opts.set {
        set::apply(&mut tree, kv)?;
    }
    let Some(node) = tree.as_mapping_mut().and_then(|m| m.remove("sweep")) else {
        return Ok(vec![base]);
    };
    let axes = sweep::parse(file, &node)?;
    let mut out = Vec::new();
    for (i, cell) in sweep::cells(&axes).iter().enumerate() {
        let params = sweep::describe(cell);
        let origin = format!("sweep cell {i} ({params})");
        let mut t = tree.clone();
        for (k, v) in cell {
            set::apply_value(&mut t, k, v.clone(), &origin)?;
        }
        for kv in &opts.set {
            set::apply(&mut t, kv)?;
        }
        let raw: raw::RawScenario = serde_yaml_ng::from_value(t).map_err(|e| {
            ConfigError::field(
                file,
                &origin,
                format!("{} (fix the sweep values)", e.to_string().replace('\n', " ")),
            )
        })?;
        let mut s = validate::validate(raw, file).map_err(|mut e| {
            e.message = format!("{} [in {origin}]", e.message);
            e
        })?;
        s.source_hash = base.source_hash;
        s.overrides = base.overrides.clone();
        s.cell = i as u32;
        s.params = params;
        out.push(s);
    }
    Ok(out)
}

/// Parses `text` into the raw structs, applying `set` overrides on the YAML tree first. With
/// overrides the tree is written back to YAML and parsed again, so schema errors still name
/// the field path (their line:column would point into the rewritten text, so it is dropped).
fn parse_raw(text: &str, file: &str, set: &[String]) -> Result<raw::RawScenario, ConfigError> {
    if set.is_empty() {
        return serde_yaml_ng::from_str(text).map_err(|e| diagnose::error(file, text, &e, true));
    }
    let mut tree: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| diagnose::error(file, text, &e, true))?;
    for kv in set {
        set::apply(&mut tree, kv)?;
    }
    let rewritten = serde_yaml_ng::to_string(&tree).map_err(|e| {
        ConfigError::file(file, format!("cannot apply --set overrides: {e} (check the values)"))
    })?;
    serde_yaml_ng::from_str(&rewritten).map_err(|e| diagnose::error(file, &rewritten, &e, false))
}
