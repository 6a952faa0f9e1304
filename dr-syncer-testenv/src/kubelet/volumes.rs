//! Volume plumbing on the host: the kubelet's atomic writer for Secret/ConfigMap volumes, bind mounts.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{Error, Result, kubelet::network::run};

/// One file of a projected volume: relative path, content, mode.
pub(crate) type Payload = BTreeMap<String, (Vec<u8>, u32)>;

/// Write `payload` into `dir` the way the kubelet's atomic writer does: the files go into a new hidden
/// timestamped directory, the `..data` symlink is swapped to it with a rename, and every top-level entry is
/// a symlink `name -> ..data/name`. Nothing happens when the payload equals what `..data` holds.
pub(crate) fn write_atomic(dir: &Path, payload: &Payload) -> Result<bool> {
    let io = |what: &str, p: &Path, e| Error::io(format!("{what} {}", p.display()), e);
    fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    let data_link = dir.join("..data");
    if let Ok(current) = fs::read_link(&data_link)
        && same_content(&dir.join(current), payload)
    {
        return Ok(false);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let ts_name = format!("..{nanos}");
    let ts_dir = dir.join(&ts_name);
    fs::create_dir_all(&ts_dir).map_err(|e| io("creating", &ts_dir, e))?;
    for (rel, (content, mode)) in payload {
        let path = ts_dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
        }
        fs::write(&path, content).map_err(|e| io("writing", &path, e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).map_err(|e| io("chmod", &path, e))?;
    }
    fs::set_permissions(&ts_dir, fs::Permissions::from_mode(0o755)).map_err(|e| io("chmod", &ts_dir, e))?;
    let old = fs::read_link(&data_link).ok();
    let tmp_link = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp_link);
    symlink(&ts_name, &tmp_link).map_err(|e| io("symlinking", &tmp_link, e))?;
    fs::rename(&tmp_link, &data_link).map_err(|e| io("renaming", &tmp_link, e))?;
    // Top-level user-visible names.
    let mut tops: Vec<String> = payload
        .keys()
        .filter_map(|k| k.split('/').next().map(str::to_owned))
        .collect();
    tops.dedup();
    for top in &tops {
        let link = dir.join(top);
        if fs::symlink_metadata(&link).is_err() {
            symlink(format!("..data/{top}"), &link).map_err(|e| io("symlinking", &link, e))?;
        }
    }
    // Remove names that are gone, and the old data directory.
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !tops.contains(&name) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    if let Some(old) = old
        && old != Path::new(&ts_name)
    {
        let _ = fs::remove_dir_all(dir.join(old));
    }
    Ok(true)
}

fn same_content(data_dir: &Path, payload: &Payload) -> bool {
    let mut count = 0;
    for (rel, (content, mode)) in payload {
        let path = data_dir.join(rel);
        match (fs::read(&path), fs::metadata(&path)) {
            (Ok(c), Ok(m)) if &c == content && m.permissions().mode() & 0o7777 == *mode => {}
            _ => return false,
        }
        count += 1;
    }
    count_files(data_dir) == count
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

/// `mount --bind src dst` (creating `dst`), then remount read-only if asked.
pub(crate) fn bind_mount(src: &Path, dst: &Path, read_only: bool) -> Result<()> {
    fs::create_dir_all(dst).map_err(|e| Error::io(format!("creating {}", dst.display()), e))?;
    let (s, d) = (src.to_string_lossy(), dst.to_string_lossy());
    run("mount", &["--bind", &s, &d])?;
    if read_only && let Err(e) = run("mount", &["-o", "remount,bind,ro", &d]) {
        let _ = unmount(dst);
        return Err(e);
    }
    Ok(())
}

/// Make `path` a mount point of its own with shared propagation, as a node's `/var/lib/kubelet` is:
/// volumes mounted below it later also appear in processes that entered their own mount namespace
/// before (`ip netns exec` makes every mount a slave of the host's; `mountPropagation: HostToContainer`).
pub(crate) fn make_shared_mount(path: &Path) -> Result<()> {
    bind_mount(path, path, false)?;
    run("mount", &["--make-rshared", &path.to_string_lossy()])
}

/// Unmount `path` (lazily if it is busy).
pub(crate) fn unmount(path: &Path) -> Result<()> {
    let p = path.to_string_lossy();
    match run("umount", &[&p]) {
        Ok(()) => Ok(()),
        Err(_) => run("umount", &["-l", &p]),
    }
}

/// Mount points under `base`, deepest first (from /proc/self/mountinfo).
pub(crate) fn mounts_under(base: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(base))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writer_swaps_data_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vol = dir.path().join("vol");
        let mut payload = Payload::new();
        payload.insert("key".into(), (b"v1".to_vec(), 0o644));
        payload.insert("sub/file".into(), (b"s".to_vec(), 0o600));
        assert!(write_atomic(&vol, &payload).expect("write"));
        assert!(!write_atomic(&vol, &payload).expect("rewrite"));
        assert_eq!(fs::read_to_string(vol.join("key")).expect("read"), "v1");
        assert_eq!(
            fs::read_link(vol.join("key")).expect("link"),
            PathBuf::from("..data/key")
        );
        assert_eq!(fs::read_to_string(vol.join("sub/file")).expect("read"), "s");
        let first = fs::read_link(vol.join("..data")).expect("data link");
        payload.insert("key".into(), (b"v2".to_vec(), 0o644));
        payload.remove("sub/file");
        assert!(write_atomic(&vol, &payload).expect("update"));
        assert_eq!(fs::read_to_string(vol.join("key")).expect("read"), "v2");
        assert!(fs::symlink_metadata(vol.join("sub")).is_err());
        assert!(!vol.join(first).exists(), "old data dir removed");
    }
}
