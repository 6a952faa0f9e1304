//! The background tasks: watches that wake the reconciler, and the reconciler itself (DaemonSets,
//! Deployments and StatefulSets, PV provisioning, scheduling, pods on the simulated nodes), plus one task
//! per terminating pod (stop its processes, then delete it).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, Deployment, StatefulSet},
        core::v1::{
            ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec, PodTemplateSpec,
            Secret, Service, Volume,
        },
        discovery::v1::EndpointSlice,
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions},
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::{
    sync::{Notify, mpsc},
    task::{JoinHandle, JoinSet},
};

use super::{
    Config, Shared, StartedProcess, kill_groups,
    logic::{self, PathMapping},
    services,
    volumes::{self, Payload},
};

/// How often everything is re-synced without a watch event.
const RESYNC: Duration = Duration::from_secs(1);
/// The annotation on the pods of DaemonSets, Deployments and StatefulSets holding the hash of the template
/// they were made from.
const TEMPLATE_HASH: &str = "sim.dr-syncer.io/template-hash";
/// The CSI driver name of provisioned PVs.
pub(crate) const CSI_DRIVER: &str = "sim.csi.dr-syncer.io";
/// The storage class served like rancher's local-path-provisioner (hostPath PVs on one node).
pub(crate) const LOCAL_PATH_CLASS: &str = "local-path";
/// Where the local-path provisioner makes its directories on a node.
const LOCAL_PATH_DIR: &str = "/var/local-path-provisioner";
/// How long (seconds since its creation) a local-path claim without a pod using it waits for one before
/// its volume goes to the first node.
const LOCAL_PATH_WAIT_SECS: i64 = 3;
/// Longest grace period honoured on pod deletion (kept short for tests; long enough for a test pod
/// that flushes for several seconds on SIGTERM, as a database does).
const MAX_GRACE: Duration = Duration::from_secs(15);

/// The current time as an RFC 3339 timestamp (seconds).
pub(crate) fn now() -> String {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now).to_string()
}

/// Start the watch tasks and the reconciler.
pub(crate) fn spawn(config: Arc<Config>, shared: Arc<Mutex<Shared>>) -> Vec<JoinHandle<()>> {
    let notify = Arc::new(Notify::new());
    let client = config.client.clone();
    let mut tasks = vec![
        watch::<Pod>(&client, &notify),
        watch::<DaemonSet>(&client, &notify),
        watch::<Deployment>(&client, &notify),
        watch::<StatefulSet>(&client, &notify),
        watch::<PersistentVolumeClaim>(&client, &notify),
        watch::<ConfigMap>(&client, &notify),
        watch::<Secret>(&client, &notify),
        watch::<Service>(&client, &notify),
        watch::<EndpointSlice>(&client, &notify),
    ];
    let (exits_tx, exits_rx) = mpsc::unbounded_channel();
    let sim = Sim {
        config,
        shared,
        notify: notify.clone(),
        pods: HashMap::new(),
        exits_tx,
        exits_rx,
        workload_status: HashMap::new(),
        terminating: HashMap::new(),
        terminations: JoinSet::new(),
        lbs: services::LbState::default(),
    };
    tasks.push(tokio::spawn(sim.run()));
    tasks
}

fn watch<K>(client: &Client, notify: &Arc<Notify>) -> JoinHandle<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let api: Api<K> = Api::all(client.clone());
    let notify = notify.clone();
    tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(_) => notify.notify_one(),
                Err(e) => tracing::debug!(error = %e, "simulator watch"),
            }
        }
    })
}

/// A container process ended.
#[derive(Debug)]
struct Exit {
    uid: String,
    container: String,
    pid: i32,
    code: i32,
    finished_at: String,
}

#[derive(Debug, Clone)]
struct Terminated {
    exit_code: i32,
    reason: String,
    message: String,
    started_at: String,
    finished_at: String,
}

impl Terminated {
    fn to_json(&self) -> Value {
        json!({"terminated": {
            "exitCode": self.exit_code, "reason": self.reason, "message": self.message,
            "startedAt": self.started_at, "finishedAt": self.finished_at,
        }})
    }
}

#[derive(Debug)]
struct Ctr {
    binary: PathBuf,
    pid: Option<i32>,
    started_at: Option<String>,
    restart_count: u32,
    /// The final state (no restart coming).
    terminated: Option<Terminated>,
    last_terminated: Option<Terminated>,
    /// When a restart is due (CrashLoopBackOff meanwhile).
    restart_at: Option<Instant>,
}

#[derive(Debug)]
struct PodRt {
    namespace: String,
    name: String,
    node: String,
    dir: PathBuf,
    grace: Duration,
    restart_policy: String,
    mounts: Vec<PathBuf>,
    volume_dirs: BTreeMap<String, PathBuf>,
    ready: bool,
    waiting: Option<String>,
    start_time: String,
    containers: BTreeMap<String, Ctr>,
    last_status: Option<Value>,
}

struct Sim {
    config: Arc<Config>,
    shared: Arc<Mutex<Shared>>,
    notify: Arc<Notify>,
    pods: HashMap<String, PodRt>,
    exits_tx: mpsc::UnboundedSender<Exit>,
    exits_rx: mpsc::UnboundedReceiver<Exit>,
    /// The last status written per workload (`<kind>/<ns>/<name>/<uid>`).
    workload_status: HashMap<String, Value>,
    /// Pods (by uid) whose termination task runs: stop the processes, then delete the pod.
    terminating: HashMap<String, tokio::task::Id>,
    /// Those tasks (aborted with the simulator).
    terminations: JoinSet<()>,
    /// The simulated load balancers' addresses.
    lbs: services::LbState,
}

fn api_code(e: &kube::Error) -> Option<u16> {
    crate::api_status(e).map(|s| s.code)
}

impl Sim {
    async fn run(mut self) {
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %e, "simulated kubelet: reconcile failed; retrying");
            }
            tokio::select! {
                _ = self.notify.notified() => {}
                Some(exit) = self.exits_rx.recv() => self.on_exit(exit),
                Some(done) = self.terminations.join_next_with_id(), if !self.terminations.is_empty() => {
                    self.terminated(done);
                }
                _ = tokio::time::sleep(RESYNC) => {}
            }
            while let Ok(exit) = self.exits_rx.try_recv() {
                self.on_exit(exit);
            }
            while let Some(done) = self.terminations.try_join_next_with_id() {
                self.terminated(done);
            }
        }
    }

    fn client(&self) -> Client {
        self.config.client.clone()
    }

    /// Every object of kind `K` in the cluster.
    async fn list_all<K>(&self) -> crate::Result<Vec<K>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        Ok(Api::<K>::all(self.client())
            .list(&ListParams::default())
            .await?
            .items)
    }

    async fn reconcile(&mut self) -> crate::Result<()> {
        let pods = self.list_all::<Pod>().await?;
        let dss = self.list_all::<DaemonSet>().await?;
        for ds in &dss {
            if let Err(e) = self.daemonset(ds, &pods).await {
                tracing::warn!(ds = %ds.name_any(), error = %e, "simulated DaemonSet controller");
            }
        }
        let deployments = self.list_all::<Deployment>().await?;
        for d in &deployments {
            if let Err(e) = self.deployment(d, &pods).await {
                tracing::warn!(deployment = %d.name_any(), error = %e, "simulated Deployment controller");
            }
        }
        let statefulsets = self.list_all::<StatefulSet>().await?;
        for sts in &statefulsets {
            if let Err(e) = self.statefulset(sts, &pods).await {
                tracing::warn!(sts = %sts.name_any(), error = %e, "simulated StatefulSet controller");
            }
        }
        let owners: HashSet<String> = dss
            .iter()
            .filter_map(|d| d.uid())
            .chain(deployments.iter().filter_map(|d| d.uid()))
            .chain(statefulsets.iter().filter_map(|s| s.uid()))
            .collect();
        self.orphaned_workload_pods(&owners, &pods).await;
        if let Err(e) = self.provision(&pods).await {
            tracing::warn!(error = %e, "simulated PV provisioner");
        }
        for pod in &pods {
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or("")
                .is_empty()
                && let Err(e) = self.schedule(pod).await
            {
                tracing::warn!(pod = %pod.name_any(), error = %e, "simulated scheduler");
            }
        }
        let mut seen = HashSet::new();
        for pod in &pods {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            if self.config.node(&node).is_none() {
                continue;
            }
            let uid = pod.uid().unwrap_or_default();
            seen.insert(uid.clone());
            if let Err(e) = self.sync_pod(pod, &node).await {
                tracing::warn!(pod = %pod.name_any(), error = %e, "simulated kubelet");
            }
        }
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|uid| !seen.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            self.teardown(&uid);
        }
        if let Err(e) = services::reconcile(&self.config, &self.shared, &mut self.lbs, &pods).await {
            tracing::warn!(error = %e, "simulated kube-proxy");
        }
        Ok(())
    }

    // --- DaemonSet, Deployment and StatefulSet controllers ---

    fn registered(&self, c: &Container) -> Option<PathBuf> {
        let image = c.image.as_deref().unwrap_or("");
        self.config.images.get(logic::image_repository(image)).cloned()
    }

    /// Whether the workload controllers manage a workload with this pod template: one of its containers
    /// runs a registered image. Others are left alone (status included).
    fn manages(&self, template: &PodTemplateSpec) -> bool {
        template
            .spec
            .as_ref()
            .is_some_and(|s| s.containers.iter().any(|c| self.registered(c).is_some()))
    }

    /// Write a workload's status when it changed since the last write.
    async fn write_status<K>(&mut self, obj: &K, status: Value) -> crate::Result<()>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let ns = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let key = format!("{}/{ns}/{name}/{}", K::kind(&()), obj.uid().unwrap_or_default());
        if self.workload_status.get(&key) != Some(&status) {
            Api::<K>::namespaced(self.client(), &ns)
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
            self.workload_status.insert(key, status);
        }
        Ok(())
    }

    async fn daemonset(&mut self, ds: &DaemonSet, pods: &[Pod]) -> crate::Result<()> {
        let Some(spec) = &ds.spec else { return Ok(()) };
        if !self.manages(&spec.template) || ds.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let ns = ds.namespace().unwrap_or_default();
        let name = ds.name_any();
        let uid = ds.uid().unwrap_or_default();
        let hash = logic::template_hash(&spec.template);
        let api: Api<Pod> = Api::namespaced(self.client(), &ns);
        let owned = owned_by(pods, &uid);
        let wanted = logic::daemonset_nodes(ds, &self.config.nodes);
        let wanted_names: HashSet<String> = wanted
            .iter()
            .map(|n| logic::daemon_pod_name(&name, &n.name))
            .collect();
        let (mut current, mut ready, mut updated) = (0, 0, 0);
        for pod in &owned {
            if pod.metadata.deletion_timestamp.is_some() {
                continue; // terminating: counts for nothing, recreated once gone
            }
            let pname = pod.name_any();
            let pod_hash = pod.annotations().get(TEMPLATE_HASH).cloned();
            if !wanted_names.contains(&pname) || pod_hash.as_deref() != Some(hash.as_str()) {
                delete_gracefully(&api, pod).await?;
                continue;
            }
            current += 1;
            updated += 1;
            if is_ready(pod) {
                ready += 1;
            }
        }
        for node in &wanted {
            let pname = logic::daemon_pod_name(&name, &node.name);
            if owned.iter().any(|p| p.name_any() == pname) {
                continue;
            }
            let owner = Owner {
                kind: "DaemonSet",
                name: &name,
                uid: &uid,
            };
            let node_name = node.name.clone();
            let pod = workload_pod(&owner, &pname, &spec.template, &hash, BTreeMap::new(), |s| {
                s.node_name = Some(node_name);
            })?;
            create_pod(&api, &pod).await?;
        }
        let status = json!({"status": {
            "desiredNumberScheduled": wanted.len(),
            "currentNumberScheduled": current,
            "numberReady": ready,
            "numberAvailable": ready,
            "numberUnavailable": wanted.len().saturating_sub(ready),
            "updatedNumberScheduled": updated,
            "numberMisscheduled": 0,
            "observedGeneration": ds.metadata.generation.unwrap_or(0),
        }});
        self.write_status(ds, status).await
    }

    /// A Deployment: `spec.replicas` pods `<name>-<hash>-<suffix>` (see [`logic::plan_deployment`]).
    async fn deployment(&mut self, d: &Deployment, pods: &[Pod]) -> crate::Result<()> {
        let Some(spec) = &d.spec else { return Ok(()) };
        if !self.manages(&spec.template) || d.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let ns = d.namespace().unwrap_or_default();
        let name = d.name_any();
        let uid = d.uid().unwrap_or_default();
        let hash = logic::template_hash(&spec.template);
        let replicas = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        let api: Api<Pod> = Api::namespaced(self.client(), &ns);
        let owned = owned_by(pods, &uid);
        let taken: HashSet<String> = pods
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .map(ResourceExt::name_any)
            .collect();
        let view: Vec<logic::OwnedPod> = owned.iter().map(|p| owned_pod(p)).collect();
        let plan = logic::plan_deployment(&name, replicas, &hash, &view, &taken);
        for pod in owned.iter().filter(|p| plan.delete.contains(&p.name_any())) {
            delete_gracefully(&api, pod).await?;
        }
        let owner = Owner {
            kind: "Deployment",
            name: &name,
            uid: &uid,
        };
        let labels = BTreeMap::from([(
            "pod-template-hash".to_owned(),
            logic::short_hash(&hash).to_owned(),
        )]);
        for pname in &plan.create {
            let pod = workload_pod(&owner, pname, &spec.template, &hash, labels.clone(), |_| {})?;
            create_pod(&api, &pod).await?;
        }
        let live: Vec<&logic::OwnedPod> = view.iter().filter(|p| !p.terminating).collect();
        let updated = live
            .iter()
            .filter(|p| p.hash.as_deref() == Some(hash.as_str()))
            .count();
        let ready = live.iter().filter(|p| p.ready).count();
        let status = json!({"status": {
            "observedGeneration": d.metadata.generation.unwrap_or(0),
            "replicas": live.len(),
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": replicas.saturating_sub(ready),
        }});
        self.write_status(d, status).await
    }

    /// A StatefulSet: pods `<name>-0..replicas-1` (see [`logic::plan_statefulset`]).
    async fn statefulset(&mut self, sts: &StatefulSet, pods: &[Pod]) -> crate::Result<()> {
        let Some(spec) = &sts.spec else { return Ok(()) };
        if !self.manages(&spec.template) || sts.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let ns = sts.namespace().unwrap_or_default();
        let name = sts.name_any();
        let uid = sts.uid().unwrap_or_default();
        let hash = logic::template_hash(&spec.template);
        let revision = format!("{name}-{}", logic::short_hash(&hash));
        let replicas = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
        let api: Api<Pod> = Api::namespaced(self.client(), &ns);
        let owned = owned_by(pods, &uid);
        let view: Vec<logic::OwnedPod> = owned.iter().map(|p| owned_pod(p)).collect();
        let plan = logic::plan_statefulset(&name, replicas, parallel, &hash, &view);
        for pod in owned.iter().filter(|p| plan.delete.contains(&p.name_any())) {
            delete_gracefully(&api, pod).await?;
        }
        let owner = Owner {
            kind: "StatefulSet",
            name: &name,
            uid: &uid,
        };
        for pname in &plan.create {
            let index = logic::statefulset_ordinal(&name, pname).unwrap_or(0);
            let labels = BTreeMap::from([
                ("controller-revision-hash".to_owned(), revision.clone()),
                ("statefulset.kubernetes.io/pod-name".to_owned(), pname.clone()),
                ("apps.kubernetes.io/pod-index".to_owned(), index.to_string()),
            ]);
            let (hostname, subdomain) = (pname.clone(), spec.service_name.clone());
            let pod = workload_pod(&owner, pname, &spec.template, &hash, labels, |s| {
                s.hostname = Some(hostname);
                s.subdomain = subdomain.filter(|d| !d.is_empty());
            })?;
            create_pod(&api, &pod).await?;
        }
        let live: Vec<&logic::OwnedPod> = view.iter().filter(|p| !p.terminating).collect();
        let updated = live
            .iter()
            .filter(|p| p.hash.as_deref() == Some(hash.as_str()))
            .count();
        let ready = live.iter().filter(|p| p.ready).count();
        let status = json!({"status": {
            "observedGeneration": sts.metadata.generation.unwrap_or(0),
            "replicas": live.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "currentReplicas": updated,
            "updatedReplicas": updated,
            "currentRevision": revision,
            "updateRevision": revision,
        }});
        self.write_status(sts, status).await
    }

    /// Delete the pods we made for DaemonSets, Deployments and StatefulSets that are gone (`owners`: the
    /// uids of those that exist), gracefully.
    async fn orphaned_workload_pods(&self, owners: &HashSet<String>, pods: &[Pod]) {
        for pod in pods {
            if !pod.annotations().contains_key(TEMPLATE_HASH) || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let orphan = pod.owner_references().iter().any(|o| {
                matches!(o.kind.as_str(), "DaemonSet" | "Deployment" | "StatefulSet")
                    && !owners.contains(&o.uid)
            });
            if orphan {
                let api: Api<Pod> = Api::namespaced(self.client(), &pod.namespace().unwrap_or_default());
                if let Err(e) = delete_gracefully(&api, pod).await {
                    tracing::warn!(pod = %pod.name_any(), error = %e, "deleting an orphaned workload pod");
                }
            }
        }
    }

    // --- PV provisioner ---

    /// The node for a local-path PV of claim `ns/claim`: that of a pod using the claim (bound, or where
    /// the scheduler will put it, the node affinity of its other PVs included); `None` without one.
    async fn local_path_node(&self, ns: &str, claim: &str, pods: &[Pod]) -> crate::Result<Option<String>> {
        let users = pods.iter().filter(|p| {
            p.namespace().as_deref() == Some(ns)
                && p.metadata.deletion_timestamp.is_none()
                && p.spec.as_ref().is_some_and(|s| {
                    s.volumes.iter().flatten().any(|v| {
                        v.persistent_volume_claim
                            .as_ref()
                            .is_some_and(|c| c.claim_name == claim)
                    })
                })
        });
        for pod in users {
            let Some(spec) = &pod.spec else { continue };
            if let Some(node) = spec
                .node_name
                .as_deref()
                .filter(|n| self.config.node(n).is_some())
            {
                return Ok(Some(node.to_owned()));
            }
            let (allowed, _) = self.pv_nodes(pod).await?;
            if let Some(n) = self.config.nodes.iter().find(|n| {
                logic::node_matches(spec, &n.name, &n.labels)
                    && allowed.as_ref().is_none_or(|a| a.contains(&n.name))
            }) {
                return Ok(Some(n.name.clone()));
            }
        }
        Ok(None)
    }

    async fn provision(&self, pods: &[Pod]) -> crate::Result<()> {
        let pvcs = self.list_all::<PersistentVolumeClaim>().await?;
        let pv_api: Api<PersistentVolume> = Api::all(self.client());
        for pvc in pvcs {
            if pvc.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let ns = pvc.namespace().unwrap_or_default();
            let name = pvc.name_any();
            let uid = pvc.uid().unwrap_or_default();
            let spec = pvc.spec.clone().unwrap_or_default();
            let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            if spec.volume_name.is_some() && bound {
                continue;
            }
            let pv_name = spec.volume_name.clone().unwrap_or_else(|| format!("pvc-{uid}"));
            let storage = spec
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| q.0.clone())
                .unwrap_or_else(|| "1Gi".to_owned());
            let modes = spec
                .access_modes
                .clone()
                .unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()]);
            let existing = pv_api.get_opt(&pv_name).await?;
            // hostPath and local PVs keep their data on a node, not in the storage directory.
            let mut on_node = existing
                .as_ref()
                .and_then(|pv| pv.spec.as_ref())
                .is_some_and(|s| s.host_path.is_some() || s.local.is_some());
            if existing.is_none() {
                if spec.volume_name.is_some() {
                    continue; // names a PV that does not exist (yet)
                }
                let local_path = spec.storage_class_name.as_deref() == Some(LOCAL_PATH_CLASS);
                on_node = local_path;
                let pv = if local_path {
                    // Waits for a first consumer a little (a pod applied with its claim), then takes the
                    // first node.
                    let node = match self.local_path_node(&ns, &name, pods).await? {
                        Some(node) => node,
                        None => {
                            let age = pvc
                                .metadata
                                .creation_timestamp
                                .as_ref()
                                .map(|t| Timestamp::now().as_second() - t.0.as_second())
                                .unwrap_or(i64::MAX);
                            if age < LOCAL_PATH_WAIT_SECS {
                                continue;
                            }
                            self.config
                                .nodes
                                .first()
                                .map(|n| n.name.clone())
                                .unwrap_or_default()
                        }
                    };
                    let path = format!("{LOCAL_PATH_DIR}/{pv_name}_{ns}_{name}");
                    let dir = self.config.host_path(&node, &path);
                    fs::create_dir_all(&dir)
                        .map_err(|e| crate::Error::io("creating a local-path volume's directory", e))?;
                    {
                        use std::os::unix::fs::PermissionsExt;
                        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))
                            .map_err(|e| crate::Error::io("creating a local-path volume's directory", e))?;
                    }
                    json!({
                        "apiVersion": "v1", "kind": "PersistentVolume",
                        "metadata": {"name": pv_name, "annotations": {
                            "pv.kubernetes.io/provisioned-by": "rancher.io/local-path",
                            "local.path.provisioner/selected-node": node,
                        }},
                        "spec": {
                            "capacity": {"storage": storage},
                            "accessModes": modes,
                            "persistentVolumeReclaimPolicy": "Delete",
                            "storageClassName": LOCAL_PATH_CLASS,
                            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
                            "claimRef": {
                                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                "namespace": ns, "name": name, "uid": uid,
                            },
                            "hostPath": {"path": path, "type": "DirectoryOrCreate"},
                            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]},
                            ]}]}},
                        },
                    })
                } else {
                    json!({
                    "apiVersion": "v1", "kind": "PersistentVolume",
                    "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": CSI_DRIVER}},
                    "spec": {
                        "capacity": {"storage": storage},
                        "accessModes": modes,
                        "persistentVolumeReclaimPolicy": "Delete",
                        "storageClassName": spec.storage_class_name,
                        "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
                        "claimRef": {
                            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                            "namespace": ns, "name": name, "uid": uid,
                        },
                        "csi": {"driver": CSI_DRIVER, "volumeHandle": pv_name},
                    },
                    })
                };
                let pv: PersistentVolume = serde_json::from_value(pv).map_err(|e| crate::Error::Decode {
                    context: "building a PV".into(),
                    message: e.to_string(),
                })?;
                match pv_api.create(&PostParams::default(), &pv).await {
                    Ok(_) => {}
                    Err(e) if api_code(&e) == Some(409) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if !on_node {
                fs::create_dir_all(self.config.volume_dir(&pv_name))
                    .map_err(|e| crate::Error::io("creating a volume's storage directory", e))?;
            }
            pv_api
                .patch_status(
                    &pv_name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"phase": "Bound"}})),
                )
                .await?;
            let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(self.client(), &ns);
            if spec.volume_name.is_none() {
                pvc_api
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"volumeName": pv_name}})),
                    )
                    .await?;
            }
            pvc_api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {
                        "phase": "Bound", "capacity": {"storage": storage}, "accessModes": modes,
                    }})),
                )
                .await?;
        }
        Ok(())
    }

    // --- scheduler ---

    async fn schedule(&self, pod: &Pod) -> crate::Result<()> {
        if pod.metadata.deletion_timestamp.is_some() || is_terminal(pod) {
            return Ok(());
        }
        let Some(spec) = &pod.spec else { return Ok(()) };
        let (allowed, pending_local_path) = self.pv_nodes(pod).await?;
        if pending_local_path {
            return Ok(()); // the provisioner binds it first (for the node it picks for this pod)
        }
        let Some(node) = self.config.nodes.iter().find(|n| {
            logic::node_matches(spec, &n.name, &n.labels)
                && allowed.as_ref().is_none_or(|a| a.contains(&n.name))
        }) else {
            return Ok(()); // unschedulable here
        };
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node.name},
        });
        let api: Api<Pod> = Api::namespaced(self.client(), &ns);
        match api
            .create_subresource::<Value, Value>("binding", &name, &PostParams::default(), &binding)
            .await
        {
            Ok(_) => {}
            Err(e) if api_code(&e) == Some(409) => {} // bound meanwhile
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// The nodes the pod's bound PVs allow (their required node affinity on `kubernetes.io/hostname`,
    /// as local-path and `local` PVs have; `None`: any), and whether a local-path claim of the pod is
    /// not bound yet (the provisioner picks its node first).
    async fn pv_nodes(&self, pod: &Pod) -> crate::Result<(Option<HashSet<String>>, bool)> {
        let ns = pod.namespace().unwrap_or_default();
        let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(self.client(), &ns);
        let pv_api: Api<PersistentVolume> = Api::all(self.client());
        let mut allowed: Option<HashSet<String>> = None;
        let mut pending_local_path = false;
        let claims = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.persistent_volume_claim.as_ref());
        for claim in claims {
            let Some(pvc_spec) = pvc_api.get_opt(&claim.claim_name).await?.and_then(|c| c.spec) else {
                continue;
            };
            let Some(pv) = pvc_spec.volume_name else {
                pending_local_path |= pvc_spec.storage_class_name.as_deref() == Some(LOCAL_PATH_CLASS);
                continue;
            };
            let Some(pv) = pv_api.get_opt(&pv).await? else {
                continue;
            };
            let Some(terms) = pv
                .spec
                .and_then(|s| s.node_affinity)
                .and_then(|a| a.required)
                .map(|r| r.node_selector_terms)
            else {
                continue;
            };
            let nodes: HashSet<String> = terms
                .iter()
                .flat_map(|t| t.match_expressions.iter().flatten())
                .filter(|e| e.key == "kubernetes.io/hostname" && e.operator == "In")
                .flat_map(|e| e.values.iter().flatten().cloned())
                .collect();
            if nodes.is_empty() {
                continue;
            }
            allowed = Some(match allowed {
                Some(a) => a.intersection(&nodes).cloned().collect(),
                None => nodes,
            });
        }
        Ok((allowed, pending_local_path))
    }

    // --- kubelet ---

    async fn sync_pod(&mut self, pod: &Pod, node: &str) -> crate::Result<()> {
        let uid = pod.uid().unwrap_or_default();
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        if pod.metadata.deletion_timestamp.is_some() {
            self.terminate(pod);
            return Ok(());
        }
        let spec = pod.spec.clone().unwrap_or_default();
        if !self.pods.contains_key(&uid) {
            if is_terminal(pod) {
                return Ok(()); // finished before we (re)started: leave it be
            }
            let dir = self.config.kubelet_root(node).join("pods").join(&uid);
            let mut containers = BTreeMap::new();
            for c in &spec.containers {
                if let Some(binary) = self.registered(c) {
                    containers.insert(
                        c.name.clone(),
                        Ctr {
                            binary,
                            pid: None,
                            started_at: None,
                            restart_count: 0,
                            terminated: None,
                            last_terminated: None,
                            restart_at: None,
                        },
                    );
                }
            }
            let grace = spec
                .termination_grace_period_seconds
                .map(|s| Duration::from_secs(s.max(0) as u64))
                .unwrap_or(MAX_GRACE)
                .min(MAX_GRACE);
            self.pods.insert(
                uid.clone(),
                PodRt {
                    namespace: ns.clone(),
                    name: name.clone(),
                    node: node.to_owned(),
                    dir,
                    grace,
                    restart_policy: spec.restart_policy.clone().unwrap_or_else(|| "Always".into()),
                    mounts: Vec::new(),
                    volume_dirs: BTreeMap::new(),
                    ready: false,
                    waiting: None,
                    start_time: now(),
                    containers,
                    last_status: None,
                },
            );
        }
        // Volumes: set up once (retried until complete), Secrets and ConfigMaps re-synced.
        match self.setup_volumes(pod, &uid).await {
            Ok(()) => {
                if let Some(rt) = self.pods.get_mut(&uid) {
                    rt.ready = true;
                    rt.waiting = None;
                }
            }
            Err(reason) => {
                if let Some(rt) = self.pods.get_mut(&uid) {
                    rt.waiting = Some(reason);
                }
            }
        }
        let ready = self.pods.get(&uid).is_some_and(|rt| rt.ready);
        if ready {
            for c in &spec.containers {
                let due = self
                    .pods
                    .get(&uid)
                    .and_then(|rt| rt.containers.get(&c.name))
                    .is_some_and(|ctr| {
                        ctr.pid.is_none()
                            && ctr.terminated.is_none()
                            && ctr.restart_at.is_none_or(|t| Instant::now() >= t)
                    });
                if due && let Err(e) = self.start_container(pod, &uid, c).await {
                    tracing::warn!(pod = %name, container = %c.name, error = %e, "starting a container");
                    if let Some(rt) = self.pods.get_mut(&uid) {
                        rt.waiting = Some(format!("CreateContainerError: {e}"));
                    }
                }
            }
        }
        let Some(rt) = self.pods.get(&uid) else {
            return Ok(());
        };
        let status = pod_status(pod, rt, &self.node_ip(node));
        if rt.last_status.as_ref() != Some(&status) {
            let api: Api<Pod> = Api::namespaced(self.client(), &ns);
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await?;
            if let Some(rt) = self.pods.get_mut(&uid) {
                rt.last_status = Some(status);
            }
        }
        Ok(())
    }

    fn node_ip(&self, node: &str) -> String {
        self.config.node(node).map(|n| n.ip.clone()).unwrap_or_default()
    }

    /// Set up missing volumes and re-sync Secret/ConfigMap volumes. Err: why the pod must wait.
    async fn setup_volumes(&mut self, pod: &Pod, uid: &str) -> Result<(), String> {
        let spec = pod.spec.clone().unwrap_or_default();
        let ns = pod.namespace().unwrap_or_default();
        let Some((dir, node)) = self.pods.get(uid).map(|rt| (rt.dir.clone(), rt.node.clone())) else {
            return Ok(());
        };
        let vols = dir.join("volumes");
        for vol in spec.volumes.iter().flatten() {
            let host = if let Some(pvc) = &vol.persistent_volume_claim {
                let (target, mounted) = self
                    .mount_pvc(pod, vol, &pvc.claim_name, &ns, &vols, &node)
                    .await?;
                if mounted
                    && let Some(rt) = self.pods.get_mut(uid)
                    && !rt.mounts.contains(&target)
                {
                    rt.mounts.push(target.clone());
                }
                target
            } else if let Some(secret) = &vol.secret {
                let target = vols.join("kubernetes.io~secret").join(&vol.name);
                let name = secret.secret_name.clone().unwrap_or_default();
                let payload = self
                    .secret_payload(&ns, &name, secret.items.as_deref(), secret.default_mode)
                    .await
                    .map_err(|e| e.to_string())?;
                let payload = match payload {
                    Some(p) => p,
                    None if secret.optional == Some(true) => Payload::new(),
                    None => return Err(format!("secret \"{name}\" not found")),
                };
                volumes::write_atomic(&target, &payload).map_err(|e| e.to_string())?;
                target
            } else if let Some(cm) = &vol.config_map {
                let target = vols.join("kubernetes.io~configmap").join(&vol.name);
                let name = cm.name.clone();
                let payload = self
                    .configmap_payload(&ns, &name, cm.items.as_deref(), cm.default_mode)
                    .await
                    .map_err(|e| e.to_string())?;
                let payload = match payload {
                    Some(p) => p,
                    None if cm.optional == Some(true) => Payload::new(),
                    None => return Err(format!("configmap \"{name}\" not found")),
                };
                volumes::write_atomic(&target, &payload).map_err(|e| e.to_string())?;
                target
            } else if let Some(hp) = &vol.host_path {
                let rel = hp.path.trim_start_matches('/');
                let host = self.config.node_root(&node).join(rel);
                match hp.type_.as_deref() {
                    Some("File") | Some("FileOrCreate") | Some("Socket") | Some("CharDevice")
                    | Some("BlockDevice") => {
                        if let Some(parent) = host.parent() {
                            fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                        }
                        if hp.type_.as_deref() == Some("FileOrCreate") && !host.exists() {
                            fs::write(&host, b"").map_err(|e| e.to_string())?;
                        }
                    }
                    _ => fs::create_dir_all(&host).map_err(|e| e.to_string())?,
                }
                host
            } else if vol.empty_dir.is_some() {
                let target = vols.join("kubernetes.io~empty-dir").join(&vol.name);
                if !target.exists() {
                    fs::create_dir_all(&target).map_err(|e| e.to_string())?;
                    // World-writable, as a kubelet sets up every emptyDir (once: the pod may change it).
                    use std::os::unix::fs::PermissionsExt;
                    fs::set_permissions(&target, fs::Permissions::from_mode(0o777))
                        .map_err(|e| e.to_string())?;
                }
                target
            } else {
                // downwardAPI, projected, ...: an empty directory.
                let target = vols.join("kubernetes.io~empty-dir").join(&vol.name);
                fs::create_dir_all(&target).map_err(|e| e.to_string())?;
                target
            };
            if let Some(rt) = self.pods.get_mut(uid) {
                rt.volume_dirs.insert(vol.name.clone(), host);
            }
        }
        Ok(())
    }

    async fn mount_pvc(
        &mut self,
        pod: &Pod,
        vol: &Volume,
        claim: &str,
        ns: &str,
        vols: &std::path::Path,
        node: &str,
    ) -> Result<(PathBuf, bool), String> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client(), ns);
        let pvc = api
            .get_opt(claim)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
        let pv = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|_| pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
            .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" is not bound"))?;
        let pv_spec = Api::<PersistentVolume>::all(self.client())
            .get_opt(&pv)
            .await
            .map_err(|e| e.to_string())?
            .and_then(|p| p.spec)
            .unwrap_or_default();
        // A hostPath PV is used in place, as a hostPath volume; a local PV is bind-mounted from its
        // node path; everything else is a CSI volume backed by the storage directory.
        if let Some(hp) = &pv_spec.host_path {
            let host = self.config.host_path(node, &hp.path);
            fs::create_dir_all(&host).map_err(|e| e.to_string())?;
            return Ok((host, false));
        }
        let (target, src) = match &pv_spec.local {
            Some(local) => (
                vols.join("kubernetes.io~local-volume").join(&pv),
                self.config.host_path(node, &local.path),
            ),
            None => (
                vols.join("kubernetes.io~csi").join(&pv).join("mount"),
                self.config.volume_dir(&pv),
            ),
        };
        let mounted = self
            .shared
            .lock()
            .map(|s| s.mounts.contains(&target))
            .unwrap_or(false);
        if mounted {
            return Ok((target, true));
        }
        fs::create_dir_all(&src).map_err(|e| e.to_string())?;
        let spec = pod.spec.clone().unwrap_or_default();
        let mounts: Vec<bool> = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.volume_mounts.iter().flatten())
            .filter(|m| m.name == vol.name)
            .map(|m| m.read_only == Some(true))
            .collect();
        let read_only = vol.persistent_volume_claim.as_ref().and_then(|p| p.read_only) == Some(true)
            || (!mounts.is_empty() && mounts.iter().all(|ro| *ro));
        volumes::bind_mount(&src, &target, read_only).map_err(|e| e.to_string())?;
        if let Ok(mut s) = self.shared.lock() {
            s.mounts.insert(target.clone());
        }
        Ok((target, true))
    }

    async fn secret_payload(
        &self,
        ns: &str,
        name: &str,
        items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
        default_mode: Option<i32>,
    ) -> crate::Result<Option<Payload>> {
        let Some(secret) = Api::<Secret>::namespaced(self.client(), ns).get_opt(name).await? else {
            return Ok(None);
        };
        let mut data: BTreeMap<String, Vec<u8>> = secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        for (k, v) in secret.string_data.unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        Ok(Some(project(&data, items, default_mode)))
    }

    async fn configmap_payload(
        &self,
        ns: &str,
        name: &str,
        items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
        default_mode: Option<i32>,
    ) -> crate::Result<Option<Payload>> {
        let Some(cm) = Api::<ConfigMap>::namespaced(self.client(), ns)
            .get_opt(name)
            .await?
        else {
            return Ok(None);
        };
        let mut data: BTreeMap<String, Vec<u8>> = cm
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        for (k, v) in cm.binary_data.unwrap_or_default() {
            data.insert(k, v.0);
        }
        Ok(Some(project(&data, items, default_mode)))
    }

    async fn resolve_env(
        &self,
        pod: &Pod,
        c: &Container,
        node_ip: &str,
        maps: &[PathMapping],
    ) -> crate::Result<Vec<(String, String)>> {
        let ns = pod.namespace().unwrap_or_default();
        let mut out = Vec::new();
        for var in c.env.iter().flatten() {
            let value = if let Some(v) = &var.value {
                Some(v.clone())
            } else if let Some(from) = &var.value_from {
                if let Some(f) = &from.field_ref {
                    logic::field_ref_value(&f.field_path, pod, node_ip)
                } else if let Some(s) = &from.secret_key_ref {
                    let secret = Api::<Secret>::namespaced(self.client(), &ns)
                        .get_opt(&s.name)
                        .await?;
                    let v = secret.and_then(|sec| {
                        sec.data
                            .and_then(|d| d.get(&s.key).map(|b| b.0.clone()))
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                    });
                    if v.is_none() && s.optional != Some(true) {
                        return Err(crate::Error::Decode {
                            context: format!("env {}", var.name),
                            message: format!("secret {}/{} has no key {}", ns, s.name, s.key),
                        });
                    }
                    v
                } else if let Some(r) = &from.config_map_key_ref {
                    let cm = Api::<ConfigMap>::namespaced(self.client(), &ns)
                        .get_opt(&r.name)
                        .await?;
                    let v = cm.and_then(|cm| cm.data.and_then(|d| d.get(&r.key).cloned()));
                    if v.is_none() && r.optional != Some(true) {
                        return Err(crate::Error::Decode {
                            context: format!("env {}", var.name),
                            message: format!("configmap {}/{} has no key {}", ns, r.name, r.key),
                        });
                    }
                    v
                } else {
                    None
                }
            } else {
                Some(String::new())
            };
            if let Some(v) = value {
                out.push((var.name.clone(), logic::rewrite_paths(&v, maps)));
            }
        }
        Ok(out)
    }

    async fn start_container(&mut self, pod: &Pod, uid: &str, c: &Container) -> crate::Result<()> {
        let io = |what: String, e| crate::Error::io(what, e);
        let Some(rt) = self.pods.get(uid) else {
            return Ok(());
        };
        let node = rt.node.clone();
        let node_ip = self.node_ip(&node);
        let ctr_dir = rt.dir.join("containers").join(&c.name);
        fs::create_dir_all(&ctr_dir).map_err(|e| io(format!("creating {}", ctr_dir.display()), e))?;
        let term_log = ctr_dir.join("termination-log");
        fs::write(&term_log, b"").map_err(|e| io(format!("creating {}", term_log.display()), e))?;
        let mut maps = vec![PathMapping {
            container: c
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".to_owned()),
            host: term_log,
        }];
        for m in c.volume_mounts.iter().flatten() {
            if let Some(dir) = rt.volume_dirs.get(&m.name) {
                maps.push(PathMapping {
                    container: m.mount_path.trim_end_matches('/').to_owned(),
                    host: logic::mount_host_path(dir, m.sub_path.as_deref()),
                });
            }
        }
        let args: Vec<String> = logic::container_args(c)
            .iter()
            .map(|a| logic::rewrite_paths(a, &maps))
            .collect();
        let env = self.resolve_env(pod, c, &node_ip, &maps).await?;
        let Some(rt) = self.pods.get(uid) else {
            return Ok(());
        };
        let cwd = c
            .working_dir
            .as_deref()
            .map(|w| PathBuf::from(logic::rewrite_paths(w, &maps)))
            .unwrap_or_else(|| ctr_dir.clone());
        let log_dir = self.config.pod_log_dir.join(&rt.namespace).join(&rt.name);
        fs::create_dir_all(&log_dir).map_err(|e| io(format!("creating {}", log_dir.display()), e))?;
        // A new pod of an earlier one's name starts with empty logs, as a kubelet's (kept per pod UID)
        // do; a restarted container of the same pod appends.
        let owner = log_dir.join(".pod-uid");
        if fs::read_to_string(&owner).ok().as_deref() != Some(uid) {
            for entry in fs::read_dir(&log_dir).into_iter().flatten().flatten() {
                let _ = fs::remove_file(entry.path());
            }
            fs::write(&owner, uid).map_err(|e| io(format!("writing {}", owner.display()), e))?;
        }
        let log_path = log_dir.join(format!("{}.log", c.name));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io(format!("opening {}", log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| io("duplicating a log handle".into(), e))?;
        let Some(binary) = rt.containers.get(&c.name).map(|ctr| ctr.binary.clone()) else {
            return Ok(());
        };
        let netns = self.config.netns.get(&node).cloned().unwrap_or_default();
        let mut cmd = tokio::process::Command::new("ip");
        cmd.args(["netns", "exec", &netns])
            .arg(&binary)
            .args(&args)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("HOSTNAME", &rt.name)
            .envs(env)
            .current_dir(&cwd)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| io(format!("starting {} in {netns}", binary.display()), e))?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        let desc = format!("{}/{}/{}", rt.namespace, rt.name, c.name);
        if let Ok(mut s) = self.shared.lock() {
            s.pids.insert(pid, desc);
            s.started.push(StartedProcess {
                namespace: rt.namespace.clone(),
                pod: rt.name.clone(),
                container: c.name.clone(),
                node: node.clone(),
                pid: u32::try_from(pid).unwrap_or(0),
                binary: binary.clone(),
                args,
            });
        }
        tracing::debug!(pod = %rt.name, container = %c.name, pid, "started a container process");
        let tx = self.exits_tx.clone();
        let shared = self.shared.clone();
        let (uid_s, name_s) = (uid.to_owned(), c.name.clone());
        tokio::spawn(async move {
            let code = match child.wait().await {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    status
                        .code()
                        .or_else(|| status.signal().map(|s| 128 + s))
                        .unwrap_or(-1)
                }
                Err(_) => -1,
            };
            if let Ok(mut s) = shared.lock() {
                s.pids.remove(&pid);
            }
            let _ = tx.send(Exit {
                uid: uid_s,
                container: name_s,
                pid,
                code,
                finished_at: now(),
            });
        });
        if let Some(ctr) = self
            .pods
            .get_mut(uid)
            .and_then(|rt| rt.containers.get_mut(&c.name))
        {
            ctr.pid = Some(pid);
            ctr.started_at = Some(now());
            ctr.restart_at = None;
        }
        Ok(())
    }

    fn on_exit(&mut self, exit: Exit) {
        let Some(rt) = self.pods.get_mut(&exit.uid) else {
            return;
        };
        let message = fs::read(
            rt.dir
                .join("containers")
                .join(&exit.container)
                .join("termination-log"),
        )
        .map(|mut b| {
            b.truncate(4096);
            String::from_utf8_lossy(&b).trim_end().to_owned()
        })
        .unwrap_or_default();
        let policy = rt.restart_policy.clone();
        let Some(ctr) = rt.containers.get_mut(&exit.container) else {
            return;
        };
        if ctr.pid != Some(exit.pid) {
            return;
        }
        ctr.pid = None;
        let term = Terminated {
            exit_code: exit.code,
            reason: if exit.code == 0 { "Completed" } else { "Error" }.to_owned(),
            message,
            started_at: ctr.started_at.clone().unwrap_or_default(),
            finished_at: exit.finished_at,
        };
        let restart = match policy.as_str() {
            "Never" => false,
            "OnFailure" => exit.code != 0,
            _ => true,
        };
        if restart {
            ctr.restart_at = Some(Instant::now() + logic::restart_backoff(ctr.restart_count));
            ctr.restart_count += 1;
            ctr.last_terminated = Some(term);
        } else {
            ctr.terminated = Some(term);
        }
        self.notify.notify_one();
    }

    /// Stop the processes of a pod that is gone from the API and remove its volumes (in the background:
    /// it may wait a grace period). A pod deleted with grace period 0 (forced, or never gracefully) ends
    /// here.
    fn teardown(&mut self, uid: &str) {
        let Some(rt) = self.pods.remove(uid) else {
            return;
        };
        let shared = self.shared.clone();
        let grace = rt.grace;
        tokio::task::spawn_blocking(move || stop_pod(rt, grace, &shared));
    }

    /// A pod with a `deletionTimestamp`, as a kubelet handles it: stop its containers (SIGTERM, at most
    /// the deletion's grace period, then SIGKILL), remove its volumes, and only then delete the pod with
    /// grace period 0. In a task of its own, so that the other pods are not held up meanwhile.
    fn terminate(&mut self, pod: &Pod) {
        let uid = pod.uid().unwrap_or_default();
        if self.terminating.contains_key(&uid) {
            return; // under way
        }
        let rt = self.pods.remove(&uid);
        if rt.is_none() && pod.metadata.deletion_grace_period_seconds == Some(0) {
            return; // nothing runs; deleted with grace period 0 already (a finalizer holds it)
        }
        let secs = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30);
        let grace = Duration::from_secs(u64::try_from(secs).unwrap_or(0)).min(MAX_GRACE);
        let shared = self.shared.clone();
        let api: Api<Pod> = Api::namespaced(self.client(), &pod.namespace().unwrap_or_default());
        let name = pod.name_any();
        let task_uid = uid.clone();
        let handle = self.terminations.spawn(async move {
            if let Some(rt) = rt {
                let stopped = tokio::task::spawn_blocking(move || stop_pod(rt, grace, &shared));
                if let Err(e) = stopped.await {
                    tracing::warn!(pod = %name, error = %e, "stopping a pod");
                }
            }
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(task_uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => tracing::debug!(pod = %name, "terminated and deleted"),
                Err(e) if matches!(api_code(&e), Some(404 | 409)) => {}
                Err(e) => tracing::warn!(pod = %name, error = %e, "deleting a terminated pod"),
            }
        });
        self.terminating.insert(uid, handle.id());
    }

    /// A termination task ended (the next pass retries a pod that is still there).
    fn terminated(&mut self, done: Result<(tokio::task::Id, ()), tokio::task::JoinError>) {
        let id = match done {
            Ok((id, ())) => id,
            Err(e) => e.id(),
        };
        self.terminating.retain(|_, task| *task != id);
        self.notify.notify_one();
    }
}

/// Files of a Secret/ConfigMap volume: every key, or the `items` (with their paths and modes).
fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    default_mode: Option<i32>,
) -> Payload {
    let mode = |m: Option<i32>| u32::try_from(m.or(default_mode).unwrap_or(0o644)).unwrap_or(0o644);
    let mut out = Payload::new();
    match items {
        Some(items) if !items.is_empty() => {
            for item in items {
                if let Some(v) = data.get(&item.key) {
                    out.insert(item.path.clone(), (v.clone(), mode(item.mode)));
                }
            }
        }
        _ => {
            for (k, v) in data {
                out.insert(k.clone(), (v.clone(), mode(None)));
            }
        }
    }
    out
}

/// Stop a pod's processes (SIGTERM, at most `grace`, then SIGKILL) and remove its volumes. Blocking.
fn stop_pod(rt: PodRt, grace: Duration, shared: &Mutex<Shared>) {
    let pids: Vec<i32> = rt.containers.values().filter_map(|c| c.pid).collect();
    kill_groups(&pids, grace);
    for m in &rt.mounts {
        if let Err(e) = volumes::unmount(m) {
            tracing::warn!(mount = %m.display(), error = %e, "unmounting a pod volume");
            continue;
        }
        if let Ok(mut s) = shared.lock() {
            s.mounts.remove(m);
        }
    }
    if volumes::mounts_under(&rt.dir).is_empty() {
        let _ = fs::remove_dir_all(&rt.dir);
    }
    tracing::debug!(pod = %rt.name, "torn down");
}

/// Delete a pod as a controller does: with its grace period (the kubelet finishes the deletion).
async fn delete_gracefully(api: &Api<Pod>, pod: &Pod) -> crate::Result<()> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &dp).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(api_code(&e), Some(404 | 409)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The pods a workload (by uid) controls.
fn owned_by<'a>(pods: &'a [Pod], uid: &str) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .collect()
}

fn owned_pod(pod: &Pod) -> logic::OwnedPod {
    logic::OwnedPod {
        name: pod.name_any(),
        hash: pod.annotations().get(TEMPLATE_HASH).cloned(),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        ready: is_ready(pod),
    }
}

/// The workload a pod is made for.
struct Owner<'a> {
    kind: &'a str,
    name: &'a str,
    uid: &'a str,
}

/// A pod of a workload: the template's metadata (plus `labels` and the template hash annotation), a
/// controller reference to `owner`, the template's spec changed by `tweak`.
fn workload_pod(
    owner: &Owner<'_>,
    name: &str,
    template: &PodTemplateSpec,
    hash: &str,
    labels: BTreeMap<String, String>,
    tweak: impl FnOnce(&mut PodSpec),
) -> crate::Result<Pod> {
    let mut meta = template.metadata.clone().unwrap_or_default();
    let mut annotations = meta.annotations.take().unwrap_or_default();
    annotations.insert(TEMPLATE_HASH.to_owned(), hash.to_owned());
    let mut all_labels = meta.labels.take().unwrap_or_default();
    all_labels.extend(labels);
    let mut spec = template.spec.clone().unwrap_or_default();
    tweak(&mut spec);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": all_labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": owner.kind, "name": owner.name, "uid": owner.uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": spec,
    });
    serde_json::from_value(pod).map_err(|e| crate::Error::Decode {
        context: format!("building a {} pod", owner.kind),
        message: e.to_string(),
    })
}

async fn create_pod(api: &Api<Pod>, pod: &Pod) -> crate::Result<()> {
    match api.create(&PostParams::default(), pod).await {
        Ok(_) => Ok(()),
        Err(e) if api_code(&e) == Some(409) => Ok(()), // the old one of this name is still going
        Err(e) => Err(e.into()),
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// The status a kubelet would report for `pod`.
fn pod_status(pod: &Pod, rt: &PodRt, node_ip: &str) -> Value {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut statuses = Vec::new();
    let mut all_ready = rt.ready;
    let mut registered_done = true;
    let mut any_failed = false;
    let mut unregistered = false;
    for c in &spec.containers {
        let image = c.image.clone().unwrap_or_default();
        let (state, last, ready, started, restarts, cid) = match rt.containers.get(&c.name) {
            Some(ctr) => {
                let last = ctr
                    .last_terminated
                    .as_ref()
                    .map(Terminated::to_json)
                    .unwrap_or_else(|| json!({}));
                let cid = ctr.pid.map(|p| format!("sim://{p}"));
                if let (Some(_), Some(at)) = (ctr.pid, &ctr.started_at) {
                    registered_done = false;
                    (
                        json!({"running": {"startedAt": at}}),
                        last,
                        true,
                        true,
                        ctr.restart_count,
                        cid,
                    )
                } else if let Some(t) = &ctr.terminated {
                    any_failed |= t.exit_code != 0;
                    (t.to_json(), last, false, false, ctr.restart_count, cid)
                } else if ctr.restart_at.is_some() {
                    registered_done = false;
                    let msg = format!(
                        "back-off restarting failed container {} in pod {}",
                        c.name, rt.name
                    );
                    (
                        json!({"waiting": {"reason": "CrashLoopBackOff", "message": msg}}),
                        last,
                        false,
                        false,
                        ctr.restart_count,
                        cid,
                    )
                } else {
                    registered_done = false;
                    let reason = if rt
                        .waiting
                        .as_deref()
                        .is_some_and(|w| w.starts_with("CreateContainerError"))
                    {
                        "CreateContainerError"
                    } else {
                        "ContainerCreating"
                    };
                    (
                        json!({"waiting": {"reason": reason}}),
                        last,
                        false,
                        false,
                        ctr.restart_count,
                        cid,
                    )
                }
            }
            None => {
                unregistered = true;
                if rt.ready {
                    (
                        json!({"running": {"startedAt": rt.start_time}}),
                        json!({}),
                        true,
                        true,
                        0,
                        Some(format!("sim://{}", c.name)),
                    )
                } else {
                    (
                        json!({"waiting": {"reason": "ContainerCreating"}}),
                        json!({}),
                        false,
                        false,
                        0,
                        None,
                    )
                }
            }
        };
        all_ready &= ready;
        let mut st = json!({
            "name": c.name, "image": image, "imageID": "", "ready": ready, "started": started,
            "restartCount": restarts, "state": state, "lastState": last,
        });
        if let Some(cid) = cid {
            st["containerID"] = json!(cid);
        }
        statuses.push(st);
    }
    let phase = if !rt.ready {
        "Pending"
    } else if registered_done && !unregistered && !rt.containers.is_empty() {
        if any_failed { "Failed" } else { "Succeeded" }
    } else {
        "Running"
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    let ready_now = all_ready && phase == "Running";
    let cond = |t: &str, ok: bool, reason: Option<&str>| {
        let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastTransitionTime": rt.start_time});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        c
    };
    let not_ready_reason = if terminal {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let mut status = json!({
        "phase": phase,
        "hostIP": node_ip,
        "hostIPs": [{"ip": node_ip}],
        "conditions": [
            cond("PodScheduled", true, None),
            cond("Initialized", true, None),
            cond("ContainersReady", ready_now, (!ready_now).then_some(not_ready_reason)),
            cond("Ready", ready_now, (!ready_now).then_some(not_ready_reason)),
        ],
        "containerStatuses": statuses,
        "startTime": rt.start_time,
    });
    if rt.ready {
        status["podIP"] = json!(node_ip);
        status["podIPs"] = json!([{"ip": node_ip}]);
    }
    if let Some(w) = &rt.waiting
        && !rt.ready
    {
        status["message"] = json!(w);
        status["reason"] = json!("ContainerCreating");
    }
    status
}
