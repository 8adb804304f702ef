//! A gateway instance's admission queue (SGLang gateway: bounded, 429 when full, 408 after
//! `queue_timeout_secs`), ordered by tier priority (higher first) and then arrival, so VIP
//! requests overtake free ones but each tier is FIFO. The queue timeout itself is a FIFO of
//! deadlines in the engine; requests that time out or are cancelled leave the queue at once.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

/// A queued call's handle: its slot and generation in the engine's call slab.
pub type CallRef = (u32, u32);

/// Queued calls in dispatch order.
#[derive(Debug, Default)]
pub struct AdmissionQueue {
    heap: BinaryHeap<(i32, Reverse<u64>, u32, u32)>,
    live: BTreeSet<(u32, u32)>,
    seq: u64,
    /// Most calls waiting.
    pub size: u32,
}

impl AdmissionQueue {
    /// An empty queue of at most `size` calls.
    pub fn new(size: u32) -> AdmissionQueue {
        AdmissionQueue { size, ..AdmissionQueue::default() }
    }

    /// Calls waiting.
    #[inline]
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no call waits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Whether another call would overflow it.
    #[inline]
    pub fn is_full(&self) -> bool {
        self.live.len() >= self.size as usize
    }

    /// Adds `h` with tier priority `priority`.
    pub fn push(&mut self, h: CallRef, priority: i32) {
        self.heap.push((priority, Reverse(self.seq), h.0, h.1));
        self.seq += 1;
        self.live.insert(h);
    }

    /// The call that goes next, if any (not removed).
    pub fn peek(&mut self) -> Option<CallRef> {
        while let Some(&(_, _, idx, gen)) = self.heap.peek() {
            if self.live.contains(&(idx, gen)) {
                return Some((idx, gen));
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns the call that goes next.
    pub fn pop(&mut self) -> Option<CallRef> {
        let h = self.peek()?;
        self.heap.pop();
        self.live.remove(&h);
        Some(h)
    }

    /// Takes `h` out (timed out or cancelled); false if it was not queued.
    pub fn remove(&mut self, h: CallRef) -> bool {
        self.live.remove(&h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u32) -> CallRef {
        (i, 0)
    }

    #[test]
    fn higher_tiers_first_fifo_within_a_tier() {
        let mut q = AdmissionQueue::new(10);
        q.push(h(0), 0);
        q.push(h(1), -1);
        q.push(h(2), 10);
        q.push(h(3), 0);
        q.push(h(4), 10);
        assert!(q.remove(h(3)));
        assert!(!q.remove(h(3)));
        let order: Vec<u32> = std::iter::from_fn(|| q.pop()).map(|c| c.0).collect();
        assert_eq!(order, vec![2, 4, 0, 1]);
        assert!(q.is_empty());
    }

    #[test]
    fn bounded() {
        let mut q = AdmissionQueue::new(2);
        q.push(h(0), 0);
        assert!(!q.is_full());
        q.push(h(1), 0);
        assert!(q.is_full());
        q.pop();
        assert!(!q.is_full());
    }
}
