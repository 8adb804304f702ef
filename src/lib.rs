//! routelab
pub mod cli;
pub mod cluster;
pub mod engine;
pub mod error;
pub mod experiment;
pub mod gateway;
pub mod metrics;
pub mod policy;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod time;
pub mod workload;
