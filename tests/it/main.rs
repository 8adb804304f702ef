//! The one integration-test binary. Modules are named by behaviour.

mod autoscaling;
mod common;
mod config;
mod cost;
mod deploy;
mod determinism;
mod fault_invariants;
mod gateway;
mod invariants;
mod lab;
mod limits;
mod llm_invariants;
mod policies;
mod prefix_cache;
mod protection;
mod protection_edges;
mod queueing;
mod sweeps;
