//! A gateway instance's admission queue (SGLang gateway: bounded, 429 when full, 408 after
//! `queue_timeout_secs`), ordered by tier priority (higher first) and then arrival, so VIP
//! requests overtake free ones but each tier is FIFO.
//!
//! When the queue is full, an arrival of a *higher* tier than the lowest tier waiting takes
//! the place of the newest request of that lowest tier, which is refused with 429 — the
//! priority bands of the GIE flow controller, which share the queue but shed from the
//! bottom. An arrival of the lowest tier present (or lower) is refused itself. With every
//! request of one priority (or `order: fifo`), this is SGLang's plain bounded queue. The queue
//! timeout itself is a FIFO of deadlines in the engine; requests that time out or are
//! cancelled leave the queue at once.

use std::collections::BTreeMap;

/// A queued call's handle: its slot and generation in the engine's call slab.
pub type CallRef = (u32, u32);

/// Position key: (negated priority, arrival sequence): the first key goes next, the last is
/// the one displaced.
type Key = (i64, u64);

/// Queued calls in dispatch order.
#[derive(Debug, Default)]
pub struct AdmissionQueue {
    order: BTreeMap<Key, CallRef>,
    keys: BTreeMap<CallRef, Key>,
    seq: u64,
    /// Most calls waiting.
    pub size: u32,
}

/// What [`AdmissionQueue::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Queued, in the place of this lower-tier call (now refused).
    Displaced(CallRef),
    /// Full of calls of its tier or higher: refused.
    Full,
}

impl AdmissionQueue {
    /// An empty queue of at most `size` calls.
    pub fn new(size: u32) -> AdmissionQueue {
        AdmissionQueue { size, ..AdmissionQueue::default() }
    }

    /// Calls waiting.
    #[inline]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no call waits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a call of tier `priority` would find room (possibly by displacing a lower one).
    pub fn has_room_for(&self, priority: i32) -> bool {
        self.keys.len() < self.size as usize
            || self.order.keys().next_back().is_some_and(|&(np, _)| -np < i64::from(priority))
    }

    /// Adds `h` with tier priority `priority`.
    pub fn push(&mut self, h: CallRef, priority: i32) -> Pushed {
        let mut out = Pushed::Queued;
        if self.keys.len() >= self.size as usize {
            match self.order.iter().next_back().map(|(&k, &v)| (k, v)) {
                Some((k, victim)) if -k.0 < i64::from(priority) => {
                    self.order.remove(&k);
                    self.keys.remove(&victim);
                    out = Pushed::Displaced(victim);
                }
                _ => return Pushed::Full,
            }
        }
        let k = (-i64::from(priority), self.seq);
        self.seq += 1;
        self.order.insert(k, h);
        self.keys.insert(h, k);
        out
    }

    /// The call that goes next, if any (not removed).
    pub fn peek(&self) -> Option<CallRef> {
        self.order.values().next().copied()
    }

    /// Removes and returns the call that goes next.
    pub fn pop(&mut self) -> Option<CallRef> {
        let (k, h) = self.order.pop_first()?;
        debug_assert_eq!(self.keys.get(&h), Some(&k));
        self.keys.remove(&h);
        Some(h)
    }

    /// Takes `h` out (timed out or cancelled); false if it was not queued.
    pub fn remove(&mut self, h: CallRef) -> bool {
        match self.keys.remove(&h) {
            Some(k) => {
                self.order.remove(&k);
                true
            }
            None => false,
        }
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
    fn full_queue_sheds_from_the_lowest_tier_newest_first() {
        let mut q = AdmissionQueue::new(3);
        assert_eq!(q.push(h(0), -1), Pushed::Queued);
        assert_eq!(q.push(h(1), -1), Pushed::Queued);
        assert_eq!(q.push(h(2), 5), Pushed::Queued);
        // Full. Another free request is refused; a VIP displaces the newest free one.
        assert!(!q.has_room_for(-1) && q.has_room_for(5) && q.has_room_for(0));
        assert_eq!(q.push(h(3), -1), Pushed::Full);
        assert_eq!(q.push(h(4), 5), Pushed::Displaced(h(1)));
        assert_eq!(q.push(h(5), 0), Pushed::Displaced(h(0)));
        // Now 5, 5, 0: a tier-0 arrival finds no lower tier to displace.
        assert_eq!(q.push(h(6), 0), Pushed::Full);
        let order: Vec<u32> = std::iter::from_fn(|| q.pop()).map(|c| c.0).collect();
        assert_eq!(order, vec![2, 4, 5]);
    }

    #[test]
    fn one_tier_is_a_plain_bounded_fifo() {
        let mut q = AdmissionQueue::new(2);
        assert_eq!(q.push(h(0), 0), Pushed::Queued);
        assert_eq!(q.push(h(1), 0), Pushed::Queued);
        assert_eq!(q.push(h(2), 0), Pushed::Full);
        assert_eq!(q.pop(), Some(h(0)));
        assert_eq!(q.push(h(2), 0), Pushed::Queued);
        assert_eq!(q.peek(), Some(h(1)));
    }
}
