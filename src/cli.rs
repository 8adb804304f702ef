//! The command line: `run`, `validate`, `list`. Parses flags (clap), loads scenarios, runs the
//! plan, writes results, prints the summary. Returns an exit status; `main` exits.
//!
//! Output contract: result files and the markdown table on stdout are deterministic; progress
//! and wall-clock timings go to stderr only (and not at all with `--quiet`). Bad input is
//! detected before anything is written.

use crate::error::{ConfigError, OutputError, RunError, RunFailure};
use crate::experiment;
use crate::experiment::{RunSpec, Shard};
use crate::policy::routing::ROUTERS;
use crate::report::manifest::Manifest;
use crate::report::output::ResultSet;
use crate::report::{self, RunKey};
use crate::scenario::{self, validate::policy_from_name, LoadOptions, Scenario};
use clap::{Args, Parser, Subcommand};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The bundled default scenario, used when `routelab run` gets no file.
pub const QUICKSTART_PATH: &str = "scenarios/quickstart.yaml";
const QUICKSTART_YAML: &str = include_str!("../scenarios/quickstart.yaml");

/// routelab — compare routing policies for LLM-inference clusters in a deterministic simulator.
#[derive(Debug, Parser)]
#[command(name = "routelab", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run scenarios: every policy × replication, in parallel; write CSV/markdown results.
    Run(RunArgs),
    /// Check scenarios without running them.
    Validate {
        /// Scenario files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Override a scenario key by dotted path (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// List registered components.
    List {
        /// What to list.
        #[command(subcommand)]
        what: ListWhat,
    },
    /// Paired differences between policies of a finished run (common random numbers).
    Compare {
        /// A result directory (with runs.csv).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Policy every other policy is compared with (default: the first in each cell).
        #[arg(long, value_name = "P")]
        baseline_policy: Option<String>,
        /// Metrics to compare (repeatable; default: the headline metrics).
        #[arg(long = "metric", value_name = "M")]
        metrics: Vec<String>,
    },
    /// Fail (exit 1) when a metric regressed between two summary.csv files.
    Gate {
        /// The reference summary.csv.
        #[arg(long, value_name = "FILE")]
        baseline: PathBuf,
        /// The summary.csv to check.
        #[arg(long, value_name = "FILE")]
        current: PathBuf,
        /// Metric to gate (repeatable; pairs with --tolerance in order; default: headline set).
        #[arg(long = "metric", value_name = "M")]
        metrics: Vec<String>,
        /// Allowed relative worsening, e.g. 0.05 (repeatable, one per --metric; default 0.05).
        #[arg(long = "tolerance", value_name = "T")]
        tolerances: Vec<f64>,
    },
    /// Redraw the plots of a result directory from its CSV files.
    Plot {
        /// A result directory.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Merge shard directories into the exact output of one unsharded run.
    Merge {
        /// Shard result directories.
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// `routelab list ...`.
#[derive(Debug, Subcommand)]
pub enum ListWhat {
    /// Routing policies with their parameters and defaults.
    Policies,
    /// Built-in GPUs: memory, bandwidth, dense peaks, scale-up link, confidence, aliases.
    Gpus,
    /// Built-in models: parameters, KV bytes per token, FLOPs per token, aliases.
    Models,
}

/// `routelab run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Scenario files (default: scenarios/quickstart.yaml).
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output directory (default: results/NAME, NAME the scenario name).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Override a scenario key by dotted path, e.g. workload.0.arrival.rate_per_s=80 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Run only these policies (label or registered name; repeatable).
    #[arg(long = "policy", value_name = "NAME")]
    pub policy: Vec<String>,
    /// Replications per policy (overrides the scenario).
    #[arg(long, value_name = "N")]
    pub replications: Option<u32>,
    /// Scenario seed (overrides the scenario).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Worker threads (0 = one per core). Results do not depend on it.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
    /// No progress or timing on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Run only replication R (0-based), e.g. to reproduce a failure.
    #[arg(long, value_name = "R")]
    pub only_replication: Option<u32>,
    /// Run only shard I of N (0-based, every N-th run); merge shards with `routelab merge`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Skip runs already recorded in the output directory's runs.csv.
    #[arg(long)]
    pub resume: bool,
    /// Do not draw plots.
    #[arg(long)]
    pub no_plots: bool,
    /// Also print the tables by group (class, tenant, tier, pool); summary.md always has them.
    #[arg(long)]
    pub groups: bool,
    /// Write every routing decision for request ids FROM..TO (or the first N) of each run to
    /// decisions.csv: gateway, chosen replica, the signals it saw and the live ones.
    #[arg(long, value_name = "FROM..TO")]
    pub trace_decisions: Option<String>,
}

/// Errors the CLI reports; `main` maps them to exit codes.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad scenario or flag (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `validate` found invalid scenarios, each already reported (exit 2).
    #[error("{bad} of {total} scenario file(s) invalid")]
    Invalid {
        /// Invalid files.
        bad: usize,
        /// Files checked.
        total: usize,
    },
    /// Results could not be written (exit 2).
    #[error(transparent)]
    Output(#[from] OutputError),
    /// Some runs failed (exit 2 for limits, 3 for invariant violations); rows of the others
    /// were written.
    #[error("{} run(s) failed; results of the others were written", .0.len())]
    Runs(Vec<RunError>),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Output(_) | CliError::Invalid { .. } => 2,
            CliError::Runs(errs) => {
                if errs.iter().any(|e| matches!(e.failure, RunFailure::Invariant(_))) {
                    3
                } else {
                    2
                }
            }
        }
    }
}

/// Runs the parsed command line; `Ok(code)` is the exit code (0, or 1 for failed checks).
pub fn execute(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Run(args) => run(&args),
        Command::Validate { files, set } => {
            // Check every file and report each problem, then fail if any was bad.
            let mut bad = 0;
            for f in &files {
                match scenario::load_cells(f, &LoadOptions { set: set.clone() }) {
                    Ok(cells) => println!(
                        "{}: ok ({} classes, {} replicas, {} policies, {} cell{}, {} check{})",
                        f.display(),
                        cells[0].classes.len(),
                        cells[0].pools.iter().map(|p| p.replicas).sum::<u32>(),
                        cells[0].policies.len(),
                        cells.len(),
                        if cells.len() == 1 { "" } else { "s" },
                        cells[0].checks.len(),
                        if cells[0].checks.len() == 1 { "" } else { "s" },
                    ),
                    Err(e) if files.len() == 1 => return Err(e.into()),
                    Err(e) => {
                        eprintln!("error: {e}");
                        bad += 1;
                    }
                }
            }
            if bad > 0 {
                return Err(CliError::Invalid { bad, total: files.len() });
            }
            Ok(0)
        }
        Command::List { what: ListWhat::Policies } => {
            print!("{}", list_policies());
            Ok(0)
        }
        Command::List { what: ListWhat::Gpus } => {
            print!("{}", crate::cluster::catalog::list_gpus());
            Ok(0)
        }
        Command::List { what: ListWhat::Models } => {
            print!("{}", crate::cluster::catalog::list_models());
            Ok(0)
        }
        Command::Compare { dir, baseline_policy, metrics } => {
            let out = report::compare::command(&dir, baseline_policy.as_deref(), &metrics)?;
            print!("{}", out.text);
            Ok(u8::from(out.failed))
        }
        Command::Gate { baseline, current, metrics, tolerances } => {
            let out = report::gate::command(&baseline, &current, &metrics, &tolerances)?;
            print!("{}", out.text);
            Ok(u8::from(out.failed))
        }
        Command::Plot { dir } => {
            for p in report::plot::draw_dir(&dir)? {
                println!("{}", p.display());
            }
            Ok(0)
        }
        Command::Merge { dirs, out } => {
            let merged = report::merge::merge_dirs(&dirs, &out)?;
            print!("{}", merged.text);
            Ok(u8::from(merged.failed))
        }
    }
}

/// The text of `routelab list policies`.
pub fn list_policies() -> String {
    let mut out = String::new();
    let name_w = ROUTERS.iter().map(|e| e.name.len()).max().unwrap_or(0);
    let params = || ROUTERS.iter().flat_map(|e| e.params.iter());
    let param_w = params().map(|p| p.name.len()).max().unwrap_or(0);
    let default_w = params().map(|p| p.default.len()).max().unwrap_or(0).min(24);
    for e in ROUTERS {
        out.push_str(&format!("{:<name_w$}  {}\n", e.name, e.summary));
        for p in e.params {
            out.push_str(&format!(
                "    {:<param_w$}  default {:<default_w$}  {}\n",
                p.name, p.default, p.doc
            ));
        }
    }
    out
}

fn load_all(args: &RunArgs) -> Result<Vec<Scenario>, CliError> {
    let opts = LoadOptions { set: args.set.clone() };
    let mut scenarios = Vec::new();
    if args.files.is_empty() {
        let path = Path::new(QUICKSTART_PATH);
        if path.exists() {
            scenarios.extend(scenario::load_cells(path, &opts)?);
        } else {
            scenarios.extend(scenario::load_cells_str(QUICKSTART_YAML, QUICKSTART_PATH, &opts)?);
        }
    }
    for (i, f) in args.files.iter().enumerate() {
        let cells = scenario::load_cells(f, &opts)?;
        if let Some(other) = scenarios.iter().find(|s| s.name == cells[0].name && s.file_index != i)
        {
            return Err(ConfigError::field(
                &f.display().to_string(),
                "name",
                format!(
                    "= {:?} is also the name of {}: scenario names must be unique in a run",
                    other.name, other.file
                ),
            )
            .into());
        }
        scenarios.extend(cells.into_iter().map(|mut c| {
            c.file_index = i;
            c
        }));
    }
    let trace = parse_trace(args.trace_decisions.as_deref())?;
    for s in &mut scenarios {
        s.trace_decisions = trace;
        if let Some(seed) = args.seed {
            s.seed = seed;
        }
        if let Some(r) = args.replications {
            if r == 0 {
                return Err(ConfigError::flag("--replications", "= 0: must be at least 1").into());
            }
            s.replications = r;
        }
        if let Some(r) = args.only_replication {
            if r >= s.replications {
                return Err(ConfigError::flag(
                    "--only-replication",
                    format!("= {r}: {} has replications 0..{}", s.name, s.replications),
                )
                .into());
            }
        }
        select_policies(s, &args.policy)?;
    }
    Ok(scenarios)
}

/// Parses `--trace-decisions`: `FROM..TO` (request ids, TO exclusive) or `N` (= `0..N`).
fn parse_trace(text: Option<&str>) -> Result<Option<(u64, u64)>, CliError> {
    let Some(t) = text else { return Ok(None) };
    let bad = || {
        ConfigError::flag(
            &format!("--trace-decisions {t}"),
            "expected FROM..TO request ids with FROM < TO (e.g. 1000..1100) or a count N",
        )
    };
    let (a, b) = match t.split_once("..") {
        Some((a, b)) => (
            a.trim().parse::<u64>().map_err(|_| bad())?,
            b.trim().parse::<u64>().map_err(|_| bad())?,
        ),
        None => (0, t.trim().parse::<u64>().map_err(|_| bad())?),
    };
    if a >= b || b - a > 10_000_000 {
        return Err(bad().into());
    }
    Ok(Some((a, b)))
}

fn parse_shard(text: Option<&str>) -> Result<Option<Shard>, CliError> {
    let Some(t) = text else { return Ok(None) };
    let bad = || {
        ConfigError::flag(&format!("--shard {t}"), "expected I/N with 0 <= I < N, e.g. --shard 0/4")
    };
    let (i, n) = t.split_once('/').ok_or_else(bad)?;
    let (index, count): (u32, u32) =
        (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
    if count == 0 || index >= count {
        return Err(bad().into());
    }
    Ok(Some(Shard { index, count }))
}

/// Applies `--policy` filters: keep policies whose label or name matches; a registered name
/// the scenario does not list is added with default parameters.
fn select_policies(s: &mut Scenario, wanted: &[String]) -> Result<(), CliError> {
    if wanted.is_empty() {
        return Ok(());
    }
    let mut chosen = Vec::new();
    for w in wanted {
        let matches: Vec<_> =
            s.policies.iter().filter(|p| &p.label == w || p.entry.name == w).cloned().collect();
        if matches.is_empty() {
            let mut p = policy_from_name(w)?;
            p.gateway = s.gateway.clone();
            chosen.push(p);
        } else {
            chosen.extend(matches);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    chosen.retain(|p| seen.insert(p.label.clone()));
    s.policies = chosen;
    Ok(())
}

fn default_out(scenarios: &[Scenario]) -> PathBuf {
    let mut names: Vec<&str> = scenarios.iter().map(|s| s.name.as_str()).collect();
    names.dedup();
    PathBuf::from("results").join(names.join("+"))
}

/// Loads what an earlier run left in `dir` for `--resume`; it must come from the same plan.
fn previous_results(dir: &Path, manifest: &Manifest) -> Result<Option<ResultSet>, CliError> {
    if !dir.join("manifest.json").exists() {
        return Ok(None);
    }
    let set = ResultSet::read(dir)?;
    if &set.manifest != manifest {
        return Err(ConfigError::file(
            &dir.display().to_string(),
            "holds results of a different plan (scenario, flags or version changed): use another --out, or run without --resume to replace them",
        )
        .into());
    }
    Ok(Some(set))
}

fn progress_bar(runs: usize, quiet: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(runs as u64);
    let style = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} runs  {elapsed} elapsed, ETA {eta}  {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    pb.set_style(style);
    pb
}

#[allow(clippy::disallowed_methods)] // wall-clock timing, reported on stderr only
fn run(args: &RunArgs) -> Result<u8, CliError> {
    let scenarios = load_all(args)?;
    let out_dir = args.out.clone().unwrap_or_else(|| default_out(&scenarios));
    let shard = parse_shard(args.shard.as_deref())?;
    let mut plan = experiment::plan(scenarios, args.only_replication);
    let positions = plan.positions();
    let total_runs = plan.runs.len();
    if let Some(sh) = shard {
        plan.keep_shard(sh);
    }
    let manifest = Manifest::new(&plan.scenarios, &plan.replications, total_runs, shard);
    let mut previous = if args.resume { previous_results(&out_dir, &manifest)? } else { None };
    if let Some(p) = &mut previous {
        // Drop detail records of runs whose row never made it (an interrupted write).
        p.sort(&positions);
    }
    let done: BTreeSet<RunKey> =
        previous.iter().flat_map(|p| p.runs.iter().map(|r| r.key.clone())).collect();
    let todo: Vec<RunSpec> =
        plan.runs.iter().copied().filter(|&s| !done.contains(&plan.key(s))).collect();

    let pb = progress_bar(todo.len(), args.quiet);
    let sim_s = std::sync::Mutex::new(0.0f64);
    let started = std::time::Instant::now();
    let tick = |window_s: f64| {
        if let Ok(mut t) = sim_s.lock() {
            *t += window_s;
            let rate = *t / started.elapsed().as_secs_f64().max(1e-9);
            pb.set_message(format!("{rate:.0} simulated s per wall s"));
        }
        pb.inc(1);
    };
    let mut set = previous.unwrap_or(ResultSet {
        runs: Vec::new(),
        quantiles: Vec::new(),
        timeseries: Vec::new(),
        routing: Vec::new(),
        decisions: Vec::new(),
        health: Vec::new(),
        faults: Vec::new(),
        manifest: manifest.clone(),
    });
    let mut errors = Vec::new();
    let mut events = 0.0;
    // Runs go in chunks; after a chunk, if a while has passed, the directory is rewritten
    // with everything so far, so an interrupted sweep loses little (`--resume` skips it).
    let chunk = 64.max(8 * rayon::current_num_threads());
    let mut last_save = std::time::Instant::now();
    for part in todo.chunks(chunk) {
        for r in experiment::execute_runs(&plan, part, args.threads, &tick) {
            match r {
                Ok(x) => {
                    events += x.row.get("events").unwrap_or(0.0);
                    set.runs.push(x.row);
                    set.quantiles.extend(x.quantiles);
                    set.timeseries.extend(x.timeseries);
                    set.routing.extend(x.routing);
                    set.decisions.extend(x.decisions);
                    set.health.extend(x.health);
                    set.faults.extend(x.faults);
                }
                Err(e) => errors.push(e),
            }
        }
        if last_save.elapsed().as_secs() >= 10 && set.runs.len() < plan.runs.len() {
            set.sort(&positions);
            set.write(&out_dir)?;
            last_save = std::time::Instant::now();
        }
    }
    pb.finish_and_clear();
    let elapsed = started.elapsed();
    set.sort(&positions);
    let md = set.write(&out_dir)?;
    if args.groups {
        print!("{}", report::markdown::summary_md(&report::summarize(&set.runs), true));
    } else {
        print!("{md}");
    }
    // A shard holds only part of each cell, so its checks wait for `merge`.
    let checks = if shard.is_none() {
        report::check::evaluate_all(&plan.scenarios, &report::summarize(&set.runs), &set.runs)
    } else {
        report::CommandOutput::default()
    };
    if !checks.text.is_empty() {
        print!("\n{}", checks.text);
    }
    if !args.no_plots && shard.is_none() {
        report::plot::draw_dir(&out_dir)?;
    }
    if !args.quiet {
        eprintln!(
            "{} runs in {:.2} s wall ({:.1} M events/s across threads){}; results in {}",
            todo.len(),
            elapsed.as_secs_f64(),
            events / elapsed.as_secs_f64().max(1e-9) / 1e6,
            if done.is_empty() { String::new() } else { format!(", {} resumed", done.len()) },
            out_dir.display()
        );
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("error: {e}");
        }
        return Err(CliError::Runs(errors));
    }
    Ok(u8::from(checks.failed))
}
