//! The [`DataMover`] trait: moving a PVC's data between two endpoints.
//!
//! Topology (see `docs/data-path.md` in the repository): a *reader* next to the source volume (the agent on
//! the node where it is mounted, serving a command-restricted rsync sender over SSH) and a *writer* next to
//! the DR volume (a mover pod that mounts the DR PVC and pulls through a connection whose host key it has
//! verified). A [`TransferRequest`] describes one such transfer.
//!
//! Implementations:
//! - [`RsyncSsh`]: the real data path — local rsync pulling from the reader, its transport a verified SSH
//!   connection (the agent's `ssh-bridge`), with retries, verification and statistics;
//! - [`LocalDirMover`]: mirrors two local directories; stands in for the data path in tests.
//!
//! Submodules: [`progress`] parses rsync's output, [`retry`] holds the backoff policy, [`bridge`] the
//! contract between [`RsyncSsh`] and the SSH bridge.

use std::{path::PathBuf, time::Duration};

use crate::api::VerificationMode;

pub mod bridge;
mod local;
pub mod progress;
pub mod retry;
#[cfg(feature = "data")]
mod rsync;
// Without `data`, only the validation of `rsyncOptions` is used.
#[cfg_attr(not(feature = "data"), allow(dead_code))]
mod rsync_args;
#[cfg_attr(not(feature = "data"), allow(dead_code))]
mod verify;

pub use local::LocalDirMover;
pub use retry::RetryPolicy;
#[cfg(feature = "data")]
pub use rsync::RsyncSsh;
pub use rsync_args::validate_extra_options;
pub use verify::CHECKSUM_COMMAND;

/// Exit code of the reader's forced command when it refuses a request (sysexits' `EX_NOPERM`).
pub const REFUSED_EXIT_CODE: i32 = 77;

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
    /// The volume's path on that node, as the agent serves it (absolute; its contents are copied).
    pub path: String,
    /// The host key(s) the reader must present (OpenSSH public key lines, see
    /// [`crate::keys::HostKeyPins`]); nothing moves otherwise.
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
    /// Time limit of the whole transfer, retries and verification included.
    pub timeout: Option<Duration>,
    /// A transfer that moves no data for this long fails (rsync `--timeout`); retried as transient.
    pub io_timeout: Option<Duration>,
    /// Extra options for the underlying tool, checked against an allow-list by the mover
    /// ([`validate_extra_options`] for [`RsyncSsh`]).
    pub extra_options: Vec<String>,
    /// Keep partial files to resume an interrupted transfer (rsync `--partial`).
    pub resumable: bool,
    /// Also copy extended attributes (rsync `-X`; both file systems must support them).
    pub xattrs: bool,
    /// Accept a transfer in which some files could not be copied or vanished (rsync exit codes 23 and
    /// 24) instead of failing it.
    pub allow_incomplete: bool,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Verification after copying.
    pub verification: VerificationMode,
    /// Percentage of files checked by `sample` verification (1–100).
    pub sample_percent: u8,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            delete: true,
            exclude: Vec::new(),
            bandwidth_limit_kib: None,
            timeout: None,
            io_timeout: Some(Duration::from_secs(300)),
            extra_options: Vec::new(),
            resumable: false,
            xattrs: false,
            allow_incomplete: false,
            retry: RetryPolicy::default(),
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
    /// Bytes of file data done so far in this attempt.
    pub bytes: u64,
    /// Percentage done (0–100), when known.
    pub percent: Option<u8>,
    /// Current speed in bytes per second, when known.
    pub bytes_per_second: Option<f64>,
    /// Estimated time left, when known.
    pub remaining: Option<Duration>,
    /// Files transferred so far, when known.
    pub files_transferred: Option<u64>,
    /// Files still to check of those known so far, when known.
    pub files_to_check: Option<u64>,
    /// Files known so far (grows while rsync scans incrementally), when known.
    pub files_total: Option<u64>,
    /// Attempt number (1 for the first try, 2 after the first retry …); 0 when not applicable.
    pub attempt: u32,
}

/// Result of a completed transfer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransferStats {
    /// Bytes that crossed the network from the reader to the writer (file data, deltas and file list).
    pub bytes_sent: u64,
    /// Bytes that crossed the network from the writer to the reader (block checksums, requests).
    pub bytes_received: u64,
    /// Bytes of file data sent literally (not reconstructed from data the destination already had).
    pub literal_bytes: u64,
    /// Total size of the source files.
    pub total_bytes: u64,
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
    /// Attempts made (1 when the first one succeeded).
    pub attempts: u32,
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
    /// The reader did not accept the client key.
    #[error("authentication to {host} failed: {message}")]
    AuthenticationFailed {
        /// The host.
        host: String,
        /// What the SSH layer said.
        message: String,
    },
    /// The reader refused the request (e.g. the volume is not served on that node).
    #[error("the reader refused the request: {0}")]
    Refused(String),
    /// The transfer failed.
    #[error("transfer failed: {message}")]
    Failed {
        /// What happened.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
    /// Some files could not be copied (rsync exit code 23) or vanished during the copy (24).
    #[error("transfer incomplete (rsync exit code {code}): {message}")]
    Incomplete {
        /// rsync's exit code.
        code: i32,
        /// What rsync reported.
        message: String,
    },
    /// The transfer's time limit passed.
    #[error("transfer timed out after {0:?}")]
    TimedOut(Duration),
    /// Verification found a difference.
    #[error("verification failed: {0}")]
    Verification(String),
    /// The source volume looks wiped (empty or nearly empty while the DR copy is not): it was not
    /// mirrored, so the DR copy is untouched. Allowed only on request (`--allow-wiped-source`).
    #[error("the source volume looks wiped: {0}; the DR copy was left untouched")]
    SourceLooksWiped(String),
    /// A failure reported by a mover running elsewhere (a mover pod's result), with its kind.
    #[error("{message}")]
    Reported {
        /// The kind the mover reported (one of the kinds of this enum).
        kind: &'static str,
        /// What it said.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
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
            DataMoverError::AuthenticationFailed { .. } => "AuthenticationFailed",
            DataMoverError::Refused(_) => "TransferRefused",
            DataMoverError::Failed { .. } => "TransferFailed",
            DataMoverError::Incomplete { .. } => "TransferIncomplete",
            DataMoverError::TimedOut(_) => "TransferTimedOut",
            DataMoverError::Verification(_) => "VerificationFailed",
            DataMoverError::Io { .. } => "Io",
            DataMoverError::SourceLooksWiped(_) => "SourceLooksWiped",
            DataMoverError::Reported { kind, .. } => kind,
        }
    }

    /// Whether retrying the transfer may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            DataMoverError::Failed { transient, .. } | DataMoverError::Reported { transient, .. } => {
                *transient
            }
            // Files vanishing means the source changes under the copy: the next run catches up. A file
            // that cannot be read stays unreadable until someone acts.
            DataMoverError::Incomplete { code, .. } => *code == 24,
            // A verification difference usually means the source changed during the copy: run again.
            DataMoverError::Verification(_) | DataMoverError::Io { .. } | DataMoverError::TimedOut(_) => true,
            DataMoverError::InvalidRequest(_)
            | DataMoverError::HostKeyMismatch { .. }
            | DataMoverError::AuthenticationFailed { .. }
            | DataMoverError::Refused(_)
            | DataMoverError::SourceLooksWiped(_) => false,
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
/// [`DataMoverError`]; [`DataMoverError::is_transient`] tells whether a later retry may help.
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

fn io(context: String) -> impl FnOnce(std::io::Error) -> DataMoverError {
    move |source| DataMoverError::Io { context, source }
}
