//! `kpa`: the Knative Pod Autoscaler (Knative Serving's `kpa.autoscaling.knative.dev` class).
//!
//! ## What it does
//!
//! Every tick (`tick_interval_s`, 2 s) the engine hands over each pod's latest scraped value of
//! one metric: in-flight requests (`metric: concurrency`, Knative's default) or arriving
//! requests per second (`metric: rps`). The sum is the pool's observed total for this tick. It
//! goes into two bucketed histories, and their averages give `stable` (over `stable_window_s`,
//! 60 s) and `panic` (over `panic_window_percentage` of it, 10 % = 6 s). Then, as in Knative's
//! decider:
//!
//! ```text
//! ready    = max(1, ready pods)
//! max_up   = ceil(max_scale_up_rate × ready)
//! max_down = floor(ready / max_scale_down_rate)
//! dspc     = ceil(stable / target)
//! dppc     = ceil(panic / target)
//! desired_stable = clamp(dspc, max_down, max_up)
//! desired_panic  = clamp(dppc, max_down, max_up)
//! activation_scale > 1 lifts a non-zero dspc / dppc count to at least activation_scale
//! over     = dppc / ready >= panic_threshold_percentage / 100
//! over: enter panic, or extend it (panic time = now)
//! not over and panic time + stable window < now: leave panic, forget the panic high-water mark
//! in panic: desired = max(desired_stable, desired_panic), never below the panic high-water mark
//! scale_down_delay_s > 0: desired = max of the desired counts over that window
//! ```
//!
//! There is no tolerance band (unlike the HPA's 10 % and AIBrix's KPA): a total 1 % above a
//! multiple of the target already adds a pod. A new autoscaler starts in panic, with the
//! high-water mark at the ready count, when more than one pod is ready.
//!
//! The result then goes through the PodAutoscaler reconciler's scaler:
//! - it is clamped to `[min_scale, max_scale]`; until `initial_scale` (when > 1) pods have been
//!   ready once, `min_scale` is raised to `initial_scale`;
//! - a zero goes through Knative's scale-to-zero gate:
//!   - `enable_scale_to_zero: false` → 1;
//!   - Active (pods ready) for less than a stable window → 1;
//!   - Active for longer → the PA turns Inactive and `spec.replicas` is left alone;
//!   - Inactive for the grace period (or the pod retention period if longer) → 0;
//!   - still Activating (wanted pods, none ready yet) → left alone, and 0 only after the
//!     activation timeout (`progress_deadline_s` + Knative's 30 s buffer).
//!
//! The Active / Activating / Inactive condition follows the reconciler's table, ready pods
//! against `max(min_scale, 1)` (`max(min_scale, initial_scale)` before initialisation). So a
//! pool that loses its traffic keeps one pod for about a stable window plus the grace period:
//! the stable average has to reach 0 first, which takes a whole window, and then the grace
//! period runs (60 s + 30 s with the defaults).
//!
//! When the metric is missing at every pod (nothing scraped), the decider has no data and its
//! previous decision stands, as in Knative. Until the first sample arrives, `spec.replicas` is
//! kept, clamped to the bounds (Knative: -1, metrics not collected yet).
//!
//! ## Engine contract
//!
//! - [`Autoscaler::metrics`] asks for one metric with window 0 (the latest scrape):
//!   [`SimMetric::Concurrency`] or [`SimMetric::RequestRate`]. `values[0] == None` is a missing
//!   sample (the pod is not ready, not scraped).
//! - The observed total is the sum of `values[0]` over `Ready` pods plus the requests the
//!   activator holds ([`PoolSignals::held`](super::PoolSignals)). `Deleting` and `Failed`
//!   pods are left out, as Knative scrapes only the endpoints of the private service.
//! - **Demand at zero pods.** In Knative, when a revision has no ready pods the activator
//!   holds the requests and reports them as concurrency. It also pokes the decider, so the
//!   first tick comes at once and any non-zero value gives `dspc >= 1`. The engine's activator
//!   (`gateway::activator`, on for `kpa`) holds them the same way and reports the count in
//!   `input.pool.held`. Any positive value then scales to at least 1 (or `activation_scale`)
//!   at the next tick, up to one tick (2 s) later than Knative's poke.
//!
//! ## Configuration (snake_case, Knative's names)
//!
//! | key | default | Knative |
//! |---|---|---|
//! | `pool` | required | the revision |
//! | `metric` | `concurrency` | `autoscaling.knative.dev/metric` (`concurrency`, `rps`) |
//! | `target` | 100 (`concurrency`), 200 (`rps`), × utilisation | `autoscaling.knative.dev/target` |
//! | `container_concurrency` | 0 (no limit) | `spec.containerConcurrency` (target only) |
//! | `target_utilization_percentage` | 70 (1..100) | `target-utilization-percentage` |
//! | `stable_window_s` | 60 (6..3600, whole seconds) | `stable-window`, `window` |
//! | `panic_window_percentage` | 10 (1..100) | `panic-window-percentage` |
//! | `panic_threshold_percentage` | 200 (110..1000) | `panic-threshold-percentage` |
//! | `max_scale_up_rate` | 1000 (> 1) | `max-scale-up-rate` |
//! | `max_scale_down_rate` | 2 (> 1) | `max-scale-down-rate` |
//! | `tick_interval_s` | 2 | the decider's tick interval (a constant in Knative) |
//! | `enable_scale_to_zero` | true | `enable-scale-to-zero` |
//! | `scale_to_zero_grace_period_s` | 30 (> 0) | `scale-to-zero-grace-period` |
//! | `scale_to_zero_pod_retention_period_s` | 0 | `scale-to-zero-pod-retention-period` |
//! | `scale_down_delay_s` | 0 (0..3600, whole seconds) | `scale-down-delay` |
//! | `min_scale` | 0 | `min-scale` |
//! | `max_scale` | required, > 0 | `max-scale` |
//! | `initial_scale` | 1 | `initial-scale` |
//! | `allow_zero_initial_scale` | false | `allow-zero-initial-scale` |
//! | `activation_scale` | 1 | `autoscaling.knative.dev/activation-scale` |
//! | `progress_deadline_s` | 600 | config-deployment `progress-deadline` |
//!
//! The per-pod target the decider divides by is resolved as Knative's `ResolveMetricTarget`
//! does. Start from `total`: `target` if given, otherwise a positive `container_concurrency`
//! (concurrency only), otherwise 100 for concurrency and 200 for rps. With concurrency and
//! both `target` and `container_concurrency` set, `total` is the smaller of the two. The
//! decider's target is then `max(0.01, total × target_utilization_percentage / 100)`. That is
//! 70 for concurrency and 140 rps for rps with the defaults. Knative applies the utilisation
//! to rps too (knative/serving issue #5975). For a literal per-pod target, set
//! `target_utilization_percentage: 100`.
//!
//! `max_scale` is required. Knative's 0 means unbounded, but the engine pre-allocates
//! `bounds().1` pods ([`Autoscaler::bounds`]), so that bound must be finite. The pool's
//! initial `replicas` must not exceed it.
//!
//! ## Sources (knative/serving)
//!
//! - `pkg/autoscaler/scaling/autoscaler.go` (`Scale`, `newAutoscaler`): rates, dspc/dppc,
//!   activation scale, panic entry/extension/exit, `maxPanicPods`, the scale-down delay
//!   window, starting in panic.
//! - `pkg/autoscaler/scaling/multiscaler.go`: the 2 s tick, `Poke` when a stat arrives at scale 0.
//! - `pkg/autoscaler/metrics/collector.go`: stable and panic bucket histories of the total.
//! - `pkg/autoscaler/aggregation/bucketing.go` (`WindowAverage`): a partial window right after
//!   the first write, or after the last write; gaps count as zero; the history resets after a
//!   whole window without writes; averages truncated to 6 decimals.
//! - `pkg/autoscaler/aggregation/max/timewindow.go`, `max/window.go`: the scale-down delay
//!   (max over a window of ticks).
//! - `pkg/autoscaler/config/config.go`, `pkg/apis/autoscaling/register.go`: defaults and
//!   ranges (window 6 s..1 h, panic threshold 110..1000 %, rates > 1, target >= 0.01).
//! - `pkg/reconciler/autoscaling/resources/target.go` (`ResolveMetricTarget`).
//! - `pkg/reconciler/autoscaling/kpa/scaler.go` (`scale`, `applyBounds`, `handleScaleToZero`)
//!   and `kpa/kpa.go` (`computeActiveCondition`, `activeThreshold`): bounds, initial scale,
//!   scale-to-zero gate, activation timeout.
//! - Defaults: `config/core/configmaps/autoscaler.yaml`, summarised in the shared
//!   `policies.md` §9.2.
//!
//! ## Simplifications
//!
//! - **Buckets are ticks.** Knative records a scrape per second into 1 s buckets and averages
//!   60 (stable) and 6 (panic) of them. Here there is one sample per 2 s tick, averaged over
//!   `ceil(window / tick)` buckets: 30 and 3. The result is the same when the value holds
//!   steady within a tick.
//! - **Samples are instantaneous.** The queue-proxy reports the time-averaged concurrency of
//!   each second. Here it is the latest scrape at the tick (query window 0).
//! - **No activator, burst capacity or SKS mode.** `target-burst-capacity` and the excess burst
//!   capacity are not modelled. The activator is assumed to be in the path as soon as the PA
//!   turns Inactive, so the grace period counts from then.
//! - **`max_scale` is required** (see above). There is no `max-scale-limit`.
//! - **When conditions are evaluated.** The reconciler re-evaluates on every decision rather
//!   than on Kubernetes events. "Starts in panic" is decided at the first decision, because
//!   the ready count is not known at build time.
//! - `container_concurrency` only sets the target. The queue-proxy's hard limit is not
//!   enforced here.

use super::{
    parse_params, AutoscaleCtx, Autoscaler, AutoscalerEntry, MetricQuery, PodPhase, ScaleInput,
    Seconds, SimMetric,
};
use crate::time::{SimDuration, SimTime};
use serde::Deserialize;
use std::collections::VecDeque;

/// Registry entry.
pub static ENTRY: AutoscalerEntry = AutoscalerEntry {
    name: "kpa",
    summary: "Knative KPA: concurrency or rps over 60 s stable / 6 s panic windows, scale to zero",
    build,
};

/// `container-concurrency-target-default`.
const CONCURRENCY_TOTAL_DEFAULT: f64 = 100.0;
/// `requests-per-second-target-default`.
const RPS_TOTAL_DEFAULT: f64 = 200.0;
/// `container-concurrency-target-percentage` (and the fixed `TargetUtilization` for rps).
const TARGET_UTILIZATION_PERCENTAGE_DEFAULT: f64 = 70.0;
/// `autoscaling.TargetMin`.
const TARGET_MIN: f64 = 0.01;
/// Largest `containerConcurrency` Knative accepts (`container-concurrency-max-limit`).
const CONTAINER_CONCURRENCY_MAX: u32 = 1000;
/// `autoscaling.WindowMin` / `WindowMax`, seconds.
const STABLE_WINDOW_RANGE_S: (f64, f64) = (6.0, 3600.0);
/// `PanicWindowPercentageMin` / `Max`.
const PANIC_WINDOW_PERCENTAGE_RANGE: (f64, f64) = (1.0, 100.0);
/// `PanicThresholdPercentageMin` / `Max`.
const PANIC_THRESHOLD_PERCENTAGE_RANGE: (f64, f64) = (110.0, 1000.0);
/// Largest `scale-down-delay`, seconds.
const SCALE_DOWN_DELAY_MAX_S: f64 = 3600.0;
/// The reconciler's `activationTimeoutBuffer`, added to the progress deadline.
const ACTIVATION_TIMEOUT_BUFFER_S: f64 = 30.0;
/// `bucketing.go` truncates window averages to this many decimals.
const AVERAGE_DECIMALS_SCALE: f64 = 1e6;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MetricName {
    #[default]
    Concurrency,
    Rps,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    pool: Option<String>,
    #[serde(default)]
    metric: MetricName,
    target: Option<f64>,
    container_concurrency: Option<u32>,
    target_utilization_percentage: Option<f64>,
    stable_window_s: Option<Seconds>,
    panic_window_percentage: Option<f64>,
    panic_threshold_percentage: Option<f64>,
    max_scale_up_rate: Option<f64>,
    max_scale_down_rate: Option<f64>,
    tick_interval_s: Option<Seconds>,
    enable_scale_to_zero: Option<bool>,
    scale_to_zero_grace_period_s: Option<Seconds>,
    scale_to_zero_pod_retention_period_s: Option<Seconds>,
    scale_down_delay_s: Option<Seconds>,
    min_scale: Option<u32>,
    max_scale: Option<u32>,
    initial_scale: Option<u32>,
    allow_zero_initial_scale: Option<bool>,
    activation_scale: Option<u32>,
    progress_deadline_s: Option<Seconds>,
}

/// A finite number, or a one-line error naming `key`.
fn finite(key: &str, v: f64) -> Result<f64, String> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{key} = {v}: must be a finite number"))
    }
}

/// `v` within `[lo, hi]`, or a one-line error.
fn within(key: &str, v: f64, (lo, hi): (f64, f64)) -> Result<f64, String> {
    if finite(key, v)? < lo || v > hi {
        return Err(format!("{key} = {v}: must be in [{lo}, {hi}]"));
    }
    Ok(v)
}

/// `v` in whole seconds, or a one-line error (Knative: "at most second precision").
fn whole_seconds(key: &str, v_s: f64) -> Result<f64, String> {
    if v_s.fract() != 0.0 {
        return Err(format!("{key} = {v_s}: must be a whole number of seconds"));
    }
    Ok(v_s)
}

/// The decider's per-pod target, resolved as Knative's `ResolveMetricTarget`.
fn resolve_target(p: &Params) -> Result<f64, String> {
    let cc = p.container_concurrency.unwrap_or(0);
    if cc > CONTAINER_CONCURRENCY_MAX {
        return Err(format!(
            "container_concurrency = {cc}: must be in [0, {CONTAINER_CONCURRENCY_MAX}] \
             (0: no limit)"
        ));
    }
    if cc > 0 && p.metric == MetricName::Rps {
        return Err("container_concurrency sets the concurrency target only; with `metric: rps` \
                    set `target`"
            .into());
    }
    let mut total = match p.metric {
        MetricName::Rps => RPS_TOTAL_DEFAULT,
        MetricName::Concurrency if cc > 0 => f64::from(cc),
        MetricName::Concurrency => CONCURRENCY_TOTAL_DEFAULT,
    };
    if let Some(t) = p.target {
        if finite("target", t)? < TARGET_MIN {
            return Err(format!("target = {t}: must be at least {TARGET_MIN}"));
        }
        total = if cc > 0 { t.min(f64::from(cc)) } else { t };
    }
    let utilization_pct = within(
        "target_utilization_percentage",
        p.target_utilization_percentage.unwrap_or(TARGET_UTILIZATION_PERCENTAGE_DEFAULT),
        (1.0, 100.0),
    )?;
    Ok((total * utilization_pct / 100.0).max(TARGET_MIN))
}

/// Whole buckets of `tick` covering `window` (rounded up, at least one).
fn buckets(window: SimDuration, tick: SimDuration) -> u64 {
    window.as_nanos().div_ceil(tick.as_nanos()).max(1)
}

fn configure(v: &serde_yaml_ng::Value, ctx: &AutoscaleCtx<'_>) -> Result<Kpa, String> {
    let p: Params = parse_params(v)?;
    let pool_name = p.pool.as_deref().ok_or("`kpa` needs `pool`: the pool it scales")?;
    let pool = ctx.pool_index(pool_name)?;
    let target = resolve_target(&p)?;

    let stable_window_s = whole_seconds(
        "stable_window_s",
        within("stable_window_s", p.stable_window_s.map_or(60.0, |s| s.0), STABLE_WINDOW_RANGE_S)?,
    )?;
    let panic_window_pct = within(
        "panic_window_percentage",
        p.panic_window_percentage.unwrap_or(10.0),
        PANIC_WINDOW_PERCENTAGE_RANGE,
    )?;
    let panic_threshold_pct = within(
        "panic_threshold_percentage",
        p.panic_threshold_percentage.unwrap_or(200.0),
        PANIC_THRESHOLD_PERCENTAGE_RANGE,
    )?;
    let max_scale_up_rate = finite("max_scale_up_rate", p.max_scale_up_rate.unwrap_or(1000.0))?;
    if max_scale_up_rate <= 1.0 {
        return Err(format!("max_scale_up_rate = {max_scale_up_rate}: must be greater than 1"));
    }
    let max_scale_down_rate = finite("max_scale_down_rate", p.max_scale_down_rate.unwrap_or(2.0))?;
    if max_scale_down_rate <= 1.0 {
        return Err(format!("max_scale_down_rate = {max_scale_down_rate}: must be greater than 1"));
    }
    let tick_s =
        within("tick_interval_s", p.tick_interval_s.map_or(2.0, |s| s.0), (0.001, stable_window_s))
            .map_err(|e| format!("{e} (at most the stable window)"))?;
    let grace_s = finite(
        "scale_to_zero_grace_period_s",
        p.scale_to_zero_grace_period_s.map_or(30.0, |s| s.0),
    )?;
    if grace_s <= 0.0 {
        return Err(format!("scale_to_zero_grace_period_s = {grace_s}: must be positive"));
    }
    let retention_s = finite(
        "scale_to_zero_pod_retention_period_s",
        p.scale_to_zero_pod_retention_period_s.map_or(0.0, |s| s.0),
    )?;
    if retention_s < 0.0 {
        return Err(format!(
            "scale_to_zero_pod_retention_period_s = {retention_s}: cannot be negative"
        ));
    }
    let delay_s = whole_seconds(
        "scale_down_delay_s",
        within(
            "scale_down_delay_s",
            p.scale_down_delay_s.map_or(0.0, |s| s.0),
            (0.0, SCALE_DOWN_DELAY_MAX_S),
        )?,
    )?;
    let progress_deadline_s =
        finite("progress_deadline_s", p.progress_deadline_s.map_or(600.0, |s| s.0))?;
    if progress_deadline_s <= 0.0 {
        return Err(format!("progress_deadline_s = {progress_deadline_s}: must be positive"));
    }

    let max_scale = p.max_scale.unwrap_or(0);
    if max_scale == 0 {
        return Err("max_scale is required and must be > 0: the simulator pre-allocates \
                    max_scale pods, so Knative's 0 (unbounded) is not accepted"
            .into());
    }
    let min_scale = p.min_scale.unwrap_or(0);
    if min_scale > max_scale {
        return Err(format!("min_scale = {min_scale}: must not exceed max_scale = {max_scale}"));
    }
    let initial_scale = p.initial_scale.unwrap_or(1);
    if initial_scale == 0 && !p.allow_zero_initial_scale.unwrap_or(false) {
        return Err("initial_scale = 0: must be at least 1 unless allow_zero_initial_scale".into());
    }
    let activation_scale = p.activation_scale.unwrap_or(1);
    if activation_scale == 0 || activation_scale > max_scale {
        return Err(format!(
            "activation_scale = {activation_scale}: must be in [1, max_scale = {max_scale}]"
        ));
    }
    if let Some(&n) = ctx.initial.get(usize::from(pool)) {
        if n > max_scale {
            return Err(format!(
                "pool `{pool_name}` starts with {n} replicas, above max_scale = {max_scale}"
            ));
        }
    }

    let tick = SimDuration::from_secs_f64(tick_s);
    let stable_window = SimDuration::from_secs_f64(stable_window_s);
    let panic_window = SimDuration::from_secs_f64(stable_window_s * panic_window_pct / 100.0);
    let delay = SimDuration::from_secs_f64(delay_s);
    let metric = match p.metric {
        MetricName::Concurrency => SimMetric::Concurrency,
        MetricName::Rps => SimMetric::RequestRate,
    };
    Ok(Kpa {
        pool,
        queries: [MetricQuery { metric, window: SimDuration::ZERO, max: false }],
        tick,
        target,
        stable_window,
        panic_threshold: panic_threshold_pct / 100.0,
        max_scale_up_rate,
        max_scale_down_rate,
        enable_scale_to_zero: p.enable_scale_to_zero.unwrap_or(true),
        scale_to_zero_wait: SimDuration::from_secs_f64(grace_s.max(retention_s)),
        activation_timeout: SimDuration::from_secs_f64(
            progress_deadline_s + ACTIVATION_TIMEOUT_BUFFER_S,
        ),
        min_scale,
        max_scale,
        initial_scale,
        activation_scale,
        stable: WindowBuckets::new(buckets(stable_window, tick)),
        panic: WindowBuckets::new(buckets(panic_window, tick)),
        delay: (delay > SimDuration::ZERO).then(|| MaxWindow::new(buckets(delay, tick))),
        started: false,
        panic_time: None,
        max_panic_pods: 0,
        want: None,
        activity: Activity::Activating,
        activity_since: SimTime::ZERO,
        initialized: false,
    })
}

fn build(v: &serde_yaml_ng::Value, ctx: &AutoscaleCtx<'_>) -> Result<Box<dyn Autoscaler>, String> {
    Ok(Box::new(configure(v, ctx)?))
}

/// Knative's `TimedFloat64Buckets` with one bucket per tick.
///
/// Several samples in one bucket are averaged. The window average covers the buckets from
/// `max(first write, now − window + 1)` to the last write. Gaps inside count as zero. After a
/// whole window without a write the history restarts.
#[derive(Debug, Clone)]
struct WindowBuckets {
    len_buckets: u64,
    /// (bucket index, sum of samples, samples), ascending, all within the window that ends at
    /// `last`.
    buckets: VecDeque<(u64, f64, u32)>,
    first: u64,
    last: Option<u64>,
}

impl WindowBuckets {
    fn new(len_buckets: u64) -> WindowBuckets {
        WindowBuckets { len_buckets, buckets: VecDeque::new(), first: 0, last: None }
    }

    fn record(&mut self, index: u64, value: f64) {
        // Decisions come in time order; a late sample joins the newest bucket.
        let index = self.last.map_or(index, |last| index.max(last));
        if self.last.is_none_or(|last| index - last >= self.len_buckets) {
            self.buckets.clear();
            self.first = index;
        }
        self.last = Some(index);
        match self.buckets.back_mut() {
            Some(b) if b.0 == index => {
                b.1 += value;
                b.2 += 1;
            }
            _ => self.buckets.push_back((index, value, 1)),
        }
        while self.buckets.front().is_some_and(|b| b.0 + self.len_buckets <= index) {
            self.buckets.pop_front();
        }
    }

    /// No write within the window ending at `now` (Knative: no data, no decision).
    fn is_empty(&self, now: u64) -> bool {
        self.last.is_none_or(|last| now.saturating_sub(last) > self.len_buckets)
    }

    fn average(&self, now: u64) -> f64 {
        let Some(last) = self.last else { return 0.0 };
        let now = now.max(last);
        if now - last >= self.len_buckets {
            return 0.0;
        }
        let lo = self.first.max((now + 1).saturating_sub(self.len_buckets));
        let total: f64 =
            self.buckets.iter().filter(|b| b.0 >= lo).map(|b| b.1 / f64::from(b.2)).sum();
        let avg = total / (last - lo + 1) as f64;
        (avg * AVERAGE_DECIMALS_SCALE).floor() / AVERAGE_DECIMALS_SCALE
    }
}

/// Knative's `max.TimeWindow`: the largest value recorded in the last `len_buckets` ticks
/// (the current one included), kept as a descending deque.
#[derive(Debug, Clone)]
struct MaxWindow {
    len_buckets: u64,
    maxima: VecDeque<(u64, u32)>,
}

impl MaxWindow {
    fn new(len_buckets: u64) -> MaxWindow {
        MaxWindow { len_buckets, maxima: VecDeque::new() }
    }

    /// Records `value` at `index`; returns the window's maximum.
    fn record(&mut self, index: u64, value: u32) -> u32 {
        let mut value = value;
        while let Some(&(i, v)) = self.maxima.back() {
            if i == index {
                value = value.max(v);
            } else if v > value {
                break;
            }
            self.maxima.pop_back();
        }
        while self.maxima.front().is_some_and(|&(i, _)| i + self.len_buckets <= index) {
            self.maxima.pop_front();
        }
        self.maxima.push_back((index, value));
        self.maxima.front().map_or(value, |&(_, v)| v)
    }
}

/// The PodAutoscaler's `Active` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activity {
    /// Pods wanted, fewer than the active threshold ready (`Active=Unknown`).
    Activating,
    /// Enough pods ready (`Active=True`).
    Active,
    /// No traffic; the activator is in the path (`Active=False`).
    Inactive,
}

struct Kpa {
    pool: u16,
    queries: [MetricQuery; 1],
    tick: SimDuration,
    /// Per-pod target the totals are divided by.
    target: f64,
    stable_window: SimDuration,
    /// `panic_threshold_percentage / 100`.
    panic_threshold: f64,
    max_scale_up_rate: f64,
    max_scale_down_rate: f64,
    enable_scale_to_zero: bool,
    /// `max(scale_to_zero_grace_period, scale_to_zero_pod_retention_period)`.
    scale_to_zero_wait: SimDuration,
    /// Progress deadline + 30 s.
    activation_timeout: SimDuration,
    min_scale: u32,
    max_scale: u32,
    initial_scale: u32,
    activation_scale: u32,
    stable: WindowBuckets,
    panic: WindowBuckets,
    delay: Option<MaxWindow>,
    /// Whether the first decision has run (start-in-panic check).
    started: bool,
    /// Last time the panic threshold was crossed, while in panic.
    panic_time: Option<SimTime>,
    /// Highest count desired during this panic.
    max_panic_pods: u32,
    /// The decider's last valid decision (`None`: no data yet, Knative's -1).
    want: Option<u32>,
    activity: Activity,
    /// When `activity` last changed (the condition's transition time).
    activity_since: SimTime,
    /// Whether the initial scale has been reached once (`ScaleTargetInitialized`).
    initialized: bool,
}

/// Sum of the metric over the ready pods that are scraped, plus the activator's held
/// requests; `None` when there is neither a sample nor held demand.
fn observed_total(input: &ScaleInput<'_>) -> Option<f64> {
    let mut total = (input.pool.held > 0).then_some(f64::from(input.pool.held));
    for pod in input.pods {
        if pod.phase == PodPhase::Ready {
            if let Some(v) = pod.values[0].filter(|v| v.is_finite()) {
                *total.get_or_insert(0.0) += v.max(0.0);
            }
        }
    }
    total
}

impl Kpa {
    /// The decider (`autoscaler.go` `Scale`): `None` when there is no data in the stable
    /// window.
    fn decider(&mut self, now: SimTime, index: u64, ready_pods: u32) -> Option<u32> {
        if self.stable.is_empty(index) {
            return None;
        }
        let stable = self.stable.average(index);
        let panic = self.panic.average(index);
        let ready = f64::from(ready_pods.max(1));
        let max_up = (self.max_scale_up_rate * ready).ceil();
        let max_down = (ready / self.max_scale_down_rate).floor();
        let dspc = (stable / self.target).ceil();
        let dppc = (panic / self.target).ceil();
        // Integral values in [0, max_up]; `as` saturates at u32::MAX.
        let mut desired_stable = dspc.max(max_down).min(max_up) as u32;
        let mut desired_panic = dppc.max(max_down).min(max_up) as u32;
        if self.activation_scale > 1 {
            if dspc > 0.0 {
                desired_stable = desired_stable.max(self.activation_scale);
            }
            if dppc > 0.0 {
                desired_panic = desired_panic.max(self.activation_scale);
            }
        }
        let over = dppc / ready >= self.panic_threshold;
        if over {
            self.panic_time = Some(now);
        } else if self.panic_time.is_some_and(|t| t + self.stable_window < now) {
            self.panic_time = None;
            self.max_panic_pods = 0;
        }
        let mut desired = desired_stable;
        if self.panic_time.is_some() {
            desired = desired.max(desired_panic);
            self.max_panic_pods = self.max_panic_pods.max(desired);
            desired = self.max_panic_pods;
        }
        if let Some(window) = &mut self.delay {
            desired = window.record(index, desired);
        }
        Some(desired)
    }

    /// The reconciler's scaler (`scaler.go` `scale`): the replicas to apply, and the `want`
    /// the condition sees (`None`: Knative's -1, unknown).
    fn scale(&self, now: SimTime, current: u32) -> (u32, Option<u32>) {
        let mut min = self.min_scale;
        if self.initial_scale > 1 && !self.initialized {
            min = min.max(self.initial_scale);
        }
        let bound = |x: u32| x.max(min).min(self.max_scale);
        let Some(want) = self.want else { return (bound(current), None) };
        let desired = bound(want);
        if desired > 0 {
            return (desired, Some(desired));
        }
        if !self.enable_scale_to_zero {
            return (1, Some(1));
        }
        let elapsed = now.since(self.activity_since);
        match self.activity {
            Activity::Activating if elapsed >= self.activation_timeout => (0, Some(0)),
            Activity::Activating => (current, None),
            // Mark Inactive (the activator takes over), leave the replicas alone.
            Activity::Active if elapsed >= self.stable_window => (current, Some(0)),
            Activity::Active => (1, Some(1)),
            Activity::Inactive if elapsed >= self.scale_to_zero_wait => (0, Some(0)),
            Activity::Inactive => (current, Some(0)),
        }
    }

    /// The reconciler's `computeActiveCondition`.
    fn update_activity(&mut self, now: SimTime, want: Option<u32>, ready_pods: u32) {
        let threshold = if self.initialized {
            self.min_scale.max(1)
        } else {
            self.min_scale.max(self.initial_scale)
        };
        if ready_pods >= threshold {
            self.initialized = true;
        }
        let inactive = self.activity == Activity::Inactive;
        let wants_pods = want.is_some_and(|w| w > 0);
        // Knative's table: want 0 (or a zero threshold) is Inactive; an Inactive PA stays so
        // unless pods are wanted; otherwise ready pods against the threshold decide.
        let stays_inactive = inactive && !wants_pods;
        let next = if want == Some(0) || threshold == 0 || stays_inactive {
            Activity::Inactive
        } else if ready_pods < threshold {
            Activity::Activating
        } else {
            Activity::Active
        };
        if next != self.activity {
            self.activity = next;
            self.activity_since = now;
        }
    }
}

impl Autoscaler for Kpa {
    fn pool(&self) -> u16 {
        self.pool
    }
    /// The queue-proxies report every second (Knative's metric collector scrapes at 1 s).
    fn holds_requests(&self) -> bool {
        true
    }
    fn scrape_interval(&self) -> SimDuration {
        SimDuration::from_secs(1)
    }
    fn interval(&self) -> SimDuration {
        self.tick
    }
    fn metrics(&self) -> &[MetricQuery] {
        &self.queries
    }
    fn decide(&mut self, input: &ScaleInput<'_>) -> u32 {
        let now = input.now;
        let index = now.as_nanos() / self.tick.as_nanos().max(1);
        let ready_pods = input.ready();
        if !self.started {
            // A new autoscaler starts in panic when more than one pod is ready.
            self.started = true;
            self.max_panic_pods = ready_pods;
            if ready_pods > 1 {
                self.panic_time = Some(now);
            }
        }
        if let Some(total) = observed_total(input) {
            self.stable.record(index, total);
            self.panic.record(index, total);
        }
        if let Some(want) = self.decider(now, index, ready_pods) {
            self.want = Some(want);
        }
        let (replicas, want) = self.scale(now, input.current);
        self.update_activity(now, want, ready_pods);
        replicas
    }
    fn bounds(&self) -> (u32, u32) {
        (self.min_scale, self.max_scale)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PodView, PoolSignals, MAX_METRICS};
    use super::*;

    fn ctx() -> AutoscaleCtx<'static> {
        static POOLS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        AutoscaleCtx::new(POOLS.get_or_init(|| vec!["p".to_string()]), &[1])
    }

    /// Pool `p`, `max_scale: 100` unless `extra` sets it, and `extra`.
    fn kpa(extra: &str) -> Kpa {
        let max = if extra.contains("max_scale:") { "" } else { ", max_scale: 100" };
        let yaml = format!("{{ pool: p{max}{extra} }}");
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).expect("yaml");
        configure(&v, &ctx()).expect("builds")
    }

    fn err(yaml: &str) -> String {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
        configure(&v, &ctx()).err().expect("must be rejected")
    }

    fn pod(phase: PodPhase, value: Option<f64>) -> PodView {
        let mut values = [None; MAX_METRICS];
        values[0] = value;
        PodView { phase, created: SimTime::ZERO, values }
    }

    /// `n` ready pods, the first carrying `first` and the others `each`.
    fn ready(n: usize, first: f64, each: f64) -> Vec<PodView> {
        (0..n).map(|i| pod(PodPhase::Ready, Some(if i == 0 { first } else { each }))).collect()
    }

    fn at(k: &mut Kpa, t_s: u64, current: u32, pods: &[PodView]) -> u32 {
        held_at(k, t_s, current, pods, 0)
    }

    /// A decision with `held` requests in the activator.
    fn held_at(k: &mut Kpa, t_s: u64, current: u32, pods: &[PodView], held: u32) -> u32 {
        let input = ScaleInput::new(SimTime::ZERO + SimDuration::from_secs(t_s), current, pods)
            .with_pool(PoolSignals { held, ..PoolSignals::default() });
        k.decide(&input)
    }

    #[test]
    fn defaults_resolve_the_knative_targets_and_windows() {
        let k = kpa("");
        // 100 (container-concurrency-target-default) × 70 %.
        assert_eq!(k.target, 70.0);
        assert_eq!(k.interval(), SimDuration::from_secs(2));
        assert_eq!(k.bounds(), (0, 100));
        assert!(!k.is_fixed());
        // 60 s / 2 s ticks, and 10 % of it = 6 s / 2 s.
        assert_eq!((k.stable.len_buckets, k.panic.len_buckets), (30, 3));
        assert_eq!(
            k.metrics(),
            &[MetricQuery {
                metric: SimMetric::Concurrency,
                window: SimDuration::ZERO,
                max: false
            }]
        );
        let r = kpa(", metric: rps");
        assert_eq!(r.metrics()[0].metric, SimMetric::RequestRate);
        // requests-per-second-target-default 200 × TargetUtilization 70 % (target.go).
        assert!((r.target - 140.0).abs() < 1e-9);
        // containerConcurrency 10 × 70 % = 7; target 10 × 70 % = 7; min(20, 10) × 70 % = 7.
        assert!((kpa(", container_concurrency: 10").target - 7.0).abs() < 1e-9);
        assert!((kpa(", target: 10").target - 7.0).abs() < 1e-9);
        assert!((kpa(", target: 20, container_concurrency: 10").target - 7.0).abs() < 1e-9);
        // A literal per-pod target: utilisation 100 %.
        assert_eq!(kpa(", target: 10, target_utilization_percentage: 100").target, 10.0);
        // Stable 6 s: panic 0.6 s is less than a tick, so one bucket.
        assert_eq!(kpa(", stable_window_s: 6").panic.len_buckets, 1);
    }

    #[test]
    fn steady_load_wants_ceil_of_stable_over_target_with_no_tolerance_band() {
        let mut k = kpa("");
        // 10 pods at 70 = 700 = 10 × target. The autoscaler starts in panic (10 ready > 1)
        // with the high-water mark at 10. The desired count is 10 throughout, in panic or not.
        for t in (0..=70).step_by(2) {
            assert_eq!(at(&mut k, t, 10, &ready(10, 70.0, 70.0)), 10, "t = {t}");
        }
        // Panic (never over: dppc / ready = 10 / 10 = 1 < 2) ended at t = 62 > 0 + 60.
        assert!(k.panic_time.is_none());
        // One pod at 77: total 707, 1 % over. stable = (29·700 + 707) / 30 = 700.2333,
        // 700.2333 / 70 = 10.003, ceil = 11. The HPA's 10 % band would keep 10.
        // panic = (700 + 700 + 707) / 3 = 702.33, dppc = 11, 11 / 10 = 1.1 < 2: stable mode.
        assert_eq!(at(&mut k, 72, 10, &ready(10, 77.0, 70.0)), 11);
    }

    #[test]
    fn exact_multiples_of_the_target_stay_and_one_request_more_adds_a_pod() {
        let mut k = kpa("");
        // 9 pods at 70 = 630 = 9 × 70 exactly (f64 exact). Start-in-panic holds 9 anyway.
        for t in (0..=62).step_by(2) {
            assert_eq!(at(&mut k, t, 9, &ready(9, 70.0, 70.0)), 9, "t = {t}");
        }
        // One request more: stable = (29·630 + 631) / 30 = 630.0333, 630.0333 / 70 = 9.0005,
        // ceil = 10.
        assert_eq!(at(&mut k, 64, 9, &ready(9, 71.0, 70.0)), 10);
    }

    #[test]
    fn a_burst_panics_scales_up_at_once_and_never_down_until_a_calm_stable_window() {
        let mut k = kpa("");
        let one = |c: f64| vec![pod(PodPhase::Ready, Some(c))];
        // One ready pod, 60 in flight: ceil(60 / 70) = 1. No start-in-panic with one pod.
        for t in (0..=58).step_by(2) {
            assert_eq!(at(&mut k, t, 1, &one(60.0)), 1, "t = {t}");
        }
        // The burst: 300 at t = 60, 62, 64 (the new pods stay unready: ready = 1).
        // t = 60: panic = (60 + 60 + 300) / 3 = 140, dppc = 2, 2 / 1 >= 2, so panic.
        //   stable = (29·60 + 300) / 30 = 68, dspc = 1. desired = max(1, 2) = 2.
        assert_eq!(at(&mut k, 60, 1, &one(300.0)), 2);
        assert!(k.panic_time.is_some());
        // t = 62: panic = (60 + 300 + 300) / 3 = 220, 220 / 70 = 3.14, dppc = 4.
        assert_eq!(at(&mut k, 62, 2, &one(300.0)), 4);
        // t = 64: panic = 300, 300 / 70 = 4.29, dppc = 5. max_up = ceil(1000 × 1) does not
        // bind.
        assert_eq!(at(&mut k, 64, 4, &one(300.0)), 5);
        // Back to 60. t = 66: panic 220, dppc 4, still over, extended, but never below 5.
        // t = 68: panic 140, dppc 2, over for the last time (panic time = 68).
        // From t = 70: panic 60, dppc 1, not over. Panic lasts while 68 + 60 < now is false.
        for t in (66..=128).step_by(2) {
            assert_eq!(at(&mut k, t, 5, &one(60.0)), 5, "t = {t}");
        }
        // t = 130 > 128: out of panic. The stable window (t = 72..130) is all 60, so 1.
        // max_down = floor(1 / 2) = 0.
        assert_eq!(at(&mut k, 130, 5, &one(60.0)), 1);
        assert!(k.panic_time.is_none());
    }

    #[test]
    fn a_new_autoscaler_starts_in_panic_then_halves_at_most_per_decision() {
        let mut k = kpa("");
        // 8 ready pods, no traffic. dspc = 0, but max_down = floor(8 / 2) = 4. Starts in panic
        // with the high-water mark at 8, so 8 until panic ends at the first tick after 0 + 60.
        for t in (0..=60).step_by(2) {
            assert_eq!(at(&mut k, t, 8, &ready(8, 0.0, 0.0)), 8, "t = {t}");
        }
        // Each step: floor(ready / max_scale_down_rate 2).
        assert_eq!(at(&mut k, 62, 8, &ready(8, 0.0, 0.0)), 4);
        assert_eq!(at(&mut k, 64, 4, &ready(4, 0.0, 0.0)), 2);
        assert_eq!(at(&mut k, 66, 2, &ready(2, 0.0, 0.0)), 1);
        // With 1 ready pod, max_down = 0 and dspc = 0. The PA has been Active since t = 0,
        // 68 >= 60 s, so it turns Inactive and the pod stays for the grace period.
        assert_eq!(at(&mut k, 68, 1, &ready(1, 0.0, 0.0)), 1);
        assert_eq!(k.activity, Activity::Inactive);
    }

    #[test]
    fn max_scale_up_rate_caps_each_step() {
        // Default 1000: from 1 ready pod at 700 straight to ceil(700 / 70) = 10.
        assert_eq!(at(&mut kpa(""), 0, 1, &ready(1, 700.0, 0.0)), 10);
        // Rate 2: max_up = ceil(2 × ready). dspc = dppc = 10 are clamped to 2, then to 4 with 2
        // ready, then to 8 with 4 ready, then 10.
        let mut k = kpa(", max_scale_up_rate: 2");
        assert_eq!(at(&mut k, 0, 1, &ready(1, 700.0, 0.0)), 2);
        assert_eq!(at(&mut k, 2, 2, &ready(2, 350.0, 350.0)), 4);
        assert_eq!(at(&mut k, 4, 4, &ready(4, 175.0, 175.0)), 8);
        assert_eq!(at(&mut k, 6, 8, &ready(8, 87.5, 87.5)), 10);
    }

    #[test]
    fn scale_to_zero_waits_for_an_idle_stable_window_then_the_grace_period() {
        let mut k = kpa("");
        let one = |c: f64| vec![pod(PodPhase::Ready, Some(c))];
        // 10 in flight until t = 20: 1 pod (dppc 1, never panics).
        for t in (0..=20).step_by(2) {
            assert_eq!(at(&mut k, t, 1, &one(10.0)), 1);
        }
        // Idle from t = 22. The stable average is still > 0 while t = 20 is in the window:
        // buckets (t − 60, t], so until t = 78. At t = 80 it is 0 and the decider wants 0.
        // Active since t = 0 (>= 60 s), so the PA turns Inactive at t = 80 and keeps the pod.
        for t in (22..=80).step_by(2) {
            assert_eq!(at(&mut k, t, 1, &one(0.0)), 1, "t = {t}");
        }
        assert_eq!(k.activity, Activity::Inactive);
        // Grace period 30 s from t = 80: the pod stays through t = 108.
        for t in (82..=108).step_by(2) {
            assert_eq!(at(&mut k, t, 1, &one(0.0)), 1, "t = {t}");
        }
        // t = 110: 110 − 80 = 30 >= 30: zero.
        assert_eq!(at(&mut k, 110, 1, &one(0.0)), 0);
        // Nothing scraped at zero: no data, the last decision (0) stands.
        assert_eq!(at(&mut k, 112, 0, &[]), 0);
        assert_eq!(at(&mut k, 300, 0, &[]), 0);
    }

    #[test]
    fn traffic_during_the_grace_period_or_disabled_scale_to_zero_keeps_a_pod() {
        let one = |c: f64| vec![pod(PodPhase::Ready, Some(c))];
        let mut k = kpa("");
        // Idle from the start. The first decision at t = 0 wants 0; the PA is still Activating
        // and turns Active with the ready pod (since t = 0). It is Inactive at t = 60
        // (Active >= 60 s).
        for t in (0..=60).step_by(2) {
            assert_eq!(at(&mut k, t, 1, &one(0.0)), 1);
        }
        assert_eq!(k.activity, Activity::Inactive);
        // A request at t = 70, inside the grace period (60 + 30 = 90): stable > 0, want 1, so
        // Active again, and no zero at t = 90.
        assert_eq!(at(&mut k, 70, 1, &one(1.0)), 1);
        assert_eq!(k.activity, Activity::Active);
        assert_eq!(at(&mut k, 90, 1, &one(0.0)), 1);

        let mut k = kpa(", enable_scale_to_zero: false");
        for t in (0..=400).step_by(2) {
            assert_eq!(at(&mut k, t, 1, &one(0.0)), 1);
        }
    }

    #[test]
    fn pending_demand_at_zero_scales_to_one_or_the_activation_scale() {
        let mut k = kpa("");
        // At zero with nothing pending: no data, no decision, stays 0.
        assert_eq!(at(&mut k, 0, 0, &[]), 0);
        assert_eq!(at(&mut k, 2, 0, &[]), 0);
        // The activator holds 1 request. The history starts here, so stable = panic = 1 and
        // dspc = ceil(1 / 70) = 1. dppc / ready = 1 / max(1, 0) < 2.
        assert_eq!(held_at(&mut k, 4, 0, &[], 1), 1);
        assert_eq!(k.activity, Activity::Activating);
        // The pod is provisioning and reports nothing. Until t = 62 the partial window holds
        // only the sample: 1 / 1 bucket, want 1. At t = 64 (bucket 32, a whole window after
        // bucket 2) the average is 0, and later the window is empty, so the last decision, 0,
        // stands. But the PA is Activating (pods wanted, none ready), so the replicas are left
        // alone until the activation timeout: progress deadline 600 s + 30 s from the start.
        for t in (6..=628).step_by(2) {
            assert_eq!(at(&mut k, t, 1, &[pod(PodPhase::Pending, None)]), 1, "t = {t}");
        }
        assert_eq!(at(&mut k, 630, 1, &[pod(PodPhase::Pending, None)]), 0);
        assert_eq!(k.activity, Activity::Inactive);

        // activation_scale 3: a non-zero dspc lifts the count to 3.
        let mut k = kpa(", activation_scale: 3");
        assert_eq!(held_at(&mut k, 0, 0, &[], 1), 3);
        // A value on a pod that is not Ready is not a sample (the engine scrapes Ready pods).
        let mut k = kpa("");
        assert_eq!(at(&mut k, 0, 0, &[pod(PodPhase::Starting, Some(1.0))]), 0);
    }

    #[test]
    fn zero_after_scale_to_zero_then_a_small_demand_still_gets_a_pod() {
        let mut k = kpa("");
        let one = |c: f64| vec![pod(PodPhase::Ready, Some(c))];
        // Idle pod: Inactive at t = 60, zero at t = 90 (see the grace test).
        for t in (0..=88).step_by(2) {
            assert_eq!(at(&mut k, t, 1, &one(0.0)), 1);
        }
        assert_eq!(at(&mut k, 90, 1, &one(0.0)), 0);
        // One request pending at t = 100 (bucket 50). The last write was bucket 45 (t = 90),
        // less than a window ago, so there is no reset. stable = 1 / 30 buckets = 0.0333 > 0,
        // dspc = 1.
        assert_eq!(held_at(&mut k, 100, 0, &[], 1), 1);
    }

    #[test]
    fn deleting_and_failed_pods_are_not_counted() {
        let mut k = kpa("");
        let pods = [
            pod(PodPhase::Ready, Some(70.0)),
            pod(PodPhase::Deleting, Some(700.0)),
            pod(PodPhase::Failed, Some(700.0)),
        ];
        // Only the ready pod's 70: ceil(70 / 70) = 1.
        assert_eq!(at(&mut k, 0, 1, &pods), 1);
    }

    #[test]
    fn min_max_and_initial_scale_clamp() {
        let mut k = kpa(", min_scale: 2, max_scale: 5");
        // Idle: the decider wants 0, min_scale lifts it to 2.
        assert_eq!(at(&mut k, 0, 1, &ready(1, 0.0, 0.0)), 2);
        // 7000 in flight: stable = panic = (0 + 7000) / 2 buckets = 3500 (a partial window).
        // dspc = dppc = 50, so panic; max_up 1000; clamped to max_scale 5.
        assert_eq!(at(&mut k, 2, 2, &ready(1, 7000.0, 0.0)), 5);

        let mut k = kpa(", initial_scale: 3");
        // Idle, 1 ready pod: the decider wants 0, but initial_scale 3 > 1 is a floor until 3 pods
        // have been ready.
        assert_eq!(at(&mut k, 0, 1, &ready(1, 0.0, 0.0)), 3);
        // 3 ready now: max_down = floor(3 / 2) = 1, desired 1, still floored to 3 in this
        // decision. The condition then marks the target initialised.
        assert_eq!(at(&mut k, 2, 3, &ready(3, 0.0, 0.0)), 3);
        assert!(k.initialized);
        // Initialised: the floor is min_scale 0 again, so floor(3 / 2) = 1.
        assert_eq!(at(&mut k, 4, 3, &ready(3, 0.0, 0.0)), 1);
    }

    #[test]
    fn scale_down_delay_holds_the_window_maximum() {
        // Stable 6 s (3 buckets), panic 0.6 s (1 bucket), delay 10 s (5 buckets).
        let mut k = kpa(", stable_window_s: 6, scale_down_delay_s: 10");
        // 2 pods at 70 = 140: dspc 2. Starts in panic (2 ready), which ends after t = 6.
        for t in (0..=18).step_by(2) {
            assert_eq!(at(&mut k, t, 2, &ready(2, 70.0, 70.0)), 2);
        }
        // 70 from t = 20. Stable: t = 20 (140, 140, 70) → 116.7, dspc 2.
        // t = 22 (140, 70, 70) → 93.3, dspc 2. t = 24 → 70, dspc 1.
        // The delay window keeps the maximum of the last 5 ticks. The last 2 was at t = 22,
        // so 2 is held through t = 30 (buckets 11..15); t = 32 (12..16) is all 1.
        for t in (20..=30).step_by(2) {
            assert_eq!(at(&mut k, t, 2, &ready(2, 35.0, 35.0)), 2, "t = {t}");
        }
        assert_eq!(at(&mut k, 32, 2, &ready(2, 35.0, 35.0)), 1);
        // Scale-up is not delayed. One ready pod at 700: stable = (70 + 70 + 700) / 3 = 280,
        // dspc 4; panic = 700, dppc 10, 10 / 1 >= 2, so panic and 10 at once.
        assert_eq!(at(&mut k, 34, 1, &ready(1, 700.0, 0.0)), 10);
    }

    #[test]
    fn window_average_follows_knative_partial_windows_and_gaps() {
        let mut w = WindowBuckets::new(5);
        w.record(10, 6.0);
        // Only the first bucket so far: 6 / 1.
        assert_eq!(w.average(10), 6.0);
        w.record(12, 3.0);
        // Buckets 10..12, bucket 11 is a gap (0): (6 + 0 + 3) / 3.
        assert_eq!(w.average(12), 3.0);
        // Queried later without writes: the tail after the last write is left out. At 14 the
        // window is 10..14, so 10..12 count: still (6 + 0 + 3) / 3. At 15 the window is 11..15:
        // (0 + 3) / 2.
        assert_eq!(w.average(14), 3.0);
        assert_eq!(w.average(15), 1.5);
        // A whole window after the last write: 0, and empty only when strictly later.
        assert_eq!(w.average(17), 0.0);
        assert!(!w.is_empty(17));
        assert!(w.is_empty(18));
        // A write after a full window of silence restarts the history.
        w.record(30, 2.0);
        assert_eq!(w.average(30), 2.0);
        // Averages are truncated to 6 decimals: (1 + 1 + 0) / 3 = 0.666666.
        let mut w = WindowBuckets::new(3);
        w.record(0, 1.0);
        w.record(1, 1.0);
        w.record(2, 0.0);
        assert_eq!(w.average(2), 0.666666);
    }

    #[test]
    fn max_window_keeps_the_largest_of_the_last_buckets() {
        let mut m = MaxWindow::new(3);
        assert_eq!(m.record(0, 5), 5);
        assert_eq!(m.record(1, 2), 5);
        assert_eq!(m.record(2, 3), 5);
        // 5 (bucket 0) leaves at bucket 3; the largest of 1..3 is 3.
        assert_eq!(m.record(3, 1), 3);
        // A second value in the same bucket keeps the larger.
        assert_eq!(m.record(3, 4), 4);
        assert_eq!(m.record(6, 0), 0);
    }

    #[test]
    fn config_errors_are_one_line() {
        let cases = [
            ("{ max_scale: 5 }", "needs `pool`"),
            ("{ pool: q, max_scale: 5 }", "no pool named `q`"),
            ("{ pool: p }", "max_scale is required"),
            ("{ pool: p, max_scale: 5, stable_window_s: 5 }", "stable_window_s = 5"),
            ("{ pool: p, max_scale: 5, stable_window_s: 3601 }", "stable_window_s = 3601"),
            ("{ pool: p, max_scale: 5, stable_window_s: 60.5 }", "whole number of seconds"),
            ("{ pool: p, max_scale: 5, panic_threshold_percentage: 100 }", "[110, 1000]"),
            ("{ pool: p, max_scale: 5, panic_window_percentage: 0 }", "[1, 100]"),
            ("{ pool: p, max_scale: 5, max_scale_down_rate: 1 }", "greater than 1"),
            ("{ pool: p, max_scale: 5, max_scale_up_rate: 0.5 }", "greater than 1"),
            ("{ pool: p, max_scale: 5, min_scale: 6 }", "must not exceed max_scale"),
            ("{ pool: p, max_scale: 5, initial_scale: 0 }", "allow_zero_initial_scale"),
            ("{ pool: p, max_scale: 5, activation_scale: 6 }", "activation_scale = 6"),
            ("{ pool: p, max_scale: 5, target: 0 }", "at least 0.01"),
            ("{ pool: p, max_scale: 5, target: .nan }", "finite"),
            ("{ pool: p, max_scale: 5, metric: rps, container_concurrency: 4 }", "rps"),
            ("{ pool: p, max_scale: 5, container_concurrency: 1001 }", "[0, 1000]"),
            ("{ pool: p, max_scale: 5, target_utilization_percentage: 0 }", "[1, 100]"),
            ("{ pool: p, max_scale: 5, scale_to_zero_grace_period_s: 0 }", "positive"),
            ("{ pool: p, max_scale: 5, scale_down_delay_s: -1 }", "scale_down_delay_s"),
            ("{ pool: p, max_scale: 5, tick_interval_s: 0 }", "tick_interval_s"),
            ("{ pool: p, max_scale: 5, metric: cpu }", "unknown variant"),
            ("{ pool: p, max_scale: 5, window: 60 }", "unknown field"),
        ];
        for (yaml, want) in cases {
            let e = err(yaml);
            assert!(e.contains(want), "{yaml}: {e}");
            assert!(!e.contains('\n'), "{yaml}: multi-line error {e:?}");
        }
        // A null parameter block is all defaults, and then `pool` is missing.
        assert!(configure(&serde_yaml_ng::Value::Null, &ctx()).is_err());
        // The pool must fit under max_scale: it starts with 1 replica here.
        let v: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("{ pool: p, max_scale: 1 }").expect("yaml");
        assert!(configure(&v, &ctx()).is_ok());
        let ctx3 = AutoscaleCtx::new(ctx().pools, &[3]);
        assert!(configure(&v, &ctx3).err().is_some_and(|e| e.contains("starts with 3")));
    }

    #[test]
    fn the_registry_entry_builds_a_kpa() {
        let v: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("{ pool: p, max_scale: 4 }").expect("yaml");
        let a = (ENTRY.build)(&v, &ctx()).expect("builds");
        assert_eq!(ENTRY.name, "kpa");
        assert_eq!(a.bounds(), (0, 4));
        assert_eq!(a.pool(), 0);
    }
}
