//! What a run costs: `llm` pools are billed at their GPU's catalog price (`data/gpus.csv`
//! `usd_per_gpu_hour`) unless `lifecycle.gpu_hour_usd` overrides it, queue pools at 0; with a
//! fixed replica count a pool's GPU-hours are `replicas × tp × window_s / 3600`, its cost those
//! GPU-hours × its price, and `usd_per_m_output_tokens` is `cost_usd / output tokens × 10^6`
//! with the tokens those `output_tokens_per_s` counts (`output_tokens_per_s × window_s`).

use crate::common::{get, run_rows, scenario};
use routelab::cluster::catalog::Catalog;
use routelab::report::RunRow;

/// Two llm pools: `h` (3 × H100, tp 2) at the catalog price and `a` (1 × A100, tp 1) at an
/// overridden $1.25, plus a custom GPU pool priced in the scenario's `gpus:` entry.
const TWO_POOLS: &str = r#"
name: cost
seed: 5
horizon: { duration_s: 120 }
warmup: { duration_s: 10 }
gpus:
  - { name: rented, memory_gb: 80, mem_bw_gb_per_s: 2000, bf16_dense_tflops: 300,
      usd_per_gpu_hour: 0.5, price_source: "a quote" }
workload:
  - class: c
    model: llama-3-8b
    arrival: { process: poisson, rate_per_s: 6 }
    prompt_tokens: { dist: constant, value: 300 }
    output_tokens: { dist: constant, value: 40 }
cluster:
  pools:
    - { name: h, kind: llm, replicas: 3, gpu: h100-sxm, tp: 2, model: llama-3-8b }
    - { name: a, kind: llm, replicas: 1, gpu: a100, model: llama-3-8b,
        lifecycle: { gpu_hour_usd: 1.25 } }
    - { name: r, kind: llm, replicas: 2, gpu: rented, model: llama-3-8b }
policies: [round_robin]
"#;

fn catalog_price(gpu: &str) -> f64 {
    let g = Catalog::builtin().gpu(gpu).expect("catalog GPU");
    g.usd_per_gpu_hour.unwrap_or_else(|| panic!("{} has a catalog price", g.name))
}

fn group<'r>(row: &'r RunRow, label: &str) -> &'r [Option<f64>] {
    row.group_values(label).unwrap_or_else(|| panic!("no group {label}"))
}

fn value(values: &[Option<f64>], metric: &str) -> f64 {
    let i = routelab::report::metric_index(metric).expect("metric");
    values[i].unwrap_or_else(|| panic!("{metric} undefined"))
}

#[test]
fn pools_take_the_catalog_price_unless_they_override_it() {
    let s = scenario(TWO_POOLS);
    let price =
        |name: &str| s.pools.iter().find(|p| p.name == name).expect("pool").lifecycle.gpu_hour_usd;
    assert_eq!(price("h"), catalog_price("h100-sxm"));
    assert!(price("h") > 0.0, "the H100 row has a price");
    assert_eq!(price("a"), 1.25, "the pool's own price wins over the catalog's");
    assert_ne!(catalog_price("a100"), 1.25, "the override must differ to be seen");
    assert_eq!(price("r"), 0.5, "a custom GPU carries its price");

    let rows = run_rows(s, 1);
    let row = &rows[0];
    let window_h = get(row, "window_s") / 3600.0;
    assert!(window_h > 0.0);
    let mut total = 0.0;
    for (label, gpus, usd) in
        [("pool:h", 6.0, catalog_price("h100-sxm")), ("pool:a", 1.0, 1.25), ("pool:r", 2.0, 0.5)]
    {
        let v = group(row, label);
        // Fixed replicas are provisioned for the whole window (columns are rounded to 6 and 4
        // places).
        let gpu_hours = value(v, "gpu_hours");
        assert!(
            (gpu_hours - gpus * window_h).abs() < 2e-6,
            "{label}: {gpu_hours} vs {} (window {} s)",
            gpus * window_h,
            window_h * 3600.0
        );
        let cost = value(v, "cost_usd");
        assert!((cost - gpus * window_h * usd).abs() < 2e-4, "{label}: cost {cost}");
        total += gpus * window_h * usd;
    }
    assert!((get(row, "cost_usd") - total).abs() < 2e-4, "run cost is the pools' sum");
    // The window runs to the horizon even though arrivals stop at the last one before it:
    // six fixed replicas average exactly six.
    assert_eq!(get(row, "replicas_mean"), 6.0);
}

#[test]
fn usd_per_million_output_tokens_is_cost_over_tokens() {
    let rows = run_rows(scenario(TWO_POOLS), 1);
    let row = &rows[0];
    let check = |values: &[Option<f64>], what: &str| {
        let window_s = get(row, "window_s");
        let tokens = value(values, "output_tokens_per_s") * window_s;
        assert!(tokens > 1000.0, "{what}: the run must generate tokens ({tokens})");
        let want = value(values, "cost_usd") / tokens * 1e6;
        let got = value(values, "usd_per_m_output_tokens");
        // Both inputs are rounded (4 and 3 places): agree within 0.1%.
        assert!((got - want).abs() <= 1e-3 * want, "{what}: {got} vs {want}");
    };
    check(&row.values, "all");
    for label in ["pool:h", "pool:a", "pool:r"] {
        check(group(row, label), label);
    }
    // The dearer pool per token is the one with the higher price per GPU-hour × GPUs per
    // replica, as round robin gives every replica the same share of the tokens.
    let per_m = |label: &str| value(group(row, label), "usd_per_m_output_tokens");
    assert!(per_m("pool:h") > per_m("pool:r"), "{} vs {}", per_m("pool:h"), per_m("pool:r"));
}

#[test]
fn queue_clusters_cost_nothing_and_have_no_cost_per_token() {
    let rows = run_rows(
        scenario(
            "name: q\nseed: 1\nhorizon: { max_requests: 300 }\nworkload:\n  - class: c\n    \
             arrival: { process: poisson, rate_per_s: 20 }\n    service_s: { dist: constant, \
             value: 0.01 }\ncluster: { pools: [ { name: p, kind: queue, replicas: 2 } ] }\n\
             policies: [round_robin]\n",
        ),
        1,
    );
    for m in ["cost_usd", "usd_per_m_output_tokens", "gpu_hours"] {
        assert_eq!(rows[0].get(m), None, "{m}");
    }
}
