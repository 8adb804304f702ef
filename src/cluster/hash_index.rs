//! A map from 64-bit block hashes to block ids: open addressing with linear probing and
//! backward-shift deletion (no tombstones), grown by doubling at load factor 1/2.
//!
//! The prefix cache looks up, inserts and evicts one entry per KV block, so this is the
//! hottest map of an `llm` replica; a `BTreeMap` cost several cache misses per operation. Keys
//! are already well-mixed hashes, but they are scrambled once more (a multiply and a shift)
//! so that structured keys cannot cluster. The table is never iterated, so its layout cannot
//! leak into results; lookups are deterministic.
//!
//! Invariant: every key sits in the probe run that starts at its home slot, with no empty
//! slot in between (maintained by backward-shift deletion).

const EMPTY: u32 = u32::MAX;

/// Block hash → block id.
#[derive(Debug, Clone)]
pub struct HashIndex {
    keys: Vec<u64>,
    vals: Vec<u32>,
    len: usize,
    shift: u32,
}

impl Default for HashIndex {
    fn default() -> Self {
        HashIndex::new()
    }
}

impl HashIndex {
    /// An empty index.
    pub fn new() -> HashIndex {
        HashIndex::with_slots(64)
    }

    fn with_slots(slots: usize) -> HashIndex {
        debug_assert!(slots.is_power_of_two());
        HashIndex {
            keys: vec![0; slots],
            vals: vec![EMPTY; slots],
            len: 0,
            shift: 64 - slots.trailing_zeros(),
        }
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.keys.len() - 1
    }

    /// The slot holding `key`, if present.
    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        let mut i = self.home(key);
        loop {
            if self.vals[i] == EMPTY {
                return None;
            }
            if self.keys[i] == key {
                return Some(i);
            }
            i = (i + 1) & self.mask();
        }
    }

    /// The block id stored for `key`.
    #[inline]
    pub fn get(&self, key: u64) -> Option<u32> {
        self.find(key).map(|i| self.vals[i])
    }

    /// Whether `key` is present.
    #[inline]
    pub fn contains_key(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Stores `key → val` if `key` is absent; returns whether it was inserted.
    pub fn insert_if_absent(&mut self, key: u64, val: u32) -> bool {
        debug_assert!(val != EMPTY);
        if (self.len + 1) * 2 > self.keys.len() {
            self.grow();
        }
        let mut i = self.home(key);
        loop {
            if self.vals[i] == EMPTY {
                self.keys[i] = key;
                self.vals[i] = val;
                self.len += 1;
                return true;
            }
            if self.keys[i] == key {
                return false;
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Removes `key`; returns its value if it was present.
    pub fn remove(&mut self, key: u64) -> Option<u32> {
        let mask = self.mask();
        let i = self.find(key)?;
        let out = self.vals[i];
        // Backward shift: pull later members of the run into the hole when their home allows.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        while self.vals[j] != EMPTY {
            let h = self.home(self.keys[j]);
            // Entry j may move to `hole` iff its home is not in the cyclic range (hole, j].
            let dist_home = j.wrapping_sub(h) & mask;
            let dist_hole = j.wrapping_sub(hole) & mask;
            if dist_home >= dist_hole {
                self.keys[hole] = self.keys[j];
                self.vals[hole] = self.vals[j];
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.vals[hole] = EMPTY;
        self.len -= 1;
        Some(out)
    }

    fn grow(&mut self) {
        let mut next = HashIndex::with_slots(self.keys.len() * 2);
        for (k, v) in self.keys.iter().zip(&self.vals) {
            if *v != EMPTY {
                next.insert_if_absent(*k, *v);
            }
        }
        *self = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;
    use std::collections::BTreeMap;

    #[test]
    fn matches_a_btreemap_under_random_operations() {
        let mut ours = HashIndex::new();
        let mut truth: BTreeMap<u64, u32> = BTreeMap::new();
        let mut s = Stream::from_seed(5);
        for step in 0..200_000u32 {
            // Few distinct keys, some structured (small integers), so runs collide and wrap.
            let key = if s.uniform_open() < 0.5 {
                s.index_mod(3000) as u64
            } else {
                crate::rng::mix64(s.index_mod(3000) as u64)
            };
            if s.uniform_open() < 0.55 {
                let inserted = ours.insert_if_absent(key, step);
                let expect = !truth.contains_key(&key);
                if expect {
                    truth.insert(key, step);
                }
                assert_eq!(inserted, expect);
            } else {
                assert_eq!(ours.remove(key), truth.remove(&key));
            }
            assert_eq!(ours.len(), truth.len());
            if step % 997 == 0 {
                for (k, v) in &truth {
                    assert_eq!(ours.get(*k), Some(*v));
                }
            }
        }
        for k in 0..3000u64 {
            assert_eq!(ours.get(k), truth.get(&k).copied());
        }
    }
}
