//! Active health checking by one gateway instance: every replica is probed on its own timer and
//! marked healthy or unhealthy from consecutive probe results, with Envoy's rules (reference
//! §3.4); [`ActiveHealthParams::sglang`] gives the SGLang gateway's numbers and schedule.
//!
//! Semantics (Envoy `HealthCheckerImplBase::ActiveHealthCheckSession`):
//!
//! * A probe of replica `r` is sent when its timer fires; it ends either with a response
//!   ([`ProbeResult::Success`] for an expected status, [`ProbeResult::BadStatus`] for any other)
//!   or with a network failure: connection refused/closed, or no response within `timeout_s`
//!   ([`ProbeResult::NetworkFailure`]). The engine decides which and when; this module only
//!   keeps the state.
//! * Success resets the failure run. An unhealthy host becomes healthy after
//!   `healthy_threshold` consecutive successes; a host added while the checker runs
//!   ([`ActiveHealth::add_host_pending`]) starts unhealthy and becomes healthy on its **first
//!   result if that result is a success** (Envoy's `first_check_`). The first-check rule is
//!   spent by the first result of either kind: a new host whose first probe fails needs
//!   `healthy_threshold` successes like any other unhealthy host.
//! * A failure resets the success run. A healthy host becomes unhealthy after
//!   `unhealthy_threshold` consecutive failures, or at once on a `BadStatus` when
//!   `bad_status_immediate` (Envoy: a status that is neither expected nor retriable ignores the
//!   threshold). SGLang counts every failed probe alike (`bad_status_immediate: false`, like
//!   Envoy with every status listed as retriable).
//! * Next probe (Envoy `interval(state, transition)`): the interval timer is armed when the
//!   result is known (response or timeout), so a probe's duration adds to the period. The base
//!   is chosen by the result and the transition it caused: a success that leaves an unhealthy
//!   host *still pending* (below `healthy_threshold`) waits `healthy_edge_interval`, any other
//!   success `interval`; a failure that leaves a healthy host still pending waits
//!   `unhealthy_edge_interval`, any other failure (the one that flips, or one on an already
//!   unhealthy host) `unhealthy_interval`. Quirk worth knowing: the *edge* intervals apply
//!   while a transition is pending, not after it — the proto comment says "the first health
//!   check right after a host is marked", the code (and its own comment) says pending. The
//!   first result of a new host is a change (or no change when it fails), never pending. Then
//!   `base + (random % (interval_jitter_percent · base / 100)) + (random % interval_jitter)`
//!   in Envoy's order, each term drawn only when its modulus is > 0 (Envoy works in
//!   milliseconds, this module in nanoseconds).
//! * `fixed_rate: true` replaces "armed after the result" by a ticker: the next probe is due
//!   the chosen interval after the previous one was *sent* (SGLang's `tokio::time::interval`
//!   loop), never before the result is in.
//!
//! First probes: Envoy probes every host at once when the checker starts (or within
//! `initial_jitter`), and a new host as soon as it is added; from then on each host drifts by
//! its probe durations, so in a long-running gateway the phases are arbitrary. A run starts in
//! that steady state — every replica healthy, probes already spread — so
//! [`ActiveHealth::first_probe`] spreads them evenly over one interval: instance `g` of `G`
//! probes replica `r` of `n` first at `(r·G + g) · interval / (n·G)` plus one jitter draw (the
//! instances interleave rather than probe in lockstep). Probing everything at t = 0 would be
//! an artefact of the simulation's start, not a behaviour of the system. (SGLang probes all
//! workers in one pass per tick; per replica the phase relative to a fault is uniform either
//! way, so the spread does not change detection latency.)
//!
//! Not modelled: Envoy's `no_traffic_interval` (60 s until the cluster has seen traffic — the
//! run starts with traffic), `initial_jitter`, degraded hosts, the `health_check.min_interval`
//! / `max_interval` runtime clamps and the 1 ms floor (intervals here are validated > 0); the
//! immediate-fail header; SGLang's one-after-another pass (a timing-out worker delays the
//! probes behind it in the same pass).
//!
//! Invariants: every replica starts healthy with empty runs; all times are [`SimTime`]
//! nanoseconds; the only randomness is the jitter, drawn from the stream given to
//! [`ActiveHealth::new`] in call order (no draw at all when both jitters are 0); the next
//! probe is never earlier than the result that scheduled it.
//!
//! Sources: envoyproxy/envoy
//! `source/extensions/health_checkers/common/health_checker_base_impl.cc` (`interval`,
//! `intervalWithJitter`, `handleSuccess`, `setUnhealthy`, `handleFailure`, `onIntervalBase`,
//! `onTimeoutBase`, `onInitialInterval`), `api/envoy/config/core/v3/health_check.proto`
//! (`interval`, `timeout`, both thresholds required; `unhealthy_interval` = interval,
//! `unhealthy_edge_interval` = unhealthy_interval, `healthy_edge_interval` = interval;
//! `interval_jitter`, `interval_jitter_percent`), `source/common/upstream/upstream_impl.cc`
//! (hosts added to a health-checked cluster start with `FAILED_ACTIVE_HC`),
//! `source/extensions/health_checkers/http/health_checker_impl.cc` (unexpected status →
//! non-network, non-retriable failure; timeout → network failure); sgl-project/sglang
//! `sgl-router/src/config/types.rs` (`HealthCheckConfig`: 60 s, 5 s, 3 failures, 2 successes),
//! `sgl-router/src/core/worker.rs` (`check_health_async`: any non-2xx or error is one failure,
//! thresholds on consecutive counts; `start_health_checker`: a `tokio::time::interval` tick
//! per pass).

use crate::rng::Stream;
use crate::spec::protection::ActiveHealthParams;
use crate::time::{SimDuration, SimTime};

/// A run of identical probe results: the result and how many times in a row it came. Shared
/// with the readiness prober, whose kubelet keeps exactly this (`lastResult`, `resultRun`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Run {
    ok: bool,
    len: u32,
}

impl Run {
    /// A run of `len` results equal to `ok`.
    pub(crate) fn new(ok: bool, len: u32) -> Run {
        Run { ok, len }
    }

    /// Adds a result; returns the length of the run it now belongs to (1 when it breaks it).
    pub(crate) fn push(&mut self, ok: bool) -> u32 {
        if self.len > 0 && self.ok == ok {
            self.len = self.len.saturating_add(1);
        } else {
            self.ok = ok;
            self.len = 1;
        }
        self.len
    }
}
/// How one probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    /// An expected status (2xx) within the timeout.
    Success,
    /// No usable response: connection refused or closed, or nothing by the timeout.
    NetworkFailure,
    /// A response with an unexpected HTTP status (5xx, 429, ...).
    BadStatus,
}

/// What a result did to a host (Envoy `HealthTransition`); picks the next interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transition {
    Unchanged,
    Pending,
    Changed,
}

/// Per-replica state.
#[derive(Debug, Clone, Copy)]
struct Host {
    healthy: bool,
    /// No result yet since the host was added (Envoy `first_check_`).
    first_check: bool,
    run: Run,
    /// When the probe in progress (or the next one) was (or will be) sent.
    next_send: SimTime,
}

impl Host {
    const STEADY: Host = Host {
        healthy: true,
        first_check: false,
        run: Run { ok: true, len: 0 },
        next_send: SimTime::ZERO,
    };
}

/// Active health state of one gateway instance over all replicas.
#[derive(Debug, Clone)]
pub struct ActiveHealth {
    interval: SimDuration,
    timeout: SimDuration,
    unhealthy_interval: SimDuration,
    unhealthy_edge_interval: SimDuration,
    healthy_edge_interval: SimDuration,
    jitter: SimDuration,
    jitter_percent: u32,
    unhealthy_threshold: u32,
    healthy_threshold: u32,
    bad_status_immediate: bool,
    fixed_rate: bool,
    hosts: Vec<Host>,
    /// Replicas at construction: the denominator of the first-probe spread.
    spread_over: u32,
    instance: u32,
    instances: u32,
    rng: Stream,
}

impl ActiveHealth {
    /// State for `replicas` replicas, all healthy. `p` must have passed
    /// [`ActiveHealthParams::validate`]; `rng` is drawn for jitter only.
    pub fn new(p: &ActiveHealthParams, replicas: usize, rng: Stream) -> ActiveHealth {
        let secs = SimDuration::from_secs_f64;
        let interval = secs(p.interval_s);
        let unhealthy_interval = p.unhealthy_interval_s.map_or(interval, secs);
        ActiveHealth {
            interval,
            timeout: secs(p.timeout_s),
            unhealthy_interval,
            unhealthy_edge_interval: p.unhealthy_edge_interval_s.map_or(unhealthy_interval, secs),
            healthy_edge_interval: p.healthy_edge_interval_s.map_or(interval, secs),
            jitter: secs(p.interval_jitter_s),
            jitter_percent: p.interval_jitter_percent,
            unhealthy_threshold: p.unhealthy_threshold,
            healthy_threshold: p.healthy_threshold,
            bad_status_immediate: p.bad_status_immediate,
            fixed_rate: p.fixed_rate,
            hosts: vec![Host::STEADY; replicas],
            spread_over: replicas.max(1) as u32,
            instance: 0,
            instances: 1,
            rng,
        }
    }

    /// This checker belongs to gateway instance `g` of `of`: its first probes are offset so
    /// that the instances interleave (see the module doc). Default: instance 0 of 1.
    pub fn with_instance(mut self, g: u32, of: u32) -> ActiveHealth {
        debug_assert!(of >= 1 && g < of, "instance {g} of {of}");
        self.instances = of.max(1);
        self.instance = g.min(self.instances - 1);
        self
    }

    /// When the first probe of replica `r` is sent: `(r·G + g) · interval / (n·G)` plus one
    /// jitter draw. Call once per replica, in replica order (the draws follow call order).
    pub fn first_probe(&mut self, r: u32) -> SimTime {
        let slots = u128::from(self.spread_over) * u128::from(self.instances);
        let slot = u128::from(r) * u128::from(self.instances) + u128::from(self.instance);
        let offset = (u128::from(self.interval.as_nanos()) * slot / slots) as u64;
        let t =
            SimTime::ZERO + SimDuration(offset) + self.jittered(SimDuration::ZERO, self.interval);
        self.hosts[r as usize].next_send = t;
        t
    }

    /// A probe of `r` ended with `res` at `now` (its response, or the timeout). Returns the
    /// health flip if any (`Some(true)`: became healthy) and when the next probe is sent.
    pub fn on_result(&mut self, r: u32, res: ProbeResult, now: SimTime) -> (Option<bool>, SimTime) {
        let (ht, ut) = (self.healthy_threshold, self.unhealthy_threshold);
        let immediate = res == ProbeResult::BadStatus && self.bad_status_immediate;
        let h = &mut self.hosts[r as usize];
        let ok = res == ProbeResult::Success;
        let run = h.run.push(ok);
        let (flip, transition) = match (ok, h.healthy) {
            (true, false) if h.first_check || run >= ht => (Some(true), Transition::Changed),
            (false, true) if immediate || run >= ut => (Some(false), Transition::Changed),
            (true, false) | (false, true) => (None, Transition::Pending),
            _ => (None, Transition::Unchanged),
        };
        if let Some(healthy) = flip {
            h.healthy = healthy;
        }
        h.first_check = false;
        let sent = h.next_send;
        let base = match (ok, transition) {
            (true, Transition::Pending) => self.healthy_edge_interval,
            (true, _) => self.interval,
            (false, Transition::Pending) => self.unhealthy_edge_interval,
            (false, _) => self.unhealthy_interval,
        };
        let wait = self.jittered(base, base);
        let from = if self.fixed_rate { sent } else { now };
        let next = (from + wait).max(now);
        self.hosts[r as usize].next_send = next;
        (flip, next)
    }

    /// Whether `r` is currently healthy (eligible for routing by this instance).
    #[inline]
    pub fn is_healthy(&self, r: u32) -> bool {
        self.hosts[r as usize].healthy
    }

    /// How long a probe waits for its response.
    #[inline]
    pub fn timeout(&self) -> SimDuration {
        self.timeout
    }

    /// When the probe of `r` in progress was sent, or the next one is due (what the last call
    /// for `r` returned); lets the engine recognise a stale probe event.
    pub fn next_probe(&self, r: u32) -> SimTime {
        self.hosts[r as usize].next_send
    }

    /// Replica `r` is a new host (added by autoscaling, or a replacement treated as new): it
    /// starts unhealthy with empty runs and becomes healthy on its first result if that is a
    /// success. Replicas beyond the current count are added (healthy, for the ones skipped).
    pub fn add_host_pending(&mut self, r: u32) {
        let i = r as usize;
        if self.hosts.len() <= i {
            self.hosts.resize(i + 1, Host::STEADY);
        }
        let next_send = self.hosts[i].next_send;
        self.hosts[i] = Host { healthy: false, first_check: true, run: Run::default(), next_send };
    }

    /// [`Self::add_host_pending`] at `now`, returning when the new host's first probe is sent:
    /// at once, as Envoy starts a session for an added host (no `initial_jitter`).
    pub fn add_host(&mut self, r: u32, now: SimTime) -> SimTime {
        self.add_host_pending(r);
        self.hosts[r as usize].next_send = now;
        now
    }

    /// `base` plus Envoy's two jitter terms (percent of `of`, then the absolute jitter).
    fn jittered(&mut self, base: SimDuration, of: SimDuration) -> SimDuration {
        let mut d = base;
        let pct = (u128::from(self.jitter_percent) * u128::from(of.as_nanos()) / 100) as u64;
        if pct > 0 {
            d = d + SimDuration(self.rng.next_u64() % pct);
        }
        let j = self.jitter.as_nanos();
        if j > 0 {
            d = d + SimDuration(self.rng.next_u64() % j);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::protection::*;

    fn s(x: f64) -> SimTime {
        SimTime::ZERO + SimDuration::from_secs_f64(x)
    }

    fn checker(p: &ActiveHealthParams, n: usize) -> ActiveHealth {
        p.validate().expect("valid params");
        ActiveHealth::new(p, n, Stream::from_seed(11))
    }

    /// Distinct intervals so every choice is visible: interval 5, unhealthy 7, unhealthy
    /// edge 2, healthy edge 3.
    fn distinct() -> ActiveHealthParams {
        ActiveHealthParams {
            unhealthy_interval_s: Some(7.0),
            unhealthy_edge_interval_s: Some(2.0),
            healthy_edge_interval_s: Some(3.0),
            ..ActiveHealthParams::default()
        }
    }

    use ProbeResult::{BadStatus, NetworkFailure as Fail, Success as Pass};

    #[test]
    fn defaults_parse_and_validate() {
        let p: ActiveHealthParams = serde_yaml_ng::from_str("{}").expect("yaml");
        assert_eq!(p, ActiveHealthParams::default());
        assert_eq!((p.interval_s, p.timeout_s), (5.0, 1.0));
        assert_eq!((p.unhealthy_threshold, p.healthy_threshold), (3, 2));
        assert!(p.validate().is_ok());
        let g = ActiveHealthParams::sglang();
        assert_eq!(
            (g.interval_s, g.timeout_s, g.unhealthy_threshold, g.healthy_threshold),
            (60.0, 5.0, 3, 2)
        );
        assert!(g.validate().is_ok());
        let y: ActiveHealthParams =
            serde_yaml_ng::from_str("interval_s: 10\nunhealthy_edge_interval_s: 1").expect("yaml");
        assert_eq!((y.interval_s, y.unhealthy_edge_interval_s), (10.0, Some(1.0)));
        assert!(serde_yaml_ng::from_str::<ActiveHealthParams>("intervall_s: 1").is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let bad = [
            (ActiveHealthParams { interval_s: 0.0, ..Default::default() }, "interval_s"),
            (ActiveHealthParams { timeout_s: 6.0, ..Default::default() }, "timeout_s"),
            (ActiveHealthParams { timeout_s: f64::NAN, ..Default::default() }, "timeout_s"),
            (
                ActiveHealthParams { unhealthy_interval_s: Some(-1.0), ..Default::default() },
                "unhealthy_interval_s",
            ),
            (
                ActiveHealthParams { interval_jitter_s: -0.1, ..Default::default() },
                "interval_jitter_s",
            ),
            (
                ActiveHealthParams { interval_jitter_percent: 101, ..Default::default() },
                "interval_jitter_percent",
            ),
            (
                ActiveHealthParams { unhealthy_threshold: 0, ..Default::default() },
                "unhealthy_threshold",
            ),
            (
                ActiveHealthParams { healthy_threshold: 0, ..Default::default() },
                "healthy_threshold",
            ),
            (
                ActiveHealthParams {
                    healthy_edge_interval_s: Some(0.5),
                    ..ActiveHealthParams::sglang()
                },
                "healthy_edge_interval_s",
            ),
        ];
        for (p, field) in bad {
            let e = p.validate().expect_err(field);
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn unhealthy_after_threshold_network_failures_with_envoy_intervals() {
        let mut h = checker(&distinct(), 1);
        assert_eq!(h.first_probe(0), s(0.0));
        assert_eq!(h.on_result(0, Pass, s(0.1)), (None, s(5.1)));
        // Timeouts: the timer is armed when the timeout fires; pending failures wait the
        // unhealthy edge interval, the flipping one the unhealthy interval.
        assert_eq!(h.on_result(0, Fail, s(6.1)), (None, s(8.1)));
        assert!(h.is_healthy(0));
        assert_eq!(h.on_result(0, Fail, s(9.1)), (None, s(11.1)));
        assert!(h.is_healthy(0));
        assert_eq!(h.on_result(0, Fail, s(12.1)), (Some(false), s(19.1)));
        assert!(!h.is_healthy(0));
        assert_eq!(h.on_result(0, Fail, s(20.1)), (None, s(27.1)));
        // Recovery: a pending success waits the healthy edge interval, the flip the interval.
        assert_eq!(h.on_result(0, Pass, s(27.2)), (None, s(30.2)));
        assert!(!h.is_healthy(0));
        assert_eq!(h.on_result(0, Pass, s(30.3)), (Some(true), s(35.3)));
        assert!(h.is_healthy(0));
        assert_eq!(h.on_result(0, Pass, s(35.4)), (None, s(40.4)));
    }

    #[test]
    fn edge_intervals_default_to_the_plain_ones() {
        let mut h = checker(&ActiveHealthParams::default(), 1);
        h.first_probe(0);
        assert_eq!(h.on_result(0, Fail, s(1.0)), (None, s(6.0)));
        assert_eq!(h.on_result(0, Fail, s(7.0)), (None, s(12.0)));
        assert_eq!(h.on_result(0, Fail, s(13.0)), (Some(false), s(18.0)));
        let p = ActiveHealthParams { unhealthy_interval_s: Some(9.0), ..Default::default() };
        let mut h = checker(&p, 1);
        h.first_probe(0);
        // The unhealthy edge interval defaults to the unhealthy interval.
        assert_eq!(h.on_result(0, Fail, s(1.0)), (None, s(10.0)));
    }

    #[test]
    fn a_success_resets_the_failure_run() {
        let mut h = checker(&distinct(), 1);
        h.first_probe(0);
        for (i, res) in [Fail, Fail, Pass, Fail, Fail].into_iter().enumerate() {
            assert_eq!(h.on_result(0, res, s(i as f64 * 10.0)).0, None);
            assert!(h.is_healthy(0));
        }
        assert_eq!(h.on_result(0, Fail, s(50.0)).0, Some(false));
    }

    #[test]
    fn a_failure_resets_the_success_run() {
        let mut h = checker(&distinct(), 1);
        h.first_probe(0);
        assert_eq!(h.on_result(0, BadStatus, s(1.0)).0, Some(false));
        assert_eq!(h.on_result(0, Pass, s(10.0)).0, None);
        assert_eq!(h.on_result(0, Fail, s(20.0)).0, None);
        assert_eq!(h.on_result(0, Pass, s(30.0)).0, None);
        assert_eq!(h.on_result(0, Pass, s(40.0)).0, Some(true));
    }

    #[test]
    fn bad_status_is_immediate_in_envoy_and_counted_in_sglang() {
        let mut h = checker(&distinct(), 1);
        h.first_probe(0);
        // Changed, not pending: the unhealthy interval.
        assert_eq!(h.on_result(0, BadStatus, s(1.0)), (Some(false), s(8.0)));
        // After two network failures a bad status still flips at once.
        let mut h = checker(&distinct(), 1);
        h.first_probe(0);
        h.on_result(0, Fail, s(1.0));
        assert_eq!(h.on_result(0, BadStatus, s(4.0)).0, Some(false));

        let mut g = checker(&ActiveHealthParams::sglang(), 1);
        g.first_probe(0);
        assert_eq!(g.on_result(0, BadStatus, s(0.1)).0, None);
        assert_eq!(g.on_result(0, BadStatus, s(60.1)).0, None);
        assert_eq!(g.on_result(0, BadStatus, s(120.1)).0, Some(false));
    }

    #[test]
    fn pending_host_becomes_healthy_on_its_first_success() {
        let mut h = checker(&distinct(), 2);
        h.first_probe(0);
        h.first_probe(1);
        assert_eq!(h.add_host(1, s(50.0)), s(50.0));
        assert!(!h.is_healthy(1));
        assert!(h.is_healthy(0));
        // healthy_threshold = 2 is ignored for the first result; a change, so the interval.
        assert_eq!(h.on_result(1, Pass, s(50.2)), (Some(true), s(55.2)));
        // From then on the thresholds apply.
        h.on_result(1, BadStatus, s(56.0));
        assert_eq!(h.on_result(1, Pass, s(63.0)).0, None);
    }

    #[test]
    fn pending_host_whose_first_probe_fails_needs_the_threshold() {
        let mut h = checker(&distinct(), 1);
        h.first_probe(0);
        h.add_host_pending(0);
        // Already unhealthy: unchanged, the unhealthy interval.
        assert_eq!(h.on_result(0, Fail, s(1.0)), (None, s(8.0)));
        assert_eq!(h.on_result(0, Pass, s(8.1)), (None, s(11.1)));
        assert_eq!(h.on_result(0, Pass, s(11.2)), (Some(true), s(16.2)));
    }

    #[test]
    fn added_hosts_beyond_the_count_are_appended() {
        let mut h = checker(&distinct(), 2);
        h.add_host_pending(4);
        assert!(h.is_healthy(2) && h.is_healthy(3));
        assert!(!h.is_healthy(4));
        assert_eq!(h.on_result(4, Pass, s(1.0)).0, Some(true));
    }

    #[test]
    fn first_probes_spread_over_one_interval_and_interleave_instances() {
        let p = ActiveHealthParams { interval_s: 8.0, ..Default::default() };
        let mut h = checker(&p, 4);
        let t: Vec<SimTime> = (0..4).map(|r| h.first_probe(r)).collect();
        assert_eq!(t, vec![s(0.0), s(2.0), s(4.0), s(6.0)]);
        let mut h = checker(&p, 4).with_instance(1, 2);
        let t: Vec<SimTime> = (0..4).map(|r| h.first_probe(r)).collect();
        assert_eq!(t, vec![s(1.0), s(3.0), s(5.0), s(7.0)]);
    }

    #[test]
    fn fixed_rate_counts_from_the_send_not_the_result() {
        let mut g = checker(&ActiveHealthParams::sglang(), 1);
        assert_eq!(g.first_probe(0), s(0.0));
        // A timeout at 5 s: the next tick is still 60 s after the send.
        assert_eq!(g.on_result(0, Fail, s(5.0)), (None, s(60.0)));
        assert_eq!(g.on_result(0, Pass, s(60.3)), (None, s(120.0)));
        assert_eq!(g.next_probe(0), s(120.0));
        let mut e = checker(
            &ActiveHealthParams { interval_s: 60.0, timeout_s: 5.0, ..Default::default() },
            1,
        );
        e.first_probe(0);
        assert_eq!(e.on_result(0, Fail, s(5.0)), (None, s(65.0)));
    }

    #[test]
    fn jitter_is_bounded_varied_and_reproducible() {
        let p = ActiveHealthParams {
            interval_jitter_s: 0.5,
            interval_jitter_percent: 10,
            ..distinct()
        };
        let run = || {
            let mut h = checker(&p, 3);
            let mut waits = Vec::new();
            for r in 0..3 {
                let t = h.first_probe(r);
                let slot = SimTime(5_000_000_000 * u64::from(r) / 3);
                assert!(t >= slot && t < slot + SimDuration::from_millis(1000), "{t} for {r}");
            }
            let mut now = s(10.0);
            for i in 0..400 {
                let (_, next) = h.on_result(0, Pass, now);
                waits.push(next - now);
                now = next + SimDuration::from_millis(i % 7);
            }
            waits
        };
        let waits = run();
        // interval 5 s + [0, 0.5 s) + [0, 10 % of 5 s).
        for w in &waits {
            assert!(*w >= SimDuration::from_secs(5) && *w < SimDuration::from_millis(6000), "{w}");
        }
        let distinct_waits: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct_waits.len() > 300);
        assert_eq!(waits, run());
        // No jitter: no draws, exact intervals.
        let mut h = checker(&distinct(), 1);
        h.first_probe(0);
        assert_eq!(h.on_result(0, Pass, s(1.0)).1, s(6.0));
    }

    #[test]
    fn run_counter() {
        let mut r = Run::default();
        assert_eq!([true, true, false, true].map(|ok| r.push(ok)), [1, 2, 1, 1]);
        let mut r = Run::new(false, u32::MAX);
        assert_eq!(r.push(false), u32::MAX);
    }
}
