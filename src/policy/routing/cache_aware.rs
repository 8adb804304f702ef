//! `cache_aware`: the SGLang router's `cache_aware` policy over an approximate radix tree of
//! routed prompts (reference §2.1, `policies/cache_aware.rs` and `policies/tree.rs`).
//!
//! Rule, per request: `load` is this gateway's in-flight count (SGLang `worker.load()`, a
//! router-side counter). Over the candidates, `imbalanced = (max − min > balance_abs_threshold)
//! && (max > min × balance_rel_threshold)`. If imbalanced: the least-loaded candidate (first in
//! replica-id order on ties, Rust `min_by_key`). Otherwise `prefix_match`: walk the tree as deep
//! as the prompt matches *regardless of tenant* and take one tenant (replica) owning the
//! deepest matched node; `rate = matched blocks / ceil(prompt_tokens / block_size)`; if `rate >
//! cache_threshold` that tenant, else the least-loaded candidate (first index on ties; the
//! current SGLang miss rule, not the older "smallest tree"). Either way the prompt is then
//! inserted into the tree for the chosen replica, so the tree records where prompts were
//! *sent*, never what the engines actually keep (engine-side eviction is not observed).
//!
//! The tree: SGLang keys characters of the prompt text; the simulator has no text, so the
//! "characters" are the prompt's blocks. [`RequestView::hashes`] are chained (block *i*'s hash
//! names the whole prefix up to it), so a radix tree over hash sequences is a trie with one
//! node per hash, stored as a map `hash → node {parent, children, tenants}`. Each node keeps,
//! per tenant, its last-access epoch (a counter bumped once per routed request, like newer
//! SGLang's global epoch) and how many children that tenant also owns (0 = the node is a leaf
//! *for that tenant*). Insert adds the tenant along the whole path and stamps every node on it
//! with the current epoch; `prefix_match` re-stamps the path for the tenant it returns. A
//! prompt's unhashed unique tail counts as unmatched (like unmatched characters), and a request
//! without hashes has rate 0. One tree per model, as SGLang keeps one tree per model id.
//!
//! Which tenant of the deepest node: SGLang returns the node's cached "last tenant" if still
//! present, else an arbitrary one. Here: the replica whose insert last touched that node if it
//! owns it and is a candidate, else the candidate tenant with the newest epoch (lowest replica
//! id on ties). Deviation: SGLang may return a tenant that is no longer healthy and then falls
//! back to the first healthy worker; here non-candidate tenants are skipped and, when the
//! deepest node has no candidate tenant, the request is treated as a miss (least loaded).
//! Tenants of replicas that left are not purged (SGLang `remove_tenant` on worker removal);
//! size eviction retires them.
//!
//! Eviction (SGLang `evict_tenant_by_size`), lazily at the first routing decision at or after
//! each multiple of `eviction_interval_secs` of simulated time: a min-heap of (epoch, tenant,
//! node) over every node that is a leaf for a tenant owning more than `max_tree_size_blocks`;
//! pop the oldest; if that tenant still owns too many blocks remove it from the node (freeing
//! the node when no tenant is left), and push the parent once it became a leaf for that
//! tenant. Ties in the heap go to the lower replica id, then the lower node slot. Units:
//! SGLang's `max_tree_size` is characters per tenant; here it is blocks per tenant, and the
//! preset defaults are converted at 4 characters per token: `blocks = chars / (4 ×
//! block_size)` (CLI: 2^26 chars = 1 048 576 blocks of 16 tokens; library: 10 000 chars = 156
//! blocks). Simplification: SGLang's newer code refreshes access epochs on 1 match in 8; here
//! on every match (as the older tree did).
//!
//! Presets: `preset: cli` (default; `sglang-router` / `smg launch` defaults) or `library`
//! (`CacheAwareConfig::default()`); any individual parameter overrides its preset value.
//!
//! Signals: this gateway's in-flight counts (exact, local; blind to other gateways) and the
//! gateway's own routing history (per gateway replica). Per route: O(prompt blocks +
//! candidates); no allocation except for new tree nodes. Stream: none (deterministic).

use super::RouterEntry;
use super::{parse_params, BuildCtx, ParamDoc, RequestView, RouteView, Router};
use crate::cluster::hash_index::HashIndex;
use crate::time::{SimDuration, SimTime};
use serde::Deserialize;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Characters per token used to convert SGLang's character budgets into blocks.
const CHARS_PER_TOKEN: u64 = 4;

/// "No node": the parent of a top-level node (children of SGLang's root).
const NIL: u32 = u32::MAX;

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Preset {
    /// `sglang-router` / `smg launch` CLI defaults.
    #[default]
    Cli,
    /// `CacheAwareConfig::default()` in the router library.
    Library,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Params {
    preset: Preset,
    cache_threshold: Option<f64>,
    balance_abs_threshold: Option<u64>,
    balance_rel_threshold: Option<f64>,
    eviction_interval_secs: Option<f64>,
    max_tree_size_blocks: Option<u64>,
}

/// Resolved configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Config {
    cache_threshold: f64,
    balance_abs_threshold: u64,
    balance_rel_threshold: f64,
    eviction_interval: SimDuration,
    /// SGLang's per-tenant budget in characters (used when no block budget is given).
    max_tree_size_chars: u64,
    /// Explicit per-tenant budget in blocks.
    max_tree_size_blocks: Option<u64>,
}

impl Config {
    fn preset(p: Preset) -> Config {
        let (t, abs, rel, secs, chars) = match p {
            Preset::Cli => (0.3, 64, 1.5, 120, 1 << 26),
            Preset::Library => (0.5, 32, 1.1, 30, 10_000),
        };
        Config {
            cache_threshold: t,
            balance_abs_threshold: abs,
            balance_rel_threshold: rel,
            eviction_interval: SimDuration::from_secs(secs),
            max_tree_size_chars: chars,
            max_tree_size_blocks: None,
        }
    }

    fn from_params(p: &Params) -> Result<Config, String> {
        let mut c = Config::preset(p.preset);
        if let Some(t) = p.cache_threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(format!("cache_threshold = {t}: must be in [0, 1]"));
            }
            c.cache_threshold = t;
        }
        if let Some(a) = p.balance_abs_threshold {
            c.balance_abs_threshold = a;
        }
        if let Some(r) = p.balance_rel_threshold {
            if !r.is_finite() || r < 0.0 {
                return Err(format!("balance_rel_threshold = {r}: must be a finite number >= 0"));
            }
            c.balance_rel_threshold = r;
        }
        if let Some(s) = p.eviction_interval_secs {
            if !s.is_finite() || s <= 0.0 || s > 1e9 {
                return Err(format!("eviction_interval_secs = {s}: must be in (0, 1e9]"));
            }
            c.eviction_interval = SimDuration::from_secs_f64(s).max(SimDuration(1));
        }
        if p.max_tree_size_blocks.is_some() {
            c.max_tree_size_blocks = p.max_tree_size_blocks;
        }
        Ok(c)
    }

    /// Per-tenant budget in blocks of `block_size` tokens.
    fn max_blocks(&self, block_size: u32) -> u64 {
        self.max_tree_size_blocks.unwrap_or_else(|| {
            self.max_tree_size_chars / (CHARS_PER_TOKEN * u64::from(block_size.max(1)))
        })
    }
}

/// One tenant's share of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tenant {
    replica: u32,
    /// Children of the node this tenant also owns (0: the node is a leaf for the tenant).
    child_refs: u32,
    /// Last access (insert or match) by this tenant.
    epoch: u64,
}

/// One block of some routed prompt. Free slots have no tenants.
#[derive(Debug, Clone)]
struct Node {
    hash: u64,
    parent: u32,
    children: u32,
    /// The tenant whose insert last went through this node (SGLang's cached last tenant).
    last: u32,
    /// Sorted by replica id.
    tenants: Vec<Tenant>,
}

impl Node {
    fn tenant(&self, replica: u32) -> Result<usize, usize> {
        self.tenants.binary_search_by_key(&replica, |t| t.replica)
    }
}

/// The multi-tenant tree of one model. Invariant: a tenant owning a node owns its parent, so
/// every tenant of the deepest matched node holds the whole matched prefix.
#[derive(Debug, Clone, Default)]
struct Tree {
    index: HashIndex,
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// Blocks (nodes) owned per tenant, indexed by replica id.
    blocks: Vec<u64>,
}

impl Tree {
    /// Nodes in use.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }

    /// Blocks `replica` owns.
    #[cfg(test)]
    fn blocks_of(&self, replica: u32) -> u64 {
        self.blocks.get(replica as usize).copied().unwrap_or(0)
    }

    /// The node of `hash` if it continues the chain from `parent`.
    #[inline]
    fn child(&self, parent: u32, hash: u64) -> Option<u32> {
        let i = self.index.get(hash)?;
        // A node reached through another parent would be a hash collision: stop there.
        (self.nodes[i as usize].parent == parent).then_some(i)
    }

    /// How many leading hashes are in the tree, and the deepest matched node (`NIL` if none).
    fn prefix_match(&self, hashes: &[u64]) -> (usize, u32) {
        let mut node = NIL;
        let mut depth = 0;
        for &h in hashes {
            match self.child(node, h) {
                Some(i) => {
                    node = i;
                    depth += 1;
                }
                None => break,
            }
        }
        (depth, node)
    }

    /// The tenant of `node` to route to: its last inserter if still an owner and a candidate,
    /// else the candidate owner with the newest epoch (lowest replica id on ties).
    fn pick_tenant(&self, node: u32, candidates: &[u32]) -> Option<u32> {
        let n = &self.nodes[node as usize];
        let is_candidate = |r: u32| candidates.binary_search(&r).is_ok();
        if n.tenant(n.last).is_ok() && is_candidate(n.last) {
            return Some(n.last);
        }
        let mut best: Option<Tenant> = None;
        for t in n.tenants.iter().filter(|t| is_candidate(t.replica)) {
            if best.is_none_or(|b| t.epoch > b.epoch) {
                best = Some(*t);
            }
        }
        best.map(|t| t.replica)
    }

    /// Stamps `replica`'s access epoch on `node` and its ancestors.
    fn touch(&mut self, mut node: u32, replica: u32, epoch: u64) {
        while node != NIL {
            let n = &mut self.nodes[node as usize];
            let Ok(k) = n.tenant(replica) else { return };
            n.tenants[k].epoch = epoch;
            node = n.parent;
        }
    }

    fn alloc(&mut self, hash: u64, parent: u32) -> u32 {
        let node = Node { hash, parent, children: 0, last: NIL, tenants: Vec::new() };
        let i = match self.free.pop() {
            Some(i) => {
                let slot = &mut self.nodes[i as usize];
                let tenants = std::mem::take(&mut slot.tenants);
                *slot = Node { tenants, ..node };
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.index.insert_if_absent(hash, i);
        if parent != NIL {
            self.nodes[parent as usize].children += 1;
        }
        i
    }

    /// Adds `delta` to the child count of `replica` at `node` (which it owns); returns the
    /// new count.
    fn add_child_ref(&mut self, node: u32, replica: u32, delta: i32) -> u32 {
        let n = &mut self.nodes[node as usize];
        match n.tenant(replica) {
            Ok(k) => {
                let t = &mut n.tenants[k];
                t.child_refs = t.child_refs.saturating_add_signed(delta);
                t.child_refs
            }
            Err(_) => u32::MAX,
        }
    }

    /// SGLang `insert`: the prompt's blocks become owned by `replica`, stamped with `epoch`.
    fn insert(&mut self, hashes: &[u64], replica: u32, epoch: u64) {
        if self.blocks.len() <= replica as usize {
            self.blocks.resize(replica as usize + 1, 0);
        }
        let mut parent = NIL;
        for &h in hashes {
            let i = match self.child(parent, h) {
                Some(i) => i,
                None if self.index.contains_key(h) => return,
                None => self.alloc(h, parent),
            };
            let n = &mut self.nodes[i as usize];
            n.last = replica;
            match n.tenant(replica) {
                Ok(k) => n.tenants[k].epoch = epoch,
                Err(k) => {
                    n.tenants.insert(k, Tenant { replica, child_refs: 0, epoch });
                    self.blocks[replica as usize] += 1;
                    if parent != NIL {
                        self.add_child_ref(parent, replica, 1);
                    }
                }
            }
            parent = i;
        }
    }

    /// SGLang `evict_tenant_by_size`: removes least-recently-accessed leaves of every tenant
    /// owning more than `max` blocks until it owns `max`. `heap` is scratch.
    fn evict(&mut self, max: u64, heap: &mut BinaryHeap<Reverse<(u64, u32, u32)>>) {
        if self.blocks.iter().all(|&b| b <= max) {
            return;
        }
        heap.clear();
        for (i, n) in self.nodes.iter().enumerate() {
            for t in &n.tenants {
                if t.child_refs == 0 && self.blocks[t.replica as usize] > max {
                    heap.push(Reverse((t.epoch, t.replica, i as u32)));
                }
            }
        }
        while let Some(Reverse((_, replica, i))) = heap.pop() {
            if self.blocks[replica as usize] <= max {
                continue;
            }
            let n = &mut self.nodes[i as usize];
            let Ok(k) = n.tenant(replica) else { continue };
            n.tenants.remove(k);
            let parent = n.parent;
            self.blocks[replica as usize] -= 1;
            if n.tenants.is_empty() && n.children == 0 {
                let hash = n.hash;
                self.index.remove(hash);
                self.free.push(i);
                if parent != NIL {
                    self.nodes[parent as usize].children -= 1;
                }
            }
            if parent != NIL && self.add_child_ref(parent, replica, -1) == 0 {
                let p = &self.nodes[parent as usize];
                if let Ok(k) = p.tenant(replica) {
                    heap.push(Reverse((p.tenants[k].epoch, replica, parent)));
                }
            }
        }
    }
}

struct CacheAware {
    cfg: Config,
    /// One tree per model index.
    trees: Vec<Tree>,
    /// Routing decisions so far: the access epoch.
    epoch: u64,
    next_eviction: SimTime,
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
}

impl CacheAware {
    fn new(cfg: Config) -> CacheAware {
        CacheAware {
            cfg,
            trees: Vec::new(),
            epoch: 0,
            next_eviction: SimTime::ZERO + cfg.eviction_interval,
            heap: BinaryHeap::new(),
        }
    }

    /// Runs the eviction ticks due by `now` (one pass covers any missed ticks).
    fn maybe_evict(&mut self, now: SimTime, block_size: u32) {
        if now < self.next_eviction {
            return;
        }
        let max = self.cfg.max_blocks(block_size);
        for t in &mut self.trees {
            t.evict(max, &mut self.heap);
        }
        let step = self.cfg.eviction_interval.as_nanos();
        let missed = (now.as_nanos() - self.next_eviction.as_nanos()) / step;
        self.next_eviction = self.next_eviction.saturating_add(SimDuration(step * (missed + 1)));
    }

    fn tree(&mut self, model: u16) -> &mut Tree {
        let m = model as usize;
        if self.trees.len() <= m {
            self.trees.resize_with(m + 1, Tree::default);
        }
        &mut self.trees[m]
    }

    fn imbalanced(&self, view: &RouteView<'_>) -> bool {
        let (mut min, mut max) = (u64::MAX, 0u64);
        for &r in view.candidates {
            let l = u64::from(view.in_flight[r as usize]);
            min = min.min(l);
            max = max.max(l);
        }
        max - min > self.cfg.balance_abs_threshold
            && max as f64 > min as f64 * self.cfg.balance_rel_threshold
    }

    /// The cache-affine choice when balanced: the matched tenant on a hit, else `None`.
    fn cache_hit(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> Option<u32> {
        let epoch = self.epoch;
        let threshold = self.cfg.cache_threshold;
        let tree = self.tree(req.model);
        let (matched, node) = tree.prefix_match(req.hashes);
        if node == NIL {
            return None;
        }
        let tenant = tree.pick_tenant(node, view.candidates)?;
        tree.touch(node, tenant, epoch);
        let total = u64::from(req.prompt_tokens).div_ceil(u64::from(view.block_size.max(1)));
        let rate = if total == 0 { 0.0 } else { (matched as f64 / total as f64).min(1.0) };
        (rate > threshold).then_some(tenant)
    }
}

/// The candidate with the fewest in-flight requests, first in replica-id order on ties.
fn least_loaded(view: &RouteView<'_>) -> u32 {
    let c = view.candidates;
    let mut best = c[0];
    for &r in &c[1..] {
        if view.in_flight[r as usize] < view.in_flight[best as usize] {
            best = r;
        }
    }
    best
}

impl Router for CacheAware {
    fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        self.maybe_evict(view.now, view.block_size);
        self.epoch += 1;
        let pick = if self.imbalanced(view) {
            least_loaded(view)
        } else {
            self.cache_hit(req, view).unwrap_or_else(|| least_loaded(view))
        };
        let epoch = self.epoch;
        self.tree(req.model).insert(req.hashes, pick, epoch);
        pick
    }

    fn uses_prefix_hashes(&self) -> bool {
        true
    }
}

fn build(v: &serde_yaml_ng::Value, _ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    Ok(Box::new(CacheAware::new(Config::from_params(&p)?)))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "cache_aware",
    summary: "SGLang cache_aware: approximate prefix tree of routed prompts, least in-flight \
              on imbalance or miss",
    params: &[
        ParamDoc {
            name: "preset",
            default: "cli",
            doc: "cli (sglang-router launch defaults) or library (CacheAwareConfig::default()); \
                  the parameters below override it",
        },
        ParamDoc {
            name: "cache_threshold",
            default: "0.3 (library 0.5)",
            doc: "route to the matched tenant when matched / prompt blocks > this, in [0, 1]",
        },
        ParamDoc {
            name: "balance_abs_threshold",
            default: "64 (library 32)",
            doc: "imbalanced when max - min in-flight > this ...",
        },
        ParamDoc {
            name: "balance_rel_threshold",
            default: "1.5 (library 1.1)",
            doc: "... and max > min x this; then least in-flight wins",
        },
        ParamDoc {
            name: "eviction_interval_secs",
            default: "120 (library 30)",
            doc: "simulated seconds between size-eviction passes (> 0)",
        },
        ParamDoc {
            name: "max_tree_size_blocks",
            default: "2^26 chars / (4 x block_size) (library 10000 chars / (4 x block_size))",
            doc: "blocks each replica may own in the tree after eviction (SGLang's \
                  max_tree_size in characters, at 4 chars per token)",
        },
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::super::{parse_params, RequestView, Router};
    use super::{CacheAware, Config, Params, Preset, Tree, NIL};
    use crate::time::{SimDuration, SimTime};

    fn config(yaml: &str) -> Result<Config, String> {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
        let p: Params = parse_params(&v)?;
        Config::from_params(&p)
    }

    fn router(yaml: &str) -> CacheAware {
        CacheAware::new(config(yaml).expect("valid"))
    }

    /// A request of `blocks` full blocks of 16 tokens whose first hashes are `hashes`.
    fn req(hashes: &[u64], blocks: u32) -> RequestView<'_> {
        RequestView { prompt_tokens: 16 * blocks, hashes, ..Default::default() }
    }

    const A: [u64; 4] = [11, 12, 13, 14];
    const B: [u64; 4] = [21, 22, 23, 24];

    #[test]
    fn imbalance_switches_to_least_loaded_even_when_cached_elsewhere() {
        let mut f = Fixture::new(&[1, 1]);
        let mut r = router("");
        f.in_flight = vec![0, 5];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 0, "miss: least loaded");
        f.in_flight = vec![60, 0];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 0, "balanced (60 <= 64): cache wins");
        f.in_flight = vec![65, 0];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 1, "65 > 64 and 65 > 0 x 1.5");
        // The imbalanced pick was inserted too: replica 1 now owns A and was last to insert.
        f.in_flight = vec![3, 4];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 1);
        // Both thresholds must be exceeded.
        let mut r = router("{ balance_abs_threshold: 10, balance_rel_threshold: 2.0 }");
        f.in_flight = vec![0, 0];
        r.route(&req(&A, 4), &f.view());
        f.in_flight = vec![30, 20];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 0, "30 - 20 = 10: balanced, cache wins");
        f.in_flight = vec![11, 0];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 1, "11 > 10 and 11 > 0 x 2: imbalanced");
        f.in_flight = vec![0, 0];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 1, "1 inserted last");
        f.in_flight = vec![20, 35];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 1, "15 > 10 but 35 <= 20 x 2: balanced");
        f.in_flight = vec![20, 41];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 0, "21 > 10 and 41 > 20 x 2: imbalanced");
    }

    #[test]
    fn a_hit_above_the_threshold_sticks_to_the_tenant() {
        let mut f = Fixture::new(&[1, 1, 1]);
        let mut r = router("");
        f.in_flight = vec![2, 0, 1];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 1);
        f.in_flight = vec![0, 9, 0];
        for _ in 0..5 {
            assert_eq!(r.route(&req(&A, 4), &f.view()), 1);
        }
        // A longer prompt sharing A's 4 blocks (of 10: rate 0.4 > 0.3) still sticks.
        assert_eq!(r.route(&req(&A, 10), &f.view()), 1);
    }

    #[test]
    fn a_match_at_or_below_the_threshold_goes_to_the_least_loaded() {
        let mut f = Fixture::new(&[1, 1]);
        let mut r = router("");
        f.in_flight = vec![0, 1];
        assert_eq!(r.route(&req(&A[..3], 3), &f.view()), 0);
        f.in_flight = vec![3, 0];
        // 3 matched of 10 blocks: 0.3 is not > 0.3.
        assert_eq!(r.route(&req(&A[..3], 10), &f.view()), 1);
        // The unhashed unique tail counts: 3 of 9 blocks (0.33) is a hit on the last tenant.
        assert_eq!(r.route(&req(&A[..3], 9), &f.view()), 1);
        f.in_flight = vec![0, 3];
        assert_eq!(r.route(&req(&A[..3], 9), &f.view()), 1, "replica 1 inserted last");
        // No hashes: rate 0, least loaded.
        assert_eq!(r.route(&req(&[], 9), &f.view()), 0);
    }

    #[test]
    fn non_candidate_tenants_are_skipped() {
        let mut f = Fixture::new(&[1, 1, 1]);
        let mut r = router("");
        f.in_flight = vec![1, 0, 1];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 1);
        f.in_flight = vec![0, 1, 1];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 1, "hit");
        f.candidates = vec![0, 2];
        f.in_flight = vec![1, 0, 0];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 2, "owner gone: a miss, least loaded");
        f.candidates = vec![0, 1, 2];
        f.in_flight = vec![0, 0, 0];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 2, "2 inserted last");
        f.candidates = vec![0, 1];
        f.in_flight = vec![0, 3, 0];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 1, "newest candidate owner");
    }

    #[test]
    fn eviction_by_size_removes_the_least_recently_used_blocks() {
        let mut f = Fixture::new(&[1, 1]);
        let mut r = router("{ max_tree_size_blocks: 4, eviction_interval_secs: 1 }");
        f.in_flight = vec![0, 1];
        r.route(&req(&A, 4), &f.view());
        f.now = SimTime(100_000_000);
        r.route(&req(&B, 4), &f.view());
        assert_eq!(r.trees[0].blocks_of(0), 8);
        // Both still hit before the tick.
        f.in_flight = vec![1, 0];
        f.now = SimTime(900_000_000);
        assert_eq!(r.route(&req(&B, 4), &f.view()), 0);
        // At 1.5 s the tick runs first: A (older) goes, B stays.
        f.now = SimTime(1_500_000_000);
        assert_eq!(r.route(&req(&A, 4), &f.view()), 1, "A evicted: miss");
        assert_eq!(r.route(&req(&B, 4), &f.view()), 0, "B kept: hit");
        assert_eq!(r.trees[0].blocks_of(0), 4);
        assert_eq!(r.trees[0].blocks_of(1), 4, "replica 1 within budget: untouched");
        assert_eq!(r.trees[0].len(), 8);
        assert_eq!(r.next_eviction, SimTime(2_000_000_000));
    }

    #[test]
    fn eviction_trims_leaves_first_and_keeps_shared_ancestors() {
        let mut t = Tree::default();
        let mut heap = Default::default();
        // Two prompts sharing the first two blocks: 1,2,3,4 (epoch 1) and 1,2,5,6 (epoch 2).
        t.insert(&[1, 2, 3, 4], 0, 1);
        t.insert(&[1, 2, 5, 6], 0, 2);
        assert_eq!((t.blocks_of(0), t.len()), (6, 6));
        t.evict(3, &mut heap);
        // 4 then 3 (epoch 1 leaves) go; 2 is not a leaf (5 below it), so 6 (epoch 2) goes next.
        assert_eq!(t.prefix_match(&[1, 2, 3, 4]).0, 2);
        assert_eq!(t.prefix_match(&[1, 2, 5, 6]).0, 3);
        assert_eq!((t.blocks_of(0), t.len()), (3, 3));
        // Freed slots are reused.
        t.insert(&[1, 2, 7], 0, 4);
        assert_eq!((t.len(), t.free.len(), t.nodes.len()), (4, 2, 6));
        // A node another tenant still owns stays in the tree; tenants within budget are kept.
        t.insert(&[1, 2, 5], 1, 3);
        t.evict(3, &mut heap);
        assert_eq!((t.blocks_of(0), t.blocks_of(1)), (3, 3));
        assert_eq!(t.prefix_match(&[1, 2, 5, 6]).0, 3);
        assert_eq!(t.pick_tenant(t.prefix_match(&[1, 2, 5]).1, &[0, 1]), Some(1));
        assert_eq!(t.pick_tenant(t.prefix_match(&[1, 2, 7]).1, &[0, 1]), Some(0));
        t.evict(3, &mut heap);
        assert_eq!((t.len(), t.free.len()), (4, 2), "nothing over budget: no-op");
    }

    #[test]
    fn a_colliding_hash_ends_the_walk() {
        let mut t = Tree::default();
        t.insert(&[1, 2, 3], 0, 1);
        // 3 reached from 9 instead of 2: treated as a different prefix, nothing inserted past.
        t.insert(&[9, 3, 4], 1, 2);
        assert_eq!(t.prefix_match(&[9, 3, 4]).0, 1);
        assert_eq!(t.blocks_of(1), 1);
        assert_eq!(t.prefix_match(&[]), (0, NIL));
    }

    #[test]
    fn presets_and_overrides() {
        let cli = config("").expect("valid");
        assert_eq!(cli, config("preset: cli").expect("valid"));
        assert_eq!(cli.cache_threshold, 0.3);
        assert_eq!(cli.balance_abs_threshold, 64);
        assert_eq!(cli.balance_rel_threshold, 1.5);
        assert_eq!(cli.eviction_interval, SimDuration::from_secs(120));
        assert_eq!(cli.max_tree_size_chars, 67_108_864);
        assert_eq!(cli.max_blocks(16), 1_048_576);
        let lib = config("preset: library").expect("valid");
        assert_eq!(lib, Config::preset(Preset::Library));
        assert_eq!(lib.cache_threshold, 0.5);
        assert_eq!(lib.balance_abs_threshold, 32);
        assert_eq!(lib.balance_rel_threshold, 1.1);
        assert_eq!(lib.eviction_interval, SimDuration::from_secs(30));
        assert_eq!(lib.max_blocks(16), 156);
        let o = config("preset: library\ncache_threshold: 0.9\nmax_tree_size_blocks: 7")
            .expect("valid");
        assert_eq!((o.cache_threshold, o.balance_abs_threshold, o.max_blocks(16)), (0.9, 32, 7));
        assert!(config("cache_threshold: 1.5").is_err());
        assert!(config("eviction_interval_secs: 0").is_err());
        assert!(config("balance_rel_threshold: -1").is_err());
        assert!(config("preset: other").is_err());
        assert!(config("max_tree_size: 5").is_err(), "unknown key");
    }

    #[test]
    fn one_tree_per_model() {
        let mut f = Fixture::new(&[1, 1]);
        let mut r = f.build("cache_aware", "");
        assert!(r.uses_prefix_hashes());
        f.in_flight = vec![1, 0];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 1);
        f.in_flight = vec![0, 1];
        assert_eq!(r.route(&req(&A, 4), &f.view()), 1, "hit for model 0");
        let other = RequestView { model: 1, ..req(&A, 4) };
        assert_eq!(r.route(&other, &f.view()), 0, "model 1 has its own tree");
    }
}
