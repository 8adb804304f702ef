//! One `llm` replica: a vLLM-v1-style continuous-batching engine.
//!
//! State: a FCFS waiting queue, a running batch in admission order, a KV block manager with
//! prefix caching ([`KvCache`]) and a latency model. The engine runs one iteration at a time;
//! scheduling iteration `k` (at the end of iteration `k − 1`) follows vLLM v1's scheduler:
//!
//! 1. Running requests first. Every decoding sequence gets one token; it needs a KV slot for
//!    it, and when a block boundary is crossed and no block is available the *most recently
//!    admitted* running request is preempted (recompute: its KV is freed, its progress reset,
//!    and it goes to the front of the waiting queue), repeatedly, until the block is found or
//!    the request preempted itself. Unfinished prefills then continue with a chunk of
//!    `min(remaining, long_prefill_token_threshold (if > 0), token budget)` tokens, preempting
//!    the same way when their blocks are missing.
//! 2. Unless something was preempted in this step, waiting requests are admitted FCFS while
//!    fewer than `max_num_seqs` run and token budget (`max_num_batched_tokens`) is left: the
//!    longest cached prefix is reused (block-granular, and never the whole prompt: the last
//!    token is always computed, as in vLLM), the first chunk's blocks are allocated
//!    check-then-act, and admission stops at the first request whose blocks do not fit.
//!
//! The iteration time comes from the latency model applied to an [`IterationShape`] built from
//! running sums. A prefill that completes in an iteration samples one token at its end (the
//! first token of a fresh request: TTFT); a decode step produces one token per sequence. A
//! request is done when it has `output` tokens; a preempted request recomputes its prompt plus
//! the tokens it had generated and keeps its first-token time.
//!
//! Cost per iteration is O(1) amortised in the batch size: the decode set is kept as running
//! sums (`n_decode`, and `Σ(ctx0 − d0)` from which the context of every decode at iteration
//! `k` follows), completions sit in a heap keyed by the iteration in which they finish, and
//! block-boundary crossings in a heap keyed by the iteration that needs the next block. Only
//! requests that change state (admission, chunk, boundary, finish, preemption) are touched.
//! There is no closed-form fast path: every iteration is an event.
//!
//! Under `scheduling_policy: priority` (vLLM's `--scheduling-policy priority`) the waiting
//! queue is ordered by `(priority, arrival)`, lower first, and the preemption victim is the
//! running request with the largest `(priority, arrival)` instead of the newest.
//!
//! Deviation from vLLM, documented: decodes are scheduled before continuing prefill chunks
//! within the running set (vLLM walks it in admission order; the two differ only when a chunk
//! earlier in the list would exhaust the token budget before a later decode, which cannot
//! happen when `long_prefill_token_threshold` leaves room for `max_num_seqs` decodes).
//!
//! Multi-model replicas hold one model at a time (the pool's memory budget holds one set of
//! weights plus its KV cache). A request for another model is parked; from then on the batch
//! drains (no admissions), and once it is empty the replica evicts the idle model and loads the
//! model of the oldest parked request (a cold start of `init + weights / load bandwidth`; the
//! KV cache restarts empty at the new model's capacity). Requests still waiting for the old
//! model queue up behind the parked ones. Routers that prefer replicas with the model loaded
//! avoid this thrash; round-robin over a multi-model pool shows it.
//!
//! Invariants: KV block conservation (checked by [`LlmReplica::check_kv`]); a replica is idle
//! (no iteration in flight) only when it has no running request and nothing admissible waiting;
//! every request handed in leaves through exactly one [`Effect::Done`], a [`NeverFits`] refusal or
//! an abort by the caller.

use crate::cluster::kv::{KvCache, KvConfig, ReleaseOrder, SeqId};
use crate::cluster::latency::{IterationShape, LatencyModel};
use crate::engine::event::ReqRef;
use crate::spec::llm::{EngineConfig, LlmPool, SchedulingPolicy};
use crate::time::{SimDuration, SimTime};
use crate::workload::PrefixRef;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

const NIL: u32 = u32::MAX;

/// Where a sequence is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Free,
    Waiting,
    Parked,
    Prefill,
    Decode,
}

/// The waiting queue: FCFS (a deque; preempted requests return to its front) or, under vLLM's
/// `priority` scheduling policy, a heap ordered by `(priority, arrival order)` (lower first;
/// preempted requests go back in by their original key).
#[derive(Debug, Clone)]
enum WaitQueue {
    Fcfs(VecDeque<(u32, u32)>),
    Priority(BinaryHeap<Reverse<(i32, u64, u32, u32)>>),
}

impl WaitQueue {
    fn front(&self) -> Option<(u32, u32)> {
        match self {
            WaitQueue::Fcfs(q) => q.front().copied(),
            WaitQueue::Priority(h) => h.peek().map(|Reverse((_, _, s, g))| (*s, *g)),
        }
    }

    fn pop_front(&mut self) -> Option<(u32, u32)> {
        match self {
            WaitQueue::Fcfs(q) => q.pop_front(),
            WaitQueue::Priority(h) => h.pop().map(|Reverse((_, _, s, g))| (s, g)),
        }
    }

    /// Adds a newly waiting request (`front`: a preempted one).
    fn push(&mut self, slot: u32, gen: u32, priority: i32, order: u64, front: bool) {
        match self {
            WaitQueue::Fcfs(q) if front => q.push_front((slot, gen)),
            WaitQueue::Fcfs(q) => q.push_back((slot, gen)),
            WaitQueue::Priority(h) => h.push(Reverse((priority, order, slot, gen))),
        }
    }

    fn len(&self) -> usize {
        match self {
            WaitQueue::Fcfs(q) => q.len(),
            WaitQueue::Priority(h) => h.len(),
        }
    }
}

/// What a request hands to a replica.
#[derive(Debug, Clone, Copy)]
pub struct Incoming {
    /// The request.
    pub req: ReqRef,
    /// Index of the requested model in the pool's `models`.
    pub model: u16,
    /// Prompt tokens.
    pub prompt: u32,
    /// Output tokens to generate (at least 1).
    pub output: u32,
    /// Shared-prefix identity.
    pub prefix: PrefixRef,
    /// Counted in the statistics.
    pub measured: bool,
    /// Scheduling priority under the `priority` policy (lower is served first).
    pub priority: i32,
}

/// Something that happened to a request at the end of an iteration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// It was admitted to the running batch for the first time (start of service).
    Started {
        /// The request.
        req: ReqRef,
    },
    /// Its first output token was produced. `min_prefill` is the time the uncached part of
    /// its prompt would take alone (a lower bound on TTFT).
    FirstToken {
        /// The request.
        req: ReqRef,
        /// Lower bound on its TTFT.
        min_prefill: SimDuration,
    },
    /// It generated its last token.
    Done {
        /// The request.
        req: ReqRef,
        /// Output tokens generated.
        generated: u32,
    },
}

/// Why a replica refused a request outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeverFits {
    /// Prompt plus output exceed the model's context length.
    ContextLength,
    /// Prompt plus output need more KV blocks than the replica has.
    KvCapacity,
}

#[derive(Debug, Clone)]
struct Seq {
    req: ReqRef,
    gen: u32,
    state: State,
    model: u16,
    measured: bool,
    admitted_once: bool,
    prompt: u32,
    output: u32,
    /// Tokens generated (for `Decode`: as of `d0`).
    generated: u32,
    /// Tokens to prefill at this admission (prompt + generated).
    target: u32,
    /// Tokens whose KV is computed (prefill progress).
    computed: u32,
    /// Cached tokens at this admission.
    cached: u32,
    kv: u32,
    d0: u64,
    ctx0: u32,
    prefix: PrefixRef,
    trace_hashes: Vec<u64>,
    hashes: Vec<u64>,
    prev: u32,
    next: u32,
    /// Arrival order at this replica.
    order: u64,
    priority: i32,
}

impl Seq {
    fn empty() -> Seq {
        Seq {
            req: ReqRef { idx: 0, gen: 0 },
            gen: 0,
            state: State::Free,
            model: 0,
            measured: false,
            admitted_once: false,
            prompt: 0,
            output: 0,
            generated: 0,
            target: 0,
            computed: 0,
            cached: 0,
            kv: NIL,
            d0: 0,
            ctx0: 0,
            prefix: PrefixRef::default(),
            trace_hashes: Vec::new(),
            hashes: Vec::new(),
            prev: NIL,
            next: NIL,
            order: 0,
            priority: 0,
        }
    }
}

/// Counters of one replica.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReplicaStats {
    /// Recompute preemptions.
    pub preemptions: u64,
    /// Cold starts (model loads after the first).
    pub cold_starts: u64,
    /// Iterations run.
    pub iterations: u64,
    /// Prompt tokens of measured requests at their first admission.
    pub prompt_tokens: u64,
    /// Of those, served from the prefix cache.
    pub cached_prompt_tokens: u64,
    /// ∫ (allocated blocks / capacity) dt over the measurement window, seconds.
    pub kv_util_integral_s: f64,
}

/// The measurement window as known so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    /// Start (first measured arrival), if reached.
    pub start: Option<SimTime>,
    /// End (arrivals stopped), if reached.
    pub end: Option<SimTime>,
}

/// One `llm` replica.
#[derive(Debug, Clone)]
pub struct LlmReplica {
    cfg: EngineConfig,
    models: Vec<ModelRt>,
    loaded: u16,
    loading: Option<u16>,
    kv: KvCache,
    latency: LatencyModel,
    seqs: Vec<Seq>,
    free_slots: Vec<u32>,
    waiting: WaitQueue,
    /// Running requests by `(priority, order)` (priority policy only: the preemption victim
    /// is the last of them, as in vLLM).
    by_priority: std::collections::BTreeSet<(i32, u64, u32)>,
    waiting_len: u32,
    parked: VecDeque<(u32, u32)>,
    parked_len: u32,
    run_head: u32,
    run_tail: u32,
    n_running: u32,
    n_decode: u32,
    decode_base: i64,
    iter: u64,
    busy: bool,
    finish: BinaryHeap<Reverse<(u64, u32, u32)>>,
    /// Decoding sequences by the residue of the iteration in which they cross a block
    /// boundary: `wheel[j % block_size]` holds those needing a new block at iteration `j`.
    wheel: Vec<Vec<(u32, u32)>>,
    /// Sequences whose first decode (one token into a possibly hashed partial block) is next.
    first_decode: Vec<(u32, u32)>,
    prefilling: Vec<u32>,
    chunks: Vec<(u32, u32, u32)>,
    hash_buf: Vec<u64>,
    kv_last: SimTime,
    enqueued: u64,
    /// Counters.
    pub stats: ReplicaStats,
    min_iteration: SimDuration,
    /// Removal events of a cache dropped by a model swap, not yet drained (`Some` when KV
    /// events are enabled).
    kv_events: Option<Vec<(u64, bool)>>,
    /// Factor on every iteration time (a gray-failure slowdown; 1 normally), set by the
    /// engine before each scheduling step.
    pub time_factor: f64,
}

#[derive(Debug, Clone)]
struct ModelRt {
    latency: LatencyModel,
    capacity_blocks: u32,
    max_model_len: u32,
    cold_start: SimDuration,
}

impl LlmReplica {
    /// A replica of `pool`, with its first model loaded.
    pub fn new(pool: &LlmPool) -> LlmReplica {
        let models: Vec<ModelRt> = pool
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| ModelRt {
                latency: m.latency,
                capacity_blocks: m.kv_capacity_blocks,
                max_model_len: m.max_model_len,
                cold_start: pool.cold_start(i),
            })
            .collect();
        let m0 = &models[0];
        let kv = KvCache::new(kv_config(&pool.engine, m0.capacity_blocks));
        let latency = m0.latency;
        let mut r = LlmReplica {
            cfg: pool.engine,
            loaded: 0,
            loading: None,
            kv,
            latency,
            seqs: Vec::new(),
            free_slots: Vec::new(),
            waiting: match pool.engine.scheduling_policy {
                SchedulingPolicy::Fcfs => WaitQueue::Fcfs(VecDeque::new()),
                SchedulingPolicy::Priority => WaitQueue::Priority(BinaryHeap::new()),
            },
            by_priority: std::collections::BTreeSet::new(),
            waiting_len: 0,
            parked: VecDeque::new(),
            parked_len: 0,
            run_head: NIL,
            run_tail: NIL,
            n_running: 0,
            n_decode: 0,
            decode_base: 0,
            iter: 0,
            busy: false,
            finish: BinaryHeap::new(),
            wheel: (0..pool.engine.block_size).map(|_| Vec::new()).collect(),
            first_decode: Vec::new(),
            prefilling: Vec::new(),
            chunks: Vec::new(),
            hash_buf: Vec::new(),
            kv_last: SimTime::ZERO,
            enqueued: 0,
            stats: ReplicaStats::default(),
            min_iteration: SimDuration::ZERO,
            kv_events: None,
            time_factor: 1.0,
            models,
        };
        r.min_iteration = r.smallest_iteration();
        r
    }

    fn smallest_iteration(&self) -> SimDuration {
        let d = self.latency.iteration_time(&IterationShape::decode(1, 0));
        let p = self.latency.iteration_time(&IterationShape::prefill_chunk(1, 0));
        d.min(p)
    }

    /// Requests waiting (including those parked for another model).
    #[inline]
    pub fn queued(&self) -> u32 {
        self.waiting_len + self.parked_len
    }

    /// Requests in the running batch.
    #[inline]
    pub fn running(&self) -> u32 {
        self.n_running
    }

    /// The model loaded, or being loaded (index into the pool's `models`).
    #[inline]
    pub fn current_model(&self) -> u16 {
        self.loading.unwrap_or(self.loaded)
    }

    /// Hashes of the blocks its prefix cache holds (allocated or cached), in block order.
    pub fn cached_hashes(&self) -> impl Iterator<Item = u64> + '_ {
        self.kv.all_hashes()
    }

    /// Starts publishing KV events (see [`LlmReplica::drain_kv_events`]).
    pub fn enable_kv_events(&mut self) {
        self.kv.enable_events();
        self.kv_events.get_or_insert_with(Vec::new);
    }

    /// Moves the KV events since the last call (`(hash, stored)`, oldest first) into `out`.
    pub fn drain_kv_events(&mut self, out: &mut Vec<(u64, bool)>) {
        if let Some(e) = &mut self.kv_events {
            out.append(e);
        }
        self.kv.drain_events(out);
    }

    /// KV blocks in use by running requests.
    pub fn kv_allocated_blocks(&self) -> u32 {
        self.kv.allocated_blocks()
    }

    /// KV capacity in blocks of the loaded model.
    pub fn kv_capacity_blocks(&self) -> u32 {
        self.kv.config().capacity_blocks
    }

    /// The shortest iteration this replica can run (a lower bound on TPOT).
    pub fn min_iteration(&self) -> SimDuration {
        self.min_iteration
    }

    /// Whether an iteration is in flight.
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// Whether the replica is loading a model.
    pub fn loading(&self) -> bool {
        self.loading.is_some()
    }

    /// Work-conservation check: idle while something admissible waits (or a wanted model is
    /// not being loaded).
    pub fn idle_with_work(&self) -> bool {
        !self.busy
            && self.loading.is_none()
            && (self.waiting_len > 0 || self.n_running > 0 || self.parked_len > 0)
    }

    /// Checks KV block conservation and the replica's own bookkeeping.
    pub fn check_kv(&self) -> Result<(), String> {
        self.kv.check_conservation()?;
        if self.kv.running() != self.n_running as usize {
            return Err(format!(
                "{} KV sequences for {} running requests",
                self.kv.running(),
                self.n_running
            ));
        }
        Ok(())
    }

    /// Takes a request (`trace_hashes`: its trace block hashes, if any). Returns its slot, or
    /// why it can never be served here.
    pub fn enqueue(&mut self, inc: &Incoming, trace_hashes: &[u64]) -> Result<u32, NeverFits> {
        let m = &self.models[inc.model as usize];
        let total = u64::from(inc.prompt) + u64::from(inc.output);
        if total > u64::from(m.max_model_len) {
            return Err(NeverFits::ContextLength);
        }
        let need = (total.saturating_sub(1)).div_ceil(u64::from(self.cfg.block_size));
        if need > u64::from(m.capacity_blocks) {
            return Err(NeverFits::KvCapacity);
        }
        let slot = match self.free_slots.pop() {
            Some(s) => s,
            None => {
                self.seqs.push(Seq::empty());
                (self.seqs.len() - 1) as u32
            }
        };
        let s = &mut self.seqs[slot as usize];
        s.req = inc.req;
        s.model = inc.model;
        s.measured = inc.measured;
        s.admitted_once = false;
        s.prompt = inc.prompt;
        s.output = inc.output.max(1);
        s.generated = 0;
        s.computed = 0;
        s.cached = 0;
        s.kv = NIL;
        s.prefix = inc.prefix;
        s.trace_hashes.clear();
        s.trace_hashes.extend_from_slice(trace_hashes);
        s.hashes.clear();
        s.order = self.enqueued;
        s.priority = inc.priority;
        self.enqueued += 1;
        let (gen, order) = (s.gen, s.order);
        if inc.model == self.loaded && self.loading.is_none() {
            s.state = State::Waiting;
            self.waiting.push(slot, gen, inc.priority, order, false);
            self.waiting_len += 1;
        } else {
            s.state = State::Parked;
            self.parked.push_back((slot, gen));
            self.parked_len += 1;
        }
        Ok(slot)
    }

    /// Starts work if the replica is idle: an iteration (returns its end time) or a model load
    /// ([`Kick::Load`]).
    pub fn kick(&mut self, now: SimTime, w: Window, out: &mut Vec<Effect>) -> Kick {
        if self.busy || self.loading.is_some() {
            return Kick::Nothing;
        }
        if self.swap_due() && self.n_running == 0 {
            // The oldest request wants another model and the batch has drained: requests
            // still waiting for the current model join the parked ones (in arrival order) and
            // the replica swaps.
            let mut moved: Vec<(u32, u32)> = Vec::with_capacity(self.waiting.len());
            while let Some((slot, gen)) = self.waiting.pop_front() {
                let s = &mut self.seqs[slot as usize];
                if s.gen == gen && s.state == State::Waiting {
                    s.state = State::Parked;
                    moved.push((slot, gen));
                }
            }
            self.parked_len += self.waiting_len;
            self.waiting_len = 0;
            let mut all: Vec<(u32, u32)> = self.parked.drain(..).chain(moved).collect();
            let seqs = &self.seqs;
            all.sort_by_key(|&(slot, gen)| {
                let s = &seqs[slot as usize];
                (s.gen != gen || s.state != State::Parked, s.order)
            });
            self.parked = all.into();
            return self.maybe_load(now, w, out);
        }
        if self.waiting_len > 0 || self.n_running > 0 {
            return match self.schedule(now, w, out) {
                Some(t) => Kick::Iteration(t),
                None => Kick::Nothing,
            };
        }
        Kick::Nothing
    }

    /// Arrival order of the oldest live waiting request. Across models the replica is FIFO
    /// (priorities order requests of the loaded model only), so a swap is due when a parked
    /// request is older than every waiting one. O(waiting) under the priority policy, and only
    /// asked while a request is parked.
    fn oldest_waiting_order(&mut self) -> Option<u64> {
        match &self.waiting {
            WaitQueue::Fcfs(_) => {
                self.waiting_front().map(|(slot, _)| self.seqs[slot as usize].order)
            }
            WaitQueue::Priority(h) => h
                .iter()
                .filter(|Reverse((_, _, slot, gen))| {
                    let s = &self.seqs[*slot as usize];
                    s.gen == *gen && s.state == State::Waiting
                })
                .map(|Reverse((_, order, _, _))| *order)
                .min(),
        }
    }

    /// The next live waiting request (dropping stale entries), if any.
    fn waiting_front(&mut self) -> Option<(u32, u32)> {
        while let Some((slot, gen)) = self.waiting.front() {
            let s = &self.seqs[slot as usize];
            if s.gen == gen && s.state == State::Waiting {
                return Some((slot, gen));
            }
            self.waiting.pop_front();
        }
        None
    }

    /// Order of the oldest live entry of `q` (dropping stale fronts), if any.
    fn front_order(seqs: &[Seq], q: &mut VecDeque<(u32, u32)>, state: State) -> Option<u64> {
        while let Some(&(slot, gen)) = q.front() {
            let s = &seqs[slot as usize];
            if s.gen == gen && s.state == state {
                return Some(s.order);
            }
            q.pop_front();
        }
        None
    }

    /// Whether the oldest pending request is parked for another model (so the batch drains
    /// and the replica swaps once it is empty).
    fn swap_due(&mut self) -> bool {
        if self.parked_len == 0 {
            return false;
        }
        let Some(p) = Self::front_order(&self.seqs, &mut self.parked, State::Parked) else {
            return false;
        };
        match self.oldest_waiting_order() {
            Some(wo) => p < wo,
            None => true,
        }
    }

    /// Starts loading the model of the oldest parked request that wants another model (with
    /// the priority policy the merged queue may start with requests for the loaded model; they
    /// stay parked behind the swap). If every parked request wants the loaded model, they go
    /// back to waiting and the replica schedules.
    fn maybe_load(&mut self, now: SimTime, w: Window, out: &mut Vec<Effect>) -> Kick {
        let other = self.parked.iter().find_map(|&(slot, gen)| {
            let s = &self.seqs[slot as usize];
            (s.gen == gen && s.state == State::Parked && s.model != self.loaded).then_some(s.model)
        });
        let Some(m) = other else {
            let loaded = self.loaded;
            self.unpark(loaded);
            return match self.schedule(now, w, out) {
                Some(t) => Kick::Iteration(t),
                None => Kick::Nothing,
            };
        };
        self.account_kv(now, w);
        self.loading = Some(m);
        self.stats.cold_starts += 1;
        Kick::Load(now + self.models[m as usize].cold_start)
    }

    /// Swaps in an empty KV cache of `capacity_blocks`; with KV events on, every block of the
    /// old cache is published as removed.
    fn replace_kv(&mut self, capacity_blocks: u32) {
        let mut kv = KvCache::new(kv_config(&self.cfg, capacity_blocks));
        if self.kv_events.is_some() {
            kv.enable_events();
            let mut gone = Vec::new();
            self.kv.drain_events(&mut gone);
            gone.extend(self.kv.all_hashes().map(|h| (h, false)));
            if let Some(e) = &mut self.kv_events {
                e.append(&mut gone);
            }
        }
        self.kv = kv;
    }

    /// The model load started by [`LlmReplica::kick`] is done.
    pub fn load_done(&mut self, now: SimTime, w: Window, out: &mut Vec<Effect>) -> Kick {
        let Some(m) = self.loading.take() else { return Kick::Nothing };
        self.account_kv(now, w);
        let capacity_blocks = self.models[m as usize].capacity_blocks;
        self.replace_kv(capacity_blocks);
        let mrt = &self.models[m as usize];
        self.latency = mrt.latency;
        self.loaded = m;
        self.min_iteration = self.smallest_iteration();
        self.unpark(m);
        self.kick(now, w, out)
    }

    fn unpark(&mut self, m: u16) {
        let mut keep = VecDeque::with_capacity(self.parked.len());
        while let Some((slot, gen)) = self.parked.pop_front() {
            let s = &mut self.seqs[slot as usize];
            if s.gen != gen || s.state != State::Parked {
                continue;
            }
            if s.model == m {
                s.state = State::Waiting;
                let (p, o) = (s.priority, s.order);
                self.waiting.push(slot, gen, p, o, false);
                self.waiting_len += 1;
                self.parked_len -= 1;
            } else {
                keep.push_back((slot, gen));
            }
        }
        self.parked = keep;
    }

    /// Withdraws the request in `slot` (timeout or drain end), wherever it is.
    pub fn abort(&mut self, slot: u32, now: SimTime, w: Window) {
        let state = self.seqs[slot as usize].state;
        match state {
            State::Free => return,
            State::Waiting => self.waiting_len -= 1,
            State::Parked => self.parked_len -= 1,
            State::Prefill | State::Decode => {
                self.account_kv(now, w);
                self.leave_running(slot);
            }
        }
        self.release_slot(slot);
    }

    /// The replica crashed at `now`: every request it holds is dropped (the caller ends them),
    /// the iteration or model load in flight is void and the KV cache is lost (with KV events
    /// on, every cached block is reported removed). It keeps its loaded model and its
    /// counters; after the restart it starts empty.
    pub fn crash(&mut self, now: SimTime, w: Window) {
        self.account_kv(now, w);
        for slot in 0..self.seqs.len() as u32 {
            match self.seqs[slot as usize].state {
                State::Free => {}
                State::Prefill | State::Decode => {
                    self.leave_running(slot);
                    self.release_slot(slot);
                }
                State::Waiting | State::Parked => self.release_slot(slot),
            }
        }
        self.waiting = match self.waiting {
            WaitQueue::Fcfs(_) => WaitQueue::Fcfs(VecDeque::new()),
            WaitQueue::Priority(_) => WaitQueue::Priority(BinaryHeap::new()),
        };
        self.waiting_len = 0;
        self.parked.clear();
        self.parked_len = 0;
        self.busy = false;
        self.loading = None;
        self.finish.clear();
        for b in &mut self.wheel {
            b.clear();
        }
        self.first_decode.clear();
        self.prefilling.clear();
        self.chunks.clear();
        self.replace_kv(self.models[self.loaded as usize].capacity_blocks);
        debug_assert_eq!(self.n_running, 0);
        debug_assert_eq!(self.n_decode, 0);
    }

    /// The iteration in flight ended at `now`: applies its results to `out` and schedules the
    /// next one (returns its end time) or goes idle / starts a model load.
    pub fn iteration_done(&mut self, now: SimTime, w: Window, out: &mut Vec<Effect>) -> Kick {
        debug_assert!(self.busy);
        self.busy = false;
        self.iter += 1;
        self.stats.iterations += 1;
        let k = self.iter;
        self.account_kv(now, w);
        // Prefill chunks of this iteration.
        let chunks = std::mem::take(&mut self.chunks);
        for &(slot, gen, tokens) in &chunks {
            let s = &mut self.seqs[slot as usize];
            if s.gen != gen || s.state != State::Prefill {
                continue;
            }
            s.computed += tokens;
            if s.computed < s.target {
                continue;
            }
            s.generated += 1;
            if s.generated == 1 {
                let uncached = u64::from(s.target - s.cached);
                let shape = IterationShape::prefill_chunk(uncached, u64::from(s.cached));
                out.push(Effect::FirstToken {
                    req: s.req,
                    min_prefill: self.latency.iteration_time(&shape),
                });
            }
            if s.generated >= s.output {
                out.push(Effect::Done { req: s.req, generated: s.generated });
                self.leave_running(slot);
                self.release_slot(slot);
                continue;
            }
            s.state = State::Decode;
            s.d0 = k + 1;
            s.ctx0 = s.computed;
            let fin = s.d0 + u64::from(s.output - s.generated) - 1;
            let gen = s.gen;
            self.n_decode += 1;
            self.decode_base += i64::from(s.ctx0) - s.d0 as i64;
            self.finish.push(Reverse((fin, slot, gen)));
            self.first_decode.push((slot, gen));
        }
        self.chunks = chunks;
        self.chunks.clear();
        let seqs = &self.seqs;
        self.prefilling.retain(|&slot| seqs[slot as usize].state == State::Prefill);
        // Decodes that generated their last token in this iteration.
        while let Some(&Reverse((fin, slot, gen))) = self.finish.peek() {
            if fin > k {
                break;
            }
            self.finish.pop();
            let s = &self.seqs[slot as usize];
            if s.gen != gen || s.state != State::Decode {
                continue;
            }
            out.push(Effect::Done { req: s.req, generated: s.output });
            self.leave_running(slot);
            self.release_slot(slot);
        }
        self.kick(now, w, out)
    }

    /// Builds iteration `iter + 1` and returns its end time (`None`: nothing to run).
    fn schedule(&mut self, now: SimTime, w: Window, out: &mut Vec<Effect>) -> Option<SimTime> {
        self.account_kv(now, w);
        let k = self.iter + 1;
        let bs = self.cfg.block_size;
        let mut budget = self.cfg.max_num_batched_tokens;
        let mut preempted = false;
        // 1a. Decodes crossing a block boundary need a block; so does every first decode.
        let wi = (k % u64::from(bs)) as usize;
        let mut bucket = std::mem::take(&mut self.wheel[wi]);
        let mut i = 0;
        while i < bucket.len() {
            let (slot, gen) = bucket[i];
            let s = &self.seqs[slot as usize];
            if s.gen != gen || s.state != State::Decode {
                bucket.swap_remove(i);
                continue;
            }
            let pos = s.ctx0 + (k - s.d0) as u32;
            if self.grow_or_preempt(slot, pos + 1, &mut preempted) {
                i += 1;
            } else {
                bucket.swap_remove(i);
            }
        }
        self.wheel[wi] = bucket;
        let first = std::mem::take(&mut self.first_decode);
        for &(slot, gen) in &first {
            let s = &self.seqs[slot as usize];
            if s.gen != gen || s.state != State::Decode {
                continue;
            }
            let pos = s.ctx0 + (k - s.d0) as u32;
            if !self.grow_or_preempt(slot, pos + 1, &mut preempted) {
                continue;
            }
            // Later crossings: iterations j with (ctx0 + j − d0) % bs == 0.
            let s = &self.seqs[slot as usize];
            let b = u64::from(bs);
            let j = (s.d0 % b + b - u64::from(s.ctx0) % b) % b;
            self.wheel[j as usize].push((slot, s.gen));
        }
        self.first_decode = first;
        self.first_decode.clear();
        budget = budget.saturating_sub(self.n_decode);
        // 1b. Unfinished prefills continue, oldest first.
        let list = std::mem::take(&mut self.prefilling);
        for &slot in &list {
            if budget == 0 {
                break;
            }
            let s = &self.seqs[slot as usize];
            if s.state != State::Prefill {
                continue;
            }
            let chunk = self.chunk_len(s.target - s.computed, budget);
            let upto = s.computed + chunk;
            if !self.grow_or_preempt(slot, upto, &mut preempted) {
                continue;
            }
            budget -= chunk;
            let gen = self.seqs[slot as usize].gen;
            self.chunks.push((slot, gen, chunk));
        }
        self.prefilling = list;
        let seqs = &self.seqs;
        self.prefilling.retain(|&slot| seqs[slot as usize].state == State::Prefill);
        // 2. Admissions (none in a step that preempted, unless nothing else would run).
        loop {
            // While an older request waits for another model, the batch drains: no admissions.
            while !preempted
                && !self.swap_due()
                && budget > 0
                && self.n_running < self.cfg.max_num_seqs
            {
                let Some((slot, gen)) = self.waiting.front() else { break };
                let s = &self.seqs[slot as usize];
                if s.gen != gen || s.state != State::Waiting {
                    self.waiting.pop_front();
                    continue;
                }
                if !self.admit(slot, &mut budget, out) {
                    break;
                }
                self.waiting.pop_front();
                self.waiting_len -= 1;
            }
            if preempted && self.n_decode == 0 && self.chunks_live() == 0 {
                preempted = false;
                continue;
            }
            break;
        }
        // Shape of the iteration.
        let mut shape = IterationShape::default();
        for &(slot, gen, tokens) in &self.chunks {
            let s = &self.seqs[slot as usize];
            if s.gen != gen || s.state != State::Prefill {
                continue;
            }
            let c = IterationShape::prefill_chunk(u64::from(tokens), u64::from(s.computed));
            shape.prefill_tokens += c.prefill_tokens;
            shape.prefill_seqs += c.prefill_seqs;
            shape.prefill_attention_pairs += c.prefill_attention_pairs;
            shape.prefill_cached_tokens += c.prefill_cached_tokens;
        }
        shape.decode_tokens = u64::from(self.n_decode);
        shape.decode_context_tokens =
            (self.decode_base + i64::from(self.n_decode) * k as i64) as u64;
        if shape.tokens() == 0 {
            return None;
        }
        self.busy = true;
        let mut t = self.latency.iteration_time(&shape);
        if self.time_factor != 1.0 {
            t = SimDuration::from_secs_f64(t.as_secs_f64() * self.time_factor);
        }
        Some(now + t.max(SimDuration(1)))
    }

    fn chunks_live(&self) -> usize {
        self.chunks
            .iter()
            .filter(|&&(slot, gen, _)| {
                let s = &self.seqs[slot as usize];
                s.gen == gen && s.state == State::Prefill
            })
            .count()
    }

    fn chunk_len(&self, remaining: u32, budget: u32) -> u32 {
        let mut c = remaining.min(budget);
        if self.cfg.long_prefill_token_threshold > 0 {
            c = c.min(self.cfg.long_prefill_token_threshold);
        }
        c
    }

    /// Admits the waiting request in `slot` with its first chunk; false if its blocks do not fit.
    fn admit(&mut self, slot: u32, budget: &mut u32, out: &mut Vec<Effect>) -> bool {
        let bs = self.cfg.block_size;
        let mut hashes = std::mem::take(&mut self.hash_buf);
        {
            let s = &self.seqs[slot as usize];
            if s.hashes.is_empty() {
                prompt_hashes(s, bs, &mut hashes);
            } else {
                hashes.clear();
                hashes.extend_from_slice(&s.hashes);
            }
        }
        let s = &self.seqs[slot as usize];
        let target = s.prompt + s.generated;
        let hit_blocks = self.kv.lookup_prefix(&hashes) as u32;
        let cached = (hit_blocks * bs).min((target - 1) / bs * bs);
        let chunk = self.chunk_len(target - cached, *budget);
        let alloc = match self.kv.allocate(&hashes, cached + chunk) {
            Ok(a) => a,
            Err(_) => {
                self.hash_buf = hashes;
                return false;
            }
        };
        let s = &mut self.seqs[slot as usize];
        if s.hashes.is_empty() {
            s.hashes.extend_from_slice(&hashes);
        }
        self.hash_buf = hashes;
        s.kv = alloc.seq.0;
        s.state = State::Prefill;
        s.target = target;
        s.computed = cached;
        s.cached = cached;
        if !s.admitted_once {
            s.admitted_once = true;
            out.push(Effect::Started { req: s.req });
            if s.measured {
                self.stats.prompt_tokens += u64::from(s.prompt);
                self.stats.cached_prompt_tokens += u64::from(cached.min(s.prompt));
            }
        }
        let gen = s.gen;
        self.push_running(slot);
        self.prefilling.push(slot);
        self.chunks.push((slot, gen, chunk));
        *budget -= chunk;
        true
    }

    /// Grows `slot`'s KV to `tokens`, preempting the most recently admitted running requests
    /// while blocks are missing. False if `slot` itself had to be preempted.
    fn grow_or_preempt(&mut self, slot: u32, tokens: u32, preempted: &mut bool) -> bool {
        loop {
            let s = &self.seqs[slot as usize];
            let seq = SeqId(s.kv);
            let res = if s.state == State::Prefill {
                self.kv.grow_hashed(seq, tokens, &s.hashes)
            } else {
                self.kv.grow(seq, tokens)
            };
            if res.is_ok() {
                return true;
            }
            let victim = match self.by_priority.last() {
                Some(&(_, _, v)) => v,
                None => self.run_tail,
            };
            *preempted = true;
            self.preempt(victim);
            if victim == slot {
                return false;
            }
        }
    }

    fn preempt(&mut self, slot: u32) {
        self.stats.preemptions += 1;
        let k = self.iter + 1;
        {
            let s = &mut self.seqs[slot as usize];
            if s.state == State::Decode {
                // Tokens generated by iterations d0 .. k-1.
                s.generated += (k - s.d0) as u32;
            }
        }
        self.leave_running(slot);
        let s = &mut self.seqs[slot as usize];
        s.state = State::Waiting;
        s.computed = 0;
        s.gen = s.gen.wrapping_add(1);
        let (gen, p, o) = (s.gen, s.priority, s.order);
        self.waiting.push(slot, gen, p, o, true);
        self.waiting_len += 1;
    }

    fn push_running(&mut self, slot: u32) {
        let tail = self.run_tail;
        {
            let s = &mut self.seqs[slot as usize];
            s.prev = tail;
            s.next = NIL;
        }
        if tail == NIL {
            self.run_head = slot;
        } else {
            self.seqs[tail as usize].next = slot;
        }
        self.run_tail = slot;
        self.n_running += 1;
        if matches!(self.waiting, WaitQueue::Priority(_)) {
            let s = &self.seqs[slot as usize];
            self.by_priority.insert((s.priority, s.order, slot));
        }
    }

    /// Removes a running sequence from the batch: list, decode sums, KV.
    fn leave_running(&mut self, slot: u32) {
        let (prev, next, state, kv, ctx0, d0) = {
            let s = &self.seqs[slot as usize];
            (s.prev, s.next, s.state, s.kv, s.ctx0, s.d0)
        };
        if prev == NIL {
            self.run_head = next;
        } else {
            self.seqs[prev as usize].next = next;
        }
        if next == NIL {
            self.run_tail = prev;
        } else {
            self.seqs[next as usize].prev = prev;
        }
        self.n_running -= 1;
        if !self.by_priority.is_empty() {
            let s = &self.seqs[slot as usize];
            self.by_priority.remove(&(s.priority, s.order, slot));
        }
        if state == State::Prefill {
            self.prefilling.retain(|&x| x != slot);
        }
        if state == State::Decode {
            self.n_decode -= 1;
            self.decode_base -= i64::from(ctx0) - d0 as i64;
        }
        if kv != NIL {
            self.kv.free(SeqId(kv));
        }
        let s = &mut self.seqs[slot as usize];
        s.kv = NIL;
        s.prev = NIL;
        s.next = NIL;
    }

    fn release_slot(&mut self, slot: u32) {
        let s = &mut self.seqs[slot as usize];
        s.state = State::Free;
        s.gen = s.gen.wrapping_add(1);
        s.hashes.clear();
        s.trace_hashes.clear();
        self.free_slots.push(slot);
    }

    /// Adds the KV utilisation since the last change, clipped to the measurement window.
    fn account_kv(&mut self, now: SimTime, w: Window) {
        let from = self.kv_last;
        self.kv_last = now;
        let Some(start) = w.start else { return };
        let a = from.max(start);
        let b = match w.end {
            Some(e) => now.min(e),
            None => now,
        };
        if b > a {
            let cap = f64::from(self.kv.config().capacity_blocks.max(1));
            let util = f64::from(self.kv.allocated_blocks()) / cap;
            self.stats.kv_util_integral_s += util * (b - a).as_secs_f64();
        }
    }

    /// Closes the KV-utilisation integral at the end of the run.
    pub fn finish(&mut self, now: SimTime, w: Window) {
        self.account_kv(now, w);
    }
}

/// What a replica asks the engine to schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Nothing (busy, loading, or idle with no work).
    Nothing,
    /// An iteration ending at this time.
    Iteration(SimTime),
    /// A model load ending at this time.
    Load(SimTime),
}

fn kv_config(cfg: &EngineConfig, capacity_blocks: u32) -> KvConfig {
    KvConfig {
        capacity_blocks,
        block_size: cfg.block_size,
        enable_prefix_caching: cfg.enable_prefix_caching,
        release_order: ReleaseOrder::TailFirst,
    }
}

/// The block hashes of `s`'s prompt for blocks of `block_size` tokens.
fn prompt_hashes(s: &Seq, block_size: u32, out: &mut Vec<u64>) {
    if !s.trace_hashes.is_empty() {
        out.clear();
        out.extend(crate::workload::trace::expand_block_hashes(
            &s.trace_hashes,
            block_size,
            s.prompt,
        ));
        return;
    }
    crate::workload::prefix::block_hashes(&s.prefix, s.prompt, block_size, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::catalog::{Catalog, Dtype};
    use crate::cluster::latency::{Roofline, RooflineParams};
    use crate::spec::llm::ServedModel;

    fn replica(policy: SchedulingPolicy, max_num_seqs: u32, blocks: u32) -> LlmReplica {
        let cat = Catalog::builtin();
        let gpu = cat.gpu("h100-sxm").expect("gpu");
        let model = cat.model("llama-3-8b").expect("model");
        let lat =
            Roofline::new(gpu, model, 1, Dtype::Bf16, Dtype::Bf16, &RooflineParams::default())
                .expect("roofline");
        LlmReplica::new(&LlmPool {
            gpu: gpu.name.clone(),
            tp: 1,
            peak_flops_per_s: 989e12,
            models: vec![ServedModel {
                name: model.name.clone(),
                latency: LatencyModel::Roofline(lat),
                kv_capacity_blocks: blocks,
                max_model_len: model.max_context,
                weight_bytes: model.weight_bytes(Dtype::Bf16),
            }],
            engine: EngineConfig {
                max_num_seqs,
                scheduling_policy: policy,
                ..EngineConfig::default()
            },
            load_bytes_per_s: 2e9,
            load_init: SimDuration::ZERO,
            queue_capacity: None,
        })
    }

    fn incoming(i: u32, priority: i32, prompt: u32, output: u32) -> Incoming {
        Incoming {
            req: ReqRef { idx: i, gen: 0 },
            model: 0,
            prompt,
            output,
            prefix: PrefixRef::default(),
            measured: true,
            priority,
        }
    }

    /// Runs the replica until idle; returns the requests in the order they were admitted and
    /// the order they finished.
    fn drain(r: &mut LlmReplica) -> (Vec<u32>, Vec<u32>) {
        let (mut started, mut done, mut out) = (Vec::new(), Vec::new(), Vec::new());
        let w = Window::default();
        let mut k = r.kick(SimTime::ZERO, w, &mut out);
        while let Kick::Iteration(t) = k {
            for e in out.drain(..) {
                match e {
                    Effect::Started { req } => started.push(req.idx),
                    Effect::Done { req, .. } => done.push(req.idx),
                    Effect::FirstToken { .. } => {}
                }
            }
            r.check_kv().expect("KV conservation");
            k = r.iteration_done(t, w, &mut out);
        }
        for e in out.drain(..) {
            if let Effect::Done { req, .. } = e {
                done.push(req.idx);
            }
        }
        (started, done)
    }

    #[test]
    fn fcfs_admits_in_arrival_order_and_priority_by_priority() {
        // One running slot, so admission order is the scheduling order. Priorities 5, 9, 1, -2
        // (lower first) give 3, 2, 0, 1 under the priority policy.
        for (policy, expect) in [
            (SchedulingPolicy::Fcfs, vec![0, 1, 2, 3]),
            (SchedulingPolicy::Priority, vec![3, 2, 0, 1]),
        ] {
            let mut r = replica(policy, 1, 10_000);
            for (i, p) in [(0, 5), (1, 9), (2, 1), (3, -2)] {
                r.enqueue(&incoming(i, p, 100, 5), &[]).expect("fits");
            }
            let (started, done) = drain(&mut r);
            assert_eq!(started, expect, "{policy:?}");
            assert_eq!(done, expect, "{policy:?}");
        }
    }

    #[test]
    fn preemption_victim_is_the_newest_or_the_lowest_priority() {
        // Two requests share a cache too small for both to finish: one is preempted. FCFS
        // preempts the most recently admitted (1); priority preempts the lowest priority (0,
        // admitted first but with priority 7).
        for (policy, victim_first_done) in
            [(SchedulingPolicy::Fcfs, 0u32), (SchedulingPolicy::Priority, 1u32)]
        {
            let mut r = replica(policy, 8, 40);
            r.enqueue(&incoming(0, 7, 200, 300), &[]).expect("fits");
            r.enqueue(&incoming(1, 0, 200, 300), &[]).expect("fits");
            let (_, done) = drain(&mut r);
            assert!(r.stats.preemptions > 0, "{policy:?}: 40 blocks cannot hold both");
            assert_eq!(done[0], victim_first_done, "{policy:?}: the survivor finishes first");
        }
    }
}
