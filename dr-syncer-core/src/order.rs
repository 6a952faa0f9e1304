//! The order in which objects are applied to the DR side.
//!
//! The order follows what each kind refers to, so that nothing is created before what it needs (and
//! admission or controllers on the DR side never see a dangling reference): namespaces, CRDs (waited for
//! until Established), service accounts, secrets, configmaps, PVCs, RBAC, services, workloads, ingresses,
//! then everything else (custom resources last, as their CRDs must be served first) — the [`Tier`]s.
//!
//! Objects are applied wave by wave ([`Tier::wave`]): a wave starts when the one before it has been
//! applied, and its objects go in parallel (bounded), in tier order. Tiers that refer to nothing in each
//! other share a wave — secrets, configmaps, PVCs, RBAC and services refer only to the namespace and
//! service accounts (a service-account token Secret is deleted by the DR side's token controller if its
//! ServiceAccount does not exist yet), and ingresses only to services and secrets — so a namespace of
//! many kinds does not wait for the slowest object of each kind in turn.

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

impl Tier {
    /// The wave this tier is applied in: every tier a kind of this tier may refer to is in an earlier
    /// wave. (0: namespaces; 1: CRDs; 2: service accounts; 3: secrets, configmaps, PVCs, RBAC, services;
    /// 4: workloads and ingresses; 5: the rest.)
    pub fn wave(self) -> u8 {
        match self {
            Tier::Namespaces => 0,
            Tier::Crds => 1,
            Tier::ServiceAccounts => 2,
            Tier::Secrets | Tier::ConfigMaps | Tier::Storage | Tier::Rbac | Tier::Services => 3,
            Tier::Workloads | Tier::Ingresses => 4,
            Tier::Rest => 5,
        }
    }
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
    fn every_reference_is_to_an_earlier_wave() {
        use Tier::*;
        // (tier, a tier its kinds refer to)
        let refers_to = [
            (Crds, Namespaces),
            (ServiceAccounts, Namespaces),
            (Secrets, ServiceAccounts), // service-account token secrets
            (Rbac, ServiceAccounts),    // binding subjects
            (Storage, Namespaces),
            (Services, Namespaces),
            (Workloads, ServiceAccounts),
            (Workloads, Secrets),
            (Workloads, ConfigMaps),
            (Workloads, Storage),
            (Workloads, Rbac),
            (Workloads, Services), // service environment variables of new pods
            (Ingresses, Services),
            (Ingresses, Secrets), // TLS
            (Rest, Crds),
            (Rest, Workloads), // autoscalers, disruption budgets
        ];
        for (tier, dependency) in refers_to {
            assert!(tier.wave() > dependency.wave(), "{tier:?} after {dependency:?}");
            assert!(tier > dependency, "{tier:?} after {dependency:?}");
        }
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
