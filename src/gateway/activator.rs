//! The activator: a buffer in the request path that holds requests for a scaled pool while it
//! has no ready pod, reports them as the demand that scales the pool up from zero, and sends
//! them on when a pod becomes ready.
//!
//! This is Knative Serving's activator (it sits in the path of a revision scaled to zero,
//! buffers the requests until a pod is ready and reports them to the autoscaler as
//! concurrency, which is what lifts a revision from zero), and the KEDA HTTP add-on's
//! interceptor plays the same part in front of a ScaledObject ("holding requests in a
//! temporary request queue when there are not yet any available app Pods", up to the
//! chart's `interceptor.replicas.waitTimeout`). Without an activator a Kubernetes Service
//! with no ready endpoints refuses the request at once (routelab: `rejected`, no candidate).
//!
//! Rules as simulated:
//! - A request for one of the pool's models that finds no replica (no candidate, or none the
//!   gateway considers healthy) is held, not refused. It stays held until a replica of the
//!   pool becomes ready (it is then routed as if it had just arrived at the gateway), until
//!   its client gives up (the class's `timeout`: `timed_out`), or until the hold timeout
//!   (`timeout_s`, default 300 s, Knative's revision `timeoutSeconds` default) runs out: a
//!   504 from the activator, counted `error`.
//! - Every held request counts once in [`Activator::held`]; requests leave the buffer in
//!   arrival order when it is released.
//! - Knative also proxies through the activator when the pods' spare capacity is low
//!   (target burst capacity); that is not simulated: with a ready pod, requests go straight
//!   to the replicas.
//!
//! Sources (read, not copied): knative.dev `serving/configuration/config-defaults`
//! (`revision-timeout-seconds: "300"`, the per-request timeout); kedacore/http-add-on
//! `docs/install.md` (the interceptor's request queue), kedacore/charts `http-add-on`
//! (`interceptor.replicas.waitTimeout`); routelab `policies.md` §4.3.

use crate::time::SimDuration;
use std::collections::VecDeque;

/// A held call: its slot and generation in the engine's call table.
pub type HeldRef = (u32, u32);

pub use crate::policy::autoscale::DEFAULT_HOLD_TIMEOUT;

/// The activator of one scaled pool.
#[derive(Debug, Clone)]
pub struct Activator {
    /// Model-table indexes of the models the pool serves.
    models: Vec<u16>,
    /// The longest a request is held.
    pub timeout: SimDuration,
    /// Held calls in arrival order (entries of calls that left since are skipped when read).
    queue: VecDeque<HeldRef>,
    /// Calls held now.
    held: u32,
    /// Calls ever held.
    pub total_held: u64,
}

impl Activator {
    /// An activator in front of a pool serving `models`.
    pub fn new(models: Vec<u16>, timeout: SimDuration) -> Activator {
        Activator { models, timeout, queue: VecDeque::new(), held: 0, total_held: 0 }
    }

    /// Whether requests for `model` pass through it.
    #[inline]
    pub fn serves(&self, model: u16) -> bool {
        self.models.contains(&model)
    }

    /// Holds call `c`.
    pub fn hold(&mut self, c: HeldRef) {
        self.queue.push_back(c);
        self.held += 1;
        self.total_held += 1;
    }

    /// A held call left on its own (client timeout, hold timeout, end of run).
    pub fn left(&mut self) {
        debug_assert!(self.held > 0, "a call left an empty activator");
        self.held = self.held.saturating_sub(1);
        if self.held == 0 {
            self.queue.clear();
        }
    }

    /// Every entry, oldest first, for release: the caller checks which are still held and
    /// calls [`Activator::released`] for each of them.
    pub fn drain(&mut self) -> VecDeque<HeldRef> {
        std::mem::take(&mut self.queue)
    }

    /// A held call was sent on.
    pub fn released(&mut self) {
        self.left();
    }

    /// Calls held now.
    #[inline]
    pub fn held(&self) -> u32 {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_it_holds_and_forgets_stale_entries_when_empty() {
        let mut a = Activator::new(vec![2], DEFAULT_HOLD_TIMEOUT);
        assert!(a.serves(2) && !a.serves(0));
        a.hold((1, 0));
        a.hold((2, 0));
        a.hold((3, 0));
        assert_eq!(a.held(), 3);
        // (2, 0) times out: counted out at once, its entry stays until read.
        a.left();
        assert_eq!(a.held(), 2);
        let q = a.drain();
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), vec![(1, 0), (2, 0), (3, 0)]);
        a.released();
        a.released();
        assert_eq!((a.held(), a.total_held), (0, 3));
        // Emptied by departures alone, the stale entries go too.
        a.hold((4, 0));
        a.left();
        assert!(a.drain().is_empty());
    }
}
