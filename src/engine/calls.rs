//! A call's way through the gateway to its single outcome.
//!
//! 1. **Admission** at the gateway instance it entered ([`crate::gateway::Gateways::admit`]):
//!    rate limits, concurrency limits, the admission queue, load shedding, model downgrade.
//! 2. **Routing** ([`crate::gateway::Gateways::route`]) over the replicas this instance
//!    considers healthy, then an **attempt** goes to the chosen replica ([`super::serve`]).
//! 3. The attempt ends with an [`AttemptResult`]. A success completes the call. A failure is
//!    retried when the class's retry policy covers it and allows another attempt, the
//!    gateway's retry budget has room and, for a broken stream, the policy re-sends those
//!    (`resend_broken_streams`), after a jittered backoff; otherwise the call ends with
//!    the outcome the failure maps to. With `hedge_on_per_try_timeout` a per-try timeout
//!    starts another attempt beside the slow one, and the first to stream wins.
//! 4. **Outcome**: exactly one per call, recorded once ([`Sim::end_call`]) into the run's
//!    recorder and its group recorders; sessions continue from there.
//!
//! Failures map to outcomes as a client sees them: 429, 408 and "can never fit" (400) are
//! `rejected`; 5xx, connect failures and "no healthy upstream" (503) are `error`; a reset (the
//! replica crashed mid-request) is `failed`; an exhausted per-try timeout is `timed_out`.

use super::deadlines::{PER_TRY, TOTAL, TTFT};
use super::event::ReqRef;
use super::request::{Attempt, CallRef, CallState, Phase};
use super::{Event, Sim, NO_SESSION};
use crate::gateway::queue::Pushed;
use crate::gateway::status::AttemptResult;
use crate::gateway::{Admission, AdmitRequest, Route};
use crate::metrics::Outcome;
use crate::policy::routing::{Completion, FirstToken, RequestView};
use crate::time::{SimDuration, SimTime};

/// The outcome a failed attempt leaves its call with when it is not retried.
pub(super) fn outcome_of(r: AttemptResult) -> Outcome {
    match r {
        AttemptResult::Success => Outcome::Completed,
        AttemptResult::Status(c) if (500..600).contains(&c) => Outcome::Error,
        AttemptResult::Status(_) => Outcome::Rejected,
        AttemptResult::ConnectFailure => Outcome::Error,
        AttemptResult::Reset => Outcome::Failed,
        AttemptResult::Timeout => Outcome::TimedOut,
    }
}

/// Bits of the routing id left for the request id; the attempt number sits above them.
const ATTEMPT_SHIFT: u32 = 48;

impl Sim<'_> {
    /// Arms the call's total and time-to-first-token deadlines.
    pub(super) fn arm_call_deadlines(&mut self, h: CallRef) {
        let class = self.calls.slot(h.idx).info.class;
        for kind in [TOTAL, TTFT] {
            let q = &mut self.deadlines.class[class as usize][kind as usize];
            if let Some(at) = q.push(self.now, h.idx, h.gen) {
                self.queue.push(at, Event::Deadline { class, kind });
            }
        }
    }

    /// Admission at the call's gateway instance.
    pub(super) fn admit(&mut self, idx: u32) {
        if !self.gateway.admission_on() {
            self.count_admitted(idx);
            return self.dispatch(idx);
        }
        let info = self.calls.slot(idx).info;
        self.calls.slot_mut(idx).info.rate_delayed = false;
        let k = &self.sc.classes[info.class as usize];
        let req = AdmitRequest {
            class: info.class,
            model: info.model,
            input_tokens: info.draws.prompt_tokens,
            rate_limited: info.rate_delayed,
            priority: k.tier.priority,
        };
        match self.gateway.admit(info.gateway, &req, &self.cluster, self.now) {
            Admission::Go { model } => {
                self.count_admitted(idx);
                self.calls.slot_mut(idx).info.token = self.gateway.has_bucket(info.gateway);
                self.apply_downgrade(idx, model);
                self.dispatch(idx);
            }
            Admission::Queue { model } => {
                self.apply_downgrade(idx, model);
                self.gateway_enqueue(idx);
            }
            Admission::Delay(d) => {
                // After the delay the rest of admission (shedding, downgrade, concurrency)
                // still applies.
                let c = &mut self.calls.slot_mut(idx).info;
                c.state = CallState::Waiting;
                c.rate_delayed = true;
                let h = self.calls.handle(idx);
                self.queue.push(self.now + d, Event::Retry { call: h });
            }
            Admission::Reject(_) => {
                self.rec.gateway_rejected += 1;
                self.end_call(idx, Outcome::Rejected, 0);
            }
        }
    }

    /// Counts the call as admitted once, however often it passes admission again.
    fn count_admitted(&mut self, idx: u32) {
        let c = &mut self.calls.slot_mut(idx).info;
        if !c.admitted {
            c.admitted = true;
            self.tally.admitted += 1;
        }
    }

    fn apply_downgrade(&mut self, idx: u32, model: Option<u16>) {
        if let Some(m) = model {
            let c = &mut self.calls.slot_mut(idx).info;
            if m != c.model {
                c.model = m;
                c.downgraded = true;
            }
        }
    }

    /// Puts the call into its gateway's admission queue (with its queue timeout).
    fn gateway_enqueue(&mut self, idx: u32) {
        let h = self.calls.handle(idx);
        let info = &mut self.calls.slot_mut(idx).info;
        if info.token {
            // Back in the queue: its concurrency token returns until it is dequeued again.
            info.token = false;
            let g = info.gateway;
            self.gateway.call_ended(g, self.now);
        }
        let info = &mut self.calls.slot_mut(idx).info;
        info.state = CallState::GatewayQueued;
        info.queued_at = self.now;
        let (g, class, model, down) = (info.gateway, info.class, info.model, info.downgraded);
        let priority = self.sc.classes[class as usize].tier.priority;
        match self.gateway.enqueue(g, (h.idx, h.gen), priority, model, down) {
            Pushed::Full => {
                self.rec.gateway_rejected += 1;
                return self.end_call(idx, Outcome::Rejected, 0);
            }
            Pushed::Displaced((vi, vg)) => {
                // A lower tier gives way: 429.
                if self.calls.get(CallRef { idx: vi, gen: vg }).is_some() {
                    self.rec.gateway_rejected += 1;
                    self.end_call(vi, Outcome::Rejected, 0);
                }
            }
            Pushed::Queued => {}
        }
        if let Some(at) = self.deadlines.gateway[g as usize].push(self.now, h.idx, h.gen) {
            self.queue.push(at, Event::GatewayDeadline { gateway: g });
        }
    }

    /// Sends queued calls of gateway `g` while it has room.
    #[inline]
    pub(super) fn pump_gateway(&mut self, g: u16) {
        if self.pumping || self.closed || !self.gateway.admission_on() || !self.gateway.has_queue(g)
        {
            return;
        }
        self.pumping = true;
        while let Some(((idx, gen), model)) = self.gateway.dequeue(g, &self.cluster, self.now) {
            let h = CallRef { idx, gen };
            let live = self.calls.get(h).is_some_and(|c| c.info.state == CallState::GatewayQueued);
            if !live {
                // Its bucket token was taken by the dequeue: give it back.
                if self.gateway.has_bucket(g) {
                    self.gateway.call_ended(g, self.now);
                }
                continue;
            }
            self.count_admitted(idx);
            self.calls.slot_mut(idx).info.token = self.gateway.has_bucket(g);
            self.apply_downgrade(idx, model);
            self.dispatch(idx);
            if self.calls.get(h).is_some_and(|c| c.info.state == CallState::GatewayQueued) {
                // Back in the queue (no room after all): wait for the next release.
                break;
            }
        }
        self.pumping = false;
    }

    /// Gateway queue timeouts of instance `g` (SGLang: 408).
    pub(super) fn on_gateway_deadline(&mut self, g: u16) {
        loop {
            let calls = &self.calls;
            // An entry from an earlier stay in the queue is dead too: the timeout counts
            // from the latest enqueue.
            let stale = |start: SimTime, slot: u32, gen: u32| {
                let c = calls.slot(slot);
                c.info.gen != gen
                    || c.info.state != CallState::GatewayQueued
                    || c.info.queued_at != start
            };
            let Some((slot, _)) = self.deadlines.gateway[g as usize].pop_due(self.now, stale)
            else {
                break;
            };
            debug_assert!(
                self.deadlines.gateway[g as usize]
                    .after
                    .is_some_and(|t| self.now - self.calls.slot(slot).info.queued_at >= t),
                "a queue timeout before its time"
            );
            let h = self.calls.handle(slot);
            self.gateway.unqueue(g, (h.idx, h.gen));
            self.rec.gateway_rejected += 1;
            self.end_call(slot, Outcome::Rejected, 0);
        }
        if let Some(at) = self.deadlines.gateway[g as usize].rearm() {
            self.queue.push(at, Event::GatewayDeadline { gateway: g });
        }
    }

    /// Routes the call and sends an attempt.
    pub(super) fn dispatch(&mut self, idx: u32) {
        let info = self.calls.slot(idx).info;
        let g = info.gateway;
        if self.gateway.needs_hashes {
            self.hash_prompt(idx);
        }
        let d = info.draws;
        let view = RequestView {
            id: info.id | (u64::from(info.attempts) << ATTEMPT_SHIFT),
            class: info.class,
            model: info.model,
            prompt_tokens: d.prompt_tokens,
            session: if d.prefix.session_key != 0 {
                d.prefix.session_key
            } else {
                d.prefix.group_key
            },
            hashes: &self.req_hashes,
        };
        let measured = info.measured && info.attempts == 0;
        let avoid = info.attempts > 0
            && self
                .policy
                .gateway
                .retries_for(&self.sc.classes[info.class as usize].client)
                .is_some_and(|p| p.previous_hosts);
        let tried: &[u32] = if avoid { &self.calls.slot(idx).tried } else { &[] };
        let route = self.gateway.route(g, &view, tried, &self.cluster, self.now, measured);
        if info.live > 0 && !matches!(route, Route::To(_)) {
            // A hedge found nowhere to go: the attempts in flight carry on alone, and the slot
            // taken for the hedge is given back.
            let info = &mut self.calls.slot_mut(idx).info;
            if info.retries_held > 0 {
                info.retries_held -= 1;
                self.gateway.retry_ended(g);
            }
            return;
        }
        match route {
            Route::To(r) => self.send(idx, r, view.id),
            Route::NoCandidate | Route::NoHealthy if self.holds(view.model) => self.hold(idx),
            Route::NoCandidate => self.end_call(idx, Outcome::Rejected, 0),
            Route::NoHealthy => {
                self.rec.no_healthy += 1;
                self.end_call(idx, Outcome::Error, 0);
            }
            Route::Busy => {
                if self.gateway.has_queue(g) {
                    self.gateway_enqueue(idx);
                } else {
                    self.rec.no_healthy += 1;
                    self.end_call(idx, Outcome::Error, 0);
                }
            }
        }
    }

    /// The call's prompt block hashes for routers that read them.
    fn hash_prompt(&mut self, idx: u32) {
        let c = self.calls.slot(idx);
        let bs = self.gateway.block_size;
        let d = c.info.draws;
        if c.trace_hashes.is_empty() {
            crate::workload::prefix::block_hashes(
                &d.prefix,
                d.prompt_tokens,
                bs,
                &mut self.req_hashes,
            );
        } else {
            self.req_hashes.clear();
            self.req_hashes.extend(crate::workload::trace::expand_block_hashes(
                &c.trace_hashes,
                bs,
                d.prompt_tokens,
            ));
        }
    }

    /// A new attempt of call `idx` to replica `r` (routing id `id`).
    fn send(&mut self, idx: u32, r: u32, id: u64) {
        let c = self.calls.slot(idx).info;
        let a = Attempt::new(idx, c.class, id, c.gateway, r, self.now);
        let h = self.slab.insert(a);
        let call = self.calls.slot_mut(idx);
        call.info.attempts = call.info.attempts.saturating_add(1);
        call.info.live += 1;
        call.info.state = CallState::Dispatched;
        call.info.last_replica = r;
        call.attempts_live.push(h);
        call.tried.push(r);
        let q = &mut self.deadlines.class[c.class as usize][PER_TRY as usize];
        if let Some(at) = q.push(self.now, h.idx, h.gen) {
            self.queue.push(at, Event::Deadline { class: c.class, kind: PER_TRY });
        }
        self.deliver(h);
    }

    /// A failing attempt's decided result arrives.
    pub(super) fn on_attempt_end(&mut self, h: ReqRef) {
        match self.slab.get(h) {
            Some(a) if a.phase == Phase::Failing => {
                let result = a.fail;
                self.attempt_done(h, result, 0);
            }
            _ => self.stale_events += 1,
        }
    }

    /// Attempt `h` is over (the replica already let go of it): the gateway hears how, and the
    /// call completes, retries, waits for a hedged sibling, or ends.
    pub(super) fn attempt_done(&mut self, h: ReqRef, result: AttemptResult, generated: u32) {
        let a = *self.slab.get_mut(h);
        let idx = a.call;
        let sibling = self.calls.slot(idx).info.live > 1;
        if !sibling {
            // Whatever retry the call held a slot for is over.
            self.drop_retry_slot(idx);
        }
        let will_retry = !result.is_success() && !sibling && self.may_retry(idx, result);
        self.release_attempt(h, Some(result), will_retry);
        if result.is_success() {
            self.cancel_attempts(idx);
            self.end_call(idx, Outcome::Completed, generated);
        } else if sibling {
            // A hedged sibling is still running; it decides.
        } else if will_retry {
            self.schedule_retry(idx);
        } else {
            self.end_call(idx, outcome_of(result), 0);
        }
        self.pump_gateway(a.gateway);
    }

    /// Removes attempt `h` from its call and its gateway's books (`result` `None`: cancelled,
    /// no health feedback).
    fn release_attempt(&mut self, h: ReqRef, result: Option<AttemptResult>, will_retry: bool) {
        let a = self.slab.remove(h);
        let done = Completion {
            id: a.id,
            replica: a.replica,
            now: self.now,
            first_token: a.has_first_token.then(|| a.first_token - a.sent),
            total: self.now - a.sent,
            success: result == Some(AttemptResult::Success),
        };
        self.gateway.release(a.gateway, &done, result, will_retry, self.now);
        let call = self.calls.slot_mut(a.call);
        call.info.live -= 1;
        call.attempts_live.retain(|&x| x != h);
    }

    /// Releases every retry slot call `idx` holds.
    fn drop_retry_slot(&mut self, idx: u32) {
        let info = &mut self.calls.slot_mut(idx).info;
        let (g, held) = (info.gateway, info.retries_held);
        info.retries_held = 0;
        for _ in 0..held {
            self.gateway.retry_ended(g);
        }
    }

    /// Whether a failure of call `idx` with `result` gets another attempt.
    fn may_retry(&self, idx: u32, result: AttemptResult) -> bool {
        let info = self.calls.slot(idx).info;
        let Some(p) = self.policy.gateway.retries_for(&self.sc.classes[info.class as usize].client)
        else {
            return false;
        };
        if !p.retriable(result) || u32::from(info.attempts) >= p.max_attempts {
            return false;
        }
        // A broken stream is re-sent only by client-side retries: a proxy cannot retry once the
        // response has begun (Envoy's router retries a reset only while
        // `downstream_response_started_` is false; envoy issue #10007).
        if info.has_first_token && !p.resend_broken_streams {
            return false;
        }
        self.gateway.may_retry(info.gateway, info.class)
    }

    /// Waits the backoff, then sends the next attempt.
    fn schedule_retry(&mut self, idx: u32) {
        let info = self.calls.slot(idx).info;
        let p = self
            .policy
            .gateway
            .retries_for(&self.sc.classes[info.class as usize].client)
            .expect("may_retry checked the policy");
        let k = u32::from(info.attempts);
        let wait = self.gateway.backoff(info.gateway, k, &p.backoff);
        self.gateway.retry_started(info.gateway);
        let c = &mut self.calls.slot_mut(idx).info;
        c.retries_held += 1;
        c.state = CallState::Waiting;
        let h = self.calls.handle(idx);
        self.queue.push(self.now + wait, Event::Retry { call: h });
    }

    /// A call's backoff or admission delay is over.
    pub(super) fn on_retry(&mut self, h: CallRef) {
        match self.calls.get(h).map(|c| (c.info.state, c.info.rate_delayed)) {
            Some((CallState::Waiting, true)) => self.admit(h.idx),
            Some((CallState::Waiting, false)) => self.dispatch(h.idx),
            _ => {}
        }
    }

    /// The first token of attempt `h` reached its gateway: the client has it; a hedged
    /// sibling loses.
    pub(super) fn first_token(&mut self, h: ReqRef) {
        let a = self.slab.get_mut(h);
        a.first_token = self.now;
        a.has_first_token = true;
        let (idx, id, r, g) = (a.call, a.id, a.replica, a.gateway);
        self.gateway.first_token(g, &FirstToken { id, replica: r, now: self.now });
        // Envoy releases a retry's slot when the retried attempt's response headers arrive
        // (for a streamed answer, with its first token).
        self.drop_retry_slot(idx);
        let call = self.calls.slot_mut(idx);
        let first = !call.info.has_first_token;
        let ttft = self.now - call.info.arrival;
        call.info.first_token = self.now;
        call.info.has_first_token = true;
        if call.info.live > 1 {
            let losers: Vec<ReqRef> =
                call.attempts_live.iter().copied().filter(|&x| x != h).collect();
            for l in losers {
                self.withdraw(l);
                self.release_attempt(l, None, false);
            }
        }
        if first {
            self.note_sample_ttft(ttft);
        }
    }

    /// Withdraws and releases every live attempt of call `idx` (cancelled).
    fn cancel_attempts(&mut self, idx: u32) {
        while let Some(&h) = self.calls.slot(idx).attempts_live.last() {
            self.withdraw(h);
            self.release_attempt(h, None, false);
        }
    }

    /// Ends call `idx` with `outcome`, cancelling whatever it still has in flight (attempts,
    /// a place in a gateway queue, a pending retry).
    pub(super) fn end_call_cancelling(&mut self, idx: u32, outcome: Outcome) {
        let info = self.calls.slot(idx).info;
        self.cancel_attempts(idx);
        if info.state == CallState::GatewayQueued {
            let h = self.calls.handle(idx);
            self.gateway.unqueue(info.gateway, (h.idx, h.gen));
        }
        if info.state == CallState::Held {
            self.unhold(idx);
        }
        self.end_call(idx, outcome, 0);
        self.pump_gateway(info.gateway);
    }

    /// The one place a call ends: records its outcome and latencies, frees it, continues its
    /// session. Its attempts must already be released.
    pub(super) fn end_call(&mut self, idx: u32, outcome: Outcome, generated: u32) {
        if self.calls.slot(idx).info.retries_held > 0 {
            self.drop_retry_slot(idx);
        }
        let info = self.calls.remove(idx);
        debug_assert_eq!(info.live, 0, "a call ends with attempts in flight");
        if outcome == Outcome::Failed {
            let client = &self.sc.classes[info.class as usize].client;
            let p = self.policy.gateway.retries_for(client);
            let max = p.map_or(1, |p| p.max_attempts);
            let resend = p.is_some_and(|p| p.resend_broken_streams);
            if u32::from(info.attempts) >= max || (info.has_first_token && !resend) {
                self.rec.failed_unretriable += 1;
            }
        }
        if info.token {
            self.gateway.call_ended(info.gateway, self.now);
            self.pump_gateway(info.gateway);
        }
        self.record_end(&info, outcome, generated);
        if info.session != NO_SESSION {
            self.continue_session(info.session, info.class, info.draws.output_tokens, outcome);
        }
    }

    /// Records a call's outcome into the run's recorder and its groups.
    fn record_end(&mut self, info: &super::request::CallInfo, outcome: Outcome, generated: u32) {
        let now = self.now;
        self.rec.all.add(outcome);
        match outcome {
            Outcome::Completed => self.tally.completed += 1,
            Outcome::Rejected => self.tally.rejected += 1,
            Outcome::Error | Outcome::Failed => self.tally.errors += 1,
            _ => {}
        }
        let ttft = info.has_first_token.then(|| info.first_token - info.arrival);
        let done = outcome == Outcome::Completed;
        let tpot = (done && generated >= 2 && info.has_first_token)
            .then(|| SimDuration((now - info.first_token).as_nanos() / u64::from(generated - 1)));
        let slo = self.sc.classes[info.class as usize].slo;
        let llm = self.cluster.is_llm();
        let met = done
            && llm
            && slo.ttft.is_none_or(|s| ttft.is_none_or(|t| t <= s))
            && slo.tpot.is_none_or(|s| tpot.is_none_or(|t| t <= s));
        let in_window = done && self.in_window();
        let end = crate::metrics::RequestEnd {
            outcome,
            measured: info.measured,
            e2e: now - info.arrival,
            ttft,
            queue_wait: info.started.then(|| info.start - info.arrival),
            tpot,
            met,
            in_window,
            generated,
            attempts: u64::from(info.attempts),
            downgraded: info.downgraded,
        };
        end.apply(&mut self.rec);
        if done {
            self.scaling_answered(info.last_replica, ttft, tpot);
            if !llm {
                // A queue replica's response is its first (and only) token.
                self.note_sample_ttft(end.e2e);
            }
        }
        self.groups.record(info.class, info.last_replica, &self.cluster, &end);
        if !self.faults.is_empty() && info.measured {
            // Time to first token as the client saw it (the whole response for queue
            // replicas); never for requests that got none.
            let seen = ttft.or((done && !llm).then_some(end.e2e));
            self.fault_ttft.push((info.arrival, seen.unwrap_or(SimDuration(u64::MAX))));
        }
    }
}
