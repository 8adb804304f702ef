//! Where requests come from: open-loop arrivals per class, closed-loop session turns, and the
//! horizon that stops them (`max_requests`, `duration_s`, the drain).
//!
//! Arrivals are generated lazily, one pending arrival per class, from the class's own
//! streams; session turns from the session's draws. Nothing here depends on the policy, so
//! every policy sees the same requests.

use super::request::NewCall;
use super::{Event, Sim, NO_SESSION};
use crate::error::RunFailure;
use crate::metrics::Outcome;
use crate::time::SimTime;
use crate::workload::Draws;

impl Sim<'_> {
    /// Schedules class `class`'s next open-loop arrival, or closes the class when its arrivals
    /// end. A trace read error that ended them fails the run: validation reads every trace
    /// window beforehand, so this is unreachable unless the file changed since — but it is
    /// never silent.
    pub(super) fn schedule_next_arrival(&mut self, class: u16) -> Result<(), RunFailure> {
        let cs = &mut self.classes[class as usize];
        if !cs.open {
            return Ok(());
        }
        let next = cs.gen.next_after(self.now);
        if next.is_none() {
            if let Some(e) = cs.gen.take_error() {
                return Err(RunFailure::Invariant(format!(
                    "workload[{class}] ({}): trace read failed during the run: {e}",
                    self.sc.classes[class as usize].name
                )));
            }
        }
        let within = match (next, self.sc.horizon.duration) {
            (Some(t), Some(d)) => t < SimTime::ZERO + d,
            (Some(_), None) => true,
            (None, _) => false,
        };
        match next {
            Some(t) if within => self.queue.push(t, Event::Arrival { class }),
            _ => self.close_class(class),
        }
        Ok(())
    }

    fn close_class(&mut self, class: u16) {
        let cs = &mut self.classes[class as usize];
        if !cs.open {
            return;
        }
        cs.open = false;
        self.open_classes -= 1;
        if self.open_classes == 0 {
            self.close_arrivals();
        }
    }

    /// Arrivals have stopped: fix the end of the measurement window and bound the drain.
    fn close_arrivals(&mut self) {
        for cs in &mut self.classes {
            cs.open = false;
        }
        self.open_classes = 0;
        let end = match self.sc.horizon.duration {
            Some(d) if self.sc.horizon.max_requests.is_none_or(|m| self.arrivals < m) => {
                SimTime::ZERO + d
            }
            _ => self.now,
        };
        self.window_end = Some(end);
        if end > self.now {
            self.provisioned_snapshot_due = end;
        } else {
            self.snapshot_provisioned(false);
        }
        if let Some(drain) = self.sc.horizon.drain {
            self.queue.push(end + drain, Event::DrainDeadline);
        }
    }

    pub(super) fn on_arrival(&mut self, class: u16) -> Result<(), RunFailure> {
        if !self.classes[class as usize].open {
            return Ok(());
        }
        let mut hashes = std::mem::take(&mut self.trace_hashes);
        let gen = &mut self.classes[class as usize].gen;
        let d = gen.draw(&mut hashes);
        self.trace_hashes = hashes;
        let session = match gen.open_session(&d) {
            Some(s) => self.sessions.insert(s),
            None => NO_SESSION,
        };
        self.count_arrival(class, true)?;
        self.new_request(class, d, session);
        Ok(())
    }

    /// A session's next turn is due.
    pub(super) fn on_session_turn(&mut self, session: u32) -> Result<(), RunFailure> {
        let (class, d) = self.sessions.pending(session);
        if !self.turns_continue(class, self.now) {
            self.sessions.remove(session);
            return Ok(());
        }
        self.trace_hashes.clear();
        self.count_arrival(class, false)?;
        self.new_request(class, d, session);
        Ok(())
    }

    /// Counts an arrival against the horizon; open-loop arrivals schedule their successor.
    fn count_arrival(&mut self, class: u16, open_loop: bool) -> Result<(), RunFailure> {
        self.arrivals += 1;
        self.tally.arrivals += 1;
        if self.sc.horizon.max_requests == Some(self.arrivals) {
            self.close_arrivals();
        } else if open_loop {
            self.schedule_next_arrival(class)?;
        }
        if self.calls.live() >= self.sc.limits.max_in_flight {
            return Err(RunFailure::InFlightLimit(self.sc.limits.max_in_flight));
        }
        Ok(())
    }

    /// A new call (the `arrivals`-th request) drawn as `d` enters a gateway instance.
    fn new_request(&mut self, class: u16, d: Draws, session: u32) {
        let index = self.arrivals - 1;
        let measured =
            index >= self.sc.warmup.requests && self.now >= SimTime::ZERO + self.sc.warmup.duration;
        if measured && self.window_start.is_none() {
            self.window_start = Some(self.now);
            self.snapshot_provisioned(true);
        }
        self.rec.all.arrivals += 1;
        if measured {
            self.rec.measured.arrivals += 1;
            self.groups.arrival(class);
        }
        self.sample_load();
        let g = self.gateway.pick();
        let new = NewCall {
            id: index,
            arrival: self.now,
            class,
            measured,
            session,
            draws: d,
            model: self.cluster.class_model_id[class as usize],
            gateway: g,
        };
        self.scaling_arrival(new.model);
        let h = self.calls.insert(new, &self.trace_hashes);
        self.arm_call_deadlines(h);
        self.admit(h.idx);
    }

    /// A call ended: the user thinks and sends the next turn, unless the turn failed, the
    /// session is over, or the next turn would come after arrivals stop.
    pub(super) fn continue_session(
        &mut self,
        session: u32,
        class: u16,
        answer_tokens: u32,
        outcome: Outcome,
    ) {
        if outcome != Outcome::Completed || !self.turns_continue(class, self.now) {
            self.sessions.remove(session);
            return;
        }
        let cs = &self.classes[class as usize];
        match cs.gen.next_turn(self.sessions.get_mut(session), answer_tokens) {
            Some((think, d)) if self.turns_continue(class, self.now + think) => {
                self.sessions.set_pending(session, class, d);
                self.queue.push(self.now + think, Event::SessionTurn { session });
            }
            _ => self.sessions.remove(session),
        }
    }

    /// Whether a session turn of `class` may be sent at `at`: before the horizon (a duration
    /// horizon lets open sessions run to its end even after the class's last new session), and
    /// never once `max_requests` arrivals are in.
    fn turns_continue(&self, class: u16, at: SimTime) -> bool {
        if self.sc.horizon.max_requests.is_some_and(|m| self.arrivals >= m) {
            return false;
        }
        match self.sc.horizon.duration {
            Some(d) => at < SimTime::ZERO + d,
            None => self.classes[class as usize].open,
        }
    }
}
