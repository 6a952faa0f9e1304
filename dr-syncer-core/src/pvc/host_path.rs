//! Volumes that live in a node directory rather than under the kubelet root — `hostPath` (and
//! `local`) PersistentVolumes, the default of kind's and k3s' local-path provisioner — and the kubelet
//! root itself (`pvcSync.kubeletRoot`, discovered from the nodes where they tell).
//!
//! A `hostPath` PV is served from its `hostPath.path` only when that path lies strictly below one of the
//! RemoteCluster's `pvcSync.hostPathPrefixes` (default [`DEFAULT_HOST_PATH_PREFIXES`]); a prefix is never
//! `/`, a system directory ([`FORBIDDEN_PATHS`]), the kubelet root, or above any of them. The grant the
//! orchestrator writes names the PV and its path as the PV says it (see `grant`); the mover only ever
//! names the grant, and the agent checks the path against its own prefixes again.

use k8s_openapi::api::core::v1::{Node, PersistentVolume};

/// The kubelet's root directory unless configured or discovered otherwise.
pub const DEFAULT_KUBELET_ROOT: &str = "/var/lib/kubelet";

/// Where hostPath volumes may be served from by default: kind's and rancher's local-path provisioner,
/// and k3s' bundled one.
pub const DEFAULT_HOST_PATH_PREFIXES: [&str; 3] = [
    "/var/local-path-provisioner",
    "/opt/local-path-provisioner",
    "/var/lib/rancher/k3s/storage",
];

/// Directories never served, nor anything below them, and never below a prefix that holds them: system
/// directories, the kubelet roots of the distributions dr-syncer knows, container runtimes' and the
/// distributions' state (k3s' and RKE2's server state holds the cluster's keys and tokens), logs, homes.
pub const FORBIDDEN_PATHS: [&str; 28] = [
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/boot",
    "/root",
    "/home",
    "/run",
    "/var/run",
    "/var/log",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/var/lib/kubelet",
    "/var/lib/k0s",
    "/var/snap/microk8s",
    "/var/lib/rancher/k3s/server",
    "/var/lib/rancher/k3s/agent",
    "/var/lib/rancher/k3s/data",
    "/var/lib/rancher/rke2",
    "/var/lib/containerd",
    "/var/lib/docker",
    "/var/lib/etcd",
    "/var/lib/cni",
    "/opt/cni",
    "/etc/kubernetes",
];

/// Check that `path` is absolute and normalised: no `.`/`..` components, no `//`, no trailing `/`, only
/// printable characters without spaces.
///
/// # Errors
/// A message naming the path.
pub fn check_absolute(path: &str) -> Result<(), String> {
    // The characters the agent's forced command accepts in a path.
    let ok = path.starts_with('/')
        && path.len() <= 4096
        && (path == "/" || !path.ends_with('/'))
        && !path.contains("//")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~+@:=,/-".contains(&b))
        && path.split('/').skip(1).all(|c| c != "." && c != "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{path:?} is not a normalised absolute path of [A-Za-z0-9._~+@:=,/-] (no `.`, `..`, `//` or a \
             trailing /)"
        ))
    }
}

/// Whether `path` is `base` or lies below it (by whole components).
pub fn is_within(path: &str, base: &str) -> bool {
    base == "/" || path == base || path.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))
}

/// Check one `pvcSync.hostPathPrefixes` entry against the kubelet root.
///
/// # Errors
/// A message naming the prefix and why it may not be served.
pub fn check_prefix(prefix: &str, kubelet_root: &str) -> Result<(), String> {
    check_absolute(prefix).map_err(|e| format!("pvcSync.hostPathPrefixes: {e}"))?;
    if prefix == "/" {
        return Err("pvcSync.hostPathPrefixes: \"/\" would serve the whole node".into());
    }
    for forbidden in FORBIDDEN_PATHS.iter().copied().chain([kubelet_root]) {
        if is_within(prefix, forbidden) || is_within(forbidden, prefix) {
            return Err(format!(
                "pvcSync.hostPathPrefixes: {prefix:?} overlaps {forbidden:?}, which is never served"
            ));
        }
    }
    Ok(())
}

/// The prefix `path` lies strictly below, if any.
pub fn allowed_prefix<'a>(path: &str, prefixes: &'a [String]) -> Option<&'a str> {
    if check_absolute(path).is_err() {
        return None;
    }
    prefixes
        .iter()
        .map(String::as_str)
        .find(|p| path != *p && is_within(path, p))
}

/// A PV whose data lives in a node directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDirectoryVolume {
    /// The PV's name.
    pub pv: String,
    /// The directory on the node (`hostPath.path`).
    pub path: String,
    /// The node the PV is pinned to by its required node affinity (`kubernetes.io/hostname`), if it
    /// names exactly one.
    pub node: Option<String>,
}

/// The node directory of a `hostPath` PV (`None` for any other kind of volume; `local` PVs are mounted
/// under the kubelet root like CSI volumes and need nothing special).
pub fn node_directory(pv: &PersistentVolume) -> Option<NodeDirectoryVolume> {
    let spec = pv.spec.as_ref()?;
    let path = spec.host_path.as_ref()?.path.clone();
    let node = spec
        .node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
        .and_then(|r| {
            let names: Vec<&String> = r
                .node_selector_terms
                .iter()
                .flat_map(|t| t.match_expressions.iter().flatten())
                .filter(|e| e.key == "kubernetes.io/hostname" && e.operator == "In")
                .flat_map(|e| e.values.iter().flatten())
                .collect();
            match names.as_slice() {
                [one] => Some((*one).clone()),
                _ => None,
            }
        });
    Some(NodeDirectoryVolume {
        pv: pv.metadata.name.clone().unwrap_or_default(),
        path,
        node,
    })
}

/// The kubelet root a Node's distribution uses, when it tells: MicroK8s (label `microk8s.io/cluster`)
/// and k0s (kubelet version `…+k0s`); `None` for the rest (the default applies).
pub fn kubelet_root_of(node: &Node) -> Option<&'static str> {
    let labels = node.metadata.labels.as_ref();
    if labels.is_some_and(|l| l.contains_key("microk8s.io/cluster")) {
        return Some("/var/snap/microk8s/common/var/lib/kubelet");
    }
    let version = node
        .status
        .as_ref()
        .and_then(|s| s.node_info.as_ref())
        .map(|i| i.kubelet_version.as_str())
        .unwrap_or_default();
    if version.contains("+k0s") {
        return Some("/var/lib/k0s/kubelet");
    }
    None
}

/// The kubelet root of a cluster from its nodes: the one they agree on, else the default.
///
/// # Errors
/// A message when the nodes disagree (set `pvcSync.kubeletRoot`, or give the agents a node selector).
pub fn discover_kubelet_root(nodes: &[Node]) -> Result<String, String> {
    let mut roots: Vec<&str> = nodes
        .iter()
        .map(|n| kubelet_root_of(n).unwrap_or(DEFAULT_KUBELET_ROOT))
        .collect();
    roots.sort_unstable();
    roots.dedup();
    match roots.as_slice() {
        [] => Ok(DEFAULT_KUBELET_ROOT.into()),
        [one] => Ok((*one).into()),
        many => Err(format!(
            "the nodes use different kubelet roots ({}): set pvcSync.kubeletRoot (and a node selector for the agents)",
            many.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn prefixes_never_reach_system_directories_or_the_kubelet_root() {
        let root = DEFAULT_KUBELET_ROOT;
        for ok in DEFAULT_HOST_PATH_PREFIXES
            .iter()
            .chain(&["/srv/volumes", "/mnt/disks"])
        {
            assert!(check_prefix(ok, root).is_ok(), "{ok}");
        }
        for bad in [
            "/",
            "/etc",
            "/etc/x",
            "/var",
            "/var/lib",
            "/var/lib/kubelet",
            "/var/lib/kubelet/pods",
            "relative",
            "/var/lib/rancher/k3s",
            "/var/lib/k0s",
            "/var/snap/microk8s/common",
            "/home/user",
            "/srv/a#b",
            "/srv/../etc",
            "/srv/",
            "/srv//x",
            "/a b",
            "/run/x",
        ] {
            assert!(check_prefix(bad, root).is_err(), "{bad}");
        }
        // A custom kubelet root is as forbidden as the default one.
        assert!(check_prefix("/var/snap/microk8s", "/var/snap/microk8s/common/var/lib/kubelet").is_err());
    }

    #[test]
    fn only_paths_strictly_below_a_prefix_are_allowed() {
        let prefixes = vec!["/var/local-path-provisioner".to_string()];
        assert_eq!(
            allowed_prefix("/var/local-path-provisioner/pvc-1_ns_data", &prefixes),
            Some("/var/local-path-provisioner")
        );
        for bad in [
            "/var/local-path-provisioner",
            "/var/local-path-provisioner-x/y",
            "/var/local-path-provisioner/../../etc",
            "/etc/shadow",
            "relative/x",
        ] {
            assert_eq!(allowed_prefix(bad, &prefixes), None, "{bad}");
        }
    }

    #[test]
    fn host_path_pvs_name_their_directory_and_node() {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pvc-1"},
            "spec": {
                "hostPath": {"path": "/var/local-path-provisioner/pvc-1_shop_data", "type": "DirectoryOrCreate"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["prod-a"]}]}]}},
            },
        }))
        .unwrap();
        assert_eq!(
            node_directory(&pv),
            Some(NodeDirectoryVolume {
                pv: "pvc-1".into(),
                path: "/var/local-path-provisioner/pvc-1_shop_data".into(),
                node: Some("prod-a".into()),
            })
        );
        let csi: PersistentVolume = serde_json::from_value(
            json!({"metadata": {"name": "x"}, "spec": {"csi": {"driver": "d", "volumeHandle": "h"}}}),
        )
        .unwrap();
        assert_eq!(node_directory(&csi), None);
    }

    #[test]
    fn the_kubelet_root_is_discovered_from_the_nodes() {
        let node = |labels: serde_json::Value, version: &str| -> Node {
            serde_json::from_value(json!({
                "metadata": {"name": "n", "labels": labels},
                "status": {"nodeInfo": {"kubeletVersion": version, "architecture": "", "bootID": "",
                    "containerRuntimeVersion": "", "kernelVersion": "", "kubeProxyVersion": "", "machineID": "",
                    "operatingSystem": "", "osImage": "", "systemUUID": ""}},
            }))
            .unwrap()
        };
        let plain = node(json!({}), "v1.31.0");
        let micro = node(json!({"microk8s.io/cluster": "true"}), "v1.31.0");
        let k0s = node(json!({}), "v1.31.0+k0s");
        assert_eq!(
            discover_kubelet_root(std::slice::from_ref(&plain)).unwrap(),
            "/var/lib/kubelet"
        );
        assert_eq!(
            discover_kubelet_root(&[micro.clone(), micro.clone()]).unwrap(),
            "/var/snap/microk8s/common/var/lib/kubelet"
        );
        assert_eq!(discover_kubelet_root(&[k0s]).unwrap(), "/var/lib/k0s/kubelet");
        assert!(
            discover_kubelet_root(&[plain, micro])
                .unwrap_err()
                .contains("pvcSync.kubeletRoot")
        );
        assert_eq!(discover_kubelet_root(&[]).unwrap(), DEFAULT_KUBELET_ROOT);
    }
}
