//! PVC data replication, operator side: the SSH keys of each RemoteCluster (kept in the controller
//! cluster), the agents deployed into clusters with `spec.pvcSync.enabled`, their readiness in
//! `status.pvcSync`, key rotation, and the mover key data a transfer needs.
//!
//! Keys (never shared between RemoteClusters) live in the RemoteCluster's namespace of the controller
//! cluster: Secret `dr-syncer-agent-host-keys-<rc>` (the host key of the cluster's agents, as a reader)
//! and `dr-syncer-mover-key-<rc>` (the client key of movers writing into the cluster). The agents accept
//! the client keys of the clusters that read from them: the destinations of NamespaceMappings with
//! `pvcConfig.syncData` whose source is the cluster, plus the user-managed keys of those mappings
//! (`tempPodKeySecretRef`, ClusterMapping `sshKeySecretRef`).
//!
//! **Rotation**: setting the annotation `dr-syncer.io/rotate-ssh-key` on a RemoteCluster to a new value
//! replaces both of its keys. The old client key stays accepted (with an `expiry-time`) and the old host
//! key stays pinned for [`ROTATION_GRACE`]; sshd checks keys at login only, so a transfer that is running
//! continues to its end.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

use dr_syncer_core::{
    api::{AgentStatus, NamespaceMapping, NodeAgentStatus, PvcSyncStatus, RemoteCluster},
    keys::{AuthorizedClientKey, AuthorizedClientKeys, HostKeyPins, KeySecrets, PublicKey, UserKeyPair},
    ops::{agent_readiness, deploy_agents, remove_agents},
    pvc::AgentSettings,
};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt, api::ListParams};
use tracing::{info, warn};

use crate::{
    clusters::ClusterHandle,
    conditions::now,
    context::Context,
    error::{ClusterError, Error, Result},
};

mod keys;

pub use self::keys::{ROTATE_ANNOTATION, ROTATION_GRACE, StoredKey, client_key, host_key};
use self::keys::{data_of, invalid};

/// The user-managed client key pair of a ClusterMapping (`sshKeySecretRef`), if any.
pub async fn cluster_mapping_key(
    ctx: &Context,
    cm: &dr_syncer_core::api::ClusterMapping,
) -> Result<Option<UserKeyPair>> {
    let Some(k) = &cm.spec.ssh_key_secret_ref else {
        return Ok(None);
    };
    let ns = k
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| cm.namespace().unwrap_or_default());
    ctx.clusters
        .check_reference(&cm.namespace().unwrap_or_default(), "Secret", &ns, &k.name)?;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = api
        .get(&k.name)
        .await
        .map_err(|e| Error::kube(format!("reading SSH key Secret {ns}/{}", k.name), e))?;
    UserKeyPair::from_secret_data(&data_of(&secret), &k.private_key_key, &k.public_key_key)
        .map(Some)
        .map_err(invalid(format!("SSH key Secret {ns}/{}", k.name)))
}

/// A mapping that reads from a cluster: its name, its user-managed key, its destination RemoteCluster
/// (`namespace`, `name`).
type Reader = (String, Result<Option<UserKeyPair>>, (String, String));

/// The client keys `source`'s agents accept for connectivity probes (never to read a volume: each
/// transfer brings a key of its own, see `dr_syncer_core::pvc::TransferGrant`): those of the clusters
/// that copy data from it, and the user-managed keys of the ClusterMappings that probe it. A
/// NamespaceMapping's `tempPodKeySecretRef` is accepted in the schema and not used: its author gets no
/// key accepted.
pub async fn authorized_for(ctx: &Context, source: &RemoteCluster) -> Result<AuthorizedClientKeys> {
    let (sns, sname) = (source.namespace().unwrap_or_default(), source.name_any());
    let mut readers: Vec<Reader> = Vec::new();
    let mappings: Api<NamespaceMapping> = Api::all(ctx.client.clone());
    let list = mappings
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("listing NamespaceMappings", e))?;
    for nm in list.items {
        if !nm.spec.pvc_config.as_ref().is_some_and(|p| p.sync_data) {
            continue;
        }
        let Ok(((src_ns, src), destination)) = ctx.clusters.cluster_names(&nm).await else {
            continue;
        };
        if (src_ns.as_str(), src.as_str()) == (sns.as_str(), sname.as_str()) {
            readers.push((nm.name_any(), Ok(None), destination));
        }
    }
    // ClusterMappings reading from this cluster (their connectivity checks log in like movers).
    let cms: Api<dr_syncer_core::api::ClusterMapping> = Api::namespaced(ctx.client.clone(), &sns);
    let list = cms
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::kube("listing ClusterMappings", e))?;
    for cm in list.items.iter().filter(|cm| cm.spec.source_cluster == sname) {
        let destination = (sns.clone(), cm.spec.target_cluster.clone());
        readers.push((cm.name_any(), cluster_mapping_key(ctx, cm).await, destination));
    }

    let mut entries: Vec<AuthorizedClientKey> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut add = |key: PublicKey, expires: Option<SystemTime>| {
        if seen.insert(key.blob()) {
            entries.push(AuthorizedClientKey { key, expires });
        }
    };
    for (mapping, user, (dst_ns, dst)) in readers {
        match user {
            Ok(Some(user)) => add(user.public, None),
            Ok(None) => {}
            Err(e) => warn!(%mapping, "user-managed SSH key: {e}"),
        }
        let Ok(dest) = ctx.clusters.remote_cluster(&dst_ns, &dst).await else {
            continue;
        };
        let key = client_key(ctx, &dest).await?;
        if let Some((p, t)) = key.previous_valid() {
            add(p.clone(), Some(*t));
        }
        add(key.current.public_key(), None);
    }
    Ok(AuthorizedClientKeys::from_entries(entries))
}

/// The host keys a mover pins for `source`'s agents: the current one and, during a rotation, the
/// previous one.
pub async fn host_pins(ctx: &Context, source: &RemoteCluster) -> Result<HostKeyPins> {
    let host = host_key(ctx, source).await?;
    let mut pins = vec![host.current.public_key()];
    if let Some((p, _)) = host.previous_valid() {
        pins.push(p.clone());
    }
    HostKeyPins::new(pins).map_err(invalid("pinning host keys".into()))
}

/// Data of a connectivity probe's key Secret: the probe key (the ClusterMapping's user-managed pair,
/// else the DR cluster's client key; the agents accept it for probes only, never to read a volume) and
/// the pinned host keys.
pub async fn probe_key_data(
    ctx: &Context,
    user: Option<UserKeyPair>,
    source: &RemoteCluster,
    destination: &RemoteCluster,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let pins = host_pins(ctx, source).await?;
    let client = match user {
        Some(user) => user.pair,
        None => client_key(ctx, destination).await?.current,
    };
    Ok(KeySecrets::for_remote_cluster(&destination.name_any()).client_key_data(&client, &pins))
}

/// Deploy (or update) the agents of `rc` with its current keys; returns the host key (for status).
pub async fn deploy(ctx: &Context, rc: &RemoteCluster, handle: &ClusterHandle) -> Result<StoredKey> {
    let settings = AgentSettings::from_spec(rc.spec.pvc_sync.as_ref());
    let host = host_key(ctx, rc).await?;
    let mut authorized = authorized_for(ctx, rc).await?;
    authorized.prune(SystemTime::now());
    deploy_agents(
        &handle.client,
        &settings,
        &rc.name_any(),
        &host.current,
        &authorized,
    )
    .await
    .map_err(Error::Core)?;
    Ok(host)
}

/// Reconcile the agents of `rc`: the new `status.pvcSync` (None when PVC sync is off) and when to look
/// again.
pub async fn reconcile(
    ctx: &Context,
    rc: &RemoteCluster,
    handle: Result<&ClusterHandle, &ClusterError>,
) -> (Option<PvcSyncStatus>, Option<Duration>) {
    let old = rc.status.as_ref().and_then(|s| s.pvc_sync.clone());
    let enabled = rc.spec.enabled_pvc_sync().is_some();
    let settings = AgentSettings::from_spec(rc.spec.pvc_sync.as_ref());
    let Ok(handle) = handle else {
        // The cluster cannot be reached: keep what status said, with the reason.
        return (
            old.map(|mut s| {
                s.phase = Some("Failed".into());
                s.message = Some("the cluster is not reachable".into());
                s
            }),
            None,
        );
    };
    if !enabled {
        if old.is_some() {
            if let Err(e) = remove_agents(&handle.client, &settings, &rc.name_any()).await {
                warn!("removing the agents of {}: {e}", rc.name_any());
                return (old, Some(Duration::from_secs(30)));
            }
            info!("PVC sync disabled: agents removed");
        }
        return (None, None);
    }
    let mut status = old.clone().unwrap_or_default();
    let host = match deploy(ctx, rc, handle).await {
        Ok(h) => h,
        Err(e) => {
            status.phase = Some("Failed".into());
            status.message = Some(format!("deploying the agents: {e}"));
            ctx.event(rc, true, "AgentDeploymentFailed", "DeployAgents", e.to_string())
                .await;
            return (Some(status), Some(Duration::from_secs(30)));
        }
    };
    if host.rotated {
        status.last_key_rotation = Some(now());
        ctx.event(
            rc,
            false,
            "SSHKeysRotated",
            "RotateKeys",
            format!(
                "SSH keys rotated: host key {} (the previous key is accepted for {} min)",
                host.current.fingerprint(),
                ROTATION_GRACE.as_secs() / 60
            ),
        )
        .await;
    }
    // The client key of movers writing into this cluster (generated now, so its fingerprint shows).
    if let Ok(client) = client_key(ctx, rc).await {
        status.client_key_fingerprint = Some(client.current.fingerprint());
    }
    status.host_key_fingerprint = Some(host.current.fingerprint());
    if old.is_none() || host.rotated {
        status.last_deployment_time = Some(now());
    }
    match agent_readiness(&handle.client, &settings).await {
        Ok(r) => {
            let nodes: BTreeMap<String, NodeAgentStatus> = r
                .nodes
                .iter()
                .map(|(n, (ready, ip))| {
                    (
                        n.clone(),
                        NodeAgentStatus {
                            ready: *ready,
                            message: ip.as_ref().map(|ip| format!("serving on {ip}:{}", settings.port)),
                            ..NodeAgentStatus::default()
                        },
                    )
                })
                .collect();
            let (ready, total) = (r.ready_nodes, r.total_nodes);
            status.phase = Some(
                match (ready, total) {
                    (_, 0) => "Deploying",
                    (r, t) if r == t => "Running",
                    _ => "Degraded",
                }
                .into(),
            );
            status.message = Some(format!(
                "{ready} of {total} agents ready in namespace {}",
                settings.namespace
            ));
            status.agent_status = Some(AgentStatus {
                ready_nodes: i32::try_from(ready).unwrap_or(i32::MAX),
                total_nodes: i32::try_from(total).unwrap_or(i32::MAX),
                node_statuses: (!nodes.is_empty()).then_some(nodes),
            });
            let again = (ready < total || total == 0).then_some(Duration::from_secs(10));
            (Some(status), again)
        }
        Err(e) => {
            status.phase = Some("Failed".into());
            status.message = Some(format!("reading agent status: {e}"));
            (Some(status), Some(Duration::from_secs(30)))
        }
    }
}
