//! Activation: turn a quiet DR workload active (cutover) and back (failback), from the originals the
//! quiet-site transformer recorded.
//!
//! These are pure functions on objects; the CLI and the operator apply the results. Each returns `None`
//! when there is nothing to change, so callers write only when needed.

use kube::core::DynamicObject;
use serde_json::{Value, json};

use crate::{
    annotations,
    object::{TransformError, annotation as ann},
    resource::ResourceType,
};

fn err(obj: &DynamicObject, msg: impl Into<String>) -> TransformError {
    TransformError::new("activation", obj, msg)
}

/// The replica count a source workload stands for: its recorded original when a cutover quieted it
/// (`dr-syncer.io/original-replicas`), else `spec.replicas` (1 when unset, as the API server defaults it).
pub fn source_replicas(obj: &DynamicObject) -> i32 {
    ann(obj, annotations::ORIGINAL_REPLICAS)
        .and_then(|v| v.trim().parse::<i32>().ok())
        .filter(|n| *n >= 0)
        .or_else(|| {
            obj.data
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
        })
        .unwrap_or(1)
}

/// The change that activates a quiet DR object: restore replicas from `dr-syncer.io/original-replicas`,
/// `suspend` from `dr-syncer.io/original-suspend`, a DaemonSet's node selector from
/// `dr-syncer.io/original-node-selector`. Returns a merge patch, or `None` when the object is already
/// active or has nothing recorded.
pub fn activate(rt: &ResourceType, obj: &DynamicObject) -> Result<Option<Value>, TransformError> {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet") => {
            let Some(orig) = ann(obj, annotations::ORIGINAL_REPLICAS) else {
                return Ok(None);
            };
            let want: i64 = orig.trim().parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                err(
                    obj,
                    format!(
                        "{} is not a replica count: {orig:?}",
                        annotations::ORIGINAL_REPLICAS
                    ),
                )
            })?;
            let current = obj
                .data
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            Ok((current != want).then(|| json!({"spec": {"replicas": want}})))
        }
        ("batch", "CronJob") => {
            let Some(orig) = ann(obj, annotations::ORIGINAL_SUSPEND) else {
                return Ok(None);
            };
            let want = match orig.trim() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(err(
                        obj,
                        format!("{} is not a boolean: {other:?}", annotations::ORIGINAL_SUSPEND),
                    ));
                }
            };
            let current = obj
                .data
                .pointer("/spec/suspend")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Ok((current != want).then(|| json!({"spec": {"suspend": want}})))
        }
        ("keda.sh", "ScaledObject") => {
            let Some(orig) = ann(obj, annotations::ORIGINAL_PAUSED) else {
                return Ok(None);
            };
            let want = orig.trim() == "true";
            let paused = ann(obj, annotations::KEDA_PAUSED).map(str::trim) == Some("true");
            Ok((paused != want).then(|| {
                json!({"metadata": {"annotations": {
                    annotations::KEDA_PAUSED: if want { json!("true") } else { Value::Null }
                }}})
            }))
        }
        ("apps", "DaemonSet") => {
            let current = obj
                .data
                .pointer("/spec/template/spec/nodeSelector")
                .cloned()
                .unwrap_or(Value::Null);
            if current.get(annotations::QUIET_NODE_SELECTOR_KEY).is_none() {
                return Ok(None);
            }
            let original: Value = match ann(obj, annotations::ORIGINAL_NODE_SELECTOR) {
                Some(s) => serde_json::from_str(s).map_err(|e| {
                    err(
                        obj,
                        format!(
                            "{} is not a JSON object: {e}",
                            annotations::ORIGINAL_NODE_SELECTOR
                        ),
                    )
                })?,
                // Nothing recorded: lift only the hold, keep the rest of the selector.
                None => {
                    let mut rest = current.as_object().cloned().unwrap_or_default();
                    rest.remove(annotations::QUIET_NODE_SELECTOR_KEY);
                    Value::Object(rest)
                }
            };
            // A merge patch replaces the selector map key by key: null removes the quiet key and any key
            // the original did not have.
            let mut patch = serde_json::Map::new();
            for key in current.as_object().into_iter().flat_map(|m| m.keys()) {
                patch.insert(key.clone(), Value::Null);
            }
            for (k, v) in original.as_object().into_iter().flatten() {
                patch.insert(k.clone(), v.clone());
            }
            Ok(Some(
                json!({"spec": {"template": {"spec": {"nodeSelector": Value::Object(patch)}}}}),
            ))
        }
        _ => Ok(None),
    }
}

/// The change that gives a quieted production workload back its recorded state and drops the records
/// (a failback, on production): [`activate`] plus the removal of `dr-syncer.io/original-*`, so a later
/// sync reads production's own values again. `None` when there is nothing recorded.
pub fn release(rt: &ResourceType, obj: &DynamicObject) -> Result<Option<Value>, TransformError> {
    let records: Vec<&str> = [
        annotations::ORIGINAL_REPLICAS,
        annotations::ORIGINAL_SUSPEND,
        annotations::ORIGINAL_NODE_SELECTOR,
        annotations::ORIGINAL_PAUSED,
    ]
    .into_iter()
    .filter(|k| ann(obj, k).is_some())
    .collect();
    let mut patch = activate(rt, obj)?.unwrap_or_else(|| json!({}));
    if records.is_empty() {
        return Ok((patch != json!({})).then_some(patch));
    }
    // (Into the annotations `activate` may already change, e.g. a ScaledObject's pause.)
    let ann_patch = patch
        .as_object_mut()
        .expect("a merge patch is an object")
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .expect("metadata patch is an object")
        .entry("annotations")
        .or_insert_with(|| json!({}));
    for k in records {
        ann_patch[k] = Value::Null;
    }
    Ok(Some(patch))
}

/// Whether a quiet workload ran before a drill quieted it, from its records: replicas above 0, a CronJob
/// not suspended, a DaemonSet whose hold a drill added.
pub fn recorded_active(rt: &ResourceType, obj: &DynamicObject) -> bool {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet") => ann(obj, annotations::ORIGINAL_REPLICAS)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|n| n > 0),
        ("batch", "CronJob") => ann(obj, annotations::ORIGINAL_SUSPEND).map(str::trim) == Some("false"),
        ("apps", "DaemonSet") => ann(obj, annotations::ORIGINAL_NODE_SELECTOR).is_some(),
        ("keda.sh", "ScaledObject") => ann(obj, annotations::ORIGINAL_PAUSED).map(str::trim) == Some("false"),
        _ => false,
    }
}

/// The change that quiets an active workload again (failback on the DR side, or the source during a
/// cutover): record the current value as the original and set replicas 0 / suspend / hold DaemonSets.
/// Returns a merge patch, or `None` when already quiet.
pub fn quiet(rt: &ResourceType, obj: &DynamicObject) -> Result<Option<Value>, TransformError> {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet") => {
            let current = obj
                .data
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if current == 0 {
                return Ok(None);
            }
            Ok(Some(json!({
                "metadata": {"annotations": {annotations::ORIGINAL_REPLICAS: current.to_string()}},
                "spec": {"replicas": 0}
            })))
        }
        ("batch", "CronJob") => {
            let current = obj
                .data
                .pointer("/spec/suspend")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if current {
                return Ok(None);
            }
            Ok(Some(json!({
                "metadata": {"annotations": {annotations::ORIGINAL_SUSPEND: "false"}},
                "spec": {"suspend": true}
            })))
        }
        ("apps", "DaemonSet") => {
            let current = obj
                .data
                .pointer("/spec/template/spec/nodeSelector")
                .cloned()
                .unwrap_or(json!({}));
            if current.get(annotations::QUIET_NODE_SELECTOR_KEY).is_some() {
                return Ok(None);
            }
            Ok(Some(json!({
                "metadata": {"annotations": {annotations::ORIGINAL_NODE_SELECTOR: current.to_string()}},
                "spec": {"template": {"spec": {"nodeSelector": {annotations::QUIET_NODE_SELECTOR_KEY: "true"}}}}
            })))
        }
        ("keda.sh", "ScaledObject") => {
            if ann(obj, annotations::KEDA_PAUSED).map(str::trim) == Some("true") {
                return Ok(None);
            }
            Ok(Some(json!({
                "metadata": {"annotations": {
                    annotations::ORIGINAL_PAUSED: "false",
                    annotations::KEDA_PAUSED: "true"
                }}
            })))
        }
        _ => Ok(None),
    }
}

/// On an active DR site, carry the live DR object's activation fields over into the desired one, so a
/// sync neither quiets an activated workload nor undoes a scale made on the DR side since the cutover:
/// `spec.replicas` (Deployments, StatefulSets), `spec.suspend` (CronJobs) and the pod template's
/// `nodeSelector` (DaemonSets). Server-side apply would *remove* a field dr-syncer owned and no longer
/// sends, so the fields are carried with their live values instead of being left out.
pub fn carry_live_activation(rt: &ResourceType, desired: &mut DynamicObject, live: &DynamicObject) {
    let pointer = match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet") => "/spec/replicas",
        ("batch", "CronJob") => "/spec/suspend",
        ("apps", "DaemonSet") => "/spec/template/spec/nodeSelector",
        ("keda.sh", "ScaledObject") => {
            // An annotation: carried in the metadata.
            let key = annotations::KEDA_PAUSED;
            match live.metadata.annotations.as_ref().and_then(|a| a.get(key)) {
                Some(v) => {
                    desired
                        .metadata
                        .annotations
                        .get_or_insert_default()
                        .insert(key.to_owned(), v.clone());
                }
                None => {
                    if let Some(a) = desired.metadata.annotations.as_mut() {
                        a.remove(key);
                    }
                }
            }
            return;
        }
        _ => return,
    };
    let live_value = live.data.pointer(pointer).cloned();
    let (parent, field) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    match (
        live_value,
        desired.data.pointer_mut(parent).and_then(Value::as_object_mut),
    ) {
        (Some(v), Some(target)) => {
            target.insert(field.to_owned(), v);
        }
        (None, Some(target)) => {
            target.remove(field);
        }
        (_, None) => {}
    }
}

/// Whether a workload runs: a Deployment or StatefulSet with replicas above 0 (unset counts as 1, as the
/// API server defaults it), a CronJob that is not suspended, a DaemonSet not held off every node. Other
/// kinds never count.
pub fn is_running(rt: &ResourceType, obj: &DynamicObject) -> bool {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet") => {
            obj.data
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                > 0
        }
        ("batch", "CronJob") => !obj
            .data
            .pointer("/spec/suspend")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        ("apps", "DaemonSet") => obj
            .data
            .pointer("/spec/template/spec/nodeSelector")
            .and_then(|s| s.get(annotations::QUIET_NODE_SELECTOR_KEY))
            .is_none(),
        ("keda.sh", "ScaledObject") => ann(obj, annotations::KEDA_PAUSED).map(str::trim) != Some("true"),
        _ => false,
    }
}

/// Whether a (DR) Namespace carries the cutover's mark `dr-syncer.io/active: "true"`.
pub fn is_marked_active(ns: &DynamicObject) -> bool {
    crate::site::DestinationState::of_namespace(Some(&ns.metadata)).is_active()
}

/// Apply a JSON merge patch (RFC 7386) to an object — handy to preview what [`activate`] or [`quiet`] do.
pub fn merge(obj: &DynamicObject, patch: &Value) -> Result<DynamicObject, TransformError> {
    let mut doc = serde_json::to_value(obj).map_err(|e| err(obj, e.to_string()))?;
    json_patch::merge(&mut doc, patch);
    serde_json::from_value(doc).map_err(|e| err(obj, e.to_string()))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;
    use crate::transform::{Outcome, QuietDrSite, Transformer, test_support::*};

    /// Quieting with the transformer and activating restores exactly the source's values.
    #[rstest]
    #[case::deployment("apps/v1", "Deployment", json!({"spec": {"replicas": 3, "template": {}}}), "/spec/replicas", json!(3))]
    #[case::deployment_default("apps/v1", "Deployment", json!({"spec": {"template": {}}}), "/spec/replicas", json!(1))]
    #[case::statefulset("apps/v1", "StatefulSet", json!({"spec": {"replicas": 2, "template": {}}}), "/spec/replicas", json!(2))]
    #[case::cronjob_running("batch/v1", "CronJob", json!({"spec": {"suspend": false}}), "/spec/suspend", json!(false))]
    #[case::cronjob_suspended("batch/v1", "CronJob", json!({"spec": {"suspend": true}}), "/spec/suspend", json!(true))]
    #[case::daemonset_selector("apps/v1", "DaemonSet", json!({"spec": {"template": {"spec": {"nodeSelector": {"pool": "a"}}}}}), "/spec/template/spec/nodeSelector", json!({"pool": "a"}))]
    #[case::daemonset_no_selector("apps/v1", "DaemonSet", json!({"spec": {"template": {"spec": {}}}}), "/spec/template/spec/nodeSelector", json!({}))]
    fn quiet_then_activate_round_trips(
        #[case] av: &str,
        #[case] kind: &str,
        #[case] body: Value,
        #[case] pointer: &str,
        #[case] want: Value,
    ) {
        let source = obj(av, kind, body);
        let ctx = ctx_for(&source);
        let Outcome::Keep(quiet_obj) = QuietDrSite.transform(source, &ctx).unwrap() else {
            panic!()
        };
        let patch = activate(&ctx.resource, &quiet_obj).unwrap();
        let active = match patch {
            Some(p) => merge(&quiet_obj, &p).unwrap(),
            None => quiet_obj.clone(),
        };
        let got = json_of(&active).pointer(pointer).cloned().unwrap_or(json!({}));
        assert_eq!(got, want);
        // Activating again changes nothing.
        assert_eq!(activate(&ctx.resource, &active).unwrap(), None);
        // Quieting the active object and activating again restores the same values.
        let requiet = merge(
            &active,
            &quiet(&ctx.resource, &active).unwrap().unwrap_or(json!({})),
        )
        .unwrap();
        let again = merge(
            &requiet,
            &activate(&ctx.resource, &requiet).unwrap().unwrap_or(json!({})),
        )
        .unwrap();
        assert_eq!(
            json_of(&again).pointer(pointer).cloned().unwrap_or(json!({})),
            want
        );
    }

    #[rstest]
    #[case::deployment("apps/v1", "Deployment", json!({"spec": {"replicas": 2}}), true)]
    #[case::deployment_default("apps/v1", "Deployment", json!({"spec": {}}), true)]
    #[case::deployment_quiet("apps/v1", "Deployment", json!({"spec": {"replicas": 0}}), false)]
    #[case::statefulset_quiet("apps/v1", "StatefulSet", json!({"spec": {"replicas": 0}}), false)]
    #[case::cronjob("batch/v1", "CronJob", json!({"spec": {"suspend": false}}), true)]
    #[case::cronjob_suspended("batch/v1", "CronJob", json!({"spec": {"suspend": true}}), false)]
    #[case::daemonset("apps/v1", "DaemonSet", json!({"spec": {"template": {"spec": {"nodeSelector": {"a": "b"}}}}}), true)]
    #[case::daemonset_held("apps/v1", "DaemonSet", json!({"spec": {"template": {"spec": {"nodeSelector": {"dr-syncer.io/quiet": "true"}}}}}), false)]
    #[case::configmap("v1", "ConfigMap", json!({"data": {}}), false)]
    fn running(#[case] av: &str, #[case] kind: &str, #[case] body: Value, #[case] expected: bool) {
        let o = obj(av, kind, body);
        assert_eq!(is_running(&ctx_for(&o).resource, &o), expected);
    }

    /// Quieting production and releasing it restores its values and leaves no record behind.
    #[rstest]
    #[case::deployment("apps/v1", "Deployment", json!({"spec": {"replicas": 3}}))]
    #[case::cronjob("batch/v1", "CronJob", json!({"spec": {"suspend": false}}))]
    #[case::daemonset("apps/v1", "DaemonSet", json!({"spec": {"template": {"spec": {"nodeSelector": {"pool": "a"}}}}}))]
    fn quiet_then_release_round_trips(#[case] av: &str, #[case] kind: &str, #[case] body: Value) {
        let live = obj(av, kind, body);
        let rt = ctx_for(&live).resource;
        let quiet_obj = merge(&live, &quiet(&rt, &live).unwrap().unwrap()).unwrap();
        assert!(!is_running(&rt, &quiet_obj));
        assert!(recorded_active(&rt, &quiet_obj));
        let released = merge(&quiet_obj, &release(&rt, &quiet_obj).unwrap().unwrap()).unwrap();
        assert!(is_running(&rt, &released));
        assert_eq!(json_of(&released)["spec"], json_of(&live)["spec"]);
        let records = released.metadata.annotations.clone().unwrap_or_default();
        assert!(
            records.keys().all(|k| !k.starts_with("dr-syncer.io/original-")),
            "{records:?}"
        );
        assert_eq!(release(&rt, &released).unwrap(), None, "nothing left to release");
    }

    #[test]
    fn corrupt_records_are_errors() {
        let o = obj(
            "apps/v1",
            "Deployment",
            json!({"metadata": {"name": "d", "namespace": "a", "annotations": {"dr-syncer.io/original-replicas": "many"}}, "spec": {}}),
        );
        assert!(activate(&ctx_for(&o).resource, &o).is_err());
    }

    #[rstest::rstest]
    #[case::deployment_scaled_on_dr("apps/v1", "Deployment", json!({"spec": {"replicas": 3}}), json!({"spec": {"replicas": 5}}), "/spec/replicas", Some(json!(5)))]
    #[case::cronjob("batch/v1", "CronJob", json!({"spec": {"suspend": true}}), json!({"spec": {"suspend": false}}), "/spec/suspend", Some(json!(false)))]
    #[case::daemonset("apps/v1", "DaemonSet", json!({"spec": {"template": {"spec": {"nodeSelector": {"a": "b"}}}}}), json!({"spec": {"template": {"spec": {"nodeSelector": {"pool": "x"}}}}}), "/spec/template/spec/nodeSelector", Some(json!({"pool": "x"})))]
    #[case::live_without_selector("apps/v1", "DaemonSet", json!({"spec": {"template": {"spec": {"nodeSelector": {"a": "b"}}}}}), json!({"spec": {"template": {"spec": {}}}}), "/spec/template/spec/nodeSelector", None)]
    #[case::other_kinds_untouched("v1", "ConfigMap", json!({"data": {"a": "1"}}), json!({"data": {"a": "2"}}), "/data/a", Some(json!("1")))]
    fn live_activation_is_carried(
        #[case] av: &str,
        #[case] kind: &str,
        #[case] desired: Value,
        #[case] live: Value,
        #[case] pointer: &str,
        #[case] expected: Option<Value>,
    ) {
        let mut d = crate::transform::test_support::obj(av, kind, desired);
        let l = crate::transform::test_support::obj(av, kind, live);
        let rt = crate::transform::test_support::rt(av, kind);
        carry_live_activation(&rt, &mut d, &l);
        assert_eq!(d.data.pointer(pointer), expected.as_ref());
    }
}

#[cfg(test)]
mod scaler_tests {
    use serde_json::json;

    use super::*;
    use crate::transform::test_support::*;

    /// A KEDA ScaledObject: quieted (paused, original recorded), activated (unpaused), released (records
    /// gone), and counted as running only when not paused.
    #[test]
    fn scaled_objects_are_quieted_and_activated() {
        let so = obj(
            "keda.sh/v1alpha1",
            "ScaledObject",
            json!({"metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"name": "web"}}}),
        );
        let rt = ResourceType::namespaced("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects");
        assert!(is_running(&rt, &so));
        let quiet_patch = quiet(&rt, &so).unwrap().expect("quiets");
        let quieted = merge(&so, &quiet_patch).unwrap();
        assert!(!is_running(&rt, &quieted));
        assert!(recorded_active(&rt, &quieted));
        assert!(quiet(&rt, &quieted).unwrap().is_none(), "already quiet");
        let active = merge(&quieted, &activate(&rt, &quieted).unwrap().expect("activates")).unwrap();
        assert!(is_running(&rt, &active));
        let released = merge(&quieted, &release(&rt, &quieted).unwrap().expect("releases")).unwrap();
        assert!(is_running(&rt, &released));
        let ann = released.metadata.annotations.clone().unwrap_or_default();
        assert!(!ann.contains_key(annotations::ORIGINAL_PAUSED), "{ann:?}");
        assert!(!ann.contains_key(annotations::KEDA_PAUSED), "{ann:?}");
    }
}
