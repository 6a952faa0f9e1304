//! A mapping that cannot sync: blocked until something changes (a condition, an Event, a slow retry),
//! held idle because its DR side is the live site and production is unreachable, or found interrupted
//! (a sync the operator did not finish).

use std::{sync::Arc, time::Duration};

use dr_syncer_core::{
    api::{NamespaceMapping, NamespaceMappingStatus, ReplicationMode, SyncPhase},
    schedule::Schedule,
};
use kube::{Api, Resource, ResourceExt, runtime::controller::Action};
use tracing::warn;

use super::{
    background_interval, fixed_pair, key_of, run, schedule_expression, set_stale, status, write_status,
};
use crate::{
    conditions::{self, now},
    context::Context,
    error::{Error, Result},
    metrics::ReconcileErrorLabels,
};

/// A problem that stops the mapping until something changes: condition, event, no retry of its own
/// (`bounded`: retry with the object's backoff, for problems that may go away on their own).
pub(super) async fn blocked(
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
pub(super) async fn blocked_until(
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

/// A status still `Running` when a reconcile starts is a sync cut short (no reconcile of this mapping runs
/// meanwhile): the operator stopped during it — a crash, an out-of-memory kill, a lost lease. It is
/// recorded as failed (`SyncInterrupted`, one Warning Event) with a retry after the mapping's backoff, so
/// that a sync that kills the operator again and again backs off instead of starting at once after
/// every restart (and starving the other mappings).
pub(super) async fn record_interruption(
    nm: Arc<NamespaceMapping>,
    ctx: &Context,
) -> Result<Arc<NamespaceMapping>> {
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
pub(super) async fn hold_without_source(
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

/// `--shards`: the `Assigned` condition says which shard the mapping is in and which replica holds it
/// (written when that changes); returns the mapping with it.
pub(super) async fn assigned(nm: Arc<NamespaceMapping>, ctx: &Context) -> Result<Arc<NamespaceMapping>> {
    let Some(shards) = &ctx.options.shards else {
        return Ok(nm);
    };
    let shard = shards.shard_of(nm.meta().uid.as_deref().unwrap_or_default());
    let message = format!(
        "shard {shard} of {}, reconciled by replica {}",
        shards.count(),
        shards.identity()
    );
    let old = nm.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let mut conds = status.conditions.take().unwrap_or_default();
    conditions::set(
        &mut conds,
        "Assigned",
        true,
        "ShardHeld",
        message,
        nm.meta().generation,
    );
    status.conditions = Some(conds);
    with_conditions(nm, ctx, &old, status).await
}

/// Write `status` when its conditions differ from `old`'s; returns the mapping as it is then.
async fn with_conditions(
    nm: Arc<NamespaceMapping>,
    ctx: &Context,
    old: &NamespaceMappingStatus,
    status: NamespaceMappingStatus,
) -> Result<Arc<NamespaceMapping>> {
    if status.conditions == old.conditions {
        return Ok(nm);
    }
    write_status(ctx, &nm, Some(old), &status).await?;
    let mut updated = (*nm).clone();
    updated.status = Some(status);
    Ok(Arc::new(updated))
}

/// A mapping that no longer watches its source (it left continuous mode): its `Watching` condition goes.
pub(super) async fn not_watching(nm: Arc<NamespaceMapping>, ctx: &Context) -> Result<Arc<NamespaceMapping>> {
    let old = nm.status.clone().unwrap_or_default();
    let mut status = old.clone();
    super::status::set_watching(&mut status, None, nm.meta().generation);
    with_conditions(nm, ctx, &old, status).await
}
