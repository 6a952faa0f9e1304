//! Namespace mapping: objects move to the destination namespace, and namespace references inside
//! RoleBinding/ClusterRoleBinding subjects follow.

use kube::core::DynamicObject;

use super::{Outcome, TransformContext, TransformResult, Transformer};

/// Sets `metadata.namespace` of namespaced objects to the destination namespace, and rewrites
/// RoleBinding and ClusterRoleBinding subjects that point at the source namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamespaceMapper;

impl Transformer for NamespaceMapper {
    fn name(&self) -> std::borrow::Cow<'_, str> {
        "namespace".into()
    }

    fn transform(&self, mut obj: DynamicObject, ctx: &TransformContext) -> TransformResult {
        if ctx.resource.namespaced {
            obj.metadata.namespace = Some(ctx.destination_namespace.clone());
        }
        let rt = &ctx.resource;
        if rt.group == "rbac.authorization.k8s.io"
            && matches!(rt.kind.as_str(), "RoleBinding" | "ClusterRoleBinding")
            && let Some(subjects) = obj.data.get_mut("subjects").and_then(|s| s.as_array_mut())
        {
            for subject in subjects.iter_mut().filter_map(|s| s.as_object_mut()) {
                if subject.get("namespace").and_then(|n| n.as_str()) == Some(ctx.source_namespace.as_str()) {
                    subject.insert("namespace".into(), ctx.destination_namespace.clone().into());
                }
            }
        }
        Ok(Outcome::Keep(obj))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{resource::ResourceType, transform::test_support::*};

    #[test]
    fn moves_namespaced_objects() {
        let o = obj("v1", "ConfigMap", json!({}));
        let ctx = ctx_for(&o);
        let Outcome::Keep(o) = NamespaceMapper.transform(o, &ctx).unwrap() else {
            panic!()
        };
        assert_eq!(o.metadata.namespace.as_deref(), Some("app-dr"));
    }

    #[test]
    fn leaves_cluster_scoped_objects() {
        let o = obj(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            json!({
                "metadata": {"name": "crb"},
                "subjects": [
                    {"kind": "ServiceAccount", "name": "app", "namespace": "app"},
                    {"kind": "ServiceAccount", "name": "other", "namespace": "elsewhere"},
                    {"kind": "User", "name": "alice"}
                ]
            }),
        );
        let mut ctx = ctx_for(&o);
        ctx.resource = ResourceType::namespaced(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
        )
        .cluster_scoped();
        let Outcome::Keep(o) = NamespaceMapper.transform(o, &ctx).unwrap() else {
            panic!()
        };
        assert_eq!(o.metadata.namespace, None);
        assert_eq!(o.data["subjects"][0]["namespace"], "app-dr");
        assert_eq!(o.data["subjects"][1]["namespace"], "elsewhere");
        assert!(o.data["subjects"][2].get("namespace").is_none());
    }

    #[test]
    fn rewrites_role_binding_subjects() {
        let o = obj(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            json!({
                "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": "app"}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}
            }),
        );
        let ctx = ctx_for(&o);
        let Outcome::Keep(o) = NamespaceMapper.transform(o, &ctx).unwrap() else {
            panic!()
        };
        assert_eq!(o.data["subjects"][0]["namespace"], "app-dr");
        assert_eq!(o.data["roleRef"]["name"], "r");
    }

    #[test]
    fn tolerates_malformed_subjects() {
        let o = obj(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            json!({"subjects": "nonsense"}),
        );
        let ctx = ctx_for(&o);
        assert!(matches!(NamespaceMapper.transform(o, &ctx), Ok(Outcome::Keep(_))));
    }
}
