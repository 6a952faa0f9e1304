//! The labels and annotations dr-syncer reads and writes (names kept from the Go project so users'
//! tooling carries over).

/// The prefix of every label and annotation key dr-syncer sets or reads.
pub const PREFIX: &str = "dr-syncer.io/";

/// Label on a source object: `"true"` keeps it out of replication.
pub const IGNORE: &str = "dr-syncer.io/ignore";
/// Label on a source workload: replicas on the DR side (an integer), or any other value to keep the
/// source's count.
pub const SCALE_OVERRIDE: &str = "dr-syncer.io/scale-override";
/// Annotation on a quiet DR workload: the replica count to restore on activation.
pub const ORIGINAL_REPLICAS: &str = "dr-syncer.io/original-replicas";
/// Annotation on a quiet DR CronJob: its `suspend` value to restore on activation.
pub const ORIGINAL_SUSPEND: &str = "dr-syncer.io/original-suspend";
/// Annotation on a quiet DR DaemonSet: its `nodeSelector` (JSON) to restore on activation.
pub const ORIGINAL_NODE_SELECTOR: &str = "dr-syncer.io/original-node-selector";
/// Node-selector key that holds a quiet DaemonSet off every node (no node carries it).
pub const QUIET_NODE_SELECTOR_KEY: &str = "dr-syncer.io/quiet";
/// Annotation on a NamespaceMapping: run one sync now (removed afterwards).
pub const SYNC_NOW: &str = "dr-syncer.io/sync-now";
/// Annotation on a NamespaceMapping: the go-ahead for deletions the deletion brake holds — the number
/// of deletions allowed (see [`crate::brake`]). It runs a sync and is removed after it.
pub const ALLOW_DELETIONS: &str = "dr-syncer.io/allow-deletions";
/// Annotation on a DR object: time of the last write dr-syncer made to it.
pub const LAST_SYNCED: &str = "dr-syncer.io/last-synced";
/// Annotation on a DR object: fingerprint of the desired object dr-syncer last wrote (detects fields the
/// source removed).
pub const DESIRED_HASH: &str = "dr-syncer.io/desired-hash";
/// Annotation on a DR object that `PartialUpdate` wrote: the fields it kept from the live object because
/// they are immutable (comma-separated, as the API server named them).
pub const IMMUTABLE_FIELDS: &str = "dr-syncer.io/immutable-fields";
/// Annotation on a DR object: which mapping wrote it (`<namespace>/<name>`, or `cli/<source-namespace>`).
pub const SYNCED_BY: &str = "dr-syncer.io/synced-by";
/// Annotation on a DR object: the source cluster's name.
pub const SOURCE_CLUSTER: &str = "dr-syncer.io/source-cluster";
/// Annotation on a DR Namespace: the `kube-system` UID of the cluster it is filled from (the source's
/// identity, compared before every sync writes; names are not identities).
pub const SOURCE_CLUSTER_UID: &str = "dr-syncer.io/source-cluster-uid";
/// Annotation on a NamespaceMapping: `"true"` lets the next full sync's PVC data copies mirror source
/// volumes that look wiped (removed after that sync).
pub const ALLOW_WIPED_SOURCE: &str = "dr-syncer.io/allow-wiped-source";
/// Annotation on a RemoteCluster: accept the cluster it now reaches (the value is that cluster's
/// `kube-system` UID, as the `ClusterIdentityChanged` condition names it); removed once accepted.
pub const ACCEPT_CLUSTER_IDENTITY: &str = "dr-syncer.io/accept-cluster-identity";
/// Annotation on a DR object: the source namespace.
pub const SOURCE_NAMESPACE: &str = "dr-syncer.io/source-namespace";
/// Annotation on a source workload: environment rewrites for the DR side, `NAME:VALUE[,NAME:VALUE...]`.
pub const TRANSFORM_ENV: &str = "dr-syncer.io/transform-env";
/// Label on a source PVC: the StorageClass to use on the DR side (wins over the mapping's table).
pub const STORAGE_CLASS: &str = "dr-syncer.io/storage-class";
/// Annotation on a DR Namespace set by a cutover, a promote or a person: `"true"` while the DR site is
/// the live site (see [`crate::site`]).
pub const ACTIVE: &str = "dr-syncer.io/active";
/// Annotation on an active DR Namespace: when it was marked active (RFC 3339).
pub const ACTIVE_SINCE: &str = "dr-syncer.io/active-since";
/// Annotation on an active DR Namespace: what marked it active (`cutover`, `promote`; absent: by hand).
pub const ACTIVATED_BY: &str = "dr-syncer.io/activated-by";
/// Annotation on a production Namespace: `"true"` once a cutover or a fence quieted it.
pub const STANDBY: &str = "dr-syncer.io/standby";
/// Annotation on a standby production Namespace: when it was marked standby (RFC 3339).
pub const STANDBY_SINCE: &str = "dr-syncer.io/standby-since";
/// Annotation on a DR Namespace that dr-syncer created (it did not exist before dr-syncer's first write):
/// who created it (`dr-syncer.io/synced-by`'s value then). Only such a namespace is ever deleted.
pub const CREATED_BY: &str = "dr-syncer.io/created-by";
/// Annotation on a DR PersistentVolumeClaim: when its data was last copied from production (RFC 3339).
pub const LAST_DATA_SYNC: &str = "dr-syncer.io/last-data-sync";
/// Label on the temporary objects of one `dr-syncer-cli` run (agents, keys, grants, mover pods): the
/// run's id, so that an interrupted run's leftovers can be found (`dr-syncer-cli cleanup`).
pub const CLI_RUN: &str = "dr-syncer.io/cli-run";
/// The annotation `kubectl apply` keeps; never copied.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The label the Go operator put on the DR namespaces it created (`dr-syncer.io/managed-by=dr-syncer`):
/// objects in such a namespace are taken over unless a mapping's `adoptExisting` is `false` (the Go
/// operator did not mark the objects it copied).
pub const GO_MANAGED_BY: &str = "dr-syncer.io/managed-by";

/// KEDA's annotation that pauses a ScaledObject's autoscaling (`"true"`): dr-syncer sets it on the DR
/// copies of ScaledObjects while the DR site is quiet, so KEDA does not scale a quiet workload up.
pub const KEDA_PAUSED: &str = "autoscaling.keda.sh/paused";
/// Annotation on a quieted ScaledObject: its `autoscaling.keda.sh/paused` before it was quieted
/// (`"false"` when it had none).
pub const ORIGINAL_PAUSED: &str = "dr-syncer.io/original-paused";
