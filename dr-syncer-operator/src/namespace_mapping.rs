//! The NamespaceMapping controller: validates the mapping, decides when it syncs (Scheduled, Continuous,
//! Manual — [`due`]), runs the sync through core's engine (`run`), and writes a truthful status
//! ([`status`]) only when it changed.
//!
//! Reconcile = fetch → validate → decide → sync → status, wrapped in the finalizer
//! `dr-syncer.io/cleanup-namespacemapping` whose cleanup applies `deletionPolicy`.

mod data;
pub mod due;
mod run;
pub mod status;
pub mod workers;

use std::{sync::Arc, time::Duration};

use dr_syncer_core::{
    api::{DeletionPolicy, NamespaceMapping, NamespaceMappingStatus, ReplicationMode, SyncPhase},
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

/// The one namespace pair (source, destination) of a mapping without `namespaceSelector`: the destination
/// defaults to the source's name. `None` for a selector mapping (its pairs come from production).
pub(crate) fn fixed_pair(nm: &NamespaceMapping) -> Option<(String, String)> {
    if nm.spec.namespace_selector.is_some() {
        return None;
    }
    let src = nm.spec.source_namespace.clone().unwrap_or_default();
    let dst = nm
        .spec
        .destination_namespace
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| src.clone());
    Some((src, dst))
}

fn key_of(nm: &NamespaceMapping) -> String {
    format!("{}/{}", nm.namespace().unwrap_or_default(), nm.name_any())
}

/// Reconcile one NamespaceMapping.
#[instrument(skip(nm, ctx), fields(namespacemapping = %key_of(&nm)))]
pub async fn reconcile(nm: Arc<NamespaceMapping>, ctx: Arc<Context>) -> Result<Action> {
    let key = key_of(&nm);
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

/// A problem that stops the mapping until something changes: condition, event, no retry of its own
/// (`bounded`: retry with the object's backoff, for problems that may go away on their own).
async fn blocked(
    ctx: &Context,
    nm: &NamespaceMapping,
    reason: &str,
    message: String,
    retry: bool,
) -> Result<Action> {
    let again = retry.then(|| ctx.backoffs.next(&format!("{}#blocked", key_of(nm))));
    blocked_until(ctx, nm, reason, message, again).await
}

/// As [`blocked`], checked again after `again` (or the staleness check, whichever comes first).
async fn blocked_until(
    ctx: &Context,
    nm: &NamespaceMapping,
    reason: &str,
    message: String,
    again: Option<Duration>,
) -> Result<Action> {
    // A mapping that cannot start syncing is a failed reconcile, though handled here (status, Event).
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ReconcileErrorLabels {
            controller: "namespacemapping".into(),
            kind: reason.into(),
        })
        .inc();
    let old = nm.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut conds = status.conditions.take().unwrap_or_default();
    conditions::set(
        &mut conds,
        "Synced",
        false,
        reason,
        message.clone(),
        nm.meta().generation,
    );
    status.conditions = Some(conds);
    if status.phase != Some(SyncPhase::Completed) {
        status.phase = Some(SyncPhase::Failed);
    }
    status.last_error = Some(dr_syncer_core::api::LastError {
        message: message.clone(),
        time: now(),
        resource: None,
    });
    status.next_sync_time = None;
    status.sync_progress = None;
    let changed = status.conditions != old.conditions;
    // A mapping that cannot sync at all (production unreachable, a cluster changed) turns stale too; the
    // schedule here is the mapping's own or the operator's default (the RemoteClusters may be unknown).
    let schedule = (nm.spec.replication_mode == ReplicationMode::Scheduled)
        .then(|| Schedule::parse(&schedule_expression(nm, &[], &ctx.options.default_schedule)).ok())
        .flatten();
    let fresh_again = set_stale(
        ctx,
        nm,
        &mut status,
        schedule.as_ref(),
        None,
        background_interval(nm),
        now().0.as_second(),
    );
    write_status(ctx, nm, Some(&old), &status).await?;
    if changed {
        ctx.event(nm, true, reason, "Validate", message).await;
    }
    Ok(match [again, fresh_again].into_iter().flatten().min() {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
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
        write_status(ctx, &nm, Some(&old), &status).await?;
        return Ok(Action::await_change());
    }
    let clusters = match run::Clusters::resolve(ctx, &nm).await {
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
            let retry = e.kind() != "InvalidConfig";
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
    let watch = if nm.spec.replication_mode == ReplicationMode::Continuous
        && nm.spec.continuous.as_ref().is_none_or(|c| c.watch_resources)
    {
        Some(runner.ensure_watches()?)
    } else {
        ctx.workers.stop(&key);
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
    info!(reason = reason.describe(), "sync");
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

/// A status still `Running` when a reconcile starts is a sync cut short (no reconcile of this mapping runs
/// meanwhile): the operator stopped during it — a crash, an out-of-memory kill, a lost lease. It is
/// recorded as failed (`SyncInterrupted`, one Warning Event) with a retry after the mapping's backoff, so
/// that a sync that kills the operator again and again backs off instead of starting at once after
/// every restart (and starving the other mappings).
async fn record_interruption(nm: Arc<NamespaceMapping>, ctx: &Context) -> Result<Arc<NamespaceMapping>> {
    let running = |nm: &NamespaceMapping| {
        nm.status
            .as_ref()
            .is_some_and(|s| s.phase == Some(SyncPhase::Running))
    };
    if !running(&nm) {
        return Ok(nm);
    }
    // The controller's cache may still hold the status a sync of this process wrote when it started
    // (its final status not seen yet): only the API server's current status tells.
    let api: Api<NamespaceMapping> = Api::namespaced(ctx.client.clone(), &nm.namespace().unwrap_or_default());
    let nm = match api.get_opt(&nm.name_any()).await {
        Ok(Some(fresh)) => Arc::new(fresh),
        Ok(None) => return Ok(nm),
        Err(e) => return Err(Error::kube("reading the NamespaceMapping", e)),
    };
    if !running(&nm) {
        return Ok(nm);
    }
    let Some(old) = nm.status.as_ref() else {
        return Ok(nm);
    };
    let retry_config = nm.spec.retry_config.clone().unwrap_or_else(run::default_retry);
    let next = status::after_interruption(old, &retry_config, now().0.as_second(), nm.meta().generation);
    write_status(ctx, &nm, Some(old), &next).await?;
    let message = next
        .last_error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    warn!("{message}");
    ctx.event(nm.as_ref(), true, "SyncInterrupted", "Sync", message)
        .await;
    let mut updated = (*nm).clone();
    updated.status = Some(next);
    Ok(Arc::new(updated))
}

/// How often a mapping whose DR side is live checks again while production cannot be reached.
const HELD_RECHECK: Duration = Duration::from_secs(30);

/// Production cannot be read, but the mapping's DR namespace is active (a promote or cutover made the DR
/// side the live site): the mapping is healthy and idle (`DestinationActive`), not failing. Only for a
/// mapping with one namespace pair (a selector's pairs come from production). `None`: not held.
async fn hold_without_source(
    ctx: &Context,
    nm: &NamespaceMapping,
    destination: &crate::clusters::ClusterHandle,
    source_cluster: &str,
    problem: &str,
) -> Result<Option<Action>> {
    let Some((_, dst)) = fixed_pair(nm) else {
        return Ok(None);
    };
    let Ok((state, _)) =
        dr_syncer_core::kube::site::read_destination(&destination.client, &destination.calls, &dst).await
    else {
        return Ok(None);
    };
    if !state.is_active() {
        return Ok(None);
    }
    let old = nm.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut conds = status.conditions.take().unwrap_or_default();
    let message = status::destination_active_message(&[dst.as_str()]);
    let announce = !conds
        .iter()
        .any(|c| c.type_ == "DestinationActive" && c.status == "True" && c.message == message);
    conditions::set(
        &mut conds,
        "DestinationActive",
        true,
        "DestinationActive",
        message.clone(),
        nm.meta().generation,
    );
    conditions::set(
        &mut conds,
        "Synced",
        true,
        "DestinationActive",
        format!(
            "Idle: the DR namespace {dst} is the live site (dr-syncer.io/active) and production (cluster \
             {source_cluster}) cannot be reached ({problem}); nothing is synced until a failback"
        ),
        nm.meta().generation,
    );
    status.conditions = Some(conds);
    status.phase = Some(SyncPhase::Completed);
    status.sync_progress = None;
    status.next_sync_time = None;
    write_status(ctx, nm, Some(&old), &status).await?;
    if announce {
        ctx.event(nm, false, "DestinationActive", "Sync", message).await;
    }
    Ok(Some(Action::requeue(HELD_RECHECK)))
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// The mapping is being deleted: stop its watches and apply `deletionPolicy`.
async fn cleanup(nm: Arc<NamespaceMapping>, ctx: &Context) -> Result<Action> {
    let key = key_of(&nm);
    // `--once`: a mapping being deleted is done with for the round.
    if let Some(round) = &ctx.options.round {
        round.finished(&key, true);
    }
    ctx.workers.stop(&key);
    let mut destinations: Vec<String> = fixed_pair(&nm).map(|(_, d)| d).into_iter().collect();
    destinations.extend(
        nm.status
            .iter()
            .flat_map(|s| s.namespaces.iter().flatten())
            .map(|n| n.destination.clone()),
    );
    ctx.metrics.forget_mapping(&key, &destinations);
    if nm.spec.deletion_policy == DeletionPolicy::Retain {
        info!("deleted; DR objects retained (deletionPolicy Retain)");
        return Ok(Action::await_change());
    }
    let clusters = match run::Clusters::resolve(ctx, &nm).await {
        Ok(c) => c,
        Err(
            e @ (ClusterError::RemoteClusterNotFound(_)
            | ClusterError::ClusterMappingNotFound(_)
            | ClusterError::ClustersUnspecified(_)
            | ClusterError::SecretNotFound(_)
            | ClusterError::KeyNotFound { .. }
            | ClusterError::InvalidKubeconfig { .. }
            | ClusterError::Boundary(_)
            | ClusterError::IdentityChanged { .. }),
        ) => {
            // The DR cluster cannot be named or reached any more, and never will be from this
            // mapping: deleting it must not hang forever. (A kubeconfig reaching another cluster: the
            // objects there are not this mapping's; nothing is deleted, the DR copies are retained.)
            ctx.event(
                nm.as_ref(),
                true,
                "CleanupSkipped",
                "Delete",
                format!("deletionPolicy DeleteSynced not applied: {e}"),
            )
            .await;
            return Ok(Action::await_change());
        }
        Err(e) => return Err(e.into()),
    };
    let config = SyncConfig::from_spec(&nm.spec).map(Arc::new).unwrap_or_default();
    let runner = run::Runner::for_cleanup(ctx, nm.clone(), config, clusters).await?;
    let (deleted, held) = runner.delete_synced_everywhere().await?;
    ctx.event(
        nm.as_ref(),
        false,
        "CleanedUp",
        "Delete",
        format!("deletionPolicy DeleteSynced: deleted {deleted} object(s) this mapping synced"),
    )
    .await;
    if !held.is_empty() {
        ctx.event(
            nm.as_ref(),
            true,
            "CleanupSkipped",
            "Delete",
            format!(
                "deletionPolicy DeleteSynced not applied to the active DR namespace(s) {}: the live site is never \
                 deleted",
                held.join(", ")
            ),
        )
        .await;
    }
    Ok(Action::await_change())
}
