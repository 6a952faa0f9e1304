//! `transformRules`: declarative JSON Patch (RFC 6902) transforms, applied after the built-in ones.
//!
//! A rule's `match` selects objects by API group, kind (case-insensitive), a regular expression the whole
//! name must match, and a label selector — all optional and ANDed. Its patches apply to the whole object
//! (`/metadata/labels/x`, `/spec/...`) as `kubectl patch --type=json` would. When a `test` operation fails the
//! rule is skipped for that object; any other failure is an error for that object. Patches may not change
//! an object's apiVersion, kind, name or namespace.

use kube::core::DynamicObject;

use super::{Outcome, TransformContext, TransformError, TransformResult, Transformer};

/// Applies the mapping's compiled `transformRules` in order.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransformRules;

impl Transformer for TransformRules {
    fn name(&self) -> std::borrow::Cow<'_, str> {
        "transform-rules".into()
    }

    fn transform(&self, obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        let mut current = obj;
        for (i, rule) in ctx.config.rules.iter().enumerate() {
            if !rule.matches(&current, &ctx.resource) {
                continue;
            }
            let err = |o: &DynamicObject, msg: String| {
                TransformError::new("transform-rules", o, format!("rule {i}: {msg}"))
            };
            let mut doc = serde_json::to_value(&current).map_err(|e| err(&current, e.to_string()))?;
            match json_patch::patch(&mut doc, &rule.patch) {
                Ok(()) => {}
                Err(e) if matches!(e.kind, json_patch::PatchErrorKind::TestFailed) => continue,
                Err(e) => return Err(err(&current, e.to_string())),
            }
            let next: DynamicObject = serde_json::from_value(doc).map_err(|e| {
                err(
                    &current,
                    format!("the patched object is not a Kubernetes object: {e}"),
                )
            })?;
            if !super::same_identity(&current, &next) {
                return Err(err(
                    &current,
                    "patches may not change apiVersion, kind, name or namespace".into(),
                ));
            }
            current = next;
        }
        Ok(Outcome::Keep(current))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::api::TransformRule;

    use rstest::rstest;
    use serde_json::{Value, json};

    use super::*;
    use crate::{config::SyncConfig, transform::test_support::*};

    fn run(rules: Value, o: DynamicObject) -> Result<Value, TransformError> {
        let rules: Vec<TransformRule> = serde_json::from_value(rules).unwrap();
        let mut ctx = ctx_for(&o);
        ctx.config = Arc::new(SyncConfig::default().with_rules(&rules).unwrap());
        match TransformRules.transform(o, &ctx)? {
            Outcome::Keep(o) => Ok(json_of(&o)),
            Outcome::Drop { .. } => panic!("dropped"),
        }
    }

    fn deployment(name: &str) -> DynamicObject {
        obj(
            "apps/v1",
            "Deployment",
            json!({
                "metadata": {"name": name, "namespace": "app", "labels": {"tier": "web"}},
                "spec": {"replicas": 0, "template": {"spec": {"containers": [{"name": "c", "image": "app:1"}]}}}
            }),
        )
    }

    #[rstest]
    #[case::add_label(json!([{"patches": [{"op": "add", "path": "/metadata/labels/site", "value": "dr"}]}]), "web-1", "/metadata/labels/site", Some(json!("dr")))]
    #[case::replace_image(json!([{"match": {"kind": "deployment"}, "patches": [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "app:dr"}]}]), "web-1", "/spec/template/spec/containers/0/image", Some(json!("app:dr")))]
    #[case::remove(json!([{"patches": [{"op": "remove", "path": "/metadata/labels/tier"}]}]), "web-1", "/metadata/labels/tier", None)]
    #[case::copy(json!([{"patches": [{"op": "copy", "from": "/metadata/labels/tier", "path": "/metadata/labels/copied"}]}]), "web-1", "/metadata/labels/copied", Some(json!("web")))]
    #[case::name_regex_match(json!([{"match": {"name": "web-.*"}, "patches": [{"op": "add", "path": "/metadata/labels/x", "value": "y"}]}]), "web-1", "/metadata/labels/x", Some(json!("y")))]
    #[case::name_regex_is_anchored(json!([{"match": {"name": "web"}, "patches": [{"op": "add", "path": "/metadata/labels/x", "value": "y"}]}]), "web-1", "/metadata/labels/x", None)]
    #[case::group_mismatch(json!([{"match": {"group": "batch"}, "patches": [{"op": "add", "path": "/metadata/labels/x", "value": "y"}]}]), "web-1", "/metadata/labels/x", None)]
    #[case::selector_match(json!([{"match": {"labelSelector": {"matchLabels": {"tier": "web"}}}, "patches": [{"op": "add", "path": "/metadata/labels/x", "value": "y"}]}]), "web-1", "/metadata/labels/x", Some(json!("y")))]
    #[case::failed_test_skips_rule(json!([{"patches": [{"op": "test", "path": "/spec/replicas", "value": 5}, {"op": "add", "path": "/metadata/labels/x", "value": "y"}]}]), "web-1", "/metadata/labels/x", None)]
    #[case::passed_test_applies(json!([{"patches": [{"op": "test", "path": "/spec/replicas", "value": 0}, {"op": "add", "path": "/metadata/labels/x", "value": "y"}]}]), "web-1", "/metadata/labels/x", Some(json!("y")))]
    #[case::rules_in_order(json!([{"patches": [{"op": "add", "path": "/metadata/labels/x", "value": "1"}]}, {"patches": [{"op": "replace", "path": "/metadata/labels/x", "value": "2"}]}]), "web-1", "/metadata/labels/x", Some(json!("2")))]
    fn apply_rules(
        #[case] rules: Value,
        #[case] name: &str,
        #[case] pointer: &str,
        #[case] want: Option<Value>,
    ) {
        let out = run(rules, deployment(name)).unwrap();
        assert_eq!(out.pointer(pointer), want.as_ref(), "{out:#}");
    }

    #[rstest]
    #[case::missing_path(json!([{"patches": [{"op": "replace", "path": "/spec/nothing/here", "value": 1}]}]))]
    #[case::rename(json!([{"patches": [{"op": "replace", "path": "/metadata/name", "value": "other"}]}]))]
    #[case::change_kind(json!([{"patches": [{"op": "replace", "path": "/kind", "value": "StatefulSet"}]}]))]
    fn failing_patches_are_errors(#[case] rules: Value) {
        let err = run(rules, deployment("web-1")).unwrap_err();
        assert!(err.to_string().contains("web-1"), "{err}");
    }
}
