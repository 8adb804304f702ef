//! The gateway layer: where requests enter, are routed, and are accounted per gateway.
//!
//! A gateway owns its router instance and its own view of the cluster: in-flight counters of
//! the requests *it* dispatched (exact, local). Replica-side signals (queue and service counts)
//! are read live for now; scraped, stale views, several gateway replicas, admission control,
//! retries and health checking are layers that will sit here.

use crate::cluster::Cluster;
use crate::policy::routing::{Completion, RequestView, RouteView, Router};
use crate::time::SimTime;

/// One gateway instance.
pub struct Gateway {
    router: Box<dyn Router>,
    /// Requests this gateway sent to each replica that have not ended.
    pub in_flight: Vec<u32>,
}

impl Gateway {
    /// A gateway routing with `router` over `replicas` replicas.
    pub fn new(router: Box<dyn Router>, replicas: usize) -> Gateway {
        Gateway { router, in_flight: vec![0; replicas] }
    }

    /// Picks a replica for `req`, or `None` when no replica is a candidate.
    #[inline]
    pub fn route(&mut self, req: &RequestView, cluster: &Cluster, now: SimTime) -> Option<u32> {
        let (candidates, candidates_epoch) = cluster.candidates_for(req.class);
        if candidates.is_empty() {
            return None;
        }
        let view = RouteView {
            candidates,
            candidates_epoch,
            in_flight: &self.in_flight,
            queued: &cluster.queued,
            in_service: &cluster.in_service,
            weights: &cluster.weights,
            now,
        };
        let r = self.router.route(req, &view);
        self.in_flight[r as usize] += 1;
        Some(r)
    }

    /// A request this gateway dispatched has ended; the router hears how.
    #[inline]
    pub fn release(&mut self, done: &Completion) {
        self.in_flight[done.replica as usize] -= 1;
        self.router.on_complete(done);
    }
}
