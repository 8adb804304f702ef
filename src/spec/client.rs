//! What a class's clients do: how long they wait and whether they retry, and the tier their
//! requests belong to at the gateway.

use super::protection::RetryParams;
use crate::time::SimDuration;

/// Client-side settings of one class (`timeout_s` stays on the class itself).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientSpec {
    /// The client gives up when no first token came this long after arrival
    /// (`ttft_timeout_s`).
    pub ttft_timeout: Option<SimDuration>,
    /// Retry policy (`retries:`), unless the gateway's overrides it.
    pub retries: Option<RetryParams>,
}

/// The tier of a class at the gateway (GIE `InferenceObjective` priority): higher priority
/// is served first from the admission queue; a negative priority makes requests sheddable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// Name (per-tier result rows).
    pub name: String,
    /// Priority (default 0).
    pub priority: i32,
}

impl Default for Tier {
    fn default() -> Tier {
        Tier { name: "standard".to_string(), priority: 0 }
    }
}
