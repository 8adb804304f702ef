//! The event queue: a binary min-heap on the packed `(time, rank, seq)` key.
//!
//! Invariant: `seq` increases by one per push, so the order of two events never depends on
//! their payloads or on heap internals; same `(time, rank)` events pop in push order.

use super::event::{key, key_time, Event, SEQ_BITS};
use crate::time::SimTime;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: u128,
    event: Event,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.key == o.key
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    /// Reversed: `BinaryHeap` is a max-heap and we pop the smallest key.
    #[inline]
    fn cmp(&self, o: &Self) -> Ordering {
        o.key.cmp(&self.key)
    }
}

/// Pending events of one run.
#[derive(Debug, Default)]
pub struct EventQueue {
    heap: BinaryHeap<Entry>,
    seq: u64,
}

impl EventQueue {
    /// An empty queue.
    pub fn new() -> EventQueue {
        EventQueue { heap: BinaryHeap::with_capacity(64), seq: 0 }
    }

    /// Schedules `event` at `time` with the event's rank.
    #[inline]
    pub fn push(&mut self, time: SimTime, event: Event) {
        let k = key(time, event.rank(), self.seq);
        self.seq = (self.seq + 1) & ((1u64 << SEQ_BITS) - 1);
        self.heap.push(Entry { key: k, event });
    }

    /// Removes and returns the earliest event.
    #[inline]
    pub fn pop(&mut self) -> Option<(SimTime, Event)> {
        self.heap.pop().map(|e| (key_time(e.key), e.event))
    }

    /// Events pending.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::event::ReqRef;

    #[test]
    fn pops_by_time_then_rank_then_push_order() {
        let mut q = EventQueue::new();
        let done = |i| Event::ServiceDone { req: ReqRef { idx: i, gen: 0 } };
        q.push(SimTime(5), Event::Arrival { class: 1 });
        q.push(SimTime(5), done(7));
        q.push(SimTime(3), Event::TimeoutTick { class: 0 });
        q.push(SimTime(5), Event::Arrival { class: 0 });
        q.push(SimTime(5), done(8));
        let order: Vec<Event> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(
            order,
            vec![
                Event::TimeoutTick { class: 0 },
                done(7),
                done(8),
                Event::Arrival { class: 1 },
                Event::Arrival { class: 0 },
            ]
        );
        assert!(q.is_empty());
    }
}
