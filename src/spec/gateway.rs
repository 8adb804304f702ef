//! The `gateway:` section as validated: gateway instances and how fresh their signals are.

use crate::time::SimDuration;

/// How requests are spread over gateway instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Spread {
    /// Uniformly at random (stream `gateway:spread`).
    #[default]
    Random,
    /// In turn.
    RoundRobin,
}

/// The `gateway:` section of a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GatewayConfig {
    /// Independent gateway instances.
    pub replicas: u32,
    /// How requests pick an instance.
    pub spread: Spread,
    /// Scrape period of replica metrics (`ZERO`: live).
    pub metrics_refresh: SimDuration,
    /// Delay of KV events on their way to the KV index.
    pub kv_event_delay: SimDuration,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            replicas: 1,
            spread: Spread::Random,
            metrics_refresh: SimDuration::ZERO,
            kv_event_delay: SimDuration::ZERO,
        }
    }
}
