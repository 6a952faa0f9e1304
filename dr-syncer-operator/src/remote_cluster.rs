//! The RemoteCluster controller: reads the kubeconfig from the referenced Secret, validates it, connects
//! (server version), and reports conditions `KubeconfigAvailable`, `KubeconfigValid`, `ClusterAvailable`
//! (and `ScheduleValid` when `defaultSchedule` is set) with the Go operator's reasons, plus
//! `status.health` (`Healthy` / `Unhealthy`). Healthy clusters are checked again every
//! `recheck_interval`, unhealthy ones every `unhealthy_recheck_interval`.
//!
//! The Secret is read at every check and sync, at most once a second per RemoteCluster (no cluster-wide
//! Secret watch, so the operator needs only `get` on Secrets); a changed Secret gives a new client at
//! the next check or sync after that.

use std::sync::Arc;

use dr_syncer_core::{
    annotations::ACCEPT_CLUSTER_IDENTITY,
    api::{RemoteCluster, RemoteClusterStatus},
    schedule::Schedule,
};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use serde_json::json;
use tracing::{info, instrument};

use crate::{
    OPERATOR_FIELD_MANAGER,
    clusters::ClusterHandle,
    conditions::{self, now},
    context::Context,
    error::{ClusterError, Error, Result},
};

mod status;

pub use self::status::{CheckResult, status_from, unused_fields};

/// Check `rc`: schedule, Secret, kubeconfig, connection; also the cluster's handle, for what follows.
pub async fn check(
    rc: &RemoteCluster,
    ctx: &Context,
) -> (CheckResult, Result<Arc<ClusterHandle>, ClusterError>) {
    let schedule = rc
        .spec
        .default_schedule
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(|s| Schedule::parse(s).map(|_| ()).map_err(|e| e.to_string()));
    let handle = ctx.clusters.handle_for(rc).await;
    let (available, valid) = match &handle {
        Ok(_) => (Ok(()), Ok(())),
        Err(e @ ClusterError::InvalidKubeconfig { .. }) => (Ok(()), Err(e.clone())),
        Err(e) => (Err(e.clone()), Err(e.clone())),
    };
    let connected = match &handle {
        Ok(h) => h.check().await,
        Err(e) => Err(e.clone()),
    };
    let identity = match (&handle, &connected) {
        (Ok(h), Ok(_)) => h.identity().await.ok().flatten(),
        _ => None,
    };
    (
        CheckResult {
            schedule,
            available,
            valid,
            connected,
            identity,
            accept: rc.annotations().get(ACCEPT_CLUSTER_IDENTITY).cloned(),
        },
        handle,
    )
}

/// Reconcile one RemoteCluster.
#[instrument(skip(rc, ctx), fields(remotecluster = %format!("{}/{}", rc.namespace().unwrap_or_default(), rc.name_any())))]
pub async fn reconcile(rc: Arc<RemoteCluster>, ctx: Arc<Context>) -> Result<Action> {
    // `--shards`: another replica's.
    let Some(_shard) = ctx.admit(rc.as_ref()) else {
        return Ok(Action::await_change());
    };
    let ns = rc.namespace().unwrap_or_default();
    let name = rc.name_any();
    if rc.metadata.deletion_timestamp.is_some() {
        ctx.clusters.forget(&ns, &name);
        return Ok(Action::await_change());
    }
    let (result, handle) = check(&rc, &ctx).await;
    let old = rc.status.clone().unwrap_or_default();
    let mut status = status_from(&name, &result, &old, rc.metadata.generation);
    // Fields of the Go schema that have no meaning here: said, not silently ignored.
    let unused = unused_fields(&rc.spec);
    let mut conds = status.conditions.take().unwrap_or_default();
    if unused.is_empty() {
        conditions::remove(&mut conds, "SpecFieldsUsed");
    } else {
        let message = unused.join("; ");
        let first = !conds
            .iter()
            .any(|c| c.type_ == "SpecFieldsUsed" && c.message == message);
        conditions::set(
            &mut conds,
            "SpecFieldsUsed",
            false,
            "FieldNotUsed",
            message.clone(),
            rc.metadata.generation,
        );
        if first {
            ctx.event(rc.as_ref(), true, "FieldNotUsed", "Check", message)
                .await;
        }
    }
    status.conditions = Some(conds);
    // PVC data replication: the agents of this cluster (with the handle the check made); never into a
    // cluster other than the one this RemoteCluster is pinned to.
    let identity_changed = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "ClusterIdentityChanged" && c.status == "True");
    let reachable = result.connected.is_ok() && !identity_changed;
    let (pvc_sync, pvc_again) = if reachable {
        crate::agents::reconcile(&ctx, &rc, handle.as_deref()).await
    } else {
        let err = ClusterError::ConnectionFailed {
            cluster: name.clone(),
            message: if identity_changed {
                "reaches another cluster than the one it is pinned to".into()
            } else {
                "not reachable".into()
            },
        };
        crate::agents::reconcile(&ctx, &rc, Err(&err)).await
    };
    status.pvc_sync = pvc_sync;
    let healthy = status.health.as_deref() == Some("Healthy");
    let was_healthy = old.health.as_deref() == Some("Healthy");
    // lastSyncTime: the last successful check, written at most once per recheck interval.
    if result.connected.is_ok() {
        let stale = old.last_sync_time.as_ref().is_none_or(|t| {
            let age = now().0.as_second() - t.0.as_second();
            age < 0 || age as u64 >= ctx.options.recheck_interval.as_secs() / 2
        });
        if stale {
            status.last_sync_time = Some(now());
        }
    }
    let mut conds = status.conditions.take().unwrap_or_default();
    conditions::summarize(
        &mut conds,
        conditions::REMOTE_CLUSTER_READY,
        rc.metadata.generation,
    );
    status.conditions = Some(conds);
    if status != old {
        let api: Api<RemoteCluster> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({"apiVersion": "dr-syncer.io/v1alpha1", "kind": "RemoteCluster", "status": status});
        api.patch_status(
            &name,
            &PatchParams::apply(OPERATOR_FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| Error::kube(format!("writing status of RemoteCluster {ns}/{name}"), e))?;
    }
    let changed = |s: &RemoteClusterStatus| {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "ClusterIdentityChanged" && c.status == "True")
            .map(|c| c.message.clone())
    };
    if let Some(message) = changed(&status)
        && changed(&old).is_none()
    {
        ctx.event(rc.as_ref(), true, "ClusterIdentityChanged", "Check", message)
            .await;
    }
    // An acceptance is used once: the annotation goes when the new cluster is pinned.
    if let Some(accepted) = result.accept.as_deref()
        && status
            .cluster_identity
            .as_ref()
            .is_some_and(|c| c.uid == accepted)
    {
        if old.cluster_identity.as_ref().is_some_and(|c| c.uid != accepted) {
            ctx.event(
                rc.as_ref(),
                false,
                "ClusterIdentityAccepted",
                "Check",
                format!("Now pinned to the cluster whose kube-system UID is {accepted}"),
            )
            .await;
        }
        ctx.remove_annotation(rc.as_ref(), ACCEPT_CLUSTER_IDENTITY, accepted)
            .await?;
    }
    if healthy && !was_healthy {
        info!("cluster available");
        ctx.event(
            rc.as_ref(),
            false,
            "ClusterAvailable",
            "Check",
            format!("Successfully connected to cluster {name}"),
        )
        .await;
    } else if !healthy {
        let problem = [&result.available, &result.valid]
            .into_iter()
            .find_map(|r| r.as_ref().err().cloned())
            .or_else(|| result.connected.as_ref().err().cloned());
        let (reason, message) = match (problem, &result.schedule) {
            (Some(e), _) => (e.reason(), e.to_string()),
            (None, Some(Err(m))) => ("InvalidSchedule", m.clone()),
            (None, _) => ("Unhealthy", "cluster is not usable".to_owned()),
        };
        // Repeats of the same problem are aggregated by the recorder into one Event series.
        ctx.event(rc.as_ref(), true, reason, "Check", message).await;
    }
    let again = if healthy {
        // `pvcSync.healthCheck.interval`: how often the agents are checked, when it asks for one.
        dr_syncer_core::pvc::AgentSettings::recheck_interval(&rc.spec).unwrap_or(ctx.options.recheck_interval)
    } else {
        ctx.options.unhealthy_recheck_interval
    };
    Ok(Action::requeue(pvc_again.map_or(again, |p| p.min(again))))
}

#[cfg(test)]
mod tests;
