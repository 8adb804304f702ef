//! `weighted_scorers`: the llm-d inference scheduler / Gateway API Inference Extension endpoint
//! picker (EPP) with its default single profile (reference §2.3).
//!
//! Rule: every candidate `e` gets `S(e) = Σ_k weight_k · clamp(score_k(e), 0, 1)` over the
//! scorers below, then a picker chooses from `(e, S)`. Scorers (llm-d type names in parentheses):
//!
//! - `queue` (`queue-scorer`): `(max_q − q_e)/(max_q − min_q)` over the candidates on the
//!   scraped waiting count; all equal → 1.0.
//! - `kv_cache_utilization` (`kv-cache-utilization-scorer`): `1 − kv_util` (scraped).
//! - `prefix_cache` (`prefix-cache-scorer` fed by `approx-prefix-cache-producer`):
//!   `matched_blocks_e / total_blocks` from the approximate prefix index below; 0 without hashes.
//! - `load_aware` (`load-aware-scorer`): `q = 0 → 0.5`, else `0.5·(1 − min(q, T)/T)` on the
//!   scraped waiting count, `T = load_aware_threshold` (128).
//! - `active_request` (`active-request-scorer`): on this gateway's in-flight count `c`:
//!   `c ≤ 0 → 1.0`, else `(max_c − c)/max_c` (idle threshold 0, max busy score 1.0).
//! - `running_requests` (`running-requests-size-scorer`): min-max normalised like `queue` on
//!   the scraped running count.
//!
//! Each weight is the flat parameter `<scorer>_weight` (e.g. `queue_weight`). Defaults are
//! llm-d's built-in profile (`pkg/epp/config/loader/defaults.go`): queue 2, KV utilisation 2,
//! prefix 3, the others 0. A weight left out keeps its default (set it to 0 to drop a scorer);
//! a scorer with weight 0 is not evaluated (prefix weight 0: no hashes are asked for).
//!
//! Approximate prefix index (`approx-prefix-cache-producer`, GIE `prefix/indexer.go`): hash →
//! set of replicas, plus a per-replica LRU of hashes of `lru_capacity_per_server` entries; an
//! eviction removes that replica from the hash's set. Match: the request's hashes (truncated to
//! `max_prefix_blocks_to_match`) are walked from block 0; at the first hash no replica holds the
//! walk stops, and otherwise *every* replica holding the hash gets +1 — so a count is the number
//! of blocks a replica holds inside the globally matched run, not strictly its own contiguous
//! prefix. Lookups do not touch the LRU. After the pick (llm-d `PreRequest`) all those hashes
//! are added in order to the chosen replica's LRU (an existing entry moves to the front), so
//! block 0 is the oldest of a request's entries. The index reflects routing history, never the
//! engines' real evictions, and belongs to this gateway (one per EPP replica).
//!
//! Pickers: `max_score` (llm-d `max-score-picker`: shuffle the candidates, stable-sort by score
//! descending, take the first — uniform among exact ties; implemented as a Fisher–Yates
//! shuffle drawn like Go's `rand.Shuffle`, then the first maximum in shuffled order, which is
//! what the stable sort returns) and `weighted_random` (llm-d `weighted-random-picker`, A-Res:
//! key `U^(1/S)` for `S > 0`, key 0 otherwise, largest key wins; no positive score → uniform).
//!
//! Signals and staleness: `queued`, `in_service`, `kv_util` are scraped (as old as the last
//! metrics refresh; llm-d polls every 50 ms); `in_flight` is this gateway's exact counter; the
//! prefix index is this gateway's routing history, updated synchronously after each pick
//! (llm-d updates it asynchronously). Stream: `router:weighted_scorers` (shuffle and A-Res).
//!
//! Simplifications: blocks are the simulator's token blocks of `view.block_size` (llm-d's
//! `autoTune` takes the engine's block size; it hashes characters at 4 per token); the hash
//! chain is salted with the model index (llm-d seeds it with the model name); the unique tail
//! of a prompt is not hashed (llm-d also hashes a trailing partial block); the LRU capacity is
//! fixed (llm-d's auto-tune may use the engine's block count); replicas are never purged from
//! the index (llm-d purges dead pods every 2 min); the saturation filter and flow control are
//! not part of this policy. Cost of a route: O(candidates + prompt blocks + Σ holders of the
//! matched blocks), no steady-state allocation.

use super::RouterEntry;
use super::{parse_params, BuildCtx, ParamDoc, RequestView, RouteView, Router};
use crate::cluster::hash_index::HashIndex;
use crate::rng::{mix64, Stream};
use serde::Deserialize;

/// llm-d `DefaultMaxPrefixBlocks`.
pub(super) const MAX_PREFIX_BLOCKS: u32 = 256;
/// llm-d `DefaultLRUCapacityPerServer`.
const LRU_CAPACITY_PER_SERVER: u32 = 31_250;
/// llm-d load-aware scorer's default queue threshold.
pub(super) const LOAD_AWARE_THRESHOLD: u32 = 128;

/// Scorer weights, one per llm-d scorer this simulator models.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Weights {
    pub(super) queue: f64,
    pub(super) kv_cache_utilization: f64,
    pub(super) prefix_cache: f64,
    pub(super) load_aware: f64,
    pub(super) active_request: f64,
    pub(super) running_requests: f64,
}

impl Weights {
    /// `Err` naming the first weight that is negative or not finite.
    pub(super) fn validate(&self) -> Result<(), String> {
        let all = [
            ("queue_weight", self.queue),
            ("kv_cache_utilization_weight", self.kv_cache_utilization),
            ("prefix_cache_weight", self.prefix_cache),
            ("load_aware_weight", self.load_aware),
            ("active_request_weight", self.active_request),
            ("running_requests_weight", self.running_requests),
        ];
        for (name, w) in all {
            if !w.is_finite() || w < 0.0 {
                return Err(format!("{name} = {w}: must be a finite number >= 0"));
            }
        }
        Ok(())
    }
}

/// How the endpoint is chosen from the scores.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(super) enum Picker {
    /// llm-d `max-score-picker`: highest score, uniform among exact ties.
    #[default]
    MaxScore,
    /// llm-d `weighted-random-picker`: probability proportional to the score (A-Res).
    WeightedRandom,
}

/// Checks the parameters both llm-d policies share.
pub(super) fn validate_common(
    max_prefix_blocks: u32,
    load_aware_threshold: u32,
) -> Result<(), String> {
    if max_prefix_blocks == 0 {
        return Err("max_prefix_blocks_to_match = 0: must be at least 1".to_string());
    }
    if load_aware_threshold == 0 {
        return Err("load_aware_threshold = 0: must be at least 1".to_string());
    }
    Ok(())
}

/// `clamp(x, 0, 1)`, as the EPP applies to every scorer's output (NaN → 0).
#[inline]
fn clamp01(x: f64) -> f64 {
    if x > 0.0 {
        x.min(1.0)
    } else {
        0.0
    }
}

/// llm-d `queue-scorer` / `running-requests-size-scorer`: min-max normalised, lower is better.
#[inline]
pub(super) fn min_max_score(v: u32, min: u32, max: u32) -> f64 {
    if max == min {
        1.0
    } else {
        f64::from(max - v) / f64::from(max - min)
    }
}

/// llm-d `kv-cache-utilization-scorer`.
#[inline]
pub(super) fn kv_score(kv_util: f32) -> f64 {
    1.0 - f64::from(kv_util)
}

/// llm-d `load-aware-scorer` with queue threshold `t`.
#[inline]
pub(super) fn load_aware_score(q: u32, t: u32) -> f64 {
    if q == 0 {
        0.5
    } else {
        0.5 * (1.0 - f64::from(q.min(t)) / f64::from(t))
    }
}

/// llm-d `active-request-scorer` (idle threshold 0, max busy score 1).
#[inline]
pub(super) fn active_request_score(c: u32, max_c: u32) -> f64 {
    if c == 0 {
        1.0
    } else {
        f64::from(max_c - c) / f64::from(max_c)
    }
}

/// The EPP scoring pipeline without its prefix scorer, plus the picker. Buffers are reused.
pub(super) struct Scoring {
    pub(super) weights: Weights,
    picker: Picker,
    load_aware_threshold: u32,
    rng: Stream,
    /// `S(e)` by candidate position.
    score: Vec<f64>,
    /// Candidate positions, shuffled by the max-score picker.
    order: Vec<u32>,
}

impl Scoring {
    pub(super) fn new(
        weights: Weights,
        picker: Picker,
        load_aware_threshold: u32,
        rng: Stream,
    ) -> Scoring {
        Scoring { weights, picker, load_aware_threshold, rng, score: Vec::new(), order: Vec::new() }
    }

    /// Resets every candidate's score and adds the load scorers that have a positive weight.
    pub(super) fn score_load(&mut self, view: &RouteView<'_>) {
        let c = view.candidates;
        let w = self.weights;
        self.score.clear();
        self.score.resize(c.len(), 0.0);
        if w.queue > 0.0 {
            add_min_max(&mut self.score, c, view.queued, w.queue);
        }
        if w.kv_cache_utilization > 0.0 {
            for (s, &r) in self.score.iter_mut().zip(c) {
                *s += w.kv_cache_utilization * clamp01(kv_score(view.kv_util[r as usize]));
            }
        }
        if w.load_aware > 0.0 {
            let t = self.load_aware_threshold;
            for (s, &r) in self.score.iter_mut().zip(c) {
                *s += w.load_aware * clamp01(load_aware_score(view.queued[r as usize], t));
            }
        }
        if w.active_request > 0.0 {
            let max_c = c.iter().map(|&r| view.in_flight[r as usize]).max().unwrap_or(0);
            for (s, &r) in self.score.iter_mut().zip(c) {
                let a = active_request_score(view.in_flight[r as usize], max_c);
                *s += w.active_request * clamp01(a);
            }
        }
        if w.running_requests > 0.0 {
            add_min_max(&mut self.score, c, view.in_service, w.running_requests);
        }
    }

    /// Adds `weight · clamp(score)` to the candidate at position `pos`.
    #[inline]
    pub(super) fn add(&mut self, pos: usize, weight: f64, score: f64) {
        self.score[pos] += weight * clamp01(score);
    }

    /// The picker's choice among `view.candidates` given the scores so far.
    pub(super) fn pick(&mut self, view: &RouteView<'_>) -> u32 {
        let pos = match self.picker {
            Picker::MaxScore => self.max_score(),
            Picker::WeightedRandom => self.weighted_random(),
        };
        view.candidates[pos]
    }

    /// Shuffle (Go `rand.Shuffle`: i from n−1 down to 1, j = U[0, i]), then the first
    /// maximum in shuffled order (= stable sort by score descending, take the first).
    fn max_score(&mut self) -> usize {
        let n = self.score.len();
        self.order.clear();
        self.order.extend(0..n as u32);
        for i in (1..n).rev() {
            let j = self.rng.index_mod(i + 1);
            self.order.swap(i, j);
        }
        let mut best = self.order[0] as usize;
        for &p in &self.order[1..] {
            if self.score[p as usize] > self.score[best] {
                best = p as usize;
            }
        }
        best
    }

    /// A-Res with one draw per positive-score candidate, in candidate order; `ln(U)/S` orders
    /// the candidates exactly as `U^(1/S)` does without underflowing for small `S`.
    fn weighted_random(&mut self) -> usize {
        let mut best: Option<(usize, f64)> = None;
        for (p, &s) in self.score.iter().enumerate() {
            if s <= 0.0 {
                continue;
            }
            let key = self.rng.uniform_open().ln() / s;
            if best.is_none_or(|(_, k)| key > k) {
                best = Some((p, key));
            }
        }
        match best {
            Some((p, _)) => p,
            None => self.rng.index_mod(self.score.len()),
        }
    }
}

/// Adds `weight · min_max_score` of `signal` over the candidates `c` to `score`.
fn add_min_max(score: &mut [f64], c: &[u32], signal: &[u32], weight: f64) {
    let (mut lo, mut hi) = (u32::MAX, 0u32);
    for &r in c {
        let v = signal[r as usize];
        lo = lo.min(v);
        hi = hi.max(v);
    }
    for (s, &r) in score.iter_mut().zip(c) {
        *s += weight * clamp01(min_max_score(signal[r as usize], lo, hi));
    }
}

const NIL: u32 = u32::MAX;

/// One (replica, hash) entry: a member of the replica's LRU and of the hash's holder list.
#[derive(Debug, Clone, Copy)]
struct Node {
    key: u64,
    replica: u32,
    slot: u32,
    lru_prev: u32,
    lru_next: u32,
    hold_prev: u32,
    hold_next: u32,
}

/// A replica's LRU of hashes: `head` is the most recent, `tail` the next to evict.
#[derive(Debug, Clone, Default)]
struct Server {
    held: HashIndex,
    head: u32,
    tail: u32,
    len: u32,
}

/// llm-d's approximate prefix index: hash → replicas holding it, with a bounded LRU of hashes
/// per replica. Intrusive lists in an arena: every operation is O(1) apart from the match,
/// which visits each holder of each matched hash once. Memory is bounded by
/// `capacity × replicas` entries; freed entries are reused.
#[derive(Debug, Clone)]
pub(super) struct ApproxPrefixIndex {
    capacity: u32,
    /// Hash → slot; a slot exists exactly while some replica holds the hash.
    slots: HashIndex,
    /// Slot → first holder node.
    slot_head: Vec<u32>,
    slot_free: Vec<u32>,
    nodes: Vec<Node>,
    node_free: Vec<u32>,
    servers: Vec<Server>,
    /// Match counts by replica, valid where `stamp == epoch`.
    count: Vec<u32>,
    stamp: Vec<u64>,
    epoch: u64,
}

impl ApproxPrefixIndex {
    pub(super) fn new(capacity: u32, replicas: usize) -> ApproxPrefixIndex {
        debug_assert!(capacity > 0);
        let mut ix = ApproxPrefixIndex {
            capacity,
            slots: HashIndex::new(),
            slot_head: Vec::new(),
            slot_free: Vec::new(),
            nodes: Vec::new(),
            node_free: Vec::new(),
            servers: Vec::new(),
            count: Vec::new(),
            stamp: Vec::new(),
            epoch: 0,
        };
        ix.ensure(replicas);
        ix
    }

    /// Makes room for replica ids below `replicas`.
    pub(super) fn ensure(&mut self, replicas: usize) {
        if self.servers.len() < replicas {
            let empty = Server { held: HashIndex::new(), head: NIL, tail: NIL, len: 0 };
            self.servers.resize(replicas, empty);
            self.count.resize(replicas, 0);
            self.stamp.resize(replicas, 0);
        }
    }

    /// Runs llm-d's `matchLongestPrefix` over `keys`; read the result with [`Self::matched`].
    pub(super) fn match_prefix(&mut self, keys: &[u64]) {
        self.epoch += 1;
        for &k in keys {
            let Some(slot) = self.slots.get(k) else { break };
            let mut n = self.slot_head[slot as usize];
            while n != NIL {
                let node = self.nodes[n as usize];
                let r = node.replica as usize;
                if self.stamp[r] != self.epoch {
                    self.stamp[r] = self.epoch;
                    self.count[r] = 0;
                }
                self.count[r] += 1;
                n = node.hold_next;
            }
        }
    }

    /// Blocks replica `r` holds within the run matched by the last [`Self::match_prefix`].
    #[inline]
    pub(super) fn matched(&self, r: u32) -> u32 {
        let r = r as usize;
        if r < self.stamp.len() && self.stamp[r] == self.epoch {
            self.count[r]
        } else {
            0
        }
    }

    /// Whether replica `r` holds `key`.
    #[cfg(test)]
    fn holds(&self, r: u32, key: u64) -> bool {
        self.servers.get(r as usize).is_some_and(|s| s.held.contains_key(key))
    }

    /// Entries in replica `r`'s LRU.
    #[cfg(test)]
    fn len_of(&self, r: u32) -> u32 {
        self.servers.get(r as usize).map_or(0, |s| s.len)
    }

    /// llm-d `indexer.Add`: each key in order goes to the front of `r`'s LRU (inserted, or
    /// moved if present), evicting `r`'s least recent entry when over capacity.
    pub(super) fn add(&mut self, keys: &[u64], r: u32) {
        self.ensure(r as usize + 1);
        for &k in keys {
            if let Some(n) = self.servers[r as usize].held.get(k) {
                self.lru_unlink(n);
                self.lru_push_front(n);
                continue;
            }
            if self.servers[r as usize].len >= self.capacity {
                let tail = self.servers[r as usize].tail;
                self.evict(tail);
            }
            self.insert(k, r);
        }
    }

    fn insert(&mut self, key: u64, r: u32) {
        let slot = match self.slots.get(key) {
            Some(s) => s,
            None => {
                let s = match self.slot_free.pop() {
                    Some(s) => {
                        self.slot_head[s as usize] = NIL;
                        s
                    }
                    None => {
                        self.slot_head.push(NIL);
                        (self.slot_head.len() - 1) as u32
                    }
                };
                self.slots.insert_if_absent(key, s);
                s
            }
        };
        let head = self.slot_head[slot as usize];
        let node = Node {
            key,
            replica: r,
            slot,
            lru_prev: NIL,
            lru_next: NIL,
            hold_prev: NIL,
            hold_next: head,
        };
        let n = match self.node_free.pop() {
            Some(n) => {
                self.nodes[n as usize] = node;
                n
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        if head != NIL {
            self.nodes[head as usize].hold_prev = n;
        }
        self.slot_head[slot as usize] = n;
        self.lru_push_front(n);
        let s = &mut self.servers[r as usize];
        s.held.insert_if_absent(key, n);
        s.len += 1;
    }

    /// Removes node `n` from its replica's LRU and its hash's holders (the hash disappears
    /// from the index with its last holder).
    fn evict(&mut self, n: u32) {
        self.lru_unlink(n);
        let node = self.nodes[n as usize];
        if node.hold_prev == NIL {
            self.slot_head[node.slot as usize] = node.hold_next;
        } else {
            self.nodes[node.hold_prev as usize].hold_next = node.hold_next;
        }
        if node.hold_next != NIL {
            self.nodes[node.hold_next as usize].hold_prev = node.hold_prev;
        }
        if self.slot_head[node.slot as usize] == NIL {
            self.slots.remove(node.key);
            self.slot_free.push(node.slot);
        }
        let s = &mut self.servers[node.replica as usize];
        s.held.remove(node.key);
        s.len -= 1;
        self.node_free.push(n);
    }

    fn lru_unlink(&mut self, n: u32) {
        let Node { replica, lru_prev, lru_next, .. } = self.nodes[n as usize];
        let s = &mut self.servers[replica as usize];
        if lru_prev == NIL {
            s.head = lru_next;
        } else {
            self.nodes[lru_prev as usize].lru_next = lru_next;
        }
        if lru_next == NIL {
            s.tail = lru_prev;
        } else {
            self.nodes[lru_next as usize].lru_prev = lru_prev;
        }
    }

    fn lru_push_front(&mut self, n: u32) {
        let r = self.nodes[n as usize].replica as usize;
        let head = self.servers[r].head;
        self.nodes[n as usize].lru_prev = NIL;
        self.nodes[n as usize].lru_next = head;
        if head == NIL {
            self.servers[r].tail = n;
        } else {
            self.nodes[head as usize].lru_prev = n;
        }
        self.servers[r].head = n;
    }
}

/// The index key of block hash `h` for `model` (llm-d seeds its hash chain with the model).
#[inline]
fn model_key(h: u64, model: u16) -> u64 {
    h ^ mix64(0x6C6C_6D2D_6420_6D6F ^ u64::from(model))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "w_two")]
    queue_weight: f64,
    #[serde(default = "w_two")]
    kv_cache_utilization_weight: f64,
    #[serde(default = "w_three")]
    prefix_cache_weight: f64,
    #[serde(default)]
    load_aware_weight: f64,
    #[serde(default)]
    active_request_weight: f64,
    #[serde(default)]
    running_requests_weight: f64,
    #[serde(default)]
    picker: Picker,
    #[serde(default = "default_max_blocks")]
    max_prefix_blocks_to_match: u32,
    #[serde(default = "default_lru")]
    lru_capacity_per_server: u32,
    #[serde(default = "default_threshold")]
    load_aware_threshold: u32,
}

fn w_two() -> f64 {
    2.0
}

fn w_three() -> f64 {
    3.0
}

fn default_max_blocks() -> u32 {
    MAX_PREFIX_BLOCKS
}

fn default_lru() -> u32 {
    LRU_CAPACITY_PER_SERVER
}

fn default_threshold() -> u32 {
    LOAD_AWARE_THRESHOLD
}

impl Default for Params {
    fn default() -> Params {
        Params {
            queue_weight: 2.0,
            kv_cache_utilization_weight: 2.0,
            prefix_cache_weight: 3.0,
            load_aware_weight: 0.0,
            active_request_weight: 0.0,
            running_requests_weight: 0.0,
            picker: Picker::MaxScore,
            max_prefix_blocks_to_match: MAX_PREFIX_BLOCKS,
            lru_capacity_per_server: LRU_CAPACITY_PER_SERVER,
            load_aware_threshold: LOAD_AWARE_THRESHOLD,
        }
    }
}

impl Params {
    fn weights(&self) -> Weights {
        Weights {
            queue: self.queue_weight,
            kv_cache_utilization: self.kv_cache_utilization_weight,
            prefix_cache: self.prefix_cache_weight,
            load_aware: self.load_aware_weight,
            active_request: self.active_request_weight,
            running_requests: self.running_requests_weight,
        }
    }
}

struct WeightedScorers {
    scoring: Scoring,
    max_blocks: usize,
    index: ApproxPrefixIndex,
    /// The request's truncated, model-keyed hashes.
    keys: Vec<u64>,
}

impl Router for WeightedScorers {
    fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        self.scoring.score_load(view);
        let w = self.scoring.weights.prefix_cache;
        let total = req.hashes.len().min(self.max_blocks);
        let prefix = w > 0.0 && total > 0;
        if prefix {
            self.keys.clear();
            self.keys.extend(req.hashes[..total].iter().map(|&h| model_key(h, req.model)));
            self.index.match_prefix(&self.keys);
            for (pos, &r) in view.candidates.iter().enumerate() {
                let m = self.index.matched(r);
                self.scoring.add(pos, w, f64::from(m) / total as f64);
            }
        }
        let pick = self.scoring.pick(view);
        if prefix {
            self.index.add(&self.keys, pick);
        }
        pick
    }

    fn uses_prefix_hashes(&self) -> bool {
        self.scoring.weights.prefix_cache > 0.0
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    let weights = p.weights();
    weights.validate()?;
    validate_common(p.max_prefix_blocks_to_match, p.load_aware_threshold)?;
    if p.lru_capacity_per_server == 0 {
        return Err("lru_capacity_per_server = 0: must be at least 1".to_string());
    }
    Ok(Box::new(WeightedScorers {
        scoring: Scoring::new(
            weights,
            p.picker,
            p.load_aware_threshold,
            ctx.stream("weighted_scorers"),
        ),
        max_blocks: p.max_prefix_blocks_to_match as usize,
        index: ApproxPrefixIndex::new(p.lru_capacity_per_server, ctx.replicas.len()),
        keys: Vec::with_capacity(p.max_prefix_blocks_to_match.min(4096) as usize),
    }))
}

/// The weight, picker and threshold parameters both llm-d policies document alike.
pub(super) const COMMON_DOCS: [ParamDoc; 6] = [
    ParamDoc {
        name: "load_aware_weight",
        default: "0",
        doc: "load-aware-scorer: q=0 -> 0.5, else 0.5(1 - min(q,T)/T) on scraped waiting",
    },
    ParamDoc {
        name: "active_request_weight",
        default: "0",
        doc: "active-request-scorer: (max_c - c)/max_c on this gateway's in-flight; 0 -> 1",
    },
    ParamDoc {
        name: "running_requests_weight",
        default: "0",
        doc: "running-requests-size-scorer: min-max normalised scraped running count",
    },
    ParamDoc {
        name: "picker",
        default: "max_score",
        doc: "max_score (uniform among ties) or weighted_random (A-Res on the scores)",
    },
    ParamDoc {
        name: "max_prefix_blocks_to_match",
        default: "256",
        doc: "prompt blocks considered by the prefix scorer (>= 1)",
    },
    ParamDoc {
        name: "load_aware_threshold",
        default: "128",
        doc: "T of the load-aware scorer (>= 1)",
    },
];

/// Registry entry.
pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "weighted_scorers",
    summary: "llm-d EPP: weighted queue/KV/approximate-prefix scorers, max-score picker",
    params: &[
        ParamDoc {
            name: "queue_weight",
            default: "2",
            doc: "queue-scorer: (max_q - q)/(max_q - min_q) on scraped waiting; all equal -> 1",
        },
        ParamDoc {
            name: "kv_cache_utilization_weight",
            default: "2",
            doc: "kv-cache-utilization-scorer: 1 - scraped KV use",
        },
        ParamDoc {
            name: "prefix_cache_weight",
            default: "3",
            doc: "prefix-cache-scorer: blocks in the routing-history index / hashed prompt blocks",
        },
        COMMON_DOCS[0],
        COMMON_DOCS[1],
        COMMON_DOCS[2],
        COMMON_DOCS[3],
        COMMON_DOCS[4],
        COMMON_DOCS[5],
        ParamDoc {
            name: "lru_capacity_per_server",
            default: "31250",
            doc: "hashes remembered per replica by the approximate index (LRU, >= 1)",
        },
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::*;

    fn route(r: &mut dyn Router, f: &Fixture, hashes: &[u64]) -> u32 {
        let req = RequestView { hashes, ..Default::default() };
        r.route(&req, &f.view())
    }

    fn build_err(params: &str) -> String {
        let f = Fixture::new(&[1, 1]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(params).expect("yaml");
        let ctx = BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
        match (ENTRY.build)(&v, &ctx) {
            Ok(_) => panic!("{params} should be rejected"),
            Err(e) => e,
        }
    }

    #[test]
    fn queue_scorer_is_min_max_normalised_and_all_equal_scores_one() {
        assert_eq!(min_max_score(2, 2, 10), 1.0);
        assert_eq!(min_max_score(10, 2, 10), 0.0);
        assert_eq!(min_max_score(6, 2, 10), 0.5);
        assert_eq!(min_max_score(7, 7, 7), 1.0);
        // Through the router: the queue scorer alone picks the shortest scraped queue.
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        f.queued = vec![5, 9, 2, 7];
        let p = "{kv_cache_utilization_weight: 0, prefix_cache_weight: 0, queue_weight: 1}";
        let mut r = f.build("weighted_scorers", p);
        for _ in 0..20 {
            assert_eq!(route(r.as_mut(), &f, &[]), 2);
        }
    }

    #[test]
    fn kv_scorer_prefers_the_emptiest_cache() {
        assert!((kv_score(0.25) - 0.75).abs() < 1e-12);
        let mut f = Fixture::new(&[1, 1, 1]);
        f.kv_util = vec![0.9, 0.3, 0.6];
        let p = "{queue_weight: 0, prefix_cache_weight: 0}";
        let mut r = f.build("weighted_scorers", p);
        for _ in 0..20 {
            assert_eq!(route(r.as_mut(), &f, &[]), 1);
        }
    }

    #[test]
    fn load_aware_and_active_request_scorers() {
        assert_eq!(load_aware_score(0, 128), 0.5);
        assert_eq!(load_aware_score(64, 128), 0.25);
        assert_eq!(load_aware_score(500, 128), 0.0);
        assert_eq!(active_request_score(0, 0), 1.0);
        assert_eq!(active_request_score(0, 4), 1.0);
        assert_eq!(active_request_score(1, 4), 0.75);
        assert_eq!(active_request_score(4, 4), 0.0);
        let mut f = Fixture::new(&[1, 1, 1]);
        f.in_flight = vec![3, 1, 2];
        f.in_service = vec![0, 5, 5];
        let only = |k: &str| {
            format!(
                "{{queue_weight: 0, kv_cache_utilization_weight: 0, \
                 prefix_cache_weight: 0, {k}: 1}}"
            )
        };
        let mut r = f.build("weighted_scorers", &only("active_request_weight"));
        assert_eq!(route(r.as_mut(), &f, &[]), 1);
        let mut r = f.build("weighted_scorers", &only("running_requests_weight"));
        assert_eq!(route(r.as_mut(), &f, &[]), 0);
    }

    #[test]
    fn prefix_match_counts_holders_within_the_global_run() {
        let mut ix = ApproxPrefixIndex::new(100, 3);
        // Replica 0 holds blocks 0..3; replica 1 holds only block 1 (not block 0); replica 2
        // holds block 4, which lies beyond the global run (nobody holds block 3).
        ix.add(&[10, 11, 12], 0);
        ix.add(&[11], 1);
        ix.add(&[14], 2);
        ix.match_prefix(&[10, 11, 12, 13, 14]);
        assert_eq!((ix.matched(0), ix.matched(1), ix.matched(2)), (3, 1, 0));
        // Nobody holds block 0: the run is empty even though replica 0 holds the rest.
        ix.match_prefix(&[9, 11, 12]);
        assert_eq!((ix.matched(0), ix.matched(1)), (0, 0));
    }

    #[test]
    fn lru_evicts_the_least_recent_hash_at_capacity() {
        let mut ix = ApproxPrefixIndex::new(2, 2);
        ix.add(&[1, 2], 0);
        ix.add(&[3], 0);
        assert!(!ix.holds(0, 1) && ix.holds(0, 2) && ix.holds(0, 3));
        assert_eq!(ix.len_of(0), 2);
        // Re-adding touches: 2 becomes most recent, so 3 goes next.
        ix.add(&[2], 0);
        ix.add(&[4], 0);
        assert!(ix.holds(0, 2) && !ix.holds(0, 3) && ix.holds(0, 4));
        // An eviction on one replica leaves the hash on another; the last holder removes it.
        ix.add(&[2], 1);
        ix.add(&[5, 6], 0);
        assert!(!ix.holds(0, 2) && ix.holds(1, 2));
        ix.match_prefix(&[2]);
        assert_eq!((ix.matched(0), ix.matched(1)), (0, 1));
        ix.add(&[7, 8], 1);
        ix.match_prefix(&[2]);
        assert_eq!(ix.matched(1), 0);
        assert_eq!(ix.slots.len(), 4, "hashes 5, 6, 7, 8 remain");
        assert_eq!(ix.nodes.len(), 4, "at most capacity × replicas entries: freed ones reused");
    }

    #[test]
    fn index_agrees_with_a_naive_lru_model() {
        // Model: per replica a Vec of hashes, most recent last.
        let (cap, n) = (5usize, 3usize);
        let mut ix = ApproxPrefixIndex::new(cap as u32, n);
        let mut model: Vec<Vec<u64>> = vec![Vec::new(); n];
        let mut rng = Stream::from_seed(7);
        let mut keys = Vec::new();
        for _ in 0..5000 {
            keys.clear();
            let len = 1 + rng.index_mod(6);
            keys.extend((0..len).map(|_| rng.index_mod(12) as u64));
            ix.match_prefix(&keys);
            let mut want = vec![0u32; n];
            for k in &keys {
                let holders: Vec<usize> = (0..n).filter(|&r| model[r].contains(k)).collect();
                if holders.is_empty() {
                    break;
                }
                for r in holders {
                    want[r] += 1;
                }
            }
            for (r, &w) in want.iter().enumerate() {
                assert_eq!(ix.matched(r as u32), w);
            }
            let r = rng.index_mod(n);
            ix.add(&keys, r as u32);
            for &k in &keys {
                model[r].retain(|&x| x != k);
                model[r].push(k);
                if model[r].len() > cap {
                    model[r].remove(0);
                }
            }
            for (r, m) in model.iter().enumerate() {
                assert_eq!(ix.len_of(r as u32) as usize, m.len());
                assert!(m.iter().all(|&k| ix.holds(r as u32, k)));
            }
        }
        assert!(ix.nodes.len() <= cap * n);
    }

    #[test]
    fn prefix_affinity_follows_routing_history() {
        let f = Fixture::new(&[1, 1, 1, 1]);
        let mut r = f.build("weighted_scorers", "");
        let a = [101, 102, 103, 104];
        let first = route(r.as_mut(), &f, &a);
        for _ in 0..20 {
            assert_eq!(route(r.as_mut(), &f, &a), first);
        }
        // A prompt sharing only the first two blocks still goes there (score 3·2/4 > 0).
        assert_eq!(route(r.as_mut(), &f, &[101, 102, 900, 901]), first);
    }

    #[test]
    fn max_score_is_uniform_among_ties_and_deterministic() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.queued = vec![1, 1, 4];
        let mut r = f.build("weighted_scorers", "");
        let picks: Vec<u32> = (0..4000).map(|_| route(r.as_mut(), &f, &[])).collect();
        let zeros = picks.iter().filter(|&&p| p == 0).count();
        assert!(!picks.contains(&2));
        // Binomial(4000, 1/2): sd = 31.6; 5 sd.
        assert!((zeros as i64 - 2000).abs() < 160, "{zeros}");
        let mut again = f.build("weighted_scorers", "");
        let same: Vec<u32> = (0..4000).map(|_| route(again.as_mut(), &f, &[])).collect();
        assert_eq!(picks, same);
        let mut other = f.build_for_gateway("weighted_scorers", "", 1);
        let diff: Vec<u32> = (0..4000).map(|_| route(other.as_mut(), &f, &[])).collect();
        assert_ne!(picks, diff, "each gateway has its own stream");
    }

    #[test]
    fn default_weights_are_the_llm_d_profile() {
        let p: Params = parse_params(&serde_yaml_ng::Value::Null).expect("defaults");
        let want = Weights {
            queue: 2.0,
            kv_cache_utilization: 2.0,
            prefix_cache: 3.0,
            load_aware: 0.0,
            active_request: 0.0,
            running_requests: 0.0,
        };
        assert_eq!(p.weights(), want);
        assert_eq!(p.picker, Picker::MaxScore);
        assert_eq!((p.max_prefix_blocks_to_match, p.lru_capacity_per_server), (256, 31_250));
        // An empty mapping and a partial one keep the other defaults.
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str("{queue_weight: 1}").expect("yaml");
        let p: Params = parse_params(&v).expect("parses");
        assert_eq!(p.weights(), Weights { queue: 1.0, ..want });
        // Queue 2 + KV 2 outweigh a full prefix hit (3) on a full, busiest replica.
        let mut f = Fixture::new(&[1, 1]);
        let mut r = f.build("weighted_scorers", "");
        let a = [7, 8];
        let first = route(r.as_mut(), &f, &a);
        f.queued[first as usize] = 5;
        f.kv_util[first as usize] = 1.0;
        assert_ne!(route(r.as_mut(), &f, &a), first);
    }

    #[test]
    fn weighted_random_draws_in_proportion_to_positive_scores() {
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        f.kv_util = vec![1.0, 0.5, 1.0, 0.75];
        let p = "{queue_weight: 0, prefix_cache_weight: 0, picker: weighted_random}";
        let mut r = f.build("weighted_scorers", p);
        let mut seen = [0usize; 4];
        for _ in 0..6000 {
            seen[route(r.as_mut(), &f, &[]) as usize] += 1;
        }
        assert_eq!((seen[0], seen[2]), (0, 0), "{seen:?}");
        // Scores 1.0 and 0.5 (weight 2): P(1) = 2/3; sd = 36.5; 5 sd.
        assert!((seen[1] as i64 - 4000).abs() < 183, "{seen:?}");
        // No positive score: uniform.
        f.kv_util = vec![1.0; 4];
        let mut seen = [0usize; 4];
        for _ in 0..4000 {
            seen[route(r.as_mut(), &f, &[]) as usize] += 1;
        }
        assert!(seen.iter().all(|&s| (850..1150).contains(&s)), "{seen:?}");
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(build_err("{queue_weight: -1}").contains("queue_weight"));
        assert!(build_err("{prefix_cache_weight: .nan}").contains("prefix_cache_weight"));
        assert!(build_err("{lru_capacity_per_server: 0}").contains("lru_capacity_per_server"));
        assert!(build_err("{max_prefix_blocks_to_match: 0}").contains("max_prefix"));
        assert!(build_err("{picker: best}").contains("unknown variant"));
        assert!(build_err("{weights: {queue: 1}}").starts_with("unknown field `weights`"));
    }
}
