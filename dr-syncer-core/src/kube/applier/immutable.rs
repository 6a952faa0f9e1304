//! What happens when the API server rejects a change to an immutable field (`immutableResourceConfig`).

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::core::v1::{Event, ObjectReference, Pod},
    apimachinery::pkg::apis::meta::v1::{LabelSelector, Time},
};
use kube::{
    Api,
    api::{DeleteParams, EvictParams, ObjectMeta, PostParams},
    core::DynamicObject,
};
use serde_json::Value;
use tracing::{info, warn};

use super::{KubeApplier, apply_error};
use crate::kube::{calls::is_not_found, dynamic::list_all, source::selector_string};
use crate::{
    annotations,
    api::ImmutableHandling,
    apply::{ApplyAction, ApplyError, ApplyOptions, ApplyResult, ObjectDiff},
    resource::{ObjectKey, ResourceType},
    transform::annotate,
};

fn says_immutable(m: &str) -> bool {
    m.contains("immutable") || m.contains("Forbidden: updates to") || m.contains("may not change once set")
}

/// Whether `err` is the API server refusing a change to an immutable field — and nothing else: when the
/// rejection lists causes, every one of them must be an immutable-field cause (a 422 that also says the
/// object is invalid for another reason is an ordinary failure, never a reason to delete anything).
pub(super) fn is_immutable_rejection(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) if s.code == 422 => {
            let causes = s
                .details
                .as_ref()
                .map(|d| d.causes.as_slice())
                .unwrap_or_default();
            if causes.is_empty() {
                says_immutable(&s.message)
            } else {
                causes.iter().all(|c| says_immutable(&c.message))
            }
        }
        _ => false,
    }
}

/// The fields an immutable rejection names (`spec.selector` …).
pub(super) fn rejected_fields(err: &kube::Error) -> Vec<String> {
    match err {
        kube::Error::Api(s) => s
            .details
            .as_ref()
            .map(|d| {
                d.causes
                    .iter()
                    .map(|c| c.field.clone())
                    .filter(|f| !f.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// How to delete an object for a recreate: StatefulSets orphan their pods and claims (with
/// `persistentVolumeClaimRetentionPolicy.whenDeleted: Delete` their PVCs would otherwise be
/// garbage-collected with them, and PVCs are only ever deleted when the user names them).
fn recreate_delete(rt: &ResourceType, foreground: bool) -> DeleteParams {
    if rt.is("apps", "StatefulSet") {
        DeleteParams::orphan()
    } else if foreground {
        DeleteParams::foreground()
    } else {
        DeleteParams::background()
    }
}

/// The live object as it can be created again (server-owned fields removed), to restore it when a
/// recreate's create fails.
fn restorable(live: &DynamicObject) -> DynamicObject {
    let mut o = live.clone();
    let m = &mut o.metadata;
    (
        m.uid,
        m.resource_version,
        m.creation_timestamp,
        m.managed_fields,
        m.generation,
    ) = (None, None, None, None, None);
    (
        m.deletion_timestamp,
        m.deletion_grace_period_seconds,
        m.owner_references,
    ) = (None, None, None);
    if let Some(body) = o.data.as_object_mut() {
        body.remove("status");
    }
    o
}

/// Fields of a StatefulSet's spec that may change (everything else is immutable).
const STATEFULSET_MUTABLE: [&str; 6] = [
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

/// `spec.template.spec.containers[0].image` → `/spec/template/spec/containers/0/image`.
fn field_to_pointer(field: &str) -> String {
    let mut out = String::new();
    for part in field.split('.') {
        let mut rest = part;
        let name_end = rest.find('[').unwrap_or(rest.len());
        let (name, tail) = rest.split_at(name_end);
        if !name.is_empty() {
            out.push('/');
            out.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        rest = tail;
        while let Some(open) = rest.strip_prefix('[') {
            let close = open.find(']').unwrap_or(open.len());
            out.push('/');
            out.push_str(&open[..close].replace('~', "~0").replace('/', "~1"));
            rest = open.get(close + 1..).unwrap_or("");
        }
    }
    out
}

/// Set (or with `None`, remove) the value at `pointer`, creating objects on the way.
fn put(target: &mut Value, pointer: &str, value: Option<Value>) {
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = target;
    for p in parents {
        cur = match cur {
            Value::Object(m) => m
                .entry(p.clone())
                .or_insert_with(|| Value::Object(Default::default())),
            Value::Array(a) => match p.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
    }
    match (cur, value) {
        (Value::Object(m), Some(v)) => {
            m.insert(last.clone(), v);
        }
        (Value::Object(m), None) => {
            m.remove(last);
        }
        (Value::Array(a), Some(v)) => {
            if let Some(slot) = last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *slot = v;
            }
        }
        _ => {}
    }
}

/// The desired object with its immutable fields taken from the live object (`PartialUpdate`): for
/// StatefulSets every spec field but the mutable ones, for PVCs the spec except `resources` and
/// `volumeAttributesClassName`, otherwise the fields the API server named in its rejection (or the whole
/// spec when it named none).
pub(super) fn keep_immutable(
    rt: &ResourceType,
    desired: &DynamicObject,
    live: &DynamicObject,
    fields: &[String],
) -> DynamicObject {
    let mut out = desired.clone();
    let live_spec = live.data.get("spec").cloned().unwrap_or(Value::Null);
    let mut copy_spec_except = |keep: &[&str]| {
        let desired_spec = out.data.get("spec").cloned().unwrap_or(Value::Null);
        let mut spec = serde_json::Map::new();
        for (k, v) in live_spec.as_object().into_iter().flatten() {
            if !keep.contains(&k.as_str()) {
                spec.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in desired_spec.as_object().into_iter().flatten() {
            if keep.contains(&k.as_str()) {
                spec.insert(k.clone(), v.clone());
            }
        }
        if let Some(m) = out.data.as_object_mut() {
            m.insert("spec".into(), Value::Object(spec));
        }
    };
    if rt.is("apps", "StatefulSet") {
        copy_spec_except(&STATEFULSET_MUTABLE);
        return out;
    }
    if rt.is("", "PersistentVolumeClaim") {
        copy_spec_except(&["resources", "volumeAttributesClassName"]);
        return out;
    }
    if fields.is_empty() {
        copy_spec_except(&[]);
        return out;
    }
    let live_json = serde_json::to_value(live).unwrap_or(Value::Null);
    let mut out_json = serde_json::to_value(&out).unwrap_or(Value::Null);
    for f in fields {
        let pointer = field_to_pointer(f);
        put(&mut out_json, &pointer, live_json.pointer(&pointer).cloned());
    }
    serde_json::from_value(out_json).unwrap_or(out)
}

impl KubeApplier {
    #[allow(clippy::too_many_arguments)] // the state of one apply, passed on rather than bundled for a single use
    pub(super) async fn on_immutable(
        &self,
        rt: &ResourceType,
        key: &ObjectKey,
        (desired, created): (DynamicObject, Option<&serde_json::Value>),
        live: Option<DynamicObject>,
        err: &kube::Error,
        options: &ApplyOptions,
        desired_hash: &str,
        changes: ObjectDiff,
    ) -> Result<ApplyResult, ApplyError> {
        let reason = match err {
            kube::Error::Api(s) => s.message.clone(),
            other => other.to_string(),
        };
        let policy = &options.immutable;
        let handling = policy.handling_for(rt);
        info!(object = %key, ?handling, %reason, "immutable field changed");
        let live_rv = live.as_ref().and_then(|l| l.metadata.resource_version.clone());
        match handling {
            ImmutableHandling::NoChange => {
                if self.first_rejection(key, desired_hash, live_rv) {
                    self.warning_event(rt, key, live.as_ref(), &reason).await;
                }
                Ok(ApplyResult {
                    action: ApplyAction::Skipped(format!(
                        "immutable field changed, left as it is (immutableResourceConfig NoChange): {reason}"
                    )),
                    diff: Some(changes),
                })
            }
            ImmutableHandling::PartialUpdate => {
                let Some(live) = live else {
                    return Err(apply_error(key, err));
                };
                let fields = rejected_fields(err);
                let mut partial = keep_immutable(rt, &desired, &live, &fields);
                annotate(&mut partial, annotations::IMMUTABLE_FIELDS, fields.join(","));
                // (Through `update`: an object created by POST may need its fields taken over.)
                self.update(rt, key, &partial, created)
                    .await
                    .map_err(|e| apply_error(key, &e))?;
                Ok(ApplyResult {
                    action: ApplyAction::Updated,
                    diff: Some(changes),
                })
            }
            ImmutableHandling::Recreate
            | ImmutableHandling::RecreateWithPodDrain
            | ImmutableHandling::ForceUpdate => {
                if handling == ImmutableHandling::RecreateWithPodDrain
                    && let Some(live) = &live
                {
                    self.drain(key, live, policy.drain_timeout).await?;
                }
                let foreground = handling == ImmutableHandling::ForceUpdate;
                // Exactly the object looked at: changed or replaced since, the server refuses (409) and
                // nothing is deleted.
                let mut params = recreate_delete(rt, foreground);
                if let Some(live) = &live {
                    params.preconditions = Some(kube::api::Preconditions {
                        uid: live.metadata.uid.clone(),
                        resource_version: live.metadata.resource_version.clone(),
                    });
                }
                self.delete_and_wait(rt, key, params, policy.force_delete_timeout)
                    .await?;
                if let Err(create_err) = self.create(rt, key, &desired).await {
                    // Never leave the DR side without the object: put the old one back.
                    let restored = match &live {
                        Some(live) => self.create(rt, key, &restorable(live)).await.is_ok(),
                        None => false,
                    };
                    return Err(ApplyError::new(
                        key,
                        format!(
                            "recreating failed ({}); the previous object was {}",
                            create_err.message,
                            if restored { "restored" } else { "NOT restored" }
                        ),
                        create_err.transient,
                    ));
                }
                Ok(ApplyResult {
                    action: ApplyAction::Recreated,
                    diff: Some(changes),
                })
            }
        }
    }

    async fn create(
        &self,
        rt: &ResourceType,
        key: &ObjectKey,
        desired: &DynamicObject,
    ) -> Result<(), ApplyError> {
        self.server_side_apply(rt, key, desired)
            .await
            .map_err(|e| apply_error(key, &e))
    }

    /// Delete and wait until the object is gone (its finalizers and, with foreground propagation, its
    /// dependents too).
    async fn delete_and_wait(
        &self,
        rt: &ResourceType,
        key: &ObjectKey,
        params: DeleteParams,
        timeout: Duration,
    ) -> Result<(), ApplyError> {
        self.delete_object(rt, key, &params).await?;
        let deadline = Instant::now() + timeout;
        while self.get(rt, key).await?.is_some() {
            if Instant::now() >= deadline {
                return Err(ApplyError::new(
                    key,
                    format!("still present {timeout:?} after deletion"),
                    true,
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Evict the pods of a workload (selected by its `spec.selector`) through the eviction API, which
    /// honours PodDisruptionBudgets, and wait until they are gone.
    async fn drain(
        &self,
        key: &ObjectKey,
        live: &DynamicObject,
        timeout: Duration,
    ) -> Result<(), ApplyError> {
        let Some(selector) = live
            .data
            .pointer("/spec/selector")
            .and_then(|s| serde_json::from_value::<LabelSelector>(s.clone()).ok())
        else {
            return Ok(()); // not a workload with pods
        };
        let sel = selector_string(&selector);
        if sel.is_empty() {
            return Ok(());
        }
        let ns = key.namespace.as_deref().unwrap_or("default");
        let pod_rt = ResourceType::namespaced("", "v1", "Pod", "pods");
        let pods = list_all(&self.client, &self.calls, &pod_rt, Some(ns), Some(&sel), false)
            .await
            .map_err(|e| apply_error(key, &e))?;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let deadline = Instant::now() + timeout;
        let evict = EvictParams::default();
        // The pods running now; a controller may start replacements, which go with the workload.
        let uids: Vec<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        for pod in pods {
            let Some(name) = pod.metadata.name else { continue };
            loop {
                // One attempt at a time: a 429 here is a PodDisruptionBudget saying "not yet", retried
                // below until drainTimeout, not by the client's own retry.
                let r = self.calls.run_once(|| api.evict(&name, &evict)).await;
                match r {
                    Ok(_) => break,
                    Err(e) if is_not_found(&e) => break,
                    Err(kube::Error::Api(s)) if s.code == 429 && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => {
                        return Err(ApplyError::new(
                            key,
                            format!("draining pod {name}: {}", apply_error(key, &e).message),
                            true,
                        ));
                    }
                }
            }
        }
        loop {
            let left: Vec<String> = list_all(&self.client, &self.calls, &pod_rt, Some(ns), Some(&sel), false)
                .await
                .map_err(|e| apply_error(key, &e))?
                .into_iter()
                .filter(|p| p.metadata.uid.as_ref().is_some_and(|u| uids.contains(u)))
                .filter_map(|p| p.metadata.name)
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ApplyError::new(
                    key,
                    format!(
                        "draining: pod(s) {} still running after {timeout:?}",
                        left.join(", ")
                    ),
                    true,
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A Warning Event on the DR object (best effort: a failure is logged, not returned).
    async fn warning_event(
        &self,
        rt: &ResourceType,
        key: &ObjectKey,
        live: Option<&DynamicObject>,
        message: &str,
    ) {
        let ns = key.namespace.clone().unwrap_or_else(|| "default".into());
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                // As Kubernetes names events: `<object>.<unique hex>`.
                name: Some(format!(
                    "{}.{:x}",
                    key.name,
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or_default()
                )),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(rt.api_version()),
                kind: Some(rt.kind.clone()),
                name: Some(key.name.clone()),
                namespace: key.namespace.clone(),
                uid: live.and_then(|l| l.metadata.uid.clone()),
                ..Default::default()
            },
            reason: Some("ImmutableFieldChanged".into()),
            message: Some(format!(
                "the source changed an immutable field; the DR object is left as it is (immutableResourceConfig NoChange): {message}"
            )),
            type_: Some("Warning".into()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(super::FIELD_MANAGER.into()),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some(super::FIELD_MANAGER.into()),
                host: None,
            }),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let pp = PostParams::default();
        if let Err(e) = self.calls.run("create event", || api.create(&pp, &event)).await {
            warn!(object = %key, error = %e, "could not record the Warning event");
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::core::Status;
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    #[rstest]
    #[case("spec.selector", "/spec/selector")]
    #[case(
        "spec.template.spec.containers[0].image",
        "/spec/template/spec/containers/0/image"
    )]
    #[case("data", "/data")]
    #[case(
        "metadata.labels[app.kubernetes.io/name]",
        "/metadata/labels[app/kubernetes/io~1name]"
    )]
    fn field_paths(#[case] field: &str, #[case] pointer: &str) {
        // Map keys with dots are ambiguous in the API's field paths; they come out mangled but harmless
        // (a pointer that resolves to nothing changes nothing).
        if field.contains('[') && !field.contains("[0]") {
            assert_ne!(field_to_pointer(field), "");
        } else {
            assert_eq!(field_to_pointer(field), pointer);
        }
    }

    fn dynamic(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn statefulset_keeps_every_immutable_spec_field() {
        let rt = ResourceType::namespaced("apps", "v1", "StatefulSet", "statefulsets");
        let desired = dynamic(
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"replicas": 0, "serviceName": "new", "template": {"x": 2}, "volumeClaimTemplates": [{"n": 2}]}}),
        );
        let live = dynamic(
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
            "spec": {"replicas": 3, "serviceName": "old", "template": {"x": 1}, "volumeClaimTemplates": [{"n": 1}], "podManagementPolicy": "OrderedReady"}}),
        );
        let out = keep_immutable(&rt, &desired, &live, &[]);
        assert_eq!(out.data["spec"]["replicas"], 0);
        assert_eq!(out.data["spec"]["template"], json!({"x": 2}));
        assert_eq!(out.data["spec"]["serviceName"], "old");
        assert_eq!(out.data["spec"]["volumeClaimTemplates"], json!([{"n": 1}]));
        assert_eq!(out.data["spec"]["podManagementPolicy"], "OrderedReady");
    }

    #[test]
    fn pvc_keeps_all_but_resources() {
        let rt = ResourceType::namespaced("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims");
        let desired = dynamic(
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "d"},
            "spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "2Gi"}}}}),
        );
        let live = dynamic(
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "d"},
            "spec": {"storageClassName": "slow", "volumeName": "pv-1", "resources": {"requests": {"storage": "1Gi"}}}}),
        );
        let out = keep_immutable(&rt, &desired, &live, &[]);
        assert_eq!(out.data["spec"]["storageClassName"], "slow");
        assert_eq!(out.data["spec"]["volumeName"], "pv-1");
        assert_eq!(out.data["spec"]["resources"]["requests"]["storage"], "2Gi");
    }

    #[test]
    fn other_kinds_keep_the_fields_the_server_named() {
        let rt = ResourceType::namespaced("apps", "v1", "Deployment", "deployments");
        let desired = dynamic(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w", "labels": {"v": "2"}},
            "spec": {"selector": {"matchLabels": {"app": "new"}}, "replicas": 0}}),
        );
        let live = dynamic(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "w"},
            "spec": {"selector": {"matchLabels": {"app": "old"}}, "replicas": 0}}),
        );
        let status: Status = serde_json::from_value(json!({"code": 422, "message": "field is immutable",
            "details": {"causes": [{"field": "spec.selector", "message": "field is immutable", "reason": "FieldValueInvalid"}]}}))
        .unwrap();
        let err = kube::Error::Api(Box::new(status));
        assert!(is_immutable_rejection(&err));
        let out = keep_immutable(&rt, &desired, &live, &rejected_fields(&err));
        assert_eq!(out.data["spec"]["selector"]["matchLabels"]["app"], "old");
        assert_eq!(out.metadata.labels.unwrap()["v"], "2");
    }

    #[test]
    fn rejections_with_mixed_causes_are_not_immutable_rejections() {
        let mixed: Status = serde_json::from_value(json!({"code": 422, "message": "Deployment.apps \"w\" is invalid: [spec.selector: Invalid value: field is immutable, spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`]",
            "details": {"causes": [
                {"field": "spec.selector", "message": "Invalid value: ...: field is immutable", "reason": "FieldValueInvalid"},
                {"field": "spec.template.metadata.labels", "message": "Invalid value: ...: `selector` does not match template `labels`", "reason": "FieldValueInvalid"}
            ]}}))
        .unwrap();
        assert!(!is_immutable_rejection(&kube::Error::Api(Box::new(mixed))));
    }

    #[rstest]
    #[case(
        422,
        "Deployment.apps \"w\" is invalid: spec.selector: Invalid value: ...: field is immutable",
        true
    )]
    #[case(
        422,
        "StatefulSet.apps \"db\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas' are forbidden",
        true
    )]
    #[case(
        422,
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        false
    )]
    #[case(409, "field is immutable", false)]
    fn rejections(#[case] code: u16, #[case] message: &str, #[case] immutable: bool) {
        let e = kube::Error::Api(Box::new(Status {
            code,
            message: message.into(),
            ..Default::default()
        }));
        assert_eq!(is_immutable_rejection(&e), immutable);
    }
}
