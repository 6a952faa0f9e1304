//! The DR drill on two clusters: stage, cutover and failback ([`Drill`]).
//!
//! Every step is idempotent, so a drill interrupted at any point is finished by running it again:
//! - **stage**: sync; the DR side stays quiet.
//! - **cutover**: sync; quiet the source workloads, recording their originals on them (scale to 0,
//!   suspend CronJobs, hold DaemonSets); activate the DR workloads from the originals recorded at sync
//!   time; then mark the DR namespace `dr-syncer.io/active: "true"` so no later sync quiets it. The mark
//!   comes last: a re-run after an interruption re-syncs the still-unmarked DR side (originals intact)
//!   and activates it again. A sync between the activation and the mark (the operator's schedule), or
//!   after a cutover interrupted there, keeps the active replicas and `suspend: false` the drill set (its
//!   field manager owns them), so it does not quiet those workloads again in the meantime (DaemonSets,
//!   whose activation removes a field, are not covered).
//! - **failback**: report what changed on the DR side since the cutover (a plan of DR → source); quiet the
//!   DR workloads; reactivate the source from its recorded originals; clear the mark.
//!
//! Activation writes are JSON merge patches with the field manager `dr-syncer-drill`, separate from the
//! sync's server-side apply.

use std::time::{Duration, Instant};

use kube::{
    Client,
    api::{Patch, PatchParams},
    core::DynamicObject,
};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::info;

use super::{
    ClientOptions, KubeApplier, KubeSource,
    calls::Calls,
    source::{api_for, get_one, list_all},
};
use crate::{
    Error, Result, activation, annotations,
    engine::{Progress, ProgressFn, SyncEngine, SyncReport, SyncTarget, namespace_type},
    resource::ResourceType,
    selection::ObjectFilter,
    transform::annotation,
};

/// The field manager of activation writes.
pub const DRILL_FIELD_MANAGER: &str = "dr-syncer-drill";

/// One activation change of a drill.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillChange {
    /// `source` or `destination`.
    pub cluster: String,
    /// The object (`Kind.group/namespace/name`).
    pub object: String,
    /// What was (or, in a dry run, would be) done: `quiet`, `activate`, `mark-active`, `clear-active`.
    pub action: String,
    /// The merge patch.
    pub patch: Value,
}

/// What a drill step did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillReport {
    /// `stage`, `cutover` or `failback`.
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
    pub forward: Option<super::PvcDataSync>,
    /// DR → source.
    pub reverse: Option<super::PvcDataSync>,
    /// PVCs copied at a time.
    pub concurrency: usize,
    /// Cutover: copy once while the source still runs (most of the data), so that the final delta
    /// after quieting the source is short.
    pub pre_copy: bool,
}

/// Options of cutover and failback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrillOptions {
    /// Report what would happen, write nothing.
    pub dry_run: bool,
    /// Wait until the activated side's workloads are ready, at most this long.
    pub wait: Option<Duration>,
    /// Failback: copy what changed on the DR side to the source first (the source's workloads keep their
    /// quiet state and recorded originals; they are reactivated from those afterwards).
    pub sync_back: bool,
}

/// A drill between two clusters for one namespace pair.
#[derive(Clone)]
pub struct Drill {
    source: Client,
    destination: Client,
    calls: Calls,
    engine: SyncEngine,
    target: SyncTarget,
    data: DrillData,
}

impl std::fmt::Debug for Drill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drill")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Which cluster of the drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Destination,
}

/// Which way a workload is switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Switch {
    Quiet,
    Activate,
}

async fn sync_or_plan(engine: &SyncEngine, target: &SyncTarget, dry_run: bool) -> Result<SyncReport> {
    if dry_run {
        engine.plan(target).await
    } else {
        engine.sync(target).await
    }
}

/// The failed objects of a report, for an error message.
fn failures(report: &SyncReport) -> String {
    report
        .failures
        .iter()
        .map(|f| format!("{}: {}", f.object, f.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether a changed field of a reverse plan is dr-syncer's own (bookkeeping annotations, activation
/// state) rather than a change made on the DR side.
fn is_bookkeeping(path: &str, new: Option<&str>) -> bool {
    if path.starts_with("/metadata/annotations/dr-syncer.io~1") {
        return true;
    }
    if path == "/metadata/annotations" {
        return new
            .and_then(|v| serde_json::from_str::<serde_json::Map<String, Value>>(v).ok())
            .is_some_and(|m| m.keys().all(|k| k.starts_with("dr-syncer.io/")));
    }
    matches!(
        path,
        "/spec/replicas" | "/spec/suspend" | "/spec/template/spec/nodeSelector"
    ) || path.starts_with("/spec/template/spec/nodeSelector/")
}

/// Types whose activation state a drill changes.
fn workload_types() -> [ResourceType; 4] {
    [
        ResourceType::namespaced("apps", "v1", "Deployment", "deployments"),
        ResourceType::namespaced("apps", "v1", "StatefulSet", "statefulsets"),
        ResourceType::namespaced("apps", "v1", "DaemonSet", "daemonsets"),
        ResourceType::namespaced("batch", "v1", "CronJob", "cronjobs"),
    ]
}

impl Drill {
    /// A drill syncing `target` from `source` to `destination`.
    pub fn new(source: Client, destination: Client, options: ClientOptions, target: SyncTarget) -> Self {
        let calls = options.calls();
        let engine = SyncEngine::new(
            std::sync::Arc::new(KubeSource::new(source.clone(), calls.clone())),
            std::sync::Arc::new(KubeApplier::new(destination.clone(), calls.clone())),
        );
        Drill {
            source,
            destination,
            calls,
            engine,
            target,
            data: DrillData::default(),
        }
    }

    /// Copy PVC data too: after the stage sync, before activating the DR side at cutover (after the
    /// source is quiet), and before reactivating the source at failback (after the DR side is quiet).
    pub fn with_data(mut self, data: DrillData) -> Self {
        self.data = data;
        self
    }

    /// Report progress to `f`: the syncs' [`Progress`] and one [`Progress::Step`] per drill step.
    pub fn with_progress(mut self, f: ProgressFn) -> Self {
        self.engine = self.engine.with_progress(f);
        self
    }

    fn step(&self, name: &str) {
        if let Some(f) = self.engine.progress() {
            f(&Progress::Step { name: name.into() });
        }
    }

    fn step_in(&self, report: &mut DrillReport, name: &str) {
        report.steps.push(name.to_string());
        self.step(name);
    }

    /// Copy the data of the PVCs that exist on both sides; an error names every PVC that failed.
    async fn copy_data(
        &self,
        reverse: bool,
        label: &str,
        report: &mut DrillReport,
        dry_run: bool,
    ) -> Result<()> {
        let mover = if reverse {
            &self.data.reverse
        } else {
            &self.data.forward
        };
        let Some(mover) = mover else {
            return Ok(());
        };
        self.step_in(report, &format!("copy PVC data ({label})"));
        if dry_run {
            return Ok(());
        }
        let (from, to, from_ns, to_ns) = if reverse {
            (
                &self.destination,
                &self.source,
                &self.target.destination_namespace,
                &self.target.source_namespace,
            )
        } else {
            (
                &self.source,
                &self.destination,
                &self.target.source_namespace,
                &self.target.destination_namespace,
            )
        };
        // Only PVCs this target synced on the DR side.
        let marked = if reverse {
            super::SyncedSide::Sending
        } else {
            super::SyncedSide::Receiving
        };
        let pairs = super::synced_pvc_pairs(from, from_ns, to, to_ns, &self.target.synced_by, marked).await?;
        let progress = self.engine.progress().cloned();
        let on = move |pair: &super::PvcPair, stage: &super::PvcSyncStage| {
            if let Some(f) = &progress {
                f(&Progress::Data {
                    pvc: pair.to_string(),
                    stage: stage.clone(),
                });
            }
        };
        let results = mover.sync_all(pairs, self.data.concurrency.max(1), &on).await;
        let mut failed = Vec::new();
        for r in results {
            let mut copy = DataCopy {
                step: label.to_string(),
                pvc: r.pair.to_string(),
                node: r.node.clone(),
                duration_seconds: r.duration.as_secs_f64(),
                ..DataCopy::default()
            };
            match r.outcome {
                super::PvcSyncOutcome::Synced(stats) => {
                    copy.status = "Synced".into();
                    copy.bytes_sent = stats.bytes_sent;
                    copy.files_transferred = stats.files_transferred;
                    copy.files_deleted = stats.files_deleted;
                }
                super::PvcSyncOutcome::Skipped(reason) => {
                    copy.status = "Skipped".into();
                    failed.push(format!("{} ({reason})", r.pair));
                    copy.error = Some(reason);
                }
                super::PvcSyncOutcome::Failed(e) => {
                    copy.status = "Failed".into();
                    failed.push(format!("{} ({e})", r.pair));
                    copy.error_kind = Some(e.kind().to_string());
                    copy.error = Some(e.to_string());
                }
            }
            report.data.push(copy);
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::Data(crate::data::DataMoverError::Failed {
                message: format!("PVC data copy ({label}) failed for {}", failed.join(", ")),
                transient: true,
            }))
        }
    }

    /// The sync engine (source → DR).
    pub fn engine(&self) -> &SyncEngine {
        &self.engine
    }

    /// The source and destination clients.
    pub fn clients(&self) -> (&Client, &Client) {
        (&self.source, &self.destination)
    }

    /// The target.
    pub fn target(&self) -> &SyncTarget {
        &self.target
    }

    /// Check what the drill needs before writing anything (see [`super::preflight`]).
    ///
    /// # Errors
    /// When the clusters cannot be asked at all.
    pub async fn preflight(&self, step: super::DrillStep) -> Result<super::PreflightReport> {
        super::preflight(&self.source, &self.destination, &self.calls, &self.target, step).await
    }

    /// Workload types in scope: those of the target that a drill activates.
    fn workloads_in_scope(&self) -> Vec<ResourceType> {
        workload_types()
            .into_iter()
            .filter(|w| {
                self.target
                    .types
                    .iter()
                    .any(|t| t.group == w.group && t.kind == w.kind)
            })
            .collect()
    }

    async fn sync_or_plan(&self, dry_run: bool) -> Result<SyncReport> {
        sync_or_plan(&self.engine, &self.target, dry_run).await
    }

    /// Stage: sync with the DR side quiet (plan only with `dry_run`).
    ///
    /// # Errors
    /// As [`SyncEngine::sync`].
    pub async fn stage(&self, dry_run: bool) -> Result<DrillReport> {
        let mut report = DrillReport {
            mode: "stage".into(),
            dry_run,
            sync: Some(self.sync_or_plan(dry_run).await?),
            ..Default::default()
        };
        report.steps.push("sync".into());
        if report.sync.as_ref().is_some_and(SyncReport::is_success) {
            self.copy_data(false, "stage", &mut report, dry_run).await?;
        }
        Ok(report)
    }

    /// Cutover (see the module docs).
    ///
    /// # Errors
    /// When the sync cannot run, a workload cannot be patched, or `wait` times out. Re-running finishes
    /// an interrupted cutover.
    pub async fn cutover(&self, options: DrillOptions) -> Result<DrillReport> {
        let mut report = DrillReport {
            mode: "cutover".into(),
            dry_run: options.dry_run,
            ..Default::default()
        };
        let sync = self.sync_or_plan(options.dry_run).await?;
        if !sync.is_success() {
            return Err(Error::InvalidConfig(format!(
                "cutover stopped before touching any workload: the sync failed for {}",
                failures(&sync)
            )));
        }
        report.sync = Some(sync);
        report.steps.push("sync".into());
        if self.data.pre_copy {
            self.copy_data(false, "pre-copy", &mut report, options.dry_run)
                .await?;
        }
        // 1. Quiet the source, recording originals on it.
        self.switch(Side::Source, Switch::Quiet, &mut report, options.dry_run)
            .await?;
        // 2. The final data delta, with nothing writing on the source any more.
        self.copy_data(false, "final delta", &mut report, options.dry_run)
            .await?;
        // 3. Activate the DR side from the originals recorded at sync time.
        self.switch(Side::Destination, Switch::Activate, &mut report, options.dry_run)
            .await?;
        // 4. Mark the DR namespace active.
        self.mark(true, &mut report, options.dry_run).await?;
        if let (Some(timeout), false) = (options.wait, options.dry_run) {
            self.wait_ready(&self.destination, &self.target.destination_namespace, timeout)
                .await?;
            report.waited = true;
        }
        Ok(report)
    }

    /// Failback (see the module docs).
    ///
    /// # Errors
    /// When a workload cannot be patched or `wait` times out. Re-running finishes an interrupted failback.
    pub async fn failback(&self, options: DrillOptions) -> Result<DrillReport> {
        let mut report = DrillReport {
            mode: "failback".into(),
            dry_run: options.dry_run,
            ..Default::default()
        };
        self.step("compare the DR side with the source (reverse diff)");
        report.reverse_diff = Some(self.reverse_diff().await?);
        if options.sync_back {
            let (engine, target) = self.reverse();
            let engine = engine.keeping_destination_activation();
            self.step("copy DR-side changes back to the source");
            let copied = sync_or_plan(&engine, &target, options.dry_run).await?;
            if !copied.is_success() {
                return Err(Error::InvalidConfig(format!(
                    "failback stopped before touching any workload: copying DR changes back failed for {}",
                    failures(&copied)
                )));
            }
            report.sync_back = Some(copied);
        }
        // 1. Quiet the DR side.
        self.switch(Side::Destination, Switch::Quiet, &mut report, options.dry_run)
            .await?;
        // 2. Copy the DR side's data back, with nothing writing on it any more.
        self.copy_data(true, "reverse", &mut report, options.dry_run)
            .await?;
        // 3. Reactivate the source from its recorded originals.
        self.switch(Side::Source, Switch::Activate, &mut report, options.dry_run)
            .await?;
        // 4. Clear the mark.
        self.mark(false, &mut report, options.dry_run).await?;
        if let (Some(timeout), false) = (options.wait, options.dry_run) {
            self.wait_ready(&self.source, &self.target.source_namespace, timeout)
                .await?;
            report.waited = true;
        }
        Ok(report)
    }

    /// What changed on the DR side since the cutover: a plan of DR → source without the DR-side
    /// transformations (nothing is quieted, nothing renamed), for the same types.
    ///
    /// # Errors
    /// As [`SyncEngine::plan`].
    pub async fn reverse_diff(&self) -> Result<SyncReport> {
        let (reverse, target) = self.reverse();
        let mut report = reverse.plan(&target).await?;
        // Leave out what is not a change made on the DR side: dr-syncer's own bookkeeping annotations and
        // the activation state (replicas, suspend, DaemonSet placement) that the drill itself switches.
        let mut kinds_unchanged = Vec::new();
        report.changes.retain_mut(|change| {
            let Some(diff) = change.diff.as_mut() else {
                return true;
            };
            let before = diff.changes.len();
            diff.changes
                .retain(|f| !is_bookkeeping(&f.path, f.new.as_deref()));
            if diff.changes.is_empty() && before > 0 && change.action == crate::apply::ApplyAction::Updated {
                kinds_unchanged.push(change.object.split('/').next().unwrap_or_default().to_owned());
                return false;
            }
            true
        });
        for gk in kinds_unchanged {
            if let Some(k) = report.kinds.get_mut(&gk) {
                k.updated = k.updated.saturating_sub(1);
                k.unchanged += 1;
            }
        }
        Ok(report)
    }

    /// The engine and target of DR → source, without the DR-side transformations (nothing quieted,
    /// renamed or remapped), for the same types.
    fn reverse(&self) -> (SyncEngine, SyncTarget) {
        let mut reverse = SyncEngine::new(
            std::sync::Arc::new(KubeSource::new(self.destination.clone(), self.calls.clone())),
            std::sync::Arc::new(KubeApplier::new(self.source.clone(), self.calls.clone())),
        );
        if let Some(f) = self.engine.progress() {
            reverse = reverse.with_progress(f.clone());
        }
        let mut config = (*self.target.config).clone();
        config.scale_to_zero = false;
        config.prune = false;
        config.storage_class_mappings.clear();
        config.access_mode_mappings.clear();
        config.ingress.transform_hosts = false;
        config.rules.clear();
        let target = SyncTarget {
            source_cluster: self.target.destination_cluster.clone(),
            destination_cluster: self.target.source_cluster.clone(),
            source_namespace: self.target.destination_namespace.clone(),
            destination_namespace: self.target.source_namespace.clone(),
            synced_by: self.target.synced_by.clone(),
            types: self.target.types.clone(),
            config: std::sync::Arc::new(config),
        };
        (reverse, target)
    }

    /// Quiet or activate the workloads in scope on one side. On the source, quieting touches only what
    /// the mapping replicates; on the destination, only what this target synced.
    async fn switch(
        &self,
        side: Side,
        switch: Switch,
        report: &mut DrillReport,
        dry_run: bool,
    ) -> Result<()> {
        let (client, ns, cluster) = match side {
            Side::Source => (&self.source, &self.target.source_namespace, "source"),
            Side::Destination => (
                &self.destination,
                &self.target.destination_namespace,
                "destination",
            ),
        };
        let verb = match switch {
            Switch::Quiet => "quiet",
            Switch::Activate => "activate",
        };
        self.step_in(report, &format!("{verb} {cluster} workloads"));
        let filter = ObjectFilter::new(&self.target.config);
        for rt in self.workloads_in_scope() {
            let objects = match side {
                Side::Source => self.list(client, &rt, ns).await?,
                Side::Destination => self.managed(client, &rt, ns).await?,
            };
            for obj in objects {
                if side == Side::Source && switch == Switch::Quiet && filter.check(&rt, &obj).is_err() {
                    continue;
                }
                let (patch, action) = match switch {
                    Switch::Quiet => (activation::quiet(&rt, &obj)?, "quiet"),
                    Switch::Activate => (activation::activate(&rt, &obj)?, "activate"),
                };
                if let Some(patch) = patch {
                    self.patch(client, cluster, &rt, &obj, action, patch, report, dry_run)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn list(&self, client: &Client, rt: &ResourceType, ns: &str) -> Result<Vec<DynamicObject>> {
        list_all(client, &self.calls, rt, Some(ns), None, false)
            .await
            .map_err(|e| Error::kube(format!("list {rt} in {ns}"), e))
    }

    /// DR objects of `rt` this target synced.
    async fn managed(&self, client: &Client, rt: &ResourceType, ns: &str) -> Result<Vec<DynamicObject>> {
        Ok(self
            .list(client, rt, ns)
            .await?
            .into_iter()
            .filter(|o| annotation(o, annotations::SYNCED_BY) == Some(self.target.synced_by.as_str()))
            .collect())
    }

    #[allow(clippy::too_many_arguments)] // one activation write and where to record it
    async fn patch(
        &self,
        client: &Client,
        cluster: &str,
        rt: &ResourceType,
        obj: &DynamicObject,
        action: &str,
        patch: Value,
        report: &mut DrillReport,
        dry_run: bool,
    ) -> Result<()> {
        let key = rt.key_of(obj);
        if !dry_run {
            let api = api_for(client, rt, key.namespace.as_deref());
            let params = PatchParams {
                field_manager: Some(DRILL_FIELD_MANAGER.into()),
                ..Default::default()
            };
            let merge = Patch::Merge(&patch);
            self.calls
                .run(&format!("{action} {key}"), || {
                    api.patch(&key.name, &params, &merge)
                })
                .await
                .map_err(|e| Error::kube(format!("{action} {key} on the {cluster} cluster"), e))?;
            info!(object = %key, cluster, action, "drill");
        }
        report.changes.push(DrillChange {
            cluster: cluster.into(),
            object: key.to_string(),
            action: action.into(),
            patch,
        });
        Ok(())
    }

    /// Set or clear the destination namespace's active mark.
    async fn mark(&self, active: bool, report: &mut DrillReport, dry_run: bool) -> Result<()> {
        self.step_in(
            report,
            if active {
                "mark the DR namespace active"
            } else {
                "clear the DR namespace's active mark"
            },
        );
        let ns = self.target.destination_namespace.as_str();
        let rt = namespace_type();
        let live = get_one(&self.destination, &self.calls, &rt, None, ns, false)
            .await
            .map_err(|e| Error::kube(format!("get namespace {ns}"), e))?;
        let Some(live) = live else {
            if dry_run {
                return Ok(()); // a dry run of a first cutover: the sync would have created it
            }
            return Err(Error::InvalidConfig(format!(
                "destination namespace {ns} does not exist"
            )));
        };
        if activation::is_marked_active(&live) == active {
            return Ok(());
        }
        let value = if active { json!("true") } else { Value::Null };
        let patch = json!({"metadata": {"annotations": {annotations::ACTIVE: value}}});
        let action = if active { "mark-active" } else { "clear-active" };
        self.patch(
            &self.destination,
            "destination",
            &rt,
            &live,
            action,
            patch,
            report,
            dry_run,
        )
        .await
    }

    /// Wait until every Deployment and StatefulSet of `ns` has as many ready replicas as it wants.
    async fn wait_ready(&self, client: &Client, ns: &str, timeout: Duration) -> Result<()> {
        self.step(&format!("wait until the workloads of {ns} are ready"));
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = Vec::new();
            for rt in workload_types()
                .iter()
                .filter(|t| t.kind == "Deployment" || t.kind == "StatefulSet")
            {
                for obj in self.list(client, rt, ns).await? {
                    let want = obj
                        .data
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    let ready = obj
                        .data
                        .pointer("/status/readyReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    if ready < want {
                        waiting.push(format!("{} ({ready}/{want} ready)", rt.key_of(&obj)));
                    }
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "workloads not ready after {timeout:?}: {}",
                    waiting.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::is_bookkeeping;

    #[rstest]
    #[case("/metadata/annotations/dr-syncer.io~1synced-by", Some("\"cli/shop\""), true)]
    #[case(
        "/metadata/annotations",
        Some(r#"{"dr-syncer.io/synced-by":"cli/shop","dr-syncer.io/desired-hash":"1"}"#),
        true
    )]
    #[case(
        "/metadata/annotations",
        Some(r#"{"dr-syncer.io/synced-by":"cli/shop","team":"web"}"#),
        false
    )]
    #[case("/spec/replicas", Some("3"), true)]
    #[case("/spec/template/spec/nodeSelector/dr-syncer.io~1quiet", None, true)]
    #[case("/data/CURRENCY", Some("\"USD\""), false)]
    #[case("/metadata/labels/team", Some("\"web\""), false)]
    fn bookkeeping(#[case] path: &str, #[case] new: Option<&str>, #[case] expected: bool) {
        assert_eq!(is_bookkeeping(path, new), expected);
    }
}
