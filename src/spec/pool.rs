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
