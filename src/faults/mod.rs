//! Failure schedules: which replica breaks how, and when.
//!
//! A [`FaultPlan`] turns the validated `faults:` entries into *tracks*, one per (entry,
//! target replica). A scheduled entry's track has one window; a random entry's track alternates
//! up times (`mtbf_s`) and fault windows (`mttr_s`) for the whole run, drawn lazily. Replicas a
//! `count`/`fraction` target picks, and every random time, come from the run's `faults`
//! streams (`faults`/entry for picks, `faults`/(entry, replica) for times), never from
//! anything a policy touches: every policy in a cell sees the same faults.
//!
//! The plan only says when windows open and close ([`FaultPlan::fire`]); [`state`] holds what
//! is currently wrong with each replica, and the engine applies the consequences (aborting
//! in-flight requests on a crash, freezing a hung replica, ...). Every window that opens is
//! logged ([`FaultWindow`]) for `faults.csv`, the shaded time-series plots and the
//! time-to-detect / time-to-recover metrics.

pub mod state;

use crate::rng::Stream;
use crate::spec::faults::{FaultKind, FaultSpec, FaultTarget, FaultTiming};
use crate::time::{SimDuration, SimTime};

/// One (entry, replica) timeline.
#[derive(Debug, Clone)]
struct Track {
    fault: u16,
    replica: u32,
    /// Random tracks draw their times from here.
    stream: Option<Stream>,
    /// Inside a fault window.
    active: bool,
    /// End of the current window (valid while active).
    end: SimTime,
}

/// A fault window that opened during the run.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultWindow {
    /// Replica hit.
    pub replica: u32,
    /// Index of the `faults:` entry.
    pub fault: u16,
    /// Kind name (`crash`, `slowdown`, ...).
    pub kind: &'static str,
    /// Start.
    pub start: SimTime,
    /// End.
    pub end: SimTime,
}

/// What [`FaultPlan::fire`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// A window opens on `replica` until `end`.
    Start {
        /// Replica.
        replica: u32,
        /// Entry index.
        fault: u16,
        /// When it closes.
        end: SimTime,
    },
    /// The window on `replica` closes.
    End {
        /// Replica.
        replica: u32,
        /// Entry index.
        fault: u16,
    },
}

/// The run's fault tracks.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    specs: Vec<FaultSpec>,
    tracks: Vec<Track>,
    /// Every window opened so far, in opening order.
    pub windows: Vec<FaultWindow>,
}

impl FaultPlan {
    /// Tracks for `specs` in run `run_seed`; returns the plan and the first event of each
    /// track (`(time, track)`), in track order.
    pub fn new(specs: &[FaultSpec], run_seed: u64) -> (FaultPlan, Vec<(SimTime, u32)>) {
        let mut plan = FaultPlan { specs: specs.to_vec(), ..FaultPlan::default() };
        let mut first = Vec::new();
        for (fi, spec) in specs.iter().enumerate() {
            let replicas = match &spec.target {
                FaultTarget::Replicas(v) => v.clone(),
                FaultTarget::Pick { first, size, count } => {
                    let mut s = Stream::new(run_seed, "faults", fi as u64);
                    pick(*first, *size, *count, &mut s)
                }
            };
            for r in replicas {
                let t = plan.tracks.len() as u32;
                let (stream, at) = match &spec.timing {
                    FaultTiming::Scheduled { at, .. } => (None, SimTime::ZERO + *at),
                    FaultTiming::Random { mtbf_s, .. } => {
                        let key = ((fi as u64) << 32) | u64::from(r);
                        let mut s = Stream::new(run_seed, "faults:times", key);
                        let up = draw(mtbf_s, &mut s);
                        (Some(s), SimTime::ZERO + up)
                    }
                };
                plan.tracks.push(Track {
                    fault: fi as u16,
                    replica: r,
                    stream,
                    active: false,
                    end: SimTime::ZERO,
                });
                first.push((at, t));
            }
        }
        (plan, first)
    }

    /// Whether there is any fault at all.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// The entry `fault`.
    pub fn spec(&self, fault: u16) -> &FaultSpec {
        &self.specs[fault as usize]
    }

    /// Track `t`'s event is due at `now`: opens or closes its window. Returns what happened
    /// and when the track's next event is due (`None`: the track is over).
    pub fn fire(&mut self, t: u32, now: SimTime) -> (Transition, Option<SimTime>) {
        let spec = &self.specs[self.tracks[t as usize].fault as usize];
        let tr = &mut self.tracks[t as usize];
        if tr.active {
            tr.active = false;
            let next = match (&spec.timing, tr.stream.as_mut()) {
                (FaultTiming::Random { mtbf_s, .. }, Some(s)) => Some(now + draw(mtbf_s, s)),
                _ => None,
            };
            return (Transition::End { replica: tr.replica, fault: tr.fault }, next);
        }
        let len = match (&spec.timing, tr.stream.as_mut()) {
            (FaultTiming::Scheduled { duration, .. }, _) => *duration,
            (FaultTiming::Random { mttr_s, .. }, Some(s)) => draw(mttr_s, s),
            (FaultTiming::Random { .. }, None) => SimDuration::ZERO,
        };
        tr.active = true;
        tr.end = now + len;
        self.windows.push(FaultWindow {
            replica: tr.replica,
            fault: tr.fault,
            kind: spec.kind.name(),
            start: now,
            end: tr.end,
        });
        (Transition::Start { replica: tr.replica, fault: tr.fault, end: tr.end }, Some(tr.end))
    }

    /// The kind of entry `fault`.
    pub fn kind(&self, fault: u16) -> &FaultKind {
        &self.specs[fault as usize].kind
    }
}

/// A duration drawn from `d` (seconds), at least 1 ns so windows never collapse.
fn draw(d: &crate::workload::dist::Dist, s: &mut Stream) -> SimDuration {
    let x = d.quantile(s.uniform_open()).max(0.0);
    SimDuration::from_secs_f64(x).max(SimDuration(1))
}

/// `count` distinct replicas of `first..first + size`, uniformly (partial Fisher–Yates), in
/// ascending order.
fn pick(first: u32, size: u32, count: u32, s: &mut Stream) -> Vec<u32> {
    let mut ids: Vec<u32> = (first..first + size).collect();
    let k = count.min(size) as usize;
    for i in 0..k {
        let j = i + s.index_mod(ids.len() - i);
        ids.swap(i, j);
    }
    let mut out = ids[..k].to_vec();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::dist::{Dist, Law};

    fn spec(target: FaultTarget, timing: FaultTiming) -> FaultSpec {
        FaultSpec { kind: FaultKind::Hang, target, timing }
    }

    #[test]
    fn scheduled_window_opens_and_closes_once() {
        let s = spec(
            FaultTarget::Replicas(vec![2]),
            FaultTiming::Scheduled {
                at: SimDuration::from_secs(60),
                duration: SimDuration::from_secs(120),
            },
        );
        let (mut plan, first) = FaultPlan::new(&[s], 1);
        assert_eq!(first, vec![(SimTime::ZERO + SimDuration::from_secs(60), 0)]);
        let (t, next) = plan.fire(0, first[0].0);
        let end = SimTime::ZERO + SimDuration::from_secs(180);
        assert_eq!(t, Transition::Start { replica: 2, fault: 0, end });
        assert_eq!(next, Some(end));
        let (t, next) = plan.fire(0, end);
        assert_eq!(t, Transition::End { replica: 2, fault: 0 });
        assert_eq!(next, None);
        assert_eq!(plan.windows.len(), 1);
        assert_eq!(plan.windows[0].kind, "hang");
    }

    #[test]
    fn picks_are_distinct_deterministic_and_in_the_pool() {
        let mk = |seed| {
            let s = spec(
                FaultTarget::Pick { first: 10, size: 8, count: 3 },
                FaultTiming::Scheduled { at: SimDuration::ZERO, duration: SimDuration(1) },
            );
            let (p, _) = FaultPlan::new(&[s], seed);
            p.tracks.iter().map(|t| t.replica).collect::<Vec<_>>()
        };
        let a = mk(5);
        assert_eq!(a, mk(5));
        assert_eq!(a.len(), 3);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "{a:?}");
        assert!(a.iter().all(|&r| (10..18).contains(&r)));
        // Over seeds every replica of the pool gets picked sometimes.
        let mut seen = [false; 8];
        for seed in 0..200 {
            for r in mk(seed) {
                seen[(r - 10) as usize] = true;
            }
        }
        assert!(seen.iter().all(|&x| x), "{seen:?}");
    }

    #[test]
    fn random_windows_have_the_mean_up_and_down_times() {
        let exp = |mean| Dist::new(Law::Exponential { mean }, None, None);
        let s = spec(
            FaultTarget::Replicas(vec![0]),
            FaultTiming::Random { mtbf_s: exp(100.0), mttr_s: exp(10.0) },
        );
        let (mut plan, first) = FaultPlan::new(&[s], 9);
        let (mut at, mut up_s, mut down_s, mut opened) =
            (first[0].0, first[0].0.as_secs_f64(), 0.0, 0);
        let mut last_end = SimTime::ZERO;
        for _ in 0..20_000 {
            let (tr, next) = plan.fire(0, at);
            let next = next.expect("random tracks never end");
            match tr {
                Transition::Start { .. } => {
                    opened += 1;
                    down_s += (next - at).as_secs_f64();
                    if opened > 1 {
                        up_s += (at - last_end).as_secs_f64();
                    }
                }
                Transition::End { .. } => last_end = at,
            }
            at = next;
        }
        let up_mean = up_s / f64::from(opened);
        let down_mean = down_s / f64::from(opened);
        // 10 000 exponential draws: standard error 1% of the mean.
        assert!((up_mean - 100.0).abs() < 4.0, "{up_mean}");
        assert!((down_mean - 10.0).abs() < 0.4, "{down_mean}");
    }
}
