//! The order in which objects are applied to the DR side.
//!
//! Objects are applied tier by tier; within a tier in parallel (bounded). The order follows what each kind
//! refers to, so that nothing is created before what it needs (and admission or controllers on the DR side
//! never see a dangling reference): namespaces, CRDs (waited for until Established), service accounts,
//! secrets, configmaps, PVCs, RBAC, services, workloads, ingresses, then everything else (custom resources
//! last, as their CRDs must be served first).

use crate::resource::ResourceType;

/// Tiers, in apply order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Namespaces.
    Namespaces,
    /// CustomResourceDefinitions.
    Crds,
    /// ServiceAccounts.
    ServiceAccounts,
    /// Secrets.
    Secrets,
    /// ConfigMaps.
    ConfigMaps,
    /// PersistentVolumeClaims (and PersistentVolumes).
    Storage,
    /// Roles, RoleBindings and their cluster-wide kinds.
    Rbac,
    /// Services.
    Services,
    /// Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs, Pods.
    Workloads,
    /// Ingresses.
    Ingresses,
    /// Everything else (policies, autoscalers, custom resources …).
    Rest,
}

/// The tier of a type.
pub fn tier(rt: &ResourceType) -> Tier {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => Tier::Namespaces,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => Tier::Crds,
        ("", "ServiceAccount") => Tier::ServiceAccounts,
        ("", "Secret") => Tier::Secrets,
        ("", "ConfigMap") => Tier::ConfigMaps,
        ("", "PersistentVolumeClaim" | "PersistentVolume") => Tier::Storage,
        ("rbac.authorization.k8s.io", _) => Tier::Rbac,
        ("", "Service") => Tier::Services,
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("batch", "Job" | "CronJob")
        | ("", "Pod" | "ReplicationController") => Tier::Workloads,
        ("networking.k8s.io" | "extensions", "Ingress") => Tier::Ingresses,
        _ => Tier::Rest,
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("", "Namespace", Tier::Namespaces)]
    #[case("apiextensions.k8s.io", "CustomResourceDefinition", Tier::Crds)]
    #[case("", "ServiceAccount", Tier::ServiceAccounts)]
    #[case("", "Secret", Tier::Secrets)]
    #[case("", "ConfigMap", Tier::ConfigMaps)]
    #[case("", "PersistentVolumeClaim", Tier::Storage)]
    #[case("rbac.authorization.k8s.io", "RoleBinding", Tier::Rbac)]
    #[case("", "Service", Tier::Services)]
    #[case("apps", "StatefulSet", Tier::Workloads)]
    #[case("batch", "CronJob", Tier::Workloads)]
    #[case("networking.k8s.io", "Ingress", Tier::Ingresses)]
    #[case("policy", "PodDisruptionBudget", Tier::Rest)]
    #[case("example.com", "Widget", Tier::Rest)]
    fn tiers(#[case] group: &str, #[case] kind: &str, #[case] expected: Tier) {
        assert_eq!(tier(&ResourceType::namespaced(group, "v1", kind, "x")), expected);
    }

    #[test]
    fn dependencies_come_first() {
        assert!(Tier::Namespaces < Tier::Crds);
        assert!(Tier::Secrets < Tier::Workloads);
        assert!(Tier::ConfigMaps < Tier::Workloads);
        assert!(Tier::Storage < Tier::Workloads);
        assert!(Tier::ServiceAccounts < Tier::Rbac);
        assert!(Tier::Services < Tier::Ingresses);
        assert!(Tier::Workloads < Tier::Rest);
    }
}
