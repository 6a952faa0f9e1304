//! The `dr-syncer.io/v1alpha1` custom resources: [`RemoteCluster`], [`ClusterMapping`] and
//! [`NamespaceMapping`].
//!
//! The schema is the Go DR-Syncer's (so its users' YAML applies unchanged) plus the optional fields its
//! documentation promised (label-based namespace selection, exclusions, Service and Ingress options,
//! declarative transform rules, prune and deletion policy). Short names deliberately avoid the Go project's
//! clashing `rc` and `cm`. [`crds`] returns the CustomResourceDefinitions generated from these types; the
//! committed YAML under `deploy/crds/` is checked against it.

mod cluster_mapping;
mod common;
mod namespace_mapping;
mod remote_cluster;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use self::{cluster_mapping::*, common::*, namespace_mapping::*, remote_cluster::*};

/// The API group of dr-syncer's custom resources.
pub const GROUP: &str = "dr-syncer.io";
/// The API version of dr-syncer's custom resources.
pub const VERSION: &str = "v1alpha1";

/// The CustomResourceDefinitions of all dr-syncer resources, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        RemoteCluster::crd(),
        ClusterMapping::crd(),
        NamespaceMapping::crd(),
    ]
}

/// The file name under `deploy/crds/` of each CRD, in the order of [`crds`].
pub const CRD_FILES: [&str; 3] = [
    "remoteclusters.dr-syncer.io.yaml",
    "clustermappings.dr-syncer.io.yaml",
    "namespacemappings.dr-syncer.io.yaml",
];

/// One CRD as YAML, as committed under `deploy/crds/` and printed by `dr-syncer-operator crd`.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> crate::Result<String> {
    let yaml = serde_saphyr::to_string(crd).map_err(|e| {
        crate::Error::InvalidConfig(format!("cannot render CRD {:?} as YAML: {e}", crd.metadata.name))
    })?;
    Ok(format!(
        "# Generated from dr-syncer-core's API types by `scripts/gen-crds.sh`; do not edit.\n{yaml}"
    ))
}

/// All CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> crate::Result<String> {
    let docs = crds().iter().map(crd_yaml).collect::<crate::Result<Vec<_>>>()?;
    Ok(docs.join("---\n"))
}
