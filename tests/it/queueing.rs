//! Queueing-theory validation: the simulator against closed forms (M/M/1, M/M/c with Erlang C,
//! M/D/1 and M/G/1 with Pollaczek–Khinchine) and against the supermarket model for the power
//! of two choices.
//!
//! Each check runs a scenario from `scenarios/validation/` (the files state the theory value
//! in their header and are meant to be run by users too) with 10 independent replications,
//! each with its own warm-up. Replication means are i.i.d., so the across-replication mean has
//! an honest standard error (SE) whatever the autocorrelation inside a run. Every check asserts
//! two things:
//! - `|mean - theory| <= 4 SE` (+ a documented model-bias allowance where the theory is only a
//!   limit). With 10 replications the t-statistic has 9 degrees of freedom, so 4 SE is a
//!   two-sided false-alarm probability of about 0.3% per check (the seeds are fixed, so the
//!   outcome is deterministic; this is how unlucky a seed would have to be).
//! - `SE / theory <= 1.5%`, so the tolerance is at most about 6% of the theory value and the
//!   test has the power to catch a real error. The run lengths below give SEs of 0.1–0.7%.
//!
//! Bias: every scenario has a single FIFO per replica and routing that looks only at the state
//! at arrival, so a request's delay depends only on earlier arrivals and stopping arrivals at
//! the horizon does not bias measured requests (all of them complete: no drain limit, no
//! timeouts). The start-empty transient is removed by warm-ups of many relaxation times
//! (stated per scenario below).

use crate::common;
use routelab::report::RunRow;
use routelab::scenario::{self, LoadOptions, Scenario};
use std::path::Path;

/// Loads `scenarios/validation/<name>.yaml`.
fn load(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/validation").join(name);
    scenario::load(&path, &LoadOptions::default())
        .unwrap_or_else(|e| panic!("validation scenario {name} invalid: {e}"))
}

/// Across-replication mean and standard error of one metric.
#[derive(Debug, Clone, Copy)]
struct Estimate {
    mean: f64,
    se: f64,
}

/// The rows of `policy`, in replication order.
fn rows_of<'a>(rows: &'a [RunRow], policy: &str) -> Vec<&'a RunRow> {
    let out: Vec<&RunRow> = rows.iter().filter(|r| r.key.policy == policy).collect();
    assert!(!out.is_empty(), "no rows for policy {policy}");
    out
}

fn estimate(rows: &[&RunRow], metric: &str) -> Estimate {
    let xs: Vec<f64> = rows.iter().map(|r| common::get(r, metric)).collect();
    let n = xs.len() as f64;
    assert!(xs.len() >= 5, "need several replications for an honest SE, got {}", xs.len());
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    Estimate { mean, se: (var / n).sqrt() }
}

/// Largest SE accepted, relative to the theory value: above this the check would be too weak
/// to catch a real error (and the run lengths were chosen so it is several times smaller).
const MAX_REL_SE: f64 = 0.015;

/// Asserts `|mean - theory| <= 4 SE + allowance` and `SE <= MAX_REL_SE * theory`.
fn assert_near(what: &str, e: Estimate, theory: f64, allowance: f64) {
    let dev = e.mean - theory;
    eprintln!(
        "{what}: measured {:.3} ± {:.3} (SE) vs theory {theory:.3}: {:+.2}% = {:+.2} SE",
        e.mean,
        e.se,
        100.0 * dev / theory,
        dev / e.se
    );
    assert!(
        e.se <= MAX_REL_SE * theory,
        "{what}: SE {:.3} is {:.2}% of theory {theory:.3}; too noisy to validate anything",
        e.se,
        100.0 * e.se / theory
    );
    assert!(
        dev.abs() <= 4.0 * e.se + allowance,
        "{what}: {:.3} ± {:.3} (SE) vs theory {theory:.3}: {:+.2} SE, allowance {allowance}",
        e.mean,
        e.se,
        dev / e.se
    );
}

/// Every measured request of every run completed, and the measured count is exactly the
/// horizon minus the warm-up (so the statistics cover what the scenario says).
fn assert_all_completed(rows: &[RunRow], measured: f64) {
    for r in rows {
        let k = &r.key;
        assert_eq!(common::get(r, "arrivals"), measured, "{k:?}");
        assert_eq!(common::get(r, "completed"), measured, "{k:?}");
        for m in ["timed_out", "rejected", "unfinished"] {
            assert_eq!(common::get(r, m), 0.0, "{m} in {k:?}");
        }
    }
}

/// Erlang C: the probability that an arrival waits in M/M/c with offered load `a = lambda/mu`
/// (`a < c`). Computed from the Erlang B recurrence `B_k = a B_{k-1} / (k + a B_{k-1})`, which
/// never forms `a^c` or `c!`, then `C = c B / (c - a (1 - B))`.
fn erlang_c(c: u32, a: f64) -> f64 {
    assert!(a > 0.0 && a < f64::from(c), "unstable M/M/c: a = {a}, c = {c}");
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (f64::from(k) + a * b);
    }
    let c = f64::from(c);
    c * b / (c - a * (1.0 - b))
}

/// Mitzenmacher's n → ∞ limit of the mean sojourn time in the supermarket model with unit
/// service rate, per-server arrival rate `rho` and d = 2 choices: `sum_{i>=1} rho^(2^i - 2)`.
fn supermarket_limit_d2(rho: f64) -> f64 {
    // Terms fall doubly exponentially: 30 of them are exact in f64 for any rho <= 0.999.
    (1..=30).map(|i| rho.powi((1i32 << i) - 2)).sum()
}

#[test]
fn theory_oracles_match_hand_computed_values() {
    // M/M/1 is M/M/c with c = 1: P(wait) = rho.
    assert!((erlang_c(1, 0.7) - 0.7).abs() < 1e-15);
    // M/M/2 with a = 1: C = (1/2 * 2/1) / (1 + 1 + 1) = 1/3.
    assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-15);
    // Large c stays finite and sane (a^c / c! would overflow here).
    let big = erlang_c(400, 380.0);
    assert!(big > 0.0 && big < 1.0, "{big}");
    // d = 2 limit at rho = 0.9: 1 + 0.81 + 0.9^6 + 0.9^14 + 0.9^30 + 0.9^62 + ...
    assert!((supermarket_limit_d2(0.9) - 2.614_057_377).abs() < 1e-8);
    // rho = 0.5: 1 + 1/4 + 1/64 + 2^-14 + ...
    assert!((supermarket_limit_d2(0.5) - 1.265_686_1).abs() < 1e-6);
}

/// M/M/1 at rho = 0.8 (lambda = 8/s, mu = 10/s): W = 1/(mu - lambda) = 500 ms, and the sojourn
/// time is exponential with that mean, so its quantiles are `-W ln(1 - q)`.
#[test]
fn mm1_mean_sojourn_time_matches_one_over_mu_minus_lambda() {
    let sc = load("mm1.yaml");
    let rows = common::run_rows(sc, 0);
    assert_eq!(rows.len(), 10);
    assert_all_completed(&rows, 400_000.0);
    let rows = rows_of(&rows, "round_robin");
    let (lambda, mu) = (8.0, 10.0);
    let w_ms = 1000.0 / (mu - lambda);

    // The relative variance of a mean of n M/M/1 sojourn times at rho = 0.8 is roughly 90/n
    // (from the asymptotic variance 2 rho (1 + rho) / (1 - rho)^4 of the time-average number
    // in system, Whitt 1989), so 400k measured requests per replication give ~1.5% per
    // replication (1.6% observed) and ~0.5% SE over 10. Relaxation time
    // ~ 1/(mu (1 - sqrt rho)^2) ≈ 9 s ≈ 72 arrivals; the 40k warm-up is over 500 times that,
    // so no start-up bias allowance.
    assert_near("M/M/1 e2e_ms_mean", estimate(&rows, "e2e_ms_mean"), w_ms, 0.0);

    // Quantiles of the exponential sojourn law. HdrHistogram reports a bucket's upper edge
    // (3 significant digits: at most +0.1%), far inside 4 SE (~2.5% here), so no allowance.
    for (metric, q) in [("e2e_ms_p50", 0.5f64), ("e2e_ms_p95", 0.95)] {
        let theory = -w_ms * (1.0 - q).ln();
        assert_near(&format!("M/M/1 {metric}"), estimate(&rows, metric), theory, 0.0);
    }
}

/// M/M/8 at rho = 0.8 (lambda = 64/s, mu = 10/s, a = 6.4): Wq = C(8, 6.4) / (c mu - lambda).
#[test]
fn mmc_mean_wait_matches_erlang_c() {
    let sc = load("mmc.yaml");
    let rows = common::run_rows(sc, 0);
    assert_eq!(rows.len(), 10);
    assert_all_completed(&rows, 1_000_000.0);
    let rows = rows_of(&rows, "round_robin");
    let (c, lambda, mu) = (8u32, 64.0, 10.0);
    let p_wait = erlang_c(c, lambda / mu);
    let wq_ms = 1000.0 * p_wait / (f64::from(c) * mu - lambda);
    assert!((wq_ms - 28.6028).abs() < 1e-3, "Erlang C oracle: {wq_ms}");

    // The mean wait mixes an atom at 0 (54% of requests) with an exponential tail, so it is
    // noisier relative to its mean than the sojourn time: 1M measured requests per replication
    // give ~0.7% SE over 10. Relaxation time ~ 1/(c mu (1 - sqrt rho)^2) ≈ 1 s (~70 arrivals);
    // the 100k warm-up is over 1000 times that, so no start-up allowance.
    assert_near("M/M/c queue_wait_ms_mean", estimate(&rows, "queue_wait_ms_mean"), wq_ms, 0.0);

    // Sojourn = wait + exponential service: W = Wq + 1/mu. Same runs; the service-time noise
    // is included in the across-replication SE, so 4 SE again.
    let w_ms = wq_ms + 1000.0 / mu;
    assert_near("M/M/c e2e_ms_mean", estimate(&rows, "e2e_ms_mean"), w_ms, 0.0);

    // The whole wait law under FIFO: P(Wq > t) = C exp(-(c mu - lambda) t). More than half of
    // the requests (1 - C = 54%) start at once, so the median wait is 0 (within the
    // histogram's 1 us resolution); upper quantiles are ln(C / (1 - q)) / (c mu - lambda).
    // HdrHistogram's +0.1% quantisation is far inside 4 SE (~3% here), so no allowance.
    for r in &rows {
        let p50 = common::get(r, "queue_wait_ms_p50");
        assert!(p50 <= 0.001, "median wait {p50} ms in {:?}", r.key);
    }
    for (metric, q) in [("queue_wait_ms_p95", 0.95f64), ("queue_wait_ms_p99", 0.99)] {
        let theory = 1000.0 * (p_wait / (1.0 - q)).ln() / (f64::from(c) * mu - lambda);
        assert_near(&format!("M/M/c {metric}"), estimate(&rows, metric), theory, 0.0);
    }
}

/// M/D/1 at rho = 0.8 (lambda = 8/s, S = 0.1 s): Wq = lambda E[S^2] / (2 (1 - rho)) = 200 ms.
#[test]
fn md1_mean_wait_matches_pollaczek_khinchine() {
    let sc = load("md1.yaml");
    let rows = common::run_rows(sc, 0);
    assert_eq!(rows.len(), 10);
    assert_all_completed(&rows, 400_000.0);
    let rows = rows_of(&rows, "round_robin");
    let (lambda, s) = (8.0, 0.1);
    let rho = lambda * s;
    let wq_ms = 1000.0 * lambda * s * s / (2.0 * (1.0 - rho));

    // Deterministic service halves the M/M/1 wait and its variability: 400k measured requests
    // per replication give ~0.3% SE over 10. Warm-up (40k) is thousands of relaxation times.
    assert_near("M/D/1 queue_wait_ms_mean", estimate(&rows, "queue_wait_ms_mean"), wq_ms, 0.0);

    // Every service takes exactly 100 ms (0.1 s is a whole number of nanoseconds), and the
    // same requests are measured for both metrics, so e2e - wait is 100 ms up to float error.
    for r in &rows {
        let diff = common::get(r, "e2e_ms_mean") - common::get(r, "queue_wait_ms_mean");
        assert!((diff - 1000.0 * s).abs() < 1e-6, "e2e - wait = {diff} in {:?}", r.key);
    }
}

/// M/G/1 with lognormal service (mean 0.1 s, cv 1.5, unclamped) at rho = 0.7:
/// Wq = lambda m^2 (1 + cv^2) / (2 (1 - rho)) = 379.167 ms.
#[test]
fn mg1_lognormal_mean_wait_matches_pollaczek_khinchine() {
    let sc = load("mg1-lognormal.yaml");
    let rows = common::run_rows(sc, 0);
    assert_eq!(rows.len(), 10);
    assert_all_completed(&rows, 1_000_000.0);
    let rows = rows_of(&rows, "round_robin");
    let (lambda, m, cv) = (7.0, 0.1, 1.5);
    let rho = lambda * m;
    let es2 = m * m * (1.0 + cv * cv);
    let wq_ms = 1000.0 * lambda * es2 / (2.0 * (1.0 - rho));

    // The variance of a mean of M/G/1 waits grows with E[S^3] and E[S^4] (34 m^3 and
    // 1178 m^4 for this lognormal), so this needs longer runs than M/M/1 at a lower load:
    // 1M measured requests per replication give ~0.7% SE over 10. Sampling is by inverse
    // transform from a 53-bit uniform, which truncates the lognormal beyond |z| ≈ 8.3; the lost
    // contribution to E[S^2] is below 1e-9 relative, so no allowance. Warm-up 100k.
    assert_near("M/G/1 queue_wait_ms_mean", estimate(&rows, "queue_wait_ms_mean"), wq_ms, 0.0);
}

/// The supermarket model: 100 single-slot replicas with exponential service (mean 1 s) at
/// per-replica load 0.9. Random routing splits the Poisson stream into 100 independent M/M/1
/// queues (mean sojourn 1/(1 - rho) = 10 s exactly, for any n); the power of two choices
/// brings it down to about 2.6 s.
#[test]
fn supermarket_model_random_and_power_of_two_choices_match_theory() {
    let sc = load("supermarket.yaml");
    let rows = common::run_rows(sc, 0);
    assert_eq!(rows.len(), 20);
    assert_all_completed(&rows, 2_000_000.0);
    let random = rows_of(&rows, "random");
    let pod = rows_of(&rows, "power_of_d");
    let rho = 0.9;

    // Random: each replica is an M/M/1 at rho = 0.9, whose per-queue relative variance of the
    // mean sojourn is ~380/n; averaged over 100 independent queues and 2M requests per
    // replication, ~1.4% per replication, ~0.4% SE over 10. Relaxation time per queue
    // ~ 1/(1 - sqrt rho)^2 ≈ 380 s ≈ 34k arrivals in total; the 200k warm-up is ~6 of them,
    // which leaves a start-up deficit far below the SE. No allowance: the theory is exact.
    let t_random_ms = 1000.0 / (1.0 - rho);
    assert_near(
        "supermarket random e2e_ms_mean",
        estimate(&random, "e2e_ms_mean"),
        t_random_ms,
        0.0,
    );

    // Power of two choices (Envoy semantics: two draws with replacement, the one with fewer
    // in-flight requests, ties to the first draw). Mitzenmacher's limit is for n → ∞; a finite
    // system is slower. For n = 100, published simulations (choices without replacement) sit
    // about 1% above the limit, and drawing with replacement (both draws hit the same replica
    // 1% of the time) adds about 0.5% more. An independent simulation of exactly this model
    // (a C program, not routelab: uniformised Markov chain of 100 queues, E[T] = E[N] /
    // (lambda n) by Little's law, 28 runs of 1.6e9 steps, 10% discarded as warm-up) gives
    // 2.6591 ± 0.0002 s with replacement (+1.72% over the limit) and 2.6452 ± 0.0004 s without
    // (+1.19%). So: allow a one-sided finite-n bias of up to 3% of the limit above it, and
    // nothing below it beyond 4 SE.
    let limit_ms = 1000.0 * supermarket_limit_d2(rho);
    let e = estimate(&pod, "e2e_ms_mean");
    let allowance = 0.03 * limit_ms;
    eprintln!(
        "supermarket power_of_d: limit {limit_ms:.2} ms, measured {:.2} ± {:.2} ({:+.2}%)",
        e.mean,
        e.se,
        100.0 * (e.mean / limit_ms - 1.0)
    );
    assert!(e.se <= MAX_REL_SE * limit_ms, "power_of_d SE {:.3} too large", e.se);
    assert!(
        e.mean >= limit_ms - 4.0 * e.se && e.mean <= limit_ms + allowance + 4.0 * e.se,
        "power_of_d e2e_ms_mean {:.2} ± {:.2} vs limit {limit_ms:.2} (+3% finite-n allowance)",
        e.mean,
        e.se
    );

    // The point of the model: with the same arrivals and service times in each replication
    // (common random numbers), two choices cut the mean sojourn by a factor of ~3.8 (theory
    // 10 / 2.66). Per-replication ratios vary by ~1.5%, so requiring < 0.3 (theory 0.266)
    // in every replication is a wide margin that still fails if the choice is ignored.
    for (p, r) in pod.iter().zip(&random) {
        assert_eq!(p.key.replication, r.key.replication);
        let ratio = common::get(p, "e2e_ms_mean") / common::get(r, "e2e_ms_mean");
        assert!(
            ratio < 0.3,
            "power_of_d / random = {ratio:.3} in replication {}",
            p.key.replication
        );
    }
}
