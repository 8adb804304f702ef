//! The KV-event index: which replica holds which KV block, as the replicas' KV events report
//! it (llm-d's KV-cache indexer, Dynamo's KV router index).
//!
//! Replicas publish `stored`/`removed` events for block hashes (see `KvCache::enable_events`).
//! Events reach the index `delay` after they happen (`gateway.kv_event_delay_ms`; 0 applies
//! them at once, an exact oracle of residency). Pending events wait in a FIFO ordered by
//! publication time, so they are applied in order; applying is lazy — before each lookup, every
//! event older than `now − delay` is folded in.
//!
//! Layout: a hash → slot map ([`HashIndex`]) and, per slot, a bitset over replicas
//! (`words` u64 per slot). A slot whose bitset empties is recycled. Lookup of a request's
//! chained hashes walks them in order keeping the set of candidates that hold every block so
//! far, so one walk gives every candidate's leading match: O(blocks × words).
//!
//! Invariant: bit `r` of `hash`'s slot is set iff the last event of `(r, hash)` that reached the
//! index was `stored`.

use crate::cluster::hash_index::HashIndex;
use crate::policy::routing::KvIndex;
use crate::time::{SimDuration, SimTime};
use std::collections::VecDeque;

/// Replica block residency from KV events.
#[derive(Debug, Clone)]
pub struct KvEventIndex {
    delay: SimDuration,
    words: usize,
    map: HashIndex,
    bits: Vec<u64>,
    free: Vec<u32>,
    pending: VecDeque<(SimTime, u32, u64, bool)>,
    /// Events applied so far.
    pub applied: u64,
}

impl KvEventIndex {
    /// An empty index over `replicas` replicas whose events arrive `delay` late.
    pub fn new(replicas: usize, delay: SimDuration) -> KvEventIndex {
        KvEventIndex {
            delay,
            words: replicas.div_ceil(64).max(1),
            map: HashIndex::new(),
            bits: Vec::new(),
            free: Vec::new(),
            pending: VecDeque::new(),
            applied: 0,
        }
    }

    /// Replica `r` published `events` (`(hash, stored)`, oldest first) at `now`.
    pub fn publish(&mut self, now: SimTime, r: u32, events: &[(u64, bool)]) {
        if self.delay == SimDuration::ZERO && self.pending.is_empty() {
            for &(h, stored) in events {
                self.apply(r, h, stored);
            }
            return;
        }
        self.pending.extend(events.iter().map(|&(h, s)| (now, r, h, s)));
    }

    /// Applies every event published at or before `now − delay`.
    pub fn catch_up(&mut self, now: SimTime) {
        while let Some(&(t, r, h, stored)) = self.pending.front() {
            if t + self.delay > now {
                break;
            }
            self.pending.pop_front();
            self.apply(r, h, stored);
        }
    }

    fn apply(&mut self, r: u32, h: u64, stored: bool) {
        self.applied += 1;
        let (w, bit) = (r as usize / 64, 1u64 << (r % 64));
        match (self.map.get(h), stored) {
            (Some(slot), true) => self.bits[slot as usize * self.words + w] |= bit,
            (Some(slot), false) => {
                let base = slot as usize * self.words;
                self.bits[base + w] &= !bit;
                if self.bits[base..base + self.words].iter().all(|&x| x == 0) {
                    self.map.remove(h);
                    self.free.push(slot);
                }
            }
            (None, true) => {
                let slot = match self.free.pop() {
                    Some(s) => s,
                    None => {
                        self.bits.resize(self.bits.len() + self.words, 0);
                        (self.bits.len() / self.words - 1) as u32
                    }
                };
                let base = slot as usize * self.words;
                self.bits[base..base + self.words].fill(0);
                self.bits[base + w] |= bit;
                self.map.insert_if_absent(h, slot);
            }
            // A removal of something never seen (events before the index existed): ignore.
            (None, false) => {}
        }
    }

    /// `(replica, hash)` residency pairs known.
    pub fn pairs(&self) -> u64 {
        let mut live = vec![true; self.bits.len() / self.words];
        for &s in &self.free {
            live[s as usize] = false;
        }
        self.bits
            .chunks(self.words)
            .zip(live)
            .filter(|(_, l)| *l)
            .map(|(c, _)| c.iter().map(|w| u64::from(w.count_ones())).sum::<u64>())
            .sum()
    }

    /// Hashes known to be held by at least one replica.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no replica holds anything.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl KvIndex for KvEventIndex {
    fn leading_matches(&self, hashes: &[u64], candidates: &[u32], out: &mut Vec<u32>) {
        out.clear();
        out.resize(candidates.len(), 0);
        if hashes.is_empty() || self.map.is_empty() {
            return;
        }
        // `alive`: candidates holding every block so far (a bitset over replicas).
        let mut alive = vec![0u64; self.words];
        for &r in candidates {
            alive[r as usize / 64] |= 1u64 << (r % 64);
        }
        let mut depth = 0u32;
        for &h in hashes {
            let Some(slot) = self.map.get(h) else { break };
            let base = slot as usize * self.words;
            let mut any = 0u64;
            for (a, &b) in alive.iter_mut().zip(&self.bits[base..base + self.words]) {
                *a &= b;
                any |= *a;
            }
            if any == 0 {
                break;
            }
            depth += 1;
            // Record the depth reached so far for every survivor.
            for (i, &r) in candidates.iter().enumerate() {
                if alive[r as usize / 64] & (1u64 << (r % 64)) != 0 {
                    out[i] = depth;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(ix: &KvEventIndex, hashes: &[u64], r: u32) -> u32 {
        let mut out = Vec::new();
        ix.leading_matches(hashes, &[r], &mut out);
        out[0]
    }

    #[test]
    fn leading_matches_follow_stored_and_removed_events() {
        let mut ix = KvEventIndex::new(70, SimDuration::ZERO);
        ix.publish(SimTime::ZERO, 0, &[(1, true), (2, true), (3, true)]);
        ix.publish(SimTime::ZERO, 65, &[(1, true), (2, true)]);
        ix.publish(SimTime::ZERO, 3, &[(2, true)]);
        let mut out = Vec::new();
        ix.leading_matches(&[1, 2, 3, 4], &[0, 3, 65], &mut out);
        assert_eq!(out, vec![3, 0, 2]);
        ix.publish(SimTime::ZERO, 0, &[(2, false)]);
        ix.leading_matches(&[1, 2, 3], &[0, 3, 65], &mut out);
        assert_eq!(out, vec![1, 0, 2]);
        // Hash 2 is still held by 3 and 65; hash 3 only by 0.
        ix.publish(SimTime::ZERO, 3, &[(2, false)]);
        ix.publish(SimTime::ZERO, 65, &[(2, false), (1, false)]);
        assert_eq!(ix.len(), 2, "hashes 1 (replica 0) and 3 (replica 0) remain");
        assert_eq!(one(&ix, &[1, 2], 65), 0);
    }

    #[test]
    fn delayed_events_are_invisible_until_due() {
        let mut ix = KvEventIndex::new(2, SimDuration::from_millis(100));
        ix.publish(SimTime::ZERO, 1, &[(7, true)]);
        ix.catch_up(SimTime::ZERO + SimDuration::from_millis(99));
        assert_eq!(one(&ix, &[7], 1), 0);
        ix.catch_up(SimTime::ZERO + SimDuration::from_millis(100));
        assert_eq!(one(&ix, &[7], 1), 1);
        ix.publish(SimTime::ZERO + SimDuration::from_millis(150), 1, &[(7, false)]);
        ix.catch_up(SimTime::ZERO + SimDuration::from_millis(200));
        assert_eq!(one(&ix, &[7], 1), 1, "removal not yet visible");
        ix.catch_up(SimTime::ZERO + SimDuration::from_millis(250));
        assert_eq!(one(&ix, &[7], 1), 0);
    }
}
