//! `planner`: an SLA planner in the spirit of NVIDIA Dynamo's (`components/planner`, the
//! throughput-based "SLA planner"): every adjustment interval, predict the next interval's
//! request rate and size the pool to carry it at the TTFT / TPOT targets.
//!
//! **What Dynamo does** (`planner_core.py`, read for this model). Every `adjustment_interval`
//! (180 s, `defaults.py`) it reads from Prometheus the frontend's average TTFT and ITL, the
//! request count and the mean input / output lengths over the interval, and adds them to its
//! load predictors (`load_predictor.py`: `constant` = the last value; `arima` = auto-ARIMA over
//! the last `load_prediction_window_size` = 50 points once 5 exist, else the last value;
//! `prophet`; default `arima`). If the interval had no traffic (a metric is missing or NaN) it
//! skips the adjustment. Then the correction factors: `p_correction = observed TTFT /
//! expected TTFT` and `d_correction = observed ITL / expected ITL`, "expected" being the
//! pre-deployment *profile* interpolated at the observed input length (and, for ITL, at the
//! observed per-worker concurrency). The prefill count is `ceil(predicted requests × ISL /
//! interval × min(1, p_correction) / (profiled prefill tokens/s per GPU × GPUs per engine))` —
//! the TTFT factor is capped at 1, so in this version a slow TTFT never *adds* prefill replicas,
//! it only trims them when TTFT beats the profile. The decode count divides the predicted
//! output-token rate by the best profiled per-GPU decode throughput that meets the *corrected*
//! ITL target `itl / d_correction` — an ITL worse than profiled tightens the target and adds
//! decode replicas. Both are at least `min_endpoint` (1) and scaled down to fit
//! `max_gpu_budget`. Defaults: TTFT 0.5 s, ITL 0.05 s.
//!
//! **What this autoscaler does** (one aggregated pool, requests rather than tokens). Every
//! `adjustment_interval_s` (180) it adds `pool.arrival_rate_per_s` to its predictor
//! (`constant`: the last rate, default; `moving_average`: the mean of the last `window` rates)
//! and, if requests finished in the interval (else it holds, as Dynamo skips idle intervals),
//!
//! ```text
//! r          = max(ttft_p95 / ttft_target_s, tpot_mean / tpot_target_s)     (latency ratio)
//! κ          = max(1, r)                                                     (correction)
//! replicas   = ceil(predicted rate × κ / capacity per replica)
//! ```
//!
//! clamped to `[min_replicas, max_replicas]`. The **capacity per replica** is `capacity_rps`
//! when given (measured offline, like Dynamo's profiling), else learnt online: over the
//! intervals that met both targets (`r <= 1`), the largest `completed / interval_s / ready`.
//! Before any compliant interval the current interval's per-replica throughput is used (with
//! its κ > 1), and with no finished request on a ready pod the pool is held.
//!
//! **The correction, compared.** Like Dynamo's factors, κ is recomputed from each interval's
//! latencies. Unlike them it is relative to the *target*, not to a profiled latency at the
//! observed load (there is no latency profile here): it only ever adds replicas, by the factor
//! the SLA was missed by, on both TTFT and TPOT. Being load-dependent, it can alternate: the
//! extra replicas bring the latency under target, κ returns to 1, and if the capacity per
//! replica is overestimated the next interval misses again.
//!
//! **The learnt capacity is a lower bound.** A compliant interval proves a replica carries at
//! least the throughput it served, so the estimate never exceeds the real capacity at the SLO
//! and reaches it once some interval ran a replica near it at the SLO. But the planner then
//! provisions at that estimate, so replicas never run faster than it and, without profiling, a
//! low first estimate (learnt at light load) stays low: the pool is over-provisioned, never
//! under. Give `capacity_rps` from a profile when you have one.
//!
//! Parameters: `pool` (required), `max_replicas` (required), `min_replicas` (1, Dynamo's
//! `min_endpoint`), `adjustment_interval_s` (180), `predictor` (`constant`), `window` (5, with
//! `moving_average` only; ours — Dynamo's 50-sample window feeds ARIMA, and a 50-interval
//! moving average would lag 2.5 h), `capacity_rps` (optional, > 0), `ttft_target_s` (0.5),
//! `tpot_target_s` (0.05).
//!
//! **Not modelled**: disaggregated prefill / decode pools (one pool here), token-based sizing
//! (ISL / OSL predictors and the profile interpolators), the ARIMA, Prophet and Kalman
//! predictors, the GPU budget, and Dynamo's newer load-based mode (queue / KV thresholds every
//! 5 s) and its `throughput` / `latency` optimization targets.
//!
//! Sources (read, not copied): ai-dynamo/dynamo `components/planner/src/dynamo/planner/utils/
//! planner_core.py` (`observe_metrics`, `make_adjustments`, `_compute_replica_requirements`,
//! `run`), `components/planner/src/dynamo/planner/utils/load_predictor.py`,
//! `components/planner/src/dynamo/planner/defaults.py` (`adjustment_interval = 180`,
//! `min_endpoint = 1`, `ttft = 0.5`, `itl = 0.05`, `load_predictor = "arima"`,
//! `load_prediction_window_size = 50`); docs.nvidia.com/dynamo design-docs `planner-design`
//! (correction factors); routelab `policies.md` §9.4.

use super::{
    parse_params, AutoscaleCtx, Autoscaler, AutoscalerEntry, MetricQuery, ScaleInput, Seconds,
};
use crate::time::SimDuration;
use serde::Deserialize;
use std::collections::VecDeque;

/// Registry entry.
pub static ENTRY: AutoscalerEntry = AutoscalerEntry {
    name: "planner",
    summary: "SLA planner after Dynamo: predicted rate / per-replica capacity at the TTFT/TPOT \
              targets every 180 s, corrected by the SLA miss",
    build,
};

/// Dynamo's `adjustment_interval`.
const DEFAULT_INTERVAL: SimDuration = SimDuration::from_secs(180);
/// Dynamo's `ttft` target, seconds.
const DEFAULT_TTFT_TARGET_S: f64 = 0.5;
/// Dynamo's `itl` target, seconds.
const DEFAULT_TPOT_TARGET_S: f64 = 0.05;
/// Moving-average window (ours).
const DEFAULT_WINDOW: usize = 5;

/// How the next interval's rate is predicted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Predictor {
    /// The last interval's rate (Dynamo's `constant`).
    #[default]
    Constant,
    /// The mean of the last `window` intervals.
    MovingAverage,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    pool: Option<String>,
    adjustment_interval_s: Option<Seconds>,
    predictor: Option<Predictor>,
    window: Option<usize>,
    capacity_rps: Option<f64>,
    ttft_target_s: Option<f64>,
    tpot_target_s: Option<f64>,
    min_replicas: Option<u32>,
    max_replicas: Option<u32>,
}

/// The planner.
#[derive(Debug, Clone)]
pub struct Planner {
    pool: u16,
    interval: SimDuration,
    predictor: Predictor,
    window: usize,
    rates: VecDeque<f64>,
    /// `capacity_rps`, if given.
    profiled_rps: Option<f64>,
    /// The largest per-replica throughput of an interval that met both targets.
    learned_rps: Option<f64>,
    ttft_target_s: f64,
    tpot_target_s: f64,
    bounds: (u32, u32),
}

/// `ceil(x)` forgiving float rounding (4.000000000000001 → 4), saturating.
fn ceil_count(x: f64) -> u32 {
    (x - 1e-9 * x.max(1.0)).ceil() as u32
}

impl Planner {
    /// The predicted rate of the next interval.
    pub fn predict(&self) -> f64 {
        match self.predictor {
            Predictor::Constant => self.rates.back().copied().unwrap_or(0.0),
            Predictor::MovingAverage if self.rates.is_empty() => 0.0,
            Predictor::MovingAverage => self.rates.iter().sum::<f64>() / self.rates.len() as f64,
        }
    }

    /// The learnt capacity per replica (rps at the SLA), if any.
    pub fn learned_rps(&self) -> Option<f64> {
        self.learned_rps
    }

    /// The latency ratio of an interval (`None`: nothing finished).
    fn latency_ratio(&self, input: &ScaleInput<'_>) -> Option<f64> {
        let ttft = input.pool.ttft_p95_s? / self.ttft_target_s;
        Some(input.pool.tpot_mean_s.map_or(ttft, |t| ttft.max(t / self.tpot_target_s)))
    }
}

impl Autoscaler for Planner {
    fn pool(&self) -> u16 {
        self.pool
    }
    fn interval(&self) -> SimDuration {
        self.interval
    }
    fn metrics(&self) -> &[MetricQuery] {
        &[]
    }
    fn decide(&mut self, input: &ScaleInput<'_>) -> u32 {
        let (min, max) = self.bounds;
        let hold = input.current.clamp(min, max);
        let rate = input.pool.arrival_rate_per_s;
        if self.rates.len() == self.window {
            self.rates.pop_front();
        }
        self.rates.push_back(if rate.is_finite() { rate.max(0.0) } else { 0.0 });
        let Some(ratio) = self.latency_ratio(input) else { return hold };
        let ready = input.ready();
        let served_rps = (ready > 0 && input.pool.interval_s > 0.0)
            .then(|| f64::from(input.pool.completed) / input.pool.interval_s / f64::from(ready));
        if let Some(x) = served_rps.filter(|_| ratio <= 1.0) {
            self.learned_rps = Some(self.learned_rps.map_or(x, |c| c.max(x)));
        }
        let capacity = self.profiled_rps.or(self.learned_rps).or(served_rps);
        let Some(capacity) = capacity.filter(|c| *c > 0.0) else { return hold };
        let correction = ratio.max(1.0);
        ceil_count(self.predict() * correction / capacity).clamp(min, max)
    }
    fn bounds(&self) -> (u32, u32) {
        self.bounds
    }
}

/// A finite number `> 0`, or a one-line error naming `key`.
fn positive(key: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{key} = {v}: must be a number > 0"))
    }
}

fn configure(v: &serde_yaml_ng::Value, ctx: &AutoscaleCtx<'_>) -> Result<Planner, String> {
    let p: Params = parse_params(v)?;
    let name = p.pool.as_deref().ok_or("`planner` needs `pool`: the pool it scales")?;
    let pool = ctx.pool_index(name)?;
    let max = p.max_replicas.ok_or("`planner` needs `max_replicas`")?;
    let min = p.min_replicas.unwrap_or(1);
    if min == 0 {
        return Err(
            "min_replicas = 0: the planner needs a replica to measure; use 1 or more".into()
        );
    }
    if max < min {
        return Err(format!("max_replicas = {max}: must be >= min_replicas ({min})"));
    }
    let interval = match p.adjustment_interval_s {
        None => DEFAULT_INTERVAL,
        Some(Seconds(s)) => Seconds(positive("adjustment_interval_s", s)?).dur(),
    };
    let predictor = p.predictor.unwrap_or_default();
    let window = match (predictor, p.window) {
        (Predictor::Constant, Some(_)) => {
            return Err("window: only the moving_average predictor has a window".into())
        }
        (Predictor::Constant, None) => 1,
        (Predictor::MovingAverage, None) => DEFAULT_WINDOW,
        (Predictor::MovingAverage, Some(0)) => {
            return Err("window = 0: a moving average needs at least 1 interval".into())
        }
        (Predictor::MovingAverage, Some(w)) => w,
    };
    let profiled_rps = p.capacity_rps.map(|c| positive("capacity_rps", c)).transpose()?;
    Ok(Planner {
        pool,
        interval,
        predictor,
        window,
        rates: VecDeque::with_capacity(window),
        profiled_rps,
        learned_rps: None,
        ttft_target_s: positive("ttft_target_s", p.ttft_target_s.unwrap_or(DEFAULT_TTFT_TARGET_S))?,
        tpot_target_s: positive("tpot_target_s", p.tpot_target_s.unwrap_or(DEFAULT_TPOT_TARGET_S))?,
        bounds: (min, max),
    })
}

fn build(v: &serde_yaml_ng::Value, ctx: &AutoscaleCtx<'_>) -> Result<Box<dyn Autoscaler>, String> {
    Ok(Box::new(configure(v, ctx)?))
}

#[cfg(test)]
mod tests {
    use super::super::{PodPhase, PodView, PoolSignals, MAX_METRICS};
    use super::*;
    use crate::time::SimTime;

    const INTERVAL_S: f64 = 180.0;

    fn planner(extra: &str) -> Planner {
        let pools = vec!["p".to_string()];
        let ctx = AutoscaleCtx::new(&pools, &[1]);
        let max = if extra.contains("max_replicas") { "" } else { ", max_replicas: 100" };
        let yaml = format!("{{ pool: p{max}{extra} }}");
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).expect("yaml");
        configure(&v, &ctx).expect("builds")
    }

    fn err(yaml: &str) -> String {
        let pools = vec!["p".to_string()];
        let ctx = AutoscaleCtx::new(&pools, &[1]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
        configure(&v, &ctx).expect_err("must be rejected")
    }

    fn ready_pods(n: u32) -> Vec<PodView> {
        let pod =
            PodView { phase: PodPhase::Ready, created: SimTime::ZERO, values: [None; MAX_METRICS] };
        vec![pod; n as usize]
    }

    /// One interval: `ready` pods, `arrivals` rps, `completed_rps` finished per second, TTFT
    /// p95 and TPOT mean.
    fn interval(
        p: &mut Planner,
        ready: u32,
        arrivals: f64,
        completed_rps: f64,
        (ttft_s, tpot_s): (f64, f64),
    ) -> u32 {
        let pods = ready_pods(ready);
        let pool = PoolSignals {
            arrival_rate_per_s: arrivals,
            completed: (completed_rps * INTERVAL_S).round() as u32,
            ttft_mean_s: Some(ttft_s),
            ttft_p95_s: Some(ttft_s),
            tpot_mean_s: Some(tpot_s),
            interval_s: INTERVAL_S,
            ..Default::default()
        };
        p.decide(&ScaleInput::new(SimTime::ZERO, ready, &pods).with_pool(pool))
    }

    const MET: (f64, f64) = (0.2, 0.02);

    #[test]
    fn fixed_capacity_gives_the_exact_ceiling() {
        let mut p = planner(", capacity_rps: 4");
        assert_eq!(interval(&mut p, 2, 13.0, 8.0, MET), 4); // ceil(3.25)
        assert_eq!(interval(&mut p, 4, 12.0, 12.0, MET), 3); // exactly 3
        assert_eq!(interval(&mut p, 3, 0.5, 0.5, MET), 1); // ceil(0.125)
                                                           // Moving average of 10, 20, 30 → 20 → 5; the oldest leaves a window of 3.
        let mut p = planner(", capacity_rps: 4, predictor: moving_average, window: 3");
        for r in [10.0, 20.0] {
            interval(&mut p, 1, r, r, MET);
        }
        assert_eq!(interval(&mut p, 1, 30.0, 30.0, MET), 5);
        assert_eq!(interval(&mut p, 1, 40.0, 40.0, MET), 8); // (20 + 30 + 40) / 3 / 4 = 7.5
                                                             // Bounds clamp.
        let mut p = planner(", capacity_rps: 4, min_replicas: 2, max_replicas: 6");
        assert_eq!(interval(&mut p, 2, 1.0, 1.0, MET), 2);
        assert_eq!(interval(&mut p, 2, 100.0, 8.0, MET), 6);
    }

    #[test]
    fn learned_capacity_converges_to_the_real_one_from_below() {
        // Four replicas of k = 2.5 rps each; arrivals ramp 0.5 → 15 rps. Completions are
        // min(arrivals, k × ready), and the SLA holds exactly while arrivals <= 10 (else the
        // queue grows: TTFT 2 s). The estimate is the best compliant per-replica throughput:
        // arrivals / 4 up to 10 / 4 = k.
        let k = 2.5;
        let mut p = planner("");
        for step in 1..=30 {
            let arrivals = 0.5 * f64::from(step);
            let served = arrivals.min(k * 4.0);
            let latency = if arrivals <= k * 4.0 { MET } else { (2.0, 0.02) };
            interval(&mut p, 4, arrivals, served, latency);
            let learned = p.learned_rps().expect("learns from the first interval");
            assert!(learned <= k + 1e-12, "a lower bound: {learned}");
            if arrivals >= k * 4.0 {
                assert!((learned - k).abs() < 1e-12, "step {step}: {learned}");
            }
        }
        // With the estimate learnt, a compliant 12 rps asks for ceil(12 / 2.5) = 5.
        assert_eq!(interval(&mut p, 5, 12.0, 12.0, MET), 5);
    }

    #[test]
    fn an_sla_miss_raises_replicas_by_the_miss_ratio() {
        // Paired: the same 12 rps on capacity 4 → 3 replicas when the SLA is met.
        let mut p = planner(", capacity_rps: 4");
        assert_eq!(interval(&mut p, 3, 12.0, 12.0, MET), 3);
        // TTFT p95 1.0 s against 0.5 s: κ = 2 → ceil(12 × 2 / 4) = 6.
        assert_eq!(interval(&mut p, 3, 12.0, 12.0, (1.0, 0.02)), 6);
        // TPOT 0.075 s against 0.05 s: κ = 1.5 → ceil(4.5) = 5; the larger miss wins.
        assert_eq!(interval(&mut p, 3, 12.0, 12.0, (0.6, 0.075)), 5);
        // Beating the targets never removes replicas below the plain ceiling (κ >= 1).
        assert_eq!(interval(&mut p, 3, 12.0, 12.0, (0.01, 0.001)), 3);
        // Learnt mode: an overloaded first interval (1 replica serving 2.5 of 6 rps, TTFT
        // 2 s → κ = 4) plans with its own throughput: ceil(6 × 4 / 2.5) = 10.
        let mut p = planner("");
        assert_eq!(interval(&mut p, 1, 6.0, 2.5, (2.0, 0.02)), 10);
        assert_eq!(p.learned_rps(), None, "a missed SLA teaches no capacity");
    }

    #[test]
    fn an_idle_interval_holds_as_dynamo_skips_it_but_feeds_the_predictor() {
        let mut p = planner(", capacity_rps: 4, predictor: moving_average, window: 2");
        let pods = ready_pods(3);
        // Nothing finished (no TTFT): hold 3, though 8 rps arrived.
        let idle =
            PoolSignals { arrival_rate_per_s: 8.0, interval_s: INTERVAL_S, ..Default::default() };
        assert_eq!(p.decide(&ScaleInput::new(SimTime::ZERO, 3, &pods).with_pool(idle)), 3);
        // The 8 rps was recorded: (8 + 16) / 2 = 12 rps → 3 (the last rate alone: 16 → 4).
        assert_eq!(interval(&mut p, 3, 16.0, 16.0, MET), 3);
        // Without profiling and no ready pod there is nothing to learn from: hold.
        let mut p = planner("");
        assert_eq!(interval(&mut p, 0, 5.0, 5.0, MET), 1); // current 0 clamped to min 1
        assert_eq!(p.learned_rps(), None);
    }

    #[test]
    fn defaults_are_dynamos() {
        let p = planner("");
        assert_eq!(p.interval(), SimDuration::from_secs(180));
        assert_eq!((p.ttft_target_s, p.tpot_target_s), (0.5, 0.05));
        assert_eq!((p.bounds(), p.predictor), ((1, 100), Predictor::Constant));
        assert!(p.metrics().is_empty());
    }

    #[test]
    fn config_errors_are_one_line_and_name_the_field() {
        let cases = [
            ("{ max_replicas: 4 }", "pool"),
            ("{ pool: q, max_replicas: 4 }", "q"),
            ("{ pool: p }", "max_replicas"),
            ("{ pool: p, max_replicas: 4, min_replicas: 0 }", "min_replicas"),
            ("{ pool: p, max_replicas: 4, min_replicas: 5 }", "max_replicas"),
            ("{ pool: p, max_replicas: 4, capacity_rps: 0 }", "capacity_rps"),
            ("{ pool: p, max_replicas: 4, ttft_target_s: -1 }", "ttft_target_s"),
            ("{ pool: p, max_replicas: 4, tpot_target_s: .nan }", "tpot_target_s"),
            ("{ pool: p, max_replicas: 4, adjustment_interval_s: 0 }", "adjustment_interval_s"),
            ("{ pool: p, max_replicas: 4, window: 3 }", "window"),
            ("{ pool: p, max_replicas: 4, predictor: moving_average, window: 0 }", "window"),
            ("{ pool: p, max_replicas: 4, predictor: arima }", "arima"),
            ("{ pool: p, max_replicas: 4, itl_target_s: 0.05 }", "itl_target_s"),
        ];
        for (yaml, field) in cases {
            let e = err(yaml);
            assert!(e.contains(field), "{yaml}: {e}");
            assert!(!e.contains('\n'), "{yaml}: {e}");
        }
    }

    #[test]
    fn registry_entry_builds() {
        let pools = vec!["p".to_string()];
        let ctx = AutoscaleCtx::new(&pools, &[1]);
        let v: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("{ pool: p, max_replicas: 3, adjustment_interval_s: 60 }")
                .expect("yaml");
        let a = (ENTRY.build)(&v, &ctx).expect("builds");
        assert_eq!((a.bounds(), a.interval()), ((1, 3), SimDuration::from_secs(60)));
    }
}
