//! Replica pools as validated: how many replicas, their routing weight and what they are.

use crate::workload::dist::Dist;

/// A pool of identical replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSpec {
    /// Pool name.
    pub name: String,
    /// Number of replicas.
    pub replicas: u32,
    /// Routing weight of each replica.
    pub weight: u32,
    /// A backup pool (nginx `backup`): used by a gateway only when no primary replica serving
    /// the model is available to it.
    pub backup: bool,
    /// What the replicas are.
    pub kind: PoolKind,
    /// How an autoscaled replica starts and stops.
    pub lifecycle: Lifecycle,
}

/// What an autoscaled replica goes through: provisioning (node and scheduling), image pull,
/// model load (llm pools: their `cold_start`), ready; on scale-down a drain bounded by the
/// termination grace period.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    /// Node provisioning and scheduling, in seconds (drawn per new replica).
    pub provision_s: Option<Dist>,
    /// Image pull.
    pub image_pull: crate::time::SimDuration,
    /// Model load of a queue replica.
    pub load: crate::time::SimDuration,
    /// `terminationGracePeriodSeconds`.
    pub termination_grace: crate::time::SimDuration,
    /// Dollars per GPU-hour: the pool's `lifecycle.gpu_hour_usd`, else (llm pools) its GPU's
    /// catalog price (`data/gpus.csv` `usd_per_gpu_hour`), else 0.
    pub gpu_hour_usd: f64,
}

impl Default for Lifecycle {
    fn default() -> Lifecycle {
        Lifecycle {
            provision_s: None,
            image_pull: crate::time::SimDuration::ZERO,
            load: crate::time::SimDuration::ZERO,
            termination_grace: crate::time::SimDuration::from_secs(30),
            gpu_hour_usd: 0.0,
        }
    }
}

/// Replica model of a pool.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolKind {
    /// `slots` servers and a FIFO queue per replica.
    Queue {
        /// Parallel servers per replica.
        slots: u32,
        /// Pool-specific service time in seconds (overrides the class's).
        service_s: Option<Dist>,
        /// Most waiting requests per replica; arrivals beyond are rejected.
        queue_capacity: Option<u32>,
    },
    /// vLLM-style continuous-batching engines.
    Llm(Box<super::llm::LlmPool>),
}
