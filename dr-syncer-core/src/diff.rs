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
//!
//! Lists are compared the way a server-side apply merges them ([`ListShapes`], read from the live
//! object's `managedFields`): in a list keyed by fields (containers, env vars, ports, volumes …) or a set,
//! every desired item must be in the live list (in a keyed list: in the desired order, and with no second
//! item of its key, as an apply leaves it), and items other managers added there (a sidecar a mesh
//! injects, an env var set on the DR side) are no difference — an apply would never remove them, so
//! writing for them would only repeat on every sync. Other (atomic) lists must match item by item.

use serde_json::{Map, Value};

use crate::apply::FieldChange;

/// How a list merges in a server-side apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    /// A map list: items are identified by these fields (e.g. `name`; `containerPort` and `protocol`).
    Keyed(Vec<String>),
    /// A set of values.
    Set,
}

/// The lists of one object that merge item by item in a server-side apply (keyed lists and sets), by
/// path: the object keys from the root, list positions left out (`spec.template.spec.containers.env`
/// is `["spec", "template", "spec", "containers", "env"]`). Read from `managedFields`, where the API
/// server records such lists' items as `k:{…}` and `v:…` members; every other list is atomic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListShapes(Vec<(Vec<String>, ListKind)>);

impl ListShapes {
    /// The shapes recorded in these `fieldsV1` sets (of every manager of an object).
    pub fn from_field_sets<'a>(sets: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut shapes = ListShapes::default();
        for set in sets {
            shapes.walk(set, &mut Vec::new());
        }
        shapes
    }

    /// The shapes recorded in `obj`'s `metadata.managedFields` (an object as JSON): the entries on the
    /// main resource (not a subresource such as `status`) and, when `obj` names its `apiVersion`, of
    /// that version (a list may merge differently in another version of a type).
    pub fn of(obj: &Value) -> Self {
        let version = obj.get("apiVersion").and_then(Value::as_str);
        let entries = obj.pointer("/metadata/managedFields").and_then(Value::as_array);
        Self::from_field_sets(
            entries
                .into_iter()
                .flatten()
                .filter(|e| {
                    e.get("subresource")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                        && (version.is_none() || e.get("apiVersion").and_then(Value::as_str) == version)
                })
                .filter_map(|e| e.get("fieldsV1")),
        )
    }

    /// Whether no list of the object merges item by item.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn kind(&self, path: &[String]) -> Option<&ListKind> {
        self.0.iter().find(|(p, _)| p == path).map(|(_, k)| k)
    }

    fn walk(&mut self, set: &Value, path: &mut Vec<String>) {
        let Some(members) = set.as_object() else {
            return;
        };
        for (member, sub) in members {
            if let Some(name) = member.strip_prefix("f:") {
                path.push(name.to_owned());
                self.walk(sub, path);
                path.pop();
            } else if let Some(key) = member.strip_prefix("k:") {
                // The key fields of a list: those of all its items (an optional key field may be absent
                // from some). A key that does not parse leaves the list atomic.
                if let Ok(Value::Object(k)) = serde_json::from_str::<Value>(key) {
                    self.record(path, ListKind::Keyed(k.keys().cloned().collect()));
                }
                self.walk(sub, path);
            } else if member.starts_with("v:") {
                self.record(path, ListKind::Set);
            }
        }
    }

    fn record(&mut self, path: &[String], kind: ListKind) {
        match self.0.iter_mut().find(|(p, _)| p == path) {
            Some((_, ListKind::Keyed(fields))) => {
                if let ListKind::Keyed(more) = kind {
                    for f in more {
                        if !fields.contains(&f) {
                            fields.push(f);
                        }
                    }
                }
            }
            Some(_) => {}
            None => self.0.push((path.to_vec(), kind)),
        }
    }
}

/// Whether every field of `desired` is present in `live` with an equal value (see the module docs), the
/// lists merging as `live`'s `managedFields` say.
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    is_subset_in(desired, live, &ListShapes::of(live))
}

/// [`is_subset`], with the live object's list shapes given (for a live object held without its
/// `managedFields`).
pub fn is_subset_in(desired: &Value, live: &Value, lists: &ListShapes) -> bool {
    subset_at(desired, live, &mut Vec::new(), lists)
}

fn subset_at(desired: &Value, live: &Value, path: &mut Vec<String>, lists: &ListShapes) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => {
                path.push(k.clone());
                let ok = subset_at(dv, lv, path, lists);
                path.pop();
                ok
            }
            None => is_empty(dv),
        }),
        (Value::Array(d), Value::Array(l)) => match lists.kind(path) {
            Some(ListKind::Keyed(fields)) => {
                keyed_subset(d, l, fields, |dv, lv| subset_at(dv, lv, path, lists))
            }
            // A set: each desired value in it (order means nothing in a set).
            Some(ListKind::Set) => d
                .iter()
                .all(|dv| l.iter().any(|lv| subset_at(dv, lv, path, lists))),
            None => d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| subset_at(dv, lv, path, lists)),
        },
        (d, Value::Null) => is_empty(d),
        (d, l) => leaf_equal(d, l, path),
    }
}

/// Whether desired keyed list `d` is in live list `l` the way an apply leaves it: each desired item held
/// (`equal`) by a live item with its key ([`same_key`]), in the desired order (an apply orders the items it
/// shares with the live list as it sends them: env vars may refer to earlier ones, init containers run in
/// order), and no other live item with the key of one of them (a duplicate, which an apply collapses).
/// Live items with other keys — other managers' — before, between or after them are no difference.
fn keyed_subset(
    d: &[Value],
    l: &[Value],
    fields: &[String],
    mut equal: impl FnMut(&Value, &Value) -> bool,
) -> bool {
    let mut matched = vec![false; l.len()];
    let mut next = 0;
    for dv in d {
        let Some(i) = (next..l.len()).find(|&i| same_key(dv, &l[i], fields) && equal(dv, &l[i])) else {
            return false;
        };
        matched[i] = true;
        next = i + 1;
    }
    let same = |a: &Value, b: &Value| fields.iter().all(|f| a.get(f) == b.get(f));
    !l.iter()
        .enumerate()
        .any(|(i, lv)| !matched[i] && l.iter().enumerate().any(|(j, m)| matched[j] && same(lv, m)))
}

/// Whether list items `d` (desired) and `l` (live) have the same key: every key field `d` sets is equal
/// in `l` (a key field the server defaults, such as a port's `protocol`, may be absent from `d`), and `d`
/// sets at least one.
fn same_key(d: &Value, l: &Value, fields: &[String]) -> bool {
    let mut any = false;
    for f in fields {
        if let Some(dv) = d.get(f) {
            match l.get(f) {
                Some(lv) if leaf_equal(dv, lv, &[]) => any = true,
                _ => return false,
            }
        }
    }
    any
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
    changes_in(live, desired, &live.map(ListShapes::of).unwrap_or_default())
}

/// [`changes`], with the live object's list shapes given (see [`is_subset_in`]).
pub fn changes_in(live: Option<&Value>, desired: &Value, lists: &ListShapes) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let empty = Value::Object(Map::new());
    collect(desired, live.unwrap_or(&empty), &mut Vec::new(), lists, &mut out);
    out
}

fn collect(
    desired: &Value,
    live: &Value,
    path: &mut Vec<String>,
    lists: &ListShapes,
    out: &mut Vec<FieldChange>,
) {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            for (k, dv) in d {
                path.push(k.clone());
                match l.get(k) {
                    Some(lv) => collect(dv, lv, path, lists, out),
                    None if is_empty(dv) => {}
                    None => out.push(change(path, None, Some(dv))),
                }
                path.pop();
            }
        }
        _ if subset_at(desired, live, path, lists) => {}
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

    /// A Deployment-like live object whose `managedFields` record `containers` and `env` as lists keyed
    /// by `name`, container `ports` by `containerPort` + `protocol`, and `finalizers` as a set.
    fn live_with(containers: Value, finalizers: Value) -> Value {
        json!({
            "metadata": {
                "finalizers": finalizers,
                "managedFields": [
                    {"manager": "dr-syncer", "operation": "Update", "fieldsV1": {
                        "f:metadata": {"f:finalizers": {".": {}, "v:\"a\"": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                            ".": {}, "f:name": {}, "f:env": {"k:{\"name\":\"KEEP\"}": {"f:value": {}}},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}}
                        }}}
                    }},
                    {"manager": "mesh", "operation": "Update", "fieldsV1": {
                        "f:spec": {"f:containers": {"k:{\"name\":\"proxy\"}": {"f:image": {}}}}
                    }}
                ]
            },
            "spec": {"containers": containers}
        })
    }

    #[test]
    fn list_shapes_come_from_managed_fields() {
        let shapes = ListShapes::of(&live_with(json!([]), json!([])));
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shapes.kind(&path(&["spec", "containers"])),
            Some(&ListKind::Keyed(vec!["name".into()]))
        );
        assert_eq!(
            shapes.kind(&path(&["spec", "containers", "env"])),
            Some(&ListKind::Keyed(vec!["name".into()]))
        );
        assert_eq!(
            shapes.kind(&path(&["spec", "containers", "ports"])),
            Some(&ListKind::Keyed(vec!["containerPort".into(), "protocol".into()]))
        );
        assert_eq!(
            shapes.kind(&path(&["metadata", "finalizers"])),
            Some(&ListKind::Set)
        );
        assert_eq!(shapes.kind(&path(&["spec", "tolerations"])), None);
        assert!(ListShapes::of(&json!({"metadata": {}})).is_empty());
    }

    #[rstest]
    // Items other managers added to keyed lists and sets are no difference, wherever they are.
    #[case::extra_keyed_items(
        json!([{"name": "app", "env": [{"name": "KEEP", "value": "1"}]}]),
        json!([{"name": "proxy", "image": "p"},
               {"name": "app", "env": [{"name": "MESH", "value": "on"}, {"name": "KEEP", "value": "1"}]}]),
        json!(["a"]), json!(["b", "a"]), true)]
    // A changed value inside a keyed item is.
    #[case::changed_keyed_item(
        json!([{"name": "app", "env": [{"name": "KEEP", "value": "1"}]}]),
        json!([{"name": "app", "env": [{"name": "KEEP", "value": "2"}, {"name": "MESH", "value": "on"}]}]),
        json!(["a"]), json!(["a"]), false)]
    // So is a desired item missing from the live list, and a missing set member.
    #[case::missing_keyed_item(
        json!([{"name": "app"}, {"name": "worker"}]),
        json!([{"name": "app"}, {"name": "proxy"}]),
        json!(["a"]), json!(["a"]), false)]
    #[case::missing_set_member(json!([{"name": "app"}]), json!([{"name": "app"}]), json!(["a", "c"]), json!(["a", "b"]), false)]
    // A key field the server defaults (a port's protocol) may be absent from the desired item.
    #[case::defaulted_key_field(
        json!([{"name": "app", "ports": [{"containerPort": 80}]}]),
        json!([{"name": "app", "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 9090, "protocol": "TCP"}]}]),
        json!([]), json!([]), true)]
    // Reordered items dr-syncer sends (an apply restores their order; env vars may refer to earlier
    // ones, init containers run in order), and a duplicate of a key (the last one wins at runtime).
    #[case::reordered_keyed_items(
        json!([{"name": "app", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "$(A)"}]}]),
        json!([{"name": "app", "env": [{"name": "B", "value": "$(A)"}, {"name": "MESH"}, {"name": "A", "value": "1"}]}]),
        json!([]), json!([]), false)]
    #[case::interleaved_keyed_items(
        json!([{"name": "app", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "$(A)"}]}]),
        json!([{"name": "app", "env": [{"name": "A", "value": "1"}, {"name": "MESH"}, {"name": "B", "value": "$(A)"}]}]),
        json!([]), json!([]), true)]
    #[case::duplicate_key(
        json!([{"name": "app", "env": [{"name": "A", "value": "1"}]}]),
        json!([{"name": "app", "env": [{"name": "A", "value": "1"}, {"name": "A", "value": "evil"}]}]),
        json!([]), json!([]), false)]
    // Duplicates the source has itself (the API server accepts them with a warning) are no difference;
    // a key field another item's key has and this one's lacks is matched by the item's value.
    #[case::duplicates_from_the_source(
        json!([{"name": "app", "env": [{"name": "F", "value": "a"}, {"name": "F", "value": "$(F)b"}]}]),
        json!([{"name": "app", "env": [{"name": "F", "value": "a"}, {"name": "F", "value": "$(F)b"}]}]),
        json!([]), json!([]), true)]
    #[case::partial_key_matched_by_value(
        json!([{"name": "app", "ports": [{"containerPort": 80, "name": "http"}]}]),
        json!([{"name": "app", "ports": [{"containerPort": 80, "protocol": "UDP", "name": "dns"},
                                          {"containerPort": 80, "protocol": "TCP", "name": "http"}]}]),
        json!([]), json!([]), true)]
    // A set's order means nothing.
    #[case::reordered_set(json!([]), json!([]), json!(["a", "b"]), json!(["b", "a"]), true)]
    #[case::changed_port(
        json!([{"name": "app", "ports": [{"containerPort": 81}]}]),
        json!([{"name": "app", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]),
        json!([]), json!([]), false)]
    fn lists_merge_as_managed_fields_say(
        #[case] desired_containers: Value,
        #[case] live_containers: Value,
        #[case] desired_finalizers: Value,
        #[case] live_finalizers: Value,
        #[case] expected: bool,
    ) {
        let desired = json!({"metadata": {"finalizers": desired_finalizers}, "spec": {"containers": desired_containers}});
        let live = live_with(live_containers, live_finalizers);
        assert_eq!(is_subset(&desired, &live), expected);
        assert_eq!(changes(Some(&live), &desired).is_empty(), expected);
        // Held without its managedFields, with the shapes read beforehand: the same answer.
        let shapes = ListShapes::of(&live);
        let mut lean = live.clone();
        lean["metadata"].as_object_mut().unwrap().remove("managedFields");
        assert_eq!(is_subset_in(&desired, &lean, &shapes), expected);
    }

    #[test]
    fn list_shapes_come_from_the_main_resource_in_the_object_version() {
        let entry = |version: &str, subresource: &str| {
            json!({"manager": "m", "apiVersion": version, "subresource": subresource, "fieldsV1": {
                "f:spec": {"f:items": {"k:{\"name\":\"a\"}": {}}}
            }})
        };
        let obj = |entries: Value| json!({"apiVersion": "x.io/v2", "metadata": {"managedFields": entries}});
        let keyed = |o: &Value| ListShapes::of(o).kind(&["spec".into(), "items".into()]).is_some();
        assert!(keyed(&obj(json!([entry("x.io/v2", "")]))));
        // Recorded in another version, or by a subresource: the list counts as atomic.
        assert!(!keyed(&obj(json!([entry("x.io/v1", "")]))));
        assert!(!keyed(&obj(json!([entry("x.io/v2", "status")]))));
    }

    #[test]
    fn lists_without_recorded_shapes_match_item_by_item() {
        // The same extra item, in a list `managedFields` do not describe (atomic, or not recorded):
        // a difference, which an apply repairs.
        let desired = json!({"spec": {"tolerations": [{"key": "a"}]}});
        let live = json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}});
        assert!(!is_subset(&desired, &live));
        let mut live = live_with(json!([]), json!([]));
        live["spec"]["tolerations"] = json!([{"key": "a"}, {"key": "b"}]);
        assert!(!is_subset(&desired, &live));
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
