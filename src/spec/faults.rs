//! The `faults:` section as validated: what breaks, where and when.
//!
//! A fault entry has a kind (crash, slowdown, errors, hang, partition), a target (named
//! replicas, or a pool with a count or fraction of its replicas, or a whole pool) and a timing:
//! scheduled (`at_s`, `duration_s`) or random (per replica, up times drawn from `mtbf_s` and
//! fault durations from `mttr_s`). Which replicas a `fraction`/`count` picks and every random
//! time are drawn from the run's `faults` stream, so every policy in a cell sees the same
//! faults (common random numbers).

use crate::time::SimDuration;
use crate::workload::dist::Dist;

/// What goes wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// The replica dies: in-flight requests fail (connection reset), the KV cache is lost;
    /// while down, connections are refused. After the fault the replica restarts
    /// (`restart`) and loads its model (the pool's cold start) before it serves again, with
    /// an empty cache.
    Crash {
        /// Process restart time after the fault ends, before the model load.
        restart: SimDuration,
    },
    /// Gray failure: iterations (llm) or service times (queue) take `factor` times longer;
    /// with `ramp_to`, the factor moves linearly from `factor` to `ramp_to` over the fault.
    Slowdown {
        /// Factor at the start of the fault (>= 1 slows down).
        factor: f64,
        /// Factor at its end (`None`: constant).
        ramp_to: Option<f64>,
    },
    /// The replica answers a share of requests with an error status, fast, without serving
    /// them. Health probes still pass (the server process is up).
    Errors {
        /// Share of requests that fail, in (0, 1].
        probability: f64,
        /// The status returned (500..=599).
        status: u16,
        /// Time until the error response reaches the gateway.
        latency: SimDuration,
    },
    /// The replica accepts connections and never answers: in-flight work freezes, new
    /// requests wait, health probes time out. Work resumes when the fault ends.
    Hang,
    /// The listed gateway instances cannot reach the replica: connections time out after the
    /// gateway's connect timeout; probes from those instances fail.
    Partition {
        /// Gateway instances cut off (empty: all).
        gateways: Vec<u16>,
    },
}

/// Which replicas a fault hits.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultTarget {
    /// These replicas (global ids).
    Replicas(Vec<u32>),
    /// `count` replicas of the pool whose global ids are `first..first + size`, picked at
    /// random per run.
    Pick {
        /// First replica id of the pool.
        first: u32,
        /// Replicas in the pool.
        size: u32,
        /// How many to pick.
        count: u32,
    },
}

/// When a fault happens.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultTiming {
    /// Once, from `at` for `duration`.
    Scheduled {
        /// Start, from the beginning of the run.
        at: SimDuration,
        /// Length.
        duration: SimDuration,
    },
    /// Repeatedly and independently on every target replica: up times from `mtbf_s`, fault
    /// durations from `mttr_s` (seconds), the first up time from the start of the run.
    Random {
        /// Time between the end of one fault and the start of the next, seconds.
        mtbf_s: Dist,
        /// Length of a fault, seconds.
        mttr_s: Dist,
    },
}

/// One validated `faults:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    /// What goes wrong.
    pub kind: FaultKind,
    /// Where.
    pub target: FaultTarget,
    /// When.
    pub timing: FaultTiming,
}

impl FaultKind {
    /// The kind's name in scenario files and outputs.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Crash { .. } => "crash",
            FaultKind::Slowdown { .. } => "slowdown",
            FaultKind::Errors { .. } => "errors",
            FaultKind::Hang => "hang",
            FaultKind::Partition { .. } => "partition",
        }
    }
}
