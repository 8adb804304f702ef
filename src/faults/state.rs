//! What is wrong with each replica right now: the faults whose windows are open.
//!
//! Conditions overlap freely: a replica may be slowed by two windows (their factors multiply),
//! return errors from two (a request escapes only if neither fails it), be partitioned from
//! several gateway instances, be down while two crash windows overlap (it restarts when the
//! last one closes). Hangs are tracked as open windows with their end, so the engine can shift
//! a frozen replica's pending work by the hang's length. This is the *true* state: gateways
//! never read it, they only see what their requests and probes return.
//!
//! Error draws come from the stream `faults:errors`/replica, one uniform per request that
//! reaches an erroring replica.

use crate::rng::Stream;
use crate::time::{SimDuration, SimTime};

/// A slowdown window: factor `f0` at `start` moving linearly to `f1` at `end`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowWindow {
    /// Track that opened it.
    pub track: u32,
    /// Start.
    pub start: SimTime,
    /// End.
    pub end: SimTime,
    /// Factor at the start.
    pub f0: f64,
    /// Factor at the end.
    pub f1: f64,
}

impl SlowWindow {
    /// The factor at `now` (clamped to the window).
    pub fn at(&self, now: SimTime) -> f64 {
        if self.f0 == self.f1 || self.end <= self.start {
            return self.f0;
        }
        let x = (now.max(self.start).min(self.end) - self.start).as_secs_f64()
            / (self.end - self.start).as_secs_f64();
        self.f0 + (self.f1 - self.f0) * x
    }
}

/// An error window.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ErrorWindow {
    track: u32,
    probability: f64,
    status: u16,
    latency: SimDuration,
}

/// Open conditions of one replica.
#[derive(Debug, Clone, Default)]
struct Cond {
    crashed: u16,
    hangs: Vec<(u32, SimTime)>,
    slow: Vec<SlowWindow>,
    errors: Vec<ErrorWindow>,
    /// (track, gateway instances cut off; empty = all).
    cut: Vec<(u32, Vec<u16>)>,
}

/// The open fault conditions of every replica.
#[derive(Debug, Clone)]
pub struct FaultState {
    cond: Vec<Cond>,
    error_streams: Vec<Option<Stream>>,
    run_seed: u64,
    /// Replicas with any slowdown window open (a fast check for the common case).
    slowed: u32,
}

impl FaultState {
    /// No faults on `replicas` replicas.
    pub fn new(replicas: usize, run_seed: u64) -> FaultState {
        FaultState {
            cond: vec![Cond::default(); replicas],
            error_streams: vec![None; replicas],
            run_seed,
            slowed: 0,
        }
    }

    /// A crash window opened; true if the replica was up until now.
    pub fn crash_start(&mut self, r: u32) -> bool {
        let c = &mut self.cond[r as usize];
        c.crashed += 1;
        c.crashed == 1
    }

    /// A crash window closed; true if no crash window is left open (the replica restarts).
    pub fn crash_end(&mut self, r: u32) -> bool {
        let c = &mut self.cond[r as usize];
        c.crashed = c.crashed.saturating_sub(1);
        c.crashed == 0
    }

    /// Whether a crash window is open on `r`.
    #[inline]
    pub fn crashed(&self, r: u32) -> bool {
        self.cond[r as usize].crashed > 0
    }

    /// A hang window of track `t` opened until `end`.
    pub fn hang_start(&mut self, r: u32, t: u32, end: SimTime) {
        self.cond[r as usize].hangs.push((t, end));
    }

    /// The hang window of track `t` closed; true if `r` is no longer hung.
    pub fn hang_end(&mut self, r: u32, t: u32) -> bool {
        let h = &mut self.cond[r as usize].hangs;
        h.retain(|&(x, _)| x != t);
        h.is_empty()
    }

    /// Whether `r` is hung.
    #[inline]
    pub fn hung(&self, r: u32) -> bool {
        !self.cond[r as usize].hangs.is_empty()
    }

    /// When the longest open hang of `r` ends (`None`: not hung).
    pub fn hung_until(&self, r: u32) -> Option<SimTime> {
        self.cond[r as usize].hangs.iter().map(|&(_, e)| e).max()
    }

    /// A slowdown window opened.
    pub fn slow_start(&mut self, r: u32, w: SlowWindow) {
        let c = &mut self.cond[r as usize];
        if c.slow.is_empty() {
            self.slowed += 1;
        }
        c.slow.push(w);
    }

    /// The slowdown window of track `t` closed.
    pub fn slow_end(&mut self, r: u32, t: u32) {
        let c = &mut self.cond[r as usize];
        let had = !c.slow.is_empty();
        c.slow.retain(|w| w.track != t);
        if had && c.slow.is_empty() {
            self.slowed -= 1;
        }
    }

    /// The time factor of `r` at `now`: the product of its open slowdowns (1 without).
    #[inline]
    pub fn slow_factor(&self, r: u32, now: SimTime) -> f64 {
        if self.slowed == 0 {
            return 1.0;
        }
        self.cond[r as usize].slow.iter().map(|w| w.at(now)).product()
    }

    /// The open slowdown windows of `r`.
    pub fn slow_windows(&self, r: u32) -> &[SlowWindow] {
        &self.cond[r as usize].slow
    }

    /// An error window opened.
    pub fn errors_start(
        &mut self,
        r: u32,
        t: u32,
        probability: f64,
        status: u16,
        latency: SimDuration,
    ) {
        self.cond[r as usize].errors.push(ErrorWindow { track: t, probability, status, latency });
    }

    /// The error window of track `t` closed.
    pub fn errors_end(&mut self, r: u32, t: u32) {
        self.cond[r as usize].errors.retain(|w| w.track != t);
    }

    /// Whether a request reaching `r` now is answered with an error: `Some((status,
    /// latency))` of the window that failed it. One draw per window, oldest first.
    pub fn error_draw(&mut self, r: u32) -> Option<(u16, SimDuration)> {
        let c = &self.cond[r as usize];
        if c.errors.is_empty() {
            return None;
        }
        let seed = self.run_seed;
        let s = self.error_streams[r as usize]
            .get_or_insert_with(|| Stream::new(seed, "faults:errors", u64::from(r)));
        for w in &c.errors {
            if w.probability >= 1.0 || s.uniform_open() < w.probability {
                return Some((w.status, w.latency));
            }
        }
        None
    }

    /// A partition window opened between `gateways` (empty: all) and `r`.
    pub fn cut_start(&mut self, r: u32, t: u32, gateways: Vec<u16>) {
        self.cond[r as usize].cut.push((t, gateways));
    }

    /// The partition window of track `t` closed.
    pub fn cut_end(&mut self, r: u32, t: u32) {
        self.cond[r as usize].cut.retain(|(x, _)| *x != t);
    }

    /// Whether gateway instance `g` cannot reach `r`.
    #[inline]
    pub fn partitioned(&self, g: u16, r: u32) -> bool {
        let cut = &self.cond[r as usize].cut;
        !cut.is_empty() && cut.iter().any(|(_, gs)| gs.is_empty() || gs.contains(&g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_conditions_combine() {
        let mut f = FaultState::new(3, 1);
        assert!(f.crash_start(1));
        assert!(!f.crash_start(1), "already down");
        assert!(!f.crash_end(1), "one crash window still open");
        assert!(f.crash_end(1));
        assert!(!f.crashed(1));

        let t = |s| SimTime::ZERO + SimDuration::from_secs(s);
        f.slow_start(0, SlowWindow { track: 0, start: t(0), end: t(10), f0: 2.0, f1: 2.0 });
        f.slow_start(0, SlowWindow { track: 1, start: t(0), end: t(10), f0: 1.0, f1: 5.0 });
        assert_eq!(f.slow_factor(0, t(5)), 2.0 * 3.0);
        assert_eq!(f.slow_factor(2, t(5)), 1.0);
        f.slow_end(0, 1);
        assert_eq!(f.slow_factor(0, t(5)), 2.0);
        f.slow_end(0, 0);
        assert_eq!(f.slow_factor(0, t(5)), 1.0);

        f.hang_start(2, 4, t(30));
        f.hang_start(2, 5, t(20));
        assert_eq!(f.hung_until(2), Some(t(30)));
        assert!(!f.hang_end(2, 4));
        assert!(f.hang_end(2, 5));

        f.cut_start(1, 7, vec![0, 2]);
        assert!(f.partitioned(0, 1) && f.partitioned(2, 1) && !f.partitioned(1, 1));
        f.cut_start(1, 8, vec![]);
        assert!(f.partitioned(1, 1));
        f.cut_end(1, 8);
        f.cut_end(1, 7);
        assert!(!f.partitioned(0, 1));
    }

    #[test]
    fn error_draws_hit_the_probability() {
        let mut f = FaultState::new(1, 3);
        assert_eq!(f.error_draw(0), None);
        f.errors_start(0, 0, 0.3, 503, SimDuration::from_millis(5));
        let n = 100_000;
        let hits = (0..n).filter(|_| f.error_draw(0).is_some()).count();
        // Binomial(100000, 0.3): sd 145.
        assert!((hits as i64 - 30_000).abs() < 700, "{hits}");
        f.errors_end(0, 0);
        f.errors_start(0, 1, 1.0, 500, SimDuration::ZERO);
        assert_eq!(f.error_draw(0), Some((500, SimDuration::ZERO)));
    }
}
