//! The KV-cache block manager of one `llm` replica: a fixed pool of KV blocks of `block_size`
//! tokens, allocated to running sequences on demand, with vLLM-v1-style prefix caching.
//!
//! Every block is in exactly one of three states:
//! - **free**: holds nothing useful (no hash); kept on a LIFO stack;
//! - **allocated**: referenced by at least one running sequence (`ref_count > 0`); a block
//!   shared by several sequences (a common prefix) is counted once;
//! - **cached**: `ref_count == 0` but it still holds the KV of a known block hash, so a later
//!   request with the same prefix can reuse it; these blocks are *evictable* and sit on an
//!   intrusive doubly linked LRU list (O(1) touch, append and evict).
//!
//! Prefix caching. A request carries the hashes of its prompt blocks; hashes are *chained*
//! (block *i*'s hash identifies the whole prefix up to block *i*, as in vLLM and in the Mooncake
//! traces), so equal hashes mean identical KV content. On admission ([`KvCache::allocate`]) the
//! longest leading run of blocks whose hashes are cached is reused: those blocks need no prefill
//! compute and no new memory ([`Allocation::cached_blocks`]). A prompt block beyond that run whose
//! hash is nevertheless cached (possible only when the eviction order broke a chain) shares the
//! cached block's memory too — its content is identical — but still counts as computed. Every
//! other block is taken from the free stack or, when that is empty, by evicting the
//! least-recently-used cached block. New prompt blocks register their hash, so the next request
//! with the same prefix hits them. Free blocks are preferred to evicting cached ones (vLLM v1
//! keeps both in one queue; keeping them apart only ever keeps more useful cache).
//!
//! Which blocks carry hashes: block *i* of a sequence carries `hashes[i]` given at allocation;
//! blocks beyond the given hashes (the unhashed rest of the prompt and every block filled by
//! decoding) carry none, so they return to the free stack when released and are never reused.
//! *Limitation*: a multi-turn follow-up can reuse the previous turn's prompt blocks but not the
//! blocks of its generated answer. A hash on a *partial* last prompt block is honoured (the
//! Mooncake traces hash the last partial block too); the first decode token appended into such a
//! block makes it private: if no one else holds it, it drops its hash (its content changes);
//! if it is shared, the sequence gets a fresh private copy (copy-on-write) and the cached block
//! stays intact.
//!
//! Release order ([`ReleaseOrder`]): on [`KvCache::free`] a sequence's hashed blocks enter the
//! LRU list tail-first by default, as vLLM v1 does (its last block becomes least recently used,
//! its first block most recently used), so a chain is evicted from its tail and the cached set
//! stays prefix-closed; `Forward` is the naive order (first block evicted first).
//!
//! Invariants (checked by [`KvCache::check_conservation`] and after every operation in the
//! tests): `allocated + free + cached == capacity`; a block's reference count equals the number
//! of positions in running sequences' block tables that name it; the hash map and the per-block
//! hashes are inverse bijections; a block is on the LRU list iff it is cached. Every operation is
//! check-then-act: it either obtains every block it needs or changes nothing and returns
//! [`NoSpace`]. Costs are O(blocks touched × log(cached hashes)); sequence slots and block
//! tables are recycled, so steady-state operation does not allocate (apart from B-tree nodes).

use super::hash_index::HashIndex;

const NIL: u32 = u32::MAX;

/// The order in which a released sequence's blocks enter the LRU list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReleaseOrder {
    /// Last block first, so it is evicted first (vLLM v1): chains are evicted from the tail.
    #[default]
    TailFirst,
    /// First block first, so a chain loses its head first (naive LRU of touched blocks).
    Forward,
}

/// Static configuration of a KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvConfig {
    /// Blocks in the pool.
    pub capacity_blocks: u32,
    /// Tokens per block (> 0).
    pub block_size: u32,
    /// Whether cached prefixes are looked up and kept after release.
    pub enable_prefix_caching: bool,
    /// Order in which released blocks enter the LRU list.
    pub release_order: ReleaseOrder,
}

/// A running sequence's handle, assigned by [`KvCache::allocate`] and valid until
/// [`KvCache::free`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeqId(pub u32);

/// The outcome of a successful [`KvCache::allocate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The new sequence's handle.
    pub seq: SeqId,
    /// Leading blocks found in the prefix cache: no prefill compute for them.
    pub cached_blocks: u32,
    /// Prompt tokens covered by `cached_blocks` (`min(cached_blocks × block_size, tokens)`).
    /// An engine that must compute at least one token recomputes the last one itself.
    pub cached_tokens: u32,
    /// Blocks taken from the free stack or by eviction (fresh memory).
    pub new_blocks: u32,
}

/// Not enough free or evictable blocks; nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("KV cache full: {needed} blocks needed, {available} obtainable")]
pub struct NoSpace {
    /// Fresh blocks the operation needed.
    pub needed: u32,
    /// Free plus evictable blocks that were available to it.
    pub available: u32,
}

#[derive(Debug, Clone, Default)]
struct Seq {
    live: bool,
    tokens: u32,
    blocks: Vec<u32>,
    /// The last block is partial and carries a hash (so the next append must make it
    /// private); lets appends skip reading the block table otherwise.
    tail_hashed: bool,
}

/// A pool of KV blocks with prefix caching and LRU eviction. See the module docs.
#[derive(Debug, Clone)]
pub struct KvCache {
    cfg: KvConfig,
    ref_count: Vec<u32>,
    hash: Vec<Option<u64>>,
    prev: Vec<u32>,
    next: Vec<u32>,
    lru_head: u32,
    lru_tail: u32,
    cached: u32,
    allocated: u32,
    free: Vec<u32>,
    map: HashIndex,
    seqs: Vec<Seq>,
    free_seqs: Vec<u32>,
    mark: Vec<u32>,
    epoch: u32,
    scratch: Vec<u32>,
    /// KV events (`(hash, stored)`) not yet drained, when enabled.
    events: Option<Vec<(u64, bool)>>,
}

impl KvCache {
    /// An empty cache: every block free.
    ///
    /// # Panics
    /// If `block_size` is 0 or `capacity_blocks` is `u32::MAX` (a programming error: the
    /// scenario validator rejects both).
    pub fn new(cfg: KvConfig) -> KvCache {
        assert!(cfg.block_size > 0, "block_size must be positive");
        assert!(cfg.capacity_blocks < NIL, "capacity_blocks too large");
        let n = cfg.capacity_blocks as usize;
        KvCache {
            cfg,
            ref_count: vec![0; n],
            hash: vec![None; n],
            prev: vec![NIL; n],
            next: vec![NIL; n],
            lru_head: NIL,
            lru_tail: NIL,
            cached: 0,
            allocated: 0,
            // Reversed so that blocks are handed out in id order 0, 1, 2, ...
            free: (0..cfg.capacity_blocks).rev().collect(),
            map: HashIndex::new(),
            seqs: Vec::new(),
            free_seqs: Vec::new(),
            mark: vec![0; n],
            epoch: 0,
            scratch: Vec::new(),
            events: None,
        }
    }

    /// Starts recording KV events: every hash that becomes cached (`stored`) or stops being
    /// cached (`removed`), in order, as vLLM publishes `BlockStored`/`BlockRemoved`.
    pub fn enable_events(&mut self) {
        self.events.get_or_insert_with(Vec::new);
    }

    /// Moves the recorded events into `out` (appending), oldest first.
    pub fn drain_events(&mut self, out: &mut Vec<(u64, bool)>) {
        if let Some(e) = &mut self.events {
            out.append(e);
        }
    }

    /// Every hash currently cached, in block order (what a restart forgets).
    pub fn all_hashes(&self) -> impl Iterator<Item = u64> + '_ {
        self.hash.iter().filter_map(|h| *h)
    }

    #[inline]
    fn event(&mut self, h: u64, stored: bool) {
        if let Some(e) = &mut self.events {
            e.push((h, stored));
        }
    }

    /// The configuration.
    pub fn config(&self) -> &KvConfig {
        &self.cfg
    }

    /// Blocks referenced by running sequences.
    pub fn allocated_blocks(&self) -> u32 {
        self.allocated
    }

    /// Blocks holding nothing.
    pub fn free_blocks(&self) -> u32 {
        self.free.len() as u32
    }

    /// Unreferenced blocks that still hold a cached prefix (evictable).
    pub fn cached_blocks(&self) -> u32 {
        self.cached
    }

    /// Blocks a new allocation could obtain: free plus evictable.
    pub fn available_blocks(&self) -> u32 {
        self.free_blocks() + self.cached
    }

    /// Blocks needed to hold `tokens` tokens.
    #[inline]
    pub fn blocks_for(&self, tokens: u32) -> u32 {
        tokens.div_ceil(self.cfg.block_size)
    }

    /// Running sequences.
    pub fn running(&self) -> usize {
        self.seqs.len() - self.free_seqs.len()
    }

    /// Tokens held by sequence `seq`.
    ///
    /// # Panics
    /// If `seq` is not a live handle.
    pub fn seq_tokens(&self, seq: SeqId) -> u32 {
        self.live(seq).tokens
    }

    /// The block ids of sequence `seq`, in token order.
    ///
    /// # Panics
    /// If `seq` is not a live handle.
    pub fn seq_blocks(&self, seq: SeqId) -> &[u32] {
        &self.live(seq).blocks
    }

    /// Number of leading `hashes` whose blocks are cached (allocated or evictable). No side
    /// effects; 0 when prefix caching is disabled.
    pub fn lookup_prefix(&self, hashes: &[u64]) -> usize {
        if !self.cfg.enable_prefix_caching {
            return 0;
        }
        hashes.iter().take_while(|&&h| self.map.contains_key(h)).count()
    }

    /// Admits a sequence of `tokens` tokens whose block *i* has hash `hashes[i]` (the hashes
    /// may stop early; extra hashes beyond `blocks_for(tokens)` are ignored). Reuses the cached
    /// prefix and takes the other blocks from the free stack or by LRU eviction — all of them, or
    /// none and [`NoSpace`].
    pub fn allocate(&mut self, hashes: &[u64], tokens: u32) -> Result<Allocation, NoSpace> {
        let n = self.blocks_for(tokens) as usize;
        let caching = self.cfg.enable_prefix_caching;
        let hashes = if caching { &hashes[..hashes.len().min(n)] } else { &[][..] };
        // Check: count fresh blocks needed and the evictable blocks this request would pin.
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.mark.fill(0);
            self.epoch = 1;
        }
        let (mut found, mut leading, mut pinned_evictable) = (0u32, 0u32, 0u32);
        let mut hits = std::mem::take(&mut self.scratch);
        hits.clear();
        for (i, h) in hashes.iter().enumerate() {
            let hit = self.map.get(*h);
            hits.push(hit.unwrap_or(NIL));
            if let Some(b) = hit {
                found += 1;
                if leading as usize == i {
                    leading += 1;
                }
                if self.ref_count[b as usize] == 0 && self.mark[b as usize] != self.epoch {
                    self.mark[b as usize] = self.epoch;
                    pinned_evictable += 1;
                }
            }
        }
        let needed = n as u32 - found;
        let available = self.available_blocks() - pinned_evictable;
        if needed > available {
            self.scratch = hits;
            return Err(NoSpace { needed, available });
        }
        // Act: pin every found block first (so eviction cannot take them), then fill the rest.
        let slot = self.new_seq_slot();
        let mut blocks = std::mem::take(&mut self.seqs[slot as usize].blocks);
        blocks.clear();
        blocks.resize(n, NIL);
        for (i, &b) in hits.iter().enumerate() {
            if b != NIL {
                self.pin(b);
                blocks[i] = b;
            }
        }
        self.scratch = hits;
        for (i, slot_block) in blocks.iter_mut().enumerate() {
            if *slot_block != NIL {
                continue;
            }
            let b = self.take_fresh();
            *slot_block = b;
            if let Some(&h) = hashes.get(i) {
                // An absent hash repeated within this request registers its first block only.
                if self.map.insert_if_absent(h, b) {
                    self.hash[b as usize] = Some(h);
                    self.event(h, true);
                }
            }
        }
        let tail_hashed = tokens % self.cfg.block_size != 0
            && blocks.last().is_some_and(|&b| self.hash[b as usize].is_some());
        let s = &mut self.seqs[slot as usize];
        s.blocks = blocks;
        s.tokens = tokens;
        s.live = true;
        s.tail_hashed = tail_hashed;
        Ok(Allocation {
            seq: SeqId(slot),
            cached_blocks: leading,
            cached_tokens: (leading.saturating_mul(self.cfg.block_size)).min(tokens),
            new_blocks: needed,
        })
    }

    /// Extends sequence `seq` to `tokens` tokens (decode appends), taking a new hash-less block
    /// at each block boundary crossed, and a private copy of a shared hashed partial last block
    /// (see the module docs). All or nothing; shrinking is a no-op.
    ///
    /// # Panics
    /// If `seq` is not a live handle.
    pub fn grow(&mut self, seq: SeqId, tokens: u32) -> Result<(), NoSpace> {
        self.grow_hashed(seq, tokens, &[])
    }

    /// [`KvCache::grow`] for a prompt computed in chunks: new block *i* registers `hashes[i]`
    /// (if given, caching is on and no other block holds that hash yet), so a later chunk's
    /// blocks become reusable prefix too.
    ///
    /// # Panics
    /// If `seq` is not a live handle.
    pub fn grow_hashed(&mut self, seq: SeqId, tokens: u32, hashes: &[u64]) -> Result<(), NoSpace> {
        let (old_tokens, have, tail_hashed) = {
            let s = self.live(seq);
            (s.tokens, s.blocks.len() as u32, s.tail_hashed)
        };
        if tokens <= old_tokens {
            return Ok(());
        }
        let bs = self.cfg.block_size;
        let extra = self.blocks_for(tokens).saturating_sub(have);
        // The last block is partial and about to be written into.
        let last = if tail_hashed && old_tokens % bs != 0 {
            self.live(seq).blocks.last().copied()
        } else {
            None
        };
        let last_hashed = last.filter(|&b| self.hash[b as usize].is_some());
        let cow = last_hashed.is_some_and(|b| self.ref_count[b as usize] > 1);
        let needed = extra + u32::from(cow);
        if needed > self.available_blocks() {
            return Err(NoSpace { needed, available: self.available_blocks() });
        }
        if let Some(b) = last_hashed {
            if cow {
                let fresh = self.take_fresh();
                self.ref_count[b as usize] -= 1;
                let blocks = &mut self.seqs[seq.0 as usize].blocks;
                *blocks.last_mut().expect("partial block exists") = fresh;
            } else if let Some(h) = self.hash[b as usize].take() {
                self.map.remove(h);
                self.event(h, false);
            }
        }
        let hashes = if self.cfg.enable_prefix_caching { hashes } else { &[][..] };
        for _ in 0..extra {
            let b = self.take_fresh();
            let i = self.seqs[seq.0 as usize].blocks.len();
            self.seqs[seq.0 as usize].blocks.push(b);
            if let Some(&h) = hashes.get(i) {
                if self.map.insert_if_absent(h, b) {
                    self.hash[b as usize] = Some(h);
                    self.event(h, true);
                }
            }
        }
        let tail_hashed = tokens % bs != 0
            && self.seqs[seq.0 as usize]
                .blocks
                .last()
                .is_some_and(|&b| extra > 0 && self.hash[b as usize].is_some());
        let s = &mut self.seqs[seq.0 as usize];
        s.tokens = tokens;
        s.tail_hashed = tail_hashed;
        Ok(())
    }

    /// Releases sequence `seq`: each block loses one reference; a block left unreferenced
    /// becomes cached-evictable if it holds a hash (appended to the LRU list in the configured
    /// [`ReleaseOrder`]) and free otherwise. The handle becomes invalid.
    ///
    /// # Panics
    /// If `seq` is not a live handle.
    pub fn free(&mut self, seq: SeqId) {
        self.live(seq);
        let mut blocks = std::mem::take(&mut self.seqs[seq.0 as usize].blocks);
        match self.cfg.release_order {
            ReleaseOrder::TailFirst => blocks.iter().rev().for_each(|&b| self.unref(b)),
            ReleaseOrder::Forward => blocks.iter().for_each(|&b| self.unref(b)),
        }
        blocks.clear();
        let s = &mut self.seqs[seq.0 as usize];
        s.blocks = blocks;
        s.live = false;
        s.tokens = 0;
        self.free_seqs.push(seq.0);
    }

    /// Checks block conservation and the bookkeeping invariants in O(capacity + held blocks);
    /// for tests and end-of-run checks. Returns a description of the first violation.
    pub fn check_conservation(&self) -> Result<(), String> {
        let cap = self.cfg.capacity_blocks;
        let total = u64::from(self.allocated) + self.free.len() as u64 + u64::from(self.cached);
        if total != u64::from(cap) {
            return Err(format!(
                "allocated {} + free {} + cached {} != capacity {cap}",
                self.allocated,
                self.free.len(),
                self.cached
            ));
        }
        let mut refs = vec![0u32; cap as usize];
        for s in self.seqs.iter().filter(|s| s.live) {
            if s.blocks.len() as u32 != self.blocks_for(s.tokens) {
                return Err(format!(
                    "sequence holds {} blocks for {} tokens",
                    s.blocks.len(),
                    s.tokens
                ));
            }
            s.blocks.iter().for_each(|&b| refs[b as usize] += 1);
        }
        if refs != self.ref_count {
            return Err("reference counts differ from the block tables".into());
        }
        let mut on_lru = vec![false; cap as usize];
        let (mut b, mut n, mut prev) = (self.lru_head, 0u32, NIL);
        while b != NIL {
            if on_lru[b as usize] || self.prev[b as usize] != prev {
                return Err(format!("LRU list corrupt at block {b}"));
            }
            on_lru[b as usize] = true;
            n += 1;
            prev = b;
            b = self.next[b as usize];
        }
        if n != self.cached || prev != self.lru_tail {
            return Err(format!("LRU list holds {n} blocks, cached = {}", self.cached));
        }
        let mut is_free = vec![false; cap as usize];
        for &f in &self.free {
            if is_free[f as usize] {
                return Err(format!("block {f} twice on the free stack"));
            }
            is_free[f as usize] = true;
        }
        for i in 0..cap as usize {
            let state = (self.ref_count[i] > 0, on_lru[i], is_free[i]);
            let ok = match state {
                (true, false, false) => true,
                (false, true, false) => self.hash[i].is_some(),
                (false, false, true) => self.hash[i].is_none(),
                _ => false,
            };
            if !ok {
                return Err(format!("block {i} in an inconsistent state {state:?}"));
            }
            if let Some(h) = self.hash[i] {
                if self.map.get(h) != Some(i as u32) {
                    return Err(format!("block {i}'s hash is not mapped to it"));
                }
            }
        }
        if self.map.len() != self.hash.iter().filter(|h| h.is_some()).count() {
            return Err("hash map and block hashes differ in size".into());
        }
        if self.allocated as usize != self.ref_count.iter().filter(|&&r| r > 0).count() {
            return Err("allocated counter is stale".into());
        }
        Ok(())
    }

    fn live(&self, seq: SeqId) -> &Seq {
        match self.seqs.get(seq.0 as usize) {
            Some(s) if s.live => s,
            _ => panic!("KV sequence {seq:?} is not live"),
        }
    }

    fn new_seq_slot(&mut self) -> u32 {
        if let Some(s) = self.free_seqs.pop() {
            return s;
        }
        self.seqs.push(Seq::default());
        (self.seqs.len() - 1) as u32
    }

    /// Takes one more reference to a block found in the hash map.
    fn pin(&mut self, b: u32) {
        if self.ref_count[b as usize] == 0 {
            self.lru_remove(b);
            self.cached -= 1;
            self.allocated += 1;
        }
        self.ref_count[b as usize] += 1;
    }

    /// A block with no content and one reference: from the free stack, else by evicting the LRU
    /// cached block. The caller has checked availability.
    fn take_fresh(&mut self) -> u32 {
        let b = match self.free.pop() {
            Some(b) => b,
            None => {
                let b = self.lru_head;
                debug_assert!(b != NIL, "take_fresh without an available block");
                self.lru_remove(b);
                self.cached -= 1;
                if let Some(h) = self.hash[b as usize].take() {
                    self.map.remove(h);
                    self.event(h, false);
                }
                b
            }
        };
        self.ref_count[b as usize] = 1;
        self.allocated += 1;
        b
    }

    fn unref(&mut self, b: u32) {
        let r = &mut self.ref_count[b as usize];
        *r -= 1;
        if *r > 0 {
            return;
        }
        self.allocated -= 1;
        if self.hash[b as usize].is_some() {
            self.lru_push_tail(b);
            self.cached += 1;
        } else {
            self.free.push(b);
        }
    }

    fn lru_remove(&mut self, b: u32) {
        let (p, n) = (self.prev[b as usize], self.next[b as usize]);
        if p == NIL {
            self.lru_head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            self.lru_tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.prev[b as usize] = NIL;
        self.next[b as usize] = NIL;
    }

    fn lru_push_tail(&mut self, b: u32) {
        self.prev[b as usize] = self.lru_tail;
        self.next[b as usize] = NIL;
        if self.lru_tail == NIL {
            self.lru_head = b;
        } else {
            self.next[self.lru_tail as usize] = b;
        }
        self.lru_tail = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{mix64, Stream};

    fn cache(cap: u32, bs: u32, order: ReleaseOrder) -> KvCache {
        KvCache::new(KvConfig {
            capacity_blocks: cap,
            block_size: bs,
            enable_prefix_caching: true,
            release_order: order,
        })
    }

    /// Everything observable except the scratch marks.
    fn snapshot(c: &KvCache) -> String {
        let mut lru = Vec::new();
        let mut b = c.lru_head;
        while b != NIL {
            lru.push(b);
            b = c.next[b as usize];
        }
        let seqs: Vec<_> = c.seqs.iter().map(|s| (s.live, s.tokens, s.blocks.clone())).collect();
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {} {} {seqs:?}",
            c.ref_count, c.hash, lru, c.free, c.map, c.free_seqs, c.allocated, c.cached
        )
    }

    fn ok(c: &KvCache) {
        if let Err(e) = c.check_conservation() {
            panic!("{e}");
        }
    }

    #[test]
    fn allocate_grow_free_counts_blocks() {
        let mut c = cache(8, 4, ReleaseOrder::TailFirst);
        let a = c.allocate(&[], 5).unwrap();
        assert_eq!((a.cached_blocks, a.new_blocks), (0, 2));
        assert_eq!((c.allocated_blocks(), c.free_blocks(), c.cached_blocks()), (2, 6, 0));
        c.grow(a.seq, 8).unwrap();
        assert_eq!(c.allocated_blocks(), 2, "no boundary crossed");
        c.grow(a.seq, 9).unwrap();
        assert_eq!(c.allocated_blocks(), 3);
        assert_eq!(c.seq_tokens(a.seq), 9);
        c.grow(a.seq, 3).unwrap();
        assert_eq!(c.seq_tokens(a.seq), 9, "shrinking is a no-op");
        ok(&c);
        c.free(a.seq);
        assert_eq!((c.allocated_blocks(), c.free_blocks(), c.cached_blocks()), (0, 8, 0));
        assert_eq!(c.running(), 0);
        ok(&c);
    }

    #[test]
    fn shared_prefix_is_reference_counted() {
        let mut c = cache(8, 4, ReleaseOrder::TailFirst);
        let a = c.allocate(&[1, 2, 3], 12).unwrap();
        assert_eq!(c.lookup_prefix(&[1, 2, 9]), 2);
        let b = c.allocate(&[1, 2, 9], 12).unwrap();
        assert_eq!((b.cached_blocks, b.cached_tokens, b.new_blocks), (2, 8, 1));
        assert_eq!(c.seq_blocks(a.seq)[..2], c.seq_blocks(b.seq)[..2]);
        for &blk in &c.seq_blocks(a.seq)[..2] {
            assert_eq!(c.ref_count[blk as usize], 2);
        }
        assert_eq!(c.allocated_blocks(), 4, "the shared prefix is counted once");
        ok(&c);
        c.free(a.seq);
        assert_eq!((c.allocated_blocks(), c.cached_blocks()), (3, 1), "only block 3 released");
        ok(&c);
        c.free(b.seq);
        assert_eq!((c.allocated_blocks(), c.cached_blocks(), c.free_blocks()), (0, 4, 4));
        ok(&c);
        // A third request reuses the cached blocks and only they leave the LRU list.
        let d = c.allocate(&[1, 2, 3, 4], 13).unwrap();
        assert_eq!((d.cached_blocks, d.cached_tokens, d.new_blocks), (3, 12, 1));
        assert_eq!((c.allocated_blocks(), c.cached_blocks(), c.free_blocks()), (4, 1, 3));
        ok(&c);
    }

    #[test]
    fn lru_evicts_released_chains_tail_first() {
        let mut c = cache(4, 1, ReleaseOrder::TailFirst);
        let a = c.allocate(&[1, 2], 2).unwrap();
        c.free(a.seq);
        let b = c.allocate(&[3, 4], 2).unwrap();
        c.free(b.seq);
        // LRU list, oldest first: 2 1 4 3.
        assert_eq!(c.cached_blocks(), 4);
        let x = c.allocate(&[], 1).unwrap();
        assert_eq!((c.lookup_prefix(&[1, 2]), c.lookup_prefix(&[3, 4])), (1, 2));
        let y = c.allocate(&[], 1).unwrap();
        assert_eq!((c.lookup_prefix(&[1, 2]), c.lookup_prefix(&[3, 4])), (0, 2));
        // Touching chain [3, 4] and releasing it keeps it most recently used; hash-less blocks
        // go back to the free stack and are used before any eviction.
        c.free(x.seq);
        c.free(y.seq);
        assert_eq!((c.free_blocks(), c.cached_blocks()), (2, 2));
        let z = c.allocate(&[], 2).unwrap();
        assert_eq!(c.lookup_prefix(&[3, 4]), 2);
        let w = c.allocate(&[], 1).unwrap();
        assert_eq!(c.lookup_prefix(&[3, 4]), 1);
        ok(&c);
        c.free(z.seq);
        c.free(w.seq);
        ok(&c);
    }

    #[test]
    fn lru_touch_moves_a_chain_to_most_recent() {
        let mut c = cache(4, 1, ReleaseOrder::TailFirst);
        let a = c.allocate(&[1, 2], 2).unwrap();
        c.free(a.seq);
        let b = c.allocate(&[3, 4], 2).unwrap();
        c.free(b.seq);
        let a2 = c.allocate(&[1, 2], 2).unwrap();
        assert_eq!((a2.cached_blocks, a2.new_blocks), (2, 0));
        c.free(a2.seq);
        // Now oldest first: 4 3 2 1.
        let x = c.allocate(&[], 2).unwrap();
        assert_eq!((c.lookup_prefix(&[1, 2]), c.lookup_prefix(&[3, 4])), (2, 0));
        c.free(x.seq);
        ok(&c);
    }

    #[test]
    fn forward_release_order_evicts_chain_heads_first() {
        let mut c = cache(4, 1, ReleaseOrder::Forward);
        let a = c.allocate(&[1, 2], 2).unwrap();
        c.free(a.seq);
        let b = c.allocate(&[3, 4], 2).unwrap();
        c.free(b.seq);
        let x = c.allocate(&[], 1).unwrap();
        assert_eq!(c.lookup_prefix(&[1, 2]), 0, "block 1 went first");
        // Block 2 is still cached: a request on this chain shares it but recomputes it.
        let r = c.allocate(&[1, 2], 2).unwrap();
        assert_eq!((r.cached_blocks, r.new_blocks), (0, 1));
        assert_eq!(c.allocated_blocks(), 3);
        ok(&c);
        c.free(r.seq);
        c.free(x.seq);
        ok(&c);
    }

    #[test]
    fn failed_allocation_changes_nothing() {
        let mut c = cache(4, 2, ReleaseOrder::TailFirst);
        let a = c.allocate(&[7], 5).unwrap();
        let before = snapshot(&c);
        assert_eq!(c.allocate(&[], 3), Err(NoSpace { needed: 2, available: 1 }));
        assert_eq!(snapshot(&c), before);
        assert_eq!(c.grow(a.seq, 9), Err(NoSpace { needed: 2, available: 1 }));
        assert_eq!(snapshot(&c), before);
        c.free(a.seq);
        // Evictable blocks the request itself would reuse cannot also be evicted for it.
        let mut c = cache(3, 1, ReleaseOrder::TailFirst);
        let a = c.allocate(&[1, 2], 2).unwrap();
        c.free(a.seq);
        assert_eq!(c.available_blocks(), 3);
        let before = snapshot(&c);
        assert_eq!(c.allocate(&[1, 2, 5, 6], 4), Err(NoSpace { needed: 2, available: 1 }));
        assert_eq!(snapshot(&c), before);
        let d = c.allocate(&[1, 2, 5], 3).unwrap();
        assert_eq!((d.cached_blocks, d.new_blocks, c.available_blocks()), (2, 1, 0));
        ok(&c);
    }

    #[test]
    fn growing_into_a_hashed_partial_block_makes_it_private() {
        let mut c = cache(8, 4, ReleaseOrder::TailFirst);
        // The last prompt block (tokens 5..6) is partial and hashed, as in the Mooncake traces.
        let a = c.allocate(&[1, 2], 6).unwrap();
        let b = c.allocate(&[1, 2], 6).unwrap();
        assert_eq!((b.cached_blocks, b.cached_tokens, b.new_blocks), (2, 6, 0));
        let shared = c.seq_blocks(a.seq)[1];
        // Shared: copy-on-write, the cached block keeps its hash.
        c.grow(a.seq, 7).unwrap();
        assert_ne!(c.seq_blocks(a.seq)[1], shared);
        assert_eq!(c.allocated_blocks(), 3);
        assert_eq!(c.lookup_prefix(&[1, 2]), 2);
        ok(&c);
        // Sole owner: the block drops its hash in place.
        c.grow(b.seq, 7).unwrap();
        assert_eq!(c.seq_blocks(b.seq)[1], shared);
        assert_eq!(c.lookup_prefix(&[1, 2]), 1);
        assert_eq!(c.allocated_blocks(), 3);
        ok(&c);
        c.free(a.seq);
        c.free(b.seq);
        assert_eq!((c.cached_blocks(), c.free_blocks()), (1, 7));
        ok(&c);
    }

    #[test]
    fn prefix_caching_disabled_shares_and_keeps_nothing() {
        let mut c = KvCache::new(KvConfig {
            capacity_blocks: 8,
            block_size: 4,
            enable_prefix_caching: false,
            release_order: ReleaseOrder::TailFirst,
        });
        let a = c.allocate(&[1, 2], 8).unwrap();
        assert_eq!(c.lookup_prefix(&[1, 2]), 0);
        let b = c.allocate(&[1, 2], 8).unwrap();
        assert_eq!((b.cached_blocks, b.cached_tokens, b.new_blocks), (0, 0, 2));
        assert_eq!(c.allocated_blocks(), 4);
        c.free(a.seq);
        c.free(b.seq);
        assert_eq!((c.cached_blocks(), c.free_blocks()), (0, 8));
        let d = c.allocate(&[1, 2], 8).unwrap();
        assert_eq!(d.cached_blocks, 0);
        ok(&c);
    }

    /// A random mix of allocate / grow / free over chained hashes of a few "conversations":
    /// conservation and every bookkeeping invariant hold after each operation, failures change
    /// nothing, and the reported hit equals the prior lookup.
    #[test]
    fn randomized_operations_conserve_blocks() {
        for (seed, caching, order) in [
            (1, true, ReleaseOrder::TailFirst),
            (2, true, ReleaseOrder::Forward),
            (3, false, ReleaseOrder::TailFirst),
            (4, true, ReleaseOrder::TailFirst),
        ] {
            let bs = 4;
            let mut c = KvCache::new(KvConfig {
                capacity_blocks: 48,
                block_size: bs,
                enable_prefix_caching: caching,
                release_order: order,
            });
            let mut s = Stream::new(seed, "kv-test", 0);
            let mut live: Vec<SeqId> = Vec::new();
            let (mut fails, mut hits) = (0, 0);
            for _ in 0..4000 {
                let op = s.index_mod(4);
                if op <= 1 || live.is_empty() {
                    let conv = s.index_mod(6) as u64;
                    let len = 1 + s.index_mod(10) as u32;
                    let hashes: Vec<u64> =
                        (0..len as u64).map(|i| mix64(conv * 1000 + i)).collect();
                    let tokens = len * bs - s.index_mod(bs as usize) as u32;
                    let hashed = s.index_mod(len as usize + 1);
                    let before = snapshot(&c);
                    let expect = c.lookup_prefix(&hashes[..hashed]) as u32;
                    match c.allocate(&hashes[..hashed], tokens) {
                        Ok(a) => {
                            assert_eq!(a.cached_blocks, expect);
                            hits += a.cached_blocks;
                            assert_eq!(c.seq_blocks(a.seq).len() as u32, c.blocks_for(tokens));
                            live.push(a.seq);
                        }
                        Err(_) => {
                            fails += 1;
                            assert_eq!(snapshot(&c), before);
                        }
                    }
                } else if op == 2 {
                    let q = live[s.index_mod(live.len())];
                    let to = c.seq_tokens(q) + 1 + s.index_mod(2 * bs as usize) as u32;
                    let before = snapshot(&c);
                    if c.grow(q, to).is_err() {
                        fails += 1;
                        assert_eq!(snapshot(&c), before);
                    } else {
                        assert_eq!(c.seq_tokens(q), to);
                    }
                } else {
                    let q = live.swap_remove(s.index_mod(live.len()));
                    c.free(q);
                }
                ok(&c);
                assert_eq!(c.running(), live.len());
            }
            assert!(fails > 50, "the pool must run full sometimes ({fails} failures)");
            assert_eq!(hits > 0, caching);
            for q in live.drain(..) {
                c.free(q);
            }
            ok(&c);
            assert_eq!(c.allocated_blocks(), 0);
        }
    }
}
