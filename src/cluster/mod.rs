//! The cluster: replicas, their lifecycle, the per-replica queues of `queue` pools, and the
//! engines of `llm` pools ([`llm`]).
//!
//! Replicas are numbered 0.. in pool order. Per-replica state is kept as parallel vectors
//! (`queued`, `in_service`, `weights`, ...) so routers can read it as slices without copying.
//!
//! A replica has a lifecycle state. The routing candidates of a model are the replicas of the
//! pools serving it that are *endpoints*: `Ready`, and also `Failed` and `Recovering` — a
//! crashed replica stays in the upstream list until some health mechanism of a gateway (or
//! Kubernetes readiness) takes it out, because gateways only know what their requests and
//! probes tell them. `Provisioning`, `Loading` and `Draining` replicas are not endpoints (the
//! states the autoscaling layer will drive). Replicas of `backup` pools (nginx `backup`) form a
//! separate list a gateway falls back to when no primary replica is available to it.
//!
//! Invariants: `queued[r]` counts live waiting requests (handles in `waiting[r]` whose request
//! timed out stay behind as tombstones and are skipped when reached); `in_service[r] <=
//! slots[r]`; a replica never has a free slot while a live request waits (work conservation).

pub mod catalog;
pub mod hash_index;
pub mod kv;
pub mod latency;
pub mod llm;

use crate::engine::event::ReqRef;
use crate::policy::routing::ReplicaInfo;
use crate::spec::{PoolKind, PoolSpec};
use crate::workload::dist::Dist;
use crate::workload::ClassSpec;
use std::collections::VecDeque;

/// Where a replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Machine being obtained.
    Provisioning,
    /// Model weights loading.
    Loading,
    /// Serving and routable.
    Ready,
    /// Finishing its work; receives nothing new.
    Draining,
    /// Crashed: connections are refused.
    Failed,
    /// Restarting and loading its model after a crash; connections are refused.
    Recovering,
    /// Not provisioned: a slot an autoscaler may fill (no machine, no cost).
    Off,
}

impl Lifecycle {
    /// Every state, in [`Lifecycle::index`] order.
    pub const ALL: [Lifecycle; 7] = [
        Lifecycle::Provisioning,
        Lifecycle::Loading,
        Lifecycle::Ready,
        Lifecycle::Draining,
        Lifecycle::Failed,
        Lifecycle::Recovering,
        Lifecycle::Off,
    ];

    /// Position in [`Lifecycle::ALL`].
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name in outputs.
    pub fn name(self) -> &'static str {
        match self {
            Lifecycle::Provisioning => "provisioning",
            Lifecycle::Loading => "loading",
            Lifecycle::Ready => "ready",
            Lifecycle::Draining => "draining",
            Lifecycle::Failed => "failed",
            Lifecycle::Recovering => "recovering",
            Lifecycle::Off => "off",
        }
    }
}

impl Lifecycle {
    /// Whether replicas in this state are listed as endpoints (routing candidates).
    #[inline]
    pub fn is_endpoint(self) -> bool {
        matches!(self, Lifecycle::Ready | Lifecycle::Failed | Lifecycle::Recovering)
    }
}

/// All replicas of a run.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// Pool index of each replica.
    pub pool_of: Vec<u16>,
    /// Lifecycle state of each replica.
    pub lifecycle: Vec<Lifecycle>,
    /// When each replica entered its current state.
    lifecycle_since: Vec<crate::time::SimTime>,
    /// Nanoseconds each replica spent in each state before its current one
    /// ([`Lifecycle::index`] order).
    lifecycle_ns: Vec<[u64; 7]>,
    /// Routing weight of each replica.
    pub weights: Vec<u32>,
    /// Parallel servers of each replica.
    pub slots: Vec<u32>,
    /// Most waiting requests per replica (`u32::MAX` = unbounded).
    pub queue_capacity: Vec<u32>,
    /// Live waiting requests per replica.
    pub queued: Vec<u32>,
    /// Requests in service per replica.
    pub in_service: Vec<u32>,
    /// FIFO of waiting handles per replica (may hold tombstones).
    pub waiting: Vec<VecDeque<ReqRef>>,
    /// Ready replicas in id order: the routing candidates.
    pub candidates: Vec<u32>,
    /// Bumped when `candidates` changes.
    pub candidates_epoch: u64,
    /// Service-time law per (pool, class), flattened `pool * classes + class`.
    service: Vec<Dist>,
    classes: usize,
    /// The `llm` engines, one per replica (empty for queue clusters).
    pub llm: Vec<llm::LlmReplica>,
    /// GPUs per replica (1 for queue replicas).
    pub gpus: Vec<u32>,
    /// Candidate lists per model-table index: the endpoint replicas of primary pools serving
    /// it (all endpoints for queue clusters).
    pub candidate_sets: Vec<Vec<u32>>,
    /// The same for `backup` pools.
    pub backup_sets: Vec<Vec<u32>>,
    /// Whether each pool is a backup pool.
    pub pool_backup: Vec<bool>,
    /// Cold start of each replica's first model (its recovery load after a crash).
    cold_start: Vec<crate::time::SimDuration>,
    /// Per class and pool: index of the class's model in the pool's `models`, flattened
    /// `pool * classes + class` (`u16::MAX`: the pool does not serve it).
    class_model: Vec<u16>,
    /// Static facts per replica, for routers.
    pub infos: Vec<ReplicaInfo>,
    /// Live KV utilisation per replica (blocks in use / capacity; 0 for queue replicas).
    pub kv_util: Vec<f32>,
    /// Live model of each replica (loaded or loading), as a model-table index.
    pub loaded_model: Vec<u16>,
    /// Model table: every model name served by some pool, in order of first appearance.
    pub model_names: Vec<String>,
    /// Model-table index of each pool's models.
    pool_models: Vec<Vec<u16>>,
    /// Model-table index of each class's model (0 for queue clusters).
    pub class_model_id: Vec<u16>,
}

impl Cluster {
    /// Builds the replicas of `pools`; `classes` supply service times where pools do not.
    pub fn new(pools: &[PoolSpec], classes: &[ClassSpec]) -> Cluster {
        let n: usize = pools.iter().map(|p| p.replicas as usize).sum();
        let mut c = Cluster {
            pool_of: Vec::with_capacity(n),
            lifecycle: Vec::with_capacity(n),
            lifecycle_since: Vec::with_capacity(n),
            lifecycle_ns: Vec::with_capacity(n),
            weights: Vec::with_capacity(n),
            slots: Vec::with_capacity(n),
            queue_capacity: Vec::with_capacity(n),
            queued: vec![0; n],
            in_service: vec![0; n],
            waiting: (0..n).map(|_| VecDeque::new()).collect(),
            candidates: (0..n as u32).collect(),
            candidates_epoch: 0,
            service: Vec::with_capacity(pools.len() * classes.len()),
            classes: classes.len(),
            llm: Vec::new(),
            gpus: Vec::with_capacity(n),
            candidate_sets: Vec::new(),
            backup_sets: Vec::new(),
            pool_backup: pools.iter().map(|p| p.backup).collect(),
            cold_start: Vec::with_capacity(n),
            class_model: Vec::new(),
            infos: Vec::with_capacity(n),
            kv_util: vec![0.0; n],
            loaded_model: vec![0; n],
            model_names: Vec::new(),
            pool_models: Vec::new(),
            class_model_id: Vec::new(),
        };
        for (pi, p) in pools.iter().enumerate() {
            let (slots, service_s, queue_capacity) = match &p.kind {
                PoolKind::Queue { slots, service_s, queue_capacity } => {
                    (*slots, service_s.as_ref(), *queue_capacity)
                }
                PoolKind::Llm(spec) => {
                    for _ in 0..p.replicas {
                        c.llm.push(llm::LlmReplica::new(spec));
                    }
                    (spec.engine.max_num_seqs, None, spec.queue_capacity)
                }
            };
            let tp = match &p.kind {
                PoolKind::Llm(spec) => spec.tp,
                PoolKind::Queue { .. } => 1,
            };
            let info = match &p.kind {
                PoolKind::Llm(spec) => ReplicaInfo {
                    flops_per_s: spec.peak_flops_per_s,
                    kv_capacity_blocks: spec.models[0].kv_capacity_blocks,
                    block_size: spec.engine.block_size,
                    pool: pi as u16,
                    slots: spec.engine.max_num_seqs,
                },
                PoolKind::Queue { .. } => ReplicaInfo {
                    flops_per_s: 1.0,
                    kv_capacity_blocks: 0,
                    block_size: 0,
                    pool: pi as u16,
                    slots,
                },
            };
            let ids: Vec<u16> = match &p.kind {
                PoolKind::Llm(spec) => spec
                    .models
                    .iter()
                    .map(|m| match c.model_names.iter().position(|x| x == &m.name) {
                        Some(i) => i as u16,
                        None => {
                            c.model_names.push(m.name.clone());
                            (c.model_names.len() - 1) as u16
                        }
                    })
                    .collect(),
                PoolKind::Queue { .. } => vec![0],
            };
            c.pool_models.push(ids);
            for _ in 0..p.replicas {
                c.infos.push(info);
            }
            let cold = match &p.kind {
                PoolKind::Llm(spec) => spec.cold_start(0),
                PoolKind::Queue { .. } => crate::time::SimDuration::ZERO,
            };
            for _ in 0..p.replicas {
                c.cold_start.push(cold);
                c.pool_of.push(pi as u16);
                c.lifecycle.push(Lifecycle::Ready);
                c.lifecycle_since.push(crate::time::SimTime::ZERO);
                c.lifecycle_ns.push([0; 7]);
                c.weights.push(p.weight);
                c.slots.push(slots);
                c.gpus.push(tp);
                c.queue_capacity.push(queue_capacity.unwrap_or(u32::MAX));
            }
            for k in classes {
                c.class_model.push(match (&p.kind, &k.model) {
                    (PoolKind::Queue { .. }, _) => 0,
                    (PoolKind::Llm(spec), Some(m)) => {
                        spec.models.iter().position(|x| &x.name == m).map_or(u16::MAX, |i| i as u16)
                    }
                    (PoolKind::Llm(_), None) => 0,
                });
                let law = service_s.or(k.service_s.as_ref());
                // Validation guarantees one of the two exists.
                c.service.push(law.cloned().unwrap_or_else(|| {
                    Dist::new(crate::workload::dist::Law::Constant(0.0), None, None)
                }));
            }
        }
        for k in classes {
            let id = match &k.model {
                Some(m) => c.model_names.iter().position(|x| x == m).unwrap_or(0),
                None => 0,
            };
            c.class_model_id.push(id as u16);
        }
        for r in 0..n {
            c.loaded_model[r] = c.pool_models[c.pool_of[r] as usize][0];
        }
        c.build_candidate_sets();
        c
    }

    /// Lists, per model, the endpoint replicas of the pools that serve it (primary and
    /// backup pools apart). Called at start and whenever lifecycles change.
    pub fn build_candidate_sets(&mut self) {
        let models = self.model_names.len().max(1);
        let mut prim = vec![Vec::new(); models];
        let mut back = vec![Vec::new(); models];
        for r in 0..self.len() {
            if !self.lifecycle[r].is_endpoint() {
                continue;
            }
            let p = self.pool_of[r] as usize;
            let served: &[u16] = if self.llm.is_empty() { &[0] } else { &self.pool_models[p] };
            for &m in served {
                let list = if self.pool_backup[p] { &mut back } else { &mut prim };
                list[m as usize].push(r as u32);
            }
        }
        self.candidate_sets = prim;
        self.backup_sets = back;
        self.candidates_epoch += 1;
    }

    /// The endpoint replicas that can serve model `model` (model-table index), the backup
    /// ones, and an epoch unique to the primary list.
    #[inline]
    pub fn candidates_for_model(&self, model: u16) -> (&[u32], &[u32], u64) {
        let m = model as usize;
        match self.candidate_sets.get(m) {
            Some(c) => (c, &self.backup_sets[m], (self.candidates_epoch << 16) | model as u64),
            None => (&[], &[], 0),
        }
    }

    /// Sets replica `r`'s lifecycle state (rebuilding the candidate lists when its endpoint
    /// membership changes).
    pub fn set_lifecycle(&mut self, r: u32, s: Lifecycle, now: crate::time::SimTime) {
        let i = r as usize;
        let old = self.lifecycle[i];
        self.lifecycle_ns[i][old.index()] += (now - self.lifecycle_since[i]).as_nanos();
        self.lifecycle_since[i] = now;
        let was = old.is_endpoint();
        self.lifecycle[r as usize] = s;
        if was != s.is_endpoint() {
            self.build_candidate_sets();
        }
    }

    /// Nanoseconds replica `r` has spent in each state up to `now`.
    pub fn lifecycle_ns(&self, r: u32, now: crate::time::SimTime) -> [u64; 7] {
        let i = r as usize;
        let mut t = self.lifecycle_ns[i];
        t[self.lifecycle[i].index()] += (now - self.lifecycle_since[i]).as_nanos();
        t
    }

    /// Nanoseconds replica `r` has been provisioned (in any state but `Off`) up to `now`.
    pub fn provisioned_ns(&self, r: u32, now: crate::time::SimTime) -> u64 {
        let t = self.lifecycle_ns(r, now);
        t.iter().sum::<u64>() - t[Lifecycle::Off.index()]
    }

    /// Whether replica `r` is down (crashed or recovering): it refuses connections.
    #[inline]
    pub fn is_down(&self, r: u32) -> bool {
        matches!(self.lifecycle[r as usize], Lifecycle::Failed | Lifecycle::Recovering)
    }

    /// Forgets every request queued or in service at queue replica `r` (it crashed).
    pub fn clear_queue(&mut self, r: u32) {
        let i = r as usize;
        self.queued[i] = 0;
        self.in_service[i] = 0;
        self.waiting[i].clear();
    }

    /// Model-table indexes of the models pool `p` serves (`[0]` for queue clusters).
    pub fn served_models(&self, p: u16) -> &[u16] {
        if self.llm.is_empty() {
            &[0]
        } else {
            self.pool_models.get(p as usize).map_or(&[], |m| m.as_slice())
        }
    }

    /// Time replica `r` takes to load its model after a restart (its first model's cold
    /// start).
    pub fn cold_start(&self, r: u32) -> crate::time::SimDuration {
        self.cold_start[r as usize]
    }

    /// Index in replica `r`'s pool `models` of model-table model `model` (0 if the pool does
    /// not serve it, which routing never lets happen).
    #[inline]
    pub fn local_model_id(&self, r: u32, model: u16) -> u16 {
        let p = self.pool_of[r as usize] as usize;
        self.pool_models[p].iter().position(|&m| m == model).unwrap_or(0) as u16
    }

    /// Model-table index of model `name`, if some pool serves it.
    pub fn model_id(&self, name: &str) -> Option<u16> {
        self.model_names.iter().position(|m| m == name).map(|i| i as u16)
    }

    /// `pool-index` names of the replicas, as fault targets are written.
    pub fn replica_names(&self, pools: &[PoolSpec]) -> Vec<String> {
        let mut out = Vec::with_capacity(self.len());
        for p in pools {
            for i in 0..p.replicas {
                out.push(format!("{}-{i}", p.name));
            }
        }
        out
    }

    /// Index of class `class`'s model in replica `r`'s pool (`llm` clusters).
    #[inline]
    pub fn local_model(&self, r: u32, class: u16) -> u16 {
        self.class_model[self.pool_of[r as usize] as usize * self.classes + class as usize]
    }

    /// Whether the replicas are `llm` engines.
    #[inline]
    pub fn is_llm(&self) -> bool {
        !self.llm.is_empty()
    }

    /// Copies replica `r`'s engine counts into the router-visible `queued`/`in_service`.
    #[inline]
    pub fn sync_llm(&mut self, r: u32) {
        let e = &self.llm[r as usize];
        let i = r as usize;
        self.queued[i] = e.queued();
        self.in_service[i] = e.running();
        self.kv_util[i] = e.kv_allocated_blocks() as f32 / e.kv_capacity_blocks().max(1) as f32;
        self.loaded_model[i] =
            self.pool_models[self.pool_of[i] as usize][e.current_model() as usize];
    }

    /// Number of replicas.
    pub fn len(&self) -> usize {
        self.pool_of.len()
    }

    /// Whether the cluster has no replica.
    pub fn is_empty(&self) -> bool {
        self.pool_of.is_empty()
    }

    /// The service-time law for a request of `class` on replica `r`.
    #[inline]
    pub fn service_law(&self, r: u32, class: u16) -> &Dist {
        &self.service[self.pool_of[r as usize] as usize * self.classes + class as usize]
    }

    /// Whether replica `r` has a free slot.
    #[inline]
    pub fn has_free_slot(&self, r: u32) -> bool {
        self.in_service[r as usize] < self.slots[r as usize]
    }

    /// Whether replica `r`'s queue is full.
    #[inline]
    pub fn queue_full(&self, r: u32) -> bool {
        self.queued[r as usize] >= self.queue_capacity[r as usize]
    }

    /// Appends a waiting request to replica `r`.
    #[inline]
    pub fn enqueue(&mut self, r: u32, req: ReqRef) {
        self.queued[r as usize] += 1;
        self.waiting[r as usize].push_back(req);
    }

    /// Whether replica `r` breaks work conservation right now.
    #[inline]
    pub fn idle_with_work(&self, r: u32) -> bool {
        if let Some(e) = self.llm.get(r as usize) {
            return e.idle_with_work();
        }
        self.has_free_slot(r) && self.queued[r as usize] > 0
    }
}
