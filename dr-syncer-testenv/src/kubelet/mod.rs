//! Simulated nodes for a test control plane: kubelet, scheduler, DaemonSet, Deployment and StatefulSet
//! controllers and PV provisioner in one, running real processes in Linux network namespaces.
//!
//! kapi only stores objects. A [`Kubelet`] plays everything a cluster's nodes and controllers would do for
//! the pods of one [`ControlPlane`], through its Kubernetes API:
//!
//! - **Nodes**: one `Node` per simulated node (labels `kubernetes.io/hostname`, `kubernetes.io/os=linux`
//!   plus extra labels; addresses InternalIP and Hostname; Ready; capacity), each with its own network
//!   namespace on a [`SimNetwork`].
//! - **Scheduler**: pods without `spec.nodeName` are bound (`pods/binding`) to the first node that
//!   satisfies their `nodeSelector` and required node affinity.
//! - **Workload controllers**, for DaemonSets, Deployments and StatefulSets whose pod template runs a
//!   registered image (others, and their status, are left alone: on a control plane started with
//!   `--simulate-workloads` kapi reports those): pods with the template's labels and annotations and a
//!   controller reference to the workload, recreated when the template changes; deletions are graceful
//!   (the pods terminate as below); status counters (`observedGeneration` and the replica counts; pods
//!   being deleted count for nothing).
//!   - DaemonSet: one pod `<ds>-<node>` per matching node.
//!   - Deployment: `spec.replicas` pods `<deployment>-<template hash>-<suffix>` (label
//!     `pod-template-hash`), scheduled by the scheduler above; surplus pods deleted (unready ones first);
//!     on a template change all old pods are deleted and the new ones created at once (no rolling update,
//!     no ReplicaSets: the pods are owned by the Deployment).
//!   - StatefulSet: pods `<sts>-0..n-1` (hostname, subdomain from `serviceName`, labels
//!     `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`, `controller-revision-hash`).
//!     `OrderedReady` (the default): a pod is created once every lower ordinal is Ready, and surplus pods
//!     go highest ordinal first, one at a time; `Parallel`: all at once. A pod of an older template is
//!     deleted (highest first, once all are Ready) and recreated under its name once it is gone. No
//!     `volumeClaimTemplates`: pods mount the PVCs their template names (`persistentVolumeClaim`).
//! - **PV provisioner**: every PVC without `spec.volumeName` gets a CSI PV `pvc-<uid>`
//!   (driver `sim.csi.dr-syncer.io`) backed by a directory ([`Kubelet::volume_dir`]); both become Bound.
//! - **Kubelet**: volumes under `kubelet_root(node)/pods/<uid>/volumes/` (PVCs as real bind mounts,
//!   Secrets/ConfigMaps written like the kubelet's atomic writer and re-synced, emptyDir, hostPath under
//!   [`Kubelet::node_root`]); containers whose image is registered ([`KubeletBuilder::image`]) run as
//!   processes; their output is the container log that `pods/log` serves; pod status as a kubelet reports
//!   it; restarts with backoff.
//! - **Pod termination**, as a kubelet does it: kapi deletes a pod bound to a node gracefully (it stays,
//!   with `deletionTimestamp` and `deletionGracePeriodSeconds`). For such a pod the kubelet stops the
//!   container processes (SIGTERM to each process group, up to the grace period — at most 15 s here —
//!   then SIGKILL), unmounts its volumes, and only then deletes the pod with grace period 0: while the
//!   pod is in the API its processes may still run and write; once it is gone they have ended. Each
//!   termination runs in a task of its own; the other pods are served meanwhile. A pod deleted at once
//!   (grace period 0: forced, unbound, or finished) is torn down the same way after it is gone.
//!
//! **No mount namespace**: a process sees the host's filesystem. Container paths in its arguments,
//! environment values and working directory are rewritten to host paths instead (see
//! [`KubeletBuilder::image`]). **One network namespace per node**: every pod of a node (host network or
//! not) shares the node's namespace and IP; `podIP` is the node's IP.
//!
//! Dropping the [`Kubelet`] stops its tasks, kills every process it started (SIGTERM, then SIGKILL, by
//! process group), unmounts what it mounted, deletes the node namespaces and removes its directories.

mod logic;
mod network;
mod sim;
mod volumes;

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use nix::{sys::signal, unistd::Pid};
use serde_json::json;
use tempfile::TempDir;
use tokio::task::JoinHandle;

pub use network::{SimNetwork, set_links};

use crate::{ControlPlane, Error, Result};
use logic::NodeInfo;

/// A process the simulator started for a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedProcess {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub pod: String,
    /// Name of the container.
    pub container: String,
    /// The node it ran on.
    pub node: String,
    /// Its process id.
    pub pid: u32,
    /// The binary.
    pub binary: PathBuf,
    /// Its arguments, after path rewriting.
    pub args: Vec<String>,
}

/// What the background tasks share with the [`Kubelet`] handle (for Drop and assertions).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Live container processes (each the leader of its own process group).
    pub(crate) pids: BTreeMap<i32, String>,
    /// Bind mounts that are in place.
    pub(crate) mounts: std::collections::BTreeSet<PathBuf>,
    /// Every process started, in order.
    pub(crate) started: Vec<StartedProcess>,
}

/// The fixed configuration of a running simulator.
pub(crate) struct Config {
    pub(crate) client: Client,
    pub(crate) nodes: Vec<NodeInfo>,
    pub(crate) netns: BTreeMap<String, String>,
    pub(crate) images: BTreeMap<String, PathBuf>,
    pub(crate) base: PathBuf,
    pub(crate) pod_log_dir: PathBuf,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("base", &self.base)
            .field("nodes", &self.nodes)
            .finish()
    }
}

impl Config {
    pub(crate) fn node_root(&self, node: &str) -> PathBuf {
        self.base.join("nodes").join(node)
    }

    pub(crate) fn kubelet_root(&self, node: &str) -> PathBuf {
        self.node_root(node).join("var/lib/kubelet")
    }

    pub(crate) fn storage_dir(&self) -> PathBuf {
        self.base.join("storage")
    }

    pub(crate) fn volume_dir(&self, pv: &str) -> PathBuf {
        self.storage_dir().join(pv)
    }

    pub(crate) fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// Options for a [`Kubelet`]; obtain with [`Kubelet::builder`].
pub struct KubeletBuilder {
    client: Client,
    cluster_name: String,
    pod_log_dir: PathBuf,
    network: SimNetwork,
    nodes: Vec<NodeInfo>,
    images: BTreeMap<String, PathBuf>,
}

impl fmt::Debug for KubeletBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeletBuilder")
            .field("cluster", &self.cluster_name)
            .field("nodes", &self.nodes)
            .field("images", &self.images)
            .finish()
    }
}

impl KubeletBuilder {
    /// Add a node `name` with address `ip` (e.g. `("src-node-1", "10.90.0.11")`; a /24 shared by all nodes
    /// of the network). Node order matters: the scheduler picks the first node that fits.
    pub fn node(mut self, name: &str, ip: &str) -> Self {
        let labels = [
            ("kubernetes.io/hostname".to_owned(), name.to_owned()),
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ]
        .into();
        self.nodes.push(NodeInfo {
            name: name.to_owned(),
            ip: ip.to_owned(),
            labels,
        });
        self
    }

    /// Add labels to node `name` (declared before with [`KubeletBuilder::node`]).
    pub fn node_labels(mut self, name: &str, labels: &[(&str, &str)]) -> Self {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.name == name) {
            for (k, v) in labels {
                n.labels.insert((*k).to_owned(), (*v).to_owned());
            }
        }
        self
    }

    /// Run `binary` for containers whose image's repository name (last path segment, tag and digest
    /// stripped) is `image`: `image("busybox", "/bin/sh")` runs `/bin/sh` for `docker.io/library/busybox:1.36`.
    ///
    /// The process gets the container's `command[1..]` followed by `args` (just `args` without `command`):
    /// `command[0]`, the image's entrypoint, is replaced by `binary`. Instead of a mount namespace, container
    /// paths are rewritten to host paths in the arguments, environment values and `workingDir`: a
    /// volumeMount's `mountPath` (its `subPath` honoured; the longest path wins) and the
    /// `terminationMessagePath` (a file `pods/<uid>/containers/<name>/termination-log`) are replaced wherever
    /// they appear as a path — the whole argument, `<path>/...`, `--flag=<path>`, or inside a shell
    /// script. The environment is the container's `env` (values, `fieldRef`, `secretKeyRef`,
    /// `configMapKeyRef`) plus `PATH` and `HOSTNAME` (the pod name). Containers whose image is not
    /// registered run no process and are reported running.
    pub fn image(mut self, image: &str, binary: impl Into<PathBuf>) -> Self {
        self.images.insert(image.to_owned(), binary.into());
        self
    }

    /// Create the nodes (network namespaces and `Node` objects) and start the background tasks.
    ///
    /// # Errors
    /// [`Error::Command`] when a network namespace cannot be made (needs root), [`Error::Kube`] when the
    /// nodes cannot be created, [`Error::Io`] for local directories.
    pub async fn start(self) -> Result<Kubelet> {
        // Under a root-owned directory that only root can write (not /tmp): sshd, run by the agent in
        // a simulated pod, refuses state below a directory others can write (StrictModes).
        let parent = std::path::Path::new("/run/dr-syncer-sim");
        let dir = std::fs::create_dir_all(parent)
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755))
            })
            .and_then(|()| {
                tempfile::Builder::new()
                    .prefix(&format!("sim-kubelet-{}-", self.cluster_name))
                    .tempdir_in(parent)
            })
            .map_err(|e| Error::io("creating the simulator's directory", e))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Error::io("creating the simulator's directory", e))?;
        }
        let mut kubelet = Kubelet {
            config: Arc::new(Config {
                client: self.client.clone(),
                nodes: self.nodes.clone(),
                netns: BTreeMap::new(),
                images: self.images.clone(),
                base: dir.path().to_path_buf(),
                pod_log_dir: self.pod_log_dir.clone(),
            }),
            shared: Arc::new(Mutex::new(Shared::default())),
            network: self.network.clone(),
            tasks: Vec::new(),
            dir: Some(dir),
        };
        let mut netns = BTreeMap::new();
        for node in &self.nodes {
            let ns = self.network.attach(&node.name, &node.ip)?;
            netns.insert(node.name.clone(), ns);
        }
        let config = Arc::new(Config {
            client: self.client.clone(),
            nodes: self.nodes.clone(),
            netns,
            images: self.images,
            base: kubelet.config.base.clone(),
            pod_log_dir: self.pod_log_dir,
        });
        kubelet.config = config.clone();
        for node in &config.nodes {
            std::fs::create_dir_all(config.kubelet_root(&node.name))
                .map_err(|e| Error::io("creating a node's directories", e))?;
            volumes::make_shared_mount(&config.kubelet_root(&node.name))?;
            create_node(&config.client, node).await?;
        }
        kubelet.tasks = sim::spawn(config, kubelet.shared.clone());
        Ok(kubelet)
    }
}

async fn create_node(client: &Client, node: &NodeInfo) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    let obj: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": node.labels},
        "spec": {},
    }))
    .map_err(|e| Error::Decode {
        context: "building a Node".into(),
        message: e.to_string(),
    })?;
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(e) if crate::api_status(&e).is_some_and(|s| s.code == 409) => {}
        Err(e) => return Err(e.into()),
    }
    let now = sim::now();
    let status = json!({"status": {
        "addresses": [
            {"type": "InternalIP", "address": node.ip},
            {"type": "Hostname", "address": node.name},
        ],
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status (simulated)",
            "lastHeartbeatTime": now, "lastTransitionTime": now,
        }],
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"},
        "nodeInfo": {
            "architecture": "amd64", "operatingSystem": "linux", "osImage": "dr-syncer simulated node",
            "kernelVersion": "", "containerRuntimeVersion": "sim://1", "kubeletVersion": "v1.36.0",
            "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": "",
        },
    }});
    api.patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// The simulated nodes of one cluster. See the [module documentation](self).
pub struct Kubelet {
    config: Arc<Config>,
    shared: Arc<Mutex<Shared>>,
    network: SimNetwork,
    tasks: Vec<JoinHandle<()>>,
    dir: Option<TempDir>,
}

impl fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kubelet")
            .field("base", &self.config.base)
            .field("nodes", &self.config.nodes)
            .finish()
    }
}

impl Kubelet {
    /// Options for simulated nodes of `cluster`, attached to `network`.
    pub fn builder(cluster: &ControlPlane, network: &SimNetwork) -> KubeletBuilder {
        Self::builder_for(cluster.client(), cluster.name(), cluster.pod_log_dir(), network)
    }

    /// Options for simulated nodes of a cluster this process did not start (e.g. one of
    /// `scripts/testenv.sh`): its admin `client`, a `name` for directories, and the directory its
    /// `pods/log` serves (`kapi serve --pod-log-dir`).
    pub fn builder_for(
        client: Client,
        name: &str,
        pod_log_dir: PathBuf,
        network: &SimNetwork,
    ) -> KubeletBuilder {
        KubeletBuilder {
            client,
            cluster_name: name.to_owned(),
            pod_log_dir,
            network: network.clone(),
            nodes: Vec::new(),
            images: BTreeMap::new(),
        }
    }

    /// The directory under which the PVs' storage directories are ([`Kubelet::volume_dir`]).
    pub fn storage_dir(&self) -> PathBuf {
        self.config.storage_dir()
    }

    /// The node's "filesystem" root: hostPath volumes live below it.
    pub fn node_root(&self, node: &str) -> PathBuf {
        self.config.node_root(node)
    }

    /// What `/var/lib/kubelet` is on that node (`node_root(node)/var/lib/kubelet`); pod volumes are under
    /// `pods/<uid>/volumes/`.
    pub fn kubelet_root(&self, node: &str) -> PathBuf {
        self.config.kubelet_root(node)
    }

    /// The node's IP address (empty for an unknown node).
    pub fn node_ip(&self, node: &str) -> String {
        self.config.node(node).map(|n| n.ip.clone()).unwrap_or_default()
    }

    /// The node's network namespace (for `ip netns exec`; empty for an unknown node).
    pub fn netns(&self, node: &str) -> String {
        self.config.netns.get(node).cloned().unwrap_or_default()
    }

    /// The storage directory behind PV `pv_name` (to seed or check data).
    pub fn volume_dir(&self, pv_name: &str) -> PathBuf {
        self.config.volume_dir(pv_name)
    }

    /// The storage directory behind PVC `namespace/pvc` of this simulator's cluster, once the PVC is bound
    /// (at most `timeout`).
    ///
    /// # Errors
    /// [`Error::Timeout`] when it is not bound in time, [`Error::Kube`] for API errors.
    pub async fn bound_volume_dir(&self, namespace: &str, pvc: &str, timeout: Duration) -> Result<PathBuf> {
        let api: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            Api::namespaced(self.config.client.clone(), namespace);
        let pv = crate::wait_for(&format!("PVC {namespace}/{pvc} bound"), timeout, || async {
            Ok(api
                .get_opt(pvc)
                .await?
                .and_then(|p| p.spec.and_then(|s| s.volume_name)))
        })
        .await?;
        Ok(self.volume_dir(&pv))
    }

    /// The log of a container so far (empty if it has none).
    pub fn pod_log(&self, namespace: &str, pod: &str, container: &str) -> String {
        std::fs::read_to_string(
            self.config
                .pod_log_dir
                .join(namespace)
                .join(pod)
                .join(format!("{container}.log")),
        )
        .unwrap_or_default()
    }

    /// How many container processes were started so far (restarts included).
    pub fn processes_started(&self) -> usize {
        self.shared.lock().map(|s| s.started.len()).unwrap_or(0)
    }

    /// Every container process started so far, in order.
    pub fn started_processes(&self) -> Vec<StartedProcess> {
        self.shared.lock().map(|s| s.started.clone()).unwrap_or_default()
    }

    /// The processes of containers that are still running (pid, `namespace/pod/container`).
    pub fn running_processes(&self) -> Vec<(i32, String)> {
        self.shared
            .lock()
            .map(|s| s.pids.iter().map(|(p, d)| (*p, d.clone())).collect())
            .unwrap_or_default()
    }

    /// The directory holding everything of this simulator (node roots, storage).
    pub fn dir(&self) -> &Path {
        &self.config.base
    }

    fn shutdown(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        let pids: Vec<i32> = self
            .shared
            .lock()
            .map(|s| s.pids.keys().copied().collect())
            .unwrap_or_default();
        kill_groups(&pids, Duration::from_secs(3));
        let mut mounts: Vec<PathBuf> = self
            .shared
            .lock()
            .map(|s| s.mounts.iter().cloned().collect())
            .unwrap_or_default();
        mounts.extend(volumes::mounts_under(&self.config.base));
        // Deepest first; equal paths next to each other for dedup.
        mounts.sort_by(|a, b| {
            b.components()
                .count()
                .cmp(&a.components().count())
                .then_with(|| a.cmp(b))
        });
        mounts.dedup();
        for m in &mounts {
            if let Err(e) = volumes::unmount(m) {
                tracing::warn!(mount = %m.display(), error = %e, "unmounting");
            }
        }
        for ns in self.config.netns.values() {
            self.network.detach(ns);
        }
        let left = volumes::mounts_under(&self.config.base);
        if !left.is_empty() {
            // Removing the directory would reach into mounted storage: keep it.
            tracing::warn!(?left, "mounts left behind; keeping the simulator's directory");
            if let Some(dir) = self.dir.take() {
                let _ = dir.keep();
            }
        }
    }
}

/// SIGTERM the process groups, wait up to `grace` for them to end, then SIGKILL.
pub(crate) fn kill_groups(pids: &[i32], grace: Duration) {
    if pids.is_empty() {
        return;
    }
    for &pid in pids {
        let _ = signal::killpg(Pid::from_raw(pid), signal::Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in pids {
        let _ = signal::killpg(Pid::from_raw(pid), signal::Signal::SIGKILL);
    }
}

/// Whether a process exists and is not a zombie.
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Why simulated nodes cannot run in this process (`None` when they can): they need root with
/// CAP_NET_ADMIN (network namespaces) and CAP_SYS_ADMIN (bind mounts), and the `ip` tool. Tests print the
/// reason as `SKIPPED: …` and return.
pub fn unavailable_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid_root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(|s| s == "0"))
        .unwrap_or(false);
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    if !euid_root {
        return Some("simulated nodes need root (network namespaces, bind mounts)".into());
    }
    if caps & (1 << 12) == 0 {
        return Some("simulated nodes need CAP_NET_ADMIN (network namespaces)".into());
    }
    if caps & (1 << 21) == 0 {
        return Some("simulated nodes need CAP_SYS_ADMIN (bind mounts)".into());
    }
    if std::process::Command::new("ip").arg("-V").output().is_err() {
        return Some("simulated nodes need the `ip` tool (iproute2)".into());
    }
    None
}

/// Whether simulated nodes can run here; when not, prints `SKIPPED: <reason>` for the test to return.
pub fn available_or_skip() -> bool {
    match unavailable_reason() {
        Some(why) => {
            eprintln!("SKIPPED: {why}");
            false
        }
        None => true,
    }
}
