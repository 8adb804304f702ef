//! The discrete-event engine: one run of one policy on one replication of a scenario.
//!
//! The loop pops the earliest event by `(time, rank, seq)`, advances the clock, and dispatches
//! it in the single `match` of [`Sim::run`]. Per-event work is O(1) amortised plus the
//! router's own cost: no handler scans all replicas or all requests (the drain deadline is
//! the one exception, once per run).
//!
//! Arrivals are generated lazily, one pending arrival per class; timeouts use one pending
//! tick per class over a FIFO of deadlines (deadlines of a class are in arrival order), so the
//! heap holds O(classes + requests in service) entries. Requests live in a slab and end in
//! exactly one [`Outcome`]. Limits (events, requests in flight) end a runaway run with a
//! [`RunFailure`] instead of a hang; invariants are checked at the end.

pub mod event;
pub mod queue;
pub mod request;

use crate::cluster::llm::{Effect, Incoming, Kick, NeverFits, Window};
use crate::cluster::Cluster;
use crate::error::RunFailure;
use crate::gateway::{Decision, Gateways};
use crate::metrics::invariants::{self, Violations};
use crate::metrics::{Outcome, Recorder};
use crate::policy::routing::{BuildCtx, Completion, FirstToken, RequestView};
use crate::rng;
use crate::scenario::{PolicySpec, Scenario};
use crate::time::{SimDuration, SimTime};
use crate::workload::{ClassGen, Draws, Session};
use event::{Event, ReqRef};
use queue::EventQueue;
use request::{Phase, Req, Slab};
use std::collections::VecDeque;

/// What one run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The run seed.
    pub run_seed: u64,
    /// Counters and latency distributions.
    pub recorder: Recorder,
    /// Length of the measurement window (warm-up end to arrival stop).
    pub window: SimDuration,
    /// Events processed.
    pub events: u64,
    /// Events that found their request already gone (a completion after a timeout).
    pub stale_events: u64,
    /// Simulated time when the run ended.
    pub end_time: SimTime,
    /// Cluster state sampled every `timeseries.interval_s` (empty if not enabled).
    pub timeseries: Vec<Sample>,
    /// Measured requests routed to each replica.
    pub routed: Vec<u64>,
    /// Pool of each replica.
    pub pool_of: Vec<u16>,
    /// Traced routing decisions (`--trace-decisions`).
    pub decisions: Vec<Decision>,
}

/// One time-series sample of the whole cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When.
    pub time: SimTime,
    /// Requests waiting in replica queues.
    pub queued: u64,
    /// Requests in service.
    pub in_service: u64,
    /// Requests in flight (admitted, not ended).
    pub in_flight: u64,
    /// Completions per second since the previous sample.
    pub completions_per_s: f64,
    /// Mean over `llm` replicas of KV blocks in use / capacity (`None` for queue clusters).
    pub kv_util: Option<f64>,
}

/// Period of the load-imbalance samples.
pub const LOAD_SAMPLE: SimDuration = SimDuration::from_millis(100);

/// Most samples kept per run; sampling stops beyond it.
pub const MAX_SAMPLES: usize = 200_000;

struct ClassState {
    gen: ClassGen,
    timeout: Option<SimDuration>,
    deadlines: VecDeque<(SimTime, ReqRef)>,
    timer_armed: bool,
    open: bool,
}

/// The state of one run.
pub struct Sim<'a> {
    sc: &'a Scenario,
    now: SimTime,
    queue: EventQueue,
    classes: Vec<ClassState>,
    slab: Slab,
    cluster: Cluster,
    gateway: Gateways,
    kv_events: Vec<(u64, bool)>,
    req_hashes: Vec<u64>,
    next_load_sample: SimTime,
    rec: Recorder,
    viol: Violations,
    arrivals: u64,
    open_classes: usize,
    window_start: Option<SimTime>,
    window_end: Option<SimTime>,
    events: u64,
    stale_events: u64,
    samples: Vec<Sample>,
    completed_at_last_sample: u64,
    effects: Vec<Effect>,
    trace_hashes: Vec<u64>,
    sessions: Sessions,
}

/// `Req::session` of a request outside any session.
const NO_SESSION: u32 = u32::MAX;

/// Live closed-loop sessions, with the draws of each one's next turn while the user thinks.
#[derive(Default)]
struct Sessions {
    slots: Vec<Option<(Session, u16, Draws)>>,
    free: Vec<u32>,
}

impl Sessions {
    fn insert(&mut self, s: Session) -> u32 {
        let entry = Some((s, 0, Draws::default()));
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = entry;
                i
            }
            None => {
                self.slots.push(entry);
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn get_mut(&mut self, i: u32) -> &mut Session {
        &mut self.slots[i as usize].as_mut().expect("live session").0
    }

    fn set_pending(&mut self, i: u32, class: u16, d: Draws) {
        let e = self.slots[i as usize].as_mut().expect("live session");
        e.1 = class;
        e.2 = d;
    }

    fn pending(&self, i: u32) -> (u16, Draws) {
        let e = self.slots[i as usize].as_ref().expect("live session");
        (e.1, e.2)
    }

    fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn remove(&mut self, i: u32) {
        if self.slots[i as usize].take().is_some() {
            self.free.push(i);
        }
    }
}

/// Runs `policy` on replication `replication` of `sc`.
pub fn run(sc: &Scenario, policy: &PolicySpec, replication: u32) -> Result<RunOutput, RunFailure> {
    let run_seed = rng::run_seed(sc.seed, replication);
    let mut sim = Sim::new(sc, policy, run_seed)?;
    sim.run()?;
    sim.finish(run_seed)
}

impl<'a> Sim<'a> {
    fn new(sc: &'a Scenario, policy: &PolicySpec, run_seed: u64) -> Result<Sim<'a>, RunFailure> {
        let mut cluster = Cluster::new(&sc.pools, &sc.classes);
        let routers = (0..policy.gateway.replicas)
            .map(|g| {
                let ctx = BuildCtx {
                    run_seed,
                    weights: &cluster.weights,
                    replicas: &cluster.infos,
                    gateway: g,
                };
                (policy.entry.build)(&policy.params, &ctx)
                    .map_err(|e| RunFailure::Invariant(format!("policy failed to build: {e}")))
            })
            .collect::<Result<Vec<_>, RunFailure>>()?;
        let mut gateway = Gateways::new(&policy.gateway, routers, &cluster, run_seed);
        if gateway.needs_kv_events() {
            for e in &mut cluster.llm {
                e.enable_kv_events();
            }
        }
        if let Some((a, b)) = sc.trace_decisions {
            gateway.trace(a, b);
        }
        let classes = sc
            .classes
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Ok(ClassState {
                    gen: ClassGen::new(k, i, run_seed)
                        .map_err(|e| RunFailure::Invariant(e.to_string()))?,
                    timeout: k.timeout,
                    deadlines: VecDeque::new(),
                    timer_armed: false,
                    open: true,
                })
            })
            .collect::<Result<Vec<_>, RunFailure>>()?;
        Ok(Sim {
            sc,
            now: SimTime::ZERO,
            queue: EventQueue::new(),
            classes,
            slab: Slab::new(),
            cluster,
            gateway,
            kv_events: Vec::new(),
            req_hashes: Vec::new(),
            next_load_sample: SimTime::ZERO + LOAD_SAMPLE,
            rec: Recorder::default(),
            viol: Violations::default(),
            arrivals: 0,
            open_classes: sc.classes.len(),
            window_start: None,
            window_end: None,
            events: 0,
            stale_events: 0,
            samples: Vec::new(),
            completed_at_last_sample: 0,
            effects: Vec::new(),
            trace_hashes: Vec::new(),
            sessions: Sessions::default(),
        })
    }

    fn run(&mut self) -> Result<(), RunFailure> {
        for c in 0..self.classes.len() {
            self.schedule_next_arrival(c as u16)?;
        }
        if let Some(i) = self.sc.timeseries_interval {
            self.queue.push(SimTime::ZERO + i, Event::Sample);
        }
        for g in 0..self.gateway.len() as u16 {
            if let Some(t) = self.gateway.first_scrape(g) {
                self.queue.push(t, Event::Scrape { gateway: g });
            }
        }
        let max_events = self.sc.limits.max_events;
        while let Some((t, ev)) = self.queue.pop() {
            if t < self.now {
                self.viol.clock += 1;
            }
            self.now = t;
            self.events += 1;
            if self.events > max_events {
                return Err(RunFailure::EventLimit(max_events));
            }
            match ev {
                Event::Arrival { class } => self.on_arrival(class)?,
                Event::SessionTurn { session } => self.on_session_turn(session)?,
                Event::ServiceDone { req } => self.on_service_done(req),
                Event::Iteration { replica } => self.on_iteration(replica),
                Event::ModelLoaded { replica } => self.on_model_loaded(replica),
                Event::TimeoutTick { class } => self.on_timeout_tick(class),
                Event::Sample => self.on_sample(),
                Event::Scrape { gateway } => {
                    let next = self.gateway.scrape(gateway, &self.cluster, self.now);
                    self.queue.push(next, Event::Scrape { gateway });
                }
                Event::DrainDeadline => {
                    self.on_drain_deadline();
                    break;
                }
            }
            if self.open_classes == 0 && self.slab.live() == 0 && self.sessions.live() == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Schedules class `class`'s next open-loop arrival, or closes the class when its arrivals
    /// end. A trace read error that ended them fails the run: validation reads every trace
    /// window beforehand, so this is unreachable unless the file changed since — but it is
    /// never silent.
    fn schedule_next_arrival(&mut self, class: u16) -> Result<(), RunFailure> {
        let cs = &mut self.classes[class as usize];
        if !cs.open {
            return Ok(());
        }
        let next = cs.gen.next_after(self.now);
        if next.is_none() {
            if let Some(e) = cs.gen.take_error() {
                return Err(RunFailure::Invariant(format!(
                    "workload[{class}] ({}): trace read failed during the run: {e}",
                    self.sc.classes[class as usize].name
                )));
            }
        }
        let within = match (next, self.sc.horizon.duration) {
            (Some(t), Some(d)) => t < SimTime::ZERO + d,
            (Some(_), None) => true,
            (None, _) => false,
        };
        match next {
            Some(t) if within => self.queue.push(t, Event::Arrival { class }),
            _ => self.close_class(class),
        }
        Ok(())
    }

    fn close_class(&mut self, class: u16) {
        let cs = &mut self.classes[class as usize];
        if !cs.open {
            return;
        }
        cs.open = false;
        self.open_classes -= 1;
        if self.open_classes == 0 {
            self.close_arrivals();
        }
    }

    /// Arrivals have stopped: fix the end of the measurement window and bound the drain.
    fn close_arrivals(&mut self) {
        for cs in &mut self.classes {
            if cs.open {
                cs.open = false;
            }
        }
        self.open_classes = 0;
        let end = match self.sc.horizon.duration {
            Some(d) if self.sc.horizon.max_requests.is_none_or(|m| self.arrivals < m) => {
                SimTime::ZERO + d
            }
            _ => self.now,
        };
        self.window_end = Some(end);
        if let Some(drain) = self.sc.horizon.drain {
            self.queue.push(end + drain, Event::DrainDeadline);
        }
    }

    fn on_arrival(&mut self, class: u16) -> Result<(), RunFailure> {
        if !self.classes[class as usize].open {
            return Ok(());
        }
        let mut hashes = std::mem::take(&mut self.trace_hashes);
        let gen = &mut self.classes[class as usize].gen;
        let d = gen.draw(&mut hashes);
        self.trace_hashes = hashes;
        let session = match gen.open_session(&d) {
            Some(s) => self.sessions.insert(s),
            None => NO_SESSION,
        };
        self.count_arrival(class, true)?;
        self.new_request(class, d, session)
    }

    /// A session's next turn is due.
    fn on_session_turn(&mut self, session: u32) -> Result<(), RunFailure> {
        let (class, d) = self.sessions.pending(session);
        if !self.turns_continue(class, self.now) {
            self.sessions.remove(session);
            return Ok(());
        }
        self.trace_hashes.clear();
        self.count_arrival(class, false)?;
        self.new_request(class, d, session)
    }

    /// Counts an arrival against the horizon; open-loop arrivals schedule their successor.
    fn count_arrival(&mut self, class: u16, open_loop: bool) -> Result<(), RunFailure> {
        self.arrivals += 1;
        if self.sc.horizon.max_requests == Some(self.arrivals) {
            self.close_arrivals();
        } else if open_loop {
            self.schedule_next_arrival(class)?;
        }
        if self.slab.live() >= self.sc.limits.max_in_flight {
            return Err(RunFailure::InFlightLimit(self.sc.limits.max_in_flight));
        }
        Ok(())
    }

    /// Routes and admits one request (the `arrivals`-th) drawn as `d`.
    fn new_request(&mut self, class: u16, d: Draws, session: u32) -> Result<(), RunFailure> {
        let index = self.arrivals - 1;
        let measured =
            index >= self.sc.warmup.requests && self.now >= SimTime::ZERO + self.sc.warmup.duration;
        if measured && self.window_start.is_none() {
            self.window_start = Some(self.now);
        }
        self.rec.all.arrivals += 1;
        if measured {
            self.rec.measured.arrivals += 1;
        }
        self.sample_load();
        let g = self.gateway.pick();
        if self.gateway.needs_hashes {
            let bs = self.gateway.block_size;
            if self.trace_hashes.is_empty() {
                crate::workload::prefix::block_hashes(
                    &d.prefix,
                    d.prompt_tokens,
                    bs,
                    &mut self.req_hashes,
                );
            } else {
                self.req_hashes.clear();
                self.req_hashes.extend(crate::workload::trace::expand_block_hashes(
                    &self.trace_hashes,
                    bs,
                    d.prompt_tokens,
                ));
            }
        }
        let view = RequestView {
            id: index,
            class,
            model: self.cluster.class_model_id[class as usize],
            prompt_tokens: d.prompt_tokens,
            session: if d.prefix.session_key != 0 {
                d.prefix.session_key
            } else {
                d.prefix.group_key
            },
            hashes: &self.req_hashes,
        };
        let Some(r) = self.gateway.route(g, &view, &self.cluster, self.now, measured) else {
            self.end_unadmitted(measured);
            self.session_over(session);
            return Ok(());
        };
        let llm = self.cluster.is_llm();
        let free = !llm && self.cluster.has_free_slot(r);
        if !llm && !free && self.cluster.queue_full(r) {
            self.gateway.release(
                g,
                &Completion {
                    id: index,
                    replica: r,
                    now: self.now,
                    first_token: None,
                    total: SimDuration::ZERO,
                    success: false,
                },
            );
            self.end_unadmitted(measured);
            self.session_over(session);
            return Ok(());
        }
        let h = self.slab.insert(Req {
            arrival: self.now,
            start: SimTime::ZERO,
            service_u: d.service_u,
            prompt_tokens: d.prompt_tokens,
            output_tokens: d.output_tokens,
            replica: r,
            gen: 0,
            class,
            phase: Phase::Queued,
            measured,
            first_token: SimTime::ZERO,
            has_first_token: false,
            local: 0,
            session,
            id: index,
            gateway: g,
        });
        if llm {
            let inc = Incoming {
                req: h,
                model: self.cluster.local_model(r, class),
                prompt: d.prompt_tokens.max(1),
                output: d.output_tokens.max(1),
                prefix: d.prefix,
                measured,
                priority: self.sc.classes[class as usize].priority,
            };
            match self.cluster.llm[r as usize].enqueue(&inc, &self.trace_hashes) {
                Ok(local) => self.slab.get_mut(h).local = local,
                Err(_why) => {
                    let _: NeverFits = _why;
                    self.rec.llm.rejected_never_fit += 1;
                    self.end_request(h, Outcome::Rejected);
                    self.cluster.sync_llm(r);
                    return Ok(());
                }
            }
            self.arm_timeout(class, h);
            self.kick(r);
            return Ok(());
        }
        self.arm_timeout(class, h);
        if free {
            self.start_service(r, h);
        } else {
            self.cluster.enqueue(r, h);
        }
        self.audit(r);
        Ok(())
    }

    fn window(&self) -> Window {
        Window { start: self.window_start, end: self.window_end }
    }

    /// Lets `llm` replica `r` start work if idle, then applies what happened.
    fn kick(&mut self, r: u32) {
        let w = self.window();
        let k = self.cluster.llm[r as usize].kick(self.now, w, &mut self.effects);
        self.after_llm(r, k);
    }

    fn on_iteration(&mut self, r: u32) {
        let w = self.window();
        let k = self.cluster.llm[r as usize].iteration_done(self.now, w, &mut self.effects);
        self.after_llm(r, k);
    }

    fn on_model_loaded(&mut self, r: u32) {
        let w = self.window();
        let k = self.cluster.llm[r as usize].load_done(self.now, w, &mut self.effects);
        self.after_llm(r, k);
    }

    /// Schedules what replica `r` asked for, applies its effects, and audits it.
    fn after_llm(&mut self, r: u32, k: Kick) {
        match k {
            Kick::Nothing => {}
            Kick::Iteration(t) => self.queue.push(t, Event::Iteration { replica: r }),
            Kick::Load(t) => self.queue.push(t, Event::ModelLoaded { replica: r }),
        }
        let mut effects = std::mem::take(&mut self.effects);
        for e in effects.drain(..) {
            self.apply_effect(r, e);
        }
        self.effects = effects;
        self.cluster.sync_llm(r);
        if self.gateway.needs_kv_events() {
            self.cluster.llm[r as usize].drain_kv_events(&mut self.kv_events);
            if !self.kv_events.is_empty() {
                self.gateway.publish_kv(self.now, r, &self.kv_events);
                self.kv_events.clear();
            }
        }
        if cfg!(debug_assertions) && self.cluster.llm[r as usize].check_kv().is_err() {
            self.viol.kv_conservation += 1;
        }
        self.audit(r);
    }

    fn apply_effect(&mut self, r: u32, e: Effect) {
        let now = self.now;
        match e {
            Effect::Started { req } => {
                let q = self.slab.get_mut(req);
                q.phase = Phase::InService;
                q.start = now;
                if q.measured {
                    let wait = now - q.arrival;
                    self.rec.queue_wait.record(wait);
                }
            }
            Effect::FirstToken { req, min_prefill } => {
                let q = self.slab.get_mut(req);
                q.first_token = now;
                q.has_first_token = true;
                let (id, gw) = (q.id, q.gateway);
                let q = *q;
                self.gateway.first_token(gw, &FirstToken { id, replica: r, now });
                let ttft = now - q.arrival;
                if ttft + SimDuration(1_000) < min_prefill {
                    self.viol.ttft_below_prefill += 1;
                }
                if q.measured {
                    self.rec.ttft.record(ttft);
                }
            }
            Effect::Done { req, generated } => {
                let Some(q) = self.slab.get(req).copied() else { return };
                let e2e = now - q.arrival;
                let ttft = q.first_token - q.arrival;
                if !q.has_first_token || q.start < q.arrival || q.first_token < q.start {
                    self.viol.causality += 1;
                }
                let tpot = (generated >= 2).then(|| {
                    SimDuration((now - q.first_token).as_nanos() / u64::from(generated - 1))
                });
                if tpot.is_some_and(|t| t < self.cluster.llm[r as usize].min_iteration()) {
                    self.viol.tpot_below_iteration += 1;
                }
                let slo = self.sc.classes[q.class as usize].slo;
                let met = slo.ttft.is_none_or(|s| ttft <= s)
                    && slo.tpot.is_none_or(|s| tpot.is_none_or(|t| t <= s));
                if q.measured {
                    self.rec.e2e.record(e2e);
                    if let Some(t) = tpot {
                        self.rec.tpot.record(t);
                    }
                    if met {
                        self.rec.llm.slo_met += 1;
                    }
                }
                if self.in_window() {
                    self.rec.window_completions += 1;
                    self.rec.llm.window_output_tokens += u64::from(generated);
                    if met {
                        self.rec.llm.window_goodput += 1;
                    }
                }
                self.end_request(req, Outcome::Completed);
            }
        }
    }

    fn in_window(&self) -> bool {
        self.window_start.is_some_and(|w| self.now >= w)
            && self.window_end.is_none_or(|e| self.now <= e)
    }

    /// A request that was refused before reaching any replica.
    fn end_unadmitted(&mut self, measured: bool) {
        self.rec.all.add(Outcome::Rejected);
        if measured {
            self.rec.measured.add(Outcome::Rejected);
            self.rec.no_first_token += 1;
        }
    }

    fn arm_timeout(&mut self, class: u16, h: ReqRef) {
        let cs = &mut self.classes[class as usize];
        let Some(t) = cs.timeout else { return };
        let deadline = self.now + t;
        cs.deadlines.push_back((deadline, h));
        if !cs.timer_armed {
            cs.timer_armed = true;
            self.queue.push(deadline, Event::TimeoutTick { class });
        }
    }

    #[inline]
    fn start_service(&mut self, r: u32, h: ReqRef) {
        let now = self.now;
        let req = self.slab.get_mut(h);
        req.phase = Phase::InService;
        req.start = now;
        let (u, class, arrival, measured) = (req.service_u, req.class, req.arrival, req.measured);
        self.cluster.in_service[r as usize] += 1;
        if measured {
            self.rec.queue_wait.record(now - arrival);
        }
        let service_s = self.cluster.service_law(r, class).quantile(u);
        let done = now + SimDuration::from_secs_f64(service_s);
        self.queue.push(done, Event::ServiceDone { req: h });
    }

    fn on_service_done(&mut self, h: ReqRef) {
        let Some(req) = self.slab.get(h) else {
            self.stale_events += 1;
            return;
        };
        let (r, arrival, start, measured) = (req.replica, req.arrival, req.start, req.measured);
        if start < arrival || self.now < start {
            self.viol.causality += 1;
        }
        self.cluster.in_service[r as usize] -= 1;
        if measured {
            self.rec.e2e.record(self.now - arrival);
        }
        if self.window_start.is_some_and(|w| self.now >= w)
            && self.window_end.is_none_or(|e| self.now <= e)
        {
            self.rec.window_completions += 1;
        }
        self.end_request(h, Outcome::Completed);
        self.pull_next(r);
    }

    /// Starts waiting requests on replica `r` while it has free slots.
    #[inline]
    fn pull_next(&mut self, r: u32) {
        while self.cluster.has_free_slot(r) {
            let Some(next) = self.cluster.waiting[r as usize].pop_front() else { break };
            if self.slab.get(next).is_some_and(|q| q.phase == Phase::Queued) {
                self.cluster.queued[r as usize] -= 1;
                self.start_service(r, next);
            }
        }
        self.audit(r);
    }

    /// Work-conservation check of replica `r` after a change to it.
    #[inline]
    fn audit(&mut self, r: u32) {
        if self.cluster.idle_with_work(r) {
            self.viol.work_conservation += 1;
        }
    }

    fn end_request(&mut self, h: ReqRef, outcome: Outcome) {
        let req = self.slab.remove(h);
        if req.session != NO_SESSION {
            self.continue_session(req.session, req.class, req.output_tokens, outcome);
        }
        let total = self.now - req.arrival;
        let success = outcome == Outcome::Completed;
        let first_token = if req.has_first_token {
            Some(req.first_token - req.arrival)
        } else {
            // Queue replicas deliver the response as one unit at completion.
            success.then_some(total)
        };
        self.gateway.release(
            req.gateway,
            &Completion {
                id: req.id,
                replica: req.replica,
                now: self.now,
                first_token,
                total,
                success,
            },
        );
        self.rec.all.add(outcome);
        if req.measured {
            self.rec.measured.add(outcome);
            if outcome != Outcome::Completed && !req.has_first_token {
                self.rec.no_first_token += 1;
            }
        }
    }

    /// A session turn ended: the user thinks and sends the next turn, unless the turn failed,
    /// the session is over, or the next turn would come after arrivals stop.
    fn continue_session(&mut self, session: u32, class: u16, answer_tokens: u32, outcome: Outcome) {
        if outcome != Outcome::Completed || !self.turns_continue(class, self.now) {
            self.sessions.remove(session);
            return;
        }
        let cs = &self.classes[class as usize];
        match cs.gen.next_turn(self.sessions.get_mut(session), answer_tokens) {
            Some((think, d)) if self.turns_continue(class, self.now + think) => {
                self.sessions.set_pending(session, class, d);
                self.queue.push(self.now + think, Event::SessionTurn { session });
            }
            _ => self.sessions.remove(session),
        }
    }

    /// Whether a session turn of `class` may be sent at `at`: before the horizon (a duration
    /// horizon lets open sessions run to its end even after the class's last new session), and
    /// never once `max_requests` arrivals are in.
    fn turns_continue(&self, class: u16, at: SimTime) -> bool {
        if self.sc.horizon.max_requests.is_some_and(|m| self.arrivals >= m) {
            return false;
        }
        match self.sc.horizon.duration {
            Some(d) => at < SimTime::ZERO + d,
            None => self.classes[class as usize].open,
        }
    }

    fn session_over(&mut self, session: u32) {
        if session != NO_SESSION {
            self.sessions.remove(session);
        }
    }

    fn on_timeout_tick(&mut self, class: u16) {
        loop {
            let cs = &mut self.classes[class as usize];
            let Some(&(deadline, h)) = cs.deadlines.front() else { break };
            let live = self.slab.get(h).map(|q| (q.phase, q.replica));
            if deadline > self.now && live.is_some() {
                break;
            }
            cs.deadlines.pop_front();
            let Some((phase, r)) = live else { continue };
            if self.cluster.is_llm() {
                self.abort_llm(h, r, Outcome::TimedOut);
                continue;
            }
            match phase {
                Phase::Queued => {
                    // The handle stays in the replica's FIFO as a tombstone.
                    self.cluster.queued[r as usize] -= 1;
                    self.end_request(h, Outcome::TimedOut);
                }
                Phase::InService => {
                    self.cluster.in_service[r as usize] -= 1;
                    self.end_request(h, Outcome::TimedOut);
                    self.pull_next(r);
                }
                Phase::Free => {}
            }
            self.audit(r);
        }
        let cs = &mut self.classes[class as usize];
        match cs.deadlines.front() {
            Some(&(deadline, _)) => self.queue.push(deadline, Event::TimeoutTick { class }),
            None => cs.timer_armed = false,
        }
    }

    /// Withdraws a live request from its `llm` replica and ends it with `outcome`.
    fn abort_llm(&mut self, h: ReqRef, r: u32, outcome: Outcome) {
        let w = self.window();
        let local = self.slab.get_mut(h).local;
        self.cluster.llm[r as usize].abort(local, self.now, w);
        self.end_request(h, outcome);
        self.kick(r);
    }

    /// Records one sample (O(replicas), once per interval) and schedules the next.
    fn on_sample(&mut self) {
        let Some(interval) = self.sc.timeseries_interval else { return };
        let done = self.rec.all.completed;
        self.samples.push(Sample {
            time: self.now,
            queued: self.cluster.queued.iter().map(|&q| u64::from(q)).sum(),
            in_service: self.cluster.in_service.iter().map(|&q| u64::from(q)).sum(),
            in_flight: self.slab.live(),
            completions_per_s: (done - self.completed_at_last_sample) as f64
                / interval.as_secs_f64(),
            kv_util: self.cluster.is_llm().then(|| {
                let e = &self.cluster.llm;
                e.iter()
                    .map(|r| {
                        f64::from(r.kv_allocated_blocks())
                            / f64::from(r.kv_capacity_blocks().max(1))
                    })
                    .sum::<f64>()
                    / e.len() as f64
            }),
        });
        self.completed_at_last_sample = done;
        if self.samples.len() < MAX_SAMPLES {
            self.queue.push(self.now + interval, Event::Sample);
        }
    }

    /// Samples the load imbalance across replicas (O(replicas)) as the first arrival after
    /// each [`LOAD_SAMPLE`] sees it — arrivals see time averages for Poisson traffic (PASTA),
    /// and the engine needs no extra events.
    #[inline]
    fn sample_load(&mut self) {
        if self.now < self.next_load_sample {
            return;
        }
        self.next_load_sample = self.now + LOAD_SAMPLE;
        if self.in_window() {
            if let Some(x) = self.gateway.imbalance() {
                self.rec.imbalance_sum += x;
                self.rec.imbalance_samples += 1;
            }
        }
    }

    /// Sums the replicas' counters into the recorder and checks their KV bookkeeping.
    fn collect_llm_stats(&mut self, window: SimDuration) {
        let w = self.window();
        let st = &mut self.rec.llm;
        st.enabled = true;
        let window_s = window.as_secs_f64();
        for (r, e) in self.cluster.llm.iter_mut().enumerate() {
            e.finish(self.now, w);
            if e.check_kv().is_err() {
                self.viol.kv_conservation += 1;
            }
            st.preemptions += e.stats.preemptions;
            st.cold_starts += e.stats.cold_starts;
            st.iterations += e.stats.iterations;
            st.prompt_tokens += e.stats.prompt_tokens;
            st.cached_prompt_tokens += e.stats.cached_prompt_tokens;
            st.kv_util_integral_s += e.stats.kv_util_integral_s;
            st.replica_window_s += window_s;
            st.gpu_hours += f64::from(self.cluster.gpus[r]) * window_s / 3600.0;
        }
    }

    fn on_drain_deadline(&mut self) {
        for h in self.slab.live_refs() {
            let req = self.slab.get_mut(h);
            let (phase, r, local) = (req.phase, req.replica, req.local);
            if self.cluster.is_llm() {
                let w = self.window();
                self.cluster.llm[r as usize].abort(local, self.now, w);
                self.cluster.sync_llm(r);
                self.end_request(h, Outcome::Unfinished);
                continue;
            }
            match phase {
                Phase::Queued => self.cluster.queued[r as usize] -= 1,
                Phase::InService => self.cluster.in_service[r as usize] -= 1,
                Phase::Free => {}
            }
            self.end_request(h, Outcome::Unfinished);
        }
    }

    fn finish(mut self, run_seed: u64) -> Result<RunOutput, RunFailure> {
        let start = self.window_start.unwrap_or(self.now);
        let end = self.window_end.unwrap_or(self.now).max(start);
        if self.cluster.is_llm() {
            self.collect_llm_stats(end - start);
        } else {
            // Queue replicas deliver the whole response at completion: TTFT = E2E.
            self.rec.ttft = self.rec.e2e.clone();
        }
        if self.slab.live() == 0 {
            self.viol.routing += self.gateway.leftover();
        }
        invariants::check(&self.rec, &self.viol, self.slab.live())
            .map_err(RunFailure::Invariant)?;
        self.rec.finalize();
        Ok(RunOutput {
            run_seed,
            recorder: self.rec,
            window: end - start,
            events: self.events,
            stale_events: self.stale_events,
            end_time: self.now,
            timeseries: self.samples,
            routed: std::mem::take(&mut self.gateway.routed),
            pool_of: self.cluster.pool_of.clone(),
            decisions: std::mem::take(&mut self.gateway.decisions),
        })
    }
}

#[cfg(test)]
mod llm_tests;
