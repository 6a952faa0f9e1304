//! PersistentVolumeClaims: StorageClass and access-mode mapping; source-side binding details removed.

use kube::core::DynamicObject;
use serde_json::Value;

use super::{Outcome, TransformContext, TransformResult, Transformer, label};
use crate::annotations;

/// Binding annotations that only make sense on the source cluster.
const BINDING_ANNOTATIONS: [&str; 5] = [
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
];

/// Maps `storageClassName` (the per-PVC label `dr-syncer.io/storage-class` wins over
/// `pvcConfig.storageClassMappings`) and `accessModes` (`accessModeMappings`); clears `volumeName` and the
/// binding annotations unless `syncPersistentVolumes` or `preserveVolumeAttributes` is set; always removes
/// `dataSource`/`dataSourceRef` (they name snapshots or volumes of the source cluster).
#[derive(Debug, Clone, Copy, Default)]
pub struct PvcTransform;

impl Transformer for PvcTransform {
    fn name(&self) -> std::borrow::Cow<'_, str> {
        "pvc".into()
    }

    fn transform(&self, mut obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        if !ctx.resource.is("", "PersistentVolumeClaim") {
            return Ok(Outcome::Keep(obj));
        }
        let cfg = &ctx.config;
        let per_pvc_class = label(&obj, annotations::STORAGE_CLASS).map(str::to_owned);
        if !cfg.preserve_volume_bindings
            && let Some(ann) = obj.metadata.annotations.as_mut()
        {
            for key in BINDING_ANNOTATIONS {
                ann.remove(key);
            }
        }
        let Some(spec) = obj.data.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(Outcome::Keep(obj));
        };
        let mapped = match (
            &per_pvc_class,
            spec.get("storageClassName").and_then(Value::as_str),
        ) {
            (Some(explicit), _) if !explicit.is_empty() => Some(explicit.clone()),
            (_, Some(current)) => cfg.storage_class_mappings.get(current).cloned(),
            _ => None,
        };
        if let Some(class) = mapped {
            spec.insert("storageClassName".into(), Value::String(class));
        }
        if let Some(modes) = spec.get_mut("accessModes").and_then(Value::as_array_mut) {
            for mode in modes.iter_mut() {
                if let Some(to) = mode.as_str().and_then(|m| cfg.access_mode_mappings.get(m)) {
                    *mode = Value::String(to.clone());
                }
            }
            let mut seen = Vec::new();
            modes.retain(|m| {
                if seen.contains(m) {
                    false
                } else {
                    seen.push(m.clone());
                    true
                }
            });
        }
        if !cfg.preserve_volume_bindings {
            spec.remove("volumeName");
        }
        spec.remove("dataSource");
        spec.remove("dataSourceRef");
        Ok(Outcome::Keep(obj))
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use rstest::rstest;
    use serde_json::json;

    use super::*;
    use crate::{config::SyncConfig, transform::test_support::*};

    fn pvc(labels: Value) -> DynamicObject {
        obj(
            "v1",
            "PersistentVolumeClaim",
            json!({
                "metadata": {"name": "data", "namespace": "app", "labels": labels, "annotations": {
                    "pv.kubernetes.io/bind-completed": "yes",
                    "volume.kubernetes.io/selected-node": "node-1",
                    "team": "db"
                }},
                "spec": {
                    "storageClassName": "premium", "accessModes": ["ReadWriteOnce"], "volumeName": "pvc-123",
                    "resources": {"requests": {"storage": "1Gi"}},
                    "dataSource": {"kind": "VolumeSnapshot", "name": "snap", "apiGroup": "snapshot.storage.k8s.io"}
                }
            }),
        )
    }

    fn run(labels: Value, preserve: bool) -> Value {
        let o = pvc(labels);
        let mut ctx = ctx_for(&o);
        ctx.config = Arc::new(SyncConfig {
            storage_class_mappings: BTreeMap::from([("premium".into(), "standard".into())]),
            access_mode_mappings: BTreeMap::from([("ReadWriteOnce".into(), "ReadWriteMany".into())]),
            preserve_volume_bindings: preserve,
            ..SyncConfig::default()
        });
        let Outcome::Keep(o) = PvcTransform.transform(o, &ctx).unwrap() else {
            panic!()
        };
        json_of(&o)
    }

    #[rstest]
    #[case::class_mapped(json!({}), false, "/spec/storageClassName", Some(json!("standard")))]
    #[case::label_wins(json!({"dr-syncer.io/storage-class": "fast-dr"}), false, "/spec/storageClassName", Some(json!("fast-dr")))]
    #[case::access_mode_mapped(json!({}), false, "/spec/accessModes", Some(json!(["ReadWriteMany"])))]
    #[case::volume_name_cleared(json!({}), false, "/spec/volumeName", None)]
    #[case::volume_name_preserved(json!({}), true, "/spec/volumeName", Some(json!("pvc-123")))]
    #[case::bind_annotation_cleared(json!({}), false, "/metadata/annotations/pv.kubernetes.io~1bind-completed", None)]
    #[case::selected_node_cleared(json!({}), false, "/metadata/annotations/volume.kubernetes.io~1selected-node", None)]
    #[case::bind_annotation_preserved(json!({}), true, "/metadata/annotations/pv.kubernetes.io~1bind-completed", Some(json!("yes")))]
    #[case::other_annotations_kept(json!({}), false, "/metadata/annotations/team", Some(json!("db")))]
    #[case::data_source_removed(json!({}), true, "/spec/dataSource", None)]
    #[case::size_kept(json!({}), false, "/spec/resources/requests/storage", Some(json!("1Gi")))]
    fn pvcs(
        #[case] labels: Value,
        #[case] preserve: bool,
        #[case] pointer: &str,
        #[case] want: Option<Value>,
    ) {
        let out = run(labels, preserve);
        assert_eq!(out.pointer(pointer), want.as_ref(), "{out:#}");
    }

    #[test]
    fn unmapped_class_is_kept() {
        let o = pvc(json!({}));
        let ctx = ctx_for(&o);
        let Outcome::Keep(o) = PvcTransform.transform(o, &ctx).unwrap() else {
            panic!()
        };
        assert_eq!(o.data["spec"]["storageClassName"], "premium");
    }
}
