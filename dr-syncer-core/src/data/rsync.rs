//! [`RsyncSsh`]: the PVC data path's writer. Local rsync pulls from the reader agent; its transport is the
//! SSH bridge, which verifies the pinned host key before authenticating.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{
    DataMover, DataMoverError, DataSource, ProgressFn, REFUSED_EXIT_CODE, SshEndpoint, TransferProgress,
    TransferRequest, TransferStats,
    bridge::{BridgeConfig, BridgeStatus},
    io,
    progress::RsyncStats,
    verify,
};
use crate::api::VerificationMode;

mod run;

use super::rsync_args::{self as args, Mode, rsh_word};
pub(crate) use run::Run;

/// Pulls a volume's data from a reader agent with rsync over a verified SSH connection.
///
/// Every run uses `rsync -aAHSx --numeric-ids` (`-X` with [`super::TransferOptions::xattrs`]), mirrors with
/// `--delete`, reports `--info=progress2` as [`TransferProgress`] and reads `--stats` into
/// [`TransferStats`]. The remote-shell program is the bridge (`dr-syncer-agent ssh-bridge`), never an
/// `ssh` binary.
///
/// # Guarantees
/// - Nothing is read from the reader unless it presented a pinned host key; a mismatch is
///   [`DataMoverError::HostKeyMismatch`] and leaves the destination untouched.
/// - Transient failures (network, rsync exit codes 10, 11, 12, 14, 20, 30, 35, 255 …, vanished files) are
///   retried with exponential backoff and jitter ([`super::RetryPolicy`]) within the overall
///   [`super::TransferOptions::timeout`]; with `resumable`, a retry continues from the partial files.
/// - Exit codes 23 and 24 (some files not copied / vanished) fail the transfer unless
///   [`super::TransferOptions::allow_incomplete`] is set.
/// - Verification runs after a successful copy: `full` compares every file by checksum (rsync
///   `--checksum --dry-run`), `sample` compares SHA-256 sums of a random sample of files, computed by the
///   reader's restricted checksum command and locally. After a failed verification, the retry copies by
///   checksum.
///
/// # Errors
/// [`DataMoverError`]: `InvalidRequest` (checked before anything runs), `HostKeyMismatch`,
/// `AuthenticationFailed`, `Refused` (the reader's forced command said no), `Incomplete`, `TimedOut`,
/// `Verification`, `Failed { transient }`.
#[derive(Debug, Clone)]
pub struct RsyncSsh {
    rsync: PathBuf,
    bridge: PathBuf,
    bridge_args: Vec<OsString>,
    work_dir: PathBuf,
    connect_timeout: Duration,
    stop_grace: Duration,
}

impl RsyncSsh {
    /// A mover whose bridge is `program ssh-bridge` (the `dr-syncer-agent` binary).
    pub fn new(bridge_program: impl Into<PathBuf>) -> Self {
        RsyncSsh {
            rsync: PathBuf::from("rsync"),
            bridge: bridge_program.into(),
            bridge_args: vec!["ssh-bridge".into()],
            work_dir: std::env::temp_dir(),
            connect_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
        }
    }

    /// Use this rsync binary (default: `rsync` from `PATH`).
    pub fn with_rsync(mut self, rsync: impl Into<PathBuf>) -> Self {
        self.rsync = rsync.into();
        self
    }

    /// Put the per-transfer private files (bridge configuration, status files) under this directory
    /// (default: the system's temporary directory).
    pub fn with_work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = dir.into();
        self
    }

    /// Limit of connecting, key exchange and authentication (default 30 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// The private files of one transfer; removed when dropped.
struct Plan<'r> {
    request: &'r TransferRequest,
    endpoint: &'r SshEndpoint,
    dir: PathBuf,
    config: PathBuf,
}

impl Drop for Plan<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Plan<'_> {
    fn status_file(&self, attempt: u32, what: &str) -> PathBuf {
        self.dir.join(format!("{what}-{attempt}.status.json"))
    }
}

impl RsyncSsh {
    fn plan<'r>(&self, request: &'r TransferRequest) -> Result<Plan<'r>, DataMoverError> {
        let DataSource::Ssh(endpoint) = &request.source else {
            return Err(DataMoverError::InvalidRequest(
                "RsyncSsh reads from an SSH endpoint (a reader agent)".into(),
            ));
        };
        args::check_endpoint(endpoint)?;
        args::check_options(&request.options)?;
        let dest = &request.destination;
        std::fs::create_dir_all(dest).map_err(io(format!("creating {}", dest.display())))?;
        let dir = self.work_dir.join(format!(
            "dr-syncer-mover-{}-{:016x}",
            std::process::id(),
            super::retry::random_u64()
        ));
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(io(format!("creating {}", dir.display())))?;
        }
        let plan = Plan {
            request,
            endpoint,
            config: dir.join("bridge.json"),
            dir,
        };
        let config = BridgeConfig {
            host: endpoint.host.clone(),
            port: endpoint.port,
            user: endpoint.user.clone(),
            pinned_host_keys: endpoint.pinned_host_key.clone(),
            identity: std::path::absolute(&endpoint.client_key)
                .map_err(io(format!("resolving {}", endpoint.client_key.display())))?,
            connect_timeout_ms: u64::try_from(self.connect_timeout.as_millis()).unwrap_or(u64::MAX),
            keepalive_secs: 15,
            // Twice rsync's I/O timeout: rsync gives up first (with its own exit code), then the bridge.
            idle_timeout_secs: request
                .options
                .io_timeout
                .map_or(0, |t| t.as_secs().saturating_mul(2).max(10)),
        };
        let json = serde_json::to_vec_pretty(&config).map_err(|e| DataMoverError::Failed {
            message: format!("encoding the bridge configuration: {e}"),
            transient: false,
        })?;
        std::fs::write(&plan.config, json).map_err(io(format!("writing {}", plan.config.display())))?;
        Ok(plan)
    }

    /// The bridge's words before `[-l USER] HOST COMMAND...`.
    fn bridge_words(&self, plan: &Plan<'_>, status: &Path) -> Vec<OsString> {
        let mut words = self.bridge_args.clone();
        words.extend(["--config".into(), plan.config.clone().into_os_string()]);
        words.extend(["--status".into(), status.as_os_str().to_owned()]);
        words
    }

    fn rsh(&self, plan: &Plan<'_>, status: &Path) -> Result<String, DataMoverError> {
        let mut words = vec![rsh_word(&self.bridge.to_string_lossy())?];
        for w in self.bridge_words(plan, status) {
            words.push(rsh_word(&w.to_string_lossy())?);
        }
        Ok(words.join(" "))
    }

    fn remote(plan: &Plan<'_>) -> String {
        // The host part is a placeholder: the bridge connects to the configured host.
        let path = plan.endpoint.path.trim_end_matches('/');
        format!("{}@reader:{path}/", plan.endpoint.user)
    }

    /// One rsync run; `Ok` carries the parsed output and whether every file was copied (false for an
    /// incomplete run accepted by `allow_incomplete`).
    async fn run_rsync(
        &self,
        plan: &Plan<'_>,
        mode: Mode,
        attempt: u32,
        deadline: Option<Instant>,
        progress: ProgressFn<'_>,
    ) -> Result<(RsyncStats, Vec<String>, bool), DataMoverError> {
        let what = if mode == Mode::VerifyFull {
            "verify"
        } else {
            "copy"
        };
        let status_file = plan.status_file(attempt, what);
        let args = args::rsync_args(
            &plan.request.options,
            mode,
            &self.rsh(plan, &status_file)?,
            &Self::remote(plan),
            &plan.request.destination,
        );
        let report = |mut p: TransferProgress| {
            p.attempt = attempt;
            progress(p);
        };
        let out = Run {
            program: &self.rsync,
            args,
            stdin: None,
            raw_stdout: false,
            deadline,
            stop_grace: self.stop_grace,
        }
        .run(&report)
        .await?;
        let stats = RsyncStats::parse(out.text.iter().map(String::as_str));
        let code = out.code;
        match code {
            Some(0) => Ok((stats, out.text, true)),
            Some(c @ (23 | 24)) if plan.request.options.allow_incomplete => {
                warn!(
                    code = c,
                    "rsync could not copy every file; accepted (allow_incomplete)"
                );
                Ok((stats, out.text, false))
            }
            _ => Err(classify(
                code,
                BridgeStatus::read(&status_file),
                &out.stderr,
                &plan.endpoint.host,
            )),
        }
    }

    async fn attempt(
        &self,
        plan: &Plan<'_>,
        attempt: u32,
        force_checksum: bool,
        deadline: Option<Instant>,
        progress: ProgressFn<'_>,
    ) -> Result<TransferStats, DataMoverError> {
        let started = Instant::now();
        let (rs, _, complete) = self
            .run_rsync(plan, Mode::Copy { force_checksum }, attempt, deadline, progress)
            .await?;
        if !rs.is_complete() {
            return Err(DataMoverError::Failed {
                message: "rsync finished without its statistics".into(),
                transient: true,
            });
        }
        let mut stats = rs.to_transfer_stats();
        let opts = &plan.request.options;
        stats.files_verified = match opts.verification {
            VerificationMode::None => 0,
            VerificationMode::Full => {
                let (rs, lines, _) = self
                    .run_rsync(plan, Mode::VerifyFull, attempt, deadline, &|_| {})
                    .await?;
                verify::check_itemized(&lines)?;
                rs.files.unwrap_or(0)
            }
            VerificationMode::Sample => self.verify_sample(plan, attempt, deadline).await?,
        };
        // rsync's own updates count the bytes of the files it sent against the size of all files, so
        // a copy that only brings changes ends at 0 %: once it is complete (and verified), say so.
        if complete {
            let done = rs.literal_data.unwrap_or(0) + rs.matched_data.unwrap_or(0);
            progress(TransferProgress {
                bytes: done,
                percent: Some(100),
                bytes_per_second: Some(done as f64 / started.elapsed().as_secs_f64().max(1e-3)),
                remaining: Some(Duration::ZERO),
                files_transferred: rs.files_transferred,
                files_to_check: Some(0),
                files_total: rs.files,
                attempt,
            });
        }
        Ok(stats)
    }

    async fn verify_sample(
        &self,
        plan: &Plan<'_>,
        attempt: u32,
        deadline: Option<Instant>,
    ) -> Result<u64, DataMoverError> {
        let opts = &plan.request.options;
        let dest = plan.request.destination.clone();
        let (exclude, percent) = (opts.exclude.clone(), opts.sample_percent);
        let sample = tokio::task::spawn_blocking(move || verify::local_sample(&dest, &exclude, percent))
            .await
            .map_err(|e| DataMoverError::Failed {
                message: e.to_string(),
                transient: false,
            })??;
        if sample.is_empty() {
            return Ok(0);
        }
        let status_file = plan.status_file(attempt, "checksum");
        let mut args = self.bridge_words(plan, &status_file);
        args.extend(["-l".into(), plan.endpoint.user.clone().into(), "reader".into()]);
        args.extend([
            verify::CHECKSUM_COMMAND.into(),
            plan.endpoint.path.trim_end_matches('/').into(),
        ]);
        let out = Run {
            program: &self.bridge,
            args,
            stdin: Some(verify::encode_paths(&sample)),
            raw_stdout: true,
            deadline,
            stop_grace: self.stop_grace,
        }
        .run(&|_| {})
        .await?;
        if out.code != Some(0) {
            return Err(classify(
                out.code,
                BridgeStatus::read(&status_file),
                &out.stderr,
                &plan.endpoint.host,
            ));
        }
        let dest = plan.request.destination.clone();
        let remote = out.raw_stdout;
        tokio::task::spawn_blocking(move || verify::compare_sample(&dest, &sample, &remote))
            .await
            .map_err(|e| DataMoverError::Failed {
                message: e.to_string(),
                transient: false,
            })?
    }
}

/// The error of a failed run, from the bridge's status first (it knows about host keys, authentication
/// and refusals), then rsync's exit code.
fn classify(code: Option<i32>, status: Option<BridgeStatus>, stderr: &str, host: &str) -> DataMoverError {
    let last_lines = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("; ");
    if let Some(status) = status {
        let message = status.message.clone().unwrap_or_else(|| last_lines.clone());
        match status.error_kind.as_deref() {
            Some("HostKeyMismatch") => {
                return DataMoverError::HostKeyMismatch { host: host.into() };
            }
            Some("Authentication") => {
                return DataMoverError::AuthenticationFailed {
                    host: host.into(),
                    message,
                };
            }
            Some("InvalidConfig") => return DataMoverError::InvalidRequest(message),
            Some(kind) => {
                return DataMoverError::Failed {
                    message: format!("{kind}: {message}"),
                    transient: true,
                };
            }
            None => {}
        }
        if status.remote_exit == Some(REFUSED_EXIT_CODE) {
            return DataMoverError::Refused(status.remote_error.unwrap_or(last_lines));
        }
    }
    let message = if last_lines.is_empty() {
        format!("rsync exited with {code:?}")
    } else {
        last_lines
    };
    match code {
        Some(c @ (23 | 24)) => DataMoverError::Incomplete { code: c, message },
        // Usage, protocol incompatibility, file selection, unsupported action, startup: same next time.
        Some(1..=6) => DataMoverError::Failed {
            message,
            transient: false,
        },
        // Socket/file IO, protocol stream, IPC, signals, timeouts, connection: may pass.
        _ => DataMoverError::Failed {
            message,
            transient: true,
        },
    }
}

#[async_trait::async_trait]
impl DataMover for RsyncSsh {
    async fn transfer<'a>(
        &self,
        request: &TransferRequest,
        progress: ProgressFn<'a>,
    ) -> Result<TransferStats, DataMoverError> {
        let start = Instant::now();
        let deadline = request.options.timeout.map(|t| start + t);
        let plan = self.plan(request)?;
        let policy = request.options.retry;
        let mut attempt = 0;
        let mut force_checksum = false;
        loop {
            attempt += 1;
            let result = self
                .attempt(&plan, attempt, force_checksum, deadline, progress)
                .await;
            match result {
                Ok(mut stats) => {
                    stats.duration = start.elapsed();
                    stats.attempts = attempt;
                    info!(
                        attempt,
                        bytes = stats.bytes_sent,
                        files = stats.files_transferred,
                        "transfer complete"
                    );
                    return Ok(stats);
                }
                Err(DataMoverError::TimedOut(_)) => {
                    return Err(DataMoverError::TimedOut(
                        request.options.timeout.unwrap_or_default(),
                    ));
                }
                Err(err) if err.is_transient() && attempt <= policy.max_retries => {
                    let delay = policy.delay(attempt);
                    if deadline.is_some_and(|d| Instant::now() + delay >= d) {
                        return Err(err);
                    }
                    warn!(attempt, error = %err, kind = err.kind(), ?delay, "transfer attempt failed; retrying");
                    force_checksum |= matches!(err, DataMoverError::Verification(_));
                    tokio::time::sleep(delay).await;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn status(kind: Option<&str>, remote_exit: Option<i32>) -> Option<BridgeStatus> {
        Some(BridgeStatus {
            error_kind: kind.map(String::from),
            message: Some("m".into()),
            remote_exit,
            remote_error: Some("dr-syncer-agent: refused: path not allowed".into()),
            ..Default::default()
        })
    }

    #[rstest]
    #[case(Some(255), status(Some("HostKeyMismatch"), None), "HostKeyMismatch", false)]
    #[case(
        Some(255),
        status(Some("Authentication"), None),
        "AuthenticationFailed",
        false
    )]
    #[case(Some(255), status(Some("Connect"), None), "TransferFailed", true)]
    #[case(Some(12), status(None, Some(77)), "TransferRefused", false)]
    #[case(Some(23), status(None, Some(23)), "TransferIncomplete", false)]
    #[case(Some(24), None, "TransferIncomplete", true)]
    #[case(Some(1), None, "TransferFailed", false)]
    #[case(Some(2), None, "TransferFailed", false)]
    #[case(Some(4), None, "TransferFailed", false)]
    #[case(Some(10), None, "TransferFailed", true)]
    #[case(Some(12), status(None, Some(0)), "TransferFailed", true)]
    #[case(Some(30), None, "TransferFailed", true)]
    #[case(Some(35), None, "TransferFailed", true)]
    #[case(Some(255), None, "TransferFailed", true)]
    #[case(None, None, "TransferFailed", true)]
    fn exit_codes_are_classified(
        #[case] code: Option<i32>,
        #[case] status: Option<BridgeStatus>,
        #[case] kind: &str,
        #[case] transient: bool,
    ) {
        let err = classify(code, status, "rsync: error\n", "10.0.0.1");
        assert_eq!((err.kind(), err.is_transient()), (kind, transient), "{err}");
    }

    #[test]
    fn refusals_carry_the_readers_reason() {
        let err = classify(Some(12), status(None, Some(77)), "", "h");
        assert!(err.to_string().contains("path not allowed"), "{err}");
    }

    fn endpoint(dir: &Path) -> SshEndpoint {
        let key = dir.join("id");
        std::fs::write(&key, "k").unwrap();
        let pin = crate::keys::KeyPair::generate_ed25519("h").unwrap().public_key();
        SshEndpoint {
            host: "10.0.0.1".into(),
            port: 2222,
            user: "root".into(),
            path: "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount".into(),
            pinned_host_key: pin.to_openssh(),
            client_key: key,
        }
    }

    #[rstest]
    #[case(|e: &mut SshEndpoint| e.host = "a b".into())]
    #[case(|e: &mut SshEndpoint| e.port = 0)]
    #[case(|e: &mut SshEndpoint| e.user = "-oProxyCommand=x".into())]
    #[case(|e: &mut SshEndpoint| e.path = "/a/../b".into())]
    #[case(|e: &mut SshEndpoint| e.pinned_host_key = String::new())]
    #[case(|e: &mut SshEndpoint| e.client_key = "/nonexistent".into())]
    #[tokio::test]
    async fn invalid_requests_fail_before_anything_runs(#[case] spoil: fn(&mut SshEndpoint)) {
        let dir = tempfile::tempdir().unwrap();
        let mut ep = endpoint(dir.path());
        spoil(&mut ep);
        let request = TransferRequest {
            source: DataSource::Ssh(ep),
            destination: dir.path().join("dst"),
            options: Default::default(),
        };
        // A bridge that would fail loudly if it ran.
        let mover = RsyncSsh::new("/nonexistent/bridge").with_work_dir(dir.path());
        let err = mover.transfer(&request, &|_| {}).await.unwrap_err();
        assert_eq!(err.kind(), "InvalidTransferRequest", "{err}");
        assert!(!dir.path().join("dst").exists());
    }

    #[tokio::test]
    async fn options_are_checked_and_local_sources_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mover = RsyncSsh::new("/nonexistent/bridge").with_work_dir(dir.path());
        let mut request = TransferRequest {
            source: DataSource::Ssh(endpoint(dir.path())),
            destination: dir.path().join("dst"),
            options: Default::default(),
        };
        request.options.extra_options = vec!["--rsync-path=/bin/sh".into()];
        let err = mover.transfer(&request, &|_| {}).await.unwrap_err();
        assert!(err.to_string().contains("--rsync-path"), "{err}");
        request.options.extra_options.clear();
        request.options.sample_percent = 0;
        assert_eq!(
            mover.transfer(&request, &|_| {}).await.unwrap_err().kind(),
            "InvalidTransferRequest"
        );
        request.source = DataSource::Local(dir.path().into());
        assert_eq!(
            mover.transfer(&request, &|_| {}).await.unwrap_err().kind(),
            "InvalidTransferRequest"
        );
        // The work directory holds no leftovers.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("dr-syncer-mover"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
