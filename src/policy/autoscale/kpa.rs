//! `kpa`: placeholder until implemented.

use super::{AutoscaleCtx, Autoscaler, AutoscalerEntry};

/// Registry entry.
pub static ENTRY: AutoscalerEntry =
    AutoscalerEntry { name: "kpa", summary: "not implemented yet", build };

fn build(
    _v: &serde_yaml_ng::Value,
    _ctx: &AutoscaleCtx<'_>,
) -> Result<Box<dyn Autoscaler>, String> {
    Err("`kpa` is not implemented yet".into())
}
