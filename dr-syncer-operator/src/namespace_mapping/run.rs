//! Running a NamespaceMapping's sync: clusters, namespace pairs, types, the engine, failure handling,
//! status, metrics and events.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use dr_syncer_core::{
    api::{
        DeletionPolicy, NamespaceMapping, NamespaceMappingStatus, RecentDeletions, RemoteCluster,
        ReplicationMode, RetryConfig, SyncPhase, SyncProgress,
    },
    apply::{Applier, ApplyOptions},
    brake::GoAhead,
    config::SyncConfig,
    engine::{AcceptIdentity, Change, Progress, SkippedObject, SyncEngine, SyncReport, SyncTarget},
    failure::FailureCategory,
    kube::{KubeApplier, KubeSource},
    plugin::Plugins,
    resource::{ObjectKey, ResourceType},
    schedule::Schedule,
    selection::{OPERATOR_DEFAULT_TYPES, resolve_resource_types},
    site,
    source::{ResourceSource, SourceScope},
};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Resource, ResourceExt,
    runtime::{controller::Action, reflector::ObjectRef},
};
use serde_json::json;
use tracing::{info, warn};

use super::{
    SYNC_NOW, TRIGGER_SYNC, due,
    status::{Outcome, RunError, after_sync},
    workers::{WatchBuffer, WatchSpec},
    write_status, write_status_with,
};
use crate::{
    clusters::ClusterHandle,
    conditions::now,
    context::Context,
    error::{ClusterError, Result},
    metrics::{DurationLabels, MappingLabels, SiteLabels},
};

/// What continuous mode's change batches left for after a full sync's PVC copies. The batches are
/// early delivery, not part of the full sync: their counts and errors go to the metrics as they run;
/// the changes of a batch with failed objects are synced again after the copies by the usual
/// incremental path, which reports what still fails in status (and retries per `retryConfig`).
#[derive(Debug, Default)]
struct Batches {
    /// Objects left out (immutable fields …), per namespace pair: reported with the full sync's.
    skipped: Vec<(String, String, Vec<SkippedObject>)>,
    /// Changes of batches with failed objects, per source namespace, oldest first.
    retry: Vec<(String, Vec<Change>)>,
}

impl Batches {
    /// Hand the skipped objects to the full sync's reports and the changes to sync again to `watch`.
    /// Returns whether changes were handed back.
    fn finish(self, reports: &mut [SyncReport], watch: &WatchBuffer) -> bool {
        for (src, dst, mut skipped) in self.skipped {
            if let Some(full) = reports
                .iter_mut()
                .find(|r| r.source_namespace == src && r.destination_namespace == dst)
            {
                full.skipped.append(&mut skipped);
            }
        }
        let handed_back = !self.retry.is_empty();
        // Newest first: of two changes of one object, the one kept is the newest (a change seen since
        // is newer still and stays).
        for (src, list) in self.retry.into_iter().rev() {
            watch.restore(false, std::iter::once((src, list)).collect());
        }
        handed_back
    }
}

/// The two clusters of a mapping.
pub(super) struct Clusters {
    pub(super) source_rc: RemoteCluster,
    pub(super) destination_rc: RemoteCluster,
    pub(super) source: Arc<ClusterHandle>,
    pub(super) destination: Arc<ClusterHandle>,
}

impl Clusters {
    /// Find both RemoteClusters and their clients.
    pub(super) async fn resolve(ctx: &Context, nm: &NamespaceMapping) -> Result<Clusters, ClusterError> {
        let ((sns, sname), (dns, dname)) = ctx.clusters.cluster_names(nm).await?;
        if (&sns, &sname) == (&dns, &dname) {
            return Err(ClusterError::ClustersUnspecified(format!(
                "source and destination are the same RemoteCluster {sns}/{sname}"
            )));
        }
        let source_rc = ctx.clusters.remote_cluster(&sns, &sname).await?;
        let destination_rc = ctx.clusters.remote_cluster(&dns, &dname).await?;
        let source = ctx.clusters.handle_for(&source_rc).await?;
        let destination = ctx.clusters.handle_for(&destination_rc).await?;
        // Before anything is read or written: each cluster is the one its RemoteCluster is pinned to.
        for (handle, rc) in [(&source, &source_rc), (&destination, &destination_rc)] {
            if let Err(e) = handle.verify_pinned(rc).await {
                if matches!(e, ClusterError::IdentityChanged { .. }) {
                    ctx.recheck(rc);
                }
                return Err(e);
            }
        }
        Ok(Clusters {
            source_rc,
            destination_rc,
            source,
            destination,
        })
    }

    /// Which source cluster the engine accepts where a DR namespace records another: the one the source
    /// RemoteCluster is pinned to, in place of those an acceptance moved the pin away from
    /// ([`ClusterHandle::verify_pinned`] has checked that the source is the pinned cluster).
    pub(super) fn accepted_source_identity(&self) -> AcceptIdentity {
        match self
            .source_rc
            .status
            .as_ref()
            .and_then(|s| s.cluster_identity.as_ref())
        {
            Some(pin) if !pin.replaces.is_empty() => AcceptIdentity::Replacing {
                current: pin.uid.clone(),
                replaces: pin.replaces.clone(),
            },
            _ => AcceptIdentity::Recorded,
        }
    }
}

/// The value of the manual trigger annotation, if set.
pub(super) fn trigger_value(nm: &NamespaceMapping) -> Option<(&'static str, String)> {
    let ann = nm.meta().annotations.as_ref()?;
    [SYNC_NOW, TRIGGER_SYNC]
        .into_iter()
        .find_map(|k| ann.get(k).map(|v| (k, v.clone())))
}

/// The value of the deletion go-ahead annotation (`dr-syncer.io/allow-deletions`), if set.
pub(super) fn go_ahead_value(nm: &NamespaceMapping) -> Option<String> {
    nm.meta()
        .annotations
        .as_ref()?
        .get(dr_syncer_core::annotations::ALLOW_DELETIONS)
        .cloned()
}

/// One sync's worth of state.
pub(super) struct Runner<'a> {
    ctx: &'a Context,
    nm: Arc<NamespaceMapping>,
    key: String,
    config: Arc<SyncConfig>,
    clusters: Clusters,
    types: Vec<ResourceType>,
    /// (source, destination) namespace pairs.
    pairs: Vec<(String, String)>,
    /// The transformer plugins the mapping names (none for a cleanup).
    plugins: Plugins,
}

impl<'a> Runner<'a> {
    /// Resolve the namespace pairs and types (discovery on the source).
    pub(super) async fn new(
        ctx: &'a Context,
        nm: Arc<NamespaceMapping>,
        config: Arc<SyncConfig>,
        clusters: Clusters,
    ) -> Result<Runner<'a>> {
        Self::build(ctx, nm, config, clusters, false).await
    }

    /// For deleting what the mapping synced: types are resolved against the destination and namespaces
    /// come from the spec and status, so a source cluster that is gone (the disaster) cannot block it.
    pub(super) async fn for_cleanup(
        ctx: &'a Context,
        nm: Arc<NamespaceMapping>,
        config: Arc<SyncConfig>,
        clusters: Clusters,
    ) -> Result<Runner<'a>> {
        Self::build(ctx, nm, config, clusters, true).await
    }

    async fn build(
        ctx: &'a Context,
        nm: Arc<NamespaceMapping>,
        config: Arc<SyncConfig>,
        clusters: Clusters,
        cleanup: bool,
    ) -> Result<Runner<'a>> {
        let key = format!("{}/{}", nm.namespace().unwrap_or_default(), nm.name_any());
        let discovered = if cleanup {
            clusters.destination.types().await?
        } else {
            clusters.source.types().await?
        };
        let requested: Vec<String> = if config.resource_types.is_empty() {
            clusters
                .source_rc
                .spec
                .default_resource_types
                .clone()
                .unwrap_or_default()
        } else {
            config.resource_types.clone()
        };
        let types = resolve_resource_types(
            &requested,
            &config.namespace_scoped_resources,
            &OPERATOR_DEFAULT_TYPES,
            &discovered,
        )
        .map_err(dr_syncer_core::Error::from)?;
        let pairs = match &nm.spec.namespace_selector {
            None => super::fixed_pair(&nm).into_iter().collect(),
            // Cleanup: the namespaces the status says were synced.
            Some(_) if cleanup => Vec::new(),
            Some(sel) => {
                let source = KubeSource::new(clusters.source.client.clone(), clusters.source.calls.clone());
                let mut names = source
                    .namespaces_matching(&sel.label_selector)
                    .await
                    .map_err(dr_syncer_core::Error::from)?;
                names.sort();
                names
                    .into_iter()
                    .map(|n| {
                        let d = format!("{n}{}", sel.destination_suffix);
                        (n, d)
                    })
                    .collect()
            }
        };
        let plugins = if cleanup {
            Plugins::none()
        } else {
            ctx.options
                .plugins
                .resolve(&config.plugins)
                .await
                .map_err(dr_syncer_core::Error::from)?
        };
        // A protected namespace is never a source or a destination: the mapping is refused as a whole
        // (a selector that matches one is to be fixed, e.g. with `kubernetes.io/metadata.name notin`).
        if !cleanup {
            for (src, dst) in &pairs {
                ctx.clusters
                    .boundaries()
                    .check_pair(src, dst)
                    .map_err(ClusterError::Boundary)?;
            }
        }
        Ok(Runner {
            ctx,
            nm,
            key,
            config,
            clusters,
            types,
            pairs,
            plugins,
        })
    }

    fn target(&self, src: &str, dst: &str) -> SyncTarget {
        SyncTarget {
            source_cluster: self.clusters.source_rc.name_any(),
            destination_cluster: self.clusters.destination_rc.name_any(),
            source_namespace: src.to_owned(),
            destination_namespace: dst.to_owned(),
            synced_by: self.key.clone(),
            types: self.types.clone(),
            config: self.config.clone(),
        }
    }

    fn source(&self) -> KubeSource {
        KubeSource::new(
            self.clusters.source.client.clone(),
            self.clusters.source.calls.clone(),
        )
    }

    fn new_applier(&self) -> KubeApplier {
        KubeApplier::new(
            self.clusters.destination.client.clone(),
            self.clusters.destination.calls.clone(),
        )
    }

    /// Take over the deletion brake's window from status (deletions an earlier process made), once per
    /// DR namespace and process.
    fn import_deletions(&self, status: &NamespaceMappingStatus) {
        for (_, dst) in &self.pairs {
            let recorded: Vec<(std::time::SystemTime, usize)> = status
                .recent_deletions
                .iter()
                .filter(|r| &r.namespace == dst)
                .map(|r| (r.at.0.into(), usize::try_from(r.count).unwrap_or(usize::MAX)))
                .collect();
            self.ctx
                .deletions
                .import(&dr_syncer_core::brake::ledger_key(&self.key, dst), &recorded);
        }
    }

    /// The deletions within the brake's window, for status.
    fn export_deletions(&self) -> Vec<RecentDeletions> {
        let window = self.config.deletion_brake.window;
        let mut out = Vec::new();
        for (_, dst) in &self.pairs {
            let key = dr_syncer_core::brake::ledger_key(&self.key, dst);
            for (at, count) in self.ctx.deletions.export(&key, window) {
                let Ok(at) = Timestamp::try_from(at) else {
                    continue;
                };
                out.push(RecentDeletions {
                    namespace: dst.clone(),
                    at: Time(at),
                    count: count as u64,
                });
            }
        }
        out
    }

    /// The engine for destination namespace `dst` (continuous mode keeps its appliers in `watch`).
    fn engine(
        &self,
        source: Arc<dyn ResourceSource>,
        watch: Option<&WatchBuffer>,
        dst: &str,
        fail_fast: &[FailureCategory],
    ) -> SyncEngine {
        let applier: Arc<dyn Applier> = match watch {
            Some(w) => w.applier(dst, || self.new_applier()),
            None => Arc::new(self.new_applier()),
        };
        let go_ahead = go_ahead_value(&self.nm)
            .and_then(|v| GoAhead::parse_annotation(&v).ok())
            .unwrap_or_default();
        SyncEngine::new(source, applier)
            .with_boundaries(self.ctx.clusters.boundaries().clone())
            .accepting_source_identity(self.clusters.accepted_source_identity())
            .with_deletion_ledger(self.ctx.deletions.clone())
            .with_deletion_go_ahead(go_ahead)
            .with_concurrency(self.ctx.options.apply_concurrency)
            .with_fail_fast(fail_fast.to_vec())
            .with_storage_class_check(true)
            .with_chain(self.ctx.options.extensions.chain())
            .with_plugins(self.plugins.clone())
    }

    /// Continuous mode, while a full sync copies PVC data: sync the source changes the watches see, in
    /// batches (collected for the debounce window), until `done` turns true (a batch in progress then
    /// finishes first). A batch that cannot run puts its changes back and is tried again after a
    /// backoff (1 s doubling to 1 min). Status is not written here (see [`Batches`]).
    async fn batches_until(
        &self,
        watch: &WatchBuffer,
        mut done: tokio::sync::watch::Receiver<bool>,
        fail_fast: &[FailureCategory],
    ) -> Batches {
        const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
        let mut out = Batches::default();
        let source: Arc<dyn ResourceSource> = Arc::new(self.source());
        let metrics = &self.ctx.metrics;
        let mut backoff = None::<Duration>;
        loop {
            if backoff.is_none() {
                tokio::select! {
                    biased;
                    _ = done.wait_for(|d| *d) => return out,
                    () = watch.changed() => {}
                }
            }
            tokio::select! {
                biased;
                _ = done.wait_for(|d| *d) => return out,
                () = tokio::time::sleep(backoff.unwrap_or(self.ctx.options.debounce)) => {}
            }
            let mut changes = watch.take_changes();
            let mut failed = BTreeMap::new();
            for (src, dst) in &self.pairs {
                let Some(list) = changes.remove(src).filter(|l| !l.is_empty()) else {
                    continue;
                };
                let engine = self.engine(source.clone(), Some(watch), dst, fail_fast);
                match engine.sync_changes(&self.target(src, dst), list.clone()).await {
                    Ok(mut report) => {
                        metrics.record_sync(&report, None);
                        if !report.skipped.is_empty() {
                            out.skipped
                                .push((src.clone(), dst.clone(), std::mem::take(&mut report.skipped)));
                        }
                        if !report.is_success() {
                            out.retry.push((src.clone(), list));
                        }
                    }
                    Err(e) => {
                        warn!(source = %src, destination = %dst, error = %e, "change batch could not run");
                        metrics.record_run_failure(src, e.kind());
                        failed.insert(src.clone(), list);
                    }
                }
            }
            backoff = if failed.is_empty() {
                None
            } else {
                watch.restore(false, failed);
                Some(backoff.map_or(BACKOFF.0, |b| (b * 2).min(BACKOFF.1)))
            };
        }
    }

    /// Make sure the mapping's watch set runs (continuous mode); returns its buffer.
    pub(super) fn ensure_watches(&mut self) -> Result<Arc<WatchBuffer>> {
        let fingerprint = format!(
            "{}|{}|{}|{:?}|{:?}",
            self.nm.meta().generation.unwrap_or_default(),
            self.clusters.source.name,
            Arc::as_ptr(&self.clusters.source) as usize,
            self.pairs,
            self.types
                .iter()
                .map(ResourceType::resource_group)
                .collect::<Vec<_>>(),
        );
        let spec = WatchSpec {
            mapping: ObjectRef::from_obj(self.nm.as_ref()),
            source: self.source(),
            client: self.clusters.source.client.clone(),
            namespaces: self.pairs.iter().map(|(s, _)| s.clone()).collect(),
            types: self.types.clone(),
            namespace_selector: self
                .nm
                .spec
                .namespace_selector
                .as_ref()
                .map(|s| s.label_selector.clone()),
            window: self.ctx.options.debounce,
        };
        let (buffer, started) =
            self.ctx
                .workers
                .ensure(&self.key, &fingerprint, spec, self.ctx.trigger.clone());
        if started {
            info!(mapping = %self.key, namespaces = self.pairs.len(), types = self.types.len(), "watching the source");
        }
        Ok(buffer)
    }

    /// Run one sync and write its status; returns when to reconcile next.
    pub(super) async fn sync(
        &mut self,
        reason: due::Reason,
        watch: Option<&WatchBuffer>,
        schedule: Option<&Schedule>,
        background: Duration,
    ) -> Result<Action> {
        let ctx = self.ctx;
        let nm = self.nm.clone();
        let generation = nm.meta().generation;
        let old = nm.status.clone().unwrap_or_default();
        let trigger = trigger_value(&nm);
        let go_ahead = go_ahead_value(&nm);
        let wiped_ok = nm
            .annotations()
            .get(dr_syncer_core::annotations::ALLOW_WIPED_SOURCE)
            .cloned();
        let started = Instant::now();
        self.import_deletions(&old);
        let (relisted, mut changes) = watch.map(WatchBuffer::take).unwrap_or_default();
        // A full sync compares everything: waiting changes are part of it.
        let full = reason.is_full() || relisted;
        let reason = if full && reason == due::Reason::Changes {
            due::Reason::Relisted
        } else {
            reason
        };

        let mut running = old.clone();
        if full {
            running.phase = Some(SyncPhase::Running);
            running.sync_progress = Some(SyncProgress {
                percent_complete: 0,
                estimated_time_remaining: None,
                current_operation: Some(format!("sync started: {}", reason.describe())),
                resources_remaining: None,
            });
            write_status(ctx, &nm, Some(&old), &running).await?;
            ctx.event(
                nm.as_ref(),
                false,
                "SyncStarted",
                "Sync",
                format!("Sync started ({})", reason.describe()),
            )
            .await;
        }

        // Progress: counted by the engine, written to status every few seconds while a full sync runs.
        let done = Arc::new(AtomicUsize::new(0));
        let total = Arc::new(AtomicUsize::new(0));
        // (Written with the same server-side apply as every other status write, so that the final write
        // removes it again; stopped and awaited before that write, so it can never land after it.)
        let (stop_progress, mut progress_stopped) = tokio::sync::watch::channel(false);
        let progress_task = full.then(|| {
            let (done, total, nm, client) = (done.clone(), total.clone(), nm.clone(), ctx.client.clone());
            let interval = ctx.options.progress_interval;
            let mut status = running.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = progress_stopped.changed() => return,
                        () = tokio::time::sleep(interval) => {}
                    }
                    let (d, t) = (done.load(Ordering::Relaxed), total.load(Ordering::Relaxed));
                    let p = Some(SyncProgress {
                        percent_complete: (d * 100).checked_div(t).unwrap_or(0).min(100) as i32,
                        estimated_time_remaining: None,
                        current_operation: Some("applying objects".into()),
                        resources_remaining: Some(t.saturating_sub(d) as i32),
                    });
                    if p == status.sync_progress {
                        continue;
                    }
                    let previous = status.clone();
                    status.sync_progress = p;
                    if let Err(e) = write_status_with(&client, &nm, Some(&previous), &status).await {
                        warn!(error = %e, "could not write sync progress");
                    }
                }
            })
        });
        let progress: dr_syncer_core::engine::ProgressFn = {
            let (done, total) = (done.clone(), total.clone());
            Arc::new(move |p: &Progress| match p {
                Progress::Planned { total: n } => {
                    total.fetch_add(*n, Ordering::Relaxed);
                }
                Progress::Applied { .. } => {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            })
        };

        let handling = nm.spec.failure_handling.clone().unwrap_or_default();
        let fail_fast: Vec<FailureCategory> = [
            FailureCategory::StorageClassNotFound,
            FailureCategory::ResourceNotFound,
            FailureCategory::ValidationFailure,
            FailureCategory::NetworkError,
            FailureCategory::Other,
        ]
        .into_iter()
        .filter(|c| c.mode(&handling) == dr_syncer_core::api::FailureMode::FailFast)
        .collect();

        let mut reports = Vec::new();
        let mut run_errors = Vec::new();
        let source: Arc<dyn ResourceSource> = Arc::new(self.source());
        for (src, dst) in self.pairs.clone() {
            let target = self.target(&src, &dst);
            let engine = self
                .engine(source.clone(), watch, &dst, &fail_fast)
                .with_progress(progress.clone());
            let mut taken = None;
            let deadline = ctx.options.sync_timeout;
            let bounded =
                |r: Result<Result<SyncReport, dr_syncer_core::Error>, tokio::time::error::Elapsed>| {
                    r.unwrap_or_else(|_| {
                        Err(dr_syncer_core::Error::Timeout(format!(
                            "the sync of {src} -> {dst} timed out after {} (--sync-timeout)",
                            due::format_duration(deadline)
                        )))
                    })
                };
            // (Boxed: the engine's futures are large, and this one lives inside the reconcile's.)
            let result = if full {
                bounded(tokio::time::timeout(deadline, Box::pin(engine.sync(&target))).await)
            } else {
                let list = changes.remove(&src).unwrap_or_default();
                if list.is_empty() {
                    continue;
                }
                taken = Some(list.clone());
                bounded(tokio::time::timeout(deadline, Box::pin(engine.sync_changes(&target, list))).await)
            };
            match result {
                Ok(r) => reports.push(r),
                Err(e) => {
                    // The batch could not run: its changes wait for the next one.
                    if let (Some(w), Some(list)) = (watch, taken) {
                        w.restore(false, std::iter::once((src.clone(), list)).collect());
                    }
                    warn!(source = %src, destination = %dst, error = %e, "sync could not run");
                    run_errors.push(RunError {
                        source_namespace: src.clone(),
                        destination_namespace: dst.clone(),
                        kind: e.kind().to_owned(),
                        category: e.category(),
                        message: e.to_string(),
                    });
                }
            }
        }
        let _ = stop_progress.send(true);
        if let Some(t) = progress_task {
            let _ = t.await;
        }

        // The site state: production running next to an active DR side (both sites active).
        let both_active = self.both_active(&reports).await;

        // PVC data, after the objects of a full sync: never into an active DR namespace, never from a
        // production namespace that is being deleted.
        let data_pairs: Vec<(String, String)> = self
            .pairs
            .iter()
            .filter(|(src, dst)| {
                !reports.iter().any(|r| {
                    &r.source_namespace == src
                        && &r.destination_namespace == dst
                        && (r.destination_active
                            || r.held
                                .as_ref()
                                .is_some_and(|h| h.reason == site::Reason::SourceGone.kind()))
                })
            })
            .cloned()
            .collect();
        let mut data_volumes = None;
        let mut handed_back = false;
        if full && nm.spec.pvc_config.as_ref().is_some_and(|p| p.sync_data) && !data_pairs.is_empty() {
            let (tx, mut rx) =
                tokio::sync::watch::channel(Vec::<dr_syncer_core::api::VolumeSyncStatus>::new());
            let writer = {
                let (nm, client) = (nm.clone(), ctx.client.clone());
                let interval = ctx.options.progress_interval;
                let mut status = running.clone();
                tokio::spawn(async move {
                    while rx.changed().await.is_ok() {
                        let volumes = rx.borrow_and_update().clone();
                        let done = volumes
                            .iter()
                            .filter(|v| v.phase != "Pending" && v.phase != "Mounting" && v.phase != "Syncing")
                            .count();
                        let previous = status.clone();
                        status.data_sync = Some(volumes.clone());
                        status.sync_progress = Some(SyncProgress {
                            percent_complete: (done * 100).checked_div(volumes.len()).unwrap_or(0).min(100)
                                as i32,
                            estimated_time_remaining: None,
                            current_operation: Some(format!(
                                "copying PVC data: {done} of {} volumes done",
                                volumes.len()
                            )),
                            resources_remaining: Some(volumes.len().saturating_sub(done) as i32),
                        });
                        if status != previous
                            && let Err(e) = write_status_with(&client, &nm, Some(&previous), &status).await
                        {
                            warn!(error = %e, "could not write data sync progress");
                        }
                        tokio::time::sleep(interval).await;
                    }
                })
            };
            let on_update = move |v: Vec<dr_syncer_core::api::VolumeSyncStatus>| {
                let _ = tx.send(v);
            };
            let synced_by = self.key.clone();
            let copy = super::data::sync_data(ctx, &nm, &self.clusters, &data_pairs, &synced_by, &on_update);
            // Continuous mode: source changes keep flowing while the data is copied (a copy can take
            // hours), in batches of their own (see `Batches`).
            let outcome = match watch {
                Some(w) => {
                    let (copied_tx, copied_rx) = tokio::sync::watch::channel(false);
                    let copy = async move {
                        let outcome = copy.await;
                        let _ = copied_tx.send(true);
                        outcome
                    };
                    let (outcome, batches) = tokio::join!(copy, self.batches_until(w, copied_rx, &fail_fast));
                    handed_back = batches.finish(&mut reports, w);
                    outcome
                }
                None => copy.await,
            };
            drop(on_update);
            let _ = writer.await;
            run_errors.extend(outcome.errors);
            data_volumes = Some(outcome.volumes);
        }

        // Namespaces that left the selector.
        if let Some(sel) = &nm.spec.namespace_selector {
            for gone in old
                .namespaces
                .iter()
                .flatten()
                .filter(|n| !self.pairs.iter().any(|(s, _)| *s == n.source))
            {
                if sel.cleanup_on_unlabel {
                    // A namespace deleted on production (or one that cannot be read) is not "unlabelled":
                    // that is an outage, not a request; an active DR namespace is never cleaned up.
                    let state = self.site_of(&gone.source, &gone.destination).await;
                    let cleaned =
                        match site::decide(site::Actor::Operator, site::Step::CleanupOnUnlabel, &state) {
                            site::Decision::Skip(reason) | site::Decision::Refuse(reason) => {
                                Ok(Cleanup::Held(reason))
                            }
                            site::Decision::Proceed => self.delete_synced(&gone.destination).await,
                        };
                    match cleaned {
                        Ok(Cleanup::Deleted(n)) => {
                            ctx.event_about(
                                nm.as_ref(),
                                false,
                                "NamespaceCleanedUp",
                                "Cleanup",
                                format!(
                                    "Namespace {} no longer matches the selector: deleted {n} object(s) synced into {} (cleanupOnUnlabel)",
                                    gone.source, gone.destination
                                ),
                                namespace_ref(&gone.destination),
                            )
                            .await;
                        }
                        Ok(Cleanup::Held(reason)) => {
                            ctx.event_about(
                                nm.as_ref(),
                                true,
                                "NamespaceCleanupSkipped",
                                "Cleanup",
                                format!(
                                    "Namespace {} no longer matches the selector, but what was synced into {} is kept: {reason}",
                                    gone.source, gone.destination
                                ),
                                namespace_ref(&gone.destination),
                            )
                            .await;
                        }
                        Err(e) => run_errors.push(RunError {
                            source_namespace: gone.source.clone(),
                            destination_namespace: gone.destination.clone(),
                            kind: e.kind().to_owned(),
                            category: FailureCategory::Other,
                            message: format!("cleanup of {}: {e}", gone.destination),
                        }),
                    }
                } else {
                    info!(namespace = %gone.source, "no longer selected; DR copy kept (cleanupOnUnlabel is false)");
                }
            }
        }

        let finished = now();
        let mut outcome = Outcome {
            reason,
            reports,
            run_errors,
            finished: finished.clone(),
            duration: started.elapsed(),
            retry: None,
            halted: false,
            clusters: (
                self.clusters.source_rc.name_any(),
                self.clusters.destination_rc.name_any(),
            ),
            selected: nm.spec.namespace_selector.as_ref().map(|_| self.pairs.clone()),
            last_watch_event: watch.and_then(WatchBuffer::last_event).map(Time),
            both_active,
            recent_deletions: self.export_deletions(),
        };
        if !outcome.is_success() {
            let modes: Vec<dr_syncer_core::api::FailureMode> =
                outcome.categories().keys().map(|c| c.mode(&handling)).collect();
            let retry_mode = modes
                .iter()
                .copied()
                .find(|m| *m == dr_syncer_core::api::FailureMode::RetryOnly)
                .or_else(|| {
                    modes
                        .iter()
                        .copied()
                        .find(|m| *m == dr_syncer_core::api::FailureMode::RetryAndWait)
                });
            let retry_config = nm.spec.retry_config.clone().unwrap_or_else(default_retry);
            let previous = old.retry_status.as_ref().filter(|_| reason == due::Reason::Retry);
            outcome.retry =
                retry_mode.and_then(|m| due::next_retry(&retry_config, previous, m, finished.0.as_second()));
            outcome.halted =
                outcome.retry.is_none() && retry_mode == Some(dr_syncer_core::api::FailureMode::RetryOnly);
        } else if !full {
            // A successful incremental batch does not cancel a retry scheduled for a failed full sync.
            outcome.retry = old.retry_status.clone();
        }
        let mut status = after_sync(&old, &outcome, generation);
        if let Some(v) = data_volumes {
            status.data_sync = Some(v);
        }
        // When the next sync runs.
        status.next_sync_time = match nm.spec.replication_mode {
            ReplicationMode::Scheduled if !outcome.halted => schedule
                .and_then(|s| s.next_after_unix(finished.0.as_second()))
                .map(|n| {
                    let interval = s_interval(schedule);
                    n + due::jitter(&nm.uid().unwrap_or_default(), interval).as_secs() as i64
                }),
            ReplicationMode::Continuous if !outcome.halted => {
                Some(finished.0.as_second() + background.as_secs() as i64)
            }
            _ => None,
        }
        .and_then(|s| Timestamp::from_second(s).ok())
        .map(Time);
        // The trigger goes before the final status, so that a status saying the sync is done never
        // shows next to the trigger that asked for it. (Should the process stop in between, the phase is
        // still Running and the next start syncs again.)
        if let Some((annotation, value)) = trigger {
            ctx.remove_annotation(nm.as_ref(), annotation, &value).await?;
        }
        // A deletion go-ahead is for the deletions held when it was given: one full sync uses it; so is
        // a go-ahead to mirror wiped volumes.
        if let Some(value) = go_ahead.filter(|_| full) {
            ctx.remove_annotation(nm.as_ref(), dr_syncer_core::annotations::ALLOW_DELETIONS, &value)
                .await?;
        }
        if let Some(value) = wiped_ok.filter(|_| full) {
            ctx.remove_annotation(
                nm.as_ref(),
                dr_syncer_core::annotations::ALLOW_WIPED_SOURCE,
                &value,
            )
            .await?;
        }
        let fresh_again = super::set_stale(
            ctx,
            &nm,
            &mut status,
            schedule,
            watch,
            background,
            finished.0.as_second(),
        );
        let deferred = !full && only_times_moved(&running, &status);
        if deferred {
            // Written by a later reconcile (at most TIMES_REFRESH seconds later), unless a sync writes first.
            if let Some(w) = watch {
                w.defer_status(status.clone());
            }
        } else {
            if let Some(w) = watch {
                w.take_deferred_status();
            }
            write_status(ctx, &nm, Some(&running), &status).await?;
        }
        self.record_metrics(&outcome, full);
        self.emit_events(&outcome, full, &old).await;

        let next_retry = outcome
            .retry
            .as_ref()
            .and_then(|r| r.next_retry_time.as_ref())
            .map(|t| Duration::from_secs((t.0.as_second() - finished.0.as_second()).max(1) as u64));
        let next_sync = status
            .next_sync_time
            .as_ref()
            .map(|t| Duration::from_secs((t.0.as_second() - finished.0.as_second()).max(1) as u64));
        let flush = deferred.then(|| Duration::from_secs(TIMES_REFRESH as u64));
        // Changes of batches that failed during the copies: synced next (as an incremental batch).
        let handed_back = handed_back.then_some(ctx.options.debounce);
        Ok(
            match [next_retry, next_sync, flush, handed_back, fresh_again]
                .into_iter()
                .flatten()
                .min()
            {
                Some(d) => Action::requeue(d),
                None => Action::await_change(),
            },
        )
    }

    fn record_metrics(&self, outcome: &Outcome, full: bool) {
        let m = &self.ctx.metrics;
        for r in &outcome.reports {
            m.record_sync(r, None);
            let held = r.deletion_hold.as_ref().map_or(0, |h| h.pending);
            if full || held > 0 {
                m.deletions_held
                    .get_or_create(&SiteLabels {
                        mapping: self.key.clone(),
                        namespace: r.destination_namespace.clone(),
                    })
                    .set(i64::try_from(held).unwrap_or(i64::MAX));
            }
        }
        for e in &outcome.run_errors {
            m.record_run_failure(&e.source_namespace, &e.kind);
        }
        m.sync_duration
            .get_or_create(&DurationLabels {
                mapping: self.key.clone(),
                mode: if full { "full" } else { "incremental" }.into(),
            })
            .observe(outcome.duration.as_secs_f64());
        if outcome.is_success() {
            let labels = MappingLabels {
                mapping: self.key.clone(),
            };
            m.last_success
                .get_or_create(&labels)
                .set(outcome.finished.0.as_second() as f64);
            // Just synced: no lag (the periodic update takes over from here).
            m.replication_lag.get_or_create(&labels).set(0.0);
        }
        for h in [&self.clusters.source, &self.clusters.destination] {
            let stats = h.calls.stats();
            let mut exported = h.exported.lock().unwrap_or_else(|p| p.into_inner());
            let labels = crate::metrics::ClusterLabels {
                cluster: h.name.clone(),
            };
            m.api_retries
                .get_or_create(&labels)
                .inc_by(stats.retries.saturating_sub(exported.0));
            m.api_throttled
                .get_or_create(&labels)
                .inc_by(stats.throttled.saturating_sub(exported.1));
            *exported = (stats.retries, stats.throttled);
        }
    }

    async fn emit_events(
        &self,
        outcome: &Outcome,
        full: bool,
        before: &dr_syncer_core::api::NamespaceMappingStatus,
    ) {
        let ctx = self.ctx;
        let nm = self.nm.as_ref();
        self.emit_site_events(outcome, before).await;
        let totals = outcome.reports.iter().fold((0u32, 0u32, 0u32, 0u32), |acc, r| {
            let t = r.totals();
            (
                acc.0 + t.created + t.recreated,
                acc.1 + t.updated,
                acc.2 + t.deleted,
                acc.3 + t.unchanged,
            )
        });
        for skip in outcome
            .reports
            .iter()
            .flat_map(|r| &r.skipped)
            .filter(|s| s.reason.contains("immutable"))
        {
            ctx.event(
                nm,
                true,
                "ImmutableChangeSkipped",
                "Sync",
                format!("{}: {}", skip.object, skip.reason),
            )
            .await;
        }
        // DR objects dr-syncer did not create, left alone: one Warning Event naming the first few.
        let unmanaged: Vec<&str> = outcome
            .reports
            .iter()
            .flat_map(|r| &r.skipped)
            .filter(|s| s.reason == dr_syncer_core::apply::NOT_MANAGED)
            .map(|s| s.object.as_str())
            .collect();
        if !unmanaged.is_empty() {
            let more = unmanaged.len().saturating_sub(10);
            ctx.event(
                nm,
                true,
                "ObjectNotManaged",
                "Sync",
                format!(
                    "{} DR object(s) exist and were not created by dr-syncer, left alone (adoptExisting: true \
                     takes them over): {}{}",
                    unmanaged.len(),
                    unmanaged[..unmanaged.len().min(10)].join(", "),
                    if more > 0 { format!(" and {more} more") } else { String::new() }
                ),
            )
            .await;
        }
        if outcome.is_success() {
            // Continuous mode's batches are too frequent for an Event each (metrics count them).
            if full {
                ctx.event(
                    nm,
                    false,
                    "SyncCompleted",
                    "Sync",
                    format!(
                        "Sync completed in {}: {} created, {} updated, {} deleted, {} unchanged",
                        due::format_duration(outcome.duration),
                        totals.0,
                        totals.1,
                        totals.2,
                        totals.3
                    ),
                )
                .await;
            }
        } else {
            let problems: Vec<String> = outcome
                .run_errors
                .iter()
                .map(|e| format!("{}: {}", e.source_namespace, e.message))
                .chain(
                    outcome
                        .reports
                        .iter()
                        .flat_map(|r| &r.failures)
                        .map(|f| f.message.clone()),
                )
                .take(5)
                .collect();
            ctx.event(
                nm,
                true,
                "SyncFailed",
                "Sync",
                format!("Sync failed: {}", problems.join("; ")),
            )
            .await;
        }
    }

    /// Events of the site state, each once when it starts (not on every sync while it holds):
    /// `DestinationActive`, `BothSitesActive`, and a DR workload scaled up by hand in a namespace that is
    /// not marked active (quieted again: the Event says how to promote instead).
    async fn emit_site_events(
        &self,
        outcome: &Outcome,
        before: &dr_syncer_core::api::NamespaceMappingStatus,
    ) {
        let ctx = self.ctx;
        let nm = self.nm.as_ref();
        let had = |t: &str| {
            before
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == t && c.status == "True")
                .map(|c| c.message.clone())
        };
        let active: Vec<&str> = outcome
            .reports
            .iter()
            .filter(|r| r.destination_active)
            .map(|r| r.destination_namespace.as_str())
            .collect();
        if !active.is_empty() {
            let message = super::status::destination_active_message(&active);
            if had("DestinationActive").as_deref() != Some(message.as_str()) {
                ctx.event(nm, false, "DestinationActive", "Sync", message).await;
            }
        }
        // Held deletions: one Warning Event when the hold starts (its counts move while it lasts).
        if let Some((_, message)) = super::status::deletions_held(&outcome.reports)
            && had("DeletionHeld").is_none()
        {
            let message = match go_ahead_value(nm).map(|v| GoAhead::parse_annotation(&v)) {
                Some(Err(e)) => format!("{message}. {e}"),
                _ => message,
            };
            ctx.event(nm, true, "DeletionHeld", "Sync", message).await;
        }
        if !outcome.both_active.is_empty() {
            let message = super::status::both_active_message(&outcome.both_active);
            if had("BothSitesActive").as_deref() != Some(message.as_str()) {
                ctx.event(nm, true, "BothSitesActive", "Sync", message).await;
            }
        }
        for r in &outcome.reports {
            for change in &r.changes {
                let quieted = change.diff.iter().flat_map(|d| &d.changes).any(|f| {
                    f.path == "/spec/replicas"
                        && f.new.as_deref() == Some("0")
                        && f.old
                            .as_deref()
                            .and_then(|v| v.parse::<i64>().ok())
                            .is_some_and(|n| n > 0)
                });
                if quieted {
                    ctx.event_about(
                        nm,
                        true,
                        "DRWorkloadQuieted",
                        "Sync",
                        format!(
                            "{} was scaled up on the DR side, but namespace {} is not marked active: quieted again. \
                             To make the DR side live, run `dr-syncer-cli promote --dest-namespace {}` (or \
                             `kubectl annotate namespace {} dr-syncer.io/active=true`)",
                            change.object, r.destination_namespace, r.destination_namespace, r.destination_namespace
                        ),
                        object_ref(&change.object),
                    )
                    .await;
                }
            }
        }
    }

    /// For the pairs whose DR namespace is active: production's state (best effort: an unreachable
    /// production is the usual case after a promote), and the pairs where it runs unfenced.
    async fn both_active(&self, reports: &[SyncReport]) -> Vec<String> {
        let workloads = dr_syncer_core::kube::site::workload_types_in(&self.types);
        let mut out = Vec::new();
        for r in reports.iter().filter(|r| r.destination_active) {
            let source = dr_syncer_core::kube::site::read_source(
                &self.clusters.source.client,
                &self.clusters.source.calls,
                &r.source_namespace,
                &workloads,
            )
            .await
            .unwrap_or_default();
            let state = site::SiteState {
                source,
                destination: site::DestinationState::Active {
                    since: None,
                    by: site::ActivatedBy::Manual,
                },
            };
            let active = state.both_active();
            self.ctx
                .metrics
                .both_sites_active
                .get_or_create(&SiteLabels {
                    mapping: self.key.clone(),
                    namespace: r.destination_namespace.clone(),
                })
                .set(i64::from(active));
            if active && let site::SourceState::Live { running, .. } = &state.source {
                out.push(format!(
                    "{} (running on production in {}: {})",
                    r.destination_namespace,
                    r.source_namespace,
                    running.join(", ")
                ));
            }
        }
        for r in reports.iter().filter(|r| !r.destination_active) {
            self.ctx
                .metrics
                .both_sites_active
                .get_or_create(&SiteLabels {
                    mapping: self.key.clone(),
                    namespace: r.destination_namespace.clone(),
                })
                .set(0);
        }
        out
    }

    /// The site state of a pair (namespaces only, no workloads); a side that cannot be read is unknown.
    async fn site_of(&self, src: &str, dst: &str) -> site::SiteState {
        let (source, destination) = tokio::join!(
            dr_syncer_core::kube::site::read_source(
                &self.clusters.source.client,
                &self.clusters.source.calls,
                src,
                &[],
            ),
            dr_syncer_core::kube::site::read_destination(
                &self.clusters.destination.client,
                &self.clusters.destination.calls,
                dst,
            )
        );
        site::SiteState {
            source: source.unwrap_or_default(),
            destination: destination.map(|(d, _)| d).unwrap_or_default(),
        }
    }

    /// Delete what this mapping synced into DR namespace `dst` (objects carrying its
    /// `dr-syncer.io/synced-by`), then the namespace itself if dr-syncer created it
    /// (`dr-syncer.io/created-by`) and it holds nothing dr-syncer did not put there. Never in an active
    /// DR namespace: the site state holds it ([`Cleanup::Held`]).
    pub(super) async fn delete_synced(&self, dst: &str) -> Result<Cleanup> {
        // Never in a protected namespace, whatever the status says was synced there.
        self.ctx
            .clusters
            .boundaries()
            .check_namespace("destination", dst)
            .map_err(ClusterError::Boundary)?;
        let (destination, live) = dr_syncer_core::kube::site::read_destination(
            &self.clusters.destination.client,
            &self.clusters.destination.calls,
            dst,
        )
        .await?;
        let state = site::SiteState {
            source: site::SourceState::Unknown,
            destination,
        };
        if let site::Decision::Skip(reason) | site::Decision::Refuse(reason) =
            site::decide(site::Actor::Operator, site::Step::DeleteSynced, &state)
        {
            return Ok(Cleanup::Held(reason));
        }
        if live.is_none() {
            return Ok(Cleanup::Deleted(0));
        }
        let applier = self.new_applier();
        let options = ApplyOptions::default();
        let mut deleted = 0;
        for rt in &self.types {
            let managed = applier
                .list_managed(rt, Some(dst), &self.key)
                .await
                .map_err(dr_syncer_core::Error::from)?;
            for obj in managed {
                let key = rt.key_of(&obj);
                if applier
                    .delete(rt, &key, options.clone())
                    .await
                    .map_err(dr_syncer_core::Error::from)?
                {
                    deleted += 1;
                }
            }
        }
        let created_by_us = live.as_ref().is_some_and(|ns| {
            dr_syncer_core::transform::annotation(ns, dr_syncer_core::annotations::CREATED_BY).is_some()
        });
        if !created_by_us {
            return Ok(Cleanup::Deleted(deleted));
        }
        // Only when nothing is left in it that dr-syncer did not put there (what the cluster itself puts
        // in every namespace, and dependents of dr-syncer's objects, aside).
        let foreign = self.foreign_objects(dst).await?;
        if !foreign.is_empty() {
            info!(namespace = dst, kept_for = %foreign.join(", "), "namespace kept: it holds objects dr-syncer did not put there");
            return Ok(Cleanup::Deleted(deleted));
        }
        let ns_type = dr_syncer_core::engine::namespace_type();
        let ns_key = ObjectKey {
            group_kind: "Namespace".into(),
            namespace: None,
            name: dst.to_owned(),
        };
        if applier
            .delete(&ns_type, &ns_key, options.clone())
            .await
            .map_err(dr_syncer_core::Error::from)?
        {
            deleted += 1;
        }
        Ok(Cleanup::Deleted(deleted))
    }

    /// Objects in DR namespace `dst`, of every type the DR cluster serves, that dr-syncer did not put
    /// there: not synced by any dr-syncer writer, not owned by another object (dependents go with their
    /// owners), not dr-syncer's data-path objects, and not what the cluster creates in every namespace.
    async fn foreign_objects(&self, dst: &str) -> Result<Vec<String>> {
        let types = self.clusters.destination.types().await?;
        let namespaced: Vec<ResourceType> = types
            .iter()
            .filter(|t| {
                t.namespaced
                    && t.verbs.iter().any(|v| v == "list")
                    && !(t.kind == "Event" && (t.group.is_empty() || t.group == "events.k8s.io"))
            })
            .cloned()
            .collect();
        let objects = KubeSource::new(
            self.clusters.destination.client.clone(),
            self.clusters.destination.calls.clone(),
        )
        .list(&SourceScope {
            namespace: Some(dst.to_owned()),
            types: namespaced,
        })
        .await
        .map_err(dr_syncer_core::Error::from)?;
        let services: std::collections::BTreeSet<String> = objects
            .iter()
            .filter(|o| o.resource.is("", "Service"))
            .filter_map(|o| o.object.metadata.name.clone())
            .collect();
        Ok(objects
            .iter()
            .filter(|o| {
                let meta = &o.object.metadata;
                let name = meta.name.as_deref().unwrap_or_default();
                let ours = meta
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(dr_syncer_core::annotations::SYNCED_BY))
                    || meta.labels.as_ref().is_some_and(|l| {
                        l.get("app.kubernetes.io/managed-by").map(String::as_str)
                            == Some(dr_syncer_core::pvc::MANAGED_BY)
                    });
                let dependent = meta.owner_references.as_ref().is_some_and(|r| !r.is_empty());
                let cluster_made = matches!(
                    (o.resource.kind.as_str(), name),
                    ("ConfigMap", "kube-root-ca.crt") | ("ServiceAccount", "default")
                ) || (o.resource.kind == "Endpoints" && services.contains(name));
                !(ours || dependent || cluster_made)
            })
            .map(|o| {
                format!(
                    "{}/{}",
                    o.resource.kind,
                    o.object.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect())
    }

    /// `deletionPolicy: DeleteSynced` on deletion: every destination namespace the mapping synced; the
    /// active ones are kept and named.
    pub(super) async fn delete_synced_everywhere(&self) -> Result<(usize, Vec<String>)> {
        debug_assert_eq!(self.nm.spec.deletion_policy, DeletionPolicy::DeleteSynced);
        let mut destinations: Vec<String> = self.pairs.iter().map(|(_, d)| d.clone()).collect();
        for n in self.nm.status.iter().flat_map(|s| s.namespaces.iter().flatten()) {
            if !destinations.contains(&n.destination) {
                destinations.push(n.destination.clone());
            }
        }
        let mut deleted = 0;
        let mut held = Vec::new();
        for d in destinations {
            match self.delete_synced(&d).await? {
                Cleanup::Deleted(n) => deleted += n,
                Cleanup::Held(reason) => held.push(format!("{d} ({reason})")),
            }
        }
        Ok((deleted, held))
    }
}

/// What [`Runner::delete_synced`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cleanup {
    /// This many objects (the namespace included) were deleted.
    Deleted(usize),
    /// Nothing was deleted: the site state holds it.
    Held(site::Reason),
}

/// A reference to a (DR) namespace, for events about it.
fn namespace_ref(name: &str) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
    Some(k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Namespace".into()),
        name: Some(name.to_owned()),
        ..Default::default()
    })
}

/// A reference to an object named `Kind.group/namespace/name` (a report's object), for events about it.
fn object_ref(object: &str) -> Option<k8s_openapi::api::core::v1::ObjectReference> {
    let mut parts = object.splitn(3, '/');
    let (kind, namespace, name) = (parts.next()?, parts.next()?, parts.next()?);
    Some(k8s_openapi::api::core::v1::ObjectReference {
        kind: Some(kind.split('.').next().unwrap_or(kind).to_owned()),
        namespace: Some(namespace.to_owned()),
        name: Some(name.to_owned()),
        ..Default::default()
    })
}

/// How often continuous mode's batches refresh the times in status when nothing else changed.
pub(super) const TIMES_REFRESH: i64 = 5;

/// Whether `new` differs from `old` only in the times every continuous batch moves (last sync, last
/// watch event, next background sync, duration) and those were written less than [`TIMES_REFRESH`]
/// seconds ago: such a batch does not write status (at 100 changes/s it would write it 10 times a second).
fn only_times_moved(
    old: &dr_syncer_core::api::NamespaceMappingStatus,
    new: &dr_syncer_core::api::NamespaceMappingStatus,
) -> bool {
    let recent = match (&old.last_sync_time, &new.last_sync_time) {
        (Some(a), Some(b)) => b.0.as_second() - a.0.as_second() < TIMES_REFRESH,
        _ => false,
    };
    let strip = |s: &dr_syncer_core::api::NamespaceMappingStatus| {
        let mut s = s.clone();
        s.last_sync_time = None;
        s.last_successful_sync_time = None;
        s.last_watch_event = None;
        s.next_sync_time = None;
        if let Some(stats) = s.sync_stats.as_mut() {
            stats.last_sync_duration = String::new();
        }
        s
    };
    let first_event = old.last_watch_event.is_none() && new.last_watch_event.is_some();
    recent && !first_event && strip(old) == strip(new)
}

pub(super) fn s_interval(schedule: Option<&Schedule>) -> Option<Duration> {
    schedule.and_then(|s| s.interval_after(chrono::Utc::now()))
}

/// The Go operator's retry defaults.
pub(super) fn default_retry() -> RetryConfig {
    serde_json::from_value(json!({})).unwrap_or(RetryConfig {
        max_retries: 5,
        initial_backoff: "5s".into(),
        max_backoff: "5m".into(),
        backoff_multiplier: 200,
    })
}

#[cfg(test)]
mod tests {
    use dr_syncer_core::source::SourceObject;
    use kube::api::DynamicObject;

    use super::*;

    fn configmap(name: &str, version: &str) -> Change {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "shop"},
            "data": {"version": version},
        }))
        .unwrap();
        Change::Applied(SourceObject {
            resource: ResourceType::namespaced("", "v1", "ConfigMap", "configmaps"),
            object,
        })
    }

    fn version(c: &Change) -> String {
        match c {
            Change::Applied(o) | Change::Deleted(o) => {
                o.object.data["data"]["version"].as_str().unwrap().into()
            }
        }
    }

    #[test]
    fn changes_of_failed_batches_are_handed_back_newest_first_and_skips_join_the_full_sync() {
        let watch = WatchBuffer::default();
        let mut reports = vec![SyncReport {
            source_namespace: "shop".into(),
            destination_namespace: "shop-dr".into(),
            ..Default::default()
        }];
        let skip = SkippedObject {
            object: "Service/shop-dr/web".into(),
            reason: "immutable field spec.clusterIP (NoChange)".into(),
        };
        let batches = Batches {
            skipped: vec![("shop".into(), "shop-dr".into(), vec![skip.clone()])],
            retry: vec![
                ("shop".into(), vec![configmap("a", "1"), configmap("b", "1")]),
                ("shop".into(), vec![configmap("a", "2")]),
            ],
        };
        assert!(batches.finish(&mut reports, &watch));
        assert_eq!(reports[0].skipped, [skip]);
        let (relisted, mut changes) = watch.take();
        assert!(!relisted);
        let mut got: Vec<(String, String)> = changes
            .remove("shop")
            .unwrap()
            .iter()
            .map(|c| match c {
                Change::Applied(o) | Change::Deleted(o) => {
                    (o.object.metadata.name.clone().unwrap(), version(c))
                }
            })
            .collect();
        got.sort();
        assert_eq!(got, [("a".into(), "2".into()), ("b".into(), "1".into())]);

        // Nothing failed: nothing handed back.
        assert!(!Batches::default().finish(&mut reports, &watch));
        assert!(watch.take().1.is_empty());
    }
}
