//! The GIE / llm-d saturation detector (`flowcontrol/saturationdetector/utilization`): how
//! full a set of endpoints is, from the metrics a gateway instance scraped.
//!
//! Endpoint score = `max(waiting / queueDepthThreshold, kv / kvCacheUtilThreshold)` when the
//! metrics are fresh (no older than `metricsStalenessThreshold`), else 1.0 — stale or missing
//! metrics count as saturated, and so does an endpoint that is down (crashed or restarting:
//! its metrics endpoint does not answer). Pool saturation = the mean score over the candidate
//! endpoints; no candidates → 1.0. The legacy admission controller rejects sheddable requests
//! (priority < 0) with 429 when the pool saturation is at least 1.0. Defaults: 5 waiting, KV
//! 0.8, 200 ms (reference §3.7; `headroom` only widens the detector's filter, not modelled).

use crate::spec::gateway::ShedSpec;
use crate::time::SimDuration;

/// Mean saturation over `candidates` given their scraped `waiting` and `kv_util`, scraped
/// `age` ago; `down(r)`: replica `r` answers no scrape.
pub fn pool_saturation(
    spec: &ShedSpec,
    candidates: &[u32],
    waiting: &[u32],
    kv_util: &[f32],
    age: SimDuration,
    down: impl Fn(u32) -> bool,
) -> f64 {
    if candidates.is_empty() || age > spec.metrics_staleness_threshold {
        return 1.0;
    }
    let (q, kv) = (spec.queue_depth_threshold, spec.kv_cache_util_threshold);
    let sum: f64 = candidates
        .iter()
        .map(|&r| {
            if down(r) {
                return 1.0;
            }
            let w = f64::from(waiting[r as usize]) / q;
            let k = f64::from(kv_util[r as usize]) / kv;
            w.max(k)
        })
        .sum();
    sum / candidates.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_the_worse_of_queue_and_kv_and_stale_or_down_counts_as_full() {
        let s = ShedSpec::default();
        let w = [0, 5, 10, 2];
        let kv = [0.4, 0.2, 0.0, 0.96];
        let up = |_| false;
        // Endpoint scores: max(0, .5)=.5, max(1, .25)=1, max(2, 0)=2, max(.4, 1.2)=1.2.
        let got = pool_saturation(&s, &[0, 1, 2, 3], &w, &kv, SimDuration::ZERO, up);
        assert!((got - (0.5 + 1.0 + 2.0 + 1.2) / 4.0).abs() < 1e-6, "{got}");
        assert_eq!(pool_saturation(&s, &[0], &w, &kv, SimDuration::from_millis(201), up), 1.0);
        assert_eq!(pool_saturation(&s, &[], &w, &kv, SimDuration::ZERO, up), 1.0);
        // A crashed replica's cleared queue does not make it look idle: it scores 1.
        let got =
            pool_saturation(&s, &[0, 2], &[0, 0, 0], &[0.0; 3], SimDuration::ZERO, |r| r == 2);
        assert!((got - 0.5).abs() < 1e-9, "{got}");
    }
}
