//! Engine tests of `llm` replicas built programmatically (independent of the YAML schema).

use super::*;
use crate::cluster::catalog::{kv_capacity_blocks, Catalog, Dtype, KvCacheConfig};
use crate::cluster::latency::{LatencyModel, Roofline, RooflineParams};
use crate::scenario::LoadOptions;
use crate::spec::llm::{EngineConfig, LlmPool, ServedModel};
use crate::spec::PoolKind;
use crate::workload::PrefixSpec;

/// A scenario of `replicas` Llama-3-8B / H100 replicas, one class with the given rate and
/// lengths; `blocks` pins the KV capacity.
pub(crate) fn llm_scenario(
    replicas: u32,
    rate: f64,
    prompt: &str,
    output: &str,
    requests: u64,
    blocks: Option<u32>,
    engine: EngineConfig,
) -> Scenario {
    let yaml = format!(
        "name: t\nseed: 7\nhorizon: {{ max_requests: {requests} }}\nworkload:\n  - class: c\n    arrival: {{ process: poisson, rate_per_s: {rate} }}\n    service_s: {{ dist: constant, value: 1 }}\n    prompt_tokens: {prompt}\n    output_tokens: {output}\ncluster: {{ pools: [ {{ name: p, kind: queue, replicas: {replicas} }} ] }}\npolicies: [least_requests]\n"
    );
    let mut sc =
        crate::scenario::load_str(&yaml, "t.yaml", &LoadOptions::default()).expect("valid");
    let cat = Catalog::builtin();
    let gpu = cat.gpu("h100-sxm").expect("gpu");
    let model = cat.model("llama-3-8b").expect("model");
    let lat = Roofline::new(gpu, model, 1, Dtype::Bf16, Dtype::Bf16, &RooflineParams::default())
        .expect("roofline");
    let cap = kv_capacity_blocks(gpu, model, &KvCacheConfig::new(1)).expect("fits") as u32;
    sc.pools[0].kind = PoolKind::Llm(Box::new(LlmPool {
        gpu: gpu.name.clone(),
        tp: 1,
        peak_flops_per_s: 989e12,
        models: vec![ServedModel {
            name: model.name.clone(),
            latency: LatencyModel::Roofline(lat),
            kv_capacity_blocks: blocks.unwrap_or(cap),
            max_model_len: model.max_context,
            weight_bytes: model.weight_bytes(Dtype::Bf16),
        }],
        engine,
        load_bytes_per_s: 2e9,
        load_init: SimDuration::from_secs_f64(20.0),
        queue_capacity: None,
    }));
    sc.classes[0].service_s = None;
    sc.classes[0].model = Some(model.name.clone());
    sc
}

fn run_llm(sc: &Scenario) -> RunOutput {
    run(sc, &sc.policies[0], 0).expect("run keeps every invariant")
}

#[test]
fn light_load_request_sees_prefill_then_decodes() {
    // One request at a time: TTFT = one prefill iteration, TPOT = one decode iteration.
    let sc = llm_scenario(
        1,
        0.01,
        "{ dist: constant, value: 1000 }",
        "{ dist: constant, value: 101 }",
        20,
        None,
        EngineConfig::default(),
    );
    let out = run_llm(&sc);
    let rec = &out.recorder;
    assert_eq!(rec.measured.completed, 20);
    let PoolKind::Llm(p) = &sc.pools[0].kind else { unreachable!() };
    let lat = &p.models[0].latency;
    let prefill = lat.iteration_s(&IterationShape::prefill_chunk(1000, 0));
    let ttft_ms = rec.ttft.mean_ms().expect("ttft");
    assert!((ttft_ms - prefill * 1e3).abs() < 1e-3, "ttft {ttft_ms} vs prefill {prefill}");
    // Decode k (k = 1..100) reads 1000 + k - 1 tokens of context.
    let mean_decode: f64 =
        (1..=100).map(|k| lat.iteration_s(&IterationShape::decode(1, 1000 + k - 1))).sum::<f64>()
            / 100.0;
    let tpot_ms = rec.tpot.mean_ms().expect("tpot");
    assert!((tpot_ms - mean_decode * 1e3).abs() < 1e-3, "tpot {tpot_ms} vs {mean_decode}");
    assert_eq!(rec.llm.preemptions, 0);
    assert!(rec.llm.kv_util_mean().expect("window") > 0.0);
}

use crate::cluster::latency::IterationShape;

#[test]
fn tight_kv_preempts_and_still_conserves_everything() {
    let sc = llm_scenario(
        2,
        40.0,
        "{ dist: lognormal, mean: 600, cv: 1.0, max: 3000 }",
        "{ dist: lognormal, mean: 300, cv: 1.5, max: 2000 }",
        3000,
        Some(400),
        EngineConfig { max_num_seqs: 64, max_num_batched_tokens: 2048, ..EngineConfig::default() },
    );
    let out = run_llm(&sc);
    let rec = &out.recorder;
    assert!(rec.llm.preemptions > 0, "400 blocks must force preemptions");
    assert_eq!(rec.all.arrivals, rec.all.ended());
    assert!(rec.measured.completed > 0);
}

#[test]
fn shared_prefixes_hit_the_cache() {
    let mut sc = llm_scenario(
        1,
        5.0,
        "{ dist: constant, value: 1200 }",
        "{ dist: constant, value: 20 }",
        500,
        None,
        EngineConfig::default(),
    );
    sc.classes[0].prefix = Some(PrefixSpec { groups: 4, group_tokens: 1024, zipf_s: 1.0 });
    let out = run_llm(&sc);
    let hit = out.recorder.llm.prefix_hit_rate().expect("prompts");
    // 1024 of 1200 tokens are one of 4 shared prefixes: after 4 misses almost all hit.
    assert!(hit > 0.8 && hit < 1024.0 / 1200.0 + 1e-9, "hit rate {hit}");
}

/// Capacity of one replica with constant prompt `p` and output `o` tokens and a full batch of
/// `s` sequences: in steady state `s/o` of the batch are in their prefill iteration and the
/// rest decode, so the iteration shape — and time `t` — is fixed and capacity is `s/(o·t)`.
///
/// With random output lengths (mean `o`, second moment `o2`) a slot-iteration's context is
/// `p + o2 / (2o)` on average (length-biased sampling).
fn predicted_capacity_per_s(lat: &LatencyModel, s: u64, p: u64, o: u64, o2: u64) -> f64 {
    // Requests finish (and are replaced) independently, so the prefills in one iteration are
    // close to Poisson with mean s/o; the iteration time is averaged over that count.
    let mean = s as f64 / o as f64;
    let ctx = p + o2 / (2 * o);
    let (mut t, mut w, mut pk) = (0.0, 0.0, (-mean).exp());
    for n in 0..=(s.min(60)) {
        let shape = IterationShape {
            prefill_tokens: n * p,
            prefill_seqs: n,
            prefill_attention_pairs: n * p * (p + 1) / 2,
            prefill_cached_tokens: 0,
            decode_tokens: s - n,
            decode_context_tokens: (s - n) * ctx,
        };
        t += pk * lat.iteration_s(&shape);
        w += pk;
        pk *= mean / (n + 1) as f64;
    }
    mean / (t / w)
}

#[test]
fn throughput_saturates_at_the_capacity_the_latency_model_predicts() {
    let engine = EngineConfig { enable_prefix_caching: false, ..EngineConfig::default() };
    // Output lengths 32, 96, 160, 224 equally likely: mean 128, second moment 21504. Random
    // lengths keep admissions spread out (constant lengths form cohorts that enter and leave
    // together, which the steady-state formula does not describe).
    let output = "{ dist: empirical, values: [32, 96, 160, 224] }";
    let probe = llm_scenario(1, 1.0, "{ dist: constant, value: 512 }", output, 10, None, engine);
    let PoolKind::Llm(p) = &probe.pools[0].kind else { unreachable!() };
    let cap = predicted_capacity_per_s(&p.models[0].latency, 256, 512, 128, 21504);
    let mut results = Vec::new();
    for load in [0.5, 0.9, 1.3] {
        let mut sc = llm_scenario(
            1,
            load * cap,
            "{ dist: constant, value: 512 }",
            output,
            30_000,
            None,
            engine,
        );
        sc.warmup.requests = 3_000;
        let out = run_llm(&sc);
        let thr = out.recorder.window_completions as f64 / out.window.as_secs_f64();
        let ttft_p95 = out.recorder.ttft.quantile_ms(0.95).expect("ttft");
        results.push((load, thr, ttft_p95));
    }
    let (_, thr_low, ttft_low) = results[0];
    let (_, thr_mid, _) = results[1];
    let (_, thr_over, ttft_over) = results[2];
    // Below capacity the replica keeps up with the offered load.
    assert!((thr_low / (0.5 * cap) - 1.0).abs() < 0.03, "{results:?} cap {cap}");
    assert!((thr_mid / (0.9 * cap) - 1.0).abs() < 0.03, "{results:?} cap {cap}");
    // Overloaded, it serves at the predicted capacity, not at the offered rate.
    assert!((thr_over / cap - 1.0).abs() < 0.05, "{results:?} cap {cap}");
    // TTFT explodes past capacity (queue grows without bound).
    assert!(ttft_over > 50.0 * ttft_low, "{results:?}");
}

#[test]
fn sessions_reuse_their_own_history_and_every_turn_ends_once() {
    use crate::workload::dist::{Dist, Law};
    use crate::workload::SessionSpec;
    let mut sc = llm_scenario(
        2,
        2.0,
        "{ dist: constant, value: 300 }",
        "{ dist: constant, value: 100 }",
        2_000,
        None,
        EngineConfig::default(),
    );
    sc.classes[0].session = Some(SessionSpec {
        turns: Dist::new(Law::Constant(4.0), None, None),
        think_time_s: Dist::new(Law::Constant(1.0), None, None),
        max_context_tokens: 100_000,
        history: true,
    });
    let out = run_llm(&sc);
    let rec = &out.recorder;
    assert_eq!(rec.all.arrivals, 2_000);
    assert_eq!(rec.all.arrivals, rec.all.ended());
    // Turn k's prompt is 400(k-1) + 300 tokens, of which the previous turn's prompt blocks
    // (about 400(k-2) + 300 tokens) can hit when the session stays on one replica: the
    // least-requests router spreads turns, so only part of the history hits.
    let hit = rec.llm.prefix_hit_rate().expect("prompts");
    assert!(hit > 0.05 && hit < 0.6, "hit rate {hit}");
}

#[test]
fn multi_model_replica_swaps_with_a_cold_start() {
    let mut sc = llm_scenario(
        1,
        0.5,
        "{ dist: constant, value: 200 }",
        "{ dist: constant, value: 20 }",
        200,
        None,
        EngineConfig::default(),
    );
    // Two classes, one per model; the single replica can hold one model at a time.
    let mut second = sc.classes[0].clone();
    second.name = "b".into();
    let cat = Catalog::builtin();
    let gpu = cat.gpu("h100-sxm").expect("gpu");
    let small = cat.model("llama-3.2-1b").expect("model");
    let lat = Roofline::new(gpu, small, 1, Dtype::Bf16, Dtype::Bf16, &RooflineParams::default())
        .expect("roofline");
    second.model = Some(small.name.clone());
    sc.classes.push(second);
    let PoolKind::Llm(pool) = &mut sc.pools[0].kind else { unreachable!() };
    pool.models.push(ServedModel {
        name: small.name.clone(),
        latency: LatencyModel::Roofline(lat),
        kv_capacity_blocks: 10_000,
        max_model_len: small.max_context,
        weight_bytes: small.weight_bytes(Dtype::Bf16),
    });
    let cold_start_s = pool.cold_start(1).as_secs_f64();
    assert!(cold_start_s > 20.0);
    let out = run_llm(&sc);
    let rec = &out.recorder;
    assert_eq!(rec.all.arrivals, rec.all.ended());
    assert_eq!(rec.all.completed, 200);
    assert!(rec.llm.cold_starts >= 2, "both models are needed again and again");
    // Requests that wait for a load see TTFT of at least the cold start.
    let p99 = rec.ttft.quantile_ms(0.99).expect("ttft");
    assert!(p99 >= cold_start_s * 1e3 * 0.5, "p99 {p99} ms vs cold start {cold_start_s} s");
}

mod kv_index_oracle {
    use super::*;
    use crate::policy::routing::{
        BuildCtx, KvIndex, ParamDoc, RequestView, RouteView, Router, RouterEntry,
    };
    use crate::scenario::PolicySpec;

    /// Round robin that asks for the KV index and checks, at every decision, that the index
    /// answers consistently for the request's own hashes.
    struct IndexedRr(u32);

    impl Router for IndexedRr {
        fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
            let mut out = Vec::new();
            view.kv_index.leading_matches(req.hashes, view.candidates, &mut out);
            assert!(out.iter().all(|&m| m as usize <= req.hashes.len()));
            self.0 = self.0.wrapping_add(1);
            view.candidates[self.0 as usize % view.candidates.len()]
        }
        fn uses_kv_index(&self) -> bool {
            true
        }
    }

    fn build(_: &serde_yaml_ng::Value, _: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
        Ok(Box::new(IndexedRr(0)))
    }

    static ENTRY: RouterEntry =
        RouterEntry { name: "indexed_rr", summary: "test", params: &[] as &[ParamDoc], build };

    #[test]
    fn undelayed_kv_events_mirror_every_replica_cache_exactly() {
        let mut sc = llm_scenario(
            3,
            40.0,
            "{ dist: uniform, low: 300, high: 1500 }",
            "{ dist: uniform, low: 1, high: 50 }",
            3000,
            Some(600),
            EngineConfig::default(),
        );
        sc.classes[0].prefix = Some(PrefixSpec { groups: 20, group_tokens: 400, zipf_s: 1.0 });
        let policy = PolicySpec {
            label: "indexed_rr".into(),
            entry: &ENTRY,
            params: serde_yaml_ng::Value::Null,
            gateway: sc.gateway.clone(),
        };
        let run_seed = rng::run_seed(sc.seed, 0);
        let mut sim = Sim::new(&sc, &policy, &sc.autoscalers[0], run_seed).expect("builds");
        sim.run().expect("runs");
        let ix = sim.gateway.kv_index().expect("index enabled");
        let mut pairs = 0u64;
        for (r, e) in sim.cluster.llm.iter().enumerate() {
            for h in e.cached_hashes() {
                pairs += 1;
                let mut out = Vec::new();
                ix.leading_matches(&[h], &[r as u32], &mut out);
                assert_eq!(out, vec![1], "replica {r} holds {h:#x} but the index says not");
            }
        }
        assert!(pairs > 100, "the workload must leave cached prefixes ({pairs})");
        assert_eq!(ix.pairs(), pairs, "the index knows residency no replica has");
        assert!(ix.applied > pairs, "evictions happened and were applied too");
    }
}

#[test]
fn nearest_rank_p95_picks_rank_ceil_095_n() {
    assert_eq!(nearest_rank_p95(&mut []), None);
    assert_eq!(nearest_rank_p95(&mut [7]), Some(7));
    // n = 20: rank ⌈19⌉ = 19; n = 21: rank ⌈19.95⌉ = 20; n = 100: rank 95 (input unsorted).
    let mut v: Vec<u64> = (1..=20).rev().collect();
    assert_eq!(nearest_rank_p95(&mut v), Some(19));
    let mut v: Vec<u64> = (1..=21).rev().collect();
    assert_eq!(nearest_rank_p95(&mut v), Some(20));
    let mut v: Vec<u64> = (1..=100).map(|i| (i * 37) % 101).collect();
    assert_eq!(nearest_rank_p95(&mut v), Some(95));
}

#[test]
fn samples_carry_offered_load_and_the_window_p95_ttft() {
    // One request at a time: every TTFT is one prefill, so each sample window that saw a
    // first token has exactly that p95, and windows without one have none.
    let mut sc = llm_scenario(
        1,
        0.01,
        "{ dist: constant, value: 1000 }",
        "{ dist: constant, value: 20 }",
        20,
        None,
        EngineConfig::default(),
    );
    let interval_s = 20.0;
    sc.timeseries_interval = Some(SimDuration::from_secs_f64(interval_s));
    let out = run_llm(&sc);
    let PoolKind::Llm(p) = &sc.pools[0].kind else { unreachable!() };
    let prefill_ms = p.models[0].latency.iteration_s(&IterationShape::prefill_chunk(1000, 0)) * 1e3;
    let with: Vec<f64> = out.timeseries.iter().filter_map(|s| s.ttft_p95_ms).collect();
    assert!(with.len() >= 10, "{} windows with first tokens", with.len());
    assert!(with.len() < out.timeseries.len(), "some windows have none");
    for v in with {
        assert!((v - prefill_ms).abs() < 1e-3, "window p95 {v} vs prefill {prefill_ms}");
    }
    // Arrivals per second × interval, summed, counts every arrival before the last sample: all
    // but those of the last partial window (the run ends with the last answer, ~0.2 s after
    // the last arrival; at 0.01/s a 20 s window holds a few at most).
    let counted: f64 = out.timeseries.iter().map(|s| s.arrivals_per_s * interval_s).sum();
    let arrivals = out.recorder.all.arrivals as f64;
    assert!(counted.fract().abs() < 1e-9, "whole arrivals: {counted}");
    assert!(counted <= arrivals && counted >= arrivals - 3.0, "{counted} of {arrivals}");
}

#[test]
fn queue_samples_take_the_response_as_the_first_token() {
    // Constant 50 ms service on ample servers: every response takes exactly 50 ms.
    let yaml = "name: q\nseed: 3\nhorizon: { duration_s: 20 }\ntimeseries: { interval_s: 1 }\n\
        workload:\n  - class: c\n    arrival: { process: poisson, rate_per_s: 30 }\n    \
        service_s: { dist: constant, value: 0.05 }\n\
        cluster: { pools: [ { name: p, kind: queue, replicas: 8, slots: 8 } ] }\n\
        policies: [least_requests]\n";
    let sc = crate::scenario::load_str(yaml, "q.yaml", &LoadOptions::default()).expect("valid");
    let out = run(&sc, &sc.policies[0], 0).expect("run");
    let p95: Vec<f64> = out.timeseries.iter().filter_map(|s| s.ttft_p95_ms).collect();
    assert!(p95.len() >= 15, "{}", p95.len());
    assert!(p95.iter().all(|v| (v - 50.0).abs() < 1e-6), "{p95:?}");
    let mean_rate = out.timeseries.iter().take(20).map(|s| s.arrivals_per_s).sum::<f64>() / 20.0;
    assert!((mean_rate - 30.0).abs() < 4.0, "offered load {mean_rate} vs 30/s");
}
