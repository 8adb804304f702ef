//! Turns YAML and schema errors into one-line [`ConfigError`]s with the exact field path.
//!
//! serde cannot track paths inside internally tagged enums (`arrival:` by `process`,
//! distributions by `dist`, pools by `kind`, a pool's `latency:` by `model`): it buffers the node and reports a failure inside
//! it at the parent (`workload[0]: unknown field ...`). So when the parser's path is the parent
//! of such a node, the node is re-checked on its own and its variant struct re-parsed without
//! the tag, which yields the inner path (recursively for tagged nodes inside a variant: a queue
//! pool's `service_s`, an llm pool's `latency`); the line:column is then looked up in the
//! original text.

use super::raw::*;
use crate::error::{ConfigError, Location};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IgnoredAny, Visitor};
use serde_yaml_ng::{Error, Value};
use std::fmt;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Internally tagged node types, with their tag key.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Arrival,
    Dist,
    Pool,
    Latency,
}

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Kind::Arrival => "process",
            Kind::Dist => "dist",
            Kind::Pool => "kind",
            Kind::Latency => "model",
        }
    }

    /// The error of deserializing `node` as this type on its own, if any.
    fn check(self, node: &Value) -> Option<String> {
        fn err<T: DeserializeOwned>(v: &Value) -> Option<String> {
            serde_yaml_ng::from_value::<T>(v.clone()).err().map(|e| e.to_string())
        }
        match self {
            Kind::Arrival => err::<RawArrival>(node),
            Kind::Dist => err::<RawDist>(node),
            Kind::Pool => err::<RawPool>(node),
            Kind::Latency => err::<RawLatency>(node),
        }
    }

    /// The error of parsing `text` (a node without its tag) as the variant `tag`.
    fn variant_error(self, tag: &str, text: &str) -> Option<Error> {
        fn err<T: DeserializeOwned>(t: &str) -> Option<Error> {
            serde_yaml_ng::from_str::<T>(t).err()
        }
        match (self, tag) {
            (Kind::Arrival, "poisson") => err::<RawPoisson>(text),
            (Kind::Arrival, "gamma") => err::<RawGamma>(text),
            (Kind::Arrival, "onoff") => err::<RawOnOff>(text),
            (Kind::Arrival, "diurnal") => err::<RawDiurnal>(text),
            (Kind::Arrival, "step") => err::<RawStep>(text),
            (Kind::Dist, "constant") => err::<RawConstant>(text),
            (Kind::Dist, "exponential") => err::<RawExponential>(text),
            (Kind::Dist, "uniform") => err::<RawUniform>(text),
            (Kind::Dist, "lognormal") => err::<RawLognormal>(text),
            (Kind::Dist, "pareto") => err::<RawPareto>(text),
            (Kind::Dist, "empirical") => err::<RawEmpirical>(text),
            (Kind::Dist, "mixture") => err::<RawMixture>(text),
            (Kind::Pool, "queue") => err::<RawQueuePool>(text),
            (Kind::Pool, "llm") => err::<RawLlmPool>(text),
            (Kind::Latency, "roofline") => err::<RawRoofline>(text),
            (Kind::Latency, "linear") => err::<RawLinear>(text),
            _ => None,
        }
    }

    /// Tagged nodes inside the variant `tag`, by key: serde stops its path at them too.
    fn children(self, tag: &str) -> &'static [(&'static str, Kind)] {
        match (self, tag) {
            (Kind::Pool, "queue") => &[("service_s", Kind::Dist)],
            (Kind::Pool, "llm") => &[("latency", Kind::Latency)],
            _ => &[],
        }
    }
}

/// The one-line error for a YAML or schema error `e` found while parsing `text`.
/// `with_location`: whether `text` is the file as written (so line:column mean something).
pub(super) fn error(file: &str, text: &str, e: &Error, with_location: bool) -> ConfigError {
    let doc = match serde_yaml_ng::from_str::<Value>(text) {
        Ok(doc) => doc,
        Err(syntax) => {
            // Not even a YAML tree: a syntax error (or several documents). Report that
            // rather than `e`, which may stem from a document cut short by it.
            let (full, parser_loc) = strip_location(&syntax);
            let message = if full.contains("more than one document") {
                "contains more than one YAML document: keep one scenario per file".to_string()
            } else if full.starts_with("duplicate entry") {
                format!("{full} (remove one of the two)")
            } else {
                format!("YAML syntax error: {full} (fix the YAML syntax)")
            };
            return build(file, parser_loc.filter(|_| with_location), "", message, with_location);
        }
    };
    if doc.is_null() {
        let message = "is empty: a scenario needs name, horizon, workload, cluster and \
                       policies (see scenarios/quickstart.yaml)";
        return build(file, None, "", message.to_string(), with_location);
    }
    let (full, parser_loc) = strip_location(e);
    let (path_text, message) = split_path(&full);
    let refined = parse_path(&path_text).and_then(|p| refine(&doc, &p, &message));
    let (path, location) = match refined {
        Some(segs) => {
            let location = if with_location { locate(text, &segs, &message) } else { None };
            (fmt_path(&segs), location.or(parser_loc))
        }
        None => (path_text, parser_loc),
    };
    let message = format!("{}{}", clean(&message), hint(&message));
    build(file, location.filter(|_| with_location), &path, message, with_location)
}

/// `e` (an error from validation, which sees parsed values, not text) with the line:column
/// of its field in `text` when it names one that the text has.
pub(super) fn with_location(mut e: ConfigError, text: &str) -> ConfigError {
    if e.location.is_some() || e.path.is_empty() {
        return e;
    }
    if let Some(segs) = parse_path(&e.path) {
        e.location = locate(text, &segs, &e.message);
    }
    e
}

fn build(
    file: &str,
    location: Option<Location>,
    path: &str,
    message: String,
    with_location: bool,
) -> ConfigError {
    let overridden = if with_location { "" } else { " [after --set overrides]" };
    ConfigError {
        file: file.to_string(),
        location,
        path: path.to_string(),
        message: format!("{}{overridden}", message.replace(['\n', '\r'], " ")),
    }
}

/// The error text without the parser's own " at line L column C", and that location.
fn strip_location(e: &Error) -> (String, Option<Location>) {
    let mut full = e.to_string();
    let loc = e.location().map(|l| Location { line: l.line(), column: l.column() });
    if let Some(l) = &loc {
        let suffix = format!(" at line {} column {}", l.line, l.column);
        if let Some(i) = full.find(&suffix) {
            full.replace_range(i..i + suffix.len(), "");
        }
    }
    (full, loc)
}

/// Splits `path: message` as serde_yaml_ng writes it (no path for the root).
fn split_path(msg: &str) -> (String, String) {
    if let Some(i) = msg.find(": ") {
        let head = &msg[..i];
        if !head.is_empty() && !head.contains([' ', '`', '"']) {
            return (head.to_string(), msg[i + 2..].to_string());
        }
    }
    (String::new(), msg.to_string())
}

fn parse_path(s: &str) -> Option<Vec<Seg>> {
    let mut out = Vec::new();
    if s.is_empty() || s == "." {
        return Some(out);
    }
    for part in s.split('.') {
        let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !name.is_empty() {
            out.push(Seg::Key(name.to_string()));
        }
        while !rest.is_empty() {
            let close = rest.find(']')?;
            out.push(Seg::Index(rest.get(1..close)?.parse().ok()?));
            rest = &rest[close + 1..];
        }
    }
    Some(out)
}

fn fmt_path(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn join(base: &[Seg], more: impl IntoIterator<Item = Seg>) -> Vec<Seg> {
    base.iter().cloned().chain(more).collect()
}

/// Tagged nodes outside other tagged nodes, in document order, with their paths.
fn tagged_nodes(doc: &Value) -> Vec<(Vec<Seg>, Kind, &Value)> {
    let mut out = Vec::new();
    if let Some(Value::Sequence(classes)) = doc.get("workload") {
        for (i, class) in classes.iter().enumerate() {
            let Value::Mapping(m) = class else { continue };
            for (k, v) in m {
                let key = k.as_str().unwrap_or_default().to_string();
                let path = vec![Seg::Key("workload".into()), Seg::Index(i), Seg::Key(key)];
                match k.as_str() {
                    Some("arrival") => out.push((path, Kind::Arrival, v)),
                    Some("service_s" | "prompt_tokens" | "output_tokens") => {
                        out.push((path, Kind::Dist, v))
                    }
                    Some("session") => {
                        let Value::Mapping(s) = v else { continue };
                        for (sk, sv) in s {
                            if let Some(sk @ ("turns" | "think_time_s")) = sk.as_str() {
                                out.push((join(&path, [Seg::Key(sk.into())]), Kind::Dist, sv));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(Value::Sequence(pools)) = doc.get("cluster").and_then(|c| c.get("pools")) {
        for (j, pool) in pools.iter().enumerate() {
            let path = vec![Seg::Key("cluster".into()), Seg::Key("pools".into()), Seg::Index(j)];
            out.push((path, Kind::Pool, pool));
        }
    }
    out
}

/// The exact path and message of an error that serde reported at `at`, when it came from
/// inside a tagged node below `at`.
fn refine(doc: &Value, at: &[Seg], message: &str) -> Option<Vec<Seg>> {
    tagged_nodes(doc)
        .into_iter()
        .filter(|(p, _, _)| p.len() > at.len() && p.starts_with(at))
        .find_map(|(p, kind, node)| pinpoint(node, p, kind, message))
}

/// The path of the field inside the tagged `node` (at `path`) that fails with `message`,
/// if `node` is where it fails.
fn pinpoint(node: &Value, path: Vec<Seg>, kind: Kind, message: &str) -> Option<Vec<Seg>> {
    if kind.check(node)? != message {
        return None;
    }
    let Value::Mapping(m) = node else { return Some(path) };
    let Some(tag) = m.get(kind.tag()).and_then(Value::as_str) else { return Some(path) };
    let mut inner = m.clone();
    inner.shift_remove(kind.tag()); // keeps key order, so the first error stays first
                                    // The variant struct parsed from text, without the tag: serde tracks the path there.
    let inner_path = serde_yaml_ng::to_string(&Value::Mapping(inner))
        .ok()
        .and_then(|text| kind.variant_error(tag, &text))
        .and_then(|e| parse_path(&split_path(&strip_location(&e).0).0));
    let Some(inner_path) = inner_path else { return Some(path) };
    let full = join(&path, inner_path);
    for &(key, child_kind) in kind.children(tag) {
        let Some(child) = m.get(key) else { continue };
        let child_path = join(&path, [Seg::Key(key.into())]);
        if child_path.len() >= full.len() && child_path.starts_with(&full) {
            if let Some(p) = pinpoint(child, child_path, child_kind, message) {
                return Some(p);
            }
        }
    }
    Some(full)
}

/// Line and column in `text` of the node at `path`, or of the unknown key the `message`
/// names inside it.
fn locate(text: &str, path: &[Seg], message: &str) -> Option<Location> {
    let unknown = message.strip_prefix("unknown field `").and_then(|r| r.split('`').next());
    let (path, key) = match unknown {
        Some(k) => (join(path, [Seg::Key(k.to_string())]), true),
        None => (path.to_vec(), false),
    };
    let err = Locate { path: &path, key }
        .deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .err()?;
    if !err.to_string().contains(FOUND) {
        return None;
    }
    err.location().map(|l| Location { line: l.line(), column: l.column() })
}

const FOUND: &str = "routelab-locate-found";

/// Walks the YAML events along `path` and fails at its node (or at its key when `key`),
/// so that the parser attaches that node's position to the error.
struct Locate<'a> {
    path: &'a [Seg],
    key: bool,
}

impl<'de> DeserializeSeed<'de> for Locate<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Locate<'_> {
    fn here<E: de::Error>(&self) -> Result<(), E> {
        if self.path.is_empty() && !self.key {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

macro_rules! scalar {
    ($($f:ident: $t:ty),*) => {$(
        fn $f<E: de::Error>(self, _: $t) -> Result<(), E> { self.here() }
    )*};
}

impl<'de> Visitor<'de> for Locate<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML node")
    }
    scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str);
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        let target = match self.path.first() {
            Some(Seg::Index(i)) => Some(*i),
            _ => None,
        };
        let mut j = 0;
        loop {
            let more = if Some(j) == target {
                seq.next_element_seed(Locate { path: &self.path[1..], key: self.key })?
            } else {
                seq.next_element::<IgnoredAny>()?.map(|_| ())
            };
            if more.is_none() {
                return Ok(());
            }
            j += 1;
        }
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        let (want, rest) = match self.path.split_first() {
            Some((Seg::Key(k), rest)) => (Some(k.as_str()), rest),
            _ => (None, &[][..]),
        };
        let fail_on_key = rest.is_empty() && self.key;
        while let Some(hit) = map.next_key_seed(KeyIs { want, fail: fail_on_key })? {
            if hit {
                map.next_value_seed(Locate { path: rest, key: self.key })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Reads a mapping key: whether it is `want`; fails on it when `fail`.
struct KeyIs<'a> {
    want: Option<&'a str>,
    fail: bool,
}

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<bool, E> {
        let hit = self.want == Some(s);
        if hit && self.fail {
            return Err(E::custom(FOUND));
        }
        Ok(hit)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(false)
    }
}

/// Replaces the names of our Rust types in serde messages with what the user writes.
fn clean(message: &str) -> String {
    let mut out = message
        .replace("internally tagged enum RawArrival", "a mapping with `process:`")
        .replace("internally tagged enum RawDist", "a mapping with `dist:`")
        .replace("internally tagged enum RawPool", "a mapping with `kind:`")
        .replace("internally tagged enum RawLatency", "a mapping with `model:`")
        .replace("struct GpuSpec", "a mapping")
        .replace("struct ModelSpec", "a mapping")
        .replace("a YAML tag starting with '!'", "a name");
    while let Some(i) = out.find("struct Raw") {
        let end = out[i + 7..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .map_or(out.len(), |e| i + 7 + e);
        out.replace_range(i..end, "a mapping");
    }
    out
}

/// How to fix the kind of error `message` describes.
fn hint(message: &str) -> &'static str {
    let expects = |t: &str| message.ends_with(&format!("expected {t}"));
    if message.starts_with("unknown field") {
        " (remove or rename the key)"
    } else if message.starts_with("missing field") {
        " (add the key)"
    } else if message.starts_with("unknown variant") {
        " (use one of the listed values)"
    } else if message.starts_with("duplicate") {
        " (remove the repeated key)"
    } else if expects("u32") || expects("u64") {
        " (write a whole number >= 0)"
    } else if expects("f64") {
        " (write a number)"
    } else if expects("a string") {
        " (write a string)"
    } else if message.starts_with("invalid type") {
        " (fix the value's type)"
    } else if message.starts_with("invalid value") || message.starts_with("invalid length") {
        " (fix the value)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        for p in ["workload[0].arrival.rate_per_s", "cluster.pools[12]", "name", ""] {
            assert_eq!(fmt_path(&parse_path(p).expect(p)), p);
        }
        assert_eq!(parse_path("."), Some(Vec::new()));
        assert_eq!(parse_path("a[x]"), None);
    }

    #[test]
    fn messages_lose_rust_type_names() {
        assert_eq!(
            clean("invalid type: sequence, expected struct RawScenario"),
            "invalid type: sequence, expected a mapping"
        );
        assert_eq!(
            clean("expected internally tagged enum RawDist"),
            "expected a mapping with `dist:`"
        );
    }

    /// Every variant raw.rs accepts has its struct in `Kind::variant_error`, so errors
    /// inside it get their exact path (a new variant must be added there too).
    #[test]
    fn every_tagged_variant_is_known() {
        for kind in [Kind::Arrival, Kind::Dist, Kind::Pool, Kind::Latency] {
            let probe: Value =
                serde_yaml_ng::from_str(&format!("{{ {}: zzz }}", kind.tag())).expect("yaml");
            let msg = kind.check(&probe).expect("zzz is not a variant");
            let listed = msg.split_once("expected ").expect("variants listed").1;
            let names: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
            assert!(!names.is_empty(), "{msg}");
            for name in names {
                let e = kind.variant_error(name, "zzz_unknown_key: 1");
                assert!(e.is_some(), "{kind:?} variant {name} is missing in variant_error");
            }
        }
    }

    #[test]
    fn serde_paths_are_split_off() {
        let (p, m) = split_path("workload[0]: invalid type: string \"x\", expected f64");
        assert_eq!(
            (p.as_str(), m.as_str()),
            ("workload[0]", "invalid type: string \"x\", expected f64")
        );
        let (p, m) = split_path("invalid type: unit value, expected a sequence");
        assert_eq!((p.as_str(), m.as_str()), ("", "invalid type: unit value, expected a sequence"));
    }
}
