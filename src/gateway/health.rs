//! One gateway instance's health view: which replicas it routes to, from what *it* can know.
//!
//! Each mechanism configured under `gateway.health` keeps its own state machine (one file
//! each: [`super::active_health`], [`super::nginx_passive`], [`super::outlier`],
//! [`super::circuit_breaker`]); this module combines their verdicts into one exclusion mask
//! per replica and the candidate lists the router sees. Bits: passive, outlier, breaker,
//! active (the *health* bits), degraded (scraped KV use above the threshold: no new work, but
//! not unhealthy) and off-endpoint (Kubernetes readiness took it out of the Service).
//!
//! Candidates of a request, in order:
//! 1. the primary endpoints serving its model, without off-endpoint replicas;
//! 2. without unhealthy ones; if none is left, the healthy replicas of backup pools (nginx
//!    `backup`);
//! 3. Envoy's panic mode (only with active checks or outlier detection, as in Envoy): when the
//!    healthy share is below `healthy_panic_threshold` (and the availability
//!    `min(100, 1.4 × healthy%)` below 100), health is ignored and every listed replica is a
//!    candidate ([`super::outlier::in_panic`]);
//! 4. none left: the request gets 503 (no healthy upstream);
//! 5. without degraded replicas, unless that leaves none (fail open, as the GIE filters).
//!
//! With nothing excluded the cluster's own lists are used untouched (the fast path); filtered
//! lists are cached per (model, cluster epoch, mask epoch), and their epoch for routers is a
//! hash of their content, so a router's ring built for a set of replicas is reused whenever
//! the same set comes back.

use super::active_health::{ActiveHealth, ProbeResult};
use super::circuit_breaker::CircuitBreakers;
use super::nginx_passive::{NginxPassive, Phase};
use super::outlier::{in_panic, Change, OutlierDetector};
use super::status::AttemptResult;
use super::{Timer, TimerKind};
use crate::rng::Stream;
use crate::spec::gateway::HealthConfig;
use crate::time::SimTime;

/// nginx passive health excludes it.
pub const PASSIVE: u8 = 1;
/// Envoy outlier detection ejected it.
pub const OUTLIER: u8 = 2;
/// Its SGLang circuit breaker is open.
pub const BREAKER: u8 = 4;
/// Active health checks found it unhealthy.
pub const ACTIVE: u8 = 8;
/// Degraded: no new work.
pub const DEGRADED: u8 = 16;
/// Not a ready endpoint (Kubernetes readiness).
pub const OFF_ENDPOINT: u8 = 32;
/// The bits that make a replica unhealthy.
pub const UNHEALTHY: u8 = PASSIVE | OUTLIER | BREAKER | ACTIVE;

/// What a probe met (decided by the engine from the replica's true state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// Answered 200.
    Ok,
    /// Connection refused (the replica is down).
    Refused,
    /// No answer before the probe timeout (hung, or unreachable from this instance).
    NoAnswer,
}

/// A cached filtered candidate list.
#[derive(Debug, Clone)]
struct Filtered {
    key: (u64, u64),
    list: Vec<u32>,
    epoch: u64,
}

/// The candidate list a request gets.
pub enum Candidates<'a> {
    /// These replicas, with this epoch.
    List(&'a [u32], u64),
    /// None healthy: 503.
    NoHealthy,
}

/// One instance's health view.
pub struct Health {
    mask: Vec<u8>,
    excluded: u32,
    epoch: u64,
    cache: Vec<Option<Filtered>>,
    passive: Option<NginxPassive>,
    outlier: Option<OutlierDetector>,
    breaker: Option<CircuitBreakers>,
    breaker_until: Vec<SimTime>,
    active: Option<ActiveHealth>,
    degraded_kv: Option<f32>,
    panic_percent: f64,
    envoy: bool,
    /// Exclusions of replicas that were not excluded before (ejections), with their time.
    pub ejected_log: Vec<(SimTime, u32)>,
}

impl Health {
    /// The view of instance `g` of `instances` over `replicas` replicas.
    pub fn new(cfg: &HealthConfig, replicas: usize, g: u16, instances: u32, seed: u64) -> Health {
        let gi = u64::from(g);
        Health {
            mask: vec![0; replicas],
            excluded: 0,
            epoch: 0,
            cache: Vec::new(),
            passive: cfg.passive.as_ref().map(|p| NginxPassive::new(p, replicas)),
            outlier: cfg.outlier.as_ref().map(|p| {
                OutlierDetector::new(p, replicas, Stream::new(seed, "gateway:outlier", gi))
            }),
            breaker: cfg.circuit_breaker.as_ref().map(|p| CircuitBreakers::new(p, replicas)),
            breaker_until: vec![SimTime::ZERO; replicas],
            active: cfg.active.as_ref().map(|p| {
                ActiveHealth::new(p, replicas, Stream::new(seed, "gateway:active_health", gi))
                    .with_instance(u32::from(g), instances)
            }),
            degraded_kv: cfg.degraded_kv_util.map(|x| x as f32),
            panic_percent: cfg.healthy_panic_threshold,
            envoy: cfg.outlier.is_some() || cfg.active.is_some(),
            ejected_log: Vec::new(),
        }
    }

    /// Whether any replica is excluded in any way.
    #[inline]
    pub fn any_excluded(&self) -> bool {
        self.excluded > 0
    }

    /// Whether replica `r` is unhealthy or off the endpoints.
    #[inline]
    pub fn excluded(&self, r: u32) -> bool {
        self.mask[r as usize] & (UNHEALTHY | OFF_ENDPOINT) != 0
    }

    /// Whether replica `r` is degraded.
    #[inline]
    pub fn degraded(&self, r: u32) -> bool {
        self.mask[r as usize] & DEGRADED != 0
    }

    /// Whether the degraded state is on.
    #[inline]
    pub fn tracks_degraded(&self) -> bool {
        self.degraded_kv.is_some()
    }

    /// Sets or clears `bit` of replica `r`; true if its mask changed.
    pub fn set(&mut self, r: u32, bit: u8, on: bool, now: SimTime) -> bool {
        let m = &mut self.mask[r as usize];
        let old = *m;
        *m = if on { old | bit } else { old & !bit };
        if *m == old {
            return false;
        }
        if old == 0 {
            self.excluded += 1;
        } else if *m == 0 {
            self.excluded -= 1;
        }
        if old & (UNHEALTHY | OFF_ENDPOINT) == 0 && *m & (UNHEALTHY | OFF_ENDPOINT) != 0 {
            self.ejected_log.push((now, r));
        }
        self.epoch += 1;
        true
    }

    /// The candidates for a request whose model has `base` primary and `backup` backup
    /// endpoints (`key`: the cluster's epoch of that list).
    #[inline]
    pub fn candidates<'a>(
        &'a mut self,
        model: u16,
        base: &'a [u32],
        backup: &'a [u32],
        key: u64,
    ) -> Candidates<'a> {
        if self.excluded == 0 {
            return Candidates::List(base, key);
        }
        let m = model as usize;
        if self.cache.len() <= m {
            self.cache.resize(m + 1, None);
        }
        let want = (key, self.epoch);
        if self.cache[m].as_ref().is_none_or(|f| f.key != want) {
            let list = self.filter(base, backup);
            let epoch = list_epoch(&list);
            self.cache[m] = Some(Filtered { key: want, list, epoch });
        }
        match &self.cache[m] {
            Some(f) if !f.list.is_empty() => Candidates::List(&f.list, f.epoch),
            _ => Candidates::NoHealthy,
        }
    }

    fn filter(&self, base: &[u32], backup: &[u32]) -> Vec<u32> {
        let mask = &self.mask;
        let listed = |set: &[u32]| -> Vec<u32> {
            set.iter().copied().filter(|&r| mask[r as usize] & OFF_ENDPOINT == 0).collect()
        };
        let healthy = |set: &[u32]| -> Vec<u32> {
            set.iter().copied().filter(|&r| mask[r as usize] & UNHEALTHY == 0).collect()
        };
        let primary = listed(base);
        let mut ok = healthy(&primary);
        // The priority traffic goes to: the primaries while one is healthy, else the backups
        // while one of them is.
        let mut from = primary;
        let mut total_health = 0;
        if self.envoy {
            // Envoy's normalized total health over priorities: Σ min(100, 140·healthy/total),
            // capped at 100; at 100 no priority is in panic.
            total_health = priority_health(ok.len(), from.len());
        }
        if ok.is_empty() {
            let backups = listed(backup);
            let healthy_backups = healthy(&backups);
            if !healthy_backups.is_empty() {
                total_health += priority_health(healthy_backups.len(), backups.len());
                ok = healthy_backups;
                from = backups;
            }
        }
        if self.envoy
            && !from.is_empty()
            && ok.len() < from.len()
            && total_health < 100
            && in_panic(ok.len() as u32, from.len() as u32, self.panic_percent)
        {
            ok = from;
        }
        let fresh: Vec<u32> =
            ok.iter().copied().filter(|&r| mask[r as usize] & DEGRADED == 0).collect();
        if fresh.is_empty() {
            ok
        } else {
            fresh
        }
    }

    /// No replica was available (nginx: 502 "no live upstreams", and every peer's `fails`
    /// is reset for a quick recovery).
    pub fn no_live_upstream(&mut self, now: SimTime) {
        let Some(p) = &mut self.passive else { return };
        p.on_no_live_upstream();
        for r in 0..self.mask.len() as u32 {
            let out = !self.passive.as_ref().is_some_and(|p| p.eligible(r, now));
            self.set(r, PASSIVE, out, now);
        }
    }

    /// A replica was picked for an attempt (nginx's probe rule).
    pub fn on_select(&mut self, r: u32, now: SimTime, timers: &mut Vec<(SimTime, Timer)>, g: u16) {
        if let Some(p) = &mut self.passive {
            p.on_select(r, now);
            self.sync_passive(r, now, timers, g);
        }
    }

    /// An attempt to `r` ended with `result` in `phase` (after the header: it had streamed a
    /// first token); `will_retry`: it goes to another try.
    #[allow(clippy::too_many_arguments)]
    pub fn on_result(
        &mut self,
        r: u32,
        result: AttemptResult,
        phase: Phase,
        will_retry: bool,
        now: SimTime,
        timers: &mut Vec<(SimTime, Timer)>,
        g: u16,
    ) {
        if let Some(p) = &mut self.passive {
            // nginx hands a status to `ngx_http_upstream_next` (which counts it) only when it
            // would move on: another try left and the status listed in `proxy_next_upstream`
            // (with `non_idempotent`, since the POST was sent). The tries themselves follow the
            // retry policy.
            let next = will_retry && phase == Phase::BeforeHeader && p.passes_to_next(result, true);
            p.on_result_in(r, result, phase, next, now);
            self.sync_passive(r, now, timers, g);
        }
        if let Some(o) = &mut self.outlier {
            if let Some(c) = o.on_result(r, result, now) {
                self.apply_outlier(c, now);
            }
        }
        if let Some(b) = &mut self.breaker {
            if let Some(t) = b.record(r, !CircuitBreakers::is_failure(result), now) {
                self.breaker_until[r as usize] = t;
                timers.push((t, Timer::gateway(g, r, TimerKind::Breaker)));
            }
            let open = !b.can_execute(r, now);
            self.set(r, BREAKER, open, now);
        }
    }

    /// Re-reads nginx passive health of `r` and arms a timer for the end of its exclusion.
    fn sync_passive(&mut self, r: u32, now: SimTime, timers: &mut Vec<(SimTime, Timer)>, g: u16) {
        let Some(p) = &self.passive else { return };
        let out = !p.eligible(r, now);
        let until = p.excluded_until(r, now);
        self.set(r, PASSIVE, out, now);
        if let Some(t) = until.filter(|_| out) {
            timers.push((t, Timer::gateway(g, r, TimerKind::Passive)));
        }
    }

    fn apply_outlier(&mut self, c: Change, now: SimTime) {
        self.set(c.replica, OUTLIER, c.ejected, now);
    }

    /// The first timers: outlier intervals, active probes.
    pub fn start(&mut self, g: u16, replicas: usize, timers: &mut Vec<(SimTime, Timer)>) {
        if let Some(o) = &self.outlier {
            timers.push((o.next_tick(), Timer::gateway(g, 0, TimerKind::Outlier)));
        }
        if let Some(a) = &mut self.active {
            for r in 0..replicas as u32 {
                timers.push((a.first_probe(r), Timer::gateway(g, r, TimerKind::Probe)));
            }
        }
    }

    /// Timer `kind` of replica `r` is due; `answer` is what a probe would meet now.
    pub fn on_timer(
        &mut self,
        g: u16,
        r: u32,
        kind: TimerKind,
        answer: ProbeAnswer,
        now: SimTime,
        timers: &mut Vec<(SimTime, Timer)>,
    ) {
        match kind {
            TimerKind::Outlier => {
                let Some(o) = &mut self.outlier else { return };
                let mut changes = Vec::new();
                let next = o.on_tick(now, &mut changes);
                for c in changes {
                    self.apply_outlier(c, now);
                }
                timers.push((next, Timer::gateway(g, 0, TimerKind::Outlier)));
            }
            TimerKind::Passive => self.sync_passive(r, now, timers, g),
            TimerKind::Breaker => {
                if let Some(b) = &mut self.breaker {
                    let open = !b.can_execute(r, now);
                    self.set(r, BREAKER, open, now);
                }
            }
            TimerKind::Probe => self.probe(g, r, answer, now, timers),
            TimerKind::ProbeTimeout => {
                self.probe_result(g, r, ProbeResult::NetworkFailure, now, timers)
            }
            TimerKind::Dequeue => {}
        }
    }

    /// An active probe of `r` goes out now.
    fn probe(
        &mut self,
        g: u16,
        r: u32,
        answer: ProbeAnswer,
        now: SimTime,
        timers: &mut Vec<(SimTime, Timer)>,
    ) {
        let Some(a) = &self.active else { return };
        if a.next_probe(r) != now {
            return;
        }
        match answer {
            ProbeAnswer::Ok => self.probe_result(g, r, ProbeResult::Success, now, timers),
            ProbeAnswer::Refused => {
                self.probe_result(g, r, ProbeResult::NetworkFailure, now, timers)
            }
            ProbeAnswer::NoAnswer => {
                let t = now + a.timeout();
                timers.push((t, Timer::gateway(g, r, TimerKind::ProbeTimeout)));
            }
        }
    }

    fn probe_result(
        &mut self,
        g: u16,
        r: u32,
        res: ProbeResult,
        now: SimTime,
        timers: &mut Vec<(SimTime, Timer)>,
    ) {
        let Some(a) = &mut self.active else { return };
        let (flip, next) = a.on_result(r, res, now);
        timers.push((next, Timer::gateway(g, r, TimerKind::Probe)));
        match flip {
            Some(healthy) => {
                self.set(r, ACTIVE, !healthy, now);
            }
            None if res == ProbeResult::Success => {}
            None => return,
        }
        if res == ProbeResult::Success {
            if let Some(o) = &mut self.outlier {
                if let Some(c) = o.on_active_health_success(r, now) {
                    self.apply_outlier(c, now);
                }
            }
        }
    }

    /// The degraded bit of `r` from a KV use it sees.
    #[inline]
    pub fn see_kv(&mut self, r: u32, kv_util: f32, now: SimTime) {
        if let Some(th) = self.degraded_kv {
            self.set(r, DEGRADED, kv_util > th, now);
        }
    }
}

/// An epoch for a filtered list: a hash of its content with the top bit set, so it never
/// equals a cluster epoch and equal lists share it.
pub(super) fn list_epoch(list: &[u32]) -> u64 {
    let mut h: u64 = 0x9E37_79B9_7F4A_7C15;
    for &r in list {
        h = crate::rng::mix64(h ^ u64::from(r));
    }
    h | (1 << 63)
}

/// One priority's share of Envoy's normalized health: `min(100, 140·healthy/total)` (integer
/// percent, overprovisioning factor 1.4); 0 for an empty priority.
fn priority_health(healthy: usize, total: usize) -> u64 {
    if total == 0 {
        0
    } else {
        (140 * healthy as u64 / total as u64).min(100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::protection::NginxPassiveParams;

    fn cfg() -> HealthConfig {
        HealthConfig::default()
    }

    #[test]
    fn masks_filter_candidates_with_backup_and_fail_open_for_degraded() {
        let mut c = cfg();
        c.degraded_kv_util = Some(0.95);
        let mut h = Health::new(&c, 6, 0, 1, 1);
        let (base, backup) = ([0, 1, 2, 3], [4, 5]);
        let t = SimTime::ZERO;
        let Candidates::List(l, e) = h.candidates(0, &base, &backup, 7) else { panic!() };
        assert_eq!((l.to_vec(), e), (vec![0, 1, 2, 3], 7), "fast path keeps the cluster list");
        h.set(1, PASSIVE, true, t);
        h.see_kv(2, 0.99, t);
        let Candidates::List(l, e) = h.candidates(0, &base, &backup, 7) else { panic!() };
        assert_eq!(l, &[0, 3]);
        assert_ne!(e, 7);
        // Every primary degraded or unhealthy: degraded ones still serve (fail open).
        h.see_kv(0, 0.99, t);
        h.see_kv(3, 0.99, t);
        let Candidates::List(l, _) = h.candidates(0, &base, &backup, 7) else { panic!() };
        assert_eq!(l, &[0, 2, 3]);
        // Every primary unhealthy: the backup pool.
        for r in [0, 2, 3] {
            h.set(r, ACTIVE, true, t);
        }
        let Candidates::List(l, _) = h.candidates(0, &base, &backup, 7) else { panic!() };
        assert_eq!(l, &[4, 5]);
        h.set(4, OFF_ENDPOINT, true, t);
        h.set(5, BREAKER, true, t);
        assert!(matches!(h.candidates(0, &base, &backup, 7), Candidates::NoHealthy));
        // Exclusions were logged once each (degraded is not an ejection).
        let ejected: Vec<u32> = h.ejected_log.iter().map(|&(_, r)| r).collect();
        assert_eq!(ejected, vec![1, 0, 2, 3, 4, 5]);
    }

    #[test]
    fn envoy_panic_routes_to_every_replica() {
        let mut c = cfg();
        c.outlier = Some(Default::default());
        let mut h = Health::new(&c, 10, 0, 1, 1);
        let base: Vec<u32> = (0..10).collect();
        // Envoy: availability min(100, 1.4 x healthy%) below 100 and healthy% below 50
        // panics. 6 of 10 unhealthy: 40% healthy: panic, all ten.
        for r in 0..6 {
            h.set(r, OUTLIER, true, SimTime::ZERO);
        }
        let Candidates::List(l, _) = h.candidates(0, &base, &[], 1) else { panic!() };
        assert_eq!(l.len(), 10);
        // 5 unhealthy: 50% is not below 50: no panic.
        h.set(5, OUTLIER, false, SimTime::ZERO);
        let Candidates::List(l, _) = h.candidates(0, &base, &[], 1) else { panic!() };
        assert_eq!(l, &[5, 6, 7, 8, 9]);
        // Backups as Envoy's priority 1: with every primary ejected and the one backup
        // healthy, normalized health is min(100, 0 + 140) = 100: no panic, all to the backup
        // (not back to the ejected primaries).
        let mut c = cfg();
        c.outlier = Some(Default::default());
        let mut h = Health::new(&c, 7, 0, 1, 1);
        for r in 0..4 {
            h.set(r, OUTLIER, true, SimTime::ZERO);
        }
        let Candidates::List(l, _) = h.candidates(0, &[0, 1, 2, 3], &[4], 1) else { panic!() };
        assert_eq!(l, &[4]);
        // One backup of three healthy: health 46 < 100 and 33% < 50: panic within the
        // backups, all three.
        let Candidates::List(l, _) = h.candidates(0, &[0, 1, 2, 3], &[4, 5, 6], 1) else {
            panic!()
        };
        assert_eq!(l, &[4]);
        h.set(5, OUTLIER, true, SimTime::ZERO);
        h.set(6, OUTLIER, true, SimTime::ZERO);
        let Candidates::List(l, _) = h.candidates(0, &[0, 1, 2, 3], &[4, 5, 6], 1) else {
            panic!()
        };
        assert_eq!(l, &[4, 5, 6]);
        // Nothing healthy anywhere: panic over the primaries.
        h.set(4, OUTLIER, true, SimTime::ZERO);
        let Candidates::List(l, _) = h.candidates(0, &[0, 1, 2, 3], &[4, 5, 6], 1) else {
            panic!()
        };
        assert_eq!(l, &[0, 1, 2, 3]);
        // nginx alone never panics.
        let mut c = cfg();
        c.passive = Some(NginxPassiveParams::default());
        let mut h = Health::new(&c, 2, 0, 1, 1);
        h.set(0, PASSIVE, true, SimTime::ZERO);
        h.set(1, PASSIVE, true, SimTime::ZERO);
        assert!(matches!(h.candidates(0, &[0, 1], &[], 1), Candidates::NoHealthy));
    }
}
