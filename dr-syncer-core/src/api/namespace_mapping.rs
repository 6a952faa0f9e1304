//! `NamespaceMapping`: what to replicate from a source namespace to a destination namespace, and how.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{
    Conditions, DURATION_PATTERN, SecretReference, VerificationMode, any_json_schema, conditions_schema,
    default_sample_percent, default_true,
};

/// Any 5-field (standard cron) or 6-field (leading seconds) expression, or a descriptor (`@hourly`,
/// `@daily`, … , `@every 90s`); the controller validates it fully. Everything the Go project's stricter
/// pattern accepts matches this one too.
pub const SCHEDULE_PATTERN: &str =
    r"^\s*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|@every\s+\S+|[^@\s]\S*(\s+\S+){4,5})\s*$";

/// Desired state of a NamespaceMapping: what to replicate, when, and how it is transformed.
// kube's `printcolumn(...)` arguments repeat `type_ = ...`; clippy mistakes that for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "dr-syncer.io",
    version = "v1alpha1",
    kind = "NamespaceMapping",
    namespaced,
    status = "NamespaceMappingStatus",
    shortname = "nsmap",
    category = "dr-syncer",
    doc = "What to replicate from a source namespace (or every namespace matching a selector) to the DR \
           cluster, and how.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.sourceNamespace"),
    printcolumn(
        name = "Destination",
        type_ = "string",
        json_path = ".spec.destinationNamespace"
    ),
    printcolumn(
        name = "Cluster Mapping",
        type_ = "string",
        json_path = ".spec.clusterMappingRef.name"
    ),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.replicationMode"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.lastSyncTime"),
    // A string, as in the Go CRD: a `date` column shows a future time as `<invalid>`.
    printcolumn(name = "Next Sync", type_ = "string", json_path = ".status.nextSyncTime"),
    printcolumn(
        name = "Selector",
        type_ = "string",
        json_path = ".spec.namespaceSelector.labelSelector",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceMappingSpec {
    /// Stop replicating while true.
    #[serde(default)]
    pub paused: bool,
    /// When replication runs.
    #[serde(default)]
    pub replication_mode: ReplicationMode,
    /// Cron schedule of `Scheduled` mode: 5 fields (standard cron) or 6 with leading seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(SCHEDULE_PATTERN))]
    pub schedule: Option<String>,
    /// The ClusterMapping naming the source and destination clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_mapping_ref: Option<ClusterMappingReference>,
    /// Source RemoteCluster (instead of `clusterMappingRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_cluster: Option<String>,
    /// Destination RemoteCluster (instead of `clusterMappingRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_cluster: Option<String>,
    /// Source namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_namespace: Option<String>,
    /// Destination namespace (the source's name when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_namespace: Option<String>,
    /// Types to replicate, by kind, plural, singular, short name or `resource.group`; `*` for all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_types: Option<Vec<String>>,
    /// Further namespaced types as `resource.group` (custom resources), or `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_scoped_resources: Option<Vec<String>>,
    /// Keep the DR site quiet: workloads at zero replicas, CronJobs suspended, DaemonSets held.
    #[serde(default = "default_true")]
    pub scale_to_zero: bool,
    /// Also replicate the CustomResourceDefinitions of replicated custom resources.
    #[serde(default, rename = "syncCRDs")]
    pub sync_crds: bool,
    /// Continuous mode settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuous: Option<ContinuousConfig>,
    /// Retries of failed syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_config: Option<RetryConfig>,
    /// A user-managed client key pair for the PVC data path instead of a generated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temp_pod_key_secret_ref: Option<SecretReference>,
    /// How the destination namespace is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_config: Option<NamespaceConfig>,
    /// How Ingresses are transformed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_config: Option<IngressConfig>,
    /// What happens when a change hits an immutable field on the DR side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable_resource_config: Option<ImmutableResourceConfig>,
    /// How failures of each category are handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_handling: Option<FailureHandlingConfig>,
    /// PersistentVolumeClaims and their data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_config: Option<PvcConfig>,
    /// Source objects with any of these labels are not replicated (`dr-syncer.io/ignore: "true"` always
    /// applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_labels: Option<Vec<ExcludeLabel>>,
    /// Source objects not to replicate, by kind and name (or glob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_resources: Option<Vec<ExcludeResource>>,
    /// Only source objects matching this selector are replicated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Replicate every source namespace matching a label selector (instead of `sourceNamespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// How Services are transformed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_config: Option<ServiceConfig>,
    /// Declarative transforms (JSON Patch), applied after the built-in ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform_rules: Option<Vec<TransformRule>>,
    /// External transformer plugins, by name in the operator's plugin directory (`--plugin-dir`), run
    /// in order after the built-in transformers and `transformRules` (forward syncs only). A dr-syncer
    /// addition; see docs/plugins.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform_plugins: Option<Vec<TransformPlugin>>,
    /// Delete DR objects dr-syncer created whose source is gone.
    #[serde(default)]
    pub prune: bool,
    /// What happens to the DR objects when this mapping is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// When `prune` (and mirrored deletions in Continuous mode) would remove a large share of what this
    /// mapping manages on the DR side, the deletions are held until a go-ahead (the
    /// `dr-syncer.io/allow-deletions` annotation). A dr-syncer addition; on by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_brake: Option<DeletionBrakeSpec>,
    /// Take over DR objects that exist already and were not put there by dr-syncer (no
    /// `dr-syncer.io/synced-by`): without it they are left alone and reported as skipped. In a DR
    /// namespace the Go operator marked (label `dr-syncer.io/managed-by=dr-syncer`) objects are taken
    /// over unless this is `false`. A dr-syncer addition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt_existing: Option<bool>,
}

/// The deletion brake: deletions that would remove more than `percent` % **and** more than `minObjects` of
/// the DR objects a mapping manages, counted over `window`, are held until a go-ahead.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletionBrakeSpec {
    /// `false` turns the brake off (deletions go ahead as `prune` finds them).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The share of the managed DR objects (0–100) a deletion must exceed to be held.
    #[serde(default = "default_brake_percent")]
    #[schemars(range(max = 100))]
    pub percent: u8,
    /// The number of objects a deletion must exceed to be held.
    #[serde(default = "default_brake_min_objects")]
    pub min_objects: u32,
    /// The sliding window deletions are counted over (`5m`, `30s` …).
    #[serde(default = "default_brake_window")]
    pub window: String,
}

impl Default for DeletionBrakeSpec {
    fn default() -> Self {
        DeletionBrakeSpec {
            enabled: true,
            percent: default_brake_percent(),
            min_objects: default_brake_min_objects(),
            window: default_brake_window(),
        }
    }
}

fn default_brake_percent() -> u8 {
    50
}
fn default_brake_min_objects() -> u32 {
    10
}
fn default_brake_window() -> String {
    "5m".into()
}

/// When replication runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ReplicationMode {
    /// On a cron schedule.
    #[default]
    Scheduled,
    /// On every change of the source (watches), plus a periodic full resync.
    Continuous,
    /// When the `dr-syncer.io/sync-now` annotation is set.
    Manual,
}

/// A reference to a ClusterMapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMappingReference {
    /// Name of the ClusterMapping.
    pub name: String,
    /// Its namespace (the NamespaceMapping's when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Continuous mode settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContinuousConfig {
    /// Watch the source for changes (otherwise only the background resync runs).
    #[serde(default = "default_true")]
    pub watch_resources: bool,
    /// Full resync interval.
    #[serde(default = "default_background_interval")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub background_sync_interval: String,
}

impl Default for ContinuousConfig {
    fn default() -> Self {
        ContinuousConfig {
            watch_resources: true,
            background_sync_interval: default_background_interval(),
        }
    }
}

fn default_background_interval() -> String {
    "1h".into()
}

/// Retries of failed syncs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfig {
    /// Retries before waiting for the next scheduled sync.
    #[serde(default = "default_max_retries")]
    pub max_retries: i32,
    /// First backoff.
    #[serde(default = "default_initial_backoff")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub initial_backoff: String,
    /// Longest backoff.
    #[serde(default = "default_max_backoff")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub max_backoff: String,
    /// Backoff growth per retry, in percent (200 doubles).
    #[serde(default = "default_backoff_multiplier")]
    #[schemars(range(min = 100, max = 1000))]
    pub backoff_multiplier: i32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: default_max_retries(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            backoff_multiplier: default_backoff_multiplier(),
        }
    }
}

fn default_max_retries() -> i32 {
    5
}
fn default_initial_backoff() -> String {
    "5s".into()
}
fn default_max_backoff() -> String {
    "5m".into()
}
fn default_backoff_multiplier() -> i32 {
    200
}

/// How the destination namespace is created.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceConfig {
    /// Create the destination namespace when missing.
    #[serde(default = "default_true")]
    pub create_namespace: bool,
    /// Copy the source namespace's labels.
    #[serde(default = "default_true")]
    pub preserve_labels: bool,
    /// Copy the source namespace's annotations.
    #[serde(default = "default_true")]
    pub preserve_annotations: bool,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        NamespaceConfig {
            create_namespace: true,
            preserve_labels: true,
            preserve_annotations: true,
        }
    }
}

/// How Ingresses are transformed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressConfig {
    /// Keep all annotations (otherwise only `preserveAnnotationsList`).
    #[serde(default = "default_true")]
    pub preserve_annotations: bool,
    /// Keep TLS sections.
    #[serde(default = "default_true", rename = "preserveTLS")]
    pub preserve_tls: bool,
    /// Accepted for compatibility: backends always point at Services of the mapped namespace.
    #[serde(default = "default_true")]
    pub preserve_backends: bool,
    /// Annotation keys kept when `preserveAnnotations` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_annotations_list: Option<Vec<String>>,
    /// Rewrite hosts with `hostSuffix`.
    #[serde(default)]
    pub transform_hosts: bool,
    /// New host = first DNS label + this suffix (`myapp.example.com` + `-dr.example.com` →
    /// `myapp-dr.example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_suffix: Option<String>,
}

impl Default for IngressConfig {
    fn default() -> Self {
        IngressConfig {
            preserve_annotations: true,
            preserve_tls: true,
            preserve_backends: true,
            preserve_annotations_list: None,
            transform_hosts: false,
            host_suffix: None,
        }
    }
}

/// What happens when a change hits an immutable field on the DR side.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ImmutableHandling {
    /// Leave the DR object as it is and report a Warning event.
    #[default]
    NoChange,
    /// Delete and create the DR object.
    Recreate,
    /// Evict its pods first (respecting PodDisruptionBudgets), then recreate.
    RecreateWithPodDrain,
    /// Apply every change except the immutable fields.
    PartialUpdate,
    /// Delete with foreground propagation, wait, and create.
    ForceUpdate,
}

/// Immutable-field handling, with per-resource overrides.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImmutableResourceConfig {
    /// Handling for every resource without an override.
    #[serde(default)]
    pub default_handling: ImmutableHandling,
    /// Per resource, keyed `resource.group` (e.g. `statefulsets.apps`; core types by plural).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_overrides: Option<BTreeMap<String, ImmutableHandling>>,
    /// How long a pod drain may take.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: String,
    /// How long a foreground deletion may take.
    #[serde(default = "default_force_delete_timeout")]
    pub force_delete_timeout: String,
}

impl Default for ImmutableResourceConfig {
    fn default() -> Self {
        ImmutableResourceConfig {
            default_handling: ImmutableHandling::NoChange,
            resource_overrides: None,
            drain_timeout: default_drain_timeout(),
            force_delete_timeout: default_force_delete_timeout(),
        }
    }
}

fn default_drain_timeout() -> String {
    "5m".into()
}
fn default_force_delete_timeout() -> String {
    "2m".into()
}

/// How a category of failure is handled.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum FailureMode {
    /// Retry with backoff, then wait for the next sync.
    RetryAndWait,
    /// Retry with backoff only.
    RetryOnly,
    /// Do not retry; the next sync tries again.
    WaitForNextSync,
    /// Fail the sync at once.
    FailFast,
}

/// Failure handling per category.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureHandlingConfig {
    /// Every category without its own setting.
    #[serde(default = "mode_retry_and_wait")]
    pub default_mode: FailureMode,
    /// A StorageClass is missing on the DR side.
    #[serde(default = "mode_wait_for_next_sync")]
    pub storage_class_not_found: FailureMode,
    /// A referenced object is missing.
    #[serde(default = "mode_fail_fast")]
    pub resource_not_found: FailureMode,
    /// The DR side rejected an object as invalid.
    #[serde(default = "mode_fail_fast")]
    pub validation_failure: FailureMode,
    /// Network or API availability errors.
    #[serde(default = "mode_retry_and_wait")]
    pub network_error: FailureMode,
}

impl Default for FailureHandlingConfig {
    fn default() -> Self {
        FailureHandlingConfig {
            default_mode: FailureMode::RetryAndWait,
            storage_class_not_found: FailureMode::WaitForNextSync,
            resource_not_found: FailureMode::FailFast,
            validation_failure: FailureMode::FailFast,
            network_error: FailureMode::RetryAndWait,
        }
    }
}

fn mode_retry_and_wait() -> FailureMode {
    FailureMode::RetryAndWait
}
fn mode_wait_for_next_sync() -> FailureMode {
    FailureMode::WaitForNextSync
}
fn mode_fail_fast() -> FailureMode {
    FailureMode::FailFast
}

/// PersistentVolumeClaims and their data.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcConfig {
    /// Also replicate the bound PersistentVolumes (and keep `volumeName`).
    #[serde(default)]
    pub sync_persistent_volumes: bool,
    /// Keep volume attributes (volumeName, binding annotations).
    #[serde(default)]
    pub preserve_volume_attributes: bool,
    /// Copy the data of each PVC after the object.
    #[serde(default)]
    pub sync_data: bool,
    /// StorageClass renames for the DR side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_mappings: Option<Vec<NameMapping>>,
    /// Access-mode renames for the DR side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode_mappings: Option<Vec<NameMapping>>,
    /// Data transfer settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sync_config: Option<DataSyncConfig>,
}

/// A rename (`from` → `to`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameMapping {
    /// Name on the source side.
    pub from: String,
    /// Name on the DR side.
    pub to: String,
}

/// Data transfer settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSyncConfig {
    /// PVCs of this mapping copied at the same time.
    #[serde(default = "default_concurrent_syncs")]
    pub concurrent_syncs: i32,
    /// Paths (rsync patterns) not copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_paths: Option<Vec<String>>,
    /// Extra rsync options (validated against an allow-list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsync_options: Option<Vec<String>>,
    /// Bandwidth limit in KiB/s (0 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub bandwidth_limit: Option<i32>,
    /// Time limit of one transfer.
    #[serde(default = "default_data_timeout")]
    pub timeout: String,
    /// Verification after copying.
    #[serde(default)]
    pub verification_mode: VerificationMode,
    /// Percentage of files checked by `sample` verification.
    #[serde(default = "default_sample_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub sample_percent: i32,
}

impl Default for DataSyncConfig {
    fn default() -> Self {
        DataSyncConfig {
            concurrent_syncs: default_concurrent_syncs(),
            exclude_paths: None,
            rsync_options: None,
            bandwidth_limit: None,
            timeout: default_data_timeout(),
            verification_mode: VerificationMode::None,
            sample_percent: default_sample_percent(),
        }
    }
}

fn default_concurrent_syncs() -> i32 {
    2
}
fn default_data_timeout() -> String {
    "30m".into()
}

/// Excludes source objects carrying a label (any value when `value` is unset).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExcludeLabel {
    /// Label key.
    pub key: String,
    /// Label value; any value when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Excludes source objects by kind and name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExcludeResource {
    /// Kind (case-insensitive).
    pub kind: String,
    /// Exact name, or a glob with `*`.
    pub name: String,
}

/// Label-based selection of source namespaces.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Source namespaces carrying these labels are replicated.
    pub label_selector: LabelSelector,
    /// Destination namespace = source name + this suffix.
    #[serde(default = "default_destination_suffix")]
    pub destination_suffix: String,
    /// When a namespace stops matching, delete what dr-syncer created for it.
    #[serde(default)]
    pub cleanup_on_unlabel: bool,
}

fn default_destination_suffix() -> String {
    "-dr".into()
}

/// How Services are transformed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceConfig {
    /// Keep the source's clusterIP (it must be free in the DR service CIDR).
    #[serde(default, rename = "preserveClusterIP")]
    pub preserve_cluster_ip: bool,
    /// Keep the source's nodePorts.
    #[serde(default = "default_true")]
    pub preserve_node_ports: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            preserve_cluster_ip: false,
            preserve_node_ports: true,
        }
    }
}

/// A transformer plugin a mapping uses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransformPlugin {
    /// The executable's file name in the operator's plugin directory (never a path).
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$"))]
    pub name: String,
    /// String flags given to the plugin (the request's `extras`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<BTreeMap<String, String>>,
}

/// A declarative transform: JSON Patch operations for the objects a match selects.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransformRule {
    /// Which objects the rule applies to (all conditions ANDed; an empty match selects everything).
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<TransformMatch>,
    /// RFC 6902 operations.
    #[serde(default)]
    pub patches: Vec<JsonPatchOperation>,
}

/// Which objects a transform rule applies to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransformMatch {
    /// API group (`""` or `core` for the core group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind (case-insensitive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Regular expression the whole name must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels the object must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
}

/// One RFC 6902 JSON Patch operation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JsonPatchOperation {
    /// The operation.
    pub op: JsonPatchOp,
    /// Target JSON pointer.
    pub path: String,
    /// Value of `add`, `replace` and `test`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_json_schema")]
    pub value: Option<serde_json::Value>,
    /// Source JSON pointer of `move` and `copy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// RFC 6902 operation names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum JsonPatchOp {
    /// Add a value.
    Add,
    /// Remove a value.
    Remove,
    /// Replace a value.
    Replace,
    /// Move a value.
    Move,
    /// Copy a value.
    Copy,
    /// Test a value (the rule is skipped for the object when the test fails).
    Test,
}

/// What happens to the DR objects when a mapping is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave them.
    #[default]
    Retain,
    /// Delete the objects carrying this mapping's `dr-syncer.io/synced-by` annotation.
    DeleteSynced,
}

/// Lifecycle phase of a NamespaceMapping.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SyncPhase {
    /// Waiting for the first sync.
    #[default]
    Pending,
    /// A sync is running.
    Running,
    /// The last sync completed.
    Completed,
    /// The last sync failed.
    Failed,
}

/// Deletions a mapping made in one DR namespace at one time ([`NamespaceMappingStatus::recent_deletions`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentDeletions {
    /// The DR namespace.
    pub namespace: String,
    /// When.
    pub at: Time,
    /// How many objects were deleted.
    pub count: u64,
}

/// Observed state of a NamespaceMapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceMappingStatus {
    /// Lifecycle phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SyncPhase>,
    /// End of the last completed sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// End of the last sync that succeeded (a dr-syncer addition: the `Stale` condition is measured from
    /// it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_sync_time: Option<Time>,
    /// When the next scheduled sync runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,
    /// Deletions made in DR namespaces within the deletion brake's window (a dr-syncer addition): the
    /// window's count outlives an operator restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_deletions: Vec<RecentDeletions>,
    /// Last source change seen in continuous mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_watch_event: Option<Time>,
    /// Progress of the running sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_progress: Option<SyncProgress>,
    /// Counts of the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_stats: Option<SyncStats>,
    /// Counts per group/kind of the last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_groups: Option<Vec<ResourceGroupStatus>>,
    /// Per-resource-type detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detailed_status: Option<Vec<DetailedStatus>>,
    /// Errors by category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_categories: Option<Vec<ErrorCategory>>,
    /// Retry state after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_status: Option<RetryStatus>,
    /// Per-object state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_status: Option<Vec<ResourceStatus>>,
    /// The last error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<LastError>,
    /// Conditions (Synced, Active, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Conditions>,
    /// Original replica counts of the source workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_scales: Option<Vec<DeploymentScale>>,
    /// One entry per namespace matched by `namespaceSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<NamespaceSyncStatus>>,
    /// PVC data replication (`pvcConfig.syncData`): one entry per PVC (a dr-syncer addition to the Go
    /// schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_sync: Option<Vec<VolumeSyncStatus>>,
}

/// Data replication state of one PVC.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSyncStatus {
    /// Source PVC (`namespace/name`).
    pub source: String,
    /// DR PVC (`namespace/name`).
    pub destination: String,
    /// `Mounting`, `Syncing`, `Synced`, `Failed` or `Skipped`.
    pub phase: String,
    /// Node the data is read on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Percent done of the running copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
    /// Bytes sent by the running or last copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_transferred: Option<i64>,
    /// Files transferred by the running or last copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_transferred: Option<i64>,
    /// Speed of the running or last copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<i64>,
    /// Duration of the last copy (e.g. `1m30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// End of the last successful copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// Start of the last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<Time>,
    /// Failed attempts since the last success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i32>,
    /// Detail: the error of a failed copy, why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Progress of a running sync.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncProgress {
    /// Percentage done.
    #[schemars(range(min = 0, max = 100))]
    pub percent_complete: i32,
    /// Estimate of the time left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub estimated_time_remaining: Option<String>,
    /// What is being done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_operation: Option<String>,
    /// Objects left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub resources_remaining: Option<i32>,
}

/// Counts of the last sync, per object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStats {
    /// Objects considered.
    #[schemars(range(min = 0))]
    pub total_resources: i32,
    /// Objects applied or already in sync.
    #[schemars(range(min = 0))]
    pub successful_syncs: i32,
    /// Objects that failed.
    #[schemars(range(min = 0))]
    pub failed_syncs: i32,
    /// Duration of the last sync.
    #[schemars(pattern(DURATION_PATTERN))]
    pub last_sync_duration: String,
}

/// Counts per group/kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceGroupStatus {
    /// `Kind.group` (`Deployment.apps`, `ConfigMap`).
    pub group_kind: String,
    /// Objects of this kind.
    #[schemars(range(min = 0))]
    pub total_count: i32,
    /// Synced.
    #[schemars(range(min = 0))]
    pub synced_count: i32,
    /// Failed.
    #[schemars(range(min = 0))]
    pub failed_count: i32,
    /// Not yet processed.
    #[schemars(range(min = 0))]
    pub pending_count: i32,
}

/// State of a sync step.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SyncState {
    /// Not started.
    #[default]
    Pending,
    /// Running.
    InProgress,
    /// Done.
    Synced,
    /// Failed.
    Failed,
}

/// Per-resource-type detail.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DetailedStatus {
    /// Resource name.
    pub name: String,
    /// Resource version.
    pub version: String,
    /// State.
    pub sync_state: SyncState,
    /// What it depends on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<Vec<Dependency>>,
    /// Last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<LastAttempt>,
}

/// A dependency of a resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// State.
    pub status: SyncState,
}

/// Result of an attempt.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AttemptResult {
    /// Succeeded.
    Success,
    /// Failed.
    Failed,
    /// Skipped.
    Skipped,
    /// Being retried.
    Retrying,
}

/// The last attempt of a step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastAttempt {
    /// When.
    pub time: Time,
    /// Result.
    pub result: AttemptResult,
}

/// Errors of one category.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorCategory {
    /// Category (an error kind).
    #[schemars(length(min = 1))]
    pub category: String,
    /// Occurrences.
    #[schemars(range(min = 0))]
    pub count: i32,
    /// Last occurrence.
    pub last_occurred: Time,
}

/// Retry state after a failure.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryStatus {
    /// When the next retry runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_time: Option<Time>,
    /// Retries left.
    #[schemars(range(min = 0))]
    pub retries_remaining: i32,
    /// Current backoff.
    #[schemars(pattern(DURATION_PATTERN))]
    pub backoff_duration: String,
}

/// State of one object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// State.
    pub status: SyncState,
    /// Last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// Error, if failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The last error.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    /// Message.
    pub message: String,
    /// When.
    pub time: Time,
    /// The object concerned (`Kind/namespace/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
}

/// Original replica count of a source workload.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentScale {
    /// Workload name.
    pub name: String,
    /// Replicas at the source.
    pub original_replicas: i32,
    /// When recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<Time>,
}

/// State of one namespace matched by `namespaceSelector`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSyncStatus {
    /// Source namespace.
    pub source: String,
    /// Destination namespace.
    pub destination: String,
    /// Phase of its last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SyncPhase>,
    /// End of its last sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// Detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
