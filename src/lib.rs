//! # routelab
//!
//! A deterministic discrete-event simulator of LLM-inference clusters and a benchmark lab for
//! routing, health-checking and admission (and, later, autoscaling) policies.
//!
//! ## Reading guide
//!
//! Follow a run from the outside in:
//!
//! 1. [`cli`] parses the command line; [`scenario`] reads a YAML file into strict raw structs
//!    ([`scenario::raw`]), applies `--set` overrides ([`scenario::set`]) and validates it into a
//!    [`scenario::Scenario`] ([`scenario::validate`], `scenario/protection.rs` for faults,
//!    health and admission). The validated parts every layer reads are plain spec types in
//!    [`spec`] (pools, `llm` settings, gateway, faults, clients, protection parameters), so
//!    data flows one way: scenario → workload → engine → cluster / gateway / policy → metrics
//!    → report.
//! 2. [`experiment`] expands scenarios × policies × replications into runs and executes them in
//!    parallel with rayon, collecting rows in plan order.
//! 3. [`engine`] runs one of them: events ordered by `(time, rank, seq)` ([`engine::event`]) in
//!    a heap ([`engine::queue`]), client calls and their attempts in slabs
//!    ([`engine::request`]), the single dispatch `match` in the run loop; each kind of event is
//!    handled in its own file (arrivals, calls and retries, service, deadlines, failures,
//!    probes). The [`workload`] generates arrivals lazily per class from named random streams
//!    ([`rng`]); [`faults`] turns the scenario's fault list into timed windows; the
//!    [`gateway`] admits each call ([`gateway::admission`], [`gateway::queue`]), filters
//!    replicas by health ([`gateway::health`] over active checks, nginx passive health, Envoy
//!    outlier detection, circuit breakers, readiness) and routes with a policy from the
//!    registry in [`policy::routing`]; the [`cluster`] holds replicas: `queue` servers, or
//!    `llm` engines ([`cluster::llm`]: vLLM-v1 scheduling over a KV block manager with prefix
//!    caching, [`cluster::kv`], timed by a latency model, [`cluster::latency`], built from the
//!    GPU and model catalogs, [`cluster::catalog`]).
//! 4. [`metrics`] records outcomes and latencies, overall and per group (class, tenant, tier,
//!    pool), and checks invariants at the end of the run; [`report`] turns outputs into rows,
//!    summaries, CSV, markdown, plots and the manifest.
//!
//! Time is [`time::SimTime`], `u64` nanoseconds. Errors are typed ([`error`]); only `main`
//! prints and exits.

#![warn(missing_docs)]

pub mod cli;
pub mod cluster;
pub mod engine;
pub mod error;
pub mod experiment;
pub mod faults;
pub mod gateway;
pub mod metrics;
pub mod policy;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod spec;
pub mod time;
pub mod workload;
