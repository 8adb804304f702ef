//! Envoy outlier detection (passive ejection), one [`OutlierDetector`] per gateway instance
//! over the `n` replicas it sends to, plus Envoy's load-balancer panic rule ([`in_panic`]).
//!
//! **Per-result counting** ([`OutlierDetector::on_result`]). Without
//! `split_external_local_origin_errors` every attempt result becomes one HTTP code (Envoy
//! `putResultNoLocalExternalSplit`): a success is 200, a status is itself, a reset or a connect
//! failure is 503 (`LocalOriginConnectFailed`), a per-try timeout is 504. A 5xx increments
//! `consecutive_5xx`; a 502/503/504 also increments `consecutive_gateway_failure`, any other 5xx
//! zeroes it; any non-5xx (429 included: a full replica queue counts as a *success*) zeroes both
//! and counts a success-rate success. A counter fires a detection when it becomes *exactly*
//! equal to its threshold (so 0 disables it, and a counter that runs past the threshold while
//! the host is ejected stays silent until something zeroes it). The gateway-failure check runs
//! before the 5xx check, as in Envoy. With the split, HTTP codes only feed the 5xx/gateway
//! counters and the external success rate, and local-origin events feed a separate counter and
//! success rate exactly as Envoy's HTTP router reports them: every attempt that got a
//! connection first reports `LocalOriginConnectSuccess` (zeroing the local-origin counter),
//! then a reset or per-try timeout reports a local-origin failure, while a connect failure
//! reports only the failure. Consequence (Envoy's, reproduced): with the split,
//! `consecutive_local_origin_failure` fires only on back-to-back connect failures. Envoy hears
//! a status when the response headers arrive (the first token of a streamed response) and, if
//! the stream breaks later, a reset on top of it; the engine chooses which results it reports.
//!
//! **Detection to ejection** (Envoy `onConsecutiveErrorWorker`, `ejectHost`). A detection on a
//! host that is already ejected is dropped *without* zeroing the counter. Otherwise the
//! detection is counted, the ejection cap is checked, then the enforcing percentage: 0 never
//! ejects (detect only), 100 always does, anything between draws `next_u64() % 100 <
//! enforcing` (no draw for 0 or 100, as Envoy's `featureEnabled`). Whatever happened, the
//! counter of that kind is zeroed. The cap, with `e` hosts ejected now:
//! `100·(e+1)/n <= max_ejection_percent` (strict, since Envoy PR #27909), or with
//! `always_eject_one_host` also `e == 0` (PR #34796); `legacy_ejection_cap` restores the code
//! before #27909, `100·e/n < max_ejection_percent`, which lets one host go whenever the
//! percentage is above 0 and may overshoot it by one host (3 hosts at 50 % lose 2, Envoy issue
//! #26877). Small-cluster trap: with the default 10 % and fewer than 10 hosts the strict cap
//! never ejects anything. An ejection draws the jitter `next_u64() % (jitter_ms + 1)` ms and
//! raises the host's backoff multiplier by one if `backoff·base < max + base` (so the
//! multiplier can end one step above `max / base`: 30 s / 300 s stops at 11).
//!
//! **The interval timer** ([`OutlierDetector::on_tick`], first tick at `interval`, then every
//! `interval`). In host order: unejects every ejected host with
//! `min(base·backoff, max) + jitter <= now − last_ejection` (so ejections last `base·k`, capped,
//! *rounded up to the next tick*: 30/60/90 s for back-to-back ejections at ticks, 38 s for
//! one that began 2 s after a tick), then closes the host's success-rate window (the counts of
//! the interval just ended become the ones the passes read). Then the success-rate and
//! failure-percentage passes, external origin then local origin: skipped when `n` is below both
//! minimum-host settings; hosts not ejected whose last-interval volume reaches a pass's
//! `request_volume` take part; with at least `minimum_hosts` of them, success rate
//! (`100·success/total`) below `mean − stdev_factor/1000 · σ` (population σ over the
//! participants, threshold fixed for the pass) is an outlier, and a failure percentage
//! `100 − rate >= failure_percentage_threshold` is one; each goes through the same cap and
//! enforcing path. Last, every host not ejected whose last un-ejection is at least one interval
//! old has its backoff multiplier lowered by one (never below 0), once per tick.
//!
//! **Un-ejection** (timer or [`OutlierDetector::on_active_health_success`] when
//! `successful_active_health_check_uneject_host`) zeroes the three consecutive counters and
//! records the time; the backoff multiplier, the ejection count and the success-rate windows
//! are kept. Results keep being counted while a host is ejected (in-flight attempts finish).
//!
//! **Deviations**, all deliberate: detections act at once (Envoy posts them from the worker to
//! the main thread); hosts are visited in replica order (Envoy: hash-map order); a host ejected
//! by the success-rate pass is skipped by the failure-percentage pass of the same tick (Envoy
//! would eject it a second time, a state its own debug assertion forbids); durations are
//! rounded to whole milliseconds, as Envoy stores them. Membership is fixed at `n` replicas.
//!
//! **Panic** ([`in_panic`], Envoy `recalculatePerPriorityState` / `recalculatePerPriorityPanic`
//! / `isHostSetInPanic`): one priority, no degraded hosts, unweighted. The availability
//! `min(100, 140·healthy/total)` (integer, overprovisioning factor 140 %) at 100 means no panic;
//! below that, panic iff `100·healthy/total < threshold`, the threshold truncated to a whole
//! percent (Envoy's `convertPercent`) and capped at 100; 0 disables panic. The overprovisioning
//! factor therefore only matters for thresholds above 71 %.
//!
//! Invariants: `ejected_count()` equals the number of hosts flagged ejected; an ejected host
//! has `backoff >= 1` and a recorded ejection time; every ejection is reported exactly once as
//! a [`Change`] with `ejected: true` and every un-ejection once with `ejected: false`.
//! Stream: the one passed to [`OutlierDetector::new`] (enforcing draws, then jitter draws).
//!
//! Sources (read for facts, no code copied): envoyproxy/envoy
//! `source/common/upstream/outlier_detection_impl.cc` and `.h` (counters, `ejectHost`, interval
//! timer, success-rate accumulator, defaults), `api/envoy/config/cluster/v3/outlier_detection.proto`,
//! `source/common/runtime/runtime_impl.cc` (`featureEnabled`),
//! `source/common/router/router.cc` and `upstream_request.cc` (what is reported when),
//! `source/extensions/load_balancing_policies/common/load_balancer_impl.cc` (panic),
//! `source/common/protobuf/utility.cc` (`convertPercent`); PRs #27909 and #34796, issue #26877.

use crate::gateway::status::AttemptResult;
use crate::rng::Stream;
use crate::spec::protection::{secs_to_ms, OutlierParams};
use crate::time::{SimDuration, SimTime};

/// Why a host was ejected (Envoy `OutlierEjectionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EjectionKind {
    /// `consecutive_5xx` reached.
    Consecutive5xx,
    /// `consecutive_gateway_failure` reached.
    ConsecutiveGatewayFailure,
    /// `consecutive_local_origin_failure` reached (split mode only).
    ConsecutiveLocalOriginFailure,
    /// External-origin success rate below the statistical threshold.
    SuccessRate,
    /// External-origin failure percentage at or above the threshold.
    FailurePercentage,
    /// Local-origin success rate below the statistical threshold (split mode only).
    LocalOriginSuccessRate,
    /// Local-origin failure percentage at or above the threshold (split mode only).
    LocalOriginFailurePercentage,
}

impl EjectionKind {
    /// Every kind, in declaration order (the index of [`OutlierStats`] arrays).
    pub const ALL: [EjectionKind; 7] = [
        EjectionKind::Consecutive5xx,
        EjectionKind::ConsecutiveGatewayFailure,
        EjectionKind::ConsecutiveLocalOriginFailure,
        EjectionKind::SuccessRate,
        EjectionKind::FailurePercentage,
        EjectionKind::LocalOriginSuccessRate,
        EjectionKind::LocalOriginFailurePercentage,
    ];

    /// Position in [`EjectionKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Envoy's stat-name fragment for the kind.
    pub fn name(self) -> &'static str {
        match self {
            EjectionKind::Consecutive5xx => "consecutive_5xx",
            EjectionKind::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
            EjectionKind::ConsecutiveLocalOriginFailure => "consecutive_local_origin_failure",
            EjectionKind::SuccessRate => "success_rate",
            EjectionKind::FailurePercentage => "failure_percentage",
            EjectionKind::LocalOriginSuccessRate => "local_origin_success_rate",
            EjectionKind::LocalOriginFailurePercentage => "local_origin_failure_percentage",
        }
    }
}

/// A host's ejection state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The replica.
    pub replica: u32,
    /// Ejected now (`true`) or un-ejected now (`false`).
    pub ejected: bool,
    /// Why, for ejections; `None` for un-ejections.
    pub kind: Option<EjectionKind>,
}

/// Envoy's `outlier_detection.*` counters for this detector, indexed by
/// [`EjectionKind::index`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutlierStats {
    /// `ejections_detected_*`: detections, enforced or not, capped or not.
    pub detected: [u64; 7],
    /// `ejections_enforced_*`: detections that ejected.
    pub enforced: [u64; 7],
    /// `ejections_overflow`: detections refused by the ejection cap.
    pub overflow: u64,
}

/// One interval's success counts of one host (Envoy `SuccessRateAccumulator`).
#[derive(Debug, Clone, Copy, Default)]
struct SrWindow {
    cur_success: u64,
    cur_total: u64,
    last_success: u64,
    last_total: u64,
}

impl SrWindow {
    fn record(&mut self, success: bool) {
        self.cur_total += 1;
        if success {
            self.cur_success += 1;
        }
    }

    /// The interval closed: its counts become the ones read, the new one starts empty.
    fn close(&mut self) {
        self.last_success = self.cur_success;
        self.last_total = self.cur_total;
        self.cur_success = 0;
        self.cur_total = 0;
    }

    /// Success rate in percent and volume of the last closed interval (`None`: no requests).
    fn last(&self) -> Option<(f64, u64)> {
        (self.last_total > 0)
            .then(|| (self.last_success as f64 * 100.0 / self.last_total as f64, self.last_total))
    }
}

/// Per-host monitor state (Envoy `DetectorHostMonitorImpl`).
#[derive(Debug, Clone, Default)]
struct Host {
    ejected: bool,
    consecutive_5xx: u32,
    consecutive_gateway_failure: u32,
    consecutive_local_origin_failure: u32,
    backoff: u32,
    num_ejections: u32,
    last_ejection: Option<SimTime>,
    last_unejection: Option<SimTime>,
    jitter: SimDuration,
    external: SrWindow,
    local: SrWindow,
}

/// A host's consecutive-error counters, for inspection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Consecutive 5xx.
    pub consecutive_5xx: u32,
    /// Consecutive gateway failures.
    pub consecutive_gateway_failure: u32,
    /// Consecutive local-origin failures.
    pub consecutive_local_origin_failure: u32,
}

/// Which success-rate monitor a pass reads.
#[derive(Clone, Copy)]
enum Origin {
    External,
    Local,
}

/// Envoy outlier detection for one gateway instance over `n` replicas.
pub struct OutlierDetector {
    p: OutlierParams,
    interval: SimDuration,
    base_ms: u64,
    max_ms: u64,
    jitter_ms: u64,
    hosts: Vec<Host>,
    ejected: u32,
    next_tick: SimTime,
    rng: Stream,
    stats: OutlierStats,
}

impl OutlierDetector {
    /// A detector with every replica healthy; `p` must have passed [`OutlierParams::validate`].
    /// `rng` serves the enforcing-percentage draws and the ejection jitter.
    pub fn new(p: &OutlierParams, replicas: usize, rng: Stream) -> OutlierDetector {
        let interval = SimDuration::from_millis(p.interval_ms());
        OutlierDetector {
            p: p.clone(),
            interval,
            base_ms: p.base_ejection_time_ms(),
            max_ms: p.max_ejection_time_ms(),
            jitter_ms: secs_to_ms(p.max_ejection_time_jitter_s),
            hosts: vec![Host::default(); replicas],
            ejected: 0,
            next_tick: SimTime::ZERO + interval,
            rng,
            stats: OutlierStats::default(),
        }
    }

    /// When the interval timer fires next (first at `interval`).
    pub fn next_tick(&self) -> SimTime {
        self.next_tick
    }

    /// Whether replica `r` is ejected.
    pub fn is_ejected(&self, r: u32) -> bool {
        self.hosts[r as usize].ejected
    }

    /// Replicas ejected now.
    pub fn ejected_count(&self) -> u32 {
        self.ejected
    }

    /// The detector's counters.
    pub fn stats(&self) -> &OutlierStats {
        &self.stats
    }

    /// The backoff multiplier of replica `r` (Envoy `ejectTimeBackoff`).
    pub fn eject_backoff(&self, r: u32) -> u32 {
        self.hosts[r as usize].backoff
    }

    /// How many times replica `r` has been ejected.
    pub fn num_ejections(&self, r: u32) -> u32 {
        self.hosts[r as usize].num_ejections
    }

    /// The consecutive-error counters of replica `r`.
    pub fn counters(&self, r: u32) -> Counters {
        let h = &self.hosts[r as usize];
        Counters {
            consecutive_5xx: h.consecutive_5xx,
            consecutive_gateway_failure: h.consecutive_gateway_failure,
            consecutive_local_origin_failure: h.consecutive_local_origin_failure,
        }
    }

    /// One attempt result from host r (local-origin results are mapped to 503/504/... unless
    /// split_external_local_origin_errors). Returns Some(change) when r is ejected now.
    pub fn on_result(&mut self, r: u32, result: AttemptResult, now: SimTime) -> Option<Change> {
        if !self.p.split_external_local_origin_errors {
            let code = match result {
                AttemptResult::Success => 200,
                AttemptResult::Status(c) => c,
                AttemptResult::Reset | AttemptResult::ConnectFailure => 503,
                AttemptResult::Timeout => 504,
            };
            return self.http_code(r, code, now);
        }
        match result {
            AttemptResult::ConnectFailure => self.local_failure(r, now),
            AttemptResult::Reset | AttemptResult::Timeout => {
                self.local_success(r);
                self.local_failure(r, now)
            }
            AttemptResult::Success => {
                self.local_success(r);
                self.http_code(r, 200, now)
            }
            AttemptResult::Status(c) => {
                self.local_success(r);
                self.http_code(r, c, now)
            }
        }
    }

    /// Envoy `putHttpResponseCode`.
    fn http_code(&mut self, r: u32, code: u16, now: SimTime) -> Option<Change> {
        let h = &mut self.hosts[r as usize];
        h.external.record(!(500..600).contains(&code));
        if !(500..600).contains(&code) {
            h.consecutive_5xx = 0;
            h.consecutive_gateway_failure = 0;
            return None;
        }
        let mut change = None;
        if matches!(code, 502..=504) {
            h.consecutive_gateway_failure = h.consecutive_gateway_failure.saturating_add(1);
            if h.consecutive_gateway_failure == self.p.consecutive_gateway_failure {
                change = self.detect(r, EjectionKind::ConsecutiveGatewayFailure, now);
            }
        } else {
            h.consecutive_gateway_failure = 0;
        }
        let h = &mut self.hosts[r as usize];
        h.consecutive_5xx = h.consecutive_5xx.saturating_add(1);
        if h.consecutive_5xx == self.p.consecutive_5xx {
            change = change.or(self.detect(r, EjectionKind::Consecutive5xx, now));
        }
        change
    }

    /// Envoy `localOriginNoFailure`.
    fn local_success(&mut self, r: u32) {
        let h = &mut self.hosts[r as usize];
        h.local.record(true);
        h.consecutive_local_origin_failure = 0;
    }

    /// Envoy `localOriginFailure`.
    fn local_failure(&mut self, r: u32, now: SimTime) -> Option<Change> {
        let h = &mut self.hosts[r as usize];
        h.local.record(false);
        h.consecutive_local_origin_failure = h.consecutive_local_origin_failure.saturating_add(1);
        if h.consecutive_local_origin_failure == self.p.consecutive_local_origin_failure {
            return self.detect(r, EjectionKind::ConsecutiveLocalOriginFailure, now);
        }
        None
    }

    /// A consecutive-error detection (Envoy `onConsecutiveErrorWorker`).
    fn detect(&mut self, r: u32, kind: EjectionKind, now: SimTime) -> Option<Change> {
        if self.hosts[r as usize].ejected {
            return None;
        }
        self.stats.detected[kind.index()] += 1;
        let change = self.eject(r, kind, now);
        let h = &mut self.hosts[r as usize];
        match kind {
            EjectionKind::Consecutive5xx => h.consecutive_5xx = 0,
            EjectionKind::ConsecutiveGatewayFailure => h.consecutive_gateway_failure = 0,
            EjectionKind::ConsecutiveLocalOriginFailure => h.consecutive_local_origin_failure = 0,
            _ => {}
        }
        change
    }

    /// Whether the ejection cap lets one more host go.
    fn cap_allows(&self) -> bool {
        let n = self.hosts.len() as u64;
        if n == 0 {
            return false;
        }
        let e = u64::from(self.ejected);
        let max = u64::from(self.p.max_ejection_percent.min(100));
        let strict =
            if self.p.legacy_ejection_cap { 100 * e < max * n } else { 100 * (e + 1) <= max * n };
        strict || (self.p.always_eject_one_host && e == 0)
    }

    fn enforcing(&self, kind: EjectionKind) -> u32 {
        let p = &self.p;
        match kind {
            EjectionKind::Consecutive5xx => p.enforcing_consecutive_5xx,
            EjectionKind::ConsecutiveGatewayFailure => p.enforcing_consecutive_gateway_failure,
            EjectionKind::ConsecutiveLocalOriginFailure => {
                p.enforcing_consecutive_local_origin_failure
            }
            EjectionKind::SuccessRate => p.enforcing_success_rate,
            EjectionKind::FailurePercentage => p.enforcing_failure_percentage,
            EjectionKind::LocalOriginSuccessRate => p.enforcing_local_origin_success_rate,
            EjectionKind::LocalOriginFailurePercentage => {
                p.enforcing_failure_percentage_local_origin
            }
        }
    }

    /// Envoy `ejectHost`: cap, enforcing draw, then the ejection itself.
    fn eject(&mut self, r: u32, kind: EjectionKind, now: SimTime) -> Option<Change> {
        if !self.cap_allows() {
            self.stats.overflow += 1;
            return None;
        }
        let cutoff = self.enforcing(kind).min(100);
        let enforced = match cutoff {
            0 => false,
            100 => true,
            c => self.rng.next_u64() % 100 < u64::from(c),
        };
        if !enforced {
            return None;
        }
        self.ejected += 1;
        self.stats.enforced[kind.index()] += 1;
        let jitter_ms = self.rng.next_u64() % (self.jitter_ms + 1);
        let (base, max) = (self.base_ms, self.max_ms);
        let h = &mut self.hosts[r as usize];
        h.ejected = true;
        h.num_ejections += 1;
        h.last_ejection = Some(now);
        h.jitter = SimDuration::from_millis(jitter_ms);
        if u64::from(h.backoff).saturating_mul(base) < max.saturating_add(base) {
            h.backoff += 1;
        }
        Some(Change { replica: r, ejected: true, kind: Some(kind) })
    }

    /// Envoy `unejectHost`.
    fn uneject(&mut self, r: u32, now: SimTime) -> Change {
        let h = &mut self.hosts[r as usize];
        debug_assert!(h.ejected);
        h.ejected = false;
        h.consecutive_5xx = 0;
        h.consecutive_gateway_failure = 0;
        h.consecutive_local_origin_failure = 0;
        h.last_unejection = Some(now);
        self.ejected -= 1;
        Change { replica: r, ejected: false, kind: None }
    }

    /// The interval timer fired at `now`: uneject hosts whose time is up, success-rate and
    /// failure-percentage passes, backoff decay; appends changes to `out`; returns the next
    /// tick time.
    pub fn on_tick(&mut self, now: SimTime, out: &mut Vec<Change>) -> SimTime {
        for r in 0..self.hosts.len() as u32 {
            let h = &self.hosts[r as usize];
            if let (true, Some(at)) = (h.ejected, h.last_ejection) {
                let ms = u64::from(h.backoff).saturating_mul(self.base_ms).min(self.max_ms);
                let due = SimDuration::from_millis(ms) + h.jitter;
                if due <= now.since(at) {
                    out.push(self.uneject(r, now));
                }
            }
            let h = &mut self.hosts[r as usize];
            h.external.close();
            h.local.close();
        }
        self.rate_passes(Origin::External, now, out);
        self.rate_passes(Origin::Local, now, out);
        for h in &mut self.hosts {
            if !h.ejected && h.last_unejection.is_some_and(|u| now.since(u) >= self.interval) {
                h.backoff = h.backoff.saturating_sub(1);
            }
        }
        self.next_tick = now + self.interval;
        self.next_tick
    }

    /// Envoy `processSuccessRateEjections` for one origin.
    fn rate_passes(&mut self, origin: Origin, now: SimTime, out: &mut Vec<Change>) {
        let p = &self.p;
        let n = self.hosts.len() as u64;
        if n < u64::from(p.success_rate_minimum_hosts)
            && n < u64::from(p.failure_percentage_minimum_hosts)
        {
            return;
        }
        let sr_volume = u64::from(p.success_rate_request_volume);
        let fp_volume = u64::from(p.failure_percentage_request_volume);
        let mut sr_hosts: Vec<(u32, f64)> = Vec::new();
        let mut fp_hosts: Vec<(u32, f64)> = Vec::new();
        for (r, h) in self.hosts.iter().enumerate() {
            if h.ejected {
                continue;
            }
            let window = match origin {
                Origin::External => &h.external,
                Origin::Local => &h.local,
            };
            let Some((rate, volume)) = window.last() else { continue };
            if volume >= sr_volume {
                sr_hosts.push((r as u32, rate));
            }
            if volume >= fp_volume {
                fp_hosts.push((r as u32, rate));
            }
        }
        let (sr_kind, fp_kind) = match origin {
            Origin::External => (EjectionKind::SuccessRate, EjectionKind::FailurePercentage),
            Origin::Local => {
                (EjectionKind::LocalOriginSuccessRate, EjectionKind::LocalOriginFailurePercentage)
            }
        };
        if !sr_hosts.is_empty() && sr_hosts.len() as u64 >= u64::from(p.success_rate_minimum_hosts)
        {
            let factor = f64::from(p.success_rate_stdev_factor) / 1000.0;
            let threshold = success_rate_threshold(&sr_hosts, factor);
            for &(r, rate) in &sr_hosts {
                if rate < threshold {
                    self.stats.detected[sr_kind.index()] += 1;
                    out.extend(self.eject(r, sr_kind, now));
                }
            }
        }
        let p = &self.p;
        if !fp_hosts.is_empty()
            && fp_hosts.len() as u64 >= u64::from(p.failure_percentage_minimum_hosts)
        {
            let threshold = f64::from(p.failure_percentage_threshold);
            for &(r, rate) in &fp_hosts {
                if 100.0 - rate >= threshold && !self.hosts[r as usize].ejected {
                    self.stats.detected[fp_kind.index()] += 1;
                    out.extend(self.eject(r, fp_kind, now));
                }
            }
        }
    }

    /// A successful active health check of r (successful_active_health_check_uneject_host).
    pub fn on_active_health_success(&mut self, r: u32, now: SimTime) -> Option<Change> {
        (self.p.successful_active_health_check_uneject_host && self.hosts[r as usize].ejected)
            .then(|| self.uneject(r, now))
    }
}

/// `mean − factor · σ` over the participants' success rates (population σ), Envoy
/// `successRateEjectionThreshold`.
fn success_rate_threshold(hosts: &[(u32, f64)], factor: f64) -> f64 {
    let k = hosts.len() as f64;
    let mean = hosts.iter().map(|&(_, x)| x).sum::<f64>() / k;
    let variance = hosts.iter().map(|&(_, x)| (x - mean).powi(2)).sum::<f64>() / k;
    mean - factor * variance.sqrt()
}

/// Envoy's panic threshold: with `healthy` of `total` hosts, whether the load balancer ignores
/// health and routes to all hosts. Exactly (one priority, nothing degraded or excluded): no
/// panic while `min(100, 140·healthy/total)` (integer) is 100; otherwise panic iff
/// `100·healthy/total` is below `healthy_panic_threshold_percent` truncated to a whole percent
/// and capped at 100. 0 disables panic (Istio's minHealthPercent default); an empty host set
/// panics unless panic is disabled.
pub fn in_panic(healthy: u32, total: u32, healthy_panic_threshold_percent: f64) -> bool {
    // `as` saturates and maps NaN to 0, like a non-positive percentage.
    let threshold = (healthy_panic_threshold_percent.clamp(0.0, 100.0) as u64).min(100);
    let (h, t) = (u64::from(healthy), u64::from(total));
    if t == 0 {
        return threshold > 0;
    }
    let availability = (140 * h / t).min(100);
    availability < 100 && 100 * h < threshold * t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::status::AttemptResult;
    use crate::spec::protection::*;
    use AttemptResult::{ConnectFailure, Reset, Status, Success, Timeout};

    fn secs(s: u64) -> SimTime {
        SimTime::ZERO + SimDuration::from_secs(s)
    }

    fn detector(p: &OutlierParams, n: usize) -> OutlierDetector {
        p.validate().expect("valid params");
        OutlierDetector::new(p, n, Stream::from_seed(11))
    }

    /// Feeds `k` copies of `result` from `r` at `now`; returns the ejection change if any.
    fn feed(
        d: &mut OutlierDetector,
        r: u32,
        result: AttemptResult,
        k: u32,
        now: SimTime,
    ) -> Vec<Change> {
        (0..k).filter_map(|_| d.on_result(r, result, now)).collect()
    }

    /// Ticks from the detector's next tick through `until` (inclusive); returns the changes
    /// with their tick times.
    fn tick_until(d: &mut OutlierDetector, until: SimTime) -> Vec<(SimTime, Change)> {
        let mut all = Vec::new();
        while d.next_tick() <= until {
            let t = d.next_tick();
            let mut out = Vec::new();
            d.on_tick(t, &mut out);
            all.extend(out.into_iter().map(|c| (t, c)));
        }
        all
    }

    /// Ticks until a tick reports a change (or past `limit`); returns that tick's time.
    fn next_change(d: &mut OutlierDetector, limit: SimTime) -> Option<SimTime> {
        while d.next_tick() <= limit {
            let t = d.next_tick();
            let mut out = Vec::new();
            d.on_tick(t, &mut out);
            if !out.is_empty() {
                return Some(t);
            }
        }
        None
    }

    fn permissive() -> OutlierParams {
        OutlierParams { max_ejection_percent: 100, ..OutlierParams::default() }
    }

    #[test]
    fn defaults_match_envoy_and_parse_with_typo_rejected() {
        let p: OutlierParams = serde_yaml_ng::from_str("{}").expect("empty section");
        assert_eq!(p, OutlierParams::default());
        assert_eq!(p.max_ejection_time_ms(), 300_000);
        assert_eq!((p.interval_ms(), p.base_ejection_time_ms()), (10_000, 30_000));
        assert_eq!(p.success_rate_stdev_factor, 1900);
        assert_eq!(p.enforcing_consecutive_gateway_failure, 0);
        let p: OutlierParams =
            serde_yaml_ng::from_str("base_ejection_time_s: 400\nmax_ejection_percent: 50")
                .expect("yaml");
        assert_eq!(p.max_ejection_time_ms(), 400_000, "max defaults to base when base is larger");
        assert_eq!(p.max_ejection_percent, 50);
        let err = serde_yaml_ng::from_str::<OutlierParams>("consecutive5xx: 3").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn validate_names_the_field_and_the_fix() {
        let bad = |p: OutlierParams| p.validate().unwrap_err();
        let e = bad(OutlierParams { interval_s: 0.0, ..Default::default() });
        assert!(e.starts_with("interval_s = 0:") && e.contains("at least 0.001"), "{e}");
        let e = bad(OutlierParams { max_ejection_time_s: Some(10.0), ..Default::default() });
        assert!(e.starts_with("max_ejection_time_s = 10:") && e.contains("base_ejection_time_s"));
        let e = bad(OutlierParams { max_ejection_percent: 101, ..Default::default() });
        assert!(e.starts_with("max_ejection_percent = 101:") && e.contains("0 to 100"), "{e}");
        let e = bad(OutlierParams { max_ejection_time_jitter_s: -1.0, ..Default::default() });
        assert!(e.starts_with("max_ejection_time_jitter_s = -1:"), "{e}");
        let e = bad(OutlierParams { enforcing_success_rate: 200, ..Default::default() });
        assert!(e.starts_with("enforcing_success_rate = 200:"), "{e}");
        assert!(OutlierParams::default().validate().is_ok());
    }

    #[test]
    fn consecutive_counters_fire_on_exact_equality() {
        let mut d = detector(&permissive(), 2);
        assert!(feed(&mut d, 0, Status(500), 4, secs(1)).is_empty());
        assert_eq!(d.counters(0).consecutive_5xx, 4);
        let ch = d.on_result(0, Status(500), secs(1));
        assert_eq!(
            ch,
            Some(Change { replica: 0, ejected: true, kind: Some(EjectionKind::Consecutive5xx) })
        );
        assert_eq!(d.counters(0).consecutive_5xx, 0, "the detection zeroes its counter");
        // A success in between zeroes the run: 4 + success + 4 never ejects.
        feed(&mut d, 1, Status(500), 4, secs(1));
        feed(&mut d, 1, Success, 1, secs(1));
        assert!(feed(&mut d, 1, Status(500), 4, secs(1)).is_empty());
        assert!(!d.is_ejected(1));
        // 429 is not a 5xx: it zeroes the run too, and counts as a success-rate success.
        feed(&mut d, 1, Status(429), 1, secs(1));
        assert_eq!(d.counters(1).consecutive_5xx, 0);
        // 0 disables: the counter can never equal 0 after an increment.
        let p = OutlierParams { consecutive_5xx: 0, ..permissive() };
        let mut d = detector(&p, 1);
        assert!(feed(&mut d, 0, Status(500), 50, secs(1)).is_empty());
    }

    #[test]
    fn gateway_failure_counter_is_reset_by_other_codes() {
        let p = OutlierParams {
            consecutive_5xx: 100,
            enforcing_consecutive_gateway_failure: 100,
            ..permissive()
        };
        let mut d = detector(&p, 1);
        // 503, 504, reset (503) and timeout (504) all count; a 500 zeroes the run.
        for r in [Status(503), Status(504), Reset, Timeout] {
            assert!(d.on_result(0, r, secs(1)).is_none());
        }
        assert_eq!(d.counters(0).consecutive_gateway_failure, 4);
        d.on_result(0, Status(500), secs(1));
        assert_eq!(d.counters(0).consecutive_gateway_failure, 0);
        assert_eq!(d.counters(0).consecutive_5xx, 5, "a 500 still extends the 5xx run");
        feed(&mut d, 0, ConnectFailure, 4, secs(1));
        let ch = d.on_result(0, Status(502), secs(1));
        assert_eq!(ch.and_then(|c| c.kind), Some(EjectionKind::ConsecutiveGatewayFailure));
    }

    #[test]
    fn enforcing_0_percent_detects_only() {
        // Defaults: gateway failures are detected with enforcing 0 %.
        let p = OutlierParams { consecutive_5xx: 0, ..permissive() };
        let mut d = detector(&p, 1);
        assert!(feed(&mut d, 0, Status(503), 12, secs(1)).is_empty());
        assert!(!d.is_ejected(0));
        let g = EjectionKind::ConsecutiveGatewayFailure.index();
        // Detections at the 5th and 10th: the counter restarts after each detection.
        assert_eq!(d.stats().detected[g], 2);
        assert_eq!(d.stats().enforced[g], 0);
        assert_eq!(d.counters(0).consecutive_gateway_failure, 2);
        // 100 % ejects on the first detection, with no draw.
        let p = OutlierParams {
            consecutive_5xx: 0,
            enforcing_consecutive_gateway_failure: 100,
            ..permissive()
        };
        let mut d = detector(&p, 1);
        assert_eq!(feed(&mut d, 0, Status(503), 5, secs(1)).len(), 1);
        assert_eq!(d.stats().enforced[g], 1);
    }

    #[test]
    fn enforcing_percentage_ejects_a_matching_share_of_detections() {
        let p = OutlierParams { enforcing_consecutive_5xx: 30, ..permissive() };
        let mut d = detector(&p, 1);
        let mut ejections = 0;
        for i in 0..2000 {
            let t = secs(i);
            if feed(&mut d, 0, Status(500), 5, t).len() == 1 {
                ejections += 1;
                d.on_active_health_success(0, t);
            }
        }
        let c = EjectionKind::Consecutive5xx.index();
        assert_eq!(d.stats().detected[c], 2000);
        assert_eq!(d.stats().enforced[c], ejections);
        // Binomial(2000, 0.3): mean 600, sd 20.5; 5 sd.
        assert!((ejections as i64 - 600).abs() < 103, "{ejections}");
    }

    #[test]
    fn ejection_backoff_30_60_90_s_quantised_to_the_interval_and_capped() {
        let mut d = detector(&permissive(), 1);
        // First ejection at 12 s: 30 s are due at 42 s; ticks are at 10, 20, ... -> 50 s.
        assert_eq!(feed(&mut d, 0, Status(500), 5, secs(12)).len(), 1);
        assert_eq!(d.eject_backoff(0), 1);
        let un = tick_until(&mut d, secs(50));
        assert_eq!(un, vec![(secs(50), Change { replica: 0, ejected: false, kind: None })]);
        // Re-ejected at once (no interval without ejection yet): 60 s from 51 s -> tick 120.
        assert_eq!(feed(&mut d, 0, Status(500), 5, secs(51)).len(), 1);
        assert_eq!(d.eject_backoff(0), 2);
        let un = tick_until(&mut d, secs(120));
        assert_eq!(un.iter().map(|&(t, _)| t).collect::<Vec<_>>(), vec![secs(120)]);
        // Third: 90 s. Ejected exactly at a tick the length is exact: 120 -> 210.
        assert_eq!(feed(&mut d, 0, Status(500), 5, secs(120)).len(), 1);
        assert_eq!(d.eject_backoff(0), 3);
        let un = tick_until(&mut d, secs(210));
        assert_eq!(un.iter().map(|&(t, _)| t).collect::<Vec<_>>(), vec![secs(210)]);

        // Cap: base 30 s, max 60 s. Lengths 30, 60, 60, ...; the multiplier stops at 3
        // (3·30 = 90 is not < 60 + 30), one step above max/base.
        let p = OutlierParams { max_ejection_time_s: Some(60.0), ..permissive() };
        let mut d = detector(&p, 1);
        let mut t = secs(10);
        let mut lengths = Vec::new();
        for _ in 0..4 {
            assert_eq!(feed(&mut d, 0, Status(500), 5, t).len(), 1);
            let end = next_change(&mut d, secs(10_000)).expect("un-ejected");
            lengths.push((end - t).as_secs_f64());
            t = end;
        }
        assert_eq!(lengths, vec![30.0, 60.0, 60.0, 60.0]);
        assert_eq!(d.eject_backoff(0), 3);
    }

    #[test]
    fn backoff_decays_by_one_per_interval_without_ejection() {
        let mut d = detector(&permissive(), 1);
        // Back-to-back ejections, each at the un-ejection tick: multiplier 1, 2, 3.
        let mut t = secs(10);
        for k in 1..=3 {
            feed(&mut d, 0, Status(500), 5, t);
            assert_eq!(d.eject_backoff(0), k);
            t = next_change(&mut d, secs(10_000)).expect("un-ejected");
        }
        assert_eq!(t, secs(10 + 30 + 60 + 90));
        assert_eq!(d.eject_backoff(0), 3, "no decay at the un-ejection tick itself");
        tick_until(&mut d, secs(200));
        assert_eq!(d.eject_backoff(0), 2);
        tick_until(&mut d, secs(210));
        assert_eq!(d.eject_backoff(0), 1);
        // Ejected again at 215 s: the multiplier goes back to 2 -> 60 s -> due 275, tick 280.
        feed(&mut d, 0, Status(500), 5, secs(215));
        assert_eq!(d.eject_backoff(0), 2);
        assert_eq!(next_change(&mut d, secs(10_000)), Some(secs(280)));
        tick_until(&mut d, secs(400));
        assert_eq!(d.eject_backoff(0), 0, "never below 0");
    }

    #[test]
    fn counters_while_ejected_and_after_unejection() {
        let mut d = detector(&permissive(), 1);
        feed(&mut d, 0, Status(500), 5, secs(1));
        assert!(d.is_ejected(0));
        // In-flight attempts still report: the run grows past the threshold silently.
        assert!(feed(&mut d, 0, Status(503), 7, secs(2)).is_empty());
        assert_eq!(
            d.counters(0),
            Counters { consecutive_5xx: 7, consecutive_gateway_failure: 7, ..Default::default() }
        );
        tick_until(&mut d, secs(40));
        assert!(!d.is_ejected(0));
        assert_eq!(d.counters(0), Counters::default(), "un-ejection zeroes all three counters");
        assert_eq!((d.num_ejections(0), d.eject_backoff(0)), (1, 1), "history is kept");
        // A fresh full run is needed again.
        assert!(feed(&mut d, 0, Status(500), 4, secs(41)).is_empty());
        assert_eq!(feed(&mut d, 0, Status(500), 1, secs(41)).len(), 1);
    }

    #[test]
    fn the_10_percent_cap_in_a_4_host_pool() {
        // Strict cap (Envoy since PR #27909): 100·1/4 = 25 > 10, nothing is ever ejected.
        let mut d = detector(&OutlierParams::default(), 4);
        for r in 0..4 {
            assert!(feed(&mut d, r, Status(500), 20, secs(1)).is_empty());
        }
        assert_eq!(d.ejected_count(), 0);
        let c = EjectionKind::Consecutive5xx.index();
        assert_eq!((d.stats().detected[c], d.stats().overflow), (16, 16));
        // Legacy cap (before #27909): 100·0/4 < 10 lets the first host go, then 25 < 10 fails.
        let p = OutlierParams { legacy_ejection_cap: true, ..OutlierParams::default() };
        let mut d = detector(&p, 4);
        let ejected: usize = (0..4).map(|r| feed(&mut d, r, Status(500), 5, secs(1)).len()).sum();
        assert_eq!((ejected, d.ejected_count()), (1, 1));
        // 10 hosts: exactly one (100·2/10 = 20 > 10); 20 hosts: two.
        for (n, allowed) in [(10, 1), (20, 2), (9, 0)] {
            let mut d = detector(&OutlierParams::default(), n);
            for r in 0..n as u32 {
                feed(&mut d, r, Status(500), 5, secs(1));
            }
            assert_eq!(d.ejected_count(), allowed, "{n} hosts");
        }
    }

    #[test]
    fn legacy_cap_overshoots_by_one_host() {
        // Envoy issue #26877: 3 hosts, 50 %: legacy ejects 2 (33 % < 50 %), strict only 1.
        for (legacy, expected) in [(true, 2), (false, 1)] {
            let p = OutlierParams {
                max_ejection_percent: 50,
                legacy_ejection_cap: legacy,
                ..OutlierParams::default()
            };
            let mut d = detector(&p, 3);
            for r in 0..3 {
                feed(&mut d, r, Status(500), 5, secs(1));
            }
            assert_eq!(d.ejected_count(), expected, "legacy {legacy}");
        }
        // Legacy with 0 %: 0 < 0 fails, nothing goes.
        let p = OutlierParams {
            max_ejection_percent: 0,
            legacy_ejection_cap: true,
            ..OutlierParams::default()
        };
        let mut d = detector(&p, 3);
        assert!(feed(&mut d, 0, Status(500), 5, secs(1)).is_empty());
    }

    #[test]
    fn always_eject_one_host() {
        let p = OutlierParams { always_eject_one_host: true, ..OutlierParams::default() };
        let mut d = detector(&p, 4);
        assert_eq!(feed(&mut d, 0, Status(500), 5, secs(1)).len(), 1);
        assert!(feed(&mut d, 1, Status(500), 5, secs(1)).is_empty(), "only while none is out");
        assert_eq!(d.ejected_count(), 1);
        // Even with 0 %, one host may go.
        let p = OutlierParams {
            always_eject_one_host: true,
            max_ejection_percent: 0,
            ..OutlierParams::default()
        };
        let mut d = detector(&p, 2);
        assert_eq!(feed(&mut d, 1, Status(500), 5, secs(1)).len(), 1);
        // Once the first is back (ejected at 1 s, due 31 s, tick 40 s), another may go.
        tick_until(&mut d, secs(40));
        assert_eq!(d.ejected_count(), 0);
        assert_eq!(feed(&mut d, 0, Status(500), 5, secs(31)).len(), 1);
    }

    /// Feeds `ok` successes and `bad` 500s (interleaved so no 5xx run forms) to `r`.
    fn load(d: &mut OutlierDetector, r: u32, ok: u32, bad: u32, now: SimTime) {
        for i in 0..ok.max(bad) {
            if i < ok {
                d.on_result(r, Success, now);
            }
            if i < bad {
                d.on_result(r, Status(500), now);
            }
        }
    }

    #[test]
    fn success_rate_outlier() {
        let p = OutlierParams { consecutive_5xx: 0, ..permissive() };
        let mut d = detector(&p, 5);
        // Envoy's worked example: rates 50, 100, 100, 100, 100 -> mean 90, σ 20,
        // threshold 90 − 1.9·20 = 52: host 0 (50 %) is an outlier.
        load(&mut d, 0, 50, 50, secs(5));
        for r in 1..5 {
            load(&mut d, r, 100, 0, secs(5));
        }
        let mut out = Vec::new();
        d.on_tick(secs(10), &mut out);
        assert_eq!(
            out,
            vec![Change { replica: 0, ejected: true, kind: Some(EjectionKind::SuccessRate) }]
        );
        // Two low hosts widen σ: rates 50, 50, 100, 100, 100 -> mean 80, σ 24.5,
        // threshold 33.5: nobody.
        let mut d = detector(&p, 5);
        load(&mut d, 0, 50, 50, secs(5));
        load(&mut d, 1, 50, 50, secs(5));
        for r in 2..5 {
            load(&mut d, r, 100, 0, secs(5));
        }
        let mut out = Vec::new();
        d.on_tick(secs(10), &mut out);
        assert!(out.is_empty());
        // Too little volume (99 < 100) or too few hosts (4 < 5): no pass at all.
        let mut d = detector(&p, 5);
        load(&mut d, 0, 49, 50, secs(5));
        for r in 1..4 {
            load(&mut d, r, 100, 0, secs(5));
        }
        load(&mut d, 4, 99, 0, secs(5));
        let mut out = Vec::new();
        d.on_tick(secs(10), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn success_rate_reads_only_the_last_interval() {
        let p = OutlierParams { consecutive_5xx: 0, ..permissive() };
        // The bad host's 100 requests split over two intervals: 50 + 50, each below the
        // request volume, so neither pass counts it; the windows are not cumulative.
        let mut d = detector(&p, 5);
        let mut out = Vec::new();
        for (t, tick) in [(5, 10), (15, 20)] {
            load(&mut d, 0, 25, 25, secs(t));
            for r in 1..5 {
                load(&mut d, r, 100, 0, secs(t));
            }
            d.on_tick(secs(tick), &mut out);
        }
        assert!(out.is_empty());
        // Results between ticks are read at the next tick, not before.
        let mut d = detector(&p, 5);
        d.on_tick(secs(10), &mut out);
        load(&mut d, 0, 50, 50, secs(15));
        for r in 1..5 {
            load(&mut d, r, 100, 0, secs(15));
        }
        assert!(out.is_empty());
        d.on_tick(secs(20), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn failure_percentage_pass() {
        let p =
            OutlierParams { consecutive_5xx: 0, enforcing_failure_percentage: 100, ..permissive() };
        let mut d = detector(&p, 5);
        // 85 % failures (>= 85) with volume 60 >= 50: ejected; 84 %: kept.
        load(&mut d, 0, 9, 51, secs(5));
        load(&mut d, 1, 10, 50, secs(5)); // 83.3 %
        for r in 2..5 {
            load(&mut d, r, 60, 0, secs(5));
        }
        let mut out = Vec::new();
        d.on_tick(secs(10), &mut out);
        assert_eq!(
            out,
            vec![Change { replica: 0, ejected: true, kind: Some(EjectionKind::FailurePercentage) }]
        );
        // Volume 60 is below the success-rate volume (100): that pass did not run.
        assert_eq!(d.stats().detected[EjectionKind::SuccessRate.index()], 0);
        assert_eq!(d.stats().detected[EjectionKind::FailurePercentage.index()], 1);
        // With the default enforcing 0 % the same host is only detected.
        let p = OutlierParams { consecutive_5xx: 0, ..permissive() };
        let mut d = detector(&p, 5);
        load(&mut d, 0, 9, 51, secs(5));
        for r in 1..5 {
            load(&mut d, r, 60, 0, secs(5));
        }
        out.clear();
        d.on_tick(secs(10), &mut out);
        assert!(out.is_empty());
        assert_eq!(d.stats().detected[EjectionKind::FailurePercentage.index()], 1);
    }

    #[test]
    fn split_mode_counts_local_origin_apart() {
        let p = OutlierParams { split_external_local_origin_errors: true, ..permissive() };
        let mut d = detector(&p, 1);
        // Resets and timeouts follow a connect success: the local run never passes 1, and
        // the next connect failures start from there (1 + 4 = 5 ejects on the 4th).
        for r in [Reset, Timeout, Reset, Timeout, Reset, Timeout] {
            assert!(d.on_result(0, r, secs(1)).is_none());
        }
        assert_eq!(d.counters(0).consecutive_local_origin_failure, 1);
        assert_eq!(d.counters(0).consecutive_5xx, 0, "local errors are not 5xx when split");
        // Back-to-back connect failures do eject.
        let ch = feed(&mut d, 0, ConnectFailure, 5, secs(1));
        assert_eq!(ch[0].kind, Some(EjectionKind::ConsecutiveLocalOriginFailure));
        // HTTP statuses still drive the 5xx counter.
        let mut d = detector(&p, 1);
        feed(&mut d, 0, ConnectFailure, 4, secs(1));
        d.on_result(0, Status(500), secs(1));
        assert_eq!(d.counters(0).consecutive_local_origin_failure, 0, "it connected");
        assert_eq!(d.counters(0).consecutive_5xx, 1);
    }

    #[test]
    fn jitter_extends_the_ejection_in_whole_ms() {
        let p = OutlierParams { max_ejection_time_jitter_s: 15.0, ..permissive() };
        let mut ends = Vec::new();
        for seed in 0..40 {
            let mut d = OutlierDetector::new(&p, 1, Stream::from_seed(seed));
            feed(&mut d, 0, Status(500), 5, secs(10));
            let un = tick_until(&mut d, secs(100));
            ends.push(un[0].0.as_nanos() / 1_000_000_000);
        }
        // 30 s + U{0..15000} ms from 10 s: due in [40, 55] s -> ticks 40, 50 or 60.
        assert!(ends.iter().all(|&e| [40, 50, 60].contains(&e)), "{ends:?}");
        assert!(ends.contains(&50) && ends.contains(&60), "{ends:?}");
    }

    #[test]
    fn active_health_check_unejects() {
        let mut d = detector(&permissive(), 2);
        feed(&mut d, 1, Status(500), 5, secs(1));
        assert_eq!(d.on_active_health_success(0, secs(2)), None, "not ejected");
        assert_eq!(
            d.on_active_health_success(1, secs(2)),
            Some(Change { replica: 1, ejected: false, kind: None })
        );
        assert_eq!((d.ejected_count(), d.eject_backoff(1)), (0, 1));
        let p =
            OutlierParams { successful_active_health_check_uneject_host: false, ..permissive() };
        let mut d = detector(&p, 1);
        feed(&mut d, 0, Status(500), 5, secs(1));
        assert_eq!(d.on_active_health_success(0, secs(2)), None);
        assert!(d.is_ejected(0));
    }

    #[test]
    fn ticks_are_periodic_from_the_first_interval() {
        let mut d = detector(&OutlierParams::default(), 3);
        assert_eq!(d.next_tick(), secs(10));
        let mut out = Vec::new();
        assert_eq!(d.on_tick(secs(10), &mut out), secs(20));
        assert_eq!(d.next_tick(), secs(20));
    }

    #[test]
    fn panic_threshold_as_envoy_computes_it() {
        // Default 50 %: 2 of 4 healthy is not below 50 %, 1 of 4 is.
        assert!(!in_panic(2, 4, 50.0));
        assert!(in_panic(1, 4, 50.0));
        // 0 disables (Istio's minHealthPercent), even with nothing healthy.
        assert!(!in_panic(0, 4, 0.0));
        // Overprovisioning 1.4 only matters above 71 %: 3 of 4 -> 140·3/4 = 105, capped 100:
        // no panic although 75 % < 80 %; 7 of 10 -> 98 < 100 and 70 % < 80 %: panic.
        assert!(!in_panic(3, 4, 80.0));
        assert!(in_panic(7, 10, 80.0));
        // The threshold is truncated to a whole percent: 50.9 acts as 50.
        assert!(!in_panic(1, 2, 50.9));
        assert!(in_panic(1, 2, 51.0));
        // Empty host set: panic unless disabled; 100 % threshold with all healthy: none.
        assert!(in_panic(0, 0, 50.0));
        assert!(!in_panic(0, 0, 0.0));
        assert!(!in_panic(5, 5, 100.0));
    }
}
