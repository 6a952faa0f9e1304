//! The label sets of the operator's metrics.

use prometheus_client::encoding::EncodeLabelSet;

/// `namespace`, `status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncOpLabels {
    /// Source namespace.
    pub namespace: String,
    /// `success` or `failure`.
    pub status: String,
}

/// `namespace`, `resource_type`, `status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// Source namespace.
    pub namespace: String,
    /// `Kind` or `Kind.group`.
    pub resource_type: String,
    /// `created`, `updated`, `unchanged`, `recreated`, `deleted`, `skipped` or `failed`.
    pub status: String,
}

/// `mapping` (`namespace/name` of the NamespaceMapping), `mode`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    /// The mapping.
    pub mapping: String,
    /// `full` (a complete pass) or `incremental` (continuous mode's watch-driven batches).
    pub mode: String,
}

/// `mapping`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MappingLabels {
    /// The mapping.
    pub mapping: String,
}

/// `mapping`, `namespace` (the DR namespace).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabels {
    /// The mapping.
    pub mapping: String,
    /// The DR namespace.
    pub namespace: String,
}

/// `namespace`, `kind`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Source namespace.
    pub namespace: String,
    /// Stable error kind (`ApplyFailed`, `KubeApi` …).
    pub kind: String,
}

/// `cluster`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    /// RemoteCluster (`namespace/name`).
    pub cluster: String,
}

/// `controller`, `kind`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileErrorLabels {
    /// `remotecluster`, `clustermapping` or `namespacemapping`.
    pub controller: String,
    /// Stable error kind.
    pub kind: String,
}

/// `namespace`, `pvc_name`, `destination_namespace` (the Go project's PVC sync labels).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PvcLabels {
    /// Source namespace.
    pub namespace: String,
    /// The PVC.
    pub pvc_name: String,
    /// DR namespace.
    pub destination_namespace: String,
}

/// [`PvcLabels`] and `status` (`success` or `failure`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PvcStatusLabels {
    /// Source namespace.
    pub namespace: String,
    /// The PVC.
    pub pvc_name: String,
    /// DR namespace.
    pub destination_namespace: String,
    /// `success` or `failure`.
    pub status: String,
}

/// `class` of a sync: `changes`, `requested` or `periodic` ([`crate::slots::SyncClass`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabels {
    /// The class.
    pub class: String,
}
