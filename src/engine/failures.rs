//! Fault windows opening and closing, and what they do to a replica.
//!
//! - **crash**: the replica goes down; every attempt it holds ends with a reset (retried, or
//!   `failed`), its queues and KV cache are lost, pending iterations and loads are void. While
//!   down it refuses connections. When the window closes it restarts (`restart_s`) and loads
//!   its model (the pool's cold start), then serves again with an empty cache. Kubernetes
//!   readiness (if configured) sees the container exit at once and probes it again from the
//!   restart.
//! - **hang**: the replica freezes: the pending iteration, model load and service
//!   completions are shifted by the hang's length (so the work in progress resumes where it
//!   stopped), nothing new starts, new attempts wait in its queue.
//! - **slowdown**, **errors**, **partition**: conditions read where attempts are delivered and
//!   iterations scheduled ([`super::serve`]).
//!
//! Also here: the fault metrics computed at the end of a run (time to detect, time to
//! recover).

use super::event::ReqRef;
use super::request::Phase;
use super::{Event, Sim};
use crate::cluster::Lifecycle;
use crate::faults::state::SlowWindow;
use crate::faults::Transition;
use crate::gateway::status::AttemptResult;
use crate::metrics::FaultMetrics;
use crate::spec::faults::FaultKind;
use crate::time::{SimDuration, SimTime};

/// Baseline before a fault for the time to recover.
const BASELINE: SimDuration = SimDuration::from_secs(60);
/// Window of arrivals whose p95 TTFT must be back within [`RECOVERED_WITHIN`].
const RECOVERY_WINDOW: SimDuration = SimDuration::from_secs(10);
/// Step between recovery windows.
const RECOVERY_STEP: SimDuration = SimDuration::from_secs(1);
/// Tolerance on the baseline p95 TTFT.
const RECOVERED_WITHIN: f64 = 1.10;

impl Sim<'_> {
    /// Track `track`'s window opens or closes.
    pub(super) fn on_fault(&mut self, track: u32) {
        let (tr, next) = self.faults.fire(track, self.now);
        if let Some(t) = next {
            self.queue.push(t, Event::Fault { track });
        }
        match tr {
            Transition::Start { replica, fault, end } => {
                self.detections.push(None);
                let kind = self.faults.kind(fault).clone();
                self.fault_start(replica, track, &kind, end);
            }
            Transition::End { replica, fault } => {
                let kind = self.faults.kind(fault).clone();
                self.fault_end(replica, track, &kind);
            }
        }
    }

    fn fault_start(&mut self, r: u32, track: u32, kind: &FaultKind, end: SimTime) {
        let fs = &mut self.fault_state;
        match kind {
            FaultKind::Crash { .. } => {
                if fs.crash_start(r) {
                    self.crash(r);
                }
            }
            FaultKind::Slowdown { factor, ramp_to } => fs.slow_start(
                r,
                SlowWindow {
                    track,
                    start: self.now,
                    end,
                    f0: *factor,
                    f1: ramp_to.unwrap_or(*factor),
                },
            ),
            FaultKind::Errors { probability, status, latency } => {
                fs.errors_start(r, track, *probability, *status, *latency)
            }
            FaultKind::Hang => {
                let before = fs.hung_until(r).unwrap_or(self.now);
                fs.hang_start(r, track, end);
                let after = fs.hung_until(r).unwrap_or(self.now);
                if after > before {
                    self.freeze(r, after - before);
                }
            }
            FaultKind::Partition { gateways } => fs.cut_start(r, track, gateways.clone()),
        }
    }

    fn fault_end(&mut self, r: u32, track: u32, kind: &FaultKind) {
        let fs = &mut self.fault_state;
        match kind {
            FaultKind::Crash { restart } => {
                if fs.crash_end(r) {
                    self.restart(r, *restart);
                }
            }
            FaultKind::Slowdown { .. } => fs.slow_end(r, track),
            FaultKind::Errors { .. } => fs.errors_end(r, track),
            FaultKind::Hang => {
                if fs.hang_end(r, track) && !self.cluster.is_down(r) {
                    if self.cluster.is_llm() {
                        self.kick(r);
                    } else {
                        self.pull_next(r);
                    }
                }
            }
            FaultKind::Partition { .. } => fs.cut_end(r, track),
        }
    }

    /// Replica `r` dies now.
    fn crash(&mut self, r: u32) {
        if self.cluster.lifecycle[r as usize] == Lifecycle::Off {
            // No machine to crash (an autoscaler's empty slot).
            return;
        }
        self.wipe(r, Lifecycle::Failed);
    }

    /// Replica `r` loses everything (a crash, or a terminated pod): it goes to `state`, its
    /// pending work and queues are void, its KV cache empty, and every attempt it held ends
    /// with a reset.
    pub(super) fn wipe(&mut self, r: u32, state: Lifecycle) {
        self.cluster.set_lifecycle(r, state, self.now);
        self.recover_due[r as usize] = SimTime::MAX;
        self.iter_due[r as usize] = SimTime::MAX;
        self.load_due[r as usize] = SimTime::MAX;
        let held: Vec<ReqRef> = self
            .slab
            .at_replica(r)
            .into_iter()
            .filter(|&h| self.slab.get(h).is_some_and(|a| a.phase != Phase::Failing))
            .collect();
        if self.cluster.is_llm() {
            let w = self.window();
            self.cluster.llm[r as usize].crash(self.now, w);
            self.cluster.sync_llm(r);
            if self.gateway.needs_kv_events() {
                self.cluster.llm[r as usize].drain_kv_events(&mut self.kv_events);
                if !self.kv_events.is_empty() {
                    self.gateway.publish_kv(self.now, r, &self.kv_events);
                    self.kv_events.clear();
                }
            }
        } else {
            self.cluster.clear_queue(r);
        }
        self.gateway.replica_changed(r, &self.cluster);
        if let Some(ready) = self.gateway.container_exited(r) {
            let at = self.now + self.gateway.endpoint_delay();
            self.queue.push(at, Event::Endpoint { replica: r, ready });
        }
        for h in held {
            self.attempt_done(h, AttemptResult::Reset, 0);
        }
    }

    /// The last crash window of `r` closed: restart, load the model, then serve.
    fn restart(&mut self, r: u32, restart: SimDuration) {
        if self.cluster.lifecycle[r as usize] == Lifecycle::Off {
            return;
        }
        self.cluster.set_lifecycle(r, Lifecycle::Recovering, self.now);
        let at = self.now + restart + self.cluster.cold_start(r);
        self.recover_due[r as usize] = at;
        self.queue.push(at, Event::Recovered { replica: r });
        if let Some(t) = self.gateway.container_restarted(r, self.now) {
            self.queue.push(t, Event::Readiness { replica: r });
        }
    }

    /// A recovering replica is ready.
    pub(super) fn on_recovered(&mut self, r: u32) {
        if self.recover_due[r as usize] != self.now {
            self.stale_events += 1;
            return;
        }
        self.recover_due[r as usize] = SimTime::MAX;
        self.cluster.set_lifecycle(r, Lifecycle::Ready, self.now);
        self.gateway.replica_changed(r, &self.cluster);
        self.release_held();
    }

    /// Replica `r` hangs for `len` more: its pending work moves `len` later.
    fn freeze(&mut self, r: u32, len: SimDuration) {
        if self.cluster.is_llm() {
            for due in [&mut self.iter_due, &mut self.load_due] {
                if due[r as usize] != SimTime::MAX {
                    due[r as usize] += len;
                }
            }
            if self.iter_due[r as usize] != SimTime::MAX {
                self.queue.push(self.iter_due[r as usize], Event::Iteration { replica: r });
            }
            if self.load_due[r as usize] != SimTime::MAX {
                self.queue.push(self.load_due[r as usize], Event::ModelLoaded { replica: r });
            }
            return;
        }
        for h in self.slab.at_replica(r) {
            let a = self.slab.get_mut(h);
            if a.phase == Phase::InService {
                a.done += len;
                let t = a.done;
                self.queue.push(t, Event::ServiceDone { req: h });
            }
        }
    }

    /// Some gateway instance excluded replica `r` at `t` (for the time to detect).
    pub(super) fn note_exclusion(&mut self, r: u32, t: SimTime) {
        for (i, w) in self.faults.windows.iter().enumerate() {
            if w.replica == r && self.detections[i].is_none() && t >= w.start {
                let until = match self.faults.spec(w.fault).kind {
                    FaultKind::Crash { restart } => w.end + restart + self.cluster.cold_start(r),
                    _ => w.end,
                };
                if t <= until {
                    self.detections[i] = Some(t);
                }
            }
        }
    }

    /// Time to detect and time to recover over the run's fault windows.
    pub(super) fn fault_metrics(&mut self) -> FaultMetrics {
        let windows = &self.faults.windows;
        let mut m = FaultMetrics { windows: windows.len() as u64, ..FaultMetrics::default() };
        if windows.is_empty() {
            return m;
        }
        let detected: Vec<f64> = windows
            .iter()
            .zip(&self.detections)
            .filter_map(|(w, d)| d.map(|t| (t - w.start).as_secs_f64()))
            .collect();
        m.undetected = windows.len() as u64 - detected.len() as u64;
        m.detect_s =
            (!detected.is_empty()).then(|| detected.iter().sum::<f64>() / detected.len() as f64);
        self.fault_ttft.sort_unstable();
        let end = self.now;
        let rec: Vec<f64> = windows
            .iter()
            .filter_map(|w| recovery_s(&self.fault_ttft, w.start, w.end, end))
            .collect();
        m.recover_s = (!rec.is_empty()).then(|| rec.iter().sum::<f64>() / rec.len() as f64);
        m
    }
}

/// p95 of the TTFTs (ns; `u64::MAX` = none) of arrivals in `[a, b)`; `None` if there are none.
fn p95(samples: &[(SimTime, SimDuration)], a: SimTime, b: SimTime) -> Option<u64> {
    let lo = samples.partition_point(|s| s.0 < a);
    let hi = samples.partition_point(|s| s.0 < b);
    let mut v: Vec<u64> = samples[lo..hi].iter().map(|s| s.1.as_nanos()).collect();
    if v.is_empty() {
        return None;
    }
    let k = ((0.95 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    let (_, x, _) = v.select_nth_unstable(k);
    Some(*x)
}

/// Seconds from `end` until a [`RECOVERY_WINDOW`] of arrivals has its p95 TTFT within
/// [`RECOVERED_WITHIN`] of the [`BASELINE`] before `start`; `inf` if none does by `run_end`;
/// `None` without a usable baseline.
fn recovery_s(
    samples: &[(SimTime, SimDuration)],
    start: SimTime,
    end: SimTime,
    run_end: SimTime,
) -> Option<f64> {
    let from = SimTime(start.as_nanos().saturating_sub(BASELINE.as_nanos()));
    let base = p95(samples, from, start).filter(|&x| x != u64::MAX)?;
    let target = base as f64 * RECOVERED_WITHIN;
    let mut t = end;
    while t + RECOVERY_WINDOW <= run_end {
        match p95(samples, t, t + RECOVERY_WINDOW) {
            Some(x) if x != u64::MAX && x as f64 <= target => {
                return Some((t + RECOVERY_WINDOW - end).as_secs_f64());
            }
            _ => t += RECOVERY_STEP,
        }
    }
    Some(f64::INFINITY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> SimTime {
        SimTime::ZERO + SimDuration::from_secs_f64(s)
    }

    #[test]
    fn recovery_waits_for_the_p95_to_come_back() {
        // Baseline: 100 ms for 60 s before the fault at 60 s; during the fault and 30 s after
        // its end (at 120 s) TTFT is 1 s, then 105 ms (within 10%).
        let mut s = Vec::new();
        for i in 0..2400 {
            let t = f64::from(i) * 0.1;
            let ttft = if t < 60.0 {
                0.1
            } else if t < 150.0 {
                1.0
            } else {
                0.105
            };
            s.push((at(t), SimDuration::from_secs_f64(ttft)));
        }
        let r = recovery_s(&s, at(60.0), at(120.0), at(240.0)).expect("baseline");
        // First all-fast window starts at 150 s: it ends 40 s after the fault end.
        assert!((r - 40.0).abs() < 1e-9, "{r}");
        // Never back: infinity; no baseline: none.
        let r = recovery_s(&s, at(60.0), at(120.0), at(149.0)).expect("baseline");
        assert_eq!(r, f64::INFINITY);
        assert_eq!(recovery_s(&s[600..], at(60.0), at(120.0), at(240.0)), None);
    }

    #[test]
    fn p95_counts_missing_first_tokens_as_infinite() {
        let mut s: Vec<(SimTime, SimDuration)> =
            (0..100).map(|i| (at(f64::from(i)), SimDuration(1_000))).collect();
        assert_eq!(p95(&s, at(0.0), at(100.0)), Some(1_000));
        for x in s.iter_mut().take(10) {
            x.1 = SimDuration(u64::MAX);
        }
        assert_eq!(p95(&s, at(0.0), at(100.0)), Some(u64::MAX));
    }
}
