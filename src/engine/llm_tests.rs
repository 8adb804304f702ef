//! Engine tests of `llm` replicas built programmatically (independent of the YAML schema).

use super::*;
use crate::cluster::catalog::{kv_capacity_blocks, Catalog, Dtype, KvCacheConfig};
use crate::cluster::latency::{LatencyModel, Roofline, RooflineParams};
use crate::cluster::llm::spec::{EngineConfig, LlmPool, ServedModel};
use crate::scenario::{LoadOptions, PoolKind};
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
    let mut sc = crate::scenario::load_str(&yaml, "t.yaml", &LoadOptions::default()).expect("valid");
    let cat = Catalog::builtin();
    let gpu = cat.gpu("h100-sxm").expect("gpu");
    let model = cat.model("llama-3-8b").expect("model");
    let lat = Roofline::new(gpu, model, 1, Dtype::Bf16, Dtype::Bf16, &RooflineParams::default())
        .expect("roofline");
    let cap = kv_capacity_blocks(gpu, model, &KvCacheConfig::new(1)).expect("fits") as u32;
    sc.pools[0].kind = PoolKind::Llm(Box::new(LlmPool {
        gpu: gpu.name.clone(),
        tp: 1,
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
    let mean_decode: f64 = (1..=100)
        .map(|k| lat.iteration_s(&IterationShape::decode(1, 1000 + k - 1)))
        .sum::<f64>()
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

#[test]
#[ignore]
#[allow(clippy::disallowed_methods)]
fn perf_probe() {
    let n: u64 = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let rate: f64 = std::env::var("RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(300.0);
    let sc = llm_scenario(
        32,
        rate,
        "{ dist: lognormal, mean: 1024, cv: 1.0, max: 7000 }",
        "{ dist: lognormal, mean: 256, cv: 1.0, max: 1000 }",
        n,
        None,
        EngineConfig::default(),
    );
    let t = std::time::Instant::now();
    let out = run_llm(&sc);
    let el = t.elapsed().as_secs_f64();
    let r = &out.recorder;
    eprintln!(
        "n {n} wall {el:.3}s -> {:.0} req/s; events {}; iters {}; sim {:.1}s; ttft p50 {:?} p95 {:?} tpot {:?} kv {:?} preempt {}",
        n as f64 / el,
        out.events,
        r.llm.iterations,
        out.end_time.as_secs_f64(),
        r.ttft.quantile_ms(0.5),
        r.ttft.quantile_ms(0.95),
        r.tpot.mean_ms(),
        r.llm.kv_util_mean(),
        r.llm.preemptions
    );
}
