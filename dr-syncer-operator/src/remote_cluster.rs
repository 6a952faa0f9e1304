//! The RemoteCluster controller: reads the kubeconfig from the referenced Secret, validates it, connects
//! (server version), and reports conditions `KubeconfigAvailable`, `KubeconfigValid`, `ClusterAvailable`
//! (and `ScheduleValid` when `defaultSchedule` is set) with the Go operator's reasons, plus
//! `status.health` (`Healthy` / `Unhealthy`). Healthy clusters are checked again every
//! `recheck_interval`, unhealthy ones every `unhealthy_recheck_interval`.
//!
//! The Secret is read on every check (no cluster-wide Secret watch, so the operator needs only `get` on
//! Secrets); a changed Secret gives a new client at the next check or sync.

use std::sync::Arc;

use dr_syncer_core::{
    annotations::ACCEPT_CLUSTER_IDENTITY,
    api::{ClusterIdentity, RemoteCluster, RemoteClusterStatus},
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

/// What a check found, before it becomes status.
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// `Err((reason, message))` when `defaultSchedule` is invalid; `None` when not set.
    pub schedule: Option<Result<(), String>>,
    /// The kubeconfig Secret and key exist.
    pub available: Result<(), ClusterError>,
    /// The kubeconfig yields a client.
    pub valid: Result<(), ClusterError>,
    /// The cluster answered (its version).
    pub connected: Result<String, ClusterError>,
    /// The identity of the cluster reached (its `kube-system` UID), when it could be read.
    pub identity: Option<String>,
    /// The identity the `dr-syncer.io/accept-cluster-identity` annotation accepts.
    pub accept: Option<String>,
}

/// The spec fields that are accepted for the Go schema's sake but have no effect here, each with why.
pub fn unused_fields(spec: &dr_syncer_core::api::RemoteClusterSpec) -> Vec<String> {
    let mut out = Vec::new();
    if spec
        .pvc_sync
        .as_ref()
        .is_some_and(|p| p.rsync_daemon_set.is_some())
    {
        out.push(
            "spec.pvcSync.rsyncDaemonSet is not used: dr-syncer's agent DaemonSet (spec.pvcSync) serves the \
             PVC data; remove the field"
                .to_owned(),
        );
    }
    if spec
        .pvc_sync
        .as_ref()
        .and_then(|p| p.ssh.as_ref())
        .is_some_and(|s| s.key_secret_ref.is_some())
    {
        out.push(
            "spec.pvcSync.ssh.keySecretRef is not used: dr-syncer generates, pins and rotates a host key per \
             RemoteCluster (dr-syncer-agent-host-keys-<name>) and one key per transfer; remove the field"
                .to_owned(),
        );
    }
    out
}

/// Turn a check into status conditions and health (pure).
pub fn status_from(
    name: &str,
    check: &CheckResult,
    old: &RemoteClusterStatus,
    generation: Option<i64>,
) -> RemoteClusterStatus {
    let mut status = old.clone();
    let mut conds = status.conditions.take().unwrap_or_default();
    match &check.schedule {
        None => conditions::remove(&mut conds, "ScheduleValid"),
        Some(Ok(())) => conditions::set(
            &mut conds,
            "ScheduleValid",
            true,
            "ScheduleValidated",
            "defaultSchedule is valid",
            generation,
        ),
        Some(Err(m)) => conditions::set(
            &mut conds,
            "ScheduleValid",
            false,
            "InvalidSchedule",
            m.clone(),
            generation,
        ),
    }
    let not_checked = "not checked: an earlier step failed";
    match &check.available {
        Ok(()) => conditions::set(
            &mut conds,
            "KubeconfigAvailable",
            true,
            "KubeconfigFound",
            "kubeconfig Secret found",
            generation,
        ),
        Err(e) => conditions::set(
            &mut conds,
            "KubeconfigAvailable",
            false,
            e.reason(),
            e.to_string(),
            generation,
        ),
    }
    match (&check.available, &check.valid) {
        (Ok(()), Ok(())) => conditions::set(
            &mut conds,
            "KubeconfigValid",
            true,
            "KubeconfigValidated",
            "kubeconfig is valid",
            generation,
        ),
        (Ok(()), Err(e)) => conditions::set(
            &mut conds,
            "KubeconfigValid",
            false,
            e.reason(),
            e.to_string(),
            generation,
        ),
        (Err(_), _) => conditions::set(
            &mut conds,
            "KubeconfigValid",
            false,
            "NotChecked",
            not_checked,
            generation,
        ),
    }
    match (&check.available, &check.valid, &check.connected) {
        (Ok(()), Ok(()), Ok(version)) => conditions::set(
            &mut conds,
            "ClusterAvailable",
            true,
            "ConnectionSuccessful",
            format!("Successfully connected to cluster {name} (Kubernetes {version})"),
            generation,
        ),
        (Ok(()), Ok(()), Err(e)) => conditions::set(
            &mut conds,
            "ClusterAvailable",
            false,
            e.reason(),
            e.to_string(),
            generation,
        ),
        _ => conditions::set(
            &mut conds,
            "ClusterAvailable",
            false,
            "NotChecked",
            not_checked,
            generation,
        ),
    }
    // The pinned identity: recorded on first contact, moved only by an acceptance.
    let pinned = status.cluster_identity.as_ref().map(|c| c.uid.clone());
    let mut identity_changed = false;
    if let Some(found) = &check.identity {
        match pinned.as_deref() {
            Some(p) if p == found => conditions::remove(&mut conds, "ClusterIdentityChanged"),
            Some(p) if check.accept.as_deref() != Some(found.as_str()) => {
                identity_changed = true;
                conditions::set(
                    &mut conds,
                    "ClusterIdentityChanged",
                    true,
                    "ClusterIdentityChanged",
                    ClusterError::IdentityChanged {
                        cluster: name.to_owned(),
                        name: name.to_owned(),
                        pinned: p.to_owned(),
                        found: found.clone(),
                    }
                    .to_string(),
                    generation,
                );
            }
            // First contact, or a new cluster accepted.
            _ => {
                status.cluster_identity = Some(match &status.cluster_identity {
                    Some(old) => old.moved_to(found, Some(now())),
                    None => ClusterIdentity {
                        uid: found.clone(),
                        recorded_at: Some(now()),
                        replaces: Vec::new(),
                    },
                });
                conditions::remove(&mut conds, "ClusterIdentityChanged");
            }
        }
    } else if conds
        .iter()
        .any(|c| c.type_ == "ClusterIdentityChanged" && c.status == "True")
    {
        // Not readable now: still held.
        identity_changed = true;
    }
    let healthy = check.available.is_ok()
        && check.valid.is_ok()
        && check.connected.is_ok()
        && !identity_changed
        && !matches!(check.schedule, Some(Err(_)));
    status.health = Some(if healthy { "Healthy" } else { "Unhealthy" }.into());
    status.conditions = Some(conds);
    status
}

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
mod tests {
    use super::*;

    #[test]
    fn go_fields_without_meaning_here_are_reported() {
        let spec = |pvc: serde_json::Value| -> dr_syncer_core::api::RemoteClusterSpec {
            serde_json::from_value(serde_json::json!({
                "kubeconfigSecretRef": {"name": "k", "namespace": "n"},
                "pvcSync": pvc,
            }))
            .unwrap()
        };
        assert!(unused_fields(&spec(serde_json::json!({"enabled": true}))).is_empty());
        let both = unused_fields(&spec(serde_json::json!({
            "enabled": true,
            "rsyncDaemonSet": {"enabled": true},
            "ssh": {"port": 2222, "keySecretRef": {"name": "keys", "namespace": "dr-syncer"}},
        })));
        assert_eq!(both.len(), 2, "{both:?}");
        assert!(both[0].contains("rsyncDaemonSet") && both[1].contains("keySecretRef"));
    }

    fn ok() -> CheckResult {
        CheckResult {
            schedule: None,
            available: Ok(()),
            valid: Ok(()),
            connected: Ok("v1.36.4".into()),
            identity: Some("uid-a".into()),
            accept: None,
        }
    }

    fn cond<'a>(s: &'a RemoteClusterStatus, t: &str) -> (&'a str, &'a str) {
        let c = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn healthy_cluster() {
        let s = status_from("dr", &ok(), &Default::default(), Some(1));
        assert_eq!(s.health.as_deref(), Some("Healthy"));
        assert_eq!(cond(&s, "KubeconfigAvailable"), ("True", "KubeconfigFound"));
        assert_eq!(cond(&s, "KubeconfigValid"), ("True", "KubeconfigValidated"));
        assert_eq!(cond(&s, "ClusterAvailable"), ("True", "ConnectionSuccessful"));
        assert!(
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .all(|c| c.type_ != "ScheduleValid")
        );
    }

    #[test]
    fn go_reasons_for_each_failure() {
        let missing = CheckResult {
            available: Err(ClusterError::SecretNotFound("dr/kc".into())),
            valid: Err(ClusterError::SecretNotFound("dr/kc".into())),
            connected: Err(ClusterError::SecretNotFound("dr/kc".into())),
            ..ok()
        };
        let s = status_from("dr", &missing, &Default::default(), None);
        assert_eq!(s.health.as_deref(), Some("Unhealthy"));
        assert_eq!(
            cond(&s, "KubeconfigAvailable"),
            ("False", "KubeconfigSecretNotFound")
        );
        assert_eq!(cond(&s, "ClusterAvailable"), ("False", "NotChecked"));

        let key = ClusterError::KeyNotFound {
            secret: "dr/kc".into(),
            key: "kubeconfig".into(),
        };
        let s = status_from(
            "dr",
            &CheckResult {
                available: Err(key.clone()),
                valid: Err(key),
                ..ok()
            },
            &Default::default(),
            None,
        );
        assert_eq!(
            cond(&s, "KubeconfigAvailable"),
            ("False", "KubeconfigKeyNotFound")
        );

        let bad = ClusterError::InvalidKubeconfig {
            secret: "dr/kc".into(),
            message: "garbage".into(),
        };
        let s = status_from(
            "dr",
            &CheckResult {
                valid: Err(bad.clone()),
                connected: Err(bad),
                ..ok()
            },
            &Default::default(),
            None,
        );
        assert_eq!(cond(&s, "KubeconfigAvailable"), ("True", "KubeconfigFound"));
        assert_eq!(cond(&s, "KubeconfigValid"), ("False", "InvalidKubeconfig"));

        let down = ClusterError::ConnectionFailed {
            cluster: "dr".into(),
            message: "refused".into(),
        };
        let s = status_from(
            "dr",
            &CheckResult {
                connected: Err(down),
                ..ok()
            },
            &Default::default(),
            None,
        );
        assert_eq!(cond(&s, "ClusterAvailable"), ("False", "ConnectionFailed"));

        let s = status_from(
            "dr",
            &CheckResult {
                schedule: Some(Err("bad".into())),
                ..ok()
            },
            &Default::default(),
            None,
        );
        assert_eq!(cond(&s, "ScheduleValid"), ("False", "InvalidSchedule"));
        assert_eq!(s.health.as_deref(), Some("Unhealthy"));
    }

    #[test]
    fn identity_is_pinned_on_first_contact_and_moved_only_by_an_acceptance() {
        let s = status_from("dr", &ok(), &Default::default(), None);
        assert_eq!(s.cluster_identity.as_ref().map(|c| c.uid.as_str()), Some("uid-a"));

        // Another cluster behind the kubeconfig: not healthy, the pin stays, the condition names both.
        let other = CheckResult {
            identity: Some("uid-b".into()),
            ..ok()
        };
        let changed = status_from("dr", &other, &s, None);
        assert_eq!(changed.health.as_deref(), Some("Unhealthy"));
        assert_eq!(
            changed.cluster_identity.as_ref().map(|c| c.uid.as_str()),
            Some("uid-a")
        );
        assert_eq!(
            cond(&changed, "ClusterIdentityChanged"),
            ("True", "ClusterIdentityChanged")
        );
        let message = &changed
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "ClusterIdentityChanged")
            .unwrap()
            .message;
        assert!(
            message.contains("uid-a") && message.contains("accept-cluster-identity=uid-b"),
            "{message}"
        );
        // Unreadable now: still held.
        let unknown = CheckResult {
            identity: None,
            ..ok()
        };
        assert_eq!(
            status_from("dr", &unknown, &changed, None).health.as_deref(),
            Some("Unhealthy")
        );
        // An acceptance of some other UID changes nothing; of this one, moves the pin.
        let wrong = CheckResult {
            accept: Some("uid-c".into()),
            ..other.clone()
        };
        assert_eq!(
            status_from("dr", &wrong, &changed, None).health.as_deref(),
            Some("Unhealthy")
        );
        let accepted = status_from(
            "dr",
            &CheckResult {
                accept: Some("uid-b".into()),
                ..other
            },
            &changed,
            None,
        );
        assert_eq!(accepted.health.as_deref(), Some("Healthy"));
        assert_eq!(
            accepted.cluster_identity.as_ref().map(|c| c.uid.as_str()),
            Some("uid-b")
        );
        assert_eq!(
            accepted.cluster_identity.as_ref().unwrap().replaces,
            ["uid-a"],
            "the cluster it replaces is kept, for the DR namespaces filled from it"
        );
        assert!(
            accepted
                .conditions
                .as_ref()
                .unwrap()
                .iter()
                .all(|c| c.type_ != "ClusterIdentityChanged")
        );
    }
}
