//! The contract between [`super::RsyncSsh`] and the SSH bridge (`dr-syncer-agent ssh-bridge`).
//!
//! rsync runs its transport through a remote-shell program (`rsync -e PROGRAM`), which it calls as
//! `PROGRAM [-l USER] HOST COMMAND...`. The bridge is that program: it reads a [`BridgeConfig`] (the
//! real host, port and user, the pinned host keys, the client key), opens an SSH connection, checks the
//! server's host key against the pins **before authenticating**, authenticates, runs `COMMAND` on the
//! reader and pipes its standard streams. Whatever happens, it records a [`BridgeStatus`] in the status
//! file it was given, which is how the mover tells a wrong host key or a refused request from a network
//! failure (rsync itself only sees a closed connection).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How the bridge connects. Written by the mover to a private file; holds paths, never key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeConfig {
    /// Host (IP address or name) of the reader.
    pub host: String,
    /// Port of the reader's sshd.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// The pinned host keys (OpenSSH public key lines, see [`crate::keys::HostKeyPins`]).
    pub pinned_host_keys: String,
    /// Path of the client's private key.
    pub identity: PathBuf,
    /// Limit of the TCP connection, key exchange and authentication, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Interval of SSH keepalive messages in seconds (0: none).
    pub keepalive_secs: u32,
    /// End the session when nothing arrives from the reader for this many seconds (0: never): a dead
    /// link (a partition, a stopped node) is noticed instead of waited on forever. rsync's own
    /// `--timeout` keeps bytes flowing on a healthy link, so this is set above it.
    #[serde(default)]
    pub idle_timeout_secs: u64,
}

/// Exit code of the bridge when it could not reach or log into the reader (rsync reports it as its own
/// exit code 255 — the classification comes from the [`BridgeStatus`]).
pub const BRIDGE_FAILED_EXIT_CODE: i32 = 255;

/// How far a bridge got, and why it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeStatus {
    /// The stable kind of the failure (`Connect`, `Handshake`, `HostKeyMismatch`, `Authentication`,
    /// `Channel`, `Io`, `InvalidConfig`), or `None` when the remote command ran.
    pub error_kind: Option<String>,
    /// A message for humans.
    pub message: Option<String>,
    /// Fingerprint of the host key the server presented (also when it was refused).
    pub host_key_fingerprint: Option<String>,
    /// Exit status of the remote command, when it ran to the end.
    pub remote_exit: Option<i32>,
    /// First line the remote command wrote to its standard error, if any (a refusal's reason).
    pub remote_error: Option<String>,
}

impl BridgeStatus {
    /// Write to `path` atomically (a temporary file renamed over it).
    ///
    /// # Errors
    /// The IO error.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(tmp, path)
    }

    /// Read from `path`; `None` when there is none or it is unreadable (the bridge was killed early).
    pub fn read(path: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        assert_eq!(BridgeStatus::read(&path), None);
        let status = BridgeStatus {
            error_kind: Some("HostKeyMismatch".into()),
            host_key_fingerprint: Some("SHA256:x".into()),
            ..Default::default()
        };
        status.write(&path).unwrap();
        assert_eq!(BridgeStatus::read(&path), Some(status));
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(BridgeStatus::read(&path), None);
    }
}
