//! Metadata sanitising: strip what belongs to the source object's life on the source server, and mark the
//! object as dr-syncer's.

use kube::core::DynamicObject;

use super::{TransformContext, TransformResult, Transformer, annotate};
use crate::annotations;

/// Annotations that describe the source server's own bookkeeping, and dr-syncer's own bookkeeping
/// found on a production object (set there by hand or by another tool: dr-syncer writes its own on the
/// DR side, production's say nothing dr-syncer should believe).
const DROPPED_ANNOTATIONS: [&str; 15] = [
    annotations::LAST_APPLIED,
    "deployment.kubernetes.io/revision",
    annotations::LAST_SYNCED,
    annotations::DESIRED_HASH,
    annotations::IMMUTABLE_FIELDS,
    annotations::CREATED_BY,
    annotations::LAST_DATA_SYNC,
    annotations::SOURCE_CLUSTER_UID,
    annotations::ACTIVE,
    annotations::ACTIVE_SINCE,
    annotations::ACTIVATED_BY,
    annotations::STANDBY,
    annotations::STANDBY_SINCE,
    annotations::SYNC_NOW,
    annotations::ALLOW_DELETIONS,
];

/// The records of a workload's state before a drill quieted it. Believed only on an object that is
/// quiet now (a cutover or fence quieted production and recorded them); on a running production object
/// they are dropped, so production cannot make the DR copy activate to another state than its own.
const ORIGINALS: [&str; 4] = [
    annotations::ORIGINAL_REPLICAS,
    annotations::ORIGINAL_SUSPEND,
    annotations::ORIGINAL_NODE_SELECTOR,
    annotations::ORIGINAL_PAUSED,
];

/// Labels the server puts on a Job and its pod template (the selector it generated): a copy must not
/// carry them (the DR server generates its own).
const JOB_LABELS: [&str; 4] = [
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
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
        if let Some(labels) = m.labels.as_mut() {
            labels.remove(annotations::CLI_RUN);
        }
        if crate::activation::is_running(&ctx.resource, &obj)
            && let Some(ann) = obj.metadata.annotations.as_mut()
        {
            for key in ORIGINALS {
                ann.remove(key);
            }
        }
        if ctx.resource.group == "batch" && ctx.resource.kind == "Job" {
            generated_job_selector_removed(&mut obj);
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

/// Drop the selector and labels the source server generated for a Job (unless the Job chose its own,
/// `manualSelector: true`).
fn generated_job_selector_removed(obj: &mut DynamicObject) {
    let manual = obj
        .data
        .pointer("/spec/manualSelector")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if manual {
        return;
    }
    if let Some(spec) = obj.data.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.remove("selector");
    }
    if let Some(labels) = obj.metadata.labels.as_mut() {
        for l in JOB_LABELS {
            labels.remove(l);
        }
    }
    if let Some(labels) = obj
        .data
        .pointer_mut("/spec/template/metadata/labels")
        .and_then(|l| l.as_object_mut())
    {
        for l in JOB_LABELS {
            labels.remove(l);
        }
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

    fn run_kind(api_version: &str, kind: &str, v: Value) -> Value {
        let o = obj(api_version, kind, v);
        let ctx = ctx_for(&o);
        match Sanitize.transform(o, &ctx).unwrap() {
            Outcome::Keep(o) => json_of(&o),
            Outcome::Drop { .. } => panic!("dropped"),
        }
    }

    /// dr-syncer's bookkeeping set on a production object is not believed: dropped, and the records of a
    /// quieted state only stay on an object that is quiet.
    #[test]
    fn bookkeeping_found_on_production_is_dropped() {
        let ann = json!({
            "dr-syncer.io/immutable-fields": "spec.selector",
            "dr-syncer.io/desired-hash": "1",
            "dr-syncer.io/created-by": "x",
            "dr-syncer.io/active": "true",
            "dr-syncer.io/original-replicas": "50",
            "owner": "team"
        });
        let running = run_kind(
            "apps/v1",
            "Deployment",
            json!({"metadata": {"name": "web", "annotations": ann.clone(), "labels": {"dr-syncer.io/cli-run": "r1", "app": "web"}},
                   "spec": {"replicas": 1, "template": {}}}),
        );
        let kept = running["metadata"]["annotations"].as_object().unwrap();
        for gone in [
            "dr-syncer.io/immutable-fields",
            "dr-syncer.io/desired-hash",
            "dr-syncer.io/created-by",
            "dr-syncer.io/active",
            "dr-syncer.io/original-replicas",
        ] {
            assert!(!kept.contains_key(gone), "{gone}: {kept:?}");
        }
        assert_eq!(kept["owner"], "team");
        assert_eq!(running["metadata"]["labels"], json!({"app": "web"}));
        // Quiet (a cutover quieted it and recorded the original): the record stays.
        let quiet = run_kind(
            "apps/v1",
            "Deployment",
            json!({"metadata": {"name": "web", "annotations": ann}, "spec": {"replicas": 0, "template": {}}}),
        );
        assert_eq!(
            quiet["metadata"]["annotations"]["dr-syncer.io/original-replicas"],
            "50"
        );
    }

    #[rstest]
    #[case::generated(false, None)]
    #[case::manual(true, Some(json!({"matchLabels": {"app": "m"}})))]
    fn a_jobs_generated_selector_is_dropped(#[case] manual: bool, #[case] selector: Option<Value>) {
        let out = run_kind(
            "batch/v1",
            "Job",
            json!({
                "metadata": {"name": "m", "labels": {"controller-uid": "u1", "batch.kubernetes.io/job-name": "m", "app": "m"}},
                "spec": {
                    "manualSelector": manual,
                    "selector": {"matchLabels": {"app": "m"}},
                    "template": {"metadata": {"labels": {"controller-uid": "u1", "job-name": "m", "app": "m"}}, "spec": {}}
                }
            }),
        );
        assert_eq!(out["spec"].get("selector").cloned(), selector);
        // (A manual selector is the Job's own: its labels stay as they are.)
        let labels = if manual {
            json!({"controller-uid": "u1", "job-name": "m", "app": "m"})
        } else {
            json!({"app": "m"})
        };
        assert_eq!(out["spec"]["template"]["metadata"]["labels"], labels);
        assert_eq!(out["metadata"]["labels"].get("app"), Some(&json!("m")));
        assert_eq!(out["metadata"]["labels"].get("controller-uid").is_some(), manual);
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
