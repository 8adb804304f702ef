//! `gpu_aware`: keep requests away from replicas close to running out of KV memory or batch
//! slots, then balance by this gateway's in-flight counts.
//!
//! Rule (the issue's own definition; no upstream router is called "GPU-aware" — reference §2.6
//! notes that GPU awareness in the gateways means KV-cache and queue metrics):
//!
//! 1. Filter: keep candidate `r` if `kv_util[r] < kv_util_threshold` **and**
//!    `in_service[r] / slots[r] < busy_threshold` (running requests over the replica's
//!    `max_num_seqs`; a replica reporting 0 slots counts as not busy).
//! 2. Among survivors: the fewest requests in flight from this gateway per unit weight
//!    (`in_flight_i · w_best < in_flight_best · w_i` in integers, as `least_requests`); ties go
//!    to the lowest replica index.
//! 3. If nothing survives: the candidate with the lowest `kv_util` (ties: lowest index) — the
//!    request is never refused, it goes where an OOM-driven preemption is least likely.
//!
//! Related upstream filter: the legacy GIE scheduler's has-capacity filter for sheddable
//! requests (§2.3; also Higress `endpoint_metrics`, §2.6) keeps pods with waiting ≤ 5 and KV use
//! ≤ 0.8 and *rejects* the request when none remain; here the thresholds are on KV use and the
//! running fraction, the comparisons are strict, and an empty set falls back instead of
//! rejecting.
//!
//! Signals: `kv_util`, `in_service` (scraped: as old as `metrics_refresh_ms`, live when it is
//! 0), static `slots`, this gateway's in-flight counters (exact, local). Stream: none.

use super::{parse_params, BuildCtx, ParamDoc, RequestView, RouteView, Router, RouterEntry};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_kv_util_threshold")]
    kv_util_threshold: f64,
    #[serde(default = "default_busy_threshold")]
    busy_threshold: f64,
}

fn default_kv_util_threshold() -> f64 {
    0.9
}

fn default_busy_threshold() -> f64 {
    0.95
}

impl Default for Params {
    fn default() -> Params {
        Params {
            kv_util_threshold: default_kv_util_threshold(),
            busy_threshold: default_busy_threshold(),
        }
    }
}

struct GpuAware {
    /// Compared in `f32`, the type of the signal, so a threshold of 0.9 excludes a replica at
    /// exactly 0.9.
    kv_util_threshold: f32,
    busy_threshold: f64,
}

impl GpuAware {
    fn has_headroom(&self, view: &RouteView<'_>, r: u32) -> bool {
        let i = r as usize;
        let slots = view.replicas[i].slots;
        let busy = if slots == 0 { 0.0 } else { f64::from(view.in_service[i]) / f64::from(slots) };
        view.kv_util[i] < self.kv_util_threshold && busy < self.busy_threshold
    }
}

impl Router for GpuAware {
    fn route(&mut self, _req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        let load = |r: u32| u64::from(view.in_flight[r as usize]);
        let weight = |r: u32| u64::from(view.weights[r as usize]);
        let mut best: Option<u32> = None;
        let mut coolest = view.candidates[0];
        for &r in view.candidates {
            if view.kv_util[r as usize].total_cmp(&view.kv_util[coolest as usize]).is_lt() {
                coolest = r;
            }
            if !self.has_headroom(view, r) {
                continue;
            }
            match best {
                Some(b) if load(r) * weight(b) >= load(b) * weight(r) => {}
                _ => best = Some(r),
            }
        }
        best.unwrap_or(coolest)
    }
}

fn check_fraction(name: &str, x: f64) -> Result<f64, String> {
    if x > 0.0 && x <= 1.0 {
        Ok(x)
    } else {
        Err(format!("{name} = {x}: must be a fraction in (0, 1]"))
    }
}

fn build(v: &serde_yaml_ng::Value, _ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    Ok(Box::new(GpuAware {
        kv_util_threshold: check_fraction("kv_util_threshold", p.kv_util_threshold)? as f32,
        busy_threshold: check_fraction("busy_threshold", p.busy_threshold)?,
    }))
}

/// Registry entry.
pub static ENTRY: RouterEntry = RouterEntry {
    name: "gpu_aware",
    summary: "skip replicas near KV/slot exhaustion (scraped), then least in flight per weight",
    params: &[
        ParamDoc {
            name: "kv_util_threshold",
            default: "0.9",
            doc: "keep replicas with KV use < this (scraped), in (0, 1]",
        },
        ParamDoc {
            name: "busy_threshold",
            default: "0.95",
            doc: "keep replicas with running / slots < this (scraped), in (0, 1]",
        },
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;

    fn route(r: &mut dyn super::Router, f: &Fixture) -> u32 {
        r.route(&Default::default(), &f.view())
    }

    #[test]
    fn skips_replicas_near_kv_exhaustion() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.kv_util = vec![0.9, 0.5, 0.2];
        f.in_flight = vec![0, 1, 3];
        let mut r = f.build("gpu_aware", "");
        // 0 is at the threshold (strict <): out. Least in flight of 1 and 2 -> 1.
        assert_eq!(route(r.as_mut(), &f), 1);
        let mut r = f.build("gpu_aware", "kv_util_threshold: 0.4");
        assert_eq!(route(r.as_mut(), &f), 2);
    }

    #[test]
    fn skips_replicas_with_few_free_slots() {
        let mut f = Fixture::new(&[1, 1, 1]);
        for info in &mut f.replicas {
            info.slots = 20;
        }
        f.in_service = vec![19, 18, 10]; // 0.95, 0.90, 0.50 of the slots
        f.in_flight = vec![0, 1, 2];
        let mut r = f.build("gpu_aware", "");
        assert_eq!(route(r.as_mut(), &f), 1);
        let mut r = f.build("gpu_aware", "busy_threshold: 0.9");
        assert_eq!(route(r.as_mut(), &f), 2);
    }

    #[test]
    fn survivors_balance_per_weight_ties_lowest_index() {
        let mut f = Fixture::new(&[1, 2, 2]);
        f.in_flight = vec![1, 1, 1];
        let mut r = f.build("gpu_aware", "");
        // Loads per weight 1, 0.5, 0.5: tie between 1 and 2 -> 1, every time.
        for _ in 0..5 {
            assert_eq!(route(r.as_mut(), &f), 1);
        }
    }

    #[test]
    fn falls_back_to_lowest_kv_when_none_survive() {
        let mut f = Fixture::new(&[1, 1, 1, 1]);
        f.kv_util = vec![0.97, 0.93, 0.95, 0.93];
        f.in_flight = vec![0, 5, 0, 0];
        let mut r = f.build("gpu_aware", "");
        // Everyone is over 0.9: lowest KV use, tie 1/3 -> lowest index, in-flight ignored.
        assert_eq!(route(r.as_mut(), &f), 1);
        // One survivor (busy fraction is fine everywhere): it wins despite its KV use.
        f.kv_util[2] = 0.89;
        assert_eq!(route(r.as_mut(), &f), 2);
    }

    #[test]
    fn rejects_thresholds_out_of_range() {
        let f = Fixture::new(&[1, 1]);
        let ctx =
            super::BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
        for bad in [
            "kv_util_threshold: 0",
            "kv_util_threshold: 1.2",
            "busy_threshold: -0.1",
            "busy_threshold: .nan",
            "queue_threshold: 5",
        ] {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(bad).expect("yaml");
            assert!((super::ENTRY.build)(&v, &ctx).is_err(), "{bad}");
        }
    }
}
