//! The request slab: in-flight requests in a vector with a free list.
//!
//! Memory is O(requests in flight), not O(requests simulated): a slot is reused as soon as
//! its request ends. Each slot has a generation that is bumped on free, so an event or queue
//! entry holding an old [`ReqRef`] is recognised as stale instead of touching a newer request.

use super::event::ReqRef;
use crate::time::SimTime;

/// Where a live request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Slot not in use.
    Free,
    /// Waiting in a replica's queue.
    Queued,
    /// Being served.
    InService,
}

/// One request in flight.
#[derive(Debug, Clone, Copy)]
pub struct Req {
    /// Arrival time.
    pub arrival: SimTime,
    /// Service start (valid once `InService`).
    pub start: SimTime,
    /// Uniform mapped through the serving pool's service law.
    pub service_u: f64,
    /// Prompt tokens (0 if none drawn).
    pub prompt_tokens: u32,
    /// Output tokens (0 if none drawn).
    pub output_tokens: u32,
    /// Replica it was routed to.
    pub replica: u32,
    /// Slot generation.
    pub gen: u32,
    /// Workload class.
    pub class: u16,
    /// Where it is.
    pub phase: Phase,
    /// Arrived after warm-up.
    pub measured: bool,
    /// When its first token came (valid if `has_first_token`).
    pub first_token: SimTime,
    /// Whether it produced a first token.
    pub has_first_token: bool,
    /// Its slot inside the `llm` replica's engine.
    pub local: u32,
    /// Its closed-loop session (`u32::MAX`: none).
    pub session: u32,
    /// Request id (arrival order).
    pub id: u64,
    /// Gateway instance that routed it.
    pub gateway: u16,
}

impl Req {
    const FREE: Req = Req {
        arrival: SimTime::ZERO,
        start: SimTime::ZERO,
        service_u: 0.5,
        prompt_tokens: 0,
        output_tokens: 0,
        replica: 0,
        gen: 0,
        class: 0,
        phase: Phase::Free,
        measured: false,
        first_token: SimTime::ZERO,
        has_first_token: false,
        local: 0,
        session: u32::MAX,
        id: 0,
        gateway: 0,
    };
}

/// In-flight requests.
#[derive(Debug, Default)]
pub struct Slab {
    slots: Vec<Req>,
    free: Vec<u32>,
    live: u64,
}

impl Slab {
    /// An empty slab.
    pub fn new() -> Slab {
        Slab { slots: Vec::with_capacity(1024), free: Vec::with_capacity(1024), live: 0 }
    }

    /// Stores `req` (its `gen` is set by the slab) and returns its handle.
    #[inline]
    pub fn insert(&mut self, mut req: Req) -> ReqRef {
        self.live += 1;
        if let Some(idx) = self.free.pop() {
            let slot = &mut self.slots[idx as usize];
            req.gen = slot.gen;
            *slot = req;
            ReqRef { idx, gen: req.gen }
        } else {
            let idx = self.slots.len() as u32;
            req.gen = 0;
            self.slots.push(req);
            ReqRef { idx, gen: 0 }
        }
    }

    /// The live request behind `r`, or `None` if `r` is stale.
    #[inline]
    pub fn get(&self, r: ReqRef) -> Option<&Req> {
        let s = &self.slots[r.idx as usize];
        (s.gen == r.gen && s.phase != Phase::Free).then_some(s)
    }

    /// Mutable access to the live request behind `r`. Panics if `r` is stale (engine bug).
    #[inline]
    pub fn get_mut(&mut self, r: ReqRef) -> &mut Req {
        let s = &mut self.slots[r.idx as usize];
        debug_assert!(s.gen == r.gen && s.phase != Phase::Free, "stale request handle");
        s
    }

    /// Ends the request behind `r`: its slot is reused and old handles become stale.
    #[inline]
    pub fn remove(&mut self, r: ReqRef) -> Req {
        let s = &mut self.slots[r.idx as usize];
        let out = *s;
        *s = Req { gen: s.gen.wrapping_add(1), ..Req::FREE };
        self.free.push(r.idx);
        self.live -= 1;
        out
    }

    /// Requests in flight.
    #[inline]
    pub fn live(&self) -> u64 {
        self.live
    }

    /// Handles of all live requests, in slot order.
    pub fn live_refs(&self) -> Vec<ReqRef> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.phase != Phase::Free)
            .map(|(i, s)| ReqRef { idx: i as u32, gen: s.gen })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_handles_go_stale_and_slots_are_reused() {
        let mut s = Slab::new();
        let a = s.insert(Req { phase: Phase::Queued, ..Req::FREE });
        let b = s.insert(Req { phase: Phase::Queued, ..Req::FREE });
        assert_eq!(s.live(), 2);
        s.remove(a);
        assert!(s.get(a).is_none());
        assert!(s.get(b).is_some());
        let c = s.insert(Req { phase: Phase::InService, ..Req::FREE });
        assert_eq!(c.idx, a.idx);
        assert_ne!(c.gen, a.gen);
        assert!(s.get(a).is_none());
        assert_eq!(s.get(c).map(|r| r.phase), Some(Phase::InService));
        assert_eq!(s.live_refs(), vec![c, b]);
    }
}
