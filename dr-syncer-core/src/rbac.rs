//! Least-privilege RBAC for the identities in RemoteCluster kubeconfigs (pure, offline): what the source
//! side and the DR side need for the resource types in scope, with explicit resources and verbs (never
//! `*`). `dr-syncer-cli rbac` prints it; `deploy/remote-rbac/source-reader.yaml` and `dr-writer.yaml` are
//! its output for the operator's default types.
//!
//! - **Source** (production): read the types in scope; patch the workloads among them (a cutover, fence
//!   or failback quiets and reactivates production), its pods read (a drill waits for them), Events; the
//!   namespaces get (and patch, for the standby mark) — by name when the namespaces are given; `get` on
//!   the `kube-system` namespace (the cluster's identity).
//! - **Destination** (DR): write the types in scope (create, update, patch, delete: deletions only happen
//!   for prune, deletion policies and recreate policies); pods read and evicted (`RecreateWithPodDrain`);
//!   the Leases that lock PVC copies;
//!   Events; namespaces created, patched and (`DeleteSynced`, `cleanupOnUnlabel`) deleted — by name when
//!   given; StorageClasses read (claims of a missing class are not created); CustomResourceDefinitions only
//!   with `syncCRDs`; `get` on `kube-system`.
//! - **Scope** `namespace`: Roles in each given namespace (least privilege), plus a ClusterRole for what
//!   is cluster-scoped. `cluster`: one ClusterRole (what the operator's shared watches across namespaces
//!   need).

use std::collections::{BTreeMap, BTreeSet};

use crate::{
    resource::ResourceType,
    selection::{self, UnknownResourceTypes},
};

/// Which side an identity serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The production cluster: read.
    Source,
    /// The DR cluster: write.
    Destination,
}

/// Where the type rules are granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Roles in each given namespace.
    Namespace,
    /// One ClusterRole.
    Cluster,
}

/// Who the roles are bound to (bindings are printed only when one is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A user (e.g. a client certificate's CN).
    User(String),
    /// A ServiceAccount `namespace/name`.
    ServiceAccount {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Request {
    /// The side.
    pub side: Side,
    /// The scope of the type rules.
    pub scope: Scope,
    /// The namespaces (on that side); required with [`Scope::Namespace`].
    pub namespaces: Vec<String>,
    /// The types in scope, as written in `resourceTypes` (empty: the operator's defaults).
    pub resource_types: Vec<String>,
    /// The defaults for an empty `resource_types`.
    pub defaults: Vec<String>,
    /// `syncCRDs`: the DR side may write CustomResourceDefinitions.
    pub sync_crds: bool,
    /// A `namespaceSelector`: the source side lists namespaces.
    pub namespace_selector: bool,
    /// A failback with `--sync-back`: the source side also writes the types (create, update, patch) —
    /// the copy of the DR side's changes back to production.
    pub sync_back: bool,
    /// PVC data: the DR side also runs the mover pods in its namespaces (pods create/delete, their logs,
    /// their key Secrets); the source side also deploys the agents into `agent_namespace` and runs mount
    /// pods (the roles of `deploy/remote-rbac/pvc-data.yaml`, bound to the subject when one is given).
    pub pvc_data: bool,
    /// The agents' namespace on the source side (`spec.pvcSync.namespace`, default `dr-syncer-system`).
    pub agent_namespace: String,
    /// The roles' name (`dr-syncer-source-reader`, `dr-syncer-dr-writer` by default).
    pub name: Option<String>,
    /// Bind the roles to this subject.
    pub subject: Option<Subject>,
}

/// Why no RBAC can be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RbacError {
    /// `*` cannot be enumerated offline.
    #[error(
        "resourceTypes \"*\" names every type a cluster serves, which cannot be listed offline: name the types \
         (e.g. configmaps,deployments,widgets.example.com)"
    )]
    Wildcard,
    /// A name that is neither a known built-in type nor `resource.group`.
    #[error("{0}; custom resources are named resource.group (e.g. widgets.example.com)")]
    Unknown(UnknownResourceTypes),
    /// Namespace scope without namespaces.
    #[error("--scope namespace needs at least one --namespace")]
    NoNamespaces,
}

impl RbacError {
    /// A stable name.
    pub fn kind(&self) -> &'static str {
        match self {
            RbacError::Wildcard => "Wildcard",
            RbacError::Unknown(_) => "UnknownResourceType",
            RbacError::NoNamespaces => "InvalidConfig",
        }
    }
}

/// The built-in namespaced types dr-syncer may replicate (for resolving names offline, with the rules
/// discovery would give: kinds, plurals, singulars and short names).
pub fn builtin_types() -> Vec<ResourceType> {
    let t = |g: &str, v: &str, k: &str, p: &str, short: &[&str]| {
        ResourceType::namespaced(g, v, k, p).with_short_names(short)
    };
    vec![
        t("", "v1", "ConfigMap", "configmaps", &["cm"]),
        t("", "v1", "Secret", "secrets", &[]),
        t("", "v1", "Service", "services", &["svc"]),
        t("", "v1", "ServiceAccount", "serviceaccounts", &["sa"]),
        t(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            &["pvc"],
        ),
        t("", "v1", "LimitRange", "limitranges", &["limits"]),
        t("", "v1", "ResourceQuota", "resourcequotas", &["quota"]),
        t(
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            &["rc"],
        ),
        t("", "v1", "PodTemplate", "podtemplates", &[]),
        t("apps", "v1", "Deployment", "deployments", &["deploy"]),
        t("apps", "v1", "StatefulSet", "statefulsets", &["sts"]),
        t("apps", "v1", "DaemonSet", "daemonsets", &["ds"]),
        t("batch", "v1", "Job", "jobs", &[]),
        t("batch", "v1", "CronJob", "cronjobs", &["cj"]),
        t("networking.k8s.io", "v1", "Ingress", "ingresses", &["ing"]),
        t(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            &["netpol"],
        ),
        t(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            &["pdb"],
        ),
        t("rbac.authorization.k8s.io", "v1", "Role", "roles", &[]),
        t(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            &[],
        ),
        t(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            &["hpa"],
        ),
    ]
}

/// The workload types a drill quiets and activates (patched on the source side).
const WORKLOADS: [(&str, &str); 5] = [
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "cronjobs"),
    ("keda.sh", "scaledobjects"),
];

/// `(group, resource)` of each type in scope.
///
/// # Errors
/// [`RbacError::Wildcard`], [`RbacError::Unknown`].
pub fn types_in_scope(req: &Request) -> Result<BTreeSet<(String, String)>, RbacError> {
    let requested: Vec<String> = if req.resource_types.iter().all(|s| s.trim().is_empty()) {
        req.defaults.clone()
    } else {
        req.resource_types.clone()
    };
    if requested.iter().any(|s| s.trim() == "*") {
        return Err(RbacError::Wildcard);
    }
    // Custom resources (`resource.group` that no built-in matches) are taken as written.
    let builtin = builtin_types();
    let (mut known, mut custom) = (Vec::new(), BTreeSet::new());
    for name in requested.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let resolves = selection::resolve_resource_types(&[name.to_owned()], &[], &[], &builtin).is_ok();
        match name.split_once('.') {
            Some((resource, group)) if !resolves && !resource.is_empty() && group.contains('.') => {
                custom.insert((group.to_ascii_lowercase(), resource.to_ascii_lowercase()));
            }
            _ => known.push(name.to_owned()),
        }
    }
    let resolved =
        selection::resolve_resource_types(&known, &[], &[], &builtin).map_err(RbacError::Unknown)?;
    let mut out: BTreeSet<(String, String)> = resolved.into_iter().map(|rt| (rt.group, rt.plural)).collect();
    out.extend(custom);
    Ok(out)
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    group: String,
    resources: Vec<String>,
    names: Vec<String>,
    verbs: Vec<String>,
}

fn rule(group: &str, resources: &[&str], names: &[String], verbs: &[&str]) -> Rule {
    Rule {
        group: group.to_owned(),
        resources: resources.iter().map(|s| (*s).to_owned()).collect(),
        names: names.to_vec(),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Rules on the types, grouped by API group and verbs (one rule per group and verb set).
fn type_rules(types: &BTreeMap<(String, String), Vec<&'static str>>) -> Vec<Rule> {
    let mut by: BTreeMap<(String, Vec<&'static str>), Vec<String>> = BTreeMap::new();
    for ((g, r), verbs) in types {
        by.entry((g.clone(), verbs.clone())).or_default().push(r.clone());
    }
    by.into_iter()
        .map(|((group, verbs), resources)| Rule {
            group,
            resources,
            names: Vec::new(),
            verbs: verbs.into_iter().map(str::to_owned).collect(),
        })
        .collect()
}

/// The namespaced rules (granted per namespace, or cluster-wide) and the cluster-scoped ones.
fn rules(req: &Request, types: &BTreeSet<(String, String)>) -> (Vec<Rule>, Vec<Rule>) {
    // The given namespaces, sorted and without repeats.
    let named: Vec<String> = req
        .namespaces
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let kube_system = vec!["kube-system".to_owned()];
    let mut namespaced;
    let mut cluster = vec![rule("", &["namespaces"], &kube_system, &["get"])];
    // The built-in workload kinds are read on both sides whatever the types in scope (the site state:
    // does a side run workloads?) and patched (a drill quiets and reactivates every workload of the pair,
    // whatever the types of the run).
    let builtin_workloads = WORKLOADS.iter().filter(|(g, _)| *g != "keda.sh");
    let read_patch = vec!["get", "list", "watch", "patch"];
    let mut verbs: BTreeMap<(String, String), Vec<&'static str>> = BTreeMap::new();
    match req.side {
        Side::Source => {
            for (g, r) in types {
                let v = if req.sync_back {
                    vec!["get", "list", "watch", "create", "update", "patch"]
                } else if WORKLOADS.contains(&(g.as_str(), r.as_str())) {
                    read_patch.clone()
                } else {
                    vec!["get", "list", "watch"]
                };
                verbs.insert((g.clone(), r.clone()), v);
            }
            for (g, r) in builtin_workloads {
                verbs
                    .entry(((*g).to_owned(), (*r).to_owned()))
                    .or_insert_with(|| read_patch.clone());
            }
            namespaced = type_rules(&verbs);
            namespaced.push(rule("", &["pods"], &[], &["get", "list", "watch"]));
            namespaced.push(rule("events.k8s.io", &["events"], &[], &["create", "patch"]));
            if req.namespaces.is_empty() {
                // (No namespace patch without names: a fence's standby mark needs --namespace.)
                cluster.push(rule("", &["namespaces"], &[], &["get", "list", "watch"]));
            } else {
                cluster.push(rule("", &["namespaces"], &named, &["get", "patch"]));
                if req.namespace_selector {
                    cluster.push(rule("", &["namespaces"], &[], &["list", "watch"]));
                }
            }
        }
        Side::Destination => {
            for (g, r) in builtin_workloads {
                verbs.insert(((*g).to_owned(), (*r).to_owned()), read_patch.clone());
            }
            for (g, r) in types {
                verbs.insert(
                    (g.clone(), r.clone()),
                    vec!["get", "list", "watch", "create", "update", "patch", "delete"],
                );
            }
            namespaced = type_rules(&verbs);
            if req.pvc_data {
                // The mover pods, their logs and their key Secrets.
                namespaced.push(rule(
                    "",
                    &["pods"],
                    &[],
                    &["get", "list", "watch", "create", "delete"],
                ));
                namespaced.push(rule("", &["pods/log"], &[], &["get"]));
                if !types.contains(&(String::new(), "secrets".to_owned())) {
                    namespaced.push(rule("", &["secrets"], &[], &["get", "create", "patch", "delete"]));
                }
            } else {
                namespaced.push(rule("", &["pods"], &[], &["get", "list", "watch"]));
            }
            namespaced.push(rule("", &["pods/eviction"], &[], &["create"]));
            // The PVC copy locks of a DR namespace (a drill and the operator never copy at once).
            namespaced.push(rule(
                "coordination.k8s.io",
                &["leases"],
                &[],
                &["get", "list", "watch", "create", "update", "delete"],
            ));
            namespaced.push(rule("events.k8s.io", &["events"], &[], &["create", "patch"]));
            // Creating a namespace cannot be limited to names; changing and deleting one can.
            cluster.push(rule("", &["namespaces"], &[], &["create"]));
            if req.namespaces.is_empty() {
                // (No namespace deletion without names: `DeleteSynced` and `cleanupOnUnlabel` of whole
                // namespaces need --namespace, or a role of your own.)
                cluster.push(rule("", &["namespaces"], &[], &["get", "list", "watch", "patch"]));
            } else {
                cluster.push(rule("", &["namespaces"], &named, &["get", "patch", "delete"]));
            }
            cluster.push(rule(
                "storage.k8s.io",
                &["storageclasses"],
                &[],
                &["get", "list", "watch"],
            ));
            if req.pvc_data {
                // The addresses of a mover's node: a transfer's key is accepted from them only.
                cluster.push(rule("", &["nodes"], &[], &["get"]));
            }
            if req.sync_crds {
                cluster.push(rule(
                    "apiextensions.k8s.io",
                    &["customresourcedefinitions"],
                    &[],
                    &["get", "list", "watch", "create", "update", "patch"],
                ));
            }
        }
    }
    (namespaced, cluster)
}

fn yaml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| {
            if s.is_empty() || s.contains('/') || s.contains('*') || s.contains(':') {
                format!("\"{s}\"")
            } else {
                s.clone()
            }
        })
        .collect();
    format!("[{}]", quoted.join(", "))
}

fn rules_yaml(rules: &[Rule]) -> String {
    let mut out = String::from("rules:\n");
    for r in rules {
        out.push_str(&format!(
            "- apiGroups: {}\n",
            yaml_list(std::slice::from_ref(&r.group))
        ));
        out.push_str(&format!("  resources: {}\n", yaml_list(&r.resources)));
        if !r.names.is_empty() {
            out.push_str(&format!("  resourceNames: {}\n", yaml_list(&r.names)));
        }
        out.push_str(&format!("  verbs: {}\n", yaml_list(&r.verbs)));
    }
    out
}

fn subject_yaml(s: &Subject) -> String {
    match s {
        Subject::User(u) => format!("- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: \"{u}\"}}\n"),
        Subject::ServiceAccount { namespace, name } => {
            format!("- {{kind: ServiceAccount, name: {name}, namespace: {namespace}}}\n")
        }
    }
}

/// The RBAC manifests for `req` (YAML documents).
///
/// # Errors
/// [`RbacError`] for types that cannot be named offline or a namespace scope without namespaces.
pub fn manifests(req: &Request) -> Result<String, RbacError> {
    if req.scope == Scope::Namespace && req.namespaces.is_empty() {
        return Err(RbacError::NoNamespaces);
    }
    let types = types_in_scope(req)?;
    let name = req.name.clone().unwrap_or_else(|| {
        match req.side {
            Side::Source => "dr-syncer-source-reader",
            Side::Destination => "dr-syncer-dr-writer",
        }
        .to_owned()
    });
    let (namespaced, mut cluster) = rules(req, &types);
    let labels = "  labels: {app.kubernetes.io/name: dr-syncer, app.kubernetes.io/component: remote-rbac}\n";
    let what = match req.side {
        Side::Source => "the SOURCE (production) cluster: read what is replicated",
        Side::Destination => "the DR cluster: write what is replicated",
    };
    let type_list: Vec<String> = types
        .iter()
        .map(|(g, r)| {
            if g.is_empty() {
                r.clone()
            } else {
                format!("{r}.{g}")
            }
        })
        .collect();
    let mut out = format!(
        "# Generated by `dr-syncer-cli rbac` for the identity in a RemoteCluster kubeconfig on {what}.\n\
         # Types: {}.\n",
        type_list.join(", ")
    );
    if req.scope == Scope::Cluster {
        out.push_str(&format!(
            "# Cluster scope: these types in every namespace. For least privilege, Roles in your namespaces only:\n\
             #   dr-syncer-cli rbac --{} --namespace NS [--namespace NS2 ...] --resource-types ...\n",
            match req.side {
                Side::Source => "source",
                Side::Destination => "destination",
            }
        ));
        cluster.splice(0..0, namespaced.iter().cloned());
    }
    out.push_str(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {name}\n{labels}{}",
        rules_yaml(&cluster)
    ));
    if let Some(s) = &req.subject {
        out.push_str(&format!(
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {name}\n{labels}roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {name}}}\nsubjects:\n{}",
            subject_yaml(s)
        ));
    }
    if req.scope == Scope::Namespace {
        for ns in &req.namespaces {
            out.push_str(&format!(
                "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {name}\n  namespace: {ns}\n{labels}{}",
                rules_yaml(&namespaced)
            ));
            if let Some(s) = &req.subject {
                out.push_str(&format!(
                    "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {name}\n  namespace: {ns}\n{labels}roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {name}}}\nsubjects:\n{}",
                    subject_yaml(s)
                ));
            }
        }
    }
    if req.side == Side::Source && req.pvc_data {
        out.push_str(&pvc_reader_manifests(req, labels));
    }
    Ok(out)
}

/// The source side's PVC data roles: deploy the agents into their namespace (where a Role binding keeps
/// their Secrets and DaemonSet) and run read-only mount pods; with a subject, bound to it, and the agents'
/// namespace created (the RoleBinding needs it).
fn pvc_reader_manifests(req: &Request, labels: &str) -> String {
    let agents = &req.agent_namespace;
    let mounts = [
        rule("", &["namespaces"], &[], &["create"]),
        rule(
            "",
            &["namespaces"],
            std::slice::from_ref(agents),
            &["get", "patch"],
        ),
        rule("", &["pods"], &[], &["create", "delete"]),
        rule("", &["pods/log"], &[], &["get"]),
        // The nodes' addresses (exposure modes) and kubelet root; hostPath PVs' directories and nodes.
        rule("", &["nodes"], &[], &["get", "list"]),
        rule("", &["persistentvolumes"], &[], &["get"]),
    ];
    let agent_rules = [
        rule(
            "",
            &["secrets", "configmaps"],
            &[],
            &["get", "create", "patch", "update", "delete"],
        ),
        rule(
            "apps",
            &["daemonsets"],
            &[],
            &["get", "create", "patch", "update", "delete"],
        ),
        // Which agent pod runs on a volume's node, and whether it is ready.
        rule("", &["pods"], &[], &["get", "list", "watch"]),
        // Exposure NodePort (the agents' Service) and LoadBalancer (a Service per transfer).
        rule(
            "",
            &["services"],
            &[],
            &["get", "create", "patch", "update", "delete"],
        ),
        rule(
            "discovery.k8s.io",
            &["endpointslices"],
            &[],
            &["get", "create", "patch", "update", "delete"],
        ),
    ];
    let mut out = format!(
        "---\n# PVC data: deploy the agents into {agents} and run read-only mount pods for PVCs no pod mounts.\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: dr-syncer-pvc-mounts\n{labels}{}\
         ---\n# The agents' Secrets, ConfigMaps and DaemonSet: bound in {agents} only.\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: dr-syncer-pvc-agents\n{labels}{}",
        rules_yaml(&mounts),
        rules_yaml(&agent_rules)
    );
    if let Some(s) = &req.subject {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {agents}\n{labels}\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: dr-syncer-pvc-mounts\n{labels}\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: dr-syncer-pvc-mounts}}\nsubjects:\n{subject}\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: dr-syncer-pvc-agents\n  namespace: {agents}\n{labels}\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: dr-syncer-pvc-agents}}\nsubjects:\n{subject}",
            subject = subject_yaml(s)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(side: Side, scope: Scope, ns: &[&str], types: &[&str]) -> Request {
        Request {
            side,
            scope,
            namespaces: ns.iter().map(|s| (*s).to_owned()).collect(),
            resource_types: types.iter().map(|s| (*s).to_owned()).collect(),
            defaults: selection::OPERATOR_DEFAULT_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            sync_crds: false,
            namespace_selector: false,
            sync_back: false,
            pvc_data: false,
            agent_namespace: crate::pvc::DEFAULT_AGENT_NAMESPACE.to_owned(),
            name: None,
            subject: None,
        }
    }

    #[test]
    fn names_resolve_offline_as_discovery_would() {
        let r = req(
            Side::Source,
            Scope::Cluster,
            &[],
            &["cm", "Deployment", "ing", "widgets.example.com"],
        );
        let types = types_in_scope(&r).unwrap();
        assert_eq!(
            types,
            [
                ("", "configmaps"),
                ("apps", "deployments"),
                ("example.com", "widgets"),
                ("networking.k8s.io", "ingresses")
            ]
            .iter()
            .map(|(g, r)| ((*g).to_owned(), (*r).to_owned()))
            .collect()
        );
        assert_eq!(
            types_in_scope(&req(Side::Source, Scope::Cluster, &[], &["*"])),
            Err(RbacError::Wildcard)
        );
        assert!(matches!(
            types_in_scope(&req(Side::Source, Scope::Cluster, &[], &["gizmos"])),
            Err(RbacError::Unknown(_))
        ));
    }

    #[test]
    fn no_wildcards_and_least_privilege() {
        for side in [Side::Source, Side::Destination] {
            for scope in [Scope::Cluster, Scope::Namespace] {
                let y = manifests(&req(side, scope, &["shop"], &[])).unwrap();
                assert!(!y.contains('*'), "{y}");
                assert!(
                    !y.contains("mutatingwebhook") && !y.contains("customresourcedefinitions"),
                    "{y}"
                );
                assert!(y.contains("resourceNames: [kube-system]"), "{y}");
            }
        }
        let source = manifests(&req(Side::Source, Scope::Namespace, &["shop"], &[])).unwrap();
        assert!(
            !source.contains("create, update"),
            "the source side writes no replicated type: {source}"
        );
        assert!(source.contains("resources: [configmaps, persistentvolumeclaims, secrets, services]\n  verbs: [get, list, watch]\n"), "{source}");
        assert!(source.contains("kind: Role\nmetadata:\n  name: dr-syncer-source-reader\n  namespace: shop"));
        let mut crds = req(Side::Destination, Scope::Cluster, &[], &[]);
        crds.sync_crds = true;
        assert!(manifests(&crds).unwrap().contains("customresourcedefinitions"));
        assert_eq!(
            manifests(&req(Side::Source, Scope::Namespace, &[], &[])),
            Err(RbacError::NoNamespaces)
        );
    }
}
