//! The event queue: a binary min-heap on the packed `(time, rank, seq)` key.
//!
//! Invariant: `seq` increases by one per push, so the order of two events never depends on
//! their payloads or on heap internals; same `(time, rank)` events pop in push order.
//!
//! The heap is hand-written (hole-based sift-up and sift-down over 24-byte entries compared
//! as one 128-bit key) because the event queue is the engine's hottest structure: it costs
//! about half the instructions of `std::collections::BinaryHeap` here, whose generic `pop`
//! sifts to the bottom and back up.

use super::event::{key, Event, SEQ_BITS};
use crate::time::SimTime;

/// A scheduled event: the packed key split into two `u64` words (time, then rank and seq) so
/// an entry is 24 bytes with 8-byte alignment.
#[derive(Debug, Clone, Copy)]
struct Entry {
    time: u64,
    rank_seq: u64,
    event: Event,
}

impl Entry {
    #[inline(always)]
    fn key(&self) -> u128 {
        (u128::from(self.time) << 64) | u128::from(self.rank_seq)
    }
}

/// Pending events of one run.
#[derive(Debug, Default)]
pub struct EventQueue {
    heap: Vec<Entry>,
    seq: u64,
}

impl EventQueue {
    /// An empty queue.
    pub fn new() -> EventQueue {
        EventQueue { heap: Vec::with_capacity(64), seq: 0 }
    }

    /// Schedules `event` at `time` with the event's rank.
    #[inline]
    pub fn push(&mut self, time: SimTime, event: Event) {
        let k = key(time, event.rank(), self.seq);
        self.seq = (self.seq + 1) & ((1u64 << SEQ_BITS) - 1);
        let e = Entry { time: (k >> 64) as u64, rank_seq: k as u64, event };
        let mut i = self.heap.len();
        self.heap.push(e);
        while i > 0 {
            let parent = (i - 1) / 2;
            if self.heap[parent].key() <= k {
                break;
            }
            self.heap[i] = self.heap[parent];
            i = parent;
        }
        self.heap[i] = e;
    }

    /// Removes and returns the earliest event.
    #[inline]
    pub fn pop(&mut self) -> Option<(SimTime, Event)> {
        let last = self.heap.pop()?;
        let n = self.heap.len();
        if n == 0 {
            return Some((SimTime(last.time), last.event));
        }
        let top = self.heap[0];
        let k = last.key();
        let mut i = 0;
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c = if r < n && self.heap[r].key() < self.heap[l].key() { r } else { l };
            if self.heap[c].key() >= k {
                break;
            }
            self.heap[i] = self.heap[c];
            i = c;
        }
        self.heap[i] = last;
        Some((SimTime(top.time), top.event))
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
    use crate::rng::Stream;

    #[test]
    fn pops_by_time_then_rank_then_push_order() {
        let mut q = EventQueue::new();
        let done = |i| Event::ServiceDone { req: ReqRef { idx: i, gen: 0 } };
        q.push(SimTime(5), Event::Arrival { class: 1 });
        q.push(SimTime(5), done(7));
        q.push(SimTime(3), Event::Deadline { class: 0, kind: 0 });
        q.push(SimTime(5), Event::Arrival { class: 0 });
        q.push(SimTime(5), done(8));
        let order: Vec<Event> = std::iter::from_fn(|| q.pop().map(|(_, e)| e)).collect();
        assert_eq!(
            order,
            vec![
                Event::Deadline { class: 0, kind: 0 },
                done(7),
                done(8),
                Event::Arrival { class: 1 },
                Event::Arrival { class: 0 },
            ]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn matches_a_sorted_reference_under_random_interleaving() {
        let mut q = EventQueue::new();
        let mut reference: Vec<(u64, u32)> = Vec::new();
        let mut rng = Stream::from_seed(17);
        let mut popped = Vec::new();
        let mut expected = Vec::new();
        let mut id = 0u32;
        for _ in 0..20_000 {
            if rng.next_u64() % 3 != 0 || reference.is_empty() {
                // Few distinct times so ties are common; ties must pop in push order.
                let t = rng.next_u64() % 50 + popped.last().map_or(0, |&(t, _)| t);
                q.push(SimTime(t), Event::Arrival { class: (id % 7) as u16 });
                reference.push((t, id));
                id += 1;
            } else {
                let (t, e) = q.pop().expect("non-empty");
                let Event::Arrival { class } = e else { panic!("unexpected event") };
                popped.push((t.as_nanos(), class));
                let pos = (0..reference.len()).min_by_key(|&i| reference[i]).expect("non-empty");
                let (rt, rid) = reference.remove(pos);
                expected.push((rt, (rid % 7) as u16));
            }
        }
        assert_eq!(popped, expected);
    }
}
