//! Running a NamespaceMapping's sync: core's [`MappingRun`] does the work (namespace pairs, types, the
//! engine per pair, site checks, deleting what was synced); this module wires it to the reconciler:
//! the RemoteClusters and their clients, watches, status, metrics and Events.

mod batches;
mod events;
mod progress;
mod times;

pub(in crate::namespace_mapping) use self::times::{TIMES_REFRESH, default_retry, s_interval};
use self::times::{next_sync_time, only_times_moved};

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use dr_syncer_core::{
    api::{NamespaceMapping, NamespaceMappingStatus, RemoteCluster, VolumeSyncStatus},
    apply::Applier,
    config::SyncConfig,
    engine::SyncReport,
    failure::{FailureCategory, fail_fast_categories, retry_mode},
    ops::{self, Host, MappingInput, MappingRun, RunError},
    resource::ResourceType,
    schedule::Schedule,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    Resource, ResourceExt,
    runtime::{controller::Action, reflector::ObjectRef},
};
use tracing::info;

use super::{
    SYNC_NOW, TRIGGER_SYNC,
    clusters::Clusters,
    due,
    status::{Outcome, after_sync},
    workers::{WatchBuffer, WatchSpec},
    write_status,
};
use crate::{clusters::ClusterHandle, conditions::now, context::Context, error::Result};

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
    clusters: Clusters,
    run: MappingRun,
}

impl<'a> Runner<'a> {
    /// Resolve the namespace pairs and types (discovery on the source).
    pub(super) async fn new(
        ctx: &'a Context,
        nm: Arc<NamespaceMapping>,
        config: Arc<SyncConfig>,
        clusters: Clusters,
    ) -> Result<Runner<'a>> {
        let discovered = clusters.source.types().await?;
        let input = Self::input(&nm, config, &clusters, &discovered);
        let run = MappingRun::for_sync(input, Self::host(ctx), &ctx.options.plugins).await?;
        Ok(Runner {
            ctx,
            nm,
            clusters,
            run,
        })
    }

    /// For deleting what the mapping synced: types are resolved against the destination and namespaces
    /// come from the spec and status, so a source cluster that is gone (the disaster) cannot block it.
    pub(super) async fn for_cleanup(
        ctx: &'a Context,
        nm: Arc<NamespaceMapping>,
        config: Arc<SyncConfig>,
        clusters: Clusters,
    ) -> Result<Runner<'a>> {
        let discovered = clusters.destination.types().await?;
        let run = MappingRun::for_cleanup(Self::input(&nm, config, &clusters, &discovered), Self::host(ctx))?;
        Ok(Runner {
            ctx,
            nm,
            clusters,
            run,
        })
    }

    fn input<'b>(
        nm: &'b NamespaceMapping,
        config: Arc<SyncConfig>,
        clusters: &Clusters,
        discovered: &'b [ResourceType],
    ) -> MappingInput<'b> {
        let side = |rc: &RemoteCluster, h: &ClusterHandle| ops::Cluster {
            name: rc.name_any(),
            client: h.client.clone(),
            calls: h.calls.clone(),
        };
        MappingInput {
            mapping: nm,
            config,
            source: side(&clusters.source_rc, &clusters.source),
            destination: side(&clusters.destination_rc, &clusters.destination),
            default_types: clusters
                .source_rc
                .spec
                .default_resource_types
                .clone()
                .unwrap_or_default(),
            discovered,
            accept: clusters.accepted_source_identity(),
        }
    }

    fn host(ctx: &Context) -> Host {
        Host {
            boundaries: ctx.clusters.boundaries().clone(),
            ledger: ctx.deletions.clone(),
            chain: ctx.options.extensions.chain(),
            apply_concurrency: ctx.options.apply_concurrency,
            sync_timeout: ctx.options.sync_timeout,
        }
    }

    /// `deletionPolicy: DeleteSynced`: see [`MappingRun::delete_synced_everywhere`].
    pub(super) async fn delete_synced_everywhere(&self) -> Result<(usize, Vec<String>)> {
        Ok(self.run.delete_synced_everywhere().await?)
    }

    /// Make sure the mapping's watch set runs (continuous mode); returns its buffer.
    pub(super) fn ensure_watches(&mut self) -> Result<Arc<WatchBuffer>> {
        let fingerprint = format!(
            "{}|{}|{}|{:?}|{:?}",
            self.nm.meta().generation.unwrap_or_default(),
            self.clusters.source.name,
            Arc::as_ptr(&self.clusters.source) as usize,
            self.run.pairs(),
            self.run
                .types()
                .iter()
                .map(ResourceType::resource_group)
                .collect::<Vec<_>>(),
        );
        let spec = WatchSpec {
            mapping: ObjectRef::from_obj(self.nm.as_ref()),
            watches: self.clusters.source.watches.clone(),
            namespaces: self.run.pairs().iter().map(|(s, _)| s.clone()).collect(),
            types: self.run.types().to_vec(),
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
                .ensure(self.run.key(), &fingerprint, spec, self.ctx.trigger.clone());
        if started {
            info!(mapping = %self.run.key(), namespaces = self.run.pairs().len(), types = self.run.types().len(), "watching the source");
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
        let old = nm.status.clone().unwrap_or_default();
        let trigger = trigger_value(&nm);
        let go_ahead = go_ahead_value(&nm);
        let wiped_ok = nm
            .annotations()
            .get(dr_syncer_core::annotations::ALLOW_WIPED_SOURCE)
            .cloned();
        let started = Instant::now();
        self.run.import_deletions(&old.recent_deletions);
        let (relisted, changes) = watch.map(WatchBuffer::take).unwrap_or_default();
        // A full sync compares everything: waiting changes are part of it.
        let full = reason.is_full() || relisted;
        let reason = if full && reason == due::Reason::Changes {
            due::Reason::Relisted
        } else {
            reason
        };
        let running = if full {
            progress::started(ctx, &nm, &old, reason).await?
        } else {
            old.clone()
        };

        let handling = nm.spec.failure_handling.clone().unwrap_or_default();
        let fail_fast = fail_fast_categories(&handling);
        let object_progress = full.then(|| progress::ObjectProgress::start(ctx, &nm, &running));
        let applier_for = |dst: &str| -> Arc<dyn Applier> {
            match watch {
                Some(w) => w.applier(dst, || self.run.new_applier()),
                None => Arc::new(self.run.new_applier()),
            }
        };
        let pairs = self
            .run
            .sync_pairs(
                (!full).then_some(changes),
                &applier_for,
                object_progress.as_ref().map(progress::ObjectProgress::callback),
                &fail_fast,
            )
            .await;
        if let Some(p) = object_progress {
            p.stop().await;
        }
        if let Some(w) = watch {
            // The changes of pairs that could not run wait for the next batch.
            if !pairs.unsynced.is_empty() {
                w.restore(false, pairs.unsynced);
            }
            // Between syncs, the kept live caches hold fingerprints, not objects (a few recently
            // written ones stay whole).
            w.compact_appliers();
        }
        let (mut reports, mut run_errors) = (pairs.reports, pairs.run_errors);

        // The site state: production running next to an active DR side (both sites active).
        let both_active = self.both_active(&reports).await;
        // PVC data, after the objects of a full sync.
        let data_pairs = self.run.data_pairs(&reports);
        let mut data_volumes = None;
        let mut handed_back = false;
        if full && nm.spec.pvc_config.as_ref().is_some_and(|p| p.sync_data) && !data_pairs.is_empty() {
            let (volumes, errors, back) = self
                .copy_data(&running, &data_pairs, watch, &fail_fast, &mut reports)
                .await;
            run_errors.extend(errors);
            data_volumes = Some(volumes);
            handed_back = back;
        }
        self.clean_up_unselected(&old, &mut run_errors).await;

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
            selected: nm
                .spec
                .namespace_selector
                .as_ref()
                .map(|_| self.run.pairs().to_vec()),
            last_watch_event: watch.and_then(WatchBuffer::last_event).map(Time),
            both_active,
            recent_deletions: self.run.export_deletions(),
        };
        if !outcome.is_success() {
            let mode = retry_mode(outcome.categories().into_keys(), &handling);
            let retry_config = nm.spec.retry_config.clone().unwrap_or_else(default_retry);
            let previous = old.retry_status.as_ref().filter(|_| reason == due::Reason::Retry);
            outcome.retry =
                mode.and_then(|m| due::next_retry(&retry_config, previous, m, finished.0.as_second()));
            outcome.halted =
                outcome.retry.is_none() && mode == Some(dr_syncer_core::api::FailureMode::RetryOnly);
        } else if !full {
            // A successful incremental batch does not cancel a retry scheduled for a failed full sync.
            outcome.retry = old.retry_status.clone();
        }
        let mut status = after_sync(&old, &outcome, nm.meta().generation);
        let per_namespace: Option<Vec<String>> =
            watch.map(|w| w.per_namespace().iter().map(ToString::to_string).collect());
        super::status::set_watching(&mut status, per_namespace.as_deref(), nm.meta().generation);
        if let Some(v) = data_volumes {
            status.data_sync = Some(v);
        }
        status.next_sync_time = next_sync_time(&nm, schedule, &outcome, background);
        // The trigger goes before the final status, so that a status saying the sync is done never
        // shows next to the trigger that asked for it. (Should the process stop in between, the phase is
        // still Running and the next start syncs again.)
        if let Some((annotation, value)) = trigger {
            ctx.remove_annotation(nm.as_ref(), annotation, &value).await?;
        }
        // A deletion go-ahead is for the deletions held when it was given: one full sync uses it; so is
        // a go-ahead to mirror wiped volumes.
        for (annotation, value) in [
            (dr_syncer_core::annotations::ALLOW_DELETIONS, go_ahead),
            (dr_syncer_core::annotations::ALLOW_WIPED_SOURCE, wiped_ok),
        ] {
            if let Some(value) = value.filter(|_| full) {
                ctx.remove_annotation(nm.as_ref(), annotation, &value).await?;
            }
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

        let after = |t: &Option<Time>| {
            t.as_ref()
                .map(|t| Duration::from_secs((t.0.as_second() - finished.0.as_second()).max(1) as u64))
        };
        let next_retry = after(&outcome.retry.as_ref().and_then(|r| r.next_retry_time.clone()));
        let next_sync = after(&status.next_sync_time);
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

    /// Copy the PVC data of `pairs` (after a full sync's objects), writing its progress to status. In
    /// continuous mode, source changes keep flowing meanwhile (a copy can take hours), in batches of
    /// their own (see [`batches::Batches`]). Returns the per-PVC state, the failed copies, and whether
    /// changes of failed batches were handed back to `watch`.
    async fn copy_data(
        &self,
        running: &NamespaceMappingStatus,
        pairs: &[(String, String)],
        watch: Option<&WatchBuffer>,
        fail_fast: &[FailureCategory],
        reports: &mut [SyncReport],
    ) -> (Vec<VolumeSyncStatus>, Vec<RunError>, bool) {
        let writer = progress::DataProgress::start(self.ctx, &self.nm, running);
        let on_update = |v: Vec<VolumeSyncStatus>| writer.update(v);
        let copy = super::data::sync_data(self.ctx, &self.nm, &self.clusters, &self.run, pairs, &on_update);
        let mut handed_back = false;
        let outcome = match watch {
            Some(w) => {
                let (copied_tx, copied_rx) = tokio::sync::watch::channel(false);
                let copy = async move {
                    let outcome = copy.await;
                    let _ = copied_tx.send(true);
                    outcome
                };
                let (outcome, batches) = tokio::join!(copy, self.batches_until(w, copied_rx, fail_fast));
                handed_back = batches.finish(reports, w);
                outcome
            }
            None => copy.await,
        };
        writer.finish().await;
        (outcome.volumes, outcome.errors, handed_back)
    }
}
