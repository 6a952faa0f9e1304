//! Selection: which resource types and which objects of a namespace are replicated.
//!
//! - [`resolve_resource_types`] turns the names a user wrote (`resourceTypes`, `namespaceScopedResources`)
//!   into discovered [`ResourceType`]s: by kind, plural, singular, short name or `resource.group`,
//!   case-insensitively; an empty list means the Go operator's six defaults, `*` every namespaced, listable
//!   type except runtime-owned ones. Unknown names are all reported at once.
//! - [`ObjectFilter`] decides per object: `dr-syncer.io/ignore: "true"`, `excludeLabels`, `excludeResources`,
//!   `labelSelector`, and what is never copied (`kube-root-ca.crt`, service-account token Secrets, objects
//!   owned by a controller — their owner is copied instead).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::DynamicObject;

pub use crate::matching::{ExcludeRule, glob_match, selector_matches, validate_label_selector};
use crate::{annotations, api::ExcludeLabel, config::SyncConfig, resource::ResourceType};

/// The Go operator's default types, used when `resourceTypes` is empty.
pub const OPERATOR_DEFAULT_TYPES: [&str; 6] = [
    "configmaps",
    "secrets",
    "deployments",
    "services",
    "ingresses",
    "persistentvolumeclaims",
];

/// The CLI's default types: the Go CLI's 13 plus `cronjobs` (copied suspended on stage, resumed by a
/// cutover: a DR site without its scheduled work is incomplete).
pub const CLI_DEFAULT_TYPES: [&str; 14] = [
    "configmaps",
    "secrets",
    "deployments",
    "statefulsets",
    "daemonsets",
    "services",
    "ingresses",
    "serviceaccounts",
    "roles",
    "rolebindings",
    "persistentvolumeclaims",
    "horizontalpodautoscalers",
    "networkpolicies",
    "cronjobs",
];

/// Types `*` never includes: their objects are created by the runtime, not by users.
pub const RUNTIME_OWNED: [&str; 9] = [
    "pods",
    "events",
    "events.events.k8s.io",
    "endpoints",
    "endpointslices.discovery.k8s.io",
    "controllerrevisions.apps",
    "replicasets.apps",
    "leases.coordination.k8s.io",
    "localsubjectaccessreviews.authorization.k8s.io",
];

/// A name in `resourceTypes` that matches no discovered type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown resource type(s): {}", .0.join(", "))]
pub struct UnknownResourceTypes(pub Vec<String>);

fn matches_name(rt: &ResourceType, wanted: &str) -> bool {
    let w = wanted.trim().to_ascii_lowercase();
    if let Some((res, group)) = w.split_once('.') {
        // `resource.group` (also `kind.group`): the group must match exactly.
        return rt.group.eq_ignore_ascii_case(group)
            && (rt.plural.eq_ignore_ascii_case(res)
                || rt.singular.eq_ignore_ascii_case(res)
                || rt.kind.eq_ignore_ascii_case(res));
    }
    rt.plural.eq_ignore_ascii_case(&w)
        || rt.singular.eq_ignore_ascii_case(&w)
        || rt.kind.eq_ignore_ascii_case(&w)
        || rt.short_names.iter().any(|s| s.eq_ignore_ascii_case(&w))
}

/// Whether a type can be replicated at all: namespaced, listable, watchable and creatable.
pub fn is_replicable(rt: &ResourceType) -> bool {
    rt.namespaced && rt.supports("list") && rt.supports("create") && !rt.plural.contains('/')
}

/// Resolve requested type names against discovered types.
///
/// `requested` empty → `defaults`; `*` (anywhere in the list) → every replicable type except
/// [`RUNTIME_OWNED`]. Names may be kinds, plurals, singulars, short names or `resource.group`,
/// case-insensitively. When a short or plain name matches types in several groups, the core group wins,
/// then the type whose group sorts first (as kubectl's preference does for built-ins).
pub fn resolve_resource_types(
    requested: &[String],
    extra: &[String],
    defaults: &[&str],
    discovered: &[ResourceType],
) -> Result<Vec<ResourceType>, UnknownResourceTypes> {
    let candidates: Vec<&ResourceType> = discovered.iter().filter(|rt| is_replicable(rt)).collect();
    let mut out = BTreeSet::new();
    let mut unknown = Vec::new();
    let names: Vec<String> = if requested.iter().all(|s| s.trim().is_empty()) {
        defaults.iter().map(|s| (*s).to_owned()).collect()
    } else {
        requested.to_vec()
    };
    for name in names
        .iter()
        .chain(extra)
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        if name == "*" {
            for rt in &candidates {
                if !RUNTIME_OWNED.contains(&rt.resource_group().as_str()) {
                    out.insert((*rt).clone());
                }
            }
            continue;
        }
        let mut matching: Vec<&&ResourceType> =
            candidates.iter().filter(|rt| matches_name(rt, name)).collect();
        matching.sort_by_key(|rt| (!rt.group.is_empty(), rt.group.clone()));
        match matching.first() {
            Some(rt) => {
                out.insert((**rt).clone());
            }
            None => unknown.push(name.to_owned()),
        }
    }
    if unknown.is_empty() {
        Ok(out.into_iter().collect())
    } else {
        Err(UnknownResourceTypes(unknown))
    }
}

/// Why an object is not replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Labelled `dr-syncer.io/ignore: "true"`.
    Ignored,
    /// Matches an `excludeLabels` entry.
    ExcludedLabel(String),
    /// Matches an `excludeResources` entry.
    ExcludedResource,
    /// Does not match `labelSelector`.
    NotSelected,
    /// Created by the cluster itself (root CA bundle, token Secret).
    SystemManaged,
    /// Owned by a controller, which is replicated instead.
    ControllerOwned(String),
}

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skip::Ignored => write!(f, "labelled {}=true", annotations::IGNORE),
            Skip::ExcludedLabel(l) => write!(f, "excluded by label {l}"),
            Skip::ExcludedResource => f.write_str("excluded by excludeResources"),
            Skip::NotSelected => f.write_str("does not match labelSelector"),
            Skip::SystemManaged => f.write_str("managed by the cluster itself"),
            Skip::ControllerOwned(owner) => write!(f, "owned by controller {owner}"),
        }
    }
}

/// Per-object selection rules of one mapping.
#[derive(Debug, Clone, Default)]
pub struct ObjectFilter {
    exclude_labels: Vec<ExcludeLabel>,
    exclude_resources: Vec<ExcludeRule>,
    label_selector: Option<LabelSelector>,
}

impl ObjectFilter {
    /// The filter of a validated configuration.
    pub fn new(config: &SyncConfig) -> Self {
        ObjectFilter {
            exclude_labels: config.exclude_labels.clone(),
            exclude_resources: config.exclude_resources.clone(),
            label_selector: config.label_selector.clone(),
        }
    }

    /// `Ok(())` when `obj` of type `rt` is replicated, otherwise why not.
    pub fn check(&self, rt: &ResourceType, obj: &DynamicObject) -> Result<(), Skip> {
        let empty = Default::default();
        let labels = obj.metadata.labels.as_ref().unwrap_or(&empty);
        let name = obj.metadata.name.as_deref().unwrap_or_default();
        if labels.get(annotations::IGNORE).is_some_and(|v| v == "true") {
            return Err(Skip::Ignored);
        }
        if rt.is("", "ConfigMap") && name == "kube-root-ca.crt" {
            return Err(Skip::SystemManaged);
        }
        if rt.is("", "Secret")
            && obj.data.get("type").and_then(|t| t.as_str()) == Some("kubernetes.io/service-account-token")
        {
            return Err(Skip::SystemManaged);
        }
        if let Some(owner) = obj
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
        {
            return Err(Skip::ControllerOwned(format!("{}/{}", owner.kind, owner.name)));
        }
        for ex in &self.exclude_labels {
            if let Some(v) = labels.get(&ex.key)
                && ex.value.as_ref().is_none_or(|want| want == v)
            {
                return Err(Skip::ExcludedLabel(format!("{}={v}", ex.key)));
            }
        }
        if self.exclude_resources.iter().any(|r| r.matches(&rt.kind, name)) {
            return Err(Skip::ExcludedResource);
        }
        if let Some(sel) = &self.label_selector
            && !selector_matches(sel, labels)
        {
            return Err(Skip::NotSelected);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
