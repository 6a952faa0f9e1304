//! PVC data replication through the Kubernetes API: deploy the agents, and run transfers with mount and
//! mover pods (the pure half is [`crate::pvc`]).
//!
//! One transfer ([`PvcDataSync::sync_one`]):
//! 1. **lock** — a Lease `dr-syncer-pvc-…` in the DR namespace, held (and renewed) for the transfer: a
//!    second mover for the same PVC — from another mapping, another operator replica or the CLI — is not
//!    started while it is held, and an operator that crashed loses it after its duration;
//! 2. **find the volume** — the node where the source PVC is mounted, from the pods' status; when no pod
//!    mounts it, a read-only mount pod is created and waited for;
//! 3. **reader** — the agent pod of that node, found by its status (Ready, `hostIP`);
//! 4. **move** — a key pair generated for this transfer alone; a Secret with its private half and the
//!    pinned host keys, and the mover pod, in the DR namespace;
//! 5. **grant** — once the mover pod runs (its addresses known), a key of the agents' grants ConfigMap
//!    names the pod and the PV, the transfer's public key, an expiry ([`GRANT_WINDOW`], renewed while the
//!    transfer runs) and the addresses the key is accepted from (the mover pod's and its node's, or
//!    `pvcSync.moverSourceAddresses`); the agent of that node serves the volume to that key only. The
//!    mover waits for it; its log's JSON lines are followed for progress, its termination message is the
//!    result;
//! 6. **clean up** — mover pod and Secret, grant, mount pod and Lease are removed whatever happened.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{ConfigMap, PersistentVolumeClaim, Pod},
    },
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use tracing::{Instrument, debug, info, info_span, warn};

mod reach;

use crate::kube::FIELD_MANAGER;
use crate::{
    data::{DataMoverError, TransferStats},
    error::{Error, Result},
    keys::{AuthorizedClientKeys, HostKeyPins, KeyPair, KeySecrets},
    pvc::{
        AgentSettings, HostPathGrant, KeyBinding, MoverEvent, MoverProgress, SourceVolume, TransferGrant,
        TransferSettings,
        exposure::{Endpoint, ExposureMode},
        grant::check_address,
        grant_name, host_path,
        manifests::{self, MoverTarget},
        object_name,
    },
};

/// The keys of one source → DR pair: the agents' host key and the movers' client key.
#[derive(Debug, Clone)]
pub struct AgentKeys {
    /// The agents' host key pair.
    pub host: KeyPair,
    /// The movers' client key pair.
    pub client: KeyPair,
}

impl AgentKeys {
    /// New keys for the agents of `cluster`.
    ///
    /// # Errors
    /// No randomness available.
    pub fn generate(cluster: &str) -> Result<Self> {
        let names = KeySecrets::for_remote_cluster(cluster);
        let key = |r: std::result::Result<KeyPair, crate::keys::KeyError>| {
            r.map_err(|e| Error::InvalidConfig(format!("generating SSH keys: {e}")))
        };
        Ok(AgentKeys {
            host: key(names.generate_host_key())?,
            client: key(names.generate_client_key())?,
        })
    }

    /// The host key a mover pins.
    ///
    /// # Errors
    /// The host key cannot be pinned.
    pub fn pins(&self) -> Result<HostKeyPins> {
        HostKeyPins::new(vec![self.host.public_key()])
            .map_err(|e| Error::InvalidConfig(format!("pinning the host key: {e}")))
    }
}

fn api_err(context: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let context = context.into();
    move |e| Error::kube(context, e)
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Delete `name` in the background; whether it was there (an object already gone is not an error).
///
/// # Errors
/// [`Error::Kube`] naming `what` for any other failure.
async fn delete_if_present<K>(api: &Api<K>, name: &str, what: &str) -> Result<bool>
where
    K: kube::Resource + serde::de::DeserializeOwned + Clone + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(true),
        Err(e) if is_status(&e, 404) => Ok(false),
        Err(e) => Err(Error::kube(format!("deleting {what}"), e)),
    }
}

async fn apply<K>(api: &Api<K>, name: &str, object: &K) -> Result<()>
where
    K: kube::Resource + serde::Serialize + serde::de::DeserializeOwned + Clone + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(api_err(format!("applying {name}")))?;
    Ok(())
}

/// Deploy (or update) the agents of a cluster: namespace, key Secrets, grants ConfigMap, DaemonSet.
/// Grants already in the ConfigMap are kept.
///
/// # Errors
/// [`Error::Kube`] naming the object that could not be written.
pub async fn deploy_agents(
    client: &Client,
    settings: &AgentSettings,
    cluster: &str,
    host: &KeyPair,
    authorized: &AuthorizedClientKeys,
) -> Result<()> {
    // Validated with the kubelet root the agents will use (a discovered one is as forbidden a prefix as
    // a configured one).
    let settings = &reach::with_kubelet_root(client, settings).await?;
    settings.validate().map_err(Error::InvalidConfig)?;
    let names = KeySecrets::for_remote_cluster(cluster);
    let ns = &settings.namespace;
    apply(
        &Api::all(client.clone()),
        ns,
        &manifests::agent_namespace(settings),
    )
    .await?;
    let secrets = Api::namespaced(client.clone(), ns);
    apply(
        &secrets,
        &names.host_keys(),
        &manifests::host_keys_secret(settings, &names, host),
    )
    .await?;
    apply(
        &secrets,
        &names.authorized_keys(),
        &manifests::authorized_keys_secret(settings, &names, authorized),
    )
    .await?;
    apply(
        &Api::<ConfigMap>::namespaced(client.clone(), ns),
        &settings.grants_configmap,
        &manifests::grants_configmap(settings),
    )
    .await?;
    apply(
        &Api::namespaced(client.clone(), ns),
        &settings.name,
        &manifests::agent_daemonset(settings, &names),
    )
    .await?;
    reach::sync_node_port_service(client, settings).await
}

/// The first of 2222, 2232, 2242 … (health port one above) that no other dr-syncer agent DaemonSet of the
/// cluster (the operator's, another CLI run's) serves on: agents use the host network, so two on one port
/// would collide on every node.
///
/// # Errors
/// [`Error::Kube`] when the DaemonSets cannot be listed.
pub async fn free_agent_port(client: &Client) -> Result<u16> {
    let api: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default().labels(&format!(
            "app.kubernetes.io/managed-by={}",
            crate::pvc::MANAGED_BY
        )))
        .await
        .map_err(api_err("listing the dr-syncer agent DaemonSets"))?;
    let used: std::collections::BTreeSet<i32> = list
        .items
        .iter()
        .filter_map(|ds| ds.spec.as_ref()?.template.spec.as_ref())
        .flat_map(|spec| spec.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .map(|p| p.container_port)
        .collect();
    (0..100u16)
        .map(|i| 2222 + i * 10)
        .find(|p| !used.contains(&i32::from(*p)) && !used.contains(&(i32::from(*p) + 1)))
        .ok_or_else(|| Error::InvalidConfig("no free port for the temporary agents".into()))
}

/// Remove what [`deploy_agents`] created (not the namespace).
///
/// # Errors
/// [`Error::Kube`] for failures other than "not found".
pub async fn remove_agents(client: &Client, settings: &AgentSettings, cluster: &str) -> Result<()> {
    let names = KeySecrets::for_remote_cluster(cluster);
    let ns = &settings.namespace;
    let ds: Api<k8s_openapi::api::apps::v1::DaemonSet> = Api::namespaced(client.clone(), ns);
    delete_if_present(&ds, &settings.name, "the agent DaemonSet").await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    delete_if_present(&cms, &settings.grants_configmap, "the grants").await?;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), ns);
    for name in [names.host_keys(), names.authorized_keys()] {
        delete_if_present(&secrets, &name, &name).await?;
    }
    reach::remove_node_port_service(client, settings).await?;
    reach::remove_transfer_load_balancers(client, settings).await
}

/// Readiness of the agents of a cluster, from their pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentReadiness {
    /// Nodes whose agent pod is Ready.
    pub ready_nodes: usize,
    /// Nodes with an agent pod.
    pub total_nodes: usize,
    /// Per node: ready, and the IP the agent serves on (its `hostIP`).
    pub nodes: BTreeMap<String, (bool, Option<String>)>,
    /// Per node: the agent pod's own IP (the node's with the host network).
    pub pod_ips: BTreeMap<String, String>,
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The agents' readiness per node.
///
/// # Errors
/// [`Error::Kube`] when the pods cannot be listed.
pub async fn agent_readiness(client: &Client, settings: &AgentSettings) -> Result<AgentReadiness> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &settings.namespace);
    let list = pods
        .list(&ListParams::default().labels(&manifests::agent_selector(settings)))
        .await
        .map_err(api_err("listing the agent pods"))?;
    let mut out = AgentReadiness::default();
    for pod in list.items {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let ready = pod_ready(&pod) && pod.metadata.deletion_timestamp.is_none();
        let ip = pod.status.as_ref().and_then(|s| s.host_ip.clone());
        let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let entry = out.nodes.entry(node.clone()).or_insert((false, None));
        if ready || !entry.0 {
            *entry = (ready, ip);
            match pod_ip {
                Some(p) => out.pod_ips.insert(node, p),
                None => out.pod_ips.remove(&node),
            };
        }
    }
    out.total_nodes = out.nodes.len();
    out.ready_nodes = out.nodes.values().filter(|(r, _)| *r).count();
    Ok(out)
}

pub use super::volume::{
    ManagedBy, PvcPair, PvcProgressFn, PvcSyncOutcome, PvcSyncResult, PvcSyncStage, SyncedSide, VolumeSync,
    synced_pvc_pairs,
};

/// Per-node limits of concurrent transfers reading from one source cluster (`pvcSync.concurrency`),
/// shared by everything copying from it.
#[derive(Debug)]
pub struct NodeLimits {
    limit: usize,
    nodes: std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl NodeLimits {
    /// At most `limit` transfers per node.
    pub fn new(limit: usize) -> Self {
        NodeLimits {
            limit: limit.max(1),
            nodes: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The limit per node.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Wait for a slot on `node`; held until the permit is dropped.
    pub async fn acquire(&self, node: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            nodes
                .entry(node.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.limit)))
                .clone()
        };
        semaphore.acquire_owned().await.ok()
    }
}

/// How a builder changes the built-in data path: given the [`PvcDataSync`] configured for a mapping (or a
/// drill), the [`VolumeSync`] to use instead — the same one wrapped (snapshot first, instrumentation), or
/// a replacement that uses its clients ([`PvcDataSync::clients`]).
#[derive(Clone)]
pub struct VolumeSyncHook(Arc<dyn Fn(PvcDataSync) -> Arc<dyn VolumeSync> + Send + Sync>);

impl VolumeSyncHook {
    /// A hook calling `f`.
    pub fn new(f: impl Fn(PvcDataSync) -> Arc<dyn VolumeSync> + Send + Sync + 'static) -> Self {
        VolumeSyncHook(Arc::new(f))
    }

    /// The mover for `built_in`, with `hook` if any.
    pub fn mover(hook: Option<&VolumeSyncHook>, built_in: PvcDataSync) -> Arc<dyn VolumeSync> {
        match hook {
            Some(h) => (h.0)(built_in),
            None => Arc::new(built_in),
        }
    }
}

impl std::fmt::Debug for VolumeSyncHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VolumeSyncHook")
    }
}

/// Runs PVC transfers from a source cluster (with agents deployed) into a DR cluster.
#[derive(Clone)]
pub struct PvcDataSync {
    source: Client,
    destination: Client,
    agents: AgentSettings,
    mover_image: String,
    mover_pull_policy: Option<String>,
    pins: HostKeyPins,
    transfer: TransferSettings,
    holder: String,
    lock_duration: Duration,
    wait_timeout: Duration,
    poll: Duration,
    global: Option<Arc<tokio::sync::Semaphore>>,
    per_node: Option<Arc<NodeLimits>>,
    stamp: bool,
}

impl std::fmt::Debug for PvcDataSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PvcDataSync")
            .field("agents", &self.agents)
            .field("mover_image", &self.mover_image)
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl VolumeSync for PvcDataSync {
    async fn sync_one(&self, pair: PvcPair, progress: &PvcProgressFn<'_>) -> PvcSyncResult {
        self.copy_one(pair, progress).await
    }
}

impl PvcDataSync {
    /// Transfers from `source` (agents per `agents`) to `destination`; movers pin the agents' host keys
    /// `pins` and authenticate with a key generated for each transfer; `holder` names the lock holder
    /// (e.g. the operator's pod, or `cli@host`).
    pub fn new(
        source: Client,
        destination: Client,
        agents: AgentSettings,
        pins: HostKeyPins,
        holder: impl Into<String>,
    ) -> Self {
        PvcDataSync {
            source,
            destination,
            mover_image: agents.image.clone(),
            mover_pull_policy: agents.pull_policy.clone(),
            agents,
            pins,
            transfer: TransferSettings::default(),
            holder: holder.into(),
            lock_duration: Duration::from_secs(60),
            wait_timeout: Duration::from_secs(300),
            poll: Duration::from_secs(1),
            global: None,
            per_node: None,
            stamp: true,
        }
    }

    /// Do not record the copy time on the receiving PVC (a copy back into production: its claims are
    /// not DR copies).
    pub fn without_copy_stamp(mut self) -> Self {
        self.stamp = false;
        self
    }

    /// Transfer settings (excludes, bandwidth, timeout, verification …).
    pub fn with_transfer(mut self, transfer: TransferSettings) -> Self {
        self.transfer = transfer;
        self
    }

    /// Image of the mover pods (default: the agents' image).
    pub fn with_mover_image(mut self, image: impl Into<String>, pull_policy: Option<String>) -> Self {
        self.mover_image = image.into();
        self.mover_pull_policy = pull_policy;
        self
    }

    /// How long the lock is valid without renewal (renewed every third of it while the transfer runs).
    pub fn with_lock_duration(mut self, d: Duration) -> Self {
        self.lock_duration = d.max(Duration::from_secs(3));
        self
    }

    /// How long to wait for a mount pod, an agent or the mover pod to start.
    pub fn with_wait_timeout(mut self, d: Duration) -> Self {
        self.wait_timeout = d;
        self
    }

    /// How often the mover is polled.
    pub fn with_poll_interval(mut self, d: Duration) -> Self {
        self.poll = d.max(Duration::from_millis(100));
        self
    }

    /// A limit shared with other `PvcDataSync`s (e.g. every mapping reading the same source cluster).
    pub fn with_global_limit(mut self, limit: Arc<tokio::sync::Semaphore>) -> Self {
        self.global = Some(limit);
        self
    }

    /// Limits per source node shared with other `PvcDataSync`s reading from the same cluster.
    pub fn with_node_limits(mut self, limits: Arc<NodeLimits>) -> Self {
        self.per_node = Some(limits);
        self
    }

    /// The clients of the reading (source) and the writing (destination) cluster.
    pub fn clients(&self) -> (&Client, &Client) {
        (&self.source, &self.destination)
    }

    /// Copy one PVC's data (see the module documentation for the steps); [`VolumeSync::sync_one`].
    pub async fn copy_one(&self, pair: PvcPair, progress: &PvcProgressFn<'_>) -> PvcSyncResult {
        let start = Instant::now();
        let span = info_span!("pvc_sync", pvc = %pair);
        let _permit = match &self.global {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        };
        let mut node = None;
        let outcome = async {
            let lease = match self.lock(&pair).await {
                Ok(Some(l)) => l,
                Ok(None) => {
                    return PvcSyncOutcome::Skipped(format!(
                        "another transfer of {} holds its lock",
                        pair.destination_pvc
                    ));
                }
                Err(e) => return PvcSyncOutcome::Failed(e),
            };
            let mut cleanup = Cleanup::default();
            let started = crate::kube::site::timestamp();
            let result = self.transfer(&pair, progress, &mut cleanup, &mut node).await;
            self.clean(&pair, &cleanup).await;
            if result.is_ok() && self.stamp {
                // The copy's start: what it holds is at least this fresh.
                self.stamp_copied(&pair, &started).await;
            }
            lease.release().await;
            match result {
                Ok(stats) => PvcSyncOutcome::Synced(stats),
                Err(e) => PvcSyncOutcome::Failed(e),
            }
        }
        .instrument(span)
        .await;
        match &outcome {
            PvcSyncOutcome::Synced(s) => {
                info!(pvc = %pair, bytes = s.bytes_sent, files = s.files_transferred, "PVC data synced")
            }
            PvcSyncOutcome::Skipped(r) => info!(pvc = %pair, "PVC data sync skipped: {r}"),
            PvcSyncOutcome::Failed(e) => warn!(pvc = %pair, "PVC data sync failed: {e}"),
        }
        PvcSyncResult {
            pair,
            node,
            outcome,
            duration: start.elapsed(),
        }
    }

    async fn transfer(
        &self,
        pair: &PvcPair,
        progress: &PvcProgressFn<'_>,
        cleanup: &mut Cleanup,
        node_out: &mut Option<String>,
    ) -> Result<TransferStats> {
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.source.clone(), &pair.source_namespace);
        let claim = claims.get(&pair.source_pvc).await.map_err(api_err(format!(
            "reading source PVC {}/{}",
            pair.source_namespace, pair.source_pvc
        )))?;
        if claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_none_or(str::is_empty)
        {
            return Err(Error::InvalidConfig(format!(
                "source PVC {}/{} is not bound to a volume",
                pair.source_namespace, pair.source_pvc
            )));
        }
        let dr_claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.destination.clone(), &pair.destination_namespace);
        dr_claims
            .get(&pair.destination_pvc)
            .await
            .map_err(api_err(format!(
                "reading DR PVC {}/{} (the object sync creates it first)",
                pair.destination_namespace, pair.destination_pvc
            )))?;

        // 2. Where is the volume mounted? (And a slot on that node, within `pvcSync.concurrency`.) A
        // hostPath PV's data is in a node directory: no mount is needed, only an allowed directory.
        let pv = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        let node_dir = reach::node_directory(&self.source, &pv).await;
        let volume = match &node_dir {
            Some(dir) => self.locate_node_directory(pair, &claim, dir).await?,
            None => self.locate(pair, &claim, progress, cleanup).await?,
        };
        *node_out = Some(volume.node.clone());
        let _node_slot = match &self.per_node {
            Some(limits) => limits.acquire(&volume.node).await,
            None => None,
        };

        // 3. The reader on that node, and the addresses to dial it at (by the exposure mode).
        let (host_ip, pod_ip) = self.reader_ip(&volume.node).await?;
        let grant = grant_name(
            &pair.source_namespace,
            &pair.source_pvc,
            (&pair.destination_namespace, &pair.destination_pvc),
        );
        let load_balancer = if self.agents.exposure.mode == Some(ExposureMode::LoadBalancer) {
            cleanup.load_balancer = Some(grant.clone());
            Some(
                reach::open_load_balancer(
                    &self.source,
                    &self.agents,
                    &grant,
                    &volume.node,
                    &pod_ip,
                    self.wait_timeout,
                    self.poll,
                )
                .await?,
            )
        } else {
            None
        };
        let node_port = if self.agents.exposure.needs_node_port_service() {
            reach::node_port(&self.source, &self.agents).await
        } else {
            None
        };
        let place = reach::agent_place(
            &self.source,
            &volume.node,
            Some(host_ip),
            node_port,
            load_balancer,
        )
        .await;
        let readers: Vec<Endpoint> = self
            .agents
            .exposure
            .candidates(&place, self.agents.port)
            .into_iter()
            .map(|c| c.endpoint)
            .collect();
        if readers.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "pvcSync.exposure {}: no address is known for the agent on node {} (a node without an \
                 ExternalIP, or no NodePort Service): pick another mode",
                self.agents.exposure.describe(),
                volume.node
            )));
        }

        // 4. The mover — never into a namespace marked active (the live site), checked last thing before
        // it starts: the namespace may have been marked since the copy was planned. It authenticates with
        // a key of its own, generated here and never used for anything else.
        if self.receiver_is_live(pair).await {
            return Err(Error::Refused {
                action: format!(
                    "copying PVC data into {}/{}",
                    pair.destination_namespace, pair.destination_pvc
                ),
                reason: crate::site::Reason::DestinationActive,
            });
        }
        let extra_from = self.extra_from()?;
        let key = KeyPair::generate_ed25519(&format!(
            "dr-syncer-transfer@{}/{}",
            pair.destination_namespace, pair.destination_pvc
        ))
        .map_err(|e| Error::InvalidConfig(format!("generating the transfer's key: {e}")))?;
        let pod_name = manifests::mover_pod_name(&pair.destination_namespace, &pair.destination_pvc);
        let pods: Api<Pod> = Api::namespaced(self.destination.clone(), &pair.destination_namespace);
        delete_and_wait(&pods, &pod_name, self.wait_timeout).await?;
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.destination.clone(), &pair.destination_namespace);
        let data = KeySecrets::for_remote_cluster(&self.agents.name).client_key_data(&key, &self.pins);
        let mut secret = manifests::mover_key_secret(&pair.destination_namespace, &pod_name, data);
        manifests::label_owned(&mut secret.metadata, &self.agents);
        apply(&secrets, &pod_name, &secret).await?;
        cleanup.mover_secret = true;
        let source = format!("{}/{}", pair.source_namespace, pair.source_pvc);
        let target = MoverTarget {
            namespace: &pair.destination_namespace,
            pvc: &pair.destination_pvc,
            readers: &readers,
            // The kubelet may take a minute to update the agents' mounted grants: at most the usual
            // three minutes, at most the wait the caller allows.
            grant_wait: self.wait_timeout.min(Duration::from_secs(180)),
            grant: &grant,
            key_secret: &pod_name,
            source: &source,
        };
        let mut pod = manifests::mover_pod(
            &self.mover_image,
            self.mover_pull_policy.as_deref(),
            &target,
            &self.transfer,
        );
        manifests::label_owned(&mut pod.metadata, &self.agents);
        let created = pods
            .create(&PostParams::default(), &pod)
            .await
            .map_err(api_err(format!("creating mover pod {pod_name}")))?;
        cleanup.mover_pod = true;
        // The key Secret belongs to the pod: whoever removes the pod (a person, a later transfer's
        // cleanup) removes the key with it, even when this process never gets to clean up.
        if let Some(uid) = created.metadata.uid.as_deref() {
            let owner = json!({"metadata": {"ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": uid,
            }]}});
            if let Err(e) = secrets
                .patch(&pod_name, &PatchParams::default(), &Patch::Merge(&owner))
                .await
            {
                warn!("making mover pod {pod_name} the owner of its key Secret: {e}");
            }
        }
        progress(
            pair,
            &PvcSyncStage::Starting {
                node: volume.node.clone(),
            },
        );

        // 5. Grant the volume to the transfer's key, from the addresses the mover connects from.
        let from = match extra_from {
            Some(from) => Some(from),
            None => self.mover_addresses(&pods, &pod_name).await?,
        };
        let mut transfer_grant = TransferGrant {
            pod_uid: volume.pod_uid.clone(),
            volume: volume.pv.clone(),
            host_path: node_dir.map(|d| HostPathGrant {
                node: volume.node.clone(),
                path: d.path,
            }),
            binding: KeyBinding {
                key: key.public_key(),
                not_after: grant_expiry(),
                from: from.clone().unwrap_or_default(),
            },
        };
        if from.is_some() {
            // (Marked for removal first: a write whose answer is lost may still have landed.)
            cleanup.grant = Some(grant.clone());
            self.write_grant(&grant, &transfer_grant).await?;
        }
        let written = from.is_some().then_some((grant.as_str(), &mut transfer_grant));
        self.follow(pair, &pods, &pod_name, progress, written).await
    }

    /// `pvcSync.moverSourceAddresses`, checked: `Some(vec![])` for any address (`*`), `None` when not
    /// configured (the mover's own addresses are used).
    fn extra_from(&self) -> Result<Option<Vec<String>>> {
        let list = &self.agents.mover_source_addresses;
        if list.is_empty() {
            return Ok(None);
        }
        if list.len() > crate::pvc::grant::MAX_FROM {
            return Err(Error::InvalidConfig(format!(
                "pvcSync.moverSourceAddresses: more than {} addresses (name ranges instead)",
                crate::pvc::grant::MAX_FROM
            )));
        }
        for entry in list {
            check_address(entry)
                .map_err(|e| Error::InvalidConfig(format!("pvcSync.moverSourceAddresses: {e}")))?;
        }
        if list.iter().any(|e| e == "*") {
            return Ok(Some(Vec::new()));
        }
        Ok(Some(list.clone()))
    }

    /// The addresses the mover pod may connect from: its own IPs and its node's (from the pod's status,
    /// and the Node's addresses when the DR identity may read it). Waits (within the wait timeout) for
    /// the pod to be placed; `None` for a pod that ends first or is gone (no grant is written: its
    /// result is read next).
    async fn mover_addresses(&self, pods: &Api<Pod>, name: &str) -> Result<Option<Vec<String>>> {
        let deadline = Instant::now() + self.wait_timeout;
        loop {
            let pod = pods
                .get_opt(name)
                .await
                .map_err(api_err(format!("reading mover pod {name}")))?;
            let status = pod.as_ref().and_then(|p| p.status.as_ref());
            let ended = status
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|p| p == "Succeeded" || p == "Failed");
            let mut addresses: Vec<String> = status
                .map(|s| {
                    let pod_ips = s.pod_ips.iter().flatten().map(|p| p.ip.clone());
                    let host_ips = s.host_ips.iter().flatten().map(|h| h.ip.clone());
                    pod_ips
                        .chain(host_ips)
                        .chain(s.pod_ip.clone())
                        .chain(s.host_ip.clone())
                        .collect()
                })
                .unwrap_or_default();
            let node = pod
                .as_ref()
                .and_then(|p| p.spec.as_ref())
                .and_then(|s| s.node_name.clone());
            if ended || pod.is_none() {
                return Ok(None);
            }
            if !addresses.is_empty()
                && let Some(node) = node
            {
                let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.destination.clone());
                match nodes.get_opt(&node).await {
                    Ok(Some(n)) => {
                        let node = crate::pvc::exposure::NodeAddresses::of(&n);
                        addresses.extend(node.internal.into_iter().chain(node.external));
                    }
                    Ok(None) => {}
                    Err(e) => debug!("reading node {node} for the mover's addresses: {e}"),
                }
                addresses.retain(|a| check_address(a).is_ok() && a != "*");
                addresses.sort();
                addresses.dedup();
                return Ok(Some(addresses));
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "mover pod {name} was not placed within {:?}",
                    self.wait_timeout
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Write (or renew) the transfer's grant.
    async fn write_grant(&self, name: &str, grant: &TransferGrant) -> Result<()> {
        let grants: Api<ConfigMap> = Api::namespaced(self.source.clone(), &self.agents.namespace);
        grants
            .patch(
                &self.agents.grants_configmap,
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {name: grant.render()}})),
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                if is_status(&e, 404) {
                    Error::InvalidConfig(format!(
                        "no agents in the source cluster (ConfigMap {}/{} is missing): enable pvcSync on its RemoteCluster",
                        self.agents.namespace, self.agents.grants_configmap
                    ))
                } else {
                    Error::kube("granting the volume to the agents", e)
                }
            })
    }

    /// The mounted volume, creating a mount pod when no pod mounts it.
    async fn locate(
        &self,
        pair: &PvcPair,
        claim: &PersistentVolumeClaim,
        progress: &PvcProgressFn<'_>,
        cleanup: &mut Cleanup,
    ) -> Result<SourceVolume> {
        let pods: Api<Pod> = Api::namespaced(self.source.clone(), &pair.source_namespace);
        let list = || async {
            pods.list(&ListParams::default())
                .await
                .map(|l| l.items)
                .map_err(api_err(format!("listing pods of {}", pair.source_namespace)))
        };
        if let Some(v) = SourceVolume::locate(claim, &list().await?) {
            return Ok(v);
        }
        progress(pair, &PvcSyncStage::Mounting);
        let mount = manifests::mount_pod(&self.agents, &pair.source_namespace, &pair.source_pvc, None);
        let name = mount.metadata.name.clone().unwrap_or_default();
        let deadline = Instant::now() + self.wait_timeout;
        loop {
            match pods.create(&PostParams::default(), &mount).await {
                Ok(_) => break,
                Err(e) if is_status(&e, 409) => {
                    // One of an earlier copy that is still terminating (its pod goes gracefully): wait
                    // for it to go and make a new one. A live one (another copy's) is used as it is.
                    let existing = pods
                        .get_opt(&name)
                        .await
                        .map_err(api_err(format!("reading mount pod {name}")))?;
                    if existing.is_some_and(|p| p.metadata.deletion_timestamp.is_none()) {
                        break;
                    }
                    // (Gone meanwhile, or going: create it again.)
                    if Instant::now() >= deadline {
                        return Err(Error::Timeout(format!(
                            "the earlier mount pod {}/{name} was still terminating after {:?}",
                            pair.source_namespace, self.wait_timeout
                        )));
                    }
                    tokio::time::sleep(self.poll).await;
                }
                Err(e) => return Err(Error::kube(format!("creating mount pod {name}"), e)),
            }
        }
        cleanup.mount_pod = Some(name.clone());
        loop {
            if let Some(v) = SourceVolume::locate(claim, &list().await?) {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "mount pod {}/{name} for PVC {} did not run within {:?}",
                    pair.source_namespace, pair.source_pvc, self.wait_timeout
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Where a hostPath PV's data is: its directory must lie below an allowed prefix; its node is the
    /// node of a running pod that uses the claim, else the one the PV's node affinity names.
    async fn locate_node_directory(
        &self,
        pair: &PvcPair,
        claim: &PersistentVolumeClaim,
        dir: &host_path::NodeDirectoryVolume,
    ) -> Result<SourceVolume> {
        if host_path::allowed_prefix(&dir.path, &self.agents.host_path_prefixes).is_none() {
            return Err(Error::InvalidConfig(format!(
                "PVC {}/{} is bound to hostPath PV {} at {:?}, which is not below a directory the source \
                 RemoteCluster allows (pvcSync.hostPathPrefixes: {}): its data is not served",
                pair.source_namespace,
                pair.source_pvc,
                dir.pv,
                dir.path,
                self.agents.host_path_prefixes.join(", ")
            )));
        }
        let pods: Api<Pod> = Api::namespaced(self.source.clone(), &pair.source_namespace);
        let list = pods
            .list(&ListParams::default())
            .await
            .map_err(api_err(format!("listing pods of {}", pair.source_namespace)))?;
        let running = SourceVolume::locate(claim, &list.items).filter(|v| !v.mount_pod);
        let node = running
            .as_ref()
            .map(|v| v.node.clone())
            .or_else(|| dir.node.clone())
            .ok_or_else(|| {
                Error::InvalidConfig(format!(
                    "PVC {}/{}: hostPath PV {} names no single node (kubernetes.io/hostname node affinity) and \
                     no running pod uses it: the node holding its data is unknown",
                    pair.source_namespace, pair.source_pvc, dir.pv
                ))
            })?;
        Ok(SourceVolume {
            pod: running.as_ref().map(|v| v.pod.clone()).unwrap_or_default(),
            pod_uid: String::new(),
            node,
            pv: dir.pv.clone(),
            mount_pod: false,
        })
    }

    /// The host IP and pod IP of the ready agent on `node` (from its pod's status), waiting for it.
    async fn reader_ip(&self, node: &str) -> Result<(String, String)> {
        let deadline = Instant::now() + self.wait_timeout;
        loop {
            let readiness = agent_readiness(&self.source, &self.agents).await?;
            if let Some((true, Some(ip))) = readiness.nodes.get(node) {
                let pod_ip = readiness.pod_ips.get(node).cloned().unwrap_or_else(|| ip.clone());
                return Ok((ip.clone(), pod_ip));
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "no ready dr-syncer agent on node {node} (namespace {}) within {:?}",
                    self.agents.namespace, self.wait_timeout
                )));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Follow the mover until it ends: its result. The grant's expiry is renewed while it runs.
    async fn follow(
        &self,
        pair: &PvcPair,
        pods: &Api<Pod>,
        name: &str,
        progress: &PvcProgressFn<'_>,
        mut grant: Option<(&str, &mut TransferGrant)>,
    ) -> Result<TransferStats> {
        let deadline = Instant::now() + self.transfer.timeout + self.wait_timeout;
        let mut last: Option<MoverProgress> = None;
        loop {
            if let Some((grant_name, grant)) = grant.as_mut()
                && grant_needs_renewal(grant.binding.not_after)
            {
                grant.binding.not_after = grant_expiry();
                if let Err(e) = self.write_grant(grant_name, grant).await {
                    // The next poll tries again; the old expiry still has most of a window to go.
                    warn!("renewing grant {grant_name}: {e}");
                }
            }
            let pod = pods
                .get_opt(name)
                .await
                .map_err(api_err(format!("reading mover pod {name}")))?
                .ok_or_else(|| {
                    Error::Data(DataMoverError::Failed {
                        message: format!("mover pod {name} was deleted"),
                        transient: true,
                    })
                })?;
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            if phase == "Running" || phase == "Succeeded" || phase == "Failed" {
                let params = LogParams {
                    container: Some("mover".into()),
                    tail_lines: Some(20),
                    ..LogParams::default()
                };
                match pods.logs(name, &params).await {
                    Ok(text) => {
                        if let Some(MoverEvent::Progress(p)) =
                            text.lines().rev().find_map(|l| match MoverEvent::parse(l) {
                                Some(e @ MoverEvent::Progress(_)) => Some(e),
                                _ => None,
                            })
                            && last.as_ref() != Some(&p)
                        {
                            progress(pair, &PvcSyncStage::Moving(p.clone()));
                            last = Some(p);
                        }
                    }
                    Err(e) => debug!("reading the mover's log: {e}"),
                }
            }
            if phase == "Succeeded" || phase == "Failed" {
                return self.result(pods, name, &pod, &phase).await;
            }
            if Instant::now() >= deadline {
                return Err(Error::Data(DataMoverError::TimedOut(self.transfer.timeout)));
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn result(&self, pods: &Api<Pod>, name: &str, pod: &Pod, phase: &str) -> Result<TransferStats> {
        let terminated = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.iter().find(|c| c.name == "mover"))
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.clone());
        let mut event = terminated
            .as_ref()
            .and_then(|t| t.message.as_deref())
            .and_then(MoverEvent::last_in);
        if event.is_none()
            && let Ok(text) = pods
                .logs(
                    name,
                    &LogParams {
                        container: Some("mover".into()),
                        tail_lines: Some(50),
                        ..LogParams::default()
                    },
                )
                .await
        {
            event = MoverEvent::last_in(&text);
        }
        match event {
            Some(MoverEvent::Completed(stats)) if phase == "Succeeded" => Ok(stats),
            Some(MoverEvent::Failed {
                kind,
                transient,
                message,
            }) => Err(Error::Data(MoverEvent::into_error(&kind, transient, message))),
            _ => Err(Error::Data(DataMoverError::Failed {
                message: format!(
                    "mover pod {name} ended {phase} (exit code {}) without a result",
                    terminated.map_or("unknown".to_string(), |t| t.exit_code.to_string())
                ),
                transient: true,
            })),
        }
    }

    async fn clean(&self, pair: &PvcPair, cleanup: &Cleanup) {
        let name = manifests::mover_pod_name(&pair.destination_namespace, &pair.destination_pvc);
        let mut results = Vec::new();
        if cleanup.mover_pod {
            let pods: Api<Pod> = Api::namespaced(self.destination.clone(), &pair.destination_namespace);
            results.push(delete_if_present(&pods, &name, &format!("mover pod {name}")).await);
        }
        if cleanup.mover_secret {
            let secrets: Api<k8s_openapi::api::core::v1::Secret> =
                Api::namespaced(self.destination.clone(), &pair.destination_namespace);
            results.push(delete_if_present(&secrets, &name, &format!("mover key Secret {name}")).await);
        }
        if let Some(grant) = &cleanup.grant {
            let grants: Api<ConfigMap> = Api::namespaced(self.source.clone(), &self.agents.namespace);
            if let Err(e) = grants
                .patch(
                    &self.agents.grants_configmap,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {grant: null}})),
                )
                .await
                && !is_status(&e, 404)
            {
                warn!("removing grant {grant}: {e}");
            }
        }
        if let Some(lb) = &cleanup.load_balancer {
            reach::close_load_balancer(&self.source, &self.agents, lb).await;
        }
        if let Some(mount) = &cleanup.mount_pod {
            let pods: Api<Pod> = Api::namespaced(self.source.clone(), &pair.source_namespace);
            results.push(delete_if_present(&pods, mount, &format!("mount pod {mount}")).await);
        }
        for e in results.into_iter().filter_map(std::result::Result::err) {
            warn!("cleaning up: {e}");
        }
    }

    /// Whether the receiving namespace is marked active (the live site): nothing is written into it. A
    /// namespace that cannot be read counts as live.
    async fn receiver_is_live(&self, pair: &PvcPair) -> bool {
        let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.destination.clone());
        match ns.get_opt(&pair.destination_namespace).await {
            Ok(Some(n)) => crate::kube::site::has_mark(&n.metadata, crate::annotations::ACTIVE),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Record on the receiving PVC when its data was copied (`dr-syncer.io/last-data-sync`: what a
    /// promotion reports as the data's age). Best effort: a failure is logged.
    async fn stamp_copied(&self, pair: &PvcPair, started: &str) {
        if self.receiver_is_live(pair).await {
            return;
        }
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.destination.clone(), &pair.destination_namespace);
        let patch = json!({"metadata": {"annotations": {
            crate::annotations::LAST_DATA_SYNC: started,
        }}});
        let params = PatchParams {
            field_manager: Some("dr-syncer-data".into()),
            ..PatchParams::default()
        };
        if let Err(e) = api
            .patch(&pair.destination_pvc, &params, &Patch::Merge(&patch))
            .await
        {
            warn!(pvc = %pair, "recording the copy time: {e}");
        }
    }

    /// Take the PVC's lock; `None` when another holder has it.
    async fn lock(&self, pair: &PvcPair) -> Result<Option<HeldLease>> {
        let name = lock_name(pair);
        let api: Api<Lease> = Api::namespaced(self.destination.clone(), &pair.destination_namespace);
        let secs = i32::try_from(self.lock_duration.as_secs()).unwrap_or(i32::MAX);
        let now = MicroTime(Timestamp::now());
        let fresh = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": pair.destination_namespace,
                         "labels": {"app.kubernetes.io/managed-by": crate::pvc::MANAGED_BY}},
            "spec": {"holderIdentity": self.holder, "leaseDurationSeconds": secs,
                     "acquireTime": now, "renewTime": now},
        });
        let mut lease: Lease = serde_json::from_value(fresh).map_err(|e| Error::Json {
            context: "building the PVC lock".into(),
            source: e,
        })?;
        manifests::label_owned(&mut lease.metadata, &self.agents);
        match api
            .get_opt(&name)
            .await
            .map_err(api_err(format!("reading lock {name}")))?
        {
            None => match api.create(&PostParams::default(), &lease).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 409) => return Ok(None),
                Err(e) => return Err(Error::kube(format!("creating lock {name}"), e)),
            },
            Some(existing) => {
                let spec = existing.spec.clone().unwrap_or_default();
                let ours = spec.holder_identity.as_deref() == Some(self.holder.as_str());
                let expired = match (spec.renew_time.as_ref(), spec.lease_duration_seconds) {
                    (Some(t), Some(d)) => t.0 + SignedDuration::from_secs(i64::from(d)) < Timestamp::now(),
                    _ => true,
                };
                if !ours && !expired && spec.holder_identity.is_some() {
                    return Ok(None);
                }
                let mut take = lease.clone();
                take.metadata.resource_version = existing.metadata.resource_version.clone();
                match api.replace(&name, &PostParams::default(), &take).await {
                    Ok(_) => {}
                    Err(e) if is_status(&e, 409) => return Ok(None),
                    Err(e) => return Err(Error::kube(format!("taking lock {name}"), e)),
                }
            }
        }
        // Renew while the transfer runs.
        let renew_api = api.clone();
        let renew_name = name.clone();
        let holder = self.holder.clone();
        let every = self.lock_duration / 3;
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let patch =
                    json!({"spec": {"renewTime": MicroTime(Timestamp::now()), "holderIdentity": holder}});
                if let Err(e) = renew_api
                    .patch(&renew_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    warn!("renewing lock {renew_name}: {e}");
                }
            }
        });
        Ok(Some(HeldLease {
            api,
            name,
            holder: self.holder.clone(),
            renewer,
        }))
    }
}

/// Name of the Lease that locks a DR PVC's transfers.
pub fn lock_name(pair: &PvcPair) -> String {
    object_name(
        "dr-syncer-pvc",
        &pair.destination_pvc,
        &[&pair.destination_namespace, &pair.destination_pvc],
    )
}

/// How long a transfer's key is accepted after its grant is written or renewed; the orchestrator
/// renews it while the transfer runs, so a key left behind by a crashed orchestrator stops working
/// within this time even if its grant is never removed.
pub const GRANT_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A grant is renewed when less than this is left.
const GRANT_RENEW_BELOW: Duration = Duration::from_secs(10 * 60);

fn grant_expiry() -> SystemTime {
    // Whole seconds: the grant's text keeps no more.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(now) + GRANT_WINDOW
}

fn grant_needs_renewal(not_after: SystemTime) -> bool {
    not_after
        .duration_since(SystemTime::now())
        .map_or(true, |left| left < GRANT_RENEW_BELOW)
}

/// What a transfer created and must remove.
#[derive(Debug, Default)]
struct Cleanup {
    mount_pod: Option<String>,
    /// The grant whose transfer load balancer was made (exposure `LoadBalancer`).
    load_balancer: Option<String>,
    grant: Option<String>,
    mover_secret: bool,
    mover_pod: bool,
}

struct HeldLease {
    api: Api<Lease>,
    name: String,
    holder: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl HeldLease {
    async fn release(self) {
        self.renewer.abort();
        // Only our own lease is removed.
        if let Ok(Some(l)) = self.api.get_opt(&self.name).await
            && l.spec.and_then(|s| s.holder_identity).as_deref() == Some(self.holder.as_str())
        {
            let dp = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    resource_version: l.metadata.resource_version,
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = self.api.delete(&self.name, &dp).await {
                warn!("releasing lock {}: {e}", self.name);
            }
        }
    }
}

/// Delete a pod (if present) and wait until it is gone.
async fn delete_and_wait(pods: &Api<Pod>, name: &str, timeout: Duration) -> Result<()> {
    if !delete_if_present(pods, name, &format!("old pod {name}")).await? {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    while pods
        .get_opt(name)
        .await
        .map_err(api_err(format!("reading pod {name}")))?
        .is_some()
    {
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "old pod {name} was not deleted within {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// One source agent's reachability over SSH from the DR cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentProbe {
    /// The source node.
    pub node: String,
    /// The address that answered (`host:port`), else the first one probed.
    pub ip: String,
    /// The exposure mode of the address that answered.
    pub mode: Option<ExposureMode>,
    /// Whether the agent answered with the pinned host key and accepted the client key.
    pub connected: bool,
    /// Why not.
    pub error: Option<String>,
}

/// Check from a pod in `namespace` of the DR cluster that every ready agent of the source cluster
/// answers over SSH as a mover needs it to (pinned host key, client key accepted), at the addresses of
/// the cluster's exposure mode (`pvcSync.exposure`); the addresses of the other modes are probed too,
/// and an agent the movers cannot reach is reported with the mode that would work (or what to do when
/// none does). The pod and its key Secret are removed afterwards. Agents that are not ready are reported
/// as not connected.
///
/// # Errors
/// [`Error::Kube`] when the pod cannot be created or read, [`Error::Timeout`] when it does not finish
/// within `timeout`.
#[allow(clippy::too_many_arguments)] // the two clusters, where and what to run, and the keys
pub async fn probe_agents(
    source: &Client,
    destination: &Client,
    agents: &AgentSettings,
    namespace: &str,
    name: &str,
    image: &str,
    key_data: BTreeMap<String, Vec<u8>>,
    timeout: Duration,
) -> Result<Vec<AgentProbe>> {
    let readiness = agent_readiness(source, agents).await?;
    let node_port = reach::node_port(source, agents).await;
    // Per ready agent: the addresses of the modes the movers use, then those of the other modes that
    // need nothing made for them — so that a failure can name the mode that would work. With exposure
    // `LoadBalancer`, one load balancer for the probe's time, to the first ready agent (load balancers
    // cost money and take time: the other ready agents count as reachable when that one answers).
    let lb_mode = agents.exposure.mode == Some(ExposureMode::LoadBalancer);
    let mut lb_node: Option<String> = None;
    let mut candidates: BTreeMap<String, Vec<crate::pvc::exposure::Candidate>> = BTreeMap::new();
    let mut probes: Vec<AgentProbe> = Vec::new();
    let mut load_balancers = Vec::new();
    let mut result: Result<()> = Ok(());
    for (node, (ready, ip)) in &readiness.nodes {
        let mut probe = AgentProbe {
            node: node.clone(),
            ip: ip.clone().unwrap_or_default(),
            mode: None,
            connected: false,
            error: (!ready || ip.is_none()).then(|| "agent not ready".to_string()),
        };
        // In mode LoadBalancer, the agents after the first ready one are judged by its load balancer,
        // below.
        if probe.error.is_none() && !(lb_mode && lb_node.is_some()) {
            let load_balancer = if lb_mode {
                lb_node = Some(node.clone());
                let lb_name = format!("probe.{name}.{node}");
                load_balancers.push(lb_name.clone());
                let pod_ip = readiness
                    .pod_ips
                    .get(node)
                    .cloned()
                    .unwrap_or_else(|| probe.ip.clone());
                match reach::open_load_balancer(
                    source,
                    agents,
                    &lb_name,
                    node,
                    &pod_ip,
                    timeout,
                    Duration::from_millis(500),
                )
                .await
                {
                    Ok(a) => Some(a),
                    Err(e) => {
                        probe.error = Some(e.to_string());
                        None
                    }
                }
            } else {
                None
            };
            if probe.error.is_none() {
                let place = reach::agent_place(source, node, ip.clone(), node_port, load_balancer).await;
                let list = agents.exposure.probe_candidates(&place, agents.port);
                match list.first() {
                    None => probe.error = crate::pvc::exposure::judge(&agents.exposure, node, &[]).error,
                    Some(first) => {
                        probe.ip = first.endpoint.to_string();
                        candidates.insert(node.clone(), list);
                    }
                }
            }
        }
        probes.push(probe);
    }
    let answers = if candidates.is_empty() {
        BTreeMap::new()
    } else {
        match ask_agents(
            destination,
            agents,
            namespace,
            name,
            image,
            &key_data,
            &candidates,
            timeout,
        )
        .await
        {
            Ok(a) => a,
            Err(e) => {
                result = Err(e);
                BTreeMap::new()
            }
        }
    };
    for lb in &load_balancers {
        reach::close_load_balancer(source, agents, lb).await;
    }
    result?;
    for p in probes.iter_mut().filter(|p| p.error.is_none()) {
        let Some(list) = candidates.get(&p.node) else {
            continue;
        };

        let judged: Vec<(crate::pvc::exposure::Candidate, Option<String>)> = list
            .iter()
            .map(|c| {
                let err = match answers.get(&c.endpoint.to_string()) {
                    Some((true, _)) => None,
                    Some((false, e)) => Some(e.clone().unwrap_or_else(|| "no answer".into())),
                    None => Some("the probe gave no answer for this address".into()),
                };
                (c.clone(), err)
            })
            .collect();
        let verdict = crate::pvc::exposure::judge(&agents.exposure, &p.node, &judged);
        match verdict.working {
            Some(c) => {
                p.connected = true;
                p.ip = c.endpoint.to_string();
                p.mode = Some(c.mode);
            }
            None => p.error = verdict.error,
        }
    }
    if let Some(lb) = &lb_node {
        let through = probes.iter().find(|p| &p.node == lb).cloned();
        for p in probes
            .iter_mut()
            .filter(|p| &p.node != lb && p.error.is_none() && !p.connected)
        {
            match &through {
                Some(t) if t.connected => {
                    p.connected = true;
                    p.mode = Some(ExposureMode::LoadBalancer);
                    p.ip = String::new();
                }
                _ => {
                    p.error = Some(format!(
                        "the load balancer probed (to the agent on node {lb}) did not answer either"
                    ))
                }
            }
        }
    }
    Ok(probes)
}

/// Ask every candidate address from the probe pod, again (`pvcSync.healthCheck`: `retry_attempts`
/// times, `retry_interval` apart) for the agents none of whose used addresses answered; the answers by
/// address.
#[allow(clippy::too_many_arguments)] // where and what to run, the keys and the addresses
async fn ask_agents(
    destination: &Client,
    agents: &AgentSettings,
    namespace: &str,
    name: &str,
    image: &str,
    key_data: &BTreeMap<String, Vec<u8>>,
    candidates: &BTreeMap<String, Vec<crate::pvc::exposure::Candidate>>,
    timeout: Duration,
) -> Result<BTreeMap<String, (bool, Option<String>)>> {
    let ns_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(destination.clone());
    let mut ns = manifests::agent_namespace(agents);
    ns.metadata.name = Some(namespace.to_string());
    if ns_api
        .get_opt(namespace)
        .await
        .map_err(api_err(format!("reading namespace {namespace}")))?
        .is_none()
    {
        apply(&ns_api, namespace, &ns).await?;
    }
    let mut answers: BTreeMap<String, (bool, Option<String>)> = BTreeMap::new();
    let mut pending: Vec<&String> = candidates.keys().collect();
    for attempt in 0..=agents.health.retry_attempts {
        if attempt > 0 {
            tokio::time::sleep(agents.health.retry_interval).await;
        }
        let mut hosts: Vec<String> = pending
            .iter()
            .flat_map(|n| candidates[*n].iter().map(|c| c.endpoint.to_string()))
            .collect();
        hosts.sort();
        hosts.dedup();
        let got = run_probe_pod(
            destination,
            agents,
            namespace,
            name,
            image,
            key_data,
            &hosts,
            timeout,
        )
        .await?;
        answers.extend(got);
        pending.retain(|n| {
            !candidates[*n].iter().any(|c| {
                agents.exposure.uses(c.mode)
                    && answers.get(&c.endpoint.to_string()).is_some_and(|(ok, _)| *ok)
            })
        });
        if pending.is_empty() {
            break;
        }
    }
    Ok(answers)
}

/// One probe pod in `namespace` of the DR cluster that asks `hosts` over SSH; its answers by host. The
/// pod and its key Secret are removed afterwards.
#[allow(clippy::too_many_arguments)] // where and what to run, and the keys
async fn run_probe_pod(
    destination: &Client,
    agents: &AgentSettings,
    namespace: &str,
    name: &str,
    image: &str,
    key_data: &BTreeMap<String, Vec<u8>>,
    hosts: &[String],
    timeout: Duration,
) -> Result<BTreeMap<String, (bool, Option<String>)>> {
    let pod_name = manifests::probe_pod_name(name);
    let pods: Api<Pod> = Api::namespaced(destination.clone(), namespace);
    delete_and_wait(&pods, &pod_name, timeout).await?;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(destination.clone(), namespace);
    apply(
        &secrets,
        &pod_name,
        &manifests::mover_key_secret(namespace, &pod_name, key_data.clone()),
    )
    .await?;
    let pod = manifests::probe_pod(agents, image, namespace, &pod_name, hosts, &pod_name);
    // The pod dials the addresses one after another, each within the SSH timeout.
    let per_host = agents.health.ssh_timeout + Duration::from_secs(2);
    let timeout =
        timeout.max(per_host * u32::try_from(hosts.len()).unwrap_or(u32::MAX) + Duration::from_secs(30));
    let result = async {
        pods.create(&PostParams::default(), &pod)
            .await
            .map_err(api_err(format!("creating probe pod {pod_name}")))?;
        let deadline = Instant::now() + timeout;
        loop {
            let p = pods
                .get_opt(&pod_name)
                .await
                .map_err(api_err(format!("reading probe pod {pod_name}")))?;
            let phase = p
                .as_ref()
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase.clone());
            if matches!(phase.as_deref(), Some("Succeeded" | "Failed")) {
                let message = p
                    .as_ref()
                    .and_then(|p| p.status.as_ref())
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| c.first())
                    .and_then(|c| c.state.as_ref())
                    .and_then(|s| s.terminated.as_ref())
                    .and_then(|t| t.message.clone());
                // The termination message holds at most 4 KiB (a few dozen answers): the log, when it
                // can be read, has them all (its lines come last and win).
                let logs = pods
                    .logs(&pod_name, &LogParams::default())
                    .await
                    .unwrap_or_default();
                return Ok(format!("{}\n{logs}", message.unwrap_or_default()));
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "probe pod {namespace}/{pod_name} did not finish within {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    .await;
    for e in [
        delete_if_present(&pods, &pod_name, &format!("probe pod {pod_name}")).await,
        delete_if_present(&secrets, &pod_name, &format!("probe key Secret {pod_name}")).await,
    ]
    .into_iter()
    .filter_map(std::result::Result::err)
    {
        warn!("cleaning up: {e}");
    }
    let text = result?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .filter(|v| v["event"] == "probe")
        .filter_map(|v| {
            let host = v["host"].as_str()?.to_string();
            let ok = v["ok"].as_bool().unwrap_or(false);
            let err = (!ok).then(|| v["message"].as_str().unwrap_or("no answer").to_string());
            Some((host, (ok, err)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pvcSync.concurrency`: a node's slots are shared by every copy reading from it; other nodes are
    /// not held up.
    #[tokio::test]
    async fn node_limits_bound_copies_per_node() {
        let limits = NodeLimits::new(2);
        let a1 = limits.acquire("node-a").await.unwrap();
        let _a2 = limits.acquire("node-a").await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(100), limits.acquire("node-a")).await;
        assert!(third.is_err(), "a third copy on node-a waits");
        let other = tokio::time::timeout(Duration::from_millis(100), limits.acquire("node-b")).await;
        assert!(other.is_ok_and(|p| p.is_some()), "node-b is free");
        drop(a1);
        let freed = tokio::time::timeout(Duration::from_millis(100), limits.acquire("node-a")).await;
        assert!(freed.is_ok_and(|p| p.is_some()), "a released slot is taken");
    }

    #[test]
    fn a_grant_is_renewed_well_before_it_expires() {
        assert!(!grant_needs_renewal(grant_expiry()));
        assert!(grant_needs_renewal(SystemTime::now() + Duration::from_secs(60)));
        assert!(grant_needs_renewal(SystemTime::now() - Duration::from_secs(1)));
    }
}
