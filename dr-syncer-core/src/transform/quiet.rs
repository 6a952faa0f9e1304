//! A quiet DR site: workloads exist on the DR side but do not run until a cutover activates them.
//!
//! - Deployments and StatefulSets: `replicas: 0`, the source count kept in
//!   `dr-syncer.io/original-replicas`. The label `dr-syncer.io/scale-override` on the source changes this:
//!   an integer is used as the DR replica count, any other value (e.g. `"true"`) keeps the source count.
//! - CronJobs: `suspend: true`, the original kept in `dr-syncer.io/original-suspend`.
//! - DaemonSets: held off every node by a node selector no node carries (`dr-syncer.io/quiet: "true"`), the
//!   original selector kept in `dr-syncer.io/original-node-selector`.
//! - KEDA ScaledObjects (`keda.sh`): paused (`autoscaling.keda.sh/paused: "true"`), the original kept in
//!   `dr-syncer.io/original-paused`, so KEDA does not scale a quiet workload up from zero.
//!   (HorizontalPodAutoscalers need nothing: Kubernetes does not scale a workload at 0 replicas.)
//! - Standalone Jobs: **always** `suspend: true`, whatever `scaleToZero` says and whichever site is
//!   active, and no activation resumes them: a Job that ran on production must not run again on DR.
//!
//! The scale-override label is capped at the source's own replica count: production's labels cannot
//! make the DR site larger than production.
//!
//! Everything is reversible with [`crate::activation`]. When the DR namespace is marked active by a cutover,
//! nothing is quieted: the activation state fields are left out of the desired object so the activated
//! values stay.

use kube::core::DynamicObject;
use serde_json::{Value, json};

use super::{Outcome, TransformContext, TransformError, TransformResult, Transformer, annotate, label};
use crate::annotations;

/// Quiets workloads on the DR side (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct QuietDrSite;

/// What the scale-override label asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Override {
    /// No label: quiet (0 replicas).
    None,
    /// Use this count.
    Replicas(i64),
    /// Keep the source's count.
    KeepSource,
}

pub(crate) fn scale_override(obj: &DynamicObject) -> Override {
    match label(obj, annotations::SCALE_OVERRIDE) {
        None => Override::None,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(n) if n >= 0 => Override::Replicas(n),
            _ => Override::KeepSource,
        },
    }
}

impl Transformer for QuietDrSite {
    fn name(&self) -> std::borrow::Cow<'_, str> {
        "quiet-dr-site".into()
    }

    fn transform(&self, mut obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        let rt = &ctx.resource;
        let kind = match (rt.group.as_str(), rt.kind.as_str()) {
            ("apps", k @ ("Deployment" | "StatefulSet" | "DaemonSet"))
            | ("batch", k @ "CronJob")
            | ("keda.sh", k @ "ScaledObject") => k,
            ("batch", "Job") => {
                // Never run again on DR: suspended, on any site.
                let Some(spec) = obj.data.get_mut("spec").and_then(Value::as_object_mut) else {
                    return Err(TransformError::new("quiet-dr-site", &obj, "has no spec object"));
                };
                spec.insert("suspend".into(), json!(true));
                return Ok(Outcome::Keep(obj));
            }
            _ => return Ok(Outcome::Keep(obj)),
        };
        if ctx.destination_active {
            keep_activation_state(&mut obj, ctx)?;
            return Ok(Outcome::Keep(obj));
        }
        if !ctx.config.scale_to_zero {
            return Ok(Outcome::Keep(obj));
        }
        // A source workload that a cutover quieted carries its originals: the DR copy records those, not
        // the quiet state (so a cutover interrupted after quieting the source and run again still
        // activates the DR side with the right counts).
        if let Some(patch) = crate::activation::activate(rt, &obj)? {
            obj = crate::activation::merge(&obj, &patch)?;
        }
        let Some(spec) = obj.data.get_mut("spec").and_then(Value::as_object_mut) else {
            return Err(TransformError::new("quiet-dr-site", &obj, "has no spec object"));
        };
        match kind {
            "Deployment" | "StatefulSet" => {
                let source = match spec.get("replicas") {
                    None | Some(Value::Null) => 1,
                    Some(v) => v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                        TransformError::new(
                            "quiet-dr-site",
                            &obj,
                            "spec.replicas is not a non-negative integer",
                        )
                    })?,
                };
                let desired = match scale_override(&obj) {
                    Override::None => 0,
                    // (Never above production's own count.)
                    Override::Replicas(n) => n.min(source),
                    Override::KeepSource => source,
                };
                if let Some(spec) = obj.data.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("replicas".into(), json!(desired));
                }
                annotate(&mut obj, annotations::ORIGINAL_REPLICAS, source.to_string());
            }
            "CronJob" => {
                let original = spec.get("suspend").and_then(Value::as_bool).unwrap_or(false);
                spec.insert("suspend".into(), json!(true));
                annotate(&mut obj, annotations::ORIGINAL_SUSPEND, original.to_string());
            }
            "ScaledObject" => {
                let original = crate::transform::annotation(&obj, annotations::KEDA_PAUSED)
                    .map_or("false", |v| if v.trim() == "true" { "true" } else { "false" })
                    .to_owned();
                annotate(&mut obj, annotations::KEDA_PAUSED, "true".to_owned());
                annotate(&mut obj, annotations::ORIGINAL_PAUSED, original);
            }
            _ => {
                // DaemonSet
                let Some(pod) = spec
                    .get_mut("template")
                    .and_then(|t| t.as_object_mut())
                    .map(|t| t.entry("spec").or_insert_with(|| json!({})))
                    .and_then(Value::as_object_mut)
                else {
                    return Err(TransformError::new(
                        "quiet-dr-site",
                        &obj,
                        "has no spec.template object",
                    ));
                };
                let original = pod.get("nodeSelector").cloned().unwrap_or(Value::Null);
                let mut selector = original.as_object().cloned().unwrap_or_default();
                selector.remove(annotations::QUIET_NODE_SELECTOR_KEY);
                let original_json = if selector.is_empty() {
                    "{}".to_owned()
                } else {
                    Value::Object(selector.clone()).to_string()
                };
                selector.insert(annotations::QUIET_NODE_SELECTOR_KEY.into(), json!("true"));
                pod.insert("nodeSelector".into(), Value::Object(selector));
                annotate(&mut obj, annotations::ORIGINAL_NODE_SELECTOR, original_json);
            }
        }
        Ok(Outcome::Keep(obj))
    }
}

/// On an active DR site nothing is quieted. The desired state is the *active* form of the source object:
/// when a cutover quieted the source, it recorded the originals there, so they are restored from those
/// records ([`crate::activation::activate`]); a source that was never quieted passes as it is. The sync
/// engine then carries the DR object's current activation fields over (its replicas may have been scaled
/// since the cutover), see [`crate::activation::carry_live_activation`].
fn keep_activation_state(obj: &mut DynamicObject, ctx: &TransformContext) -> Result<(), TransformError> {
    if let Some(patch) = crate::activation::activate(&ctx.resource, obj)? {
        *obj = crate::activation::merge(obj, &patch)?;
    }
    if let Some(sel) = obj
        .data
        .pointer_mut("/spec/template/spec/nodeSelector")
        .and_then(Value::as_object_mut)
    {
        sel.remove(annotations::QUIET_NODE_SELECTOR_KEY);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rstest::rstest;
    use serde_json::json;

    use super::*;
    use crate::{config::SyncConfig, transform::test_support::*};

    fn run(api_version: &str, kind: &str, v: Value) -> Value {
        let o = obj(api_version, kind, v);
        let ctx = ctx_for(&o);
        match QuietDrSite.transform(o, &ctx).unwrap() {
            Outcome::Keep(o) => json_of(&o),
            Outcome::Drop { .. } => panic!("dropped"),
        }
    }

    fn deployment(replicas: Option<i64>, override_label: Option<&str>) -> Value {
        let mut v = json!({"metadata": {"name": "web", "namespace": "app"}, "spec": {"template": {}}});
        if let Some(r) = replicas {
            v["spec"]["replicas"] = json!(r);
        }
        if let Some(l) = override_label {
            v["metadata"]["labels"] = json!({"dr-syncer.io/scale-override": l});
        }
        v
    }

    #[rstest]
    #[case::quiet(Some(3), None, 0, "3")]
    #[case::default_one(None, None, 0, "1")]
    #[case::already_zero(Some(0), None, 0, "0")]
    #[case::override_integer(Some(3), Some("2"), 2, "3")]
    #[case::override_zero(Some(3), Some("0"), 0, "3")]
    #[case::override_true_keeps_source(Some(3), Some("true"), 3, "3")]
    #[case::override_garbage_keeps_source(Some(5), Some("lots"), 5, "5")]
    #[case::override_negative_keeps_source(Some(5), Some("-1"), 5, "5")]
    #[case::override_above_the_source_is_capped(Some(3), Some("100"), 3, "3")]
    fn deployments(
        #[case] replicas: Option<i64>,
        #[case] label: Option<&str>,
        #[case] want: i64,
        #[case] original: &str,
    ) {
        for kind in ["Deployment", "StatefulSet"] {
            let out = run("apps/v1", kind, deployment(replicas, label));
            assert_eq!(out["spec"]["replicas"], json!(want), "{kind}");
            assert_eq!(
                out["metadata"]["annotations"]["dr-syncer.io/original-replicas"], original,
                "{kind}"
            );
        }
    }

    #[rstest]
    #[case::running(Some(false), "false")]
    #[case::unset(None, "false")]
    #[case::already_suspended(Some(true), "true")]
    fn cronjobs(#[case] suspend: Option<bool>, #[case] original: &str) {
        let mut v = json!({"spec": {"schedule": "* * * * *", "jobTemplate": {}}});
        if let Some(s) = suspend {
            v["spec"]["suspend"] = json!(s);
        }
        let out = run("batch/v1", "CronJob", v);
        assert_eq!(out["spec"]["suspend"], json!(true));
        assert_eq!(
            out["metadata"]["annotations"]["dr-syncer.io/original-suspend"],
            original
        );
    }

    #[rstest]
    #[case::no_selector(json!({"containers": []}), "{}")]
    #[case::with_selector(json!({"nodeSelector": {"pool": "a"}}), r#"{"pool":"a"}"#)]
    fn daemonsets(#[case] pod: Value, #[case] original: &str) {
        let out = run(
            "apps/v1",
            "DaemonSet",
            json!({"spec": {"template": {"spec": pod}}}),
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["nodeSelector"]["dr-syncer.io/quiet"],
            "true"
        );
        assert_eq!(
            out["metadata"]["annotations"]["dr-syncer.io/original-node-selector"],
            original
        );
    }

    #[rstest]
    #[case::unset(None)]
    #[case::running(Some("false"))]
    fn scaled_objects_are_paused_with_their_original(#[case] paused: Option<&str>) {
        let mut v = json!({"metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"name": "web"}}});
        if let Some(p) = paused {
            v["metadata"]["annotations"] = json!({"autoscaling.keda.sh/paused": p});
        }
        let out = run("keda.sh/v1alpha1", "ScaledObject", v);
        let ann = &out["metadata"]["annotations"];
        assert_eq!(ann["autoscaling.keda.sh/paused"], "true");
        assert_eq!(ann["dr-syncer.io/original-paused"], "false");
    }

    /// A standalone Job is suspended on every site and with `scaleToZero: false` too.
    #[rstest]
    #[case::quiet_site(true, false)]
    #[case::scale_to_zero_off(false, false)]
    #[case::active_site(true, true)]
    fn jobs_are_always_suspended(#[case] scale_to_zero: bool, #[case] active: bool) {
        let o = obj(
            "batch/v1",
            "Job",
            json!({"metadata": {"name": "migrate"}, "spec": {"template": {"spec": {}}}}),
        );
        let mut ctx = ctx_for(&o);
        ctx.destination_active = active;
        ctx.config = Arc::new(SyncConfig {
            scale_to_zero,
            ..SyncConfig::default()
        });
        let Outcome::Keep(out) = QuietDrSite.transform(o, &ctx).unwrap() else {
            panic!()
        };
        assert_eq!(out.data["spec"]["suspend"], json!(true));
        assert!(
            crate::activation::activate(&ctx.resource, &out)
                .unwrap()
                .is_none(),
            "no activation resumes it"
        );
    }

    #[test]
    fn other_kinds_pass_through() {
        let v = json!({"metadata": {"name": "c", "namespace": "app"}, "data": {"replicas": "3"}});
        let out = run("v1", "ConfigMap", v.clone());
        assert_eq!(out["data"], v["data"]);
        assert!(out["metadata"].get("annotations").is_none());
    }

    #[test]
    fn scale_to_zero_false_keeps_everything() {
        let o = obj("apps/v1", "Deployment", deployment(Some(3), None));
        let mut ctx = ctx_for(&o);
        ctx.config = Arc::new(SyncConfig {
            scale_to_zero: false,
            ..SyncConfig::default()
        });
        let Outcome::Keep(out) = QuietDrSite.transform(o, &ctx).unwrap() else {
            panic!()
        };
        assert_eq!(out.data["spec"]["replicas"], json!(3));
    }

    #[rstest]
    #[case::deployment("apps/v1", "Deployment", json!({"metadata": {"name": "x", "annotations": {"dr-syncer.io/original-replicas": "3"}}, "spec": {"replicas": 0, "template": {}}}), "/metadata/annotations/dr-syncer.io~1original-replicas", json!("3"))]
    #[case::cronjob("batch/v1", "CronJob", json!({"metadata": {"name": "x", "annotations": {"dr-syncer.io/original-suspend": "false"}}, "spec": {"suspend": true}}), "/metadata/annotations/dr-syncer.io~1original-suspend", json!("false"))]
    #[case::daemonset("apps/v1", "DaemonSet", json!({"metadata": {"name": "x", "annotations": {"dr-syncer.io/original-node-selector": "{\"pool\":\"a\"}"}}, "spec": {"template": {"spec": {"nodeSelector": {"dr-syncer.io/quiet": "true"}}}}}), "/metadata/annotations/dr-syncer.io~1original-node-selector", json!("{\"pool\":\"a\"}"))]
    fn a_source_quieted_by_a_cutover_passes_its_originals_on(
        #[case] av: &str,
        #[case] kind: &str,
        #[case] v: Value,
        #[case] pointer: &str,
        #[case] expected: Value,
    ) {
        let out = run(av, kind, v);
        assert_eq!(out.pointer(pointer), Some(&expected), "{out:#}");
    }

    #[rstest]
    #[case::deployment_source_never_quieted("apps/v1", "Deployment", json!({"spec": {"replicas": 4, "template": {}}}), "/spec/replicas", json!(4))]
    #[case::deployment_source_quieted_by_cutover("apps/v1", "Deployment", json!({"metadata": {"name": "x", "annotations": {"dr-syncer.io/original-replicas": "3"}}, "spec": {"replicas": 0, "template": {}}}), "/spec/replicas", json!(3))]
    #[case::cronjob_source_never_quieted("batch/v1", "CronJob", json!({"spec": {"suspend": false}}), "/spec/suspend", json!(false))]
    #[case::cronjob_source_quieted_by_cutover("batch/v1", "CronJob", json!({"metadata": {"name": "x", "annotations": {"dr-syncer.io/original-suspend": "false"}}, "spec": {"suspend": true}}), "/spec/suspend", json!(false))]
    #[case::daemonset_quiet_key_dropped("apps/v1", "DaemonSet", json!({"spec": {"template": {"spec": {"nodeSelector": {"dr-syncer.io/quiet": "true", "pool": "a"}}}}}), "/spec/template/spec/nodeSelector", json!({"pool": "a"}))]
    fn active_site_is_never_quieted(
        #[case] av: &str,
        #[case] kind: &str,
        #[case] v: Value,
        #[case] pointer: &str,
        #[case] expected: Value,
    ) {
        let o = obj(av, kind, v);
        let mut ctx = ctx_for(&o);
        ctx.destination_active = true;
        let Outcome::Keep(out) = QuietDrSite.transform(o, &ctx).unwrap() else {
            panic!()
        };
        let out = json_of(&out);
        assert_eq!(out.pointer(pointer), Some(&expected), "{out:#}");
    }

    #[rstest]
    #[case::no_spec("apps/v1", "Deployment", json!({}))]
    #[case::string_replicas("apps/v1", "Deployment", json!({"spec": {"replicas": "3"}}))]
    #[case::negative_replicas("apps/v1", "StatefulSet", json!({"spec": {"replicas": -2}}))]
    #[case::daemonset_without_template("apps/v1", "DaemonSet", json!({"spec": {}}))]
    fn malformed_objects_are_errors(#[case] av: &str, #[case] kind: &str, #[case] v: Value) {
        let o = obj(av, kind, v);
        let ctx = ctx_for(&o);
        assert!(QuietDrSite.transform(o, &ctx).is_err());
    }
}
