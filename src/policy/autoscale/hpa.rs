//! `hpa`: placeholder until implemented.

use super::{AutoscaleCtx, Autoscaler, AutoscalerEntry};

/// Registry entry.
pub static ENTRY: AutoscalerEntry =
    AutoscalerEntry { name: "hpa", summary: "not implemented yet", build };

fn build(
    _v: &serde_yaml_ng::Value,
    _ctx: &AutoscaleCtx<'_>,
) -> Result<Box<dyn Autoscaler>, String> {
    Err("`hpa` is not implemented yet".into())
}
