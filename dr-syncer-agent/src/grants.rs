//! Grants: which volumes the operator wants served, turned into the allow-list of this node.
//!
//! The orchestrator (operator or CLI) never learns host paths: it writes a **grant** — a key of the
//! agents' ConfigMap `dr-syncer-agent-grants`, mounted into every agent pod as `--grants-dir` — whose
//! name identifies the transfer and whose value is `<pod UID>/<volume>`: the pod that has the volume
//! mounted (the application's pod or a read-only mount pod) and the volume's name under the kubelet root
//! (the PV name for a PVC). Every agent resolves the grants it can on its own node
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

use crate::{
    allow::{AllowError, AllowList},
    kubelet::pod_volume_path,
};

/// One grant as written by the orchestrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The grant's name (the ConfigMap key; also the allow-list entry's name).
    pub name: String,
    /// The UID of the pod that has the volume mounted.
    pub pod_uid: String,
    /// The volume's name under the kubelet root (the PV name for a PVC).
    pub volume: String,
}

/// Parse a grant's value, `<pod UID>/<volume>` (surrounding whitespace ignored).
///
/// # Errors
/// A message when the value is not of that form.
pub fn parse_grant(name: &str, value: &str) -> Result<Grant, String> {
    let value = value.trim();
    let (uid, volume) = value
        .split_once('/')
        .ok_or_else(|| format!("grant {name}: {value:?} is not <pod UID>/<volume>"))?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            && s != "."
            && s != ".."
    };
    if !ok(uid) || !ok(volume) {
        return Err(format!("grant {name}: {value:?} is not <pod UID>/<volume>"));
    }
    Ok(Grant {
        name: name.into(),
        pod_uid: uid.into(),
        volume: volume.into(),
    })
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
pub fn sync(grants_dir: &Path, allow: &AllowList, kubelet_root: &Path) -> Result<GrantSync, AllowError> {
    sync_with(grants_dir, allow, kubelet_root, is_mount_point)
}

/// [`sync`] with the mount check given (tests).
///
/// # Errors
/// As [`sync`].
pub fn sync_with(
    grants_dir: &Path,
    allow: &AllowList,
    kubelet_root: &Path,
    is_mounted: impl Fn(&Path) -> bool,
) -> Result<GrantSync, AllowError> {
    let io = |context: String| move |source| AllowError::Io { context, source };
    let (grants, problems) =
        read_grants(grants_dir).map_err(io(format!("reading grants in {}", grants_dir.display())))?;
    let mut out = GrantSync {
        problems,
        ..GrantSync::default()
    };
    let current: BTreeMap<String, PathBuf> = allow.entries()?.into_iter().map(|e| (e.name, e.path)).collect();
    let mut wanted = BTreeMap::new();
    for g in &grants {
        match pod_volume_path(kubelet_root, &g.pod_uid, &g.volume) {
            Ok(path) if is_mounted(&path) => {
                wanted.insert(g.name.clone(), path);
            }
            Ok(_) => out.unmounted.push(g.name.clone()),
            Err(crate::kubelet::KubeletError::NotFound { .. }) => out.elsewhere.push(g.name.clone()),
            Err(e) => out.problems.push(format!("grant {}: {e}", g.name)),
        }
    }
    for (name, path) in &wanted {
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        if current.get(name) == Some(&canonical) {
            continue;
        }
        match allow.grant(name, path) {
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
    use super::*;

    #[test]
    fn grant_values_parse_strictly() {
        let g = parse_grant("app.data", " 1234-abcd/pvc-9f \n").unwrap();
        assert_eq!((g.pod_uid.as_str(), g.volume.as_str()), ("1234-abcd", "pvc-9f"));
        for bad in [
            "",
            "uid",
            "/vol",
            "uid/",
            "uid/../x",
            "uid/a/b",
            "../x",
            "uid/..",
            "u id/v",
            "uid/v\n/x",
        ] {
            assert!(parse_grant("n", bad).is_err(), "{bad:?} must be refused");
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
        std::fs::write(data.join("ns.a"), "uid-1/pv-a").unwrap();
        std::fs::write(data.join("ns.b"), "uid-2/pv-b").unwrap();
        std::fs::write(data.join("ns.bad"), "not a grant").unwrap();
        std::os::unix::fs::symlink("..2026_11_23_00_00_00.1", grants.join("..data")).unwrap();
        for k in ["ns.a", "ns.b", "ns.bad"] {
            std::os::unix::fs::symlink(format!("..data/{k}"), grants.join(k)).unwrap();
        }
        let allow = AllowList::new(base.join("allow"));
        // Not mounted (an empty mount point directory): never served.
        let unmounted = sync_with(&grants, &allow, &kubelet, |_| false).unwrap();
        assert_eq!(unmounted.unmounted, vec!["ns.a".to_string()]);
        assert!(unmounted.allowed.is_empty() && allow.entries().unwrap().is_empty());
        allow.grant("stale", &vol).unwrap();
        let done = sync_with(&grants, &allow, &kubelet, |_| true).unwrap();
        let canonical = std::fs::canonicalize(&vol).unwrap();
        assert_eq!(done.allowed.get("ns.a"), Some(&canonical));
        assert_eq!(done.elsewhere, vec!["ns.b".to_string()]);
        assert_eq!(done.revoked, vec!["stale".to_string()]);
        assert_eq!(done.problems.len(), 1, "{:?}", done.problems);
        let names: Vec<_> = allow.entries().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["ns.a".to_string()]);

        // A second pass changes nothing; removing the grant revokes it.
        let again = sync_with(&grants, &allow, &kubelet, |_| true).unwrap();
        assert!(again.allowed.is_empty() && again.revoked.is_empty());
        std::fs::remove_file(grants.join("ns.a")).unwrap();
        let gone = sync_with(&grants, &allow, &kubelet, |_| true).unwrap();
        assert_eq!(gone.revoked, vec!["ns.a".to_string()]);
        assert!(allow.entries().unwrap().is_empty());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
