//! The replication-lag gauge (`dr_syncer_replication_lag_seconds`), updated every 2 s for every mapping.

use std::{sync::Arc, time::Duration};

use dr_syncer_core::api::{NamespaceMapping, ReplicationMode};
use kube::{ResourceExt, runtime::reflector::Store};
use tokio_util::sync::CancellationToken;

use crate::{conditions, context::Context, metrics::MappingLabels};

/// Update the gauge from `store` until `stop`.
pub(super) fn spawn_gauge(ctx: Arc<Context>, store: Store<NamespaceMapping>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut known = std::collections::BTreeSet::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
            update_lag(&ctx, &store.state(), &mut known);
        }
    });
}

/// Replication lag per mapping: in continuous mode the age of the oldest change not yet applied (or, after
/// a failure, the time since the last success); otherwise the time since the last successful sync.
fn update_lag(
    ctx: &Context,
    mappings: &[Arc<NamespaceMapping>],
    known: &mut std::collections::BTreeSet<String>,
) {
    let now = conditions::now().0.as_second() as f64;
    let mut seen = std::collections::BTreeSet::new();
    for nm in mappings {
        let key = format!("{}/{}", nm.namespace().unwrap_or_default(), nm.name_any());
        let labels = MappingLabels { mapping: key.clone() };
        let status = nm.status.clone().unwrap_or_default();
        let synced_ok = conditions::is_true(status.conditions.as_ref(), "Synced");
        let from_gauge = ctx.metrics.last_success.get_or_create(&labels).get();
        let last_success = if from_gauge > 0.0 {
            Some(from_gauge)
        } else if synced_ok {
            status.last_sync_time.as_ref().map(|t| t.0.as_second() as f64)
        } else {
            None
        };
        let since_success = last_success.map(|t| (now - t).max(0.0));
        let lag = if nm.spec.replication_mode == ReplicationMode::Continuous {
            let pending = ctx
                .workers
                .buffer(&key)
                .and_then(|b| b.oldest_pending())
                .map_or(0.0, |d| d.as_secs_f64());
            if synced_ok {
                pending
            } else {
                pending.max(since_success.unwrap_or(0.0))
            }
        } else {
            since_success.unwrap_or(0.0)
        };
        ctx.metrics.replication_lag.get_or_create(&labels).set(lag);
        seen.insert(key);
    }
    // Mappings that are gone: their series go too.
    for gone in known.difference(&seen) {
        let labels = MappingLabels {
            mapping: gone.clone(),
        };
        ctx.metrics.replication_lag.remove(&labels);
        ctx.metrics.last_success.remove(&labels);
    }
    *known = seen;
}
