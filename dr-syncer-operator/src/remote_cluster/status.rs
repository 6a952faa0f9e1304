//! What a RemoteCluster check found, as status (pure).

use dr_syncer_core::api::{ClusterIdentity, RemoteClusterStatus};

use crate::{
    conditions::{self, now},
    error::{ClusterError, Result},
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
