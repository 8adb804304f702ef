//! Events and their total order.
//!
//! Every scheduled event has the key `(time, rank, seq)`, packed into one `u128` so the heap
//! compares a single integer: time in the high 64 bits, then the rank (8 bits), then `seq`, a
//! per-run push counter (56 bits). Payloads are never compared. Equal `(time, rank)` pop in
//! push order (FIFO).
//!
//! The rank table is a modelling decision; at the same instant:
//!
//! | rank | events | why |
//! |---|---|---|
//! | 0 `Capacity` | model loads done; fault windows opening and closing, crash recovery, pods provisioned, drain grace ends, endpoint changes reaching the gateways | nothing is sent to a replica that died at that instant; new capacity serves same-instant arrivals |
//! | 1 `Completion` | service completions, `llm` iteration ends, attempt results arriving (errors, connect failures) | a server freed at `t` serves an arrival at `t` (work conservation) and completion beats a timeout at `t` |
//! | 2 `Arrival` | arrivals, session turns, retries after their backoff | |
//! | 3 `Timeout` | deadline checks (client, per-try, gateway queue) | a request finishing exactly at its deadline has finished |
//! | 4 `Control` | time-series samples; scrapes; health probes, outlier-detection intervals, breaker and passive-health windows, readiness probes; autoscaler decisions and their scrapes, drain checks | they observe the state after the instant's arrivals |
//! | 5 `EndOfRun` | drain deadline | last of all |

use crate::time::SimTime;

/// A request's handle: slab index plus generation (stale handles are detected, not reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReqRef {
    /// Slot in the request slab.
    pub idx: u32,
    /// Generation of that slot when the handle was made.
    pub gen: u32,
}

/// What happens at a scheduled instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The next request of a workload class arrives.
    Arrival {
        /// Class index.
        class: u16,
    },
    /// A request finishes service on a queue replica.
    ServiceDone {
        /// The request.
        req: ReqRef,
    },
    /// The next turn of a closed-loop session is sent.
    SessionTurn {
        /// Session slot.
        session: u32,
    },
    /// An `llm` replica finished an engine iteration.
    Iteration {
        /// Replica id.
        replica: u32,
    },
    /// An `llm` replica finished loading a model.
    ModelLoaded {
        /// Replica id.
        replica: u32,
    },
    /// The earliest pending deadline of one of a class's deadline queues is due.
    Deadline {
        /// Class index.
        class: u16,
        /// Which queue (`engine::deadlines`).
        kind: u8,
    },
    /// The earliest queue timeout of a gateway instance's admission queue is due.
    GatewayDeadline {
        /// Gateway instance.
        gateway: u16,
    },
    /// An attempt whose result was decided when it was sent (a connect failure, a fast
    /// error status) gets its answer back.
    AttemptEnd {
        /// The attempt.
        req: ReqRef,
    },
    /// A call's backoff (or rate-limit delay) is over: its next attempt goes out.
    Retry {
        /// The call.
        call: crate::engine::request::CallRef,
    },
    /// A fault track's window opens or closes.
    Fault {
        /// Track index.
        track: u32,
    },
    /// A crashed replica has restarted and loaded its model.
    Recovered {
        /// Replica id.
        replica: u32,
    },
    /// A gateway instance's health timer: a probe to send or time out, an outlier interval,
    /// a breaker or passive-health window ending.
    GatewayTimer {
        /// Gateway instance.
        gateway: u16,
        /// Replica (unused by interval timers).
        replica: u32,
        /// Which timer ([`crate::gateway::TimerKind`] as `u8`).
        kind: u8,
    },
    /// The kubelet probes a replica's readiness.
    Readiness {
        /// Replica id.
        replica: u32,
    },
    /// A readiness change reaches the gateways (after the endpoint propagation delay).
    Endpoint {
        /// Replica id.
        replica: u32,
        /// Ready or not.
        ready: bool,
    },
    /// Sample cluster state into the run's time series.
    Sample,
    /// A gateway instance scrapes replica metrics.
    Scrape {
        /// Gateway instance.
        gateway: u16,
    },
    /// The drain after the horizon is over: whatever is still in flight is unfinished.
    DrainDeadline,
    /// The autoscaler decides.
    Autoscale,
    /// The autoscaled pool's pods are scraped.
    MetricScrape,
    /// A new pod's node and image are ready: its container starts loading the model.
    Provisioned {
        /// Replica id.
        replica: u32,
    },
    /// A draining replica's termination grace period is over.
    GraceEnd {
        /// Replica id.
        replica: u32,
    },
    /// Check whether draining replicas are empty.
    DrainPoll,
    /// A call held by the activator may have waited its hold timeout.
    HoldExpired {
        /// The call.
        call: crate::engine::request::CallRef,
    },
}

/// Same-instant priority of an event; lower runs first. See the module table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Rank {
    /// Faults and replica lifecycle changes.
    Capacity = 0,
    /// Service completions.
    Completion = 1,
    /// Arrivals.
    Arrival = 2,
    /// Deadline checks.
    Timeout = 3,
    /// Periodic control: samples, scrapes, health timers, autoscaler decisions.
    Control = 4,
    /// End of the drain.
    EndOfRun = 5,
}

impl Event {
    /// The rank this event is scheduled with.
    #[inline]
    pub fn rank(&self) -> Rank {
        match self {
            Event::ServiceDone { .. } | Event::Iteration { .. } | Event::AttemptEnd { .. } => {
                Rank::Completion
            }
            Event::ModelLoaded { .. }
            | Event::Fault { .. }
            | Event::Recovered { .. }
            | Event::Provisioned { .. }
            | Event::GraceEnd { .. }
            | Event::Endpoint { .. } => Rank::Capacity,
            Event::Arrival { .. } | Event::SessionTurn { .. } | Event::Retry { .. } => {
                Rank::Arrival
            }
            Event::Deadline { .. } | Event::GatewayDeadline { .. } | Event::HoldExpired { .. } => {
                Rank::Timeout
            }
            Event::Sample
            | Event::Scrape { .. }
            | Event::GatewayTimer { .. }
            | Event::Readiness { .. }
            | Event::Autoscale
            | Event::MetricScrape
            | Event::DrainPoll => Rank::Control,
            Event::DrainDeadline => Rank::EndOfRun,
        }
    }
}

/// Bits of the key holding `seq`.
pub const SEQ_BITS: u32 = 56;

/// Packs `(time, rank, seq)` into the ordering key.
#[inline]
pub fn key(time: SimTime, rank: Rank, seq: u64) -> u128 {
    debug_assert!(seq < (1u64 << SEQ_BITS));
    (u128::from(time.as_nanos()) << 64) | (u128::from(rank as u8) << SEQ_BITS) | u128::from(seq)
}

/// The time part of a key.
#[inline]
pub fn key_time(key: u128) -> SimTime {
    SimTime((key >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_orders_by_time_then_rank_then_seq() {
        let t = SimTime(1_000);
        assert!(key(t, Rank::Arrival, 0) < key(SimTime(1_001), Rank::Capacity, 0));
        assert!(key(t, Rank::Completion, 99) < key(t, Rank::Arrival, 0));
        assert!(key(t, Rank::Completion, 3) < key(t, Rank::Timeout, 1));
        assert!(key(t, Rank::Arrival, 1) < key(t, Rank::Arrival, 2));
        assert_eq!(key_time(key(SimTime(u64::MAX), Rank::EndOfRun, 7)), SimTime(u64::MAX));
    }

    #[test]
    fn ranks_follow_the_table() {
        let r = ReqRef { idx: 0, gen: 0 };
        assert!(Event::ServiceDone { req: r }.rank() < Event::Arrival { class: 0 }.rank());
        let deadline = Event::Deadline { class: 0, kind: 0 };
        assert!(Event::Arrival { class: 0 }.rank() < deadline.rank());
        assert!(deadline.rank() < Event::DrainDeadline.rank());
        assert!(Event::Fault { track: 0 }.rank() < Event::AttemptEnd { req: r }.rank());
        assert!(Event::AttemptEnd { req: r }.rank() < Event::Arrival { class: 0 }.rank());
        // An event is two words of payload at most: heap entries stay small.
        assert!(std::mem::size_of::<Event>() <= 12, "{}", std::mem::size_of::<Event>());
    }
}
