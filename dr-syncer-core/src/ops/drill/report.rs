//! What a drill step did ([`DrillReport`]) and how it was asked ([`DrillOptions`], [`DrillData`]).

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::engine::SyncReport;

/// One activation change of a drill.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillChange {
    /// `source` or `destination`.
    pub cluster: String,
    /// The object (`Kind.group/namespace/name`).
    pub object: String,
    /// What was (or, in a dry run, would be) done: `quiet`, `activate`, `mark-active`, `clear-active`,
    /// `mark-standby`, `clear-standby`.
    pub action: String,
    /// The merge patch.
    pub patch: Value,
}

/// How fresh the DR copy is: what a promotion accepts to lose (its RPO).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Freshness {
    /// The newest `dr-syncer.io/last-synced` of the DR objects: when production's last change reached the
    /// DR side (later syncs that found nothing to change leave no mark, so the copy may be fresher).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_object_sync: Option<String>,
    /// Seconds since `last_object_sync`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_object_sync_age_seconds: Option<i64>,
    /// The oldest `dr-syncer.io/last-data-sync` of the DR PVCs (a PVC never copied: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_data_copy: Option<String>,
    /// Seconds since `last_data_copy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_data_copy_age_seconds: Option<i64>,
    /// DR PVCs whose data was never copied.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub never_copied: Vec<String>,
}

/// What a drill step did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    /// `stage`, `cutover`, `failback`, `promote` or `fence`.
    pub mode: String,
    /// Nothing was written.
    pub dry_run: bool,
    /// The sync (or, in a dry run, the plan) of source to DR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncReport>,
    /// Failback: what changed on the DR side since the cutover (a plan of DR → source).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverse_diff: Option<SyncReport>,
    /// Failback with `sync_back`: the copy of those changes to the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_back: Option<SyncReport>,
    /// Activation changes, in the order they were made.
    pub changes: Vec<DrillChange>,
    /// PVC data copies, in the order they ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<DataCopy>,
    /// The steps, in the order they ran (activation steps and data copies).
    pub steps: Vec<String>,
    /// What the recorded site state made the drill skip, and what it waited for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Promote: how fresh the DR copy is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Freshness>,
    /// Workloads waited for until ready.
    pub waited: bool,
}

/// One PVC's data copy during a drill.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataCopy {
    /// The step it belonged to (`stage`, `pre-copy`, `final delta`, `reverse`).
    pub step: String,
    /// `source/pvc → destination/pvc` (for a reverse copy, DR → source).
    pub pvc: String,
    /// The node the data was read on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `Synced`, `Skipped` or `Failed`.
    pub status: String,
    /// Bytes sent over the network.
    pub bytes_sent: u64,
    /// Files transferred.
    pub files_transferred: u64,
    /// Files deleted on the receiving side.
    pub files_deleted: u64,
    /// Seconds.
    pub duration_seconds: f64,
    /// The error or the reason it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error's kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
}

/// PVC data copying of a drill: the data path from the source to the DR cluster (stage, cutover) and
/// back (failback), each through agents deployed on the reading side.
#[derive(Clone, Debug, Default)]
pub struct DrillData {
    /// Source → DR.
    pub forward: Option<std::sync::Arc<dyn crate::ops::VolumeSync>>,
    /// DR → source.
    pub reverse: Option<std::sync::Arc<dyn crate::ops::VolumeSync>>,
    /// PVCs copied at a time.
    pub concurrency: usize,
    /// Cutover: copy once while the source still runs (most of the data), so that the final delta
    /// after quieting the source is short.
    pub pre_copy: bool,
}

/// Options of cutover, failback, promote and fence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrillOptions {
    /// Report what would happen, write nothing.
    pub dry_run: bool,
    /// Wait until the activated side's workloads are ready, at most this long.
    pub wait: Option<Duration>,
    /// Failback: copy what changed on the DR side to the source first (the source's workloads keep their
    /// quiet state and recorded originals; they are reactivated from those afterwards).
    pub sync_back: bool,
    /// How long to wait, after quieting a side, until its workloads' pods are gone (before a final data
    /// copy and before the other side is activated).
    pub drain_timeout: Duration,
}

impl Default for DrillOptions {
    fn default() -> Self {
        DrillOptions {
            dry_run: false,
            wait: None,
            sync_back: false,
            drain_timeout: Duration::from_secs(300),
        }
    }
}
