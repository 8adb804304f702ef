//! `session_affinity`: sticky sessions through an explicit key → replica map, SGLang's `manual`
//! policy (reference §2.1, `policies/manual.rs`; the same contract as production-stack
//! `session`, §2.2, without its ring).
//!
//! The key is the request's session. Its first request goes to a new assignment: the candidate
//! with the fewest in-flight requests of this gateway, lowest replica id on ties
//! (`assignment_mode: min_load`, the default), or a uniformly random candidate
//! (`assignment_mode: random`, SGLang's own default). Later requests of the session follow the
//! map. As in SGLang an entry remembers up to two replicas: when none of them is a candidate any
//! more (crashed, draining, scaled in) the session is re-assigned and the new replica is
//! appended (the oldest dropped), and while an earlier one is a candidate again it is
//! preferred, so a session returns to the replica that holds its context once that recovers.
//! Unlike a hash ring, adding replicas never moves an existing session.
//!
//! Eviction: every `eviction_interval_s` of simulated time (checked at the first decision at or
//! after each multiple; SGLang's periodic task) the entries idle for at least `max_idle_s`
//! (default 4 h) are dropped; between sweeps an idle entry still routes. An idle index ordered
//! by last access makes a sweep cost O(evicted · log entries), not a scan of the map.
//!
//! Requests without a session go to a uniformly random candidate. Signals: this gateway's
//! in-flight counts (exact, local; other gateways keep their own maps). Cost: O(log entries)
//! per keyed decision plus O(candidates) to assign. Stream: `router:session_affinity`.

use super::{parse_params, BuildCtx, ParamDoc, RequestView, RouteView, Router, RouterEntry};
use crate::rng::Stream;
use crate::time::{SimDuration, SimTime};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// Replicas remembered per session (SGLang `MAX_CANDIDATE_WORKERS`).
const REMEMBERED: usize = 2;

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Assignment {
    #[default]
    MinLoad,
    Random,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_max_idle_s")]
    max_idle_s: f64,
    #[serde(default = "default_eviction_interval_s")]
    eviction_interval_s: f64,
    #[serde(default)]
    assignment_mode: Assignment,
}

fn default_max_idle_s() -> f64 {
    14_400.0
}

fn default_eviction_interval_s() -> f64 {
    60.0
}

impl Default for Params {
    fn default() -> Params {
        Params {
            max_idle_s: default_max_idle_s(),
            eviction_interval_s: default_eviction_interval_s(),
            assignment_mode: Assignment::MinLoad,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Remembered replicas, oldest first; `len` of them are valid.
    replicas: [u32; REMEMBERED],
    len: u8,
    last_access: SimTime,
}

impl Entry {
    fn push_bounded(&mut self, r: u32) {
        if self.len as usize == REMEMBERED {
            self.replicas.copy_within(1.., 0);
            self.len -= 1;
        }
        self.replicas[self.len as usize] = r;
        self.len += 1;
    }
}

struct SessionAffinity {
    map: BTreeMap<u64, Entry>,
    /// `(last_access, session)` of every entry: the eviction order.
    idle: BTreeSet<(SimTime, u64)>,
    max_idle: SimDuration,
    interval: SimDuration,
    next_sweep: SimTime,
    mode: Assignment,
    rng: Stream,
}

impl SessionAffinity {
    /// The sweep SGLang's periodic task ran at the last multiple of the interval at or before
    /// `now` (earlier missed sweeps would have evicted a subset of what this one evicts).
    fn sweep(&mut self, now: SimTime) {
        let at = SimTime(now.as_nanos() / self.interval.0 * self.interval.0);
        while let Some(&(t, s)) = self.idle.first() {
            if at.since(t) < self.max_idle {
                break;
            }
            self.idle.pop_first();
            self.map.remove(&s);
        }
        self.next_sweep = at.saturating_add(self.interval);
    }

    fn assign(&mut self, view: &RouteView<'_>) -> u32 {
        let c = view.candidates;
        match self.mode {
            Assignment::Random => c[self.rng.index_mod(c.len())],
            Assignment::MinLoad => {
                let mut best = c[0];
                for &r in &c[1..] {
                    if view.in_flight[r as usize] < view.in_flight[best as usize] {
                        best = r;
                    }
                }
                best
            }
        }
    }

    fn keyed(&mut self, session: u64, view: &RouteView<'_>) -> u32 {
        let now = view.now;
        let is_candidate = |r: &u32| view.candidates.binary_search(r).is_ok();
        let Some(mut e) = self.map.get(&session).copied() else {
            let r = self.assign(view);
            let e = Entry { replicas: [r; REMEMBERED], len: 1, last_access: now };
            self.map.insert(session, e);
            self.idle.insert((now, session));
            return r;
        };
        self.idle.remove(&(e.last_access, session));
        self.idle.insert((now, session));
        e.last_access = now;
        let r = match e.replicas[..e.len as usize].iter().copied().find(is_candidate) {
            Some(r) => r,
            None => {
                let r = self.assign(view);
                e.push_bounded(r);
                r
            }
        };
        self.map.insert(session, e);
        r
    }
}

impl Router for SessionAffinity {
    fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        if view.now >= self.next_sweep {
            self.sweep(view.now);
        }
        if req.session == 0 {
            let c = view.candidates;
            return c[self.rng.index_mod(c.len())];
        }
        self.keyed(req.session, view)
    }
}

fn positive_s(name: &str, v: f64) -> Result<SimDuration, String> {
    if !v.is_finite() || v <= 0.0 {
        return Err(format!("{name} = {v}: must be a finite number of seconds > 0"));
    }
    Ok(SimDuration::from_secs_f64(v))
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    let max_idle = positive_s("max_idle_s", p.max_idle_s)?;
    let interval = positive_s("eviction_interval_s", p.eviction_interval_s)?;
    if interval.0 == 0 {
        return Err(format!(
            "eviction_interval_s = {}: below one nanosecond",
            p.eviction_interval_s
        ));
    }
    Ok(Box::new(SessionAffinity {
        map: BTreeMap::new(),
        idle: BTreeSet::new(),
        max_idle,
        interval,
        next_sweep: SimTime(interval.0),
        mode: p.assignment_mode,
        rng: ctx.stream("session_affinity"),
    }))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "session_affinity",
    summary:
        "sticky session -> replica map, new sessions to the least-loaded candidate (SGLang manual)",
    params: &[
        ParamDoc {
            name: "max_idle_s",
            default: "14400",
            doc: "a session idle this long is forgotten at the next sweep (SGLang: 4 h)",
        },
        ParamDoc {
            name: "eviction_interval_s",
            default: "60",
            doc: "simulated seconds between idle sweeps (SGLang: 60)",
        },
        ParamDoc {
            name: "assignment_mode",
            default: "min_load",
            doc: "new sessions: min_load (fewest in-flight, lowest id on ties) or random",
        },
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::super::BuildCtx;
    use crate::time::{SimDuration, SimTime};

    use super::super::testutil::keyed;

    #[test]
    fn new_sessions_go_to_the_least_loaded_lowest_id_on_ties() {
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        f.in_flight = vec![3, 1, 4, 1];
        let mut r = f.build("session_affinity", "");
        assert_eq!(r.route(&keyed(10), &f.view()), 1);
        f.in_flight = vec![0, 1, 0, 0];
        assert_eq!(r.route(&keyed(11), &f.view()), 0);
    }

    #[test]
    fn sessions_stick_regardless_of_load() {
        let mut f = Fixture::new(&[1, 1, 1]);
        let mut r = f.build("session_affinity", "");
        let home = r.route(&keyed(5), &f.view());
        f.in_flight[home as usize] = 500;
        for _ in 0..10 {
            assert_eq!(r.route(&keyed(5), &f.view()), home);
        }
        // A new session avoids the busy replica.
        assert_ne!(r.route(&keyed(6), &f.view()), home);
    }

    #[test]
    fn reassigned_when_its_replica_leaves_and_back_when_it_returns() {
        let mut f = Fixture::new(&[1, 1, 1]);
        let mut r = f.build("session_affinity", "");
        assert_eq!(r.route(&keyed(7), &f.view()), 0);
        f.candidates = vec![1, 2];
        f.in_flight = vec![0, 5, 2];
        assert_eq!(r.route(&keyed(7), &f.view()), 2, "re-assigned to the least loaded");
        f.in_flight = vec![0, 0, 9];
        assert_eq!(r.route(&keyed(7), &f.view()), 2, "sticks to the new replica");
        f.candidates = vec![0, 1, 2];
        assert_eq!(r.route(&keyed(7), &f.view()), 0, "the first replica is preferred again");
        // Two more failovers push the original out of the two remembered replicas.
        f.candidates = vec![1];
        assert_eq!(r.route(&keyed(7), &f.view()), 1);
        f.candidates = vec![0, 1, 2];
        assert_eq!(r.route(&keyed(7), &f.view()), 2, "remembers [2, 1], oldest first");
    }

    #[test]
    fn idle_sessions_are_evicted_at_the_next_sweep_only() {
        let s = |secs: u64| SimTime(secs * 1_000_000_000);
        let mut f = Fixture::new(&[1, 1]);
        let mut r = f.build("session_affinity", "max_idle_s: 100\neviction_interval_s: 60");
        assert_eq!(r.route(&keyed(1), &f.view()), 0);
        f.in_flight = vec![9, 0];
        // Idle 119 s at this decision, but the last sweep (60 s) saw it idle only 60 s.
        f.now = s(119);
        assert_eq!(r.route(&keyed(1), &f.view()), 0, "kept between sweeps");
        // Touched at 119 s; the 240 s sweep finds it idle 121 s and drops it.
        f.now = s(300);
        assert_eq!(r.route(&keyed(1), &f.view()), 1, "evicted, assigned afresh");
    }

    #[test]
    fn eviction_is_at_idle_greater_or_equal_max_idle() {
        let s = |secs: u64| SimTime(secs * 1_000_000_000);
        for (max_idle, expect) in [("120", 1), ("120.5", 0)] {
            let mut f = Fixture::new(&[1, 1]);
            let mut r = f.build("session_affinity", &format!("max_idle_s: {max_idle}"));
            assert_eq!(r.route(&keyed(1), &f.view()), 0);
            f.in_flight = vec![9, 0];
            f.now = s(120);
            assert_eq!(r.route(&keyed(1), &f.view()), expect, "max_idle_s {max_idle}");
        }
        // Frequent use keeps a session forever.
        let mut f = Fixture::new(&[1, 1]);
        let mut r = f.build("session_affinity", "max_idle_s: 100");
        assert_eq!(r.route(&keyed(1), &f.view()), 0);
        f.in_flight = vec![9, 0];
        for t in 1..100 {
            f.now = s(t * 90) + SimDuration::from_millis(1);
            assert_eq!(r.route(&keyed(1), &f.view()), 0);
        }
    }

    #[test]
    fn requests_without_a_session_are_uniformly_random() {
        let f = Fixture::new(&[1, 1, 1, 1]);
        let mut r = f.build("session_affinity", "");
        let mut seen = [0usize; 4];
        for _ in 0..8000 {
            seen[r.route(&keyed(0), &f.view()) as usize] += 1;
        }
        // Binomial(8000, 1/4): sd 38.7; 5 sd.
        assert!(seen.iter().all(|&s| (1806..2194).contains(&s)), "{seen:?}");
    }

    #[test]
    fn random_assignment_mode_spreads_new_sessions() {
        let mut f = Fixture::new(&[1, 1]);
        f.in_flight = vec![0, 100];
        let mut r = f.build("session_affinity", "assignment_mode: random");
        let ones = (1..=2000).filter(|&k| r.route(&keyed(k), &f.view()) == 1).count();
        assert!((850..1150).contains(&ones), "{ones}");
    }

    #[test]
    fn rejects_bad_params() {
        let f = Fixture::new(&[1, 1]);
        for bad in ["max_idle_s: 0", "eviction_interval_s: -1", "assignment_mode: sticky", "ttl: 5"]
        {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(bad).expect("yaml");
            let ctx =
                BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
            assert!((super::ENTRY.build)(&v, &ctx).is_err(), "{bad}");
        }
    }
}
