//! `predictive`: forecast the pool's arrival rate and scale *ahead* of it, so that the replicas
//! a rising load needs are Ready when it arrives instead of a startup later.
//!
//! **Samples.** Every `interval_s` (60 s) the autoscaler takes one sample, the gateway's
//! `pool.arrival_rate_per_s` since the previous decision (all requests for the pool's models,
//! served or not). Sample `t` covers `(t·interval, (t+1)·interval]`.
//!
//! **Forecasters** (`method`), `ŷ(h)` the forecast `h` samples ahead of the latest one, after
//! Hyndman & Athanasopoulos, *Forecasting: Principles and Practice* (3rd ed.), §8.1–8.3 and
//! the seasonal naive method of §5.2; `m = season_s / interval_s` samples per season:
//! - `holt` (Holt's linear trend): `ℓ_t = α y_t + (1−α)(ℓ_{t−1} + b_{t−1})`,
//!   `b_t = β (ℓ_t − ℓ_{t−1}) + (1−β) b_{t−1}`, `ŷ(h) = ℓ_t + h b_t`; started with `ℓ = y_0`,
//!   then `b = y_1 − y_0`, `ℓ = y_1` (so a straight line is forecast exactly from two samples).
//! - `holt_winters` (additive): `ℓ_t = α (y_t − s_{t−m}) + (1−α)(ℓ_{t−1} + b_{t−1})`, `b_t` as
//!   Holt's, `s_t = γ (y_t − ℓ_{t−1} − b_{t−1}) + (1−γ) s_{t−m}`, `ŷ(h) = ℓ_t + h b_t +
//!   s_{t+h−m(k+1)}` with `k = ⌊(h−1)/m⌋` (the latest estimate of that season index). It is
//!   started when the first season is complete: `ℓ` = the season's mean, `b = 0`, `s_i = y_i − ℓ`
//!   (a one-season heuristic; a trend is then learnt at rate β, and the within-season part of
//!   it first sits in the seasonal indices and leaves them at rate γ).
//! - `seasonal_naive`: `ŷ(h) = y_{t+h−m(k+1)}`, the value one season earlier.
//!
//! **Until a full season is observed** the seasonal methods forecast with Holt (fed the same
//! samples), since they have no seasonal estimate yet. The default method is `holt_winters`
//! when `season_s` is given, else `holt`. Negative forecasts count as 0.
//!
//! **Replicas.** A count decided now must carry the load until a later decision can change it:
//! a scale-up is Ready a startup later, and a replica removed now takes a startup to come back.
//! So with `lead = ctx.startup_of(pool) + interval_s` (override: `lead_s`) and
//! `H = max(1, ⌈lead / interval_s⌉)` samples,
//!
//! ```text
//! need(rate) = ceil(rate × (1 + headroom) / capacity_rps)
//! target     = max(need(max over h = 1..H of ŷ(h)), need(current rate)) + standby
//! ```
//!
//! clamped to `[min_replicas, max_replicas]`. The peak over the horizon includes the forecast
//! at `now + lead` the brief asks for, and keeps replicas a falling forecast would drop while
//! the load they serve is still coming. The second term is the **reactive floor**: the count
//! never falls below what the rate measured now needs, so a forecast that misses (a peak that
//! did not recur, an unforecast burst, the first season) under-provisions no worse than a
//! reactive autoscaler would. `capacity_rps` (required) is one replica's request rate at the
//! SLO, measured offline — the role of Dynamo's pre-deployment profiling; `headroom` (0.1)
//! keeps replicas below it.
//!
//! **Scale-down** goes one replica at a time, at most one per `scale_down_delay_s` (300 s)
//! since the previous change in either direction (a cooldown against thrash on a noisy
//! forecast); `scale_down_delay_s: 0` drops to the target at once. Scale-up is never delayed;
//! a count outside the bounds is brought inside at once.
//!
//! **Standby** (`standby`, 0): replicas kept beyond the forecast — "pre-warm a standby pool". The
//! engine has no separate warm-pool state (stopped but loaded replicas), so standby replicas
//! are ordinary Ready replicas: they take traffic and cost GPU-hours like the others.
//!
//! Parameters: `pool` (required), `capacity_rps` (required, > 0), `max_replicas` (required),
//! `min_replicas` (1), `method`, `season_s` (seasonal methods; a whole multiple of `interval_s`,
//! at least 2 samples), `alpha` (0.2), `beta` (0.05), `gamma` (0.2, `holt_winters` only), all
//! in [0, 1], `interval_s` (60), `lead_s` (startup + interval), `headroom` (0.1), `standby` (0),
//! `scale_down_delay_s` (300). The smoothing defaults are small values of our choosing: no
//! source fixes them (R's `HoltWinters` and statsmodels fit them to the data by least squares,
//! which an online autoscaler with no history cannot do). Not every triple in [0, 1]³ is
//! stable: on a sinusoid plus trend, α = 0.3, β = 0.2, γ = 0.5 diverges, while the defaults
//! converge (both in the tests); larger values also follow Poisson noise more.
//!
//! **Not modelled**: fitted smoothing parameters, multiplicative seasonality, several seasons
//! (daily and weekly), prediction intervals (the headroom is fixed, not a quantile), and
//! forecasting token counts rather than requests.
//!
//! ```yaml
//! autoscalers:
//!   - { name: predictive, pool: h100, capacity_rps: 4, max_replicas: 16, season_s: 3600 }
//! ```
//!
//! Sources (read, not copied): R. J. Hyndman, G. Athanasopoulos, *Forecasting: Principles and
//! Practice*, 3rd ed., §8.3 "Methods with seasonality" (stored copy in the pages corpus);
//! ai-dynamo/dynamo `components/planner/src/dynamo/planner/utils/load_predictor.py` and
//! `planner_core.py` (forecasting the next interval's load from profiled per-replica
//! capacity).

use super::{
    parse_params, AutoscaleCtx, Autoscaler, AutoscalerEntry, MetricQuery, ScaleInput, Seconds,
};
use crate::time::{SimDuration, SimTime};
use serde::Deserialize;

/// Registry entry.
pub static ENTRY: AutoscalerEntry = AutoscalerEntry {
    name: "predictive",
    summary: "forecast arrivals (Holt-Winters, Holt, seasonal naive) and scale a startup ahead, \
              with a reactive floor",
    build,
};

const DEFAULT_INTERVAL: SimDuration = SimDuration::from_secs(60);
const DEFAULT_ALPHA: f64 = 0.2;
const DEFAULT_BETA: f64 = 0.05;
const DEFAULT_GAMMA: f64 = 0.2;
const DEFAULT_HEADROOM: f64 = 0.1;
const DEFAULT_SCALE_DOWN_DELAY: SimDuration = SimDuration::from_secs(300);

/// A forecasting method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The value one season earlier.
    SeasonalNaive,
    /// Additive Holt-Winters: level, trend, season.
    HoltWinters,
    /// Holt's linear trend, no season.
    Holt,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    pool: Option<String>,
    method: Option<Method>,
    alpha: Option<f64>,
    beta: Option<f64>,
    gamma: Option<f64>,
    season_s: Option<Seconds>,
    interval_s: Option<Seconds>,
    lead_s: Option<Seconds>,
    capacity_rps: Option<f64>,
    headroom: Option<f64>,
    min_replicas: Option<u32>,
    max_replicas: Option<u32>,
    scale_down_delay_s: Option<Seconds>,
    standby: Option<u32>,
}

/// Holt-Winters' seasonal state.
#[derive(Debug, Clone)]
struct Seasonal {
    level: f64,
    trend: f64,
    /// Seasonal index of each sample number mod m (the latest estimate).
    season: Vec<f64>,
}

/// An online forecaster of one series, one sample per decision.
#[derive(Debug, Clone)]
pub struct Forecaster {
    method: Method,
    alpha: f64,
    beta: f64,
    gamma: f64,
    /// Samples per season (0: none).
    m: usize,
    /// Samples observed.
    n: usize,
    /// Holt's level and trend (the fallback before a full season).
    holt: (f64, f64),
    /// The last `m` samples, sample `t` at `t % m`.
    last_season: Vec<f64>,
    hw: Option<Seasonal>,
}

impl Forecaster {
    /// A forecaster with smoothing `(alpha, beta, gamma)` and `m` samples per season (`m >= 2`
    /// for the seasonal methods).
    pub fn new(method: Method, (alpha, beta, gamma): (f64, f64, f64), m: usize) -> Forecaster {
        let m = if method == Method::Holt { 0 } else { m };
        Forecaster {
            method,
            alpha,
            beta,
            gamma,
            m,
            n: 0,
            holt: (0.0, 0.0),
            last_season: vec![0.0; m],
            hw: None,
        }
    }

    /// Adds sample `y`.
    pub fn observe(&mut self, y: f64) {
        let (a, b) = (self.alpha, self.beta);
        let (level, trend) = self.holt;
        self.holt = match self.n {
            0 => (y, 0.0),
            1 => (y, y - level),
            _ => {
                let l = a * y + (1.0 - a) * (level + trend);
                (l, b * (l - level) + (1.0 - b) * trend)
            }
        };
        if self.method == Method::HoltWinters {
            if let Some(s) = &mut self.hw {
                let i = self.n % self.m;
                let (l0, b0, s0) = (s.level, s.trend, s.season[i]);
                s.level = a * (y - s0) + (1.0 - a) * (l0 + b0);
                s.trend = b * (s.level - l0) + (1.0 - b) * b0;
                s.season[i] = self.gamma * (y - l0 - b0) + (1.0 - self.gamma) * s0;
            }
        }
        if self.m > 0 {
            self.last_season[self.n % self.m] = y;
        }
        self.n += 1;
        if self.method == Method::HoltWinters && self.n == self.m {
            let level = self.last_season.iter().sum::<f64>() / self.m as f64;
            let season = self.last_season.iter().map(|y| y - level).collect();
            self.hw = Some(Seasonal { level, trend: 0.0, season });
        }
    }

    /// Whether the seasonal method is in use (a full season observed).
    pub fn seasonal(&self) -> bool {
        self.m > 0 && self.n >= self.m
    }

    /// The forecast `h >= 1` samples after the latest one (0 before any sample).
    pub fn forecast(&self, h: usize) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        let at = self.n - 1 + h; // the sample number forecast
        match (self.method, &self.hw) {
            (Method::SeasonalNaive, _) if self.seasonal() => self.last_season[at % self.m],
            (Method::HoltWinters, Some(s)) => s.level + h as f64 * s.trend + s.season[at % self.m],
            _ => self.holt.0 + h as f64 * self.holt.1,
        }
    }
}

/// The autoscaler.
#[derive(Debug, Clone)]
pub struct Predictive {
    pool: u16,
    forecaster: Forecaster,
    interval: SimDuration,
    /// Forecast horizon in samples.
    horizon: usize,
    capacity_rps: f64,
    headroom: f64,
    standby: u32,
    bounds: (u32, u32),
    scale_down_delay: SimDuration,
    last_change: Option<SimTime>,
}

impl Predictive {
    /// Replicas for `rate_per_s` with the headroom.
    fn need(&self, rate_per_s: f64) -> u32 {
        let x = rate_per_s.max(0.0) * (1.0 + self.headroom) / self.capacity_rps;
        // The ceiling forgives float rounding (100 × 1.1 / 10 is 11.000000000000002), and `as`
        // saturates: an absurd forecast asks for u32::MAX, then the bounds clamp.
        (x - 1e-9 * x.max(1.0)).ceil() as u32
    }

    /// The peak forecast over the horizon.
    fn peak_forecast(&self) -> f64 {
        (1..=self.horizon).map(|h| self.forecaster.forecast(h)).fold(0.0, f64::max)
    }

    /// The count the forecast and the reactive floor ask for, before the scale-down limit.
    fn target(&self, rate_now_per_s: f64) -> u32 {
        let want = self.need(self.peak_forecast()).max(self.need(rate_now_per_s));
        want.saturating_add(self.standby).clamp(self.bounds.0, self.bounds.1)
    }
}

impl Autoscaler for Predictive {
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
        let rate = input.pool.arrival_rate_per_s;
        let rate = if rate.is_finite() { rate.max(0.0) } else { 0.0 };
        self.forecaster.observe(rate);
        let target = self.target(rate);
        let (now, current) = (input.now, input.current);
        let out = if current > self.bounds.1 {
            self.bounds.1
        } else if target >= current || self.scale_down_delay == SimDuration::ZERO {
            target // up at once (also from below min_replicas: target >= min), or no delay
        } else if self.last_change.is_none_or(|t| now.since(t) >= self.scale_down_delay) {
            current - 1
        } else {
            current
        };
        if out != current {
            self.last_change = Some(now);
        }
        out
    }
    fn bounds(&self) -> (u32, u32) {
        self.bounds
    }
}

/// A finite number in `[lo, hi]`, or a one-line error naming `key`.
fn within(key: &str, v: f64, lo: f64, hi: f64) -> Result<f64, String> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(format!("{key} = {v}: must be in [{lo}, {hi}]"))
    }
}

/// A duration in seconds, `> 0` (or `>= 0` with `zero_ok`), or a one-line error.
fn duration(
    key: &str,
    v: Option<Seconds>,
    default: SimDuration,
    zero_ok: bool,
) -> Result<SimDuration, String> {
    match v {
        None => Ok(default),
        Some(Seconds(s)) if s.is_finite() && (s > 0.0 || zero_ok && s == 0.0) => {
            Ok(Seconds(s).dur())
        }
        Some(Seconds(s)) => {
            let bound = if zero_ok { ">= 0" } else { "> 0" };
            Err(format!("{key} = {s}: must be a number of seconds {bound}"))
        }
    }
}

fn configure(v: &serde_yaml_ng::Value, ctx: &AutoscaleCtx<'_>) -> Result<Predictive, String> {
    let p: Params = parse_params(v)?;
    let name = p.pool.as_deref().ok_or("`predictive` needs `pool`: the pool it scales")?;
    let pool = ctx.pool_index(name)?;
    let capacity_rps = p.capacity_rps.ok_or(
        "`predictive` needs `capacity_rps`: one replica's request rate at the SLO (profiled)",
    )?;
    if !(capacity_rps.is_finite() && capacity_rps > 0.0) {
        return Err(format!("capacity_rps = {capacity_rps}: must be a rate > 0"));
    }
    let max = p.max_replicas.ok_or("`predictive` needs `max_replicas`")?;
    let min = p.min_replicas.unwrap_or(1);
    if max == 0 || max < min {
        return Err(format!("max_replicas = {max}: must be >= 1 and >= min_replicas ({min})"));
    }
    let standby = p.standby.unwrap_or(0);
    if standby > max {
        return Err(format!("standby = {standby}: must not exceed max_replicas ({max})"));
    }
    let interval = duration("interval_s", p.interval_s, DEFAULT_INTERVAL, false)?;
    let method =
        p.method.unwrap_or(if p.season_s.is_some() { Method::HoltWinters } else { Method::Holt });
    let m = match (method, p.season_s) {
        (Method::Holt, Some(_)) => {
            return Err("season_s: method holt has no season; drop it or use holt_winters".into())
        }
        (Method::Holt, None) => 0,
        (_, None) => {
            return Err(format!(
                "method {method:?} needs season_s: the load's period in seconds (e.g. 86400)"
            ))
        }
        (_, Some(Seconds(s))) => {
            let samples = s / interval.as_secs_f64();
            let whole = samples.round();
            if !(s.is_finite() && whole >= 2.0 && (samples - whole).abs() < 1e-9) {
                return Err(format!(
                    "season_s = {s}: must be a whole multiple (>= 2) of interval_s ({})",
                    interval.as_secs_f64()
                ));
            }
            whole as usize
        }
    };
    if method != Method::HoltWinters && p.gamma.is_some() {
        return Err("gamma: only holt_winters has a seasonal smoothing parameter".into());
    }
    let alpha = within("alpha", p.alpha.unwrap_or(DEFAULT_ALPHA), 0.0, 1.0)?;
    let beta = within("beta", p.beta.unwrap_or(DEFAULT_BETA), 0.0, 1.0)?;
    let gamma = within("gamma", p.gamma.unwrap_or(DEFAULT_GAMMA), 0.0, 1.0)?;
    let headroom = within("headroom", p.headroom.unwrap_or(DEFAULT_HEADROOM), 0.0, f64::MAX)?;
    let lead = match p.lead_s {
        Some(_) => duration("lead_s", p.lead_s, SimDuration::ZERO, true)?,
        None => ctx.startup_of(pool) + interval,
    };
    let horizon = (lead.as_nanos().div_ceil(interval.as_nanos()) as usize).max(1);
    Ok(Predictive {
        pool,
        forecaster: Forecaster::new(method, (alpha, beta, gamma), m),
        interval,
        horizon,
        capacity_rps,
        headroom,
        standby,
        bounds: (min, max),
        scale_down_delay: duration(
            "scale_down_delay_s",
            p.scale_down_delay_s,
            DEFAULT_SCALE_DOWN_DELAY,
            true,
        )?,
        last_change: None,
    })
}

fn build(v: &serde_yaml_ng::Value, ctx: &AutoscaleCtx<'_>) -> Result<Box<dyn Autoscaler>, String> {
    Ok(Box::new(configure(v, ctx)?))
}

#[cfg(test)]
mod tests {
    use super::super::PoolSignals;
    use super::*;
    use std::f64::consts::PI;

    fn secs(s: u64) -> SimTime {
        SimTime(s * crate::time::NANOS_PER_S)
    }

    fn with_startup(yaml: &str, startup_s: u64) -> Result<Predictive, String> {
        let pools = vec!["p".to_string()];
        let startup = [SimDuration::from_secs(startup_s)];
        let ctx = AutoscaleCtx { startup: &startup, ..AutoscaleCtx::new(&pools, &[1]) };
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
        configure(&v, &ctx)
    }

    fn predictive(extra: &str) -> Predictive {
        let yaml = format!("{{ pool: p, capacity_rps: 10, max_replicas: 100{extra} }}");
        with_startup(&yaml, 0).expect("builds")
    }

    /// One decision at `t_s` with `current` replicas and arrival rate `rate`.
    fn step(a: &mut Predictive, t_s: u64, current: u32, rate: f64) -> u32 {
        let pool = PoolSignals { arrival_rate_per_s: rate, interval_s: 60.0, ..Default::default() };
        a.decide(&ScaleInput::new(secs(t_s), current, &[]).with_pool(pool))
    }

    #[test]
    fn seasonal_naive_forecasts_a_periodic_series_exactly() {
        let m = 12;
        let y = |t: usize| [3.0, 5.0, 9.0, 4.0, 0.0, 7.0, 2.0, 8.0, 6.0, 1.0, 5.0, 3.0][t % m];
        let mut f = Forecaster::new(Method::SeasonalNaive, (0.3, 0.1, 0.3), m);
        for t in 0..30 {
            f.observe(y(t));
        }
        // After sample 29, ŷ(h) must be sample 29 + h, for horizons beyond one season too.
        for h in 1..=2 * m {
            assert_eq!(f.forecast(h), y(29 + h), "h={h}");
        }
    }

    #[test]
    fn holt_forecasts_a_straight_line_exactly() {
        let mut f = Forecaster::new(Method::Holt, (0.3, 0.1, 0.0), 0);
        for t in 0..10 {
            f.observe(5.0 + 2.0 * t as f64);
        }
        // ℓ = 23, b = 2 stay fixed points of the updates: ŷ(h) = 23 + 2h.
        for h in 1..5 {
            assert!((f.forecast(h) - (23.0 + 2.0 * h as f64)).abs() < 1e-9, "h={h}");
        }
    }

    #[test]
    fn holt_winters_converges_on_a_sinusoid_with_trend() {
        // y_t = 100 + 0.2 t + 30 sin(2πt / 24): additive season, linear trend. The true
        // (level, trend, season) is a fixed point of the updates; with stable smoothing the
        // errors of the one-season start decay geometrically.
        let m = 24;
        let y = |t: usize| 100.0 + 0.2 * t as f64 + 30.0 * (2.0 * PI * t as f64 / m as f64).sin();
        // The worst 1..6-step-ahead error in each season.
        let errors = |method, params| {
            let mut f = Forecaster::new(method, params, m);
            (0..20)
                .map(|season| {
                    let mut e = 0.0f64;
                    for t in season * m..(season + 1) * m {
                        f.observe(y(t));
                        for h in 1..=6 {
                            e = e.max((f.forecast(h) - y(t + h)).abs());
                        }
                    }
                    e
                })
                .collect::<Vec<f64>>()
        };
        let defaults = (DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_GAMMA);
        let hw = errors(Method::HoltWinters, defaults);
        let holt = errors(Method::Holt, defaults);
        // Decreasing season after season, under 2 % of the amplitude by the 20th.
        assert!(hw.windows(2).skip(1).all(|w| w[1] < w[0]), "{hw:?}");
        assert!(hw[19] < 0.6, "{hw:?}");
        // Holt, without a season, keeps missing by a large part of the amplitude.
        assert!(holt[19] > 20.0 * hw[19], "holt {holt:?}");
        // Paired: α 0.3, β 0.2, γ 0.5 is outside the stable region — the error grows.
        let unstable = errors(Method::HoltWinters, (0.3, 0.2, 0.5));
        assert!(unstable[19] > 3.0 * unstable[2], "{unstable:?}");
    }

    #[test]
    fn seasonal_methods_forecast_with_holt_until_a_full_season() {
        let m = 10;
        let mut hw = Forecaster::new(Method::HoltWinters, (0.4, 0.2, 0.3), m);
        let mut naive = Forecaster::new(Method::SeasonalNaive, (0.4, 0.2, 0.3), m);
        let mut holt = Forecaster::new(Method::Holt, (0.4, 0.2, 0.3), 0);
        let y = |t: usize| 20.0 + (t * 7 % 5) as f64;
        for t in 0..m - 1 {
            for f in [&mut hw, &mut naive, &mut holt] {
                f.observe(y(t));
            }
            assert!(!hw.seasonal() && !naive.seasonal());
            for h in 1..4 {
                assert_eq!(hw.forecast(h), holt.forecast(h));
                assert_eq!(naive.forecast(h), holt.forecast(h));
            }
        }
        hw.observe(y(m - 1));
        naive.observe(y(m - 1));
        assert!(hw.seasonal() && naive.seasonal());
        assert_eq!(naive.forecast(1), y(0)); // one season back
    }

    #[test]
    fn replicas_are_the_ceiling_of_the_forecast_with_headroom_plus_standby() {
        // Constant 45 rps: every method forecasts 45; 45 × 1.1 / 10 = 4.95 → 5.
        let mut a = predictive("");
        assert_eq!(step(&mut a, 60, 1, 45.0), 5);
        assert_eq!(step(&mut a, 120, 5, 45.0), 5);
        let mut a = predictive(", standby: 2");
        assert_eq!(step(&mut a, 60, 1, 45.0), 7);
        // Headroom 0: exactly 4.5 → 5; 40 rps → 4 exactly (no spurious extra replica).
        let mut a = predictive(", headroom: 0");
        assert_eq!(step(&mut a, 60, 1, 40.0), 4);
        // Bounds clamp.
        let yaml = "{ pool: p, capacity_rps: 10, max_replicas: 3 }";
        let mut a = with_startup(yaml, 0).expect("builds");
        assert_eq!(step(&mut a, 60, 1, 45.0), 3);
        let mut a = predictive(", min_replicas: 2");
        assert_eq!(step(&mut a, 60, 5, 0.0), 4); // one step down, from 5
                                                 // 100 × 1.1 / 10 is 11.000000000000002 in floats: still 11 replicas.
        let mut a = predictive("");
        assert_eq!(step(&mut a, 60, 11, 100.0), 11);
    }

    #[test]
    fn scales_up_ahead_of_a_recurring_peak_by_at_least_the_lead() {
        // Hourly season (m = 60 one-minute samples): 10 rps, 80 rps for samples 30..40.
        // Startup 300 s → lead 360 s → a 6-sample horizon. Reactive rule: need(rate now).
        let rate = |t: usize| if (30..40).contains(&(t % 60)) { 80.0 } else { 10.0 };
        let mut a = with_startup(
            "{ pool: p, capacity_rps: 10, max_replicas: 100, method: seasonal_naive, \
             season_s: 3600, scale_down_delay_s: 0 }",
            300,
        )
        .expect("builds");
        assert_eq!(a.horizon, 6);
        let peak_need = a.need(80.0);
        let (mut current, mut first_predictive, mut first_reactive) = (2, None, None);
        for t in 0..180 {
            let now_s = 60 * (t as u64 + 1); // sample t is taken at the end of its minute
            current = step(&mut a, now_s, current, rate(t));
            if t >= 120 && current >= peak_need && first_predictive.is_none() {
                first_predictive = Some(now_s);
            }
            if t >= 120 && a.need(rate(t)) >= peak_need && first_reactive.is_none() {
                first_reactive = Some(now_s);
            }
        }
        let (p, r) = (first_predictive.expect("scales up"), first_reactive.expect("peak"));
        // The third season's peak: reactive at sample 150 (t = 151 min), predictive at 144.
        // The horizon reaches sample 150 from sample 144 (144 + 6): exactly the lead earlier.
        assert_eq!(r, 151 * 60);
        assert_eq!(p, 145 * 60);
        assert!(r - p >= 360, "predictive at {p} s, reactive at {r} s");
    }

    #[test]
    fn the_reactive_floor_covers_a_forecast_miss() {
        // Two quiet seasons teach seasonal naive "10 rps"; then an unforecast 100 rps burst:
        // the forecast says 10 (need 2) but the floor gives need(100) = 11.
        let mut a = predictive(", method: seasonal_naive, season_s: 600, scale_down_delay_s: 0");
        let mut current = 2;
        for t in 0..20 {
            current = step(&mut a, 60 * (t + 1), current, 10.0);
        }
        assert_eq!(current, 2);
        assert_eq!(step(&mut a, 21 * 60, 2, 100.0), 11);
    }

    #[test]
    fn scale_down_is_one_replica_per_delay() {
        // From 10 replicas with the load gone (target min 1): −1 at once, then one more
        // every 300 s since the last change (decisions every 60 s).
        let mut a = predictive("");
        let mut current = 10;
        let mut seen = Vec::new();
        for t in 1..=12 {
            current = step(&mut a, 60 * t, current, 0.0);
            seen.push(current);
        }
        assert_eq!(seen, vec![9, 9, 9, 9, 9, 8, 8, 8, 8, 8, 7, 7]);
        // A scale-up restarts the delay; scale-up itself is immediate. Steady 50 rps wants
        // need(50) = ceil(5.5) = 6: from 10, −1 at t = 60, then held. At t = 180 a 150 rps
        // interval: Holt (ℓ 70, b 1) forecasts 71 → 8, the floor need(150) = ceil(16.5) = 17
        // → 17 at once. Back at 50 rps the target drops below 17 again, but the last change
        // was at t = 180: held until t = 480, then −1.
        let mut a = predictive("");
        let mut current = 10;
        let mut seen = Vec::new();
        for (t, rate) in
            [(60, 50.0), (120, 50.0), (180, 150.0), (300, 50.0), (420, 50.0), (480, 50.0)]
        {
            current = step(&mut a, t, current, rate);
            seen.push(current);
        }
        assert_eq!(seen, vec![9, 9, 17, 17, 17, 16]);
        // scale_down_delay_s: 0 drops to the target at once.
        let mut a = predictive(", scale_down_delay_s: 0");
        assert_eq!(step(&mut a, 60, 10, 0.0), 1);
    }

    #[test]
    fn lead_is_startup_plus_interval_unless_given() {
        let yaml = "{ pool: p, capacity_rps: 1, max_replicas: 4 }";
        assert_eq!(with_startup(yaml, 0).expect("builds").horizon, 1);
        assert_eq!(with_startup(yaml, 240).expect("builds").horizon, 5); // 300 s / 60 s
        assert_eq!(with_startup(yaml, 250).expect("builds").horizon, 6); // 310 s → 6 samples
        let yaml = "{ pool: p, capacity_rps: 1, max_replicas: 4, lead_s: 900, interval_s: 30 }";
        assert_eq!(with_startup(yaml, 240).expect("builds").horizon, 30);
    }

    #[test]
    fn config_errors_are_one_line_and_name_the_field() {
        let base = "pool: p, capacity_rps: 2, max_replicas: 4";
        let cases = [
            ("{ capacity_rps: 2, max_replicas: 4 }".to_string(), "pool"),
            ("{ pool: p, max_replicas: 4 }".to_string(), "capacity_rps"),
            ("{ pool: p, capacity_rps: 2 }".to_string(), "max_replicas"),
            ("{ pool: p, capacity_rps: 0, max_replicas: 4 }".to_string(), "capacity_rps"),
            (format!("{{ {base}, method: holt_winters }}"), "season_s"),
            (format!("{{ {base}, season_s: 90 }}"), "season_s"),
            (format!("{{ {base}, method: holt, season_s: 600 }}"), "season_s"),
            (format!("{{ {base}, gamma: 0.2 }}"), "gamma"),
            (format!("{{ {base}, alpha: 1.5 }}"), "alpha"),
            (format!("{{ {base}, headroom: -0.1 }}"), "headroom"),
            (format!("{{ {base}, standby: 5 }}"), "standby"),
            (format!("{{ {base}, min_replicas: 5 }}"), "max_replicas"),
            (format!("{{ {base}, interval_s: 0 }}"), "interval_s"),
            (format!("{{ {base}, method: arima }}"), "arima"),
            (format!("{{ {base}, seasons_s: 600 }}"), "seasons_s"),
        ];
        for (yaml, field) in &cases {
            let e = with_startup(yaml, 0).expect_err(yaml);
            assert!(e.contains(field), "{yaml}: {e}");
            assert!(!e.contains('\n'), "{yaml}: {e}");
        }
    }

    #[test]
    fn registry_entry_builds() {
        let pools = vec!["p".to_string()];
        let ctx = AutoscaleCtx::new(&pools, &[1]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "{ pool: p, capacity_rps: 3, max_replicas: 6, season_s: 1200 }",
        )
        .expect("yaml");
        let a = (ENTRY.build)(&v, &ctx).expect("builds");
        assert_eq!((a.bounds(), a.interval()), ((1, 6), SimDuration::from_secs(60)));
        assert!(a.metrics().is_empty());
    }
}
