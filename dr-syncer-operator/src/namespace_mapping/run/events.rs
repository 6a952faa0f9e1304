//! What a sync tells the world besides status: metrics, Events (once per state where a state lasts),
//! and the cleanup of namespaces that left the selector with the Events that say what it did.

use dr_syncer_core::{
    api::NamespaceMappingStatus,
    brake::GoAhead,
    engine::SyncReport,
    ops::{Cleanup, RunError},
};
use tracing::info;

use super::{Runner, go_ahead_value};
use crate::{
    metrics::{DurationLabels, MappingLabels, SiteLabels},
    namespace_mapping::{
        due,
        status::{self, Outcome},
    },
};

impl Runner<'_> {
    /// Namespaces that left the selector (`previous`: the status before this sync): with
    /// `cleanupOnUnlabel`, what was synced from them is deleted (through the site checks); either way
    /// an Event says what happened. Failures join `run_errors`.
    pub(super) async fn clean_up_unselected(
        &self,
        previous: &NamespaceMappingStatus,
        run_errors: &mut Vec<RunError>,
    ) {
        let ctx = self.ctx;
        let nm = self.nm.as_ref();
        let Some(sel) = &nm.spec.namespace_selector else {
            return;
        };
        for gone in previous
            .namespaces
            .iter()
            .flatten()
            .filter(|n| !self.run.pairs().iter().any(|(s, _)| *s == n.source))
        {
            if !sel.cleanup_on_unlabel {
                info!(namespace = %gone.source, "no longer selected; DR copy kept (cleanupOnUnlabel is false)");
                continue;
            }
            match self.run.cleanup_unselected(&gone.source, &gone.destination).await {
                Ok(Cleanup::Deleted(n)) => {
                    ctx.event_about(
                        nm,
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
                        nm,
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
                    category: dr_syncer_core::failure::FailureCategory::Other,
                    message: format!("cleanup of {}: {e}", gone.destination),
                    ..RunError::of(&gone.source, &gone.destination, &e)
                }),
            }
        }
    }

    /// For the pairs whose DR namespace is active, those where production runs unfenced (both sites
    /// active), described for status; sets the `both_sites_active` gauge of every pair.
    pub(super) async fn both_active(&self, reports: &[SyncReport]) -> Vec<String> {
        let active = self.run.active_pairs(reports).await;
        let gauge = |namespace: &str, value: bool| {
            self.ctx
                .metrics
                .both_sites_active
                .get_or_create(&SiteLabels {
                    mapping: self.run.key().to_owned(),
                    namespace: namespace.to_owned(),
                })
                .set(i64::from(value));
        };
        for r in reports.iter().filter(|r| !r.destination_active) {
            gauge(&r.destination_namespace, false);
        }
        let mut out = Vec::new();
        for pair in active {
            gauge(&pair.destination_namespace, pair.both_active);
            out.extend(pair.description);
        }
        out
    }

    pub(super) fn record_metrics(&self, outcome: &Outcome, full: bool) {
        let m = &self.ctx.metrics;
        for r in &outcome.reports {
            m.record_sync(r, None);
            let held = r.deletion_hold.as_ref().map_or(0, |h| h.pending);
            if full || held > 0 {
                m.deletions_held
                    .get_or_create(&SiteLabels {
                        mapping: self.run.key().to_owned(),
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
                mapping: self.run.key().to_owned(),
                mode: if full { "full" } else { "incremental" }.into(),
            })
            .observe(outcome.duration.as_secs_f64());
        if outcome.is_success() {
            let labels = MappingLabels {
                mapping: self.run.key().to_owned(),
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

    pub(super) async fn emit_events(&self, outcome: &Outcome, full: bool, before: &NamespaceMappingStatus) {
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
            // Continuous mode's batches are too frequent for an Event each (metrics count them); a
            // periodic sync that changed nothing after a successful one says nothing new either.
            let changed = totals.0 + totals.1 + totals.2 > 0;
            let quiet = outcome.reason.is_periodic()
                && !changed
                && before.phase == Some(dr_syncer_core::api::SyncPhase::Completed);
            if full && !quiet {
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
    async fn emit_site_events(&self, outcome: &Outcome, before: &NamespaceMappingStatus) {
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
            let message = status::destination_active_message(&active);
            if had("DestinationActive").as_deref() != Some(message.as_str()) {
                ctx.event(nm, false, "DestinationActive", "Sync", message).await;
            }
        }
        // Held deletions: one Warning Event when the hold starts (its counts move while it lasts).
        if let Some((_, message)) = status::deletions_held(&outcome.reports)
            && had("DeletionHeld").is_none()
        {
            let message = match go_ahead_value(nm).map(|v| GoAhead::parse_annotation(&v)) {
                Some(Err(e)) => format!("{message}. {e}"),
                _ => message,
            };
            ctx.event(nm, true, "DeletionHeld", "Sync", message).await;
        }
        if !outcome.both_active.is_empty() {
            let message = status::both_active_message(&outcome.both_active);
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
