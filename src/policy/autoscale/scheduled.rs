//! `scheduled`: scale on a timetable — `spec.replicas` set to each step's count from its time
//! on (the practice of scaling ahead of known peaks; KEDA's `cron` scaler with fixed desired
//! replicas, AWS scheduled scaling). Reads no metrics; decides every `interval_s` (default
//! 15 s), so a step takes effect at the first decision at or after its time.
//!
//! ```yaml
//! autoscalers:
//!   - { name: scheduled, pool: h100, steps: [ { at_s: 0, replicas: 2 }, { at_s: 600, replicas: 8 } ] }
//! ```

use super::{parse_params, AutoscaleCtx, Autoscaler, AutoscalerEntry, MetricQuery, ScaleInput};
use crate::time::SimDuration;
use serde::Deserialize;

/// Registry entry.
pub static ENTRY: AutoscalerEntry = AutoscalerEntry {
    name: "scheduled",
    summary: "replicas from a timetable (cron-style scaling ahead of known peaks)",
    build,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    pool: Option<String>,
    #[serde(default)]
    steps: Vec<Step>,
    interval_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    at_s: f64,
    replicas: u32,
}

struct Scheduled {
    pool: u16,
    steps: Vec<(SimDuration, u32)>,
    interval: SimDuration,
}

impl Autoscaler for Scheduled {
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
        let t = input.now.since(crate::time::SimTime::ZERO);
        self.steps.iter().rev().find(|(at, _)| *at <= t).map_or(input.current, |s| s.1)
    }
    fn bounds(&self) -> (u32, u32) {
        let lo = self.steps.iter().map(|s| s.1).min().unwrap_or(0);
        let hi = self.steps.iter().map(|s| s.1).max().unwrap_or(0);
        (lo, hi)
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &AutoscaleCtx<'_>) -> Result<Box<dyn Autoscaler>, String> {
    let p: Params = parse_params(v)?;
    let name = p.pool.ok_or("needs `pool:` (the pool it scales)")?;
    let pool = ctx.pool_index(&name)?;
    if p.steps.is_empty() {
        return Err("needs `steps: [{ at_s, replicas }, ...]`".into());
    }
    let mut steps = Vec::with_capacity(p.steps.len());
    for (i, s) in p.steps.iter().enumerate() {
        if !(s.at_s.is_finite() && s.at_s >= 0.0) {
            return Err(format!("steps[{i}].at_s = {}: must be a time >= 0", s.at_s));
        }
        if i > 0 && s.at_s <= p.steps[i - 1].at_s {
            return Err(format!("steps[{i}].at_s = {}: steps must be in increasing time", s.at_s));
        }
        steps.push((SimDuration::from_secs_f64(s.at_s), s.replicas));
    }
    let interval = match p.interval_s {
        Some(x) if x.is_finite() && x > 0.0 => SimDuration::from_secs_f64(x),
        Some(x) => return Err(format!("interval_s = {x}: must be > 0")),
        None => SimDuration::from_secs(15),
    };
    let initial = ctx.initial[pool as usize];
    let mut a = Scheduled { pool, steps, interval };
    // The pool's own count is reachable too (before the first step).
    let (lo, hi) = a.bounds();
    if initial < lo || initial > hi {
        a.steps.insert(0, (SimDuration::ZERO, initial));
        a.steps.dedup_by_key(|s| s.0);
    }
    Ok(Box::new(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SimTime;

    fn ctx() -> (Vec<String>, Vec<u32>) {
        (vec!["p".to_string()], vec![2])
    }

    #[test]
    fn follows_the_timetable_and_refuses_bad_steps() {
        let (pools, initial) = ctx();
        let c = AutoscaleCtx::new(&pools, &initial);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "{ pool: p, steps: [ { at_s: 0, replicas: 2 }, { at_s: 60, replicas: 5 } ] }",
        )
        .expect("yaml");
        let mut a = build(&v, &c).expect("builds");
        assert_eq!(a.bounds(), (2, 5));
        let at = |s: u64| ScaleInput::new(SimTime::ZERO + SimDuration::from_secs(s), 2, &[]);
        assert_eq!(a.decide(&at(59)), 2);
        assert_eq!(a.decide(&at(60)), 5);
        assert_eq!(a.decide(&at(600)), 5);
        for bad in [
            "{ steps: [ { at_s: 0, replicas: 2 } ] }",
            "{ pool: q, steps: [ { at_s: 0, replicas: 2 } ] }",
            "{ pool: p }",
            "{ pool: p, steps: [ { at_s: 5, replicas: 2 }, { at_s: 5, replicas: 3 } ] }",
        ] {
            let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(bad).expect("yaml");
            assert!(build(&v, &c).is_err(), "{bad}");
        }
    }
}
