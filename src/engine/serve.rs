//! Attempts at replicas: delivering an attempt (or its decided failure), `queue` service, the
//! `llm` engines' effects, withdrawing attempts, and the client and per-try deadlines.
//!
//! What an attempt meets at its replica depends on the replica's true state, which only this
//! layer reads: a partition from the sending gateway times the connection out after the
//! gateway's `connect_timeout_ms`; a crashed or recovering replica refuses it at once; an
//! erroring one answers with its status after its latency; a hung one takes it and does
//! nothing until the hang ends; otherwise it is queued and served. Slowdowns scale service
//! and iteration times by the replica's current factor.

use super::deadlines::{PER_TRY, TOTAL, TTFT};
use super::event::ReqRef;
use super::request::{CallState, Phase};
use super::{Event, Sim};
use crate::cluster::llm::{Effect, Incoming, Kick};
use crate::gateway::status::AttemptResult;
use crate::metrics::Outcome;
use crate::time::{SimDuration, SimTime};

impl Sim<'_> {
    /// Attempt `h` reaches its replica.
    pub(super) fn deliver(&mut self, h: ReqRef) {
        let a = *self.slab.get_mut(h);
        let (g, r) = (a.gateway, a.replica);
        let hung = !self.faults.is_empty() && {
            if self.fault_state.partitioned(g, r) {
                let t = self.policy.gateway.connect_timeout;
                return self.fail_later(h, AttemptResult::ConnectFailure, t);
            }
            if self.cluster.is_down(r) {
                return self.fail_later(h, AttemptResult::ConnectFailure, SimDuration::ZERO);
            }
            if let Some((status, latency)) = self.fault_state.error_draw(r) {
                return self.fail_later(h, AttemptResult::Status(status), latency);
            }
            self.fault_state.hung(r)
        };
        if self.cluster.is_llm() {
            return self.deliver_llm(h, r, hung);
        }
        if !hung && self.cluster.has_free_slot(r) {
            self.start_service(r, h);
        } else if self.cluster.queue_full(r) {
            return self.attempt_done(h, AttemptResult::Status(429), 0);
        } else {
            self.cluster.enqueue(r, h);
        }
        self.audit(r);
    }

    fn deliver_llm(&mut self, h: ReqRef, r: u32, hung: bool) {
        let idx = self.slab.get_mut(h).call;
        let call = self.calls.slot(idx);
        let info = call.info;
        let inc = Incoming {
            req: h,
            model: self.cluster.local_model_id(r, info.model),
            prompt: info.draws.prompt_tokens.max(1),
            output: info.draws.output_tokens.max(1),
            prefix: info.draws.prefix,
            measured: info.measured,
            priority: self.sc.classes[info.class as usize].priority,
        };
        let queue_full = self.cluster.queue_full(r);
        if queue_full {
            return self.attempt_done(h, AttemptResult::Status(429), 0);
        }
        match self.cluster.llm[r as usize].enqueue(&inc, &call.trace_hashes) {
            Ok(local) => {
                self.slab.get_mut(h).local = local;
                if hung {
                    self.cluster.sync_llm(r);
                } else {
                    self.kick(r);
                }
            }
            Err(_never_fits) => {
                self.rec.llm.rejected_never_fit += 1;
                self.cluster.sync_llm(r);
                self.attempt_done(h, AttemptResult::Status(400), 0);
            }
        }
    }

    /// Attempt `h`'s result is already known; it arrives after `delay`.
    fn fail_later(&mut self, h: ReqRef, result: AttemptResult, delay: SimDuration) {
        let a = self.slab.get_mut(h);
        a.phase = Phase::Failing;
        a.fail = result;
        self.queue.push(self.now + delay, Event::AttemptEnd { req: h });
    }

    #[inline]
    fn start_service(&mut self, r: u32, h: ReqRef) {
        let now = self.now;
        let factor = self.fault_state.slow_factor(r, now);
        let a = self.slab.get_mut(h);
        a.phase = Phase::InService;
        a.start = now;
        let (idx, class) = (a.call, a.class);
        let u = self.calls.slot(idx).info.draws.service_u;
        self.cluster.in_service[r as usize] += 1;
        let service_s = self.cluster.service_law(r, class).quantile(u) * factor;
        let done = now + SimDuration::from_secs_f64(service_s);
        self.slab.get_mut(h).done = done;
        let c = &mut self.calls.slot_mut(idx).info;
        c.start = now;
        c.started = true;
        self.queue.push(done, Event::ServiceDone { req: h });
    }

    pub(super) fn on_service_done(&mut self, h: ReqRef) {
        let live = self.slab.get(h).filter(|a| a.phase == Phase::InService && a.done == self.now);
        let Some(a) = live.copied() else {
            self.stale_events += 1;
            return;
        };
        let r = a.replica;
        if a.start < a.sent || self.now < a.start {
            self.viol.causality += 1;
        }
        self.cluster.in_service[r as usize] -= 1;
        self.pull_next(r);
        self.attempt_done(h, AttemptResult::Success, 0);
    }

    /// Starts waiting attempts on queue replica `r` while it has free slots.
    #[inline]
    pub(super) fn pull_next(&mut self, r: u32) {
        if self.fault_state.hung(r) {
            return;
        }
        while self.cluster.has_free_slot(r) {
            let Some(next) = self.cluster.waiting[r as usize].pop_front() else { break };
            if self.slab.get(next).is_some_and(|q| q.phase == Phase::Queued) {
                self.cluster.queued[r as usize] -= 1;
                self.start_service(r, next);
            }
        }
        self.audit(r);
    }

    /// Work-conservation check of replica `r` after a change to it (a hung or down replica
    /// holds work by definition).
    #[inline]
    pub(super) fn audit(&mut self, r: u32) {
        if self.cluster.idle_with_work(r) && !self.fault_state.hung(r) && !self.cluster.is_down(r) {
            self.viol.work_conservation += 1;
        }
    }

    /// Takes attempt `h` back from its replica (cancelled, timed out or hedged away); the
    /// caller releases it.
    pub(super) fn withdraw(&mut self, h: ReqRef) {
        let a = *self.slab.get_mut(h);
        let r = a.replica;
        match a.phase {
            Phase::Failing | Phase::Free => {}
            _ if self.cluster.is_llm() => {
                let w = self.window();
                self.cluster.llm[r as usize].abort(a.local, self.now, w);
                if self.fault_state.hung(r) {
                    self.cluster.sync_llm(r);
                } else {
                    self.kick(r);
                }
            }
            Phase::Queued => {
                // The handle stays in the replica's FIFO as a tombstone.
                self.cluster.queued[r as usize] -= 1;
                self.audit(r);
            }
            Phase::InService => {
                self.cluster.in_service[r as usize] -= 1;
                self.pull_next(r);
            }
        }
        // Its queue entry or pending event is now stale.
        self.slab.get_mut(h).phase = Phase::Failing;
    }

    /// Lets `llm` replica `r` start work if idle, then applies what happened.
    pub(super) fn kick(&mut self, r: u32) {
        let w = self.window();
        self.set_time_factor(r);
        let mut effects = std::mem::take(&mut self.llm_effects);
        let k = self.cluster.llm[r as usize].kick(self.now, w, &mut effects);
        self.after_llm(r, k, effects);
    }

    pub(super) fn on_iteration(&mut self, r: u32) {
        if self.iter_due[r as usize] != self.now {
            self.stale_events += 1;
            return;
        }
        self.iter_due[r as usize] = SimTime::MAX;
        let w = self.window();
        self.set_time_factor(r);
        let mut effects = std::mem::take(&mut self.llm_effects);
        let k = self.cluster.llm[r as usize].iteration_done(self.now, w, &mut effects);
        self.after_llm(r, k, effects);
    }

    pub(super) fn on_model_loaded(&mut self, r: u32) {
        if self.load_due[r as usize] != self.now {
            self.stale_events += 1;
            return;
        }
        self.load_due[r as usize] = SimTime::MAX;
        let w = self.window();
        self.set_time_factor(r);
        let mut effects = std::mem::take(&mut self.llm_effects);
        let k = self.cluster.llm[r as usize].load_done(self.now, w, &mut effects);
        self.after_llm(r, k, effects);
    }

    /// The slowdown factor of `r` now, for the iteration about to be scheduled.
    #[inline]
    fn set_time_factor(&mut self, r: u32) {
        let f = self.fault_state.slow_factor(r, self.now);
        self.cluster.llm[r as usize].time_factor = f;
    }

    /// Schedules what replica `r` asked for, applies its effects, and audits it.
    fn after_llm(&mut self, r: u32, k: Kick, mut effects: Vec<Effect>) {
        match k {
            Kick::Nothing => {}
            Kick::Iteration(t) => {
                self.iter_due[r as usize] = t;
                self.queue.push(t, Event::Iteration { replica: r });
            }
            Kick::Load(t) => {
                self.load_due[r as usize] = t;
                self.queue.push(t, Event::ModelLoaded { replica: r });
            }
        }
        self.cluster.sync_llm(r);
        for e in effects.drain(..) {
            self.apply_effect(r, e);
        }
        if self.llm_effects.capacity() < effects.capacity() {
            self.llm_effects = effects;
        }
        self.cluster.sync_llm(r);
        self.gateway.replica_changed(r, &self.cluster);
        if self.gateway.needs_kv_events() {
            self.cluster.llm[r as usize].drain_kv_events(&mut self.kv_events);
            if !self.kv_events.is_empty() {
                self.gateway.publish_kv(self.now, r, &self.kv_events);
                self.kv_events.clear();
            }
        }
        if cfg!(debug_assertions) && self.cluster.llm[r as usize].check_kv().is_err() {
            self.viol.kv_conservation += 1;
        }
        self.audit(r);
    }

    fn apply_effect(&mut self, r: u32, e: Effect) {
        let now = self.now;
        match e {
            // An effect of the same iteration may have withdrawn this attempt already (a
            // hedged sibling's first token cancels it): then it is stale.
            Effect::Started { req } if self.slab.get(req).is_none() => {}
            Effect::FirstToken { req, .. } if self.slab.get(req).is_none() => {}
            Effect::Started { req } => {
                let a = self.slab.get_mut(req);
                a.phase = Phase::InService;
                a.start = now;
                let c = &mut self.calls.slot_mut(a.call).info;
                c.start = now;
                c.started = true;
            }
            Effect::FirstToken { req, min_prefill } => {
                let arrival = self.calls.slot(self.slab.get_mut(req).call).info.arrival;
                let sent = self.slab.get_mut(req).sent;
                if (now - sent) + SimDuration(1_000) < min_prefill {
                    self.viol.ttft_below_prefill += 1;
                }
                debug_assert!(arrival <= sent);
                self.first_token(req);
            }
            Effect::Done { req, generated } => {
                let Some(a) = self.slab.get(req).copied() else { return };
                if !a.has_first_token || a.start < a.sent || a.first_token < a.start {
                    self.viol.causality += 1;
                }
                if generated >= 2 {
                    let tpot = (now - a.first_token).as_nanos() / u64::from(generated - 1);
                    if SimDuration(tpot) < self.cluster.llm[r as usize].min_iteration() {
                        self.viol.tpot_below_iteration += 1;
                    }
                }
                self.attempt_done(req, AttemptResult::Success, generated);
            }
        }
    }

    /// Client and per-try deadlines of class `class`.
    pub(super) fn on_deadline(&mut self, class: u16, kind: u8) {
        loop {
            let (calls, slab) = (&self.calls, &self.slab);
            let stale = |_: SimTime, slot: u32, gen: u32| -> bool {
                if kind == PER_TRY {
                    let a = slab.get(ReqRef { idx: slot, gen });
                    return a.is_none_or(|a| a.has_first_token || a.phase == Phase::Failing);
                }
                let c = calls.slot(slot);
                c.info.gen != gen
                    || c.info.state == CallState::Free
                    || (kind == TTFT && c.info.has_first_token)
            };
            let q = &mut self.deadlines.class[class as usize][kind as usize];
            let Some((slot, gen)) = q.pop_due(self.now, stale) else { break };
            match kind {
                TOTAL | TTFT => self.end_call_cancelling(slot, Outcome::TimedOut),
                _ => self.per_try_timeout(ReqRef { idx: slot, gen }),
            }
        }
        let q = &mut self.deadlines.class[class as usize][kind as usize];
        if let Some(at) = q.rearm() {
            self.queue.push(at, Event::Deadline { class, kind });
        }
    }

    /// Attempt `h` has not streamed within its per-try timeout. With Envoy's
    /// `hedge_on_per_try_timeout` another attempt starts beside it if the attempts and the
    /// retry budget allow, and the slow one is never cancelled (it may still win); without
    /// hedging it is given up on and the failure may be retried.
    fn per_try_timeout(&mut self, h: ReqRef) {
        let idx = self.slab.get_mut(h).call;
        let info = self.calls.slot(idx).info;
        let p = self.policy.gateway.retries_for(&self.sc.classes[info.class as usize].client);
        if p.is_some_and(|p| p.hedge_on_per_try_timeout) {
            // Envoy hedges on every per-try timeout while attempts and retry slots last.
            let hedge = p.is_some_and(|p| u32::from(info.attempts) < p.max_attempts)
                && info.retries_held < u8::MAX
                && self.gateway.may_retry(info.gateway, info.class);
            if hedge {
                self.gateway.retry_started(info.gateway);
                self.calls.slot_mut(idx).info.retries_held += 1;
                self.dispatch(idx);
                if self.calls.slot(idx).info.attempts > info.attempts {
                    self.rec.hedges += 1;
                }
            }
            return;
        }
        self.withdraw(h);
        self.attempt_done(h, AttemptResult::Timeout, 0);
    }
}
