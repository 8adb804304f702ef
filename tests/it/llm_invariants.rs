//! Swarm test of `kind: llm` clusters: random small scenarios (1–4 pools of small models on
//! several GPUs, multi-model pools, tight KV caches pinned by `num_gpu_blocks_override`, small
//! batches and token budgets, chunked prefill, shared prefixes, sessions, `max_tokens`,
//! timeouts, SLOs, trace classes, loads from light to overloaded) under several routing
//! policies each. Every run must succeed — the engine itself fails a run that breaks request
//! or KV-block conservation, causality, TTFT >= uncached prefill time, TPOT >= the shortest
//! iteration, or work conservation (debug builds check KV conservation after every
//! iteration) — and its results must be consistent: conservation for all and for measured
//! requests, rates in [0, 1], goodput <= throughput, SLO attainment <= completion rate. Over
//! the swarm, tight caches must preempt and multi-model pools must cold-start, or the sweep
//! proves little. A failure prints the seed, the policy and the scenario YAML.
//!
//! `ROUTELAB_LLM_SWARM=N` sets the number of scenarios (default 100 in release builds; 30 in
//! debug builds, which keep only scenarios whose every pool pins a small KV cache, since the
//! per-iteration KV check is O(capacity)).

use crate::common::Pick;
use routelab::engine;
use routelab::policy::routing::ROUTERS;
use routelab::report::{RunKey, RunRow};
use routelab::rng::Stream;
use routelab::scenario::{load_str, LoadOptions, Scenario};
use std::path::Path;

/// GPUs and a rough slowness factor relative to an H100 SXM (for sizing the load only).
const GPUS: &[(&str, f64)] =
    &[("h100-sxm", 1.0), ("a100-80gb", 1.6), ("l40s", 3.0), ("h100-pcie", 1.4)];
/// Small models (attention heads 32, 32, 28: tp 1 and 2 divide them all) and a rough
/// iteration-time factor.
const MODELS: &[(&str, f64)] = &[("llama-3.2-1b", 0.4), ("llama-3-8b", 1.0), ("qwen2.5-7b", 1.0)];

fn mooncake_path() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/traces/mooncake_conversation_trace.jsonl")
        .display()
        .to_string()
}

fn azure_path() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/traces/AzureLLMInferenceTrace_conv.csv")
        .display()
        .to_string()
}

/// A token-count distribution with the given mean (clamped so prompts stay modest).
fn tokens_yaml(p: &mut Pick, mean: f64) -> String {
    let max = (mean * p.range(2.0, 6.0)).round();
    match p.below(5) {
        0 => format!("{{ dist: constant, value: {} }}", mean.round()),
        1 => format!("{{ dist: exponential, mean: {mean:.1}, max: {max} }}"),
        2 => format!("{{ dist: uniform, low: {:.1}, high: {:.1} }}", mean * 0.5, mean * 1.5),
        3 => format!(
            "{{ dist: lognormal, mean: {mean:.1}, cv: {:.2}, max: {max} }}",
            p.range(0.0, 2.0)
        ),
        _ => {
            let alpha = p.range(1.3, 3.0);
            format!(
                "{{ dist: pareto, alpha: {alpha:.3}, min: {:.1}, max: {max} }}",
                (mean * (alpha - 1.0) / alpha).max(1.0)
            )
        }
    }
}

/// What the generator knows about a scenario (to decide which checks apply).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Traits {
    tight_kv: bool,
    multi_model: bool,
    all_pinned: bool,
    timeouts: bool,
    drain: bool,
    sessions: bool,
    sharing: bool,
    any_caching: bool,
    slo: bool,
}

/// A random small `kind: llm` scenario; its traits.
pub(crate) fn random_llm_scenario(seed: u64) -> (String, Traits) {
    let mut p = Pick(Stream::from_seed(seed ^ 0x6c6c_6d5f_7377_726d));
    let mut t = Traits { all_pinned: true, ..Traits::default() };
    let npools = 1 + p.below(4);
    let mut pools = String::new();
    let mut served: Vec<&str> = Vec::new();
    // Rough capacity in requests per second for mean prompt / output lengths of 500 / 100.
    let mut capacity = 0.0;
    for i in 0..npools {
        let (gpu, slow) = *p.one(GPUS);
        let replicas = 1 + p.below(3);
        let tp = if p.chance(0.25) { 2 } else { 1 };
        let nmodels = if p.chance(0.3) { 2 } else { 1 };
        let first = p.below(MODELS.len() as u64) as usize;
        let models: Vec<(&str, f64)> =
            (0..nmodels).map(|j| MODELS[(first + j as usize) % MODELS.len()]).collect();
        for (m, _) in &models {
            if !served.contains(m) {
                served.push(m);
            }
        }
        let model_yaml = if models.len() == 1 {
            format!("model: {}", models[0].0)
        } else {
            t.multi_model = true;
            format!("models: [{}]", models.iter().map(|m| m.0).collect::<Vec<_>>().join(", "))
        };
        let max_num_seqs = *p.one(&[2u32, 4, 8, 16, 32, 64, 256]);
        let budget = (*p.one(&[32u32, 128, 512, 1024, 2048, 8192])).max(max_num_seqs);
        let block_size = *p.one(&[8u32, 16, 16, 16, 32]);
        let mut engine = vec![
            format!("max_num_seqs: {max_num_seqs}"),
            format!("max_num_batched_tokens: {budget}"),
            format!("block_size: {block_size}"),
        ];
        let mut max_model_len = None;
        let blocks = if p.chance(0.8) {
            let b = p.log_range(100.0, 2000.0).round() as u32;
            engine.push(format!("num_gpu_blocks_override: {b}"));
            if b * block_size < 20_000 {
                t.tight_kv = true;
            }
            b
        } else {
            t.all_pinned = false;
            max_model_len = Some(*p.one(&[4096, 8192]));
            100_000
        };
        if p.chance(0.3) {
            let threshold = p.one(&[16, 64, 256, 1000]);
            engine.push(format!("long_prefill_token_threshold: {threshold}"));
        }
        if p.chance(0.3) {
            engine.push("scheduling_policy: priority".into());
        }
        let caching = p.chance(0.85);
        t.any_caching |= caching;
        if !caching {
            engine.push("enable_prefix_caching: false".into());
        }
        if p.chance(0.2) {
            max_model_len = Some(*p.one(&[1024, 2048, 3000]));
        }
        if let Some(n) = max_model_len {
            engine.push(format!("max_model_len: {n}"));
        }
        let engine = engine.join(", ");
        let latency = if p.chance(0.15) {
            format!(
                "\n      latency: {{ model: linear, beta0_s: {:.4}, beta1_s_per_prefill_token: {:.7}, beta2_s_per_decode_token: {:.6} }}",
                p.range(0.002, 0.02),
                p.range(1e-5, 2e-4),
                p.range(1e-5, 5e-4)
            )
        } else {
            String::new()
        };
        let cold = if nmodels > 1 || p.chance(0.2) {
            format!(
                "\n      cold_start: {{ init_s: {:.2}, load_gb_per_s: {:.1} }}",
                p.range(0.0, 5.0),
                p.range(2.0, 40.0)
            )
        } else {
            String::new()
        };
        let weight = 1 + p.below(3);
        pools.push_str(&format!(
            "    - name: p{i}\n      kind: llm\n      replicas: {replicas}\n      weight: {weight}\n      gpu: {gpu}\n      tp: {tp}\n      {model_yaml}\n      engine: {{ {engine} }}{latency}{cold}\n"
        ));
        let iter_s = 0.012 * slow * models[0].1 / f64::from(tp);
        let batch = f64::from(max_num_seqs).min(f64::from(blocks * block_size) / 600.0).max(1.0);
        capacity += replicas as f64 * batch / (100.0 * iter_s);
    }
    let load = p.log_range(0.1, 3.0);
    let nclasses = 1 + p.below(3);
    let mut classes = String::new();
    for k in 0..nclasses {
        let model = *p.one(&served);
        let model_line = if served.len() > 1 || p.chance(0.5) {
            format!("\n    model: {model}")
        } else {
            String::new()
        };
        let rate = capacity * load / nclasses as f64;
        let mut body = String::new();
        let trace = p.chance(0.1);
        if trace {
            let (path, format) =
                if p.chance(0.6) { (mooncake_path(), "mooncake") } else { (azure_path(), "azure") };
            t.sharing |= format == "mooncake";
            body.push_str(&format!(
                "\n    trace: {{ path: {path}, format: {format}, time_scale: {:.2}, start_s: {:.1}, duration_s: {:.1} }}\n    max_tokens: {}",
                p.log_range(1.0, 20.0),
                p.range(0.0, 3000.0),
                p.range(20.0, 200.0),
                p.one(&[16, 64, 200])
            ));
        } else {
            let session = p.chance(0.25);
            let arrival = if session { rate / 3.0 } else { rate };
            body.push_str(&match p.below(3) {
                0 => format!("\n    arrival: {{ process: poisson, rate_per_s: {arrival:.4} }}"),
                1 => format!(
                    "\n    arrival: {{ process: gamma, rate_per_s: {arrival:.4}, cv: {:.2} }}",
                    p.range(0.0, 3.0)
                ),
                _ => format!(
                    "\n    arrival: {{ process: onoff, on_s: {:.2}, off_s: {:.2}, on_rate_per_s: {:.4} }}",
                    p.range(0.5, 5.0),
                    p.range(0.5, 5.0),
                    arrival * 2.0
                ),
            });
            let prompt_mean = p.log_range(30.0, 1500.0);
            let output_mean = p.log_range(5.0, 300.0);
            body.push_str(&format!(
                "\n    prompt_tokens: {}\n    output_tokens: {}",
                tokens_yaml(&mut p, prompt_mean),
                tokens_yaml(&mut p, output_mean)
            ));
            if p.chance(0.3) {
                body.push_str(&format!("\n    max_tokens: {}", 1 + p.below(200)));
            }
            if p.chance(0.4) {
                t.sharing = true;
                body.push_str(&format!(
                    "\n    prefix: {{ groups: {}, group_tokens: {}, popularity_zipf_s: {:.2} }}",
                    1 + p.below(20),
                    16 + p.below(1000),
                    p.range(0.0, 1.5)
                ));
            }
            if session {
                t.sessions = true;
                t.sharing = true;
                let turns = if p.chance(0.5) {
                    format!("{{ dist: constant, value: {} }}", 1 + p.below(5))
                } else {
                    "{ dist: uniform, low: 1, high: 6 }".to_string()
                };
                let cap = if p.chance(0.4) {
                    format!(", max_context_tokens: {}", 500 + p.below(6000))
                } else {
                    String::new()
                };
                body.push_str(&format!(
                    "\n    session: {{ turns: {turns}, think_time_s: {{ dist: exponential, mean: {:.2} }}{cap} }}",
                    p.range(0.1, 3.0)
                ));
            }
        }
        if p.chance(0.35) {
            t.timeouts = true;
            body.push_str(&format!("\n    timeout_s: {:.2}", p.log_range(0.3, 30.0)));
        }
        if p.chance(0.5) {
            t.slo = true;
            let mut parts = Vec::new();
            if p.chance(0.7) {
                parts.push(format!("ttft_ms: {:.0}", p.log_range(50.0, 5000.0)));
            }
            if p.chance(0.7) || parts.is_empty() {
                parts.push(format!("tpot_ms: {:.1}", p.log_range(5.0, 200.0)));
            }
            body.push_str(&format!("\n    slo: {{ {} }}", parts.join(", ")));
        }
        if p.chance(0.2) {
            body.push_str(&format!("\n    tenant: t{}", p.below(2)));
        }
        if p.chance(0.4) {
            body.push_str(&format!("\n    priority: {}", p.below(5) as i64 - 2));
        }
        classes.push_str(&format!("  - class: c{k}{model_line}{body}\n"));
    }
    let max_requests = 200 + p.below(3800);
    let horizon = match p.below(3) {
        0 => format!("{{ max_requests: {max_requests} }}"),
        1 => {
            t.drain = true;
            format!(
                "{{ max_requests: {max_requests}, duration_s: {:.1}, drain_s: {:.2} }}",
                p.range(5.0, 60.0),
                p.range(0.0, 5.0)
            )
        }
        _ => format!("{{ max_requests: {max_requests}, duration_s: {:.1} }}", p.range(5.0, 60.0)),
    };
    let warmup = if p.chance(0.4) {
        format!("warmup: {{ requests: {} }}\n", p.below(150))
    } else {
        String::new()
    };
    // Gateway instances and signal staleness: several instances, scraped metrics, delayed KV
    // events (the stateful routers must keep every invariant under them too).
    let gateway = if p.chance(0.5) {
        format!(
            "gateway: {{ replicas: {}, metrics_refresh_ms: {}, kv_event_delay_ms: {}, spread: {} }}\n",
            1 + p.below(3),
            [0, 20, 200][p.below(3) as usize],
            [0, 10, 100][p.below(3) as usize],
            if p.chance(0.5) { "random" } else { "round_robin" }
        )
    } else {
        String::new()
    };
    // Three policies per scenario, rotating through the registry.
    let n = ROUTERS.len();
    let policies: Vec<&str> =
        (0..3.min(n)).map(|j| ROUTERS[(seed as usize * 3 + j) % n].name).collect();
    let yaml = format!(
        "name: llm-swarm-{seed}\nseed: {seed}\nhorizon: {horizon}\n{warmup}{gateway}workload:\n{classes}cluster:\n  pools:\n{pools}policies: [{}]\n",
        policies.join(", ")
    );
    (yaml, t)
}

/// A scenario's seed, YAML and traits, and each of its runs.
type Swarmed = (u64, String, Traits, Vec<Result<Outcome, String>>);

/// One run's counters and row.
struct Outcome {
    policy: String,
    rec: routelab::metrics::Recorder,
    row: RunRow,
}

fn run_all(s: &Scenario) -> Vec<Result<Outcome, String>> {
    use rayon::prelude::*;
    s.policies
        .par_iter()
        .map(|policy| {
            let out = engine::run(s, policy, 0).map_err(|e| format!("{}: {e}", policy.label))?;
            let key = RunKey {
                scenario: s.name.clone(),
                cell: 0,
                params: String::new(),
                policy: policy.label.clone(),
                autoscaler: "none".into(),
                replication: 0,
            };
            let row = RunRow::from_output(key, &out);
            Ok(Outcome { policy: policy.label.clone(), rec: out.recorder, row })
        })
        .collect()
}

fn swarm_size() -> u64 {
    let default = if cfg!(debug_assertions) { 30 } else { 100 };
    std::env::var("ROUTELAB_LLM_SWARM").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn llm_invariants_hold_over_random_scenarios() {
    use rayon::prelude::*;
    let n = swarm_size();
    // Debug builds check KV conservation (O(capacity)) after every iteration: keep to
    // scenarios whose caches are all pinned small.
    let mut seeds = Vec::new();
    let mut seed = 0u64;
    while (seeds.len() as u64) < n {
        seed += 1;
        let (yaml, t) = random_llm_scenario(seed);
        if cfg!(debug_assertions) && !t.all_pinned {
            continue;
        }
        seeds.push((seed, yaml, t));
    }
    let results: Vec<Swarmed> = seeds
        .into_par_iter()
        .map(|(seed, yaml, t)| {
            let s = load_str(&yaml, &format!("llm swarm seed {seed}"), &LoadOptions::default())
                .unwrap_or_else(|e| {
                    panic!("seed {seed}: generated scenario rejected: {e}\n{yaml}")
                });
            let out = run_all(&s);
            (seed, yaml, t, out)
        })
        .collect();
    let mut failures = Vec::new();
    let (mut tight_preempting, mut tight_runs) = (0, 0);
    let (mut multi_cold, mut multi_runs) = (0, 0);
    let mut totals = [0u64; 5];
    let (mut hits, mut slo_runs, mut runs) = (0, 0, 0);
    for (seed, yaml, t, outs) in &results {
        let mut arrivals0 = None;
        for o in outs {
            let o = match o {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("seed {seed}: run failed: {e}\n{yaml}"));
                    continue;
                }
            };
            runs += 1;
            let problems = check_run(o, t, &mut arrivals0);
            if !problems.is_empty() {
                failures.push(format!(
                    "seed {seed}, policy {}: {}\n{yaml}",
                    o.policy,
                    problems.join("; ")
                ));
            }
            let l = &o.rec.llm;
            if t.tight_kv {
                tight_runs += 1;
                tight_preempting += usize::from(l.preemptions > 0);
            }
            if t.multi_model {
                multi_runs += 1;
                multi_cold += usize::from(l.cold_starts > 0);
            }
            let a = &o.rec.all;
            for (x, v) in totals.iter_mut().zip([
                a.completed,
                a.timed_out,
                a.rejected,
                a.unfinished,
                l.preemptions,
            ]) {
                *x += v;
            }
            hits += usize::from(l.cached_prompt_tokens > 0);
            slo_runs += usize::from(l.slo_met > 0 && l.slo_met < o.rec.measured.completed);
        }
    }
    eprintln!(
        "llm swarm: {} scenarios, {runs} runs; tight-KV runs preempting {tight_preempting}/{tight_runs}; \
         multi-model runs cold-starting {multi_cold}/{multi_runs}; runs with cache hits {hits}; \
         runs missing some SLOs {slo_runs}; all requests completed/timed_out/rejected/unfinished \
         {}/{}/{}/{}; preemptions {}",
        results.len(),
        totals[0],
        totals[1],
        totals[2],
        totals[3],
        totals[4]
    );
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n\n"));
    assert!(runs > 0);
    if n >= 10 {
        assert!(tight_preempting > 0, "no tight-KV run preempted ({tight_runs} runs)");
        assert!(hits > 0, "no run hit the prefix cache");
    }
    if n >= 30 {
        assert!(multi_cold > 0, "no multi-model run cold-started ({multi_runs} runs)");
        assert!(totals[1] > 0 && totals[2] > 0 && totals[3] > 0, "{totals:?}");
        assert!(slo_runs > 0, "no run missed part of its SLOs");
    }
}

/// The row-level consistency checks of one run; what failed.
fn check_run(o: &Outcome, t: &Traits, arrivals0: &mut Option<u64>) -> Vec<String> {
    let mut bad = Vec::new();
    let r = &o.row;
    let get = |m: &str| r.get(m);
    for (name, c) in [("all", o.rec.all), ("measured", o.rec.measured)] {
        let ended = c.completed + c.timed_out + c.rejected + c.unfinished;
        if c.arrivals != ended {
            bad.push(format!("{name}: arrivals {} != ended {ended} ({c:?})", c.arrivals));
        }
    }
    let m = o.rec.measured;
    if get("arrivals") != Some(m.arrivals as f64)
        || get("completed") != Some(m.completed as f64)
        || get("timed_out") != Some(m.timed_out as f64)
        || get("rejected") != Some(m.rejected as f64)
        || get("unfinished") != Some(m.unfinished as f64)
    {
        bad.push("row counts differ from the recorder".into());
    }
    // Common random numbers: without sessions (whose later turns follow completions), every
    // policy sees the same arrivals.
    if !t.sessions {
        match arrivals0 {
            Some(a) if *a != o.rec.all.arrivals => bad.push(format!(
                "arrivals {} differ from the first policy's {a}",
                o.rec.all.arrivals
            )),
            _ => *arrivals0 = Some(o.rec.all.arrivals),
        }
    }
    if !t.timeouts && o.rec.all.timed_out > 0 {
        bad.push("timeouts without timeout_s".into());
    }
    if !t.drain && o.rec.all.unfinished > 0 {
        bad.push("unfinished without drain_s".into());
    }
    let l = &o.rec.llm;
    if !l.enabled {
        bad.push("llm stats not enabled".into());
    }
    if l.rejected_never_fit > o.rec.all.rejected {
        bad.push(format!(
            "rejected_never_fit {} > rejected {}",
            l.rejected_never_fit, o.rec.all.rejected
        ));
    }
    if !t.multi_model && l.cold_starts > 0 {
        bad.push(format!("{} cold starts in single-model pools", l.cold_starts));
    }
    let unit = |name: &str, v: Option<f64>, bad: &mut Vec<String>| {
        if let Some(x) = v {
            if !(0.0..=1.0).contains(&x) || !x.is_finite() {
                bad.push(format!("{name} = {x} outside [0, 1]"));
            }
        }
    };
    let hit = get("prefix_hit_rate");
    unit("prefix_hit_rate", hit, &mut bad);
    unit("kv_util_mean", get("kv_util_mean"), &mut bad);
    unit("slo_attainment", get("slo_attainment"), &mut bad);
    unit("timeout_rate", get("timeout_rate"), &mut bad);
    unit("rejection_rate", get("rejection_rate"), &mut bad);
    if (!t.sharing || !t.any_caching) && hit.is_some_and(|h| h > 0.0) {
        bad.push(format!("prefix hit rate {hit:?} without shared prefixes or with caching off"));
    }
    if m.arrivals > 0 && get("prefix_hit_rate").is_none() && m.completed > 0 {
        bad.push("completions but no prompt tokens counted".into());
    }
    if let (Some(g), Some(thr)) = (get("goodput_rps"), get("throughput_rps")) {
        if g > thr + 1e-9 {
            bad.push(format!("goodput {g} > throughput {thr}"));
        }
    }
    if l.window_goodput > o.rec.window_completions {
        bad.push("window goodput above window completions".into());
    }
    if let Some(s) = get("slo_attainment") {
        let completion = m.completed as f64 / m.arrivals as f64;
        // The row rounds to 6 decimals.
        if s > completion + 5e-7 {
            bad.push(format!("slo_attainment {s} > completed/arrivals {completion}"));
        }
    }
    if l.slo_met > m.completed {
        bad.push("more SLOs met than completions".into());
    }
    if !t.slo && l.slo_met != m.completed {
        bad.push(format!(
            "without SLOs every completion meets it: {} of {}",
            l.slo_met, m.completed
        ));
    }
    if l.cached_prompt_tokens > l.prompt_tokens {
        bad.push("more cached than prompt tokens".into());
    }
    if let (Some(a), Some(b), Some(c)) =
        (get("ttft_ms_p50"), get("ttft_ms_p95"), get("ttft_ms_p99"))
    {
        if !(a <= b && b <= c) {
            bad.push(format!("TTFT quantiles out of order {a} {b} {c}"));
        }
    }
    if let (Some(all), Some(p95)) = (get("ttft_ms_p95_all"), get("ttft_ms_p95")) {
        if all < p95 {
            bad.push(format!("censored TTFT p95 {all} below uncensored {p95}"));
        }
    }
    if m.completed > 0 && get("e2e_ms_mean").is_none() {
        bad.push("completions without E2E".into());
    }
    if l.iterations == 0 && o.rec.all.completed > 0 {
        bad.push("completions without iterations".into());
    }
    bad
}
