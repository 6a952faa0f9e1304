//! A mapping being deleted: its watches stop and `deletionPolicy` applies (`DeleteSynced` deletes what it
//! synced, never in an active DR namespace).

use std::sync::Arc;

use dr_syncer_core::{
    api::{DeletionPolicy, NamespaceMapping},
    config::SyncConfig,
};
use kube::runtime::controller::Action;
use tracing::info;

use super::{fixed_pair, key_of, run};
use crate::{
    context::Context,
    error::{ClusterError, Result},
};

/// The mapping is being deleted: stop its watches and apply `deletionPolicy`.
pub(super) async fn cleanup(nm: Arc<NamespaceMapping>, ctx: &Context) -> Result<Action> {
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
    let clusters = match super::clusters::Clusters::resolve(ctx, &nm).await {
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
