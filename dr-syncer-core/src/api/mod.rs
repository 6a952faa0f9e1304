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
///
/// Integer formats the API server does not know (`uint8` … `uint64`, which schemars writes for unsigned
/// Rust integers and which make every `kubectl apply` of the CRDs print "unrecognized format") are
/// written as `int32`/`int64`; the fields keep their `minimum: 0`.
pub fn crds() -> Vec<CustomResourceDefinition> {
    [
        RemoteCluster::crd(),
        ClusterMapping::crd(),
        NamespaceMapping::crd(),
    ]
    .into_iter()
    .map(known_formats)
    .collect()
}

/// The integer and number formats kube-apiserver recognises in a CRD schema (others draw a warning).
pub const KNOWN_NUMBER_FORMATS: [&str; 4] = ["int32", "int64", "float", "double"];

fn known_formats(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    fn walk(s: &mut JSONSchemaProps) {
        if let Some(format) = s.format.clone() {
            let known = match format.as_str() {
                "uint8" | "uint16" | "int8" | "int16" => Some("int32"),
                "uint32" | "uint64" | "uint" | "int" => Some("int64"),
                _ => None,
            };
            if let Some(known) = known {
                s.format = Some(known.to_owned());
                if format.starts_with('u') && s.minimum.is_none() {
                    s.minimum = Some(0.0);
                }
            }
        }
        for child in s.properties.iter_mut().flat_map(|p| p.values_mut()) {
            walk(child);
        }
        match &mut s.items {
            Some(JSONSchemaPropsOrArray::Schema(item)) => walk(item),
            Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(walk),
            None => {}
        }
        if let Some(JSONSchemaPropsOrBool::Schema(extra)) = &mut s.additional_properties {
            walk(extra);
        }
        for list in [&mut s.all_of, &mut s.any_of, &mut s.one_of]
            .into_iter()
            .flatten()
        {
            list.iter_mut().for_each(walk);
        }
    }
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|v| v.open_api_v3_schema.as_mut())
        {
            walk(schema);
        }
    }
    crd
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
