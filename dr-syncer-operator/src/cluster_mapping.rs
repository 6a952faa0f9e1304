//! The ClusterMapping controller: validates both RemoteClusters and their API connectivity.
//!
//! Phases: `Pending` (new) → `Connecting` → `Connected` or `Failed`. A failure increments
//! `consecutiveFailures` and the next attempt waits `min(2^(n-1) s, 5 min)` with jitter; a success
//! resets it (the Go operator never did). `paused: true` stops all checks. Conditions:
//! `SourceClusterAvailable`, `TargetClusterAvailable`, `Connected`, `Paused`.

use std::{sync::Arc, time::Duration};

use dr_syncer_core::{
    api::{ClusterMapping, ClusterMappingPhase, ClusterMappingStatus, ConnectionDetail, ConnectionStatus},
    ops::{agent_readiness, probe_agents},
    pvc::AgentSettings,
};
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
    let mut status = status.clone();
    let mut conds = status.conditions.take().unwrap_or_default();
    conditions::summarize(
        &mut conds,
        conditions::CLUSTER_MAPPING_READY,
        cm.metadata.generation,
    );
    status.conditions = Some(conds);
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
    // `--shards`: another replica's.
    let Some(_shard) = ctx.admit(cm.as_ref()) else {
        return Ok(Action::await_change());
    };
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
    // SSH connectivity of the data path, when the source runs agents.
    let ssh = if src_result.is_ok() && dst_result.is_ok() {
        ssh_check(&ctx, &cm).await
    } else {
        None
    };
    let ssh_problem = match &ssh {
        Some(Ok(cs)) => {
            status.connection_status = Some(cs.clone());
            (cs.total_source_agents == 0 || cs.connected_agents < cs.total_source_agents).then(|| {
                let details: Vec<String> = cs
                    .connection_details
                    .iter()
                    .flatten()
                    .filter(|d| !d.connected)
                    .map(|d| {
                        format!(
                            "{}: {}",
                            d.source_node,
                            d.error.as_deref().unwrap_or("not connected")
                        )
                    })
                    .collect();
                if cs.total_source_agents == 0 {
                    "no agents in the source cluster yet".to_string()
                } else {
                    format!(
                        "{} of {} source agents reachable over SSH from the target cluster ({})",
                        cs.connected_agents,
                        cs.total_source_agents,
                        details.join("; ")
                    )
                }
            })
        }
        Some(Err(m)) => Some(m.clone()),
        None => {
            status.connection_status = None;
            None
        }
    };
    let dst_result = match (dst_result, ssh_problem) {
        (Ok(_), Some(m)) => Err(ClusterError::ConnectionFailed {
            cluster: dst.clone(),
            message: format!("SSH connectivity: {m}"),
        }),
        (r, _) => r,
    };
    let action = match (&src_result, &dst_result) {
        (Ok(_), Ok(_)) => {
            status.phase = Some(ClusterMappingPhase::Connected);
            status.message = Some(match &status.connection_status {
                Some(cs) => {
                    let mut modes: Vec<String> = cs
                        .connection_details
                        .iter()
                        .flatten()
                        .filter_map(|d| d.exposure_mode.clone())
                        .collect();
                    modes.sort();
                    modes.dedup();
                    format!(
                        "Clusters {src} and {dst} are reachable; {} of {} source agents reachable over SSH{}",
                        cs.connected_agents,
                        cs.total_source_agents,
                        if modes.is_empty() {
                            String::new()
                        } else {
                            format!(" (by {})", modes.join(", "))
                        }
                    )
                }
                None => format!("Clusters {src} and {dst} are reachable"),
            });
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
            Action::requeue(
                health_interval(&ctx, &cm)
                    .await
                    .unwrap_or(ctx.options.recheck_interval),
            )
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

/// How often the source RemoteCluster asks its agents to be checked (`pvcSync.healthCheck.interval`).
async fn health_interval(ctx: &Context, cm: &ClusterMapping) -> Option<Duration> {
    let ns = cm.namespace().unwrap_or_default();
    let source_rc = ctx
        .clusters
        .remote_cluster(&ns, &cm.spec.source_cluster)
        .await
        .ok()?;
    AgentSettings::recheck_interval(&source_rc.spec)
}

/// Check that movers in the target cluster can reach the source's agents over SSH (`None` when the
/// source runs no agents or `verifyConnectivity` is false).
async fn ssh_check(
    ctx: &Context,
    cm: &ClusterMapping,
) -> Option<std::result::Result<ConnectionStatus, String>> {
    if !cm.spec.verify_connectivity {
        return None;
    }
    let ns = cm.namespace().unwrap_or_default();
    let source_rc = ctx
        .clusters
        .remote_cluster(&ns, &cm.spec.source_cluster)
        .await
        .ok()?;
    source_rc.spec.enabled_pvc_sync()?;
    Some(
        async {
            let target_rc = ctx
                .clusters
                .remote_cluster(&ns, &cm.spec.target_cluster)
                .await
                .map_err(|e| e.to_string())?;
            let source = ctx
                .clusters
                .handle_for(&source_rc)
                .await
                .map_err(|e| e.to_string())?;
            let target = ctx
                .clusters
                .handle_for(&target_rc)
                .await
                .map_err(|e| e.to_string())?;
            // The source's agents must accept the target's key first.
            crate::agents::deploy(ctx, &source_rc, &source)
                .await
                .map_err(|e| format!("updating the source agents: {e}"))?;
            let user = crate::agents::cluster_mapping_key(ctx, cm)
                .await
                .map_err(|e| e.to_string())?;
            let key_data = crate::agents::probe_key_data(ctx, user, &source_rc, &target_rc)
                .await
                .map_err(|e| e.to_string())?;
            let settings = AgentSettings::from_spec(source_rc.spec.pvc_sync.as_ref());
            let timeout = Duration::from_secs(
                u64::try_from(cm.spec.connectivity_timeout_seconds.max(10)).unwrap_or(60),
            );
            let probes = probe_agents(
                &source.client,
                &target.client,
                &settings,
                &settings.namespace,
                &format!("{ns}-{}", cm.name_any()),
                &settings.image,
                key_data,
                timeout,
            )
            .await
            .map_err(|e| format!("probing the agents: {e}"))?;
            let total_target_agents = match target_rc.spec.enabled_pvc_sync().is_some() {
                true => agent_readiness(
                    &target.client,
                    &AgentSettings::from_spec(target_rc.spec.pvc_sync.as_ref()),
                )
                .await
                .map(|r| r.total_nodes)
                .unwrap_or(0),
                false => 0,
            };
            Ok(ConnectionStatus {
                total_source_agents: i32::try_from(probes.len()).unwrap_or(i32::MAX),
                total_target_agents: i32::try_from(total_target_agents).unwrap_or(i32::MAX),
                connected_agents: i32::try_from(probes.iter().filter(|p| p.connected).count())
                    .unwrap_or(i32::MAX),
                connection_details: Some(
                    probes
                        .into_iter()
                        .map(|p| ConnectionDetail {
                            source_node: p.node,
                            target_node: "mover".into(),
                            connected: p.connected,
                            error: p.error,
                            address: p.connected.then_some(p.ip),
                            exposure_mode: p.mode.map(|m| m.to_string()),
                        })
                        .collect(),
                ),
            })
        }
        .await,
    )
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
