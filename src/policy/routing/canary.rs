//! `canary`: a canary rollout of a routing policy. A fixed share of requests (`canary_percent`)
//! is routed by the `canary` policy, the rest by the `stable` one, as a gateway's weighted
//! traffic split between two route configurations (Envoy `weighted_clusters`, Istio
//! `VirtualService` weights, Gateway API `HTTPRoute` backend weights) when both route to the
//! same replicas.
//!
//! The split is by request, not by attempt: `mix64(request id ^ seed) mod 10000 < 100 ×
//! canary_percent`, so a request's retries stay in its arm, and the assignment is the same
//! for every policy compared in a cell (common random numbers). Each arm keeps its own state
//! (counters, EWMAs, rings, trees) and hears only the feedback of its own requests; both see
//! the same gateway signals.
//!
//! Parameters: `stable` and `canary` are policy entries as in `policies:` (a name, or a
//! mapping with `name` and the policy's parameters); `canary_percent` (10) in [0, 100].
//! Stream: none of its own (the arms keep theirs, `router:<arm policy name>`).

use super::{
    find, BuildCtx, Completion, FirstToken, ParamDoc, RequestView, RouteView, Router, RouterEntry,
};
use crate::rng::mix64;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "stable")]
    stable: serde_yaml_ng::Value,
    #[serde(default = "canary")]
    canary: serde_yaml_ng::Value,
    #[serde(default = "ten")]
    canary_percent: f64,
}

fn stable() -> serde_yaml_ng::Value {
    "least_requests".into()
}

fn canary() -> serde_yaml_ng::Value {
    "power_of_d".into()
}

fn ten() -> f64 {
    10.0
}

impl Default for Params {
    fn default() -> Params {
        Params { stable: stable(), canary: canary(), canary_percent: ten() }
    }
}

/// The request-id bits of a routing id (the attempt number sits above them).
const REQUEST_BITS: u64 = (1 << 48) - 1;

struct Canary {
    stable: Box<dyn Router>,
    canary: Box<dyn Router>,
    /// Requests whose hash is below this go to the canary (out of 10 000).
    threshold: u64,
    seed: u64,
}

impl Canary {
    fn in_canary(&self, id: u64) -> bool {
        in_canary(self.seed, self.threshold, id)
    }
}

/// Whether request `id` (a routing id: attempt bits ignored) falls in the canary share.
fn in_canary(seed: u64, threshold: u64, id: u64) -> bool {
    mix64((id & REQUEST_BITS) ^ seed) % 10_000 < threshold
}

impl Router for Canary {
    fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        if self.in_canary(req.id) {
            self.canary.route(req, view)
        } else {
            self.stable.route(req, view)
        }
    }

    fn on_complete(&mut self, done: &Completion) {
        if self.in_canary(done.id) {
            self.canary.on_complete(done);
        } else {
            self.stable.on_complete(done);
        }
    }

    fn on_first_token(&mut self, ft: &FirstToken) {
        if self.in_canary(ft.id) {
            self.canary.on_first_token(ft);
        } else {
            self.stable.on_first_token(ft);
        }
    }

    fn uses_prefix_hashes(&self) -> bool {
        self.stable.uses_prefix_hashes() || self.canary.uses_prefix_hashes()
    }

    fn uses_kv_index(&self) -> bool {
        self.stable.uses_kv_index() || self.canary.uses_kv_index()
    }
}

/// Builds the arm `v` (a policy name, or a mapping with `name` and parameters).
fn arm(
    what: &str,
    v: &serde_yaml_ng::Value,
    ctx: &BuildCtx<'_>,
) -> Result<Box<dyn Router>, String> {
    use serde_yaml_ng::Value;
    let (name, params) = match v {
        Value::String(s) => (s.clone(), Value::Null),
        Value::Mapping(m) => {
            let mut m = m.clone();
            let Some(Value::String(name)) = m.remove("name") else {
                return Err(format!("{what}: needs `name: <policy>`"));
            };
            (name, if m.is_empty() { Value::Null } else { Value::Mapping(m) })
        }
        _ => return Err(format!("{what}: must be a policy name or a mapping with `name:`")),
    };
    if name == "canary" {
        return Err(format!("{what}: a canary arm cannot itself be a canary"));
    }
    let entry = find(&name).ok_or_else(|| format!("{what}: unknown policy {name:?}"))?;
    (entry.build)(&params, ctx).map_err(|e| format!("{what} ({name}): {e}"))
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = super::parse_params(v)?;
    if !(0.0..=100.0).contains(&p.canary_percent) {
        return Err(format!("canary_percent = {}: must be in 0..=100", p.canary_percent));
    }
    Ok(Box::new(Canary {
        stable: arm("stable", &p.stable, ctx)?,
        canary: arm("canary", &p.canary, ctx)?,
        threshold: (p.canary_percent * 100.0).round() as u64,
        seed: crate::rng::stream_seed(ctx.run_seed, "router:canary", 0),
    }))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "canary",
    summary: "canary split: canary_percent of requests routed by one policy, the rest by another",
    params: &[
        ParamDoc { name: "stable", default: "least_requests", doc: "policy for most requests" },
        ParamDoc { name: "canary", default: "power_of_d", doc: "policy for the canary share" },
        ParamDoc { name: "canary_percent", default: "10", doc: "share routed by the canary" },
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::super::RequestView;

    #[test]
    fn a_fixed_share_goes_to_the_canary_and_retries_stay_in_their_arm() {
        let f = Fixture::new(&[1, 1, 1, 1]);
        let yaml = "stable: { name: round_robin, start: zero }\ncanary: random\ncanary_percent: 25";
        let mut r = f.build("canary", yaml);
        let mut stable = f.build("round_robin", "start: zero");
        // The fixture builds with run seed 1.
        let seed = crate::rng::stream_seed(1, "router:canary", 0);
        let mut canary_hits = 0;
        let n = 20_000u64;
        for id in 0..n {
            let req = RequestView { id, ..Default::default() };
            let in_canary = super::in_canary(seed, 2500, id);
            // A retry (attempt number above bit 48) stays in the same arm.
            assert_eq!(super::in_canary(seed, 2500, id | (3 << 48)), in_canary);
            let pick = r.route(&req, &f.view());
            if in_canary {
                canary_hits += 1;
            } else {
                // The stable arm sees exactly the stable requests, in order.
                assert_eq!(pick, stable.route(&req, &f.view()), "request {id}");
            }
        }
        // Binomial(20000, 0.25): sd 61.
        assert!((canary_hits as i64 - 5000).abs() < 300, "{canary_hits}");
    }

    #[test]
    fn bad_arms_are_refused() {
        let f = Fixture::new(&[1, 1]);
        for (yaml, want) in [
            ("stable: random\ncanary: nope", "unknown policy \"nope\""),
            ("stable: random\ncanary: random\ncanary_percent: 120", "0..=100"),
            ("stable: { name: canary }\ncanary: random", "cannot itself be a canary"),
            ("stable: random\ncanary: { name: power_of_d, d: 0 }", "canary (power_of_d)"),
        ] {
            let e = f.try_build("canary", yaml).err().unwrap_or_default();
            assert!(e.contains(want), "{yaml:?}: {e}");
        }
    }
}
