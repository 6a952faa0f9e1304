//! What dr-syncer knows about an API resource type (from discovery), independent of any client.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One resource type of an API server, as discovery describes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceType {
    /// API group (`""` for the core group).
    pub group: String,
    /// Preferred version.
    pub version: String,
    /// Kind (`Deployment`).
    pub kind: String,
    /// Plural resource name (`deployments`).
    pub plural: String,
    /// Singular resource name (`deployment`); may be empty on old servers.
    #[serde(default)]
    pub singular: String,
    /// Short names (`deploy`).
    #[serde(default)]
    pub short_names: Vec<String>,
    /// Namespaced (true) or cluster-scoped.
    pub namespaced: bool,
    /// Verbs the server supports on it.
    #[serde(default)]
    pub verbs: Vec<String>,
}

impl ResourceType {
    /// A namespaced type with the usual verbs (handy for tests and static tables).
    pub fn namespaced(group: &str, version: &str, kind: &str, plural: &str) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_ascii_lowercase(),
            short_names: Vec::new(),
            namespaced: true,
            verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
                .map(String::from)
                .to_vec(),
        }
    }

    /// The same type, cluster-scoped.
    pub fn cluster_scoped(mut self) -> Self {
        self.namespaced = false;
        self
    }

    /// With short names.
    pub fn with_short_names(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// `apiVersion` as written in manifests (`apps/v1`, `v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `resource.group` (`deployments.apps`; core types as `configmaps`).
    pub fn resource_group(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind.group` (`Deployment.apps`; core types as `ConfigMap`), as Kubernetes prints group kinds.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// The type as kube's dynamic API needs it.
    pub fn api_resource(&self) -> kube::core::ApiResource {
        kube::core::ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// The key of `obj` as an object of this type.
    pub fn key_of(&self, obj: &kube::core::DynamicObject) -> ObjectKey {
        ObjectKey {
            group_kind: self.group_kind(),
            namespace: if self.namespaced {
                obj.metadata.namespace.clone()
            } else {
                None
            },
            name: obj.metadata.name.clone().unwrap_or_default(),
        }
    }

    /// Whether the server supports `verb` on it.
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// Whether this is the core/v1 or named group type `group`/`kind`.
    pub fn is(&self, group: &str, kind: &str) -> bool {
        self.group == group && self.kind == kind
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.resource_group())
    }
}

/// The identity of one object: its type and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectKey {
    /// `Kind.group`.
    pub group_kind: String,
    /// Namespace (`None` for cluster-scoped objects).
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.group_kind, ns, self.name),
            None => write!(f, "{}/{}", self.group_kind, self.name),
        }
    }
}
