//! Requests in flight: client requests ([`Call`]) and the attempts that carry them to replicas
//! ([`Attempt`]), each in a slab with a free list.
//!
//! A *call* is one client request: its identity, draws, deadlines and retry state; it ends in
//! exactly one outcome. An *attempt* is one try of a call at one replica through one gateway
//! instance; a call makes one attempt, or several with retries (in turn) or hedging (at
//! once). Replicas, queues and events only ever hold attempt handles ([`ReqRef`]).
//!
//! Memory is O(requests in flight), not O(requests simulated): a slot is reused as soon as its
//! request or attempt ends. Each slot has a generation bumped on free, so an event or queue
//! entry holding an old handle is recognised as stale instead of touching a newer request.

use super::event::ReqRef;
use crate::time::SimTime;
use crate::workload::Draws;

/// Where a live attempt is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Slot not in use.
    Free,
    /// Waiting in a replica's queue.
    Queued,
    /// Being served.
    InService,
    /// Sent, but its result is already decided and arrives later (a connect failure, a fast
    /// error status); the replica does not hold it.
    Failing,
}

/// One attempt of a call at a replica.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// When the gateway sent it.
    pub sent: SimTime,
    /// Service start (valid once `InService`).
    pub start: SimTime,
    /// Replica it was routed to.
    pub replica: u32,
    /// Slot generation.
    pub gen: u32,
    /// Its call's slot.
    pub call: u32,
    /// Where it is.
    pub phase: Phase,
    /// When its first token came (valid if `has_first_token`).
    pub first_token: SimTime,
    /// Whether it produced a first token.
    pub has_first_token: bool,
    /// Its slot inside the `llm` replica's engine.
    pub local: u32,
    /// Routing id: unique per attempt (the call's id for its first attempt).
    pub id: u64,
    /// Gateway instance that routed it.
    pub gateway: u16,
    /// Workload class (copied from the call, for per-class deadline queues).
    pub class: u16,
    /// When its service ends (queue replicas; a `ServiceDone` event is current only then).
    pub done: SimTime,
    /// The result decided for a `Failing` attempt.
    pub fail: crate::gateway::status::AttemptResult,
}

impl Attempt {
    const FREE: Attempt = Attempt {
        sent: SimTime::ZERO,
        start: SimTime::ZERO,
        replica: 0,
        gen: 0,
        call: 0,
        phase: Phase::Free,
        first_token: SimTime::ZERO,
        has_first_token: false,
        local: 0,
        id: 0,
        gateway: 0,
        class: 0,
        done: SimTime::ZERO,
        fail: crate::gateway::status::AttemptResult::Success,
    };

    /// A fresh attempt (its `gen` is set by the slab).
    pub fn new(
        call: u32,
        class: u16,
        id: u64,
        gateway: u16,
        replica: u32,
        now: SimTime,
    ) -> Attempt {
        Attempt {
            sent: now,
            replica,
            call,
            class,
            id,
            gateway,
            phase: Phase::Queued,
            ..Attempt::FREE
        }
    }
}

/// In-flight attempts.
#[derive(Debug, Default)]
pub struct Slab {
    slots: Vec<Attempt>,
    free: Vec<u32>,
    live: u64,
}

impl Slab {
    /// An empty slab.
    pub fn new() -> Slab {
        Slab { slots: Vec::with_capacity(1024), free: Vec::with_capacity(1024), live: 0 }
    }

    /// Stores `a` (its `gen` is set by the slab) and returns its handle.
    #[inline]
    pub fn insert(&mut self, mut a: Attempt) -> ReqRef {
        self.live += 1;
        if let Some(idx) = self.free.pop() {
            let slot = &mut self.slots[idx as usize];
            a.gen = slot.gen;
            *slot = a;
            ReqRef { idx, gen: a.gen }
        } else {
            let idx = self.slots.len() as u32;
            a.gen = 0;
            self.slots.push(a);
            ReqRef { idx, gen: 0 }
        }
    }

    /// The live attempt behind `r`, or `None` if `r` is stale.
    #[inline]
    pub fn get(&self, r: ReqRef) -> Option<&Attempt> {
        let s = &self.slots[r.idx as usize];
        (s.gen == r.gen && s.phase != Phase::Free).then_some(s)
    }

    /// Mutable access to the live attempt behind `r`. Panics if `r` is stale (engine bug).
    #[inline]
    pub fn get_mut(&mut self, r: ReqRef) -> &mut Attempt {
        let s = &mut self.slots[r.idx as usize];
        debug_assert!(s.gen == r.gen && s.phase != Phase::Free, "stale attempt handle");
        s
    }

    /// Ends the attempt behind `r`: its slot is reused and old handles become stale.
    #[inline]
    pub fn remove(&mut self, r: ReqRef) -> Attempt {
        let s = &mut self.slots[r.idx as usize];
        let out = *s;
        *s = Attempt { gen: s.gen.wrapping_add(1), ..Attempt::FREE };
        self.free.push(r.idx);
        self.live -= 1;
        out
    }

    /// Attempts in flight.
    #[inline]
    pub fn live(&self) -> u64 {
        self.live
    }

    /// Handles of all live attempts, in slot order.
    pub fn live_refs(&self) -> Vec<ReqRef> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.phase != Phase::Free)
            .map(|(i, s)| ReqRef { idx: i as u32, gen: s.gen })
            .collect()
    }

    /// Handles of the live attempts at replica `r`, in slot order (O(slots): for rare events
    /// such as a crash).
    pub fn at_replica(&self, r: u32) -> Vec<ReqRef> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.phase != Phase::Free && s.replica == r)
            .map(|(i, s)| ReqRef { idx: i as u32, gen: s.gen })
            .collect()
    }
}

/// A handle to a call: slot plus generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRef {
    /// Slot in the call slab.
    pub idx: u32,
    /// Generation of that slot when the handle was made.
    pub gen: u32,
}

/// Where a call is between its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Slot not in use.
    Free,
    /// Waiting in a gateway's admission queue.
    GatewayQueued,
    /// Held by the activator until a replica of its pool is ready.
    Held,
    /// Waiting for its next attempt (retry backoff, rate-limit delay).
    Waiting,
    /// At least one attempt in flight.
    Dispatched,
}

/// The scalar state of one client request.
#[derive(Debug, Clone, Copy)]
pub struct CallInfo {
    /// Request id (arrival order).
    pub id: u64,
    /// Arrival time.
    pub arrival: SimTime,
    /// Workload class.
    pub class: u16,
    /// Arrived after warm-up.
    pub measured: bool,
    /// Its closed-loop session (`u32::MAX`: none).
    pub session: u32,
    /// What was drawn for it.
    pub draws: Draws,
    /// Model asked for (model-table index; changes when downgraded).
    pub model: u16,
    /// Routed to a smaller model than it asked for.
    pub downgraded: bool,
    /// Gateway instance it entered.
    pub gateway: u16,
    /// Attempts started.
    pub attempts: u8,
    /// Attempts in flight.
    pub live: u8,
    /// Whether the client has seen a first token (of any attempt).
    pub has_first_token: bool,
    /// Slot generation.
    pub gen: u32,
    /// Where it is.
    pub state: CallState,
    /// When it entered a gateway queue or the activator (valid while `GatewayQueued` /
    /// `Held`).
    pub queued_at: SimTime,
    /// Last replica an attempt went to (`u32::MAX`: none yet).
    pub last_replica: u32,
    /// When the client got its latest first token (valid if `has_first_token`; a re-sent
    /// broken stream starts over).
    pub first_token: SimTime,
    /// When its latest attempt started service (valid if `started`).
    pub start: SimTime,
    /// Whether an attempt started service.
    pub started: bool,
    /// Concurrent-retry slots of its gateway it holds (a retry holds one from its scheduling
    /// until the call's first token or its last attempt's end; hedges one each).
    pub retries_held: u8,
    /// Waiting out a rate limiter's delay (then admission continues after the limiter).
    pub rate_delayed: bool,
    /// Counted as admitted (once, however often it is queued again).
    pub admitted: bool,
    /// Holds a token of its gateway's concurrency bucket (returned when it ends).
    pub token: bool,
}

/// One client request, from arrival to its single outcome: its scalars and its buffers.
#[derive(Debug, Clone)]
pub struct Call {
    /// Scalar state.
    pub info: CallInfo,
    /// Trace block hashes (trace classes only; kept for retries).
    pub trace_hashes: Vec<u64>,
    /// Live attempts (several only when hedging).
    pub attempts_live: Vec<ReqRef>,
    /// Replicas its attempts went to, in order.
    pub tried: Vec<u32>,
}

/// What a new call is made of.
#[derive(Debug, Clone, Copy)]
pub struct NewCall {
    /// Request id.
    pub id: u64,
    /// Arrival time.
    pub arrival: SimTime,
    /// Class.
    pub class: u16,
    /// Measured.
    pub measured: bool,
    /// Session slot.
    pub session: u32,
    /// Draws.
    pub draws: Draws,
    /// Model asked for.
    pub model: u16,
    /// Gateway instance.
    pub gateway: u16,
}

/// Live calls.
#[derive(Debug, Default)]
pub struct Calls {
    slots: Vec<Call>,
    free: Vec<u32>,
    live: u64,
}

impl Calls {
    /// Stores a new call (`trace_hashes` copied into the slot's reused buffer).
    pub fn insert(&mut self, n: NewCall, trace_hashes: &[u64]) -> CallRef {
        self.live += 1;
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Call {
                    info: CallInfo {
                        id: 0,
                        arrival: SimTime::ZERO,
                        class: 0,
                        measured: false,
                        session: u32::MAX,
                        draws: Draws::default(),
                        model: 0,
                        downgraded: false,
                        gateway: 0,
                        attempts: 0,
                        live: 0,
                        has_first_token: false,
                        gen: 0,
                        state: CallState::Free,
                        queued_at: SimTime::ZERO,
                        last_replica: u32::MAX,
                        first_token: SimTime::ZERO,
                        start: SimTime::ZERO,
                        started: false,
                        retries_held: 0,
                        rate_delayed: false,
                        admitted: false,
                        token: false,
                    },
                    trace_hashes: Vec::new(),
                    attempts_live: Vec::new(),
                    tried: Vec::new(),
                });
                (self.slots.len() - 1) as u32
            }
        };
        let c = &mut self.slots[idx as usize];
        let gen = c.info.gen;
        c.info = CallInfo {
            id: n.id,
            arrival: n.arrival,
            class: n.class,
            measured: n.measured,
            session: n.session,
            draws: n.draws,
            model: n.model,
            downgraded: false,
            gateway: n.gateway,
            attempts: 0,
            live: 0,
            has_first_token: false,
            gen,
            state: CallState::Waiting,
            queued_at: SimTime::ZERO,
            last_replica: u32::MAX,
            first_token: SimTime::ZERO,
            start: SimTime::ZERO,
            started: false,
            retries_held: 0,
            rate_delayed: false,
            admitted: false,
            token: false,
        };
        c.trace_hashes.clear();
        c.trace_hashes.extend_from_slice(trace_hashes);
        c.attempts_live.clear();
        c.tried.clear();
        CallRef { idx, gen }
    }

    /// The live call behind `h`, or `None` if `h` is stale.
    #[inline]
    pub fn get(&self, h: CallRef) -> Option<&Call> {
        let c = &self.slots[h.idx as usize];
        (c.info.gen == h.gen && c.info.state != CallState::Free).then_some(c)
    }

    /// The call in slot `idx` (attempts name their call by slot).
    #[inline]
    pub fn slot(&self, idx: u32) -> &Call {
        &self.slots[idx as usize]
    }

    /// Mutable access to slot `idx`.
    #[inline]
    pub fn slot_mut(&mut self, idx: u32) -> &mut Call {
        &mut self.slots[idx as usize]
    }

    /// The handle of the call in slot `idx`.
    #[inline]
    pub fn handle(&self, idx: u32) -> CallRef {
        CallRef { idx, gen: self.slots[idx as usize].info.gen }
    }

    /// Ends the call in slot `idx`; its handles become stale. Returns its scalars (the buffers
    /// stay in the slot for reuse).
    pub fn remove(&mut self, idx: u32) -> CallInfo {
        let c = &mut self.slots[idx as usize];
        let out = c.info;
        c.info.state = CallState::Free;
        c.info.gen = c.info.gen.wrapping_add(1);
        c.attempts_live.clear();
        self.free.push(idx);
        self.live -= 1;
        out
    }

    /// Calls in flight.
    #[inline]
    pub fn live(&self) -> u64 {
        self.live
    }

    /// Handles of all live calls, in slot order.
    pub fn live_refs(&self) -> Vec<CallRef> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, c)| c.info.state != CallState::Free)
            .map(|(i, c)| CallRef { idx: i as u32, gen: c.info.gen })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_handles_go_stale_and_slots_are_reused() {
        let mut s = Slab::new();
        let a = s.insert(Attempt::new(0, 0, 1, 0, 3, SimTime::ZERO));
        let b = s.insert(Attempt::new(1, 0, 2, 0, 4, SimTime::ZERO));
        assert_eq!(s.live(), 2);
        assert_eq!(s.at_replica(4), vec![b]);
        s.remove(a);
        assert!(s.get(a).is_none());
        assert!(s.get(b).is_some());
        let c = s.insert(Attempt {
            phase: Phase::InService,
            ..Attempt::new(2, 0, 3, 0, 4, SimTime::ZERO)
        });
        assert_eq!(c.idx, a.idx);
        assert_ne!(c.gen, a.gen);
        assert!(s.get(a).is_none());
        assert_eq!(s.get(c).map(|r| r.phase), Some(Phase::InService));
        assert_eq!(s.live_refs(), vec![c, b]);
        assert_eq!(s.at_replica(4), vec![c, b]);
    }

    #[test]
    fn calls_reuse_slots_and_keep_their_buffers() {
        let mut calls = Calls::default();
        let n = NewCall {
            id: 7,
            arrival: SimTime(5),
            class: 1,
            measured: true,
            session: u32::MAX,
            draws: Draws::default(),
            model: 0,
            gateway: 0,
        };
        let a = calls.insert(n, &[1, 2, 3]);
        assert_eq!(calls.get(a).map(|c| c.trace_hashes.clone()), Some(vec![1, 2, 3]));
        let out = calls.remove(a.idx);
        assert_eq!(out.id, 7);
        assert!(calls.get(a).is_none());
        let b = calls.insert(NewCall { id: 8, ..n }, &[]);
        assert_eq!(b.idx, a.idx);
        assert!(calls.get(a).is_none());
        assert_eq!(calls.get(b).map(|c| (c.info.id, c.trace_hashes.len())), Some((8, 0)));
        assert_eq!(calls.live(), 1);
    }
}
