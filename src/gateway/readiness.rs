//! Kubernetes readiness probes: the kubelet's prober for each pod decides whether the pod is
//! Ready, which is what puts it in (or takes it out of) the Service / InferencePool endpoints
//! every gateway routes over. One prober per pod, cluster-wide (not per gateway); the change
//! reaches the gateways [`Readiness::propagation_delay`] later (reference §3.4).
//!
//! Semantics (kubelet `prober/worker.go`):
//!
//! * Timing: the worker probes once when it starts, then on a `time.Ticker` every `period_s`.
//!   The probe runs synchronously and may take up to `timeout_s`, but the ticker does not wait
//!   for it: probes are sent on a fixed grid `origin + k·period`, whatever their durations. (A
//!   tick that falls during a probe is buffered and fires when the probe ends; validation
//!   keeps `timeout_s <= period_s`, so this only happens when they are equal.)
//! * Counting: the kubelet keeps the last result and how many times in a row it came
//!   (`lastResult`, `resultRun`). A failure run reaching `failure_threshold` sets the result
//!   to Failure (not Ready); a success run reaching `success_threshold` sets Success (Ready);
//!   shorter runs leave the state alone. So with the defaults (10 s, 1 s, 3, 1) a pod that
//!   hangs just after a successful probe at `t` is unready at `t + failure_threshold·period +
//!   timeout` = `t + 31 s`: 21–31 s after the hang starts, depending on its phase.
//! * Restart ([`Readiness::on_restart`]): the same worker keeps running across container
//!   restarts. When it sees the new container it sets the result to Failure (a readiness
//!   probe's initial value), so the pod is not Ready until the probes pass again; probes are
//!   skipped until `initial_delay_s` after the container started. Two quirks, both kept:
//!   `lastResult`/`resultRun` are **not** reset, so when the last probe before the crash was
//!   a success the first success after it makes the pod Ready even if `success_threshold` > 1;
//!   and the kubelet's pod-status update triggers an immediate probe of a container whose
//!   readiness is not yet Success (`manualTriggerCh`), so with no initial delay the first probe
//!   after a restart is sent at once (here: at the restart instant; the kubelet notices the
//!   restart within its 1 s PLEG relist) and the ticker grid is unaffected. With an initial
//!   delay the first probe is the first grid tick at or after `restart + initial_delay_s`.
//! * Exit ([`Readiness::on_exit`], optional): a container that is not running is never Ready,
//!   and the worker does not probe it; probing resumes at the restart.
//!
//! Phases: a pod's worker starts when the pod is added, so in a cluster that has run for a
//! while the phases are arbitrary (the kubelet only randomises the first probe right after its
//! own start). A run starts in steady state — every pod Ready, last results successes — with
//! replica `r` of `n` on the grid `r·period/n + k·period`. A pod added later
//! ([`Readiness::add_pod`]) starts its grid when added and is not Ready until it passes.
//!
//! Not modelled: the further manual probes triggered by pod-status syncs while a pod stays
//! unready (at the kubelet's sync cadence, ~1 min or on pod events); probe errors (results
//! thrown away); liveness and startup probes; the exact endpoint pipeline (kubelet status →
//! API server → EndpointSlice controller → gateway watch), summarised by
//! `propagation_delay_s`, whose 1 s default is our assumption, not a measured constant.
//!
//! Invariants: pods start Ready; the next probe is never earlier than the result that
//! scheduled it; no randomness.
//!
//! Sources: kubernetes/kubernetes `pkg/kubelet/prober/worker.go` (`run`: first probe at start,
//! then a ticker every `PeriodSeconds`; `doProbe`: `initialValue = Failure` for readiness on a
//! new container ID, `InitialDelaySeconds` measured from the container's start, the
//! `resultRun` thresholds), `pkg/kubelet/prober/prober_manager.go` (`UpdatePodStatus`: a
//! non-running container is not Ready; the manual trigger while readiness is not Success),
//! `pkg/apis/core/v1/defaults.go` (`SetDefaults_Probe`: timeout 1, period 10, success 1,
//! failure 3; `initialDelaySeconds` defaults to 0 as the zero value).

use super::active_health::Run;
use crate::spec::protection::ReadinessParams;
use crate::time::{SimDuration, SimTime};

/// Per-pod prober state.
#[derive(Debug, Clone, Copy)]
struct Pod {
    ready: bool,
    /// The container is running (probes are sent).
    running: bool,
    run: Run,
    /// Start of the ticker grid `origin + k·period`.
    origin: SimTime,
    /// When the probe in progress was (or the next one will be) sent; `MAX` while exited.
    next_send: SimTime,
}

/// Readiness of every pod.
#[derive(Debug, Clone)]
pub struct Readiness {
    period: SimDuration,
    timeout: SimDuration,
    failure_threshold: u32,
    success_threshold: u32,
    initial_delay: SimDuration,
    propagation: SimDuration,
    pods: Vec<Pod>,
}

impl Readiness {
    /// State for `replicas` pods, all Ready in steady state. `p` must have passed
    /// [`ReadinessParams::validate`].
    pub fn new(p: &ReadinessParams, replicas: usize) -> Readiness {
        let secs = SimDuration::from_secs_f64;
        let period = secs(p.period_s);
        let n = replicas.max(1) as u128;
        let pods = (0..replicas)
            .map(|r| {
                let offset = (u128::from(period.as_nanos()) * r as u128 / n) as u64;
                let origin = SimTime::ZERO + SimDuration(offset);
                Pod {
                    ready: true,
                    running: true,
                    // Long Ready: the last results were successes, at least a threshold's worth.
                    run: Run::new(true, p.success_threshold),
                    origin,
                    next_send: origin,
                }
            })
            .collect();
        Readiness {
            period,
            timeout: secs(p.timeout_s),
            failure_threshold: p.failure_threshold,
            success_threshold: p.success_threshold,
            initial_delay: secs(p.initial_delay_s),
            propagation: secs(p.propagation_delay_s),
            pods,
        }
    }

    /// When the first probe of pod `r` is sent: `r · period / n`.
    pub fn first_probe(&self, r: u32) -> SimTime {
        self.pods[r as usize].origin
    }

    /// The probe of `r` sent at [`Self::next_probe`] ended at `now` (`ok`: a success within
    /// `timeout_s`). Returns `Some(ready)` when the Ready condition flips, and when the next
    /// probe is sent: the next grid tick after the send, or `now` if that tick already passed.
    /// While the container is exited the result is ignored: `(None, SimTime::MAX)`.
    pub fn on_probe(&mut self, r: u32, ok: bool, now: SimTime) -> (Option<bool>, SimTime) {
        let (st, ft) = (self.success_threshold, self.failure_threshold);
        let pod = self.pods[r as usize];
        if !pod.running {
            return (None, SimTime::MAX);
        }
        let mut pod = pod;
        let run = pod.run.push(ok);
        let flip = match (ok, pod.ready) {
            (true, false) if run >= st => Some(true),
            (false, true) if run >= ft => Some(false),
            _ => None,
        };
        if let Some(ready) = flip {
            pod.ready = ready;
        }
        let next = self.tick_after(&pod, pod.next_send).max(now);
        pod.next_send = next;
        self.pods[r as usize] = pod;
        (flip, next)
    }

    /// The container of `r` (re)started at `now` after a crash: not Ready until the probes
    /// pass (the success run is kept — see the module doc); returns when the next probe is
    /// sent. If the pod was Ready this flips it (read [`Self::is_ready`] first to learn it).
    pub fn on_restart(&mut self, r: u32, now: SimTime) -> SimTime {
        let initial_delay = self.initial_delay;
        let mut pod = self.pods[r as usize];
        pod.ready = false;
        pod.running = true;
        pod.next_send = if initial_delay == SimDuration::ZERO {
            now
        } else {
            self.tick_at_or_after(&pod, now + initial_delay)
        };
        self.pods[r as usize] = pod;
        pod.next_send
    }

    /// The container of `r` stopped running: not Ready at once, no probes until
    /// [`Self::on_restart`]. Returns `Some(false)` if this flips the pod.
    pub fn on_exit(&mut self, r: u32) -> Option<bool> {
        let pod = &mut self.pods[r as usize];
        pod.running = false;
        pod.next_send = SimTime::MAX;
        std::mem::replace(&mut pod.ready, false).then_some(false)
    }

    /// A new pod `r` (added by autoscaling) whose container starts at `now`: not Ready, its
    /// ticker grid starts now, and its first probe is sent at once (or at the first tick at
    /// or after the initial delay). Returns that time. Pods skipped over are added Ready.
    pub fn add_pod(&mut self, r: u32, now: SimTime) -> SimTime {
        let i = r as usize;
        let steady = Pod {
            ready: true,
            running: true,
            run: Run::new(true, self.success_threshold),
            origin: now,
            next_send: now,
        };
        if self.pods.len() <= i {
            self.pods.resize(i + 1, steady);
        }
        self.pods[i] = Pod { ready: false, run: Run::default(), ..steady };
        let pod = self.pods[i];
        let first = if self.initial_delay == SimDuration::ZERO {
            now
        } else {
            self.tick_at_or_after(&pod, now + self.initial_delay)
        };
        self.pods[i].next_send = first;
        first
    }

    /// Whether pod `r` is Ready (as the kubelet sees it; the gateways see it
    /// [`Self::propagation_delay`] later).
    #[inline]
    pub fn is_ready(&self, r: u32) -> bool {
        self.pods[r as usize].ready
    }

    /// When the probe of `r` in progress was sent, or the next one is due (`SimTime::MAX`
    /// while the container is exited); lets the engine recognise a stale probe event.
    pub fn next_probe(&self, r: u32) -> SimTime {
        self.pods[r as usize].next_send
    }

    /// How long a probe waits for its answer.
    #[inline]
    pub fn timeout(&self) -> SimDuration {
        self.timeout
    }

    /// Delay from a Ready flip to the gateways' endpoint lists.
    #[inline]
    pub fn propagation_delay(&self) -> SimDuration {
        self.propagation
    }

    /// The first grid tick strictly after `t`.
    fn tick_after(&self, pod: &Pod, t: SimTime) -> SimTime {
        if t < pod.origin {
            return pod.origin;
        }
        let p = self.period.as_nanos();
        let k = (t - pod.origin).as_nanos() / p + 1;
        pod.origin.saturating_add(SimDuration(k.saturating_mul(p)))
    }

    /// The first grid tick at or after `t`.
    fn tick_at_or_after(&self, pod: &Pod, t: SimTime) -> SimTime {
        if t <= pod.origin {
            return pod.origin;
        }
        let p = self.period.as_nanos();
        let k = (t - pod.origin).as_nanos().div_ceil(p);
        pod.origin.saturating_add(SimDuration(k.saturating_mul(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::protection::*;

    fn s(x: f64) -> SimTime {
        SimTime::ZERO + SimDuration::from_secs_f64(x)
    }

    fn prober(p: &ReadinessParams, n: usize) -> Readiness {
        p.validate().expect("valid params");
        Readiness::new(p, n)
    }

    #[test]
    fn defaults_parse_and_validate() {
        let p: ReadinessParams = serde_yaml_ng::from_str("{}").expect("yaml");
        assert_eq!(p, ReadinessParams::default());
        assert_eq!(
            (p.period_s, p.timeout_s, p.failure_threshold, p.success_threshold),
            (10.0, 1.0, 3, 1)
        );
        assert_eq!((p.initial_delay_s, p.propagation_delay_s), (0.0, 1.0));
        assert!(serde_yaml_ng::from_str::<ReadinessParams>("periodSeconds: 5").is_err());
        let r = prober(&p, 2);
        assert_eq!(r.propagation_delay(), SimDuration::from_secs(1));
        assert_eq!(r.timeout(), SimDuration::from_secs(1));
        assert!(r.is_ready(0) && r.is_ready(1));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = [
            (ReadinessParams { period_s: 0.0, ..Default::default() }, "period_s"),
            (ReadinessParams { timeout_s: 11.0, ..Default::default() }, "timeout_s"),
            (ReadinessParams { timeout_s: 0.0, ..Default::default() }, "timeout_s"),
            (ReadinessParams { initial_delay_s: -1.0, ..Default::default() }, "initial_delay_s"),
            (
                ReadinessParams { propagation_delay_s: f64::INFINITY, ..Default::default() },
                "propagation_delay_s",
            ),
            (ReadinessParams { failure_threshold: 0, ..Default::default() }, "failure_threshold"),
            (ReadinessParams { success_threshold: 0, ..Default::default() }, "success_threshold"),
        ];
        for (p, field) in bad {
            let e = p.validate().expect_err(field);
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn hang_is_detected_after_three_failed_probes() {
        let p = ReadinessParams::default();
        let mut k = prober(&p, 1);
        assert_eq!(k.first_probe(0), s(0.0));
        assert_eq!(k.on_probe(0, true, s(0.01)), (None, s(10.0)));
        // The pod hangs at 5 s: the probes sent at 10, 20 and 30 s time out 1 s later each.
        let hang = s(5.0);
        let timeout = SimDuration::from_secs_f64(p.timeout_s);
        let period = SimDuration::from_secs_f64(p.period_s);
        let mut sent = s(10.0);
        let mut unready_at = None;
        for i in 1..=p.failure_threshold {
            let (flip, next) = k.on_probe(0, false, sent + timeout);
            // Fixed grid: the next send is a period after this send, not after the timeout.
            assert_eq!(next, sent + period);
            if i < p.failure_threshold {
                assert_eq!(flip, None);
                assert!(k.is_ready(0));
            } else {
                assert_eq!(flip, Some(false));
                unready_at = Some(sent + timeout);
            }
            sent = next;
        }
        let unready_at = unready_at.expect("flipped");
        assert_eq!(unready_at, s(31.0));
        let latency = unready_at - hang;
        assert!(latency >= SimDuration::from_secs(20) && latency <= SimDuration::from_secs(30));
        // One success (success_threshold 1) makes it Ready again.
        assert_eq!(k.on_probe(0, true, s(40.2)), (Some(true), s(50.0)));
        assert!(k.is_ready(0));
    }

    #[test]
    fn an_isolated_failure_changes_nothing() {
        let mut k = prober(&ReadinessParams::default(), 1);
        for (t, ok) in [(0.0, false), (10.0, false), (20.0, true), (30.0, false), (40.0, false)] {
            assert_eq!(k.on_probe(0, ok, s(t + 1.0)).0, None);
        }
        assert_eq!(k.on_probe(0, false, s(51.0)).0, Some(false));
    }

    #[test]
    fn success_threshold_above_one_needs_a_run() {
        let p = ReadinessParams { success_threshold: 2, ..Default::default() };
        let mut k = prober(&p, 1);
        for t in [1.0, 11.0, 21.0] {
            k.on_probe(0, false, s(t));
        }
        assert!(!k.is_ready(0));
        assert_eq!(k.on_probe(0, true, s(30.1)).0, None);
        assert_eq!(k.on_probe(0, false, s(41.0)).0, None);
        assert_eq!(k.on_probe(0, true, s(50.1)).0, None);
        assert_eq!(k.on_probe(0, true, s(60.1)), (Some(true), s(70.0)));
    }

    #[test]
    fn restart_probes_at_once_and_keeps_the_grid() {
        let mut k = prober(&ReadinessParams::default(), 1);
        k.on_probe(0, true, s(0.01));
        assert_eq!(k.on_restart(0, s(33.3)), s(33.3));
        assert!(!k.is_ready(0));
        assert_eq!(k.next_probe(0), s(33.3));
        // The engine still loading: refused. The next send is the next tick of the old grid.
        assert_eq!(k.on_probe(0, false, s(33.31)), (None, s(40.0)));
        assert_eq!(k.on_probe(0, true, s(40.05)), (Some(true), s(50.0)));
    }

    #[test]
    fn restart_with_initial_delay_waits_for_the_first_tick_after_it() {
        let p = ReadinessParams { initial_delay_s: 15.0, ..Default::default() };
        let mut k = prober(&p, 1);
        // 33.3 + 15 = 48.3 -> tick at 50; exactly on a tick stays on it.
        assert_eq!(k.on_restart(0, s(33.3)), s(50.0));
        assert_eq!(k.on_restart(0, s(35.0)), s(50.0));
        assert_eq!(k.on_probe(0, true, s(50.1)), (Some(true), s(60.0)));
    }

    #[test]
    fn restart_keeps_the_result_run_as_the_kubelet_does() {
        let p = ReadinessParams { success_threshold: 3, ..Default::default() };
        // Last probes before the crash passed: the first success after it is enough.
        let mut k = prober(&p, 1);
        k.on_probe(0, true, s(0.01));
        k.on_restart(0, s(12.0));
        assert_eq!(k.on_probe(0, true, s(12.1)), (Some(true), s(20.0)));
        // A failure after the restart breaks the run: three successes are needed.
        let mut k = prober(&p, 1);
        k.on_restart(0, s(12.0));
        assert_eq!(k.on_probe(0, false, s(12.1)).0, None);
        assert_eq!(k.on_probe(0, true, s(20.1)).0, None);
        assert_eq!(k.on_probe(0, true, s(30.1)).0, None);
        assert_eq!(k.on_probe(0, true, s(40.1)).0, Some(true));
    }

    #[test]
    fn exit_unreadies_at_once_and_pauses_probing() {
        let mut k = prober(&ReadinessParams::default(), 2);
        assert_eq!(k.on_exit(1), Some(false));
        assert_eq!(k.on_exit(1), None);
        assert_eq!(k.next_probe(1), SimTime::MAX);
        assert_eq!(k.on_probe(1, true, s(9.0)), (None, SimTime::MAX));
        assert!(!k.is_ready(1));
        // Replica 1's grid is 5 + 10k.
        assert_eq!(k.on_restart(1, s(21.0)), s(21.0));
        assert_eq!(k.on_probe(1, true, s(21.5)), (Some(true), s(25.0)));
    }

    #[test]
    fn first_probes_spread_over_one_period() {
        let k = prober(&ReadinessParams::default(), 4);
        let t: Vec<SimTime> = (0..4).map(|r| k.first_probe(r)).collect();
        assert_eq!(t, vec![s(0.0), s(2.5), s(5.0), s(7.5)]);
        let mut k = prober(&ReadinessParams::default(), 4);
        assert_eq!(k.on_probe(3, true, s(7.6)), (None, s(17.5)));
    }

    #[test]
    fn a_tick_passed_during_the_probe_fires_when_it_ends() {
        let p = ReadinessParams { period_s: 1.0, timeout_s: 1.0, ..Default::default() };
        let mut k = prober(&p, 1);
        // Timed out exactly on the next tick: sent again at once.
        assert_eq!(k.on_probe(0, false, s(1.0)), (None, s(1.0)));
        // A late result (engine jitter) never schedules into the past.
        assert_eq!(k.on_probe(0, false, s(2.5)), (None, s(2.5)));
    }

    #[test]
    fn added_pod_starts_unready_on_its_own_grid() {
        let mut k = prober(&ReadinessParams::default(), 1);
        assert_eq!(k.add_pod(2, s(3.7)), s(3.7));
        assert!(k.is_ready(1));
        assert!(!k.is_ready(2));
        assert_eq!(k.on_probe(2, false, s(3.8)), (None, s(13.7)));
        assert_eq!(k.on_probe(2, true, s(13.8)), (Some(true), s(23.7)));
        let p = ReadinessParams { initial_delay_s: 25.0, ..Default::default() };
        let mut k = prober(&p, 1);
        assert_eq!(k.add_pod(1, s(3.0)), s(33.0));
    }
}
