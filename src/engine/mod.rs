//! The discrete-event engine: one run of one policy on one replication of a scenario.
//!
//! The loop pops the earliest event by `(time, rank, seq)`, advances the clock, and dispatches
//! it in the single `match` of `Sim::run`; the handlers live in the submodules, each for one
//! concern, and call into the mechanisms' own modules (gateway, faults, cluster):
//!
//! - `arrivals`: open-loop arrivals, closed-loop session turns, the horizon;
//! - `calls`: a request's way through the gateway — admission, routing, attempts, retries,
//!   hedges — to its single outcome, and what is recorded then;
//! - `serve`: attempts at replicas — `queue` service and the `llm` engines' effects;
//! - `deadlines`: client timeouts (total, time to first token), per-try timeouts and gateway
//!   queue timeouts as FIFOs of deadlines, one pending tick each;
//! - `failures`: fault windows opening and closing — crashes, hangs, slowdowns, errors,
//!   partitions — and crash recovery;
//! - `probes`: gateway timers (active health probes, outlier-detection intervals, breaker
//!   and passive-health windows) and Kubernetes readiness probes.
//!
//! Per-event work is O(1) amortised plus the router's and mechanisms' own cost: no handler
//! scans all replicas or all requests, except rare events (a crash or hang scans the requests
//! in flight once; the drain deadline once per run). Requests live in slabs (calls and their
//! attempts) and every call ends in exactly one [`Outcome`]. Limits (events, requests in
//! flight) end a runaway run with a [`RunFailure`]; invariants are checked at the end.

mod arrivals;
mod autoscale;
mod calls;
mod deadlines;
pub mod event;
mod failures;
mod hold;
mod probes;
pub mod queue;
pub mod request;
mod serve;

use crate::cluster::Cluster;
use crate::error::RunFailure;
use crate::faults::state::FaultState;
use crate::faults::{FaultPlan, FaultWindow};
use crate::gateway::{Decision, Gateways};
use crate::metrics::groups::Groups;
use crate::metrics::invariants::{self, Violations};
use crate::metrics::{Outcome, Recorder};
use crate::policy::routing::BuildCtx;
use crate::rng;
use crate::scenario::{AutoscalerSpec, PolicySpec, Scenario};
use crate::time::{SimDuration, SimTime};
use crate::workload::{ClassGen, Draws, Session};
use deadlines::Deadlines;
use event::Event;
use queue::EventQueue;
use request::{Calls, Slab};

/// What one run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The run seed.
    pub run_seed: u64,
    /// Counters and latency distributions of the whole run.
    pub recorder: Recorder,
    /// The same per group (class, tenant, tier, pool), with their labels.
    pub groups: Vec<(String, Recorder)>,
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
    /// Per-replica health state at each sample (replica-major within a sample; empty if not
    /// enabled).
    pub health: Vec<HealthSample>,
    /// Measured requests routed to each replica.
    pub routed: Vec<u64>,
    /// Pool of each replica.
    pub pool_of: Vec<u16>,
    /// Replica names (`pool-index`).
    pub replica_names: Vec<String>,
    /// Traced routing decisions (`--trace-decisions`).
    pub decisions: Vec<Decision>,
    /// Fault windows that opened during the run.
    pub faults: Vec<FaultWindow>,
    /// Nanoseconds each replica spent in each lifecycle state over the whole run
    /// ([`crate::cluster::Lifecycle::ALL`] order); each row sums to `end_time`.
    pub replica_state_ns: Vec<[u64; 7]>,
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
    /// Requests in flight (arrived, not ended).
    pub in_flight: u64,
    /// Completions per second since the previous sample.
    pub completions_per_s: f64,
    /// Mean over `llm` replicas of KV blocks in use / capacity (`None` for queue clusters).
    pub kv_util: Option<f64>,
    /// Requests admitted by the gateways per second since the previous sample.
    pub admitted_per_s: f64,
    /// Requests refused (429/408/no candidate) per second since the previous sample.
    pub rejected_per_s: f64,
    /// Requests ended with an error or a crash per second since the previous sample.
    pub errors_per_s: f64,
    /// Requests waiting in gateway queues.
    pub gateway_queued: u64,
    /// Replicas excluded from routing by some gateway instance's health view (down or not).
    pub ejected: u64,
    /// Replicas provisioning, loading their model, ready, draining.
    pub replicas: [u32; 4],
    /// Replicas down (crashed or recovering).
    pub down: u64,
    /// Requests arriving (new requests and session turns) per second since the previous
    /// sample: the offered load.
    pub arrivals_per_s: f64,
    /// Nearest-rank p95 of the TTFTs of the first tokens clients received since the previous
    /// sample, in ms (queue replicas: of the responses); `None` when none arrived.
    pub ttft_p95_ms: Option<f64>,
}

/// A replica's state at a sample, as the run's health view has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSample {
    /// When.
    pub time: SimTime,
    /// Replica.
    pub replica: u32,
    /// State.
    pub state: HealthState,
}

/// The states a replica can be in, as reported in `health.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Serving and routable.
    Ready,
    /// Serving, but gateway 0 sends it no new work (KV use above the degraded threshold).
    Degraded,
    /// Alive, but excluded from routing by gateway 0's health view.
    Ejected,
    /// Down (crashed).
    Failed,
    /// Restarting and loading its model after a crash, or starting after a scale-up.
    Recovering,
    /// Draining after a scale-down.
    Draining,
    /// Not provisioned (an autoscaler's empty slot).
    Off,
}

impl HealthState {
    /// The state's name in outputs.
    pub fn name(self) -> &'static str {
        match self {
            HealthState::Ready => "ready",
            HealthState::Degraded => "degraded",
            HealthState::Ejected => "ejected",
            HealthState::Failed => "failed",
            HealthState::Recovering => "recovering",
            HealthState::Draining => "draining",
            HealthState::Off => "off",
        }
    }
}

/// Period of the load-imbalance samples.
pub const LOAD_SAMPLE: SimDuration = SimDuration::from_millis(100);

/// Most samples kept per run; sampling stops beyond it.
pub const MAX_SAMPLES: usize = 200_000;

struct ClassState {
    gen: ClassGen,
    open: bool,
}

/// Counters behind the per-second rates of the time series.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    arrivals: u64,
    completed: u64,
    admitted: u64,
    rejected: u64,
    errors: u64,
}

/// The state of one run.
pub struct Sim<'a> {
    sc: &'a Scenario,
    policy: &'a PolicySpec,
    now: SimTime,
    queue: EventQueue,
    classes: Vec<ClassState>,
    slab: Slab,
    calls: Calls,
    cluster: Cluster,
    gateway: Gateways,
    kv_events: Vec<(u64, bool)>,
    req_hashes: Vec<u64>,
    next_load_sample: SimTime,
    rec: Recorder,
    groups: Groups,
    viol: Violations,
    arrivals: u64,
    open_classes: usize,
    window_start: Option<SimTime>,
    window_end: Option<SimTime>,
    events: u64,
    stale_events: u64,
    samples: Vec<Sample>,
    health_samples: Vec<HealthSample>,
    tally: Tally,
    tally_at_sample: Tally,
    /// TTFTs (ns) of the first tokens clients received since the previous sample (kept only
    /// with a time series).
    sample_ttft_ns: Vec<u64>,
    llm_effects: Vec<crate::cluster::llm::Effect>,
    trace_hashes: Vec<u64>,
    sessions: Sessions,
    deadlines: Deadlines,
    faults: FaultPlan,
    fault_state: FaultState,
    /// When each `llm` replica's pending iteration ends (`MAX`: none); an `Iteration` event
    /// is current only at exactly this time.
    iter_due: Vec<SimTime>,
    /// When each `llm` replica's model load ends (`MAX`: none).
    load_due: Vec<SimTime>,
    /// When each crashed replica is ready again (`MAX`: not recovering).
    recover_due: Vec<SimTime>,
    /// Time-to-first-token samples `(arrival, ttft)` near fault windows (for time to
    /// recover); `ttft` is `MAX` for requests that never produced one.
    fault_ttft: Vec<(SimTime, SimDuration)>,
    /// First ejection of each fault window's replica after the window opened.
    detections: Vec<Option<SimTime>>,
    timers: Vec<(SimTime, crate::gateway::Timer)>,
    exclusions: Vec<(SimTime, u32)>,
    /// Inside [`Sim::pump_gateway`] (it does not re-enter).
    pumping: bool,
    /// The drain deadline passed: no more dispatches.
    closed: bool,
    /// The run's autoscaler and its pool (`None`: fixed).
    scaling: Option<autoscale::Scaling>,
    /// The activator holding the scaled pool's requests at zero ready pods.
    activator: Option<crate::gateway::activator::Activator>,
    /// Replicas the scaled pool starts with.
    scaled_initial: u32,
    /// Provisioned nanoseconds of each replica when the measurement window opened / closed.
    provisioned_at_start: Vec<u64>,
    provisioned_at_end: Vec<u64>,
    /// When the end-of-window snapshot of provisioned time is due (`MAX`: none pending). A
    /// duration horizon closes arrivals at the last arrival before it, but the window runs to
    /// the horizon: the snapshot is taken when the clock first reaches it (or at the end of
    /// the run), from the state in between, which no event changes.
    provisioned_snapshot_due: SimTime,
}

/// `CallInfo::session` of a request outside any session.
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

/// The faults of `sc` with replica ids renumbered for pools grown to `sizes` (`None`: no
/// pool grew).
fn remap_faults(
    faults: &[crate::spec::faults::FaultSpec],
    pools: &[crate::spec::PoolSpec],
    sizes: &[u32],
) -> Option<Vec<crate::spec::faults::FaultSpec>> {
    use crate::spec::faults::FaultTarget;
    if faults.is_empty() || pools.iter().zip(sizes).all(|(p, n)| p.replicas == *n) {
        return None;
    }
    // Old first id of each pool -> new first id.
    let mut old_first = Vec::with_capacity(pools.len());
    let mut new_first = Vec::with_capacity(pools.len());
    let (mut o, mut n) = (0u32, 0u32);
    for (p, &size) in pools.iter().zip(sizes) {
        old_first.push(o);
        new_first.push(n);
        o += p.replicas;
        n += size;
    }
    let map = |r: u32| -> u32 {
        let i = old_first.iter().rposition(|&f| f <= r).unwrap_or(0);
        new_first[i] + (r - old_first[i])
    };
    Some(
        faults
            .iter()
            .map(|f| {
                let target = match &f.target {
                    FaultTarget::Replicas(rs) => {
                        FaultTarget::Replicas(rs.iter().map(|&r| map(r)).collect())
                    }
                    FaultTarget::Pick { first, size, count } => {
                        FaultTarget::Pick { first: map(*first), size: *size, count: *count }
                    }
                };
                crate::spec::faults::FaultSpec { target, ..f.clone() }
            })
            .collect(),
    )
}

/// Runs `policy` on replication `replication` of `sc`.
pub fn run(sc: &Scenario, policy: &PolicySpec, replication: u32) -> Result<RunOutput, RunFailure> {
    run_scaled(sc, policy, &sc.autoscalers[0], replication)
}

/// Runs `policy` with `autoscaler` on replication `replication` of `sc`.
pub fn run_scaled(
    sc: &Scenario,
    policy: &PolicySpec,
    autoscaler: &AutoscalerSpec,
    replication: u32,
) -> Result<RunOutput, RunFailure> {
    let run_seed = rng::run_seed(sc.seed, replication);
    let mut sim = Sim::new(sc, policy, autoscaler, run_seed)?;
    sim.run()?;
    sim.finish(run_seed)
}

impl<'a> Sim<'a> {
    fn new(
        sc: &'a Scenario,
        policy: &'a PolicySpec,
        autoscaler: &AutoscalerSpec,
        run_seed: u64,
    ) -> Result<Sim<'a>, RunFailure> {
        // The scaled pool is built at its maximum; the slots beyond its replicas start Off.
        let sizes = autoscale::pool_sizes(sc, autoscaler);
        let grown: Vec<crate::spec::PoolSpec>;
        let pools: &[crate::spec::PoolSpec] =
            if sizes.iter().zip(&sc.pools).any(|(n, p)| *n != p.replicas) {
                grown = sc
                    .pools
                    .iter()
                    .zip(&sizes)
                    .map(|(p, &n)| crate::spec::PoolSpec { replicas: n, ..p.clone() })
                    .collect();
                &grown
            } else {
                &sc.pools
            };
        let mut cluster = Cluster::new(pools, &sc.classes);
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
        let mut gateway = Gateways::new(&policy.gateway, routers, &cluster, &sc.classes, run_seed);
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
                    open: true,
                })
            })
            .collect::<Result<Vec<_>, RunFailure>>()?;
        let n = cluster.len();
        let (scaling, scaled_initial) = match autoscaler.pool {
            Some(p) => {
                let first: u32 = sizes[..p as usize].iter().sum();
                let s = autoscale::Scaling::new(
                    sc,
                    &cluster,
                    autoscaler,
                    first,
                    sizes[p as usize],
                    run_seed,
                )
                .map_err(|e| RunFailure::Invariant(format!("autoscaler failed to build: {e}")))?;
                (s, autoscaler.start.unwrap_or(sc.pools[p as usize].replicas))
            }
            None => (None, 0),
        };
        let activator = autoscaler.activator.zip(autoscaler.pool).map(|(t, p)| {
            crate::gateway::activator::Activator::new(cluster.served_models(p).to_vec(), t)
        });
        let remapped = remap_faults(&sc.faults, &sc.pools, &sizes);
        let (faults, first_faults) =
            FaultPlan::new(remapped.as_deref().unwrap_or(&sc.faults), run_seed);
        let groups = Groups::new(&sc.classes, &sc.pools);
        let deadlines = Deadlines::new(sc, policy);
        let mut sim = Sim {
            sc,
            policy,
            now: SimTime::ZERO,
            queue: EventQueue::new(),
            classes,
            slab: Slab::new(),
            calls: Calls::default(),
            cluster,
            gateway,
            kv_events: Vec::new(),
            req_hashes: Vec::new(),
            next_load_sample: SimTime::ZERO + LOAD_SAMPLE,
            rec: Recorder::default(),
            groups,
            viol: Violations::default(),
            arrivals: 0,
            open_classes: sc.classes.len(),
            window_start: None,
            window_end: None,
            events: 0,
            stale_events: 0,
            samples: Vec::new(),
            health_samples: Vec::new(),
            tally: Tally::default(),
            tally_at_sample: Tally::default(),
            sample_ttft_ns: Vec::new(),
            llm_effects: Vec::new(),
            trace_hashes: Vec::new(),
            sessions: Sessions::default(),
            deadlines,
            faults,
            fault_state: FaultState::new(n, run_seed),
            iter_due: vec![SimTime::MAX; n],
            load_due: vec![SimTime::MAX; n],
            recover_due: vec![SimTime::MAX; n],
            fault_ttft: Vec::new(),
            detections: Vec::new(),
            timers: Vec::new(),
            exclusions: Vec::new(),
            pumping: false,
            closed: false,
            activator,
            scaling,
            scaled_initial,
            provisioned_at_start: Vec::new(),
            provisioned_at_end: Vec::new(),
            provisioned_snapshot_due: SimTime::MAX,
        };
        sim.start_scaling();
        for (t, track) in first_faults {
            sim.queue.push(t, Event::Fault { track });
        }
        Ok(sim)
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
        self.gateway.start_timers();
        self.flush_timers();
        let max_events = self.sc.limits.max_events;
        while let Some((t, ev)) = self.queue.pop() {
            if t < self.now {
                self.viol.clock += 1;
            }
            if t >= self.provisioned_snapshot_due {
                self.take_due_snapshot();
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
                Event::Deadline { class, kind } => self.on_deadline(class, kind),
                Event::GatewayDeadline { gateway } => self.on_gateway_deadline(gateway),
                Event::AttemptEnd { req } => self.on_attempt_end(req),
                Event::Retry { call } => self.on_retry(call),
                Event::Fault { track } => self.on_fault(track),
                Event::Recovered { replica } => self.on_recovered(replica),
                Event::GatewayTimer { gateway, replica, kind } => {
                    self.on_gateway_timer(gateway, replica, kind)
                }
                Event::Readiness { replica } => self.on_readiness_probe(replica),
                Event::Endpoint { replica, ready } => self.on_endpoint(replica, ready),
                Event::Sample => self.on_sample(),
                Event::Scrape { gateway } => {
                    let next = self.gateway.scrape(gateway, &self.cluster, self.now);
                    self.queue.push(next, Event::Scrape { gateway });
                }
                Event::DrainDeadline => {
                    self.on_drain_deadline();
                    break;
                }
                Event::Autoscale => self.on_autoscale(),
                Event::MetricScrape => self.on_metric_scrape(),
                Event::Provisioned { replica } => self.on_provisioned(replica),
                Event::GraceEnd { replica } => self.on_grace_end(replica),
                Event::DrainPoll => self.on_drain_poll(),
                Event::HoldExpired { call } => self.on_hold_expired(call),
            }
            self.flush_timers();
            if self.open_classes == 0 && self.calls.live() == 0 && self.sessions.live() == 0 {
                break;
            }
        }
        Ok(())
    }

    /// Pushes the timers mechanisms asked for into the event queue, and notes exclusions for
    /// the time-to-detect metric.
    #[inline]
    fn flush_timers(&mut self) {
        if self.gateway.has_pending() {
            self.flush_timers_now();
        }
    }

    fn flush_timers_now(&mut self) {
        use crate::gateway::Timer;
        self.gateway.take_timers(&mut self.timers);
        for (t, timer) in self.timers.drain(..) {
            let e = match timer {
                Timer::Gateway { gateway, replica, kind } => {
                    Event::GatewayTimer { gateway, replica, kind: kind as u8 }
                }
                Timer::Readiness { replica } => Event::Readiness { replica },
            };
            self.queue.push(t, e);
        }
        self.gateway.take_exclusions(&mut self.exclusions);
        if !self.exclusions.is_empty() {
            let ex = std::mem::take(&mut self.exclusions);
            if !self.faults.is_empty() {
                for &(t, r) in &ex {
                    self.note_exclusion(r, t);
                }
            }
            self.exclusions = ex;
            self.exclusions.clear();
        }
    }

    /// Snapshots every replica's provisioned time when the measurement window opens
    /// (`start`) or closes, for GPU-hours over the window.
    fn snapshot_provisioned(&mut self, start: bool) {
        self.snapshot_provisioned_at(start, self.now);
    }

    /// The snapshot of [`Self::snapshot_provisioned`] as of `at` (≥ the last lifecycle change).
    fn snapshot_provisioned_at(&mut self, start: bool, at: SimTime) {
        let v: Vec<u64> =
            (0..self.cluster.len() as u32).map(|r| self.cluster.provisioned_ns(r, at)).collect();
        if start {
            self.provisioned_at_start = v;
        } else {
            self.provisioned_at_end = v;
        }
    }

    /// Provisioned seconds of replica `r` within the measurement window.
    fn provisioned_in_window_s(&self, r: usize) -> f64 {
        let a = self.provisioned_at_start.get(r).copied().unwrap_or(0);
        let b = match self.provisioned_at_end.get(r) {
            Some(&b) => b,
            None => self.cluster.provisioned_ns(r as u32, self.now),
        };
        b.saturating_sub(a) as f64 / 1e9
    }

    fn window(&self) -> crate::cluster::llm::Window {
        crate::cluster::llm::Window { start: self.window_start, end: self.window_end }
    }

    fn in_window(&self) -> bool {
        self.window_start.is_some_and(|w| self.now >= w)
            && self.window_end.is_none_or(|e| self.now <= e)
    }

    /// Records one sample (O(replicas), once per interval) and schedules the next.
    fn on_sample(&mut self) {
        let Some(interval) = self.sc.timeseries_interval else { return };
        let per_s = |a: u64, b: u64| (a - b) as f64 / interval.as_secs_f64();
        let (t, p) = (self.tally, self.tally_at_sample);
        let down = (0..self.cluster.len() as u32).filter(|&r| self.cluster.is_down(r)).count();
        let ejected =
            (0..self.cluster.len() as u32).filter(|&r| self.gateway.excluded_anywhere(r)).count();
        let mut replicas = [0u32; 4];
        for s in &self.cluster.lifecycle {
            use crate::cluster::Lifecycle as L;
            match s {
                L::Provisioning => replicas[0] += 1,
                L::Loading => replicas[1] += 1,
                L::Ready => replicas[2] += 1,
                L::Draining => replicas[3] += 1,
                _ => {}
            }
        }
        self.samples.push(Sample {
            time: self.now,
            queued: self.cluster.queued.iter().map(|&q| u64::from(q)).sum(),
            in_service: self.cluster.in_service.iter().map(|&q| u64::from(q)).sum(),
            in_flight: self.calls.live(),
            completions_per_s: per_s(t.completed, p.completed),
            kv_util: self.cluster.is_llm().then(|| {
                // Over the provisioned replicas (an autoscaler's empty slots hold nothing).
                let on = |i: &usize| self.cluster.lifecycle[*i] != crate::cluster::Lifecycle::Off;
                let e = &self.cluster.llm;
                let n = (0..e.len()).filter(on).count().max(1);
                (0..e.len())
                    .filter(on)
                    .map(|i| {
                        f64::from(e[i].kv_allocated_blocks())
                            / f64::from(e[i].kv_capacity_blocks().max(1))
                    })
                    .sum::<f64>()
                    / n as f64
            }),
            admitted_per_s: per_s(t.admitted, p.admitted),
            rejected_per_s: per_s(t.rejected, p.rejected),
            errors_per_s: per_s(t.errors, p.errors),
            gateway_queued: self.gateway.queued_total(),
            ejected: ejected as u64,
            down: down as u64,
            replicas,
            arrivals_per_s: per_s(t.arrivals, p.arrivals),
            ttft_p95_ms: nearest_rank_p95(&mut self.sample_ttft_ns).map(|ns| ns as f64 / 1e6),
        });
        self.sample_ttft_ns.clear();
        if self.sc.health_timeseries {
            for r in 0..self.cluster.len() as u32 {
                let state = self.health_state(r);
                self.health_samples.push(HealthSample { time: self.now, replica: r, state });
            }
        }
        self.tally_at_sample = self.tally;
        if self.samples.len() < MAX_SAMPLES {
            self.queue.push(self.now + interval, Event::Sample);
        }
    }

    /// Notes a first token the client received `ttft` after its request arrived, for the
    /// time series' per-sample p95.
    #[inline]
    fn note_sample_ttft(&mut self, ttft: SimDuration) {
        if self.sc.timeseries_interval.is_some() {
            self.sample_ttft_ns.push(ttft.as_nanos());
        }
    }

    /// The state of replica `r` for `health.csv`: its true life state when down, else what
    /// gateway instance 0 makes of it.
    fn health_state(&self, r: u32) -> HealthState {
        use crate::cluster::Lifecycle;
        match self.cluster.lifecycle[r as usize] {
            Lifecycle::Failed => HealthState::Failed,
            Lifecycle::Recovering | Lifecycle::Provisioning | Lifecycle::Loading => {
                HealthState::Recovering
            }
            Lifecycle::Off => HealthState::Off,
            Lifecycle::Draining => HealthState::Draining,
            _ if self.gateway.excluded(0, r) => HealthState::Ejected,
            _ if self.gateway.degraded(0, r) => HealthState::Degraded,
            _ => HealthState::Ready,
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

    /// Sums the replicas' counters into the recorders and checks their KV bookkeeping.
    fn collect_llm_stats(&mut self, window: SimDuration) {
        let w = self.window();
        let window_s = window.as_secs_f64();
        self.rec.llm.enabled = true;
        let prov_s: Vec<f64> =
            (0..self.cluster.len()).map(|r| self.provisioned_in_window_s(r)).collect();
        for (r, e) in self.cluster.llm.iter_mut().enumerate() {
            e.finish(self.now, w);
            if e.check_kv().is_err() {
                self.viol.kv_conservation += 1;
            }
            let pool = self.cluster.pool_of[r];
            for st in std::iter::once(&mut self.rec.llm).chain(self.groups.pool_llm(pool)) {
                st.enabled = true;
                st.preemptions += e.stats.preemptions;
                st.cold_starts += e.stats.cold_starts;
                st.iterations += e.stats.iterations;
                st.prompt_tokens += e.stats.prompt_tokens;
                st.cached_prompt_tokens += e.stats.cached_prompt_tokens;
                st.kv_util_integral_s += e.stats.kv_util_integral_s;
                st.replica_window_s += window_s;
                let gpu_h = f64::from(self.cluster.gpus[r]) * prov_s[r] / 3600.0;
                st.gpu_hours += gpu_h;
                st.cost_usd += gpu_h * self.sc.pools[pool as usize].lifecycle.gpu_hour_usd;
            }
        }
    }

    fn on_drain_deadline(&mut self) {
        // The run is over: nothing is dispatched from a gateway queue any more (ending a call
        // frees a concurrency token), so every call still live ends `unfinished`, once.
        self.closed = true;
        for h in self.calls.live_refs() {
            if self.calls.get(h).is_some() {
                self.end_call_cancelling(h.idx, Outcome::Unfinished);
            }
        }
    }

    /// Takes the pending end-of-window snapshot (see `provisioned_snapshot_due`).
    fn take_due_snapshot(&mut self) {
        let due = std::mem::replace(&mut self.provisioned_snapshot_due, SimTime::MAX);
        self.snapshot_provisioned_at(false, due);
    }

    fn finish(mut self, run_seed: u64) -> Result<RunOutput, RunFailure> {
        if self.provisioned_snapshot_due != SimTime::MAX {
            self.take_due_snapshot();
        }
        let start = self.window_start.unwrap_or(self.now);
        let end = self.window_end.unwrap_or(self.now).max(start);
        if self.cluster.is_llm() {
            self.collect_llm_stats(end - start);
        }
        self.rec.replica_s = (0..self.cluster.len()).map(|r| self.provisioned_in_window_s(r)).sum();
        self.rec.scale_events = self.scaling.as_ref().map_or(0, |s| s.changes);
        if self.slab.live() == 0 && self.calls.live() == 0 {
            self.viol.routing += self.gateway.leftover();
        }
        invariants::check(&self.rec, &self.viol, self.calls.live() + self.slab.live())
            .map_err(RunFailure::Invariant)?;
        self.rec.fault = self.fault_metrics();
        self.rec.ejections = self.gateway.ejections;
        let llm = self.cluster.is_llm();
        self.rec.finalize_run(llm);
        let groups = self.groups.finish(llm);
        let replica_names = self.cluster.replica_names(&self.sc.pools);
        let replica_state_ns = (0..self.cluster.len() as u32)
            .map(|r| self.cluster.lifecycle_ns(r, self.now))
            .collect();
        Ok(RunOutput {
            run_seed,
            recorder: self.rec,
            groups,
            window: end - start,
            events: self.events,
            stale_events: self.stale_events,
            end_time: self.now,
            timeseries: self.samples,
            health: self.health_samples,
            routed: std::mem::take(&mut self.gateway.routed),
            pool_of: self.cluster.pool_of.clone(),
            replica_names,
            decisions: std::mem::take(&mut self.gateway.decisions),
            faults: std::mem::take(&mut self.faults.windows),
            replica_state_ns,
        })
    }
}

/// The nearest-rank 95th percentile of `v` (reordered; `None` when empty): the value at rank
/// ⌈0.95 n⌉, as the autoscalers' TTFT signal.
fn nearest_rank_p95(v: &mut [u64]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let k = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some(*v.select_nth_unstable(k).1)
}

#[cfg(test)]
mod llm_tests;
