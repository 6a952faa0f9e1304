//! Simulated nodes for a test control plane: kubelet, scheduler, DaemonSet, Deployment and StatefulSet
//! controllers and PV provisioner in one, running real processes in Linux network namespaces.
//!
//! kapi only stores objects. A [`Kubelet`] plays everything a cluster's nodes and controllers would do for
//! the pods of one [`ControlPlane`], through its Kubernetes API:
//!
//! - **Nodes**: one `Node` per simulated node (labels `kubernetes.io/hostname`, `kubernetes.io/os=linux`
//!   plus extra labels; addresses InternalIP, ExternalIP when given
//!   ([`KubeletBuilder::node_external_ip`]) and Hostname; Ready; capacity), each with its own network
//!   namespace on a [`SimNetwork`].
//! - **Scheduler**: pods without `spec.nodeName` are bound (`pods/binding`) to the first node that
//!   satisfies their `nodeSelector`, required node affinity and the required node affinity
//!   (`kubernetes.io/hostname In [...]`) of the PVs their bound PVCs name.
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
//!   A PVC of storage class `local-path` gets instead what rancher's local-path-provisioner makes: a
//!   hostPath PV `pvc-<uid>` (path `/var/local-path-provisioner/pvc-<uid>_<namespace>_<claim>`, type
//!   `DirectoryOrCreate`, reclaim policy `Delete`) with a required node affinity on
//!   `kubernetes.io/hostname` — the node of a pod using the claim (bound, or where the scheduler will put
//!   it, the node affinity of its other PVs included); a claim no pod uses for 3 s after its creation
//!   goes to the first node — and its directory created on that node ([`Kubelet::host_path`]); the
//!   scheduler waits for such a claim to be bound. A PVC naming an existing PV (`spec.volumeName`)
//!   becomes Bound with it.
//! - **Kubelet**: volumes under `kubelet_root(node)/pods/<uid>/volumes/` (the kubelet root is
//!   `var/lib/kubelet` below the node root unless [`KubeletBuilder::kubelet_root`] says otherwise; it is
//!   a shared mount point, so a hostPath volume naming it sees the volumes mounted later). PVCs as real
//!   bind mounts (`kubernetes.io~csi/<pv>/mount`; a `local` PV's node path bind-mounted at
//!   `kubernetes.io~local-volume/<pv>`; a hostPath PV used in place, its node path being the volume, as a
//!   real kubelet does), Secrets/ConfigMaps written like the kubelet's atomic writer and re-synced,
//!   emptyDir, hostPath under [`Kubelet::node_root`]; containers whose image is registered ([`KubeletBuilder::image`]) run as
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
//! - **kube-proxy and load balancers** (TCP only, no iptables: forwarding threads inside the node
//!   namespaces): for every Service port with a `nodePort` (types NodePort and LoadBalancer), each node
//!   with a ready endpoint listens on `0.0.0.0:<nodePort>` and forwards to its local endpoint at the
//!   `targetPort` (a number or a container port name; default the port); with `externalTrafficPolicy:
//!   Local` nodes without a local endpoint do not listen (connection refused), otherwise every node
//!   listens and forwards to a local or the first endpoint. Endpoints are the Running, Ready pods matching
//!   the selector, or for Services without a selector the ready addresses of the EndpointSlices labelled
//!   `kubernetes.io/service-name=<service>` on one of this simulator's nodes (by `nodeName` or address;
//!   the slice's port of the same name is the target). A LoadBalancer Service gets an ingress IP from
//!   [`LOAD_BALANCER_RANGE`] (`services/status`), which is put on the node of its first endpoint (and
//!   routed there by the [`SimRouter`] if the network is joined to one) with a listener on
//!   `<ingress IP>:<port>` forwarding to that endpoint — none when the endpoint is that node's own
//!   address at the same port: a process listening on all addresses serves it itself. Listeners and
//!   addresses follow the endpoints and go with the Service.
//!
//! **Networks**: [`SimNetwork`] is one L2 network; a [`SimRouter`] joins several and routes node external
//! IPs ([`EXTERNAL_NODE_RANGE`]) and load-balancer IPs. A production network joined with
//! [`Routes::Everything`] and a DR network with [`Routes::ExternalOnly`] give DR nodes the view of a
//! real DR site: production nodes reachable at external addresses only. [`listen_in`] and
//! [`connect_from`] open TCP sockets inside a node's namespace for tests.
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
mod proxy;
mod services;
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

pub use network::{
    EXTERNAL_NODE_RANGE, LOAD_BALANCER_RANGE, Routes, SimNetwork, SimRouter, connect_from, in_netns,
    listen_in, set_links,
};

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
    /// The simulated kube-proxy's forwarders (`None`: the endpoint serves the address itself).
    pub(crate) proxies: BTreeMap<services::ProxyKey, Option<proxy::Proxy>>,
}

/// The fixed configuration of a running simulator.
pub(crate) struct Config {
    pub(crate) client: Client,
    pub(crate) nodes: Vec<NodeInfo>,
    pub(crate) netns: BTreeMap<String, String>,
    pub(crate) images: BTreeMap<String, PathBuf>,
    pub(crate) base: PathBuf,
    pub(crate) pod_log_dir: PathBuf,
    /// The kubelet's root directory relative to a node root.
    pub(crate) kubelet_rel: PathBuf,
    /// The network (weak: the [`Kubelet`] holds it; background tasks may outlive the handle a little).
    pub(crate) network: std::sync::Weak<network::NetworkInner>,
    /// Node name → external IP.
    pub(crate) externals: BTreeMap<String, String>,
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
        self.node_root(node).join(&self.kubelet_rel)
    }

    /// `path` (absolute, as in a hostPath volume) on the node's filesystem.
    pub(crate) fn host_path(&self, node: &str, path: &str) -> PathBuf {
        self.node_root(node).join(path.trim_start_matches('/'))
    }

    /// The network, while the [`Kubelet`] holds it.
    pub(crate) fn network(&self) -> Option<SimNetwork> {
        self.network.upgrade().map(|inner| SimNetwork { inner })
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
    external_ips: BTreeMap<String, String>,
    kubelet_rel: PathBuf,
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

    /// Give node `name` (declared before with [`KubeletBuilder::node`]) the external address `ip` (from
    /// [`EXTERNAL_NODE_RANGE`], e.g. `203.0.113.11`): it is added (/32) to the node's `eth0`, the
    /// [`SimRouter`] the network is joined to (if any, now or later) routes it to the node, and the
    /// `Node`'s `status.addresses` lists it as `ExternalIP`.
    pub fn node_external_ip(mut self, name: &str, ip: &str) -> Self {
        self.external_ips.insert(name.to_owned(), ip.to_owned());
        self
    }

    /// Where the kubelet keeps its state, relative to the node root (default `var/lib/kubelet`; e.g.
    /// `var/snap/microk8s/common/var/lib/kubelet` as on MicroK8s): pod volumes are under
    /// `<node root>/<rel>/pods/<uid>/volumes/`, so a hostPath volume naming `/<rel>` (with
    /// `mountPropagation`, as the dr-syncer agent's) sees them.
    pub fn kubelet_root(mut self, rel: &str) -> Self {
        self.kubelet_rel = PathBuf::from(rel.trim_start_matches('/'));
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
                kubelet_rel: self.kubelet_rel.clone(),
                network: Arc::downgrade(&self.network.inner),
                externals: self.external_ips.clone(),
            }),
            shared: Arc::new(Mutex::new(Shared::default())),
            network: self.network.clone(),
            tasks: Vec::new(),
            dir: Some(dir),
        };
        let mut netns = BTreeMap::new();
        for node in &self.nodes {
            let ns = self.network.attach(&node.name, &node.ip)?;
            netns.insert(node.name.clone(), ns.clone());
            if let Some(ext) = self.external_ips.get(&node.name) {
                self.network.add_address(&ns, &node.ip, ext)?;
            }
        }
        let config = Arc::new(Config {
            client: self.client.clone(),
            nodes: self.nodes.clone(),
            netns,
            images: self.images,
            base: kubelet.config.base.clone(),
            pod_log_dir: self.pod_log_dir,
            kubelet_rel: self.kubelet_rel,
            network: Arc::downgrade(&self.network.inner),
            externals: self.external_ips.clone(),
        });
        kubelet.config = config.clone();
        for node in &config.nodes {
            std::fs::create_dir_all(config.kubelet_root(&node.name))
                .map_err(|e| Error::io("creating a node's directories", e))?;
            volumes::make_shared_mount(&config.kubelet_root(&node.name))?;
            create_node(&config.client, node, self.external_ips.get(&node.name)).await?;
        }
        kubelet.tasks = sim::spawn(config, kubelet.shared.clone());
        Ok(kubelet)
    }
}

async fn create_node(client: &Client, node: &NodeInfo, external_ip: Option<&String>) -> Result<()> {
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
    let mut addresses = vec![json!({"type": "InternalIP", "address": node.ip})];
    if let Some(ext) = external_ip {
        addresses.push(json!({"type": "ExternalIP", "address": ext}));
    }
    addresses.push(json!({"type": "Hostname", "address": node.name}));
    let status = json!({"status": {
        "addresses": addresses,
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
            external_ips: BTreeMap::new(),
            kubelet_rel: PathBuf::from("var/lib/kubelet"),
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

    /// The kubelet's root directory on that node (`node_root(node)/var/lib/kubelet`, or what
    /// [`KubeletBuilder::kubelet_root`] set); pod volumes are under `pods/<uid>/volumes/`.
    pub fn kubelet_root(&self, node: &str) -> PathBuf {
        self.config.kubelet_root(node)
    }

    /// Where the absolute path `path` of node `node` (as a hostPath volume or PV names it) is:
    /// `node_root(node)` joined with `path` (to seed or check data).
    pub fn host_path(&self, node: &str, path: &str) -> PathBuf {
        self.config.host_path(node, path)
    }

    /// The node's IP address (empty for an unknown node).
    pub fn node_ip(&self, node: &str) -> String {
        self.config.node(node).map(|n| n.ip.clone()).unwrap_or_default()
    }

    /// The node's external IP ([`KubeletBuilder::node_external_ip`]), if it has one.
    pub fn node_external_ip(&self, node: &str) -> Option<String> {
        self.config.externals.get(node).cloned()
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
        // Stop the forwarders (their threads end within a poll interval).
        let proxies = self
            .shared
            .lock()
            .map(|mut s| std::mem::take(&mut s.proxies))
            .unwrap_or_default();
        drop(proxies);
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
