//! `ClusterMapping`: a source and a target RemoteCluster paired for replication.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, conditions_schema, default_true};

/// Desired state of a ClusterMapping: the two RemoteClusters and how their connectivity is verified.
// kube's `printcolumn(...)` arguments repeat `type_ = ...`; clippy mistakes that for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "dr-syncer.io",
    version = "v1alpha1",
    kind = "ClusterMapping",
    namespaced,
    status = "ClusterMappingStatus",
    shortname = "clmap",
    category = "dr-syncer",
    doc = "A source and a target RemoteCluster (in the same namespace) paired for replication.",
    printcolumn(name = "Source Cluster", type_ = "string", json_path = ".spec.sourceCluster"),
    printcolumn(name = "Target Cluster", type_ = "string", json_path = ".spec.targetCluster"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Connected Agents",
        type_ = "integer",
        json_path = ".status.connectionStatus.connectedAgents"
    ),
    printcolumn(name = "Last Verified", type_ = "date", json_path = ".status.lastVerified"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMappingSpec {
    /// Name of the source RemoteCluster.
    pub source_cluster: String,
    /// Name of the target (DR) RemoteCluster.
    pub target_cluster: String,
    /// Stop verifying and replicating while true.
    #[serde(default)]
    pub paused: bool,
    /// Verify that the target's movers can reach the source's agents.
    #[serde(default = "default_true")]
    pub verify_connectivity: bool,
    /// Timeout of the connectivity check.
    #[serde(default = "default_connectivity_timeout")]
    pub connectivity_timeout_seconds: i32,
    /// A user-managed client key pair (e.g. from GitOps) instead of a generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_secret_ref: Option<SshKeySecretRef>,
}

fn default_connectivity_timeout() -> i32 {
    60
}

/// A Secret holding an SSH key pair.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshKeySecretRef {
    /// Name of the Secret.
    pub name: String,
    /// Namespace of the Secret (the ClusterMapping's when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Key of the public key.
    #[serde(default = "default_public_key_key")]
    pub public_key_key: String,
    /// Key of the private key.
    #[serde(default = "default_private_key_key")]
    pub private_key_key: String,
}

fn default_public_key_key() -> String {
    "id_rsa.pub".into()
}

fn default_private_key_key() -> String {
    "id_rsa".into()
}

/// Lifecycle phase of a ClusterMapping.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ClusterMappingPhase {
    /// Not yet checked.
    #[default]
    Pending,
    /// Being checked.
    Connecting,
    /// Both clusters (and, with PVC sync, the agents) are reachable.
    Connected,
    /// A check failed.
    Failed,
}

/// Observed state of a ClusterMapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMappingStatus {
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ClusterMappingPhase>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Last successful verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified: Option<Time>,
    /// Last verification attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<Time>,
    /// Failed verifications in a row (reset on success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "plain_integer_schema")]
    pub consecutive_failures: Option<i64>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Conditions>,
    /// Agent connectivity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_status: Option<ConnectionStatus>,
}

/// `type: integer` with a default of 0 and no format, as in the Go schema.
fn plain_integer_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "integer", "default": 0 })
}

/// Connectivity between the target's movers and the source's agents.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    /// Agents in the source cluster.
    pub total_source_agents: i32,
    /// Agents in the target cluster.
    pub total_target_agents: i32,
    /// Reachable agents.
    pub connected_agents: i32,
    /// Per node pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_details: Option<Vec<ConnectionDetail>>,
}

/// Connectivity from one target node to one source node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionDetail {
    /// Source node.
    pub source_node: String,
    /// Target node.
    pub target_node: String,
    /// Whether it connected.
    pub connected: bool,
    /// Error, if not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The address the agent answered at (dr-syncer extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The exposure mode of that address (`pvcSync.exposure`; dr-syncer extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure_mode: Option<String>,
}
