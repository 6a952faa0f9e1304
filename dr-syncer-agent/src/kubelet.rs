//! Where the kubelet mounts a pod's volumes on its node.
//!
//! A PVC-backed volume of pod `UID` appears under the kubelet root as
//! `pods/<UID>/volumes/<plugin>/<PV name>` — for CSI volumes (`kubernetes.io~csi`) the data is in that
//! directory's `mount` subdirectory — and other volumes under their pod volume name
//! (`kubernetes.io~empty-dir/<volume>`). The plugin directory names escape `/` as `~`. Volumes of
//! `hostPath` PersistentVolumes are not mounted there: their data is at the PV's `hostPath.path`.

use std::path::{Path, PathBuf};

/// Errors of volume discovery.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// A name that is not a single path component.
    #[error("invalid {what} {value:?}")]
    InvalidName {
        /// Which name.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// Nothing found.
    #[error("volume {volume} of pod {pod_uid} is not mounted under {root}")]
    NotFound {
        /// Pod UID.
        pod_uid: String,
        /// Volume (PV or pod volume name).
        volume: String,
        /// Kubelet root.
        root: PathBuf,
    },
    /// More than one plugin directory holds the name.
    #[error("volume {volume} of pod {pod_uid} is ambiguous: {paths:?}")]
    Ambiguous {
        /// Pod UID.
        pod_uid: String,
        /// Volume.
        volume: String,
        /// The candidates.
        paths: Vec<PathBuf>,
    },
    /// Reading a directory failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Volume plugins whose volumes are never served, whatever is granted: they hold a pod's credentials and
/// configuration (Secrets, projected service-account tokens, ConfigMaps, the downward API), not data.
pub const NEVER_SERVED_PLUGINS: [&str; 4] = [
    "kubernetes.io~secret",
    "kubernetes.io~projected",
    "kubernetes.io~configmap",
    "kubernetes.io~downward-api",
];

/// Whether `path` lies in a volume of a [`NEVER_SERVED_PLUGINS`] plugin (any component names one).
pub fn is_never_served(path: &Path) -> bool {
    path.components().any(|c| {
        NEVER_SERVED_PLUGINS
            .iter()
            .any(|p| c.as_os_str() == std::ffi::OsStr::new(p))
    })
}

fn check_component(what: &'static str, value: &str) -> Result<(), KubeletError> {
    if value.is_empty() || value == "." || value == ".." || value.contains('/') || value.contains('\0') {
        return Err(KubeletError::InvalidName {
            what,
            value: value.into(),
        });
    }
    Ok(())
}

/// A mounted volume found on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The pod's UID.
    pub pod_uid: String,
    /// The volume plugin directory (`kubernetes.io~csi`, `kubernetes.io~local-volume`, …).
    pub plugin: String,
    /// Where the volume's data is.
    pub path: PathBuf,
}

fn data_path(plugin: &str, dir: PathBuf) -> PathBuf {
    if plugin == "kubernetes.io~csi" {
        dir.join("mount")
    } else {
        dir
    }
}

/// The host path of volume `volume` (the PV name for a PVC, else the pod's volume name) of the pod with
/// UID `pod_uid`.
///
/// # Errors
/// [`KubeletError`]: invalid names, not mounted, ambiguous, unreadable directories.
pub fn pod_volume_path(kubelet_root: &Path, pod_uid: &str, volume: &str) -> Result<PathBuf, KubeletError> {
    check_component("pod UID", pod_uid)?;
    check_component("volume name", volume)?;
    let volumes = kubelet_root.join("pods").join(pod_uid).join("volumes");
    let not_found = || KubeletError::NotFound {
        pod_uid: pod_uid.into(),
        volume: volume.into(),
        root: kubelet_root.into(),
    };
    let plugins = match std::fs::read_dir(&volumes) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(source) => {
            return Err(KubeletError::Io {
                path: volumes,
                source,
            });
        }
    };
    let mut found = Vec::new();
    for plugin in plugins.filter_map(|e| e.ok()) {
        let name = plugin.file_name().to_string_lossy().into_owned();
        if NEVER_SERVED_PLUGINS.contains(&name.as_str()) {
            continue;
        }
        let candidate = data_path(&name, plugin.path().join(volume));
        if std::fs::symlink_metadata(&candidate).is_ok_and(|m| m.is_dir()) {
            found.push(candidate);
        }
    }
    match found.len() {
        0 => Err(not_found()),
        1 => Ok(found.remove(0)),
        _ => Err(KubeletError::Ambiguous {
            pod_uid: pod_uid.into(),
            volume: volume.into(),
            paths: found,
        }),
    }
}

/// Every pod on this node that has volume `volume` (a PV name) mounted.
///
/// # Errors
/// [`KubeletError`]: invalid name, unreadable kubelet root.
pub fn find_volume_mounts(kubelet_root: &Path, volume: &str) -> Result<Vec<VolumeMount>, KubeletError> {
    check_component("volume name", volume)?;
    let pods_dir = kubelet_root.join("pods");
    let pods = match std::fs::read_dir(&pods_dir) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(KubeletError::Io {
                path: pods_dir,
                source,
            });
        }
    };
    let mut out = Vec::new();
    for pod in pods.filter_map(|e| e.ok()) {
        let pod_uid = pod.file_name().to_string_lossy().into_owned();
        let Ok(plugins) = std::fs::read_dir(pod.path().join("volumes")) else {
            continue;
        };
        for plugin in plugins.filter_map(|e| e.ok()) {
            let name = plugin.file_name().to_string_lossy().into_owned();
            if NEVER_SERVED_PLUGINS.contains(&name.as_str()) {
                continue;
            }
            let path = data_path(&name, plugin.path().join(volume));
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                out.push(VolumeMount {
                    pod_uid: pod_uid.clone(),
                    plugin: name,
                    path,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_csi_and_in_tree_volumes() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let mk = |p: &str| std::fs::create_dir_all(r.join(p)).unwrap();
        mk("pods/uid-1/volumes/kubernetes.io~csi/pvc-aaa/mount");
        mk("pods/uid-1/volumes/kubernetes.io~empty-dir/cache");
        mk("pods/uid-2/volumes/kubernetes.io~local-volume/pv-local");
        mk("pods/uid-3/volumes/kubernetes.io~csi/pvc-aaa/mount");
        mk("pods/uid-4/volumes/kubernetes.io~csi/pvc-nomount");
        mk("pods/uid-5/volumes/kubernetes.io~nfs/dup");
        mk("pods/uid-5/volumes/kubernetes.io~local-volume/dup");

        assert_eq!(
            pod_volume_path(r, "uid-1", "pvc-aaa").unwrap(),
            r.join("pods/uid-1/volumes/kubernetes.io~csi/pvc-aaa/mount")
        );
        assert_eq!(
            pod_volume_path(r, "uid-1", "cache").unwrap(),
            r.join("pods/uid-1/volumes/kubernetes.io~empty-dir/cache")
        );
        assert_eq!(
            pod_volume_path(r, "uid-2", "pv-local").unwrap(),
            r.join("pods/uid-2/volumes/kubernetes.io~local-volume/pv-local")
        );
        assert!(matches!(
            pod_volume_path(r, "uid-4", "pvc-nomount"),
            Err(KubeletError::NotFound { .. })
        ));
        assert!(matches!(
            pod_volume_path(r, "uid-9", "x"),
            Err(KubeletError::NotFound { .. })
        ));
        assert!(matches!(
            pod_volume_path(r, "uid-5", "dup"),
            Err(KubeletError::Ambiguous { .. })
        ));
        for (uid, vol) in [("..", "x"), ("uid-1", "../x"), ("", "x"), ("uid-1", "a/b")] {
            assert!(matches!(
                pod_volume_path(r, uid, vol),
                Err(KubeletError::InvalidName { .. })
            ));
        }

        let mounts = find_volume_mounts(r, "pvc-aaa").unwrap();
        assert_eq!(
            mounts.iter().map(|m| m.pod_uid.as_str()).collect::<Vec<_>>(),
            ["uid-1", "uid-3"]
        );
        assert!(
            mounts
                .iter()
                .all(|m| m.plugin == "kubernetes.io~csi" && m.path.ends_with("mount"))
        );
        assert!(find_volume_mounts(r, "nothing").unwrap().is_empty());
        assert!(find_volume_mounts(&r.join("missing"), "x").unwrap().is_empty());
    }

    #[test]
    fn credential_volumes_are_never_found() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for p in [
            "pods/u1/volumes/kubernetes.io~secret/creds",
            "pods/u1/volumes/kubernetes.io~projected/kube-api-access",
            "pods/u1/volumes/kubernetes.io~configmap/settings",
            "pods/u1/volumes/kubernetes.io~downward-api/podinfo",
        ] {
            std::fs::create_dir_all(r.join(p)).unwrap();
        }
        for volume in ["creds", "kube-api-access", "settings", "podinfo"] {
            assert!(
                matches!(
                    pod_volume_path(r, "u1", volume),
                    Err(KubeletError::NotFound { .. })
                ),
                "{volume}"
            );
            assert!(find_volume_mounts(r, volume).unwrap().is_empty(), "{volume}");
        }
        assert!(is_never_served(Path::new(
            "/v/pods/u/volumes/kubernetes.io~secret/x"
        )));
        assert!(!is_never_served(Path::new(
            "/v/pods/u/volumes/kubernetes.io~csi/x/mount"
        )));
    }
}

/// The hostPath directories this agent may serve: node prefixes and where each is mounted in the
/// agent's container (`--host-path-prefix` / `--host-path-mount`), and this node's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPaths {
    /// This node's name (`None`: unknown, and no hostPath grant is served).
    pub node: Option<String>,
    /// Node prefix → its mount in the container.
    pub roots: Vec<(String, PathBuf)>,
}

/// Why a hostPath grant is not served here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPathRefusal {
    /// The grant is for another node.
    Elsewhere,
    /// The path is not below an allowed prefix, or leaves it (symlinks), or is missing.
    Refused(String),
}

impl HostPaths {
    /// Build from the arguments, checking each prefix (never `/`, a system directory or the kubelet
    /// root, see `dr_syncer_core::pvc::host_path`).
    ///
    /// # Errors
    /// A message naming the bad argument.
    /// `kubelet_root` (the agent's `--volume-root`) may not be a prefix either, and no mount may be `/`
    /// or overlap the kubelet root or one of `private` (the agent's allow-list and state directories).
    pub fn new(
        node: Option<String>,
        prefixes: &[String],
        mounts: &[PathBuf],
        kubelet_root: &Path,
        private: &[&Path],
    ) -> Result<Self, String> {
        if prefixes.len() != mounts.len() {
            return Err(format!(
                "{} --host-path-prefix but {} --host-path-mount: they go in pairs",
                prefixes.len(),
                mounts.len()
            ));
        }
        let root = kubelet_root.to_string_lossy();
        for p in prefixes {
            dr_syncer_core::pvc::host_path::check_prefix(
                p,
                dr_syncer_core::pvc::host_path::DEFAULT_KUBELET_ROOT,
            )?;
            dr_syncer_core::pvc::host_path::check_prefix(p, &root)?;
        }
        for m in mounts {
            let overlaps = |other: &Path| m.starts_with(other) || other.starts_with(m);
            if m.parent().is_none() || overlaps(kubelet_root) || private.iter().any(|p| overlaps(p)) {
                return Err(format!(
                    "--host-path-mount {}: not `/`, and not overlapping the kubelet root or the agent's own \
                     directories",
                    m.display()
                ));
            }
        }
        Ok(HostPaths {
            node: node.filter(|n| !n.is_empty()),
            roots: prefixes.iter().cloned().zip(mounts.iter().cloned()).collect(),
        })
    }

    /// The container path of node directory `path` (a hostPath grant for `node`): below an allowed
    /// prefix, an existing directory, and still below the prefix's mount once symlinks are resolved.
    ///
    /// # Errors
    /// [`HostPathRefusal`].
    pub fn resolve(&self, node: &str, path: &str) -> Result<PathBuf, HostPathRefusal> {
        if self.node.as_deref() != Some(node) {
            return Err(HostPathRefusal::Elsewhere);
        }
        let prefixes: Vec<String> = self.roots.iter().map(|(p, _)| p.clone()).collect();
        let Some(prefix) = dr_syncer_core::pvc::host_path::allowed_prefix(path, &prefixes) else {
            return Err(HostPathRefusal::Refused(format!(
                "{path:?} is not below an allowed hostPath prefix ({})",
                prefixes.join(", ")
            )));
        };
        let mount = &self
            .roots
            .iter()
            .find(|(p, _)| p == prefix)
            .map(|(_, m)| m.clone())
            .unwrap_or_default();
        let rel = path[prefix.len()..].trim_start_matches('/');
        let candidate = mount.join(rel);
        let canonical = std::fs::canonicalize(&candidate)
            .map_err(|e| HostPathRefusal::Refused(format!("{path:?} on this node: {e}")))?;
        let base = std::fs::canonicalize(mount).map_err(|e| {
            HostPathRefusal::Refused(format!("hostPath prefix {prefix:?} ({}): {e}", mount.display()))
        })?;
        if canonical == base || !canonical.starts_with(&base) {
            return Err(HostPathRefusal::Refused(format!(
                "{path:?} leads out of {prefix:?} (a symbolic link): refused"
            )));
        }
        if !canonical.is_dir() {
            return Err(HostPathRefusal::Refused(format!("{path:?} is not a directory")));
        }
        Ok(canonical)
    }
}
