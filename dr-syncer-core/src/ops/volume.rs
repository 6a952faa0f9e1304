//! The PVC data seam ([`VolumeSync`]) and what every implementation of it shares: the pairs of PVCs a
//! mapping or a drill copies, and the results of a copy. The built-in implementation, `PvcDataSync`
//! (feature `data`), is in [`super::pvc_sync`].

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::{Api, Client, api::ListParams};

use crate::{Error, Result, data::TransferStats};

/// One PVC to copy: source claim and DR claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PvcPair {
    /// Source namespace.
    pub source_namespace: String,
    /// Source PVC.
    pub source_pvc: String,
    /// DR namespace.
    pub destination_namespace: String,
    /// DR PVC.
    pub destination_pvc: String,
}

impl std::fmt::Display for PvcPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} → {}/{}",
            self.source_namespace, self.source_pvc, self.destination_namespace, self.destination_pvc
        )
    }
}

/// Which side of a copy carries the `dr-syncer.io/synced-by` mark that makes it eligible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncedSide {
    /// The receiving PVCs (source → DR: dr-syncer created them).
    Receiving,
    /// The sending PVCs (DR → source on failback: the DR copies dr-syncer created).
    Sending,
}

/// Which DR PVCs count as dr-syncer's for a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagedBy<'a> {
    /// Those one writer synced: `dr-syncer.io/synced-by` is this value (a mapping's own copies).
    Writer(&'a str),
    /// Those dr-syncer put there for the pair whose production namespace this is, whoever synced them
    /// (a drill acts on everything of the pair: [`crate::site::put_there_for`]).
    Pair(&'a str),
}

impl ManagedBy<'_> {
    fn matches(&self, meta: &kube::core::ObjectMeta) -> bool {
        match self {
            ManagedBy::Writer(w) => meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::annotations::SYNCED_BY))
                .is_some_and(|v| v == w),
            ManagedBy::Pair(ns) => crate::site::put_there_for(meta, ns),
        }
    }
}

/// The PVCs whose data a copy from `from_ns` (on `from`) to `to_ns` (on `to`) may move: those that exist
/// on both sides under the same name and whose copy on the DR side — `marked` — is dr-syncer's (`managed`).
/// Data is never written into, or read back from, a PVC dr-syncer does not manage.
///
/// # Errors
/// [`Error::Kube`] when the PVCs cannot be listed.
pub async fn synced_pvc_pairs(
    from: &Client,
    from_ns: &str,
    to: &Client,
    to_ns: &str,
    managed: ManagedBy<'_>,
    marked: SyncedSide,
) -> Result<Vec<PvcPair>> {
    let names = |client: &Client, ns: &str, managed_only: bool| {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        let ns = ns.to_string();
        async move {
            api.list(&ListParams::default())
                .await
                .map(|l| {
                    l.items
                        .into_iter()
                        .filter(|p| !managed_only || managed.matches(&p.metadata))
                        .filter_map(|p| p.metadata.name)
                        .collect::<std::collections::BTreeSet<_>>()
                })
                .map_err(|e| Error::kube(format!("listing PVCs of {ns}"), e))
        }
    };
    let receiving = names(to, to_ns, marked == SyncedSide::Receiving).await?;
    Ok(names(from, from_ns, marked == SyncedSide::Sending)
        .await?
        .into_iter()
        .filter(|n| receiving.contains(n))
        .map(|n| PvcPair {
            source_namespace: from_ns.to_string(),
            source_pvc: n.clone(),
            destination_namespace: to_ns.to_string(),
            destination_pvc: n,
        })
        .collect())
}

pub use crate::pvc::PvcSyncStage;

/// The result of one PVC's transfer.
#[derive(Debug)]
pub enum PvcSyncOutcome {
    /// Data copied.
    Synced(TransferStats),
    /// Not attempted (with the reason): another transfer holds the PVC's lock.
    Skipped(String),
    /// Failed.
    Failed(Error),
}

/// One PVC's result.
#[derive(Debug)]
pub struct PvcSyncResult {
    /// Which PVC.
    pub pair: PvcPair,
    /// The source node the data came from (when found).
    pub node: Option<String>,
    /// What happened.
    pub outcome: PvcSyncOutcome,
    /// How long it took.
    pub duration: Duration,
}

/// Callback of progress updates (`pair`, stage).
pub type PvcProgressFn<'a> = dyn Fn(&PvcPair, &PvcSyncStage) + Send + Sync + 'a;

/// The PVC data seam: copy the data of a source PVC into its DR PVC. The operator and the CLI hold one as
/// `Arc<dyn VolumeSync>`: `PvcDataSync` (rsync over a verified SSH connection between the source's
/// agents and a mover pod) is the built-in one; the builders (`dr_syncer_operator::Operator`,
/// `dr_syncer_cli::Cli`) let a platform wrap or replace it, e.g. with a snapshot- or CSI-based mover.
///
/// # Guarantees the callers give
/// The pairs are PVCs that exist on both sides, whose DR copy dr-syncer manages ([`synced_pvc_pairs`]);
/// the operator checks right before each copy that the DR namespace is not the live site, and a drill
/// copies only in the steps the site state allows. An implementation must not write anywhere else.
///
/// # Errors
/// Per pair, in [`PvcSyncResult::outcome`]: never a panic, never a silently partial copy reported as
/// `Synced`.
#[async_trait::async_trait]
pub trait VolumeSync: Send + Sync + std::fmt::Debug {
    /// Copy one pair's data, reporting progress.
    async fn sync_one(&self, pair: PvcPair, progress: &PvcProgressFn<'_>) -> PvcSyncResult;

    /// Copy every pair, at most `concurrency` at a time.
    async fn sync_all(
        &self,
        pairs: Vec<PvcPair>,
        concurrency: usize,
        progress: &PvcProgressFn<'_>,
    ) -> Vec<PvcSyncResult> {
        futures::stream::iter(pairs)
            .map(|pair| self.sync_one(pair, progress))
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await
    }
}

/// A [`VolumeSync`] that copies only into a DR namespace that is not the live site: the namespace is read
/// right before each copy (a cutover or promote may have made the DR side live since its objects were
/// synced), and a namespace marked active, or one that cannot be read, gets no copy (the pair is
/// [`PvcSyncOutcome::Skipped`]). The operator wraps every mover in it.
#[derive(Debug)]
pub struct QuietDestinationOnly {
    inner: std::sync::Arc<dyn VolumeSync>,
    destination: super::Cluster,
}

impl QuietDestinationOnly {
    /// Guard `inner`, reading the DR namespaces on `destination`.
    pub fn new(inner: std::sync::Arc<dyn VolumeSync>, destination: super::Cluster) -> Self {
        QuietDestinationOnly { inner, destination }
    }
}

#[async_trait::async_trait]
impl VolumeSync for QuietDestinationOnly {
    async fn sync_one(&self, pair: PvcPair, progress: &PvcProgressFn<'_>) -> PvcSyncResult {
        let quiet = matches!(
            crate::kube::site::read_destination(
                &self.destination.client,
                &self.destination.calls,
                &pair.destination_namespace,
            )
            .await,
            Ok((d, _)) if !d.is_active()
        );
        if !quiet {
            return PvcSyncResult {
                pair,
                node: None,
                outcome: PvcSyncOutcome::Skipped(format!(
                    "not copied: {}",
                    crate::site::Reason::DestinationActive
                )),
                duration: Duration::ZERO,
            };
        }
        self.inner.sync_one(pair, progress).await
    }
}

/// The per-PVC state of a mapping's data copies (`status.dataSync`), moved on by the stages and results
/// of the copies; the host writes it to status, metrics and Events.
#[derive(Debug, Clone, Default)]
pub struct VolumeStates(std::collections::BTreeMap<String, crate::api::VolumeSyncStatus>);

/// `source-namespace/pvc`: a pair's key in [`VolumeStates`].
pub fn volume_key(pair: &PvcPair) -> String {
    format!("{}/{}", pair.source_namespace, pair.source_pvc)
}

impl VolumeStates {
    /// Every pair `Pending`, keeping what `previous` (the last status) recorded of it.
    pub fn seed(pairs: &[PvcPair], previous: &[crate::api::VolumeSyncStatus]) -> Self {
        VolumeStates(
            pairs
                .iter()
                .map(|p| {
                    let key = volume_key(p);
                    let mut v = previous
                        .iter()
                        .find(|v| v.source == key)
                        .cloned()
                        .unwrap_or_else(|| crate::api::VolumeSyncStatus {
                            source: key.clone(),
                            destination: format!("{}/{}", p.destination_namespace, p.destination_pvc),
                            ..Default::default()
                        });
                    v.phase = "Pending".into();
                    v.percent = None;
                    (key, v)
                })
                .collect(),
        )
    }

    /// The states, by source PVC.
    pub fn snapshot(&self) -> Vec<crate::api::VolumeSyncStatus> {
        self.0.values().cloned().collect()
    }

    /// A copy moved on (`now`: the time of a copy's start). Returns whether the pair is known.
    pub fn on_stage(
        &mut self,
        pair: &PvcPair,
        stage: &PvcSyncStage,
        now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    ) -> bool {
        let Some(v) = self.0.get_mut(&volume_key(pair)) else {
            return false;
        };
        match stage {
            PvcSyncStage::Mounting => v.phase = "Mounting".into(),
            PvcSyncStage::Starting { node } => {
                v.phase = "Syncing".into();
                v.node = Some(node.clone());
                v.percent = Some(0);
                v.last_attempt_time = Some(now);
            }
            PvcSyncStage::Moving(p) => {
                v.phase = "Syncing".into();
                v.percent = Some(i32::from(p.percent));
                v.bytes_transferred = i64::try_from(p.bytes).ok();
                v.files_transferred = i64::try_from(p.files_transferred).ok();
                v.bytes_per_second = Some(p.bytes_per_second as i64);
            }
        }
        true
    }

    /// A copy ended (`now`: the time it did): `Synced` (counts, no failure streak), `Skipped` (why) or
    /// `Failed` (one more consecutive failure, the message). Returns the pair's state (`None`: unknown).
    pub fn on_result(
        &mut self,
        result: &PvcSyncResult,
        now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    ) -> Option<&crate::api::VolumeSyncStatus> {
        let v = self.0.get_mut(&volume_key(&result.pair))?;
        v.node = result.node.clone().or(v.node.take());
        v.duration = Some(crate::schedule::format_duration(result.duration));
        match &result.outcome {
            PvcSyncOutcome::Synced(stats) => {
                v.phase = "Synced".into();
                v.percent = Some(100);
                v.bytes_transferred = i64::try_from(stats.bytes_sent).ok();
                v.files_transferred = i64::try_from(stats.files_transferred).ok();
                v.bytes_per_second = Some(stats.bytes_per_second() as i64);
                v.last_sync_time = Some(now);
                v.consecutive_failures = None;
                v.message = None;
            }
            PvcSyncOutcome::Skipped(reason) => {
                v.phase = "Skipped".into();
                v.message = Some(reason.clone());
            }
            PvcSyncOutcome::Failed(e) => {
                v.phase = "Failed".into();
                v.consecutive_failures = Some(v.consecutive_failures.unwrap_or(0) + 1);
                v.message = Some(e.to_string());
            }
        }
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

    use super::*;
    use crate::{api::VolumeSyncStatus, data::TransferStats, pvc::MoverProgress};

    fn pair(name: &str) -> PvcPair {
        PvcPair {
            source_namespace: "shop".into(),
            source_pvc: name.into(),
            destination_namespace: "shop-dr".into(),
            destination_pvc: name.into(),
        }
    }

    fn at(s: i64) -> Time {
        Time(Timestamp::from_second(s).unwrap())
    }

    fn result(p: PvcPair, outcome: PvcSyncOutcome) -> PvcSyncResult {
        PvcSyncResult {
            pair: p,
            node: Some("node-a".into()),
            outcome,
            duration: Duration::from_secs(61),
        }
    }

    #[test]
    fn states_follow_a_copy_and_keep_the_failure_streak_until_a_success() {
        let previous = [VolumeSyncStatus {
            source: "shop/data".into(),
            destination: "shop-dr/data".into(),
            phase: "Failed".into(),
            consecutive_failures: Some(2),
            last_sync_time: Some(at(10)),
            ..Default::default()
        }];
        let mut states = VolumeStates::seed(&[pair("data"), pair("logs")], &previous);
        let snap = states.snapshot();
        assert_eq!(
            snap.iter().map(|v| v.phase.as_str()).collect::<Vec<_>>(),
            ["Pending", "Pending"]
        );
        // What the last status knew is kept until the copy says otherwise.
        assert_eq!(snap[0].consecutive_failures, Some(2));
        assert_eq!(snap[1].destination, "shop-dr/logs");

        assert!(states.on_stage(
            &pair("data"),
            &PvcSyncStage::Starting {
                node: "node-a".into()
            },
            at(20)
        ));
        let progress = MoverProgress {
            percent: 40,
            bytes: 4096,
            files_transferred: 3,
            bytes_per_second: 1000.0,
            ..Default::default()
        };
        assert!(states.on_stage(&pair("data"), &PvcSyncStage::Moving(progress), at(21)));
        let v = &states.snapshot()[0];
        assert_eq!(
            (v.phase.as_str(), v.percent, v.last_attempt_time.clone()),
            ("Syncing", Some(40), Some(at(20)))
        );
        // A pair the states do not hold is ignored.
        assert!(!states.on_stage(&pair("other"), &PvcSyncStage::Mounting, at(22)));

        let failed = result(
            pair("data"),
            PvcSyncOutcome::Failed(crate::Error::Timeout("copy".into())),
        );
        let v = states.on_result(&failed, at(30)).unwrap();
        assert_eq!((v.phase.as_str(), v.consecutive_failures), ("Failed", Some(3)));
        assert_eq!(v.duration.as_deref(), Some("1m1s"));
        // The last success's time stays.
        assert_eq!(v.last_sync_time, Some(at(10)));

        let stats = TransferStats {
            bytes_sent: 8192,
            files_transferred: 5,
            ..Default::default()
        };
        let v = states
            .on_result(&result(pair("data"), PvcSyncOutcome::Synced(stats)), at(40))
            .unwrap();
        assert_eq!(
            (
                v.phase.as_str(),
                v.percent,
                v.consecutive_failures,
                v.message.clone(),
                v.last_sync_time.clone()
            ),
            ("Synced", Some(100), None, None, Some(at(40)))
        );
        let v = states
            .on_result(
                &result(pair("logs"), PvcSyncOutcome::Skipped("locked".into())),
                at(41),
            )
            .unwrap();
        assert_eq!(
            (v.phase.as_str(), v.message.as_deref()),
            ("Skipped", Some("locked"))
        );
        assert!(
            states
                .on_result(
                    &result(pair("other"), PvcSyncOutcome::Skipped("x".into())),
                    at(42)
                )
                .is_none()
        );
    }
}
