//! `RemoteCluster`: how to reach a cluster, and the PVC agent deployed into it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Conditions, SecretReference, VerificationMode, conditions_schema, default_sample_percent, default_true,
    string_map_schema,
};

/// Desired state of a RemoteCluster: how to reach the cluster, and its PVC agent.
// kube's `printcolumn(...)` arguments repeat `type_ = ...`; clippy mistakes that for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "dr-syncer.io",
    version = "v1alpha1",
    kind = "RemoteCluster",
    namespaced,
    status = "RemoteClusterStatus",
    shortname = "rcluster",
    category = "dr-syncer",
    doc = "A cluster dr-syncer reads from or writes to, reached with a kubeconfig stored in a Secret.",
    printcolumn(name = "Health", type_ = "string", json_path = ".status.health"),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.lastSyncTime"),
    printcolumn(name = "PVC Sync", type_ = "string", json_path = ".status.pvcSync.phase"),
    printcolumn(
        name = "Ready Agents",
        type_ = "integer",
        json_path = ".status.pvcSync.agentStatus.readyNodes"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RemoteClusterSpec {
    /// The Secret holding the kubeconfig of this cluster.
    pub kubeconfig_secret_ref: KubeconfigSecretRef,
    /// Default cron schedule for NamespaceMappings that use this cluster and set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_schedule: Option<String>,
    /// Default resource types for NamespaceMappings that use this cluster and list none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_resource_types: Option<Vec<String>>,
    /// PVC data replication: the agent deployed into this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_sync: Option<PvcSyncSpec>,
}

impl RemoteClusterSpec {
    /// `spec.pvcSync` when it is enabled (the agents run in this cluster).
    pub fn enabled_pvc_sync(&self) -> Option<&PvcSyncSpec> {
        self.pvc_sync.as_ref().filter(|p| p.enabled.unwrap_or(false))
    }
}

/// Where a cluster's kubeconfig is stored.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubeconfigSecretRef {
    /// Name of the Secret.
    pub name: String,
    /// Namespace of the Secret.
    pub namespace: String,
    /// Key in the Secret's data; `kubeconfig` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl KubeconfigSecretRef {
    /// The data key to read, with the default applied.
    pub fn key_or_default(&self) -> &str {
        self.key
            .as_deref()
            .filter(|k| !k.is_empty())
            .unwrap_or("kubeconfig")
    }
}

/// PVC data replication settings of a cluster: the agent DaemonSet and its SSH service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSyncSpec {
    /// Deploy the agent into this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Agent image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSpec>,
    /// SSH service of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSpec>,
    /// Concurrent transfers per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i32>,
    /// Concurrent transfers across the cluster.
    #[serde(default = "default_global_concurrency")]
    #[schemars(range(min = 1, max = 256))]
    pub global_concurrency_limit: i32,
    /// Retries of failed transfers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_config: Option<AgentRetryConfig>,
    /// How the agent DaemonSet is deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<AgentDeploymentSpec>,
    /// Health checking of agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckSpec>,
    /// Verification used when a NamespaceMapping sets none.
    #[serde(default)]
    pub default_verification_mode: VerificationMode,
    /// Percentage of files checked by `sample` verification when a NamespaceMapping sets none.
    #[serde(default = "default_sample_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub default_sample_percent: i32,
    /// Accepted for compatibility with the Go schema; dr-syncer's data path does not use an rsync DaemonSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync_daemon_set: Option<RsyncDaemonSetSpec>,
    /// The addresses this cluster's agents accept a transfer's key from (IP addresses or CIDR ranges,
    /// `*` for any), when movers reach them through NAT; by default a transfer's key is accepted only
    /// from the mover pod's own addresses and its node's (dr-syncer extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mover_source_addresses: Option<Vec<String>>,
    /// How movers in other clusters reach this cluster's agents (dr-syncer extension; unset: the node's
    /// InternalIP, then its ExternalIP). See the "networks" section of `docs/pvc-replication.md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<AgentExposureSpec>,
    /// The kubelet's root directory on this cluster's nodes (dr-syncer extension; unset: discovered from
    /// the nodes — MicroK8s and k0s are recognised — else `/var/lib/kubelet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_root: Option<String>,
    /// Node directories under which `hostPath` PersistentVolumes may be served (dr-syncer extension;
    /// unset: the local-path provisioner's and kind's and k3s' standard directories). Never `/`, `/etc`,
    /// system directories or the kubelet root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path_prefixes: Option<Vec<String>>,
}

/// How the agents' SSH service is reached from other clusters (`pvcSync.exposure`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentExposureSpec {
    /// `NodeInternalIP`, `NodeExternalIP`, `NodePort` (one Service for the agents,
    /// `externalTrafficPolicy: Local`), `LoadBalancer` (a Service per transfer) or `Address` (the
    /// `address` below). Unset: the node's InternalIP, then its ExternalIP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ExposureMode>,
    /// `host` or `host:port` (`[v6]:port`) of a proxy or tunnel to the agent of each node (mode
    /// `Address`); `{node}` is replaced by the node's name. Default port: `ssh.port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The node port of the agents' Service (mode `NodePort`; unset: allocated by the cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub node_port: Option<i32>,
    /// Annotations of the Services made for the agents (modes `NodePort` and `LoadBalancer`), e.g. a
    /// cloud's internal load-balancer annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_map_schema")]
    pub service_annotations: Option<BTreeMap<String, String>>,
}

/// How movers reach the agents.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema)]
pub enum ExposureMode {
    /// The agent's node's InternalIP (the pod's `hostIP`): clusters in one network or peered networks.
    #[serde(rename = "NodeInternalIP")]
    NodeInternalIp,
    /// The node's ExternalIP: nodes with public (or otherwise routed) addresses.
    #[serde(rename = "NodeExternalIP")]
    NodeExternalIp,
    /// A NodePort Service of the agents (`externalTrafficPolicy: Local`), dialled at the node's
    /// InternalIP, then its ExternalIP.
    NodePort,
    /// A LoadBalancer Service per transfer, whose only endpoint is the agent on the volume's node.
    LoadBalancer,
    /// `exposure.address`: a proxy or tunnel the platform provides.
    Address,
}

impl ExposureMode {
    /// The name used in the CRD.
    pub fn as_str(self) -> &'static str {
        match self {
            ExposureMode::NodeInternalIp => "NodeInternalIP",
            ExposureMode::NodeExternalIp => "NodeExternalIP",
            ExposureMode::NodePort => "NodePort",
            ExposureMode::LoadBalancer => "LoadBalancer",
            ExposureMode::Address => "Address",
        }
    }

    /// Parse the CRD's name (case-insensitive).
    pub fn parse(text: &str) -> Option<ExposureMode> {
        [
            ExposureMode::NodeInternalIp,
            ExposureMode::NodeExternalIp,
            ExposureMode::NodePort,
            ExposureMode::LoadBalancer,
            ExposureMode::Address,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(text))
    }
}

impl std::fmt::Display for ExposureMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn default_global_concurrency() -> i32 {
    4
}

/// A container image.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    /// Image repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Image tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Pull policy (Always, IfNotPresent, Never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
}

/// The agent's SSH service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshSpec {
    /// Port sshd listens on (host network).
    #[serde(default = "default_ssh_port")]
    pub port: i32,
    /// A Secret with user-managed keys instead of generated ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_ref: Option<SecretReference>,
}

impl Default for SshSpec {
    fn default() -> Self {
        SshSpec {
            port: default_ssh_port(),
            key_secret_ref: None,
        }
    }
}

fn default_ssh_port() -> i32 {
    2222
}

/// Retries of failed agent transfers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentRetryConfig {
    /// Maximum number of retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<i32>,
    /// First delay (e.g. `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<String>,
    /// Longest delay (e.g. `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<String>,
}

/// How the agent DaemonSet is deployed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentDeploymentSpec {
    /// Run on the host network (the DR side connects to node IPs).
    #[serde(default = "default_true")]
    pub host_network: bool,
    /// Run privileged.
    #[serde(default = "default_true")]
    pub privileged: bool,
    /// Node selector of the agent pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_map_schema")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Extra labels of the agent pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_map_schema")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Extra annotations of the agent pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_map_schema")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Priority class of the agent pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Tolerations (keys `key`, `operator`, `value`, `effect`, `tolerationSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<BTreeMap<String, String>>>,
    /// Resource limits and requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<AgentResources>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_env: Option<Vec<EnvVarSpec>>,
}

impl Default for AgentDeploymentSpec {
    fn default() -> Self {
        AgentDeploymentSpec {
            host_network: true,
            privileged: true,
            node_selector: None,
            labels: None,
            annotations: None,
            priority_class_name: None,
            tolerations: None,
            resources: None,
            extra_env: None,
        }
    }
}

/// Resource limits and requests as quantities (`cpu: 500m`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentResources {
    /// Limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_map_schema")]
    pub limits: Option<BTreeMap<String, String>>,
    /// Requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "string_map_schema")]
    pub requests: Option<BTreeMap<String, String>>,
}

/// An environment variable of the agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSpec {
    /// Variable name.
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Value from a field of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// Source of an environment variable's value.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVarSource {
    /// A field of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
}

/// A field of the pod (e.g. `spec.nodeName`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    /// Path of the field.
    pub field_path: String,
}

/// Health checking of agents.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckSpec {
    /// Interval between checks (e.g. `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Timeout of one SSH check (e.g. `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_timeout: Option<String>,
    /// Delay between retries of a failed check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<String>,
    /// Retries before an agent is reported unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_attempts: Option<i32>,
}

/// The Go project's unused rsync DaemonSet pool; accepted for compatibility and ignored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RsyncDaemonSetSpec {
    /// Whether the pool is enabled.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Image of the pool.
    #[serde(default = "default_rsync_image")]
    pub image: String,
    /// Namespace of the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Secret with the pool's SSH keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_secret_name: Option<String>,
}

fn default_rsync_image() -> String {
    "supporttools/dr-syncer-rsync:latest".into()
}

/// Observed state of a RemoteCluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteClusterStatus {
    /// `Healthy`, `Degraded` or `Unhealthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// When the cluster was last checked successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// KubeconfigAvailable, KubeconfigValid, ClusterAvailable, ScheduleValid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Conditions>,
    /// State of the PVC agent in this cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_sync: Option<PvcSyncStatus>,
    /// The cluster this RemoteCluster is pinned to (a dr-syncer addition): recorded on first contact;
    /// another cluster behind the kubeconfig (condition `ClusterIdentityChanged`) stops every mapping
    /// using this RemoteCluster until it is accepted (annotation `dr-syncer.io/accept-cluster-identity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_identity: Option<ClusterIdentity>,
}

/// A cluster's identity: its `kube-system` namespace's UID (names and addresses are not identities).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterIdentity {
    /// The `kube-system` namespace's UID.
    pub uid: String,
    /// When it was recorded (first contact, or the acceptance of a new cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_at: Option<Time>,
    /// The clusters this RemoteCluster was pinned to before an acceptance moved the pin (oldest first,
    /// at most [`ClusterIdentity::REPLACED_KEPT`]): DR namespaces filled from one of them are taken over
    /// by this cluster at their next sync; a DR namespace filled from any other cluster still refuses it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
}

impl ClusterIdentity {
    /// How many replaced identities are kept.
    pub const REPLACED_KEPT: usize = 8;

    /// The identity after an acceptance moved the pin from `self` to `uid`.
    pub fn moved_to(&self, uid: &str, recorded_at: Option<Time>) -> ClusterIdentity {
        let mut replaces: Vec<String> = self
            .replaces
            .iter()
            .chain(std::iter::once(&self.uid))
            .filter(|u| u.as_str() != uid)
            .cloned()
            .collect();
        replaces.dedup();
        let excess = replaces.len().saturating_sub(Self::REPLACED_KEPT);
        replaces.drain(..excess);
        ClusterIdentity {
            uid: uid.to_owned(),
            recorded_at,
            replaces,
        }
    }
}

/// State of the PVC agent in a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcSyncStatus {
    /// `Running`, `Degraded`, `Deploying`, `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Failed transfers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_syncs: Option<i32>,
    /// Last successful transfer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_sync: Option<Time>,
    /// Last (re)deployment of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_deployment_time: Option<Time>,
    /// Agent readiness per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<AgentStatus>,
    /// SHA-256 fingerprint of the agents' host key (what movers pin; a dr-syncer addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_fingerprint: Option<String>,
    /// SHA-256 fingerprint of the client key of movers writing into this cluster (a dr-syncer addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_fingerprint: Option<String>,
    /// Last key rotation (annotation `dr-syncer.io/rotate-ssh-key`; a dr-syncer addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_key_rotation: Option<Time>,
}

/// Agent readiness across nodes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// Nodes with a ready agent.
    #[serde(default)]
    pub ready_nodes: i32,
    /// Nodes that should run an agent.
    #[serde(default)]
    pub total_nodes: i32,
    /// Per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_statuses: Option<BTreeMap<String, NodeAgentStatus>>,
}

/// Agent state on one node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeAgentStatus {
    /// Whether the agent is ready.
    #[serde(default)]
    pub ready: bool,
    /// Last heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
    /// Detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// SSH reachability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_status: Option<SshStatus>,
    /// The agent pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_status: Option<AgentPodStatus>,
}

/// SSH reachability of an agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshStatus {
    /// Whether a connection succeeded.
    pub connected: bool,
    /// Last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<Time>,
}

/// The agent pod on a node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPodStatus {
    /// Pod phase.
    pub phase: String,
    /// Pod readiness.
    pub ready: bool,
    /// Container restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i32>,
    /// Last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

#[cfg(test)]
mod identity_tests {
    use super::ClusterIdentity;

    #[test]
    fn a_moved_pin_keeps_the_clusters_it_replaced_newest_last_and_bounded() {
        let mut id = ClusterIdentity {
            uid: "a".into(),
            recorded_at: None,
            replaces: Vec::new(),
        };
        id = id.moved_to("b", None);
        assert_eq!(
            (id.uid.as_str(), id.replaces.clone()),
            ("b", vec!["a".to_owned()])
        );
        // Back to a: a is the pin again, not also a replaced cluster.
        id = id.moved_to("a", None);
        assert_eq!(
            (id.uid.as_str(), id.replaces.clone()),
            ("a", vec!["b".to_owned()])
        );
        for n in 0..20 {
            id = id.moved_to(&format!("c{n}"), None);
        }
        assert_eq!(id.replaces.len(), ClusterIdentity::REPLACED_KEPT);
        assert_eq!(id.replaces.last().map(String::as_str), Some("c18"));
        assert_eq!(id.uid, "c19");
    }
}
