//! The gateway layer: where requests enter, are admitted, routed and accounted per gateway.
//!
//! `gateway.replicas` independent gateway instances sit in front of the cluster; each request
//! enters one of them (chosen at random or round-robin, `gateway.spread`). Each instance owns
//! its router (its own counters, EWMAs, hash rings, prefix trees and random stream), its own
//! in-flight counters — the attempts *it* dispatched (exact, local) —, its own health view
//! ([`health`]: active checks, nginx passive health, Envoy outlier detection, SGLang circuit
//! breakers, the degraded state), its own admission state ([`admission`]: rate limits,
//! concurrency bucket, admission queue, shedding, downgrade) and its own retry limiter
//! ([`retry`]). One shared counter, `global_in_flight`, models a shared store (Redis) that all
//! instances update atomically. Kubernetes readiness ([`readiness`]) is one prober per
//! replica whose verdicts reach every instance as endpoint changes.
//!
//! Replica-side signals — waiting, running, KV utilisation, loaded model — reach an instance
//! through a scrape every `metrics_refresh_ms` (instance `g` of `G` scrapes at
//! `g·P/G + k·P`, so instances are out of phase); between scrapes it routes on the last
//! scraped values. `metrics_refresh_ms: 0` reads the live values (an oracle). Cache-index
//! policies read block residency from the [`kv_index::KvEventIndex`], fed by the replicas' KV
//! events with `gateway.kv_event_delay_ms` of delay.
//!
//! Nothing here reads a replica's true health: instances learn of failures only from the
//! results of their own attempts and probes, which the engine decides from the replica's
//! state. Mechanisms ask for timers (probes, intervals, windows ending) through
//! [`Gateways::take_timers`].
//!
//! Decision accounting: requests routed to each replica and an optional decision trace for a
//! window of request ids (`--trace-decisions`).

pub mod activator;
pub mod active_health;
pub mod admission;
pub mod circuit_breaker;
pub mod health;
pub mod kv_index;
pub mod limit_req;
pub mod nginx_passive;
pub mod outlier;
pub mod queue;
pub mod readiness;
pub mod retry;
pub mod saturation;
pub mod status;
pub mod token_bucket;

use crate::cluster::Cluster;
use crate::policy::routing::{
    Completion, FirstToken, KvIndex, NoKvIndex, RequestView, RouteView, Router,
};
use crate::rng::Stream;
use crate::spec::protection::BackoffParams;
use crate::spec::{GatewayConfig, Spread};
use crate::time::{SimDuration, SimTime};
use crate::workload::ClassSpec;
pub use admission::{Admission, AdmitRequest};
use admission::{AdmissionState, Downgrade};
pub use health::ProbeAnswer;
use health::{Candidates, Health, OFF_ENDPOINT};
use kv_index::KvEventIndex;
use nginx_passive::Phase;
use readiness::Readiness;
use retry::RetryLimiter;
use status::AttemptResult;

/// Which gateway timer is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TimerKind {
    /// Send an active health probe.
    Probe = 0,
    /// An unanswered probe times out.
    ProbeTimeout = 1,
    /// Envoy outlier-detection interval.
    Outlier = 2,
    /// A circuit breaker may half-open.
    Breaker = 3,
    /// An nginx `fail_timeout` window ends.
    Passive = 4,
    /// A concurrency token is refilled: the admission queue may move.
    Dequeue = 5,
}

impl TimerKind {
    /// From its `u8` value.
    pub fn from_u8(k: u8) -> TimerKind {
        match k {
            0 => TimerKind::Probe,
            1 => TimerKind::ProbeTimeout,
            2 => TimerKind::Outlier,
            3 => TimerKind::Breaker,
            4 => TimerKind::Passive,
            _ => TimerKind::Dequeue,
        }
    }
}

/// A timer a mechanism asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// A gateway instance's timer.
    Gateway {
        /// Instance.
        gateway: u16,
        /// Replica (0 for instance-wide timers).
        replica: u32,
        /// Which.
        kind: TimerKind,
    },
    /// The kubelet probes a replica.
    Readiness {
        /// Replica.
        replica: u32,
    },
}

impl Timer {
    /// Timer `kind` of instance `g` for replica `r`.
    pub fn gateway(g: u16, r: u32, kind: TimerKind) -> Timer {
        Timer::Gateway { gateway: g, replica: r, kind }
    }
}

/// Where routing sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To this replica.
    To(u32),
    /// No replica serves its model.
    NoCandidate,
    /// Replicas serve it, but none this instance considers healthy (503).
    NoHealthy,
    /// Every candidate is at `max_conns`.
    Busy,
}

/// Replica metrics as one instance last scraped them.
#[derive(Debug, Clone, Default)]
struct Scrape {
    queued: Vec<u32>,
    in_service: Vec<u32>,
    kv_util: Vec<f32>,
    loaded_model: Vec<u16>,
    at: SimTime,
}

impl Scrape {
    fn take(&mut self, c: &Cluster, now: SimTime) {
        self.queued.clone_from(&c.queued);
        self.in_service.clone_from(&c.in_service);
        self.kv_util.clone_from(&c.kv_util);
        self.loaded_model.clone_from(&c.loaded_model);
        self.at = now;
    }
}

/// One gateway instance.
struct Gateway {
    router: Box<dyn Router>,
    in_flight: Vec<u32>,
    /// Attempts in flight from this instance.
    active: u32,
    scrape: Option<Scrape>,
    health: Health,
    adm: AdmissionState,
    /// Per class, the limit of its retry policy.
    retry: Vec<Option<RetryLimiter>>,
    /// Retries open at this instance, over every class.
    open_retries: u32,
    backoff_rng: Stream,
}

/// One routing decision, for `--trace-decisions`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Request id.
    pub id: u64,
    /// When.
    pub time: SimTime,
    /// Gateway instance.
    pub gateway: u16,
    /// Workload class.
    pub class: u16,
    /// Chosen replica.
    pub replica: u32,
    /// Candidates considered.
    pub candidates: u32,
    /// This instance's in-flight count at the chosen replica before the decision.
    pub in_flight: u32,
    /// Waiting requests at the chosen replica, as this instance saw them.
    pub queued_seen: u32,
    /// Waiting requests at the chosen replica, live.
    pub queued_live: u32,
    /// KV utilisation of the chosen replica as seen.
    pub kv_util_seen: f32,
    /// Leading prompt blocks the chosen replica holds (KV index; 0 when not tracked).
    pub matched_blocks: u32,
    /// Prompt blocks hashed for the decision.
    pub prompt_blocks: u32,
}

/// All gateway instances of a run.
pub struct Gateways {
    gws: Vec<Gateway>,
    cfg: GatewayConfig,
    spread: Spread,
    next_rr: u32,
    spread_rng: Stream,
    refresh: SimDuration,
    /// Requests in flight per replica over all instances.
    pub global_in_flight: Vec<u32>,
    kv: Option<KvEventIndex>,
    /// Whether routers read prompt block hashes.
    pub needs_hashes: bool,
    /// Tokens per block of request hashes.
    pub block_size: u32,
    /// Requests routed to each replica (measured requests only).
    pub routed: Vec<u64>,
    trace_ids: Option<(u64, u64)>,
    /// Picks outside the candidate set (an invariant violation).
    pub non_candidate: u64,
    /// Decisions traced.
    pub decisions: Vec<Decision>,
    scratch: Vec<u32>,
    busy_scratch: Vec<u32>,
    timers: Vec<(SimTime, Timer)>,
    readiness: Option<Readiness>,
    /// Tenant index of each class.
    tenant_of: Vec<u16>,
    downgrade: Option<Downgrade>,
    /// Replica exclusions by health mechanisms (ejections), summed over instances.
    pub ejections: u64,
    exclusion_log: Vec<(SimTime, u32)>,
    /// Some admission step is configured.
    admission_on: bool,
    /// Some health mechanism that hears attempt results is configured.
    result_feedback: bool,
}

impl Gateways {
    /// Gateways per `cfg`, instance `g` routing with `routers[g]` over `cluster`, serving
    /// `classes`.
    pub fn new(
        cfg: &GatewayConfig,
        routers: Vec<Box<dyn Router>>,
        cluster: &Cluster,
        classes: &[ClassSpec],
        run_seed: u64,
    ) -> Gateways {
        let n = cluster.len();
        let needs_kv = cluster.is_llm() && routers.iter().any(|r| r.uses_kv_index());
        let needs_hashes = cluster.is_llm() && routers.iter().any(|r| r.uses_prefix_hashes());
        let live = cfg.metrics_refresh == SimDuration::ZERO;
        let mut tenants: Vec<&str> = Vec::new();
        let tenant_of = classes
            .iter()
            .map(|k| match tenants.iter().position(|t| *t == k.tenant) {
                Some(i) => i as u16,
                None => {
                    tenants.push(&k.tenant);
                    (tenants.len() - 1) as u16
                }
            })
            .collect();
        let instances = routers.len() as u32;
        let gws = routers
            .into_iter()
            .enumerate()
            .map(|(g, router)| Gateway {
                router,
                in_flight: vec![0; n],
                active: 0,
                scrape: (!live).then(|| {
                    let mut s = Scrape::default();
                    s.take(cluster, SimTime::ZERO);
                    s
                }),
                health: Health::new(&cfg.health, n, g as u16, instances, run_seed),
                adm: AdmissionState::new(&cfg.admission, tenants.len()),
                retry: classes
                    .iter()
                    .map(|k| cfg.retries_for(&k.client).map(RetryLimiter::new))
                    .collect(),
                open_retries: 0,
                backoff_rng: Stream::new(run_seed, "gateway:backoff", g as u64),
            })
            .collect();
        let downgrade = cfg.admission.downgrade.as_ref().and_then(|d| {
            Some(Downgrade { from: cluster.model_id(&d.from)?, to: cluster.model_id(&d.to)? })
        });
        Gateways {
            gws,
            cfg: cfg.clone(),
            spread: cfg.spread,
            next_rr: 0,
            spread_rng: Stream::new(run_seed, "gateway:spread", 0),
            refresh: cfg.metrics_refresh,
            global_in_flight: vec![0; n],
            kv: needs_kv.then(|| KvEventIndex::new(n, cfg.kv_event_delay)),
            needs_hashes: needs_hashes || needs_kv,
            block_size: cluster.infos.iter().map(|i| i.block_size).find(|&b| b > 0).unwrap_or(16),
            routed: vec![0; n],
            trace_ids: None,
            non_candidate: 0,
            decisions: Vec::new(),
            scratch: Vec::new(),
            busy_scratch: Vec::new(),
            timers: Vec::new(),
            readiness: cfg.health.readiness.as_ref().map(|p| Readiness::new(p, n)),
            tenant_of,
            downgrade,
            ejections: 0,
            exclusion_log: Vec::new(),
            admission_on: cfg.admission != Default::default(),
            result_feedback: cfg.health.passive.is_some()
                || cfg.health.outlier.is_some()
                || cfg.health.circuit_breaker.is_some(),
        }
    }

    /// Traces the decisions for request ids in `from..to`.
    pub fn trace(&mut self, from: u64, to: u64) {
        self.trace_ids = Some((from, to));
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.gws.len()
    }

    /// Whether there is no instance (never: validation requires at least one).
    pub fn is_empty(&self) -> bool {
        self.gws.is_empty()
    }

    /// The KV-event index, when some router reads it.
    pub fn kv_index(&self) -> Option<&KvEventIndex> {
        self.kv.as_ref()
    }

    /// Whether replicas must publish KV events.
    pub fn needs_kv_events(&self) -> bool {
        self.kv.is_some()
    }

    /// The instance the next request enters.
    #[inline]
    pub fn pick(&mut self) -> u16 {
        let n = self.gws.len() as u32;
        if n == 1 {
            return 0;
        }
        match self.spread {
            Spread::RoundRobin => {
                let g = self.next_rr % n;
                self.next_rr = self.next_rr.wrapping_add(1);
                g as u16
            }
            Spread::Random => (self.spread_rng.next_u64() % u64::from(n)) as u16,
        }
    }

    /// When instance `g` first scrapes (`None`: live metrics, no scrapes).
    pub fn first_scrape(&self, g: u16) -> Option<SimTime> {
        (self.refresh > SimDuration::ZERO).then(|| {
            let offset = self.refresh.as_nanos() * u64::from(g) / self.gws.len() as u64;
            SimTime::ZERO + SimDuration(offset) + self.refresh
        })
    }

    /// Instance `g` scrapes the replicas now; returns when it scrapes next.
    pub fn scrape(&mut self, g: u16, cluster: &Cluster, now: SimTime) -> SimTime {
        let gw = &mut self.gws[g as usize];
        if let Some(s) = &mut gw.scrape {
            s.take(cluster, now);
            if gw.health.tracks_degraded() {
                for (r, &kv) in s.kv_util.iter().enumerate() {
                    gw.health.see_kv(r as u32, kv, now);
                }
            }
        }
        now + self.refresh
    }

    /// Replica `r`'s live metrics changed: instances reading live values update their
    /// degraded view.
    #[inline]
    pub fn replica_changed(&mut self, r: u32, cluster: &Cluster) {
        let kv = cluster.kv_util[r as usize];
        for gw in &mut self.gws {
            if gw.scrape.is_none() && gw.health.tracks_degraded() {
                gw.health.see_kv(r, kv, SimTime::ZERO);
            }
        }
    }

    /// Replica `r` published KV events at `now`.
    pub fn publish_kv(&mut self, now: SimTime, r: u32, events: &[(u64, bool)]) {
        if let Some(ix) = &mut self.kv {
            ix.publish(now, r, events);
        }
    }

    // -- Admission ------------------------------------------------------------------------

    /// Whether some admission step is configured (else every request goes straight on).
    #[inline]
    pub fn admission_on(&self) -> bool {
        self.admission_on
    }

    /// Admission of a request entering instance `g`.
    pub fn admit(
        &mut self,
        g: u16,
        req: &AdmitRequest,
        cluster: &Cluster,
        now: SimTime,
    ) -> Admission {
        if !self.admission_on {
            return Admission::Go { model: None };
        }
        let cfg = &self.cfg.admission;
        let tenant = self.tenant_of[req.class as usize];
        let gw = &mut self.gws[g as usize];
        if !req.rate_limited {
            if let Some(a) = gw.adm.rate_limit(cfg, tenant, req.input_tokens, now) {
                return a;
            }
        }
        let (waiting, kv, age) = match &gw.scrape {
            Some(s) => (&s.queued[..], &s.kv_util[..], now - s.at),
            None => (&cluster.queued[..], &cluster.kv_util[..], SimDuration::ZERO),
        };
        if let Some(spec) = &cfg.shed {
            if req.priority < 0 {
                let (cands, _, _) = cluster.candidates_for_model(req.model);
                if saturation::pool_saturation(spec, cands, waiting, kv, age, |r| {
                    cluster.is_down(r)
                }) >= 1.0
                {
                    return Admission::Reject(429);
                }
            }
        }
        let mut model = None;
        if let (Some(d), Some(spec)) = (self.downgrade, &cfg.downgrade) {
            if req.model == d.from {
                let (cands, _, _) = cluster.candidates_for_model(d.from);
                if admission::should_downgrade(spec, cands, waiting, kv, age, |r| {
                    cluster.is_down(r)
                }) {
                    model = Some(d.to);
                }
            }
        }
        let priority = if cfg.queue.is_some_and(|q| q.by_priority) { req.priority } else { 0 };
        match gw.adm.concurrency(priority, now) {
            Admission::Go { .. } => Admission::Go { model },
            Admission::Queue { .. } => Admission::Queue { model },
            other => other,
        }
    }

    /// Puts call `h` (slot, generation) into instance `g`'s admission queue; it will be
    /// routed to `model` (`downgraded`: not the one it asked for). Says whether it was
    /// queued, displaced a lower-tier call (which the caller refuses), or found it full.
    pub fn enqueue(
        &mut self,
        g: u16,
        h: (u32, u32),
        priority: i32,
        model: u16,
        downgraded: bool,
    ) -> queue::Pushed {
        let by_priority = self.cfg.admission.queue.is_some_and(|q| q.by_priority);
        let priority = if by_priority { priority } else { 0 };
        let adm = &mut self.gws[g as usize].adm;
        let Some(q) = &mut adm.queue else { return queue::Pushed::Full };
        let pushed = q.push(h, priority);
        if pushed != queue::Pushed::Full {
            adm.queued_model.insert(h, (model, downgraded));
        }
        if let queue::Pushed::Displaced(v) = pushed {
            adm.queued_model.remove(&v);
        }
        pushed
    }

    /// Takes call `h` out of instance `g`'s queue (timed out or cancelled).
    pub fn unqueue(&mut self, g: u16, h: (u32, u32)) {
        let adm = &mut self.gws[g as usize].adm;
        if let Some(q) = &mut adm.queue {
            q.remove(h);
        }
        adm.queued_model.remove(&h);
    }

    /// Whether instance `g` has an admission queue.
    pub fn has_queue(&self, g: u16) -> bool {
        self.gws[g as usize].adm.queue.is_some()
    }

    /// Calls waiting in all admission queues.
    pub fn queued_total(&self) -> u64 {
        self.gws.iter().filter_map(|g| g.adm.queue.as_ref()).map(|q| q.len() as u64).sum()
    }

    /// The next call instance `g` may send from its queue now (taking its concurrency
    /// token), with its downgraded model if it was downgraded. With `max_conns`, the head
    /// waits until some replica serving its model has room at this instance.
    pub fn dequeue(
        &mut self,
        g: u16,
        cluster: &Cluster,
        now: SimTime,
    ) -> Option<((u32, u32), Option<u16>)> {
        let max_conns = self.cfg.admission.max_conns;
        let gw = &mut self.gws[g as usize];
        let q = gw.adm.queue.as_mut()?;
        let head = q.peek()?;
        let (model, downgraded) = gw.adm.queued_model.get(&head).copied().unwrap_or((0, false));
        if let Some(m) = max_conns {
            let (base, backup, epoch) = cluster.candidates_for_model(model);
            let room = match gw.health.candidates(model, base, backup, epoch) {
                Candidates::List(l, _) => l.iter().any(|&r| gw.in_flight[r as usize] < m),
                // Routing fails at once (503): let it.
                Candidates::NoHealthy => true,
            };
            if !room {
                return None;
            }
        }
        if let Some(b) = &mut gw.adm.bucket {
            if !b.try_take(1.0, now) {
                if let Some(t) = b.available_at(1.0, now) {
                    self.timers.push((t, Timer::gateway(g, 0, TimerKind::Dequeue)));
                }
                return None;
            }
        }
        q.pop();
        gw.adm.queued_model.remove(&head);
        Some((head, downgraded.then_some(model)))
    }

    /// A call admitted through instance `g`'s concurrency bucket ended: its token returns.
    pub fn call_ended(&mut self, g: u16, now: SimTime) {
        if let Some(b) = &mut self.gws[g as usize].adm.bucket {
            b.give_back(1.0, now);
        }
    }

    /// Whether instance `g` admits through a concurrency bucket.
    pub fn has_bucket(&self, g: u16) -> bool {
        self.gws[g as usize].adm.bucket.is_some()
    }

    // -- Routing --------------------------------------------------------------------------

    /// Instance `g` picks a replica for `req` among those it considers healthy, avoiding the
    /// replicas in `avoid` (a retry's previous hosts) while others remain.
    #[inline]
    pub fn route(
        &mut self,
        g: u16,
        req: &RequestView<'_>,
        avoid: &[u32],
        cluster: &Cluster,
        now: SimTime,
        measured: bool,
    ) -> Route {
        let (base, backup, base_epoch) = cluster.candidates_for_model(req.model);
        if base.is_empty() && backup.is_empty() {
            return Route::NoCandidate;
        }
        if let Some(ix) = &mut self.kv {
            ix.catch_up(now);
        }
        let kv_index: &dyn KvIndex = match &self.kv {
            Some(ix) => ix,
            None => &NoKvIndex,
        };
        let max_conns = self.cfg.admission.max_conns;
        let Gateway { router, in_flight, scrape, health, active, .. } = &mut self.gws[g as usize];
        let (mut candidates, mut candidates_epoch) =
            match health.candidates(req.model, base, backup, base_epoch) {
                Candidates::List(l, e) => (l, e),
                Candidates::NoHealthy => {
                    health.no_live_upstream(now);
                    return Route::NoHealthy;
                }
            };
        if max_conns.is_some() || !avoid.is_empty() {
            let room = |r: u32| max_conns.is_none_or(|m| in_flight[r as usize] < m);
            self.busy_scratch.clear();
            self.busy_scratch.extend(candidates.iter().copied().filter(|&r| room(r)));
            if self.busy_scratch.is_empty() {
                return Route::Busy;
            }
            if self.busy_scratch.iter().any(|r| !avoid.contains(r)) {
                self.busy_scratch.retain(|r| !avoid.contains(r));
            }
            if self.busy_scratch.len() < candidates.len() {
                candidates_epoch = health::list_epoch(&self.busy_scratch);
                candidates = &self.busy_scratch;
            }
        }
        let (queued, in_service, kv_util, loaded_model) = match scrape {
            Some(s) => (&s.queued[..], &s.in_service[..], &s.kv_util[..], &s.loaded_model[..]),
            None => (
                &cluster.queued[..],
                &cluster.in_service[..],
                &cluster.kv_util[..],
                &cluster.loaded_model[..],
            ),
        };
        let view = RouteView {
            candidates,
            candidates_epoch,
            in_flight,
            global_in_flight: &self.global_in_flight,
            queued,
            in_service,
            kv_util,
            loaded_model,
            weights: &cluster.weights,
            replicas: &cluster.infos,
            kv_index,
            block_size: self.block_size,
            now,
        };
        let r = router.route(req, &view);
        if candidates.binary_search(&r).is_err() {
            self.non_candidate += 1;
        }
        if self.trace_ids.is_some_and(|(a, b)| (a..b).contains(&req.id)) {
            kv_index.leading_matches(req.hashes, &[r], &mut self.scratch);
            self.decisions.push(Decision {
                id: req.id,
                time: now,
                gateway: g,
                class: req.class,
                replica: r,
                candidates: candidates.len() as u32,
                in_flight: in_flight[r as usize],
                queued_seen: queued[r as usize],
                queued_live: cluster.queued[r as usize],
                kv_util_seen: kv_util[r as usize],
                matched_blocks: self.scratch[0],
                prompt_blocks: req.hashes.len() as u32,
            });
        }
        in_flight[r as usize] += 1;
        *active += 1;
        self.global_in_flight[r as usize] += 1;
        if measured {
            self.routed[r as usize] += 1;
        }
        if self.result_feedback {
            health.on_select(r, now, &mut self.timers, g);
            self.note_exclusions(g);
        }
        Route::To(r)
    }

    /// The first token of a request instance `g` dispatched arrived.
    #[inline]
    pub fn first_token(&mut self, g: u16, ft: &FirstToken) {
        self.gws[g as usize].router.on_first_token(ft);
    }

    /// An attempt instance `g` dispatched has ended; its router hears how, and its health
    /// mechanisms hear `result` (`None`: cancelled, which tells them nothing). `will_retry`:
    /// the request goes on to another attempt.
    #[inline]
    pub fn release(
        &mut self,
        g: u16,
        done: &Completion,
        result: Option<AttemptResult>,
        will_retry: bool,
        now: SimTime,
    ) {
        let gw = &mut self.gws[g as usize];
        gw.in_flight[done.replica as usize] -= 1;
        gw.active -= 1;
        self.global_in_flight[done.replica as usize] -= 1;
        gw.router.on_complete(done);
        if let Some(res) = result.filter(|_| self.result_feedback) {
            let phase = match done.first_token {
                Some(_) => Phase::AfterHeader,
                None => Phase::BeforeHeader,
            };
            gw.health.on_result(done.replica, res, phase, will_retry, now, &mut self.timers, g);
            self.note_exclusions(g);
        }
    }

    // -- Retries --------------------------------------------------------------------------

    /// Whether a request of `class` may retry now at instance `g`: the retries open there
    /// (over every class) against the limit of the class's policy.
    pub fn may_retry(&self, g: u16, class: u16) -> bool {
        let gw = &self.gws[g as usize];
        let pending = gw.adm.queue.as_ref().map_or(0, |q| q.len() as u32);
        gw.retry[class as usize]
            .as_ref()
            .is_some_and(|l| l.may_retry(gw.open_retries, gw.active, pending))
    }

    /// A retry holds one of instance `g`'s retry slots.
    pub fn retry_started(&mut self, g: u16) {
        self.gws[g as usize].open_retries += 1;
    }

    /// That retry is over.
    pub fn retry_ended(&mut self, g: u16) {
        let gw = &mut self.gws[g as usize];
        debug_assert!(gw.open_retries > 0, "retry_ended without retry_started");
        gw.open_retries = gw.open_retries.saturating_sub(1);
    }

    /// The jittered backoff before retry number `k`, from instance `g`'s stream.
    pub fn backoff(&mut self, g: u16, k: u32, p: &BackoffParams) -> SimDuration {
        retry::backoff(k, p, &mut self.gws[g as usize].backoff_rng)
    }

    // -- Health ---------------------------------------------------------------------------

    /// The first health timers of every instance and replica.
    pub fn start_timers(&mut self) {
        let n = self.global_in_flight.len();
        for (g, gw) in self.gws.iter_mut().enumerate() {
            gw.health.start(g as u16, n, &mut self.timers);
        }
        if let Some(rd) = &self.readiness {
            for r in 0..n as u32 {
                self.timers.push((rd.first_probe(r), Timer::Readiness { replica: r }));
            }
        }
    }

    /// Whether mechanisms asked for timers or logged exclusions since the last take.
    #[inline]
    pub fn has_pending(&self) -> bool {
        !self.timers.is_empty() || !self.exclusion_log.is_empty()
    }

    /// Moves the timers mechanisms asked for into `out`.
    pub fn take_timers(&mut self, out: &mut Vec<(SimTime, Timer)>) {
        out.append(&mut self.timers);
    }

    /// Moves the exclusions (replica, time) since the last call into `out`.
    pub fn take_exclusions(&mut self, out: &mut Vec<(SimTime, u32)>) {
        out.append(&mut self.exclusion_log);
    }

    fn note_exclusions(&mut self, g: u16) {
        let log = &mut self.gws[g as usize].health.ejected_log;
        if !log.is_empty() {
            self.ejections += log.len() as u64;
            self.exclusion_log.append(log);
        }
    }

    /// Timer `kind` of instance `g` (replica `r`) is due; `answer` is what a probe meets now.
    pub fn on_timer(
        &mut self,
        g: u16,
        r: u32,
        kind: u8,
        answer: ProbeAnswer,
        _cluster: &Cluster,
        now: SimTime,
    ) {
        let kind = TimerKind::from_u8(kind);
        self.gws[g as usize].health.on_timer(g, r, kind, answer, now, &mut self.timers);
        self.note_exclusions(g);
    }

    /// Whether instance `g` excludes replica `r` (unhealthy or off the endpoints).
    pub fn excluded(&self, g: u16, r: u32) -> bool {
        self.gws[g as usize].health.excluded(r)
    }

    /// Whether some instance excludes replica `r`.
    pub fn excluded_anywhere(&self, r: u32) -> bool {
        self.gws.iter().any(|g| g.health.excluded(r))
    }

    /// Whether instance `g` sees replica `r` as degraded.
    pub fn degraded(&self, g: u16, r: u32) -> bool {
        self.gws[g as usize].health.degraded(r)
    }

    /// The kubelet probed replica `r` (`ok`: it answered). `None` when probes are off or
    /// this probe is stale; else the readiness flip, if any, and the next probe.
    pub fn readiness_probe(
        &mut self,
        r: u32,
        ok: bool,
        now: SimTime,
    ) -> Option<(Option<bool>, Option<SimTime>)> {
        let rd = self.readiness.as_mut()?;
        if rd.next_probe(r) != now {
            return None;
        }
        let (flip, next) = rd.on_probe(r, ok, now);
        Some((flip, (next != SimTime::MAX).then_some(next)))
    }

    /// Delay until a readiness change reaches the gateways.
    pub fn endpoint_delay(&self) -> SimDuration {
        self.readiness.as_ref().map_or(SimDuration::ZERO, |r| r.propagation_delay())
    }

    /// Replica `r`'s container exited (crash): readiness turns false at once. Returns the
    /// flip, if any.
    pub fn container_exited(&mut self, r: u32) -> Option<bool> {
        self.readiness.as_mut()?.on_exit(r)
    }

    /// Replica `r`'s container restarted: returns when the kubelet probes it next.
    pub fn container_restarted(&mut self, r: u32, now: SimTime) -> Option<SimTime> {
        Some(self.readiness.as_mut()?.on_restart(r, now))
    }

    /// A readiness change of `r` reaches every instance.
    pub fn set_endpoint(&mut self, r: u32, ready: bool, _cluster: &Cluster, now: SimTime) {
        for g in 0..self.gws.len() {
            self.gws[g].health.set(r, OFF_ENDPOINT, !ready, now);
            self.note_exclusions(g as u16);
        }
    }

    // -- Accounting -----------------------------------------------------------------------

    /// Routing violations: picks outside the candidate set plus in-flight counts, attempts,
    /// retry slots and admission-queue entries still held (call when no request is live).
    pub fn leftover(&self) -> u64 {
        let open: u64 = self
            .gws
            .iter()
            .flat_map(|g| g.in_flight.iter())
            .chain(self.global_in_flight.iter())
            .map(|&x| u64::from(x))
            .sum();
        let active: u64 = self.gws.iter().map(|g| u64::from(g.active)).sum();
        let retries: u64 = self.gws.iter().map(|g| u64::from(g.open_retries)).sum();
        let queued: u64 = self
            .gws
            .iter()
            .map(|g| {
                (g.adm.queue.as_ref().map_or(0, |q| q.len()) + g.adm.queued_model.len()) as u64
            })
            .sum();
        self.non_candidate + open + active + retries + queued
    }

    /// Max over replicas of requests in flight divided by their mean (`None` when nothing is
    /// in flight): the load-imbalance figure sampled over time.
    pub fn imbalance(&self) -> Option<f64> {
        let n = self.global_in_flight.len();
        let (mut max, mut sum) = (0u32, 0u64);
        for &x in &self.global_in_flight {
            max = max.max(x);
            sum += u64::from(x);
        }
        (sum > 0).then(|| f64::from(max) * n as f64 / sum as f64)
    }
}
