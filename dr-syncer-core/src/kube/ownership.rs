//! Field ownership of objects dr-syncer created with a plain create (POST).
//!
//! A first copy creates objects with POST (field manager `dr-syncer`): the server takes a create markedly
//! faster than a server-side apply. Fields created that way belong to the `managedFields` entry of manager
//! `dr-syncer` with operation `Update`, and a server-side apply (operation `Apply`) never removes a field
//! an `Update` entry owns. So when a later desired state leaves out a field that entry still owns (the
//! source dropped it), the applier writes it with one JSON merge patch instead of an apply
//! ([`takeover_patch`]): the desired object, `null` for each dropped field dr-syncer owns and no other
//! manager does, and `managedFields` with the `Update` entry turned into the `Apply` entry — the way
//! `kubectl apply --server-side` takes over client-side-applied objects, here in the same write as the
//! change. The fields that write changes belong to a (small) `Update` entry again; each later write
//! checks it the same way, and every apply that changes one of them takes it over. A merge patch
//! replaces lists whole, so when another manager owns something inside a list the desired object sends
//! ([`others_own_list_contents`]), the applier writes the converted `managedFields` alone and then
//! applies: two writes, once.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use serde_json::{Map, Value};

use super::FIELD_MANAGER;

/// Whether `entry` is dr-syncer's entry of the main resource for `operation` (`Update`: what a create by
/// POST leaves; `Apply`: what an apply leaves).
fn is_own_entry(entry: &ManagedFieldsEntry, operation: &str) -> bool {
    entry.manager.as_deref() == Some(FIELD_MANAGER)
        && entry.operation.as_deref() == Some(operation)
        && on_main_resource(entry)
}

/// Whether `entry` is about the main resource (not a subresource such as `status` or `scale`).
pub(super) fn on_main_resource(entry: &ManagedFieldsEntry) -> bool {
    entry.subresource.as_deref().unwrap_or("").is_empty()
}

fn is_created_entry(entry: &ManagedFieldsEntry) -> bool {
    is_own_entry(entry, "Update")
}

fn own_fields<'a>(entries: &'a [ManagedFieldsEntry], operation: &str) -> Option<&'a Value> {
    entries
        .iter()
        .find(|e| is_own_entry(e, operation))
        .and_then(|e| e.fields_v1.as_ref())
        .map(|f| &f.0)
}

/// The field set of dr-syncer's `Update` entry, if the object has one.
pub(super) fn created_fields(entries: &[ManagedFieldsEntry]) -> Option<&Value> {
    own_fields(entries, "Update")
}

/// Whether `fields` (a `fieldsV1` set) names a field that `obj` lacks: a field an apply of `obj` would
/// leave behind. Conservative: a set member this cannot match against `obj` (an unknown key form, a value
/// of another shape) counts as lacking, which costs one ownership conversion, never a field left behind.
pub(super) fn lacks_owned_field(fields: &Value, obj: &Value) -> bool {
    let Some(members) = fields.as_object() else {
        return false;
    };
    members.iter().any(|(member, sub)| {
        if member == "." {
            return false;
        }
        let child = if let Some(name) = member.strip_prefix("f:") {
            obj.as_object().and_then(|o| o.get(name))
        } else if let Some(key) = member.strip_prefix("k:") {
            list_item(obj, |item| matches_key(item, key))
        } else if let Some(value) = member.strip_prefix("v:") {
            match serde_json::from_str::<Value>(value) {
                Ok(value) => list_item(obj, |item| *item == value),
                Err(_) => None,
            }
        } else if let Some(index) = member.strip_prefix("i:") {
            index
                .parse::<usize>()
                .ok()
                .and_then(|i| obj.as_array().and_then(|a| a.get(i)))
        } else {
            None
        };
        match child {
            None => true,
            Some(child) => lacks_owned_field(sub, child),
        }
    })
}

fn list_item(list: &Value, pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    list.as_array().and_then(|items| items.iter().find(|i| pred(i)))
}

/// Whether list item `item` has the key fields of a `k:` member (`{"name":"a"}`, `{"port":80,...}`).
fn matches_key(item: &Value, key: &str) -> bool {
    let Ok(Value::Object(key)) = serde_json::from_str::<Value>(key) else {
        return false;
    };
    key.iter().all(|(k, v)| item.get(k) == Some(v))
}

/// Union of two `fieldsV1` sets.
fn union(a: &mut Value, b: &Value) {
    let (Some(a), Some(b)) = (a.as_object_mut(), b.as_object()) else {
        return;
    };
    for (k, v) in b {
        match a.get_mut(k) {
            Some(existing) => union(existing, v),
            None => {
                a.insert(k.clone(), v.clone());
            }
        }
    }
}

/// `entries` with dr-syncer's `Update` entry turned into its `Apply` entry (merged into an existing one):
/// the `managedFields` a conversion patch writes. `None` when there is no `Update` entry to convert.
pub(super) fn converted(entries: &[ManagedFieldsEntry]) -> Option<Vec<ManagedFieldsEntry>> {
    let created = entries.iter().find(|e| is_created_entry(e))?;
    let created_fields = created
        .fields_v1
        .as_ref()
        .map(|f| f.0.clone())
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut out: Vec<ManagedFieldsEntry> = entries.iter().filter(|e| !is_created_entry(e)).cloned().collect();
    match out.iter_mut().find(|e| is_own_entry(e, "Apply")) {
        Some(apply) => {
            let mut fields = apply
                .fields_v1
                .take()
                .map(|f| f.0)
                .unwrap_or_else(|| Value::Object(Map::new()));
            union(&mut fields, &created_fields);
            apply.fields_v1 = Some(FieldsV1(fields));
        }
        None => out.push(ManagedFieldsEntry {
            operation: Some("Apply".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(created_fields)),
            ..created.clone()
        }),
    }
    Some(out)
}

/// The field set of dr-syncer's `Apply` entry of the main resource (after [`converted`]: everything
/// dr-syncer owns).
pub(super) fn applied_fields(entries: &[ManagedFieldsEntry]) -> Option<&Value> {
    own_fields(entries, "Apply")
}

/// The union of the field sets other managers own on the main resource.
pub(super) fn others_fields(entries: &[ManagedFieldsEntry]) -> Value {
    let mut all = Value::Object(Map::new());
    for e in entries {
        if e.manager.as_deref() != Some(FIELD_MANAGER)
            && on_main_resource(e)
            && let Some(f) = &e.fields_v1
        {
            union(&mut all, &f.0);
        }
    }
    all
}

/// Whether another manager owns something inside a list that `desired` sends: a merge patch replaces
/// such a list whole and would drop it (a server-side apply merges the list item by item and keeps it).
pub(super) fn others_own_list_contents(others: &Value, desired: &Value) -> bool {
    let Some(members) = others.as_object() else {
        return false;
    };
    members.iter().any(|(member, sub)| {
        let Some(child) = member
            .strip_prefix("f:")
            .and_then(|name| desired.as_object()?.get(name))
        else {
            return false;
        };
        match child {
            Value::Array(_) => sub.as_object().is_some_and(|m| m.keys().any(|k| k != ".")),
            Value::Object(_) => others_own_list_contents(sub, child),
            _ => false,
        }
    })
}

/// The JSON merge patch that writes `desired` to an object created by POST, some of whose fields
/// `desired` drops: `desired`, with `null` for every field dr-syncer owns (`ours`: its `Update` and
/// `Apply` entries together) that `desired` lacks and no other manager owns (`others`) — reachable
/// through objects; a list in `desired` replaces the live one whole, so the caller uses this only when
/// no other manager owns anything inside those lists ([`others_own_list_contents`]) — the
/// `resourceVersion` read (the server refuses the patch if the object changed since), and `managed`:
/// the object's `managedFields` with the `Update` entry converted ([`converted`]).
pub(super) fn takeover_patch(
    ours: &Value,
    others: &Value,
    desired: &Value,
    managed: &[ManagedFieldsEntry],
    resource_version: Option<&str>,
) -> Value {
    let mut patch = desired.clone();
    null_dropped(ours, Some(others), desired, &mut patch);
    if let Some(meta) = patch.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "managedFields".into(),
            serde_json::to_value(managed).unwrap_or(Value::Null),
        );
        meta.insert(
            "resourceVersion".into(),
            resource_version.map_or(Value::Null, |rv| Value::String(rv.into())),
        );
    }
    patch
}

fn null_dropped(ours: &Value, others: Option<&Value>, desired: &Value, patch: &mut Value) {
    let Some(members) = ours.as_object() else {
        return;
    };
    let empty = Value::Object(Map::new());
    for (member, sub) in members {
        let Some(name) = member.strip_prefix("f:") else {
            continue;
        };
        let other = others.and_then(|o| o.get(member));
        match desired.get(name) {
            None => {
                let is_map = sub
                    .as_object()
                    .is_some_and(|m| m.keys().any(|k| k.starts_with("f:")));
                let Some(p) = patch.as_object_mut() else {
                    continue;
                };
                match other {
                    // Nobody else owns anything there: the whole field goes.
                    None => {
                        p.insert(name.to_owned(), Value::Null);
                    }
                    // Others own parts of this map: only dr-syncer's own members go.
                    Some(other) if is_map => {
                        let child = p
                            .entry(name.to_owned())
                            .or_insert_with(|| Value::Object(Map::new()));
                        if !child.is_object() {
                            *child = Value::Object(Map::new());
                        }
                        null_dropped(sub, Some(other), &empty, child);
                    }
                    // Shared with another manager: it stays, as with an apply.
                    Some(_) => {}
                }
            }
            Some(child) if child.is_object() => {
                if let Some(p) = patch.get_mut(name) {
                    null_dropped(sub, other, child, p);
                }
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    fn entry(manager: &str, operation: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            api_version: Some("v1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            ..Default::default()
        }
    }

    /// The field set the server records for a Service created by POST (defaults included).
    fn service_fields() -> Value {
        json!({
            "f:metadata": {"f:annotations": {".": {}, "f:a": {}}},
            "f:spec": {
                "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {
                    ".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}},
                "f:selector": {}, "f:sessionAffinity": {}, "f:type": {}
            }
        })
    }

    fn service(annotations: Value, ports: Value) -> Value {
        json!({
            "metadata": {"name": "s", "annotations": annotations},
            "spec": {"ports": ports, "selector": {"app": "x"}, "sessionAffinity": "None", "type": "ClusterIP"}
        })
    }

    #[rstest]
    #[case::same_object(json!({"a": "1"}), json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]), false)]
    #[case::value_changed(json!({"a": "2"}), json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 9090}]), false)]
    #[case::field_added(json!({"a": "1", "b": "2"}), json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]), false)]
    #[case::annotation_dropped(json!({}), json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]), true)]
    #[case::list_item_dropped(json!({"a": "1"}), json!([{"name": "http", "port": 81, "protocol": "TCP", "targetPort": 8080}]), true)]
    #[case::field_of_a_list_item_dropped(json!({"a": "1"}), json!([{"port": 80, "protocol": "TCP", "targetPort": 8080}]), true)]
    fn a_drop_is_found_in_the_owned_set(
        #[case] annotations: Value,
        #[case] ports: Value,
        #[case] lacks: bool,
    ) {
        assert_eq!(
            lacks_owned_field(&service_fields(), &service(annotations, ports)),
            lacks
        );
    }

    #[rstest]
    #[case::set_member_kept(json!(["a", "b"]), false)]
    #[case::set_member_dropped(json!(["b"]), true)]
    #[case::not_a_list(json!("a"), true)]
    fn set_members_and_shapes(#[case] finalizers: Value, #[case] lacks: bool) {
        let fields = json!({"f:metadata": {"f:finalizers": {".": {}, "v:\"a\"": {}}}});
        let obj = json!({"metadata": {"finalizers": finalizers}});
        assert_eq!(lacks_owned_field(&fields, &obj), lacks);
    }

    #[test]
    fn unknown_member_forms_count_as_lacking() {
        let obj = json!({"spec": {"x": 1}});
        assert!(lacks_owned_field(&json!({"f:spec": {"z:x": {}}}), &obj));
        assert!(lacks_owned_field(
            &json!({"f:spec": {"k:not json": {}}}),
            &json!({"spec": [{"a": 1}]})
        ));
        assert!(!lacks_owned_field(&json!({"f:spec": {"f:x": {}}}), &obj));
        assert!(lacks_owned_field(&json!({"f:spec": {"i:0": {}}}), &obj));
        assert!(!lacks_owned_field(
            &json!({"f:spec": {"i:0": {}}}),
            &json!({"spec": [1]})
        ));
    }

    #[test]
    fn only_the_created_entry_counts() {
        let created = entry(FIELD_MANAGER, "Update", service_fields());
        let mut entries = vec![
            entry("kubectl-edit", "Update", json!({"f:data": {}})),
            entry(FIELD_MANAGER, "Apply", json!({"f:data": {}})),
            ManagedFieldsEntry {
                subresource: Some("status".into()),
                ..created.clone()
            },
        ];
        assert_eq!(created_fields(&entries), None);
        assert_eq!(created_fields(&[]), None);
        entries.push(created);
        assert_eq!(created_fields(&entries), Some(&service_fields()));
    }

    #[test]
    fn the_takeover_patch_nulls_dropped_fields_and_replaces_lists() {
        let fields = json!({
            "f:metadata": {"f:labels": {".": {}, "f:keep": {}, "f:gone": {}}},
            "f:data": {"f:a": {}, "f:b": {}},
            "f:spec": {"f:ports": {"k:{\"port\":80}": {"f:port": {}, "f:name": {}}}, "f:old": {}},
            "f:extra": {}
        });
        let desired = json!({
            "apiVersion": "v1", "kind": "Thing",
            "metadata": {"name": "t", "labels": {"keep": "1"}},
            "data": {"a": "1"},
            "spec": {"ports": [{"port": 80}]}
        });
        let managed = [entry(FIELD_MANAGER, "Apply", json!({"f:data": {}}))];
        let patch = takeover_patch(&fields, &json!({}), &desired, &managed, Some("42"));
        assert_eq!(
            patch,
            json!({
                "apiVersion": "v1", "kind": "Thing",
                "metadata": {
                    "name": "t", "labels": {"keep": "1", "gone": null}, "resourceVersion": "42",
                    "managedFields": [{"apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}},
                                       "manager": FIELD_MANAGER, "operation": "Apply"}]
                },
                "data": {"a": "1", "b": null},
                "spec": {"ports": [{"port": 80}], "old": null},
                "extra": null
            })
        );
    }

    #[test]
    fn the_created_entry_becomes_the_apply_entry() {
        let edit = entry("kubectl-edit", "Update", json!({"f:data": {"f:x": {}}}));
        let created = entry(FIELD_MANAGER, "Update", json!({"f:data": {"f:a": {}, "f:b": {}}}));
        // No Apply entry yet: the Update entry is renamed.
        let out = converted(&[edit.clone(), created.clone()]).expect("converted");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], edit);
        assert_eq!(out[1].operation.as_deref(), Some("Apply"));
        assert_eq!(out[1].manager.as_deref(), Some(FIELD_MANAGER));
        assert_eq!(out[1].fields_v1, created.fields_v1);
        // With an Apply entry: merged into it.
        let apply = entry(
            FIELD_MANAGER,
            "Apply",
            json!({"f:data": {"f:b": {}, "f:c": {}}, "f:metadata": {}}),
        );
        let out = converted(&[created, edit.clone(), apply]).expect("converted");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], edit);
        assert_eq!(
            out[1].fields_v1.as_ref().map(|f| &f.0),
            Some(&json!({"f:data": {"f:a": {}, "f:b": {}, "f:c": {}}, "f:metadata": {}}))
        );
        // Nothing to convert.
        assert_eq!(converted(&[edit]), None);
    }

    #[test]
    fn fields_other_managers_own_are_not_nulled() {
        // dr-syncer owned labels a and b and data x; the source dropped all of them.
        let ours = json!({
            "f:metadata": {"f:labels": {".": {}, "f:a": {}, "f:b": {}}},
            "f:data": {".": {}, "f:x": {}, "f:y": {}}
        });
        // Another manager owns label c (added on the DR side) and shares data y.
        let others = json!({"f:metadata": {"f:labels": {"f:c": {}}}, "f:data": {"f:y": {}}});
        let desired = json!({"metadata": {"name": "t"}});
        let patch = takeover_patch(&ours, &others, &desired, &[], None);
        assert_eq!(
            patch,
            json!({
                "metadata": {"name": "t", "labels": {"a": null, "b": null}, "managedFields": [], "resourceVersion": null},
                "data": {"x": null}
            })
        );
    }

    #[rstest]
    #[case::item_of_a_sent_list(json!({"f:spec": {"f:containers": {"k:{\"name\":\"sidecar\"}": {}}}}), true)]
    #[case::whole_atomic_list(json!({"f:spec": {"f:containers": {}}}), false)]
    #[case::list_not_sent(json!({"f:spec": {"f:tolerations": {"k:{\"key\":\"a\"}": {}}}}), false)]
    #[case::map_field(json!({"f:metadata": {"f:labels": {"f:c": {}}}}), false)]
    fn lists_with_contents_of_others(#[case] others: Value, #[case] shared: bool) {
        let desired = json!({"metadata": {"labels": {}}, "spec": {"containers": [{"name": "web"}]}});
        assert_eq!(others_own_list_contents(&others, &desired), shared);
    }
}
