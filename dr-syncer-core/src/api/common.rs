//! Types shared by the custom resources.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The Go-style duration pattern the schema enforces on many fields (`1h`, `5m`, `30s`, `1h30m`).
pub const DURATION_PATTERN: &str = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$";

/// A reference to a Secret by name and namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret.
    pub name: String,
    /// Namespace of the Secret.
    pub namespace: String,
}

/// Standard `metav1.Condition` list with the list-map semantics Kubernetes uses (keyed by `type`).
pub type Conditions = Vec<Condition>;

/// Schema for a `conditions` list: a list-map keyed by `type`, as for Kubernetes' own types.
pub(crate) fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema
}

/// Schema for a field that holds arbitrary JSON (kept as is by the API server).
pub(crate) fn any_json_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// Schema for a string-to-string map.
pub(crate) fn string_map_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "additionalProperties": { "type": "string" } })
}

/// The data verification a PVC sync performs after copying.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VerificationMode {
    /// No verification.
    #[default]
    None,
    /// Compare checksums of a sample of files.
    Sample,
    /// Compare checksums of every file.
    Full,
}

pub(crate) fn default_true() -> bool {
    true
}

pub(crate) fn default_sample_percent() -> i32 {
    10
}
