//! Comparing a desired DR object with the live one: is a write needed, and what would it change?
//!
//! The live object on the DR side carries more than dr-syncer wrote: fields the API server defaults,
//! status, metadata it manages, fields other managers own. So "unchanged" means: **every field of the
//! desired object has the same value in the live object** ([`is_subset`]), with the API server's
//! normalisations taken into account (a `null`/empty value matches an absent field; numbers compare by
//! value; resource quantities such as `1000m` and `1` compare by value where Kubernetes stores quantities).
//!
//! A field dr-syncer wrote earlier but the source no longer has is not visible to a subset check, so each
//! write also records a [`fingerprint`] of the desired object in the annotation
//! `dr-syncer.io/desired-hash`; a different fingerprint means the desired object changed.

use serde_json::{Map, Value};

use crate::apply::FieldChange;

/// Whether every field of `desired` is present in `live` with an equal value (see the module docs).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    subset_at(desired, live, &mut Vec::new())
}

fn subset_at(desired: &Value, live: &Value, path: &mut Vec<String>) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => {
                path.push(k.clone());
                let ok = subset_at(dv, lv, path);
                path.pop();
                ok
            }
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| subset_at(dv, lv, path))
        }
        (d, Value::Null) => is_empty(d),
        (d, l) => leaf_equal(d, l, path),
    }
}

/// `null`, `{}` and `[]`: what the API server drops or omits.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn leaf_equal(d: &Value, l: &Value, path: &[String]) -> bool {
    if d == l {
        return true;
    }
    match (d, l) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::String(a), Value::String(b)) if holds_quantity(path) => {
            match (parse_quantity(a), parse_quantity(b)) {
                (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()) * 4.0,
                _ => false,
            }
        }
        _ => false,
    }
}

/// Whether the field at `path` is a resource quantity (normalised by the API server).
fn holds_quantity(path: &[String]) -> bool {
    let n = path.len();
    let parent = n.checked_sub(2).and_then(|i| path.get(i)).map(String::as_str);
    let key = path.last().map(String::as_str);
    matches!(
        parent,
        Some("requests" | "limits" | "capacity" | "allocatable" | "hard" | "overhead" | "min" | "max")
            | Some("default" | "defaultRequest" | "maxLimitRequestRatio")
    ) || matches!(key, Some("sizeLimit" | "storage"))
}

/// The value of a Kubernetes resource quantity (`500m`, `1Gi`, `2e3`, `1.5`), or `None` if `s` is not one.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let base: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(base * factor)
}

/// The fields a write of `desired` would change in `live` (`None`: the object does not exist yet), as
/// JSON pointers with old and new values; empty when [`is_subset`] holds.
pub fn changes(live: Option<&Value>, desired: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let empty = Value::Object(Map::new());
    collect(desired, live.unwrap_or(&empty), &mut Vec::new(), &mut out);
    out
}

fn collect(desired: &Value, live: &Value, path: &mut Vec<String>, out: &mut Vec<FieldChange>) {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            for (k, dv) in d {
                path.push(k.clone());
                match l.get(k) {
                    Some(lv) => collect(dv, lv, path, out),
                    None if is_empty(dv) => {}
                    None => out.push(change(path, None, Some(dv))),
                }
                path.pop();
            }
        }
        _ if subset_at(desired, live, path) => {}
        _ => out.push(change(path, (!live.is_null()).then_some(live), Some(desired))),
    }
}

fn change(path: &[String], old: Option<&Value>, new: Option<&Value>) -> FieldChange {
    let pointer = path
        .iter()
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect::<String>();
    FieldChange {
        path: pointer,
        old: old.map(Value::to_string),
        new: new.map(Value::to_string),
    }
}

/// A stable fingerprint of a JSON document (FNV-1a, 64 bits, over its canonical text: object keys sorted),
/// rendered as 16 hex digits. Stable across processes and versions; not a security measure.
pub fn fingerprint(v: &Value) -> String {
    let mut feed = Fnv(0xcbf2_9ce4_8422_2325);
    canonical(v, &mut feed);
    format!("{:016x}", feed.0)
}

/// FNV-1a over everything written to it: the canonical text is hashed as it is rendered, never held.
struct Fnv(u64);

impl std::io::Write for Fnv {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The canonical text of `v` (object keys sorted, each entry followed by `,`, scalars as serde_json
/// renders them), written to `out`. This runs for every object of every sync, so nothing is allocated
/// per key or value (maps iterate sorted already; only an unsorted one is sorted, through references).
fn canonical(v: &Value, out: &mut Fnv) {
    use std::io::Write as _;
    // (Writing to `Fnv` cannot fail, nor can rendering a `Value`.)
    match v {
        Value::Object(m) => {
            let _ = out.write_all(b"{");
            let mut entry = |k: &String, v: &Value| {
                let _ = serde_json::to_writer(&mut *out, k);
                let _ = out.write_all(b":");
                canonical(v, out);
                let _ = out.write_all(b",");
            };
            if m.keys().is_sorted() {
                m.iter().for_each(|(k, v)| entry(k, v));
            } else {
                let mut sorted: Vec<(&String, &Value)> = m.iter().collect();
                sorted.sort_by_key(|(k, _)| *k);
                sorted.into_iter().for_each(|(k, v)| entry(k, v));
            }
            let _ = out.write_all(b"}");
        }
        Value::Array(a) => {
            let _ = out.write_all(b"[");
            for x in a {
                canonical(x, out);
                let _ = out.write_all(b",");
            }
            let _ = out.write_all(b"]");
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    #[rstest]
    #[case::equal(json!({"a": 1}), json!({"a": 1}), true)]
    #[case::live_has_more(json!({"a": 1}), json!({"a": 1, "b": 2}), true)]
    #[case::changed(json!({"a": 1}), json!({"a": 2}), false)]
    #[case::missing(json!({"a": 1}), json!({}), false)]
    #[case::null_matches_absent(json!({"a": null}), json!({}), true)]
    #[case::empty_map_matches_absent(json!({"a": {}}), json!({}), true)]
    #[case::empty_list_matches_null(json!({"a": []}), json!({"a": null}), true)]
    #[case::list_defaults(json!({"ports": [{"port": 80}]}), json!({"ports": [{"port": 80, "protocol": "TCP"}]}), true)]
    #[case::list_length(json!({"ports": [{"port": 80}]}), json!({"ports": [{"port": 80}, {"port": 81}]}), false)]
    #[case::list_order(json!({"l": [1, 2]}), json!({"l": [2, 1]}), false)]
    #[case::float_int(json!({"a": 1.0}), json!({"a": 1}), true)]
    #[case::quantity_normalised(json!({"resources": {"limits": {"cpu": "1000m"}}}), json!({"resources": {"limits": {"cpu": "1"}}}), true)]
    #[case::quantity_binary(json!({"resources": {"requests": {"storage": "1024Mi"}}}), json!({"resources": {"requests": {"storage": "1Gi"}}}), true)]
    #[case::quantity_changed(json!({"resources": {"limits": {"cpu": "500m"}}}), json!({"resources": {"limits": {"cpu": "1"}}}), false)]
    #[case::not_a_quantity_field(json!({"data": {"size": "1000m"}}), json!({"data": {"size": "1"}}), false)]
    #[case::type_change(json!({"a": "1"}), json!({"a": 1}), false)]
    fn subset_cases(#[case] desired: Value, #[case] live: Value, #[case] expected: bool) {
        assert_eq!(is_subset(&desired, &live), expected);
        // `changes` agrees with `is_subset`.
        assert_eq!(changes(Some(&live), &desired).is_empty(), expected);
    }

    #[rstest]
    #[case("1", 1.0)]
    #[case("500m", 0.5)]
    #[case("1Ki", 1024.0)]
    #[case("2e3", 2000.0)]
    #[case("1.5G", 1.5e9)]
    fn quantities(#[case] s: &str, #[case] v: f64) {
        assert_eq!(parse_quantity(s), Some(v));
    }

    #[rstest]
    #[case("")]
    #[case("abc")]
    #[case("1Xi")]
    #[case("1e")]
    fn not_quantities(#[case] s: &str) {
        assert_eq!(parse_quantity(s), None);
    }

    #[test]
    fn changes_name_the_fields() {
        let live = json!({"data": {"a": "1", "b": "2"}, "metadata": {"name": "x"}});
        let desired = json!({"data": {"a": "1", "b": "3", "c": "4"}, "metadata": {"name": "x"}});
        let c = changes(Some(&live), &desired);
        let paths: Vec<_> = c.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/data/b", "/data/c"]);
        assert_eq!(c[0].old.as_deref(), Some("\"2\""));
        assert_eq!(c[1].old, None);
    }

    #[test]
    fn creation_lists_every_top_level_field() {
        let c = changes(None, &json!({"data": {"a": "1"}, "metadata": {"name": "x"}}));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn fingerprint_ignores_key_order_and_sees_changes() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"c":[1,2]}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"c":[1,2]},"a":1}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"b":{"c":[2,1]},"a":1}"#).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_eq!(fingerprint(&a).len(), 16);
        // Pinned: the annotation written by one version must be read by the next.
        assert_eq!(fingerprint(&json!({})), "08f44b07b5901a25");
        // Pinned: DR objects carry this hash, so a changed rendering would make the next sync rewrite
        // every object once. Escapes, unicode, numbers, nesting, empty containers.
        let rich = json!({"z": [1, -2.5, 1e21, true, null, "a\"b\\c\n\u{1}é"], "a": {"y": {}, "x": []},
                          "k\"ey": "v", "": 0, "é": {"b": [{"d": 1, "c": 2}]}});
        assert_eq!(fingerprint(&rich), "bed6729eab91c106");
    }
}
