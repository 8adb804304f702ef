//! `autoscalers:` of a scenario: registry names, `{ name, label, ...params }` mappings, and
//! `{ manifest: FILE }` entries that load a Kubernetes `autoscaling/v2`
//! `HorizontalPodAutoscaler` or a KEDA `keda.sh/v1alpha1` `ScaledObject` as users write them
//! (the file's `spec` becomes the `hpa` / `keda` parameters, `metadata.name` the label).
//!
//! Every entry is built once here against the scenario's pools, so a bad parameter, an
//! unknown metric or pool is a load error naming the entry; runs build their own instance.
//! Without `autoscalers:` a scenario runs `fixed` only, labelled `none` in result rows.
//!
//! Besides its own parameters an entry may say `activator: true | false | { timeout_s }`:
//! whether requests are held while the pool has no ready pod (`gateway::activator`); the
//! default is the autoscaler's own (on for `kpa`, off otherwise).

use super::validate::Ctx;
use super::AutoscalerSpec;
use crate::error::ConfigError;
use crate::policy::autoscale::{self, AutoscaleCtx, DEFAULT_HOLD_TIMEOUT};
use crate::spec::PoolSpec;
use crate::time::SimDuration;
use serde_yaml_ng::Value;
use std::path::Path;

/// The scenario's autoscalers (`fixed` as `none` when the list is absent).
pub(super) fn autoscalers(
    c: &Ctx<'_>,
    raw: Option<&[Value]>,
    pools: &[PoolSpec],
) -> Result<Vec<AutoscalerSpec>, ConfigError> {
    let names: Vec<String> = pools.iter().map(|p| p.name.clone()).collect();
    let initial: Vec<u32> = pools.iter().map(|p| p.replicas).collect();
    let ctx = AutoscaleCtx::new(&names, &initial);
    let Some(list) = raw else {
        return Ok(vec![AutoscalerSpec {
            label: "none".into(),
            entry: &autoscale::fixed::ENTRY,
            params: Value::Null,
            pool: None,
            bounds: (0, 0),
            activator: None,
            start: None,
        }]);
    };
    if list.is_empty() {
        return Err(c.err(
            "autoscalers",
            format!("is empty: list at least one of: {}", autoscale::names()),
        ));
    }
    let mut out: Vec<AutoscalerSpec> = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let path = format!("autoscalers[{i}]");
        let (name, label, params, activator) = entry(c, &path, v)?;
        let entry = autoscale::find(&name).ok_or_else(|| {
            c.err(&path, format!("unknown autoscaler {name:?}; valid: {}", autoscale::names()))
        })?;
        let built = (entry.build)(&params, &ctx).map_err(|e| c.err(&path, e))?;
        let label = label.unwrap_or_else(|| name.clone());
        c.label(&path, &label)?;
        if out.iter().any(|o| o.label == label) {
            return Err(c.err(
                &path,
                format!("label {label:?} is used twice: give one of them a distinct `label:`"),
            ));
        }
        let pool = (!built.is_fixed()).then(|| built.pool());
        let activator = match activator {
            Activator::Default => built.holds_requests().then_some(DEFAULT_HOLD_TIMEOUT),
            Activator::Off => None,
            Activator::On(t) => Some(t),
        };
        let activator = activator.filter(|_| pool.is_some());
        let start = built.start_replicas();
        out.push(AutoscalerSpec {
            label,
            entry,
            params,
            pool,
            bounds: built.bounds(),
            activator,
            start,
        });
    }
    Ok(out)
}

/// An entry's `activator:`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Activator {
    /// Not given: the autoscaler's own default.
    Default,
    /// `false`.
    Off,
    /// `true` (hold timeout 300 s) or `{ timeout_s }`.
    On(SimDuration),
}

/// Reads `activator: true | false | { timeout_s: S }`.
fn activator(c: &Ctx<'_>, path: &str, v: Option<Value>) -> Result<Activator, ConfigError> {
    let path = format!("{path}.activator");
    let bad = || {
        c.err(&path, "must be true, false or { timeout_s: <seconds> } (how long a request is held)")
    };
    match v {
        None => Ok(Activator::Default),
        Some(Value::Bool(false)) => Ok(Activator::Off),
        Some(Value::Bool(true)) => Ok(Activator::On(DEFAULT_HOLD_TIMEOUT)),
        Some(Value::Mapping(m)) => {
            let mut t = DEFAULT_HOLD_TIMEOUT;
            for (k, v) in &m {
                match (k.as_str(), v.as_f64()) {
                    (Some("timeout_s"), Some(x)) if x.is_finite() && x > 0.0 => {
                        t = SimDuration::from_secs_f64(x);
                    }
                    _ => return Err(bad()),
                }
            }
            Ok(Activator::On(t))
        }
        Some(_) => Err(bad()),
    }
}

/// `(name, label, params, activator)` of one entry.
fn entry(
    c: &Ctx<'_>,
    path: &str,
    v: &Value,
) -> Result<(String, Option<String>, Value, Activator), ConfigError> {
    match v {
        Value::String(s) => Ok((s.clone(), None, Value::Null, Activator::Default)),
        Value::Mapping(m) => {
            let mut m = m.clone();
            let label = match m.remove("label") {
                Some(Value::String(s)) => Some(s),
                None => None,
                Some(_) => return Err(c.err(&format!("{path}.label"), "must be a string")),
            };
            let act = activator(c, path, m.remove("activator"))?;
            if let Some(f) = m.remove("manifest") {
                let Value::String(f) = f else {
                    return Err(c.err(&format!("{path}.manifest"), "must be a file path"));
                };
                if !m.is_empty() {
                    return Err(c.err(
                        path,
                        "a `manifest:` entry takes only `label:` and `activator:` besides",
                    ));
                }
                let (name, mlabel, spec) = manifest(c, &format!("{path}.manifest"), &f)?;
                return Ok((name, label.or(Some(mlabel)), spec, act));
            }
            let name = match m.remove("name") {
                Some(Value::String(s)) => s,
                _ => {
                    return Err(
                        c.err(path, "needs `name: <autoscaler>` (a string) or `manifest: <file>`")
                    )
                }
            };
            let params = if m.is_empty() { Value::Null } else { Value::Mapping(m) };
            Ok((name, label, params, act))
        }
        _ => Err(c.err(path, "must be an autoscaler name or a mapping with `name:`")),
    }
}

/// Reads a manifest file (relative to the scenario's folder): `(autoscaler, label, spec)`.
fn manifest(c: &Ctx<'_>, path: &str, file: &str) -> Result<(String, String, Value), ConfigError> {
    let base = Path::new(c.file).parent().unwrap_or(Path::new("."));
    let full = base.join(file);
    let text = std::fs::read_to_string(&full)
        .map_err(|e| c.err(path, format!("= {file:?}: cannot read {}: {e}", full.display())))?;
    let shown = full.display().to_string();
    manifest_text(&text, &shown).map_err(|e| c.err(path, e))
}

/// Parses one manifest document: `(autoscaler, metadata.name, spec)`.
pub fn manifest_text(text: &str, file: &str) -> Result<(String, String, Value), String> {
    let v: Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("{file}: not a YAML manifest: {e}"))?;
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let (api, kind) = (s("apiVersion"), s("kind"));
    let name = match (api, kind) {
        ("autoscaling/v2", "HorizontalPodAutoscaler") => "hpa",
        ("keda.sh/v1alpha1", "ScaledObject") => "keda",
        _ => {
            return Err(format!(
                "{file}: apiVersion {api:?} kind {kind:?} is not supported: use autoscaling/v2 \
                 HorizontalPodAutoscaler or keda.sh/v1alpha1 ScaledObject"
            ))
        }
    };
    let label = v
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or(name)
        .to_string();
    let spec = v.get("spec").cloned().ok_or_else(|| format!("{file}: {kind} has no `spec:`"))?;
    Ok((name.to_string(), label, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_give_their_kind_label_and_spec() {
        let hpa = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\n\
                   metadata: { name: vllm-hpa }\nspec: { maxReplicas: 4 }\n";
        let (n, l, s) = manifest_text(hpa, "h.yaml").expect("loads");
        assert_eq!((n.as_str(), l.as_str()), ("hpa", "vllm-hpa"));
        assert_eq!(s.get("maxReplicas").and_then(Value::as_u64), Some(4));
        let so = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: { name: so }\n\
                  spec: { scaleTargetRef: { name: p } }\n";
        assert_eq!(manifest_text(so, "k.yaml").expect("loads").0, "keda");
        let bad = "apiVersion: apps/v1\nkind: Deployment\nspec: {}\n";
        let e = manifest_text(bad, "d.yaml").unwrap_err();
        assert!(e.starts_with("d.yaml: apiVersion \"apps/v1\" kind \"Deployment\""), "{e}");
        assert!(manifest_text("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\n", "x")
            .unwrap_err()
            .contains("no `spec:`"));
    }
}
