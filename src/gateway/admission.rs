//! One gateway instance's admission control: what happens to a request before it is routed.
//!
//! In order, each step only if configured under `gateway.admission`:
//! 1. **rate limit** per tenant ([`super::token_bucket`], [`super::limit_req`]): 429 (or
//!    nginx's status), or a delay (nginx `limit_req` without `nodelay`);
//! 2. **shedding**: a sheddable request (tier priority < 0) is refused with 429 when the GIE
//!    saturation of its model's replicas, as this instance scraped them, is at least 1
//!    ([`super::saturation`]);
//! 3. **downgrade**: a request for the `from` model goes to the `to` model while `from`'s
//!    replicas are saturated (the saturation or mean waiting threshold);
//! 4. **concurrency**: SGLang's token bucket (`max_concurrent_requests` tokens, refilled at
//!    `rate_limit_tokens_per_second`, a token returned when its request ends); with no token —
//!    or with requests already waiting, so nobody overtakes them — the request joins the
//!    admission queue ([`super::queue`]); a full queue, or none configured, is 429.
//!
//! A queued request leaves the queue when a token is available and (with `max_conns`) some
//! replica has room; its queue timeout (408) is kept by the engine.

use super::queue::{AdmissionQueue, CallRef};
use super::saturation::pool_saturation;
use super::token_bucket::{Decision, Limiter, TokenBucket};
use crate::spec::gateway::AdmissionConfig;
use crate::time::{SimDuration, SimTime};

/// What admission decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Route it now, to `model` if it was downgraded (`None`: the model it asked for); it
    /// holds a concurrency token if a bucket is configured.
    Go {
        /// Downgraded model (model-table index).
        model: Option<u16>,
    },
    /// Wait in the admission queue (then go to `model` if downgraded).
    Queue {
        /// Downgraded model (model-table index).
        model: Option<u16>,
    },
    /// Route it after this delay (nginx `limit_req` without `nodelay`).
    Delay(SimDuration),
    /// Refuse it with this status.
    Reject(u16),
}

/// What admission knows of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmitRequest {
    /// Workload class.
    pub class: u16,
    /// Model asked for (model-table index).
    pub model: u16,
    /// Prompt tokens (the cost of an `input_tokens` rate limit).
    pub input_tokens: u32,
    /// It already passed the rate limiter, after the delay it imposed (`limit_req` without
    /// `nodelay`): admission continues from the next step.
    pub rate_limited: bool,
    /// Tier priority (< 0: sheddable).
    pub priority: i32,
}

/// Model downgrade resolved to model-table indices.
#[derive(Debug, Clone, Copy)]
pub(super) struct Downgrade {
    pub from: u16,
    pub to: u16,
}

/// One instance's admission state.
#[derive(Debug)]
pub(super) struct AdmissionState {
    /// One limiter per tenant (built on first use).
    limiters: Vec<Option<Limiter>>,
    /// The concurrency bucket.
    pub bucket: Option<TokenBucket>,
    /// The admission queue.
    pub queue: Option<AdmissionQueue>,
    /// Queued calls' models: the one they will be routed to, and whether it is a downgrade.
    pub queued_model: std::collections::BTreeMap<CallRef, (u16, bool)>,
}

impl AdmissionState {
    pub fn new(cfg: &AdmissionConfig, tenants: usize) -> AdmissionState {
        AdmissionState {
            limiters: vec![None; tenants],
            bucket: cfg
                .concurrency
                .map(|c| TokenBucket::new(f64::from(c.max_concurrent_requests), c.tokens_per_s)),
            queue: cfg.queue.map(|q| AdmissionQueue::new(q.size)),
            queued_model: Default::default(),
        }
    }

    /// Step 1: the tenant's rate limiter.
    pub fn rate_limit(
        &mut self,
        cfg: &AdmissionConfig,
        tenant: u16,
        input_tokens: u32,
        now: SimTime,
    ) -> Option<Admission> {
        let spec = cfg.rate_limit.as_ref()?;
        let l = self.limiters[tenant as usize].get_or_insert_with(|| spec.build());
        match l.admit(input_tokens, now) {
            Decision::Admit => None,
            Decision::Delay(d) => Some(Admission::Delay(d)),
            Decision::Reject(s) => Some(Admission::Reject(s)),
        }
    }

    /// Step 4: a concurrency token, the queue (with room for tier `priority`), or 429.
    pub fn concurrency(&mut self, priority: i32, now: SimTime) -> Admission {
        let waiting = self.queue.as_ref().is_some_and(|q| !q.is_empty());
        let took = !waiting && self.bucket.as_mut().is_none_or(|b| b.try_take(1.0, now));
        if took {
            return Admission::Go { model: None };
        }
        match &self.queue {
            Some(q) if q.has_room_for(priority) => Admission::Queue { model: None },
            _ => Admission::Reject(429),
        }
    }
}

/// Whether the `from` model's replicas are saturated enough to downgrade.
pub(super) fn should_downgrade(
    cfg: &crate::spec::gateway::DowngradeSpec,
    candidates: &[u32],
    waiting: &[u32],
    kv_util: &[f32],
    age: SimDuration,
    down: impl Fn(u32) -> bool,
) -> bool {
    let by_sat = cfg.saturation_above.is_some_and(|th| {
        pool_saturation(&cfg.detector, candidates, waiting, kv_util, age, down) >= th
    });
    let by_queue = cfg.queue_above.is_some_and(|th| {
        !candidates.is_empty()
            && candidates.iter().map(|&r| f64::from(waiting[r as usize])).sum::<f64>()
                / candidates.len() as f64
                >= th
    });
    by_sat || by_queue
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::gateway::{ConcurrencySpec, QueueSpec};

    #[test]
    fn concurrency_tokens_then_queue_then_429() {
        let cfg = AdmissionConfig {
            concurrency: Some(ConcurrencySpec { max_concurrent_requests: 2, tokens_per_s: 0.0 }),
            queue: Some(QueueSpec {
                size: 1,
                timeout: SimDuration::from_secs(60),
                by_priority: true,
            }),
            ..AdmissionConfig::default()
        };
        let mut a = AdmissionState::new(&cfg, 1);
        let t = SimTime::ZERO;
        assert_eq!(a.concurrency(0, t), Admission::Go { model: None });
        assert_eq!(a.concurrency(0, t), Admission::Go { model: None });
        assert_eq!(a.concurrency(0, t), Admission::Queue { model: None });
        a.queue.as_mut().expect("queue").push((9, 0), 0);
        assert_eq!(a.concurrency(0, t), Admission::Reject(429), "queue full");
        assert_eq!(
            a.concurrency(1, t),
            Admission::Queue { model: None },
            "a higher tier displaces"
        );
        // A token comes back, but a request already waits: newcomers do not overtake it.
        a.bucket.as_mut().expect("bucket").give_back(1.0, t);
        a.queue.as_mut().expect("queue").pop();
        a.queue.as_mut().expect("queue").push((8, 0), 0);
        assert_eq!(a.concurrency(0, t), Admission::Reject(429));
    }
}
