//! The objects of the PVC data path, built from settings (pure; `crate::ops::PvcDataSync` creates them).
//!
//! | object | cluster | what for |
//! |---|---|---|
//! | [`agent_namespace`] | source | holds the agents (Pod Security level `privileged`: hostNetwork, hostPath) |
//! | [`host_keys_secret`], [`authorized_keys_secret`] | source | the agents' host key; the client keys they accept |
//! | [`grants_configmap`] | source | which volumes the agents serve (mounted as `--grants-dir`) |
//! | [`agent_daemonset`] | source | the readers: `dr-syncer-agent serve` on every node, host network |
//! | [`agent_node_port_service`] | source | exposure `NodePort`: the agents' SSH port on every node (`externalTrafficPolicy: Local`) |
//! | [`transfer_load_balancer`] | source | exposure `LoadBalancer`: one transfer's way to the agent of the volume's node |
//! | [`mount_pod`] | source | mounts a PVC read-only on a node when no application pod does |
//! | [`mover_key_secret`], [`mover_pod`] | DR | the writer: mounts the DR PVC and pulls the data |
//!
//! Pods dr-syncer creates carry `app.kubernetes.io/managed-by: dr-syncer` and [`super::ROLE_LABEL`], never
//! mount a ServiceAccount token (they do not talk to the API), and keep their privileges to what their
//! role needs: the reader runs as root to read every file with its owner (contained by the forced command,
//! see `docs/data-path.md`), the mount pod holds a read-only mount, the mover writes only its own volume.

use std::collections::BTreeMap;

use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::DaemonSet,
        core::v1::{ConfigMap, Namespace, Pod, Secret, Service},
        discovery::v1::EndpointSlice,
    },
};
use serde_json::{Value, json};

use super::{
    AGENT_NAME, AgentEnv, AgentSettings, MANAGED_BY, PVC_LABEL, ROLE_LABEL, TransferSettings,
    exposure::Endpoint,
};
use crate::keys::{AuthorizedClientKeys, KeyPair, KeySecrets};

/// Where the agent container mounts the allowed hostPath prefixes (`<dir>/<index>`).
pub const HOST_PATHS_DIR: &str = "/host-paths";
/// The agent's environment variable with its node's name (the downward API).
pub const NODE_NAME_ENV: &str = "DR_SYNCER_NODE_NAME";

/// The agent's state directory (sshd's configuration, keys, grants in effect): an in-memory emptyDir.
pub const AGENT_STATE_DIR: &str = "/run/dr-syncer-agent";
/// Mount point of the host keys Secret in the agent.
pub const AGENT_HOST_KEYS_DIR: &str = "/etc/dr-syncer/host-keys";
/// Mount point of the authorized keys Secret in the agent.
pub const AGENT_AUTHORIZED_KEYS_DIR: &str = "/etc/dr-syncer/authorized-keys";
/// Mount point of the grants ConfigMap in the agent.
pub const AGENT_GRANTS_DIR: &str = "/etc/dr-syncer/grants";
/// Mount point of the mover's key Secret.
pub const MOVER_KEY_DIR: &str = "/etc/dr-syncer/mover-key";
/// Mount point of the DR volume in the mover.
pub const MOVER_DATA_DIR: &str = "/data";
/// Where the mover writes its final line (the pod's termination message).
pub const TERMINATION_LOG: &str = "/dev/termination-log";

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
    // The values are built here from fixed shapes; a failure is a bug in this module (covered by tests).
    serde_json::from_value(value).unwrap_or_else(|e| panic!("dr-syncer built an invalid manifest: {e}"))
}

fn labels(role: &str, extra: &BTreeMap<String, String>) -> Value {
    labels_named(AGENT_NAME, role, extra)
}

fn labels_named(name: &str, role: &str, extra: &BTreeMap<String, String>) -> Value {
    let mut l: BTreeMap<String, String> = extra.clone();
    l.insert("app.kubernetes.io/name".into(), name.into());
    l.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    l.insert(ROLE_LABEL.into(), role.into());
    json!(l)
}

/// Labels of the objects of `settings`' agents: managed-by plus the owner labels.
fn owned(settings: &AgentSettings) -> Value {
    let mut l = settings.owner_labels.clone();
    l.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    json!(l)
}

/// Label selector of the agent pods of `settings`.
pub fn agent_selector(settings: &AgentSettings) -> String {
    format!("app.kubernetes.io/name={},{ROLE_LABEL}=agent", settings.name)
}

/// Add `settings`' owner labels to an object's labels.
pub fn label_owned(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    settings: &AgentSettings,
) {
    if settings.owner_labels.is_empty() {
        return;
    }
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in &settings.owner_labels {
        labels.insert(k.clone(), v.clone());
    }
}

fn image_fields(settings: &AgentSettings) -> (String, Option<String>) {
    (settings.image.clone(), settings.pull_policy.clone())
}

/// The agents' namespace.
pub fn agent_namespace(settings: &AgentSettings) -> Namespace {
    typed(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {
            "name": settings.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                // hostNetwork, hostPath and root need the privileged Pod Security level.
                "pod-security.kubernetes.io/enforce": "privileged",
            },
        },
    }))
}

fn secret(namespace: &str, name: &str, data: BTreeMap<String, Vec<u8>>) -> Secret {
    let mut s: Secret = typed(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/managed-by": MANAGED_BY}},
        "type": "Opaque",
    }));
    s.data = Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect());
    s
}

/// The agents' host key Secret.
pub fn host_keys_secret(settings: &AgentSettings, keys: &KeySecrets, host: &KeyPair) -> Secret {
    let mut s = secret(&settings.namespace, &keys.host_keys(), keys.host_keys_data(host));
    label_owned(&mut s.metadata, settings);
    s
}

/// The Secret with the client keys the agents accept.
pub fn authorized_keys_secret(
    settings: &AgentSettings,
    keys: &KeySecrets,
    authorized: &AuthorizedClientKeys,
) -> Secret {
    let mut s = secret(
        &settings.namespace,
        &keys.authorized_keys(),
        keys.authorized_keys_data(authorized),
    );
    label_owned(&mut s.metadata, settings);
    s
}

/// The (empty) grants ConfigMap; grants are added and removed key by key.
pub fn grants_configmap(settings: &AgentSettings) -> ConfigMap {
    typed(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": settings.grants_configmap, "namespace": settings.namespace,
                     "labels": owned(settings)},
    }))
}

fn tolerations(settings: &AgentSettings) -> Value {
    if settings.tolerations.is_empty() {
        return json!([{"operator": "Exists"}]);
    }
    Value::Array(
        settings
            .tolerations
            .iter()
            .map(|t| {
                let mut m = serde_json::Map::new();
                for (k, v) in t {
                    let value = if k == "tolerationSeconds" {
                        v.parse::<i64>().map_or(json!(v), |n| json!(n))
                    } else {
                        json!(v)
                    };
                    m.insert(k.clone(), value);
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// The agent DaemonSet of a cluster whose key Secrets are named by `keys`.
pub fn agent_daemonset(settings: &AgentSettings, keys: &KeySecrets) -> DaemonSet {
    let (image, pull) = image_fields(settings);
    let mut pod_labels = settings.labels.clone();
    pod_labels.extend(settings.owner_labels.clone());
    let mut container = json!({
        "name": "agent",
        "image": image,
        "args": [
            "serve",
            format!("--port={}", settings.port),
            format!("--health-address=0.0.0.0:{}", settings.health_port),
            format!("--host-keys-dir={AGENT_HOST_KEYS_DIR}"),
            format!("--authorized-keys-dir={AGENT_AUTHORIZED_KEYS_DIR}"),
            format!("--grants-dir={AGENT_GRANTS_DIR}"),
            format!("--state-dir={AGENT_STATE_DIR}"),
            format!("--allow-dir={AGENT_STATE_DIR}/allow"),
            format!("--volume-root={}", settings.kubelet_root()),
        ],
        "env": settings.env.iter().map(|e| match e {
            AgentEnv::Value(k, v) => json!({"name": k, "value": v}),
            AgentEnv::FieldRef(k, path) => json!({"name": k, "valueFrom": {"fieldRef": {"fieldPath": path}}}),
        }).collect::<Vec<_>>(),
        "ports": [
            {"name": "ssh", "containerPort": settings.port, "protocol": "TCP"},
            {"name": "health", "containerPort": settings.health_port, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": settings.health_port},
                           "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": settings.health_port},
                          "periodSeconds": 20, "failureThreshold": 3},
        "securityContext": {
            "runAsUser": 0,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {
                "drop": ["ALL"],
                // sshd (privilege separation, chroot) and rsync reading every file with its owner.
                "add": ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "SETUID", "SETGID",
                        "SYS_CHROOT", "KILL", "AUDIT_WRITE"],
            },
        },
        "volumeMounts": [
            {"name": "kubelet", "mountPath": settings.kubelet_root(), "readOnly": true,
             "mountPropagation": "HostToContainer"},
            {"name": "host-keys", "mountPath": AGENT_HOST_KEYS_DIR, "readOnly": true},
            {"name": "authorized-keys", "mountPath": AGENT_AUTHORIZED_KEYS_DIR, "readOnly": true},
            {"name": "grants", "mountPath": AGENT_GRANTS_DIR, "readOnly": true},
            // The agent's own state directory is the emptyDir, not an ancestor of it: a kubelet makes
            // emptyDirs world-writable, and sshd refuses files below such a directory (the agent makes
            // its state directory 0700). /run/sshd comes with the image (read-only root file system).
            {"name": "run", "mountPath": AGENT_STATE_DIR},
            // sshd writes the file that tells the forced command which key logged in (ExposeAuthInfo)
            // to /tmp: without a writable /tmp no transfer's key would be recognised.
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    });
    if let Some(p) = pull {
        container["imagePullPolicy"] = json!(p);
    }
    // The agent serves hostPath grants of its own node only.
    if let Some(env) = container["env"].as_array_mut() {
        env.push(json!({"name": NODE_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}));
    }
    // hostPath PVs: each allowed prefix mounted read-only at a path of its own (the node path travels as
    // an argument next to it: the grant names node paths).
    let mut host_path_volumes = Vec::new();
    for (i, prefix) in settings.host_path_prefixes.iter().enumerate() {
        let mount = format!("{HOST_PATHS_DIR}/{i}");
        if let Some(args) = container["args"].as_array_mut() {
            args.push(json!(format!("--host-path-prefix={prefix}")));
            args.push(json!(format!("--host-path-mount={mount}")));
        }
        if let Some(mounts) = container["volumeMounts"].as_array_mut() {
            mounts.push(
                json!({"name": format!("host-path-{i}"), "mountPath": mount, "readOnly": true,
                               "mountPropagation": "HostToContainer"}),
            );
        }
        host_path_volumes.push(json!({"name": format!("host-path-{i}"),
                                      "hostPath": {"path": prefix, "type": "DirectoryOrCreate"}}));
    }
    if let Some((limits, requests)) = &settings.resources {
        container["resources"] = json!({"limits": limits, "requests": requests});
    }
    if settings.privileged {
        // `deployment.privileged: true`: what SELinux-enforcing nodes need for root to read every volume.
        container["securityContext"] = json!({
            "runAsUser": 0,
            "privileged": true,
            "readOnlyRootFilesystem": true,
        });
    }
    if !settings.host_network {
        // On the pod network, the SSH port is published on the node's address (the CNI portmap
        // plugin); movers dial the node as with the host network.
        container["ports"][0]["hostPort"] = json!(settings.port);
    }
    let mut pod_spec = json!({
        "hostNetwork": settings.host_network,
        "dnsPolicy": if settings.host_network { "ClusterFirstWithHostNet" } else { "ClusterFirst" },
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "terminationGracePeriodSeconds": 30,
        "tolerations": tolerations(settings),
        "containers": [container],
        "volumes": [
            {"name": "kubelet", "hostPath": {"path": settings.kubelet_root(), "type": "Directory"}},
            {"name": "host-keys", "secret": {"secretName": keys.host_keys(), "defaultMode": 0o400}},
            {"name": "authorized-keys", "secret": {"secretName": keys.authorized_keys(), "defaultMode": 0o400}},
            {"name": "grants", "configMap": {"name": settings.grants_configmap, "optional": true}},
            {"name": "run", "emptyDir": {"medium": "Memory"}},
            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
        ],
    });
    if let Some(volumes) = pod_spec["volumes"].as_array_mut() {
        volumes.extend(host_path_volumes);
    }
    if !settings.node_selector.is_empty() {
        pod_spec["nodeSelector"] = json!(settings.node_selector);
    }
    if let Some(pc) = &settings.priority_class_name {
        pod_spec["priorityClassName"] = json!(pc);
    }
    typed(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": settings.name, "namespace": settings.namespace,
                     "labels": labels_named(&settings.name, "agent", &settings.owner_labels)},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": settings.name, ROLE_LABEL: "agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels_named(&settings.name, "agent", &pod_labels), "annotations": settings.annotations},
                "spec": pod_spec,
            },
        },
    }))
}

/// Name of the mount pod of a source PVC.
pub fn mount_pod_name(namespace: &str, pvc: &str) -> String {
    super::object_name("dr-syncer-mount", pvc, &[namespace, pvc])
}

/// A pod that mounts `pvc` read-only and holds it until deleted (so the node's agent can serve the volume
/// when no application pod runs); pinned to `node` when given, else placed by the scheduler (which also
/// respects the volume's topology).
pub fn mount_pod(settings: &AgentSettings, namespace: &str, pvc: &str, node: Option<&str>) -> Pod {
    let (image, pull) = image_fields(settings);
    let mut container = json!({
        "name": "hold",
        "image": image,
        "args": ["hold"],
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65534, "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "data", "mountPath": MOVER_DATA_DIR, "readOnly": true}],
        "resources": {"requests": {"cpu": "1m", "memory": "8Mi"}},
    });
    if let Some(p) = pull {
        container["imagePullPolicy"] = json!(p);
    }
    let mut l = settings.owner_labels.clone();
    l.insert(PVC_LABEL.to_string(), pvc.to_string());
    let mut pod: Pod = typed(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": mount_pod_name(namespace, pvc), "namespace": namespace,
                     "labels": labels("mount", &l)},
        "spec": {
            "restartPolicy": "Always",
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 5,
            "tolerations": [{"operator": "Exists"}],
            "containers": [container],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": pvc, "readOnly": true}}],
        },
    }));
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = node.map(str::to_string);
    }
    pod
}

/// Name of the mover pod (and its key Secret) of a DR PVC.
pub fn mover_pod_name(namespace: &str, pvc: &str) -> String {
    super::object_name("dr-syncer-mover", pvc, &[namespace, pvc])
}

/// The Secret with the mover's client key and pinned host keys, in the DR namespace.
pub fn mover_key_secret(namespace: &str, name: &str, data: BTreeMap<String, Vec<u8>>) -> Secret {
    let mut s = secret(namespace, name, data);
    if let Some(l) = s.metadata.labels.as_mut() {
        l.insert(ROLE_LABEL.into(), "mover".into());
    }
    s
}

/// Where a mover pulls from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoverTarget<'a> {
    /// DR namespace.
    pub namespace: &'a str,
    /// DR PVC (mounted read-write at `/data`).
    pub pvc: &'a str,
    /// The addresses of the reader, in the order to dial them (by the cluster's exposure mode; the
    /// first that accepts a connection is used).
    pub readers: &'a [Endpoint],
    /// The grant the reader resolves.
    pub grant: &'a str,
    /// How long the mover waits for the reader to serve the grant (and accept the transfer's key).
    pub grant_wait: std::time::Duration,
    /// Name of the key Secret in the DR namespace.
    pub key_secret: &'a str,
    /// The source PVC as `namespace/name` (label and annotation, for people reading the pod).
    pub source: &'a str,
}

/// The mover pod: pulls the granted volume from the reader into the DR PVC, then exits (its final
/// JSON line is the termination message).
pub fn mover_pod(
    image: &str,
    pull_policy: Option<&str>,
    target: &MoverTarget<'_>,
    transfer: &TransferSettings,
) -> Pod {
    let (first_host, first_port) = target
        .readers
        .first()
        .map_or((String::new(), 2222), |e| (e.host.clone(), e.port));
    let mut args = vec![
        "mover".to_string(),
        format!("--host={first_host}"),
        format!("--port={first_port}"),
        format!(
            "--host-key-file={MOVER_KEY_DIR}/{}",
            crate::keys::PINNED_HOST_KEYS_FILE
        ),
        format!("--identity={MOVER_KEY_DIR}/{}", crate::keys::CLIENT_KEY_FILE),
        format!("--grant={}", target.grant),
        format!("--grant-wait-secs={}", target.grant_wait.as_secs().max(1)),
        format!("--destination={MOVER_DATA_DIR}"),
        format!("--termination-log={TERMINATION_LOG}"),
    ];
    args.extend(
        target
            .readers
            .iter()
            .skip(1)
            .map(|e| format!("--fallback-address={e}")),
    );
    args.extend(transfer.mover_args());
    let mut container = json!({
        "name": "mover",
        "image": image,
        "args": args,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            // The mover writes files with their original owners and modes.
            "runAsUser": 0,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "MKNOD"]},
        },
        "volumeMounts": [
            {"name": "data", "mountPath": MOVER_DATA_DIR},
            {"name": "key", "mountPath": MOVER_KEY_DIR, "readOnly": true},
        ],
    });
    if let Some(p) = pull_policy {
        container["imagePullPolicy"] = json!(p);
    }
    let mut l = BTreeMap::new();
    l.insert(PVC_LABEL.to_string(), target.pvc.to_string());
    typed(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": mover_pod_name(target.namespace, target.pvc),
            "namespace": target.namespace,
            "labels": labels("mover", &l),
            "annotations": {"dr-syncer.io/source-pvc": target.source},
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 10,
            "activeDeadlineSeconds": transfer.timeout.as_secs().max(1) + 300,
            "containers": [container],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": target.pvc}},
                {"name": "key", "secret": {"secretName": target.key_secret, "defaultMode": 0o400}},
            ],
        },
    }))
}

/// Name of the connectivity probe pod (and its key Secret) of a ClusterMapping.
pub fn probe_pod_name(mapping: &str) -> String {
    super::object_name("dr-syncer-probe", mapping, &[mapping])
}

/// A pod in the DR cluster that checks, as a mover would, that every reader in `hosts` answers on
/// `port` with the pinned host key and accepts the client key; one JSON line per reader in its log and
/// termination message.
pub fn probe_pod(
    agents: &AgentSettings,
    image: &str,
    namespace: &str,
    name: &str,
    hosts: &[String],
    key_secret: &str,
) -> Pod {
    let (pull_policy, port, connect_timeout) = (
        agents.pull_policy.as_deref(),
        agents.port,
        agents.health.ssh_timeout,
    );
    // Each host is `host` (on `port`) or `host:port` (the address of an exposure mode).
    let mut args = vec![
        "probe".to_string(),
        format!("--port={port}"),
        format!(
            "--host-key-file={MOVER_KEY_DIR}/{}",
            crate::keys::PINNED_HOST_KEYS_FILE
        ),
        format!("--identity={MOVER_KEY_DIR}/{}", crate::keys::CLIENT_KEY_FILE),
        format!("--connect-timeout-secs={}", connect_timeout.as_secs().max(1)),
        format!("--termination-log={TERMINATION_LOG}"),
    ];
    for (i, h) in hosts.iter().enumerate() {
        args.push(if i == 0 {
            format!("--host={h}")
        } else {
            format!("--extra-host={h}")
        });
    }
    let mut container = json!({
        "name": "probe",
        "image": image,
        "args": args,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65534, "readOnlyRootFilesystem": true,
                            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "key", "mountPath": MOVER_KEY_DIR, "readOnly": true}],
    });
    if let Some(p) = pull_policy {
        container["imagePullPolicy"] = json!(p);
    }
    typed(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels("probe", &BTreeMap::new())},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "activeDeadlineSeconds": 300,
            "containers": [container],
            "volumes": [{"name": "key", "secret": {"secretName": key_secret, "defaultMode": 0o444}}],
        },
    }))
}

/// Name of the agents' NodePort Service (exposure `NodePort`).
pub fn agent_node_port_service_name(settings: &AgentSettings) -> String {
    format!("{}-ssh", settings.name)
}

/// The agents' NodePort Service (exposure `NodePort`): every node's agent on the node port, and with
/// `externalTrafficPolicy: Local` a node's port reaches that node's agent only (and the client's address
/// is kept, for the transfer key's `from=`).
pub fn agent_node_port_service(settings: &AgentSettings) -> Service {
    let mut port =
        json!({"name": "ssh", "port": settings.port, "targetPort": settings.port, "protocol": "TCP"});
    if let Some(np) = settings.exposure.node_port {
        port["nodePort"] = json!(np);
    }
    typed(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": agent_node_port_service_name(settings),
            "namespace": settings.namespace,
            "labels": labels_named(&settings.name, "agent", &settings.owner_labels),
            "annotations": settings.exposure.service_annotations,
        },
        "spec": {
            "type": "NodePort",
            "externalTrafficPolicy": "Local",
            "selector": {"app.kubernetes.io/name": settings.name, ROLE_LABEL: "agent"},
            "ports": [port],
        },
    }))
}

/// Name of the LoadBalancer Service (and EndpointSlice) of one transfer.
pub fn transfer_load_balancer_name(grant: &str) -> String {
    super::object_name("dr-syncer-lb", grant, &[grant])
}

/// Exposure `LoadBalancer`: a Service made for one transfer and removed after it, whose only endpoint is
/// the agent pod on the node holding the volume (`agent_ip`, the pod's IP): a Service without a selector
/// and its EndpointSlice.
pub fn transfer_load_balancer(
    settings: &AgentSettings,
    grant: &str,
    node: &str,
    agent_ip: &str,
) -> (Service, EndpointSlice) {
    let name = transfer_load_balancer_name(grant);
    let service = typed(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels_named(&settings.name, "transfer", &settings.owner_labels),
            "annotations": settings.exposure.service_annotations,
        },
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "ports": [{"name": "ssh", "port": settings.port, "targetPort": settings.port, "protocol": "TCP"}],
        },
    }));
    let mut slice_labels = BTreeMap::from([("kubernetes.io/service-name".to_string(), name.clone())]);
    slice_labels.extend(settings.owner_labels.clone());
    let family = if agent_ip.contains(':') { "IPv6" } else { "IPv4" };
    let slice = typed(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels_named(&settings.name, "transfer", &slice_labels),
        },
        "addressType": family,
        "endpoints": [{"addresses": [agent_ip], "nodeName": node, "conditions": {"ready": true}}],
        "ports": [{"name": "ssh", "port": settings.port, "protocol": "TCP"}],
    }));
    (service, slice)
}
