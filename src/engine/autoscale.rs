//! The engine side of autoscaling: the target pool's pods, their metrics as scraped, and what
//! a decision does to them.
//!
//! The pool is pre-allocated to the autoscaler's maximum: replicas beyond its `replicas:`
//! start `Off` (no machine, no cost) and are filled lowest id first. A scale-up starts a
//! pod: `Provisioning` for the pool's `provision_s` + `image_pull_s` (Kubernetes `Pending`),
//! then `Loading` for its model load (the `llm` pool's `cold_start`, a queue pool's
//! `load_s`; Running, not Ready, exporting no metrics), then `Ready` and routable (after
//! Kubernetes readiness, when configured). A scale-down picks its victims as a ReplicaSet
//! does (`controller.ActivePods` ranking: not-ready pods before ready ones, then the newest
//! first): a pod not yet ready is deleted at once; a ready one is `Draining` — out of the
//! endpoints at once, its in-flight requests finish — and is terminated when it is empty or
//! when `terminationGracePeriodSeconds` (the pool's `termination_grace_s`, 30) runs out;
//! then whatever it still holds ends with a reset (retried by the client's retry policy, or
//! `failed`). A terminated replica is `Off` again with an empty KV cache.
//!
//! Metrics: every scrape interval each Ready pod of the pool is sampled (the gauges
//! `vllm:num_requests_waiting` = waiting requests, `vllm:num_requests_running` = requests in
//! service, `vllm:kv_cache_usage_perc`, concurrency = both; `DCGM_FI_DEV_GPU_UTIL` = 100 if
//! the replica has work in service at the scrape, DCGM's last ~1 s sample; the request rate =
//! measured requests routed to it since the previous scrape per second). The autoscaler reads
//! each pod's samples reduced over its query's range (`avg_over_time` / `max_over_time`; range
//! 0: the latest sample if it is at most two scrapes old) — so staleness is part of the
//! result. GPU-hours count every replica-second in a state other than `Off`.

use super::{Event, Sim};
use crate::cluster::{Cluster, Lifecycle};
use crate::policy::autoscale::{
    AutoscaleCtx, Autoscaler, MetricQuery, PodPhase, PodView, PoolSignals, ScaleInput, SimMetric,
    MAX_METRICS,
};
use crate::rng::Stream;
use crate::scenario::{AutoscalerSpec, Scenario};
use crate::spec::pool::Lifecycle as PoolLifecycle;
use crate::time::{SimDuration, SimTime};
use std::collections::VecDeque;

/// How often draining replicas are checked for being empty.
const DRAIN_POLL: SimDuration = SimDuration::from_secs(1);

/// One pod slot of the target pool.
#[derive(Debug, Clone)]
struct Member {
    /// Global replica id.
    replica: u32,
    /// When its pod was created.
    created: SimTime,
    /// When its provisioning ends (`MAX`: not provisioning).
    provisioned_at: SimTime,
    /// When its drain's grace period ends (`MAX`: not draining).
    grace_end: SimTime,
    /// Scrapes: time and the value of each query's metric.
    samples: VecDeque<(SimTime, [f64; MAX_METRICS])>,
    /// Measured requests routed to it at the previous scrape.
    routed_then: u64,
}

/// The autoscaler of a run and its pool.
pub(super) struct Scaling {
    scaler: Box<dyn Autoscaler>,
    members: Vec<Member>,
    queries: Vec<MetricQuery>,
    scrape: SimDuration,
    keep: SimDuration,
    lifecycle: PoolLifecycle,
    rng: Stream,
    polling: bool,
    pods: Vec<PodView>,
    /// The scaled pool and the models it serves.
    pool: u16,
    models: Vec<u16>,
    /// Gateway-level signals since the previous decision.
    window: PoolWindow,
    /// When the previous decision was taken.
    last_decision: SimTime,
    /// Decisions that changed `spec.replicas`.
    pub changes: u64,
}

/// What the gateway saw of the pool since the previous decision.
#[derive(Debug, Default)]
struct PoolWindow {
    arrived: u32,
    ttft_s: Vec<f64>,
    tpot_sum_s: f64,
    tpot_n: u32,
    completed: u32,
}

impl PoolWindow {
    /// The signals over `interval_s`, emptying the window.
    fn take(&mut self, interval_s: f64, held: u32) -> PoolSignals {
        let n = self.ttft_s.len();
        let (mean, p95) = if n == 0 {
            (None, None)
        } else {
            self.ttft_s.sort_by(f64::total_cmp);
            // Nearest rank, as the report's quantiles.
            let k = ((0.95 * n as f64).ceil() as usize).clamp(1, n) - 1;
            (Some(self.ttft_s.iter().sum::<f64>() / n as f64), Some(self.ttft_s[k]))
        };
        let out = PoolSignals {
            held,
            arrival_rate_per_s: if interval_s > 0.0 {
                f64::from(self.arrived) / interval_s
            } else {
                0.0
            },
            completed: self.completed,
            ttft_mean_s: mean,
            ttft_p95_s: p95,
            tpot_mean_s: (self.tpot_n > 0).then(|| self.tpot_sum_s / f64::from(self.tpot_n)),
            interval_s,
        };
        self.arrived = 0;
        self.ttft_s.clear();
        self.tpot_sum_s = 0.0;
        self.tpot_n = 0;
        self.completed = 0;
        out
    }
}

/// The replicas each pool is built with for autoscaler `a`: its maximum for the scaled pool.
pub(super) fn pool_sizes(sc: &Scenario, a: &AutoscalerSpec) -> Vec<u32> {
    sc.pools
        .iter()
        .enumerate()
        .map(|(i, p)| match a.pool {
            Some(q) if q as usize == i => p.replicas.max(a.bounds.1).max(a.start.unwrap_or(0)),
            _ => p.replicas,
        })
        .collect()
}

impl Scaling {
    /// Builds autoscaler `a` for a run; `first` is the scaled pool's first replica id.
    pub(super) fn new(
        sc: &Scenario,
        cluster: &Cluster,
        a: &AutoscalerSpec,
        first: u32,
        size: u32,
        run_seed: u64,
    ) -> Result<Option<Scaling>, String> {
        let Some(pool) = a.pool else { return Ok(None) };
        let names: Vec<String> = sc.pools.iter().map(|p| p.name.clone()).collect();
        let mut initial: Vec<u32> = sc.pools.iter().map(|p| p.replicas).collect();
        initial[pool as usize] = a.start.unwrap_or(initial[pool as usize]);
        // Each pool's first replica id, its mean startup and replica-hour price.
        let mut firsts = Vec::with_capacity(sc.pools.len());
        let mut r = 0u32;
        for (i, p) in sc.pools.iter().enumerate() {
            firsts.push(r);
            r += if i == pool as usize { size } else { p.replicas };
        }
        let startup: Vec<SimDuration> = sc
            .pools
            .iter()
            .zip(&firsts)
            .map(|(p, &f)| {
                let lc = &p.lifecycle;
                let provision =
                    lc.provision_s.as_ref().map_or(0.0, |d| d.mean_unclamped().max(0.0));
                let load = if cluster.is_llm() && (f as usize) < cluster.len() {
                    cluster.cold_start(f)
                } else {
                    lc.load
                };
                SimDuration::from_secs_f64(provision) + lc.image_pull + load
            })
            .collect();
        let price: Vec<f64> = sc
            .pools
            .iter()
            .zip(&firsts)
            .map(|(p, &f)| {
                let gpus = cluster.gpus.get(f as usize).copied().unwrap_or(1);
                f64::from(gpus) * p.lifecycle.gpu_hour_usd
            })
            .collect();
        let ctx = AutoscaleCtx {
            pools: &names,
            initial: &initial,
            startup: &startup,
            replica_hour_usd: &price,
        };
        let scaler = (a.entry.build)(&a.params, &ctx)?;
        let queries = scaler.metrics().to_vec();
        if queries.len() > MAX_METRICS {
            return Err(format!("reads {} metrics; at most {MAX_METRICS}", queries.len()));
        }
        let scrape = scaler.scrape_interval();
        let keep = queries.iter().map(|q| q.window).max().unwrap_or(SimDuration::ZERO);
        let members = (0..size)
            .map(|i| Member {
                replica: first + i,
                created: SimTime::ZERO,
                provisioned_at: SimTime::MAX,
                grace_end: SimTime::MAX,
                samples: VecDeque::new(),
                routed_then: 0,
            })
            .collect();
        Ok(Some(Scaling {
            scaler,
            members,
            queries,
            scrape,
            keep: keep + scrape + scrape,
            lifecycle: sc.pools[pool as usize].lifecycle.clone(),
            rng: Stream::new(run_seed, "autoscale:provision", u64::from(pool)),
            polling: false,
            pods: Vec::new(),
            pool,
            models: cluster.served_models(pool).to_vec(),
            window: PoolWindow::default(),
            last_decision: SimTime::ZERO,
            changes: 0,
        }))
    }

    /// The first decision and scrape times.
    pub(super) fn first_events(&self) -> (SimTime, SimTime) {
        (SimTime::ZERO + self.scaler.interval(), SimTime::ZERO + self.scrape)
    }
}

/// What a lifecycle state looks like to Kubernetes.
fn phase(s: Lifecycle) -> Option<PodPhase> {
    match s {
        Lifecycle::Provisioning => Some(PodPhase::Pending),
        Lifecycle::Loading | Lifecycle::Recovering => Some(PodPhase::Starting),
        Lifecycle::Ready => Some(PodPhase::Ready),
        Lifecycle::Draining => Some(PodPhase::Deleting),
        Lifecycle::Failed => Some(PodPhase::Failed),
        Lifecycle::Off => None,
    }
}

/// Reduces `samples` (time, value) over `q`'s range at `now`.
fn reduce(
    samples: &VecDeque<(SimTime, [f64; MAX_METRICS])>,
    k: usize,
    q: &MetricQuery,
    now: SimTime,
    scrape: SimDuration,
) -> Option<f64> {
    if q.window == SimDuration::ZERO {
        let &(t, v) = samples.back()?;
        return (now.since(t) <= scrape + scrape).then_some(v[k]);
    }
    let xs = samples.iter().filter(|(t, _)| now.since(*t) < q.window).map(|(_, v)| v[k]);
    if q.max {
        xs.fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
    } else {
        let (n, sum) = xs.fold((0u32, 0.0), |(n, s), x| (n + 1, s + x));
        (n > 0).then(|| sum / f64::from(n))
    }
}

impl Sim<'_> {
    /// A request for `model` arrived at the gateway.
    #[inline]
    pub(super) fn scaling_arrival(&mut self, model: u16) {
        if let Some(s) = &mut self.scaling {
            if s.models.contains(&model) {
                s.window.arrived += 1;
            }
        }
    }

    /// A request ended with an answer from replica `r` (`ttft`, `tpot` as recorded).
    #[inline]
    pub(super) fn scaling_answered(
        &mut self,
        r: u32,
        ttft: Option<SimDuration>,
        tpot: Option<SimDuration>,
    ) {
        let Some(s) = &mut self.scaling else { return };
        if self.cluster.pool_of.get(r as usize) != Some(&s.pool) {
            return;
        }
        s.window.completed += 1;
        if let Some(t) = ttft {
            s.window.ttft_s.push(t.as_secs_f64());
        }
        if let Some(t) = tpot {
            s.window.tpot_sum_s += t.as_secs_f64();
            s.window.tpot_n += 1;
        }
    }

    /// Requests held for the scaled pool (none without an activator).
    fn held_for_pool(&self) -> u32 {
        self.held_now()
    }

    /// Puts the pool's replicas beyond its initial count `Off`.
    pub(super) fn start_scaling(&mut self) {
        let Some(s) = &self.scaling else { return };
        let (pool_first, initial) = (s.members[0].replica, self.scaled_initial);
        for r in pool_first + initial..pool_first + s.members.len() as u32 {
            self.cluster.set_lifecycle(r, Lifecycle::Off, SimTime::ZERO);
        }
        let (tick, scrape) = s.first_events();
        self.queue.push(tick, Event::Autoscale);
        self.queue.push(scrape, Event::MetricScrape);
    }

    /// Samples every Ready pod of the pool.
    pub(super) fn on_metric_scrape(&mut self) {
        let Some(s) = &mut self.scaling else { return };
        let now = self.now;
        let dt = s.scrape.as_secs_f64();
        for m in &mut s.members {
            let r = m.replica as usize;
            let routed = self.gateway.routed.get(r).copied().unwrap_or(0);
            let since = routed - m.routed_then.min(routed);
            m.routed_then = routed;
            while m.samples.front().is_some_and(|(t, _)| now.since(*t) > s.keep) {
                m.samples.pop_front();
            }
            if self.cluster.lifecycle[r] != Lifecycle::Ready {
                continue;
            }
            let (waiting, running) =
                (f64::from(self.cluster.queued[r]), f64::from(self.cluster.in_service[r]));
            let mut v = [0.0; MAX_METRICS];
            for (k, q) in s.queries.iter().enumerate() {
                v[k] = match q.metric {
                    SimMetric::Waiting => waiting,
                    SimMetric::Running => running,
                    SimMetric::Concurrency => waiting + running,
                    SimMetric::KvUsage => f64::from(self.cluster.kv_util[r]),
                    SimMetric::GpuUtil | SimMetric::Cpu => {
                        if running > 0.0 {
                            100.0
                        } else {
                            0.0
                        }
                    }
                    SimMetric::RequestRate => since as f64 / dt,
                };
            }
            m.samples.push_back((now, v));
        }
        let next = now + s.scrape;
        self.queue.push(next, Event::MetricScrape);
    }

    /// An autoscaler decision.
    pub(super) fn on_autoscale(&mut self) {
        let held = self.held_for_pool();
        let Some(s) = &mut self.scaling else { return };
        let now = self.now;
        s.pods.clear();
        let mut current = 0;
        for m in &s.members {
            let Some(ph) = phase(self.cluster.lifecycle[m.replica as usize]) else { continue };
            if ph != PodPhase::Deleting {
                current += 1;
            }
            let mut values = [None; MAX_METRICS];
            for (k, q) in s.queries.iter().enumerate() {
                values[k] = reduce(&m.samples, k, q, now, s.scrape);
            }
            s.pods.push(PodView { phase: ph, created: m.created, values });
        }
        s.pods.sort_by_key(|p| p.created);
        let interval_s = now.since(s.last_decision).as_secs_f64();
        s.last_decision = now;
        let signals = s.window.take(interval_s, held);
        let input = ScaleInput::new(now, current, &s.pods).with_pool(signals);
        let want = s.scaler.decide(&input).min(s.members.len() as u32);
        if want != current {
            s.changes += 1;
        }
        let next = now + s.scaler.interval();
        self.queue.push(next, Event::Autoscale);
        if want > current {
            self.scale_up(want - current);
        } else if want < current {
            self.scale_down(current - want);
        }
    }

    fn scale_up(&mut self, n: u32) {
        let now = self.now;
        let Some(s) = &mut self.scaling else { return };
        let mut started = Vec::new();
        for (i, m) in s.members.iter_mut().enumerate() {
            if started.len() as u32 == n {
                break;
            }
            if self.cluster.lifecycle[m.replica as usize] != Lifecycle::Off {
                continue;
            }
            let lc = &s.lifecycle;
            let provision =
                lc.provision_s.as_ref().map_or(0.0, |d| d.quantile(s.rng.uniform_open()).max(0.0));
            let at = now + SimDuration::from_secs_f64(provision) + lc.image_pull;
            m.created = now;
            m.provisioned_at = at;
            m.grace_end = SimTime::MAX;
            m.samples.clear();
            started.push((i, m.replica, at));
        }
        for (_, r, at) in started {
            self.cluster.set_lifecycle(r, Lifecycle::Provisioning, now);
            self.queue.push(at, Event::Provisioned { replica: r });
        }
    }

    /// Provisioning of `r` is over: its container starts and loads the model.
    pub(super) fn on_provisioned(&mut self, r: u32) {
        let Some(s) = &mut self.scaling else { return };
        let Some(m) = s.members.iter_mut().find(|m| m.replica == r) else { return };
        if m.provisioned_at != self.now
            || self.cluster.lifecycle[r as usize] != Lifecycle::Provisioning
        {
            self.stale_events += 1;
            return;
        }
        m.provisioned_at = SimTime::MAX;
        let load =
            if self.cluster.is_llm() { self.cluster.cold_start(r) } else { s.lifecycle.load };
        self.cluster.set_lifecycle(r, Lifecycle::Loading, self.now);
        let at = self.now + load;
        self.recover_due[r as usize] = at;
        self.queue.push(at, Event::Recovered { replica: r });
        if let Some(t) = self.gateway.container_restarted(r, self.now) {
            self.queue.push(t, Event::Readiness { replica: r });
        }
    }

    fn scale_down(&mut self, n: u32) {
        let now = self.now;
        let Some(s) = &mut self.scaling else { return };
        // ReplicaSet victims: not ready before ready, then the newest first.
        let mut cands: Vec<(bool, SimTime, u32)> = s
            .members
            .iter()
            .filter(|m| {
                !matches!(
                    self.cluster.lifecycle[m.replica as usize],
                    Lifecycle::Off | Lifecycle::Draining
                )
            })
            .map(|m| {
                (
                    self.cluster.lifecycle[m.replica as usize] == Lifecycle::Ready,
                    m.created,
                    m.replica,
                )
            })
            .collect();
        cands.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
        let grace = s.lifecycle.termination_grace;
        let mut drain = Vec::new();
        let mut gone = Vec::new();
        for &(ready, _, r) in cands.iter().take(n as usize) {
            if ready {
                drain.push(r);
            } else {
                gone.push(r);
            }
        }
        for m in &mut s.members {
            if drain.contains(&m.replica) {
                m.grace_end = now + grace;
            }
            if gone.contains(&m.replica) {
                m.provisioned_at = SimTime::MAX;
            }
        }
        let poll = !drain.is_empty() && !s.polling;
        if poll {
            s.polling = true;
        }
        for r in gone {
            self.terminate(r);
        }
        for r in drain {
            self.cluster.set_lifecycle(r, Lifecycle::Draining, now);
            self.gateway.replica_changed(r, &self.cluster);
            self.queue.push(now + grace, Event::GraceEnd { replica: r });
        }
        if poll {
            self.queue.push(now + DRAIN_POLL, Event::DrainPoll);
        }
    }

    /// Terminates draining replicas that are empty.
    pub(super) fn on_drain_poll(&mut self) {
        let Some(s) = &self.scaling else { return };
        let draining: Vec<u32> = s
            .members
            .iter()
            .map(|m| m.replica)
            .filter(|&r| self.cluster.lifecycle[r as usize] == Lifecycle::Draining)
            .collect();
        for &r in &draining {
            if self.slab.at_replica(r).is_empty() {
                self.terminate(r);
            }
        }
        let Some(s) = &mut self.scaling else { return };
        let left = s
            .members
            .iter()
            .any(|m| self.cluster.lifecycle[m.replica as usize] == Lifecycle::Draining);
        s.polling = left;
        if left {
            self.queue.push(self.now + DRAIN_POLL, Event::DrainPoll);
        }
    }

    /// The grace period of draining `r` is over.
    pub(super) fn on_grace_end(&mut self, r: u32) {
        let Some(s) = &self.scaling else { return };
        let due = s.members.iter().find(|m| m.replica == r).map(|m| m.grace_end);
        if due != Some(self.now) || self.cluster.lifecycle[r as usize] != Lifecycle::Draining {
            self.stale_events += 1;
            return;
        }
        self.terminate(r);
    }

    /// The pod of `r` is gone: what it holds ends with a reset, the replica is `Off` and
    /// empty.
    fn terminate(&mut self, r: u32) {
        if let Some(s) = &mut self.scaling {
            if let Some(m) = s.members.iter_mut().find(|m| m.replica == r) {
                m.grace_end = SimTime::MAX;
                m.provisioned_at = SimTime::MAX;
                m.samples.clear();
            }
        }
        self.wipe(r, Lifecycle::Off);
    }
}
