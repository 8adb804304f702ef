//! Policies: routing now; admission, health and autoscaling policies join here later.
//!
//! Policies are the only trait objects in the simulator. Each is built per run from plain data
//! (its registry entry and its YAML parameters) inside the worker thread that runs it.

pub mod autoscale;
pub mod routing;
