//! The [`DataMover`] trait: moving a PVC's data between two endpoints.
//!
//! Topology (see the PVC data path docs): a *reader* next to the source volume (the agent on the node where
//! it is mounted, serving a command-restricted rsync sender over SSH) and a *writer* next to the DR volume
//! (a mover pod that mounts the DR PVC and pulls through a connection whose host key it has verified). A
//! [`TransferRequest`] describes one such transfer; [`LocalDirMover`] mirrors two local directories and
//! stands in for the real data path in tests.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::api::VerificationMode;

/// Where the source data is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A local directory (tests, or a reader running in-process).
    Local(PathBuf),
    /// A reader agent reached over SSH.
    Ssh(SshEndpoint),
}

/// A reader agent reached over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshEndpoint {
    /// Host (the source node's IP).
    pub host: String,
    /// Port (2222 by default).
    pub port: u16,
    /// Login user of the agent.
    pub user: String,
    /// The volume's path on that node, as the agent serves it.
    pub path: String,
    /// The host key the reader must present (OpenSSH public key line); nothing moves otherwise.
    pub pinned_host_key: String,
    /// Path of the client's private key.
    pub client_key: PathBuf,
}

/// Options of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOptions {
    /// Delete files on the destination that the source no longer has (mirror). Default true.
    pub delete: bool,
    /// Paths (rsync patterns) not copied.
    pub exclude: Vec<String>,
    /// Bandwidth limit in KiB/s.
    pub bandwidth_limit_kib: Option<u32>,
    /// Time limit of the whole transfer.
    pub timeout: Option<Duration>,
    /// Extra options for the underlying tool (validated by the mover).
    pub extra_options: Vec<String>,
    /// Keep partial files to resume an interrupted transfer.
    pub resumable: bool,
    /// Verification after copying.
    pub verification: VerificationMode,
    /// Percentage of files checked by `sample` verification.
    pub sample_percent: u8,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            delete: true,
            exclude: Vec::new(),
            bandwidth_limit_kib: None,
            timeout: None,
            extra_options: Vec::new(),
            resumable: false,
            verification: VerificationMode::None,
            sample_percent: 10,
        }
    }
}

/// One transfer: source data into a destination directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    /// Where the data comes from.
    pub source: DataSource,
    /// The destination directory (the mounted DR volume).
    pub destination: PathBuf,
    /// Options.
    pub options: TransferOptions,
}

/// Progress of a running transfer.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TransferProgress {
    /// Bytes transferred so far.
    pub bytes: u64,
    /// Percentage done (0–100), when known.
    pub percent: Option<u8>,
    /// Current speed in bytes per second, when known.
    pub bytes_per_second: Option<f64>,
    /// Estimated time left, when known.
    pub remaining: Option<Duration>,
}

/// Result of a completed transfer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransferStats {
    /// Bytes of file data sent.
    pub bytes_sent: u64,
    /// Files created or updated.
    pub files_transferred: u64,
    /// Files deleted on the destination.
    pub files_deleted: u64,
    /// Files considered.
    pub files_total: u64,
    /// Wall time.
    pub duration: Duration,
    /// Files verified by checksum (0 when verification is off).
    pub files_verified: u64,
}

impl TransferStats {
    /// Average speed in bytes per second.
    pub fn bytes_per_second(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.bytes_sent as f64 / secs
        } else {
            0.0
        }
    }
}

/// Errors of a data mover.
#[derive(Debug, thiserror::Error)]
pub enum DataMoverError {
    /// The request is invalid (bad option, unsupported source).
    #[error("invalid transfer request: {0}")]
    InvalidRequest(String),
    /// The reader's host key is not the pinned one; nothing was transferred.
    #[error("host key mismatch for {host}: refusing to transfer")]
    HostKeyMismatch {
        /// The host.
        host: String,
    },
    /// The transfer failed.
    #[error("transfer failed: {message}")]
    Failed {
        /// What happened.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
    /// Verification found a difference.
    #[error("verification failed: {0}")]
    Verification(String),
    /// Local IO failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl DataMoverError {
    /// A short, stable name of the error's category (metric label, event reason).
    pub fn kind(&self) -> &'static str {
        match self {
            DataMoverError::InvalidRequest(_) => "InvalidTransferRequest",
            DataMoverError::HostKeyMismatch { .. } => "HostKeyMismatch",
            DataMoverError::Failed { .. } => "TransferFailed",
            DataMoverError::Verification(_) => "VerificationFailed",
            DataMoverError::Io { .. } => "Io",
        }
    }

    /// Whether retrying the transfer may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DataMoverError::Failed { transient, .. } => *transient,
            // A verification difference usually means the source changed during the copy: run again.
            DataMoverError::Verification(_) | DataMoverError::Io { .. } => true,
            DataMoverError::InvalidRequest(_) | DataMoverError::HostKeyMismatch { .. } => false,
        }
    }
}

/// Receives progress reports.
pub type ProgressFn<'a> = &'a (dyn Fn(TransferProgress) + Send + Sync);

/// Moves a volume's data.
///
/// # Guarantees
/// - The destination ends up a mirror of the source (deletions included when `delete` is set), with
///   permissions kept; an unchanged file is not transferred again.
/// - Over SSH, the reader's host key is verified against the pinned key before any data moves.
///
/// # Errors
/// [`DataMoverError`]; `Failed { transient: true }` may be retried.
#[cfg_attr(test, mockall::automock)]
#[async_trait::async_trait]
pub trait DataMover: Send + Sync {
    /// Run one transfer, reporting progress.
    async fn transfer<'a>(
        &self,
        request: &TransferRequest,
        progress: ProgressFn<'a>,
    ) -> Result<TransferStats, DataMoverError>;
}

#[async_trait::async_trait]
impl<T: DataMover + ?Sized> DataMover for Box<T> {
    async fn transfer<'a>(
        &self,
        r: &TransferRequest,
        p: ProgressFn<'a>,
    ) -> Result<TransferStats, DataMoverError> {
        (**self).transfer(r, p).await
    }
}

#[async_trait::async_trait]
impl<T: DataMover + ?Sized> DataMover for std::sync::Arc<T> {
    async fn transfer<'a>(
        &self,
        r: &TransferRequest,
        p: ProgressFn<'a>,
    ) -> Result<TransferStats, DataMoverError> {
        (**self).transfer(r, p).await
    }
}

#[async_trait::async_trait]
impl<T: DataMover + ?Sized> DataMover for &T {
    async fn transfer<'a>(
        &self,
        r: &TransferRequest,
        p: ProgressFn<'a>,
    ) -> Result<TransferStats, DataMoverError> {
        (**self).transfer(r, p).await
    }
}

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
        progress(TransferProgress {
            bytes: stats.bytes_sent,
            percent: Some(100),
            ..Default::default()
        });
        Ok(stats)
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> DataMoverError {
    move |source| DataMoverError::Io { context, source }
}

fn excluded(rel: &Path, exclude: &[String]) -> bool {
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
