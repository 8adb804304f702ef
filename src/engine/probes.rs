//! Health timers: what a probe finds, handed to the gateway layer that owns the mechanisms.
//!
//! A gateway instance's active probe is answered only by a live replica it can reach: a
//! partition or a hang leaves it unanswered until the probe timeout, a crashed or recovering
//! replica refuses it at once. The kubelet's readiness probe runs on the replica's node, so
//! partitions between gateways and replicas do not affect it; a readiness change reaches the
//! gateways after the endpoint propagation delay.

use super::{Event, Sim};
use crate::gateway::ProbeAnswer;

impl Sim<'_> {
    /// What a probe from gateway `g` to replica `r` gets right now.
    fn probe_answer(&self, g: u16, r: u32) -> ProbeAnswer {
        if self.fault_state.partitioned(g, r) || self.fault_state.hung(r) {
            ProbeAnswer::NoAnswer
        } else if self.cluster.is_down(r) {
            ProbeAnswer::Refused
        } else {
            ProbeAnswer::Ok
        }
    }

    /// Gateway `g`'s timer `kind` (for replica `r`) is due.
    pub(super) fn on_gateway_timer(&mut self, g: u16, r: u32, kind: u8) {
        let answer = self.probe_answer(g, r);
        self.gateway.on_timer(g, r, kind, answer, &self.cluster, self.now);
        self.pump_gateway(g);
    }

    /// The kubelet probes replica `r`.
    pub(super) fn on_readiness_probe(&mut self, r: u32) {
        let ok = !self.cluster.is_down(r) && !self.fault_state.hung(r);
        let Some((flip, next)) = self.gateway.readiness_probe(r, ok, self.now) else {
            self.stale_events += 1;
            return;
        };
        if let Some(t) = next {
            self.queue.push(t, Event::Readiness { replica: r });
        }
        if let Some(ready) = flip {
            let at = self.now + self.gateway.endpoint_delay();
            self.queue.push(at, Event::Endpoint { replica: r, ready });
        }
    }

    /// A readiness change of replica `r` reaches the gateways.
    pub(super) fn on_endpoint(&mut self, r: u32, ready: bool) {
        self.gateway.set_endpoint(r, ready, &self.cluster, self.now);
        if ready {
            self.release_held();
        }
        for g in 0..self.gateway.len() as u16 {
            self.pump_gateway(g);
        }
    }
}
