//! PVC data of a NamespaceMapping (`pvcConfig.syncData`): after the objects of a full sync, every PVC this
//! mapping synced gets its data copied through core's `PvcDataSync` (mount pod when needed, grant, mover
//! pod, per-PVC Lease lock). Progress goes to `status.dataSync` and the `dr_syncer_pvc_sync_*` metrics,
//! results to Events; failures become run errors, so `retryConfig` and `failureHandling` apply to them
//! as to objects.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use dr_syncer_core::{
    api::{NamespaceMapping, VolumeSyncStatus},
    failure::FailureCategory,
    ops::{
        MappingRun, PvcDataSync, PvcPair, PvcSyncOutcome, PvcSyncStage, QuietDestinationOnly, VolumeStates,
        VolumeSync, volume_key,
    },
    pvc::{AgentSettings, TransferSettings},
};
use futures::StreamExt;
use kube::ResourceExt;
use tracing::warn;

use super::{clusters::Clusters, status::RunError};
use crate::{
    conditions::now,
    context::Context,
    metrics::{PvcLabels, PvcStatusLabels},
};

/// What the data copies of one sync did.
#[derive(Debug, Default)]
pub(super) struct DataOutcome {
    /// One entry per PVC.
    pub volumes: Vec<VolumeSyncStatus>,
    /// Failed copies (and a mapping that cannot copy at all).
    pub errors: Vec<RunError>,
}

fn labels(pair: &PvcPair) -> PvcLabels {
    PvcLabels {
        namespace: pair.source_namespace.clone(),
        pvc_name: pair.source_pvc.clone(),
        destination_namespace: pair.destination_namespace.clone(),
    }
}

fn run_error(src: &str, dst: &str, kind: &str, category: FailureCategory, message: String) -> RunError {
    RunError {
        source_namespace: src.to_owned(),
        destination_namespace: dst.to_owned(),
        kind: kind.to_owned(),
        category,
        message,
    }
}

/// Copy the data of every PVC of the mapping; `on_update` gets the per-PVC state whenever it changes.
pub(super) async fn sync_data(
    ctx: &Context,
    nm: &NamespaceMapping,
    clusters: &Clusters,
    run: &MappingRun,
    namespaces: &[(String, String)],
    on_update: &(dyn Fn(Vec<VolumeSyncStatus>) + Send + Sync),
) -> DataOutcome {
    let mut outcome = DataOutcome::default();
    let pvc_config = nm.spec.pvc_config.clone().unwrap_or_default();
    let fail_all = |outcome: &mut DataOutcome, kind: &str, category: FailureCategory, message: String| {
        for (src, dst) in namespaces {
            outcome
                .errors
                .push(run_error(src, dst, kind, category, message.clone()));
        }
    };
    let source_rc = &clusters.source_rc;
    if source_rc.spec.enabled_pvc_sync().is_none() {
        fail_all(
            &mut outcome,
            "DataSyncUnavailable",
            FailureCategory::ValidationFailure,
            format!(
                "pvcConfig.syncData needs agents in the source cluster: set spec.pvcSync.enabled on RemoteCluster {}",
                source_rc.name_any()
            ),
        );
        return outcome;
    }
    let settings = AgentSettings::from_spec(source_rc.spec.pvc_sync.as_ref());
    let transfer =
        match TransferSettings::from_config_and_agents(pvc_config.data_sync_config.as_ref(), &settings) {
            Ok(mut t) => {
                // A person's go-ahead to mirror emptied volumes (removed after this sync).
                t.allow_wiped_source = nm
                    .annotations()
                    .get(dr_syncer_core::annotations::ALLOW_WIPED_SOURCE)
                    .is_some_and(|v| v == "true");
                t
            }
            Err(m) => {
                fail_all(
                    &mut outcome,
                    "InvalidConfig",
                    FailureCategory::ValidationFailure,
                    m,
                );
                return outcome;
            }
        };
    let concurrency = pvc_config
        .data_sync_config
        .as_ref()
        .and_then(|c| usize::try_from(c.concurrent_syncs).ok())
        .filter(|c| *c > 0)
        .unwrap_or(2);
    // The source's agents must accept this mapping's key: deploy (a no-op when nothing changed).
    if let Err(e) = crate::agents::deploy(ctx, source_rc, &clusters.source).await {
        fail_all(
            &mut outcome,
            e.kind(),
            FailureCategory::NetworkError,
            format!("updating the source agents: {e}"),
        );
        return outcome;
    }
    let pins = match crate::agents::host_pins(ctx, source_rc).await {
        Ok(k) => k,
        Err(e) => {
            fail_all(
                &mut outcome,
                e.kind(),
                FailureCategory::ValidationFailure,
                format!("SSH keys: {e}"),
            );
            return outcome;
        }
    };
    let pairs = match run.pvc_pairs(namespaces).await {
        Ok(p) => p,
        Err(e) => {
            fail_all(&mut outcome, e.kind(), e.category(), e.to_string());
            return outcome;
        }
    };
    let source_key = format!(
        "{}/{}",
        source_rc.namespace().unwrap_or_default(),
        source_rc.name_any()
    );
    let limit = ctx.data_limit(&source_key, settings.global_concurrency);
    let node_concurrency = settings.node_concurrency;
    let mover = PvcDataSync::new(
        clusters.source.client.clone(),
        clusters.destination.client.clone(),
        settings,
        pins,
        ctx.identity.clone(),
    )
    .with_transfer(transfer)
    .with_wait_timeout(ctx.options.data_wait_timeout);
    let mover = match node_concurrency {
        Some(n) => mover.with_node_limits(ctx.node_limits(&source_key, n)),
        None => mover,
    };
    // Checked again right before each copy: a cutover or promote may have made the DR side live since
    // the objects were synced, and nothing is copied over the live site.
    let mover = QuietDestinationOnly::new(ctx.options.extensions.mover(mover), run.destination().clone());

    // Per-PVC state, seeded from the last status.
    let previous = nm
        .status
        .as_ref()
        .and_then(|s| s.data_sync.clone())
        .unwrap_or_default();
    let state = Arc::new(Mutex::new(VolumeStates::seed(&pairs, &previous)));
    let snapshot = |state: &Mutex<VolumeStates>| state.lock().unwrap_or_else(|p| p.into_inner()).snapshot();
    on_update(snapshot(&state));
    let metrics = ctx.metrics.clone();
    let on_stage = {
        let state = state.clone();
        let metrics = metrics.clone();
        move |pair: &PvcPair, stage: &PvcSyncStage| {
            if !state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .on_stage(pair, stage, now())
            {
                return;
            }
            if let PvcSyncStage::Moving(p) = stage {
                let l = labels(pair);
                metrics
                    .pvc
                    .progress_percent
                    .get_or_create(&l)
                    .set(f64::from(p.percent));
                metrics.pvc.speed.get_or_create(&l).set(p.bytes_per_second);
            }
            on_update(snapshot(&state));
        }
    };
    let on_stage = &on_stage;
    let results: Vec<_> = futures::stream::iter(pairs)
        .map(|pair| {
            let limit = limit.clone();
            let mover = &mover;
            let metrics = metrics.clone();
            async move {
                metrics.pvc.queue_depth.inc();
                let waited = Instant::now();
                let permit = limit.acquire_owned().await;
                metrics.pvc.queue_depth.dec();
                metrics.pvc.queue_wait.observe(waited.elapsed().as_secs_f64());
                metrics.pvc.concurrent.inc();
                let result = mover.sync_one(pair, on_stage).await;
                metrics.pvc.concurrent.dec();
                drop(permit);
                result
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;

    for r in results {
        let key = volume_key(&r.pair);
        let l = labels(&r.pair);
        let status_labels = |status: &str| PvcStatusLabels {
            namespace: l.namespace.clone(),
            pvc_name: l.pvc_name.clone(),
            destination_namespace: l.destination_namespace.clone(),
            status: status.into(),
        };
        let Some(v) = state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .on_result(&r, now())
            .cloned()
        else {
            continue;
        };
        let (warning, reason, note) = match &r.outcome {
            PvcSyncOutcome::Synced(stats) => {
                metrics
                    .pvc
                    .bytes_transferred
                    .get_or_create(&l)
                    .inc_by(stats.bytes_sent);
                metrics
                    .pvc
                    .files_transferred
                    .get_or_create(&l)
                    .inc_by(stats.files_transferred);
                metrics.pvc.progress_percent.get_or_create(&l).set(100.0);
                metrics.pvc.speed.get_or_create(&l).set(stats.bytes_per_second());
                metrics
                    .pvc
                    .operations
                    .get_or_create(&status_labels("success"))
                    .inc();
                metrics
                    .pvc
                    .duration
                    .get_or_create(&status_labels("success"))
                    .observe(r.duration.as_secs_f64());
                let note = format!(
                    "PVC data of {key} copied to {}: {} bytes sent, {} files, {} deleted, from node {} in {}",
                    v.destination,
                    stats.bytes_sent,
                    stats.files_transferred,
                    stats.files_deleted,
                    r.node.as_deref().unwrap_or("?"),
                    v.duration.as_deref().unwrap_or_default()
                );
                (false, "DataSyncCompleted", note)
            }
            PvcSyncOutcome::Skipped(reason) => {
                (false, "DataSyncSkipped", format!("PVC data of {key}: {reason}"))
            }
            PvcSyncOutcome::Failed(e) => {
                metrics
                    .pvc
                    .operations
                    .get_or_create(&status_labels("failure"))
                    .inc();
                metrics
                    .pvc
                    .duration
                    .get_or_create(&status_labels("failure"))
                    .observe(r.duration.as_secs_f64());
                warn!(pvc = %key, "PVC data copy failed: {e}");
                let category = if e.is_transient() {
                    FailureCategory::NetworkError
                } else {
                    e.category()
                };
                outcome.errors.push(run_error(
                    &r.pair.source_namespace,
                    &r.pair.destination_namespace,
                    e.kind(),
                    category,
                    format!("PVC data of {key}: {e}"),
                ));
                (true, "DataSyncFailed", format!("PVC data of {key}: {e}"))
            }
        };
        ctx.event(nm, warning, reason, "DataSync", note).await;
    }
    outcome.volumes = snapshot(&state);
    outcome
}
