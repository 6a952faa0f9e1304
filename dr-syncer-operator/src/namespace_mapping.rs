//! The NamespaceMapping controller: validates the mapping, decides when it syncs (Scheduled, Continuous,
//! Manual — [`due`]), runs the sync through core's engine (`run`), and writes a truthful status
//! ([`status`]) only when it changed.
//!
//! Reconcile = fetch → validate → decide → sync → status, wrapped in the finalizer
//! `dr-syncer.io/cleanup-namespacemapping` whose cleanup applies `deletionPolicy`.

mod cleanup;
mod clusters;
mod data;
pub mod due;
mod held;
mod run;
pub mod status;
pub use crate::workers;

use std::{sync::Arc, time::Duration};

use dr_syncer_core::{
    api::{NamespaceMapping, NamespaceMappingStatus, ReplicationMode, SyncPhase},
    config::SyncConfig,
    schedule::Schedule,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        finalizer::{Event as FinalizerEvent, finalizer},
    },
};
use serde_json::json;
use tracing::{info, instrument, warn};

use self::{
    cleanup::cleanup,
    held::{blocked, blocked_until, hold_without_source, record_interruption},
};
use crate::{
    OPERATOR_FIELD_MANAGER,
    conditions::{self, now},
    context::Context,
    error::{ClusterError, Error, Result},
    metrics::ReconcileErrorLabels,
};

/// The finalizer (the Go operator's name).
pub const FINALIZER: &str = "dr-syncer.io/cleanup-namespacemapping";
/// The manual trigger.
pub const SYNC_NOW: &str = "dr-syncer.io/sync-now";
/// The Go operator's deprecated manual trigger.
pub const TRIGGER_SYNC: &str = "dr-syncer.io/trigger-sync";

pub(crate) use dr_syncer_core::ops::mapping::fixed_pair;

fn key_of(nm: &NamespaceMapping) -> String {
    format!("{}/{}", nm.namespace().unwrap_or_default(), nm.name_any())
}

/// Reconcile one NamespaceMapping.
#[instrument(skip(nm, ctx), fields(namespacemapping = %key_of(&nm)))]
pub async fn reconcile(nm: Arc<NamespaceMapping>, ctx: Arc<Context>) -> Result<Action> {
    let key = key_of(&nm);
    // `--shards`: another replica's mapping (its watches, if this replica had them, stop).
    let Some(_shard) = ctx.admit(nm.as_ref()) else {
        ctx.workers.stop(&key);
        return Ok(Action::await_change());
    };
    let api: Api<NamespaceMapping> = Api::namespaced(ctx.client.clone(), &nm.namespace().unwrap_or_default());
    let ctx2 = ctx.clone();
    let result = finalizer(&api, FINALIZER, nm, |event| async move {
        match event {
            FinalizerEvent::Apply(nm) => apply(nm, &ctx2).await,
            FinalizerEvent::Cleanup(nm) => cleanup(nm, &ctx2).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        ctx.backoffs.reset(&key);
    }
    result
}

/// After a failed reconcile: count it, and retry with this object's exponential backoff.
pub fn error_policy(nm: Arc<NamespaceMapping>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = key_of(&nm);
    warn!(namespacemapping = %key, error = %err, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ReconcileErrorLabels {
            controller: "namespacemapping".into(),
            kind: err.kind().into(),
        })
        .inc();
    Action::requeue(ctx.backoffs.next(&key))
}

/// Write `status` if it differs from `old` (server-side apply of the status subresource).
pub(crate) async fn write_status(
    ctx: &Context,
    nm: &NamespaceMapping,
    old: Option<&NamespaceMappingStatus>,
    status: &NamespaceMappingStatus,
) -> Result<()> {
    write_status_with(&ctx.client, nm, old, status).await
}

/// [`write_status`] with a client.
pub(crate) async fn write_status_with(
    client: &kube::Client,
    nm: &NamespaceMapping,
    old: Option<&NamespaceMappingStatus>,
    status: &NamespaceMappingStatus,
) -> Result<()> {
    let mut status = status.clone();
    let mut conds = status.conditions.take().unwrap_or_default();
    crate::conditions::summarize(
        &mut conds,
        crate::conditions::NAMESPACE_MAPPING_READY,
        nm.metadata.generation,
    );
    status.conditions = Some(conds);
    if old == Some(&status) {
        return Ok(());
    }
    let api: Api<NamespaceMapping> = Api::namespaced(client.clone(), &nm.namespace().unwrap_or_default());
    let patch = json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "NamespaceMapping", "status": status});
    api.patch_status(
        &nm.name_any(),
        &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| Error::kube(format!("writing status of NamespaceMapping {}", key_of(nm)), e))?;
    Ok(())
}

/// Continuous mode's full-sync interval (`continuous.backgroundSyncInterval`, 1 h).
fn background_interval(nm: &NamespaceMapping) -> Duration {
    nm.spec
        .continuous
        .as_ref()
        .map(|c| dr_syncer_core::config::parse_duration(&c.background_sync_interval))
        .transpose()
        .unwrap_or(None)
        .unwrap_or(Duration::from_secs(3600))
}

/// The schedule of a Scheduled mapping: its own, else the source then destination RemoteCluster's
/// `defaultSchedule`, else the operator's default.
fn schedule_expression(nm: &NamespaceMapping, defaults: &[Option<&str>], fallback: &str) -> String {
    nm.spec
        .schedule
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| defaults.iter().flatten().copied().find(|s| !s.trim().is_empty()))
        .unwrap_or(fallback)
        .to_owned()
}

async fn apply(nm: Arc<NamespaceMapping>, ctx: &Context) -> Result<Action> {
    let nm = held::assigned(nm, ctx).await?;
    let result = apply_mapping(nm.clone(), ctx).await;
    if let Some(round) = &ctx.options.round {
        round.finished(&key_of(&nm), result.is_ok() && settled_ok(ctx, &nm).await);
    }
    result
}

/// `--once`: whether the mapping's attempt succeeded, as its status now says (not `Failed`, `Synced` not
/// False).
async fn settled_ok(ctx: &Context, nm: &NamespaceMapping) -> bool {
    let api: Api<NamespaceMapping> = Api::namespaced(ctx.client.clone(), &nm.namespace().unwrap_or_default());
    let Ok(now) = api.get(&nm.name_any()).await else {
        return false;
    };
    let status = now.status.unwrap_or_default();
    let synced_false = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Synced" && c.status == "False");
    status.phase != Some(SyncPhase::Failed) && !synced_false
}

async fn apply_mapping(nm: Arc<NamespaceMapping>, ctx: &Context) -> Result<Action> {
    let key = key_of(&nm);
    let nm = record_interruption(nm, ctx).await?;
    let config = match SyncConfig::from_spec(&nm.spec) {
        Ok(c) => Arc::new(c),
        Err(problems) => {
            ctx.workers.stop(&key);
            return blocked(
                ctx,
                &nm,
                "InvalidSpec",
                format!("invalid spec: {problems}"),
                false,
            )
            .await;
        }
    };
    if nm.spec.paused {
        ctx.workers.stop(&key);
        let old = nm.status.clone().unwrap_or_default();
        let mut status = old.clone();
        let mut conds = status.conditions.take().unwrap_or_default();
        conditions::set(
            &mut conds,
            "Paused",
            true,
            "Paused",
            "spec.paused is true: no syncs",
            nm.meta().generation,
        );
        status.conditions = Some(conds);
        status.next_sync_time = None;
        status::set_watching(&mut status, None, nm.meta().generation);
        write_status(ctx, &nm, Some(&old), &status).await?;
        return Ok(Action::await_change());
    }
    let watches = nm.spec.replication_mode == ReplicationMode::Continuous
        && nm.spec.continuous.as_ref().is_none_or(|c| c.watch_resources);
    let nm = if watches {
        nm
    } else {
        ctx.workers.stop(&key);
        held::not_watching(nm, ctx).await?
    };
    let clusters = match clusters::Clusters::resolve(ctx, &nm).await {
        Ok(c) => c,
        Err(e @ ClusterError::IdentityChanged { .. }) => {
            // Checked again as an unhealthy RemoteCluster is (not on a growing backoff): once the
            // kubeconfig reaches the pinned cluster again, or the new one is accepted, syncing resumes.
            ctx.workers.stop(&key);
            let again = Some(ctx.options.unhealthy_recheck_interval);
            return blocked_until(ctx, &nm, e.reason(), e.to_string(), again).await;
        }
        Err(e) => {
            ctx.workers.stop(&key);
            // (Out-of-bounds references and unnamed clusters stay so until the spec changes.)
            let retry = !matches!(
                e,
                ClusterError::ClustersUnspecified(_) | ClusterError::Boundary(_)
            );
            return blocked(ctx, &nm, e.reason(), e.to_string(), retry).await;
        }
    };
    let schedule = if nm.spec.replication_mode == ReplicationMode::Scheduled {
        let expr = schedule_expression(
            &nm,
            &[
                clusters.source_rc.spec.default_schedule.as_deref(),
                clusters.destination_rc.spec.default_schedule.as_deref(),
            ],
            &ctx.options.default_schedule,
        );
        match Schedule::parse(&expr) {
            Ok(s) => Some(s),
            Err(e) => {
                ctx.workers.stop(&key);
                return blocked(ctx, &nm, "InvalidSchedule", e.to_string(), false).await;
            }
        }
    } else {
        None
    };
    let background = background_interval(&nm);

    let destination = clusters.destination.clone();
    let source_name = clusters.source_rc.name_any();
    let mut runner = match run::Runner::new(ctx, nm.clone(), config, clusters).await {
        Ok(r) => r,
        // Unknown types (a CRD may be installed later), an unreachable source: a condition, and a
        // slow retry — unless the DR side is live (production down after a promote or cutover): then
        // the mapping is idle, not failing.
        Err(Error::Core(e)) => {
            ctx.workers.stop(&key);
            // Only when production cannot be reached: a configuration error is reported as such.
            let unreachable = matches!(e.kind(), "Connection" | "Timeout" | "KubeApi" | "SourceFailed");
            if unreachable
                && let Some(action) =
                    hold_without_source(ctx, &nm, &destination, &source_name, &e.to_string()).await?
            {
                return Ok(action);
            }
            // (Invalid configuration and out-of-bounds namespaces stay so until the spec changes.)
            let retry = e.kind() != "InvalidConfig" && !matches!(e, dr_syncer_core::Error::Boundary(_));
            return blocked(ctx, &nm, e.kind(), e.to_string(), retry).await;
        }
        Err(Error::Cluster(e)) => {
            ctx.workers.stop(&key);
            if matches!(e, ClusterError::ConnectionFailed { .. })
                && let Some(action) =
                    hold_without_source(ctx, &nm, &destination, &source_name, &e.to_string()).await?
            {
                return Ok(action);
            }
            let retry = !matches!(e, ClusterError::Boundary(_));
            return blocked(ctx, &nm, e.reason(), e.to_string(), retry).await;
        }
        Err(e) => return Err(e),
    };
    let watch = if watches {
        Some(runner.ensure_watches()?)
    } else {
        None
    };
    let status = nm.status.clone().unwrap_or_default();
    let synced_generation = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Synced")
        .and_then(|c| c.observed_generation);
    let halted = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Synced" && c.reason == "RetriesExhausted");
    let interval = schedule.as_ref().and_then(|s| s.interval_after(chrono_now()));
    let decision = due::decide(&due::Inputs {
        mode: nm.spec.replication_mode,
        status: &status,
        generation: nm.meta().generation,
        synced_generation,
        // `--once` syncs each mapping of its round as if triggered (also Manual ones, and Scheduled ones
        // not due yet).
        triggered: run::trigger_value(&nm).is_some()
            || run::go_ahead_value(&nm).is_some()
            || ctx
                .options
                .round
                .as_ref()
                .is_some_and(|r| r.is_pending(&key_of(&nm))),
        schedule: schedule.as_ref(),
        jitter: due::jitter(&nm.uid().unwrap_or_default(), interval),
        watch: watch.as_ref().map(|w| w.state()).unwrap_or_default(),
        background_interval: background,
        halted,
        now: now().0.as_second(),
    });
    let Some(reason) = decision.sync else {
        // Nothing to do now: keep nextSyncTime and the conditions current (and write the times a
        // continuous batch left unwritten).
        let mut next = watch
            .as_ref()
            .and_then(|w| w.take_deferred_status())
            .unwrap_or_else(|| status.clone());
        next.next_sync_time = decision
            .next_sync
            .and_then(|s| k8s_openapi::jiff::Timestamp::from_second(s).ok())
            .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
        let mut conds = next.conditions.take().unwrap_or_default();
        conditions::remove(&mut conds, "Paused");
        next.conditions = (!conds.is_empty()).then_some(conds);
        if next.phase.is_none() {
            next.phase = Some(SyncPhase::Pending);
        }
        let fresh_again = set_stale(
            ctx,
            &nm,
            &mut next,
            schedule.as_ref(),
            watch.as_deref(),
            background,
            now().0.as_second(),
        );
        write_status(ctx, &nm, Some(&status), &next).await?;
        return Ok(
            match [decision.requeue, fresh_again].into_iter().flatten().min() {
                Some(d) => Action::requeue(d),
                None => Action::await_change(),
            },
        );
    };
    // A slot first: change batches before requested syncs before periodic ones (crate::slots).
    let Some(slot) = crate::slots::acquire_counted(&ctx.slots, &ctx.metrics, due::class_of(reason)).await
    else {
        // The process stops: the sync is the next replica's (or the next start's).
        return Ok(Action::await_change());
    };
    info!(reason = reason.describe(), waited = ?slot.waited, "sync");
    let outcome = runner
        .sync(reason, watch.as_deref(), schedule.as_ref(), background)
        .await?;
    Ok(outcome)
}

/// Set the `Stale` condition on `status` (and the `dr_syncer_mapping_stale` gauge); returns when to look
/// again (the time the copy would turn stale), relative to `now`.
pub(crate) fn set_stale(
    ctx: &Context,
    nm: &NamespaceMapping,
    status: &mut dr_syncer_core::api::NamespaceMappingStatus,
    schedule: Option<&Schedule>,
    watch: Option<&workers::WatchBuffer>,
    background: Duration,
    now: i64,
) -> Option<Duration> {
    let f = status::Freshness {
        mode: nm.spec.replication_mode,
        period: run::s_interval(schedule),
        pending: watch.and_then(workers::WatchBuffer::oldest_pending),
        background,
        created: nm.meta().creation_timestamp.as_ref().map(|t| t.0.as_second()),
        now,
        periods: ctx.options.stale_periods,
        after: ctx.options.stale_after,
    };
    let next = status::set_staleness(status, &f, nm.meta().generation);
    let stale = conditions::is_true(status.conditions.as_ref(), "Stale");
    ctx.metrics
        .mapping_stale
        .get_or_create(&crate::metrics::MappingLabels { mapping: key_of(nm) })
        .set(i64::from(stale));
    next.map(|t| Duration::from_secs((t - now).max(1) as u64))
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
