//! Grants: which volumes the operator wants served, turned into the allow-list of this node.
//!
//! The orchestrator (operator or CLI) never learns host paths: it writes a **grant** — a key of the
//! agents' ConfigMap `dr-syncer-agent-grants`, mounted into every agent pod as `--grants-dir` — whose
//! name identifies the transfer and whose value is a [`TransferGrant`]: `<pod UID>/<volume>` — the pod
//! that has the volume mounted (the application's pod or a read-only mount pod) and the volume's name
//! under the kubelet root (the PV name for a PVC) — and the transfer's own key with its expiry and client
//! addresses. The allow-list entry keeps that binding: the volume is served to that key only. Every agent resolves the grants it can on its own node
//! ([`crate::kubelet::pod_volume_path`]) and keeps its allow-list equal to the resolved set: a grant
//! whose pod is on another node resolves nowhere else, a removed grant is revoked, and a transfer already
//! running is not cut (the forced command checks at login). The mover then asks the reader for the
//! grant's path (`dr-syncer-resolve NAME`, [`crate::forced::RESOLVE_COMMAND`]).
//!
//! With `--grants-dir` the agent owns its allow-list directory: entries that no grant names are removed.
//! ConfigMap volumes are written by the kubelet through a `..data` symlink; files whose names start
//! with `.` are ignored.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use dr_syncer_core::pvc::{KeyBinding, TransferGrant};

use crate::{
    allow::{AllowError, AllowList},
    kubelet::{HostPathRefusal, HostPaths, pod_volume_path},
};

/// One grant as written by the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The grant's name (the ConfigMap key; also the allow-list entry's name).
    pub name: String,
    /// The volume and the transfer key that may read it.
    pub grant: TransferGrant,
}

/// Parse a grant's value (see [`TransferGrant`]).
///
/// # Errors
/// A message when the value is not a grant (a value without a key is refused).
pub fn parse_grant(name: &str, value: &str) -> Result<Grant, String> {
    TransferGrant::parse(value)
        .map(|grant| Grant {
            name: name.into(),
            grant,
        })
        .map_err(|e| format!("grant {name}: {e}"))
}

/// Read the grants directory (a mounted ConfigMap): the grants, and messages about unusable entries.
///
/// # Errors
/// Reading the directory failed.
pub fn read_grants(dir: &Path) -> std::io::Result<(Vec<Grant>, Vec<String>)> {
    let mut grants = Vec::new();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((grants, problems)),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        // Follows the kubelet's `key -> ..data/key` symlink; the content is only a name, never a path.
        match std::fs::read_to_string(entry.path()) {
            Ok(value) => match parse_grant(&name, &value) {
                Ok(g) => grants.push(g),
                Err(m) => problems.push(m),
            },
            Err(e) => problems.push(format!("grant {name}: {e}")),
        }
    }
    grants.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((grants, problems))
}

/// What one pass of [`sync`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GrantSync {
    /// Entries added or changed: name → path.
    pub allowed: BTreeMap<String, PathBuf>,
    /// Entries removed.
    pub revoked: Vec<String>,
    /// Grants that do not resolve on this node (their pod runs elsewhere, or is not mounted yet).
    pub elsewhere: Vec<String>,
    /// Grants whose directory exists here but is not (yet, or not visibly) a mount point.
    pub unmounted: Vec<String>,
    /// Unusable grants and failures, one message each.
    pub problems: Vec<String>,
}

/// Whether `path` is a mount point in this process's mount namespace (from `/proc/self/mountinfo`).
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(canonical) = std::fs::canonicalize(path) else {
        return false;
    };
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(&unescape_mountinfo(m)) == canonical)
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Make the allow-list equal to the grants that resolve on this node to a **mounted** volume.
///
/// A volume's directory under the kubelet root is a mount point while the volume is mounted; before
/// (or when the mount is not visible to the agent, e.g. without `mountPropagation: HostToContainer`) it
/// is an empty directory, and serving it would make the mover mirror an empty volume — deleting the
/// copy. Such grants are left out (reported in [`GrantSync::unmounted`]) until the mount shows.
///
/// # Errors
/// Reading the grants or the allow-list failed (single entries that cannot be written are reported in
/// [`GrantSync::problems`]).
pub fn sync(
    grants_dir: &Path,
    allow: &AllowList,
    kubelet_root: &Path,
    host_paths: &HostPaths,
) -> Result<GrantSync, AllowError> {
    sync_with(grants_dir, allow, kubelet_root, host_paths, is_mount_point)
}

/// [`sync`] with the mount check given (tests).
///
/// # Errors
/// As [`sync`].
pub fn sync_with(
    grants_dir: &Path,
    allow: &AllowList,
    kubelet_root: &Path,
    host_paths: &HostPaths,
    is_mounted: impl Fn(&Path) -> bool,
) -> Result<GrantSync, AllowError> {
    let io = |context: String| move |source| AllowError::Io { context, source };
    let (grants, problems) =
        read_grants(grants_dir).map_err(io(format!("reading grants in {}", grants_dir.display())))?;
    let mut out = GrantSync {
        problems,
        ..GrantSync::default()
    };
    let current: BTreeMap<String, (PathBuf, Option<KeyBinding>)> = allow
        .entries()?
        .into_iter()
        .map(|e| (e.name, (e.path, e.binding)))
        .collect();
    let mut wanted = BTreeMap::new();
    for g in &grants {
        // A hostPath PV: its directory on the named node, below an allowed prefix (not a mount point:
        // the wiped-source check of the mover guards against an empty directory).
        if let Some(h) = &g.grant.host_path {
            match host_paths.resolve(&h.node, &h.path) {
                Ok(path) => {
                    wanted.insert(g.name.clone(), (path, &g.grant.binding));
                }
                Err(HostPathRefusal::Elsewhere) => out.elsewhere.push(g.name.clone()),
                Err(HostPathRefusal::Refused(why)) => out.problems.push(format!("grant {}: {why}", g.name)),
            }
            continue;
        }
        match pod_volume_path(kubelet_root, &g.grant.pod_uid, &g.grant.volume) {
            Ok(path) if is_mounted(&path) => {
                wanted.insert(g.name.clone(), (path, &g.grant.binding));
            }
            Ok(_) => out.unmounted.push(g.name.clone()),
            Err(crate::kubelet::KubeletError::NotFound { .. }) => out.elsewhere.push(g.name.clone()),
            Err(e) => out.problems.push(format!("grant {}: {e}", g.name)),
        }
    }
    for (name, (path, binding)) in &wanted {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        if current
            .get(name)
            .is_some_and(|(p, b)| *p == canonical && b.as_ref() == Some(*binding))
        {
            continue;
        }
        match allow.grant_bound(name, path, Some(binding)) {
            Ok(entry) => {
                out.allowed.insert(name.clone(), entry.path);
            }
            Err(e) => out.problems.push(format!("grant {name}: {e}")),
        }
    }
    for name in current.keys().filter(|n| !wanted.contains_key(*n)) {
        match allow.revoke(name) {
            Ok(_) => out.revoked.push(name.clone()),
            Err(e) => out.problems.push(format!("revoking {name}: {e}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use dr_syncer_core::keys::KeyPair;

    use super::*;

    fn value(uid: &str, volume: &str) -> (String, KeyBinding) {
        let binding = KeyBinding {
            key: KeyPair::generate_ed25519("t").unwrap().public_key(),
            // Whole seconds, as the grant's text keeps them.
            not_after: SystemTime::UNIX_EPOCH
                + Duration::from_secs(
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                        + 600,
                ),
            from: vec!["10.0.0.21".into()],
        };
        let grant = TransferGrant {
            pod_uid: uid.into(),
            volume: volume.into(),
            host_path: None,
            binding: binding.clone(),
        };
        (grant.render(), binding)
    }

    #[test]
    fn grant_values_parse_strictly() {
        let (text, binding) = value("1234-abcd", "pvc-9f");
        let g = parse_grant("app.data", &text).unwrap();
        assert_eq!(
            (g.grant.pod_uid.as_str(), g.grant.volume.as_str()),
            ("1234-abcd", "pvc-9f")
        );
        assert_eq!(g.grant.binding, binding);
        let old = parse_grant("n", "1234-abcd/pvc-9f").unwrap_err();
        assert!(old.contains("names no key"), "{old}");
        for bad in [
            "",
            "uid",
            "volume /vol",
            "volume uid/",
            "volume uid/../x",
            "volume uid/a/b",
            "volume ../x",
            "volume uid/..",
            "volume u id/v",
        ] {
            let with_key = format!("{bad}\n{}", binding.to_lines());
            assert!(parse_grant("n", &with_key).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn the_allow_list_follows_the_grants_that_resolve_here() {
        let base = std::env::temp_dir().join(format!("drs-grants-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let kubelet = base.join("kubelet");
        let vol = kubelet.join("pods/uid-1/volumes/kubernetes.io~csi/pv-a/mount");
        std::fs::create_dir_all(&vol).unwrap();
        let grants = base.join("grants");
        // As the kubelet writes a ConfigMap volume: ..data symlink and per-key symlinks.
        let data = grants.join("..2026_11_23_00_00_00.1");
        std::fs::create_dir_all(&data).unwrap();
        let (a, a_binding) = value("uid-1", "pv-a");
        std::fs::write(data.join("ns.a"), &a).unwrap();
        std::fs::write(data.join("ns.b"), value("uid-2", "pv-b").0).unwrap();
        std::fs::write(data.join("ns.bad"), "uid-1/pv-a").unwrap();
        std::os::unix::fs::symlink("..2026_11_23_00_00_00.1", grants.join("..data")).unwrap();
        for k in ["ns.a", "ns.b", "ns.bad"] {
            std::os::unix::fs::symlink(format!("..data/{k}"), grants.join(k)).unwrap();
        }
        let allow = AllowList::new(base.join("allow"));
        // Not mounted (an empty mount point directory): never served.
        let unmounted = sync_with(&grants, &allow, &kubelet, &HostPaths::default(), |_| false).unwrap();
        assert_eq!(unmounted.unmounted, vec!["ns.a".to_string()]);
        assert!(unmounted.allowed.is_empty() && allow.entries().unwrap().is_empty());
        allow.grant("stale", &vol).unwrap();
        let done = sync_with(&grants, &allow, &kubelet, &HostPaths::default(), |_| true).unwrap();
        let canonical = std::fs::canonicalize(&vol).unwrap();
        assert_eq!(done.allowed.get("ns.a"), Some(&canonical));
        assert_eq!(done.elsewhere, vec!["ns.b".to_string()]);
        assert_eq!(done.revoked, vec!["stale".to_string()]);
        assert_eq!(done.problems.len(), 1, "{:?}", done.problems);
        assert!(done.problems[0].contains("names no key"), "{:?}", done.problems);
        let entries = allow.entries().unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].name, "ns.a");
        assert_eq!(
            entries[0].binding.as_ref(),
            Some(&a_binding),
            "served to the grant's key only"
        );

        // A second pass changes nothing; a new key for the same grant replaces the binding; removing
        // the grant revokes it.
        let again = sync_with(&grants, &allow, &kubelet, &HostPaths::default(), |_| true).unwrap();
        assert!(again.allowed.is_empty() && again.revoked.is_empty());
        let (a2, a2_binding) = value("uid-1", "pv-a");
        std::fs::write(data.join("ns.a"), &a2).unwrap();
        let rekeyed = sync_with(&grants, &allow, &kubelet, &HostPaths::default(), |_| true).unwrap();
        assert_eq!(rekeyed.allowed.get("ns.a"), Some(&canonical));
        assert_eq!(allow.entries().unwrap()[0].binding.as_ref(), Some(&a2_binding));
        std::fs::remove_file(grants.join("ns.a")).unwrap();
        let gone = sync_with(&grants, &allow, &kubelet, &HostPaths::default(), |_| true).unwrap();
        assert_eq!(gone.revoked, vec!["ns.a".to_string()]);
        assert!(allow.entries().unwrap().is_empty());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn host_path_grants_resolve_below_an_allowed_prefix_on_their_node_only() {
        let base = std::env::temp_dir().join(format!("drs-hostpath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let mount = base.join("host-paths/0");
        std::fs::create_dir_all(mount.join("pvc-1_shop_data")).unwrap();
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::os::unix::fs::symlink(base.join("outside"), mount.join("escape")).unwrap();
        let kubelet = base.join("kubelet");
        let host_paths = HostPaths::new(
            Some("prod-a".into()),
            &["/var/local-path-provisioner".into()],
            std::slice::from_ref(&mount),
            &kubelet,
            &[&base.join("allow")],
        )
        .unwrap();
        let grants = base.join("grants");
        std::fs::create_dir_all(&grants).unwrap();
        let write = |name: &str, node: &str, path: &str| {
            let (text, _) = value("unused", "pv");
            let binding = text.split_once('\n').unwrap().1;
            std::fs::write(
                grants.join(name),
                format!("host-path {node} pv-{name} {path}\n{binding}"),
            )
            .unwrap();
        };
        write("ok", "prod-a", "/var/local-path-provisioner/pvc-1_shop_data");
        write(
            "other-node",
            "prod-b",
            "/var/local-path-provisioner/pvc-1_shop_data",
        );
        write("outside", "prod-a", "/etc/kubernetes");
        write("the-prefix", "prod-a", "/var/local-path-provisioner");
        write("escape", "prod-a", "/var/local-path-provisioner/escape");
        write("missing", "prod-a", "/var/local-path-provisioner/gone");
        let allow = AllowList::new(base.join("allow"));
        // (Not mount points: hostPath directories are served without one.)
        let done = sync_with(&grants, &allow, &base.join("kubelet"), &host_paths, |_| false).unwrap();
        assert_eq!(done.allowed.keys().collect::<Vec<_>>(), ["ok"], "{done:?}");
        assert_eq!(
            done.allowed["ok"],
            std::fs::canonicalize(mount.join("pvc-1_shop_data")).unwrap()
        );
        assert_eq!(done.elsewhere, vec!["other-node".to_string()]);
        let problems = done.problems.join("\n");
        for name in ["outside", "the-prefix", "escape", "missing"] {
            assert!(problems.contains(&format!("grant {name}:")), "{name}: {problems}");
        }
        assert!(
            problems.contains("not below an allowed hostPath prefix"),
            "{problems}"
        );
        assert!(problems.contains("leads out of"), "{problems}");
        // An agent that does not know its node serves no hostPath grant; bad prefixes are refused.
        let nameless = HostPaths::new(
            None,
            &["/var/local-path-provisioner".into()],
            std::slice::from_ref(&mount),
            &kubelet,
            &[],
        )
        .unwrap();
        let none = sync_with(
            &grants,
            &AllowList::new(base.join("allow2")),
            &base.join("kubelet"),
            &nameless,
            |_| false,
        )
        .unwrap();
        assert!(none.allowed.is_empty());
        for bad in ["/", "/etc", "/var/lib/kubelet", "/var", "/var/lib/k0s"] {
            assert!(
                HostPaths::new(None, &[bad.into()], std::slice::from_ref(&mount), &kubelet, &[]).is_err(),
                "{bad}"
            );
        }
        // A prefix holding the agent's own kubelet root (a MicroK8s-like one here) is refused too.
        let micro = Path::new("/srv/microk8s/var/lib/kubelet");
        assert!(
            HostPaths::new(
                None,
                &["/srv/microk8s".into()],
                std::slice::from_ref(&mount),
                micro,
                &[]
            )
            .is_err()
        );
        assert!(
            HostPaths::new(None, &["/srv".into()], &[], &kubelet, &[]).is_err(),
            "pairs"
        );
        // Mounts: never `/`, never over the kubelet root or the agent's own directories.
        let allow_dir = base.join("allow");
        for bad_mount in [
            PathBuf::from("/"),
            base.clone(),
            kubelet.join("x"),
            allow_dir.clone(),
        ] {
            assert!(
                HostPaths::new(
                    None,
                    &["/srv".into()],
                    std::slice::from_ref(&bad_mount),
                    &kubelet,
                    &[&allow_dir]
                )
                .is_err(),
                "{bad_mount:?}"
            );
        }
        std::fs::remove_dir_all(&base).unwrap();
    }
}
