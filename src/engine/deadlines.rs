//! Deadlines as FIFOs: the client's total timeout and time-to-first-token timeout per call,
//! the per-try timeout per attempt, and each gateway instance's admission-queue timeout.
//!
//! Every deadline of one queue is `start + constant` with starts in event order, so each queue
//! is a FIFO in deadline order and needs one pending event (its head) instead of one per
//! request: [`Fifo::push`] arms the tick when the queue was empty, and the handler pops every
//! due or stale head and re-arms for the next. Entries whose request has already ended stay
//! in the queue as tombstones (recognised by their generation) and are dropped when reached.
//!
//! Kinds (the `kind` of [`super::event::Event::Deadline`]): [`TOTAL`] (`timeout_s`, from
//! arrival), [`TTFT`] (`ttft_timeout_s`, from arrival, void once the client has a first
//! token), [`PER_TRY`] (`retries.per_try_timeout_s`, from each attempt's send, void once that
//! attempt streams its first token).

use crate::scenario::{PolicySpec, Scenario};
use crate::time::{SimDuration, SimTime};
use std::collections::VecDeque;

/// A call's total timeout.
pub const TOTAL: u8 = 0;
/// A call's time-to-first-token timeout.
pub const TTFT: u8 = 1;
/// An attempt's per-try timeout.
pub const PER_TRY: u8 = 2;

/// One FIFO of deadlines over handles `(slot, generation)`.
#[derive(Debug, Default)]
pub struct Fifo {
    /// The constant added to each start (`None`: this deadline is not configured).
    pub after: Option<SimDuration>,
    entries: VecDeque<(SimTime, u32, u32)>,
    armed: bool,
}

impl Fifo {
    fn new(after: Option<SimDuration>) -> Fifo {
        Fifo { after, entries: VecDeque::new(), armed: false }
    }

    /// Adds the deadline of a handle started at `now`; returns the time to arm a tick at if
    /// the queue's tick was not armed.
    pub fn push(&mut self, now: SimTime, slot: u32, gen: u32) -> Option<SimTime> {
        let after = self.after?;
        let at = now + after;
        self.entries.push_back((at, slot, gen));
        if self.armed {
            return None;
        }
        self.armed = true;
        Some(at)
    }

    /// The head if it is due at `now`; pops it. Heads `stale(start, slot, gen)` calls dead
    /// (`start`: when the entry was pushed) are dropped on the way.
    pub fn pop_due(
        &mut self,
        now: SimTime,
        stale: impl Fn(SimTime, u32, u32) -> bool,
    ) -> Option<(u32, u32)> {
        let after = self.after.unwrap_or(SimDuration(0));
        while let Some(&(at, slot, gen)) = self.entries.front() {
            if stale(SimTime(at.0 - after.0), slot, gen) {
                self.entries.pop_front();
                continue;
            }
            if at > now {
                return None;
            }
            self.entries.pop_front();
            return Some((slot, gen));
        }
        None
    }

    /// After the handler: when to tick next (`None`: the queue is empty and disarmed).
    pub fn rearm(&mut self) -> Option<SimTime> {
        match self.entries.front() {
            Some(&(at, _, _)) => Some(at),
            None => {
                self.armed = false;
                None
            }
        }
    }
}

/// All deadline queues of a run.
#[derive(Debug)]
pub struct Deadlines {
    /// Per class: `[TOTAL, TTFT, PER_TRY]`.
    pub class: Vec<[Fifo; 3]>,
    /// Per gateway instance: its admission-queue timeout.
    pub gateway: Vec<Fifo>,
}

impl Deadlines {
    /// The queues of `sc` run with `policy` (its gateway's queue timeout and retry settings).
    pub fn new(sc: &Scenario, policy: &PolicySpec) -> Deadlines {
        let class = sc
            .classes
            .iter()
            .map(|k| {
                let retry = policy.gateway.retries_for(&k.client);
                [
                    Fifo::new(k.timeout),
                    Fifo::new(k.client.ttft_timeout),
                    Fifo::new(
                        retry.and_then(|r| r.per_try_timeout_s).map(SimDuration::from_secs_f64),
                    ),
                ]
            })
            .collect();
        let qt = policy.gateway.admission.queue.as_ref().map(|q| q.timeout);
        let gateway = (0..policy.gateway.replicas).map(|_| Fifo::new(qt)).collect();
        Deadlines { class, gateway }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_arms_once_and_skips_tombstones() {
        let mut f = Fifo::new(Some(SimDuration(10)));
        assert_eq!(f.push(SimTime(0), 0, 0), Some(SimTime(10)));
        assert_eq!(f.push(SimTime(3), 1, 0), None, "already armed");
        assert_eq!(f.push(SimTime(5), 2, 0), None);
        // Slot 0 ended before its deadline: it is skipped, slot 1 is not due yet at 10.
        assert_eq!(f.pop_due(SimTime(10), |_, s, _| s == 0), None);
        assert_eq!(f.rearm(), Some(SimTime(13)));
        assert_eq!(f.pop_due(SimTime(13), |_, _, _| false), Some((1, 0)));
        assert_eq!(f.pop_due(SimTime(13), |_, _, _| false), None);
        assert_eq!(f.rearm(), Some(SimTime(15)));
        assert_eq!(f.pop_due(SimTime(15), |_, _, _| false), Some((2, 0)));
        assert_eq!(f.rearm(), None);
        assert_eq!(f.push(SimTime(20), 3, 0), Some(SimTime(30)), "re-armed when empty");
        assert_eq!(Fifo::new(None).push(SimTime(0), 0, 0), None, "not configured");
    }
}
