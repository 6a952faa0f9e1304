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
