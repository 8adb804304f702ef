//! Sweeps: `sweep:` maps dotted scenario keys to lists of values; the cells are the cartesian
//! product of the axes, the first axis outermost. `zip:` inside `sweep:` (a mapping, or a list
//! of mappings) groups keys whose lists move together — one axis, equal lengths.
//!
//! ```yaml
//! sweep:
//!   workload.0.arrival.rate_per_s: [20, 40, 60]
//!   zip: { cluster.pools.0.replicas: [4, 8], workload.0.timeout_s: [10, 20] }
//! ```
//!
//! gives 3 × 2 = 6 cells. Each cell is the base scenario with that cell's values set, like
//! `--set`, then validated on its own; command-line `--set` overrides apply after the cell's.

use crate::error::ConfigError;
use serde_yaml_ng::Value;

/// One axis: the keys that move together and their values, position by position.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Dotted keys.
    pub keys: Vec<String>,
    /// `values[k][i]`: value of key `k` at position `i`.
    pub values: Vec<Vec<Value>>,
}

impl Axis {
    fn len(&self) -> usize {
        self.values.first().map_or(0, Vec::len)
    }
}

/// Most cells one scenario may expand to.
pub const MAX_CELLS: usize = 100_000;

/// Parses a `sweep:` node into axes.
pub fn parse(file: &str, node: &Value) -> Result<Vec<Axis>, ConfigError> {
    let err = |path: &str, msg: String| ConfigError::field(file, path, msg);
    let Value::Mapping(m) = node else {
        return Err(err("sweep", "must be a mapping of dotted keys to lists of values".into()));
    };
    let mut axes = Vec::new();
    for (k, v) in m {
        let key = k.as_str().ok_or_else(|| err("sweep", "keys must be strings".into()))?;
        if key == "zip" {
            let groups: Vec<&Value> = match v {
                Value::Sequence(seq) => seq.iter().collect(),
                other => vec![other],
            };
            for (gi, g) in groups.iter().enumerate() {
                axes.push(zip_axis(file, &format!("sweep.zip[{gi}]"), g)?);
            }
        } else {
            let values = list(file, &format!("sweep.{key}"), v)?;
            axes.push(Axis { keys: vec![key.to_string()], values: vec![values] });
        }
    }
    let cells: usize =
        axes.iter().map(Axis::len).try_fold(1usize, |a, n| a.checked_mul(n)).unwrap_or(usize::MAX);
    if cells > MAX_CELLS {
        return Err(err("sweep", format!("expands to {cells} cells: at most {MAX_CELLS}")));
    }
    Ok(axes)
}

fn list(file: &str, path: &str, v: &Value) -> Result<Vec<Value>, ConfigError> {
    match v {
        Value::Sequence(seq) if !seq.is_empty() => Ok(seq.clone()),
        _ => Err(ConfigError::field(file, path, "must be a non-empty list of values")),
    }
}

fn zip_axis(file: &str, path: &str, g: &Value) -> Result<Axis, ConfigError> {
    let Value::Mapping(m) = g else {
        return Err(ConfigError::field(file, path, "must map dotted keys to equal-length lists"));
    };
    let mut axis = Axis { keys: Vec::new(), values: Vec::new() };
    for (k, v) in m {
        let key =
            k.as_str().ok_or_else(|| ConfigError::field(file, path, "keys must be strings"))?;
        let values = list(file, &format!("{path}.{key}"), v)?;
        if let Some(first) = axis.values.first() {
            if first.len() != values.len() {
                return Err(ConfigError::field(
                    file,
                    format!("{path}.{key}"),
                    format!("has {} values but {} has {}: zipped lists move together and need equal lengths", values.len(), axis.keys[0], first.len()),
                ));
            }
        }
        axis.keys.push(key.to_string());
        axis.values.push(values);
    }
    if axis.keys.is_empty() {
        return Err(ConfigError::field(file, path, "is empty"));
    }
    Ok(axis)
}

/// The cells of `axes` in order (first axis outermost): each is a list of (key, value).
pub fn cells(axes: &[Axis]) -> Vec<Vec<(String, Value)>> {
    let mut out: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for axis in axes {
        let mut next = Vec::with_capacity(out.len() * axis.len());
        for prefix in &out {
            for i in 0..axis.len() {
                let mut cell = prefix.clone();
                for (k, key) in axis.keys.iter().enumerate() {
                    cell.push((key.clone(), axis.values[k][i].clone()));
                }
                next.push(cell);
            }
        }
        out = next;
    }
    out
}

/// `key=value;key=value`, the `params` column of a cell.
pub fn describe(cell: &[(String, Value)]) -> String {
    cell.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect::<Vec<_>>().join(";")
}

/// A compact one-line rendering of a YAML value.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_else(|_| "?".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axes(yaml: &str) -> Vec<Axis> {
        let v: Value = serde_yaml_ng::from_str(yaml).expect("yaml");
        parse("t", &v).expect("valid sweep")
    }

    #[test]
    fn cartesian_product_with_first_axis_outermost_and_zip() {
        let a = axes("a: [1, 2]\nzip: { b: [x, y, z], c: [10, 20, 30] }\n");
        let c = cells(&a);
        assert_eq!(c.len(), 6);
        assert_eq!(describe(&c[0]), "a=1;b=x;c=10");
        assert_eq!(describe(&c[2]), "a=1;b=z;c=30");
        assert_eq!(describe(&c[3]), "a=2;b=x;c=10");
    }

    #[test]
    fn bad_sweeps_are_errors() {
        for bad in ["a: 3", "a: []", "zip: { b: [1, 2], c: [1] }", "[1, 2]", "zip: 4"] {
            let v: Value = serde_yaml_ng::from_str(bad).expect("yaml");
            assert!(parse("t", &v).is_err(), "{bad}");
        }
        assert_eq!(cells(&[]).len(), 1);
    }
}
