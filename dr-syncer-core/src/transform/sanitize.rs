//! Metadata sanitising: strip what belongs to the source object's life on the source server, and mark the
//! object as dr-syncer's.

use kube::core::DynamicObject;

use super::{TransformContext, TransformResult, Transformer, annotate};
use crate::annotations;

/// Annotations that describe the source server's own bookkeeping.
const DROPPED_ANNOTATIONS: [&str; 4] = [
    annotations::LAST_APPLIED,
    "deployment.kubernetes.io/revision",
    annotations::LAST_SYNCED,
    annotations::DESIRED_HASH,
];

/// Removes uid, resourceVersion, creationTimestamp, generation, managedFields, ownerReferences, finalizers,
/// deletion markers, status and the last-applied annotation; adds `dr-syncer.io/synced-by`,
/// `source-cluster` and `source-namespace`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sanitize;

impl Transformer for Sanitize {
    fn name(&self) -> std::borrow::Cow<'_, str> {
        "sanitize".into()
    }

    fn transform(&self, mut obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        let m = &mut obj.metadata;
        m.uid = None;
        m.resource_version = None;
        m.creation_timestamp = None;
        m.deletion_timestamp = None;
        m.deletion_grace_period_seconds = None;
        m.generation = None;
        m.managed_fields = None;
        m.owner_references = None;
        m.finalizers = None;
        m.generate_name = None;
        m.self_link = None;
        if let Some(ann) = m.annotations.as_mut() {
            for key in DROPPED_ANNOTATIONS {
                ann.remove(key);
            }
        }
        if let Some(body) = obj.data.as_object_mut() {
            body.remove("status");
        }
        annotate(&mut obj, annotations::SYNCED_BY, ctx.synced_by.clone());
        annotate(&mut obj, annotations::SOURCE_CLUSTER, ctx.source_cluster.clone());
        annotate(
            &mut obj,
            annotations::SOURCE_NAMESPACE,
            ctx.source_namespace.clone(),
        );
        Ok(super::Outcome::Keep(obj))
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{Value, json};

    use super::*;
    use crate::transform::{Outcome, test_support::*};

    fn run(v: Value) -> Value {
        let o = obj("v1", "ConfigMap", v);
        let ctx = ctx_for(&o);
        match Sanitize.transform(o, &ctx).unwrap() {
            Outcome::Keep(o) => json_of(&o),
            Outcome::Drop { .. } => panic!("dropped"),
        }
    }

    #[rstest]
    #[case::uid("/metadata/uid")]
    #[case::resource_version("/metadata/resourceVersion")]
    #[case::creation_timestamp("/metadata/creationTimestamp")]
    #[case::generation("/metadata/generation")]
    #[case::managed_fields("/metadata/managedFields")]
    #[case::owner_references("/metadata/ownerReferences")]
    #[case::finalizers("/metadata/finalizers")]
    #[case::status("/status")]
    #[case::last_applied("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")]
    #[case::deployment_revision("/metadata/annotations/deployment.kubernetes.io~1revision")]
    fn removes(#[case] pointer: &str) {
        let out = run(json!({
            "metadata": {
                "name": "c", "namespace": "app", "uid": "u-1", "resourceVersion": "42",
                "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 3,
                "managedFields": [{"manager": "kubectl"}],
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "p", "uid": "p-1"}],
                "finalizers": ["example.io/hold"],
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "deployment.kubernetes.io/revision": "4",
                    "team": "web"
                },
                "labels": {"app": "web"}
            },
            "data": {"k": "v"},
            "status": {"phase": "x"}
        }));
        assert!(out.pointer(pointer).is_none(), "{pointer} still in {out:#}");
        assert_eq!(
            out["metadata"]["annotations"]["team"], "web",
            "other annotations stay"
        );
        assert_eq!(out["metadata"]["labels"]["app"], "web", "labels stay");
        assert_eq!(out["data"]["k"], "v", "content stays");
    }

    #[rstest]
    #[case::synced_by("dr-syncer.io/synced-by", "dr-syncer/app")]
    #[case::source_cluster("dr-syncer.io/source-cluster", "prod")]
    #[case::source_namespace("dr-syncer.io/source-namespace", "app")]
    fn marks(#[case] key: &str, #[case] value: &str) {
        let out = run(json!({"metadata": {"name": "c", "namespace": "app"}}));
        assert_eq!(out["metadata"]["annotations"][key], value);
    }
}
