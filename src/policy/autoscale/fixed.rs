//! `fixed`: the pools keep the replicas the scenario gives them (the default, and the
//! behaviour before autoscaling existed). No ticks, no metrics.
//!
//! `{ name: fixed, pool: P, replicas: N }` runs pool `P` at exactly `N` replicas from time 0
//! instead (ready at the start like the scenario's own replicas): the fixed-size baselines of
//! an autoscaling study — sized for the peak, for the mean — in the same cell as the
//! autoscalers, on the same requests.

use super::{parse_params, AutoscaleCtx, Autoscaler, AutoscalerEntry, MetricQuery, ScaleInput};
use crate::time::SimDuration;
use serde::Deserialize;

/// Registry entry.
pub static ENTRY: AutoscalerEntry = AutoscalerEntry {
    name: "fixed",
    summary: "no autoscaling: every pool keeps its `replicas` (the default)",
    build,
};

/// `Some((pool, replicas))`: that pool held at that size.
struct Fixed(Option<(u16, u32)>);

/// How often a sized `fixed` "decides" (always the same count).
const SIZED_INTERVAL: SimDuration = SimDuration::from_secs(3600);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    pool: Option<String>,
    replicas: Option<u32>,
}

impl Autoscaler for Fixed {
    fn pool(&self) -> u16 {
        self.0.map_or(0, |(p, _)| p)
    }
    fn interval(&self) -> SimDuration {
        if self.0.is_some() {
            SIZED_INTERVAL
        } else {
            SimDuration(u64::MAX)
        }
    }
    fn metrics(&self) -> &[MetricQuery] {
        &[]
    }
    fn decide(&mut self, input: &ScaleInput<'_>) -> u32 {
        self.0.map_or(input.current, |(_, n)| n)
    }
    fn bounds(&self) -> (u32, u32) {
        self.0.map_or((0, u32::MAX), |(_, n)| (n, n))
    }
    fn start_replicas(&self) -> Option<u32> {
        self.0.map(|(_, n)| n)
    }
    fn is_fixed(&self) -> bool {
        self.0.is_none()
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &AutoscaleCtx<'_>) -> Result<Box<dyn Autoscaler>, String> {
    let p: Params = parse_params(v)?;
    match (p.pool, p.replicas) {
        (None, None) => Ok(Box::new(Fixed(None))),
        (Some(pool), Some(n)) => Ok(Box::new(Fixed(Some((ctx.pool_index(&pool)?, n))))),
        _ => {
            Err("`fixed` takes both `pool:` and `replicas:` (a pool held at a size) or neither"
                .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SimTime;

    #[test]
    fn fixed_keeps_the_current_count_and_refuses_parameters() {
        let pools = ["p".to_string()];
        let ctx = AutoscaleCtx::new(&pools, &[3]);
        let mut a = build(&serde_yaml_ng::Value::Null, &ctx).expect("builds");
        assert!(a.is_fixed());
        let input = ScaleInput::new(SimTime::ZERO, 3, &[]);
        assert_eq!(a.decide(&input), 3);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str("{ min: 1 }").expect("yaml");
        assert!(build(&v, &ctx).is_err());
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str("{ pool: p }").expect("yaml");
        assert!(build(&v, &ctx).is_err(), "a pool without a size");
    }

    #[test]
    fn sized_fixed_holds_its_pool_at_its_size() {
        let pools = ["a".to_string(), "b".to_string()];
        let ctx = AutoscaleCtx::new(&pools, &[3, 1]);
        let v: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("{ pool: b, replicas: 7 }").expect("yaml");
        let mut a = build(&v, &ctx).expect("builds");
        assert!(!a.is_fixed());
        assert_eq!((a.pool(), a.bounds(), a.start_replicas()), (1, (7, 7), Some(7)));
        for current in [0, 7, 9] {
            assert_eq!(a.decide(&ScaleInput::new(SimTime::ZERO, current, &[])), 7);
        }
        let v: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("{ pool: c, replicas: 7 }").expect("yaml");
        assert!(build(&v, &ctx).is_err_and(|e| e.contains("no pool named")));
    }
}
