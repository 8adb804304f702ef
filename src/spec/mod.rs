//! Validated configuration: the typed, unit-converted form of a scenario that every layer
//! downstream of the scenario loader reads.
//!
//! The scenario layer produces these types; the workload, cluster, gateway, faults and engine
//! layers consume them. This module depends only on leaf modules (time, distributions, the GPU
//! and model catalogs and the latency models built from them), never on the layers that read
//! it, so data flows one way: scenario → spec → everything that runs.

pub mod client;
pub mod faults;
pub mod gateway;
pub mod llm;
pub mod pool;
pub mod protection;

pub use gateway::{GatewayConfig, Spread};
pub use pool::{PoolKind, PoolSpec};
