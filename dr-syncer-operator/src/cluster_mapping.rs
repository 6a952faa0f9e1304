//! The ClusterMapping controller: validates both RemoteClusters and their API connectivity.
//!
//! Phases: `Pending` (new) → `Connecting` → `Connected` or `Failed`. A failure increments
//! `consecutiveFailures` and the next attempt waits `min(2^(n-1) s, 5 min)` with jitter; a success
//! resets it (the Go operator never did). `paused: true` stops all checks. Conditions:
//! `SourceClusterAvailable`, `TargetClusterAvailable`, `Connected`, `Paused`.

use std::{sync::Arc, time::Duration};

use dr_syncer_core::api::{ClusterMapping, ClusterMappingPhase, ClusterMappingStatus};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use serde_json::json;
use tracing::instrument;

use crate::{
    OPERATOR_FIELD_MANAGER,
    conditions::{self, now},
    context::Context,
    error::{ClusterError, Error, Result},
};

/// The wait after `failures` consecutive failures: `min(2^(n-1) s, 5 min)`.
pub fn failure_backoff(failures: i64) -> Duration {
    if failures <= 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(2u64.saturating_pow((failures - 1).min(20) as u32).min(300))
}

async fn write(ctx: &Context, cm: &ClusterMapping, status: &ClusterMappingStatus) -> Result<()> {
    let (ns, name) = (cm.namespace().unwrap_or_default(), cm.name_any());
    let api: Api<ClusterMapping> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "ClusterMapping", "status": status});
    api.patch_status(
        &name,
        &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|e| Error::kube(format!("writing status of ClusterMapping {ns}/{name}"), e))?;
    Ok(())
}

async fn check_cluster(ctx: &Context, ns: &str, name: &str) -> Result<String, ClusterError> {
    let rc = ctx.clusters.remote_cluster(ns, name).await?;
    let handle = ctx.clusters.handle_for(&rc).await?;
    handle.check().await
}

/// Reconcile one ClusterMapping.
#[instrument(skip(cm, ctx), fields(clustermapping = %format!("{}/{}", cm.namespace().unwrap_or_default(), cm.name_any())))]
pub async fn reconcile(cm: Arc<ClusterMapping>, ctx: Arc<Context>) -> Result<Action> {
    let ns = cm.namespace().unwrap_or_default();
    let old = cm.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let generation = cm.metadata.generation;
    let mut conds = status.conditions.take().unwrap_or_default();

    if cm.spec.paused {
        conditions::set(
            &mut conds,
            "Paused",
            true,
            "Paused",
            "spec.paused is true: no checks",
            generation,
        );
        status.conditions = Some(conds);
        if status != old {
            write(&ctx, &cm, &status).await?;
        }
        return Ok(Action::await_change());
    }
    conditions::remove(&mut conds, "Paused");

    // Backoff after failures (reset by a success below).
    let failures = old.consecutive_failures.unwrap_or(0);
    if failures > 0
        && old.phase == Some(ClusterMappingPhase::Failed)
        && old.observed_generation() == generation
        && let Some(last) = &old.last_attempt_time
    {
        let wait = failure_backoff(failures);
        let elapsed = (now().0.as_second() - last.0.as_second()).max(0) as u64;
        if elapsed < wait.as_secs() {
            return Ok(Action::requeue(Duration::from_secs(wait.as_secs() - elapsed)));
        }
    }

    if old.phase.is_none() {
        status.phase = Some(ClusterMappingPhase::Pending);
        status.message = Some("Initializing ClusterMapping".into());
        status.conditions = Some(conds);
        write(&ctx, &cm, &status).await?;
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    if old.phase != Some(ClusterMappingPhase::Connected) && old.phase != Some(ClusterMappingPhase::Connecting)
    {
        status.phase = Some(ClusterMappingPhase::Connecting);
        status.message = Some("Verifying API connectivity of both clusters".into());
        status.conditions = Some(conds.clone());
        write(&ctx, &cm, &status).await?;
    }

    let (src, dst) = (&cm.spec.source_cluster, &cm.spec.target_cluster);
    let (src_result, dst_result) = if src == dst {
        let e = ClusterError::ClustersUnspecified(format!(
            "sourceCluster and targetCluster are both {src:?}: a mapping needs two different clusters"
        ));
        (Err(e.clone()), Err(e))
    } else {
        tokio::join!(check_cluster(&ctx, &ns, src), check_cluster(&ctx, &ns, dst))
    };
    for (type_, name, r) in [
        ("SourceClusterAvailable", src, &src_result),
        ("TargetClusterAvailable", dst, &dst_result),
    ] {
        match r {
            Ok(v) => conditions::set(
                &mut conds,
                type_,
                true,
                "ConnectionSuccessful",
                format!("RemoteCluster {name} answers (Kubernetes {v})"),
                generation,
            ),
            Err(e) => conditions::set(&mut conds, type_, false, e.reason(), e.to_string(), generation),
        }
    }
    status.last_attempt_time = Some(now());
    let action = match (&src_result, &dst_result) {
        (Ok(_), Ok(_)) => {
            status.phase = Some(ClusterMappingPhase::Connected);
            status.message = Some(format!("Clusters {src} and {dst} are reachable"));
            status.last_verified = Some(now());
            status.consecutive_failures = Some(0);
            conditions::set(
                &mut conds,
                "Connected",
                true,
                "ConnectionSuccessful",
                "both clusters are reachable",
                generation,
            );
            if old.phase != Some(ClusterMappingPhase::Connected) {
                ctx.event(
                    cm.as_ref(),
                    false,
                    "Connected",
                    "Verify",
                    format!("Clusters {src} and {dst} are reachable"),
                )
                .await;
            }
            Action::requeue(ctx.options.recheck_interval)
        }
        _ => {
            let problems: Vec<String> = [&src_result, &dst_result]
                .into_iter()
                .filter_map(|r| r.as_ref().err().map(ToString::to_string))
                .collect();
            let reason = [&src_result, &dst_result]
                .into_iter()
                .find_map(|r| r.as_ref().err().map(ClusterError::reason))
                .unwrap_or("Failed");
            let message = format!("Failed to validate clusters: {}", problems.join("; "));
            let n = failures + 1;
            status.phase = Some(ClusterMappingPhase::Failed);
            status.message = Some(message.clone());
            status.consecutive_failures = Some(n);
            conditions::set(
                &mut conds,
                "Connected",
                false,
                reason,
                message.clone(),
                generation,
            );
            ctx.event(cm.as_ref(), true, reason, "Verify", message).await;
            Action::requeue(failure_backoff(n).max(Duration::from_secs(1)))
        }
    };
    status.conditions = Some(conds);
    if status != old {
        write(&ctx, &cm, &status).await?;
    }
    Ok(action)
}

/// `observedGeneration` of the `Connected` condition (the generation the last check saw).
trait ObservedGeneration {
    fn observed_generation(&self) -> Option<i64>;
}

impl ObservedGeneration for ClusterMappingStatus {
    fn observed_generation(&self) -> Option<i64> {
        self.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Connected")
            .and_then(|c| c.observed_generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let secs: Vec<u64> = (0..12).map(|n| failure_backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }
}
