//! The engine side of the activator (`gateway::activator`): holding a call that found no
//! replica of a scaled pool, sending the held calls on when a replica becomes ready, and
//! ending those that wait too long.
//!
//! A held call is in [`CallState::Held`] with `queued_at` = when it was held; its client's
//! deadlines stay armed (a client timeout ends it `timed_out` and takes it out of the
//! activator's count). One `HoldExpired` event per hold ends it with a 504 (`error`) at the
//! hold timeout unless it left before (the event then finds it released or held again since,
//! and is stale).

use super::request::{CallRef, CallState};
use super::{Event, Sim};
use crate::metrics::Outcome;

impl Sim<'_> {
    /// Whether the activator holds calls for `model`.
    #[inline]
    pub(super) fn holds(&self, model: u16) -> bool {
        !self.closed && self.activator.as_ref().is_some_and(|a| a.serves(model))
    }

    /// Holds call `idx` (it found no replica for its model).
    pub(super) fn hold(&mut self, idx: u32) {
        let Some(a) = &mut self.activator else { return };
        let h = self.calls.handle(idx);
        a.hold((h.idx, h.gen));
        self.rec.held += 1;
        let at = self.now + a.timeout;
        let info = &mut self.calls.slot_mut(idx).info;
        info.state = CallState::Held;
        info.queued_at = self.now;
        self.queue.push(at, Event::HoldExpired { call: h });
    }

    /// A held call leaves the activator without being sent on.
    pub(super) fn unhold(&mut self, idx: u32) {
        if let Some(a) = &mut self.activator {
            a.left();
        }
        self.calls.slot_mut(idx).info.state = CallState::Waiting;
    }

    /// The hold of call `h` may have run out.
    pub(super) fn on_hold_expired(&mut self, h: CallRef) {
        let Some(timeout) = self.activator.as_ref().map(|a| a.timeout) else { return };
        let due = self.calls.get(h).is_some_and(|c| {
            c.info.state == CallState::Held && c.info.queued_at + timeout == self.now
        });
        if !due {
            self.stale_events += 1;
            return;
        }
        self.unhold(h.idx);
        self.rec.held_expired += 1;
        self.end_call(h.idx, Outcome::Error, 0);
    }

    /// A replica became ready (or routable): every held call is routed again, oldest first;
    /// those that still find none are held again.
    pub(super) fn release_held(&mut self) {
        let Some(a) = &mut self.activator else { return };
        if a.held() == 0 {
            return;
        }
        let queue = a.drain();
        for (idx, gen) in queue {
            let h = CallRef { idx, gen };
            if !self.calls.get(h).is_some_and(|c| c.info.state == CallState::Held) {
                continue;
            }
            if let Some(a) = &mut self.activator {
                a.released();
            }
            self.calls.slot_mut(idx).info.state = CallState::Waiting;
            self.dispatch(idx);
        }
    }

    /// Requests held now.
    pub(super) fn held_now(&self) -> u32 {
        self.activator.as_ref().map_or(0, |a| a.held())
    }
}
