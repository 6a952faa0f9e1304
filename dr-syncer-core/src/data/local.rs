//! [`LocalDirMover`]: mirrors two local directories, standing in for the real data path in tests.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Instant,
};

use super::{
    DataMover, DataMoverError, DataSource, ProgressFn, TransferOptions, TransferProgress, TransferRequest,
    TransferStats, io,
};

/// Mirrors one local directory into another (regular files, directories, symlinks, permissions,
/// modification times; deletions when `delete` is set). For tests and local use; no SSH, no rsync.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalDirMover;

#[async_trait::async_trait]
impl DataMover for LocalDirMover {
    async fn transfer<'a>(
        &self,
        request: &TransferRequest,
        progress: ProgressFn<'a>,
    ) -> Result<TransferStats, DataMoverError> {
        let DataSource::Local(src) = &request.source else {
            return Err(DataMoverError::InvalidRequest(
                "LocalDirMover only reads local directories".into(),
            ));
        };
        if !request.options.extra_options.is_empty() {
            return Err(DataMoverError::InvalidRequest(
                "LocalDirMover takes no extra options".into(),
            ));
        }
        let (src, dst, opts) = (src.clone(), request.destination.clone(), request.options.clone());
        let start = Instant::now();
        let mut stats = tokio::task::spawn_blocking(move || mirror(&src, &dst, &opts))
            .await
            .map_err(|e| DataMoverError::Failed {
                message: e.to_string(),
                transient: false,
            })??;
        stats.duration = start.elapsed();
        stats.attempts = 1;
        progress(TransferProgress {
            bytes: stats.bytes_sent,
            percent: Some(100),
            ..Default::default()
        });
        Ok(stats)
    }
}

/// Whether `rel` matches one of the exclude patterns (a simplified form of rsync's rules: a glob
/// against the whole relative path or its last component, or a directory prefix).
pub(super) fn excluded(rel: &Path, exclude: &[String]) -> bool {
    let rel = rel.to_string_lossy();
    exclude.iter().any(|pat| {
        let pat = pat.trim_end_matches('/');
        crate::selection::glob_match(pat, &rel)
            || rel.starts_with(&format!("{pat}/"))
            || rel
                .rsplit('/')
                .next()
                .is_some_and(|base| crate::selection::glob_match(pat, base))
    })
}

fn mirror(src: &Path, dst: &Path, opts: &TransferOptions) -> Result<TransferStats, DataMoverError> {
    use std::os::unix::fs::PermissionsExt;

    let meta = std::fs::symlink_metadata(src).map_err(io(format!("reading {}", src.display())))?;
    if !meta.is_dir() {
        return Err(DataMoverError::InvalidRequest(format!(
            "{} is not a directory",
            src.display()
        )));
    }
    std::fs::create_dir_all(dst).map_err(io(format!("creating {}", dst.display())))?;
    let mut stats = TransferStats::default();
    let mut stack = vec![PathBuf::new()];
    let mut present = BTreeSet::new();
    while let Some(rel) = stack.pop() {
        let from_dir = src.join(&rel);
        let entries = std::fs::read_dir(&from_dir).map_err(io(format!("listing {}", from_dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(io(format!("listing {}", from_dir.display())))?;
            let rel_path = rel.join(entry.file_name());
            if excluded(&rel_path, &opts.exclude) {
                continue;
            }
            present.insert(rel_path.clone());
            let (from, to) = (src.join(&rel_path), dst.join(&rel_path));
            let m = std::fs::symlink_metadata(&from).map_err(io(format!("reading {}", from.display())))?;
            let existing = std::fs::symlink_metadata(&to).ok();
            if m.file_type().is_symlink() {
                let target =
                    std::fs::read_link(&from).map_err(io(format!("reading link {}", from.display())))?;
                if std::fs::read_link(&to).ok().as_ref() != Some(&target) {
                    remove_any(&to)?;
                    std::os::unix::fs::symlink(&target, &to)
                        .map_err(io(format!("linking {}", to.display())))?;
                    stats.files_transferred += 1;
                }
                stats.files_total += 1;
            } else if m.is_dir() {
                if !existing.as_ref().is_some_and(|e| e.is_dir()) {
                    remove_any(&to)?;
                    std::fs::create_dir(&to).map_err(io(format!("creating {}", to.display())))?;
                }
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(m.permissions().mode()))
                    .map_err(io(format!("chmod {}", to.display())))?;
                stack.push(rel_path);
            } else if m.is_file() {
                stats.files_total += 1;
                let same = existing.as_ref().is_some_and(|e| {
                    e.is_file() && e.len() == m.len() && e.modified().ok() == m.modified().ok()
                });
                if !same {
                    remove_any(&to).ok();
                    std::fs::copy(&from, &to).map_err(io(format!("copying {}", from.display())))?;
                    let f = std::fs::File::options()
                        .write(true)
                        .open(&to)
                        .map_err(io(format!("opening {}", to.display())))?;
                    if let Ok(mtime) = m.modified() {
                        f.set_modified(mtime)
                            .map_err(io(format!("setting mtime of {}", to.display())))?;
                    }
                    stats.bytes_sent += m.len();
                    stats.files_transferred += 1;
                }
                std::fs::set_permissions(&to, std::fs::Permissions::from_mode(m.permissions().mode()))
                    .map_err(io(format!("chmod {}", to.display())))?;
            }
        }
    }
    if opts.delete {
        stats.files_deleted = delete_extras(dst, dst, &present, &opts.exclude)?;
    }
    Ok(stats)
}

fn remove_any(path: &Path) -> Result<(), DataMoverError> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(path).map_err(io(format!("removing {}", path.display())))
        }
        Ok(_) => std::fs::remove_file(path).map_err(io(format!("removing {}", path.display()))),
    }
}

fn delete_extras(
    root: &Path,
    dir: &Path,
    present: &BTreeSet<PathBuf>,
    exclude: &[String],
) -> Result<u64, DataMoverError> {
    let mut deleted = 0;
    for entry in std::fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))? {
        let entry = entry.map_err(io(format!("listing {}", dir.display())))?;
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        if excluded(&rel, exclude) {
            continue;
        }
        if !present.contains(&rel) {
            remove_any(&path)?;
            deleted += 1;
        } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
            deleted += delete_extras(root, &path, present, exclude)?;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::data::SshEndpoint;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    async fn run(src: &Path, dst: &Path, opts: TransferOptions) -> TransferStats {
        let req = TransferRequest {
            source: DataSource::Local(src.into()),
            destination: dst.into(),
            options: opts,
        };
        LocalDirMover.transfer(&req, &|_| {}).await.unwrap()
    }

    #[tokio::test]
    async fn mirrors_files_links_permissions_and_deletions() {
        let (s, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write(&s.path().join("a.txt"), "alpha");
        write(&s.path().join("sub/b.txt"), "beta");
        write(&s.path().join("cache/tmp.bin"), "skip me");
        std::fs::set_permissions(s.path().join("a.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("sub/b.txt", s.path().join("link")).unwrap();
        write(&d.path().join("stale.txt"), "old");

        let opts = TransferOptions {
            exclude: vec!["cache/".into()],
            ..Default::default()
        };
        let first = run(s.path(), d.path(), opts.clone()).await;
        assert_eq!(first.files_transferred, 3);
        assert_eq!(first.files_deleted, 1);
        assert_eq!(
            std::fs::read_to_string(d.path().join("sub/b.txt")).unwrap(),
            "beta"
        );
        assert_eq!(
            std::fs::read_link(d.path().join("link")).unwrap(),
            Path::new("sub/b.txt")
        );
        assert_eq!(
            std::fs::metadata(d.path().join("a.txt"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
        assert!(!d.path().join("stale.txt").exists());
        assert!(!d.path().join("cache").exists());

        // Nothing changed: nothing is sent again.
        let second = run(s.path(), d.path(), opts.clone()).await;
        assert_eq!(
            (second.files_transferred, second.bytes_sent, second.files_deleted),
            (0, 0, 0)
        );

        // A change and a deletion propagate.
        write(&s.path().join("sub/b.txt"), "beta v2");
        std::fs::remove_file(s.path().join("a.txt")).unwrap();
        let third = run(s.path(), d.path(), opts).await;
        assert_eq!((third.files_transferred, third.files_deleted), (1, 1));
        assert_eq!(
            std::fs::read_to_string(d.path().join("sub/b.txt")).unwrap(),
            "beta v2"
        );
        assert!(!d.path().join("a.txt").exists());
    }

    #[tokio::test]
    async fn refuses_what_it_cannot_do() {
        let d = tempfile::tempdir().unwrap();
        let req = TransferRequest {
            source: DataSource::Local(d.path().join("missing")),
            destination: d.path().join("out"),
            options: TransferOptions::default(),
        };
        assert!(LocalDirMover.transfer(&req, &|_| {}).await.is_err());
        let req = TransferRequest {
            source: DataSource::Ssh(SshEndpoint {
                host: "127.0.0.1".into(),
                port: 2222,
                user: "agent".into(),
                path: "/".into(),
                pinned_host_key: String::new(),
                client_key: PathBuf::new(),
            }),
            destination: d.path().into(),
            options: TransferOptions::default(),
        };
        assert!(matches!(
            LocalDirMover.transfer(&req, &|_| {}).await,
            Err(DataMoverError::InvalidRequest(_))
        ));
    }
}
