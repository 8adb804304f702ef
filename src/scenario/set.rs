//! `--set KEY=VALUE`: override any scenario key by its dotted path before validation.
//!
//! `KEY` is a dotted path through mappings and sequences (`workload.0.arrival.rate_per_s`,
//! `cluster.pools.0.slots`); numeric components index sequences. `VALUE` is parsed as YAML, so
//! `80`, `true`, `[a, b]` and `{ dist: constant, value: 1 }` all work. Missing mapping keys are
//! created (then the strict schema rejects typos); out-of-range indices are errors.

use crate::error::ConfigError;
use serde_yaml_ng::{Mapping, Value};

/// Applies one `KEY=VALUE` override to `tree`.
pub fn apply(tree: &mut Value, kv: &str) -> Result<(), ConfigError> {
    let err = |msg: String| ConfigError::flag(&format!("--set {kv}"), msg);
    let (key, value) = kv.split_once('=').ok_or_else(|| {
        err("expected KEY=VALUE, e.g. --set workload.0.arrival.rate_per_s=80".into())
    })?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(err(
            "empty path component; write a dotted path like cluster.pools.0.slots".into()
        ));
    }
    let new: Value = serde_yaml_ng::from_str(value).map_err(|e| {
        err(format!(
            "VALUE is not valid YAML ({}); quote text that contains YAML syntax, e.g. --set 'name=\"a: b\"'",
            without_marks(&e.to_string())
        ))
    })?;
    apply_value(tree, key, new, &format!("--set {kv}"))
}

/// Sets the value at dotted path `key` in `tree` to `new`; `origin` names the override in
/// errors (`--set k=v`, or a sweep cell).
pub fn apply_value(
    tree: &mut Value,
    key: &str,
    new: Value,
    origin: &str,
) -> Result<(), ConfigError> {
    let err = |msg: String| ConfigError::flag(origin, msg);
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(err(
            "empty path component; write a dotted path like cluster.pools.0.slots".into()
        ));
    }
    let mut cur = tree;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let at = parts[..i].join(".");
        let here = if at.is_empty() { "the top level".to_string() } else { format!("`{at}`") };
        cur = match cur {
            Value::Sequence(seq) => {
                let len = seq.len();
                let idx: usize = part.parse().map_err(|_| {
                    err(format!("{here} is a list; `{part}` is not an index ({})", indices(len)))
                })?;
                seq.get_mut(idx).ok_or_else(|| {
                    err(format!("{here} has no entry {idx} ({})", indices(len)))
                })?
            }
            Value::Mapping(map) => {
                map.entry(Value::String((*part).to_string())).or_insert(Value::Null)
            }
            Value::Null => {
                *cur = Value::Mapping(Mapping::new());
                match cur {
                    Value::Mapping(map) => {
                        map.entry(Value::String((*part).to_string())).or_insert(Value::Null)
                    }
                    _ => unreachable!("just assigned a mapping"),
                }
            }
            _ => {
                return Err(err(format!(
                    "{here} is a single value, not a mapping, so it has no key `{part}`; set it as a whole instead, e.g. --set '{at}={{ ... }}'"
                )))
            }
        };
    }
    *cur = new;
    Ok(())
}

/// The valid indices of a list of `len` entries, for messages.
fn indices(len: usize) -> String {
    match len {
        0 => "the list is empty".to_string(),
        1 => "the only index is 0".to_string(),
        n => format!("use 0..={}", n - 1),
    }
}

/// A YAML error message without its " at line L column C" positions (they point into VALUE,
/// not into the scenario file) and on one line.
fn without_marks(msg: &str) -> String {
    let mut out = msg.replace('\n', " ");
    while let Some(i) = out.find(" at line ") {
        let rest = &out[i + " at line ".len()..];
        let skip = rest
            .split_once(" column ")
            .map(|(line, col)| {
                let digits = col.chars().take_while(char::is_ascii_digit).count();
                line.len() + " column ".len() + digits
            })
            .filter(|_| rest.chars().next().is_some_and(|c| c.is_ascii_digit()));
        match skip {
            Some(n) => out.replace_range(i..i + " at line ".len() + n, ""),
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Value {
        serde_yaml_ng::from_str(
            "workload:\n  - class: a\n    arrival: { process: poisson, rate_per_s: 1 }\ncluster: { pools: [ { slots: 2 } ] }\n",
        )
        .expect("yaml")
    }

    #[test]
    fn overrides_nested_keys_through_lists() {
        let mut t = tree();
        apply(&mut t, "workload.0.arrival.rate_per_s=80").expect("ok");
        apply(&mut t, "cluster.pools.0.slots=8").expect("ok");
        assert_eq!(t["workload"][0]["arrival"]["rate_per_s"], Value::from(80));
        assert_eq!(t["cluster"]["pools"][0]["slots"], Value::from(8));
    }

    #[test]
    fn creates_missing_keys_and_parses_yaml_values() {
        let mut t = tree();
        apply(&mut t, "horizon.max_requests=1000").expect("ok");
        apply(&mut t, "policies=[random, round_robin]").expect("ok");
        assert_eq!(t["horizon"]["max_requests"], Value::from(1000));
        assert_eq!(t["policies"][1], Value::from("round_robin"));
    }

    #[test]
    fn yaml_positions_are_dropped_from_messages() {
        assert_eq!(
            without_marks(
                "did not find x at line 2 column 1, while parsing a flow node at line 1 column 1"
            ),
            "did not find x, while parsing a flow node"
        );
        assert_eq!(without_marks("nothing at line end"), "nothing at line end");
    }

    #[test]
    fn malformed_overrides_are_errors() {
        let mut t = tree();
        for bad in [
            "noequals",
            "=3",
            "workload..x=1",
            "workload.3.class=b",
            "workload.x=1",
            "workload.0.class.deeper=1",
        ] {
            let e = apply(&mut t, bad).expect_err(bad);
            assert!(e.to_string().starts_with("<command line>: --set"), "{e}");
        }
    }
}
