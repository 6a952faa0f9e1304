//! Examples of using `dr-syncer-core` as a library; run one with
//! `cargo run -p dr-syncer-examples --example <name>`. Manifests for the custom resources live next to
//! this crate in `examples/manifests/`.
//!
//! The crate also holds [`RegistryMirror`], a custom [`Transformer`] of the kind a platform team writes: the
//! DR cluster pulls images from a registry mirror in the DR region, so every container image of a replicated
//! workload is rewritten from the production registry to the mirror. `--example custom_transformer` runs it
//! inside the built-in chain.

use std::borrow::Cow;

use dr_syncer_core::transform::{Outcome, TransformContext, TransformError, TransformResult, Transformer};
use kube::core::DynamicObject;
use serde_json::Value;

/// Rewrites container images from one registry prefix to another (e.g. `registry.prod.example/` →
/// `mirror.dr.example/`) in the pod templates of workloads; other objects pass through unchanged.
#[derive(Debug, Clone)]
pub struct RegistryMirror {
    from: String,
    to: String,
}

impl RegistryMirror {
    /// Rewrite images starting with `from` to start with `to` instead.
    pub fn new(from: impl Into<String>, to: impl Into<String>) -> Self {
        RegistryMirror {
            from: from.into(),
            to: to.into(),
        }
    }

    fn rewrite(&self, containers: &mut Value, obj: &DynamicObject) -> Result<(), TransformError> {
        let Some(list) = containers.as_array_mut() else {
            // A malformed object gets an error naming it, never a panic or a half-changed object.
            return Err(TransformError::new(
                "registry-mirror",
                obj,
                "containers is not a list",
            ));
        };
        for container in list {
            if let Some(image) = container.get_mut("image")
                && let Some(rest) = image.as_str().and_then(|i| i.strip_prefix(&self.from))
            {
                *image = Value::String(format!("{}{rest}", self.to));
            }
        }
        Ok(())
    }
}

impl Transformer for RegistryMirror {
    fn name(&self) -> Cow<'_, str> {
        Cow::Borrowed("registry-mirror")
    }

    fn transform(&self, mut obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        // The context says which type the object is; the pod template sits at a kind-specific path.
        let pointer = match (ctx.resource.group.as_str(), ctx.resource.kind.as_str()) {
            ("apps", "Deployment" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => "/spec/template/spec",
            ("batch", "CronJob") => "/spec/jobTemplate/spec/template/spec",
            _ => return Ok(Outcome::Keep(obj)),
        };
        let original = obj.clone();
        if let Some(pod_spec) = obj.data.pointer_mut(pointer) {
            for field in ["initContainers", "containers"] {
                if let Some(containers) = pod_spec.get_mut(field) {
                    self.rewrite(containers, &original)?;
                }
            }
        }
        Ok(Outcome::Keep(obj))
    }
}

#[cfg(test)]
mod tests {
    use dr_syncer_core::{resource::ResourceType, transform::TransformerChain};
    use rstest::rstest;
    use serde_json::json;

    use super::*;

    fn deployment(containers: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": 3, "template": {"spec": {"containers": containers}}}
        }))
        .expect("deployment")
    }

    fn ctx() -> TransformContext {
        TransformContext::for_test(ResourceType::namespaced(
            "apps",
            "v1",
            "Deployment",
            "deployments",
        ))
    }

    #[rstest]
    #[case("registry.prod.example/shop/web:1.2", "mirror.dr.example/shop/web:1.2")]
    #[case("docker.io/library/nginx:1.27", "docker.io/library/nginx:1.27")]
    #[case("registry.prod.example.evil/x", "registry.prod.example.evil/x")]
    fn rewrites_only_the_production_registry(#[case] image: &str, #[case] expected: &str) {
        let mirror = RegistryMirror::new("registry.prod.example/", "mirror.dr.example/");
        let out = mirror
            .transform(deployment(json!([{"name": "web", "image": image}])), &ctx())
            .expect("transforms");
        let Outcome::Keep(obj) = out else {
            panic!("dropped")
        };
        assert_eq!(
            obj.data["spec"]["template"]["spec"]["containers"][0]["image"],
            expected
        );
    }

    #[test]
    fn malformed_containers_are_an_error_not_a_panic() {
        let mirror = RegistryMirror::new("a/", "b/");
        let err = mirror
            .transform(deployment(json!("not-a-list")), &ctx())
            .expect_err("malformed");
        assert_eq!(err.transformer, "registry-mirror");
        assert!(err.object.contains("shop/web"), "{err}");
    }

    #[test]
    fn composes_with_the_builtin_chain() {
        let chain = TransformerChain::builtin().then(RegistryMirror::new("registry.prod.example/", "m/"));
        let out = chain
            .transform(
                deployment(json!([{"name": "web", "image": "registry.prod.example/web:1"}])),
                &ctx(),
            )
            .expect("transforms");
        let Outcome::Keep(obj) = out else {
            panic!("dropped")
        };
        // Ours ran …
        assert_eq!(
            obj.data["spec"]["template"]["spec"]["containers"][0]["image"],
            "m/web:1"
        );
        // … after the built-ins: the DR copy is quiet and mapped into the destination namespace.
        assert_eq!(obj.data["spec"]["replicas"], 0);
        assert_eq!(obj.metadata.namespace.as_deref(), Some("app-dr"));
    }
}
