//! `fixed`: the pools keep the replicas the scenario gives them (the default, and the
//! behaviour before autoscaling existed). No ticks, no metrics.

use super::{AutoscaleCtx, Autoscaler, AutoscalerEntry, MetricQuery, ScaleInput};
use crate::time::SimDuration;

/// Registry entry.
pub static ENTRY: AutoscalerEntry = AutoscalerEntry {
    name: "fixed",
    summary: "no autoscaling: every pool keeps its `replicas` (the default)",
    build,
};

struct Fixed;

impl Autoscaler for Fixed {
    fn pool(&self) -> u16 {
        0
    }
    fn interval(&self) -> SimDuration {
        SimDuration(u64::MAX)
    }
    fn metrics(&self) -> &[MetricQuery] {
        &[]
    }
    fn decide(&mut self, input: &ScaleInput<'_>) -> u32 {
        input.current
    }
    fn bounds(&self) -> (u32, u32) {
        (0, u32::MAX)
    }
    fn is_fixed(&self) -> bool {
        true
    }
}

fn build(v: &serde_yaml_ng::Value, _ctx: &AutoscaleCtx<'_>) -> Result<Box<dyn Autoscaler>, String> {
    if !v.is_null() && v.as_mapping().is_none_or(|m| !m.is_empty()) {
        return Err("`fixed` takes no parameters".into());
    }
    Ok(Box::new(Fixed))
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
    }
}
