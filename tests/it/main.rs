//! The one integration-test binary. Modules are named by behaviour.

mod common;
mod config;
mod determinism;
mod invariants;
mod limits;
mod policies;
mod queueing;
