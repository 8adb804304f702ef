//! `hpa`: the Kubernetes HorizontalPodAutoscaler (`autoscaling/v2`), reproduced decision for
//! decision.
//!
//! **Config.** The parameters are the HPA `spec` in Kubernetes camelCase, so the `spec` of a
//! real manifest deserialises as is: `scaleTargetRef {kind, name, apiVersion}` (or `pool: NAME`
//! for inline use; one of the two is required and `name` is the pool), `minReplicas` (1),
//! `maxReplicas` (required), `metrics` (default: `Resource cpu`, `Utilization 80`), `behavior`.
//! Simulator fields: `syncPeriodSeconds` (15, the controller's `--horizontal-pod-autoscaler-sync-
//! period`), `tolerance` (0.1, `--horizontal-pod-autoscaler-tolerance`),
//! `downscaleStabilizationSeconds` (300, `--horizontal-pod-autoscaler-downscale-stabilization`)
//! and, per metric, `windowSeconds` (0: the latest scrape; else an `avg_over_time` range).
//! Targets are Kubernetes quantities (`"5"`, `"500m"`, `"1k"`, `"2Ki"`), kept as milli-units
//! like the controller's `MilliValue()`.
//!
//! **Sync** (every `syncPeriodSeconds`, `horizontal.go: reconcileAutoscaler`):
//! 1. The first sync records `current` as a recommendation.
//! 2. `current == 0` and (`minReplicas != 0` or the HPA did not scale the target to zero
//!    itself): no action (`ScalingDisabled`). Scale-to-zero is condition based (HPAScaleToZero,
//!    beta and on by default in 1.37; kubernetes/kubernetes PR #135118): only a target this HPA
//!    scaled to zero is scaled back up, a manual (or initial) zero stays off.
//! 3. `current > maxReplicas` → max; `current < minReplicas` → min, with no stabilization.
//! 4. Otherwise one proposal per metric (`replica_calculator.go`), the maximum of the valid
//!    ones; if every metric is invalid, or some are and the maximum is below `current`, nothing
//!    changes (`ScalingActive=False`). A Pods/Resource metric is invalid when the pool has no
//!    pods or none of its counted pods has a sample.
//! 5. Normalisation: with `behavior`, stabilization over the recommendation history (the
//!    minimum over the scale-up window, the maximum over the scale-down window), then the
//!    rate limits of the policies from this HPA's own scale events within each policy's
//!    period, `selectPolicy` Max/Min/Disabled, then min/max; without `behavior`, the legacy path:
//!    the maximum recommendation over the last 300 s, clamped to
//!    `[minReplicas, min(maxReplicas, max(2 × current, 4))]`.
//!
//! **Per-metric proposals.** `u` is the usage ratio, `tolerance` the per-direction band
//! `1 − down ≤ u ≤ 1 + up` (`behavior.scale{Up,Down}.tolerance`, GA in 1.37 (KEP-4951), else the
//! cluster flag).
//! - `Pods` `AverageValue` and `Resource cpu` `Utilization`: the per-pod procedure. Deleting and
//!   Failed pods are ignored; Pending pods are *unready*; Starting/Ready pods without a sample
//!   are *missing*; for CPU a Starting pod *with* a sample is unready too. `u` is computed over
//!   the ready pods (mean of milli-values with integer division; for CPU
//!   `trunc(Σ usage × 100 / Σ request) / target` with a 1-core request per pod). Without
//!   missing pods and without (unready pods and `u > 1`): `current` if within tolerance, else
//!   `ceil(u × ready)`. Otherwise missing pods count at the target (`max(100 %, target)` for CPU)
//!   when `u < 1` and at 0 when `u > 1`, unready pods at 0 when `u > 1`, `u'` is recomputed;
//!   `current` if `u'` is within tolerance or on the other side of 1 than `u`, or if
//!   `ceil(u' × counted)` moves against `u'`; else `ceil(u' × counted)`.
//! - `Object`/`External` `Value`: `u = value / target`; `current == 0` → `ceil(u)`; within
//!   tolerance → `current`; else `ceil(u × readyPods)`.
//! - `Object`/`External` `AverageValue`: `u = value / (target × statusReplicas)`; within
//!   tolerance → `statusReplicas`; else `ceil(value / target)`.
//!
//! Object/External values are the *sum* over the pool's pods with a sample (a Prometheus
//! `sum(...)`; no sample at all → 0, like `sum(...) or vector(0)`), truncated to milli-units
//! like the Prometheus adapter; Pods/Resource values are per pod. With an activator in front
//! of the pool (scenario `activator:`), the requests it holds add to the Object/External
//! totals of `vllm:num_requests_waiting` and concurrency: that is the demand an HPA with
//! `minReplicas: 0` sees at zero pods.
//!
//! **Simplifications.** CPU readiness: a Ready pod's sample always counts (the controller also
//! ignores a sample taken within one metric window of the Ready transition during the first
//! 5 min, and counts a restarting pod that was Ready before; the simulator's pods carry no
//! readiness history). `Resource cpu` accepts only `Utilization` (the simulator models CPU as a
//! percentage of the request). `statusReplicas` is the number of pods neither deleting nor
//! failed. Metric `selector`s and `describedObject` are accepted and ignored (one pool, one
//! series per metric). `ContainerResource` is read like `Resource`.
//!
//! Sources (read, not copied): kubernetes/kubernetes `pkg/controller/podautoscaler/horizontal.go`
//! (`reconcileAutoscaler`, `computeReplicasForMetrics`, `stabilizeRecommendation`,
//! `stabilizeRecommendationWithBehaviors`, `convertDesiredReplicasWithBehaviorRate`,
//! `calculateScale{Up,Down}Limit*`, `getReplicasChangePerPeriod`, `storeScaleEvent`,
//! `convertDesiredReplicasWithRules`), `pkg/controller/podautoscaler/replica_calculator.go`
//! (`groupPods`, `calcPlainMetricReplicas`, `GetResourceReplicas`, `getUsageRatioReplicaCount`,
//! `GetExternalPerPodMetricReplicas`, `Tolerances.isWithin`),
//! `pkg/controller/podautoscaler/metrics/utilization.go`, `pkg/apis/autoscaling/v2/defaults.go`,
//! `pkg/controller/podautoscaler/config/v1alpha1/defaults.go`; the same behaviour functions in
//! karmada-io/karmada `pkg/controllers/federatedhpa/federatedhpa_controller.go`; routelab
//! `policies.md` §4.1 and §9.1.

use super::{
    parse_params, AutoscaleCtx, Autoscaler, AutoscalerEntry, MetricQuery, PodPhase, PodView,
    ScaleInput, Seconds, SimMetric, MAX_METRICS,
};
use crate::time::{SimDuration, SimTime};
use serde::Deserialize;
use std::fmt;

/// Registry entry.
pub static ENTRY: AutoscalerEntry = AutoscalerEntry {
    name: "hpa",
    summary:
        "Kubernetes HPA v2 (autoscaling/v2): metric ratios, tolerance, behavior, scale-to-zero",
    build,
};

/// The controller's default sync period (`--horizontal-pod-autoscaler-sync-period`).
pub const DEFAULT_SYNC_PERIOD: SimDuration = SimDuration::from_secs(15);
/// The controller's default tolerance (`--horizontal-pod-autoscaler-tolerance`).
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// The controller's default scale-down stabilization (`--horizontal-pod-autoscaler-downscale-
/// stabilization`), also the default `behavior.scaleDown.stabilizationWindowSeconds`.
pub const DEFAULT_DOWNSCALE_WINDOW: SimDuration = SimDuration::from_secs(300);
/// Validation limit of `stabilizationWindowSeconds` (one hour).
const MAX_WINDOW_S: i64 = 3600;
/// Validation limit of a policy's `periodSeconds` (30 min).
const MAX_PERIOD_S: i64 = 1800;
/// The default CPU target (`autoscaling.DefaultCPUUtilization`).
const DEFAULT_CPU_UTILIZATION_PCT: i64 = 80;
/// The request a pod's CPU percentage is relative to, in millicores (any value gives the same
/// ratios; one core keeps the integer arithmetic of the controller).
const CPU_REQUEST_MILLI: i64 = 1000;

// ------------------------------------------------------------------------------------------
// Kubernetes quantities
// ------------------------------------------------------------------------------------------

/// A Kubernetes `resource.Quantity` (`"5"`, `"500m"`, `"1.5k"`, `"2Gi"`, `"1e3"`, or a YAML
/// number).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity {
    /// The value in milli-units, rounded up like `Quantity.MilliValue()`.
    pub milli: i64,
    /// The value as a float (`AsApproximateFloat64()`).
    pub approx: f64,
}

impl Quantity {
    /// Parses the Kubernetes quantity syntax; `Err` names the text.
    pub fn parse(text: &str) -> Result<Quantity, String> {
        let bad = || format!("`{text}` is not a Kubernetes quantity (e.g. 5, 500m, 1.5k, 2Gi)");
        let s = text.trim();
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let number_len =
            rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(bad());
        }
        let (exp10, pow1024) = quantity_suffix(suffix).ok_or_else(bad)?;
        let digits = format!("{int_part}{frac_part}");
        if digits.len() > 30 {
            return Err(bad());
        }
        let mantissa: i128 = digits.parse().map_err(|_| bad())?;
        let scale10 = exp10 + 3 - frac_part.len() as i32;
        let milli = scaled_ceil(mantissa, scale10, pow1024).ok_or_else(bad)?;
        let milli = if negative { -milli } else { milli };
        let approx_abs: f64 = number.parse::<f64>().map_err(|_| bad())?
            * 10f64.powi(exp10)
            * 1024f64.powi(pow1024 as i32);
        Ok(Quantity { milli, approx: if negative { -approx_abs } else { approx_abs } })
    }
}

/// The power of ten and the power of 1024 of a quantity suffix.
fn quantity_suffix(suffix: &str) -> Option<(i32, u32)> {
    let decimal = |e: i32| Some((e, 0));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => Some((0, 1)),
        "Mi" => Some((0, 2)),
        "Gi" => Some((0, 3)),
        "Ti" => Some((0, 4)),
        "Pi" => Some((0, 5)),
        "Ei" => Some((0, 6)),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            exp.parse::<i32>().ok().filter(|e| e.abs() <= 30).map(|e| (e, 0))
        }
    }
}

/// `ceil(mantissa × 10^scale10 × 1024^pow1024)` for a non-negative mantissa, if it fits an i64.
fn scaled_ceil(mantissa: i128, scale10: i32, pow1024: u32) -> Option<i64> {
    let mut value = mantissa.checked_mul(1024i128.checked_pow(pow1024)?)?;
    if scale10 >= 0 {
        value = value.checked_mul(10i128.checked_pow(scale10 as u32)?)?;
    } else {
        let divisor = 10i128.checked_pow(scale10.unsigned_abs())?;
        value = (value + divisor - 1) / divisor;
    }
    i64::try_from(value).ok()
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Quantity, D::Error> {
        struct QuantityVisitor;
        impl serde::de::Visitor<'_> for QuantityVisitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Kubernetes quantity (a number or a string like \"500m\")")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                Quantity::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                Quantity::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Quantity::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                // `Display` of an f64 is its shortest exact decimal, never an exponent.
                Quantity::parse(&v.to_string()).map_err(E::custom)
            }
        }
        d.deserialize_any(QuantityVisitor)
    }
}

// ------------------------------------------------------------------------------------------
// The spec as written (autoscaling/v2 camelCase)
// ------------------------------------------------------------------------------------------

/// `spec` of a `HorizontalPodAutoscaler`, plus the simulator fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HpaSpec {
    scale_target_ref: Option<TargetRef>,
    pool: Option<String>,
    min_replicas: Option<u32>,
    max_replicas: Option<u32>,
    #[serde(default)]
    metrics: Vec<MetricSpec>,
    behavior: Option<BehaviorSpec>,
    sync_period_seconds: Option<Seconds>,
    tolerance: Option<f64>,
    downscale_stabilization_seconds: Option<Seconds>,
}

/// `scaleTargetRef` (a `CrossVersionObjectReference`); `name` is the pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    /// The pool (Deployment) name.
    pub name: String,
    /// `Deployment` usually; not checked.
    pub kind: Option<String>,
    /// `apps/v1` usually; not checked.
    pub api_version: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetricSpec {
    #[serde(rename = "type")]
    kind: String,
    pods: Option<SeriesSource>,
    object: Option<ObjectSource>,
    external: Option<SeriesSource>,
    resource: Option<ResourceSource>,
    container_resource: Option<ContainerResourceSource>,
    window_seconds: Option<Seconds>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SeriesSource {
    metric: MetricIdentifier,
    target: TargetSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ObjectSource {
    #[allow(dead_code)] // accepted and ignored: one pool, one series
    described_object: Option<serde_yaml_ng::Value>,
    metric: MetricIdentifier,
    target: TargetSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResourceSource {
    name: String,
    target: TargetSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ContainerResourceSource {
    name: String,
    #[allow(dead_code)] // one container per pod in the simulator
    container: String,
    target: TargetSpec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetricIdentifier {
    name: String,
    #[allow(dead_code)] // accepted and ignored: one series per metric
    selector: Option<serde_yaml_ng::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TargetSpec {
    #[serde(rename = "type")]
    kind: String,
    value: Option<Quantity>,
    average_value: Option<Quantity>,
    average_utilization: Option<i64>,
}

/// `spec.behavior` as written (also KEDA's `advanced.horizontalPodAutoscalerConfig.behavior`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BehaviorSpec {
    scale_up: Option<RulesSpec>,
    scale_down: Option<RulesSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RulesSpec {
    stabilization_window_seconds: Option<i64>,
    select_policy: Option<SelectPolicy>,
    policies: Option<Vec<PolicySpec>>,
    tolerance: Option<Quantity>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicySpec {
    #[serde(rename = "type")]
    kind: PolicyKind,
    value: i64,
    period_seconds: i64,
}

/// How the policies of one direction combine (`selectPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SelectPolicy {
    /// The policy allowing the largest change (default).
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// A scaling policy's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PolicyKind {
    /// At most `value` pods per period.
    Pods,
    /// At most `value` % of the replicas at the period's start.
    Percent,
}

// ------------------------------------------------------------------------------------------
// The resolved configuration (also built by `keda`)
// ------------------------------------------------------------------------------------------

/// A validated HPA, ready for [`HpaCore::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct HpaConfig {
    /// `minReplicas` (0 only with an Object or External metric).
    pub min_replicas: u32,
    /// `maxReplicas`.
    pub max_replicas: u32,
    /// The metrics, in spec order (at most [`MAX_METRICS`]).
    pub metrics: Vec<MetricRule>,
    /// `behavior` with the defaults filled in; `None`: the legacy path.
    pub behavior: Option<Behavior>,
    /// Time between syncs.
    pub sync_period: SimDuration,
    /// The cluster tolerance, used where `behavior` sets none.
    pub tolerance: f64,
    /// The legacy path's scale-down stabilization window.
    pub downscale_window: SimDuration,
}

/// One metric of the HPA.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricRule {
    /// The metric source type.
    pub source: Source,
    /// The target.
    pub target: Target,
    /// What the engine scrapes for it.
    pub query: MetricQuery,
}

/// An HPA metric source type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `Pods`: per-pod values, `AverageValue` target.
    Pods,
    /// `Resource cpu` (or `ContainerResource`): per-pod CPU percentages, CPU readiness rules.
    Resource,
    /// `Object`: one value for the pool.
    Object,
    /// `External`: one value for the pool (KEDA's triggers).
    External,
}

/// A metric target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `averageUtilization`, percent of the request.
    Utilization(i64),
    /// `averageValue`, milli-units.
    AverageValue(i64),
    /// `value`, milli-units.
    Value(i64),
}

/// `behavior` with defaults (`defaults.go: GenerateHPAScale{Up,Down}Rules`).
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// Scale-up rules.
    pub scale_up: Rules,
    /// Scale-down rules.
    pub scale_down: Rules,
}

/// One direction's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// `stabilizationWindowSeconds`.
    pub window: SimDuration,
    /// `selectPolicy`.
    pub select: SelectPolicy,
    /// `policies`.
    pub policies: Vec<Policy>,
    /// `tolerance` of this direction; `None`: the cluster tolerance.
    pub tolerance: Option<f64>,
}

/// One scaling policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Pods or Percent.
    pub kind: PolicyKind,
    /// Its value.
    pub value: i64,
    /// `periodSeconds`.
    pub period: SimDuration,
}

impl HpaSpec {
    /// Validates the spec: the pool index and the configuration.
    pub fn resolve(&self, ctx: &AutoscaleCtx<'_>) -> Result<(u16, HpaConfig), String> {
        let ref_name = self.scale_target_ref.as_ref().map(|r| r.name.as_str());
        let pool = target_pool(ctx, ref_name, self.pool.as_deref())?;
        let max_replicas = self.max_replicas.ok_or("`maxReplicas` is required")?;
        let metrics = if self.metrics.is_empty() {
            vec![default_cpu_rule()]
        } else {
            self.metrics.iter().map(MetricSpec::resolve).collect::<Result<_, _>>()?
        };
        let downscale_window = positive_or(
            self.downscale_stabilization_seconds,
            DEFAULT_DOWNSCALE_WINDOW,
            "downscaleStabilizationSeconds",
            true,
        )?;
        let behavior = self.behavior.as_ref().map(|b| b.resolve(downscale_window)).transpose()?;
        let cfg = HpaConfig {
            min_replicas: self.min_replicas.unwrap_or(1),
            max_replicas,
            metrics,
            behavior,
            sync_period: positive_or(
                self.sync_period_seconds,
                DEFAULT_SYNC_PERIOD,
                "syncPeriodSeconds",
                false,
            )?,
            tolerance: cluster_tolerance(self.tolerance)?,
            downscale_window,
        };
        cfg.validate()?;
        Ok((pool, cfg))
    }
}

/// The pool named by `scaleTargetRef.name` or `pool:` (one required; both must agree).
pub fn target_pool(
    ctx: &AutoscaleCtx<'_>,
    ref_name: Option<&str>,
    pool: Option<&str>,
) -> Result<u16, String> {
    let name = match (ref_name, pool) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!("`scaleTargetRef.name` `{a}` and `pool` `{b}` disagree"));
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => return Err("needs `scaleTargetRef.name` or `pool`".into()),
    };
    ctx.pool_index(name)
}

/// The cluster tolerance flag, validated.
pub fn cluster_tolerance(t: Option<f64>) -> Result<f64, String> {
    match t {
        None => Ok(DEFAULT_TOLERANCE),
        Some(t) if t.is_finite() && t >= 0.0 => Ok(t),
        Some(t) => Err(format!("`tolerance` must be a number >= 0, got {t}")),
    }
}

/// A duration field in seconds: positive (or non-negative with `zero_ok`) and finite.
pub fn positive_or(
    v: Option<Seconds>,
    default: SimDuration,
    field: &str,
    zero_ok: bool,
) -> Result<SimDuration, String> {
    match v {
        None => Ok(default),
        Some(Seconds(s)) if s.is_finite() && (s > 0.0 || zero_ok && s == 0.0) => {
            Ok(Seconds(s).dur())
        }
        Some(Seconds(s)) => Err(format!("`{field}` must be a positive number of seconds, got {s}")),
    }
}

fn default_cpu_rule() -> MetricRule {
    MetricRule {
        source: Source::Resource,
        target: Target::Utilization(DEFAULT_CPU_UTILIZATION_PCT),
        query: latest(SimMetric::Cpu),
    }
}

fn latest(metric: SimMetric) -> MetricQuery {
    MetricQuery { metric, window: SimDuration::ZERO, max: false }
}

/// The simulator metric called `name`, or a one-line error listing the supported names.
pub fn sim_metric(name: &str) -> Result<SimMetric, String> {
    SimMetric::from_name(name).ok_or_else(|| {
        format!("unknown metric `{name}`: supported metrics are {}", SimMetric::supported())
    })
}

impl MetricSpec {
    fn resolve(&self) -> Result<MetricRule, String> {
        let given = [
            ("pods", self.pods.is_some()),
            ("object", self.object.is_some()),
            ("external", self.external.is_some()),
            ("resource", self.resource.is_some()),
            ("containerResource", self.container_resource.is_some()),
        ];
        let (source, metric, target) = match self.kind.as_str() {
            "Pods" => {
                let s = self.pods.as_ref().ok_or("metric type Pods needs `pods`")?;
                let target = s.target.resolve(&["AverageValue"], "Pods")?;
                (Source::Pods, sim_metric(&s.metric.name)?, target)
            }
            "Object" => {
                let s = self.object.as_ref().ok_or("metric type Object needs `object`")?;
                let target = s.target.resolve(&["Value", "AverageValue"], "Object")?;
                (Source::Object, sim_metric(&s.metric.name)?, target)
            }
            "External" => {
                let s = self.external.as_ref().ok_or("metric type External needs `external`")?;
                let target = s.target.resolve(&["Value", "AverageValue"], "External")?;
                (Source::External, sim_metric(&s.metric.name)?, target)
            }
            "Resource" => {
                let s = self.resource.as_ref().ok_or("metric type Resource needs `resource`")?;
                (Source::Resource, resource_metric(&s.name)?, s.target.resolve_cpu()?)
            }
            "ContainerResource" => {
                let s = self
                    .container_resource
                    .as_ref()
                    .ok_or("metric type ContainerResource needs `containerResource`")?;
                (Source::Resource, resource_metric(&s.name)?, s.target.resolve_cpu()?)
            }
            other => {
                return Err(format!(
                    "metric type `{other}` is not supported: Pods, Object, External, Resource, \
                     ContainerResource"
                ))
            }
        };
        let extra: Vec<&str> = given
            .iter()
            .filter(|(field, set)| *set && !field.eq_ignore_ascii_case(&self.kind))
            .map(|(field, _)| *field)
            .collect();
        if !extra.is_empty() {
            return Err(format!("metric type {} must not set `{}`", self.kind, extra.join("`, `")));
        }
        let window = positive_or(self.window_seconds, SimDuration::ZERO, "windowSeconds", true)?;
        Ok(MetricRule { source, target, query: MetricQuery { metric, window, max: false } })
    }
}

fn resource_metric(name: &str) -> Result<SimMetric, String> {
    if name == "cpu" {
        Ok(SimMetric::Cpu)
    } else {
        Err(format!("resource `{name}` is not simulated: the supported resource is cpu"))
    }
}

impl TargetSpec {
    fn resolve(&self, allowed: &[&str], source: &str) -> Result<Target, String> {
        if !allowed.contains(&self.kind.as_str()) {
            return Err(format!(
                "{source} metrics take target.type {}, not `{}`",
                allowed.join(" or "),
                self.kind
            ));
        }
        let positive = |q: Option<Quantity>, field: &str| match q {
            Some(q) if q.milli > 0 => Ok(q.milli),
            Some(q) => Err(format!("target.{field} must be > 0, got {}", q.approx)),
            None => Err(format!("target.type {} needs target.{field}", self.kind)),
        };
        match self.kind.as_str() {
            "Value" => positive(self.value, "value").map(Target::Value),
            _ => positive(self.average_value, "averageValue").map(Target::AverageValue),
        }
    }

    fn resolve_cpu(&self) -> Result<Target, String> {
        if self.kind != "Utilization" {
            return Err(format!(
                "Resource cpu takes target.type Utilization (CPU is simulated as a percentage of \
                 the request), not `{}`",
                self.kind
            ));
        }
        match self.average_utilization {
            Some(u) if u > 0 => Ok(Target::Utilization(u)),
            Some(u) => Err(format!("target.averageUtilization must be > 0, got {u}")),
            None => Err("target.type Utilization needs target.averageUtilization".into()),
        }
    }
}

impl BehaviorSpec {
    /// Fills the defaults (`GenerateHPAScaleUpRules`: 0 s, {Pods 4, Percent 100} per 15 s, Max;
    /// `GenerateHPAScaleDownRules`: `downscale_window`, {Percent 100} per 15 s, Max) and
    /// validates.
    pub fn resolve(&self, downscale_window: SimDuration) -> Result<Behavior, String> {
        let up_default = Rules {
            window: SimDuration::ZERO,
            select: SelectPolicy::Max,
            policies: vec![policy(PolicyKind::Pods, 4, 15), policy(PolicyKind::Percent, 100, 15)],
            tolerance: None,
        };
        let down_default = Rules {
            window: downscale_window,
            select: SelectPolicy::Max,
            policies: vec![policy(PolicyKind::Percent, 100, 15)],
            tolerance: None,
        };
        Ok(Behavior {
            scale_up: RulesSpec::fill(self.scale_up.as_ref(), up_default, "scaleUp")?,
            scale_down: RulesSpec::fill(self.scale_down.as_ref(), down_default, "scaleDown")?,
        })
    }
}

fn policy(kind: PolicyKind, value: i64, period_s: u64) -> Policy {
    Policy { kind, value, period: SimDuration::from_secs(period_s) }
}

impl RulesSpec {
    fn fill(spec: Option<&RulesSpec>, default: Rules, dir: &str) -> Result<Rules, String> {
        let Some(spec) = spec else { return Ok(default) };
        let window = match spec.stabilization_window_seconds {
            None => default.window,
            Some(w) if (0..=MAX_WINDOW_S).contains(&w) => SimDuration::from_secs(w as u64),
            Some(w) => {
                return Err(format!(
                "behavior.{dir}.stabilizationWindowSeconds must be in 0..={MAX_WINDOW_S}, got {w}"
            ))
            }
        };
        let policies = match &spec.policies {
            None => default.policies,
            Some(ps) if ps.is_empty() => {
                return Err(format!("behavior.{dir}.policies must list at least one policy"))
            }
            Some(ps) => ps.iter().map(|p| p.resolve(dir)).collect::<Result<_, _>>()?,
        };
        let tolerance = match spec.tolerance {
            None => None,
            Some(q) if q.approx >= 0.0 => Some(q.approx),
            Some(q) => {
                return Err(format!("behavior.{dir}.tolerance must be >= 0, got {}", q.approx))
            }
        };
        Ok(Rules {
            window,
            select: spec.select_policy.unwrap_or(default.select),
            policies,
            tolerance,
        })
    }
}

impl PolicySpec {
    fn resolve(&self, dir: &str) -> Result<Policy, String> {
        if self.value <= 0 {
            return Err(format!("behavior.{dir} policy value must be > 0, got {}", self.value));
        }
        if !(1..=MAX_PERIOD_S).contains(&self.period_seconds) {
            return Err(format!(
                "behavior.{dir} policy periodSeconds must be in 1..={MAX_PERIOD_S}, got {}",
                self.period_seconds
            ));
        }
        Ok(policy(self.kind, self.value, self.period_seconds as u64))
    }
}

impl HpaConfig {
    /// Checks the bounds and metric rules the API server would.
    pub fn validate(&self) -> Result<(), String> {
        if self.metrics.is_empty() || self.metrics.len() > MAX_METRICS {
            return Err(format!(
                "an HPA takes 1..={MAX_METRICS} metrics in routelab, got {}",
                self.metrics.len()
            ));
        }
        if self.max_replicas == 0 {
            return Err("`maxReplicas` must be at least 1".into());
        }
        if self.min_replicas > self.max_replicas {
            return Err(format!(
                "`minReplicas` ({}) must not exceed `maxReplicas` ({})",
                self.min_replicas, self.max_replicas
            ));
        }
        let pool_metric =
            self.metrics.iter().any(|m| matches!(m.source, Source::Object | Source::External));
        if self.min_replicas == 0 && !pool_metric {
            return Err("`minReplicas: 0` needs at least one Object or External metric".into());
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// The controller
// ------------------------------------------------------------------------------------------

/// A timestamped replica count: a recommendation, or a scale event's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamped {
    at: SimTime,
    replicas: u32,
}

/// The usage-ratio band within which nothing changes.
#[derive(Debug, Clone, Copy)]
struct Tolerances {
    down: f64,
    up: f64,
}

impl Tolerances {
    fn within(self, ratio: f64) -> bool {
        1.0 - self.down <= ratio && ratio <= 1.0 + self.up
    }
}

/// The HPA controller's state for one HPA: recommendation history, its own scale events and
/// the scaled-to-zero condition. `keda` drives one through [`HpaCore::sync`].
#[derive(Debug, Clone)]
pub struct HpaCore {
    cfg: HpaConfig,
    queries: Vec<MetricQuery>,
    recommendations: Vec<Stamped>,
    up_events: Vec<Stamped>,
    down_events: Vec<Stamped>,
    scaled_to_zero: bool,
}

impl HpaCore {
    /// A controller that has not synced yet (`cfg` validated by [`HpaConfig::validate`]).
    pub fn new(cfg: HpaConfig) -> HpaCore {
        let queries = cfg.metrics.iter().map(|m| m.query).collect();
        HpaCore {
            cfg,
            queries,
            recommendations: Vec::new(),
            up_events: Vec::new(),
            down_events: Vec::new(),
            scaled_to_zero: false,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &HpaConfig {
        &self.cfg
    }

    /// The metric queries, in metric order.
    pub fn queries(&self) -> &[MetricQuery] {
        &self.queries
    }

    /// One sync: the new `spec.replicas` from `current`, the pods (values in metric order) and,
    /// for Object/External metrics, the pool's value of metric `k` in `totals[k]`.
    pub fn sync(&mut self, now: SimTime, current: u32, pods: &[PodView], totals: &[f64]) -> u32 {
        if self.recommendations.is_empty() {
            self.recommendations.push(Stamped { at: now, replicas: current });
        }
        let (min, max) = (self.cfg.min_replicas, self.cfg.max_replicas);
        let desired = if current == 0 && (min != 0 || !self.scaled_to_zero) {
            return 0; // ScalingDisabled
        } else if current > max {
            max
        } else if current < min {
            min
        } else {
            let Some(raw) = self.replicas_for_metrics(current, pods, totals) else {
                return current; // ScalingActive=False: no valid metric
            };
            match self.cfg.behavior.clone() {
                Some(b) => self.normalize_with_behavior(&b, now, current, raw),
                None => self.normalize_legacy(now, current, raw),
            }
        };
        if desired != current {
            self.store_scale_event(now, current, desired);
        }
        self.scaled_to_zero = desired == 0;
        desired
    }

    fn tolerances(&self) -> Tolerances {
        let dir = |r: Option<&Rules>| r.and_then(|r| r.tolerance).unwrap_or(self.cfg.tolerance);
        let b = self.cfg.behavior.as_ref();
        Tolerances { down: dir(b.map(|b| &b.scale_down)), up: dir(b.map(|b| &b.scale_up)) }
    }

    /// The maximum proposal over the valid metrics; `None` when no change may be made.
    fn replicas_for_metrics(&self, current: u32, pods: &[PodView], totals: &[f64]) -> Option<u32> {
        let tol = self.tolerances();
        let mut best = 0u32;
        let mut invalid = 0usize;
        for (k, rule) in self.cfg.metrics.iter().enumerate() {
            let total = totals.get(k).copied().unwrap_or(0.0);
            match metric_proposal(rule, k, current, pods, total, tol) {
                Some(p) => best = best.max(p),
                None => invalid += 1,
            }
        }
        let n = self.cfg.metrics.len();
        if invalid >= n || (invalid > 0 && best < current) {
            None
        } else {
            Some(best)
        }
    }

    fn normalize_with_behavior(
        &mut self,
        b: &Behavior,
        now: SimTime,
        current: u32,
        raw: u32,
    ) -> u32 {
        let stabilized = self.stabilize(now, current, raw, b.scale_up.window, b.scale_down.window);
        if stabilized > current {
            let limit = self.scale_up_limit(now, current, &b.scale_up).max(i64::from(current));
            let max_allowed = i64::from(self.cfg.max_replicas).min(limit);
            clamp_u32(i64::from(stabilized).min(max_allowed))
        } else if stabilized < current {
            let limit = self.scale_down_limit(now, current, &b.scale_down).min(i64::from(current));
            let min_allowed = i64::from(self.cfg.min_replicas).max(limit);
            clamp_u32(i64::from(stabilized).max(min_allowed))
        } else {
            stabilized
        }
    }

    /// `stabilizeRecommendationWithBehaviors`: bound `current` by the minimum recommendation of
    /// the scale-up window and the maximum of the scale-down window, then record `raw`.
    fn stabilize(
        &mut self,
        now: SimTime,
        current: u32,
        raw: u32,
        up_window: SimDuration,
        down_window: SimDuration,
    ) -> u32 {
        let (mut up, mut down) = (raw, raw);
        let mut reusable = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if is_within(r.at, now, up_window) {
                up = up.min(r.replicas);
            }
            if is_within(r.at, now, down_window) {
                down = down.max(r.replicas);
            }
            if is_older(r.at, now, up_window) && is_older(r.at, now, down_window) {
                reusable = Some(i);
            }
        }
        record(&mut self.recommendations, reusable, Stamped { at: now, replicas: raw });
        current.max(up).min(down)
    }

    fn scale_up_limit(&self, now: SimTime, current: u32, rules: &Rules) -> i64 {
        let combine: fn(i64, i64) -> i64 = match rules.select {
            SelectPolicy::Disabled => return i64::from(current),
            SelectPolicy::Min => i64::min,
            SelectPolicy::Max => i64::max,
        };
        let proposals = rules.policies.iter().map(|p| {
            let start = self.period_start(now, current, p.period);
            match p.kind {
                PolicyKind::Pods => start + p.value,
                PolicyKind::Percent => {
                    (start as f64 * (1.0 + p.value as f64 / 100.0)).ceil() as i64
                }
            }
        });
        proposals.reduce(combine).unwrap_or(i64::from(current))
    }

    fn scale_down_limit(&self, now: SimTime, current: u32, rules: &Rules) -> i64 {
        // Max (default) is the largest change, hence the smallest count.
        let combine: fn(i64, i64) -> i64 = match rules.select {
            SelectPolicy::Disabled => return i64::from(current),
            SelectPolicy::Min => i64::max,
            SelectPolicy::Max => i64::min,
        };
        let proposals = rules.policies.iter().map(|p| {
            let start = self.period_start(now, current, p.period);
            match p.kind {
                PolicyKind::Pods => start - p.value,
                PolicyKind::Percent => (start as f64 * (1.0 - p.value as f64 / 100.0)) as i64,
            }
        });
        proposals.reduce(combine).unwrap_or(i64::from(current))
    }

    /// The replica count at the start of a policy period: `current − added + removed` by this
    /// HPA within `period`.
    fn period_start(&self, now: SimTime, current: u32, period: SimDuration) -> i64 {
        i64::from(current) - change_within(&self.up_events, now, period)
            + change_within(&self.down_events, now, period)
    }

    /// The legacy path (`normalizeDesiredReplicas`).
    fn normalize_legacy(&mut self, now: SimTime, current: u32, raw: u32) -> u32 {
        let window = self.cfg.downscale_window;
        let mut best = raw;
        let mut reusable = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if is_older(r.at, now, window) {
                reusable = Some(i);
            } else {
                best = best.max(r.replicas);
            }
        }
        record(&mut self.recommendations, reusable, Stamped { at: now, replicas: raw });
        let scale_up_limit = current.saturating_mul(2).max(4);
        let max_allowed = self.cfg.max_replicas.min(scale_up_limit);
        if best < self.cfg.min_replicas {
            self.cfg.min_replicas
        } else {
            best.min(max_allowed)
        }
    }

    /// `storeScaleEvent`: only with `behavior`; an event older than the direction's longest
    /// policy period is reused.
    fn store_scale_event(&mut self, now: SimTime, previous: u32, desired: u32) {
        let Some(b) = &self.cfg.behavior else { return };
        let (events, rules, change) = if desired > previous {
            (&mut self.up_events, &b.scale_up, desired - previous)
        } else {
            (&mut self.down_events, &b.scale_down, previous - desired)
        };
        let longest = rules.policies.iter().map(|p| p.period).max().unwrap_or(SimDuration::ZERO);
        let reusable = events.iter().rposition(|e| is_older(e.at, now, longest));
        record(events, reusable, Stamped { at: now, replicas: change });
    }
}

/// Replaces entry `reusable` with `new`, or appends it.
fn record(list: &mut Vec<Stamped>, reusable: Option<usize>, new: Stamped) {
    match reusable {
        Some(i) => list[i] = new,
        None => list.push(new),
    }
}

/// `at.After(now − span)`.
fn is_within(at: SimTime, now: SimTime, span: SimDuration) -> bool {
    i128::from(at.0) > i128::from(now.0) - i128::from(span.0)
}

/// `at.Before(now − span)`.
fn is_older(at: SimTime, now: SimTime, span: SimDuration) -> bool {
    i128::from(at.0) < i128::from(now.0) - i128::from(span.0)
}

/// The replicas changed by the events within `period` before `now`.
fn change_within(events: &[Stamped], now: SimTime, period: SimDuration) -> i64 {
    events.iter().filter(|e| is_within(e.at, now, period)).map(|e| i64::from(e.replicas)).sum()
}

fn clamp_u32(v: i64) -> u32 {
    v.clamp(0, i64::from(u32::MAX)) as u32
}

/// `int32(math.Ceil(x))`, saturating (NaN → 0).
fn ceil_replicas(x: f64) -> u32 {
    x.ceil() as u32
}

/// A sample in milli-units, truncated like the Prometheus adapter's
/// `NewMilliQuantity(int64(v * 1000))`.
fn to_milli(v: f64) -> i64 {
    (v * 1000.0) as i64
}

/// One metric's proposal; `None` when the metric is invalid this sync.
fn metric_proposal(
    rule: &MetricRule,
    k: usize,
    current: u32,
    pods: &[PodView],
    total: f64,
    tol: Tolerances,
) -> Option<u32> {
    match (rule.source, rule.target) {
        (Source::Resource, Target::Utilization(pct)) => {
            let groups = group_pods(pods, k, true);
            let fallback = CPU_REQUEST_MILLI * pct.max(100) / 100;
            let ratio = move |sum: i64, n: usize| {
                let utilization_pct = sum * 100 / (n as i64 * CPU_REQUEST_MILLI);
                utilization_pct as f64 / pct as f64
            };
            per_pod_replicas(&groups, current, tol, ratio, fallback)
        }
        (Source::Pods | Source::Resource, Target::AverageValue(t)) => {
            let groups = group_pods(pods, k, rule.source == Source::Resource);
            let ratio = move |sum: i64, n: usize| (sum / n as i64) as f64 / t as f64;
            per_pod_replicas(&groups, current, tol, ratio, t)
        }
        (Source::Object | Source::External, Target::Value(t)) => {
            value_replicas(to_milli(total), t, current, pods, tol)
        }
        (Source::Object | Source::External, Target::AverageValue(t)) => {
            Some(average_value_replicas(to_milli(total), t, status_replicas(pods), tol))
        }
        _ => None, // rejected by the spec parser
    }
}

/// `groupPods` of one metric, keeping only the sums the ratios need.
#[derive(Debug, Clone, Copy, Default)]
struct PodGroups {
    /// Pods matching the selector (any phase).
    pods: usize,
    /// Counted pods with a sample, and the sum of their milli-values.
    ready: usize,
    ready_sum: i64,
    /// Running pods without a sample.
    missing: usize,
    /// Pending pods (and for CPU: not-Ready pods with a sample).
    unready: usize,
}

fn group_pods(pods: &[PodView], k: usize, cpu: bool) -> PodGroups {
    let mut g = PodGroups { pods: pods.len(), ..PodGroups::default() };
    for pod in pods {
        match (pod.phase, pod.values[k]) {
            (PodPhase::Deleting | PodPhase::Failed, _) => {}
            (PodPhase::Pending, _) => g.unready += 1,
            (_, None) => g.missing += 1,
            (PodPhase::Starting, Some(_)) if cpu => g.unready += 1,
            (_, Some(v)) => {
                g.ready += 1;
                g.ready_sum +=
                    if cpu { (v * CPU_REQUEST_MILLI as f64 / 100.0) as i64 } else { to_milli(v) };
            }
        }
    }
    g
}

/// The per-pod procedure of `calcPlainMetricReplicas` / `GetResourceReplicas`. `ratio(sum, n)`
/// is the usage ratio of `n` pods summing to `sum`; `fallback_down` is the value a missing pod
/// counts with on a scale-down.
fn per_pod_replicas(
    g: &PodGroups,
    current: u32,
    tol: Tolerances,
    ratio: impl Fn(i64, usize) -> f64,
    fallback_down: i64,
) -> Option<u32> {
    if g.pods == 0 || g.ready == 0 {
        return None; // no pods, or no metrics for the counted pods
    }
    let usage = ratio(g.ready_sum, g.ready);
    let up_with_unready = g.unready > 0 && usage > 1.0;
    if !up_with_unready && g.missing == 0 {
        return Some(if tol.within(usage) {
            current
        } else {
            ceil_replicas(usage * g.ready as f64)
        });
    }
    let (mut sum, mut n) = (g.ready_sum, g.ready);
    if g.missing > 0 && usage < 1.0 {
        sum += fallback_down * g.missing as i64;
        n += g.missing;
    } else if g.missing > 0 && usage > 1.0 {
        n += g.missing;
    }
    if up_with_unready {
        n += g.unready;
    }
    let new_usage = ratio(sum, n);
    let flipped = (usage < 1.0 && new_usage > 1.0) || (usage > 1.0 && new_usage < 1.0);
    if tol.within(new_usage) || flipped {
        return Some(current);
    }
    let proposal = ceil_replicas(new_usage * n as f64);
    let against =
        (new_usage < 1.0 && proposal > current) || (new_usage > 1.0 && proposal < current);
    Some(if against { current } else { proposal })
}

/// Object/External `Value` (`getUsageRatioReplicaCount`).
fn value_replicas(
    total_milli: i64,
    target_milli: i64,
    current: u32,
    pods: &[PodView],
    tol: Tolerances,
) -> Option<u32> {
    let usage = total_milli as f64 / target_milli as f64;
    if current == 0 {
        return Some(ceil_replicas(usage));
    }
    if tol.within(usage) {
        return Some(current);
    }
    if pods.is_empty() {
        return None; // "no pods returned by selector"
    }
    let ready = pods.iter().filter(|p| p.phase == PodPhase::Ready).count();
    Some(ceil_replicas(usage * ready as f64))
}

/// Object/External `AverageValue` (`GetExternalPerPodMetricReplicas`).
fn average_value_replicas(
    total_milli: i64,
    target_milli: i64,
    status: u32,
    tol: Tolerances,
) -> u32 {
    let usage = total_milli as f64 / (target_milli as f64 * f64::from(status));
    if tol.within(usage) {
        status
    } else {
        ceil_replicas(total_milli as f64 / target_milli as f64)
    }
}

/// `scale.status.replicas`: pods neither deleting nor failed.
fn status_replicas(pods: &[PodView]) -> u32 {
    pods.iter().filter(|p| !matches!(p.phase, PodPhase::Deleting | PodPhase::Failed)).count() as u32
}

/// Per metric, the sum over the pods with a sample (what a Prometheus `sum(...)` returns).
pub fn pool_sums(pods: &[PodView]) -> [f64; MAX_METRICS] {
    let mut sums = [0.0; MAX_METRICS];
    for pod in pods {
        for (sum, v) in sums.iter_mut().zip(pod.values) {
            *sum += v.unwrap_or(0.0);
        }
    }
    sums
}

// ------------------------------------------------------------------------------------------
// The autoscaler
// ------------------------------------------------------------------------------------------

struct Hpa {
    pool: u16,
    core: HpaCore,
}

impl Autoscaler for Hpa {
    fn pool(&self) -> u16 {
        self.pool
    }
    fn interval(&self) -> SimDuration {
        self.core.config().sync_period
    }
    fn metrics(&self) -> &[MetricQuery] {
        self.core.queries()
    }
    fn decide(&mut self, input: &ScaleInput<'_>) -> u32 {
        let mut totals = pool_sums(input.pods);
        for (t, q) in totals.iter_mut().zip(self.core.queries()) {
            if q.metric.counts_held() {
                *t += f64::from(input.pool.held);
            }
        }
        self.core.sync(input.now, input.current, input.pods, &totals)
    }
    fn bounds(&self) -> (u32, u32) {
        (self.core.config().min_replicas, self.core.config().max_replicas)
    }
}

/// Builds an `hpa` from its spec.
pub fn build(
    v: &serde_yaml_ng::Value,
    ctx: &AutoscaleCtx<'_>,
) -> Result<Box<dyn Autoscaler>, String> {
    let spec: HpaSpec = parse_params(v)?;
    let (pool, cfg) = spec.resolve(ctx)?;
    Ok(Box::new(Hpa { pool, core: HpaCore::new(cfg) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> SimTime {
        SimTime(s * crate::time::NANOS_PER_S)
    }

    fn pod(phase: PodPhase, v: Option<f64>) -> PodView {
        PodView { phase, created: SimTime::ZERO, values: [v, None, None, None] }
    }

    fn ready(v: f64) -> PodView {
        pod(PodPhase::Ready, Some(v))
    }

    fn pools() -> Vec<String> {
        vec!["llama".to_string()]
    }

    fn core(yaml: &str) -> HpaCore {
        let names = pools();
        let ctx = AutoscaleCtx::new(&names, &[1]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
        let spec: HpaSpec = parse_params(&v).expect("spec parses");
        HpaCore::new(spec.resolve(&ctx).expect("spec resolves").1)
    }

    fn build_err(yaml: &str) -> String {
        let names = pools();
        let ctx = AutoscaleCtx::new(&names, &[1]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).expect("yaml");
        build(&v, &ctx).err().expect("must fail")
    }

    /// A Pods metric on `vllm:num_requests_waiting` with `target` averageValue.
    fn pods_hpa(target: &str, extra: &str) -> HpaCore {
        core(&format!(
            "{{ pool: llama, maxReplicas: 100, metrics: [{{ type: Pods, pods: {{ metric: \
             {{ name: 'vllm:num_requests_waiting' }}, target: {{ type: AverageValue, \
             averageValue: '{target}' }} }} }}] {extra} }}"
        ))
    }

    /// An External AverageValue metric with target 1 and `behavior`.
    fn external_hpa(min: u32, max: u32, behavior: &str) -> HpaCore {
        core(&format!(
            "{{ pool: llama, minReplicas: {min}, maxReplicas: {max}, metrics: [{{ type: External, \
             external: {{ metric: {{ name: 'vllm:num_requests_waiting' }}, target: {{ type: \
             AverageValue, averageValue: 1 }} }} }}] {behavior} }}"
        ))
    }

    const NO_DOWN_WINDOW: &str = ", behavior: { scaleDown: { stabilizationWindowSeconds: 0 } }";

    #[test]
    fn quantities_parse_like_kubernetes() {
        let m = |s: &str| Quantity::parse(s).expect(s).milli;
        assert_eq!(m("500m"), 500);
        assert_eq!(m("5"), 5000);
        assert_eq!(m("1k"), 1_000_000);
        assert_eq!(m("1Ki"), 1_024_000);
        assert_eq!(m("1.5"), 1500);
        assert_eq!(m("0.0001"), 1); // MilliValue rounds up
        assert_eq!(m("2e3"), 2_000_000);
        assert_eq!(m("1Gi"), 1_073_741_824_000);
        assert!((Quantity::parse("0.05").expect("q").approx - 0.05).abs() < 1e-12);
        for bad in ["", "abc", "5x", "1..2", "k"] {
            assert!(Quantity::parse(bad).is_err(), "{bad} must fail");
        }
        let q: Quantity = serde_yaml_ng::from_str("0.1").expect("number");
        assert_eq!(q.milli, 100);
    }

    #[test]
    fn doc_example_200m_vs_100m_doubles_and_50_vs_100_halves() {
        // Docs: currentMetricValue 200m, desiredMetricValue 100m → ratio 2.0 → double.
        // One pod, current 1: ceil(2.0 × 1) = 2; legacy limit max(2 × 1, 4) = 4 does not bind.
        let mut h = pods_hpa("100m", "");
        assert_eq!(h.sync(secs(0), 1, &[ready(0.2)], &[0.0]), 2);
        // 50 vs 100 → ratio 0.5 → halve: 4 pods, ceil(0.5 × 4) = 2. With a 0 s scale-down
        // window the default Percent 100 policy allows it (trunc(4 × 0) = 0, floor minReplicas 1).
        let mut h = pods_hpa("100", NO_DOWN_WINDOW);
        assert_eq!(h.sync(secs(0), 4, &[ready(50.0); 4], &[0.0]), 2);
    }

    #[test]
    fn tolerance_band_and_ceil() {
        // 10 pods at 1.05 of the target: |1 − 1.05| <= 0.1 → no change.
        let mut h = pods_hpa("1", "");
        assert_eq!(h.sync(secs(0), 10, &[ready(1.05); 10], &[0.0]), 10);
        // 1.12: outside the band → ceil(1.12 × 10) = ceil(11.2) = 12 (legacy limit 20).
        let mut h = pods_hpa("1", "");
        assert_eq!(h.sync(secs(0), 10, &[ready(1.12); 10], &[0.0]), 12);
        // ceil: 3 pods at 1.5 → ceil(4.5) = 5.
        let mut h = pods_hpa("1", "");
        assert_eq!(h.sync(secs(0), 3, &[ready(1.5); 3], &[0.0]), 5);
        // Per-direction tolerance (GA): 1.08 is inside 0.1 but outside scaleUp.tolerance 0.05
        // → ceil(1.08 × 10) = ceil(10.8) = 11.
        let mut h = pods_hpa("1", ", behavior: { scaleUp: { tolerance: '0.05' } }");
        assert_eq!(h.sync(secs(0), 10, &[ready(1.08); 10], &[0.0]), 11);
        let mut h = pods_hpa("1", "");
        assert_eq!(h.sync(secs(0), 10, &[ready(1.08); 10], &[0.0]), 10);
    }

    #[test]
    fn scale_down_percent_10_per_60s() {
        // behavior.scaleDown: window 0, Percent 10 per 60 s. The metric asks for 10 replicas
        // (ceil(10 / 1)); the sync runs every 15 s and `current` is what it returned.
        let mut h = external_hpa(
            1,
            100,
            ", behavior: { scaleDown: { stabilizationWindowSeconds: 0, policies: \
             [{ type: Percent, value: 10, periodSeconds: 60 }] } }",
        );
        let mut current = 80;
        let mut seen = Vec::new();
        for t in (0..=120).step_by(15) {
            current = h.sync(secs(t), current, &[], &[10.0]);
            seen.push(current);
        }
        // t=0: start 80 → trunc(80 × 0.9) = 72 (event −8 at t=0).
        // t=15..45: the −8 event is within 60 s → start = 72 + 8 = 80 → limit 72 → hold 72.
        // t=60: the t=0 event is not after 60 − 60 → start 72 → trunc(64.8) = 64.
        // t=75..105: hold 64; t=120: start 64 → trunc(57.6) = 57.
        assert_eq!(seen, vec![72, 72, 72, 72, 64, 64, 64, 64, 57]);
    }

    #[test]
    fn scale_down_pods_and_percent_with_select_policy() {
        // Pods 4 per 60 s and Percent 10 per 60 s. From 80: Pods → 76, Percent → 72.
        // From 20: Pods → 16, Percent → trunc(18.0) = 18.
        let run = |select: &str, current: u32| {
            let mut h = external_hpa(
                1,
                100,
                &format!(
                    ", behavior: {{ scaleDown: {{ stabilizationWindowSeconds: 0, selectPolicy: \
                     {select}, policies: [{{ type: Pods, value: 4, periodSeconds: 60 }}, \
                     {{ type: Percent, value: 10, periodSeconds: 60 }}] }} }}"
                ),
            );
            h.sync(secs(0), current, &[], &[1.0])
        };
        // Max = the largest change.
        assert_eq!(run("Max", 80), 72);
        assert_eq!(run("Max", 20), 16);
        // Min = the smallest change.
        assert_eq!(run("Min", 80), 76);
        assert_eq!(run("Min", 20), 18);
        // Disabled: no scale-down at all.
        assert_eq!(run("Disabled", 80), 80);
    }

    #[test]
    fn scale_up_default_policies() {
        // behavior given without scaleUp → defaults: Pods 4 and Percent 100 per 15 s, Max.
        let behavior = ", behavior: { scaleDown: { stabilizationWindowSeconds: 0 } }";
        // From 1: Pods 1 + 4 = 5, Percent ceil(1 × 2) = 2 → 5.
        let mut h = external_hpa(1, 1000, behavior);
        assert_eq!(h.sync(secs(0), 1, &[], &[100.0]), 5);
        // From 10: Pods 14, Percent 20 → 20; 15 s later the event is outside the period
        // (not after 15 − 15), so from 20: max(24, 40) = 40; then 80.
        let mut h = external_hpa(1, 1000, behavior);
        assert_eq!(h.sync(secs(0), 10, &[], &[100.0]), 20);
        assert_eq!(h.sync(secs(15), 20, &[], &[100.0]), 40);
        assert_eq!(h.sync(secs(30), 40, &[], &[100.0]), 80);
        assert_eq!(h.sync(secs(45), 80, &[], &[100.0]), 100); // the metric's 100
                                                              // A second sync inside the period: start = 20 − 10 = 10 → limit 20 → hold.
        let mut h = external_hpa(1, 1000, behavior);
        assert_eq!(h.sync(secs(0), 10, &[], &[100.0]), 20);
        assert_eq!(h.sync(secs(10), 20, &[], &[100.0]), 20);
        // scaleUp Disabled: never up.
        let mut h = external_hpa(1, 1000, ", behavior: { scaleUp: { selectPolicy: Disabled } }");
        assert_eq!(h.sync(secs(0), 3, &[], &[100.0]), 3);
    }

    #[test]
    fn scale_down_stabilization_window_300s() {
        // behavior: {} → scale-down window 300 s (controller default), Percent 100 per 15 s.
        let mut h = external_hpa(1, 100, ", behavior: {}");
        let mut current = 5;
        // t=0: the metric asks 5; initial recommendation 5 at t=0 too.
        current = h.sync(secs(0), current, &[], &[5.0]);
        assert_eq!(current, 5);
        // A dip to 2 from t=15, a blip of 4 at t=150: hold 5 while the t=0 recommendations are
        // in the window (after now − 300), i.e. until t=285.
        for t in (15..=285).step_by(15) {
            let want = if t == 150 { 4.0 } else { 2.0 };
            current = h.sync(secs(t), current, &[], &[want]);
            assert_eq!(current, 5, "t={t}");
        }
        // t=300: the t=0 entries are not after 0 → max of (0, 300] = 4 (the blip at t=150).
        assert_eq!(h.sync(secs(300), current, &[], &[2.0]), 4);
        // t=450: the blip is not after 150 → 2.
        let mut current = 4;
        for t in (315..=450).step_by(15) {
            current = h.sync(secs(t), current, &[], &[2.0]);
        }
        assert_eq!(current, 2);
    }

    #[test]
    fn legacy_path_clamps_to_twice_current_or_four() {
        let mut h = external_hpa(1, 100, "");
        assert_eq!(h.sync(secs(0), 1, &[], &[50.0]), 4); // max(2 × 1, 4)
        let mut h = external_hpa(1, 100, "");
        assert_eq!(h.sync(secs(0), 3, &[], &[50.0]), 6); // max(2 × 3, 4)
        let mut h = external_hpa(1, 100, "");
        assert_eq!(h.sync(secs(0), 10, &[], &[50.0]), 20);
        // maxReplicas still binds.
        let mut h = external_hpa(1, 8, "");
        assert_eq!(h.sync(secs(0), 10, &[], &[50.0]), 8); // current > max → max
        let mut h = external_hpa(1, 15, "");
        assert_eq!(h.sync(secs(0), 10, &[], &[50.0]), 15);
        // And the legacy 300 s scale-down stabilization holds the initial 10.
        let mut h = external_hpa(1, 100, "");
        assert_eq!(h.sync(secs(0), 10, &[], &[2.0]), 10);
        assert_eq!(h.sync(secs(300), 10, &[], &[2.0]), 10); // rec at 0 is not before 0
        assert_eq!(h.sync(secs(315), 10, &[], &[2.0]), 2);
    }

    #[test]
    fn missing_pod_on_scale_up_counts_zero() {
        // 1 Ready pod at 3 (target 1) and 1 Starting pod without a sample, current 2.
        // u = 3 over the ready pod > 1 → the missing pod counts 0: u' = 3000 / 2 = 1500m → 1.5
        // → ceil(1.5 × 2) = 3 (the naive ceil(current × u) = 6).
        let mut h = pods_hpa("1", "");
        let pods = [ready(3.0), pod(PodPhase::Starting, None)];
        assert_eq!(h.sync(secs(0), 2, &pods, &[0.0]), 3);
    }

    #[test]
    fn missing_pod_on_scale_down_counts_at_target() {
        // 2 Ready at 0.2 and 1 Ready without a sample, target 1, current 3. u = 0.2 → the
        // missing pod counts 1000m: u' = (400 + 1000) / 3 = 466m → 0.466 → ceil(1.398) = 2
        // (ignoring it: ceil(0.2 × 2) = 1).
        let mut h = pods_hpa("1", NO_DOWN_WINDOW);
        let pods = [ready(0.2), ready(0.2), pod(PodPhase::Ready, None)];
        assert_eq!(h.sync(secs(0), 3, &pods, &[0.0]), 2);
    }

    #[test]
    fn pending_pods_count_zero_on_scale_up_and_are_ignored_on_scale_down() {
        // Scale-up: 2 Ready at 3, 1 Pending, current 3: u = 3 → Pending counts 0:
        // u' = 6000 / 3 = 2 → ceil(2 × 3) = 6 (counting it at the ready mean would give 9).
        let mut h = pods_hpa("1", "");
        let pods = [ready(3.0), ready(3.0), pod(PodPhase::Pending, None)];
        assert_eq!(h.sync(secs(0), 3, &pods, &[0.0]), 6);
        // Scale-down: 2 Ready at 0.2, 1 Pending: no rebalancing → ceil(0.2 × 2) = 1.
        let mut h = pods_hpa("1", NO_DOWN_WINDOW);
        let pods = [ready(0.2), ready(0.2), pod(PodPhase::Pending, None)];
        assert_eq!(h.sync(secs(0), 3, &pods, &[0.0]), 1);
        // Deleting and Failed pods are ignored altogether: 2 Ready at 3 → ceil(3 × 2) = 6.
        let mut h = pods_hpa("1", "");
        let pods = [ready(3.0), ready(3.0), pod(PodPhase::Deleting, Some(0.0))];
        assert_eq!(h.sync(secs(0), 2, &pods, &[0.0]), 4); // 6, legacy limit max(4, 4) = 4
    }

    #[test]
    fn opposite_direction_guards() {
        // 2 Ready at 1.5 and 2 Pending, current 4: u = 1.5 > 1, u' = 3000 / 4 = 0.75 < 1 →
        // the direction flipped → keep 4 (ceil(1.5 × 2) = 3 would have scaled down).
        let mut h = pods_hpa("1", NO_DOWN_WINDOW);
        let pods =
            [ready(1.5), ready(1.5), pod(PodPhase::Pending, None), pod(PodPhase::Pending, None)];
        assert_eq!(h.sync(secs(0), 4, &pods, &[0.0]), 4);
        // 2 Ready at 2, 1 Starting without sample, 2 Deleting, current 5: u' = 4000 / 3 = 1333m
        // → ceil(1.333 × 3) = 4 < 5 while u' > 1 → keep 5.
        let mut h = pods_hpa("1", NO_DOWN_WINDOW);
        let pods = [
            ready(2.0),
            ready(2.0),
            pod(PodPhase::Starting, None),
            pod(PodPhase::Deleting, None),
            pod(PodPhase::Deleting, None),
        ];
        assert_eq!(h.sync(secs(0), 5, &pods, &[0.0]), 5);
    }

    #[test]
    fn cpu_utilization_rules() {
        // Default metric: cpu 80 %. 2 Ready pods at 100 %: trunc(100) / 80 = 1.25 →
        // ceil(1.25 × 2) = 3.
        let mut h = core("{ pool: llama, maxReplicas: 10 }");
        assert_eq!(h.queries()[0].metric, SimMetric::Cpu);
        let cpu = |phase, v| pod(phase, Some(v));
        assert_eq!(h.sync(secs(0), 2, &[cpu(PodPhase::Ready, 100.0); 2], &[0.0]), 3);
        // A Starting pod with a CPU sample is unready (counted 0 on scale-up): 2 Ready at 100 %
        // + 1 Starting at 100 %: u' = trunc(200 / 3) = 66 % → 0.825 < 1 against u = 1.25 → keep.
        let mut h = core("{ pool: llama, maxReplicas: 10 }");
        let pods = [
            cpu(PodPhase::Ready, 100.0),
            cpu(PodPhase::Ready, 100.0),
            cpu(PodPhase::Starting, 100.0),
        ];
        assert_eq!(h.sync(secs(0), 3, &pods, &[0.0]), 3);
        // A missing CPU pod on scale-down counts at max(100 %, target): 1 Ready at 20 %,
        // 1 missing: u' = (200 + 1000) × 100 / 2000 = 60 % → 0.75 → ceil(1.5) = 2 = current.
        let mut h = core(&format!("{{ pool: llama, maxReplicas: 10 {NO_DOWN_WINDOW} }}"));
        let pods = [cpu(PodPhase::Ready, 20.0), pod(PodPhase::Ready, None)];
        assert_eq!(h.sync(secs(0), 2, &pods, &[0.0]), 2);
    }

    #[test]
    fn object_value_uses_ready_pods() {
        // The tutorial HPA: Object vllm_num_requests_waiting, Value 1 → ceil(waiting × ready).
        let mut h = core(
            "{ pool: llama, minReplicas: 1, maxReplicas: 2, metrics: [{ type: Object, object: \
             { describedObject: { kind: Service, name: vllm }, metric: { name: \
             vllm_num_requests_waiting }, target: { type: Value, value: 1 } } }] }",
        );
        // Sum 2 over 1 Ready pod (the Starting one has no sample): ceil(2 × 1) = 2.
        let pods = [ready(2.0), pod(PodPhase::Starting, None)];
        assert_eq!(h.sync(secs(0), 1, &pods, &pool_sums(&pods)), 2);
    }

    #[test]
    fn invalid_metrics_hold_or_scale_up_only() {
        // Two metrics: a Pods metric with no pods at all (invalid) and an External one.
        let mut h = core(
            "{ pool: llama, maxReplicas: 20, metrics: [\
             { type: Pods, pods: { metric: { name: 'vllm:num_requests_running' }, target: \
               { type: AverageValue, averageValue: 1 } } },\
             { type: External, external: { metric: { name: 'vllm:num_requests_waiting' }, \
               target: { type: AverageValue, averageValue: 1 } } }] }",
        );
        // Some invalid and the maximum (3) >= current (2): scale up to 3.
        assert_eq!(h.sync(secs(0), 2, &[], &[0.0, 3.0]), 3);
        // Some invalid and the maximum (1) below current (3): hold.
        assert_eq!(h.sync(secs(15), 3, &[], &[0.0, 1.0]), 3);
    }

    #[test]
    fn scale_to_zero_and_back_external() {
        let yaml = "{ pool: llama, minReplicas: 0, maxReplicas: 10, metrics: [{ type: External, \
                    external: { metric: { name: 'vllm:num_requests_waiting' }, target: { type: \
                    Value, value: 1 } } }], behavior: { scaleDown: { stabilizationWindowSeconds: 0 } } }";
        let mut h = core(yaml);
        // 2 Ready pods, nothing waiting: u = 0 → ceil(0 × 2) = 0; Percent 100 allows 0.
        let idle = [ready(0.0), ready(0.0)];
        assert_eq!(h.sync(secs(0), 2, &idle, &pool_sums(&idle)), 0);
        // At zero, scaled there by this HPA: current == 0 → ceil(u) = ceil(0) = 0.
        assert_eq!(h.sync(secs(15), 0, &[], &[0.0]), 0);
        // 3 waiting: ceil(3 / 1) = 3; up limit from 0: Pods 0 + 4 = 4 → 3.
        assert_eq!(h.sync(secs(30), 0, &[], &[3.0]), 3);
        // A manual (or initial) zero disables the HPA even with min 0.
        let mut h = core(yaml);
        assert_eq!(h.sync(secs(0), 0, &[], &[3.0]), 0);
        // And min 1 at zero: disabled.
        let mut h = external_hpa(1, 10, "");
        assert_eq!(h.sync(secs(0), 0, &[], &[3.0]), 0);
        // minReplicas 0 needs an Object or External metric.
        let err = build_err("{ pool: llama, minReplicas: 0, maxReplicas: 3 }");
        assert!(err.contains("Object or External"), "{err}");
    }

    #[test]
    fn spec_errors_are_one_line_and_name_the_culprit() {
        let err = build_err(
            "{ pool: llama, maxReplicas: 3, metrics: [{ type: Pods, pods: { metric: { name: \
             foo_queue }, target: { type: AverageValue, averageValue: 1 } } }] }",
        );
        assert!(err.contains("foo_queue") && err.contains("vllm:num_requests_waiting"), "{err}");
        assert!(!err.contains('\n'));
        assert!(build_err("{ pool: llama }").contains("maxReplicas"));
        assert!(build_err("{ maxReplicas: 3 }").contains("scaleTargetRef"));
        assert!(build_err("{ pool: nope, maxReplicas: 3 }").contains("nope"));
        assert!(build_err("{ pool: llama, maxReplicas: 3, minReplica: 1 }").contains("minReplica"));
        let err = build_err(
            "{ pool: llama, maxReplicas: 3, metrics: [{ type: Resource, resource: { name: memory, \
             target: { type: Utilization, averageUtilization: 50 } } }] }",
        );
        assert!(err.contains("memory"), "{err}");
        let err = build_err(
            "{ pool: llama, maxReplicas: 3, behavior: { scaleUp: { policies: [{ type: Pods, \
             value: 0, periodSeconds: 15 }] } } }",
        );
        assert!(err.contains("value"), "{err}");
    }

    #[test]
    fn registry_entry_builds() {
        let names = pools();
        let ctx = AutoscaleCtx::new(&names, &[1]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(
            "{ scaleTargetRef: { apiVersion: apps/v1, kind: Deployment, name: llama }, \
             maxReplicas: 4, syncPeriodSeconds: 30 }",
        )
        .expect("yaml");
        let mut a = (ENTRY.build)(&v, &ctx).expect("builds");
        assert_eq!(a.interval(), SimDuration::from_secs(30));
        assert_eq!(a.bounds(), (1, 4));
        let pods = [ready(100.0)];
        let input = ScaleInput::new(SimTime::ZERO, 1, &pods);
        // cpu 100 % vs 80 %: ceil(1.25 × 1) = 2.
        assert_eq!(a.decide(&input), 2);
    }
}
