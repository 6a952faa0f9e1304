//! A NamespaceMapping's status after a sync, computed from the engine's reports (pure).

use std::{collections::BTreeMap, time::Duration};

use dr_syncer_core::{
    api::{
        DeploymentScale, ErrorCategory, FailureMode, LastError, NamespaceMappingStatus, NamespaceSyncStatus,
        ResourceGroupStatus, ResourceStatus, RetryConfig, RetryStatus, SyncPhase, SyncState, SyncStats,
    },
    engine::{KindStats, SyncReport},
    failure::FailureCategory,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::due::{Reason, format_duration};
use crate::conditions;

pub use dr_syncer_core::ops::RunError;

mod freshness;
mod site_state;
pub use self::{
    freshness::{Freshness, set_staleness, staleness},
    site_state::{both_active_message, deletions_held, destination_active_message},
};

/// What one sync of a mapping did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Why it ran.
    pub reason: Reason,
    /// One report per namespace pair that synced.
    pub reports: Vec<SyncReport>,
    /// Namespace pairs that could not sync.
    pub run_errors: Vec<RunError>,
    /// When it finished.
    pub finished: Time,
    /// How long it took.
    pub duration: Duration,
    /// The retry scheduled after a failure.
    pub retry: Option<RetryStatus>,
    /// Retries are used up under `RetryOnly`: scheduled syncs stop until the spec changes.
    pub halted: bool,
    /// Source and destination cluster names (for messages).
    pub clusters: (String, String),
    /// With `namespaceSelector`: every matched pair (source, destination).
    pub selected: Option<Vec<(String, String)>>,
    /// When the last source change was seen (continuous mode).
    pub last_watch_event: Option<Time>,
    /// Pairs whose DR namespace is active while production runs unfenced: `dst (running: …)`.
    pub both_active: Vec<String>,
    /// The deletion brake's window (see [`NamespaceMappingStatus::recent_deletions`]).
    pub recent_deletions: Vec<dr_syncer_core::api::RecentDeletions>,
}

impl Outcome {
    /// Whether everything synced.
    pub fn is_success(&self) -> bool {
        self.run_errors.is_empty() && self.reports.iter().all(SyncReport::is_success)
    }

    /// The failure categories of this sync, with counts.
    pub fn categories(&self) -> BTreeMap<FailureCategory, i32> {
        let mut out = BTreeMap::new();
        for e in &self.run_errors {
            *out.entry(e.category).or_insert(0) += 1;
        }
        for f in self.reports.iter().flat_map(|r| &r.failures) {
            *out.entry(f.category).or_insert(0) += 1;
        }
        out
    }
}

/// Condition `Watching` of a continuous mapping: whether its source changes arrive through the source
/// cluster's shared watches (one per type) or, for the types in `per_namespace`, through a watch per
/// namespace because the source identity may not watch them cluster-wide. `None`: the mapping does not
/// watch (the condition goes).
pub fn set_watching(
    s: &mut NamespaceMappingStatus,
    per_namespace: Option<&[String]>,
    generation: Option<i64>,
) {
    let conds = s.conditions.get_or_insert_with(Vec::new);
    match per_namespace {
        None => conditions::remove(conds, "Watching"),
        Some([]) => conditions::set(
            conds,
            "Watching",
            true,
            "SharedWatches",
            "changes arrive through the source cluster's shared watches (one per type for all mappings)",
            generation,
        ),
        Some(types) => conditions::set(
            conds,
            "Watching",
            true,
            "PerNamespaceWatches",
            format!(
                "the source identity may not watch {} across namespaces: they are watched in each namespace \
                 (one watch per namespace and type; grant cluster-wide list/watch to share one per type)",
                types.join(", ")
            ),
            generation,
        ),
    }
    if s.conditions.as_ref().is_some_and(Vec::is_empty) {
        s.conditions = None;
    }
}

/// Objects the sync tried to bring over (everything but what selection or a transformer left out).
fn tried(k: &KindStats) -> u32 {
    k.total() - k.excluded
}

fn synced(k: &KindStats) -> u32 {
    k.created + k.updated + k.unchanged + k.recreated
}

const MAX_RESOURCE_STATUS: usize = 50;

/// The status after `o` (see the module docs). Full syncs replace the counts; continuous mode's
/// incremental batches keep the last full sync's counts and update the rest.
pub fn after_sync(
    old: &NamespaceMappingStatus,
    o: &Outcome,
    generation: Option<i64>,
) -> NamespaceMappingStatus {
    let mut s = old.clone();
    let ok = o.is_success();
    s.phase = Some(if ok {
        SyncPhase::Completed
    } else {
        SyncPhase::Failed
    });
    s.last_sync_time = Some(o.finished.clone());
    if ok {
        s.last_successful_sync_time = Some(o.finished.clone());
    }
    s.sync_progress = None;
    if o.last_watch_event.is_some() {
        s.last_watch_event = o.last_watch_event.clone();
    }

    // A pair whose DR side is live was held back: nothing was compared or written there, so its counts
    // are not this sync's (the last full sync's stay when every pair was held).
    let synced_reports: Vec<&SyncReport> = o.reports.iter().filter(|r| !r.destination_active).collect();
    let all_held = !o.reports.is_empty() && synced_reports.is_empty() && o.run_errors.is_empty();
    let mut kinds: BTreeMap<String, KindStats> = BTreeMap::new();
    for r in &synced_reports {
        // The DR Namespace itself is the container, not one of the synced objects.
        for (gk, k) in r.kinds.iter().filter(|(gk, _)| gk.as_str() != "Namespace") {
            let e = kinds.entry(gk.clone()).or_default();
            e.created += k.created;
            e.updated += k.updated;
            e.unchanged += k.unchanged;
            e.recreated += k.recreated;
            e.skipped += k.skipped;
            e.excluded += k.excluded;
            e.deleted += k.deleted;
            e.failed += k.failed;
        }
    }
    let as_i32 = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    if o.reason.is_full() && !all_held {
        let total: u32 = kinds.values().map(tried).sum();
        let good: u32 = kinds.values().map(synced).sum();
        let failed: u32 = kinds.values().map(|k| k.failed).sum();
        s.sync_stats = Some(SyncStats {
            total_resources: as_i32(total),
            successful_syncs: as_i32(good),
            failed_syncs: as_i32(failed),
            last_sync_duration: format_duration(o.duration),
        });
        let groups: Vec<ResourceGroupStatus> = kinds
            .iter()
            .filter(|(_, k)| tried(k) > 0)
            .map(|(gk, k)| ResourceGroupStatus {
                group_kind: gk.clone(),
                total_count: as_i32(tried(k)),
                synced_count: as_i32(synced(k)),
                failed_count: as_i32(k.failed),
                pending_count: as_i32(tried(k) - synced(k) - k.failed),
            })
            .collect();
        s.resource_groups = (!groups.is_empty()).then_some(groups);
        s.deployment_scales = deployment_scales(old.deployment_scales.as_deref(), &o.reports, &o.finished);
    } else if let Some(stats) = s.sync_stats.as_mut() {
        stats.last_sync_duration = format_duration(o.duration);
    }

    // Errors of this sync (cleared by a successful one).
    let first_failure = o.reports.iter().flat_map(|r| &r.failures).next();
    s.last_error = match (o.run_errors.first(), first_failure) {
        (Some(e), _) => Some(LastError {
            message: e.message.clone(),
            time: o.finished.clone(),
            resource: Some(format!("Namespace/{}", e.source_namespace)),
        }),
        (None, Some(f)) => Some(LastError {
            message: f.message.clone(),
            time: o.finished.clone(),
            resource: Some(f.object.clone()),
        }),
        (None, None) => None,
    };
    let categories: Vec<ErrorCategory> = o
        .categories()
        .into_iter()
        .map(|(c, n)| ErrorCategory {
            category: c.as_str().to_owned(),
            count: n,
            last_occurred: o.finished.clone(),
        })
        .collect();
    s.error_categories = (!categories.is_empty()).then_some(categories);
    let failed: Vec<ResourceStatus> = o
        .reports
        .iter()
        .flat_map(|r| r.failures.iter().map(move |f| (r, f)))
        .take(MAX_RESOURCE_STATUS)
        .map(|(r, f)| {
            let mut parts = f.object.splitn(3, '/');
            let kind = parts.next().unwrap_or_default().to_owned();
            let (namespace, name) = match (parts.next(), parts.next()) {
                (Some(ns), Some(name)) => (Some(ns.to_owned()), name.to_owned()),
                (Some(name), None) => (None, name.to_owned()),
                _ => (Some(r.destination_namespace.clone()), String::new()),
            };
            ResourceStatus {
                kind,
                name,
                namespace,
                status: SyncState::Failed,
                last_sync_time: Some(o.finished.clone()),
                error: Some(f.message.clone()),
            }
        })
        .collect();
    s.resource_status = (!failed.is_empty()).then_some(failed);
    s.retry_status = o.retry.clone();

    let mut conds = s.conditions.take().unwrap_or_default();
    let (src, dst) = &o.clusters;
    let active: Vec<&SyncReport> = o.reports.iter().filter(|r| r.destination_active).collect();
    let active_names: Vec<&str> = active.iter().map(|r| r.destination_namespace.as_str()).collect();
    if ok && all_held {
        // Healthy and intentionally idle: the DR side is the live site.
        conditions::set(
            &mut conds,
            "Synced",
            true,
            "DestinationActive",
            format!(
                "Idle: the DR namespace(s) {} on cluster {dst} are the live site (dr-syncer.io/active); nothing is \
                 synced from cluster {src} until a failback clears the mark",
                active_names.join(", ")
            ),
            generation,
        );
    } else if ok {
        conditions::set(
            &mut conds,
            "Synced",
            true,
            "SyncCompleted",
            format!("Resources successfully synced from cluster {src} to cluster {dst}"),
            generation,
        );
    } else {
        let failures: usize = o.reports.iter().map(|r| r.failures.len()).sum::<usize>() + o.run_errors.len();
        let first = s
            .last_error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        let (reason, then) = match (&o.retry, o.halted) {
            (Some(r), _) => (
                "SyncFailed",
                format!(
                    "Retry scheduled in {} ({} retries remaining).",
                    r.backoff_duration, r.retries_remaining
                ),
            ),
            (None, true) => (
                "RetriesExhausted",
                "Retries are used up (failureHandling RetryOnly): no further scheduled syncs until the \
                 mapping changes or dr-syncer.io/sync-now is set."
                    .to_owned(),
            ),
            (None, false) => ("SyncFailed", "The next sync tries again.".to_owned()),
        };
        conditions::set(
            &mut conds,
            "Synced",
            false,
            reason,
            format!("Sync failed: {failures} problem(s), first: {first}. {then}"),
            generation,
        );
    }
    if active.is_empty() {
        conditions::remove(&mut conds, "DestinationActive");
    } else {
        conditions::set(
            &mut conds,
            "DestinationActive",
            true,
            "DestinationActive",
            destination_active_message(&active_names),
            generation,
        );
    }
    if o.both_active.is_empty() {
        conditions::remove(&mut conds, "BothSitesActive");
    } else {
        conditions::set(
            &mut conds,
            "BothSitesActive",
            true,
            "BothSitesActive",
            both_active_message(&o.both_active),
            generation,
        );
    }
    s.recent_deletions = o.recent_deletions.clone();
    // Deletions held back: recomputed by every full sync, raised by any batch that holds some.
    let held = deletions_held(&o.reports);
    if let Some((reason, message)) = held {
        conditions::set(&mut conds, "DeletionHeld", true, reason, message, generation);
    } else if o.reason.is_full() {
        conditions::remove(&mut conds, "DeletionHeld");
    }
    s.conditions = Some(conds);

    if let Some(selected) = &o.selected {
        let mut entries = Vec::new();
        for (src_ns, dst_ns) in selected {
            let report = o.reports.iter().find(|r| &r.source_namespace == src_ns);
            let error = o.run_errors.iter().find(|e| &e.source_namespace == src_ns);
            let previous = old
                .namespaces
                .iter()
                .flatten()
                .find(|n| &n.source == src_ns)
                .cloned();
            let (phase, message) = match (report, error) {
                (_, Some(e)) => (SyncPhase::Failed, Some(e.message.clone())),
                (Some(r), None) if r.is_success() => {
                    (SyncPhase::Completed, r.held.as_ref().map(|h| h.message.clone()))
                }
                (Some(r), None) => (
                    SyncPhase::Failed,
                    r.failures.first().map(|f| format!("{}: {}", f.object, f.message)),
                ),
                // Not part of this (incremental) sync: unchanged.
                (None, None) => {
                    if let Some(p) = previous {
                        entries.push(p);
                    }
                    continue;
                }
            };
            entries.push(NamespaceSyncStatus {
                source: src_ns.clone(),
                destination: dst_ns.clone(),
                phase: Some(phase),
                last_sync_time: Some(o.finished.clone()),
                message,
            });
        }
        s.namespaces = Some(entries);
    }
    s
}

/// The status after a sync was cut short (see `record_interruption`): failed, with a retry per
/// `retry` counted on from the previous retry (consecutive interruptions back off further).
pub fn after_interruption(
    old: &NamespaceMappingStatus,
    retry: &RetryConfig,
    now: i64,
    generation: Option<i64>,
) -> NamespaceMappingStatus {
    let mut s = old.clone();
    s.phase = Some(SyncPhase::Failed);
    s.sync_progress = None;
    let at = k8s_openapi::jiff::Timestamp::from_second(now)
        .map(Time)
        .unwrap_or_else(|_| conditions::now());
    s.retry_status = super::due::next_retry(retry, old.retry_status.as_ref(), FailureMode::RetryAndWait, now);
    let then = match &s.retry_status {
        Some(r) => format!(
            "Retry in {} ({} retries remaining).",
            r.backoff_duration, r.retries_remaining
        ),
        None => "Retries are used up: the next scheduled sync tries again.".to_owned(),
    };
    let message = format!(
        "the last sync was cut short: the operator stopped while it ran (a crash, an out-of-memory kill, a \
         lost leader lease). {then}"
    );
    s.last_error = Some(LastError {
        message: message.clone(),
        time: at,
        resource: None,
    });
    let mut conds = s.conditions.take().unwrap_or_default();
    conditions::set(
        &mut conds,
        "Synced",
        false,
        "SyncInterrupted",
        message,
        generation,
    );
    s.conditions = Some(conds);
    s
}

/// `deploymentScales`: the source replicas of the synced Deployments and StatefulSets; `lastSyncedAt`
/// moves only when the recorded count changes.
fn deployment_scales(
    old: Option<&[DeploymentScale]>,
    reports: &[SyncReport],
    now: &Time,
) -> Option<Vec<DeploymentScale>> {
    let mut out: Vec<DeploymentScale> = reports
        .iter()
        .flat_map(|r| &r.workloads)
        .map(|w| {
            let previous = old.into_iter().flatten().find(|d| d.name == w.name);
            DeploymentScale {
                name: w.name.clone(),
                original_replicas: w.source_replicas,
                last_synced_at: match previous {
                    Some(p) if p.original_replicas == w.source_replicas => p.last_synced_at.clone(),
                    _ => Some(now.clone()),
                },
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests;
