//! `model_affinity`: not implemented yet (placeholder: first candidate).

use super::RouterEntry;
use super::{BuildCtx, ParamDoc, RequestView, RouteView, Router};

struct Stub;

impl Router for Stub {
    fn route(&mut self, _req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        view.candidates[0]
    }
}

fn build(_v: &serde_yaml_ng::Value, _ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    Ok(Box::new(Stub))
}

/// Registry entry.
pub static ENTRY: RouterEntry = RouterEntry {
    name: "model_affinity",
    summary: "placeholder",
    params: &[] as &[ParamDoc],
    build,
};
