//! Per-group recorders: the same metrics as the whole run, per class, tenant, tier and pool.
//!
//! A dimension gets groups only when it has at least two values in the scenario (with one
//! class, the class group would repeat the overall row). Group labels are `class:<name>`,
//! `tenant:<name>`, `tier:<name>` and `pool:<name>`, in that order, each dimension in the
//! order of first appearance. A request belongs to its class, tenant and tier groups from its
//! arrival, and to the pool of the replica its last attempt went to when it ends (a request
//! refused before any attempt belongs to no pool). Replica-level figures (KV use, prefix
//! hits, GPU-hours, preemptions) are kept for pool groups only.

use super::{LlmStats, Recorder, RequestEnd};
use crate::cluster::Cluster;
use crate::spec::PoolSpec;
use crate::workload::ClassSpec;

/// Every group's recorder of one run.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    labels: Vec<String>,
    recs: Vec<Recorder>,
    /// Per class: its class, tenant and tier groups.
    by_class: Vec<Vec<u16>>,
    /// Per pool: its group (`None` without a pool dimension).
    by_pool: Vec<Option<u16>>,
}

impl Groups {
    /// The groups of a scenario with these classes and pools.
    pub fn new(classes: &[ClassSpec], pools: &[PoolSpec]) -> Groups {
        let mut g = Groups { by_class: vec![Vec::new(); classes.len()], ..Groups::default() };
        let dims: [(&str, Vec<&str>); 3] = [
            ("class", classes.iter().map(|c| c.name.as_str()).collect()),
            ("tenant", classes.iter().map(|c| c.tenant.as_str()).collect()),
            ("tier", classes.iter().map(|c| c.tier.name.as_str()).collect()),
        ];
        for (dim, values) in dims {
            let mut distinct: Vec<&str> = Vec::new();
            for v in &values {
                if !distinct.contains(v) {
                    distinct.push(v);
                }
            }
            if distinct.len() < 2 {
                continue;
            }
            let base = g.labels.len();
            for v in &distinct {
                g.labels.push(format!("{dim}:{v}"));
            }
            for (c, v) in values.iter().enumerate() {
                let i = distinct.iter().position(|x| x == v).unwrap_or(0);
                g.by_class[c].push((base + i) as u16);
            }
        }
        g.by_pool = vec![None; pools.len()];
        if pools.len() >= 2 {
            for (p, pool) in pools.iter().enumerate() {
                g.by_pool[p] = Some(g.labels.len() as u16);
                g.labels.push(format!("pool:{}", pool.name));
            }
        }
        g.recs = vec![Recorder::default(); g.labels.len()];
        g
    }

    /// The group labels, in group order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// A measured request of `class` arrived.
    #[inline]
    pub fn arrival(&mut self, class: u16) {
        for &i in &self.by_class[class as usize] {
            self.recs[i as usize].measured.arrivals += 1;
        }
    }

    /// A request of `class` whose last attempt went to `replica` (`u32::MAX`: none) ended.
    #[inline]
    pub fn record(&mut self, class: u16, replica: u32, cluster: &Cluster, end: &RequestEnd) {
        for &i in &self.by_class[class as usize] {
            end.apply(&mut self.recs[i as usize]);
        }
        if replica == u32::MAX {
            return;
        }
        if let Some(i) = self.by_pool[cluster.pool_of[replica as usize] as usize] {
            let rec = &mut self.recs[i as usize];
            if end.measured {
                rec.measured.arrivals += 1;
            }
            end.apply(rec);
        }
    }

    /// The replica-level counters of pool `pool`'s group, if it has one.
    pub fn pool_llm(&mut self, pool: u16) -> Option<&mut LlmStats> {
        let i = self.by_pool.get(pool as usize).copied().flatten()?;
        Some(&mut self.recs[i as usize].llm)
    }

    /// The finished recorders with their labels, in group order.
    pub fn finish(self, llm: bool) -> Vec<(String, Recorder)> {
        self.labels
            .into_iter()
            .zip(self.recs)
            .map(|(l, mut r)| {
                r.llm.enabled = llm;
                r.finalize_run(llm);
                (l, r)
            })
            .collect()
    }
}
