//! `dr-syncer.io/transform-env`: environment values rewritten for the DR side.
//!
//! The annotation on a source workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod)
//! lists `NAME:VALUE` pairs separated by commas, e.g.
//! `dr-syncer.io/transform-env: "API_URL:https://api.dr.example.com,MODE:dr"`. Every container and init
//! container of the pod template that defines `NAME` gets `VALUE` instead (a `valueFrom` is replaced by the
//! literal value). Only the first `:` separates name and value, so values may contain colons; a literal
//! comma in a value is written `\,`.

use kube::core::DynamicObject;
use serde_json::{Value, json};

use super::{
    Outcome, TransformContext, TransformError, TransformResult, Transformer, annotation, pod_spec_pointer,
};
use crate::annotations;

/// Applies the `dr-syncer.io/transform-env` annotation (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct TransformEnv;

/// Parse `NAME:VALUE,NAME:VALUE` (with `\,` for a literal comma).
pub(crate) fn parse_pairs(spec: &str) -> Result<Vec<(String, String)>, String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                current.push(',');
                chars.next();
            }
            ',' => items.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    items.push(current);
    items
        .into_iter()
        .filter(|i| !i.trim().is_empty())
        .map(|item| {
            let (name, value) = item
                .split_once(':')
                .ok_or_else(|| format!("{item:?} is not NAME:VALUE"))?;
            let name = name.trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                return Err(format!("{name:?} is not a valid environment variable name"));
            }
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect()
}

impl Transformer for TransformEnv {
    fn name(&self) -> std::borrow::Cow<'_, str> {
        "transform-env".into()
    }

    fn transform(&self, mut obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        let Some(spec) = annotation(&obj, annotations::TRANSFORM_ENV).map(str::to_owned) else {
            return Ok(Outcome::Keep(obj));
        };
        let Some(pointer) = pod_spec_pointer(&ctx.resource) else {
            return Ok(Outcome::Keep(obj));
        };
        let pairs = parse_pairs(&spec).map_err(|e| {
            TransformError::new(
                "transform-env",
                &obj,
                format!("invalid {} annotation: {e}", annotations::TRANSFORM_ENV),
            )
        })?;
        let Some(pod) = obj.data.pointer_mut(pointer).and_then(Value::as_object_mut) else {
            return Ok(Outcome::Keep(obj));
        };
        for list in ["containers", "initContainers"] {
            for container in pod
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                for env in container
                    .get_mut("env")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    let Some(var) = env.as_object_mut() else { continue };
                    let Some(name) = var.get("name").and_then(Value::as_str) else {
                        continue;
                    };
                    if let Some((_, value)) = pairs.iter().find(|(n, _)| n == name) {
                        var.remove("valueFrom");
                        var.insert("value".into(), json!(value));
                    }
                }
            }
        }
        Ok(Outcome::Keep(obj))
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::json;

    use super::*;
    use crate::transform::test_support::*;

    #[rstest]
    #[case("A:1", &[("A", "1")])]
    #[case("PRODUCTION_URL:DR_URL,PROD_MODE:DR_MODE", &[("PRODUCTION_URL", "DR_URL"), ("PROD_MODE", "DR_MODE")])]
    #[case("URL:https://dr.example.com:8443/x", &[("URL", "https://dr.example.com:8443/x")])]
    #[case("LIST:a\\,b, B:", &[("LIST", "a,b"), ("B", "")])]
    #[case("", &[])]
    fn parses(#[case] s: &str, #[case] want: &[(&str, &str)]) {
        let got = parse_pairs(s).unwrap();
        let want: Vec<(String, String)> = want.iter().map(|(a, b)| ((*a).into(), (*b).into())).collect();
        assert_eq!(got, want);
    }

    #[rstest]
    #[case("NOVALUE")]
    #[case(":x")]
    #[case("BAD NAME:x")]
    fn rejects(#[case] s: &str) {
        assert!(parse_pairs(s).is_err());
    }

    fn deployment(annotation: &str) -> DynamicObject {
        obj(
            "apps/v1",
            "Deployment",
            json!({
                "metadata": {"name": "web", "namespace": "app", "annotations": {"dr-syncer.io/transform-env": annotation}},
                "spec": {"template": {"spec": {
                    "initContainers": [{"name": "init", "env": [{"name": "MODE", "value": "prod"}]}],
                    "containers": [{"name": "web", "env": [
                        {"name": "MODE", "value": "prod"},
                        {"name": "URL", "valueFrom": {"secretKeyRef": {"name": "s", "key": "url"}}},
                        {"name": "KEEP", "value": "same"}
                    ]}]
                }}}
            }),
        )
    }

    #[test]
    fn rewrites_values_in_all_containers() {
        let o = deployment("MODE:dr,URL:https://dr.example.com");
        let ctx = ctx_for(&o);
        let Outcome::Keep(o) = TransformEnv.transform(o, &ctx).unwrap() else {
            panic!()
        };
        let pod = &o.data["spec"]["template"]["spec"];
        assert_eq!(
            pod["containers"][0]["env"][0],
            json!({"name": "MODE", "value": "dr"})
        );
        assert_eq!(
            pod["containers"][0]["env"][1],
            json!({"name": "URL", "value": "https://dr.example.com"})
        );
        assert_eq!(
            pod["containers"][0]["env"][2],
            json!({"name": "KEEP", "value": "same"})
        );
        assert_eq!(pod["initContainers"][0]["env"][0]["value"], "dr");
    }

    #[test]
    fn cronjob_template() {
        let o = obj(
            "batch/v1",
            "CronJob",
            json!({
                "metadata": {"name": "c", "namespace": "app", "annotations": {"dr-syncer.io/transform-env": "MODE:dr"}},
                "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": "MODE", "value": "prod"}]}]}}}}}
            }),
        );
        let ctx = ctx_for(&o);
        let Outcome::Keep(o) = TransformEnv.transform(o, &ctx).unwrap() else {
            panic!()
        };
        assert_eq!(
            o.data
                .pointer("/spec/jobTemplate/spec/template/spec/containers/0/env/0/value"),
            Some(&json!("dr"))
        );
    }

    #[test]
    fn invalid_annotation_is_an_error_naming_the_object() {
        let o = deployment("oops");
        let ctx = ctx_for(&o);
        let err = TransformEnv.transform(o, &ctx).unwrap_err();
        assert!(err.to_string().contains("Deployment app/web"), "{err}");
    }
}
