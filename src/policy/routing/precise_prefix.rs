//! `precise_prefix`: the llm-d "precise prefix-cache aware" well-lit path — the EPP scoring
//! pipeline of `weighted_scorers` with the approximate prefix scorer replaced by llm-d's
//! `precise-prefix-cache-scorer`, which reads exact block residency from the engines' KV
//! events (reference §2.3).
//!
//! Rule: `S(e) = Σ_k weight_k · clamp(score_k(e), 0, 1)`, then a picker. The precise scorer is
//! `matched_e / total_blocks` where `matched_e` is the number of *leading* blocks of the
//! request (truncated to `max_prefix_blocks_to_match`) that the KV-event index says replica
//! `e` holds (the llm-d KV-cache indexer's longest-consecutive-prefix scorer, normalised by
//! the request's hashed block count as the scorer's absolute normaliser does — the shared
//! blocks only: the simulator does not hash a prompt's unique tail); 0 without hashes. The
//! load scorers (`queue`, `kv_cache_utilization`, `load_aware`, `active_request`,
//! `running_requests`) and the pickers (`max_score`, `weighted_random`) are exactly those of
//! `weighted_scorers` (shared code there).
//!
//! Default weights: precise prefix 2, KV utilisation 1, queue 1, the others 0 — the
//! scheduler values of the llm-d guide `guides/precise-prefix-cache-aware` (scheduler image
//! v0.8.0-rc.1, whose README states "the precise scorer's default weight is 2.0, paired 1:1
//! with kv-cache-utilization and queue scorers"). Earlier versions of that guide
//! (`gaie-kv-events/values.yaml`, scheduler v0.5.0) used 3 : 2 : 2, the same as the EPP's
//! built-in default; set `prefix_cache_weight: 3, kv_cache_utilization_weight: 2,
//! queue_weight: 2` to reproduce it. A weight left out keeps its default.
//!
//! Signals and staleness: residency is as fresh as the KV-event delay
//! (`gateway.kv_event_delay_ms`) and, unlike the approximate index, sees engine evictions but
//! not the requests routed since the last event (llm-d's optional speculative entries, which
//! would cover that gap for 2 s, are not modelled). Load signals as in `weighted_scorers`.
//! Ties: `max_score` is uniform among exact ties (shuffle, then first maximum). Stream:
//! `router:precise_prefix`. Simplifications: the guide's `decode-filter` (P/D roles) has no
//! counterpart; the 256-block cap is carried over from the approximate scorer. Cost of a
//! route: O(candidates + matched blocks) plus the index lookup; no steady-state allocation.

use super::weighted_scorers::{
    validate_common, Picker, Scoring, Weights, COMMON_DOCS, LOAD_AWARE_THRESHOLD, MAX_PREFIX_BLOCKS,
};
use super::RouterEntry;
use super::{parse_params, BuildCtx, ParamDoc, RequestView, RouteView, Router};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "w_one")]
    queue_weight: f64,
    #[serde(default = "w_one")]
    kv_cache_utilization_weight: f64,
    #[serde(default = "w_two")]
    prefix_cache_weight: f64,
    #[serde(default)]
    load_aware_weight: f64,
    #[serde(default)]
    active_request_weight: f64,
    #[serde(default)]
    running_requests_weight: f64,
    #[serde(default)]
    picker: Picker,
    #[serde(default = "default_max_blocks")]
    max_prefix_blocks_to_match: u32,
    #[serde(default = "default_threshold")]
    load_aware_threshold: u32,
}

fn w_one() -> f64 {
    1.0
}

fn w_two() -> f64 {
    2.0
}

fn default_max_blocks() -> u32 {
    MAX_PREFIX_BLOCKS
}

fn default_threshold() -> u32 {
    LOAD_AWARE_THRESHOLD
}

impl Default for Params {
    fn default() -> Params {
        Params {
            queue_weight: 1.0,
            kv_cache_utilization_weight: 1.0,
            prefix_cache_weight: 2.0,
            load_aware_weight: 0.0,
            active_request_weight: 0.0,
            running_requests_weight: 0.0,
            picker: Picker::MaxScore,
            max_prefix_blocks_to_match: MAX_PREFIX_BLOCKS,
            load_aware_threshold: LOAD_AWARE_THRESHOLD,
        }
    }
}

impl Params {
    fn weights(&self) -> Weights {
        Weights {
            queue: self.queue_weight,
            kv_cache_utilization: self.kv_cache_utilization_weight,
            prefix_cache: self.prefix_cache_weight,
            load_aware: self.load_aware_weight,
            active_request: self.active_request_weight,
            running_requests: self.running_requests_weight,
        }
    }
}

struct PrecisePrefix {
    scoring: Scoring,
    max_blocks: usize,
    /// Leading matched blocks by candidate position.
    matched: Vec<u32>,
}

impl Router for PrecisePrefix {
    fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        self.scoring.score_load(view);
        let w = self.scoring.weights.prefix_cache;
        let total = req.hashes.len().min(self.max_blocks);
        if w > 0.0 && total > 0 {
            view.kv_index.leading_matches(&req.hashes[..total], view.candidates, &mut self.matched);
            for pos in 0..view.candidates.len() {
                let m = self.matched.get(pos).copied().unwrap_or(0);
                self.scoring.add(pos, w, f64::from(m) / total as f64);
            }
        }
        self.scoring.pick(view)
    }

    fn uses_prefix_hashes(&self) -> bool {
        self.scoring.weights.prefix_cache > 0.0
    }

    fn uses_kv_index(&self) -> bool {
        self.scoring.weights.prefix_cache > 0.0
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    let weights = p.weights();
    weights.validate()?;
    validate_common(p.max_prefix_blocks_to_match, p.load_aware_threshold)?;
    Ok(Box::new(PrecisePrefix {
        scoring: Scoring::new(
            weights,
            p.picker,
            p.load_aware_threshold,
            ctx.stream("precise_prefix"),
        ),
        max_blocks: p.max_prefix_blocks_to_match as usize,
        matched: Vec::with_capacity(ctx.replicas.len()),
    }))
}

/// Registry entry.
pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "precise_prefix",
    summary: "llm-d precise prefix-cache routing: KV-event residency + queue/KV scorers",
    params: &[
        ParamDoc {
            name: "queue_weight",
            default: "1",
            doc: "queue-scorer: (max_q - q)/(max_q - min_q) on scraped waiting; all equal -> 1",
        },
        ParamDoc {
            name: "kv_cache_utilization_weight",
            default: "1",
            doc: "kv-cache-utilization-scorer: 1 - scraped KV use",
        },
        ParamDoc {
            name: "prefix_cache_weight",
            default: "2",
            doc: "precise-prefix-cache-scorer: leading blocks resident per KV events / blocks",
        },
        COMMON_DOCS[0],
        COMMON_DOCS[1],
        COMMON_DOCS[2],
        COMMON_DOCS[3],
        COMMON_DOCS[4],
        COMMON_DOCS[5],
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::*;

    fn route(r: &mut dyn Router, f: &Fixture, hashes: &[u64]) -> u32 {
        let req = RequestView { hashes, ..Default::default() };
        r.route(&req, &f.view())
    }

    #[test]
    fn follows_kv_event_residency() {
        let mut f = Fixture::new(&[1, 1, 1]);
        let h = [11, 12, 13, 14];
        f.kv.held[2].extend([11, 12]);
        f.kv.held[1].extend([12, 13, 14]); // not a leading match: misses block 0
        let mut r = f.build("precise_prefix", "");
        assert!(r.uses_kv_index() && r.uses_prefix_hashes());
        for _ in 0..20 {
            assert_eq!(route(r.as_mut(), &f, &h), 2);
        }
        // Residency moves (an eviction on 2, a store on 0): so does the pick.
        f.kv.held[2].clear();
        f.kv.held[0].extend(h);
        for _ in 0..20 {
            assert_eq!(route(r.as_mut(), &f, &h), 0);
        }
        // Routing itself records nothing: with no residency the choice is a uniform tie.
        f.kv.held[0].clear();
        let picks: Vec<u32> = (0..300).map(|_| route(r.as_mut(), &f, &h)).collect();
        assert!((0..3).all(|x| picks.contains(&x)));
    }

    #[test]
    fn default_weights_are_the_precise_guide_profile() {
        let p: Params = parse_params(&serde_yaml_ng::Value::Null).expect("defaults");
        assert_eq!(
            p.weights(),
            Weights {
                queue: 1.0,
                kv_cache_utilization: 1.0,
                prefix_cache: 2.0,
                load_aware: 0.0,
                active_request: 0.0,
                running_requests: 0.0,
            }
        );
        assert_eq!(p.picker, Picker::MaxScore);
        // Prefix 2 beats queue 1 + KV 1 only when the hit is more than half the prompt.
        let mut f = Fixture::new(&[1, 1]);
        f.kv.held[0].extend([1, 2, 3]);
        f.queued = vec![6, 0];
        f.kv_util = vec![0.5, 0.0];
        let mut r = f.build("precise_prefix", "");
        // Replica 0: 2·3/4 + 0 + 0.5 = 2.0; replica 1: 1 + 1 = 2.0 → a tie, both get picked.
        let picks: Vec<u32> = (0..200).map(|_| route(r.as_mut(), &f, &[1, 2, 3, 4])).collect();
        assert!(picks.contains(&0) && picks.contains(&1));
        f.kv_util = vec![0.25, 0.0];
        for _ in 0..20 {
            assert_eq!(route(r.as_mut(), &f, &[1, 2, 3, 4]), 0);
        }
    }

    #[test]
    fn truncates_to_max_prefix_blocks() {
        let mut f = Fixture::new(&[1, 1]);
        f.kv.held[0].extend([1, 2]);
        f.kv.held[1].extend([1, 2, 3, 4]);
        let p = "{queue_weight: 0, kv_cache_utilization_weight: 0, max_prefix_blocks_to_match: 2}";
        let mut r = f.build("precise_prefix", p);
        // Both hold both counted blocks: a tie.
        let picks: Vec<u32> = (0..200).map(|_| route(r.as_mut(), &f, &[1, 2, 3, 4])).collect();
        assert!(picks.contains(&0) && picks.contains(&1));
    }

    #[test]
    fn weighted_random_picks_only_positive_scores() {
        let mut f = Fixture::new(&[1, 1, 1]);
        f.kv.held[1].extend([5]);
        f.kv.held[2].extend([5, 6]);
        let p = "{queue_weight: 0, kv_cache_utilization_weight: 0, picker: weighted_random}";
        let mut r = f.build("precise_prefix", p);
        let mut seen = [0usize; 3];
        for _ in 0..3000 {
            seen[route(r.as_mut(), &f, &[5, 6]) as usize] += 1;
        }
        assert_eq!(seen[0], 0, "{seen:?}");
        // Scores 1 and 2: P(2) = 2/3; sd = 25.8; 5 sd.
        assert!((seen[2] as i64 - 2000).abs() < 130, "{seen:?}");
    }

    #[test]
    fn rejects_negative_weights_and_unknown_keys() {
        let f = Fixture::new(&[1, 1]);
        let ctx = BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
        for (params, want) in [
            ("{kv_cache_utilization_weight: -0.5}", "kv_cache_utilization_weight"),
            ("{lru_capacity_per_server: 10}", "unknown field"),
            ("{load_aware_threshold: 0}", "load_aware_threshold"),
        ] {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(params).expect("yaml");
            match (ENTRY.build)(&v, &ctx) {
                Ok(_) => panic!("{params} should be rejected"),
                Err(e) => assert!(e.contains(want), "{params}: {e}"),
            }
        }
    }
}
