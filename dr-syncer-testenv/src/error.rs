//! Errors of the test harness.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while starting or using a test control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required binary (kapi, kubectl) has not been built yet.
    #[error(
        "{what} not found at {}: run `scripts/build-control-plane.sh` (or the whole test suite with \
         `scripts/test.sh`), or point {env} at it",
        path.display()
    )]
    MissingBinary {
        /// Which binary.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// The environment variable that overrides the path.
        env: &'static str,
    },
    /// The control plane process exited before it became ready.
    #[error("control plane `{name}` exited before it was ready ({status}); last log lines:\n{log_tail}")]
    Exited {
        /// Name given to the control plane.
        name: String,
        /// Exit status as text.
        status: String,
        /// The end of its log.
        log_tail: String,
    },
    /// The control plane did not become ready in time.
    #[error("control plane `{name}` not ready after {secs}s; last log lines:\n{log_tail}")]
    StartTimeout {
        /// Name given to the control plane.
        name: String,
        /// Seconds waited.
        secs: u64,
        /// The end of its log.
        log_tail: String,
    },
    /// A helper command (e.g. `kapi kubeconfig`) failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
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
    /// A kubeconfig could not be loaded.
    #[error("invalid kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A request to the control plane failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// A response or document could not be decoded.
    #[error("{context}: {message}")]
    Decode {
        /// What was being decoded.
        context: String,
        /// Why it failed.
        message: String,
    },
    /// A wait ran out of time.
    #[error("timed out after {secs:.1}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// Seconds waited.
        secs: f64,
    },
}

impl Error {
    /// A short, stable name for the error's category.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::MissingBinary { .. } => "MissingBinary",
            Error::Exited { .. } => "Exited",
            Error::StartTimeout { .. } => "StartTimeout",
            Error::Command { .. } => "Command",
            Error::Io { .. } => "Io",
            Error::Kubeconfig { .. } => "Kubeconfig",
            Error::Kube(_) => "Kube",
            Error::Decode { .. } => "Decode",
            Error::Timeout { .. } => "Timeout",
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
