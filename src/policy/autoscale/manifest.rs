//! Autoscalers from Kubernetes manifests: an `autoscaling/v2` `HorizontalPodAutoscaler`
//! (→ `hpa`) or a `keda.sh/v1alpha1` `ScaledObject` (→ `keda`), written as users apply them.
//!
//! The file may hold several YAML documents (`---`), e.g. the Deployment and its autoscaler;
//! exactly one must be a supported autoscaler, the others are skipped. Its `spec` is the
//! autoscaler's parameters unchanged (so every rule of `hpa` / `keda` applies, and
//! `scaleTargetRef.name` names the pool); `metadata.name` becomes the label; `metadata`'s
//! other fields and `status` are ignored. Errors are one line and name the file.

use super::{find, AutoscaleCtx, Autoscaler};
use serde::Deserialize;

/// The manifests understood, for error messages.
pub const SUPPORTED_KINDS: &str =
    "autoscaling/v2 HorizontalPodAutoscaler, keda.sh/v1alpha1 ScaledObject";

/// The registry name of the autoscaler a manifest `apiVersion` + `kind` maps to.
fn entry_name(api_version: &str, kind: &str) -> Option<&'static str> {
    match (api_version, kind) {
        ("autoscaling/v2", "HorizontalPodAutoscaler") => Some("hpa"),
        ("keda.sh/v1alpha1", "ScaledObject") => Some("keda"),
        _ => None,
    }
}

fn field<'a>(v: &'a serde_yaml_ng::Value, key: &str) -> Option<&'a serde_yaml_ng::Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

fn field_str<'a>(v: &'a serde_yaml_ng::Value, key: &str) -> &'a str {
    field(v, key).and_then(serde_yaml_ng::Value::as_str).unwrap_or("")
}

/// Builds the autoscaler of manifest `text` (read from `file`): its registry name (`hpa` or
/// `keda`), the autoscaler, and its label (`metadata.name`, else the registry name).
pub fn from_manifest(
    text: &str,
    file: &str,
    ctx: &AutoscaleCtx<'_>,
) -> Result<(String, Box<dyn Autoscaler>, String), String> {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let v = serde_yaml_ng::Value::deserialize(doc)
            .map_err(|e| format!("{file}: not YAML: {}", one_line(&e.to_string())))?;
        if v.is_null() {
            continue; // an empty document (a trailing `---`)
        }
        let (api_version, kind) = (field_str(&v, "apiVersion"), field_str(&v, "kind"));
        match entry_name(api_version, kind) {
            Some(name) => found.push((name, v)),
            None => skipped.push(format!("{api_version} {kind}").trim().to_string()),
        }
    }
    let (name, manifest) = match found.len() {
        1 => found.remove(0),
        0 => {
            let seen = if skipped.is_empty() { "nothing".to_string() } else { skipped.join(", ") };
            return Err(format!(
                "{file}: no supported autoscaler (found {seen}): supported kinds are {SUPPORTED_KINDS}"
            ));
        }
        n => return Err(format!("{file}: {n} autoscalers in one file: give one per file")),
    };
    let label = field(&manifest, "metadata")
        .map(|m| field_str(m, "name"))
        .filter(|n| !n.is_empty())
        .unwrap_or(name)
        .to_string();
    let spec = field(&manifest, "spec").ok_or_else(|| {
        format!("{file}: {} `{label}` has no `spec`", field_str(&manifest, "kind"))
    })?;
    let entry =
        find(name).ok_or_else(|| format!("{file}: autoscaler `{name}` is not registered"))?;
    let built = (entry.build)(spec, ctx).map_err(|e| {
        format!("{file}: {} `{label}`: {}", field_str(&manifest, "kind"), one_line(&e))
    })?;
    Ok((name.to_string(), built, label))
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::autoscale::{PodPhase, PodView, ScaleInput, SimMetric};
    use crate::time::{SimDuration, SimTime, NANOS_PER_S};

    /// The Kubernetes documentation's HPA (walkthrough + "Configurable scaling behavior"),
    /// pointed at a vLLM pool with a second, per-pod queue metric.
    const K8S_DOCS_HPA: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: llama
spec:
  replicas: 2
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: llama-hpa
  namespace: default
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: llama
  minReplicas: 1
  maxReplicas: 10
  metrics:
  - type: Resource
    resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: 50
  - type: Pods
    pods:
      metric:
        name: vllm:num_requests_waiting
      target:
        type: AverageValue
        averageValue: 500m
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 300
      policies:
      - type: Percent
        value: 10
        periodSeconds: 60
      - type: Pods
        value: 5
        periodSeconds: 60
      selectPolicy: Min
    scaleUp:
      stabilizationWindowSeconds: 0
      policies:
      - type: Percent
        value: 100
        periodSeconds: 15
      - type: Pods
        value: 4
        periodSeconds: 15
      selectPolicy: Max
status:
  currentReplicas: 2
"#;

    /// The vLLM production-stack ScaledObject (`helm/templates/scaledobject-vllm.yaml` rendered
    /// for model `llama3` with the chart's example `keda` values).
    const VLLM_SCALEDOBJECT: &str = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: "vllm-llama3-scaledobject"
  namespace: default
  labels:
    model: llama3
    helm-release-name: vllm
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: "vllm-llama3-deployment-vllm"
  minReplicaCount: 1
  maxReplicaCount: 5
  pollingInterval: 15
  cooldownPeriod: 360
  idleReplicaCount: 0
  initialCooldownPeriod: 60
  fallback:
    failureThreshold: 3
    replicas: 2
  triggers:
    - type: prometheus
      metadata:
        serverAddress: http://prometheus-operated.monitoring.svc:9090
        metricName: vllm:num_requests_waiting
        query: sum(vllm:num_requests_waiting{model="llama3"})
        threshold: '5'
"#;

    fn secs(s: u64) -> SimTime {
        SimTime(s * NANOS_PER_S)
    }

    fn load(text: &str, pool: &str) -> Result<(String, Box<dyn Autoscaler>, String), String> {
        let names = vec![pool.to_string()];
        let ctx = AutoscaleCtx::new(&names, &[1]);
        from_manifest(text, "autoscaler.yaml", &ctx)
    }

    #[test]
    fn kubernetes_docs_hpa_loads_and_decides() {
        let (kind, mut a, label) = load(K8S_DOCS_HPA, "llama").expect("loads");
        assert_eq!((kind.as_str(), label.as_str()), ("hpa", "llama-hpa"));
        let metrics: Vec<SimMetric> = a.metrics().iter().map(|q| q.metric).collect();
        assert_eq!(metrics, vec![SimMetric::Cpu, SimMetric::Waiting]);
        assert_eq!(a.bounds(), (1, 10));
        assert_eq!(a.interval(), SimDuration::from_secs(15));
        // 2 Ready pods at 100 % CPU with 3 waiting each. cpu: 100 / 50 = 2 → ceil(2 × 2) = 4;
        // waiting: 3000m / 500m = 6 → ceil(6 × 2) = 12; max 12. Scale-up: Percent 100 →
        // ceil(2 × 2) = 4, Pods 4 → 6, Max → 6.
        let busy = PodView {
            phase: PodPhase::Ready,
            created: SimTime::ZERO,
            values: [Some(100.0), Some(3.0), None, None],
        };
        let pods = [busy, busy];
        let input = ScaleInput::new(secs(0), 2, &pods);
        assert_eq!(a.decide(&input), 6);
    }

    #[test]
    fn vllm_production_stack_scaledobject_loads_and_decides() {
        let pool = "vllm-llama3-deployment-vllm";
        let (kind, mut a, label) = load(VLLM_SCALEDOBJECT, pool).expect("loads");
        assert_eq!((kind.as_str(), label.as_str()), ("keda", "vllm-llama3-scaledobject"));
        assert_eq!(a.metrics()[0].metric, SimMetric::Waiting);
        assert_eq!(a.bounds(), (0, 5)); // idle 0 .. max 5
        assert_eq!(a.interval(), SimDuration::from_secs(15)); // gcd(15, 15)
        let pod = |waiting| PodView {
            phase: PodPhase::Ready,
            created: SimTime::ZERO,
            values: [Some(waiting), None, None, None],
        };
        let mut current = 1;
        // t=0: 12 waiting → active; HPA: ceil(12 / 5) = 3 (legacy limit max(2, 4) = 4).
        current = a.decide(&ScaleInput::new(secs(0), current, &[pod(12.0)]));
        assert_eq!(current, 3);
        // Then nothing waits: the HPA's legacy 300 s window holds 3 until t=300, then its
        // minReplicas 1; KEDA goes to idleReplicaCount 0 once 0 + 360 < now: t=375.
        let idle = [pod(0.0), pod(0.0), pod(0.0)];
        for t in (15..=360).step_by(15) {
            current = a.decide(&ScaleInput::new(secs(t), current, &idle[..current as usize]));
            let want = if t <= 300 { 3 } else { 1 };
            assert_eq!(current, want, "t={t}");
        }
        current = a.decide(&ScaleInput::new(secs(375), current, &idle[..1]));
        assert_eq!(current, 0);
    }

    #[test]
    fn wrong_kinds_are_one_line_errors_naming_the_file() {
        let err = load("apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: x }\n", "llama")
            .err()
            .expect("no autoscaler");
        assert!(err.starts_with("autoscaler.yaml:"), "{err}");
        assert!(err.contains("apps/v1 Deployment") && err.contains(SUPPORTED_KINDS), "{err}");
        let v1 = "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nspec: {}\n";
        let err = load(v1, "llama").err().expect("v1 is not supported");
        assert!(err.contains("autoscaling/v1 HorizontalPodAutoscaler"), "{err}");
        let two = format!("{VLLM_SCALEDOBJECT}---\n{K8S_DOCS_HPA}");
        assert!(load(&two, "llama").err().expect("two").contains("2 autoscalers"));
    }

    #[test]
    fn bad_specs_name_the_manifest_and_the_metric() {
        let hpa = K8S_DOCS_HPA.replace("vllm:num_requests_waiting", "vllm:queue_depth");
        let err = load(&hpa, "llama").err().expect("unknown metric");
        assert!(err.contains("llama-hpa") && err.contains("vllm:queue_depth"), "{err}");
        assert!(err.contains(&SimMetric::supported()) && !err.contains('\n'), "{err}");
        let so = VLLM_SCALEDOBJECT
            .replace("sum(vllm:num_requests_waiting{", "sum(my_queue{")
            .replace("metricName: vllm:num_requests_waiting", "metricName: my_queue");
        let err = load(&so, "vllm-llama3-deployment-vllm").err().expect("unknown metric");
        assert!(err.contains("ScaledObject `vllm-llama3-scaledobject`"), "{err}");
        assert!(err.contains("my_queue") && err.contains("vllm:num_requests_waiting"), "{err}");
        // The target must be a pool.
        let err = load(K8S_DOCS_HPA, "other").err().expect("no such pool");
        assert!(err.contains("llama") && err.contains("other"), "{err}");
    }
}
