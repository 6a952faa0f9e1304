//! What happens when the API server rejects a change to an immutable field (`immutableResourceConfig`).

use std::time::{Duration, Instant};

use k8s_openapi::{
    api::core::v1::{Event, ObjectReference, Pod},
    apimachinery::pkg::apis::meta::v1::{LabelSelector, Time},
};
use kube::{
    Api,
    api::{DeleteParams, EvictParams, ObjectMeta, PostParams},
    core::{DynamicObject, Status},
};
use serde_json::Value;
use tracing::{info, warn};

use super::{
    applier::{KubeApplier, apply_error},
    calls::is_not_found,
    source::{list_all, selector_string},
};
use crate::{
    api::ImmutableHandling,
    apply::{ApplyAction, ApplyError, ApplyOptions, ApplyResult, ObjectDiff},
    resource::{ObjectKey, ResourceType},
};

/// Whether `err` is the API server refusing a change to an immutable field.
pub(super) fn is_immutable_rejection(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(s) if s.code == 422 => {
            let m = &s.message;
            m.contains("immutable")
                || m.contains("Forbidden: updates to")
                || m.contains("may not change once set")
        }
        _ => false,
    }
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
    status: Option<&Status>,
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
    let fields: Vec<String> = status
        .and_then(|s| s.details.as_ref())
        .map(|d| {
            d.causes
                .iter()
                .map(|c| c.field.clone())
                .filter(|f| !f.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if fields.is_empty() {
        copy_spec_except(&[]);
        return out;
    }
    let live_json = serde_json::to_value(live).unwrap_or(Value::Null);
    let mut out_json = serde_json::to_value(&out).unwrap_or(Value::Null);
    for f in fields {
        let pointer = field_to_pointer(&f);
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
        desired: DynamicObject,
        live: Option<DynamicObject>,
        err: &kube::Error,
        options: &ApplyOptions,
        desired_hash: &str,
        changes: ObjectDiff,
    ) -> Result<ApplyResult, ApplyError> {
        let status = match err {
            kube::Error::Api(s) => Some(s.as_ref()),
            _ => None,
        };
        let reason = status
            .map(|s| s.message.clone())
            .unwrap_or_else(|| err.to_string());
        let policy = &options.immutable;
        let handling = policy.handling_for(rt);
        info!(object = %key, ?handling, %reason, "immutable field changed");
        let recreated = |changes| ApplyResult {
            action: ApplyAction::Recreated,
            diff: Some(changes),
        };
        match handling {
            ImmutableHandling::NoChange => {
                if self.first_warning(key, desired_hash) {
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
                let partial = keep_immutable(rt, &desired, &live, status);
                self.server_side_apply(rt, key, &partial)
                    .await
                    .map_err(|e| apply_error(key, &e))?;
                Ok(ApplyResult {
                    action: ApplyAction::Updated,
                    diff: Some(changes),
                })
            }
            ImmutableHandling::Recreate => {
                self.delete_and_wait(rt, key, DeleteParams::background(), policy.force_delete_timeout)
                    .await?;
                self.create(rt, key, &desired).await?;
                Ok(recreated(changes))
            }
            ImmutableHandling::RecreateWithPodDrain => {
                if let Some(live) = &live {
                    self.drain(key, live, policy.drain_timeout).await?;
                }
                self.delete_and_wait(rt, key, DeleteParams::background(), policy.force_delete_timeout)
                    .await?;
                self.create(rt, key, &desired).await?;
                Ok(recreated(changes))
            }
            ImmutableHandling::ForceUpdate => {
                self.delete_and_wait(rt, key, DeleteParams::foreground(), policy.force_delete_timeout)
                    .await?;
                self.create(rt, key, &desired).await?;
                Ok(recreated(changes))
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
            .map(|_| ())
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
        let pods = list_all(&self.client, &self.calls, &pod_rt, Some(ns), Some(&sel))
            .await
            .map_err(|e| apply_error(key, &e))?;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let deadline = Instant::now() + timeout;
        let evict = EvictParams::default();
        for pod in pods {
            let Some(name) = pod.metadata.name else { continue };
            loop {
                let r = self
                    .calls
                    .run(&format!("evict pod {ns}/{name}"), || api.evict(&name, &evict))
                    .await;
                match r {
                    Ok(_) => break,
                    Err(e) if is_not_found(&e) => break,
                    // 429: a PodDisruptionBudget does not allow it yet.
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
            let left = list_all(&self.client, &self.calls, &pod_rt, Some(ns), Some(&sel))
                .await
                .map_err(|e| apply_error(key, &e))?;
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ApplyError::new(
                    key,
                    format!(
                        "{} pod(s) still running after {timeout:?} of draining",
                        left.len()
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
        let out = keep_immutable(&rt, &desired, &live, None);
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
        let out = keep_immutable(&rt, &desired, &live, None);
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
        let out = keep_immutable(&rt, &desired, &live, Some(&status));
        assert_eq!(out.data["spec"]["selector"]["matchLabels"]["app"], "old");
        assert_eq!(out.metadata.labels.unwrap()["v"], "2");
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
